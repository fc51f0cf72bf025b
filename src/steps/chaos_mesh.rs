//! `chaos-mesh`: creates a Chaos Mesh object (StressChaos, NetworkChaos, PodChaos, IOChaos,
//! HTTPChaos, DNSChaos, Schedule, Workflow) and waits until the controller reports it injected.
//! Recovery deletes it and waits until it is gone (the records finalizer means "recovered").

use std::path::PathBuf;

use ::kube::api::{DynamicObject, ListParams};
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::diag::{did_you_mean, Code, PlanDiag, Span};
use crate::kube::chaos::{
    affected_pods, chaos_mesh_injection, chaos_mesh_resource, children_selector, container_records,
    controller_times, records_from_events, selection_failure, spawned_children, Injection,
    CHAOS_MESH_API, CHAOS_MESH_KINDS,
};
use crate::kube::cleanup::{delete_chaos_with_remedy, force_remedy};
use crate::kube::names::{dns_name, label_value};
use crate::kube::pods::PodQuery;
use crate::kube::{poll_interval, qualified, Kube, KubeSettings};
use crate::plan::node::Node;
use crate::plan::template::Templates;
use crate::plan::Duration;
use crate::steps::api::fault_details::{
    ChaosMeshInjection, ChaosMeshObject, ChaosMeshParams, ChaosMeshTarget, ChildFault, FaultParams,
    FirstChild, InjectionDetails, ParentTimes, RecoveryReport,
};
use crate::steps::api::faults::{FaultRecord, RecoverCtx};
use crate::steps::api::manifest;

/// Injects a Chaos Mesh fault.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChaosMeshConfig {
    /// The Chaos Mesh object (`apiVersion: chaos-mesh.org/v1alpha1`, `kind`, `metadata`, `spec`).
    #[serde(default)]
    pub manifest: Option<Value>,
    /// A YAML/JSON file holding the object instead (relative to the plan's folder).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Namespace to create it in; default: the object's own, else `-n`, else the context's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name; default: the object's own, else `<exp_name>-<step>`.
    #[serde(default)]
    pub name: Option<String>,
    /// How long the controller may take to report the fault injected.
    #[serde(default = "two_minutes")]
    pub inject_timeout: Duration,
    /// How long recovery waits for the object to be gone.
    #[serde(default = "two_minutes")]
    pub recover_timeout: Duration,
    /// How long the controller may take to select targets before the step fails, naming the
    /// selector and the pods that carry its labels. When the controller reports that it
    /// selected nothing (its `Failed` Event), the step fails at once.
    #[serde(default = "thirty_seconds")]
    pub select_timeout: Duration,
}

