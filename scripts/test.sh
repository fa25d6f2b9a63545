#!/usr/bin/env bash
# Runs every test of coffer. On a fresh machine it first installs what is
# missing; run it from anywhere: `bash scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

# A one-off build: incremental caches would only take disk (GBs with many test binaries).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
disk() { echo "== disk: $(df -h . | awk 'NR==2 {print $4" free of "$2}'); $(du -sh target 2>/dev/null | cut -f1) in target/"; }

disk
echo "== toolchain"
cargo --version
rustc --version

# Rust: unit, property, vector, crasher, CLI and server integration tests.
# The server feature is named explicitly so the suite covers it whatever the defaults are.
features=()
[ -f src/server/mod.rs ] && features=(--features server)
mkdir -p target
echo "== cargo test (core, CLI${features:+, server})"
cargo test --locked "${features[@]}" --no-fail-fast 2>&1 | tee target/cargo-test.log
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "cargo test failed"; exit 1; }
disk
summary=$(grep -E '^test result:' target/cargo-test.log | awk '{p+=$4; f+=$6; i+=$8} END {print p" passed, "f" failed, "i" skipped"}')

# JavaScript and WebAssembly: the npm package in Node and headless Chromium.
if [ -f scripts/test-js.sh ]; then
  echo "== JS / wasm / browser"
  # The CLI `cargo test` just built (with the server feature) for the interop tests.
  if [ -z "${COFFER_BIN:-}" ] && [ -x target/debug/coffer ]; then export COFFER_BIN="$PWD/target/debug/coffer"; fi
  bash scripts/test-js.sh
  disk
fi

echo "== rust tests: $summary"
