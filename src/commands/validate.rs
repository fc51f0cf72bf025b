//! `ttplan validate`: load every plan given and say whether it is valid.

use std::path::PathBuf;

use chrono::Utc;

use super::load;
use crate::exit;

pub(super) fn run(plans: &[PathBuf], sets: &[String]) -> u8 {
    let now = Utc::now();
    let mut code = exit::SUCCESS;
    for path in plans {
        match load(path, sets, now, "dataset".as_ref()) {
            Ok(p) => crate::out(&format!(
                "ok {} ({} steps)\n",
                path.display(),
                p.steps.len()
            )),
            Err(c) => code = c,
        }
    }
    code
}
