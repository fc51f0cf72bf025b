//! `collect-traces` end to end: the real `ttplan` binary against the fake SkyWalking OAP in
//! `sandbox/src/skywalking.rs`, and every GraphQL document checked against the real schema.

// Only the fake: the shared `support` builder is the `cli` test binary's.
use crate::support;
use support::Test;
use ttplan_sandbox::skywalking;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use skywalking::{self as sw, FakeSkyWalking, Mode, Options};
use ttplan::collect::traces::query::{self, DOCUMENTS};

struct Run {
    code: i32,
    stderr: String,
    manifest: Value,
    out: PathBuf,
    _dir: support::Output,
}

impl Run {
    fn step(&self) -> &Value {
        &self.manifest["steps"]["traces"]
    }

    fn outputs(&self) -> &Value {
        &self.step()["outputs"]
    }

    fn file(&self) -> PathBuf {
        self.out
            .join(self.outputs()["path"].as_str().expect("path output"))
    }

    /// The traces in the output file, by id.
    fn traces(&self) -> BTreeMap<String, Value> {
        let text = std::fs::read_to_string(self.file()).unwrap();
        let list: Vec<Value> = if self.outputs()["format"] == "json" {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["traces"].as_array().unwrap().clone()
        } else {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let n = list.len();
        let map: BTreeMap<String, Value> = list
            .into_iter()
            .map(|t| (t["trace_id"].as_str().unwrap().to_string(), t))
            .collect();
        assert_eq!(map.len(), n, "a trace was written twice");
        map
    }
}

/// Runs `ttplan run` on a one-step plan whose `traces` step has `fields` (YAML lines).
fn run_plan(fields: &str, env: &[(&str, Option<&str>)]) -> Run {
    let indented: String = fields.lines().map(|l| format!("    {l}\n")).collect();
    let mut t = Test::new()
        .plan(&format!(
            "name: traces_test\nvars:\n  exp_name: tt_exp\nsteps:\n  traces:\n    kind: collect-traces\n{indented}"
        ))
        .args(["run", "plan.yaml", "--out", "out"])
        .any_status();
    for (k, v) in env {
        t = match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let o = t.run();
    let out = o.path().join("out");
    let stderr = o.stderr.clone();
    let manifest_path = out.join("runs/tt_exp/experiment_manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_else(|e| panic!("no manifest ({e}); stderr:\n{stderr}"));
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr,
        manifest,
        out,
        _dir: o,
    }
}

const WINDOW: &str = "start: \"2026-03-01T10:00:00Z\"\nend: \"2026-03-01T11:00:00Z\"";

fn ids(traces: &BTreeMap<String, Value>) -> BTreeSet<String> {
    traces.keys().cloned().collect()
}

/// The fake's span (SkyWalking's camelCase) under the dataset's names (DATASET.md, "Trace
/// file"), as the collector must write it.
fn dataset_span(s: &Value) -> Value {
    let rename = [
        ("traceId", "trace_id"),
        ("segmentId", "segment_id"),
        ("spanId", "span_id"),
        ("parentSpanId", "parent_span_id"),
        ("refs", "refs"),
        ("serviceCode", "service_code"),
        ("serviceInstanceName", "service_instance"),
        ("startTime", "start_timestamp_ms"),
        ("endTime", "end_timestamp_ms"),
        ("endpointName", "endpoint_name"),
        ("type", "type"),
        ("peer", "peer"),
        ("component", "component"),
        ("isError", "is_error"),
        ("layer", "layer"),
        ("tags", "tags"),
    ];
    let mut out = serde_json::Map::new();
    for (from, to) in rename {
        out.insert(to.into(), s[from].clone());
    }
    let logs: Vec<Value> = s["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let data: serde_json::Map<String, Value> = l["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
                .collect();
            serde_json::json!({"time_ms": l["time"], "data": data})
        })
        .collect();
    out.insert("logs".into(), logs.into());
    Value::Object(out)
}

/// Each span reduced to the fields [`dataset_span`] names (logs without `time_utc`), by node id.
fn raw_spans(spans: &[Value], from_fake: bool) -> BTreeMap<String, Value> {
    spans
        .iter()
        .map(|s| {
            let s = if from_fake {
                dataset_span(s)
            } else {
                s.clone()
            };
            let want = dataset_span_keys();
            let mut m: serde_json::Map<String, Value> = s
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| want.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(Value::Array(logs)) = m.get_mut("logs") {
                for l in logs {
                    l.as_object_mut().unwrap().remove("time_utc");
                }
            }
            let id = format!("{}:{}", m["segment_id"].as_str().unwrap(), m["span_id"]);
            (id, Value::Object(m))
        })
        .collect()
}

fn dataset_span_keys() -> Vec<&'static str> {
    vec![
        "trace_id",
        "segment_id",
        "span_id",
        "parent_span_id",
        "refs",
        "service_code",
        "service_instance",
        "start_timestamp_ms",
        "end_timestamp_ms",
        "endpoint_name",
        "type",
        "peer",
        "component",
        "is_error",
        "layer",
        "tags",
        "logs",
    ]
}

