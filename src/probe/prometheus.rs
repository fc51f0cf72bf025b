//! Prometheus probes: one instant or range query through the HTTP API
//! (`/api/v1/query`, `/api/v1/query_range`), its samples aggregated (`avg`, `max`, `min`) or
//! judged one by one (`all`, `any`), optionally set against the same query over a baseline
//! window.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{Aggregate, Compare, Evaluation, Expect, ProbeSpec, DEFAULT_REQUEST_TIMEOUT};
use crate::collect::endpoint::resolve_endpoint;
use crate::collect::parse_time;
use crate::collect::window::{Empty, Floor, Lookback, WindowSpec};
use crate::kube::discovery;
use crate::plan::Duration;
use crate::steps::api::{StepCtx, StepError};

const DEFAULT_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(15);

/// # Errors
/// A window bound is not a time; cancellation.
pub async fn evaluate(spec: &ProbeSpec, ctx: &StepCtx) -> Result<Evaluation, StepError> {
    // No Prometheus means nothing could be measured: an unknown verdict, not a failed step.
    let endpoint = match resolve_endpoint(
        ctx,
        spec.endpoint.as_deref(),
        "PROMETHEUS_URL",
        &discovery::PROMETHEUS,
        "Prometheus",
    )
    .await
    {
        Ok((url, _)) => url,
        Err(StepError::Cancelled) => return Err(StepError::Cancelled),
        Err(e) => return Ok(Evaluation::unknown(e.to_string())),
    };
    let query = spec.query.as_deref().unwrap_or_default();
    let now = Utc::now();
    let window = WindowSpec {
        start: spec.start.as_deref().map(|s| ("start", s)),
        end: spec.end.as_deref().map(|e| ("end", e)),
        default_start: spec.window.map(|w| Lookback {
            at: now,
            by: w.get(),
            field: "window",
        }),
        default_end: Some(now),
        floor: Floor::Never,
        empty: Empty::Allowed,
    }
    .resolve()
    .map_err(StepError::Failed)?;
    let end = window.end.unwrap_or(now);
    let window = window.start;
    let client = Prom::new(&endpoint, spec)?;
    let samples = match window {
        Some(start) => client.range(query, start, end).await,
        None => client.instant(query).await,
    };
    let samples = match samples {
        Ok(s) if s.is_empty() => return Ok(Evaluation::unknown("the query returned no samples")),
        Ok(s) => s,
        Err(e) => return Ok(Evaluation::unknown(e)),
    };
    let expect = spec.expect.clone().unwrap_or_default();
    let Some(value) = aggregate(spec.aggregate, &samples) else {
        return Ok(judge_each(spec.aggregate, &samples, &expect));
    };
    compare_with_baseline(spec, &client, value, &expect).await
}

