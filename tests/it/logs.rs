//! `collect-logs` against the fake Kubernetes API server: file layout for one and several
//! containers, previous logs of restarted containers, a pod vanishing mid-collection, the
//! window (`since`, floored; `tail`), the events List, the report, and a 200 MB log streamed
//! with flat memory.

use crate::support;
use ttplan_sandbox::kube_fake;

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use kube_fake::{ContainerSeed, FakeKube, LogSource, PodSeed};
use serde_json::Value;
use support::{Output, Test, EXP};

fn run(kube: &FakeKube, plan: &str) -> Output {
    let t = Test::new().plan(plan);
    let kubeconfig = kube.write_kubeconfig(t.path());
    t.args([
        "--progress",
        "never",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
    ])
    .run_plan()
}

fn json(out: &Output, rel: &str) -> Value {
    serde_json::from_str(&out.read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The single file in `out/<dir>` whose name starts with `prefix` (the `<ts>` part varies).
fn one_file(out: &Output, dir: &str, prefix: &str) -> String {
    let full = out.path().join("out").join(dir);
    let mut found: Vec<String> = std::fs::read_dir(&full)
        .unwrap_or_else(|e| panic!("{}: {e}\n{out}", full.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && !n.starts_with('.'))
        .collect();
    found.sort();
    assert_eq!(found.len(), 1, "{prefix}* in {dir}: {found:?}");
    format!("{dir}/{}", found.remove(0))
}

/// The `%Y%m%d_%H%M%S` part of a file name.
fn ts_of(name: &str) -> &str {
    // `<ts>` is `%Y%m%d_%H%M%S`: the last 15 characters of the stem.
    let stem = name.rsplit_once('.').unwrap().0;
    &stem[stem.len() - "20260301_100000".len()..]
}

fn lines(text: &str) -> Vec<(DateTime<Utc>, String)> {
    let now = Utc::now();
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            (
                now - chrono::Duration::milliseconds(50 - i as i64),
                l.to_string(),
            )
        })
        .collect()
}

#[test]
fn one_and_several_containers_restarts_events_and_report() {
    let kube = FakeKube::builder()
        .pod(
            PodSeed::new("solo-1", "default")
                .container(ContainerSeed::new("app").log(LogSource::lines(lines("s1\ns2\ns3")))),
        )
        .pod(
            PodSeed::new("duo-1", "default")
                .container(ContainerSeed::new("app").log(LogSource::lines(lines("a1\na2"))))
                .container(
                    ContainerSeed::new("sidecar")
                        .log(LogSource::lines(lines("side now")))
                        .restarts(2)
                        .previous_log(LogSource::lines(lines("side before\ncrash"))),
                ),
        )
        .pod(
            PodSeed::new("solo-restarted", "default").container(
                ContainerSeed::new("app")
                    .log(LogSource::lines(lines("second life")))
                    .restarts(1)
                    .previous_log(LogSource::lines(lines("first life\nOOM"))),
            ),
        )
        // Not selected by the prefixes.
        .pod(
            PodSeed::new("other", "default")
                .container(ContainerSeed::new("app").log(LogSource::lines(lines("nope")))),
        )
        .start();
    kube.add_event(
        "default",
        "Pod",
        "duo-1",
        "BackOff",
        "Back-off restarting",
        "Warning",
    );
    let out = run(
        &kube,
        "name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    name_prefixes: [solo, duo]\n",
    );
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    let dir = format!("log_data/{EXP}");

    // One container: the dataset's `<pod>_<ts>.log` and `<pod>_previous_<ts>.log`.
    let solo = one_file(&out, &format!("{dir}/solo-1"), "solo-1_");
    assert_eq!(out.read(&format!("out/{solo}")), "s1\ns2\ns3\n");
    let ts = ts_of(&solo).to_string();
    assert!(
        chrono::NaiveDateTime::parse_from_str(&ts, "%Y%m%d_%H%M%S").is_ok(),
        "{solo}"
    );
    let pod = format!("{dir}/solo-restarted");
    assert_eq!(
        out.read(&format!("out/{pod}/solo-restarted_{ts}.log")),
        "second life\n"
    );
    assert_eq!(
        out.read(&format!("out/{pod}/solo-restarted_previous_{ts}.log")),
        "first life\nOOM\n"
    );
    // Several containers: the pod-level file is the default (first) container's, as
    // `kubectl logs duo-1` shows it; per-container files are extras.
    let pod = format!("{dir}/duo-1");
    assert_eq!(out.read(&format!("out/{pod}/duo-1_{ts}.log")), "a1\na2\n");
    assert_eq!(
        out.read(&format!("out/{pod}/duo-1_app_{ts}.log")),
        "a1\na2\n"
    );
    assert_eq!(
        out.read(&format!("out/{pod}/duo-1_sidecar_{ts}.log")),
        "side now\n"
    );
    assert_eq!(
        out.read(&format!("out/{pod}/duo-1_sidecar_previous_{ts}.log")),
        "side before\ncrash\n"
    );
    let files = std::fs::read_dir(out.path().join("out").join(&pod))
        .unwrap()
        .count();
    assert_eq!(
        files, 4,
        "no previous log for a container that never restarted"
    );
    assert!(!out.exists(&format!("out/{dir}/other")));

    // Events: the List `kubectl get events -o json` prints, full Event objects.
    let events = json(&out, &format!("out/{dir}/kubernetes_events_{ts}.json"));
    assert_eq!(events["apiVersion"], "v1");
    assert_eq!(events["kind"], "List");
    assert_eq!(
        events["metadata"],
        serde_json::json!({"resourceVersion": ""})
    );
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), kube.events("default").len(), "{events:#}");
    for item in items {
        assert_eq!(item["apiVersion"], "v1");
        assert_eq!(item["kind"], "Event");
        assert_eq!(item["metadata"]["namespace"], "default");
        assert!(item["involvedObject"]["name"].is_string(), "{item:#}");
        assert!(item["firstTimestamp"].is_string(), "{item:#}");
    }
    let backoff = items
        .iter()
        .find(|e| e["reason"] == "BackOff")
        .expect("the added event");
    assert_eq!(backoff["involvedObject"]["kind"], "Pod");
    assert_eq!(backoff["involvedObject"]["name"], "duo-1");
    assert_eq!(backoff["message"], "Back-off restarting");
    assert_eq!(backoff["type"], "Warning");
    assert_eq!(backoff["count"], 1);

    // The report.
    let report = json(&out, &format!("out/{dir}/log_collection_report_{ts}.json"));
    assert_eq!(report["namespace"], "default");
    assert_eq!(report["name_prefixes"], serde_json::json!(["solo", "duo"]));
    assert_eq!(
        report["totals"],
        serde_json::json!({"pods": 3, "containers": 4, "files": 7, "bytes": 9 + 6 + 6 + 9 + 18 + 12 + 15,
            "events": items.len(), "skipped": 0, "errors": 0}),
        "{report:#}"
    );
    let pods: Vec<&str> = report["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["duo-1", "solo-1", "solo-restarted"]);
    let sidecar = &report["pods"][0]["containers"][1];
    assert_eq!(sidecar["name"], "sidecar");
    assert_eq!(sidecar["restart_count"], 2);
    assert_eq!(sidecar["state"], "running");
    let file = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["instance"] == "previous" && f["pod"] == "duo-1")
        .unwrap();
    assert_eq!(
        file,
        &serde_json::json!({"path": format!("{pod}/duo-1_sidecar_previous_{ts}.log"),
            "pod": "duo-1", "container": "sidecar", "instance": "previous", "bytes": 18})
    );
    let copy = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == format!("{pod}/duo-1_app_{ts}.log"))
        .unwrap();
    assert_eq!(copy["copy_of"], format!("{pod}/duo-1_{ts}.log"));
    assert_eq!(report["errors"], serde_json::json!([]));
    assert_eq!(report["events"]["count"], items.len());
    // The published report's keys, first.
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys[..6],
        [
            "timestamp",
            "collection_time",
            "output_dir",
            "total_files",
            "collected_files",
            "summary"
        ]
    );
    assert_eq!(report["timestamp"], ts.as_str());
    assert_eq!(report["output_dir"], dir.as_str());
    assert_eq!(report["total_files"], 8);
    let collected = report["collected_files"].as_array().unwrap();
    assert_eq!(collected.len(), 8);
    assert!(collected.contains(&Value::from(format!("{dir}/kubernetes_events_{ts}.json"))));
    assert!(collected.contains(&Value::from(solo.clone())));
    assert_eq!(
        report["summary"],
        serde_json::json!({"pod_logs": 7, "events": 1})
    );
    assert_eq!(report["collected_at"].as_str().unwrap().len(), 24);
    assert_eq!(report["window"]["tail_lines"], Value::Null);

    // Step outputs and artifacts: every file, hashed.
    let step = &m["steps"]["logs"];
    assert_eq!(step["outputs"]["files"], 7);
    assert_eq!(step["outputs"]["pods"], 3);
    assert_eq!(step["outputs"]["errors"], serde_json::json!([]));
    let mut artifacts: Vec<String> = step["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_string())
        .collect();
    artifacts.sort();
    assert_eq!(artifacts.len(), 9, "{artifacts:?}");
    assert!(artifacts.contains(&format!("{dir}/kubernetes_events_{ts}.json")));
    assert!(artifacts.contains(&format!("{dir}/log_collection_report_{ts}.json")));
    assert!(artifacts.contains(&solo));
}

