//! Small dataset folders built in temp dirs: one that conforms, then one violation at a time.

use std::path::Path;

use serde_json::json;

use super::traces::{METADATA_KEYS, SPAN_KEYS, SUMMARY_KEYS};
use super::*;

const EXP: &str = "Lv_P_CPU_preserve_20251103T192141Z_em";
const TS: &str = "20251103_193000";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn keys(list: &[&str]) -> serde_json::Value {
    serde_json::Value::Object(list.iter().map(|k| (k.to_string(), json!(null))).collect())
}

fn summary(service: &str, lines: u64, pct: u32) -> String {
    let eq = "=".repeat(66);
    let dash = "-".repeat(66);
    format!(
        "{eq}\n  Simple Code Coverage Report\n{dash}\nService: {service}\n{dash}\n{:<20}Lines {lines:>6}  Cover {pct:>3}%\n{dash}\n",
        "TOTAL"
    )
}

/// Every file of one conforming experiment.
fn valid(root: &Path, exp: &str, labels: &str) {
    write(
        root,
        &format!("api_responses/{exp}/20251103/api_responses.jsonl"),
        "{\"method\":\"GET\",\"status\":200}\n{\"method\":\"POST\",\"status\":503}\n",
    );
    let pod = "ts-order-service-7d9f8b6c5-x2kfz";
    write(
        root,
        &format!("log_data/{exp}/{pod}/{pod}_{TS}.log"),
        "started\n",
    );
    write(
        root,
        &format!("log_data/{exp}/{pod}/{pod}_previous_{TS}.log"),
        "crashed\n",
    );
    write(
        root,
        &format!("log_data/{exp}/kubernetes_events_{TS}.json"),
        "[]",
    );
    let report = json!({"timestamp": TS, "collection_time": 1.5, "output_dir": "x",
        "total_files": 2, "collected_files": [], "summary": {}});
    write(
        root,
        &format!("log_data/{exp}/log_collection_report_{TS}.json"),
        &report.to_string(),
    );
    write(
        root,
        &format!("metric_data/{exp}/{exp}_metrics_{TS}.csv"),
        "metric_name,timestamp,datetime,value,instance,pod\n\
         rate(node_cpu_seconds_total[5m]),1762197701,2025-11-03T19:21:41Z,0.25,n1,\n\
         up,1762197701,2025-11-03T19:21:41Z,,n1,ts-a\n",
    );
    let mut trace = keys(&["span_count", "services_involved", "root_span_node_ids"]);
    trace["summary"] = keys(&SUMMARY_KEYS);
    trace["spans"] = json!([keys(&SPAN_KEYS)]);
    let doc = json!({"metadata": keys(&METADATA_KEYS), "traces": [trace]});
    write(
        root,
        &format!("trace_data/{exp}/{exp}_skywalking_traces_{TS}.json"),
        &doc.to_string(),
    );
    write(
        root,
        &format!("coverage_data/{exp}/{pod}__jacoco-{pod}.exec"),
        "x",
    );
    let svc = format!("coverage_report/{exp}/ts-order-service");
    write(
        root,
        &format!("{svc}/coverage.xml"),
        "<report name=\"JaCoCo Coverage Report\"></report>",
    );
    write(root, &format!("{svc}/html/index.html"), "<html/>");
    write(root, &format!("{svc}/merged.exec"), "x");
    write(
        root,
        &format!("{svc}/coverage-summary.txt"),
        &summary("ts-order-service", 107, 29),
    );
    write(root, &format!("runs/{exp}/fault_labels.json"), labels);
}

fn fault_labels(exp: &str) -> String {
    json!([{"exp_name": exp, "kind": "StressChaos"}]).to_string()
}

fn problems(root: &Path) -> Vec<String> {
    check(root, None)
        .unwrap()
        .into_iter()
        .flat_map(|r| r.findings)
        .flat_map(|f| {
            f.problems
                .into_iter()
                .map(move |p| format!("{}: {p}", f.what))
        })
        .collect()
}

/// A conforming dataset with `change` applied has exactly one problem, containing `want`.
fn one_violation(change: impl FnOnce(&Path), want: &str) {
    let dir = tempfile::tempdir().unwrap();
    valid(dir.path(), EXP, &fault_labels(EXP));
    change(dir.path());
    let p = problems(dir.path());
    assert_eq!(p.len(), 1, "want one problem with `{want}`: {p:#?}");
    assert!(p[0].contains(want), "{want}: {p:#?}");
}

#[test]
fn a_conforming_dataset_passes() {
    let dir = tempfile::tempdir().unwrap();
    valid(dir.path(), EXP, &fault_labels(EXP));
    let base = "Normal_case_em_20251103T180000Z";
    valid(dir.path(), base, "[]");
    let reports = check(dir.path(), None).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(
        reports.iter().all(|r| r.violations() == 0),
        "{}",
        render(&reports)
    );
    let table = render(&reports);
    assert!(
        table.contains("metric_data      ok         2 rows, 2 queries"),
        "{table}"
    );
    assert!(
        table.contains("2 experiments checked: 2 conform, 0 with 0 violations"),
        "{table}"
    );
    let only = check(dir.path(), Some(base)).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].folder, base);
}

