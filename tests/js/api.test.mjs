// The JS API of the package, in Node: both AES paths (WebCrypto and pure
// wasm) agree byte for byte in layout and error for error, streams equal
// one-shot calls, bundles round-trip, and every failure is a CofferError.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import init, * as coffer from 'coffer';
import { Collector, SegmentCutter } from '../../pkg/lib/bytes.js';
import { PREFAULT_MIN, prefaulter } from '../../pkg/lib/prefault-node.js';
import { outputPrefault } from '../../pkg/lib/state.js';
import * as raw from '../../pkg/wasm/coffer_wasm.js';
import { collect, codeOf, equalBytes, FAST, pseudoRandom, SEGMENT, streamOf } from './helpers.mjs';

const pw = { passphrase: 'correct horse' };

/** Every way to seal, and every way to open. */
const sealers = {
  webcrypto: (data, key, options) => coffer.seal(data, key, options),
  wasm: async (data, key, options) => coffer.sealSync(data, key, options),
  'webcrypto stream': (data, key, options) => collect(streamOf(data, 5000).pipeThrough(coffer.sealStream(key, options))),
  'wasm stream': (data, key, options) => collect(streamOf(data, 5000).pipeThrough(coffer.sealStream(key, { ...options, webCrypto: false }))),
};
const openers = {
  webcrypto: (sealed, key) => coffer.open(sealed, key),
  wasm: async (sealed, key) => coffer.openSync(sealed, key),
  'webcrypto stream': (sealed, key) => collect(streamOf(sealed, 7001).pipeThrough(coffer.openStream(key))),
  'wasm stream': (sealed, key) => collect(streamOf(sealed, 7001).pipeThrough(coffer.openStream(key, { webCrypto: false }))),
};

describe('setup', () => {
  test('Node needs no init; init() and initSync() are harmless', async () => {
    await init();
    coffer.initSync();
    assert.equal(coffer.hasWebCrypto(), true);
  });
});

describe('errors', () => {
  test('CofferError is a real Error subclass with a stable code', async () => {
    const e = await coffer.open(await coffer.seal(new Uint8Array(3), pw, FAST), { passphrase: 'wrong' }).catch((e) => e);
    assert.ok(e instanceof coffer.CofferError);
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'CofferError');
    assert.equal(e.code, 'WRONG_KEY');
    assert.match(e.message, /wrong passphrase/);
    assert.ok(coffer.isCofferError(e));
    assert.ok(coffer.isCofferError(e, 'WRONG_KEY'));
    assert.ok(!coffer.isCofferError(e, 'CORRUPT'));
    assert.ok(!coffer.isCofferError(new Error('x')));
    assert.match(String(e.stack), /CofferError/);
  });

  test('the JS codes are the core codes', () => {
    assert.deepEqual([...coffer.ERROR_CODES], ['NOT_A_BUNDLE', 'UNSUPPORTED_VERSION', 'WRONG_KEY', 'CORRUPT', 'TRUNCATED', 'LIMIT_EXCEEDED', 'INVALID_INPUT', 'IO']);
    const own = new coffer.CofferError('CORRUPT', 'made here');
    assert.equal(own.name, 'CofferError');
    assert.equal(own.code, 'CORRUPT');
  });

  test('bad arguments are INVALID_INPUT, never a TypeError or a string', async () => {
    const data = new Uint8Array(4);
    const cases = [
      () => coffer.seal('text', pw),
      () => coffer.seal(data, undefined),
      () => coffer.seal(data, {}),
      () => coffer.seal(data, { passphrase: 5 }),
      () => coffer.seal(data, { passphrase: '' }),
      () => coffer.seal(data, { recipients: 'coffer1…' }),
      () => coffer.seal(data, { recipients: ['coffer1nope'] }),
      () => coffer.seal(data, pw, { segmentSize: 3 }),
      () => coffer.seal(data, pw, { kdf: { memoryKib: 1 << 30, iterations: 1, parallelism: 1 } }),
      () => coffer.seal(data, pw, { metadata: { n: 1n } }),
      () => coffer.seal(data, pw, { colour: 'red' }),
      () => coffer.open(null, pw),
      () => coffer.open(data, { identity: 'AGE-SECRET-KEY-1' }),
      () => coffer.open(data, { passphrase: 'a', identity: 'b' }),
      () => coffer.sealSync(data, { passphrase: 'x', recipients: [coffer.generateIdentity().publicKey] }),
      () => coffer.openSync(data, 'passphrase'),
      () => coffer.bundle(null),
      () => coffer.bundle({ collections: [] }),
      () => coffer.bundle({ collections: { docs: { documents: {} } } }),
      () => coffer.bundle({ collections: { '../etc': {} } }),
      () => coffer.bundle({ collections: { docs: { documents: [undefined] } } }),
      () => coffer.bundle({ collections: { docs: { documents: [{ id: 1n }] } } }),
      () => coffer.bundle({ history: { commits: [{ id: 'a', parents: ['missing'] }] } }),
      () => coffer.readCollection(data, 5),
      () => coffer.publicKey(42),
      () => coffer.inspect('nope'),
    ];
    for (const [i, fn] of cases.entries()) {
      assert.equal(await codeOf(fn), 'INVALID_INPUT', `case ${i}: ${fn}`);
    }
  });

  test('garbage never traps the instance: every failure is a CofferError, and it keeps working', async () => {
    const sealed = await coffer.seal(pseudoRandom(40000), pw, FAST);
    const plainBundle = coffer.bundle({ collections: { docs: { documents: [{ id: 'a' }, { id: 'b' }] } } });
    for (let i = 0; i < 300; i++) {
      const base = i % 3 === 0 ? sealed : i % 3 === 1 ? plainBundle : pseudoRandom(64 + i, i + 1);
      const bytes = base.slice(0, Math.max(0, base.length - ((i * 7919) % (base.length + 1))));
      if (bytes.length > 0) bytes[(i * 104729) % bytes.length] ^= 1 << (i % 8);
      for (const fn of [
        () => coffer.inspect(bytes),
        () => coffer.digest(bytes),
        () => coffer.unbundle(bytes),
        () => coffer.readCollection(bytes, 'docs'),
        () => coffer.openSync(bytes, pw),
      ]) {
        const code = await codeOf(fn);
        assert.ok(coffer.ERROR_CODES.includes(code) || code === 'ok', code);
      }
    }
    assert.ok(equalBytes(coffer.openSync(sealed, pw), pseudoRandom(40000)));
  });
});

