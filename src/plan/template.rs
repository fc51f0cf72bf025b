//! Templating with minijinja, in two phases.
//!
//! At load time, `vars` and step fields render against the vars, the built-ins (`name`,
//! `run_id`, `exp_name`, `plan_dir`, `out_dir`, `now_utc(fmt)`, `env(name, default)`) and each
//! other. Strings that read `steps.*` or `run.*` are left as they are and render when their
//! step starts, against the runtime context. Undefined names are errors in both phases.
//!
//! A string that is exactly one expression (`"{{ hosts }}"`) takes the expression's type, so a
//! var holding a list or a number can fill a list or number field.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value as JValue};

use super::node::{Node, Value};

/// Names that only exist while the run executes.
pub const RUNTIME_ROOTS: &[&str] = &["steps", "run"];

/// Built-in names available at load time (besides the vars).
pub const BUILTIN_NAMES: &[&str] = &[
    "name", "run_id", "exp_name", "plan_dir", "out_dir", "now_utc", "env",
];

/// minijinja's own global functions.
const JINJA_GLOBALS: &[&str] = &[
    "range",
    "dict",
    "debug",
    "namespace",
    "lipsum",
    "cycler",
    "joiner",
];

/// Environment variables a plan read through `env()`; recorded in the manifest.
pub type EnvReads = Arc<Mutex<BTreeMap<String, Option<String>>>>;

/// One variable a plan read with `env()`: its name, the value used, and whether the
/// environment set it (else the value is the template's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSource {
    pub name: String,
    pub value: String,
    pub set: bool,
}

pub struct Templates {
    env: Environment<'static>,
    env_reads: EnvReads,
    /// What each `env()` call returned (the variable's value, else the default given), so an
    /// error about a value can name the variable that sets it.
    env_used: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Templates {
    /// `now` is the run's start: every `now_utc()` of a run returns the same instant.
    pub fn new(now: DateTime<Utc>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_function(
            "now_utc",
            move |fmt: Option<String>| -> Result<String, Error> {
                use std::fmt::Write;
                let fmt = fmt.unwrap_or_else(|| "%Y-%m-%dT%H:%M:%SZ".into());
                let mut out = String::new();
                write!(out, "{}", now.format(&fmt)).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("invalid time format `{fmt}`"),
                    )
                })?;
                Ok(out)
            },
        );
        let env_reads: EnvReads = Arc::default();
        let reads = Arc::clone(&env_reads);
        let env_used: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let used = Arc::clone(&env_used);
        env.add_function("env", move |name: String, default: Option<JValue>| -> Result<JValue, Error> {
            let value = std::env::var(&name).ok();
            if let Ok(mut r) = reads.lock() {
                r.insert(name.clone(), value.clone());
            }
            let returned = value.clone().or_else(|| default.as_ref().map(|d| match d.as_str() {
                Some(s) => s.to_string(),
                None => d.to_string(),
            }));
            if let (Some(v), Ok(mut u)) = (returned, used.lock()) {
                u.insert(name.clone(), v);
            }
            match (value, default) {
                (Some(v), _) => Ok(JValue::from(v)),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("environment variable `{name}` is not set (give a default: env('{name}', '…'))"),
                )),
            }
        });
        Self {
            env,
            env_reads,
            env_used,
        }
    }

    /// Every variable `env()` read, with the value it returned and whether that value came
    /// from the environment (else it is the template's default).
    pub fn env_sources(&self) -> Vec<EnvSource> {
        let reads = self.env_reads();
        let used = self.env_used.lock().map(|u| u.clone()).unwrap_or_default();
        used.into_iter()
            .map(|(name, value)| EnvSource {
                set: reads.get(&name).is_some_and(Option::is_some),
                name,
                value,
            })
            .collect()
    }

    pub fn env_reads(&self) -> BTreeMap<String, Option<String>> {
        self.env_reads.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn is_template(s: &str) -> bool {
        s.contains("{{") || s.contains("{%") || s.contains("{#")
    }

    /// Dotted names (`steps.a.outputs.x`) a template reads that it does not define itself.
    ///
    /// # Errors
    /// Template syntax errors.
    pub fn referenced_names(&self, s: &str) -> Result<BTreeSet<String>, Error> {
        let names = match single_expression(s) {
            Some(expr) => self
                .env
                .compile_expression(expr)?
                .undeclared_variables(true),
            None => self.env.template_from_str(s)?.undeclared_variables(true),
        };
        Ok(names.into_iter().collect())
    }

    /// Whether a name (first dotted segment) is known at load time.
    pub fn is_builtin_name(root: &str) -> bool {
        BUILTIN_NAMES.contains(&root) || JINJA_GLOBALS.contains(&root)
    }

    /// Renders one string scalar into a node placed at `node`'s span.
    ///
    /// # Errors
    /// Syntax errors, undefined names, failing functions.
    pub fn render(&self, node: &Node, s: &str, ctx: &JValue) -> Result<Node, Error> {
        if let Some(expr) = single_expression(s) {
            let v = self.env.compile_expression(expr)?.eval(ctx)?;
            // Expressions yield `undefined` instead of failing, even in strict mode.
            if v.is_undefined() {
                return Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!("`{expr}` is undefined"),
                ));
            }
            let json = serde_json::to_value(&v)
                .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
            return Ok(Node::from_json(&node.span, &json));
        }
        let out = self.env.render_str(s, ctx)?;
        Ok(Node::new(node.span.clone(), Value::Str(out)))
    }
}

