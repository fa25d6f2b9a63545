#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md, in one run: each of our figures beside a
# reference figure measured in the same run, and the ratio.
#
#   scripts/bench.sh                 # everything (≈ 10 min on 2 cores, ≈ 8 GB of scratch disk)
#   COFFER_BENCH_ONLY=seal scripts/bench.sh     # one part: seal | corpus | memory (comma-separated)
#
# Environment:
#   CARGO_TARGET_DIR        build directory (default: ./target-bench)
#   COFFER_BENCH_DIR        scratch directory (default: /tmp/coffer-bench); the corpus is kept there
#   COFFER_BENCH_CORPUS_MIB corpus size in MiB (default 512)
#   COFFER_BENCH_BIG        size of the sealed file for the memory test (default 4G, as for `head -c`)
#
# Installs what it needs when missing (restic, age, /usr/bin/time, openssl,
# with apt-get), builds `cargo build --release`, and prints a summary with
# the targets of issue 2 §8 marked MET / MISSED.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
WORK="${COFFER_BENCH_DIR:-/tmp/coffer-bench}"
CORPUS_MIB="${COFFER_BENCH_CORPUS_MIB:-512}"
BIG="${COFFER_BENCH_BIG:-4G}"
ONLY="${COFFER_BENCH_ONLY:-seal,corpus,memory}"
PASS="coffer bench passphrase"
mkdir -p "$WORK"
SUMMARY="$WORK/summary.txt"
: > "$SUMMARY"

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
part() { [[ ",$ONLY," == *",$1,"* ]]; }
now() { date +%s.%N; }
# awk arithmetic helpers
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

# ---------------------------------------------------------------- tools
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
[[ -x /usr/bin/time ]] || need_apt+=(time)
if part corpus; then
  command -v restic >/dev/null || need_apt+=(restic)
  command -v age >/dev/null || need_apt+=(age)
fi
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get install -y "${need_apt[@]}" >&2 || { $SUDO apt-get update >&2 && $SUDO apt-get install -y "${need_apt[@]}" >&2; }
fi

echo "building (cargo build --release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)" >&2
# The CLI only: the server feature adds nothing to these paths.
cargo build --release --no-default-features --features cli --bin coffer >&2
BIN="$CARGO_TARGET_DIR/release/coffer"

say "coffer benchmarks — $(date -u +%Y-%m-%dT%H:%MZ)"
say "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/ {print $2 " GiB RAM"}')"
say "tools:   $(openssl version | cut -d' ' -f1-2), $(command -v restic >/dev/null && restic version | cut -d' ' -f1-2 || echo 'no restic'), age $(command -v age >/dev/null && age --version || echo 'missing'), $(rustc --version | cut -d' ' -f1-2)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)  (other processes on the machine share the cores)"
say ""

declare -A RES

