//! A fake Chaos Mesh controller manager, modelled on the upstream reconcilers
//! (chaos-mesh/chaos-mesh, read at 608b61e). Every rule below names the file and function it
//! copies, so the next reader can check it.
//!
//! Chaos kinds run the pipeline of controllers/common/step.go `AllSteps`, one step after the
//! other, each reading the object afresh and writing it back on its own:
//! 1. controllers/common/finalizers/controller.go `InitReconciler.Reconcile`: adds
//!    `chaos-mesh/records` (event `FinalizerInited`).
//! 2. controllers/common/desiredphase/controller.go `CalcDesiredPhase`: `Stop` when deleted,
//!    `Run` for one-shot kinds (pod-kill, container-kill), `Stop` once `duration` is up or when
//!    paused, else `Run`; requeues when the duration ends.
//! 3. controllers/common/condition/controller.go `diffConditions`: the four conditions are
//!    recomputed from the records on every pass. With no records yet they are all `False` —
//!    the transient state every new object shows — and they lag the records by one pass.
//! 4. controllers/common/records/controller.go `Reconciler.Reconcile`: with no records it
//!    selects targets; a selector error or an empty result emits a `Failed` Event (activity
//!    `select targets`) and returns without requeueing, leaving the records unset. Otherwise
//!    each record is applied or recovered towards `desiredPhase` (taking `delays.chaos_inject`
//!    / `chaos_recover`, the chaos-daemon round trip), its `events` get a Succeeded/Failed
//!    entry, and Events `Applied`/`Recovered` ("Successfully apply chaos for <id>") are
//!    emitted. A failed Apply requeues.
//! 5. controllers/common/finalizers/controller.go `CleanReconciler.Reconcile`: once deleted,
//!    drops the finalizers when every record is `Not Injected` or the object carries
//!    `chaos-mesh.chaos-mesh.org/cleanFinalizer: forced` (event reason `FinalizerInited`,
//!    "Finalizer has been removed": upstream reuses the reason).
//!
//! Events carry the recorder's annotations (controllers/utils/recorder/annotations.go
//! `generateAnnotations`: `chaos-mesh.org/type`, `chaos-mesh.org/activity`, …). Reconciles of
//! one object never overlap and changes during one are coalesced into one more pass
//! (controller-runtime's work queue).
//!
//! pod-kill (controllers/chaosimpl/podchaos/podkill/impl.go): Apply deletes the pod and the
//! record becomes `Injected` at once; Recover does nothing but mark it `Not Injected`.
//!
//! `recovery_hangs`: Recover returns without error but leaves the record `Injected` (a daemon
//! that never undoes the fault), so only the forced-clean annotation releases the finalizer.
//!
//! Schedules (`@every <duration>` only) follow controllers/schedule: cron/controller.go spawns
//! one child per tick named `<schedule>-<5 chars>` (`names.SimpleNameGenerator`), labelled
//! `managed-by: <schedule>`, owned by the schedule (controller, blockOwnerDeletion), emits
//! `Spawned` ("Create new object: <name>") and sets `status.time`; with
//! `concurrencyPolicy: Forbid` an unfinished child (controllers/utils/controller/finished.go
//! `IsChaosFinished`) forbids the spawn (event `Forbid`); active/controller.go lists the
//! children into `status.active` sorted by name; gc/controller.go deletes the oldest finished
//! children beyond `historyLimit` (unset means 0: every finished child goes). Deleting a
//! schedule leaves its children to the Kubernetes garbage collector (background propagation),
//! each then going through its own finalizer.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::controller::record_event_annotated;
use super::discovery::{ResourceDef, CHAOS_MESH_GROUP};
use super::selectors::LabelSelector;
use super::store::{add_finalizer, remove_finalizer, Change};
use super::util::{parse_go_duration, rfc3339};
use super::{ChaosTimestamp, Shared, State};

