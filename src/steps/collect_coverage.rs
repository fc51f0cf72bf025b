//! `collect-coverage`: dumps (and by default resets) the JaCoCo agent of every target pod,
//! concurrently, into `<out>/coverage_data/<EXP_NAME>/<pod>__jacoco-<pod>.exec`.
//!
//! Two ways to name the agents, never mixed in one step:
//! - `targets:` — direct `host:port` addresses ([`Transport::Direct`]);
//! - otherwise the Running and Ready pods of `namespace` matching `selector` and
//!   `name_prefixes`, each dumped through its own Kubernetes port-forward to `port`
//!   ([`Transport::PodPortForward`]).

use std::path::PathBuf;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::coverage::collect::{
    check_target_names, dump_all, DumpAllOptions, DumpTarget, TargetOutcome, TargetReport,
};
use crate::coverage::protocol::DumpCommand;
use crate::coverage::target::Transport;
use crate::diag::{Code, PlanDiag};
use crate::kube::pods::PodQuery;
use crate::plan::node::Node;
use crate::plan::Duration;

/// Dumps JaCoCo coverage from running agents (tcpserver mode): listed `targets` at direct
/// addresses, or else the selected pods of a namespace through Kubernetes port-forwards.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectCoverageConfig {
    /// Agents at direct addresses, one per pod. When given, no pods are selected (and
    /// `namespace`, `selector`, `name_prefixes`, `port` must not be set).
    #[serde(default)]
    pub targets: Vec<CoverageTarget>,
    /// Without `targets`: the namespace whose pods are dumped. Default `-n`, else the
    /// context's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Without `targets`: label selector for the pods (`app=ts-order-service`,
    /// `tier in (java)`); default all pods of the namespace.
    #[serde(default)]
    pub selector: Option<String>,
    /// Without `targets`: only pods whose names start with one of these. Default `[ts-]`
    /// (Train-Ticket's services); `[]` = any name.
    #[serde(default)]
    pub name_prefixes: Option<Vec<String>>,
    /// Without `targets`: the agent's port inside the pods (the `port=` of the agent).
    /// Default 6300.
    #[serde(default)]
    pub port: Option<u16>,
    /// Fetch the agents' coverage. `dump: false` with `reset: true` only clears the probes
    /// (e.g. right before the traffic whose coverage is wanted); no files are written.
    #[serde(default = "yes")]
    pub dump: bool,
    /// Reset the agents' probes after the dump, so the next dump holds only new executions.
    #[serde(default = "yes")]
    pub reset: bool,
    /// Per target: connection (port-forward included) and dump together.
    #[serde(default = "default_timeout")]
    pub target_timeout: Duration,
    /// At most this many agents are dumped at once (one connection per agent). Default 64 for
    /// direct `targets`, 16 through port-forwards (each is a WebSocket through the API server).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Where the exec files go, relative to the output root.
    /// Default: `coverage_data/<exp_name>`.
    /// (`out` is its deprecated name.)
    #[serde(default, rename = "output", alias = "out")]
    pub out: Option<PathBuf>,
    /// When the step fails: `any` (default) — no target could be dumped (or reset); `all` —
    /// any target could not; `none` (`never` is its deprecated spelling).
    #[serde(default)]
    pub require: Require,
}

