//! Integration tests: the `ttplan` binary run on plan files in temp dirs.
//!
//! - the broken-plan corpus (`tests/plans/broken/`, each file names its expected diagnostics),
//! - diagnostics compared as text,
//! - good plans (`plans/demo.*`) and engine semantics read back from the manifest,
//! - concurrency, signals, and the read-only subcommands (`plan`, `graph`, `schema`).

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::Value;

use support::{process_alive, sha256_hex, Test};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn step<'a>(m: &'a Value, name: &str) -> &'a Value {
    let s = &m["steps"][name];
    assert!(s.is_object(), "no step `{name}` in the manifest:\n{m:#}");
    s
}

fn status<'a>(m: &'a Value, name: &str) -> &'a str {
    step(m, name)["status"].as_str().unwrap_or("<none>")
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 timestamp: {v}"))
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------------------
// The broken-plan corpus
// ---------------------------------------------------------------------------------------------

/// One `# expect: <code> <location>` line: `<location>` is `line:col` in the file itself, or
/// `path:line:col` (relative to the corpus folder) for problems found in a base it extends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    code: String,
    location: String,
}

fn corpus_dir() -> PathBuf {
    repo().join("tests/plans/broken")
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("read tests/plans/broken")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn expectations(file: &Path) -> Vec<Expected> {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# expect:"))
        .map(|rest| {
            let (code, loc) = rest
                .trim()
                .split_once(' ')
                .unwrap_or_else(|| panic!("{name}: bad `# expect:` line: {rest:?}"));
            let is_line_col = loc.split(':').all(|p| p.parse::<u32>().is_ok());
            Expected {
                code: format!("ttplan::plan::{code}"),
                location: if is_line_col {
                    format!("{name}:{loc}")
                } else {
                    loc.to_string()
                },
            }
        })
        .collect()
}

/// The (code, location) of every diagnostic in a rendered report: each `Error: <code>` line is
/// followed by `  × <file>:<line>:<col>: message`.
fn reported(stderr: &str) -> Vec<Expected> {
    let lines: Vec<&str> = stderr.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(code) = line.strip_prefix("Error: ") else {
            continue;
        };
        let location = lines[i + 1..]
            .iter()
            .find_map(|l| l.trim_start().strip_prefix("× "))
            .and_then(|l| l.split_once(": "))
            .map(|(loc, _)| loc.to_string())
            .unwrap_or_default();
        out.push(Expected {
            code: code.trim().to_string(),
            location,
        });
    }
    out
}

