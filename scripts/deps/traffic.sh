#!/usr/bin/env bash
# Test prerequisites for the api-driver / recording proxy tests: python3 with `requests`
# (the traffic drivers the tests run are Python, like EvoMaster's generated suites).
# Idempotent: does nothing when `import requests` already works.
set -euo pipefail

if python3 -c 'import requests' 2>/dev/null; then
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  apt-get update
  apt-get install -y python3 python3-requests
  exit 0
fi

# pip first (a user's virtualenv); Debian's python refuses system-wide pip installs
# (PEP 668), so fall back to the distribution package.
if python3 -m pip install --quiet requests 2>/dev/null && python3 -c 'import requests' 2>/dev/null; then
  exit 0
fi
apt-get update
apt-get install -y python3-requests
python3 -c 'import requests'