pub const FINALIZER: &str = "chaos-mesh/records";
pub const PAUSE_ANNOTATION: &str = "experiment.chaos-mesh.org/pause";
pub const CLEAN_FINALIZER_ANNOTATION: &str = "chaos-mesh.chaos-mesh.org/cleanFinalizer";
/// api/v1alpha1/common_types.go `LabelManagedBy`.
pub const MANAGED_BY: &str = "managed-by";
/// controllers/config: `MaxEvents` per record.
const MAX_RECORD_EVENTS: usize = 10;

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

/// api/v1alpha1/zz_generated.chaosmesh.go `PodChaos.IsOneShot`.
fn is_one_shot(def: &ResourceDef, obj: &Value) -> bool {
    def.plural == "podchaos"
        && matches!(
            obj["spec"]["action"].as_str(),
            Some("pod-kill" | "container-kill")
        )
}

fn is_pod_kill(def: &ResourceDef, obj: &Value) -> bool {
    def.plural == "podchaos" && obj["spec"]["action"] == "pod-kill"
}

/// Kinds whose records are per container (`ns/pod/container`).
fn container_level(def: &ResourceDef, obj: &Value) -> bool {
    matches!(def.plural, "stresschaos" | "iochaos")
        || (def.plural == "podchaos" && obj["spec"]["action"] == "container-kill")
}

fn records_of(obj: &Value) -> Option<Vec<Value>> {
    obj["status"]["experiment"]["containerRecords"]
        .as_array()
        .cloned()
}

/// One Event as controllers/utils/recorder/recorder.go `chaosRecorder.Event` writes it.
struct ChaosEvent {
    type_: &'static str,
    reason: &'static str,
    message: String,
    /// The event struct's name and fields, for the annotations.
    name: &'static str,
    fields: Vec<(&'static str, String)>,
}

impl ChaosEvent {
    fn new(type_: &'static str, reason: &'static str, name: &'static str, message: String) -> Self {
        ChaosEvent {
            type_,
            reason,
            message,
            name,
            fields: Vec::new(),
        }
    }

    fn field(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.fields.push((k, v.into()));
        self
    }

