#!/usr/bin/env bash
# Benchmark of `coffer serve` (not a test). Usage: scripts/bench-server.sh [MiB, default 512]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --features server,cli --bin coffer
exec python3 scripts/bench-server.py "${CARGO_TARGET_DIR:-target}/release/coffer" "${1:-512}"
