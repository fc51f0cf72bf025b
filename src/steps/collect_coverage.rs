//! `collect-coverage`: dumps (and by default resets) the JaCoCo agent of every target pod,
//! concurrently, into `<out>/coverage_data/<EXP_NAME>/<pod>__jacoco-<pod>.exec`.
//!
//! Targets are direct `host:port` addresses for now. Pod selection through the Kubernetes API
//! (`namespace:` + `selector:` beside `targets:`, dumped through a port-forward) plugs in as a
//! further [`Transport`] without changing the protocol code.

use std::path::PathBuf;
use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::coverage::collect::{
    check_target_names, dump_all, DumpAllOptions, DumpTarget, TargetOutcome,
};
use crate::coverage::protocol::DumpCommand;
use crate::coverage::target::Transport;
use crate::plan::Duration;

/// Dumps JaCoCo coverage from running agents (tcpserver mode).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectCoverageConfig {
    /// Agents to dump, one per pod. (Optional so that `namespace:` + `selector:` can select
    /// pods instead once the Kubernetes transport lands; today it must not be empty.)
    #[serde(default)]
    pub targets: Vec<CoverageTarget>,
    /// Fetch the agents' coverage. `dump: false` with `reset: true` only clears the probes
    /// (e.g. right before the traffic whose coverage is wanted); no files are written.
    #[serde(default = "yes")]
    pub dump: bool,
    /// Reset the agents' probes after the dump, so the next dump holds only new executions.
    #[serde(default = "yes")]
    pub reset: bool,
    /// Per target: connection and dump together.
    #[serde(default = "default_timeout")]
    pub target_timeout: Duration,
    /// At most this many agents are dumped at once (one connection per agent).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Where the exec files go, relative to the output root.
    /// Default: `coverage_data/<exp_name>`.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// When the step fails: `any` (default) — no target could be dumped (or reset); `all` —
    /// any target could not; `never`.
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
    Never,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_concurrency() -> u32 {
    64
}

impl StepConfig for CollectCoverageConfig {
    const KIND: &'static str = "collect-coverage";
    const ABOUT: &'static str =
        "dumps JaCoCo coverage (tcpserver, with reset) from every target pod, concurrently";
}

#[async_trait::async_trait]
impl Step for CollectCoverageConfig {
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
        if self.targets.is_empty() {
            return Err(StepError::failed(
                "no coverage targets: list the agents under `targets:` ({name, address})",
            ));
        }
        check_target_names(self.targets.iter().map(|t| t.name.as_str()))
            .map_err(StepError::failed)?;
        if self.dump {
            tokio::fs::create_dir_all(&out_dir)
                .await
                .map_err(StepError::io(format!("creating {}", out_dir.display())))?;
        }
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
        let opts = DumpAllOptions {
            command: DumpCommand {
                dump: self.dump,
                reset: self.reset,
            },
            timeout: self.target_timeout.get(),
            concurrency: self.concurrency.max(1) as usize,
            out_dir: out_dir.clone(),
        };
        let verb = if self.dump { "dumping" } else { "resetting" };
        ctx.progress(format!("{verb} {} agents", targets.len()));
        let started = Instant::now();
        let total = targets.len();
        let mut done = 0;
        let dumping = dump_all(&targets, &opts, |r| {
            done += 1;
            ctx.progress(format!("{done}/{total}: {} {}", r.name, r.outcome.word()));
        });
        let reports = tokio::select! {
            r = dumping => r,
            () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;

        let mut out = StepOutputs::default();
        let mut dumped = Vec::new();
        let mut no_agent = Vec::new();
        let mut failed = Vec::new();
        for r in &reports {
            match &r.outcome {
                TargetOutcome::Dumped { file, .. } => {
                    out.artifacts.push(file.clone());
                    dumped.push(r.name.clone());
                }
                TargetOutcome::Reset { .. } => dumped.push(r.name.clone()),
                TargetOutcome::NoAgent { reason } => no_agent.push(serde_json::json!({
                    "name": r.name, "address": r.address, "reason": reason,
                })),
                TargetOutcome::Failed { reason } => failed.push(serde_json::json!({
                    "name": r.name, "address": r.address, "reason": reason,
                })),
            }
        }
        let report_path = ctx
            .run_dir()
            .join("steps")
            .join(format!("{}.coverage.json", ctx.step_name()));
        crate::atomic_write::write_json_atomic(&report_path, &reports)
            .map_err(StepError::io(format!("writing {}", report_path.display())))?;
        out.artifacts.push(report_path);
        ctx.progress(format!(
            "{}/{} {}, {} without agent, {} failed in {elapsed_ms} ms",
            dumped.len(),
            reports.len(),
            if self.dump { "dumped" } else { "reset" },
            no_agent.len(),
            failed.len()
        ));
        let problems = no_agent.len() + failed.len();
        let fail = match self.require {
            Require::Any => dumped.is_empty() && !reports.is_empty(),
            Require::All => problems > 0,
            Require::Never => false,
        };
        if fail {
            let lines: Vec<String> = no_agent
                .iter()
                .chain(&failed)
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
                reports.len(),
                if self.dump { "dumped" } else { "reset" },
                lines.join("\n")
            )));
        }
        Ok(out
            .value("dir", out_dir.display().to_string())
            .value(if self.dump { "dumped" } else { "reset" }, dumped)
            .value("no_agent", no_agent)
            .value("failed", failed)
            .value("elapsed_ms", elapsed_ms))
    }
}
