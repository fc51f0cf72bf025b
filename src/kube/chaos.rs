//! Chaos Mesh and ChaosBlade resources, and how to read their status.
//!
//! Plurals are given explicitly: kube's `from_gvk` would guess `stresschaoses`, but Chaos Mesh's
//! CRDs say `stresschaos`. Chaos kinds have no status subresource: status comes with a plain GET.

use ::kube::api::{DynamicObject, GroupVersionKind};
use ::kube::discovery::ApiResource;
use serde_json::Value;

pub const CHAOS_MESH_GROUP: &str = "chaos-mesh.org";
pub const CHAOS_MESH_VERSION: &str = "v1alpha1";
pub const CHAOS_MESH_API: &str = "chaos-mesh.org/v1alpha1";
pub const CHAOSBLADE_API: &str = "chaosblade.io/v1alpha1";
/// The operator's finalizer (chaosblade-operator `pkg/controller/chaosblade/controller.go`).
pub const CHAOSBLADE_FINALIZER: &str = "finalizer.chaosblade.io";

/// Every Chaos Mesh kind ttplan creates, with its CRD plural.
pub const CHAOS_MESH_KINDS: &[(&str, &str)] = &[
    ("StressChaos", "stresschaos"),
    ("NetworkChaos", "networkchaos"),
    ("PodChaos", "podchaos"),
    ("IOChaos", "iochaos"),
    ("HTTPChaos", "httpchaos"),
    ("DNSChaos", "dnschaos"),
    ("Schedule", "schedules"),
    ("Workflow", "workflows"),
];

/// The finalizer Chaos Mesh removes only when every record is recovered.
pub const RECORDS_FINALIZER: &str = "chaos-mesh/records";
/// The annotation that makes Chaos Mesh drop its finalizer without recovering.
pub const FORCE_CLEAN_ANNOTATION: &str = "chaos-mesh.chaos-mesh.org/cleanFinalizer";

pub fn chaos_mesh_resource(kind: &str) -> Option<ApiResource> {
    CHAOS_MESH_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(k, plural)| {
            ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(CHAOS_MESH_GROUP, CHAOS_MESH_VERSION, k),
                plural,
            )
        })
}

/// The ChaosBlade operator's CRD (cluster-scoped).
pub fn chaosblade_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("chaosblade.io", "v1alpha1", "ChaosBlade"),
        "chaosblades",
    )
}

/// Where an injection stands, as the controller reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    Pending,
    Injected,
    Failed(String),
}

fn condition(status: &Value, kind: &str) -> Option<bool> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .map(|s| s == "True")
}

pub fn container_records(obj: &DynamicObject) -> Vec<Value> {
    obj.data
        .pointer("/status/experiment/containerRecords")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Pod-kill and container-kill finish at once; the rest keep running until deleted.
fn is_one_shot(kind: &str, obj: &DynamicObject) -> bool {
    kind == "PodChaos"
        && matches!(
            obj.data.pointer("/spec/action").and_then(Value::as_str),
            Some("pod-kill" | "container-kill")
        )
}

/// Reads a Chaos Mesh object's status.
pub fn chaos_mesh_injection(kind: &str, obj: &DynamicObject) -> Injection {
    let Some(status) = obj.data.get("status").filter(|s| !s.is_null()) else {
        return Injection::Pending;
    };
    match kind {
        // A schedule injects through the objects it spawns; a workflow through its nodes.
        "Schedule" | "Workflow" => return Injection::Injected,
        _ => {}
    }
    let records = container_records(obj);
    for r in &records {
        let failed = r
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| {
                e.get("type").and_then(Value::as_str) == Some("Failed")
                    && e.get("operation").and_then(Value::as_str) == Some("Apply")
            });
        if let Some(e) = failed {
            let id = r.get("id").and_then(Value::as_str).unwrap_or("?");
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("injection failed");
            return Injection::Failed(format!("{id}: {msg}"));
        }
    }
    if condition(status, "Selected") == Some(false) && records.is_empty() {
        return Injection::Failed(
            "no target has been selected: the selector matches no pod".into(),
        );
    }
    let all_injected = condition(status, "AllInjected") == Some(true);
    let applied = |r: &Value| {
        r.get("events")
            .and_then(Value::as_array)
            .is_some_and(|evs| {
                evs.iter().any(|e| {
                    e.get("type").and_then(Value::as_str) == Some("Succeeded")
                        && e.get("operation").and_then(Value::as_str) == Some("Apply")
                })
            })
    };
    if is_one_shot(kind, obj) {
        if all_injected || (!records.is_empty() && records.iter().all(applied)) {
            return Injection::Injected;
        }
    } else if all_injected && !records.is_empty() {
        return Injection::Injected;
    }
    Injection::Pending
}