# ---------------------------------------------------------------- 1. seal/open vs openssl
if part seal; then
  say "== 1. seal/open throughput (in memory, 1 MiB segments) vs openssl speed -evp aes-256-gcm -bytes 1048576 -seconds 3 =="
  # openssl prints "AES-256-GCM  <n>k" (1000s of bytes per second) for the 1 MiB column. By default
  # it divides by the process's user CPU time; -elapsed divides by wall time, like our figures.
  ossl() { openssl speed "$@" -evp aes-256-gcm -bytes 1048576 -seconds 3 2>/dev/null | awk '/^(AES-256-GCM|aes-256-gcm)/ {v=$NF; sub(/k$/,"",v); print v/1000}' | tail -1; }
  RES[ossl_enc]=$(ossl); RES[ossl_enc_wall]=$(ossl -elapsed)
  RES[ossl_dec]=$(ossl -decrypt); RES[ossl_dec_wall]=$(ossl -decrypt -elapsed)
  bench_out=$(cargo bench --no-default-features --features cli --bench seal 2>/dev/null)
  printf '%s\n' "$bench_out" | grep -v '^RESULT' | sed 's/^/  /' | tee -a "$SUMMARY"
  r() { printf '%s\n' "$bench_out" | awk -v k="$1" '$1=="RESULT" && $2==k {print $3}'; }
  for k in seal_default open_default seal_1thread open_1thread seal_whole_default open_whole_default; do
    RES[$k]=$(r "${k}_mbps"); RES[${k}_cpu]=$(r "${k}_cpu_mbps")
  done
  pct() { calc "100*$1/$2" 0; }
  RES[seal_ratio]=$(pct "${RES[seal_default]}" "${RES[ossl_enc_wall]}")
  RES[open_ratio]=$(pct "${RES[open_default]}" "${RES[ossl_dec_wall]}")
  say "  openssl, 1 process: encrypt $(calc "${RES[ossl_enc]}" 0) MB/cpu-s, $(calc "${RES[ossl_enc_wall]}" 0) MB/s wall (-elapsed); decrypt $(calc "${RES[ossl_dec]}" 0) MB/cpu-s, $(calc "${RES[ossl_dec_wall]}" 0) MB/s wall"
  say "  $(printf '%-44s %10s %10s %12s %12s' 'coffer (push API)' 'seal MB/s' '% openssl' 'open MB/s' '% openssl')"
  line() { say "  $(printf '%-44s %10s %9s%% %12s %11s%%' "$1" "$2" "$(pct "$2" "$3")" "$4" "$(pct "$4" "$5")")"; }
  line "$(nproc) threads, 8 MiB pushes, wall (headline)" "${RES[seal_default]}" "${RES[ossl_enc_wall]}" "${RES[open_default]}" "${RES[ossl_dec_wall]}"
  line "$(nproc) threads, one push of the buffer, wall" "${RES[seal_whole_default]}" "${RES[ossl_enc_wall]}" "${RES[open_whole_default]}" "${RES[ossl_dec_wall]}"
  line "1 thread, 8 MiB pushes, wall" "${RES[seal_1thread]}" "${RES[ossl_enc_wall]}" "${RES[open_1thread]}" "${RES[ossl_dec_wall]}"
  line "1 thread, 8 MiB pushes, per CPU-second" "${RES[seal_1thread_cpu]}" "${RES[ossl_enc]}" "${RES[open_1thread_cpu]}" "${RES[ossl_dec]}"
  line "$(nproc) threads, 8 MiB pushes, per CPU-second" "${RES[seal_default_cpu]}" "${RES[ossl_enc]}" "${RES[open_default_cpu]}" "${RES[ossl_dec]}"
  say "  (wall figures compare with openssl -elapsed, per-CPU-second figures with openssl's default, CPU-time figure)"
  say ""
fi

