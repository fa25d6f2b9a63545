#!/usr/bin/env bash
# Builds pkg/ — the npm package `coffer` (the core compiled to wasm, for
# browsers and Node) — from a fresh clone, installing what is missing:
#   - the wasm32-unknown-unknown Rust target (rustup),
#   - the wasm-bindgen CLI, at exactly the version Cargo.toml pins,
#   - clang + lld (zstd's C code is compiled to wasm by clang), via apt-get,
#   - binaryen's wasm-opt from npm (pkg/package.json devDependencies; never
#     Debian's binaryen 108, whose wasm-opt writes modules that fail to load).
# Then prints the raw and gzip size of the .wasm (budget: 300 KB gzip).
#
#   bash scripts/build-wasm.sh            # size-tuned release build
#   COFFER_WASM_OPT=0 bash scripts/...    # skip wasm-opt
#   bash scripts/build-wasm.sh --bench    # the bench variant (below)
#
# --bench builds the same module with the feature `bench` (extra exports for
# scripts/bench-js.mjs, e.g. gcmReference) into $CARGO_TARGET_DIR/wasm-bench/,
# never into pkg/: the package ships without them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# A target dir of our own, so wasm builds never invalidate native ones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target-wasm}"
PROFILE=wasm-release
OUT=pkg/wasm
FEATURES=wasm
BUDGET_GZIP=$((300 * 1000))
case "${1:-}" in
  "") ;;
  --bench)
    OUT="$CARGO_TARGET_DIR/wasm-bench"
    FEATURES=wasm,bench
    ;;
  *)
    echo "usage: $0 [--bench]" >&2
    exit 2
    ;;
esac

log() { printf '== %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2
    return 1
  fi
}

# --- toolchain -------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  log "installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

pin=$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p' Cargo.toml)
[ -n "$pin" ] || { echo "cannot find the wasm-bindgen pin (wasm-bindgen = { version = \"=X\" }) in Cargo.toml" >&2; exit 1; }
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$pin" ]; then
  log "installing wasm-bindgen-cli $pin (found: ${have:-none})"
  cargo install wasm-bindgen-cli --version "$pin"
fi

if ! command -v clang >/dev/null; then
  log "installing clang and lld (zstd's C sources are compiled to wasm32)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld >/dev/null
fi
# zstd-sys builds its C code with cc-rs: clang targets wasm32 directly.
export CC_wasm32_unknown_unknown="${CC_wasm32_unknown_unknown:-clang}"
if command -v llvm-ar >/dev/null; then export AR_wasm32_unknown_unknown="${AR_wasm32_unknown_unknown:-llvm-ar}"; fi
# Size: leave out the zstd match finders coffer never uses. Bundles are
# compressed at level 3, which is ZSTD_dfast for every input size (zstd's
# clevels.h); the excluded strategies only serve other levels, so the bytes
# do not change (tests/js checks JS and CLI bundles are identical).
zstd_exclude=""
for s in GREEDY LAZY LAZY2 BTLAZY2 BTOPT BTULTRA; do zstd_exclude="$zstd_exclude -DZSTD_EXCLUDE_${s}_BLOCK_COMPRESSOR"; done
export CFLAGS_wasm32_unknown_unknown="${CFLAGS_wasm32_unknown_unknown:-}$zstd_exclude"

# WebAssembly SIMD (128-bit): the pure-wasm AES-256-GCM (src/wasm/gcm.rs)
# runs AES fixsliced over v128 words, 8 blocks per pass (src/wasm/fixslice.rs),
# and swaps GHASH's bytes with shuffles (BENCHMARKS.md has the figures).
# Every engine the package targets has it: Node ≥ 16.4,
# Chrome/Edge ≥ 91, Firefox ≥ 89, Safari ≥ 16.4. Target-specific, so the
# native build scripts and proc-macros are untouched; $RUSTFLAGS, if set, wins.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:-} -C target-feature=+simd128"

wasm_opt=pkg/node_modules/.bin/wasm-opt
if [ "${COFFER_WASM_OPT:-1}" != 0 ] && [ ! -x "$wasm_opt" ]; then
  log "installing binaryen (wasm-opt) from npm"
  (cd pkg && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- build -----------------------------------------------------------------
log "cargo build (profile $PROFILE, features $FEATURES)"
cargo build --locked --lib --target wasm32-unknown-unknown --no-default-features --features "$FEATURES" --profile "$PROFILE"
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/$PROFILE/coffer.wasm"

log "wasm-bindgen --target web"
rm -rf "$OUT"
# --weak-refs: objects not freed explicitly are released by a FinalizationRegistry.
wasm-bindgen "$wasm" --target web --out-dir "$OUT" --out-name coffer_wasm --no-typescript --weak-refs

bg="$OUT/coffer_wasm_bg.wasm"
if [ "${COFFER_WASM_OPT:-1}" != 0 ]; then
  log "wasm-opt -Os"
  # The features rustc enables by default for wasm32, plus SIMD (above).
  "$wasm_opt" "$bg" -o "$bg.opt" -Os --strip-debug --strip-producers \
    --enable-bulk-memory --enable-mutable-globals --enable-sign-ext \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    --enable-simd
  mv "$bg.opt" "$bg"
fi

raw=$(wc -c <"$bg")
gz=$(gzip -9 -c "$bg" | wc -c)
printf '%s: %d bytes raw, %d bytes gzip (budget %d)\n' "$bg" "$raw" "$gz" "$BUDGET_GZIP"
if [ "$FEATURES" = wasm ] && grep -q gcmReference "$OUT/coffer_wasm.js"; then
  echo "the shipped module exports a bench-only function" >&2
  exit 1
fi
if [ "$FEATURES" = wasm ] && [ "$gz" -gt "$BUDGET_GZIP" ]; then
  echo "wasm size over budget" >&2
  exit 1
fi
