//! The sandbox's simulated Prometheus, read by ttplan's own `collect-metrics` and `probe` steps:
//! faults created through the fake Kubernetes API (its Chaos Mesh controller injects and
//! recovers them) show in the collected series inside their window and not outside; a second
//! collection of the same window is byte-identical; PromQL the sandbox does not evaluate gets
//! Prometheus' error shape. The error shapes are compared with a real Prometheus
//! (tests/it/support/prometheus.rs).

use crate::support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use support::prometheus::{openmetrics, Family, Prometheus, Series};
use support::Test;
use ttplan_sandbox::Sandbox;

const NS: &str = "default";

fn chaos(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    })
}

fn selector(app: &str) -> Value {
    json!({"namespaces": [NS], "labelSelectors": {"app": app}})
}

/// `(unix seconds, value)` per series of one query, from the long CSV.
fn csv_series(csv: &str, metric: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).expect(n);
    let (name, ts, value) = (col("metric_name"), col("timestamp"), col("value"));
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if cells[name] != metric {
            continue;
        }
        let labels = cells[4..].join(",");
        out.entry(labels).or_default().push((
            cells[ts].parse().expect("timestamp"),
            cells[value].parse().expect("value"),
        ));
    }
    out
}

fn only(series: BTreeMap<String, Vec<(f64, f64)>>) -> Vec<(f64, f64)> {
    assert_eq!(series.len(), 1, "{series:?}");
    series.into_values().next().expect("a series")
}

fn mean_in(points: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let v: Vec<f64> = points
        .iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .map(|p| p.1)
        .collect();
    assert!(!v.is_empty(), "no samples in [{from}, {to}]: {points:?}");
    v.iter().sum::<f64>() / v.len() as f64
}

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

#[test]
fn collected_series_show_stress_pod_kill_and_packet_loss_inside_their_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start_seeded(dir.path(), 7);
    let kube = sandbox.kube();
    let prom_url = sandbox
        .env()
        .into_iter()
        .find(|(k, _)| *k == "PROMETHEUS_URL")
        .map(|(_, v)| v)
        .expect("PROMETHEUS_URL in the sandbox's env");
    // A warm-up before the faults, as a plan has.
    std::thread::sleep(Duration::from_secs(10));
    let duration = "15s";
    kube.put(
        "chaos-mesh.org",
        "stresschaos",
        Some(NS),
        chaos(
            "StressChaos",
            "cpu",
            json!({"mode": "all", "selector": selector("ts-preserve-service"), "duration": duration,
                   "stressors": {"cpu": {"workers": 2, "load": 80}}}),
        ),
    );
    kube.put(
        "chaos-mesh.org",
        "networkchaos",
        Some(NS),
        chaos(
            "NetworkChaos",
            "loss",
            json!({"mode": "all", "selector": selector("ts-preserve-service"), "duration": duration,
                   "action": "loss", "loss": {"loss": "90", "correlation": "0"}, "direction": "to"}),
        ),
    );
    kube.put(
        "chaos-mesh.org",
        "podchaos",
        Some(NS),
        chaos(
            "PodChaos",
            "kill",
            json!({"mode": "one", "selector": selector("ts-order-service"), "action": "pod-kill"}),
        ),
    );
    let world = sandbox.world().clone();
    assert!(
        kube.wait_until(Duration::from_secs(60), |_| {
            let f = world.faults();
            f.iter().filter(|f| f.recovered.is_some()).count() >= 2
        }),
        "faults not recovered: {:?}",
        world.faults()
    );
    // The replacement pod is ready (8 s) and a few scrapes (5 s) follow the recovery.
    std::thread::sleep(Duration::from_secs(8));
    let faults = world.faults();
    let stress = faults
        .iter()
        .find(|f| f.kind == "StressChaos")
        .expect("stress window");
    let (f0, f1) = (
        secs(stress.applied),
        secs(stress.recovered.expect("recovered")),
    );
    let killed = world
        .pods()
        .into_iter()
        .find(|p| p.name.starts_with("ts-order-service") && p.deleted.is_some())
        .expect("a killed ts-order-service pod");
    let kill = secs(killed.deleted.expect("deleted"));
    let start = Utc::now() - chrono::Duration::seconds(90);
    let end = Utc::now();
    let plan = format!(
        r#"name: t
steps:
  m:
    kind: collect-metrics
    start: "{start}"
    end: "{end}"
    step: 5s
    output: m.csv
    queries:
      cpu: 'sum(rate(container_cpu_usage_seconds_total{{namespace="default", pod=~"ts-preserve-service-.*", container!="", container!="POD"}}[15s]))'
      ready: 'sum(kube_pod_status_ready{{condition="true", namespace="default", pod=~"ts-order-service-.*"}})'
      errors: '(sum(rate(http_requests_total{{namespace="default", code=~"5.."}}[15s])) or vector(0)) / sum(rate(http_requests_total{{namespace="default"}}[15s]))'
  again:
    kind: collect-metrics
    after: [m]
    start: "{start}"
    end: "{end}"
    step: 5s
    output: again.csv
    queries:
      cpu: 'sum(rate(container_cpu_usage_seconds_total{{namespace="default", pod=~"ts-preserve-service-.*", container!="", container!="POD"}}[15s]))'
      ready: 'sum(kube_pod_status_ready{{condition="true", namespace="default", pod=~"ts-order-service-.*"}})'
      errors: '(sum(rate(http_requests_total{{namespace="default", code=~"5.."}}[15s])) or vector(0)) / sum(rate(http_requests_total{{namespace="default"}}[15s]))'
  unsupported:
    kind: probe
    type: prometheus
    query: 'quantile(0.9, up)'
    expect: {{ ge: 0 }}
  steady:
    kind: probe
    type: prometheus
    query: 'sum(up{{job="kube-state-metrics"}})'
    expect: {{ eq: 1 }}
"#,
        start = start.to_rfc3339(),
        end = end.to_rfc3339(),
    );
    let out = Test::new()
        .plan(&plan)
        .env("PROMETHEUS_URL", &prom_url)
        .run_plan();
    let csv = out.read("out/m.csv");
    assert_eq!(
        csv,
        out.read("out/again.csv"),
        "two reads of one window differ"
    );

    let cpu = only(csv_series(&csv, "cpu"));
    let before = mean_in(&cpu, secs(start), f0 - 15.0);
    // The window's second half: the 15 s rate has left the pre-fault samples behind.
    let during = mean_in(&cpu, f0 + 10.0, f1);
    assert!(
        during > 3.0 * before,
        "cpu before {before}, during {during}"
    );
    assert!(during <= 0.5, "above the 500m limit: {during}");

    let ready = only(csv_series(&csv, "ready"));
    assert_eq!(mean_in(&ready, secs(start), kill - 5.0), 1.0);
    let low = ready
        .iter()
        .filter(|(t, _)| *t > kill && *t < kill + 9.0)
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(low, 0.0, "no ready gap after the kill at {kill}: {ready:?}");
    assert_eq!(ready.last().expect("points").1, 1.0);

    let errors = only(csv_series(&csv, "errors"));
    let before = mean_in(&errors, secs(start), f0 - 15.0);
    let during = mean_in(&errors, f0 + 10.0, f1);
    assert!(before < 0.01, "error share before {before}");
    assert!(
        during > before + 0.01,
        "error share before {before}, during {during}"
    );

    let m = out.manifest();
    let probe = &m["steps"]["unsupported"]["outputs"];
    assert_eq!(probe["verdict"], "unknown", "{probe:#}");
    let detail = probe["evaluations"][0]["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("HTTP 400 bad_data") && detail.contains("not supported by the sandbox"),
        "{detail}"
    );
    assert_eq!(
        m["steps"]["steady"]["outputs"]["verdict"], "passed",
        "{:#}",
        m["steps"]["steady"]
    );
}