    /// recorder/error.go `Failed`.
    fn failed(activity: &str, err: &str) -> Self {
        ChaosEvent::new(
            "Warning",
            "Failed",
            "failed",
            format!("Failed to {activity}: {err}"),
        )
        .field("activity", activity)
        .field("err", err)
    }
}

fn emit(st: &mut State, about: &Value, component: &str, ev: ChaosEvent) {
    let mut ann = serde_json::Map::new();
    for (k, v) in ev.fields {
        ann.insert(format!("chaos-mesh.org/{k}"), json!(v));
    }
    ann.insert("chaos-mesh.org/type".into(), json!(ev.name));
    record_event_annotated(
        &mut st.store,
        about,
        ev.reason,
        &ev.message,
        ev.type_,
        component,
        Value::Object(ann),
    );
}

pub fn on_chaos_change(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    let obj = match change {
        Change::Created(o) | Change::Deleting(o) => o,
        Change::Updated { new, .. } => new,
        Change::Deleted(o) => {
            schedule_owner_changed(shared, o);
            return;
        }
    };
    enqueue(
        shared,
        def,
        meta_str(obj, "namespace"),
        meta_str(obj, "name"),
        shared.delays.chaos_reconcile,
    );
    schedule_owner_changed(shared, obj);
}

/// The schedule controllers `Owns` their children: a child's change reconciles its schedule
/// (active list and history GC).
fn schedule_owner_changed(shared: &Arc<Shared>, child: &Value) {
    let Some(owner) = child["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|o| o.iter().find(|r| r["kind"] == "Schedule"))
    else {
        return;
    };
    let ns = meta_str(child, "namespace").to_string();
    let name = owner["name"].as_str().unwrap_or("").to_string();
    let shared2 = shared.clone();
    shared.rt.spawn(async move {
        tokio::time::sleep(shared2.delays.chaos_reconcile).await;
        schedule_active_and_gc(&shared2, &ns, &name);
    });
}

/// controller-runtime's work queue: one reconcile per object at a time; changes that arrive
/// meanwhile make one more pass.
fn enqueue(shared: &Arc<Shared>, def: &ResourceDef, ns: &str, name: &str, after: Duration) {
    let (shared, def, ns, name) = (
        shared.clone(),
        def.clone(),
        ns.to_string(),
        name.to_string(),
    );
    let rt = shared.rt.clone();
    rt.spawn(async move {
        tokio::time::sleep(after).await;
        let key = (def.plural.to_string(), ns.clone(), name.clone());
        {
            let mut q = shared.chaos_queue.lock().unwrap_or_else(|e| e.into_inner());
            let e = q.entry(key.clone()).or_insert((false, false));
            if e.0 {
                e.1 = true;
                return;
            }
            e.0 = true;
        }
        loop {
            if let Some(later) = pipeline(&shared, &def, &ns, &name).await {
                enqueue(&shared, &def, &ns, &name, later);
            }
            let mut q = shared.chaos_queue.lock().unwrap_or_else(|e| e.into_inner());
            match q.get_mut(&key) {
                Some(e) if e.1 => e.1 = false,
                _ => {
                    q.remove(&key);
                    return;
                }
            }
        }
    });
}

fn peek(shared: &Arc<Shared>, def: &ResourceDef, ns: &str, name: &str) -> Option<Value> {
    shared.lock().store.peek(def, Some(ns), name).cloned()
}

/// desiredphase/controller.go `CalcDesiredPhase`: the phase, the event of a change, and when
/// to look again (the duration's end).
fn desired_phase(
    def: &ResourceDef,
    obj: &Value,
    now: DateTime<Utc>,
) -> (&'static str, Option<ChaosEvent>, Option<Duration>) {
    let current = obj["status"]["experiment"]["desiredPhase"]
        .as_str()
        .unwrap_or("");
    let ev = |phase: &str, reason: &'static str, name: &'static str, msg: &str| {
        (current != phase).then(|| ChaosEvent::new("Normal", reason, name, msg.to_string()))
    };
    if is_deleting(obj) {
        return (
            "Stop",
            ev("Stop", "Deleted", "deleted", "Experiment has been deleted"),
            None,
        );
    }
    if is_one_shot(def, obj) {
        return ("Run", None, None);
    }
    let duration = obj["spec"]["duration"].as_str().and_then(parse_go_duration);
    let created: Option<DateTime<Utc>> = meta_str(obj, "creationTimestamp").parse().ok();
    let mut until_stop = None;
    if let (Some(d), Some(c)) = (duration, created) {
        let end = c + chrono::Duration::from_std(d).unwrap_or_default();
        if now >= end {
            return (
                "Stop",
                ev(
                    "Stop",
                    "TimeUp",
                    "time-up",
                    "Time up according to the duration",
                ),
                None,
            );
        }
        until_stop = (end - now).to_std().ok();
    }
    if is_paused(obj) {
        return (
            "Stop",
            ev("Stop", "Paused", "paused", "Experiment has been paused"),
            until_stop,
        );
    }
    (
        "Run",
        ev("Run", "Started", "started", "Experiment has started"),
        until_stop,
    )
}

/// condition/controller.go `diffConditions`.
fn conditions(records: Option<&[Value]>, paused: bool) -> Value {
    let every = |phase: &str| records.is_some_and(|r| r.iter().all(|r| r["phase"] == phase));
    let cond = |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }});
    json!([
        cond("Selected", records.is_some()),
        cond("AllInjected", every("Injected")),
        cond("AllRecovered", every("Not Injected")),
        cond("Paused", paused),
    ])
}

/// The operation records/controller.go `Reconcile` picks for a record.
fn operation(desired: &str, phase: &str) -> Option<&'static str> {
    match (desired, phase) {
        ("Run", p) if p != "Injected" => Some(if p.starts_with("Not Injected") {
            "Apply"
        } else {
            "Recover"
        }),
        ("Stop", p) if p != "Not Injected" => Some(if p.starts_with("Not Injected") {
            "Apply"
        } else {
            "Recover"
        }),
        _ => None,
    }
}

