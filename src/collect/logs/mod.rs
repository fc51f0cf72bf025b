//! Container logs: lists the selected pods of a namespace, streams the current log of every
//! container (from the collection window on) and the whole log of the previous instance after a
//! restart to the dataset, alongside the namespace's events and a report of what was and was not
//! collected. Each pod gets the default container's log as `<pod>_<ts>.log`, as the published
//! dataset (`kubectl logs POD`) has it; pods with several containers also get one file per
//! container. A crash-looping container's current log is what the API serves for it: the
//! crashed instance's log (see [`current_log_skip`]).
//!
//! Logs are fetched by a bounded pool of tasks; each streams its HTTP body chunk by chunk into
//! a temporary file renamed into place when the body ended cleanly ([`stream::copy_to_file`]),
//! so memory does not grow with log size and no half-written log appears under a final name.
//! A pod that vanishes mid-collection or a log that fails is recorded in the report; whether
//! that fails the step is the step's decision (`require`), not the collector's.

pub mod events;
pub mod naming;
mod report;
pub mod stream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ::kube::api::{Api, LogParams};
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::atomic_write::write_json_atomic;
use crate::kube::pods::PodQuery;
use crate::kube::{Kube, KubeError};
use naming::Instance;
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

/// One log to fetch.
#[derive(Debug, Clone)]
struct Job {
    pod: String,
    container: String,
    instance: Instance,
    abs: PathBuf,
    rel: String,
    /// Files that get the same bytes (the per-container file of a default container).
    copies: Vec<(PathBuf, String)>,
}

struct Failure {
    message: String,
    not_found: bool,
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
    let ts = naming::collection_ts(settings.collected_at);
    let dir_abs = settings.out_dir.join(&settings.dir);
    let mut errors = Vec::new();

    let events = async {
        if !settings.events {
            return None;
        }
        let name = naming::events_file_name(&ts);
        let abs = dir_abs.join(&name);
        let result = tokio::select! {
            r = events::write_events(kube, &settings.namespace, &abs) => r,
            () = cancel.cancelled() => return None,
        };
        Some(result.map(|count| EventsReport {
            path: rel_string(&settings.dir.join(&name)),
            count,
            abs,
        }))
    };
    let logs = collect_logs(kube, settings, &ts, &dir_abs, progress, cancel);
    let (events, logs) = tokio::join!(events, logs);
    if cancel.is_cancelled() {
        return Err(LogsError::Cancelled);
    }
    let events = match events {
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => {
            errors.push(ErrorReport {
                pod: None,
                container: None,
                instance: None,
                not_found: false,
                message: e.to_string(),
            });
            None
        }
        None => None,
    };
    let LogsPart {
        pods,
        mut files,
        skipped,
        errors: log_errors,
    } = logs?;
    errors.extend(log_errors);
    files.sort_by(|a, b| a.path.cmp(&b.path));

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
    let report = Report {
        timestamp: ts.clone(),
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
    };
    let report_name = naming::report_file_name(&ts);
    let report_path = dir_abs.join(&report_name);
    let report_rel = rel_string(&settings.dir.join(&report_name));
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

struct LogsPart {
    pods: Vec<PodReport>,
    files: Vec<FileReport>,
    skipped: Vec<Skipped>,
    errors: Vec<ErrorReport>,
}

async fn collect_logs(
    kube: &Kube,
    settings: &Settings,
    ts: &str,
    dir_abs: &Path,
    progress: &(dyn Fn(String) + Sync),
    cancel: &CancellationToken,
) -> Result<LogsPart, LogsError> {
    let ns = &settings.namespace;
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let mut part = LogsPart {
        pods: Vec::new(),
        files: Vec::new(),
        skipped: Vec::new(),
        errors: Vec::new(),
    };
    let query = PodQuery {
        namespace: ns,
        selector: settings.selector.as_deref(),
        name_prefixes: &settings.name_prefixes,
    };
    let listed = tokio::select! {
        r = query.pods(kube) => r,
        () = cancel.cancelled() => return Err(LogsError::Cancelled),
    };
    let pods = match listed {
        Ok(pods) => pods,
        Err(e) => {
            part.errors.push(ErrorReport {
                pod: None,
                container: None,
                instance: None,
                not_found: false,
                message: e.to_string(),
            });
            return Ok(part);
        }
    };

    let jobs = plan_jobs(&pods, settings, ts, dir_abs, &mut part);
    let total = jobs.len();
    let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        *remaining.entry(job.pod.clone()).or_default() += 1;
    }
    let pods_total = remaining.len();
    progress(format!("0/{pods_total} pods, 0/{total} logs"));

