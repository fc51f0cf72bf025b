//! From a merged plan document to a [`Plan`], collecting every problem on the way:
//! unknown fields and kinds, bad values, `after` naming missing steps, cycles, undefined
//! template names and runtime references to steps that do not run first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::dag::Dag;
use super::kinds::{KindChecks, Kinds};
use super::load::{load_files, Loaded};
use super::model::{StepCommon, TOP_LEVEL_FIELDS};
use super::node::{Entry, Map, Node, Value};
use super::node_de::{from_node, NodeError};
use super::template::{describe_error, Templates, RUNTIME_ROOTS};
use super::{LoadOptions, Plan, PlanStep};
use crate::diag::{did_you_mean, Code, PlanDiag, PlanErrors, SourceFile, Span};

/// Loads, renders and validates a plan.
///
/// # Errors
/// Every problem found, each with its location.
pub fn load_plan<K: Kinds + ?Sized>(
    path: &Path,
    opts: &LoadOptions,
    kinds: &K,
) -> Result<Plan<K::Step>, PlanErrors> {
    build_plan(load_files(path)?, path, opts, kinds)
}

/// A plan from a merged document that was stored earlier (a manifest's `plan.document`):
/// `plan_file` is where the plan was, so `plan_dir` and relative paths resolve as they did.
///
/// # Errors
/// Every problem found, each located in the stored document.
pub fn load_plan_document<K: Kinds + ?Sized>(
    document: &serde_json::Value,
    display: &str,
    plan_file: &Path,
    opts: &LoadOptions,
    kinds: &K,
) -> Result<Plan<K::Step>, PlanErrors> {
    let text = serde_json::to_string_pretty(document).unwrap_or_default();
    let file = SourceFile::new(display, Some(plan_file.to_path_buf()), text);
    let root = Node::from_json(&Span::new(&file, 0, file.text.len()), document);
    build_plan(
        Loaded {
            root,
            files: vec![file],
        },
        plan_file,
        opts,
        kinds,
    )
}

fn build_plan<K: Kinds + ?Sized>(
    loaded: Loaded,
    path: &Path,
    opts: &LoadOptions,
    kinds: &K,
) -> Result<Plan<K::Step>, PlanErrors> {
    let mut errs = PlanErrors::default();
    let root = loaded.root;
    // What `ttplan rerun` renders again: the merged document, its `extends` already applied.
    let mut document = root.to_json();
    if let Some(m) = document.as_object_mut() {
        m.remove("extends");
    }
    let Value::Map(top) = &root.value else {
        return Err(PlanDiag::new(
            Code::InvalidValue,
            "a plan must be a mapping",
            Some(&root.span),
        )
        .into());
    };
    for (key, entry) in top {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            errs.push(unknown_field_diag(
                key,
                Some(&entry.key_span),
                TOP_LEVEL_FIELDS.iter().copied(),
                "plan",
            ));
        }
    }
    let plan_file = loaded.files[0]
        .path
        .clone()
        .unwrap_or_else(|| path.to_path_buf());
    let plan_dir = std::path::absolute(plan_file.parent().unwrap_or(Path::new(".")))
        .unwrap_or_else(|_| PathBuf::from("."));

    let name = match top.get("name").map(|e| &e.value) {
        Some(n) => match n.as_str() {
            Some(s) if !s.trim().is_empty() => s.to_string(),
            _ => {
                errs.push(PlanDiag::new(
                    Code::InvalidValue,
                    "`name` must be a non-empty string",
                    Some(&n.span),
                ));
                String::new()
            }
        },
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let description = top
        .get("description")
        .and_then(|e| e.value.as_str())
        .map(str::to_string);
    let sources = read_sources(top.get("sources"), &plan_dir, &mut errs);

    let templates = Templates::new(opts.now);
    let mut ctx: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    ctx.insert("name".into(), name.clone().into());
    ctx.insert("run_id".into(), opts.run_id.clone().into());
    ctx.insert("plan_dir".into(), plan_dir.display().to_string().into());
    let out_dir = std::path::absolute(&opts.out_dir).unwrap_or_else(|_| opts.out_dir.clone());
    ctx.insert("out_dir".into(), out_dir.display().to_string().into());

    let declared = read_vars(top.get("vars"), &opts.sets, &mut errs);
    let vars = resolve_vars(declared, &templates, &mut ctx, &mut errs);
    let exp_name = vars
        .get("exp_name")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(n) = vars.get("exp_name") {
        check_exp_name(n, &mut errs);
    }

    let steps = read_steps(
        top.get("steps"),
        &root.span,
        &templates,
        &ctx,
        kinds,
        &mut errs,
    );
    // The graph comes from every declared step, parsed or not, so cycles and missing names
    // are reported even for steps with other errors.
    let declared = declared_after(top.get("steps"));
    let dag = Dag::build(declared.iter().map(|(n, a)| (n.as_str(), a.as_slice())));
    check_after(top.get("steps"), &declared, &mut errs);
    check_cycles(top.get("steps"), &dag, &mut errs);
    check_runtime_refs(top.get("steps"), &dag, &templates, &mut errs);
    check_step_refs(&steps, &dag, &mut errs);
    check_watched_steps(&steps, &dag, &mut errs);
    super::check_files::check_named_files(&steps, &plan_dir, &loaded.files[0], &mut errs);
    let warnings = steps
        .values()
        .flat_map(|s| super::deprecated::warnings(s.kind, &s.fields))
        .collect();
    let hypothesis = read_hypothesis(top.get("hypothesis"), &templates, &ctx, kinds, &mut errs);

    errs.into_result(Plan {
        path: path.to_path_buf(),
        plan_dir,
        files: loaded.files,
        document,
        name,
        description,
        exp_name,
        vars,
        sources,
        steps,
        hypothesis,
        dag,
        templates,
        context: ctx,
        warnings,
    })
}

