#!/usr/bin/env bash
# Wall time of simulated traffic: `ttplan sandbox up`, then ROUNDS rounds of the public API's
# user session (15 requests each: login, trip queries, a booking through 9 services, orders,
# users, contacts) sent one after the other from one Python process. Debug build by default
# (PROFILE=release for an optimised one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-20}"
PROFILE="${PROFILE:-debug}"
if [ "$PROFILE" = release ]; then cargo build -q --locked --release; else cargo build -q --locked; fi
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"target/$PROFILE/ttplan" sandbox up --env-file "$dir/env" --dir "$dir/sb" >/dev/null &
pid=$!
for _ in $(seq 100); do [ -s "$dir/env" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$dir/env"
ROUNDS="$ROUNDS" python3 - <<'PY'
import json, os, time, urllib.request, urllib.error
base = os.environ["TT_BASE_URL"]
A = "4d2a46c7-71cb-4cf1-b5bb-b68406d9da6f"
session = [
    ("GET", "/", None),
    ("POST", "/api/v1/users/login", {"username": "fdse_microservice", "password": "111111"}),
    ("POST", "/api/v1/travelservice/trips/left", {"startPlace": "shanghai", "endPlace": "suzhou"}),
    ("GET", "/api/v1/travelservice/trips", None),
    ("POST", "/api/v1/travelservice/trip_detail", {"tripId": "G1234"}),
    ("GET", f"/api/v1/contactservice/contacts/account/{A}", None),
    ("GET", f"/api/v1/securityservice/securityConfigs/{A}", None),
    ("POST", "/api/v1/preserveservice/preserve", {"accountId": A, "tripId": "G1234", "seatType": 2}),
    ("POST", "/api/v1/orderservice/order/refresh", {"loginId": A}),
    ("GET", "/api/v1/orderservice/order/5ad7750b-a68b-49c0-a8c0-32776b067703", None),
    ("GET", "/api/v1/securityservice/securityConfigs", None),
    ("GET", "/api/v1/userservice/users", None),
    ("GET", f"/api/v1/userservice/users/id/{A}", None),
    ("GET", "/api/v1/contactservice/contacts/aded7dc5-06a7-4503-8e21-b7cad7a1f386", None),
    ("GET", "/api/v1/stationservice/stations/id/shanghai", None),
]
rounds = int(os.environ["ROUNDS"])
n, ok = 0, 0
t0 = time.monotonic()
for _ in range(rounds):
    for method, path, body in session:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                r.read()
                ok += r.status == 200
        except urllib.error.HTTPError as e:
            e.read()
        n += 1
dt = time.monotonic() - t0
print(f"{n} requests ({ok} answered 200) in {dt:.2f} s: {1000 * dt / n:.1f} ms per request")
PY
