//! The typed parts of a plan that every step shares: common step fields and durations.
//! Kind-specific fields live with their kind in `src/steps/`.

use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Top-level fields of a plan file.
pub const TOP_LEVEL_FIELDS: &[&str] = &[
    "name",
    "description",
    "extends",
    "vars",
    "sources",
    "steps",
    "hypothesis",
];

/// Fields every step accepts, whatever its kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepCommon {
    /// What the step does: one of the registered step kinds (`ttplan schema` lists them).
    pub kind: String,
    /// Steps that must finish before this one starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Free text shown by `ttplan plan`.
    #[serde(default)]
    pub description: Option<String>,
    /// Fail the attempt when it runs longer than this (e.g. `90s`, `5m`).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Extra attempts after a failure.
    #[serde(default)]
    pub retries: u32,
    /// Wait before the first retry; doubles on every further retry (capped at 5 minutes).
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// A failure of this step is recorded but does not fail the run or skip its dependents.
    #[serde(default)]
    pub allow_failure: bool,
    /// Run even when an upstream step failed or the run was interrupted (teardown, cleanup).
    #[serde(default)]
    pub always: bool,
    /// Environment variables for the step (added to ttplan's own environment).
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Files the step produces, as paths or globs relative to the output root; each is hashed
    /// into the manifest, and a pattern that matches nothing fails the step.
    #[serde(default)]
    pub artifacts: Vec<String>,
}

impl StepCommon {
    pub const FIELDS: &'static [&'static str] = &[
        "kind",
        "after",
        "description",
        "timeout",
        "retries",
        "backoff",
        "allow_failure",
        "always",
        "env",
        "artifacts",
    ];
}

fn default_backoff() -> Duration {
    Duration(std::time::Duration::from_secs(1))
}

/// A duration written with units: `500ms`, `90s`, `5m`, `1h 30m`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }

    pub fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "invalid duration `{s}`: add a unit, e.g. `{s}s` or `{s}m`"
            ));
        }
        humantime::parse_duration(s).map(Duration).map_err(|e| {
            format!("invalid duration `{s}`: {e} (examples: `500ms`, `90s`, `5m`, `1h 30m`)")
        })
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `90s` or `5m`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration `{n}`: add a unit, e.g. `{n}s` or `{n}m`"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
                self.visit_i64(n as i64)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration with units, e.g. `500ms`, `90s`, `5m`, `1h 30m` (or a template).",
            "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+\\s*)+$|\\{\\{"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!("90s".parse::<Duration>().unwrap().get().as_secs(), 90);
        assert_eq!("1h 30m".parse::<Duration>().unwrap().get().as_secs(), 5400);
        assert!("90".parse::<Duration>().unwrap_err().contains("add a unit"));
        assert!("soon".parse::<Duration>().is_err());
    }
}
