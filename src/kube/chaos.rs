//! Chaos Mesh and ChaosBlade resources, and how to read their status.
//!
//! Plurals are given explicitly: kube's `from_gvk` would guess `stresschaoses`, but Chaos Mesh's
//! CRDs say `stresschaos`. Chaos kinds have no status subresource: status comes with a plain GET.

use ::kube::api::{DynamicObject, GroupVersionKind};
use ::kube::discovery::ApiResource;
use k8s_openapi::api::core::v1::Event;
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

pub fn container_records(obj: &DynamicObject) -> Vec<Value> {
    obj.data
        .pointer("/status/experiment/containerRecords")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// api/v1alpha1 `PodChaos.IsOneShot`: pod-kill and container-kill are done once applied.
fn is_one_shot(kind: &str, obj: &DynamicObject) -> bool {
    kind == "PodChaos"
        && matches!(
            obj.data.pointer("/spec/action").and_then(Value::as_str),
            Some("pod-kill" | "container-kill")
        )
}

fn last_event(record: &Value) -> Option<&Value> {
    record.get("events").and_then(Value::as_array)?.last()
}

fn has_event(record: &Value, type_: &str, operation: &str) -> bool {
    record
        .get("events")
        .and_then(Value::as_array)
        .is_some_and(|evs| {
            evs.iter().any(|e| {
                e.get("type").and_then(Value::as_str) == Some(type_)
                    && e.get("operation").and_then(Value::as_str) == Some(operation)
            })
        })
}

/// Reads a Chaos Mesh object's injection state the way its controller writes it
/// (controllers/common/records): the records are the first word, the conditions are derived
/// from them one pass later. No records yet is pending, whatever the conditions say: every new
/// object shows `Selected=False, AllInjected=False` until targets are selected. "Nothing
/// selected" is not visible in the status at all (see [`selection_failure`]).
///
/// A Schedule counts as injected once it has spawned a child (`status.time`), a Workflow once
/// it has started; the `chaos-mesh` step waits for their children instead.
pub fn chaos_mesh_injection(kind: &str, obj: &DynamicObject) -> Injection {
    match kind {
        "Schedule" => {
            return if obj
                .data
                .pointer("/status/time")
                .is_some_and(Value::is_string)
            {
                Injection::Injected
            } else {
                Injection::Pending
            }
        }
        "Workflow" => {
            return if obj
                .data
                .pointer("/status/entryNode")
                .is_some_and(Value::is_string)
            {
                Injection::Injected
            } else {
                Injection::Pending
            }
        }
        _ => {}
    }
    let Some(records) = obj
        .data
        .pointer("/status/experiment/containerRecords")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    else {
        return Injection::Pending;
    };
    let phase = |r: &Value| {
        r.get("phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for r in records {
        // A failed Apply is retried by the controller; it is a failure while it is the
        // record's latest word.
        let Some(e) = last_event(r) else { continue };
        if e.get("type").and_then(Value::as_str) == Some("Failed")
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
            && phase(r) != "Injected"
        {
            let id = r.get("id").and_then(Value::as_str).unwrap_or("?");
            let msg = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("injection failed");
            return Injection::Failed(format!("{id}: {msg}"));
        }
    }
    let injected = |r: &Value| {
        phase(r) == "Injected" || (is_one_shot(kind, obj) && has_event(r, "Succeeded", "Apply"))
    };
    if records.iter().all(injected) {
        Injection::Injected
    } else {
        Injection::Pending
    }
}

/// The records controller's activity when it selects targets (controllers/common/records
/// `Reconcile`, recorder `Failed{Activity: "select targets"}`).
pub const SELECT_ACTIVITY: &str = "select targets";

fn annotation<'a>(e: &'a Event, key: &str) -> Option<&'a str> {
    e.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn event_time(e: &Event) -> Option<chrono::DateTime<chrono::Utc>> {
    e.last_timestamp
        .as_ref()
        .or(e.first_timestamp.as_ref())
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
        })
}

fn about(e: &Event, name: &str, uid: Option<&str>) -> bool {
    e.involved_object.name.as_deref() == Some(name)
        && uid.is_none_or(|u| e.involved_object.uid.as_deref() == Some(u))
}