describe('sealing', () => {
  const sizes = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 17];

  test('every way to seal opens every way, for sizes around segment boundaries', async () => {
    for (const size of sizes) {
      const data = pseudoRandom(size, size + 1);
      const expectedLength = coffer.sealSync(data, pw, FAST).length;
      for (const [sealName, sealWith] of Object.entries(sealers)) {
        const sealed = await sealWith(data, pw, FAST);
        assert.equal(sealed.length, expectedLength, `${sealName}: same layout as the core for ${size} bytes`);
        for (const [openName, openWith] of Object.entries(openers)) {
          const opened = await openWith(sealed, pw);
          assert.ok(equalBytes(opened, data), `${sealName} → ${openName}, ${size} bytes`);
        }
      }
    }
  });

  test('when crypto.subtle exists but fails on its own, seal, open and the streams fall back to pure wasm', async (t) => {
    const data = pseudoRandom(5 * SEGMENT + 5, 21);
    const sealed = coffer.sealSync(data, pw, FAST);
    const damaged = sealed.slice();
    damaged[damaged.length - 3 * SEGMENT] ^= 1;
    const subtle = globalThis.crypto.subtle;
    let refusals = 0;
    const refuse = async () => {
      refusals += 1;
      throw new DOMException('AES-GCM is not available here', 'NotSupportedError');
    };
    const sealStream = (bytes) => collect(streamOf(bytes, 5000).pipeThrough(coffer.sealStream(pw, FAST)));
    const openStream = (bytes) => collect(streamOf(bytes, 7001).pipeThrough(coffer.openStream(pw)));
    for (const method of ['importKey', 'decrypt', 'encrypt']) {
      subtle[method] = refuse;
      t.after(() => delete subtle[method]);
      const before = refusals;
      assert.ok(equalBytes(await coffer.open(sealed, pw), data), `open with ${method} failing`);
      assert.ok(equalBytes(coffer.openSync(await coffer.seal(data, pw, FAST), pw), data), `seal with ${method} failing`);
      assert.ok(equalBytes(await openStream(sealed), data), `openStream with ${method} failing`);
      assert.ok(equalBytes(coffer.openSync(await sealStream(data), pw), data), `sealStream with ${method} failing`);
      assert.ok(refusals > before, `WebCrypto's ${method} was tried first`);
      // Answers about the input still come through unchanged.
      assert.equal(await codeOf(() => coffer.open(sealed, { passphrase: 'not it' })), 'WRONG_KEY');
      assert.equal(await codeOf(() => openStream(damaged)), 'CORRUPT');
      assert.equal(await codeOf(() => openStream(sealed.subarray(0, sealed.length - 21))), 'TRUNCATED');
      delete subtle[method];
    }
    // A WebCrypto that throws instead of rejecting.
    for (const method of ['decrypt', 'encrypt']) {
      subtle[method] = () => {
        refusals += 1;
        throw new TypeError('not implemented');
      };
      const before = refusals;
      assert.ok(equalBytes(await openStream(sealed), data), `openStream with ${method} throwing`);
      assert.ok(equalBytes(coffer.openSync(await sealStream(data), pw), data), `sealStream with ${method} throwing`);
      assert.ok(refusals > before);
      delete subtle[method];
    }
  });

  test('a stream whose WebCrypto fails mid-way goes on in wasm: every byte once, in order', async (t) => {
    const data = pseudoRandom(9 * SEGMENT + 77, 22);
    const sealed = coffer.sealSync(data, pw, FAST);
    const subtle = globalThis.crypto.subtle;
    for (const method of ['decrypt', 'encrypt']) {
      for (const failAt of [0, 1, 4]) {
        // WebCrypto works for `failAt` segments, then fails on every call.
        const original = subtle[method];
        let calls = 0;
        subtle[method] = function (...args) {
          calls += 1;
          return calls > failAt ? Promise.reject(new DOMException('gone', 'OperationError')) : original.apply(this, args);
        };
        t.after(() => delete subtle[method]);
        const chunk = failAt === 4 ? SEGMENT : 3000;
        if (method === 'decrypt') {
          const opened = await collect(streamOf(sealed, chunk).pipeThrough(coffer.openStream(pw)));
          assert.ok(equalBytes(opened, data), `openStream, decrypt failing from call ${failAt + 1}`);
          const damaged = sealed.slice();
          damaged[damaged.length - 2 * SEGMENT] ^= 1;
          calls = 0;
          assert.equal(await codeOf(() => collect(streamOf(damaged, chunk).pipeThrough(coffer.openStream(pw)))), 'CORRUPT');
        } else {
          const resealed = await collect(streamOf(data, chunk).pipeThrough(coffer.sealStream(pw, FAST)));
          assert.equal(resealed.length, sealed.length);
          assert.ok(equalBytes(coffer.openSync(resealed, pw), data), `sealStream, encrypt failing from call ${failAt + 1}`);
        }
        assert.ok(calls > failAt, `${method} was called`);
        delete subtle[method];
      }
    }
  });

  test('a chunk its writer detached before WebCrypto failed on it: the stream errors (IO), nothing wrong comes out', async (t) => {
    const subtle = globalThis.crypto.subtle;
    for (const method of ['encrypt', 'decrypt']) {
      // WebCrypto has copied the chunk, and fails a little later.
      const original = subtle[method];
      subtle[method] = function (...args) {
        const done = original.apply(this, args);
        return new Promise((resolve, reject) => setTimeout(() => done.then(() => reject(new DOMException('gone', 'OperationError')), reject), 20));
      };
      t.after(() => delete subtle[method]);
      const data = pseudoRandom(3 * SEGMENT, 23);
      const [stream, chunk] = method === 'encrypt' ? [coffer.sealStream(pw, FAST), data] : [coffer.openStream(pw), coffer.sealSync(data, pw, FAST)];
      const out = collect(stream.readable);
      const writer = stream.writable.getWriter();
      await writer.write(chunk);
      // The chunk's buffer is transferred away: every view of it is now empty.
      structuredClone(chunk.buffer, { transfer: [chunk.buffer] });
      writer.close().catch(() => {});
      assert.equal(await codeOf(() => out), 'IO', method);
      delete subtle[method];
    }
  });

  test("Node's copy of a ciphertext goes into a reused buffer, free again as soon as decrypt returns", async (t) => {
    // pkg/lib/webcrypto.js (SliceSource) lets Node's slice of each ciphertext
    // land in the opener's scratch buffer, and reuses that buffer for the next
    // segment while the first is still being decrypted: sound only if Node has
    // copied it again by the time decrypt returns. Here whatever the slice
    // made is overwritten right after the call; every decrypt must still
    // succeed (a failure would be hidden by the fallback to wasm, so count).
    const subtle = globalThis.crypto.subtle;
    const original = subtle.decrypt;
    let calls = 0;
    let refused = 0;
    let reused = 0;
    const seen = new WeakSet();
    subtle.decrypt = function (algorithm, key, data) {
      calls += 1;
      const made = [];
      const Species = data.constructor;
      // An own `constructor` on the input: Node's slice makes its result
      // through this (as through SliceSource itself), and we see it.
      Object.defineProperty(data, 'constructor', {
        value: {
          [Symbol.species]: function Spy(n) {
            const made1 = Reflect.construct(Species, [n]);
            made.push(made1);
            return made1;
          },
        },
      });
      const done = original.call(this, algorithm, key, data);
      for (const bytes of made) {
        if (seen.has(bytes.buffer)) reused += 1;
        seen.add(bytes.buffer);
        bytes.fill(0xa5);
      }
      return done.catch((e) => {
        refused += 1;
        throw e;
      });
    };
    t.after(() => delete subtle.decrypt);
    const segment = 1 << 16;
    const data = pseudoRandom(7 * segment + 1000, 31);
    const sealed = coffer.sealSync(data, pw, { ...FAST, segmentSize: segment });
    assert.ok(equalBytes(await collect(streamOf(sealed, 50000).pipeThrough(coffer.openStream(pw))), data), 'openStream');
    assert.ok(equalBytes(await coffer.open(sealed, pw), data), 'open');
    delete subtle.decrypt;
    assert.equal(refused, 0, 'no segment failed in WebCrypto');
    assert.equal(calls, 16, 'WebCrypto decrypted every segment');
    // 7 full segments per call: the first makes the scratch buffer, the next 6 reuse it.
    assert.equal(reused, 12, "Node's slices of the full segments went into one reused buffer per call");
  });

  test('X25519 recipients; an identity file with several keys', async () => {
    const alice = coffer.generateIdentity();
    const bob = coffer.generateIdentity();
    assert.match(alice.identity, /^COFFER-SECRET-KEY-1/);
    assert.match(alice.publicKey, /^coffer1/);
    assert.equal(coffer.publicKey(alice.identity), alice.publicKey);
    const data = pseudoRandom(50000, 3);
    const key = { recipients: [alice.publicKey, bob.publicKey] };
    for (const sealWith of Object.values(sealers)) {
      const sealed = await sealWith(data, key, { segmentSize: SEGMENT });
      const info = coffer.inspect(sealed);
      assert.deepEqual(info.recipients, [{ kind: 'x25519' }, { kind: 'x25519' }]);
      for (const openWith of Object.values(openers)) {
        assert.ok(equalBytes(await openWith(sealed, { identity: bob.identity }), data));
      }
      const file = `# my keys\n${coffer.generateIdentity().identity}\n\n${alice.identity}\n`;
      assert.ok(equalBytes(await coffer.open(sealed, { identity: file }), data));
      assert.equal(await codeOf(() => coffer.open(sealed, { identity: coffer.generateIdentity().identity })), 'WRONG_KEY');
      assert.equal(await codeOf(() => coffer.open(sealed, pw)), 'WRONG_KEY');
    }
  });

  test('WebCrypto and wasm report the same code for every kind of damage', async () => {
    const data = pseudoRandom(3 * SEGMENT + 100, 9);
    const sealed = await coffer.seal(data, pw, FAST);
    const { headerLen } = coffer.inspect(sealed);
    const unit = SEGMENT + 16;
    const seg = (i) => sealed.subarray(headerLen + i * unit, headerLen + (i + 1) * unit);
    const join = (...parts) => Buffer.concat(parts.map((p) => Buffer.from(p)));
    const flip = (at) => {
      const b = sealed.slice();
      b[at] ^= 0x10;
      return b;
    };
    const damaged = {
      'cut inside the header': [sealed.subarray(0, headerLen - 1), 'TRUNCATED'],
      'cut inside the prefix': [sealed.subarray(0, 5), 'TRUNCATED'],
      empty: [new Uint8Array(0), 'TRUNCATED'],
      'cut after the header': [sealed.subarray(0, headerLen), 'TRUNCATED'],
      'cut before a tag ends': [sealed.subarray(0, headerLen + 10), 'TRUNCATED'],
      'cut at a segment boundary': [sealed.subarray(0, headerLen + 2 * unit), 'TRUNCATED'],
      'cut inside the last segment': [sealed.subarray(0, sealed.length - 1), 'CORRUPT'],
      'data appended': [join(sealed, [1, 2, 3]), 'CORRUPT'],
      'a whole segment appended': [join(sealed, seg(0)), 'CORRUPT'],
      'segments swapped': [join(sealed.subarray(0, headerLen), seg(1), seg(0), sealed.subarray(headerLen + 2 * unit)), 'CORRUPT'],
      'segment dropped': [join(sealed.subarray(0, headerLen), seg(0), sealed.subarray(headerLen + 2 * unit)), 'CORRUPT'],
      'final segment dropped, a full one is last': [sealed.subarray(0, headerLen + 3 * unit), 'TRUNCATED'],
      'ciphertext bit': [flip(headerLen + 5), 'CORRUPT'],
      'tag bit': [flip(headerLen + unit - 1), 'CORRUPT'],
      'last tag bit': [flip(sealed.length - 1), 'CORRUPT'],
      'header MAC bit': [flip(headerLen - 1), 'CORRUPT'],
      'commitment bit': [flip(headerLen - 40), 'CORRUPT'],
      'magic': [flip(0), 'NOT_A_BUNDLE'],
      'version': [join([...sealed.subarray(0, 8)], [9], sealed.subarray(9)), 'UNSUPPORTED_VERSION'],
    };
    for (const [what, [bytes, expected]] of Object.entries(damaged)) {
      for (const [name, openWith] of Object.entries(openers)) {
        assert.equal(await codeOf(() => openWith(new Uint8Array(bytes), pw)), expected, `${what} (${name})`);
      }
    }
  });

  test('an empty final segment is valid alone, refused after a full one', async () => {
    const empty = await coffer.seal(new Uint8Array(0), pw, FAST);
    assert.equal(empty.length, coffer.inspect(empty).headerLen + 16);
    for (const openWith of Object.values(openers)) assert.equal((await openWith(empty, pw)).length, 0);
    // Forge "one full segment, then an empty final one" with the raw framing object (a key holder could).
    const framing = new raw.WebSealer('correct horse', [], JSON.stringify(FAST));
    const key = await crypto.subtle.importKey('raw', framing.takeKey(), 'AES-GCM', false, ['encrypt']);
    const encrypt = async (iv, bytes) => new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, bytes));
    const full = await encrypt(framing.nextNonce(false), pseudoRandom(SEGMENT));
    const last = await encrypt(framing.nextNonce(true), new Uint8Array(0));
    const forged = new Uint8Array(Buffer.concat([framing.header(), full, last]));
    framing.free();
    for (const [name, openWith] of Object.entries(openers)) assert.equal(await codeOf(() => openWith(forged, pw)), 'CORRUPT', name);
  });

  test('metadata and KDF parameters show in inspect, from the header alone', async () => {
    const metadata = { backup: 'nightly', host: 'db-1', collections: ['a', 'b'] };
    const sealed = await coffer.seal(pseudoRandom(100), pw, { ...FAST, metadata });
    const info = coffer.inspect(sealed.subarray(0, coffer.inspect(sealed).headerLen));
    assert.equal(info.format, 'coffer-sealed');
    assert.equal(info.version, 1);
    assert.equal(info.segmentSize, SEGMENT);
    assert.deepEqual(info.metadata, metadata);
    assert.deepEqual(info.recipients, [{ kind: 'passphrase', kdf: { algorithm: 'argon2id', memoryKib: 256, iterations: 1, parallelism: 1 } }]);
    const defaults = coffer.inspect(await coffer.seal(new Uint8Array(1), pw));
    assert.deepEqual(defaults.recipients[0].kdf, { algorithm: 'argon2id', memoryKib: 65536, iterations: 3, parallelism: 1 });
    assert.equal(defaults.segmentSize, 1 << 20);
    assert.equal(defaults.metadata, null);
    assert.equal(await codeOf(() => coffer.inspect(sealed.subarray(0, 30))), 'TRUNCATED');
  });

  test('streams fail with a CofferError and release their wasm objects', async () => {
    const sealed = await coffer.seal(pseudoRandom(5 * SEGMENT), pw, FAST);
    for (const webCrypto of [true, false]) {
      const wrong = streamOf(sealed, 4096).pipeThrough(coffer.openStream({ passphrase: 'nope' }, { webCrypto }));
      assert.equal(await codeOf(() => collect(wrong)), 'WRONG_KEY');
      const cut = streamOf(sealed.subarray(0, sealed.length - 20), 4096).pipeThrough(coffer.openStream(pw, { webCrypto }));
      assert.equal(await codeOf(() => collect(cut)), 'CORRUPT');
      const notBytes = new ReadableStream({ start: (c) => (c.enqueue('text'), c.close()) }).pipeThrough(coffer.sealStream(pw, { ...FAST, webCrypto }));
      assert.equal(await codeOf(() => collect(notBytes)), 'INVALID_INPUT');
    }
  });

  test('plaintext is released segment by segment, before the stream ends', async () => {
    const data = pseudoRandom(8 * SEGMENT, 5);
    const sealed = await coffer.seal(data, pw, FAST);
    for (const webCrypto of [true, false]) {
      const { readable, writable } = coffer.openStream(pw, { webCrypto });
      const writer = writable.getWriter();
      const reader = readable.getReader();
      // Write everything but the last byte: all full segments but the held-back one can come out.
      const pending = writer.write(sealed.subarray(0, sealed.length - 1));
      let got = 0;
      while (got < 6 * SEGMENT) got += (await reader.read()).value.length;
      await pending;
      writer.write(sealed.subarray(sealed.length - 1));
      writer.close();
      for (let r = await reader.read(); !r.done; r = await reader.read()) got += r.value.length;
      assert.equal(got, data.length);
    }
  });
});