fn unknown_field_diag<'a>(
    key: &str,
    span: Option<&Span>,
    known: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> PlanDiag {
    let known: Vec<&str> = known.into_iter().collect();
    PlanDiag::new(
        Code::UnknownField,
        format!("unknown field `{key}` in {what}"),
        span,
    )
    .label("not a known field")
    .help(
        did_you_mean(key, known.iter().copied())
            .unwrap_or_else(|| format!("known fields: {}", known.join(", "))),
    )
}

fn node_error_diag(e: NodeError, extra_fields: &[&str], what: &str) -> PlanDiag {
    let span = e.span.clone();
    if let Some((field, expected)) = &e.unknown_field {
        let known = expected.iter().chain(extra_fields).copied();
        return unknown_field_diag(field, span.as_ref(), known, what);
    }
    let code = if e.missing_field {
        Code::MissingField
    } else {
        Code::InvalidValue
    };
    let label = if e.missing_field {
        "in this mapping"
    } else {
        "this value"
    };
    PlanDiag::new(code, format!("{}: {}", what, e.message), span.as_ref()).label(label)
}

fn read_sources(
    node: Option<&Entry>,
    plan_dir: &Path,
    errs: &mut PlanErrors,
) -> IndexMap<String, PathBuf> {
    let mut out = IndexMap::new();
    let Some(entry) = node else { return out };
    match from_node::<IndexMap<String, PathBuf>>(&entry.value) {
        Ok(m) => {
            for (k, p) in m {
                out.insert(k, plan_dir.join(p));
            }
        }
        Err(e) => errs.push(node_error_diag(e, &[], "`sources` (name: path)")),
    }
    out
}

/// Declared vars with `--set` applied. `--set` values are strings (`--set cmd=true` must not
/// turn a command into a boolean); fields that need numbers accept numeric strings.
fn read_vars(
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
fn resolve_vars(
    declared: IndexMap<String, Node>,
    t: &Templates,
    ctx: &mut BTreeMap<String, serde_json::Value>,
    errs: &mut PlanErrors,
) -> IndexMap<String, Node> {
    // Which vars each var reads.
    let mut deps: IndexMap<String, BTreeSet<String>> = IndexMap::new();
    let mut broken: BTreeSet<String> = BTreeSet::new();
    for (name, node) in &declared {
        let mut reads = BTreeSet::new();
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
                            broken.insert(name.clone());
                        } else if !Templates::is_builtin_name(&root) {
                            errs.push(undefined_diag(&root, &n.span, declared.keys().map(String::as_str)));
                            broken.insert(name.clone());
                        }
                    }
                }
                Err(e) => {
                    errs.push(template_diag(&e, &n.span));
                    broken.insert(name.clone());
                }
            }
        });
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
            let jctx = minijinja::Value::from_serialize(&*ctx);
            let mut failed = false;
            let rendered = declared[name]
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
                .unwrap_or_else(|()| declared[name].clone());
            if failed {
                broken.insert(name.clone());
            } else {
                ctx.insert(name.clone(), rendered.to_json());
                resolved.insert(name.clone(), rendered);
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

fn undefined_diag<'a>(name: &str, span: &Span, vars: impl Iterator<Item = &'a str>) -> PlanDiag {
    let candidates: Vec<&str> = vars
        .chain(super::template::BUILTIN_NAMES.iter().copied())
        .chain(RUNTIME_ROOTS.iter().copied())
        .collect();
    PlanDiag::new(Code::UndefinedVariable, format!("undefined variable `{name}`"), Some(span))
        .label("used in this template")
        .help(did_you_mean(name, candidates.iter().copied()).unwrap_or_else(|| {
            "declare it under `vars:`, or pass it with --set; built-ins: name, run_id, exp_name, plan_dir, out_dir, now_utc(fmt), env(name, default)".into()
        }))
}

