#!/usr/bin/env node
// Benchmark of the coffer npm package (pkg/) in Node, from one run:
//   - raw WebCrypto AES-256-GCM on 1 MiB chunks (the reference),
//   - seal/open through WebCrypto and in pure wasm, and their ratios to raw,
//   - seal/open through WebCrypto at several sizes (the same bytes per size,
//     so 256 calls of 1 MiB against one of 256 MiB), and in Node without
//     the output prefault (pkg/lib/prefault-node.js), against raw,
//   - sealStream/openStream through WebCrypto, from 1 MiB chunks in memory
//     into a sink that only counts bytes, and their ratios to raw,
//   - the in-wasm AES-GCM ceiling of the pure-wasm path, when the bench
//     variant of the module is built (bash scripts/build-wasm.sh --bench),
//   - Argon2id with the default parameters (64 MiB, t=3, p=1),
//   - opening a 4 GiB stream (sealed on the fly by the native CLI, or by a
//     Node child process): throughput and peak resident memory above baseline,
//   - the size of the .wasm, raw and gzip.
// Prints a Markdown section for BENCHMARKS.md.
//
//   node scripts/bench-js.mjs                 # needs pkg/ (scripts/build-wasm.sh)
//   COFFER_BENCH_STREAM_GIB=1 node scripts/bench-js.mjs   # shorter stream
//   COFFER_BENCH_ONLY=stream …                             # only the large stream (speed, peak memory)
//   COFFER_BENCH_ROUNDS=5 …                                # more rounds (best of, and the median of per-round ratios)
//   COFFER_BENCH_SWEEP_MIB=1,8,32 …                        # one-shot sizes besides the bulk size ('' for none)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const coffer = await import(new URL('pkg/node.js', `file://${ROOT}`).href);
// The window coffer's WebCrypto path uses: the raw reference uses the same.
const { IN_FLIGHT } = await import(new URL('pkg/lib/webcrypto.js', `file://${ROOT}`).href);
// The Node entry's output prefault (seal/open from PREFAULT_MIN bytes), switched off for one measure.
const { outputPrefault, setOutputPrefault } = await import(new URL('pkg/lib/state.js', `file://${ROOT}`).href);
const { PREFAULT_MIN } = await import(new URL('pkg/lib/prefault-node.js', `file://${ROOT}`).href);

/**
 * The bench variant of the module (feature `bench`: gcmReference, the
 * in-wasm AES-GCM ceiling), built apart from pkg/ by
 * `bash scripts/build-wasm.sh --bench`; null when it is not built.
 */
async function benchWasm() {
  const dir = `${process.env.CARGO_TARGET_DIR ?? `${ROOT}target-wasm`}/wasm-bench/`;
  if (!existsSync(`${dir}coffer_wasm.js`)) return { module: null, note: 'not built (bash scripts/build-wasm.sh --bench)' };
  const module = await import(new URL('coffer_wasm.js', `file://${dir}`).href);
  module.initSync({ module: readFileSync(`${dir}coffer_wasm_bg.wasm`) });
  const stale = statSync(`${dir}coffer_wasm_bg.wasm`).mtimeMs < statSync(`${ROOT}pkg/wasm/coffer_wasm_bg.wasm`).mtimeMs;
  return { module, note: stale ? 'bench build older than pkg/: rebuild it with --bench' : '' };
}

const MiB = 1 << 20;
const CHUNK = MiB;
const BULK = Number(process.env.COFFER_BENCH_MIB ?? 256) * MiB;
const WASM_BULK = Number(process.env.COFFER_BENCH_WASM_MIB ?? 64) * MiB;
const STREAM = Number(process.env.COFFER_BENCH_STREAM_GIB ?? 4) * 1024 * MiB;
const ROUNDS = Number(process.env.COFFER_BENCH_ROUNDS ?? 3);
/** One-shot sizes measured besides BULK, in MiB: each makes BULK / size calls per round. */
const SWEEP = (process.env.COFFER_BENCH_SWEEP_MIB ?? '1,8,32')
  .split(',')
  .filter((x) => x.trim() !== '')
  .map((x) => Number(x) * MiB)
  .filter((size) => size > 0 && size < BULK && BULK % size === 0);
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
/**
 * The raw reference keeps operations in flight as coffer's Pipeline does
 * (pkg/lib/webcrypto.js): each new one is started, then it waits until no
 * more than IN_FLIGHT are pending, so IN_FLIGHT to IN_FLIGHT + 1 run at once.
 */
