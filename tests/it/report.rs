//! `ttplan report` end to end. The run folder comes from a real `ttplan run` against the fake
//! Kubernetes API server (warm-up, a Chaos Mesh StressChaos on ts-preserve-service, recovery),
//! so the manifest and `fault_labels.json` are ttplan's own. The modality files are synthesised
//! in the dataset layout (DATASET.md) over that run's real window, with the fault's effect in
//! them: the target pod's CPU, trace errors and latency, 503s and exceptions rise while the fault
//! is active. The page is then checked as text and rendered in a real headless Chromium.

use crate::support;
use ttplan_sandbox::kube_fake;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use kube_fake::FakeKube;
use serde_json::{json, Value};
use support::Test;

const PLAN: &str = r#"
name: t
steps:
  warm-up: { kind: sleep, duration: 3s }
  inject:
    kind: chaos-mesh
    after: [warm-up]
    inject_timeout: 10s
    recover_timeout: 5s
    manifest:
      apiVersion: chaos-mesh.org/v1alpha1
      kind: StressChaos
      metadata: { name: cpu, namespace: default }
      spec:
        mode: all
        selector: { namespaces: [default], labelSelectors: { app: ts-preserve-service } }
        stressors: { cpu: { workers: 2, load: 80 } }
  hold: { kind: sleep, duration: 3s, after: [inject] }
  recover: { kind: recover, faults: [inject], after: [hold] }
  cool-down: { kind: sleep, duration: 2s, after: [recover] }
"#;

fn ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .timestamp_millis()
}

