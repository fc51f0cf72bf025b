//! Running one plan as a library call: [`RunConfig`] → [`load`] → [`prepare`] → [`execute`].
//! `ttplan run`, `ttplan rerun` and campaigns all go through here, so a run started by a
//! campaign writes exactly what `ttplan run` writes.
//!
//! Signals are not handled per run: a [`SignalHub`] owns SIGINT/SIGTERM for the process and
//! forwards them to every run attached to it (one for `ttplan run`, one per slot in a campaign).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ctx::RunInfo;
use super::executor::{pending_records, Executor, Interrupt, PresetStep};
use super::faults::{FaultLedger, RecoverSettings};
use super::manifest::{
    redact_env, sha256_bytes, sha256_file, FileHash, Invocation, Manifest, ManifestWriter,
    PlanSection, RunSection, RunStatus, SourceTree, StepRecord, StepStatus, Tool, MANIFEST_FILE,
    MANIFEST_VERSION,
};
use super::progress::{format_elapsed, Progress, ProgressMode};
use super::secrets::Secrets;
use crate::diag::PlanErrors;
use crate::exit;
use crate::git::{git_info, GitInfo};
use crate::kube::{KubeAccess, KubeSettings};
use crate::plan::{load_plan, LoadOptions};
use crate::steps::process::ChildGroups;
use crate::steps::{Plan, KINDS};

/// How to run one plan.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub plan: PathBuf,
    /// `--set key=value`, in order.
    pub sets: Vec<String>,
    /// Dataset root.
    pub out: PathBuf,
    pub max_parallel: u32,
    pub progress: ProgressMode,
    pub kube: KubeSettings,
    /// `--resume RUN_DIR`: keep the steps that succeeded there.
    pub resume: Option<PathBuf>,
    /// `--only STEP…`: run these (and the `always` steps after them); others are not run.
    pub only: Vec<String>,
    /// `--from STEP`: run this step and everything after it.
    pub from: Option<String>,
    /// `--sandbox`: the simulated environment the run was pointed at (recorded in the manifest).
    pub sandbox: Option<serde_json::Value>,
}

/// Why a run could not start; `code` is the exit code.
#[derive(Debug)]
pub enum LaunchError {
    Plan(PlanErrors),
    Other { code: u8, message: String },
}

impl LaunchError {
    fn invalid(message: impl Into<String>) -> Self {
        Self::Other {
            code: exit::INVALID,
            message: message.into(),
        }
    }

    pub fn code(&self) -> u8 {
        match self {
            Self::Plan(_) => exit::INVALID,
            Self::Other { code, .. } => *code,
        }
    }

    /// Prints the error the way the CLI reports it.
    pub fn report(&self) {
        match self {
            Self::Plan(e) => eprintln!("{:?}", miette::Report::new(e.clone())),
            Self::Other { message, .. } => eprintln!("error: {message}"),
        }
    }
}

pub fn new_run_id(now: DateTime<Utc>) -> String {
    let seed = format!("{:?}{}", now.timestamp_nanos_opt(), std::process::id());
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &sha256_bytes(seed.as_bytes())[..6]
    )
}

/// Where a kubeconfig would come from, in the client's order (`--kubeconfig`, `KUBECONFIG`,
/// `~/.kube/config`, in-cluster); `None` when there is none at all.
fn cluster_config_source(kube: &KubeSettings) -> Option<&'static str> {
    if kube.kubeconfig.is_some() {
        return Some("--kubeconfig");
    }
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return Some("KUBECONFIG");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if home.is_some_and(|h| h.join(".kube").join("config").is_file()) {
        return Some("~/.kube/config");
    }
    std::env::var_os("KUBERNETES_SERVICE_HOST").map(|_| "in-cluster")
}