const WINDOW = IN_FLIGHT;

const seconds = (t0) => (performance.now() - t0) / 1000;
const mbps = (bytes, s) => bytes / 1e6 / s;
const fmt = (x) => x.toFixed(0);

const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
/** Best of `rounds` runs of `fn`, in wall seconds. */
async function best(fn, rounds = ROUNDS) {
  let min = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await fn();
    min = Math.min(min, seconds(t0));
  }
  return min;
}

function pattern(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4096) out[i] = i & 0xff;
  return out;
}

const rawKey = await globalThis.crypto.subtle.importKey('raw', new Uint8Array(32).fill(7), 'AES-GCM', false, ['encrypt', 'decrypt']);
const rawPlain = pattern(CHUNK);
const rawSealed = new Uint8Array(await globalThis.crypto.subtle.encrypt({ name: 'AES-GCM', iv: new Uint8Array(12) }, rawKey, rawPlain));

/**
 * Raw WebCrypto AES-256-GCM over `total` bytes in 1 MiB chunks, `window`
 * (+ 1) operations in flight: `WINDOW` as coffer by default; 0 for one at a
 * time (`await` each operation, the plain loop behind the 1.3 GB/s figure the
 * issue quotes for WebCrypto in Node). With `assemble`, each result is also copied into one
 * output buffer: the least any one-shot API returning a Uint8Array must do.
 * Every chunk is the same 1 MiB array (in cache), unless `inputs` gives one
 * per chunk (views of one large buffer, as `seal`/`open` read their input).
 */
async function rawWebCrypto(total, op, assemble = false, inputs = null, window = WINDOW) {
  const subtle = globalThis.crypto.subtle;
  const iv = new Uint8Array(12);
  const input = op === 'encrypt' ? rawPlain : rawSealed;
  const out = assemble ? new Uint8Array(total + (total / CHUNK) * 16) : null;
  let at = 0;
  const place = (result) => {
    if (out) {
      out.set(new Uint8Array(result), at);
      at += result.byteLength;
    }
  };
  const inFlight = [];
  for (let done = 0, i = 0; done < total; done += CHUNK, i++) {
    inFlight.push(subtle[op]({ name: 'AES-GCM', iv }, rawKey, inputs ? inputs[i] : input));
    while (inFlight.length > window) place(await inFlight.shift());
  }
  for (const result of await Promise.all(inFlight)) place(result);
}

/** `chunks` as a ReadableStream, one chunk per pull. */
function sourceOf(chunks) {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else controller.close();
    },
  });
}

/** Pipes `chunks` through `transform` into a sink that only counts bytes; returns the count. */
async function throughStream(chunks, transform) {
  let bytes = 0;
  await sourceOf(chunks)
    .pipeThrough(transform)
    .pipeTo(
      new WritableStream({
        write(chunk) {
          bytes += chunk.length;
        },
      }),
    );
  return bytes;
}

function cliPath() {
  return [process.env.COFFER_BIN, `${ROOT}target/release/coffer`, `${ROOT}target-wasm/debug/coffer`, `${ROOT}target/debug/coffer`].find((p) => p && existsSync(p));
}

/** A child process writing a sealed stream of `total` zero bytes to stdout, sealed to `publicKey`. */
function sealedSource(total, publicKey) {
  const cli = cliPath();
  if (cli) {
    const child = spawn('sh', ['-c', `head -c ${total} /dev/zero | "$0" seal - -o - -r "$1"`, cli, publicKey], { stdio: ['ignore', 'pipe', 'inherit'] });
    return { child, by: 'the native CLI (coffer seal - -o -)' };
  }
  const script = `
    const c = await import(${JSON.stringify(new URL('pkg/node.js', `file://${ROOT}`).href)});
    const { Writable } = await import('node:stream');
    let sent = 0;
    const source = new ReadableStream({ pull(ctl) { if (sent >= ${total}) return ctl.close(); const n = Math.min(${MiB}, ${total} - sent); sent += n; ctl.enqueue(new Uint8Array(n)); } });
    await source.pipeThrough(c.sealStream({ recipients: [${JSON.stringify(publicKey)}] })).pipeTo(Writable.toWeb(process.stdout));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return { child, by: 'a Node child process (sealStream)' };
}

