//! Turns the flat span list the OAP returns into the dataset's trace object: every span gets a
//! node id, its parent and children, its depth in the span tree, timings in ms and ISO UTC, a
//! tag map and the EvoMaster run id that links it to the API-response modality.
//!
//! Spans are kept as the OAP sent them (camelCase fields) with snake_case fields added, so
//! readers of the published dataset find both. Real traces are not always trees: segments go
//! missing (Elasticsearch caps `queryTrace` at 200 segments, agents drop data) and a buggy agent
//! can produce a cycle, so the tree is built defensively and such spans are flagged, not lost.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

/// Tag keys that carry the EvoMaster run id (checked case-insensitively).
pub const EVOMASTER_KEYS: &[&str] = &["x-evomaster-run-id", "tt_em_run_id"];

/// Builds the trace object. `summary` is the list entry the trace was found by (a v1
/// `BasicTrace`), or `None` to derive one from the spans (v2).
pub fn enrich(trace_id: &str, summary: Option<&Value>, spans: Vec<Value>) -> Value {
    let mut spans: Vec<Map<String, Value>> = spans
        .into_iter()
        .filter_map(|s| match s {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();

    // Same segment returned twice (it happens with retried OAP storage reads): keep one copy so
    // the tree has no phantom siblings.
    let mut seen = BTreeSet::new();
    let before = spans.len();
    spans.retain(|s| seen.insert(node_id(s)));
    let duplicates = before - spans.len();

    spans.sort_by(|a, b| {
        (
            int(a, "startTime"),
            str_of(a, "segmentId"),
            int(a, "spanId"),
        )
            .cmp(&(
                int(b, "startTime"),
                str_of(b, "segmentId"),
                int(b, "spanId"),
            ))
    });

    let ids: Vec<String> = spans.iter().map(node_id).collect();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let parent_ids: Vec<Option<String>> = spans.iter().map(parent_node_id).collect();
    let mut parent: Vec<Option<usize>> = parent_ids
        .iter()
        .map(|p| p.as_deref().and_then(|p| index.get(p).copied()))
        .collect();
    let cycle_cut = break_cycles(&mut parent);
    let depth = depths(&parent);

    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }

    let mut services = BTreeSet::new();
    let mut roots = Vec::new();
    let mut run_ids: Vec<String> = Vec::new();
    let mut segments = BTreeSet::new();
    let (mut first, mut last, mut errors) = (i64::MAX, i64::MIN, 0usize);

    let mut out = Vec::with_capacity(spans.len());
    for (i, mut span) in spans.into_iter().enumerate() {
        if let Some(s) = span.get("serviceCode").and_then(Value::as_str) {
            services.insert(s.to_string());
        }
        segments.insert(str_of(&span, "segmentId").to_string());
        let start = int(&span, "startTime");
        let end = int(&span, "endTime");
        first = first.min(start);
        last = last.max(end);
        if span.get("isError").and_then(Value::as_bool) == Some(true) {
            errors += 1;
        }
        if parent[i].is_none() {
            roots.push(ids[i].clone());
        }
        let tags_map = tag_map(&span);
        let run_id = evomaster_run_id(&span, &tags_map);
        if let Some(r) = &run_id {
            if !run_ids.contains(r) {
                run_ids.push(r.clone());
            }
        }

        span.insert("node_id".into(), json!(ids[i]));
        span.insert("parent_node_id".into(), json!(parent_ids[i]));
        if parent_ids[i].is_some() && parent[i].is_none() && !cycle_cut[i] {
            span.insert("parent_missing".into(), json!(true));
        }
        if cycle_cut[i] {
            span.insert("parent_cycle".into(), json!(true));
        }
        span.insert("depth".into(), json!(depth[i]));
        span.insert(
            "children_node_ids".into(),
            json!(children[i].iter().map(|c| &ids[*c]).collect::<Vec<_>>()),
        );
        span.insert("start_time_ms".into(), json!(start));
        span.insert("end_time_ms".into(), json!(end));
        span.insert("duration_ms".into(), json!(end - start));
        span.insert("start_time".into(), json!(iso(start)));
        span.insert("end_time".into(), json!(iso(end)));
        span.insert("tags_map".into(), Value::Object(tags_map));
        if let Some(r) = run_id {
            span.insert("evomaster_run_id".into(), json!(r));
        }
        out.push(Value::Object(span));
    }

    let span_count = out.len();
    let mut summary = match summary {
        Some(Value::Object(m)) => m.clone(),
        _ => derived_summary(&out, &roots),
    };
    summary.insert("trace_id".into(), json!(trace_id));
    if span_count > 0 {
        summary.insert("start_time_ms".into(), json!(first));
        summary.insert("end_time_ms".into(), json!(last));
        summary.insert("duration_ms".into(), json!(last - first));
        summary.insert("start_time".into(), json!(iso(first)));
        summary.insert("end_time".into(), json!(iso(last)));
    }
    summary.insert("segment_count".into(), json!(segments.len()));
    summary.insert("error_span_count".into(), json!(errors));
    if duplicates > 0 {
        summary.insert("duplicate_spans_dropped".into(), json!(duplicates));
    }

    let mut trace = Map::new();
    trace.insert("trace_id".into(), json!(trace_id));
    trace.insert("summary".into(), Value::Object(summary));
    trace.insert("span_count".into(), json!(span_count));
    trace.insert("services_involved".into(), json!(services));
    trace.insert("root_span_node_ids".into(), json!(roots));
    if let Some(first) = run_ids.first() {
        trace.insert("evomaster_run_id".into(), json!(first));
        if run_ids.len() > 1 {
            trace.insert("evomaster_run_ids".into(), json!(run_ids));
        }
    }
    trace.insert("spans".into(), Value::Array(out));
    Value::Object(trace)
}

/// `segmentId:spanId`.
pub fn node_id(span: &Map<String, Value>) -> String {
    format!("{}:{}", str_of(span, "segmentId"), int(span, "spanId"))
}

/// The parent inside the segment when `parentSpanId >= 0`; otherwise the first ref's span in
/// the calling segment (cross-process or cross-thread); `None` for a trace's entry span.
pub fn parent_node_id(span: &Map<String, Value>) -> Option<String> {
    let p = int(span, "parentSpanId");
    if p >= 0 && span.contains_key("parentSpanId") {
        return Some(format!("{}:{p}", str_of(span, "segmentId")));
    }
    let r = span.get("refs")?.as_array()?.first()?.as_object()?;
    Some(format!(
        "{}:{}",
        str_of(r, "parentSegmentId"),
        int(r, "parentSpanId")
    ))
}

/// Cuts every parent cycle at one edge so the span graph becomes a forest; returns which
/// spans lost their parent that way. Walks each chain once, so it is linear in the span count.
fn break_cycles(parent: &mut [Option<usize>]) -> Vec<bool> {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; parent.len()];
    let mut cut = vec![false; parent.len()];
    let mut path = Vec::new();
    for start in 0..parent.len() {
        let mut at = Some(start);
        while let Some(i) = at {
            match state[i] {
                DONE => break,
                ON_PATH => {
                    // `i` closes a cycle: make it the cycle's root.
                    parent[i] = None;
                    cut[i] = true;
                    break;
                }
                _ => {
                    state[i] = ON_PATH;
                    path.push(i);
                    at = parent[i];
                }
            }
        }
        for i in path.drain(..) {
            state[i] = DONE;
        }
    }
    cut
}

