#!/usr/bin/env bash
# Benchmark: dump N real JaCoCo agents (N local JVMs, default 46 = Train-Ticket's pod count)
# concurrently vs one at a time, through `ttplan run` and a `collect-coverage` step.
# Reports the step's own dump time (manifest output `elapsed_ms`) and the wall time of the
# whole `ttplan run`, median of R rounds, and the ratio. Target: all 46 agents in <= 2 s wall.
#
#   bash scripts/bench-coverage.sh            # N=46 R=3, builds target/release/ttplan
#   N=8 R=5 TTPLAN_BIN=path/to/ttplan bash scripts/bench-coverage.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-46}"
R="${R:-3}"
CLASSES="${CLASSES:-200}"
LIB=/usr/share/java

bash scripts/deps/coverage.sh >/dev/null
if [ -z "${TTPLAN_BIN:-}" ]; then
  cargo build --release --locked --quiet
  TTPLAN_BIN="${CARGO_TARGET_DIR:-target}/release/ttplan"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A program with $CLASSES classes, all executed, so every dump carries real probe data.
mkdir -p "$work/src" "$work/classes"
{
  echo "public class Main { public static void main(String[] a) throws Exception { long s = 0;"
  for i in $(seq 0 $((CLASSES - 1))); do echo "s += C$i.run($i);"; done
  echo 'System.out.println("ready " + s); Thread.sleep(Long.MAX_VALUE); } }'
} >"$work/src/Main.java"
for i in $(seq 0 $((CLASSES - 1))); do
  cat >"$work/src/C$i.java" <<EOF
public class C$i {
  static long run(int n) { long s = 0; for (int i = 0; i < n % 7 + 3; i++) { s += branch(i); } return s; }
  static long branch(int i) { if (i % 2 == 0) { return i * 3L; } else if (i % 3 == 0) { return -i; } return 1; }
  static long unused(int i) { return i + 1; }
}
EOF
done
javac --release 11 -d "$work/classes" "$work"/src/*.java
(cd "$work" && unzip -q -o "$LIB/org.jacoco.agent.jar" jacocoagent.jar)

ports=()
for i in $(seq 1 "$N"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ports+=("$port")
  java -Xmx32m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k \
    "-javaagent:$work/jacocoagent.jar=output=tcpserver,address=127.0.0.1,port=$port,sessionid=bench-$i" \
    -cp "$work/classes" Main >"$work/jvm-$i.log" 2>&1 &
  pids+=("$!")
done
echo "started $N JVMs with the JaCoCo agent ($CLASSES classes each); waiting until ready…"
for i in $(seq 1 "$N"); do
  for _ in $(seq 1 600); do
    grep -q '^ready' "$work/jvm-$i.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^ready' "$work/jvm-$i.log" || { echo "JVM $i did not start:"; cat "$work/jvm-$i.log"; exit 1; }
done

plan() { # $1 = concurrency
  echo "name: bench-coverage"
  echo "steps:"
  echo "  dump:"
  echo "    kind: collect-coverage"
  echo "    reset: false"
  echo "    concurrency: $1"
  echo "    require: all"
  echo "    targets:"
  for i in $(seq 1 "$N"); do
    echo "      - { name: bench-svc-7d9f8b6c5-b$(printf '%04d' "$i" | tr 0-9 bcdfghjklm), address: \"127.0.0.1:${ports[$((i - 1))]}\" }"
  done
}
plan 64 >"$work/concurrent.yaml"
plan 1 >"$work/sequential.yaml"

run() { # $1 = mode, $2 = round → "step_ms wall_ms"
  local exp="$1-$2" t0 t1
  t0=$(date +%s%N)
  "$TTPLAN_BIN" run "$work/$1.yaml" --out "$work/out" --set "exp_name=$exp" --progress never >/dev/null 2>"$work/$exp.err" \
    || { cat "$work/$exp.err"; exit 1; }
  t1=$(date +%s%N)
  python3 - "$work/out/runs/$exp/experiment_manifest.json" "$(((t1 - t0) / 1000000))" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(m["steps"]["dump"]["outputs"]["elapsed_ms"], sys.argv[2])
EOF
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run concurrent warmup >/dev/null
declare -A step wall
for mode in sequential concurrent; do
  : >"$work/$mode.times"
  for r in $(seq 1 "$R"); do run "$mode" "$r" >>"$work/$mode.times"; done
  step[$mode]=$(cut -d' ' -f1 "$work/$mode.times" | median)
  wall[$mode]=$(cut -d' ' -f2 "$work/$mode.times" | median)
done
bytes=$(du -cb "$work"/out/coverage_data/concurrent-1/*.exec | tail -1 | cut -f1)

echo
echo "collect-coverage: $N agents, $CLASSES classes each, $bytes bytes of exec data per round (median of $R)"
printf '%-12s %12s %16s\n' mode "dump ms" "ttplan run ms"
printf '%-12s %12s %16s\n' sequential "${step[sequential]}" "${wall[sequential]}"
printf '%-12s %12s %16s\n' concurrent "${step[concurrent]}" "${wall[concurrent]}"
python3 - "${step[sequential]}" "${step[concurrent]}" "${wall[concurrent]}" "$N" <<'EOF'
import sys
seq, conc, wall, n = (int(x) for x in sys.argv[1:])
print(f"speed-up (sequential / concurrent dump time): {seq / max(conc, 1):.1f}x")
verdict = "OK" if wall <= 2000 else "MISSED"
print(f"target: {n} agents in <= 2000 ms wall (whole ttplan run): {wall} ms -> {verdict}")
EOF
