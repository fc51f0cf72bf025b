//! A fake SkyWalking OAP GraphQL endpoint (`POST /graphql`) for tests and the benchmark.
//!
//! It is wire-true where ttplan depends on it: every document is parsed and validated against
//! the real query-protocol schema (`../shared/fixtures/skywalking/*.graphqls`, plus the 10.3
//! trace-v2 additions in v2 mode) and rejected the way graphql-java does, with an `errors`
//! array and HTTP 200 — so asking for `TraceBrief.total`, or probing `hasQueryTracesV2Support`
//! on a v1 OAP, fails exactly as on a real OAP. `Duration` strings are parsed in the fake's own
//! timezone and filter traces by bucket, as the OAP does.
//!
//! With [`Options::feed`], traces recorded elsewhere (the sandbox's simulated requests,
//! `sim::traffic_traces`) are served too: listed one row per segment, paged and ordered with
//! the generated ones, and answered by `queryTrace` by id.
//!
//! Traces are generated deterministically from their index: several segments per trace
//! linked by CROSS_PROCESS refs, several services, error spans with logs, tags (some with
//! `x-evomaster-run-id`). Faults are injected per trace index and attempt.
//!
//! The v1 list is what an Elasticsearch-backed OAP answers (upstream
//! `TraceQueryEsDAO.queryBasicTraces`): one row per *segment* (a cross-service trace has
//! several), filtered by the segment's start and latency (`minTraceDuration` /
//! `maxTraceDuration`, 0 = no bound), sorted by start or latency descending, paged by
//! `from = (pageNum − 1) · pageSize`, `size = pageSize` (`PaginationUtils.exchange`). With
//! [`Options::result_window`] a page past `from + size ≤ window` fails the way the OAP passes
//! on Elasticsearch's `index.max_result_window` refusal (`SearchClient.search` throws the
//! response body, graphql-java reports it in `errors` with HTTP 200). The v2 list (BanyanDB,
//! `BanyanDBTraceQueryDAO.queryTraces`) pages whole traces by `offset`/`limit`.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apollo_compiler::executable::Selection;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{json, Value};

pub const SERVICES: &[&str] = &[
    "ts-ui-dashboard",
    "ts-travel-service",
    "ts-order-service",
    "ts-route-service",
    "ts-station-service",
    "ts-preserve-service",
    "ts-seat-service",
];

/// The trace-v2 additions of query protocol 10.3 (`trace-v2.graphqls` upstream), used only when
/// the fixtures do not carry that file.
pub const TRACE_V2_EXTENSION: &str = include_str!("skywalking-trace-v2.graphqls");

/// `<repo>/../shared/fixtures/skywalking` (found from the build tree: tests and benchmarks only), or `None` (with a note) when it is absent.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/skywalking");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} is absent; skipping (CI always has it)",
            dir.display()
        );
        None
    }
}

/// The real schema files, with the v2 additions when `v2`.
pub fn load_schema(dir: &std::path::Path, v2: bool) -> Valid<Schema> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "graphqls"))
        .collect();
    files.sort();
    let has_v2 = files.iter().any(|p| p.ends_with("trace-v2.graphqls"));
    let mut b = Schema::builder();
    for f in &files {
        if !v2 && f.ends_with("trace-v2.graphqls") {
            continue;
        }
        b = b.parse(std::fs::read_to_string(f).unwrap(), f);
    }
    if v2 && !has_v2 {
        b = b.parse(TRACE_V2_EXTENSION, "skywalking-trace-v2.graphqls");
    }
    b.build().unwrap().validate().unwrap()
}

/// Validates `doc` against `schema`; the root field of its (single) operation, or the
/// messages graphql-java would send.
pub fn validate(schema: &Valid<Schema>, doc: &str) -> Result<String, Vec<String>> {
    match ExecutableDocument::parse_and_validate(schema, doc, "request.graphql") {
        Ok(d) => {
            let op = d.operations.get(None).map_err(|e| vec![format!("{e:?}")])?;
            match op.selection_set.selections.first() {
                Some(Selection::Field(f)) => Ok(f.name.to_string()),
                _ => Err(vec!["no root field".into()]),
            }
        }
        Err(e) => Err(e
            .errors
            .iter()
            .map(|d| {
                let m = d.error.to_string();
                // graphql-java's wording, which the OAP sends.
                if m.contains("does not have a field") {
                    format!("Validation error (FieldUndefined) : {m}; field is undefined")
                } else {
                    format!("Validation error : {m}")
                }
            })
            .collect()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// OAP before 10.3: `hasQueryTracesV2Support` is not in the schema.
    V1,
    /// OAP 10.3+ on Elasticsearch: the probe answers `false`.
    V1False,
    /// OAP 10.3+ on BanyanDB: `queryTraces`; `queryBasicTraces` fails.
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Http500,
    Hang,
    GraphQlError,
    Truncated,
}

pub const FAULTS: [Fault; 4] = [
    Fault::Http500,
    Fault::Hang,
    Fault::GraphQlError,
    Fault::Truncated,
];

/// Traces recorded by something else (the sandbox's simulated traffic), read at every query,
/// served next to the generated ones.
#[derive(Clone)]
pub struct TraceFeed(pub Arc<dyn Fn() -> Vec<FedTrace> + Send + Sync>);

impl std::fmt::Debug for TraceFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceFeed")
    }
}

