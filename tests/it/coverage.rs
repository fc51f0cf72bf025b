//! Coverage end to end: `ttplan instrument` on the real Train-Ticket manifests, and dumps from a
//! real JVM running Debian's JaCoCo agent through the `ttplan` binary, merged and rendered by
//! Ant's `jacoco:report`, checked against what the program executed and against Ant's own
//! `jacoco:dump`; the same agent reached through Kubernetes port-forwards of the fake API
//! server.

use crate::support;
use ttplan_sandbox::kube_fake;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;
use support::jvm::{self, Jvm};
use ttplan::coverage::exec::ExecData;

const TTPLAN: &str = env!("CARGO_BIN_EXE_ttplan");

// ---------------------------------------------------------------- instrument on the fixtures

fn docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn run_instrument(input: &Path, output: &Path) {
    let out = support::ttplan()
        .arg("instrument")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(["--agent-image", "registry.local/jacoco-agent:0.8.6"])
        .args(["--includes", "ts-order-service=order.*"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ttplan instrument failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_fixture(name: &str, skywalking_deployments: usize) {
    let Some(shared) = support::shared_dir() else {
        return;
    };
    let fixture = shared.join("fixtures/train-ticket").join(name);
    let mut svc = std::fs::read_to_string(shared.join("fixtures/train-ticket/svc.yaml")).unwrap();
    if !svc.ends_with('\n') {
        svc.push('\n');
    }
    let deploy = std::fs::read_to_string(&fixture).unwrap();
    // Services first, so "non-workload documents untouched" can be checked byte for byte.
    let input_text = format!("{svc}---\n{deploy}");
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.yaml");
    std::fs::write(&input, &input_text).unwrap();
    let once = tmp.path().join("once.yaml");
    let twice = tmp.path().join("twice.yaml");
    run_instrument(&input, &once);
    run_instrument(&once, &twice);
    let once_text = std::fs::read_to_string(&once).unwrap();
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        input_text,
        "input edited"
    );
    assert!(
        once_text == std::fs::read_to_string(&twice).unwrap(),
        "instrumenting its own output changed it"
    );
    assert!(
        once_text.starts_with(&format!("{svc}---\n")),
        "the Service documents were not copied verbatim"
    );

    let before = docs(&input_text);
    let after = docs(&once_text);
    assert_eq!(before.len(), after.len(), "document count changed");
    let mut deployments = 0;
    let mut instrumented = 0;
    let mut with_skywalking = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b["kind"], a["kind"], "document order changed");
        assert_eq!(b["metadata"]["name"], a["metadata"]["name"]);
        if a["kind"] != "Deployment" {
            assert_eq!(a, b);
            continue;
        }
        deployments += 1;
        let name = a["metadata"]["name"].as_str().unwrap();
        if ttplan::coverage::instrument::TRAIN_TICKET_NON_JAVA.contains(&name) {
            // No JVM: left exactly as it was.
            assert_eq!(a, b, "{name}");
            continue;
        }
        instrumented += 1;
        let pod = &a["spec"]["template"]["spec"];
        let has = |list: &Value, n: &str| {
            list.as_sequence()
                .unwrap()
                .iter()
                .any(|e| e["name"].as_str() == Some(n))
        };
        assert!(has(&pod["volumes"], "jacoco-agent"), "{name}: volume");
        assert!(has(&pod["initContainers"], "jacoco-agent"), "{name}: init");
        let old_jto = b["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "JAVA_TOOL_OPTIONS")
            .and_then(|e| e["value"].as_str())
            .unwrap_or("");
        let skywalking = old_jto.contains("skywalking-agent.jar");
        if skywalking {
            with_skywalking += 1;
            assert!(has(&pod["initContainers"], "agent-container"), "{name}");
        }
        let c = &pod["containers"][0];
        let env: Vec<&Value> = c["env"].as_sequence().unwrap().iter().collect();
        let pos = |n: &str| env.iter().position(|e| e["name"].as_str() == Some(n));
        let (p, j) = (pos("POD_NAME").unwrap(), pos("JAVA_TOOL_OPTIONS").unwrap());
        assert!(p < j, "{name}: POD_NAME must precede JAVA_TOOL_OPTIONS");
        assert_eq!(
            env[p]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
            "{name}"
        );
        let jto = env[j]["value"].as_str().unwrap();
        let agents: Vec<&str> = jto
            .split_whitespace()
            .filter(|t| t.starts_with("-javaagent:"))
            .collect();
        if skywalking {
            assert_eq!(agents.len(), 2, "{name}: {jto}");
            assert_eq!(
                agents[0], "-javaagent:/skywalking/agent/skywalking-agent.jar",
                "{name}: SkyWalking must stay first"
            );
        } else {
            assert_eq!(agents.len(), 1, "{name}: {jto}");
        }
        let jacoco = agents.last().unwrap();
        assert!(
            jacoco.starts_with(
                "-javaagent:/jacoco/jacocoagent.jar=output=tcpserver,address=*,port=6300,"
            ),
            "{name}: {jacoco}"
        );
        assert!(jacoco.ends_with(",sessionid=$(POD_NAME)"), "{jacoco}");
        assert!(!jacoco.contains("HOSTNAME"));
        // The service's own packages, from the Train-Ticket table (`--includes` set the same
        // pattern for ts-order-service).
        let package = ttplan::coverage::instrument::TRAIN_TICKET_PACKAGES
            .iter()
            .find(|(s, _)| *s == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("{name}: not a known Java service"));
        assert!(
            jacoco.contains(&format!("includes={package}.*,")),
            "{name}: {jacoco}"
        );
        assert!(
            c["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| p["containerPort"] == 6300 && p["name"] == "jacoco-agent"),
            "{name}: agent port"
        );
        // Everything that was there is still there, in order: only additions.
        let old_env = b["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let kept: Vec<&str> = env
            .iter()
            .filter_map(|e| e["name"].as_str())
            .filter(|n| *n != "POD_NAME")
            .collect();
        let mut want: Vec<&str> = old_env.iter().filter_map(|e| e["name"].as_str()).collect();
        if !want.contains(&"JAVA_TOOL_OPTIONS") {
            want.push("JAVA_TOOL_OPTIONS");
        }
        assert_eq!(kept, want, "{name}: env order");
    }
    assert_eq!(deployments, 46);
    // The published dataset's 41 Java services.
    assert_eq!(instrumented, 41);
    assert_eq!(with_skywalking, skywalking_deployments);
}

#[test]
fn instrument_sw_deploy_fixture() {
    // Two of its 46 Deployments run without the SkyWalking agent, both non-Java; every Java
    // service has it.
    check_fixture("sw_deploy.yaml", 41);
}

#[test]
fn instrument_deploy_fixture() {
    check_fixture("deploy.yaml", 0);
}

// ---------------------------------------------------------------- a real JVM and agent

const MAIN: &str = r#"import java.io.*;
public class Main {
    public static void main(String[] args) throws Exception {
        System.out.println("phase1 " + Work.phaseOne(4));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.equals("phase2")) {
                System.out.println("phase2 " + Work.phaseTwo("ok"));
            }
        }
    }
}
"#;

/// Line numbers matter: the test checks exactly which lines are covered.
const WORK: &str = r#"public class Work {
    static int phaseOne(int n) {
        int s = 0;
        for (int i = 0; i < n; i++) {
            s += i;
        }
        return s;
    }
    static String phaseTwo(String x) {
        return x.toUpperCase();
    }
    static void never() {
        System.out.println("never");
    }
}
"#;

