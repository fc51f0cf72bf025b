//! Secret values never reach disk. Values a plan read from secret-named environment variables
//! (`*TOKEN*`, `*PASSWORD*`…) are replaced wherever they appear in the manifest, and in the
//! fault ledger by a `${env:NAME}` reference that recovery resolves again from its own
//! environment — so `ttplan chaos clean --run` after a crash still works when NAME is set.

use std::collections::BTreeMap;

use serde_json::Value;

use super::manifest::is_secret_name;

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
        let mut values: Vec<(String, String)> = reads
            .iter()
            .filter(|(k, _)| is_secret_name(k))
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .filter(|(_, v)| v.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        Self { values }
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
