//! `shell`: runs a command (argv or `sh -c`) `iterations` times, output to the step log.
//! With `recover:`, the step is a fault: the recover command is put in the fault ledger before
//! `run` starts and is executed on every exit path of the run.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::api::command_env::{resolve_workdir, run_env};
use super::process::{run_framed, run_logged, secret_values, tail_lines, Command, Finished, Spawn};
use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::diag::{Code, PlanDiag};
use crate::plan::node::Node;
use crate::plan::template::EnvSource;
use crate::plan::Duration;
use crate::steps::api::fault_details::{
    FaultParams, InjectionDetails, RecoveryReport, ShellParams,
};
use crate::steps::api::faults::{FaultRecord, RecoverCtx};
use crate::steps::api::secrets::restore;

/// Runs a command.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    /// The command: a string runs under `sh -c`, a list is argv.
    pub run: Command,
    /// Working directory; relative paths are relative to the plan file's folder (the default).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// How many times to run the command; the step fails on the first non-zero exit.
    #[serde(default = "one")]
    pub iterations: u32,
    /// Pause between iterations.
    #[serde(default)]
    pub pause: Option<Duration>,
    /// A command that undoes `run`. It makes this step a fault: written to the fault ledger
    /// before `run` starts and executed when the run ends — on success, failure, timeout or
    /// interruption — unless recovered earlier.
    #[serde(default)]
    pub recover: Option<Command>,
}

/// A missing `workdir`, said as a missing folder, naming the variable (read with `env()`) its
/// path came from, so the reader knows what to set.
fn missing_workdir(resolved: &Path, given: Option<&Path>, sources: &[EnvSource]) -> String {
    let folder = format!(
        "the step's `workdir` folder {} does not exist",
        resolved.display()
    );
    let given = given.map(|g| g.display().to_string()).unwrap_or_default();
    let source = sources
        .iter()
        .filter(|s| !s.value.is_empty() && given.starts_with(&s.value))
        .max_by_key(|s| s.value.len());
    match source {
        Some(s) if s.set => format!(
            "{folder}: it comes from {}={}; point {} at an existing folder",
            s.name, s.value, s.name
        ),
        Some(s) => format!(
            "{folder}: it comes from {}, which is not set (the plan's default `{}` was used); \
             set {} to the folder this step runs in",
            s.name, s.value, s.name
        ),
        None => folder,
    }
}

fn one() -> u32 {
    1
}

/// What the ledger keeps to run `recover` without the plan.
#[derive(Debug, Serialize, Deserialize)]
struct ShellRecovery {
    command: Command,
    workdir: PathBuf,
    env: Vec<(String, String)>,
}

impl StepConfig for ShellConfig {
    const KIND: &'static str = "shell";
    const ABOUT: &'static str =
        "runs a command (argv or `sh -c`), `iterations` times, output to the step log";
    const RECOVER: Option<super::RecoverFn> = Some(recover_shell);
}

#[async_trait::async_trait]
impl Step for ShellConfig {
    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        if self.iterations == 0 {
            let at = node.get("iterations").map_or(&node.span, |n| &n.span);
            diags.push(
                PlanDiag::new(
                    Code::InvalidValue,
                    "`iterations` must be at least 1",
                    Some(at),
                )
                .label("runs nothing"),
            );
        }
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let workdir = resolve_workdir(ctx.plan_dir(), self.workdir.as_deref());
        // Said plainly, not as "cannot start `sh` in …: No such file or directory" (which
        // reads as if `sh` were missing).
        if !workdir.is_dir() {
            return Err(StepError::failed(missing_workdir(
                &workdir,
                self.workdir.as_deref(),
                ctx.env_sources(),
            )));
        }
        let secrets = crate::traffic::RecordOptions::new(0, &[], &[])
            .with_secret_values(secret_values(ctx.env(), []));
        let outputs_file = fresh_outputs_file(ctx)?;
        let mut env = run_env(ctx);
        env.push(("TTPLAN_OUTPUTS".into(), outputs_file.display().to_string()));
        self.register_recovery(ctx, &workdir, &env).await?;
        let runner = Runner {
            step: self,
            ctx,
            workdir,
            env,
            log: ctx.log_path(),
            secrets,
        };
        let (last_code, runs) = runner.run_all().await?;
        if self.recover.is_some() {
            // The command succeeded: the fault registered by the first attempt is in place.
            if let Some(fault) = ctx.registered_fault().await {
                fault.injected(InjectionDetails::None).await?;
            }
        }
        let mut out = StepOutputs::default()
            .value("exit_code", last_code)
            .value("iterations", runs);
        for (k, v) in read_outputs_file(&outputs_file)? {
            out.values.insert(k, v.into());
        }
        Ok(out)
    }
}

