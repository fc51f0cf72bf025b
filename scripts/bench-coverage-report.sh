#!/usr/bin/env bash
# Benchmark: the `coverage-report` step on N services' dumps, each service rendered by an Ant
# run of its own (`services_per_run: 1`: one JVM start per service, the former way) vs all
# services in one Ant run (the default), side by side. Reports the median step time
# (manifest `duration_ms`) of each mode over R rounds, and their ratio.
#
# The dumps come from the sandbox's JaCoCo agents (sandbox/src/jacoco/) through the fake
# Kubernetes API's port-forwards, the classes from the sandbox's checkout
# (`write_checkout_classes`); the run is the ignored test `bench_coverage_report` in
# tests/it/sandbox_coverage.rs, which also checks that both modes wrote the same bytes.
#
#   bash scripts/bench-coverage-report.sh                 # N=41 (Train-Ticket's Java services) R=3
#   N=10 R=5 bash scripts/bench-coverage-report.sh
#   TTPLAN_BIN=target/release/ttplan bash scripts/bench-coverage-report.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-41}"
R="${R:-3}"
bash scripts/deps/coverage.sh >/dev/null

out="$(BENCH_SERVICES="$N" BENCH_ROUNDS="$R" cargo test -q --locked --test it \
  sandbox_coverage::bench_coverage_report -- --ignored --exact --nocapture 2>&1)" || {
  echo "$out" >&2
  exit 1
}
per="$(echo "$out" | awk '$1 == "BENCH" && $3 == "per-service" { print $5 }')"
batched="$(echo "$out" | awk '$1 == "BENCH" && $3 == "batched" { print $5 }')"
if [ -z "$per" ] || [ -z "$batched" ]; then
  echo "$out" >&2
  echo "no BENCH lines in the test's output" >&2
  exit 1
fi
echo "coverage-report on $N services, median of $R rounds (step duration_ms):"
printf '  %-32s %8s ms\n' "one Ant run per service" "$per" "one Ant run for all" "$batched"
awk -v a="$per" -v b="$batched" 'BEGIN { printf "  ratio per-service / batched: %.1fx\n", a / b }'