/// A plan with cluster steps, started with no cluster configured and no `--sandbox`, stops
/// before anything runs with one sentence saying what is missing and how to go on (rather than
/// its first step failing on a folder or a connection).
fn cluster_preflight(plan: &Plan, cfg: &RunConfig) -> Result<(), LaunchError> {
    if cfg.sandbox.is_some() || cluster_config_source(&cfg.kube).is_some() {
        return Ok(());
    }
    let Some((step, kind)) = plan
        .steps
        .iter()
        .find(|(_, s)| s.step.needs_cluster())
        .map(|(name, s)| (name, s.common.kind.as_str()))
    else {
        return Ok(());
    };
    let reads = plan.templates.env_reads();
    let unset: Vec<&str> = ["TRAIN_TICKET_DIR", "EVOMASTER_TEST"]
        .into_iter()
        .filter(|v| matches!(reads.get(*v), Some(None)))
        .collect();
    let vars = if unset.is_empty() {
        String::new()
    } else {
        format!(" and {} set to your checkouts", unset.join(" and "))
    };
    Err(LaunchError::invalid(format!(
        "plan `{}` needs a Kubernetes cluster (step `{step}` is `{kind}`) and none is configured \
         (no --kubeconfig, KUBECONFIG, ~/.kube/config or in-cluster account): try it on a \
         simulated Train-Ticket with `ttplan run {} --sandbox`, or give your cluster's kubeconfig{vars}",
        plan.name,
        cfg.plan.display()
    )))
}

/// Loads a plan for a fresh run.
///
/// # Errors
/// Every problem of the plan.
pub fn load_fresh(
    path: &Path,
    sets: &[String],
    now: DateTime<Utc>,
    out_dir: &Path,
) -> Result<Plan, PlanErrors> {
    load_plan(
        path,
        &LoadOptions {
            sets: sets.to_vec(),
            run_id: new_run_id(now),
            now,
            out_dir: out_dir.to_path_buf(),
        },
        KINDS,
    )
}

/// What `--resume` keeps of an earlier run.
struct Resumed {
    /// Steps that injected a fault (not a teardown) in the resumed run, from its ledger.
    injected: Vec<String>,
    run_id: String,
    exp_name: String,
    started_at: DateTime<Utc>,
    steps: IndexMap<String, StepRecord>,
}

fn read_resumed(run_dir: &Path) -> Result<Resumed, LaunchError> {
    let path = run_dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        LaunchError::invalid(format!("--resume: cannot read {}: {e}", path.display()))
    })?;
    let m: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| LaunchError::invalid(format!("--resume: {}: {e}", path.display())))?;
    let field = |p: &str| {
        m.pointer(p)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                LaunchError::invalid(format!(
                    "--resume: {} has no `{p}`: not a run manifest",
                    path.display()
                ))
            })
    };
    let started_at = field("/run/started_at")?.parse().map_err(|e| {
        LaunchError::invalid(format!("--resume: {}: run.started_at: {e}", path.display()))
    })?;
    let steps = serde_json::from_value(m.get("steps").cloned().unwrap_or_default())
        .map_err(|e| LaunchError::invalid(format!("--resume: {}: steps: {e}", path.display())))?;
    let injected = FaultLedger::open(run_dir)
        .map(|l| {
            l.records()
                .iter()
                .filter(|f| !f.teardown)
                .map(|f| f.step.clone())
                .collect()
        })
        .unwrap_or_default();
    Ok(Resumed {
        injected,
        run_id: field("/run/id")?,
        exp_name: field("/run/exp_name")?,
        started_at,
        steps,
    })
}

/// Loads the plan of `cfg`: fresh, or, with `--resume`, rendered with the resumed run's id,
/// start time and exp name so every load-time value is the one that run used.
///
/// # Errors
/// Plan problems, or an unreadable resumed run.
pub fn load(cfg: &RunConfig, now: DateTime<Utc>) -> Result<Plan, LaunchError> {
    let Some(run_dir) = &cfg.resume else {
        return load_fresh(&cfg.plan, &cfg.sets, now, &cfg.out).map_err(LaunchError::Plan);
    };
    let r = read_resumed(run_dir)?;
    let mut sets = cfg.sets.clone();
    sets.push(format!("exp_name={}", r.exp_name));
    load_plan(
        &cfg.plan,
        &LoadOptions {
            sets,
            run_id: r.run_id,
            now: r.started_at,
            out_dir: cfg.out.clone(),
        },
        KINDS,
    )
    .map_err(LaunchError::Plan)
}

