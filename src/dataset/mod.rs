//! `ttplan dataset check`: validates a dataset folder against the published Train-Ticket
//! layout (`../shared/reference/DATASET.md`) — experiment names, the files of each modality,
//! the metrics CSV header, JSONL records, the trace document's keys, the coverage summary's
//! exact text and the fault labels — so a dataset that passes is a drop-in for the loaders of
//! the published one.

pub mod coverage;
pub mod names;
mod report;
pub mod traces;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

pub use report::render;

/// The modality folders under the dataset root, in table order.
pub const MODALITIES: [&str; 6] = [
    "api_responses",
    "log_data",
    "metric_data",
    "trace_data",
    "coverage_data",
    "coverage_report",
];

/// One row of an experiment's table.
#[derive(Debug, Clone)]
pub struct Finding {
    /// A [`MODALITIES`] folder, or `name` / `fault_labels`.
    pub what: &'static str,
    /// What was found (`3 pods, 7 files`).
    pub summary: String,
    pub problems: Vec<String>,
}

impl Finding {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            summary: String::new(),
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }
}

/// Everything checked for one experiment.
#[derive(Debug, Clone)]
pub struct ExperimentReport {
    pub folder: String,
    pub findings: Vec<Finding>,
}

impl ExperimentReport {
    pub fn violations(&self) -> usize {
        self.findings.iter().map(|f| f.problems.len()).sum()
    }
}

/// Sorted names in `dir`; `None` (and a problem) when it cannot be read.
fn list_dir(dir: &Path, finding: &mut Finding) -> Option<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect();
            v.sort();
            Some(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            finding.summary = "missing".into();
            finding.problem(format!("no folder {}", dir.display()));
            None
        }
        Err(e) => {
            finding.problem(format!("cannot read {}: {e}", dir.display()));
            None
        }
    }
}

