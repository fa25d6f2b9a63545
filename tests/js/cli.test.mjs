// Interoperability with the native CLI: files sealed by the CLI open in Node
// and files sealed in Node open in the CLI (both AES paths, passphrase and
// X25519); a snapshot bundled in JS and by `coffer bundle` gives identical
// bytes (small, multi-block and mixed data); JS and CLI agree on unbundled
// collections, inspect, verify and errors.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import * as coffer from 'coffer';
import { cli, codeOf, equalBytes, FAST, pseudoRandom, ROOT, tempDir } from './helpers.mjs';

const scratch = tempDir();
after(scratch.cleanup);
let n = 0;
const path = (name) => join(scratch.dir, `${n++}-${name}`);
const passphrase = 'interop passphrase';

/** Reads a directory the way `coffer bundle DIR` does (crate::dir) into the JS snapshot shape. */
function snapshotOfDir(dir) {
  const snapshot = { schema: null, collections: {}, history: {} };
  for (const file of readdirSync(dir).sort()) {
    const text = readFileSync(join(dir, file), 'utf8');
    if (file === 'schema.json') snapshot.schema = JSON.parse(text);
    else if (file === 'history.json') snapshot.history = JSON.parse(text);
    else if (file.endsWith('.config.json')) (snapshot.collections[file.slice(0, -12)] ??= {}).config = JSON.parse(text);
    else if (file.endsWith('.ndjson')) {
      (snapshot.collections[file.slice(0, -7)] ??= {}).documents = text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
    } else if (file.endsWith('.json')) (snapshot.collections[file.slice(0, -5)] ??= {}).documents = JSON.parse(text);
  }
  return snapshot;
}

function cliBundle(dir) {
  const file = path('cli.cfb');
  const r = cli(['bundle', dir, '-o', file]);
  assert.ok(r.ok, r.stderr);
  return { file, bytes: new Uint8Array(readFileSync(file)) };
}

/** A directory with enough varied data for several 1 MiB blocks and every zstd size class. */
function generatedDir() {
  const dir = path('generated');
  mkdirSync(dir);
  const words = ['alpha', 'beta', 'gamma', 'delta', 'épsilon', 'ζeta', '😀', 'the quick brown fox', 'lorem ipsum dolor sit amet'];
  const random = pseudoRandom(200000, 7);
  const docs = [];
  for (let i = 0; i < 12000; i++) {
    docs.push({
      id: `doc-${(i * 7919) % 12000}`,
      title: `${words[i % words.length]} ${i}`,
      n: i % 3 === 0 ? i / 7 : i,
      big: i * 1e15,
      flag: i % 2 === 0,
      tags: words.slice(0, i % words.length),
      vector: Array.from({ length: 8 }, (_, k) => random[(i * 8 + k) % random.length] / 255 - 0.5),
      blob: Buffer.from(random.subarray((i * 37) % 190000, ((i * 37) % 190000) + (i % 50))).toString('base64'),
    });
  }
  writeFileSync(join(dir, 'docs.json'), JSON.stringify(docs));
  writeFileSync(join(dir, 'docs.config.json'), JSON.stringify({ dimension: 8, metric: 'cosine' }));
  // Content-addressed documents (no id), one per line, some duplicated.
  const lines = [];
  for (let i = 0; i < 3000; i++) lines.push(JSON.stringify({ line: i % 2500, text: words[i % words.length].repeat(1 + (i % 5)) }));
  writeFileSync(join(dir, 'events.ndjson'), lines.join('\n') + '\n');
  writeFileSync(join(dir, 'tiny.json'), JSON.stringify([{ '@id': 'only', v: null }]));
  writeFileSync(join(dir, 'empty.json'), '[]');
  writeFileSync(join(dir, 'schema.json'), JSON.stringify({ version: 2, collections: ['docs', 'events'] }));
  const commits = Array.from({ length: 300 }, (_, i) => ({
    id: `c${i}`,
    parents: i === 0 ? [] : i % 10 === 0 ? [`c${i - 1}`, `c${i - 2}`] : [`c${i - 1}`],
    author: 'gen',
    message: `commit ${i}`,
    timestamp: 1700000000000 + i,
    changes: [{ op: 'put', collection: 'docs', id: `doc-${i}`, document: { id: `doc-${i}`, i } }],
  }));
  writeFileSync(join(dir, 'history.json'), JSON.stringify({ commits, branches: { main: 'c299', old: 'c100' } }));
  return dir;
}

describe('bundles: JS and CLI give identical bytes', () => {
  test('examples/sample', () => {
    const dir = join(ROOT, 'examples/sample');
    const { file, bytes: fromCli } = cliBundle(dir);
    const fromJs = coffer.bundle(snapshotOfDir(dir));
    assert.ok(equalBytes(fromJs, fromCli), 'bundle bytes differ');
    assert.equal(coffer.digest(fromJs), cli(['verify', file]).json.digest);
  });

  test('a generated snapshot of several MiB (multiple blocks, all block sizes)', () => {
    const dir = generatedDir();
    const { bytes: fromCli } = cliBundle(dir);
    const fromJs = coffer.bundle(snapshotOfDir(dir));
    assert.ok(coffer.inspect(fromCli).toc.rawBytes > 2 << 20, 'the fixture spans several blocks');
    assert.ok(equalBytes(fromJs, fromCli), 'bundle bytes differ');
    // And back: unbundle in JS and bundle again; the CLI's unbundled collections equal exportCollection.
    assert.ok(equalBytes(coffer.bundle(coffer.unbundle(fromJs)), fromJs));
    const file = path('js.cfb');
    writeFileSync(file, fromJs);
    const outDir = path('unbundled');
    assert.ok(cli(['unbundle', file, '-o', outDir]).ok);
    for (const name of ['docs', 'events', 'tiny', 'empty']) {
      const ndjson = readFileSync(join(outDir, `${name}.ndjson`));
      assert.ok(equalBytes(coffer.exportCollection(fromJs, name), ndjson), `${name}.ndjson`);
    }
    const inspected = cli(['inspect', file]).json;
    assert.equal(inspected.toc.digest, coffer.inspect(fromJs).toc.digest);
    assert.deepEqual(
      inspected.toc.collections.map((c) => [c.name, c.documents, c.hash]),
      coffer.inspect(fromJs).toc.collections.map((c) => [c.name, c.documents, c.hash]),
    );
  });

  test('bad input gets the same code from both', () => {
    const dir = path('conflict');
    mkdirSync(dir);
    writeFileSync(join(dir, 'docs.json'), JSON.stringify([{ id: 'x', v: 1 }, { id: 'x', v: 2 }]));
    assert.equal(cli(['bundle', dir, '-o', path('x.cfb')]).json.error.code, 'INVALID_INPUT');
    assert.throws(() => coffer.bundle(snapshotOfDir(dir)), { code: 'INVALID_INPUT' });
  });
});

