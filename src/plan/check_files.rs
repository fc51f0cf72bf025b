//! The validation pass that reads every file a plan's steps name (chaos-mesh `file:`,
//! kube-apply `files:`) and parses it as the run will, so a broken one fails `ttplan validate`
//! rather than the step that reads it after deploy and warm-up.

use std::path::Path;

use indexmap::IndexMap;

use super::{KindChecks, PlanFolder, PlanStep};
use crate::diag::{PlanErrors, SourceFile};

/// Steps whose fields render at step start are skipped: their paths are not known yet.
pub(super) fn check_named_files<S: KindChecks>(
    steps: &IndexMap<String, PlanStep<S>>,
    plan_dir: &Path,
    plan_file: &SourceFile,
    errs: &mut PlanErrors,
) {
    let folder = PlanFolder {
        dir: plan_dir.to_path_buf(),
        display: Path::new(&plan_file.display)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf(),
    };
    for step in steps.values().filter(|s| !s.deferred) {
        let mut diags = Vec::new();
        step.step.check_files(&step.fields, &folder, &mut diags);
        for d in diags {
            errs.push(d);
        }
    }
}
