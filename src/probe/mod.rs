//! Probes: evidence that the system is in the state an experiment assumes (a steady-state
//! hypothesis) or that a fault really changed it (an effect probe). A probe observes one number
//! or fact — a PromQL value, an HTTP answer, Kubernetes objects, a command's exit — judges it
//! against a tolerance, and keeps every evaluation (time, value, verdict) as evidence.
//!
//! The `probe` step kind (`src/steps/probe.rs`) and the plan's `hypothesis:` both run
//! [`ProbeSpec`]s through [`run_probe`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::plan::Duration;
use crate::steps::api::process::Command;
use crate::steps::api::{StepCtx, StepError};

pub mod check;
pub mod command;
pub mod expect;
pub mod http;
pub mod kubernetes;
pub mod prometheus;
pub mod promql;

pub use expect::Expect;

/// What a probe observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeType {
    /// A PromQL query against the Prometheus HTTP API.
    Prometheus,
    /// An HTTP request: status, body, latency.
    Http,
    /// Kubernetes objects: ready count, a field value, absence.
    Kubernetes,
    /// A command: exit code and output.
    Command,
}

impl ProbeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::Prometheus => "prometheus",
            ProbeType::Http => "http",
            ProbeType::Kubernetes => "kubernetes",
            ProbeType::Command => "command",
        }
    }
}

/// When the probe evaluates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Once, at its place in the DAG (with `within`: again until it passes or time is up).
    #[default]
    Once,
    /// Every `interval` until the `until` step starts (or finishes), e.g. while a fault is active.
    Continuous,
}

pub use crate::steps::api::events::UntilEvent;

/// How the evaluations of a continuous probe make one verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Require {
    /// Every evaluation with a verdict passed.
    #[default]
    All,
    /// At least one evaluation passed.
    Any,
}

/// How the samples of a Prometheus probe's window become a verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// The mean of every sample is compared.
    #[default]
    Avg,
    Max,
    Min,
    /// Every sample must pass.
    All,
    /// At least one sample must pass.
    Any,
}

/// How a Prometheus value is set against its `baseline`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Compare {
    /// `value / baseline` is compared (e.g. `gt: 1.5` = 50% above the baseline).
    #[default]
    Ratio,
    /// `value - baseline` is compared (for rates that are often 0 before the fault).
    Difference,
}

/// What a failed verdict does to the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The verdict is recorded; the step succeeds.
    #[default]
    Record,
    /// A failed (not an unknown) verdict fails the step.
    Fail,
}

/// `ready:` of a Kubernetes probe: every selected object, or at least N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReadyCount {
    All,
    AtLeast(u64),
}