const POD: &str = "demo-7d9f8b6c5-bcdfg";

fn run_plan(dir: &Path, plan: &str, exp: &str) -> serde_json::Value {
    run_plan_with(dir, plan, exp, &[])
}

fn run_plan_with(dir: &Path, plan: &str, exp: &str, args: &[&str]) -> serde_json::Value {
    let plan_path = dir.join(format!("{exp}.yaml"));
    std::fs::write(&plan_path, plan).unwrap();
    let out = support::ttplan()
        .arg("run")
        .arg(&plan_path)
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--set", &format!("exp_name={exp}"), "--progress", "never"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let manifest = dir
        .join("out/runs")
        .join(exp)
        .join("experiment_manifest.json");
    assert!(
        out.status.success(),
        "ttplan run {exp} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&manifest).unwrap_or_default()
    );
    serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap()
}

fn dump_plan(address: &str, refused: &str, classes: &Path, src: &Path) -> String {
    format!(
        r#"name: coverage-test
steps:
  dump:
    kind: collect-coverage
    targets:
      - {{ name: {POD}, address: "{address}" }}
      - {{ name: no-agent-5d6f7-bcdfg, address: "{refused}" }}
    target_timeout: 5s
  report:
    kind: coverage-report
    after: [dump]
    services:
      demo: {{ classes: "{}", sources: ["{}"] }}
"#,
        classes.display(),
        src.display()
    )
}

/// Covered and missed line numbers of one source file in a JaCoCo XML report.
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

fn probes(d: &ExecData) -> BTreeMap<(u64, String), Vec<bool>> {
    d.classes
        .iter()
        .filter(|c| c.has_hits())
        .map(|c| ((c.id, c.name.clone()), c.probes.clone()))
        .collect()
}