/// The `N` of the report's headline "plan is invalid: N problem(s)".
fn problem_count(stderr: &str) -> Option<usize> {
    let rest = stderr.split("plan is invalid: ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

fn check_corpus_file(file: &Path) -> Result<(), String> {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let expected = expectations(file);
    if expected.is_empty() {
        return Err(format!("{name}: no `# expect:` line at the top"));
    }
    let out = Test::new()
        .current_dir(corpus_dir())
        .args(["validate", name.as_str()])
        .status(2)
        .run();
    let got = reported(&out.stderr);
    let mut problems = Vec::new();
    for e in &expected {
        if !got.contains(e) {
            problems.push(format!(
                "expected {} at {}; reported: {got:?}",
                e.code, e.location
            ));
        }
        if !out.stderr.contains(&e.code) || !out.stderr.contains(&e.location) {
            problems.push(format!("stderr lacks `{}` or `{}`", e.code, e.location));
        }
    }
    if problem_count(&out.stderr) != Some(got.len()) {
        problems.push(format!(
            "headline count {:?} != {} diagnostics rendered",
            problem_count(&out.stderr),
            got.len()
        ));
    }
    // Each problem once: no duplicates, no follow-on errors.
    if got.len() != expected.len() {
        problems.push(format!(
            "{} diagnostics for {} expected problems: {got:?}",
            got.len(),
            expected.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name}:\n  {}\n--- stderr:\n{}",
            problems.join("\n  "),
            out.stderr
        ))
    }
}

#[test]
fn broken_plans_report_every_expected_diagnostic() {
    let files = corpus_files();
    assert!(
        files.len() >= 35,
        "the corpus has {} plans, want >= 35",
        files.len()
    );
    let exts: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.extension().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    assert!(
        exts.contains("yaml") && exts.contains("toml"),
        "both formats: {exts:?}"
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| check_corpus_file(f).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} broken plans are not reported as expected:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn validate_reports_every_file_given() {
    // One good and two broken plans in one call: both broken ones are reported, exit 2.
    let out = Test::new()
        .file(
            "good.yaml",
            "name: g\nsteps:\n  a: { kind: shell, run: echo }\n",
        )
        .file("bad1.yaml", "name: b\nsteps:\n  a: { kind: shel }\n")
        .file(
            "bad2.toml",
            "name = \"c\"\n[steps.a]\nkind = \"sleep\"\nduration = \"soon\"\n",
        )
        .args(["validate", "good.yaml", "bad1.yaml", "bad2.toml"])
        .status(2)
        .stdout("ok good.yaml (1 steps)\n")
        .run();
    assert!(out.stderr.contains("bad1.yaml:3:14"), "{out}");
    assert!(out.stderr.contains("bad2.toml:4:12"), "{out}");
}

#[test]
fn deprecated_collector_fields_still_validate_with_a_located_warning() {
    let out = Test::new()
        .file(
            "old.yaml",
            "name: o\nsteps:\n  t:\n    kind: collect-traces\n    workers: 4\n    path: t.jsonl\n  c:\n    kind: collect-coverage\n    targets: [{name: s, address: 'h:6300'}]\n    require: never\n    out: cov\n",
        )
        .args(["validate", "old.yaml"])
        .status(0)
        .stdout("ok old.yaml (2 steps)\n")
        .run();
    for w in [
        "old.yaml:5:5: warning: `workers` is deprecated",
        "old.yaml:6:5: warning: `path` is deprecated",
        "old.yaml:10:14: warning: `require: never` is deprecated",
        "old.yaml:11:5: warning: `out` is deprecated",
    ] {
        assert!(out.stderr.contains(w), "missing {w:?}: {out}");
    }
}

#[test]
fn validate_missing_file_is_an_error() {
    let out = Test::new().args(["validate", "nope.yaml"]).status(2).run();
    assert!(out.stderr.contains("ttplan::plan::io"), "{out}");
    assert!(out.stderr.contains("nope.yaml"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Diagnostics as text
// ---------------------------------------------------------------------------------------------

#[test]
fn text_unknown_step_field_with_did_you_mean() {
    Test::new()
        .plan(
            "\
name: t
steps:
  a:
    kind: shell
    retires: 3
    run: echo hi
",
        )
        .args(["validate", "plan.yaml"])
        .status(2)
        .stderr(
            "  × plan is invalid: 1 problem

Error: ttplan::plan::unknown_field

  × plan.yaml:5:5: unknown field `retires` in step `a` (shell)
   ╭─[plan.yaml:5:5]
 4 │     kind: shell
 5 │     retires: 3
   ·     ───┬───
   ·        ╰── not a known field
 6 │     run: echo hi
   ╰────
  help: did you mean `retries`?

",
        )
        .run();
}

#[test]
fn text_cycle_prints_its_path() {
    Test::new()
        .plan(
            "\
name: t
steps:
  a:
    kind: shell
    after: [c]
    run: echo a
  b:
    kind: shell
    after: [a]
    run: echo b
  c:
    kind: shell
    after: [b]
    run: echo c
",
        )
        .args(["validate", "plan.yaml"])
        .status(2)
        .stderr(
            r#"  × plan is invalid: 1 problem

Error: ttplan::plan::cycle

  × plan.yaml:5:13: steps wait for each other in a cycle: a → c → b → a
    ╭─[plan.yaml:5:13]
  4 │     kind: shell
  5 │     after: [c]
    ·             ┬
    ·             ╰── `a` runs after `c`
  6 │     run: echo a
  7 │   b:
  8 │     kind: shell
  9 │     after: [a]
    ·             ┬
    ·             ╰── `b` runs after `a`
 10 │     run: echo b
 11 │   c:
 12 │     kind: shell
 13 │     after: [b]
    ·             ┬
    ·             ╰── `c` runs after `b`
 14 │     run: echo c
    ╰────
  help: each arrow reads "runs after"; remove one of these `after` entries

"#,
        )
        .run();
}

#[test]
fn text_undefined_variable() {
    Test::new()
        .plan(
            "\
name: t
vars:
  namespace: default
steps:
  a:
    kind: shell
    run: kubectl -n {{ namespce }} get pods
",
        )
        .args(["validate", "plan.yaml"])
        .status(2)
        .stderr(
            r#"  × plan is invalid: 1 problem

Error: ttplan::plan::undefined_variable

  × plan.yaml:7:10: undefined variable `namespce`
   ╭─[plan.yaml:7:10]
 6 │     kind: shell
 7 │     run: kubectl -n {{ namespce }} get pods
   ·          ─────────────────┬────────────────
   ·                           ╰── used in this template
   ╰────
  help: did you mean `namespace`?

"#,
        )
        .run();
}

#[test]
fn text_unknown_after() {
    Test::new()
        .plan(
            "\
name: t
steps:
  prepare:
    kind: shell
    run: echo hi
  b:
    kind: shell
    after: [prepar]
    run: echo hi
",
        )
        .args(["validate", "plan.yaml"])
        .status(2)
        .stderr(
            r#"  × plan is invalid: 1 problem

Error: ttplan::plan::unknown_step

  × plan.yaml:8:13: step `b` runs after `prepar`, which is not a step
   ╭─[plan.yaml:8:13]
 7 │     kind: shell
 8 │     after: [prepar]
   ·             ───┬──
   ·                ╰── no such step
 9 │     run: echo hi
   ╰────
  help: did you mean `prepare`?

"#,
        )
        .run();
}

#[test]
fn text_unknown_kind_in_toml() {
    Test::new()
        .file(
            "plan.toml",
            "\
name = \"t\"

[steps.a]
kind = \"shel\"
run = \"echo hi\"
",
        )
        .args(["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"  × plan is invalid: 1 problem

Error: ttplan::plan::unknown_kind

  × plan.toml:4:8: unknown step kind `shel`
   ╭─[plan.toml:4:8]
 3 │ [steps.a]
 4 │ kind = "shel"
   ·        ───┬──
   ·           ╰── not a step kind
 5 │ run = "echo hi"
   ╰────
  help: did you mean `shell`?

"#,
        )
        .run();
}

#[test]
fn text_unknown_set_var() {
    Test::new()
        .plan("name: t\nvars:\n  greeting: hello\nsteps:\n  a: { kind: shell, run: echo }\n")
        .args(["validate", "plan.yaml", "--set", "greting=hi"])
        .status(2)
        .stderr(
            r#"  × plan is invalid: 1 problem

Error: ttplan::plan::unknown_field

  × --set:1:1: `--set greting=…`: the plan declares no var `greting`
   ╭─[--set:1:1]
 1 │ greting=hi
   · ───┬───
   ·    ╰── not a var of this plan
   ╰────
  help: did you mean `greeting`?

"#,
        )
        .run();
}

// ---------------------------------------------------------------------------------------------
// Good plans
// ---------------------------------------------------------------------------------------------

#[test]
fn repo_plans_validate() {
    let mut plans = vec!["plans/demo.yaml"];
    if repo().join("plans/demo.toml").exists() {
        plans.push("plans/demo.toml");
    } else {
        println!("note: plans/demo.toml does not exist yet; only demo.yaml checked");
    }
    let out = Test::new()
        .current_dir(repo())
        .args(["validate"])
        .args(plans.iter().copied())
        .run();
    for p in &plans {
        assert!(out.stdout.contains(&format!("ok {p} (")), "{out}");
    }
    assert_eq!(out.stderr, "", "{out}");
}

/// Runs a repo plan (copied into the test dir) and checks the manifest from top to bottom.
fn check_demo_run(file: &str) {
    let text = std::fs::read_to_string(repo().join("plans").join(file)).unwrap();
    let out = Test::new()
        .file(file, &text)
        .args(["run", file, "--out", "out", "--set", "exp_name=t"])
        .run();
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "succeeded", "{out}");
    assert_eq!(m["run"]["exit_code"], 0);
    assert_eq!(m["vars"]["exp_name"], "t");
    assert_eq!(m["run"]["exp_name"], "t");
    assert_eq!(m["plan"]["sha256"], sha256_hex(&out.path().join(file)));
    assert!(m["resolved_plan"]["steps"].is_object(), "{m:#}");
    let argv: Vec<&str> = m["invocation"]["argv"]
        .as_array()
        .expect("invocation.argv")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&argv[1..3], ["run", file]);

    let steps = m["steps"].as_object().expect("steps");
    assert!(!steps.is_empty());
    let mut artifacts = 0;
    for (name, s) in steps {
        assert_eq!(s["status"], "succeeded", "step {name}: {s:#}");
        assert!(s["attempts"].as_u64() >= Some(1), "step {name}: {s:#}");
        for a in s["artifacts"].as_array().expect("artifacts") {
            artifacts += 1;
            let path = out.path().join("out").join(a["path"].as_str().unwrap());
            let sha = a["sha256"].as_str().unwrap();
            assert!(
                sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{a}"
            );
            assert_eq!(sha, sha256_hex(&path), "{a}");
            assert_eq!(
                a["bytes"].as_u64(),
                Some(std::fs::metadata(&path).unwrap().len()),
                "{a}"
            );
        }
    }
    assert!(artifacts >= 3, "the demo declares 3 artifacts: {m:#}");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    // The fault's marker was removed by its recovery; the always-step ran.
    assert!(!out.exists("out/demo_data/t/fault.active"));
    assert_eq!(out.read("out/demo_data/t/cleanup.marker"), "cleanup ran\n");
}

#[test]
fn demo_yaml_runs() {
    check_demo_run("demo.yaml");
}

#[test]
fn demo_toml_runs_if_present() {
    if !repo().join("plans/demo.toml").exists() {
        println!("note: plans/demo.toml does not exist yet; skipped");
        return;
    }
    check_demo_run("demo.toml");
}

// ---------------------------------------------------------------------------------------------
// Engine semantics, read back from the manifest
// ---------------------------------------------------------------------------------------------

#[test]
fn set_overrides_a_var() {
    let out = Test::new()
        .plan(
            r#"
name: t
vars:
  greeting: hello
steps:
  say:
    kind: shell
    run: echo "{{ greeting }}" > said.txt
"#,
        )
        .args(["--set", "greeting=bonjour"])
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["vars"]["greeting"], "bonjour");
    assert_eq!(out.read("said.txt"), "bonjour\n");
    assert_eq!(
        m["resolved_plan"]["steps"]["say"]["run"],
        "echo \"bonjour\" > said.txt"
    );
}

#[test]
fn the_manifest_records_the_git_commit_of_the_plan_and_its_sources() {
    let t = Test::new()
        .plan("name: t\nsources:\n  tree: lib\nsteps:\n  a: { kind: shell, run: echo }\n")
        .file("lib/x.txt", "x\n");
    let git = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let root = t.path().to_path_buf();
    git(&root, &["init", "-q"]);
    git(&root, &["add", "."]);
    git(&root, &["commit", "-qm", "plan"]);
    let head = git(&root, &["rev-parse", "HEAD"]);
    std::fs::write(root.join("lib/x.txt"), "changed\n").unwrap();
    let out = t.run_plan();
    let m = out.manifest();
    for g in [&m["plan"]["git"], &m["sources"]["tree"]["git"]] {
        assert_eq!(g["commit"], head.as_str(), "{m:#}");
        assert_eq!(g["dirty"], true, "{m:#}");
        assert_eq!(g["root"], root.display().to_string(), "{m:#}");
    }
}

#[test]
fn set_of_an_undeclared_var_is_an_error() {
    let out = Test::new()
        .plan("name: t\nvars:\n  greeting: hello\nsteps:\n  a: { kind: shell, run: echo }\n")
        .args(["--set", "nosuch=1"])
        .status(2)
        .run_plan();
    assert!(out.stderr.contains("ttplan::plan::unknown_field"), "{out}");
    assert!(out.stderr.contains("declares no var `nosuch`"), "{out}");
    assert!(!out.exists("out/runs"), "nothing may run: {out}");
}

#[test]
fn extends_deep_merges_vars_and_steps() {
    let out = Test::new()
        .file(
            "base/common.yaml",
            r#"
name: base
vars:
  region: eu
  size: small
steps:
  one:
    kind: shell
    run: echo "one {{ region }} {{ size }}" > one.txt
  two:
    kind: shell
    after: [one]
    timeout: 30s
    run: echo base > two.txt
  three:
    kind: shell
    run: echo three > three.txt
"#,
        )
        .plan(
            r#"
extends: base/common.yaml
name: child
vars:
  size: large
steps:
  two:
    run: echo child > two.txt
  three: null
"#,
        )
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["vars"]["region"], "eu");
    assert_eq!(m["vars"]["size"], "large");
    assert_eq!(m["plan"]["name"], "child");
    let names: BTreeSet<&str> = m["steps"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, BTreeSet::from(["one", "two"]));
    let two = &m["resolved_plan"]["steps"]["two"];
    assert_eq!(two["kind"], "shell", "merged from the base: {two:#}");
    assert_eq!(two["timeout"], "30s", "kept from the base: {two:#}");
    assert_eq!(two["after"], serde_json::json!(["one"]));
    assert_eq!(out.read("two.txt"), "child\n");
    assert_eq!(out.read("one.txt"), "one eu large\n");
    assert!(!out.exists("three.txt"));
    let files = m["plan"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn retries_until_success() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  flaky:
    kind: shell
    retries: 3
    backoff: 10ms
    run: n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]
"#,
        )
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "flaky"), "succeeded");
    assert_eq!(step(&m, "flaky")["attempts"], 3);
    assert_eq!(out.read("count"), "3\n");
}