fn push_record_event(
    record: &mut Value,
    type_: &str,
    operation: &str,
    message: Option<&str>,
    at: DateTime<Utc>,
) {
    let mut events = record["events"].as_array().cloned().unwrap_or_default();
    if events.len() >= MAX_RECORD_EVENTS {
        events.remove(0);
    }
    let mut e = json!({"type": type_, "operation": operation, "timestamp": rfc3339(at)});
    if let Some(m) = message {
        e["message"] = json!(m);
    }
    events.push(e);
    record["events"] = Value::Array(events);
}

/// One pass of controllers/common/step.go `AllSteps`; returns when to requeue.
async fn pipeline(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    ns: &str,
    name: &str,
) -> Option<Duration> {
    let obj = peek(shared, def, ns, name)?;
    let uid = meta_str(&obj, "uid").to_string();
    // 1. finalizers.InitReconciler
    if !is_deleting(&obj) && !has_finalizer(&obj) {
        shared.mutate(|st| {
            if let Ok(o) = st.store.update_with(def, Some(ns), name, |o| {
                add_finalizer(o, FINALIZER);
                Ok(())
            }) {
                emit(
                    st,
                    &o,
                    "finalizers",
                    ChaosEvent::new(
                        "Normal",
                        "FinalizerInited",
                        "finalizer-inited",
                        "Finalizer has been inited".into(),
                    ),
                );
            }
        });
    }
    // 2. desiredphase.Reconciler
    let obj = peek(shared, def, ns, name)?;
    let (phase, ev, requeue) = desired_phase(def, &obj, Utc::now());
    if obj["status"]["experiment"]["desiredPhase"] != phase {
        shared.mutate(|st| {
            if let Ok(o) = st.store.update_with(def, Some(ns), name, |o| {
                o["status"]["experiment"]["desiredPhase"] = json!(phase);
                Ok(())
            }) {
                if let Some(ev) = ev {
                    emit(st, &o, "desiredphase", ev);
                }
            }
        });
    }
    // 3. condition.Reconciler
    write_conditions(shared, def, ns, name);
    // 4. records.Reconciler
    let obj = peek(shared, def, ns, name)?;
    let desired = obj["status"]["experiment"]["desiredPhase"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let records = records_of(&obj);
    let work = match &records {
        None => true,
        Some(r) => r
            .iter()
            .any(|r| operation(&desired, r["phase"].as_str().unwrap_or("")).is_some()),
    };
    let mut retry = None;
    if work {
        let recovering = desired == "Stop";
        tokio::time::sleep(if recovering {
            shared.delays.chaos_recover
        } else {
            shared.delays.chaos_inject
        })
        .await;
        match records_pass(shared, def, ns, name, &uid) {
            Pass::Done => {}
            Pass::Retry => retry = Some(Duration::from_secs(1)),
        }
        if retry.is_some() {
            // pipeline.go `Reconcile`: a requeue ends the pass before the later steps.
            return retry;
        }
    }
    // 5. finalizers.CleanReconciler
    let obj = peek(shared, def, ns, name)?;
    if is_deleting(&obj) && meta_str(&obj, "uid") == uid {
        let resumed = records_of(&obj)
            .unwrap_or_default()
            .iter()
            .all(|r| r["phase"] == "Not Injected");
        let forced = annotation(&obj, CLEAN_FINALIZER_ANNOTATION) == Some("forced");
        if forced || (resumed && has_finalizer(&obj)) {
            shared.mutate(|st| {
                let about = obj.clone();
                let _ = st.store.update_with(def, Some(ns), name, |o| {
                    o["metadata"]["finalizers"] = json!([]);
                    Ok(())
                });
                emit(
                    st,
                    &about,
                    "finalizers",
                    ChaosEvent::new(
                        "Normal",
                        "FinalizerInited",
                        "finalizer-removed",
                        "Finalizer has been removed".into(),
                    ),
                );
            });
        }
    }
    requeue
}

fn has_finalizer(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

fn write_conditions(shared: &Arc<Shared>, def: &ResourceDef, ns: &str, name: &str) {
    shared.mutate(|st| {
        let _ = st.store.update_with(def, Some(ns), name, |o| {
            let records = records_of(o);
            let want = conditions(records.as_deref(), is_paused(o));
            if o["status"]["conditions"] != want {
                o["status"]["conditions"] = want;
            }
            Ok(())
        });
    });
}

enum Pass {
    Done,
    Retry,
}

/// records/controller.go `Reconciler.Reconcile`, after the chaos-daemon round trip.
fn records_pass(shared: &Arc<Shared>, def: &ResourceDef, ns: &str, name: &str, uid: &str) -> Pass {
    let mut timeline = Vec::new();
    let mut kills = Vec::new();
    let pods_def = shared.def("", "pods").cloned();
    let pass = shared.mutate(|st| {
        let Some(obj) = st.store.peek(def, Some(ns), name).cloned() else { return Pass::Done };
        if meta_str(&obj, "uid") != uid {
            return Pass::Done;
        }
        let desired = obj["status"]["experiment"]["desiredPhase"].as_str().unwrap_or("").to_string();
        let mut changed = false;
        let mut records = match records_of(&obj) {
            Some(r) => r,
            None => {
                let targets = match select(shared, st, &obj) {
                    Ok(t) => t,
                    Err(e) => {
                        let msg = if shared.legacy_selection_message { "no target has been selected" } else { e };
                        emit(st, &obj, "records", ChaosEvent::failed("select targets", msg));
                        return Pass::Done;
                    }
                };
                let mut recs = Vec::new();
                for (pns, pod, containers) in targets {
                    let ids: Vec<String> = if container_level(def, &obj) {
                        containers.iter().map(|c| format!("{pns}/{pod}/{c}")).collect()
                    } else {
                        vec![format!("{pns}/{pod}")]
                    };
                    for id in ids {
                        recs.push(json!({"id": id, "selectorKey": ".", "phase": "Not Injected", "injectedCount": 0, "recoveredCount": 0}));
                    }
                }
                if recs.is_empty() {
                    emit(st, &obj, "records", ChaosEvent::failed("select targets", "no target has been selected"));
                    return Pass::Done;
                }
                changed = true;
                recs
            }
        };
        let now = Utc::now();
        let mut retry = false;
        let mut events = Vec::new();
        for r in records.iter_mut() {
            let id = r["id"].as_str().unwrap_or("").to_string();
            let phase = r["phase"].as_str().unwrap_or("").to_string();
            let Some(op) = operation(&desired, &phase) else { continue };
            if op == "Recover" && shared.recovery_hangs {
                continue;
            }
            if op == "Apply" && is_pod_kill(def, &obj) {
                let mut parts = id.splitn(2, '/');
                let (pns, pod) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let exists = pods_def.as_ref().is_some_and(|d| st.store.peek(d, Some(pns), pod).is_some());
                if !exists {
                    let err = format!("pods \"{pod}\" not found");
                    push_record_event(r, "Failed", "Apply", Some(&err), now);
                    events.push(ChaosEvent::failed("apply chaos", &err));
                    changed = true;
                    retry = true;
                    continue;
                }
                kills.push((pns.to_string(), pod.to_string()));
            }
            let (new_phase, counter) = if op == "Apply" { ("Injected", "injectedCount") } else { ("Not Injected", "recoveredCount") };
            r["phase"] = json!(new_phase);
            r[counter] = json!(r[counter].as_i64().unwrap_or(0) + 1);
            push_record_event(r, "Succeeded", op, None, now);
            events.push(if op == "Apply" {
                ChaosEvent::new("Normal", "Applied", "applied", format!("Successfully apply chaos for {id}")).field("id", id.clone())
            } else {
                ChaosEvent::new("Normal", "Recovered", "recovered", format!("Successfully recover chaos for {id}")).field("id", id.clone())
            });
            timeline.push(ChaosTimestamp {
                kind: def.kind.to_string(),
                namespace: ns.to_string(),
                name: name.to_string(),
                target: id,
                operation: op.to_string(),
                at: now,
                spec: obj["spec"].clone(),
            });
            changed = true;
        }
        if changed {
            let _ = st.store.update_with(def, Some(ns), name, |o| {
                o["status"]["experiment"]["containerRecords"] = json!(records);
                Ok(())
            });
        }
        for ev in events {
            emit(st, &obj, "records", ev);
        }
        if changed {
            emit(st, &obj, "records", ChaosEvent::new("Normal", "Updated", "updated", "Successfully update records of resource".into()).field("field", "records"));
        }
        if retry { Pass::Retry } else { Pass::Done }
    });
    shared
        .chaos_timeline
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(timeline);
    if let Some(pods_def) = pods_def {
        for (pns, pod) in kills {
            // podkill/impl.go `Apply`: delete the pod (grace period 0); its workload replaces it.
            shared.mutate(|st| {
                let _ = st.store.delete(&pods_def, Some(&pns), &pod);
            });
        }
    }
    pass
}

/// pkg/selector/pod/selector.go `SelectAndFilterPods`: the pods `spec.selector` matches
/// (`Err(ErrNoPodSelected)` when none), then `spec.mode` picks among them; as
/// (namespace, name, containers).
#[allow(clippy::type_complexity)]
fn select(
    shared: &Shared,
    st: &State,
    obj: &Value,
) -> Result<Vec<(String, String, Vec<String>)>, &'static str> {
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
    if n == 0 {
        return Err("no pod is selected");
    }
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
    Ok(pods
        .into_iter()
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
        .collect())
}

pub fn on_schedule_change(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    match change {
        Change::Created(obj) => start_schedule(shared, def, obj),
        Change::Deleted(obj) => {
            // The Kubernetes garbage collector (background propagation) deletes the children
            // whose ownerReferences name the schedule; each goes through its own finalizer.
            let uid = meta_str(obj, "uid").to_string();
            let ns = meta_str(obj, "namespace").to_string();
            let shared2 = shared.clone();
            shared.rt.spawn(async move {
                tokio::time::sleep(shared2.delays.chaos_reconcile).await;
                for (d, child) in children(&shared2, &ns, |c| owned_by(c, &uid)) {
                    shared2.mutate(|st| {
                        let _ = st.store.delete(&d, Some(&ns), meta_str(&child, "name"));
                    });
                }
            });
        }
        _ => {}
    }
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
}

/// Chaos objects in `ns` (every chaos kind) that satisfy `f`.
fn children(
    shared: &Arc<Shared>,
    ns: &str,
    f: impl Fn(&Value) -> bool,
) -> Vec<(ResourceDef, Value)> {
    let st = shared.lock();
    shared
        .defs
        .iter()
        .filter(|d| d.group == CHAOS_MESH_GROUP && schedule_type(d.kind).is_some())
        .flat_map(|d| {
            st.store
                .all(d, Some(ns))
                .into_iter()
                .filter(|c| f(c))
                .map(|c| (d.clone(), c))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// controllers/utils/controller/finished.go `IsChaosFinishedWithUntilStop`.
fn is_finished(def: &ResourceDef, obj: &Value, now: DateTime<Utc>) -> bool {
    let records = records_of(obj).unwrap_or_default();
    if is_one_shot(def, obj) {
        return !records.is_empty() && records.iter().all(|r| r["phase"] == "Injected");
    }
    let stopped = obj["status"]["experiment"]["desiredPhase"] != "Run"
        && records.iter().all(|r| r["phase"] == "Not Injected");
    let duration = obj["spec"]["duration"].as_str().and_then(parse_go_duration);
    let created: Option<DateTime<Utc>> = meta_str(obj, "creationTimestamp").parse().ok();
    let exceeded = matches!((duration, created), (Some(d), Some(c)) if now >= c + chrono::Duration::from_std(d).unwrap_or_default());
    stopped && exceeded
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
            emit(
                st,
                obj,
                "schedule-cron",
                ChaosEvent::failed(
                    "get run time",
                    "the fake Chaos Mesh supports only `@every <duration>` schedules",
                ),
            );
        });
        return;
    };
    let (shared, def) = (shared.clone(), def.clone());
    let rt = shared.rt.clone();
    rt.spawn(async move {
        // cron/utils.go `getRecentUnmetScheduleTime`: the first run is one period after
        // creation, the next one period after the last.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            ticker.tick().await;
            if !tick(&shared, &def, &ns, &name, &uid) {
                return;
            }
            schedule_active_and_gc(&shared, &ns, &name);
        }
    });
}

