//! The spanned document tree that YAML and TOML plans are both read into.
//!
//! Plans are parsed into [`Node`]s rather than straight into typed structs so that every value
//! keeps the place it came from through `extends` merging, templating and `kind` dispatch
//! (serde's `flatten`/internally tagged enums would lose both spans and `deny_unknown_fields`).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::ser::{SerializeMap, SerializeSeq};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::{Code, PlanDiag, PlanErrors, SourceFile, Span};

#[derive(Clone, Debug)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Map),
}

/// Mapping keys keep their own span, so "unknown field" can point at the key itself.
pub type Map = IndexMap<String, Entry>;

#[derive(Clone, Debug)]
pub struct Entry {
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    pub fn new(span: Span, value: Value) -> Self {
        Self { span, value }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.get(key).map(|e| &e.value)
    }

    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Deep merge for `extends`: mappings merge key by key (`over` wins), anything else is
    /// replaced, and a `null` in `over` deletes the key it names.
    pub fn merge(base: Node, over: Node) -> Node {
        // A step that changes its kind is a different step: replace it rather than mixing
        // the fields of two kinds (e.g. a base's placeholder `inject` becoming a chaos step).
        let kind_of = |n: &Node| n.get("kind").and_then(Node::as_str).map(str::to_string);
        if let (Some(a), Some(b)) = (kind_of(&base), kind_of(&over)) {
            if a != b {
                return over;
            }
        }
        match (base.value, over.value) {
            (Value::Map(mut b), Value::Map(o)) => {
                for (k, entry) in o {
                    if matches!(entry.value.value, Value::Null) {
                        b.shift_remove(&k);
                        continue;
                    }
                    let merged = match b.shift_remove(&k) {
                        Some(old) => Entry {
                            key_span: entry.key_span,
                            value: Node::merge(old.value, entry.value),
                        },
                        None => entry,
                    };
                    b.insert(k, merged);
                }
                Node::new(over.span, Value::Map(b))
            }
            (_, value) => Node::new(over.span, value),
        }
    }

    /// Applies `f` to every string scalar, depth first; `f` may replace the node.
    pub fn map_strings<E>(
        &self,
        f: &mut impl FnMut(&Node, &str) -> Result<Option<Node>, E>,
    ) -> Result<Node, E> {
        Ok(match &self.value {
            Value::Str(s) => f(self, s)?.unwrap_or_else(|| self.clone()),
            Value::Seq(items) => Node::new(
                self.span.clone(),
                Value::Seq(
                    items
                        .iter()
                        .map(|n| n.map_strings(f))
                        .collect::<Result<_, _>>()?,
                ),
            ),
            Value::Map(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, e) in map {
                    out.insert(
                        k.clone(),
                        Entry {
                            key_span: e.key_span.clone(),
                            value: e.value.map_strings(f)?,
                        },
                    );
                }
                Node::new(self.span.clone(), Value::Map(out))
            }
            _ => self.clone(),
        })
    }

    /// Every string scalar with its node, for passes that only inspect.
    pub fn visit_strings<'a>(&'a self, f: &mut impl FnMut(&'a Node, &'a str)) {
        match &self.value {
            Value::Str(s) => f(self, s),
            Value::Seq(items) => items.iter().for_each(|n| n.visit_strings(f)),
            Value::Map(map) => map.values().for_each(|e| e.value.visit_strings(f)),
            _ => {}
        }
    }

    /// A node built from JSON data (template results, defaults), placed at `span`.
    pub fn from_json(span: &Span, v: &serde_json::Value) -> Node {
        let value = match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => {
                Value::Seq(a.iter().map(|x| Node::from_json(span, x)).collect())
            }
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, x)| {
                        (
                            k.clone(),
                            Entry {
                                key_span: span.clone(),
                                value: Node::from_json(span, x),
                            },
                        )
                    })
                    .collect(),
            ),
        };
        Node::new(span.clone(), value)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, e) in map {
                    m.serialize_entry(k, &e.value)?;
                }
                m.end()
            }
        }
    }
}

