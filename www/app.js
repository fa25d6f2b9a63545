// The coffer page: open and seal backups client-side with the wasm package.
// Files are streamed (File.stream() → sealStream/openStream), so their size
// is not limited by memory; only browsing the collections of a bundle loads
// the (decrypted) bundle into memory.
import init, * as coffer from '../pkg/coffer.js';

/** Largest bundle loaded into memory to browse its collections. */
const BROWSE_LIMIT = 512 << 20;
/** Above this size a decrypted or sealed file is written through the save-file picker when the browser has one. */
const PICKER_THRESHOLD = 1 << 30;
/** Bytes read from a file to show its header (a sealed header never exceeds 128 KiB). */
const HEADER_BYTES = 128 << 10;

/** What each error code means for the person at the keyboard. */
const MESSAGES = {
  WRONG_KEY: 'Wrong passphrase or identity: this key does not open the file.',
  CORRUPT: 'The file is damaged: part of it was altered or corrupted, so nothing more can be trusted from it.',
  TRUNCATED: 'The file is incomplete: it ends too early (an interrupted download or copy?).',
  NOT_A_BUNDLE: 'This is not a coffer file.',
  UNSUPPORTED_VERSION: 'This file was written by a newer version of coffer. Update to open it.',
  LIMIT_EXCEEDED: 'The file asks for more than this page allows (memory, size or key-derivation cost).',
  INVALID_INPUT: 'Please check what you entered.',
  IO: 'The file could not be read.',
};

const $ = (id) => document.getElementById(id);

function show(el, text) {
  el.hidden = false;
  if (text !== undefined) el.textContent = text;
}

function hide(...els) {
  for (const el of els) el.hidden = true;
}

/** Shows an error with its code; anything that is not a CofferError is shown as is. */
function showError(el, e) {
  const code = coffer.isCofferError(e) ? e.code : 'IO';
  const detail = coffer.isCofferError(e) ? e.message : String(e?.message ?? e);
  el.dataset.code = code;
  el.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = MESSAGES[code] ?? 'Something went wrong.';
  const small = document.createElement('small');
  small.textContent = ` [${code}] ${detail}`;
  el.append(strong, small);
  el.hidden = false;
}