fn read_exec(p: &Path) -> ExecData {
    ExecData::parse(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn dumps_a_real_agent_with_reset_merges_and_renders_through_ant() {
    jvm::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let classes = jvm::compile(dir, &[("Main.java", MAIN), ("Work.java", WORK)]);
    let src = dir.join("src");
    let agent = jvm::extract_agent(dir);
    let mut java = Jvm::start(&agent, &classes, "Main", "test");
    let refused = format!("127.0.0.1:{}", jvm::free_port());

    // Reference: Ant's jacoco:dump at the same moment (no reset; the program is idle).
    let ant_exec = dir.join("ant.exec");
    jvm::ant(
        dir,
        &format!(
            "    <jacoco:dump address=\"127.0.0.1\" port=\"{}\" reset=\"false\" dump=\"true\" destfile=\"{}\"/>\n",
            java.port,
            ant_exec.display()
        ),
    );

    // Phase 1: dump with reset through ttplan.
    let m1 = run_plan(
        dir,
        &dump_plan(&java.address(), &refused, &classes, &src),
        "p1",
    );
    let no_agent = &m1["steps"]["dump"]["outputs"]["no_agent"];
    assert_eq!(no_agent[0]["name"], "no-agent-5d6f7-bcdfg", "{no_agent}");
    assert!(
        no_agent[0]["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{no_agent}"
    );
    let exec_name = format!("{POD}__jacoco-{POD}.exec");
    let p1 = dir.join("out/coverage_data/p1").join(&exec_name);
    let d1 = read_exec(&p1);
    assert_eq!(d1.sessions.len(), 1);
    assert_eq!(d1.sessions[0].id, "test");
    let reference = read_exec(&ant_exec);
    assert_eq!(
        probes(&d1),
        probes(&reference),
        "ttplan's dump differs from Ant's jacoco:dump"
    );
    assert!(probes(&d1).keys().any(|(_, n)| n == "Work"));

    let xml1 =
        std::fs::read_to_string(dir.join("out/coverage_report/p1/demo/coverage.xml")).unwrap();
    assert_eq!(lines_of(&xml1, "Work.java").0, BTreeSet::from([3, 4, 5, 7]));

    // Phase 2: new code runs; the second dump holds only what ran since the reset.
    java.send("phase2");
    java.expect_line("phase2 OK");
    let m2 = run_plan(
        dir,
        &dump_plan(&java.address(), &refused, &classes, &src),
        "p2",
    );
    assert_eq!(m2["run"]["status"], "succeeded");
    let p2 = dir.join("out/coverage_data/p2").join(&exec_name);
    let d2 = read_exec(&p2);
    let work = |d: &ExecData| {
        d.classes
            .iter()
            .find(|c| c.name == "Work")
            .map(|c| c.probes.clone())
            .unwrap()
    };
    let (w1, w2) = (work(&d1), work(&d2));
    assert!(
        w1.iter().zip(&w2).all(|(a, b)| !(*a && *b)),
        "the second dump repeats probes of the first: {w1:?} / {w2:?}"
    );
    let xml2 =
        std::fs::read_to_string(dir.join("out/coverage_report/p2/demo/coverage.xml")).unwrap();
    assert_eq!(lines_of(&xml2, "Work.java").0, BTreeSet::from([10]));

    // Reset only: nothing written, the agent reports no probes afterwards.
    java.send("phase2");
    java.expect_line("phase2 OK");
    let reset_plan = format!(
        "name: coverage-reset\nsteps:\n  reset:\n    kind: collect-coverage\n    dump: false\n    targets: [{{ name: {POD}, address: \"{}\" }}]\n",
        java.address()
    );
    let m3 = run_plan(dir, &reset_plan, "reset");
    assert_eq!(m3["steps"]["reset"]["outputs"]["reset"][0], POD);
    assert!(!dir
        .join("out/coverage_data/reset")
        .join(&exec_name)
        .exists());
    let after_reset = dir.join("after-reset.exec");
    jvm::ant(
        dir,
        &format!(
            "    <jacoco:dump address=\"127.0.0.1\" port=\"{}\" reset=\"false\" dump=\"true\" destfile=\"{}\"/>\n",
            java.port,
            after_reset.display()
        ),
    );
    assert!(
        !read_exec(&after_reset)
            .classes
            .iter()
            .any(|c| c.name == "Work" && c.has_hits()),
        "a reset-only step left Work's probes set"
    );

    // Merge: both dumps as two pods of one service.
    let both = dir.join("both");
    std::fs::create_dir_all(&both).unwrap();
    std::fs::copy(&p1, both.join(&exec_name)).unwrap();
    let other = "demo-7d9f8b6c5-zq2w4";
    std::fs::copy(&p2, both.join(format!("{other}__jacoco-{other}.exec"))).unwrap();
    // This time the classes come from a Spring Boot style fat jar.
    let jar = dir.join("demo.jar");
    boot_jar(&classes, &jar);
    let merge_plan = format!(
        r#"name: coverage-merge
steps:
  report:
    kind: coverage-report
    exec_dir: "{}"
    services:
      demo: {{ jar: "{}", sources: ["{}"] }}
"#,
        both.display(),
        jar.display(),
        src.display()
    );
    run_plan(dir, &merge_plan, "merged");
    let report = dir.join("out/coverage_report/merged/demo");
    let xml = std::fs::read_to_string(report.join("coverage.xml")).unwrap();
    assert!(
        xml.contains(r#"<report name="JaCoCo Coverage Report">"#),
        "{}",
        &xml[..300.min(xml.len())]
    );
    let (covered, missed) = lines_of(&xml, "Work.java");
    assert_eq!(covered, BTreeSet::from([3, 4, 5, 7, 10]));
    // 14: the `return` of the void `never()` sits on its closing brace.
    assert_eq!(missed, BTreeSet::from([1, 13, 14]));
    // The published names: `merged.exec`, and JaCoCo CLI's default report name.
    assert!(!report.join("jacoco.exec").exists());
    let merged = read_exec(&report.join("merged.exec"));
    assert_eq!(merged.sessions.len(), 2);
    assert!(merged.sessions[0].dump_ms <= merged.sessions[1].dump_ms);
    assert!(report.join("html/index.html").is_file());

    // Summaries agree with the XML's report-level LINE counter.
    let counters = ttplan::coverage::report::report_counters(&xml).unwrap();
    let line = counters["LINE"];
    let pct = ttplan::coverage::report::percent_half_even(line.covered, line.total()).unwrap();
    let txt = std::fs::read_to_string(report.join("coverage-summary.txt")).unwrap();
    let rule = |c: &str| c.repeat(66);
    assert_eq!(
        txt,
        format!(
            "{}\n  Simple Code Coverage Report\n{}\nService: demo\n{}\nTOTAL               Lines {:>6}  Cover {pct:>3}%\n{}\n",
            rule("="),
            rule("-"),
            rule("-"),
            line.total(),
            rule("-")
        )
    );
    // The all-services table is beside the service folders, under another name.
    let table =
        std::fs::read_to_string(dir.join("out/coverage_report/merged/coverage-summary.tsv"))
            .unwrap();
    assert_eq!(
        table,
        format!(
            "service\ttotal_lines\tline_coverage\ndemo\t{}\t{pct}%\n",
            line.total()
        )
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("coverage-summary.json")).unwrap(),
    )
    .unwrap();
    for kind in ["INSTRUCTION", "LINE", "METHOD", "CLASS", "COMPLEXITY"] {
        assert!(
            json["counters"][kind]["total"].as_u64().unwrap() > 0,
            "{kind}: {json}"
        );
    }
    assert!(html_mentions(&report.join("html"), "Work.java"));
}

/// A jar laid out like Spring Boot's: the app's classes under `BOOT-INF/classes`, plus a
/// loader class outside it that must not be reported.
fn boot_jar(classes: &Path, jar: &Path) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(jar).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    for name in ["Main.class", "Work.class"] {
        z.start_file(format!("BOOT-INF/classes/{name}"), o).unwrap();
        std::io::Write::write_all(&mut z, &std::fs::read(classes.join(name)).unwrap()).unwrap();
    }
    z.start_file("org/springframework/boot/loader/JarLauncher.class", o)
        .unwrap();
    std::io::Write::write_all(&mut z, &std::fs::read(classes.join("Main.class")).unwrap()).unwrap();
    z.finish().unwrap();
}

fn html_mentions(dir: &Path, needle: &str) -> bool {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.iter().any(|f| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(needle))
    })
}

