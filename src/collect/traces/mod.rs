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
mod list;
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
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use client::{CallError, Failure, GraphQlClient, RetryPolicy};
use list::{BasicPage, ListOutcome, LIST_CONCURRENCY};
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
    /// The most rows the OAP pages through for one query (`from + size`): Elasticsearch's
    /// `index.max_result_window`, 10,000 by default. Larger slices are split.
    pub result_window: u32,
    /// Recorded in the file's metadata (`experiment_name`).
    pub experiment_name: String,
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
    /// Time / latency slices the window was listed in (1 when it fit the result window).
    pub slices: u32,
    /// The `failed_traces` file beside the data, when a trace was lost.
    pub failed_path: Option<PathBuf>,
    pub elapsed: Duration,
}

impl Report {
    /// The published dataset's metadata keys first (DATASET.md, "Trace file"), then ttplan's.
    pub fn metadata(&self, s: &Settings) -> Value {
        json!({
            "generated_at": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            "lookback_hours": (s.until - s.from).num_milliseconds() as f64 / 3_600_000.0,
            "requested_trace_limit": s.size,
            "min_trace_duration_ms": s.min_trace_duration.unwrap_or(0),
            "collected_traces": self.written,
            "available_total": self.listed,
            "services_discovered": self.services,
            "experiment_name": s.experiment_name,
            "skywalking_base_url": s.endpoint,
            "skywalking_graphql": client::graphql_url(&s.endpoint),
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
            "result_window": s.result_window,
            "slices": self.slices,
            "traces_listed": self.listed,
            "traces_written": self.written,
            "traces_failed": self.failed.len(),
            "duplicate_list_entries": self.duplicate_entries,
            "span_count": self.spans,
            "services": self.services,
            "failed_traces": self.failed,
            "failed_traces_path": self.failed_path,
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

    let (timezone, timezone_source) = ctx.timezone().await?;
    let protocol = ctx.protocol(progress).await?;
    let duration = QueryDuration::bucket(s.from, s.until, s.step, timezone);

    let (wtx, writer_thread) = spawn_writer(s)?;
    let stats = if protocol == "v2" {
        ctx.run_v2(&duration, timezone, wtx, progress).await
    } else {
        ctx.run_v1(&duration, timezone, wtx, progress).await
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
        slices: stats.slices,
        failed_path: None,
        elapsed: Duration::ZERO,
    };
    report.failed_path = write_failed_traces(s, &report.failed).await?;
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

/// The thread writing the data file; it hands the writer back to be finished.
type WriterThread = JoinHandle<std::io::Result<TraceWriter>>;

/// Creates the data file and the thread that writes it. File writes happen on a blocking
/// thread so they never stall the async workers; the channel bounds how many finished traces
/// can wait for the disk.
fn spawn_writer(s: &Settings) -> Result<(mpsc::Sender<Vec<u8>>, WriterThread), TraceError> {
    let writer = TraceWriter::create(&s.path, s.format).map_err(|source| TraceError::Io {
        path: s.path.clone(),
        source,
    })?;
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(s.workers.max(1) * 2);
    let writer_thread = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        while let Some(t) = wrx.blocking_recv() {
            writer.write_trace(&t)?;
        }
        Ok::<_, std::io::Error>(writer)
    });
    Ok((wtx, writer_thread))
}

/// Writes the `failed_traces` file beside the data when a trace was lost.
async fn write_failed_traces(
    s: &Settings,
    failed: &[FailedTrace],
) -> Result<Option<PathBuf>, TraceError> {
    if failed.is_empty() {
        return Ok(None);
    }
    let failed_path = writer::failed_traces_path(&s.path);
    let failed = failed.to_vec();
    let target = failed_path.clone();
    tokio::task::spawn_blocking(move || writer::write_failed(&target, &failed))
        .await
        .map_err(|e| TraceError::Config(format!("writer thread failed: {e}")))?
        .map_err(|source| TraceError::Io {
            path: failed_path.clone(),
            source,
        })?;
    Ok(Some(failed_path))
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
    slices: u32,
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

    /// The timezone `Duration` strings are sent in, and where it came from.
    async fn timezone(&self) -> Result<(FixedOffset, &'static str), TraceError> {
        Ok(match self.s.timezone {
            Timezone::Fixed(tz) => (tz, "config"),
            Timezone::Auto => (self.oap_timezone().await?, "oap getTimeInfo"),
        })
    }

    async fn protocol(
        &self,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<&'static str, TraceError> {
        Ok(match self.s.protocol {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
            Protocol::Auto => {
                progress("probing query protocol".into());
                if self.supports_v2().await? {
                    "v2"
                } else {
                    "v1"
                }
            }
        })
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

    fn full(&self, seen: u64) -> bool {
        self.s.size.is_some_and(|n| seen >= n)
    }

    /// v1: the pager lists segment rows, the lister turns them into new trace ids for the
    /// worker pool, which fetches spans while listing goes on.
    async fn run_v1(
        &self,
        duration: &QueryDuration,
        tz: FixedOffset,
        wtx: mpsc::Sender<Vec<u8>>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Stats, TraceError> {
        let workers = self.s.workers.max(1);
        let (tx, rx) = mpsc::channel::<(String, Value)>(workers * 2);
        let (ptx, prx) = mpsc::channel::<BasicPage>(LIST_CONCURRENCY);
        let handed_out = Listed::default();
        let mut pool = Pool {
            ctx: self,
            listed: &handed_out,
            progress,
            stats: Stats::default(),
            done: 0,
            last_progress: Instant::now(),
        };

        let pager = self.list::<BasicPage>(duration, tz, ptx);
        let ids = self.hand_out_ids(prx, tx, &handed_out);
        let fetcher = pool.run(rx, wtx);
        let (listing, (listed, duplicates), fetched) = tokio::join!(pager, ids, fetcher);
        if self.cancel.is_cancelled() {
            return Err(TraceError::Cancelled);
        }
        let listing = listing?;
        let done = fetched?;
        let mut stats = pool.stats;
        progress(format!(
            "{done}/{listed} traces, {} failed",
            stats.failed.len()
        ));
        stats.listed = listed;
        stats.duplicates = duplicates;
        stats.set_listing(&listing, self.full(listed));
        Ok(stats)
    }

    /// Turns listed segment rows into trace ids not handed out before, until `size` is
    /// reached or the pool stops taking them; returns the ids handed out and the duplicates.
    async fn hand_out_ids(
        &self,
        mut prx: mpsc::Receiver<BasicPage>,
        tx: mpsc::Sender<(String, Value)>,
        listed: &Listed,
    ) -> (u64, u64) {
        let mut seen: HashSet<String> = HashSet::new();
        let mut duplicates = 0u64;
        'pages: while let Some(page) = prx.recv().await {
            for basic in page.query_basic_traces.traces {
                // A segment may belong to several traces; each id is fetched once.
                for id in trace_ids(&basic) {
                    if self.full(seen.len() as u64) {
                        break 'pages;
                    }
                    if seen.contains(&id) {
                        duplicates += 1;
                        continue;
                    }
                    seen.insert(id.clone());
                    listed.so_far.store(seen.len() as u64, Ordering::Relaxed);
                    if tx.send((id, basic.clone())).await.is_err() {
                        break 'pages;
                    }
                }
            }
        }
        listed.done.store(true, Ordering::Relaxed);
        (seen.len() as u64, duplicates)
    }

    /// v2: pages carry whole traces, so there is nothing for a worker pool to fetch; pages are
    /// requested concurrently (see [`Ctx::list`]) and enriched as they arrive, in order.
    async fn run_v2(
        &self,
        duration: &QueryDuration,
        tz: FixedOffset,
        wtx: mpsc::Sender<Vec<u8>>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Stats, TraceError> {
        let (ptx, mut prx) = mpsc::channel::<TracesV2>(LIST_CONCURRENCY);
        let pager = self.list::<TracesV2>(duration, tz, ptx);
        let consumer = async move {
            let mut stats = Stats::default();
            let mut seen: HashSet<String> = HashSet::new();
            let mut pages = 0u32;
            'pages: while let Some(page) = prx.recv().await {
                pages += 1;
                for t in page.query_traces.traces {
                    if self.full(seen.len() as u64) {
                        break 'pages;
                    }
                    let spans = t.spans.unwrap_or_default();
                    let Some(id) = spans
                        .iter()
                        .map(|s| s.trace_id.as_str())
                        .find(|id| !id.is_empty())
                        .map(str::to_string)
                    else {
                        return Err(TraceError::Shape {
                            what: format!("queryTraces page {pages}"),
                            detail: "a trace without spans (no trace id to record it by)".into(),
                        });
                    };
                    if !seen.insert(id.clone()) {
                        stats.duplicates += 1;
                        continue;
                    }
                    let d = finish_trace(&id, None, spans);
                    stats.spans += d.spans;
                    stats.services.extend(d.services);
                    if wtx.send(d.json).await.is_err() {
                        return Err(writer_gone(&self.s.path));
                    }
                }
                progress(format!("{} traces ({pages} pages)", seen.len()));
            }
            stats.listed = seen.len() as u64;
            Ok(stats)
        };
        let (listing, stats) = tokio::join!(pager, consumer);
        if self.cancel.is_cancelled() {
            return Err(TraceError::Cancelled);
        }
        // A writer failure explains a listing that stopped early, so it is reported first.
        let mut stats = stats?;
        let listing = listing?;
        stats.set_listing(&listing, self.full(stats.listed));
        Ok(stats)
    }
}

/// Shared between the id lister and the progress line: how many ids were handed out so
/// far, and whether that number is final.
#[derive(Default)]
struct Listed {
    so_far: AtomicU64,
    done: AtomicBool,
}

/// The trace ids of a v1 list row (`BasicTrace.traceIds`).
fn trace_ids(basic: &Value) -> Vec<String> {
    basic
        .get("traceIds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// v1's worker pool: fetches the spans of each id handed out and passes finished traces to
/// the writer.
struct Pool<'c> {
    ctx: &'c Ctx<'c>,
    listed: &'c Listed,
    progress: &'c (dyn Fn(String) + Send + Sync),
    stats: Stats,
    /// Traces finished, written or failed.
    done: u64,
    last_progress: Instant,
}

impl Pool<'_> {
    /// Runs until the ids run out and every fetch has finished; returns how many finished.
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<(String, Value)>,
        wtx: mpsc::Sender<Vec<u8>>,
    ) -> Result<u64, TraceError> {
        let workers = self.ctx.s.workers.max(1);
        // Each fetch (request, JSON parsing, enrichment, serialization) is its own task so
        // every runtime thread shares the CPU work; the set aborts them if the collection
        // stops early, so none outlives the step.
        let mut tasks: JoinSet<Result<Done, FetchFailure>> = JoinSet::new();
        let mut open = true;
        loop {
            let r = tokio::select! {
                next = rx.recv(), if open && tasks.len() < workers => {
                    match next {
                        Some((id, basic)) => {
                            let (client, cancel) = (self.ctx.client.clone(), self.ctx.cancel.clone());
                            tasks.spawn(fetch_v1(client, cancel, id, basic));
                        }
                        None => open = false,
                    }
                    continue;
                }
                Some(r) = tasks.join_next(), if !tasks.is_empty() => r,
                else => break,
            };
            let r = r.map_err(|e| TraceError::Config(format!("trace fetch task failed: {e}")))?;
            self.record(r, &wtx).await?;
        }
        drop(wtx);
        Ok(self.done)
    }

    /// Counts one finished fetch: a trace to write or a lost one to record.
    async fn record(
        &mut self,
        r: Result<Done, FetchFailure>,
        wtx: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), TraceError> {
        match r {
            Ok(d) => {
                self.stats.spans += d.spans;
                self.stats.services.extend(d.services);
                if wtx.send(d.json).await.is_err() {
                    return Err(writer_gone(&self.ctx.s.path));
                }
            }
            Err(f) if matches!(f.reason_kind, ReasonKind::Cancelled) => {
                return Err(TraceError::Cancelled)
            }
            Err(f) => self.stats.failed.push(f.trace),
        }
        self.done += 1;
        if self.last_progress.elapsed() >= Duration::from_millis(250) {
            self.last_progress = Instant::now();
            let listed = self.listed.so_far.load(Ordering::Relaxed);
            let more = if self.listed.done.load(Ordering::Relaxed) {
                ""
            } else {
                "+ (listing)"
            };
            (self.progress)(format!(
                "{}/{listed}{more} traces, {} failed",
                self.done,
                self.stats.failed.len()
            ));
        }
        Ok(())
    }
}

impl Stats {
    fn set_listing(&mut self, l: &ListOutcome, size_reached: bool) {
        self.pages = l.pages;
        self.slices = l.slices;
        self.stop_reason = if size_reached {
            "size reached"
        } else if l.exhausted {
            "every slice listed to a short page"
        } else {
            "consumer stopped"
        };
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
    query_traces: TraceSpansList,
}

#[derive(Deserialize)]
struct TraceSpansList {
    traces: Vec<TraceSpans>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_row_names_every_trace_its_segment_belongs_to() {
        let row = json!({"segmentId": "s", "traceIds": ["t1", 7, "t2", null]});
        assert_eq!(trace_ids(&row), ["t1", "t2"]);
        assert!(trace_ids(&json!({"segmentId": "s", "traceIds": null})).is_empty());
        assert!(trace_ids(&json!({"segmentId": "s"})).is_empty());
    }
}
