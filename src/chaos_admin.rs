//! `ttplan chaos ls|clean`: find chaos left in a cluster and remove it — the campaign's
//! cleanup-before-start, and the way back after a run was killed with -9.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use ::kube::discovery::ApiResource;

use crate::cli::{ChaosCommand, KubeArgs};
use crate::engine::faults::{FaultLedger, RecoverSettings};
use crate::engine::labels::write_fault_labels;
use crate::engine::manifest::MANIFEST_FILE;
use crate::exit;
use crate::kube::chaos::{
    chaos_mesh_injection, chaos_mesh_resource, chaosblade_injection, chaosblade_resource,
    Injection, CHAOSBLADE_API, CHAOSBLADE_FINALIZER, CHAOS_MESH_API, CHAOS_MESH_KINDS,
    FORCE_CLEAN_ANNOTATION,
};
use crate::kube::{qualified, Kube, KubeAccess, KubeError};

pub fn run(cmd: ChaosCommand) -> u8 {
    let rt = match crate::commands::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        match cmd {
            ChaosCommand::Ls {
                kube,
                all_namespaces,
            } => ls(&kube, all_namespaces).await,
            ChaosCommand::Clean {
                run: Some(run_dir),
                force,
                timeout,
                kube,
                ..
            } => clean_run(&run_dir, &kube, force, timeout.into()).await,
            ChaosCommand::Clean {
                force,
                timeout,
                kube,
                ..
            } => clean_all(&kube, force, timeout.into()).await,
        }
    })
}

/// One chaos object found in the cluster.
pub struct Found {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub object: DynamicObject,
}

impl Found {
    fn name(&self) -> String {
        self.object.metadata.name.clone().unwrap_or_default()
    }

    fn namespace(&self) -> Option<String> {
        self.object.metadata.namespace.clone()
    }

