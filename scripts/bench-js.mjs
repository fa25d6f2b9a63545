#!/usr/bin/env node
// Benchmark of the coffer npm package (pkg/) in Node, from one run:
//   - raw WebCrypto AES-256-GCM on 1 MiB chunks (the reference),
//   - seal/open through WebCrypto and in pure wasm, and their ratios to raw,
//   - Argon2id with the default parameters (64 MiB, t=3, p=1),
//   - opening a 4 GiB stream (sealed on the fly by the native CLI, or by a
//     Node child process): throughput and peak resident memory above baseline,
//   - the size of the .wasm, raw and gzip.
// Prints a Markdown section for BENCHMARKS.md.
//
//   node scripts/bench-js.mjs                 # needs pkg/ (scripts/build-wasm.sh)
//   COFFER_BENCH_STREAM_GIB=1 node scripts/bench-js.mjs   # shorter stream
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const coffer = await import(new URL('pkg/node.js', `file://${ROOT}`).href);

const MiB = 1 << 20;
const CHUNK = MiB;
const BULK = Number(process.env.COFFER_BENCH_MIB ?? 256) * MiB;
const WASM_BULK = Number(process.env.COFFER_BENCH_WASM_MIB ?? 64) * MiB;
const STREAM = Number(process.env.COFFER_BENCH_STREAM_GIB ?? 4) * 1024 * MiB;
const ROUNDS = 3;
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
/** Operations in flight for the raw reference: the same window coffer uses (pkg/lib/webcrypto.js). */
const WINDOW = 2;

const seconds = (t0) => (performance.now() - t0) / 1000;
const mbps = (bytes, s) => bytes / 1e6 / s;
const fmt = (x) => x.toFixed(0);

/** Best of `rounds` runs of `fn` (returns seconds). */
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

/** Raw WebCrypto AES-256-GCM over `total` bytes in 1 MiB chunks, `WINDOW` operations in flight. */
async function rawWebCrypto(total, op) {
  const subtle = globalThis.crypto.subtle;
  const key = await subtle.importKey('raw', new Uint8Array(32).fill(7), 'AES-GCM', false, ['encrypt', 'decrypt']);
  const iv = new Uint8Array(12);
  const plain = pattern(CHUNK);
  const sealed = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv }, key, plain));
  const input = op === 'encrypt' ? plain : sealed;
  return best(async () => {
    const inFlight = [];
    for (let done = 0; done < total; done += CHUNK) {
      inFlight.push(subtle[op]({ name: 'AES-GCM', iv }, key, input));
      if (inFlight.length >= WINDOW) await inFlight.shift();
    }
    await Promise.all(inFlight);
  });
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

async function main() {
  const alice = coffer.generateIdentity();
  const sealKey = { recipients: [alice.publicKey] };
  const openKey = { identity: alice.identity };
  const data = pattern(BULK);
  const wasmData = data.subarray(0, WASM_BULK);

  const rawEnc = mbps(BULK, await rawWebCrypto(BULK, 'encrypt'));
  const rawDec = mbps(BULK, await rawWebCrypto(BULK, 'decrypt'));

  // Sealing to a public key: X25519 costs microseconds, so this is the bulk path alone.
  let sealed;
  const sealWeb = mbps(BULK, await best(async () => (sealed = await coffer.seal(data, sealKey))));
  const openWeb = mbps(BULK, await best(() => coffer.open(sealed, openKey)));
  let wasmSealed;
  const sealWasm = mbps(WASM_BULK, await best(() => (wasmSealed = coffer.sealSync(wasmData, sealKey))));
  const openWasm = mbps(WASM_BULK, await best(() => coffer.openSync(wasmSealed, openKey)));

  // Argon2id with the defaults: open a passphrase file (the KDF runs once, the payload is 1 byte).
  const pwFile = coffer.sealSync(new Uint8Array(1), { passphrase: 'benchmark' });
  const argonMs = (await best(() => coffer.openSync(pwFile, { passphrase: 'benchmark' }))) * 1000;

  const stream = await openLargeStream(STREAM);
  const wasm = readFileSync(`${ROOT}pkg/wasm/coffer_wasm_bg.wasm`);

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const rows = [
    ['raw WebCrypto AES-256-GCM encrypt, 1 MiB chunks', `${fmt(rawEnc)} MB/s`, 'reference'],
    ['raw WebCrypto AES-256-GCM decrypt, 1 MiB chunks', `${fmt(rawDec)} MB/s`, 'reference'],
    ['`seal` (WebCrypto path)', `${fmt(sealWeb)} MB/s`, `${fmt((100 * sealWeb) / rawEnc)} % of raw encrypt (target ≥ 80 %)`],
    ['`open` (WebCrypto path)', `${fmt(openWeb)} MB/s`, `${fmt((100 * openWeb) / rawDec)} % of raw decrypt (target ≥ 80 %)`],
    ['`sealSync` (pure wasm)', `${fmt(sealWasm)} MB/s`, `target ≥ 95 MB/s; ${fmt(rawEnc / sealWasm)}× slower than raw WebCrypto`],
    ['`openSync` (pure wasm)', `${fmt(openWasm)} MB/s`, `target ≥ 95 MB/s; ${fmt(rawDec / openWasm)}× slower than raw WebCrypto`],
    ['Argon2id m=64 MiB t=3 p=1 (in wasm)', `${fmt(argonMs)} ms`, 'once per passphrase seal/open'],
    [
      `\`openStream\`, ${STREAM / 1024 / MiB} GiB sealed on the fly by ${stream.by}`,
      `${fmt(mbps(stream.bytes, stream.s))} MB/s`,
      `peak RSS +${fmt((stream.peak - stream.baseline) / MiB)} MiB above a ${fmt(stream.baseline / MiB)} MiB baseline (target ≤ 64 MiB)`,
    ],
    ['`coffer_wasm_bg.wasm`', `${wasm.length} bytes raw`, `${gzipSync(wasm, { level: 9 }).length} bytes gzip (budget 300 KB)`],
  ];
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`### JS package (Node ${process.version}) — ${new Date().toISOString().slice(0, 10)}\n`);
  console.log(`Machine: ${os.cpus().length} × ${cpu}, ${fmt(os.totalmem() / 2 ** 30)} GiB RAM, ${os.platform()} ${os.release()}; load average at the end: ${load}.`);
  console.log(`Bulk: ${BULK / MiB} MiB (WebCrypto), ${WASM_BULK / MiB} MiB (wasm), best of ${ROUNDS}; raw WebCrypto with ${WINDOW} operations in flight, as coffer.\n`);
  console.log('| measure | result | notes |\n|---|---|---|');
  for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`);
}

await main();
