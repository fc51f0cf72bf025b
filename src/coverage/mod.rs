//! Code coverage with JaCoCo, natively: the agent's tcpserver protocol, the `.exec` format,
//! merging per service, manifest instrumentation and report rendering through JaCoCo's own
//! report engine. The step kinds `collect-coverage`, `coverage-report` and `instrument` and the
//! `ttplan instrument` subcommand are thin layers over this module.

pub mod collect;
pub mod exec;
pub mod instrument;
pub mod merge;
pub mod protocol;
pub mod report;
pub mod target;

/// Why a coverage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    /// Malformed or truncated exec data, from a file or from an agent.
    #[error("invalid JaCoCo data: {0}")]
    Format(String),
    /// The agent's answer ended before its command-ok block.
    #[error("the agent closed the connection before the end of its answer (no command-ok block)")]
    Truncated,
    /// Two exec records for one class that cannot be merged.
    #[error("cannot merge coverage of class `{class}`: {reason}")]
    Conflict { class: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A manifest that cannot be instrumented.
    #[error("{0}")]
    Manifest(String),
    /// The report engine (jacococli or Ant) failed.
    #[error("{0}")]
    Report(String),
}

impl CoverageError {
    /// `map_err(CoverageError::io("reading x"))`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CoverageError {
        let context = context.into();
        move |source| CoverageError::Io { context, source }
    }
}

impl From<CoverageError> for crate::steps::api::StepError {
    fn from(e: CoverageError) -> Self {
        match e {
            CoverageError::Io { context, source } => {
                crate::steps::api::StepError::Io { context, source }
            }
            other => crate::steps::api::StepError::collect("")(other),
        }
    }
}