/// cron/controller.go `Reconciler.Reconcile` at a due run; false once the schedule is gone.
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
        // utils/list.go `ListActiveJobs`: the children are found by label.
        let live: Vec<Value> = st
            .store
            .all(&child_def, Some(ns))
            .into_iter()
            .filter(|c| c["metadata"]["labels"][MANAGED_BY] == name)
            .collect();
        let forbid = sched["spec"]["concurrencyPolicy"].as_str().unwrap_or("Forbid") != "Allow";
        let now = Utc::now();
        if forbid {
            if let Some(running) = live.iter().find(|c| !is_finished(&child_def, c, now)) {
                let running = meta_str(running, "name").to_string();
                emit(st, &sched, "schedule-cron", ChaosEvent::new("Warning", "Forbid", "schedule-forbid", format!("Forbid spawning new job because: {running} is still running")).field("running-name", running));
                return true;
            }
        }
        let child_name = format!("{name}-{}", super::util::random_suffix());
        let child = json!({
            "apiVersion": child_def.api_version(),
            "kind": child_def.kind,
            "metadata": {
                "name": child_name,
                "labels": {MANAGED_BY: name},
                "ownerReferences": [{"apiVersion": def.api_version(), "kind": "Schedule", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": sched["spec"][field].clone(),
        });
        match st.store.create(&child_def, Some(ns), child) {
            Ok(_) => emit(st, &sched, "schedule-cron", ChaosEvent::new("Normal", "Spawned", "schedule-spawn", format!("Create new object: {child_name}")).field("name", child_name)),
            Err(e) => emit(st, &sched, "schedule-cron", ChaosEvent::failed("create new object", &e.message)),
        }
        let _ = st.store.update_with(def, Some(ns), name, |o| {
            o["status"]["time"] = json!(rfc3339(now));
            Ok(())
        });
        true
    })
}