/// Parses a plan document by file extension: `.toml` is TOML, anything else YAML.
pub fn parse_document(file: &Arc<SourceFile>) -> Result<Node, PlanErrors> {
    let is_toml = file
        .path
        .as_deref()
        .and_then(|p| p.extension())
        .is_some_and(|e| e == "toml");
    if is_toml {
        parse_toml(file)
    } else {
        parse_yaml(file)
    }
}

// ---------------------------------------------------------------------------------------------
// YAML

/// Parses one YAML document (aliases resolved, YAML 1.2 core-schema scalars).
pub fn parse_yaml(file: &Arc<SourceFile>) -> Result<Node, PlanErrors> {
    let mut docs = parse_yaml_stream(file)?;
    match docs.len() {
        0 => Ok(Node::new(Span::new(file, 0, 0), Value::Null)),
        1 => Ok(docs.remove(0)),
        _ => Err(PlanDiag::new(
            Code::Syntax,
            "a plan file holds exactly one YAML document",
            Some(&docs[1].span),
        )
        .label("second document starts here")
        .into()),
    }
}

/// Parses every document of a YAML stream (`---`-separated manifests), each with its spans.
pub fn parse_yaml_stream(file: &Arc<SourceFile>) -> Result<Vec<Node>, PlanErrors> {
    let text = Arc::clone(&file.text);
    let mut builder = YamlBuilder {
        file,
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: Default::default(),
        errors: PlanErrors::default(),
    };
    let mut parser = Parser::new_from_str(&text);
    if let Err(e) = parser.load(&mut builder, true) {
        let offset = byte_offset(&text, e.marker());
        let span = Span::new(file, offset, 1);
        return Err(PlanDiag::new(
            Code::Syntax,
            format!("YAML syntax error: {}", e.info()),
            Some(&span),
        )
        .label("here")
        .into());
    }
    builder.errors.into_result(builder.docs)
}

/// yaml-rust2 markers count characters; spans are bytes.
fn byte_offset(text: &str, m: &Marker) -> usize {
    let idx = m.index();
    if text.is_ascii() {
        idx.min(text.len())
    } else {
        text.char_indices().nth(idx).map_or(text.len(), |(b, _)| b)
    }
}

enum Frame {
    Seq(Span, Vec<Node>, usize),
    Map(Span, Map, Option<(String, Span)>, usize),
}

struct YamlBuilder<'a> {
    file: &'a Arc<SourceFile>,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: std::collections::HashMap<usize, Node>,
    errors: PlanErrors,
}

impl YamlBuilder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(map_span, map, pending, _)) => match pending.take() {
                None => {
                    // A block mapping's start event is marked past its first key; its first
                    // key is where a reader looks for "this mapping".
                    if map.is_empty() && map_span.start > node.span.start {
                        *map_span = node.span.clone();
                    }
                    let key = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_string(),
                        _ => {
                            self.errors.push(
                                PlanDiag::new(
                                    Code::Syntax,
                                    "mapping keys must be plain strings",
                                    Some(&node.span),
                                )
                                .label("complex key"),
                            );
                            String::new()
                        }
                    };
                    if let Some(prev) = map.get(&key) {
                        self.errors.push(
                            PlanDiag::new(
                                Code::Syntax,
                                format!("duplicate key `{key}`"),
                                Some(&node.span),
                            )
                            .label("defined again here")
                            .related(&prev.key_span, "first defined here"),
                        );
                    }
                    *pending = Some((key, node.span));
                }
                Some((key, key_span)) => {
                    map.insert(
                        key,
                        Entry {
                            key_span,
                            value: node,
                        },
                    );
                }
            },
        }
    }
}