/** Opens a `total`-byte stream sealed by another process; returns throughput and peak RSS above baseline. */
async function openLargeStream(total) {
  const alice = coffer.generateIdentity();
  await coffer.open(await coffer.seal(new Uint8Array(3 * MiB), { recipients: [alice.publicKey] }), { identity: alice.identity });
  const { Readable } = await import('node:stream');
  gc();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const { child, by } = sealedSource(total, alice.publicKey);
  let bytes = 0;
  const t0 = performance.now();
  await Readable.toWeb(child.stdout)
    .pipeThrough(coffer.openStream({ identity: alice.identity }))
    .pipeTo(
      new WritableStream({
        write(chunk) {
          bytes += chunk.length;
          peak = Math.max(peak, process.memoryUsage().rss);
        },
      }),
    );
  const s = seconds(t0);
  clearInterval(timer);
  if (bytes !== total) throw new Error(`stream gave ${bytes} bytes, expected ${total}`);
  return { s, by, baseline, peak, bytes };
}

/**
 * `openssl speed` AES-256-GCM on 16 KiB blocks, one thread, in MB/s: a
 * yardstick of the host's speed in this run (the same figure was 5.9 GB/s
 * on one of these machines, 2.6-2.9 GB/s on another day), or null.
 */
function opensslSpeed() {
  const run = spawnSync('openssl', ['speed', '-seconds', '2', '-bytes', '16384', '-evp', 'aes-256-gcm'], { encoding: 'utf8' });
  const line = run.status === 0 ? run.stdout.split('\n').find((l) => /^AES-256-GCM\s/i.test(l)) : null;
  const kbps = line ? Number(line.trim().split(/\s+/).pop().replace(/k$/, '')) : NaN;
  return Number.isFinite(kbps) ? (kbps * 1000) / 1e6 : null;
}

/**
 * Writes one byte per page of a new `bytes`-long buffer: the cost of the
 * fresh memory every one-shot output needs, which raw WebCrypto on 1 MiB
 * chunks never pays (its results come back from the malloc heap). On these
 * VMs the guest hands freed memory back to the host at once (free page
 * reporting), so first touches cost host faults: 0.5-3.8 ms/MiB.
 */
function touchFresh(bytes) {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4096) out[i] = 1;
  return out[bytes - 4096];
}

/** gzip -9 size (as scripts/build-wasm.sh prints it), else zlib level 9. */
function gzipSize(path) {
  const run = spawnSync('gzip', ['-9c', path], { maxBuffer: 1 << 26 });
  return run.status === 0 ? run.stdout.length : gzipSync(readFileSync(path), { level: 9 }).length;
}

