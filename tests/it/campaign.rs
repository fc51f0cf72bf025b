//! Campaigns, resume and rerun against the fake Kubernetes API server (with Chaos Mesh): a
//! campaign killed with -9 mid-experiment resumes without rerunning what succeeded and without
//! leaving chaos behind; a manifest reruns to the same resolved plan.

use crate::support;
use ttplan_sandbox::kube_fake;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube_fake::FakeKube;
use nix::sys::signal::Signal;
use serde_json::Value;
use support::Test;

const LIMIT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A plan that injects a StressChaos named after the plan, then runs `work`.
fn chaos_plan(name: &str, work: &str) -> String {
    format!(
        r#"
name: {name}
steps:
  inject:
    kind: chaos-mesh
    inject_timeout: 10s
    recover_timeout: 5s
    manifest:
      apiVersion: chaos-mesh.org/v1alpha1
      kind: StressChaos
      metadata: {{ name: {name}, namespace: default }}
      spec:
        mode: all
        selector: {{ namespaces: [default], labelSelectors: {{ app: ts-preserve-service }} }}
        stressors: {{ cpu: {{ workers: 1, load: 50 }} }}
  work: {{ kind: shell, after: [inject], run: '{work}' }}
  recover: {{ kind: recover, faults: [inject], after: [work] }}
"#
    )
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn stress_objects(kube: &FakeKube) -> usize {
    kube.list("chaos-mesh.org", "stresschaos").len()
}

#[test]
fn a_campaign_killed_mid_experiment_resumes_without_rerunning_what_succeeded() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new()
        .file("plans/a.yaml", &chaos_plan("a", "echo a >> ../ran-a"))
        // The second experiment blocks until the test lets it go (after the kill).
        .file("plans/b.yaml", &chaos_plan("b", "echo b >> ../ran-b; until test -f ../go; do sleep 0.1; done"))
        .file("plans/c.yaml", &chaos_plan("c", "echo c >> ../ran-c"))
        .file(
            "campaign.yaml",
            "plans: [plans/a.yaml, plans/b.yaml, plans/c.yaml]\ncooldown: 0s\nbefore_each: { clean_chaos: true, timeout: 30s }\n",
        );
    let kc = kube.write_kubeconfig(t.path()).display().to_string();
    let mut run = t
        .args([
            "campaign",
            "run",
            "campaign.yaml",
            "--out",
            "out",
            "--kubeconfig",
            &kc,
        ])
        .spawn();
    let dir = run.path().to_path_buf();
    let cm_path = dir.join("out/campaign_manifest.json");
    run.wait_until("experiment 2 running its work step", LIMIT, || {
        std::fs::read_to_string(dir.join("ran-b")).is_ok()
            && std::fs::read_to_string(&cm_path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|m| m["experiments"][1]["status"] == "running")
    });
    run.signal(Signal::SIGKILL);
    let killed = run.wait(LIMIT);
    assert_eq!(killed.status.code(), None, "killed by a signal");
    let before = read_json(&cm_path);
    assert_eq!(
        before["experiments"][0]["status"], "succeeded",
        "{before:#}"
    );
    assert_eq!(before["experiments"][1]["status"], "running");
    assert_eq!(before["experiments"][2]["status"], "pending");
    assert_eq!(
        stress_objects(&kube),
        1,
        "kill -9 leaves experiment 2's fault injected"
    );
    let first_a = before["experiments"][0].clone();
    let dead_run = PathBuf::from(before["experiments"][1]["run_dir"].as_str().unwrap());

    std::fs::write(dir.join("go"), "").unwrap();
    let resumed = Test::new()
        .current_dir(&dir)
        .args([
            "campaign",
            "run",
            "campaign.yaml",
            "--out",
            "out",
            "--resume",
            "--kubeconfig",
            &kc,
        ])
        .run();
    let m = read_json(&cm_path);
    let e = m["experiments"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    // The first experiment was not rerun: same record, its step ran once.
    assert_eq!(e[0], first_a, "{m:#}");
    assert_eq!(std::fs::read_to_string(dir.join("ran-a")).unwrap(), "a\n");
    // The second was recovered from its ledger, then rerun under a new run folder.
    assert_eq!(e[1]["status"], "succeeded", "{m:#}\n{resumed}");
    assert_eq!(e[1]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(e[1]["attempts"][0]["status"], "interrupted");
    assert_eq!(
        e[1]["attempts"][0]["recovered_faults"],
        serde_json::json!(["inject"])
    );
    assert_ne!(e[1]["exp_name"], e[1]["attempts"][0]["exp_name"]);
    assert_eq!(e[1]["fault_verified"], true);
    let dead = read_json(&dead_run.join("experiment_manifest.json"));
    assert_eq!(dead["run"]["status"], "interrupted", "{dead:#}");
    assert_eq!(dead["faults"][0]["status"], "recovered");
    assert_eq!(
        dead["faults"][0]["recovered_by"],
        "ttplan campaign run --resume"
    );
    assert_eq!(e[2]["status"], "succeeded");
    // No chaos left; the manifest is complete and summarised.
    assert_eq!(stress_objects(&kube), 0);
    assert_eq!(m["campaign"]["status"], "succeeded");
    assert_eq!(m["campaign"]["resumed_at"].as_array().unwrap().len(), 1);
    assert_eq!(m["summary"]["succeeded"], 3);
    assert_eq!(m["summary"]["table"].as_array().unwrap().len(), 4);
    for x in e {
        let run = read_json(Path::new(x["manifest"].as_str().unwrap()));
        assert_eq!(run["run"]["status"], "succeeded");
        assert_eq!(run["run"]["exp_name"], x["exp_name"]);
    }
    assert!(
        resumed.stdout.contains("3 experiments: 3 succeeded"),
        "{resumed}"
    );
    // Resuming a finished campaign runs nothing.
    let again = Test::new()
        .current_dir(&dir)
        .args([
            "campaign",
            "run",
            "campaign.yaml",
            "--out",
            "out",
            "--resume",
            "--kubeconfig",
            &kc,
        ])
        .run();
    assert!(again.stderr.contains("(3 already succeeded)"), "{again}");
    assert_eq!(std::fs::read_to_string(dir.join("ran-c")).unwrap(), "c\n");
    drop(killed);
}

#[test]
fn matrix_and_repeat_expand_and_on_failure_stop_stops() {
    let t = Test::new()
        .file(
            "p.yaml",
            "name: p\nvars: { target: x, code: '0' }\nsteps:\n  s: { kind: shell, run: 'echo {{ target }} >> seen; exit {{ code }}' }\n",
        )
        .file(
            "c.yaml",
            "plans: ['*.yaml']\nrepeat: 2\nset: { code: '0' }\nmatrix: { target: [t1, t2] }\nbefore_each: { clean_chaos: false }\n",
        );
    // `*.yaml` matches the campaign file itself too: it is not a plan, so validation fails first.
    let bad = t
        .args(["campaign", "run", "c.yaml", "--out", "o"])
        .status(2)
        .run();
    assert!(bad.stderr.contains("nothing ran"), "{bad}");
    assert!(!bad.path().join("seen").exists());

    let t = Test::new()
        .file(
            "plans/p.yaml",
            "name: p\nvars: { target: x, code: '0' }\nsteps:\n  s: { kind: shell, run: 'echo {{ target }} >> ../seen; exit {{ code }}' }\n",
        )
        .file(
            "c.yaml",
            "plans: ['plans/*.yaml']\nrepeat: 2\nset: { code: '0' }\nmatrix: { target: [t1, t2] }\nbefore_each: { clean_chaos: false }\n",
        );
    let ok = t.args(["campaign", "run", "c.yaml", "--out", "o"]).run();
    assert_eq!(
        std::fs::read_to_string(ok.path().join("seen")).unwrap(),
        "t1\nt1\nt2\nt2\n"
    );
    let m = read_json(&ok.path().join("o/campaign_manifest.json"));
    let names: std::collections::BTreeSet<&str> = m["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["exp_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        4,
        "every experiment has its own run folder: {m:#}"
    );

    let t = Test::new()
        .file(
            "plans/p.yaml",
            "name: p\nvars: { target: x }\nsteps:\n  s: { kind: shell, run: 'echo {{ target }} >> ../seen; test {{ target }} != t1' }\n",
        )
        .file(
            "c.yaml",
            "plans: [plans/p.yaml]\nmatrix: { target: [t1, t2] }\non_failure: stop\nbefore_each: { clean_chaos: false }\n",
        );
    let stopped = t
        .args(["campaign", "run", "c.yaml", "--out", "o"])
        .status(1)
        .run();
    assert_eq!(
        std::fs::read_to_string(stopped.path().join("seen")).unwrap(),
        "t1\n"
    );
    let m = read_json(&stopped.path().join("o/campaign_manifest.json"));
    assert_eq!(m["campaign"]["status"], "stopped");
    assert_eq!(m["experiments"][0]["status"], "failed");
    assert_eq!(m["experiments"][1]["status"], "pending");
}

#[test]
fn campaign_validation_reports_every_plan_problem_at_once() {
    let out = Test::new()
        .file("one.yaml", "steps:\n  s: { kind: shel, run: 'true' }\n")
        .file(
            "two.yaml",
            "steps:\n  s: { kind: shell, run: 'true', after: [nope] }\n",
        )
        .file("c.yaml", "plans: [one.yaml, two.yaml, missing.yaml]\n")
        .args(["campaign", "validate", "c.yaml"])
        .status(2)
        .run();
    assert!(out.stderr.contains("missing.yaml"), "{out}");
    let out = Test::new()
        .file("one.yaml", "steps:\n  s: { kind: shel, run: 'true' }\n")
        .file(
            "two.yaml",
            "steps:\n  s: { kind: shell, run: 'true', after: [nope] }\n",
        )
        .file("c.yaml", "plans: [one.yaml, two.yaml]\n")
        .args(["campaign", "validate", "c.yaml"])
        .status(2)
        .run();
    assert!(out.stderr.contains("shel"), "{out}");
    assert!(out.stderr.contains("nope"), "{out}");
    assert!(out.stderr.contains("2 plans"), "{out}");
}

#[test]
fn the_published_dataset_campaign_validates() {
    let out = Test::new()
        .current_dir(repo())
        .args(["campaign", "validate", "campaigns/train-ticket.yaml"])
        .run();
    assert_eq!(
        out.stdout,
        "ok campaigns/train-ticket.yaml (13 experiments)\n"
    );
}

#[test]
fn campaign_schema_matches_the_committed_file() {
    let committed = std::fs::read_to_string(repo().join("schemas/campaign.schema.json")).unwrap();
    let out = Test::new().args(["campaign", "schema"]).run();
    support::assert_text_eq(
        "ttplan campaign schema vs schemas/campaign.schema.json (regenerate: cargo run -q -- campaign schema > schemas/campaign.schema.json)",
        &out.stdout,
        &committed,
    );
}

#[test]
fn rerun_renders_the_recorded_plan_even_after_the_plan_changed() {
    let plan = "name: r\nvars: { greeting: hello, who: '{{ greeting }} world', exp_name: first }\nsteps:\n  say: { kind: shell, run: 'echo {{ who }} > said-{{ exp_name }}' }\n";
    let t = Test::new().plan(plan);
    let first = t.args(["run", "plan.yaml", "--out", "out"]).run();
    let dir = first.path().to_path_buf();
    std::fs::write(dir.join("plan.yaml"), plan.replace("hello", "bonjour")).unwrap();
    let rerun = Test::new()
        .current_dir(&dir)
        .args([
            "rerun",
            "out/runs/first/experiment_manifest.json",
            "--out",
            "out",
            "--exp-name",
            "second",
        ])
        .run();
    assert_eq!(
        std::fs::read_to_string(dir.join("said-second")).unwrap(),
        "hello world\n",
        "{rerun}"
    );
    let a = read_json(&dir.join("out/runs/first/experiment_manifest.json"));
    let b = read_json(&dir.join("out/runs/second/experiment_manifest.json"));
    let strip = |m: &Value| {
        let mut p = m["resolved_plan"].clone();
        p["vars"].as_object_mut().unwrap().remove("exp_name");
        let text = p
            .to_string()
            .replace("said-first", "said-X")
            .replace("said-second", "said-X");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(b["vars"]["greeting"], "hello");
    // The rerun's own manifest reruns as well (its document is the stored one).
    assert_eq!(
        a["plan"]["document"],
        b["plan"]["document"].clone().tap_vars(&a)
    );
}

trait TapVars {
    fn tap_vars(self, like: &Value) -> Value;
}

impl TapVars for Value {
    /// The rerun stores the fixed var values; the rest of the document is unchanged.
    fn tap_vars(mut self, like: &Value) -> Value {
        self["vars"] = like["plan"]["document"]["vars"].clone();
        self
    }
}

#[test]
fn run_resume_keeps_succeeded_steps_and_feeds_their_times_to_templates() {
    let plan = r#"
name: r
steps:
  a: { kind: shell, run: 'echo a >> ran-a' }
  b: { kind: shell, after: [a], run: 'echo b >> ran-b && test -f ok && echo "{{ steps.a.finished_at }}" > b-saw' }
  c: { kind: shell, after: [b], run: 'echo c >> ran-c' }
  d: { kind: shell, after: [a], run: 'echo d >> ran-d' }
"#;
    let first = Test::new().plan(plan).status(1).run_plan();
    let dir = first.path().to_path_buf();
    let m1 = first.manifest();
    assert_eq!(m1["steps"]["b"]["status"], "failed", "{first}");
    std::fs::write(dir.join("ok"), "").unwrap();
    let resumed = Test::new()
        .current_dir(&dir)
        .args(["run", "plan.yaml", "--out", "out", "--resume", "out/runs/t"])
        .run();
    let m2 = read_json(&dir.join("out/runs/t/experiment_manifest.json"));
    assert_eq!(m2["run"]["status"], "succeeded", "{resumed}");
    assert_eq!(std::fs::read_to_string(dir.join("ran-a")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(dir.join("ran-d")).unwrap(), "d\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("ran-b")).unwrap(),
        "b\nb\n"
    );
    assert_eq!(std::fs::read_to_string(dir.join("ran-c")).unwrap(), "c\n");
    assert_eq!(
        m2["steps"]["a"]["finished_at"],
        m1["steps"]["a"]["finished_at"]
    );
    let saw = std::fs::read_to_string(dir.join("b-saw")).unwrap();
    let a_done: chrono::DateTime<chrono::Utc> = m1["steps"]["a"]["finished_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let seen: chrono::DateTime<chrono::Utc> = saw.trim().parse().unwrap();
    assert_eq!(seen.timestamp_millis(), a_done.timestamp_millis());

    // --only runs the named step (and nothing else); --from a step and what follows it.
    Test::new()
        .current_dir(&dir)
        .args([
            "run",
            "plan.yaml",
            "--out",
            "out",
            "--resume",
            "out/runs/t",
            "--only",
            "d",
        ])
        .run();
    assert_eq!(
        std::fs::read_to_string(dir.join("ran-d")).unwrap(),
        "d\nd\n"
    );
    assert_eq!(std::fs::read_to_string(dir.join("ran-a")).unwrap(), "a\n");
    Test::new()
        .current_dir(&dir)
        .args([
            "run",
            "plan.yaml",
            "--out",
            "out",
            "--resume",
            "out/runs/t",
            "--from",
            "b",
        ])
        .run();
    assert_eq!(
        std::fs::read_to_string(dir.join("ran-b")).unwrap(),
        "b\nb\nb\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ran-c")).unwrap(),
        "c\nc\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ran-d")).unwrap(),
        "d\nd\n"
    );
    let bad = Test::new()
        .current_dir(&dir)
        .args([
            "run",
            "plan.yaml",
            "--out",
            "out",
            "--only",
            "zz",
            "--set",
            "exp_name=u",
        ])
        .status(2)
        .run();
    assert!(bad.stderr.contains("no step named `zz`"), "{bad}");
}

#[test]
fn slots_run_experiments_on_each_cluster_namespace() {
    // Each experiment waits until both have started, so it only finishes when two slots run at
    // once (the wait is bounded: a serial campaign would fail, not hang).
    let plan = |n: &str| {
        format!(
            "name: {n}\nsteps:\n  s: {{ kind: shell, run: 'touch ../started-{n}; for i in $(seq 100); do test -f ../started-p1 && test -f ../started-p2 && exit 0; sleep 0.1; done; exit 1' }}\n"
        )
    };
    let out = Test::new()
        .file("plans/p1.yaml", &plan("p1"))
        .file("plans/p2.yaml", &plan("p2"))
        .file(
            "c.yaml",
            "plans: [plans/p1.yaml, plans/p2.yaml]\nbefore_each: { clean_chaos: false }\nslots: [{ namespace: ns-a }, { namespace: ns-b }]\n",
        )
        .args(["campaign", "run", "c.yaml", "--out", "o"])
        .run();
    let m = read_json(&out.path().join("o/campaign_manifest.json"));
    assert_eq!(
        m["campaign"]["slots"],
        serde_json::json!(["ns ns-a", "ns ns-b"])
    );
    let slots: std::collections::BTreeSet<&str> = m["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slot"].as_str().unwrap())
        .collect();
    assert_eq!(slots.len(), 2, "{m:#}");
    assert_eq!(m["summary"]["succeeded"], 2);
}

