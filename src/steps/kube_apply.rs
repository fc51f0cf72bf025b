//! `kube-apply`: server-side applies manifests (files, folders, inline, multi-document) as
//! `ttplan`, optionally deleting them when the run ends.

use std::path::{Path, PathBuf};

use ::kube::api::{DynamicObject, GroupVersionKind};
use ::kube::discovery::{pinned_kind, Scope};
use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::diag::{Code, PlanDiag};
use crate::kube::{qualified, Kube, KubeSettings};
use crate::plan::node::{Node, Value as NodeValue};
use crate::plan::template::Templates;
use crate::plan::Duration;
use crate::steps::api::fault_details::{FaultParams, RecoveryReport, TeardownParams};
use crate::steps::api::faults::{FaultRecord, RecoverCtx};
use crate::steps::api::manifest;

/// Applies Kubernetes manifests.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeApplyConfig {
    /// Manifest files or folders (their `*.yaml`, `*.yml`, `*.json`, in name order), relative
    /// to the plan's folder; files may hold several YAML documents.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Inline manifests: one object, a list of objects, or a multi-document YAML string.
    #[serde(default)]
    pub manifest: Option<Value>,
    /// Namespace for namespaced objects that name none; default `-n`, else the context's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Delete what was applied when the run ends (in reverse order).
    #[serde(default)]
    pub delete_on_teardown: bool,
    /// How long teardown waits for each object to be gone.
    #[serde(default = "two_minutes")]
    pub teardown_timeout: Duration,
}

