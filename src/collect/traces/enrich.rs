//! Turns the flat span list the OAP returns into the dataset's trace object: every span gets a
//! node id, its parent and children, its depth in the span tree, timings in ms and ISO UTC, a
//! tag map and the EvoMaster run id that links it to the API-response modality.
//!
//! Spans are written under the published dataset's snake_case names (`service_code`,
//! `start_timestamp_ms`, …; `refs` as the OAP sends them), which its loaders index by. They are
//! parsed into typed structs, not a JSON tree: the collector selects exactly these fields, so
//! nothing is lost, and a trace then costs a fraction of the allocations. Real traces are not always trees: segments go missing
//! (Elasticsearch caps `queryTrace` at 200 segments, agents drop data) and a buggy agent can
//! produce a cycle, so the tree is built defensively and such spans are flagged, not lost.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

/// Tag keys that carry the EvoMaster run id (checked case-insensitively).
pub const EVOMASTER_KEYS: &[&str] = &["x-evomaster-run-id", "tt_em_run_id"];

/// A span as the query protocol's `Span` type has it (the fields `query.rs` selects).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(default, deserialize_with = "nullable")]
    pub trace_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub segment_id: String,
    #[serde(default, deserialize_with = "long")]
    pub span_id: i64,
    #[serde(default = "no_parent", deserialize_with = "long")]
    pub parent_span_id: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub refs: Vec<Ref>,
    #[serde(default)]
    pub service_code: Option<String>,
    #[serde(default)]
    pub service_instance_name: Option<String>,
    #[serde(default, deserialize_with = "long")]
    pub start_time: i64,
    #[serde(default, deserialize_with = "long")]
    pub end_time: i64,
    #[serde(default)]
    pub endpoint_name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub is_error: Option<bool>,
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub tags: Vec<KeyValue>,
    #[serde(default, deserialize_with = "nullable")]
    pub logs: Vec<LogEntity>,
    /// Rare and deeply nested; kept as sent.
    #[serde(default, deserialize_with = "nullable")]
    pub attached_events: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ref {
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub parent_segment_id: String,
    #[serde(default, deserialize_with = "long")]
    pub parent_span_id: i64,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "nullable")]
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogEntity {
    #[serde(default, deserialize_with = "long")]
    pub time: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub data: Vec<KeyValue>,
}

const fn no_parent() -> i64 {
    -1
}

/// `null` reads as the type's default (GraphQL lists and strings may be null on older OAPs).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The protocol's `Long` scalar: a number, or a string on some gateways; `null` reads as 0.
fn long<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Long {
        Int(i64),
        Float(f64),
        Text(String),
    }
    match Option::<Long>::deserialize(d)? {
        None => Ok(0),
        Some(Long::Int(n)) => Ok(n),
        Some(Long::Float(f)) => Ok(f as i64),
        Some(Long::Text(s)) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a Long"))),
    }
}

/// One enriched trace, serialized, with what the collection report needs from it.
#[derive(Debug)]
pub struct Enriched {
    pub json: Vec<u8>,
    pub span_count: usize,
    pub services: Vec<String>,
}

/// Builds and serializes the trace object. `summary` is the list entry the trace was found
/// by (a v1 `BasicTrace`), or `None` to derive one from the spans (v2).
pub fn enrich(trace_id: &str, summary: Option<&Value>, spans: Vec<Span>) -> Enriched {
    let (spans, duplicates) = sorted_unique(spans);
    let tree = Tree::build(&spans);
    let (out, totals) = out_spans(&spans, &tree);
    let summary = trace_summary(trace_id, summary, &out, &totals, duplicates);
    let trace = OutTrace {
        trace_id,
        summary,
        span_count: out.len(),
        services_involved: &totals.services,
        root_span_node_ids: &totals.roots,
        evomaster_run_id: totals.run_ids.first().copied(),
        evomaster_run_ids: (totals.run_ids.len() > 1).then_some(totals.run_ids.as_slice()),
        spans: &out,
    };
    // Serializing plain structs and string-keyed maps cannot fail.
    let json = serde_json::to_vec(&trace).unwrap_or_default();
    Enriched {
        json,
        span_count: out.len(),
        services: totals.services.iter().map(|s| s.to_string()).collect(),
    }
}

