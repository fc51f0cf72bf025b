//! `--resume`: never leave a half-run experiment. What an unfinished try left injected is
//! recovered, its run is marked interrupted, and the experiment is queued again with the try
//! kept in its `attempts`.

use std::path::Path;
use std::sync::Arc;

use super::record::{Attempt, CampaignManifest, ExpStatus, ExperimentRecord};
use crate::engine::faults::RecoverSettings;
use crate::engine::manifest::MANIFEST_FILE;
use crate::engine::progress::Progress;
use crate::exit;
use crate::kube::{KubeAccess, KubeSettings};

/// Recovers and re-queues every experiment that did not succeed and has a try on record.
///
/// # Errors
/// The exit code when a fault of an earlier try is still injected or its ledger is unreadable
/// (the reason is printed).
pub(super) async fn requeue_unfinished(
    manifest: &mut CampaignManifest,
    progress: &Progress,
) -> Result<(), u8> {
    for r in manifest.experiments.iter_mut() {
        if r.status == ExpStatus::Succeeded || r.status == ExpStatus::Pending && r.run_dir.is_none()
        {
            continue;
        }
        let mut recovered = Vec::new();
        if let Some(dir) = &r.run_dir {
            recovered = recover_earlier_try(dir).await?;
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
        archive_attempt(r, recovered);
    }
    Ok(())
}

/// Recovers the faults the run in `dir` left injected; returns their ids.
async fn recover_earlier_try(dir: &Path) -> Result<Vec<String>, u8> {
    // Default settings: each fault is recovered on the cluster its record names (the slot it
    // ran on), not on the command line's.
    let settings = RecoverSettings {
        timeout: None,
        kube: Arc::new(KubeAccess::new(KubeSettings::default())),
        force: false,
        children: Default::default(),
        recover_fn: crate::steps::recover_fn,
    };
    match crate::engine::recovery::recover_run(dir, &settings, "ttplan campaign run --resume").await
    {
        Ok(rec) if rec.failures.is_empty() => Ok(rec.pending),
        Ok(rec) => {
            for (id, e) in &rec.failures {
                eprintln!(
                    "error: fault `{id}` of {} NOT recovered: {e}",
                    dir.display()
                );
            }
            eprintln!("error: --resume stops here: the cluster still has chaos of an earlier try (see `ttplan chaos clean --run {}`)", dir.display());
            Err(exit::STEP_FAILED)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => {
            eprintln!(
                "error: cannot read the fault ledger in {}: {e}",
                dir.display()
            );
            Err(exit::STEP_FAILED)
        }
    }
}

/// Moves the record's unfinished try into `attempts` and makes the experiment pending again.
fn archive_attempt(r: &mut ExperimentRecord, recovered: Vec<String>) {
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

/// A run manifest still saying `running` belongs to a process that died (kill -9, reboot).
fn mark_dead_run(run_dir: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_try_is_kept_as_interrupted_and_the_experiment_is_pending_again() {
        let mut r: ExperimentRecord = serde_json::from_value(serde_json::json!({
            "index": 2, "key": "p.yaml||#1", "plan": "p.yaml", "sets": [], "repeat": 1,
            "status": "running", "slot": "default", "exp_name": "p_1",
            "run_dir": "/out/runs/p_1", "manifest": "/out/runs/p_1/experiment_manifest.json",
            "started_at": "2026-12-06T10:00:00Z", "exit_code": 3, "fault_verified": false,
            "error": "boom",
        }))
        .unwrap();
        archive_attempt(&mut r, vec!["cpu".into()]);
        assert_eq!(r.status, ExpStatus::Pending);
        assert!(r.run_dir.is_none() && r.exp_name.is_none() && r.manifest.is_none());
        assert!(r.exit_code.is_none() && r.fault_verified.is_none() && r.error.is_none());
        let [a] = r.attempts.as_slice() else {
            panic!("one attempt: {:?}", r.attempts)
        };
        assert_eq!(a.status, ExpStatus::Interrupted);
        assert_eq!(a.exp_name.as_deref(), Some("p_1"));
        assert!(a.started_at.is_some() && a.finished_at.is_none());
        assert_eq!(a.recovered_faults, ["cpu"]);
        // The slot it ran on stays on record.
        assert_eq!(r.slot.as_deref(), Some("default"));
    }
}