/// One fed trace: its id and the spans `queryTrace` answers (each span's `segmentId`,
/// `type`, `startTime`, `endTime`, `endpointName` and `isError` make the list rows). Shared:
/// a feed hands out every trace at every query.
#[derive(Clone, Debug)]
pub struct FedTrace {
    pub id: String,
    pub spans: Arc<Vec<Value>>,
}

impl FedTrace {
    /// The v1 list's rows: one per segment, from its entry span (the first span when none),
    /// an error when any of its spans is (the ES `SegmentRecord.isError`).
    fn rows(&self) -> Vec<(i64, i64, Value)> {
        let mut segs: Vec<(&str, Vec<&Value>)> = Vec::new();
        for s in self.spans.iter() {
            let id = s["segmentId"].as_str().unwrap_or("");
            match segs.iter_mut().find(|(k, _)| *k == id) {
                Some((_, v)) => v.push(s),
                None => segs.push((id, vec![s])),
            }
        }
        segs.into_iter()
            .map(|(id, spans)| {
                let entry = spans
                    .iter()
                    .find(|s| s["type"] == "Entry")
                    .unwrap_or(&spans[0]);
                let start = entry["startTime"].as_i64().unwrap_or(0);
                let latency = entry["endTime"].as_i64().unwrap_or(start) - start;
                let row = json!({
                    "segmentId": id,
                    "endpointNames": [entry["endpointName"]],
                    "duration": latency,
                    "start": start.to_string(),
                    "isError": spans.iter().any(|s| s["isError"] == true),
                    "traceIds": [self.id],
                });
                (start, latency, row)
            })
            .collect()
    }

    /// The trace's start and duration (its root segment's entry span).
    fn span_window(&self) -> (i64, i64) {
        let root = self
            .spans
            .iter()
            .find(|s| s["type"] == "Entry" && s["refs"].as_array().is_none_or(|r| r.is_empty()))
            .or(self.spans.first());
        let start = root.and_then(|s| s["startTime"].as_i64()).unwrap_or(0);
        let end = root.and_then(|s| s["endTime"].as_i64()).unwrap_or(start);
        (start, end - start)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub traces: usize,
    /// Fixed segments per trace; `None` varies 2..=5 with the index.
    pub segments: Option<usize>,
    pub spans_per_segment: usize,
    pub mode: Mode,
    /// Added to every request.
    pub latency: Duration,
    /// First trace start; traces are `spacing_ms` apart.
    pub base: DateTime<Utc>,
    pub spacing_ms: i64,
    /// Traces outside `[base, base + traces*spacing)`, which a window query must not return.
    pub outside: usize,
    /// The fake OAP's timezone, in which it reads `Duration` strings.
    pub tz: FixedOffset,
    /// Every nth trace's `queryTrace` fails its first `transient_attempts` attempts, cycling
    /// through [`FAULTS`]; 0 = never.
    pub transient_every: usize,
    pub transient_attempts: u32,
    /// Trace indexes whose `queryTrace` always answers 500.
    pub permanent: Vec<usize>,
    /// How long a `Hang` fault stalls before answering.
    pub hang: Duration,
    /// The first request for list page 2 answers 503.
    pub list_fault: bool,
    /// Validate documents against the schema (needs the fixtures).
    pub schema_dir: Option<PathBuf>,
    /// Every nth trace fans out to [`Options::fan_out_segments`] segments whose latencies top
    /// every other trace's (a batch endpoint calling many services): listed by duration, or
    /// by start time with small pages, whole pages hold only segments of already-seen traces.
    /// 0 = none.
    pub fan_out_every: usize,
    pub fan_out_segments: usize,
    /// Elasticsearch's `index.max_result_window` (10,000 by default there); `None` = no limit.
    pub result_window: Option<usize>,
    /// Render every `queryTrace` answer at start-up, so that serving one costs the fake almost
    /// no CPU (the benchmark measures ttplan, which shares the machine with the fake).
    pub pregenerate: bool,
    /// Traces recorded elsewhere, served with the generated ones (the sandbox's traffic).
    pub feed: Option<TraceFeed>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            traces: 50,
            segments: None,
            spans_per_segment: 5,
            mode: Mode::V1,
            latency: Duration::ZERO,
            base: Utc.with_ymd_and_hms(2026, 3, 1, 10, 5, 0).unwrap(),
            spacing_ms: 500,
            outside: 3,
            tz: FixedOffset::east_opt(0).unwrap(),
            transient_every: 0,
            transient_attempts: 1,
            permanent: Vec::new(),
            hang: Duration::from_secs(3),
            list_fault: false,
            schema_dir: None,
            pregenerate: false,
            fan_out_every: 0,
            fan_out_segments: 40,
            result_window: None,
            feed: None,
        }
    }
}

