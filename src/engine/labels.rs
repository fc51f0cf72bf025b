//! `runs/<exp>/fault_labels.json`: the ground truth RCA researchers train against — per fault,
//! what was injected where, and when the chaos controller itself says it was injected and
//! recovered. A run without faults writes an empty list.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::faults::FaultRecord;
use crate::atomic_write::write_json_atomic;

pub const LABELS_FILE: &str = "fault_labels.json";

/// One label per fault (teardown entries are not faults).
pub fn fault_labels(exp_name: &str, run_id: &str, faults: &[FaultRecord]) -> Value {
    let labels: Vec<Value> = faults
        .iter()
        .filter(|f| !f.teardown)
        .map(|f| {
            let report = f.recovery_details.as_ref();
            let children = report.and_then(|r| r.children.as_ref());
            // With children, the first kill is the earliest any child's records show.
            let first_child = children.and_then(|kids| {
                kids.iter()
                    .filter_map(|c| c.injected_at.as_deref())
                    .min_by_key(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| json!(t))
            });
            let controller_injected = first_child
                .or_else(|| f.details.controller_injected_at().map(|t| json!(t)));
            let controller_recovered = report
                .and_then(|r| r.controller_recovered_at.as_deref())
                .map(|t| json!(t));
            let source = |t: &Option<Value>| if t.is_some() { "controller" } else { "ttplan" };
            // A Schedule/Workflow acts through the children it spawned: each one is listed with
            // the pods it hit and the controller's times, and the target names them all.
            let mut target = f.details.target_json();
            if let (Some(kids), Some(t)) = (children, target.as_object_mut()) {
                let mut pods: Vec<&str> = kids
                    .iter()
                    .flat_map(|c| c.pods.iter().map(String::as_str))
                    .collect();
                pods.sort_unstable();
                pods.dedup();
                t.insert("pods".into(), json!(pods));
            }
            json!({
                "exp_name": exp_name,
                "run_id": run_id,
                "fault_id": f.id,
                "step": f.step,
                "mechanism": f.kind,
                "kind": f.details.object_kind().map(|k| json!(k))
                    .or_else(|| f.params.kind().map(|k| json!(k)))
                    .unwrap_or_else(|| json!(f.kind)),
                "parameters": f.params,
                "target": target,
                "children": children,
                "parent": report.and_then(|r| r.parent.as_ref()),
                "object": f.details.object_json(),
                "status": f.status,
                "requested_at": f.requested_at,
                // The controller's own records when they were seen; ttplan's clock otherwise.
                "injected_at": controller_injected.clone().unwrap_or_else(|| json!(f.injected_at)),
                "recovered_at": controller_recovered.clone().unwrap_or_else(|| json!(f.recovered_at)),
                "injected_at_source": source(&controller_injected),
                "recovered_at_source": source(&controller_recovered),
                "ttplan_injected_at": f.injected_at,
                "ttplan_recovered_at": f.recovered_at,
                "recovered_by": f.recovered_by,
                "error": f.error,
            })
        })
        .collect();
    Value::Array(labels)
}

/// Adds to each label an `effect`: whether the probes that `verify` its step saw the fault
/// bite — `verified` true (every probe passed), false (one failed), null (no probe, or none
/// could tell) — with each probe's verdict and evaluations. `probes`: fault step → (probe
/// step, its runtime record with `status` and `outputs`).
/// Whether a run's faults took effect, read back from its `fault_labels.json` entries (in
/// fault order): each fault's probes' verdict (`effect.verified`) where it has one, else
/// whether its controller confirmed the injection (`controller_injected(i)`). `None` for a run
/// without faults. The one reading the campaign manifest and the report index share.
pub fn faults_verified(
    labels: Option<&Value>,
    faults: usize,
    controller_injected: impl Fn(usize) -> bool,
) -> Option<bool> {
    if faults == 0 {
        return None;
    }
    let verdicts: Vec<Option<bool>> = labels
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|f| f["effect"]["verified"].as_bool())
                .collect()
        })
        .unwrap_or_default();
    Some((0..faults).all(|i| {
        verdicts
            .get(i)
            .copied()
            .flatten()
            .unwrap_or_else(|| controller_injected(i))
    }))
}

pub fn add_effects(labels: &mut Value, probes: &BTreeMap<String, Vec<(String, Value)>>) {
    let Some(items) = labels.as_array_mut() else {
        return;
    };
    for label in items {
        let step = label["step"].as_str().unwrap_or_default();
        let mine = probes.get(step).map(Vec::as_slice).unwrap_or_default();
        let entries: Vec<Value> = mine
            .iter()
            .map(|(name, r)| {
                let o = &r["outputs"];
                // A probe with `on_failure: fail` that failed has no outputs, only its status.
                let verdict = match (r["status"].as_str(), o["verdict"].as_str()) {
                    (_, Some(v)) => v,
                    (Some("failed"), None) => "failed",
                    _ => "unknown",
                };
                json!({
                    "probe": name,
                    "status": r["status"],
                    "verdict": verdict,
                    "type": o["type"],
                    "value": o["value"],
                    "evaluations": o["evaluations"],
                })
            })
            .collect();
        let verdicts: Vec<&str> = entries
            .iter()
            .map(|e| e["verdict"].as_str().unwrap_or("unknown"))
            .collect();
        let verified = if verdicts.contains(&"failed") {
            json!(false)
        } else if !verdicts.is_empty() && verdicts.iter().all(|v| *v == "passed") {
            json!(true)
        } else {
            Value::Null
        };
        label["effect"] = json!({ "verified": verified, "probes": entries });
    }
}

/// [`write_fault_labels`] with each fault's `effect` (see [`add_effects`]).
///
/// # Errors
/// When the file cannot be written.
pub fn write_fault_labels_with_effects(
    run_dir: &Path,
    exp_name: &str,
    run_id: &str,
    faults: &[FaultRecord],
    probes: &BTreeMap<String, Vec<(String, Value)>>,
) -> std::io::Result<()> {
    let mut labels = fault_labels(exp_name, run_id, faults);
    add_effects(&mut labels, probes);
    write_json_atomic(&run_dir.join(LABELS_FILE), &labels)
}

/// # Errors
/// When the file cannot be written.
pub fn write_fault_labels(
    run_dir: &Path,
    exp_name: &str,
    run_id: &str,
    faults: &[FaultRecord],
) -> std::io::Result<()> {
    write_json_atomic(
        &run_dir.join(LABELS_FILE),
        &fault_labels(exp_name, run_id, faults),
    )
}
