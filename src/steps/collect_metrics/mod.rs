//! `collect-metrics`: Prometheus range queries over the run window → a long CSV under
//! `metric_data/<EXP_NAME>/`. This module is the plan-facing shell (config, checks, outputs);
//! the collector itself is [`crate::collect::metrics`].

mod check;
mod queries;

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::collect::endpoint::resolve_endpoint;
use crate::collect::file_ts;
use crate::collect::metrics::client::ClientOptions;
use crate::collect::metrics::{
    collect, MetricsError, MetricsJob, MetricsReport, NamedQuery, OnQueryError, QueryReport,
};
use crate::collect::window::{Empty, Floor, Lookback, WindowSpec};
use crate::diag::PlanDiag;
use crate::kube::discovery;
use crate::plan::node::Node;
use crate::plan::Duration;
pub use queries::{Queries, QueryEntry};

/// The environment variable read when the plan names no endpoint.
pub const ENDPOINT_ENV: &str = "PROMETHEUS_URL";

/// Collects Prometheus metrics over the run window into a CSV.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectMetricsConfig {
    /// Prometheus base URL (`http://prometheus.monitoring:9090`, a path prefix is kept). Empty or
    /// absent: the `PROMETHEUS_URL` environment variable (the step's `env:` first, then
    /// ttplan's own).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// PromQL queries: a list of query texts (the text is the CSV's `metric_name`) or
    /// `{query, name}` items, or a mapping `name: query` (the name is an alias written as
    /// `metric_name`).
    #[serde(default)]
    pub queries: Queries,
    /// Groups of queries, `set: [query…]` (items as in `queries`) — normally the `metric_sets`
    /// var of `plans/base/metrics.yaml`, passed as `metric_sets: "{{ metric_sets }}"`. A query
    /// listed in two selected sets runs once.
    #[serde(default)]
    pub metric_sets: IndexMap<String, Queries>,
    /// Which of `metric_sets` to run, in this order (default: all, in their order).
    #[serde(default)]
    pub sets: Option<Vec<String>>,
    /// Window start, RFC 3339 (`2025-11-15T09:00:00Z`, or a runtime template such as
    /// `{{ steps.inject.started_at }}`). Default: the run's start minus `padding`.
    #[serde(default)]
    pub start: Option<String>,
    /// Window end, RFC 3339. Default: when this step starts.
    #[serde(default)]
    pub end: Option<String>,
    /// How far before the run's start the default window begins.
    #[serde(default = "default_padding")]
    pub padding: Duration,
    /// Resolution of the range queries (Prometheus' `step`).
    #[serde(default = "default_step")]
    pub step: Duration,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Ask Prometheus for gzip-compressed responses (worth it over a slow link; on loopback
    /// uncompressed is faster).
    #[serde(default)]
    pub compression: bool,
    /// Timeout of one HTTP request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Extra attempts for a request that failed with a 5xx, 429, timeout or connection error
    /// (waits 500ms, doubling). A 4xx (bad PromQL) is never retried.
    #[serde(default = "default_request_retries")]
    pub request_retries: u32,
    /// A query that still fails: `fail` (default) fails the step, naming the query and quoting
    /// Prometheus' error, and writes no CSV; `record` writes the other queries' data and lists
    /// the failure in the step outputs.
    #[serde(default)]
    pub on_query_error: OnQueryErrorConfig,
    /// CSV path, relative to the output root. Default:
    /// `metric_data/<EXP_NAME>/<EXP_NAME>_metrics_<ts>.csv`, `<ts>` = the step's start as UTC
    /// `%Y%m%d_%H%M%S` (the published dataset's shape).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// One CSV per query, `<output stem>_<query name>.csv`, instead of one file.
    #[serde(default)]
    pub split: bool,
}

/// What to do with a query that fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnQueryErrorConfig {
    /// Fail the step (no CSV).
    #[default]
    Fail,
    /// Keep going; the failure is listed in the outputs.
    Record,
}

fn default_padding() -> Duration {
    Duration::from_secs(60)
}
fn default_step() -> Duration {
    Duration::from_secs(15)
}
fn default_concurrency() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_request_retries() -> u32 {
    4
}

impl StepConfig for CollectMetricsConfig {
    const KIND: &'static str = "collect-metrics";
    const ABOUT: &'static str =
        "Prometheus range queries over the run window → metric_data/<EXP_NAME>/…_metrics_<ts>.csv";
}

