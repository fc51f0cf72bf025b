//! `kube-apply`: server-side applies manifests (files, folders, inline, multi-document) as
//! `ttplan`, optionally deleting them when the run ends.

use std::path::{Path, PathBuf};

use ::kube::api::{DynamicObject, GroupVersionKind};
use ::kube::discovery::{pinned_kind, Scope};
use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::kube::{qualified, Kube, KubeSettings};
use crate::plan::Duration;
use crate::steps::api::faults::{FaultRecord, RecoverCtx};

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

/// Every document of a (multi-document) YAML text that is an object.
///
/// # Errors
/// YAML syntax errors, with the source named.
pub fn yaml_documents(text: &str, source: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v =
            Value::deserialize(doc).map_err(|e| format!("{source}: document {}: {e}", i + 1))?;
        match v {
            Value::Null => {}
            Value::Object(_) => out.push(v),
            Value::Array(items) => out.extend(items.into_iter().filter(|x| !x.is_null())),
            other => {
                return Err(format!(
                    "{source}: document {} is not an object: {other}",
                    i + 1
                ))
            }
        }
    }
    Ok(out)
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
                let text = std::fs::read_to_string(&file)
                    .map_err(StepError::io(format!("reading {}", file.display())))?;
                docs.extend(
                    yaml_documents(&text, &file.display().to_string())
                        .map_err(StepError::Failed)?,
                );
            }
        }
        match &self.manifest {
            Some(Value::String(text)) => {
                docs.extend(yaml_documents(text, "manifest").map_err(StepError::Failed)?)
            }
            Some(Value::Array(items)) => docs.extend(items.iter().cloned()),
            Some(obj @ Value::Object(_)) => docs.push(obj.clone()),
            Some(_) | None => {}
        }
        Ok(docs)
    }
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
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let docs = self.documents(ctx.plan_dir())?;
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
                    .unwrap_or_else(|| default_ns.clone())
            });
            let obj: DynamicObject = serde_json::from_value(doc)
                .map_err(|e| StepError::failed(format!("{kind} {name}: {e}")))?;
            plan.push((
                ar,
                Applied {
                    api_version,
                    kind,
                    namespace,
                    name,
                },
                obj,
            ));
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
                json!({"objects": td.objects.len()}),
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
) -> BoxFuture<'a, Result<Option<Value>, String>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_yields_objects_and_skips_empty_documents() {
        let docs = yaml_documents("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n", "t").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["metadata"]["name"], "b");
        assert!(yaml_documents("a: [1\n", "t")
            .unwrap_err()
            .starts_with("t: document 1"));
    }
}
