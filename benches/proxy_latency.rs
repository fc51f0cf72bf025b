//! Added latency of the recording proxy, measured side by side in one run on loopback:
//! the same requests go to a local server directly and through the proxy, in bursts of
//! `CONCURRENCY` concurrent requests (plus a sequential pass, where queueing does not hide the
//! per-request cost). Reports p50/p99 of both and the difference and ratio.
//!
//! `cargo bench --bench proxy_latency` (or `scripts/bench-proxy.sh`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ttplan::traffic::record::RecordTags;
use ttplan::traffic::{Phase, Proxy, ProxyOptions, RecordOptions, RecordWriter};

const CONCURRENCY: usize = 200;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(
        serde_json::json!({"status": 1, "msg": "ok", "data": {"items": (0..20).collect::<Vec<_>>()}})
            .to_string(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn one(client: &HttpClient, url: &str) -> Duration {
    let t = Instant::now();
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer x")
        .body(Full::new(Bytes::from_static(
            br#"{"username":"u","password":"p"}"#,
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert!(resp.status().is_success());
    resp.into_body().collect().await.unwrap();
    t.elapsed()
}

async fn burst(client: &HttpClient, base: &str, n: usize) -> Vec<Duration> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = client.clone();
        let url = format!("{base}/api/v1/item/{i}?q={i}");
        set.spawn(async move { one(&c, &url).await });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(d) = set.join_next().await {
        out.push(d.unwrap());
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(label: &str, mut direct: Vec<Duration>, mut proxied: Vec<Duration>) {
    direct.sort();
    proxied.sort();
    for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
        let (d, x) = (pct(&direct, p), pct(&proxied, p));
        println!(
            "{label:<26} {name}: direct {d:8.3} ms  proxied {x:8.3} ms  added {:8.3} ms  ratio {:5.2}x",
            x - d,
            x / d
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and then a short
    // smoke run checks the benchmark still works without spending minutes in a debug build.
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, sequential): (u32, usize) = if full { (10, 200) } else { (1, 10) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let upstream = server().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api_responses.jsonl");
        let (writer, sink) = RecordWriter::create(&path).unwrap();
        let proxy = Proxy::start(
            ProxyOptions {
                upstream: format!("http://{upstream}").parse().unwrap(),
                record: RecordOptions::new(64 * 1024, &[], &[]),
                tags: RecordTags {
                    run_id: "bench".into(),
                    exp_name: "bench".into(),
                    step: "bench".into(),
                    attempt: 1,
                },
            },
            Arc::new(Phase::default()),
            sink,
        )
        .await
        .unwrap();
        let direct_url = format!("http://{upstream}");
        let proxy_url = proxy.url();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);

        // Warm-up: connection pools on both paths.
        burst(&client, &direct_url, CONCURRENCY).await;
        burst(&client, &proxy_url, CONCURRENCY).await;

        let (mut direct, mut proxied) = (Vec::new(), Vec::new());
        let (mut wall_d, mut wall_p) = (Duration::ZERO, Duration::ZERO);
        for round in 0..rounds {
            // Alternate the order so neither path always runs on a warmer machine.
            for first_direct in [round % 2 == 0, round % 2 != 0] {
                let t = Instant::now();
                if first_direct {
                    direct.extend(burst(&client, &direct_url, CONCURRENCY).await);
                    wall_d += t.elapsed();
                } else {
                    proxied.extend(burst(&client, &proxy_url, CONCURRENCY).await);
                    wall_p += t.elapsed();
                }
            }
        }
        let (mut seq_d, mut seq_p) = (Vec::new(), Vec::new());
        for i in 0..sequential {
            seq_d.push(one(&client, &format!("{direct_url}/api/v1/item/{i}")).await);
            seq_p.push(one(&client, &format!("{proxy_url}/api/v1/item/{i}")).await);
        }

        println!(
            "proxy latency: {rounds} rounds x {CONCURRENCY} concurrent requests per path, \
             then {sequential} sequential; loopback, small JSON bodies, recording on"
        );
        report(
            &format!("{CONCURRENCY} concurrent"),
            direct.clone(),
            proxied.clone(),
        );
        report("sequential", seq_d, seq_p);
        println!(
            "burst wall time (mean)     direct {:8.3} ms  proxied {:8.3} ms  ratio {:5.2}x",
            wall_d.as_secs_f64() * 1e3 / f64::from(rounds),
            wall_p.as_secs_f64() * 1e3 / f64::from(rounds),
            wall_p.as_secs_f64() / wall_d.as_secs_f64()
        );

        drop(client);
        proxy.shutdown().await;
        let rec = writer.finish().await.unwrap();
        let expected = (CONCURRENCY * (rounds as usize + 1) + sequential) as u64;
        println!(
            "records written: {} (expected {expected}), {} bytes",
            rec.records,
            std::fs::metadata(&rec.path).unwrap().len()
        );
        assert_eq!(rec.records, expected, "the proxy lost records");
    });
}
