//! Integration tests: the `ttplan` binary run on plan files in temp dirs.
//!
//! - the broken-plan corpus (`tests/plans/broken/`, each file names its expected diagnostics),
//! - diagnostics compared as text,
//! - good plans (`plans/demo.*`) and engine semantics read back from the manifest,
//! - concurrency, signals, and the read-only subcommands (`plan`, `graph`, `schema`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use support::Test;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// Files whose report carries more diagnostics than the one problem they contain (see the
/// ignored test `each_problem_is_reported_once`).
const EXTRA_DIAGNOSTICS: &[&str] = &[
    // `step `a`: missing field `kind`` is reported twice (StepCommon + the explicit check).
    "missing_kind.yaml",
    // A var whose template failed is then reported as "undefined variable" where it is used.
    "undefined_var_in_var.yaml",
    "runtime_ref_in_vars.yaml",
];

fn check_corpus_file(file: &Path, exact_count: bool) -> Result<(), String> {
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
    if exact_count && got.len() != expected.len() {
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
        .filter_map(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            check_corpus_file(f, !EXTRA_DIAGNOSTICS.contains(&name.as_ref())).err()
        })
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
#[ignore = "BUG: some problems yield a duplicate or follow-on diagnostic (see EXTRA_DIAGNOSTICS)"]
fn each_problem_is_reported_once() {
    let failures: Vec<String> = EXTRA_DIAGNOSTICS
        .iter()
        .filter_map(|f| check_corpus_file(&corpus_dir().join(f), true).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
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
        .run();
    assert_eq!(out.stdout, "ok good.yaml (1 steps)\n");
    assert!(out.stderr.contains("bad1.yaml:3:14"), "{out}");
    assert!(out.stderr.contains("bad2.toml:4:12"), "{out}");
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