/// Rows of issue 11: a crash-looping pod still has `<pod>_<ts>.log` (the API serves the crashed
/// instance for a waiting container); a pod with several containers has the default container's
/// log as `<pod>_<ts>.log` (annotation, else first); the previous log is the whole previous run
/// even when it ended before the window, and absent when empty.
#[test]
fn crash_loops_default_containers_and_whole_previous_logs() {
    let long_ago = Utc::now() - chrono::Duration::hours(2);
    let before_window = |text: &str| {
        LogSource::lines(
            text.lines()
                .enumerate()
                .map(|(i, l)| {
                    (
                        long_ago + chrono::Duration::seconds(i as i64),
                        l.to_string(),
                    )
                })
                .collect(),
        )
    };
    let kube = FakeKube::builder()
        .pod(
            PodSeed::new("ts-crash-1", "default").container(
                ContainerSeed::new("app")
                    .crash_loop()
                    .previous_log(LogSource::lines(lines("boot\nException in thread main"))),
            ),
        )
        .pod(
            PodSeed::new("nacosdb-mysql-0", "default")
                .container(ContainerSeed::new("mysql").log(LogSource::lines(lines("mysqld ready"))))
                .container(
                    ContainerSeed::new("xenon")
                        .log(LogSource::lines(lines("xenon up")))
                        .restarts(1)
                        .previous_log(before_window("xenon first run")),
                ),
        )
        .pod(
            PodSeed::new("nacosdb-mysql-1", "default")
                .annotation("kubectl.kubernetes.io/default-container", "xenon")
                .container(ContainerSeed::new("mysql").log(LogSource::lines(lines("m1"))))
                .container(ContainerSeed::new("xenon").log(LogSource::lines(lines("x1")))),
        )
        .pod(
            PodSeed::new("ts-quiet-1", "default").container(
                ContainerSeed::new("app")
                    .log(LogSource::empty())
                    .restarts(1)
                    .previous_log(LogSource::empty()),
            ),
        )
        .pod(
            PodSeed::new("ts-pending-1", "default")
                .container(ContainerSeed::new("app").waiting("ImagePullBackOff")),
        )
        .start();
    let out = run(
        &kube,
        "name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    name_prefixes: [ts-, nacos]\n",
    );
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    let dir = format!("log_data/{EXP}");
    let solo = one_file(&out, &format!("{dir}/ts-crash-1"), "ts-crash-1_2");
    let ts = ts_of(&solo).to_string();
    let read = |pod: &str, file: &str| out.read(&format!("out/{dir}/{pod}/{file}"));
    let exists = |pod: &str, file: &str| out.exists(&format!("out/{dir}/{pod}/{file}"));

    // Crash loop: the plain log is what the API serves for a waiting container, the crashed
    // run (within the window, as the plain log always is).
    let crashed = "boot\nException in thread main\n";
    assert_eq!(read("ts-crash-1", &format!("ts-crash-1_{ts}.log")), crashed);
    assert_eq!(
        read("ts-crash-1", &format!("ts-crash-1_previous_{ts}.log")),
        crashed
    );

    // Several containers, no annotation: the first container is the pod-level file.
    let p = "nacosdb-mysql-0";
    assert_eq!(read(p, &format!("{p}_{ts}.log")), "mysqld ready\n");
    assert_eq!(read(p, &format!("{p}_mysql_{ts}.log")), "mysqld ready\n");
    assert_eq!(read(p, &format!("{p}_xenon_{ts}.log")), "xenon up\n");
    assert_eq!(
        read(p, &format!("{p}_xenon_previous_{ts}.log")),
        "xenon first run\n"
    );
    assert!(
        !exists(p, &format!("{p}_previous_{ts}.log")),
        "mysql never restarted"
    );
    // With the annotation: the annotated container.
    let p = "nacosdb-mysql-1";
    assert_eq!(read(p, &format!("{p}_{ts}.log")), "x1\n");
    assert_eq!(read(p, &format!("{p}_xenon_{ts}.log")), "x1\n");
    assert_eq!(read(p, &format!("{p}_mysql_{ts}.log")), "m1\n");

    // An empty current log is still a file; an empty previous log is none.
    assert_eq!(read("ts-quiet-1", &format!("ts-quiet-1_{ts}.log")), "");
    assert!(!exists(
        "ts-quiet-1",
        &format!("ts-quiet-1_previous_{ts}.log")
    ));
    // A container that never started has no log to read (the API answers 400).
    assert!(!out.exists(&format!("out/{dir}/ts-pending-1")));

    let report = json(&out, &format!("out/{dir}/log_collection_report_{ts}.json"));
    assert_eq!(report["errors"], serde_json::json!([]), "{report:#}");
    let skipped: Vec<(&str, &str)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["pod"].as_str().unwrap(), s["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("ts-pending-1", "waiting to start (ImagePullBackOff)"),
            ("ts-quiet-1", "the previous log is empty: no file"),
        ],
        "{report:#}"
    );
    // The previous logs were asked for without a window.
    let previous_with_since = kube
        .requests()
        .iter()
        .filter(|r| r.query_param("previous").as_deref() == Some("true"))
        .filter(|r| r.query_param("sinceTime").is_some())
        .count();
    assert_eq!(previous_with_since, 0);
}

