//! `collect-metrics` against a real Prometheus: a known dataset is backfilled, the real
//! `ttplan` binary collects it, and the CSV is compared with the dataset sample by sample.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::prometheus::{major_version, openmetrics, prom_float, Family, Prometheus, Series};

const S: i64 = 1000;
const STEP: i64 = 15 * S;

/// The dataset, anchored at a day boundary ten days ago (backfilled blocks must be older than
/// the head block's 3 hours).
struct Dataset {
    t0: i64,
    families: Vec<Family>,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn dataset() -> Dataset {
    let now = chrono::Utc::now().timestamp();
    let t0 = (now / 86_400 - 10) * 86_400 * S;
    // 50 hours every 15 s, with NaNs: enough for a 48 h range at 15 s (11,517 points: 2 chunks).
    let a = Series {
        name: "tt_cpu".into(),
        labels: labels(&[("namespace", "tt"), ("pod", "ts-a")]),
        samples: (0..12_000)
            .map(|i| {
                let v = if i % 97 == 5 {
                    f64::NAN
                } else {
                    (i % 1000) as f64 * 0.125
                };
                (t0 + i * STEP, v)
            })
            .collect(),
    };
    // Another label set, 2 hours, off the query grid by 7 s, with both infinities.
    let b = Series {
        name: "tt_cpu".into(),
        labels: labels(&[("container", "main"), ("namespace", "tt"), ("pod", "ts-b")]),
        samples: (0..480)
            .map(|i| {
                let v = match i {
                    100 => f64::INFINITY,
                    101 => f64::NEG_INFINITY,
                    _ => (i % 500) as f64 * 0.25 - 10.0,
                };
                (t0 + 7 * S + i * STEP, v)
            })
            .collect(),
    };
    // A counter over 3 hours with uneven increments.
    let mut total = 3.0;
    let c = Series {
        name: "tt_requests_total".into(),
        labels: labels(&[("pod", "ts-a")]),
        samples: (0..720)
            .map(|i| {
                total += ((i % 7) + 1) as f64;
                (t0 + i * STEP, total)
            })
            .collect(),
    };
    Dataset {
        t0,
        families: vec![
            Family {
                name: "tt_cpu".into(),
                kind: "gauge",
                series: vec![a, b],
            },
            Family {
                name: "tt_requests".into(),
                kind: "counter",
                series: vec![c],
            },
        ],
    }
}

/// The CSV's `datetime`: UTC with `Z`, a fraction only when there is one.
fn rfc3339(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    if ms % 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

fn secs(ms: i64) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// The value an instant selector sees at `t`: the latest sample at or before `t`, within the
/// 5-minute lookback. (The dataset keeps clear of the lookback's boundary.)
fn instant(s: &Series, t: i64) -> Option<f64> {
    let after = s.samples.partition_point(|(ts, _)| *ts <= t);
    let (ts, v) = *s.samples.get(after.checked_sub(1)?)?;
    (t - ts < 300 * S).then_some(v)
}

/// Prometheus' `rate()` (extrapolatedRate) over `range` ending at `t`, for a counter without
/// resets. Range selectors include their start in 2.x and exclude it from 3.0 on.
fn rate(s: &Series, t: i64, range: i64, start_inclusive: bool) -> Option<f64> {
    let pts: Vec<(i64, f64)> = s
        .samples
        .iter()
        .copied()
        .filter(|(ts, _)| {
            *ts <= t
                && if start_inclusive {
                    *ts >= t - range
                } else {
                    *ts > t - range
                }
        })
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let mut result = last.1 - first.1;
    let mut to_start = (first.0 - (t - range)) as f64 / 1000.0;
    let to_end = (t - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    if result > 0.0 && first.1 >= 0.0 {
        to_start = to_start.min(sampled * (first.1 / result));
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    result *= interval / sampled;
    Some(result / (range as f64 / 1000.0))
}

fn grid(start: i64, end: i64) -> impl Iterator<Item = i64> {
    (0..=(end - start) / STEP).map(move |k| start + k * STEP)
}

/// A plan file with one `collect-metrics` step named `metrics`.
fn write_plan(dir: &Path, step_yaml: &str) -> PathBuf {
    let plan = dir.join("plan.yaml");
    let indented: String = step_yaml.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        &plan,
        format!("name: metrics-test\nsteps:\n  metrics:\n    kind: collect-metrics\n{indented}"),
    )
    .unwrap();
    plan
}

struct Run {
    status: std::process::ExitStatus,
    stderr: String,
    out: PathBuf,
    step: Value,
}

fn run_ttplan(dir: &Path, plan: &Path, env: &[(&str, &str)]) -> Run {
    let out = dir.join("dataset");
    let mut t = support::Test::new()
        .current_dir(dir)
        .args([
            "run",
            "--progress",
            "never",
            "--set",
            "exp_name=exp1",
            "--out",
        ])
        .args([out.display().to_string(), plan.display().to_string()])
        .any_status();
    for (k, v) in env {
        t = t.env(k, v);
    }
    let o = t.run();
    let manifest = out.join("runs/exp1/experiment_manifest.json");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", manifest.display(), o.stderr)),
    )
    .unwrap();
    Run {
        status: o.status,
        stderr: o.stderr.clone(),
        out,
        step: manifest["steps"]["metrics"].clone(),
    }
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Files in `dir`, names only, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Rows the CSV must hold for a query whose result is `series` (labels including `__name__`
/// where Prometheus keeps it: it orders the series, though it is no column) with
/// `value(series, t)`.
fn expected_rows(
    name: &str,
    header: &[String],
    series: &[(BTreeMap<String, String>, &Series)],
    start: i64,
    end: i64,
    value: impl Fn(&Series, i64) -> Option<f64>,
) -> Vec<Vec<String>> {
    let mut sorted: Vec<_> = series.to_vec();
    // Prometheus' and ttplan's order: label pairs sorted by name, compared pairwise.
    sorted.sort_by(|a, b| a.0.iter().cmp(b.0.iter()));
    let mut rows = Vec::new();
    for (l, s) in sorted {
        for t in grid(start, end) {
            let Some(v) = value(s, t) else { continue };
            let mut row = vec![
                name.to_string(),
                secs(t),
                rfc3339(t),
                if v.is_nan() {
                    String::new()
                } else {
                    prom_float(v)
                },
            ];
            row.extend(
                header[4..]
                    .iter()
                    .map(|h| l.get(h).cloned().unwrap_or_default()),
            );
            rows.push(row);
        }
    }
    rows
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn with_name(s: &Series) -> (BTreeMap<String, String>, &Series) {
    let mut l = s.labels.clone();
    l.insert("__name__".into(), s.name.clone());
    (l, s)
}

#[test]
fn collects_a_chunked_range_sample_by_sample() {
    let data = dataset();
    let prom = Prometheus::start(&openmetrics(&data.families));
    let dir = tempfile::tempdir().unwrap();
    let (start, end) = (data.t0 + 60 * S, data.t0 + 48 * 3600 * S);
    let rate_end = data.t0 + 3 * 3600 * S + 10 * 60 * S;
    assert!(
        (end - start) / STEP > 11_000,
        "the range must need chunking"
    );
    let plan = write_plan(
        dir.path(),
        &format!(
            "endpoint: {url}\nstart: \"{s}\"\nend: \"{e}\"\nstep: 15s\nconcurrency: 3\n\
             queries:\n  gauge: tt_cpu\n  total: sum(tt_cpu)\n  nothing: tt_does_not_exist\n",
            url = prom.url,
            s = rfc3339(start),
            e = rfc3339(end),
        ),
    );
    let run = run_ttplan(dir.path(), &plan, &[]);
    assert!(run.status.success(), "{}", run.stderr);
    let outputs = &run.step["outputs"];
    assert_eq!(outputs["endpoint"], prom.url.as_str());
    assert_eq!(outputs["endpoint_source"], "plan");
    assert_eq!(outputs["chunks_per_query"], 2);
    let csv_rel = outputs["csv"].as_str().unwrap();
    let re_ok = csv_rel.starts_with("metric_data/exp1/exp1_metrics_")
        && csv_rel.ends_with(".csv")
        && chrono::NaiveDateTime::parse_from_str(
            &csv_rel["metric_data/exp1/exp1_metrics_".len()..csv_rel.len() - 4],
            "%Y%m%d_%H%M%S",
        )
        .is_ok();
    assert!(re_ok, "{csv_rel}");
    assert_eq!(
        listing(&run.out.join("metric_data/exp1")),
        [csv_rel.rsplit('/').next().unwrap()],
        "no spool or temporary file is left behind"
    );
    let artifacts = run.step["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    // The digest computed while writing is the file's.
    let bytes = std::fs::read(run.out.join(csv_rel)).unwrap();
    assert_eq!(artifacts[0]["path"], csv_rel);
    assert_eq!(artifacts[0]["bytes"], bytes.len() as u64);
    assert_eq!(artifacts[0]["sha256"], sha256_hex(&bytes));

    let (header, rows) = read_csv(&run.out.join(csv_rel));
    assert_eq!(
        header,
        [
            "metric_name",
            "timestamp",
            "datetime",
            "value",
            "container",
            "namespace",
            "pod"
        ]
    );
    let fam = &data.families[0];
    let gauge_series: Vec<_> = fam.series.iter().map(with_name).collect();
    let mut want = expected_rows("gauge", &header, &gauge_series, start, end, instant);
    let total_points = Series {
        name: String::new(),
        labels: BTreeMap::new(),
        samples: grid(start, end)
            .filter_map(|t| {
                let vals: Vec<f64> = fam.series.iter().filter_map(|s| instant(s, t)).collect();
                (!vals.is_empty()).then(|| (t, vals.iter().sum()))
            })
            .collect(),
    };
    want.extend(expected_rows(
        "total",
        &header,
        &[(BTreeMap::new(), &total_points)],
        start,
        end,
        |s, t| s.samples.iter().find(|(ts, _)| *ts == t).map(|(_, v)| *v),
    ));
    assert_eq!(rows.len(), want.len());
    for (i, (got, want)) in rows.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "row {}", i + 2);
    }
    // NaN became empty cells, infinities kept their spelling, the stitched chunks are whole.
    assert!(rows.iter().any(|r| r[0] == "gauge" && r[3].is_empty()));
    assert!(rows.iter().any(|r| r[3] == "+Inf") && rows.iter().any(|r| r[3] == "-Inf"));
    let a_rows = rows
        .iter()
        .filter(|r| r[6] == "ts-a" && r[0] == "gauge")
        .count();
    assert_eq!(a_rows as i64, (end - start) / STEP + 1);

    let queries = outputs["queries"].as_array().unwrap();
    let by_name = |n: &str| queries.iter().find(|q| q["name"] == n).unwrap().clone();
    assert_eq!(by_name("gauge")["status"], "ok");
    assert_eq!(by_name("gauge")["series"], 2);
    assert_eq!(by_name("nothing")["status"], "empty");
    assert_eq!(by_name("nothing")["samples"], 0);
    assert_eq!(
        by_name("nothing")["error"],
        "no series matched in the window"
    );
    assert_eq!(outputs["samples"], rows.len() as u64);

    // rate() of the counter, against the rate computed here.
    let dir2 = tempfile::tempdir().unwrap();
    let (rs, re) = (data.t0 + 30 * S, rate_end);
    let plan = write_plan(
        dir2.path(),
        &format!(
            "endpoint: {}\nstart: \"{}\"\nend: \"{}\"\nqueries:\n  - name: req_rate\n    query: rate(tt_requests_total[1m])\n",
            prom.url,
            rfc3339(rs),
            rfc3339(re)
        ),
    );
    let run = run_ttplan(dir2.path(), &plan, &[]);
    assert!(run.status.success(), "{}", run.stderr);
    let (header, rows) = read_csv(&run.out.join(run.step["outputs"]["csv"].as_str().unwrap()));
    assert_eq!(
        header,
        ["metric_name", "timestamp", "datetime", "value", "pod"]
    );
    let counter = &data.families[1].series[0];
    let inclusive = major_version() < 3;
    let want: Vec<(i64, f64)> = grid(rs, re)
        .filter_map(|t| rate(counter, t, 60 * S, inclusive).map(|v| (t, v)))
        .collect();
    assert_eq!(rows.len(), want.len());
    for (row, (t, v)) in rows.iter().zip(&want) {
        assert_eq!(row[0], "req_rate");
        assert_eq!(row[1], secs(*t));
        assert_eq!(row[4], "ts-a");
        let got: f64 = row[3].parse().unwrap();
        assert!(
            (got - v).abs() <= 1e-9 * v.abs(),
            "at {}: got {got}, want {v}",
            row[1]
        );
    }
}

#[test]
fn bad_promql_fails_the_step_naming_the_query() {
    let data = dataset();
    let prom = Prometheus::start(&openmetrics(&data.families));
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        &format!(
            "endpoint: {}\nstart: \"{}\"\nend: \"{}\"\nqueries:\n  gauge: tt_cpu\n  broken: sum(rate(tt_cpu[1m])\n",
            prom.url,
            rfc3339(data.t0),
            rfc3339(data.t0 + 3600 * S)
        ),
    );
    let run = run_ttplan(dir.path(), &plan, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(run.step["status"], "failed");
    let error = run.step["error"].as_str().unwrap();
    assert!(
        error.starts_with("query `broken` failed: Prometheus rejected it (HTTP 400 bad_data): "),
        "{error}"
    );
    assert!(
        error.contains("parse error"),
        "Prometheus' message is quoted: {error}"
    );
    assert!(error.contains("query: sum(rate(tt_cpu[1m])"), "{error}");
    assert!(
        run.stderr.contains("query `broken` failed"),
        "{}",
        run.stderr
    );
    // No CSV, and no leftovers.
    assert_eq!(
        listing(&run.out.join("metric_data/exp1")),
        Vec::<String>::new()
    );
}

#[test]
fn failed_queries_are_recorded_when_asked_and_split_writes_one_file_per_query() {
    let data = dataset();
    let prom = Prometheus::start(&openmetrics(&data.families));
    let dir = tempfile::tempdir().unwrap();
    let (start, end) = (data.t0 + 60 * S, data.t0 + 3600 * S);
    let plan = write_plan(
        dir.path(),
        &format!(
            "start: \"{}\"\nend: \"{}\"\non_query_error: record\nsplit: true\ncompression: true\n\
             queries:\n  broken: sum(rate(tt_cpu[1m])\n  nothing: tt_nope\n  gauge: tt_cpu{{pod=\"ts-a\"}}\n",
            rfc3339(start),
            rfc3339(end)
        ),
    );
    // The endpoint comes from the environment this time.
    let run = run_ttplan(dir.path(), &plan, &[("PROMETHEUS_URL", &prom.url)]);
    assert!(run.status.success(), "{}", run.stderr);
    let outputs = &run.step["outputs"];
    assert_eq!(outputs["endpoint_source"], "env PROMETHEUS_URL");
    let queries = outputs["queries"].as_array().unwrap();
    let names: Vec<&str> = queries
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["broken", "nothing", "gauge"]);
    assert_eq!(queries[0]["status"], "error");
    let err = queries[0]["error"].as_str().unwrap();
    assert!(
        err.starts_with("Prometheus rejected it (HTTP 400 bad_data): "),
        "{err}"
    );
    assert_eq!(queries[0]["file"], Value::Null);
    assert_eq!(queries[1]["status"], "empty");
    assert_eq!(queries[2]["status"], "ok");
    let log = std::fs::read_to_string(run.out.join("runs/exp1/steps/metrics.log")).unwrap();
    assert!(
        log.contains("broken: error (0 series, 0 samples): Prometheus rejected it"),
        "{log}"
    );
    assert!(
        log.contains("nothing: empty (0 series, 0 samples): no series matched"),
        "{log}"
    );

    let files: Vec<String> = outputs["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].ends_with("_nothing.csv") && files[1].ends_with("_gauge.csv"),
        "{files:?}"
    );
    let (header, rows) = read_csv(&run.out.join(&files[1]));
    assert_eq!(
        header,
        [
            "metric_name",
            "timestamp",
            "datetime",
            "value",
            "namespace",
            "pod"
        ]
    );
    let a = &data.families[0].series[0];
    let mut l = a.labels.clone();
    l.insert("__name__".into(), "tt_cpu".into());
    assert_eq!(
        rows,
        expected_rows("gauge", &header, &[(l, a)], start, end, instant)
    );
    let (header, rows) = read_csv(&run.out.join(&files[0]));
    assert_eq!(header, ["metric_name", "timestamp", "datetime", "value"]);
    assert!(rows.is_empty());
}

#[test]
fn an_unreachable_server_fails_after_the_retries() {
    support::prometheus::require_tools();
    let dir = tempfile::tempdir().unwrap();
    let port = support::prometheus::free_port();
    let plan = write_plan(
        dir.path(),
        &format!(
            "endpoint: http://127.0.0.1:{port}\nstart: \"2025-01-01T00:00:00Z\"\nend: \"2025-01-01T01:00:00Z\"\n\
             request_retries: 2\nrequest_timeout: 2s\nqueries: {{up: up}}\n"
        ),
    );
    let run = run_ttplan(dir.path(), &plan, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let error = run.step["error"].as_str().unwrap();
    assert!(error.starts_with("query `up` failed: "), "{error}");
    assert!(error.contains("(after 3 attempts)"), "{error}");
    assert!(
        error.contains(&format!("Prometheus at http://127.0.0.1:{port}")),
        "{error}"
    );
}

fn validate(dir: &Path, name: &str, text: &str) -> (Option<i32>, String) {
    let plan = dir.join(name);
    std::fs::write(&plan, text).unwrap();
    let o = support::ttplan()
        .arg("validate")
        .arg(&plan)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    // miette wraps long messages; compare with the wrapping undone.
    let flat = text
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (o.status.code(), flat)
}

#[test]
fn the_example_plan_validates() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/examples/metrics.yaml");
    let o = support::ttplan()
        .arg("validate")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn yaml_and_toml_spell_the_same_step() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = validate(
        dir.path(),
        "p.yaml",
        "steps:\n  m:\n    kind: collect-metrics\n    endpoint: http://127.0.0.1:9090\n    queries: {up: up}\n    step: 30s\n",
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = validate(
        dir.path(),
        "p.toml",
        "[steps.m]\nkind = \"collect-metrics\"\nendpoint = \"http://127.0.0.1:9090\"\nstep = \"30s\"\n[steps.m.queries]\nup = \"up\"\n",
    );
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn plan_mistakes_are_reported_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = validate(
        dir.path(),
        "p.yaml",
        "steps:\n  m:\n    kind: collect-metrics\n    metric_sets: {performance: {up: up}}\n    sets: [perfomance]\n    start: yesterday\n    querys: {}\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("p.yaml:7:5"),
        "unknown field points at the key: {out}"
    );
    assert!(out.contains("`querys`"), "{out}");
    let (code, out) = validate(
        dir.path(),
        "q.yaml",
        "steps:\n  m:\n    kind: collect-metrics\n    metric_sets: {performance: {up: up}}\n    sets: [perfomance]\n    start: yesterday\n    endpoint: prometheus:9090\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("q.yaml:5:12: `sets` names `perfomance`, which is not in `metric_sets`"),
        "{out}"
    );
    assert!(out.contains("help: did you mean `performance`?"), "{out}");
    assert!(
        out.contains("`start`: `yesterday` is not an RFC 3339 time"),
        "{out}"
    );
    assert!(out.contains("q.yaml:6:"), "{out}");
    assert!(
        out.contains("`endpoint` `prometheus:9090` is not a usable URL"),
        "{out}"
    );
}

/// The published dataset's CSV: `metric_name` is the query text, nameless list items work, a
/// query listed in two sets is collected once, and there is no `__name__` column, while two
/// series that differ only in their metric name stay apart (in Prometheus' order).
#[test]
fn query_texts_are_metric_names_and_name_is_no_column() {
    let now = chrono::Utc::now().timestamp();
    let t0 = (now / 86_400 - 3) * 86_400 * S;
    let series = |name: &str, pod: &str, k: f64| Series {
        name: name.into(),
        labels: labels(&[("pod", pod)]),
        samples: (0..40).map(|i| (t0 + i * STEP, i as f64 * k)).collect(),
    };
    let families = vec![
        Family {
            name: "node_load5".into(),
            kind: "gauge",
            series: vec![series("node_load5", "x", 1.0)],
        },
        Family {
            name: "node_load15".into(),
            kind: "gauge",
            series: vec![series("node_load15", "x", 2.0)],
        },
    ];
    let prom = Prometheus::start(&openmetrics(&families));
    let dir = tempfile::tempdir().unwrap();
    let (start, end) = (t0, t0 + 39 * STEP);
    let both = r#"{__name__=~"node_load5|node_load15"}"#;
    let plan = write_plan(
        dir.path(),
        &format!(
            "endpoint: {}\nstart: \"{}\"\nend: \"{}\"\n\
             metric_sets:\n  performance:\n    - node_load5\n    - {{ query: '{both}' }}\n\
             \x20 database: [node_load5, {{ name: load15, query: node_load15 }}]\n",
            prom.url,
            rfc3339(start),
            rfc3339(end)
        ),
    );
    let run = run_ttplan(dir.path(), &plan, &[]);
    assert!(run.status.success(), "{}", run.stderr);
    let names: Vec<&str> = run.step["outputs"]["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node_load5", both, "load15"]);
    assert_eq!(run.step["outputs"]["requests"], 3);
    let (header, rows) = read_csv(&run.out.join(run.step["outputs"]["csv"].as_str().unwrap()));
    assert_eq!(
        header,
        ["metric_name", "timestamp", "datetime", "value", "pod"]
    );
    let one = &families[0].series[0];
    let fifteen = &families[1].series[0];
    let with = |s: &Series| {
        let mut l = s.labels.clone();
        l.insert("__name__".into(), s.name.clone());
        l
    };
    let mut want = expected_rows(
        "node_load5",
        &header,
        &[(one.labels.clone(), one)],
        start,
        end,
        instant,
    );
    // `node_load15` sorts before `node_load5`: Prometheus' order, kept.
    want.extend(expected_rows(
        both,
        &header,
        &[(with(one), one), (with(fifteen), fifteen)],
        start,
        end,
        instant,
    ));
    want.extend(expected_rows(
        "load15",
        &header,
        &[(fifteen.labels.clone(), fifteen)],
        start,
        end,
        instant,
    ));
    assert_eq!(rows, want);
    // Whole seconds: no fraction in `timestamp` or `datetime`.
    assert!(
        rows.iter()
            .all(|r| !r[1].contains('.') && !r[2].contains('.')),
        "{rows:?}"
    );
}