/// One agent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoverageTarget {
    /// The pod name: it names the exec file and selects the service in `coverage-report`.
    pub name: String,
    /// `host:port` of the agent's tcpserver (e.g. `127.0.0.1:6300` through a port-forward).
    pub address: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Require {
    #[default]
    Any,
    All,
    #[serde(rename = "none", alias = "never")]
    Never,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

const MIXED: &str = "`targets:` lists agents at direct addresses; `namespace`, `selector`, \
                     `name_prefixes` and `port` select pods to reach through port-forwards: \
                     use one or the other";

const DEFAULT_CONCURRENCY_DIRECT: u32 = 64;
const DEFAULT_CONCURRENCY_PORT_FORWARD: u32 = 16;
const DEFAULT_PORT: u16 = 6300;
const DEFAULT_NAME_PREFIXES: &[&str] = &["ts-"];

/// Which pods a port-forward step dumps, as resolved at run time (recorded in the outputs).
struct Selection {
    namespace: String,
    selector: Option<String>,
    name_prefixes: Vec<String>,
    port: u16,
    /// Matched by selector and prefix but not Running and Ready: `name (why)`.
    skipped: Vec<String>,
}

/// Running, Ready and not being deleted; else why not.
fn pod_unready_reason(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("being deleted".into());
    }
    let Some(status) = &pod.status else {
        return Some("no status".into());
    };
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if phase != "Running" {
        return Some(phase.to_string());
    }
    if crate::kube::pod_is_ready(pod) {
        None
    } else {
        Some("Running, not Ready".into())
    }
}

impl CollectCoverageConfig {
    /// The agents to dump: the listed `targets`, or the selected pods (none is an error
    /// unless `require: never`), with the selection and the cluster for port-forwards.
    async fn targets(&self, ctx: &StepCtx) -> Result<Targets, StepError> {
        if self.targets.is_empty() {
            let kube = ctx.kube().await?;
            let (targets, selection) = self.select_pods(kube).await?;
            ctx.progress(format!(
                "{} pods selected ({}), port {}{}",
                targets.len(),
                selection.describe(),
                selection.port,
                if selection.skipped.is_empty() {
                    String::new()
                } else {
                    format!("; not Running+Ready: {}", selection.skipped.join(", "))
                }
            ));
            if targets.is_empty() && self.require != Require::Never {
                return Err(StepError::failed(format!(
                    "no Running and Ready pods to dump in {}{}",
                    selection.describe(),
                    if selection.skipped.is_empty() {
                        String::new()
                    } else {
                        format!(" (not Running+Ready: {})", selection.skipped.join(", "))
                    }
                )));
            }
            Ok((targets, Some(selection), Some(kube.clone())))
        } else {
            let targets: Vec<DumpTarget> = self
                .targets
                .iter()
                .map(|t| DumpTarget {
                    name: t.name.clone(),
                    transport: Transport::Direct {
                        address: t.address.clone(),
                    },
                })
                .collect();
            Ok((targets, None, None))
        }
    }

    /// Dumps (or resets) every target, `opts.concurrency` at a time, reporting each.
    async fn dump_targets(
        &self,
        ctx: &StepCtx,
        targets: &[DumpTarget],
        opts: &DumpAllOptions,
        port_forward: bool,
    ) -> Result<Vec<TargetReport>, StepError> {
        let verb = if self.dump { "dumping" } else { "resetting" };
        let via = if port_forward {
            "through port-forwards"
        } else {
            "at direct addresses"
        };
        ctx.progress(format!(
            "{verb} {} agents {via}, {} at a time",
            targets.len(),
            opts.concurrency
        ));
        let total = targets.len();
        let mut done = 0;
        let dumping = dump_all(targets, opts, |r| {
            done += 1;
            ctx.progress(format!("{done}/{total}: {} {}", r.name, r.outcome.word()));
        });
        tokio::select! {
            r = dumping => Ok(r),
            () = ctx.cancel_token().cancelled() => Err(StepError::Cancelled),
        }
    }

