//! `collect-logs`: container logs of the selected pods since the run window start, the
//! namespace's events and a collection report, under `log_data/<EXP_NAME>/`. This module only
//! turns plan fields into [`crate::collect::logs::Settings`] and applies `require`; the
//! collector is there.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Step, StepConfig, StepCtx, StepError, StepOutputs};
use crate::collect::logs::{self, Collection, LogsError, Settings};
use crate::collect::parse_time;
use crate::collect::window::{Empty, Floor, Lookback, WindowSpec};
use crate::diag::{Code, PlanDiag};
use crate::plan::node::Node;
use crate::plan::template::Templates;
use crate::plan::Duration;

/// When the step counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// At least one log file was written (default): errors are reported, only a collection
    /// that got nothing fails.
    #[default]
    Any,
    /// Every selected log and the events were collected without error.
    All,
    /// Never fail because of what could not be collected (best effort).
    None,
}

/// Collects container logs, events and a report.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectLogsConfig {
    /// Namespace; default `-n`, else the context's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Label selector (`app=ts-order-service`, `tier in (web)`).
    #[serde(default)]
    pub selector: Option<String>,
    /// Only pods whose names start with one of these (all pods when empty).
    #[serde(default)]
    pub name_prefixes: Vec<String>,
    /// Window start, RFC 3339 (may be a template such as `{{ steps.inject.started_at }}`);
    /// floored to a whole second. Default: run start − `padding` (unless only `tail` is set).
    /// (`since` is its deprecated name.)
    #[serde(default, rename = "start", alias = "since")]
    pub start: Option<String>,
    /// How far before the run start the default window begins.
    #[serde(default = "default_padding")]
    pub padding: Duration,
    /// Only the last N lines of each log. Alone, it replaces the time window; with `start`,
    /// both apply.
    #[serde(default)]
    pub tail: Option<u64>,
    /// Also fetch the previous instance's log of containers that restarted.
    #[serde(default = "yes")]
    pub previous: bool,
    /// Prefix every line with the RFC 3339 timestamp the runtime stored it with.
    #[serde(default)]
    pub timestamps: bool,
    /// Cut each log after this many bytes (the API server's `limitBytes`).
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    /// Write the namespace's events to `kubernetes_events_<ts>.json`.
    #[serde(default = "yes")]
    pub events: bool,
    /// Logs streamed at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `any` (default): fail only when no log could be collected; `all`: fail on any error;
    /// `none`: never fail for what could not be collected.
    #[serde(default)]
    pub require: Require,
    /// Log folder, relative to the output root. Default: `log_data/<EXP_NAME>`.
    /// (`dir` is its deprecated name.)
    #[serde(default, rename = "output", alias = "dir")]
    pub dir: Option<String>,
}

fn default_padding() -> Duration {
    Duration::from_secs(60)
}
const fn default_concurrency() -> usize {
    16
}
const fn yes() -> bool {
    true
}

impl StepConfig for CollectLogsConfig {
    const KIND: &'static str = "collect-logs";
    const ABOUT: &'static str =
        "current and previous container logs of selected pods since the run window, events, a report";
}

impl Require {
    /// As the plan spells it.
    const fn name(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::All => "all",
            Self::None => "none",
        }
    }
}

