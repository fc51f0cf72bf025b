//! A Prometheus HTTP API over the simulated cluster's series ([`model`]): what `ttplan run
//! --sandbox` points `PROMETHEUS_URL` at, so `collect-metrics` and `prometheus` probes read
//! series that show the fault.
//!
//! Served as Prometheus' `web/api/v1/api.go` does: `/api/v1/query`, `/api/v1/query_range`,
//! `/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/series` by GET or POST (form),
//! answers `{"status":"success","data":…}`, errors `{"status":"error","errorType":…,"error":…}`
//! with `bad_data` → 400 and `execution` → 422 (`getDefaultErrorCode`), parameters parsed as
//! `parseTime`/`parseDuration` do, the 11,000-points limit of `queryRange`, and
//! `/-/ready`, `/-/healthy` as `web/web.go`. Error texts follow Prometheus 3 (those of the
//! range parameters are the same in 2.x). PromQL is parsed by the `promql-parser` crate and
//! evaluated by [`eval`], which refuses what the campaign does not use ("… not supported by
//! the sandbox", `bad_data`).

pub mod eval;
pub mod model;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::world::World;
use eval::{EvalError, Labels, Output, Source};
use model::{Model, View};

/// Prometheus' `MinTime`/`MaxTime` as `parseTime` accepts them (`minTimeFormatted`).
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";
const MIN_TIME: i64 = i64::MIN / 2;
const MAX_TIME: i64 = i64::MAX / 2;

/// A running simulated Prometheus. Dropping it stops the server.
pub struct FakePrometheus {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    world: World,
    started: DateTime<Utc>,
    scrape_ms: i64,
    /// The model of the last history seen (rebuilt when the history changes).
    cache: Mutex<Option<(model::Fingerprint, Arc<Model>)>>,
}

impl State {
    fn model(&self) -> Arc<Model> {
        let fp = model::fingerprint(&self.world);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((f, m)) = cache.as_ref() {
            if *f == fp {
                return m.clone();
            }
        }
        let m = Arc::new(Model::build(&self.world, self.started, self.scrape_ms));
        *cache = Some((fp, m.clone()));
        m
    }
}

impl FakePrometheus {
    /// Serves `world`'s series on a loopback port. `started`: when the sandbox started (its
    /// initial pods get a past before it, see [`model`]).
    ///
    /// # Panics
    /// When no loopback port or runtime thread can be had (as the sandbox's other servers).
    pub fn start(world: World, started: DateTime<Utc>) -> FakePrometheus {
        FakePrometheus::start_with(world, started, model::SCRAPE_MS)
    }

