//! The sandbox's coverage against the real JaCoCo: its class files run under Debian's JaCoCo
//! agent give the ids and probes the sandbox's own agents send; Ant's `jacoco:dump` (JaCoCo's
//! own client) and ttplan's `collect-coverage` through the fake API server's port-forward
//! read the sandbox agents; `coverage-report` renders their dumps with JaCoCo's report engine.

use crate::support;
use ttplan_sandbox::jacoco::{self, Agents, AGENT_PORT};
use ttplan_sandbox::kube_fake::FakeKube;
use ttplan_sandbox::world::World;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::jvm;
use ttplan::coverage::exec::ExecData;

const TTPLAN: &str = env!("CARGO_BIN_EXE_ttplan");
const NS: &str = "default";
const ORDER: &str = "ts-order-service";
const IMPL: &str = "order.service.OrderServiceImpl";
const CONTROLLER: &str = "order.controller.OrderController";

/// The probes of `class` with the given methods hit: `<init>` first, then one per method in
/// the class table's order (the sandbox's class files are straight-line methods).
fn expected_probes(class: &str, init: bool, hit: &[&str]) -> Vec<bool> {
    let classes = ttplan_sandbox::train_ticket::classes(ORDER);
    let (_, methods) = classes.iter().find(|(c, _)| c == class).unwrap();
    std::iter::once(init)
        .chain(methods.iter().map(|m| hit.contains(&m.as_str())))
        .collect()
}

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
    let (out, manifest) = try_plan(TTPLAN.as_ref(), dir, plan, exp, kubeconfig);
    assert!(
        out.status.success(),
        "ttplan run {exp} failed:\n{}\n{manifest:#}",
        String::from_utf8_lossy(&out.stderr)
    );
    manifest
}

