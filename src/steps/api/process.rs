//! Running child processes for steps: argv or `sh -c`, output appended to a log file, each
//! child in its own process group so cancellation (timeout, SIGINT) stops the whole tree.

use std::fmt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::StepError;
pub use crate::child::ChildGroups;
use crate::child::GroupGuard;

/// How long a cancelled process group gets between SIGTERM and SIGKILL, unless
/// `TTPLAN_TERM_GRACE` (a duration: `5s`, `200ms`) says otherwise.
const TERM_GRACE: Duration = Duration::from_secs(5);
const TERM_GRACE_ENV: &str = "TTPLAN_TERM_GRACE";

fn term_grace() -> Duration {
    static GRACE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *GRACE.get_or_init(|| {
        let Ok(text) = std::env::var(TERM_GRACE_ENV) else {
            return TERM_GRACE;
        };
        humantime::parse_duration(&text).unwrap_or_else(|e| {
            eprintln!(
                "warning: {TERM_GRACE_ENV}=`{text}` is not a duration ({e}); using {}",
                humantime::format_duration(TERM_GRACE)
            );
            TERM_GRACE
        })
    })
}

/// A command: a string runs under `sh -c`, a list is an argv run directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Command {
    Sh(String),
    Argv(Vec<String>),
}

impl Command {
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Sh(s) => vec!["sh".into(), "-c".into(), s.clone()],
            Command::Argv(v) => v.clone(),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Sh(s) => f.write_str(s),
            Command::Argv(v) => f.write_str(&v.join(" ")),
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command string (run by `sh -c`) or a non-empty list of arguments")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Command, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("the command is empty"));
                }
                Ok(Command::Sh(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Command, A::Error> {
                let mut argv = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    argv.push(a);
                }
                if argv.is_empty() {
                    return Err(serde::de::Error::custom("the argument list is empty"));
                }
                Ok(Command::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Command {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Command".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A string runs under `sh -c`; a list is argv, run without a shell.",
            "oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string"}, "minItems": 1}
            ]
        })
    }
}

/// One child process run: what to run and where its output goes.
pub struct Spawn<'a> {
    pub command: &'a Command,
    pub workdir: &'a Path,
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here.
    pub log: &'a Path,
    pub groups: &'a ChildGroups,
    pub cancel: &'a CancellationToken,
}

/// Outcome of a finished child.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    pub elapsed: Duration,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown exit status".into(),
        }
    }
}

/// Runs the command to completion, or until `cancel` fires (then the whole group gets
/// SIGTERM, and SIGKILL after a grace period, and the result is [`StepError::Cancelled`]).
///
/// # Errors
/// When the log cannot be opened, the program cannot be started, or on cancellation.
pub async fn run_logged(s: Spawn<'_>) -> Result<Finished, StepError> {
    let argv = s.command.argv();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.log)
        .map_err(StepError::io(format!("opening {}", s.log.display())))?;
    let err_log = log
        .try_clone()
        .map_err(StepError::io(format!("opening {}", s.log.display())))?;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(s.workdir)
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        StepError::failed(format!(
            "cannot start `{}` in {}: {e}",
            argv[0],
            s.workdir.display()
        ))
    })?;
    let pgid = child.id().map_or(0, |p| p as i32);
    s.groups.add(pgid);
    let mut guard = GroupGuard {
        pgid,
        groups: s.groups,
        armed: true,
    };
    let status = tokio::select! {
        status = child.wait() => status.map_err(StepError::io("waiting for the child process"))?,
        () = s.cancel.cancelled() => {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
            if tokio::time::timeout(term_grace(), child.wait()).await.is_err() {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                let _ = child.wait().await;
            }
            // Whatever the group leader left behind goes too.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            guard.armed = false;
            return Err(StepError::Cancelled);
        }
    };
    // Grandchildren that outlive the command would hold the log open and keep running.
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    guard.armed = false;
    Ok(Finished {
        status,
        elapsed: started.elapsed(),
    })
}

/// The last `n` lines of a log, for error messages.
pub fn tail_lines(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(4096);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("--- ")).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Secret values a step's child may print into the step log: the step's `env:` entries (and
/// `extra`, e.g. a login token) and ttplan's own environment variables with secret-like names
/// (`TT_AUTH_TOKEN`, `*PASSWORD*`…), as (name, value).
pub fn secret_values(
    step_env: &indexmap::IndexMap<String, String>,
    extra: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    step_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(extra)
        // `vars()` would panic on a variable that is not UTF-8.
        .chain(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
        .filter(|(k, _)| crate::traffic::record::is_secret_name(k))
        .collect()
}

/// Runs a command into the step log framed by two marker lines, `--- <time> <header>` and how
/// it ended, with the secret values the child printed scrubbed before the closing line.
///
/// # Errors
/// The command cannot start or is cancelled, or the step log cannot be written.
pub async fn run_framed(
    ctx: &super::StepCtx,
    header: &str,
    spawn: Spawn<'_>,
    secrets: &crate::traffic::RecordOptions,
) -> Result<Finished, StepError> {
    ctx.append_log(&format!("--- {} {header}\n", super::command_env::now()))?;
    let log = spawn.log.to_path_buf();
    let done = run_logged(spawn).await?;
    scrub_log(&log, secrets).map_err(StepError::io(format!("writing {}", log.display())))?;
    ctx.append_log(&format!(
        "--- {} {} after {:.3}s\n",
        super::command_env::now(),
        done.describe(),
        done.elapsed.as_secs_f64()
    ))?;
    Ok(done)
}

/// A child writes straight into the step log (a file descriptor), so secret values it printed
/// are replaced once it has exited, before the next attempt or iteration appends.
///
/// # Errors
/// The scrubbed log cannot be written.
pub fn scrub_log(log: &Path, secrets: &crate::traffic::RecordOptions) -> std::io::Result<()> {
    let Ok(bytes) = std::fs::read(log) else {
        return Ok(());
    };
    match secrets.scrub_bytes(&bytes) {
        Some(scrubbed) => crate::atomic_write::write_atomic(log, &scrubbed),
        None => Ok(()),
    }
}
