//! Faults against the fake Kubernetes API server: every campaign plan injects and recovers its
//! fault, recovery happens on every exit path (failure, SIGINT, SIGTERM, kill -9 + chaos clean),
//! and the cluster errors a user meets are clear.

#[path = "support/kube_fake/mod.rs"]
mod kube_fake;
#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "support/skywalking.rs"]
mod skywalking;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube_fake::{ContainerSeed, FakeKube, PodSeed};
use nix::sys::signal::Signal;
use serde_json::Value;
use support::Test;

const LIMIT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `blade` stand-in that answers like the real CLI and logs its arguments.
const FAKE_BLADE: &str = r#"#!/usr/bin/env python3
import json, os, sys
with open(os.environ["BLADE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
if sys.argv[1] == "create":
    print(json.dumps({"code": 200, "success": True, "result": "7c1f7afc281482c8"}))
elif sys.argv[1] == "destroy":
    print(json.dumps({"code": 200, "success": True, "result": {"target": "jvm", "action": "return"}}))
else:
    sys.stderr.write(json.dumps({"code": 52000, "success": False, "error": "unknown command"}))
    sys.exit(1)
"#;

fn write_fake_blade(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("blade");
    std::fs::write(&path, FAKE_BLADE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn labels(out: &support::Output, exp: &str) -> Vec<Value> {
    let text = out.read(&format!("out/runs/{exp}/fault_labels.json"));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// A Train-Ticket Deployment as `deploy.yaml` spells it, for the base's `instrument` step.
const SERVICES_MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata: { name: ts-order-service }
spec:
  selector: { matchLabels: { app: ts-order-service } }
  template:
    metadata: { labels: { app: ts-order-service } }
    spec:
      containers:
        - name: ts-order-service
          image: codewisdom/ts-order-service:1.0.0
";

/// Every experiment plan of the campaign, end to end against the fake cluster, with the
/// deploy and traffic commands replaced by no-ops.
#[test]
fn every_campaign_plan_injects_its_fault_and_recovers_it() {
    let mut plans: Vec<PathBuf> = std::fs::read_dir(repo().join("plans"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("demo"))
        .collect();
    plans.sort();
    assert!(plans.len() >= 13, "campaign plans: {plans:?}");
    let oap = skywalking::FakeSkyWalking::start(skywalking::Options::default());
    let five_hours_ago = chrono::Utc::now().timestamp() - 5 * 3600;
    let prom = prometheus::Prometheus::start(&format!(
        "# TYPE up gauge\nup{{job=\"x\"}} 1 {five_hours_ago}\n# EOF\n"
    ));
    for plan in plans {
        let kube = FakeKube::builder()
            .train_ticket("default")
            .chaosblade(true)
            .start();
        // The services' manifest the base re-applies with the JaCoCo agent; the fake's pods
        // have no agent, so coverage runs best effort here (`coverage_require=never`).
        let t = Test::new()
            .file("noop.py", "print('traffic')\n")
            .file("deploy.yaml", SERVICES_MANIFEST);
        let dir = t.path().to_path_buf();
        let kubeconfig = kube.write_kubeconfig(&dir);
        let bin = write_fake_blade(&dir);
        let name = plan.file_stem().unwrap().to_string_lossy().to_string();
        let out = t
            .env(
                "PATH",
                &format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("BLADE_LOG", &dir.join("blade.log").display().to_string())
            .env("TRAIN_TICKET_DIR", &dir.display().to_string())
            .env("EVOMASTER_TEST", &dir.join("noop.py").display().to_string())
            .env("SKYWALKING_URL", &oap.url())
            .env("PROMETHEUS_URL", &prom.url)
            .args([
                "run",
                &plan.display().to_string(),
                "--out",
                "out",
                "--progress",
                "never",
                "--kubeconfig",
                &kubeconfig.display().to_string(),
                "--set",
                "deploy_command=true",
                "--set",
                "warmup=0s",
                "--set",
                "test_iterations=1",
                "--set",
                &format!("services_manifest={}", dir.join("deploy.yaml").display()),
                "--set",
                "coverage_require=never",
                "--set",
                &format!("exp_name={name}"),
            ])
            .run();
        let m = out.manifest_at(&format!("out/runs/{name}"));
        assert_eq!(m["run"]["status"], "succeeded", "{name}: {out}");
        // The base's collectors ran: traffic recorded, traces of the window written.
        assert_eq!(m["steps"]["traffic"]["outputs"]["exit_code"], 0, "{name}");
        assert_eq!(
            m["endpoints"]["skywalking"]["url"],
            oap.url().as_str(),
            "{name}"
        );
        assert_eq!(m["endpoints"]["skywalking"]["step"], "traces", "{name}");
        assert_eq!(
            m["endpoints"]["prometheus"]["url"],
            prom.url.as_str(),
            "{name}"
        );
        assert_eq!(m["steps"]["metrics"]["status"], "succeeded", "{name}");
        let traces = m["steps"]["traces"]["artifacts"].as_array().unwrap();
        assert!(
            traces[0]["path"]
                .as_str()
                .unwrap()
                .starts_with(&format!("trace_data/{name}/{name}_skywalking_traces_")),
            "{name}: {traces:?}"
        );
        let labels = labels(&out, &name);
        if name == "normal" {
            assert!(labels.is_empty(), "{name}: {labels:?}");
            continue;
        }
        assert_eq!(labels.len(), 1, "{name}: {labels:?}");
        let l = &labels[0];
        assert_eq!(l["status"], "recovered", "{name}: {l:#}");
        assert_eq!(l["exp_name"], name.as_str());
        match l["mechanism"].as_str() {
            Some("chaos-mesh") => {
                let kind = l["object"]["kind"].as_str().unwrap();
                let obj_name = l["object"]["name"].as_str().unwrap();
                let plural = kind.to_ascii_lowercase().replace("schedule", "schedules");
                assert!(
                    kube.get("chaos-mesh.org", &plural, Some("default"), obj_name)
                        .is_none(),
                    "{name}: {kind} {obj_name} still in the cluster"
                );
                if kind != "Schedule" {
                    // The labels carry the controller's own times, to the second.
                    let timeline: Vec<_> = kube
                        .chaos_timeline()
                        .into_iter()
                        .filter(|t| t.name == obj_name)
                        .collect();
                    let applied = timeline
                        .iter()
                        .filter(|t| t.operation == "Apply")
                        .map(|t| t.at)
                        .min()
                        .unwrap();
                    let recovered = timeline
                        .iter()
                        .filter(|t| t.operation == "Recover")
                        .map(|t| t.at)
                        .max()
                        .unwrap();
                    assert_eq!(
                        parse_time(&l["injected_at"]).timestamp(),
                        applied.timestamp(),
                        "{name}"
                    );
                    assert_eq!(
                        parse_time(&l["recovered_at"]).timestamp(),
                        recovered.timestamp(),
                        "{name}"
                    );
                    assert_eq!(l["injected_at_source"], "controller");
                    assert_eq!(l["recovered_at_source"], "controller");
                    assert!(
                        !l["target"]["pods"].as_array().unwrap().is_empty(),
                        "{name}: {l:#}"
                    );
                }
            }
            Some("chaosblade") => {
                let log = out.read("blade.log");
                let calls: Vec<Vec<String>> = log
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert_eq!(calls.len(), 2, "{name}: {log}");
                assert_eq!(
                    calls[0][..3],
                    ["create", "k8s", "container-jvm"],
                    "{name}: {log}"
                );
                assert!(
                    calls[0].contains(&"--classname".to_string()),
                    "{name}: {log}"
                );
                assert!(calls[0].contains(&"--names".to_string()), "{name}: {log}");
                assert_eq!(calls[1], vec!["destroy", "7c1f7afc281482c8"], "{name}");
            }
            other => panic!("{name}: unexpected mechanism {other:?}"),
        }
    }
}

fn stress_plan(extra_steps: &str) -> String {
    format!(
        r#"
name: t
steps:
  inject:
    kind: chaos-mesh
    inject_timeout: 10s
    recover_timeout: 5s
    manifest:
      apiVersion: chaos-mesh.org/v1alpha1
      kind: StressChaos
      metadata: {{ name: cpu, namespace: default }}
      spec:
        mode: all
        selector: {{ namespaces: [default], labelSelectors: {{ app: ts-preserve-service }} }}
        stressors: {{ cpu: {{ workers: 2, load: 80 }} }}
{extra_steps}"#
    )
}

fn stress_exists(kube: &FakeKube) -> bool {
    kube.get("chaos-mesh.org", "stresschaos", Some("default"), "cpu")
        .is_some()
}

#[test]
fn a_failing_step_still_gets_the_fault_recovered() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&stress_plan(
        "  boom: { kind: shell, after: [inject], run: 'exit 3' }\n",
    ));
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["steps"]["inject"]["status"], "succeeded", "{out}");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert_eq!(m["faults"][0]["recovered_by"], "engine");
    assert!(!stress_exists(&kube));
    // The object went through the real delete path: a DELETE on the right plural.
    assert!(kube.requests().iter().any(|r| r.method == "DELETE"
        && r.path == "/apis/chaos-mesh.org/v1alpha1/namespaces/default/stresschaos/cpu"));
    assert!(kube.requests().iter().any(|r| r.method == "PATCH"
        && r.content_type.as_deref() == Some("application/apply-patch+yaml")
        && r.query_param("fieldManager").as_deref() == Some("ttplan")));
}

fn interrupted_run_recovers(signal: Signal) {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&stress_plan(
        "  long: { kind: shell, after: [inject], run: 'sleep 60' }\n  cleanup: { kind: shell, always: true, after: [long], run: 'touch cleanup.marker' }\n",
    ));
    let kc = kube.write_kubeconfig(t.path());
    let mut run = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .spawn_run();
    run.wait_for_manifest("long running", LIMIT, |m| {
        m["steps"]["long"]["status"] == "running"
    });
    assert!(
        stress_exists(&kube),
        "the fault is injected while `long` runs"
    );
    run.signal(signal);
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "interrupted");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert!(out.exists("cleanup.marker"));
    assert!(!stress_exists(&kube));
}

#[test]
fn sigint_recovers_the_fault() {
    interrupted_run_recovers(Signal::SIGINT);
}

#[test]
fn sigterm_recovers_the_fault() {
    interrupted_run_recovers(Signal::SIGTERM);
}

#[test]
fn kill_9_then_chaos_clean_recovers_from_the_ledger() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&stress_plan(
        "  long: { kind: shell, after: [inject], run: 'sleep 60' }\n",
    ));
    let kc = kube.write_kubeconfig(t.path());
    let kc_arg = kc.display().to_string();
    let mut run = t.args(["--kubeconfig", &kc_arg]).spawn_run();
    run.wait_for_manifest("long running", LIMIT, |m| {
        m["steps"]["long"]["status"] == "running"
    });
    run.signal(Signal::SIGKILL);
    let dir = run.path().to_path_buf();
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), None, "killed by a signal");
    assert!(stress_exists(&kube), "kill -9 leaves the fault behind");
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/runs/t/faults.json")).unwrap())
            .unwrap();
    assert_eq!(ledger["faults"][0]["status"], "injected");

    // The ledger names the cluster: no flags needed.
    let clean = Test::new()
        .args([
            "chaos",
            "clean",
            "--run",
            &dir.join("out/runs/t").display().to_string(),
        ])
        .run();
    assert!(clean.stdout.contains("recovered fault `inject`"), "{clean}");
    assert!(!stress_exists(&kube));
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/runs/t/faults.json")).unwrap())
            .unwrap();
    assert_eq!(ledger["faults"][0]["status"], "recovered");
    assert_eq!(ledger["faults"][0]["recovered_by"], "ttplan chaos clean");
    let labels: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/runs/t/fault_labels.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(labels[0]["status"], "recovered");
    assert!(labels[0]["recovered_at"].is_string());
    // Nothing left to do the second time.
    let again = Test::new()
        .args([
            "chaos",
            "clean",
            "--run",
            &dir.join("out/runs/t").display().to_string(),
            "--kubeconfig",
            &kc_arg,
        ])
        .run();
    assert!(again.stdout.contains("nothing to recover"), "{again}");
}

