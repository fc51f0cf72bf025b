//! One slot's loop: takes experiments off the shared queue and runs each — cooldown,
//! `before_each`, loading the plan, the run itself — recording every step in the campaign
//! manifest.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::before_each::{prepare_cluster, wait_hypothesis};
use super::load::{Campaign, Experiment};
use super::model::{OnFailure, Slot};
use super::record::{describe, ExpStatus};
use super::runner::{CampaignOptions, Shared};
use crate::engine::launch::{self, LaunchError, Outcome, Prepared, RunConfig, SignalHub};
use crate::engine::manifest::{RunStatus, MANIFEST_FILE};
use crate::engine::progress::format_elapsed;
use crate::kube::{KubeAccess, KubeSettings};

/// Runs experiments on `slot` until the queue is empty, the campaign stops or a signal
/// interrupts it.
pub(super) async fn worker(
    shared: Arc<Shared>,
    c: Arc<Campaign>,
    opts: Arc<CampaignOptions>,
    slot: Slot,
    hub: SignalHub,
) {
    let w = SlotWorker {
        stopped: hub.stopped(),
        kube: slot_kube(&slot, &opts.kube),
        label: slot.label(),
        shared,
        c,
        opts,
        hub,
    };
    w.run().await;
}

/// The command line's cluster with the slot's overrides.
fn slot_kube(slot: &Slot, cli: &KubeSettings) -> KubeSettings {
    KubeSettings {
        kubeconfig: slot.kubeconfig.clone().or_else(|| cli.kubeconfig.clone()),
        context: slot.context.clone().or_else(|| cli.context.clone()),
        namespace: slot.namespace.clone().or_else(|| cli.namespace.clone()),
        request_timeout: cli.request_timeout,
    }
}

/// What one slot's experiments share.
struct SlotWorker {
    shared: Arc<Shared>,
    c: Arc<Campaign>,
    opts: Arc<CampaignOptions>,
    /// The slot's cluster.
    kube: KubeSettings,
    label: String,
    hub: SignalHub,
    /// The signal hub's stop: an interrupted experiment that has not started stays pending.
    stopped: CancellationToken,
}

impl SlotWorker {
    async fn run(&self) {
        let mut first = true;
        loop {
            if self.stopped.is_cancelled() || self.shared.stop.is_cancelled() {
                return;
            }
            let Some(i) = self.shared.queue.lock().await.pop_front() else {
                return;
            };
            if !first && !self.cool_down().await {
                return;
            }
            first = false;
            if self.run_experiment(i).await.is_break() {
                return;
            }
        }
    }

    /// A progress line about experiment `i`.
    fn note(&self, i: usize, what: &str) {
        let total = self.c.experiments.len();
        self.shared
            .progress
            .note(&format!("[{}/{total}] {what}", i + 1));
    }

    /// The campaign's `cooldown` between two experiments of this slot; false when interrupted.
    async fn cool_down(&self) -> bool {
        let cooldown = &self.c.spec.cooldown;
        if cooldown.get().is_zero() {
            return true;
        }
        self.shared
            .progress
            .note(&format!("cooldown {cooldown} ({})", self.label));
        tokio::select! {
            () = tokio::time::sleep(cooldown.get()) => true,
            () = self.stopped.cancelled() => false,
        }
    }

    /// Runs experiment `i` from `before_each` to its recorded outcome; `Break` ends this slot.
    async fn run_experiment(&self, i: usize) -> ControlFlow<()> {
        let exp = &self.c.experiments[i];
        let what = describe(&exp.plan, &exp.sets, exp.repeat);
        self.note(i, &format!("{what}: starting ({})", self.label));
        let started = Utc::now();
        let prepared = match self.before_start(i).await {
            // Interrupted before the experiment started: it stays pending.
            None => return ControlFlow::Break(()),
            Some(Err(e)) => {
                self.failed_before_start(i, &what, started, e).await;
                return ControlFlow::Continue(());
            }
            Some(Ok(p)) => p,
        };
        let exp_name = prepared.run.exp_name.clone();
        self.mark_running(i, &prepared, started).await;
        let outcome = launch::execute(prepared, &self.hub).await;
        let page_of = outcome.run_dir.clone();
        // The page reads the whole dataset: off the async threads; a failure only warns.
        let _ = tokio::task::spawn_blocking(move || crate::report::after_run(&page_of)).await;
        let finished = Utc::now();
        let elapsed = (finished - started).to_std().unwrap_or_default();
        let status = exp_status(outcome.status);
        self.record_outcome(i, &outcome, status, finished, elapsed)
            .await;
        let eta = self.eta(elapsed).await;
        self.note(
            i,
            &format!(
                "{exp_name}: {} in {}{eta}",
                status.word(),
                format_elapsed(elapsed)
            ),
        );
        self.after(status)
    }

