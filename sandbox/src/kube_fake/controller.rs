//! Routes store changes to the fake controllers, and writes core Events the way controllers
//! and the kubelet do.

use std::sync::Arc;

use serde_json::{json, Value};

use super::discovery::{catalogue, ResourceDef, CHAOSBLADE_GROUP, CHAOS_MESH_GROUP};
use super::store::{Change, Store};
use super::util::{now_rfc3339, random_hex};
use super::{chaosblade, chaosmesh, pods, rollout, Shared};

/// Called after every store mutation, outside the store lock.
pub fn dispatch(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    match (def.group, def.plural) {
        ("", "pods") => {
            if let Change::Deleted(pod) = change {
                pods::on_pod_deleted(shared, pod);
            }
        }
        ("apps", "deployments") => rollout::on_deployment_change(shared, change),
        (CHAOS_MESH_GROUP, "schedules") => chaosmesh::on_schedule_change(shared, def, change),
        (CHAOS_MESH_GROUP, "workflows") => chaosmesh::on_workflow_change(shared, def, change),
        (CHAOS_MESH_GROUP, _) => chaosmesh::on_chaos_change(shared, def, change),
        (CHAOSBLADE_GROUP, "chaosblades") => chaosblade::on_change(shared, def, change),
        _ => {}
    }
}

fn events_def() -> ResourceDef {
    catalogue(false, false)
        .into_iter()
        .find(|d| d.plural == "events")
        .expect("events resource")
}

/// Stores a core/v1 Event about `involved` (any object with apiVersion/kind/metadata), as
/// `kubectl get events` would show it.
pub fn record_event(
    store: &mut Store,
    involved: &Value,
    reason: &str,
    message: &str,
    type_: &str,
    component: &str,
) {
    record_event_annotated(
        store,
        involved,
        reason,
        message,
        type_,
        component,
        json!({}),
    );
}

/// [`record_event`] with annotations (Chaos Mesh's recorder puts the event's fields there:
/// controllers/utils/recorder/annotations.go `generateAnnotations`).
pub fn record_event_annotated(
    store: &mut Store,
    involved: &Value,
    reason: &str,
    message: &str,
    type_: &str,
    component: &str,
    annotations: Value,
) {
    let meta = &involved["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
    let name = meta["name"].as_str().unwrap_or("");
    let now = now_rfc3339();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{}", random_hex(16)), "namespace": ns, "annotations": annotations},
        "involvedObject": {
            "apiVersion": involved["apiVersion"], "kind": involved["kind"],
            "name": name, "namespace": ns, "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    let _ = store.create(&events_def(), Some(&ns), event);
}

/// The events.k8s.io/v1 form of a stored core/v1 Event (the API server converts the same way:
/// involvedObject → regarding, message → note, first/last/count → deprecated*).
pub fn event_v1(core: &Value) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": core["metadata"],
        "eventTime": core["eventTime"],
        "regarding": core["involvedObject"],
        "note": core["message"],
        "reason": core["reason"],
        "type": core["type"],
        "reportingController": core["reportingComponent"],
        "reportingInstance": core["reportingInstance"],
        "deprecatedSource": core["source"],
        "deprecatedFirstTimestamp": core["firstTimestamp"],
        "deprecatedLastTimestamp": core["lastTimestamp"],
        "deprecatedCount": core["count"],
    })
}