/// Counters a test can assert on.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub detail_requests: AtomicU64,
    pub list_requests: AtomicU64,
    pub faults_injected: AtomicU64,
    /// Documents that failed validation, with the messages sent back.
    pub rejected: Mutex<Vec<(String, Vec<String>)>>,
    /// `condition` of every list request.
    pub list_conditions: Mutex<Vec<Value>>,
    /// List requests refused for passing the result window.
    pub window_refusals: AtomicU64,
    /// Most list requests in flight at once.
    pub max_concurrent_lists: AtomicU64,
    lists_in_flight: AtomicU64,
}

/// One v1 list row: a segment.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub trace: usize,
    pub segment: usize,
    pub start: i64,
    pub latency: i64,
}

struct Inner {
    opts: Options,
    schema: Option<Valid<Schema>>,
    /// Validation results per document text; clients send the same few documents.
    cache: Mutex<HashMap<String, Result<String, Vec<String>>>>,
    attempts: Mutex<HashMap<String, u32>>,
    stats: Stats,
    /// Pre-rendered `queryTrace` bodies by trace index (see [`Options::pregenerate`]).
    bodies: Vec<axum::body::Bytes>,
    /// Every segment row, newest first / longest first.
    by_start: Vec<Row>,
    by_latency: Vec<Row>,
}

pub struct FakeSkyWalking {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSkyWalking {
    /// Starts on 127.0.0.1:0 on its own runtime thread.
    pub fn start(opts: Options) -> Self {
        let schema = opts
            .schema_dir
            .as_deref()
            .map(|d| load_schema(d, opts.mode == Mode::V2 || opts.mode == Mode::V1False));
        let mut inner = Inner {
            opts,
            schema,
            cache: Mutex::default(),
            attempts: Mutex::default(),
            stats: Stats::default(),
            bodies: Vec::new(),
            by_start: Vec::new(),
            by_latency: Vec::new(),
        };
        let rows: Vec<Row> = inner
            .all()
            .flat_map(|(i, _)| (0..inner.segments(i)).map(move |s| (i, s)))
            .map(|(i, s)| Row {
                trace: i,
                segment: s,
                start: inner.segment_start(i, s),
                latency: inner.segment_latency(i, s),
            })
            .collect();
        // Ties keep one fixed order, as a search over an unchanged index does.
        let mut by_start = rows.clone();
        by_start.sort_by_key(|r| (std::cmp::Reverse(r.start), r.trace, r.segment));
        let mut by_latency = rows;
        by_latency.sort_by_key(|r| (std::cmp::Reverse(r.latency), r.trace, r.segment));
        inner.by_start = by_start;
        inner.by_latency = by_latency;
        if inner.opts.pregenerate {
            inner.bodies = (0..inner.opts.traces)
                .map(|i| detail_body(&inner, i).into())
                .collect();
        }
        let inner = Arc::new(inner);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&inner);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new()
                    .route("/graphql", post(handle))
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            addr,
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn opts(&self) -> &Options {
        &self.inner.opts
    }

    /// Ids of the traces inside the generated window.
    pub fn window_ids(&self) -> BTreeSet<String> {
        (0..self.inner.opts.traces).map(trace_id).collect()
    }

    /// Every segment row the v1 list holds, in the order `BY_DURATION` (or `BY_START_TIME`)
    /// lists it.
    pub fn rows(&self, by_duration: bool) -> &[Row] {
        if by_duration {
            &self.inner.by_latency
        } else {
            &self.inner.by_start
        }
    }

    /// The spans `queryTrace` answers for trace `i`.
    pub fn spans(&self, i: usize) -> Vec<Value> {
        self.inner.spans(i)
    }

