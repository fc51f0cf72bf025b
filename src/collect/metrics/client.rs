//! The Prometheus HTTP client: one `query_range` request per chunk, streamed into a spool file,
//! with retries for what can heal (5xx, 429, timeouts, connection errors) and a clear error for
//! what cannot (4xx: bad PromQL, 422: query too expensive).

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use bytes::{Buf, Bytes};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::chunk::{secs_string, Chunk};
use super::parse::{parse_matrix, ParseError, Parsed};
use super::spool::SpoolWriter;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub request_timeout: Duration,
    /// Extra attempts after a retryable failure.
    pub retries: u32,
    /// First wait before a retry; doubles each time (capped at 10 s).
    pub backoff: Duration,
    /// Ask for gzip-compressed responses.
    pub compression: bool,
}

/// A failed request, after retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// Prometheus refused the query (a 4xx, including 422 `execution`): retrying cannot help.
    #[error("Prometheus rejected it (HTTP {status} {error_type}): {error}")]
    Rejected {
        status: u16,
        error_type: String,
        error: String,
    },
    /// Every attempt failed with a retryable error; the last one is kept.
    #[error("{last} (after {attempts} attempts)")]
    Unavailable { attempts: u32, last: String },
    /// A 200 whose body could not be used, or a local failure while spooling it.
    #[error("{0}")]
    Broken(String),
    #[error("cancelled")]
    Cancelled,
}

/// One failure of one attempt, before the retry decision.
enum Attempt {
    Retry(String),
    Fatal(FetchError),
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default)]
    error: String,
}

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct PromClient {
    http: reqwest::Client,
    query_range_url: String,
    opts: ClientOptions,
}

impl PromClient {
    /// # Errors
    /// When the HTTP client cannot be built (TLS backend initialisation).
    pub fn new(endpoint: &str, opts: ClientOptions) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .gzip(opts.compression)
            .timeout(opts.request_timeout)
            .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("ttplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self {
            http,
            query_range_url: format!("{}/api/v1/query_range", endpoint.trim_end_matches('/')),
            opts,
        })
    }

    /// The URL of one chunk's request (what `curl` would fetch).
    pub fn chunk_url(&self, query: &str, chunk: Chunk, step_ms: i64) -> String {
        let mut url = self.query_range_url.clone();
        url.push('?');
        url.push_str(&form_urlencoded_pairs(query, chunk, step_ms));
        url
    }

    /// Fetches one chunk of `query`, spooling its samples to `spool` (created or truncated by
    /// every attempt, so a retried response never leaves a partial copy behind).
    ///
    /// # Errors
    /// See [`FetchError`].
    pub async fn fetch(
        &self,
        query: &str,
        chunk: Chunk,
        step_ms: i64,
        spool: &Path,
        cancel: &CancellationToken,
    ) -> Result<Parsed, FetchError> {
        let url = self.chunk_url(query, chunk, step_ms);
        let mut wait = self.opts.backoff;
        let mut attempt = 1;
        loop {
            let outcome = tokio::select! {
                r = self.attempt(&url, spool) => r,
                () = cancel.cancelled() => return Err(FetchError::Cancelled),
            };
            match outcome {
                Ok(done) => return Ok(done),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(last)) if attempt > self.opts.retries => {
                    return Err(FetchError::Unavailable {
                        attempts: attempt,
                        last,
                    })
                }
                Err(Attempt::Retry(_)) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Err(FetchError::Cancelled),
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, url: &str, spool: &Path) -> Result<Parsed, Attempt> {
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Attempt::Retry(describe(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(refusal(status, &mut resp).await);
        }
        let spool =
            std::fs::File::create(spool).map_err(|e| fatal_io("creating spool file", spool, &e))?;
        let (parsed, file) = parse_streamed(resp, spool).await?;
        let parsed = parsed.map_err(|e| parse_failure(status, e))?;
        file.map_err(|e| Attempt::Fatal(FetchError::Broken(format!("writing a spool file: {e}"))))?;
        Ok(parsed)
    }
}

/// A non-2xx response: retried when the server may heal (5xx, 429, 408), fatal otherwise.
async fn refusal(status: StatusCode, resp: &mut reqwest::Response) -> Attempt {
    // Error bodies are small JSON objects; a proxy's HTML page is cut short.
    let body = read_limited(resp, 64 * 1024).await;
    let (error_type, error) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => (b.error_type, b.error),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body).trim().to_string(),
        ),
    };
    let retry = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    if retry {
        Attempt::Retry(format!("HTTP {status} {error_type}: {error}"))
    } else {
        Attempt::Fatal(FetchError::Rejected {
            status: status.as_u16(),
            error_type,
            error,
        })
    }
}

