//! One run's report: reads the manifest and the fault labels, streams every modality it finds
//! through its aggregator, and renders the page.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::api::ApiAgg;
use super::coverage::CoverageRow;
use super::inputs::Inputs;
use super::logs::LogAgg;
use super::metrics::MetricsAgg;
use super::timeline::{Ms, Timeline, Window};
use super::traces::TraceAgg;
use super::ReportError;
use crate::engine::labels::LABELS_FILE;
use crate::engine::manifest::MANIFEST_FILE;

pub const REPORT_FILE: &str = "report.html";
/// Counts the index page reads instead of re-reading every run's data.
pub const SUMMARY_FILE: &str = "report_summary.json";

/// What the manifest says about the run.
#[derive(Debug, Clone, Default)]
pub struct RunMeta {
    pub exp_name: String,
    pub run_id: String,
    pub plan_name: String,
    pub plan_path: String,
    pub description: Option<String>,
    pub status: String,
    pub started: Option<Ms>,
    pub finished: Option<Ms>,
    pub duration_ms: Option<u64>,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// `--context`/`--kubeconfig` of the invocation, and the endpoints collectors used.
    pub cluster: Vec<(String, String)>,
    pub errors: Vec<String>,
    pub out_dir: PathBuf,
    pub steps: Vec<StepRow>,
}

#[derive(Debug, Clone, Default)]
pub struct StepRow {
    pub name: String,
    pub kind: String,
    pub status: String,
    pub attempts: u64,
    pub start: Option<Ms>,
    pub end: Option<Ms>,
    pub error: Option<String>,
    pub outputs: serde_json::Map<String, Value>,
    pub artifacts: Vec<PathBuf>,
}

/// One entry of `fault_labels.json`.
#[derive(Debug, Clone, Default)]
pub struct FaultRow {
    pub step: String,
    pub kind: String,
    pub mechanism: String,
    pub namespace: Option<String>,
    /// Pod names without their namespace.
    pub pods: Vec<String>,
    pub status: String,
    pub injected: Option<Ms>,
    pub recovered: Option<Ms>,
    pub injected_source: String,
    pub recovered_source: String,
    /// Probe or verification verdicts, when the label carries them.
    pub verdicts: Vec<String>,
    pub error: Option<String>,
}

pub fn parse_time(v: Option<&Value>) -> Option<Ms> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    let bytes = std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        message: format!("line {}, column {}: {e}", e.line(), e.column()),
    })
}

impl RunMeta {
    /// # Errors
    /// When the manifest is missing or not JSON.
    pub fn load(run_dir: &Path) -> Result<Self, ReportError> {
        let path = run_dir.join(MANIFEST_FILE);
        let m = read_json(&path)?;
        Ok(Self::from_manifest(&m, run_dir))
    }

