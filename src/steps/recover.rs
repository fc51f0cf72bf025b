//! `recover`: recovers the faults injected by the named steps at this point of the DAG (the
//! engine still recovers anything left at the end of the run).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::diag::{Code, PlanDiag};
use crate::plan::node::Node;
use crate::plan::Duration;

/// Recovers named faults now.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverConfig {
    /// Steps whose faults to recover (list them in `after` too).
    pub faults: Vec<String>,
    /// How long each fault's recovery may take. Unset: each fault's own `recover_timeout` (set
    /// on the step that injected it; 2 min by default). Set: it overrides them all.
    #[serde(default)]
    pub recover_timeout: Option<Duration>,
}

impl StepConfig for RecoverConfig {
    const KIND: &'static str = "recover";
    const ABOUT: &'static str = "recovers the faults injected by the named steps";
}

#[async_trait::async_trait]
impl Step for RecoverConfig {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        ctx.progress(format!("recovering faults of {}", self.faults.join(", ")));
        let failures = ctx
            .recover_faults(&self.faults, self.recover_timeout.map(Duration::get))
            .await;
        let faults = ctx.faults().await;
        let recovered: Vec<&str> = faults
            .iter()
            .filter(|f| self.faults.contains(&f.step) && !f.needs_recovery())
            .map(|f| f.id.as_str())
            .collect();
        if !failures.is_empty() {
            let list: Vec<String> = failures
                .iter()
                .map(|(id, e)| format!("`{id}`: {e}"))
                .collect();
            return Err(StepError::failed(format!(
                "faults not recovered: {}",
                list.join("; ")
            )));
        }
        Ok(StepOutputs::default().value("recovered", recovered))
    }

    fn referenced_steps(&self) -> Option<(&'static str, &[String])> {
        Some(("faults", &self.faults))
    }

    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        if self.faults.is_empty() {
            let at = node.get("faults").map_or(&node.span, |n| &n.span);
            diags.push(
                PlanDiag::new(Code::InvalidValue, "`faults` names no step", Some(at))
                    .label("empty list"),
            );
        }
    }
}