/// `GET path` on `base` (`http://host:port`): status and body.
fn get(base: &str, path: &str) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked body: the JSON object between its first `{` and last `}`.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => &body[a..=b],
        _ => body,
    };
    (
        status,
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

#[test]
fn errors_match_a_real_prometheus() {
    let real = Prometheus::start(&openmetrics(&[Family {
        name: "up".into(),
        kind: "gauge",
        series: vec![Series {
            name: "up".into(),
            labels: BTreeMap::new(),
            samples: vec![(1_700_000_000_000, 1.0)],
        }],
    }]));
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start_seeded(dir.path(), 7);
    let fake = sandbox
        .env()
        .into_iter()
        .find(|(k, _)| *k == "PROMETHEUS_URL")
        .map(|(_, v)| v)
        .expect("PROMETHEUS_URL");
    let range = |q: &str, start: &str, end: &str, step: &str| {
        format!("/api/v1/query_range?query={q}&start={start}&end={end}&step={step}")
    };
    // The same texts: the range parameters' checks.
    for path in [
        range("up", "yesterday", "2", "1"),
        range("up", "1", "later", "1"),
        range("up", "2", "1", "1"),
        range("up", "1", "2", "0"),
        range("up", "1", "2", "-5"),
        range("up", "1", "2", "often"),
        range("up", "0", "11001", "1"),
        range("up", "1700000000", "2023-11-14T22:13:20Z", "1s1h"),
    ] {
        let (rs, rb) = get(&real.url, &path);
        let (fs, fb) = get(&fake, &path);
        assert_eq!((fs, &fb), (rs, &rb), "{path}");
    }
    // The same status and type, Prometheus-version-dependent texts: bad PromQL.
    for path in [
        range("sum(up", "1", "2", "1"),
        range("up%7B", "1", "2", "1"),
        "/api/v1/query?query=sum(up".to_string(),
        "/api/v1/query?query=".to_string(),
        "/api/v1/query?query=up&time=noon".to_string(),
        "/api/v1/series".to_string(),
    ] {
        let (rs, rb) = get(&real.url, &path);
        let (fs, fb) = get(&fake, &path);
        assert_eq!(rs, 400, "{path}: {rb}");
        assert_eq!(fs, rs, "{path}: {fb}");
        assert_eq!(fb["status"], "error");
        assert_eq!(fb["errorType"], rb["errorType"], "{path}: {fb} vs {rb}");
        assert!(fb["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Valid PromQL the sandbox does not evaluate: Prometheus' shape, its own sentence.
    let (status, body) = get(&fake, "/api/v1/query?query=topk(1,up)");
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "bad_data");
    assert_eq!(
        body["error"],
        "invalid parameter \"query\": the aggregation topk not supported by the sandbox"
    );
    let (status, body) = get(&real.url, "/api/v1/query?query=topk(1,up)");
    assert_eq!((status, &body["status"]), (200, &json!("success")));
    // Success shapes: the same keys and result types.
    for path in [
        "/api/v1/query?query=up&time=1700000000",
        "/api/v1/query?query=1%2B1&time=1700000000",
        "/api/v1/query_range?query=up&start=1700000000&end=1700000060&step=30",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
        "/api/v1/series?match[]=up",
    ] {
        let (rs, rb) = get(&real.url, path);
        let (fs, fb) = get(&fake, path);
        assert_eq!((fs, &fb["status"]), (rs, &rb["status"]), "{path}: {fb}");
        assert_eq!(fb["data"]["resultType"], rb["data"]["resultType"], "{path}");
        assert_eq!(fb["data"].is_array(), rb["data"].is_array(), "{path}");
    }
}
