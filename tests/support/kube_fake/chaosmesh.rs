//! A fake Chaos Mesh controller. After `delays.chaos_inject` it resolves `spec.selector`
//! against the pods and writes the status the real controller writes (no status subresource:
//! it is part of the object), adds the `chaos-mesh/records` finalizer, and emits Events.
//! Deletion recovers every record after `delays.chaos_recover`, then drops the finalizer —
//! unless `recovery_hangs`, in which case only the annotation
//! `chaos-mesh.chaos-mesh.org/cleanFinalizer: forced` releases it.
//! Schedules (`@every <duration>`) create children of `spec.type` on each tick.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::controller::record_event;
use super::discovery::{ResourceDef, CHAOS_MESH_GROUP};
use super::selectors::LabelSelector;
use super::store::{add_finalizer, remove_finalizer, Change};
use super::util::{parse_go_duration, rfc3339};
use super::{ChaosTimestamp, Shared, State};

pub const FINALIZER: &str = "chaos-mesh/records";
pub const PAUSE_ANNOTATION: &str = "experiment.chaos-mesh.org/pause";
pub const CLEAN_FINALIZER_ANNOTATION: &str = "chaos-mesh.chaos-mesh.org/cleanFinalizer";

/// Schedule `spec.type` → (plural, field holding the embedded spec).
pub fn schedule_type(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "StressChaos" => ("stresschaos", "stressChaos"),
        "NetworkChaos" => ("networkchaos", "networkChaos"),
        "PodChaos" => ("podchaos", "podChaos"),
        "IOChaos" => ("iochaos", "ioChaos"),
        "HTTPChaos" => ("httpchaos", "httpChaos"),
        "DNSChaos" => ("dnschaos", "dnsChaos"),
        _ => return None,
    })
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

fn is_paused(obj: &Value) -> bool {
    annotation(obj, PAUSE_ANNOTATION) == Some("true")
}

fn is_deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

fn is_pod_kill(def: &ResourceDef, obj: &Value) -> bool {
    def.plural == "podchaos" && obj["spec"]["action"] == "pod-kill"
}

/// Kinds whose records are per container (`ns/pod/container`).
fn container_level(def: &ResourceDef, obj: &Value) -> bool {
    matches!(def.plural, "stresschaos" | "iochaos")
        || (def.plural == "podchaos" && obj["spec"]["action"] == "container-kill")
}

pub fn on_chaos_change(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    match change {
        Change::Created(obj) => schedule_reconcile(shared, def, obj, shared.delays.chaos_inject),
        Change::Updated { old, new } => {
            if is_deleting(new) && annotation(new, CLEAN_FINALIZER_ANNOTATION) == Some("forced") {
                // Forced cleanup: the finalizer goes at once, records stay as they are.
                force_clean(shared, def, new);
            } else if !is_deleting(new) && is_paused(old) != is_paused(new) {
                schedule_reconcile(shared, def, new, shared.delays.chaos_inject);
            }
        }
        Change::Deleting(obj) => {
            if annotation(obj, CLEAN_FINALIZER_ANNOTATION) == Some("forced") {
                force_clean(shared, def, obj);
            } else if !shared.recovery_hangs {
                schedule_reconcile(shared, def, obj, shared.delays.chaos_recover);
            }
        }
        Change::Deleted(_) => {}
    }
}

fn force_clean(shared: &Arc<Shared>, def: &ResourceDef, obj: &Value) {
    let (ns, name) = (
        meta_str(obj, "namespace").to_string(),
        meta_str(obj, "name").to_string(),
    );
    shared.mutate(|st| {
        let _ = st.store.update_with(def, Some(&ns), &name, |o| {
            remove_finalizer(o, FINALIZER);
            Ok(())
        });
    });
}

fn schedule_reconcile(shared: &Arc<Shared>, def: &ResourceDef, obj: &Value, delay: Duration) {
    let (shared, def) = (shared.clone(), def.clone());
    let ns = meta_str(obj, "namespace").to_string();
    let name = meta_str(obj, "name").to_string();
    let uid = meta_str(obj, "uid").to_string();
    let rt = shared.rt.clone();
    rt.spawn(async move {
        tokio::time::sleep(delay).await;
        reconcile(&shared, &def, &ns, &name, &uid);
    });
}

