// Node.js entry of the `coffer` package (selected by the "node" condition of
// package.json "exports"): the wasm module is instantiated synchronously on
// import, so `import { open } from 'coffer'` is all it takes.
import { readFileSync } from 'node:fs';
import { initSync as initWasmSync } from './wasm/coffer_wasm.js';
import { prefaulter } from './lib/prefault-node.js';
import { markReady, setOutputPrefault } from './lib/state.js';

initWasmSync({ module: readFileSync(new URL('./wasm/coffer_wasm_bg.wasm', import.meta.url)) });
markReady();
// seal/open of 32 MiB or more: the output's pages fault in on libuv's threadpool.
setOutputPrefault(prefaulter());

export * from './lib/api.js';

/** Already initialized on import; kept so code written for browsers runs unchanged. */
export default async function init() {}

/** Already initialized on import. */
export function initSync() {}