    let mut params = LogParams {
        previous: false,
        timestamps: settings.timestamps,
        tail_lines: settings.tail_lines.map(|t| t.min(i64::MAX as u64) as i64),
        limit_bytes: settings.limit_bytes.map(|b| b.min(i64::MAX as u64) as i64),
        ..LogParams::default()
    };
    if let Some(since) = settings.since {
        // Already floored, so kube's rounding to whole seconds leaves it unchanged.
        params.since_time = k8s_openapi::jiff::Timestamp::from_second(since.timestamp()).ok();
    }
    let sem = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut set = JoinSet::new();
    for job in jobs {
        let api = api.clone();
        let sem = Arc::clone(&sem);
        let mut lp = params.clone();
        lp.container = Some(job.container.clone());
        lp.previous = job.instance == Instance::Previous;
        if lp.previous {
            // The whole previous run: a restart before the window must not leave it empty.
            lp.since_time = None;
        }
        let ns = ns.clone();
        let server = kube.server.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let result = fetch(&api, &ns, &server, &job, &lp).await;
            (job, result)
        });
    }

    let mut done = 0usize;
    let mut pods_done = 0usize;
    let mut bytes = 0u64;
    let mut vanished: Vec<String> = Vec::new();
    loop {
        let next = tokio::select! {
            n = set.join_next() => n,
            () = cancel.cancelled() => {
                // Aborted copies drop their temporary files.
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err(LogsError::Cancelled);
            }
        };
        let Some(joined) = next else { break };
        done += 1;
        let (job, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                part.errors.push(ErrorReport {
                    pod: None,
                    container: None,
                    instance: None,
                    not_found: false,
                    message: format!("a log task of namespace {ns} ended abnormally: {e}"),
                });
                continue;
            }
        };
        match result {
            Ok(Some(n)) => {
                bytes += n;
                part.files.push(FileReport {
                    path: job.rel.clone(),
                    pod: job.pod.clone(),
                    container: job.container.clone(),
                    instance: job.instance,
                    bytes: n,
                    copy_of: None,
                    abs: job.abs.clone(),
                });
                for (abs, rel) in &job.copies {
                    part.files.push(FileReport {
                        path: rel.clone(),
                        pod: job.pod.clone(),
                        container: job.container.clone(),
                        instance: job.instance,
                        bytes: n,
                        copy_of: Some(job.rel.clone()),
                        abs: abs.clone(),
                    });
                }
            }
            Ok(None) => part.skipped.push(Skipped {
                pod: job.pod.clone(),
                container: job.container.clone(),
                instance: job.instance,
                reason: "the previous log is empty: no file".into(),
            }),
            Err(f) => {
                if f.not_found && !vanished.contains(&job.pod) {
                    vanished.push(job.pod.clone());
                }
                part.errors.push(ErrorReport {
                    pod: Some(job.pod.clone()),
                    container: Some(job.container.clone()),
                    instance: Some(job.instance),
                    not_found: f.not_found,
                    message: f.message,
                });
            }
        }
        if let Some(left) = remaining.get_mut(&job.pod) {
            *left -= 1;
            if *left == 0 {
                pods_done += 1;
            }
        }
        progress(format!(
            "{pods_done}/{pods_total} pods, {done}/{total} logs, {:.1} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        ));
    }
    for pod in &mut part.pods {
        pod.vanished = vanished.contains(&pod.name);
    }
    part.errors.sort_by(|a, b| {
        (&a.pod, &a.container, a.instance).cmp(&(&b.pod, &b.container, b.instance))
    });
    Ok(part)
}

/// Decides which logs of which containers to fetch, recording pods, containers and skips.
fn plan_jobs(
    pods: &[Pod],
    settings: &Settings,
    ts: &str,
    dir_abs: &Path,
    part: &mut LogsPart,
) -> Vec<Job> {
    let mut jobs = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !naming::safe_component(&name) {
            part.errors.push(ErrorReport {
                pod: Some(name.clone()),
                container: None,
                instance: None,
                not_found: false,
                message: format!(
                    "pod name {name:?} in namespace {} cannot be a file name; skipped",
                    settings.namespace
                ),
            });
            continue;
        }
        let spec_containers: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
            .collect();
        let several = spec_containers.len() > 1;
        let annotation = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(naming::DEFAULT_CONTAINER_ANNOTATION))
            .map(String::as_str);
        let default = naming::default_container(annotation, &spec_containers).map(str::to_string);
        let statuses: Vec<&ContainerStatus> = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .collect();
        let mut containers = Vec::new();
        for c in &spec_containers {
            let status = statuses.iter().find(|s| &s.name == c).copied();
            containers.push(container_report(c, status));
            if !naming::safe_component(c) {
                part.errors.push(ErrorReport {
                    pod: Some(name.clone()),
                    container: Some(c.clone()),
                    instance: None,
                    not_found: false,
                    message: format!("container name {c:?} cannot be a file name; skipped"),
                });
                continue;
            }
            let is_default = default.as_deref() == Some(c.as_str());
            let mut job = |instance: Instance| {
                let path = |per_container: bool| {
                    let file = naming::log_file_name(&name, c, per_container, instance, ts);
                    (
                        dir_abs.join(&name).join(&file),
                        rel_string(&settings.dir.join(&name).join(&file)),
                    )
                };
                // The default container's log is the pod-level file; with several containers
                // its per-container file is a copy, so both hold the same bytes.
                let (abs, rel) = path(several && !is_default);
                let copies = if several && is_default {
                    vec![path(true)]
                } else {
                    Vec::new()
                };
                jobs.push(Job {
                    pod: name.clone(),
                    container: c.clone(),
                    instance,
                    abs,
                    rel,
                    copies,
                });
            };
            let restarts = status.map_or(0, |s| s.restart_count);
            let wants_previous = settings.previous && restarts > 0;
            match current_log_skip(status) {
                None => job(Instance::Current),
                Some(reason) => part.skipped.push(Skipped {
                    pod: name.clone(),
                    container: c.clone(),
                    instance: Instance::Current,
                    reason,
                }),
            }
            if wants_previous {
                job(Instance::Previous);
            }
        }
        part.pods.push(PodReport {
            name: name.clone(),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            vanished: false,
            containers,
        });
    }
    jobs
}