fn two_minutes() -> Duration {
    Duration::from_secs(120)
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// What the ledger keeps to delete the object without the plan.
#[derive(Debug, Serialize, Deserialize)]
struct Recovery {
    kind: String,
    /// The plan's `recover_timeout`.
    timeout: Duration,
    namespace: String,
    name: String,
    kube: KubeSettings,
}

impl StepConfig for ChaosMeshConfig {
    const KIND: &'static str = "chaos-mesh";
    const ABOUT: &'static str =
        "creates a Chaos Mesh object and waits until it is injected; recovery deletes it";
    const RECOVER: Option<super::RecoverFn> = Some(recover);
}

impl ChaosMeshConfig {
    async fn object(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        match (&self.manifest, &self.file) {
            (Some(m), None) => Ok(m.clone()),
            (None, Some(f)) => {
                let path = ctx.plan_dir().join(f);
                manifest::read_async(&path)
                    .await
                    .and_then(|file| manifest::one_object(&file))
                    .map(|doc| doc.to_json())
                    .map_err(|e| StepError::failed(manifest::plain(&e)))
            }
            _ => Err(StepError::failed(
                "give exactly one of `manifest` and `file`",
            )),
        }
    }
}

#[async_trait::async_trait]
impl Step for ChaosMeshConfig {
    fn needs_cluster(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let mut obj = self.object(ctx).await?;
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

        let namespace = self
            .namespace
            .clone()
            .or_else(|| {
                obj.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| kube.namespace.clone());
        let name = self
            .name
            .clone()
            .or_else(|| {
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| dns_name(&format!("{}-{}", ctx.exp_name(), ctx.step_name())));
        let metadata = obj
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .ok_or_else(|| StepError::failed("the Chaos Mesh object must be a mapping"))?;
        metadata["name"] = json!(name);
        metadata["namespace"] = json!(namespace);
        let labels = metadata
            .as_object_mut()
            .map(|m| m.entry("labels").or_insert_with(|| json!({})))
            .ok_or_else(|| StepError::failed("metadata must be a mapping"))?;
        labels["ttplan.io/run-id"] = json!(label_value(ctx.run_id()));
        labels["ttplan.io/exp-name"] = json!(label_value(ctx.exp_name()));
        labels["ttplan.io/step"] = json!(label_value(ctx.step_name()));
        let dynamic: DynamicObject = serde_json::from_value(obj.clone())
            .map_err(|e| StepError::failed(format!("not a Kubernetes object: {e}")))?;

        let recovery = Recovery {
            kind: kind.clone(),
            timeout: self.recover_timeout,
            namespace: namespace.clone(),
            name: name.clone(),
            kube: ctx.kube_settings().clone(),
        };
        let params = FaultParams::ChaosMesh(ChaosMeshParams {
            kind: kind.clone(),
            spec: obj.get("spec").cloned().unwrap_or(Value::Null),
        });
        let fault = ctx
            .register_fault(
                Self::KIND,
                serde_json::to_value(&recovery).map_err(StepError::failed)?,
                params,
            )
            .await?;

        let what = format!("{kind} {}", qualified(Some(&namespace), &name));
        ctx.progress(format!("creating {what}"));
        let created = kube
            .apply(&ar, Some(&namespace), &dynamic)
            .await
            .map_err(|e| StepError::failed(e.to_string()))?;
        let uid = created.metadata.uid.clone().unwrap_or_default();

        let started = tokio::time::Instant::now();
        let deadline = started + self.inject_timeout.get();
        let composite = children_selector(&kind, &name).is_some();
        let mut first_seen: std::collections::HashMap<String, tokio::time::Instant> =
            std::collections::HashMap::new();
        first_seen.insert(name.clone(), started);
        // The object whose records say what was injected: the object itself, or the first
        // child a Schedule/Workflow spawned.
        let (current, child) = loop {
            let cur = kube
                .get_opt(&ar, Some(&namespace), &name)
                .await
                .map_err(|e| StepError::failed(e.to_string()))?
                .ok_or_else(|| {
                    StepError::failed(format!("{what} disappeared before it was injected"))
                })?;
            let waiting_on = if composite {
                let kids = list_children(
                    kube,
                    &kind,
                    cur.data.pointer("/spec/type").and_then(Value::as_str),
                    &namespace,
                    &name,
                    Some(&uid),
                )
                .await
                .map_err(StepError::failed)?;
                if let Some((k, c)) = kids
                    .iter()
                    .find(|(k, c)| chaos_mesh_injection(k, c) == Injection::Injected)
                {
                    break (c.clone(), Some(k.clone()));
                }
                let events = object_events(kube, &namespace, &name).await;
                if let Some(msg) = own_failure(&events, &name, &uid) {
                    return Err(StepError::failed(format!("{what} failed: {msg}")));
                }
                // A child can be collected (history limit) before a poll sees it; its
                // `Applied` events remain.
                if let Some(c) =
                    collected_child(kube, &kind, &cur, &namespace, &events, &name, &uid).await
                {
                    break c;
                }
                kids.into_iter().next()
            } else {
                match chaos_mesh_injection(&kind, &cur) {
                    Injection::Injected => break (cur, None),
                    Injection::Failed(e) => {
                        return Err(StepError::failed(format!("{what} failed to inject: {e}")))
                    }
                    Injection::Pending => Some((kind.clone(), cur.clone())),
                }
            };
            // Nothing selected yet: the controller says why in an Event, or it is late.
            if let Some((k, obj)) = waiting_on.filter(|(_, o)| container_records(o).is_empty()) {
                let oname = obj.metadata.name.clone().unwrap_or_default();
                let ouid = obj.metadata.uid.clone();
                let events = object_events(kube, &namespace, &oname).await;
                let owhat = format!("{k} {}", qualified(Some(&namespace), &oname));
                if let Some(msg) = selection_failure(&events, &oname, ouid.as_deref()) {
                    let context = selection_context(kube, &obj, &namespace).await;
                    return Err(StepError::failed(format!(
                        "{owhat} selected no target: the controller says \"{msg}\"; {context}"
                    )));
                }
                // Counted from when ttplan first saw the object unselected (a schedule's
                // child exists only from its first tick).
                let since = *first_seen
                    .entry(oname.clone())
                    .or_insert_with(tokio::time::Instant::now);
                if tokio::time::Instant::now() >= since + self.select_timeout.get() {
                    let context = selection_context(kube, &obj, &namespace).await;
                    return Err(StepError::failed(format!(
                        "{owhat}: the Chaos Mesh controller selected no target within {} (select_timeout); {context}; its status: {}",
                        self.select_timeout,
                        obj.data.get("status").map(Value::to_string).unwrap_or_else(|| "none (is the controller running?)".into())
                    )));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepError::failed(format!(
                    "{what} was not reported injected within {}; its status: {}",
                    self.inject_timeout,
                    cur.data
                        .get("status")
                        .map(Value::to_string)
                        .unwrap_or_else(|| "none".into())
                )));
            }
            ctx.progress(format!("waiting for {what} to be injected"));
            tokio::select! {
                () = tokio::time::sleep(poll_interval(self.inject_timeout.get())) => {}
                () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
            }
        };
        let records = container_records(&current);
        let pods = affected_pods(&records);
        let (injected_at, _) = controller_times(&records);
        let spec = match &child {
            Some(_) => current.data.get("spec").cloned().unwrap_or(Value::Null),
            None => obj.get("spec").cloned().unwrap_or(Value::Null),
        };
        let created_at = created
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string());
        let first_child = child.as_ref().map(|k| FirstChild {
            kind: k.clone(),
            name: current.metadata.name.clone(),
            uid: current.metadata.uid.clone(),
            pods: pods.clone(),
            injected_at: injected_at.clone(),
        });
        let details = InjectionDetails::ChaosMesh(ChaosMeshInjection {
            object: ChaosMeshObject {
                api_version: CHAOS_MESH_API.into(),
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                created_at,
            },
            target: ChaosMeshTarget {
                namespace: namespace.clone(),
                selector: spec.get("selector").cloned().unwrap_or(Value::Null),
                mode: spec.get("mode").cloned().unwrap_or(Value::Null),
                pods: pods.clone(),
            },
            controller_injected_at: injected_at.clone(),
            records,
            first_child,
        });
        fault.injected(details).await?;
        Ok(StepOutputs::default()
            .value("name", name)
            .value("namespace", namespace)
            .value("uid", uid)
            .value("pods", pods)
            .value("injected_at", injected_at))
    }

    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        match (&self.manifest, &self.file) {
            (Some(_), Some(_)) | (None, None) => diags.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    "give exactly one of `manifest` and `file`",
                    Some(&node.span),
                )
                .label("this chaos-mesh step"),
            ),
            (Some(m), None) => {
                let at = node.get("manifest").map(|n| &n.span).unwrap_or(&node.span);
                check_object(m, at, diags);
            }
            (None, Some(_)) => {}
        }
    }

    fn check_files(&self, node: &Node, folder: &manifest::PlanFolder, diags: &mut Vec<PlanDiag>) {
        let Some(f) = &self.file else { return };
        if Templates::is_template(&f.to_string_lossy()) {
            return;
        }
        let at = node.get("file").map(|n| &n.span).unwrap_or(&node.span);
        let (path, display) = folder.resolve(f);
        let file = match manifest::read_named(&path, &display, at) {
            Ok(file) => file,
            Err(e) => return diags.extend(e.diags),
        };
        match manifest::one_object(&file) {
            Ok(doc) => check_object(&doc.to_json(), &doc.span, diags),
            Err(e) => diags.extend(e.diags),
        }
    }
}

