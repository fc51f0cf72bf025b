//! The time window of every collector and probe, resolved one way: a bound the plan gives
//! (`start`, `end`, RFC 3339 in any offset) wins; else `start` is an anchor (the run's start, or
//! now for a probe) minus a lookback (`padding`, `window`), and `end` is when the step started.
//! The arithmetic is checked: a lookback reaching before the earliest time chrono represents is
//! an error naming its field, never a panic.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use super::parse_time;

/// A default start: `at` minus `by`, the plan field `field` (for errors).
#[derive(Debug, Clone, Copy)]
pub struct Lookback<'a> {
    pub at: DateTime<Utc>,
    pub by: Duration,
    pub field: &'a str,
}

/// Which bounds fall on whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// Both bounds as given or computed.
    Never,
    /// Only computed bounds (so a default window's samples fall on integer timestamps).
    Defaults,
    /// Every start: the log API takes `sinceTime` in whole seconds and kube rounds half up,
    /// which could start the window after a line that belongs in it; flooring keeps every line
    /// of the window (at most one second more).
    Always,
}

/// When start and end leave nothing between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// Never checked (a probe: the server answers for any range).
    Allowed,
    /// `start == end` is a window of one instant; `start > end` is an error.
    InstantOk,
    /// `end` must come after `start`.
    Rejected,
}

/// The plan's bounds and the defaults of one collector.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec<'a> {
    /// `(field, text)`: the plan field as written (`start`, or its old name `since`) and value.
    pub start: Option<(&'a str, &'a str)>,
    pub end: Option<(&'a str, &'a str)>,
    /// The start when the plan gives none; `None`: the window is open at the start.
    pub default_start: Option<Lookback<'a>>,
    /// The end when the plan gives none; `None`: open at the end.
    pub default_end: Option<DateTime<Utc>>,
    pub floor: Floor,
    pub empty: Empty,
}

/// A resolved window; a `None` bound is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl WindowSpec<'_> {
    /// # Errors
    /// A bound that is not RFC 3339, a lookback out of range, an empty window — each message
    /// names the field.
    pub fn resolve(&self) -> Result<Window, String> {
        let floor_default = matches!(self.floor, Floor::Defaults | Floor::Always);
        let start = match (self.start, self.default_start) {
            (Some((field, text)), _) => {
                let t = parse_time(field, text)?;
                Some(if self.floor == Floor::Always {
                    t.trunc_subsecs(0)
                } else {
                    t
                })
            }
            (None, Some(l)) => {
                let t = before(l)?;
                Some(if floor_default { t.trunc_subsecs(0) } else { t })
            }
            (None, None) => None,
        };
        let end = match (self.end, self.default_end) {
            (Some((field, text)), _) => Some(parse_time(field, text)?),
            (None, Some(t)) if self.floor == Floor::Defaults => Some(t.trunc_subsecs(0)),
            (None, t) => t,
        };
        if let (Some(s), Some(e)) = (start, end) {
            let empty = match self.empty {
                Empty::Allowed => false,
                Empty::InstantOk => s > e,
                Empty::Rejected => s >= e,
            };
            if empty {
                return Err(format!(
                    "the window is empty: start {} is not before end {}",
                    rfc3339(s),
                    rfc3339(e)
                ));
            }
        }
        Ok(Window { start, end })
    }

    /// [`WindowSpec::resolve`] for a window closed at both ends (given or defaulted).
    ///
    /// # Errors
    /// As `resolve`, and when a bound has neither a value nor a default.
    pub fn resolve_closed(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
        match self.resolve()? {
            Window {
                start: Some(s),
                end: Some(e),
            } => Ok((s, e)),
            _ => Err("the window needs a `start` and an `end`".into()),
        }
    }
}

