#!/usr/bin/env bash
# Benchmark: dump N real JaCoCo agents (N local JVMs, default 46 = Train-Ticket's pod count)
# concurrently vs one at a time, through `ttplan run` and a `collect-coverage` step.
# Reports the step's own dump time (manifest output `elapsed_ms`) and the wall time of the
# whole `ttplan run`, median of R rounds, and the ratio. Target: all 46 agents in <= 2 s wall.
#
# Two network settings: direct loopback, and through a relay per agent that delays every chunk
# by LATENCY_MS each way — a stand-in for a Kubernetes port-forward, whose round trips (client ->
# API server -> kubelet -> pod) are what concurrency hides. On loopback a dump costs only the
# agents' CPU, so on a small machine concurrency has little to win there.
#
# Third setting, `port-forward` (needs N >= 46): the real Kubernetes path against the fake API
# server of sandbox/src/kube_fake — Train-Ticket's 46 `ts-` pods, pod i's port 6300
# forwarding (WebSocket, v4.channel.k8s.io) to agent i; `collect-coverage` selects the pods and
# opens one port-forward per pod, `concurrency: 16` vs `concurrency: 1`. Run by the ignored test
# `bench_port_forward` in tests/it/coverage.rs (the fake runs in that test binary, debug build).
#
#   bash scripts/bench-coverage.sh            # N=46 R=3 LATENCY_MS=10; builds the release binary
#   N=8 R=5 TTPLAN_BIN=path/to/ttplan bash scripts/bench-coverage.sh
#   SETTINGS=port-forward TTPLAN_BIN=target/debug/ttplan bash scripts/bench-coverage.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-46}"
R="${R:-3}"
CLASSES="${CLASSES:-200}"
LATENCY_MS="${LATENCY_MS:-10}"
SETTINGS="${SETTINGS:-direct relay port-forward}"
has() { [[ " $SETTINGS " == *" $1 "* ]]; }
if has port-forward && [ "$N" -lt 46 ]; then
  echo "note: port-forward needs N >= 46 (one agent per Train-Ticket pod); skipping it"
  SETTINGS="${SETTINGS//port-forward/}"
fi
nets=()
for net in direct relay; do has "$net" && nets+=("$net"); done
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

# A relay per agent: every chunk is forwarded LATENCY_MS after it arrived, in order and
# pipelined (a chunk does not wait for the previous chunk's delay to end).
cat >"$work/relay.py" <<'PY'
import asyncio, sys

DELAY = float(sys.argv[1]) / 1000.0

async def pump(reader, writer):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    async def deliver():
        while True:
            due, chunk = await q.get()
            if chunk is None:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(chunk)
            await writer.drain()
        writer.close()
    task = asyncio.create_task(deliver())
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            q.put_nowait((loop.time() + DELAY, chunk))
    finally:
        q.put_nowait((0, None))
        await task

def handler(port):
    async def handle(r, w):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            w.close()
            return
        await asyncio.gather(pump(r, uw), pump(ur, w), return_exceptions=True)
    return handle

async def main():
    for pair in sys.argv[2:]:
        listen, target = (int(x) for x in pair.split(":"))
        await asyncio.start_server(handler(target), "127.0.0.1", listen)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
PY
relay_ports=()
pairs=()
for p in "${ports[@]}"; do
  rp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  relay_ports+=("$rp")
  pairs+=("$rp:$p")
done
python3 "$work/relay.py" "$LATENCY_MS" "${pairs[@]}" >"$work/relay.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do grep -q ready "$work/relay.log" && break; sleep 0.1; done
grep -q ready "$work/relay.log" || { echo "relay did not start:"; cat "$work/relay.log"; exit 1; }

plan() { # $1 = concurrency, $2 = direct|relay
  echo "name: bench-coverage"
  echo "steps:"
  echo "  dump:"
  echo "    kind: collect-coverage"
  echo "    reset: false"
  echo "    concurrency: $1"
  echo "    require: all"
  echo "    targets:"
  for i in $(seq 1 "$N"); do
    if [ "$2" = relay ]; then port=${relay_ports[$((i - 1))]}; else port=${ports[$((i - 1))]}; fi
    echo "      - { name: bench-svc-7d9f8b6c5-b$(printf '%04d' "$i" | tr 0-9 bcdfghjklm), address: \"127.0.0.1:$port\" }"
  done
}
for net in direct relay; do
  plan 64 $net >"$work/concurrent-$net.yaml"
  plan 1 $net >"$work/sequential-$net.yaml"
