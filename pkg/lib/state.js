// Whether the wasm instance is ready. The Node entry (node.js) instantiates it
// synchronously on import; in browsers `await init()` (coffer.js) does.
// Also what an entry adds for its platform (node.js: the output prefault).
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

let prefault = null;

/** Set by node.js: how a large one-shot output is faulted in off the main thread (lib/prefault-node.js). */
export function setOutputPrefault(fn) {
  prefault = fn;
}

/** The function given to each one-shot call's Collector, or null (browsers). */
export function outputPrefault() {
  return prefault;
}
