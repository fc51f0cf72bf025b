//! A fake chaosblade-operator for the cluster-scoped `chaosblades.chaosblade.io`, modelled on
//! chaosblade-io/chaosblade-operator (read at commit d8c5473, `pkg/controller/chaosblade/
//! controller.go`, `ReconcileChaosBlade.Reconcile` and `finalizeChaosBlade`; status shape from
//! `pkg/apis/chaosblade/v1alpha1/types.go`):
//!
//! - A blade without experiments is ignored (`len(cb.Spec.Experiments) == 0 → forget`).
//! - Phase `""` → the reconciler first adds `finalizer.chaosblade.io` (a plain `Update`), and on
//!   the next reconcile writes phase `Initialized` with empty `expStatuses` (`Status().Update`).
//! - `Initialized` → `Executor.Create` per experiment (it attaches to the JVMs, which takes
//!   `delays.blade`), then one status write: `Running` when any experiment succeeded, else
//!   `Error`; `expStatuses[]` = `{scope,target,action,success,state,error,resStatuses[]}` with
//!   per-container `{id,state,success,kind,identifier}` (identifier
//!   `Namespace/NodeName/PodName/ContainerName`).
//! - deletionTimestamp set → `finalizeChaosBlade`: `Executor.Destroy` per experiment
//!   (`delays.blade_destroy`), phase `Destroyed` (states `Destroyed`) in one status write; the next
//!   reconcile removes the finalizer and the object goes. When the destroy fails
//!   (`recovery_hangs`), the phase is `Destroying`, the experiment state `Error`, and the
//!   finalizer stays (the operator's periodic clean-up only strips finalizers of blades
//!   `Destroying` for longer than `--remove-blade-interval`, default 72h: never, in a test).
//!
//! The ChaosBlade status carries no timestamps. The one controller-side clock is the API
//! server's `metadata.managedFields[].time` of the operator's status writes (manager
//! `chaosblade-operator`, operation `Update`, subresource `status`), which this fake writes as the
//! real API server does, with whole seconds. Every Running / Destroyed transition also goes to
//! the fake's chaos timeline (operation `Apply` / `Recover`) with that same instant.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{json, Value};

use super::discovery::ResourceDef;
use super::selectors::LabelSelector;
use super::store::{add_finalizer, remove_finalizer, Change};
use super::util::{random_hex, rfc3339};
use super::{ChaosTimestamp, Shared};

pub const FINALIZER: &str = "finalizer.chaosblade.io";
const MANAGER: &str = "chaosblade-operator";

pub fn on_change(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    match change {
        Change::Created(obj) => {
            if obj["spec"]["experiments"]
                .as_array()
                .is_none_or(|e| e.is_empty())
            {
                return;
            }
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            // Two reconciles: finalizer first, then the Initialized status.
            set(shared, def, &name, |o, _| {
                add_finalizer(o, FINALIZER);
                managed(o, None, Utc::now());
            });
            set(shared, def, &name, |o, now| {
                o["status"] = json!({"phase": "Initialized", "expStatuses": []});
                managed(o, Some("status"), now);
            });
            later(shared, def, &name, shared.delays.blade, create);
        }
        Change::Deleting(obj) => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let hangs = shared.recovery_hangs;
            later(
                shared,
                def,
                &name,
                shared.delays.blade_destroy,
                if hangs { destroy_fails } else { destroy },
            );
        }
        _ => {}
    }
}

/// The operator's `managedFields` entry for a write it made at `now`.
fn managed(o: &mut Value, subresource: Option<&str>, now: DateTime<Utc>) {
    let mut entry = json!({
        "manager": MANAGER, "operation": "Update", "apiVersion": "chaosblade.io/v1alpha1",
        "time": rfc3339(now), "fieldsType": "FieldsV1",
        "fieldsV1": if subresource == Some("status") { json!({"f:status": {}}) } else { json!({"f:metadata": {"f:finalizers": {}}}) },
    });
    if let Some(s) = subresource {
        entry["subresource"] = json!(s);
    }
    let mut fields: Vec<Value> = o["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    fields
        .retain(|f| !(f["manager"] == MANAGER && f.get("subresource") == entry.get("subresource")));
    fields.push(entry);
    o["metadata"]["managedFields"] = Value::Array(fields);
}

fn set(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    name: &str,
    f: impl FnOnce(&mut Value, DateTime<Utc>),
) {
    shared.mutate(|st| {
        let _ = st.store.update_with(def, None, name, |o| {
            f(o, Utc::now());
            Ok(())
        });
    });
}

type Reconcile = fn(&[Value], &mut Value, DateTime<Utc>) -> Option<&'static str>;

/// Runs `f(pods, blade, now)` after `delay`, under the store lock; a transition it reports
/// (`Apply` / `Recover`) goes to the chaos timeline.
fn later(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    name: &str,
    delay: std::time::Duration,
    f: Reconcile,
) {
    let (shared, def, name) = (shared.clone(), def.clone(), name.to_string());
    let rt = shared.rt.clone();
    rt.spawn(async move {
        tokio::time::sleep(delay).await;
        let pods_def = shared.def("", "pods").expect("pods").clone();
        let done = shared.mutate(|st| {
            let pods = st.store.all(&pods_def, None);
            // `metav1.Time` has whole seconds: the timeline keeps the instant as written.
            let now = Utc::now().trunc_subsecs(0);
            let mut op = None;
            let mut targets = Vec::new();
            let mut spec = Value::Null;
            let _ = st.store.update_with(&def, None, &name, |o| {
                op = f(&pods, o, now);
                targets = identifiers(o);
                spec = o["spec"].clone();
                Ok(())
            });
            op.map(|op| (op, targets, now, spec))
        });
        if let Some((op, targets, at, spec)) = done {
            let mut timeline = shared
                .chaos_timeline
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for target in targets {
                timeline.push(ChaosTimestamp {
                    kind: "ChaosBlade".into(),
                    namespace: String::new(),
                    name: name.clone(),
                    target,
                    operation: op.to_string(),
                    at,
                    spec: spec.clone(),
                });
            }
            if op == "Recover" {
                // The status write requeues the blade: the next reconcile drops the finalizer.
                shared.mutate(|st| {
                    let _ = st.store.update_with(&def, None, &name, |o| {
                        remove_finalizer(o, FINALIZER);
                        managed(o, None, Utc::now());
                        Ok(())
                    });
                });
            }
        }
    });
}

fn identifiers(o: &Value) -> Vec<String> {
    o["status"]["expStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resStatuses"].as_array())
        .flatten()
        .filter_map(|r| r["identifier"].as_str().map(str::to_string))
        .collect()
}

