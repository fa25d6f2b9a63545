//! The WebCrypto fast path: Rust does the key work and the framing, JS does
//! only the bulk AES-256-GCM of each segment with `crypto.subtle`.
//!
//! What stays here: Argon2id / X25519 unwrapping, header building, parsing,
//! key commitment and MAC ([`Encryptor`], [`Decryptor`]), the segment
//! layout (how many segments a buffer holds, which one is last), the nonce
//! of each segment, and the meaning of every failure (`CORRUPT` vs
//! `TRUNCATED`, appended data, an empty final segment). What JS does: for
//! each segment this object hands out, one `encrypt`/`decrypt` with the
//! payload key and the nonce given here, no associated data.
//!
//! When WebCrypto fails on its own (importKey refused, a segment refused
//! although it authenticates), JS redoes that segment here
//! (`sealSegment` / `openSegment`, the wasm AES-256-GCM with the same key
//! and the same nonce): the same bytes, so a stream can switch mid-way
//! without losing or repeating anything.
//!
//! The output is byte for byte what [`Encryptor`] writes: both follow
//! [`segment_nonce`] and the same "hold back at least one byte so the last
//! segment is known" rule. tests/js checks that both paths interoperate and
//! fail with the same codes on every damaged vector.

use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use super::gcm::Gcm;
use super::keys::{keys, recipients, seal_options};
use super::JsResult;
use crate::error::{Error, Result};
use crate::seal::{segment_nonce, Decryptor, Encryptor, OpenLimits, TAG_LEN};

/// Bytes of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

/// The segment layout of one stream: a unit is a plaintext segment when
/// sealing, a ciphertext segment (plaintext + tag) when opening.
pub(super) struct Framing {
    unit: usize,
    counter: u32,
    finished: bool,
}

/// Bytes of a sealed file with `plaintext` bytes: the header, then one
/// segment per `segment` bytes (at least one, the last possibly short), each
/// with its tag.
pub(super) fn sealed_len(header: u64, segment: u64, plaintext: u64) -> u64 {
    header + plaintext + TAG_LEN as u64 * plaintext.div_ceil(segment).max(1)
}

/// The inverse for a well-formed file of `sealed` bytes (for damaged ones
/// the result is meaningless, and opening fails anyway).
pub(super) fn plaintext_len(header: u64, segment: u64, sealed: u64) -> u64 {
    let body = sealed.saturating_sub(header);
    body.saturating_sub(TAG_LEN as u64 * body.div_ceil(segment + TAG_LEN as u64).max(1))
}

impl Framing {
    pub(super) fn new(unit: usize) -> Self {
        Self { unit, counter: 0, finished: false }
    }

    /// How many whole, non-final units can be processed once `buffered`
    /// bytes are waiting. At least one byte is always held back: a unit is
    /// only known not to be the last one when more data follows it.
    fn ready(&self, buffered: f64) -> u32 {
        if self.finished || !(buffered >= 0.0) {
            return 0;
        }
        let buffered = buffered as u64;
        let unit = self.unit as u64;
        if buffered <= unit {
            return 0;
        }
        u32::try_from((buffered - 1) / unit).unwrap_or(u32::MAX)
    }

    /// The nonce of the next segment (the last one if `last`).
    pub(super) fn next_nonce(&mut self, last: bool) -> Result<[u8; NONCE_LEN]> {
        if self.finished {
            return Err(Error::InvalidInput("the final segment has already been framed".into()));
        }
        // As the core: counter u32::MAX is never used.
        if self.counter == u32::MAX {
            return Err(Error::LimitExceeded("too many segments".into()));
        }
        let nonce = segment_nonce(self.counter, last);
        if last {
            self.finished = true;
        } else {
            self.counter += 1;
        }
        Ok(nonce)
    }
}

