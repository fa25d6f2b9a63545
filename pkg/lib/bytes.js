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
 * A FIFO of bytes that hands out fixed-size units. Units are views into the
 * caller's buffers when they lie within one buffer (the common case for a
 * one-shot call), copies otherwise. `keep()` copies what stays queued, so no
 * view into a caller's buffer outlives the call that gave it.
 */
export class ByteQueue {
  #parts = [];
  #owned = [];
  length = 0;

  push(bytes, owned = false) {
    if (bytes.length === 0) return;
    this.#parts.push(bytes);
    this.#owned.push(owned);
    this.length += bytes.length;
  }

  /** The next `n` bytes (n ≤ length). */
  take(n) {
    const head = this.#parts[0];
    if (head !== undefined && head.length >= n) {
      const unit = head.subarray(0, n);
      if (head.length === n) {
        this.#parts.shift();
        this.#owned.shift();
      } else {
        this.#parts[0] = head.subarray(n);
      }
      this.length -= n;
      return unit;
    }
    const unit = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const part = this.#parts[0];
      const k = Math.min(part.length, n - at);
      unit.set(part.subarray(0, k), at);
      at += k;
      if (k === part.length) {
        this.#parts.shift();
        this.#owned.shift();
      } else {
        this.#parts[0] = part.subarray(k);
      }
    }
    this.length -= n;
    return unit;
  }

  /** Everything queued. */
  takeAll() {
    return this.take(this.length);
  }

  /** Copies queued bytes that still point into a caller's buffer. */
  keep() {
    if (this.#owned.every(Boolean)) return;
    const single = this.#parts.length === 1;
    const all = this.takeAll(); // a fresh copy unless it was a single part
    this.push(single ? all.slice() : all, true);
  }
}