/// Spans in start order, and how many repeated copies were dropped: the same segment
/// returned twice (it happens with retried OAP storage reads) would give the tree phantom
/// siblings.
fn sorted_unique(mut spans: Vec<Span>) -> (Vec<Span>, usize) {
    spans.sort_by(|a, b| {
        (a.start_time, &a.segment_id, a.span_id).cmp(&(b.start_time, &b.segment_id, b.span_id))
    });
    let mut seen = BTreeSet::new();
    let before = spans.len();
    spans.retain(|s| seen.insert((s.segment_id.clone(), s.span_id)));
    let duplicates = before - spans.len();
    (spans, duplicates)
}

/// The span forest, indexed like the spans.
struct Tree {
    ids: Vec<String>,
    /// The parent each span names, found or not.
    parent_ids: Vec<Option<String>>,
    /// The parent found among the spans (none for roots, missing parents and cut cycles).
    parent: Vec<Option<usize>>,
    cycle_cut: Vec<bool>,
    depth: Vec<usize>,
}

impl Tree {
    fn build(spans: &[Span]) -> Tree {
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
        Tree {
            ids,
            parent_ids,
            parent,
            cycle_cut,
            depth,
        }
    }

    fn children(&self) -> Vec<Vec<&str>> {
        let mut children: Vec<Vec<&str>> = vec![Vec::new(); self.ids.len()];
        for (i, p) in self.parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(&self.ids[i]);
            }
        }
        children
    }
}

/// What the trace-level fields are computed from, gathered while the spans are written.
struct Totals<'a> {
    services: BTreeSet<&'a str>,
    roots: Vec<&'a str>,
    run_ids: Vec<&'a str>,
    segments: BTreeSet<&'a str>,
    first: i64,
    last: i64,
    errors: usize,
}

impl<'a> Totals<'a> {
    fn new() -> Self {
        Totals {
            services: BTreeSet::new(),
            roots: Vec::new(),
            run_ids: Vec::new(),
            segments: BTreeSet::new(),
            first: i64::MAX,
            last: i64::MIN,
            errors: 0,
        }
    }

    fn add(&mut self, span: &'a Span, run_id: Option<&'a str>) {
        if let Some(s) = span.service_code.as_deref() {
            self.services.insert(s);
        }
        self.segments.insert(&span.segment_id);
        self.first = self.first.min(span.start_time);
        self.last = self.last.max(span.end_time);
        if span.is_error == Some(true) {
            self.errors += 1;
        }
        if let Some(r) = run_id {
            if !self.run_ids.contains(&r) {
                self.run_ids.push(r);
            }
        }
    }
}

fn out_spans<'a>(spans: &'a [Span], tree: &'a Tree) -> (Vec<OutSpan<'a>>, Totals<'a>) {
    let mut totals = Totals::new();
    let mut out = Vec::with_capacity(spans.len());
    for (i, (span, kids)) in spans.iter().zip(tree.children()).enumerate() {
        if tree.parent[i].is_none() {
            totals.roots.push(&tree.ids[i]);
        }
        let run_id = evomaster_run_id(span);
        totals.add(span, run_id);
        out.push(OutSpan {
            node_id: &tree.ids[i],
            trace_id: &span.trace_id,
            segment_id: &span.segment_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            parent_node_id: tree.parent_ids[i].as_deref(),
            depth: tree.depth[i],
            children_node_ids: kids,
            service_code: span.service_code.as_deref(),
            service_instance: span.service_instance_name.as_deref(),
            start_time_utc: iso(span.start_time),
            end_time_utc: iso(span.end_time),
            start_timestamp_ms: span.start_time,
            end_timestamp_ms: span.end_time,
            // Clock skew between hosts can put an end before its start; a negative duration
            // would break consumers that bucket or log-scale it.
            duration_ms: (span.end_time - span.start_time).max(0),
            endpoint_name: span.endpoint_name.as_deref(),
            kind: span.kind.as_deref(),
            peer: span.peer.as_deref(),
            component: span.component.as_deref(),
            layer: span.layer.as_deref(),
            is_error: span.is_error == Some(true),
            tags: &span.tags,
            tags_map: TagMap(&span.tags),
            logs: Logs(&span.logs),
            refs: &span.refs,
            attached_events: &span.attached_events,
            parent_missing: tree.parent_ids[i].is_some()
                && tree.parent[i].is_none()
                && !tree.cycle_cut[i],
            parent_cycle: tree.cycle_cut[i],
            evomaster_run_id: run_id,
        });
    }
    (out, totals)
}

