//! The injection half of `chaos-mesh`: the object as it is sent (a known kind, with ttplan's
//! name, namespace and labels), the wait until the controller reports it injected — the object
//! itself, or the first child a Schedule/Workflow spawned — and what the labels keep of it.

use std::collections::HashMap;

use ::kube::api::{ApiResource, DynamicObject};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::children::{
    collected_child, list_children, object_events, own_failure, selection_context,
};
use super::{ChaosMeshConfig, Recovery};
use crate::kube::chaos::{
    affected_pods, chaos_mesh_injection, chaos_mesh_resource, children_selector, container_records,
    controller_times, selection_failure, Injection, CHAOS_MESH_API,
};
use crate::kube::names::{dns_name, label_value};
use crate::kube::{poll_interval, qualified, Kube};
use crate::steps::api::fault_details::{
    ChaosMeshInjection, ChaosMeshObject, ChaosMeshParams, ChaosMeshTarget, FaultParams, FirstChild,
};
use crate::steps::{StepCtx, StepError};

/// The object as it is sent: a Chaos Mesh kind the cluster serves, named and labelled.
pub(super) struct Rendered {
    pub(super) kind: String,
    pub(super) ar: ApiResource,
    pub(super) namespace: String,
    pub(super) name: String,
    /// The object's `spec`, as the plan gave it.
    spec: Value,
    object: DynamicObject,
}

impl Rendered {
    /// Checks the object's API group and kind, makes sure the cluster serves the kind, and
    /// stamps the name, namespace and ttplan's labels on it. Also returns the cluster.
    pub(super) async fn render<'c>(
        step: &ChaosMeshConfig,
        ctx: &'c StepCtx,
        mut obj: Value,
    ) -> Result<(Self, &'c Kube), StepError> {
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if api_version != CHAOS_MESH_API {
            return Err(StepError::failed(format!(
                "apiVersion must be {CHAOS_MESH_API}, found `{api_version}`"
            )));
        }
        let ar = chaos_mesh_resource(&kind).ok_or_else(|| {
            StepError::failed(format!("`{kind}` is not a Chaos Mesh kind ttplan knows"))
        })?;
        let kube = ctx.kube().await?;
        kube.ensure_resource("Chaos Mesh", CHAOS_MESH_API, &kind, &ar.plural)
            .await
            .map_err(|e| StepError::failed(e.to_string()))?;
        let own = |pointer: &str| {
            obj.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let namespace = (step.namespace.clone())
            .or_else(|| own("/metadata/namespace"))
            .unwrap_or_else(|| kube.namespace.clone());
        let name = (step.name.clone())
            .or_else(|| own("/metadata/name"))
            .unwrap_or_else(|| dns_name(&format!("{}-{}", ctx.exp_name(), ctx.step_name())));
        let labels = [
            ("ttplan.io/run-id", label_value(ctx.run_id())),
            ("ttplan.io/exp-name", label_value(ctx.exp_name())),
            ("ttplan.io/step", label_value(ctx.step_name())),
        ];
        stamp_metadata(&mut obj, &namespace, &name, &labels)?;
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let object: DynamicObject = serde_json::from_value(obj)
            .map_err(|e| StepError::failed(format!("not a Kubernetes object: {e}")))?;
        let rendered = Self {
            kind,
            ar,
            namespace,
            name,
            spec,
            object,
        };
        Ok((rendered, kube))
    }

    /// `PodChaos ns/name`, as messages name it.
    pub(super) fn what(&self) -> String {
        format!(
            "{} {}",
            self.kind,
            qualified(Some(&self.namespace), &self.name)
        )
    }

    /// What the ledger keeps to delete the object without the plan.
    pub(super) fn recovery(&self, step: &ChaosMeshConfig, ctx: &StepCtx) -> Recovery {
        Recovery {
            kind: self.kind.clone(),
            timeout: step.recover_timeout,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            kube: ctx.kube_settings().clone(),
        }
    }

    pub(super) fn params(&self) -> FaultParams {
        FaultParams::ChaosMesh(ChaosMeshParams {
            kind: self.kind.clone(),
            spec: self.spec.clone(),
        })
    }

    /// Creates (server-side applies) the object; the API server's copy.
    pub(super) async fn create(&self, kube: &Kube) -> Result<DynamicObject, StepError> {
        kube.apply(&self.ar, Some(&self.namespace), &self.object)
            .await
            .map_err(|e| StepError::failed(e.to_string()))
    }

    /// What the labels keep of an injection: the created object, and what `current` (the
    /// object, or its first injected child of kind `child`) reports injected.
    pub(super) fn details(
        &self,
        created: &DynamicObject,
        current: &DynamicObject,
        child: Option<String>,
    ) -> ChaosMeshInjection {
        let records = container_records(current);
        let pods = affected_pods(&records);
        let (injected_at, _) = controller_times(&records);
        let spec = match &child {
            Some(_) => current.data.get("spec").cloned().unwrap_or(Value::Null),
            None => self.spec.clone(),
        };
        let created_at = (created.metadata.creation_timestamp.as_ref()).map(|t| t.0.to_string());
        let first_child = child.map(|kind| FirstChild {
            kind,
            name: current.metadata.name.clone(),
            uid: current.metadata.uid.clone(),
            pods: pods.clone(),
            injected_at: injected_at.clone(),
        });
        ChaosMeshInjection {
            object: ChaosMeshObject {
                api_version: CHAOS_MESH_API.into(),
                kind: self.kind.clone(),
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                uid: created.metadata.uid.clone().unwrap_or_default(),
                created_at,
            },
            target: ChaosMeshTarget {
                namespace: self.namespace.clone(),
                selector: spec.get("selector").cloned().unwrap_or(Value::Null),
                mode: spec.get("mode").cloned().unwrap_or(Value::Null),
                pods,
            },
            controller_injected_at: injected_at,
            records,
            first_child,
        }
    }
}

