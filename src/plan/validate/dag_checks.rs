//! Checks on the order of steps: `after` names real steps and makes no cycle; steps named in
//! kind fields (`recover.faults`, a probe's `until`) and in `steps.X.*` templates run first.

use indexmap::IndexMap;

use super::steps::valid_step_name;
use crate::diag::{did_you_mean, Code, PlanDiag, PlanErrors};
use crate::plan::dag::Dag;
use crate::plan::kinds::KindChecks;
use crate::plan::node::{Entry, Node, Value};
use crate::plan::template::Templates;
use crate::plan::PlanStep;

/// The graph of the declared steps, with every problem of order reported: `after` naming
/// missing steps or making cycles, and steps read or named before they run.
pub(super) fn checked_dag<S: KindChecks>(
    steps_node: Option<&Entry>,
    steps: &IndexMap<String, PlanStep<S>>,
    templates: &Templates,
    errs: &mut PlanErrors,
) -> Dag {
    // The graph comes from every declared step, parsed or not, so cycles and missing names
    // are reported even for steps with other errors.
    let declared = declared_after(steps_node);
    let dag = Dag::build(declared.iter().map(|(n, a)| (n.as_str(), a.as_slice())));
    check_after(steps_node, &declared, errs);
    check_cycles(steps_node, &dag, errs);
    check_runtime_refs(steps_node, &dag, templates, errs);
    check_step_refs(steps, &dag, errs);
    check_watched_steps(steps, &dag, errs);
    dag
}