/// What a Chaos Mesh object needs before it is sent: the API group, a known kind, a `spec`.
fn check_object(m: &Value, at: &Span, diags: &mut Vec<PlanDiag>) {
    let api = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
    if api != CHAOS_MESH_API && !Templates::is_template(api) {
        diags.push(
            PlanDiag::new(
                Code::InvalidValue,
                format!("apiVersion must be `{CHAOS_MESH_API}`, found `{api}`"),
                Some(at),
            )
            .label("this manifest"),
        );
    }
    if !Templates::is_template(kind) && chaos_mesh_resource(kind).is_none() {
        let kinds = CHAOS_MESH_KINDS.iter().map(|(k, _)| *k);
        diags.push(
            PlanDiag::new(
                Code::InvalidValue,
                format!("`{kind}` is not a Chaos Mesh kind"),
                Some(at),
            )
            .label("this manifest")
            .help(did_you_mean(kind, kinds).unwrap_or_else(|| {
                format!(
                    "kinds: {}",
                    CHAOS_MESH_KINDS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })),
        );
    }
    if m.get("spec").is_none() {
        diags.push(
            PlanDiag::new(
                Code::MissingField,
                "the Chaos Mesh object has no `spec`",
                Some(at),
            )
            .label("this manifest"),
        );
    }
}

/// The Events about one object (by name; callers filter by uid).
async fn object_events(kube: &Kube, namespace: &str, name: &str) -> Vec<Event> {
    let api: ::kube::Api<Event> = ::kube::Api::namespaced(kube.client.clone(), namespace);
    api.list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Every Event in the namespace (to rebuild the children a schedule spawned and collected).
async fn namespace_events(kube: &Kube, namespace: &str) -> Vec<Event> {
    let api: ::kube::Api<Event> = ::kube::Api::namespaced(kube.client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The first spawned child whose `Applied` events show an injection, as an object carrying
/// the records rebuilt from those events.
async fn collected_child(
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
fn own_failure(events: &[Event], name: &str, uid: &str) -> Option<String> {
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
async fn list_children(
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
async fn selection_context(kube: &Kube, obj: &DynamicObject, namespace: &str) -> String {
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

fn recover<'a>(
    record: &'a FaultRecord,
    ctx: &'a RecoverCtx,
) -> BoxFuture<'a, Result<Option<RecoveryReport>, String>> {
    Box::pin(async move {
        let r: Recovery = serde_json::from_value(record.recovery.clone())
            .map_err(|e| format!("fault `{}`: unreadable recovery data: {e}", record.id))?;
        let ar = chaos_mesh_resource(&r.kind)
            .ok_or_else(|| format!("unknown Chaos Mesh kind `{}`", r.kind))?;
        // `chaos clean --run` without flags reaches the cluster the run used.
        let kube = &ctx.kube(&r.kube).await?;
        let remedy = force_remedy(run_dir(ctx).as_deref(), Some(&r.namespace));
        let limit = ctx.timeout.unwrap_or(r.timeout.get());
        let uid = record.details.object_uid().map(str::to_string);
        // A schedule's child kind, from the plan's object (the schedule may be gone already).
        let child_type = match &record.params {
            FaultParams::ChaosMesh(p) => p.spec.get("type").and_then(Value::as_str),
            _ => None,
        }
        .map(str::to_string);
        let composite = children_selector(&r.kind, &r.name).is_some();
        // The children as they are before the parent goes (their records are exact).
        let mut seen: Vec<(String, String, Vec<Value>)> = Vec::new();
        if composite {
            let kids = list_children(
                kube,
                &r.kind,
                child_type.as_deref(),
                &r.namespace,
                &r.name,
                uid.as_deref(),
            )
            .await?;
            for (k, c) in kids {
                seen.push((
                    k,
                    c.metadata.name.clone().unwrap_or_default(),
                    container_records(&c),
                ));
            }
        }
        let mut last_records: Vec<Value> = Vec::new();
        let mut observe = |o: &DynamicObject| {
            let recs = container_records(o);
            if !recs.is_empty() {
                last_records = recs;
            }
        };
        delete_chaos_with_remedy(
            kube,
            &ar,
            Some(&r.namespace),
            &r.name,
            limit,
            ctx.force,
            &mut observe,
            &remedy,
        )
        .await
        .map_err(|e| e.to_string())?;
        if !composite {
            // The controller drops its finalizer as soon as the records are recovered, so the
            // object is often gone before a read sees them; its `Recovered` events stay.
            let mut records = last_records;
            if controller_times(&records).1.is_none() {
                let events = object_events(kube, &r.namespace, &r.name).await;
                let from_events = records_from_events(&events, &r.name);
                records = merge_records(records, from_events);
            }
            let recovered_at = controller_times(&records).1;
            return Ok(Some(RecoveryReport {
                controller_recovered_at: recovered_at,
                records: Some(records),
                ..RecoveryReport::default()
            }));
        }
        let deleted_at = chrono::Utc::now();
        // The garbage collector deletes the children after their parent; ttplan deletes them
        // too and waits until none is left, each through its own finalizer (recovery).
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let kids = list_children(
                kube,
                &r.kind,
                child_type.as_deref(),
                &r.namespace,
                &r.name,
                uid.as_deref(),
            )
            .await?;
            if kids.is_empty() {
                break;
            }
            for (k, c) in kids {
                let cname = c.metadata.name.clone().unwrap_or_default();
                let Some(car) = chaos_mesh_resource(&k) else {
                    continue;
                };
                let mut recs = container_records(&c);
                let left = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(std::time::Duration::from_secs(1));
                let mut observe = |o: &DynamicObject| {
                    let r = container_records(o);
                    if !r.is_empty() {
                        recs = r;
                    }
                };
                let res = delete_chaos_with_remedy(
                    kube,
                    &car,
                    Some(&r.namespace),
                    &cname,
                    left,
                    ctx.force,
                    &mut observe,
                    &remedy,
                )
                .await;
                match seen.iter_mut().find(|(_, n, _)| *n == cname) {
                    Some(s) => s.2 = merge_records(std::mem::take(&mut s.2), recs),
                    None => seen.push((k.clone(), cname.clone(), recs)),
                }
                if let Err(e) = res {
                    if !e.is_not_found() {
                        return Err(format!("{} {}: child {k} {cname}: {e}", r.kind, r.name));
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} {}: its children are still there after {}",
                    r.kind,
                    r.name,
                    humantime::format_duration(limit)
                ));
            }
        }
        // Children the history limit collected long ago live on in the Events.
        let events = namespace_events(kube, &r.namespace).await;
        let child_kind = child_type.clone().unwrap_or_default();
        for n in spawned_children(&events, &r.name, uid.as_deref()) {
            if !seen.iter().any(|(_, s, _)| *s == n) {
                seen.push((child_kind.clone(), n, Vec::new()));
            }
        }
        let mut children = Vec::new();
        for (k, n, recs) in &seen {
            let from_events = records_from_events(&events, n);
            let source = if recs.is_empty() { "events" } else { "records" };
            let all = merge_records(recs.clone(), from_events);
            children.push(child_label(k, n, &all, source));
        }
        children.sort_by(|a, b| a.injected_at.cmp(&b.injected_at));
        let recovered_at = children.iter().filter_map(|c| c.recovered_at.clone()).max();
        let created_at = match &record.details {
            InjectionDetails::ChaosMesh(d) => d.object.created_at.clone(),
            _ => None,
        };
        Ok(Some(RecoveryReport {
            controller_recovered_at: recovered_at,
            children: Some(children),
            parent: Some(ParentTimes {
                created_at,
                deleted_at: deleted_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
            records: Some(Vec::new()),
        }))
    })
}

/// Records seen on the object, completed with what its Events add (a `Recover` the object
/// was deleted too fast to show, a record of a collected child).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_sanitised() {
        assert_eq!(
            dns_name("Lv_P_CPU_preserve_20261128T0900Z-inject"),
            "lv-p-cpu-preserve-20261128t0900z-inject"
        );
        assert_eq!(label_value("Lv_P CPU/x_"), "Lv_P_CPU_x");
        assert!(dns_name(&"a".repeat(100)).len() <= 63);
    }
}
