//! JavaScript bindings (feature `wasm`): the only place with `#[wasm_bindgen]`.
//!
//! This is a thin adapter over the core. The functions and classes here are
//! the *raw* layer; the package's public API (camelCase functions, promises,
//! `TransformStream`s, the WebCrypto fast path, the `CofferError` class and
//! the hand-written TypeScript declarations) lives in `pkg/lib/*.js` and
//! `pkg/coffer.d.ts`, which call into this layer.
//!
//! Conventions:
//! - bytes cross the boundary as `&[u8]` in and `Vec<u8>` out (copies, never
//!   views into wasm memory); large data goes through the push/finish classes
//!   ([`Sealer`], [`Opener`], [`WebSealer`], [`WebOpener`]) so wasm memory
//!   stays at a few segments whatever the input size;
//! - structured results cross as JSON text (the JS layer parses it), so no
//!   extra serialization crate is linked;
//! - every error is a JS `Error` whose `name` is `"CofferError"` and whose
//!   `code` is the core's [`Error::code`](crate::Error::code); the JS layer
//!   gives it the `CofferError` prototype;
//! - nothing here panics on input: a panic would abort the instance.

mod bundle;
mod fixslice;
mod gcm;
mod keys;
mod seal;
mod webcrypto;

pub use bundle::{digest, export_collection, file_kind, inspect, read_collection, unbundle, verify_plaintext, BundleBuilder};
#[cfg(feature = "bench")]
pub use gcm::gcm_reference;
pub use keys::{generate_identity, public_key};
pub use seal::{Opener, Sealer};
pub use webcrypto::{WebOpener, WebSealer};

use wasm_bindgen::prelude::*;

use crate::error::Error;

/// The name every error thrown by this package carries.
pub const ERROR_NAME: &str = "CofferError";

/// Result of a raw binding: the error is the JS `Error` to throw.
pub type JsResult<T> = std::result::Result<T, JsValue>;

impl From<Error> for JsValue {
    /// A JS `Error` with `name = "CofferError"`, `code` = the core's code and
    /// the core's message.
    fn from(e: Error) -> Self {
        let err = js_sys::Error::new(&e.to_string());
        err.set_name(ERROR_NAME);
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(e.code()));
        err.into()
    }
}

/// The stable error codes, in the core's order (for the JS layer and its tests).
#[wasm_bindgen(js_name = errorCodes)]
pub fn error_codes() -> Vec<String> {
    Error::CODES.iter().map(|c| c.to_string()).collect()
}

/// Turns a JSON value into text for the JS layer (serde_json never fails on a `Value`).
pub(crate) fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}