/// `"{{ expr }}"` and nothing else → `expr`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// A short description of a minijinja error, without its debug dump.
pub fn describe_error(e: &Error) -> String {
    let detail = e.detail().map(str::to_string);
    match (e.kind(), detail) {
        (ErrorKind::UndefinedError, Some(d)) => format!("undefined value: {d}"),
        (ErrorKind::UndefinedError, None) => "undefined value".into(),
        (ErrorKind::SyntaxError, Some(d)) => format!("template syntax error: {d}"),
        (_, Some(d)) => d,
        (k, None) => k.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{SourceFile, Span};

    fn node(s: &str) -> Node {
        let f = SourceFile::new("t", None, s.to_string());
        Node::new(Span::new(&f, 0, s.len()), Value::Str(s.to_string()))
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn single_expressions_keep_their_type() {
        let t = Templates::new(now());
        let ctx = minijinja::context! { n => 3, xs => vec!["a", "b"], who => "world" };
        let n = t.render(&node("{{ n }}"), "{{ n }}", &ctx).unwrap();
        assert!(matches!(n.value, Value::Int(3)));
        let xs = t.render(&node("{{ xs }}"), "{{ xs }}", &ctx).unwrap();
        assert!(matches!(xs.value, Value::Seq(ref v) if v.len() == 2));
        let s = t
            .render(&node("hi {{ who }}"), "hi {{ who }}", &ctx)
            .unwrap();
        assert_eq!(s.as_str(), Some("hi world"));
    }

    #[test]
    fn now_utc_is_frozen_at_run_start() {
        let t = Templates::new(now());
        let out = t
            .render(
                &node(""),
                "{{ now_utc('%Y%m%dT%H%M%SZ') }}",
                &minijinja::context! {},
            )
            .unwrap();
        assert_eq!(out.as_str(), Some("20261128T090000Z"));
        let iso = t
            .render(&node(""), "x{{ now_utc() }}", &minijinja::context! {})
            .unwrap();
        assert_eq!(iso.as_str(), Some("x2026-11-28T09:00:00Z"));
    }

    #[test]
    fn undefined_names_are_errors() {
        let t = Templates::new(now());
        let e = t
            .render(&node(""), "{{ nope }}", &minijinja::context! {})
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UndefinedError);
    }

    #[test]
    fn env_reads_are_recorded_and_defaults_apply() {
        let t = Templates::new(now());
        let out = t
            .render(
                &node(""),
                "{{ env('TTPLAN_SURELY_UNSET_VAR', 'dflt') }}",
                &minijinja::context! {},
            )
            .unwrap();
        assert_eq!(out.as_str(), Some("dflt"));
        assert_eq!(t.env_reads().get("TTPLAN_SURELY_UNSET_VAR"), Some(&None));
        // The value used is kept with its origin, so errors can name the variable.
        assert_eq!(
            t.env_sources(),
            vec![EnvSource {
                name: "TTPLAN_SURELY_UNSET_VAR".into(),
                value: "dflt".into(),
                set: false
            }]
        );
        assert!(t
            .render(
                &node(""),
                "{{ env('TTPLAN_SURELY_UNSET_VAR') }}",
                &minijinja::context! {}
            )
            .is_err());
    }

    #[test]
    fn referenced_names_are_dotted() {
        let t = Templates::new(now());
        let names = t
            .referenced_names("{{ steps.a.outputs.x }} {{ name }}")
            .unwrap();
        assert!(names.contains("name"));
        assert!(names.iter().any(|n| n.starts_with("steps.a")), "{names:?}");
    }
}