/// The experiment folders found under any modality folder (or `runs/`).
///
/// # Errors
/// When `root` is not a readable folder.
pub fn experiments(root: &Path) -> std::io::Result<Vec<String>> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a folder", root.display()),
        ));
    }
    let mut found = BTreeSet::new();
    for m in MODALITIES.iter().chain(&["runs"]) {
        if let Ok(rd) = std::fs::read_dir(root.join(m)) {
            for e in rd.filter_map(Result::ok) {
                if e.path().is_dir() {
                    found.insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Checks every experiment of `root` (or only `only`).
///
/// # Errors
/// `root` is not a folder, or `only` names no experiment in it.
pub fn check(root: &Path, only: Option<&str>) -> Result<Vec<ExperimentReport>, String> {
    let all = experiments(root).map_err(|e| e.to_string())?;
    let selected: Vec<String> = match only {
        Some(name) if all.iter().any(|e| e == name) => vec![name.to_string()],
        Some(name) => {
            return Err(format!(
                "no experiment `{name}` in {} (found: {})",
                root.display(),
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            ))
        }
        None => all,
    };
    if selected.is_empty() {
        return Err(format!(
            "no experiment folders under {} (looked in {})",
            root.display(),
            MODALITIES.join(", ")
        ));
    }
    Ok(selected.iter().map(|e| check_experiment(root, e)).collect())
}

fn check_experiment(root: &Path, exp: &str) -> ExperimentReport {
    let mut name = Finding::new("name");
    let parsed = match names::parse_experiment(exp) {
        Ok(n) => {
            name.summary = if n.published {
                format!("{} (published)", n.name)
            } else {
                format!("{} (extra)", n.name)
            };
            Some(n)
        }
        Err(e) => {
            name.problem(e);
            None
        }
    };
    let mut findings = vec![name];
    findings.push(check_api(&root.join("api_responses").join(exp)));
    findings.push(check_logs(&root.join("log_data").join(exp)));
    findings.push(check_metrics(&root.join("metric_data").join(exp), exp));
    findings.push(check_traces(&root.join("trace_data").join(exp), exp));
    let mut exec = Finding::new("coverage_data");
    coverage::check_exec_dir(&root.join("coverage_data").join(exp), &mut exec);
    findings.push(exec);
    let mut rep = Finding::new("coverage_report");
    let report_dir = root.join("coverage_report").join(exp);
    coverage::check_report_dir(&report_dir, &mut rep);
    if !report_dir.exists() {
        let manifest = root
            .join("runs")
            .join(exp)
            .join(crate::engine::manifest::MANIFEST_FILE);
        if let Some(why) = coverage::not_simulated(&manifest) {
            coverage::mark_not_simulated(&mut rep, &why);
        }
    }
    findings.push(rep);
    findings.push(check_labels(
        &root.join("runs").join(exp).join("fault_labels.json"),
        exp,
        parsed.as_ref().is_some_and(|n| n.name == names::BASELINE),
    ));
    ExperimentReport {
        folder: exp.to_string(),
        findings,
    }
}

/// Every line of a JSONL file is a JSON object; returns the record count.
fn check_jsonl(path: &Path, finding: &mut Finding) -> usize {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            finding.problem(format!("cannot open {}: {e}", path.display()));
            return 0;
        }
    };
    let mut n = 0;
    let mut bad = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                finding.problem(format!("{}: line {}: {e}", path.display(), i + 1));
                return n;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) if v.is_object() => n += 1,
            Ok(_) | Err(_) => {
                bad += 1;
                if bad == 1 {
                    finding.problem(format!(
                        "{}: line {} is not a JSON object",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    if bad > 1 {
        finding.problem(format!(
            "… {} more lines that are not JSON objects",
            bad - 1
        ));
    }
    n
}

/// `api_responses/<EXP>/<YYYYMMDD>/api_responses.jsonl`.
fn check_api(dir: &Path) -> Finding {
    let mut f = Finding::new("api_responses");
    let Some(days) = list_dir(dir, &mut f) else {
        return f;
    };
    let mut records = 0;
    let mut files = 0;
    for day in &days {
        if day.len() != 8 || chrono::NaiveDate::parse_from_str(day, "%Y%m%d").is_err() {
            f.problem(format!("`{day}` is not a `YYYYMMDD` folder"));
            continue;
        }
        let p = dir.join(day).join("api_responses.jsonl");
        if !p.is_file() {
            f.problem(format!("{day}: no api_responses.jsonl"));
            continue;
        }
        files += 1;
        records += check_jsonl(&p, &mut f);
    }
    if files == 0 && f.problems.is_empty() {
        f.problem("no `<YYYYMMDD>/api_responses.jsonl`".into());
    }
    f.summary = format!("{records} records in {files} files");
    f
}

/// The keys loaders read from `log_collection_report_<ts>.json`.
pub const LOG_REPORT_KEYS: [&str; 6] = [
    "timestamp",
    "collection_time",
    "output_dir",
    "total_files",
    "collected_files",
    "summary",
];

fn read_json(path: &Path, f: &mut Finding) -> Option<serde_json::Value> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => {
            f.problem(format!("cannot open {}: {e}", path.display()));
            return None;
        }
    };
    match serde_json::from_reader(BufReader::new(file)) {
        Ok(v) => Some(v),
        Err(e) => {
            f.problem(format!("{}: not JSON: {e}", path.display()));
            None
        }
    }
}

/// `log_data/<EXP>/`: per pod folder `<pod>_<ts>.log` (+ optional `<pod>_previous_<ts>.log`),
/// `kubernetes_events_<ts>.json`, `log_collection_report_<ts>.json` with its keys.
fn check_logs(dir: &Path) -> Finding {
    let mut f = Finding::new("log_data");
    let Some(entries) = list_dir(dir, &mut f) else {
        return f;
    };
    let (mut pods, mut logs, mut events, mut reports) = (0, 0, 0, 0);
    for e in &entries {
        let p = dir.join(e);
        if p.is_dir() {
            pods += 1;
            let mut current = 0;
            let mut sub = Finding::new("log_data");
            for file in list_dir(&p, &mut sub).unwrap_or_default() {
                let prefix = format!("{e}_");
                if names::file_ts(&file, &format!("{e}_previous_"), ".log").is_some() {
                    logs += 1;
                } else if names::file_ts(&file, &prefix, ".log").is_some() {
                    logs += 1;
                    current += 1;
                } else if !(file.starts_with(&prefix) && file.ends_with(".log")) {
                    f.problem(format!("{e}/{file}: not `{e}_<ts>.log`"));
                } else {
                    // `<pod>_<container>_<ts>.log` extras of multi-container pods are fine.
                    logs += 1;
                }
            }
            f.problems.extend(sub.problems);
            if current == 0 {
                f.problem(format!("{e}: no `{e}_<ts>.log` (`<ts>` = %Y%m%d_%H%M%S)"));
            }
        } else if names::file_ts(e, "kubernetes_events_", ".json").is_some() {
            events += 1;
            read_json(&p, &mut f);
        } else if names::file_ts(e, "log_collection_report_", ".json").is_some() {
            reports += 1;
            if let Some(v) = read_json(&p, &mut f) {
                let missing: Vec<&str> = LOG_REPORT_KEYS
                    .iter()
                    .copied()
                    .filter(|k| v.get(k).is_none())
                    .collect();
                if !missing.is_empty() {
                    f.problem(format!("{e} lacks {}", missing.join(", ")));
                }
            }
        }
    }
    if events == 0 {
        f.problem("no `kubernetes_events_<ts>.json`".into());
    }
    if reports == 0 {
        f.problem("no `log_collection_report_<ts>.json`".into());
    }
    if pods == 0 {
        f.problem("no pod folder".into());
    }
    f.summary = format!("{pods} pods, {logs} logs");
    f
}

/// `metric_data/<EXP>/<EXP>_metrics_<ts>.csv`: the header, no `__name__` column, rows as wide
/// as the header, numeric timestamps.
fn check_metrics(dir: &Path, exp: &str) -> Finding {
    let mut f = Finding::new("metric_data");
    let Some(files) = list_dir(dir, &mut f) else {
        return f;
    };
    let prefix = format!("{exp}_metrics_");
    let csvs: Vec<&String> = files
        .iter()
        .filter(|n| names::file_ts(n, &prefix, ".csv").is_some())
        .collect();
    for other in files
        .iter()
        .filter(|n| n.ends_with(".csv") && !csvs.contains(n))
    {
        f.problem(format!("`{other}` is not `{prefix}<ts>.csv`"));
    }
    if csvs.is_empty() {
        if f.problems.is_empty() {
            f.problem(format!("no `{prefix}<ts>.csv` (`<ts>` = %Y%m%d_%H%M%S)"));
        }
        return f;
    }
    let mut tally = MetricsTally::default();
    for name in csvs {
        tally.check_csv(&dir.join(name), name, &mut f);
    }
    f.summary = format!("{} rows, {} queries", tally.rows, tally.queries.len());
    f
}

/// What the metrics CSVs of one experiment hold, over all of them.
#[derive(Default)]
struct MetricsTally {
    rows: u64,
    /// The distinct `metric_name`s.
    queries: BTreeSet<String>,
}

impl MetricsTally {
    /// One metrics CSV; its rows are read up to the first bad one.
    fn check_csv(&mut self, path: &Path, name: &str, f: &mut Finding) {
        let mut r = match csv::ReaderBuilder::new().flexible(true).from_path(path) {
            Ok(r) => r,
            Err(e) => {
                f.problem(format!("{name}: {e}"));
                return;
            }
        };
        let header: Vec<String> = match r.headers() {
            Ok(h) => h.iter().map(str::to_string).collect(),
            Err(e) => {
                f.problem(format!("{name}: {e}"));
                return;
            }
        };
        if check_metrics_header(name, &header, f) {
            self.check_rows(name, header.len(), &mut r, f);
        }
    }

    /// Counts rows and queries; stops at the first row that is not as wide as the header or
    /// whose timestamp is not a number.
    fn check_rows(&mut self, name: &str, width: usize, r: &mut csv::Reader<File>, f: &mut Finding) {
        let mut record = csv::StringRecord::new();
        let mut line = 1u64;
        loop {
            match r.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    f.problem(format!("{name}: {e}"));
                    break;
                }
            }
            line += 1;
            self.rows += 1;
            if record.len() != width {
                f.problem(format!(
                    "{name}: line {line} has {} fields, the header {width}",
                    record.len(),
                ));
                break;
            }
            if record[1].parse::<f64>().is_err() {
                f.problem(format!(
                    "{name}: line {line}: timestamp `{}` is not a number",
                    &record[1]
                ));
                break;
            }
            if !self.queries.contains(&record[0]) {
                self.queries.insert(record[0].to_string());
            }
        }
    }
}

/// The fixed columns first, and no `__name__`. Returns whether the rows can be checked (the
/// fixed columns are there).
fn check_metrics_header(name: &str, header: &[String], f: &mut Finding) -> bool {
    if header.get(..4)
        != Some(&["metric_name", "timestamp", "datetime", "value"].map(String::from)[..])
    {
        f.problem(format!(
            "{name}: header starts `{}`, want `metric_name,timestamp,datetime,value`",
            header.iter().take(4).cloned().collect::<Vec<_>>().join(",")
        ));
        return false;
    }
    if header.iter().any(|h| h == "__name__") {
        f.problem(format!(
            "{name}: a `__name__` column (the published CSVs have none)"
        ));
    }
    true
}

/// `trace_data/<EXP>/<EXP>_skywalking_traces_<ts>.json`: one `{metadata, traces}` document.
fn check_traces(dir: &Path, exp: &str) -> Finding {
    let mut f = Finding::new("trace_data");
    let Some(files) = list_dir(dir, &mut f) else {
        return f;
    };
    let prefix = format!("{exp}_skywalking_traces_");
    let docs: Vec<&String> = files
        .iter()
        .filter(|n| names::file_ts(n, &prefix, ".json").is_some())
        .collect();
    if docs.is_empty() {
        f.problem(format!(
            "no `{prefix}<ts>.json` (`<ts>` = %Y%m%d_%H%M%S; one {{metadata, traces}} document){}",
            if files.iter().any(|n| n.ends_with(".jsonl")) {
                ": found only `.jsonl`"
            } else {
                ""
            }
        ));
        return f;
    }
    let (mut traces, mut spans) = (0, 0);
    for name in docs {
        if let Some(doc) = read_json(&dir.join(name), &mut f) {
            let mut problems = Vec::new();
            let (t, s) = traces::check_document(&doc, &mut problems);
            traces += t;
            spans += s;
            f.problems
                .extend(problems.into_iter().map(|p| format!("{name}: {p}")));
        }
    }
    f.summary = format!("{traces} traces, {spans} spans");
    f
}

/// `runs/<EXP>/fault_labels.json` (ttplan's ground truth; the published folders have none, so
/// only a present file is checked): a list, empty for the baseline, one entry per fault naming
/// the experiment otherwise.
fn check_labels(path: &Path, exp: &str, baseline: bool) -> Finding {
    let mut f = Finding::new("fault_labels");
    if !path.exists() {
        f.summary = "absent (not in the published layout)".into();
        return f;
    }
    let Some(v) = read_json(path, &mut f) else {
        return f;
    };
    let Some(labels) = v.as_array() else {
        f.problem("fault_labels.json is not a list".into());
        return f;
    };
    if baseline && !labels.is_empty() {
        f.problem(format!(
            "the baseline has {} fault labels, want none",
            labels.len()
        ));
    }
    if !baseline && labels.is_empty() {
        f.problem("no fault label for a fault experiment".into());
    }
    for (i, l) in labels.iter().enumerate() {
        match l.get("exp_name").and_then(|e| e.as_str()) {
            Some(e) if e == exp => {}
            Some(e) => f.problem(format!("label {i}: exp_name `{e}`, want `{exp}`")),
            None => f.problem(format!("label {i}: no exp_name")),
        }
    }
    f.summary = format!("{} labels", labels.len());
    f
}

#[cfg(test)]
mod tests;
