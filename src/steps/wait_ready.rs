//! `wait-ready`: waits until every selected pod of a namespace is Ready, deleting pods that
//! crash-loop or stay Running-but-not-Ready too long so their controllers recreate them (what
//! the dataset scripts' `wait_for_pods_ready` did), and names the laggards on timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ::kube::api::{Api, DeleteParams};
use k8s_openapi::api::core::v1::Pod;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::kube::pods::PodQuery;
use crate::plan::Duration;

/// Waits until pods are Ready.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitReadyConfig {
    /// Namespace; default `-n`, else the context's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector (`app=ts-order-service`, `tier in (web)`).
    #[serde(default)]
    pub selector: Option<String>,
    /// Only pods whose names start with one of these (all pods when empty).
    #[serde(default)]
    pub name_prefixes: Vec<String>,
    /// Give up after this long, naming the pods that are not Ready.
    #[serde(default = "default_within")]
    pub within: Duration,
    /// Delete pods whose containers are in CrashLoopBackOff or Error so they are recreated.
    #[serde(default = "yes")]
    pub restart_crashlooping: bool,
    /// Delete pods Running but not Ready for longer than this; `0s` disables.
    #[serde(default = "default_not_ready")]
    pub not_ready_limit: Duration,
    /// Fewer pods than this never counts as ready (guards against an empty namespace).
    #[serde(default = "one")]
    pub min_pods: u32,
    /// How often to look.
    #[serde(default = "default_poll")]
    pub poll: Duration,
}

fn default_within() -> Duration {
    Duration::from_secs(900)
}
fn default_not_ready() -> Duration {
    Duration::from_secs(300)
}
fn default_poll() -> Duration {
    Duration::from_secs(5)
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

impl StepConfig for WaitReadyConfig {
    const KIND: &'static str = "wait-ready";
    const ABOUT: &'static str =
        "waits until a namespace's pods are Ready, restarting crash-looping or stuck pods";
}

/// A pod's readiness in one look.
#[derive(Debug, PartialEq, Eq)]
enum PodState {
    Ready,
    /// A container waits in CrashLoopBackOff or terminated with Error.
    Crashing(String),
    RunningNotReady,
    Other(String),
}

fn pod_state(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Other("no status".into());
    };
    if crate::kube::pod_is_ready(pod) {
        return PodState::Ready;
    }
    for cs in status.container_statuses.iter().flatten() {
        let waiting = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        let terminated = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.clone());
        for reason in [waiting, terminated].into_iter().flatten() {
            if reason == "CrashLoopBackOff" || reason == "Error" {
                return PodState::Crashing(format!("{}: {reason}", cs.name));
            }
        }
    }
    let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
    if phase == "Running" {
        PodState::RunningNotReady
    } else {
        PodState::Other(phase)
    }
}

#[async_trait::async_trait]
impl Step for WaitReadyConfig {
    fn needs_cluster(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let kube = ctx.kube().await?;
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| kube.namespace.clone());
        let api: Api<Pod> = Api::namespaced(kube.client.clone(), &ns);
        let query = PodQuery {
            namespace: &ns,
            selector: self.selector.as_deref(),
            name_prefixes: &self.name_prefixes,
        };
        let deadline = tokio::time::Instant::now() + self.within.get();
        let mut not_ready_since: BTreeMap<String, Instant> = BTreeMap::new();
        let mut restarted: BTreeSet<String> = BTreeSet::new();
        loop {
            let pods = query.pods(kube).await?;
            let selected: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded"))
                .collect();
            let mut laggards = Vec::new();
            let mut ready = 0;
            for pod in &selected {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match pod_state(pod) {
                    PodState::Ready => {
                        ready += 1;
                        not_ready_since.remove(&name);
                    }
                    PodState::Crashing(why) => {
                        if self.restart_crashlooping {
                            delete_pod(&api, &name).await?;
                            restarted.insert(name.clone());
                            ctx.progress(format!("deleted crash-looping pod {name} ({why})"));
                        }
                        laggards.push(format!("{name} ({why})"));
                    }
                    PodState::RunningNotReady => {
                        let since = *not_ready_since
                            .entry(name.clone())
                            .or_insert_with(Instant::now);
                        let limit = self.not_ready_limit.get();
                        if !limit.is_zero() && since.elapsed() >= limit {
                            delete_pod(&api, &name).await?;
                            restarted.insert(name.clone());
                            not_ready_since.remove(&name);
                            ctx.progress(format!(
                                "deleted pod {name}: Running but not Ready for {}",
                                self.not_ready_limit
                            ));
                        }
                        laggards.push(format!("{name} (Running, not Ready)"));
                    }
                    PodState::Other(phase) => laggards.push(format!("{name} ({phase})")),
                }
            }
            let total = selected.len();
            ctx.progress(format!("{ready}/{total} ready"));
            if laggards.is_empty() && total >= self.min_pods as usize {
                return Ok(StepOutputs::default()
                    .value("namespace", ns)
                    .value("pods", total)
                    .value("restarted", restarted.into_iter().collect::<Vec<_>>()));
            }
            if tokio::time::Instant::now() >= deadline {
                let why = if laggards.is_empty() {
                    format!(
                        "only {total} pod(s) found, expected at least {}",
                        self.min_pods
                    )
                } else {
                    format!("not Ready: {}", laggards.join(", "))
                };
                return Err(StepError::failed(format!(
                    "{ready}/{total} pods Ready in {ns} after {}; {why}",
                    self.within
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll.get()) => {}
                () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
            }
        }
    }
}

async fn delete_pod(api: &Api<Pod>, name: &str) -> Result<(), StepError> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(StepError::failed(format!("deleting pod {name}: {e}"))),
    }
}