#[test]
fn a_selector_that_matches_nothing_fails_at_once() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(
        &stress_plan("")
            .replace("app: ts-preserve-service", "app: no-such-service")
            .replace("inject_timeout: 10s", "inject_timeout: 5m"),
    );
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .status(1)
        .run_plan();
    let m = out.manifest();
    let err = m["steps"]["inject"]["error"].as_str().unwrap();
    assert!(err.contains("no target"), "{err}");
    // Well before the 5 minute inject_timeout.
    assert!(m["steps"]["inject"]["duration_ms"].as_u64().unwrap() < 60_000);
    assert!(!stress_exists(&kube), "the failed object is deleted too");
}

#[test]
fn missing_chaos_mesh_is_named_not_a_404_dump() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .chaos_mesh(false)
        .start();
    let t = Test::new().plan(&stress_plan(""));
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .status(1)
        .run_plan();
    let err = out.manifest()["steps"]["inject"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "Chaos Mesh is not installed: no chaos-mesh.org/v1alpha1 StressChaos in the cluster"
    );
}

#[test]
fn an_unreachable_cluster_is_named() {
    let t = Test::new().plan(&stress_plan("")).file(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    );
    let out = t.args(["--kubeconfig", "kubeconfig"]).status(1).run_plan();
    let err = out.manifest()["steps"]["inject"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("cannot reach the Kubernetes API server at http://127.0.0.1:9"),
        "{err}"
    );
}