#[test]
fn sigint_stops_the_campaign_after_recovering_the_current_experiment() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new()
        .file("plans/a.yaml", &chaos_plan("a", "touch ../in-a; sleep 60"))
        .file("plans/b.yaml", &chaos_plan("b", "echo b >> ../ran-b"))
        .file("campaign.yaml", "plans: [plans/a.yaml, plans/b.yaml]\n");
    let kc = kube.write_kubeconfig(t.path()).display().to_string();
    let mut run = t
        .args([
            "campaign",
            "run",
            "campaign.yaml",
            "--out",
            "out",
            "--kubeconfig",
            &kc,
        ])
        .spawn();
    let dir = run.path().to_path_buf();
    run.wait_until("experiment 1 running", LIMIT, || dir.join("in-a").exists());
    assert_eq!(stress_objects(&kube), 1);
    run.signal(Signal::SIGINT);
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    assert_eq!(
        stress_objects(&kube),
        0,
        "the current experiment's fault is recovered"
    );
    let m = read_json(&dir.join("out/campaign_manifest.json"));
    assert_eq!(m["campaign"]["status"], "interrupted");
    assert_eq!(m["experiments"][0]["status"], "interrupted");
    assert_eq!(
        m["experiments"][1]["status"], "pending",
        "nothing new starts"
    );
    assert!(!dir.join("ran-b").exists());
    let run_m = read_json(Path::new(m["experiments"][0]["manifest"].as_str().unwrap()));
    assert_eq!(run_m["faults"][0]["status"], "recovered");
}

