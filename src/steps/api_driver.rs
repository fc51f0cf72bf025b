//! `api-driver`: runs a traffic driver (an EvoMaster-generated suite, a scenario script)
//! `iterations` times against the system under test. With `record:`, a recording reverse
//! proxy ([`crate::traffic`]) sits in front of the system for the whole step and the driver is
//! pointed at it, so the API-response modality does not depend on what the driver writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::api::command_env::{resolve_workdir, run_env};
use super::process::{run_framed, secret_values, tail_lines, Command, Finished, Spawn};
use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::diag::{Code, PlanDiag};
use crate::plan::node::Node;
use crate::plan::template::Templates;
use crate::plan::Duration;
use crate::traffic::login::{fetch_token, Login};
use crate::traffic::proxy::upstream_base;
use crate::traffic::record::RecordTags;
use crate::traffic::{Phase, Proxy, ProxyOptions, RecordOptions, RecordWriter, Recorded};

/// How long the recorder may take to write out its last lines once the proxy stopped.
const RECORDER_FINISH: StdDuration = StdDuration::from_secs(10);

/// Runs a traffic driver, optionally behind a recording proxy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiDriverConfig {
    /// The driver: a string runs under `sh -c`, a list is argv (e.g.
    /// `[python3, tests/em_test.py]`). Give `run` or `suites`, not both.
    #[serde(default)]
    pub run: Option<Command>,
    /// Several drivers, run one after another in every iteration.
    #[serde(default)]
    pub suites: Vec<Command>,
    /// Working directory; relative paths are relative to the plan file's folder (the default).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// How many times to run the driver (all `suites`, in order, per iteration).
    #[serde(default = "one")]
    pub iterations: u32,
    /// Pause between iterations.
    #[serde(default)]
    pub pause: Option<Duration>,
    /// The system's API base URL (`http://host:port`), passed to the driver as `TT_BASE_URL`.
    /// With `record`, give it here or as `record.upstream`. Without either, the driver keeps
    /// whatever `TT_BASE_URL` its environment has.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Log in before the first iteration and pass the token as `TT_AUTH_TOKEN`. Without it,
    /// `TT_AUTH_TOKEN` comes from the environment (e.g. the step's `env:`).
    #[serde(default)]
    pub login: Option<LoginConfig>,
    /// Fail the step when a driver run exits non-zero (failing test cases). By default exit
    /// codes are only recorded in the outputs: a failing test is still traffic.
    #[serde(default)]
    pub fail_on_driver_error: bool,
    /// Record every request/response pair through a reverse proxy into
    /// `api_responses.jsonl`.
    #[serde(default)]
    pub record: Option<RecordConfig>,
}

/// A login request made by the step itself, straight to the system (not recorded).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Login endpoint: a path relative to the system's base URL, or an absolute `http://` URL.
    #[serde(default = "default_login_url")]
    pub url: String,
    /// Sent as `{"username": …, "password": …}` in a POST.
    pub username: String,
    pub password: String,
    /// Dotted path of the token in the JSON answer (Train-Ticket: `data.token`).
    #[serde(default = "default_token_path")]
    pub token_path: String,
    /// How long the login may take.
    #[serde(default = "default_login_timeout")]
    pub timeout: Duration,
}

/// Where and how traffic is recorded.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// The system's base URL (`http://host:port[/prefix]`) the proxy forwards to; or give it
    /// as the step's `base_url`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// The JSONL file, relative to the output root. Default:
    /// `api_responses/<exp_name>/<YYYYMMDD of the run start, UTC>/api_responses.jsonl`.
    /// Steps (and retries) recording to the same file add to it, each step's lines together.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Bodies longer than this are cut in the record (`body_truncated: true`); the client
    /// still receives all of it.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Headers to redact, on top of Authorization, Proxy-Authorization, Cookie and Set-Cookie.
    #[serde(default)]
    pub redact_headers: Vec<String>,
    /// JSON fields and query/form parameters to redact at any depth, on top of `password` and
    /// `token`.
    #[serde(default)]
    pub redact_fields: Vec<String>,
}

fn one() -> u32 {
    1
}
fn default_login_url() -> String {
    "/api/v1/users/login".into()
}
fn default_token_path() -> String {
    "data.token".into()
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}

impl StepConfig for ApiDriverConfig {
    const KIND: &'static str = "api-driver";
    const ABOUT: &'static str = "runs a traffic driver `iterations` times; with `record`, \
        records every request/response through a reverse proxy into api_responses.jsonl";
}

impl ApiDriverConfig {
    fn suites(&self) -> Vec<&Command> {
        self.run.iter().chain(&self.suites).collect()
    }

