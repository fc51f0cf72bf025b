//! The fault ledger (`runs/<exp>/faults.json`) and recovery of every fault left unrecovered.
//!
//! A fault is written to the ledger before it is injected and carries everything needed to
//! recover it, so recovery works from the ledger alone: at the end of any run (success,
//! failure, timeout, SIGINT, SIGTERM) and later from `ttplan chaos clean --run` after a kill -9.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use std::sync::Arc;

use super::fault_details::{FaultParams, InjectionDetails, RecoveryReport};
use super::process::ChildGroups;
use super::secrets::Secrets;
use super::RecoverFn;
use crate::atomic_write::write_json_atomic;
use crate::kube::{Kube, KubeAccess, KubeSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultStatus {
    /// Recorded; injection started but not confirmed (may be partly injected).
    Injecting,
    Injected,
    Recovered,
    RecoveryFailed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub id: String,
    /// The step that injected it.
    pub step: String,
    /// The step kind whose recover function undoes it.
    pub kind: String,
    pub status: FaultStatus,
    pub requested_at: DateTime<Utc>,
    pub injected_at: Option<DateTime<Utc>>,
    pub recovered_at: Option<DateTime<Utc>>,
    /// Who recovered it: a `recover` step, or `engine` at the end of the run.
    pub recovered_by: Option<String>,
    pub error: Option<String>,
    /// Fault parameters, for labels and the manifest.
    pub params: FaultParams,
    /// Kind-specific data the recover function reads.
    pub recovery: serde_json::Value,
    /// What the injector reported (controller records, affected pods…).
    pub details: InjectionDetails,
    /// What recovery observed (e.g. the controller's recovery records).
    #[serde(default)]
    pub recovery_details: Option<RecoveryReport>,
    /// Not a fault but something to undo at the end (e.g. applied manifests); kept out of
    /// `fault_labels.json`.
    #[serde(default)]
    pub teardown: bool,
}

impl FaultRecord {
    pub fn mark_injected(&mut self, details: InjectionDetails) {
        self.status = FaultStatus::Injected;
        self.injected_at = Some(Utc::now());
        self.details = details;
    }

    pub fn needs_recovery(&self) -> bool {
        matches!(
            self.status,
            FaultStatus::Injecting | FaultStatus::Injected | FaultStatus::RecoveryFailed
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    faults: Vec<FaultRecord>,
}

/// What a recover function gets besides the record.
#[derive(Clone)]
pub struct RecoverCtx {
    /// Where recovery output goes (`runs/<exp>/steps/<step>.recover.log`).
    pub log_path: PathBuf,
    /// The caller's limit (`chaos clean --timeout`, a `recover` step); `None`: the plan's own
    /// limit stored in the record.
    pub timeout: Option<Duration>,
    pub kube: Arc<KubeAccess>,
    /// `chaos clean --force`: remove finalizers that block deletion.
    pub force: bool,
    /// Process groups of recovery commands, so an abort can kill them too.
    pub children: Arc<ChildGroups>,
}

/// Finds a kind's recover function by kind name: `crate::steps::recover_fn`.
pub type RecoverLookup = fn(&str) -> Option<Option<RecoverFn>>;

impl RecoverCtx {
    /// The cluster to recover in: the caller's when it named one, else the one the run used
    /// (`recorded`, kept in the fault record) — so `chaos clean --run` after a crash needs no flags.
    ///
    /// # Errors
    /// A configuration that cannot be loaded.
    pub async fn kube(&self, recorded: &KubeSettings) -> Result<Kube, String> {
        let caller = self.kube.settings();
        if !caller.names_cluster() && recorded.names_cluster() {
            let mut settings = recorded.clone();
            if caller.request_timeout.is_some() {
                settings.request_timeout = caller.request_timeout;
            }
            let own = KubeAccess::new(settings);
            return own.get().await.cloned().map_err(|e| e.to_string());
        }
        self.kube.get().await.cloned().map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
pub struct FaultLedger {
    path: PathBuf,
    faults: Mutex<Vec<FaultRecord>>,
    /// Secrets are written as `${env:NAME}` references (resolved again at recovery).
    secrets: Secrets,
}

impl FaultLedger {
    pub fn new(run_dir: &Path, secrets: Secrets) -> Self {
        Self {
            path: run_dir.join("faults.json"),
            faults: Mutex::new(Vec::new()),
            secrets,
        }
    }

    /// Reads an existing ledger (for `chaos clean --run`).
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn open(run_dir: &Path) -> std::io::Result<Self> {
        let path = run_dir.join("faults.json");
        let text = std::fs::read_to_string(&path)?;
        let file: LedgerFile = serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(Self {
            path,
            faults: Mutex::new(file.faults),
            secrets: Secrets::default(),
        })
    }

    /// Secrets to write as references from now on (a resumed run's ledger, reopened).
    #[must_use]
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records of a ledger opened from disk (nothing else holds the lock yet).
    pub fn records(&self) -> Vec<FaultRecord> {
        self.faults
            .try_lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    pub async fn snapshot(&self) -> Vec<FaultRecord> {
        self.faults.lock().await.clone()
    }

    pub async fn register(
        &self,
        step: &str,
        kind: &str,
        recovery: serde_json::Value,
        params: FaultParams,
        teardown: bool,
    ) -> std::io::Result<String> {
        let mut faults = self.faults.lock().await;
        let n = faults.iter().filter(|f| f.step == step).count();
        let id = if n == 0 {
            step.to_string()
        } else {
            format!("{step}#{}", n + 1)
        };
        faults.push(FaultRecord {
            id: id.clone(),
            step: step.to_string(),
            kind: kind.to_string(),
            status: FaultStatus::Injecting,
            requested_at: Utc::now(),
            injected_at: None,
            recovered_at: None,
            recovered_by: None,
            error: None,
            params,
            recovery,
            details: InjectionDetails::None,
            recovery_details: None,
            teardown,
        });
        self.persist(&faults).await?;
        Ok(id)
    }

    pub async fn update(&self, id: &str, f: impl FnOnce(&mut FaultRecord)) -> std::io::Result<()> {
        let mut faults = self.faults.lock().await;
        if let Some(r) = faults.iter_mut().find(|r| r.id == id) {
            f(r);
        }
        self.persist(&faults).await
    }

    async fn persist(&self, faults: &[FaultRecord]) -> std::io::Result<()> {
        let mut file = serde_json::to_value(LedgerFile {
            faults: faults.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        self.secrets.to_references(&mut file);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_json_atomic(&path, &file))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Recovers every fault that still needs it (optionally only those of `steps`), one after
    /// another in reverse injection order. Returns the ids that could not be recovered.
    pub async fn recover_pending(
        &self,
        only_steps: Option<&[String]>,
        by: &str,
        ctx: &RecoverSettings,
    ) -> Vec<(String, String)> {
        let pending: Vec<FaultRecord> = {
            let faults = self.faults.lock().await;
            faults
                .iter()
                .rev()
                .filter(|f| f.needs_recovery())
                .filter(|f| only_steps.is_none_or(|s| s.contains(&f.step)))
                .cloned()
                .collect()
        };
        let mut failed = Vec::new();
        for record in pending {
            let result = recover_one(&record, &self.path, ctx).await;
            let now = Utc::now();
            let write = self
                .update(&record.id, |r| match &result {
                    Ok(details) => {
                        if let Some(d) = details {
                            r.recovery_details = Some(d.clone());
                        }
                        r.status = FaultStatus::Recovered;
                        r.recovered_at = Some(now);
                        r.recovered_by = Some(by.to_string());
                        r.error = None;
                    }
                    Err(e) => {
                        r.status = FaultStatus::RecoveryFailed;
                        r.error = Some(e.clone());
                    }
                })
                .await;
            if let Err(e) = result {
                failed.push((record.id.clone(), e));
            } else if let Err(e) = write {
                failed.push((
                    record.id.clone(),
                    format!("recovered, but the ledger could not be written: {e}"),
                ));
            }
        }
        failed
    }
}

/// What recovery needs besides the ledger: the cluster and limits.
#[derive(Clone)]
pub struct RecoverSettings {
    pub timeout: Option<Duration>,
    pub kube: Arc<KubeAccess>,
    pub force: bool,
    pub children: Arc<ChildGroups>,
    /// The kinds registry's recover functions (the step API does not know the kinds).
    pub recover_fn: RecoverLookup,
}

async fn recover_one(
    record: &FaultRecord,
    ledger_path: &Path,
    s: &RecoverSettings,
) -> Result<Option<RecoveryReport>, String> {
    let entry = (s.recover_fn)(&record.kind).ok_or_else(|| {
        format!(
            "no step kind `{}` to recover fault `{}`",
            record.kind, record.id
        )
    })?;
    let recover = entry.ok_or_else(|| format!("step kind `{}` has no recovery", record.kind))?;
    let run_dir = ledger_path.parent().unwrap_or(Path::new("."));
    let ctx = RecoverCtx {
        log_path: run_dir
            .join("steps")
            .join(format!("{}.recover.log", record.step)),
        timeout: s.timeout,
        kube: Arc::clone(&s.kube),
        force: s.force,
        children: Arc::clone(&s.children),
    };
    // The kind's own waits use `timeout`; this outer bound only catches a hung recover function.
    let outer = s.timeout.unwrap_or(Duration::from_secs(600)) + Duration::from_secs(30);
    match tokio::time::timeout(outer, recover(record, &ctx)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "recovery timed out after {}",
            humantime::format_duration(outer)
        )),
    }
}