done

run() { # $1 = plan, $2 = round → "step_ms wall_ms"
  local exp="$1-$2" t0 t1
  t0=$(date +%s%N)
  "$TTPLAN_BIN" run "$work/$1.yaml" --out "$work/out" --set "exp_name=$exp" --progress never >/dev/null 2>"$work/$exp.err" \
    || { cat "$work/$exp.err"; exit 1; }
  t1=$(date +%s%N)
  python3 - "$work/out/runs/$exp/experiment_manifest.json" "$(((t1 - t0) / 1000000))" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(m["steps"]["dump"]["outputs"]["elapsed_ms"], sys.argv[2])
PY
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A step wall
[ "${#nets[@]}" -gt 0 ] && run "concurrent-${nets[0]}" warmup >/dev/null
for net in "${nets[@]}"; do
  for mode in sequential concurrent; do
    key="$mode-$net"
    : >"$work/$key.times"
    for r in $(seq 1 "$R"); do run "$key" "$r" >>"$work/$key.times"; done
    step[$key]=$(cut -d' ' -f1 "$work/$key.times" | median)
    wall[$key]=$(cut -d' ' -f2 "$work/$key.times" | median)
  done
done
if has port-forward; then
  echo "port-forward: building and running the bench_port_forward test…"
  BENCH_AGENT_PORTS="$(IFS=,; echo "${ports[*]}")" BENCH_ROUNDS="$R" TTPLAN_BIN="$TTPLAN_BIN" \
    cargo test --quiet --locked --test it coverage::bench_port_forward -- --ignored --nocapture \
    >"$work/pf.log" 2>&1 || { cat "$work/pf.log"; exit 1; }
  while read -r _ _ mode s w; do
    step[$mode-port-forward]=$s
    wall[$mode-port-forward]=$w
  done < <(grep '^BENCH port-forward' "$work/pf.log")
fi
bytes="(not measured: port-forward only)"
if [ "${#nets[@]}" -gt 0 ]; then
  bytes=$(du -cb "$work/out/coverage_data/concurrent-${nets[0]}-1"/*.exec | tail -1 | cut -f1)
fi

echo
echo "collect-coverage: $N agents, $CLASSES classes each, $bytes bytes of exec data per round (median of $R)"
printf '%-44s %10s %15s\n' setting "dump ms" "ttplan run ms"
for net in "${nets[@]}" port-forward; do
  has "$net" || continue
  label="direct loopback"
  [ "$net" = relay ] && label="relay +${LATENCY_MS} ms each way"
  [ "$net" = port-forward ] && label="port-forward (fake API server)"
  for mode in sequential concurrent; do
    printf '%-44s %10s %15s\n' "$mode, $label" "${step[$mode-$net]}" "${wall[$mode-$net]}"
  done
done
args=("$N")
for net in direct relay port-forward; do
  if has "$net"; then
    args+=("$net" "${step[sequential-$net]}" "${step[concurrent-$net]}" "${wall[concurrent-$net]}")
  fi
done
python3 - "${args[@]}" <<'PY'
import sys
n, rest = sys.argv[1], sys.argv[2:]
walls = []
for i in range(0, len(rest), 4):
    net, s, c, w = rest[i], int(rest[i + 1]), int(rest[i + 2]), int(rest[i + 3])
    print(f"speed-up, {net:<13} (sequential / concurrent dump time): {s / max(c, 1):.1f}x")
    walls.append(f"{net} {w} ms")
    ok = w <= 2000
    if not ok:
        walls[-1] += " (over)"
verdict = "OK" if all("(over)" not in w for w in walls) else "MISSED"
print(f"target: {n} agents in <= 2000 ms wall (whole ttplan run, concurrent): "
      f"{', '.join(walls)} -> {verdict}")
PY
