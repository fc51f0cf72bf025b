//! SkyWalking traces: lists the traces of a time window through the OAP's GraphQL query
//! protocol, fetches their spans through a bounded pool of concurrent requests, enriches each
//! into a span tree and streams it to the dataset file.
//!
//! Listing and fetching overlap: the pager feeds trace ids into a bounded channel that the
//! worker pool drains, and finished traces go to a writer thread in completion order. What is
//! held in memory is bounded by the pool size, except the set of trace ids already seen (needed
//! to de-duplicate pages) and the list of failed ids.
//!
//! Protocol choice: `hasQueryTracesV2Support` is asked first. An OAP that does not know the
//! field (before 10.3) or answers `false` gets v1 (`queryBasicTraces` pages + one `queryTrace`
//! per trace); `true` gets v2 (`queryTraces` pages with spans inline).

pub mod client;
pub mod enrich;
pub mod query;
pub mod writer;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use client::{CallError, Failure, GraphQlClient, RetryPolicy};
use query::{QueryDuration, QueryStep};
use writer::{Format, TraceWriter};

/// Which traces the list asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TraceState {
    #[default]
    All,
    Success,
    Error,
}

/// Order of the trace list (it decides which traces `size` keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueryOrder {
    #[default]
    ByStartTime,
    ByDuration,
}

/// Which query protocol to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Ask the OAP (`hasQueryTracesV2Support`).
    #[default]
    Auto,
    /// `queryBasicTraces` + `queryTrace`.
    V1,
    /// `queryTraces`.
    V2,
}

/// The OAP's timezone, in which it reads `Duration` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timezone {
    Fixed(FixedOffset),
    /// Ask the OAP (`getTimeInfo`).
    Auto,
}

/// Everything the collector needs, resolved from the plan by the step.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL; documents go to `<endpoint>/graphql`.
    pub endpoint: String,
    /// Half-open window `[from, until)`.
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub step: QueryStep,
    pub timezone: Timezone,
    pub trace_state: TraceState,
    pub query_order: QueryOrder,
    pub min_trace_duration: Option<u32>,
    pub max_trace_duration: Option<u32>,
    pub page_size: u32,
    /// Stop after this many distinct traces.
    pub size: Option<u64>,
    pub workers: usize,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub protocol: Protocol,
    pub format: Format,
    pub path: PathBuf,
}

/// A trace whose spans could not be fetched.
#[derive(Debug, Clone, Serialize)]
pub struct FailedTrace {
    pub trace_id: String,
    pub reason: String,
    pub attempts: u32,
}

/// What a collection did; becomes the step outputs and the `json` file's metadata.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: PathBuf,
    pub protocol: &'static str,
    pub timezone: FixedOffset,
    pub timezone_source: &'static str,
    pub duration: QueryDuration,
    /// Distinct trace ids the list returned (within `size`).
    pub listed: u64,
    pub written: u64,
    pub spans: u64,
    pub pages: u32,
    /// List entries whose trace id had already been listed (pages shift while traces arrive).
    pub duplicate_entries: u64,
    pub services: BTreeSet<String>,
    pub failed: Vec<FailedTrace>,
    /// Why paging stopped.
    pub stop_reason: &'static str,
    pub elapsed: Duration,
}

impl Report {
    pub fn metadata(&self, s: &Settings) -> Value {
        json!({
            "collector": "skywalking",
            "tool": concat!("ttplan ", env!("CARGO_PKG_VERSION")),
            "endpoint": s.endpoint,
            "protocol": self.protocol,
            "window": {
                "start": rfc3339(s.from),
                "end": rfc3339(s.until),
                "query_duration": self.duration.to_json(),
                "covers_start": rfc3339(self.duration.covers_from),
                "covers_end": rfc3339(self.duration.covers_until),
            },
            "timezone": query::format_offset(self.timezone),
            "timezone_source": self.timezone_source,
            "trace_state": s.trace_state,
            "query_order": s.query_order,
            "min_trace_duration": s.min_trace_duration,
            "max_trace_duration": s.max_trace_duration,
            "page_size": s.page_size,
            "size": s.size,
            "workers": s.workers,
            "pages": self.pages,
            "stop_reason": self.stop_reason,
            "traces_listed": self.listed,
            "traces_written": self.written,
            "traces_failed": self.failed.len(),
            "duplicate_list_entries": self.duplicate_entries,
            "span_count": self.spans,
            "services": self.services,
            "failed_traces": self.failed,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        })
    }
}