impl<'de> Deserialize<'de> for ReadyCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ReadyCount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or a number of ready objects")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ReadyCount, E> {
                match s.trim() {
                    "all" => Ok(ReadyCount::All),
                    n => n.parse().map(ReadyCount::AtLeast).map_err(|_| {
                        E::custom(format!(
                            "`{s}`: expected `all` or a number of ready objects"
                        ))
                    }),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ReadyCount, E> {
                Ok(ReadyCount::AtLeast(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ReadyCount, E> {
                u64::try_from(n)
                    .map(ReadyCount::AtLeast)
                    .map_err(|_| E::custom(format!("`{n}`: a count cannot be negative")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ReadyCount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReadyCount".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`all`, or the least number of ready objects.",
            "anyOf": [{ "const": "all" }, { "type": "integer", "minimum": 0 }, { "type": "string" }]
        })
    }
}

/// A second window of the same query that the value is set against (`compare`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Start of the baseline window (RFC 3339, usually `{{ steps.warmup.started_at }}`).
    pub start: String,
    /// End of the baseline window.
    pub end: String,
}

/// One probe: what to observe, the tolerance, and when. Fields of other probe types are errors.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// What to observe: `prometheus`, `http`, `kubernetes` or `command`.
    #[serde(rename = "type")]
    pub probe_type: ProbeType,
    /// The tolerance for the probe's number: any of `gt`, `ge`, `lt`, `le`, `eq`, `ne`,
    /// `between: [a, b]`, `outside: [a, b]` (all given must hold). Prometheus: the aggregated
    /// value; kubernetes: the number of matching objects; command: the exit code.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// `once` (default) or `continuous`.
    #[serde(default)]
    pub mode: Mode,
    /// Time between evaluations (continuous, or `once` with `within`). Default 10s.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Continuous: the step whose start (or finish, see `until_event`) ends the probe.
    #[serde(default)]
    pub until: Option<String>,
    /// Continuous: `started` (default) or `finished`.
    #[serde(default)]
    pub until_event: UntilEvent,
    /// Continuous: `all` (default) evaluations must pass, or `any`.
    #[serde(default)]
    pub require: Require,
    /// Once: keep evaluating every `interval` until it passes or this much time has passed.
    #[serde(default)]
    pub within: Option<Duration>,
    /// `record` (default): a failed verdict is data, the step succeeds; `fail`: it fails the step.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The fault step whose effect this probe checks; its verdict goes to `fault_labels.json`.
    #[serde(default)]
    pub verifies: Option<String>,
    /// Limit for one evaluation (request or command). Default 30s.
    #[serde(default)]
    pub request_timeout: Option<Duration>,

    /// prometheus: the PromQL expression.
    #[serde(default)]
    pub query: Option<String>,
    /// prometheus: server URL (else $PROMETHEUS_URL, else a labelled Service).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// prometheus: `avg` (default), `max`, `min` of the window's samples, or `all`/`any` sample.
    #[serde(default)]
    pub aggregate: Aggregate,
    /// prometheus: a range ending at each evaluation (`5m`); without a window or `start` the
    /// query is instant.
    #[serde(default)]
    pub window: Option<Duration>,
    /// prometheus: fixed range start (RFC 3339), e.g. `{{ steps.inject.finished_at }}`.
    #[serde(default)]
    pub start: Option<String>,
    /// prometheus: fixed range end (RFC 3339); default: the evaluation time.
    #[serde(default)]
    pub end: Option<String>,
    /// prometheus: range query resolution. Default 15s.
    #[serde(default)]
    pub resolution: Option<Duration>,
    /// prometheus: the same query over a reference window; `compare` sets the value against it.
    #[serde(default)]
    pub baseline: Option<Baseline>,
    /// prometheus with `baseline`: `ratio` (default) or `difference`.
    #[serde(default)]
    pub compare: Compare,

    /// http: the URL.
    #[serde(default)]
    pub url: Option<String>,
    /// http: the method. Default GET.
    #[serde(default)]
    pub method: Option<String>,
    /// http: request headers.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// http: request body.
    #[serde(default)]
    pub body: Option<String>,
    /// http: accepted status codes. Default: any 2xx.
    #[serde(default)]
    pub status: Vec<u16>,
    /// http: a regex the response body must match.
    #[serde(default)]
    pub body_regex: Option<String>,
    /// http: a JSON pointer (`/status/ok`) into the response body that must exist (and equal
    /// `equals`, when given).
    #[serde(default)]
    pub json_pointer: Option<String>,
    /// http `json_pointer` / kubernetes `field`: the value it must have.
    #[serde(default)]
    pub equals: Option<Value>,
    /// http: the response must arrive within this time.
    #[serde(default)]
    pub latency_under: Option<Duration>,

    /// kubernetes: the resource, plural (`pods`, `deployments`). Default `pods`.
    #[serde(default)]
    pub resource: Option<String>,
    /// kubernetes: group/version of the resource. Default `v1` (`apps/v1` for deployments,
    /// statefulsets, daemonsets, replicasets).
    #[serde(default)]
    pub api_version: Option<String>,
    /// kubernetes: namespace (default: the run's namespace).
    #[serde(default)]
    pub namespace: Option<String>,
    /// kubernetes: a label selector (`app=ts-gateway-service`).
    #[serde(default)]
    pub selector: Option<String>,
    /// kubernetes: only objects whose name starts with one of these.
    #[serde(default)]
    pub name_prefixes: Vec<String>,
    /// kubernetes: `all` selected objects (and at least one) are ready, or at least N are.
    #[serde(default)]
    pub ready: Option<ReadyCount>,
    /// kubernetes: no object matches.
    #[serde(default)]
    pub absent: Option<bool>,
    /// kubernetes: a JSON pointer (`/status/phase`) every selected object must have equal to
    /// `equals`.
    #[serde(default)]
    pub field: Option<String>,

    /// command: what to run (a string runs under `sh -c`, a list is argv).
    #[serde(default)]
    pub run: Option<Command>,
    /// command: the exit code that passes. Default 0 (unless `expect` judges it).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// command: a regex stdout+stderr must match.
    #[serde(default)]
    pub output_regex: Option<String>,
    /// command: working directory, relative to the plan's folder.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

/// A verdict: passed, failed, or unknown (nothing to judge: no data, backend unreachable).
pub type Verdict = Option<bool>;

pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Some(true) => "passed",
        Some(false) => "failed",
        None => "unknown",
    }
}