fn iso(t: i64) -> String {
    Utc.timestamp_millis_opt(t)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A fault run, and the data its collectors would have written.
struct FaultRun {
    out: support::Output,
    _kube: FakeKube,
    target: String,
}

impl FaultRun {
    fn run_dir(&self) -> PathBuf {
        self.out.path().join("out/runs/t")
    }
}

fn fault_run() -> FaultRun {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(PLAN);
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    assert!(
        out.exists("out/runs/t/report.html"),
        "the run writes its report: {out}"
    );
    let m = out.manifest();
    let labels: Value = serde_json::from_str(&out.read("out/runs/t/fault_labels.json")).unwrap();
    let label = &labels[0];
    let target = label["target"]["pods"][0]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (start, end) = (ms(&m["run"]["started_at"]), ms(&m["run"]["finished_at"]));
    let (inj, rec) = (ms(&label["injected_at"]), ms(&label["recovered_at"]));
    assert!(start < inj && inj < rec && rec < end, "{label:#}");
    synthesise(
        &out.path().join("out"),
        "t",
        (start, end),
        (inj, rec),
        &target,
    );
    FaultRun {
        out,
        _kube: kube,
        target,
    }
}

/// Writes every modality in the dataset layout over `[start, end]`.
fn synthesise(
    out: &Path,
    exp: &str,
    (start, end): (i64, i64),
    (inj, rec): (i64, i64),
    target: &str,
) {
    let in_fault = |t: i64| t >= inj && t <= rec;
    let mk = |p: PathBuf| {
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    // Metrics: 100 ms samples (the run lasts seconds); the target's CPU counter grows 8× faster
    // during the fault; an unrelated pod and node load stay flat.
    let dir = mk(out.join("metric_data").join(exp));
    let mut csv =
        String::from("metric_name,timestamp,datetime,value,container,instance,namespace,pod\n");
    for (pod, fault_rate) in [(target, 0.8), ("ts-order-service-0", 0.1)] {
        let mut cpu = 0.0;
        let mut t = start;
        while t <= end {
            cpu += if in_fault(t) { fault_rate } else { 0.1 } * 0.1;
            let _ = writeln!(
                csv,
                "container_cpu_usage_seconds_total,{},{},{cpu},app,,default,{pod}",
                t as f64 / 1000.0,
                iso(t)
            );
            t += 100;
        }
        let mut t = start;
        while t <= end {
            let mib = if in_fault(t) && pod == target {
                380.0
            } else {
                300.0
            };
            let _ = writeln!(
                csv,
                "container_memory_working_set_bytes,{},{},{},app,,default,{pod}",
                t as f64 / 1000.0,
                iso(t),
                mib * 1048576.0
            );
            t += 100;
        }
    }
    let mut t = start;
    while t <= end {
        let _ = writeln!(
            csv,
            "node_load5,{},{},{},,node-1,,",
            t as f64 / 1000.0,
            iso(t),
            1.0 + (t % 700) as f64 / 7000.0
        );
        t += 100;
    }
    std::fs::write(dir.join(format!("{exp}_metrics_20250101_000000.csv")), csv).unwrap();

    // Traces: one every 50 ms; during the fault half fail and the preserve service is 10× slower.
    let mut traces = Vec::new();
    let mut t = start;
    let mut i = 0;
    while t <= end {
        let fault = in_fault(t);
        let err = fault && i % 2 == 0;
        let dur = if fault { 900.0 } else { 90.0 };
        let span = |seg: &str, svc: &str, kind: &str, d: f64, e: bool| {
            json!({"node_id": format!("{seg}:0"), "trace_id": format!("tr{i}"), "segment_id": seg, "span_id": 0,
                   "parent_span_id": -1, "parent_node_id": null, "depth": 0, "children_node_ids": [],
                   "service_code": svc, "service_instance": "i", "start_time_utc": iso(t), "end_time_utc": iso(t + d as i64),
                   "start_timestamp_ms": t, "end_timestamp_ms": t + d as i64, "duration_ms": d,
                   "endpoint_name": "POST:/api/v1/preserveservice/preserve", "type": kind, "peer": "", "component": "SpringMVC",
                   "layer": "Http", "is_error": e, "tags": [{"key": "http.method", "value": "POST"}],
                   "tags_map": {"http.method": "POST"}, "logs": [], "refs": []})
        };
        traces.push(json!({
            "summary": {"trace_id": format!("tr{i}"), "duration_ms": dur, "start_time_utc": iso(t), "start_timestamp_ms": t,
                        "is_error": err, "endpoint_names": ["POST:/api/v1/preserveservice/preserve"]},
            "span_count": 2, "services_involved": ["ts-gateway-service", "ts-preserve-service"],
            "root_span_node_ids": [format!("a{i}:0")],
            "spans": [span(&format!("a{i}"), "ts-gateway-service", "Entry", dur + 5.0, err),
                      span(&format!("b{i}"), "ts-preserve-service", "Entry", dur, err)],
        }));
        t += 50;
        i += 1;
    }
    let doc = json!({"metadata": {"generated_at": iso(end), "collected_traces": traces.len(), "experiment_name": exp}, "traces": traces});
    let dir = mk(out.join("trace_data").join(exp));
    std::fs::write(
        dir.join(format!("{exp}_skywalking_traces_20250101_000000.json")),
        doc.to_string(),
    )
    .unwrap();

    // API: a request every 40 ms; the preserve endpoint answers 503 during the fault.
    let mut api = String::new();
    let mut t = start;
    let mut i = 0;
    while t <= end {
        let (path, status) = if i % 2 == 0 {
            (
                "/api/v1/preserveservice/preserve",
                if in_fault(t) { 503 } else { 200 },
            )
        } else {
            (
                "/api/v1/orderservice/order/5ad7750b-a68b-49c0-a8c0-32776b067703",
                200,
            )
        };
        let _ = writeln!(
            api,
            "{}",
            json!({"time": iso(t), "run_id": "r", "exp_name": exp, "step": "traffic", "attempt": 1,
            "iteration": 1, "suite": 1, "method": "POST", "url": format!("http://gw{path}"), "path": path, "query": null,
            "request": {"headers": {}, "body": {"a": 1}, "body_encoding": "json", "body_bytes": 7, "body_truncated": false, "body_content_encoding": null},
            "status": status, "response": null, "duration_ms": 12.5, "ttfb_ms": 10.0, "upstream_error": null})
        );
        t += 40;
        i += 1;
    }
    let dir = mk(out.join("api_responses").join(exp).join("20250101"));
    std::fs::write(dir.join("api_responses.jsonl"), api).unwrap();

    // Logs: RFC 3339 timestamps (collect-logs `timestamps: true`); the target throws during the fault.
    for pod in [target, "ts-order-service-0"] {
        let mut log = String::new();
        let mut t = start;
        while t <= end {
            let ts = Utc
                .timestamp_millis_opt(t)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let _ = writeln!(log, "{ts} INFO handled request");
            if pod == target && in_fault(t) {
                let _ = writeln!(log, "{ts} ERROR c.p.PreserveServiceImpl : java.util.concurrent.TimeoutException: stress\n\tat a.B.c(B.java:1)");
            }
            t += 100;
        }
        let dir = mk(out.join("log_data").join(exp).join(pod));
        std::fs::write(dir.join(format!("{pod}_20250101_000000.log")), log).unwrap();
    }

    for (svc, lines, pct) in [
        ("ts-preserve-service", 812, 41),
        ("ts-order-service", 1204, 63),
    ] {
        let dir = mk(out.join("coverage_report").join(exp).join(svc));
        let rule_eq = "=".repeat(66);
        let rule = "-".repeat(66);
        std::fs::write(
            dir.join("coverage-summary.txt"),
            format!("{rule_eq}\n  Simple Code Coverage Report\n{rule}\nService: {svc}\n{rule}\n{:<20}Lines {lines:>6}  Cover {pct:>3}%\n{rule}\n", "TOTAL"),
        )
        .unwrap();
    }
}

fn report(dir: &Path, extra: &[&str]) -> std::process::Output {
    let out = support::ttplan()
        .arg("report")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ttplan report {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The text of `<section id=…>`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let open = format!("<section id=\"{id}\" data-state=\"data\">");
    let at = html
        .find(&open)
        .unwrap_or_else(|| panic!("no section {id} with data"));
    let rest = &html[at..];
    &rest[..rest.find("</section>").unwrap()]
}

#[test]
fn a_fault_run_report_shows_the_fault() {
    let run = fault_run();
    report(&run.run_dir(), &[]);
    let html = std::fs::read_to_string(run.run_dir().join("report.html")).unwrap();
    assert!(html.len() < 3_000_000, "{} bytes", html.len());
    assert!(
        !html.contains("<script") && !html.contains("http://gw"),
        "no script, no raw data"
    );

    let steps = section(&html, "timeline");
    for s in ["warm-up", "inject", "hold", "recover", "cool-down"] {
        assert!(steps.contains(&format!("<td>{s}</td>")), "{s}");
    }
    assert!(
        steps.contains("fill=\"#FF8C00\""),
        "fault window shaded in the Gantt chart"
    );

    let faults = section(&html, "faults");
    assert!(faults.contains("StressChaos") && faults.contains(&format!("default/{}", run.target)));
    assert!(faults.contains("controller"), "controller times are marked");

    // The series that moved most is the target pod's CPU, as a rate: 0.1 → 0.8 cores.
    let metrics = section(&html, "metrics");
    let table = &metrics[metrics.find("<th>change (warm-up σ)").unwrap()..];
    let first_row = &table[table.find("<tr><td class=\"num\">1</td>").unwrap()..];
    let first_row = &first_row[..first_row.find("</tr>").unwrap()];
    assert!(
        first_row.contains("container_cpu_usage_seconds_total") && first_row.contains(&run.target),
        "{first_row}"
    );
    assert!(
        first_row.contains(">0.100<") && first_row.contains(">0.800<"),
        "{first_row}"
    );
    assert!(
        metrics.contains("data-chart=\"target-Cpu\"")
            && metrics.contains("data-chart=\"target-Memory\"")
    );

    let traces = section(&html, "traces");
    let err_row = &traces[traces.find("<th>error rate</th>").unwrap()..];
    let cells: Vec<&str> = err_row
        .split("<td class=\"num\">")
        .skip(1)
        .take(2)
        .collect();
    assert!(
        cells[0].starts_with("0.0 %"),
        "no errors in the warm-up: {cells:?}"
    );
    assert!(
        cells[1].starts_with("4") || cells[1].starts_with("5"),
        "about half fail in the fault: {cells:?}"
    );
    assert!(
        traces.contains("data-chart=\"latency-p95\"") && traces.contains("ts-preserve-service")
    );

    let api = section(&html, "api");
    let top = &api[api.find("Top failing endpoints").unwrap()..];
    assert!(
        top.contains("POST /api/v1/preserveservice/preserve"),
        "{top}"
    );
    assert!(
        !top.contains("orderservice"),
        "the order endpoint never failed"
    );

    let logs = section(&html, "logs");
    let rows = &logs[logs.find("<th>without time</th>").unwrap()..];
    assert!(
        rows.contains(&format!("<tr><td>{}</td>", run.target)),
        "{rows}"
    );
    assert!(
        !rows.contains("ts-order-service-0"),
        "the other pod logged no error"
    );

    let cov = section(&html, "coverage");
    assert!(cov.contains("ts-preserve-service") && cov.contains("41 %"));

    // The index of the output root links the run's page.
    let out = report(&run.out.path().join("out"), &[]);
    let index_path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let index = std::fs::read_to_string(&index_path).unwrap();
    assert!(index.contains("href=\"runs/t/report.html\""), "{index}");
    assert!(
        index.contains("yes (1)"),
        "fault verified by the controller's records"
    );
}

#[test]
fn a_run_without_data_says_what_is_absent_and_report_writes_where_told() {
    let run_dir = tempfile::tempdir().unwrap();
    let rd = run_dir.path().join("runs/E");
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::write(
        rd.join("experiment_manifest.json"),
        json!({"run": {"exp_name": "E", "status": "failed", "started_at": "2025-01-01T00:00:00Z",
                        "finished_at": "2025-01-01T00:10:00Z", "duration_ms": 600000},
               "plan": {"name": "p", "path": "p.yaml"}, "steps": {}})
        .to_string(),
    )
    .unwrap();
    let dest = run_dir.path().join("elsewhere.html");
    report(&rd, &["-o", dest.to_str().unwrap()]);
    let html = std::fs::read_to_string(&dest).unwrap();
    for id in [
        "timeline", "faults", "metrics", "traces", "api", "logs", "coverage",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\" data-state=\"absent\">")),
            "{id} absent"
        );
    }
    assert!(html.contains("no fault_labels.json"));

    // Not a run and no runs below: exit 2 with the path.
    let empty = tempfile::tempdir().unwrap();
    let out = support::ttplan()
        .args(["report"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no runs below it"));
}

// ---------------------------------------------------------------------------------------------
// The page in a real browser.

/// Chromium, started headless with remote debugging on a free port; killed on drop.
struct Chromium {
    child: std::process::Child,
    ws_url: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Self {
        let found = Command::new("chromium")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "chromium is not installed: run scripts/deps/report.sh (apt-get install chromium)"
        );
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Chromium prints the browser's DevTools endpoint on stderr once it listens.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not announce its DevTools endpoint within 60 s");
        Self {
            child,
            ws_url,
            _profile: profile,
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal DevTools-protocol client: commands by id, events kept in arrival order.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next: u64,
    events: Vec<Value>,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let hostport = url
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .unwrap();
        let tcp = tokio::net::TcpStream::connect(hostport).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        Self {
            ws,
            next: 0,
            events: Vec::new(),
        }
    }

    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        use futures_util::{SinkExt, StreamExt};
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                msg.to_string().into(),
            ))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} in 60 s"))
                .expect("DevTools connection closed")
                .unwrap();
            let tokio_tungstenite::tungstenite::Message::Text(text) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Waits for an event of `method` (already seen or arriving).
    async fn wait_event(&mut self, method: &str) {
        use futures_util::StreamExt;
        if self.events.iter().any(|e| e["method"] == method) {
            return;
        }
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {method} in 60 s"))
                .expect("DevTools connection closed")
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = m {
                let v: Value = serde_json::from_str(&text).unwrap();
                let done = v["method"] == method;
                self.events.push(v);
                if done {
                    return;
                }
            }
        }
    }
}

