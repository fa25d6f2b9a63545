//! Sealing and opening in pure wasm: push/finish objects over the core's
//! [`Encryptor`] and [`Decryptor`]. `sealSync`/`openSync` and the streams
//! used where WebCrypto is missing are built on these in the JS layer.

use wasm_bindgen::prelude::*;

use super::keys::{keys, recipients, seal_options};
use super::JsResult;
use crate::error::Error;
use crate::seal::{Decryptor, Encryptor, OpenLimits};

fn finished() -> JsValue {
    Error::InvalidInput("this object has already finished or failed".into()).into()
}

/// Push-style sealing in wasm: `push(plaintext)` returns the ciphertext
/// ready so far (the header first), `finish()` the rest.
#[wasm_bindgen]
pub struct Sealer {
    enc: Option<Encryptor>,
}

#[wasm_bindgen]
impl Sealer {
    /// Starts sealing to a passphrase or to public keys; `options` is the
    /// JSON of `{ metadata?, segmentSize?, kdf? }`. Runs Argon2id for a passphrase.
    #[wasm_bindgen(constructor)]
    pub fn new(passphrase: Option<String>, public_keys: Vec<String>, options: &str) -> JsResult<Sealer> {
        let recipients = recipients(passphrase, public_keys)?;
        let options = seal_options(options)?;
        Ok(Sealer { enc: Some(Encryptor::new(&recipients, &options)?) })
    }

    /// Adds plaintext; returns the ciphertext that can be emitted so far.
    pub fn push(&mut self, data: &[u8]) -> JsResult<Vec<u8>> {
        let enc = self.enc.as_mut().ok_or_else(finished)?;
        enc.push(data).map_err(|e| {
            self.enc = None;
            e.into()
        })
    }

    /// Seals the final segment; returns the remaining ciphertext.
    pub fn finish(&mut self) -> JsResult<Vec<u8>> {
        Ok(self.enc.take().ok_or_else(finished)?.finish()?)
    }
}

/// Push-style opening in wasm: `push(sealed)` returns the plaintext verified
/// so far, `finish()` checks the end of the stream and returns the rest.
#[wasm_bindgen]
pub struct Opener {
    dec: Option<Decryptor>,
}

#[wasm_bindgen]
impl Opener {
    /// Starts opening with a passphrase or an identity (text of one or more
    /// `COFFER-SECRET-KEY-1…` lines).
    #[wasm_bindgen(constructor)]
    pub fn new(passphrase: Option<String>, identity: Option<String>) -> JsResult<Opener> {
        let keys = keys(passphrase, identity)?;
        Ok(Opener { dec: Some(Decryptor::new(&keys, OpenLimits::default())) })
    }

    /// Adds sealed bytes; returns the plaintext verified so far.
    pub fn push(&mut self, data: &[u8]) -> JsResult<Vec<u8>> {
        let dec = self.dec.as_mut().ok_or_else(finished)?;
        dec.push(data).map_err(|e| {
            self.dec = None;
            e.into()
        })
    }

    /// Ends the stream: checks and returns the final segment.
    pub fn finish(&mut self) -> JsResult<Vec<u8>> {
        Ok(self.dec.take().ok_or_else(finished)?.finish()?)
    }
}