    pub fn from_manifest(m: &Value, run_dir: &Path) -> Self {
        let run = &m["run"];
        let plan = &m["plan"];
        let cluster = cluster_rows(m);
        let out_dir = run["out_dir"]
            .as_str()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            // The run folder is `<out>/runs/<exp>`; the recorded path may be from another machine.
            .or_else(|| {
                run_dir
                    .parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
            })
            .unwrap_or_else(|| run_dir.to_path_buf());
        let steps = step_rows(m);
        Self {
            exp_name: run["exp_name"].as_str().map_or_else(
                || {
                    run_dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                },
                str::to_string,
            ),
            run_id: text(run.get("id")),
            plan_name: text(plan.get("name")),
            plan_path: text(plan.get("path")),
            description: plan["description"].as_str().map(str::to_string),
            status: text(run.get("status")),
            started: parse_time(run.get("started_at")),
            finished: parse_time(run.get("finished_at")),
            duration_ms: run["duration_ms"].as_u64(),
            git_commit: plan
                .pointer("/git/commit")
                .and_then(Value::as_str)
                .map(str::to_string),
            git_dirty: plan.pointer("/git/dirty").and_then(Value::as_bool),
            cluster,
            errors: run["errors"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            out_dir,
            steps,
        }
    }

    /// Run start and end; an unfinished run ends at its last step's end (or now).
    pub fn window(&self) -> (Ms, Ms) {
        let step_min = self.steps.iter().filter_map(|s| s.start).min();
        let step_max = self.steps.iter().filter_map(|s| s.end.or(s.start)).max();
        let start = self
            .started
            .or(step_min)
            .unwrap_or_else(|| Utc::now().timestamp_millis());
        let end = self
            .finished
            .or(step_max)
            .unwrap_or_else(|| Utc::now().timestamp_millis())
            .max(start + 1000);
        (start, end)
    }
}

/// Where the run ran: `--context`, `--kubeconfig`, `--namespace` from its command line, then
/// the endpoints its steps found.
fn cluster_rows(m: &Value) -> Vec<(String, String)> {
    let mut cluster = Vec::new();
    if let Some(argv) = m.pointer("/invocation/argv").and_then(Value::as_array) {
        let argv: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
        for (i, a) in argv.iter().enumerate() {
            for flag in ["--context", "--kubeconfig", "--namespace", "-n"] {
                if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                    cluster.push((flag.trim_start_matches('-').to_string(), v.to_string()));
                } else if *a == flag {
                    if let Some(v) = argv.get(i + 1) {
                        cluster.push((flag.trim_start_matches('-').to_string(), (*v).to_string()));
                    }
                }
            }
        }
    }
    if cluster.iter().all(|(k, _)| k != "context") {
        cluster.push(("context".into(), "current kubeconfig context".into()));
    }
    if let Some(eps) = m["endpoints"].as_object() {
        for (name, e) in eps {
            let url = e["url"]
                .as_str()
                .map_or_else(|| e.to_string(), str::to_string);
            let how = e["source"]
                .as_str()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            cluster.push((name.clone(), format!("{url}{how}")));
        }
    }
    cluster
}

