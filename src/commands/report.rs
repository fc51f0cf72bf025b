//! `ttplan report`: write a run's HTML page or the index of runs.

use std::path::Path;

use crate::exit;

/// `ttplan report`: a run's page, or the index of the runs below a folder.
pub(super) fn run(dir: &Path, output: Option<&Path>) -> u8 {
    let written = if crate::report::is_run_dir(dir) {
        crate::report::write_run_report(dir, output)
    } else {
        crate::report::write_index(dir, output)
    };
    match written {
        Ok(p) => {
            crate::out(&format!("{}\n", p.display()));
            exit::SUCCESS
        }
        Err(e @ crate::report::ReportError::NotARun { .. }) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::STEP_FAILED
        }
    }
}
