//! The layers of the crate, checked: every `crate::`/`super::`/`self::` path in a module's
//! non-test code must point to its own layer node or one below it (issue 13).
//!
//! ```text
//! main (lib.rs run)
//!  └ commands ─ campaign, chaos_admin, sandbox ─ cli, report, dataset
//!     └ engine (launch, executor, manifest, labels, recovery)
//!        └ steps (the kinds, the registry, the plan schema)
//!           └ probe
//!              └ collect, coverage
//!                 └ steps::api (Step, StepCtx, StepError, StepOutputs, fault ledger, processes)
//!                    └ kube, traffic
//!                       └ plan (model, loading with a registry passed in)
//!                          └ git (runs through the child registry)
//!                             └ diag, atomic_write, child, crate root (exit codes, out)
//! ```
//!
//! A module missing from [`LAYERS`] fails the test too. Only the tests read this file; it is
//! compiled under `cfg(test)`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer nodes, bottom first: a node may import nodes of a lower rank only.
const LAYERS: &[&[&str]] = &[
    &["diag", "atomic_write", "child", "root"],
    &["git"],
    &["plan"],
    &["kube", "traffic"],
    &["steps::api"],
    &["collect", "coverage"],
    &["probe"],
    &["steps"],
    &["engine"],
    &["cli", "report", "dataset"],
    &["campaign", "chaos_admin", "sandbox"],
    &["commands"],
    &["main"],
];

fn rank(node: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&node))
}

/// The node a module path (`["steps", "api", "ctx"]`) belongs to.
fn node_of(path: &[String]) -> String {
    match path {
        [] => "root".into(),
        [first, second, ..] if first == "steps" && second == "api" => "steps::api".into(),
        [first, ..] if first == "lib" || first == "main" => "main".into(),
        // Items of the crate root: `crate::exit`, `crate::out`.
        [first, ..] if crate_root_item(first) => "root".into(),
        [first, ..] => first.clone(),
    }
}

fn crate_root_item(name: &str) -> bool {
    matches!(name, "exit" | "out")
}

/// `src/steps/api/ctx.rs` → `["steps", "api", "ctx"]`; `mod.rs` names its folder.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without its `#[cfg(test)] mod …` blocks and `//` comments: tests may
/// reach anywhere, docs may name anything.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    // Brace depth inside a skipped test module; `None` outside one.
    let mut skipping: Option<i64> = None;
    while let Some(line) = lines.next() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        if let Some(depth) = skipping.as_mut() {
            *depth += braces(code);
            if *depth <= 0 && code.contains('}') {
                skipping = None;
            }
            continue;
        }
        if line.trim_start().starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            let header = lines.next().unwrap_or_default();
            let depth = braces(header);
            // `mod tests;` (a file of its own) has no body.
            if depth > 0 {
                skipping = Some(depth);
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn braces(code: &str) -> i64 {
    code.chars()
        .map(|c| match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        })
        .sum()
}

/// Every path the code names from `crate::`, `super::` or `self::`, resolved to a full module
/// path (groups `crate::{a::b, c}` expanded).
fn referenced_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let start = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| rest.starts_with(**p))
            .filter(|_| {
                i == 0
                    || !(bytes[i - 1].is_ascii_alphanumeric()
                        || bytes[i - 1] == b'_'
                        || bytes[i - 1] == b':')
            });
        let Some(start) = start else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let (base, mut pos) = match *start {
            "crate::" => (Vec::new(), i + 7),
            "self::" => (module.to_vec(), i + 6),
            _ => {
                let mut b = module[..module.len().saturating_sub(1)].to_vec();
                let mut p = i + 7;
                while code[p..].starts_with("super::") {
                    b.pop();
                    p += 7;
                }
                (b, p)
            }
        };
        pos = parse_tree(code, pos, base, &mut out);
        i = pos.max(i + 1);
    }
    out
}

