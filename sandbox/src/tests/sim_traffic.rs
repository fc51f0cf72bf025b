//! The sandbox's system under test reacts to faults: requests to its API (plain HTTP, as the
//! recording proxy sends them), the traces its SkyWalking endpoint serves (GraphQL) and the pod
//! logs its Kubernetes API serves all show a fault created through the Kubernetes API while it
//! is active, and only then. Same seed, same traffic → same answers.

use super::{blade_api, chaos_api};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::Sandbox;
use chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};

const NS: &str = "default";
const PRESERVE: &str = "/api/v1/preserveservice/preserve";
const LEFT: &str = "/api/v1/travelservice/trips/left";

/// One HTTP/1.1 exchange (`Connection: close`), as any client would send it.
fn http(base: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, rest.to_string())
}

fn env(sb: &Sandbox, k: &str) -> String {
    sb.env().into_iter().find(|(n, _)| *n == k).unwrap().1
}

const PRESERVE_BODY: &str = r#"{"accountId":"4d2a46c7-71cb-4cf1-b5bb-b68406d9da6f","contactsId":"aded7dc5-06a7-4503-8e21-b7cad7a1f386","tripId":"G1234","seatType":2,"date":"2026-01-01","from":"shanghai","to":"suzhou","assurance":0,"foodType":0}"#;
const LEFT_BODY: &str =
    r#"{"startPlace":"shanghai","endPlace":"suzhou","departureTime":"2026-01-01"}"#;

/// `n` preserve and `n` trip queries: (path, status, body) each.
fn drive(sb: &Sandbox, n: usize) -> Vec<(&'static str, u16, String)> {
    let base = env(sb, "TT_BASE_URL");
    let mut out = Vec::new();
    for i in 0..n {
        // Distinct bodies: the noise of identical requests differs by their count anyway.
        let p = PRESERVE_BODY.replace("\"assurance\":0", &format!("\"assurance\":0,\"n\":{i}"));
        let (s, b) = http(&base, "POST", PRESERVE, Some(&p));
        out.push((PRESERVE, s, b));
        let (s, b) = http(&base, "POST", LEFT, Some(LEFT_BODY));
        out.push((LEFT, s, b));
    }
    out
}

/// Share of answers to `path` that failed: 5xx, or a `Response` with status 0.
fn error_share(answers: &[(&str, u16, String)], path: &str) -> f64 {
    let of: Vec<_> = answers.iter().filter(|(p, _, _)| *p == path).collect();
    let bad = of
        .iter()
        .filter(|(_, s, b)| {
            *s >= 500 || serde_json::from_str::<Value>(b).map_or(true, |v| v["status"] == 0)
        })
        .count();
    bad as f64 / of.len() as f64
}

