//! The GraphQL documents the trace collector sends, and the protocol's `Duration` strings.
//!
//! Every document is a `const` listed in [`DOCUMENTS`] so a test can validate each one against
//! the real SkyWalking schema. None of them asks for `TraceBrief.total`: it was removed in query
//! protocol 9.1 and newer OAPs reject a query that names it.

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Asks whether the OAP serves `queryTraces` (query protocol 10.3+, BanyanDB storage). Older
/// OAPs answer with a "field undefined" GraphQL error, which means v1.
pub const PROBE_V2: &str = "query ProbeTracesV2 { hasQueryTracesV2Support }";

/// The OAP JVM's timezone, for `timezone: auto`.
pub const TIME_INFO: &str = "query TimeInfo { getTimeInfo { timezone currentTimestamp } }";

/// v1 list: one page of segment summaries. No `total` (see the module docs).
pub const BASIC_TRACES: &str = r#"query BasicTraces($condition: TraceQueryCondition) {
  queryBasicTraces(condition: $condition) {
    traces { segmentId endpointNames duration start isError traceIds }
  }
}"#;

/// The span fields both protocol versions share; kept in one place so v1 and v2 write the same
/// span shape.
macro_rules! span_fields {
    () => {
        "traceId segmentId spanId parentSpanId
      refs { traceId parentSegmentId parentSpanId type }
      serviceCode serviceInstanceName startTime endTime endpointName type peer component
      isError layer
      tags { key value }
      logs { time data { key value } }
      attachedEvents {
        startTime { seconds nanos } event endTime { seconds nanos }
        tags { key value } summary { key value }
      }"
    };
}

/// v1 detail: all spans of one trace.
pub const TRACE_DETAIL: &str = concat!(
    "query TraceDetail($traceId: ID!, $duration: Duration) {\n  queryTrace(traceId: $traceId, duration: $duration) {\n    spans {\n      ",
    span_fields!(),
    "\n    }\n  }\n}"
);

/// v2 list: one page of whole traces, spans inline.
pub const TRACES_V2: &str = concat!(
    "query TracesV2($condition: TraceQueryCondition) {\n  queryTraces(condition: $condition) {\n    traces {\n      spans {\n        ",
    span_fields!(),
    "\n      }\n    }\n    retrievedTimeRange { startTime endTime }\n  }\n}"
);

/// Every document the collector may send, by name.
pub const DOCUMENTS: &[(&str, &str)] = &[
    ("PROBE_V2", PROBE_V2),
    ("TIME_INFO", TIME_INFO),
    ("BASIC_TRACES", BASIC_TRACES),
    ("TRACE_DETAIL", TRACE_DETAIL),
    ("TRACES_V2", TRACES_V2),
];

/// Granularity of the protocol's `Duration`: it decides the string format and the time buckets
/// the OAP scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum QueryStep {
    Second,
    #[default]
    Minute,
    Hour,
    Day,
}

impl QueryStep {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryStep::Second => "SECOND",
            QueryStep::Minute => "MINUTE",
            QueryStep::Hour => "HOUR",
            QueryStep::Day => "DAY",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            QueryStep::Second => "%Y-%m-%d %H%M%S",
            QueryStep::Minute => "%Y-%m-%d %H%M",
            QueryStep::Hour => "%Y-%m-%d %H",
            QueryStep::Day => "%Y-%m-%d",
        }
    }

    fn unit(self) -> ChronoDuration {
        match self {
            QueryStep::Second => ChronoDuration::seconds(1),
            QueryStep::Minute => ChronoDuration::minutes(1),
            QueryStep::Hour => ChronoDuration::hours(1),
            QueryStep::Day => ChronoDuration::days(1),
        }
    }
}

/// A `Duration` input as the OAP reads it, plus the UTC instants it really covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryDuration {
    pub start: String,
    pub end: String,
    pub step: QueryStep,
    /// First instant of the start bucket.
    #[serde(skip)]
    pub covers_from: DateTime<Utc>,
    /// First instant after the end bucket.
    #[serde(skip)]
    pub covers_until: DateTime<Utc>,
}