impl ShellConfig {
    /// With `recover:`, puts the recover command in the fault ledger before the first
    /// attempt runs; it is marked injected by whichever attempt succeeds.
    async fn register_recovery(
        &self,
        ctx: &StepCtx,
        workdir: &Path,
        env: &[(String, String)],
    ) -> Result<(), StepError> {
        let Some(recover) = &self.recover else {
            return Ok(());
        };
        if ctx.attempt() != 1 {
            return Ok(());
        }
        let recovery = ShellRecovery {
            command: recover.clone(),
            workdir: workdir.to_path_buf(),
            env: env.to_vec(),
        };
        let recovery = serde_json::to_value(&recovery).map_err(StepError::failed)?;
        let params = FaultParams::Shell(ShellParams {
            run: serde_json::to_value(&self.run).map_err(StepError::failed)?,
            recover: serde_json::to_value(recover).map_err(StepError::failed)?,
        });
        let _registered = ctx.register_fault(Self::KIND, recovery, params).await?;
        Ok(())
    }
}

/// `steps/<step>.outputs`, for the command to write; what a failed earlier attempt wrote is
/// removed, since outputs describe this attempt.
fn fresh_outputs_file(ctx: &StepCtx) -> Result<PathBuf, StepError> {
    let outputs_file = ctx
        .run_dir()
        .join("steps")
        .join(format!("{}.outputs", ctx.step_name()));
    match std::fs::remove_file(&outputs_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StepError::io(format!(
            "removing {}",
            outputs_file.display()
        ))(e)),
        _ => Ok(outputs_file),
    }
}

/// What the iterations of one attempt share.
struct Runner<'a> {
    step: &'a ShellConfig,
    ctx: &'a StepCtx,
    workdir: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// The step's secret values, scrubbed from the log after each iteration.
    secrets: crate::traffic::RecordOptions,
}

impl Runner<'_> {
    /// Runs the iterations, pausing between them; stops at the first failure. The last exit
    /// code and one `{iteration, exit_code, duration_ms}` per iteration.
    async fn run_all(&self) -> Result<(Option<i32>, Vec<serde_json::Value>), StepError> {
        let ctx = self.ctx;
        let total = self.step.iterations;
        let mut runs = Vec::new();
        let mut last_code = None;
        for i in 1..=total {
            if i > 1 {
                if let Some(pause) = self.step.pause {
                    ctx.progress(format!("pause {pause} before iteration {i}/{total}"));
                    tokio::select! {
                        () = tokio::time::sleep(pause.get()) => {}
                        () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
                    }
                }
            }
            if total > 1 {
                ctx.progress(format!("iteration {i}/{total}"));
            }
            let done = self.iteration(i).await?;
            last_code = done.code();
            runs.push(serde_json::json!({
                "iteration": i,
                "exit_code": done.code(),
                "duration_ms": done.elapsed.as_millis() as u64,
            }));
            if !done.status.success() {
                return Err(StepError::Failed(self.failure(i, &done)));
            }
        }
        Ok((last_code, runs))
    }

    /// One run of the command, framed in the log by what ran and how it ended.
    async fn iteration(&self, i: u32) -> Result<Finished, StepError> {
        let (ctx, total) = (self.ctx, self.step.iterations);
        let mut iter_env = self.env.clone();
        iter_env.push(("TTPLAN_ITERATION".into(), i.to_string()));
        let spawn = Spawn {
            command: &self.step.run,
            workdir: &self.workdir,
            env: iter_env,
            log: &self.log,
            groups: ctx.child_groups(),
            cancel: ctx.cancel_token(),
        };
        let header = format!(
            "attempt {} iteration {i}/{total}: {}",
            ctx.attempt(),
            self.step.run
        );
        run_framed(ctx, &header, spawn, &self.secrets).await
    }

    /// A failed iteration: the command, how it ended, and the end of the log.
    fn failure(&self, i: u32, done: &Finished) -> String {
        let tail = tail_lines(&self.log, 8);
        let mut msg = format!(
            "`{}` failed with {} (iteration {i}/{}); log: {}",
            self.step.run,
            done.describe(),
            self.step.iterations,
            self.log.display()
        );
        if !tail.is_empty() {
            msg.push_str("\n  | ");
            msg.push_str(&tail.replace('\n', "\n  | "));
        }
        msg
    }
}

