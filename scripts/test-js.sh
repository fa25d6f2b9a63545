#!/usr/bin/env bash
# Every JavaScript / WebAssembly test of coffer, from a fresh clone. Installs
# what is missing (wasm32 target, wasm-bindgen CLI, apt: chromium,
# chromium-driver, clang, lld; npm packages of pkg/, tests/js/,
# tests/browser/ — never a downloaded browser), builds pkg/ and the native
# CLI (or takes $COFFER_BIN), then runs:
#   1. wasm-bindgen-test (tests/wasm.rs) in Node,
#   2. the same suite in headless Chromium,
#   3. node --test tests/js/*.test.mjs (API, every vector vs the native CLI,
#      CLI interop, > 1 GiB streaming in bounded memory),
#   4. tsc --noEmit on a typed consumer (tests/js/consumer),
#   5. the www/ page in headless Chromium (playwright-core), screenshot in
#      tests/browser/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# One target dir with scripts/test.sh's `cargo test`: the host-side build
# scripts and proc macros are shared, and CI's disk holds one tree, not two.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
start=$(date +%s)
step() { printf '\n== [%ss] %s\n' "$(($(date +%s) - start))" "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2
    return 1
  fi
}

step "system packages"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v clang >/dev/null || missing+=(clang)
command -v lld >/dev/null || missing+=(lld)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
node --version

step "build pkg/ (scripts/build-wasm.sh)"
bash scripts/build-wasm.sh

step "build the native CLI (interop tests)"
# scripts/test.sh passes the binary its `cargo test` built as $COFFER_BIN; run
# alone, this builds it in the native target dir with the default features.
if [ -z "${COFFER_BIN:-}" ]; then
  native_target="${COFFER_NATIVE_TARGET_DIR:-$root/target}"
  CARGO_TARGET_DIR="$native_target" cargo build --locked --bin coffer
  export COFFER_BIN="$native_target/debug/coffer"
fi

step "npm ci (tests/js, tests/browser)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The same environment build-wasm.sh uses for zstd's C code.
export CC_wasm32_unknown_unknown="${CC_wasm32_unknown_unknown:-clang}"
if command -v llvm-ar >/dev/null; then export AR_wasm32_unknown_unknown="${AR_wasm32_unknown_unknown:-llvm-ar}"; fi
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# As build-wasm.sh: SIMD on, so the wasm tests run the code that ships (src/wasm/gcm.rs).
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:-} -C target-feature=+simd128"
wasm_test=(cargo test --locked --target wasm32-unknown-unknown --no-default-features --features wasm --test wasm)

step "unit tests of src/wasm, native (AES-256-GCM for wasm vs the aes/aes-gcm crates, segment framing)"
cargo test --locked --no-default-features --features wasm --lib wasm::

step "wasm-bindgen-test in Node"
"${wasm_test[@]}"

step "wasm-bindgen-test in headless Chromium"
WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER="$(command -v chromedriver)" "${wasm_test[@]}"

step "node --test tests/js"
(cd tests/js && node --test --test-concurrency=1 --test-reporter=spec api.test.mjs vectors.test.mjs cli.test.mjs stream-memory.test.mjs)

step "tsc --noEmit on a typed consumer"
(cd tests/js && node_modules/.bin/tsc --noEmit -p consumer)

step "www/ in headless Chromium (playwright-core)"
(cd tests/browser && node --test --test-reporter=spec www.test.mjs)
echo "screenshot: tests/browser/artifacts/www.png"

step "all JS / wasm / browser tests passed"
