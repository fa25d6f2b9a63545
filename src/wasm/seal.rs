//! Sealing and opening in pure wasm: push/finish objects. `sealSync`/
//! `openSync` and the streams used where WebCrypto is missing are built on
//! these in the JS layer.
//!
//! They are the core's [`Encryptor`] / [`Decryptor`] (header, Argon2id,
//! X25519, key commitment, MAC, segment framing, every error) with the
//! segments sealed by [`Gcm`], an AES-256-GCM tuned for wasm32 (see
//! `gcm.rs`), plugged in as the core's [`SegmentCipher`]. tests/wasm.rs and
//! tests/js check that the bytes and every error code are the core's.
//!
//! Output is collected in a buffer owned by the object, reused from call to
//! call: `push`/`finish` return it as a new array (streams), or, for the
//! one-shot functions, `pushBuffered`/`finishBuffered` leave it there and
//! `copyTo` writes it straight into the caller's final `Uint8Array` (one
//! copy, no intermediate JS array).

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

use super::gcm::Gcm;
use super::keys::{keys, recipients, seal_options};
use super::webcrypto::{plaintext_len, sealed_len};
use super::JsResult;
use crate::error::{Error, Result};
use crate::seal::{Decryptor, Encryptor, OpenLimits, OsRandom, SegmentCipher};

fn finished() -> JsValue {
    Error::InvalidInput("this object has already finished or failed".into()).into()
}

impl SegmentCipher for Gcm {
    fn with_key(key: &[u8; 32]) -> Self {
        Gcm::new(key)
    }

    fn seal(&self, nonce: &[u8; 12], plain: &[u8], out: &mut [u8]) -> Result<()> {
        if out.len() != plain.len() + crate::seal::TAG_LEN {
            return Err(Error::InvalidInput("segment encryption failed".into()));
        }
        Gcm::seal(self, nonce, plain, out);
        Ok(())
    }

    fn open(&self, nonce: &[u8; 12], sealed: &[u8], out: &mut [u8]) -> bool {
        sealed.len().checked_sub(crate::seal::TAG_LEN) == Some(out.len()) && Gcm::open(self, nonce, sealed, out)
    }
}

/// Copies `out` into `target` at `at`; an error if it does not fit.
fn copy_out(out: &[u8], target: &Uint8Array, at: u32) -> JsResult<()> {
    let end = (at as usize).checked_add(out.len()).filter(|&e| e <= target.length() as usize);
    let end = end.ok_or_else(|| JsValue::from(Error::InvalidInput("copyTo: the target is too small".into())))?;
    target.subarray(at, end as u32).copy_from(out);
    Ok(())
}

/// Push-style sealing in wasm: `push(plaintext)` returns the ciphertext
/// ready so far (the header first), `finish()` the rest.
#[wasm_bindgen]
pub struct Sealer {
    enc: Option<Encryptor<Gcm>>,
    header_len: u64,
    segment: u64,
    out: Vec<u8>,
}

#[wasm_bindgen]
impl Sealer {
    /// Starts sealing to a passphrase or to public keys; `options` is the
    /// JSON of `{ metadata?, segmentSize?, kdf? }`. Runs Argon2id for a passphrase.
    #[wasm_bindgen(constructor)]
    pub fn new(passphrase: Option<String>, public_keys: Vec<String>, options: &str) -> JsResult<Sealer> {
        let recipients = recipients(passphrase, public_keys)?;
        let options = seal_options(options)?;
        let enc = Encryptor::<Gcm>::with_cipher(&recipients, &options, &mut OsRandom)?;
        let (header_len, segment) = (enc.info().header_len as u64, enc.segment_size() as u64);
        Ok(Sealer { enc: Some(enc), header_len, segment, out: Vec::new() })
    }

    /// Adds plaintext; returns the ciphertext that can be emitted so far.
    pub fn push(&mut self, data: &[u8]) -> JsResult<Vec<u8>> {
        self.push_buffered(data)?;
        Ok(std::mem::take(&mut self.out))
    }

    /// Seals the final segment; returns the remaining ciphertext.
    pub fn finish(&mut self) -> JsResult<Vec<u8>> {
        self.finish_buffered()?;
        Ok(std::mem::take(&mut self.out))
    }

