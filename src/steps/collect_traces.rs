//! `collect-traces`: SkyWalking traces of the run window to
//! `trace_data/<EXP_NAME>/<EXP_NAME>_skywalking_traces_<ts>.{json|jsonl}`. This module only
//! turns plan fields into [`crate::collect::traces::Settings`]; the collector is there.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::collect::endpoint::resolve_endpoint;
use crate::collect::parse_time;
use crate::collect::traces::client::RetryPolicy;
use crate::collect::traces::query::{self, QueryStep};
use crate::collect::traces::writer::Format;
use crate::collect::traces::{
    self as traces, Protocol, QueryOrder, Report, Settings, Timezone, TraceError, TraceState,
};
use crate::collect::window::{Empty, Floor, Lookback, WindowSpec};
use crate::diag::{Code, PlanDiag};
use crate::kube::discovery;
use crate::plan::node::Node;
use crate::plan::template::Templates;
use crate::plan::Duration;

/// The environment variable read when the plan names no `endpoint`.
pub const ENDPOINT_ENV: &str = "SKYWALKING_URL";

/// Collects SkyWalking traces of the run window.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectTracesConfig {
    /// OAP (or UI) base URL, e.g. `http://oap:12800`; GraphQL is `<endpoint>/graphql`.
    /// Default: the `SKYWALKING_URL` environment variable, else a Service labelled
    /// `component=skywalking` / `app=skywalking` (or `skywalking/skywalking-oap`) in the cluster.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Window start, RFC 3339 (may be a template such as `{{ steps.inject.started_at }}`).
    /// Default: run start − `padding`.
    #[serde(default)]
    pub start: Option<String>,
    /// Window end (exclusive), RFC 3339. Default: when this step starts.
    #[serde(default)]
    pub end: Option<String>,
    /// How far before the run start the default window begins.
    #[serde(default = "default_padding")]
    pub padding: Duration,
    /// `Duration` granularity sent to the OAP: SECOND, MINUTE (default), HOUR or DAY. The OAP
    /// scans whole units, so coarser steps may return traces outside the window.
    #[serde(default)]
    pub step: QueryStep,
    /// The OAP JVM's timezone, in which it reads `Duration` strings: `UTC` (default), a fixed
    /// offset such as `+08:00`, or `auto` to ask the OAP (`getTimeInfo`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// ALL (default), SUCCESS or ERROR traces.
    #[serde(default)]
    pub trace_state: TraceState,
    /// BY_START_TIME (default) or BY_DURATION; decides which traces `size` keeps.
    #[serde(default)]
    pub query_order: QueryOrder,
    /// Only traces at least this long, in milliseconds.
    #[serde(default)]
    pub min_trace_duration: Option<u32>,
    /// Only traces at most this long, in milliseconds.
    #[serde(default)]
    pub max_trace_duration: Option<u32>,
    /// Rows per list page (the OAP lists one row per segment).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The most rows the OAP pages through for one query (`from + size`; Elasticsearch's
    /// `index.max_result_window`). Windows with more rows are listed in time (then latency)
    /// slices that each fit.
    #[serde(default = "default_result_window")]
    pub result_window: u32,
    /// Stop after this many distinct traces. Default: every trace in the window.
    #[serde(default)]
    pub size: Option<u64>,
    /// Concurrent `queryTrace` requests (`workers` is its deprecated name).
    #[serde(default = "default_workers", rename = "concurrency", alias = "workers")]
    pub workers: usize,
    /// Timeout of one GraphQL request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Retries of one GraphQL request after a transient failure (5xx, timeout, connection
    /// error, cut-off body, GraphQL `errors`).
    #[serde(default = "default_request_retries")]
    pub request_retries: u32,
    /// Wait before the first request retry; doubles on each further one (capped at 10s).
    #[serde(default = "default_request_backoff")]
    pub request_backoff: Duration,
    /// Query protocol: `auto` (default, asks `hasQueryTracesV2Support`), `v1` or `v2`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `json` (default: the published dataset's `{metadata, traces}` document, streamed) or
    /// `jsonl` (the same trace records, one per line).
    #[serde(default)]
    pub format: Format,
    /// Output file, relative to the output root. Default:
    /// `trace_data/<EXP_NAME>/<EXP_NAME>_skywalking_traces_<UTC %Y%m%d_%H%M%S>.<format>`.
    /// (`path` is its deprecated name.)
    #[serde(default, rename = "output", alias = "path")]
    pub path: Option<String>,
    /// The step fails when more than this fraction of listed traces could not be fetched
    /// after retries (0.0 fails on any loss, 1.0 never). Failed traces are always listed with
    /// their reason, in the outputs (`failed_traces`, also when the step fails) and in
    /// `<EXP_NAME>_skywalking_failed_traces_<ts>.jsonl` beside the data.
    #[serde(default = "default_max_failed_fraction")]
    pub max_failed_fraction: f64,
}

