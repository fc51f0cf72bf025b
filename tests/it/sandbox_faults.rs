//! `ttplan run PLAN --sandbox`: a fault injected into the simulated cluster shows in what the
//! run collects: the recorded API answers, the traces (`collect-traces` through the sandbox's
//! SkyWalking GraphQL endpoint) and the pod logs (`collect-logs` through its Kubernetes API),
//! during the fault and not before it.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::Test;

const PRESERVE: &str = "/api/v1/preserveservice/preserve";
const LEFT: &str = "/api/v1/travelservice/trips/left";

/// A driver with Python's standard library only: `n` bookings and trip queries.
const DRIVER: &str = r#"
import json, os, urllib.request, urllib.error
base = os.environ["TT_BASE_URL"]
body = json.dumps({"accountId": "4d2a46c7-71cb-4cf1-b5bb-b68406d9da6f", "contactsId": "aded7dc5-06a7-4503-8e21-b7cad7a1f386",
                   "tripId": "G1234", "seatType": 2, "date": "2026-01-01", "from": "shanghai", "to": "suzhou"}).encode()
left = json.dumps({"startPlace": "shanghai", "endPlace": "suzhou", "departureTime": "2026-01-01"}).encode()
for i in range(int(os.environ.get("N", "8"))):
    for path, data in (("/api/v1/preserveservice/preserve", body), ("/api/v1/travelservice/trips/left", left)):
        req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req).read()
        except urllib.error.HTTPError as e:
            e.read()
"#;

fn plan() -> String {
    r#"
name: t
steps:
  before:
    kind: api-driver
    run: [python3, driver.py]
    record: { upstream: "{{ env('TT_BASE_URL') }}" }
  inject:
    kind: chaos-mesh
    after: [before]
    inject_timeout: 10s
    recover_timeout: 5s
    manifest:
      apiVersion: chaos-mesh.org/v1alpha1
      kind: HTTPChaos
      metadata: { name: abort, namespace: default }
      spec:
        mode: all
        selector: { namespaces: [default], labelSelectors: { app: ts-preserve-service } }
        target: Request
        port: 14568
        method: POST
        path: /api/v1/preserveservice/*
        abort: true
  during:
    kind: api-driver
    after: [inject]
    run: [python3, driver.py]
    record: { upstream: "{{ env('TT_BASE_URL') }}" }
  traces:
    kind: collect-traces
    after: [during]
  logs:
    kind: collect-logs
    after: [during]
    namespace: default
    name_prefixes: [ts-gateway-service, ts-preserve-service]
"#
    .to_string()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn an_http_abort_shows_in_answers_traces_and_logs_of_a_sandbox_run() {
    let out = Test::new()
        .plan(&plan())
        .file("driver.py", DRIVER)
        .args(["--sandbox", "--progress", "never"])
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    let mut all = Vec::new();
    files(&out.path().join("out"), &mut all);
    let find = |part: &str| {
        all.iter()
            .find(|f| f.display().to_string().contains(part))
            .unwrap_or_else(|| panic!("no {part} in {all:?}"))
            .clone()
    };
    let read = |part: &str| std::fs::read_to_string(find(part)).unwrap();
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };

    // The recorded answers: bookings fail while their requests are aborted, trip queries don't.
    let lines: Vec<Value> = read("api_responses.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |step: &str, path: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["step"] == step && l["path"] == path)
            .collect()
    };
    for step in ["before", "during"] {
        assert_eq!(of(step, PRESERVE).len(), 8, "{step}");
        assert!(of(step, LEFT).iter().all(|l| l["status"] == 200), "{step}");
    }
    assert!(of("before", PRESERVE)
        .iter()
        .all(|l| l["status"] == 200 && l["response"]["body"]["status"] == 1));
    for l in of("during", PRESERVE) {
        assert_eq!(l["status"], 500, "{l}");
        let msg = l["response"]["body"]["message"].as_str().unwrap();
        assert!(msg.contains("Connection prematurely closed"), "{msg}");
    }
    let last_before = lines
        .iter()
        .filter(|l| l["step"] == "before")
        .map(|l| ms(l["time"].as_str().unwrap()))
        .max()
        .unwrap();
    let first_during = lines
        .iter()
        .filter(|l| l["step"] == "during")
        .map(|l| ms(l["time"].as_str().unwrap()))
        .min()
        .unwrap();

    // The collected traces: every booking of the fault window is an error, none before.
    let doc: Value = serde_json::from_str(&read("skywalking_traces")).unwrap();
    let bookings: Vec<&Value> = doc["traces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["spans"].as_array().unwrap().iter().any(|s| {
                s["service_code"] == "ts-gateway-service"
                    && s["type"] == "Entry"
                    && s["endpoint_name"] == PRESERVE
            })
        })
        .map(|t| &t["summary"])
        .collect();
    let (mut before, mut during) = (Vec::new(), Vec::new());
    for s in bookings {
        let start = s["start_timestamp_ms"].as_i64().unwrap();
        if start <= last_before + 1 {
            before.push(s["is_error"] == true);
        } else if start >= first_during - 1 {
            during.push(s["is_error"] == true);
        }
    }
    assert_eq!((before.len(), during.len()), (8, 8), "{doc:#}");
    assert!(before.iter().all(|e| !e) && during.iter().all(|e| *e));

    // The gateway's log: an ERROR for each aborted booking, none before the fault.
    let log = read("ts-gateway-service-");
    let errors: Vec<i64> = log
        .lines()
        .filter_map(|l| l.find(" ERROR 1 --- [").map(|i| &l[i - 23..i]))
        .map(|t| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.3f")
                .unwrap()
                .and_utc()
                .timestamp_millis()
        })
        .collect();
    assert_eq!(errors.len(), 8, "{log}");
    assert!(errors.iter().all(|t| *t >= first_during - 1), "{log}");
    // The booking service never saw them: its log has the healthy bookings only.
    let preserve = read("ts-preserve-service-");
    assert_eq!(
        preserve.matches("[Step 1] Check Security").count(),
        8,
        "{preserve}"
    );
    assert!(!preserve.contains(" ERROR "), "{preserve}");
}
