//! Running a plan: the DAG executor, the run context, the fault ledger, the manifest and
//! progress reporting.

pub mod executor;
pub mod hypothesis;
pub mod labels;
pub mod launch;
pub mod manifest;
pub mod recovery;
pub mod rerun;

// The run services steps see live in the step API (below the kinds); the engine owns them.
pub use crate::steps::api::{ctx, events, faults, progress, secrets};
