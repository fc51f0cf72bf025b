//! The DAG executor: launches steps whose dependencies are done (at most `max_parallel` at
//! once), applies timeouts, retries with backoff, `allow_failure` and `always`, skips the
//! dependents of failed steps, handles SIGINT/SIGTERM, and recovers every unrecovered fault
//! before the run ends.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ctx::{RunInfo, StepCtx};
use super::events::StepEvents;
use super::faults::{FaultLedger, RecoverSettings};
use super::hypothesis::{self, HypothesisRunner, Outcome};
use super::labels::write_fault_labels_with_effects;
use super::manifest::{sha256_file, Artifact, ManifestWriter, RunStatus, StepRecord, StepStatus};
use super::progress::{format_elapsed, Progress};
use crate::plan::validate::render_at_start;
use crate::steps::process::ChildGroups;
use crate::steps::{Plan, PlanStep, KINDS};
use crate::steps::{Step, StepError, StepOutputs};

/// How long a step gets to clean up after its timeout fired or it was cancelled.
const CANCEL_GRACE: Duration = Duration::from_secs(15);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Signals the executor reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// First SIGINT/SIGTERM: stop launching, cancel running steps, run `always` steps and recovery.
    Stop,
}

pub struct Executor {
    pub plan: Arc<Plan>,
    pub run: Arc<RunInfo>,
    pub manifest: Arc<ManifestWriter>,
    pub faults: Arc<FaultLedger>,
    pub progress: Progress,
    pub children: Arc<ChildGroups>,
    pub max_parallel: usize,
    /// Steps settled before the run starts (`--resume`, `--only`, `--from`): they do not run,
    /// count as done for their dependents, and their runtime values feed templates.
    pub preset: IndexMap<String, PresetStep>,
}