describe('large one-shot outputs (Node: faulted in on the threadpool)', () => {
  test('the Node entry registers the prefault; outputs from PREFAULT_MIN on use it', () => {
    assert.equal(typeof outputPrefault(), 'function');
    assert.equal(outputPrefault()(new Uint8Array(1024), 0), null, 'small outputs are left alone');
    assert.ok(PREFAULT_MIN <= 32 << 20);
  });

  test('seal and open above PREFAULT_MIN give what the pure-wasm path gives, and fail as it does', async () => {
    const alice = coffer.generateIdentity();
    const key = { recipients: [alice.publicKey] };
    const me = { identity: alice.identity };
    const data = pseudoRandom(PREFAULT_MIN + 3 * (1 << 20) + 123, 41);
    const sealed = await coffer.seal(data, key);
    assert.equal(sealed.length, coffer.sealSync(data, key).length, 'same layout');
    assert.ok(equalBytes(coffer.openSync(sealed, me), data), 'WebCrypto seal → wasm open');
    const sealedInWasm = coffer.sealSync(data, key);
    const opened = await coffer.open(sealedInWasm, me);
    assert.ok(equalBytes(opened, coffer.openSync(sealedInWasm, me)), 'WebCrypto open = wasm open');
    assert.ok(equalBytes(opened, data));
    assert.equal(opened.byteOffset, 0);
    assert.equal(opened.buffer.byteLength, data.length, 'the output is exactly the plaintext');

    const { headerLen, segmentSize } = coffer.inspect(sealed);
    const unit = segmentSize + 16;
    const flipped = sealed.slice();
    flipped[headerLen + 20 * unit + 7] ^= 1;
    const cases = [
      ['wrong identity', sealed, { identity: coffer.generateIdentity().identity }, 'WRONG_KEY'],
      ['cut at a segment boundary', sealed.subarray(0, headerLen + 20 * unit), me, 'TRUNCATED'],
      ['cut inside the last segment', sealed.subarray(0, sealed.length - 1), me, 'CORRUPT'],
      ['a bit flipped in segment 20', flipped, me, 'CORRUPT'],
    ];
    for (const [what, bytes, k, expected] of cases) {
      assert.equal(await codeOf(() => coffer.open(bytes, k)), expected, `${what} (WebCrypto)`);
      assert.equal(await codeOf(async () => coffer.openSync(bytes, k)), expected, `${what} (wasm)`);
    }
  });

  test("one-shot calls keep their input's tail as a view; a unit spanning two chunks is still staged", () => {
    const input = pseudoRandom(2500, 51);
    const oneShot = new SegmentCutter(1000, 2);
    const units = [...oneShot.cut(input, 2, true)];
    assert.deepEqual(units.map((u) => u.buffer === input.buffer), [true, true]);
    assert.equal(oneShot.buffered, 500);
    const tail = oneShot.rest();
    assert.equal(tail.buffer, input.buffer, 'the tail of a one-shot input is a view of it');
    assert.ok(equalBytes(tail, input.subarray(2000)));
    assert.equal(oneShot.buffered, 0);

    const stream = new SegmentCutter(1000, 2);
    [...stream.cut(input.subarray(0, 1500), 1)];
    const last = [...stream.cut(input.subarray(1500), 1, true)];
    assert.notEqual(last[0].buffer, input.buffer, 'a unit spanning two chunks is staged');
    assert.ok(equalBytes(last[0], input.subarray(1000, 2000)));
    const rest = stream.rest();
    assert.ok(equalBytes(rest, input.subarray(2000)));
  });

  test('the prefault never writes over bytes of the output, whichever side runs ahead', async () => {
    // A stand-in for the /dev/zero reads: zeros into the range given, after
    // a delay from none (done at once) to a few ms, so that the Collector's
    // copies sometimes reach past every read started so far, and wait.
    let waited = 0;
    let overtook = 0;
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      let x = seed;
      const next = (n) => {
        x = (x * 1103515245 + 12345) >>> 0;
        return (x >>> 16) % n;
      };
      let inFlight = 0;
      let reads = 0;
      let furthest = 0;
      const read = (buffer, offset, length, done) => {
        inFlight += 1;
        furthest = Math.max(furthest, offset + length);
        reads += 1;
        const finish = () => {
          buffer.fill(0, offset, offset + length);
          inFlight -= 1;
          done();
        };
        const delay = next(4);
        if (delay === 0 && seed % 2) finish();
        else setTimeout(finish, delay);
      };
      const collector = new Collector(prefaulter({ read, min: 1, first: 4096, largest: 1 << 16 }));
      const expected = pseudoRandom(3 << 20, seed);
      let at = 0;
      const header = 100 + next(1000);
      collector.add(expected.subarray(0, header));
      at = header;
      collector.expect(expected.length);
      while (at < expected.length) {
        const n = Math.min(expected.length - at, 1 + next(200_000));
        // As the Pipeline does: the next chunk only once this one is in.
        if (at + n > furthest) overtook += 1;
        const wait = collector.add(expected.subarray(at, at + n));
        if (wait) waited += 1;
        await wait;
        at += n;
        if (next(3) === 0) await new Promise((resolve) => setTimeout(resolve, next(3)));
      }
      const result = await collector.result();
      assert.equal(inFlight, 0, `no read in flight once the result is out (seed ${seed})`);
      assert.ok(reads > 0, `seed ${seed}: the prefault ran`);
      assert.ok(equalBytes(result, expected), `seed ${seed}: output intact`);
    }
    assert.ok(waited > 0 && overtook > 0, `copies waited for reads (${waited}) and reached past them (${overtook})`);
  });
});

