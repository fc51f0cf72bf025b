//! The DAG executor: launches steps whose dependencies are done (at most `max_parallel` at
//! once), applies timeouts, retries with backoff, `allow_failure` and `always`, skips the
//! dependents of failed steps, handles SIGINT/SIGTERM, and recovers every unrecovered fault
//! before the run ends.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
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
        let mut run = DagRun::new(self, signals);
        run.run_steps().await;
        run.settle_undecided().await;
        let mut errors = run.recover_leftovers().await;
        // No recover step reached: the engine's recovery above was the last one.
        run.check_after_recovery().await;
        if run.after.as_ref().is_some_and(|o| o.broken) {
            errors.push("the steady-state hypothesis failed after recovery".into());
        }
        run.record_faults(&mut errors).await;
        run.status(&errors).await
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

/// One execution's state while the DAG runs: where each step is, which tasks run, and the
/// steady-state checks so far.
struct DagRun<'a> {
    exec: &'a Executor,
    signals: &'a mut mpsc::UnboundedReceiver<Interrupt>,
    /// Cancelled by the first interrupt; steps other than `always` ones run under a child.
    interrupt: CancellationToken,
    interrupted: bool,
    /// A step failed without `allow_failure`, or the hypothesis failed before the first fault.
    failed: bool,
    states: IndexMap<String, State>,
    /// `steps.<name>` for runtime templates.
    runtime: BTreeMap<String, serde_json::Value>,
    tasks: JoinSet<Finished>,
    task_names: HashMap<tokio::task::Id, String>,
    /// Running steps that hold a `--max-parallel` slot.
    running: usize,
    /// Running steps that hold none (they watch another step).
    watchers: HashSet<String>,
    events: Arc<StepEvents>,
    steady: HypothesisRunner,
    fault_steps: BTreeSet<String>,
    /// Fault and `recover` steps not done yet.
    settled: Vec<String>,
    before: Option<Outcome>,
    after: Option<Outcome>,
}