#[test]
fn a_pod_that_vanishes_mid_collection_is_reported_and_the_run_succeeds() {
    let kube = FakeKube::builder()
        .pod(
            PodSeed::new("gone-1", "default")
                .container(ContainerSeed::new("a").log(LogSource::lines(lines("a"))))
                .container(ContainerSeed::new("b").log(LogSource::lines(lines("b"))))
                .disappear_after_log_requests(1),
        )
        .pod(
            PodSeed::new("stay-1", "default")
                .container(ContainerSeed::new("app").log(LogSource::lines(lines("here")))),
        )
        .start();
    // One log at a time, so the second log of `gone-1` is requested after the pod is gone.
    let out = run(
        &kube,
        "name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    concurrency: 1\n",
    );
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    let step = &m["steps"]["logs"];
    assert_eq!(step["status"], "succeeded");
    assert_eq!(
        step["outputs"]["vanished_pods"],
        serde_json::json!(["gone-1"])
    );
    let errors = step["outputs"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].as_str().unwrap();
    assert!(
        msg.contains("default/gone-1") && msg.contains("no longer exists"),
        "{msg}"
    );
    let report_rel = one_file(&out, &format!("log_data/{EXP}"), "log_collection_report_");
    let report = json(&out, &format!("out/{report_rel}"));
    assert_eq!(report["totals"]["errors"], 1);
    let err = &report["errors"][0];
    assert_eq!(err["pod"], "gone-1");
    assert_eq!(err["not_found"], true);
    assert_eq!(err["instance"], "current");
    assert!(err["container"] == "a" || err["container"] == "b", "{err}");
    // `stay-1`, and the log of the container read before the pod vanished: `a`, the default
    // container, is the pod-level file plus its per-container copy.
    let files = if err["container"] == "b" { 3 } else { 2 };
    assert_eq!(step["outputs"]["files"], files, "{step:#}");
    let gone = &report["pods"][0];
    assert_eq!(gone["name"], "gone-1");
    assert_eq!(gone["vanished"], true);
    assert_eq!(report["pods"][1]["vanished"], false);
    let stay = one_file(&out, &format!("log_data/{EXP}/stay-1"), "stay-1_");
    assert_eq!(out.read(&format!("out/{stay}")), "here\n");
}

