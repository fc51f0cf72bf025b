//! The sandbox's fake SkyWalking OAP as a standalone process, for `scripts/bench-traces.sh`.
//!
//! `fake_skywalking --traces 5000 --segments 5 --spans-per-segment 5 --latency-ms 20`
//! prints `URL http://127.0.0.1:PORT` and serves on loopback until killed or stdin closes.

use ttplan_sandbox::skywalking;

use std::io::{BufRead, Write};
use std::time::Duration;

fn main() {
    let mut opts = skywalking::Options {
        segments: Some(5),
        spacing_ms: 50,
        schema_dir: skywalking::fixtures_dir(),
        pregenerate: true,
        ..skywalking::Options::default()
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.chunks(2);
    while let Some([k, v]) = it.next() {
        let n: usize = v
            .parse()
            .unwrap_or_else(|_| panic!("{k}: `{v}` is not a number"));
        match k.as_str() {
            "--traces" => opts.traces = n,
            "--segments" => opts.segments = Some(n),
            "--spans-per-segment" => opts.spans_per_segment = n,
            "--latency-ms" => opts.latency = Duration::from_millis(n as u64),
            other => panic!("unknown flag {other}"),
        }
    }
    let fake = skywalking::FakeSkyWalking::start(opts);
    println!("URL {}", fake.url());
    std::io::stdout().flush().unwrap();
    // Serve until the driving script closes our stdin (or kills us).
    for _ in std::io::stdin().lock().lines() {}
    let s = fake.stats();
    eprintln!(
        "fake: {} requests, {} rejected",
        s.requests.load(std::sync::atomic::Ordering::Relaxed),
        fake.rejected().len()
    );
}
