//! `api-driver` end to end: the real `ttplan` binary, a real Python `requests` driver, the
//! recording proxy, and a local upstream that remembers what it received.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::traffic::{require_python_requests, Project, Run};
use ttplan_sandbox::upstream::{dead_port, large_body, Upstream, LOGIN_PASSWORD, LOGIN_TOKEN};

fn jsonl(run: &Run) -> (String, Vec<Value>) {
    let m = run.manifest();
    let started = m["run"]["started_at"].as_str().unwrap();
    let day = started[..10].replace('-', "");
    let path = run
        .out
        .join("api_responses")
        .join(&run.exp)
        .join(day)
        .join("api_responses.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), run.stderr()));
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect();
    (text, lines)
}

fn step<'a>(m: &'a Value, name: &str) -> &'a Value {
    &m["steps"][name]
}

fn assert_success(run: &Run) {
    assert_eq!(run.code(), Some(0), "ttplan failed:\n{}", run.stderr());
}

const DRIVER: &str = r#"
import os, sys, requests
base = os.environ["TT_BASE_URL"]
it = os.environ["TTPLAN_ITERATION"]
assert os.environ["TT_EM_RUN_ID"] == os.environ["TTPLAN_RUN_ID"], "TT_EM_RUN_ID"
assert os.environ["TT_AUTH_TOKEN"] == os.environ["EXPECTED_TOKEN"], "TT_AUTH_TOKEN"
assert os.environ["PLAN_VAR"] == "from-the-plan"
s = requests.Session()
s.headers["Authorization"] = "Bearer " + os.environ["TT_AUTH_TOKEN"]
r = s.get(f"{base}/json", params={"i": it, "token": "query-secret"})
assert r.status_code == 200 and r.json()["path"] == "/json", r.text
r = s.post(f"{base}/echo", json={"username": "alice", "password": "hunter2", "n": int(it)},
           cookies={"sid": "cookie-secret"})
assert r.json()["body"]["password"] == "hunter2", r.text   # the client sees the real thing
assert "set-cookie-secret" in r.headers["set-cookie"]
r = s.get(f"{base}/binary")
assert r.content == bytes(range(256))
r = s.get(f"{base}/gzip")   # requests asks for gzip and decodes it
assert r.json()["zipped"] is True and r.headers["content-encoding"] == "gzip"
r = s.get(f"{base}/large", params={"n": 300000})
expected = bytes(ord("a") + i % 26 for i in range(300000))
assert r.content == expected, len(r.content)
r = s.get(f"{base}/empty")
assert r.status_code == 204
print("driver iteration", it, "ok")
"#;