impl Framing {
    /// Whether `nonce` is one this framing has handed out, so a segment
    /// redone in wasm uses the nonce WebCrypto was given for it, never a new one.
    fn issued(&self, nonce: &[u8]) -> Result<[u8; NONCE_LEN]> {
        let (counter, last) = parse_nonce(nonce)?;
        let handed_out = if last { self.finished && counter == self.counter } else { counter < self.counter };
        if !handed_out {
            return Err(Error::InvalidInput("not a nonce this stream has handed out".into()));
        }
        Ok(segment_nonce(counter, last))
    }
}

/// Splits a nonce made by [`segment_nonce`] back into (counter, last).
fn parse_nonce(nonce: &[u8]) -> Result<(u32, bool)> {
    match nonce {
        [0, 0, 0, 0, 0, 0, 0, a, b, c, d, flag @ (0 | 1)] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), *flag == 1)),
        _ => Err(Error::InvalidInput("not a segment nonce".into())),
    }
}

/// Sealing with WebCrypto doing the segment encryption.
///
/// JS: `header()` once and write it; import `takeKey()` as a non-extractable
/// AES-GCM key (and wipe the array); then for every plaintext buffer, cut
/// `ready(buffered)` whole segments of `segmentSize` bytes, each encrypted
/// with `nextNonce(false)`; at the end, the remaining bytes (possibly none
/// when nothing was sealed) with `nextNonce(true)`.
#[wasm_bindgen]
pub struct WebSealer {
    enc: Encryptor,
    key_taken: bool,
    framing: Framing,
    /// The wasm AES-256-GCM, made on the first `sealSegment`.
    gcm: Option<Gcm>,
}

#[wasm_bindgen]
impl WebSealer {
    /// As `new Sealer(…)`: runs Argon2id for a passphrase and builds the header.
    #[wasm_bindgen(constructor)]
    pub fn new(passphrase: Option<String>, public_keys: Vec<String>, options: &str) -> JsResult<WebSealer> {
        let recipients = recipients(passphrase, public_keys)?;
        let options = seal_options(options)?;
        let enc = Encryptor::new(&recipients, &options)?;
        let framing = Framing::new(enc.segment_size());
        Ok(WebSealer { enc, key_taken: false, framing, gcm: None })
    }

    /// The header bytes (once).
    pub fn header(&mut self) -> JsResult<Vec<u8>> {
        Ok(self.enc.take_header().ok_or_else(|| Error::InvalidInput("the header was already taken".into()))?)
    }

    /// The 32-byte payload key (once). Import it and wipe the array.
    #[wasm_bindgen(js_name = takeKey)]
    pub fn take_key(&mut self) -> JsResult<Vec<u8>> {
        if std::mem::replace(&mut self.key_taken, true) {
            return Err(Error::InvalidInput("the key was already taken".into()).into());
        }
        Ok(self.enc.payload_key().to_vec())
    }

    /// Plaintext bytes per segment.
    #[wasm_bindgen(getter, js_name = segmentSize)]
    pub fn segment_size(&self) -> usize {
        self.framing.unit
    }

    /// Whole non-final segments that can be sealed with `buffered` plaintext bytes waiting.
    pub fn ready(&self, buffered: f64) -> u32 {
        self.framing.ready(buffered)
    }

    /// Bytes of the sealed file for `plaintext` bytes (header included), so
    /// a one-shot caller can allocate the output once.
    #[wasm_bindgen(js_name = sealedLength)]
    pub fn sealed_length(&self, plaintext: f64) -> f64 {
        sealed_len(self.enc.info().header_len as u64, self.framing.unit as u64, plaintext as u64) as f64
    }

    /// The nonce of the next segment.
    #[wasm_bindgen(js_name = nextNonce)]
    pub fn next_nonce(&mut self, last: bool) -> JsResult<Vec<u8>> {
        Ok(self.framing.next_nonce(last)?.to_vec())
    }