/// The controller's message when it could not select targets for the object (`uid`: this
/// incarnation only). Recognised by reason `Failed` and the activity — the annotation
/// `chaos-mesh.org/activity`, or the message's "Failed to select targets" on versions without
/// annotations — not by the error text, which differs across versions ("no pod is selected",
/// "no target has been selected", a selector error).
pub fn selection_failure(events: &[Event], name: &str, uid: Option<&str>) -> Option<String> {
    events
        .iter()
        .filter(|e| about(e, name, uid) && e.reason.as_deref() == Some("Failed"))
        .filter(|e| {
            annotation(e, "chaos-mesh.org/activity") == Some(SELECT_ACTIVITY)
                || e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Failed to select targets"))
        })
        .max_by_key(|e| event_time(e))
        .map(|e| {
            e.message
                .clone()
                .unwrap_or_else(|| "Failed to select targets".into())
        })
}

/// The label the schedule controller puts on the objects it spawns
/// (api/v1alpha1/common_types.go `LabelManagedBy`).
pub const MANAGED_BY_LABEL: &str = "managed-by";
/// The label workflow nodes put on their chaos objects (api/v1alpha1 `LabelWorkflow`).
pub const WORKFLOW_LABEL: &str = "chaos-mesh.org/workflow";

/// The label selector that finds the chaos objects a Schedule or Workflow spawned.
pub fn children_selector(kind: &str, name: &str) -> Option<String> {
    match kind {
        "Schedule" => Some(format!("{MANAGED_BY_LABEL}={name}")),
        "Workflow" => Some(format!("{WORKFLOW_LABEL}={name}")),
        _ => None,
    }
}

