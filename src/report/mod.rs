//! `ttplan report`: one self-contained HTML page per run (inline CSS and SVG, no script, no
//! network) and an index page for a campaign. Every input is streamed through a bounded
//! aggregator ([`metrics`], [`traces`], [`api`], [`logs`]) so the page costs memory in
//! proportion to the number of series, services, endpoints and pods, never to rows.

mod api;
mod coverage;
mod html;
mod index;
mod inputs;
mod logs;
mod metrics;
mod plot;
mod run;
mod timeline;
mod traces;

use std::path::{Path, PathBuf};

pub use index::write_index;
pub use run::REPORT_FILE;

/// What can stop a report from being written. Unreadable or malformed data *inside* an input
/// is reported on the page instead (a killed run leaves partial files).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: not a run folder (no experiment_manifest.json) and no runs below it")]
    NotARun { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether `dir` holds one run (its manifest), as opposed to a campaign or output root.
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(crate::engine::manifest::MANIFEST_FILE).is_file()
}

/// Writes the page of one run to `out` (default `RUN_DIR/report.html`) and returns its path.
///
/// # Errors
/// When the manifest cannot be read or parsed, or the page cannot be written.
pub fn write_run_report(run_dir: &Path, out: Option<&Path>) -> Result<PathBuf, ReportError> {
    let report = run::RunReport::build(run_dir)?;
    let path = out.map_or_else(|| run_dir.join(REPORT_FILE), Path::to_path_buf);
    let page = report.render();
    crate::atomic_write::write_atomic(&path, page.as_bytes()).map_err(|source| {
        ReportError::Write {
            path: path.clone(),
            source,
        }
    })?;
    report.write_summary(run_dir)?;
    Ok(path)
}

/// The end of `ttplan run`: writes `runs/<EXP>/report.html`. A report that cannot be written
/// is a warning, never a failed run.
pub fn after_run(run_dir: &Path) {
    match write_run_report(run_dir, None) {
        Ok(p) => eprintln!("report: {}", p.display()),
        Err(e) => eprintln!("warning: the run report was not written: {e}"),
    }
}
