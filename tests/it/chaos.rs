//! Faults against the fake Kubernetes API server: every campaign plan injects and recovers its
//! fault, recovery happens on every exit path (failure, SIGINT, SIGTERM, kill -9 + chaos clean),
//! and the cluster errors a user meets are clear.

use crate::support;
use ttplan_sandbox::kube_fake;
use ttplan_sandbox::skywalking;

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

/// A `blade` stand-in that behaves like the real CLI for k8s experiments (it creates the
/// ChaosBlade object and polls the operator) and logs its arguments.
const FAKE_BLADE: &str = ttplan_sandbox::FAKE_BLADE;

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

/// One test per experiment plan of the campaign (so one failure hides none of the others);
/// [`the_campaign_plan_tests_cover_every_plan`] keeps the list complete.
macro_rules! campaign_plan_tests {
    ($($plan:ident),* $(,)?) => {
        mod every_campaign_plan_injects_its_fault_and_recovers_it {
            $(#[test]
            fn $plan() {
                super::campaign_plan_injects_its_fault_and_recovers_it(stringify!($plan));
            })*
        }
        const CAMPAIGN_PLANS: &[&str] = &[$(stringify!($plan)),*];
    };
}

campaign_plan_tests!(
    lv_c_order_exception,
    lv_c_security_check,
    lv_c_travel_null,
    lv_d_db_delay_pool,
    lv_d_db_delay_tx,
    lv_d_mysql_mem,
    lv_p_cpu,
    lv_p_io,
    lv_p_netloss,
    lv_s_dns,
    lv_s_http_abort,
    lv_s_killpod_gateway,
    lv_s_killpod_order,
    lv_s_killpod_preserve,
    normal,
);

