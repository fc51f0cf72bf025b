//! The index page of a campaign or output root: one row per run folder, linking each run's
//! page. A run without a page gets one written first, so every link works.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::html::{esc, fmt_ms, status_badge, CSS};
use super::run::{load_faults, FaultRow, RunMeta, REPORT_FILE, SUMMARY_FILE};
use super::{is_run_dir, write_run_report, ReportError};

pub const INDEX_FILE: &str = "index.html";

/// The run folders below `dir`: `dir/runs/*` (an output root), else `dir/*`, sorted.
pub fn find_runs(dir: &Path) -> Vec<PathBuf> {
    let base = if dir.join("runs").is_dir() {
        dir.join("runs")
    } else {
        dir.to_path_buf()
    };
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&base)
        .map(|e| {
            e.flatten()
                .map(|e| e.path())
                .filter(|p| is_run_dir(p))
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs
}

/// Whether the faults were confirmed: the probes' `effect.verified` when the label has one
/// (`engine::labels::add_effects`), else whether the chaos controller recorded the injection.
pub fn fault_verified(faults: Option<&[FaultRow]>, labels: Option<&Value>) -> String {
    let Some(faults) = faults else {
        return "—".into();
    };
    match crate::engine::labels::faults_verified(labels, faults.len(), |i| {
        faults[i].injected_source == "controller" && faults[i].injected.is_some()
    }) {
        None => "no fault".into(),
        Some(true) => format!("yes ({})", faults.len()),
        Some(false) => "no".into(),
    }
}

fn rel_link(from_dir: &Path, to: &Path) -> String {
    let from: Vec<_> = from_dir.components().collect();
    let to_c: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to_c[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts
        .iter()
        .map(|p| {
            p.replace('%', "%25")
                .replace(' ', "%20")
                .replace('#', "%23")
                .replace('?', "%3F")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes the index of the runs below `dir` to `out` (default `dir/index.html`).
///
/// # Errors
/// When `dir` holds no run, or the page cannot be written.
pub fn write_index(dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let runs = find_runs(&dir);
    if runs.is_empty() {
        return Err(ReportError::NotARun { path: dir });
    }
    let out = out.map_or_else(|| dir.join(INDEX_FILE), Path::to_path_buf);
    let out = std::path::absolute(&out).unwrap_or(out);
    let out_dir = out.parent().map_or_else(|| dir.clone(), Path::to_path_buf);
    let mut rows = String::new();
    for run in &runs {
        let page = run.join(REPORT_FILE);
        let mut note = String::new();
        if !page.exists() || !run.join(SUMMARY_FILE).exists() {
            if let Err(e) = write_run_report(run, None) {
                note = format!("<br><small>report failed: {}</small>", esc(&e.to_string()));
            }
        }
        let meta = RunMeta::load(run).unwrap_or_default();
        let labels: Option<Value> = std::fs::read(run.join(crate::engine::labels::LABELS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let faults = load_faults(run).ok().flatten();
        let summary: Value = std::fs::read(run.join(SUMMARY_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let cell = |k: &str| match &summary[k] {
            Value::Null => "—".to_string(),
            v => v.to_string(),
        };
        let name = if meta.exp_name.is_empty() {
            run.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            meta.exp_name.clone()
        };
        let link = if page.exists() {
            format!(
                "<a href=\"{}\">{}</a>",
                esc(&rel_link(&out_dir, &page)),
                esc(&name)
            )
        } else {
            esc(&name)
        };
        let _ = write!(
            rows,
            "<tr class=\"run\"><td>{link}{note}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            status_badge(if meta.status.is_empty() { "unknown" } else { &meta.status }),
            fmt_ms(meta.duration_ms),
            esc(&fault_verified(faults.as_deref(), labels.as_ref())),
            cell("metrics_rows"),
            cell("traces"),
            cell("api_requests"),
            cell("log_lines"),
            cell("coverage_services"),
        );
    }
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ttplan runs — {0}</title><style>{CSS}</style></head><body><header id=\"header\"><h1>Runs in {0}</h1><p>{1} run(s).</p></header><section id=\"runs\"><table><tr><th>experiment</th><th>status</th><th>duration</th><th>fault verified</th><th>metric rows</th><th>traces</th><th>API requests</th><th>log lines</th><th>coverage services</th></tr>{rows}</table></section></body></html>\n",
        esc(&dir.display().to_string()),
        runs.len()
    );
    crate::atomic_write::write_atomic(&out, page.as_bytes()).map_err(|source| {
        ReportError::Write {
            path: out.clone(),
            source,
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_to_the_index() {
        assert_eq!(
            rel_link(Path::new("/d"), Path::new("/d/runs/E x/report.html")),
            "runs/E%20x/report.html"
        );
        assert_eq!(
            rel_link(Path::new("/d/site"), Path::new("/d/runs/E/report.html")),
            "../runs/E/report.html"
        );
    }

    #[test]
    fn verified_needs_controller_records_or_a_flag() {
        let ctrl = FaultRow {
            injected: Some(1),
            injected_source: "controller".into(),
            ..Default::default()
        };
        let own = FaultRow {
            injected: Some(1),
            injected_source: "ttplan".into(),
            ..Default::default()
        };
        assert_eq!(
            fault_verified(Some(std::slice::from_ref(&ctrl)), None),
            "yes (1)"
        );
        assert_eq!(fault_verified(Some(&[ctrl, own.clone()]), None), "no");
        let flagged = serde_json::json!([{"effect": {"verified": true, "probes": []}}]);
        assert_eq!(fault_verified(Some(&[own]), Some(&flagged)), "yes (1)");
        assert_eq!(fault_verified(Some(&[]), None), "no fault");
        assert_eq!(fault_verified(None, None), "—");
    }
}
