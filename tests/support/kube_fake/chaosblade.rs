//! A fake chaosblade-operator for the cluster-scoped `chaosblades.chaosblade.io`:
//! created → `Initialized` (+ finalizer) → after `delays.blade` `Running` with per-container
//! `resStatuses`, or `Error` when no pod matches; deleted → `Destroying` → `Destroyed`, finalizer
//! removed, gone.

use std::sync::Arc;

use serde_json::{json, Value};

use super::discovery::ResourceDef;
use super::selectors::LabelSelector;
use super::store::{add_finalizer, remove_finalizer, Change};
use super::util::random_hex;
use super::Shared;

pub const FINALIZER: &str = "finalizer.chaosblade.io";

pub fn on_change(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    match change {
        Change::Created(obj) => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            set(shared, def, &name, |o| {
                add_finalizer(o, FINALIZER);
                o["status"] = json!({"phase": "Initialized", "expStatuses": []});
            });
            later(shared, def, &name, run);
        }
        Change::Deleting(obj) => {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            set(shared, def, &name, |o| {
                o["status"]["phase"] = json!("Destroying")
            });
            later(shared, def, &name, |_pods, o| {
                o["status"]["phase"] = json!("Destroyed");
                if let Some(exps) = o["status"]["expStatuses"].as_array_mut() {
                    for e in exps {
                        e["state"] = json!("Destroyed");
                        if let Some(res) = e["resStatuses"].as_array_mut() {
                            for r in res {
                                r["state"] = json!("Destroyed");
                            }
                        }
                    }
                }
                remove_finalizer(o, FINALIZER);
            });
        }
        _ => {}
    }
}

fn set(shared: &Arc<Shared>, def: &ResourceDef, name: &str, f: impl FnOnce(&mut Value)) {
    shared.mutate(|st| {
        let _ = st.store.update_with(def, None, name, |o| {
            f(o);
            Ok(())
        });
    });
}

/// Runs `f(pods, blade)` after `delays.blade`, under the store lock.
fn later(shared: &Arc<Shared>, def: &ResourceDef, name: &str, f: fn(&[Value], &mut Value)) {
    let (shared, def, name) = (shared.clone(), def.clone(), name.to_string());
    let rt = shared.rt.clone();
    rt.spawn(async move {
        tokio::time::sleep(shared.delays.blade).await;
        let pods_def = shared.def("", "pods").expect("pods").clone();
        shared.mutate(|st| {
            let pods = st.store.all(&pods_def, None);
            let _ = st.store.update_with(&def, None, &name, |o| {
                f(&pods, o);
                Ok(())
            });
        });
    });
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

/// Resolves every experiment's matchers against the pods and sets Running or Error.
fn run(pods: &[Value], o: &mut Value) {
    if o["metadata"]["deletionTimestamp"].is_string() {
        return;
    }
    let mut all_ok = true;
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
                    "identifier": format!("{pns}/{node}/{pname}/{cname}/{}/", random_hex(12)),
                }));
            }
        }
        let base = json!({"scope": exp["scope"], "target": exp["target"], "action": exp["action"]});
        let mut status = base;
        if res.is_empty() {
            all_ok = false;
            status["success"] = json!(false);
            status["state"] = json!("Error");
            status["error"] = json!(format!(
                "can not find pods by namespace {:?}, names {:?}, labels {:?}, container-names {:?}",
                namespaces, names, matcher(&exp, "labels"), containers
            ));
            status["resStatuses"] = json!([]);
        } else {
            status["success"] = json!(true);
            status["state"] = json!("Success");
            status["resStatuses"] = json!(res);
        }
        statuses.push(status);
    }
    o["status"] = json!({"phase": if all_ok && !statuses.is_empty() { "Running" } else { "Error" }, "expStatuses": statuses});
}