#[test]
fn the_campaign_plan_tests_cover_every_plan() {
    let mut plans: Vec<String> = std::fs::read_dir(repo().join("plans"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("demo"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    plans.sort();
    assert!(plans.len() >= 13, "campaign plans: {plans:?}");
    assert_eq!(
        plans, CAMPAIGN_PLANS,
        "add the new plan to campaign_plan_tests!"
    );
}

/// The service a pod-kill plan keeps killing while coverage is dumped.
fn killed_service(plan: &str) -> Option<&'static str> {
    match plan {
        "lv_s_killpod_gateway" => Some("ts-gateway-service"),
        "lv_s_killpod_order" => Some("ts-order-service"),
        "lv_s_killpod_preserve" => Some("ts-preserve-service"),
        _ => None,
    }
}

/// An experiment plan of the campaign, end to end against the fake cluster, with the
/// deploy and traffic commands replaced by no-ops.
fn campaign_plan_injects_its_fault_and_recovers_it(name: &str) {
    let plan = repo().join("plans").join(format!("{name}.yaml"));
    let name = name.to_string();
    let oap = skywalking::FakeSkyWalking::start(skywalking::Options::default());
    let five_hours_ago = chrono::Utc::now().timestamp() - 5 * 3600;
    let prom = support::prometheus::Prometheus::start(&format!(
        "# TYPE up gauge\nup{{job=\"x\"}} 1 {five_hours_ago}\n# EOF\n"
    ));
    {
        let kube = FakeKube::builder()
            .train_ticket("default")
            .chaosblade(true)
            .start();
        // The services' manifest the base re-applies with the JaCoCo agent; the sandbox's
        // agents answer the pods' port 6300 and its class files are the checkout's, so
        // coverage is required (`coverage_require: any`, the base's default).
        let world = ttplan_sandbox::world::World::new(&kube, 0);
        let _agents = ttplan_sandbox::jacoco::Agents::start(
            &kube,
            &world,
            "default",
            ttplan_sandbox::jacoco::AGENT_PORT,
        );
        let t = Test::new()
            .file("noop.py", "print('traffic')\n")
            .file("deploy.yaml", SERVICES_MANIFEST);
        let dir = t.path().to_path_buf();
        ttplan_sandbox::jacoco::write_checkout_classes(&dir).unwrap();
        let kubeconfig = kube.write_kubeconfig(&dir);
        let bin = write_fake_blade(&dir);
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
            // The fakes are the sandbox: without a JVM, coverage reports are "not simulated".
            .env("TTPLAN_SANDBOX", &dir.display().to_string())
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
        let reported = m["steps"]["coverage_report"]["outputs"]["services"]
            .as_array()
            .map_or(0, Vec::len);
        let has_jvm = ttplan::coverage::report::missing_engine_parts(
            &ttplan::coverage::report::ReportEngine::Ant {
                ant: "ant".into(),
                lib_dir: "/usr/share/java".into(),
            },
        )
        .is_empty();
        if has_jvm {
            match killed_service(&name) {
                // Coverage is dumped while the schedule still kills the service's pod every
                // 3 s: a dump that finds it between its kill and its replacement's Ready has
                // no agent to ask, and the collector says which pod and why.
                Some(app) if reported == 40 => {
                    let coverage = &m["steps"]["coverage"]["outputs"];
                    let why = ["skipped", "no_agent", "failed"].map(|k| coverage[k].to_string());
                    assert!(
                        why.concat().contains(app),
                        "{name}: 40 reports: {coverage:#}"
                    );
                }
                _ => assert_eq!(reported, 41, "{name}: {:#}", m["steps"]["coverage_report"]),
            }
        } else {
            let why = m["steps"]["coverage_report"]["outputs"]["not_simulated"]
                .as_str()
                .unwrap_or_default();
            assert!(
                why.starts_with("not simulated: needs a JVM"),
                "{name}: {why}"
            );
        }
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
            return;
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
                // Zero chaos objects left behind, of any kind.
                for plural in [
                    "stresschaos",
                    "networkchaos",
                    "podchaos",
                    "iochaos",
                    "httpchaos",
                    "dnschaos",
                    "schedules",
                    "workflows",
                ] {
                    assert!(
                        kube.list("chaos-mesh.org", plural).is_empty(),
                        "{name}: {plural} left"
                    );
                }
                if kind == "Schedule" {
                    // Every child the schedule spawned, with the pod it killed and when.
                    let applied: Vec<_> = kube
                        .chaos_timeline()
                        .into_iter()
                        .filter(|t| t.kind == "PodChaos" && t.operation == "Apply")
                        .collect();
                    let kids = l["children"].as_array().unwrap();
                    assert!(!applied.is_empty(), "{name}");
                    assert_eq!(kids.len(), applied.len(), "{name}: {l:#}");
                    for a in &applied {
                        let kid = kids.iter().find(|k| k["name"] == a.name.as_str()).unwrap();
                        assert_eq!(kid["pods"], serde_json::json!([a.target]), "{name}");
                        assert_eq!(
                            parse_time(&kid["injected_at"]).timestamp(),
                            a.at.timestamp(),
                            "{name}"
                        );
                    }
                    assert_eq!(l["injected_at_source"], "controller", "{name}");
                    assert!(
                        !l["target"]["pods"].as_array().unwrap().is_empty(),
                        "{name}"
                    );
                } else {
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
                let uid = l["object"]["name"].as_str().unwrap();
                assert_eq!(calls[1][..4], ["destroy", uid, "--target", "k8s"], "{name}");
                assert!(kube
                    .get("chaosblade.io", "chaosblades", None, uid)
                    .is_none());
                assert_eq!(l["injected_at_source"], "controller", "{name}: {l:#}");
                assert_eq!(l["recovered_at_source"], "controller", "{name}: {l:#}");
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

fn empty_selector_fails_with_the_controllers_reason(kube: FakeKube, reason: &str) {
    let t = Test::new().plan(
        &stress_plan("")
            .replace("app: ts-preserve-service", "app: no-such-service")
            .replace(
                "inject_timeout: 10s",
                "inject_timeout: 5m\n    select_timeout: 5m",
            ),
    );
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .status(1)
        .run_plan();
    let m = out.manifest();
    let err = m["steps"]["inject"]["error"].as_str().unwrap();
    // The controller's own words, then what ttplan looked for and found.
    assert!(
        err.contains(&format!("Failed to select targets: {reason}")),
        "{err}"
    );
    assert!(
        err.contains("no-such-service") && err.contains("namespace default"),
        "{err}"
    );
    assert!(
        err.contains("no pod in default has the labels app=no-such-service"),
        "{err}"
    );
    // Failed on the Event, not on either timeout.
    assert!(
        !err.contains("select_timeout") && !err.contains("within"),
        "{err}"
    );
    assert!(!stress_exists(&kube), "the failed object is deleted too");
}

#[test]
fn a_selector_that_matches_nothing_fails_with_the_controllers_reason() {
    let kube = FakeKube::builder().train_ticket("default").start();
    empty_selector_fails_with_the_controllers_reason(kube, "no pod is selected");
}

#[test]
fn an_older_controllers_wording_of_an_empty_selection_is_recognised_too() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .legacy_selection_message(true)
        .start();
    empty_selector_fails_with_the_controllers_reason(kube, "no target has been selected");
}

/// Every new object shows `Selected=False, AllInjected=False` until the records controller
/// has selected and applied (here for 2 s): that is a wait, not "no target".
#[test]
fn the_all_false_transient_is_waited_out() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .delays(kube_fake::Delays {
            chaos_inject: Duration::from_secs(2),
            ..Default::default()
        })
        .start();
    let t = Test::new().plan(&stress_plan(""));
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["steps"]["inject"]["status"], "succeeded", "{out}");
    // ttplan read the object while it was in the transient state (several GETs).
    let gets = kube
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path == "/apis/chaos-mesh.org/v1alpha1/namespaces/default/stresschaos/cpu"
        })
        .count();
    assert!(gets >= 3, "{gets} reads");
    let l = &labels(&out, "t")[0];
    let pod = kube.pod_names("default", "ts-preserve-service").remove(0);
    assert_eq!(
        l["target"]["pods"],
        serde_json::json!([format!("default/{pod}")])
    );
    assert_eq!(l["injected_at_source"], "controller");
}