#[test]
fn records_every_exchange_once_with_bodies_redaction_and_iterations() {
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file("driver.py", DRIVER);
    let plan = format!(
        r#"
name: traffic
steps:
  traffic:
    kind: api-driver
    run: [python3, driver.py]
    iterations: 2
    pause: 100ms
    fail_on_driver_error: true
    env:
      EXPECTED_TOKEN: "{LOGIN_TOKEN}"
      PLAN_VAR: from-the-plan
    login: {{ username: fdse_microservice, password: "{LOGIN_PASSWORD}" }}
    record:
      upstream: "{}"
      max_body_bytes: 1000
"#,
        up.url()
    );
    let run = p.run(&plan, "t1");
    assert_success(&run);
    let (text, lines) = jsonl(&run);

    // Every request the upstream received, except the step's own login, appears exactly once.
    let seen = up.seen();
    assert_eq!(seen[0].target, "/api/v1/users/login");
    let seen: Vec<_> = seen[1..].to_vec();
    assert_eq!(lines.len(), seen.len(), "{text}");
    assert_eq!(lines.len(), 12);
    let key = |method: &str, path: &str| format!("{method} {path}");
    let mut from_server: Vec<String> = seen
        .iter()
        .map(|s| key(&s.method, s.target.split('?').next().unwrap()))
        .collect();
    let mut from_jsonl: Vec<String> = lines
        .iter()
        .map(|l| key(l["method"].as_str().unwrap(), l["path"].as_str().unwrap()))
        .collect();
    from_server.sort();
    from_jsonl.sort();
    assert_eq!(from_server, from_jsonl);
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {LOGIN_TOKEN}")[..])));

    // Secrets never reach the file, though the upstream and client saw them.
    for secret in [
        LOGIN_TOKEN,
        LOGIN_PASSWORD,
        "hunter2",
        "cookie-secret",
        "set-cookie-secret",
        "resp-secret-token",
        "gz-secret",
    ] {
        assert!(!text.contains(secret), "`{secret}` leaked into the JSONL");
    }

    let run_id = run.manifest()["run"]["id"].as_str().unwrap().to_string();
    let by_path = |p: &str| -> Vec<&Value> { lines.iter().filter(|l| l["path"] == p).collect() };
    for l in &lines {
        assert_eq!(l["run_id"], run_id.as_str());
        assert_eq!(l["exp_name"], "t1");
        assert_eq!(l["step"], "traffic");
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
        assert!(l["duration_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(l["upstream_error"], Value::Null, "{l}");
        assert_eq!(l["request"]["headers"]["authorization"], "[REDACTED]");
        assert!(l["url"].as_str().unwrap().starts_with(&format!(
            "{}{}",
            up.url(),
            l["path"].as_str().unwrap()
        )));
    }

    let json = by_path("/json");
    assert_eq!(
        json.iter()
            .map(|l| l["iteration"].as_u64().unwrap())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );
    for l in &json {
        assert_eq!(l["status"], 200);
        assert_eq!(l["response"]["body_encoding"], "json");
        assert_eq!(l["response"]["body"]["path"], "/json");
        let q = l["query"].as_str().unwrap();
        assert!(q.contains("token=[REDACTED]") && q.contains(&format!("i={}", l["iteration"])));
        assert!(!l["url"].as_str().unwrap().contains("query-secret"));
        assert!(!q.contains("query-secret"));
    }

    for l in by_path("/echo") {
        assert_eq!(l["method"], "POST");
        assert_eq!(l["request"]["body_encoding"], "json");
        assert_eq!(l["request"]["body"]["username"], "alice");
        assert_eq!(l["request"]["body"]["password"], "[REDACTED]");
        assert_eq!(l["request"]["body"]["n"], l["iteration"]);
        assert_eq!(l["request"]["headers"]["cookie"], "[REDACTED]");
        assert_eq!(l["response"]["headers"]["set-cookie"], "[REDACTED]");
        assert_eq!(l["response"]["body"]["body"]["password"], "[REDACTED]");
        assert_eq!(l["response"]["body"]["token"], "[REDACTED]");
        assert_eq!(l["response"]["body"]["method"], "POST");
    }

    for l in by_path("/binary") {
        assert_eq!(l["response"]["body_encoding"], "base64");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(l["response"]["body"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, (0..=255u8).collect::<Vec<_>>());
        assert_eq!(l["response"]["body_truncated"], false);
    }

    for l in by_path("/gzip") {
        let r = &l["response"];
        assert_eq!(r["body_content_encoding"], "gzip");
        assert_eq!(r["body_encoding"], "json");
        assert_eq!(r["body"]["zipped"], true);
        assert_eq!(r["body"]["token"], "[REDACTED]");
        assert_eq!(r["headers"]["content-encoding"], "gzip");
    }

    for l in by_path("/large") {
        let r = &l["response"];
        assert_eq!(r["body_truncated"], true);
        assert_eq!(r["body_bytes"], 300_000);
        assert_eq!(r["body_encoding"], "utf8");
        assert_eq!(
            r["body"].as_str().unwrap().as_bytes(),
            &large_body(300_000)[..1000]
        );
    }

    for l in by_path("/empty") {
        assert_eq!(l["status"], 204);
        assert_eq!(l["response"]["body"], Value::Null);
        assert_eq!(l["response"]["body_bytes"], 0);
    }

    // Iterations, exit codes and the recording land in the manifest.
    let m = run.manifest();
    let s = step(&m, "traffic");
    assert_eq!(s["status"], "succeeded");
    let out = &s["outputs"];
    let iters = out["iterations"].as_array().unwrap();
    assert_eq!(iters.len(), 2);
    for (i, it) in iters.iter().enumerate() {
        assert_eq!(it["iteration"], i as u64 + 1);
        assert_eq!(it["exit_code"], 0);
        assert!(it["duration_ms"].is_u64());
    }
    assert_eq!(out["driver_failures"], 0);
    assert_eq!(out["records"], 12);
    assert_eq!(out["upstream_errors"], 0);
    assert!(out["proxy_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let rel = out["api_responses"].as_str().unwrap();
    assert!(rel.starts_with("api_responses/t1/"), "{rel}");
    let art = &s["artifacts"][0];
    assert_eq!(art["path"], rel);
    assert_eq!(art["bytes"], text.len() as u64);
    // The driver's output goes to the step log.
    let log = run.step_log("traffic");
    assert!(
        log.contains("driver iteration 1 ok") && log.contains("driver iteration 2 ok"),
        "{log}"
    );
    // No temporary file is left beside the JSONL.
    let dir = run.out.join(rel);
    let siblings = std::fs::read_dir(dir.parent().unwrap()).unwrap().count();
    assert_eq!(siblings, 1);
}

#[test]
fn two_hundred_concurrent_requests_are_recorded_once_each() {
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file(
        "burst.py",
        r#"
import os, threading, requests
from concurrent.futures import ThreadPoolExecutor
base = os.environ["TT_BASE_URL"]
local = threading.local()
def get(i):
    s = getattr(local, "s", None)
    if s is None:
        s = local.s = requests.Session()   # keep-alive per thread
    r = s.get(f"{base}/item/{i}", params={"q": i})
    assert r.status_code == 200 and r.json()["path"] == f"/item/{i}", r.text
    return i
with ThreadPoolExecutor(max_workers=32) as pool:
    done = list(pool.map(get, range(200)))
assert done == list(range(200))
"#,
    );
    let plan = format!(
        r#"
name: burst
steps:
  burst:
    kind: api-driver
    run: [python3, burst.py]
    fail_on_driver_error: true
    record: {{ upstream: "{}" }}
"#,
        up.url()
    );
    let run = p.run(&plan, "t2");
    assert_success(&run);
    let (_, lines) = jsonl(&run);
    assert_eq!(lines.len(), 200);
    assert_eq!(up.seen().len(), 200);
    let paths: BTreeSet<String> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["status"], 200);
            assert_eq!(l["response"]["body"]["path"], l["path"]);
            l["path"].as_str().unwrap().to_string()
        })
        .collect();
    let expected: BTreeSet<String> = (0..200).map(|i| format!("/item/{i}")).collect();
    assert_eq!(paths, expected);
    assert_eq!(step(&run.manifest(), "burst")["outputs"]["records"], 200);
}

#[test]
fn a_dead_upstream_is_answered_502_and_recorded_with_the_error() {
    require_python_requests();
    let port = dead_port();
    let p = Project::new();
    p.file(
        "dead.py",
        r#"
import os, sys, requests
r = requests.post(os.environ["TT_BASE_URL"] + "/api/v1/x", json={"password": "pw-secret"})
sys.exit(0 if r.status_code == 502 else 1)
"#,
    );
    let plan = format!(
        r#"
name: dead
steps:
  traffic:
    kind: api-driver
    run: [python3, dead.py]
    fail_on_driver_error: true
    record: {{ upstream: "http://127.0.0.1:{port}" }}
"#
    );
    let run = p.run(&plan, "t3");
    assert_success(&run);
    let (text, lines) = jsonl(&run);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["status"], 502);
    assert_eq!(l["response"], Value::Null);
    assert_eq!(l["path"], "/api/v1/x");
    let err = l["upstream_error"].as_str().unwrap();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.to_lowercase().contains("connect"), "{err}");
    assert_eq!(l["request"]["body"]["password"], "[REDACTED]");
    assert!(!text.contains("pw-secret"));
    let m = run.manifest();
    let out = &step(&m, "traffic")["outputs"];
    assert_eq!(out["upstream_errors"], 1);
    assert_eq!(out["records"], 1);
}