#[test]
fn repeated_commands_on_one_connection_and_reset_only() {
    use ttplan::coverage::protocol::{dump, DumpCommand};
    use ttplan::coverage::target::Transport;
    jvm::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let classes = jvm::compile(tmp.path(), &[("Main.java", MAIN), ("Work.java", WORK)]);
    let agent = jvm::extract_agent(tmp.path());
    let java = Jvm::start(&agent, &classes, "Main", "repeat");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Transport::Direct {
            address: java.address(),
        };
        let mut s = t.connect(None).await.unwrap();
        let first = dump(
            &mut s,
            DumpCommand {
                dump: true,
                reset: false,
            },
        )
        .await
        .unwrap();
        assert!(first
            .classes
            .iter()
            .any(|c| c.name == "Work" && c.has_hits()));
        // Reset only: header + command ok, no data.
        let none = dump(
            &mut s,
            DumpCommand {
                dump: false,
                reset: true,
            },
        )
        .await
        .unwrap();
        assert!(
            none.sessions.is_empty() && none.classes.is_empty(),
            "{none:?}"
        );
        let after = dump(
            &mut s,
            DumpCommand {
                dump: true,
                reset: false,
            },
        )
        .await
        .unwrap();
        assert_eq!(after.sessions[0].id, "repeat");
        assert!(
            !after
                .classes
                .iter()
                .any(|c| c.name == "Work" && c.has_hits()),
            "reset did not clear Work"
        );
    });
}