/// Sets `metadata.name`, `metadata.namespace` and the given labels, keeping the object's other
/// metadata and labels.
fn stamp_metadata(
    obj: &mut Value,
    namespace: &str,
    name: &str,
    labels: &[(&str, String)],
) -> Result<(), StepError> {
    let metadata = obj
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .ok_or_else(|| StepError::failed("the Chaos Mesh object must be a mapping"))?;
    // `metadata:` left empty reads as null. Anything else that is not a mapping is an error,
    // not a panic of `value["key"] = …`.
    let metadata =
        mapping(metadata).ok_or_else(|| StepError::failed("metadata must be a mapping"))?;
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(namespace));
    let own = metadata.entry("labels").or_insert_with(|| json!({}));
    let own = mapping(own).ok_or_else(|| StepError::failed("metadata.labels must be a mapping"))?;
    for (key, value) in labels {
        own.insert((*key).to_string(), json!(value));
    }
    Ok(())
}

/// `value` as a mapping, an empty one if it is null.
fn mapping(value: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    if value.is_null() {
        *value = json!({});
    }
    value.as_object_mut()
}

/// One look at the object (or its children).
enum Look {
    /// The object whose records say what was injected, and its kind when it is a child.
    Injected(DynamicObject, Option<String>),
    /// Not yet; the object (with its kind) whose target selection to watch, if there is one.
    Waiting(Option<(String, DynamicObject)>),
}

/// The wait after creation until the controller reports the fault injected.
pub(super) struct InjectionWait<'a> {
    step: &'a ChaosMeshConfig,
    ctx: &'a StepCtx,
    kube: &'a Kube,
    target: &'a Rendered,
    uid: String,
    what: String,
    deadline: Instant,
    /// A Schedule or Workflow: the fault is injected by the children it spawns.
    composite: bool,
    /// When ttplan first saw each object without a selected target.
    first_seen: HashMap<String, Instant>,
}

impl<'a> InjectionWait<'a> {
    /// Starts the clocks: call right after the object was created.
    pub(super) fn start(
        step: &'a ChaosMeshConfig,
        ctx: &'a StepCtx,
        kube: &'a Kube,
        target: &'a Rendered,
        uid: &str,
    ) -> Self {
        let started = Instant::now();
        Self {
            step,
            ctx,
            kube,
            target,
            uid: uid.to_string(),
            what: target.what(),
            deadline: started + step.inject_timeout.get(),
            composite: children_selector(&target.kind, &target.name).is_some(),
            first_seen: HashMap::from([(target.name.clone(), started)]),
        }
    }

    /// Polls until injected; the object whose records say what was injected (the object
    /// itself, or the first child a Schedule/Workflow spawned, with its kind).
    pub(super) async fn until_injected(
        mut self,
    ) -> Result<(DynamicObject, Option<String>), StepError> {
        let t = self.target;
        loop {
            let cur = (self.kube.get_opt(&t.ar, Some(&t.namespace), &t.name).await)
                .map_err(|e| StepError::failed(e.to_string()))?
                .ok_or_else(|| {
                    StepError::failed(format!("{} disappeared before it was injected", self.what))
                })?;
            let look = if self.composite {
                self.look_at_children(&cur).await?
            } else {
                self.look_at_object(&cur)?
            };
            let waiting_on = match look {
                Look::Injected(obj, child) => return Ok((obj, child)),
                Look::Waiting(w) => w,
            };
            // Nothing selected yet: the controller says why in an Event, or it is late.
            if let Some((k, obj)) = waiting_on.filter(|(_, o)| container_records(o).is_empty()) {
                self.check_selection(&k, &obj).await?;
            }
            if Instant::now() >= self.deadline {
                return Err(StepError::failed(format!(
                    "{} was not reported injected within {}; its status: {}",
                    self.what,
                    self.step.inject_timeout,
                    cur.data
                        .get("status")
                        .map(Value::to_string)
                        .unwrap_or_else(|| "none".into())
                )));
            }
            self.ctx
                .progress(format!("waiting for {} to be injected", self.what));
            tokio::select! {
                () = tokio::time::sleep(poll_interval(self.step.inject_timeout.get())) => {}
                () = self.ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
            }
        }
    }

