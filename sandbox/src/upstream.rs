//! A small HTTP server standing in for the system under test: real HTTP/1.1 (hyper), on
//! 127.0.0.1:0, remembering every request it received so tests can compare with the JSONL.
//!
//! Two modes: [`Upstream::start`] echoes requests and serves fixed bodies (gzip, binary,
//! large, streamed) for the recording proxy's tests; [`Upstream::train_ticket`] is the
//! sandbox's Train-Ticket front (UI dashboard → gateway → services), every request simulated
//! by [`Traffic`] at its arrival time. A simulated latency is not slept in full: the answer is
//! delayed a tenth of it, at most [`MAX_REAL_DELAY`], so runs stay fast; traces carry the
//! simulated time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::sim::Traffic;

/// The longest real delay of a simulated answer.
pub const MAX_REAL_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// What the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub authorization: Option<String>,
}

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The body `/large?n=N` streams: a repeating alphabet, so truncation is visible.
pub fn large_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

pub const LOGIN_TOKEN: &str = "tok-abc123-login-secret";
pub const LOGIN_PASSWORD: &str = "111111";

impl Upstream {
    /// The echo server.
    pub fn start() -> Upstream {
        Upstream::serve(None)
    }

    /// The simulated Train-Ticket API.
    pub fn train_ticket(traffic: Traffic) -> Upstream {
        Upstream::serve(Some(traffic))
    }

    fn serve(traffic: Option<Traffic>) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let seen2 = Arc::clone(&seen);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        a = listener.accept() => {
                            let Ok((stream, _)) = a else { continue };
                            let seen = Arc::clone(&seen2);
                            let traffic = traffic.clone();
                            tokio::spawn(async move {
                                let svc = service_fn(move |req| {
                                    handle(Arc::clone(&seen), traffic.clone(), req)
                                });
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                        _ = &mut stop_rx => break,
                    }
                }
            });
        });
        Upstream {
            addr: addr_rx.recv().unwrap(),
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A loopback port nothing listens on.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, ct: &str, bytes: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", ct)
        .body(Full::new(bytes.into()).boxed())
        .unwrap()
}

fn json_resp(v: Value) -> Response<Body> {
    full(StatusCode::OK, "application/json", v.to_string())
}

async fn handle(
    seen: Arc<Mutex<Vec<Seen>>>,
    traffic: Option<Traffic>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        authorization: parts
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
    });
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if let Some(traffic) = traffic {
        let a = traffic.handle(parts.method.as_str(), &target, &body);
        let real = std::time::Duration::from_millis((a.latency_ms.max(0) / 10) as u64);
        tokio::time::sleep(real.min(MAX_REAL_DELAY)).await;
        let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(full(status, a.content_type, a.body));
    }
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let resp = match path {
        "/api/v1/users/login" => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if v["password"] == LOGIN_PASSWORD {
                json_resp(json!({"status": 1, "msg": "login success",
                    "data": {"userId": "u-1", "username": v["username"], "token": LOGIN_TOKEN}}))
            } else {
                json_resp(
                    json!({"status": 0, "msg": "Incorrect username or password.", "data": null}),
                )
            }
        }
        "/echo" => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut r = json_resp(json!({"method": parts.method.as_str(), "body": v,
                "token": "resp-secret-token"}));
            r.headers_mut().insert(
                "set-cookie",
                "session=set-cookie-secret; Path=/".parse().unwrap(),
            );
            r
        }
        "/gzip" => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(
                json!({"zipped": true, "token": "gz-secret"})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
            let mut r = full(StatusCode::OK, "application/json", e.finish().unwrap());
            r.headers_mut()
                .insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "/binary" => full(
            StatusCode::OK,
            "application/octet-stream",
            (0..=255u8).collect::<Vec<u8>>(),
        ),
        "/empty" => full(StatusCode::NO_CONTENT, "text/plain", Bytes::new()),
        "/large" => {
            let n: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(100_000);
            // No Content-Length: hyper sends it chunked, in several frames.
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = large_body(n)
                .chunks(16 * 1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            Response::builder()
                .header("content-type", "text/plain")
                .body(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
                .unwrap()
        }
        "/drip" => {
            // `n` chunks of `drip-<i>\n`, `ms` apart: a response that really streams.
            let param = |k: &str, d: u64| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(d)
            };
            let (n, ms) = (param("n", 10), param("ms", 100));
            let stream = futures_util::stream::unfold(0u64, move |i| async move {
                if i == n {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                let frame = Frame::data(Bytes::from(format!("drip-{i}\n")));
                Some((Ok::<_, Infallible>(frame), i + 1))
            });
            Response::builder()
                .header("content-type", "text/plain")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        _ => json_resp(json!({"path": path, "query": query})),
    };
    Ok(resp)
}