/// Depth of each span in an acyclic parent forest, without recursion (deep traces must not
/// overflow the stack).
fn depths(parent: &[Option<usize>]) -> Vec<usize> {
    let mut depth: Vec<Option<usize>> = vec![None; parent.len()];
    let mut chain = Vec::new();
    for start in 0..parent.len() {
        let mut at = start;
        let base = loop {
            if let Some(d) = depth[at] {
                break d;
            }
            chain.push(at);
            match parent[at] {
                Some(p) if chain.len() <= parent.len() => at = p,
                _ => break usize::MAX,
            }
        };
        // `usize::MAX` stands for "above the root", so the root itself gets 0.
        let mut d = base;
        while let Some(i) = chain.pop() {
            d = d.wrapping_add(1);
            depth[i] = Some(d);
        }
    }
    depth.into_iter().map(|d| d.unwrap_or(0)).collect()
}

fn tag_map(span: &Map<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    for kv in span
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = kv.get("key").and_then(Value::as_str) {
            // Repeated keys (e.g. several `db.statement`s) keep the first value here; the full
            // list stays in `tags`.
            m.entry(k.to_string())
                .or_insert_with(|| kv.get("value").cloned().unwrap_or(Value::Null));
        }
    }
    m
}

fn evomaster_run_id(span: &Map<String, Value>, tags: &Map<String, Value>) -> Option<String> {
    let pick = |k: &str, v: Option<&Value>| {
        EVOMASTER_KEYS
            .iter()
            .any(|e| k.eq_ignore_ascii_case(e))
            .then(|| v.and_then(Value::as_str).filter(|s| !s.is_empty()))
            .flatten()
            .map(str::to_string)
    };
    for (k, v) in tags {
        if let Some(r) = pick(k, Some(v)) {
            return Some(r);
        }
    }
    // Agents configured to log headers put it in span logs instead.
    for log in span
        .get("logs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for kv in log
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(k) = kv.get("key").and_then(Value::as_str) {
                if let Some(r) = pick(k, kv.get("value")) {
                    return Some(r);
                }
            }
        }
    }
    None
}

