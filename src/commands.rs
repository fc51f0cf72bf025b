//! The subcommands: each turns parsed arguments into library calls and an exit code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::cli::{Args, Command, GraphFormat, InstrumentArgs, RerunArgs, RunArgs, SandboxCommand};
use crate::diag::PlanErrors;
use crate::engine::launch;
use crate::engine::progress::Progress;
use crate::exit;
use crate::steps::Plan;

pub fn dispatch(args: Args) -> u8 {
    match args.command {
        Command::Run(a) => run(a),
        Command::Rerun(a) => rerun(&a),
        Command::Campaign(c) => campaign(c),
        Command::Validate { plans, sets } => validate(&plans, &sets.sets),
        Command::Plan { plan, sets } => {
            match load(&plan, &sets.sets, Utc::now(), "dataset".as_ref()) {
                Ok(p) => {
                    crate::out(&describe_plan(&p));
                    exit::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Graph { plan, format, sets } => {
            match load(&plan, &sets.sets, Utc::now(), "dataset".as_ref()) {
                Ok(p) => {
                    crate::out(&graph(&p, format));
                    exit::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Schema => {
            crate::out(&crate::steps::schema::plan_schema_json());
            exit::SUCCESS
        }
        Command::Chaos(c) => crate::chaos_admin::run(c),
        Command::Sandbox(SandboxCommand::Up {
            env_file,
            port_file,
            dir,
        }) => crate::sandbox::up(env_file.as_deref(), port_file.as_deref(), dir.as_deref()),
        Command::Instrument(a) => instrument(&a),
        Command::Report { dir, output } => report_command(&dir, output.as_deref()),
        Command::Dataset(crate::cli::DatasetCommand::Check { dir, exp }) => {
            dataset_check(&dir, exp.as_deref())
        }
    }
}

/// `ttplan instrument`: input file (or stdin) → output file, stdout, or the input in place.
fn instrument(a: &InstrumentArgs) -> u8 {
    use crate::coverage::instrument::{instrument, InstrumentOptions};
    use std::io::{Read, Write};

    let mut includes = std::collections::BTreeMap::new();
    for kv in &a.includes {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("error: --includes expects SERVICE=PATTERN, got `{kv}`");
            return exit::INVALID;
        };
        includes.insert(k.trim().to_string(), v.trim().to_string());
    }
    let stdin = a.input.as_os_str() == "-";
    if stdin && a.in_place {
        eprintln!("error: --in-place needs a file, not stdin");
        return exit::INVALID;
    }
    let text = if stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(&a.input)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", a.input.display());
            return exit::INVALID;
        }
    };
    let opts = InstrumentOptions {
        agent_image: a.agent_image.clone(),
        agent_path: a.agent_path.clone(),
        init_command: None,
        port: a.port,
        address: a.address.clone(),
        includes,
        source_root: a.source_root.clone(),
        default_includes: a.default_includes.clone(),
        excludes: a.excludes.clone(),
        containers: a.containers.clone(),
        skip: a.skip.clone(),
        train_ticket_defaults: !a.no_train_ticket_defaults,
    };
    let (out, report) = match instrument(&text, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", a.input.display());
            return exit::INVALID;
        }
    };
    let dest = if a.in_place {
        Some(a.input.clone())
    } else {
        a.output.clone()
    };
    let written = match &dest {
        Some(path) => crate::atomic_write::write_atomic(path, out.as_bytes()),
        None => std::io::stdout().lock().write_all(out.as_bytes()),
    };
    if let Err(e) = written {
        let to = dest.map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
        eprintln!("error: cannot write {to}: {e}");
        return exit::STEP_FAILED;
    }
    eprintln!(
        "instrumented {} workloads ({} already instrumented, {} skipped, {} other documents)",
        report.changed.len(),
        report.unchanged.len(),
        report.skipped.len(),
        report.other_documents
    );
    exit::SUCCESS
}

/// `ttplan report`: a run's page, or the index of the runs below a folder.
fn report_command(dir: &Path, output: Option<&Path>) -> u8 {
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

fn dataset_check(dir: &Path, exp: Option<&str>) -> u8 {
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

fn report(errors: PlanErrors) {
    eprintln!("{:?}", miette::Report::new(errors));
}

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

fn validate(plans: &[PathBuf], sets: &[String]) -> u8 {
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

/// `ttplan plan`: steps by DAG layer with every rendered value.
pub fn describe_plan(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "plan:     {} ({})", plan.name, plan.path.display());
    if let Some(d) = &plan.description {
        let _ = writeln!(s, "          {d}");
    }
    let _ = writeln!(s, "exp_name: {}", plan.exp_name);
    if plan.files.len() > 1 {
        let bases: Vec<&str> = plan.files[1..].iter().map(|f| f.display.as_str()).collect();
        let _ = writeln!(s, "extends:  {}", bases.join(", "));
    }
    let _ = writeln!(s, "vars:");
    for (k, v) in &plan.vars {
        let _ = writeln!(s, "  {k}: {}", v.to_json());
    }
    for (i, layer) in plan.dag.layers().iter().enumerate() {
        let _ = writeln!(s, "\nlayer {}:", i + 1);
        for name in layer {
            let step = &plan.steps[name];
            let mut flags = Vec::new();
            if step.common.always {
                flags.push("always");
            }
            if step.common.allow_failure {
                flags.push("allow_failure");
            }
            if step.deferred {
                flags.push("renders {{ steps.* / run.* }} at step start");
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", flags.join(", "))
            };
            let _ = writeln!(s, "  {name} ({}){flags}", step.common.kind);
            let yaml = serde_yaml_ng::to_string(&step.resolved_json()).unwrap_or_default();
            for line in yaml.lines() {
                let _ = writeln!(s, "    {line}");
            }
        }
    }
    s
}

fn graph(plan: &Plan, format: GraphFormat) -> String {
    let mut s = String::new();
    // Mermaid ids must be plain words, and `a-b` / `a_b` must stay apart: number the steps.
    let id = |n: &str| format!("s{}", plan.steps.get_index_of(n).unwrap_or(usize::MAX));
    match format {
        GraphFormat::Mermaid => {
            s.push_str("flowchart TD\n");
            for (name, step) in &plan.steps {
                let always = if step.common.always { " · always" } else { "" };
                let _ = writeln!(
                    s,
                    "  {}[\"{name}<br/>{}{always}\"]",
                    id(name),
                    step.common.kind
                );
            }
            for (a, b) in plan.dag.edges() {
                let arrow = if plan.steps[b].common.always {
                    "-.->"
                } else {
                    "-->"
                };
                let _ = writeln!(s, "  {} {arrow} {}", id(a), id(b));
            }
        }
        GraphFormat::Dot => {
            let _ = writeln!(s, "digraph \"{}\" {{", plan.name.replace('"', "\\\""));
            s.push_str("  rankdir=TB;\n  node [shape=box];\n");
            for (name, step) in &plan.steps {
                let style = if step.common.always {
                    ", style=dashed"
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "  \"{name}\" [label=\"{name}\\n{}\"{style}];",
                    step.common.kind
                );
            }
            for (a, b) in plan.dag.edges() {
                let _ = writeln!(s, "  \"{a}\" -> \"{b}\";");
            }
            s.push_str("}\n");
        }
    }
    s
}

/// `ttplan campaign …`; with `run --sandbox`, one simulated environment serves every
/// experiment and lives until the campaign is over.
fn campaign(mut cmd: crate::cli::CampaignCommand) -> u8 {
    let mut sandbox = None;
    if let crate::cli::CampaignCommand::Run(a) = &mut cmd {
        if a.sandbox {
            match crate::sandbox::for_campaign() {
                Ok(s) => {
                    a.kube.kubeconfig = Some(s.sandbox.kubeconfig().to_path_buf());
                    sandbox = Some(s);
                }
                Err(code) => return code,
            }
        }
    }
    crate::campaign::cli::run(cmd, sandbox.as_ref().map(crate::sandbox::Started::describe))
}

fn run(args: RunArgs) -> u8 {
    let now = Utc::now();
    let mut cfg = args.config();
    // Lives until the run is over: dropping it stops the simulated environment.
    let _sandbox = if args.sandbox {
        match crate::sandbox::for_run(&mut cfg) {
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
fn run_loaded(plan: Plan, cfg: &launch::RunConfig, now: DateTime<Utc>, report: bool) -> u8 {
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

/// `ttplan rerun MANIFEST`: the stored plan document with the stored var values.
fn rerun(args: &RerunArgs) -> u8 {
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