/// Streams a 2xx body into [`parse_matrix`], which spools its samples to `spool`. Returns the
/// parser's result and the spool file's; a body cut off mid-way is a retry.
async fn parse_streamed(
    mut resp: reqwest::Response,
    spool: std::fs::File,
) -> Result<(Result<Parsed, ParseError>, io::Result<std::fs::File>), Attempt> {
    // The parser is synchronous (serde) and CPU-bound: it runs on a blocking thread and
    // reads the body through a one-slot channel. When it falls behind, TCP pushes back on
    // Prometheus, so a request holds about three body chunks (hyper's reach ~400 KB on
    // loopback). 16 slots cost ~+6 MB peak RSS at 4 requests in flight and no speed.
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let parser = tokio::task::spawn_blocking(move || {
        let mut w = SpoolWriter::new(spool);
        // parse_matrix reads in 64 KB blocks itself: no BufReader.
        let reader = ChannelReader {
            rx,
            cur: Bytes::new(),
        };
        let parsed = parse_matrix(reader, &mut w);
        let file = w.finish();
        (parsed, file)
    });
    let mut body_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                if tx.send(bytes).await.is_err() {
                    // The parser stopped early; its error says why.
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                body_error = Some(describe(&e));
                break;
            }
        }
    }
    drop(tx);
    let outcome = parser
        .await
        .map_err(|e| Attempt::Fatal(FetchError::Broken(format!("response parser: {e}"))))?;
    if let Some(e) = body_error {
        return Err(Attempt::Retry(format!("reading the response: {e}")));
    }
    Ok(outcome)
}

/// A 2xx body the parser refused: Prometheus' own error (with the HTTP status), or not usable.
fn parse_failure(status: StatusCode, e: ParseError) -> Attempt {
    match e {
        ParseError::Prometheus { error_type, error } => Attempt::Fatal(FetchError::Rejected {
            status: status.as_u16(),
            error_type,
            error,
        }),
        ParseError::Malformed(m) => {
            Attempt::Fatal(FetchError::Broken(format!("unreadable response: {m}")))
        }
        ParseError::Spool(e) => {
            Attempt::Fatal(FetchError::Broken(format!("writing a spool file: {e}")))
        }
    }
}

fn fatal_io(what: &str, path: &Path, e: &io::Error) -> Attempt {
    Attempt::Fatal(FetchError::Broken(format!(
        "{what} {}: {e}",
        path.display()
    )))
}

/// reqwest's message plus its causes (the top-level message alone is often just
/// "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

async fn read_limited(resp: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(bytes)) = resp.chunk().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

fn form_urlencoded_pairs(query: &str, chunk: Chunk, step_ms: i64) -> String {
    let mut out = String::new();
    for (i, (k, v)) in [
        ("query", query.to_string()),
        ("start", secs_string(chunk.start_ms)),
        ("end", secs_string(chunk.end_ms)),
        ("step", secs_string(step_ms)),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        percent_encode(v, &mut out);
    }
    out
}