/// A run ready to execute: folders exist, nothing has run yet.
pub struct Prepared {
    pub plan: Arc<Plan>,
    pub run: Arc<RunInfo>,
    manifest: Manifest,
    preset: IndexMap<String, PresetStep>,
    resumed: bool,
    max_parallel: u32,
    progress: ProgressMode,
}

impl Prepared {
    /// The plan's steady-state hypothesis checked once outside the run (a campaign's
    /// `before_each`), as the run checks it: its record (`verdict`, `probes`). A plan without
    /// a hypothesis holds.
    pub async fn check_hypothesis(
        &self,
        phase: &str,
        cancel: CancellationToken,
    ) -> serde_json::Value {
        if self.plan.hypothesis.is_empty() {
            return serde_json::json!({"verdict": "passed", "probes": {}});
        }
        let runner = super::hypothesis::HypothesisRunner {
            plan: Arc::clone(&self.plan),
            run: Arc::clone(&self.run),
            faults: Arc::new(FaultLedger::new(
                &self.run.run_dir,
                Secrets::from_plan(&self.plan),
            )),
            progress: Progress::new(self.progress),
            children: Arc::new(ChildGroups::default()),
            events: Arc::new(super::events::StepEvents::default()),
        };
        runner
            .check(phase, &std::collections::BTreeMap::new(), cancel)
            .await
            .record
    }
}

/// Checks the output folder, works out which steps run (`--resume/--only/--from`), creates
/// the run folder.
///
/// # Errors
/// An existing run in the way, a step selection naming unknown steps, an unwritable folder.
pub fn prepare(plan: Plan, cfg: &RunConfig, now: DateTime<Utc>) -> Result<Prepared, LaunchError> {
    let out_dir = std::path::absolute(&cfg.out).unwrap_or(cfg.out.clone());
    let run_dir = out_dir.join("runs").join(&plan.exp_name);
    let resumed = match &cfg.resume {
        Some(dir) => Some(read_resumed(dir)?),
        None => None,
    };
    if let (Some(dir), Some(_)) = (&cfg.resume, &resumed) {
        let given = std::path::absolute(dir).unwrap_or(dir.clone());
        if given != run_dir {
            return Err(LaunchError::invalid(format!(
                "--resume {}: with --out {} this run's folder is {}; pass the --out the run used",
                dir.display(),
                cfg.out.display(),
                run_dir.display()
            )));
        }
    } else if run_dir.join(MANIFEST_FILE).exists() {
        return Err(LaunchError::invalid(format!(
            "{} already holds a run; nothing was overwritten.\n  help: give this run another name: --set exp_name=…, or continue it with --resume {}",
            run_dir.display(),
            run_dir.display()
        )));
    }
    let preset = select_steps(&plan, &cfg.only, cfg.from.as_deref(), resumed.as_ref())?;
    cluster_preflight(&plan, cfg)?;
    if let Err(e) = std::fs::create_dir_all(run_dir.join("steps")) {
        return Err(LaunchError::Other {
            code: exit::STEP_FAILED,
            message: format!("cannot create {}: {e}", run_dir.join("steps").display()),
        });
    }
    let started_at = resumed.as_ref().map_or(now, |r| r.started_at);
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
        started_at,
        kube: Arc::new(KubeAccess::new(cfg.kube.clone())),
        recover_fn: crate::steps::recover_fn,
        env_sources: plan.templates.env_sources(),
    });
    let mut manifest = initial_manifest(&plan, &run, cfg.max_parallel);
    manifest.sandbox = cfg.sandbox.clone();
    for (name, p) in &preset {
        let kept = resumed.as_ref().and_then(|r| r.steps.get(name));
        if let (Some(r), Some(old)) = (manifest.steps.get_mut(name), kept) {
            if p.status == StepStatus::Succeeded {
                *r = old.clone();
                r.reason = Some("kept from the resumed run".into());
                continue;
            }
        }
        if let Some(r) = manifest.steps.get_mut(name) {
            r.status = p.status;
            r.reason = Some("not selected (--only/--from)".into());
        }
    }
    Ok(Prepared {
        plan: Arc::new(plan),
        run,
        manifest,
        preset,
        resumed: resumed.is_some(),
        max_parallel: cfg.max_parallel,
        progress: cfg.progress,
    })
}

