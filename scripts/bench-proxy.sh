#!/usr/bin/env bash
# Added latency of the recording proxy: 200 concurrent requests (x10 rounds) and 200 sequential
# ones to a loopback server, directly and through the proxy, in one run. Optimised build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked --bench proxy_latency "$@"
