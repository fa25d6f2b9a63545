// The public API of the `coffer` package (declared in ../coffer.d.ts).
// Every function checks its arguments here, calls the Rust core (compiled to
// wasm), and throws only CofferError.
import * as raw from '../wasm/coffer_wasm.js';
import { Collector, toBytes } from './bytes.js';
import { adopt, call, CofferError, ERROR_CODES, invalid, isCofferError } from './errors.js';
import { ensureReady, outputPrefault } from './state.js';
import { rawOpener, rawSealer, runAllSync, WasmOpener, WasmSealer } from './wasm.js';
import { hasWebCrypto, WebCryptoOpener, WebCryptoSealer } from './webcrypto.js';

export { CofferError, ERROR_CODES, isCofferError, hasWebCrypto };

/** Documents sent to wasm per call by `bundle` (bounds the size of one JSON text). */
const DOCUMENT_BATCH = 4096;

// ---------------------------------------------------------------- arguments

function isObject(value) {
  return value !== null && typeof value === 'object';
}

function optionalString(value, what) {
  if (value !== undefined && typeof value !== 'string') throw invalid(`${what} must be a string`);
  return value;
}

/** `{ passphrase }` or `{ recipients: [publicKey, …] }` → [passphrase, recipients]. */
function sealKey(key) {
  if (!isObject(key)) throw invalid('the key must be { passphrase } or { recipients: [publicKey, …] }');
  const passphrase = optionalString(key.passphrase, 'passphrase');
  const recipients = key.recipients ?? [];
  if (!Array.isArray(recipients) || !recipients.every((r) => typeof r === 'string')) {
    throw invalid('recipients must be an array of public keys (coffer1…)');
  }
  return [passphrase, recipients];
}

/** `{ passphrase }` or `{ identity }` → [passphrase, identity]. */
function openKey(key) {
  if (!isObject(key)) throw invalid('the key must be { passphrase } or { identity }');
  return [optionalString(key.passphrase, 'passphrase'), optionalString(key.identity, 'identity')];
}

/** Splits the JS-only `webCrypto` switch from the options Rust reads. */
function sealOptions(options) {
  if (options === undefined || options === null) return [true, '{}'];
  if (!isObject(options)) throw invalid('options must be an object');
  const { webCrypto = true, ...rest } = options;
  return [webCrypto !== false, json(rest, 'options')];
}

function openOptions(options) {
  if (options === undefined || options === null) return true;
  if (!isObject(options)) throw invalid('options must be an object');
  return options.webCrypto !== false;
}

/** JSON.stringify, with its TypeErrors (BigInt, cycles) as INVALID_INPUT. */
function json(value, what) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new CofferError('INVALID_INPUT', `${what} is not JSON-serializable: ${e.message}`, { cause: e });
  }
  if (text === undefined) throw invalid(`${what} is not a JSON value`);
  return text;
}

function parse(text) {
  return JSON.parse(text);
}

// ---------------------------------------------------------------- sealing

/** Runs a WebCrypto push/finish object over the whole of `input`, writing its output into one buffer. */
async function webCryptoAll(pusher, collector, input, size) {
  try {
    collector.expect(size);
    // The input is whole and the caller's until we return: its tail needs no staging copy.
    await pusher.push(input, true);
    await pusher.finish();
  } catch (e) {
    pusher.abort();
    throw adopt(e);
  }
  return collector.result();
}

/**
 * Whether `e` is the platform failing rather than an answer about the input
 * or the key (an exception that is not a CofferError): then the one-shot
 * calls redo the work in pure wasm. WebCrypto refusing the key or a segment
 * never gets here: the push/finish objects redo those segments in wasm
 * themselves (pkg/lib/webcrypto.js), streams included.
 */
function platformFailure(e) {
  return !isCofferError(e);
}