# ---------------------------------------------------------------- 2. corpus: bundle+seal vs restic vs tar|age
if part corpus; then
  say "== 2. bundle+seal of a ${CORPUS_MIB} MiB JSON corpus vs restic backup vs tar | age =="
  CORPUS="$WORK/corpus-$CORPUS_MIB"
  if [[ ! -f "$CORPUS/.complete" ]]; then
    rm -rf "$CORPUS"
    echo "generating the corpus in $CORPUS" >&2
    python3 scripts/bench_corpus.py "$CORPUS" "$CORPUS_MIB"
    touch "$CORPUS/.complete"
  fi
  IN_BYTES=$(find "$CORPUS" -type f ! -name '.*' -printf '%s\n' | awk '{s+=$1} END {print s}')
  say "  corpus: $IN_BYTES bytes in $(find "$CORPUS" -name '*.ndjson' | wc -l) NDJSON collections ($(cd "$CORPUS" && ls *.ndjson | tr '\n' ' '))"
  cat "$CORPUS"/* > /dev/null   # warm the page cache: every tool reads from memory
  OUT="$WORK/out"; rm -rf "$OUT"; mkdir -p "$OUT"
  TF="$WORK/time.txt"
  export COFFER_PASSPHRASE="$PASS"

  # Every command runs under /usr/bin/time: wall seconds, user+sys CPU seconds, peak RSS.
  tm() { local f=$1; shift; /usr/bin/time -o "$f" -f '%e %U %S %M' "$@"; }
  cpu() { cat "$@" | awk '{s+=$2+$3} END {printf "%.2f", s}'; }
  wall() { awk '{printf "%.2f", $1}' "$1"; }
  rss() { awk '{print int($4/1024)}' "$1"; }

  # coffer: bundle piped into seal (one pass), then each phase alone.
  t0=$(now)
  tm "$TF.b" "$BIN" bundle "$CORPUS" -o - | tm "$TF.s" "$BIN" seal - -o "$OUT/corpus.cfs"
  t1=$(now)
  RES[coffer_t]=$(calc "$t1-$t0" 2); RES[coffer_cpu]=$(cpu "$TF.b" "$TF.s"); RES[coffer_size]=$(stat -c %s "$OUT/corpus.cfs")
  RES[coffer_rss]="bundle $(rss "$TF.b") MiB, seal $(rss "$TF.s") MiB"
  tm "$TF" "$BIN" bundle "$CORPUS" -o "$OUT/corpus.cfb" >/dev/null
  RES[bundle_t]=$(wall "$TF"); RES[bundle_cpu]=$(cpu "$TF"); RES[bundle_size]=$(stat -c %s "$OUT/corpus.cfb")
  tm "$TF" "$BIN" seal "$OUT/corpus.cfb" -o "$OUT/corpus2.cfs" >/dev/null
  RES[seal_t]=$(wall "$TF"); RES[seal_cpu]=$(cpu "$TF")
  cmp -s "$OUT/corpus.cfb" <("$BIN" open "$OUT/corpus.cfs" -o -) && RES[rt]=identical || RES[rt]=DIFFERENT
  rm -f "$OUT/corpus2.cfs"

  # restic: fresh repository, default compression (auto).
  if command -v restic >/dev/null; then
    export RESTIC_PASSWORD="$PASS" RESTIC_REPOSITORY="$OUT/restic" RESTIC_CACHE_DIR="$OUT/restic-cache"
    restic init -q >/dev/null
    tm "$TF" restic backup -q "$CORPUS" >/dev/null
    RES[restic_t]=$(wall "$TF"); RES[restic_cpu]=$(cpu "$TF"); RES[restic_size]=$(du -sb "$OUT/restic" | cut -f1)
  fi

  # tar | age to an X25519 recipient (age does not compress).
  if command -v age >/dev/null; then
    age-keygen -o "$OUT/age.key" 2>/dev/null
    R=$(age-keygen -y "$OUT/age.key")
    t0=$(now); tm "$TF.t" tar -cf - -C "$CORPUS" . | tm "$TF.a" age -r "$R" > "$OUT/corpus.tar.age"; t1=$(now)
    RES[age_t]=$(calc "$t1-$t0" 2); RES[age_cpu]=$(cpu "$TF.t" "$TF.a"); RES[age_size]=$(stat -c %s "$OUT/corpus.tar.age")
  fi

  # Reference only: the compressor at our level on the raw files (zstd CLI, all cores).
  if command -v zstd >/dev/null; then
    t0=$(now); tm "$TF" zstd -q -3 -T0 -c "$CORPUS"/*.ndjson > "$OUT/corpus.zst"; t1=$(now)
    RES[zstd_t]=$(calc "$t1-$t0" 2); RES[zstd_cpu]=$(cpu "$TF"); RES[zstd_size]=$(stat -c %s "$OUT/corpus.zst")
  fi

  row() { # name wall cpu size [input bytes]
    [[ -n "${2:-}" ]] || { say "$(printf '  %-30s %s' "$1" "not installed")"; return; }
    local in=${5:-$IN_BYTES}
    say "$(printf '  %-30s %7.2f s %7.0f MB/s %7.2f s %7.0f MB/cpu-s %11d B  %5.2fx' "$1" "$2" "$(calc "$in/$2/1e6" 0)" "$3" "$(calc "$in/$3/1e6" 0)" "$4" "$(calc "$in/$4" 2)")"
  }
  say "  $(printf '%-30s %9s %12s %9s %16s %13s  %s' tool wall speed CPU 'speed per CPU' output 'in/out')"
  row "coffer bundle | coffer seal" "${RES[coffer_t]}" "${RES[coffer_cpu]}" "${RES[coffer_size]}"
  row "  coffer bundle alone" "${RES[bundle_t]}" "${RES[bundle_cpu]}" "${RES[bundle_size]}"
  row "  coffer seal alone" "${RES[seal_t]}" "${RES[seal_cpu]}" "${RES[coffer_size]}" "${RES[bundle_size]}"
  row "restic backup" "${RES[restic_t]:-}" "${RES[restic_cpu]:-}" "${RES[restic_size]:-0}"
  row "tar | age -r" "${RES[age_t]:-}" "${RES[age_cpu]:-}" "${RES[age_size]:-0}"
  row "(reference: zstd -3 -T0 files)" "${RES[zstd_t]:-}" "${RES[zstd_cpu]:-}" "${RES[zstd_size]:-0}"
  say "  speeds: corpus bytes per second (seal alone: bundle bytes); CPU = user+sys of all processes; in/out = input / output bytes"
  say "  peak memory: ${RES[coffer_rss]}; open of the sealed bundle gives the bundle back: ${RES[rt]}"
  RES[coffer_mbps]=$(calc "$IN_BYTES/${RES[coffer_t]}/1e6" 0)
  if [[ -n "${RES[restic_t]:-}" ]]; then
    say "  speed coffer : restic = $(calc "${RES[restic_t]}/${RES[coffer_t]}" 2) (wall), $(calc "${RES[restic_cpu]}/${RES[coffer_cpu]}" 2) (per CPU-second); output = $(calc "${RES[coffer_size]}/${RES[restic_size]}" 3) x restic's"
  fi
  if [[ -n "${RES[age_t]:-}" ]]; then
    say "  speed coffer : tar|age = $(calc "${RES[age_t]}/${RES[coffer_t]}" 2) (wall), $(calc "${RES[age_cpu]}/${RES[coffer_cpu]}" 2) (per CPU-second); output = $(calc "${RES[coffer_size]}/${RES[age_size]}" 3) x tar|age's"
  fi
  unset COFFER_PASSPHRASE RESTIC_PASSWORD
  rm -rf "$OUT"
  say ""
fi

# ---------------------------------------------------------------- 3. peak memory of open on a big sealed file
if part memory; then
  say "== 3. peak resident memory of coffer open on a $BIG sealed file (/usr/bin/time -v, Maximum resident set size) =="
  BIGF="$WORK/big.cfs"
  rm -f "$WORK/bench.id"; "$BIN" keygen -o "$WORK/bench.id" > "$WORK/bench.pub" 2>&1
  PUB=$(grep -o 'coffer1[0-9a-z]*' "$WORK/bench.pub" | head -1)
  export COFFER_PASSPHRASE="$PASS"
  for kind in passphrase x25519; do
    if [[ $kind == passphrase ]]; then seal_args=(); open_args=(); else seal_args=(-r "$PUB"); open_args=(-i "$WORK/bench.id"); fi
    t0=$(now)
    head -c "$BIG" /dev/urandom | /usr/bin/time -o "$WORK/time.seal" -f '%e %M' "$BIN" seal - -o "$BIGF" "${seal_args[@]}"
    t1=$(now)
    BIG_BYTES=$(stat -c %s "$BIGF")
    /usr/bin/time -v "$BIN" open "$BIGF" -o - "${open_args[@]}" 2> "$WORK/time.open" > /dev/null
    RES[rss_$kind]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.open")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.open")
    seal_rss=$(cut -d' ' -f2 "$WORK/time.seal")
    rm -f "$BIGF"
    say "  $kind: $BIG_BYTES bytes sealed from /dev/urandom through a pipe in $(calc "$t1-$t0" 1) s (seal peak RSS $((seal_rss / 1024)) MiB);"
    say "    coffer open FILE -o - > /dev/null: peak RSS $((RES[rss_$kind] / 1024)) MiB (${RES[rss_$kind]} KiB), wall $wall"
  done
  rm -f "$WORK/bench.id" "$WORK/bench.pub"
  unset COFFER_PASSPHRASE
  say "  (a passphrase file is opened with Argon2id at its default m = 64 MiB, which alone is 64 MiB of the peak)"
  say ""
fi

# ---------------------------------------------------------------- summary
mark() { if awk "BEGIN { exit !($1) }"; then echo MET; else echo MISSED; fi; }
say "== targets (issue 2 §8) =="
if part seal; then
  say "  seal ≥ 70 % of openssl AES-256-GCM (wall):     ${RES[seal_ratio]} %  $(mark "${RES[seal_ratio]} >= 70")"
  say "  open ≥ 70 % of openssl AES-256-GCM (wall):     ${RES[open_ratio]} %  $(mark "${RES[open_ratio]} >= 70")"
fi
if part corpus; then
  say "  bundle+seal ≥ 1 GB/s on $(nproc) cores:              ${RES[coffer_mbps]} MB/s  $(mark "${RES[coffer_mbps]} >= 1000")"
  if [[ -n "${RES[restic_t]:-}" ]]; then
    say "  bundle+seal ≥ 5x restic (wall):                $(calc "${RES[restic_t]}/${RES[coffer_t]}" 2)x  $(mark "${RES[restic_t]}/${RES[coffer_t]} >= 5")"
    say "  output no larger than restic's:                ${RES[coffer_size]} vs ${RES[restic_size]} bytes  $(mark "${RES[coffer_size]} <= ${RES[restic_size]}")"
  fi
fi
if part memory; then
  say "  open of a $BIG file ≤ 64 MiB peak RSS, passphrase: $((RES[rss_passphrase] / 1024)) MiB  $(mark "${RES[rss_passphrase]} <= 65536")"
  say "  open of a $BIG file ≤ 64 MiB peak RSS, X25519:     $((RES[rss_x25519] / 1024)) MiB  $(mark "${RES[rss_x25519]} <= 65536")"
fi
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(summary also in $SUMMARY)" >&2
