//! Running a plan: the DAG executor, the run context, the fault ledger, the manifest and
//! progress reporting.

pub mod ctx;
pub mod events;
pub mod executor;
pub mod faults;
pub mod hypothesis;
pub mod labels;
pub mod launch;
pub mod manifest;
pub mod progress;
pub mod rerun;
pub mod secrets;
