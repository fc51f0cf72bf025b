//! Dumping many agents at once: one connection per agent, all concurrently (bounded), each
//! with its own timeout, so one hung pod costs its timeout and not everyone's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::exec::ExecData;
use super::merge::exec_file_name;
use super::protocol::{dump, DumpCommand};
use super::target::Transport;
use super::CoverageError;
use crate::atomic_write::AtomicFile;

/// One agent to dump: `name` is the pod (it names the output file).
#[derive(Debug, Clone)]
pub struct DumpTarget {
    pub name: String,
    pub transport: Transport,
}

/// How one target went.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TargetOutcome {
    /// Dumped and written.
    Dumped {
        file: PathBuf,
        sessions: Vec<String>,
        classes: usize,
        bytes: usize,
        elapsed_ms: u64,
    },
    /// Nothing listens there (refused) or it does not answer the connection (timeout): the pod
    /// has no agent, e.g. a non-Java service.
    NoAgent { reason: String },
    /// Connected, but the dump failed.
    Failed { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub name: String,
    pub address: String,
    #[serde(flatten)]
    pub outcome: TargetOutcome,
}

/// Options for [`dump_all`].
#[derive(Debug, Clone)]
pub struct DumpAllOptions {
    pub command: DumpCommand,
    /// Per target, connection and dump together.
    pub timeout: Duration,
    /// Connections open at once (≥ 1).
    pub concurrency: usize,
    /// Folder of the `<pod>__jacoco-<pod>.exec` files.
    pub out_dir: PathBuf,
}

/// Dumps every target; results come back in target order. Never fails as a whole: each
/// target's failure is in its report.
pub async fn dump_all(targets: &[DumpTarget], opts: &DumpAllOptions) -> Vec<TargetReport> {
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let t = t.clone();
        let sem = Arc::clone(&sem);
        let opts = opts.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let outcome = dump_one(&t, &opts).await;
            (
                i,
                TargetReport {
                    name: t.name.clone(),
                    address: t.transport.describe(),
                    outcome,
                },
            )
        });
    }
    let mut out: Vec<Option<TargetReport>> = vec![None; targets.len()];
    while let Some(res) = set.join_next().await {
        // A panicking task is a bug; its target is reported as failed below.
        if let Ok((i, r)) = res {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .zip(targets)
        .map(|(r, t)| {
            r.unwrap_or_else(|| TargetReport {
                name: t.name.clone(),
                address: t.transport.describe(),
                outcome: TargetOutcome::Failed {
                    reason: "the dump task ended abnormally".into(),
                },
            })
        })
        .collect()
}

async fn dump_one(t: &DumpTarget, opts: &DumpAllOptions) -> TargetOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let secs = opts.timeout.as_secs_f64();
    let mut stream = match tokio::time::timeout_at(deadline, t.transport.connect()).await {
        Err(_) => {
            return TargetOutcome::NoAgent {
                reason: format!("no answer to the connection within {secs}s"),
            }
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return TargetOutcome::NoAgent {
                reason: "connection refused (no agent listening)".into(),
            }
        }
        Ok(Err(e)) => {
            return TargetOutcome::NoAgent {
                reason: format!("cannot connect: {e}"),
            }
        }
        Ok(Ok(s)) => s,
    };
    let data = match tokio::time::timeout_at(deadline, dump(&mut stream, opts.command)).await {
        Err(_) => {
            return TargetOutcome::Failed {
                reason: format!("the dump did not finish within {secs}s"),
            }
        }
        Ok(Err(e)) => {
            return TargetOutcome::Failed {
                reason: e.to_string(),
            }
        }
        Ok(Ok(d)) => d,
    };
    // Closing at once after `20` is what JaCoCo's own client does; the agent goes back to
    // accepting the next connection.
    drop(stream);
    let file = opts.out_dir.join(exec_file_name(&t.name));
    let sessions = data.sessions.iter().map(|s| s.id.clone()).collect();
    let classes = data.classes.len();
    let write_path = file.clone();
    let written = tokio::task::spawn_blocking(move || write_exec(&write_path, &data)).await;
    match written {
        Ok(Ok(bytes)) => TargetOutcome::Dumped {
            file,
            sessions,
            classes,
            bytes,
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
        Ok(Err(e)) => TargetOutcome::Failed {
            reason: e.to_string(),
        },
        Err(e) => TargetOutcome::Failed {
            reason: format!("writing {}: {e}", file.display()),
        },
    }
}

/// Writes exec data atomically; returns its size.
///
/// # Errors
/// On encoding or I/O failure.
pub fn write_exec(path: &Path, data: &ExecData) -> Result<usize, CoverageError> {
    let ctx = || format!("writing {}", path.display());
    let bytes = data.to_bytes()?;
    let mut f = AtomicFile::create(path).map_err(CoverageError::io(ctx()))?;
    std::io::Write::write_all(&mut f, &bytes).map_err(CoverageError::io(ctx()))?;
    f.commit().map_err(CoverageError::io(ctx()))?;
    Ok(bytes.len())
}