/// A controller that never selects (not running, or stuck): after `select_timeout` the step
/// fails naming the selector, the namespace and the pods that do carry the labels.
#[test]
fn selection_that_never_happens_times_out_naming_the_pods_that_exist() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .delays(kube_fake::Delays {
            chaos_inject: Duration::from_secs(3600),
            ..Default::default()
        })
        .start();
    let t = Test::new().plan(&stress_plan("").replace(
        "inject_timeout: 10s",
        "inject_timeout: 5m\n    select_timeout: 1s",
    ));
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .status(1)
        .run_plan();
    let err = out.manifest()["steps"]["inject"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    let pod = kube.pod_names("default", "ts-preserve-service").remove(0);
    assert!(
        err.contains("selected no target within 1s (select_timeout)"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "pods with labels app=ts-preserve-service: default/{pod} (Running)"
        )),
        "{err}"
    );
}

fn schedule_plan(extra: &str) -> String {
    format!(
        r#"
name: t
steps:
  inject:
    kind: chaos-mesh
    inject_timeout: 20s
    recover_timeout: 10s
    manifest:
      apiVersion: chaos-mesh.org/v1alpha1
      kind: Schedule
      metadata: {{ name: kills, namespace: default }}
      spec:
        schedule: "@every 1s"
        type: PodChaos
        historyLimit: 1
        concurrencyPolicy: Forbid
        podChaos:
          action: pod-kill
          mode: one
          selector: {{ namespaces: [default], labelSelectors: {{ app: ts-order-service }} }}
  hold: {{ kind: sleep, after: [inject], duration: 4s }}
{extra}"#
    )
}

