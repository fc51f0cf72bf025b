//! `probe` steps and the steady-state hypothesis, run by the real `ttplan` binary against an
//! HTTP stub (a service that a fault breaks and a recovery mends — or does not), the real
//! Prometheus of the metrics tests, and the fake Kubernetes API server.

use crate::support;
use ttplan_sandbox::kube_fake;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use kube_fake::{ContainerSeed, FakeKube, PodSeed};
use serde_json::Value;
use support::prometheus::{openmetrics, Family, Prometheus, Series};
use support::Test;

/// When a request was served, what it was (`GET /health`), the status answered.
type Served = (DateTime<Utc>, String, u16);

/// A service with one health endpoint: `POST /break` makes `GET /health` answer 503,
/// `POST /fix` 200 again. Every request is logged with the status served and when.
struct Stub {
    url: String,
    log: Arc<Mutex<Vec<Served>>>,
}

impl Stub {
    fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let health = Arc::new(AtomicU16::new(200));
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Skip the headers; these requests have no body.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut parts = request_line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let status = match (method, path) {
                    ("POST", "/break") => {
                        health.store(503, Ordering::SeqCst);
                        204
                    }
                    ("POST", "/fix") => {
                        health.store(200, Ordering::SeqCst);
                        204
                    }
                    ("GET", "/health") => health.load(Ordering::SeqCst),
                    _ => 404,
                };
                log2.lock()
                    .unwrap()
                    .push((Utc::now(), format!("{method} {path}"), status));
                let body = if status == 200 {
                    "{\"status\":\"UP\"}"
                } else {
                    ""
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Stub { url, log }
    }

    fn log(&self) -> Vec<Served> {
        self.log.lock().unwrap().clone()
    }
}

