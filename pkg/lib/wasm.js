// Pure-wasm push/finish objects (src/wasm/seal.rs), with the same interface
// as the WebCrypto ones (output goes to an `emit` callback), for places
// without crypto.subtle, and the one-shot runner of sealSync / openSync. Input
// is fed in slices so wasm memory, which never shrinks, stays at a few
// segments whatever the size of the data.
import { Opener, Sealer } from '../wasm/coffer_wasm.js';
import { concat } from './bytes.js';
import { adopt, invalid } from './errors.js';

/** Largest slice copied into wasm memory at once. */
const SLICE = 4 << 20;

class Pushed {
  #raw;
  #emit;

  constructor(emit, make) {
    this.#emit = emit;
    try {
      this.#raw = make();
    } catch (e) {
      throw adopt(e);
    }
  }

  /** Adds bytes; what is ready goes to `emit`. */
  push(data) {
    const raw = this.#live();
    try {
      for (let at = 0; at < data.length; at += SLICE) {
        if (raw.pushBuffered(data.subarray(at, at + SLICE)) > 0) this.#emit(raw.take());
      }
    } catch (e) {
      this.abort();
      throw adopt(e);
    }
  }

  /** Ends the stream; the rest goes to `emit`. */
  finish() {
    const raw = this.#live();
    try {
      raw.finishBuffered();
      this.#emit(raw.take());
    } catch (e) {
      throw adopt(e);
    } finally {
      this.abort();
    }
  }

  /** Releases the wasm object. */
  abort() {
    this.#raw?.free();
    this.#raw = undefined;
  }

  #live() {
    if (!this.#raw) throw invalid('this object has already finished or failed');
    return this.#raw;
  }
}

export class WasmSealer extends Pushed {
  constructor(emit, passphrase, recipients, optionsJson) {
    super(emit, () => new Sealer(passphrase, recipients, optionsJson));
  }
}

export class WasmOpener extends Pushed {
  constructor(emit, passphrase, identity) {
    super(emit, () => new Opener(passphrase, identity));
  }
}

/**
 * Runs a raw wasm Sealer / Opener (made by `make()`) over the whole of
 * `input` and returns the output as one Uint8Array. The output is allocated
 * once, at the size the Rust framing gives (`outputLength`, known after the
 * header for an opener), and wasm copies each piece straight into it
 * (`copyTo`): no intermediate arrays. If the size turns out wrong (a damaged
 * file, which fails anyway), pieces are collected and joined instead.
 */
export function runAllSync(make, input) {
  let raw;
  try {
    raw = make();
  } catch (e) {
    throw adopt(e);
  }
  let out = null;
  let at = 0;
  let sized = false;
  const parts = [];
  const place = (n) => {
    if (!sized) {
      const size = raw.outputLength(input.length);
      if (size > 0) {
        out = new Uint8Array(size);
        sized = true;
      }
    }
    if (n === 0) return;
    if (out !== null && at + n <= out.length) {
      raw.copyTo(out, at);
      at += n;
      return;
    }
    if (out !== null) {
      parts.push(out.subarray(0, at));
      out = null;
    }
    parts.push(raw.take());
  };
  try {
    for (let pos = 0; pos < input.length; pos += SLICE) place(raw.pushBuffered(input.subarray(pos, pos + SLICE)));
    place(raw.finishBuffered());
  } catch (e) {
    throw adopt(e);
  } finally {
    raw.free();
  }
  if (out !== null && parts.length === 0) return at === out.length ? out : out.subarray(0, at);
  if (out !== null) parts.push(out.subarray(0, at));
  return concat(parts);
}

export function rawSealer(passphrase, recipients, optionsJson) {
  return () => new Sealer(passphrase, recipients, optionsJson);
}

export function rawOpener(passphrase, identity) {
  return () => new Opener(passphrase, identity);
}
