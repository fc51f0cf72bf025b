//! `<out>/campaign_manifest.json`: one record per experiment, rewritten atomically whenever an
//! experiment starts or ends, so a killed campaign can be resumed from it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::atomic_write::write_json_atomic;
use crate::engine::progress::format_elapsed;

pub const CAMPAIGN_MANIFEST: &str = "campaign_manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignManifest {
    pub manifest_version: u32,
    pub tool: String,
    pub campaign: CampaignSection,
    pub experiments: Vec<ExperimentRecord>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignSection {
    pub file: PathBuf,
    pub name: String,
    pub sha256: String,
    /// `running`, `succeeded`, `failed`, `stopped` (on_failure: stop) or `interrupted`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When `--resume` continued it.
    #[serde(default)]
    pub resumed_at: Vec<DateTime<Utc>>,
    pub slots: Vec<String>,
    /// `campaign run --sandbox`: the simulated environment (absent for a real cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<serde_json::Value>,
}

/// An experiment's state: `pending` until it runs, then a run manifest's `run.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Interrupted,
    Aborted,
}

impl ExpStatus {
    pub fn word(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// 1-based position in the campaign.
    pub index: usize,
    /// Identity across `--resume`: plan, matrix values, repeat number.
    pub key: String,
    pub plan: PathBuf,
    pub sets: Vec<String>,
    pub repeat: u32,
    pub status: ExpStatus,
    pub slot: Option<String>,
    pub exp_name: Option<String>,
    pub run_dir: Option<PathBuf>,
    /// The run's `experiment_manifest.json`.
    pub manifest: Option<PathBuf>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<u8>,
    /// Every fault the run injected was confirmed injected by its controller (`null`: the
    /// plan injects none, or the run did not get that far).
    pub fault_verified: Option<bool>,
    pub error: Option<String>,
    /// Earlier tries that `--resume` recovered and replaced.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub exp_name: Option<String>,
    pub status: ExpStatus,
    pub manifest: Option<PathBuf>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Faults that were still injected and were recovered from the run's ledger.
    pub recovered_faults: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub pending: usize,
    /// The table printed at the end, one line per experiment.
    pub table: Vec<String>,
}

impl CampaignManifest {
    pub fn summarise(&mut self) {
        let count = |s: &[ExpStatus]| {
            self.experiments
                .iter()
                .filter(|e| s.contains(&e.status))
                .count()
        };
        let mut table = vec![format!(
            "{:>3}  {:<11}  {:<9}  {:<6}  {}",
            "#", "STATUS", "DURATION", "FAULT", "EXPERIMENT"
        )];
        for e in &self.experiments {
            let duration = e
                .duration_ms
                .map(|ms| format_elapsed(std::time::Duration::from_millis(ms)))
                .unwrap_or_else(|| "-".into());
            let fault = match e.fault_verified {
                Some(true) => "ok",
                Some(false) => "NOT ok",
                None => "-",
            };
            let what = e
                .exp_name
                .clone()
                .unwrap_or_else(|| describe(&e.plan, &e.sets, e.repeat));
            table.push(format!(
                "{:>3}  {:<11}  {:<9}  {:<6}  {what}",
                e.index,
                e.status.word(),
                duration,
                fault
            ));
        }
        self.summary = Summary {
            total: self.experiments.len(),
            succeeded: count(&[ExpStatus::Succeeded]),
            failed: count(&[ExpStatus::Failed]),
            interrupted: count(&[
                ExpStatus::Interrupted,
                ExpStatus::Aborted,
                ExpStatus::Running,
            ]),
            pending: count(&[ExpStatus::Pending]),
            table,
        };
    }

    pub fn write(&self, out: &Path) -> std::io::Result<()> {
        write_json_atomic(&out.join(CAMPAIGN_MANIFEST), self)
    }

    /// Reads a campaign manifest written earlier.
    ///
    /// # Errors
    /// Unreadable or not a campaign manifest.
    pub fn read(out: &Path) -> Result<Self, String> {
        let path = out.join(CAMPAIGN_MANIFEST);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// `plans/x.yaml [target=a] #2` for progress lines.
pub fn describe(plan: &Path, sets: &[String], repeat: u32) -> String {
    let mut s = plan.display().to_string();
    if !sets.is_empty() {
        s.push_str(&format!(" [{}]", sets.join(" ")));
    }
    if repeat > 1 {
        s.push_str(&format!(" #{repeat}"));
    }
    s
}
