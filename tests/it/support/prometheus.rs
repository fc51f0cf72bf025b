//! A real Prometheus server for tests: a known OpenMetrics dataset is backfilled with
//! `promtool tsdb create-blocks-from openmetrics` and served from a temporary folder on a free
//! loopback port. The server is killed when the guard drops.
//!
//! Missing `prometheus`/`promtool` is a test failure with instructions, never a silent skip.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Panics with what to do when the binaries are missing.
pub fn require_tools() {
    for tool in ["prometheus", "promtool"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is not on PATH: the collect-metrics tests need a real Prometheus. \
             Install it with `bash scripts/deps/metrics.sh` (Debian package `prometheus`), \
             or run `bash scripts/test.sh`, which does that first."
        );
    }
}

/// The server's major version (range selectors changed from `[t-r, t]` to `(t-r, t]` in 3.0).
pub fn major_version() -> u32 {
    let out = Command::new("prometheus")
        .arg("--version")
        .output()
        .expect("prometheus --version");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.split("version ")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or(2)
}

/// One series of the dataset: labels (without `__name__`) and samples `(epoch ms, value)`.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(i64, f64)>,
}

/// One metric family.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    /// `gauge` or `counter` (samples of a counter are named `<name>_total`).
    pub kind: &'static str,
    pub series: Vec<Series>,
}

/// Prometheus' text for a float: Go's `FormatFloat(v, 'f', -1, 64)`, which Rust's shortest
/// round-trip `Display` matches for finite values.
pub fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The OpenMetrics exposition of `families`, timestamps in seconds, ending `# EOF`.
pub fn openmetrics(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        writeln!(out, "# TYPE {} {}", f.name, f.kind).unwrap();
        for s in &f.series {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            for (ms, v) in &s.samples {
                let ts = if ms % 1000 == 0 {
                    format!("{}", ms / 1000)
                } else {
                    format!("{}.{:03}", ms / 1000, ms % 1000)
                };
                writeln!(out, "{}{labels} {} {ts}", s.name, prom_float(*v)).unwrap();
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A running server; killed on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    /// The backfilled TSDB, removed after the server.
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Backfills `data` (OpenMetrics text) and starts a server on it.
    pub fn start(data: &str) -> Prometheus {
        require_tools();
        let dir = tempfile::tempdir().unwrap();
        let om = dir.path().join("data.om");
        std::fs::write(&om, data).unwrap();
        let tsdb = dir.path().join("tsdb");
        std::fs::create_dir_all(&tsdb).unwrap();
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&tsdb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&om).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        Self::serve(dir, &config, &tsdb)
    }

    fn serve(dir: tempfile::TempDir, config: &Path, tsdb: &Path) -> Prometheus {
        let log_path = dir.path().join("prometheus.log");
        // A port found free can be taken before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=100y")
                .arg("--log.level=warn")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting prometheus");
            let addr = format!("127.0.0.1:{port}");
            match wait_ready(&mut child, &addr, Duration::from_secs(60)) {
                Ok(()) => {
                    return Prometheus {
                        child,
                        url: format!("http://{addr}"),
                        _dir: dir,
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("{e}\n{}", read_log(&log_path));
                    if !last.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("prometheus did not become ready: {last}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/-/ready` until 200, the child exits, or `limit` passes.
fn wait_ready(child: &mut Child, addr: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("prometheus exited early with {status}"));
        }
        if http_status(addr, "/-/ready") == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bare HTTP/1.0 GET, enough to poll `/-/ready`.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}