/// `all`/`any`: every sample is judged on its own.
fn judge_each(aggregate_by: Aggregate, samples: &[f64], expect: &Expect) -> Evaluation {
    let passing = samples.iter().filter(|v| expect.passes(**v)).count();
    let passed = match aggregate_by {
        Aggregate::All => passing == samples.len(),
        _ => passing > 0,
    };
    let value = json!({
        "samples": samples.len(),
        "passing": passing,
        "min": finite(samples.iter().copied().fold(f64::INFINITY, f64::min)),
        "max": finite(samples.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
    });
    let detail = (!passed).then(|| format!("{passing} of {} samples meet {expect}", samples.len()));
    Evaluation::new(value, Some(passed), detail)
}

/// The aggregated value judged: as it is, or set against the same query over the baseline
/// window when there is one.
///
/// # Errors
/// A baseline bound is not a time.
async fn compare_with_baseline(
    spec: &ProbeSpec,
    client: &Prom,
    value: f64,
    expect: &Expect,
) -> Result<Evaluation, StepError> {
    let Some(baseline) = &spec.baseline else {
        let miss = expect.miss(value);
        return Ok(Evaluation::new(
            json!(finite(value)),
            Some(miss.is_none()),
            miss,
        ));
    };
    let query = spec.query.as_deref().unwrap_or_default();
    let b_start = parse_time("baseline.start", &baseline.start).map_err(StepError::Failed)?;
    let b_end = parse_time("baseline.end", &baseline.end).map_err(StepError::Failed)?;
    let base = match client.range(query, b_start, b_end).await {
        Ok(s) => aggregate(spec.aggregate, &s),
        Err(e) => return Ok(Evaluation::unknown(format!("baseline: {e}"))),
    };
    let Some(base) = base else {
        return Ok(Evaluation::unknown("the baseline window has no samples"));
    };
    let compared = match spec.compare {
        Compare::Ratio if base == 0.0 => {
            return Ok(Evaluation::new(
                json!({ "value": finite(value), "baseline": 0.0 }),
                None,
                Some(
                    "the baseline is 0, so the ratio is undefined (use `compare: difference`)"
                        .into(),
                ),
            ))
        }
        Compare::Ratio => value / base,
        Compare::Difference => value - base,
    };
    let miss = expect.miss(compared);
    let what = match spec.compare {
        Compare::Ratio => "ratio",
        Compare::Difference => "difference",
    };
    Ok(Evaluation::new(
        json!({ "value": finite(value), "baseline": finite(base), what: finite(compared) }),
        Some(miss.is_none()),
        miss.map(|m| format!("{what} {m}")),
    ))
}

/// JSON has no NaN or infinity.
fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// `None` for `all`/`any` and for no samples.
fn aggregate(how: Aggregate, samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    match how {
        Aggregate::Avg => Some(samples.iter().sum::<f64>() / samples.len() as f64),
        Aggregate::Max => Some(samples.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        Aggregate::Min => Some(samples.iter().copied().fold(f64::INFINITY, f64::min)),
        Aggregate::All | Aggregate::Any => None,
    }
}

struct Prom {
    http: reqwest::Client,
    base: String,
    resolution: std::time::Duration,
}

impl Prom {
    fn new(endpoint: &str, spec: &ProbeSpec) -> Result<Self, StepError> {
        let timeout = spec
            .request_timeout
            .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::get);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("ttplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StepError::failed(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: endpoint.trim_end_matches('/').to_string(),
            resolution: spec.resolution.map_or(DEFAULT_RESOLUTION, Duration::get),
        })
    }

    async fn instant(&self, query: &str) -> Result<Vec<f64>, String> {
        self.get("query", &[("query", query.to_string())]).await
    }

    async fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<f64>, String> {
        if end < start {
            return Err(format!(
                "the window ends ({end}) before it starts ({start})"
            ));
        }
        let secs = |t: DateTime<Utc>| format!("{:.3}", t.timestamp_millis() as f64 / 1000.0);
        self.get(
            "query_range",
            &[
                ("query", query.to_string()),
                ("start", secs(start)),
                ("end", secs(end)),
                ("step", format!("{}", self.resolution.as_secs_f64())),
            ],
        )
        .await
    }

    async fn get(&self, api: &str, params: &[(&str, String)]) -> Result<Vec<f64>, String> {
        let url = format!("{}/api/v1/{api}", self.base);
        let resp = self
            .http
            .post(&url)
            .form(params)
            .send()
            .await
            .map_err(|e| format!("Prometheus at {}: {e}", self.base))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("Prometheus answered HTTP {status} without JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "Prometheus rejected the query (HTTP {} {}): {}",
                status.as_u16(),
                body["errorType"].as_str().unwrap_or(""),
                body["error"].as_str().unwrap_or("")
            ));
        }
        samples(&body["data"])
    }
}

/// Every sample value of a `query`/`query_range` answer (`vector`, `matrix` or `scalar`).
fn samples(data: &Value) -> Result<Vec<f64>, String> {
    let num = |p: &Value| -> Option<f64> { p.get(1)?.as_str()?.parse::<f64>().ok() };
    let result = &data["result"];
    let out: Vec<f64> = match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .map(|a| a.iter().filter_map(|s| num(&s["value"])).collect())
            .unwrap_or_default(),
        Some("matrix") => result
            .as_array()
            .map(|a| {
                a.iter()
                    .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                    .filter_map(|p| num(&p))
                    .collect()
            })
            .unwrap_or_default(),
        Some("scalar") => num(result).into_iter().collect(),
        other => return Err(format!("unexpected result type {other:?}")),
    };
    Ok(out.into_iter().filter(|v| !v.is_nan()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_every_result_type() {
        let v = json!({"resultType": "vector", "result": [
            {"metric": {}, "value": [1.0, "2.5"]}, {"metric": {}, "value": [1.0, "NaN"]}]});
        assert_eq!(samples(&v).unwrap(), vec![2.5]);
        let m = json!({"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1.0, "1"], [2.0, "3"]]}, {"metric": {}, "values": [[1.0, "+Inf"]]}]});
        assert_eq!(samples(&m).unwrap(), vec![1.0, 3.0, f64::INFINITY]);
        let s = json!({"resultType": "scalar", "result": [1.0, "7"]});
        assert_eq!(samples(&s).unwrap(), vec![7.0]);
        assert!(samples(&json!({"resultType": "string"})).is_err());
    }

    #[test]
    fn aggregates() {
        let s = [1.0, 2.0, 6.0];
        assert_eq!(aggregate(Aggregate::Avg, &s), Some(3.0));
        assert_eq!(aggregate(Aggregate::Max, &s), Some(6.0));
        assert_eq!(aggregate(Aggregate::Min, &s), Some(1.0));
        assert_eq!(aggregate(Aggregate::All, &s), None);
        assert_eq!(aggregate(Aggregate::Avg, &[]), None);
    }
}