    /// `require`: whether the targets that could not be dumped fail the step.
    fn check_require(&self, tally: &Tally, total: usize) -> Result<(), StepError> {
        let problems = tally.no_agent.len() + tally.failed.len();
        let fail = match self.require {
            Require::Any => tally.dumped.is_empty() && total > 0,
            Require::All => problems > 0,
            Require::Never => false,
        };
        if fail {
            let lines: Vec<String> = tally
                .no_agent
                .iter()
                .chain(&tally.failed)
                .map(|v| {
                    format!(
                        "  {}: {}",
                        v["name"].as_str().unwrap_or(""),
                        v["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            return Err(StepError::failed(format!(
                "{} of {} coverage targets could not be {}:\n{}",
                problems,
                total,
                if self.dump { "dumped" } else { "reset" },
                lines.join("\n")
            )));
        }
        Ok(())
    }

    fn selects_pods(&self) -> bool {
        self.namespace.is_some()
            || self.selector.is_some()
            || self.name_prefixes.is_some()
            || self.port.is_some()
    }

    /// Lists the pods to dump: matching `selector` and `name_prefixes`, Running and Ready,
    /// sorted by name.
    async fn select_pods(
        &self,
        kube: &crate::kube::Kube,
    ) -> Result<(Vec<DumpTarget>, Selection), StepError> {
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| kube.namespace.clone());
        let name_prefixes: Vec<String> = match &self.name_prefixes {
            Some(p) => p.clone(),
            None => DEFAULT_NAME_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let port = self.port.unwrap_or(DEFAULT_PORT);
        let pods = PodQuery {
            namespace: &namespace,
            selector: self.selector.as_deref(),
            name_prefixes: &name_prefixes,
        }
        .pods(kube)
        .await?;
        let mut targets = Vec::new();
        let mut skipped = Vec::new();
        for pod in &pods {
            let Some(name) = pod.metadata.name.as_deref() else {
                continue;
            };
            if let Some(why) = pod_unready_reason(pod) {
                skipped.push(format!("{name} ({why})"));
                continue;
            }
            targets.push(DumpTarget {
                name: name.to_string(),
                transport: Transport::PodPortForward {
                    namespace: namespace.clone(),
                    pod: name.to_string(),
                    port,
                },
            });
        }
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        skipped.sort();
        Ok((
            targets,
            Selection {
                namespace,
                selector: self.selector.clone(),
                name_prefixes,
                port,
                skipped,
            },
        ))
    }
}

/// Every target's outcome, in `steps/<step>.coverage.json`.
fn write_report(ctx: &StepCtx, reports: &[TargetReport]) -> Result<PathBuf, StepError> {
    let report_path = ctx
        .run_dir()
        .join("steps")
        .join(format!("{}.coverage.json", ctx.step_name()));
    crate::atomic_write::write_json_atomic(&report_path, &reports)
        .map_err(StepError::io(format!("writing {}", report_path.display())))?;
    Ok(report_path)
}

/// The agents to dump, the pod selection they came from, and the cluster for port-forwards.
type Targets = (
    Vec<DumpTarget>,
    Option<Selection>,
    Option<crate::kube::Kube>,
);

/// The targets by outcome, as the outputs list them, and the dump files written.
struct Tally {
    dumped: Vec<String>,
    no_agent: Vec<serde_json::Value>,
    failed: Vec<serde_json::Value>,
    files: Vec<PathBuf>,
}

impl Tally {
    fn of(reports: &[TargetReport]) -> Self {
        let mut t = Tally {
            dumped: Vec::new(),
            no_agent: Vec::new(),
            failed: Vec::new(),
            files: Vec::new(),
        };
        for r in reports {
            match &r.outcome {
                TargetOutcome::Dumped { file, .. } => {
                    t.files.push(file.clone());
                    t.dumped.push(r.name.clone());
                }
                TargetOutcome::Reset { .. } => t.dumped.push(r.name.clone()),
                TargetOutcome::NoAgent { reason } => t.no_agent.push(serde_json::json!({
                    "name": r.name, "address": r.address, "reason": reason,
                })),
                TargetOutcome::Failed { reason } => t.failed.push(serde_json::json!({
                    "name": r.name, "address": r.address, "reason": reason,
                })),
            }
        }
        t
    }
}

impl Selection {
    /// `namespace x, selector app=y, names starting with ts-` for messages.
    fn describe(&self) -> String {
        let mut s = format!("namespace {}", self.namespace);
        if let Some(sel) = &self.selector {
            s.push_str(&format!(", selector `{sel}`"));
        }
        if !self.name_prefixes.is_empty() {
            s.push_str(&format!(
                ", names starting with {}",
                self.name_prefixes.join(" or ")
            ));
        }
        s
    }
}

impl StepConfig for CollectCoverageConfig {
    const KIND: &'static str = "collect-coverage";
    const ABOUT: &'static str =
        "dumps JaCoCo coverage (tcpserver, with reset) from every target pod, concurrently";
}

#[async_trait::async_trait]
impl Step for CollectCoverageConfig {
    fn needs_cluster(&self) -> bool {
        self.targets.is_empty()
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let out_dir = ctx.out_dir().join(
            self.out
                .clone()
                .unwrap_or_else(|| PathBuf::from("coverage_data").join(ctx.exp_name())),
        );
        if !self.dump && !self.reset {
            return Err(StepError::failed(
                "`dump: false` and `reset: false` leave nothing to do",
            ));
        }
        if !self.targets.is_empty() && self.selects_pods() {
            return Err(StepError::failed(MIXED));
        }
        let (targets, selection, kube) = self.targets(ctx).await?;
        check_target_names(targets.iter().map(|t| t.name.as_str())).map_err(StepError::failed)?;
        if self.dump {
            tokio::fs::create_dir_all(&out_dir)
                .await
                .map_err(StepError::io(format!("creating {}", out_dir.display())))?;
        }
        let concurrency = self.concurrency.unwrap_or(if selection.is_some() {
            DEFAULT_CONCURRENCY_PORT_FORWARD
        } else {
            DEFAULT_CONCURRENCY_DIRECT
        });
        let opts = DumpAllOptions {
            command: DumpCommand {
                dump: self.dump,
                reset: self.reset,
            },
            timeout: self.target_timeout.get(),
            concurrency: concurrency.max(1) as usize,
            out_dir: out_dir.clone(),
            kube,
        };
        let started = Instant::now();
        let reports = self
            .dump_targets(ctx, &targets, &opts, selection.is_some())
            .await?;
        let elapsed_ms = started.elapsed().as_millis() as u64;

        let tally = Tally::of(&reports);
        let mut out = StepOutputs::default();
        out.artifacts.extend(tally.files.iter().cloned());
        out.artifacts.push(write_report(ctx, &reports)?);
        ctx.progress(format!(
            "{}/{} {}, {} without agent, {} failed in {elapsed_ms} ms",
            tally.dumped.len(),
            reports.len(),
            if self.dump { "dumped" } else { "reset" },
            tally.no_agent.len(),
            tally.failed.len()
        ));
        self.check_require(&tally, reports.len())?;
        out = out
            .value(
                "transport",
                if selection.is_some() {
                    "port-forward"
                } else {
                    "direct"
                },
            )
            .value("concurrency", concurrency);
        if let Some(sel) = selection {
            out = out
                .value("namespace", sel.namespace)
                .value("selector", sel.selector)
                .value("name_prefixes", sel.name_prefixes)
                .value("port", sel.port)
                .value("skipped", sel.skipped);
        }
        Ok(out
            .value("dir", out_dir.display().to_string())
            .value(if self.dump { "dumped" } else { "reset" }, tally.dumped)
            .value("no_agent", tally.no_agent)
            .value("failed", tally.failed)
            .value("elapsed_ms", elapsed_ms))
    }

    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        let span = |k: &str| node.get(k).map(|n| &n.span).or(Some(&node.span));
        if !self.targets.is_empty() && self.selects_pods() {
            let key = ["namespace", "selector", "name_prefixes", "port"]
                .into_iter()
                .find(|k| node.get(k).is_some())
                .unwrap_or("targets");
            diags.push(PlanDiag::new(Code::InvalidValue, MIXED, span(key)).label("here"));
        }
        if self.concurrency == Some(0) {
            diags.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    "`concurrency` must be at least 1",
                    span("concurrency"),
                )
                .label("here"),
            );
        }
        if self.port == Some(0) {
            diags.push(
                PlanDiag::new(Code::InvalidValue, "`port` must not be 0", span("port"))
                    .label("here"),
            );
        }
    }
}