#[test]
fn retries_exhausted_fail_the_step() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  broken:
    kind: shell
    retries: 1
    backoff: 10ms
    run: echo x >> tries; exit 3
"#,
        )
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "broken"), "failed");
    assert_eq!(step(&m, "broken")["attempts"], 2);
    assert_eq!(out.read("tries"), "x\nx\n");
    let err = step(&m, "broken")["error"].as_str().unwrap();
    assert!(err.contains("exit status 3"), "{err}");
    assert_eq!(m["run"]["status"], "failed");
}

#[test]
fn timeout_fails_the_step_and_kills_the_process_tree() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  slow:
    kind: shell
    timeout: 1s
    run: sleep 30 & echo $! > sleep.pid; wait
"#,
        )
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "slow"), "failed");
    let err = step(&m, "slow")["error"].as_str().unwrap();
    assert!(err.contains("timed out"), "{err}");
    let pid: i32 = out.read("sleep.pid").trim().parse().unwrap();
    assert!(
        !process_alive(pid),
        "`sleep 30` (pid {pid}) survived the timeout"
    );
}

#[test]
fn allowed_failure_does_not_fail_the_run() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  optional:
    kind: shell
    allow_failure: true
    run: exit 4
  next:
    kind: shell
    after: [optional]
    run: echo ran > next.txt
"#,
        )
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "optional"), "failed");
    assert_eq!(step(&m, "optional")["allow_failure"], true);
    assert_eq!(status(&m, "next"), "succeeded");
    assert_eq!(out.read("next.txt"), "ran\n");
    assert_eq!(m["run"]["status"], "succeeded");
    assert_eq!(m["run"]["exit_code"], 0);
}

#[test]
fn failure_skips_dependents_but_always_steps_run() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  a:
    kind: shell
    run: exit 1
  b:
    kind: shell
    after: [a]
    run: echo b > b.txt
  c:
    kind: shell
    after: [b]
    run: echo c > c.txt
  cleanup:
    kind: shell
    after: [c]
    always: true
    run: echo cleaned > cleanup.marker
  unrelated:
    kind: shell
    run: echo u > u.txt
