#!/usr/bin/env bash
# Benchmark of `collect-metrics` against a real local Prometheus, side by side with the physical
# floor, in one run:
#   ttplan  = wall time of `ttplan run` (release build) collecting N samples to CSV
#   floor   = curl downloading the very same query_range URLs to /dev/null (same concurrency)
#             + dd writing a file of the CSV's size (with fdatasync, as ttplan syncs its CSV)
# Reports ttplan/floor (target <= 1.5) and peak RSS (/usr/bin/time -v) for 250k, 1M and 2M
# samples (memory should be flat), and gzip on vs off at 1M. ttplan and floor runs alternate;
# each figure is the median of RUNS runs, and the ratio is the median of the per-pair ratios
# (a pair runs back to back, so it sees the same load on a shared machine).
#
#   bash scripts/bench-metrics.sh            (SERIES=50 RUNS=3 CONCURRENCY=4 to change)
set -euo pipefail
cd "$(dirname "$0")/.."

SERIES=${SERIES:-50}
RUNS=${RUNS:-5}
CONCURRENCY=${CONCURRENCY:-4}
QUERIES=4
STEP=15
SMALL_POINTS=5000   # x 50 series = 250k samples (1 request per query)
LARGE_POINTS=20000  # x 50 series = 1M samples (2 chunks per query: 11,000 points max)
HUGE_POINTS=40000   # x 50 series = 2M samples (4 chunks per query)
MAX_POINTS=11000

bash scripts/deps/metrics.sh
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --quiet
BIN=$CARGO_TARGET_DIR/release/ttplan

work=$(mktemp -d)
prom_pid=
cleanup() {
  if [ -n "$prom_pid" ]; then kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- dataset: SERIES gauges, one sample every STEP s, 30 days ago (clear of the head block) ---
t0=$(( ($(date +%s) / 86400 - 30) * 86400 ))
echo "== generating $SERIES series x $HUGE_POINTS samples"
awk -v series="$SERIES" -v points="$HUGE_POINTS" -v t0="$t0" -v step="$STEP" -v groups="$QUERIES" 'BEGIN {
  print "# TYPE bench_metric gauge"
  for (s = 0; s < series; s++) {
    labels = sprintf("container=\"ts-svc-%d\",group=\"%d\",instance=\"10.0.%d.%d:8080\",job=\"kubernetes-pods\",namespace=\"train-ticket\",pod=\"ts-svc-%d-7d9f8b6c4-x%02d\"", s, s % groups, s % 7, s, s, s)
    for (i = 0; i < points; i++) {
      v = ((i * 7919 + s * 104729) % 100000) / 1000
      printf "bench_metric{%s} %.3f %d\n", labels, v, t0 + i * step
    }
  }
  print "# EOF"
}' >"$work/data.om"
echo "== backfilling with promtool"
promtool tsdb create-blocks-from openmetrics "$work/data.om" "$work/tsdb" >/dev/null
rm -f "$work/data.om"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 1h\n' >"$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=100y --log.level=warn \
  >"$work/prometheus.log" 2>&1 &
prom_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 300); do
  curl -fs "$url/-/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs "$url/-/ready" >/dev/null || { cat "$work/prometheus.log" >&2; echo "prometheus not ready" >&2; exit 1; }

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Every query_range URL ttplan requests for a window of $1 points (same chunking).
chunk_urls() {
  local points=$1 start=$t0 end=$(( t0 + (points - 1) * STEP )) g cs ce
  for g in $(seq 0 $((QUERIES - 1))); do
    cs=$start
    while [ "$cs" -le "$end" ]; do
      ce=$(( cs + (MAX_POINTS - 1) * STEP )); [ "$ce" -gt "$end" ] && ce=$end
      printf '%s/api/v1/query_range?query=bench_metric%%7Bgroup%%3D%%22%d%%22%%7D&start=%d&end=%d&step=%d\n' \
        "$url" "$g" "$cs" "$ce" "$STEP"
      cs=$(( cs + MAX_POINTS * STEP ))
    done
  done
}