impl QueryDuration {
    /// Buckets the half-open window `[from, until)` as the OAP will read it in `tz`.
    ///
    /// The OAP includes the whole unit named by the end string, so the end bucket is the one
    /// holding the last instant *inside* the window (`until − 1 ms`): an `until` that falls
    /// exactly on a boundary must not pull in the next, entirely outside, bucket.
    pub fn bucket(
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        step: QueryStep,
        tz: FixedOffset,
    ) -> Self {
        let last = if until > from {
            until - ChronoDuration::milliseconds(1)
        } else {
            from
        };
        let start = from.with_timezone(&tz).format(step.pattern()).to_string();
        let end = last.with_timezone(&tz).format(step.pattern()).to_string();
        let covers_from = bucket_start(from, step, tz);
        let covers_until = bucket_start(last, step, tz) + step.unit();
        Self {
            start,
            end,
            step,
            covers_from,
            covers_until,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "start": self.start, "end": self.end, "step": self.step.as_str() })
    }
}

/// The first instant of the `step` bucket (in `tz`) that holds `t`.
fn bucket_start(t: DateTime<Utc>, step: QueryStep, tz: FixedOffset) -> DateTime<Utc> {
    let offset_ms = i64::from(tz.local_minus_utc()) * 1000;
    let local_ms = t.timestamp_millis() + offset_ms;
    let unit_ms = step.unit().num_milliseconds();
    let floored = local_ms.div_euclid(unit_ms) * unit_ms;
    DateTime::from_timestamp_millis(floored - offset_ms).unwrap_or(t)
}

/// Parses `UTC`, `Z`, `+08:00`, `+0800`, `-05:30` or `+8` into a fixed offset.
///
/// # Errors
/// A message naming the accepted forms; named zones (`Asia/Shanghai`) are not accepted because
/// the OAP's `getTimeInfo` reports offsets, and `timezone: auto` asks it directly.
pub fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t == "GMT" {
        return FixedOffset::east_opt(0).ok_or_else(|| "bad offset".to_string());
    }
    let bad = || {
        format!(
            "invalid timezone `{s}`: use `UTC`, a fixed offset such as `+08:00` or `-0530`, \
             or `auto` to ask the OAP"
        )
    };
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
        return Err(bad());
    }
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().map_err(|_| bad())?, 0),
        3 | 4 => {
            let split = digits.len() - 2;
            (
                digits[..split].parse::<i32>().map_err(|_| bad())?,
                digits[split..].parse::<i32>().map_err(|_| bad())?,
            )
        }
        _ => return Err(bad()),
    };
    if h > 18 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// `+08:00`, the form recorded in outputs.