    pub fn rejected(&self) -> Vec<(String, Vec<String>)> {
        self.inner.stats.rejected.lock().unwrap().clone()
    }
}

impl Drop for FakeSkyWalking {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn trace_id(i: usize) -> String {
    format!(
        "{:016x}.{i}.17406",
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

fn segment_id(i: usize, s: usize) -> String {
    format!(
        "seg{:012x}{i:06}{s:02}",
        (i as u64).wrapping_mul(0xC2B2_AE3D)
    )
}

fn index_of(id: &str) -> Option<usize> {
    id.split('.').nth(1)?.parse().ok()
}

impl Inner {
    /// All generated traces, in-window first: (index, start ms).
    fn all(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        let o = &self.opts;
        let base = o.base.timestamp_millis();
        (0..o.traces + o.outside).map(move |i| {
            if i < o.traces {
                (i, base + i as i64 * o.spacing_ms)
            } else {
                // Two hours before the window: outside any query a test sends.
                (i, base - 7_200_000 - (i - o.traces) as i64 * 1000)
            }
        })
    }

    fn fans_out(&self, i: usize) -> bool {
        self.opts.fan_out_every > 0 && i % self.opts.fan_out_every == 0 && i < self.opts.traces
    }

    fn segments(&self, i: usize) -> usize {
        if self.fans_out(i) {
            return self.opts.fan_out_segments.max(1);
        }
        self.opts.segments.unwrap_or(2 + i % 4)
    }

    /// When segment `s`'s entry span starts.
    fn segment_start(&self, i: usize, s: usize) -> i64 {
        self.start_of(i) + (s * self.opts.spans_per_segment.max(1)) as i64 * 2
    }

    /// The segment's latency (its entry span's duration): callees are shorter than their
    /// callers; fan-out traces are the longest of all.
    fn segment_latency(&self, i: usize, s: usize) -> i64 {
        if self.fans_out(i) {
            return 20_000 - s as i64;
        }
        let root = 100 + ((i as i64).wrapping_mul(7919)).rem_euclid(1000);
        (root - 7 * s as i64).max(1)
    }

    fn start_of(&self, i: usize) -> i64 {
        let o = &self.opts;
        let base = o.base.timestamp_millis();
        if i < o.traces {
            base + i as i64 * o.spacing_ms
        } else {
            base - 7_200_000 - (i - o.traces) as i64 * 1000
        }
    }

    /// Segment `s` is called from segment `(s-1)/2`'s exit span; inside a segment span `j`
    /// hangs under span `(j-1)/2`, the last span is the exit.
    fn spans(&self, i: usize) -> Vec<Value> {
        let tid = trace_id(i);
        let start = self.start_of(i);
        let k = self.opts.spans_per_segment.max(1);
        let mut out = Vec::new();
        for s in 0..self.segments(i) {
            let seg = segment_id(i, s);
            let svc = SERVICES[(i + s) % SERVICES.len()];
            for j in 0..k {
                let t0 = start + (s * k + j) as i64 * 2;
                let is_entry = j == 0;
                let is_exit = j == k - 1 && k > 1;
                let refs = if is_entry && s > 0 {
                    json!([{
                        "traceId": tid, "parentSegmentId": segment_id(i, (s - 1) / 2),
                        "parentSpanId": k as i64 - 1, "type": "CROSS_PROCESS"
                    }])
                } else {
                    json!([])
                };
                let error = i % 7 == 0 && s == self.segments(i) - 1 && is_entry;
                let mut tags = vec![
                    json!({"key": "http.method", "value": if i % 3 == 0 { "POST" } else { "GET" }}),
                    json!({"key": "url", "value": format!("http://{svc}:8080/api/v1/op{j}")}),
                ];
                if is_entry {
                    tags.push(json!({"key": "http.status_code", "value": if error { "500" } else { "200" }}));
                }
                if is_entry && s == 0 && i % 2 == 0 {
                    tags.push(
                        json!({"key": "x-evomaster-run-id", "value": format!("em-run-{}", i % 3)}),
                    );
                }
                let logs = if error {
                    json!([{ "time": t0 + 1, "data": [
                        {"key": "event", "value": "error"},
                        {"key": "error.kind", "value": "java.lang.RuntimeException"},
                        {"key": "message", "value": "seat unavailable"}
                    ]}])
                } else if j == 1 {
                    json!([{ "time": t0 + 1, "data": [{"key": "message", "value": "checked cache"}] }])
                } else {
                    json!([])
                };
                out.push(json!({
                    "traceId": tid,
                    "segmentId": seg,
                    "spanId": j,
                    "parentSpanId": if is_entry { -1 } else { (j as i64 - 1) / 2 },
                    "refs": refs,
                    "serviceCode": svc,
                    "serviceInstanceName": format!("{}-{:x}@10.0.{s}.{}", svc, i % 16, j),
                    "startTime": t0,
                    "endTime": if is_entry { t0 + self.segment_latency(i, s) } else { t0 + 20 - j as i64 },
                    "endpointName": format!("/api/v1/{svc}/op{j}"),
                    "type": if is_entry { "Entry" } else if is_exit { "Exit" } else { "Local" },
                    "peer": if is_exit { json!(format!("{}:8080", SERVICES[(i + 2 * s + 1) % SERVICES.len()])) } else { json!("") },
                    "component": if is_entry { "SpringMVC" } else { "Feign" },
                    "isError": error,
                    "layer": if is_exit || is_entry { "Http" } else { "Unknown" },
                    "tags": tags,
                    "logs": logs,
                    "attachedEvents": []
                }));
            }
        }
        out
    }

    /// One page of segment rows: start in `[from, until)`, latency within the bounds.
    fn basic_page(&self, q: &ListQuery, skip: usize, take: usize) -> Vec<Value> {
        if let Some(feed) = &self.opts.feed {
            return self.basic_page_fed(feed, q, skip, take);
        }
        let rows = if q.by_duration {
            &self.by_latency
        } else {
            &self.by_start
        };
        rows.iter()
            .filter(|r| q.keeps(r.start, r.latency))
            .skip(skip)
            .take(take)
            .map(|r| {
                let svc = SERVICES[(r.trace + r.segment) % SERVICES.len()];
                json!({
                    "segmentId": segment_id(r.trace, r.segment),
                    "endpointNames": [format!("/api/v1/{svc}/op0")],
                    "duration": r.latency,
                    "start": r.start.to_string(),
                    "isError": r.trace % 7 == 0 && r.segment == self.segments(r.trace) - 1,
                    "traceIds": [trace_id(r.trace)],
                })
            })
            .collect()
    }

    /// [`basic_page`](Self::basic_page) over the generated rows and the fed ones, in one
    /// order (start or latency descending; ties by segment id, a fixed order as on an
    /// unchanged index).
    fn basic_page_fed(
        &self,
        feed: &TraceFeed,
        q: &ListQuery,
        skip: usize,
        take: usize,
    ) -> Vec<Value> {
        let rows = if q.by_duration {
            &self.by_latency
        } else {
            &self.by_start
        };
        let mut all: Vec<(i64, i64, Value)> = rows
            .iter()
            .filter(|r| q.keeps(r.start, r.latency))
            .map(|r| {
                let svc = SERVICES[(r.trace + r.segment) % SERVICES.len()];
                let row = json!({
                    "segmentId": segment_id(r.trace, r.segment),
                    "endpointNames": [format!("/api/v1/{svc}/op0")],
                    "duration": r.latency,
                    "start": r.start.to_string(),
                    "isError": r.trace % 7 == 0 && r.segment == self.segments(r.trace) - 1,
                    "traceIds": [trace_id(r.trace)],
                });
                (r.start, r.latency, row)
            })
            .collect();
        for t in (feed.0)() {
            all.extend(t.rows().into_iter().filter(|(s, l, _)| q.keeps(*s, *l)));
        }
        let key = |r: &(i64, i64, Value)| {
            let id = r.2["segmentId"].as_str().unwrap_or("").to_string();
            let main = if q.by_duration { r.1 } else { r.0 };
            (std::cmp::Reverse(main), id)
        };
        all.sort_by_key(key);
        all.into_iter().skip(skip).take(take).map(|r| r.2).collect()
    }

    /// Fed traces for v2, in the list's order.
    fn fed_in_window(&self, q: &ListQuery) -> Vec<FedTrace> {
        let Some(feed) = &self.opts.feed else {
            return Vec::new();
        };
        let mut fed: Vec<(i64, i64, FedTrace)> = (feed.0)()
            .into_iter()
            .map(|t| {
                let (s, l) = t.span_window();
                (s, l, t)
            })
            .filter(|(s, l, _)| q.keeps(*s, *l))
            .collect();
        if q.by_duration {
            fed.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.id.cmp(&b.2.id)));
        } else {
            fed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.id.cmp(&b.2.id)));
        }
        fed.into_iter().map(|(_, _, t)| t).collect()
    }