// ---------------------------------------------------------------- plans

fn validate(path: &Path) -> std::process::Output {
    support::ttplan()
        .arg("validate")
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn example_plan_validates() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/examples/coverage.yaml");
    let out = validate(&p);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn coverage_kinds_parse_from_toml_and_reject_unknown_fields_with_a_span() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = tmp.path().join("c.toml");
    std::fs::write(
        &toml,
        r#"name = "c"
[steps.dump]
kind = "collect-coverage"
reset = false
target_timeout = "5s"
targets = [{ name = "ts-a-service-5d6f7-bcdfg", address = "127.0.0.1:6300" }]
[steps.report]
kind = "coverage-report"
after = ["dump"]
pod_services = { "odd-pod" = "ts-a-service" }
[steps.report.services.ts-a-service]
jar = "a.jar"
sources = ["src"]
[steps.inst]
kind = "instrument"
input = "deploy.yaml"
agent_image = "img"
includes = { ts-a-service = "a.*" }
"#,
    )
    .unwrap();
    let out = validate(&toml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let yaml = tmp.path().join("bad.yaml");
    std::fs::write(
        &yaml,
        "name: bad\nsteps:\n  dump:\n    kind: collect-coverage\n    targets:\n      - { name: a, address: \"127.0.0.1:1\", selector: app=x }\n",
    )
    .unwrap();
    let out = validate(&yaml);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:6:"), "{err}");
    assert!(err.contains("unknown field `selector`"), "{err}");
}

#[test]
fn instrument_step_writes_a_copy_and_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ts-a-service}\nspec:\n  template:\n    spec:\n      containers: [{name: a, image: a}]\n";
    std::fs::write(dir.join("deploy.yaml"), manifest).unwrap();
    let plan = "name: inst\nsteps:\n  inst:\n    kind: instrument\n    input: deploy.yaml\n    output: manifests/deploy.jacoco.yaml\n    agent_image: img\n    includes: { ts-a-service: a.* }\n";
    let m = run_plan(dir, plan, "inst");
    assert_eq!(
        m["steps"]["inst"]["outputs"]["changed"][0],
        "Deployment/ts-a-service"
    );
    let out = std::fs::read_to_string(dir.join("out/manifests/deploy.jacoco.yaml")).unwrap();
    assert!(out.starts_with("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"));
    assert!(out.contains("includes=a.*,sessionid=$(POD_NAME)"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("deploy.yaml")).unwrap(),
        manifest
    );
}

#[test]
fn instrument_in_place_and_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("d.yaml");
    let text = "kind: Deployment\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: i}]\n";
    std::fs::write(&f, text).unwrap();
    let run = |args: &[&str]| {
        let out = support::ttplan()
            .arg("instrument")
            .arg(&f)
            .args(["--agent-image", "img"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let stdout = String::from_utf8(run(&[]).stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        text,
        "edited without --in-place"
    );
    assert!(stdout.contains("sessionid=$(POD_NAME)"));
    run(&["--in-place"]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), stdout);
    let again = run(&["--in-place"]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), stdout);
    assert!(String::from_utf8_lossy(&again.stderr).contains("1 already instrumented"));
}

/// Repeated commands on one connection: with TCP_QUICKACK (what `Transport::Direct` gives)
/// each costs about a millisecond; a plain socket stalls ~40 ms per command on delayed ACKs.
#[test]
fn quickack_avoids_delayed_ack_stalls_on_repeated_commands() {
    use ttplan::coverage::protocol::{dump, DumpCommand};
    use ttplan::coverage::target::Transport;
    jvm::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let classes = jvm::compile(tmp.path(), &[("Main.java", MAIN), ("Work.java", WORK)]);
    let agent = jvm::extract_agent(tmp.path());
    let java = Jvm::start(&agent, &classes, "Main", "quickack");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cmd = DumpCommand {
        dump: true,
        reset: false,
    };
    let (quick, plain) = rt.block_on(async {
        let mut s = Transport::Direct {
            address: java.address(),
        }
        .connect(None)
        .await
        .unwrap();
        dump(&mut s, cmd).await.unwrap();
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            dump(&mut s, cmd).await.unwrap();
        }
        let quick = t0.elapsed();
        drop(s);
        let mut p = tokio::net::TcpStream::connect(java.address())
            .await
            .unwrap();
        p.set_nodelay(true).unwrap();
        dump(&mut p, cmd).await.unwrap();
        let t0 = std::time::Instant::now();
        for _ in 0..20 {
            dump(&mut p, cmd).await.unwrap();
        }
        (quick, t0.elapsed())
    });
    eprintln!("20 commands on one connection: quickack {quick:?}, plain socket {plain:?}");
    if plain < std::time::Duration::from_millis(200) {
        eprintln!("note: this kernel does not delay these ACKs; nothing to compare");
        return;
    }
    assert!(
        quick * 3 < plain,
        "TCP_QUICKACK made no difference: {quick:?} vs {plain:?}"
    );
}