impl<'a> DagRun<'a> {
    fn new(exec: &'a Executor, signals: &'a mut mpsc::UnboundedReceiver<Interrupt>) -> Self {
        let states = exec
            .plan
            .steps
            .keys()
            .map(|k| match exec.preset.get(k) {
                Some(p) => (k.clone(), State::Done(p.status)),
                None => (k.clone(), State::Pending),
            })
            .collect();
        let runtime = exec
            .preset
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p.runtime.clone()?)))
            .collect();
        let events = Arc::new(StepEvents::default());
        let steady = HypothesisRunner {
            plan: Arc::clone(&exec.plan),
            run: Arc::clone(&exec.run),
            faults: Arc::clone(&exec.faults),
            progress: exec.progress.clone(),
            children: Arc::clone(&exec.children),
            events: Arc::clone(&events),
        };
        let fault_steps = hypothesis::fault_steps(&exec.plan);
        let settled = hypothesis::recovery_steps(&exec.plan)
            .into_iter()
            .chain(fault_steps.iter().cloned())
            .collect();
        Self {
            exec,
            signals,
            interrupt: CancellationToken::new(),
            interrupted: false,
            failed: false,
            states,
            runtime,
            tasks: JoinSet::new(),
            task_names: HashMap::new(),
            running: 0,
            watchers: HashSet::new(),
            events,
            steady,
            fault_steps,
            settled,
            before: None,
            after: None,
        }
    }

    /// Starts, skips and cancels steps and waits for them until no task is left.
    async fn run_steps(&mut self) {
        loop {
            // Repeated until nothing changes: a step declared above the steps it runs after
            // must be decided too (declaration order must not matter).
            if self.decide().await {
                continue;
            }
            if self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                joined = self.tasks.join_next_with_id() => {
                    let Some(joined) = joined else { break };
                    self.task_ended(joined).await;
                }
                Some(Interrupt::Stop) = self.signals.recv(), if !self.interrupted => {
                    self.interrupted = true;
                    self.exec.progress.note("interrupted: cancelling running steps, then running `always` steps and fault recovery (signal again to abort)");
                    self.interrupt.cancel();
                }
            }
        }
    }

    /// Decides each pending step whose dependencies are done; true when one was settled
    /// without running (others may depend on it, so the caller decides again).
    async fn decide(&mut self) -> bool {
        let names: Vec<String> = self.states.keys().cloned().collect();
        let mut decided = false;
        for name in &names {
            if matches!(self.states[name], State::Pending) {
                decided |= self.decide_step(name).await;
            }
        }
        decided
    }

    /// Launches a step, or settles it as skipped or cancelled (then true).
    async fn decide_step(&mut self, name: &str) -> bool {
        let exec = self.exec;
        let step = &exec.plan.steps[name];
        let Some(bad_dep) = self.blocking_dependency(name) else {
            return false;
        };
        let launch = if self.interrupted {
            step.common.always
        } else {
            bad_dep.is_none() || step.common.always
        };
        if !launch {
            let (status, reason) = if self.interrupted {
                (StepStatus::Cancelled, "the run was interrupted".to_string())
            } else {
                let why =
                    bad_dep.map_or_else(String::new, |(d, s)| format!("`{d}` {}", status_word(s)));
                (StepStatus::Skipped, why)
            };
            self.settle(name, status, reason).await;
            return true;
        }
        // A step that watches another (a continuous probe's `until`) takes no
        // `--max-parallel` slot: holding one could keep the watched step from starting.
        let watcher = step.step.watched_step().is_some();
        if !watcher && self.running >= exec.max_parallel {
            return false;
        }
        if self.fault_steps.contains(name) && !exec.plan.hypothesis.is_empty() {
            if self.before.is_none() {
                let o = self.check_hypothesis("before").await;
                self.before = Some(o);
                exec.record_steady_state(self.before.as_ref(), self.after.as_ref())
                    .await;
            }
            if self.before.as_ref().is_some_and(|o| o.broken) {
                let reason =
                    "the steady-state hypothesis failed before the first fault".to_string();
                self.failed = true;
                self.settle(name, StepStatus::Skipped, reason).await;
                return true;
            }
        }
        self.launch(name, watcher).await;
        false
    }

    /// `None` while a dependency is not done; else the first done dependency that keeps the
    /// step from running (anything but success, a preset step or an allowed failure), if any.
    fn blocking_dependency(&self, name: &str) -> Option<Option<(&'a str, StepStatus)>> {
        let plan: &'a Plan = &self.exec.plan;
        let deps = plan.dag.deps(name);
        let dep_states: Vec<(&str, StepStatus)> = deps
            .iter()
            .filter_map(|d| match &self.states[*d] {
                State::Done(s) => Some((*d, *s)),
                _ => None,
            })
            .collect();
        if dep_states.len() < deps.len() {
            return None;
        }
        Some(dep_states.into_iter().find(|(d, s)| {
            !(*s == StepStatus::Succeeded
                || self.exec.preset.contains_key(*d)
                || (*s == StepStatus::Failed && plan.steps[*d].common.allow_failure))
        }))
    }

    /// A step that will not run: its final status and why, on the console and in the manifest.
    async fn settle(&mut self, name: &str, status: StepStatus, reason: String) {
        self.states[name] = State::Done(status);
        self.events.finished(name);
        self.exec
            .progress
            .note(&format!("- {name}: {} ({reason})", status_word(status)));
        self.exec
            .manifest
            .update_reported(&self.exec.progress, |m| {
                if let Some(r) = m.steps.get_mut(name) {
                    r.status = status;
                    r.reason = Some(reason);
                }
            })
            .await;
    }

    async fn launch(&mut self, name: &str, watcher: bool) {
        let exec = self.exec;
        let step = &exec.plan.steps[name];
        if watcher {
            self.watchers.insert(name.to_string());
        } else {
            self.running += 1;
        }
        self.events.started(name);
        self.states[name] = State::Running;
        let token = if step.common.always {
            CancellationToken::new()
        } else {
            self.interrupt.child_token()
        };
        let started_at = Utc::now();
        exec.manifest
            .update_reported(&exec.progress, |m| {
                if let Some(r) = m.steps.get_mut(name) {
                    r.status = StepStatus::Running;
                    r.started_at = Some(started_at);
                    r.log = Some(
                        PathBuf::from("runs")
                            .join(&exec.run.exp_name)
                            .join("steps")
                            .join(format!("{name}.log")),
                    );
                }
            })
            .await;
        let job = StepJob {
            plan: Arc::clone(&exec.plan),
            run: Arc::clone(&exec.run),
            faults: Arc::clone(&exec.faults),
            progress: exec.progress.clone(),
            children: Arc::clone(&exec.children),
            name: name.to_string(),
            runtime: exec.runtime_context(&self.runtime),
            cancel: token,
            events: Arc::clone(&self.events),
        };
        let handle = self.tasks.spawn(job.run(started_at));
        self.task_names.insert(handle.id(), name.to_string());
    }

    /// A step's task ended: its result recorded, and the hypothesis checked when this was the
    /// last recovery.
    async fn task_ended(&mut self, joined: Result<(tokio::task::Id, Finished), JoinError>) {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        if self
            .task_names
            .get(&id)
            .is_none_or(|n| !self.watchers.remove(n))
        {
            self.running -= 1;
        }
        let f = match joined {
            Ok((id, f)) => {
                self.task_names.remove(&id);
                f
            }
            Err(e) => return self.task_crashed(&e).await,
        };
        let exec = self.exec;
        let step = &exec.plan.steps[&f.name];
        if f.status == StepStatus::Failed && !step.common.allow_failure {
            self.failed = true;
        }
        self.states[&f.name] = State::Done(f.status);
        self.runtime.insert(f.name.clone(), runtime_value(&f));
        self.events.finished(&f.name);
        exec.record_finished(f).await;
        // After the last recovery: every fault and `recover` step done, nothing injected.
        self.settled
            .retain(|s| !matches!(self.states[s], State::Done(_)));
        if self.before.is_some()
            && self.after.is_none()
            && !self.interrupted
            && self.settled.is_empty()
            && !exec
                .faults
                .snapshot()
                .await
                .iter()
                .any(|f| f.needs_recovery() && !f.teardown)
        {
            self.check_after_recovery().await;
        }
    }

    /// A panicking step must not take the run (and its recovery) down.
    async fn task_crashed(&mut self, e: &JoinError) {
        let name = self.task_names.remove(&e.id()).unwrap_or_default();
        self.exec
            .progress
            .note(&format!("step `{name}` crashed: {e}"));
        self.failed = true;
        let now = Utc::now();
        if self.states.contains_key(&name) {
            self.states[&name] = State::Done(StepStatus::Failed);
            self.exec
                .record_finished(Finished {
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
    }

    async fn check_hypothesis(&mut self, phase: &str) -> Outcome {
        self.exec
            .check_hypothesis(
                &self.steady,
                phase,
                &self.runtime,
                self.signals,
                &self.interrupt,
                &mut self.interrupted,
            )
            .await
    }

    /// The hypothesis after the last recovery, once, if it was checked before the first fault
    /// and the run was not interrupted.
    async fn check_after_recovery(&mut self) {
        if self.before.is_some() && self.after.is_none() && !self.interrupted {
            self.after = Some(self.check_hypothesis("after").await);
            self.exec
                .record_steady_state(self.before.as_ref(), self.after.as_ref())
                .await;
        }
    }

    /// Every step ends with a final status and a reason, even one the loop could not decide
    /// (a dependency that never finished).
    async fn settle_undecided(&self) {
        let exec = self.exec;
        for (name, state) in &self.states {
            if matches!(state, State::Done(_)) {
                continue;
            }
            let (status, reason) = if self.interrupted {
                (StepStatus::Cancelled, "the run was interrupted")
            } else {
                (
                    StepStatus::Skipped,
                    "the run ended before its dependencies finished",
                )
            };
            exec.progress
                .note(&format!("- {name}: {} ({reason})", status_word(status)));
            exec.manifest
                .update_reported(&exec.progress, |m| {
                    if let Some(r) = m.steps.get_mut(name) {
                        r.status = status;
                        r.reason = Some(reason.to_string());
                    }
                })
                .await;
        }
    }

    /// Recovers the faults still injected, whatever happened above; the errors of those that
    /// were not recovered.
    async fn recover_leftovers(&mut self) -> Vec<String> {
        let exec = self.exec;
        let pending = exec
            .faults
            .snapshot()
            .await
            .iter()
            .filter(|f| f.needs_recovery())
            .count();
        let mut recovery_errors = Vec::new();
        if pending == 0 {
            return recovery_errors;
        }
        exec.progress.note(&format!(
            "recovering {pending} fault{}",
            if pending == 1 { "" } else { "s" }
        ));
        let settings = RecoverSettings {
            timeout: None,
            kube: Arc::clone(&exec.run.kube),
            force: false,
            children: Arc::clone(&exec.children),
            recover_fn: crate::steps::recover_fn,
        };
        let recover = exec.faults.recover_pending(None, "engine", &settings);
        tokio::pin!(recover);
        let failures = loop {
            tokio::select! {
                r = &mut recover => break r,
                Some(Interrupt::Stop) = self.signals.recv(), if !self.interrupted => { self.interrupted = true; }
            }
        };
        for (id, e) in failures {
            exec.progress
                .note(&format!("✘ fault `{id}` was NOT recovered: {e}"));
            recovery_errors.push(format!("fault `{id}` was not recovered: {e}"));
        }
        recovery_errors
    }

    /// The ground-truth labels and the manifest's fault list and run errors.
    async fn record_faults(&self, recovery_errors: &mut Vec<String>) {
        let exec = self.exec;
        let faults = exec.faults.snapshot().await;
        if let Err(e) = write_fault_labels_with_effects(
            &exec.run.run_dir,
            &exec.run.exp_name,
            &exec.run.run_id,
            &faults,
            &hypothesis::verifying_probes(&exec.plan, &self.runtime),
        ) {
            recovery_errors.push(format!("cannot write fault_labels.json: {e}"));
        }
        exec.manifest
            .update_reported(&exec.progress, |m| {
                m.faults = faults;
                m.run.errors.extend(recovery_errors.iter().cloned());
            })
            .await;
    }

    async fn status(&self, recovery_errors: &[String]) -> RunStatus {
        if !recovery_errors.is_empty() {
            // A fault left in the cluster is the worse news: exit 1 even after a signal.
            if self.interrupted {
                self.exec
                    .manifest
                    .update_reported(&self.exec.progress, |m| {
                        m.run.errors.push("the run was interrupted".into())
                    })
                    .await;
            }
            RunStatus::Failed
        } else if self.interrupted {
            RunStatus::Interrupted
        } else if self.failed {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        }
    }
}

/// `steps.<name>` as runtime templates read it.
fn runtime_value(f: &Finished) -> serde_json::Value {
    serde_json::json!({
        "status": status_word(f.status),
        "attempts": f.attempts,
        "started_at": f.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "finished_at": f.finished_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "outputs": f.outputs.values,
    })
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