/// The ChaosBlade operator's view of an experiment.
pub fn chaosblade_injection(obj: &DynamicObject) -> Injection {
    let phase = obj
        .data
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    match phase {
        "Running" => Injection::Injected,
        "Error" => {
            let errors: Vec<String> = obj
                .data
                .pointer("/status/expStatuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.get("error").and_then(Value::as_str).map(str::to_string))
                .filter(|e| !e.is_empty())
                .collect();
            Injection::Failed(if errors.is_empty() {
                "the ChaosBlade operator reported Error".into()
            } else {
                errors.join("; ")
            })
        }
        _ => Injection::Pending,
    }
}

/// Controller-recorded times: the earliest successful Apply and the latest successful Recover
/// over all records (RFC 3339 strings as the controller wrote them).
pub fn controller_times(records: &[Value]) -> (Option<String>, Option<String>) {
    let mut applied: Vec<&str> = Vec::new();
    let mut recovered: Vec<&str> = Vec::new();
    for e in records
        .iter()
        .filter_map(|r| r.get("events").and_then(Value::as_array))
        .flatten()
    {
        if e.get("type").and_then(Value::as_str) != Some("Succeeded") {
            continue;
        }
        let Some(ts) = e.get("timestamp").and_then(Value::as_str) else {
            continue;
        };
        match e.get("operation").and_then(Value::as_str) {
            Some("Apply") => applied.push(ts),
            Some("Recover") => recovered.push(ts),
            _ => {}
        }
    }
    let parse = |s: &&str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let min = applied
        .iter()
        .min_by_key(|s| parse(s))
        .map(|s| s.to_string());
    let max = recovered
        .iter()
        .max_by_key(|s| parse(s))
        .map(|s| s.to_string());
    (min, max)
}

/// `ns/pod` of every record (records may name a container too: `ns/pod/container`).
pub fn affected_pods(records: &[Value]) -> Vec<String> {
    let mut pods: Vec<String> = records
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str))
        .map(|id| id.split('/').take(2).collect::<Vec<_>>().join("/"))
        .collect();
    pods.sort();
    pods.dedup();
    pods
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn plurals_are_the_crds_not_english() {
        assert_eq!(
            chaos_mesh_resource("StressChaos").unwrap().plural,
            "stresschaos"
        );
        assert_eq!(chaos_mesh_resource("Schedule").unwrap().plural, "schedules");
        assert!(chaos_mesh_resource("Stresschaos").is_none());
    }

    #[test]
    fn stress_is_injected_when_all_records_are() {
        let o = obj(
            json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "StressChaos", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "AllInjected", "status": "True"}, {"type": "Selected", "status": "True"}],
            "experiment": {"containerRecords": [{"id": "default/p1/c", "phase": "Injected",
              "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2026-11-28T10:00:01Z"}]}]}}}),
        );
        assert_eq!(chaos_mesh_injection("StressChaos", &o), Injection::Injected);
        assert_eq!(affected_pods(&container_records(&o)), vec!["default/p1"]);
        assert_eq!(
            controller_times(&container_records(&o)).0.as_deref(),
            Some("2026-11-28T10:00:01Z")
        );
    }

    #[test]
    fn nothing_selected_is_a_failure_not_a_wait() {
        let o = obj(
            json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Selected", "status": "False"}], "experiment": {"containerRecords": []}}}),
        );
        assert!(
            matches!(chaos_mesh_injection("NetworkChaos", &o), Injection::Failed(m) if m.contains("no target"))
        );
    }

    #[test]
    fn pod_kill_counts_as_injected_once_applied() {
        let o = obj(
            json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos", "metadata": {"name": "x"},
            "spec": {"action": "pod-kill"},
            "status": {"conditions": [{"type": "AllInjected", "status": "False"}],
            "experiment": {"containerRecords": [{"id": "default/p1", "phase": "Not Injected",
              "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2026-11-28T10:00:01Z"}]}]}}}),
        );
        assert_eq!(chaos_mesh_injection("PodChaos", &o), Injection::Injected);
        assert_eq!(chaos_mesh_injection("StressChaos", &o), Injection::Pending);
    }

    #[test]
    fn recovery_time_is_the_latest_recover_event() {
        let recs = vec![
            json!({"id": "d/a", "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2026-11-28T10:00:02Z"},
                                           {"type": "Succeeded", "operation": "Recover", "timestamp": "2026-11-28T10:05:00Z"}]}),
            json!({"id": "d/b", "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2026-11-28T10:00:01Z"},
                                           {"type": "Succeeded", "operation": "Recover", "timestamp": "2026-11-28T10:05:03Z"}]}),
        ];
        let (a, r) = controller_times(&recs);
        assert_eq!(a.as_deref(), Some("2026-11-28T10:00:01Z"));
        assert_eq!(r.as_deref(), Some("2026-11-28T10:05:03Z"));
    }
}
