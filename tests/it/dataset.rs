//! `ttplan dataset check` from the command line: the table, the exit codes, `--exp`.

use std::path::Path;
use std::process::Command;

const EXP: &str = "Lv_D_cachelimit_20251103T192141Z_em";
const TS: &str = "20251103_193000";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn span() -> serde_json::Value {
    let keys = [
        "node_id",
        "trace_id",
        "segment_id",
        "span_id",
        "parent_span_id",
        "parent_node_id",
        "depth",
        "children_node_ids",
        "service_code",
        "service_instance",
        "start_time_utc",
        "end_time_utc",
        "start_timestamp_ms",
        "end_timestamp_ms",
        "duration_ms",
        "endpoint_name",
        "type",
        "peer",
        "component",
        "layer",
        "is_error",
        "tags",
        "tags_map",
        "logs",
        "refs",
    ];
    keys.iter()
        .map(|k| (k.to_string(), serde_json::json!(1)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn conforming(root: &Path) {
    write(
        root,
        &format!("api_responses/{EXP}/20251103/api_responses.jsonl"),
        "{\"status\":200}\n",
    );
    let pod = "tsdb-mysql-0";
    write(
        root,
        &format!("log_data/{EXP}/{pod}/{pod}_{TS}.log"),
        "ok\n",
    );
    write(
        root,
        &format!("log_data/{EXP}/kubernetes_events_{TS}.json"),
        "[]",
    );
    write(
        root,
        &format!("log_data/{EXP}/log_collection_report_{TS}.json"),
        r#"{"timestamp":"x","collection_time":1,"output_dir":"x","total_files":1,"collected_files":[],"summary":{}}"#,
    );
    write(
        root,
        &format!("metric_data/{EXP}/{EXP}_metrics_{TS}.csv"),
        "metric_name,timestamp,datetime,value,instance\nnode_load5,1762197701,2025-11-03T19:21:41Z,0.5,n1\n",
    );
    let meta: serde_json::Map<String, serde_json::Value> = [
        "generated_at",
        "lookback_hours",
        "requested_trace_limit",
        "min_trace_duration_ms",
        "collected_traces",
        "available_total",
        "services_discovered",
        "experiment_name",
        "skywalking_base_url",
        "skywalking_graphql",
    ]
    .iter()
    .map(|k| (k.to_string(), serde_json::json!(1)))
    .collect();
    let doc = serde_json::json!({"metadata": meta, "traces": [{
        "summary": {"trace_id": "t", "duration_ms": 1, "start_time_utc": "x", "start_timestamp_ms": 1,
                    "is_error": false, "endpoint_names": []},
        "span_count": 1, "services_involved": [], "root_span_node_ids": [], "spans": [span()]}]});
    write(
        root,
        &format!("trace_data/{EXP}/{EXP}_skywalking_traces_{TS}.json"),
        &doc.to_string(),
    );
    let p = "ts-order-service-1-a";
    write(
        root,
        &format!("coverage_data/{EXP}/{p}__jacoco-{p}.exec"),
        "x",
    );
    let svc = format!("coverage_report/{EXP}/ts-order-service");
    write(
        root,
        &format!("{svc}/coverage.xml"),
        r#"<report name="JaCoCo Coverage Report"/>"#,
    );
    write(root, &format!("{svc}/html/index.html"), "");
    write(root, &format!("{svc}/merged.exec"), "x");
    let (eq, dash) = ("=".repeat(66), "-".repeat(66));
    write(
        root,
        &format!("{svc}/coverage-summary.txt"),
        &format!("{eq}\n  Simple Code Coverage Report\n{dash}\nService: ts-order-service\n{dash}\nTOTAL               Lines    107  Cover  29%\n{dash}\n"),
    );
}

fn ttplan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ttplan"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dataset_check_prints_a_table_and_exits_non_zero_on_a_violation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    conforming(dir.path());
    let (code, stdout, stderr) = ttplan(&["dataset", "check", root]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "{EXP}\n  name             ok         Lv_D_cachelimit (published)\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 experiments checked: 1 conform"),
        "{stdout}"
    );

    // The pre-drop-in metrics file: `__name__` column → exit 1, the row says why.
    write(
        dir.path(),
        &format!("metric_data/{EXP}/{EXP}_metrics_{TS}.csv"),
        "metric_name,timestamp,datetime,value,__name__\ncpu_usage,1,x,1,up\n",
    );
    let (code, stdout, _) = ttplan(&["dataset", "check", root, "--exp", EXP]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("metric_data      VIOLATION"), "{stdout}");
    assert!(stdout.contains("a `__name__` column"), "{stdout}");

    // Usage errors: exit 2.
    let (code, _, stderr) = ttplan(&["dataset", "check", root, "--exp", "Normal_case"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no experiment `Normal_case`"), "{stderr}");
}
