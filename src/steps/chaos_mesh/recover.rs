//! Recovery of a `chaos-mesh` fault: delete the object (and a Schedule's or Workflow's
//! children) and wait until each is gone through its finalizer, then report when the
//! controller recovered the fault, from the records and, where an object went too fast, from
//! its Events.

use std::time::Duration;

use ::kube::api::{ApiResource, DynamicObject};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::time::Instant;

use super::children::{list_children, namespace_events, object_events};
use super::Recovery;
use crate::kube::chaos::{
    affected_pods, chaos_mesh_resource, children_selector, container_records, controller_times,
    records_from_events, spawned_children,
};
use crate::kube::cleanup::{delete_chaos_with_remedy, force_remedy};
use crate::kube::Kube;
use crate::steps::api::fault_details::{
    ChildFault, FaultParams, InjectionDetails, ParentTimes, RecoveryReport,
};
use crate::steps::api::faults::{FaultRecord, RecoverCtx};

pub(super) fn recover<'a>(
    record: &'a FaultRecord,
    ctx: &'a RecoverCtx,
) -> BoxFuture<'a, Result<Option<RecoveryReport>, String>> {
    Box::pin(async move {
        let rec = Recovering::new(record, ctx).await?;
        // The children as they are before the parent goes (their records are exact).
        let mut seen = if rec.composite {
            rec.children_now().await?
        } else {
            Vec::new()
        };
        let last_records = rec.delete_parent().await?;
        if !rec.composite {
            return Ok(Some(rec.object_report(last_records).await));
        }
        let deleted_at = chrono::Utc::now();
        rec.delete_children(&mut seen).await?;
        Ok(Some(rec.children_report(seen, deleted_at).await))
    })
}

/// What the phases of one recovery share.
struct Recovering<'a> {
    record: &'a FaultRecord,
    ctx: &'a RecoverCtx,
    r: Recovery,
    ar: ApiResource,
    kube: Kube,
    /// The `--force` command a finalizer error suggests.
    remedy: String,
    limit: Duration,
    /// The object's uid at injection: a schedule's children are told apart by owner.
    uid: Option<String>,
    /// A schedule's child kind, from the plan's object (the schedule may be gone already).
    child_type: Option<String>,
    /// A Schedule or Workflow: the fault lives in the children it spawns.
    composite: bool,
}

/// A child of a Schedule/Workflow, with the records last seen on it.
struct SeenChild {
    kind: String,
    name: String,
    records: Vec<Value>,
}

impl<'a> Recovering<'a> {
    async fn new(record: &'a FaultRecord, ctx: &'a RecoverCtx) -> Result<Self, String> {
        let r: Recovery = serde_json::from_value(record.recovery.clone())
            .map_err(|e| format!("fault `{}`: unreadable recovery data: {e}", record.id))?;
        let ar = chaos_mesh_resource(&r.kind)
            .ok_or_else(|| format!("unknown Chaos Mesh kind `{}`", r.kind))?;
        // `chaos clean --run` without flags reaches the cluster the run used.
        let kube = ctx.kube(&r.kube).await?;
        let remedy = force_remedy(run_dir(ctx).as_deref(), Some(&r.namespace));
        let limit = ctx.timeout.unwrap_or(r.timeout.get());
        let uid = record.details.object_uid().map(str::to_string);
        let child_type = match &record.params {
            FaultParams::ChaosMesh(p) => p.spec.get("type").and_then(Value::as_str),
            _ => None,
        }
        .map(str::to_string);
        let composite = children_selector(&r.kind, &r.name).is_some();
        Ok(Self {
            record,
            ctx,
            r,
            ar,
            kube,
            remedy,
            limit,
            uid,
            child_type,
            composite,
        })
    }

    async fn children(&self) -> Result<Vec<(String, DynamicObject)>, String> {
        list_children(
            &self.kube,
            &self.r.kind,
            self.child_type.as_deref(),
            &self.r.namespace,
            &self.r.name,
            self.uid.as_deref(),
        )
        .await
    }

    async fn children_now(&self) -> Result<Vec<SeenChild>, String> {
        let kids = self.children().await?;
        Ok(kids
            .into_iter()
            .map(|(kind, c)| SeenChild {
                kind,
                name: c.metadata.name.clone().unwrap_or_default(),
                records: container_records(&c),
            })
            .collect())
    }

