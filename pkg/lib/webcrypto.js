// The WebCrypto fast path. Rust (WebSealer / WebOpener in src/wasm/webcrypto.rs)
// derives and unwraps keys, writes and checks the header, lays out the
// segments, gives each segment its nonce and explains every failure; this
// file only runs AES-256-GCM on the segments with crypto.subtle, a few at a
// time, and keeps them in order.
//
// When WebCrypto fails on its own (importKey refused, or a segment refused
// that is not at fault), that segment and every later one is done in wasm
// instead (sealSegment / openSegment: the same key, the same nonce, so the
// same bytes). Each segment is emitted exactly once, from one or the other,
// so a stream switches mid-way without losing or repeating anything; what
// is wrong with the input or the key still fails as before.
import { WebOpener, WebSealer } from '../wasm/coffer_wasm.js';
import { SegmentCutter } from './bytes.js';
import { adopt, call, CofferError, invalid } from './errors.js';

/**
 * Segments in flight at once: a new one starts whenever no more than this
 * many are pending, so two to three run at a time. Measured on the 2-core
 * machine of BENCHMARKS.md (scripts/bench-js.mjs): the one-shot calls are
 * bound by the main thread (copying results into the fresh output, whose
 * pages fault on first touch), whatever the window; the streams gained
 * nothing measurable from 3 or 4 (at load ~6), while opening a 4 GiB
 * stream peaked at +50 / +59 MiB resident instead of +42 (each segment in
 * flight holds WebCrypto's copy of its input and its result). Again with
 * the scratch buffer of SliceSource (load ~1.8): 3 kept openStream at the
 * same share of raw decrypt (raw gains as much from the wider window), and
 * the 4 GiB stream peaked at +52 MiB against +45–49.
 */
export const IN_FLIGHT = 2;
/** Staging buffers kept for reuse. */
const POOL = IN_FLIGHT + 2;
/** Smallest segment (without its tag) that Node copies into a reused buffer (see SliceSource). */
const SCRATCH_MIN = 4096;

function finished() {
  return invalid('this object has already finished or failed');
}

export function hasWebCrypto() {
  return typeof globalThis.crypto?.subtle?.decrypt === 'function';
}

/** The payload key as a CryptoKey, or null when WebCrypto refuses it (then the segments run in wasm). */
async function importKey(raw, usage) {
  try {
    return await globalThis.crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, [usage]);
  } catch {
    return null;
  } finally {
    raw.fill(0);
  }
}

/**
 * Where the next `new SliceSource(n)` puts its `n` bytes (see SliceSource);
 * set only while one `crypto.subtle.decrypt` call runs.
 */
let sliceTarget = null;

/**
 * The view of a ciphertext segment given to `crypto.subtle.decrypt`, so
 * that Node's own copy of it lands in a buffer we reuse.
 *
 * Node's WebCrypto (lib/internal/crypto/aes.js) cuts the tag off with
 * %TypedArray%.prototype.slice, which copies the ciphertext into a fresh
 * buffer for every segment (1 MiB: allocated, zeroed, its pages faulted in,
 * later swept by the GC, all on the main thread), then copies that once
 * more for the job it runs off the main thread, before `decrypt` returns.
 * `slice` makes its result with the input's own constructor (its species),
 * so for an input of this class the ciphertext is copied into
 * `sliceTarget`, a scratch buffer of the opener, instead: the same copy, no
 * allocation. Node has taken its own
 * copy by the time `decrypt` returns, so the scratch buffer is free again at
 * once (tests/js checks this: a scratch buffer overwritten right after the
 * call still decrypts). Were an implementation to read it later, the segment
 * would fail its tag and be redone in wasm from the untouched ciphertext:
 * slower, never wrong. Only a length equal to the target's, once, takes
 * it: the 16-byte tag (sliced first) and anything else get a plain new
 * Uint8Array. Engines that copy natively (browsers) only see a view.
 * Subclassing leaves V8's typed-array species protector intact.
 */
class SliceSource extends Uint8Array {
  constructor(bufferOrLength, byteOffset, length) {
    if (typeof bufferOrLength !== 'number') {
      super(bufferOrLength, byteOffset, length);
      return;
    }
    const target = sliceTarget;
    if (target !== null && target.length === bufferOrLength) {
      sliceTarget = null;
      return target;
    }
    return new Uint8Array(bufferOrLength);
  }
}

/**
 * One segment through WebCrypto's AES-GCM `op` ('encrypt' / 'decrypt'), as
 * a promise of its bytes. `inWasm()` gives the same bytes (or throws what
 * is wrong with the input): it runs at once when WebCrypto has been given up
 * on (`key` null), and when WebCrypto refuses the segment, after which
 * `refused()` is called if wasm did not find the input at fault. For
 * decrypt, `scratch` (or null) is where Node may copy the ciphertext
 * without its tag (see SliceSource).
 */