"#,
        )
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "failed");
    assert_eq!(m["run"]["exit_code"], 1);
    assert_eq!(status(&m, "a"), "failed");
    assert_eq!(status(&m, "b"), "skipped");
    assert_eq!(status(&m, "c"), "skipped");
    let reason = step(&m, "b")["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("`a`") && reason.contains("failed"),
        "{reason:?}"
    );
    let reason = step(&m, "c")["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("`b`"), "{reason:?}");
    assert!(!out.exists("b.txt") && !out.exists("c.txt"));
    assert_eq!(status(&m, "cleanup"), "succeeded");
    assert_eq!(out.read("cleanup.marker"), "cleaned\n");
    assert_eq!(status(&m, "unrelated"), "succeeded");
    let errors = m["run"]["errors"].to_string();
    assert!(errors.contains("step `a` failed"), "{errors}");
}

#[test]
fn outputs_flow_to_later_steps() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  a:
    kind: shell
    run: echo "key=hello world" >> "$TTPLAN_OUTPUTS"
  b:
    kind: shell
    after: [a]
    run: echo "{{ steps.a.outputs.key }}" > got.txt
"#,
        )
        .run_plan();
    let m = out.manifest();
    assert_eq!(step(&m, "a")["outputs"]["key"], "hello world");
    assert_eq!(out.read("got.txt"), "hello world\n");
}

#[test]
fn iterations_are_recorded() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  sample:
    kind: shell
    iterations: 3
    pause: 10ms
    run: echo $TTPLAN_ITERATION >> iterations.txt
"#,
        )
        .run_plan();
    let m = out.manifest();
    let its = step(&m, "sample")["outputs"]["iterations"]
        .as_array()
        .expect("outputs.iterations");
    assert_eq!(its.len(), 3, "{its:?}");
    for (i, it) in its.iter().enumerate() {
        assert_eq!(it["iteration"], i + 1);
        assert_eq!(it["exit_code"], 0);
    }
    assert_eq!(out.read("iterations.txt"), "1\n2\n3\n");
}

#[test]
fn a_fault_is_recovered_when_a_later_step_fails() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  inject:
    kind: shell
    run: touch fault.active
    recover: rm fault.active && echo recovered > recovered.marker
  boom:
    kind: shell
    after: [inject]
    run: exit 1
"#,
        )
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "boom"), "failed");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert_eq!(m["faults"][0]["step"], "inject");
    // The fault's times: requested, injected (the command succeeded), then recovered.
    let f = &m["faults"][0];
    let (requested, recovered) = (time(&f["requested_at"]), time(&f["recovered_at"]));
    assert!(f["injected_at"].is_string(), "no injection time: {f:#}");
    let injected = time(&f["injected_at"]);
    assert!(requested <= injected && injected <= recovered, "{f:#}");
    assert!(injected >= time(&step(&m, "inject")["started_at"]), "{f:#}");
    assert_eq!(out.read("recovered.marker"), "recovered\n");
    assert!(!out.exists("fault.active"));
    // The ledger on disk agrees.
    let ledger = out.read("out/runs/t/faults.json");
    assert!(ledger.contains("recovered"), "{ledger}");
}

#[test]
fn same_exp_name_twice_refuses_to_overwrite() {
    let plan = "name: t\nsteps:\n  a: { kind: shell, run: echo }\n";
    let first = Test::new().plan(plan).run_plan();
    let before = std::fs::read(first.manifest_path()).unwrap();
    let again = Test::new()
        .current_dir(first.path())
        .args(["run", "plan.yaml", "--out", "out", "--set", "exp_name=t"])
        .status(2)
        .run();
    assert!(again.stderr.contains("already holds a run"), "{again}");
    assert_eq!(std::fs::read(first.manifest_path()).unwrap(), before);
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

const TWO_INDEPENDENT_SLEEPS: &str = "
name: t
steps:
  a:
    kind: shell
    run: sleep 1
  b:
    kind: shell
    run: sleep 1
";

/// (started_at, finished_at) of a step.
fn window(m: &Value, name: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let s = step(m, name);
    (time(&s["started_at"]), time(&s["finished_at"]))
}

#[test]
fn independent_steps_overlap() {
    let out = Test::new().plan(TWO_INDEPENDENT_SLEEPS).run_plan();
    let m = out.manifest();
    let (a0, a1) = window(&m, "a");
    let (b0, b1) = window(&m, "b");
    assert!(
        a0 < b1 && b0 < a1,
        "a {a0}..{a1} and b {b0}..{b1} did not overlap"
    );
}

#[test]
fn max_parallel_one_runs_steps_one_after_another() {
    let out = Test::new()
        .plan(TWO_INDEPENDENT_SLEEPS)
        .args(["--max-parallel", "1"])
        .run_plan();
    let m = out.manifest();
    assert_eq!(m["invocation"]["max_parallel"], 1);
    let (a0, a1) = window(&m, "a");
    let (b0, b1) = window(&m, "b");
    assert!(
        a1 <= b0 || b1 <= a0,
        "a {a0}..{a1} and b {b0}..{b1} overlapped"
    );
}

#[test]
fn a_step_starts_after_its_dependencies_finish() {
    let out = Test::new()
        .plan(
            "
name: t
steps:
  a: { kind: shell, run: sleep 0.2 }
  b: { kind: shell, run: sleep 0.2 }
  c: { kind: shell, after: [a, b], run: 'true' }
",
        )
        .run_plan();
    let m = out.manifest();
    let (c0, _) = window(&m, "c");
    assert!(window(&m, "a").1 <= c0 && window(&m, "b").1 <= c0, "{m:#}");
}

// ---------------------------------------------------------------------------------------------
// SIGINT / SIGTERM
// ---------------------------------------------------------------------------------------------

/// How long a test waits for ttplan to reach a state or to exit; never reached when it works.
const LIMIT: Duration = Duration::from_secs(20);

const LONG_RUN: &str = "
name: t
steps:
  inject:
    kind: shell
    run: touch fault.active
    recover: rm fault.active && echo recovered > recovered.marker
  long:
    kind: shell
    after: [inject]
    run: sleep 60 & echo $! > long.pid; wait
  after_long:
    kind: shell
    after: [long]
    run: echo ran > after_long.txt
  cleanup:
    kind: shell
    after: [long]
    always: true
    run: echo cleaned > cleanup.marker
";

fn interrupt_a_long_step(sig: Signal) {
    let mut run = Test::new().plan(LONG_RUN).spawn_run();
    run.wait_for_manifest("step `long` running", LIMIT, |m| {
        m["steps"]["long"]["status"] == "running"
    });
    let pid: i32 = run.wait_for_file("long.pid", LIMIT).trim().parse().unwrap();
    assert!(process_alive(pid));
    run.signal(sig);
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "interrupted", "{m:#}");
    assert_eq!(m["run"]["exit_code"], 130);
    assert_eq!(status(&m, "inject"), "succeeded");
    assert_eq!(status(&m, "long"), "cancelled");
    assert_eq!(status(&m, "after_long"), "cancelled");
    assert!(!out.exists("after_long.txt"));
    assert_eq!(status(&m, "cleanup"), "succeeded");
    assert_eq!(out.read("cleanup.marker"), "cleaned\n");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert_eq!(out.read("recovered.marker"), "recovered\n");
    assert!(!out.exists("fault.active"));
    assert!(
        !process_alive(pid),
        "`sleep 60` (pid {pid}) outlived the run"
    );
}

