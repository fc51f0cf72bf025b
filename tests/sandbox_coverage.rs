//! The sandbox's coverage against the real JaCoCo: its class files run under Debian's JaCoCo
//! agent give the ids and probes the sandbox's own agents send; Ant's `jacoco:dump` (JaCoCo's
//! own client) and ttplan's `collect-coverage` through the fake API server's port-forward
//! read the sandbox agents; `coverage-report` renders their dumps with JaCoCo's report engine.

use ttplan_sandbox::jacoco::{self, Agents, AGENT_PORT};
use ttplan_sandbox::kube_fake::FakeKube;
use ttplan_sandbox::world::World;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::jvm;
use ttplan::coverage::exec::ExecData;

const NS: &str = "default";
const ORDER: &str = "ts-order-service";
const IMPL: &str = "order.service.OrderServiceImpl";
const CONTROLLER: &str = "order.controller.OrderController";

/// Constructs `class` and calls `class#method` for each argument (Class.forName, reflection).
const DRIVE: &str = r##"
public class Drive {
    public static void main(String[] args) throws Exception {
        for (String s : args) {
            String[] p = s.split("#");
            Object o = Class.forName(p[0]).getConstructor().newInstance();
            if (p.length > 1) {
                o.getClass().getMethod(p[1]).invoke(o);
            }
        }
    }
}
"##;

fn probes(d: &ExecData, prefix: &str) -> BTreeMap<(u64, String), Vec<bool>> {
    d.classes
        .iter()
        .filter(|c| c.has_hits() && c.name.starts_with(prefix))
        .map(|c| ((c.id, c.name.clone()), c.probes.clone()))
        .collect()
}

fn read_exec(p: &Path) -> ExecData {
    ExecData::parse(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// The order service's live pod (none between a pod-kill and its successor).
fn live_order_pod(world: &World) -> Option<String> {
    world
        .pods_at(chrono::Utc::now())
        .into_iter()
        .filter(|p| p.labels.get("app").map(String::as_str) == Some(ORDER))
        .max_by_key(|p| p.created)
        .map(|p| p.name)
}

fn order_pod(world: &World) -> String {
    live_order_pod(world).unwrap()
}

fn run_plan(dir: &Path, plan: &str, exp: &str, kubeconfig: &Path) -> serde_json::Value {
    let path = dir.join(format!("{exp}.yaml"));
    std::fs::write(&path, plan).unwrap();
    let out = support::ttplan()
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--set", &format!("exp_name={exp}"), "--progress", "never"])
        .env_remove("TTPLAN_SANDBOX")
        .output()
        .unwrap();
    let manifest = dir
        .join("out/runs")
        .join(exp)
        .join("experiment_manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    assert!(
        out.status.success(),
        "ttplan run {exp} failed:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap()
}

/// A dump of the order service through the port-forward (`reset` as given), then, with
/// `report`, its coverage report from the checkout at `root`.
fn dump_plan(reset: bool, report: Option<&Path>) -> String {
    let mut plan = format!(
        "name: sb\nsteps:\n  dump:\n    kind: collect-coverage\n    namespace: {NS}\n    selector: app={ORDER}\n    port: {AGENT_PORT}\n    reset: {reset}\n    target_timeout: 10s\n"
    );
    if let Some(root) = report {
        plan.push_str(&format!(
            "  report:\n    kind: coverage-report\n    after: [dump]\n    source_root: \"{}\"\n    require_classes: true\n",
            root.display()
        ));
    }
    plan
}

/// Covered and missed line numbers of `file` in a JaCoCo XML report.
fn lines_of(xml: &str, file: &str) -> (BTreeSet<u32>, BTreeSet<u32>) {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    let (mut covered, mut missed) = (BTreeSet::new(), BTreeSet::new());
    let mut inside = false;
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |k: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == k)
                        .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
                };
                if e.name().as_ref() == b"sourcefile" {
                    inside = attr(b"name").as_deref() == Some(file);
                } else if inside && e.name().as_ref() == b"line" {
                    let nr: u32 = attr(b"nr").unwrap().parse().unwrap();
                    let ci: u32 = attr(b"ci").unwrap().parse().unwrap();
                    if ci > 0 {
                        covered.insert(nr);
                    } else {
                        missed.insert(nr);
                    }
                }
            }
            Event::End(e) if e.name().as_ref() == b"sourcefile" => inside = false,
            Event::Eof => break,
            _ => {}
        }
    }
    (covered, missed)
}