function segment(op, key, nonce, input, inWasm, refused, scratch = null) {
  if (key === null) {
    try {
      return Promise.resolve(inWasm());
    } catch (e) {
      return Promise.reject(e);
    }
  }
  let done;
  try {
    let data = input;
    if (scratch !== null) {
      sliceTarget = scratch;
      data = new SliceSource(input.buffer, input.byteOffset, input.length);
    }
    done = globalThis.crypto.subtle[op]({ name: 'AES-GCM', iv: nonce }, key, data);
  } catch (e) {
    done = Promise.reject(e);
  } finally {
    sliceTarget = null;
  }
  return done.then(
    (bytes) => new Uint8Array(bytes),
    () => {
      const bytes = inWasm();
      refused();
      return bytes;
    },
  );
}

/**
 * `bytes` for redoing a segment in wasm, checked to still be what WebCrypto
 * was given: a segment is often a view of a stream chunk, and a writer that
 * detached the chunk's buffer since (a BYOB reader reusing it) leaves it
 * empty. Then the stream fails (IO) rather than emitting a wrong segment.
 */
function unchanged(bytes, length) {
  if (bytes.length !== length) {
    throw new CofferError('IO', 'WebCrypto failed on a segment whose bytes their writer has taken back (detached) since');
  }
  return bytes;
}

/**
 * Segment operations in flight, emitted in submission order as soon as each
 * one and all before it are done (not when the next input arrives). After a
 * failure nothing more is emitted.
 */
class Pipeline {
  #emit;
  #tail = Promise.resolve();
  #pending = [];

  constructor(emit) {
    this.#emit = emit;
  }

  add(operation) {
    // Rejections are observed through `drain`, in order; mark them handled here.
    operation.catch(() => {});
    const emitted = this.#tail.then(() => operation).then((bytes) => this.#emit(bytes));
    emitted.catch(() => {});
    this.#tail = emitted;
    this.#pending.push(emitted);
  }

  /** Waits until at most `limit` operations are in flight; throws the first failure. */
  async drain(limit) {
    while (this.#pending.length > limit) await this.#pending.shift();
  }

  /** Stops waiting for anything still in flight. */
  clear() {
    this.#pending.length = 0;
  }
}

/**
 * Push/finish sealing with crypto.subtle; the same bytes as the wasm Sealer.
 * Ciphertext goes to `emit` (the header first) as soon as it is ready.
 */
export class WebCryptoSealer {
  #raw;
  /** The CryptoKey, or null once WebCrypto has failed on its own (segments then run in wasm). */
  #key = null;
  #cutter;
  #pipeline;

  constructor(emit) {
    this.#pipeline = new Pipeline(emit);
  }

  /** Runs Argon2id (passphrase) or the X25519 wrapping in wasm, then imports the payload key. */
  static async create(emit, passphrase, recipients, optionsJson) {
    const sealer = new WebCryptoSealer(emit);
    const raw = call(() => new WebSealer(passphrase, recipients, optionsJson));
    try {
      emit(raw.header());
      sealer.#cutter = new SegmentCutter(raw.segmentSize, POOL);
      sealer.#key = await importKey(raw.takeKey(), 'encrypt');
    } catch (e) {
      raw.free();
      throw adopt(e);
    }
    sealer.#raw = raw;
    return sealer;
  }

  /** Bytes of the sealed file for `plaintext` bytes. */
  sealedLength(plaintext) {
    return this.#raw.sealedLength(plaintext);
  }

  #encrypt(nonce, plaintext) {
    const raw = this.#raw;
    const cutter = this.#cutter;
    const length = plaintext.length;
    const inWasm = () => call(() => raw.sealSegment(nonce, unchanged(plaintext, length)));
    // The plaintext is kept until the operation settles, to redo it in wasm
    // if WebCrypto fails (encrypt fails on nothing in the input: any
    // failure is WebCrypto's own).
    const refused = () => (this.#key = null);
    return segment('encrypt', this.#key, nonce, plaintext, inWasm, refused).finally(() => cutter.release(plaintext));
  }

  /**
   * Adds plaintext; resolves once no more than a few segments are in flight.
   * `last`: nothing is pushed after `data`, which stays unchanged until
   * `finish` has resolved (one-shot calls: no staging copy of the tail).
   */
  async push(data, last = false) {
    const raw = this.#raw;
    if (!raw) throw finished();
    try {
      for (const plaintext of this.#cutter.cut(data, raw.ready(this.#cutter.buffered + data.length), last)) {
        this.#pipeline.add(this.#encrypt(call(() => raw.nextNonce(false)), plaintext));
        await this.#pipeline.drain(IN_FLIGHT);
      }
    } catch (e) {
      this.#fail();
      throw adopt(e);
    }
  }

  /** Seals the final segment; resolves once everything has been emitted. */
  async finish() {
    const raw = this.#raw;
    if (!raw) throw finished();
    try {
      this.#pipeline.add(this.#encrypt(call(() => raw.nextNonce(true)), this.#cutter.rest()));
      await this.#pipeline.drain(0);
    } catch (e) {
      throw adopt(e);
    } finally {
      this.#fail();
    }
  }

  /** Releases the wasm object (after finish, or to abandon the stream). */
  #fail() {
    this.#pipeline.clear();
    this.#raw?.free();
    this.#raw = undefined;
  }