function humanBytes(n) {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** A pass-through stream that moves a progress bar. */
function progress(bar, total) {
  let done = 0;
  bar.value = 0;
  bar.hidden = false;
  return new TransformStream({
    transform(chunk, controller) {
      done += chunk.length;
      bar.value = total > 0 ? done / total : 1;
      controller.enqueue(chunk);
    },
  });
}

/** Offers `blob` as a download. */
function download(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

/**
 * Writes a stream to a file: through the save-file picker for very large
 * files when the browser has one, else into a Blob (which the browser may
 * keep on disk) offered as a download. Returns the Blob, if one was made.
 */
async function save(readable, name, expectedSize) {
  if (expectedSize > PICKER_THRESHOLD && typeof window.showSaveFilePicker === 'function') {
    const handle = await window.showSaveFilePicker({ suggestedName: name });
    await readable.pipeTo(await handle.createWritable());
    return undefined;
  }
  const parts = [];
  await readable.pipeTo(new WritableStream({ write: (chunk) => void parts.push(chunk) }));
  const blob = new Blob(parts, { type: 'application/octet-stream' });
  download(blob, name);
  return blob;
}

// ------------------------------------------------------------------ open

let openFile;

function openKey() {
  const kind = document.querySelector('input[name="open-kind"]:checked').value;
  return kind === 'identity' ? { identity: $('open-identity').value } : { passphrase: $('open-passphrase').value };
}

function describe(info) {
  if (info.format === 'coffer-bundle') {
    return `Plain (unencrypted) bundle, ${humanBytes(info.bytes)}. Collections: ${info.toc.collections.length}, commits: ${info.toc.commits}. Content digest: ${info.toc.digest}.`;
  }
  const to = info.recipients
    .map((r) => (r.kind === 'passphrase' ? `a passphrase (Argon2id, ${r.kdf.memoryKib / 1024} MiB, ${r.kdf.iterations} passes)` : 'an X25519 public key'))
    .join(', ');
  const meta = info.metadata ? ` Public metadata: ${JSON.stringify(info.metadata)}.` : '';
  return `Sealed file (format v${info.version}), sealed to ${to}; ${humanBytes(info.segmentSize)} segments.${meta}`;
}

async function selectOpenFile(file) {
  openFile = file;
  hide($('open-message'), $('open-result'), $('browse'), $('open-progress'));
  $('open-go').disabled = true;
  try {
    const head = new Uint8Array(await file.slice(0, HEADER_BYTES).arrayBuffer());
    let info;
    try {
      info = coffer.inspect(head);
    } catch (e) {
      // A plain bundle keeps its table of contents at its end: read it whole (if it is not huge).
      if (!coffer.isCofferError(e) || file.size > BROWSE_LIMIT) throw e;
      info = coffer.inspect(new Uint8Array(await file.arrayBuffer()));
    }
    show($('open-info'), `${file.name}: ${describe(info)}`);
    $('open-info').dataset.format = info.format;
    if (info.format === 'coffer-bundle') {
      await browse(new Uint8Array(await file.arrayBuffer()));
    } else {
      $('open-go').disabled = false;
    }
  } catch (e) {
    hide($('open-info'));
    showError($('open-message'), e);
  }
}

async function decrypt() {
  const file = openFile;
  hide($('open-message'), $('open-result'), $('browse'));
  $('open-go').disabled = true;
  try {
    const name = file.name.replace(/\.cfs$/, '') === file.name ? `${file.name}.out` : file.name.replace(/\.cfs$/, '');
    const opened = file.stream().pipeThrough(progress($('open-progress'), file.size)).pipeThrough(coffer.openStream(openKey()));
    const blob = await save(opened, name, file.size);
    show($('open-result'), `Decrypted and verified: ${name}${blob ? ` (${humanBytes(blob.size)})` : ''}.`);
    if (blob && blob.size <= BROWSE_LIMIT) {
      const bytes = new Uint8Array(await blob.arrayBuffer());
      if (isBundle(bytes)) await browse(bytes);
    }
  } catch (e) {
    showError($('open-message'), e);
  } finally {
    $('open-go').disabled = false;
  }
}

/** Whether decrypted bytes are a coffer bundle (anything else is just a file). */
function isBundle(bytes) {
  try {
    return coffer.inspect(bytes).format === 'coffer-bundle';
  } catch {
    return false;
  }
}

async function browse(bytes) {
  const info = coffer.inspect(bytes);
  const rows = $('browse-rows');
  rows.replaceChildren();
  for (const c of info.toc.collections) {
    const tr = document.createElement('tr');
    tr.dataset.collection = c.name;
    for (const text of [c.name, String(c.documents), humanBytes(c.rawBytes)]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    const actions = document.createElement('td');
    const preview = document.createElement('button');
    preview.textContent = 'Preview';
    preview.className = 'link preview';
    preview.onclick = () => {
      try {
        const { documents } = coffer.readCollection(bytes, c.name);
        show($('browse-preview'), documents.slice(0, 20).map((d) => JSON.stringify(d)).join('\n') + (documents.length > 20 ? `\n… ${documents.length - 20} more` : ''));
      } catch (e) {
        showError($('open-message'), e);
      }
    };
    const ndjson = document.createElement('button');
    ndjson.textContent = 'Download NDJSON';
    ndjson.className = 'link ndjson';
    ndjson.onclick = () => {
      try {
        download(new Blob([coffer.exportCollection(bytes, c.name)], { type: 'application/x-ndjson' }), `${c.name}.ndjson`);
      } catch (e) {
        showError($('open-message'), e);
      }
    };
    actions.append(preview, ' ', ndjson);
    tr.append(actions);
    rows.append(tr);
  }
  $('browse-summary').textContent = `Collections: ${info.toc.collections.length}, commits: ${info.toc.commits}, branches: ${info.toc.branches}. Content digest: ${info.toc.digest}.`;
  hide($('browse-preview'));
  show($('browse'));
}

// ------------------------------------------------------------------ seal

function sealKey() {
  const kind = document.querySelector('input[name="seal-kind"]:checked').value;
  if (kind === 'recipients') {
    return { recipients: $('seal-recipients').value.split(/\s+/).filter(Boolean) };
  }
  return { passphrase: $('seal-passphrase').value };
}

function sealOptions() {
  const text = $('seal-metadata').value.trim();
  if (!text) return {};
  let metadata;
  try {
    metadata = JSON.parse(text);
  } catch (e) {
    throw new coffer.CofferError('INVALID_INPUT', `public metadata is not JSON: ${e.message}`);
  }
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new coffer.CofferError('INVALID_INPUT', 'public metadata must be a JSON object');
  }
  return { metadata };
}

/** Several JSON files as the CLI's directory form → a snapshot. */
async function snapshotOf(files) {
  const snapshot = { schema: null, collections: {}, history: {} };
  const collection = (name) => (snapshot.collections[name] ??= {});
  for (const file of files) {
    const text = await file.text();
    const parse = (t) => {
      try {
        return JSON.parse(t);
      } catch (e) {
        throw new coffer.CofferError('INVALID_INPUT', `${file.name}: ${e.message}`);
      }
    };
    const name = file.name;
    if (name === 'schema.json') snapshot.schema = parse(text);
    else if (name === 'history.json') snapshot.history = parse(text);
    else if (name.endsWith('.config.json')) collection(name.slice(0, -12)).config = parse(text);
    else if (name.endsWith('.ndjson')) collection(name.slice(0, -7)).documents = text.split('\n').filter((l) => l.trim()).map(parse);
    else if (name.endsWith('.json')) collection(name.slice(0, -5)).documents = parse(text);
    else throw new coffer.CofferError('INVALID_INPUT', `${name}: to bundle several files, give NAME.json, NAME.ndjson, NAME.config.json, schema.json or history.json`);
  }
  return snapshot;
}

async function sealFiles() {
  const files = [...$('seal-files').files];
  hide($('seal-message'), $('seal-result'));
  $('seal-go').disabled = true;
  try {
    const key = sealKey();
    const options = sealOptions();
    let source;
    let size;
    let name;
    if (files.length === 1) {
      [source, size, name] = [files[0].stream(), files[0].size, `${files[0].name}.cfs`];
    } else {
      const bundle = coffer.bundle(await snapshotOf(files));
      [source, size, name] = [new Blob([bundle]).stream(), bundle.length, 'backup.cfb.cfs'];
    }
    const sealed = source.pipeThrough(progress($('seal-progress'), size)).pipeThrough(coffer.sealStream(key, options));
    const blob = await save(sealed, name, size);
    show($('seal-result'), `Sealed: ${name}${blob ? ` (${humanBytes(blob.size)})` : ''}.`);
  } catch (e) {
    showError($('seal-message'), e);
  } finally {
    $('seal-go').disabled = files.length === 0;
  }
}

// ------------------------------------------------------------------ wiring

function wireDrop(label, input, onFiles) {
  input.addEventListener('change', () => input.files.length && onFiles(input.files));
  label.addEventListener('dragover', (e) => {
    e.preventDefault();
    label.classList.add('over');
  });
  label.addEventListener('dragleave', () => label.classList.remove('over'));
  label.addEventListener('drop', (e) => {
    e.preventDefault();
    label.classList.remove('over');
    if (e.dataTransfer.files.length) onFiles(e.dataTransfer.files);
  });
}

function wireKindSwitch(name, passphrase, other, onChange = () => {}) {
  for (const radio of document.querySelectorAll(`input[name="${name}"]`)) {
    radio.addEventListener('change', () => {
      const usePassphrase = radio.value === 'passphrase' && radio.checked;
      passphrase.hidden = !usePassphrase;
      other.hidden = usePassphrase;
      onChange(usePassphrase);
    });
  }
}

async function main() {
  try {
    await init();
  } catch (e) {
    show($('status'), `This browser could not load the WebAssembly module: ${e.message}`);
    return;
  }
  $('status').textContent = coffer.hasWebCrypto()
    ? 'Ready. AES-GCM runs in WebCrypto; key derivation and every check run in WebAssembly.'
    : 'Ready (without WebCrypto: everything runs in WebAssembly, more slowly).';
  document.body.dataset.ready = 'true';

  wireDrop($('open-drop'), $('open-file'), (files) => selectOpenFile(files[0]));
  wireDrop($('seal-drop'), $('seal-files'), (files) => {
    const list = [...files];
    $('seal-selection').textContent = list.length === 1 ? `${list[0].name}, ${humanBytes(list[0].size)}` : `${list.length} files to bundle: ${list.map((f) => f.name).join(', ')}`;
    $('seal-go').disabled = false;
  });
  wireKindSwitch('open-kind', $('open-passphrase'), $('open-identity'));
  wireKindSwitch('seal-kind', $('seal-passphrase'), $('seal-recipients'), (usePassphrase) => ($('keygen').hidden = usePassphrase));
  $('open-go').addEventListener('click', decrypt);
  $('seal-go').addEventListener('click', sealFiles);
  $('keygen').addEventListener('click', () => {
    const { identity, publicKey } = coffer.generateIdentity();
    show($('keygen-out'), `Public key (give it to whoever seals for you, it is now in the list above):\n${publicKey}\n\nIdentity (keep it secret; it opens what is sealed to the public key):\n${identity}`);
    $('seal-recipients').value = [$('seal-recipients').value.trim(), publicKey].filter(Boolean).join('\n');
  });
}

main();
