//! `ttplan rerun`: run a manifest's stored plan again.

use chrono::Utc;

use super::describe_plan;
use super::run::run_loaded;
use crate::cli::RerunArgs;
use crate::exit;

/// `ttplan rerun MANIFEST`: the stored plan document with the stored var values.
pub(super) fn run(args: &RerunArgs) -> u8 {
    let now = Utc::now();
    let cfg = args.config();
    let plan = match crate::engine::rerun::plan_from_manifest(
        &args.manifest,
        args.exp_name.as_deref(),
        &cfg.out,
        now,
    ) {
        Ok(p) => p,
        Err(e) => {
            e.report();
            return e.code();
        }
    };
    if args.dry_run {
        crate::out(&describe_plan(&plan));
        crate::out("\n(dry run: nothing was executed)\n");
        return exit::SUCCESS;
    }
    run_loaded(plan, &cfg, now, true)
}
