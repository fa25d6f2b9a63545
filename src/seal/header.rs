//! The sealed header: encoding, bounded parsing, authentication.

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::keys::{FileKey, KEY_LEN, SALT_LEN, WRAPPED_LEN};
use super::{KdfParams, OpenLimits, MAGIC, VERSION};
use crate::error::{Error, Result};

/// Magic, version, flags, header length.
pub const PREFIX_LEN: usize = 14;
/// Largest header a reader accepts.
pub const MAX_HEADER: usize = 128 * 1024;
/// Largest public metadata (canonical JSON object), in bytes.
pub const MAX_METADATA: usize = 64 * 1024;
/// Most recipients in one header.
pub const MAX_RECIPIENTS: usize = 64;
/// Smallest and largest segment sizes, as powers of two (16 KiB .. 16 MiB).
pub const MIN_SEGMENT_LOG2: u8 = 14;
pub const MAX_SEGMENT_LOG2: u8 = 24;
/// Payload nonce length (HKDF salt of the payload key).
pub const NONCE_LEN: usize = 16;
/// Key commitment and MAC lengths.
pub const COMMITMENT_LEN: usize = 32;
pub const MAC_LEN: usize = 32;

const KIND_PASSPHRASE: u8 = 1;
const KIND_X25519: u8 = 2;
const PASSPHRASE_BODY: usize = SALT_LEN + 12 + WRAPPED_LEN;
const X25519_BODY: usize = KEY_LEN + WRAPPED_LEN;

pub(crate) const INFO_PAYLOAD: &[u8] = b"coffer/v1 payload";
const INFO_MAC: &[u8] = b"coffer/v1 header mac";
const INFO_COMMITMENT: &[u8] = b"coffer/v1 key commitment";

/// One wrapped copy of the file key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Stanza {
    Passphrase { salt: [u8; SALT_LEN], kdf: KdfParams, wrapped: [u8; WRAPPED_LEN] },
    X25519 { ephemeral: [u8; KEY_LEN], wrapped: [u8; WRAPPED_LEN] },
}

/// A parsed header. Everything in it is authenticated by `mac` once the file
/// key is known; before that, only its bounds have been checked.
#[derive(Clone)]
pub(crate) struct Header {
    pub segment_log2: u8,
    pub nonce: [u8; NONCE_LEN],
    pub stanzas: Vec<Stanza>,
    /// Canonical JSON object bytes, or empty.
    pub metadata: Vec<u8>,
    pub commitment: [u8; COMMITMENT_LEN],
    pub mac: [u8; MAC_LEN],
    /// The encoded header up to (not including) the MAC.
    pub authenticated: Vec<u8>,
}

/// What a header tells without any key (`coffer inspect`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderInfo {
    /// Format name: "coffer-sealed".
    pub format: &'static str,
    /// Format version.
    pub version: u8,
    /// Header length in bytes (the payload starts there).
    pub header_len: usize,
    /// Plaintext bytes per segment.
    pub segment_size: usize,
    /// The recipients' kinds (and KDF parameters for a passphrase).
    pub recipients: Vec<RecipientInfo>,
    /// Public metadata, if any (authenticated, not encrypted).
    pub metadata: Option<Map<String, Value>>,
}

/// One recipient as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecipientInfo {
    /// Argon2id passphrase.
    Passphrase {
        /// KDF parameters.
        kdf: KdfParams,
    },
    /// X25519 public key (which one is not recorded).
    X25519,
}

impl Header {
    pub fn segment_size(&self) -> usize {
        1 << self.segment_log2
    }

