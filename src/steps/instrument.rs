//! `instrument`: the `ttplan instrument` rewrite as a step — reads manifests, writes an
//! instrumented copy (never the input) for a later `kube-apply` step.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::api::command_env::resolve_workdir;
use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::atomic_write::write_atomic;
use crate::coverage::instrument::{
    instrument, InstrumentOptions, DEFAULT_AGENT_PATH, DEFAULT_PORT,
};

/// Adds the JaCoCo agent (tcpserver mode) to the Deployments/StatefulSets/DaemonSets of a
/// manifest file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    /// Manifest file (multi-document YAML), relative to the plan.
    pub input: PathBuf,
    /// Where the instrumented copy goes, relative to the output root.
    /// Default: `runs/<exp_name>/instrumented/<input file name>`.
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Image holding `jacocoagent.jar`; an init container copies it into the pod.
    pub agent_image: String,
    /// Path of the agent jar inside `agent_image`.
    #[serde(default = "default_agent_path")]
    pub agent_path: String,
    /// Replaces the init container's command (default: `sh -c "cp <agent_path> …"`).
    #[serde(default)]
    pub init_command: Option<Vec<String>>,
    /// The agent's tcpserver port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The agent's bind address (`*`: all interfaces).
    #[serde(default = "default_address")]
    pub address: String,
    /// JaCoCo `includes` per service (workload name), e.g. `ts-order-service: order.*`.
    #[serde(default)]
    pub includes: BTreeMap<String, String>,
    /// A Train-Ticket checkout to infer `includes` from (`<root>/<service>/src/main/java`).
    #[serde(default)]
    pub source_root: Option<PathBuf>,
    /// `includes` when neither `includes` nor the source tree says.
    #[serde(default = "default_includes")]
    pub default_includes: String,
    /// JaCoCo `excludes` for every service.
    #[serde(default)]
    pub excludes: Option<String>,
    /// Containers to instrument by name (default: all of each pod).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Workloads to leave alone (e.g. non-Java services).
    #[serde(default)]
    pub skip: Vec<String>,
    /// Train-Ticket defaults: a known Java service's own packages as `includes` when neither
    /// `includes` nor `source_root` says (`ts-order-service` → `order.*`), and the non-Java
    /// services (ts-avatar, ts-news, ts-ticket-office, ts-ui-dashboard, ts-voucher) skipped
    /// unless `includes` names them. `false`: `default_includes` everywhere.
    #[serde(default = "yes")]
    pub train_ticket_defaults: bool,
}

const fn yes() -> bool {
    true
}

fn default_agent_path() -> String {
    DEFAULT_AGENT_PATH.into()
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_address() -> String {
    "*".into()
}

fn default_includes() -> String {
    "*".into()
}

impl StepConfig for InstrumentConfig {
    const KIND: &'static str = "instrument";
    const ABOUT: &'static str =
        "writes a copy of Kubernetes manifests that loads the JaCoCo agent in tcpserver mode";
}

#[async_trait::async_trait]
impl Step for InstrumentConfig {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let input = resolve_workdir(ctx.plan_dir(), Some(&self.input));
        let output = match &self.output {
            Some(o) => ctx.out_dir().join(o),
            None => ctx
                .run_dir()
                .join("instrumented")
                .join(input.file_name().unwrap_or_default()),
        };
        let source_root = self
            .source_root
            .as_ref()
            .map(|r| resolve_workdir(ctx.plan_dir(), Some(r)));
        let opts = InstrumentOptions {
            agent_image: self.agent_image.clone(),
            agent_path: self.agent_path.clone(),
            init_command: self.init_command.clone(),
            port: self.port,
            address: self.address.clone(),
            includes: self.includes.clone(),
            source_root,
            default_includes: self.default_includes.clone(),
            excludes: self.excludes.clone(),
            containers: self.containers.clone(),
            skip: self.skip.clone(),
            train_ticket_defaults: self.train_ticket_defaults,
        };
        let (inp, outp) = (input.clone(), output.clone());
        // Reading source trees (includes inference) and writing are blocking file work.
        let report = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&inp)
                .map_err(StepError::io(format!("reading {}", inp.display())))?;
            let (new, report) =
                instrument(&text, &opts).map_err(StepError::collect(inp.display().to_string()))?;
            write_atomic(&outp, new.as_bytes())
                .map_err(StepError::io(format!("writing {}", outp.display())))?;
            Ok::<_, StepError>(report)
        })
        .await
        .map_err(|e| StepError::failed(format!("instrumenting {}: {e}", input.display())))??;
        ctx.progress(format!(
            "{} workloads instrumented, {} already, {} skipped",
            report.changed.len(),
            report.unchanged.len(),
            report.skipped.len()
        ));
        let instrumented = serde_json::json!({
            "step": ctx.step_name(),
            "output": output,
            "changed": report.changed,
            "unchanged": report.unchanged,
        });
        let mut out = StepOutputs::default()
            .value("output", output.display().to_string())
            .value("changed", report.changed)
            .value("unchanged", report.unchanged)
            .value("skipped", report.skipped)
            .value(
                "includes",
                serde_json::to_value(report.includes).unwrap_or_default(),
            );
        out.instrumented = Some(instrumented);
        out.artifacts.push(output);
        Ok(out)
    }
}