/// `at - by`, checked.
fn before(l: Lookback<'_>) -> Result<DateTime<Utc>, String> {
    TimeDelta::from_std(l.by)
        .ok()
        .and_then(|d| l.at.checked_sub_signed(d))
        .ok_or_else(|| {
            format!(
                "`{}`: {} before {} is earlier than any time ttplan can represent",
                l.field,
                humantime::format_duration(l.by),
                rfc3339(l.at)
            )
        })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec<'a>(run: DateTime<Utc>, pad: Duration) -> WindowSpec<'a> {
        WindowSpec {
            start: None,
            end: None,
            default_start: Some(Lookback {
                at: run,
                by: pad,
                field: "padding",
            }),
            default_end: Some(t("2026-03-01T10:30:00.7Z")),
            floor: Floor::Never,
            empty: Empty::Rejected,
        }
    }

    #[test]
    fn defaults_are_run_start_minus_padding_until_the_step_start() {
        let run = t("2026-03-01T10:00:00.25Z");
        let s = spec(run, Duration::from_secs(60));
        assert_eq!(
            s.resolve_closed().unwrap(),
            (t("2026-03-01T09:59:00.25Z"), t("2026-03-01T10:30:00.7Z"))
        );
        // Metrics: computed bounds on whole seconds, given ones as written.
        let m = WindowSpec {
            floor: Floor::Defaults,
            ..s
        };
        assert_eq!(
            m.resolve_closed().unwrap(),
            (t("2026-03-01T09:59:00Z"), t("2026-03-01T10:30:00Z"))
        );
        let m = WindowSpec {
            start: Some(("start", "2026-03-01T10:00:00.5+01:00")),
            ..m
        };
        assert_eq!(
            m.resolve().unwrap().start,
            Some(t("2026-03-01T09:00:00.5Z"))
        );
        // Logs: every start floored; no end.
        let l = WindowSpec {
            start: Some(("since", "2026-03-01T09:59:59.5+01:00")),
            default_end: None,
            floor: Floor::Always,
            ..s
        };
        assert_eq!(
            l.resolve().unwrap(),
            Window {
                start: Some(t("2026-03-01T08:59:59Z")),
                end: None
            }
        );
        // A sub-second padding still floors, never rounds up.
        let l = WindowSpec {
            start: None,
            ..spec(t("2026-03-01T10:01:30.600Z"), Duration::from_millis(700))
        };
        let l = WindowSpec {
            default_end: None,
            floor: Floor::Always,
            ..l
        };
        assert_eq!(l.resolve().unwrap().start, Some(t("2026-03-01T10:01:29Z")));
    }

    #[test]
    fn a_huge_lookback_is_an_error_naming_the_field_not_a_panic() {
        let run = t("2026-03-01T10:00:00Z");
        for pad in [
            Duration::from_secs(400_000 * 365 * 86_400),
            Duration::from_secs(u64::MAX),
        ] {
            let e = spec(run, pad).resolve().unwrap_err();
            assert!(e.starts_with("`padding`: "), "{e}");
        }
    }

    #[test]
    fn empty_windows_and_bad_bounds_are_named() {
        let run = t("2026-03-01T10:00:00Z");
        let at = "2026-03-01T10:00:00Z";
        let s = WindowSpec {
            start: Some(("start", at)),
            end: Some(("end", at)),
            ..spec(run, Duration::ZERO)
        };
        assert!(s.resolve().unwrap_err().contains("the window is empty"));
        let instant = WindowSpec {
            empty: Empty::InstantOk,
            ..s
        };
        assert_eq!(instant.resolve_closed().unwrap(), (t(at), t(at)));
        let e = WindowSpec {
            end: Some(("end", "soon")),
            ..s
        }
        .resolve()
        .unwrap_err();
        assert!(
            e.starts_with("`end`: `soon` is not an RFC 3339 time"),
            "{e}"
        );
        // A probe's open start: nothing given, no lookback.
        let open = WindowSpec {
            start: None,
            default_start: None,
            empty: Empty::Allowed,
            ..s
        };
        assert_eq!(open.resolve().unwrap().start, None);
    }
}
