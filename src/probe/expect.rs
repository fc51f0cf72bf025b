//! The tolerance a probe's number must meet: bounds (`gt`, `ge`, `lt`, `le`), equality
//! (`eq`, `ne`) and ranges (`between`, `outside`), all of which must hold — Chaos Toolkit's
//! "number or range" tolerance with explicit comparators.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// value > gt
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// value ≥ ge
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ge: Option<f64>,
    /// value < lt
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// value ≤ le
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub le: Option<f64>,
    /// value = eq
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<f64>,
    /// value ≠ ne
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ne: Option<f64>,
    /// a ≤ value ≤ b
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between: Option<[f64; 2]>,
    /// value < a or value > b
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<[f64; 2]>,
}

impl Expect {
    /// Whether no comparator is set.
    pub fn is_empty(&self) -> bool {
        *self == Expect::default()
    }

    /// What is wrong with the comparators themselves (an empty or impossible range).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.is_empty() {
            out.push(
                "`expect` sets no comparator (gt, ge, lt, le, eq, ne, between, outside)".into(),
            );
        }
        for (name, r) in [("between", self.between), ("outside", self.outside)] {
            if let Some([a, b]) = r {
                if a > b {
                    out.push(format!(
                        "`{name}: [{a}, {b}]`: the lower bound is above the upper"
                    ));
                }
            }
        }
        let lower = self.gt.or(self.ge);
        let upper = self.lt.or(self.le);
        if let (Some(l), Some(u)) = (lower, upper) {
            if l > u {
                out.push(format!("no value is above {l} and below {u}"));
            }
        }
        for (name, v) in self.numbers() {
            if !v.is_finite() {
                out.push(format!("`{name}` must be a finite number"));
            }
        }
        out
    }

    fn numbers(&self) -> Vec<(&'static str, f64)> {
        let mut v = Vec::new();
        for (n, x) in [
            ("gt", self.gt),
            ("ge", self.ge),
            ("lt", self.lt),
            ("le", self.le),
            ("eq", self.eq),
            ("ne", self.ne),
        ] {
            if let Some(x) = x {
                v.push((n, x));
            }
        }
        for (n, r) in [("between", self.between), ("outside", self.outside)] {
            if let Some([a, b]) = r {
                v.push((n, a));
                v.push((n, b));
            }
        }
        v
    }

    /// `None` when `value` meets every comparator, else the first one it misses.
    pub fn miss(&self, value: f64) -> Option<String> {
        if value.is_nan() {
            return Some("the value is NaN".into());
        }
        let checks: [(bool, Option<String>); 8] = [
            (
                self.gt.is_none_or(|b| value > b),
                self.gt.map(|b| format!("not > {b}")),
            ),
            (
                self.ge.is_none_or(|b| value >= b),
                self.ge.map(|b| format!("not ≥ {b}")),
            ),
            (
                self.lt.is_none_or(|b| value < b),
                self.lt.map(|b| format!("not < {b}")),
            ),
            (
                self.le.is_none_or(|b| value <= b),
                self.le.map(|b| format!("not ≤ {b}")),
            ),
            (
                self.eq.is_none_or(|b| value == b),
                self.eq.map(|b| format!("not = {b}")),
            ),
            (
                self.ne.is_none_or(|b| value != b),
                self.ne.map(|b| format!("= {b}")),
            ),
            (
                self.between.is_none_or(|[a, b]| (a..=b).contains(&value)),
                self.between.map(|[a, b]| format!("not in [{a}, {b}]")),
            ),
            (
                self.outside.is_none_or(|[a, b]| value < a || value > b),
                self.outside.map(|[a, b]| format!("inside [{a}, {b}]")),
            ),
        ];
        checks
            .into_iter()
            .find(|(ok, _)| !ok)
            .and_then(|(_, why)| why)
            .map(|why| format!("{value} is {why}"))
    }

    pub fn passes(&self, value: f64) -> bool {
        self.miss(value).is_none()
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .numbers()
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_comparator_must_hold() {
        let e = Expect {
            gt: Some(1.0),
            le: Some(3.0),
            ..Expect::default()
        };
        assert!(e.passes(3.0));
        assert!(!e.passes(1.0));
        assert_eq!(e.miss(4.0).unwrap(), "4 is not ≤ 3");
        let r = Expect {
            between: Some([0.5, 1.0]),
            ..Expect::default()
        };
        assert!(r.passes(0.5) && r.passes(1.0) && !r.passes(1.01));
        let o = Expect {
            outside: Some([0.5, 1.0]),
            ..Expect::default()
        };
        assert!(!o.passes(0.7) && o.passes(2.0));
        assert!(!o.passes(f64::NAN));
    }

    #[test]
    fn impossible_tolerances_are_reported() {
        assert!(!Expect::default().problems().is_empty());
        let e = Expect {
            between: Some([2.0, 1.0]),
            ..Expect::default()
        };
        assert!(e.problems()[0].contains("lower bound"));
        let e = Expect {
            gt: Some(5.0),
            lt: Some(1.0),
            ..Expect::default()
        };
        assert!(e.problems()[0].contains("no value"));
    }
}