/// Every trace the fake holds in the window was written, with exactly the fake's spans.
fn assert_complete(run: &Run, fake: &FakeSkyWalking) {
    let traces = run.traces();
    assert_eq!(
        ids(&traces),
        fake.window_ids(),
        "trace ids differ; stderr:\n{}",
        run.stderr
    );
    for i in 0..fake.opts().traces {
        let t = &traces[&sw::trace_id(i)];
        let want = raw_spans(&fake.spans(i), true);
        let got = raw_spans(t["spans"].as_array().unwrap(), false);
        assert_eq!(got, want, "spans of trace {i}");
        assert_eq!(t["span_count"].as_u64().unwrap() as usize, want.len());
    }
}

#[test]
fn every_document_is_valid_against_the_real_schema() {
    let Some(dir) = sw::fixtures_dir() else {
        return;
    };
    let v1 = sw::load_schema(&dir, false);
    let v2 = sw::load_schema(&dir, true);
    assert_eq!(DOCUMENTS.len(), 5);
    for (name, doc) in DOCUMENTS {
        let on_v2 = sw::validate(&v2, doc);
        assert!(
            on_v2.is_ok(),
            "{name} is invalid on a 10.3 schema: {on_v2:?}\n{doc}"
        );
        let on_v1 = sw::validate(&v1, doc);
        match *name {
            // v2-only documents are sent only after the probe said yes; on an older OAP the
            // probe itself must fail as "field undefined", which is what selects v1.
            "PROBE_V2" | "TRACES_V2" => {
                let errs = on_v1.expect_err(name);
                assert!(
                    errs.iter().any(|e| e.contains("FieldUndefined")),
                    "{errs:?}"
                );
            }
            _ => assert!(
                on_v1.is_ok(),
                "{name} is invalid on the fixture schema: {on_v1:?}\n{doc}"
            ),
        }
    }
    // The validator is not vacuous: `total` (removed in 9.1) is rejected.
    let with_total = query::BASIC_TRACES.replace("traces {", "total traces {");
    assert!(sw::validate(&v1, &with_total).is_err());
}