/// Parses `a::b::{c, d::e}` at `pos`, pushing each full path; returns where it stopped.
fn parse_tree(
    code: &str,
    mut pos: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let bytes = code.as_bytes();
    loop {
        while pos < code.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos < code.len() && bytes[pos] == b'{' {
            pos += 1;
            loop {
                while pos < code.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b',') {
                    pos += 1;
                }
                if pos >= code.len() || bytes[pos] == b'}' {
                    break;
                }
                let before = pos;
                pos = parse_tree(code, pos, prefix.clone(), out);
                if pos == before {
                    pos += 1;
                }
            }
            return pos + 1;
        }
        let ident_end = code[pos..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(code.len(), |e| pos + e);
        if ident_end == pos {
            out.push(prefix);
            return pos;
        }
        let ident = &code[pos..ident_end];
        if ident == "self" {
            out.push(prefix);
            return ident_end;
        }
        if ident == "super" {
            prefix.pop();
        } else {
            prefix.push(ident.to_string());
        }
        pos = ident_end;
        if code[pos..].starts_with("::") {
            pos += 2;
        } else {
            out.push(prefix);
            return pos;
        }
    }
}

/// Imports against the direction in one file: `(from node, to node, path)`.
fn violations(rel: &Path, text: &str) -> Vec<(String, String, String)> {
    let module = module_path(rel);
    let from = node_of(&module);
    let from_rank = rank(&from);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for path in referenced_paths(&module, &non_test_code(text)) {
        let to = node_of(&path);
        if to == from || !seen.insert((to.clone(), path.join("::"))) {
            continue;
        }
        let ok = match (from_rank, rank(&to)) {
            (Some(f), Some(t)) => t < f,
            _ => false,
        };
        if !ok {
            out.push((from.clone(), to, path.join("::")));
        }
    }
    out
}

/// Kinds use the step API and lower layers, not each other: `steps/<kind>.rs` may name
/// `steps::api`, the registry module (`super::{Step, …}`) and nothing else in `steps`.
fn kind_violations(rel: &Path, text: &str) -> Vec<String> {
    let module = module_path(rel);
    if module.len() != 2 || module[0] != "steps" {
        return Vec::new();
    }
    referenced_paths(&module, &non_test_code(text))
        .into_iter()
        .filter(|p| {
            p.len() >= 3
                && p[0] == "steps"
                && p[1] != "api"
                && p[1] != module[1]
                && crate_kind_module(&p[1])
        })
        .map(|p| format!("{} imports {}", rel.display(), p.join("::")))
        .collect()
}

/// A child module of `steps` (a kind or `schema`), as opposed to an item of `steps/mod.rs`.
fn crate_kind_module(name: &str) -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/steps")
        .join(format!("{name}.rs"))
        .is_file()
}