/// The trace's `summary`: from the list entry where there is one, else from the spans.
fn trace_summary(
    trace_id: &str,
    listed: Option<&Value>,
    out: &[OutSpan],
    totals: &Totals,
    duplicates: usize,
) -> Map<String, Value> {
    let root = totals.roots.first().copied();
    let listed = listed.and_then(Value::as_object);
    let endpoint_names: Vec<&str> = match listed.and_then(|m| m.get("endpointNames")) {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => out
            .iter()
            .filter(|s| s.parent_node_id.is_none() || s.parent_missing || s.parent_cycle)
            .filter_map(|s| s.endpoint_name)
            .collect(),
    };
    let listed_error = listed
        .and_then(|m| m.get("isError"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (first, last) = if out.is_empty() {
        (0, 0)
    } else {
        (totals.first, totals.last)
    };
    let mut summary = Map::new();
    summary.insert("trace_id".into(), json!(trace_id));
    summary.insert("duration_ms".into(), json!((last - first).max(0)));
    summary.insert("start_time_utc".into(), json!(iso(first)));
    summary.insert("start_timestamp_ms".into(), json!(first));
    summary.insert("is_error".into(), json!(listed_error || totals.errors > 0));
    summary.insert("endpoint_names".into(), json!(endpoint_names));
    summary.insert("end_time_utc".into(), json!(iso(last)));
    summary.insert("end_timestamp_ms".into(), json!(last));
    summary.insert(
        "root_segment_id".into(),
        json!(root
            .and_then(|r| out.iter().find(|s| s.node_id == r))
            .map(|s| s.segment_id)),
    );
    summary.insert("segment_count".into(), json!(totals.segments.len()));
    summary.insert("error_span_count".into(), json!(totals.errors));
    if duplicates > 0 {
        summary.insert("duplicate_spans_dropped".into(), json!(duplicates));
    }
    summary
}

#[derive(Serialize)]
struct OutTrace<'a> {
    trace_id: &'a str,
    summary: Map<String, Value>,
    span_count: usize,
    services_involved: &'a BTreeSet<&'a str>,
    root_span_node_ids: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    evomaster_run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evomaster_run_ids: Option<&'a [&'a str]>,
    spans: &'a [OutSpan<'a>],
}

/// A span under the dataset's snake_case names (`refs` stay as SkyWalking sends them).
#[derive(Serialize)]
struct OutSpan<'a> {
    node_id: &'a str,
    trace_id: &'a str,
    segment_id: &'a str,
    span_id: i64,
    parent_span_id: i64,
    parent_node_id: Option<&'a str>,
    depth: usize,
    children_node_ids: Vec<&'a str>,
    service_code: Option<&'a str>,
    service_instance: Option<&'a str>,
    start_time_utc: Option<String>,
    end_time_utc: Option<String>,
    start_timestamp_ms: i64,
    end_timestamp_ms: i64,
    duration_ms: i64,
    endpoint_name: Option<&'a str>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    peer: Option<&'a str>,
    component: Option<&'a str>,
    layer: Option<&'a str>,
    is_error: bool,
    tags: &'a [KeyValue],
    tags_map: TagMap<'a>,
    logs: Logs<'a>,
    refs: &'a [Ref],
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    attached_events: &'a [Value],
    #[serde(skip_serializing_if = "is_false")]
    parent_missing: bool,
    #[serde(skip_serializing_if = "is_false")]
    parent_cycle: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    evomaster_run_id: Option<&'a str>,
}

/// Span logs as `{time_utc, time_ms, data: {key: value}}`.
struct Logs<'a>(&'a [LogEntity]);

impl Serialize for Logs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Log<'a> {
            time_utc: Option<String>,
            time_ms: i64,
            data: TagMap<'a>,
        }
        s.collect_seq(self.0.iter().map(|l| Log {
            time_utc: iso(l.time),
            time_ms: l.time,
            data: TagMap(&l.data),
        }))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Tags as an object. Repeated keys (e.g. several `db.statement`s) keep the first value here;
/// the full list stays in `tags`.
struct TagMap<'a>(&'a [KeyValue]);

impl Serialize for TagMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (i, kv) in self.0.iter().enumerate() {
            if self.0[..i].iter().all(|p| p.key != kv.key) {
                m.serialize_entry(&kv.key, &kv.value)?;
            }
        }
        m.end()
    }
}

/// `segmentId:spanId`.
pub fn node_id(span: &Span) -> String {
    format!("{}:{}", span.segment_id, span.span_id)
}

