#!/usr/bin/env bash
# Benchmark of `ttplan report` (issue 16 target: a 1M-row metrics CSV and 5,000 traces in
# ≤ 3 s, memory flat). A synthetic run folder in the dataset layout (DATASET.md) is generated
# at two sizes that differ only in the run's length (same series, pods and services):
#   small: 30 min run  →   250k metric rows, 1,250 traces, 15k API lines, 60 pods × 5k log lines
#   full:  2 h run     →     1M metric rows, 5,000 traces, 60k API lines, 60 pods × 20k log lines
# For each: wall time (best of R) and peak RSS (/usr/bin/time -v) of `ttplan report RUN_DIR`,
# the floor (reading the same files with cat), and the page size. Flat memory means the two
# peaks are about the same while the input grows 4×.
#   scripts/bench-report.sh          (builds the release binary; set CARGO_TARGET_DIR to share)
#   R=5 scripts/bench-report.sh
# Needs about 600 MB of free disk for the two run folders (removed at exit).
set -euo pipefail
cd "$(dirname "$0")/.."

#   GENERATE=DIR:MINUTES scripts/bench-report.sh   (only writes the synthetic run folder)
#   BIN=target/debug/ttplan SMALL=2 FULL=4 scripts/bench-report.sh   (a given binary, other run lengths)
R=${R:-3}
SMALL=${SMALL:-30}
FULL=${FULL:-120}
target=${CARGO_TARGET_DIR:-target}