pub fn format_offset(tz: FixedOffset) -> String {
    let secs = tz.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tz(s: &str) -> FixedOffset {
        parse_offset(s).unwrap()
    }

    #[test]
    fn minute_strings_in_utc() {
        let d = QueryDuration::bucket(
            utc("2026-03-01T10:05:59Z"),
            utc("2026-03-01T10:37:20Z"),
            QueryStep::Minute,
            tz("UTC"),
        );
        assert_eq!(d.start, "2026-03-01 1005");
        assert_eq!(d.end, "2026-03-01 1037");
        assert_eq!(d.covers_from, utc("2026-03-01T10:05:00Z"));
        assert_eq!(d.covers_until, utc("2026-03-01T10:38:00Z"));
        assert_eq!(
            d.to_json(),
            serde_json::json!({"start": "2026-03-01 1005", "end": "2026-03-01 1037", "step": "MINUTE"})
        );
    }

    #[test]
    fn second_and_day_formats() {
        let from = utc("2026-03-01T10:05:59.250Z");
        let until = utc("2026-03-02T00:00:07Z");
        let s = QueryDuration::bucket(from, until, QueryStep::Second, tz("UTC"));
        assert_eq!(
            (s.start.as_str(), s.end.as_str()),
            ("2026-03-01 100559", "2026-03-02 000006")
        );
        let d = QueryDuration::bucket(from, until, QueryStep::Day, tz("UTC"));
        assert_eq!(
            (d.start.as_str(), d.end.as_str()),
            ("2026-03-01", "2026-03-02")
        );
    }

    #[test]
    fn hour_end_bucket_includes_its_whole_hour_but_not_the_next() {
        let from = utc("2026-03-01T09:59:00Z");
        // Ends exactly on a boundary: 11:00 would add a bucket wholly outside the window.
        let d = QueryDuration::bucket(
            from,
            utc("2026-03-01T11:00:00Z"),
            QueryStep::Hour,
            tz("UTC"),
        );
        assert_eq!(
            (d.start.as_str(), d.end.as_str()),
            ("2026-03-01 09", "2026-03-01 10")
        );
        assert_eq!(d.covers_until, utc("2026-03-01T11:00:00Z"));
        // One millisecond later the 11 o'clock bucket holds part of the window.
        let d = QueryDuration::bucket(
            from,
            utc("2026-03-01T11:00:00.001Z"),
            QueryStep::Hour,
            tz("UTC"),
        );
        assert_eq!(d.end, "2026-03-01 11");
        assert_eq!(d.covers_until, utc("2026-03-01T12:00:00Z"));
        assert_eq!(d.covers_from, utc("2026-03-01T09:00:00Z"));
    }

    #[test]
    fn strings_are_written_in_the_oap_timezone() {
        let from = utc("2026-03-01T23:30:00Z");
        let until = utc("2026-03-02T00:10:00Z");
        let d = QueryDuration::bucket(from, until, QueryStep::Hour, tz("+08:00"));
        assert_eq!(
            (d.start.as_str(), d.end.as_str()),
            ("2026-03-02 07", "2026-03-02 08")
        );
        assert_eq!(d.covers_from, utc("2026-03-01T23:00:00Z"));
        assert_eq!(d.covers_until, utc("2026-03-02T01:00:00Z"));
        // Half-hour offsets shift the hour buckets by 30 minutes.
        let d = QueryDuration::bucket(from, until, QueryStep::Hour, tz("+05:30"));
        assert_eq!(
            (d.start.as_str(), d.end.as_str()),
            ("2026-03-02 05", "2026-03-02 05")
        );
        assert_eq!(d.covers_from, utc("2026-03-01T23:30:00Z"));
        assert_eq!(d.covers_until, utc("2026-03-02T00:30:00Z"));
        let d = QueryDuration::bucket(from, until, QueryStep::Day, tz("-05:00"));
        assert_eq!(
            (d.start.as_str(), d.end.as_str()),
            ("2026-03-01", "2026-03-01")
        );
        let d = QueryDuration::bucket(from, until, QueryStep::Minute, tz("-0330"));
        assert_eq!(
            (d.start.as_str(), d.end.as_str()),
            ("2026-03-01 2000", "2026-03-01 2039")
        );
    }

    #[test]
    fn empty_or_reversed_windows_still_form_one_bucket() {
        let t = utc("2026-03-01T10:00:00Z");
        let d = QueryDuration::bucket(t, t, QueryStep::Minute, tz("UTC"));
        assert_eq!(d.start, d.end);
    }

    #[test]
    fn offsets_parse_and_print() {
        for (input, want) in [
            ("UTC", "+00:00"),
            ("Z", "+00:00"),
            ("+08:00", "+08:00"),
            ("+0800", "+08:00"),
            ("+8", "+08:00"),
            ("-05:30", "-05:30"),
            ("-0330", "-03:30"),
        ] {
            assert_eq!(format_offset(tz(input)), want, "{input}");
        }
        for bad in ["Asia/Shanghai", "08:00", "+25:00", "+08:75", "", "+"] {
            let err = parse_offset(bad).unwrap_err();
            assert!(err.contains("fixed offset"), "{bad}: {err}");
        }
    }

    #[test]
    fn no_document_asks_for_total() {
        for (name, doc) in DOCUMENTS {
            assert!(!doc.contains("total"), "{name} asks for `total`");
        }
    }
}