    /// Seals one segment in wasm, for when WebCrypto fails on its own:
    /// `plaintext` with a `nonce` handed out by `nextNonce` (the one
    /// WebCrypto was given for these bytes), ciphertext ‖ tag out — the
    /// bytes WebCrypto would have given.
    #[wasm_bindgen(js_name = sealSegment)]
    pub fn seal_segment(&mut self, nonce: &[u8], plaintext: &[u8]) -> JsResult<Vec<u8>> {
        let nonce = self.framing.issued(nonce)?;
        if plaintext.len() > self.framing.unit {
            return Err(Error::InvalidInput("a segment is longer than the segment size".into()).into());
        }
        let gcm = self.gcm.get_or_insert_with(|| Gcm::new(self.enc.payload_key()));
        let mut out = vec![0u8; plaintext.len() + TAG_LEN];
        gcm.seal(&nonce, plaintext, &mut out);
        Ok(out)
    }
}

/// Opening with WebCrypto doing the segment decryption.
///
/// JS: feed `pushHeader` exactly `headerNeeded()` bytes at a time until it
/// returns true (Rust parses the header, unwraps the file key, checks the
/// key commitment and the MAC); import `takeKey()`; then cut `ready(buffered)`
/// whole ciphertext segments of `unitSize` bytes, each decrypted with
/// `nextNonce(false)`; at the end `checkFinal(len)` and decrypt the rest with
/// `nextNonce(true)`, then `finalOpened(nonce, plaintextLen)`. When a
/// decryption fails, `openSegment(nonce, ciphertext)` gives the plaintext
/// (WebCrypto failed on its own) or throws what is wrong with the input. When the input ends
/// inside the header, throw `endInHeader()`.
#[wasm_bindgen]
pub struct WebOpener {
    dec: Option<Decryptor>,
    payload_key: Option<Zeroizing<[u8; 32]>>,
    key_taken: bool,
    framing: Option<Framing>,
    segment: usize,
    /// The wasm AES-256-GCM, made on the first `openSegment`.
    gcm: Option<Gcm>,
}

#[wasm_bindgen]
impl WebOpener {
    /// As `new Opener(…)`.
    #[wasm_bindgen(constructor)]
    pub fn new(passphrase: Option<String>, identity: Option<String>) -> JsResult<WebOpener> {
        let keys = keys(passphrase, identity)?;
        Ok(WebOpener { dec: Some(Decryptor::new(&keys, OpenLimits::default())), payload_key: None, key_taken: false, framing: None, segment: 0, gcm: None })
    }

    /// Header bytes still needed (0 once the header is done).
    #[wasm_bindgen(js_name = headerNeeded)]
    pub fn header_needed(&self) -> usize {
        match (&self.dec, &self.framing) {
            (Some(dec), None) => dec.header_bytes_needed(),
            _ => 0,
        }
    }

    /// Adds header bytes (at most `headerNeeded()`); true once the header is
    /// read and authenticated. Errors: `WRONG_KEY`, `CORRUPT`, `NOT_A_BUNDLE`,
    /// `UNSUPPORTED_VERSION`, `LIMIT_EXCEEDED`.
    #[wasm_bindgen(js_name = pushHeader)]
    pub fn push_header(&mut self, bytes: &[u8]) -> JsResult<bool> {
        let needed = self.header_needed();
        let dec = self.dec.as_mut().ok_or_else(|| Error::InvalidInput("the header is already read, or reading it failed".into()))?;
        if bytes.len() > needed {
            return Err(Error::InvalidInput(format!("pushHeader takes at most {needed} bytes here")).into());
        }
        if let Err(e) = dec.push(bytes) {
            self.dec = None;
            return Err(e.into());
        }
        if let Some((key, segment)) = dec.payload_key() {
            self.payload_key = Some(Zeroizing::new(*key));
            self.segment = segment;
            self.framing = Some(Framing::new(segment + TAG_LEN));
            return Ok(true);
        }
        Ok(false)
    }