describe('verify', () => {
  test('sealed bundle, sealed payload, plain bundle, and a damaged one', async () => {
    const snapshot = { schema: { v: 1 }, collections: { docs: { documents: [{ id: 'a', n: 1 }, { id: 'b', n: 2 }] } }, history: { commits: [{ id: 'c1' }], branches: { main: 'c1' } } };
    const bytes = coffer.bundle(snapshot);
    const sealed = await coffer.seal(bytes, pw, FAST);
    const result = await coffer.verify(sealed, pw);
    assert.equal(result.ok, true);
    assert.equal(result.sealed, true);
    assert.equal(result.digest, coffer.digest(bytes));
    assert.equal(result.documents, 2);
    assert.equal(result.commits, 1);
    assert.equal(result.header.format, 'coffer-sealed');
    assert.deepEqual(await coffer.verify(bytes), { ok: true, sealed: false, bytes: bytes.length, digest: coffer.digest(bytes), documents: 2, commits: 1 });
    const payload = await coffer.verify(await coffer.seal(new Uint8Array(10), pw, FAST), pw);
    assert.equal(payload.bytes, 10);
    assert.equal(payload.digest, undefined);
    assert.equal(await codeOf(() => coffer.verify(new Uint8Array([1, 2, 3]))), 'NOT_A_BUNDLE');
    const bad = bytes.slice();
    bad[30] ^= 1;
    const sealedBad = await coffer.seal(bad, pw, FAST);
    assert.equal(await codeOf(() => coffer.verify(sealedBad, pw)), 'CORRUPT');
    assert.equal(await codeOf(() => coffer.verify(sealed, { passphrase: 'no' })), 'WRONG_KEY');
  });
});

