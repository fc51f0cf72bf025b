//! `sleep`: waits, e.g. for warm-up before a fault is injected.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::plan::Duration;

/// Waits for a while.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepConfig {
    /// How long to wait (`30s`, `3m`).
    pub duration: Duration,
}

impl StepConfig for SleepConfig {
    const KIND: &'static str = "sleep";
    const ABOUT: &'static str = "waits for `duration` (warm-up, cool-down)";
}

#[async_trait::async_trait]
impl Step for SleepConfig {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let end = tokio::time::Instant::now() + self.duration.get();
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(StepOutputs::default());
            }
            ctx.progress(format!(
                "{}s left",
                left.as_secs() + u64::from(left.subsec_nanos() > 0)
            ));
            let tick = left.min(std::time::Duration::from_secs(1));
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
            }
        }
    }
}
