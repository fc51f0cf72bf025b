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
# `--lib --tests`: every target that has tests (each crate's unit tests and tests/it); the bin,
# the examples and the bench have none, so they are not linked as test harnesses here (clippy
# --all-targets still checks them).
cargo test --workspace --lib --tests --locked "$@"
