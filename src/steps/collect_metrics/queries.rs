//! How a plan lists PromQL queries, and their resolution into the collector's ordered list.
//!
//! The published dataset's `metric_name` is the query text itself, so a query needs no name:
//! `- "rate(node_cpu_seconds_total[5m])"` or `- { query: … }`. A name is an optional alias
//! (`name: query` in a mapping, or `{ name, query }`) for sets that want short labels.

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::collect::metrics::NamedQuery;
use crate::diag::{did_you_mean, Span};
use crate::plan::node::{Node, Value};

/// Queries in plan order: a mapping `alias: query`, or a list of query texts and
/// `{query, name}` items (hand-written visitor rather than `untagged`, so an error names the
/// item it is about instead of "did not match any variant").
#[derive(Debug, Clone, Default)]
pub struct Queries(pub Vec<QueryEntry>);

/// One query.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryEntry {
    /// Optional alias written as `metric_name` instead of the query text.
    #[serde(default)]
    pub name: Option<String>,
    /// PromQL. Without `name` it is also the CSV's `metric_name`.
    pub query: String,
}

impl QueryEntry {
    fn named(&self) -> NamedQuery {
        let query = self.query.trim().to_string();
        NamedQuery {
            name: self
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map_or_else(|| query.clone(), str::to_string),
            query,
        }
    }
}