/// Which steps do not run. Selected steps: `--only` names (plus the `always` steps after
/// them), `--from` and its descendants, else all. On resume, a selected step that succeeded
/// is kept, unless it injects a fault that a step rerunning under it needs: a fault is
/// re-injected whole, never resumed (it was recovered when the earlier run ended).
fn select_steps(
    plan: &Plan,
    only: &[String],
    from: Option<&str>,
    resumed: Option<&Resumed>,
) -> Result<IndexMap<String, PresetStep>, LaunchError> {
    check_step_names(plan, only, from)?;
    let explicit = !only.is_empty() || from.is_some();
    let selected = selected_steps(plan, only, from);
    let old_ok = |name: &str| {
        resumed
            .and_then(|r| r.steps.get(name))
            .is_some_and(|s| s.status == StepStatus::Succeeded)
    };
    // Steps that run: those asked for by --only/--from, else those that did not succeed.
    let mut runs: Vec<&str> = selected
        .iter()
        .map(|s| s.as_str())
        .filter(|n| explicit || !old_ok(n))
        .collect();
    if let Some(resumed) = resumed {
        let again = reinjected_steps(plan, &selected, &runs, resumed);
        runs.extend(again);
    }
    Ok(preset_steps(plan, &runs, resumed))
}

/// `--only` and `--from` name steps of the plan.
fn check_step_names(plan: &Plan, only: &[String], from: Option<&str>) -> Result<(), LaunchError> {
    let unknown: Vec<&str> = only
        .iter()
        .map(String::as_str)
        .chain(from)
        .filter(|n| !plan.steps.contains_key(*n))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = plan.steps.keys().map(String::as_str).collect();
    Err(LaunchError::invalid(format!(
        "no step named {} in plan {} (steps: {})",
        unknown
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
        plan.name,
        known.join(", ")
    )))
}

/// `--only` names (plus the `always` steps after them), `--from` and its descendants; every
/// step when neither is given.
fn selected_steps<'p>(plan: &'p Plan, only: &[String], from: Option<&str>) -> Vec<&'p String> {
    let explicit = !only.is_empty() || from.is_some();
    plan.steps
        .keys()
        .filter(|name| {
            if !explicit {
                return true;
            }
            let ancestors = plan.dag.ancestors(name);
            let by_only = only.contains(name)
                || (plan.steps[*name].common.always && only.iter().any(|o| ancestors.contains(o)));
            let by_from = from.is_some_and(|f| *name == f || ancestors.contains(f));
            by_only || by_from
        })
        .collect()
}

/// On resume: a kept fault step that must inject again because a step that ran under it runs
/// again, with the `recover` steps that recover it.
fn reinjected_steps<'p>(
    plan: &'p Plan,
    selected: &[&String],
    runs: &[&str],
    resumed: &Resumed,
) -> Vec<&'p str> {
    let injects = |name: &str| resumed.injected.iter().any(|s| s == name);
    let mut again: Vec<&str> = Vec::new();
    for name in plan.steps.keys() {
        if !injects(name) || runs.contains(&name.as_str()) || !selected.contains(&name) {
            continue;
        }
        let recovers_it = |r: &str| {
            plan.steps[r].common.kind == "recover"
                && plan.steps[r].fields.get("faults").is_some_and(|f| {
                    f.to_json()
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == name.as_str()))
                })
        };
        let needed = runs.iter().any(|r| {
            let anc = plan.dag.ancestors(r);
            anc.contains(name) && !anc.iter().any(|a| recovers_it(a)) && !recovers_it(r)
        });
        if needed {
            again.push(name);
            for (r, _) in plan.steps.iter().filter(|(r, _)| recovers_it(r)) {
                again.push(r);
            }
        }
    }
    again
}

/// The steps that do not run: kept as succeeded (with their old values) when the resumed
/// run's step succeeded, else skipped.
fn preset_steps(
    plan: &Plan,
    runs: &[&str],
    resumed: Option<&Resumed>,
) -> IndexMap<String, PresetStep> {
    plan.steps
        .iter()
        .filter(|(name, _)| !runs.contains(&name.as_str()))
        .map(|(name, _)| {
            let kept = resumed
                .and_then(|r| r.steps.get(name))
                .filter(|s| s.status == StepStatus::Succeeded);
            match kept {
                Some(old) => (
                    name.clone(),
                    PresetStep {
                        status: StepStatus::Succeeded,
                        runtime: Some(runtime_value(old)),
                    },
                ),
                None => (
                    name.clone(),
                    PresetStep {
                        status: StepStatus::Skipped,
                        runtime: None,
                    },
                ),
            }
        })
        .collect()
}

