//! The trace document's keys (`<EXP>_skywalking_traces_<ts>.json`): consumers index traces and
//! spans by these names, so a missing or renamed key breaks them (extra keys are harmless).

use serde_json::Value;

pub const METADATA_KEYS: [&str; 10] = [
    "generated_at",
    "lookback_hours",
    "requested_trace_limit",
    "min_trace_duration_ms",
    "collected_traces",
    "available_total",
    "services_discovered",
    "experiment_name",
    "skywalking_base_url",
    "skywalking_graphql",
];
pub const TRACE_KEYS: [&str; 5] = [
    "summary",
    "span_count",
    "services_involved",
    "root_span_node_ids",
    "spans",
];
pub const SUMMARY_KEYS: [&str; 6] = [
    "trace_id",
    "duration_ms",
    "start_time_utc",
    "start_timestamp_ms",
    "is_error",
    "endpoint_names",
];
pub const SPAN_KEYS: [&str; 25] = [
    "node_id",
    "trace_id",
    "segment_id",
    "span_id",
    "parent_span_id",
    "parent_node_id",
    "depth",
    "children_node_ids",
    "service_code",
    "service_instance",
    "start_time_utc",
    "end_time_utc",
    "start_timestamp_ms",
    "end_timestamp_ms",
    "duration_ms",
    "endpoint_name",
    "type",
    "peer",
    "component",
    "layer",
    "is_error",
    "tags",
    "tags_map",
    "logs",
    "refs",
];

fn missing<'a>(v: &Value, keys: &[&'a str]) -> Vec<&'a str> {
    keys.iter()
        .copied()
        .filter(|k| v.get(k).is_none())
        .collect()
}

/// Problems of one trace document; returns `(traces, spans)` counted.
pub fn check_document(doc: &Value, problems: &mut Vec<String>) -> (usize, usize) {
    const MAX: usize = 5;
    let mut note = |p: String| {
        if problems.len() < MAX {
            problems.push(p);
        }
    };
    let Some(meta) = doc.get("metadata") else {
        note("no `metadata`".into());
        return (0, 0);
    };
    let m = missing(meta, &METADATA_KEYS);
    if !m.is_empty() {
        note(format!("metadata lacks {}", m.join(", ")));
    }
    let Some(traces) = doc.get("traces").and_then(Value::as_array) else {
        note("no `traces` list".into());
        return (0, 0);
    };
    let mut spans = 0;
    for (i, t) in traces.iter().enumerate() {
        let m = missing(t, &TRACE_KEYS);
        if !m.is_empty() {
            note(format!("trace {i} lacks {}", m.join(", ")));
        }
        if let Some(s) = t.get("summary") {
            let m = missing(s, &SUMMARY_KEYS);
            if !m.is_empty() {
                note(format!("trace {i}: summary lacks {}", m.join(", ")));
            }
        }
        for (j, span) in t
            .get("spans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            spans += 1;
            let m = missing(span, &SPAN_KEYS);
            if !m.is_empty() {
                note(format!("trace {i} span {j} lacks {}", m.join(", ")));
            }
            if span
                .get("duration_ms")
                .and_then(Value::as_f64)
                .is_some_and(|d| d < 0.0)
            {
                note(format!("trace {i} span {j}: negative duration_ms"));
            }
        }
    }
    (traces.len(), spans)
}