#[test]
fn a_stuck_finalizer_is_reported_and_force_cleaned() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .recovery_hangs(true)
        .start();
    let t =
        Test::new().plan(&stress_plan("").replace("recover_timeout: 5s", "recover_timeout: 1s"));
    let kc = kube.write_kubeconfig(t.path());
    let kc_arg = kc.display().to_string();
    let out = t.args(["--kubeconfig", &kc_arg]).status(1).run_plan();
    let m = out.manifest();
    assert_eq!(m["faults"][0]["status"], "recovery_failed", "{m:#}");
    let err = m["faults"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("chaos-mesh/records") && err.contains("--force"),
        "{err}"
    );
    assert!(out.stderr.contains("was NOT recovered"), "{out}");
    assert!(stress_exists(&kube));

    let run_dir = out.path().join("out/runs/t").display().to_string();
    let clean = Test::new()
        .args([
            "chaos",
            "clean",
            "--run",
            &run_dir,
            "--force",
            "--timeout",
            "2s",
            "--kubeconfig",
            &kc_arg,
        ])
        .run();
    assert!(clean.stdout.contains("recovered fault `inject`"), "{clean}");
    assert!(!stress_exists(&kube));
}

#[test]
fn chaos_ls_and_clean_all_find_every_kind() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .chaosblade(true)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let kc = kube.write_kubeconfig(dir.path()).display().to_string();
    kube.put(
        "chaos-mesh.org",
        "networkchaos",
        Some("default"),
        serde_json::json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
            "metadata": {"name": "left-behind", "namespace": "default"}, "spec": {"action": "loss"}}),
    );
    kube.put(
        "chaosblade.io",
        "chaosblades",
        None,
        serde_json::json!({"apiVersion": "chaosblade.io/v1alpha1", "kind": "ChaosBlade",
            "metadata": {"name": "old-blade"}, "spec": {"experiments": []}}),
    );
    let ls = Test::new().args(["chaos", "ls", "--kubeconfig", &kc]).run();
    assert!(
        ls.stdout.contains("NetworkChaos") && ls.stdout.contains("left-behind"),
        "{ls}"
    );
    assert!(
        ls.stdout.contains("ChaosBlade") && ls.stdout.contains("old-blade"),
        "{ls}"
    );
    let clean = Test::new()
        .args(["chaos", "clean", "--all", "--kubeconfig", &kc])
        .run();
    assert!(
        clean
            .stdout
            .contains("deleted NetworkChaos default/left-behind"),
        "{clean}"
    );
    assert!(kube
        .get(
            "chaos-mesh.org",
            "networkchaos",
            Some("default"),
            "left-behind"
        )
        .is_none());
    assert!(kube
        .get("chaosblade.io", "chaosblades", None, "old-blade")
        .is_none());
    let ls = Test::new().args(["chaos", "ls", "--kubeconfig", &kc]).run();
    assert!(ls.stdout.contains("no chaos objects"), "{ls}");
}