struct Item(QueryEntry);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a PromQL query text or a mapping `{query, name}`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Item, E> {
                Ok(Item(QueryEntry {
                    name: None,
                    query: s.to_string(),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                QueryEntry::deserialize(de::value::MapAccessDeserializer::new(map)).map(Item)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Queries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Queries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of PromQL queries (texts or `{query, name}`) or a mapping `name: query`",
                )
            }
            fn visit_unit<E: de::Error>(self) -> Result<Queries, E> {
                Ok(Queries::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Queries, A::Error> {
                let mut out = Vec::new();
                while let Some(Item(e)) = seq.next_element::<Item>()? {
                    out.push(e);
                }
                Ok(Queries(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Queries, A::Error> {
                let mut out = Vec::new();
                while let Some((name, query)) = map.next_entry::<String, String>()? {
                    out.push(QueryEntry {
                        name: Some(name),
                        query,
                    });
                }
                Ok(Queries(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Queries {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Queries".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let entry = g.subschema_for::<QueryEntry>();
        schemars::json_schema!({
            "description": "PromQL queries: a list of query texts (the text is the CSV's `metric_name`) or `{query, name}` items, or a mapping `name: query`.",
            "oneOf": [
                {"type": "array", "items": {"oneOf": [{"type": "string"}, entry]}},
                {"type": "object", "additionalProperties": {"type": "string"}}
            ]
        })
    }
}

/// Where in the step a resolution problem sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryAt {
    /// Item `n` of `queries`.
    Queries(usize),
    /// Item `n` of the metric set `set`.
    Set(String, usize),
    /// Item `n` of `sets`.
    Sets(usize),
}

/// A query list that cannot run, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryProblem {
    pub message: String,
    pub at: Option<QueryAt>,
}

impl fmt::Display for QueryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn problem(message: String, at: Option<QueryAt>) -> QueryProblem {
    QueryProblem { message, at }
}

/// `queries`, then each selected set's queries, in plan order. A query listed again with the
/// same `metric_name` (the published sets put `node_filesystem_avail_bytes` in two categories)
/// runs once, at its first place.
///
/// # Errors
/// An unknown set, one `metric_name` for two different queries, an empty query, or no query.
pub fn resolve(
    queries: &Queries,
    metric_sets: &IndexMap<String, Queries>,
    sets: Option<&[String]>,
) -> Result<Vec<NamedQuery>, QueryProblem> {
    let mut listed: Vec<(NamedQuery, QueryAt)> = queries
        .0
        .iter()
        .enumerate()
        .map(|(i, e)| (e.named(), QueryAt::Queries(i)))
        .collect();
    let selected: Vec<&String> = match sets {
        Some(s) => s.iter().collect(),
        None => metric_sets.keys().collect(),
    };
    for (si, set) in selected.into_iter().enumerate() {
        let Some(qs) = metric_sets.get(set) else {
            return Err(problem(
                format!(
                    "`sets` names `{set}`, which is not in `metric_sets`{}",
                    did_you_mean(set, metric_sets.keys().map(String::as_str))
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                ),
                Some(QueryAt::Sets(si)),
            ));
        };
        listed.extend(
            qs.0.iter()
                .enumerate()
                .map(|(i, e)| (e.named(), QueryAt::Set(set.clone(), i))),
        );
    }
    let mut out: Vec<NamedQuery> = Vec::with_capacity(listed.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (q, at) in listed {
        if q.query.is_empty() {
            return Err(problem(format!("query `{}` is empty", q.name), Some(at)));
        }
        match seen.get(&q.name) {
            Some(&i) if out[i].query == q.query => continue,
            Some(&i) => {
                return Err(problem(
                    format!(
                        "`{}` names two different queries (`{}` and `{}`): it is their `metric_name`, which must tell them apart",
                        q.name, out[i].query, q.query
                    ),
                    Some(at),
                ))
            }
            None => {
                seen.insert(q.name.clone(), out.len());
                out.push(q);
            }
        }
    }
    if out.is_empty() {
        return Err(problem(
            "no queries: give `queries` or `metric_sets`".into(),
            None,
        ));
    }
    Ok(out)
}

/// The span of item `index` of a list or mapping node (a mapping entry's key: its alias).
fn item_span(list: &Node, index: usize) -> Option<&Span> {
    match &list.value {
        Value::Seq(items) => items.get(index).map(|n| &n.span),
        Value::Map(m) => m.get_index(index).map(|(_, e)| &e.key_span),
        _ => None,
    }
}

/// The most precise span of `at` in the step's node, else the nearest enclosing field.
pub fn span_of<'a>(step: &'a Node, at: Option<&QueryAt>) -> Option<&'a Span> {
    let (field, inner) = match at {
        Some(QueryAt::Queries(i)) => (
            "queries",
            step.get("queries").and_then(|l| item_span(l, *i)),
        ),
        Some(QueryAt::Sets(i)) => ("sets", step.get("sets").and_then(|l| item_span(l, *i))),
        Some(QueryAt::Set(set, i)) => (
            "metric_sets",
            step.get("metric_sets")
                .and_then(|m| m.get(set))
                .and_then(|l| item_span(l, *i)),
        ),
        None if step.get("queries").is_some() => ("queries", None),
        None => ("metric_sets", None),
    };
    inner
        .or_else(|| step.get(field).map(|n| &n.span))
        .or(Some(&step.span))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through the plan reader, as plans reach these types.
    fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> Result<T, String> {
        let file = crate::diag::SourceFile::new("t.yaml", None, yaml.into());
        let node = crate::plan::node::parse_yaml(&file).map_err(|e| format!("{e:?}"))?;
        crate::plan::node_de::from_node(&node).map_err(|e| e.to_string())
    }

    fn parse(yaml: &str) -> Queries {
        from_yaml(yaml).unwrap()
    }

    fn names(q: &[NamedQuery]) -> Vec<&str> {
        q.iter().map(|q| q.name.as_str()).collect()
    }

    #[test]
    fn query_texts_need_no_name() {
        let q = parse("- rate(node_cpu_seconds_total[5m])\n- { query: up }\n- { name: fds, query: process_open_fds }\n");
        let r = resolve(&q, &IndexMap::new(), None).unwrap();
        assert_eq!(names(&r), ["rate(node_cpu_seconds_total[5m])", "up", "fds"]);
        assert_eq!(r[2].query, "process_open_fds");
        let m = parse("cpu: rate(x[1m])\n");
        assert_eq!(
            names(&resolve(&m, &IndexMap::new(), None).unwrap()),
            ["cpu"]
        );
    }

    #[test]
    fn a_query_in_two_sets_runs_once() {
        let sets: IndexMap<String, Queries> = from_yaml(
            "performance: [node_load5, node_filesystem_avail_bytes]\n\
             database: [node_filesystem_avail_bytes, process_max_fds]\n",
        )
        .unwrap();
        let r = resolve(&Queries::default(), &sets, None).unwrap();
        assert_eq!(
            names(&r),
            [
                "node_load5",
                "node_filesystem_avail_bytes",
                "process_max_fds"
            ]
        );
        let only = ["database".to_string()];
        let r = resolve(&Queries::default(), &sets, Some(&only)).unwrap();
        assert_eq!(
            names(&r),
            ["node_filesystem_avail_bytes", "process_max_fds"]
        );
    }

    #[test]
    fn problems_say_which_item() {
        let sets: IndexMap<String, Queries> =
            from_yaml("perf: [up, {name: up, query: 'up == 1'}]\n").unwrap();
        let e = resolve(&Queries::default(), &sets, None).unwrap_err();
        assert_eq!(e.at, Some(QueryAt::Set("perf".into(), 1)));
        assert!(
            e.message.starts_with("`up` names two different queries"),
            "{}",
            e.message
        );
        let e = resolve(&parse("- up\n- ' '\n"), &IndexMap::new(), None).unwrap_err();
        assert_eq!(e.at, Some(QueryAt::Queries(1)));
        let e = resolve(&Queries::default(), &sets, Some(&["prf".into()])).unwrap_err();
        assert_eq!(e.at, Some(QueryAt::Sets(0)));
        assert_eq!(
            e.message,
            "`sets` names `prf`, which is not in `metric_sets` (did you mean `perf`?)"
        );
        let e = resolve(&Queries::default(), &IndexMap::new(), None).unwrap_err();
        assert_eq!(e.message, "no queries: give `queries` or `metric_sets`");
    }

    #[test]
    fn malformed_items_are_explained() {
        let e = from_yaml::<Queries>("- up\n- {name: a}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `query`"), "{e}");
        let e = from_yaml::<Queries>("- {query: up, step: 5s}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `step`"), "{e}");
    }
}