    /// Encodes a header for `key`, computing commitment and MAC.
    pub fn build(segment_log2: u8, nonce: [u8; NONCE_LEN], stanzas: Vec<Stanza>, metadata: Vec<u8>, key: &FileKey) -> Result<Self> {
        let mut out = Vec::with_capacity(256 + metadata.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&[0; 4]); // header length, patched below
        out.push(segment_log2);
        out.extend_from_slice(&nonce);
        out.push(stanzas.len() as u8);
        for stanza in &stanzas {
            match stanza {
                Stanza::Passphrase { salt, kdf, wrapped } => {
                    out.push(KIND_PASSPHRASE);
                    out.extend_from_slice(salt);
                    out.extend_from_slice(&kdf.memory_kib.to_le_bytes());
                    out.extend_from_slice(&kdf.iterations.to_le_bytes());
                    out.extend_from_slice(&kdf.parallelism.to_le_bytes());
                    out.extend_from_slice(wrapped);
                }
                Stanza::X25519 { ephemeral, wrapped } => {
                    out.push(KIND_X25519);
                    out.extend_from_slice(ephemeral);
                    out.extend_from_slice(wrapped);
                }
            }
        }
        out.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
        out.extend_from_slice(&metadata);
        let commitment = commitment(key, &nonce);
        out.extend_from_slice(&commitment);
        let total = out.len() + MAC_LEN;
        if total > MAX_HEADER {
            return Err(Error::limit(format!("header of {total} bytes exceeds {MAX_HEADER}")));
        }
        out[10..14].copy_from_slice(&(total as u32).to_le_bytes());
        let mac = mac(key, &out);
        Ok(Self { segment_log2, nonce, stanzas, metadata, commitment, mac, authenticated: out })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.authenticated.clone();
        out.extend_from_slice(&self.mac);
        out
    }