/// A Schedule kills one pod per tick through a child PodChaos; the history limit collects old
/// children long before the run ends. The labels still name every child, the pod it killed
/// and the controller's time, and the schedule's start and end.
#[test]
fn a_schedule_is_labelled_with_every_pod_it_killed() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&schedule_plan(
        "  recover: { kind: recover, after: [hold], faults: [inject] }\n",
    ));
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    let l = &labels(&out, "t")[0];
    assert_eq!(l["status"], "recovered", "{l:#}");
    let kids = l["children"].as_array().unwrap();
    // The controller's own account: every Apply of every child.
    let applied: Vec<_> = kube
        .chaos_timeline()
        .into_iter()
        .filter(|t| t.kind == "PodChaos" && t.operation == "Apply")
        .collect();
    assert!(applied.len() >= 3, "{applied:?}");
    assert_eq!(kids.len(), applied.len(), "{l:#}");
    for a in &applied {
        let kid = kids
            .iter()
            .find(|k| k["name"] == a.name.as_str())
            .unwrap_or_else(|| panic!("child {} missing: {l:#}", a.name));
        assert_eq!(kid["kind"], "PodChaos");
        assert_eq!(kid["pods"], serde_json::json!([a.target]), "{kid}");
        assert_eq!(
            parse_time(&kid["injected_at"]).timestamp(),
            a.at.timestamp()
        );
        assert!(kid["recovered_at"].is_string(), "{kid}");
        assert!(a.name.starts_with("kills-") && a.name.len() == "kills-".len() + 5);
    }
    // Most children were collected by the history limit before recovery: known from Events.
    assert!(kids.iter().any(|k| k["source"] == "events"), "{l:#}");
    let mut pods: Vec<&str> = applied.iter().map(|a| a.target.as_str()).collect();
    pods.sort_unstable();
    pods.dedup();
    assert_eq!(l["target"]["pods"], serde_json::json!(pods));
    let first = applied.iter().map(|a| a.at).min().unwrap();
    assert_eq!(parse_time(&l["injected_at"]).timestamp(), first.timestamp());
    assert_eq!(l["injected_at_source"], "controller");
    assert!(parse_time(&l["parent"]["created_at"]) <= first, "{l:#}");
    assert!(parse_time(&l["parent"]["deleted_at"]) >= first, "{l:#}");
    // Nothing of the schedule is left.
    assert!(kube.list("chaos-mesh.org", "schedules").is_empty());
    assert!(kube.list("chaos-mesh.org", "podchaos").is_empty());
}

/// After kill -9 during a Schedule, `chaos clean --run` returns only once the schedule's
/// children (each recovered through its finalizer) are gone too.
#[test]
fn kill_9_then_chaos_clean_waits_for_a_schedules_children() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&schedule_plan("").replace("duration: 4s", "duration: 60s"));
    let kc = kube.write_kubeconfig(t.path());
    let mut run = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .spawn_run();
    run.wait_for_manifest("hold running", LIMIT, |m| {
        m["steps"]["hold"]["status"] == "running"
    });
    run.signal(Signal::SIGKILL);
    let dir = run.path().to_path_buf();
    // Keeps the run's folder alive.
    let _killed = run.wait(LIMIT);
    assert!(!kube.list("chaos-mesh.org", "podchaos").is_empty());
    let clean = Test::new()
        .args([
            "chaos",
            "clean",
            "--run",
            &dir.join("out/runs/t").display().to_string(),
        ])
        .run();
    assert!(clean.stdout.contains("recovered fault `inject`"), "{clean}");
    // Checked right as the command returns: nothing of the schedule is left.
    assert!(kube.list("chaos-mesh.org", "podchaos").is_empty());
    assert!(kube.list("chaos-mesh.org", "schedules").is_empty());
    let labels: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/runs/t/fault_labels.json")).unwrap(),
    )
    .unwrap();
    assert!(
        !labels[0]["children"].as_array().unwrap().is_empty(),
        "{labels:#}"
    );
}