    /// The error for an input that ended inside the header (`TRUNCATED`, or
    /// `NOT_A_BUNDLE` when what came is not a sealed file at all).
    #[wasm_bindgen(js_name = endInHeader)]
    pub fn end_in_header(&mut self) -> JsValue {
        match self.dec.take() {
            Some(dec) if self.framing.is_none() => dec.finish().err().unwrap_or_else(|| Error::Truncated("input ends inside the sealed header".into())).into(),
            _ => Error::InvalidInput("the header is already read".into()).into(),
        }
    }

    /// The 32-byte payload key (once, after the header). Import it and wipe the array.
    #[wasm_bindgen(js_name = takeKey)]
    pub fn take_key(&mut self) -> JsResult<Vec<u8>> {
        match &self.payload_key {
            Some(key) if !self.key_taken => {
                self.key_taken = true;
                Ok(key.to_vec())
            }
            _ => Err(Error::InvalidInput("no key to take (header not read, or key already taken)".into()).into()),
        }
    }

    /// Plaintext bytes per segment (0 before the header).
    #[wasm_bindgen(getter, js_name = segmentSize)]
    pub fn segment_size(&self) -> usize {
        self.segment
    }

    /// Bytes per ciphertext segment (0 before the header).
    #[wasm_bindgen(getter, js_name = unitSize)]
    pub fn unit_size(&self) -> usize {
        self.framing.as_ref().map_or(0, |f| f.unit)
    }

    /// Whole non-final ciphertext segments that can be opened with `buffered` bytes waiting.
    pub fn ready(&self, buffered: f64) -> u32 {
        self.framing.as_ref().map_or(0, |f| f.ready(buffered))
    }

    /// Plaintext bytes in a well-formed sealed file of `sealed` bytes (0
    /// before the header), so a one-shot caller can allocate the output once.
    #[wasm_bindgen(js_name = plaintextLength)]
    pub fn plaintext_length(&self, sealed: f64) -> f64 {
        match self.dec.as_ref().and_then(Decryptor::info) {
            Some(info) => plaintext_len(info.header_len as u64, self.segment as u64, sealed as u64) as f64,
            None => 0.0,
        }
    }

    /// The nonce of the next segment.
    #[wasm_bindgen(js_name = nextNonce)]
    pub fn next_nonce(&mut self, last: bool) -> JsResult<Vec<u8>> {
        let framing = self.framing.as_mut().ok_or_else(|| Error::InvalidInput("the header has not been read".into()))?;
        Ok(framing.next_nonce(last)?.to_vec())
    }

    /// Checks the length of what is left at the end of the input, before the
    /// final segment is decrypted.
    #[wasm_bindgen(js_name = checkFinal)]
    pub fn check_final(&self, len: usize) -> JsResult<()> {
        if len < TAG_LEN {
            return Err(Error::Truncated("input ends before the final segment".into()).into());
        }
        Ok(())
    }

    /// Checks a final segment that decrypted to `len` bytes (an empty final
    /// segment is only valid as the only one).
    #[wasm_bindgen(js_name = finalOpened)]
    pub fn final_opened(&self, nonce: &[u8], len: usize) -> JsResult<()> {
        let (counter, _) = parse_nonce(nonce)?;
        if len == 0 && counter > 0 {
            return Err(Error::Corrupt("empty final segment after a full one".into()).into());
        }
        Ok(())
    }

    /// A segment WebCrypto refused to decrypt, opened in wasm: its
    /// plaintext when it authenticates (WebCrypto failed on its own; the
    /// bytes WebCrypto would have given), else the core's diagnosis as the
    /// error (data after the final segment, input cut at a segment
    /// boundary, or damage).
    #[wasm_bindgen(js_name = openSegment)]
    pub fn open_segment(&mut self, nonce: &[u8], ciphertext: &[u8]) -> JsResult<Vec<u8>> {
        let framing = self.framing.as_ref().ok_or_else(|| Error::InvalidInput("the header has not been read".into()))?;
        let issued = framing.issued(nonce)?;
        let key = self.payload_key.as_ref().ok_or_else(|| Error::InvalidInput("the header has not been read".into()))?;
        if ciphertext.len() < TAG_LEN || ciphertext.len() > framing.unit {
            return Err(self.diagnose(nonce, ciphertext).into());
        }
        let gcm = self.gcm.get_or_insert_with(|| Gcm::new(key));
        let mut out = vec![0u8; ciphertext.len() - TAG_LEN];
        if gcm.open(&issued, ciphertext, &mut out) {
            return Ok(out);
        }
        Err(self.diagnose(nonce, ciphertext).into())
    }
}

