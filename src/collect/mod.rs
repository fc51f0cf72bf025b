//! Collectors: the code that pulls one data modality out of a running system and streams it to
//! the dataset. Step kinds in `src/steps/` are thin wrappers that turn plan fields into a
//! collector's settings; everything protocol-specific lives here so it can be tested without the
//! engine.

pub mod endpoint;
pub mod logs;
pub mod metrics;
pub mod traces;
pub mod window;

use chrono::{DateTime, Utc};

/// A window bound from the plan (`start`, `end`, `since`), RFC 3339 in any offset, as UTC.
///
/// # Errors
/// A message naming the field.
pub fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{field}`: `{s}` is not an RFC 3339 time ({e}; e.g. 2025-11-15T09:00:00Z)")
        })
}

/// The `strftime` shape of the `<ts>` in collector file names (`_metrics_<ts>.csv`,
/// `_skywalking_traces_<ts>.json`, `<pod>_<ts>.log`…): the published dataset's
/// `%Y%m%d_%H%M%S`, which its loaders glob and parse. Written in UTC.
pub const FILE_TS_FORMAT: &str = "%Y%m%d_%H%M%S";

/// `at` as a collector file name's `<ts>` ([`FILE_TS_FORMAT`], UTC).
pub fn file_ts(at: DateTime<Utc>) -> String {
    at.format(FILE_TS_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ts_has_the_published_shape() {
        let at = DateTime::parse_from_rfc3339("2025-11-03T19:21:41.900+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(file_ts(at), "20251103_172141");
    }
}
