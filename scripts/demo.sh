#!/usr/bin/env bash
# The main job for now: a full CLI round trip on examples/sample.
# bundle → seal (passphrase) → inspect → verify → open → unbundle → bundle again,
# and a check that the bytes are identical.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
C=target/release/coffer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export COFFER_PASSPHRASE="${COFFER_PASSPHRASE:-demo passphrase, change me}"
$C bundle examples/sample -o "$work/sample.cfb"
$C seal "$work/sample.cfb" -o "$work/sample.cfs" --metadata '{"backup":"demo","collections":["docs","notes"]}'
$C inspect "$work/sample.cfs"
$C verify "$work/sample.cfs"
$C open "$work/sample.cfs" -o "$work/opened.cfb"
$C unbundle "$work/opened.cfb" -o "$work/restored"
$C bundle "$work/restored" -o "$work/again.cfb"
cmp "$work/sample.cfb" "$work/again.cfb"
$C inspect "$work/again.cfb"
echo "round trip OK: identical bundle bytes"
