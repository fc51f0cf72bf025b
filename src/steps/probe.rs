//! `probe`: observes the system and judges it (see `src/probe/`): once at its place in the
//! DAG, or continuously until another step starts or finishes. Every evaluation lands in the
//! step's outputs (and so the manifest); `verifies` links the verdict to a fault's label.

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::diag::PlanDiag;
use crate::plan::node::Node;
use crate::probe::{run_probe, OnFailure, ProbeSpec};

pub type ProbeConfig = ProbeSpec;

impl StepConfig for ProbeSpec {
    const KIND: &'static str = "probe";
    const ABOUT: &'static str =
        "checks a PromQL value, HTTP answer, Kubernetes objects or a command against a tolerance, once or while a fault is active";
}

#[async_trait::async_trait]
impl Step for ProbeSpec {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        ctx.progress(format!("{} probe", self.probe_type.as_str()));
        let report = run_probe(self, ctx).await?;
        let summary = report.summary();
        ctx.append_log(&format!("{summary}\n"))?;
        if self.on_failure == OnFailure::Fail && report.verdict == Some(false) {
            return Err(StepError::failed(summary));
        }
        Ok(StepOutputs {
            values: report.to_outputs(),
            ..StepOutputs::default()
        })
    }

    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        crate::probe::check::check(self, node, diags);
    }

    fn referenced_steps(&self) -> Option<(&'static str, &[String])> {
        self.verifies
            .as_ref()
            .map(|v| ("verifies", std::slice::from_ref(v)))
    }

    fn watched_step(&self) -> Option<(&'static str, &str)> {
        self.until.as_deref().map(|u| ("until", u))
    }
}