fn template_diag(e: &minijinja::Error, span: &Span) -> PlanDiag {
    let code = if e.kind() == minijinja::ErrorKind::UndefinedError {
        Code::UndefinedVariable
    } else {
        Code::Template
    };
    PlanDiag::new(code, describe_error(e), Some(span)).label("in this template")
}

fn check_exp_name(n: &Node, errs: &mut PlanErrors) {
    let s = n.as_str().unwrap_or_default();
    let bad = s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\', '\0']);
    if bad {
        errs.push(
            PlanDiag::new(
                Code::InvalidValue,
                format!("exp_name `{s}` cannot be used as a folder name"),
                Some(&n.span),
            )
            .label("exp_name")
            .help("use letters, digits, `_`, `-` and `.` (no `/`)"),
        );
    }
}

fn valid_step_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn read_steps<K: Kinds + ?Sized>(
    node: Option<&Entry>,
    root_span: &Span,
    t: &Templates,
    ctx: &BTreeMap<String, serde_json::Value>,
    kinds: &K,
    errs: &mut PlanErrors,
) -> IndexMap<String, PlanStep<K::Step>> {
    let mut out = IndexMap::new();
    let Some(entry) = node else {
        errs.push(
            PlanDiag::new(
                Code::MissingField,
                "the plan has no `steps`",
                Some(root_span),
            )
            .label("in this plan"),
        );
        return out;
    };
    let Value::Map(map) = &entry.value.value else {
        errs.push(PlanDiag::new(
            Code::InvalidValue,
            format!(
                "`steps` must be a mapping of step name to step, found {}",
                entry.value.type_name()
            ),
            Some(&entry.value.span),
        ));
        return out;
    };
    let jctx = minijinja::Value::from_serialize(ctx);
    for (name, e) in map {
        if !valid_step_name(name) {
            errs.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    format!("step name `{name}` may only use letters, digits, `_` and `-`"),
                    Some(&e.key_span),
                )
                .label("step name"),
            );
            continue;
        }
        if let Some(step) = read_step(name, &e.key_span, &e.value, t, &jctx, kinds, errs) {
            out.insert(name.clone(), step);
        }
    }
    out
}