/// Decodes a PNG in the browser and counts non-white pixels and distinct colours.
const PIXELS_JS: &str = r#"
new Promise((resolve, reject) => {
  const img = new Image();
  img.onload = () => {
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let nonWhite = 0; const colours = new Set();
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] < 245 || d[i + 1] < 245 || d[i + 2] < 245) nonWhite++;
      if (colours.size < 1000) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    }
    resolve(JSON.stringify({w: c.width, h: c.height, nonWhite, colours: colours.size}));
  };
  img.onerror = () => reject('screenshot does not decode');
  img.src = 'data:image/png;base64,' + PNG;
})"#;

const DOM_JS: &str = r##"JSON.stringify({
  sections: [...document.querySelectorAll('header[id], section[id]')].map(s => ({
    id: s.id, state: s.dataset.state, svgs: s.querySelectorAll('svg').length,
    height: s.getBoundingClientRect().height})),
  shaded: [...document.querySelectorAll('svg rect[fill="#FF8C00"]')].map(r => r.closest('section').id),
  scripts: document.scripts.length,
  links: [...document.querySelectorAll('[src], link[href]')].length
})"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_in_chromium_without_errors_or_network() {
    let run = tokio::task::spawn_blocking(fault_run).await.unwrap();
    let page = run.run_dir().join("report.html");
    report(&run.run_dir(), &[]);
    let browser = Chromium::start();
    let mut cdp = Cdp::connect(&browser.ws_url).await;
    let target = cdp
        .call(None, "Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    let s = attached["sessionId"].as_str().unwrap().to_string();
    let s = Some(s.as_str());
    for domain in [
        "Page.enable",
        "Runtime.enable",
        "Log.enable",
        "Network.enable",
    ] {
        cdp.call(s, domain, json!({})).await;
    }
    cdp.events.clear();
    let url = format!("file://{}", page.display());
    cdp.call(s, "Page.navigate", json!({"url": url})).await;
    cdp.wait_event("Page.loadEventFired").await;
    let dom = cdp
        .call(
            s,
            "Runtime.evaluate",
            json!({"expression": DOM_JS, "returnByValue": true}),
        )
        .await;
    let shot = cdp
        .call(
            s,
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )
        .await;
    // Everything the page itself did is in: judge it before the pixel check runs its script.
    let page_events = std::mem::take(&mut cdp.events);

    let errors: Vec<&Value> = page_events
        .iter()
        .filter(|e| {
            (e["method"] == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
                || e["method"] == "Runtime.exceptionThrown"
                || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let requests: Vec<&str> = page_events
        .iter()
        .filter(|e| e["method"] == "Network.requestWillBeSent")
        .filter_map(|e| e["params"]["request"]["url"].as_str())
        .filter(|u| *u != url)
        .collect();
    assert!(
        requests.is_empty(),
        "the page loaded more than itself: {requests:?}"
    );

    let dom: Value = serde_json::from_str(dom["result"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(dom["scripts"], 0);
    assert_eq!(dom["links"], 0, "no external resources");
    let sections = dom["sections"].as_array().unwrap();
    for id in [
        "header", "timeline", "faults", "metrics", "traces", "api", "logs", "coverage",
    ] {
        let sec = sections
            .iter()
            .find(|x| x["id"] == id)
            .unwrap_or_else(|| panic!("no #{id}: {dom:#}"));
        assert_eq!(sec["state"], "data", "#{id}: {sec}");
        assert!(
            sec["height"].as_f64().unwrap() > 20.0,
            "#{id} is laid out: {sec}"
        );
        if !matches!(id, "header" | "faults") {
            assert!(
                sec["svgs"].as_u64().unwrap() >= 1,
                "#{id} has a chart: {sec}"
            );
        }
    }
    let shaded: Vec<&str> = dom["shaded"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for id in ["timeline", "metrics", "traces", "api", "logs"] {
        assert!(
            shaded.contains(&id),
            "#{id} shades the fault window: {shaded:?}"
        );
    }

    let png = shot["data"].as_str().unwrap();
    let js = format!("const PNG = '{png}';{PIXELS_JS}");
    let px = cdp
        .call(
            s,
            "Runtime.evaluate",
            json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
        )
        .await;
    let px: Value = serde_json::from_str(
        px["result"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{px}")),
    )
    .unwrap();
    let total = px["w"].as_f64().unwrap() * px["h"].as_f64().unwrap();
    assert!(
        px["h"].as_f64().unwrap() > 900.0,
        "the whole page was captured: {px}"
    );
    assert!(
        px["nonWhite"].as_f64().unwrap() / total > 0.02,
        "the screenshot is not blank: {px}"
    );
    assert!(
        px["colours"].as_u64().unwrap() > 20,
        "charts and badges are in colour: {px}"
    );
    let _ = cdp.call(None, "Browser.close", json!({})).await;
}

#[test]
fn no_report_skips_the_page_and_a_plain_run_gets_one() {
    let plan = "name: t\nsteps:\n  nap: { kind: sleep, duration: 0s }\n";
    let out = Test::new().plan(plan).args(["--no-report"]).run_plan();
    assert!(!out.exists("out/runs/t/report.html"), "{out}");
    let out = Test::new().plan(plan).run_plan();
    let html = out.read("out/runs/t/report.html");
    assert!(html.contains("<td>nap</td>"), "{html}");
    assert!(out.stderr.contains("report: "), "{out}");
}
