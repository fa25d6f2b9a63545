//! Sealing and opening in pure wasm: push/finish objects. `sealSync`/
//! `openSync` and the streams used where WebCrypto is missing are built on
//! these in the JS layer.
//!
//! The core's [`Encryptor`] / [`Decryptor`] build and read the header
//! (Argon2id, X25519, key commitment, MAC) and give the payload key; the
//! segments are then laid out as the core does ([`Framing`]: the same
//! nonces, the same "hold back at least one byte" rule) and encrypted with
//! [`Gcm`], an AES-256-GCM tuned for wasm32 (see `gcm.rs`). tests/wasm.rs and
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
use super::webcrypto::{plaintext_len, sealed_len, Framing};
use super::JsResult;
use crate::error::{Error, Result};
use crate::seal::{segment_nonce, Decryptor, Encryptor, OpenLimits, TAG_LEN};

fn finished() -> JsValue {
    Error::InvalidInput("this object has already finished or failed".into()).into()
}

/// Copies `out` into `target` at `at`; an error if it does not fit.
fn copy_out(out: &[u8], target: &Uint8Array, at: u32) -> JsResult<()> {
    let end = (at as usize).checked_add(out.len()).filter(|&e| e <= target.length() as usize);
    let end = end.ok_or_else(|| JsValue::from(Error::InvalidInput("copyTo: the target is too small".into())))?;
    target.subarray(at, end as u32).copy_from(out);
    Ok(())
}

/// The state of a sealing stream once the header is built.
struct SealState {
    gcm: Gcm,
    framing: Framing,
    segment: usize,
    header_len: u64,
    /// The header, until it goes out with the first output.
    header: Option<Vec<u8>>,
    /// Plaintext held back: less than a segment, or a whole one that may be the last.
    pending: Vec<u8>,
}

impl SealState {
    /// Seals one segment of `plain` and appends it to `out`.
    fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<()> {
        let nonce = self.framing.next_nonce(last)?;
        let start = out.len();
        out.resize(start + plain.len() + TAG_LEN, 0);
        self.gcm.seal(&nonce, plain, &mut out[start..]);
        Ok(())
    }

    /// As the core's `Encryptor::push_into`: whole segments straight from
    /// `data`, at least one byte held back.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let seg = self.segment;
        if !self.pending.is_empty() {
            let need = seg - self.pending.len();
            if data.len() <= need {
                self.pending.extend_from_slice(data);
                return Ok(());
            }
            let mut full = std::mem::take(&mut self.pending);
            full.extend_from_slice(&data[..need]);
            data = &data[need..];
            let sealed = self.seal(&full, false, out);
            full.clear();
            self.pending = full;
            sealed?;
        }
        if data.len() > seg {
            let run = (data.len() - 1) / seg * seg;
            for plain in data[..run].chunks(seg) {
                self.seal(plain, false, out)?;
            }
            data = &data[run..];
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        self.seal(&pending, true, out)
    }
}

/// Push-style sealing in wasm: `push(plaintext)` returns the ciphertext
/// ready so far (the header first), `finish()` the rest.
#[wasm_bindgen]
pub struct Sealer {
    state: Option<SealState>,
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
        let mut enc = Encryptor::new(&recipients, &options)?;
        let segment = enc.segment_size();
        let state = SealState {
            gcm: Gcm::new(enc.payload_key()),
            framing: Framing::new(segment),
            segment,
            header_len: enc.info().header_len as u64,
            header: enc.take_header(),
            pending: Vec::new(),
        };
        Ok(Sealer { state: Some(state), out: Vec::new() })
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
        let state = self.state.as_mut().ok_or_else(finished)?;
        self.out.clear();
        if let Some(header) = state.header.take() {
            self.out.extend_from_slice(&header);
        }
        if let Err(e) = state.push(data, &mut self.out) {
            self.state = None;
            self.out.clear();
            return Err(e.into());
        }
        Ok(self.out.len() as u32)
    }

    /// As `finish`, but the ciphertext stays here (see `pushBuffered`).
    #[wasm_bindgen(js_name = finishBuffered)]
    pub fn finish_buffered(&mut self) -> JsResult<u32> {
        let mut state = self.state.take().ok_or_else(finished)?;
        self.out.clear();
        if let Some(header) = state.header.take() {
            self.out.extend_from_slice(&header);
        }
        state.finish(&mut self.out).inspect_err(|_| self.out.clear())?;
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
        self.state.as_ref().map_or(0.0, |s| sealed_len(s.header_len, s.segment as u64, plaintext as u64) as f64)
    }
}

/// The state of an opening stream once the header is authenticated.
struct OpenState {
    gcm: Gcm,
    framing: Framing,
    segment: usize,
    header_len: u64,
    /// Sealed bytes held back: less than a unit, or a whole one that may be the last.
    pending: Vec<u8>,
}

impl OpenState {
    fn unit(&self) -> usize {
        self.segment + TAG_LEN
    }