impl CollectMetricsConfig {
    /// The queries in output order: `queries`, then each selected set's queries, each once.
    ///
    /// # Errors
    /// An unknown set, one `metric_name` for two queries, an empty query, or no query at all.
    pub fn resolved_queries(&self) -> Result<Vec<NamedQuery>, queries::QueryProblem> {
        queries::resolve(&self.queries, &self.metric_sets, self.sets.as_deref())
    }

    fn step_ms(&self) -> Result<i64, String> {
        let ms = i64::try_from(self.step.get().as_millis()).unwrap_or(i64::MAX);
        if ms < 1 {
            return Err(format!("`step` must be at least 1ms, got {}", self.step));
        }
        Ok(ms)
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What the step log keeps of a collection: the window and each query's outcome.
fn summary(
    endpoint: &str,
    source: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    queries: &[QueryReport],
    files: &[String],
) -> String {
    let mut s = format!(
        "--- {} collect-metrics from {endpoint} ({source}), window {} .. {}\n",
        iso(Utc::now()),
        iso(start),
        iso(end)
    );
    for q in queries {
        s.push_str(&format!(
            "{}: {} ({} series, {} samples){}\n",
            q.name,
            q.status.as_str(),
            q.series,
            q.samples,
            q.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    for f in files {
        s.push_str(&format!("wrote {f}\n"));
    }
    s
}

/// A finished collection, with what the step outputs and log say about it.
struct Collected {
    endpoint: String,
    endpoint_source: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    report: MetricsReport,
}

impl CollectMetricsConfig {
    /// `start`/`end`, defaulting to the run's start minus `padding` and the step's start.
    fn window(
        &self,
        ctx: &StepCtx,
        step_started: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), StepError> {
        // Default bounds fall on whole seconds, so every sample's `timestamp` is an integer
        // (as in the published CSVs) instead of carrying the run start's milliseconds.
        WindowSpec {
            start: self.start.as_deref().map(|s| ("start", s)),
            end: self.end.as_deref().map(|e| ("end", e)),
            default_start: Some(Lookback {
                at: ctx.run_started_at(),
                by: self.padding.get(),
                field: "padding",
            }),
            default_end: Some(step_started),
            floor: Floor::Defaults,
            empty: Empty::InstantOk,
        }
        .resolve_closed()
        .map_err(StepError::Failed)
    }

    /// `output` under the output root, or the published layout's
    /// `metric_data/<EXP_NAME>/<EXP_NAME>_metrics_<ts>.csv`.
    fn output_path(&self, ctx: &StepCtx, step_started: DateTime<Utc>) -> PathBuf {
        match &self.output {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => ctx.out_dir().join(p),
            None => {
                let exp = ctx.exp_name();
                ctx.out_dir()
                    .join("metric_data")
                    .join(exp)
                    .join(format!("{exp}_metrics_{}.csv", file_ts(step_started)))
            }
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            request_timeout: self.request_timeout.get(),
            retries: self.request_retries,
            backoff: std::time::Duration::from_millis(500),
            compression: self.compression,
        }
    }

    /// The step's outputs; reports the queries without data and appends the summary to the
    /// step log first.
    fn outputs(&self, ctx: &StepCtx, c: Collected) -> Result<StepOutputs, StepError> {
        let rel = |p: &PathBuf| {
            p.strip_prefix(ctx.out_dir())
                .unwrap_or(p)
                .display()
                .to_string()
        };
        let report = c.report;
        let queries: Vec<serde_json::Value> =
            report.queries.iter().map(|q| query_json(q, rel)).collect();
        let failed: Vec<&str> = report
            .queries
            .iter()
            .filter(|q| q.error.is_some())
            .map(|q| q.name.as_str())
            .collect();
        if !failed.is_empty() {
            ctx.progress(format!("no data from: {}", failed.join(", ")));
        }
        let files: Vec<String> = report.files.iter().map(rel).collect();
        ctx.append_log(&summary(
            &c.endpoint,
            &c.endpoint_source,
            c.start,
            c.end,
            &report.queries,
            &files,
        ))?;
        let mut out = StepOutputs::default()
            .endpoint("prometheus", &c.endpoint, &c.endpoint_source)
            .value("endpoint", c.endpoint)
            .value("endpoint_source", c.endpoint_source)
            .value("start", iso(c.start))
            .value("end", iso(c.end))
            .value("step", self.step.to_string())
            .value("chunks_per_query", report.chunks_per_query)
            .value("requests", report.requests)
            .value(
                "series",
                report.queries.iter().map(|q| q.series).sum::<u64>(),
            )
            .value("samples", report.rows)
            .value("bytes", report.bytes)
            .value("csv", files.first().cloned())
            .value("files", files)
            .value("queries", queries);
        out.digests = report
            .files
            .iter()
            .cloned()
            .zip(report.digests.iter().cloned())
            .collect();
        out.artifacts = report.files;
        Ok(out)
    }
}

/// One query's entry in the `queries` output; `rel` makes its file relative to the output root.
fn query_json(q: &QueryReport, rel: impl Fn(&PathBuf) -> String) -> serde_json::Value {
    serde_json::json!({
        "name": q.name,
        "series": q.series,
        "samples": q.samples,
        "status": q.status.as_str(),
        "error": q.error,
        "warnings": q.warnings,
        "file": q.file.as_ref().map(rel),
    })
}

#[async_trait::async_trait]
impl Step for CollectMetricsConfig {
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let step_started = Utc::now();
        let (endpoint, endpoint_source) = resolve_endpoint(
            ctx,
            self.endpoint.as_deref(),
            ENDPOINT_ENV,
            &discovery::PROMETHEUS,
            "Prometheus",
        )
        .await?;
        let queries = self
            .resolved_queries()
            .map_err(|e| StepError::Failed(e.message))?;
        let step_ms = self.step_ms().map_err(StepError::Failed)?;
        let (start, end) = self.window(ctx, step_started)?;
        let job = MetricsJob {
            endpoint: endpoint.clone(),
            queries,
            start_ms: start.timestamp_millis(),
            end_ms: end.timestamp_millis(),
            step_ms,
            concurrency: self.concurrency.max(1),
            client: self.client_options(),
            on_error: match self.on_query_error {
                OnQueryErrorConfig::Fail => OnQueryError::Fail,
                OnQueryErrorConfig::Record => OnQueryError::Record,
            },
            output: self.output_path(ctx, step_started),
            split: self.split,
        };
        let progress = |m: String| ctx.progress(m);
        let report = collect(&job, ctx.cancel_token(), &progress)
            .await
            .map_err(|e| match e {
                MetricsError::Cancelled => StepError::Cancelled,
                e => StepError::collect_said(e, |e| format!("{e} (Prometheus at {endpoint})")),
            })?;
        let collected = Collected {
            endpoint,
            endpoint_source,
            start,
            end,
            report,
        };
        self.outputs(ctx, collected)
    }

    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        self.check_fields(node, diags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> CollectMetricsConfig {
        let file = crate::diag::SourceFile::new("t.yaml", None, yaml.into());
        crate::plan::node_de::from_node(&crate::plan::node::parse_yaml(&file).unwrap()).unwrap()
    }

    #[test]
    fn queries_come_in_plan_order_then_sets() {
        let c = cfg("queries: {b: up, a: 'rate(x[1m])'}\n\
             metric_sets: {perf: {cpu: c, mem: m}, db: {qps: q}}\n\
             sets: [db, perf]\n");
        let names: Vec<String> = c
            .resolved_queries()
            .unwrap()
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(names, ["b", "a", "qps", "cpu", "mem"]);
        let c = cfg("queries: [{name: x, query: up}]\nmetric_sets: {s: {y: up}}\n");
        assert_eq!(c.resolved_queries().unwrap().len(), 2);
        let c = cfg("queries: [up, {query: 'rate(x[5m])'}]\nmetric_sets: {s: [up]}\n");
        let names: Vec<String> = c
            .resolved_queries()
            .unwrap()
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(names, ["up", "rate(x[5m])"]);
    }

    #[test]
    fn bad_query_lists_are_explained() {
        let e = cfg("queries: {a: up}\nmetric_sets: {perf: {a: 'up == 1'}}\n")
            .resolved_queries()
            .unwrap_err();
        assert!(
            e.message.starts_with("`a` names two different queries"),
            "{e}"
        );
        let e = cfg("metric_sets: {performance: [up]}\nsets: [perfomance]\n")
            .resolved_queries()
            .unwrap_err();
        assert_eq!(
            e.message,
            "`sets` names `perfomance`, which is not in `metric_sets` (did you mean `performance`?)"
        );
        // A query text is a name: anything PromQL allows.
        let c = cfg("queries: ['sum by (pod) (rate(x{a=\"b,c\"}[5m]))']");
        assert_eq!(
            c.resolved_queries().unwrap()[0].name,
            "sum by (pod) (rate(x{a=\"b,c\"}[5m]))"
        );
    }
}