/// The manifest's steps, in its order.
fn step_rows(m: &Value) -> Vec<StepRow> {
    m["steps"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(name, r)| StepRow {
                    name: name.clone(),
                    kind: text(r.get("kind")),
                    status: text(r.get("status")),
                    attempts: r["attempts"].as_u64().unwrap_or(0),
                    start: parse_time(r.get("started_at")),
                    end: parse_time(r.get("finished_at")),
                    error: r["error"].as_str().map(str::to_string),
                    outputs: r["outputs"].as_object().cloned().unwrap_or_default(),
                    artifacts: r["artifacts"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x["path"].as_str().map(PathBuf::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `fault_labels.json`; `Ok(None)` when the run has none (an unfinished or older run).
///
/// # Errors
/// When the file exists but is not a JSON list.
pub fn load_faults(run_dir: &Path) -> Result<Option<Vec<FaultRow>>, ReportError> {
    let path = run_dir.join(LABELS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let v = read_json(&path)?;
    let Some(list) = v.as_array() else {
        return Err(ReportError::Parse {
            path,
            message: "expected a JSON list of fault labels".into(),
        });
    };
    Ok(Some(list.iter().map(fault_row).collect()))
}

fn fault_row(l: &Value) -> FaultRow {
    let target = &l["target"];
    let pods = target["pods"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|x| {
                    x.as_str()
                        .or_else(|| x["name"].as_str())
                        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    // The probes' verdicts as `engine::labels::add_effects` writes them.
    let effect = &l["effect"];
    let mut verdicts = Vec::new();
    if let Some(v) = effect.get("verified").filter(|v| !v.is_null()) {
        verdicts.push(format!("verified: {}", text(Some(v))));
    }
    for p in effect["probes"].as_array().into_iter().flatten() {
        verdicts.push(format!(
            "{}: {}",
            p["probe"].as_str().unwrap_or("probe"),
            p["verdict"].as_str().unwrap_or("unknown")
        ));
    }
    FaultRow {
        step: text(l.get("step")),
        kind: text(l.get("kind")),
        mechanism: text(l.get("mechanism")),
        namespace: target["namespace"].as_str().map(str::to_string),
        pods,
        status: text(l.get("status")),
        injected: parse_time(l.get("injected_at")),
        recovered: parse_time(l.get("recovered_at")),
        injected_source: text(l.get("injected_at_source")),
        recovered_source: text(l.get("recovered_at_source")),
        verdicts,
        error: l["error"].as_str().map(str::to_string),
    }
}

/// A modality's result: aggregated, absent (with why), or unreadable (with the error).
pub enum Section<T> {
    Data(T),
    Absent(String),
}

pub struct RunReport {
    pub meta: RunMeta,
    pub faults: Option<Vec<FaultRow>>,
    pub timeline: Timeline,
    pub metrics: Section<MetricsAgg>,
    pub traces: Section<TraceAgg>,
    pub api: Section<ApiAgg>,
    pub logs: Section<LogAgg>,
    pub coverage: Section<Vec<CoverageRow>>,
}

impl RunReport {
    /// # Errors
    /// When the manifest or the labels cannot be read.
    pub fn build(run_dir: &Path) -> Result<Self, ReportError> {
        let meta = RunMeta::load(run_dir)?;
        let faults = load_faults(run_dir)?;
        let (start, end) = meta.window();
        let windows = faults
            .iter()
            .flatten()
            .filter_map(|f| {
                f.injected.map(|s| Window {
                    start: s,
                    end: f.recovered.unwrap_or(end).max(s),
                })
            })
            .collect();
        let timeline = Timeline::new(start, end, windows);
        let inputs = Inputs::find(&meta);
        let target_pods: Vec<String> = faults
            .iter()
            .flatten()
            .flat_map(|f| f.pods.iter().cloned())
            .collect();
        let metrics = match inputs.metrics.is_empty() {
            true => Section::Absent("no metrics CSV (metric_data/<EXP>/*_metrics_*.csv)".into()),
            false => Section::Data(MetricsAgg::from_files(
                &inputs.metrics,
                &timeline,
                &target_pods,
            )),
        };
        let traces = match inputs.traces.is_empty() {
            true => {
                Section::Absent("no trace file (trace_data/<EXP>/*_skywalking_traces_*)".into())
            }
            false => Section::Data(TraceAgg::from_files(&inputs.traces, &timeline)),
        };
        let api = match inputs.api.is_empty() {
            true => Section::Absent("no api_responses.jsonl (api_responses/<EXP>/…)".into()),
            false => Section::Data(ApiAgg::from_files(&inputs.api, &timeline)),
        };
        let logs = match &inputs.logs {
            None => Section::Absent("no pod logs (log_data/<EXP>/<pod>/*.log)".into()),
            Some(dir) => Section::Data(LogAgg::from_dir(dir, &timeline)),
        };
        let coverage = match &inputs.coverage {
            None => {
                Section::Absent("no coverage reports (coverage_report/<EXP>/<service>/)".into())
            }
            Some(dir) => {
                let rows = super::coverage::read_dir(dir);
                if rows.is_empty() {
                    Section::Absent(format!("no coverage summaries under {}", dir.display()))
                } else {
                    Section::Data(rows)
                }
            }
        };
        Ok(Self {
            meta,
            faults,
            timeline,
            metrics,
            traces,
            api,
            logs,
            coverage,
        })
    }

    pub fn render(&self) -> String {
        super::html::run_page(self)
    }

    /// Rows per modality, for the index page.
    pub fn summary(&self) -> Value {
        let count = |present: bool, n: u64| if present { Value::from(n) } else { Value::Null };
        serde_json::json!({
            "exp_name": self.meta.exp_name,
            "status": self.meta.status,
            "duration_ms": self.meta.duration_ms,
            "metrics_rows": match &self.metrics { Section::Data(m) => count(true, m.rows), _ => count(false, 0) },
            "traces": match &self.traces { Section::Data(t) => count(true, t.traces), _ => count(false, 0) },
            "api_requests": match &self.api { Section::Data(a) => count(true, a.requests), _ => count(false, 0) },
            "log_lines": match &self.logs { Section::Data(l) => count(true, l.lines), _ => count(false, 0) },
            "coverage_services": match &self.coverage { Section::Data(c) => count(true, c.len() as u64), _ => count(false, 0) },
        })
    }

    /// # Errors
    /// When the summary cannot be written.
    pub fn write_summary(&self, run_dir: &Path) -> Result<(), ReportError> {
        let path = run_dir.join(SUMMARY_FILE);
        crate::atomic_write::write_json_atomic(&path, &self.summary())
            .map_err(|source| ReportError::Write { path, source })
    }
}
