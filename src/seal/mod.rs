//! Sealing: the encrypted, authenticated layer of a coffer backup.
//!
//! ```text
//! sealed  = header segment*
//! header  = MAGIC(8) version:u8 flags:u8 header_len:u32le segment_log2:u8
//!           nonce[16] count:u8 stanza{count} metadata_len:u32le metadata
//!           commitment[32] mac[32]
//! segment = AES-256-GCM(payload_key, nonce = 0^7 ‖ counter:u32be ‖ last:u8, plaintext)
//! ```
//!
//! A fresh random file key per sealing is wrapped once per recipient
//! (Argon2id passphrase, or X25519 public keys). Subkeys come from the file
//! key by HKDF-SHA256: the payload key (salted with the header nonce), the
//! header MAC key, and a 32-byte key commitment checked before any segment is
//! decrypted. The payload is STREAM (the `aead-stream` crate's BE32 flavour)
//! over fixed-size segments: truncation, reordering, dropped or appended
//! segments are all detected, and no plaintext is released before its tag
//! verifies. The normative description is docs/FORMAT.md §4.

mod header;
mod kdf;
mod keys;
mod stream;

pub use header::{HeaderInfo, RecipientInfo, MAX_HEADER, MAX_METADATA, MAX_RECIPIENTS, PREFIX_LEN};
pub use kdf::{kdf_memory_kept_bytes, kdf_memory_uses, keep_kdf_memory, release_kdf_memory};
pub use keys::{Identity, PublicKey};
pub use stream::{segment_nonce, AesGcmSegments, Decryptor, Encryptor, OpenReader, SealWriter, SeekReader, SegmentCipher};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// First 8 bytes of every sealed file (PNG-style, like the bundle's).
pub const MAGIC: [u8; 8] = *b"\x89CFS\r\n\x1a\n";
/// The only sealed format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the AES-GCM tag after each segment.
pub const TAG_LEN: usize = 16;
/// Default segment size: 1 MiB of plaintext (2^20).
pub const DEFAULT_SEGMENT_LOG2: u8 = 20;

/// Argon2id parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: ≈130 ms native, ≈170 ms in wasm here.
    fn default() -> Self {
        Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

impl KdfParams {
    /// Checks the parameters against a reader's limits and Argon2's own rules.
    pub fn check(&self, limits: &OpenLimits) -> Result<()> {
        if self.memory_kib > limits.max_kdf_memory_kib || self.iterations > limits.max_kdf_iterations || self.parallelism > limits.max_kdf_parallelism {
            return Err(Error::limit(format!(
                "Argon2id parameters m={} KiB t={} p={} exceed this reader's limits (m≤{} t≤{} p≤{})",
                self.memory_kib, self.iterations, self.parallelism, limits.max_kdf_memory_kib, limits.max_kdf_iterations, limits.max_kdf_parallelism
            )));
        }
        if self.iterations == 0 || self.parallelism == 0 || self.memory_kib < 8 * self.parallelism {
            return Err(Error::corrupt("Argon2id parameters are below Argon2's minimums"));
        }
        Ok(())
    }
}

/// What an opener accepts. The defaults let every file this build writes
/// with default options open, and nothing far beyond.
#[derive(Debug, Clone)]
pub struct OpenLimits {
    /// Largest Argon2id memory, KiB (default 1 GiB).
    pub max_kdf_memory_kib: u32,
    /// Largest Argon2id pass count (default 10).
    pub max_kdf_iterations: u32,
    /// Largest Argon2id lane count (default 16).
    pub max_kdf_parallelism: u32,
    /// Largest segment, bytes (default 16 MiB, the format's maximum).
    pub max_segment_size: usize,
}

impl Default for OpenLimits {
    fn default() -> Self {
        Self { max_kdf_memory_kib: 1024 * 1024, max_kdf_iterations: 10, max_kdf_parallelism: 16, max_segment_size: 1 << header::MAX_SEGMENT_LOG2 }
    }
}

/// Who a file is sealed to.
pub enum Recipient {
    /// A passphrase (stands alone: no other recipient may be added).
    Passphrase(Zeroizing<String>),
    /// An X25519 public key.
    X25519(PublicKey),
}

impl Recipient {
    /// A passphrase recipient.
    pub fn passphrase(p: impl Into<String>) -> Self {
        Recipient::Passphrase(Zeroizing::new(p.into()))
    }
}

/// What opens a file.
pub enum Key {
    /// A passphrase.
    Passphrase(Zeroizing<String>),
    /// An X25519 identity.
    Identity(Identity),
    /// One file's key, found once by [`unlock`]: opens that file (the same
    /// header) again without the key derivation, e.g. without a second
    /// Argon2id run for a passphrase. Opens no other file.
    Unlocked(Unlocked),
}

/// The key of one sealed file, bound to its header ([`unlock`],
/// [`Key::Unlocked`]). Zeroized on drop; its `Debug` shows no key.
#[derive(Clone)]
pub struct Unlocked {
    /// blake3 of the whole encoded header (MAC included).
    pub(crate) header: [u8; 32],
    pub(crate) key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked").finish_non_exhaustive()
    }
}