    /// Whole traces for v2: by the trace's start and duration (its root segment's latency).
    fn in_window(&self, q: &ListQuery) -> Vec<usize> {
        let mut traces: Vec<(usize, i64, i64)> = self
            .all()
            .map(|(i, s)| (i, s, self.segment_latency(i, 0)))
            .filter(|(_, s, l)| q.keeps(*s, *l))
            .collect();
        if q.by_duration {
            traces.sort_by_key(|(i, _, l)| (std::cmp::Reverse(*l), *i));
        } else {
            traces.sort_by_key(|(i, s, _)| (std::cmp::Reverse(*s), *i));
        }
        traces.into_iter().map(|(i, _, _)| i).collect()
    }

    fn attempt(&self, key: &str) -> u32 {
        let mut a = self.attempts.lock().unwrap();
        let n = a.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

/// Reads a protocol `Duration` the way the OAP does: in its own timezone, whole units.
fn window(d: &Value, tz: FixedOffset) -> Result<(i64, i64), String> {
    let start = d.get("start").and_then(Value::as_str).ok_or("no start")?;
    let end = d.get("end").and_then(Value::as_str).ok_or("no end")?;
    let step = d.get("step").and_then(Value::as_str).ok_or("no step")?;
    let (fmt, unit_ms): (&str, i64) = match step {
        "SECOND" => ("%Y-%m-%d %H%M%S", 1000),
        "MINUTE" => ("%Y-%m-%d %H%M", 60_000),
        "HOUR" => ("%Y-%m-%d %H", 3_600_000),
        "DAY" => ("%Y-%m-%d", 86_400_000),
        other => return Err(format!("bad step {other}")),
    };
    let parse = |s: &str| -> Result<i64, String> {
        let naive = if step == "DAY" {
            NaiveDate::parse_from_str(s, fmt).map(|d| d.and_hms_opt(0, 0, 0).unwrap())
        } else if step == "HOUR" {
            NaiveDateTime::parse_from_str(&format!("{s}00"), &format!("{fmt}%M"))
        } else {
            NaiveDateTime::parse_from_str(s, fmt)
        }
        .map_err(|e| format!("`{s}` is not `{step}` format: {e}"))?;
        Ok(tz
            .from_local_datetime(&naive)
            .single()
            .ok_or("ambiguous")?
            .timestamp_millis())
    };
    Ok((parse(start)?, parse(end)? + unit_ms))
}

/// What a list request selects, read from its `condition`.
struct ListQuery {
    from: i64,
    until: i64,
    min: i64,
    max: i64,
    by_duration: bool,
}

impl ListQuery {
    fn parse(cond: &Value, tz: FixedOffset) -> Result<Self, String> {
        let d = cond
            .get("queryDuration")
            .ok_or("queryDuration or traceId is required")?;
        let (from, until) = window(d, tz)?;
        let int = |k: &str| cond.get(k).and_then(Value::as_i64).unwrap_or(0);
        Ok(Self {
            from,
            until,
            min: int("minTraceDuration"),
            max: int("maxTraceDuration"),
            by_duration: cond.get("queryOrder").and_then(Value::as_str) == Some("BY_DURATION"),
        })
    }

    /// `TraceQueryEsDAO`: a bound of 0 is no bound.
    fn keeps(&self, start: i64, latency: i64) -> bool {
        start >= self.from
            && start < self.until
            && (self.min == 0 || latency >= self.min)
            && (self.max == 0 || latency <= self.max)
    }
}

/// Elasticsearch's refusal of `from + size` past `index.max_result_window`, as the OAP passes
/// it on: `SearchClient.search` throws `RuntimeException(response body)` from a future, and
/// graphql-java reports "Exception while fetching data (/path) : " + the exception's message.
pub fn result_window_error(window: usize, asked: usize) -> Value {
    let reason = format!(
        "Result window is too large, from + size must be less than or equal to: [{window}] but was [{asked}]. \
         See the scroll api for a more efficient way to request large data sets. This limit can be set by \
         changing the [index.max_result_window] index level setting."
    );
    let body = json!({"error": {
        "root_cause": [{"type": "illegal_argument_exception", "reason": reason}],
        "type": "search_phase_execution_exception", "reason": "all shards failed", "phase": "query",
        "grouped": true,
        "failed_shards": [{"shard": 0, "index": "sw_segment-20260301", "node": "n1",
            "reason": {"type": "illegal_argument_exception", "reason": reason}}],
        "caused_by": {"type": "illegal_argument_exception", "reason": reason}
    }, "status": 400});
    json!({
        "errors": [{
            "message": format!("Exception while fetching data (/queryBasicTraces) : java.util.concurrent.ExecutionException: java.lang.RuntimeException: {body}"),
            "locations": [{"line": 2, "column": 3}],
            "path": ["queryBasicTraces"],
            "extensions": {"classification": "DataFetchingException"}
        }],
        "data": {"queryBasicTraces": null}
    })
}

fn gql_error(msg: impl Into<String>) -> Response {
    Json(json!({ "errors": [{ "message": msg.into(), "extensions": {"classification": "DataFetchingException"} }], "data": null }))
        .into_response()
}

async fn handle(State(st): State<Arc<Inner>>, body: String) -> Response {
    st.stats.requests.fetch_add(1, Ordering::Relaxed);
    if !st.opts.latency.is_zero() {
        tokio::time::sleep(st.opts.latency).await;
    }
    let req: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")).into_response(),
    };
    let doc = req
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let vars = req.get("variables").cloned().unwrap_or(Value::Null);

    // `total` was removed in protocol 9.1; a newer OAP rejects it even if a stale schema had it.
    let root = if doc
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w == "total")
    {
        Err(vec!["Validation error (FieldUndefined@[queryBasicTraces/total]) : Field 'total' in type 'TraceBrief' is undefined".to_string()])
    } else if let Some(schema) = &st.schema {
        let cached = st.cache.lock().unwrap().get(&doc).cloned();
        match cached {
            Some(r) => r,
            None => {
                let r = validate(schema, &doc);
                st.cache.lock().unwrap().insert(doc.clone(), r.clone());
                r
            }
        }
    } else {
        root_by_text(&doc, st.opts.mode)
    };
    let root = match root {
        Ok(r) => r,
        Err(msgs) => {
            st.stats
                .rejected
                .lock()
                .unwrap()
                .push((doc.clone(), msgs.clone()));
            return Json(json!({
                "errors": msgs.iter().map(|m| json!({"message": m, "extensions": {"classification": "ValidationError"}})).collect::<Vec<_>>(),
                "data": null
            }))
            .into_response();
        }
    };

