//! HTTP probes: one request; the verdict needs the status in the accepted set, the body to
//! match `body_regex`, the JSON value at `json_pointer` to exist (and equal `equals`), and the
//! answer within `latency_under`. A refused connection is a failed verdict: the service does
//! not answer, which is what the probe asks.

use std::time::Instant;

use serde_json::{json, Value};

use super::{Evaluation, ProbeSpec, DEFAULT_REQUEST_TIMEOUT};
use crate::plan::Duration;
use crate::steps::api::StepCtx;

pub async fn evaluate(spec: &ProbeSpec, _ctx: &StepCtx) -> Evaluation {
    let url = spec.url.as_deref().unwrap_or_default();
    let timeout = spec
        .request_timeout
        .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::get);
    let http = match reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("ttplan/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Evaluation::unknown(format!("building the HTTP client: {e}")),
    };
    let method = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Evaluation::unknown(format!("`{method}` is not an HTTP method"));
    };
    let mut req = http.request(method, url);
    for (k, v) in &spec.headers {
        req = req.header(k, v);
    }
    if let Some(b) = &spec.body {
        req = req.body(b.clone());
    }
    let started = Instant::now();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Evaluation::failed(Value::Null, format!("{url}: {}", error_chain(&e))),
    };
    let status = resp.status().as_u16();
    let body = match resp.text().await {
        Ok(b) => b,
        Err(e) => {
            return Evaluation::failed(
                json!({ "status": status }),
                format!("reading the body: {e}"),
            )
        }
    };
    let latency = started.elapsed();
    let value = json!({ "status": status, "latency_ms": latency.as_millis() as u64 });
    let problem = judge(spec, status, &body, latency);
    Evaluation::new(value, Some(problem.is_none()), problem)
}

/// The first unmet expectation.
fn judge(
    spec: &ProbeSpec,
    status: u16,
    body: &str,
    latency: std::time::Duration,
) -> Option<String> {
    let status_ok = if spec.status.is_empty() {
        (200..300).contains(&status)
    } else {
        spec.status.contains(&status)
    };
    if !status_ok {
        let want = if spec.status.is_empty() {
            "2xx".to_string()
        } else {
            format!("{:?}", spec.status)
        };
        return Some(format!("status {status}, expected {want}"));
    }
    if let Some(limit) = spec.latency_under {
        if latency >= limit.get() {
            return Some(format!(
                "answered in {}, not under {limit}",
                humantime::format_duration(std::time::Duration::from_millis(
                    latency.as_millis() as u64
                ))
            ));
        }
    }
    if let Some(re) = &spec.body_regex {
        match regex::Regex::new(re) {
            Ok(r) if !r.is_match(body) => return Some(format!("the body does not match /{re}/")),
            Ok(_) => {}
            Err(e) => return Some(format!("`body_regex`: {e}")),
        }
    }
    if let Some(ptr) = &spec.json_pointer {
        let Ok(doc) = serde_json::from_str::<Value>(body) else {
            return Some("the body is not JSON".into());
        };
        match (doc.pointer(ptr), &spec.equals) {
            (None, _) => return Some(format!("the body has nothing at {ptr}")),
            (Some(v), Some(want)) if !same(v, want) => {
                return Some(format!("{ptr} is {v}, expected {want}"))
            }
            _ => {}
        }
    }
    None
}

/// Equality that lets a plan write `equals: "3"` for a number (templates render to strings).
pub fn same(actual: &Value, want: &Value) -> bool {
    actual == want
        || match (actual, want) {
            (Value::String(a), b) | (b, Value::String(a)) => {
                serde_json::from_str::<Value>(a).is_ok_and(|v| v == *b)
            }
            _ => false,
        }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