/// A Workflow injects through the chaos objects its nodes create: the labels list each with
/// the pods it hit and the controller's times.
#[test]
fn a_workflow_is_labelled_with_each_nodes_chaos() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(
        r#"
name: w
steps:
  inject:
    kind: chaos-mesh
    inject_timeout: 20s
    recover_timeout: 10s
    manifest:
      apiVersion: chaos-mesh.org/v1alpha1
      kind: Workflow
      metadata: { name: both, namespace: default }
      spec:
        entry: entry
        templates:
          - { name: entry, templateType: Parallel, children: [kill-order, delay-travel] }
          - name: kill-order
            templateType: PodChaos
            podChaos: { action: pod-kill, mode: one, selector: { labelSelectors: { app: ts-order-service } } }
          - name: delay-travel
            templateType: NetworkChaos
            networkChaos: { action: delay, mode: all, selector: { labelSelectors: { app: ts-travel-service } }, delay: { latency: 100ms } }
  hold: { kind: sleep, after: [inject], duration: 1s }
"#,
    );
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    let l = &labels(&out, "t")[0];
    assert_eq!(l["status"], "recovered", "{l:#}");
    let kids = l["children"].as_array().unwrap();
    assert_eq!(kids.len(), 2, "{l:#}");
    for a in kube
        .chaos_timeline()
        .into_iter()
        .filter(|t| t.operation == "Apply")
    {
        let kid = kids
            .iter()
            .find(|k| k["name"] == a.name.as_str())
            .unwrap_or_else(|| panic!("{} missing: {l:#}", a.name));
        assert_eq!(kid["kind"], a.kind.as_str());
        assert_eq!(kid["pods"], serde_json::json!([a.target]));
        assert_eq!(
            parse_time(&kid["injected_at"]).timestamp(),
            a.at.timestamp()
        );
        assert!(kid["recovered_at"].is_string(), "{kid}");
    }
    assert_eq!(l["target"]["pods"].as_array().unwrap().len(), 2, "{l:#}");
    assert!(kube.list("chaos-mesh.org", "workflows").is_empty());
    assert!(kube.list("chaos-mesh.org", "podchaos").is_empty());
    assert!(kube.list("chaos-mesh.org", "networkchaos").is_empty());
}

/// A stuck finalizer on a schedule's child: the printed remedy is a command that works, and
/// it removes the children too (and returns only once they are gone).
#[test]
fn a_schedules_stuck_children_are_force_cleaned_by_the_printed_remedy() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .recovery_hangs(true)
        .start();
    let t =
        Test::new().plan(&schedule_plan("").replace("recover_timeout: 10s", "recover_timeout: 1s"));
    let kc = kube.write_kubeconfig(t.path());
    let kc_arg = kc.display().to_string();
    let out = t.args(["--kubeconfig", &kc_arg]).status(1).run_plan();
    let m = out.manifest();
    assert_eq!(m["faults"][0]["status"], "recovery_failed", "{m:#}");
    assert!(!kube.list("chaos-mesh.org", "podchaos").is_empty());
    let err = m["faults"][0]["error"].as_str().unwrap();
    let run_dir = out.path().join("out/runs/t");
    let remedy = format!("ttplan chaos clean --run {} --force", run_dir.display());
    assert!(err.contains(&format!("`{remedy}`")), "{err}");
    // Run exactly what was printed.
    let args: Vec<&str> = remedy.split(' ').skip(1).collect();
    let clean = Test::new().args(args).run();
    assert!(clean.stdout.contains("recovered fault `inject`"), "{clean}");
    assert!(kube.list("chaos-mesh.org", "podchaos").is_empty());
    assert!(kube.list("chaos-mesh.org", "schedules").is_empty());
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

// ---------------------------------------------------------------------------------------------
// Cluster client limits, ledger paths and ChaosBlade recovery paths (engine helper)
// ---------------------------------------------------------------------------------------------

/// A TCP listener that accepts connections and never answers: an API server that hangs.
/// The accepted sockets stay open for as long as the returned guard lives.
struct BlackHole {
    addr: std::net::SocketAddr,
    _held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl BlackHole {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                keep.lock().unwrap().push(s);
            }
        });
        BlackHole { addr, _held: held }
    }

    fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("hung-kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: hung\n  cluster:\n    server: http://{}\ncontexts:\n- name: hung\n  context: {{cluster: hung, user: hung, namespace: default}}\ncurrent-context: hung\nusers:\n- name: hung\n  user: {{token: t}}\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }
}