/// One evaluation of a probe.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub at: DateTime<Utc>,
    /// The observed value (a number where there is one).
    pub value: Value,
    /// `passed`, `failed` or `unknown`.
    pub verdict: &'static str,
    /// Why, in a few words (the failed condition, the error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    pub passed: Verdict,
}

impl Evaluation {
    pub fn new(value: Value, passed: Verdict, detail: Option<String>) -> Self {
        Self {
            at: Utc::now(),
            value,
            verdict: verdict_word(passed),
            detail,
            passed,
        }
    }

    /// Nothing could be judged.
    pub fn unknown(detail: impl Into<String>) -> Self {
        Self::new(Value::Null, None, Some(detail.into()))
    }

    /// The thing observed is broken (connection refused, non-zero exit…).
    pub fn failed(value: Value, detail: impl Into<String>) -> Self {
        Self::new(value, Some(false), Some(detail.into()))
    }
}

/// Everything a probe observed, and its verdict.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub probe_type: ProbeType,
    pub verdict: Verdict,
    pub evaluations: Vec<Evaluation>,
    pub verifies: Option<String>,
}

impl ProbeReport {
    /// The step outputs (and manifest entry) of a probe.
    pub fn to_outputs(&self) -> BTreeMap<String, Value> {
        let last = self.evaluations.last();
        let judged: Vec<&Evaluation> = self
            .evaluations
            .iter()
            .filter(|e| e.passed.is_some())
            .collect();
        let passing = judged.iter().filter(|e| e.passed == Some(true)).count();
        let mut out = BTreeMap::new();
        out.insert("type".into(), json!(self.probe_type.as_str()));
        out.insert("verdict".into(), json!(verdict_word(self.verdict)));
        out.insert("passed".into(), json!(self.verdict));
        out.insert(
            "value".into(),
            last.map_or(Value::Null, |e| e.value.clone()),
        );
        out.insert(
            "success_ratio".into(),
            if judged.is_empty() {
                Value::Null
            } else {
                json!(passing as f64 / judged.len() as f64)
            },
        );
        out.insert(
            "evaluations".into(),
            serde_json::to_value(&self.evaluations).unwrap_or_default(),
        );
        if let Some(v) = &self.verifies {
            out.insert("verifies".into(), json!(v));
        }
        out
    }