/// Why the current log of a container is not requested, if it is not: a container that never
/// started has none (the API answers 400 "is waiting to start"). A container waiting to restart
/// (CrashLoopBackOff) is requested: the kubelet serves its last terminated instance
/// (`validateContainerLogStatus`), which is what `kubectl logs POD` shows and what the dataset's
/// `<pod>_<ts>.log` holds for a crash-looping pod.
fn current_log_skip(status: Option<&ContainerStatus>) -> Option<String> {
    let Some(status) = status else {
        return Some("no container status yet (not started)".into());
    };
    // Running or terminated: the API serves that instance.
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref())?;
    let reason = waiting.reason.clone().unwrap_or_else(|| "waiting".into());
    let last_terminated = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some();
    (!last_terminated).then(|| format!("waiting to start ({reason})"))
}

fn container_report(name: &str, status: Option<&ContainerStatus>) -> ContainerReport {
    let state = status.and_then(|s| s.state.as_ref()).map_or_else(
        || "unknown".to_string(),
        |st| {
            if st.running.is_some() {
                "running".to_string()
            } else if let Some(w) = &st.waiting {
                format!("waiting: {}", w.reason.as_deref().unwrap_or(""))
            } else if let Some(t) = &st.terminated {
                format!("terminated: {}", t.reason.as_deref().unwrap_or(""))
            } else {
                "unknown".to_string()
            }
        },
    );
    ContainerReport {
        name: name.to_string(),
        restart_count: status.map_or(0, |s| s.restart_count),
        ready: status.is_some_and(|s| s.ready),
        state,
    }
}

/// Fetches one log into its file and its copies; `None`: an empty previous log, no file.
async fn fetch(
    api: &Api<Pod>,
    ns: &str,
    server: &str,
    job: &Job,
    lp: &LogParams,
) -> Result<Option<u64>, Failure> {
    let what = match job.instance {
        Instance::Current => "log",
        Instance::Previous => "previous log",
    };
    let target = format!("{ns}/{} container {}", job.pod, job.container);
    let body = match api.log_stream(&job.pod, lp).await {
        Ok(b) => b,
        Err(::kube::Error::Api(s)) if s.code == 404 => {
            return Err(Failure {
                message: format!(
                    "reading the {what} of {target}: pod {ns}/{} no longer exists ({})",
                    job.pod, s.message
                ),
                not_found: true,
            })
        }
        Err(e) => {
            let e = KubeError::from_kube(format!("reading the {what} of {target}"), server, e);
            return Err(Failure {
                message: e.to_string(),
                not_found: false,
            });
        }
    };
    // The dataset has a previous log only when there is one to read.
    let keep_empty = job.instance == Instance::Current;
    let written = stream::copy_to_file(body, &job.abs, keep_empty)
        .await
        .map_err(|e| Failure {
            message: format!("streaming the {what} of {target}: {e}"),
            not_found: false,
        })?;
    if written.is_some() {
        for (copy, _) in &job.copies {
            copy_file(&job.abs, copy).await.map_err(|e| Failure {
                message: format!("copying the {what} of {target} to {}: {e}", copy.display()),
                not_found: false,
            })?;
        }
    }
    Ok(written)
}

/// Copies a finished log to another dataset file, atomically.
async fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut out = crate::atomic_write::AtomicFile::create(&to)?;
        std::io::copy(&mut std::fs::File::open(&from)?, out.file())?;
        out.commit().map(drop)
    })
    .await
    .map_err(std::io::Error::other)?
}
