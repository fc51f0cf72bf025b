//! Running a campaign: validate every experiment's plan first, then run experiments one per
//! slot, recording each in the campaign manifest as it starts and ends.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::load::{Campaign, Experiment};
use super::model::Slot;
use super::record::{
    describe, CampaignManifest, CampaignSection, ExpStatus, ExperimentRecord, CAMPAIGN_MANIFEST,
};
use super::resume::requeue_unfinished;
use super::worker::worker;
use crate::diag::PlanErrors;
use crate::engine::launch::{self, SignalHub};
use crate::engine::progress::{Progress, ProgressMode};
use crate::exit;
use crate::kube::KubeSettings;

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

/// What the slots' workers share.
pub(super) struct Shared {
    manifest: Mutex<CampaignManifest>,
    out: PathBuf,
    pub(super) queue: Mutex<VecDeque<usize>>,
    /// Durations of finished experiments, for the ETA.
    pub(super) durations: Mutex<Vec<Duration>>,
    /// `on_failure: stop`: no further experiments start.
    pub(super) stop: tokio_util::sync::CancellationToken,
    pub(super) slots: usize,
    pub(super) progress: Progress,
}

impl Shared {
    /// Changes the manifest, then writes it (a failed write only warns: the run goes on).
    pub(super) async fn update(&self, f: impl FnOnce(&mut CampaignManifest)) {
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
    let mut manifest = match open_manifest(&c, &opts, &out, &progress) {
        Ok(m) => m,
        Err(code) => return code,
    };
    manifest.campaign.slots = slots.iter().map(Slot::label).collect();
    list_experiments(&mut manifest, &c);
    if let Err(code) = requeue_unfinished(&mut manifest, &progress).await {
        return code;
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
    let existing = out.join(CAMPAIGN_MANIFEST);
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
        out,
        queue: Mutex::new(queue),
        durations: Mutex::new(Vec::new()),
        stop: tokio_util::sync::CancellationToken::new(),
        slots: slots.len(),
        progress,
    });
    run_slots(&shared, c, opts, slots, &hub).await;
    let code = finish(&shared, &hub).await;
    print_summary(&shared).await;
    code
}

/// The campaign manifest to continue (`--resume`) or a new one; an existing one is never
/// overwritten.
///
/// # Errors
/// The exit code, the reason printed.
fn open_manifest(
    c: &Campaign,
    opts: &CampaignOptions,
    out: &Path,
    progress: &Progress,
) -> Result<CampaignManifest, u8> {
    let existing = out.join(CAMPAIGN_MANIFEST);
    let now = Utc::now();
    if !existing.exists() {
        return Ok(new_manifest(c, opts, now));
    }
    if !opts.resume {
        eprintln!(
            "error: {} already holds a campaign; nothing was overwritten.\n  help: continue it with --resume, or pass another --out",
            existing.display()
        );
        return Err(exit::INVALID);
    }
    let mut manifest = CampaignManifest::read(out).map_err(|e| {
        eprintln!("error: --resume: {e}");
        exit::INVALID
    })?;
    manifest.campaign.resumed_at.push(now);
    // A resumed campaign runs against this invocation's environment.
    manifest.campaign.sandbox = opts.sandbox.clone();
    manifest.campaign.status = "running".into();
    manifest.campaign.finished_at = None;
    if manifest.campaign.sha256 != c.sha256 {
        progress.note("note: the campaign file changed since the campaign started; experiments are matched by plan, matrix values and repeat number");
        manifest.campaign.sha256 = c.sha256.clone();
    }
    Ok(manifest)
}

fn new_manifest(c: &Campaign, opts: &CampaignOptions, now: DateTime<Utc>) -> CampaignManifest {
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
}

/// The experiments as the file names them now; earlier records are matched by key.
fn list_experiments(manifest: &mut CampaignManifest, c: &Campaign) {
    let mut old: Vec<ExperimentRecord> = std::mem::take(&mut manifest.experiments);
    for (i, e) in c.experiments.iter().enumerate() {
        let record = match old.iter().position(|o| o.key == e.key) {
            Some(p) => {
                let mut r = old.remove(p);
                r.index = i + 1;
                r
            }
            None => new_record(i + 1, e),
        };
        manifest.experiments.push(record);
    }
}

fn new_record(index: usize, e: &Experiment) -> ExperimentRecord {
    ExperimentRecord {
        index,
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
    }
}

/// One worker per slot, until every one has ended.
async fn run_slots(
    shared: &Arc<Shared>,
    c: Campaign,
    opts: CampaignOptions,
    slots: Vec<Slot>,
    hub: &SignalHub,
) {
    let c = Arc::new(c);
    let opts = Arc::new(opts);
    let mut workers = tokio::task::JoinSet::new();
    for slot in slots {
        workers.spawn(worker(
            Arc::clone(shared),
            Arc::clone(&c),
            Arc::clone(&opts),
            slot,
            hub.clone(),
        ));
    }
    while workers.join_next().await.is_some() {}
}

/// Records how the campaign ended; returns the exit code.
async fn finish(shared: &Shared, hub: &SignalHub) -> u8 {
    let interrupted = hub.stopped().is_cancelled();
    let stopped = shared.stop.is_cancelled();
    let mut code = exit::SUCCESS;
    shared
        .update(|m| {
            let all_ok = m
                .experiments
                .iter()
                .all(|e| e.status == ExpStatus::Succeeded);
            let (status, exit_code) = ending(interrupted, all_ok, stopped);
            m.campaign.status = status.into();
            m.campaign.finished_at = Some(Utc::now());
            code = exit_code;
        })
        .await;
    code
}

/// The campaign's final status and exit code: a signal wins, then whether every experiment
/// succeeded, then whether `on_failure: stop` ended it early.
fn ending(interrupted: bool, all_ok: bool, stopped: bool) -> (&'static str, u8) {
    if interrupted {
        ("interrupted", exit::INTERRUPTED)
    } else if all_ok {
        ("succeeded", exit::SUCCESS)
    } else if stopped {
        ("stopped", exit::STEP_FAILED)
    } else {
        ("failed", exit::STEP_FAILED)
    }
}

/// The per-experiment table and the totals, on stdout.
async fn print_summary(shared: &Shared) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_wins_over_every_other_ending() {
        assert_eq!(ending(true, true, true), ("interrupted", exit::INTERRUPTED));
        assert_eq!(ending(false, true, true), ("succeeded", exit::SUCCESS));
        assert_eq!(ending(false, false, true), ("stopped", exit::STEP_FAILED));
        assert_eq!(ending(false, false, false), ("failed", exit::STEP_FAILED));
    }
}