/// Spans of each `after` entry, by step.
fn after_entries<'a>(steps_node: Option<&'a Entry>, step: &str) -> Vec<&'a Node> {
    let after = steps_node
        .and_then(|e| e.value.get(step))
        .and_then(|s| s.get("after"));
    match after.map(|a| &a.value) {
        Some(Value::Seq(items)) => items.iter().collect(),
        Some(Value::Str(_)) => after.into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Every declared step (with a valid name) and the names in its `after`.
fn declared_after(steps_node: Option<&Entry>) -> IndexMap<String, Vec<String>> {
    let Some(map) = steps_node.and_then(|e| e.value.as_map()) else {
        return IndexMap::new();
    };
    map.keys()
        .filter(|n| valid_step_name(n))
        .map(|n| {
            let after = after_entries(steps_node, n)
                .into_iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            (n.clone(), after)
        })
        .collect()
}

fn check_after(
    steps_node: Option<&Entry>,
    declared: &IndexMap<String, Vec<String>>,
    errs: &mut PlanErrors,
) {
    let all_names: Vec<&str> = declared.keys().map(String::as_str).collect();
    for name in declared.keys() {
        for dep in after_entries(steps_node, name) {
            let Some(d) = dep.as_str() else { continue };
            if d == name {
                errs.push(
                    PlanDiag::new(
                        Code::Cycle,
                        format!("step `{d}` cannot run after itself"),
                        Some(&dep.span),
                    )
                    .label("itself"),
                );
            } else if !all_names.contains(&d) {
                errs.push(
                    PlanDiag::new(
                        Code::UnknownStep,
                        format!("step `{name}` runs after `{d}`, which is not a step"),
                        Some(&dep.span),
                    )
                    .label("no such step")
                    .help(
                        did_you_mean(d, all_names.iter().copied())
                            .unwrap_or_else(|| format!("steps: {}", all_names.join(", "))),
                    ),
                );
            }
        }
    }
}

fn check_cycles(steps_node: Option<&Entry>, dag: &Dag, errs: &mut PlanErrors) {
    for cycle in dag.cycles() {
        if cycle.len() == 2 {
            continue; // a self-loop, reported by check_after
        }
        // cycle = [a, b, c, a]: a runs after b, b after c, c after a.
        let span_of = |from: &str, to: &str| {
            after_entries(steps_node, from)
                .into_iter()
                .find(|n| n.as_str() == Some(to))
                .map(|n| n.span.clone())
        };
        let Some(first) = span_of(&cycle[0], &cycle[1]) else {
            continue;
        };
        let mut d = PlanDiag::new(
            Code::Cycle,
            format!(
                "steps wait for each other in a cycle: {}",
                cycle.join(" → ")
            ),
            Some(&first),
        )
        .label(format!("`{}` runs after `{}`", cycle[0], cycle[1]))
        .help("each arrow reads \"runs after\"; remove one of these `after` entries");
        for pair in cycle.windows(2).skip(1) {
            if let Some(s) = span_of(&pair[0], &pair[1]) {
                d = d.related(&s, format!("`{}` runs after `{}`", pair[0], pair[1]));
            }
        }
        errs.push(d);
    }
}

/// Steps named in a kind's fields (`recover.faults`) exist and run first.
fn check_step_refs<S: KindChecks>(
    steps: &IndexMap<String, PlanStep<S>>,
    dag: &Dag,
    errs: &mut PlanErrors,
) {
    for step in steps.values() {
        let Some((field, names)) = step.step.referenced_steps() else {
            continue;
        };
        let ancestors = dag.ancestors(&step.name);
        let items: Vec<&Node> = match step.fields.get(field) {
            Some(Node {
                value: Value::Seq(items),
                ..
            }) => items.iter().collect(),
            Some(
                n @ Node {
                    value: Value::Str(_),
                    ..
                },
            ) => vec![n],
            _ => Vec::new(),
        };
        for (i, name) in names.iter().enumerate() {
            let span = items.get(i).map_or(&step.span, |n| &n.span);
            if !steps.contains_key(name) && !dag.names().any(|n| n == name) {
                errs.push(
                    PlanDiag::new(
                        Code::UnknownStep,
                        format!(
                            "step `{}` names `{name}` in `{field}`, which is not a step",
                            step.name
                        ),
                        Some(span),
                    )
                    .label("no such step")
                    .help_opt(did_you_mean(name, dag.names())),
                );
            } else if !ancestors.contains(name) {
                errs.push(
                    PlanDiag::new(
                        Code::Runtime,
                        format!(
                            "step `{}` names `{name}` in `{field}` but does not run after it",
                            step.name
                        ),
                        Some(span),
                    )
                    .label("not upstream")
                    .help(format!(
                        "add `{name}` to the `after` list of `{}`",
                        step.name
                    )),
                );
            }
        }
    }
}

/// A step a running step waits for (a continuous probe's `until`) exists and does not run
/// after it — else the probe would wait forever.
fn check_watched_steps<S: KindChecks>(
    steps: &IndexMap<String, PlanStep<S>>,
    dag: &Dag,
    errs: &mut PlanErrors,
) {
    for step in steps.values() {
        let Some((field, name)) = step.step.watched_step() else {
            continue;
        };
        let span = step.fields.get(field).map_or(&step.span, |n| &n.span);
        if !dag.names().any(|n| n == name) {
            errs.push(
                PlanDiag::new(
                    Code::UnknownStep,
                    format!(
                        "step `{}` names `{name}` in `{field}`, which is not a step",
                        step.name
                    ),
                    Some(span),
                )
                .label("no such step")
                .help_opt(did_you_mean(name, dag.names())),
            );
        } else if name == step.name || dag.ancestors(name).contains(&step.name) {
            errs.push(
                PlanDiag::new(
                    Code::Cycle,
                    format!(
                        "step `{}` waits in `{field}` for `{name}`, which runs after it: it would wait forever",
                        step.name
                    ),
                    Some(span),
                )
                .label("runs after this step")
                .help(format!("name a step that does not depend on `{}`", step.name)),
            );
        }
    }
}

/// A field may read `steps.X.*` only when X finishes before the step starts.
fn check_runtime_refs(steps_node: Option<&Entry>, dag: &Dag, t: &Templates, errs: &mut PlanErrors) {
    let Some(map) = steps_node.and_then(|e| e.value.as_map()) else {
        return;
    };
    for (name, entry) in map {
        let Some(fields) = entry.value.as_map() else {
            continue;
        };
        let ancestors = dag.ancestors(name);
        for (key, field) in fields {
            if key == "kind" || key == "after" {
                continue;
            }
            field.value.visit_strings(&mut |n, s| {
                if !Templates::is_template(s) {
                    return;
                }
                let Ok(names) = t.referenced_names(s) else { return };
                for full in names {
                    let mut parts = full.split('.');
                    if parts.next() != Some("steps") {
                        continue;
                    }
                    let Some(target) = parts.next() else { continue };
                    if !map.contains_key(target) {
                        errs.push(
                            PlanDiag::new(Code::UnknownStep, format!("`{full}`: there is no step `{target}`"), Some(&n.span))
                                .label("in this template")
                                .help_opt(did_you_mean(target, map.keys().map(String::as_str))),
                        );
                    } else if !ancestors.contains(target) {
                        errs.push(
                            PlanDiag::new(
                                Code::Runtime,
                                format!("step `{name}` reads `{full}` but does not run after `{target}`"),
                                Some(&n.span),
                            )
                            .label("read before it is known")
                            .help(format!("add `{target}` to the `after` list of `{name}`")),
                        );
                    }
                    if let Some(field) = parts.next() {
                        if !["started_at", "finished_at", "outputs", "status", "attempts"].contains(&field) {
                            errs.push(
                                PlanDiag::new(Code::Runtime, format!("`{full}`: steps have no `{field}`"), Some(&n.span))
                                    .label("in this template")
                                    .help("available: started_at, finished_at, status, attempts, outputs.<key>"),
                            );
                        }
                    }
                }
            });
        }
    }
}