write_plan() { # points compression
  local points=$1 compression=$2 end=$(( t0 + ($1 - 1) * STEP ))
  {
    echo "name: bench"
    echo "steps:"
    echo "  metrics:"
    echo "    kind: collect-metrics"
    echo "    endpoint: $url"
    echo "    start: \"$(iso "$t0")\""
    echo "    end: \"$(iso "$end")\""
    echo "    step: ${STEP}s"
    echo "    concurrency: $CONCURRENCY"
    echo "    compression: $compression"
    echo "    queries:"
    for g in $(seq 0 $((QUERIES - 1))); do echo "      g$g: bench_metric{group=\"$g\"}"; done
  } >"$work/plan-$points-$compression.yaml"
}

run_id=0
# Prints "seconds rss_kib csv_bytes rows".
ttplan_once() { # points compression
  run_id=$((run_id + 1))
  local out="$work/out" t1 t2 csv
  rm -rf "$out"
  t1=$(now)
  /usr/bin/time -v -o "$work/time.txt" "$BIN" run "$work/plan-$1-$2.yaml" --out "$out" \
    --set "exp_name=bench$run_id" --progress never >/dev/null 2>"$work/ttplan.err" \
    || { cat "$work/ttplan.err" >&2; exit 1; }
  t2=$(now)
  csv=$(ls "$out"/metric_data/bench$run_id/*.csv)
  echo "$(echo "$t2 - $t1" | bc -l) $(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/time.txt") $(stat -c %s "$csv") $(($(wc -l <"$csv") - 1))"
}

floor_once() { # points csv_bytes -> "curl_s dd_s"
  local t1 t2 t3
  chunk_urls "$1" >"$work/urls"
  t1=$(now)
  xargs -P "$CONCURRENCY" -n 1 curl -fsS -o /dev/null <"$work/urls"
  t2=$(now)
  dd if=/dev/zero of="$work/dd.out" bs=1M count=$(( ($2 + 1048575) / 1048576 )) conv=fdatasync status=none
  t3=$(now)
  rm -f "$work/dd.out"
  echo "$(echo "$t2 - $t1" | bc -l) $(echo "$t3 - $t2" | bc -l)"
}

printf '\n%-10s %-5s %10s %9s %9s %9s %7s %9s %10s\n' samples gzip ttplan_s curl_s dd_s floor_s ratio maxRSS_MiB csv_MiB
for case in "$SMALL_POINTS false" "$LARGE_POINTS false" "$HUGE_POINTS false" "$LARGE_POINTS true"; do
  set -- $case
  points=$1 compression=$2
  write_plan "$points" "$compression"
  ttplan_once "$points" "$compression" >/dev/null # warm Prometheus' caches like every later run
  : >"$work/t"; : >"$work/r"; : >"$work/c"; : >"$work/d"; : >"$work/q"
  for _ in $(seq "$RUNS"); do
    read -r secs rss bytes rows < <(ttplan_once "$points" "$compression")
    echo "$secs" >>"$work/t"; echo "$rss" >>"$work/r"
    read -r c d < <(floor_once "$points" "$bytes")
    echo "$c" >>"$work/c"; echo "$d" >>"$work/d"
    echo "$secs / ($c + $d)" | bc -l >>"$work/q"
  done
  t=$(median <"$work/t"); r=$(sort -g "$work/r" | tail -1); c=$(median <"$work/c"); d=$(median <"$work/d")
  printf '%-10s %-5s %10.3f %9.3f %9.3f %9.3f %7.2f %9.1f %10.1f\n' "$rows" "$compression" "$t" "$c" "$d" \
    "$(echo "$c + $d" | bc -l)" "$(median <"$work/q")" "$(echo "$r / 1024" | bc -l)" "$(echo "$bytes / 1048576" | bc -l)"
done
echo
echo "ratio = median over $RUNS back-to-back pairs of ttplan_s / (curl_s + dd_s); curl fetches the same query_range URLs, $CONCURRENCY in flight;"
echo "dd writes the CSV's size with fdatasync; times are medians, maxRSS the largest of the runs; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)."
