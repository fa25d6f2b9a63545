// Shared helpers of the node:test suites: paths, the native CLI, streams.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const VECTORS = join(ROOT, 'tests/vectors');

/** Cheap Argon2id and small segments, so tests run fast and cross segment boundaries. */
export const FAST = Object.freeze({ kdf: { memoryKib: 256, iterations: 1, parallelism: 1 }, segmentSize: 16384 });
export const SEGMENT = FAST.segmentSize;

/**
 * The native CLI: $COFFER_BIN, else the debug build in one of the usual
 * target dirs (scripts/test-js.sh builds it and sets COFFER_BIN).
 */
export function cliPath() {
  const candidates = [process.env.COFFER_BIN, join(ROOT, 'target/debug/coffer'), join(ROOT, 'target-wasm/debug/coffer')];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) throw new Error('native CLI not found: build it (cargo build --bin coffer) or set COFFER_BIN');
  return found;
}

/**
 * Runs the CLI with `--json`; returns { ok, json, stderr }. A failure's code
 * is json.error.code.
 */
export function cli(args, { passphrase, input } = {}) {
  const env = { ...process.env };
  delete env.COFFER_PASSPHRASE;
  if (passphrase !== undefined) env.COFFER_PASSPHRASE = passphrase;
  const run = spawnSync(cliPath(), [...args, '--json'], { env, input, maxBuffer: 1 << 30 });
  const stdout = run.stdout.toString().trim();
  let json;
  try {
    json = stdout ? JSON.parse(stdout.split('\n').pop()) : undefined;
  } catch {
    json = undefined;
  }
  return { ok: run.status === 0, json, stderr: run.stderr.toString(), status: run.status };
}

/** A temporary directory, removed by the returned cleanup. */
export function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-js-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic pseudo-random bytes (xorshift), fast enough for megabytes. */
export function pseudoRandom(n, seed = 1) {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A ReadableStream of `bytes` in chunks of `chunk` bytes. */
export function streamOf(bytes, chunk) {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

/** All bytes of a ReadableStream. */
export async function collect(stream) {
  const parts = [];
  for await (const part of stream) parts.push(part);
  const joined = Buffer.concat(parts);
  return new Uint8Array(joined.buffer, joined.byteOffset, joined.length);
}

/** Runs `fn` and returns the code of the CofferError it throws (or rejects with); "ok" when it succeeds. */
export async function codeOf(fn) {
  try {
    await fn();
    return 'ok';
  } catch (e) {
    if (e?.name !== 'CofferError' || typeof e.code !== 'string') throw e;
    return e.code;
  }
}

export function equalBytes(a, b) {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