/// The parent inside the segment when `parentSpanId >= 0`; otherwise the first ref's span in
/// the calling segment (cross-process or cross-thread); `None` for a trace's entry span.
pub fn parent_node_id(span: &Span) -> Option<String> {
    if span.parent_span_id >= 0 {
        return Some(format!("{}:{}", span.segment_id, span.parent_span_id));
    }
    let r = span.refs.first()?;
    Some(format!("{}:{}", r.parent_segment_id, r.parent_span_id))
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

fn evomaster_run_id(span: &Span) -> Option<&str> {
    let is_key = |k: &str| EVOMASTER_KEYS.iter().any(|e| k.eq_ignore_ascii_case(e));
    fn pick<'a>(kv: &'a KeyValue, is_key: &dyn Fn(&str) -> bool) -> Option<&'a str> {
        is_key(&kv.key)
            .then_some(kv.value.as_deref())
            .flatten()
            .filter(|v| !v.is_empty())
    }
    span.tags
        .iter()
        .find_map(|kv| pick(kv, &is_key))
        // Agents configured to log headers put it in span logs instead.
        .or_else(|| {
            span.logs
                .iter()
                .flat_map(|l| &l.data)
                .find_map(|kv| pick(kv, &is_key))
        })
}

pub fn iso(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrich(trace_id: &str, summary: Option<&Value>, spans: Vec<Value>) -> Value {
        let spans = spans
            .into_iter()
            .map(|s| serde_json::from_value(s).unwrap())
            .collect();
        serde_json::from_slice(&super::enrich(trace_id, summary, spans).json).unwrap()
    }

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
        assert_eq!(
            by_id(&t, "C:0")["start_time_utc"],
            "1970-01-01T00:00:00.125Z"
        );
        assert_eq!(by_id(&t, "C:0")["service_code"], "svc-c");
        assert_eq!(by_id(&t, "C:0")["refs"][0]["parentSegmentId"], "B");
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
        assert_eq!(t["summary"]["root_segment_id"], "A");
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
        let a1 = by_id(&t, "A:1");
        assert_eq!(
            a1["logs"],
            json!([{"time_utc": "1970-01-01T00:00:00.006Z", "time_ms": 6, "data": {"TT_EM_RUN_ID": "em-8"}}])
        );
        assert_eq!(t["evomaster_run_id"], "em-7");
        assert_eq!(t["evomaster_run_ids"], json!(["em-7", "em-8"]));
        assert_eq!(t["span_count"], 2);
        assert_eq!(t["summary"]["duplicate_spans_dropped"], 1);
    }

    #[test]
    fn durations_are_never_negative_and_names_are_snake_case() {
        let mut s = span("A", 0, -1, &[], "a", 50);
        s["endTime"] = json!(40);
        let t = enrich(
            "t1",
            Some(&json!({"endpointNames": ["/x"], "isError": true})),
            vec![s],
        );
        let a0 = by_id(&t, "A:0");
        assert_eq!(a0["duration_ms"], 0);
        assert_eq!(t["summary"]["duration_ms"], 0);
        assert_eq!(t["summary"]["endpoint_names"], json!(["/x"]));
        assert_eq!(t["summary"]["is_error"], true);
        for k in a0.as_object().unwrap().keys() {
            assert!(
                !k.chars().any(|c| c.is_ascii_uppercase()),
                "camelCase key {k}"
            );
        }
    }

    #[test]
    fn lenient_about_long_strings_and_null_lists() {
        let s: Span = serde_json::from_value(json!({
            "traceId": "t", "segmentId": "S", "spanId": "2", "parentSpanId": -1, "refs": null,
            "startTime": "1000", "endTime": 1010.0, "tags": null, "logs": [{"time": "5", "data": null}],
            "serviceCode": null
        }))
        .unwrap();
        assert_eq!((s.span_id, s.start_time, s.end_time), (2, 1000, 1010));
        assert!(s.refs.is_empty() && s.tags.is_empty());
        assert_eq!(s.logs[0].time, 5);
        let t = enrich("t", None, vec![serde_json::to_value(&s).unwrap()]);
        assert_eq!(t["spans"][0]["node_id"], "S:2");
        assert_eq!(t["spans"][0]["tags_map"], json!({}));
        assert!(serde_json::from_value::<Span>(json!({"startTime": "soon"})).is_err());
    }
}
