//! `chaos-mesh`: creates a Chaos Mesh object (StressChaos, NetworkChaos, PodChaos, IOChaos,
//! HTTPChaos, DNSChaos, Schedule, Workflow) and waits until the controller reports it injected.
//! Recovery deletes it and waits until it is gone (the records finalizer means "recovered").

mod children;
mod inject;
mod recover;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::inject::{InjectionWait, Rendered};
use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::diag::{did_you_mean, Code, PlanDiag, Span};
use crate::kube::chaos::{chaos_mesh_resource, CHAOS_MESH_API, CHAOS_MESH_KINDS};
use crate::kube::KubeSettings;
use crate::plan::node::Node;
use crate::plan::template::Templates;
use crate::plan::Duration;
use crate::steps::api::fault_details::InjectionDetails;
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
    const RECOVER: Option<super::RecoverFn> = Some(recover::recover);
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
        let obj = self.object(ctx).await?;
        let (target, kube) = Rendered::render(self, ctx, obj).await?;
        // In the ledger before the object exists: an interrupted create is still recovered.
        let recovery = target.recovery(self, ctx);
        let fault = ctx
            .register_fault(
                Self::KIND,
                serde_json::to_value(&recovery).map_err(StepError::failed)?,
                target.params(),
            )
            .await?;
        ctx.progress(format!("creating {}", target.what()));
        let created = target.create(kube).await?;
        let uid = created.metadata.uid.clone().unwrap_or_default();
        let (current, child) = InjectionWait::start(self, ctx, kube, &target, &uid)
            .until_injected()
            .await?;
        let details = target.details(&created, &current, child);
        let outputs = StepOutputs::default()
            .value("name", target.name.clone())
            .value("namespace", target.namespace.clone())
            .value("uid", uid)
            .value("pods", details.target.pods.clone())
            .value("injected_at", details.controller_injected_at.clone());
        fault.injected(InjectionDetails::ChaosMesh(details)).await?;
        Ok(outputs)
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
#[cfg(test)]
mod tests {
    use crate::kube::names::{dns_name, label_value};

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
