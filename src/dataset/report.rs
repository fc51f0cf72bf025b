//! The per-experiment table `ttplan dataset check` prints.

use super::ExperimentReport;

/// One table per experiment: `what | status | found`, then each problem indented under its
/// row; a closing line with the totals.
pub fn render(reports: &[ExperimentReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!("{}\n", r.folder));
        for f in &r.findings {
            let status = if f.problems.is_empty() {
                "ok"
            } else {
                "VIOLATION"
            };
            out.push_str(&format!("  {:<16} {:<10} {}\n", f.what, status, f.summary));
            for p in &f.problems {
                out.push_str(&format!("  {:<16} {:<10} - {p}\n", "", ""));
            }
        }
        out.push('\n');
    }
    let bad = reports.iter().filter(|r| r.violations() > 0).count();
    let violations: usize = reports.iter().map(ExperimentReport::violations).sum();
    out.push_str(&format!(
        "{} experiments checked: {} conform, {bad} with {violations} violations\n",
        reports.len(),
        reports.len() - bad
    ));
    out
}