fn read_step<K: Kinds + ?Sized>(
    name: &str,
    key_span: &Span,
    node: &Node,
    t: &Templates,
    jctx: &minijinja::Value,
    kinds: &K,
    errs: &mut PlanErrors,
) -> Option<PlanStep<K::Step>> {
    let Value::Map(map) = &node.value else {
        errs.push(PlanDiag::new(
            Code::InvalidValue,
            format!(
                "step `{name}` must be a mapping with a `kind`, found {}",
                node.type_name()
            ),
            Some(&node.span),
        ));
        return None;
    };
    let what = format!("step `{name}`");
    let n_before = errs.len();
    let mut deferred = false;
    // Render everything but the structural fields; strings that read steps.*/run.* wait.
    let mut common_map = Map::new();
    let mut fields_map = Map::new();
    for (k, e) in map {
        let is_common = StepCommon::FIELDS.contains(&k.as_str());
        let value = if k == "kind" || k == "after" {
            e.value.clone()
        } else {
            render_load_time(&e.value, t, jctx, &mut deferred, errs)
        };
        let target = if is_common {
            &mut common_map
        } else {
            &mut fields_map
        };
        target.insert(
            k.clone(),
            Entry {
                key_span: e.key_span.clone(),
                value,
            },
        );
    }
    let common_node = Node::new(node.span.clone(), Value::Map(common_map));
    let fields = Node::new(node.span.clone(), Value::Map(fields_map));
    let common = match from_node::<StepCommon>(&common_node) {
        Ok(c) => Some(c),
        Err(e) => {
            // A missing `kind` is reported just below, with the list of kinds.
            if !e.missing_field || map.contains_key("kind") {
                errs.push(node_error_diag(e, &[], &what));
            }
            None
        }
    };
    let Some(kind_node) = map.get("kind").map(|e| &e.value) else {
        errs.push(
            PlanDiag::new(
                Code::MissingField,
                format!("step `{name}` has no `kind`"),
                Some(key_span),
            )
            .label("this step")
            .help(format!("kinds: {}", kinds.names().join(", "))),
        );
        return None;
    };
    let Some(kind_name) = kind_node.as_str() else {
        errs.push(PlanDiag::new(
            Code::InvalidValue,
            "`kind` must be a string",
            Some(&kind_node.span),
        ));
        return None;
    };
    let kind = match kinds.name_of(kind_name) {
        Some(k) => k,
        None => {
            errs.push(
                PlanDiag::new(
                    Code::UnknownKind,
                    format!("unknown step kind `{kind_name}`"),
                    Some(&kind_node.span),
                )
                .label("not a step kind")
                .help(
                    did_you_mean(kind_name, kinds.names())
                        .unwrap_or_else(|| format!("kinds: {}", kinds.names().join(", "))),
                ),
            );
            return None;
        }
    };
    // A field whose template failed stays unrendered; its parse error would repeat the problem.
    let template_errors: Vec<usize> = errs.diags[n_before..]
        .iter()
        .filter_map(|d| d.span.as_ref().map(|s| s.start))
        .collect();
    let step = match kinds.parse(kind, &fields) {
        Some(Ok(s)) => s,
        None => return None,
        Some(Err(e)) => {
            if e.span
                .as_ref()
                .is_some_and(|s| template_errors.contains(&s.start))
            {
                return None;
            }
            errs.push(node_error_diag(
                e,
                StepCommon::FIELDS,
                &format!("step `{name}` ({kind_name})"),
            ));
            return None;
        }
    };
    let mut diags = Vec::new();
    step.check(&fields, &mut diags);
    for d in diags {
        errs.push(d);
    }
    Some(PlanStep {
        name: name.to_string(),
        common: common?,
        kind,
        fields,
        step,
        deferred,
        span: key_span.clone(),
    })
}

fn render_load_time(
    node: &Node,
    t: &Templates,
    jctx: &minijinja::Value,
    deferred: &mut bool,
    errs: &mut PlanErrors,
) -> Node {
    node.map_strings(&mut |n, s| -> Result<Option<Node>, ()> {
        if !Templates::is_template(s) {
            return Ok(None);
        }
        let names = match t.referenced_names(s) {
            Ok(names) => names,
            Err(e) => {
                errs.push(template_diag(&e, &n.span));
                return Ok(None);
            }
        };
        let mut runtime = false;
        for full in &names {
            let root = full.split('.').next().unwrap_or(full);
            if RUNTIME_ROOTS.contains(&root) {
                runtime = true;
            } else if jctx.get_attr(root).is_ok_and(|v| !v.is_undefined())
                || Templates::is_builtin_name(root)
            {
                // known
            } else {
                let vars: Vec<String> = jctx
                    .try_iter()
                    .map(|it| it.map(|k| k.to_string()).collect())
                    .unwrap_or_default();
                errs.push(undefined_diag(
                    root,
                    &n.span,
                    vars.iter().map(String::as_str),
                ));
                return Ok(None);
            }
        }
        if runtime {
            *deferred = true;
            return Ok(None);
        }
        match t.render(n, s, jctx) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                errs.push(template_diag(&e, &n.span));
                Ok(None)
            }
        }
    })
    .unwrap_or_else(|()| node.clone())
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

