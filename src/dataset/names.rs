//! The names consumers of the published dataset parse: experiment names and file time stamps
//! (`../shared/reference/DATASET.md`).

use chrono::NaiveDateTime;

/// The 13 experiments of the published dataset (extra ones follow the same pattern).
pub const PUBLISHED: [&str; 13] = [
    "Normal_case",
    "Lv_P_CPU_preserve",
    "Lv_P_DISKIO_preserve",
    "Lv_P_NETLOSS_preserve",
    "Lv_S_DNSFAIL_preserve_no_order",
    "Lv_S_HTTPABORT_preserve",
    "Lv_S_KILLPOD_preserve",
    "Lv_D_cachelimit",
    "Lv_D_CONNECTION_POOL_exhaustion",
    "Lv_D_TRANSACTION_timeout",
    "Lv_C_exception_injection",
    "Lv_C_security_check",
    "Lv_C_travel_detail_failure",
];

/// The baseline's name: its folder is `Normal_case_em_<stamp>`, not `<name>_<stamp>_em`.
pub const BASELINE: &str = "Normal_case";

/// An experiment folder name, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentName {
    /// `Lv_P_CPU_preserve`, `Normal_case`…
    pub name: String,
    /// `YYYYMMDDTHHMMSSZ`.
    pub stamp: String,
    /// One of [`PUBLISHED`].
    pub published: bool,
}

fn is_stamp(s: &str) -> bool {
    s.len() == 16 && NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").is_ok()
}

/// Parses `<name>_<YYYYMMDDTHHMMSSZ>_em` (`<name>` = `Lv_<P|S|D|C>_…`) or
/// `Normal_case_em_<YYYYMMDDTHHMMSSZ>`.
///
/// # Errors
/// What the folder name lacks.
pub fn parse_experiment(folder: &str) -> Result<ExperimentName, String> {
    let done = |name: &str, stamp: &str| ExperimentName {
        name: name.to_string(),
        stamp: stamp.to_string(),
        published: PUBLISHED.contains(&name),
    };
    if let Some(stamp) = folder.strip_prefix("Normal_case_em_") {
        if is_stamp(stamp) {
            return Ok(done(BASELINE, stamp));
        }
        return Err(format!(
            "`{folder}`: the baseline is `Normal_case_em_<YYYYMMDDTHHMMSSZ>`"
        ));
    }
    let shape = "`<name>_<YYYYMMDDTHHMMSSZ>_em` with `<name>` = `Lv_<P|S|D|C>_…`, or `Normal_case_em_<YYYYMMDDTHHMMSSZ>`";
    let Some(rest) = folder.strip_suffix("_em") else {
        return Err(format!("`{folder}` does not end in `_em`: want {shape}"));
    };
    let Some((name, stamp)) = rest.rsplit_once('_') else {
        return Err(format!("`{folder}`: want {shape}"));
    };
    if !is_stamp(stamp) {
        return Err(format!(
            "`{folder}`: `{stamp}` is not a UTC time stamp `YYYYMMDDTHHMMSSZ`; want {shape}"
        ));
    }
    if name == BASELINE {
        return Err(format!(
            "`{folder}`: the baseline is named `Normal_case_em_{stamp}` (`_em` before the time stamp)"
        ));
    }
    let level_ok = name
        .strip_prefix("Lv_")
        .and_then(|r| r.split_once('_'))
        .is_some_and(|(level, what)| {
            matches!(level, "P" | "S" | "D" | "C")
                && !what.is_empty()
                && what.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !level_ok {
        return Err(format!(
            "`{folder}`: `{name}` is not `Lv_<P|S|D|C>_…`; want {shape}"
        ));
    }
    Ok(done(name, stamp))
}

/// The `<ts>` of a collector file name: `%Y%m%d_%H%M%S`.
pub fn is_file_ts(s: &str) -> bool {
    s.len() == 15 && NaiveDateTime::parse_from_str(s, "%Y%m%d_%H%M%S").is_ok()
}

/// `<prefix><ts><suffix>` → `<ts>` when it has the published shape.
pub fn file_ts<'a>(file: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    file.strip_prefix(prefix)?
        .strip_suffix(suffix)
        .filter(|ts| is_file_ts(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_names_parse() {
        let e = parse_experiment("Lv_S_DNSFAIL_preserve_no_order_20251103T192141Z_em").unwrap();
        assert_eq!(e.name, "Lv_S_DNSFAIL_preserve_no_order");
        assert_eq!(e.stamp, "20251103T192141Z");
        assert!(e.published);
        let e = parse_experiment("Normal_case_em_20251103T192141Z").unwrap();
        assert_eq!(e.name, "Normal_case");
        assert!(e.published);
        let e = parse_experiment("Lv_S_KILLPOD_order_20251103T192141Z_em").unwrap();
        assert!(!e.published, "an extra experiment following the pattern");
    }

    #[test]
    fn other_shapes_are_refused_with_the_reason() {
        for (folder, why) in [
            (
                "Lv_S_DNS_preserve_20251103T192141Z",
                "does not end in `_em`",
            ),
            (
                "Lv_P_CPU_preserve_20251103_192141_em",
                "is not a UTC time stamp",
            ),
            (
                "Normal_case_20251103T192141Z_em",
                "the baseline is named `Normal_case_em_",
            ),
            ("Normal_20251103T192141Z_em", "`Normal` is not `Lv_"),
            ("Lv_X_CPU_20251103T192141Z_em", "is not `Lv_"),
            ("Normal_case_em_2025", "the baseline is `Normal_case_em_"),
        ] {
            let e = parse_experiment(folder).unwrap_err();
            assert!(e.contains(why), "{folder}: {e}");
        }
    }

    #[test]
    fn file_stamps() {
        assert_eq!(
            file_ts("x_metrics_20251103_192141.csv", "x_metrics_", ".csv"),
            Some("20251103_192141")
        );
        assert_eq!(
            file_ts("x_metrics_20251103T192141Z.csv", "x_metrics_", ".csv"),
            None
        );
        assert!(!is_file_ts("20251341_192141"));
    }
}