    match root.as_str() {
        "hasQueryTracesV2Support" => {
            Json(json!({"data": {"hasQueryTracesV2Support": st.opts.mode == Mode::V2}}))
                .into_response()
        }
        "getTimeInfo" => Json(json!({"data": {"getTimeInfo": {
            "timezone": format!("{}", st.opts.tz).replace(':', ""),
            "currentTimestamp": Utc::now().timestamp_millis()
        }}}))
        .into_response(),
        "queryBasicTraces" => list_v1(&st, &vars).await,
        "queryTraces" => list_v2(&st, &vars).await,
        "queryTrace" => detail(&st, &vars).await,
        other => gql_error(format!("fake OAP does not serve `{other}`")),
    }
}

/// Without the schema, tell documents apart by their root field.
fn root_by_text(doc: &str, mode: Mode) -> Result<String, Vec<String>> {
    for f in [
        "hasQueryTracesV2Support",
        "getTimeInfo",
        "queryBasicTraces",
        "queryTraces",
        "queryTrace",
    ] {
        if doc.contains(&format!("{f} "))
            || doc.contains(&format!("{f}("))
            || doc.contains(&format!("{f} }}"))
        {
            if f == "hasQueryTracesV2Support" && mode == Mode::V1 {
                return Err(vec!["Validation error (FieldUndefined@[hasQueryTracesV2Support]) : Field 'hasQueryTracesV2Support' in type 'Query' is undefined".into()]);
            }
            return Ok(f.to_string());
        }
    }
    Err(vec!["unknown document".into()])
}