    /// `before_each` and loading the plan: the prepared run, or why the experiment failed
    /// before it started; `None` when interrupted meanwhile.
    async fn before_start(&self, i: usize) -> Option<Result<Prepared, String>> {
        let be = &self.c.spec.before_each;
        let ns = be.namespace.as_deref().or(self.kube.namespace.as_deref());
        let access = KubeAccess::new(self.kube.clone());
        let before_each_started = Instant::now();
        let checked = tokio::select! {
            r = prepare_cluster(be, &access, ns) => r,
            () = self.stopped.cancelled() => return None,
        };
        let prepared = match checked {
            Err(e) => Err(format!("before_each: {e}")),
            Ok(notes) => {
                for n in notes {
                    self.note(i, &n);
                }
                self.load_plan(i).await
            }
        };
        match prepared {
            Ok(p) if be.hypothesis => {
                let left = be
                    .timeout
                    .get()
                    .saturating_sub(before_each_started.elapsed());
                self.hypothesis_holds(i, p, left).await
            }
            other => Some(other),
        }
    }

    /// Loads experiment `i`'s plan as a run on this slot's cluster.
    async fn load_plan(&self, i: usize) -> Result<Prepared, String> {
        // Loading reads the plan's files and asks git: blocking work, off the async threads.
        let exp = self.c.experiments[i].clone();
        let (opts, kube) = (Arc::clone(&self.opts), self.kube.clone());
        match tokio::task::spawn_blocking(move || prepare_run(&exp, &opts, &kube)).await {
            Err(e) => Err(format!("preparing the run: {e}")),
            Ok(r) => r.map_err(|e| {
                e.report();
                match e {
                    LaunchError::Plan(p) => format!("the plan does not load: {p}"),
                    LaunchError::Other { message, .. } => message,
                }
            }),
        }
    }

    /// `before_each.hypothesis`: waits for the plan's steady-state hypothesis within `left`.
    async fn hypothesis_holds(
        &self,
        i: usize,
        p: Prepared,
        left: Duration,
    ) -> Option<Result<Prepared, String>> {
        match wait_hypothesis(&p, left, &self.stopped).await {
            Ok(checks) => {
                self.note(
                    i,
                    &format!(
                        "the steady-state hypothesis holds ({checks} check{})",
                        if checks == 1 { "" } else { "s" }
                    ),
                );
                Some(Ok(p))
            }
            Err(_) if self.stopped.is_cancelled() => None,
            Err(e) => Some(Err(format!("before_each: {e}"))),
        }
    }

    async fn failed_before_start(&self, i: usize, what: &str, started: DateTime<Utc>, e: String) {
        self.note(i, &format!("{what}: FAILED before it started: {e}"));
        let finished = Utc::now();
        self.shared
            .update(|m| {
                let r = &mut m.experiments[i];
                r.status = ExpStatus::Failed;
                r.slot = Some(self.label.clone());
                r.started_at = Some(started);
                r.finished_at = Some(finished);
                r.error = Some(e);
            })
            .await;
        if self.c.spec.on_failure == OnFailure::Stop {
            self.shared.stop.cancel();
        }
    }

    async fn mark_running(&self, i: usize, prepared: &Prepared, started: DateTime<Utc>) {
        let run_dir = &prepared.run.run_dir;
        self.shared
            .update(|m| {
                let r = &mut m.experiments[i];
                r.status = ExpStatus::Running;
                r.slot = Some(self.label.clone());
                r.exp_name = Some(prepared.run.exp_name.clone());
                r.manifest = Some(run_dir.join(MANIFEST_FILE));
                r.run_dir = Some(run_dir.clone());
                r.started_at = Some(started);
            })
            .await;
    }

    async fn record_outcome(
        &self,
        i: usize,
        outcome: &Outcome,
        status: ExpStatus,
        finished: DateTime<Utc>,
        elapsed: Duration,
    ) {
        let (verified, errors) = read_run_result(&outcome.manifest);
        self.shared
            .update(|m| {
                let r = &mut m.experiments[i];
                r.status = status;
                r.finished_at = Some(finished);
                r.duration_ms = u64::try_from(elapsed.as_millis()).ok();
                r.exit_code = Some(outcome.code);
                r.fault_verified = verified;
                r.error = errors;
            })
            .await;
    }

    /// ` · N left, ETA …` from the mean duration so far, or nothing when the queue is empty.
    async fn eta(&self, elapsed: Duration) -> String {
        let mut d = self.shared.durations.lock().await;
        d.push(elapsed);
        let left = self.shared.queue.lock().await.len();
        if left == 0 {
            return String::new();
        }
        let eta = time_left(&d, left, self.shared.slots, self.c.spec.cooldown.get());
        format!(
            " · {left} left, ETA {} (~{})",
            (Utc::now() + chrono::Duration::from_std(eta).unwrap_or_default()).format("%H:%M UTC"),
            format_elapsed(eta)
        )
    }