/// Why a collection could not produce a file.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{what} failed after {attempts} attempt(s) at {url}: {error}")]
    Call {
        what: String,
        url: String,
        attempts: u32,
        error: CallError,
    },
    #[error("unexpected response to {what}: {detail}")]
    Shape { what: String, detail: String },
    #[error("{0}")]
    Config(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

/// Runs one collection. `progress` receives one-line status messages.
///
/// # Errors
/// When the endpoint cannot be reached for the list, the list is malformed, or the file cannot
/// be written. Individual traces that fail are not errors: they are in [`Report::failed`].
pub async fn collect(
    s: &Settings,
    progress: &(dyn Fn(String) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<Report, TraceError> {
    let started = Instant::now();
    let client = GraphQlClient::new(
        &s.endpoint,
        s.request_timeout,
        s.retry,
        s.workers.max(1) + 2,
    )
    .map_err(TraceError::Config)?;
    let ctx = Ctx {
        s,
        client: &client,
        cancel,
    };

    let (timezone, timezone_source) = match s.timezone {
        Timezone::Fixed(tz) => (tz, "config"),
        Timezone::Auto => (ctx.oap_timezone().await?, "oap getTimeInfo"),
    };
    let protocol = match s.protocol {
        Protocol::V1 => "v1",
        Protocol::V2 => "v2",
        Protocol::Auto => {
            progress("probing query protocol".into());
            if ctx.supports_v2().await? {
                "v2"
            } else {
                "v1"
            }
        }
    };
    let duration = QueryDuration::bucket(s.from, s.until, s.step, timezone);

    let writer = TraceWriter::create(&s.path, s.format).map_err(|source| TraceError::Io {
        path: s.path.clone(),
        source,
    })?;
    // File writes happen on a blocking thread so they never stall the async workers; the
    // channel bounds how many finished traces can wait for the disk.
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(s.workers.max(1) * 2);
    let writer_thread = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        while let Some(t) = wrx.blocking_recv() {
            writer.write_trace(&t)?;
        }
        Ok::<_, std::io::Error>(writer)
    });

    let stats = if protocol == "v2" {
        ctx.run_v2(&duration, wtx, progress).await
    } else {
        ctx.run_v1(&duration, wtx, progress).await
    };
    let writer = writer_thread
        .await
        .map_err(|e| TraceError::Config(format!("trace writer thread failed: {e}")))?;
    // A write failure explains a failed send in the pipeline, so it is reported first.
    let writer = writer.map_err(|source| TraceError::Io {
        path: s.path.clone(),
        source,
    })?;
    let stats = stats?;

    let mut report = Report {
        path: s.path.clone(),
        protocol,
        timezone,
        timezone_source,
        duration,
        listed: stats.listed,
        written: writer.written(),
        spans: stats.spans,
        pages: stats.pages,
        duplicate_entries: stats.duplicates,
        services: stats.services,
        failed: stats.failed,
        stop_reason: stats.stop_reason,
        elapsed: Duration::ZERO,
    };
    report.elapsed = started.elapsed();
    let meta = report.metadata(s);
    let path = tokio::task::spawn_blocking(move || writer.finish(&meta))
        .await
        .map_err(|e| TraceError::Config(format!("writer thread failed: {e}")))?
        .map_err(|source| TraceError::Io {
            path: s.path.clone(),
            source,
        })?;
    report.path = path;
    report.elapsed = started.elapsed();
    Ok(report)
}

struct Ctx<'a> {
    s: &'a Settings,
    client: &'a GraphQlClient,
    cancel: &'a CancellationToken,
}