impl MarkedEventReceiver for YamlBuilder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let offset = byte_offset(&self.file.text, &mark);
        match ev {
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(
                Span::new(self.file, offset, 1),
                Vec::new(),
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(
                Span::new(self.file, offset, 1),
                Map::new(),
                None,
                anchor,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(span, items, a)) => (Node::new(span, Value::Seq(items)), a),
                    Some(Frame::Map(span, map, _, a)) => (Node::new(span, Value::Map(map)), a),
                    None => return,
                };
                self.push_node(node, anchor);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                let len = if matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                ) {
                    text.len() + 2
                } else if quoted {
                    1
                } else {
                    text.len().max(1)
                };
                let span = Span::new(self.file, offset, len);
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if quoted || forced_str {
                    Value::Str(text)
                } else {
                    resolve_plain_scalar(text)
                };
                self.push_node(Node::new(span, value), anchor);
            }
            Event::Alias(id) => {
                let span = Span::new(self.file, offset, 1);
                match self.anchors.get(&id) {
                    Some(n) => {
                        let n = Node::new(span, n.value.clone());
                        self.push_node(n, 0)
                    }
                    None => {
                        self.errors
                            .push(PlanDiag::new(Code::Syntax, "unknown alias", Some(&span)))
                    }
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core schema resolution of an unquoted scalar.
pub fn resolve_plain_scalar(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let t = text.as_str();
    if let Some(hex) = t.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    if let Some(oct) = t.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    }
    let numeric_start = t
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if numeric_start {
        if let Ok(i) = t.parse::<i64>() {
            return Value::Int(i);
        }
        if t.contains(['.', 'e', 'E']) && !t.ends_with('.') {
            if let Ok(f) = t.parse::<f64>() {
                return Value::Float(f);
            }
        }
    }
    Value::Str(text)
}

// ---------------------------------------------------------------------------------------------
// TOML

pub fn parse_toml(file: &Arc<SourceFile>) -> Result<Node, PlanErrors> {
    use toml::de::DeTable;
    let text = Arc::clone(&file.text);
    let (table, errors) = DeTable::parse_recoverable(&text);
    if !errors.is_empty() {
        let mut out = PlanErrors::default();
        for e in errors {
            let range = e.span().unwrap_or(0..1);
            let span = Span::new(
                file,
                range.start,
                range.end.saturating_sub(range.start).max(1),
            );
            out.push(
                PlanDiag::new(
                    Code::Syntax,
                    format!("TOML syntax error: {}", e.message()),
                    Some(&span),
                )
                .label("here"),
            );
        }
        return Err(out);
    }
    let span = table.span();
    let map = toml_table(file, table.get_ref());
    Ok(Node::new(
        Span::new(file, span.start, span.end - span.start),
        Value::Map(map),
    ))
}

fn toml_table(file: &Arc<SourceFile>, t: &toml::de::DeTable<'_>) -> Map {
    t.iter()
        .map(|(k, v)| {
            let ks = k.span();
            (
                k.get_ref().to_string(),
                Entry {
                    key_span: Span::new(file, ks.start, ks.end - ks.start),
                    value: toml_value(file, v),
                },
            )
        })
        .collect()
}

fn toml_value(file: &Arc<SourceFile>, v: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    use toml::de::DeValue;
    let r = v.span();
    let span = Span::new(file, r.start, r.end - r.start);
    let value = match v.get_ref() {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits
                .trim_start_matches("0x")
                .trim_start_matches("0o")
                .trim_start_matches("0b");
            match i64::from_str_radix(digits, i.radix()) {
                Ok(n) => Value::Int(n),
                Err(_) => Value::Str(i.as_str().to_string()),
            }
        }
        DeValue::Float(f) => {
            let s = f.as_str().replace('_', "");
            Value::Float(match s.as_str() {
                "inf" | "+inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" | "+nan" | "-nan" => f64::NAN,
                other => other.parse().unwrap_or(f64::NAN),
            })
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Str(d.to_string()),
        DeValue::Array(a) => Value::Seq(a.iter().map(|x| toml_value(file, x)).collect()),
        DeValue::Table(t) => Value::Map(toml_table(file, t)),
    };
    Node::new(span, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Node, PlanErrors> {
        parse_yaml(&SourceFile::new("t.yaml", None, text.into()))
    }

    #[test]
    fn yaml_scalars_follow_the_core_schema() {
        let n = yaml("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: hello\ng: 0x10\n").unwrap();
        let get = |k| n.get(k).unwrap().value.clone();
        assert!(matches!(get("a"), Value::Int(1)));
        assert!(matches!(get("b"), Value::Str(s) if s == "1"));
        assert!(matches!(get("c"), Value::Bool(true)));
        assert!(matches!(get("d"), Value::Null));
        assert!(matches!(get("e"), Value::Float(f) if f == 1.5));
        assert!(matches!(get("f"), Value::Str(s) if s == "hello"));
        assert!(matches!(get("g"), Value::Int(16)));
    }

    #[test]
    fn yaml_spans_point_at_keys_and_values() {
        let n = yaml("steps:\n  build:\n    kind: shell\n").unwrap();
        let steps = n.get("steps").unwrap().as_map().unwrap();
        assert_eq!(steps["build"].key_span.location(), "t.yaml:2:3");
        let kind = n
            .get("steps")
            .unwrap()
            .get("build")
            .unwrap()
            .get("kind")
            .unwrap();
        assert_eq!(kind.span.location(), "t.yaml:3:11");
    }

    #[test]
    fn yaml_spans_survive_multibyte_text() {
        let n = yaml("description: \"héllo wörld\"\nname: x\n").unwrap();
        assert_eq!(n.get("name").unwrap().span.location(), "t.yaml:2:7");
    }

    #[test]
    fn yaml_aliases_and_duplicates() {
        let n = yaml("a: &x [1, 2]\nb: *x\n").unwrap();
        assert!(matches!(&n.get("b").unwrap().value, Value::Seq(v) if v.len() == 2));
        let e = yaml("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.diags[0].message, "duplicate key `a`");
        assert_eq!(e.diags[0].span.as_ref().unwrap().location(), "t.yaml:2:1");
    }

    #[test]
    fn yaml_syntax_errors_have_a_location() {
        let e = yaml("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.diags[0].code, Code::Syntax);
        assert!(e.diags[0].span.is_some());
    }

    #[test]
    fn toml_keeps_types_and_spans() {
        let f = SourceFile::new(
            "t.toml",
            Some("t.toml".into()),
            "name = \"x\"\n[steps.a]\nkind = \"shell\"\nretries = 2\n".into(),
        );
        let n = parse_toml(&f).unwrap();
        let a = n.get("steps").unwrap().get("a").unwrap();
        assert!(matches!(a.get("retries").unwrap().value, Value::Int(2)));
        assert_eq!(a.get("kind").unwrap().span.location(), "t.toml:3:8");
    }

    #[test]
    fn merge_is_deep_and_null_deletes() {
        let base =
            yaml("vars: {a: 1, b: 2}\nsteps: {x: {kind: shell, run: a}, y: {kind: sleep}}\n")
                .unwrap();
        let over = yaml("vars: {b: 3}\nsteps: {x: {run: b}, y: null}\n").unwrap();
        let m = Node::merge(base, over);
        let json = m.to_json();
        assert_eq!(json["vars"], serde_json::json!({"a": 1, "b": 3}));
        assert_eq!(
            json["steps"],
            serde_json::json!({"x": {"kind": "shell", "run": "b"}})
        );
        let base = yaml("steps: {x: {kind: sleep, duration: 0s, after: [a]}}\n").unwrap();
        let over = yaml("steps: {x: {kind: shell, run: b}}\n").unwrap();
        assert_eq!(
            Node::merge(base, over).to_json()["steps"]["x"],
            serde_json::json!({"kind": "shell", "run": "b"})
        );
    }
}