fn paging(cond: &Value) -> Result<(usize, usize), String> {
    let p = cond.get("paging").ok_or("paging is required")?;
    let num = p.get("pageNum").and_then(Value::as_u64).unwrap_or(1) as usize;
    let size = p
        .get("pageSize")
        .and_then(Value::as_u64)
        .ok_or("pageSize is required")? as usize;
    if num == 0 || size == 0 {
        return Err("pageNum and pageSize start at 1".into());
    }
    Ok((num, size))
}

async fn list_v1(st: &Inner, vars: &Value) -> Response {
    st.stats.list_requests.fetch_add(1, Ordering::Relaxed);
    if st.opts.mode == Mode::V2 {
        return gql_error("BanyanDB Trace Model changed, please use queryTraces");
    }
    let cond = vars.get("condition").cloned().unwrap_or(Value::Null);
    st.stats.list_conditions.lock().unwrap().push(cond.clone());
    let (num, size) = match paging(&cond) {
        Ok(p) => p,
        Err(e) => return gql_error(e),
    };
    if st.opts.list_fault && num == 2 && st.attempt("list-page-2") == 1 {
        st.stats.faults_injected.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream storage busy").into_response();
    }
    let q = match ListQuery::parse(&cond, st.opts.tz) {
        Ok(q) => q,
        Err(e) => return gql_error(e),
    };
    let from = (num - 1) * size;
    if let Some(window) = st.opts.result_window {
        if from + size > window {
            st.stats.window_refusals.fetch_add(1, Ordering::Relaxed);
            return Json(result_window_error(window, from + size)).into_response();
        }
    }
    let in_flight = st.stats.lists_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.stats
        .max_concurrent_lists
        .fetch_max(in_flight, Ordering::SeqCst);
    // A search takes a moment; concurrent pages overlap in it.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let page = st.basic_page(&q, from, size);
    st.stats.lists_in_flight.fetch_sub(1, Ordering::SeqCst);
    Json(json!({"data": {"queryBasicTraces": {"traces": page}}})).into_response()
}