async function main() {
  // The stream first, while the heap holds nothing else.
  const stream = await openLargeStream(STREAM);
  const yardstick = opensslSpeed();
  if (process.env.COFFER_BENCH_ONLY === 'stream') {
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    console.log(`openStream, ${STREAM / 1024 / MiB} GiB sealed on the fly by ${stream.by}: ${fmt(mbps(stream.bytes, stream.s))} MB/s, peak RSS +${fmt((stream.peak - stream.baseline) / MiB)} MiB above a ${fmt(stream.baseline / MiB)} MiB baseline (IN_FLIGHT ${IN_FLIGHT}; load ${load})`);
    return;
  }
  const alice = coffer.generateIdentity();
  const sealKey = { recipients: [alice.publicKey] };
  const openKey = { identity: alice.identity };
  const data = pattern(BULK);
  const wasmData = data.subarray(0, WASM_BULK);

  // The same, reading distinct chunks of one BULK-sized input, as seal/open do.
  const plainChunks = [];
  for (let at = 0; at < BULK; at += CHUNK) plainChunks.push(data.subarray(at, at + CHUNK));
  const sealedAll = new Uint8Array(BULK + (BULK / CHUNK) * 16);
  const sealedChunks = [];
  for (let i = 0; i < plainChunks.length; i++) {
    const at = i * (CHUNK + 16);
    sealedAll.set(new Uint8Array(await globalThis.crypto.subtle.encrypt({ name: 'AES-GCM', iv: new Uint8Array(12) }, rawKey, plainChunks[i])), at);
    sealedChunks.push(sealedAll.subarray(at, at + CHUNK + 16));
  }
  // Sealing to a public key: X25519 costs microseconds, so this is the bulk path alone.
  let sealed = await coffer.seal(data, sealKey);
  // The streams: 1 MiB chunks, distinct views of one buffer, into a sink that counts bytes.
  const sealedSource = [];
  for (let at = 0; at < sealed.length; at += CHUNK) sealedSource.push(sealed.subarray(at, at + CHUNK));
  let wasmSealed = coffer.sealSync(wasmData, sealKey);
  // The size sweep: BULK bytes per round at each size, `data` cut into views.
  const sweepJobs = {};
  for (const size of SWEEP) {
    const calls = BULK / size;
    const input = data.subarray(0, size);
    const sealedInput = await coffer.seal(input, sealKey);
    sweepJobs[`seal@${size}`] = [BULK, async () => {
      for (let i = 0; i < calls; i++) await coffer.seal(input, sealKey);
    }];
    sweepJobs[`open@${size}`] = [BULK, async () => {
      for (let i = 0; i < calls; i++) await coffer.open(sealedInput, openKey);
    }];
  }
  /** `fn` with the Node entry's output prefault switched off. */
  const withoutPrefault = async (fn) => {
    const prefault = outputPrefault();
    setOutputPrefault(null);
    try {
      return await fn();
    } finally {
      setOutputPrefault(prefault);
    }
  };
  // The ceiling of sealSync: AES-256-GCM on 1 MiB already in wasm memory, no copies, no framing.
  const gcmRounds = WASM_BULK / MiB;
  const bench = await benchWasm();

  // Every measure runs once per round, round after round, so a change in
  // the machine's load hits the references and coffer alike; each keeps
  // its best round.
  const jobs = {
    rawEnc: [BULK, () => rawWebCrypto(BULK, 'encrypt')],
    rawDec: [BULK, () => rawWebCrypto(BULK, 'decrypt')],
    rawEncOut: [BULK, () => rawWebCrypto(BULK, 'encrypt', true)],
    rawDecOut: [BULK, () => rawWebCrypto(BULK, 'decrypt', true)],
    rawEncBig: [BULK, () => rawWebCrypto(BULK, 'encrypt', true, plainChunks)],
    rawDecBig: [BULK, () => rawWebCrypto(BULK, 'decrypt', true, sealedChunks)],
    // Distinct inputs, results discarded: what the streams do, minus the format.
    rawEncIn: [BULK, () => rawWebCrypto(BULK, 'encrypt', false, plainChunks)],
    rawDecIn: [BULK, () => rawWebCrypto(BULK, 'decrypt', false, sealedChunks)],
    // One operation at a time, results discarded: the plain `await` loop.
    rawEncSeq: [BULK, () => rawWebCrypto(BULK, 'encrypt', false, null, 0)],
    rawDecSeq: [BULK, () => rawWebCrypto(BULK, 'decrypt', false, null, 0)],
    // A fresh BULK-sized buffer, one byte written per page.
    fresh: [BULK, () => touchFresh(BULK + (BULK / CHUNK) * 16)],
    sealWeb: [BULK, async () => (sealed = await coffer.seal(data, sealKey))],
    openWeb: [BULK, () => coffer.open(sealed, openKey)],
    sealWebNoPrefault: [BULK, () => withoutPrefault(() => coffer.seal(data, sealKey))],
    openWebNoPrefault: [BULK, () => withoutPrefault(() => coffer.open(sealed, openKey))],
    ...sweepJobs,
    sealStreamWeb: [BULK, () => throughStream(plainChunks, coffer.sealStream(sealKey))],
    openStreamWeb: [BULK, () => throughStream(sealedSource, coffer.openStream(openKey))],
    sealWasm: [WASM_BULK, () => (wasmSealed = coffer.sealSync(wasmData, sealKey))],
    openWasm: [WASM_BULK, () => coffer.openSync(wasmSealed, openKey)],
    ...(bench.module && {
      gcmOwn: [WASM_BULK, () => bench.module.gcmReference(MiB, gcmRounds, false)],
      gcmCrate: [WASM_BULK, () => bench.module.gcmReference(MiB, gcmRounds, true)],
    }),
  };
  const fastest = {};
  const rounds = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, [bytes, fn]] of Object.entries(jobs)) {
      const c0 = cpuSeconds();
      const t0 = performance.now();
      await fn();
      const s = seconds(t0);
      (rounds[name] ??= []).push(s);
      if (!(fastest[name]?.s <= s)) fastest[name] = { s, cpu: cpuSeconds() - c0, bytes };
    }
  }
  /**
   * The median over rounds of `name`'s speed as a percentage of `reference`'s
   * in the same round: the best rounds of two measures may fall at different
   * moments of a shared machine's load, a round's pair at the same one.
   */
  const perRound = (name, reference) => {
    const ratios = rounds[name].map((s, i) => (100 * rounds[reference][i]) / s).sort((a, b) => a - b);
    const mid = ratios.length >> 1;
    const median = ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
    return `${fmt(median)} %`;
  };
  const result = (name) => {
    const r = fastest[name];
    if (!r) return null;
    return { mbps: mbps(r.bytes, r.s), text: `${fmt(mbps(r.bytes, r.s))} MB/s (${fmt(mbps(r.bytes, r.cpu))} MB/cpu-s)` };
  };
  const [rawEnc, rawDec, rawEncOut, rawDecOut, rawEncBig, rawDecBig, rawEncIn, rawDecIn] = ['rawEnc', 'rawDec', 'rawEncOut', 'rawDecOut', 'rawEncBig', 'rawDecBig', 'rawEncIn', 'rawDecIn'].map(result);
  const [sealWeb, openWeb, sealStreamWeb, openStreamWeb, sealWasm, openWasm, gcmOwn, gcmCrate] = ['sealWeb', 'openWeb', 'sealStreamWeb', 'openStreamWeb', 'sealWasm', 'openWasm', 'gcmOwn', 'gcmCrate'].map(result);
  const ofCeiling = (x) => (gcmOwn ? `; ${fmt((100 * x.mbps) / gcmOwn.mbps)} % of the in-wasm AES-GCM` : '');

  // Argon2id with the defaults: open a passphrase file (the KDF runs once, the payload is 1 byte).
  const pwFile = coffer.sealSync(new Uint8Array(1), { passphrase: 'benchmark' });
  const argonMs = (await best(() => coffer.openSync(pwFile, { passphrase: 'benchmark' }))) * 1000;

  const wasmPath = `${ROOT}pkg/wasm/coffer_wasm_bg.wasm`;

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const freshMsPerMiB = rounds.fresh.map((t) => (t * 1000 * MiB) / BULK);
  const rows = [
    ['raw WebCrypto AES-256-GCM encrypt, 1 MiB chunks', rawEnc.text, 'reference'],
    ['raw WebCrypto AES-256-GCM decrypt, 1 MiB chunks', rawDec.text, 'reference'],
    ['raw WebCrypto encrypt, 1 MiB chunks, one operation at a time', result('rawEncSeq').text, 'reference: the plain `await` loop (the issue\'s "≈ 1.3 GB/s on 1 MiB chunks")'],
    ['raw WebCrypto decrypt, 1 MiB chunks, one operation at a time', result('rawDecSeq').text, 'reference: idem'],
    [
      `first touch of a fresh ${BULK / MiB} MiB buffer (one byte per page)`,
      `${Math.min(...freshMsPerMiB).toFixed(2)}–${Math.max(...freshMsPerMiB).toFixed(2)} ms/MiB over the rounds`,
      `paid by every one-shot output, never by raw WebCrypto on 1 MiB chunks; raw encrypt takes ${((1000 * MiB) / (rawEnc.mbps * 1e6)).toFixed(2)} ms/MiB`,
    ],
    ['raw WebCrypto encrypt + results copied into one buffer', rawEncOut.text, 'what a one-shot API must at least do'],
    ['raw WebCrypto decrypt + results copied into one buffer', rawDecOut.text, 'what a one-shot API must at least do'],
    [`raw WebCrypto encrypt + copy, input read from one ${BULK / MiB} MiB buffer`, rawEncBig.text, 'the same work as `seal` minus the format'],
    [`raw WebCrypto decrypt + copy, input read from one ${BULK / MiB} MiB buffer`, rawDecBig.text, 'the same work as `open` minus the format'],
    [`raw WebCrypto encrypt, input read from one ${BULK / MiB} MiB buffer, results discarded`, rawEncIn.text, 'the same work as `sealStream` minus the format'],
    [`raw WebCrypto decrypt, input read from one ${BULK / MiB} MiB buffer, results discarded`, rawDecIn.text, 'the same work as `openStream` minus the format'],
    [
      '`seal` (WebCrypto path)',
      sealWeb.text,
      `${fmt((100 * sealWeb.mbps) / rawEnc.mbps)} % of raw encrypt, ${fmt((100 * sealWeb.mbps) / rawEncOut.mbps)} % of raw + copy, ${fmt((100 * sealWeb.mbps) / rawEncBig.mbps)} % of raw + copy from one buffer; per round (median): ${perRound('sealWeb', 'rawEnc')} of raw (target ≥ 80 % of raw), ${perRound('sealWeb', 'rawEncSeq')} of raw one at a time`,
    ],
    [
      '`open` (WebCrypto path)',
      openWeb.text,
      `${fmt((100 * openWeb.mbps) / rawDec.mbps)} % of raw decrypt, ${fmt((100 * openWeb.mbps) / rawDecOut.mbps)} % of raw + copy, ${fmt((100 * openWeb.mbps) / rawDecBig.mbps)} % of raw + copy from one buffer; per round (median): ${perRound('openWeb', 'rawDec')} of raw (target ≥ 80 % of raw), ${perRound('openWeb', 'rawDecSeq')} of raw one at a time`,
    ],
    [
      `\`seal\` (WebCrypto path), output prefault off`,
      result('sealWebNoPrefault').text,
      `${fmt((100 * result('sealWebNoPrefault').mbps) / rawEnc.mbps)} % of raw encrypt; per round (median): ${perRound('sealWebNoPrefault', 'rawEnc')} of raw; \`seal\` with the prefault per round: ${perRound('sealWeb', 'sealWebNoPrefault')} of this (Node faults outputs ≥ ${PREFAULT_MIN / MiB} MiB in on the threadpool)`,
    ],
    [
      `\`open\` (WebCrypto path), output prefault off`,
      result('openWebNoPrefault').text,
      `${fmt((100 * result('openWebNoPrefault').mbps) / rawDec.mbps)} % of raw decrypt; per round (median): ${perRound('openWebNoPrefault', 'rawDec')} of raw; \`open\` with the prefault per round: ${perRound('openWeb', 'openWebNoPrefault')} of this`,
    ],
    [
      '`sealStream` (WebCrypto), 1 MiB chunks in memory → a sink counting bytes',
      sealStreamWeb.text,
      `${fmt((100 * sealStreamWeb.mbps) / rawEnc.mbps)} % of raw encrypt, ${fmt((100 * sealStreamWeb.mbps) / rawEncIn.mbps)} % of raw encrypt from one buffer; per round (median): ${perRound('sealStreamWeb', 'rawEnc')} of raw encrypt (target ≥ 80 % of raw)`,
    ],
    [
      '`openStream` (WebCrypto), idem',
      openStreamWeb.text,
      `${fmt((100 * openStreamWeb.mbps) / rawDec.mbps)} % of raw decrypt, ${fmt((100 * openStreamWeb.mbps) / rawDecIn.mbps)} % of raw decrypt from one buffer; per round (median): ${perRound('openStreamWeb', 'rawDec')} of raw decrypt (target ≥ 80 % of raw)`,
    ],
    ...(gcmOwn
      ? [
          ['AES-256-GCM in this wasm build (src/wasm/gcm.rs), 1 MiB in wasm memory', gcmOwn.text, `reference: the ceiling of \`sealSync\` (no copies, no framing; bench build of the module)${bench.note ? `; ${bench.note}` : ''}`],
          ['AES-256-GCM of the `aes-gcm` crate in this wasm build, idem', gcmCrate.text, 'reference: what the pure-wasm path used before'],
        ]
      : [['in-wasm AES-GCM ceiling (gcmReference)', 'skipped', `the bench variant of the module is ${bench.note}`]]),
    ['`sealSync` (pure wasm)', sealWasm.text, `target ≥ 95 MB/s${ofCeiling(sealWasm)}; raw WebCrypto is ${fmt(rawEnc.mbps / sealWasm.mbps)}× faster`],
    ['`openSync` (pure wasm)', openWasm.text, `target ≥ 95 MB/s${ofCeiling(openWasm)}; raw WebCrypto is ${fmt(rawDec.mbps / openWasm.mbps)}× faster`],
    ['Argon2id m=64 MiB t=3 p=1 (in wasm)', `${fmt(argonMs)} ms`, 'once per passphrase seal/open'],
    [
      `\`openStream\`, ${STREAM / 1024 / MiB} GiB sealed on the fly by ${stream.by}`,
      `${fmt(mbps(stream.bytes, stream.s))} MB/s`,
      `peak RSS +${fmt((stream.peak - stream.baseline) / MiB)} MiB above a ${fmt(stream.baseline / MiB)} MiB baseline (target ≤ 64 MiB)`,
    ],
    ['`coffer_wasm_bg.wasm`', `${readFileSync(wasmPath).length} bytes raw`, `${gzipSize(wasmPath)} bytes gzip -9 (budget 300 KB)`],
  ];
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`### JS package (Node ${process.version}) — ${new Date().toISOString().slice(0, 10)}\n`);
  console.log(`Machine: ${os.cpus().length} × ${cpu}, ${fmt(os.totalmem() / 2 ** 30)} GiB RAM, ${os.platform()} ${os.release()}; load average at the end: ${load}; \`openssl speed -evp aes-256-gcm\`, 16 KiB blocks, one thread, before the rounds: ${yardstick ? `${fmt(yardstick)} MB/s` : 'not available'}.`);
  console.log(`Bulk: ${BULK / MiB} MiB (WebCrypto), ${WASM_BULK / MiB} MiB (wasm), best of ${ROUNDS} rounds, every measure once per round (interleaved; "per round": the median over rounds of the ratio to the reference measured in the same round); raw WebCrypto with ${WINDOW}–${WINDOW + 1} operations in flight, as coffer (IN_FLIGHT = ${IN_FLIGHT} in pkg/lib/webcrypto.js: a new one starts whenever no more than ${IN_FLIGHT} are pending).\n`);
  console.log('MB/cpu-s: megabytes per second of CPU time of this process (all threads), less sensitive to other load than wall-clock MB/s.\n');
  console.log('| measure | result | notes |\n|---|---|---|');
  for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`);
  console.log(`\nOne-shot calls by size (WebCrypto path), ${BULK / MiB} MiB per round at every size (so ${BULK / MiB} calls of 1 MiB against one of ${BULK / MiB} MiB), ratios to raw WebCrypto (1 MiB chunks, results discarded) measured in the same rounds, with ${WINDOW}–${WINDOW + 1} operations in flight and one at a time; target ≥ 80 %. The output prefault runs from ${PREFAULT_MIN / MiB} MiB.\n`);
  console.log('| one-shot size | `seal` best | `seal` / raw encrypt, per round: in flight · one at a time | `open` best | `open` / raw decrypt, per round: in flight · one at a time |\n|---|---|---|---|---|');
  const sweepRows = [...SWEEP.map((size) => [`${size / MiB} MiB × ${BULK / size}`, `seal@${size}`, `open@${size}`]), [`${BULK / MiB} MiB × 1`, 'sealWeb', 'openWeb'], [`${BULK / MiB} MiB × 1, prefault off`, 'sealWebNoPrefault', 'openWebNoPrefault']];
  for (const [label, sealName, openName] of sweepRows) {
    console.log(`| ${label} | ${result(sealName).text} | ${perRound(sealName, 'rawEnc')} · ${perRound(sealName, 'rawEncSeq')} | ${result(openName).text} | ${perRound(openName, 'rawDec')} · ${perRound(openName, 'rawDecSeq')} |`);
  }
}

await main();
