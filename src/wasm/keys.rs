//! Keys and options as JavaScript passes them: a passphrase, public keys
//! (`coffer1…`), identities (`COFFER-SECRET-KEY-1…`, or a whole identity
//! file), and the sealing options object.

use serde::Deserialize;
use serde_json::{Map, Value};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use super::JsResult;
use crate::error::{Error, Result};
use crate::seal::{Identity, KdfParams, Key, PublicKey, Recipient, SealOptions, DEFAULT_SEGMENT_LOG2};

/// Who to seal to: exactly one of a passphrase or a non-empty list of public keys.
pub(crate) fn recipients(passphrase: Option<String>, public_keys: Vec<String>) -> Result<Vec<Recipient>> {
    let passphrase = passphrase.map(Zeroizing::new);
    match (passphrase, public_keys.is_empty()) {
        (Some(_), false) => Err(Error::InvalidInput("give a passphrase or recipients, not both".into())),
        (Some(p), true) if p.is_empty() => Err(Error::InvalidInput("empty passphrase".into())),
        (Some(p), true) => Ok(vec![Recipient::Passphrase(p)]),
        (None, true) => Err(Error::InvalidInput("no key: give { passphrase } or { recipients: [publicKey, …] }".into())),
        (None, false) => public_keys.iter().map(|k| k.parse::<PublicKey>().map(Recipient::X25519)).collect(),
    }
}

/// What opens a file: a passphrase, or the identities in `identity` (one
/// `COFFER-SECRET-KEY-1…` line or the text of an identity file).
pub(crate) fn keys(passphrase: Option<String>, identity: Option<String>) -> Result<Vec<Key>> {
    let passphrase = passphrase.map(Zeroizing::new);
    let identity = identity.map(Zeroizing::new);
    match (passphrase, identity) {
        (Some(_), Some(_)) => Err(Error::InvalidInput("give a passphrase or an identity, not both".into())),
        (Some(p), None) if p.is_empty() => Err(Error::InvalidInput("empty passphrase".into())),
        (Some(p), None) => Ok(vec![Key::Passphrase(p)]),
        (None, Some(text)) => Ok(Identity::parse_file(&text)?.into_iter().map(Key::Identity).collect()),
        (None, None) => Err(Error::InvalidInput("no key: give { passphrase } or { identity }".into())),
    }
}

/// The options object of `seal`, as JSON text (`{}` for the defaults).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsSealOptions {
    metadata: Option<Map<String, Value>>,
    segment_size: Option<u64>,
    kdf: Option<JsKdf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsKdf {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

pub(crate) fn seal_options(json: &str) -> Result<SealOptions> {
    let options: JsSealOptions = serde_json::from_slice(json.as_bytes()).map_err(|e| Error::InvalidInput(format!("seal options: {e}")))?;
    let segment_log2 = match options.segment_size {
        None => DEFAULT_SEGMENT_LOG2,
        Some(size) if size.is_power_of_two() => size.trailing_zeros() as u8,
        Some(size) => return Err(Error::InvalidInput(format!("segmentSize {size} is not a power of two"))),
    };
    let kdf = options.kdf.map_or_else(KdfParams::default, |k| KdfParams { memory_kib: k.memory_kib, iterations: k.iterations, parallelism: k.parallelism });
    Ok(SealOptions { segment_log2, kdf, metadata: options.metadata, threads: 1 })
}

/// A fresh X25519 identity: `{ identity, publicKey }`.
#[wasm_bindgen(js_name = generateIdentity)]
pub fn generate_identity() -> JsResult<js_sys::Object> {
    let identity = Identity::generate()?;
    let out = js_sys::Object::new();
    js_sys::Reflect::set(&out, &"identity".into(), &JsValue::from_str(&identity.to_secret_string()))?;
    js_sys::Reflect::set(&out, &"publicKey".into(), &JsValue::from_str(&identity.public().to_string()))?;
    Ok(out)
}

/// The public key (`coffer1…`) of an identity (or of the first one in an identity file).
#[wasm_bindgen(js_name = publicKey)]
pub fn public_key(identity: String) -> JsResult<String> {
    let identity = Zeroizing::new(identity);
    let ids = Identity::parse_file(&identity)?;
    Ok(ids.first().map(|id| id.public().to_string()).unwrap_or_default())
}