async fn list_v2(st: &Inner, vars: &Value) -> Response {
    st.stats.list_requests.fetch_add(1, Ordering::Relaxed);
    let cond = vars.get("condition").cloned().unwrap_or(Value::Null);
    st.stats.list_conditions.lock().unwrap().push(cond.clone());
    let (num, size) = match paging(&cond) {
        Ok(p) => p,
        Err(e) => return gql_error(e),
    };
    let q = match ListQuery::parse(&cond, st.opts.tz) {
        Ok(q) => q,
        Err(_) if cond.get("queryDuration").is_none() => {
            return gql_error("queryTraces requires queryDuration")
        }
        Err(e) => return gql_error(e),
    };
    let in_flight = st.stats.lists_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.stats
        .max_concurrent_lists
        .fetch_max(in_flight, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2)).await;
    // Fed traces first (they are the sandbox's; a fed and a generated window do not overlap).
    let fed = st.fed_in_window(&q);
    let traces: Vec<Value> = fed
        .into_iter()
        .map(|t| json!({"spans": t.spans.as_ref()}))
        .chain(
            st.in_window(&q)
                .into_iter()
                .map(|i| json!({"spans": st.spans(i)})),
        )
        .skip((num - 1) * size)
        .take(size)
        .collect();
    st.stats.lists_in_flight.fetch_sub(1, Ordering::SeqCst);
    Json(json!({"data": {"queryTraces": {
        "traces": traces,
        "retrievedTimeRange": {"startTime": q.from, "endTime": q.until}
    }}}))
    .into_response()
}

async fn detail(st: &Inner, vars: &Value) -> Response {
    st.stats.detail_requests.fetch_add(1, Ordering::Relaxed);
    let Some(id) = vars.get("traceId").and_then(Value::as_str) else {
        return gql_error("traceId is required");
    };
    if let Some(feed) = &st.opts.feed {
        if let Some(t) = (feed.0)().into_iter().find(|t| t.id == id) {
            return Json(json!({"data": {"queryTrace": {"spans": t.spans.as_ref()}}}))
                .into_response();
        }
    }
    let Some(i) =
        index_of(id).filter(|i| *i < st.opts.traces + st.opts.outside && trace_id(*i) == id)
    else {
        return Json(json!({"data": {"queryTrace": {"spans": []}}})).into_response();
    };
    if st.opts.permanent.contains(&i) {
        st.stats.faults_injected.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::INTERNAL_SERVER_ERROR, "storage error").into_response();
    }
    let every = st.opts.transient_every;
    if every > 0 && i % every == 0 {
        let n = st.attempt(id);
        if n <= st.opts.transient_attempts {
            st.stats.faults_injected.fetch_add(1, Ordering::Relaxed);
            match FAULTS[(i / every + n as usize) % FAULTS.len()] {
                Fault::Http500 => {
                    return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>")
                        .into_response()
                }
                Fault::Hang => tokio::time::sleep(st.opts.hang).await,
                Fault::GraphQlError => {
                    return gql_error(
                        "Exception while fetching data (/queryTrace) : Elasticsearch timeout",
                    )
                }
                Fault::Truncated => {
                    let full = json!({"data": {"queryTrace": {"spans": st.spans(i)}}}).to_string();
                    let cut = full[..full.len() / 2].to_string();
                    return ([("content-type", "application/json")], cut).into_response();
                }
            }
        }
    }
    let body = match st.bodies.get(i) {
        Some(b) => b.clone(),
        None => detail_body(st, i).into(),
    };
    ([("content-type", "application/json")], body).into_response()
}

fn detail_body(st: &Inner, i: usize) -> String {
    json!({"data": {"queryTrace": {"spans": st.spans(i)}}}).to_string()
}
