//! Step kinds and the one registry that maps a plan's `kind:` to its implementation.
//!
//! A kind is a config struct (serde + schemars, `deny_unknown_fields`, `///` on every field)
//! that implements [`Step`]. Adding a kind means writing its module and adding one line to
//! [`KINDS`]; parsing, `ttplan schema` and "unknown kind, did you mean" all read that table.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::diag::PlanDiag;
pub use crate::engine::ctx::StepCtx;
use crate::engine::faults::{FaultRecord, RecoverCtx};
use crate::plan::node::Node;
use crate::plan::node_de::{from_node, NodeError};

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
pub mod manifest;
pub mod probe;
pub mod process;
pub mod recover;
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

/// What a step produced: named values (readable by later steps as
/// `steps.<name>.outputs.<key>`) and files to hash into the manifest.
#[derive(Debug, Default, Clone)]
pub struct StepOutputs {
    pub values: BTreeMap<String, serde_json::Value>,
    /// Files written by the step: absolute, or relative to the output root.
    pub artifacts: Vec<PathBuf>,
    /// Services the step talked to, for the manifest's `endpoints` (service → url, source).
    pub endpoints: BTreeMap<String, serde_json::Value>,
    /// Set by steps that instrument manifests, for the manifest's `instrumented`.
    pub instrumented: Option<serde_json::Value>,
    /// `(bytes, sha256 hex)` of artifacts the step hashed while writing them, keyed like
    /// `artifacts`; the engine uses these instead of reading the files again.
    pub digests: BTreeMap<PathBuf, (u64, String)>,
}

impl StepOutputs {
    pub fn value(mut self, key: &str, v: impl Into<serde_json::Value>) -> Self {
        self.values.insert(key.to_string(), v.into());
        self
    }

    /// Records a service endpoint and how it was found (`plan`, `env SKYWALKING_URL`, …).
    pub fn endpoint(mut self, service: &str, url: &str, source: &str) -> Self {
        self.endpoints.insert(
            service.to_string(),
            serde_json::json!({ "url": url, "source": source }),
        );
        self
    }
}

/// Why a step attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    /// A failure whose outputs still belong in the manifest (e.g. which traces were lost).
    #[error("{message}")]
    FailedWithOutputs {
        message: String,
        outputs: Box<StepOutputs>,
    },
}

impl StepError {
    pub fn failed(msg: impl fmt::Display) -> Self {
        StepError::Failed(msg.to_string())
    }

    /// `map_err(StepError::io("writing x"))`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StepError {
        let context = context.into();
        move |source| StepError::Io { context, source }
    }
}

/// The behaviour of a step kind.
#[async_trait::async_trait]
pub trait Step: Send + Sync + fmt::Debug {
    /// One attempt. Must return promptly with [`StepError::Cancelled`] once
    /// `ctx.cancel_token()` fires, after cleaning up what it started.
    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError>;

    /// Checks the types cannot express; `node` is the step's mapping, for spans.
    fn check(&self, _node: &Node, _diags: &mut Vec<PlanDiag>) {}

    /// Checks the files the step names, read and parsed as the run will, so that
    /// `ttplan validate` reports a broken one; `node` is the step's mapping, for spans.
    fn check_files(
        &self,
        _node: &Node,
        _folder: &manifest::PlanFolder,
        _diags: &mut Vec<PlanDiag>,
    ) {
    }

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

/// A step kind's config type.
pub trait StepConfig: Step + DeserializeOwned + JsonSchema + 'static {
    /// The `kind:` value, kebab-case.
    const KIND: &'static str;
    /// One line for `ttplan schema` and the README.
    const ABOUT: &'static str;
    /// How to recover a fault this kind recorded in the ledger, if it injects faults.
    const RECOVER: Option<RecoverFn> = None;
}

/// Undoes a fault from its ledger record alone; may return what it observed (e.g. the
/// controller's recovery records) to keep in the ledger.
pub type RecoverFn = for<'a> fn(
    &'a FaultRecord,
    &'a RecoverCtx,
) -> BoxFuture<'a, Result<Option<serde_json::Value>, String>>;

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
