//! The simulated Prometheus against a fake cluster whose history a test writes: fault records
//! as the Chaos Mesh controller writes them (`ChaosTimestamp`), pod lives as its workload
//! controller does, at chosen instants around the sandbox's start.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::eval::{self, Output};
use super::model::{Model, SCRAPE_MS};
use super::{api_call, Form, State};
use crate::kube_fake::{ChaosTimestamp, FakeKube, PodLife};
use crate::world::World;

const NS: &str = "default";

struct Fixture {
    kube: FakeKube,
    world: World,
    started: DateTime<Utc>,
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        let kube = FakeKube::builder().train_ticket(NS).start();
        let world = World::new(&kube, seed);
        Fixture {
            kube,
            world,
            started: Utc::now(),
        }
    }

    fn at(&self, mins: i64) -> DateTime<Utc> {
        self.started + Duration::minutes(mins)
    }

    fn pod(&self, app: &str) -> String {
        self.kube.pod_names(NS, app)[0].clone()
    }

    /// A fault on `pod` from minute `from` to minute `to` after the start.
    fn fault(&self, kind: &str, pod: &str, spec: Value, from: i64, to: i64) {
        let shared = self.kube.shared();
        let mut tl = shared
            .chaos_timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // `to == i64::MAX`: still active.
        let ops: &[(&str, i64)] = if to == i64::MAX {
            &[("Apply", from)]
        } else {
            &[("Apply", from), ("Recover", to)]
        };
        for &(op, m) in ops {
            // Sub-millisecond instants, as the controller's clock gives them.
            let at = self.at(m) + Duration::nanoseconds(123_456);
            tl.push(ChaosTimestamp {
                kind: kind.into(),
                namespace: NS.into(),
                name: "f".into(),
                target: format!("{NS}/{pod}"),
                operation: op.into(),
                at,
                spec: spec.clone(),
            });
        }
    }

    fn state(&self) -> State {
        State {
            world: self.world.clone(),
            started: self.started,
            scrape_ms: SCRAPE_MS,
            cache: std::sync::Mutex::new(None),
        }
    }

    /// `query_range` from minute `from` to `to` (step 15 s), answered at minute `now`.
    fn range(&self, q: &str, from: i64, to: i64, now: i64) -> Value {
        let form = Form(vec![
            ("query".into(), q.into()),
            ("start".into(), self.at(from).to_rfc3339()),
            ("end".into(), self.at(to).to_rfc3339()),
            ("step".into(), "15s".into()),
        ]);
        let data = api_call(&self.state(), "query_range", &form, self.at(now))
            .unwrap_or_else(|e| panic!("{q}: {e:?}"))
            .expect("endpoint");
        serde_json::from_str(&data).expect("JSON")
    }
}

/// `(unix seconds, value)` of a matrix's only series.
fn points(data: &Value) -> Vec<(f64, f64)> {
    let result = data["result"].as_array().expect("result");
    assert_eq!(result.len(), 1, "{data}");
    result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            (
                p[0].as_f64().expect("time"),
                p[1].as_str().expect("value").parse().expect("number"),
            )
        })
        .collect()
}

fn mean(p: &[(f64, f64)], from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let (a, b) = (from.timestamp() as f64, to.timestamp() as f64);
    let v: Vec<f64> = p
        .iter()
        .filter(|(t, _)| *t >= a && *t <= b)
        .map(|x| x.1)
        .collect();
    assert!(!v.is_empty(), "no points in the window");
    v.iter().sum::<f64>() / v.len() as f64
}

const CPU: &str = r#"sum(rate(container_cpu_usage_seconds_total{namespace="default", pod=~"ts-preserve-service-.*", container!="", container!="POD"}[1m]))"#;
const ERRORS: &str = r#"(sum(rate(http_requests_total{namespace="default", code=~"5.."}[1m])) or vector(0)) / sum(rate(http_requests_total{namespace="default"}[1m]))"#;

