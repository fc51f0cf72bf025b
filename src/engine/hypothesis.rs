//! The steady-state hypothesis (Chaos Toolkit's term): the plan's `hypothesis:` probes, checked
//! just before the first fault step starts and again once every fault step and every `recover`
//! step is done and no fault is left injected (else after the engine's final recovery). Also:
//! which probes verify which fault, for `fault_labels.json`, and the run summary's notes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::ctx::{RunInfo, StepCtx};
use super::events::StepEvents;
use super::faults::FaultLedger;
use super::manifest::{Manifest, StepStatus};
use super::progress::Progress;
use crate::plan::validate::render_at_start;
use crate::steps::process::ChildGroups;
use crate::steps::{Plan, PlanStep, KINDS};
use crate::steps::{Step, StepError};

/// Kinds that inject faults by themselves (a `shell` step with `recover` does too, but is also
/// how plans deploy: it counts when a `recover` step or a probe names it).
const FAULT_KINDS: &[&str] = &["chaos-mesh", "chaosblade"];

/// Steps that inject a fault: fault kinds, and steps named by `recover.faults` or `verifies`.
pub fn fault_steps(plan: &Plan) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = plan
        .steps
        .values()
        .filter(|s| FAULT_KINDS.contains(&s.kind))
        .map(|s| s.name.clone())
        .collect();
    for s in plan.steps.values() {
        if let Some(("faults" | "verifies", names)) = s.step.referenced_steps() {
            out.extend(
                names
                    .iter()
                    .filter(|n| plan.steps.contains_key(*n))
                    .cloned(),
            );
        }
    }
    out
}

/// `recover` steps.
pub fn recovery_steps(plan: &Plan) -> BTreeSet<String> {
    plan.steps
        .values()
        .filter(|s| s.kind == "recover")
        .map(|s| s.name.clone())
        .collect()
}

/// Per fault step, the runtime records (`status`, `outputs`, …) of the probes that verify it.
pub fn verifying_probes(
    plan: &Plan,
    runtime: &BTreeMap<String, Value>,
) -> BTreeMap<String, Vec<(String, Value)>> {
    let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for s in plan.steps.values().filter(|s| s.kind == "probe") {
        if let Some(("verifies", [fault])) = s.step.referenced_steps() {
            let record = runtime
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| json!({ "status": "not run" }));
            out.entry(fault.clone())
                .or_default()
                .push((s.name.clone(), record));
        }
    }
    out
}

/// What the engine needs to run hypothesis probes like steps.
pub struct HypothesisRunner {
    pub plan: Arc<Plan>,
    pub run: Arc<RunInfo>,
    pub faults: Arc<FaultLedger>,
    pub progress: Progress,
    pub children: Arc<ChildGroups>,
    pub events: Arc<StepEvents>,
}

/// One check of the hypothesis.
pub struct Outcome {
    /// For the manifest: `{checked_at, verdict, probes: {name: {verdict, value, evaluations…}}}`.
    pub record: Value,
    /// A probe with `on_failure: fail` failed.
    pub broken: bool,
}

impl HypothesisRunner {
    /// Runs every probe of the hypothesis, in order. `phase` is `before` or `after`.
    pub async fn check(
        &self,
        phase: &str,
        runtime: &BTreeMap<String, Value>,
        cancel: CancellationToken,
    ) -> Outcome {
        self.progress
            .note(&format!("checking the steady-state hypothesis ({phase})"));
        let checked_at = chrono::Utc::now();
        let mut probes = serde_json::Map::new();
        let mut verdicts = Vec::new();
        let mut broken = false;
        for (name, step) in &self.plan.hypothesis {
            let (verdict, record) = match self.run_one(name, step, runtime, &cancel).await {
                Ok(outputs) => {
                    let v = outputs.get("verdict").cloned().unwrap_or(json!("unknown"));
                    (v, Value::Object(outputs.into_iter().collect()))
                }
                Err(StepError::Cancelled) => (
                    json!("unknown"),
                    json!({ "verdict": "unknown", "error": "the run was interrupted" }),
                ),
                Err(e) => {
                    broken |= step_fails_on_failure(step);
                    (
                        json!("failed"),
                        json!({ "verdict": "failed", "error": e.to_string() }),
                    )
                }
            };
            self.progress.note(&format!(
                "  hypothesis `{name}` ({phase}): {}",
                verdict.as_str().unwrap_or("unknown")
            ));
            verdicts.push(verdict);
            probes.insert(name.clone(), record);
        }
        let overall = if verdicts.iter().any(|v| v == "failed") {
            "failed"
        } else if verdicts.iter().all(|v| v == "passed") {
            "passed"
        } else {
            "unknown"
        };
        Outcome {
            record: json!({
                "checked_at": checked_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "verdict": overall,
                "probes": probes,
            }),
            broken,
        }
    }