#[test]
fn sigint_cancels_runs_always_steps_and_recovers() {
    interrupt_a_long_step(Signal::SIGINT);
}

#[test]
fn sigterm_cancels_runs_always_steps_and_recovers() {
    interrupt_a_long_step(Signal::SIGTERM);
}

#[test]
fn a_second_signal_aborts() {
    let mut run = Test::new()
        .plan(
            "
name: t
steps:
  long:
    kind: shell
    run: sleep 60 & echo $! > long.pid; wait
  cleanup:
    kind: shell
    after: [long]
    always: true
    run: sleep 60 & echo $! > cleanup.pid; wait
",
        )
        .spawn_run();
    run.wait_for_manifest("step `long` running", LIMIT, |m| {
        m["steps"]["long"]["status"] == "running"
    });
    run.wait_for_file("long.pid", LIMIT);
    run.signal(Signal::SIGINT);
    // The first signal cancels `long`; the always-step starts and hangs.
    run.wait_for_manifest("step `cleanup` running", LIMIT, |m| {
        m["steps"]["cleanup"]["status"] == "running"
    });
    let pid: i32 = run
        .wait_for_file("cleanup.pid", LIMIT)
        .trim()
        .parse()
        .unwrap();
    run.signal(Signal::SIGINT);
    // Well before the cleanup's `sleep 60` could end on its own.
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "aborted", "{m:#}");
    assert_eq!(status(&m, "long"), "cancelled");
    assert!(
        !process_alive(pid),
        "the cleanup's `sleep 60` (pid {pid}) survived the abort"
    );
}

// ---------------------------------------------------------------------------------------------
// plan, graph, schema, dry run
// ---------------------------------------------------------------------------------------------

const DIAMOND: &str = r#"
name: diamond
vars:
  namespace: chaos-ns
  pause: 2s
steps:
  prepare:
    kind: shell
    run: kubectl -n {{ namespace }} get pods
  warm-up:
    kind: sleep
    after: [prepare]
    duration: "{{ pause }}"
  probe:
    kind: shell
    after: [prepare]
    run: echo probe
  report:
    kind: shell
    after: [warm-up, probe]
    run: echo "prepare finished at {{ steps.prepare.finished_at }}"
  teardown:
    kind: shell
    after: [report]
    always: true
    run: echo bye
"#;

const DIAMOND_EDGES: &[(&str, &str)] = &[
    ("prepare", "warm-up"),
    ("prepare", "probe"),
    ("warm-up", "report"),
    ("probe", "report"),
    ("report", "teardown"),
];

#[test]
fn plan_shows_layers_and_rendered_values() {
    let out = Test::new()
        .plan(DIAMOND)
        .args(["plan", "plan.yaml", "--set", "exp_name=t"])
        .run();
    let s = &out.stdout;
    assert!(s.contains("exp_name: t\n"), "{s}");
    // Which layer each step is listed under.
    let mut layer = 0;
    let mut layers = std::collections::BTreeMap::new();
    for line in s.lines() {
        if let Some(n) = line.strip_prefix("layer ") {
            layer = n.trim_end_matches(':').parse().unwrap();
        } else if let Some(rest) = line.strip_prefix("  ") {
            if !rest.starts_with(' ') && layer > 0 {
                layers.insert(rest.split(' ').next().unwrap().to_string(), layer);
            }
        }
    }
    let expect: std::collections::BTreeMap<String, i32> = [
        ("prepare", 1),
        ("warm-up", 2),
        ("probe", 2),
        ("report", 3),
        ("teardown", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(layers, expect, "{s}");
    // Vars rendered into step fields; runtime references shown as such.
    assert!(s.contains("run: kubectl -n chaos-ns get pods"), "{s}");
    assert!(s.contains("duration: 2s"), "{s}");
    assert!(s.contains("{{ steps.prepare.finished_at }}"), "{s}");
    assert!(
        s.contains("report (shell)  [renders {{ steps.* / run.* }} at step start]"),
        "{s}"
    );
    assert!(s.contains("teardown (shell)  [always]"), "{s}");
}

#[test]
fn graph_mermaid_has_every_edge() {
    let out = Test::new()
        .plan(DIAMOND)
        .args(["graph", "plan.yaml", "--format", "mermaid"])
        .run();
    assert!(out.stdout.starts_with("flowchart"), "{out}");
    // Node declarations `  <id>["<name><br/>…"]` give each step's id.
    let ids: std::collections::BTreeMap<String, String> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let (id, rest) = l.trim().split_once("[\"")?;
            Some((rest.split("<br/>").next()?.to_string(), id.to_string()))
        })
        .collect();
    let id = |n: &str| ids[n].clone();
    for (a, b) in DIAMOND_EDGES {
        let arrow = if *b == "teardown" { "-.->" } else { "-->" };
        let edge = format!("  {} {arrow} {}\n", id(a), id(b));
        assert!(
            out.stdout.contains(&edge),
            "missing {edge:?}:\n{}",
            out.stdout
        );
    }
    let edges = out.stdout.lines().filter(|l| l.contains("->")).count();
    assert_eq!(edges, DIAMOND_EDGES.len(), "{}", out.stdout);
}

#[test]
fn graph_dot_has_every_edge() {
    let out = Test::new()
        .plan(DIAMOND)
        .args(["graph", "plan.yaml", "--format", "dot"])
        .run();
    assert!(out.stdout.starts_with("digraph \"diamond\" {"), "{out}");
    assert!(out.stdout.trim_end().ends_with('}'), "{out}");
    for (a, b) in DIAMOND_EDGES {
        let edge = format!("  \"{a}\" -> \"{b}\";\n");
        assert!(
            out.stdout.contains(&edge),
            "missing {edge:?}:\n{}",
            out.stdout
        );
    }
    let edges = out.stdout.lines().filter(|l| l.contains(" -> ")).count();
    assert_eq!(edges, DIAMOND_EDGES.len(), "{}", out.stdout);
}