/// schedule/active/controller.go (status.active, sorted by name) and schedule/gc/controller.go
/// (the oldest finished children beyond `historyLimit` are deleted).
fn schedule_active_and_gc(shared: &Arc<Shared>, ns: &str, name: &str) {
    let Some(def) = shared.def(CHAOS_MESH_GROUP, "schedules").cloned() else {
        return;
    };
    let Some(sched) = peek(shared, &def, ns, name) else {
        return;
    };
    let mut kids = children(shared, ns, |c| c["metadata"]["labels"][MANAGED_BY] == name);
    kids.sort_by(|a, b| {
        meta_str(&a.1, "creationTimestamp").cmp(meta_str(&b.1, "creationTimestamp"))
    });
    let limit = sched["spec"]["historyLimit"].as_u64().unwrap_or(0) as usize;
    let now = Utc::now();
    let exceeded = kids.len().saturating_sub(limit);
    for (d, c) in &kids[..exceeded] {
        if is_finished(d, c, now) && !is_deleting(c) {
            shared.mutate(|st| {
                let _ = st.store.delete(d, Some(ns), meta_str(c, "name"));
            });
        }
    }
    let mut active: Vec<Value> = children(shared, ns, |c| c["metadata"]["labels"][MANAGED_BY] == name)
        .into_iter()
        .map(|(_, c)| json!({"apiVersion": c["apiVersion"], "kind": c["kind"], "name": c["metadata"]["name"], "namespace": ns, "uid": c["metadata"]["uid"], "resourceVersion": c["metadata"]["resourceVersion"]}))
        .collect();
    active.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    shared.mutate(|st| {
        let _ = st.store.update_with(&def, Some(ns), name, |o| {
            if !is_deleting(o) {
                o["status"]["active"] = json!(active);
            }
            Ok(())
        });
    });
}