    /// Deletes the object and waits until it is gone; returns the last records seen on it.
    async fn delete_parent(&self) -> Result<Vec<Value>, String> {
        let mut last_records: Vec<Value> = Vec::new();
        let mut observe = |o: &DynamicObject| {
            let recs = container_records(o);
            if !recs.is_empty() {
                last_records = recs;
            }
        };
        delete_chaos_with_remedy(
            &self.kube,
            &self.ar,
            Some(&self.r.namespace),
            &self.r.name,
            self.limit,
            self.ctx.force,
            &mut observe,
            &self.remedy,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(last_records)
    }

    /// The report of a single object. The controller drops its finalizer as soon as the
    /// records are recovered, so the object is often gone before a read sees them; its
    /// `Recovered` events stay.
    async fn object_report(&self, mut records: Vec<Value>) -> RecoveryReport {
        if controller_times(&records).1.is_none() {
            let events = object_events(&self.kube, &self.r.namespace, &self.r.name).await;
            let from_events = records_from_events(&events, &self.r.name);
            records = merge_records(records, from_events);
        }
        let recovered_at = controller_times(&records).1;
        RecoveryReport {
            controller_recovered_at: recovered_at,
            records: Some(records),
            ..RecoveryReport::default()
        }
    }

    /// The garbage collector deletes the children after their parent; ttplan deletes them
    /// too and waits until none is left, each through its own finalizer (recovery).
    async fn delete_children(&self, seen: &mut Vec<SeenChild>) -> Result<(), String> {
        let deadline = Instant::now() + self.limit;
        loop {
            let kids = self.children().await?;
            if kids.is_empty() {
                return Ok(());
            }
            for (k, c) in kids {
                self.delete_child(k, &c, deadline, seen).await?;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} {}: its children are still there after {}",
                    self.r.kind,
                    self.r.name,
                    humantime::format_duration(self.limit)
                ));
            }
        }
    }

    /// Deletes one child and waits, adding the records it showed to `seen`; a child already
    /// gone is no error.
    async fn delete_child(
        &self,
        kind: String,
        child: &DynamicObject,
        deadline: Instant,
        seen: &mut Vec<SeenChild>,
    ) -> Result<(), String> {
        let cname = child.metadata.name.clone().unwrap_or_default();
        let Some(car) = chaos_mesh_resource(&kind) else {
            return Ok(());
        };
        let mut recs = container_records(child);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let mut observe = |o: &DynamicObject| {
            let r = container_records(o);
            if !r.is_empty() {
                recs = r;
            }
        };
        let res = delete_chaos_with_remedy(
            &self.kube,
            &car,
            Some(&self.r.namespace),
            &cname,
            left,
            self.ctx.force,
            &mut observe,
            &self.remedy,
        )
        .await;
        match seen.iter_mut().find(|s| s.name == cname) {
            Some(s) => s.records = merge_records(std::mem::take(&mut s.records), recs),
            None => seen.push(SeenChild {
                kind: kind.clone(),
                name: cname.clone(),
                records: recs,
            }),
        }
        match res {
            Err(e) if !e.is_not_found() => Err(format!(
                "{} {}: child {kind} {cname}: {e}",
                self.r.kind, self.r.name
            )),
            _ => Ok(()),
        }
    }

    /// The report of a Schedule/Workflow: one label per child, with the parent's times.
    async fn children_report(
        &self,
        mut seen: Vec<SeenChild>,
        deleted_at: chrono::DateTime<chrono::Utc>,
    ) -> RecoveryReport {
        // Children the history limit collected long ago live on in the Events.
        let events = namespace_events(&self.kube, &self.r.namespace).await;
        let child_kind = self.child_type.clone().unwrap_or_default();
        for n in spawned_children(&events, &self.r.name, self.uid.as_deref()) {
            if !seen.iter().any(|s| s.name == n) {
                seen.push(SeenChild {
                    kind: child_kind.clone(),
                    name: n,
                    records: Vec::new(),
                });
            }
        }
        let mut children: Vec<ChildFault> = seen
            .into_iter()
            .map(|s| {
                let from_events = records_from_events(&events, &s.name);
                let source = if s.records.is_empty() {
                    "events"
                } else {
                    "records"
                };
                let all = merge_records(s.records, from_events);
                child_label(&s.kind, &s.name, &all, source)
            })
            .collect();
        children.sort_by(|a, b| a.injected_at.cmp(&b.injected_at));
        let recovered_at = children.iter().filter_map(|c| c.recovered_at.clone()).max();
        let created_at = match &self.record.details {
            InjectionDetails::ChaosMesh(d) => d.object.created_at.clone(),
            _ => None,
        };
        RecoveryReport {
            controller_recovered_at: recovered_at,
            children: Some(children),
            parent: Some(ParentTimes {
                created_at,
                deleted_at: deleted_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
            records: Some(Vec::new()),
        }
    }
}

/// One child of a Schedule/Workflow as the labels list it: which pods, and when the controller
/// applied and recovered the fault on them.
fn child_label(kind: &str, name: &str, records: &[Value], source: &str) -> ChildFault {
    let (injected_at, recovered_at) = controller_times(records);
    ChildFault {
        kind: kind.to_string(),
        name: name.to_string(),
        pods: affected_pods(records),
        injected_at,
        recovered_at,
        source: source.to_string(),
    }
}

/// The run folder of a recovery (`runs/<exp>/steps/<step>.recover.log` → `runs/<exp>`).
fn run_dir(ctx: &RecoverCtx) -> Option<std::path::PathBuf> {
    ctx.log_path
        .parent()?
        .parent()
        .map(std::path::Path::to_path_buf)
}

fn merge_records(mut seen: Vec<Value>, from_events: Vec<Value>) -> Vec<Value> {
    for ev_rec in from_events {
        let id = ev_rec.get("id").cloned();
        match seen.iter_mut().find(|r| r.get("id") == id.as_ref()) {
            Some(r) => {
                let ops: Vec<String> = r
                    .get("events")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.get("type").and_then(Value::as_str) == Some("Succeeded"))
                    .filter_map(|e| {
                        e.get("operation")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .collect();
                let extra: Vec<Value> = ev_rec
                    .get("events")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|e| {
                        e.get("operation")
                            .and_then(Value::as_str)
                            .is_some_and(|op| !ops.iter().any(|o| o == op))
                    })
                    .cloned()
                    .collect();
                if let Some(evs) = r.get_mut("events").and_then(Value::as_array_mut) {
                    evs.extend(extra);
                } else if !extra.is_empty() {
                    r["events"] = Value::Array(extra);
                }
            }
            None => seen.push(ev_rec),
        }
    }
    seen
}
