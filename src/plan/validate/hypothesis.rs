//! `hypothesis:`: the steady-state probes, read as `probe` steps.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::steps::read_step;
use crate::diag::{Code, PlanDiag, PlanErrors};
use crate::plan::kinds::Kinds;
use crate::plan::node::{Entry, Node, Value};
use crate::plan::template::Templates;
use crate::plan::PlanStep;

/// `hypothesis:` — named probes, each a `probe` step without `kind`, checked at fixed points
/// (so no `after`, `mode: continuous`, `until` or `verifies`).
pub(super) fn read_hypothesis<K: Kinds + ?Sized>(
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
