// Every vector of tests/vectors/ (manifest.json), each its own test case,
// through every way the package opens a file, compared with the manifest and
// with what the native CLI does with the same file and key.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import * as coffer from 'coffer';
import { cli, codeOf, collect, equalBytes, streamOf, tempDir, VECTORS } from './helpers.mjs';

const manifest = JSON.parse(readFileSync(join(VECTORS, 'manifest.json'), 'utf8'));
const scratch = tempDir();
after(scratch.cleanup);

/** Ways to get the plaintext of a vector, as a `coffer verify`-like check. */
const paths = {
  'open (WebCrypto)': (bytes, key) => coffer.open(bytes, key),
  openSync: async (bytes, key) => coffer.openSync(bytes, key),
  'openStream (WebCrypto, 1000-byte chunks)': (bytes, key) => collect(streamOf(bytes, 1000).pipeThrough(coffer.openStream(key))),
  'openStream (wasm, 1000-byte chunks)': (bytes, key) => collect(streamOf(bytes, 1000).pipeThrough(coffer.openStream(key, { webCrypto: false }))),
};

/** What the native CLI says: { code } or { plaintext }. */
function native(testCase, file) {
  const key = testCase.key ?? {};
  if (testCase.kind === 'bundle') {
    const r = cli(['verify', file]);
    return r.ok ? { plaintext: readFileSync(file) } : { code: r.json?.error?.code };
  }
  const out = join(scratch.dir, `${testCase.name}.out`);
  const args = ['open', file, '-o', out];
  if (key.identity) {
    const idFile = join(scratch.dir, `${testCase.name}.id`);
    writeFileSync(idFile, `${key.identity}\n`);
    args.push('-i', idFile);
  }
  const r = cli(args, { passphrase: key.passphrase });
  if (!r.ok) return { code: r.json?.error?.code };
  const plaintext = readFileSync(out);
  // As `coffer verify`: a bundle inside is read to the end too.
  const check = cli(['verify', out]);
  if (plaintext.subarray(0, 4).toString('latin1') === '\x89CFB' && !check.ok) return { code: check.json?.error?.code };
  return { plaintext };
}

describe('test vectors', () => {
  assert.ok(manifest.cases.length >= 20, 'the manifest lists the vectors');
  for (const testCase of manifest.cases) {
    test(`${testCase.name}: ${testCase.description} → ${testCase.expect}`, async () => {
      const file = join(VECTORS, testCase.file);
      const bytes = new Uint8Array(readFileSync(file));
      const expected = native(testCase, file);
      assert.equal(expected.code ?? 'ok', testCase.expect, 'the native CLI gives the manifest result');
      const runs = testCase.kind === 'bundle' ? { verify: async (b) => (await coffer.verify(b), b), digest: async (b) => (coffer.digest(b), b) } : paths;
      for (const [name, run] of Object.entries(runs)) {
        let plaintext;
        const result = await codeOf(async () => {
          plaintext = await run(bytes, testCase.key ?? {});
          // A bundle that came out of a sealed file is read to its end, as `coffer verify` does.
          await coffer.verify(plaintext).catch((e) => {
            if (e.code !== 'NOT_A_BUNDLE') throw e;
          });
        });
        assert.equal(result, testCase.expect, name);
        if (result === 'ok') {
          assert.equal(plaintext.length, testCase.plaintext_len, `${name}: plaintext length`);
          assert.ok(equalBytes(plaintext, expected.plaintext), `${name}: the same plaintext as the native CLI`);
        }
      }
    });
  }
});