    /// The system's base URL, from `base_url` or `record.upstream`.
    fn system_url(&self) -> Option<&str> {
        self.base_url
            .as_deref()
            .or_else(|| self.record.as_ref().and_then(|r| r.upstream.as_deref()))
    }
}

/// The login token as a named secret value (the driver gets it as `TT_AUTH_TOKEN`).
fn login_secret(token: Option<&str>) -> Option<(String, String)> {
    token.map(|t| ("TT_AUTH_TOKEN".to_string(), t.to_string()))
}

fn diag(node: &Node, field: &str, msg: String) -> PlanDiag {
    let span = node.get(field).map_or(&node.span, |n| &n.span);
    PlanDiag::new(Code::InvalidValue, msg, Some(span))
}

fn check_url(url: &str) -> Result<(), String> {
    // Runtime references are rendered at step start; they are checked then.
    if Templates::is_template(url) {
        return Ok(());
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    upstream_base(&uri).map(drop)
}

#[async_trait::async_trait]
impl Step for ApiDriverConfig {
    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        match (&self.run, self.suites.is_empty()) {
            (None, true) => diags.push(
                PlanDiag::new(
                    Code::MissingField,
                    "api-driver needs a driver: `run` or `suites`",
                    Some(&node.span),
                )
                .help("e.g. `run: [python3, em_tests.py]`"),
            ),
            (Some(_), false) => diags.push(diag(
                node,
                "suites",
                "give `run` or `suites`, not both".into(),
            )),
            _ => {}
        }
        if self.iterations == 0 {
            diags.push(diag(
                node,
                "iterations",
                "iterations must be at least 1".into(),
            ));
        }
        let upstream = self.record.as_ref().and_then(|r| r.upstream.as_ref());
        if self.base_url.is_some() && upstream.is_some() {
            diags.push(diag(
                node,
                "base_url",
                "the system's URL is given twice: keep `base_url` or `record.upstream`".into(),
            ));
        }
        // Only the proxy and the login speak to the system themselves (plain HTTP); a driver
        // alone may use any URL.
        let speaks_to_system = self.record.is_some() || self.login.is_some();
        if let (Some(url), true) = (&self.base_url, speaks_to_system) {
            if let Err(e) = check_url(url) {
                diags.push(diag(node, "base_url", e));
            }
        }
        if let (Some(url), Some(rec)) = (upstream, node.get("record")) {
            if let Err(e) = check_url(url) {
                diags.push(diag(rec, "upstream", e));
            }
        }
        if self.record.is_some() && self.system_url().is_none() {
            diags.push(
                diag(node, "record", "`record` needs the system's URL".into())
                    .help("set `record.upstream` (or the step's `base_url`)"),
            );
        }
        if let Some(login) = &self.login {
            if login.url.starts_with('/') && self.system_url().is_none() {
                diags.push(
                    diag(
                        node,
                        "login",
                        format!(
                            "login URL `{}` is relative but the step has no base URL",
                            login.url
                        ),
                    )
                    .help("set `base_url` or `record.upstream`, or give an absolute login URL"),
                );
            } else if !login.url.starts_with('/') {
                if let Err(e) = check_url(&login.url) {
                    diags.push(diag(node, "login", e));
                }
            }
        }
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let system = self.system_url().map(str::to_string);
        let token = match &self.login {
            Some(login) => Some(run_login(ctx, login, system.as_deref()).await?),
            None => None,
        };

        let recording = match &self.record {
            Some(rec) => {
                Some(Recording::start(ctx, rec, system.as_deref(), token.as_deref()).await?)
            }
            None => None,
        };
        let base_url = recording.as_ref().map(|r| r.proxy.url()).or(system.clone());

        // Values the driver may send or print that must not reach the records or the log.
        let secrets = RecordOptions::new(0, &[], &[])
            .with_secret_values(secret_values(ctx.env(), login_secret(token.as_deref())));
        let mut env = run_env(ctx);
        env.push(("TT_EM_RUN_ID".into(), ctx.run_id().to_string()));
        if let Some(url) = &base_url {
            env.push(("TT_BASE_URL".into(), url.clone()));
        }
        if let Some(t) = token {
            env.push(("TT_AUTH_TOKEN".into(), t));
        }
        let phase = recording.as_ref().map(|r| Arc::clone(&r.phase));

        let driven = self.drive(ctx, env, phase.as_deref(), &secrets).await;
        // The JSONL is completed on every path, cancellation included.
        let recorded = match recording {
            Some(r) => Some(r.stop().await),
            None => None,
        };
        let runs = driven?;
        let recorded = recorded.transpose()?;

        let failures = runs.iter().filter(|r| r.exit_code != Some(0)).count();
        let mut out = StepOutputs::default()
            .value("exit_code", runs.last().and_then(|r| r.exit_code))
            .value("driver_failures", failures)
            .value(
                "iterations",
                runs.iter().map(DriverRun::to_json).collect::<Vec<_>>(),
            );
        if let Some(url) = &system {
            out = out
                .value("upstream", url.clone())
                .endpoint("system", url, "plan");
        }
        if let Some((rec, addr)) = recorded {
            let rel = rec
                .path
                .strip_prefix(ctx.out_dir())
                .map_or_else(|_| rec.path.clone(), Path::to_path_buf);
            ctx.progress(format!(
                "{} request(s) recorded ({} upstream error(s))",
                rec.records, rec.upstream_errors
            ));
            out = out
                .value("proxy_addr", addr)
                .value("records", rec.records)
                .value("upstream_errors", rec.upstream_errors)
                .value("api_responses", rel.display().to_string());
            out.artifacts.push(rel);
        }
        Ok(out)
    }
}