/// `key=value` lines a command wrote to `$TTPLAN_OUTPUTS`; later lines win.
fn read_outputs_file(path: &Path) -> Result<IndexMap<String, String>, StepError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IndexMap::new()),
        Err(e) => return Err(StepError::io(format!("reading {}", path.display()))(e)),
    };
    let mut out = IndexMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(StepError::failed(format!(
                "{}:{}: expected `key=value`, found `{line}`",
                path.display(),
                n + 1
            )));
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

fn recover_shell<'a>(
    record: &'a FaultRecord,
    ctx: &'a RecoverCtx,
) -> BoxFuture<'a, Result<Option<RecoveryReport>, String>> {
    Box::pin(async move {
        let mut r: ShellRecovery = serde_json::from_value(record.recovery.clone())
            .map_err(|e| format!("fault `{}`: unreadable recovery data: {e}", record.id))?;
        // A ledger read back from disk holds `${env:NAME}` where secrets were.
        for (_, v) in &mut r.env {
            *v = restore(v)?;
        }
        r.command = match r.command {
            Command::Sh(s) => Command::Sh(restore(&s)?),
            Command::Argv(a) => {
                Command::Argv(a.iter().map(|x| restore(x)).collect::<Result<_, _>>()?)
            }
        };
        if let Some(dir) = ctx.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let never = CancellationToken::new();
        let done = run_logged(Spawn {
            command: &r.command,
            workdir: &r.workdir,
            env: r.env,
            log: &ctx.log_path,
            groups: &ctx.children,
            cancel: &never,
        })
        .await
        .map_err(|e| e.to_string())?;
        if done.status.success() {
            Ok(None)
        } else {
            Err(format!(
                "`{}` failed with {}; log: {}",
                r.command,
                done.describe(),
                ctx.log_path.display()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, value: &str, set: bool) -> EnvSource {
        EnvSource {
            name: name.into(),
            value: value.into(),
            set,
        }
    }

    #[test]
    fn a_missing_workdir_names_the_variable_its_path_came_from() {
        let sources = [
            source("TT_NAMESPACE", "default", false),
            source("TRAIN_TICKET_DIR", "../../train-ticket", false),
        ];
        let m = missing_workdir(
            Path::new("/p/plans/../../train-ticket"),
            Some(Path::new("../../train-ticket")),
            &sources,
        );
        assert!(
            m.starts_with("the step's `workdir` folder /p/plans/../../train-ticket does not exist: it comes from TRAIN_TICKET_DIR, which is not set"),
            "{m}"
        );
        let set = [source("TRAIN_TICKET_DIR", "/srv/tt", true)];
        let m = missing_workdir(
            Path::new("/srv/tt/sub"),
            Some(Path::new("/srv/tt/sub")),
            &set,
        );
        assert!(m.ends_with("it comes from TRAIN_TICKET_DIR=/srv/tt; point TRAIN_TICKET_DIR at an existing folder"), "{m}");
        // A path no variable set: just the folder.
        let m = missing_workdir(Path::new("/x"), Some(Path::new("/x")), &set);
        assert_eq!(m, "the step's `workdir` folder /x does not exist");
    }
}
