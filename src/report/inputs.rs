//! Where a run's data files are: first what the manifest's steps list (outputs and artifacts,
//! relative to the output root), then the dataset layout (`metric_data/<EXP>/…`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::run::RunMeta;

#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub metrics: Vec<PathBuf>,
    pub traces: Vec<PathBuf>,
    pub api: Vec<PathBuf>,
    /// `log_data/<EXP>`: one folder per pod.
    pub logs: Option<PathBuf>,
    /// `coverage_report/<EXP>`: one folder per service.
    pub coverage: Option<PathBuf>,
}

fn is_metrics(p: &str) -> bool {
    p.ends_with(".csv") && p.contains("_metrics")
}

fn is_traces(p: &str) -> bool {
    p.contains("_skywalking_traces_") && (p.ends_with(".json") || p.ends_with(".jsonl"))
}

fn is_api(p: &str) -> bool {
    p.ends_with("api_responses.jsonl")
}

fn push_unique(list: &mut Vec<PathBuf>, p: PathBuf) {
    if p.is_file() && !list.contains(&p) {
        list.push(p);
    }
}

/// Files matching `name_pattern` (a glob, may hold `/`) under `dir` (taken literally).
fn glob_files(dir: &Path, name_pattern: &str) -> Vec<PathBuf> {
    let Some(dir) = dir.to_str() else {
        return Vec::new();
    };
    let pattern = format!("{}/{name_pattern}", glob::Pattern::escape(dir));
    let mut v: Vec<PathBuf> = glob::glob(&pattern)
        .map(|paths| paths.flatten().filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

impl Inputs {
    pub fn find(meta: &RunMeta) -> Self {
        let out = &meta.out_dir;
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                out.join(p)
            }
        };
        let mut i = Inputs::default();
        for step in &meta.steps {
            let mut named: Vec<String> = step
                .artifacts
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            for key in ["csv", "path", "api_responses"] {
                if let Some(Value::String(s)) = step.outputs.get(key) {
                    named.push(s.clone());
                }
            }
            if let Some(Value::Array(files)) = step.outputs.get("files") {
                named.extend(files.iter().filter_map(Value::as_str).map(str::to_string));
            }
            for p in named {
                if is_metrics(&p) {
                    push_unique(&mut i.metrics, resolve(&p));
                } else if is_traces(&p) {
                    push_unique(&mut i.traces, resolve(&p));
                } else if is_api(&p) {
                    push_unique(&mut i.api, resolve(&p));
                }
            }
            let dir = step.outputs.get("dir").and_then(Value::as_str).map(resolve);
            match (step.kind.as_str(), dir) {
                ("collect-logs", Some(d)) if d.is_dir() => i.logs = Some(d),
                ("coverage-report", Some(d)) if d.is_dir() => i.coverage = Some(d),
                _ => {}
            }
        }
        let exp = meta.exp_name.as_str();
        if i.metrics.is_empty() {
            i.metrics = glob_files(&out.join("metric_data").join(exp), "*_metrics_*.csv");
        }
        if i.traces.is_empty() {
            let dir = out.join("trace_data").join(exp);
            i.traces = glob_files(&dir, "*_skywalking_traces_*.json");
            if i.traces.is_empty() {
                i.traces = glob_files(&dir, "*_skywalking_traces_*.jsonl");
            }
        }
        if i.api.is_empty() {
            i.api = glob_files(
                &out.join("api_responses").join(exp),
                "*/api_responses.jsonl",
            );
        }
        let dir_if = |d: PathBuf| d.is_dir().then_some(d);
        if i.logs.is_none() {
            i.logs = dir_if(out.join("log_data").join(exp));
        }
        if i.coverage.is_none() {
            i.coverage = dir_if(out.join("coverage_report").join(exp));
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds_follow_the_dataset_names() {
        assert!(is_metrics("metric_data/E/E_metrics_20251103_192141.csv"));
        assert!(is_traces(
            "trace_data/E/E_skywalking_traces_20251103_192141.json"
        ));
        assert!(is_traces(
            "trace_data/E/E_skywalking_traces_20251103_192141.jsonl"
        ));
        assert!(is_api("api_responses/E/20251103/api_responses.jsonl"));
        assert!(!is_metrics("coverage_report/E/svc/coverage.xml"));
    }

    #[test]
    fn the_layout_is_the_fallback() {
        let d = tempfile::tempdir().unwrap();
        let exp = "Lv_P_x_20251103T000000Z_em";
        let m = d.path().join("metric_data").join(exp);
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join(format!("{exp}_metrics_20251103_000000.csv")), "x").unwrap();
        let a = d.path().join("api_responses").join(exp).join("20251103");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("api_responses.jsonl"), "").unwrap();
        let meta = RunMeta {
            exp_name: exp.into(),
            out_dir: d.path().to_path_buf(),
            ..RunMeta::default()
        };
        let i = Inputs::find(&meta);
        assert_eq!(i.metrics.len(), 1);
        assert_eq!(i.api.len(), 1);
        assert!(i.traces.is_empty() && i.logs.is_none());
    }
}