#[test]
fn stress_chaos_raises_the_targets_cpu_only_inside_its_window() {
    let f = Fixture::new(7);
    let pod = f.pod("ts-preserve-service");
    f.fault(
        "StressChaos",
        &pod,
        json!({"stressors": {"cpu": {"workers": 2, "load": 80}}}),
        10,
        20,
    );
    let p = points(&f.range(CPU, -30, 30, 30));
    let before = mean(&p, f.at(-30), f.at(9));
    let during = mean(&p, f.at(12), f.at(20));
    let after = mean(&p, f.at(22), f.at(30));
    assert!(before > 0.0 && before < 0.2, "{before}");
    // 1.6 cores of stress against a 500m limit: the service sits at its quota.
    assert!(during > 0.45 && during <= 0.5, "{during}");
    assert!(during > 3.0 * before, "{before} {during}");
    assert!((after - before).abs() < before, "{before} {after}");
    // The quota throttles: the throttled-periods rate only climbs inside the window.
    let q = r#"sum(rate(container_cpu_cfs_throttled_periods_total{pod=~"ts-preserve-service-.*", container!=""}[1m]))"#;
    let t = points(&f.range(q, -30, 30, 30));
    assert!(mean(&t, f.at(12), f.at(20)) > 10.0 * mean(&t, f.at(-30), f.at(9)));
    // Another service is untouched.
    let other = CPU.replace("ts-preserve-service", "ts-order-service");
    let o = points(&f.range(&other, -30, 30, 30));
    assert!(mean(&o, f.at(12), f.at(20)) < 0.2);
}

#[test]
fn a_fault_not_yet_recovered_shows_until_now() {
    let f = Fixture::new(7);
    let pod = f.pod("ts-preserve-service");
    f.fault(
        "StressChaos",
        &pod,
        json!({"stressors": {"cpu": {"workers": 2, "load": 80}}}),
        10,
        i64::MAX,
    );
    let p = points(&f.range(CPU, -10, 20, 20));
    assert!(mean(&p, f.at(12), f.at(20)) > 3.0 * mean(&p, f.at(-10), f.at(9)));
}

#[test]
fn memory_and_io_stress_show_in_working_set_and_disk_writes() {
    let f = Fixture::new(7);
    let pod = f.pod("ts-preserve-service");
    f.fault(
        "StressChaos",
        &pod,
        json!({"stressors": {"memory": {"workers": 1, "size": "50%"}}, "stressngStressors": "--iomix 2"}),
        10,
        20,
    );
    let ws = r#"sum(container_memory_working_set_bytes{pod=~"ts-preserve-service-.*", container!="", container!="POD"})"#;
    let p = points(&f.range(ws, -10, 30, 30));
    let (before, during) = (mean(&p, f.at(-10), f.at(9)), mean(&p, f.at(11), f.at(19)));
    assert!(
        during - before > 900.0 * 1024.0 * 1024.0,
        "{before} {during}"
    );
    let io = r#"sum(rate(container_fs_writes_bytes_total{pod=~"ts-preserve-service-.*", container!="", container!="POD"}[1m]))"#;
    let p = points(&f.range(io, -10, 30, 30));
    assert!(mean(&p, f.at(12), f.at(19)) > 50.0 * mean(&p, f.at(-10), f.at(9)));
}

#[test]
fn a_killed_pod_leaves_a_ready_gap_and_its_series_stop() {
    let f = Fixture::new(7);
    let old = f.pod("ts-order-service");
    {
        let shared = f.kube.shared();
        let mut st = shared.lock();
        let life = st
            .pod_history
            .iter_mut()
            .find(|p| p.name == old)
            .expect("pod");
        life.deleted = Some(f.at(5));
        let mut new: PodLife = life.clone();
        new.name = format!("{old}x");
        new.created = f.at(5) + Duration::seconds(1);
        new.deleted = None;
        new.ready = Some(f.at(6));
        st.pod_history.push(new);
    }
    let q = r#"sum(kube_pod_status_ready{condition="true", namespace="default", pod=~"ts-order-service-.*"})"#;
    let p = points(&f.range(q, -10, 20, 20));
    assert_eq!(mean(&p, f.at(-10), f.at(4)), 1.0);
    let gap: Vec<f64> = p
        .iter()
        .filter(|(t, _)| *t > f.at(5).timestamp() as f64 + 15.0 && *t < f.at(6).timestamp() as f64)
        .map(|x| x.1)
        .collect();
    assert!(!gap.is_empty() && gap.iter().all(|v| *v == 0.0), "{gap:?}");
    assert_eq!(mean(&p, f.at(7), f.at(20)), 1.0);
    // The old pod's CPU series ends (a staleness marker), the new one starts at 0.
    let q = format!(
        r#"container_cpu_usage_seconds_total{{pod="{old}", container="ts-order-service"}}"#
    );
    let p = points(&f.range(&q, -10, 20, 20));
    let (last, old_total) = *p.last().expect("points");
    assert!(last < f.at(5).timestamp() as f64 + 15.0, "{last}");
    let q = format!(
        r#"container_cpu_usage_seconds_total{{pod="{old}x", container="ts-order-service"}}"#
    );
    let p = points(&f.range(&q, -10, 20, 20));
    assert!(p[0].0 >= f.at(5).timestamp() as f64);
    // At most one scrape interval at the 500m limit since the new container started.
    assert!(p[0].1 <= 7.5 && p[0].1 < old_total / 10.0, "{p:?}");
    assert!(
        p.windows(2).all(|w| w[1].1 >= w[0].1),
        "counter not monotonic"
    );
    // Restart counts stay 0: the killed pod is replaced, not restarted.
    let q = r#"max(kube_pod_container_status_restarts_total{pod=~"ts-order-service-.*"})"#;
    assert!(points(&f.range(q, -10, 20, 20)).iter().all(|x| x.1 == 0.0));
}

