//! The sandbox's fake Kubernetes API server as a standalone process, for
//! `scripts/bench-logs.sh`: `--pods N` bare pods `bench-<i>` in `default`, each with one
//! container whose log is `--lines L` generated lines of `--width W` characters (1 ms apart,
//! the last one "now").
//!
//! `fake_kube_logs --pods 60 --lines 20000 --width 199 --dir DIR` writes `DIR/kubeconfig`,
//! prints `KUBECONFIG <path>` and serves on loopback until stdin closes.

use ttplan_sandbox::kube_fake;

use std::io::{BufRead, Write};
use std::path::PathBuf;

use kube_fake::{ContainerSeed, FakeKube, LogSource, PodSeed};

fn main() {
    let (mut pods, mut lines, mut width, mut dir) = (60u64, 20_000u64, 199u64, PathBuf::from("."));
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [k, v] = pair else {
            panic!("flags come in pairs: {args:?}")
        };
        let num = || -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{k}: `{v}` is not a number"))
        };
        match k.as_str() {
            "--pods" => pods = num(),
            "--lines" => lines = num(),
            "--width" => width = num(),
            "--dir" => dir = PathBuf::from(v),
            other => panic!("unknown flag {other}"),
        }
    }
    let mut builder = FakeKube::builder();
    for i in 0..pods {
        builder =
            builder.pod(PodSeed::new(&format!("bench-{i:03}"), "default").container(
                ContainerSeed::new("app").log(LogSource::generated(lines, width as usize)),
            ));
    }
    let fake = builder.start();
    let kubeconfig = fake.write_kubeconfig(&dir);
    println!("KUBECONFIG {}", kubeconfig.display());
    std::io::stdout().flush().unwrap();
    // Serve until the driving script closes our stdin (or kills us).
    for _ in std::io::stdin().lock().lines() {}
    let logs = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/log"))
        .count();
    eprintln!("fake: {logs} log requests");
}
