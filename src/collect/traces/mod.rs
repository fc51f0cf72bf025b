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
use futures_util::stream::{self, StreamExt};
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
    if !report.failed.is_empty() {
        let failed_path = writer::failed_traces_path(&s.path);
        let failed = report.failed.clone();
        let target = failed_path.clone();
        tokio::task::spawn_blocking(move || writer::write_failed(&target, &failed))
            .await
            .map_err(|e| TraceError::Config(format!("writer thread failed: {e}")))?
            .map_err(|source| TraceError::Io {
                path: failed_path.clone(),
                source,
            })?;
        report.failed_path = Some(failed_path);
    }
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

    fn condition(&self, slice: &Slice, page: u32) -> Value {
        let mut c = json!({
            "queryDuration": slice.duration.to_json(),
            "traceState": self.s.trace_state,
            "queryOrder": self.s.query_order,
            "paging": { "pageNum": page, "pageSize": self.s.page_size },
        });
        // The OAP reads 0 as "no bound" for both (TraceQueryEsDAO.queryBasicTraces).
        if slice.min_latency > 0 {
            c["minTraceDuration"] = json!(slice.min_latency);
        }
        if let Some(m) = slice.max_latency {
            c["maxTraceDuration"] = json!(m);
        }
        json!({ "condition": c })
    }

    fn full(&self, seen: u64) -> bool {
        self.s.size.is_some_and(|n| seen >= n)
    }

    async fn page<P: ListPage>(&self, slice: &Slice, n: u32) -> Result<P, Failure> {
        self.client
            .call(P::DOCUMENT, self.condition(slice, n), self.cancel)
            .await
    }

    /// Lists every row of the window into `tx`, slice by slice, pages of a slice in order.
    ///
    /// Only an empty or short page ends a slice: with segment rows (one per segment of a
    /// cross-service trace) a full page of already-seen traces is normal. A slice whose rows
    /// would pass the OAP's result window (`from + size` ≤ `result_window` on Elasticsearch) is
    /// bisected — by time down to one second (the finest `Duration` step), then by latency —
    /// before it is paged; see docs/collect-traces.md.
    async fn list<P: ListPage>(
        &self,
        top: &QueryDuration,
        tz: FixedOffset,
        tx: mpsc::Sender<P>,
    ) -> Result<ListOutcome, TraceError> {
        let size = self.s.page_size as usize;
        let mut max_pages = (self.s.result_window / self.s.page_size).max(1);
        let mut out = ListOutcome::default();
        let mut stack = vec![Slice {
            duration: top.clone(),
            min_latency: self.s.min_trace_duration.unwrap_or(0),
            max_latency: self.s.max_trace_duration,
        }];
        let what = |slice: &Slice, n: u32| {
            format!(
                "{} page {n} of [{} .. {}]",
                P::ROOT,
                slice.duration.start,
                slice.duration.end
            )
        };
        // A page answered with the OAP's "Result window is too large": the slice is split, and
        // a window smaller than configured is adopted for the remaining slices.
        let shrink = |f: &Failure, max_pages: &mut u32| -> bool {
            let Some(limit) = f.error.result_window() else {
                return false;
            };
            let fits = limit.map_or(*max_pages / 2, |l| l / self.s.page_size);
            *max_pages = fits.clamp(1, (*max_pages).max(1));
            true
        };
        'slices: while let Some(slice) = stack.pop() {
            out.slices += 1;
            let first: P = match self.page(&slice, 1).await {
                Ok(p) => p,
                Err(f) if shrink(&f, &mut max_pages) => {
                    self.split(&slice, None, tz, &mut stack)?;
                    continue;
                }
                Err(f) => return Err(self.call_error(&what(&slice, 1), f)),
            };
            out.pages += 1;
            if first.rows() < size {
                if tx.send(first).await.is_err() {
                    return Ok(out);
                }
                continue;
            }
            // A full first page: ask for the last page the result window allows. If that one
            // is full too, the slice may hold more rows than the OAP will page through.
            let probe: Option<P> = if max_pages > 1 {
                match self.page(&slice, max_pages).await {
                    Ok(p) => {
                        out.pages += 1;
                        Some(p).filter(|p: &P| p.rows() < size)
                    }
                    Err(f) if shrink(&f, &mut max_pages) => None,
                    Err(f) => return Err(self.call_error(&what(&slice, max_pages), f)),
                }
            } else {
                None
            };
            let Some(probe) = probe else {
                let longest = (self.s.query_order == QueryOrder::ByDuration)
                    .then(|| first.max_latency())
                    .flatten();
                self.split(&slice, longest, tz, &mut stack)?;
                continue;
            };
            if tx.send(first).await.is_err() {
                return Ok(out);
            }
            // Offset paging is stateless on the OAP, so the pages in between are requested
            // concurrently and consumed in order.
            let last = max_pages;
            let current = &slice;
            let mut pages = stream::iter(2..last)
                .map(|n| async move { (n, self.page::<P>(current, n).await) })
                .buffered(LIST_CONCURRENCY);
            while let Some((n, r)) = pages.next().await {
                let p = match r {
                    Ok(p) => p,
                    Err(f) if shrink(&f, &mut max_pages) => {
                        drop(pages);
                        // Rows already listed are listed again and de-duplicated by id.
                        self.split(&slice, None, tz, &mut stack)?;
                        continue 'slices;
                    }
                    Err(f) => return Err(self.call_error(&what(&slice, n), f)),
                };
                out.pages += 1;
                let short = p.rows() < size;
                if tx.send(p).await.is_err() {
                    return Ok(out);
                }
                if short {
                    continue 'slices;
                }
            }
            if tx.send(probe).await.is_err() {
                return Ok(out);
            }
        }
        out.exhausted = true;
        Ok(out)
    }

    /// Replaces an overflowing slice by two halves, the half to list first on top: the later
    /// half for BY_START_TIME (newest first, as the OAP orders), the longer half for
    /// BY_DURATION, so `size` keeps the same traces it would without slicing.
    fn split(
        &self,
        slice: &Slice,
        longest: Option<u32>,
        tz: FixedOffset,
        stack: &mut Vec<Slice>,
    ) -> Result<(), TraceError> {
        let by_duration = self.s.query_order == QueryOrder::ByDuration;
        let halves = if by_duration {
            slice
                .split_latency(longest)
                .or_else(|| slice.split_time(tz))
        } else {
            slice.split_time(tz).or_else(|| slice.split_latency(None))
        };
        let Some((first, second)) = halves else {
            return Err(TraceError::Config(format!(
                "more segment rows than the OAP's result window ({} rows) within one second \
                 ({} .. {}) and one trace duration: raise the storage's result window \
                 (Elasticsearch `index.max_result_window`) and `result_window` to match",
                self.s.result_window, slice.duration.start, slice.duration.end
            )));
        };
        stack.push(second);
        stack.push(first);
        Ok(())
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
        let (tx, mut rx) = mpsc::channel::<(String, Value)>(workers * 2);
        let (ptx, mut prx) = mpsc::channel::<BasicPage>(LIST_CONCURRENCY);
        let mut stats = Stats::default();
        // Shared with the progress line: how many ids the pager has handed out so far, and
        // whether that number is final.
        let listed_so_far = AtomicU64::new(0);
        let listing_done = AtomicBool::new(false);
        let (listed_ref, done_ref) = (&listed_so_far, &listing_done);

        let pager = self.list::<BasicPage>(duration, tz, ptx);
        let ids = async move {
            let mut seen: HashSet<String> = HashSet::new();
            let mut duplicates = 0u64;
            'pages: while let Some(page) = prx.recv().await {
                for basic in page.query_basic_traces.traces {
                    // A segment may belong to several traces; each id is fetched once.
                    let ids: Vec<String> = basic
                        .get("traceIds")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                    for id in ids {
                        if self.full(seen.len() as u64) {
                            break 'pages;
                        }
                        if seen.contains(&id) {
                            duplicates += 1;
                            continue;
                        }
                        seen.insert(id.clone());
                        listed_ref.store(seen.len() as u64, Ordering::Relaxed);
                        if tx.send((id, basic.clone())).await.is_err() {
                            break 'pages;
                        }
                    }
                }
            }
            done_ref.store(true, Ordering::Relaxed);
            (seen.len() as u64, duplicates)
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

        let (listing, (listed, duplicates), fetched) = tokio::join!(pager, ids, fetcher);
        if self.cancel.is_cancelled() {
            return Err(TraceError::Cancelled);
        }
        let listing = listing?;
        let done = fetched?;
        progress(format!(
            "{done}/{listed} traces, {} failed",
            stats.failed.len()
        ));
        stats.listed = listed;
        stats.duplicates = duplicates;
        stats.set_listing(&listing, self.full(listed));
        Ok(stats)
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

/// Page requests of one slice in flight at once.
const LIST_CONCURRENCY: usize = 4;

/// One part of the window, listed on its own so that its rows stay within the OAP's result
/// window. Latency bounds use the protocol's convention: 0 / `None` is no bound.
#[derive(Debug, Clone)]
struct Slice {
    duration: QueryDuration,
    min_latency: u32,
    max_latency: Option<u32>,
}

impl Slice {
    /// Halves at a whole second, in SECOND steps: the finest the `Duration` type has, and the
    /// granularity of the segment `time_bucket` the OAP filters on. Later half first.
    fn split_time(&self, tz: FixedOffset) -> Option<(Slice, Slice)> {
        let (a, b) = (self.duration.covers_from, self.duration.covers_until);
        let span_s = (b - a).num_seconds();
        if span_s < 2 {
            return None;
        }
        let mid = a + chrono::Duration::seconds(span_s / 2);
        let half = |from, until| Slice {
            duration: QueryDuration::bucket(from, until, QueryStep::Second, tz),
            ..self.clone()
        };
        Some((half(mid, b), half(a, mid)))
    }

    /// Halves the latency range `[min, max]` (`longest` bounds an open `max`); longer half
    /// first. `[0, 0]` cannot be expressed (0 means "no bound"), so a lower half must end ≥ 1.
    fn split_latency(&self, longest: Option<u32>) -> Option<(Slice, Slice)> {
        let lo = self.min_latency;
        let hi = self
            .max_latency
            .or(longest)
            .unwrap_or(i32::MAX as u32)
            .min(i32::MAX as u32);
        if lo >= hi {
            return None;
        }
        let mid = lo + (hi - lo) / 2;
        if mid == 0 {
            return None;
        }
        let upper = Slice {
            min_latency: mid + 1,
            max_latency: Some(hi),
            ..self.clone()
        };
        let lower = Slice {
            min_latency: lo,
            max_latency: Some(mid),
            ..self.clone()
        };
        Some((upper, lower))
    }
}

#[derive(Debug, Default)]
struct ListOutcome {
    pages: u32,
    slices: u32,
    /// Every slice was paged to its end (not stopped by `size` or the consumer).
    exhausted: bool,
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

/// A list page, as the pager needs to see it.
trait ListPage: serde::de::DeserializeOwned + Send + 'static {
    const DOCUMENT: &'static str;
    const ROOT: &'static str;
    fn rows(&self) -> usize;
    /// The first row's latency: the slice's longest under BY_DURATION.
    fn max_latency(&self) -> Option<u32>;
}

/// `data` of `BASIC_TRACES`: one row per segment.
#[derive(Deserialize)]
struct BasicPage {
    #[serde(rename = "queryBasicTraces")]
    query_basic_traces: BasicList,
}

#[derive(Deserialize)]
struct BasicList {
    traces: Vec<Value>,
}

impl ListPage for BasicPage {
    const DOCUMENT: &'static str = query::BASIC_TRACES;
    const ROOT: &'static str = "queryBasicTraces";
    fn rows(&self) -> usize {
        self.query_basic_traces.traces.len()
    }
    fn max_latency(&self) -> Option<u32> {
        let d = self.query_basic_traces.traces.first()?.get("duration")?;
        d.as_u64().and_then(|d| u32::try_from(d).ok())
    }
}

impl ListPage for TracesV2 {
    const DOCUMENT: &'static str = query::TRACES_V2;
    const ROOT: &'static str = "queryTraces";
    fn rows(&self) -> usize {
        self.query_traces.traces.len()
    }
    fn max_latency(&self) -> Option<u32> {
        let spans = self.query_traces.traces.first()?.spans.as_ref()?;
        let start = spans.iter().map(|s| s.start_time).min()?;
        let end = spans.iter().map(|s| s.end_time).max()?;
        u32::try_from((end - start).max(0)).ok()
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