/// Runs `plan` with the `ttplan` binary `bin`; its output and manifest (`null` when none).
fn try_plan(
    bin: &OsStr,
    dir: &Path,
    plan: &str,
    exp: &str,
    kubeconfig: &Path,
) -> (std::process::Output, serde_json::Value) {
    let path = dir.join(format!("{exp}.yaml"));
    std::fs::write(&path, plan).unwrap();
    let out = support::isolated(bin)
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
    (out, serde_json::from_str(&text).unwrap_or_default())
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
    // One probe per method after `<init>`.
    assert_eq!(
        real_order.get(&(impl_id, "order/service/OrderServiceImpl".into())),
        Some(&expected_probes(IMPL, true, &["create", "modifyOrder"])),
        "{real_order:?}"
    );
    let ctl_bytes = std::fs::read(classes.join("order/controller/OrderController.class")).unwrap();
    let ctl_id = jacoco::classfile::class_id(&ctl_bytes);
    assert_eq!(
        real_order.get(&(ctl_id, "order/controller/OrderController".into())),
        Some(&expected_probes(CONTROLLER, true, &[])),
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
        Some(expected_probes(IMPL, true, &["create"]))
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
        Some(expected_probes(IMPL, false, &["queryOrders"]))
    );
    let reset_dump = exec_of("reset", &pod);
    assert!(after.sessions[0].start_ms >= reset_dump.sessions[0].dump_ms);

    // 3. The report: JaCoCo's engine read the class files; the covered line is the
    // method's, the rest of the class is missed (line 3: class and constructor; the methods
    // from line 4 in the class table's order).
    assert_eq!(
        m["steps"]["report"]["outputs"]["services"],
        serde_json::json!([ORDER]),
        "{m:#}"
    );
    let svc = dir.join("out/coverage_report/after").join(ORDER);
    let xml = std::fs::read_to_string(svc.join("coverage.xml")).unwrap();
    let (covered, missed) = lines_of(&xml, "OrderServiceImpl.java");
    let methods = expected_probes(IMPL, false, &[]).len() - 1;
    let query_line = 4 + expected_probes(IMPL, false, &["queryOrders"])
        .iter()
        .skip(1)
        .position(|hit| *hit)
        .unwrap() as u32;
    assert_eq!(covered, BTreeSet::from([query_line]));
    let all: BTreeSet<u32> = (3..4 + methods as u32).collect();
    assert_eq!(missed, &all - &covered);
    let summary = std::fs::read_to_string(svc.join("coverage-summary.txt")).unwrap();
    // Both classes: a line for the class and constructor plus one per method each; one covered.
    let controller_lines = expected_probes(CONTROLLER, false, &[]).len();
    let total = (methods + 1) + controller_lines;
    let percent = (100.0 / total as f64).round();
    assert!(
        summary.contains(&format!(
            "TOTAL               Lines {total:>6}  Cover {percent:>3}%"
        )),
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
        Some(expected_probes(IMPL, true, &["getOrderById"]))
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

/// A dump of `services` (all their pods), without reset, into `coverage_data/<exp>`.
fn dump_services_plan(services: &[&str]) -> String {
    format!(
        "name: sb\nsteps:\n  dump:\n    kind: collect-coverage\n    namespace: {NS}\n    selector: \"app in ({})\"\n    port: {AGENT_PORT}\n    reset: false\n    require: all\n    target_timeout: 10s\n",
        services.join(", ")
    )
}

/// `coverage-report` of the dumps in `coverage_data/<dump_exp>` from the checkout at `root`
/// (`extra`: more fields, indented as the step's).
fn report_plan(dump_exp: &str, root: &Path, extra: &str) -> String {
    format!(
        "name: sb\nsteps:\n  report:\n    kind: coverage-report\n    exec_dir: coverage_data/{dump_exp}\n    source_root: \"{}\"\n    require_classes: true\n{extra}",
        root.display()
    )
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// All services of a step render in one Ant run; one whose classes JaCoCo cannot analyse (a
/// class file of a newer Java than its ASM reads: major version 99) fails inside that run.
/// The others still get their reports, the step fails naming that service with JaCoCo's
/// message, no scratch folder is left, and every file is byte for byte what rendering each
/// service in an Ant run of its own (`services_per_run: 1`) writes — which fails the same
/// service the same way.
#[test]
fn a_service_failing_inside_the_batch_is_named_and_the_others_are_reported() {
    jvm::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("train-ticket");
    jacoco::write_checkout_classes(&root).unwrap();
    let kube = FakeKube::builder().train_ticket(NS).start();
    let kubeconfig = kube.write_kubeconfig(dir);
    let world = World::new(&kube, 0);
    let _agents = Agents::start(&kube, &world, NS, AGENT_PORT);
    world.record_call(&order_pod(&world), IMPL, "create");
    let services = ["ts-auth-service", "ts-order-service", "ts-user-service"];
    run_plan(dir, &dump_services_plan(&services), "dump", &kubeconfig);
    // The order service's classes, plus one compiled for a Java JaCoCo 0.8.6 cannot read.
    let broken = dir.join("order-classes");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(jacoco::checkout::classes_dir(&root, ORDER))
        .arg(&broken)
        .status()
        .unwrap();
    assert!(copied.success());
    let mut class = b"\xCA\xFE\xBA\xBE\x00\x00\x00\x63".to_vec();
    class.extend_from_slice(&[0; 32]);
    std::fs::write(broken.join("order/Future.class"), class).unwrap();
    let services_field = format!(
        "    services:\n      {ORDER}: {{ classes: \"{}\" }}\n",
        broken.display()
    );

    let mut reports = Vec::new();
    for (exp, extra) in [("batched", ""), ("each", "    services_per_run: 1\n")] {
        let plan = report_plan("dump", &root, &format!("{services_field}{extra}"));
        let (out, m) = try_plan(TTPLAN.as_ref(), dir, &plan, exp, &kubeconfig);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{exp}: {stderr}");
        let step = &m["steps"]["report"];
        assert_eq!(step["status"], "failed", "{exp}: {step:#}");
        let err = step["error"].as_str().unwrap();
        // One service failed: its name, the engine, JaCoCo's own words; no other service.
        assert!(
            err.starts_with(&format!("service `{ORDER}`: ant jacoco:report failed")),
            "{exp}: {err}"
        );
        assert!(err.contains("Error while"), "{exp}: {err}");
        assert!(
            !err.contains("ts-auth-service") && !err.contains("ts-user-service"),
            "{exp}: {err}"
        );
        let report_root = dir.join("out/coverage_report").join(exp);
        for svc in ["ts-auth-service", "ts-user-service"] {
            for f in [
                "coverage.xml",
                "coverage-summary.txt",
                "coverage-summary.json",
                "merged.exec",
                "html/index.html",
            ] {
                assert!(report_root.join(svc).join(f).is_file(), "{exp}: {svc}/{f}");
            }
        }
        assert!(!report_root.join(ORDER).join("coverage.xml").exists());
        let table = std::fs::read_to_string(report_root.join("coverage-summary.tsv")).unwrap();
        assert_eq!(
            table
                .lines()
                .map(|l| l.split('\t').next().unwrap())
                .collect::<Vec<_>>(),
            ["service", "ts-auth-service", "ts-user-service"],
            "{exp}: {table}"
        );
        let files = tree(&report_root);
        assert!(
            !files.keys().any(|k| k.contains(".render.")),
            "{exp}: scratch left: {:?}",
            files.keys().collect::<Vec<_>>()
        );
        reports.push((err.to_string(), files));
    }
    let (batched, each) = (&reports[0], &reports[1]);
    assert_eq!(
        batched.1.keys().collect::<Vec<_>>(),
        each.1.keys().collect::<Vec<_>>()
    );
    for (k, v) in &batched.1 {
        assert!(each.1[k] == *v, "{k} differs between the modes");
    }
}

/// Benchmark, not a test (run by `scripts/bench-coverage-report.sh`): `coverage-report` on the
/// dumps of the first `BENCH_SERVICES` (default 41: all) Java services of the sandbox, rendered
/// by the `ttplan` of `TTPLAN_BIN` (default the test build) with each service in an Ant run of
/// its own (`services_per_run: 1`, the former way) and with all in one (the default),
/// `BENCH_ROUNDS` (default 3) rounds with alternating order. Checks that both modes wrote the
/// same bytes, and prints the median step time (manifest `duration_ms`) of each in ms.
#[test]
#[ignore = "benchmark: run through scripts/bench-coverage-report.sh"]
fn bench_coverage_report() {
    jvm::require_tools();
    let env_num = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env_num("BENCH_SERVICES", 41);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let bin = std::env::var("TTPLAN_BIN").unwrap_or_else(|_| TTPLAN.into());
    let bin = OsStr::new(&bin);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("train-ticket");
    jacoco::write_checkout_classes(&root).unwrap();
    let kube = FakeKube::builder().train_ticket(NS).start();
    let kubeconfig = kube.write_kubeconfig(dir);
    let world = World::new(&kube, 0);
    let _agents = Agents::start(&kube, &world, NS, AGENT_PORT);
    world.record_call(&order_pod(&world), IMPL, "create");
    let services: Vec<&str> = ttplan_sandbox::train_ticket::JAVA_SERVICES
        .iter()
        .take(n)
        .map(|(s, _)| *s)
        .collect();
    let (out, m) = try_plan(
        bin,
        dir,
        &dump_services_plan(&services),
        "dump",
        &kubeconfig,
    );
    assert!(out.status.success(), "{m:#}");
    let modes = [
        ("per-service", "    services_per_run: 1\n"),
        ("batched", ""),
    ];
    let mut times: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in 0..rounds {
        let order: Vec<usize> = if r % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        for i in order {
            let (label, extra) = modes[i];
            let exp = format!("{label}-{r}");
            let (out, m) = try_plan(
                bin,
                dir,
                &report_plan("dump", &root, extra),
                &exp,
                &kubeconfig,
            );
            let step = &m["steps"]["report"];
            assert!(out.status.success(), "{exp}: {step:#}");
            assert_eq!(step["outputs"]["services"].as_array().unwrap().len(), n);
            times
                .entry(label)
                .or_default()
                .push(step["duration_ms"].as_u64().unwrap());
        }
    }
    let a = tree(&dir.join("out/coverage_report/per-service-0"));
    let b = tree(&dir.join("out/coverage_report/batched-0"));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the two modes wrote different files");
    for (label, mut v) in times {
        v.sort_unstable();
        println!("BENCH coverage-report {label} {n} {}", v[(v.len() - 1) / 2]);
    }
}