/// v2 lists carry no `BasicTrace`: build the same fields from the spans.
fn derived_summary(spans: &[Value], roots: &[String]) -> Map<String, Value> {
    let root = spans
        .iter()
        .find(|s| s.get("node_id").and_then(Value::as_str) == roots.first().map(String::as_str));
    let mut m = Map::new();
    let seg = root
        .and_then(|r| r.get("segmentId"))
        .cloned()
        .unwrap_or(Value::Null);
    let endpoints: Vec<Value> = spans
        .iter()
        .filter(|s| {
            s.get("node_id")
                .and_then(Value::as_str)
                .is_some_and(|id| roots.iter().any(|r| r == id))
        })
        .filter_map(|s| s.get("endpointName").cloned())
        .filter(|v| !v.is_null())
        .collect();
    let start = spans
        .iter()
        .filter_map(|s| s.get("startTime").and_then(Value::as_i64))
        .min();
    let end = spans
        .iter()
        .filter_map(|s| s.get("endTime").and_then(Value::as_i64))
        .max();
    m.insert("segmentId".into(), seg);
    m.insert("endpointNames".into(), Value::Array(endpoints));
    m.insert(
        "duration".into(),
        json!(match (start, end) {
            (Some(s), Some(e)) => e - s,
            _ => 0,
        }),
    );
    m.insert("start".into(), json!(start.map(|s| s.to_string())));
    m.insert(
        "isError".into(),
        json!(spans
            .iter()
            .any(|s| s.get("isError").and_then(Value::as_bool) == Some(true))),
    );
    m
}