#[test]
fn wait_ready_restarts_crash_looping_pods() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .pod(PodSeed::deployment("ts-flaky-service", "default").broken(1))
        .start();
    // Its next instance crash-loops (broken once); the one after that is healthy.
    let first = kube.pod_names("default", "ts-flaky-service");
    assert!(kube.delete_pod("default", &first[0]));
    assert!(kube.wait_until(LIMIT, |k| k
        .pod_names("default", "ts-flaky-service")
        .iter()
        .any(|p| *p != first[0])));
    let t = Test::new().plan(
        "name: t\nsteps:\n  ready: { kind: wait-ready, namespace: default, name_prefixes: [ts-], within: 20s, poll: 200ms }\n",
    );
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    let m = out.manifest();
    let restarted = m["steps"]["ready"]["outputs"]["restarted"]
        .as_array()
        .unwrap();
    assert!(
        restarted
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("ts-flaky-service")),
        "{m:#}"
    );
    assert!(m["steps"]["ready"]["outputs"]["pods"].as_u64().unwrap() >= 40);
}

#[test]
fn wait_ready_times_out_naming_the_laggards() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .pod(
            PodSeed::deployment("ts-stuck-service", "default")
                .container(ContainerSeed::new("ts-stuck-service").not_ready()),
        )
        .start();
    let t = Test::new().plan(
        "name: t\nsteps:\n  ready: { kind: wait-ready, namespace: default, within: 1s, poll: 200ms, not_ready_limit: 0s }\n",
    );
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .status(1)
        .run_plan();
    let err = out.manifest()["steps"]["ready"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ts-stuck-service") && err.contains("not Ready"),
        "{err}"
    );
}

