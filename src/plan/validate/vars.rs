//! `vars:` and `--set`: reading them, then rendering them in dependency order.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use super::diags::{template_diag, undefined_diag};
use crate::diag::{did_you_mean, Code, PlanDiag, PlanErrors, SourceFile, Span};
use crate::plan::node::{Entry, Node, Value};
use crate::plan::template::{Templates, RUNTIME_ROOTS};

/// Declared vars with `--set` applied. `--set` values are strings (`--set cmd=true` must not
/// turn a command into a boolean); fields that need numbers accept numeric strings.
pub(super) fn read_vars(
    node: Option<&Entry>,
    sets: &[String],
    errs: &mut PlanErrors,
) -> IndexMap<String, Node> {
    let mut vars: IndexMap<String, Node> = IndexMap::new();
    if let Some(entry) = node {
        match &entry.value.value {
            Value::Map(m) => {
                for (k, e) in m {
                    vars.insert(k.clone(), e.value.clone());
                }
            }
            Value::Null => {}
            _ => errs.push(PlanDiag::new(
                Code::InvalidValue,
                format!(
                    "`vars` must be a mapping, found {}",
                    entry.value.type_name()
                ),
                Some(&entry.value.span),
            )),
        }
    }
    for set in sets {
        let file = SourceFile::new("--set", None, set.clone());
        let Some((key, value)) = set.split_once('=') else {
            errs.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    format!("`--set {set}`: expected key=value"),
                    Some(&Span::new(&file, 0, set.len())),
                )
                .label("no `=`"),
            );
            continue;
        };
        let key = key.trim();
        let span = Span::new(&file, key.len() + 1, value.len().max(1));
        if !vars.contains_key(key) && key != "exp_name" {
            errs.push(
                PlanDiag::new(
                    Code::UnknownField,
                    format!("`--set {key}=…`: the plan declares no var `{key}`"),
                    Some(&Span::new(&file, 0, key.len())),
                )
                .label("not a var of this plan")
                .help_opt(did_you_mean(key, vars.keys().map(String::as_str))),
            );
            continue;
        }
        vars.insert(
            key.to_string(),
            Node::new(span, Value::Str(value.to_string())),
        );
    }
    if !vars.contains_key("exp_name") {
        let text = "{{ name }}_{{ now_utc('%Y%m%dT%H%M%SZ') }}".to_string();
        let file = SourceFile::new("<default exp_name>", None, text.clone());
        vars.insert(
            "exp_name".into(),
            Node::new(Span::new(&file, 0, text.len()), Value::Str(text)),
        );
    }
    vars
}

/// Renders vars in dependency order; reports unknown names and cycles among vars.
pub(super) fn resolve_vars(
    declared: IndexMap<String, Node>,
    t: &Templates,
    ctx: &mut BTreeMap<String, serde_json::Value>,
    errs: &mut PlanErrors,
) -> IndexMap<String, Node> {
    // Which vars each var reads.
    let mut deps: IndexMap<String, BTreeSet<String>> = IndexMap::new();
    let mut broken: BTreeSet<String> = BTreeSet::new();
    for (name, node) in &declared {
        let (reads, ok) = var_reads(name, node, &declared, t, errs);
        if !ok {
            broken.insert(name.clone());
        }
        deps.insert(name.clone(), reads);
    }
    let mut resolved: IndexMap<String, Node> = IndexMap::new();
    let mut pending: Vec<String> = declared.keys().cloned().collect();
    loop {
        let before = pending.len();
        pending.retain(|name| {
            let ready = deps[name]
                .iter()
                .all(|d| resolved.contains_key(d) || broken.contains(d));
            if !ready {
                return true;
            }
            if broken.contains(name) || deps[name].iter().any(|d| broken.contains(d)) {
                broken.insert(name.clone());
                return false;
            }
            match render_var(&declared[name], t, ctx, errs) {
                Some(rendered) => {
                    ctx.insert(name.clone(), rendered.to_json());
                    resolved.insert(name.clone(), rendered);
                }
                None => {
                    broken.insert(name.clone());
                }
            }
            false
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    if !pending.is_empty() {
        let first = &pending[0];
        errs.push(
            PlanDiag::new(
                Code::Cycle,
                format!("vars read each other in a circle: {}", pending.join(", ")),
                Some(&declared[first].span),
            )
            .label("part of the circle"),
        );
    }
    // A var that failed was reported above; steps that read it must not call it undefined.
    for k in declared.keys().filter(|k| !resolved.contains_key(*k)) {
        ctx.entry(k.clone()).or_insert(serde_json::Value::Null);
    }
    // Keep declaration order.
    declared
        .keys()
        .filter_map(|k| resolved.shift_remove(k).map(|v| (k.clone(), v)))
        .collect()
}

/// The declared vars a var's templates read; `false` when one of its templates is broken
/// (reported here), reads a runtime name or an undefined one.
fn var_reads(
    name: &str,
    node: &Node,
    declared: &IndexMap<String, Node>,
    t: &Templates,
    errs: &mut PlanErrors,
) -> (BTreeSet<String>, bool) {
    let mut reads = BTreeSet::new();
    let mut ok = true;
    node.visit_strings(&mut |n, s| {
        if !Templates::is_template(s) {
            return;
        }
        match t.referenced_names(s) {
            Ok(names) => {
                for full in names {
                    let root = full.split('.').next().unwrap_or(&full).to_string();
                    if declared.contains_key(&root) {
                        reads.insert(root);
                    } else if RUNTIME_ROOTS.contains(&root.as_str()) {
                        errs.push(
                            PlanDiag::new(
                                Code::Runtime,
                                format!("var `{name}` reads `{full}`, which only exists while the run executes"),
                                Some(&n.span),
                            )
                            .label("runtime reference in a var")
                            .help("vars render before the run starts; read steps.*/run.* in step fields instead"),
                        );
                        ok = false;
                    } else if !Templates::is_builtin_name(&root) {
                        errs.push(undefined_diag(&root, &n.span, declared.keys().map(String::as_str)));
                        ok = false;
                    }
                }
            }
            Err(e) => {
                errs.push(template_diag(&e, &n.span));
                ok = false;
            }
        }
    });
    (reads, ok)
}

/// A var with its templates rendered against the vars resolved so far; `None` when one failed
/// (reported here).
fn render_var(
    node: &Node,
    t: &Templates,
    ctx: &BTreeMap<String, serde_json::Value>,
    errs: &mut PlanErrors,
) -> Option<Node> {
    let jctx = minijinja::Value::from_serialize(ctx);
    let mut failed = false;
    let rendered = node
        .map_strings(&mut |n, s| -> Result<Option<Node>, ()> {
            if !Templates::is_template(s) {
                return Ok(None);
            }
            match t.render(n, s, &jctx) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    errs.push(template_diag(&e, &n.span));
                    failed = true;
                    Ok(None)
                }
            }
        })
        .unwrap_or_else(|()| node.clone());
    (!failed).then_some(rendered)
}