    /// Opens one non-final segment into `out`, with the core's diagnosis on failure.
    fn open(&mut self, sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let counter = self.framing.counter();
        let nonce = self.framing.next_nonce(false)?;
        let start = out.len();
        out.resize(start + sealed.len() - TAG_LEN, 0);
        if self.gcm.open(&nonce, sealed, &mut out[start..]) {
            return Ok(());
        }
        out.truncate(start);
        // Authentic as a final segment, yet more bytes follow: appended data.
        if self.opens(counter, true, sealed) {
            return Err(Error::Corrupt("data follows the final segment".into()));
        }
        Err(Error::Corrupt(format!("segment {counter} failed authentication (damaged, reordered or truncated)")))
    }

    fn opens(&self, counter: u32, last: bool, sealed: &[u8]) -> bool {
        let mut scratch = vec![0u8; sealed.len().saturating_sub(TAG_LEN)];
        self.gcm.open(&segment_nonce(counter, last), sealed, &mut scratch)
    }

    /// As the core's `Decryptor::push_into`.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let unit = self.unit();
        if !self.pending.is_empty() {
            let need = unit - self.pending.len();
            if data.len() <= need {
                self.pending.extend_from_slice(data);
                return Ok(());
            }
            let mut full = std::mem::take(&mut self.pending);
            full.extend_from_slice(&data[..need]);
            data = &data[need..];
            let opened = self.open(&full, out);
            full.clear();
            self.pending = full;
            opened?;
        }
        if data.len() > unit {
            let run = (data.len() - 1) / unit * unit;
            for sealed in data[..run].chunks(unit) {
                self.open(sealed, out)?;
            }
            data = &data[run..];
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// As the core's `Decryptor::finish`.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.len() < TAG_LEN {
            return Err(Error::Truncated("input ends before the final segment".into()));
        }
        let counter = self.framing.counter();
        let nonce = self.framing.next_nonce(true)?;
        let start = out.len();
        out.resize(start + pending.len() - TAG_LEN, 0);
        if self.gcm.open(&nonce, &pending, &mut out[start..]) {
            if out.len() == start && counter > 0 {
                return Err(Error::Corrupt("empty final segment after a full one".into()));
            }
            return Ok(());
        }
        out.truncate(start);
        if pending.len() == self.unit() && self.opens(counter, false, &pending) {
            return Err(Error::Truncated("input ends at a segment boundary: the final segment is missing".into()));
        }
        Err(Error::Corrupt(format!("segment {counter} failed authentication (damaged or truncated)")))
    }
}

/// Push-style opening in wasm: `push(sealed)` returns the plaintext verified
/// so far, `finish()` checks the end of the stream and returns the rest.
#[wasm_bindgen]
pub struct Opener {
    /// Reads the header; dropped once the payload key is known.
    header: Option<Decryptor>,
    state: Option<OpenState>,
    out: Vec<u8>,
}

#[wasm_bindgen]
impl Opener {
    /// Starts opening with a passphrase or an identity (text of one or more
    /// `COFFER-SECRET-KEY-1…` lines).
    #[wasm_bindgen(constructor)]
    pub fn new(passphrase: Option<String>, identity: Option<String>) -> JsResult<Opener> {
        let keys = keys(passphrase, identity)?;
        Ok(Opener { header: Some(Decryptor::new(&keys, OpenLimits::default())), state: None, out: Vec::new() })
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
        self.out.clear();
        let result = self.push_inner(data);
        if let Err(e) = result {
            self.header = None;
            self.state = None;
            self.out.clear();
            return Err(e.into());
        }
        Ok(self.out.len() as u32)
    }

    /// As `finish`, but the plaintext stays here (see `pushBuffered`).
    #[wasm_bindgen(js_name = finishBuffered)]
    pub fn finish_buffered(&mut self) -> JsResult<u32> {
        self.out.clear();
        if let Some(dec) = self.header.take() {
            // The input ended inside the header: the core explains how.
            return Err(dec.finish().err().unwrap_or_else(|| Error::Truncated("input ends inside the sealed header".into())).into());
        }
        let mut state = self.state.take().ok_or_else(finished)?;
        state.finish(&mut self.out).inspect_err(|_| self.out.clear())?;
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
        self.state.as_ref().map_or(0.0, |s| plaintext_len(s.header_len, s.segment as u64, sealed as u64) as f64)
    }
}

impl Opener {
    fn push_inner(&mut self, mut data: &[u8]) -> Result<()> {
        if let Some(dec) = &mut self.header {
            // Exactly the header bytes go to the core.
            while dec.payload_key().is_none() {
                if data.is_empty() {
                    return Ok(());
                }
                let n = dec.header_bytes_needed().clamp(1, data.len());
                dec.push_into(&data[..n], &mut self.out)?;
                data = &data[n..];
            }
            let Some((key, segment)) = dec.payload_key() else {
                return Ok(());
            };
            let header_len = dec.info().map_or(0, |i| i.header_len as u64);
            self.state = Some(OpenState { gcm: Gcm::new(key), framing: Framing::new(segment + TAG_LEN), segment, header_len, pending: Vec::new() });
            self.header = None;
        }
        match &mut self.state {
            Some(state) => state.push(data, &mut self.out),
            None => Err(Error::InvalidInput("this object has already finished or failed".into())),
        }
    }
}
