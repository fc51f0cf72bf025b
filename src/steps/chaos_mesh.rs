//! `chaos-mesh`: creates a Chaos Mesh object (StressChaos, NetworkChaos, PodChaos, IOChaos,
//! HTTPChaos, DNSChaos, Schedule, Workflow) and waits until the controller reports it injected.
//! Recovery deletes it and waits until it is gone (the records finalizer means "recovered").

use std::path::PathBuf;

use ::kube::api::{DynamicObject, ListParams};
use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::chaos_admin::delete_chaos;
use crate::diag::{did_you_mean, Code, PlanDiag};
use crate::engine::faults::{FaultRecord, RecoverCtx};
use crate::kube::chaos::{
    affected_pods, chaos_mesh_injection, chaos_mesh_resource, container_records, controller_times,
    Injection, CHAOS_MESH_API, CHAOS_MESH_KINDS,
};
use crate::kube::{poll_interval, qualified, Kube, KubeSettings};
use crate::plan::node::Node;
use crate::plan::template::Templates;
use crate::plan::Duration;

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
}

fn two_minutes() -> Duration {
    Duration::from_secs(120)
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
    fn object(&self, ctx: &StepCtx) -> Result<Value, StepError> {
        match (&self.manifest, &self.file) {
            (Some(m), None) => Ok(m.clone()),
            (None, Some(f)) => {
                let path = if f.is_absolute() {
                    f.clone()
                } else {
                    ctx.plan_dir().join(f)
                };
                let text = std::fs::read_to_string(&path)
                    .map_err(StepError::io(format!("reading {}", path.display())))?;
                serde_yaml::from_str(&text).map_err(|e| {
                    StepError::failed(format!("{}: not a YAML/JSON object: {e}", path.display()))
                })
            }
            _ => Err(StepError::failed(
                "give exactly one of `manifest` and `file`",
            )),
        }
    }
}

/// A DNS-1123 name from free text (`Lv_P_CPU_x-inject` → `lv-p-cpu-x-inject`).
pub fn dns_name(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// A label value (≤ 63 chars of `[A-Za-z0-9_.-]`, alphanumeric at both ends).
pub fn label_value(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(63);
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[async_trait::async_trait]
impl Step for ChaosMeshConfig {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let mut obj = self.object(ctx)?;
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
        let params =
            json!({ "kind": kind, "spec": obj.get("spec").cloned().unwrap_or(Value::Null) });
        let id = ctx
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

        let deadline = tokio::time::Instant::now() + self.inject_timeout.get();
        let current = loop {
            let cur = kube
                .get_opt(&ar, Some(&namespace), &name)
                .await
                .map_err(|e| StepError::failed(e.to_string()))?
                .ok_or_else(|| {
                    StepError::failed(format!("{what} disappeared before it was injected"))
                })?;
            match chaos_mesh_injection(&kind, &cur) {
                Injection::Injected => break cur,
                Injection::Failed(e) => {
                    return Err(StepError::failed(format!("{what} failed to inject: {e}")))
                }
                Injection::Pending => {}
            }
            if let Some(reason) = no_target_event(kube, &namespace, &name).await {
                return Err(StepError::failed(format!(
                    "{what} failed to inject: {reason}"
                )));
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
        let details = json!({
            "object": {"apiVersion": CHAOS_MESH_API, "kind": kind, "namespace": namespace, "name": name, "uid": uid},
            "target": {
                "namespace": namespace,
                "selector": obj.pointer("/spec/selector").cloned().unwrap_or(Value::Null),
                "mode": obj.pointer("/spec/mode").cloned().unwrap_or(Value::Null),
                "pods": pods,
            },
            "controller_injected_at": injected_at,
            "records": records,
        });
        ctx.fault_injected(&id, details).await?;
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
            (None, Some(_)) => {}
        }
    }
}

/// The latest time the controller reported `reason` for the object, from its Events.
async fn event_time(kube: &Kube, namespace: &str, name: &str, reason: &str) -> Option<String> {
    let api: ::kube::Api<k8s_openapi::api::core::v1::Event> =
        ::kube::Api::namespaced(kube.client.clone(), namespace);
    let events = api.list(&ListParams::default()).await.ok()?;
    events
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.last_timestamp.or(e.first_timestamp).map(|t| t.0))
        .max()
        .map(|t| t.to_string())
}

/// Chaos Mesh reports "selected nothing" as a Failed event on the object.
async fn no_target_event(kube: &Kube, namespace: &str, name: &str) -> Option<String> {
    let api: ::kube::Api<k8s_openapi::api::core::v1::Event> =
        ::kube::Api::namespaced(kube.client.clone(), namespace);
    let events = api.list(&ListParams::default()).await.ok()?;
    events
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter(|e| e.reason.as_deref() == Some("Failed"))
        .filter_map(|e| e.message)
        .find(|m| m.contains("no target"))
}

fn recover<'a>(
    record: &'a FaultRecord,
    ctx: &'a RecoverCtx,
) -> BoxFuture<'a, Result<Option<Value>, String>> {
    Box::pin(async move {
        let r: Recovery = serde_json::from_value(record.recovery.clone())
            .map_err(|e| format!("fault `{}`: unreadable recovery data: {e}", record.id))?;
        let ar = chaos_mesh_resource(&r.kind)
            .ok_or_else(|| format!("unknown Chaos Mesh kind `{}`", r.kind))?;
        // `chaos clean --run` without flags reaches the cluster the run used.
        let kube = &ctx.kube(&r.kube).await?;
        let mut last_records: Vec<Value> = Vec::new();
        let mut observe = |o: &DynamicObject| {
            let recs = container_records(o);
            if !recs.is_empty() {
                last_records = recs;
            }
        };
        let limit = ctx.timeout.unwrap_or(r.timeout.get());
        delete_chaos(
            kube,
            &ar,
            Some(&r.namespace),
            &r.name,
            limit,
            ctx.force,
            &mut observe,
        )
        .await
        .map_err(|e| e.to_string())?;
        // The controller drops its finalizer as soon as the records are recovered, so the
        // object is often gone before a read sees them; its `Recovered` events stay.
        let recovered_at = match controller_times(&last_records).1 {
            Some(t) => Some(t),
            None => event_time(kube, &r.namespace, &r.name, "Recovered").await,
        };
        Ok(Some(
            json!({ "controller_recovered_at": recovered_at, "records": last_records }),
        ))
    })
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