/// `steps.<name>` as the executor exposes a finished step to templates.
fn runtime_value(r: &StepRecord) -> serde_json::Value {
    let t = |d: &Option<DateTime<Utc>>| {
        d.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    serde_json::json!({
        "status": "succeeded",
        "attempts": r.attempts,
        "started_at": t(&r.started_at),
        "finished_at": t(&r.finished_at),
        "outputs": r.outputs,
    })
}

fn initial_manifest(plan: &Plan, run: &RunInfo, max_parallel: u32) -> Manifest {
    let files: Vec<FileHash> = plan
        .files
        .iter()
        .map(|f| FileHash {
            path: PathBuf::from(&f.display),
            sha256: sha256_bytes(f.text.as_bytes()),
        })
        .collect();
    let plan_sha = sha256_file(&plan.path)
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
            max_parallel,
        },
        plan: PlanSection {
            path: plan.path.clone(),
            name: plan.name.clone(),
            description: plan.description.clone(),
            sha256: plan_sha,
            files,
            // Filled by `execute`: git runs as a child of the run (see `record_git`).
            git: None,
            dir: plan.plan_dir.clone(),
            document: plan.document.clone(),
        },
        sources: plan
            .sources
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    SourceTree {
                        path: p.clone(),
                        git: None,
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
        steady_state: None,
        sandbox: None,
    }
}

/// A SIGTERM again within this window is the same request delivered twice (coreutils `timeout`,
/// like many supervisors, signals ttplan and then its whole process group): it is ignored.
/// SIGINT comes from a person at a keyboard, where a quick second Ctrl-C does mean "abort now".
pub const DUPLICATE_SIGNAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RunStatus,
    pub code: u8,
    pub exp_name: String,
    pub run_dir: PathBuf,
    pub manifest: PathBuf,
}

/// Runs a prepared plan to its end (recovery included) and finalises its manifest.
pub async fn execute(p: Prepared, hub: &SignalHub) -> Outcome {
    let Prepared {
        plan,
        run,
        manifest,
        preset,
        resumed,
        max_parallel,
        progress,
    } = p;
    let secrets = Secrets::from_plan(&plan);
    let launch = Launch {
        manifest: Arc::new(ManifestWriter::new(&run.run_dir, manifest, secrets.clone())),
        children: Arc::new(ChildGroups::default()),
        progress: Progress::new(progress),
        plan,
        run,
    };
    // Attached before anything runs, so a second signal kills git and recovery commands too.
    let (guard, mut rx) = hub.attach(Arc::clone(&launch.manifest), Arc::clone(&launch.children));
    let faults = match launch.start(resumed, secrets).await {
        Ok(faults) => faults,
        Err(outcome) => return outcome,
    };
    let executor = Executor {
        plan: Arc::clone(&launch.plan),
        run: Arc::clone(&launch.run),
        manifest: Arc::clone(&launch.manifest),
        faults,
        progress: launch.progress.clone(),
        children: Arc::clone(&launch.children),
        max_parallel: max_parallel as usize,
        preset,
    };
    let status = executor.execute(&mut rx).await;
    launch.finish(status, guard).await
}

/// What the phases of [`execute`] share: the run, its manifest and its child processes.
struct Launch {
    plan: Arc<Plan>,
    run: Arc<RunInfo>,
    manifest: Arc<ManifestWriter>,
    children: Arc<ChildGroups>,
    progress: Progress,
}

impl Launch {
    fn outcome(&self, status: RunStatus, code: u8) -> Outcome {
        Outcome {
            status,
            code,
            exp_name: self.run.exp_name.clone(),
            run_dir: self.run.run_dir.clone(),
            manifest: self.run.run_dir.join(MANIFEST_FILE),
        }
    }

    fn failed(&self) -> Outcome {
        self.outcome(RunStatus::Failed, exit::STEP_FAILED)
    }