/// `application/x-www-form-urlencoded` escaping of a query parameter value.
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `Read` over body chunks sent from the async side; EOF when the sender is dropped.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A one-thread HTTP server answering connection `i` with `responses[i]` (raw bytes,
    /// connection closed after each); records each request line.
    fn fake(responses: Vec<Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for resp in responses {
                let (mut conn, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut byte = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap() == 0 {
                        break;
                    }
                    req.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                log.lock().unwrap().push(line);
                let _ = conn.write_all(&resp);
            }
        });
        (url, seen)
    }

    fn response(status: &str, body: &str, declared_len: usize) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {declared_len}\r\nConnection: close\r\n\r\n{body}"
        )
        .into_bytes()
    }

    const OK_BODY: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[1,"1"],[16,"2"]]}]}}"#;

    fn client(url: &str, retries: u32) -> PromClient {
        PromClient::new(
            url,
            ClientOptions {
                request_timeout: Duration::from_secs(5),
                retries,
                backoff: Duration::from_millis(10),
                compression: false,
            },
        )
        .unwrap()
    }

    const CHUNK: Chunk = Chunk {
        start_ms: 1_000,
        end_ms: 16_000,
    };

    #[tokio::test]
    async fn server_errors_and_cut_bodies_are_retried() {
        let busy = r#"{"status":"error","errorType":"unavailable","error":"busy"}"#;
        let (url, seen) = fake(vec![
            response("503 Service Unavailable", busy, busy.len()),
            // Cut short: the server promised more bytes than it sent.
            response("200 OK", &OK_BODY[..40], OK_BODY.len()),
            response("200 OK", OK_BODY, OK_BODY.len()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("s");
        let parsed = client(&url, 3)
            .fetch("up", CHUNK, 15_000, &spool, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(parsed.series.len(), 1);
        assert_eq!(parsed.series[0].samples, 2);
        // The retried attempt rewrote the spool from the start.
        assert_eq!(parsed.series[0].offset, 0);
        assert_eq!(std::fs::metadata(&spool).unwrap().len(), 2 * (10 + 1));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].starts_with("GET /api/v1/query_range?query=up&start=1&end=16&step=15 "));
    }

    #[tokio::test]
    async fn bad_queries_are_not_retried() {
        let bad = r#"{"status":"error","errorType":"bad_data","error":"1:4: parse error: unexpected end of input"}"#;
        let (url, seen) = fake(vec![response("400 Bad Request", bad, bad.len())]);
        let dir = tempfile::tempdir().unwrap();
        let err = client(&url, 3)
            .fetch(
                "up(",
                CHUNK,
                15_000,
                &dir.path().join("s"),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prometheus rejected it (HTTP 400 bad_data): 1:4: parse error: unexpected end of input"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn retries_give_up_with_the_last_error() {
        let busy = r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        let (url, _) = fake(vec![
            response("503 Service Unavailable", busy, busy.len()),
            response("503 Service Unavailable", busy, busy.len()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let err = client(&url, 1)
            .fetch(
                "up",
                CHUNK,
                15_000,
                &dir.path().join("s"),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "HTTP 503 Service Unavailable timeout: query timed out (after 2 attempts)"
        );
    }

    #[tokio::test]
    async fn cancellation_stops_the_backoff() {
        let busy = r#"{"status":"error","errorType":"unavailable","error":"busy"}"#;
        let (url, _) = fake(vec![response("503 Service Unavailable", busy, busy.len())]);
        let dir = tempfile::tempdir().unwrap();
        let c = PromClient::new(
            &url,
            ClientOptions {
                request_timeout: Duration::from_secs(5),
                retries: 5,
                backoff: Duration::from_secs(60),
                compression: false,
            },
        )
        .unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let started = std::time::Instant::now();
        let err = c
            .fetch("up", CHUNK, 15_000, &dir.path().join("s"), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Cancelled), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn urls_are_escaped() {
        let c = PromClient::new(
            "http://127.0.0.1:9/prom/",
            ClientOptions {
                request_timeout: Duration::from_secs(1),
                retries: 0,
                backoff: Duration::from_millis(1),
                compression: false,
            },
        )
        .unwrap();
        assert_eq!(
            c.chunk_url(
                "sum(rate(x{a=\"b\"}[1m])) by (c)",
                Chunk {
                    start_ms: 1_000,
                    end_ms: 61_500
                },
                15_000
            ),
            "http://127.0.0.1:9/prom/api/v1/query_range?query=sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29%20by%20%28c%29&start=1&end=61.500&step=15"
        );
    }
}