#[test]
fn schema_matches_the_committed_file() {
    let path = repo().join("schemas/plan.schema.json");
    let Ok(committed) = std::fs::read_to_string(&path) else {
        println!("note: {} does not exist yet; skipped", path.display());
        return;
    };
    let out = Test::new().args(["schema"]).run();
    let _: Value = serde_json::from_str(&out.stdout).expect("`ttplan schema` prints JSON");
    support::assert_text_eq(
        "ttplan schema vs schemas/plan.schema.json",
        &out.stdout,
        &committed,
    );
}

#[test]
fn dry_run_executes_nothing() {
    let out = Test::new()
        .plan("name: t\nsteps:\n  a: { kind: shell, run: touch ran.txt }\n")
        .args(["--dry-run"])
        .run_plan();
    assert!(out.stdout.contains("dry run"), "{out}");
    assert!(out.stdout.contains("run: touch ran.txt"), "{out}");
    assert!(!out.exists("ran.txt"));
    assert!(!out.exists("out"), "a dry run writes no dataset: {out}");
}

// ---------------------------------------------------------------------------------------------
// More engine behaviour: recovery failures, logs, timestamps, limits, files on disk
// ---------------------------------------------------------------------------------------------

#[test]
fn an_invalid_plan_runs_nothing() {
    let out = Test::new()
        .plan("name: t\nsteps:\n  a: { kind: shell, run: touch ran.txt }\n  b: { kind: shel }\n")
        .status(2)
        .run_plan();
    assert!(out.stderr.contains("ttplan::plan::unknown_kind"), "{out}");
    assert!(!out.exists("ran.txt") && !out.exists("out"), "{out}");
}

#[test]
fn a_failed_recovery_fails_the_run() {
    let out = Test::new()
        .plan(
            "
name: t
steps:
  inject:
    kind: shell
    run: 'true'
    recover: exit 7
",
        )
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "inject"), "succeeded");
    assert_eq!(m["run"]["status"], "failed");
    assert_ne!(m["faults"][0]["status"], "recovered", "{m:#}");
    let errors = m["run"]["errors"].to_string();
    assert!(
        errors.contains("not recovered") && errors.contains("exit status 7"),
        "{errors}"
    );
}

#[test]
fn a_fault_whose_injection_fails_is_still_recovered() {
    // The recover command is in the ledger before `run` starts: a half-done injection is undone.
    let out = Test::new()
        .plan(
            "
name: t
steps:
  inject:
    kind: shell
    run: touch fault.active; exit 1
    recover: rm fault.active
",
        )
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "inject"), "failed");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert!(m["faults"][0]["injected_at"].is_null(), "{m:#}");
    assert!(!out.exists("fault.active"));
}

#[test]
fn a_failing_always_step_fails_the_run() {
    let out = Test::new()
        .plan("name: t\nsteps:\n  a: { kind: shell, run: 'true' }\n  z: { kind: shell, after: [a], always: true, run: exit 2 }\n")
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "a"), "succeeded");
    assert_eq!(status(&m, "z"), "failed");
    assert_eq!(m["run"]["status"], "failed");
}

#[test]
fn step_output_goes_to_the_step_log() {
    let out = Test::new()
        .plan("name: t\nsteps:\n  a: { kind: shell, run: 'echo to-stdout; echo to-stderr >&2' }\n")
        .run_plan();
    let m = out.manifest();
    assert_eq!(step(&m, "a")["log"], "runs/t/steps/a.log");
    let log = out.read("out/runs/t/steps/a.log");
    assert!(
        log.contains("to-stdout\n") && log.contains("to-stderr\n"),
        "{log}"
    );
    assert!(
        !out.stdout.contains("to-stdout"),
        "step output is not ttplan's: {out}"
    );
}

#[test]
fn steps_get_the_run_environment() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  a:
    kind: shell
    env:
      GREETING: "hi {{ name }}"
    run: echo "$GREETING|$TTPLAN_EXP_NAME|$TTPLAN_STEP|$TTPLAN_RUN_DIR" > env.txt
"#,
        )
        .run_plan();
    let run_dir = out.path().join("out/runs/t");
    assert_eq!(
        out.read("env.txt"),
        format!("hi t|t|a|{}\n", run_dir.display())
    );
}

/// Every `*_at` string in the manifest is RFC 3339 in UTC, spelled with `Z`.
fn check_timestamps(v: &Value, path: &str, seen: &mut usize) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let p = format!("{path}.{k}");
                if k.ends_with("_at") {
                    if let Some(s) = x.as_str() {
                        *seen += 1;
                        assert!(s.ends_with('Z'), "{p} = {s:?} is not UTC with `Z`");
                        time(x);
                    }
                }
                check_timestamps(x, &p, seen);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                check_timestamps(x, &format!("{path}[{i}]"), seen);
            }
        }
        _ => {}
    }
}

#[test]
fn manifest_timestamps_are_utc() {
    let out = Test::new()
        .plan(
            "
name: t
steps:
  inject: { kind: shell, run: 'true', recover: 'true' }
  b: { kind: shell, after: [inject], run: 'true' }
",
        )
        .env("TZ", "America/New_York")
        .run_plan();
    let mut seen = 0;
    check_timestamps(&out.manifest(), "manifest", &mut seen);
    // run.started/finished, 2 steps × 2, the fault's requested/recovered.
    assert!(seen >= 8, "only {seen} timestamps found");
}

#[test]
fn max_parallel_bounds_how_many_steps_run_at_once() {
    let out = Test::new()
        .plan(
            "
name: t
steps:
  a: { kind: shell, run: sleep 0.5 }
  b: { kind: shell, run: sleep 0.5 }
  c: { kind: shell, run: sleep 0.5 }
  d: { kind: shell, run: sleep 0.5 }
",
        )
        .args(["--max-parallel", "2"])
        .run_plan();
    let m = out.manifest();
    let windows: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| window(&m, n)).collect();
    for (start, _) in &windows {
        let running = windows
            .iter()
            .filter(|(s, f)| s <= start && start < f)
            .count();
        assert!(running <= 2, "{running} steps ran at {start}: {windows:?}");
    }
}

#[test]
fn timeout_kills_a_process_that_ignores_sigterm() {
    let out = Test::new()
        .plan(
            "
name: t
steps:
  stubborn:
    kind: shell
    timeout: 1s
    run: trap '' TERM; sleep 30 & echo $! > sleep.pid; wait; sleep 30
",
        )
        .env("TTPLAN_TERM_GRACE", "300ms")
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "stubborn"), "failed");
    assert!(step(&m, "stubborn")["error"]
        .as_str()
        .unwrap()
        .contains("timed out after 1s"));
    let pid: i32 = out.read("sleep.pid").trim().parse().unwrap();
    assert!(
        !process_alive(pid),
        "the TERM-proof `sleep 30` (pid {pid}) survived"
    );
}

