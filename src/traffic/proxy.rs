//! The recording reverse proxy: listens on an ephemeral loopback port, forwards every request
//! to one upstream base URL, streams the response back unchanged and records the exchange.
//!
//! Each exchange is recorded exactly once: its [`Exchange`] guard writes the record when the
//! response body ends, when the upstream fails, or — if neither happened — when it is dropped
//! (client gone, proxy stopped). Responses are never buffered: the record keeps only the
//! first `max_body_bytes` of a body while the client gets all of it. Request bodies are read
//! whole before forwarding; traffic drivers send small JSON requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::record::{
    ApiRecord, BodyKind, Capture, RecordOptions, RecordSink, RecordTags, RecordedMessage,
};

/// How long in-flight exchanges may take to finish once the proxy is told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What the proxy forwards to and how it records.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `http://host[:port][/prefix]`; request paths are appended to the prefix.
    pub upstream: Uri,
    pub record: RecordOptions,
    pub tags: RecordTags,
}

/// The driver run in progress, stamped on every record. Set by the step between runs.
#[derive(Debug, Default)]
pub struct Phase {
    iteration: AtomicU32,
    suite: AtomicU32,
}

impl Phase {
    pub fn set(&self, iteration: u32, suite: u32) {
        self.iteration.store(iteration, Ordering::Relaxed);
        self.suite.store(suite, Ordering::Relaxed);
    }

    fn get(&self) -> (u32, u32) {
        (
            self.iteration.load(Ordering::Relaxed),
            self.suite.load(Ordering::Relaxed),
        )
    }
}

/// A running proxy. [`Proxy::shutdown`] stops it; dropping it without that aborts it.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    client: Client<HttpConnector, Full<Bytes>>,
    opts: ProxyOptions,
    /// Upstream scheme + authority + path prefix without a trailing `/`.
    base: String,
    phase: Arc<Phase>,
    sink: RecordSink,
}

impl Proxy {
    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Errors
    /// When the upstream URL is not `http://…` or the port cannot be bound.
    pub async fn start(
        opts: ProxyOptions,
        phase: Arc<Phase>,
        sink: RecordSink,
    ) -> std::io::Result<Proxy> {
        let base = upstream_base(&opts.upstream).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let state = Arc::new(State {
            client,
            opts,
            base,
            phase,
            sink,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, state, stop.clone()));
        Ok(Proxy { addr, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL drivers use instead of the upstream's.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight exchanges finish for a short grace period, then cuts
    /// the rest (they are recorded with an error). Returns once every connection is gone, so
    /// the proxy holds no [`RecordSink`] afterwards.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks the upstream URL and returns it without a trailing `/`.
///
/// # Errors
/// When it is not an absolute `http://` URL.
pub fn upstream_base(uri: &Uri) -> Result<String, String> {
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(auth)) => {
            Ok(format!("http://{auth}{}", uri.path().trim_end_matches('/')))
        }
        (Some(s), _) if s != "http" => Err(format!(
            "upstream `{uri}`: only http:// upstreams are supported (the proxy speaks plain \
             HTTP/1.1 to the system under test)"
        )),
        _ => Err(format!(
            "upstream `{uri}` is not an absolute URL (expected http://host[:port][/prefix])"
        )),
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let svc = service_fn(move |req| handle(Arc::clone(&state), req));
                    let conn = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn);
                    conns.spawn(async move {
                        let _ = conn.await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stop.cancelled() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

type ProxyBody = Either<TeeBody, Full<Bytes>>;

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let mut ex = Exchange::new(
        Arc::clone(&state),
        &parts.method,
        &parts.uri,
        &parts.headers,
    );
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            ex.fail(
                StatusCode::BAD_REQUEST,
                format!("reading the request body from the client: {e}"),
            );
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                "ttplan proxy: unreadable request body",
            ));
        }
    };
    // Only copied here; decoding and redaction wait until the exchange is over, off the
    // path the client is waiting on.
    let mut cap = Capture::new(state.opts.record.max_body_bytes);
    cap.push(&body);
    ex.request_body = Some((cap, BodyKind::of(&parts.headers)));

    let up = match upstream_request(&parts, ex.target.as_str(), body) {
        Ok(r) => r,
        Err(e) => {
            ex.fail(
                StatusCode::BAD_GATEWAY,
                format!("building the upstream request for {}: {e}", ex.target),
            );
            return Ok(plain(
                StatusCode::BAD_GATEWAY,
                "ttplan proxy: bad upstream request",
            ));
        }
    };
    match state.client.request(up).await {
        Err(e) => {
            let msg = format!("{}: {}", ex.target, error_chain(&e));
            ex.fail(StatusCode::BAD_GATEWAY, msg.clone());
            Ok(plain(
                StatusCode::BAD_GATEWAY,
                &format!("ttplan proxy: upstream error: {msg}"),
            ))
        }
        Ok(resp) => Ok(relay_response(&state, ex, resp)),
    }
}

/// The client's request for the upstream: same method, headers without `Host` and the
/// hop-by-hop ones, HTTP/1.1.
fn upstream_request(
    parts: &http::request::Parts,
    target: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(target)
        .version(http::Version::HTTP_11);
    if let Some(h) = up.headers_mut() {
        for (name, value) in &parts.headers {
            if name != header::HOST && !HOP_BY_HOP.contains(name) && name.as_str() != "keep-alive" {
                h.append(name, value.clone());
            }
        }
    }
    up.body(Full::new(body))
}