    /// As `push`, but the ciphertext stays here: returns its length, for
    /// `copyTo` or `take` (it is dropped by the next push).
    #[wasm_bindgen(js_name = pushBuffered)]
    pub fn push_buffered(&mut self, data: &[u8]) -> JsResult<u32> {
        let enc = self.enc.as_mut().ok_or_else(finished)?;
        self.out.clear();
        if let Err(e) = enc.push_into(data, &mut self.out) {
            self.enc = None;
            return Err(e.into());
        }
        Ok(self.out.len() as u32)
    }

    /// As `finish`, but the ciphertext stays here (see `pushBuffered`).
    #[wasm_bindgen(js_name = finishBuffered)]
    pub fn finish_buffered(&mut self) -> JsResult<u32> {
        let enc = self.enc.take().ok_or_else(finished)?;
        self.out.clear();
        enc.finish_into(&mut self.out)?;
        Ok(self.out.len() as u32)
    }

    /// Copies the buffered output into `target` at byte offset `at`.
    #[wasm_bindgen(js_name = copyTo)]
    pub fn copy_to(&self, target: &Uint8Array, at: u32) -> JsResult<()> {
        copy_out(&self.out, target, at)
    }

    /// The buffered output as a new array.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes of the sealed file for `plaintext` bytes (header included).
    #[wasm_bindgen(js_name = outputLength)]
    pub fn output_length(&self, plaintext: f64) -> f64 {
        if self.enc.is_none() {
            return 0.0;
        }
        sealed_len(self.header_len, self.segment, plaintext as u64) as f64
    }
}

/// Push-style opening in wasm: `push(sealed)` returns the plaintext verified
/// so far, `finish()` checks the end of the stream and returns the rest.
#[wasm_bindgen]
pub struct Opener {
    dec: Option<Decryptor<Gcm>>,
    out: Vec<u8>,
}

#[wasm_bindgen]
impl Opener {
    /// Starts opening with a passphrase or an identity (text of one or more
    /// `COFFER-SECRET-KEY-1…` lines).
    #[wasm_bindgen(constructor)]
    pub fn new(passphrase: Option<String>, identity: Option<String>) -> JsResult<Opener> {
        let keys = keys(passphrase, identity)?;
        Ok(Opener { dec: Some(Decryptor::<Gcm>::with_cipher(&keys, OpenLimits::default())), out: Vec::new() })
    }

    /// Adds sealed bytes; returns the plaintext verified so far.
    pub fn push(&mut self, data: &[u8]) -> JsResult<Vec<u8>> {
        self.push_buffered(data)?;
        Ok(std::mem::take(&mut self.out))
    }

    /// Ends the stream: checks and returns the final segment.
    pub fn finish(&mut self) -> JsResult<Vec<u8>> {
        self.finish_buffered()?;
        Ok(std::mem::take(&mut self.out))
    }

    /// As `push`, but the plaintext stays here: returns its length, for
    /// `copyTo` or `take` (it is dropped by the next push).
    #[wasm_bindgen(js_name = pushBuffered)]
    pub fn push_buffered(&mut self, data: &[u8]) -> JsResult<u32> {
        let dec = self.dec.as_mut().ok_or_else(finished)?;
        self.out.clear();
        if let Err(e) = dec.push_into(data, &mut self.out) {
            self.dec = None;
            return Err(e.into());
        }
        Ok(self.out.len() as u32)
    }

    /// As `finish`, but the plaintext stays here (see `pushBuffered`).
    #[wasm_bindgen(js_name = finishBuffered)]
    pub fn finish_buffered(&mut self) -> JsResult<u32> {
        let dec = self.dec.take().ok_or_else(finished)?;
        self.out = dec.finish()?;
        Ok(self.out.len() as u32)
    }

    /// Copies the buffered output into `target` at byte offset `at`.
    #[wasm_bindgen(js_name = copyTo)]
    pub fn copy_to(&self, target: &Uint8Array, at: u32) -> JsResult<()> {
        copy_out(&self.out, target, at)
    }

    /// The buffered output as a new array.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Plaintext bytes in a well-formed sealed file of `sealed` bytes, once
    /// the header has been read (0 before).
    #[wasm_bindgen(js_name = outputLength)]
    pub fn output_length(&self, sealed: f64) -> f64 {
        let Some(dec) = &self.dec else { return 0.0 };
        match (dec.info(), dec.payload_key()) {
            (Some(info), Some((_, segment))) => plaintext_len(info.header_len as u64, segment as u64, sealed as u64) as f64,
            _ => 0.0,
        }
    }
}
