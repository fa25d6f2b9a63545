// Type declarations of the `coffer` package, written by hand (the generated
// wasm-bindgen bindings in wasm/ are an internal layer).
//
// Node.js:   import { open } from 'coffer';              // ready on import
// Browsers:  import init, { open } from './pkg/coffer.js';
//            await init();

/** Bytes accepted as input. Output is always a `Uint8Array`. */
export type Bytes = Uint8Array | ArrayBuffer | ArrayBufferView;

// ------------------------------------------------------------------ errors

/** Every failure code. The same in Rust, the CLI, this package and the HTTP API. */
export type ErrorCode =
  | 'NOT_A_BUNDLE'
  | 'UNSUPPORTED_VERSION'
  | 'WRONG_KEY'
  | 'CORRUPT'
  | 'TRUNCATED'
  | 'LIMIT_EXCEEDED'
  | 'INVALID_INPUT'
  | 'IO';

/** All error codes, in a fixed order. */
export const ERROR_CODES: readonly ErrorCode[];

/**
 * The only error this package throws (or rejects with).
 *
 * - `NOT_A_BUNDLE`: not a coffer file at all.
 * - `UNSUPPORTED_VERSION`: a coffer file of a version this build does not read.
 * - `WRONG_KEY`: the passphrase or identity does not open the file.
 * - `CORRUPT`: authentication or an integrity check failed (the data was altered).
 * - `TRUNCATED`: the input ends too early (an interrupted download).
 * - `LIMIT_EXCEEDED`: a size or cost above this reader's limits.
 * - `INVALID_INPUT`: a bad argument (key text, options, snapshot shape…).
 * - `IO`: an I/O failure.
 */
export class CofferError extends Error {
  constructor(code: ErrorCode, message: string, options?: ErrorOptions);
  readonly name: 'CofferError';
  readonly code: ErrorCode;
}

/** Type guard: `e` is a CofferError, optionally with the given code. */
export function isCofferError<C extends ErrorCode = ErrorCode>(e: unknown, code?: C): e is CofferError & { readonly code: C };

// ------------------------------------------------------------------ setup

/**
 * Loads the wasm module. Needed once in browsers (from `coffer.js`); a no-op
 * in Node.js, where the package is ready on import. `input` defaults to
 * `wasm/coffer_wasm_bg.wasm` next to `coffer.js`.
 */