#[derive(Default)]
struct Stats {
    listed: u64,
    spans: u64,
    pages: u32,
    duplicates: u64,
    services: BTreeSet<String>,
    failed: Vec<FailedTrace>,
    stop_reason: &'static str,
}

/// One enriched trace, serialized, with what the report needs from it.
struct Done {
    json: Vec<u8>,
    spans: u64,
    services: Vec<String>,
}

impl Ctx<'_> {
    fn call_error(&self, what: &str, f: Failure) -> TraceError {
        if matches!(f.error, CallError::Cancelled) {
            return TraceError::Cancelled;
        }
        TraceError::Call {
            what: what.to_string(),
            url: self.client.url().to_string(),
            attempts: f.attempts,
            error: f.error,
        }
    }

    async fn supports_v2(&self) -> Result<bool, TraceError> {
        match self
            .client
            .call::<Value>(query::PROBE_V2, json!({}), self.cancel)
            .await
        {
            Ok(data) => {
                Ok(data.get("hasQueryTracesV2Support").and_then(Value::as_bool) == Some(true))
            }
            Err(f) if f.error.is_undefined_field() => Ok(false),
            Err(f) => Err(self.call_error("probing hasQueryTracesV2Support", f)),
        }
    }

    async fn oap_timezone(&self) -> Result<FixedOffset, TraceError> {
        let data: Value = self
            .client
            .call(query::TIME_INFO, json!({}), self.cancel)
            .await
            .map_err(|f| self.call_error("getTimeInfo (timezone: auto)", f))?;
        let tz = data
            .pointer("/getTimeInfo/timezone")
            .and_then(Value::as_str)
            .ok_or_else(|| TraceError::Shape {
                what: "getTimeInfo".into(),
                detail: format!("no timezone in {data}"),
            })?;
        query::parse_offset(tz).map_err(|detail| TraceError::Shape {
            what: "getTimeInfo".into(),
            detail,
        })
    }

    fn condition(&self, duration: &QueryDuration, page: u32) -> Value {
        let mut c = json!({
            "queryDuration": duration.to_json(),
            "traceState": self.s.trace_state,
            "queryOrder": self.s.query_order,
            "paging": { "pageNum": page, "pageSize": self.s.page_size },
        });
        if let Some(m) = self.s.min_trace_duration {
            c["minTraceDuration"] = json!(m);
        }
        if let Some(m) = self.s.max_trace_duration {
            c["maxTraceDuration"] = json!(m);
        }
        json!({ "condition": c })
    }

    fn full(&self, seen: u64) -> bool {
        self.s.size.is_some_and(|n| seen >= n)
    }

    /// v1: a pager task feeds ids to the worker pool while it keeps paging.
    async fn run_v1(
        &self,
        duration: &QueryDuration,
        wtx: mpsc::Sender<Vec<u8>>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Stats, TraceError> {
        let workers = self.s.workers.max(1);
        let (tx, mut rx) = mpsc::channel::<(String, Value)>(workers * 2);
        let mut stats = Stats::default();
        // Shared with the progress line: how many ids the pager has handed out so far, and
        // whether that number is final.
        let listed_so_far = AtomicU64::new(0);
        let listing_done = AtomicBool::new(false);
        let (listed_ref, done_ref) = (&listed_so_far, &listing_done);

        let pager = async move {
            let mut seen: HashSet<String> = HashSet::new();
            let mut pages = 0u32;
            let mut duplicates = 0u64;
            let reason = loop {
                pages += 1;
                let data: Value = self
                    .client
                    .call(
                        query::BASIC_TRACES,
                        self.condition(duration, pages),
                        self.cancel,
                    )
                    .await
                    .map_err(|f| self.call_error(&format!("queryBasicTraces page {pages}"), f))?;
                let list = data
                    .pointer("/queryBasicTraces/traces")
                    .and_then(Value::as_array)
                    .ok_or_else(|| TraceError::Shape {
                        what: format!("queryBasicTraces page {pages}"),
                        detail: "no `traces` list".into(),
                    })?;
                let mut new = 0usize;
                for basic in list {
                    // A segment may belong to several traces; each id is fetched once.
                    for id in basic
                        .get("traceIds")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if self.full(seen.len() as u64) {
                            break;
                        }
                        if !seen.insert(id.to_string()) {
                            duplicates += 1;
                            continue;
                        }
                        new += 1;
                        listed_ref.store(seen.len() as u64, Ordering::Relaxed);
                        if tx.send((id.to_string(), basic.clone())).await.is_err() {
                            return Ok((seen.len() as u64, pages, duplicates, "consumer stopped"));
                        }
                    }
                }
                if self.full(seen.len() as u64) {
                    break "size reached";
                }
                if list.len() < self.s.page_size as usize {
                    break "short page";
                }
                if new == 0 {
                    // A full page of ids we already have: the OAP is ignoring `pageNum` or
                    // the list keeps shifting; paging on would never end.
                    break "full page without new traces";
                }
            };
            done_ref.store(true, Ordering::Relaxed);
            Ok::<_, TraceError>((seen.len() as u64, pages, duplicates, reason))
        };

        let fetcher = {
            let stats = &mut stats;
            async move {
                // Each fetch (request, JSON parsing, enrichment, serialization) is its own task
                // so every runtime thread shares the CPU work; the set aborts them if the
                // collection stops early, so none outlives the step.
                let mut tasks: JoinSet<Result<Done, FetchFailure>> = JoinSet::new();
                let mut open = true;
                let mut last = Instant::now();
                let mut done = 0u64;
                loop {
                    let r = tokio::select! {
                        next = rx.recv(), if open && tasks.len() < workers => {
                            match next {
                                Some((id, basic)) => {
                                    tasks.spawn(fetch_v1(self.client.clone(), self.cancel.clone(), id, basic));
                                }
                                None => open = false,
                            }
                            continue;
                        }
                        Some(r) = tasks.join_next(), if !tasks.is_empty() => r,
                        else => break,
                    };
                    let r =
                        r.map_err(|e| TraceError::Config(format!("trace fetch task failed: {e}")))?;
                    match r {
                        Ok(d) => {
                            stats.spans += d.spans;
                            stats.services.extend(d.services);
                            if wtx.send(d.json).await.is_err() {
                                return Err(writer_gone(&self.s.path));
                            }
                        }
                        Err(f) if matches!(f.reason_kind, ReasonKind::Cancelled) => {
                            return Err(TraceError::Cancelled)
                        }
                        Err(f) => stats.failed.push(f.trace),
                    }
                    done += 1;
                    if last.elapsed() >= Duration::from_millis(250) {
                        last = Instant::now();
                        let listed = listed_ref.load(Ordering::Relaxed);
                        let more = if done_ref.load(Ordering::Relaxed) {
                            ""
                        } else {
                            "+ (listing)"
                        };
                        progress(format!(
                            "{done}/{listed}{more} traces, {} failed",
                            stats.failed.len()
                        ));
                    }
                }
                drop(wtx);
                Ok::<_, TraceError>(done)
            }
        };

        let (listed, fetched) = tokio::join!(pager, fetcher);
        if self.cancel.is_cancelled() {
            return Err(TraceError::Cancelled);
        }
        let (listed, pages, duplicates, reason) = listed?;
        let done = fetched?;
        progress(format!(
            "{done}/{listed} traces, {} failed",
            stats.failed.len()
        ));
        stats.listed = listed;
        stats.pages = pages;
        stats.duplicates = duplicates;
        stats.stop_reason = reason;
        Ok(stats)
    }

    /// v2: pages carry whole traces, so there is nothing for a worker pool to do.
    async fn run_v2(
        &self,
        duration: &QueryDuration,
        wtx: mpsc::Sender<Vec<u8>>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Stats, TraceError> {
        let mut stats = Stats::default();
        let mut seen: HashSet<String> = HashSet::new();
        let mut page = 0u32;
        stats.stop_reason = loop {
            page += 1;
            let data: TracesV2 = self
                .client
                .call(
                    query::TRACES_V2,
                    self.condition(duration, page),
                    self.cancel,
                )
                .await
                .map_err(|f| self.call_error(&format!("queryTraces page {page}"), f))?;
            let Some(list) = data.query_traces.and_then(|l| l.traces) else {
                return Err(TraceError::Shape {
                    what: format!("queryTraces page {page}"),
                    detail: "no `traces` list".into(),
                });
            };
            let listed = list.len();
            let mut new = 0usize;
            for t in list {
                if self.full(seen.len() as u64) {
                    break;
                }
                let spans = t.spans.unwrap_or_default();
                let Some(id) = spans
                    .iter()
                    .map(|s| s.trace_id.as_str())
                    .find(|id| !id.is_empty())
                    .map(str::to_string)
                else {
                    return Err(TraceError::Shape {
                        what: format!("queryTraces page {page}"),
                        detail: "a trace without spans (no trace id to record it by)".into(),
                    });
                };
                if !seen.insert(id.clone()) {
                    stats.duplicates += 1;
                    continue;
                }
                new += 1;
                let d = finish_trace(&id, None, spans);
                stats.spans += d.spans;
                stats.services.extend(d.services);
                if wtx.send(d.json).await.is_err() {
                    return Err(writer_gone(&self.s.path));
                }
            }
            progress(format!("{} traces (page {page})", seen.len()));
            if self.full(seen.len() as u64) {
                break "size reached";
            }
            if listed < self.s.page_size as usize {
                break "short page";
            }
            if new == 0 {
                break "full page without new traces";
            }
        };
        stats.listed = seen.len() as u64;
        stats.pages = page;
        Ok(stats)
    }
}

