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
use super::target::{AgentStream, Transport};
use super::CoverageError;
use crate::atomic_write::AtomicFile;
use crate::kube::Kube;

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
    /// Reset only (no dump was asked for).
    Reset { elapsed_ms: u64 },
    /// Nothing listens there (refused) or it does not answer the connection (timeout): the pod
    /// has no agent, e.g. a non-Java service.
    NoAgent { reason: String },
    /// Connected, but the dump failed.
    Failed { reason: String },
}

impl TargetOutcome {
    /// One word for progress lines.
    pub fn word(&self) -> &'static str {
        match self {
            TargetOutcome::Dumped { .. } => "dumped",
            TargetOutcome::Reset { .. } => "reset",
            TargetOutcome::NoAgent { .. } => "no agent",
            TargetOutcome::Failed { .. } => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub name: String,
    pub address: String,
    /// `direct` or `port-forward`.
    pub transport: &'static str,
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
    /// The cluster, for [`Transport::PodPortForward`] targets.
    pub kube: Option<Kube>,
}

/// After a complete answer, closing the connection (for a port-forward: the WebSocket's
/// closing handshake) may take at most this long; the dump counts either way.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Dumps every target; results come back in target order. Never fails as a whole: each
/// target's failure is in its report. `on_done` sees each report as it finishes (progress).
pub async fn dump_all(
    targets: &[DumpTarget],
    opts: &DumpAllOptions,
    mut on_done: impl FnMut(&TargetReport),
) -> Vec<TargetReport> {
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
                    transport: t.transport.kind(),
                    outcome,
                },
            )
        });
    }
    let mut out: Vec<Option<TargetReport>> = vec![None; targets.len()];
    while let Some(res) = set.join_next().await {
        // A panicking task is a bug; its target is reported as failed below.
        if let Ok((i, r)) = res {
            on_done(&r);
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .zip(targets)
        .map(|(r, t)| {
            r.unwrap_or_else(|| TargetReport {
                name: t.name.clone(),
                address: t.transport.describe(),
                transport: t.transport.kind(),
                outcome: TargetOutcome::Failed {
                    reason: "the dump task ended abnormally".into(),
                },
            })
        })
        .collect()
}

async fn dump_one(t: &DumpTarget, opts: &DumpAllOptions) -> TargetOutcome {
    let one = OneDump {
        target: t,
        opts,
        started: Instant::now(),
        deadline: tokio::time::Instant::now() + opts.timeout,
    };
    match one.run().await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

/// One target's dump: connect, ask, close, write; each phase ends the dump early with its
/// outcome (`Err`) when it cannot go on. All phases share one deadline.
struct OneDump<'a> {
    target: &'a DumpTarget,
    opts: &'a DumpAllOptions,
    started: Instant,
    deadline: tokio::time::Instant,
}

impl OneDump<'_> {
    async fn run(&self) -> Result<TargetOutcome, TargetOutcome> {
        let mut stream = self.connect().await?;
        let data = self.request(&mut stream).await?;
        self.close(stream).await;
        if !self.opts.command.dump {
            return Ok(TargetOutcome::Reset {
                elapsed_ms: self.elapsed_ms(),
            });
        }
        Ok(self.write(data).await)
    }

    fn secs(&self) -> f64 {
        self.opts.timeout.as_secs_f64()
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn connect(&self) -> Result<Box<dyn AgentStream>, TargetOutcome> {
        let connect = self.target.transport.connect(self.opts.kube.as_ref());
        match tokio::time::timeout_at(self.deadline, connect).await {
            Err(_) => Err(TargetOutcome::NoAgent {
                reason: format!("no answer to the connection within {}s", self.secs()),
            }),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(TargetOutcome::NoAgent {
                    reason: "connection refused (no agent listening)".into(),
                })
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(TargetOutcome::Failed {
                    reason: format!("cannot connect: {e}"),
                })
            }
            Ok(Err(e)) => Err(TargetOutcome::NoAgent {
                reason: format!("cannot connect: {e}"),
            }),
            Ok(Ok(s)) => Ok(s),
        }
    }

    async fn request(&self, stream: &mut Box<dyn AgentStream>) -> Result<ExecData, TargetOutcome> {
        match tokio::time::timeout_at(self.deadline, dump(stream, self.opts.command)).await {
            Err(_) => Err(TargetOutcome::Failed {
                reason: format!("the dump did not finish within {}s", self.secs()),
            }),
            // Through a port-forward, "nothing listens" only shows once the stream is used.
            Ok(Err(CoverageError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                Err(TargetOutcome::NoAgent {
                    reason: source.to_string(),
                })
            }
            Ok(Err(e)) => Err(TargetOutcome::Failed {
                reason: e.to_string(),
            }),
            Ok(Ok(d)) => Ok(d),
        }
    }

    /// Closing at once after `20` is what JaCoCo's own client does; the agent goes back to
    /// accepting the next connection. The answer is complete: a slow or failed close (e.g. the
    /// API server not finishing the WebSocket handshake) does not undo the dump.
    async fn close(&self, mut stream: Box<dyn AgentStream>) {
        let close_by = self.deadline.min(tokio::time::Instant::now() + CLOSE_GRACE);
        let _ = tokio::time::timeout_at(close_by, tokio::io::AsyncWriteExt::shutdown(&mut stream))
            .await;
    }

    async fn write(&self, data: ExecData) -> TargetOutcome {
        let file = self.opts.out_dir.join(exec_file_name(&self.target.name));
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
                elapsed_ms: self.elapsed_ms(),
            },
            Ok(Err(e)) => TargetOutcome::Failed {
                reason: e.to_string(),
            },
            Err(e) => TargetOutcome::Failed {
                reason: format!("writing {}: {e}", file.display()),
            },
        }
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

/// Refuses target names that cannot name a file in the output folder.
///
/// # Errors
/// On an empty name, a path separator, a leading dot, or a name used twice.
pub fn check_target_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if n.is_empty() || n.starts_with('.') || n.contains(['/', '\\', '\0']) {
            return Err(format!(
                "target name `{n}` cannot name an exec file (use the pod name)"
            ));
        }
        if !seen.insert(n) {
            return Err(format!("target name `{n}` is used twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const ANSWER: &[u8] = &[
        0x01, 0xC0, 0xC0, 0x10, 0x07, //
        0x10, 0x00, 0x01, b'p', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, //
        0x11, 0, 0, 0, 0, 0, 0, 0, 9, 0x00, 0x01, b'A', 0x01, 0x01, //
        0x20,
    ];

    /// A fake agent: reads the 8-byte command, then answers with `answer` (or hangs).
    async fn agent(answer: Option<&'static [u8]>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut cmd = [0u8; 8];
            s.read_exact(&mut cmd).await.unwrap();
            match answer {
                Some(a) => s.write_all(a).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(60)).await,
            }
        });
        addr
    }

    fn target(name: &str, address: String) -> DumpTarget {
        DumpTarget {
            name: name.into(),
            transport: Transport::Direct { address },
        }
    }

    #[tokio::test]
    async fn each_target_gets_its_own_outcome_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let targets = vec![
            target("good-5d6f7-bcdfg", agent(Some(ANSWER)).await),
            target(
                "cut-5d6f7-bcdfg",
                agent(Some(&ANSWER[..ANSWER.len() - 1])).await,
            ),
            target("hang-5d6f7-bcdfg", agent(None).await),
            target("none-5d6f7-bcdfg", refused),
        ];
        let opts = DumpAllOptions {
            command: DumpCommand {
                dump: true,
                reset: true,
            },
            timeout: Duration::from_millis(500),
            concurrency: 8,
            out_dir: dir.path().to_path_buf(),
            kube: None,
        };
        let started = Instant::now();
        let mut seen = 0;
        let r = dump_all(&targets, &opts, |_| seen += 1).await;
        // Concurrent: the hung target costs its timeout once, not per target.
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(seen, 4);
        let TargetOutcome::Dumped { file, sessions, .. } = &r[0].outcome else {
            panic!("{:?}", r[0]);
        };
        assert_eq!(sessions, &["p"]);
        let back = ExecData::parse(&std::fs::read(file).unwrap()).unwrap();
        assert_eq!(back.classes[0].name, "A");
        assert!(
            matches!(&r[1].outcome, TargetOutcome::Failed { reason } if reason.contains("command-ok"))
        );
        assert!(
            matches!(&r[2].outcome, TargetOutcome::Failed { reason } if reason.contains("did not finish"))
        );
        assert!(
            matches!(&r[3].outcome, TargetOutcome::NoAgent { reason } if reason.contains("refused"))
        );
        // Only the good dump left a file; failures leave nothing half-written.
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn target_names_must_name_files() {
        assert!(check_target_names(["a-1", "b-2"]).is_ok());
        assert!(check_target_names(["../x"]).is_err());
        assert!(check_target_names([""]).is_err());
        let e = check_target_names(["a", "a"]).unwrap_err();
        assert!(e.contains("used twice"), "{e}");
    }
}
