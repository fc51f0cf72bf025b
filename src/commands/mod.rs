//! The subcommands, one file each: each turns parsed arguments into library calls and an exit
//! code. Commands whose body lives in a module of its own (campaign, chaos, sandbox) are
//! dispatched there directly.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::cli::{Args, Command, DatasetCommand, SandboxCommand};
use crate::diag::PlanErrors;
use crate::engine::launch;
use crate::exit;
use crate::steps::Plan;

mod campaign;
mod dataset;
mod graph;
mod instrument;
mod plan;
mod report;
mod rerun;
mod run;
mod validate;

pub use plan::describe_plan;

pub fn dispatch(args: Args) -> u8 {
    match args.command {
        Command::Run(a) => run::run(a),
        Command::Rerun(a) => rerun::run(&a),
        Command::Campaign(c) => campaign::campaign(c),
        Command::Validate { plans, sets } => validate::run(&plans, &sets.sets),
        Command::Plan { plan, sets } => plan::run(&plan, &sets.sets),
        Command::Graph { plan, format, sets } => graph::run(&plan, format, &sets.sets),
        Command::Schema => {
            crate::out(&crate::steps::schema::plan_schema_json());
            exit::SUCCESS
        }
        Command::Chaos(c) => crate::chaos_admin::run(c),
        Command::Sandbox(SandboxCommand::Up {
            env_file,
            port_file,
            dir,
            seed,
        }) => crate::sandbox::up(
            env_file.as_deref(),
            port_file.as_deref(),
            dir.as_deref(),
            seed,
        ),
        Command::Instrument(a) => instrument::run(&a),
        Command::Report { dir, output } => report::run(&dir, output.as_deref()),
        Command::Dataset(DatasetCommand::Check { dir, exp }) => dataset::run(&dir, exp.as_deref()),
    }
}

fn report(errors: PlanErrors) {
    eprintln!("{:?}", miette::Report::new(errors));
}

/// Loads a plan for a command that does not run it; errors are printed, the exit code returned.
fn load(path: &Path, sets: &[String], now: DateTime<Utc>, out_dir: &Path) -> Result<Plan, u8> {
    let plan = launch::load_fresh(path, sets, now, out_dir).map_err(|e| {
        report(e);
        exit::INVALID
    })?;
    print_warnings(&plan);
    Ok(plan)
}

fn print_warnings(plan: &Plan) {
    for w in &plan.warnings {
        eprintln!("{w}");
    }
}