#[test]
fn collect_coverage_fails_when_no_agent_answers_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = jvm::free_port();
    let plan = format!(
        "name: none\nsteps:\n  dump:\n    kind: collect-coverage\n    target_timeout: 2s\n    targets: [{{ name: ts-a-service-5d6f7-bcdfg, address: \"127.0.0.1:{port}\" }}]\n  never:\n    kind: collect-coverage\n    require: never\n    targets: [{{ name: ts-b-service-5d6f7-bcdfg, address: \"127.0.0.1:{port}\" }}]\n"
    );
    let plan_path = dir.join("none.yaml");
    std::fs::write(&plan_path, plan).unwrap();
    let out = support::ttplan()
        .arg("run")
        .arg(&plan_path)
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--set", "exp_name=none", "--progress", "never"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/runs/none/experiment_manifest.json")).unwrap(),
    )
    .unwrap();
    let err = m["steps"]["dump"]["error"].as_str().unwrap();
    assert!(
        err.contains("1 of 1 coverage targets could not be dumped")
            && err.contains("ts-a-service-5d6f7-bcdfg: connection refused"),
        "{err}"
    );
    assert_eq!(m["steps"]["never"]["status"], "succeeded");
    assert_eq!(
        m["steps"]["never"]["outputs"]["no_agent"][0]["name"],
        "ts-b-service-5d6f7-bcdfg"
    );
}

// ---------------------------------------------------------------- through port-forwards

const NS: &str = "coverage";
const POD_A: &str = "ts-demo-service-7d9f8b6c5-bcdfg";
const POD_B: &str = "ts-demo-service-7d9f8b6c5-zq2w4";
const POD_NO_AGENT: &str = "ts-demo-service-7d9f8b6c5-xkq8m";
const POD_NOT_READY: &str = "ts-demo-service-7d9f8b6c5-wr7tj";

fn demo_pod(name: &str) -> kube_fake::PodSeed {
    kube_fake::PodSeed::new(name, NS)
        .label("app", "demo")
        .container(kube_fake::ContainerSeed::new("demo").port(6300))
}

