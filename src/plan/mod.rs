//! Plans: the model, loading (YAML/TOML, `extends`), templating, validation and the DAG.
//!
//! [`load_plan`] turns a plan file into a [`Plan`] whose steps are parsed into their kinds and
//! whose load-time templates are rendered, or into [`PlanErrors`] listing every problem.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;

mod check_files;
pub mod dag;
mod deprecated;
pub mod kinds;
pub mod load;
pub mod model;
pub mod node;
pub mod node_de;
pub mod template;
pub mod validate;

pub use dag::Dag;
pub use model::{Duration, StepCommon};
pub use validate::{load_plan, load_plan_document};

use crate::diag::{SourceFile, Span};
pub use kinds::{KindChecks, Kinds, PlanFolder};
use node::Node;
use template::Templates;

/// How to load: values fixed by the invocation rather than the file.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--set key=value`, in order.
    pub sets: Vec<String>,
    pub run_id: String,
    /// Run start; `now_utc()` returns it.
    pub now: DateTime<Utc>,
    /// Dataset root (`--out`).
    pub out_dir: PathBuf,
}

/// A validated plan, ready to run; `S` is the parsed step (`Box<dyn steps::Step>`).
pub struct Plan<S> {
    /// As given on the command line.
    pub path: PathBuf,
    /// Absolute folder of the plan file.
    pub plan_dir: PathBuf,
    /// The plan file and its bases.
    pub files: Vec<Arc<SourceFile>>,
    /// The merged document before templating (`extends` applied), as the manifest stores it.
    pub document: serde_json::Value,
    pub name: String,
    pub description: Option<String>,
    pub exp_name: String,
    /// Resolved vars (after `--set` and templating), in declaration order.
    pub vars: IndexMap<String, Node>,
    /// Source trees whose git commit the manifest records (`sources:`).
    pub sources: IndexMap<String, PathBuf>,
    pub steps: IndexMap<String, PlanStep<S>>,
    /// The steady-state hypothesis: probes (kind `probe`) checked before the first fault and
    /// after the last recovery.
    pub hypothesis: IndexMap<String, PlanStep<S>>,
    pub dag: Dag,
    pub templates: Templates,
    /// Load-time template context (vars + built-ins), reused at step start.
    pub context: BTreeMap<String, serde_json::Value>,
    /// Deprecated names the plan uses (`file:line:col: warning: …`), for `validate` and `run`.
    pub warnings: Vec<String>,
}

/// One step after load-time rendering.
pub struct PlanStep<S> {
    pub name: String,
    pub common: StepCommon,
    /// The kind's name as the registry spells it.
    pub kind: &'static str,
    /// The kind-specific fields, rendered; strings with runtime references are kept as written.
    pub fields: Node,
    /// Parsed kind config (from `fields`; re-parsed at step start when `deferred`).
    pub step: S,
    /// Whether some field reads `steps.*`/`run.*` and renders at step start.
    pub deferred: bool,
    /// Where the step is declared (its key).
    pub span: Span,
}

impl<S> Plan<S> {
    /// The resolved plan as JSON, as the manifest records it.
    pub fn resolved_json(&self) -> serde_json::Value {
        let steps: serde_json::Map<String, serde_json::Value> = self
            .steps
            .iter()
            .map(|(name, s)| (name.clone(), s.resolved_json()))
            .collect();
        serde_json::json!({
            "name": self.name,
            "description": self.description,
            "vars": self.vars_json(),
            "sources": self.sources,
            "steps": steps,
            "hypothesis": self
                .hypothesis
                .iter()
                .map(|(n, s)| (n.clone(), s.resolved_json()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        })
    }

    pub fn vars_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect()
    }
}

impl<S> PlanStep<S> {
    /// Common and kind fields together, as rendered at load time.
    pub fn resolved_json(&self) -> serde_json::Value {
        let c = &self.common;
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), c.kind.clone().into());
        if !c.after.is_empty() {
            m.insert("after".into(), c.after.clone().into());
        }
        if let Some(d) = &c.description {
            m.insert("description".into(), d.clone().into());
        }
        if let Some(t) = c.timeout {
            m.insert("timeout".into(), t.to_string().into());
        }
        if c.retries > 0 {
            m.insert("retries".into(), c.retries.into());
            m.insert("backoff".into(), c.backoff.to_string().into());
        }
        if c.allow_failure {
            m.insert("allow_failure".into(), true.into());
        }
        if c.always {
            m.insert("always".into(), true.into());
        }
        if !c.env.is_empty() {
            m.insert(
                "env".into(),
                serde_json::to_value(&c.env).unwrap_or_default(),
            );
        }
        if !c.artifacts.is_empty() {
            m.insert("artifacts".into(), c.artifacts.clone().into());
        }
        if let serde_json::Value::Object(fields) = self.fields.to_json() {
            m.extend(fields);
        }
        serde_json::Value::Object(m)
    }
}