#[test]
fn chaos_ls_against_a_server_that_never_answers_gives_up() {
    let hole = BlackHole::start();
    let t = Test::new();
    let kc = hole.write_kubeconfig(t.path());
    let out = t
        .args([
            "chaos",
            "ls",
            "--kubeconfig",
            &kc.display().to_string(),
            "--request-timeout",
            "1s",
        ])
        .status(1)
        .run();
    assert!(
        out.stderr.contains(&hole.addr.to_string()) && out.stderr.contains("timed out"),
        "{out}"
    );
}

/// The first SIGTERM cancels a step stuck in an API call: it is not left to its request timeout.
#[test]
fn sigterm_interrupts_a_step_stuck_on_a_server_that_never_answers() {
    let hole = BlackHole::start();
    let t = Test::new().plan(&stress_plan(""));
    let kc = hole.write_kubeconfig(t.path());
    let mut run = t
        .args([
            "--kubeconfig",
            &kc.display().to_string(),
            // Longer than the engine's grace period for a cancelled step.
            "--request-timeout",
            "25s",
        ])
        .spawn_run();
    run.wait_for_manifest("inject running", LIMIT, |m| {
        m["steps"]["inject"]["status"] == "running"
    });
    run.signal(Signal::SIGTERM);
    let out = run.wait(Duration::from_secs(90));
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    assert_eq!(m["steps"]["inject"]["status"], "cancelled", "{m:#}");
    assert_eq!(m["run"]["status"], "interrupted", "{m:#}");
}

/// A relative `--kubeconfig` is stored absolute in the ledger, so `chaos clean --run` works
/// from any directory after kill -9.
#[test]
fn chaos_clean_after_kill_9_works_from_another_directory_with_a_relative_kubeconfig() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&stress_plan(
        "  long: { kind: shell, after: [inject], run: 'sleep 60' }\n",
    ));
    kube.write_kubeconfig(t.path());
    let mut run = t.args(["--kubeconfig", "kubeconfig"]).spawn_run();
    run.wait_for_manifest("long running", LIMIT, |m| {
        m["steps"]["long"]["status"] == "running"
    });
    run.signal(Signal::SIGKILL);
    let dir = run.path().to_path_buf();
    // Keeps the run's temp dir alive.
    let _killed = run.wait(LIMIT);
    assert!(stress_exists(&kube));
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/runs/t/faults.json")).unwrap())
            .unwrap();
    let recorded = ledger["faults"][0]["recovery"]["kube"]["kubeconfig"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(Path::new(&recorded).is_absolute(), "{ledger:#}");
    // Another directory (its own temp dir), no flags.
    Test::new()
        .args([
            "chaos",
            "clean",
            "--run",
            &dir.join("out/runs/t").display().to_string(),
        ])
        .run();
    assert!(!stress_exists(&kube));
}

/// A `recover` step without `recover_timeout` waits as long as the fault's own
/// `recover_timeout` (5s here), not a default of its own.
#[test]
fn the_faults_own_recover_timeout_wins_over_the_recover_steps_default() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .recovery_hangs(true)
        .start();
    let t = Test::new().plan(&stress_plan(
        "  recover: { kind: recover, faults: [inject], after: [inject] }\n",
    ));
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["steps"]["recover"]["status"], "failed", "{m:#}");
    let error = m["steps"]["recover"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("after 5s"), "{error}");
}

fn blade_plan(mode: &str, extra_steps: &str) -> String {
    format!(
        r#"
name: t
steps:
  inject:
    kind: chaosblade
    mode: {mode}
    namespace: default
    service: ts-order-service
    action: throwCustomException
    inject_timeout: 20s
    recover_timeout: 3s
    flags: {{ classname: order.service.OrderServiceImpl, methodname: create, exception: java.lang.RuntimeException }}
{extra_steps}"#
    )
}

fn blade_env(t: Test, dir: &Path) -> Test {
    let bin = write_fake_blade(dir);
    t.env(
        "PATH",
        &format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    )
    .env("BLADE_LOG", &dir.join("blade.log").display().to_string())
}