/// Reads the sealed header at the start of `input` (and nothing past it),
/// finds the file key with any of `keys` and authenticates the header with
/// it. Errors as opening does: `WRONG_KEY`, `CORRUPT`, `TRUNCATED`, ….
pub fn unlock<R: std::io::Read>(mut input: R, keys: &[Key], limits: &OpenLimits) -> Result<(HeaderInfo, Unlocked)> {
    stream::unlock_header(&mut input, keys, limits)
}

impl Key {
    /// A passphrase key.
    pub fn passphrase(p: impl Into<String>) -> Self {
        Key::Passphrase(Zeroizing::new(p.into()))
    }
}

/// Options for sealing.
#[derive(Debug, Clone)]
pub struct SealOptions {
    /// Segment size as a power of two (14..=24; default 20 = 1 MiB).
    pub segment_log2: u8,
    /// Argon2id parameters for a passphrase recipient.
    pub kdf: KdfParams,
    /// Public metadata: readable without a key, authenticated, not encrypted.
    pub metadata: Option<Map<String, Value>>,
    /// Worker threads for segment encryption (0 = the machine's parallelism).
    pub threads: usize,
}

impl Default for SealOptions {
    fn default() -> Self {
        Self { segment_log2: DEFAULT_SEGMENT_LOG2, kdf: KdfParams::default(), metadata: None, threads: 0 }
    }
}

/// A source of random bytes. [`OsRandom`] is the only one used outside tests;
/// tests inject a seeded one to make known-answer vectors reproducible.
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's random source (`getrandom`; `crypto.getRandomValues` in wasm).
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(format!("random source failed: {e}"))))
    }
}

/// Seals `data` in memory.
pub fn seal_to_vec(data: &[u8], recipients: &[Recipient], options: &SealOptions) -> Result<Vec<u8>> {
    seal_to_vec_with(data, recipients, options, &mut OsRandom)
}

/// Seals `data` in memory with an explicit random source.
pub fn seal_to_vec_with(data: &[u8], recipients: &[Recipient], options: &SealOptions, rng: &mut dyn RandomSource) -> Result<Vec<u8>> {
    let mut enc = Encryptor::with_random(recipients, options, rng)?;
    let mut out = Vec::with_capacity(data.len() + data.len() / 4096 + 1024);
    enc.push_into(data, &mut out)?;
    enc.finish_into(&mut out)?;
    Ok(out)
}

/// Opens a sealed file in memory.
pub fn open_to_vec(sealed: &[u8], keys: &[Key], limits: &OpenLimits) -> Result<Vec<u8>> {
    let mut dec = Decryptor::new(keys, limits.clone());
    let mut out = Vec::with_capacity(sealed.len());
    dec.push_into(sealed, &mut out)?;
    out.extend_from_slice(&dec.finish()?);
    Ok(out)
}

/// Reads the header of a sealed file (no key needed). `bytes` must hold at
/// least the whole header; more is ignored.
pub fn inspect(bytes: &[u8], limits: &OpenLimits) -> Result<HeaderInfo> {
    let prefix = &bytes[..bytes.len().min(PREFIX_LEN)];
    let total = header::Header::total_len(prefix)?;
    if bytes.len() < total {
        return Err(Error::truncated("input ends inside the sealed header"));
    }
    Ok(header::Header::parse(&bytes[..total], limits)?.info())
}

/// True when `bytes` starts like a sealed file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
}

/// A deterministic random source (the blake3 XOF of a seed). **Only for
/// test vectors and reproducible tests**: a file sealed with it is as weak as
/// its seed is guessable.
pub struct DeterministicRandom(blake3::OutputReader);

impl DeterministicRandom {
    /// The stream of random bytes for `seed`.
    pub fn new(seed: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("coffer test vectors deterministic random");
        hasher.update(seed);
        Self(hasher.finalize_xof())
    }
}

impl RandomSource for DeterministicRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        self.0.fill(buf);
        Ok(())
    }
}
