//! The subcommands: each turns parsed arguments into library calls and an exit code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::cli::{Args, Command, GraphFormat, InstrumentArgs, RunArgs};
use crate::diag::PlanErrors;
use crate::engine::ctx::RunInfo;
use crate::engine::executor::{pending_records, Executor, Interrupt};
use crate::engine::faults::FaultLedger;
use crate::engine::manifest::{
    redact_env, sha256_bytes, sha256_file, FileHash, Invocation, Manifest, ManifestWriter,
    PlanSection, RunSection, RunStatus, SourceTree, Tool, MANIFEST_FILE, MANIFEST_VERSION,
};
use crate::engine::progress::{format_elapsed, Progress};
use crate::engine::secrets::Secrets;
use crate::exit;
use crate::git::git_info;
use crate::kube::KubeAccess;
use crate::plan::{load_plan, LoadOptions, Plan};
use crate::steps::process::ChildGroups;

pub fn dispatch(args: Args) -> u8 {
    match args.command {
        Command::Run(a) => run(a),
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
            crate::out(&crate::plan::schema::plan_schema_json());
            exit::SUCCESS
        }
        Command::Chaos(c) => crate::chaos_admin::run(c),
        Command::Instrument(a) => instrument(&a),
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

fn new_run_id(now: DateTime<Utc>) -> String {
    let seed = format!("{:?}{}", now.timestamp_nanos_opt(), std::process::id());
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &sha256_bytes(seed.as_bytes())[..6]
    )
}

fn load(path: &Path, sets: &[String], now: DateTime<Utc>, out_dir: &Path) -> Result<Plan, u8> {
    let opts = LoadOptions {
        sets: sets.to_vec(),
        run_id: new_run_id(now),
        now,
        out_dir: out_dir.to_path_buf(),
    };
    load_plan(path, &opts).map_err(|e| {
        report(e);
        exit::INVALID
    })
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
            let yaml = serde_yaml::to_string(&step.resolved_json()).unwrap_or_default();
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

/// The async runtime of a command; an error is already reported.
pub fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::STEP_FAILED
        })
}

fn run(args: RunArgs) -> u8 {
    let now = Utc::now();
    let plan = match load(&args.plan, &args.sets.sets, now, &args.out) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if args.dry_run {
        crate::out(&describe_plan(&plan));
        crate::out("\n(dry run: nothing was executed)\n");
        return exit::SUCCESS;
    }
    let out_dir = std::path::absolute(&args.out).unwrap_or(args.out.clone());
    let run_dir = out_dir.join("runs").join(&plan.exp_name);
    if run_dir.join(MANIFEST_FILE).exists() {
        eprintln!(
            "error: {} already holds a run; nothing was overwritten.\n  help: give this run another name: --set exp_name=…",
            run_dir.display()
        );
        return exit::INVALID;
    }
    if let Err(e) = std::fs::create_dir_all(run_dir.join("steps")) {
        eprintln!(
            "error: cannot create {}: {e}",
            run_dir.join("steps").display()
        );
        return exit::STEP_FAILED;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let run = Arc::new(RunInfo {
        run_id: plan
            .context
            .get("run_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        exp_name: plan.exp_name.clone(),
        plan_name: plan.name.clone(),
        out_dir,
        run_dir,
        plan_dir: plan.plan_dir.clone(),
        started_at: now,
        kube: Arc::new(KubeAccess::new(args.kube.settings())),
    });
    let code = rt.block_on(run_async(Arc::new(plan), run, &args));
    // Steps never leave tasks behind, but a hung cleanup must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

fn initial_manifest(plan: &Plan, run: &RunInfo, args: &RunArgs) -> Manifest {
    let files: Vec<FileHash> = plan
        .files
        .iter()
        .map(|f| FileHash {
            path: PathBuf::from(&f.display),
            sha256: sha256_bytes(f.text.as_bytes()),
        })
        .collect();
    let plan_sha = sha256_file(&args.plan)
        .map(|(_, h)| h)
        .unwrap_or_else(|_| files[0].sha256.clone());
    Manifest {
        manifest_version: MANIFEST_VERSION,
        tool: Tool {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        },
        run: RunSection {
            id: run.run_id.clone(),
            exp_name: run.exp_name.clone(),
            status: RunStatus::Running,
            started_at: run.started_at,
            finished_at: None,
            duration_ms: None,
            exit_code: None,
            out_dir: run.out_dir.clone(),
            run_dir: run.run_dir.clone(),
            errors: Vec::new(),
        },
        invocation: Invocation {
            argv: std::env::args().collect(),
            cwd: std::env::current_dir().unwrap_or_default(),
            max_parallel: args.max_parallel,
        },
        plan: PlanSection {
            path: args.plan.clone(),
            name: plan.name.clone(),
            description: plan.description.clone(),
            sha256: plan_sha,
            files,
            git: git_info(&plan.plan_dir),
        },
        sources: plan
            .sources
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    SourceTree {
                        path: p.clone(),
                        git: git_info(p),
                    },
                )
            })
            .collect(),
        vars: plan.vars_json(),
        env: redact_env(plan.templates.env_reads()),
        endpoints: Default::default(),
        instrumented: None,
        resolved_plan: plan.resolved_json(),
        steps: pending_records(plan),
        faults: Vec::new(),
    }
}