    fn look_at_object(&self, cur: &DynamicObject) -> Result<Look, StepError> {
        match chaos_mesh_injection(&self.target.kind, cur) {
            Injection::Injected => Ok(Look::Injected(cur.clone(), None)),
            Injection::Failed(e) => Err(StepError::failed(format!(
                "{} failed to inject: {e}",
                self.what
            ))),
            Injection::Pending => Ok(Look::Waiting(Some((self.target.kind.clone(), cur.clone())))),
        }
    }

    /// A Schedule/Workflow (`cur`) is injected when one of its children is.
    async fn look_at_children(&self, cur: &DynamicObject) -> Result<Look, StepError> {
        let t = self.target;
        let kids = list_children(
            self.kube,
            &t.kind,
            cur.data.pointer("/spec/type").and_then(Value::as_str),
            &t.namespace,
            &t.name,
            Some(self.uid.as_str()),
        )
        .await
        .map_err(StepError::failed)?;
        if let Some((k, c)) = kids
            .iter()
            .find(|(k, c)| chaos_mesh_injection(k, c) == Injection::Injected)
        {
            return Ok(Look::Injected(c.clone(), Some(k.clone())));
        }
        let events = object_events(self.kube, &t.namespace, &t.name).await;
        if let Some(msg) = own_failure(&events, &t.name, &self.uid) {
            return Err(StepError::failed(format!("{} failed: {msg}", self.what)));
        }
        // A child can be collected (history limit) before a poll sees it; its `Applied`
        // events remain.
        let collected = collected_child(
            self.kube,
            &t.kind,
            cur,
            &t.namespace,
            &events,
            &t.name,
            &self.uid,
        )
        .await;
        if let Some((c, k)) = collected {
            return Ok(Look::Injected(c, k));
        }
        Ok(Look::Waiting(kids.into_iter().next()))
    }

    /// Fails when the controller reports that `obj` (of kind `kind`) selected no target, or
    /// when it has selected none for `select_timeout`.
    async fn check_selection(&mut self, kind: &str, obj: &DynamicObject) -> Result<(), StepError> {
        let namespace = &self.target.namespace;
        let oname = obj.metadata.name.clone().unwrap_or_default();
        let ouid = obj.metadata.uid.clone();
        let events = object_events(self.kube, namespace, &oname).await;
        let owhat = format!("{kind} {}", qualified(Some(namespace), &oname));
        if let Some(msg) = selection_failure(&events, &oname, ouid.as_deref()) {
            let context = selection_context(self.kube, obj, namespace).await;
            return Err(StepError::failed(format!(
                "{owhat} selected no target: the controller says \"{msg}\"; {context}"
            )));
        }
        // Counted from when ttplan first saw the object unselected (a schedule's child exists
        // only from its first tick).
        let since = *self.first_seen.entry(oname).or_insert_with(Instant::now);
        if Instant::now() < since + self.step.select_timeout.get() {
            return Ok(());
        }
        let context = selection_context(self.kube, obj, namespace).await;
        let status = (obj.data.get("status").map(Value::to_string))
            .unwrap_or_else(|| "none (is the controller running?)".into());
        Err(StepError::failed(format!(
            "{owhat}: the Chaos Mesh controller selected no target within {} (select_timeout); {context}; its status: {status}",
            self.step.select_timeout,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamping_sets_name_namespace_and_labels_and_keeps_the_objects_own() {
        let mut obj = json!({"kind": "PodChaos", "metadata": {"name": "theirs",
            "annotations": {"a": "b"}, "labels": {"team": "x", "ttplan.io/step": "old"}}});
        let labels = [
            ("ttplan.io/run-id", "r1".to_string()),
            ("ttplan.io/step", "inject".to_string()),
        ];
        stamp_metadata(&mut obj, "ts", "ours", &labels).unwrap();
        assert_eq!(
            obj["metadata"],
            json!({"name": "ours", "namespace": "ts", "annotations": {"a": "b"},
                "labels": {"team": "x", "ttplan.io/step": "inject", "ttplan.io/run-id": "r1"}})
        );
        // No metadata at all: created.
        let mut bare = json!({"kind": "PodChaos"});
        stamp_metadata(&mut bare, "ts", "n", &labels).unwrap();
        assert_eq!(bare["metadata"]["labels"]["ttplan.io/run-id"], "r1");
        let e = stamp_metadata(&mut json!([1]), "ts", "n", &labels).unwrap_err();
        assert_eq!(e.to_string(), "the Chaos Mesh object must be a mapping");
        // These panicked before (`value["name"] = …` on a number).
        let e = stamp_metadata(&mut json!({"metadata": 3}), "ts", "n", &labels).unwrap_err();
        assert_eq!(e.to_string(), "metadata must be a mapping");
        let mut bad_labels = json!({"metadata": {"labels": ["a"]}});
        let e = stamp_metadata(&mut bad_labels, "ts", "n", &labels).unwrap_err();
        assert_eq!(e.to_string(), "metadata.labels must be a mapping");
        // An empty `metadata:` (null) is filled in.
        let mut null = json!({"metadata": null});
        stamp_metadata(&mut null, "ts", "n", &labels).unwrap();
        assert_eq!(null["metadata"]["name"], "n");
    }
}
