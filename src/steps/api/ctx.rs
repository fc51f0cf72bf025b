//! What a running step can see and do: the run's identity and folders, its own log, the
//! cancellation signal, progress reporting and the fault ledger. Steps never print or exit;
//! everything goes through [`StepCtx`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use tokio_util::sync::CancellationToken;

use super::events::StepEvents;
use super::events::UntilEvent;
use super::fault_details::{FaultParams, InjectionDetails};
use super::faults::RecoverLookup;
use super::faults::{FaultLedger, FaultRecord, RecoverSettings};
use super::process::ChildGroups;
use super::progress::Progress;
use super::StepError;
use crate::kube::{Kube, KubeAccess};

/// Facts about the run that every step shares.
#[derive(Debug)]
pub struct RunInfo {
    pub run_id: String,
    pub exp_name: String,
    pub plan_name: String,
    /// Dataset root (`--out`).
    pub out_dir: PathBuf,
    /// `<out>/runs/<exp_name>`: manifest, step logs, fault ledger.
    pub run_dir: PathBuf,
    pub plan_dir: PathBuf,
    pub started_at: DateTime<Utc>,
    /// Cluster access, connected on first use.
    pub kube: Arc<KubeAccess>,
    /// Recover functions of the kinds, for the `recover` kind.
    pub recover_fn: RecoverLookup,
    /// The variables the plan read with `env()`, so a step can say which one set a value.
    pub env_sources: Vec<crate::plan::template::EnvSource>,
}

/// Handed to [`super::Step::run`]; cheap to clone.
#[derive(Clone)]
pub struct StepCtx {
    pub(crate) run: Arc<RunInfo>,
    pub(crate) step: Arc<str>,
    pub(crate) env: Arc<IndexMap<String, String>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) progress: Progress,
    pub(crate) faults: Arc<FaultLedger>,
    pub(crate) attempt: u32,
    pub(crate) children: Arc<ChildGroups>,
    pub(crate) events: Arc<StepEvents>,
}

impl StepCtx {
    pub fn step_name(&self) -> &str {
        &self.step
    }

    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    pub fn exp_name(&self) -> &str {
        &self.run.exp_name
    }

    pub fn out_dir(&self) -> &Path {
        &self.run.out_dir
    }

    pub fn run_dir(&self) -> &Path {
        &self.run.run_dir
    }

    pub fn plan_dir(&self) -> &Path {
        &self.run.plan_dir
    }

    /// Start of the run, the default start of every collector's time window.
    pub fn run_started_at(&self) -> DateTime<Utc> {
        self.run.started_at
    }

    /// 1 for the first attempt, 2 for the first retry, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The step's `env:` (already rendered). Child processes get these on top of ttplan's own.
    /// The variables the plan read with `env()` (name, value used, set or default).
    pub fn env_sources(&self) -> &[crate::plan::template::EnvSource] {
        &self.run.env_sources
    }

    pub fn env(&self) -> &IndexMap<String, String> {
        &self.env
    }

    /// Fires on timeout, SIGINT/SIGTERM or abort.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Process groups of running children, so an abort can kill them (see `steps::process`).
    pub fn child_groups(&self) -> &ChildGroups {
        &self.children
    }

    /// Resolves when step `name` has started (or finished, per `event`); skipped and
    /// cancelled steps count as finished.
    pub async fn wait_for_step(&self, name: &str, event: UntilEvent) {
        self.events.wait(name, event).await;
    }

    /// `runs/<exp>/steps/<step>.log` — the step's own log; append to it, never truncate
    /// (retries and iterations share it).
    pub fn log_path(&self) -> PathBuf {
        self.run
            .run_dir
            .join("steps")
            .join(format!("{}.log", self.step))
    }

    /// Appends to the step log (creating it and its folder when needed).
    ///
    /// # Errors
    /// When the log cannot be written.
    pub fn append_log(&self, text: &str) -> Result<(), StepError> {
        use std::io::Write;
        let path = self.log_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(StepError::io(format!("creating {}", dir.display())))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(StepError::io(format!("writing {}", path.display())))
    }