    fn state(&self) -> String {
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

async fn connect(args: &KubeArgs) -> Result<Arc<KubeAccess>, u8> {
    let access = Arc::new(KubeAccess::new(args.settings()));
    if let Err(e) = access.get().await {
        eprintln!("error: {e}");
        return Err(exit::INVALID);
    }
    Ok(access)
}

async fn ls(args: &KubeArgs, all_namespaces: bool) -> u8 {
    let access = match connect(args).await {
        Ok(a) => a,
        Err(c) => return c,
    };
    let Ok(kube) = access.get().await else {
        return exit::INVALID;
    };
    let ns = if all_namespaces {
        None
    } else {
        args.namespace.as_deref()
    };
    match find_chaos(kube, ns).await {
        Ok((found, missing)) => {
            for m in &missing {
                eprintln!("note: {m}");
            }
            if found.is_empty() {
                crate::out(&format!(
                    "no chaos objects{}\n",
                    ns.map(|n| format!(" in namespace {n}")).unwrap_or_default()
                ));
                return exit::SUCCESS;
            }
            crate::out(&format!(
                "{:<14} {:<20} {:<40} {:<22} STATE\n",
                "KIND", "NAMESPACE", "NAME", "CREATED"
            ));
            for f in &found {
                let created = f
                    .object
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                crate::out(&format!(
                    "{:<14} {:<20} {:<40} {:<22} {}\n",
                    f.resource.kind,
                    f.namespace().unwrap_or_else(|| "-".into()),
                    f.name(),
                    created,
                    f.state()
                ));
            }
            exit::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::STEP_FAILED
        }
    }
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
        Err(KubeError::Other(msg)) if force && chaos_mesh => {
            annotate_forced(kube, ar, namespace, name).await?;
            kube.delete_and_wait(ar, namespace, name, limit, observe)
                .await
                .map_err(|e| KubeError::Other(format!("{msg}; even after forced cleanup: {e}")))
        }
        // ChaosBlade: the operator strips its finalizer itself only from blades `Destroying`
        // for longer than `--remove-blade-interval` (72h by default; chaosblade-operator
        // `periodicallyCleanUpBlade`); `--force` does the same now, with the same merge patch.
        Err(KubeError::Other(msg)) if force && ar.group == "chaosblade.io" => {
            let patch = serde_json::json!({"metadata": {"finalizers": []}});
            kube.dynamic(ar, namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube.err(format!("removing the finalizers of {} {}", ar.kind, qualified(namespace, name))))?;
            kube.delete_and_wait(ar, namespace, name, limit, observe)
                .await
                .map_err(|e| KubeError::Other(format!("{msg}; even after removing its finalizers: {e}")))
        }
        Err(KubeError::Other(msg)) if ar.group == "chaosblade.io" => Err(KubeError::Other(format!(
            "{msg}; the ChaosBlade operator could not destroy the experiment (see its status) — `ttplan chaos clean --all --force` (or `--run RUN_DIR --force`) removes {CHAOSBLADE_FINALIZER}"
        ))),
        Err(KubeError::Other(msg)) if chaos_mesh => Err(KubeError::Other(format!(
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

async fn clean_all(args: &KubeArgs, force: bool, limit: Duration) -> u8 {
    let access = match connect(args).await {
        Ok(a) => a,
        Err(c) => return c,
    };
    let Ok(kube) = access.get().await else {
        return exit::INVALID;
    };
    match remove_all_chaos(kube, args.namespace.as_deref(), force, limit).await {
        Ok(report) => {
            for m in &report.notes {
                eprintln!("note: {m}");
            }
            for what in &report.deleted {
                crate::out(&format!("deleted {what}\n"));
            }
            for e in &report.errors {
                eprintln!("error: {e}");
            }
            if !report.errors.is_empty() {
                exit::STEP_FAILED
            } else {
                if report.deleted.is_empty() {
                    crate::out("no chaos objects found\n");
                }
                exit::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::STEP_FAILED
        }
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

async fn clean_run(run_dir: &Path, args: &KubeArgs, force: bool, limit: Duration) -> u8 {
    let settings = RecoverSettings {
        timeout: Some(limit),
        kube: Arc::new(KubeAccess::new(args.settings())),
        force,
        children: Default::default(),
    };
    match recover_run(run_dir, &settings, "ttplan chaos clean").await {
        Err(e) => {
            eprintln!(
                "error: cannot read the fault ledger in {}: {e}",
                run_dir.display()
            );
            exit::INVALID
        }
        Ok(r) if r.pending.is_empty() => {
            crate::out(&format!(
                "nothing to recover: every fault in {} is recovered\n",
                r.ledger.display()
            ));
            exit::SUCCESS
        }
        Ok(r) => {
            for f in r.faults.iter().filter(|f| r.pending.contains(&f.id)) {
                match &f.error {
                    Some(e) if f.needs_recovery() => {
                        eprintln!("error: fault `{}` NOT recovered: {e}", f.id)
                    }
                    _ => crate::out(&format!("recovered fault `{}` ({})\n", f.id, f.kind)),
                }
            }
            if r.failures.is_empty() {
                exit::SUCCESS
            } else {
                exit::STEP_FAILED
            }
        }
    }
}

/// What [`recover_run`] did.
pub struct RunRecovery {
    pub ledger: std::path::PathBuf,
    /// Ids that needed recovery.
    pub pending: Vec<String>,
    /// Ids that still need it, with why.
    pub failures: Vec<(String, String)>,
    pub faults: Vec<crate::engine::faults::FaultRecord>,
}

/// `chaos clean --run`: recovers what a run's ledger lists as unrecovered and brings its
/// manifest and labels up to date — after a kill -9, and before a campaign reruns it.
///
/// # Errors
/// The ledger cannot be read (a run that never injected has none: `NotFound`).
pub async fn recover_run(
    run_dir: &Path,
    settings: &RecoverSettings,
    by: &str,
) -> std::io::Result<RunRecovery> {
    let ledger = FaultLedger::open(run_dir)?;
    let pending: Vec<String> = ledger
        .snapshot()
        .await
        .iter()
        .filter(|f| f.needs_recovery())
        .map(|f| f.id.clone())
        .collect();
    let failures = if pending.is_empty() {
        Vec::new()
    } else {
        ledger.recover_pending(None, by, settings).await
    };
    let faults = ledger.snapshot().await;
    if !pending.is_empty() {
        update_run_records(run_dir, &faults);
    }
    Ok(RunRecovery {
        ledger: ledger.path().to_path_buf(),
        pending,
        failures,
        faults,
    })
}

/// Brings the run's manifest and labels up to date with the ledger, when they exist.
fn update_run_records(run_dir: &Path, faults: &[crate::engine::faults::FaultRecord]) {
    let manifest_path = run_dir.join(MANIFEST_FILE);
    let Ok(text) = std::fs::read_to_string(&manifest_path) else {
        return;
    };
    let Ok(mut manifest) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    if let Some(m) = manifest.as_object_mut() {
        m.insert(
            "faults".into(),
            serde_json::to_value(faults).unwrap_or_default(),
        );
    }
    let exp = manifest
        .pointer("/run/exp_name")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let id = manifest
        .pointer("/run/id")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if let Err(e) = crate::atomic_write::write_json_atomic(&manifest_path, &manifest) {
        eprintln!("warning: cannot update {}: {e}", manifest_path.display());
    }
    if let Err(e) = write_fault_labels(run_dir, &exp, &id, faults) {
        eprintln!("warning: cannot write fault labels: {e}");
    }
}
