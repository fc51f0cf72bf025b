//! Collectors: the code that pulls one data modality out of a running system and streams it to
//! the dataset. Step kinds in `src/steps/` are thin wrappers that turn plan fields into a
//! collector's settings; everything protocol-specific lives here so it can be tested without the
//! engine.

pub mod endpoint;
pub mod logs;
pub mod metrics;
pub mod traces;

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
