//! What plan loading needs from the step kinds, without knowing them: the registry (in
//! `steps`) is passed into [`super::load_plan`], so `plan` sits below `steps`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::node::Node;
use super::node_de::NodeError;
use crate::diag::PlanDiag;

/// Where a plan's relative paths resolve: its folder, and that folder as the user named it, so
/// problems in a file the plan names read `manifests/x.yaml:3:1` like the plan's own.
#[derive(Debug, Clone)]
pub struct PlanFolder {
    pub dir: PathBuf,
    pub display: PathBuf,
}

impl PlanFolder {
    /// (path to read, path to show) of a path the plan names.
    pub fn resolve(&self, p: &Path) -> (PathBuf, String) {
        (self.dir.join(p), self.display.join(p).display().to_string())
    }
}

/// The plan's view of a parsed step: the checks that span steps or need the node.
pub trait KindChecks: Send + Sync + fmt::Debug {
    /// Checks the types cannot express; `node` is the step's mapping, for spans.
    fn check(&self, _node: &Node, _diags: &mut Vec<PlanDiag>) {}

    /// Checks the files the step names (read and parsed as the run will).
    fn check_files(&self, _node: &Node, _folder: &PlanFolder, _diags: &mut Vec<PlanDiag>) {}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde::Deserialize;

    use super::*;
    use crate::diag::Code;
    use crate::plan::node_de::from_node;
    use crate::plan::validate::render_at_start;
    use crate::plan::{load_plan_document, LoadOptions};

    /// A registry of one kind, `count`, whose `check()` wants `n >= 1` and, like the real
    /// kinds' checks, leaves a value that renders at step start to be checked then: plan
    /// loading and start rendering with no kind of `steps` involved.
    struct OneKind;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Count {
        n: String,
    }

    impl KindChecks for Count {
        fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
            if self.n.parse::<u32>() == Ok(0) {
                diags.push(PlanDiag::new(
                    Code::InvalidValue,
                    "`n` must be at least 1",
                    Some(&node.span),
                ));
            }
        }
    }

    impl Kinds for OneKind {
        type Step = Count;

        fn names(&self) -> Vec<&'static str> {
            vec!["count"]
        }

        fn parse(&self, name: &str, fields: &Node) -> Option<Result<Count, NodeError>> {
            (name == "count").then(|| from_node::<Count>(fields))
        }
    }

    fn opts() -> LoadOptions {
        LoadOptions {
            sets: Vec::new(),
            run_id: "r1".into(),
            now: chrono::Utc::now(),
            out_dir: "dataset".into(),
        }
    }

    #[test]
    fn a_value_rendered_at_step_start_is_checked_like_one_written_in_the_plan() {
        let doc = serde_json::json!({
            "name": "t",
            "steps": {
                "a": { "kind": "count", "n": "1" },
                "b": { "kind": "count", "after": ["a"], "n": "{{ steps.a.outputs.n }}" },
            }
        });
        let plan = load_plan_document(&doc, "plan.yaml", Path::new("plan.yaml"), &opts(), &OneKind)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(plan.steps["b"].kind, "count");
        assert!(plan.steps["b"].deferred);
        let runtime = |n: u32| {
            BTreeMap::from([(
                "steps".to_string(),
                serde_json::json!({ "a": { "outputs": { "n": n } } }),
            )])
        };
        let ok = render_at_start(&plan, &plan.steps["b"], &runtime(3), &OneKind).unwrap();
        assert_eq!(ok.step.n, "3");
        let Err(err) = render_at_start(&plan, &plan.steps["b"], &runtime(0), &OneKind) else {
            panic!("n = 0 rendered at start passed the check");
        };
        assert!(err.contains("`n` must be at least 1"), "{err}");

        // The same value written in the plan fails at load time.
        let doc =
            serde_json::json!({ "name": "t", "steps": { "a": { "kind": "count", "n": "0" } } });
        assert!(
            load_plan_document(&doc, "plan.yaml", Path::new("plan.yaml"), &opts(), &OneKind)
                .is_err()
        );
    }

    #[test]
    fn an_unknown_kind_is_named_with_the_registrys_kinds() {
        let doc = serde_json::json!({ "name": "t", "steps": { "a": { "kind": "cuont", "n": 1 } } });
        let Err(errs) =
            load_plan_document(&doc, "plan.yaml", Path::new("plan.yaml"), &opts(), &OneKind)
        else {
            panic!("an unknown kind loaded");
        };
        let text = format!("{errs:?}");
        assert!(
            text.contains("unknown step kind `cuont`") && text.contains("count"),
            "{text}"
        );
    }
}