/// Pods selected by `spec.selector` + `spec.mode`, as (namespace, name, containers).
fn select(shared: &Shared, st: &State, obj: &Value) -> Vec<(String, String, Vec<String>)> {
    let pods_def = shared.def("", "pods").expect("pods").clone();
    let sel = &obj["spec"]["selector"];
    let own_ns = meta_str(obj, "namespace");
    let mut pods: Vec<Value> = if let Some(by_ns) = sel["pods"].as_object() {
        by_ns
            .iter()
            .flat_map(|(ns, names)| {
                names
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map({
                        let pods_def = pods_def.clone();
                        move |n| st.store.peek(&pods_def, Some(ns), n.as_str()?).cloned()
                    })
            })
            .collect()
    } else {
        let namespaces: Vec<String> = match sel["namespaces"].as_array() {
            Some(a) if !a.is_empty() => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec![own_ns.to_string()],
        };
        let labels = LabelSelector::from_map(
            sel["labelSelectors"]
                .as_object()
                .unwrap_or(&Default::default()),
        )
        .with_expressions(
            sel["expressionSelectors"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        let phases: Vec<&str> = sel["podPhaseSelectors"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        st.store
            .all(&pods_def, None)
            .into_iter()
            .filter(|p| {
                namespaces
                    .iter()
                    .any(|n| p["metadata"]["namespace"] == n.as_str())
            })
            .filter(|p| labels.matches(p.pointer("/metadata/labels")))
            .filter(|p| phases.is_empty() || phases.iter().any(|ph| p["status"]["phase"] == *ph))
            .collect()
    };
    pods.retain(|p| !is_deleting(p));
    let n = pods.len();
    // `value` is a string in the CRD ("2", "50"); accept a number too.
    let value: usize = match &obj["spec"]["value"] {
        Value::String(v) => v.trim().parse().unwrap_or(0),
        v => v.as_u64().unwrap_or(0) as usize,
    };
    let take = match obj["spec"]["mode"].as_str().unwrap_or("one") {
        "all" => n,
        "fixed" => value.min(n),
        "fixed-percent" => n * value.min(100) / 100,
        "random-max-percent" => n * fastrand::usize(0..=value.min(100)) / 100,
        _ => n.min(1),
    };
    fastrand::shuffle(&mut pods);
    pods.truncate(take);
    pods.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    let wanted: Vec<String> = obj["spec"]["containerNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    pods.into_iter()
        .map(|p| {
            let containers: Vec<String> = p["spec"]["containers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let containers = if wanted.is_empty() {
                containers
            } else {
                containers
                    .into_iter()
                    .filter(|c| wanted.contains(c))
                    .collect()
            };
            (
                meta_str(&p, "namespace").to_string(),
                meta_str(&p, "name").to_string(),
                containers,
            )
        })
        .collect()
}

fn conditions(records: &[Value], paused: bool) -> Value {
    let selected = !records.is_empty();
    let all = |phase: &str| selected && records.iter().all(|r| r["phase"] == phase);
    let cond = |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }, "reason": ""});
    json!([
        cond("Selected", selected),
        cond("AllInjected", all("Injected")),
        cond("AllRecovered", all("Not Injected")),
        cond("Paused", paused),
    ])
}

fn push_record_event(record: &mut Value, operation: &str, at: DateTime<Utc>) {
    let mut events = record["events"].as_array().cloned().unwrap_or_default();
    events.push(json!({"type": "Succeeded", "operation": operation, "timestamp": rfc3339(at)}));
    record["events"] = Value::Array(events);
}

/// Brings one chaos object's status to what its spec, annotations and deletion state ask for.
fn reconcile(shared: &Arc<Shared>, def: &ResourceDef, ns: &str, name: &str, uid: &str) {
    let mut timeline = Vec::new();
    let mut kills = Vec::new();
    shared.mutate(|st| {
        let Some(obj) = st.store.peek(def, Some(ns), name).cloned() else { return };
        if meta_str(&obj, "uid") != uid {
            return;
        }
        let now = Utc::now();
        let deleting = is_deleting(&obj);
        let paused = is_paused(&obj);
        let duration = obj["spec"]["duration"].as_str().and_then(parse_go_duration);
        let created: Option<DateTime<Utc>> = meta_str(&obj, "creationTimestamp").parse().ok();
        let expired = !is_pod_kill(def, &obj)
            && matches!((duration, created), (Some(d), Some(c)) if now >= c + chrono::Duration::from_std(d).unwrap_or_default());
        let run = !(deleting || paused || expired);
        // Like the records controller: select while there are no records (a failed selection
        // leaves `containerRecords` unset and is retried on the next reconcile).
        let first_time = obj["status"]["experiment"]["containerRecords"].is_null() && !deleting;
        let has_finalizer = obj["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().any(|x| x == FINALIZER));
        let mut records: Vec<Value> = obj["status"]["experiment"]["containerRecords"].as_array().cloned().unwrap_or_default();
        let mut k8s_events: Vec<(&str, String, &str)> = Vec::new();
        if !has_finalizer && !deleting {
            k8s_events.push(("FinalizerInited", "Finalizer has been inited".into(), "Normal"));
        }
        if first_time {
            let targets = select(shared, st, &obj);
            if targets.is_empty() {
                k8s_events.push(("Failed", "Failed to select targets: no target has been selected".into(), "Warning"));
            }
            for (pns, pod, containers) in targets {
                let ids: Vec<String> = if container_level(def, &obj) {
                    containers.iter().map(|c| format!("{pns}/{pod}/{c}")).collect()
                } else {
                    vec![format!("{pns}/{pod}")]
                };
                for id in ids {
                    records.push(json!({"id": id, "selectorKey": ".", "phase": "Not Injected", "injectedCount": 0, "recoveredCount": 0, "events": []}));
                }
                if run && is_pod_kill(def, &obj) {
                    kills.push((pns.clone(), pod.clone()));
                }
            }
        }
        for r in records.iter_mut() {
            let id = r["id"].as_str().unwrap_or("").to_string();
            let (op, phase, counter) = match (run, r["phase"].as_str()) {
                (true, Some("Not Injected")) => ("Apply", "Injected", "injectedCount"),
                (false, Some("Injected")) => ("Recover", "Not Injected", "recoveredCount"),
                _ => continue,
            };
            push_record_event(r, op, now);
            r["phase"] = json!(phase);
            r[counter] = json!(r[counter].as_i64().unwrap_or(0) + 1);
            let verb = if op == "Apply" { "apply" } else { "recover" };
            k8s_events.push((if op == "Apply" { "Applied" } else { "Recovered" }, format!("Successfully {verb} chaos for {id}"), "Normal"));
            timeline.push(ChaosTimestamp {
                kind: def.kind.to_string(),
                namespace: ns.to_string(),
                name: name.to_string(),
                target: id,
                operation: op.to_string(),
                at: now,
            });
        }
        let all_recovered = records.iter().all(|r| r["phase"] != "Injected");
        let status = json!({
            "conditions": conditions(&records, paused),
            "experiment": {"desiredPhase": if run { "Run" } else { "Stop" }},
        });
        let mut status = status;
        if !records.is_empty() {
            status["experiment"]["containerRecords"] = json!(records);
        }
        let updated = st.store.update_with(def, Some(ns), name, |o| {
            o["status"] = status;
            if deleting {
                if all_recovered {
                    remove_finalizer(o, FINALIZER);
                }
            } else {
                add_finalizer(o, FINALIZER);
            }
            Ok(())
        });
        let about = updated.unwrap_or(obj);
        for (reason, message, type_) in k8s_events {
            record_event(&mut st.store, &about, reason, &message, type_, "chaos-controller-manager");
        }
    });
    shared
        .chaos_timeline
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(timeline);
    if let Some(pods_def) = shared.def("", "pods").cloned() {
        for (pns, pod) in kills {
            // pod-kill: the pod goes away at once (grace period 0); its workload replaces it.
            shared.mutate(|st| {
                let _ = st.store.delete(&pods_def, Some(&pns), &pod);
            });
        }
    }
    // A finite `duration` ends the experiment: recover when it elapses.
    let obj = shared
        .def(CHAOS_MESH_GROUP, def.plural)
        .and_then(|d| shared.lock().store.peek(d, Some(ns), name).cloned());
    if let Some(obj) = obj {
        if !is_deleting(&obj)
            && !is_pod_kill(def, &obj)
            && obj["status"]["experiment"]["desiredPhase"] == "Run"
        {
            if let (Some(d), Ok(c)) = (
                obj["spec"]["duration"].as_str().and_then(parse_go_duration),
                meta_str(&obj, "creationTimestamp").parse::<DateTime<Utc>>(),
            ) {
                let remaining = (c + chrono::Duration::from_std(d).unwrap_or_default()
                    - Utc::now())
                .to_std()
                .unwrap_or_default();
                schedule_reconcile(shared, def, &obj, remaining + Duration::from_millis(1000));
            }
        }
    }
}

pub fn on_schedule_change(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    match change {
        Change::Created(obj) => start_schedule(shared, def, obj),
        Change::Deleted(obj) => {
            // Children go with their schedule (each through its own finalizer/recovery).
            let uid = meta_str(obj, "uid").to_string();
            let ns = meta_str(obj, "namespace").to_string();
            let children: Vec<(ResourceDef, String)> = {
                let st = shared.lock();
                shared
                    .defs
                    .iter()
                    .filter(|d| d.group == CHAOS_MESH_GROUP && schedule_type(d.kind).is_some())
                    .flat_map(|d| {
                        st.store
                            .all(d, Some(&ns))
                            .into_iter()
                            .filter(|c| {
                                c["metadata"]["ownerReferences"]
                                    .as_array()
                                    .is_some_and(|o| o.iter().any(|r| r["uid"] == uid.as_str()))
                            })
                            .map(|c| (d.clone(), meta_str(&c, "name").to_string()))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            for (d, child) in children {
                shared.mutate(|st| {
                    let _ = st.store.delete(&d, Some(&ns), &child);
                });
            }
        }
        _ => {}
    }
}

fn start_schedule(shared: &Arc<Shared>, def: &ResourceDef, obj: &Value) {
    let ns = meta_str(obj, "namespace").to_string();
    let name = meta_str(obj, "name").to_string();
    let uid = meta_str(obj, "uid").to_string();
    let every = obj["spec"]["schedule"]
        .as_str()
        .and_then(|s| s.strip_prefix("@every "))
        .and_then(parse_go_duration);
    let Some(every) = every.filter(|d| !d.is_zero()) else {
        shared.mutate(|st| {
            record_event(
                &mut st.store,
                obj,
                "Failed",
                "the fake Chaos Mesh supports only `@every <duration>` schedules",
                "Warning",
                "chaos-controller-manager",
            )
        });
        return;
    };
    let (shared, def) = (shared.clone(), def.clone());
    let rt = shared.rt.clone();
    rt.spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticker.tick().await;
            if !tick(&shared, &def, &ns, &name, &uid) {
                return;
            }
        }
    });
}

/// One schedule tick; false once the schedule is gone.
fn tick(shared: &Arc<Shared>, def: &ResourceDef, ns: &str, name: &str, uid: &str) -> bool {
    shared.mutate(|st| {
        let Some(sched) = st.store.peek(def, Some(ns), name).cloned() else { return false };
        if meta_str(&sched, "uid") != uid || is_deleting(&sched) {
            return false;
        }
        if is_paused(&sched) {
            return true;
        }
        let kind = sched["spec"]["type"].as_str().unwrap_or("");
        let Some((plural, field)) = schedule_type(kind) else { return true };
        let Some(child_def) = shared.def(CHAOS_MESH_GROUP, plural).cloned() else { return true };
        let live: Vec<Value> = st
            .store
            .all(&child_def, Some(ns))
            .into_iter()
            .filter(|c| c["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|r| r["uid"] == uid)))
            .collect();
        // concurrencyPolicy Forbid (the default): no new run while one is still running.
        let forbid = sched["spec"]["concurrencyPolicy"].as_str().unwrap_or("Forbid") == "Forbid";
        let running = live.iter().any(|c| {
            !(c["spec"]["action"] == "pod-kill") && c["status"]["experiment"]["desiredPhase"] != "Stop" && !is_deleting(c)
        });
        let mut active = live.clone();
        if !(forbid && running) {
            let child = json!({
                "apiVersion": child_def.api_version(),
                "kind": child_def.kind,
                "metadata": {
                    "name": format!("{name}-{}", super::util::random_suffix()),
                    "labels": {"chaos-mesh.org/controlled-by": name},
                    "ownerReferences": [{"apiVersion": def.api_version(), "kind": "Schedule", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": sched["spec"][field].clone(),
            });
            if let Ok(c) = st.store.create(&child_def, Some(ns), child) {
                active.push(c);
            }
        }
        let refs: Vec<Value> = active
            .iter()
            .map(|c| json!({"apiVersion": c["apiVersion"], "kind": c["kind"], "name": c["metadata"]["name"], "namespace": ns, "uid": c["metadata"]["uid"], "resourceVersion": c["metadata"]["resourceVersion"]}))
            .collect();
        let _ = st.store.update_with(def, Some(ns), name, |o| {
            o["status"] = json!({"active": refs, "time": rfc3339(Utc::now())});
            Ok(())
        });
        true
    })
}