const SUITE_A: &str = r#"
import os, requests
requests.get(os.environ["TT_BASE_URL"] + "/a")
"#;

const SUITE_B: &str = r#"
import os, sys, requests
requests.get(os.environ["TT_BASE_URL"] + "/b")
sys.exit(3 if os.environ["TTPLAN_ITERATION"] == "1" else 0)
"#;

#[test]
fn failing_tests_in_a_suite_are_recorded_not_fatal_by_default() {
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file("a.py", SUITE_A).file("b.py", SUITE_B);
    let plan = format!(
        r#"
name: suites
steps:
  traffic:
    kind: api-driver
    suites:
      - [python3, a.py]
      - [python3, b.py]
    iterations: 2
    record: {{ upstream: "{}" }}
  after:
    kind: shell
    after: [traffic]
    run: "true"
"#,
        up.url()
    );
    let run = p.run(&plan, "t4");
    assert_success(&run);
    let m = run.manifest();
    let s = step(&m, "traffic");
    assert_eq!(s["status"], "succeeded");
    assert_eq!(step(&m, "after")["status"], "succeeded");
    let codes: Vec<(u64, u64, Value)> = s["outputs"]["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["iteration"].as_u64().unwrap(),
                r["suite"].as_u64().unwrap(),
                r["exit_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (1, 1, 0.into()),
            (1, 2, 3.into()),
            (2, 1, 0.into()),
            (2, 2, 0.into())
        ]
    );
    assert_eq!(s["outputs"]["driver_failures"], 1);
    let (_, lines) = jsonl(&run);
    let stamps: BTreeMap<(u64, u64), String> = lines
        .iter()
        .map(|l| {
            (
                (
                    l["iteration"].as_u64().unwrap(),
                    l["suite"].as_u64().unwrap(),
                ),
                l["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        stamps,
        BTreeMap::from([
            ((1, 1), "/a".to_string()),
            ((1, 2), "/b".to_string()),
            ((2, 1), "/a".to_string()),
            ((2, 2), "/b".to_string())
        ])
    );
}

#[test]
fn fail_on_driver_error_fails_the_step_and_keeps_the_record() {
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file("a.py", SUITE_A).file("b.py", SUITE_B);
    let plan = format!(
        r#"
name: strict
steps:
  traffic:
    kind: api-driver
    suites: [[python3, a.py], [python3, b.py]]
    iterations: 2
    fail_on_driver_error: true
    record: {{ upstream: "{}" }}
"#,
        up.url()
    );
    let run = p.run(&plan, "t5");
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let m = run.manifest();
    let s = step(&m, "traffic");
    assert_eq!(s["status"], "failed");
    let err = s["error"].as_str().unwrap();
    assert!(
        err.contains("driver `python3 b.py` failed with exit status 3 (iteration 1/2, suite 2/2)"),
        "{err}"
    );
    let (_, lines) = jsonl(&run);
    assert_eq!(
        lines.len(),
        2,
        "the requests made before the failure are kept"
    );
    assert_eq!(up.seen().len(), 2);
}

#[test]
fn a_rejected_login_fails_the_step_with_the_systems_message() {
    let up = Upstream::start();
    let p = Project::new();
    let plan = format!(
        r#"
name: login
steps:
  traffic:
    kind: api-driver
    run: "true"
    base_url: "{}"
    login: {{ username: bob, password: wrong }}
"#,
        up.url()
    );
    let run = p.run(&plan, "t6");
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let m = run.manifest();
    let err = step(&m, "traffic")["error"].as_str().unwrap().to_string();
    assert_eq!(
        err,
        format!(
            "login at {}/api/v1/users/login as `bob`: no token at `data.token` in the answer \
             (msg: \"Incorrect username or password.\")",
            up.url()
        )
    );
}

const SLOW_DRIVER: &str = r#"
import os, time, requests
for i in range(3):
    requests.get(os.environ["TT_BASE_URL"] + f"/slow/{i}")
print("three requests sent", flush=True)
time.sleep(120)
"#;

#[test]
fn a_timeout_stops_the_driver_and_the_proxy_and_flushes_the_jsonl() {
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file("slow.py", SLOW_DRIVER);
    let plan = format!(
        r#"
name: slow
steps:
  traffic:
    kind: api-driver
    run: [python3, slow.py]
    timeout: 3s
    record: {{ upstream: "{}" }}
"#,
        up.url()
    );
    let t0 = Instant::now();
    let run = p.run(&plan, "t7");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let m = run.manifest();
    assert_eq!(step(&m, "traffic")["error"], "timed out after 3s");
    let (_, lines) = jsonl(&run);
    assert_eq!(lines.len(), 3);
}

#[test]
fn sigint_stops_the_driver_and_the_proxy_and_flushes_the_jsonl() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file("slow.py", SLOW_DRIVER);
    let plan = format!(
        r#"
name: slow
steps:
  traffic:
    kind: api-driver
    run: [python3, slow.py]
    record: {{ upstream: "{}" }}
"#,
        up.url()
    );
    let mut child = p
        .command(&plan, "t8")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while up.seen().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the driver never sent its requests"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(status.code(), Some(130));
    let run = Run {
        output: std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
        out: p.path().join("out"),
        exp: "t8".into(),
    };
    let (_, lines) = jsonl(&run);
    assert_eq!(lines.len(), 3);
    assert_eq!(step(&run.manifest(), "traffic")["status"], "cancelled");
}

fn validate(p: &Project, file: &str) -> (Option<i32>, String) {
    let out = support::ttplan()
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .args(["validate", file])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn the_example_plan_validates_in_yaml_and_toml() {
    let p = Project::new();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/examples/api-driver.yaml"),
    )
    .unwrap();
    p.file("example.yaml", &example);
    p.file(
        "example.toml",
        r#"
name = "api_driver_toml"
[steps.traffic]
kind = "api-driver"
suites = [["python3", "a.py"], ["python3", "b.py"]]
iterations = 2
pause = "10s"
fail_on_driver_error = true
login = { username = "fdse_microservice", password = "111111" }
[steps.traffic.record]
upstream = "http://127.0.0.1:32677"
max_body_bytes = 65536
redact_headers = ["x-api-key"]
redact_fields = ["verificationCode"]
"#,
    );
    for f in ["example.yaml", "example.toml"] {
        let (code, text) = validate(&p, f);
        assert_eq!(code, Some(0), "{f}: {text}");
        assert!(text.contains(&format!("ok {f}")), "{text}");
    }
}

#[test]
fn plan_mistakes_are_reported_with_their_place() {
    let p = Project::new();
    p.file(
        "bad.yaml",
        r#"name: bad
steps:
  traffic:
    kind: api-driver
    run: [python3, t.py]
    record: { upstream: "http://x:1", max_body: 3 }
  twice:
    kind: api-driver
    run: x
    suites: [y]
    base_url: "http://a:1"
    record: { upstream: "https://b:2" }
  nowhere:
    kind: api-driver
    iterations: 0
    record: {}
"#,
    );
    let (code, text) = validate(&p, "bad.yaml");
    assert_eq!(code, Some(2), "{text}");
    for expected in [
        "bad.yaml:6:39: unknown field `max_body` in step `traffic` (api-driver)",
        "did you mean `max_body_bytes`?",
        "bad.yaml:10:13: give `run` or `suites`, not both",
        "bad.yaml:11:15: the system's URL is given twice: keep `base_url` or",
        "bad.yaml:12:25: upstream `https://b:2/`: only http:// upstreams",
        "bad.yaml:14:5: api-driver needs a driver: `run` or `suites`",
        "bad.yaml:15:17: iterations must be at least 1",
        "bad.yaml:16:13: `record` needs the system's URL",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn the_schema_documents_the_kind() {
    let out = support::ttplan().arg("schema").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for field in [
        "api-driver",
        "fail_on_driver_error",
        "max_body_bytes",
        "redact_fields",
        "token_path",
    ] {
        assert!(text.contains(field), "schema lacks `{field}`");
    }
}

#[test]
fn responses_stream_through_and_a_client_that_hangs_up_is_recorded() {
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file(
        "stream.py",
        r#"
import os, sys, time, requests
base = os.environ["TT_BASE_URL"]
t0 = time.monotonic()
r = requests.get(f"{base}/drip", params={"n": 10, "ms": 100}, stream=True)
lines = r.iter_lines()
first = next(lines)
t_first = time.monotonic() - t0
rest = list(lines)
t_all = time.monotonic() - t0
assert first == b"drip-0", first
assert rest == [f"drip-{i}".encode() for i in range(1, 10)], rest
# Streamed, not buffered: the first chunk came long before the last (they are 0.9 s apart).
assert t_all - t_first > 0.6, (t_first, t_all)
assert r.headers.get("transfer-encoding") == "chunked", r.headers
# A client that hangs up mid-body.
r = requests.get(f"{base}/drip", params={"n": 20, "ms": 100}, stream=True)
next(r.iter_content(chunk_size=None))
r.close()
# The proxy keeps serving.
assert requests.get(f"{base}/after").json()["path"] == "/after"
"#,
    );
    let plan = format!(
        r#"
name: stream
steps:
  traffic:
    kind: api-driver
    run: [python3, stream.py]
    fail_on_driver_error: true
    record: {{ upstream: "{}" }}
"#,
        up.url()
    );
    let run = p.run(&plan, "t9");
    assert_success(&run);
    let (_, lines) = jsonl(&run);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(up.seen().len(), 3);
    let full = &lines.iter().find(|l| l["query"] == "n=10&ms=100").unwrap();
    assert_eq!(full["upstream_error"], Value::Null);
    assert_eq!(full["response"]["body_bytes"], 70);
    assert!(full["duration_ms"].as_f64().unwrap() > 800.0);
    let cut = &lines.iter().find(|l| l["query"] == "n=20&ms=100").unwrap();
    assert_eq!(cut["status"], 200);
    let err = cut["upstream_error"].as_str().unwrap();
    assert!(err.contains("cut short"), "{err}");
    assert!(cut["response"]["body_bytes"].as_u64().unwrap() < 150);
    assert!(lines.iter().any(|l| l["path"] == "/after"));
}

const EXACT_DRIVER: &str = r#"
import os, requests
base = os.environ["TT_BASE_URL"]
token, key, pw = os.environ["TT_AUTH_TOKEN"], os.environ["API_KEY_FROM_SET"], os.environ["DB_PASSWORD"]
body = ('{"price": 0.22593391350628578, "big": 123456789012345678901234567890, '
        '"small": 1.0E-7, "one": 1.0, "note": "sent ' + token + '", "k": "' + key + '"}')
r = requests.post(f"{base}/echo", data=body,
                  headers={"content-type": "application/json", "x-client-token": token,
                           "x-db": pw})
assert r.status_code == 200, r.text
print("posted", len(body), "bytes with", token, "and", pw)
"#;

/// Issue 11, item 4: JSON bodies are recorded byte for byte (numbers are never re-printed),
/// and secrets are redacted in the records and the manifest whatever their source: a literal
/// in the step's `env:`, a `--set` var, an `env()` read.
#[test]
fn bodies_are_recorded_exactly_and_secrets_from_any_source_are_redacted() {
    require_python_requests();
    let up = Upstream::start();
    let p = Project::new();
    p.file("driver.py", EXACT_DRIVER);
    let plan = format!(
        r#"
name: exact
vars:
  api_key: default-key-value
steps:
  traffic:
    kind: api-driver
    run: [python3, driver.py]
    fail_on_driver_error: true
    env:
      TT_AUTH_TOKEN: literal-token-abcdef
      API_KEY_FROM_SET: "{{{{ api_key }}}}"
      DB_PASSWORD: "{{{{ env('TTPLAN_TEST_DB_PASSWORD') }}}}"
    record:
      upstream: "{}"
"#,
        up.url()
    );
    let output = p
        .command(&plan, "exact")
        .args(["--set", "api_key=set-key-123456"])
        .env("TTPLAN_TEST_DB_PASSWORD", "env-pass-7890")
        .output()
        .unwrap();
    let run = Run {
        output,
        out: p.path().join("out"),
        exp: "exact".into(),
    };
    assert_success(&run);
    let (text, lines) = jsonl(&run);
    assert_eq!(lines.len(), 1, "{text}");
    // The request body, as sent but for the secret values.
    let want = r#"{"price": 0.22593391350628578, "big": 123456789012345678901234567890, "small": 1.0E-7, "one": 1.0, "note": "sent <redacted:TT_AUTH_TOKEN>", "k": "<redacted:API_KEY_FROM_SET>"}"#;
    assert!(
        text.contains(&format!(r#""body":{want}"#)),
        "request body not recorded exactly:\n{text}"
    );
    let l = &lines[0];
    assert_eq!(l["request"]["body_encoding"], "json");
    assert_eq!(
        l["request"]["headers"]["x-client-token"],
        "<redacted:TT_AUTH_TOKEN>"
    );
    assert_eq!(l["request"]["headers"]["x-db"], "<redacted:DB_PASSWORD>");

    let manifest =
        std::fs::read_to_string(run.out.join("runs/exact/experiment_manifest.json")).unwrap();
    for secret in ["literal-token-abcdef", "set-key-123456", "env-pass-7890"] {
        assert!(!text.contains(secret), "`{secret}` leaked into the JSONL");
        assert!(
            !manifest.contains(secret),
            "`{secret}` leaked into the manifest"
        );
    }
    let m = run.manifest();
    assert_eq!(m["vars"]["api_key"], "<redacted:API_KEY_FROM_SET>");
    assert_eq!(m["env"]["TTPLAN_TEST_DB_PASSWORD"], "<redacted>");
    let env = &m["resolved_plan"]["steps"]["traffic"]["env"];
    assert_eq!(env["TT_AUTH_TOKEN"], "<redacted:TT_AUTH_TOKEN>", "{env}");
    // What the driver printed, in the step log.
    let log = run.step_log("traffic");
    assert!(
        log.contains("with <redacted:TT_AUTH_TOKEN> and <redacted:DB_PASSWORD>"),
        "{log}"
    );
    for secret in ["literal-token-abcdef", "env-pass-7890"] {
        assert!(!log.contains(secret), "`{secret}` leaked into the step log");
    }
}