#[test]
fn run_resume_reinjects_a_fault_whole_when_a_step_under_it_reruns() {
    let kube = FakeKube::builder().train_ticket("default").start();
    let t = Test::new().plan(&chaos_plan("f", "echo w >> ran-w; test -f ok"));
    let kc = kube.write_kubeconfig(t.path()).display().to_string();
    let first = t.args(["--kubeconfig", &kc]).status(1).run_plan();
    let dir = first.path().to_path_buf();
    let m1 = first.manifest();
    assert_eq!(m1["steps"]["inject"]["status"], "succeeded");
    assert_eq!(m1["steps"]["work"]["status"], "failed");
    assert_eq!(stress_objects(&kube), 0);
    std::fs::write(dir.join("ok"), "").unwrap();
    let resumed = Test::new()
        .current_dir(&dir)
        .args([
            "run",
            "plan.yaml",
            "--out",
            "out",
            "--resume",
            "out/runs/t",
            "--kubeconfig",
            &kc,
        ])
        .run();
    let m2 = read_json(&dir.join("out/runs/t/experiment_manifest.json"));
    assert_eq!(m2["run"]["status"], "succeeded", "{resumed}");
    // Injected again (a second ledger record), and the work ran under it.
    let faults = m2["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{m2:#}");
    assert_eq!(faults[1]["id"], "inject#2");
    assert_eq!(faults[1]["status"], "recovered");
    assert_eq!(faults[1]["recovered_by"], "recover");
    assert_ne!(
        m2["steps"]["inject"]["started_at"],
        m1["steps"]["inject"]["started_at"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ran-w")).unwrap(),
        "w\nw\n"
    );
    assert_eq!(stress_objects(&kube), 0);
}

#[test]
fn before_each_removes_leftover_chaos_and_waits_for_ready_pods() {
    let kube = FakeKube::builder().train_ticket("default").start();
    kube.put(
        "chaos-mesh.org",
        "stresschaos",
        Some("default"),
        serde_json::json!({
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": "StressChaos",
            "metadata": { "name": "leftover", "namespace": "default" },
            "spec": {
                "mode": "all",
                "selector": { "namespaces": ["default"], "labelSelectors": { "app": "ts-order-service" } },
                "stressors": { "cpu": { "workers": 1, "load": 10 } }
            }
        }),
    );
    assert_eq!(stress_objects(&kube), 1);
    let t = Test::new()
        .file("plans/p.yaml", "name: p\nsteps:\n  s: { kind: shell, run: 'true' }\n")
        .file(
            "c.yaml",
            "plans: [plans/p.yaml]\nbefore_each: { namespace: default, ready: { name_prefixes: [ts-, tsdb-mysql] }, timeout: 30s }\n",
        );
    let kc = kube.write_kubeconfig(t.path()).display().to_string();
    let out = t
        .args([
            "campaign",
            "run",
            "c.yaml",
            "--out",
            "o",
            "--kubeconfig",
            &kc,
        ])
        .run();
    assert!(
        out.stderr
            .contains("removed leftover chaos: StressChaos default/leftover"),
        "{out}"
    );
    assert_eq!(stress_objects(&kube), 0);
    assert!(kube
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/api/v1/namespaces/default/pods"));

    // Pods that never show up: the experiment fails before it starts, the next one still runs.
    let t = Test::new()
        .file("plans/p.yaml", "name: p\nsteps:\n  s: { kind: shell, run: 'echo ran >> ../ran' }\n")
        .file(
            "c.yaml",
            "plans: [plans/p.yaml]\nrepeat: 2\nbefore_each: { clean_chaos: false, ready: { name_prefixes: [absent-] }, timeout: 1s }\n",
        );
    let kc = kube.write_kubeconfig(t.path()).display().to_string();
    let out = t
        .args([
            "campaign",
            "run",
            "c.yaml",
            "--out",
            "o",
            "--kubeconfig",
            &kc,
        ])
        .status(1)
        .run();
    let m = read_json(&out.path().join("o/campaign_manifest.json"));
    for e in m["experiments"].as_array().unwrap() {
        assert_eq!(e["status"], "failed", "{m:#}");
        assert!(
            e["error"].as_str().unwrap().starts_with("before_each:"),
            "{m:#}"
        );
    }
    assert!(!out.path().join("ran").exists());
    assert_eq!(m["campaign"]["status"], "failed");
}

#[test]
fn campaign_files_are_yaml_or_toml_with_located_errors() {
    let out = Test::new()
        .file("p.yaml", "name: p\nvars: { t: x }\nsteps:\n  s: { kind: shell, run: 'true' }\n")
        .file(
            "c.toml",
            "plans = [\"p.yaml\"]\nrepeat = 2\ncooldown = \"0s\"\non_failure = \"stop\"\n[matrix]\nt = [\"a\", \"b\"]\n[before_each]\nclean_chaos = false\n",
        )
        .args(["campaign", "validate", "c.toml"])
        .run();
    assert_eq!(out.stdout, "ok c.toml (4 experiments)\n");
    let bad = Test::new()
        .file("c.yaml", "plans: [p.yaml]\non_failure: halt\n")
        .args(["campaign", "validate", "c.yaml"])
        .status(2)
        .run();
    assert!(bad.stderr.contains("c.yaml:2:13"), "{bad}");
    assert!(bad.stderr.contains("halt"), "{bad}");
    let bad = Test::new()
        .file(
            "c.yaml",
            "plans: [p.yaml]\nbefore_each: { clean_chaoss: true }\n",
        )
        .args(["campaign", "validate", "c.yaml"])
        .status(2)
        .run();
    assert!(bad.stderr.contains("c.yaml:2:16"), "{bad}");
    assert!(bad.stderr.contains("did you mean `clean_chaos`?"), "{bad}");
}

/// The published dataset's campaign against the fakes — the sandbox's JaCoCo agents behind
/// the port-forwards and its class files in the checkout — with coverage required
/// (`coverage_require: any`, the base's default): its output folder passes
/// `ttplan dataset check`, coverage reports rendered by JaCoCo's report engine included.
#[test]
fn a_campaign_against_the_fakes_is_a_dataset_that_dataset_check_accepts() {
    use ttplan_sandbox::{jacoco, skywalking, upstream::Upstream, world::World};
    support::jvm::require_tools();
    let kube = FakeKube::builder()
        .train_ticket("default")
        .chaosblade(true)
        .start();
    let world = World::new(&kube, 0);
    let _agents = jacoco::Agents::start(&kube, &world, "default", jacoco::AGENT_PORT);
    let oap = skywalking::FakeSkyWalking::start(skywalking::Options::default());
    let api = Upstream::start();
    let five_hours_ago = chrono::Utc::now().timestamp() - 5 * 3600;
    let prom = support::prometheus::Prometheus::start(&format!(
        "# TYPE up gauge\nup{{job=\"x\"}} 1 {five_hours_ago}\n# EOF\n"
    ));
    let plans = repo().join("plans");
    // The traffic stand-in sends one request through the recording proxy.
    let traffic = "import os, urllib.request\n\
                   urllib.request.urlopen(os.environ['TT_BASE_URL'] + '/api/v1/orderservice/order').read()\n";
    let t = Test::new()
        .file("traffic.py", traffic)
        .file(
            "deploy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: ts-order-service }\nspec:\n  selector: { matchLabels: { app: ts-order-service } }\n  template:\n    metadata: { labels: { app: ts-order-service } }\n    spec:\n      containers:\n        - name: ts-order-service\n          image: codewisdom/ts-order-service:1.0.0\n",
        )
        ;
    let dir = t.path().to_path_buf();
    let t = t.file(
        "campaign.yaml",
        &format!(
            "plans: [{}, {}]\ncooldown: 0s\nbefore_each: {{ clean_chaos: true, timeout: 30s }}\n\
             set: {{ deploy_command: 'true', warmup: 0s, test_iterations: 1, services_manifest: '{}' }}\n",
            plans.join("normal.yaml").display(),
            plans.join("lv_p_cpu.yaml").display(),
            dir.join("deploy.yaml").display()
        ),
    );
    jacoco::write_checkout_classes(&dir.join("train-ticket")).unwrap();
    let kc = kube.write_kubeconfig(&dir).display().to_string();
    let run = t
        .env(
            "TRAIN_TICKET_DIR",
            &dir.join("train-ticket").display().to_string(),
        )
        .env(
            "EVOMASTER_TEST",
            &dir.join("traffic.py").display().to_string(),
        )
        .env("SKYWALKING_URL", &oap.url())
        .env("PROMETHEUS_URL", &prom.url)
        .env("TT_BASE_URL", &api.url())
        .env_remove("TTPLAN_SANDBOX")
        .args([
            "campaign",
            "run",
            "campaign.yaml",
            "--out",
            "out",
            "--kubeconfig",
            &kc,
        ])
        .run();
    let m = read_json(&dir.join("out/campaign_manifest.json"));
    assert_eq!(m["summary"]["succeeded"], 2, "{m:#}\n{run}");
    for e in m["experiments"].as_array().unwrap() {
        let run = read_json(Path::new(e["manifest"].as_str().unwrap()));
        let steps = &run["steps"];
        // Coverage was required, and every Java service's agent answered.
        assert_eq!(steps["coverage"]["status"], "succeeded", "{steps:#}");
        let dumped = steps["coverage"]["outputs"]["dumped"].as_array().unwrap();
        assert_eq!(dumped.len(), 41, "{:#}", steps["coverage"]["outputs"]);
        assert_eq!(
            steps["coverage_report"]["outputs"]["services"]
                .as_array()
                .unwrap()
                .len(),
            41
        );
    }
    let check = Test::new()
        .current_dir(&dir)
        .args(["dataset", "check", "out"])
        .run();
    assert!(
        check.stdout.contains("2 experiments checked: 2 conform"),
        "{check}"
    );
}
