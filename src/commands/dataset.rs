//! `ttplan dataset check`: check a dataset against its documented layout.

use std::path::Path;

use crate::exit;

pub(super) fn run(dir: &Path, exp: Option<&str>) -> u8 {
    match crate::dataset::check(dir, exp) {
        Ok(reports) => {
            crate::out(&crate::dataset::render(&reports));
            if reports.iter().any(|r| r.violations() > 0) {
                exit::STEP_FAILED
            } else {
                exit::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::INVALID
        }
    }
}