#[test]
fn sigint_during_retry_backoff_stops_at_once() {
    let mut run = Test::new()
        .plan(
            "
name: t
steps:
  flaky:
    kind: shell
    retries: 5
    backoff: 60s
    run: exit 1
  cleanup:
    kind: shell
    after: [flaky]
    always: true
    run: echo cleaned > cleanup.marker
",
        )
        .spawn_run();
    // The first attempt has ended (its exit is logged): ttplan now waits 60 s to retry.
    let log = run.path().join("out/runs/t/steps/flaky.log");
    run.wait_until("the first attempt to fail", LIMIT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("exit status 1"))
    });
    run.signal(Signal::SIGINT);
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    // `failed` when the signal won the race against the start of the backoff; either way no
    // second attempt ran and ttplan did not sit out the 60 s.
    let st = status(&m, "flaky");
    assert!(st == "cancelled" || st == "failed", "{st}");
    assert_eq!(step(&m, "flaky")["attempts"], 1);
    assert_eq!(m["run"]["status"], "interrupted");
    assert_eq!(out.read("cleanup.marker"), "cleaned\n");
}

#[test]
fn default_exp_name_is_the_plan_name_and_a_utc_timestamp() {
    let out = Test::new()
        .plan("name: demo-run\nsteps:\n  a: { kind: shell, run: 'true' }\n")
        .args(["run", "plan.yaml", "--out", "out"])
        .run();
    let runs: Vec<String> = std::fs::read_dir(out.path().join("out/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let stamp = runs[0]
        .strip_prefix("demo-run_")
        .unwrap_or_else(|| panic!("{runs:?}"));
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").is_ok(),
        "{stamp}"
    );
}

#[test]
fn manifest_is_as_readable_as_any_other_file() {
    // Atomic writes go through a temp file; the final file must not keep its private mode.
    use std::os::unix::fs::PermissionsExt;
    let out = Test::new()
        .plan("name: t\nsteps:\n  a: { kind: shell, run: 'true', recover: 'true' }\n")
        .run_plan();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let reference = out.path().join("reference");
    std::fs::write(&reference, "x").unwrap();
    for f in ["experiment_manifest.json", "faults.json"] {
        let p = out.path().join("out/runs/t").join(f);
        assert_eq!(
            format!("{:o}", mode(&p)),
            format!("{:o}", mode(&reference)),
            "{f}: mode differs from a normally created file"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.path().join("out/runs/t"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn outputs_of_a_failed_attempt_do_not_leak_into_the_next() {
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  flaky:
    kind: shell
    retries: 1
    backoff: 10ms
    run: |
      if [ ! -e first ]; then touch first; echo partial=yes >> "$TTPLAN_OUTPUTS"; exit 1; fi
      echo final=ok >> "$TTPLAN_OUTPUTS"
"#,
        )
        .run_plan();
    let m = out.manifest();
    let outputs = &step(&m, "flaky")["outputs"];
    assert_eq!(step(&m, "flaky")["attempts"], 2);
    assert_eq!(outputs["final"], "ok");
    assert!(outputs.get("partial").is_none(), "stale output: {outputs}");
}

#[test]

fn secrets_read_from_the_environment_are_not_written_to_disk() {
    let secret = "s3cr3t-value-for-the-test";
    let out = Test::new()
        .plan(
            r#"
name: t
vars:
  token: "{{ env('API_TOKEN', '') }}"
steps:
  inject:
    kind: shell
    env:
      TOKEN: "{{ env('API_TOKEN') }}"
    run: test -n "$TOKEN"
    recover: 'true'
"#,
        )
        .env("API_TOKEN", secret)
        .run_plan();
    let m = out.manifest();
    assert_ne!(m["env"]["API_TOKEN"], secret);
    for f in ["experiment_manifest.json", "faults.json"] {
        let text = out.read(&format!("out/runs/t/{f}"));
        let n = text.matches(secret).count();
        assert_eq!(n, 0, "{f} holds the secret {n} times");
    }
}

#[test]
fn sigint_during_recovery_lets_recovery_finish() {
    let mut run = Test::new()
        .plan(
            "
name: t
steps:
  inject:
    kind: shell
    run: 'true'
    recover: echo started > recovery.started; until [ -e go ]; do sleep 0.05; done; echo done > recovered.marker
",
        )
        .spawn_run();
    run.wait_for_file("recovery.started", LIMIT);
    run.signal(Signal::SIGINT);
    // Recovery is still waiting for this file, so the signal arrived while it ran.
    std::fs::write(run.path().join("go"), "").unwrap();
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "interrupted");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert_eq!(out.read("recovered.marker"), "done\n");
}

#[test]
fn many_parallel_steps_are_all_recorded() {
    // Forty steps finishing together: no manifest update may be lost.
    let steps: String = (0..40)
        .map(|i| format!("  s{i}: {{ kind: shell, run: 'echo k=v{i} >> \"$TTPLAN_OUTPUTS\"' }}\n"))
        .collect();
    let out = Test::new()
        .plan(&format!("name: t\nsteps:\n{steps}"))
        .args(["--max-parallel", "40"])
        .run_plan();
    let m = out.manifest();
    for i in 0..40 {
        let s = step(&m, &format!("s{i}"));
        assert_eq!(s["status"], "succeeded", "s{i}: {s:#}");
        assert_eq!(s["outputs"]["k"], format!("v{i}"), "s{i}: {s:#}");
    }
}

#[test]
fn workdir_is_relative_to_the_plan_folder() {
    let out = Test::new()
        .file("plans/sub/.keep", "")
        .file(
            "plans/p.yaml",
            "name: t\nsteps:\n  a: { kind: shell, workdir: sub, run: pwd > here.txt }\n  b: { kind: shell, run: pwd > here.txt }\n",
        )
        .args(["run", "plans/p.yaml", "--out", "out", "--set", "exp_name=t"])
        .run();
    let plans = out.path().join("plans").canonicalize().unwrap();
    let here = |p: &str| PathBuf::from(out.read(p).trim()).canonicalize().unwrap();
    assert_eq!(here("plans/sub/here.txt"), plans.join("sub"));
    assert_eq!(here("plans/here.txt"), plans);
}

#[test]
fn a_missing_workdir_is_reported_as_a_missing_folder() {
    let out = Test::new()
        .step("shell", "workdir: nowhere\nrun: 'true'")
        .status(1)
        .run_plan();
    let m = out.manifest();
    let err = m["steps"]["shell"]["error"].as_str().unwrap();
    let dir = out.path().join("nowhere");
    assert_eq!(
        err,
        format!(
            "the step's `workdir` folder {} does not exist",
            dir.display()
        ),
        "{out}"
    );
}

#[test]
fn a_toml_plan_can_extend_a_yaml_base() {
    let out = Test::new()
        .file(
            "base.yaml",
            "name: base\nvars:\n  who: base\nsteps:\n  one: { kind: shell, run: 'echo {{ who }} > one.txt' }\n",
        )
        .file(
            "plan.toml",
            "extends = \"base.yaml\"\nname = \"child\"\n\n[vars]\nwho = \"toml\"\n\n[steps.two]\nkind = \"shell\"\nafter = [\"one\"]\nrun = \"echo two > two.txt\"\n",
        )
        .args(["run", "plan.toml", "--out", "out", "--set", "exp_name=t"])
        .run();
    assert_eq!(out.read("one.txt"), "toml\n");
    assert_eq!(out.read("two.txt"), "two\n");
}

#[test]
fn mermaid_node_ids_are_unique() {
    let out = Test::new()
        .plan("name: t\nsteps:\n  a-b: { kind: shell, run: 'true' }\n  a_b: { kind: shell, run: 'true' }\n  c: { kind: shell, after: [a-b], run: 'true' }\n")
        .args(["graph", "plan.yaml", "--format", "mermaid"])
        .run();
    // Node declarations: `  <id>["<name><br/>…"]`.
    let ids: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("[\""))
        .map(|l| l.trim().split('[').next().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 3, "{}", out.stdout);
    assert_eq!(unique.len(), 3, "node ids collide:\n{}", out.stdout);
}

#[test]
fn a_second_signal_during_recovery_leaves_the_fault_in_the_ledger() {
    let mut run = Test::new()
        .plan(
            "
name: t
steps:
  inject:
    kind: shell
    run: 'true'
    # Waits for `go`; gives up once the test dir is gone, so an orphan cannot outlive the test.
    recover: echo started > recovery.started; until [ -e go ] || [ ! -e plan.yaml ]; do sleep 0.05; done
  long:
    kind: shell
    after: [inject]
    run: sleep 60 & echo $! > long.pid; wait
",
        )
        .spawn_run();
    run.wait_for_file("long.pid", LIMIT);
    run.signal(Signal::SIGINT);
    run.wait_for_file("recovery.started", LIMIT);
    run.signal(Signal::SIGINT);
    let out = run.wait(LIMIT);
    // Had the abort left the recovery command running, this would end it.
    std::fs::write(out.path().join("go"), "").unwrap();
    assert_eq!(out.status.code(), Some(130), "{out}");
    assert_eq!(out.manifest()["run"]["status"], "aborted");
    // `ttplan chaos clean` reads the ledger: the fault must still be listed as not recovered.
    let ledger: Value = serde_json::from_str(&out.read("out/runs/t/faults.json")).unwrap();
    let fault = &ledger["faults"][0];
    assert_eq!(fault["id"], "inject", "{ledger:#}");
    // The abort kills the recovery command too, which may record its failure first.
    assert!(
        fault["status"] == "injected" || fault["status"] == "recovery_failed",
        "{ledger:#}"
    );
    assert!(fault["recovery"]["command"].is_string(), "{ledger:#}");
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ttplan"))
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before ttplan writes: its writes hit a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// engine: declaration order, final statuses, duplicate signals, recover precedence
// ---------------------------------------------------------------------------------------------

#[test]
fn declaration_order_does_not_matter_after_a_failure() {
    // `c` and `z` are written above the steps they run after; `a` fails.
    let out = Test::new()
        .plan(
            r#"
name: t
steps:
  c: { kind: shell, after: [b], run: 'echo c > c.txt' }
  z: { kind: shell, after: [c], always: true, run: 'echo z > z.marker' }
  a: { kind: shell, run: 'exit 1' }
  b: { kind: shell, after: [a], run: 'echo b > b.txt' }
"#,
        )
        .status(1)
        .run_plan();
    let m = out.manifest();
    assert_eq!(status(&m, "a"), "failed");
    assert_eq!(status(&m, "b"), "skipped");
    assert_eq!(status(&m, "c"), "skipped", "{m:#}");
    assert!(step(&m, "c")["reason"]
        .as_str()
        .is_some_and(|r| r.contains("`b`")));
    assert_eq!(status(&m, "z"), "succeeded", "{m:#}");
    assert_eq!(out.read("z.marker"), "z\n");
    for (name, s) in m["steps"].as_object().unwrap() {
        assert!(
            !matches!(s["status"].as_str(), Some("pending" | "running")),
            "{name}: {s:#}"
        );
        if s["status"] != "succeeded" {
            assert!(s["reason"].is_string(), "{name} has no reason: {s:#}");
        }
    }
}

/// coreutils `timeout -s TERM` signals ttplan and then its process group: ttplan receives the
/// same SIGTERM twice in a row, which is one request to stop, not an abort.
#[test]
fn timeout_s_term_is_one_stop_request_not_an_abort() {
    let t = Test::new().plan(LONG_RUN);
    let dir = t.path().to_path_buf();
    let out = std::process::Command::new("timeout")
        .args(["-s", "TERM", "3"])
        .arg(env!("CARGO_BIN_EXE_ttplan"))
        .args(["run", "plan.yaml", "--out", "out", "--set", "exp_name=t"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("coreutils timeout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `timeout` exits 124 when it had to signal its command.
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    let m = support::read_manifest(&dir).unwrap();
    assert_eq!(m["run"]["status"], "interrupted", "{stderr}\n{m:#}");
    assert_eq!(m["run"]["exit_code"], 130);
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
    assert!(dir.join("cleanup.marker").exists(), "{stderr}");
    assert!(!dir.join("fault.active").exists());
}

#[test]
fn the_same_signal_twice_at_once_is_one_request() {
    let mut run = Test::new().plan(LONG_RUN).spawn_run();
    run.wait_for_manifest("step `long` running", LIMIT, |m| {
        m["steps"]["long"]["status"] == "running"
    });
    run.signal(Signal::SIGTERM);
    run.signal(Signal::SIGTERM);
    let out = run.wait(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{out}");
    let m = out.manifest();
    assert_eq!(m["run"]["status"], "interrupted", "{m:#}");
    assert_eq!(status(&m, "cleanup"), "succeeded");
    assert_eq!(m["faults"][0]["status"], "recovered", "{m:#}");
}

/// A secret a shell step's child prints (here from a literal in the step's `env:` map) is
/// replaced in the step log once the child exits; other output stays as it was.
#[test]
fn secrets_a_shell_step_prints_are_scrubbed_from_its_log() {
    let out = Test::new()
        .step(
            "shell",
            "env: { TT_AUTH_TOKEN: s3cr3t-t0ken-value }\nrun: 'echo token=$TT_AUTH_TOKEN; echo plain'",
        )
        .run_plan();
    let log = out.read("out/runs/t/steps/shell.log");
    assert!(!log.contains("s3cr3t-t0ken-value"), "{log}");
    assert!(log.contains("token=<redacted:TT_AUTH_TOKEN>"), "{log}");
    assert!(log.contains("plain"), "{log}");
}