/// The real agent (file output, dumped at JVM exit) running the sandbox's class files: the
/// class ids are JaCoCo's CRC64 of exactly these bytes, each method has one probe, `<init>`
/// first — what the sandbox's agents send for the same calls, byte-identical ids included.
#[test]
fn the_real_agent_on_the_sandbox_classes_agrees_with_the_sandbox_agent() {
    jvm::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("train-ticket");
    jacoco::write_checkout_classes(&root).unwrap();
    let driver = jvm::compile(&dir.join("driver"), &[("Drive.java", DRIVE)]);
    let agent = jvm::extract_agent(dir);
    let real_exec = dir.join("real.exec");
    let classes = jacoco::checkout::classes_dir(&root, ORDER);
    let out = Command::new("java")
        .arg(format!(
            "-javaagent:{}=destfile={},sessionid=real",
            agent.display(),
            real_exec.display()
        ))
        .arg("-cp")
        .arg(format!("{}:{}", driver.display(), classes.display()))
        .arg("Drive")
        .arg(format!("{IMPL}#create"))
        .arg(format!("{IMPL}#modifyOrder"))
        .arg(CONTROLLER)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let real = read_exec(&real_exec);
    let real_order = probes(&real, "order/");
    let impl_bytes = std::fs::read(classes.join("order/service/OrderServiceImpl.class")).unwrap();
    let impl_id = jacoco::classfile::class_id(&impl_bytes);
    // create, queryOrders, getOrderById, modifyOrder: one probe each after `<init>`.
    assert_eq!(
        real_order.get(&(impl_id, "order/service/OrderServiceImpl".into())),
        Some(&vec![true, true, false, false, true]),
        "{real_order:?}"
    );
    let ctl_bytes = std::fs::read(classes.join("order/controller/OrderController.class")).unwrap();
    let ctl_id = jacoco::classfile::class_id(&ctl_bytes);
    assert_eq!(
        real_order.get(&(ctl_id, "order/controller/OrderController".into())),
        Some(&vec![true, false, false, false, false]),
        "{real_order:?}"
    );

    // The sandbox agent, fed the same calls, read by JaCoCo's own client (Ant's jacoco:dump).
    let kube = FakeKube::builder().train_ticket(NS).start();
    let world = World::new(&kube, 0);
    let agents = Agents::start(&kube, &world, NS, AGENT_PORT);
    let pod = order_pod(&world);
    world.record_call(&pod, IMPL, "create");
    world.record_call(&pod, IMPL, "modifyOrder");
    let addr = agents.addr(ORDER).unwrap();
    let ant_exec = dir.join("ant.exec");
    jvm::ant(
        dir,
        &format!(
            "    <jacoco:dump address=\"127.0.0.1\" port=\"{}\" reset=\"false\" dump=\"true\" destfile=\"{}\"/>\n",
            addr.port(),
            ant_exec.display()
        ),
    );
    let sim = read_exec(&ant_exec);
    assert_eq!(sim.sessions.len(), 1);
    assert_eq!(sim.sessions[0].id, pod);
    // The controller's `<init>` ran at start-up (no reset yet), as the real JVM's did.
    assert_eq!(probes(&sim, "order/"), real_order);
}

