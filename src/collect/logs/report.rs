//! `log_collection_report_<ts>.json`: what a collection wrote, skipped and could not collect.

use std::path::PathBuf;

use serde::Serialize;

use super::naming::Instance;

/// `log_collection_report_<ts>.json`. The first six keys are the published dataset's report;
/// the rest are ttplan's additions.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The `<ts>` of the collection's file names.
    pub timestamp: String,
    /// The collection time, RFC 3339 UTC.
    pub collection_time: String,
    /// The log folder, relative to the output root.
    pub output_dir: String,
    /// `collected_files.len()`.
    pub total_files: usize,
    /// Every log file and the events file, relative to the output root (not the report).
    pub collected_files: Vec<String>,
    pub summary: Summary,
    pub namespace: String,
    pub selector: Option<String>,
    pub name_prefixes: Vec<String>,
    pub collected_at: String,
    pub finished_at: String,
    pub elapsed_ms: u64,
    pub window: Window,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
    pub totals: Totals,
    pub pods: Vec<PodReport>,
    pub files: Vec<FileReport>,
    pub events: Option<EventsReport>,
    /// Containers whose logs were not requested, with why (never started, …).
    pub skipped: Vec<Skipped>,
    pub errors: Vec<ErrorReport>,
}

/// The published report's `summary`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Log files written (pod-level and per-container, current and previous).
    pub pod_logs: usize,
    /// Events files written (0 or 1).
    pub events: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The `sinceTime` sent (whole seconds); `null` = from the container's start.
    pub since: Option<String>,
    /// Logs end when they were read: the collection time.
    pub until: String,
    pub tail_lines: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub pods: usize,
    pub containers: usize,
    pub files: usize,
    pub bytes: u64,
    pub events: u64,
    pub skipped: usize,
    pub errors: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodReport {
    pub name: String,
    pub phase: Option<String>,
    pub node: Option<String>,
    /// The pod was gone (404) when one of its logs was requested.
    pub vanished: bool,
    pub containers: Vec<ContainerReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerReport {
    pub name: String,
    pub restart_count: i32,
    pub ready: bool,
    /// `running`, `waiting: <reason>`, `terminated: <reason>` or `unknown`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Relative to the output root.
    pub path: String,
    pub pod: String,
    pub container: String,
    pub instance: Instance,
    pub bytes: u64,
    /// A per-container file of the default container is a copy of the pod-level file (same
    /// bytes, fetched once): the path of that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
    #[serde(skip)]
    pub abs: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventsReport {
    pub path: String,
    pub count: u64,
    #[serde(skip)]
    pub abs: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub pod: String,
    pub container: String,
    pub instance: Instance,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    /// `null` for namespace-level failures (pod list, events).
    pub pod: Option<String>,
    pub container: Option<String>,
    pub instance: Option<Instance>,
    /// The API answered 404: the pod no longer exists.
    pub not_found: bool,
    pub message: String,
}

impl ErrorReport {
    /// A failure of the namespace, not of one pod (the pod list, the events, a lost task).
    pub(super) fn namespace(message: String) -> Self {
        Self {
            pod: None,
            container: None,
            instance: None,
            not_found: false,
            message,
        }
    }
}
