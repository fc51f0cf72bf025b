//! What a step that runs a program gives it: the run's environment variables, a working
//! directory resolved against the plan's folder, and log timestamps. Shared by `shell`,
//! `api-driver`, `instrument` and `coverage-report`.

use std::path::{Path, PathBuf};

use super::StepCtx;

/// Environment every child of a run gets, on top of ttplan's own and the step's `env`.
pub fn run_env(ctx: &StepCtx) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ctx
        .env()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    env.extend([
        ("TTPLAN_RUN_ID".into(), ctx.run_id().to_string()),
        ("TTPLAN_EXP_NAME".into(), ctx.exp_name().to_string()),
        ("TTPLAN_OUT_DIR".into(), abs(ctx.out_dir())),
        ("TTPLAN_RUN_DIR".into(), abs(ctx.run_dir())),
        ("TTPLAN_STEP".into(), ctx.step_name().to_string()),
    ]);
    env
}

/// `workdir` (or a path field) of a step: relative to the plan's folder.
pub fn resolve_workdir(plan_dir: &Path, workdir: Option<&Path>) -> PathBuf {
    match workdir {
        Some(w) if w.is_absolute() => w.to_path_buf(),
        Some(w) => plan_dir.join(w),
        None => plan_dir.to_path_buf(),
    }
}

/// A log timestamp (UTC, milliseconds).
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
