//! `ttplan graph`: a plan's DAG as Mermaid or Graphviz dot.

use std::fmt::Write as _;
use std::path::Path;

use chrono::Utc;

use super::load;
use crate::cli::GraphFormat;
use crate::exit;
use crate::steps::Plan;

pub(super) fn run(path: &Path, format: GraphFormat, sets: &[String]) -> u8 {
    match load(path, sets, Utc::now(), "dataset".as_ref()) {
        Ok(p) => {
            crate::out(&graph(&p, format));
            exit::SUCCESS
        }
        Err(code) => code,
    }
}

fn graph(plan: &Plan, format: GraphFormat) -> String {
    let mut s = String::new();
    // Mermaid ids must be plain words, and `a-b` / `a_b` must stay apart: number the steps.
    let id = |n: &str| format!("s{}", plan.steps.get_index_of(n).unwrap_or(usize::MAX));
    match format {
        GraphFormat::Mermaid => {
            s.push_str("flowchart TD\n");
            for (name, step) in &plan.steps {
                let always = if step.common.always { " · always" } else { "" };
                let _ = writeln!(
                    s,
                    "  {}[\"{name}<br/>{}{always}\"]",
                    id(name),
                    step.common.kind
                );
            }
            for (a, b) in plan.dag.edges() {
                let arrow = if plan.steps[b].common.always {
                    "-.->"
                } else {
                    "-->"
                };
                let _ = writeln!(s, "  {} {arrow} {}", id(a), id(b));
            }
        }
        GraphFormat::Dot => {
            let _ = writeln!(s, "digraph \"{}\" {{", plan.name.replace('"', "\\\""));
            s.push_str("  rankdir=TB;\n  node [shape=box];\n");
            for (name, step) in &plan.steps {
                let style = if step.common.always {
                    ", style=dashed"
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "  \"{name}\" [label=\"{name}\\n{}\"{style}];",
                    step.common.kind
                );
            }
            for (a, b) in plan.dag.edges() {
                let _ = writeln!(s, "  \"{a}\" -> \"{b}\";");
            }
            s.push_str("}\n");
        }
    }
    s
}
