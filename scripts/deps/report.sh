#!/usr/bin/env bash
# Test prerequisite of the report tests (tests/it/report.rs): a headless browser, Debian's
# `chromium`, that renders the page. Idempotent: does nothing when chromium is on PATH.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null
command -v chromium >/dev/null