#[test]
fn nothing_collected_fails_unless_require_none() {
    let kube = FakeKube::builder().start();
    let t = Test::new()
        .plan("name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    name_prefixes: [ts-]\n");
    let kubeconfig = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--progress", "never", "--kubeconfig"])
        .args([kubeconfig.display().to_string()])
        .status(1)
        .run_plan();
    let m = out.manifest();
    let error = m["steps"]["logs"]["error"].as_str().unwrap();
    assert!(
        error.contains("0 log file(s) from 0 pod(s) in namespace default")
            && error.contains(
                "no pod in namespace default matched (selector none, name prefixes [ts-])"
            ),
        "{error}"
    );
    // The report is still written, for the post-mortem.
    one_file(&out, &format!("log_data/{EXP}"), "log_collection_report_");

    let out = run(
        &kube,
        "name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    name_prefixes: [ts-]\n    require: none\n",
    );
    assert_eq!(out.manifest()["steps"]["logs"]["status"], "succeeded");
}

/// Lines stamped `base + i s + 300 ms`, i = 0..count, `base` a whole second.
fn timed_lines(base: DateTime<Utc>, count: i64) -> Vec<(DateTime<Utc>, String)> {
    (0..count)
        .map(|i| {
            let at = base + chrono::Duration::milliseconds(i * 1000 + 300);
            (
                at,
                format!(
                    "line {i} at {}",
                    at.to_rfc3339_opts(SecondsFormat::Millis, true)
                ),
            )
        })
        .collect()
}