describe('bundles', () => {
  const snapshot = {
    schema: { '@type': 'Schema', fields: ['title', 'vector'] },
    collections: {
      notes: { documents: ['plain string', 42, { text: 'no id' }] },
      docs: {
        config: { dimension: 3, metric: 'cosine' },
        documents: [
          { id: 'b', title: 'Bee', vector: [0.1, 0.2, 0.3] },
          { '@id': 'a', title: 'Ay', nested: { z: 1, a: [true, null] } },
          { id: 7, title: 'numeric id' },
        ],
      },
    },
    history: {
      commits: [
        { id: 'c2', parents: ['c1'], author: 'me', message: 'second', timestamp: 1700000000001, changes: [{ op: 'delete', collection: 'docs', id: 'x' }] },
        { id: 'c1', author: 'me', message: 'first', timestamp: 1700000000000, changes: [{ op: 'put', collection: 'docs', id: 'b', document: { id: 'b' } }] },
      ],
      branches: { main: 'c2' },
    },
  };

  test('bundle is deterministic: order, key order and number forms do not matter', () => {
    const a = coffer.bundle(snapshot);
    const shuffled = {
      history: { branches: { main: 'c2' }, commits: [...snapshot.history.commits].reverse() },
      collections: {
        docs: { documents: [...snapshot.collections.docs.documents].reverse(), config: { metric: 'cosine', dimension: 3.0 } },
        notes: { documents: [{ text: 'no id' }, 42, 'plain string', 42] },
      },
      schema: { fields: ['title', 'vector'], '@type': 'Schema' },
    };
    assert.ok(equalBytes(a, coffer.bundle(shuffled)));
  });

  test('unbundle, readCollection, exportCollection, digest, inspect; bundle(unbundle(b)) = b', () => {
    const bytes = coffer.bundle(snapshot);
    const back = coffer.unbundle(bytes);
    assert.deepEqual(back.schema, snapshot.schema);
    assert.deepEqual(Object.keys(back.collections).sort(), ['docs', 'notes']);
    assert.deepEqual(back.collections.docs.config, { dimension: 3, metric: 'cosine' });
    assert.deepEqual(back.collections.docs.documents.map((d) => d.title), ['numeric id', 'Ay', 'Bee']);
    assert.equal(back.collections.notes.documents.length, 3);
    assert.deepEqual(back.history.commits.map((c) => c.id), ['c1', 'c2']);
    assert.deepEqual(back.history.branches, { main: 'c2' });
    assert.ok(equalBytes(coffer.bundle(back), bytes));

    const docs = coffer.readCollection(bytes, 'docs');
    assert.equal(docs.name, 'docs');
    assert.deepEqual(docs.documents, back.collections.docs.documents);
    const ndjson = new TextDecoder().decode(coffer.exportCollection(bytes, 'docs'));
    assert.deepEqual(ndjson.trimEnd().split('\n').map((l) => JSON.parse(l)), docs.documents);
    assert.equal(syncCode(() => coffer.readCollection(bytes, 'missing')), 'INVALID_INPUT');

    const info = coffer.inspect(bytes);
    assert.equal(info.format, 'coffer-bundle');
    assert.equal(info.toc.digest, coffer.digest(bytes));
    assert.deepEqual(info.toc.collections.map((c) => [c.name, c.documents]), [['docs', 3], ['notes', 3]]);
    assert.equal(info.toc.commits, 2);
    assert.match(coffer.digest(bytes), /^[0-9a-f]{64}$/);
  });

  test('bundle format 2: a put of a document the bundle holds is stored once; unbundle gives it whole', () => {
    const doc = { id: 'b', title: 'Bee', vector: [0.1, 0.2, 0.3] };
    const put = (id, document) => ({ op: 'put', collection: 'docs', id, document });
    const snap = {
      collections: { docs: { documents: [doc, { id: 'c', v: 2 }] } },
      history: {
        commits: [
          { id: 'c1', changes: [put('b', doc), put('c', { id: 'c', v: 1 })] },
          { id: 'c2', parents: ['c1'], changes: [put('c', { id: 'c', v: 2.0 }), put('b', doc)] },
        ],
        branches: { main: 'c2' },
      },
    };
    const bytes = coffer.bundle(snap);
    const back = coffer.unbundle(bytes);
    assert.deepEqual(back.history.commits.map((c) => c.changes), [
      [put('b', doc), put('c', { id: 'c', v: 1 })],
      [put('c', { id: 'c', v: 2 }), put('b', doc)],
    ]);
    assert.ok(equalBytes(coffer.bundle(back), bytes));
    // Puts already without their document give the same bytes.
    const byRef = structuredClone(snap);
    delete byRef.history.commits[0].changes[0].document;
    delete byRef.history.commits[1].changes[0].document;
    assert.ok(equalBytes(coffer.bundle(byRef), bytes));
    // ... but only for a document the bundle holds.
    byRef.history.commits[0].changes.push({ op: 'put', collection: 'docs', id: 'zz' });
    assert.equal(syncCode(() => coffer.bundle(byRef)), 'INVALID_INPUT');
  });

  test('conflicting ids and bad history are refused', () => {
    assert.equal(syncCode(() => coffer.bundle({ collections: { d: { documents: [{ id: 'x', v: 1 }, { id: 'x', v: 2 }] } } })), 'INVALID_INPUT');
    assert.equal(syncCode(() => coffer.bundle({ history: { commits: [{ id: 'a', parents: ['b'] }, { id: 'b', parents: ['a'] }] } })), 'INVALID_INPUT');
    assert.equal(syncCode(() => coffer.bundle({ history: { branches: { main: 'nowhere' } } })), 'INVALID_INPUT');
    assert.equal(syncCode(() => coffer.digest(new Uint8Array(10))), 'NOT_A_BUNDLE');
    assert.equal(syncCode(() => coffer.bundle({ collections: { d: { documents: [JSON.parse('['.repeat(130) + ']'.repeat(130))] } } })), 'LIMIT_EXCEEDED');
  });

  test('an empty snapshot bundles', () => {
    const bytes = coffer.bundle({});
    assert.deepEqual(coffer.unbundle(bytes), { schema: null, collections: {}, history: { commits: [], branches: {} } });
  });
});

/** Synchronous variant of codeOf. */
function syncCode(fn) {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (!(e instanceof coffer.CofferError)) throw e;
    return e.code;
  }
}