fn two_minutes() -> Duration {
    Duration::from_secs(120)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Applied {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Teardown {
    objects: Vec<Applied>,
    timeout: Duration,
    kube: KubeSettings,
}

impl StepConfig for KubeApplyConfig {
    const KIND: &'static str = "kube-apply";
    const ABOUT: &'static str = "server-side applies manifests (files, folders, inline), optionally deleting them at the end";
    const RECOVER: Option<super::RecoverFn> = Some(teardown);
}

fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, StepError> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(StepError::io(format!("reading {}", path.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

impl KubeApplyConfig {
    fn documents(&self, plan_dir: &Path) -> Result<Vec<Value>, StepError> {
        let mut docs = Vec::new();
        for f in &self.files {
            let path = if f.is_absolute() {
                f.clone()
            } else {
                plan_dir.join(f)
            };
            for file in manifest_files(&path)? {
                let source =
                    manifest::read(&file).map_err(|e| StepError::failed(manifest::plain(&e)))?;
                docs.extend(
                    manifest::objects(&source)
                        .map_err(|e| StepError::failed(manifest::plain(&e)))?,
                );
            }
        }
        match &self.manifest {
            Some(Value::String(text)) => docs.extend(
                manifest::objects(&manifest::source("manifest", text.clone()))
                    .map_err(|e| StepError::failed(manifest::plain(&e)))?,
            ),
            Some(Value::Array(items)) => docs.extend(items.iter().cloned()),
            Some(obj @ Value::Object(_)) => docs.push(obj.clone()),
            Some(_) | None => {}
        }
        Ok(docs)
    }
}

/// A manifest checked (apiVersion, kind and name present) and resolved against the cluster's
/// API: where it goes and what `Applied` records.
async fn resolve_object(
    kube: &Kube,
    doc: Value,
    default_ns: &str,
) -> Result<(::kube::discovery::ApiResource, Applied, DynamicObject), StepError> {
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(StepError::failed(format!(
            "a manifest lacks apiVersion, kind or metadata.name: {}",
            truncate(&doc.to_string(), 160)
        )));
    }
    let (ar, namespaced) = resolve(kube, &api_version, &kind)
        .await
        .map_err(StepError::Failed)?;
    let namespace = namespaced.then(|| {
        doc.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| default_ns.to_string())
    });
    let obj: DynamicObject = serde_json::from_value(doc)
        .map_err(|e| StepError::failed(format!("{kind} {name}: {e}")))?;
    Ok((
        ar,
        Applied {
            api_version,
            kind,
            namespace,
            name,
        },
        obj,
    ))
}

async fn resolve(
    kube: &Kube,
    api_version: &str,
    kind: &str,
) -> Result<(::kube::discovery::ApiResource, bool), String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = pinned_kind(&kube.client, &gvk).await.map_err(|e| {
        format!(
            "{api_version} {kind}: the cluster does not serve it ({})",
            crate::kube::KubeError::from_kube("discovery", &kube.server, e)
        )
    })?;
    Ok((ar, caps.scope == Scope::Namespaced))
}

#[async_trait::async_trait]
impl Step for KubeApplyConfig {
    fn needs_cluster(&self) -> bool {
        true
    }

    fn check_files(&self, node: &Node, folder: &manifest::PlanFolder, diags: &mut Vec<PlanDiag>) {
        let items = node.get("files").and_then(|n| match &n.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        });
        for (i, f) in self.files.iter().enumerate() {
            if Templates::is_template(&f.to_string_lossy()) {
                continue;
            }
            let at = items
                .and_then(|items| items.get(i))
                .map_or(&node.span, |n| &n.span);
            let (path, display) = folder.resolve(f);
            let files = match manifest_files(&path) {
                Ok(files) => files,
                Err(e) => {
                    diags.push(
                        PlanDiag::new(Code::Io, e.to_string(), Some(at)).label("this folder"),
                    );
                    continue;
                }
            };
            for file in files {
                let shown = match file.strip_prefix(&path) {
                    Ok(rel) if !rel.as_os_str().is_empty() => {
                        Path::new(&display).join(rel).display().to_string()
                    }
                    _ => display.clone(),
                };
                match manifest::read_named(&file, &shown, at) {
                    Ok(source) => {
                        if let Err(e) = manifest::objects(&source) {
                            diags.extend(e.diags);
                        }
                    }
                    Err(e) => diags.extend(e.diags),
                }
            }
        }
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        // Reading and parsing files is blocking work: off the async threads.
        let (this, dir) = (self.clone(), ctx.plan_dir().to_path_buf());
        let docs = tokio::task::spawn_blocking(move || this.documents(&dir))
            .await
            .map_err(StepError::failed)??;
        if docs.is_empty() {
            return Err(StepError::failed(
                "no manifests to apply (`files` and `manifest` hold no object)",
            ));
        }
        let kube = ctx.kube().await?;
        let default_ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| kube.namespace.clone());
        // Resolve and check everything before changing anything.
        let mut plan = Vec::new();
        for doc in docs {
            plan.push(resolve_object(kube, doc, &default_ns).await?);
        }
        if self.delete_on_teardown {
            let td = Teardown {
                timeout: self.teardown_timeout,
                objects: plan.iter().map(|(_, a, _)| a.clone()).collect(),
                kube: ctx.kube_settings().clone(),
            };
            ctx.register_teardown(
                Self::KIND,
                serde_json::to_value(&td).map_err(StepError::failed)?,
                FaultParams::Teardown(TeardownParams {
                    objects: td.objects.len(),
                }),
            )
            .await?;
        }
        let total = plan.len();
        let mut applied = Vec::new();
        for (i, (ar, a, obj)) in plan.into_iter().enumerate() {
            if ctx.cancel_token().is_cancelled() {
                return Err(StepError::Cancelled);
            }
            ctx.progress(format!("{}/{total} applied", i));
            kube.apply(&ar, a.namespace.as_deref(), &obj)
                .await
                .map_err(|e| StepError::failed(e.to_string()))?;
            applied.push(format!(
                "{} {}",
                a.kind,
                qualified(a.namespace.as_deref(), &a.name)
            ));
        }
        Ok(StepOutputs::default().value("applied", applied))
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

fn teardown<'a>(
    record: &'a FaultRecord,
    ctx: &'a RecoverCtx,
) -> BoxFuture<'a, Result<Option<RecoveryReport>, String>> {
    Box::pin(async move {
        let td: Teardown = serde_json::from_value(record.recovery.clone())
            .map_err(|e| format!("unreadable teardown data: {e}"))?;
        let kube = &ctx.kube(&td.kube).await?;
        let mut errors = Vec::new();
        for a in td.objects.iter().rev() {
            let r = async {
                let (ar, _) = resolve(kube, &a.api_version, &a.kind).await?;
                kube.delete_and_wait(
                    &ar,
                    a.namespace.as_deref(),
                    &a.name,
                    ctx.timeout.unwrap_or(td.timeout.get()),
                    |_| {},
                )
                .await
                .map_err(|e| e.to_string())
            }
            .await;
            if let Err(e) = r {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(None)
        } else {
            Err(errors.join("; "))
        }
    })
}