    /// A one-line status ("41/46 ready") for the progress display.
    pub fn progress(&self, message: impl Into<String>) {
        self.progress.message(&self.step, message.into());
    }

    /// Records a fault in the ledger *before* it is injected, so it can be recovered even if
    /// ttplan dies mid-injection. `recovery` must hold everything the kind's recover function
    /// needs; it is persisted to `faults.json`.
    ///
    /// # Errors
    /// When the ledger cannot be written — the step must then not inject.
    pub async fn register_fault(
        &self,
        kind: &str,
        recovery: serde_json::Value,
        params: FaultParams,
    ) -> Result<FaultHandle, StepError> {
        let id = self.register(kind, recovery, params, false).await?;
        Ok(FaultHandle {
            id,
            ledger: Arc::clone(&self.faults),
        })
    }

    /// The fault this step registered in an earlier attempt (a retry that injects what the
    /// first attempt registered).
    pub async fn registered_fault(&self) -> Option<FaultHandle> {
        let faults = self.faults.snapshot().await;
        let record = faults
            .iter()
            .find(|r| *r.step == *self.step && !r.teardown)?;
        Some(FaultHandle {
            id: record.id.clone(),
            ledger: Arc::clone(&self.faults),
        })
    }

    /// Like [`StepCtx::register_fault`], for something to undo at the end of the run that is
    /// not a fault (applied manifests); it stays out of `fault_labels.json`.
    pub async fn register_teardown(
        &self,
        kind: &str,
        recovery: serde_json::Value,
        params: FaultParams,
    ) -> Result<String, StepError> {
        self.register(kind, recovery, params, true).await
    }

    async fn register(
        &self,
        kind: &str,
        recovery: serde_json::Value,
        params: FaultParams,
        teardown: bool,
    ) -> Result<String, StepError> {
        self.faults
            .register(&self.step, kind, recovery, params, teardown)
            .await
            .map_err(StepError::io("writing the fault ledger"))
    }

    /// Recovers the unrecovered faults injected by `steps` now (the `recover` kind), each within
    /// `timeout` when given, else within the fault's own limit. Returns the ids that could not
    /// be recovered, with why.
    pub async fn recover_faults(
        &self,
        steps: &[String],
        timeout: Option<std::time::Duration>,
    ) -> Vec<(String, String)> {
        let settings = RecoverSettings {
            timeout,
            kube: Arc::clone(&self.run.kube),
            force: false,
            children: Arc::clone(&self.children),
            recover_fn: self.run.recover_fn,
        };
        self.faults
            .recover_pending(Some(steps), &self.step, &settings)
            .await
    }

    /// Faults recorded so far (for `recover` to report what it did).
    pub async fn faults(&self) -> Vec<FaultRecord> {
        self.faults.snapshot().await
    }

    /// The cluster selection the run was started with (kept in fault records so recovery
    /// after a crash reaches the same cluster).
    pub fn kube_settings(&self) -> &crate::kube::KubeSettings {
        self.run.kube.settings()
    }

    /// The cluster, connected on first use.
    ///
    /// # Errors
    /// No usable kubeconfig / context.
    pub async fn kube(&self) -> Result<&Kube, StepError> {
        self.run
            .kube
            .get()
            .await
            .map_err(|e| StepError::Kube(e.clone()))
    }
}

/// A fault registered in the ledger (by [`StepCtx::register_fault`]), not yet known to be in
/// place: [`FaultHandle::injected`] is the only way to mark it injected.
#[derive(Debug)]
#[must_use = "a registered fault is marked injected through its handle"]
pub struct FaultHandle {
    id: String,
    ledger: Arc<FaultLedger>,
}

impl FaultHandle {
    /// The fault's id in `faults.json`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Marks the fault injected, with the details the controller reported.
    ///
    /// # Errors
    /// When the ledger cannot be written.
    pub async fn injected(&self, details: InjectionDetails) -> Result<(), StepError> {
        self.ledger
            .update(&self.id, |r: &mut FaultRecord| r.mark_injected(details))
            .await
            .map_err(StepError::io("writing the fault ledger"))
    }
}