fn expected(lines: &[(DateTime<Utc>, String)], since: DateTime<Utc>) -> String {
    lines
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

#[test]
fn the_window_starts_at_run_start_minus_padding_or_since_floored_or_tail() {
    let now = Utc::now();
    let base = DateTime::from_timestamp(now.timestamp() - 150, 0).unwrap();
    let log = timed_lines(base, 150);
    let kube = FakeKube::builder()
        .pod(
            PodSeed::new("win-1", "default")
                .container(ContainerSeed::new("app").log(LogSource::lines(log.clone()))),
        )
        .start();
    // `since` between two lines' seconds: 50.8 s is floored to 50 s, so line 50 (50.3 s) is
    // kept; kube's own rounding (to 51 s) would drop it.
    let since = base + chrono::Duration::milliseconds(50_800);
    let plan = format!(
        "name: logs
steps:
  default:
    kind: collect-logs
  explicit:
    kind: collect-logs
    since: \"{}\"
    dir: explicit
  tail:
    kind: collect-logs
    tail: 3
    dir: tail
",
        since.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let out = run(&kube, &plan);
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");

    // Default: run start − 1m, floored.
    let run_start = DateTime::parse_from_rfc3339(m["run"]["started_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let window =
        DateTime::from_timestamp((run_start - chrono::Duration::seconds(60)).timestamp(), 0)
            .unwrap();
    let f = one_file(&out, &format!("log_data/{EXP}/win-1"), "win-1_");
    let text = out.read(&format!("out/{f}"));
    assert_eq!(text, expected(&log, window));
    let kept = text.lines().count();
    assert!((55..=65).contains(&kept), "{kept} lines in the last minute");
    assert_eq!(
        m["steps"]["default"]["outputs"]["since"],
        window.to_rfc3339_opts(SecondsFormat::Millis, true)
    );

    let f = one_file(&out, "explicit/win-1", "win-1_");
    let text = out.read(&format!("out/{f}"));
    let floored = base + chrono::Duration::seconds(50);
    assert_eq!(text, expected(&log, floored));
    assert!(text.starts_with("line 50 at "), "{}", &text[..40]);
    let report_rel = one_file(&out, "explicit", "log_collection_report_");
    let report = json(&out, &format!("out/{report_rel}"));
    assert_eq!(
        report["window"]["since"],
        floored.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    // What the API server was asked: whole seconds.
    let asked: Vec<String> = kube
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pods/win-1/log"))
        .filter_map(|r| r.query_param("sinceTime"))
        .collect();
    assert!(
        asked.contains(&floored.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "{asked:?}"
    );

    // `tail` alone: the last lines, no time bound.
    let f = one_file(&out, "tail/win-1", "win-1_");
    let want: String = log[147..].iter().map(|(_, l)| format!("{l}\n")).collect();
    assert_eq!(out.read(&format!("out/{f}")), want);
}

/// Peak resident memory of a finished child, from `wait4` (no external tool needed).
// The child is reaped by `wait4` itself, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measuring_rss(cmd: &mut std::process::Command) -> (i32, u64) {
    let child = cmd.spawn().expect("spawn ttplan");
    let pid = child.id() as nix::libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI call with valid pointers to locals; the child is ours and not yet
    // reaped (we never call `wait` on `child`).
    let usage = unsafe {
        let mut usage: nix::libc::rusage = std::mem::zeroed();
        let r = nix::libc::wait4(pid, &mut status, 0, &mut usage);
        assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
        usage
    };
    let code = if nix::libc::WIFEXITED(status) {
        nix::libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // Linux reports ru_maxrss in KiB.
    (code, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn a_200_mb_log_is_streamed_with_flat_memory() {
    const LINES: u64 = 1_000_000;
    const WIDTH: usize = 199; // + newline = 200 bytes a line
    let start = Utc::now() - chrono::Duration::seconds(20);
    let kube = FakeKube::builder()
        .pod(
            PodSeed::new("big-1", "default").container(
                ContainerSeed::new("app").log(
                    LogSource::generated(LINES, WIDTH)
                        .starting_at(start, std::time::Duration::from_micros(5)),
                ),
            ),
        )
        .start();
    let t = Test::new().plan("name: logs\nsteps:\n  logs:\n    kind: collect-logs\n");
    let kubeconfig = kube.write_kubeconfig(t.path());
    let mut cmd = support::ttplan();
    cmd.current_dir(t.path())
        .args([
            "run",
            "plan.yaml",
            "--out",
            "out",
            "--set",
            &format!("exp_name={EXP}"),
        ])
        .args(["--progress", "never", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let (code, peak) = run_measuring_rss(&mut cmd);
    assert_eq!(code, 0);
    let dir = t.path().join("out/log_data").join(EXP).join("big-1");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    assert_eq!(size, LINES * (WIDTH as u64 + 1));
    assert_lines_at_ends(&file, WIDTH, LINES);
    eprintln!("200 MB log: ttplan peak RSS {} MiB", peak / (1024 * 1024));
    assert!(
        peak < 80 * 1024 * 1024,
        "peak RSS {} MiB while streaming a {} MB log",
        peak / (1024 * 1024),
        size / 1_000_000
    );
}

/// The first and last lines are the fake's lines 0 and count − 1 (read without loading the file).
fn assert_lines_at_ends(path: &Path, width: usize, count: u64) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; width + 1];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf),
        format!("{}\n", LogSource::generated_line(0, width))
    );
    f.seek(SeekFrom::End(-(width as i64 + 1))).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf),
        format!("{}\n", LogSource::generated_line(count - 1, width))
    );
}

#[test]
fn the_kind_parses_from_toml_and_bad_fields_are_all_reported() {
    let out = Test::new()
        .file(
            "plan.toml",
            "name = \"logs_toml\"\n[steps.logs]\nkind = \"collect-logs\"\nnamespace = \"tt\"\n\
             selector = \"app in (a, b)\"\nname_prefixes = [\"ts-\", \"nacos\"]\n\
             since = \"2026-03-01T10:00:00.5Z\"\ntail = 100\nconcurrency = 8\nrequire = \"all\"\n\
             timestamps = true\nlimit_bytes = 1048576\nprevious = false\nevents = false\ndir = \"logs\"\n",
        )
        .args(["validate", "plan.toml"])
        .run();
    assert!(out.stdout.contains("ok plan.toml"), "{out}");

    let out = Test::new()
        .plan(
            "name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    concurrency: 0\n    \
             since: yesterday\n",
        )
        .args(["validate", "plan.yaml"])
        .status(2)
        .run();
    assert!(
        out.stderr.contains("`concurrency` must be at least 1")
            && out
                .stderr
                .contains("`since`: `yesterday` is not an RFC 3339 time"),
        "{out}"
    );
    let out = Test::new()
        .plan("name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    lines: 2000\n")
        .args(["validate", "plan.yaml"])
        .status(2)
        .run();
    assert!(
        out.stderr.contains("lines") && out.stderr.contains("plan.yaml:5"),
        "{out}"
    );

    let out = Test::new().args(["schema"]).run();
    assert!(out.stdout.contains("collect-logs") && out.stdout.contains("name_prefixes"));
}

#[test]
fn a_timed_out_collection_leaves_no_partial_file() {
    // 400 MB: far more than a debug build streams in the 300 ms the step gets.
    let kube = FakeKube::builder()
        .pod(
            PodSeed::new("huge-1", "default").container(
                ContainerSeed::new("app").log(
                    LogSource::generated(2_000_000, 199)
                        .starting_at(Utc::now(), std::time::Duration::from_micros(1)),
                ),
            ),
        )
        .start();
    let t = Test::new().plan(
        "name: logs\nsteps:\n  logs:\n    kind: collect-logs\n    timeout: 300ms\n    \
         since: \"2000-01-01T00:00:00Z\"\n",
    );
    let kubeconfig = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--progress", "never", "--kubeconfig"])
        .args([kubeconfig.display().to_string()])
        .status(1)
        .run_plan();
    let m = out.manifest();
    let step = &m["steps"]["logs"];
    assert_eq!(step["status"], "failed", "{out}");
    let error = step["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    // The log was being streamed when the timeout fired.
    assert!(kube
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/pods/huge-1/log")));
    let dir = out.path().join(format!("out/log_data/{EXP}/huge-1"));
    let left: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}