    /// One line for errors and logs.
    pub fn summary(&self) -> String {
        let last = self
            .evaluations
            .last()
            .map(|e| {
                format!(
                    "last value {}{}",
                    e.value,
                    e.detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "no evaluation".into());
        format!(
            "{} probe {} after {} evaluation{}: {last}",
            self.probe_type.as_str(),
            verdict_word(self.verdict),
            self.evaluations.len(),
            if self.evaluations.len() == 1 { "" } else { "s" }
        )
    }
}

const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Evaluates `spec` once.
pub async fn evaluate(spec: &ProbeSpec, ctx: &StepCtx) -> Result<Evaluation, StepError> {
    match spec.probe_type {
        ProbeType::Prometheus => prometheus::evaluate(spec, ctx).await,
        ProbeType::Http => Ok(http::evaluate(spec, ctx).await),
        ProbeType::Kubernetes => Ok(kubernetes::evaluate(spec, ctx).await),
        ProbeType::Command => command::evaluate(spec, ctx).await,
    }
}

/// Runs a probe in its mode: once (again while `within` allows, until it passes), or every
/// `interval` until the `until` step reaches its event. Every evaluation goes to the step log.
///
/// # Errors
/// Cancellation; configuration errors that no evaluation can get past.
pub async fn run_probe(spec: &ProbeSpec, ctx: &StepCtx) -> Result<ProbeReport, StepError> {
    let interval = spec.interval.map_or(DEFAULT_INTERVAL, Duration::get);
    let mut evaluations = Vec::new();
    match spec.mode {
        Mode::Once => {
            let deadline = spec.within.map(|w| tokio::time::Instant::now() + w.get());
            loop {
                let e = evaluate_logged(spec, ctx).await?;
                let passed = e.passed == Some(true);
                evaluations.push(e);
                let more = deadline.is_some_and(|d| tokio::time::Instant::now() + interval <= d);
                if passed || !more {
                    break;
                }
                pause(ctx, interval).await?;
            }
            let verdict = evaluations.last().and_then(|e| e.passed);
            return Ok(report(spec, verdict, evaluations));
        }
        Mode::Continuous => {
            let until = spec.until.clone().unwrap_or_default();
            let ended = ctx.wait_for_step(&until, spec.until_event);
            tokio::pin!(ended);
            loop {
                // An evaluation still running when the watched step starts would observe the
                // recovery, not the fault: it is dropped.
                let e = tokio::select! {
                    e = evaluate_logged(spec, ctx) => e?,
                    () = &mut ended => break,
                };
                ctx.progress(format!(
                    "{} evaluations, last {}",
                    evaluations.len() + 1,
                    e.verdict
                ));
                evaluations.push(e);
                tokio::select! {
                    () = &mut ended => break,
                    () = tokio::time::sleep(interval) => {}
                    () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
                }
            }
        }
    }
    let judged: Vec<bool> = evaluations.iter().filter_map(|e| e.passed).collect();
    let verdict = if judged.is_empty() {
        None
    } else {
        Some(match spec.require {
            Require::All => judged.iter().all(|p| *p),
            Require::Any => judged.iter().any(|p| *p),
        })
    };
    Ok(report(spec, verdict, evaluations))
}

fn report(spec: &ProbeSpec, verdict: Verdict, evaluations: Vec<Evaluation>) -> ProbeReport {
    ProbeReport {
        probe_type: spec.probe_type,
        verdict,
        evaluations,
        verifies: spec.verifies.clone(),
    }
}

async fn pause(ctx: &StepCtx, d: std::time::Duration) -> Result<(), StepError> {
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = ctx.cancel_token().cancelled() => Err(StepError::Cancelled),
    }
}

async fn evaluate_logged(spec: &ProbeSpec, ctx: &StepCtx) -> Result<Evaluation, StepError> {
    let limit = spec
        .request_timeout
        .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::get);
    let e = tokio::select! {
        r = tokio::time::timeout(limit, evaluate(spec, ctx)) => match r {
            Ok(e) => e?,
            Err(_) => Evaluation::unknown(format!(
                "no answer within {}",
                humantime::format_duration(limit)
            )),
        },
        () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
    };
    ctx.append_log(&format!(
        "{} {} value={} {}\n",
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        e.verdict,
        e.value,
        e.detail.as_deref().unwrap_or("")
    ))?;
    Ok(e)
}
