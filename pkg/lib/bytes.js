// Byte helpers: argument checks, concatenation, and the segment queue used
// by the WebCrypto path.
import { invalid } from './errors.js';

/** A Uint8Array view of `data` (Uint8Array, Buffer, other views, ArrayBuffer), without copying. */
export function toBytes(data, what) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw invalid(`${what} must be a Uint8Array (or an ArrayBuffer / typed array), not ${describe(data)}`);
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'an object';
  return typeof value;
}

/** One Uint8Array holding all of `parts`. */
export function concat(parts) {
  if (parts.length === 1) return parts[0];
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Cuts a stream of byte chunks into whole units (segments) for WebCrypto,
 * with as little copying and garbage as possible:
 * - a unit that lies inside one chunk is handed out as a view (no copy);
 *   WebCrypto copies its input when called, so the view is only read later
 *   to explain a failure;
 * - bytes held back at the end of a chunk are copied into a pooled staging
 *   buffer before the call returns, so nothing that is still to be
 *   encrypted points into a chunk its writer may reuse;
 * - staging buffers come back to the pool once their operation settled, so
 *   a long stream allocates no buffers of its own after the first few.
 */
export class SegmentCutter {
  #unit;
  #stage = null;
  #fill = 0;
  #free = [];
  #pooled = new WeakSet();
  #poolSize;
  /** The held-back bytes as a view of the last chunk (see `cut`), or null. */
  #tail = null;

  constructor(unit, poolSize) {
    this.#unit = unit;
    this.#poolSize = poolSize;
  }

  /** Bytes held back. */
  get buffered() {
    return this.#fill + (this.#tail?.length ?? 0);
  }

  /**
   * Yields `count` whole units taken from the held-back bytes and `chunk`,
   * then holds back the rest of `chunk`. `count` must not ask for more than
   * `buffered + chunk.length` leaves, minus at least one byte.
   *
   * With `last`, `chunk` is the last one and stays unchanged until the
   * work is done (a one-shot call's whole input): the rest is held back as
   * a view of it instead of a staging copy, when nothing was held back
   * before it.
   */
  *cut(chunk, count, last = false) {
    const unit = this.#unit;
    let at = 0;
    for (let i = 0; i < count; i++) {
      if (this.#fill === 0) {
        yield chunk.subarray(at, at + unit);
        at += unit;
      } else {
        const need = unit - this.#fill;
        this.#stage.set(chunk.subarray(at, at + need), this.#fill);
        at += need;
        const full = this.#stage;
        this.#stage = null;
        this.#fill = 0;
        yield full;
      }
    }
    if (at < chunk.length && last && this.#fill === 0) {
      this.#tail = chunk.subarray(at);
    } else if (at < chunk.length) {
      this.#stage ??= this.#allocate();
      this.#stage.set(chunk.subarray(at), this.#fill);
      this.#fill += chunk.length - at;
    }
  }

  /** The held-back bytes (the final segment), and nothing held back any more. */
  rest() {
    if (this.#tail !== null) {
      const tail = this.#tail;
      this.#tail = null;
      return tail;
    }
    const rest = this.#stage ? this.#stage.subarray(0, this.#fill) : new Uint8Array(0);
    this.#stage = null;
    this.#fill = 0;
    return rest;
  }

  /** Gives a unit back to the pool once nothing reads it any more (views are ignored). */
  release(bytes) {
    if (this.#pooled.has(bytes) && this.#free.length < this.#poolSize) this.#free.push(bytes);
  }

  #allocate() {
    const buffer = this.#free.pop() ?? new Uint8Array(this.#unit);
    this.#pooled.add(buffer);
    return buffer;
  }
}

/**
 * Collects emitted chunks into one Uint8Array. Once the final size is known
 * (`expect`), the output is allocated once and each chunk is copied in as it
 * arrives, while later segments are still being encrypted; before that, or
 * if the size turns out wrong, chunks are kept and joined at the end.
 *
 * `prefault(out, from)` (Node: lib/prefault-node.js; none in browsers) may
 * fault the output's pages in off the main thread. It returns null, or an
 * object whose `before(end)` says whether a write up to `end` has to wait
 * (a promise), `wrote(end)` hears of each write, and `settled()` resolves
 * once it touches the output no more. `add` then returns a promise when it
 * had to wait; the Pipeline of webcrypto.js waits for it before the next.
 */
export class Collector {
  #parts = [];
  #out = null;
  #at = 0;
  #prefault;
  #fault = null;

  constructor(prefault = null) {
    this.#prefault = prefault;
  }

  add = (bytes) => {
    if (this.#out !== null && this.#at + bytes.length <= this.#out.length) {
      const end = this.#at + bytes.length;
      const wait = this.#fault?.before(end);
      if (wait) return wait.then(() => this.add(bytes));
      this.#out.set(bytes, this.#at);
      this.#at = end;
      this.#fault?.wrote(end);
      return undefined;
    }
    if (this.#out !== null) {
      this.#parts.push(this.#out.subarray(0, this.#at));
      this.#out = null;
    }
    this.#parts.push(bytes);
    return undefined;
  };

  expect(size) {
    if (this.#out !== null || !(size > 0)) return;
    const parts = this.#parts;
    this.#parts = [];
    this.#out = new Uint8Array(size);
    for (const part of parts) this.add(part);
    if (this.#out !== null && this.#prefault !== null) this.#fault = this.#prefault(this.#out, this.#at);
  }

  async result() {
    await this.#fault?.settled();
    if (this.#out === null) return concat(this.#parts);
    return this.#at === this.#out.length ? this.#out : this.#out.subarray(0, this.#at);
  }
}
