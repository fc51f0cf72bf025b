#!/usr/bin/env bash
# Test prerequisites of collect-metrics: the real Prometheus server and promtool (Debian package
# `prometheus`). Idempotent: does nothing when both are on PATH.
# The tests start their own server on a loopback port; the package's system service is kept from
# starting (policy-rc.d) so nothing else listens on 9090 or writes a TSDB under /var/lib.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "collect-metrics tests need prometheus and promtool: run as root or 'apt-get install prometheus'" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null