/// The labels carry the operator's own Running / Destroyed times (its status writes), in
/// both modes, and name the pod the operator reports.
#[test]
fn chaosblade_labels_carry_the_operators_transition_times() {
    for mode in ["operator", "cli"] {
        let kube = FakeKube::builder()
            .train_ticket("default")
            .chaosblade(true)
            .start();
        let t = Test::new().plan(&blade_plan(
            mode,
            "  check: { kind: shell, after: [inject], run: 'true' }\n",
        ));
        let dir = t.path().to_path_buf();
        let kc = kube.write_kubeconfig(&dir);
        let out = blade_env(t, &dir)
            .args(["--kubeconfig", &kc.display().to_string()])
            .run_plan();
        let l = &labels(&out, "t")[0];
        let name = l["object"]["name"].as_str().unwrap();
        let timeline: Vec<_> = kube
            .chaos_timeline()
            .into_iter()
            .filter(|t| t.kind == "ChaosBlade" && t.name == name)
            .collect();
        let at = |op: &str| timeline.iter().find(|t| t.operation == op).unwrap().at;
        assert_eq!(l["injected_at_source"], "controller", "{mode}: {l:#}");
        assert_eq!(l["recovered_at_source"], "controller", "{mode}: {l:#}");
        assert_eq!(parse_time(&l["injected_at"]), at("Apply"), "{mode}");
        assert_eq!(parse_time(&l["recovered_at"]), at("Recover"), "{mode}");
        let pod = out.manifest()["steps"]["inject"]["outputs"]["pod"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            l["target"]["pods"],
            serde_json::json!([format!("default/{pod}")])
        );
        assert!(
            kube.list("chaosblade.io", "chaosblades").is_empty(),
            "{mode}"
        );
    }
}

/// SIGINT while `blade create` still polls the operator: the experiment it created is found by
/// the uid ttplan gave it and destroyed; the run exits 130 with nothing left behind.
#[test]
fn sigint_during_a_slow_blade_create_destroys_the_experiment() {
    let kube = FakeKube::builder()
        .train_ticket("default")
        .chaosblade(true)
        // The operator takes long to attach to the JVM: `blade create` keeps polling.
        .delays(kube_fake::Delays {
            blade: Duration::from_secs(60),
            ..Default::default()
        })
        .start();
    let t = Test::new().plan(&blade_plan("cli", ""));
    let dir = t.path().to_path_buf();
    let kc = kube.write_kubeconfig(&dir);
    let mut run = blade_env(t, &dir)
        .args(["--kubeconfig", &kc.display().to_string()])
        .spawn_run();
    run.wait_until("blade create made its ChaosBlade", LIMIT, || {
        !kube.list("chaosblade.io", "chaosblades").is_empty()
    });
    let name = kube.list("chaosblade.io", "chaosblades")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    run.signal(Signal::SIGINT);
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert_eq!(m["faults"][0]["recovery"]["name"], name.as_str(), "{m:#}");
    assert!(kube.list("chaosblade.io", "chaosblades").is_empty());
    let log = out.read("blade.log");
    assert!(
        log.lines()
            .any(|l| l.contains("\"destroy\"") && l.contains(&name)),
        "{log}"
    );
}

