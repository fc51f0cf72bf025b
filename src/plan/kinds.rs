//! What plan loading needs from the step kinds, without knowing them: the registry (in
//! `steps`) is passed into [`super::load_plan`], so `plan` sits below `steps`.

use std::fmt;

use super::node::Node;
use super::node_de::NodeError;
use crate::diag::PlanDiag;

/// The plan's view of a parsed step: the checks that span steps or need the node.
pub trait KindChecks: Send + Sync + fmt::Debug {
    /// Checks the types cannot express; `node` is the step's mapping, for spans.
    fn check(&self, _node: &Node, _diags: &mut Vec<PlanDiag>) {}

    /// Other steps this one names in a field (`recover.faults`), as (field, names): each must
    /// exist and run before this one.
    fn referenced_steps(&self) -> Option<(&'static str, &[String])> {
        None
    }

    /// A step this one runs alongside and watches (a probe's `until`), as (field, name): it
    /// must exist and must not run after this one.
    fn watched_step(&self) -> Option<(&'static str, &str)> {
        None
    }
}

/// The step kinds a plan may use: names for "did you mean", and a parser per kind.
pub trait Kinds: Sync {
    /// A parsed step, as the engine runs it.
    type Step: KindChecks;

    /// Every kind name, in registry order.
    fn names(&self) -> Vec<&'static str>;

    /// `None` when there is no kind `name`.
    fn parse(&self, name: &str, fields: &Node) -> Option<Result<Self::Step, NodeError>>;

    /// The kind's own name as the registry spells it (a `&'static str` the plan keeps).
    fn name_of(&self, name: &str) -> Option<&'static str> {
        self.names().into_iter().find(|n| *n == name)
    }
}