#[test]
fn network_loss_raises_the_error_share() {
    let f = Fixture::new(7);
    let pod = f.pod("ts-preserve-service");
    f.fault(
        "NetworkChaos",
        &pod,
        json!({"action": "loss", "loss": {"loss": "90", "correlation": "0"}}),
        10,
        20,
    );
    let p = points(&f.range(ERRORS, -10, 30, 30));
    let before = mean(&p, f.at(-10), f.at(9));
    let during = mean(&p, f.at(12), f.at(20));
    assert!(before < 0.01, "{before}");
    assert!(during > before + 0.01, "{before} {during} {p:?}");
    // The affected service's own share is about the loss.
    let own = ERRORS.replace(
        r#"namespace="default""#,
        r#"namespace="default", service="ts-preserve-service""#,
    );
    let p = points(&f.range(&own, -10, 30, 30));
    assert!(mean(&p, f.at(12), f.at(19)) > 0.8);
}

#[test]
fn the_same_seed_gives_the_same_series_and_another_seed_others() {
    let f = Fixture::new(7);
    let a = f.range(CPU, -20, 0, 1);
    let b = f.range(CPU, -20, 0, 1);
    assert_eq!(a, b);
    // A fresh model of the same history: the same data.
    let m1 = Model::build(&f.world, f.started, SCRAPE_MS);
    let m2 = Model::build(&f.world, f.started, SCRAPE_MS);
    let steps: Vec<i64> = (0..40)
        .map(|k| f.at(-10).timestamp_millis() + k * 15_000)
        .collect();
    let expr = promql_parser::parser::parse("node_cpu_seconds_total").expect("parse");
    let values = |m: &Model| match eval::evaluate(&expr, &steps, &m.at(f.at(1))).expect("eval") {
        Output::Vector(v) => v
            .iter()
            .map(|s| s.iter().map(|e| e.value).sum::<f64>())
            .collect::<Vec<f64>>(),
        Output::Scalar(_) => panic!("scalar"),
    };
    assert_eq!(values(&m1), values(&m2));
    let other = World::new(&f.kube, 8);
    let m3 = Model::build(&other, f.started, SCRAPE_MS);
    assert_ne!(values(&m1), values(&m3));
}

/// Every query of the campaign's plans: the published sets and `pods`
/// (plans/base/metrics.yaml), the error-rate query (plans/base/train-ticket.yaml) and the
/// experiments' effect probes (plans/lv_*.yaml), with the plans' own variables.
fn campaign_queries() -> Vec<String> {
    let plans = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans");
    let read = |p: &std::path::Path| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(p).expect("plan")).expect("YAML")
    };
    let metrics = read(&plans.join("base/metrics.yaml"));
    let tt = read(&plans.join("base/train-ticket.yaml"));
    let vars = |q: &str| {
        q.replace("{{ namespace }}", NS)
            .replace("{{ ts_pods }}", "ts-.*")
            .replace("{{ rate_window }}", "1m")
    };
    let error_rate = vars(
        tt["vars"]["error_rate_query"]
            .as_str()
            .expect("error_rate_query"),
    );
    let mut out: Vec<String> = Vec::new();
    for set in metrics["vars"]["metric_sets"]
        .as_mapping()
        .expect("metric_sets")
        .values()
    {
        for q in set.as_sequence().expect("set") {
            let q = q.as_str().or_else(|| q["query"].as_str()).expect("query");
            if !out.contains(&vars(q)) {
                out.push(vars(q));
            }
        }
    }
    let mut entries: Vec<_> = std::fs::read_dir(&plans)
        .expect("plans")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lv_"))
        })
        .collect();
    entries.sort();
    for p in entries {
        if let Some(q) = read(&p)["steps"]["effect"]["query"].as_str() {
            let q = q.replace("{{ error_rate_query }}", &error_rate);
            out.push(vars(&q));
        }
    }
    out.push(error_rate);
    out
}