    /// Records the git facts, announces the run and opens its fault ledger; `Err` is the
    /// outcome of a run that cannot start.
    async fn start(&self, resumed: bool, secrets: Secrets) -> Result<Arc<FaultLedger>, Outcome> {
        let git = read_git(&self.plan, &self.children).await;
        if let Err(e) = self.manifest.update(|m| git.apply(m)).await {
            eprintln!(
                "error: cannot write {}: {e}",
                self.manifest.path().display()
            );
            return Err(self.failed());
        }
        self.progress.note(&format!(
            "run {} of plan {} → {}",
            self.run.exp_name,
            self.plan.name,
            self.run.run_dir.display()
        ));
        if resumed {
            self.resumed_ledger(secrets).await
        } else {
            Ok(Arc::new(FaultLedger::new(&self.run.run_dir, secrets)))
        }
    }

    /// The resumed run's faults stay in its ledger; any it left injected go first.
    async fn resumed_ledger(&self, secrets: Secrets) -> Result<Arc<FaultLedger>, Outcome> {
        match FaultLedger::open(&self.run.run_dir) {
            Ok(ledger) => {
                let ledger = Arc::new(ledger.with_secrets(secrets));
                let settings = RecoverSettings {
                    timeout: None,
                    kube: Arc::clone(&self.run.kube),
                    force: false,
                    children: Arc::clone(&self.children),
                    recover_fn: crate::steps::recover_fn,
                };
                let failures = ledger.recover_pending(None, "resume", &settings).await;
                if !failures.is_empty() {
                    for (id, e) in failures {
                        self.progress.note(&format!(
                            "✘ fault `{id}` of the resumed run was NOT recovered: {e}"
                        ));
                    }
                    return Err(self.failed());
                }
                Ok(ledger)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Arc::new(FaultLedger::new(&self.run.run_dir, secrets)))
            }
            Err(e) => {
                eprintln!("error: cannot read the fault ledger of the resumed run: {e}");
                Err(self.failed())
            }
        }
    }

    /// Finalises the manifest (then detaches the run from the signal hub) and reports the end.
    async fn finish(&self, status: RunStatus, attachment: Attachment) -> Outcome {
        let code = match status {
            RunStatus::Succeeded => exit::SUCCESS,
            RunStatus::Failed => exit::STEP_FAILED,
            RunStatus::Interrupted | RunStatus::Aborted | RunStatus::Running => exit::INTERRUPTED,
        };
        let finished = Utc::now();
        let failed_steps = self.failed_steps().await;
        let started_at = self.run.started_at;
        let write = self
            .manifest
            .update(|m| {
                // A second signal marked the run aborted and is exiting the process: the run ends
                // as that record says, however far the steps got meanwhile.
                if m.run.status == RunStatus::Aborted {
                    return;
                }
                m.run.status = status;
                m.run.finished_at = Some(finished);
                m.run.duration_ms = (finished - started_at).num_milliseconds().try_into().ok();
                m.run.exit_code = Some(code);
                m.run.errors.splice(0..0, failed_steps);
            })
            .await;
        drop(attachment);
        if let Err(e) = write {
            eprintln!(
                "error: cannot write the final manifest {}: {e}",
                self.manifest.path().display()
            );
        }
        self.note_end(status, finished).await;
        self.outcome(status, code)
    }

    /// One line per failed step (that may not fail): its error's first line.
    async fn failed_steps(&self) -> Vec<String> {
        self.manifest
            .read(|m| {
                m.steps
                    .iter()
                    .filter(|(_, r)| r.status == StepStatus::Failed && !r.allow_failure)
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
            .await
    }

    async fn note_end(&self, status: RunStatus, finished: DateTime<Utc>) {
        let elapsed = (finished - self.run.started_at)
            .to_std()
            .unwrap_or_default();
        let word = match status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "FAILED",
            _ => "INTERRUPTED",
        };
        let notes = self
            .manifest
            .read(super::hypothesis::summary_notes)
            .await
            .iter()
            .map(|n| format!("; {n}"))
            .collect::<String>();
        self.progress.note(&format!(
            "run {word} after {}{notes}; manifest: {}",
            format_elapsed(elapsed),
            self.manifest.path().display()
        ));
    }
}

