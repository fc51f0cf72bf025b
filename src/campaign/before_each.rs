//! `before_each`: bring a slot's cluster to a known state before an experiment starts.
//!
//! The checks run in order: remove leftover chaos (the `chaos clean --all` code), then wait
//! until the namespace's pods are Ready. A steady-state hypothesis (probes) is the next check
//! to add here: a [`Check`] variant that polls until the hypothesis holds within the timeout.

use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams};
use k8s_openapi::api::core::v1::Pod;

use super::model::{BeforeEach, Ready};
use crate::kube::cleanup::remove_all_chaos;
use crate::kube::{name_selected, pod_is_ready, poll_interval, KubeAccess};

/// One precondition of `before_each`.
enum Check<'a> {
    CleanChaos,
    PodsReady(&'a Ready),
}

/// Runs every configured check within `before_each.timeout`; returns what was done, or why
/// the cluster is not fit to start an experiment.
///
/// # Errors
/// A check failed or the timeout passed.
pub async fn prepare_cluster(
    be: &BeforeEach,
    kube: &KubeAccess,
    namespace: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut checks = Vec::new();
    if be.clean_chaos {
        checks.push(Check::CleanChaos);
    }
    if let Some(r) = &be.ready {
        checks.push(Check::PodsReady(r));
    }
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    let limit = be.timeout.get();
    let started = Instant::now();
    let client = kube
        .get()
        .await
        .map_err(|e| format!("{e} (before_each needs the cluster; `before_each: {{clean_chaos: false}}` turns the cleanup off)"))?;
    let mut notes = Vec::new();
    for check in checks {
        let left = limit.saturating_sub(started.elapsed());
        let r = tokio::time::timeout(left, async {
            match check {
                Check::CleanChaos => {
                    let report = remove_all_chaos(client, namespace, false, left)
                        .await
                        .map_err(|e| e.to_string())?;
                    if !report.errors.is_empty() {
                        return Err(format!(
                            "leftover chaos could not be removed: {}",
                            report.errors.join("; ")
                        ));
                    }
                    if !report.deleted.is_empty() {
                        notes.push(format!(
                            "removed leftover chaos: {}",
                            report.deleted.join(", ")
                        ));
                    }
                    Ok(())
                }
                Check::PodsReady(r) => {
                    let ns = namespace.unwrap_or(&client.namespace);
                    wait_pods_ready(client, ns, r, left).await
                }
            }
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(format!(
                    "before_each did not finish within {}",
                    humantime::format_duration(limit)
                ))
            }
        }
    }
    Ok(notes)
}

async fn wait_pods_ready(
    kube: &crate::kube::Kube,
    namespace: &str,
    r: &Ready,
    limit: Duration,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    loop {
        let pods = api
            .list(&ListParams::default())
            .await
            .map_err(kube.err(format!("listing pods in {namespace}")))
            .map_err(|e| e.to_string())?;
        let selected: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| name_selected(p.metadata.name.as_deref().unwrap_or(""), &r.name_prefixes))
            .collect();
        let laggards: Vec<&str> = selected
            .iter()
            .filter(|p| !pod_is_ready(p))
            .map(|p| p.metadata.name.as_deref().unwrap_or("?"))
            .collect();
        if selected.len() >= r.min_pods as usize && laggards.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(poll_interval(limit)).await;
    }
}