/// One run of one suite.
struct DriverRun {
    iteration: u32,
    suite: u32,
    command: String,
    exit_code: Option<i32>,
    duration_ms: u64,
}

impl DriverRun {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "iteration": self.iteration,
            "suite": self.suite,
            "command": self.command,
            "exit_code": self.exit_code,
            "duration_ms": self.duration_ms,
        })
    }
}

impl ApiDriverConfig {
    async fn drive(
        &self,
        ctx: &StepCtx,
        env: Vec<(String, String)>,
        phase: Option<&Phase>,
        secrets: &RecordOptions,
    ) -> Result<Vec<DriverRun>, StepError> {
        let workdir = resolve_workdir(ctx.plan_dir(), self.workdir.as_deref());
        let log = ctx.log_path();
        let suites = self.suites();
        let total = self.iterations.max(1);
        let mut runs = Vec::new();
        for i in 1..=total {
            if i > 1 {
                if let Some(pause) = self.pause {
                    ctx.progress(format!("pause {pause} before iteration {i}/{total}"));
                    tokio::select! {
                        () = tokio::time::sleep(pause.get()) => {}
                        () = ctx.cancel_token().cancelled() => return Err(StepError::Cancelled),
                    }
                }
            }
            for (s, command) in suites.iter().enumerate() {
                let s = s as u32 + 1;
                let which = if suites.len() > 1 {
                    format!("iteration {i}/{total}, suite {s}/{}", suites.len())
                } else {
                    format!("iteration {i}/{total}")
                };
                ctx.progress(format!("{which}: {command}"));
                if let Some(p) = phase {
                    p.set(i, s);
                }
                let mut run_env = env.clone();
                run_env.push(("TTPLAN_ITERATION".into(), i.to_string()));
                run_env.push(("TTPLAN_SUITE".into(), s.to_string()));
                let done = run_suite(ctx, command, &which, run_env, &workdir, secrets).await?;
                runs.push(DriverRun {
                    iteration: i,
                    suite: s,
                    command: command.to_string(),
                    exit_code: done.code(),
                    duration_ms: done.elapsed.as_millis() as u64,
                });
                if !done.status.success() {
                    ctx.progress(format!("{which}: driver {}", done.describe()));
                    if self.fail_on_driver_error {
                        return Err(driver_failed(command, &done, &which, &log));
                    }
                }
            }
        }
        Ok(runs)
    }
}

/// One run of one suite, between two marker lines in the step log (secrets scrubbed).
async fn run_suite(
    ctx: &StepCtx,
    command: &Command,
    which: &str,
    env: Vec<(String, String)>,
    workdir: &Path,
    secrets: &RecordOptions,
) -> Result<Finished, StepError> {
    let log = ctx.log_path();
    let spawn = Spawn {
        command,
        workdir,
        env,
        log: &log,
        groups: ctx.child_groups(),
        cancel: ctx.cancel_token(),
    };
    let header = format!("attempt {} {which}: {command}", ctx.attempt());
    run_framed(ctx, &header, spawn, secrets).await
}

/// A failed driver run, with the end of its log.
fn driver_failed(command: &Command, done: &Finished, which: &str, log: &Path) -> StepError {
    let mut msg = format!(
        "driver `{command}` failed with {} ({which}); log: {}",
        done.describe(),
        log.display()
    );
    let tail = tail_lines(log, 8);
    if !tail.is_empty() {
        msg.push_str("\n  | ");
        msg.push_str(&tail.replace('\n', "\n  | "));
    }
    StepError::Failed(msg)
}

/// The proxy and its writer, alive for the duration of the step.
struct Recording {
    proxy: Proxy,
    writer: RecordWriter,
    phase: Arc<Phase>,
}