fn int(m: &Map<String, Value>, k: &str) -> i64 {
    match m.get(k) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        // `Long` scalars may arrive as strings.
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

pub fn iso(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(seg: &str, id: i64, parent: i64, refs: &[(&str, i64)], svc: &str, start: i64) -> Value {
        json!({
            "traceId": "t1", "segmentId": seg, "spanId": id, "parentSpanId": parent,
            "refs": refs.iter().map(|(s, p)| json!({"traceId": "t1", "parentSegmentId": s, "parentSpanId": p, "type": "CROSS_PROCESS"})).collect::<Vec<_>>(),
            "serviceCode": svc, "startTime": start, "endTime": start + 10, "isError": false,
            "tags": [], "logs": []
        })
    }

    fn by_id<'a>(t: &'a Value, id: &str) -> &'a Value {
        t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["node_id"] == id)
            .unwrap()
    }

    #[test]
    fn tree_across_segments() {
        let spans = vec![
            span("B", 1, 0, &[], "svc-b", 120),
            span("A", 0, -1, &[], "svc-a", 100),
            span("A", 1, 0, &[], "svc-a", 110),
            span("B", 0, -1, &[("A", 1)], "svc-b", 115),
            span("C", 0, -1, &[("B", 1)], "svc-c", 125),
        ];
        let t = enrich(
            "t1",
            Some(&json!({"segmentId": "A", "traceIds": ["t1"]})),
            spans,
        );
        assert_eq!(t["span_count"], 5);
        assert_eq!(t["services_involved"], json!(["svc-a", "svc-b", "svc-c"]));
        assert_eq!(t["root_span_node_ids"], json!(["A:0"]));
        assert_eq!(by_id(&t, "A:0")["depth"], 0);
        assert_eq!(by_id(&t, "A:0")["parent_node_id"], Value::Null);
        assert_eq!(by_id(&t, "A:0")["children_node_ids"], json!(["A:1"]));
        assert_eq!(by_id(&t, "A:1")["children_node_ids"], json!(["B:0"]));
        assert_eq!(by_id(&t, "B:0")["parent_node_id"], "A:1");
        assert_eq!(by_id(&t, "B:0")["depth"], 2);
        assert_eq!(by_id(&t, "B:1")["parent_node_id"], "B:0");
        assert_eq!(by_id(&t, "C:0")["depth"], 4);
        assert_eq!(by_id(&t, "C:0")["start_time"], "1970-01-01T00:00:00.125Z");
        assert_eq!(by_id(&t, "C:0")["duration_ms"], 10);
        assert_eq!(t["summary"]["trace_id"], "t1");
        assert_eq!(t["summary"]["duration_ms"], 35);
        assert_eq!(t["summary"]["segment_count"], 3);
        // Sorted by start time.
        let order: Vec<&str> = t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["node_id"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["A:0", "A:1", "B:0", "B:1", "C:0"]);
    }

    #[test]
    fn missing_parents_become_flagged_roots() {
        let spans = vec![
            span("A", 0, -1, &[], "a", 1),
            span("B", 0, -1, &[("GONE", 3)], "b", 2),
            span("B", 1, 0, &[], "b", 3),
        ];
        let t = enrich("t1", None, spans);
        assert_eq!(t["root_span_node_ids"], json!(["A:0", "B:0"]));
        let b0 = by_id(&t, "B:0");
        assert_eq!(b0["parent_node_id"], "GONE:3");
        assert_eq!(b0["parent_missing"], true);
        assert_eq!(b0["depth"], 0);
        assert_eq!(by_id(&t, "B:1")["depth"], 1);
        assert_eq!(t["summary"]["segmentId"], "A");
    }

    #[test]
    fn cycles_are_cut_not_looped() {
        // X:0 -> Y:0 -> X:0 via refs, and a self-parented span.
        let spans = vec![
            span("X", 0, -1, &[("Y", 0)], "x", 1),
            span("Y", 0, -1, &[("X", 0)], "y", 2),
            span("Y", 1, 0, &[], "y", 3),
            span("S", 4, 4, &[], "s", 4),
        ];
        let t = enrich("t1", None, spans);
        let cut: Vec<&Value> = t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["parent_cycle"] == true)
            .collect();
        assert_eq!(cut.len(), 2, "{t:#}");
        assert_eq!(t["root_span_node_ids"], json!(["X:0", "S:4"]));
        assert_eq!(by_id(&t, "Y:0")["depth"], 1);
        assert_eq!(by_id(&t, "Y:1")["depth"], 2);
        assert_eq!(by_id(&t, "S:4")["depth"], 0);
        assert_eq!(by_id(&t, "S:4")["children_node_ids"], json!([]));
    }

    #[test]
    fn deep_chains_do_not_recurse() {
        let spans: Vec<Value> = (0..20_000)
            .map(|i| span("D", i, i - 1, &[], "d", i))
            .collect();
        let t = enrich("t1", None, spans);
        assert_eq!(by_id(&t, "D:19999")["depth"], 19_999);
    }

    #[test]
    fn tags_logs_and_evomaster_run_id() {
        let mut s = span("A", 0, -1, &[], "a", 5);
        s["tags"] = json!([{"key": "http.method", "value": "GET"}, {"key": "x-evomaster-run-id", "value": "em-7"}, {"key": "http.method", "value": "POST"}]);
        let mut s2 = span("A", 1, 0, &[], "a", 6);
        s2["logs"] = json!([{"time": 6, "data": [{"key": "TT_EM_RUN_ID", "value": "em-8"}]}]);
        let t = enrich("t1", None, vec![s, s2, span("A", 1, 0, &[], "a", 6)]);
        let a0 = by_id(&t, "A:0");
        assert_eq!(
            a0["tags_map"],
            json!({"http.method": "GET", "x-evomaster-run-id": "em-7"})
        );
        assert_eq!(a0["tags"].as_array().unwrap().len(), 3);
        assert_eq!(a0["evomaster_run_id"], "em-7");
        assert_eq!(t["evomaster_run_id"], "em-7");
        assert_eq!(t["evomaster_run_ids"], json!(["em-7", "em-8"]));
        assert_eq!(t["span_count"], 2);
        assert_eq!(t["summary"]["duplicate_spans_dropped"], 1);
    }
}