generate() { # DIR MINUTES
  python3 - "$1" "$2" <<'PY'
import json, os, random, sys
from datetime import datetime, timezone, timedelta
out, minutes = sys.argv[1], int(sys.argv[2])
exp = "Lv_P_CPU_preserve_20251103T180000Z_em"
t0 = datetime(2025, 11, 3, 18, 0, 0, tzinfo=timezone.utc)
t1 = t0 + timedelta(minutes=minutes)
inj, rec = t0 + timedelta(minutes=minutes * 0.4), t0 + timedelta(minutes=minutes * 0.7)
iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
ms = lambda d: int(d.timestamp() * 1000)
rnd = random.Random(7)
def mk(*p):
    d = os.path.join(out, *p); os.makedirs(d, exist_ok=True); return d
services = [f"ts-svc{i:02d}-service" for i in range(40)] + ["ts-preserve-service"]
pods = [f"{s}-7d9f8b6c5-{i:05d}" for i, s in enumerate(services)] + [f"tsdb-mysql-{i}" for i in range(19)]
target = pods[40]
run = mk("runs", exp)
steps = {
  "warm-up": ("sleep", t0, inj), "inject": ("chaos-mesh", inj, inj + timedelta(seconds=2)),
  "traffic": ("api-driver", t0, t1 - timedelta(minutes=1)), "recover": ("recover", rec, rec + timedelta(seconds=3)),
  "metrics": ("collect-metrics", t1 - timedelta(seconds=50), t1), "traces": ("collect-traces", t1 - timedelta(seconds=50), t1),
}
json.dump({"manifest_version": 1, "run": {"id": "r1", "exp_name": exp, "status": "succeeded", "started_at": iso(t0),
  "finished_at": iso(t1), "duration_ms": ms(t1) - ms(t0), "out_dir": out, "run_dir": run, "errors": []},
  "invocation": {"argv": ["ttplan", "run", "plans/lv_p_cpu.yaml", "--context", "tt"]},
  "plan": {"name": "Lv_P_CPU_preserve", "path": "plans/lv_p_cpu.yaml", "git": {"commit": "abc123", "dirty": False}},
  "endpoints": {}, "steps": {n: {"kind": k, "status": "succeeded", "attempts": 1, "started_at": iso(a), "finished_at": iso(b),
  "outputs": {}, "artifacts": []} for n, (k, a, b) in steps.items()}}, open(os.path.join(run, "experiment_manifest.json"), "w"))
json.dump([{"exp_name": exp, "step": "inject", "mechanism": "chaos-mesh", "kind": "StressChaos", "status": "recovered",
  "target": {"namespace": "train-ticket", "pods": [f"train-ticket/{target}"]}, "injected_at": iso(inj), "recovered_at": iso(rec),
  "injected_at_source": "controller", "recovered_at_source": "controller"}], open(os.path.join(run, "fault_labels.json"), "w"))

# Metrics: 15 s steps; 2,080 series (998,400 rows for 2 h). Label columns as cAdvisor/node-exporter give them.
steps_n = minutes * 4
times = [t0 + timedelta(seconds=15 * i) for i in range(steps_n)]
with open(os.path.join(mk("metric_data", exp), f"{exp}_metrics_20251103_180000.csv"), "w") as f:
    f.write("metric_name,timestamp,datetime,value,container,cpu,device,id,instance,job,mode,namespace,node,pod\n")
    def series(q, labels, fn):
        lab = ",".join(labels)
        for i, t in enumerate(times):
            f.write(f"{q},{int(t.timestamp())},{t.strftime('%Y-%m-%dT%H:%M:%SZ')},{fn(i, t)},{lab}\n")
    for p in pods:
        for c in ("app", "istio-proxy", "POD", ""):
            cid = f"/kubepods/burstable/pod{rnd.getrandbits(64):016x}/{c}"
            acc = [0.0]
            def cpu(i, t, p=p, acc=acc):
                acc[0] += 15 * (0.9 if (p == target and inj <= t <= rec) else 0.1 + rnd.random() * 0.02)
                return f"{acc[0]:.6f}"
            series("container_cpu_usage_seconds_total", [c, "total", "", cid, "node-1:10250", "kubelet", "", "train-ticket", "node-1", p], cpu)
            series("container_memory_working_set_bytes", [c, "", "", cid, "node-1:10250", "kubelet", "", "train-ticket", "node-1", p],
                   lambda i, t: str(int(3e8 + rnd.random() * 1e6)))
            series("container_spec_memory_limit_bytes", [c, "", "", cid, "node-1:10250", "kubelet", "", "train-ticket", "node-1", p],
                   lambda i, t: "" if i % 50 == 0 else "1073741824")
            for q in ("container_memory_usage_bytes", "container_network_receive_bytes_total",
                      "container_fs_reads_total", "container_cpu_cfs_throttled_periods_total"):
                series(q, [c, "", "eth0", cid, "node-1:10250", "kubelet", "", "train-ticket", "node-1", p],
                       lambda i, t: str(1000 * i + rnd.randrange(100)))
    for n in range(400):
        series("rate(node_cpu_seconds_total[5m])", ["", str(n % 8), "", "", f"node-{n // 8}:9100", "node-exporter", "user", "", f"node-{n // 8}", ""],
               lambda i, t: f"{0.2 + rnd.random() * 0.05:.5f}")

# Traces: 5,000 for 2 h, 15 spans each with the fields of DATASET.md.
n_tr = minutes * 5000 // 120
traces = []
for i in range(n_tr):
    st = t0 + timedelta(milliseconds=rnd.randrange(0, minutes * 60000))
    fault = inj <= st <= rec
    spans = []
    for k in range(15):
        svc = services[(i + k) % len(services)]
        d = rnd.uniform(5, 50) * (8 if fault and svc == "ts-preserve-service" else 1)
        s = ms(st) + k * 3
        spans.append({"node_id": f"seg{i}-{k}:0", "trace_id": f"t{i}", "segment_id": f"seg{i}-{k}", "span_id": 0, "parent_span_id": -1,
          "parent_node_id": f"seg{i}-{k-1}:0" if k else None, "depth": k, "children_node_ids": [f"seg{i}-{k+1}:0"] if k < 14 else [],
          "service_code": svc, "service_instance": f"{svc}-pod@10.0.0.{k}", "start_time_utc": iso(st), "end_time_utc": iso(st),
          "start_timestamp_ms": s, "end_timestamp_ms": s + int(d), "duration_ms": int(d), "endpoint_name": f"POST:/api/v1/{svc}/op",
          "type": "Entry" if k % 2 == 0 else "Exit", "peer": "" if k % 2 == 0 else "10.0.0.9:8080", "component": "SpringMVC", "layer": "Http",
          "is_error": fault and k == 3 and i % 3 == 0, "tags": [{"key": "http.method", "value": "POST"}, {"key": "url", "value": f"http://x/api/v1/{svc}/op"}],
          "tags_map": {"http.method": "POST", "url": f"http://x/api/v1/{svc}/op"}, "logs": [], "refs": []})
    traces.append({"summary": {"trace_id": f"t{i}", "duration_ms": 200, "start_time_utc": iso(st), "start_timestamp_ms": ms(st),
      "is_error": fault and i % 3 == 0, "endpoint_names": ["POST:/api/v1/preserveservice/preserve"]}, "span_count": 15,
      "services_involved": services[:15], "root_span_node_ids": [f"seg{i}-0:0"], "spans": spans})
with open(os.path.join(mk("trace_data", exp), f"{exp}_skywalking_traces_20251103_180000.json"), "w") as f:
    json.dump({"metadata": {"generated_at": iso(t1), "collected_traces": n_tr, "experiment_name": exp}, "traces": traces}, f)

# API: 500 requests a minute; logs: 60 pods, ~170 lines a minute each.
with open(os.path.join(mk("api_responses", exp, "20251103"), "api_responses.jsonl"), "w") as f:
    for i in range(minutes * 500):
        t = t0 + timedelta(milliseconds=i * 120)
        fault = inj <= t <= rec
        f.write(json.dumps({"time": iso(t), "method": "POST", "path": f"/api/v1/svc{i % 30}/op/{i}", "status": 503 if fault and i % 4 == 0 else 200,
          "request": {"headers": {"content-type": "application/json"}, "body": {"x": "y" * 200}}, "response": {"headers": {}, "body": {"data": "z" * 300}},
          "duration_ms": 12.0}) + "\n")
for p in pods:
    d = mk("log_data", exp, p)
    with open(os.path.join(d, f"{p}_20251103_180000.log"), "w") as f:
        for i in range(minutes * 167):
            t = t0 + timedelta(milliseconds=i * 360)
            f.write(f"{t.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}  INFO 1 --- [nio-8080-exec-{i % 10}] c.s.Controller : handled request {i} with some more text\n")
            if p == target and inj <= t <= rec and i % 5 == 0:
                f.write(f"{t.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} ERROR 1 --- [exec] c.s.Svc : java.lang.RuntimeException: boom\n\tat a.b.C.d(C.java:1)\n")
for s in services:
    d = mk("coverage_report", exp, s)
    open(os.path.join(d, "coverage-summary.txt"), "w").write("=" * 66 + "\n  Simple Code Coverage Report\n" + "-" * 66 +
      f"\nService: {s}\n" + "-" * 66 + f"\n{'TOTAL':<20}Lines {800:>6}  Cover {rnd.randrange(10, 70):>3}%\n" + "-" * 66 + "\n")
print(os.path.join(out, "runs", exp))
PY
}

