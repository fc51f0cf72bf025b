//! Recovering a run from its fault ledger after the fact (`ttplan chaos clean --run`, a
//! campaign's `--resume`) and bringing its manifest and labels up to date.

use std::path::Path;

use serde::Deserialize;

use super::faults::{FaultLedger, FaultRecord, RecoverSettings};
use super::labels::write_fault_labels;
use super::manifest::MANIFEST_FILE;

/// What [`recover_run`] did.
pub struct RunRecovery {
    pub ledger: std::path::PathBuf,
    /// Ids that needed recovery.
    pub pending: Vec<String>,
    /// Ids that still need it, with why.
    pub failures: Vec<(String, String)>,
    pub faults: Vec<FaultRecord>,
}

/// `chaos clean --run`: recovers what a run's ledger lists as unrecovered and brings its
/// manifest and labels up to date — after a kill -9, and before a campaign reruns it.
///
/// # Errors
/// The ledger cannot be read (a run that never injected has none: `NotFound`).
pub async fn recover_run(
    run_dir: &Path,
    settings: &RecoverSettings,
    by: &str,
) -> std::io::Result<RunRecovery> {
    let ledger = FaultLedger::open(run_dir)?;
    let pending: Vec<String> = ledger
        .snapshot()
        .await
        .iter()
        .filter(|f| f.needs_recovery())
        .map(|f| f.id.clone())
        .collect();
    let failures = if pending.is_empty() {
        Vec::new()
    } else {
        ledger.recover_pending(None, by, settings).await
    };
    let faults = ledger.snapshot().await;
    if !pending.is_empty() {
        update_run_records(run_dir, &faults);
    }
    Ok(RunRecovery {
        ledger: ledger.path().to_path_buf(),
        pending,
        failures,
        faults,
    })
}

/// The run's identity in its manifest (`run.exp_name`, `run.id`), for the labels.
#[derive(Debug, Default, Deserialize)]
struct RunIds {
    #[serde(default)]
    exp_name: String,
    #[serde(default)]
    id: String,
}

/// Brings the run's manifest and labels up to date with the ledger, when they exist.
fn update_run_records(run_dir: &Path, faults: &[FaultRecord]) {
    let manifest_path = run_dir.join(MANIFEST_FILE);
    let Ok(text) = std::fs::read_to_string(&manifest_path) else {
        return;
    };
    let Ok(mut manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    if let Some(m) = manifest.as_object_mut() {
        m.insert(
            "faults".into(),
            serde_json::to_value(faults).unwrap_or_default(),
        );
    }
    let ids = RunIds::deserialize(&manifest["run"]).unwrap_or_default();
    if let Err(e) = crate::atomic_write::write_json_atomic(&manifest_path, &manifest) {
        eprintln!("warning: cannot update {}: {e}", manifest_path.display());
    }
    if let Err(e) = write_fault_labels(run_dir, &ids.exp_name, &ids.id, faults) {
        eprintln!("warning: cannot write fault labels: {e}");
    }
}
