#!/usr/bin/env bash
# Wall time of the README's first command: one campaign plan run end to end on the sandbox.
#   scripts/sandbox_run_time.sh [PLAN] [-- extra ttplan run args]
# TTPLAN_BIN picks the binary (default: target/release/ttplan, built if missing). The run goes
# to a temporary folder; prints the run's status and its wall time in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
plan=${1:-plans/lv_p_cpu.yaml}
shift || true
[ "${1:-}" = "--" ] && shift
bin=${TTPLAN_BIN:-target/release/ttplan}
if [ ! -x "$bin" ]; then
  cargo build --release --locked
fi
bin=$(realpath "$bin")
plan=$(realpath "$plan")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s.%N)
status=0
(cd "$out" && "$bin" run "$plan" --sandbox --progress never "$@" >run.log 2>&1) || status=$?
end=$(date +%s.%N)
manifest=$(ls "$out"/dataset/runs/*/experiment_manifest.json)
run_status=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"]["status"])' "$manifest")
printf '%s: exit %s, run %s, wall time %.1f s\n' "$(basename "$plan")" "$status" "$run_status" \
  "$(echo "$end - $start" | bc)"
