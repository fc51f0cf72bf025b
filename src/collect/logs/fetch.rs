//! The bounded pool of tasks that fetch the planned logs into their files.

use std::path::Path;
use std::sync::Arc;

use ::kube::api::{Api, LogParams};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::jobs::Job;
use super::naming::Instance;
use super::{stream, LogsError, Settings};
use crate::kube::{Kube, KubeError};

/// Why one log could not be fetched.
pub(super) struct Failure {
    pub(super) message: String,
    /// The API answered 404: the pod no longer exists.
    pub(super) not_found: bool,
}

/// What a fetch task hands back: its job and the bytes written (`None`: an empty previous
/// log, no file).
pub(super) type Fetched = (Job, Result<Option<u64>, Failure>);

/// The fetch tasks in flight, at most `concurrency` streaming at once.
pub(super) struct Pool {
    set: JoinSet<Fetched>,
}

impl Pool {
    /// Starts one task per job.
    pub(super) fn spawn(kube: &Kube, settings: &Settings, jobs: Vec<Job>) -> Self {
        let ns = &settings.namespace;
        let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
        let params = log_params(settings);
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
        Self { set }
    }

    /// The next task to end, `None` when all have.
    ///
    /// # Errors
    /// [`LogsError::Cancelled`] when `cancel` fires; every task is aborted first (aborted copies
    /// drop their temporary files).
    pub(super) async fn next(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<Result<Fetched, JoinError>>, LogsError> {
        tokio::select! {
            n = self.set.join_next() => Ok(n),
            () = cancel.cancelled() => {
                self.set.abort_all();
                while self.set.join_next().await.is_some() {}
                Err(LogsError::Cancelled)
            }
        }
    }
}

/// The parameters every log request shares; the container and instance are the job's.
fn log_params(settings: &Settings) -> LogParams {
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
    params
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
