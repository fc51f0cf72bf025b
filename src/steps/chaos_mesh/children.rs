//! What the cluster says about a Chaos Mesh object besides its own status: its Events, the
//! children a Schedule/Workflow spawned, and why a selector matched nothing.

use ::kube::api::{DynamicObject, ListParams};
use k8s_openapi::api::core::v1::Event;
use serde_json::{json, Value};

use crate::kube::chaos::{
    chaos_mesh_resource, children_selector, controller_times, records_from_events,
    spawned_children, CHAOS_MESH_API, CHAOS_MESH_KINDS,
};
use crate::kube::pods::PodQuery;
use crate::kube::Kube;

/// The Events about one object (by name; callers filter by uid).
pub(super) async fn object_events(kube: &Kube, namespace: &str, name: &str) -> Vec<Event> {
    let api: ::kube::Api<Event> = ::kube::Api::namespaced(kube.client.clone(), namespace);
    api.list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Every Event in the namespace (to rebuild the children a schedule spawned and collected).
pub(super) async fn namespace_events(kube: &Kube, namespace: &str) -> Vec<Event> {
    let api: ::kube::Api<Event> = ::kube::Api::namespaced(kube.client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The first spawned child whose `Applied` events show an injection, as an object carrying
/// the records rebuilt from those events.
pub(super) async fn collected_child(
    kube: &Kube,
    kind: &str,
    parent: &DynamicObject,
    namespace: &str,
    events: &[Event],
    name: &str,
    uid: &str,
) -> Option<(DynamicObject, Option<String>)> {
    if kind != "Schedule" {
        return None;
    }
    let child_kind = parent.data.pointer("/spec/type").and_then(Value::as_str)?;
    for n in spawned_children(events, name, Some(uid)) {
        let recs = records_from_events(&object_events(kube, namespace, &n).await, &n);
        if controller_times(&recs).0.is_some() {
            let obj = json!({"apiVersion": CHAOS_MESH_API, "kind": child_kind,
                "metadata": {"name": n, "namespace": namespace},
                "spec": parent.data.pointer(&format!("/spec/{}", schedule_field(child_kind))).cloned().unwrap_or(Value::Null),
                "status": {"experiment": {"containerRecords": recs}}});
            let obj: DynamicObject = serde_json::from_value(obj).ok()?;
            return Some((obj, Some(child_kind.to_string())));
        }
    }
    None
}

/// The Schedule field that embeds a child's spec (`PodChaos` → `podChaos`).
fn schedule_field(kind: &str) -> String {
    let mut c = kind.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// A schedule's own failure (e.g. "Failed to create new object: …", an unparseable schedule).
pub(super) fn own_failure(events: &[Event], name: &str, uid: &str) -> Option<String> {
    events
        .iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.involved_object.uid.as_deref() == Some(uid)
                && e.reason.as_deref() == Some("Failed")
        })
        .filter_map(|e| e.message.clone())
        .next()
}

/// The chaos objects a Schedule/Workflow spawned (by the controllers' label and, when known,
/// ownership), oldest first, with their kinds.
pub(super) async fn list_children(
    kube: &Kube,
    kind: &str,
    child_type: Option<&str>,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<Vec<(String, DynamicObject)>, String> {
    let Some(selector) = children_selector(kind, name) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (k, _) in CHAOS_MESH_KINDS
        .iter()
        .filter(|(k, _)| !matches!(*k, "Schedule" | "Workflow"))
        .filter(|(k, _)| kind != "Schedule" || child_type.is_none_or(|t| t == *k))
    {
        let Some(ar) = chaos_mesh_resource(k) else {
            continue;
        };
        let list = kube
            .dynamic(&ar, Some(namespace))
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| format!("listing the {k} objects of {kind} {name}: {e}"))?;
        for o in list.items {
            // A workflow's children are owned by its nodes; a schedule's by the schedule.
            let owned = kind == "Workflow"
                || uid.is_none_or(|u| {
                    o.metadata
                        .owner_references
                        .as_ref()
                        .is_none_or(|refs| refs.iter().any(|r| r.uid == u))
                });
            if owned {
                out.push((k.to_string(), o));
            }
        }
    }
    out.sort_by_key(|(_, o)| o.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Ok(out)
}

/// What a user needs to see when nothing was selected: the selector, where it looked, and the
/// pods that do carry those labels (and their phase).
pub(super) async fn selection_context(kube: &Kube, obj: &DynamicObject, namespace: &str) -> String {
    let sel = obj
        .data
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(Value::Null);
    let namespaces: Vec<String> = sel
        .get("namespaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .unwrap_or_else(|| vec![namespace.to_string()]);
    let labels: Vec<String> = sel
        .get("labelSelectors")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    let selector = labels.join(",");
    for ns in &namespaces {
        let query = PodQuery {
            namespace: ns,
            selector: Some(&selector),
            name_prefixes: &[],
        };
        match query.pods(kube).await {
            Ok(pods) => found.extend(pods.into_iter().map(|p| {
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Unknown".into());
                let deleting = if p.metadata.deletion_timestamp.is_some() {
                    ", terminating"
                } else {
                    ""
                };
                format!(
                    "{ns}/{} ({phase}{deleting})",
                    p.metadata.name.unwrap_or_default()
                )
            })),
            Err(e) => found.push(format!("(cannot list pods in {ns}: {e})")),
        }
    }
    let pods = if found.is_empty() {
        format!(
            "no pod in {} has the labels {}",
            namespaces.join(", "),
            if labels.is_empty() {
                "(none given)".to_string()
            } else {
                labels.join(",")
            }
        )
    } else {
        format!(
            "pods with labels {}: {}",
            labels.join(","),
            found.join(", ")
        )
    };
    format!(
        "selector {sel} (mode {}) in namespace {}; {pods}",
        obj.data
            .pointer("/spec/mode")
            .map(Value::to_string)
            .unwrap_or_else(|| "?".into()),
        namespaces.join(", ")
    )
}
