#!/usr/bin/env bash
# How long the sandbox's simulated Prometheus takes to answer the campaign's metric collection:
# `ttplan sandbox up` serves, and a plan runs the published query set of plans/base/metrics.yaml
# (33 queries, `collect-metrics` at its default 15 s step) over the last 10 minutes against it.
# Reports the collect-metrics step's own duration (from the run manifest; the median of RUNS
# runs), the rows written, and the ratio to a 1 s budget (target: well under 1 in a debug build).
#
#   bash scripts/bench-sandbox-metrics.sh          (RUNS=5; SETS="performance service database pods")
#   TTPLAN_BIN=target/release/ttplan bash scripts/bench-sandbox-metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SETS=${SETS:-performance service database}
if [ -n "${TTPLAN_BIN:-}" ]; then
  BIN=$TTPLAN_BIN
else
  cargo build -q --bin ttplan
  BIN=target/debug/ttplan
fi
BIN=$(realpath "$BIN")
tmp=$(mktemp -d)
up_pid=
cleanup() {
  if [ -n "$up_pid" ]; then kill "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
"$BIN" sandbox up --env-file "$tmp/env" --dir "$tmp/sb" >"$tmp/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 300); do [ -s "$tmp/env" ] && break; sleep 0.1; done
[ -s "$tmp/env" ] || { echo "sandbox did not start:"; cat "$tmp/up.log"; exit 1; } >&2
# shellcheck disable=SC1091
source "$tmp/env"
sets=$(printf '"%s", ' $SETS)
cat >"$tmp/plan.yaml" <<PLAN
extends: $(realpath plans/base/metrics.yaml)
name: bench
vars:
  metric_set_names: [${sets%, }]
steps:
  metrics:
    kind: collect-metrics
    metric_sets: "{{ metric_sets }}"
    sets: "{{ metric_set_names }}"
    start: START
    output: m.csv
PLAN
times=()
for i in $(seq 1 "$RUNS"); do
  rm -rf "$tmp/out"
  start=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ)
  sed -i "s|start: .*|start: \"$start\"|" "$tmp/plan.yaml"
  "$BIN" run "$tmp/plan.yaml" --out "$tmp/out" --set exp_name=b --progress never >"$tmp/run.log" 2>&1 \
    || { cat "$tmp/run.log"; exit 1; } >&2
  manifest=$(find "$tmp/out" -name experiment_manifest.json | head -1)
  t=$(python3 - "$manifest" <<'PY'
import json, sys
from datetime import datetime
m = json.load(open(sys.argv[1]))
s = m["steps"]["metrics"]
p = lambda x: datetime.fromisoformat(x.replace("Z", "+00:00"))
print(f'{(p(s["finished_at"]) - p(s["started_at"])).total_seconds():.3f}')
PY
)
  times+=("$t")
done
rows=$(($(wc -l <"$tmp/out/m.csv") - 1))
queries=$(python3 -c "import json,sys; m=json.load(open('$manifest')); print(len(m['steps']['metrics']['outputs']['queries']))")
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "binary: $BIN"
echo "queries: $queries, window 10 min at 15 s, rows: $rows"
echo "collect-metrics step, runs: ${times[*]} s"
echo "median: $median s; ratio to a 1 s budget: $(python3 -c "print(round($median/1.0, 2))")"