fn default_padding() -> Duration {
    Duration::from_secs(60)
}
fn default_timezone() -> String {
    "UTC".into()
}
const fn default_page_size() -> u32 {
    100
}
const fn default_result_window() -> u32 {
    10_000
}
const fn default_workers() -> usize {
    24
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
const fn default_request_retries() -> u32 {
    5
}
fn default_request_backoff() -> Duration {
    Duration(StdDuration::from_millis(200))
}
const fn default_max_failed_fraction() -> f64 {
    0.05
}

impl StepConfig for CollectTracesConfig {
    const KIND: &'static str = "collect-traces";
    const ABOUT: &'static str =
        "SkyWalking traces of the run window: paged list, concurrent span fetch, span-tree enrichment";
}

/// How many failed ids the error message names before "and N more".
const FAILED_IN_MESSAGE: usize = 10;

impl CollectTracesConfig {
    fn timezone(&self) -> Result<Timezone, String> {
        if self.timezone.trim().eq_ignore_ascii_case("auto") {
            Ok(Timezone::Auto)
        } else {
            query::parse_offset(&self.timezone).map(Timezone::Fixed)
        }
    }
}

/// What the step resolved from the plan before collecting.
struct Resolved {
    settings: Settings,
    endpoint_source: String,
    /// The output file as the plan names it, relative to the output root.
    rel: String,
}

impl CollectTracesConfig {
    /// The window, the output path and the collector's settings, in the order their errors
    /// are reported (timezone, then window).
    fn settings(
        &self,
        ctx: &StepCtx,
        step_start: DateTime<Utc>,
        endpoint: String,
    ) -> Result<(Settings, String), StepError> {
        let timezone = self.timezone().map_err(StepError::failed)?;
        let (from, until) = WindowSpec {
            start: self.start.as_deref().map(|s| ("start", s)),
            end: self.end.as_deref().map(|e| ("end", e)),
            default_start: Some(Lookback {
                at: ctx.run_started_at(),
                by: self.padding.get(),
                field: "padding",
            }),
            default_end: Some(step_start),
            floor: Floor::Never,
            empty: Empty::Rejected,
        }
        .resolve_closed()
        .map_err(StepError::Failed)?;
        let rel = self.path.clone().unwrap_or_else(|| {
            format!(
                "trace_data/{exp}/{exp}_skywalking_traces_{ts}.{ext}",
                exp = ctx.exp_name(),
                ts = crate::collect::file_ts(step_start),
                ext = self.format.extension(),
            )
        });
        let settings = Settings {
            endpoint,
            from,
            until,
            step: self.step,
            timezone,
            trace_state: self.trace_state,
            query_order: self.query_order,
            min_trace_duration: self.min_trace_duration,
            max_trace_duration: self.max_trace_duration,
            page_size: self.page_size.max(1),
            result_window: self.result_window.max(self.page_size).max(1),
            experiment_name: ctx.exp_name().to_string(),
            size: self.size,
            workers: self.workers.max(1),
            request_timeout: self.request_timeout.get(),
            retry: RetryPolicy {
                retries: self.request_retries,
                backoff: self.request_backoff.get(),
                max_backoff: StdDuration::from_secs(10),
            },
            protocol: self.protocol,
            format: self.format,
            path: ctx.out_dir().join(&rel),
        };
        Ok((settings, rel))
    }

    /// The step outputs: ttplan's keys first, then the file's metadata under its own names.
    fn outputs(&self, ctx: &StepCtx, r: &Resolved, report: &Report) -> StepOutputs {
        let endpoint = &r.settings.endpoint;
        let mut out = StepOutputs::default()
            .endpoint("skywalking", endpoint, &r.endpoint_source)
            .value("endpoint", endpoint.as_str())
            .value("endpoint_source", r.endpoint_source.as_str())
            .value("path", r.rel.as_str())
            .value("format", self.format.extension())
            .value("traces", report.written)
            .value("failed", report.failed.len() as u64);
        if let Some(p) = &report.failed_path {
            let rel = p.strip_prefix(ctx.out_dir()).unwrap_or(p);
            out = out.value("failed_traces_path", rel.display().to_string());
        }
        if let serde_json::Value::Object(m) = report.metadata(&r.settings) {
            for (k, v) in m {
                out.values.entry(k).or_insert(v);
            }
        }
        out
    }

    /// Fails the step, outputs kept, when more traces were lost than `max_failed_fraction`
    /// allows; otherwise the files become its artifacts.
    fn judge_losses(&self, report: Report, mut out: StepOutputs) -> Result<StepOutputs, StepError> {
        let failed = report.failed.len() as u64;
        let fraction = if report.listed == 0 {
            0.0
        } else {
            failed as f64 / report.listed as f64
        };
        if fraction > self.max_failed_fraction {
            let mut names: Vec<String> = report
                .failed
                .iter()
                .take(FAILED_IN_MESSAGE)
                .map(|f| format!("{} ({})", f.trace_id, f.reason))
                .collect();
            if report.failed.len() > FAILED_IN_MESSAGE {
                names.push(format!(
                    "and {} more",
                    report.failed.len() - FAILED_IN_MESSAGE
                ));
            }
            let listing = report
                .failed_path
                .as_ref()
                .map(|p| format!(" (all listed in {})", p.display()))
                .unwrap_or_default();
            // The file is complete for what it holds; it stays, but is not an artifact of a
            // successful step. The outputs keep every lost id.
            return Err(StepError::FailedWithOutputs {
                message: format!(
                    "{failed} of {} traces could not be fetched ({:.1}% > max_failed_fraction {}); \
                     {} written to {}: {}{listing}",
                    report.listed,
                    fraction * 100.0,
                    self.max_failed_fraction,
                    report.written,
                    report.path.display(),
                    names.join(", ")
                ),
                outputs: Box::new(out),
            });
        }
        out.artifacts.push(report.path);
        if let Some(p) = report.failed_path {
            out.artifacts.push(p);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Step for CollectTracesConfig {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let step_start = Utc::now();
        let (endpoint, endpoint_source) = resolve_endpoint(
            ctx,
            self.endpoint.as_deref(),
            ENDPOINT_ENV,
            &discovery::SKYWALKING,
            "SkyWalking",
        )
        .await?;
        let (settings, rel) = self.settings(ctx, step_start, endpoint)?;
        let r = Resolved {
            settings,
            endpoint_source,
            rel,
        };
        let progress = |m: String| ctx.progress(m);
        let report = traces::collect(&r.settings, &progress, ctx.cancel_token())
            .await
            .map_err(|e| match e {
                TraceError::Cancelled => StepError::Cancelled,
                TraceError::Io { path, source } => {
                    StepError::io(format!("writing {}", path.display()))(source)
                }
                other => StepError::collect(format!(
                    "collecting traces from {}",
                    r.settings.endpoint
                ))(other),
            })?;
        let out = self.outputs(ctx, &r, &report);
        self.judge_losses(report, out)
    }

    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        let span = |k: &str| node.get(k).map(|n| &n.span).or(Some(&node.span));
        let mut bad = |k: &str, msg: String| {
            diags.push(PlanDiag::new(Code::InvalidValue, msg, span(k)).label("here"));
        };
        if self.workers == 0 {
            bad("workers", "`workers` must be at least 1".into());
        }
        if self.page_size == 0 {
            bad("page_size", "`page_size` must be at least 1".into());
        }
        if self.result_window < self.page_size {
            bad(
                "result_window",
                format!(
                    "`result_window` {} is below `page_size` {}: not even one page fits",
                    self.result_window, self.page_size
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.max_failed_fraction) {
            bad(
                "max_failed_fraction",
                "`max_failed_fraction` must be between 0.0 and 1.0".into(),
            );
        }
        if !Templates::is_template(&self.timezone) {
            if let Err(e) = self.timezone() {
                bad("timezone", e);
            }
        }
        for (k, v) in [("start", &self.start), ("end", &self.end)] {
            if let Some(v) = v.as_deref().filter(|v| !Templates::is_template(v)) {
                if let Err(e) = parse_time(k, v) {
                    bad(k, e);
                }
            }
        }
        if let (Some(min), Some(max)) = (self.min_trace_duration, self.max_trace_duration) {
            if min > max {
                bad(
                    "min_trace_duration",
                    format!("`min_trace_duration` {min} is above `max_trace_duration` {max}"),
                );
            }
        }
    }
}
