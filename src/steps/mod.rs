//! Step kinds and the one registry that maps a plan's `kind:` to its implementation.
//!
//! A kind is a config struct (serde + schemars, `deny_unknown_fields`, `///` on every field)
//! that implements [`Step`]. Adding a kind means writing its module and adding one line to
//! [`KINDS`]; parsing, `ttplan schema` and "unknown kind, did you mean" all read that table.

use schemars::{Schema, SchemaGenerator};

use crate::diag::PlanDiag;
use crate::plan::node::Node;
use crate::plan::node_de::{from_node, NodeError};
use crate::plan::{KindChecks, Kinds};

// The step API, re-exported so kinds write `super::{Step, StepCtx, …}`.
pub use api::{process, RecoverFn, Step, StepConfig, StepCtx, StepError, StepOutputs};

pub mod api;
pub mod api_driver;
pub mod chaos_mesh;
pub mod chaosblade;
pub mod collect_coverage;
pub mod collect_logs;
pub mod collect_metrics;
pub mod collect_traces;
pub mod coverage_report;
pub mod instrument;
pub mod kube_apply;
pub mod probe;
pub mod recover;
pub mod schema;
pub mod shell;
pub mod sleep;
pub mod wait_ready;

/// The registry: every step kind ttplan knows.
pub static KINDS: &[KindEntry] = &[
    kind::<shell::ShellConfig>(),
    kind::<sleep::SleepConfig>(),
    kind::<kube_apply::KubeApplyConfig>(),
    kind::<wait_ready::WaitReadyConfig>(),
    kind::<chaos_mesh::ChaosMeshConfig>(),
    kind::<chaosblade::ChaosBladeConfig>(),
    kind::<recover::RecoverConfig>(),
    kind::<api_driver::ApiDriverConfig>(),
    kind::<instrument::InstrumentConfig>(),
    kind::<collect_coverage::CollectCoverageConfig>(),
    kind::<coverage_report::CoverageReportConfig>(),
    kind::<collect_traces::CollectTracesConfig>(),
    kind::<collect_metrics::CollectMetricsConfig>(),
    kind::<collect_logs::CollectLogsConfig>(),
    kind::<probe::ProbeConfig>(),
];

/// One row of the registry.
pub struct KindEntry {
    pub name: &'static str,
    pub about: &'static str,
    pub parse: fn(&Node) -> Result<Box<dyn Step>, NodeError>,
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    pub recover: Option<RecoverFn>,
}

const fn kind<C: StepConfig>() -> KindEntry {
    KindEntry {
        name: C::KIND,
        about: C::ABOUT,
        parse: parse_kind::<C>,
        schema: schema_of::<C>,
        recover: C::RECOVER,
    }
}

fn parse_kind<C: StepConfig>(node: &Node) -> Result<Box<dyn Step>, NodeError> {
    from_node::<C>(node).map(|c| Box::new(c) as Box<dyn Step>)
}

fn schema_of<C: StepConfig>(g: &mut SchemaGenerator) -> Schema {
    C::json_schema(g)
}

pub fn lookup(name: &str) -> Option<&'static KindEntry> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn kind_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name)
}

/// The recover function of kind `name`: `None` for an unknown kind, `Some(None)` for a kind
/// that injects nothing. Handed to the step API as [`api::faults::RecoverLookup`].
pub fn recover_fn(name: &str) -> Option<Option<RecoverFn>> {
    lookup(name).map(|k| k.recover)
}

/// A loaded plan whose steps are parsed into their kinds.
pub type Plan = crate::plan::Plan<Box<dyn Step>>;
/// One step of a [`Plan`].
pub type PlanStep = crate::plan::PlanStep<Box<dyn Step>>;

impl KindChecks for Box<dyn Step> {
    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        (**self).check(node, diags);
    }

    fn check_files(
        &self,
        node: &Node,
        folder: &crate::plan::PlanFolder,
        diags: &mut Vec<PlanDiag>,
    ) {
        (**self).check_files(node, folder, diags);
    }

    fn referenced_steps(&self) -> Option<(&'static str, &[String])> {
        (**self).referenced_steps()
    }

    fn watched_step(&self) -> Option<(&'static str, &str)> {
        (**self).watched_step()
    }
}

/// The registry as plan loading sees it: `load_plan(path, opts, KINDS)`.
impl Kinds for [KindEntry] {
    type Step = Box<dyn Step>;

    fn names(&self) -> Vec<&'static str> {
        self.iter().map(|k| k.name).collect()
    }

    fn parse(&self, name: &str, fields: &Node) -> Option<Result<Box<dyn Step>, NodeError>> {
        self.iter()
            .find(|k| k.name == name)
            .map(|k| (k.parse)(fields))
    }
}
