// Whether the wasm instance is ready. The Node entry (node.js) instantiates it
// synchronously on import; in browsers `await init()` (coffer.js) does.
import { invalid } from './errors.js';

let ready = false;

export function markReady() {
  ready = true;
}

export function ensureReady() {
  if (!ready) {
    throw invalid('coffer is not initialized: `await init()` first (browsers), or import the package from Node');
  }
}
