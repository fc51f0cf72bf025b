//! Line coverage per service from `coverage_report/<EXP>/<service>/`: the dataset's boxed
//! `coverage-summary.txt`, the older tab-separated table, or `coverage-summary.json`.

use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct CoverageRow {
    pub service: String,
    pub lines: u64,
    /// Integer percentage as the summary states it; `None` when the service has no lines.
    pub percent: Option<f64>,
}

/// Parses one summary text (boxed or tab-separated); `service` names the folder it came from.
pub fn parse_summary_txt(text: &str, service: &str) -> Option<CoverageRow> {
    let mut name = service.to_string();
    for line in text.lines() {
        if let Some(s) = line.trim().strip_prefix("Service:") {
            name = s.trim().to_string();
        }
        let t = line.trim();
        if t.starts_with("TOTAL") {
            // `TOTAL               Lines    107  Cover  29%`
            let words: Vec<&str> = t.split_whitespace().collect();
            let after = |k: &str| {
                words
                    .iter()
                    .position(|w| *w == k)
                    .and_then(|i| words.get(i + 1))
            };
            let lines = after("Lines")?.parse().ok()?;
            let pct = after("Cover")?.trim_end_matches('%').parse().ok();
            return Some(CoverageRow {
                service: name,
                lines,
                percent: pct.filter(|_| lines > 0),
            });
        }
        // `service<TAB>total_lines<TAB>line_coverage`
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() == 3 && cols[0] != "service" {
            if let Ok(lines) = cols[1].trim().parse() {
                return Some(CoverageRow {
                    service: cols[0].to_string(),
                    lines,
                    percent: cols[2].trim().trim_end_matches('%').parse().ok(),
                });
            }
        }
    }
    None
}

fn parse_summary_json(text: &str, service: &str) -> Option<CoverageRow> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let line = v.pointer("/counters/LINE")?;
    let covered = line["covered"].as_u64()?;
    let lines = line["total"]
        .as_u64()
        .or_else(|| Some(covered + line["missed"].as_u64()?))?;
    Some(CoverageRow {
        service: v["service"].as_str().unwrap_or(service).to_string(),
        lines,
        percent: (lines > 0).then(|| (100.0 * covered as f64 / lines as f64).round_ties_even()),
    })
}

/// One row per service folder with a readable summary, sorted by service.
pub fn read_dir(dir: &Path) -> Vec<CoverageRow> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut rows: Vec<CoverageRow> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let service = p.file_name()?.to_string_lossy().into_owned();
            let txt = std::fs::read_to_string(p.join("coverage-summary.txt")).ok();
            txt.and_then(|t| parse_summary_txt(&t, &service))
                .or_else(|| {
                    let j = std::fs::read_to_string(p.join("coverage-summary.json")).ok()?;
                    parse_summary_json(&j, &service)
                })
        })
        .collect();
    rows.sort_by(|a, b| a.service.cmp(&b.service));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dataset_box_is_read() {
        let t = "==================================================================\n  Simple Code Coverage Report\n------------------------------------------------------------------\nService: ts-admin-order-service\n------------------------------------------------------------------\nTOTAL               Lines    107  Cover  29%\n------------------------------------------------------------------\n";
        assert_eq!(
            parse_summary_txt(t, "dir"),
            Some(CoverageRow {
                service: "ts-admin-order-service".into(),
                lines: 107,
                percent: Some(29.0)
            })
        );
    }

    #[test]
    fn tab_table_and_json_are_read() {
        let t = "service\ttotal_lines\tline_coverage\nts-a\t10\t50%\n";
        assert_eq!(parse_summary_txt(t, "x").unwrap().percent, Some(50.0));
        let j = r#"{"service":"ts-b","counters":{"LINE":{"missed":3,"covered":1,"total":4}}}"#;
        assert_eq!(parse_summary_json(j, "x").unwrap().percent, Some(25.0));
        let none = "service\ttotal_lines\tline_coverage\nts-c\t0\tn/a\n";
        assert_eq!(parse_summary_txt(none, "x").unwrap().percent, None);
    }
}