#[test]
fn every_campaign_query_evaluates_with_data() {
    let f = Fixture::new(7);
    let queries = campaign_queries();
    // 33 published + 7 pods + 14 effects + the error rate.
    assert!(queries.len() >= 45, "{}", queries.len());
    let state = Arc::new(f.state());
    let t0 = std::time::Instant::now();
    let m = state.model();
    eprintln!("model build {:?}, {} series", t0.elapsed(), m.len());
    let view = m.at(f.at(0));
    let t0 = std::time::Instant::now();
    let expr = promql_parser::parser::parse("node_cpu_seconds_total").expect("parse");
    let steps: Vec<i64> = (0..41)
        .map(|k| f.at(-10).timestamp_millis() + k * 15_000)
        .collect();
    let _ = eval::evaluate(&expr, &steps, &view).expect("eval");
    eprintln!("eval node_cpu {:?}", t0.elapsed());
    let mut total = std::time::Duration::ZERO;
    for q in &queries {
        let one = std::time::Instant::now();
        let form = Form(vec![
            ("query".into(), q.clone()),
            ("start".into(), f.at(-10).to_rfc3339()),
            ("end".into(), f.at(0).to_rfc3339()),
            ("step".into(), "15".into()),
        ]);
        let data = api_call(&state, "query_range", &form, f.at(0))
            .unwrap_or_else(|e| panic!("{q}: {e:?}"))
            .expect("endpoint");
        total += one.elapsed();
        let v: Value = serde_json::from_str(&data).expect("JSON");
        let result = v["result"].as_array().expect("result");
        assert!(!result.is_empty(), "{q}: no series");
        for s in result {
            assert_eq!(
                s["values"].as_array().map(Vec::len),
                Some(41),
                "{q}: {}",
                s["metric"]
            );
        }
    }
    eprintln!(
        "{} queries over 10 minutes at 15 s: {total:?} (answers, without reading them)",
        queries.len(),
    );
}

#[test]
fn parameters_parse_as_prometheus_parses_them() {
    use super::{parse_duration, parse_time, prom_float, prom_time};
    assert_eq!(parse_time("1700000000.2504"), Ok(1_700_000_000_250));
    assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
    assert_eq!(
        parse_time("2023-11-14T23:13:20+01:00"),
        Ok(1_700_000_000_000)
    );
    assert_eq!(
        parse_time("soon"),
        Err("cannot parse \"soon\" to a valid timestamp".into())
    );
    // Far beyond Prometheus' range: clamped, not overflowed.
    assert!(parse_time("1e300").is_ok_and(|t| t > 0));
    assert!(parse_time("-1e300").is_ok_and(|t| t < 0));
    assert_eq!(parse_duration("15"), Ok(15_000_000_000));
    assert_eq!(parse_duration("0.5"), Ok(500_000_000));
    assert_eq!(parse_duration("1h30m"), Ok(5_400_000_000_000));
    assert_eq!(parse_duration("1m500ms"), Ok(60_500_000_000));
    assert!(parse_duration("30m1h").is_err());
    assert_eq!(
        parse_duration("fast"),
        Err("cannot parse \"fast\" to a valid duration".into())
    );
    assert_eq!(prom_time(1_700_000_000_000), "1700000000");
    assert_eq!(prom_time(1_700_000_000_050), "1700000000.050");
    assert_eq!(prom_float(0.1), "0.1");
    assert_eq!(prom_float(1e21), "1000000000000000000000");
    assert_eq!(prom_float(f64::NAN), "NaN");
    assert_eq!(prom_float(f64::NEG_INFINITY), "-Inf");
}

