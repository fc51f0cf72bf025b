//! Removing chaos objects: finding every Chaos Mesh / ChaosBlade object, deleting one and
//! waiting (forcing a stuck finalizer when asked), and deleting all of them. Shared by the
//! fault kinds' recovery, `ttplan chaos clean` and the campaign's `before_each`.

use std::time::Duration;

use ::kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use ::kube::discovery::ApiResource;

use super::chaos::{
    chaos_mesh_injection, chaos_mesh_resource, chaosblade_injection, chaosblade_resource,
    Injection, CHAOSBLADE_API, CHAOSBLADE_FINALIZER, CHAOS_MESH_API, CHAOS_MESH_KINDS,
    FORCE_CLEAN_ANNOTATION,
};
use super::{qualified, Kube, KubeError};
use std::path::Path;

/// One chaos object found in the cluster.
pub struct Found {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub object: DynamicObject,
}

impl Found {
    pub fn name(&self) -> String {
        self.object.metadata.name.clone().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<String> {
        self.object.metadata.namespace.clone()
    }

    pub fn state(&self) -> String {
        if self.object.metadata.deletion_timestamp.is_some() {
            return "deleting".into();
        }
        let inj = if self.resource.kind == "ChaosBlade" {
            chaosblade_injection(&self.object)
        } else {
            chaos_mesh_injection(&self.resource.kind, &self.object)
        };
        match inj {
            Injection::Pending => "pending".into(),
            Injection::Injected => "injected".into(),
            Injection::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// Every Chaos Mesh and ChaosBlade object in `namespace` (or all). Products whose CRDs are
/// missing are reported in the second list instead of failing.
///
/// # Errors
/// Unreachable cluster or API errors other than a missing CRD.
pub async fn find_chaos(
    kube: &Kube,
    namespace: Option<&str>,
) -> Result<(Vec<Found>, Vec<String>), KubeError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut targets: Vec<(ApiResource, bool, &'static str, &'static str)> = CHAOS_MESH_KINDS
        .iter()
        .filter_map(|(k, _)| {
            chaos_mesh_resource(k).map(|r| (r, true, "Chaos Mesh", CHAOS_MESH_API))
        })
        .collect();
    targets.push((chaosblade_resource(), false, "ChaosBlade", CHAOSBLADE_API));
    for (ar, namespaced, product, api_version) in targets {
        if let Err(e) = kube
            .ensure_resource(product, api_version, &ar.kind, &ar.plural)
            .await
        {
            match e {
                KubeError::MissingCrd { .. } => {
                    missing.push(e.to_string());
                    continue;
                }
                other => return Err(other),
            }
        }
        let api = kube.dynamic(&ar, if namespaced { namespace } else { None });
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(kube.err(format!("listing {}", ar.kind)))?;
        for object in list.items {
            found.push(Found {
                resource: ar.clone(),
                namespaced,
                object,
            });
        }
    }
    Ok((found, missing))
}

/// The command that releases a Chaos Mesh object stuck on its finalizer: for a run's faults
/// `chaos clean --run <dir> --force`, else `chaos clean --all --force -n <ns>`.
pub fn force_remedy(run_dir: Option<&Path>, namespace: Option<&str>) -> String {
    match (run_dir, namespace) {
        (Some(d), _) => format!("ttplan chaos clean --run {} --force", d.display()),
        (None, Some(ns)) => format!("ttplan chaos clean --all --force -n {ns}"),
        (None, None) => "ttplan chaos clean --all --force".into(),
    }
}

/// Deletes one object and waits; with `force`, a Chaos Mesh object stuck on its finalizer gets
/// the forced-cleanup annotation and a second wait.
///
/// # Errors
/// The object is still there, or the API failed.
pub async fn delete_chaos(
    kube: &Kube,
    ar: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    limit: Duration,
    force: bool,
    observe: &mut (dyn FnMut(&DynamicObject) + Send),
) -> Result<(), KubeError> {
    let remedy = force_remedy(None, namespace);
    delete_chaos_with_remedy(kube, ar, namespace, name, limit, force, observe, &remedy).await
}

/// [`delete_chaos`] naming `remedy` (a command that works) when the finalizer is stuck.
///
/// # Errors
/// The object is still there, or the API failed.
#[allow(clippy::too_many_arguments)]
pub async fn delete_chaos_with_remedy(
    kube: &Kube,
    ar: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    limit: Duration,
    force: bool,
    observe: &mut (dyn FnMut(&DynamicObject) + Send),
    remedy: &str,
) -> Result<(), KubeError> {
    let chaos_mesh = ar.group == "chaos-mesh.org";
    if force && chaos_mesh {
        // Already being deleted (an earlier recovery timed out on it): force at once rather
        // than wait the whole limit again.
        let stuck = kube
            .get_opt(ar, namespace, name)
            .await?
            .is_some_and(|o| o.metadata.deletion_timestamp.is_some());
        if stuck {
            annotate_forced(kube, ar, namespace, name).await?;
        }
    }
    match kube.delete_and_wait(ar, namespace, name, limit, &mut *observe).await {
        Ok(()) => Ok(()),
        Err(KubeError::DeleteTimeout(msg)) if force && chaos_mesh => {
            annotate_forced(kube, ar, namespace, name).await?;
            kube.delete_and_wait(ar, namespace, name, limit, observe)
                .await
                .map_err(|e| match e {
                    KubeError::DeleteTimeout(e) => {
                        KubeError::DeleteTimeout(format!("{msg}; even after forced cleanup: {e}"))
                    }
                    other => other,
                })
        }
        // ChaosBlade: the operator strips its finalizer itself only from blades `Destroying`
        // for longer than `--remove-blade-interval` (72h by default; chaosblade-operator
        // `periodicallyCleanUpBlade`); `--force` does the same now, with the same merge patch.
        Err(KubeError::DeleteTimeout(msg)) if force && ar.group == "chaosblade.io" => {
            let patch = serde_json::json!({"metadata": {"finalizers": []}});
            kube.dynamic(ar, namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube.err(format!("removing the finalizers of {} {}", ar.kind, qualified(namespace, name))))?;
            kube.delete_and_wait(ar, namespace, name, limit, observe)
                .await
                .map_err(|e| match e {
                    KubeError::DeleteTimeout(e) => {
                        KubeError::DeleteTimeout(format!("{msg}; even after removing its finalizers: {e}"))
                    }
                    other => other,
                })
        }
        Err(KubeError::DeleteTimeout(msg)) if ar.group == "chaosblade.io" => Err(KubeError::DeleteTimeout(format!(
            "{msg}; the ChaosBlade operator could not destroy the experiment (see its status) — `ttplan chaos clean --all --force` (or `--run RUN_DIR --force`) removes {CHAOSBLADE_FINALIZER}"
        ))),
        Err(KubeError::DeleteTimeout(msg)) if chaos_mesh => Err(KubeError::DeleteTimeout(format!(
            "{msg}; Chaos Mesh may be unable to recover the pods — `{remedy}` sets {FORCE_CLEAN_ANNOTATION}=forced"
        ))),
        Err(e) => Err(e),
    }
}

/// controllers/common/finalizers `CleanReconciler`: this annotation releases the finalizer
/// without recovering.
async fn annotate_forced(
    kube: &Kube,
    ar: &ApiResource,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), KubeError> {
    let patch =
        serde_json::json!({"metadata": {"annotations": {FORCE_CLEAN_ANNOTATION: "forced"}}});
    match kube
        .dynamic(ar, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube.err(format!(
            "annotating {} {} for forced cleanup",
            ar.kind,
            qualified(namespace, name)
        ))(e)),
    }
}

/// What [`remove_all_chaos`] did.
#[derive(Debug, Default)]
pub struct CleanReport {
    /// `Kind ns/name` of every object removed.
    pub deleted: Vec<String>,
    /// Objects that are still there.
    pub errors: Vec<String>,
    /// Products not installed (missing CRDs).
    pub notes: Vec<String>,
}

/// `chaos clean --all`: deletes every Chaos Mesh / ChaosBlade object in `namespace` (or all)
/// and waits until each is gone — also the campaign's `before_each` cleanup.
///
/// # Errors
/// The objects could not be listed.
pub async fn remove_all_chaos(
    kube: &Kube,
    namespace: Option<&str>,
    force: bool,
    limit: Duration,
) -> Result<CleanReport, KubeError> {
    let (found, missing) = find_chaos(kube, namespace).await?;
    let mut report = CleanReport {
        notes: missing,
        ..Default::default()
    };
    // Schedules and workflows first: they would spawn new chaos while children are deleted.
    let mut ordered: Vec<&Found> = found.iter().collect();
    ordered.sort_by_key(|f| !matches!(f.resource.kind.as_str(), "Schedule" | "Workflow"));
    for f in ordered {
        let ns = if f.namespaced { f.namespace() } else { None };
        let what = format!(
            "{} {}",
            f.resource.kind,
            qualified(ns.as_deref(), &f.name())
        );
        match delete_chaos(
            kube,
            &f.resource,
            ns.as_deref(),
            &f.name(),
            limit,
            force,
            &mut |_| {},
        )
        .await
        {
            Ok(()) => report.deleted.push(what),
            Err(e) if e.is_not_found() => report.deleted.push(what),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    Ok(report)
}
