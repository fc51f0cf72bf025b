//! The diagnostics validation builds in several places: unknown fields, serde errors on a
//! node, undefined template names and template errors.

use crate::diag::{did_you_mean, Code, PlanDiag, Span};
use crate::plan::node_de::NodeError;
use crate::plan::template::{describe_error, BUILTIN_NAMES, RUNTIME_ROOTS};

pub(super) fn unknown_field_diag<'a>(
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

pub(super) fn node_error_diag(e: NodeError, extra_fields: &[&str], what: &str) -> PlanDiag {
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

pub(super) fn undefined_diag<'a>(
    name: &str,
    span: &Span,
    vars: impl Iterator<Item = &'a str>,
) -> PlanDiag {
    let candidates: Vec<&str> = vars
        .chain(BUILTIN_NAMES.iter().copied())
        .chain(RUNTIME_ROOTS.iter().copied())
        .collect();
    PlanDiag::new(Code::UndefinedVariable, format!("undefined variable `{name}`"), Some(span))
        .label("used in this template")
        .help(did_you_mean(name, candidates.iter().copied()).unwrap_or_else(|| {
            "declare it under `vars:`, or pass it with --set; built-ins: name, run_id, exp_name, plan_dir, out_dir, now_utc(fmt), env(name, default)".into()
        }))
}

pub(super) fn template_diag(e: &minijinja::Error, span: &Span) -> PlanDiag {
    let code = if e.kind() == minijinja::ErrorKind::UndefinedError {
        Code::UndefinedVariable
    } else {
        Code::Template
    };
    PlanDiag::new(code, describe_error(e), Some(span)).label("in this template")
}
