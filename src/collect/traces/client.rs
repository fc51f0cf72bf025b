//! A small GraphQL-over-HTTP client for the OAP: one POST per call, with a per-request
//! timeout and retries with exponential backoff on everything that can be transient — 5xx,
//! 408/429, timeouts, connection errors, bodies that are cut off or not JSON, and GraphQL
//! `errors` arrays (the OAP reports storage hiccups that way, with HTTP 200).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How a call is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry; doubles each time, capped at `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// Why one call failed, after its retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("invalid response body: {0}")]
    Body(String),
    #[error("GraphQL errors: {0}")]
    GraphQl(String),
    #[error("cancelled")]
    Cancelled,
}

impl CallError {
    fn retryable(&self) -> bool {
        match self {
            CallError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            // The schema will not grow a field, nor the result window widen, between attempts.
            CallError::GraphQl(_) => !self.is_undefined_field() && self.result_window().is_none(),
            CallError::Timeout(_) | CallError::Connect(_) | CallError::Body(_) => true,
            CallError::Cancelled => false,
        }
    }

    /// Elasticsearch's "Result window is too large, from + size must be less than or equal to:
    /// [10000] but was [10100]" as the OAP passes it on in GraphQL `errors`
    /// (`SearchClient.search` throws the response body; graphql-java reports the exception):
    /// `Some(limit)` when the error is that one, the limit when it could be read.
    pub fn result_window(&self) -> Option<Option<u32>> {
        let CallError::GraphQl(m) = self else {
            return None;
        };
        let at = m.find("Result window is too large")?;
        let rest = &m[at..];
        let limit = rest
            .find("equal to: [")
            .map(|i| &rest[i + "equal to: [".len()..])
            .and_then(|r| r.split(']').next())
            .and_then(|n| n.trim().parse().ok());
        Some(limit)
    }

    /// A GraphQL error saying the schema has no such field: the OAP is older than the query.
    pub fn is_undefined_field(&self) -> bool {
        match self {
            CallError::GraphQl(m) => {
                let m = m.to_ascii_lowercase();
                m.contains("undefined")
                    || m.contains("cannot query field")
                    || m.contains("validationerror")
                    || m.contains("field not found")
            }
            _ => false,
        }
    }
}

/// A failed call and how many attempts it took.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: CallError,
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct GraphQlClient {
    http: reqwest::Client,
    url: String,
    timeout: Duration,
    policy: RetryPolicy,
}

impl GraphQlClient {
    /// `base` is the OAP (or UI) URL; documents go to `<base>/graphql`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS backend initialisation).
    pub fn new(
        base: &str,
        timeout: Duration,
        policy: RetryPolicy,
        pool: usize,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(pool)
            .user_agent(concat!("ttplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self {
            http,
            url: graphql_url(base),
            timeout,
            policy,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `document` with `variables` and returns its `data`, retrying transient failures.
    ///
    /// # Errors
    /// The last failure once retries are exhausted, at once for non-transient ones.
    pub async fn call<T: DeserializeOwned>(
        &self,
        document: &str,
        variables: Value,
        cancel: &CancellationToken,
    ) -> Result<T, Failure> {
        let body = serde_json::json!({ "query": document, "variables": variables });
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = tokio::select! {
                r = self.once(&body) => r,
                () = cancel.cancelled() => Err(CallError::Cancelled),
            };
            match result {
                Ok(data) => return Ok(data),
                Err(error) if !error.retryable() || attempt > self.policy.retries => {
                    return Err(Failure {
                        error,
                        attempts: attempt,
                    })
                }
                Err(_) => {
                    let wait = self.backoff(attempt);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Err(Failure { error: CallError::Cancelled, attempts: attempt }),
                    }
                }
            }
        }
    }

    /// Exponential, with up to 25 % jitter so that many workers failing together do not retry
    /// in lockstep against a struggling OAP.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .backoff
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.policy.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        exp + exp.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }

    async fn once<T: DeserializeOwned>(&self, body: &Value) -> Result<T, CallError> {
        let resp = self
            .http
            .post(&self.url)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(CallError::Status {
                status: status.as_u16(),
                body: snippet(&bytes),
            });
        }
        parse_response(&bytes)
    }

    fn transport(&self, e: reqwest::Error) -> CallError {
        if e.is_timeout() {
            CallError::Timeout(self.timeout)
        } else if e.is_connect() {
            CallError::Connect(error_chain(&e))
        } else if e.is_body() || e.is_decode() {
            CallError::Body(error_chain(&e))
        } else {
            CallError::Connect(error_chain(&e))
        }
    }
}

/// Reads a GraphQL response: `errors` wins over `data`, because the OAP may return a partial
/// `data` alongside them and a partial trace is not a trace. `data` is parsed straight into `T`.
fn parse_response<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
        #[serde(default)]
        errors: Option<Vec<Value>>,
    }
    let v: Envelope<'_> = serde_json::from_slice(bytes)
        .map_err(|e| CallError::Body(format!("{e} ({} bytes: {})", bytes.len(), snippet(bytes))))?;
    if let Some(errors) = v.errors.filter(|e| !e.is_empty()) {
        let msgs: Vec<String> = errors
            .iter()
            .map(|e| {
                e.get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| e.to_string(), str::to_string)
            })
            .collect();
        return Err(CallError::GraphQl(msgs.join("; ")));
    }
    match v.data.filter(|d| d.get() != "null") {
        Some(d) => serde_json::from_str(d.get()).map_err(|e| {
            CallError::Body(format!(
                "unexpected `data`: {e}: {}",
                snippet(d.get().as_bytes())
            ))
        }),
        None => Err(CallError::Body(format!(
            "no `data` in response: {}",
            snippet(bytes)
        ))),
    }
}

pub fn graphql_url(base: &str) -> String {
    let b = base.trim_end_matches('/');
    if b.ends_with("/graphql") {
        b.to_string()
    } else {
        format!("{b}/graphql")
    }
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_errors_beat_data() {
        let body = br#"{"data":{"queryTrace":null},"errors":[{"message":"storage timeout"}]}"#;
        match parse_response::<Value>(body) {
            Err(CallError::GraphQl(m)) => assert_eq!(m, "storage timeout"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_bodies_are_body_errors() {
        let err = parse_response::<Value>(br#"{"data":{"queryTrace":{"spans":[{"tra"#).unwrap_err();
        assert!(matches!(err, CallError::Body(_)), "{err:?}");
        assert!(err.retryable());
    }

    #[test]
    fn undefined_field_is_recognised() {
        let e = CallError::GraphQl(
            "Validation error (FieldUndefined@[hasQueryTracesV2Support]) : Field 'hasQueryTracesV2Support' in type 'Query' is undefined".into(),
        );
        assert!(e.is_undefined_field());
        assert!(!CallError::GraphQl("storage timeout".into()).is_undefined_field());
    }

    #[test]
    fn result_window_errors_are_recognised_and_not_retried() {
        let e = CallError::GraphQl(
            "Exception while fetching data (/queryBasicTraces) : java.lang.RuntimeException: {\"error\":{\"root_cause\":[{\"type\":\"illegal_argument_exception\",\"reason\":\"Result window is too large, from + size must be less than or equal to: [10000] but was [10100]. See the scroll api\"}]}}".into(),
        );
        assert_eq!(e.result_window(), Some(Some(10_000)));
        assert!(!e.retryable());
        assert_eq!(
            CallError::GraphQl("Result window is too large".into()).result_window(),
            Some(None)
        );
        assert_eq!(CallError::GraphQl("timeout".into()).result_window(), None);
    }

    #[test]
    fn urls() {
        assert_eq!(graphql_url("http://oap:12800"), "http://oap:12800/graphql");
        assert_eq!(graphql_url("http://ui/graphql/"), "http://ui/graphql");
    }
}