    /// Whether this slot goes on after an experiment that ended `status`.
    fn after(&self, status: ExpStatus) -> ControlFlow<()> {
        match status {
            ExpStatus::Succeeded => {}
            ExpStatus::Failed if self.c.spec.on_failure == OnFailure::Continue => {}
            ExpStatus::Failed => {
                self.shared
                    .progress
                    .note("on_failure: stop — no further experiments start");
                self.shared.stop.cancel();
            }
            _ => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }
}

fn exp_status(run: RunStatus) -> ExpStatus {
    match run {
        RunStatus::Succeeded => ExpStatus::Succeeded,
        RunStatus::Failed => ExpStatus::Failed,
        RunStatus::Aborted => ExpStatus::Aborted,
        RunStatus::Interrupted | RunStatus::Running => ExpStatus::Interrupted,
    }
}

/// How long `left` queued experiments take on `slots` slots: rounds of the mean duration so
/// far plus the cooldown.
fn time_left(durations: &[Duration], left: usize, slots: usize, cooldown: Duration) -> Duration {
    let avg =
        durations.iter().sum::<Duration>() / u32::try_from(durations.len()).unwrap_or(1).max(1);
    let rounds = left.div_ceil(slots);
    (avg + cooldown) * u32::try_from(rounds).unwrap_or(u32::MAX)
}

/// Loads and prepares one experiment with a fresh start time. Two experiments of one plan can
/// render the same exp name (same second, a name without a timestamp): later ones get `_2`, `_3`…
fn prepare_run(
    exp: &Experiment,
    opts: &CampaignOptions,
    kube: &KubeSettings,
) -> Result<Prepared, LaunchError> {
    let now = Utc::now();
    let mut cfg = RunConfig {
        plan: exp.plan_path.clone(),
        sets: exp.sets.clone(),
        out: opts.out.clone(),
        max_parallel: opts.max_parallel,
        progress: opts.progress,
        kube: kube.clone(),
        resume: None,
        only: Vec::new(),
        from: None,
        sandbox: opts.sandbox.clone(),
    };
    let mut plan = launch::load(&cfg, now)?;
    let base = plan.exp_name.clone();
    let mut n = 1;
    while opts
        .out
        .join("runs")
        .join(&plan.exp_name)
        .join(MANIFEST_FILE)
        .exists()
    {
        n += 1;
        cfg.sets = exp.sets.clone();
        cfg.sets.push(format!("exp_name={base}_{n}"));
        plan = launch::load(&cfg, now)?;
    }
    launch::prepare(plan, &cfg, now)
}

/// From a finished run's manifest: whether every fault was confirmed injected, and its errors.
fn read_run_result(manifest: &std::path::Path) -> (Option<bool>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return (None, None);
    };
    let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) else {
        return (None, None);
    };
    let faults: Vec<&serde_json::Value> = m
        .get("faults")
        .and_then(|f| f.as_array())
        .map(|a| a.iter().filter(|f| f["teardown"] != true).collect())
        .unwrap_or_default();
    let labels: Option<serde_json::Value> = manifest
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join("fault_labels.json")).ok())
        .and_then(|t| serde_json::from_str(&t).ok());
    let verified = crate::engine::labels::faults_verified(labels.as_ref(), faults.len(), |i| {
        faults[i]["injected_at"].is_string()
    });
    let errors: Vec<String> = m
        .pointer("/run/errors")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (verified, (!errors.is_empty()).then(|| errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_counts_rounds_of_the_mean_duration_and_the_cooldown() {
        let secs = Duration::from_secs;
        let done = [secs(100), secs(200)];
        // 5 left on 2 slots: 3 rounds of (150 s + 10 s).
        assert_eq!(time_left(&done, 5, 2, secs(10)), secs(480));
        assert_eq!(time_left(&done, 1, 4, Duration::ZERO), secs(150));
    }

    #[test]
    fn a_slot_flag_overrides_the_command_line_and_the_rest_is_inherited() {
        let cli = KubeSettings {
            kubeconfig: Some("/cli/config".into()),
            context: Some("cli".into()),
            namespace: Some("tt".into()),
            request_timeout: Some(Duration::from_secs(7)),
        };
        let slot = Slot {
            context: Some("slot-b".into()),
            ..Slot::default()
        };
        let k = slot_kube(&slot, &cli);
        assert_eq!(k.context.as_deref(), Some("slot-b"));
        assert_eq!(k.kubeconfig, cli.kubeconfig);
        assert_eq!(k.namespace.as_deref(), Some("tt"));
        assert_eq!(k.request_timeout, cli.request_timeout);
    }
}
