//! `steps:`: each step's common fields and kind, its load-time templates rendered (runtime
//! references deferred to step start) and its kind's own checks.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::diags::{node_error_diag, template_diag, undefined_diag};
use crate::diag::{did_you_mean, Code, PlanDiag, PlanErrors, Span};
use crate::plan::kinds::{KindChecks, Kinds};
use crate::plan::model::StepCommon;
use crate::plan::node::{Entry, Map, Node, Value};
use crate::plan::node_de::from_node;
use crate::plan::template::{Templates, RUNTIME_ROOTS};
use crate::plan::PlanStep;

pub(super) fn valid_step_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn read_steps<K: Kinds + ?Sized>(
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

pub(super) fn read_step<K: Kinds + ?Sized>(
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
    let (common_node, fields) = render_fields(node, map, t, jctx, &mut deferred, errs);
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
    let (kind, kind_name) = read_kind(name, key_span, map, kinds, errs)?;
    let step = parse_kind(name, kind, kind_name, &fields, kinds, n_before, errs)?;
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

/// The step's fields rendered at load time, split into the common fields and the kind's own
/// (both as mappings spanning the step). `kind` and `after` are kept as written; strings that
/// read steps.*/run.* wait for step start and set `deferred`.
fn render_fields(
    node: &Node,
    map: &Map,
    t: &Templates,
    jctx: &minijinja::Value,
    deferred: &mut bool,
    errs: &mut PlanErrors,
) -> (Node, Node) {
    let mut common_map = Map::new();
    let mut fields_map = Map::new();
    for (k, e) in map {
        let is_common = StepCommon::FIELDS.contains(&k.as_str());
        let value = if k == "kind" || k == "after" {
            e.value.clone()
        } else {
            render_load_time(&e.value, t, jctx, deferred, errs)
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
    (
        Node::new(node.span.clone(), Value::Map(common_map)),
        Node::new(node.span.clone(), Value::Map(fields_map)),
    )
}

/// The step's `kind`, checked against the registry: (the registry's name, as written).
fn read_kind<'m, K: Kinds + ?Sized>(
    name: &str,
    key_span: &Span,
    map: &'m Map,
    kinds: &K,
    errs: &mut PlanErrors,
) -> Option<(&'static str, &'m str)> {
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
    match kinds.name_of(kind_name) {
        Some(k) => Some((k, kind_name)),
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
            None
        }
    }
}

/// The kind's config parsed from the rendered fields. A field whose template failed (an error
/// since `n_before`) stays unrendered; its parse error would repeat the problem, so it is not
/// reported again.
fn parse_kind<K: Kinds + ?Sized>(
    name: &str,
    kind: &'static str,
    kind_name: &str,
    fields: &Node,
    kinds: &K,
    n_before: usize,
    errs: &mut PlanErrors,
) -> Option<K::Step> {
    let template_errors: Vec<usize> = errs.diags[n_before..]
        .iter()
        .filter_map(|d| d.span.as_ref().map(|s| s.start))
        .collect();
    match kinds.parse(kind, fields)? {
        Ok(s) => Some(s),
        Err(e) => {
            if !e
                .span
                .as_ref()
                .is_some_and(|s| template_errors.contains(&s.start))
            {
                errs.push(node_error_diag(
                    e,
                    StepCommon::FIELDS,
                    &format!("step `{name}` ({kind_name})"),
                ));
            }
            None
        }
    }
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