    async fn run_one(
        &self,
        name: &str,
        step: &PlanStep,
        runtime: &BTreeMap<String, Value>,
        cancel: &CancellationToken,
    ) -> Result<BTreeMap<String, Value>, StepError> {
        let rendered;
        let (env, imp): (_, &dyn Step) = if step.deferred {
            let r = render_at_start(&self.plan, step, runtime, KINDS).map_err(StepError::Failed)?;
            rendered = r.step;
            (r.env, rendered.as_ref())
        } else {
            (step.common.env.clone(), step.step.as_ref())
        };
        let token = cancel.child_token();
        let ctx = StepCtx {
            run: Arc::clone(&self.run),
            step: Arc::from(format!("hypothesis-{name}").as_str()),
            env: Arc::new(env),
            cancel: token.clone(),
            progress: self.progress.clone(),
            faults: Arc::clone(&self.faults),
            attempt: 1,
            children: Arc::clone(&self.children),
            events: Arc::clone(&self.events),
        };
        let fut = imp.run(&ctx);
        let out = match step.common.timeout {
            None => fut.await,
            Some(limit) => {
                tokio::pin!(fut);
                tokio::select! {
                    r = &mut fut => r,
                    () = tokio::time::sleep(limit.get()) => {
                        token.cancel();
                        let _ = (&mut fut).await;
                        Err(StepError::Failed(format!("timed out after {limit}")))
                    }
                }
            }
        }?;
        Ok(out.values)
    }
}

fn step_fails_on_failure(step: &PlanStep) -> bool {
    step.fields
        .get("on_failure")
        .and_then(crate::plan::node::Node::as_str)
        == Some("fail")
}

/// Notes for the run's summary line: faults whose probes saw no effect, a steady state that
/// did not hold.
pub fn summary_notes(m: &Manifest) -> Vec<String> {
    let mut notes = Vec::new();
    let mut by_fault: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (name, r) in &m.steps {
        if r.kind != "probe" {
            continue;
        }
        let Some(fault) = r.outputs.get("verifies").and_then(Value::as_str) else {
            continue;
        };
        let verdict = if r.status == StepStatus::Failed {
            "failed"
        } else {
            r.outputs
                .get("verdict")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
        };
        by_fault.entry(fault).or_default().push((name, verdict));
    }
    for (fault, probes) in by_fault {
        let failed: Vec<&str> = probes
            .iter()
            .filter(|(_, v)| *v == "failed")
            .map(|(n, _)| *n)
            .collect();
        if !failed.is_empty() {
            notes.push(format!(
                "fault `{fault}` did NOT take effect (probe {})",
                failed.join(", ")
            ));
        } else if probes.iter().any(|(_, v)| *v != "passed") {
            notes.push(format!("effect of fault `{fault}` unknown"));
        }
    }
    if let Some(ss) = &m.steady_state {
        for (phase, when) in [
            ("before", "before the first fault"),
            ("after", "after recovery"),
        ] {
            if ss[phase]["verdict"] == "failed" {
                notes.push(format!("steady state did NOT hold {when}"));
            }
        }
    }
    notes
}
