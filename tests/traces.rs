//! `collect-traces` end to end: the real `ttplan` binary against the fake SkyWalking OAP in
//! `tests/support/skywalking.rs`, and every GraphQL document checked against the real schema.

// Only the fake: the shared `support` builder is the `cli` test binary's.
#[path = "support/skywalking.rs"]
mod skywalking;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skywalking::{self as sw, FakeSkyWalking, Mode, Options};
use ttplan::collect::traces::query::{self, DOCUMENTS};

struct Run {
    code: i32,
    stderr: String,
    manifest: Value,
    out: PathBuf,
    _dir: tempfile::TempDir,
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
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    let indented: String = fields.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        &plan,
        format!(
            "name: traces_test\nvars:\n  exp_name: tt_exp\nsteps:\n  traces:\n    kind: collect-traces\n{indented}"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ttplan"));
    cmd.arg("run")
        .arg(&plan)
        .arg("--out")
        .arg(&out)
        .env("NO_COLOR", "1");
    cmd.env_remove("SKYWALKING_URL");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let manifest_path = out.join("runs/tt_exp/experiment_manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_else(|e| panic!("no manifest ({e}); stderr:\n{stderr}"));
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr,
        manifest,
        out,
        _dir: dir,
    }
}

const WINDOW: &str = "start: \"2026-03-01T10:00:00Z\"\nend: \"2026-03-01T11:00:00Z\"";

fn ids(traces: &BTreeMap<String, Value>) -> BTreeSet<String> {
    traces.keys().cloned().collect()
}

/// The fields the OAP sent for each span, keyed by node id.
fn raw_spans(spans: &[Value]) -> BTreeMap<String, Value> {
    spans
        .iter()
        .map(|s| {
            let id = format!("{}:{}", s["segmentId"].as_str().unwrap(), s["spanId"]);
            let raw: serde_json::Map<String, Value> = s
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| {
                    k.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && !k.contains('_')
                })
                .filter(|(k, _)| !matches!(k.as_str(), "depth"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (id, Value::Object(raw))
        })
        .collect()
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
        let want = raw_spans(&fake.spans(i));
        let got = raw_spans(t["spans"].as_array().unwrap());
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

    // Pages: 57 traces + 12 second segments = 69 entries → 7 pages of 10, the last short.
    let conds = fake.stats().list_conditions.lock().unwrap().clone();
    assert_eq!(conds.len(), 7);
    for (n, c) in conds.iter().enumerate() {
        assert_eq!(
            c["paging"],
            serde_json::json!({"pageNum": n + 1, "pageSize": 10})
        );
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
    assert_eq!(out["duplicate_list_entries"], 12);
    assert_eq!(out["stop_reason"], "short page");
    assert_eq!(
        out["services"].as_array().unwrap().len(),
        sw::SERVICES.len()
    );
    let path = out["path"].as_str().unwrap();
    assert!(
        path.starts_with("trace_data/tt_exp/tt_exp_skywalking_traces_")
            && path.ends_with(".jsonl")
            && chrono::NaiveDateTime::parse_from_str(
                &path["trace_data/tt_exp/tt_exp_skywalking_traces_".len()..path.len() - 6],
                "%Y%m%d_%H%M%S"
            )
            .is_ok(),
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
    assert_eq!(root["start_time"], "2026-03-01T10:05:00.500Z");
    assert_eq!(root["duration_ms"], 20);
    assert_eq!(root["tags_map"]["http.status_code"], "200");
    // Even traces carry the EvoMaster run id on their root span; odd ones do not.
    assert!(t.get("evomaster_run_id").is_none());
    assert_eq!(traces[&sw::trace_id(4)]["evomaster_run_id"], "em-run-1");
    // Trace 0 is an error trace: error span with its logs.
    let t0 = &traces[&sw::trace_id(0)];
    assert_eq!(t0["summary"]["isError"], true);
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
    assert_eq!(t["summary"]["segmentId"], fake.spans(3)[0]["segmentId"]);
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
        err.contains("queryBasicTraces page 1 failed after 2 attempt(s)"),
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
    let bin = env!("CARGO_BIN_EXE_ttplan");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/examples/traces.yaml");
    let o = Command::new(bin)
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
    let o = Command::new(bin)
        .arg("validate")
        .arg(&toml)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("workers = 8", "worker = 8");
    std::fs::write(&toml, text).unwrap();
    let o = Command::new(bin)
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

    let o = Command::new(bin).arg("schema").output().unwrap();
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_ttplan"))
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