export async function seal(data, key, options) {
  ensureReady();
  const input = toBytes(data, 'data');
  const [passphrase, recipients] = sealKey(key);
  const [webCrypto, optionsJson] = sealOptions(options);
  if (webCrypto && hasWebCrypto()) {
    try {
      const output = new Collector(outputPrefault());
      const sealer = await WebCryptoSealer.create(output.add, passphrase, recipients, optionsJson);
      return await webCryptoAll(sealer, output, input, sealer.sealedLength(input.length));
    } catch (e) {
      if (!platformFailure(e)) throw e;
      // crypto.subtle exists but failed on its own: pure wasm gives the same bytes' format.
    }
  }
  return runAllSync(rawSealer(passphrase, recipients, optionsJson), input);
}

export async function open(sealed, key, options) {
  ensureReady();
  const input = toBytes(sealed, 'sealed');
  const [passphrase, identity] = openKey(key);
  if (openOptions(options) && hasWebCrypto()) {
    try {
      const output = new Collector(outputPrefault());
      const opener = new WebCryptoOpener(output.add, passphrase, identity);
      const body = await opener.header(input);
      return await webCryptoAll(opener, output, body, opener.plaintextLength(input.length));
    } catch (e) {
      if (!platformFailure(e)) throw e;
      // crypto.subtle exists but failed on its own: pure wasm gives the same answer.
    }
  }
  return runAllSync(rawOpener(passphrase, identity), input);
}

export function sealSync(data, key, options) {
  ensureReady();
  const input = toBytes(data, 'data');
  const [passphrase, recipients] = sealKey(key);
  const optionsJson = sealOptions(options)[1];
  return runAllSync(rawSealer(passphrase, recipients, optionsJson), input);
}

export function openSync(sealed, key) {
  ensureReady();
  const input = toBytes(sealed, 'sealed');
  const [passphrase, identity] = openKey(key);
  return runAllSync(rawOpener(passphrase, identity), input);
}

// ---------------------------------------------------------------- streams

/**
 * A TransformStream over a push/finish object made by `make(emit)`. Output
 * is enqueued as soon as the object emits it; the object (and its wasm
 * memory) is released on every path: finish, error, cancel. The object is
 * made when the stream starts, so key derivation and key errors happen there
 * (a bad key errors the stream).
 */
function transform(make) {
  let pusher;
  return new TransformStream({
    async start(controller) {
      pusher = await make((bytes) => {
        if (bytes.length > 0) controller.enqueue(bytes);
      });
    },
    async transform(chunk) {
      let bytes;
      try {
        bytes = toBytes(chunk, 'a stream chunk');
      } catch (e) {
        pusher.abort();
        throw e;
      }
      await pusher.push(bytes);
    },
    async flush() {
      await pusher.finish();
    },
    cancel() {
      pusher?.abort();
    },
  });
}

export function sealStream(key, options) {
  ensureReady();
  const [passphrase, recipients] = sealKey(key);
  const [webCrypto, optionsJson] = sealOptions(options);
  if (webCrypto && hasWebCrypto()) {
    return transform((emit) => WebCryptoSealer.create(emit, passphrase, recipients, optionsJson));
  }
  return transform((emit) => new WasmSealer(emit, passphrase, recipients, optionsJson));
}

export function openStream(key, options) {
  ensureReady();
  const [passphrase, identity] = openKey(key);
  if (openOptions(options) && hasWebCrypto()) {
    return transform((emit) => new WebCryptoOpener(emit, passphrase, identity));
  }
  return transform((emit) => new WasmOpener(emit, passphrase, identity));
}

// ---------------------------------------------------------------- inspection

