#!/usr/bin/env bash
# Benchmark of `collect-logs` (DESIGN.md target: 60 pods in ≤ 2 s against the fake API server,
# all pods concurrently, streamed to disk; memory flat in the size of the logs).
#   - wall time of `ttplan run` (release) for 60 pods × 20,000 lines of 200 bytes (240 MB),
#     R rounds, plus the step's own time and the collector's `elapsed_ms`;
#   - peak RSS (/usr/bin/time -v) for the same run, for 60 pods × 2,000 lines (24 MB) and for
#     6 pods × 200,000 lines (40 MB each): flat means about the same in all three.
# The fake is the test suite's (sandbox/src/kube_fake, via sandbox/examples/fake_kube_logs.rs), on
# loopback, sharing the machine's cores with ttplan.
#   scripts/bench-logs.sh            (builds release binaries; set CARGO_TARGET_DIR to share)
#   R=5 CONCURRENCY=32 scripts/bench-logs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

R=${R:-3}
WIDTH=${WIDTH:-199}
CONCURRENCY=${CONCURRENCY:-16}
target=${CARGO_TARGET_DIR:-target}

cargo build --release --locked --bin ttplan >&2 && cargo build --release --locked -p ttplan-sandbox --example fake_kube_logs >&2
bin=$target/release/ttplan
fake=$target/release/examples/fake_kube_logs

work=$(mktemp -d)
fake_pid=
stop_fake() {
  exec 3>&- 2>/dev/null || true
  if [ -n "$fake_pid" ]; then wait "$fake_pid" 2>/dev/null || true; fi
  fake_pid=
}
cleanup() {
  if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; fi
  stop_fake
  rm -rf "$work"
}
trap cleanup EXIT

# start_fake PODS LINES → sets $kubeconfig
start_fake() {
  local d=$work/fake-$1-$2
  mkdir -p "$d"
  rm -f "$work/fake.in"
  mkfifo "$work/fake.in"
  "$fake" --pods "$1" --lines "$2" --width "$WIDTH" --dir "$d" \
    <"$work/fake.in" >"$d/out" 2>"$d/err" &
  fake_pid=$!
  exec 3>"$work/fake.in"   # the fake serves until this closes
  for _ in $(seq 100); do grep -q '^KUBECONFIG ' "$d/out" 2>/dev/null && break; sleep 0.1; done
  kubeconfig=$(sed -n 's/^KUBECONFIG //p' "$d/out")
  [ -n "$kubeconfig" ] || { echo "fake API server did not start: $(cat "$d/err")" >&2; exit 1; }
}

# run NAME PODS LINES → appends one JSON line to $work/results.jsonl
run() {
  local name=$1 plan=$work/$1.yaml out=$work/$1
  cat >"$plan" <<EOF
name: bench_logs
vars:
  exp_name: $name
steps:
  logs:
    kind: collect-logs
    namespace: default
    # The fake's lines are stamped up to a few minutes back; take them all.
    since: "2000-01-01T00:00:00Z"
    concurrency: $CONCURRENCY
    require: all
EOF
  /usr/bin/time -v -o "$work/$name.time" "$bin" run "$plan" --out "$out" --progress never \
    --kubeconfig "$kubeconfig" >"$work/$name.log" 2>&1 \
    || { echo "run $name failed:"; cat "$work/$name.log"; exit 1; } >&2
  local rss wall
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$name.time")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$name.time")
  jq -c --arg name "$name" --argjson pods "$2" --argjson lines "$3" --argjson rss "$rss" --arg wall "$wall" \
    '.steps.logs as $s | {name: $name, pods: $pods, lines: $lines, files: $s.outputs.files,
      bytes: $s.outputs.bytes, step_ms: $s.duration_ms, collect_ms: $s.outputs.elapsed_ms,
      rss_kb: $rss, wall: $wall}' \
    "$out/runs/$name/experiment_manifest.json" >>"$work/results.jsonl"
  rm -rf "$out"
}

start_fake 60 20000
for i in $(seq 1 "$R"); do run "p60_l20k_$i" 60 20000; done
stop_fake
start_fake 60 2000
run p60_l2k 60 2000
stop_fake
start_fake 6 200000
run p6_l200k 6 200000
stop_fake

echo "collect-logs benchmark: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), concurrency $CONCURRENCY, line $((WIDTH + 1)) bytes"
jq -r '"\(.name|.+"            "|.[0:12]) \(.pods) pods × \(.lines) lines  \(.files) files  \(.bytes / 1e6 | floor) MB  " +
  "ttplan run wall \(.wall)  step \(.step_ms) ms  collect \(.collect_ms) ms  peak RSS \(.rss_kb / 1024 | floor) MiB"' \
  "$work/results.jsonl"