impl WebOpener {
    fn diagnose(&self, nonce: &[u8], ciphertext: &[u8]) -> Error {
        let (counter, last) = match parse_nonce(nonce) {
            Ok(parsed) => parsed,
            Err(e) => return e,
        };
        let Some(key) = &self.payload_key else {
            return Error::InvalidInput("the header has not been read".into());
        };
        let opens_as = |last: bool| opens(key, &segment_nonce(counter, last), ciphertext);
        if !last && opens_as(true) {
            return Error::Corrupt("data follows the final segment".into());
        }
        if last && ciphertext.len() == self.segment + TAG_LEN && opens_as(false) {
            return Error::Truncated("input ends at a segment boundary: the final segment is missing".into());
        }
        if last {
            Error::Corrupt(format!("segment {counter} failed authentication (damaged or truncated)"))
        } else {
            Error::Corrupt(format!("segment {counter} failed authentication (damaged, reordered or truncated)"))
        }
    }
}

/// Whether `ciphertext` (plaintext ‖ tag) authenticates under `key` and `nonce`.
fn opens(key: &[u8; 32], nonce: &[u8; NONCE_LEN], ciphertext: &[u8]) -> bool {
    let mut scratch = Zeroizing::new(vec![0u8; ciphertext.len().saturating_sub(TAG_LEN)]);
    Gcm::new(key).open(nonce, ciphertext, &mut scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_holds_back_the_last_unit() {
        let f = Framing::new(16);
        assert_eq!([0.0, 1.0, 16.0, 17.0, 32.0, 33.0, -1.0, f64::NAN].map(|b| f.ready(b)), [0, 0, 0, 1, 1, 2, 0, 0]);
        let mut f = Framing::new(16);
        assert_eq!(f.next_nonce(false).unwrap(), segment_nonce(0, false));
        assert_eq!(f.next_nonce(true).unwrap(), segment_nonce(1, true));
        assert_eq!(f.next_nonce(true).unwrap_err().code(), "INVALID_INPUT");
        assert_eq!(f.ready(100.0), 0);
        assert_eq!(parse_nonce(&segment_nonce(7, true)).unwrap(), (7, true));
        assert!(parse_nonce(&[1; 12]).is_err());
    }

    #[test]
    fn only_handed_out_nonces_are_reused() {
        let mut f = Framing::new(16);
        assert!(f.issued(&segment_nonce(0, false)).is_err());
        f.next_nonce(false).unwrap();
        f.next_nonce(false).unwrap();
        assert_eq!(f.issued(&segment_nonce(1, false)).unwrap(), segment_nonce(1, false));
        assert!(f.issued(&segment_nonce(2, false)).is_err());
        assert!(f.issued(&segment_nonce(2, true)).is_err());
        f.next_nonce(true).unwrap();
        assert_eq!(f.issued(&segment_nonce(2, true)).unwrap(), segment_nonce(2, true));
        assert!(f.issued(&segment_nonce(1, true)).is_err());
        assert!(f.issued(&[9; 12]).is_err());
    }

    #[test]
    fn lengths_follow_the_segment_layout() {
        for n in [0u64, 1, 15, 16, 17, 32, 33, 100] {
            let sealed = sealed_len(10, 16, n);
            let segments = if n == 0 { 1 } else { n.div_ceil(16) };
            assert_eq!(sealed, 10 + n + 16 * segments, "{n}");
            assert_eq!(plaintext_len(10, 16, sealed), n, "{n}");
        }
        assert_eq!(plaintext_len(10, 16, 5), 0);
    }
}