/// A step that does not run in this execution.
#[derive(Debug, Clone)]
pub struct PresetStep {
    pub status: StepStatus,
    /// `steps.<name>` for runtime templates (status, times, outputs) — kept from the resumed run.
    pub runtime: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
enum State {
    Pending,
    Running,
    Done(StepStatus),
}

struct Finished {
    name: String,
    status: StepStatus,
    attempts: u32,
    error: Option<String>,
    outputs: StepOutputs,
    artifacts: Vec<Artifact>,
    started_at: chrono::DateTime<Utc>,
    finished_at: chrono::DateTime<Utc>,
}

impl Executor {
    /// Runs the DAG to the end, then recovers leftover faults. A second interrupt on `signals`
    /// is not handled here: the caller aborts the process.
    pub async fn execute(&self, signals: &mut mpsc::UnboundedReceiver<Interrupt>) -> RunStatus {
        let interrupt = CancellationToken::new();
        let mut interrupted = false;
        let mut failed = false;
        let mut states: IndexMap<String, State> = self
            .plan
            .steps
            .keys()
            .map(|k| match self.preset.get(k) {
                Some(p) => (k.clone(), State::Done(p.status)),
                None => (k.clone(), State::Pending),
            })
            .collect();
        let mut runtime: BTreeMap<String, serde_json::Value> = self
            .preset
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p.runtime.clone()?)))
            .collect();
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut running = 0usize;
        let mut watchers: std::collections::HashSet<String> = std::collections::HashSet::new();
        let events = Arc::new(StepEvents::default());
        let steady = HypothesisRunner {
            plan: Arc::clone(&self.plan),
            run: Arc::clone(&self.run),
            faults: Arc::clone(&self.faults),
            progress: self.progress.clone(),
            children: Arc::clone(&self.children),
            events: Arc::clone(&events),
        };
        let fault_steps = hypothesis::fault_steps(&self.plan);
        let mut settled: Vec<String> = hypothesis::recovery_steps(&self.plan)
            .into_iter()
            .chain(fault_steps.iter().cloned())
            .collect();
        let (mut before, mut after): (Option<Outcome>, Option<Outcome>) = (None, None);

        let mut task_names: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            // Decide what can start, what is skipped and what is cancelled. Repeated (`decided`)
            // until nothing changes: a step declared above the steps it runs after must be
            // decided too (declaration order must not matter).
            let names: Vec<String> = states.keys().cloned().collect();
            let mut decided = false;
            for name in &names {
                if !matches!(states[name], State::Pending) {
                    continue;
                }
                let step = &self.plan.steps[name];
                let deps = self.plan.dag.deps(name);
                let dep_states: Vec<(&str, StepStatus)> = deps
                    .iter()
                    .filter_map(|d| match &states[*d] {
                        State::Done(s) => Some((*d, *s)),
                        _ => None,
                    })
                    .collect();
                if dep_states.len() < deps.len() {
                    continue;
                }
                let bad_dep = dep_states.iter().find(|(d, s)| {
                    !(*s == StepStatus::Succeeded
                        || self.preset.contains_key(*d)
                        || (*s == StepStatus::Failed && self.plan.steps[*d].common.allow_failure))
                });
                let launch = if interrupted {
                    step.common.always
                } else {
                    bad_dep.is_none() || step.common.always
                };
                if !launch {
                    let (status, reason) = if interrupted {
                        (StepStatus::Cancelled, "the run was interrupted".to_string())
                    } else {
                        let why = bad_dep.map_or_else(String::new, |(d, s)| {
                            format!("`{d}` {}", status_word(*s))
                        });
                        (StepStatus::Skipped, why)
                    };
                    states[name] = State::Done(status);
                    events.finished(name);
                    decided = true;
                    self.progress
                        .note(&format!("- {name}: {} ({reason})", status_word(status)));
                    self.manifest
                        .update_reported(&self.progress, |m| {
                            if let Some(r) = m.steps.get_mut(name) {
                                r.status = status;
                                r.reason = Some(reason);
                            }
                        })
                        .await;
                    continue;
                }
                // A step that watches another (a continuous probe's `until`) takes no
                // `--max-parallel` slot: holding one could keep the watched step from starting.
                let watcher = step.step.watched_step().is_some();
                if !watcher && running >= self.max_parallel {
                    continue;
                }
                if fault_steps.contains(name) && !self.plan.hypothesis.is_empty() {
                    if before.is_none() {
                        let o = self
                            .check_hypothesis(
                                &steady,
                                "before",
                                &runtime,
                                signals,
                                &interrupt,
                                &mut interrupted,
                            )
                            .await;
                        before = Some(o);
                        self.record_steady_state(before.as_ref(), after.as_ref())
                            .await;
                    }
                    if before.as_ref().is_some_and(|o| o.broken) {
                        let reason =
                            "the steady-state hypothesis failed before the first fault".to_string();
                        failed = true;
                        states[name] = State::Done(StepStatus::Skipped);
                        events.finished(name);
                        decided = true;
                        self.progress.note(&format!("- {name}: skipped ({reason})"));
                        self.manifest
                            .update_reported(&self.progress, |m| {
                                if let Some(r) = m.steps.get_mut(name) {
                                    r.status = StepStatus::Skipped;
                                    r.reason = Some(reason);
                                }
                            })
                            .await;
                        continue;
                    }
                }
                if watcher {
                    watchers.insert(name.clone());
                } else {
                    running += 1;
                }
                events.started(name);
                states[name] = State::Running;
                let token = if step.common.always {
                    CancellationToken::new()
                } else {
                    interrupt.child_token()
                };
                let started_at = Utc::now();
                self.manifest
                    .update_reported(&self.progress, |m| {
                        if let Some(r) = m.steps.get_mut(name) {
                            r.status = StepStatus::Running;
                            r.started_at = Some(started_at);
                            r.log = Some(
                                PathBuf::from("runs")
                                    .join(&self.run.exp_name)
                                    .join("steps")
                                    .join(format!("{name}.log")),
                            );
                        }
                    })
                    .await;
                let job = StepJob {
                    plan: Arc::clone(&self.plan),
                    run: Arc::clone(&self.run),
                    faults: Arc::clone(&self.faults),
                    progress: self.progress.clone(),
                    children: Arc::clone(&self.children),
                    name: name.clone(),
                    runtime: self.runtime_context(&runtime),
                    cancel: token,
                    events: Arc::clone(&events),
                };
                let handle = tasks.spawn(job.run(started_at));
                task_names.insert(handle.id(), name.clone());
            }
            if decided {
                continue;
            }

            if tasks.is_empty() {
                break;
            }
            tokio::select! {
                joined = tasks.join_next_with_id() => {
                    let Some(joined) = joined else { break };
                    let id = match &joined {
                        Ok((id, _)) => *id,
                        Err(e) => e.id(),
                    };
                    if task_names.get(&id).is_none_or(|n| !watchers.remove(n)) {
                        running -= 1;
                    }
                    let f = match joined {
                        Ok((id, f)) => {
                            task_names.remove(&id);
                            f
                        }
                        Err(e) => {
                            // A panicking step must not take the run (and its recovery) down.
                            let name = task_names.remove(&e.id()).unwrap_or_default();
                            self.progress.note(&format!("step `{name}` crashed: {e}"));
                            failed = true;
                            let now = Utc::now();
                            if states.contains_key(&name) {
                                states[&name] = State::Done(StepStatus::Failed);
                                self.record_finished(Finished {
                                    name,
                                    status: StepStatus::Failed,
                                    attempts: 1,
                                    error: Some(format!("the step crashed: {e}")),
                                    outputs: StepOutputs::default(),
                                    artifacts: Vec::new(),
                                    started_at: now,
                                    finished_at: now,
                                })
                                .await;
                            }
                            continue;
                        }
                    };
                    let step = &self.plan.steps[&f.name];
                    if f.status == StepStatus::Failed && !step.common.allow_failure {
                        failed = true;
                    }
                    states[&f.name] = State::Done(f.status);
                    runtime.insert(f.name.clone(), serde_json::json!({
                        "status": status_word(f.status),
                        "attempts": f.attempts,
                        "started_at": f.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "finished_at": f.finished_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "outputs": f.outputs.values,
                    }));
                    events.finished(&f.name);
                    self.record_finished(f).await;
                    // After the last recovery: every fault and `recover` step done, nothing injected.
                    settled.retain(|s| !matches!(states[s], State::Done(_)));
                    if before.is_some() && after.is_none() && settled.is_empty() && !interrupted
                        && !self.faults.snapshot().await.iter().any(|f| f.needs_recovery() && !f.teardown)
                    {
                        after = Some(self.check_hypothesis(&steady, "after", &runtime, signals, &interrupt, &mut interrupted).await);
                        self.record_steady_state(before.as_ref(), after.as_ref()).await;
                    }
                }
                Some(Interrupt::Stop) = signals.recv(), if !interrupted => {
                    interrupted = true;
                    self.progress.note("interrupted: cancelling running steps, then running `always` steps and fault recovery (signal again to abort)");
                    interrupt.cancel();
                }
            }
        }

        // Every step ends with a final status and a reason, even one the loop above could not
        // decide (a dependency that never finished).
        for (name, state) in &states {
            if matches!(state, State::Done(_)) {
                continue;
            }
            let (status, reason) = if interrupted {
                (StepStatus::Cancelled, "the run was interrupted")
            } else {
                (
                    StepStatus::Skipped,
                    "the run ended before its dependencies finished",
                )
            };
            self.progress
                .note(&format!("- {name}: {} ({reason})", status_word(status)));
            self.manifest
                .update_reported(&self.progress, |m| {
                    if let Some(r) = m.steps.get_mut(name) {
                        r.status = status;
                        r.reason = Some(reason.to_string());
                    }
                })
                .await;
        }

        // Leftover faults, whatever happened above.
        let pending = self
            .faults
            .snapshot()
            .await
            .iter()
            .filter(|f| f.needs_recovery())
            .count();
        let mut recovery_errors = Vec::new();
        if pending > 0 {
            self.progress.note(&format!(
                "recovering {pending} fault{}",
                if pending == 1 { "" } else { "s" }
            ));
            let settings = RecoverSettings {
                timeout: None,
                kube: Arc::clone(&self.run.kube),
                force: false,
                children: Arc::clone(&self.children),
                recover_fn: crate::steps::recover_fn,
            };
            let recover = self.faults.recover_pending(None, "engine", &settings);
            tokio::pin!(recover);
            let failures = loop {
                tokio::select! {
                    r = &mut recover => break r,
                    Some(Interrupt::Stop) = signals.recv(), if !interrupted => { interrupted = true; }
                }
            };
            for (id, e) in failures {
                self.progress
                    .note(&format!("✘ fault `{id}` was NOT recovered: {e}"));
                recovery_errors.push(format!("fault `{id}` was not recovered: {e}"));
            }
        }
        // No recover step reached: the engine's recovery above was the last one.
        if before.is_some() && after.is_none() && !interrupted {
            after = Some(
                self.check_hypothesis(
                    &steady,
                    "after",
                    &runtime,
                    signals,
                    &interrupt,
                    &mut interrupted,
                )
                .await,
            );
            self.record_steady_state(before.as_ref(), after.as_ref())
                .await;
        }
        if after.as_ref().is_some_and(|o| o.broken) {
            recovery_errors.push("the steady-state hypothesis failed after recovery".into());
        }
        let faults = self.faults.snapshot().await;
        if let Err(e) = write_fault_labels_with_effects(
            &self.run.run_dir,
            &self.run.exp_name,
            &self.run.run_id,
            &faults,
            &hypothesis::verifying_probes(&self.plan, &runtime),
        ) {
            recovery_errors.push(format!("cannot write fault_labels.json: {e}"));
        }
        self.manifest
            .update_reported(&self.progress, |m| {
                m.faults = faults;
                m.run.errors.extend(recovery_errors.iter().cloned());
            })
            .await;

        if !recovery_errors.is_empty() {
            // A fault left in the cluster is the worse news: exit 1 even after a signal.
            if interrupted {
                self.manifest
                    .update_reported(&self.progress, |m| {
                        m.run.errors.push("the run was interrupted".into())
                    })
                    .await;
            }
            RunStatus::Failed
        } else if interrupted {
            RunStatus::Interrupted
        } else if failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        }
    }

    /// Runs the hypothesis; a first signal meanwhile cancels it and marks the run interrupted.
    #[allow(clippy::too_many_arguments)]
    async fn check_hypothesis(
        &self,
        runner: &HypothesisRunner,
        phase: &str,
        runtime: &BTreeMap<String, serde_json::Value>,
        signals: &mut mpsc::UnboundedReceiver<Interrupt>,
        interrupt: &CancellationToken,
        interrupted: &mut bool,
    ) -> Outcome {
        let ctx = self.runtime_context(runtime);
        let fut = runner.check(phase, &ctx, interrupt.child_token());
        tokio::pin!(fut);
        loop {
            tokio::select! {
                o = &mut fut => return o,
                Some(Interrupt::Stop) = signals.recv(), if !*interrupted => {
                    *interrupted = true;
                    self.progress.note("interrupted: cancelling the steady-state check");
                    interrupt.cancel();
                }
            }
        }
    }

    async fn record_steady_state(&self, before: Option<&Outcome>, after: Option<&Outcome>) {
        let none = || serde_json::json!({ "verdict": "not checked" });
        let value = serde_json::json!({
            "before": before.map_or_else(none, |o| o.record.clone()),
            "after": after.map_or_else(none, |o| o.record.clone()),
        });
        self.manifest
            .update_reported(&self.progress, |m| m.steady_state = Some(value))
            .await;
    }

    fn runtime_context(
        &self,
        steps: &BTreeMap<String, serde_json::Value>,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut ctx = BTreeMap::new();
        ctx.insert(
            "steps".into(),
            serde_json::to_value(steps).unwrap_or_default(),
        );
        ctx.insert(
            "run".into(),
            serde_json::json!({
                "id": self.run.run_id,
                "exp_name": self.run.exp_name,
                "started_at": self.run.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "out_dir": self.run.out_dir,
                "dir": self.run.run_dir,
            }),
        );
        ctx
    }

    async fn record_finished(&self, f: Finished) {
        let elapsed = (f.finished_at - f.started_at).to_std().unwrap_or_default();
        let ok = f.status == StepStatus::Succeeded;
        let outcome = match (&f.status, &f.error) {
            (StepStatus::Failed, Some(e)) if self.plan.steps[&f.name].common.allow_failure => {
                format!("failed (allowed): {}", first_line(e))
            }
            (_, Some(e)) => format!("{}: {}", status_word(f.status), first_line(e)),
            _ => status_word(f.status).to_string(),
        };
        self.progress.step_finished(&f.name, ok, &outcome, elapsed);
        if let Some(e) = &f.error {
            if e.contains('\n') {
                self.progress
                    .note(&format!("  {}", e.replace('\n', "\n  ")));
            }
        }
        let faults = self.faults.snapshot().await;
        self.manifest
            .update_reported(&self.progress, |m| {
                if let Some(r) = m.steps.get_mut(&f.name) {
                    r.status = f.status;
                    r.attempts = f.attempts;
                    r.finished_at = Some(f.finished_at);
                    r.duration_ms = Some(elapsed.as_millis() as u64);
                    r.error = f.error.clone();
                    if f.status != StepStatus::Succeeded {
                        r.reason = f.error.as_deref().map(|e| first_line(e).to_string());
                    }
                    r.outputs = f.outputs.values.clone();
                    r.artifacts = f.artifacts.clone();
                }
                for (service, e) in &f.outputs.endpoints {
                    let mut e = e.clone();
                    e["step"] = serde_json::json!(f.name);
                    m.endpoints.insert(service.clone(), e);
                }
                if let Some(i) = &f.outputs.instrumented {
                    m.instrumented = Some(i.clone());
                }
                m.faults = faults;
            })
            .await;
    }
}

