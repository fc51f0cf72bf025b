//! `experiment_manifest.json`: everything needed to reproduce and audit a run. Written when the
//! run starts, rewritten (atomically) whenever a step changes state, final on every exit path.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::faults::FaultRecord;
use super::progress::Progress;
use super::secrets::Secrets;
use crate::atomic_write::write_json_atomic;
use crate::git::GitInfo;

pub const MANIFEST_FILE: &str = "experiment_manifest.json";
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped by SIGINT/SIGTERM; `always` steps and recovery ran.
    Interrupted,
    /// A second signal: stopped at once, recovery may not have run.
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Not run because a step it runs after failed or was skipped.
    Skipped,
    /// Not run, or stopped, because the run was interrupted.
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub tool: Tool,
    pub run: RunSection,
    pub invocation: Invocation,
    pub plan: PlanSection,
    /// Source trees named under `sources:` with their git state.
    pub sources: IndexMap<String, SourceTree>,
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Environment variables the plan read, secrets redacted; `null` = unset.
    pub env: BTreeMap<String, Option<String>>,
    /// Service endpoints collectors used and how each was found.
    pub endpoints: BTreeMap<String, serde_json::Value>,
    /// Whether (and how) manifests were instrumented for coverage.
    pub instrumented: Option<serde_json::Value>,
    pub resolved_plan: serde_json::Value,
    pub steps: IndexMap<String, StepRecord>,
    pub faults: Vec<FaultRecord>,
    /// The plan's steady-state hypothesis: `{before, after}` (absent without `hypothesis:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady_state: Option<serde_json::Value>,
    /// `run --sandbox`: the simulated environment's endpoints (absent for a real cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSection {
    pub id: String,
    pub exp_name: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<u8>,
    pub out_dir: PathBuf,
    pub run_dir: PathBuf,
    /// Why the run did not succeed, in one line per cause.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub max_parallel: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanSection {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub sha256: String,
    /// The plan and every base it extends.
    pub files: Vec<FileHash>,
    pub git: Option<GitInfo>,
    /// Absolute folder of the plan file (relative paths in the plan resolve against it).
    pub dir: PathBuf,
    /// The merged plan before templating (`extends` applied): `ttplan rerun` renders it again.
    pub document: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileHash {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceTree {
    pub path: PathBuf,
    pub git: Option<GitInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub kind: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub allow_failure: bool,
    pub always: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// For skipped/cancelled steps: why.
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, serde_json::Value>,
    pub artifacts: Vec<Artifact>,
    /// The step log, relative to the output root.
    pub log: Option<PathBuf>,
}

impl StepRecord {
    pub fn pending(kind: &str, allow_failure: bool, always: bool) -> Self {
        Self {
            kind: kind.to_string(),
            status: StepStatus::Pending,
            attempts: 0,
            allow_failure,
            always,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: None,
            reason: None,
            outputs: BTreeMap::new(),
            artifacts: Vec::new(),
            log: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    /// Relative to the output root when inside it.
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// Streams a file through SHA-256.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((n, format!("{:x}", h.finalize())))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Whether a variable's value must not be written to disk (defined beside the record
/// redaction, which the engine depends on).
pub use crate::traffic::record::is_secret_name;

pub fn redact_env(reads: BTreeMap<String, Option<String>>) -> BTreeMap<String, Option<String>> {
    reads
        .into_iter()
        .map(|(k, v)| {
            let v = if is_secret_name(&k) {
                v.map(|_| "<redacted>".to_string())
            } else {
                v
            };
            (k, v)
        })
        .collect()
}

/// The manifest and the file it lives in; every change is written through.
#[derive(Debug)]
pub struct ManifestWriter {
    path: PathBuf,
    manifest: Mutex<Manifest>,
    secrets: Secrets,
    /// A write during the run failed and was reported (once: the next writes likely fail too).
    failed_write_reported: std::sync::atomic::AtomicBool,
}

impl ManifestWriter {
    pub fn new(run_dir: &Path, manifest: Manifest, secrets: Secrets) -> Self {
        Self {
            path: run_dir.join(MANIFEST_FILE),
            manifest: Mutex::new(manifest),
            secrets,
            failed_write_reported: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `f` and writes the result atomically.
    ///
    /// # Errors
    /// When the file cannot be written.
    /// [`Self::update`] during a run: a failed write is reported on the progress output (once)
    /// instead of stopping the run; the change stays in memory, so the next write that
    /// succeeds carries it.
    pub async fn update_reported(&self, progress: &Progress, f: impl FnOnce(&mut Manifest)) {
        if let Err(e) = self.update(f).await {
            if !self
                .failed_write_reported
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                progress.note(&format!(
                    "warning: cannot write {}: {e} (the run goes on; later writes retry)",
                    self.path.display()
                ));
            }
        }
    }

    pub async fn update(&self, f: impl FnOnce(&mut Manifest)) -> std::io::Result<()> {
        let mut snapshot = {
            let mut m = self.manifest.lock().await;
            f(&mut m);
            serde_json::to_value(&*m).map_err(std::io::Error::other)?
        };
        self.secrets.redact(&mut snapshot);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_json_atomic(&path, &snapshot))
            .await
            .map_err(std::io::Error::other)?
    }

    pub async fn read<R>(&self, f: impl FnOnce(&Manifest) -> R) -> R {
        f(&*self.manifest.lock().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_by_name() {
        let mut reads = BTreeMap::new();
        reads.insert("TT_AUTH_TOKEN".to_string(), Some("abc".to_string()));
        reads.insert("PROMETHEUS_URL".to_string(), Some("http://p".to_string()));
        reads.insert("DB_PASSWORD".to_string(), None);
        let r = redact_env(reads);
        assert_eq!(r["TT_AUTH_TOKEN"].as_deref(), Some("<redacted>"));
        assert_eq!(r["PROMETHEUS_URL"].as_deref(), Some("http://p"));
        assert_eq!(r["DB_PASSWORD"], None);
    }

    #[test]
    fn file_hashes_match_known_digests() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let (n, h) = sha256_file(&p).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
