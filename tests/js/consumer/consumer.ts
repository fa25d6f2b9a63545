// A small typed consumer of the package: `tsc --noEmit -p tests/js/consumer`
// checks that the hand-written declarations (pkg/coffer.d.ts) are complete
// and usable the way the README shows. It is type-checked, not run.
import init, {
  bundle,
  CofferError,
  digest,
  ERROR_CODES,
  exportCollection,
  generateIdentity,
  hasWebCrypto,
  inspect,
  isCofferError,
  open,
  openStream,
  openSync,
  publicKey,
  readCollection,
  seal,
  sealStream,
  sealSync,
  unbundle,
  verify,
  type BundleInfo,
  type ErrorCode,
  type SealedInfo,
  type Snapshot,
  type VerifyResult,
} from 'coffer';

export async function roundTrip(data: Uint8Array): Promise<Uint8Array> {
  await init();
  const sealed: Uint8Array = await seal(data, { passphrase: 'p' }, { metadata: { host: 'db-1' }, segmentSize: 1 << 16 });
  const { identity, publicKey: pk } = generateIdentity();
  const toKey = sealSync(data, { recipients: [pk, publicKey(identity)] }, { kdf: { memoryKib: 65536, iterations: 3, parallelism: 1 } });
  openSync(toKey, { identity });
  return open(sealed, { passphrase: 'p' }, { webCrypto: hasWebCrypto() });
}

export function describe(bytes: Uint8Array): string {
  const info: SealedInfo | BundleInfo = inspect(bytes);
  if (info.format === 'coffer-bundle') {
    return `${info.toc.digest} ${info.toc.collections.map((c) => `${c.name}:${c.documents}`).join(',')}`;
  }
  const kinds = info.recipients.map((r) => (r.kind === 'passphrase' ? `argon2id m=${r.kdf.memoryKib}` : r.kind));
  return `${info.headerLen} ${info.segmentSize} ${kinds.join(',')} ${JSON.stringify(info.metadata)}`;
}

export async function handle(sealed: Uint8Array): Promise<ErrorCode | 'ok'> {
  try {
    const result: VerifyResult = await verify(sealed, { passphrase: 'wrong' });
    return result.ok ? 'ok' : 'CORRUPT';
  } catch (e) {
    if (isCofferError(e, 'WRONG_KEY')) {
      const code: 'WRONG_KEY' = e.code;
      return code;
    }
    if (e instanceof CofferError) return e.code;
    throw e;
  }
}

export function bundles(): string {
  const snapshot: Snapshot = {
    schema: { version: 1 },
    collections: { docs: { config: { dimension: 3 }, documents: [{ id: 'a', v: [1, 2, 3] }, 'plain', 42] } },
    history: { commits: [{ id: 'c1', changes: [{ op: 'put', collection: 'docs', id: 'a', document: { id: 'a' } }] }], branches: { main: 'c1' } },
  };
  const bytes = bundle(snapshot);
  const back = unbundle(bytes);
  const docs = readCollection(bytes, 'docs').documents.length + back.collections.docs.documents.length;
  const ndjson: Uint8Array = exportCollection(bytes, 'docs');
  return `${digest(bytes)} ${docs} ${ndjson.length} ${back.history.commits[0].timestamp} ${ERROR_CODES.length}`;
}

export async function streams(file: ReadableStream<Uint8Array>, sink: WritableStream<Uint8Array>): Promise<void> {
  await file.pipeThrough(sealStream({ passphrase: 'p' })).pipeThrough(openStream({ passphrase: 'p' })).pipeTo(sink);
  const err = new CofferError('TRUNCATED', 'cut');
  const name: 'CofferError' = err.name;
  void name;
}