measure() { # LABEL MINUTES
  local d=$work/$1 run
  run=$(generate "$d" "$2")
  local rows traces inbytes
  rows=$(($(wc -l < "$d"/metric_data/*/*.csv) - 1))
  traces=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['traces']))" "$d"/trace_data/*/*.json)
  inbytes=$(du -sb "$d" | cut -f1)
  # The floor: reading every input once.
  local floor best=999 s e
  s=$(date +%s.%N); find "$d" -type f -exec cat {} + > /dev/null; e=$(date +%s.%N)
  floor=$(echo "$e - $s" | bc -l)
  for _ in $(seq "$R"); do
    s=$(date +%s.%N); "$bin" report "$run" > /dev/null; e=$(date +%s.%N)
    best=$(echo "t = $e - $s; if (t < $best) t else $best" | bc -l)
  done
  local rss
  rss=$(/usr/bin/time -v "$bin" report "$run" 2>&1 >/dev/null | awk '/Maximum resident/ {print $6}')
  local page
  page=$(stat -c %s "$run/report.html")
  printf '%-6s rows=%-8s traces=%-5s input=%4d MB  report=%6.2f s (floor %5.2f s, %4.1fx)  peak RSS=%4d MB  page=%4d KB\n' \
    "$1" "$rows" "$traces" $((inbytes / 1048576)) "$best" "$floor" "$(echo "$best / $floor" | bc -l)" $((rss / 1024)) $((page / 1024))
}

if [ -n "${GENERATE:-}" ]; then
  generate "${GENERATE%:*}" "${GENERATE##*:}"
  exit 0
fi
bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin ttplan >&2
  bin=$target/release/ttplan
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "ttplan report ($bin), best of $R, $(nproc) cores shared:"
measure small "$SMALL"
measure full "$FULL"