/// The upstream's response for the client, its head recorded now and its body captured as it
/// streams through (the exchange is written when the body ends).
fn relay_response(
    state: &State,
    mut ex: Exchange,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    ex.response_head = Some((
        parts.status,
        state.opts.record.headers_json(&parts.headers),
        ex.started.elapsed(),
    ));
    ex.response_kind = BodyKind::of(&parts.headers);
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    parts.headers.remove("keep-alive");
    let mut tee = TeeBody {
        inner: body,
        capture: Capture::new(state.opts.record.max_body_bytes),
        exchange: Some(ex),
    };
    // hyper never polls a body that is empty from the start (204, HEAD, length 0).
    if tee.inner.is_end_stream() {
        tee.complete(None);
    }
    Response::from_parts(parts, Either::Left(tee))
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(format!("{text}\n")))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// "client error (Connect): tcp connect error: Connection refused (os error 111)".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// One request/response pair on its way through; records itself exactly once.
struct Exchange {
    state: Arc<State>,
    time: String,
    started: Instant,
    phase: (u32, u32),
    method: String,
    target: String,
    path: String,
    query: Option<String>,
    request_headers: serde_json::Map<String, serde_json::Value>,
    request_body: Option<(Capture, BodyKind)>,
    /// When the exchange ended, if its record is built later.
    ended_after: Option<Duration>,
    response_head: Option<(
        StatusCode,
        serde_json::Map<String, serde_json::Value>,
        Duration,
    )>,
    response_kind: BodyKind,
    /// What the proxy answered itself when the upstream could not.
    client_status: Option<StatusCode>,
    done: bool,
}

impl Exchange {
    fn new(state: Arc<State>, method: &http::Method, uri: &Uri, headers: &HeaderMap) -> Self {
        let path = uri.path().to_string();
        let target = match uri.query() {
            Some(q) => format!("{}{path}?{q}", state.base),
            None => format!("{}{path}", state.base),
        };
        let query = uri.query().map(|q| state.opts.record.redact_query(q));
        Exchange {
            time: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
            started: Instant::now(),
            phase: state.phase.get(),
            method: method.to_string(),
            target,
            path,
            query,
            request_headers: state.opts.record.headers_json(headers),
            request_body: None,
            ended_after: None,
            response_head: None,
            response_kind: BodyKind::default(),
            client_status: None,
            done: false,
            state,
        }
    }

    /// Records an exchange the upstream did not answer; the client gets `status`.
    fn fail(&mut self, status: StatusCode, error: String) {
        self.client_status = Some(status);
        self.finish(None, Some(error));
    }

    fn finish(&mut self, response_body: Option<&Capture>, error: Option<String>) {
        if self.done {
            return;
        }
        self.done = true;
        let opts = &self.state.opts.record;
        let empty = || opts.body(b"", 0, &BodyKind::default());
        let (status, response, ttfb) = match self.response_head.take() {
            Some((status, headers, ttfb)) => {
                let body = match response_body {
                    Some(c) => opts.body(c.captured(), c.total(), &self.response_kind),
                    None => empty(),
                };
                (
                    Some(status.as_u16()),
                    Some(RecordedMessage { headers, body }),
                    Some(millis(ttfb)),
                )
            }
            None => (self.client_status.map(|s| s.as_u16()), None, None),
        };
        let url = match &self.query {
            Some(q) => format!("{}{}?{q}", self.state.base, self.path),
            None => self.target.clone(),
        };
        let record = ApiRecord {
            time: std::mem::take(&mut self.time),
            tags: &self.state.opts.tags,
            iteration: self.phase.0,
            suite: self.phase.1,
            method: std::mem::take(&mut self.method),
            url,
            path: std::mem::take(&mut self.path),
            query: self.query.take(),
            request: RecordedMessage {
                headers: std::mem::take(&mut self.request_headers),
                body: match self.request_body.take() {
                    Some((c, kind)) => opts.body(c.captured(), c.total(), &kind),
                    None => empty(),
                },
            },
            status,
            response,
            duration_ms: millis(self.ended_after.unwrap_or_else(|| self.started.elapsed())),
            ttfb_ms: ttfb,
            upstream_error: error,
        };
        self.state.sink.send(&record);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.done {
            self.finish(
                None,
                Some("exchange cut short: the client disconnected or the proxy stopped".into()),
            );
        }
    }
}

/// Forwards the upstream body frame by frame while keeping the beginning for the record.
struct TeeBody {
    inner: Incoming,
    capture: Capture,
    exchange: Option<Exchange>,
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.capture.push(data);
                }
                if this.inner.is_end_stream() {
                    this.complete(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = format!("upstream response body: {}", error_chain(e));
                this.complete(Some(msg));
            }
            Poll::Ready(None) => this.complete(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl TeeBody {
    fn complete(&mut self, error: Option<String>) {
        if let Some(mut ex) = self.exchange.take() {
            // Building the record (decoding, redaction, JSON) runs on its own task so the last
            // frame reaches the client at once. The task holds the record sink, and the writer
            // finishes only when every sink is gone, so no record is lost at shutdown.
            let capture = std::mem::replace(&mut self.capture, Capture::new(0));
            ex.ended_after = Some(ex.started.elapsed());
            tokio::spawn(async move { ex.finish(Some(&capture), error) });
        }
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        if let Some(mut ex) = self.exchange.take() {
            ex.finish(
                Some(&self.capture),
                Some(
                    "response cut short: the client disconnected or the proxy stopped before \
                     the body ended"
                        .into(),
                ),
            );
        }
    }
}
