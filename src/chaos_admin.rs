//! `ttplan chaos ls|clean`: find chaos left in a cluster and remove it — the campaign's
//! cleanup-before-start, and the way back after a run was killed with -9.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{ChaosCommand, KubeArgs};
use crate::engine::faults::RecoverSettings;
use crate::engine::recovery::recover_run;
use crate::exit;
use crate::kube::cleanup::{find_chaos, remove_all_chaos};
use crate::kube::KubeAccess;

pub fn run(cmd: ChaosCommand) -> u8 {
    let rt = match crate::engine::launch::runtime() {
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

async fn clean_run(run_dir: &Path, args: &KubeArgs, force: bool, limit: Duration) -> u8 {
    let settings = RecoverSettings {
        timeout: Some(limit),
        kube: Arc::new(KubeAccess::new(args.settings())),
        force,
        children: Default::default(),
        recover_fn: crate::steps::recover_fn,
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