  abort() {
    this.#fail();
  }
}

/**
 * Push/finish opening with crypto.subtle; the same results and errors as the
 * wasm Opener. Plaintext goes to `emit` segment by segment, each only once
 * its tag has verified.
 */
export class WebCryptoOpener {
  #raw;
  /** The CryptoKey, or null once WebCrypto has failed on its own (segments then run in wasm). */
  #key = null;
  /** Whether the header has been read (and the key imported). */
  #opened = false;
  #cutter;
  #pipeline;
  /** Plaintext bytes per segment, and bytes of a tag (once the header is read). */
  #segmentSize = 0;
  #tagLength = 0;
  /** Reused for Node's copy of each ciphertext (see SliceSource). */
  #scratch = null;

  constructor(emit, passphrase, identity) {
    this.#pipeline = new Pipeline(emit);
    this.#raw = call(() => new WebOpener(passphrase, identity));
  }

  #decrypt(nonce, ciphertext) {
    const raw = this.#raw;
    const cutter = this.#cutter;
    const length = ciphertext.length;
    const inWasm = () => call(() => raw.openSegment(nonce, unchanged(ciphertext, length)));
    // The ciphertext is kept until the operation settles: when WebCrypto
    // refuses it, wasm opens it (WebCrypto failed on its own) or explains
    // what is wrong with it.
    const refused = () => (this.#key = null);
    return segment('decrypt', this.#key, nonce, ciphertext, inWasm, refused, this.#scratchFor(length)).finally(() => cutter.release(ciphertext));
  }

  /**
   * The scratch buffer Node may copy a ciphertext of `length` bytes into,
   * without its tag (see SliceSource); null for small segments, where there
   * is nothing to gain and the tag's slice could have the same length.
   */
  #scratchFor(length) {
    const bytes = length - this.#tagLength;
    if (bytes < SCRATCH_MIN || bytes > this.#segmentSize) return null;
    this.#scratch ??= new Uint8Array(this.#segmentSize);
    return this.#scratch.length === bytes ? this.#scratch : this.#scratch.subarray(0, bytes);
  }

  /**
   * Feeds the header to Rust; returns the rest of `data` once the header is
   * read (or an empty array when `data` ends inside it).
   */
  async header(data) {
    if (!this.#raw) throw finished();
    try {
      return await this.#header(data);
    } catch (e) {
      this.#fail();
      throw adopt(e);
    }
  }

  /** Plaintext bytes in a well-formed sealed file of `sealed` bytes (once the header is read). */
  plaintextLength(sealed) {
    return this.#raw?.plaintextLength(sealed) ?? 0;
  }

  async #header(data) {
    const raw = this.#raw;
    while (data.length > 0) {
      const n = Math.min(raw.headerNeeded(), data.length);
      const done = call(() => raw.pushHeader(data.subarray(0, n)));
      data = data.subarray(n);
      if (done) {
        this.#cutter = new SegmentCutter(raw.unitSize, POOL);
        this.#segmentSize = raw.segmentSize;
        this.#tagLength = raw.unitSize - raw.segmentSize;
        this.#key = await importKey(call(() => raw.takeKey()), 'decrypt');
        this.#opened = true;
        return data;
      }
    }
    return data;
  }

  /** Adds sealed bytes; resolves once no more than a few segments are in flight. `last`: as for the sealer. */
  async push(data, last = false) {
    if (!this.#raw) throw finished();
    try {
      if (!this.#opened) {
        data = await this.#header(data);
        if (!this.#opened) return;
      }
      const raw = this.#raw;
      for (const ciphertext of this.#cutter.cut(data, raw.ready(this.#cutter.buffered + data.length), last)) {
        this.#pipeline.add(this.#decrypt(call(() => raw.nextNonce(false)), ciphertext));
        await this.#pipeline.drain(IN_FLIGHT);
      }
    } catch (e) {
      this.#fail();
      throw adopt(e);
    }
  }

  /** Ends the stream: checks the final segment; resolves once everything has been emitted. */
  async finish() {
    const raw = this.#raw;
    if (!raw) throw finished();
    try {
      if (!this.#opened) throw raw.endInHeader();
      const rest = this.#cutter.rest();
      call(() => raw.checkFinal(rest.length));
      const nonce = call(() => raw.nextNonce(true));
      // The final segment is checked before it is emitted.
      this.#pipeline.add(
        this.#decrypt(nonce, rest).then((plaintext) => {
          call(() => raw.finalOpened(nonce, plaintext.length));
          return plaintext;
        }),
      );
      await this.#pipeline.drain(0);
    } catch (e) {
      throw adopt(e);
    } finally {
      this.#fail();
    }
  }

  #fail() {
    this.#pipeline.clear();
    this.#raw?.free();
    this.#raw = undefined;
  }

  abort() {
    this.#fail();
  }
}