/// An operator that cannot destroy the experiment keeps `finalizer.chaosblade.io`: the run
/// fails naming the remedy, and `chaos clean --run … --force` removes the finalizer.
#[test]
fn a_stuck_chaosblade_finalizer_names_the_remedy_and_force_removes_it() {
    for mode in ["operator", "cli"] {
        let kube = FakeKube::builder()
            .train_ticket("default")
            .chaosblade(true)
            .recovery_hangs(true)
            .start();
        let t = Test::new().plan(&blade_plan(mode, ""));
        let dir = t.path().to_path_buf();
        let kc = kube.write_kubeconfig(&dir);
        let out = blade_env(t, &dir)
            .args(["--kubeconfig", &kc.display().to_string()])
            .status(1)
            .run_plan();
        let blades = kube.list("chaosblade.io", "chaosblades");
        assert_eq!(blades.len(), 1, "{mode}");
        assert_eq!(blades[0]["status"]["phase"], "Destroying", "{mode}");
        let run_dir = dir.join("out/runs/t");
        let remedy = format!("ttplan chaos clean --run {} --force", run_dir.display());
        assert!(out.stderr.contains(&remedy), "{mode}: {out}");
        assert!(
            out.stderr.contains("finalizer.chaosblade.io"),
            "{mode}: {out}"
        );
        let clean = blade_env(Test::new(), &dir)
            .args([
                "chaos",
                "clean",
                "--run",
                &run_dir.display().to_string(),
                "--force",
                "--timeout",
                "3s",
            ])
            .run();
        assert!(
            clean.stdout.contains("recovered fault `inject`"),
            "{mode}: {clean}"
        );
        assert!(
            kube.list("chaosblade.io", "chaosblades").is_empty(),
            "{mode}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The sandbox: `run --sandbox` and `sandbox up`.

#[test]
fn run_with_sandbox_injects_into_the_simulated_cluster_and_records_it() {
    let out = Test::new()
        .plan(&stress_plan(
            "  traces: { kind: collect-traces, after: [inject] }\n",
        ))
        .args(["--sandbox", "--progress", "never"])
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    let sandbox = &m["sandbox"];
    assert_eq!(sandbox["namespace"], "default", "{m:#}");
    // The run found SkyWalking through the sandbox's variable, and injected into its pods.
    assert_eq!(
        m["endpoints"]["skywalking"]["url"], sandbox["skywalking_url"],
        "{m:#}"
    );
    let labels = labels(&out, support::EXP);
    assert_eq!(labels.len(), 1, "{labels:?}");
    assert_eq!(labels[0]["status"], "recovered", "{:#}", labels[0]);
    assert!(
        !labels[0]["target"]["pods"].as_array().unwrap().is_empty(),
        "{:#}",
        labels[0]
    );
}

#[test]
fn a_run_without_sandbox_records_no_sandbox() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&stress_plan(""));
    let kc = kube.write_kubeconfig(t.path());
    let out = t
        .args(["--kubeconfig", &kc.display().to_string()])
        .run_plan();
    assert_eq!(out.manifest()["sandbox"], Value::Null);
}

#[test]
fn sandbox_up_serves_until_interrupted_and_plans_run_against_it() {
    let mut up = Test::new()
        .args([
            "sandbox",
            "up",
            "--env-file",
            "sandbox.env",
            "--port-file",
            "port",
            "--dir",
            "sb",
        ])
        .spawn();
    let env = up.wait_for_file("sandbox.env", Duration::from_secs(30));
    let port = up.wait_for_file("port", Duration::from_secs(5));
    let vars: Vec<(String, String)> = env
        .lines()
        .map(|l| {
            let (k, v) = l.strip_prefix("export ").unwrap().split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    // Endpoints, the simulated checkout and the short waits (docs/sandbox.md).
    for name in [
        "KUBECONFIG",
        "SKYWALKING_URL",
        "TT_BASE_URL",
        "TRAIN_TICKET_DIR",
        "EVOMASTER_TEST",
        "TT_WARMUP",
        "TTPLAN_SANDBOX",
        "PROMETHEUS_URL",
    ] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    let var = |name: &str| &vars.iter().find(|(k, _)| k == name).unwrap().1;
    assert!(Path::new(var("TRAIN_TICKET_DIR"))
        .join("hack/deploy/deploy.sh")
        .is_file());
    let kubeconfig = std::fs::read_to_string(var("KUBECONFIG")).unwrap();
    assert!(
        kubeconfig.contains(&format!("127.0.0.1:{}", port.trim())),
        "{kubeconfig}"
    );
    // A plan run in another process, pointed at it by the printed variables.
    let mut run = Test::new()
        .plan(&stress_plan(""))
        .args(["--progress", "never"]);
    for (k, v) in &vars {
        run = run.env(k, v);
    }
    let out = run.run_plan();
    assert_eq!(out.manifest()["run"]["status"], "succeeded", "{out}");
    assert_eq!(labels(&out, support::EXP)[0]["status"], "recovered");
    up.signal(Signal::SIGINT);
    let stopped = up.wait(Duration::from_secs(10));
    assert_eq!(stopped.status.code(), Some(0), "{stopped}");
    assert!(stopped.stdout.contains("kubeconfig: "), "{stopped}");
}
