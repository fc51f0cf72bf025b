//! `before_each`: bring a slot's cluster to a known state before an experiment starts.
//!
//! The checks run in order: remove leftover chaos (the `chaos clean --all` code), wait until the
//! namespace's pods are Ready, then (once the experiment's plan is loaded) wait until its
//! steady-state hypothesis holds ([`wait_hypothesis`]), all within `before_each.timeout`.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::model::{BeforeEach, Ready};
use crate::engine::launch::Prepared;
use crate::kube::cleanup::remove_all_chaos;
use crate::kube::pods::PodQuery;
use crate::kube::{pod_is_ready, poll_interval, KubeAccess};

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

/// `before_each.ready`: waits until at least `min_pods` pods pass the name prefixes and every
/// one of them is Ready.
async fn wait_pods_ready(
    kube: &crate::kube::Kube,
    namespace: &str,
    r: &Ready,
    limit: Duration,
) -> Result<(), String> {
    let query = PodQuery {
        namespace,
        selector: None,
        name_prefixes: &r.name_prefixes,
    };
    loop {
        let pods = query.pods(kube).await.map_err(|e| e.to_string())?;
        if pods.len() >= r.min_pods as usize && pods.iter().all(pod_is_ready) {
            return Ok(());
        }
        tokio::time::sleep(poll_interval(limit)).await;
    }
}

/// How often the hypothesis is checked again while it does not hold: its probes query the
/// cluster, Prometheus and the system, so not in a tight loop.
fn hypothesis_interval(limit: Duration) -> Duration {
    (limit / 20).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// The probes of a hypothesis record (`{verdict, probes: {name: {verdict, error?}}}`) that did
/// not pass, for the error message.
fn not_passed(record: &serde_json::Value) -> String {
    let probes = record["probes"].as_object().into_iter().flatten();
    let parts: Vec<String> = probes
        .filter(|(_, p)| p["verdict"] != "passed")
        .map(|(name, p)| {
            let verdict = p["verdict"].as_str().unwrap_or("unknown");
            match p["error"].as_str() {
                Some(e) => format!("`{name}` {verdict} ({e})"),
                None => format!("`{name}` {verdict}"),
            }
        })
        .collect();
    parts.join(", ")
}

/// `before_each.hypothesis`: checks the experiment's steady-state hypothesis until every probe
/// passes, within `limit`. Returns how many checks it took.
///
/// # Errors
/// The hypothesis did not hold within `limit` (the probes that did not pass, last check), or
/// the campaign was interrupted.
pub async fn wait_hypothesis(
    prepared: &Prepared,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<u32, String> {
    let started = Instant::now();
    let mut checks = 0;
    loop {
        checks += 1;
        let record = prepared
            .check_hypothesis("before_each", cancel.child_token())
            .await;
        if record["verdict"] == "passed" {
            return Ok(checks);
        }
        if cancel.is_cancelled() {
            return Err("interrupted while waiting for the steady-state hypothesis".into());
        }
        let pause = hypothesis_interval(limit);
        if started.elapsed() + pause >= limit {
            return Err(format!(
                "the steady-state hypothesis did not hold within {} ({checks} checks; last: {})",
                humantime::format_duration(Duration::from_secs(limit.as_secs())),
                not_passed(&record)
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => {
                return Err("interrupted while waiting for the steady-state hypothesis".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_that_did_not_pass_are_named_with_their_error() {
        let record = serde_json::json!({"verdict": "failed", "probes": {
            "pods_ready": {"verdict": "passed"},
            "error_rate_low": {"verdict": "failed", "error": "no Prometheus endpoint"},
            "gateway_answers": {"verdict": "unknown"},
        }});
        assert_eq!(
            not_passed(&record),
            "`error_rate_low` failed (no Prometheus endpoint), `gateway_answers` unknown"
        );
    }

    #[test]
    fn the_hypothesis_is_rechecked_every_few_seconds() {
        assert_eq!(
            hypothesis_interval(Duration::from_secs(1200)),
            Duration::from_secs(15)
        );
        assert_eq!(
            hypothesis_interval(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
    }
}