enum ReasonKind {
    Failed,
    Cancelled,
}

struct FetchFailure {
    reason_kind: ReasonKind,
    trace: FailedTrace,
}

/// `data` of `TRACE_DETAIL`.
#[derive(Deserialize)]
struct TraceDetail {
    #[serde(rename = "queryTrace")]
    query_trace: Option<TraceSpans>,
}

/// `data` of `TRACES_V2`.
#[derive(Deserialize)]
struct TracesV2 {
    #[serde(rename = "queryTraces")]
    query_traces: Option<TraceSpansList>,
}

#[derive(Deserialize)]
struct TraceSpansList {
    traces: Option<Vec<TraceSpans>>,
}

#[derive(Deserialize)]
struct TraceSpans {
    #[serde(default)]
    spans: Option<Vec<enrich::Span>>,
}

async fn fetch_v1(
    client: GraphQlClient,
    cancel: CancellationToken,
    id: String,
    basic: Value,
) -> Result<Done, FetchFailure> {
    let vars = json!({ "traceId": id });
    let data: TraceDetail = match client.call(query::TRACE_DETAIL, vars, &cancel).await {
        Ok(d) => d,
        Err(f) => {
            let kind = if matches!(f.error, CallError::Cancelled) {
                ReasonKind::Cancelled
            } else {
                ReasonKind::Failed
            };
            return Err(FetchFailure {
                reason_kind: kind,
                trace: FailedTrace {
                    trace_id: id,
                    reason: f.error.to_string(),
                    attempts: f.attempts,
                },
            });
        }
    };
    match data.query_trace.and_then(|t| t.spans) {
        Some(spans) if !spans.is_empty() => Ok(finish_trace(&id, Some(&basic), spans)),
        // An empty answer for a listed trace means the OAP lost or has not yet indexed it;
        // say so rather than write a trace with no spans.
        _ => Err(FetchFailure {
            reason_kind: ReasonKind::Failed,
            trace: FailedTrace {
                trace_id: id,
                reason: "queryTrace returned no spans".into(),
                attempts: 1,
            },
        }),
    }
}

fn finish_trace(id: &str, basic: Option<&Value>, spans: Vec<enrich::Span>) -> Done {
    let e = enrich::enrich(id, basic, spans);
    Done {
        json: e.json,
        spans: e.span_count as u64,
        services: e.services,
    }
}

/// The writer thread only stops early on an I/O error, which `collect` reports itself.
fn writer_gone(path: &std::path::Path) -> TraceError {
    TraceError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("trace writer stopped"),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
