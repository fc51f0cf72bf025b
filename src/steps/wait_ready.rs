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
        let query = PodQuery {
            namespace: &ns,
            selector: self.selector.as_deref(),
            name_prefixes: &self.name_prefixes,
        };
        let deadline = tokio::time::Instant::now() + self.within.get();
        let mut watch = Watch {
            step: self,
            ctx,
            api: Api::namespaced(kube.client.clone(), &ns),
            not_ready_since: BTreeMap::new(),
            restarted: BTreeSet::new(),
        };
        loop {
            let pods = query.pods(kube).await?;
            let look = watch.look(&pods).await?;
            ctx.progress(format!("{}/{} ready", look.ready, look.total));
            if look.laggards.is_empty() && look.total >= self.min_pods as usize {
                return Ok(StepOutputs::default()
                    .value("namespace", ns)
                    .value("pods", look.total)
                    .value("restarted", watch.restarted.into_iter().collect::<Vec<_>>()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepError::failed(self.not_ready(&ns, &look)));
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll.get()) => {}
                () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
            }
        }
    }
}

impl WaitReadyConfig {
    /// The timeout message: how many are Ready, and which are not (or that too few exist).
    fn not_ready(&self, ns: &str, look: &Look) -> String {
        let why = if look.laggards.is_empty() {
            format!(
                "only {} pod(s) found, expected at least {}",
                look.total, self.min_pods
            )
        } else {
            format!("not Ready: {}", look.laggards.join(", "))
        };
        format!(
            "{}/{} pods Ready in {ns} after {}; {why}",
            look.ready, look.total, self.within
        )
    }
}

/// One look at the selected pods.
struct Look {
    ready: usize,
    total: usize,
    /// `name (why)` of each pod not Ready.
    laggards: Vec<String>,
}

/// What the looks share: since when each pod is Running but not Ready, and the pods deleted.
struct Watch<'a> {
    step: &'a WaitReadyConfig,
    ctx: &'a StepCtx,
    api: Api<Pod>,
    not_ready_since: BTreeMap<String, Instant>,
    restarted: BTreeSet<String>,
}

impl Watch<'_> {
    /// Counts the Ready pods (those not terminating nor finished), deleting the ones that
    /// crash-loop or are stuck not Ready when the step says so.
    async fn look(&mut self, pods: &[Pod]) -> Result<Look, StepError> {
        let selected: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded"))
            .collect();
        let mut look = Look {
            ready: 0,
            total: selected.len(),
            laggards: Vec::new(),
        };
        for pod in selected {
            let name = pod.metadata.name.clone().unwrap_or_default();
            match self.laggard(pod, &name).await? {
                None => look.ready += 1,
                Some(why) => look.laggards.push(format!("{name} ({why})")),
            }
        }
        Ok(look)
    }

    /// Why the pod `name` is not Ready; `None` when it is.
    async fn laggard(&mut self, pod: &Pod, name: &str) -> Result<Option<String>, StepError> {
        match pod_state(pod) {
            PodState::Ready => {
                self.not_ready_since.remove(name);
                Ok(None)
            }
            PodState::Crashing(why) => {
                if self.step.restart_crashlooping {
                    self.restart(name).await?;
                    self.ctx
                        .progress(format!("deleted crash-looping pod {name} ({why})"));
                }
                Ok(Some(why))
            }
            PodState::RunningNotReady => {
                let since = *self
                    .not_ready_since
                    .entry(name.to_string())
                    .or_insert_with(Instant::now);
                let limit = self.step.not_ready_limit.get();
                if !limit.is_zero() && since.elapsed() >= limit {
                    self.restart(name).await?;
                    self.not_ready_since.remove(name);
                    self.ctx.progress(format!(
                        "deleted pod {name}: Running but not Ready for {}",
                        self.step.not_ready_limit
                    ));
                }
                Ok(Some("Running, not Ready".into()))
            }
            PodState::Other(phase) => Ok(Some(phase)),
        }
    }

    /// Deletes the pod so its controller recreates it.
    async fn restart(&mut self, name: &str) -> Result<(), StepError> {
        delete_pod(&self.api, name).await?;
        self.restarted.insert(name.to_string());
        Ok(())
    }
}

async fn delete_pod(api: &Api<Pod>, name: &str) -> Result<(), StepError> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(StepError::failed(format!("deleting pod {name}: {e}"))),
    }
}
