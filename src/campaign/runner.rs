//! Running a campaign: validate every experiment's plan first, then run experiments one per
//! slot, recording each in the campaign manifest as it starts and ends.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;

use super::before_each::{prepare_cluster, wait_hypothesis};
use super::load::Campaign;
use super::model::{OnFailure, Slot};
use super::record::{
    describe, Attempt, CampaignManifest, CampaignSection, ExpStatus, ExperimentRecord,
    CAMPAIGN_MANIFEST,
};
use crate::diag::PlanErrors;
use crate::engine::faults::RecoverSettings;
use crate::engine::launch::{self, LaunchError, RunConfig, SignalHub};
use crate::engine::manifest::{RunStatus, MANIFEST_FILE};
use crate::engine::progress::{format_elapsed, Progress, ProgressMode};
use crate::exit;
use crate::kube::{KubeAccess, KubeSettings};

pub struct CampaignOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub max_parallel: u32,
    pub progress: ProgressMode,
    /// The command line's cluster; slots override parts of it.
    pub kube: KubeSettings,
    /// `--sandbox`: the simulated environment every experiment runs against.
    pub sandbox: Option<serde_json::Value>,
}

/// Loads every experiment's plan as it would run; all problems of all plans together.
pub fn validate(c: &Campaign, out: &std::path::Path) -> Result<(), Vec<(String, PlanErrors)>> {
    let now = Utc::now();
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for e in &c.experiments {
        if !seen.insert((e.plan_path.clone(), e.sets.clone())) {
            continue;
        }
        if let Err(errs) = launch::load_fresh(&e.plan_path, &e.sets, now, out) {
            problems.push((describe(&e.plan, &e.sets, 1), errs));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

struct Shared {
    manifest: Mutex<CampaignManifest>,
    out: PathBuf,
    queue: Mutex<VecDeque<usize>>,
    /// Durations of finished experiments, for the ETA.
    durations: Mutex<Vec<Duration>>,
    stop: tokio_util::sync::CancellationToken,
    slots: usize,
    progress: Progress,
}

impl Shared {
    async fn update(&self, f: impl FnOnce(&mut CampaignManifest)) {
        let mut m = self.manifest.lock().await;
        f(&mut m);
        m.summarise();
        if let Err(e) = m.write(&self.out) {
            self.progress.note(&format!(
                "warning: cannot write {}: {e}",
                self.out.join(CAMPAIGN_MANIFEST).display()
            ));
        }
    }
}

/// Runs the campaign; returns the exit code.
pub async fn run_campaign(c: Campaign, opts: CampaignOptions, hub: SignalHub) -> u8 {
    let progress = Progress::new(opts.progress);
    let out = std::path::absolute(&opts.out).unwrap_or(opts.out.clone());
    let slots: Vec<Slot> = if c.spec.slots.is_empty() {
        vec![Slot::default()]
    } else {
        c.spec.slots.clone()
    };
    let existing = out.join(CAMPAIGN_MANIFEST);
    let now = Utc::now();
    let mut manifest = if opts.resume && existing.exists() {
        match CampaignManifest::read(&out) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: --resume: {e}");
                return exit::INVALID;
            }
        }
    } else if existing.exists() {
        eprintln!(
            "error: {} already holds a campaign; nothing was overwritten.\n  help: continue it with --resume, or pass another --out",
            existing.display()
        );
        return exit::INVALID;
    } else {
        CampaignManifest {
            manifest_version: 1,
            tool: format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
            campaign: CampaignSection {
                file: c.file.clone(),
                name: c.name.clone(),
                sha256: c.sha256.clone(),
                status: "running".into(),
                started_at: now,
                finished_at: None,
                resumed_at: Vec::new(),
                slots: Vec::new(),
                sandbox: opts.sandbox.clone(),
            },
            experiments: Vec::new(),
            summary: Default::default(),
        }
    };
    if opts.resume && existing.exists() {
        manifest.campaign.resumed_at.push(now);
        // A resumed campaign runs against this invocation's environment.
        manifest.campaign.sandbox = opts.sandbox.clone();
        manifest.campaign.status = "running".into();
        manifest.campaign.finished_at = None;
        if manifest.campaign.sha256 != c.sha256 {
            progress.note("note: the campaign file changed since the campaign started; experiments are matched by plan, matrix values and repeat number");
            manifest.campaign.sha256 = c.sha256.clone();
        }
    }
    manifest.campaign.slots = slots.iter().map(Slot::label).collect();
    // The experiments as the file names them now; earlier records are matched by key.
    let mut old: Vec<ExperimentRecord> = std::mem::take(&mut manifest.experiments);
    for (i, e) in c.experiments.iter().enumerate() {
        let record = match old.iter().position(|o| o.key == e.key) {
            Some(p) => {
                let mut r = old.remove(p);
                r.index = i + 1;
                r
            }
            None => ExperimentRecord {
                index: i + 1,
                key: e.key.clone(),
                plan: e.plan.clone(),
                sets: e.sets.clone(),
                repeat: e.repeat,
                status: ExpStatus::Pending,
                slot: None,
                exp_name: None,
                run_dir: None,
                manifest: None,
                started_at: None,
                finished_at: None,
                duration_ms: None,
                exit_code: None,
                fault_verified: None,
                error: None,
                attempts: Vec::new(),
            },
        };
        manifest.experiments.push(record);
    }
    // Never leave a half-run experiment: recover what an unfinished try left injected, then
    // queue it again.
    for r in manifest.experiments.iter_mut() {
        if r.status == ExpStatus::Succeeded || r.status == ExpStatus::Pending && r.run_dir.is_none()
        {
            continue;
        }
        let mut recovered = Vec::new();
        if let Some(dir) = &r.run_dir {
            // Default settings: each fault is recovered on the cluster its record names (the
            // slot it ran on), not on the command line's.
            let settings = RecoverSettings {
                timeout: None,
                kube: Arc::new(KubeAccess::new(KubeSettings::default())),
                force: false,
                children: Default::default(),
                recover_fn: crate::steps::recover_fn,
            };
            match crate::engine::recovery::recover_run(
                dir,
                &settings,
                "ttplan campaign run --resume",
            )
            .await
            {
                Ok(rec) => {
                    if !rec.failures.is_empty() {
                        for (id, e) in &rec.failures {
                            eprintln!(
                                "error: fault `{id}` of {} NOT recovered: {e}",
                                dir.display()
                            );
                        }
                        eprintln!("error: --resume stops here: the cluster still has chaos of an earlier try (see `ttplan chaos clean --run {}`)", dir.display());
                        return exit::STEP_FAILED;
                    }
                    recovered = rec.pending;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!(
                        "error: cannot read the fault ledger in {}: {e}",
                        dir.display()
                    );
                    return exit::STEP_FAILED;
                }
            }
            mark_dead_run(dir);
        }
        if !recovered.is_empty() {
            progress.note(&format!(
                "[{}] recovered {} left by the unfinished run {}",
                r.index,
                recovered.join(", "),
                r.exp_name.as_deref().unwrap_or("?")
            ));
        }
        let status = if r.status == ExpStatus::Running {
            ExpStatus::Interrupted
        } else {
            r.status
        };
        r.attempts.push(Attempt {
            exp_name: r.exp_name.take(),
            status,
            manifest: r.manifest.take(),
            started_at: r.started_at.take(),
            finished_at: r.finished_at.take(),
            recovered_faults: recovered,
        });
        r.status = ExpStatus::Pending;
        r.run_dir = None;
        r.duration_ms = None;
        r.exit_code = None;
        r.fault_verified = None;
        r.error = None;
    }
    let queue: VecDeque<usize> = manifest
        .experiments
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == ExpStatus::Pending)
        .map(|(i, _)| i)
        .collect();
    let skipped = manifest.experiments.len() - queue.len();
    manifest.summarise();
    if let Err(e) = manifest.write(&out) {
        eprintln!("error: cannot write {}: {e}", existing.display());
        return exit::STEP_FAILED;
    }
    progress.note(&format!(
        "campaign {}: {} experiments{} on {} slot{} → {}",
        c.name,
        manifest.experiments.len(),
        if skipped > 0 {
            format!(" ({skipped} already succeeded)")
        } else {
            String::new()
        },
        slots.len(),
        if slots.len() == 1 { "" } else { "s" },
        existing.display()
    ));
    let shared = Arc::new(Shared {
        manifest: Mutex::new(manifest),
        out: out.clone(),
        queue: Mutex::new(queue),
        durations: Mutex::new(Vec::new()),
        stop: tokio_util::sync::CancellationToken::new(),
        slots: slots.len(),
        progress: progress.clone(),
    });
    let c = Arc::new(c);
    let opts = Arc::new(opts);
    let mut workers = tokio::task::JoinSet::new();
    for slot in slots {
        workers.spawn(worker(
            Arc::clone(&shared),
            Arc::clone(&c),
            Arc::clone(&opts),
            slot,
            hub.clone(),
        ));
    }
    while workers.join_next().await.is_some() {}
    let interrupted = hub.stopped().is_cancelled();
    let stopped = shared.stop.is_cancelled();
    let mut code = exit::SUCCESS;
    shared
        .update(|m| {
            let all_ok = m
                .experiments
                .iter()
                .all(|e| e.status == ExpStatus::Succeeded);
            m.campaign.status = if interrupted {
                "interrupted"
            } else if all_ok {
                "succeeded"
            } else if stopped {
                "stopped"
            } else {
                "failed"
            }
            .into();
            m.campaign.finished_at = Some(Utc::now());
            code = if interrupted {
                exit::INTERRUPTED
            } else if all_ok {
                exit::SUCCESS
            } else {
                exit::STEP_FAILED
            };
        })
        .await;
    let m = shared.manifest.lock().await;
    let mut table = m.summary.table.join("\n");
    table.push_str(&format!(
        "\n{} experiments: {} succeeded, {} failed, {} interrupted, {} not run\n",
        m.summary.total,
        m.summary.succeeded,
        m.summary.failed,
        m.summary.interrupted,
        m.summary.pending
    ));
    crate::out(&table);
    code
}

