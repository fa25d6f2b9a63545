// Browser (and bundler) entry of the `coffer` package:
//
//   import init, { open } from 'coffer';   // or './pkg/coffer.js'
//   await init();
//
// Node.js resolves the package to node.js instead, which needs no init().
import initWasm, { initSync as initWasmSync } from './wasm/coffer_wasm.js';
import { markReady } from './lib/state.js';

export * from './lib/api.js';

let loading;

/**
 * Loads the wasm module (from `wasm/coffer_wasm_bg.wasm` next to this file,
 * or from `input`: a URL, a Response, bytes or a WebAssembly.Module).
 * Safe to call more than once.
 */
export default function init(input) {
  loading ??= initWasm(input === undefined ? undefined : { module_or_path: input }).then(
    () => markReady(),
    (e) => {
      loading = undefined;
      throw e;
    },
  );
  return loading;
}

/** Instantiates synchronously from the module's bytes or a WebAssembly.Module. */
export function initSync(module) {
  initWasmSync({ module });
  markReady();
}
