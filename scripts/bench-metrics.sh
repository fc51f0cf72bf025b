#!/usr/bin/env bash
# Benchmark of `collect-metrics` against a real local Prometheus, side by side with the physical
# floor, in one run:
#   ttplan  = wall time of `ttplan run` (release build) collecting N samples to CSV
#   floor   = curl downloading the very same query_range URLs to /dev/null (same concurrency)
#             + dd writing a file of the CSV's size (with fdatasync, as ttplan syncs its CSV)
# Reports ttplan/floor (target <= 1.5) and peak RSS (/usr/bin/time -v) for 250k, 1M and 2M
# samples (memory should be flat), gzip on vs off at 1M, and the published dataset's shape:
# SHORT_SERIES (20,000) short series of 45 points (an 11-minute experiment window at 15 s)
# with node-exporter/cAdvisor-like label sets (~900k rows, many label columns, mostly empty
# cells), where per-series costs dominate. ttplan and floor runs alternate;
# each figure is the median of RUNS runs, and the ratio is the median of the per-pair ratios
# (a pair runs back to back, so it sees the same load on a shared machine).
#
#   bash scripts/bench-metrics.sh            (SERIES=50 RUNS=3 CONCURRENCY=4 to change)
#   CASES="short" bash scripts/bench-metrics.sh        only some cases: 250k 1M 2M 1M-gzip short
#   TTPLAN_BIN=path/to/ttplan bash scripts/bench-metrics.sh   an existing binary, no build
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
SHORT_SERIES=${SHORT_SERIES:-20000}
SHORT_POINTS=45

bash scripts/deps/metrics.sh
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

CASES=${CASES:-250k 1M 2M 1M-gzip short}
if [ -n "${TTPLAN_BIN:-}" ]; then
  BIN=$TTPLAN_BIN
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
  cargo build --release --locked --quiet
  BIN=$CARGO_TARGET_DIR/release/ttplan
fi

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
}' >"$work/data.om"
# The dataset's shape: many short series, label sets that differ by exporter.
awk -v series="$SHORT_SERIES" -v points="$SHORT_POINTS" -v t0="$t0" -v step="$STEP" -v groups="$QUERIES" 'BEGIN {
  print "# TYPE bench_short gauge"
  for (s = 0; s < series; s++) {
    k = s % 4
    if (k == 0) extra = sprintf("cpu=\"%d\",mode=\"%s\"", s % 8, (s % 3 == 0) ? "idle" : "user")
    else if (k == 1) extra = sprintf("device=\"sd%c\",fstype=\"ext4\",mountpoint=\"/var/lib/kubelet/pods/%08x\"", 97 + s % 4, s)
    else if (k == 2) extra = sprintf("container=\"ts-svc-%d\",id=\"/kubepods/burstable/pod%08x\",image=\"codewisdom/ts-svc-%d:1.0.0\",name=\"k8s_ts-svc-%d_%08x\",pod=\"ts-svc-%d-7d9f8b6c4-x%02d\"", s % 41, s, s % 41, s % 41, s, s % 41, s % 100)
    else extra = sprintf("interface=\"eth%d\",pod=\"ts-svc-%d-7d9f8b6c4-x%02d\"", s % 2, s % 41, s % 100)
    labels = sprintf("group=\"%d\",instance=\"10.0.%d.%d:9100\",job=\"kubernetes-nodes\",namespace=\"train-ticket\",node=\"node-%d\",series=\"%d\",%s", s % groups, s % 7, s % 250, s % 3, s, extra)
    for (i = 0; i < points; i++) {
      v = ((i * 7919 + s * 104729) % 100000) / 1000
      printf "bench_short{%s} %.3f %d\n", labels, v, t0 + i * step
    }
  }
  print "# EOF"
}' >>"$work/data.om"
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

# Every query_range URL ttplan requests for a window of $1 points of metric $2 (same chunking).
chunk_urls() {
  local points=$1 metric=$2 start=$t0 end=$(( t0 + (points - 1) * STEP )) g cs ce
  for g in $(seq 0 $((QUERIES - 1))); do
    cs=$start
    while [ "$cs" -le "$end" ]; do
      ce=$(( cs + (MAX_POINTS - 1) * STEP )); [ "$ce" -gt "$end" ] && ce=$end
      printf '%s/api/v1/query_range?query=%s%%7Bgroup%%3D%%22%d%%22%%7D&start=%d&end=%d&step=%d\n' \
        "$url" "$metric" "$g" "$cs" "$ce" "$STEP"
      cs=$(( cs + MAX_POINTS * STEP ))
    done
  done
}

write_plan() { # points compression metric
  local points=$1 compression=$2 metric=$3 end=$(( t0 + ($1 - 1) * STEP ))
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
    for g in $(seq 0 $((QUERIES - 1))); do echo "      - '$metric{group=\"$g\"}'"; done
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

floor_once() { # points csv_bytes metric -> "curl_s dd_s"
  local t1 t2 t3
  chunk_urls "$1" "$3" >"$work/urls"
  t1=$(now)
  xargs -P "$CONCURRENCY" -n 1 curl -fsS -o /dev/null <"$work/urls"
  t2=$(now)
  dd if=/dev/zero of="$work/dd.out" bs=1M count=$(( ($2 + 1048575) / 1048576 )) conv=fdatasync status=none
  t3=$(now)
  rm -f "$work/dd.out"
  echo "$(echo "$t2 - $t1" | bc -l) $(echo "$t3 - $t2" | bc -l)"
}

printf '\n%-12s %-10s %-5s %10s %9s %9s %9s %7s %9s %10s\n' metric samples gzip ttplan_s curl_s dd_s floor_s ratio maxRSS_MiB csv_MiB
for case in "250k $SMALL_POINTS false bench_metric" "1M $LARGE_POINTS false bench_metric" \
  "2M $HUGE_POINTS false bench_metric" "1M-gzip $LARGE_POINTS true bench_metric" \
  "short $SHORT_POINTS false bench_short"; do
  set -- $case
  case " $CASES " in *" $1 "*) ;; *) continue ;; esac
  points=$2 compression=$3 metric=$4
  write_plan "$points" "$compression" "$metric"
  ttplan_once "$points" "$compression" >/dev/null # warm Prometheus' caches like every later run
  : >"$work/t"; : >"$work/r"; : >"$work/c"; : >"$work/d"; : >"$work/q"
  for _ in $(seq "$RUNS"); do
    read -r secs rss bytes rows < <(ttplan_once "$points" "$compression")
    echo "$secs" >>"$work/t"; echo "$rss" >>"$work/r"
    read -r c d < <(floor_once "$points" "$bytes" "$metric")
    echo "$c" >>"$work/c"; echo "$d" >>"$work/d"
    echo "$secs / ($c + $d)" | bc -l >>"$work/q"
  done
  t=$(median <"$work/t"); r=$(sort -g "$work/r" | tail -1); c=$(median <"$work/c"); d=$(median <"$work/d")
  printf '%-12s %-10s %-5s %10.3f %9.3f %9.3f %9.3f %7.2f %9.1f %10.1f\n' "$metric" "$rows" "$compression" "$t" "$c" "$d" \
    "$(echo "$c + $d" | bc -l)" "$(median <"$work/q")" "$(echo "$r / 1024" | bc -l)" "$(echo "$bytes / 1048576" | bc -l)"
done
echo
echo "ratio = median over $RUNS back-to-back pairs of ttplan_s / (curl_s + dd_s); curl fetches the same query_range URLs, $CONCURRENCY in flight;"
echo "dd writes the CSV's size with fdatasync; times are medians, maxRSS the largest of the runs; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)."