/// Names of the children a schedule reported spawning: its `Spawned` events ("Create new
/// object: <name>", annotation `chaos-mesh.org/name`), oldest first.
pub fn spawned_children(events: &[Event], name: &str, uid: Option<&str>) -> Vec<String> {
    let mut spawned: Vec<(Option<chrono::DateTime<chrono::Utc>>, String)> = events
        .iter()
        .filter(|e| about(e, name, uid) && e.reason.as_deref() == Some("Spawned"))
        .filter_map(|e| {
            let child = annotation(e, "chaos-mesh.org/name")
                .map(str::to_string)
                .or_else(|| {
                    e.message
                        .as_deref()?
                        .strip_prefix("Create new object: ")
                        .map(|s| s.trim().to_string())
                })?;
            Some((event_time(e), child))
        })
        .collect();
    spawned.sort();
    let mut names: Vec<String> = Vec::new();
    for (_, n) in spawned {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Record-shaped entries rebuilt from an object's `Applied`/`Recovered` events ("Successfully
/// apply chaos for <id>", annotation `chaos-mesh.org/id`) — what is left of a child the
/// schedule's history limit already collected. Event times have whole seconds, like records.
pub fn records_from_events(events: &[Event], name: &str) -> Vec<Value> {
    let mut by_id: Vec<(String, Vec<Value>)> = Vec::new();
    for e in events.iter().filter(|e| about(e, name, None)) {
        let (op, prefix) = match e.reason.as_deref() {
            Some("Applied") => ("Apply", "Successfully apply chaos for "),
            Some("Recovered") => ("Recover", "Successfully recover chaos for "),
            _ => continue,
        };
        let Some(id) = annotation(e, "chaos-mesh.org/id")
            .map(str::to_string)
            .or_else(|| {
                e.message
                    .as_deref()?
                    .strip_prefix(prefix)
                    .map(|s| s.trim().to_string())
            })
        else {
            continue;
        };
        let Some(at) = event_time(e) else { continue };
        let ev = serde_json::json!({"type": "Succeeded", "operation": op,
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
        match by_id.iter_mut().find(|(i, _)| *i == id) {
            Some((_, evs)) => evs.push(ev),
            None => by_id.push((id, vec![ev])),
        }
    }
    by_id
        .into_iter()
        .map(|(id, events)| serde_json::json!({"id": id, "events": events}))
        .collect()
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
    fn all_false_conditions_without_records_are_pending_not_a_failure() {
        // What every new object shows before the records controller has selected targets.
        let o = obj(
            json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Selected", "status": "False"}, {"type": "AllInjected", "status": "False"},
              {"type": "AllRecovered", "status": "False"}, {"type": "Paused", "status": "False"}],
              "experiment": {"desiredPhase": "Run"}}}),
        );
        assert_eq!(chaos_mesh_injection("NetworkChaos", &o), Injection::Pending);
    }

    #[test]
    fn records_injected_before_the_conditions_catch_up_count() {
        let o = obj(
            json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Selected", "status": "False"}, {"type": "AllInjected", "status": "False"}],
              "experiment": {"desiredPhase": "Run", "containerRecords": [{"id": "d/p", "phase": "Injected",
                "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2026-11-28T10:00:01Z"}]}]}}}),
        );
        assert_eq!(
            chaos_mesh_injection("NetworkChaos", &o),
            Injection::Injected
        );
    }

    #[test]
    fn a_failed_apply_fails_until_a_retry_succeeds() {
        let failed = json!({"type": "Failed", "operation": "Apply", "message": "rpc error", "timestamp": "2026-11-28T10:00:01Z"});
        let ok =
            json!({"type": "Succeeded", "operation": "Apply", "timestamp": "2026-11-28T10:00:02Z"});
        let with = |events: Value, phase: &str| {
            obj(
                json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "IOChaos", "metadata": {"name": "x"},
            "status": {"experiment": {"containerRecords": [{"id": "d/p/c", "phase": phase, "events": events}]}}}),
            )
        };
        assert_eq!(
            chaos_mesh_injection("IOChaos", &with(json!([failed]), "Not Injected")),
            Injection::Failed("d/p/c: rpc error".into())
        );
        assert_eq!(
            chaos_mesh_injection("IOChaos", &with(json!([failed, ok]), "Injected")),
            Injection::Injected
        );
    }

    fn event(name: &str, uid: &str, reason: &str, message: &str, ann: Value) -> Event {
        serde_json::from_value(
            json!({"metadata": {"name": format!("{name}.1"), "annotations": ann},
            "involvedObject": {"name": name, "uid": uid}, "reason": reason, "message": message,
            "lastTimestamp": "2026-11-28T10:00:01Z"}),
        )
        .unwrap()
    }

    #[test]
    fn selection_failures_are_known_by_activity_not_wording() {
        let evs = vec![
            event(
                "a",
                "u1",
                "Failed",
                "Failed to select targets: no pod is selected",
                json!({}),
            ),
            event(
                "b",
                "u2",
                "Failed",
                "Failed to select targets: no target has been selected",
                json!({}),
            ),
            event(
                "c",
                "u3",
                "Failed",
                "something reworded",
                json!({"chaos-mesh.org/activity": "select targets"}),
            ),
            event(
                "d",
                "u4",
                "Failed",
                "Failed to apply chaos: rpc error",
                json!({"chaos-mesh.org/activity": "apply chaos"}),
            ),
        ];
        assert!(selection_failure(&evs, "a", Some("u1"))
            .unwrap()
            .contains("no pod is selected"));
        assert!(selection_failure(&evs, "b", Some("u2")).is_some());
        assert!(selection_failure(&evs, "c", None).is_some());
        assert_eq!(selection_failure(&evs, "d", None), None);
        // An earlier object of the same name is not this one.
        assert_eq!(selection_failure(&evs, "a", Some("other")), None);
    }

    #[test]
    fn children_and_their_kills_are_rebuilt_from_events() {
        let evs = vec![
            event(
                "s",
                "us",
                "Spawned",
                "Create new object: s-abcde",
                json!({"chaos-mesh.org/name": "s-abcde"}),
            ),
            event(
                "s",
                "us",
                "Spawned",
                "Create new object: s-fghjk",
                json!({}),
            ),
            event(
                "s-abcde",
                "c1",
                "Applied",
                "Successfully apply chaos for ns/p-1",
                json!({}),
            ),
            event(
                "s-abcde",
                "c1",
                "Recovered",
                "Successfully recover chaos for ns/p-1",
                json!({"chaos-mesh.org/id": "ns/p-1"}),
            ),
        ];
        assert_eq!(
            spawned_children(&evs, "s", Some("us")),
            vec!["s-abcde", "s-fghjk"]
        );
        let recs = records_from_events(&evs, "s-abcde");
        assert_eq!(affected_pods(&recs), vec!["ns/p-1"]);
        let (a, r) = controller_times(&recs);
        assert_eq!(a.as_deref(), Some("2026-11-28T10:00:01Z"));
        assert_eq!(r.as_deref(), Some("2026-11-28T10:00:01Z"));
        assert_eq!(
            children_selector("Schedule", "s").as_deref(),
            Some("managed-by=s")
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