impl Recording {
    async fn start(
        ctx: &StepCtx,
        rec: &RecordConfig,
        system: Option<&str>,
        login_token: Option<&str>,
    ) -> Result<Recording, StepError> {
        let upstream = system.ok_or_else(|| {
            StepError::failed("`record` needs the system's URL: set `record.upstream`")
        })?;
        let uri: http::Uri = upstream.parse().map_err(|e| {
            StepError::failed(format!("record.upstream `{upstream}` is not a URL: {e}"))
        })?;
        let rel = rec.path.clone().unwrap_or_else(|| {
            PathBuf::from("api_responses")
                .join(ctx.exp_name())
                .join(ctx.run_started_at().format("%Y%m%d").to_string())
                .join("api_responses.jsonl")
        });
        let path = ctx.out_dir().join(rel);
        let (writer, sink) = RecordWriter::create(&path)
            .map_err(StepError::io(format!("creating {}", path.display())))?;
        let opts = ProxyOptions {
            upstream: uri,
            record: RecordOptions::new(rec.max_body_bytes, &rec.redact_headers, &rec.redact_fields)
                .with_secret_values(secret_values(ctx.env(), login_secret(login_token))),
            tags: RecordTags {
                run_id: ctx.run_id().to_string(),
                exp_name: ctx.exp_name().to_string(),
                step: ctx.step_name().to_string(),
                attempt: ctx.attempt(),
            },
        };
        let phase = Arc::new(Phase::default());
        let proxy = Proxy::start(opts, Arc::clone(&phase), sink)
            .await
            .map_err(|e| StepError::failed(format!("starting the recording proxy: {e}")))?;
        ctx.progress(format!(
            "recording {} → {upstream} into {}",
            proxy.url(),
            path.display()
        ));
        Ok(Recording {
            proxy,
            writer,
            phase,
        })
    }

    /// Stops the proxy, then completes the JSONL; returns it with the proxy's address.
    async fn stop(self) -> Result<(Recorded, String), StepError> {
        let addr = self.proxy.addr().to_string();
        self.proxy.shutdown().await;
        let path = self.writer.path().to_path_buf();
        match tokio::time::timeout(RECORDER_FINISH, self.writer.finish()).await {
            Ok(Ok(rec)) => Ok((rec, addr)),
            Ok(Err(e)) => Err(StepError::io(format!("writing {}", path.display()))(e)),
            Err(_) => Err(StepError::failed(format!(
                "the recorder of {} did not finish within {}s",
                path.display(),
                RECORDER_FINISH.as_secs()
            ))),
        }
    }
}

/// Logs in, within the login's timeout and until cancelled.
async fn run_login(
    ctx: &StepCtx,
    login: &LoginConfig,
    system: Option<&str>,
) -> Result<String, StepError> {
    let url = match (login.url.starts_with('/'), system) {
        (true, Some(base)) => format!("{}{}", base.trim_end_matches('/'), login.url),
        (true, None) => {
            return Err(StepError::failed(format!(
                "login URL `{}` is relative but the step has no base URL",
                login.url
            )))
        }
        (false, _) => login.url.clone(),
    };
    ctx.progress(format!("logging in as {} at {url}", login.username));
    let fetch = fetch_token(Login {
        url: &url,
        username: &login.username,
        password: &login.password,
        token_path: &login.token_path,
    });
    tokio::select! {
        r = tokio::time::timeout(login.timeout.get(), fetch) => match r {
            Ok(r) => r.map_err(StepError::Failed),
            Err(_) => Err(StepError::failed(format!(
                "login at {url}: no answer within {}", login.timeout
            ))),
        },
        () = ctx.cancel_token().cancelled() => Err(StepError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_train_ticket() {
        let c: ApiDriverConfig = serde_json::from_value(serde_json::json!({
            "run": ["python3", "t.py"],
            "login": {"username": "fdse_microservice", "password": "111111"},
            "record": {"upstream": "http://127.0.0.1:8080"}
        }))
        .unwrap();
        let login = c.login.as_ref().unwrap();
        assert_eq!(login.url, "/api/v1/users/login");
        assert_eq!(login.token_path, "data.token");
        assert_eq!(c.record.as_ref().unwrap().max_body_bytes, 65536);
        assert_eq!(c.iterations, 1);
        assert!(!c.fail_on_driver_error);
        assert_eq!(c.system_url(), Some("http://127.0.0.1:8080"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_value::<ApiDriverConfig>(serde_json::json!({
            "run": "x", "record": {"upstream": "http://h", "max_body": 1}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `max_body`"), "{e}");
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert!(check_url("http://h:1/p").is_ok());
        assert!(check_url("{{ steps.a.outputs.url }}").is_ok());
        assert!(check_url("https://h")
            .unwrap_err()
            .contains("only http:// upstreams"));
        assert!(check_url("h:8080").is_err());
    }
}
