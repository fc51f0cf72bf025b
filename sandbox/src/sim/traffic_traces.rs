//! The simulated requests as SkyWalking traces: one segment per hop (the gateway's, then each
//! service the request reached), an Entry span named as the SpringMVC plugin names endpoints
//! (`{POST}/api/v1/preserveservice/preserve`; the gateway: the request path), one Exit span per
//! outgoing call named by the called path with its `peer`, and CROSS_PROCESS refs from each
//! callee's entry to the caller's exit span. Failed spans carry `isError` and an error log
//! (`event`, `error.kind`, `message`, `stack`), as the agent's `span.log(Throwable)` writes.
//! Shapes as apache/skywalking's query protocol (`trace.graphqls`: `Span`, `Ref`, `KeyValue`,
//! `LogEntity`).

use serde_json::{json, Value};

use super::traffic::{fnv, CallRecord, Hop, SimRequest};
use super::traffic_model;
use crate::skywalking::FedTrace;

struct Builder<'a> {
    req: &'a SimRequest,
    spans: Vec<Value>,
    segments: u32,
}

fn kv(k: &str, v: impl Into<Value>) -> Value {
    json!({"key": k, "value": v.into()})
}

fn error_log(time: i64, class: &str, message: &str) -> Value {
    json!([{ "time": time, "data": [
        kv("event", "error"),
        kv("error.kind", class),
        kv("message", message),
        kv("stack", format!("{class}: {message}\n\tat java.lang.Thread.run(Thread.java:748)")),
    ]}])
}

impl Builder<'_> {
    fn segment_id(&mut self) -> String {
        self.segments += 1;
        let h = fnv(&format!("{}#{}", self.req.trace_id, self.segments));
        format!(
            "{h:016x}{:016x}.{}.{}",
            fnv(&h.to_string()),
            40 + self.segments % 80,
            self.req.at.timestamp_millis() * 10_000 + i64::from(self.segments)
        )
    }

    /// The segment of `hop`, called from `parent` (segment id, exit span id) when not the root.
    fn segment(&mut self, hop: &Hop, parent: Option<(&str, usize)>, status: u16) {
        let seg = self.segment_id();
        let gateway = hop.class.is_empty();
        let refs = match parent {
            Some((ps, span)) => json!([{
                "traceId": self.req.trace_id, "parentSegmentId": ps, "parentSpanId": span,
                "type": "CROSS_PROCESS"
            }]),
            None => json!([]),
        };
        let error = hop.threw();
        self.spans.push(json!({
            "traceId": self.req.trace_id,
            "segmentId": seg,
            "spanId": 0,
            "parentSpanId": -1,
            "refs": refs,
            "serviceCode": hop.app,
            "serviceInstanceName": hop.pod,
            "startTime": hop.start_ms,
            "endTime": hop.end_ms,
            "endpointName": hop.endpoint,
            "type": "Entry",
            "peer": "",
            "component": if gateway { "SpringCloudGateway" } else { "SpringMVC" },
            "isError": hop.outcome.is_error() || status >= 400,
            "layer": "Http",
            "tags": [
                kv("url", format!("http://{}:{}{}", hop.app, traffic_model::port(&hop.app), hop.path)),
                kv("http.method", hop.method.as_str()),
                kv("http.status_code", status.to_string()),
            ],
            "logs": error.map_or(json!([]), |ex| error_log(hop.end_ms, &ex.class, &ex.message)),
            "attachedEvents": []
        }));
        for (i, c) in hop.calls.iter().enumerate() {
            let span_id = i + 1;
            self.exit(&seg, span_id, hop, c, gateway);
            if let Some(callee) = &c.callee {
                let status = if callee.outcome.is_error() { 500 } else { 200 };
                self.segment(callee, Some((&seg, span_id)), status);
            }
        }
    }

    fn exit(&mut self, seg: &str, span_id: usize, hop: &Hop, c: &CallRecord, gateway: bool) {
        let peer = format!("{}:{}", c.app, traffic_model::port(&c.app));
        let mut tags = vec![
            kv("url", format!("http://{peer}{}", c.path)),
            kv("http.method", c.method.as_str()),
        ];
        if let Some(callee) = &c.callee {
            let code = if callee.outcome.is_error() {
                "500"
            } else {
                "200"
            };
            tags.push(kv("http.status_code", code));
        }
        self.spans.push(json!({
            "traceId": self.req.trace_id,
            "segmentId": seg,
            "spanId": span_id,
            "parentSpanId": 0,
            "refs": [],
            "serviceCode": hop.app,
            "serviceInstanceName": hop.pod,
            "startTime": c.start_ms,
            "endTime": c.end_ms,
            "endpointName": c.path,
            "type": "Exit",
            "peer": peer,
            "component": if gateway { "SpringCloudGateway" } else { "SpringRestTemplate" },
            "isError": c.failed.is_some(),
            "layer": "Http",
            "tags": tags,
            // The gateway's HTTP client only marks a 5xx answer; a RestTemplate throws.
            "logs": c.failed.as_ref().filter(|_| !gateway || c.unreached.is_some())
                .map_or(json!([]), |ex| error_log(c.end_ms, &ex.class, &ex.message)),
            "attachedEvents": []
        }));
    }
}

/// The trace of one simulated request; `None` when no traced service saw it (the front
/// answered alone).
pub fn trace(req: &SimRequest) -> Option<FedTrace> {
    let gw = req.gateway.as_ref()?;
    let mut b = Builder {
        req,
        spans: Vec::new(),
        segments: 0,
    };
    b.segment(gw, None, req.status);
    Some(FedTrace {
        id: req.trace_id.clone(),
        spans: std::sync::Arc::new(b.spans),
    })
}

impl super::Traffic {
    /// Every answered request's trace, in arrival order (each built once).
    pub fn traces(&self) -> Vec<FedTrace> {
        self.requests()
            .iter()
            .filter_map(|r| r.trace.get_or_init(|| trace(r)).clone())
            .collect()
    }

    /// The traces as the SkyWalking fake's feed.
    pub fn trace_feed(&self) -> crate::skywalking::TraceFeed {
        let t = self.clone();
        crate::skywalking::TraceFeed(std::sync::Arc::new(move || t.traces()))
    }
}
