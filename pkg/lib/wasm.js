// Pure-wasm push/finish objects (the core's Encryptor / Decryptor), with the
// same interface as the WebCrypto ones (output goes to an `emit` callback), for places without crypto.subtle and
// for sealSync / openSync. Input is fed in slices so wasm memory, which never
// shrinks, stays at a few segments whatever the size of the data.
import { Opener, Sealer } from '../wasm/coffer_wasm.js';
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
        const chunk = raw.push(data.subarray(at, at + SLICE));
        if (chunk.length > 0) this.#emit(chunk);
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
      this.#emit(raw.finish());
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