    /// Reads the fixed prefix; returns the total header length. Needs
    /// [`PREFIX_LEN`] bytes (fewer → `TRUNCATED`, after the magic check).
    pub fn total_len(prefix: &[u8]) -> Result<usize> {
        let n = prefix.len().min(MAGIC.len());
        if prefix[..n] != MAGIC[..n] {
            return Err(Error::NotABundle("bad magic (not a coffer sealed file)".into()));
        }
        if prefix.len() < PREFIX_LEN {
            return Err(Error::truncated("input ends inside the sealed header"));
        }
        if prefix[8] != VERSION {
            return Err(Error::UnsupportedVersion(format!("sealed format version {}; this build reads version {VERSION}", prefix[8])));
        }
        if prefix[9] != 0 {
            return Err(Error::UnsupportedVersion(format!("sealed header flags {:#04x} are not understood", prefix[9])));
        }
        let len = u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]) as usize;
        if len > MAX_HEADER {
            return Err(Error::limit(format!("header of {len} bytes exceeds {MAX_HEADER}")));
        }
        if len < PREFIX_LEN + 1 + NONCE_LEN + 1 + 4 + COMMITMENT_LEN + MAC_LEN {
            return Err(Error::corrupt("header length too small"));
        }
        Ok(len)
    }

    /// Parses a complete header (exactly `total_len` bytes), enforcing every
    /// bound and `limits` before any key derivation happens.
    pub fn parse(bytes: &[u8], limits: &OpenLimits) -> Result<Self> {
        let total = Self::total_len(bytes)?;
        if bytes.len() != total {
            return Err(Error::truncated("input ends inside the sealed header"));
        }
        let mut cur = Cursor { buf: &bytes[..total - MAC_LEN], pos: PREFIX_LEN };
        let segment_log2 = cur.u8()?;
        if !(MIN_SEGMENT_LOG2..=MAX_SEGMENT_LOG2).contains(&segment_log2) {
            return Err(Error::corrupt(format!("segment size 2^{segment_log2} is outside 2^{MIN_SEGMENT_LOG2}..2^{MAX_SEGMENT_LOG2}")));
        }
        if (1usize << segment_log2) > limits.max_segment_size {
            return Err(Error::limit(format!("segment size 2^{segment_log2} exceeds this reader's limit")));
        }
        let nonce = cur.array::<NONCE_LEN>()?;
        let count = cur.u8()? as usize;
        if count == 0 || count > MAX_RECIPIENTS {
            return Err(Error::corrupt(format!("{count} recipients; 1..={MAX_RECIPIENTS} are allowed")));
        }
        let mut stanzas = Vec::with_capacity(count);
        for _ in 0..count {
            let stanza = match cur.u8()? {
                KIND_PASSPHRASE => {
                    let body = cur.take(PASSPHRASE_BODY)?;
                    let mut c = Cursor { buf: body, pos: 0 };
                    let salt = c.array::<SALT_LEN>()?;
                    let kdf = KdfParams { memory_kib: c.u32()?, iterations: c.u32()?, parallelism: c.u32()? };
                    kdf.check(limits)?;
                    Stanza::Passphrase { salt, kdf, wrapped: c.array()? }
                }
                KIND_X25519 => {
                    let body = cur.take(X25519_BODY)?;
                    let mut c = Cursor { buf: body, pos: 0 };
                    Stanza::X25519 { ephemeral: c.array()?, wrapped: c.array()? }
                }
                other => return Err(Error::UnsupportedVersion(format!("recipient kind {other} is not understood"))),
            };
            stanzas.push(stanza);
        }
        if stanzas.len() > 1 && stanzas.iter().any(|s| matches!(s, Stanza::Passphrase { .. })) {
            return Err(Error::corrupt("a passphrase recipient must stand alone"));
        }
        let metadata_len = cur.u32()? as usize;
        if metadata_len > MAX_METADATA {
            return Err(Error::limit(format!("metadata of {metadata_len} bytes exceeds {MAX_METADATA}")));
        }
        let metadata = cur.take(metadata_len)?.to_vec();
        if !metadata.is_empty() {
            match crate::canonical::parse(&metadata) {
                Ok(Value::Object(_)) => {}
                _ => return Err(Error::corrupt("public metadata is not a JSON object")),
            }
        }
        let commitment = cur.array::<COMMITMENT_LEN>()?;
        if cur.pos != cur.buf.len() {
            return Err(Error::corrupt("header length does not match its content"));
        }
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&bytes[total - MAC_LEN..total]);
        Ok(Self { segment_log2, nonce, stanzas, metadata, commitment, mac, authenticated: bytes[..total - MAC_LEN].to_vec() })
    }

    /// Checks key commitment then MAC for an unwrapped file key.
    pub fn verify(&self, key: &FileKey) -> Result<()> {
        if !bool::from(commitment(key, &self.nonce).ct_eq(&self.commitment)) {
            return Err(Error::corrupt("key commitment does not match: the header was altered"));
        }
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key.derive(&[], INFO_MAC).as_ref()).map_err(|_| Error::corrupt("mac key"))?;
        m.update(&self.authenticated);
        m.verify_slice(&self.mac).map_err(|_| Error::corrupt("header authentication failed: the header was altered"))
    }

    pub fn payload_key(&self, key: &FileKey) -> Zeroizing<[u8; KEY_LEN]> {
        key.derive(&self.nonce, INFO_PAYLOAD)
    }

    pub fn info(&self) -> HeaderInfo {
        HeaderInfo {
            format: "coffer-sealed",
            version: VERSION,
            header_len: self.authenticated.len() + MAC_LEN,
            segment_size: self.segment_size(),
            recipients: self
                .stanzas
                .iter()
                .map(|s| match s {
                    Stanza::Passphrase { kdf, .. } => RecipientInfo::Passphrase { kdf: kdf.clone() },
                    Stanza::X25519 { .. } => RecipientInfo::X25519,
                })
                .collect(),
            metadata: match crate::canonical::parse(&self.metadata) {
                Ok(Value::Object(map)) if !self.metadata.is_empty() => Some(map),
                _ => None,
            },
        }
    }
}

fn commitment(key: &FileKey, nonce: &[u8; NONCE_LEN]) -> [u8; COMMITMENT_LEN] {
    *key.derive(nonce, INFO_COMMITMENT)
}

fn mac(key: &FileKey, authenticated: &[u8]) -> [u8; MAC_LEN] {
    let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(key.derive(&[], INFO_MAC).as_ref()) else {
        return [0; MAC_LEN]; // unreachable: HMAC takes keys of any length
    };
    m.update(authenticated);
    m.finalize().into_bytes().into()
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() - self.pos {
            return Err(Error::corrupt("header field runs past the header length"));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}