/// `collect-coverage` through the fake API server's port-forward, repeated dumps, a reset,
/// a pod-kill (the new pod's agent answers with its own name), and `coverage-report` with
/// `source_root:` rendering the sandbox's checkout through Ant's `jacoco:report`.
#[test]
fn sandbox_agents_dump_through_port_forwards_and_render_with_jacoco() {
    jvm::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("train-ticket");
    jacoco::write_checkout_classes(&root).unwrap();
    let kube = FakeKube::builder().train_ticket(NS).start();
    let kubeconfig = kube.write_kubeconfig(dir);
    let world = World::new(&kube, 0);
    let _agents = Agents::start(&kube, &world, NS, AGENT_PORT);
    let pod = order_pod(&world);
    let exec_of = |exp: &str, pod: &str| {
        read_exec(
            &dir.join("out/coverage_data")
                .join(exp)
                .join(format!("{pod}__jacoco-{pod}.exec")),
        )
    };
    let impl_name = "order/service/OrderServiceImpl".to_string();
    let impl_probes = |d: &ExecData| {
        d.classes
            .iter()
            .find(|c| c.name == impl_name)
            .map(|c| c.probes.clone())
    };

    // 1. Dump without reset, twice: the same probes (start-up `<init>`s, `create`).
    world.record_call(&pod, IMPL, "create");
    let m = run_plan(dir, &dump_plan(false, None), "one", &kubeconfig);
    assert_eq!(
        m["steps"]["dump"]["outputs"]["dumped"],
        serde_json::json!([pod])
    );
    run_plan(dir, &dump_plan(false, None), "two", &kubeconfig);
    let (one, two) = (exec_of("one", &pod), exec_of("two", &pod));
    assert_eq!(one.sessions[0].id, pod);
    assert_eq!(probes(&one, ""), probes(&two, ""));
    assert_eq!(
        impl_probes(&one),
        Some(vec![true, true, false, false, false])
    );
    assert_eq!(one.classes.len(), 2, "both classes' <init> ran at start-up");

    // 2. Dump with reset, then new traffic: the next dump holds only that, and its session
    // starts at the reset.
    run_plan(dir, &dump_plan(true, None), "reset", &kubeconfig);
    world.record_call(&pod, IMPL, "queryOrders");
    let m = run_plan(dir, &dump_plan(false, Some(&root)), "after", &kubeconfig);
    let after = exec_of("after", &pod);
    assert_eq!(after.classes.len(), 1, "{after:?}");
    assert_eq!(
        impl_probes(&after),
        Some(vec![false, false, true, false, false])
    );
    let reset_dump = exec_of("reset", &pod);
    assert!(after.sessions[0].start_ms >= reset_dump.sessions[0].dump_ms);

    // 3. The report: JaCoCo's engine read the class files; the covered line is the
    // method's, the rest of the class is missed (line 3: class and constructor).
    assert_eq!(
        m["steps"]["report"]["outputs"]["services"],
        serde_json::json!([ORDER]),
        "{m:#}"
    );
    let svc = dir.join("out/coverage_report/after").join(ORDER);
    let xml = std::fs::read_to_string(svc.join("coverage.xml")).unwrap();
    let (covered, missed) = lines_of(&xml, "OrderServiceImpl.java");
    assert_eq!(covered, BTreeSet::from([5]));
    assert_eq!(missed, BTreeSet::from([3, 4, 6, 7]));
    let summary = std::fs::read_to_string(svc.join("coverage-summary.txt")).unwrap();
    // OrderServiceImpl 5 lines + OrderController 5 lines, one covered: 10%.
    assert!(
        summary.contains("TOTAL               Lines     10  Cover  10%"),
        "{summary}"
    );
    assert!(svc.join("html/index.html").is_file());

    // 4. Pod-kill: the service's new pod has its own agent (fresh probes, its own name).
    assert!(kube.delete_pod(NS, &pod));
    assert!(kube.wait_until(Duration::from_secs(30), |k| {
        live_order_pod(&world).is_some_and(|new| {
            new != pod
                && k.get("", "pods", Some(NS), &new).is_some_and(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
        })
    }));
    let new_pod = order_pod(&world);
    world.record_call(&new_pod, IMPL, "getOrderById");
    run_plan(dir, &dump_plan(true, None), "killed", &kubeconfig);
    let killed = exec_of("killed", &new_pod);
    assert_eq!(killed.sessions[0].id, new_pod);
    assert_eq!(
        impl_probes(&killed),
        Some(vec![true, false, false, true, false])
    );
}

/// A sandbox run on a host without the report engine (here: an `ant` that does not exist):
/// `coverage-report` says "not simulated" in its outputs, log and the manifest and the run
/// succeeds; the same plan outside a sandbox fails. `ttplan dataset check` names the reason
/// in the coverage_report row (still a violation: the folder lacks the reports).
#[test]
fn without_a_jvm_a_sandbox_run_says_coverage_reports_are_not_simulated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("train-ticket");
    jacoco::write_checkout_classes(&root).unwrap();
    let kube = FakeKube::builder().train_ticket(NS).start();
    let kubeconfig = kube.write_kubeconfig(dir);
    let world = World::new(&kube, 0);
    let _agents = Agents::start(&kube, &world, NS, AGENT_PORT);
    let plan = dump_plan(true, Some(&root)).replace(
        "    require_classes: true\n",
        "    require_classes: true\n    ant: /nonexistent/ant\n",
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    let exp = "Normal_case_20260101_000000_em";
    let run = |sandbox: bool, exp: &str| {
        let mut c = support::ttplan();
        c.arg("run")
            .arg(&path)
            .arg("--out")
            .arg(dir.join("out"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--set", &format!("exp_name={exp}"), "--progress", "never"]);
        if sandbox {
            c.env("TTPLAN_SANDBOX", dir);
        } else {
            c.env_remove("TTPLAN_SANDBOX");
        }
        c.output().unwrap()
    };
    let out = run(true, exp);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not simulated: needs a JVM, ant and JaCoCo's report jars"),
        "{stderr}"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.join("out/runs")
                .join(exp)
                .join("experiment_manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let report = &manifest["steps"]["report"];
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let why = report["outputs"]["not_simulated"].as_str().unwrap();
    assert!(
        why.starts_with("not simulated: needs a JVM, ant and JaCoCo's report jars")
            && why.contains("`/nonexistent/ant`"),
        "{why}"
    );
    assert_eq!(report["outputs"]["missing"][0], "`/nonexistent/ant`");
    // The dumps are there; no report folder was started.
    assert!(dir.join("out/coverage_data").join(exp).is_dir());
    assert!(!dir.join("out/coverage_report").join(exp).exists());

    let check = support::ttplan()
        .args(["dataset", "check"])
        .arg(dir.join("out"))
        .args(["--exp", exp])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let table = String::from_utf8_lossy(&check.stdout);
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("coverage_report"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("not simulated"), "{table}");
    assert!(
        table.contains("the run's coverage reports were not simulated, step `report`: not simulated: needs a JVM"),
        "{table}"
    );

    // Outside a sandbox a missing report engine is a failed step.
    let out = run(false, "Normal_case_20260101_000001_em");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/ant"), "{stderr}");
}