/// A run manifest still saying `running` belongs to a process that died (kill -9, reboot).
fn mark_dead_run(run_dir: &std::path::Path) {
    let path = run_dir.join(MANIFEST_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let Ok(mut m) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    if m.pointer("/run/status").and_then(|s| s.as_str()) != Some("running") {
        return;
    }
    if let Some(run) = m.get_mut("run").and_then(|r| r.as_object_mut()) {
        run.insert("status".into(), "interrupted".into());
        let errors = run.entry("errors").or_insert_with(|| serde_json::json!([]));
        if let Some(a) = errors.as_array_mut() {
            a.push("the ttplan process ended without finishing this run; its faults were recovered by `ttplan campaign run --resume`".into());
        }
    }
    let _ = crate::atomic_write::write_json_atomic(&path, &m);
}

async fn worker(
    shared: Arc<Shared>,
    c: Arc<Campaign>,
    opts: Arc<CampaignOptions>,
    slot: Slot,
    hub: SignalHub,
) {
    let stopped = hub.stopped();
    let kube = KubeSettings {
        kubeconfig: slot
            .kubeconfig
            .clone()
            .or_else(|| opts.kube.kubeconfig.clone()),
        context: slot.context.clone().or_else(|| opts.kube.context.clone()),
        namespace: slot
            .namespace
            .clone()
            .or_else(|| opts.kube.namespace.clone()),
        request_timeout: opts.kube.request_timeout,
    };
    let label = slot.label();
    let mut first = true;
    loop {
        if stopped.is_cancelled() || shared.stop.is_cancelled() {
            return;
        }
        let Some(i) = shared.queue.lock().await.pop_front() else {
            return;
        };
        if !first && !c.spec.cooldown.get().is_zero() {
            shared
                .progress
                .note(&format!("cooldown {} ({label})", c.spec.cooldown));
            tokio::select! {
                () = tokio::time::sleep(c.spec.cooldown.get()) => {}
                () = stopped.cancelled() => return,
            }
        }
        first = false;
        let exp = &c.experiments[i];
        let total = c.experiments.len();
        let what = describe(&exp.plan, &exp.sets, exp.repeat);
        shared
            .progress
            .note(&format!("[{}/{total}] {what}: starting ({label})", i + 1));
        let started = Utc::now();
        let ns = c
            .spec
            .before_each
            .namespace
            .as_deref()
            .or(kube.namespace.as_deref());
        let access = KubeAccess::new(kube.clone());
        let before_each_started = std::time::Instant::now();
        let checked = tokio::select! {
            r = prepare_cluster(&c.spec.before_each, &access, ns) => r,
            // Interrupted before the experiment started: it stays pending.
            () = stopped.cancelled() => return,
        };
        let prepared = match checked {
            Err(e) => Err(format!("before_each: {e}")),
            Ok(notes) => {
                for n in notes {
                    shared.progress.note(&format!("[{}/{total}] {n}", i + 1));
                }
                // Loading reads the plan's files and asks git: blocking work, off the async threads.
                let (exp, opts, kube) = (exp.clone(), Arc::clone(&opts), kube.clone());
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
        };
        let prepared = match prepared {
            Ok(p) if c.spec.before_each.hypothesis => {
                let left = c
                    .spec
                    .before_each
                    .timeout
                    .get()
                    .saturating_sub(before_each_started.elapsed());
                match wait_hypothesis(&p, left, &stopped).await {
                    Ok(checks) => {
                        shared.progress.note(&format!(
                            "[{}/{total}] the steady-state hypothesis holds ({checks} check{})",
                            i + 1,
                            if checks == 1 { "" } else { "s" }
                        ));
                        Ok(p)
                    }
                    // Interrupted before the experiment started: it stays pending.
                    Err(_) if stopped.is_cancelled() => return,
                    Err(e) => Err(format!("before_each: {e}")),
                }
            }
            other => other,
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                shared.progress.note(&format!(
                    "[{}/{total}] {what}: FAILED before it started: {e}",
                    i + 1
                ));
                let finished = Utc::now();
                shared
                    .update(|m| {
                        let r = &mut m.experiments[i];
                        r.status = ExpStatus::Failed;
                        r.slot = Some(label.clone());
                        r.started_at = Some(started);
                        r.finished_at = Some(finished);
                        r.error = Some(e);
                    })
                    .await;
                if c.spec.on_failure == OnFailure::Stop {
                    shared.stop.cancel();
                }
                continue;
            }
        };
        let exp_name = prepared.run.exp_name.clone();
        let run_dir = prepared.run.run_dir.clone();
        shared
            .update(|m| {
                let r = &mut m.experiments[i];
                r.status = ExpStatus::Running;
                r.slot = Some(label.clone());
                r.exp_name = Some(exp_name.clone());
                r.manifest = Some(run_dir.join(MANIFEST_FILE));
                r.run_dir = Some(run_dir.clone());
                r.started_at = Some(started);
            })
            .await;
        let outcome = launch::execute(prepared, &hub).await;
        let page_of = outcome.run_dir.clone();
        // The page reads the whole dataset: off the async threads; a failure only warns.
        let _ = tokio::task::spawn_blocking(move || crate::report::after_run(&page_of)).await;
        let finished = Utc::now();
        let elapsed = (finished - started).to_std().unwrap_or_default();
        let status = match outcome.status {
            RunStatus::Succeeded => ExpStatus::Succeeded,
            RunStatus::Failed => ExpStatus::Failed,
            RunStatus::Aborted => ExpStatus::Aborted,
            RunStatus::Interrupted | RunStatus::Running => ExpStatus::Interrupted,
        };
        let (verified, errors) = read_run_result(&outcome.manifest);
        shared
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
        let eta = {
            let mut d = shared.durations.lock().await;
            d.push(elapsed);
            let left = shared.queue.lock().await.len();
            let avg = d.iter().sum::<Duration>() / u32::try_from(d.len()).unwrap_or(1).max(1);
            let cool = c.spec.cooldown.get();
            let rounds = left.div_ceil(shared.slots);
            let eta = (avg + cool) * u32::try_from(rounds).unwrap_or(u32::MAX);
            if left == 0 {
                String::new()
            } else {
                format!(
                    " · {left} left, ETA {} (~{})",
                    (Utc::now() + chrono::Duration::from_std(eta).unwrap_or_default())
                        .format("%H:%M UTC"),
                    format_elapsed(eta)
                )
            }
        };
        shared.progress.note(&format!(
            "[{}/{total}] {exp_name}: {} in {}{eta}",
            i + 1,
            status.word(),
            format_elapsed(elapsed)
        ));
        match status {
            ExpStatus::Succeeded => {}
            ExpStatus::Failed if c.spec.on_failure == OnFailure::Continue => {}
            ExpStatus::Failed => {
                shared
                    .progress
                    .note("on_failure: stop — no further experiments start");
                shared.stop.cancel();
            }
            _ => return,
        }
    }
}

/// Loads and prepares one experiment with a fresh start time. Two experiments of one plan can
/// render the same exp name (same second, a name without a timestamp): later ones get `_2`, `_3`…
fn prepare_run(
    exp: &super::load::Experiment,
    opts: &CampaignOptions,
    kube: &KubeSettings,
) -> Result<launch::Prepared, LaunchError> {
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