/// Two pods forward their port 6300 to the real agent, one has nothing listening there, one is
/// not Ready (skipped), and pods outside the selector or the default `ts-` prefix are not
/// touched. The port-forward dumps hold exactly what a direct dump and Ant's `jacoco:dump`
/// hold.
#[test]
fn dumps_selected_pods_through_kubernetes_port_forwards() {
    jvm::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let classes = jvm::compile(dir, &[("Main.java", MAIN), ("Work.java", WORK)]);
    let agent = jvm::extract_agent(dir);
    let java = Jvm::start(&agent, &classes, "Main", "pf");

    let fake = kube_fake::FakeKube::builder()
        .pod(demo_pod(POD_A))
        .pod(demo_pod(POD_B))
        .pod(demo_pod(POD_NO_AGENT))
        .pod(
            kube_fake::PodSeed::new(POD_NOT_READY, NS)
                .label("app", "demo")
                .container(kube_fake::ContainerSeed::new("demo").port(6300).not_ready()),
        )
        // Outside the default `ts-` prefix, and outside the selector: never port-forwarded.
        .pod(demo_pod("demo-legacy-0"))
        .pod(
            kube_fake::PodSeed::new("ts-web-7d9f8b6c5-bcdfg", NS)
                .label("app", "web")
                .container(kube_fake::ContainerSeed::new("web")),
        )
        .forward(POD_A, 6300, &java.address())
        .forward(POD_B, 6300, &java.address())
        .forward("demo-legacy-0", 6300, &java.address())
        .forward("ts-web-7d9f8b6c5-bcdfg", 6300, &java.address())
        .start();
    let kubeconfig = fake.write_kubeconfig(dir);
    let kc = kubeconfig.display().to_string();

    // References, no reset anywhere: Ant's jacoco:dump and ttplan's direct path.
    let ant_exec = dir.join("ant.exec");
    jvm::ant(
        dir,
        &format!(
            "    <jacoco:dump address=\"127.0.0.1\" port=\"{}\" reset=\"false\" dump=\"true\" destfile=\"{}\"/>\n",
            java.port,
            ant_exec.display()
        ),
    );
    let direct_plan = format!(
        "name: direct\nsteps:\n  dump:\n    kind: collect-coverage\n    reset: false\n    targets: [{{ name: {POD_A}, address: \"{}\" }}]\n",
        java.address()
    );
    let md = run_plan(dir, &direct_plan, "direct");
    assert_eq!(md["steps"]["dump"]["outputs"]["transport"], "direct");
    let direct = read_exec(
        &dir.join("out/coverage_data/direct")
            .join(format!("{POD_A}__jacoco-{POD_A}.exec")),
    );

    fake.clear_requests();
    let plan = format!(
        "name: pf\nsteps:\n  dump:\n    kind: collect-coverage\n    namespace: {NS}\n    selector: app=demo\n    reset: false\n    target_timeout: 5s\n"
    );
    let m = run_plan_with(dir, &plan, "pf", &["--kubeconfig", &kc]);
    let outputs = &m["steps"]["dump"]["outputs"];
    assert_eq!(outputs["transport"], "port-forward", "{outputs}");
    assert_eq!(outputs["namespace"], NS);
    assert_eq!(outputs["port"], 6300);
    assert_eq!(
        outputs["dumped"],
        serde_json::json!([POD_A, POD_B]),
        "{outputs}"
    );
    let no_agent = outputs["no_agent"].as_array().unwrap();
    assert_eq!(no_agent.len(), 1, "{outputs}");
    assert_eq!(no_agent[0]["name"], POD_NO_AGENT);
    assert_eq!(
        no_agent[0]["address"],
        format!("port-forward {NS}/{POD_NO_AGENT}:6300")
    );
    let reason = no_agent[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("pod {NS}/{POD_NO_AGENT} port 6300"))
            && reason.contains("connection refused"),
        "{reason}"
    );
    assert_eq!(outputs["failed"], serde_json::json!([]), "{outputs}");
    assert_eq!(
        outputs["skipped"],
        serde_json::json!([format!("{POD_NOT_READY} (Running, not Ready)")]),
        "{outputs}"
    );

    let reference = read_exec(&ant_exec);
    for pod in [POD_A, POD_B] {
        let d = read_exec(
            &dir.join("out/coverage_data/pf")
                .join(format!("{pod}__jacoco-{pod}.exec")),
        );
        assert_eq!(d.sessions.len(), 1);
        assert_eq!(d.sessions[0].id, "pf");
        assert_eq!(
            probes(&d),
            probes(&direct),
            "{pod}: the port-forward dump differs from the direct one"
        );
        assert_eq!(
            probes(&d),
            probes(&reference),
            "{pod}: the port-forward dump differs from Ant's jacoco:dump"
        );
        assert!(probes(&d).keys().any(|(_, n)| n == "Work"));
    }
    let files: Vec<String> = std::fs::read_dir(dir.join("out/coverage_data/pf"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");

    // The API server saw the pod list with the selector and one port-forward upgrade per
    // selected pod, and none for the others.
    let requests = fake.requests();
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == format!("/api/v1/namespaces/{NS}/pods")
            && r.query_param("labelSelector").as_deref() == Some("app=demo")),
        "no pod list with the selector: {requests:#?}"
    );
    let forwarded: BTreeSet<String> = requests
        .iter()
        .filter(|r| r.query_param("ports").as_deref() == Some("6300"))
        .filter_map(|r| {
            r.path
                .strip_prefix(&format!("/api/v1/namespaces/{NS}/pods/"))
                .and_then(|p| p.strip_suffix("/portforward"))
                .map(String::from)
        })
        .collect();
    assert_eq!(
        forwarded,
        BTreeSet::from([
            POD_A.to_string(),
            POD_B.to_string(),
            POD_NO_AGENT.to_string()
        ])
    );

    // The per-target report records the transport.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/runs/pf/steps/dump.coverage.json")).unwrap(),
    )
    .unwrap();
    assert!(
        report
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["transport"] == "port-forward"),
        "{report}"
    );

    // Reset only through the forwards, then a dump: nothing of Work left.
    let reset = format!(
        "name: pf-reset\nsteps:\n  reset:\n    kind: collect-coverage\n    namespace: {NS}\n    selector: app=demo\n    dump: false\n    require: never\n"
    );
    let mr = run_plan_with(dir, &reset, "pf-reset", &["--kubeconfig", &kc]);
    assert_eq!(
        mr["steps"]["reset"]["outputs"]["reset"],
        serde_json::json!([POD_A, POD_B])
    );
    let after = dir.join("after-reset.exec");
    jvm::ant(
        dir,
        &format!(
            "    <jacoco:dump address=\"127.0.0.1\" port=\"{}\" reset=\"false\" dump=\"true\" destfile=\"{}\"/>\n",
            java.port,
            after.display()
        ),
    );
    assert!(
        !read_exec(&after)
            .classes
            .iter()
            .any(|c| c.name == "Work" && c.has_hits()),
        "a reset through the port-forward left Work's probes set"
    );
}