#[test]
fn metrics_rows_are_read_up_to_the_first_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let csv = format!("{EXP}_metrics_{TS}.csv");
    write(
        dir.path(),
        &csv,
        "metric_name,timestamp,datetime,value\nup,1,x,1\ncpu,2,x,1\ncpu,soon,x,1\nmem,3,x,1\n",
    );
    let f = check_metrics(dir.path(), EXP);
    assert_eq!(
        f.problems,
        [format!("{csv}: line 4: timestamp `soon` is not a number")]
    );
    // The bad row is counted; neither it nor what follows adds a query.
    assert_eq!(f.summary, "3 rows, 2 queries");
}

#[test]
fn each_violation_is_reported() {
    let m = format!("metric_data/{EXP}/{EXP}_metrics_{TS}.csv");
    let m2 = m.clone();
    one_violation(
        move |r| {
            write(
                r,
                &m2,
                "metric_name,timestamp,datetime,value,__name__,pod\nup,1,x,1,up,a\n",
            );
        },
        "a `__name__` column",
    );
    let m2 = m.clone();
    one_violation(
        move |r| write(r, &m2, "name,timestamp,datetime,value\n"),
        "want `metric_name,timestamp,datetime,value`",
    );
    let m2 = m.clone();
    one_violation(
        move |r| {
            write(
                r,
                &m2,
                "metric_name,timestamp,datetime,value,pod\nup,1,x,1\n",
            )
        },
        "line 2 has 4 fields",
    );
    one_violation(
        move |r| {
            std::fs::rename(
                r.join(&m),
                r.join(format!(
                    "metric_data/{EXP}/{EXP}_metrics_20251103T193000Z.csv"
                )),
            )
            .unwrap();
        },
        "is not `Lv_P_CPU_preserve_20251103T192141Z_em_metrics_<ts>.csv`",
    );
    one_violation(
        |r| {
            write(
                r,
                &format!("api_responses/{EXP}/20251103/api_responses.jsonl"),
                "{\"ok\":1}\n{\"cut\n",
            );
        },
        "line 2 is not a JSON object",
    );
    one_violation(
        |r| std::fs::remove_dir_all(r.join(format!("api_responses/{EXP}"))).unwrap(),
        "no folder",
    );
    one_violation(
        |r| {
            let pod = "ts-order-service-7d9f8b6c5-x2kfz";
            std::fs::remove_file(r.join(format!("log_data/{EXP}/{pod}/{pod}_{TS}.log"))).unwrap();
        },
        "no `ts-order-service-7d9f8b6c5-x2kfz_<ts>.log`",
    );
    one_violation(
        |r| {
            write(
                r,
                &format!("log_data/{EXP}/log_collection_report_{TS}.json"),
                "{\"timestamp\": 1, \"pods\": []}",
            );
        },
        "lacks collection_time, output_dir, total_files, collected_files, summary",
    );
    one_violation(
        |r| {
            let doc = json!({"metadata": keys(&METADATA_KEYS), "traces": [{
                "summary": keys(&SUMMARY_KEYS), "span_count": 1, "services_involved": [],
                "root_span_node_ids": [], "spans": [{"serviceCode": "ts-x"}]}]});
            write(
                r,
                &format!("trace_data/{EXP}/{EXP}_skywalking_traces_{TS}.json"),
                &doc.to_string(),
            );
        },
        "span 0 lacks node_id, trace_id, segment_id",
    );
    one_violation(
        |r| {
            let d = r.join(format!("trace_data/{EXP}"));
            std::fs::remove_dir_all(&d).unwrap();
            write(
                r,
                &format!("trace_data/{EXP}/{EXP}_skywalking_traces_{TS}.jsonl"),
                "{}\n",
            );
        },
        "found only `.jsonl`",
    );
    one_violation(
        |r| {
            write(
                r,
                &format!("coverage_report/{EXP}/ts-order-service/coverage-summary.txt"),
                "service\ttotal_lines\tline_coverage\nts-order-service\t107\t29\n",
            );
        },
        "coverage-summary.txt: 2 lines, want 7",
    );
    one_violation(
        |r| {
            std::fs::remove_file(r.join(format!(
                "coverage_report/{EXP}/ts-order-service/merged.exec"
            )))
            .unwrap();
        },
        "no `merged.exec`",
    );
    one_violation(
        |r| {
            write(
                r,
                &format!("coverage_data/{EXP}/ts-a__jacoco-ts-b.exec"),
                "x",
            )
        },
        "`ts-a__jacoco-ts-b.exec` is not `<pod>__jacoco-<pod>.exec`",
    );
    one_violation(
        |r| write(r, &format!("runs/{EXP}/fault_labels.json"), "[]"),
        "no fault label for a fault experiment",
    );
}

#[test]
fn experiment_names_and_labels_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let old = "Lv_S_DNS_preserve_20251103T192141Z";
    valid(dir.path(), old, &fault_labels(old));
    let base = "Normal_case_em_20251103T180000Z";
    valid(dir.path(), base, &fault_labels(base));
    let p = problems(dir.path());
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p
        .iter()
        .any(|p| p.starts_with("name: ") && p.contains("does not end in `_em`")));
    assert!(p
        .iter()
        .any(|p| p.contains("the baseline has 1 fault labels")));
}

#[test]
fn unknown_experiments_and_empty_folders_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = check(dir.path(), None).unwrap_err();
    assert!(e.starts_with("no experiment folders under"), "{e}");
    valid(dir.path(), EXP, &fault_labels(EXP));
    let e = check(dir.path(), Some("Lv_P_CPU")).unwrap_err();
    assert!(e.contains(&format!("found: {EXP}")), "{e}");
    assert!(check(&dir.path().join("nope"), None).is_err());
}