#[test]
fn v1_collects_every_trace_with_an_exact_span_tree() {
    let Some(schema_dir) = sw::fixtures_dir() else {
        return;
    };
    let fake = FakeSkyWalking::start(Options {
        traces: 57,
        schema_dir: Some(schema_dir),
        ..Options::default()
    });
    let run = run_plan(
        &format!(
            "endpoint: {}\n{WINDOW}\npage_size: 10\nworkers: 8",
            fake.url()
        ),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_complete(&run, &fake);

    // Only the v2 probe was rejected (an old OAP does not know the field).
    let rejected = fake.rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].0.contains("hasQueryTracesV2Support"));

    // One row per segment; page 1 is full, so the last page the result window allows
    // (10,000 / 10) is asked next, then pages 2.. until the first short one.
    let rows = fake.rows(false).iter().filter(|r| r.trace < 57).count();
    let conds = fake.stats().list_conditions.lock().unwrap().clone();
    let asked: BTreeSet<u64> = conds
        .iter()
        .map(|c| c["paging"]["pageNum"].as_u64().unwrap())
        .collect();
    let needed = rows as u64 / 10 + 1;
    assert!(asked.contains(&1000), "{asked:?}");
    assert!((1..=needed).all(|n| asked.contains(&n)), "{asked:?}");
    // Pages past the short one may already be in flight (up to 3), never more.
    assert!(
        asked.iter().all(|n| *n <= needed + 3 || *n == 1000),
        "{asked:?}"
    );
    for c in &conds {
        assert_eq!(c["paging"]["pageSize"], 10);
        assert_eq!(
            c["queryDuration"],
            serde_json::json!({"start": "2026-03-01 1000", "end": "2026-03-01 1059", "step": "MINUTE"})
        );
        assert_eq!(c["traceState"], "ALL");
        assert_eq!(c["queryOrder"], "BY_START_TIME");
    }
    assert_eq!(
        fake.stats()
            .detail_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        57
    );

    let out = run.outputs();
    assert_eq!(out["protocol"], "v1");
    assert_eq!(out["endpoint"], fake.url());
    assert_eq!(out["endpoint_source"], "plan");
    assert_eq!(out["timezone"], "+00:00");
    assert_eq!(out["traces"], 57);
    assert_eq!(out["failed"], 0);
    assert_eq!(out["duplicate_list_entries"], rows as u64 - 57);
    assert_eq!(out["stop_reason"], "every slice listed to a short page");
    assert_eq!(out["slices"], 1);
    assert_eq!(
        out["services"].as_array().unwrap().len(),
        sw::SERVICES.len()
    );
    let path = out["path"].as_str().unwrap();
    assert!(
        path.starts_with("trace_data/tt_exp/tt_exp_skywalking_traces_") && path.ends_with(".json"),
        "{path}"
    );
    // `_%Y%m%d_%H%M%S`, as the published dataset names its files.
    let ts = &path["trace_data/tt_exp/tt_exp_skywalking_traces_".len()..path.len() - 5];
    assert!(
        chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%d_%H%M%S").is_ok(),
        "{path}"
    );
    let artifacts = run.step()["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1);
    assert_eq!(artifacts[0]["path"], path);

    // Trace 1: three segments; segments 1 and 2 are both called from segment 0's exit span.
    let traces = run.traces();
    let t = &traces[&sw::trace_id(1)];
    let spans: BTreeMap<String, &Value> = t["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["node_id"].as_str().unwrap().to_string(), s))
        .collect();
    let seg: Vec<String> = fake
        .spans(1)
        .iter()
        .map(|s| s["segmentId"].as_str().unwrap().to_string())
        .collect();
    let (s0, s1, s2) = (&seg[0], &seg[5], &seg[10]);
    let n = |s: &str, j: u32| format!("{s}:{j}");
    let expect = [
        (n(s0, 0), Value::Null, 0, vec![n(s0, 1), n(s0, 2)]),
        (n(s0, 1), n(s0, 0).into(), 1, vec![n(s0, 3), n(s0, 4)]),
        (n(s0, 2), n(s0, 0).into(), 1, vec![]),
        (n(s0, 4), n(s0, 1).into(), 2, vec![n(s1, 0), n(s2, 0)]),
        (n(s1, 0), n(s0, 4).into(), 3, vec![n(s1, 1), n(s1, 2)]),
        (n(s1, 4), n(s1, 1).into(), 5, vec![]),
        (n(s2, 0), n(s0, 4).into(), 3, vec![n(s2, 1), n(s2, 2)]),
    ];
    for (id, parent, depth, children) in expect {
        let s = spans[&id];
        assert_eq!(s["parent_node_id"], parent, "{id}");
        assert_eq!(s["depth"], depth, "{id}");
        assert_eq!(s["children_node_ids"], serde_json::json!(children), "{id}");
    }
    assert_eq!(t["root_span_node_ids"], serde_json::json!([n(s0, 0)]));
    assert_eq!(t["span_count"], 15);
    let root = spans[&n(s0, 0)];
    assert_eq!(root["start_time_utc"], "2026-03-01T10:05:00.500Z");
    let fake_root = &fake.spans(1)[0];
    assert_eq!(
        root["duration_ms"],
        fake_root["endTime"].as_i64().unwrap() - fake_root["startTime"].as_i64().unwrap()
    );
    assert_eq!(root["tags_map"]["http.status_code"], "200");
    // Even traces carry the EvoMaster run id on their root span; odd ones do not.
    assert!(t.get("evomaster_run_id").is_none());
    assert_eq!(traces[&sw::trace_id(4)]["evomaster_run_id"], "em-run-1");
    // Trace 0 is an error trace: error span with its logs.
    let t0 = &traces[&sw::trace_id(0)];
    assert_eq!(t0["summary"]["is_error"], true);
    assert_eq!(t0["summary"]["error_span_count"], 1);
    assert_eq!(t0["summary"]["trace_id"], sw::trace_id(0));
}

#[test]
fn faults_are_retried_and_lost_traces_reported() {
    let fake = FakeSkyWalking::start(Options {
        traces: 40,
        transient_every: 3,
        transient_attempts: 2,
        permanent: vec![4],
        hang: Duration::from_secs(2),
        list_fault: true,
        schema_dir: sw::fixtures_dir(),
        ..Options::default()
    });
    let run = run_plan(
        &format!(
            "endpoint: {}/\n{WINDOW}\npage_size: 10\nworkers: 6\nrequest_timeout: 400ms\nrequest_backoff: 10ms\nrequest_retries: 3\nmax_failed_fraction: 0.1",
            fake.url()
        ),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let injected = fake
        .stats()
        .faults_injected
        .load(std::sync::atomic::Ordering::Relaxed);
    // 14 traces × 2 transient faults + the list page + trace 4's 4 attempts.
    assert_eq!(injected, 14 * 2 + 1 + 4);
    let traces = run.traces();
    let mut want = fake.window_ids();
    want.remove(&sw::trace_id(4));
    assert_eq!(ids(&traces), want);
    let failed = run.outputs()["failed_traces"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["trace_id"], sw::trace_id(4));
    assert_eq!(failed[0]["attempts"], 4);
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("HTTP 500"),
        "{failed:?}"
    );
    assert_eq!(run.outputs()["failed"], 1);
    assert_eq!(run.outputs()["traces_listed"], 40);
}

#[test]
fn too_many_failures_fail_the_step_naming_the_traces() {
    let fake = FakeSkyWalking::start(Options {
        traces: 10,
        permanent: vec![2, 7],
        schema_dir: sw::fixtures_dir(),
        ..Options::default()
    });
    let run = run_plan(
        &format!("{WINDOW}\nrequest_backoff: 1ms\nrequest_retries: 1\nmax_failed_fraction: 0.1"),
        &[("SKYWALKING_URL", Some(&fake.url()))],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let err = run.step()["error"].as_str().unwrap();
    assert!(err.contains("2 of 10 traces could not be fetched"), "{err}");
    assert!(
        err.contains(&sw::trace_id(2)) && err.contains(&sw::trace_id(7)),
        "{err}"
    );
}

#[test]
fn v2_json_format_in_the_oap_timezone() {
    let Some(schema_dir) = sw::fixtures_dir() else {
        return;
    };
    let fake = FakeSkyWalking::start(Options {
        traces: 33,
        mode: Mode::V2,
        latency: Duration::from_millis(30),
        tz: chrono::FixedOffset::east_opt(8 * 3600).unwrap(),
        schema_dir: Some(schema_dir),
        ..Options::default()
    });
    let run = run_plan(
        &format!("{WINDOW}\nformat: json\ntimezone: \"+08:00\"\npage_size: 10"),
        &[("SKYWALKING_URL", Some(&fake.url()))],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    assert_complete(&run, &fake);
    assert_eq!(
        fake.stats()
            .detail_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // v2 pages by offset, statelessly: pages 2.. were requested together.
    assert!(
        fake.stats()
            .max_concurrent_lists
            .load(std::sync::atomic::Ordering::SeqCst)
            > 1
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(run.file()).unwrap()).unwrap();
    let meta = &doc["metadata"];
    assert_eq!(meta["protocol"], "v2");
    assert_eq!(meta["timezone"], "+08:00");
    assert_eq!(meta["traces_written"], 33);
    assert_eq!(meta["window"]["query_duration"]["start"], "2026-03-01 1800");
    assert_eq!(run.outputs()["endpoint_source"], "env SKYWALKING_URL");
    assert!(run.file().extension().is_some_and(|e| e == "json"));
    // v2 derives the summary from the spans.
    let traces = run.traces();
    let t = &traces[&sw::trace_id(3)];
    assert_eq!(
        t["summary"]["root_segment_id"],
        fake.spans(3)[0]["segmentId"]
    );
}

#[test]
fn timezone_auto_hour_step_and_size_limit() {
    let fake = FakeSkyWalking::start(Options {
        traces: 30,
        mode: Mode::V1False,
        tz: chrono::FixedOffset::west_opt(5 * 3600 + 1800).unwrap(),
        schema_dir: sw::fixtures_dir(),
        ..Options::default()
    });
    let run = run_plan(
        &format!(
            "endpoint: {}\n{WINDOW}\ntimezone: auto\nstep: HOUR\nsize: 12\npage_size: 5\npath: traces/out.jsonl",
            fake.url()
        ),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.outputs();
    assert_eq!(out["protocol"], "v1");
    assert_eq!(out["timezone"], "-05:30");
    assert_eq!(out["timezone_source"], "oap getTimeInfo");
    assert_eq!(out["stop_reason"], "size reached");
    assert_eq!(out["path"], "traces/out.jsonl");
    assert_eq!(
        out["window"]["query_duration"],
        serde_json::json!({"start": "2026-03-01 04", "end": "2026-03-01 05", "step": "HOUR"})
    );
    // Newest first: the 12 latest traces.
    let want: BTreeSet<String> = (18..30).map(sw::trace_id).collect();
    assert_eq!(ids(&run.traces()), want);
}

/// Whether listing `rows` (trace index per row) in pages of `page` rows meets a full page whose
/// traces were all seen on earlier pages: where a pager that stops there loses traces.
fn has_full_page_without_new_traces(rows: &[usize], page: usize) -> bool {
    let mut seen = BTreeSet::new();
    rows.chunks(page).any(|chunk| {
        let new = chunk.iter().filter(|t| seen.insert(**t)).count();
        chunk.len() == page && new == 0
    })
}

fn listed_rows(fake: &FakeSkyWalking, by_duration: bool) -> Vec<usize> {
    let n = fake.opts().traces;
    fake.rows(by_duration)
        .iter()
        .map(|r| r.trace)
        .filter(|t| *t < n)
        .collect()
}

#[test]
fn by_duration_with_the_default_page_lists_every_trace() {
    let fake = FakeSkyWalking::start(Options {
        traces: 1024,
        fan_out_every: 256,
        // One span per segment: these cases are about listing, not span trees.
        spans_per_segment: 1,
        fan_out_segments: 60,
        schema_dir: sw::fixtures_dir(),
        ..Options::default()
    });
    // The scenario is real: ordered by duration, the fan-out traces' segments fill whole
    // pages after the first.
    assert!(has_full_page_without_new_traces(
        &listed_rows(&fake, true),
        100
    ));
    let run = run_plan(
        &format!(
            "endpoint: {}
{WINDOW}
query_order: BY_DURATION",
            fake.url()
        ),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_complete(&run, &fake);
    let out = run.outputs();
    assert_eq!(out["traces_listed"], 1024);
    assert_eq!(out["available_total"], 1024);
    assert_eq!(out["collected_traces"], 1024);
    let conds = fake.stats().list_conditions.lock().unwrap().clone();
    assert!(conds.iter().all(|c| c["queryOrder"] == "BY_DURATION"));
}

#[test]
fn small_pages_list_every_trace_in_both_formats() {
    for (page, format) in [(5, "jsonl"), (2, "json")] {
        let fake = FakeSkyWalking::start(Options {
            traces: 1000,
            fan_out_every: 100,
            // One span per segment: these cases are about listing, not span trees.
            spans_per_segment: 1,
            fan_out_segments: 12,
            ..Options::default()
        });
        assert!(has_full_page_without_new_traces(
            &listed_rows(&fake, false),
            page
        ));
        let run = run_plan(
            &format!(
                "endpoint: {}
{WINDOW}
page_size: {page}
format: {format}",
                fake.url()
            ),
            &[],
        );
        assert_eq!(run.code, 0, "page_size {page}: {}", run.stderr);
        assert_eq!(ids(&run.traces()), fake.window_ids(), "page_size {page}");
        assert_eq!(run.outputs()["traces_listed"], 1000);
        assert_eq!(run.outputs()["format"], format);
    }
}

#[test]
fn a_window_past_the_result_window_is_listed_in_slices() {
    // A campaign-sized window: 5,000 traces, ~18,600 segment rows, Elasticsearch's default
    // result window of 10,000 rows.
    let fake = FakeSkyWalking::start(Options {
        traces: 5000,
        fan_out_every: 500,
        // One span per segment: these cases are about listing, not span trees.
        spans_per_segment: 1,
        fan_out_segments: 120,
        result_window: Some(10_000),
        ..Options::default()
    });
    let rows = listed_rows(&fake, false).len();
    assert!((18_000..19_500).contains(&rows), "{rows} rows");
    let run = run_plan(
        &format!(
            "endpoint: {}
{WINDOW}
workers: 32",
            fake.url()
        ),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ids(&run.traces()), fake.window_ids());
    let out = run.outputs();
    assert_eq!(out["traces_listed"], 5000);
    assert!(out["slices"].as_u64().unwrap() >= 3, "{}", out["slices"]);
    // Split before paging past the window: the OAP never had to refuse a page.
    assert_eq!(
        fake.stats()
            .window_refusals
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Slices are second-granular `Duration`s inside the window; no page passes 10,000 rows.
    let conds = fake.stats().list_conditions.lock().unwrap().clone();
    for c in &conds {
        let p = &c["paging"];
        assert!(p["pageNum"].as_u64().unwrap() * p["pageSize"].as_u64().unwrap() <= 10_000);
    }
    assert!(conds.iter().any(|c| c["queryDuration"]["step"] == "SECOND"));
}

#[test]
fn a_smaller_result_window_than_configured_is_learnt_from_the_oap_error() {
    // The plan believes 10,000; this OAP refuses past 1,000 with Elasticsearch's error. Ordered
    // by duration, slices split by latency (longest first), then by time.
    for order in ["BY_START_TIME", "BY_DURATION"] {
        let fake = FakeSkyWalking::start(Options {
            traces: 1200,
            fan_out_every: 300,
            // One span per segment: these cases are about listing, not span trees.
            spans_per_segment: 1,
            fan_out_segments: 30,
            result_window: Some(1000),
            schema_dir: sw::fixtures_dir(),
            ..Options::default()
        });
        let run = run_plan(
            &format!(
                "endpoint: {}
{WINDOW}
query_order: {order}
request_backoff: 1ms",
                fake.url()
            ),
            &[],
        );
        assert_eq!(run.code, 0, "{order}: {}", run.stderr);
        assert_eq!(ids(&run.traces()), fake.window_ids(), "{order}");
        let refusals = fake
            .stats()
            .window_refusals
            .load(std::sync::atomic::Ordering::Relaxed);
        // Refused once, then the learnt window is respected (a refusal is not retried).
        assert_eq!(refusals, 1, "{order}");
        if order == "BY_DURATION" {
            let conds = fake.stats().list_conditions.lock().unwrap().clone();
            assert!(conds.iter().any(|c| c.get("maxTraceDuration").is_some()));
        }
    }
}

#[test]
fn a_forced_loss_lists_every_lost_id_in_every_format() {
    let lost: Vec<usize> = (0..60).step_by(4).collect(); // 15 of 60
    for format in ["json", "jsonl"] {
        let fake = FakeSkyWalking::start(Options {
            traces: 60,
            permanent: lost.clone(),
            ..Options::default()
        });
        let run = run_plan(
            &format!(
                "endpoint: {}
{WINDOW}
format: {format}
request_backoff: 1ms
request_retries: 1
max_failed_fraction: 0.1",
                fake.url()
            ),
            &[],
        );
        assert_eq!(run.code, 1, "{format}: {}", run.stderr);
        let want: BTreeSet<String> = lost.iter().map(|i| sw::trace_id(*i)).collect();
        // The error abbreviates …
        let err = run.step()["error"].as_str().unwrap();
        assert!(
            err.contains("15 of 60 traces could not be fetched"),
            "{err}"
        );
        assert!(err.contains("and 5 more"), "{err}");
        // … the outputs do not.
        let out = run.outputs();
        let listed: BTreeSet<String> = out["failed_traces"]
            .as_array()
            .unwrap_or_else(|| panic!("{format}: no failed_traces in {out}"))
            .iter()
            .map(|f| {
                assert!(f["reason"].as_str().unwrap().contains("HTTP 500"), "{f}");
                f["trace_id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(listed, want, "{format}");
        // Nor does the file beside the data.
        let rel = out["failed_traces_path"].as_str().unwrap();
        assert!(
            rel.starts_with("trace_data/tt_exp/tt_exp_skywalking_failed_traces_")
                && rel.ends_with(".jsonl"),
            "{rel}"
        );
        assert!(err.contains(rel), "{err}");
        let text = std::fs::read_to_string(run.out.join(rel)).unwrap();
        let in_file: BTreeSet<String> = text
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert!(v["reason"].as_str().unwrap().contains("HTTP 500"), "{v}");
                assert_eq!(v["attempts"], 2);
                v["trace_id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(in_file, want, "{format}");
        // The traces that were fetched are in the data file.
        let mut rest = fake.window_ids();
        rest.retain(|id| !want.contains(id));
        assert_eq!(ids(&run.traces()), rest, "{format}");
    }
}

#[test]
fn the_trace_file_is_the_published_document() {
    let Some(schema_dir) = sw::fixtures_dir() else {
        return;
    };
    let fake = FakeSkyWalking::start(Options {
        traces: 12,
        schema_dir: Some(schema_dir),
        ..Options::default()
    });
    let run = run_plan(
        &format!(
            "endpoint: {}
{WINDOW}
size: 500
min_trace_duration: 1",
            fake.url()
        ),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(run.file()).unwrap()).unwrap();
    let meta = &doc["metadata"];
    for k in [
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
    ] {
        assert!(meta.get(k).is_some(), "metadata lacks {k}: {meta}");
    }
    assert!(meta["generated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(meta["lookback_hours"], 1.0);
    assert_eq!(meta["requested_trace_limit"], 500);
    assert_eq!(meta["min_trace_duration_ms"], 1);
    assert_eq!(meta["collected_traces"], 12);
    assert_eq!(meta["experiment_name"], "tt_exp");
    assert_eq!(
        meta["skywalking_graphql"],
        format!("{}/graphql", fake.url())
    );
    let services: Vec<&str> = meta["services_discovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut sorted = services.clone();
    sorted.sort_unstable();
    assert_eq!(services, sorted);

    let t = &doc["traces"][0];
    for k in [
        "summary",
        "span_count",
        "services_involved",
        "root_span_node_ids",
        "spans",
    ] {
        assert!(t.get(k).is_some(), "trace lacks {k}");
    }
    for k in [
        "trace_id",
        "duration_ms",
        "start_time_utc",
        "start_timestamp_ms",
        "is_error",
        "endpoint_names",
    ] {
        assert!(t["summary"].get(k).is_some(), "summary lacks {k}");
    }
    for span in t["spans"].as_array().unwrap() {
        for k in [
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
        ] {
            assert!(span.get(k).is_some(), "span lacks {k}: {span}");
        }
        // No camelCase leftovers in the span record (refs stay as SkyWalking returns them).
        for k in span.as_object().unwrap().keys() {
            assert!(!k.chars().any(|c| c.is_ascii_uppercase()), "{k}");
        }
        assert!(span["duration_ms"].as_i64().unwrap() >= 0);
        assert!(span["start_time_utc"].as_str().unwrap().ends_with('Z'));
        for l in span["logs"].as_array().unwrap() {
            assert!(l["time_utc"].as_str().unwrap().ends_with('Z'));
            assert!(l["time_ms"].is_i64() && l["data"].is_object(), "{l}");
        }
        for r in span["refs"].as_array().unwrap() {
            assert!(r.get("parentSegmentId").is_some(), "{r}");
        }
    }
}

#[test]
fn no_endpoint_is_a_clear_error() {
    let run = run_plan(WINDOW, &[("SKYWALKING_URL", None)]);
    assert_eq!(run.code, 1);
    let err = run.step()["error"].as_str().unwrap();
    // Then why discovery in the cluster could not help (here: no cluster configured).
    assert!(
        err.starts_with("no SkyWalking endpoint: set `endpoint:` or SKYWALKING_URL ("),
        "{err}"
    );
}

#[test]
fn unreachable_endpoint_fails_with_the_url() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = run_plan(
        &format!("endpoint: http://127.0.0.1:{port}\n{WINDOW}\nrequest_retries: 1\nrequest_backoff: 1ms\nprotocol: v1"),
        &[],
    );
    assert_eq!(run.code, 1);
    let err = run.step()["error"].as_str().unwrap();
    assert!(
        err.contains(
            "queryBasicTraces page 1 of [2026-03-01 1000 .. 2026-03-01 1059] failed after 2 attempt(s)"
        ),
        "{err}"
    );
    assert!(err.contains(&format!("127.0.0.1:{port}/graphql")), "{err}");
    assert!(
        !Path::new(&run.out.join("trace_data")).exists()
            || std::fs::read_dir(run.out.join("trace_data/tt_exp"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0
    );
}

#[test]
fn example_plan_validates_and_the_kind_parses_from_toml() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/examples/traces.yaml");
    let o = support::ttplan()
        .arg("validate")
        .arg(&example)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("plan.toml");
    std::fs::write(
        &toml,
        "name = \"traces_toml\"\n[steps.traces]\nkind = \"collect-traces\"\nendpoint = \"http://oap:12800\"\n\
         timezone = \"+08:00\"\nstep = \"SECOND\"\nsize = 100\nworkers = 8\nformat = \"json\"\nmax_failed_fraction = 0.0\n",
    )
    .unwrap();
    let o = support::ttplan()
        .arg("validate")
        .arg(&toml)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("workers = 8", "worker = 8");
    std::fs::write(&toml, text).unwrap();
    let o = support::ttplan()
        .arg("validate")
        .arg(&toml)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("worker") && err.contains("plan.toml:"),
        "{err}"
    );

    let o = support::ttplan().arg("schema").output().unwrap();
    let schema = String::from_utf8_lossy(&o.stdout);
    assert!(schema.contains("collect-traces") && schema.contains("max_failed_fraction"));
}

#[test]
fn interrupted_collection_leaves_no_partial_file() {
    let fake = FakeSkyWalking::start(Options {
        traces: 200,
        latency: Duration::from_millis(200),
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "name: t\nvars:\n  exp_name: tt_exp\nsteps:\n  traces:\n    kind: collect-traces\n    endpoint: {}\n    start: \"2026-03-01T10:00:00Z\"\n    end: \"2026-03-01T11:00:00Z\"\n    workers: 2\n",
            fake.url()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut child = support::ttplan()
        .arg("run")
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fake
        .stats()
        .detail_requests
        .load(std::sync::atomic::Ordering::Relaxed)
        < 4
    {
        assert!(std::time::Instant::now() < deadline, "no trace was fetched");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "ttplan did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    // 200 traces at 2 workers × 200 ms would take 20 s: the run stopped mid-collection.
    assert!(
        fake.stats()
            .detail_requests
            .load(std::sync::atomic::Ordering::Relaxed)
            < 100
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.join("trace_data/tt_exp"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs/tt_exp/experiment_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_ne!(manifest["steps"]["traces"]["status"], "succeeded");
}

#[test]
fn default_window_is_run_start_minus_padding_until_the_step_starts() {
    let fake = FakeSkyWalking::start(Options {
        traces: 20,
        base: chrono::Utc::now() - chrono::Duration::seconds(20),
        spacing_ms: 100,
        ..Options::default()
    });
    let run = run_plan(&format!("endpoint: {}\npadding: 2m", fake.url()), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ids(&run.traces()), fake.window_ids());
    let started: chrono::DateTime<chrono::Utc> = run.manifest["run"]["started_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let window = &run.outputs()["window"];
    let want_start = started - chrono::Duration::seconds(120);
    assert_eq!(
        window["start"],
        want_start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    assert_eq!(
        window["query_duration"]["start"],
        want_start.format("%Y-%m-%d %H%M").to_string()
    );
    let end: chrono::DateTime<chrono::Utc> = window["end"].as_str().unwrap().parse().unwrap();
    let step_started: chrono::DateTime<chrono::Utc> =
        run.step()["started_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (end - step_started).num_milliseconds().abs() < 1000,
        "{end} vs {step_started}"
    );
}
