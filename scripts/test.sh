#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs every test.
# Each scripts/deps/*.sh installs one area's prerequisites idempotently (check first, then install).
set -euo pipefail
cd "$(dirname "$0")/.."
for dep in scripts/deps/*.sh; do
  [ -e "$dep" ] || continue
  echo "== test prerequisites: $dep"
  bash "$dep"
done
cargo test --workspace --all-targets --locked "$@"
