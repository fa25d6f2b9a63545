// Node only (registered by ../node.js): the pages of a large one-shot output
// are faulted in on libuv's threadpool instead of on the main thread.
//
// `seal`/`open` return one fresh Uint8Array. Its pages are untouched until
// each segment is copied in, and on Linux every first touch is a page fault
// that zeroes a page: ≈ 0.6 ms per MiB on the machine of BENCHMARKS.md, on
// the main thread, which already does Node's copy of every WebCrypto input
// and ours of every result. Reading /dev/zero into a region of the output
// makes the kernel fault those pages in on the pool thread that runs the
// read; the main thread then copies into pages already there.
//
// Only zeros are written, and only into bytes not written yet: a read is
// started at or after the output's write position, and the Collector waits
// for every read overlapping a region before it copies into it. The output
// is returned only once every read has ended, so no read is ever in flight
// on a buffer the caller holds. A read that fails changes nothing (its pages
// fault on the main thread as before).
import { openSync, read as fsRead } from 'node:fs';

const MiB = 1 << 20;
/**
 * Outputs smaller than this are not prefaulted. glibc serves allocations
 * below its mmap threshold (dynamic, at most 32 MiB) from memory it reuses.
 * Measured with the prefault on against off, alternating rounds in one
 * process (seal / open, median of per-round ratios), load ≈ 1.5–2:
 * 8 MiB +5 / −12 %, 16 MiB −12 / +8 %, 32 MiB +4 / +17 %, 64 MiB
 * +18 / +11 %, 256 MiB +11 / +20 %. At load ≈ 2.9 (the other core busy
 * elsewhere): 32 MiB +6 / +6 %, 64 MiB 0 / −2 %. The reads gain only
 * where a core has time to spare, and cost 3–10 % more CPU per byte.
 */
export const PREFAULT_MIN = 32 * MiB;
/** The first read covers this much, so the first segments wait little; each next one twice as much… */
const FIRST_READ = MiB;
/** …up to this (1 MiB reads throughout: 91–98 % of off at 32 and 64 MiB). */
const LARGEST_READ = 8 * MiB;
/**
 * Reads in flight at once. With coffer's 2–3 WebCrypto operations they
 * fill libuv's 4 threads (its default). Measured: 1 in flight gained less.
 * The Collector waits for the reads over a region before it copies into
 * it, so the copies never run ahead of them; two pool threads zero pages
 * faster (≈ 1.6 GB/s each here) than the main thread copies results.
 */
const READS_IN_FLIGHT = 2;

/** /dev/zero, opened on the first large output and kept open. */
let zeroFd = null;

/** Whether /dev/zero can be read (opened once, on the first large output). */
function haveZeros() {
  if (zeroFd === null) {
    try {
      zeroFd = openSync('/dev/zero', 'r');
    } catch {
      zeroFd = -1;
    }
  }
  return zeroFd >= 0;
}

/** Reads `length` zero bytes from /dev/zero into `buffer` at `offset` on the threadpool, then calls `done` (whatever happened). */
function readZeros(buffer, offset, length, done) {
  fsRead(zeroFd, buffer, offset, length, null, () => done());
}

/**
 * `(out, from) => Prefault | null` for the Collector: prefaults `out` from
 * byte `from` on, or null when `out` is too small to gain from it (or
 * there is no /dev/zero). `read` (`readZeros`, or a stand-in in tests) must
 * write only zeros, only into the range it is given, and call `done` once;
 * tests also choose smaller reads (`first`, `largest`).
 */
export function prefaulter({ read = null, min = PREFAULT_MIN, first = FIRST_READ, largest = LARGEST_READ } = {}) {
  return (out, from) => {
    if (out.length < min) return null;
    if (read === null && !haveZeros()) return null;
    return new Prefault(out, from, read ?? readZeros, first, largest);
  };
}

/** The reads into one output, in order of position. */
class Prefault {
  #out;
  #read;
  /** Where the next read starts (at least `#written`). */
  #next;
  /** Bytes written by the Collector: no read may start before this. */
  #written;
  /** Bytes of the next read, and of the largest. */
  #size;
  #largest;
  /** Reads not known to be over, in order: { start, end, over, ended }. */
  #reads = [];
  #inFlight = 0;
  #stopped = false;

  constructor(out, from, read, first, largest) {
    this.#out = out;
    this.#read = read;
    this.#size = first;
    this.#largest = largest;
    this.#next = from;
    this.#written = from;
    this.#pump();
  }

  /**
   * Before the Collector writes bytes up to `end` (from its write position):
   * null when it may write now, else a promise of the moment it may.
   */
  before(end) {
    const reads = this.#reads;
    while (reads.length > 0 && reads[0].over) reads.shift();
    const waiting = [];
    for (const r of reads) {
      if (r.start >= end) break;
      if (!r.over) waiting.push(r.ended);
    }
    return waiting.length === 0 ? null : Promise.all(waiting);
  }

  /** After the Collector has written bytes up to `end`. */
  wrote(end) {
    this.#written = end;
    this.#pump();
  }

  /** Starts no more reads; resolves once none is in flight any more. */
  settled() {
    this.#stopped = true;
    return Promise.all(this.#reads.map((r) => r.ended));
  }

  #pump() {
    const out = this.#out;
    while (this.#inFlight < READS_IN_FLIGHT && !this.#stopped) {
      const start = Math.max(this.#next, this.#written);
      if (start >= out.length) return;
      const end = Math.min(out.length, start + this.#size);
      this.#size = Math.min(this.#largest, 2 * this.#size);
      this.#next = end;
      const r = { start, end, over: false, ended: null };
      let resolve;
      r.ended = new Promise((ok) => (resolve = ok));
      this.#inFlight++;
      this.#reads.push(r);
      this.#read(out, start, end - start, () => {
        r.over = true;
        this.#inFlight--;
        resolve();
        this.#pump();
      });
    }
  }
}