/// api/v1alpha1/workflownode_types.go `LabelWorkflow` / `LabelControlledBy`.
pub const WORKFLOW_LABEL: &str = "chaos-mesh.org/workflow";
pub const CONTROLLED_BY: &str = "chaos-mesh.org/controlled-by";

/// A small Workflow controller (pkg/workflow/controllers): the entry reconciler sets
/// `status.entryNode` (workflow_entry_reconciler.go), and every chaos template reachable from
/// the entry through Serial/Parallel children becomes a chaos object named
/// `<node>-<5 chars>` for a node `<template>-<5 chars>`, labelled `chaos-mesh.org/workflow`
/// and `chaos-mesh.org/controlled-by` (chaos_node_reconciler.go `createChaos`).
/// Approximations: WorkflowNode objects are not stored, Serial runs its children at once like
/// Parallel, deadlines are not enforced; deleting the workflow deletes its chaos objects (the
/// garbage collector through the nodes).
pub fn on_workflow_change(shared: &Arc<Shared>, def: &ResourceDef, change: &Change) {
    match change {
        Change::Created(obj) => {
            let (shared2, def) = (shared.clone(), def.clone());
            let obj = obj.clone();
            shared.rt.spawn(async move {
                tokio::time::sleep(shared2.delays.chaos_reconcile).await;
                start_workflow(&shared2, &def, &obj);
            });
        }
        Change::Deleted(obj) => {
            let ns = meta_str(obj, "namespace").to_string();
            let name = meta_str(obj, "name").to_string();
            let shared2 = shared.clone();
            shared.rt.spawn(async move {
                tokio::time::sleep(shared2.delays.chaos_reconcile).await;
                for (d, child) in children(&shared2, &ns, |c| {
                    c["metadata"]["labels"][WORKFLOW_LABEL] == name.as_str()
                }) {
                    shared2.mutate(|st| {
                        let _ = st.store.delete(&d, Some(&ns), meta_str(&child, "name"));
                    });
                }
            });
        }
        _ => {}
    }
}