    /// [`FakePrometheus::start`] with every target scraped each `scrape_ms`.
    ///
    /// # Panics
    /// As [`FakePrometheus::start`].
    pub fn start_with(world: World, started: DateTime<Utc>, scrape_ms: i64) -> FakePrometheus {
        let state = Arc::new(State {
            world,
            started,
            scrape_ms,
            cache: Mutex::new(None),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("prometheus-fake".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("prometheus fake runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1:0");
                    let _ = addr_tx.send(listener.local_addr().expect("local addr"));
                    loop {
                        tokio::select! {
                            a = listener.accept() => {
                                let Ok((stream, _)) = a else { continue };
                                let state = state.clone();
                                tokio::spawn(async move {
                                    let svc = service_fn(move |req| handle(state.clone(), req));
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), svc)
                                        .await;
                                });
                            }
                            _ = &mut stop_rx => break,
                        }
                    }
                });
            })
            .expect("spawn prometheus fake thread");
        FakePrometheus {
            addr: addr_rx.recv().expect("prometheus fake failed to start"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An API error: Prometheus' `apiError` (type and message).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub error_type: &'static str,
    pub error: String,
}

impl ApiError {
    fn bad_data(error: impl Into<String>) -> ApiError {
        ApiError {
            error_type: "bad_data",
            error: error.into(),
        }
    }

    /// `invalidParamError`.
    fn param(name: &str, error: impl std::fmt::Display) -> ApiError {
        ApiError::bad_data(format!("invalid parameter \"{name}\": {error}"))
    }

    fn status(&self) -> StatusCode {
        match self.error_type {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "not_found" => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut form: Vec<(String, String)> = Vec::new();
    let is_form = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    // Go's `Request.FormValue`: the body's values come before the URL's.
    if method == http::Method::POST && is_form {
        form.extend(form_urlencoded::parse(&body).into_owned());
    }
    form.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    let resp = match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/-/ready") => text(StatusCode::OK, "Prometheus Server is Ready.\n"),
        ("GET" | "HEAD", "/-/healthy") => text(StatusCode::OK, "Prometheus Server is Healthy.\n"),
        ("GET" | "POST", p) if p.starts_with("/api/v1/") => {
            let api = p.trim_start_matches("/api/v1/").to_string();
            let result = tokio::task::spawn_blocking(move || {
                api_call(&state, &api, &Form(form), Utc::now())
            })
            .await
            .unwrap_or_else(|e| {
                Err(ApiError {
                    error_type: "internal",
                    error: format!("evaluation failed: {e}"),
                })
            });
            match result {
                Ok(Some(data)) => json(
                    StatusCode::OK,
                    format!("{{\"status\":\"success\",\"data\":{data}}}"),
                ),
                Ok(None) => text(StatusCode::NOT_FOUND, "404 page not found\n"),
                Err(e) => json(e.status(), error_body(&e)),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    Ok(resp)
}

/// `respondError`'s body.
pub fn error_body(e: &ApiError) -> String {
    serde_json::json!({"status": "error", "errorType": e.error_type, "error": e.error}).to_string()
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Form values, as Go's `Request.Form` (first value wins for `FormValue`).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    fn value(&self, k: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One API call; `Ok(None)`: no such endpoint. The data is JSON text.
fn api_call(
    state: &State,
    api: &str,
    form: &Form,
    now: DateTime<Utc>,
) -> Result<Option<String>, ApiError> {
    let model = state.model();
    let view = model.at(now);
    match api {
        "query" => instant_query(&view, form, now.timestamp_millis()).map(Some),
        "query_range" => range_query(&view, form).map(Some),
        "labels" => label_names(&view, form).map(Some),
        "series" => series(&view, form).map(Some),
        _ => match api
            .strip_prefix("label/")
            .and_then(|r| r.strip_suffix("/values"))
        {
            Some(name) => label_values(&view, form, name).map(Some),
            None => Ok(None),
        },
    }
}

/// `parseTime`: float seconds (rounded to the millisecond) or RFC 3339, in epoch ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.parse::<f64>() {
        if t.is_finite() {
            let secs = t.trunc();
            let frac = ((t - secs) * 1000.0).round();
            // Beyond Prometheus' own Min/MaxTime nothing is stored: clamp, never overflow.
            let ms = (secs * 1000.0 + frac).clamp(MIN_TIME as f64, MAX_TIME as f64);
            return Ok(ms as i64);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis().clamp(MIN_TIME, MAX_TIME));
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME),
        MAX_TIME_FORMATTED => Ok(MAX_TIME),
        _ => Err(format!("cannot parse {s:?} to a valid timestamp")),
    }
}

/// `parseDuration`: float seconds or a Prometheus duration (`model.ParseDuration`: `1h30m`,
/// `15s`, `500ms`; units in decreasing order), in nanoseconds.
pub fn parse_duration(s: &str) -> Result<i128, String> {
    if let Ok(d) = s.parse::<f64>() {
        let ns = d * 1e9;
        if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i128);
    }
    prom_duration(s)
        .map(|ms| i128::from(ms) * 1_000_000)
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// `model.ParseDuration` in milliseconds.
fn prom_duration(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`: the longest unit that matches.
        let (i, (u, mult)) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())?;
        if i < next_unit {
            return None;
        }
        next_unit = i + 1;
        rest = &rest[u.len()..];
        total = total.checked_add(n.checked_mul(*mult)?)?;
    }
    Some(total)
}

fn parse_query(q: &str) -> Result<promql_parser::parser::Expr, ApiError> {
    if q.trim().is_empty() {
        return Err(ApiError::param(
            "query",
            "1:1: parse error: no expression found in input",
        ));
    }
    promql_parser::parser::parse(q)
        .map_err(|e| ApiError::param("query", format!("parse error: {e}")))
}

fn eval_error(e: EvalError) -> ApiError {
    match e {
        EvalError::Unsupported(_) => ApiError::param("query", e),
        EvalError::Execution(m) => ApiError {
            error_type: "execution",
            error: m,
        },
    }
}

/// Prometheus' float text (`strconv.FormatFloat(v, 'f', -1, 64)`, `±Inf`, `NaN`).
pub fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// `jsonutil.MarshalTimestamp`: seconds, a three-digit fraction when not whole.
pub fn prom_time(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    if a % 1000 == 0 {
        format!("{sign}{}", a / 1000)
    } else {
        format!("{sign}{}.{:03}", a / 1000, a % 1000)
    }
}

/// One series' `(epoch ms, value)` samples.
type Points = Vec<(i64, f64)>;

fn point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    out.push_str(&prom_time(t));
    out.push_str(",\"");
    out.push_str(&prom_float(v));
    out.push_str("\"]");
}

fn labels_json(out: &mut String, l: &Labels) {
    out.push_str(&serde_json::to_string(l).unwrap_or_else(|_| "{}".into()));
}

/// `API.query`.
fn instant_query(view: &View, form: &Form, now: i64) -> Result<String, ApiError> {
    let t = match form.value("time") {
        "" => now,
        s => parse_time(s)
            .map_err(|e| ApiError::param("time", format!("invalid time value for 'time': {e}")))?,
    };
    check_timeout(form)?;
    let expr = parse_query(form.value("query"))?;
    if let promql_parser::parser::Expr::MatrixSelector(ms) = &expr {
        return instant_matrix(view, ms, t);
    }
    let mut out = String::new();
    match eval::evaluate(&expr, &[t], view).map_err(eval_error)? {
        Output::Scalar(s) => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            point(&mut out, t, s[0]);
            out.push('}');
        }
        Output::Vector(mut v) => {
            let mut step = v.pop().unwrap_or_default();
            step.sort_by(|a, b| a.labels.cmp(&b.labels));
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, e) in step.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels_json(&mut out, &e.labels);
                out.push_str(",\"value\":");
                point(&mut out, t, e.value);
                out.push('}');
            }
            out.push_str("]}");
        }
    }
    Ok(out)
}

/// An instant query of a bare range selector: its raw samples (`resultType` `matrix`).
fn instant_matrix(
    view: &View,
    ms: &promql_parser::parser::MatrixSelector,
    t: i64,
) -> Result<String, ApiError> {
    if ms.vs.offset.is_some() || ms.vs.at.is_some() || !ms.vs.matchers.or_matchers.is_empty() {
        return Err(eval_error(EvalError::Unsupported(
            "offset, @ and `or` in selectors".into(),
        )));
    }
    let range = ms.range.as_millis() as i64;
    let m = |l: &Labels| {
        let get = |n: &str| l.get(n).map_or("", String::as_str);
        ms.vs.name.as_deref().is_none_or(|n| get("__name__") == n)
            && ms
                .vs
                .matchers
                .matchers
                .iter()
                .all(|m| m.is_match(get(&m.name)))
    };
    let mut out = String::from("{\"resultType\":\"matrix\",\"result\":[");
    let mut first = true;
    let mut buf = Vec::new();
    for id in view.select(&m) {
        buf.clear();
        view.samples(id, t - range, t, &mut buf);
        if buf.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"metric\":");
        labels_json(&mut out, view.labels(id));
        out.push_str(",\"values\":[");
        for (i, (ts, v)) in buf.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            point(&mut out, *ts, *v);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    Ok(out)
}

fn check_timeout(form: &Form) -> Result<(), ApiError> {
    match form.value("timeout") {
        "" => Ok(()),
        s => parse_duration(s)
            .map(|_| ())
            .map_err(|e| ApiError::param("timeout", e)),
    }
}

/// `API.queryRange`: the parameter checks in its order, then one evaluation per step.
fn range_query(view: &View, form: &Form) -> Result<String, ApiError> {
    let start = parse_time(form.value("start")).map_err(|e| ApiError::param("start", e))?;
    let end = parse_time(form.value("end")).map_err(|e| ApiError::param("end", e))?;
    if end < start {
        return Err(ApiError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_ns = parse_duration(form.value("step")).map_err(|e| ApiError::param("step", e))?;
    if step_ns <= 0 {
        return Err(ApiError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if i128::from(end - start) * 1_000_000 / step_ns > 11_000 {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    check_timeout(form)?;
    let expr = parse_query(form.value("query"))?;
    if matches!(expr, promql_parser::parser::Expr::MatrixSelector(_)) {
        return Err(ApiError::param(
            "query",
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ));
    }
    let step_ms = ((step_ns / 1_000_000) as i64).max(1);
    let steps: Vec<i64> = (0..)
        .map_while(|k: i64| k.checked_mul(step_ms).and_then(|d| start.checked_add(d)))
        .take_while(|&t| t <= end)
        .collect();
    let mut out = String::from("{\"resultType\":\"matrix\",\"result\":[");
    match eval::evaluate(&expr, &steps, view).map_err(eval_error)? {
        Output::Scalar(s) => {
            out.push_str("{\"metric\":{},\"values\":[");
            for (i, (t, v)) in steps.iter().zip(&s).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                point(&mut out, *t, *v);
            }
            out.push_str("]}");
        }
        Output::Vector(v) => {
            // One series per label set, points in step order; sorted as Prometheus sorts a
            // range query's matrix (by labels).
            // Elements of one series share their labels' allocation across steps: group by
            // it, then by content (an aggregation allocates its groups once per step).
            let mut index: std::collections::HashMap<*const Labels, usize> =
                std::collections::HashMap::new();
            let mut by_content: std::collections::HashMap<std::rc::Rc<Labels>, usize> =
                std::collections::HashMap::new();
            let mut series: Vec<(std::rc::Rc<Labels>, Points)> = Vec::new();
            for (t, step) in steps.iter().zip(v) {
                for e in step {
                    let i = match index.get(&std::rc::Rc::as_ptr(&e.labels)) {
                        Some(&i) => i,
                        None => {
                            let i = *by_content.entry(e.labels.clone()).or_insert_with(|| {
                                series.push((e.labels.clone(), Vec::new()));
                                series.len() - 1
                            });
                            index.insert(std::rc::Rc::as_ptr(&e.labels), i);
                            i
                        }
                    };
                    series[i].1.push((*t, e.value));
                }
            }
            series.sort_by(|a, b| a.0.cmp(&b.0));
            for (i, (l, points)) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels_json(&mut out, l);
                out.push_str(",\"values\":[");
                for (j, (t, v)) in points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    point(&mut out, *t, *v);
                }
                out.push_str("]}");
            }
        }
    }
    out.push_str("]}");
    Ok(out)
}

/// `start`/`end` of the metadata endpoints (`parseTimeParam`, defaults Min/MaxTime).
fn time_param(form: &Form, name: &str, default: i64) -> Result<i64, ApiError> {
    match form.value(name) {
        "" => Ok(default),
        s => parse_time(s)
            .map_err(|e| ApiError::param(name, format!("invalid time value for '{name}': {e}"))),
    }
}

/// Series ids selected by the `match[]` selectors (any of them) with samples in the window;
/// none given: all (`parseMatchersParam`).
fn matched(view: &View, form: &Form, required: bool) -> Result<Vec<usize>, ApiError> {
    let start = time_param(form, "start", MIN_TIME)?;
    let end = time_param(form, "end", MAX_TIME)?;
    let selectors = form.all("match[]");
    if required && selectors.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let mut parsed = Vec::new();
    for s in &selectors {
        match promql_parser::parser::parse(s) {
            Ok(promql_parser::parser::Expr::VectorSelector(vs)) => {
                if vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
                    return Err(ApiError::bad_data(format!(
                        "match[] {s:?}: offset, @ and `or` not supported by the sandbox"
                    )));
                }
                parsed.push(vs);
            }
            Ok(_) => {
                return Err(ApiError::bad_data(format!(
                    "parse error: {s:?} is not a selector"
                )))
            }
            Err(e) => return Err(ApiError::bad_data(format!("parse error: {e}"))),
        }
    }
    let m = |l: &Labels| {
        parsed.is_empty()
            || parsed.iter().any(|vs| {
                let get = |n: &str| l.get(n).map_or("", String::as_str);
                vs.name.as_deref().is_none_or(|n| get("__name__") == n)
                    && vs
                        .matchers
                        .matchers
                        .iter()
                        .all(|m| m.is_match(get(&m.name)))
            })
    };
    let lo = start.max(MIN_TIME);
    let hi = end.min(MAX_TIME);
    Ok(view
        .select(&m)
        .into_iter()
        .filter(|&id| view.has_samples(id, lo, hi))
        .collect())
}

fn label_names(view: &View, form: &Form) -> Result<String, ApiError> {
    let mut names = std::collections::BTreeSet::new();
    for id in matched(view, form, false)? {
        names.extend(view.labels(id).keys().cloned());
    }
    Ok(serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()))
}

fn label_values(view: &View, form: &Form, name: &str) -> Result<String, ApiError> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let mut values = std::collections::BTreeSet::new();
    for id in matched(view, form, false)? {
        if let Some(v) = view.labels(id).get(name) {
            values.insert(v.clone());
        }
    }
    Ok(serde_json::to_string(&values).unwrap_or_else(|_| "[]".into()))
}

fn series(view: &View, form: &Form) -> Result<String, ApiError> {
    let ids = matched(view, form, true)?;
    let mut all: Vec<&Labels> = ids.iter().map(|&id| view.labels(id)).collect();
    all.sort();
    Ok(serde_json::to_string(&all).unwrap_or_else(|_| "[]".into()))
}

#[cfg(test)]
mod tests;
