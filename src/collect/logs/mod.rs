//! Container logs: lists the selected pods of a namespace, streams the current log of every
//! container (from the collection window on) and the whole log of the previous instance after a
//! restart to the dataset, alongside the namespace's events and a report of what was and was not
//! collected. Each pod gets the default container's log as `<pod>_<ts>.log`, as the published
//! dataset (`kubectl logs POD`) has it; pods with several containers also get one file per
//! container. A crash-looping container's current log is what the API serves for it: the
//! crashed instance's log (see [`jobs::current_log_skip`]).
//!
//! Logs are fetched by a bounded pool of tasks; each streams its HTTP body chunk by chunk into
//! a temporary file renamed into place when the body ended cleanly ([`stream::copy_to_file`]),
//! so memory does not grow with log size and no half-written log appears under a final name.
//! A pod that vanishes mid-collection or a log that fails is recorded in the report; whether
//! that fails the step is the step's decision (`require`), not the collector's.

pub mod events;
mod fetch;
mod jobs;
pub mod naming;
mod pod_logs;
mod report;
pub mod stream;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use crate::atomic_write::write_json_atomic;
use crate::kube::Kube;
use pod_logs::LogsPart;
pub use report::{
    ContainerReport, ErrorReport, EventsReport, FileReport, PodReport, Report, Skipped, Summary,
    Totals, Window,
};

/// Everything the collector needs, resolved from the plan by the step.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    /// Label selector for the pod list.
    pub selector: Option<String>,
    /// Only pods whose names start with one of these (all when empty).
    pub name_prefixes: Vec<String>,
    /// Window start, already floored to a whole second; `None` = from the container's start.
    pub since: Option<DateTime<Utc>>,
    /// Only the last lines of each log.
    pub tail_lines: Option<u64>,
    /// Fetch the previous instance's log of restarted containers.
    pub previous: bool,
    /// Ask the API server to prefix every line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Cut every log after this many bytes.
    pub limit_bytes: Option<u64>,
    /// Write `kubernetes_events_<ts>.json`.
    pub events: bool,
    /// Logs streamed at once.
    pub concurrency: usize,
    /// The dataset root; report paths are relative to it.
    pub out_dir: PathBuf,
    /// The log folder, relative to `out_dir` (`log_data/<EXP_NAME>`).
    pub dir: PathBuf,
    /// The collection time: `<ts>` of every file name.
    pub collected_at: DateTime<Utc>,
}

/// Only a cancellation or a report that cannot be written stops a collection; everything
/// else is an entry of [`Report::errors`].
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("writing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

/// What a collection produced; the report is already written.
#[derive(Debug)]
pub struct Collection {
    pub report: Report,
    /// Absolute.
    pub report_path: PathBuf,
    /// Relative to the output root.
    pub report_rel: String,
}

impl Collection {
    /// Every file written (logs, events, the report), absolute.
    pub fn artifacts(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self.report.files.iter().map(|f| f.abs.clone()).collect();
        all.extend(self.report.events.iter().map(|e| e.abs.clone()));
        all.push(self.report_path.clone());
        all
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rel_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs one collection and writes its report. `progress` receives one-line status messages.
///
/// # Errors
/// [`LogsError::Cancelled`] when `cancel` fires (files not finished are removed), or when the
/// report cannot be written.
pub async fn collect(
    kube: &Kube,
    settings: &Settings,
    progress: &(dyn Fn(String) + Sync),
    cancel: &CancellationToken,
) -> Result<Collection, LogsError> {
    let started = Instant::now();
    let collector = Collector {
        kube,
        settings,
        progress,
        cancel,
        ts: naming::collection_ts(settings.collected_at),
        dir_abs: settings.out_dir.join(&settings.dir),
    };
    let (events, logs) = tokio::join!(collector.events(), collector.logs());
    if cancel.is_cancelled() {
        return Err(LogsError::Cancelled);
    }
    let mut logs = logs?;
    let events = match events {
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => {
            // Namespace-level, so ahead of the logs' errors.
            logs.errors.insert(0, ErrorReport::namespace(e.to_string()));
            None
        }
        None => None,
    };
    logs.files.sort_by(|a, b| a.path.cmp(&b.path));
    let report = collector.report(started, logs, events);
    collector.write_report(report).await
}

/// What the phases of one collection share.
struct Collector<'a> {
    kube: &'a Kube,
    settings: &'a Settings,
    progress: &'a (dyn Fn(String) + Sync),
    cancel: &'a CancellationToken,
    /// The `<ts>` of every file name.
    ts: String,
    /// The log folder, absolute.
    dir_abs: PathBuf,
}

impl Collector<'_> {
    /// Writes the namespace's events; `None` when not wanted or cancelled.
    async fn events(&self) -> Option<Result<EventsReport, events::EventsError>> {
        if !self.settings.events {
            return None;
        }
        let name = naming::events_file_name(&self.ts);
        let abs = self.dir_abs.join(&name);
        let result = tokio::select! {
            r = events::write_events(self.kube, &self.settings.namespace, &abs) => r,
            () = self.cancel.cancelled() => return None,
        };
        Some(result.map(|count| EventsReport {
            path: rel_string(&self.settings.dir.join(&name)),
            count,
            abs,
        }))
    }

    /// The report of the collection, from the log half (files sorted, errors merged with the
    /// events' one) and the events.
    fn report(&self, started: Instant, logs: LogsPart, events: Option<EventsReport>) -> Report {
        let settings = self.settings;
        let LogsPart {
            pods,
            files,
            skipped,
            errors,
        } = logs;
        let finished = Utc::now();
        let totals = Totals {
            pods: pods.len(),
            containers: pods.iter().map(|p| p.containers.len()).sum(),
            files: files.len(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            events: events.as_ref().map_or(0, |e| e.count),
            skipped: skipped.len(),
            errors: errors.len(),
        };
        let mut collected_files: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        collected_files.extend(events.iter().map(|e| e.path.clone()));
        Report {
            timestamp: self.ts.clone(),
            collection_time: rfc3339(settings.collected_at),
            output_dir: rel_string(&settings.dir),
            total_files: collected_files.len(),
            collected_files,
            summary: Summary {
                pod_logs: files.len(),
                events: usize::from(events.is_some()),
            },
            namespace: settings.namespace.clone(),
            selector: settings.selector.clone(),
            name_prefixes: settings.name_prefixes.clone(),
            collected_at: rfc3339(settings.collected_at),
            finished_at: rfc3339(finished),
            elapsed_ms: started.elapsed().as_millis() as u64,
            window: Window {
                since: settings.since.map(rfc3339),
                until: rfc3339(settings.collected_at),
                tail_lines: settings.tail_lines,
            },
            timestamps: settings.timestamps,
            limit_bytes: settings.limit_bytes,
            totals,
            pods,
            files,
            events,
            skipped,
            errors,
        }
    }

    /// Writes `log_collection_report_<ts>.json` next to the logs.
    async fn write_report(&self, report: Report) -> Result<Collection, LogsError> {
        let report_name = naming::report_file_name(&self.ts);
        let report_path = self.dir_abs.join(&report_name);
        let report_rel = rel_string(&self.settings.dir.join(&report_name));
        let to_write = report.clone();
        let target = report_path.clone();
        tokio::task::spawn_blocking(move || write_json_atomic(&target, &to_write))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| LogsError::Io {
                path: report_path.clone(),
                source,
            })?;
        Ok(Collection {
            report,
            report_path,
            report_rel,
        })
    }
}
