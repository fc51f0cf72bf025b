//! `ttplan run`: load a plan, prepare its run folder and execute it.

use chrono::{DateTime, Utc};

use super::{describe_plan, print_warnings};
use crate::cli::RunArgs;
use crate::engine::launch;
use crate::engine::progress::Progress;
use crate::exit;
use crate::steps::Plan;

pub(super) fn run(args: RunArgs) -> u8 {
    let now = Utc::now();
    let mut cfg = args.config();
    // Lives until the run is over: dropping it stops the simulated environment.
    let _sandbox = if args.sandbox {
        match crate::sandbox::for_run(&mut cfg, args.seed) {
            Ok(s) => Some(s),
            Err(code) => return code,
        }
    } else {
        None
    };
    let plan = match launch::load(&cfg, now) {
        Ok(p) => {
            print_warnings(&p);
            p
        }
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
    run_loaded(plan, &cfg, now, !args.no_report)
}

/// Prepares and executes a loaded plan on a runtime of its own; with `report`, writes the run's
/// page afterwards (a failed page is a warning, never the run's failure).
pub(super) fn run_loaded(
    plan: Plan,
    cfg: &launch::RunConfig,
    now: DateTime<Utc>,
    report: bool,
) -> u8 {
    let prepared = match launch::prepare(plan, cfg, now) {
        Ok(p) => p,
        Err(e) => {
            e.report();
            return e.code();
        }
    };
    let rt = match crate::engine::launch::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let progress = cfg.progress;
    let outcome = rt.block_on(async move {
        let hub = launch::SignalHub::install(Progress::new(progress));
        launch::execute(prepared, &hub).await
    });
    // Steps never leave tasks behind, but a hung cleanup must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    if report {
        crate::report::after_run(&outcome.run_dir);
    }
    outcome.code
}