async fn client(sb: &Sandbox) -> Client {
    let kc = Kubeconfig::read_from(sb.kubeconfig()).unwrap();
    Client::try_from(
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap()
}

async fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Observed {
    before: Vec<(&'static str, u16, String)>,
    during: Vec<(&'static str, u16, String)>,
    after: Vec<(&'static str, u16, String)>,
    /// When the requests of the `during` phase were sent (the fault active throughout; its
    /// recorded window has whole seconds, so the test's own clock is the sharper one).
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// Traffic before, during and after a fault: `kind` is `blade` or a Chaos Mesh kind.
async fn experiment(sb: &Sandbox, kind: &str, plural: &str, obj: Value) -> Observed {
    let c = client(sb).await;
    let api = if kind == "ChaosBlade" {
        blade_api(&c)
    } else {
        chaos_api(&c, NS, kind, plural)
    };
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let before = drive(sb, 12);
    api.create(&Default::default(), &serde_json::from_value(obj).unwrap())
        .await
        .unwrap();
    wait("the injection", || !sb.world().faults().is_empty()).await;
    // The records have whole seconds: start after the recorded instant's second is over.
    let from = Utc::now();
    let during = drive(sb, 12);
    let until = Utc::now();
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait("the recovery", || {
        sb.world().faults().iter().all(|f| f.recovered.is_some())
    })
    .await;
    let after = drive(sb, 12);
    Observed {
        before,
        during,
        after,
        from,
        until,
    }
}

fn gql(sb: &Sandbox, doc: &str, vars: Value) -> Value {
    let body = json!({"query": doc, "variables": vars}).to_string();
    let (status, text) = http(&env(sb, "SKYWALKING_URL"), "POST", "/graphql", Some(&body));
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Every segment row of the last ten minutes, through `queryBasicTraces` pages.
fn segment_rows(sb: &Sandbox) -> Vec<Value> {
    let fmt = "%Y-%m-%d %H%M%S";
    let now = Utc::now();
    let doc = "query Q($condition: TraceQueryCondition) { queryBasicTraces(condition: $condition) { traces { segmentId endpointNames duration start isError traceIds } } }";
    let mut rows = Vec::new();
    for page in 1.. {
        let v = gql(
            sb,
            doc,
            json!({"condition": {
                "queryDuration": {"start": (now - chrono::Duration::minutes(10)).format(fmt).to_string(),
                    "end": (now + chrono::Duration::minutes(1)).format(fmt).to_string(), "step": "SECOND"},
                "traceState": "ALL", "queryOrder": "BY_START_TIME",
                "paging": {"pageNum": page, "pageSize": 100}}}),
        );
        let got = v["data"]["queryBasicTraces"]["traces"]
            .as_array()
            .unwrap()
            .clone();
        if got.is_empty() {
            break;
        }
        rows.extend(got);
    }
    rows
}

/// The gateway segments of the preserve requests: (start ms, duration ms, isError).
fn preserve_roots(sb: &Sandbox) -> Vec<(i64, i64, bool)> {
    segment_rows(sb)
        .into_iter()
        .filter(|r| r["endpointNames"][0] == PRESERVE)
        .map(|r| {
            (
                r["start"].as_str().unwrap().parse().unwrap(),
                r["duration"].as_i64().unwrap(),
                r["isError"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Error share and mean latency of the preserve traces started inside / outside the window.
fn trace_stats(sb: &Sandbox, o: &Observed) -> ((f64, f64), (f64, f64)) {
    let (a, r) = (o.from.timestamp_millis(), o.until.timestamp_millis());
    let roots = preserve_roots(sb);
    let stats = |inside: bool| {
        let sel: Vec<_> = roots
            .iter()
            .filter(|(s, _, _)| (*s >= a && *s <= r) == inside)
            .collect();
        assert!(
            !sel.is_empty(),
            "no preserve traces {}",
            if inside { "inside" } else { "outside" }
        );
        let n = sel.len() as f64;
        (
            sel.iter().filter(|x| x.2).count() as f64 / n,
            sel.iter().map(|x| x.1 as f64).sum::<f64>() / n,
        )
    };
    (stats(true), stats(false))
}

/// The ERROR lines' times in the log of `app`'s pod (timestamps=true), via the API.
async fn error_times(sb: &Sandbox, app: &str) -> Vec<DateTime<Utc>> {
    let c = client(sb).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c, NS);
    let name = sb.kube().pod_names(NS, app)[0].clone();
    let log = pods
        .logs(
            &name,
            &LogParams {
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(log.contains(" INFO 1 --- ["), "{log}");
    log.lines()
        .filter(|l| l.contains(" ERROR 1 --- ["))
        .map(|l| {
            DateTime::parse_from_rfc3339(l.split(' ').next().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        })
        .collect()
}

/// ERROR lines appear in `app`'s log, all stamped while the faulty requests were sent (plus
/// the longest simulated call: a line is stamped when the call ends).
async fn errors_only_in_window(sb: &Sandbox, app: &str, o: &Observed) {
    let times = error_times(sb, app).await;
    assert!(!times.is_empty(), "{app}: no ERROR lines");
    let slack = chrono::Duration::seconds(5);
    for t in times {
        assert!(
            t >= o.from && t <= o.until + slack,
            "{app}: ERROR at {t} outside [{}, {}]",
            o.from,
            o.until
        );
    }
}

fn healthy_outside(o: &Observed) {
    for (phase, a) in [("before", &o.before), ("after", &o.after)] {
        assert_eq!(error_share(a, PRESERVE), 0.0, "{phase}: {a:?}");
        assert_eq!(error_share(a, LEFT), 0.0, "{phase}: {a:?}");
    }
}

fn started(seed: u64) -> (tempfile::TempDir, Sandbox) {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::start_seeded(dir.path(), seed);
    (dir, sb)
}

fn network_loss(loss: &str) -> Value {
    json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": "loss", "namespace": NS},
        "spec": {"action": "loss", "mode": "all",
            "selector": {"namespaces": [NS], "labelSelectors": {"app": "ts-preserve-service"}},
            "loss": {"loss": loss, "correlation": "0"}, "direction": "to"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_loss_on_preserve_fails_and_slows_its_requests_only_while_active() {
    let (_d, sb) = started(1);
    let o = experiment(&sb, "NetworkChaos", "networkchaos", network_loss("90")).await;
    healthy_outside(&o);
    let share = error_share(&o.during, PRESERVE);
    assert!(
        share >= 0.5,
        "90% loss: preserve error share {share}: {:?}",
        o.during
    );
    // The trip query does not pass through ts-preserve-service.
    assert_eq!(error_share(&o.during, LEFT), 0.0);
    let gateway_timeouts = o
        .during
        .iter()
        .filter(|(p, s, _)| *p == PRESERVE && *s == 504)
        .count();
    assert!(gateway_timeouts > 0, "{:?}", o.during);
    let ((err_in, lat_in), (err_out, lat_out)) = trace_stats(&sb, &o);
    assert!(err_in >= 0.5 && err_out == 0.0, "{err_in} {err_out}");
    assert!(
        lat_in > 5.0 * lat_out,
        "latency inside {lat_in} ms, outside {lat_out} ms"
    );
    // Most requests never reach the preserve service: the gateway logs their timeouts.
    errors_only_in_window(&sb, "ts-gateway-service", &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_delay_on_preserve_shows_in_its_trace_latency() {
    let (_d, sb) = started(2);
    let o = experiment(
        &sb,
        "NetworkChaos",
        "networkchaos",
        json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
            "metadata": {"name": "delay", "namespace": NS},
            "spec": {"action": "delay", "mode": "all",
                "selector": {"namespaces": [NS], "labelSelectors": {"app": "ts-preserve-service"}},
                "delay": {"latency": "800ms", "jitter": "0ms"}}}),
    )
    .await;
    // Delayed, not failed.
    assert_eq!(error_share(&o.during, PRESERVE), 0.0);
    healthy_outside(&o);
    let ((_, lat_in), (_, lat_out)) = trace_stats(&sb, &o);
    // Every call to and from the preserve pod waits 800 ms.
    assert!(
        lat_in > 800.0 && lat_out < 400.0,
        "inside {lat_in} ms, outside {lat_out} ms"
    );
    // Slow requests are logged at WARN, none fail.
    assert!(error_times(&sb, "ts-preserve-service").await.is_empty());
}

/// Mean time the preserve service spent in its own code (its segment minus its calls), for the
/// bookings that arrived inside / outside `[from, until]`.
fn preserve_self_time(sb: &Sandbox, o: &Observed) -> (f64, f64) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for r in sb.traffic().requests() {
        let Some(gw) = &r.gateway else { continue };
        let Some(hop) = gw.calls.iter().find_map(|c| c.callee.as_deref()) else {
            continue;
        };
        if hop.app != "ts-preserve-service" {
            continue;
        }
        let calls: i64 = hop.calls.iter().map(|c| c.end_ms - c.start_ms).sum();
        let own = (hop.end_ms - hop.start_ms - calls) as f64;
        if r.at >= o.from && r.at <= o.until {
            inside.push(own);
        } else {
            outside.push(own);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (mean(&inside), mean(&outside))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_stress_on_preserve_slows_its_own_work() {
    let (_d, sb) = started(14);
    let o = experiment(
        &sb,
        "StressChaos",
        "stresschaos",
        json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "StressChaos",
            "metadata": {"name": "cpu", "namespace": NS},
            "spec": {"mode": "all",
                "selector": {"namespaces": [NS], "labelSelectors": {"app": "ts-preserve-service"}},
                "stressors": {"cpu": {"workers": 2, "load": 80}}}}),
    )
    .await;
    healthy_outside(&o);
    assert_eq!(error_share(&o.during, PRESERVE), 0.0);
    // 2 workers × 80%: 1.6 cores burnt, the service's own work takes 2.6 times as long.
    let (inside, outside) = preserve_self_time(&sb, &o);
    assert!(
        inside > 1.8 * outside,
        "inside {inside} ms, outside {outside} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_abort_on_preserve_answers_the_gateways_error() {
    let (_d, sb) = started(3);
    let o = experiment(
        &sb,
        "HTTPChaos",
        "httpchaos",
        json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "HTTPChaos",
            "metadata": {"name": "abort", "namespace": NS},
            "spec": {"mode": "all",
                "selector": {"namespaces": [NS], "labelSelectors": {"app": "ts-preserve-service"}},
                "target": "Request", "port": 14568, "method": "POST",
                "path": "/api/v1/preserveservice/*", "abort": true}}),
    )
    .await;
    healthy_outside(&o);
    assert_eq!(error_share(&o.during, PRESERVE), 1.0);
    assert_eq!(error_share(&o.during, LEFT), 0.0);
    let (_, status, body) = o.during.iter().find(|(p, _, _)| *p == PRESERVE).unwrap();
    assert_eq!(*status, 500, "{body}");
    assert!(body.contains("Connection prematurely closed"), "{body}");
    let ((err_in, _), (err_out, _)) = trace_stats(&sb, &o);
    assert_eq!((err_in, err_out), (1.0, 0.0));
    // The request never reached the preserve service's application: its gateway logs it.
    errors_only_in_window(&sb, "ts-gateway-service", &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jvm_exception_in_order_create_fails_preserve_with_its_message() {
    let (_d, sb) = started(4);
    let o = experiment(
        &sb,
        "ChaosBlade",
        "chaosblades",
        json!({"apiVersion": "chaosblade.io/v1alpha1", "kind": "ChaosBlade",
            "metadata": {"name": "order-exception"},
            "spec": {"experiments": [{"scope": "pod", "target": "jvm",
                "action": "throwCustomException", "desc": "",
                "matchers": [
                    {"name": "namespace", "value": [NS]},
                    {"name": "labels", "value": ["app=ts-order-service"]},
                    {"name": "classname", "value": ["order.service.OrderServiceImpl"]},
                    {"name": "methodname", "value": ["create"]},
                    {"name": "exception", "value": ["java.lang.RuntimeException"]},
                    {"name": "exception-message", "value": ["CHAOS_EXCEPTION_INJECTION"]}]}]}}),
    )
    .await;
    healthy_outside(&o);
    assert_eq!(error_share(&o.during, PRESERVE), 1.0);
    // Trip queries run other order methods (sold tickets), not `create`.
    assert_eq!(error_share(&o.during, LEFT), 0.0);
    let (_, status, body) = o.during.iter().find(|(p, _, _)| *p == PRESERVE).unwrap();
    assert_eq!(*status, 500);
    assert!(
        body.contains("java.lang.RuntimeException: CHAOS_EXCEPTION_INJECTION"),
        "{body}"
    );
    let ((err_in, _), (err_out, _)) = trace_stats(&sb, &o);
    assert_eq!((err_in, err_out), (1.0, 0.0));
    errors_only_in_window(&sb, "ts-order-service", &o).await;
    errors_only_in_window(&sb, "ts-preserve-service", &o).await;
    // The method ran (and threw): the order pod's coverage has it.
    let order_pod = sb.kube().pod_names(NS, "ts-order-service")[0].clone();
    assert!(sb
        .world()
        .calls(&order_pod, false)
        .contains("order.service.OrderServiceImpl#create"));
}

fn blade_return(name: &str, app: &str, class: &str, method: &str, value: &str) -> Value {
    json!({"apiVersion": "chaosblade.io/v1alpha1", "kind": "ChaosBlade",
        "metadata": {"name": name},
        "spec": {"experiments": [{"scope": "pod", "target": "jvm", "action": "return", "desc": "",
            "matchers": [
                {"name": "namespace", "value": [NS]},
                {"name": "labels", "value": [format!("app={app}")]},
                {"name": "classname", "value": [class]},
                {"name": "methodname", "value": [method]},
                {"name": "value", "value": [value]}]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_failure_response_from_the_security_check_refuses_bookings() {
    let (_d, sb) = started(11);
    let value = r#"new edu.fudan.common.util.Response(0, "CHAOS_SECURITY_CHECK_FAILURE", null)"#;
    let blade = blade_return(
        "security",
        "ts-security-service",
        "security.service.SecurityServiceImpl",
        "check",
        value,
    );
    let o = experiment(&sb, "ChaosBlade", "chaosblades", blade).await;
    healthy_outside(&o);
    // `PreserveServiceImpl.preserve` passes the check's refusal on: HTTP 200, status 0.
    for (p, status, body) in o.during.iter().filter(|(p, _, _)| *p == PRESERVE) {
        assert_eq!(*status, 200, "{p}: {body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            v,
            json!({"status": 0, "msg": "CHAOS_SECURITY_CHECK_FAILURE", "data": null})
        );
    }
    assert_eq!(error_share(&o.during, LEFT), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_trip_detail_is_a_null_pointer_in_preserve() {
    let (_d, sb) = started(12);
    let blade = blade_return(
        "travel",
        "ts-travel-service",
        "travel.service.TravelServiceImpl",
        "getTripAllDetailInfo",
        "null",
    );
    let o = experiment(&sb, "ChaosBlade", "chaosblades", blade).await;
    healthy_outside(&o);
    let (_, status, body) = o.during.iter().find(|(p, _, _)| *p == PRESERVE).unwrap();
    assert_eq!(*status, 500, "{body}");
    assert!(body.contains("No message available"), "{body}");
    let c = client(&sb).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c, NS);
    let preserve = sb.kube().pod_names(NS, "ts-preserve-service")[0].clone();
    let log = pods.logs(&preserve, &LogParams::default()).await.unwrap();
    assert!(log.contains("\njava.lang.NullPointerException\n"), "{log}");
    let detail = http(
        &env(&sb, "TT_BASE_URL"),
        "POST",
        "/api/v1/travelservice/trip_detail",
        Some(r#"{"tripId":"G1234"}"#),
    );
    // After the recovery: the detail again.
    assert_eq!(detail.0, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&detail.1).unwrap()["status"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_errors_for_order_from_preserve_fail_its_requests() {
    let (_d, sb) = started(5);
    let o = experiment(
        &sb,
        "DNSChaos",
        "dnschaos",
        json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "DNSChaos",
            "metadata": {"name": "dns", "namespace": NS},
            "spec": {"action": "error", "mode": "one",
                "patterns": ["ts-order-service*", "ts-order-other-service*"],
                "selector": {"namespaces": [NS], "labelSelectors": {"app": "ts-preserve-service"}}}}),
    )
    .await;
    healthy_outside(&o);
    assert_eq!(error_share(&o.during, PRESERVE), 1.0);
    assert_eq!(error_share(&o.during, LEFT), 0.0);
    let (_, status, body) = o.during.iter().find(|(p, _, _)| *p == PRESERVE).unwrap();
    assert_eq!(*status, 500);
    assert!(
        body.contains("java.net.UnknownHostException: ts-order-service"),
        "{body}"
    );
    errors_only_in_window(&sb, "ts-preserve-service", &o).await;
    // The order service was never asked to create an order.
    assert!(error_times(&sb, "ts-order-service").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_and_traffic_give_the_same_answers() {
    let login = r#"{"username":"fdse_microservice","password":"111111"}"#;
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let (_d, sb) = started(seed);
        let c = client(&sb).await;
        chaos_api(&c, NS, "NetworkChaos", "networkchaos")
            .create(
                &Default::default(),
                &serde_json::from_value(network_loss("50")).unwrap(),
            )
            .await
            .unwrap();
        wait("the injection", || !sb.world().faults().is_empty()).await;
        let base = env(&sb, "TT_BASE_URL");
        let mut answers: Vec<(u16, String)> = drive(&sb, 15)
            .into_iter()
            .map(|(_, s, b)| (s, strip_timestamp(&b)))
            .collect();
        answers.push(http(&base, "POST", "/api/v1/users/login", Some(login)));
        runs.push(answers);
    }
    assert_eq!(runs[0], runs[1]);
    // 50% loss: some fail, some succeed, as the seed's noise decides.
    let failed = runs[0].iter().filter(|(s, _)| *s >= 500).count();
    assert!(failed > 0 && failed < runs[0].len(), "{:?}", runs[0]);
    assert_ne!(
        runs[0], runs[2],
        "another seed draws other outcomes and ids"
    );
}

/// Spring's error bodies carry the time of the request.
fn strip_timestamp(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) if v.get("timestamp").is_some() => {
            v["timestamp"] = Value::Null;
            v.to_string()
        }
        _ => body.to_string(),
    }
}

#[test]
fn a_healthy_session_succeeds_on_every_public_endpoint_and_covers_their_methods() {
    let (_d, sb) = started(13);
    let base = env(&sb, "TT_BASE_URL");
    for (method, path, body) in crate::sim::traffic_model::SESSION {
        let (s, b) = http(&base, method, path, *body);
        assert_eq!(s, 200, "{method} {path}: {b}");
        if path.starts_with("/api/") {
            let v: Value = serde_json::from_str(&b).unwrap();
            assert_eq!(v["status"], 1, "{method} {path}: {v}");
        }
    }
    let public = crate::sim::traffic_model::OPS.iter().filter(|o| o.public);
    for op in public {
        assert!(
            crate::sim::traffic_model::SESSION.iter().any(|(m, p, _)| {
                crate::sim::traffic_model::route(m, p).map(|o| o.id) == Some(op.id)
            }),
            "the session misses {}",
            op.id
        );
    }
    // The v2 list (whole traces) and the detail agree on the booking's trace: a segment per
    // service it passed through, linked to its caller's exit span.
    let fmt = "%Y-%m-%d %H%M%S";
    let now = Utc::now();
    let v = gql(
        &sb,
        "query Q($condition: TraceQueryCondition) { queryTraces(condition: $condition) { traces { spans { traceId segmentId spanId serviceCode endpointName type refs { parentSegmentId parentSpanId } } } } }",
        json!({"condition": {
            "queryDuration": {"start": (now - chrono::Duration::minutes(5)).format(fmt).to_string(),
                "end": (now + chrono::Duration::minutes(1)).format(fmt).to_string(), "step": "SECOND"},
            "traceState": "ALL", "queryOrder": "BY_START_TIME",
            "paging": {"pageNum": 1, "pageSize": 100}}}),
    );
    let traces = v["data"]["queryTraces"]["traces"].as_array().unwrap();
    // Every API request but the UI page (nginx, untraced).
    assert_eq!(traces.len(), crate::sim::traffic_model::SESSION.len() - 1);
    let booking = traces
        .iter()
        .find(|t| {
            t["spans"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["endpointName"] == PRESERVE)
        })
        .unwrap();
    let spans = booking["spans"].as_array().unwrap();
    let id = spans[0]["traceId"].as_str().unwrap();
    let detail = gql(
        &sb,
        "query D($traceId: ID!) { queryTrace(traceId: $traceId) { spans { segmentId spanId serviceCode } } }",
        json!({"traceId": id}),
    );
    assert_eq!(
        detail["data"]["queryTrace"]["spans"]
            .as_array()
            .unwrap()
            .len(),
        spans.len()
    );
    let services: std::collections::BTreeSet<&str> = spans
        .iter()
        .map(|s| s["serviceCode"].as_str().unwrap())
        .collect();
    for app in [
        "ts-gateway-service",
        "ts-preserve-service",
        "ts-security-service",
        "ts-order-service",
        "ts-travel-service",
        "ts-basic-service",
        "ts-seat-service",
        "ts-user-service",
    ] {
        assert!(services.contains(app), "{app} not in {services:?}");
    }
    for entry in spans
        .iter()
        .filter(|s| s["type"] == "Entry" && s["serviceCode"] != "ts-gateway-service")
    {
        let r = &entry["refs"][0];
        let parent = spans
            .iter()
            .find(|s| s["segmentId"] == r["parentSegmentId"] && s["spanId"] == r["parentSpanId"])
            .unwrap_or_else(|| panic!("no parent for {entry}"));
        assert_eq!(parent["type"], "Exit", "{entry}");
    }
    // Every service the preserve request passes through ran its endpoint's methods.
    for (app, class, method) in [
        (
            "ts-security-service",
            "security.service.SecurityServiceImpl",
            "check",
        ),
        (
            "ts-order-service",
            "order.service.OrderServiceImpl",
            "create",
        ),
        (
            "ts-travel-service",
            "travel.service.TravelServiceImpl",
            "getTripAllDetailInfo",
        ),
        (
            "ts-seat-service",
            "seat.service.SeatServiceImpl",
            "distributeSeat",
        ),
    ] {
        let pod = sb.kube().pod_names(NS, app)[0].clone();
        let calls = sb.world().calls(&pod, false);
        assert!(
            calls.contains(&format!("{class}#{method}")),
            "{app}: {calls:?}"
        );
    }
}

#[test]
fn the_front_serves_the_ui_and_the_gateway_answers_404_for_unknown_routes() {
    let (_d, sb) = started(9);
    let base = env(&sb, "TT_BASE_URL");
    let (s, b) = http(&base, "GET", "/", None);
    assert_eq!(s, 200);
    assert!(b.contains("<title>Train Ticket</title>"));
    let (s, b) = http(&base, "GET", "/api/v1/nosuchservice/x", None);
    assert_eq!(s, 404, "{b}");
    let (s, b) = http(&base, "GET", LEFT, None);
    assert_eq!(s, 405, "{b}");
    assert!(b.contains("Request method 'GET' not supported"), "{b}");
    let (s, b) = http(
        &base,
        "POST",
        "/api/v1/users/login",
        Some(r#"{"username":"fdse_microservice","password":"wrong"}"#),
    );
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["status"], 0, "{v}");
    let (s, b) = http(&base, "GET", "/api/v1/orderservice/order/abc-1", None);
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["status"].clone(), v["data"]["id"].clone()),
        (json!(1), json!("abc-1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pod_leaves_a_gap_of_503s_and_its_replacement_a_log_of_its_own() {
    let (_d, sb) = started(10);
    drive(&sb, 3);
    let old = sb.kube().pod_names(NS, "ts-preserve-service")[0].clone();
    assert!(sb.kube().delete_pod(NS, &old));
    wait("the replacement to be Ready", || {
        sb.kube().list("", "pods").iter().any(|p| {
            p["metadata"]["labels"]["app"] == "ts-preserve-service"
                && p["metadata"]["name"] != old.as_str()
                && p["status"]["phase"] == "Running"
        })
    })
    .await;
    let lives: Vec<_> = sb
        .world()
        .pods()
        .into_iter()
        .filter(|p| p.labels.get("app").map(String::as_str) == Some("ts-preserve-service"))
        .collect();
    let (gone, new) = (lives[0].deleted.unwrap(), lives[1].created);
    // Requests arriving after the deletion, before or while the replacement starts, find no
    // Ready pod behind the Service: the gateway cannot route them.
    for at in [gone + (new - gone) / 2, new] {
        let a = sb
            .traffic()
            .handle_at("POST", PRESERVE, PRESERVE_BODY.as_bytes(), at);
        assert_eq!(a.status, 503, "{}", a.body);
        assert!(
            a.body
                .contains("Unable to find instance for ts-preserve-service"),
            "{}",
            a.body
        );
    }
    drive(&sb, 3);
    // The new pod's log starts with its own start-up and holds only its own requests.
    let c = client(&sb).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c, NS);
    let log = pods
        .logs(&lives[1].name, &LogParams::default())
        .await
        .unwrap();
    assert!(
        log.starts_with(&lives[1].created.format("%Y-%m-%d %H:%M:%S").to_string()),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Starting PreserveApplication on {}",
            lives[1].name
        )),
        "{log}"
    );
    assert_eq!(log.matches("[Step 1] Check Security").count(), 3, "{log}");
    // Its previous instance does not exist: the old pod was another pod.
    assert!(pods
        .logs(
            &lives[1].name,
            &LogParams {
                previous: true,
                ..Default::default()
            }
        )
        .await
        .is_err());
}