#[test]
fn errors_have_prometheus_types_and_texts() {
    let f = Fixture::new(7);
    let state = f.state();
    let call = |api: &str, pairs: &[(&str, &str)]| {
        let form = Form(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        api_call(&state, api, &form, f.at(0))
    };
    let range = |q: &str, start: &str, end: &str, step: &str| {
        call(
            "query_range",
            &[("query", q), ("start", start), ("end", end), ("step", step)],
        )
        .expect_err("an error")
    };
    let e = range("up", "x", "2", "1");
    assert_eq!(e.error_type, "bad_data");
    assert_eq!(
        e.error,
        "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"
    );
    assert_eq!(
        range("up", "2", "1", "1").error,
        "invalid parameter \"end\": end timestamp must not be before start time"
    );
    assert_eq!(
        range("up", "1", "2", "0").error,
        "invalid parameter \"step\": zero or negative query resolution step widths are not \
         accepted. Try a positive integer"
    );
    assert_eq!(
        range("up", "0", "11001", "1").error,
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the \
         query resolution (?step=XX)"
    );
    assert!(call(
        "query_range",
        &[
            ("query", "up"),
            ("start", "0"),
            ("end", "11000"),
            ("step", "1")
        ]
    )
    .is_ok());
    let e = range("topk(3, up)", "1", "2", "1");
    assert_eq!(e.error_type, "bad_data");
    assert_eq!(
        e.error,
        "invalid parameter \"query\": the aggregation topk not supported by the sandbox"
    );
    let e = call("query", &[("query", "sum(up")]).expect_err("parse error");
    assert_eq!(e.error_type, "bad_data");
    assert!(
        e.error.starts_with("invalid parameter \"query\": "),
        "{}",
        e.error
    );
    let body: Value = serde_json::from_str(&super::error_body(&e)).expect("JSON");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    let e = call("series", &[]).expect_err("no match[]");
    assert_eq!(e.error, "no match[] parameter provided");
}

#[test]
fn metadata_endpoints_list_labels_values_and_series() {
    let f = Fixture::new(7);
    let state = f.state();
    let call = |api: &str, pairs: &[(&str, &str)]| -> Value {
        let form = Form(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        serde_json::from_str(
            &api_call(&state, api, &form, f.at(0))
                .expect("ok")
                .expect("endpoint"),
        )
        .expect("JSON")
    };
    let labels = call("labels", &[]);
    for l in [
        "__name__",
        "namespace",
        "pod",
        "container",
        "node",
        "instance",
        "job",
        "code",
    ] {
        assert!(
            labels.as_array().expect("array").iter().any(|x| x == l),
            "{l}"
        );
    }
    let jobs = call("label/job/values", &[]);
    for j in [
        "kubelet",
        "node-exporter",
        "kube-state-metrics",
        "ts-order-service",
    ] {
        assert!(
            jobs.as_array().expect("array").iter().any(|x| x == j),
            "{j}"
        );
    }
    let s = call(
        "series",
        &[(
            "match[]",
            r#"kube_pod_status_ready{pod=~"ts-order-service-.*", condition="true"}"#,
        )],
    );
    assert_eq!(s.as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s[0]["job"], "kube-state-metrics");
    // A window before the history has no series.
    let s = call(
        "series",
        &[
            ("match[]", "up"),
            ("end", &f.at(-120).timestamp().to_string()),
        ],
    );
    assert_eq!(s, json!([]));
}

#[test]
fn the_server_answers_get_and_post_like_prometheus() {
    let f = Fixture::new(7);
    let prom = super::FakePrometheus::start(f.world.clone(), f.started);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let addr = prom.url().trim_start_matches("http://").to_string();
        let send = |req: String| {
            let addr = addr.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
                s.write_all(req.as_bytes()).await.expect("write");
                let mut out = String::new();
                s.read_to_string(&mut out).await.expect("read");
                out
            }
        };
        let get = send(format!(
            "GET /api/v1/query?query=up%7Bjob%3D%22kube-state-metrics%22%7D HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert!(get.starts_with("HTTP/1.1 200"), "{get}");
        assert!(get.contains(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","#), "{get}");
        let body = "query=sum(up)+%2F+2&time=";
        let post = send(format!(
            "POST /api/v1/query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        assert!(post.contains(r#""resultType":"vector""#), "{post}");
        let bad = send(format!(
            "GET /api/v1/query?query=quantile(0.5,up) HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        assert!(bad.contains(r#""errorType":"bad_data""#), "{bad}");
        let ready = send(format!("GET /-/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await;
        assert!(ready.ends_with("Prometheus Server is Ready.\n"), "{ready}");
    });
}