/** `coffer inspect --json` output (snake_case, from Rust) → the JS shape (camelCase; metadata untouched). */
function inspected(info) {
  if (info.format === 'coffer-bundle') {
    const t = info.toc;
    return {
      format: info.format,
      version: info.version,
      bytes: info.bytes,
      toc: {
        digest: t.digest,
        rawBytes: t.raw_bytes,
        storedBytes: t.stored_bytes,
        collections: t.collections.map((c) => ({ name: c.name, documents: c.documents, rawBytes: c.raw_bytes, storedBytes: c.stored_bytes, offset: c.offset, hash: c.hash })),
        commits: t.commits,
        branches: t.branches,
        historyOffset: t.history_offset,
      },
    };
  }
  return {
    format: info.format,
    version: info.version,
    headerLen: info.header_len,
    segmentSize: info.segment_size,
    recipients: info.recipients.map((r) =>
      r.kind === 'passphrase'
        ? { kind: r.kind, kdf: { algorithm: 'argon2id', memoryKib: r.kdf.memory_kib, iterations: r.kdf.iterations, parallelism: r.kdf.parallelism } }
        : { kind: r.kind },
    ),
    metadata: info.metadata ?? null,
  };
}

export function inspect(bytesOrHeader) {
  ensureReady();
  const bytes = toBytes(bytesOrHeader, 'bytesOrHeader');
  return inspected(parse(call(() => raw.inspect(bytes))));
}

export async function verify(input, key, options) {
  ensureReady();
  const bytes = toBytes(input, 'input');
  const sealed = raw.fileKind(bytes) === 'sealed';
  const plaintext = sealed ? await open(bytes, key ?? {}, options) : bytes;
  const result = parse(call(() => raw.verifyPlaintext(plaintext, sealed)));
  if (sealed) result.header = inspect(bytes);
  return result;
}

export function generateIdentity() {
  ensureReady();
  return call(() => raw.generateIdentity());
}

export function publicKey(identity) {
  ensureReady();
  if (typeof identity !== 'string') throw invalid('identity must be a string');
  return call(() => raw.publicKey(identity));
}

// ---------------------------------------------------------------- bundles

export function bundle(snapshot) {
  ensureReady();
  if (!isObject(snapshot)) throw invalid('snapshot must be an object { schema, collections, history }');
  const collections = snapshot.collections ?? {};
  if (!isObject(collections) || Array.isArray(collections)) throw invalid('snapshot.collections must be an object: { name: { config, documents } }');
  const builder = new raw.BundleBuilder();
  try {
    for (const [name, collection] of Object.entries(collections)) {
      if (!isObject(collection)) throw invalid(`collection ${JSON.stringify(name)} must be an object { config, documents }`);
      call(() => builder.collection(name, json(collection.config ?? {}, `the config of ${name}`)));
      const documents = collection.documents ?? [];
      if (!Array.isArray(documents)) throw invalid(`the documents of ${JSON.stringify(name)} must be an array`);
      for (let at = 0; at < documents.length; at += DOCUMENT_BATCH) {
        const lines = [];
        for (let i = at; i < Math.min(at + DOCUMENT_BATCH, documents.length); i++) {
          lines.push(json(documents[i], `document ${i} of ${name}`));
        }
        call(() => builder.documents(lines.join('\n')));
      }
    }
    const schema = json(snapshot.schema ?? null, 'the schema');
    const history = json(snapshot.history ?? {}, 'the history');
    return call(() => builder.finish(schema, history));
  } finally {
    builder.free();
  }
}

export function unbundle(bytes) {
  ensureReady();
  const input = toBytes(bytes, 'bytes');
  return parse(call(() => raw.unbundle(input)));
}

export function readCollection(bytes, name) {
  ensureReady();
  const input = toBytes(bytes, 'bytes');
  if (typeof name !== 'string') throw invalid('name must be a string');
  return parse(call(() => raw.readCollection(input, name)));
}

export function exportCollection(bytes, name) {
  ensureReady();
  const input = toBytes(bytes, 'bytes');
  if (typeof name !== 'string') throw invalid('name must be a string');
  return call(() => raw.exportCollection(input, name));
}

export function digest(bytes) {
  ensureReady();
  const input = toBytes(bytes, 'bytes');
  return call(() => raw.digest(input));
}