describe('sealed files cross between the CLI and Node', () => {
  const data = pseudoRandom(3 * (1 << 20) + 12345, 11);

  test('sealed by the CLI (passphrase), opened in Node by both paths and the streams', async () => {
    const input = path('plain');
    const sealedFile = path('cli.cfs');
    writeFileSync(input, data);
    const r = cli(['seal', input, '-o', sealedFile, '--metadata', '{"from":"cli"}'], { passphrase });
    assert.ok(r.ok, r.stderr);
    const sealed = new Uint8Array(readFileSync(sealedFile));
    assert.deepEqual(coffer.inspect(sealed).metadata, { from: 'cli' });
    assert.ok(equalBytes(await coffer.open(sealed, { passphrase }), data));
    assert.ok(equalBytes(coffer.openSync(sealed, { passphrase }), data));
    assert.equal(await codeOf(() => coffer.open(sealed, { passphrase: 'wrong' })), 'WRONG_KEY');
    assert.equal(await codeOf(() => coffer.open(sealed.subarray(0, sealed.length - (1 << 20) - 12345 - 32), { passphrase })), 'TRUNCATED');
  });

  test('sealed in Node (both paths), opened by the CLI', async () => {
    for (const [name, sealed] of [
      ['webcrypto', await coffer.seal(data, { passphrase }, { metadata: { from: 'node' } })],
      ['wasm', coffer.sealSync(data, { passphrase }, { metadata: { from: 'node' } })],
      ['small segments', await coffer.seal(data, { passphrase }, FAST)],
    ]) {
      const file = path(`${name}.cfs`);
      const out = path(`${name}.out`);
      writeFileSync(file, sealed);
      const r = cli(['open', file, '-o', out], { passphrase });
      assert.ok(r.ok, `${name}: ${r.stderr}`);
      assert.ok(equalBytes(new Uint8Array(readFileSync(out)), data), name);
      const inspected = cli(['inspect', file]).json;
      const ours = coffer.inspect(sealed);
      assert.equal(inspected.header_len, ours.headerLen);
      assert.equal(inspected.segment_size, ours.segmentSize);
      assert.deepEqual(inspected.metadata ?? null, ours.metadata);
      // Damage is reported with the same code by both.
      const cut = path(`${name}.cut.cfs`);
      writeFileSync(cut, sealed.subarray(0, ours.headerLen + ours.segmentSize + 16));
      assert.equal(cli(['open', cut, '-o', path('x')], { passphrase }).json.error.code, await codeOf(() => coffer.open(readFileSync(cut), { passphrase })));
    }
  });

  test('X25519: a CLI identity opens what Node sealed to its public key, and the reverse', async () => {
    const idFile = path('id.txt');
    const keygen = cli(['keygen', '-o', idFile]);
    assert.ok(keygen.ok, keygen.stderr);
    const publicKey = keygen.json.public_key;
    const identity = readFileSync(idFile, 'utf8');
    assert.equal(coffer.publicKey(identity), publicKey);
    const ours = coffer.generateIdentity();
    for (const sealed of [await coffer.seal(data, { recipients: [publicKey, ours.publicKey] }), coffer.sealSync(data, { recipients: [publicKey] })]) {
      const file = path('x25519.cfs');
      const out = path('x25519.out');
      writeFileSync(file, sealed);
      assert.ok(cli(['open', file, '-o', out, '-i', idFile]).ok);
      assert.ok(equalBytes(new Uint8Array(readFileSync(out)), data));
    }
    const input = path('plain2');
    writeFileSync(input, data);
    const sealedFile = path('cli-x25519.cfs');
    assert.ok(cli(['seal', input, '-o', sealedFile, '-r', ours.publicKey]).ok);
    const sealed = readFileSync(sealedFile);
    assert.ok(equalBytes(await coffer.open(sealed, { identity: ours.identity }), data));
    assert.ok(equalBytes(coffer.openSync(sealed, { identity: ours.identity }), data));
    assert.equal(await codeOf(() => coffer.open(sealed, { identity })), 'WRONG_KEY');
  });

  test('a sealed bundle verifies the same in the CLI and in Node', async () => {
    const bytes = coffer.bundle(snapshotOfDir(join(ROOT, 'examples/sample')));
    const sealed = await coffer.seal(bytes, { passphrase }, FAST);
    const file = path('bundle.cfs');
    writeFileSync(file, sealed);
    const native = cli(['verify', file], { passphrase }).json;
    const ours = await coffer.verify(sealed, { passphrase });
    assert.equal(ours.digest, native.digest);
    assert.equal(ours.documents, native.documents);
    assert.equal(ours.commits, native.commits);
  });
});