/// The node graph the non-test code of `src` draws (`from → to`), and its cycles: what the
/// layers rule out, drawn for a tree that may predate them (to compare two commits).
fn import_graph(src: &Path) -> (BTreeMap<String, BTreeSet<String>>, Vec<Vec<String>>) {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let (Ok(rel), Ok(text)) = (f.strip_prefix(src), std::fs::read_to_string(f)) else {
            continue;
        };
        if rel == Path::new("layers.rs") {
            continue;
        }
        let module = module_path(rel);
        let from = node_of(&module);
        for path in referenced_paths(&module, &non_test_code(&text)) {
            let to = node_of(&path);
            if to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let mut graph = petgraph::graphmap::DiGraphMap::<&str, ()>::new();
    for (from, tos) in &edges {
        for to in tos {
            graph.add_edge(from.as_str(), to.as_str(), ());
        }
    }
    let cycles = petgraph::algo::tarjan_scc(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|mut c| {
            c.sort_unstable();
            c.into_iter().map(str::to_string).collect()
        })
        .collect();
    (edges, cycles)
}

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            source_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn every_import_points_down_the_layers() {
        let mut files = Vec::new();
        source_files(&src(), &mut files);
        assert!(
            files.len() > 50,
            "found only {} files under src/",
            files.len()
        );
        let mut bad = Vec::new();
        for f in &files {
            let rel = f.strip_prefix(src()).unwrap();
            // This file is test code (and spells `crate::` in its strings).
            if rel == Path::new("layers.rs") {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for (from, to, path) in violations(rel, &text) {
                bad.push(format!(
                    "{}: {from} → {to} (`crate::{path}`)",
                    rel.display()
                ));
            }
            bad.extend(kind_violations(rel, &text));
        }
        assert!(
            bad.is_empty(),
            "imports against the layers:\n{}",
            bad.join("\n")
        );
    }

    /// Prints the import graph (`--nocapture`); `TTPLAN_GRAPH_SRC=<dir>` draws another tree,
    /// e.g. an old commit's `git archive <rev> src | tar -x -C /tmp/old`.
    #[test]
    fn the_import_graph_has_no_cycle() {
        let dir = std::env::var_os("TTPLAN_GRAPH_SRC").map_or_else(src, Into::into);
        let (edges, cycles) = import_graph(&dir);
        let count: usize = edges.values().map(BTreeSet::len).sum();
        println!("import graph of {}:", dir.display());
        for (from, tos) in &edges {
            let tos: Vec<&str> = tos.iter().map(String::as_str).collect();
            println!("  {from:<12} → {}", tos.join(", "));
        }
        println!("{count} edges, {} cycle(s) {cycles:?}", cycles.len());
        assert!(count > 10, "{count} edges: not a source tree?");
        assert!(cycles.is_empty(), "cycles among: {cycles:?}");
    }

    #[test]
    fn a_cycle_in_the_import_graph_is_found() {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [
            ("plan/mod.rs", "use crate::steps::KINDS;\n"),
            ("steps/mod.rs", "use crate::engine::Executor;\n"),
            (
                "engine/mod.rs",
                "use crate::plan::Plan;\nuse crate::diag::PlanDiag;\n",
            ),
        ] {
            let p = dir.path().join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let (edges, cycles) = import_graph(dir.path());
        assert_eq!(
            edges["engine"],
            BTreeSet::from(["plan".into(), "diag".into()])
        );
        assert_eq!(cycles, vec![vec!["engine", "plan", "steps"]]);
    }

    #[test]
    fn an_upward_import_is_reported() {
        let v = violations(
            Path::new("plan/validate.rs"),
            "use crate::diag::PlanDiag;\nuse crate::steps::{self, KINDS};\n",
        );
        assert_eq!(
            v,
            vec![
                ("plan".into(), "steps".into(), "steps".into()),
                ("plan".into(), "steps".into(), "steps::KINDS".into()),
            ]
        );
        // The step API may not reach the engine, even through `super::super`.
        let v = violations(
            Path::new("steps/api/ctx.rs"),
            "use super::super::super::engine::executor::Executor;\nuse super::faults::FaultLedger;\n",
        );
        assert_eq!(
            v,
            vec![(
                "steps::api".into(),
                "engine".into(),
                "engine::executor::Executor".into()
            )]
        );
    }

    #[test]
    fn groups_super_and_tests_are_read_as_rust_does() {
        let paths = referenced_paths(
            &module_path(Path::new("steps/shell.rs")),
            &non_test_code(
                "use super::api::command_env::{now, run_env};\nuse crate::{kube::{Kube, names}, diag};\n// crate::engine in a comment\nlet x = crate::exit::SUCCESS;\n#[cfg(test)]\nmod tests {\n use crate::commands;\n fn f() { }\n}\nuse crate::git;\n",
            ),
        );
        let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
        assert_eq!(
            joined,
            [
                "steps::api::command_env::now",
                "steps::api::command_env::run_env",
                "kube::Kube",
                "kube::names",
                "diag",
                "exit::SUCCESS",
                "git"
            ]
        );
        assert_eq!(node_of(&paths[5]), "root");
        assert_eq!(node_of(&paths[0]), "steps::api");
    }

    #[test]
    fn a_kind_using_another_kinds_helper_is_reported() {
        let v = kind_violations(
            Path::new("steps/api_driver.rs"),
            "use super::shell::run_env;\nuse super::{Step, StepCtx};\nuse super::api::process::Spawn;\n",
        );
        assert_eq!(
            v,
            vec!["steps/api_driver.rs imports steps::shell::run_env".to_string()]
        );
    }
}