/// A command that POSTs to a URL (the fault and its recovery, as shell steps).
fn post(url: &str) -> String {
    format!(
        "[\"python3\", \"-c\", \"import urllib.request as u; u.urlopen(u.Request('{url}', method='POST'))\"]"
    )
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

fn labels(out: &support::Output) -> Vec<Value> {
    serde_json::from_str::<Value>(&out.read("out/runs/t/fault_labels.json"))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

/// A continuous probe watches the service for the whole fault window, from the injection
/// until the recover step starts; it verifies the fault, and the hypothesis holds before the
/// fault and after the recovery.
#[test]
fn continuous_probe_spans_the_fault_window_and_verifies_the_fault() {
    let stub = Stub::start();
    let plan = format!(
        r#"
name: t
hypothesis:
  gateway: {{ type: http, url: "{url}/health", json_pointer: /status, equals: UP }}
steps:
  inject:
    kind: shell
    run: {brk}
    recover: {fix}
  during:
    kind: probe
    after: [inject]
    verifies: inject
    type: http
    url: "{url}/health"
    status: [503]
    mode: continuous
    interval: 100ms
    until: recover
  hold: {{ kind: sleep, after: [inject], duration: 1500ms }}
  recover: {{ kind: recover, faults: [inject], after: [hold] }}
"#,
        url = stub.url,
        brk = post(&format!("{}/break", stub.url)),
        fix = post(&format!("{}/fix", stub.url)),
    );
    let out = Test::new().plan(&plan).run_plan();
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    let during = &m["steps"]["during"];
    assert_eq!(during["outputs"]["verdict"], "passed", "{during:#}");
    let evals = during["outputs"]["evaluations"].as_array().unwrap();
    assert!(evals.len() >= 2, "{evals:?}");
    let injected = time(&m["steps"]["inject"]["finished_at"]);
    let recover_started = time(&m["steps"]["recover"]["started_at"]);
    for e in evals {
        assert_eq!(e["verdict"], "passed", "{e}");
        assert_eq!(e["value"]["status"], 503, "{e}");
        let at = time(&e["at"]);
        assert!(
            injected <= at && at <= recover_started,
            "{e} outside the fault window"
        );
    }
    // The stub saw: healthy checks, the break, only 503s while broken, the fix, healthy again.
    let log = stub.log();
    let brk = log.iter().position(|(_, r, _)| r == "POST /break").unwrap();
    let fix = log.iter().position(|(_, r, _)| r == "POST /fix").unwrap();
    assert!(
        log[..brk]
            .iter()
            .all(|(_, r, s)| r == "GET /health" && *s == 200),
        "{log:?}"
    );
    assert!(
        log[brk + 1..fix].iter().all(|(_, _, s)| *s == 503),
        "{log:?}"
    );
    // Each evaluation is one request; one still in flight when `recover` started is dropped.
    let during_fault = log[brk + 1..fix].len();
    assert!(
        during_fault == evals.len() || during_fault == evals.len() + 1,
        "{log:?}"
    );
    assert!(log[fix + 1..].iter().all(|(_, _, s)| *s == 200), "{log:?}");
    assert!(
        !log[fix + 1..].is_empty(),
        "the hypothesis was not checked after recovery"
    );

    // The label says the fault bit, with the probe's evidence.
    let labels = labels(&out);
    assert_eq!(labels.len(), 1, "{labels:?}");
    let effect = &labels[0]["effect"];
    assert_eq!(effect["verified"], true, "{effect:#}");
    assert_eq!(effect["probes"][0]["probe"], "during");
    assert_eq!(
        effect["probes"][0]["evaluations"].as_array().unwrap().len(),
        evals.len()
    );

    // Steady state: checked before the fault and after the recovery, and it held both times.
    let ss = &m["steady_state"];
    assert_eq!(ss["before"]["verdict"], "passed", "{ss:#}");
    assert_eq!(ss["after"]["verdict"], "passed", "{ss:#}");
    assert!(time(&ss["before"]["checked_at"]) <= time(&m["steps"]["inject"]["started_at"]));
    assert!(time(&ss["after"]["checked_at"]) >= time(&m["steps"]["recover"]["finished_at"]));
    assert_eq!(ss["after"]["probes"]["gateway"]["value"]["status"], 200);
    assert!(!out.stderr.contains("did NOT"), "{}", out.stderr);
}

/// A fault that does not bite: the effect probe fails, the label records it, and the run's
/// summary line says so. The recovery leaves the service broken: the hypothesis fails after it
/// and, being `on_failure: fail`, fails the run.
#[test]
fn failing_effect_probe_is_labelled_and_a_broken_steady_state_fails_the_run() {
    let stub = Stub::start();
    let plan = format!(
        r#"
name: t
hypothesis:
  gateway: {{ type: http, url: "{url}/health", on_failure: fail }}
steps:
  inject: {{ kind: shell, run: "true", recover: {brk} }}
  effect:
    kind: probe
    after: [inject]
    verifies: inject
    type: http
    url: "{url}/health"
    status: [503]
  recover: {{ kind: recover, faults: [inject], after: [effect] }}
"#,
        url = stub.url,
        brk = post(&format!("{}/break", stub.url)),
    );
    let out = Test::new().plan(&plan).status(1).run_plan();
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "failed", "{out}");
    // `record` (the default): the probe step succeeds and keeps its failed verdict.
    let effect = &m["steps"]["effect"];
    assert_eq!(effect["status"], "succeeded");
    assert_eq!(effect["outputs"]["verdict"], "failed");
    assert_eq!(effect["outputs"]["value"]["status"], 200);
    let labels = labels(&out);
    assert_eq!(labels[0]["effect"]["verified"], false, "{labels:?}");
    assert_eq!(labels[0]["effect"]["probes"][0]["verdict"], "failed");
    assert_eq!(labels[0]["status"], "recovered");

    let ss = &m["steady_state"];
    assert_eq!(ss["before"]["verdict"], "passed", "{ss:#}");
    assert_eq!(ss["after"]["verdict"], "failed", "{ss:#}");
    assert!(
        ss["after"]["probes"]["gateway"]["error"]
            .as_str()
            .unwrap()
            .contains("status 503"),
        "{ss:#}"
    );
    let errors = m["run"]["errors"].to_string();
    assert!(
        errors.contains("steady-state hypothesis failed after recovery"),
        "{errors}"
    );
    let summary = out
        .stderr
        .lines()
        .rev()
        .find(|l| l.contains("run FAILED"))
        .unwrap();
    assert!(
        summary.contains("fault `inject` did NOT take effect (probe effect)"),
        "{summary}"
    );
    assert!(
        summary.contains("steady state did NOT hold after recovery"),
        "{summary}"
    );
}

/// A hypothesis probe with `on_failure: fail` that fails before the first fault keeps the
/// fault from being injected.
#[test]
fn a_broken_steady_state_before_the_fault_skips_the_fault() {
    let stub = Stub::start();
    let plan = format!(
        r#"
name: t
hypothesis:
  gateway: {{ type: http, url: "{url}/nothing-here", on_failure: fail }}
steps:
  inject: {{ kind: shell, run: {brk}, recover: "true" }}
  recover: {{ kind: recover, faults: [inject], after: [inject] }}
"#,
        url = stub.url,
        brk = post(&format!("{}/break", stub.url)),
    );
    let out = Test::new().plan(&plan).status(1).run_plan();
    let m = out.manifest();
    assert_eq!(m["steps"]["inject"]["status"], "skipped", "{out}");
    assert_eq!(m["steps"]["recover"]["status"], "skipped");
    assert_eq!(m["steady_state"]["before"]["verdict"], "failed");
    assert!(stub.log().iter().all(|(_, r, _)| r != "POST /break"));
    assert_eq!(labels(&out), Vec::<Value>::new());
}

/// Prometheus probes against the real server: a window's samples aggregated, set against a
/// baseline window, judged one by one, an instant query with no fresh data, and a query the
/// server rejects.
#[test]
fn prometheus_probes_judge_windows_against_a_real_server() {
    support::prometheus::require_tools();
    const S: i64 = 1000;
    let t0 = (Utc::now().timestamp() / 86_400 - 10) * 86_400 * S;
    let at = |i: i64| t0 + i * 15 * S;
    // 40 samples at 1.0 (warm-up), then 40 at 3.0 (the fault), every 15 s.
    let series = Series {
        name: "tt_cpu".into(),
        labels: BTreeMap::from([("pod".to_string(), "ts-a".to_string())]),
        samples: (0..80)
            .map(|i| (at(i), if i < 40 { 1.0 } else { 3.0 }))
            .collect(),
    };
    let prom = Prometheus::start(&openmetrics(&[Family {
        name: "tt_cpu".into(),
        kind: "gauge",
        series: vec![series],
    }]));
    let iso = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let plan = format!(
        r#"
name: t
vars:
  warm_start: "{w0}"
  warm_end: "{w1}"
  fault_start: "{f0}"
  fault_end: "{f1}"
steps:
  cpu_up:
    kind: probe
    type: prometheus
    query: 'tt_cpu{{pod="ts-a"}}'
    start: "{{{{ fault_start }}}}"
    end: "{{{{ fault_end }}}}"
    baseline: {{ start: "{{{{ warm_start }}}}", end: "{{{{ warm_end }}}}" }}
    expect: {{ gt: 1.5 }}
  every_sample_low:
    kind: probe
    type: prometheus
    query: 'tt_cpu{{pod="ts-a"}}'
    start: "{{{{ warm_start }}}}"
    end: "{{{{ fault_end }}}}"
    aggregate: all
    expect: {{ lt: 2 }}
  some_sample_high:
    kind: probe
    type: prometheus
    query: 'tt_cpu{{pod="ts-a"}}'
    start: "{{{{ warm_start }}}}"
    end: "{{{{ fault_end }}}}"
    aggregate: any
    expect: {{ between: [2.5, 3.5] }}
  peak:
    kind: probe
    type: prometheus
    query: 'max(tt_cpu)'
    start: "{{{{ warm_start }}}}"
    end: "{{{{ fault_end }}}}"
    aggregate: max
    expect: {{ eq: 3 }}
  now_nothing:
    kind: probe
    type: prometheus
    query: tt_cpu
    expect: {{ ge: 0 }}
  rejected:
    kind: probe
    type: prometheus
    query: rate(tt_cpu)
    expect: {{ ge: 0 }}
"#,
        w0 = iso(at(0)),
        w1 = iso(at(39)),
        f0 = iso(at(40)),
        f1 = iso(at(79)),
    );
    let out = Test::new()
        .plan(&plan)
        .env("PROMETHEUS_URL", &prom.url)
        .run_plan();
    let m = out.manifest();
    let o = |s: &str| m["steps"][s]["outputs"].clone();
    assert_eq!(o("cpu_up")["verdict"], "passed", "{:#}", o("cpu_up"));
    assert_eq!(o("cpu_up")["value"]["value"], 3.0);
    assert_eq!(o("cpu_up")["value"]["baseline"], 1.0);
    assert_eq!(o("cpu_up")["value"]["ratio"], 3.0);
    assert_eq!(o("every_sample_low")["verdict"], "failed");
    assert_eq!(o("every_sample_low")["value"]["samples"], 80);
    assert_eq!(o("every_sample_low")["value"]["passing"], 40);
    assert_eq!(o("some_sample_high")["verdict"], "passed");
    assert_eq!(o("some_sample_high")["value"]["passing"], 40);
    assert_eq!(o("peak")["verdict"], "passed");
    assert_eq!(o("peak")["value"], 3.0);
    // Ten-day-old samples are stale for an instant query now: nothing to judge.
    assert_eq!(o("now_nothing")["verdict"], "unknown");
    let rejected = &o("rejected")["evaluations"][0];
    assert_eq!(rejected["verdict"], "unknown");
    assert!(
        rejected["detail"]
            .as_str()
            .unwrap()
            .contains("rejected the query (HTTP 400 bad_data)"),
        "{rejected}"
    );
}

/// Kubernetes probes against the fake API server: ready counts, presence, absence and a field.
#[test]
fn kubernetes_probes_count_ready_objects_fields_and_absence() {
    let kube = FakeKube::builder()
        .train_ticket("tt")
        .pod(
            PodSeed::deployment("ts-broken-service", "tt")
                .container(ContainerSeed::new("ts-broken-service").not_ready()),
        )
        .start();
    let t = Test::new();
    let kubeconfig = kube.write_kubeconfig(t.path());
    let plan = r#"
name: t
steps:
  services_ready:
    kind: probe
    type: kubernetes
    namespace: tt
    name_prefixes: [ts-order, ts-gateway]
    ready: all
  all_ready:
    kind: probe
    type: kubernetes
    namespace: tt
    name_prefixes: [ts-]
    ready: all
  gateway_there:
    kind: probe
    type: kubernetes
    namespace: tt
    selector: app=ts-gateway-service
    expect: { eq: 1 }
  nothing_left:
    kind: probe
    type: kubernetes
    namespace: tt
    selector: app=ts-chaos-leftover
    absent: true
  order_running:
    kind: probe
    type: kubernetes
    namespace: tt
    selector: app=ts-order-service
    field: /status/phase
    equals: Running
"#;
    let out = t
        .plan(plan)
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .run_plan();
    let m = out.manifest();
    let o = |s: &str| m["steps"][s]["outputs"].clone();
    assert_eq!(
        o("services_ready")["verdict"],
        "passed",
        "{:#}",
        o("services_ready")
    );
    assert!(o("services_ready")["value"]["ready"].as_u64().unwrap() >= 2);
    // One ts- pod is not ready: `ready: all` fails and says how many are.
    let all = o("all_ready");
    assert_eq!(all["verdict"], "failed");
    let (objects, ready) = (
        all["value"]["objects"].as_u64().unwrap(),
        all["value"]["ready"].as_u64().unwrap(),
    );
    assert_eq!(ready + 1, objects, "{all:#}");
    assert_eq!(o("gateway_there")["verdict"], "passed");
    assert_eq!(o("nothing_left")["verdict"], "passed");
    assert_eq!(o("order_running")["verdict"], "passed");
    // The probes listed pods with the selector, as kubectl would.
    let lists: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/namespaces/tt/pods")
        .collect();
    assert!(lists
        .iter()
        .any(|r| r.query_param("labelSelector").as_deref() == Some("app=ts-gateway-service")));
}

/// Command probes: exit code and output regex; `on_failure: fail` fails the step.
#[test]
fn command_probes_judge_exit_code_and_output() {
    let plan = r#"
name: t
steps:
  version:
    kind: probe
    type: command
    run: "echo build-42; exit 3"
    exit_code: 3
    output_regex: 'build-\d+'
  strict:
    kind: probe
    type: command
    run: "echo nope"
    output_regex: '^ok$'
    on_failure: fail
    allow_failure: true
"#;
    let out = Test::new().plan(plan).run_plan();
    let m = out.manifest();
    assert_eq!(m["steps"]["version"]["outputs"]["verdict"], "passed");
    assert_eq!(m["steps"]["version"]["outputs"]["value"]["exit_code"], 3);
    assert_eq!(m["steps"]["strict"]["status"], "failed");
    let err = m["steps"]["strict"]["error"].as_str().unwrap();
    assert!(err.contains("does not match /^ok$/"), "{err}");
    assert!(out
        .read("out/runs/t/steps/version.log")
        .contains("build-42"));
}

/// A continuous probe takes no `--max-parallel` slot: with one slot, the step it watches still
/// starts (holding the slot would hang the run).
#[test]
fn a_continuous_probe_leaves_the_only_slot_to_the_steps_it_waits_for() {
    let stub = Stub::start();
    let plan = format!(
        r#"
name: t
steps:
  inject:
    kind: shell
    run: {brk}
    recover: {fix}
  during:
    kind: probe
    after: [inject]
    verifies: inject
    type: http
    url: "{url}/health"
    status: [503]
    mode: continuous
    interval: 100ms
    until: recover
  hold: {{ kind: sleep, after: [inject], duration: 500ms }}
  recover: {{ kind: recover, faults: [inject], after: [hold] }}
"#,
        url = stub.url,
        brk = post(&format!("{}/break", stub.url)),
        fix = post(&format!("{}/fix", stub.url)),
    );
    let out = Test::new()
        .plan(&plan)
        .args(["--max-parallel", "1"])
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    assert_eq!(
        m["steps"]["during"]["outputs"]["verdict"], "passed",
        "{out}"
    );
    assert_eq!(m["steps"]["recover"]["status"], "succeeded", "{out}");
}