/// `hypothesis:` — named probes, each a `probe` step without `kind`, checked at fixed points
/// (so no `after`, `mode: continuous`, `until` or `verifies`).
fn read_hypothesis<K: Kinds + ?Sized>(
    node: Option<&Entry>,
    t: &Templates,
    ctx: &BTreeMap<String, serde_json::Value>,
    kinds: &K,
    errs: &mut PlanErrors,
) -> IndexMap<String, PlanStep<K::Step>> {
    let mut out = IndexMap::new();
    let Some(entry) = node else { return out };
    let Value::Map(map) = &entry.value.value else {
        errs.push(
            PlanDiag::new(
                Code::InvalidValue,
                format!(
                    "`hypothesis` must be a mapping of probe name to probe, found {}",
                    entry.value.type_name()
                ),
                Some(&entry.value.span),
            )
            .help("e.g. `hypothesis: { pods_ready: { type: kubernetes, ready: all } }`"),
        );
        return out;
    };
    let jctx = minijinja::Value::from_serialize(ctx);
    for (name, e) in map {
        let Value::Map(fields) = &e.value.value else {
            errs.push(PlanDiag::new(
                Code::InvalidValue,
                format!("hypothesis probe `{name}` must be a mapping with a `type`"),
                Some(&e.value.span),
            ));
            continue;
        };
        const NOT_HERE: &[&str] = &[
            "kind",
            "after",
            "mode",
            "until",
            "until_event",
            "require",
            "verifies",
        ];
        let mut fields = fields.clone();
        for (k, f) in &fields {
            if NOT_HERE.contains(&k.as_str()) {
                errs.push(
                    PlanDiag::new(
                        Code::UnknownField,
                        format!("hypothesis probe `{name}`: `{k}` does not apply"),
                        Some(&f.key_span),
                    )
                    .label("not for hypothesis probes")
                    .help("hypothesis probes run once, before the first fault and after the last recovery"),
                );
            }
        }
        // Reported above; parsing them again would only repeat the problem.
        fields.retain(|k, _| !NOT_HERE.contains(&k.as_str()));
        fields.insert(
            "kind".into(),
            Entry {
                key_span: e.key_span.clone(),
                value: Node::new(e.key_span.clone(), Value::Str("probe".into())),
            },
        );
        let node = Node::new(e.value.span.clone(), Value::Map(fields));
        if let Some(step) = read_step(name, &e.key_span, &node, t, &jctx, kinds, errs) {
            out.insert(name.clone(), step);
        }
    }
    out
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

/// A deferred step after its runtime references rendered.
pub struct RenderedStep<S> {
    pub env: IndexMap<String, String>,
    pub step: S,
}

/// Renders a deferred step's runtime references at step start and parses its kind again.
///
/// # Errors
/// A message naming the field that failed.
#[allow(clippy::type_complexity)] // (env, step): a named type would only be used here
pub fn render_at_start<K: Kinds + ?Sized>(
    plan: &Plan<K::Step>,
    step: &PlanStep<K::Step>,
    runtime: &BTreeMap<String, serde_json::Value>,
    kinds: &K,
) -> Result<RenderedStep<K::Step>, String> {
    let mut ctx = plan.context.clone();
    ctx.extend(runtime.clone());
    let jctx = minijinja::Value::from_serialize(&ctx);
    let render = |node: &Node| {
        node.map_strings(&mut |n, s| -> Result<Option<Node>, String> {
            if !Templates::is_template(s) {
                return Ok(None);
            }
            plan.templates
                .render(n, s, &jctx)
                .map(Some)
                .map_err(|e| format!("{}: {} in `{s}`", n.span.location(), describe_error(&e)))
        })
    };
    let fields = render(&step.fields)?;
    let env_node = Node::from_json(
        &step.span,
        &serde_json::to_value(&step.common.env).unwrap_or_default(),
    );
    let env: IndexMap<String, String> = from_node(&render(&env_node)?).map_err(|e| e.message)?;
    let parsed = kinds
        .parse(step.kind, &fields)
        .ok_or_else(|| format!("no step kind `{}`", step.kind))?
        .map_err(|e| {
            format!(
                "{}: {}",
                e.span.map(|s| s.location()).unwrap_or_default(),
                e.message
            )
        })?;
    // The same checks as at load time: a templated value must not slip past them at start.
    let mut diags = Vec::new();
    parsed.check(&fields, &mut diags);
    if let Some(d) = diags.first() {
        let at = d.span.as_ref().map(|s| s.location()).unwrap_or_default();
        return Err(format!("{at}: {}", d.message));
    }
    Ok(RenderedStep { env, step: parsed })
}