#[test]
fn chaosblade_operator_mode_creates_and_deletes_the_cluster_scoped_object() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .chaosblade(true)
        .start();
    let t = Test::new().plan(
        r#"
name: t
steps:
  inject:
    kind: chaosblade
    mode: operator
    namespace: default
    service: ts-order-service
    action: throwCustomException
    flags: { classname: order.service.OrderServiceImpl, methodname: create, exception: java.lang.RuntimeException }
  check: { kind: shell, after: [inject], run: 'true' }
"#,
    );
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    let created = kube
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "PATCH"
                && r.path
                    .starts_with("/apis/chaosblade.io/v1alpha1/chaosblades/")
        })
        .expect("a server-side apply of a cluster-scoped ChaosBlade");
    assert!(
        created.body.contains("OrderServiceImpl"),
        "{}",
        created.body
    );
    assert!(kube.list("chaosblade.io", "chaosblades").is_empty());
    let pod = m["steps"]["inject"]["outputs"]["pod"].as_str().unwrap();
    assert!(pod.starts_with("ts-order-service"), "{pod}");
}

#[test]
fn kube_apply_applies_multi_document_files_and_tears_down() {
    let kube = FakeKube::builder().namespace("default").start();
    let t = Test::new()
        .file(
            "manifests/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: {a: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\ndata: {b: '2'}\n",
        )
        .plan(
            "name: t\nsteps:\n  apply: { kind: kube-apply, files: [manifests], namespace: default, delete_on_teardown: true }\n  check: { kind: shell, after: [apply], run: 'true' }\n",
        );
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    let m = out.manifest();
    assert_eq!(
        m["steps"]["apply"]["outputs"]["applied"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{m:#}"
    );
    let applies = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/configmaps/"))
        .count();
    assert_eq!(applies, 2);
    assert!(
        kube.get("", "configmaps", Some("default"), "one").is_none(),
        "torn down at the end"
    );
    // Teardown is not a fault: no label.
    assert_eq!(out.read("out/runs/t/fault_labels.json").trim(), "[]");
}

#[test]
fn every_plan_validates() {
    let mut plans: Vec<String> = std::fs::read_dir(repo().join("plans"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    plans.sort();
    let mut args = vec!["validate".to_string()];
    args.extend(plans.iter().cloned());
    let out = Test::new().args(args).run();
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        plans.len(),
        "{out}"
    );
}

#[test]
fn collectors_discover_their_backend_as_a_labelled_service() {
    let oap = skywalking::FakeSkyWalking::start(skywalking::Options::default());
    let port: u16 = oap
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let kube = FakeKube::builder().namespace("skywalking").start();
    kube.put(
        "",
        "services",
        Some("skywalking"),
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "oap", "namespace": "skywalking", "labels": {"component": "skywalking"}},
            "spec": {"externalIPs": ["127.0.0.1"], "ports": [{"name": "grpc", "port": 11800}, {"name": "rest", "port": port}]}}),
    );
    let t = Test::new().plan("name: t\nsteps:\n  traces: { kind: collect-traces }\n");
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .env("SKYWALKING_URL", "")
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    let m = out.manifest();
    assert_eq!(
        m["endpoints"]["skywalking"]["url"],
        format!("http://127.0.0.1:{port}"),
        "{m:#}"
    );
    assert_eq!(
        m["endpoints"]["skywalking"]["source"],
        "discovered: Service labelled component=skywalking (skywalking/oap)"
    );
}
