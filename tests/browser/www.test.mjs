// The www/ page in real headless Chromium (Debian's /usr/bin/chromium, never
// a downloaded browser), driven by playwright-core, against a static server
// on 127.0.0.1:0. Seals a file on the page and opens it again, checks the
// bytes (and that Node opens what the page sealed), the wrong-passphrase and
// truncation messages, bundling several JSON files, browsing a sealed bundle
// and exporting a collection; keeps a screenshot in tests/browser/artifacts/.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as coffer from 'coffer';
import { chromium } from 'playwright-core';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json' };
const PASSPHRASE = 'browser passphrase';

/** Serves the repository read-only (www/ imports ../pkg/). */
function serve() {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    try {
      const body = readFileSync(join(ROOT, path));
      res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function pseudoRandom(n) {
  const out = new Uint8Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

let server;
let browser;
let page;
const pageErrors = [];

before(async () => {
  server = await serve();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const context = await browser.newContext({ acceptDownloads: true });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e));
  await page.goto(`http://127.0.0.1:${server.address().port}/www/index.html`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
});

after(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page?.screenshot({ path: join(ARTIFACTS, 'www.png'), fullPage: true }).catch(() => {});
  await browser?.close();
  server?.close();
});

/** Clicks `selector` and returns the bytes of the download it starts. */
async function downloadFrom(selector) {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click(selector)]);
  return { name: download.suggestedFilename(), bytes: new Uint8Array(readFileSync(await download.path())) };
}

async function openOnPage(name, bytes) {
  await page.setInputFiles('#open-file', { name, mimeType: 'application/octet-stream', buffer: Buffer.from(bytes) });
  await page.waitForSelector('#open-info:not([hidden])');
}

async function expectMessage(code, text) {
  const message = page.locator('#open-message');
  await message.waitFor({ state: 'visible' });
  assert.equal(await message.getAttribute('data-code'), code);
  assert.match(await message.innerText(), text);
}

describe('www/ in headless Chromium', () => {
  const data = pseudoRandom(300_000);
  let sealed;

  test('the page loads the wasm package and uses WebCrypto', async () => {
    assert.match(await page.locator('#status').innerText(), /WebCrypto/);
  });

  test('seal a file on the page; Node opens it', async () => {
    await page.setInputFiles('#seal-files', { name: 'notes.bin', mimeType: 'application/octet-stream', buffer: Buffer.from(data) });
    await page.fill('#seal-passphrase', PASSPHRASE);
    await page.fill('#seal-metadata', '{"from": "browser"}');
    const download = await downloadFrom('#seal-go');
    assert.equal(download.name, 'notes.bin.cfs');
    sealed = download.bytes;
    assert.deepEqual(coffer.inspect(sealed).metadata, { from: 'browser' });
    assert.ok(Buffer.from(coffer.openSync(sealed, { passphrase: PASSPHRASE })).equals(Buffer.from(data)));
    await page.locator('#seal-result').waitFor({ state: 'visible' });
  });

  test('inspect, then the wrong passphrase gets its message', async () => {
    await openOnPage('notes.bin.cfs', sealed);
    assert.match(await page.locator('#open-info').innerText(), /sealed to a passphrase \(Argon2id, 64 MiB, 3 passes\).*"from":"browser"/s);
    await page.fill('#open-passphrase', 'not the passphrase');
    await page.click('#open-go');
    await expectMessage('WRONG_KEY', /Wrong passphrase or identity/);
  });

  test('open it again on the page: the same bytes come out', async () => {
    await page.fill('#open-passphrase', PASSPHRASE);
    const download = await downloadFrom('#open-go');
    assert.equal(download.name, 'notes.bin');
    assert.ok(Buffer.from(download.bytes).equals(Buffer.from(data)));
    assert.equal(await page.locator('#open-message').isHidden(), true);
  });

  test('a truncated download and a damaged file get their messages', async () => {
    await openOnPage('cut.cfs', sealed.subarray(0, sealed.length - 100_000));
    await page.fill('#open-passphrase', PASSPHRASE);
    await page.click('#open-go');
    await expectMessage('CORRUPT', /damaged/);
    // Cut at a segment boundary: an interrupted download.
    const multi = coffer.sealSync(pseudoRandom(40_000), { passphrase: PASSPHRASE }, { segmentSize: 16384 });
    const { headerLen, segmentSize } = coffer.inspect(multi);
    await openOnPage('cut.cfs', multi.subarray(0, headerLen + segmentSize + 16));
    await page.click('#open-go');
    await expectMessage('TRUNCATED', /incomplete/);
    await page.setInputFiles('#open-file', { name: 'photo.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('\xff\xd8\xff\xe0 not coffer') });
    await expectMessage('NOT_A_BUNDLE', /not a coffer file/);
  });

  test('several JSON files are bundled and sealed: the same bundle as in Node', async () => {
    const docs = [{ id: 'a', x: 1 }, { id: 'b', x: 2.5 }];
    const notes = ['{"text":"one"}', '{"text":"two"}'].join('\n');
    await page.setInputFiles('#seal-files', [
      { name: 'docs.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(docs)) },
      { name: 'notes.ndjson', mimeType: 'application/x-ndjson', buffer: Buffer.from(notes) },
      { name: 'schema.json', mimeType: 'application/json', buffer: Buffer.from('{"v":1}') },
    ]);
    await page.fill('#seal-metadata', '');
    const download = await downloadFrom('#seal-go');
    const bundle = coffer.openSync(download.bytes, { passphrase: PASSPHRASE });
    const expected = coffer.bundle({ schema: { v: 1 }, collections: { docs: { documents: docs }, notes: { documents: [{ text: 'one' }, { text: 'two' }] } } });
    assert.ok(Buffer.from(bundle).equals(Buffer.from(expected)));
  });

  test('a sealed bundle: decrypt, browse the collections, download one as NDJSON', async () => {
    const bundle = coffer.bundle({
      collections: { docs: { config: { dim: 2 }, documents: [{ id: 'x', v: [1, 2] }, { id: 'y', v: [3, 4] }] }, logs: { documents: ['a', 'b', 'c'] } },
      history: { commits: [{ id: 'c1' }], branches: { main: 'c1' } },
    });
    const alice = coffer.generateIdentity();
    const sealedBundle = await coffer.seal(bundle, { recipients: [alice.publicKey] });
    await openOnPage('db.cfs', sealedBundle);
    assert.match(await page.locator('#open-info').innerText(), /X25519/);
    await page.check('input[name="open-kind"][value="identity"]');
    await page.fill('#open-identity', alice.identity);
    const decrypted = await downloadFrom('#open-go');
    assert.ok(Buffer.from(decrypted.bytes).equals(Buffer.from(bundle)));
    await page.locator('#browse').waitFor({ state: 'visible' });
    assert.deepEqual(await page.locator('#browse-rows tr').evaluateAll((rows) => rows.map((r) => r.dataset.collection)), ['docs', 'logs']);
    await page.click('tr[data-collection="docs"] .preview');
    assert.match(await page.locator('#browse-preview').innerText(), /"id":"x"/);
    const ndjson = await downloadFrom('tr[data-collection="docs"] .ndjson');
    assert.equal(ndjson.name, 'docs.ndjson');
    assert.ok(Buffer.from(ndjson.bytes).equals(Buffer.from(coffer.exportCollection(bundle, 'docs'))));
  });

  test('no uncaught errors on the page', () => {
    assert.deepEqual(pageErrors.map(String), []);
  });
});