#[test]
fn collect_coverage_port_forward_errors_name_the_selection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fake = kube_fake::FakeKube::builder().namespace(NS).start();
    let kc = fake.write_kubeconfig(dir).display().to_string();
    let plan_path = dir.join("empty.yaml");
    std::fs::write(
        &plan_path,
        format!("name: empty\nsteps:\n  dump:\n    kind: collect-coverage\n    namespace: {NS}\n    selector: app=none\n"),
    )
    .unwrap();
    let out = support::ttplan()
        .arg("run")
        .arg(&plan_path)
        .arg("--out")
        .arg(dir.join("out"))
        .args([
            "--set",
            "exp_name=empty",
            "--progress",
            "never",
            "--kubeconfig",
            &kc,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/runs/empty/experiment_manifest.json")).unwrap(),
    )
    .unwrap();
    let err = m["steps"]["dump"]["error"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "no Running and Ready pods to dump in namespace {NS}, selector `app=none`, names starting with ts-"
        )),
        "{err}"
    );

    // Direct targets and pod selection in one step: refused by `validate`, at the key.
    let mixed = dir.join("mixed.yaml");
    std::fs::write(
        &mixed,
        "name: mixed\nsteps:\n  dump:\n    kind: collect-coverage\n    targets: [{ name: a-1, address: \"127.0.0.1:1\" }]\n    selector: app=x\n",
    )
    .unwrap();
    let out = validate(&mixed);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixed.yaml:6:"), "{err}");
    assert!(err.contains("use one or the other"), "{err}");
}

/// Benchmark, not a test (run by `scripts/bench-coverage.sh`): the fake API server with
/// Train-Ticket's 46 `ts-` Deployments, pod i port-forwarding to the agent on the i-th port of
/// `BENCH_AGENT_PORTS` (comma-separated, started by the script), dumped through the real
/// binary (`TTPLAN_BIN`, default the test build) with `concurrency: 16` and `concurrency: 1`,
/// `BENCH_ROUNDS` rounds each. Prints one line per setting: median step dump time and median
/// wall time of the whole `ttplan run`, in ms.
#[test]
#[ignore = "benchmark: run through scripts/bench-coverage.sh"]
fn bench_port_forward() {
    let ports: Vec<String> = std::env::var("BENCH_AGENT_PORTS")
        .expect("BENCH_AGENT_PORTS=<agent port>,… (scripts/bench-coverage.sh sets it)")
        .split(',')
        .map(String::from)
        .collect();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let bin = std::env::var("TTPLAN_BIN").unwrap_or_else(|_| TTPLAN.to_string());
    let fake = kube_fake::FakeKube::builder().train_ticket(NS).start();
    let mut services: Vec<String> = fake
        .list("", "pods")
        .iter()
        .filter(|p| p["metadata"]["namespace"] == NS)
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .filter(|n| n.starts_with("ts-"))
        .collect();
    services.sort();
    assert_eq!(services.len(), 46);
    assert!(
        ports.len() >= services.len(),
        "{} agent ports for {} pods",
        ports.len(),
        services.len()
    );
    for (pod, port) in services.iter().zip(&ports) {
        fake.set_forward(pod, 6300, &format!("127.0.0.1:{port}"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let kc = fake.write_kubeconfig(dir).display().to_string();
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[(v.len() - 1) / 2]
    };
    let mut lines = Vec::new();
    for (label, concurrency) in [("warmup", 16), ("sequential", 1), ("concurrent", 16)] {
        let (mut step, mut wall) = (Vec::new(), Vec::new());
        let n = if label == "warmup" { 1 } else { rounds };
        for r in 0..n {
            let exp = format!("pf-{label}-{r}");
            let plan = format!(
                "name: bench-pf\nsteps:\n  dump:\n    kind: collect-coverage\n    namespace: {NS}\n    reset: false\n    require: all\n    concurrency: {concurrency}\n"
            );
            let plan_path = dir.join(format!("{exp}.yaml"));
            std::fs::write(&plan_path, plan).unwrap();
            let t0 = std::time::Instant::now();
            let out = support::isolated(&bin)
                .arg("run")
                .arg(&plan_path)
                .arg("--out")
                .arg(dir.join("out"))
                .args(["--set", &format!("exp_name={exp}"), "--progress", "never"])
                .args(["--kubeconfig", &kc])
                .output()
                .unwrap();
            let ms = t0.elapsed().as_millis() as u64;
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(
                    dir.join("out/runs")
                        .join(&exp)
                        .join("experiment_manifest.json"),
                )
                .unwrap(),
            )
            .unwrap();
            assert!(
                out.status.success(),
                "{exp}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                m["steps"]["dump"]
            );
            let dumped = m["steps"]["dump"]["outputs"]["dumped"].as_array().unwrap();
            assert_eq!(dumped.len(), services.len());
            step.push(
                m["steps"]["dump"]["outputs"]["elapsed_ms"]
                    .as_u64()
                    .unwrap(),
            );
            wall.push(ms);
        }
        if label != "warmup" {
            lines.push(format!(
                "BENCH port-forward {label} {} {}",
                median(step),
                median(wall)
            ));
        }
    }
    for l in lines {
        println!("{l}");
    }
}
