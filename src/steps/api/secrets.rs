//! Secret values never reach disk. Values a plan holds under a secret-like name (`*TOKEN*`,
//! `*PASSWORD*`…) — read from the environment (`env()`), given as a var (in the plan or with
//! `--set`), or written as a literal in a step's `env:` map — are replaced wherever they appear
//! in the manifest, and in the fault ledger by a `${env:NAME}` reference that recovery resolves
//! again from its own environment — so `ttplan chaos clean --run` after a crash still works
//! when NAME is set.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::plan::template::Templates;
use crate::plan::Plan;
use crate::traffic::record::is_secret_name;

/// Secrets shorter than this are not searched for: they would match unrelated text.
const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// (variable name, value), longest value first so overlapping secrets redact fully.
    values: Vec<(String, String)>,
}

impl Secrets {
    /// From the environment variables the plan read.
    pub fn from_env_reads(reads: &BTreeMap<String, Option<String>>) -> Self {
        Self::from_named(
            reads
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))),
        )
    }

    /// Everything the plan holds under a secret-like name: the environment variables it read,
    /// its vars (a `--set` value included) and the literals of its steps' `env:` maps. A step's
    /// env value that renders only at step start (a template) is not known yet and not listed.
    pub fn from_plan<S>(plan: &Plan<S>) -> Self {
        let reads = plan.templates.env_reads();
        let env_reads = reads
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        let vars = plan.vars.iter().filter_map(|(k, v)| match v.to_json() {
            Value::String(s) => Some((k.clone(), s)),
            Value::Number(n) => Some((k.clone(), n.to_string())),
            _ => None,
        });
        let step_env = plan.steps.values().flat_map(|s| {
            s.common
                .env
                .iter()
                .filter(|(_, v)| !Templates::is_template(v))
                .map(|(k, v)| (k.clone(), v.clone()))
        });
        Self::from_named(env_reads.chain(vars).chain(step_env))
    }

    /// The values of secret-like names, longest first, each value once.
    fn from_named(named: impl Iterator<Item = (String, String)>) -> Self {
        let mut values: Vec<(String, String)> = named
            .filter(|(k, _)| is_secret_name(k))
            .filter(|(_, v)| v.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.cmp(b)));
        values.dedup_by(|a, b| a.1 == b.1);
        Self { values }
    }

    /// (variable name, value) of every secret, longest value first.
    pub fn values(&self) -> &[(String, String)] {
        &self.values
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every occurrence of a secret inside a string becomes `<redacted:NAME>`.
    pub fn redact(&self, v: &mut Value) {
        self.replace(v, |name| format!("<redacted:{name}>"));
    }

    /// Every occurrence of a secret inside a string becomes `${env:NAME}` (see [`Secrets::restore`]).
    pub fn to_references(&self, v: &mut Value) {
        self.replace(v, |name| format!("${{env:{name}}}"));
    }

    fn replace(&self, v: &mut Value, with: impl Fn(&str) -> String + Copy) {
        if self.values.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                for (name, secret) in &self.values {
                    if s.contains(secret.as_str()) {
                        *s = s.replace(secret.as_str(), &with(name));
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.replace(x, with)),
            Value::Object(map) => map.values_mut().for_each(|x| self.replace(x, with)),
            _ => {}
        }
    }
}

/// Resolves `${env:NAME}` references written by [`Secrets::to_references`].
///
/// # Errors
/// A referenced variable that is not set.
pub fn restore(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            format!(
                "the secret ${{env:{name}}} is needed for recovery: set {name} in the environment"
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets() -> Secrets {
        let mut reads = BTreeMap::new();
        reads.insert("API_TOKEN".to_string(), Some("s3cr3t".to_string()));
        reads.insert(
            "PROMETHEUS_URL".to_string(),
            Some("http://p:9090".to_string()),
        );
        reads.insert("SHORT_KEY".to_string(), Some("ab".to_string()));
        Secrets::from_env_reads(&reads)
    }

    #[test]
    fn secret_values_are_replaced_everywhere() {
        let mut v =
            json!({"vars": {"t": "Bearer s3cr3t"}, "list": ["s3cr3t", "http://p:9090"], "n": 1});
        secrets().redact(&mut v);
        assert_eq!(
            v,
            json!({"vars": {"t": "Bearer <redacted:API_TOKEN>"}, "list": ["<redacted:API_TOKEN>", "http://p:9090"], "n": 1})
        );
    }

    #[test]
    fn one_value_under_several_names_is_one_secret() {
        let s = Secrets::from_named(
            [
                ("TT_AUTH_TOKEN", "tok-123456"),
                ("EXPECTED_TOKEN", "tok-123456"),
                ("api_key", "longer-key-value"),
                ("PLAIN", "not-a-secret"),
                ("SHORT_KEY", "abc"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(
            s.values(),
            [
                ("api_key".to_string(), "longer-key-value".to_string()),
                ("EXPECTED_TOKEN".to_string(), "tok-123456".to_string()),
            ]
        );
    }

    #[test]
    fn references_round_trip_through_the_environment() {
        let mut v = json!("token=s3cr3t");
        secrets().to_references(&mut v);
        assert_eq!(v, json!("token=${env:API_TOKEN}"));
        assert!(restore("x ${env:TTPLAN_SURELY_UNSET} y")
            .unwrap_err()
            .contains("TTPLAN_SURELY_UNSET"));
        assert_eq!(restore("no refs").unwrap(), "no refs");
    }
}