impl CollectLogsConfig {
    /// The plan's fields resolved against the run: namespace (the context's by default), the
    /// window start and the log folder.
    fn settings(
        &self,
        ctx: &StepCtx,
        context_namespace: &str,
        collected_at: DateTime<Utc>,
    ) -> Result<Settings, StepError> {
        let namespace = self
            .namespace
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| context_namespace.to_string());
        let since = WindowSpec {
            start: self.start.as_deref().map(|s| ("start", s)),
            end: None,
            // Only the last lines wanted (`tail` without `start`): no time window.
            default_start: (self.tail.is_none()).then(|| Lookback {
                at: ctx.run_started_at(),
                by: self.padding.get(),
                field: "padding",
            }),
            default_end: None,
            floor: Floor::Always,
            empty: Empty::Allowed,
        }
        .resolve()
        .map_err(StepError::Failed)?
        .start;
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| format!("log_data/{}", ctx.exp_name()));
        Ok(Settings {
            namespace,
            selector: self.selector.clone().filter(|s| !s.trim().is_empty()),
            name_prefixes: self.name_prefixes.clone(),
            since,
            tail_lines: self.tail,
            previous: self.previous,
            timestamps: self.timestamps,
            limit_bytes: self.limit_bytes,
            events: self.events,
            concurrency: self.concurrency.max(1),
            out_dir: ctx.out_dir().to_path_buf(),
            dir: dir.into(),
            collected_at,
        })
    }

    /// Fails the step when the collection falls short of `require`, naming the first errors
    /// (or, when there are none, that no pod matched).
    fn check_require(&self, settings: &Settings, collection: &Collection) -> Result<(), StepError> {
        let report = &collection.report;
        let t = &report.totals;
        let failed = match self.require {
            Require::Any => t.files == 0,
            Require::All => t.errors > 0,
            Require::None => false,
        };
        if !failed {
            return Ok(());
        }
        let mut why: Vec<String> = report
            .errors
            .iter()
            .take(ERRORS_IN_MESSAGE)
            .map(|e| e.message.clone())
            .collect();
        if report.errors.len() > ERRORS_IN_MESSAGE {
            why.push(format!(
                "and {} more",
                report.errors.len() - ERRORS_IN_MESSAGE
            ));
        }
        let namespace = &settings.namespace;
        if why.is_empty() {
            why.push(format!(
                "no pod in namespace {namespace} matched (selector {}, name prefixes [{}])",
                settings.selector.as_deref().unwrap_or("none"),
                settings.name_prefixes.join(", ")
            ));
        }
        Err(StepError::failed(format!(
            "collect-logs (require: {}): {} log file(s) from {} pod(s) in namespace {namespace}, \
             {} error(s); report: {}; {}",
            self.require.name(),
            t.files,
            t.pods,
            t.errors,
            collection.report_path.display(),
            why.join("; ")
        )))
    }
}

/// The step's outputs: the collection's totals, what vanished or failed, where the report is.
fn outputs(settings: &Settings, collection: &Collection) -> StepOutputs {
    let report = &collection.report;
    let t = &report.totals;
    let errors: Vec<String> = report.errors.iter().map(|e| e.message.clone()).collect();
    let vanished: Vec<&str> = report
        .pods
        .iter()
        .filter(|p| p.vanished)
        .map(|p| p.name.as_str())
        .collect();
    let mut out = StepOutputs::default()
        .value("namespace", settings.namespace.clone())
        .value("dir", settings.dir.to_string_lossy().into_owned())
        .value("since", report.window.since.clone())
        .value("pods", t.pods)
        .value("containers", t.containers)
        .value("files", t.files)
        .value("bytes", t.bytes)
        .value("events", t.events)
        .value("skipped", t.skipped)
        .value("vanished_pods", vanished)
        .value("errors", errors)
        .value("report", collection.report_rel.clone())
        .value("elapsed_ms", report.elapsed_ms);
    out.artifacts = collection.artifacts();
    out
}

/// How many errors the failure message names before "and N more".
const ERRORS_IN_MESSAGE: usize = 10;

#[async_trait::async_trait]
impl Step for CollectLogsConfig {
    fn needs_cluster(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StepCtx) -> Result<StepOutputs, StepError> {
        let collected_at = Utc::now();
        let kube = ctx.kube().await?;
        let settings = self.settings(ctx, &kube.namespace, collected_at)?;
        let progress = |m: String| ctx.progress(m);
        let collection = logs::collect(kube, &settings, &progress, ctx.cancel_token())
            .await
            .map_err(|e| match e {
                LogsError::Cancelled => StepError::Cancelled,
                LogsError::Io { path, source } => {
                    StepError::io(format!("writing {}", path.display()))(source)
                }
            })?;
        self.check_require(&settings, &collection)?;
        Ok(outputs(&settings, &collection))
    }

    fn check(&self, node: &Node, diags: &mut Vec<PlanDiag>) {
        let span = |k: &str| node.get(k).map(|n| &n.span).or(Some(&node.span));
        let mut bad = |k: &str, msg: String| {
            diags.push(PlanDiag::new(Code::InvalidValue, msg, span(k)).label("here"));
        };
        if self.concurrency == 0 {
            bad("concurrency", "`concurrency` must be at least 1".into());
        }
        if self.tail == Some(0) {
            bad("tail", "`tail` must be at least 1 line".into());
        }
        if self.limit_bytes == Some(0) {
            bad("limit_bytes", "`limit_bytes` must be at least 1".into());
        }
        if let Some(v) = self.start.as_deref().filter(|v| !Templates::is_template(v)) {
            // Named as the plan spells it (`since` is the old name).
            let field = if node.get("since").is_some() {
                "since"
            } else {
                "start"
            };
            if let Err(e) = parse_time(field, v) {
                bad(field, e);
            }
        }
        if self.name_prefixes.iter().any(|p| p.is_empty()) {
            bad(
                "name_prefixes",
                "an empty name prefix matches every pod; leave `name_prefixes` out instead".into(),
            );
        }
    }
}
