// CofferError: the one error type of the package. Rust throws a JS Error
// named "CofferError" with a `code` (src/wasm/mod.rs); this module gives it
// the class below so `instanceof CofferError` works, and makes the errors the
// JS layer raises itself (bad arguments) of the same class.

/** The stable error codes, the same in Rust, the CLI, this package and the HTTP API. */
export const ERROR_CODES = Object.freeze([
  'NOT_A_BUNDLE',
  'UNSUPPORTED_VERSION',
  'WRONG_KEY',
  'CORRUPT',
  'TRUNCATED',
  'LIMIT_EXCEEDED',
  'INVALID_INPUT',
  'IO',
]);

export class CofferError extends Error {
  /**
   * @param {string} code one of ERROR_CODES
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.code = code;
  }
}
Object.defineProperty(CofferError.prototype, 'name', { value: 'CofferError', writable: true, configurable: true });

/** True when `e` is a CofferError (optionally with the given code). */
export function isCofferError(e, code) {
  return e instanceof CofferError && (code === undefined || e.code === code);
}

/** An INVALID_INPUT error raised by the JS layer. */
export function invalid(message) {
  return new CofferError('INVALID_INPUT', message);
}

/** Gives an error thrown by the wasm layer the CofferError class; anything else is returned unchanged. */
export function adopt(e) {
  if (e instanceof CofferError) return e;
  if (e instanceof Error && e.name === 'CofferError' && typeof e.code === 'string') {
    Object.setPrototypeOf(e, CofferError.prototype);
    return e;
  }
  return e;
}

/** Runs `fn`, rethrowing wasm errors as CofferError. */
export function call(fn) {
  try {
    return fn();
  } catch (e) {
    throw adopt(e);
  }
}
