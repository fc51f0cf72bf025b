//! A deferred step's runtime references (`steps.*`, `run.*`) rendered when it starts, and the
//! kind parsed and checked again.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use crate::plan::kinds::{KindChecks, Kinds};
use crate::plan::node::Node;
use crate::plan::node_de::from_node;
use crate::plan::template::{describe_error, Templates};
use crate::plan::{Plan, PlanStep};

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