fn matcher(exp: &Value, name: &str) -> Vec<String> {
    exp["matchers"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .and_then(|m| m["value"].as_array())
        .map(|vs| {
            vs.iter()
                .filter_map(Value::as_str)
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `Initialized → Running/Error`: resolves every experiment's matchers against the pods.
fn create(pods: &[Value], o: &mut Value, now: DateTime<Utc>) -> Option<&'static str> {
    if o["metadata"]["deletionTimestamp"].is_string() || o["status"]["phase"] != "Initialized" {
        return None;
    }
    let mut any_ok = false;
    let mut statuses = Vec::new();
    for exp in o["spec"]["experiments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let names = matcher(&exp, "names");
        let namespaces = matcher(&exp, "namespace");
        let containers = matcher(&exp, "container-names");
        let labels = LabelSelector::parse(&matcher(&exp, "labels").join(",")).unwrap_or_default();
        let mut res = Vec::new();
        for p in pods.iter() {
            let (pns, pname) = (
                p["metadata"]["namespace"].as_str().unwrap_or(""),
                p["metadata"]["name"].as_str().unwrap_or(""),
            );
            if (!namespaces.is_empty() && !namespaces.iter().any(|n| n == pns))
                || (!names.is_empty() && !names.iter().any(|n| n == pname))
                || !labels.matches(p.pointer("/metadata/labels"))
            {
                continue;
            }
            let node = p["spec"]["nodeName"].as_str().unwrap_or("");
            for c in p["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let cname = c["name"].as_str().unwrap_or("");
                if !containers.is_empty() && !containers.iter().any(|x| x == cname) {
                    continue;
                }
                res.push(json!({
                    "id": random_hex(16), "kind": "container", "state": "Success", "success": true,
                    "identifier": format!("{pns}/{node}/{pname}/{cname}"),
                }));
            }
        }
        let mut status =
            json!({"scope": exp["scope"], "target": exp["target"], "action": exp["action"]});
        if res.is_empty() {
            status["success"] = json!(false);
            status["state"] = json!("Error");
            status["error"] = json!(format!(
                "can not find pods by namespace {:?}, names {:?}, labels {:?}, container-names {:?}",
                namespaces, names, matcher(&exp, "labels"), containers
            ));
        } else {
            any_ok = true;
            status["success"] = json!(true);
            status["state"] = json!("Success");
            status["resStatuses"] = json!(res);
        }
        statuses.push(status);
    }
    o["status"] =
        json!({"phase": if any_ok { "Running" } else { "Error" }, "expStatuses": statuses});
    managed(o, Some("status"), now);
    any_ok.then_some("Apply")
}

/// `finalizeChaosBlade` when every `Executor.Destroy` succeeds.
fn destroy(_pods: &[Value], o: &mut Value, now: DateTime<Utc>) -> Option<&'static str> {
    let was_running = o["status"]["phase"] == "Running";
    o["status"]["phase"] = json!("Destroyed");
    if let Some(exps) = o["status"]["expStatuses"].as_array_mut() {
        for e in exps {
            e["state"] = json!("Destroyed");
            e["success"] = json!(true);
            if let Some(res) = e["resStatuses"].as_array_mut() {
                for r in res {
                    r["state"] = json!("Destroyed");
                }
            }
        }
    }
    managed(o, Some("status"), now);
    // The finalizer goes in the next reconcile (see `later`); a blade that never ran has
    // nothing to recover but still leaves the same way.
    if was_running {
        Some("Recover")
    } else {
        remove_finalizer(o, FINALIZER);
        None
    }
}

/// `finalizeChaosBlade` when `Executor.Destroy` fails: `Destroying`, finalizer kept.
fn destroy_fails(_pods: &[Value], o: &mut Value, now: DateTime<Utc>) -> Option<&'static str> {
    o["status"]["phase"] = json!("Destroying");
    if let Some(exps) = o["status"]["expStatuses"].as_array_mut() {
        for e in exps {
            e["state"] = json!("Error");
            e["success"] = json!(false);
            e["error"] = json!("destroy experiment failed: the java agent did not answer");
        }
    }
    managed(o, Some("status"), now);
    None
}