fn start_workflow(shared: &Arc<Shared>, def: &ResourceDef, wf: &Value) {
    let ns = meta_str(wf, "namespace").to_string();
    let name = meta_str(wf, "name").to_string();
    let templates: Vec<Value> = wf["spec"]["templates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| templates.iter().find(|x| x["name"] == t).cloned();
    let entry = wf["spec"]["entry"].as_str().unwrap_or("").to_string();
    let mut todo = vec![entry.clone()];
    let mut chaos = Vec::new();
    let mut guard = 0;
    while let Some(t) = todo.pop() {
        guard += 1;
        if guard > 100 {
            break;
        }
        let Some(tpl) = find(&t) else { continue };
        match tpl["templateType"].as_str().unwrap_or("") {
            "Serial" | "Parallel" => {
                for c in tpl["children"].as_array().into_iter().flatten().rev() {
                    if let Some(c) = c.as_str() {
                        todo.push(c.to_string());
                    }
                }
            }
            kind => {
                if let Some((plural, field)) = schedule_type(kind) {
                    chaos.push((t.clone(), plural, tpl[field].clone()));
                }
            }
        }
    }
    shared.mutate(|st| {
        let entry_node = format!("{entry}-{}", super::util::random_suffix());
        let _ = st.store.update_with(def, Some(&ns), &name, |o| {
            o["status"]["entryNode"] = json!(entry_node);
            o["status"]["startTime"] = json!(rfc3339(Utc::now()));
            Ok(())
        });
        for (template, plural, spec) in chaos {
            let Some(cdef) = shared.def(CHAOS_MESH_GROUP, plural).cloned() else { continue };
            let node = format!("{template}-{}", super::util::random_suffix());
            let obj = json!({
                "apiVersion": cdef.api_version(),
                "kind": cdef.kind,
                "metadata": {
                    "name": format!("{node}-{}", super::util::random_suffix()),
                    "labels": {CONTROLLED_BY: node, WORKFLOW_LABEL: name},
                    "ownerReferences": [{"apiVersion": def.api_version(), "kind": "WorkflowNode", "name": node,
                        "uid": super::util::random_uid(), "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": spec,
            });
            if let Err(e) = st.store.create(&cdef, Some(&ns), obj) {
                emit(st, wf, "workflow", ChaosEvent::failed("create chaos", &e.message));
            }
        }
    });
}