export default function init(input?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>;

/** Instantiates synchronously from the module's bytes (no-op in Node.js). */
export function initSync(module?: BufferSource | WebAssembly.Module): void;

/** Whether `crypto.subtle` is available (then `seal`/`open` and the streams use it for AES-GCM). */
export function hasWebCrypto(): boolean;

// ------------------------------------------------------------------ keys

/** Seal to a passphrase (Argon2id) … */
export interface PassphraseKey {
  passphrase: string;
}
/** … or to one or more X25519 public keys (`coffer1…`). */
export interface RecipientsKey {
  recipients: string[];
}
export type SealKey = PassphraseKey | RecipientsKey;

/** Open with the passphrase … */
export interface IdentityKey {
  /** A `COFFER-SECRET-KEY-1…` line, or the text of an identity file (several keys, `#` comments). */
  identity: string;
}
/** … or with an identity. */
export type OpenKey = PassphraseKey | IdentityKey;

/** A fresh X25519 key pair. Keep `identity` secret; give `publicKey` to whoever seals for you. */
export interface GeneratedIdentity {
  identity: string;
  publicKey: string;
}

export function generateIdentity(): GeneratedIdentity;

/** The public key (`coffer1…`) of an identity. */
export function publicKey(identity: string): string;

// ------------------------------------------------------------------ sealing

/** Argon2id cost for a passphrase. Default: 64 MiB, 3 passes, 1 lane. */
export interface KdfParams {
  memoryKib: number;
  iterations: number;
  parallelism: number;
}

export interface SealOptions {
  /** Public metadata: readable by `inspect` without a key, authenticated, not encrypted. */
  metadata?: Record<string, unknown>;
  /** Plaintext bytes per segment: a power of two, 16 KiB … 16 MiB. Default 1 MiB. */
  segmentSize?: number;
  /** Argon2id parameters for a passphrase. */
  kdf?: KdfParams;
  /**
   * Use `crypto.subtle` for AES-GCM when available (default true). The bytes are the same format either way;
   * where WebCrypto fails on its own (refuses the key or a segment), the rest goes on in wasm, streams included.
   */
  webCrypto?: boolean;
}

export interface OpenOptions {
  /** Use `crypto.subtle` for AES-GCM when available (default true). */
  webCrypto?: boolean;
}

/**
 * Encrypts `data`. Key derivation, the header and the framing run in the
 * wasm core; the bulk AES-256-GCM runs in WebCrypto where available.
 */
export function seal(data: Bytes, key: SealKey, options?: SealOptions): Promise<Uint8Array>;

/** Decrypts a sealed file; rejects with `WRONG_KEY`, `CORRUPT`, `TRUNCATED`, … */
export function open(sealed: Bytes, key: OpenKey, options?: OpenOptions): Promise<Uint8Array>;

/** `seal` in pure wasm (no WebCrypto, synchronous). Same format. */
export function sealSync(data: Bytes, key: SealKey, options?: Omit<SealOptions, 'webCrypto'>): Uint8Array;

/** `open` in pure wasm (no WebCrypto, synchronous). */
export function openSync(sealed: Bytes, key: OpenKey): Uint8Array;

/**
 * A stream that seals what is written to it, in memory bounded by a few
 * segments: `file.stream().pipeThrough(sealStream({ passphrase }))`.
 */
export function sealStream(key: SealKey, options?: SealOptions): TransformStream<Uint8Array, Uint8Array>;

/**
 * A stream that opens a sealed stream. Plaintext is released segment by
 * segment, each only once its tag has verified; the stream errors with a
 * CofferError on a wrong key, damage or truncation (the end of the stream is
 * authenticated too).
 */
export function openStream(key: OpenKey, options?: OpenOptions): TransformStream<Uint8Array, Uint8Array>;

// ------------------------------------------------------------------ inspection

/** How a sealed file is opened, as `inspect` shows it. */
export type RecipientInfo =
  | { kind: 'passphrase'; kdf: KdfParams & { algorithm: 'argon2id' } }
  | { kind: 'x25519' };

/** What the header of a sealed file tells without a key. */
export interface SealedInfo {
  format: 'coffer-sealed';
  version: number;
  /** Header length in bytes (the first segment starts there). */
  headerLen: number;
  /** Plaintext bytes per segment. */
  segmentSize: number;
  recipients: RecipientInfo[];
  /** Public metadata, if any. */
  metadata: Record<string, unknown> | null;
}

/** A collection in a bundle's table of contents. */
export interface TocCollection {
  name: string;
  documents: number;
  rawBytes: number;
  storedBytes: number;
  offset: number;
  /** blake3 (hex) of the collection's blocks. */
  hash: string;
}

/** The table of contents at the end of every bundle. */
export interface Toc {
  /** The content digest: blake3 (hex) of the canonical content. */
  digest: string;
  rawBytes: number;
  storedBytes: number;
  collections: TocCollection[];
  commits: number;
  branches: number;
  historyOffset: number;
}

/** What a plain bundle is, from its table of contents. */
export interface BundleInfo {
  format: 'coffer-bundle';
  version: number;
  bytes: number;
  toc: Toc;
}

/**
 * What a file is, without any key: for a sealed file its header (the first
 * `headerLen` bytes suffice; 128 KiB always do), for a plain bundle its table
 * of contents (all of its bytes are needed).
 */
export function inspect(bytesOrHeader: Bytes): SealedInfo | BundleInfo;

export interface VerifyResult {
  ok: true;
  sealed: boolean;
  /** Plaintext bytes. */
  bytes: number;
  /** For a bundle: its content digest, document and commit counts. */
  digest?: string;
  documents?: number;
  commits?: number;
  /** For a sealed file: its header. */
  header?: SealedInfo;
}

/**
 * Checks every segment tag and, when the plaintext is a bundle, every block,
 * hash and the digest — as `coffer verify` does. A plain bundle needs no key.
 */
export function verify(input: Bytes, key?: OpenKey, options?: OpenOptions): Promise<VerifyResult>;

// ------------------------------------------------------------------ bundles

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A change inside a commit. */
export type Change =
  | { op: 'put'; collection: string; id: string; document: Json }
  | { op: 'delete'; collection: string; id: string }
  | { op: 'configure'; collection: string; config: { [key: string]: Json } }
  | { op: 'drop'; collection: string }
  | { op: 'schema'; schema: Json };

export interface Commit {
  id: string;
  parents?: string[];
  author?: string;
  message?: string;
  /** Milliseconds since the Unix epoch (UTC). */
  timestamp?: number;
  changes?: Change[];
}

export interface History {
  commits?: Commit[];
  /** Branch name → head commit id. */
  branches?: { [name: string]: string };
}

export interface Collection {
  /** Free-form configuration, e.g. `{ dimension: 384, metric: 'cosine' }`. */
  config?: { [key: string]: Json };
  /**
   * The documents. Each one's id is its `"id"`, else its `"@id"`, else one
   * derived from its content; they are stored sorted by id.
   */
  documents?: Json[];
}

/** A database at one point in time, as `bundle` takes it and `unbundle` gives it back. */
export interface Snapshot {
  schema?: Json;
  /** Collection name (1–128 of `[A-Za-z0-9_.-]`, not starting with `.`) → collection. */
  collections?: { [name: string]: Collection };
  history?: History;
}

/** `Snapshot` as `unbundle` returns it: every field present. */
export interface FullSnapshot {
  schema: Json;
  collections: { [name: string]: { config: { [key: string]: Json }; documents: Json[] } };
  history: { commits: Required<Commit>[]; branches: { [name: string]: string } };
}

/**
 * The deterministic bundle of a snapshot: the same snapshot gives the same
 * bytes here and in the `coffer` CLI.
 */
export function bundle(snapshot: Snapshot): Uint8Array;

/**
 * Reads a whole plain bundle, checking every hash and the digest. Documents
 * whose id is not derivable from their content get it as `"@id"`, so
 * `bundle(unbundle(b))` gives `b` back.
 */
export function unbundle(bytes: Bytes): FullSnapshot;

/** One collection of a plain bundle (its hash is checked; nothing else is decoded). */
export function readCollection(bytes: Bytes, name: string): { name: string; config: { [key: string]: Json }; documents: Json[] };

/** One collection as NDJSON bytes: exactly the `NAME.ndjson` that `coffer unbundle` writes. */
export function exportCollection(bytes: Bytes, name: string): Uint8Array;

/** The content digest (blake3, hex) of a plain bundle, after checking all of it. */
export function digest(bytes: Bytes): string;
