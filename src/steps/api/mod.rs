//! The step API: what a step kind implements ([`Step`]) and what it is given ([`StepCtx`]),
//! returns ([`StepOutputs`], [`StepError`]) and records (the fault ledger). It sits at the
//! bottom of `steps`: collectors, coverage and probes use it, and it uses none of them, nor the
//! kinds, nor the engine.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::diag::PlanDiag;
use crate::plan::node::Node;

pub mod command_env;
pub mod ctx;
pub mod events;
pub mod fault_details;
pub mod faults;
pub mod manifest;
pub mod process;
pub mod progress;
pub mod secrets;

pub use ctx::StepCtx;
use fault_details::RecoveryReport;
use faults::{FaultRecord, RecoverCtx};

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
    /// A Kubernetes API call failed; the source tells a timeout from an API answer.
    #[error("{0}")]
    Kube(#[from] crate::kube::KubeError),
    /// A collector (traces, metrics, logs, coverage) failed; the source is its own error type,
    /// `message` says it with the step's context.
    #[error("{message}")]
    Collect {
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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

    /// `map_err(StepError::collect("collecting traces from x"))`: `context: <the error>`
    /// (just the error when `context` is empty).
    pub fn collect<E>(context: impl Into<String>) -> impl FnOnce(E) -> StepError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let context = context.into();
        move |source| {
            let message = if context.is_empty() {
                source.to_string()
            } else {
                format!("{context}: {source}")
            };
            StepError::Collect {
                message,
                source: Box::new(source),
            }
        }
    }

    /// A collector's error said in the step's own words (`message` built from it).
    pub fn collect_said<E>(source: E, say: impl FnOnce(&E) -> String) -> StepError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StepError::Collect {
            message: say(&source),
            source: Box::new(source),
        }
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
        _folder: &crate::plan::PlanFolder,
        _diags: &mut Vec<PlanDiag>,
    ) {
    }

    /// Whether the step talks to the Kubernetes API (a run without a configured cluster and
    /// without `--sandbox` stops before anything runs when one does).
    fn needs_cluster(&self) -> bool {
        false
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
) -> BoxFuture<'a, Result<Option<RecoveryReport>, String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_error_stays_the_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("query `up` failed")]
        struct QueryFailed;
        let e = StepError::collect("collecting from P")(QueryFailed);
        assert_eq!(e.to_string(), "collecting from P: query `up` failed");
        let source = std::error::Error::source(&e).unwrap();
        assert!(source.downcast_ref::<QueryFailed>().is_some());
        assert_eq!(
            StepError::collect("")(QueryFailed).to_string(),
            "query `up` failed"
        );
        let said = StepError::collect_said(QueryFailed, |e| format!("{e} (at P)"));
        assert_eq!(said.to_string(), "query `up` failed (at P)");
    }
}