/// The git facts of the plan's folder and of every `sources` tree.
struct GitFacts {
    plan: Option<GitInfo>,
    sources: Vec<(String, Option<GitInfo>)>,
}

impl GitFacts {
    fn apply(&self, m: &mut Manifest) {
        m.plan.git = self.plan.clone();
        for (name, git) in &self.sources {
            if let Some(s) = m.sources.get_mut(name) {
                s.git = git.clone();
            }
        }
    }
}

/// Reads the git facts with `git` started as a child of the run (registered in `children`),
/// off the async threads.
async fn read_git(plan: &Plan, children: &ChildGroups) -> GitFacts {
    let mut sources = Vec::new();
    for (name, path) in &plan.sources {
        sources.push((name.clone(), git_info(path, children).await));
    }
    GitFacts {
        plan: git_info(&plan.plan_dir, children).await,
        sources,
    }
}

struct Attached {
    id: u64,
    tx: mpsc::UnboundedSender<Interrupt>,
    manifest: Arc<ManifestWriter>,
    children: Arc<ChildGroups>,
}

#[derive(Default)]
struct HubState {
    next: u64,
    runs: Vec<Attached>,
}

/// SIGINT/SIGTERM for the whole process. First signal: every attached run stops gracefully
/// (cancel, `always` steps, recovery) and [`SignalHub::stopped`] fires, so a campaign starts
/// nothing new. Second: kill every child group, mark the attached manifests aborted, exit.
#[derive(Clone)]
pub struct SignalHub {
    state: Arc<Mutex<HubState>>,
    stop: CancellationToken,
}

/// Detaches its run from the hub when dropped.
pub struct Attachment {
    hub: SignalHub,
    id: u64,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Ok(mut s) = self.hub.state.lock() {
            s.runs.retain(|r| r.id != self.id);
        }
    }
}

impl SignalHub {
    /// Installs the handlers; call inside the runtime.
    pub fn install(progress: Progress) -> Self {
        let hub = Self {
            state: Arc::default(),
            stop: CancellationToken::new(),
        };
        tokio::spawn(hub.clone().watch(progress));
        hub
    }

    /// Cancelled at the first signal.
    pub fn stopped(&self) -> CancellationToken {
        self.stop.clone()
    }

    fn attach(
        &self,
        manifest: Arc<ManifestWriter>,
        children: Arc<ChildGroups>,
    ) -> (Attachment, mpsc::UnboundedReceiver<Interrupt>) {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.stop.is_cancelled() {
            let _ = tx.send(Interrupt::Stop);
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.next += 1;
        let id = s.next;
        s.runs.push(Attached {
            id,
            tx,
            manifest,
            children,
        });
        (
            Attachment {
                hub: self.clone(),
                id,
            },
            rx,
        )
    }

    async fn watch(self, progress: Progress) {
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
        let mut last: Option<(SignalKind, std::time::Instant)> = None;
        loop {
            let kind = tokio::select! {
                _ = int.recv() => SignalKind::interrupt(),
                _ = term.recv() => SignalKind::terminate(),
            };
            let now = std::time::Instant::now();
            if kind == SignalKind::terminate()
                && last.is_some_and(|(k, at)| k == kind && now - at < DUPLICATE_SIGNAL_WINDOW)
            {
                // `timeout -s TERM` signals ttplan and then its process group: one request, twice.
                continue;
            }
            last = Some((kind, now));
            seen += 1;
            let runs: Vec<(
                mpsc::UnboundedSender<Interrupt>,
                Arc<ManifestWriter>,
                Arc<ChildGroups>,
            )> = {
                let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.runs
                    .iter()
                    .map(|r| {
                        (
                            r.tx.clone(),
                            Arc::clone(&r.manifest),
                            Arc::clone(&r.children),
                        )
                    })
                    .collect()
            };
            if seen == 1 {
                self.stop.cancel();
                for (tx, _, _) in &runs {
                    let _ = tx.send(Interrupt::Stop);
                }
                continue;
            }
            progress
                .note("second signal: aborting now; faults may be left injected (see faults.json)");
            let now = Utc::now();
            for (_, manifest, children) in &runs {
                children.kill_all();
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
            }
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
    }
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
