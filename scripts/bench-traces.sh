#!/usr/bin/env bash
# Benchmark of `collect-traces` (DESIGN.md target: ≥ 0.6 × the ideal W / latency throughput,
# memory independent of the number of traces), all measured in one run, side by side:
#   - traces/s for 5,000 traces × 25 spans at 20 ms server latency per request, W = 8, 24, 32
#     workers, against the ideal W / 20 ms;
#   - peak RSS of `ttplan` (/usr/bin/time -v) collecting 1,000 vs 5,000 traces;
#   - CPU time the fake OAP itself used during each run (it shares the machine's cores).
# The fake is the test suite's (sandbox/src/skywalking.rs, via sandbox/examples/fake_skywalking.rs),
# on loopback, with documents validated against ../shared/fixtures when present.
#   scripts/bench-traces.sh            (builds release binaries; set CARGO_TARGET_DIR to share)
set -euo pipefail
cd "$(dirname "$0")/.."

TRACES=${TRACES:-5000}
SMALL=${SMALL:-1000}
LATENCY_MS=${LATENCY_MS:-20}
target=${CARGO_TARGET_DIR:-target}

cargo build --release --locked --bin ttplan >&2 && cargo build --release --locked -p ttplan-sandbox --example fake_skywalking >&2
bin=$target/release/ttplan
fake=$target/release/examples/fake_skywalking

work=$(mktemp -d)
fake_pid=
cleanup() {
  exec 3>&- 2>/dev/null || true
  if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkfifo "$work/fake.in"
"$fake" --traces "$TRACES" --segments 5 --spans-per-segment 5 --latency-ms "$LATENCY_MS" \
  <"$work/fake.in" >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
exec 3>"$work/fake.in"   # the fake serves until this closes
for _ in $(seq 100); do grep -q '^URL ' "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^URL //p' "$work/fake.out")
[ -n "$url" ] || { echo "fake OAP did not start: $(cat "$work/fake.err")" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
fake_cpu_ticks() { awk '{print $14 + $15}' "/proc/$fake_pid/stat"; }

# run NAME WORKERS SIZE → appends one JSON line to $work/results.jsonl
run() {
  local name=$1 workers=$2 size=$3 plan=$work/$1.yaml out=$work/$1
  cat >"$plan" <<EOF
name: bench_traces
vars:
  exp_name: $name
steps:
  traces:
    kind: collect-traces
    endpoint: $url
    start: "2026-03-01T10:00:00Z"
    end: "2026-03-01T11:00:00Z"
    workers: $workers
    size: $size
EOF
  local before after
  before=$(fake_cpu_ticks)
  /usr/bin/time -v -o "$work/$name.time" "$bin" run "$plan" --out "$out" >"$work/$name.log" 2>&1 \
    || { echo "run $name failed:"; cat "$work/$name.log"; exit 1; } >&2
  after=$(fake_cpu_ticks)
  local rss wall cpu
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$name.time")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$work/$name.time")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$name.time")
  jq -c --arg name "$name" --argjson w "$workers" --argjson rss "$rss" --arg wall "$wall" --argjson cpu "$cpu" \
    --argjson fake_cpu "$(awk -v a="$after" -v b="$before" -v t="$ticks" 'BEGIN {print (a - b) / t}')" --argjson lat "$LATENCY_MS" \
    '.steps.traces as $s | {name: $name, workers: $w, traces: $s.outputs.traces,
      spans: $s.outputs.span_count, failed: $s.outputs.failed, step_ms: $s.duration_ms,
      rss_kb: $rss, wall: $wall, cpu_s: $cpu, fake_cpu_s: $fake_cpu, latency_ms: $lat}' \
    "$out/runs/$name/experiment_manifest.json" >>"$work/results.jsonl"
}

for w in 8 24 32; do run "w$w" "$w" "$TRACES"; done
run "small" 24 "$SMALL"

echo "collect-traces benchmark: $TRACES traces × 25 spans, ${LATENCY_MS} ms latency per request, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
jq -rs '
  (map(select(.name != "small"))[] |
    (.traces / (.step_ms / 1000)) as $tps | (.workers * 1000 / .latency_ms) as $ideal |
    "W=\(.workers|tostring|.[0:2])  \(.traces) traces  \(.spans) spans  failed \(.failed)  step \(.step_ms) ms  " +
    "\($tps|floor) traces/s  ideal \($ideal|floor)  ratio \(($tps / $ideal * 100 | round) / 100)  " +
    "peak RSS \(.rss_kb / 1024 | floor) MiB  ttplan CPU \((.cpu_s * 100 | round) / 100) s  fake CPU \((.fake_cpu_s * 100 | round) / 100) s"),
  ((map(select(.name == "small"))[0]) as $s | (map(select(.name == "w24"))[0]) as $b |
    "peak RSS (W=24): \($s.traces) traces \($s.rss_kb / 1024 | floor) MiB, \($b.traces) traces \($b.rss_kb / 1024 | floor) MiB, ratio \(($b.rss_kb / $s.rss_kb * 100 | round) / 100)")
' "$work/results.jsonl"
exec 3>&-
wait "$fake_pid" 2>/dev/null || true
fake_pid=
sed 's/^/  /' "$work/fake.err"