async fn run_async(plan: Arc<Plan>, run: Arc<RunInfo>, args: &RunArgs) -> u8 {
    let progress = Progress::new(args.progress);
    let secrets = Secrets::from_env_reads(&plan.templates.env_reads());
    let manifest = Arc::new(ManifestWriter::new(
        &run.run_dir,
        initial_manifest(&plan, &run, args),
        secrets.clone(),
    ));
    if let Err(e) = manifest.update(|_| {}).await {
        eprintln!("error: cannot write {}: {e}", manifest.path().display());
        return exit::STEP_FAILED;
    }
    progress.note(&format!(
        "run {} of plan {} → {}",
        run.exp_name,
        plan.name,
        run.run_dir.display()
    ));
    let faults = Arc::new(FaultLedger::new(&run.run_dir, secrets));
    let children = Arc::new(ChildGroups::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let signal_task = tokio::spawn(watch_signals(
        tx,
        Arc::clone(&manifest),
        Arc::clone(&children),
        progress.clone(),
    ));

    let executor = Executor {
        plan: Arc::clone(&plan),
        run: Arc::clone(&run),
        manifest: Arc::clone(&manifest),
        faults,
        progress: progress.clone(),
        children,
        max_parallel: args.max_parallel as usize,
    };
    let status = executor.execute(&mut rx).await;
    let code = match status {
        RunStatus::Succeeded => exit::SUCCESS,
        RunStatus::Failed => exit::STEP_FAILED,
        RunStatus::Interrupted | RunStatus::Aborted | RunStatus::Running => exit::INTERRUPTED,
    };
    let finished = Utc::now();
    let failed_steps: Vec<String> = manifest
        .read(|m| {
            m.steps
                .iter()
                .filter(|(_, r)| {
                    r.status == crate::engine::manifest::StepStatus::Failed && !r.allow_failure
                })
                .map(|(n, r)| {
                    format!(
                        "step `{n}` failed: {}",
                        r.error
                            .as_deref()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                    )
                })
                .collect()
        })
        .await;
    let write = manifest
        .update(|m| {
            m.run.status = status;
            m.run.finished_at = Some(finished);
            m.run.duration_ms = (finished - run.started_at)
                .num_milliseconds()
                .try_into()
                .ok();
            m.run.exit_code = Some(code);
            m.run.errors.splice(0..0, failed_steps);
        })
        .await;
    signal_task.abort();
    if let Err(e) = write {
        eprintln!(
            "error: cannot write the final manifest {}: {e}",
            manifest.path().display()
        );
    }
    let elapsed = (finished - run.started_at).to_std().unwrap_or_default();
    let word = match status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "FAILED",
        _ => "INTERRUPTED",
    };
    progress.note(&format!(
        "run {word} after {}; manifest: {}",
        format_elapsed(elapsed),
        manifest.path().display()
    ));
    code
}

/// First SIGINT/SIGTERM: graceful stop through the executor. Second: kill every child group,
/// mark the manifest aborted and exit at once.
async fn watch_signals(
    tx: mpsc::UnboundedSender<Interrupt>,
    manifest: Arc<ManifestWriter>,
    children: Arc<ChildGroups>,
    progress: Progress,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        progress.note(
            "warning: cannot install signal handlers; Ctrl-C will kill ttplan without cleanup",
        );
        return;
    };
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        seen += 1;
        if seen == 1 {
            let _ = tx.send(Interrupt::Stop);
            continue;
        }
        progress.note("second signal: aborting now; faults may be left injected (see faults.json)");
        children.kill_all();
        let now = Utc::now();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            manifest.update(|m| {
                m.run.status = RunStatus::Aborted;
                m.run.finished_at = Some(now);
                m.run.exit_code = Some(exit::INTERRUPTED);
                m.run.errors.push("aborted by a second signal".into());
            }),
        )
        .await;
        std::process::exit(i32::from(exit::INTERRUPTED));
    }
}