pub fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::Cancelled => "cancelled",
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// One step's life: attempts, timeouts, backoff, artifacts.
struct StepJob {
    plan: Arc<Plan>,
    run: Arc<RunInfo>,
    faults: Arc<FaultLedger>,
    progress: Progress,
    children: Arc<ChildGroups>,
    name: String,
    runtime: BTreeMap<String, serde_json::Value>,
    cancel: CancellationToken,
    events: Arc<StepEvents>,
}

impl StepJob {
    async fn run(self, started_at: chrono::DateTime<Utc>) -> Finished {
        let step = &self.plan.steps[&self.name];
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            self.progress
                .step_started(&self.name, &step.common.kind, attempts);
            let r = self.attempt(step, attempts).await;
            match r {
                Ok(out) => break Ok(out),
                Err(StepError::Cancelled) => break Err(StepError::Cancelled),
                Err(e) if attempts <= step.common.retries && !self.cancel.is_cancelled() => {
                    let factor = 2u32.saturating_pow(attempts - 1);
                    let wait = step
                        .common
                        .backoff
                        .get()
                        .saturating_mul(factor)
                        .min(MAX_BACKOFF);
                    self.progress.step_finished(
                        &self.name,
                        false,
                        &format!(
                            "attempt {attempts} failed: {}; retrying in {}",
                            first_line(&e.to_string()),
                            format_elapsed(wait)
                        ),
                        Duration::ZERO,
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.cancel.cancelled() => break Err(StepError::Cancelled),
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let finished_at = Utc::now();
        let (status, error, outputs, artifacts) = match result {
            Ok(outputs) => match self.hash_artifacts(step, &outputs).await {
                Ok(artifacts) => (StepStatus::Succeeded, None, outputs, artifacts),
                Err(e) => (StepStatus::Failed, Some(e), outputs, Vec::new()),
            },
            Err(StepError::Cancelled) => (
                StepStatus::Cancelled,
                Some("the run was interrupted".to_string()),
                StepOutputs::default(),
                Vec::new(),
            ),
            Err(StepError::FailedWithOutputs { message, outputs }) => {
                (StepStatus::Failed, Some(message), *outputs, Vec::new())
            }
            Err(e) => (
                StepStatus::Failed,
                Some(e.to_string()),
                StepOutputs::default(),
                Vec::new(),
            ),
        };
        Finished {
            name: self.name.clone(),
            status,
            attempts,
            error,
            outputs,
            artifacts,
            started_at,
            finished_at,
        }
    }

    async fn attempt(&self, step: &PlanStep, attempt: u32) -> Result<StepOutputs, StepError> {
        let rendered;
        let (env, imp): (IndexMap<String, String>, &dyn Step) = if step.deferred {
            let r = render_at_start(&self.plan, step, &self.runtime, KINDS)
                .map_err(StepError::Failed)?;
            rendered = r.step;
            (r.env, rendered.as_ref())
        } else {
            (step.common.env.clone(), step.step.as_ref())
        };
        let token = self.cancel.child_token();
        let ctx = StepCtx {
            run: Arc::clone(&self.run),
            step: Arc::from(self.name.as_str()),
            env: Arc::new(env),
            cancel: token.clone(),
            progress: self.progress.clone(),
            faults: Arc::clone(&self.faults),
            attempt,
            children: Arc::clone(&self.children),
            events: Arc::clone(&self.events),
        };
        let limit = step.common.timeout;
        let expiry = async {
            match limit {
                Some(l) => tokio::time::sleep(l.get()).await,
                None => std::future::pending().await,
            }
        };
        let fut = imp.run(&ctx);
        tokio::pin!(fut);
        tokio::select! {
            r = &mut fut => r,
            () = expiry => {
                token.cancel();
                // Let the step stop what it started; past the grace period it is dropped.
                let _ = tokio::time::timeout(CANCEL_GRACE, &mut fut).await;
                Err(StepError::Failed(format!(
                    "timed out after {}",
                    limit.map(|l| l.to_string()).unwrap_or_default()
                )))
            }
            () = self.cancel.cancelled() => {
                // The step sees the cancellation through its token; one stuck in a call that
                // does not watch it (an API request to a server that never answers) is dropped
                // after the grace period, which aborts the call.
                tokio::time::timeout(CANCEL_GRACE, &mut fut)
                    .await
                    .unwrap_or(Err(StepError::Cancelled))
            }
        }
    }

    /// Hashes declared artifacts (globs under the output root) and those the step reported.
    async fn hash_artifacts(
        &self,
        step: &PlanStep,
        outputs: &StepOutputs,
    ) -> Result<Vec<Artifact>, String> {
        let out_dir = self.run.out_dir.clone();
        let patterns = step.common.artifacts.clone();
        let reported = outputs.artifacts.clone();
        let known = outputs.digests.clone();
        let started = Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            collect_artifacts(&out_dir, &patterns, &reported, &known)
        })
        .await
        .map_err(|e| e.to_string())?;
        if started.elapsed() > Duration::from_secs(2) {
            self.progress.note(&format!(
                "{}: hashed artifacts in {}",
                self.name,
                format_elapsed(started.elapsed())
            ));
        }
        r
    }
}

fn collect_artifacts(
    out_dir: &Path,
    patterns: &[String],
    reported: &[PathBuf],
    known: &std::collections::BTreeMap<PathBuf, (u64, String)>,
) -> Result<Vec<Artifact>, String> {
    let known: std::collections::BTreeMap<PathBuf, &(u64, String)> = known
        .iter()
        .map(|(p, d)| {
            (
                if p.is_absolute() {
                    p.clone()
                } else {
                    out_dir.join(p)
                },
                d,
            )
        })
        .collect();
    let mut paths: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            out_dir.join(pattern)
        };
        let matches: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
            .map_err(|e| format!("artifact pattern `{pattern}`: {e}"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if matches.is_empty() {
            return Err(format!(
                "declared artifact `{pattern}` was not produced (looked in {})",
                out_dir.display()
            ));
        }
        paths.extend(matches);
    }
    for p in reported {
        paths.push(if p.is_absolute() {
            p.clone()
        } else {
            out_dir.join(p)
        });
    }
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            // A digest the step computed while writing the file spares reading it again.
            let (bytes, sha256) = match known.get(&p) {
                Some((bytes, sha256)) => (*bytes, sha256.clone()),
                None => {
                    sha256_file(&p).map_err(|e| format!("hashing artifact {}: {e}", p.display()))?
                }
            };
            let path = p.strip_prefix(out_dir).map(Path::to_path_buf).unwrap_or(p);
            Ok(Artifact {
                path,
                bytes,
                sha256,
            })
        })
        .collect()
}

/// Manifest rows for a plan's steps before anything ran.
pub fn pending_records(plan: &Plan) -> IndexMap<String, StepRecord> {
    plan.steps
        .iter()
        .map(|(n, s)| {
            (
                n.clone(),
                StepRecord::pending(&s.common.kind, s.common.allow_failure, s.common.always),
            )
        })
        .collect()
}
