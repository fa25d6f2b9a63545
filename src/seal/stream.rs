//! STREAM over fixed-size segments: push-style [`Encryptor`]/[`Decryptor`]
//! (what the wasm `TransformStream`s wrap) and the `Write`/`Read` adapters
//! [`SealWriter`]/[`OpenReader`] (what the CLI and server use).

use std::io::{self, Read, Write};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use super::header::{Header, Stanza, NONCE_LEN, PREFIX_LEN};
use super::keys::{self, FileKey, SALT_LEN};
use super::{HeaderInfo, Key, OpenLimits, OsRandom, RandomSource, Recipient, SealOptions, TAG_LEN};
use crate::error::{Error, Result};
use crate::io_util::read_full;

/// Segments handed to worker threads at once (native builds).
const BATCH_SEGMENTS: usize = 8;

/// The 12-byte AES-GCM nonce of segment `counter`: seven zero bytes, the
/// counter as u32 big-endian, and 1 for the last segment (else 0). The
/// payload key is unique per file, so the prefix needs no randomness.
pub fn segment_nonce(counter: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[7..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// The AEAD that seals one segment under its STREAM nonce. [`AesGcmSegments`]
/// (the `aes-gcm` crate) is the default everywhere; the wasm build plugs in
/// its own AES-256-GCM tuned for wasm32 (src/wasm/gcm.rs), so that the
/// framing, the order and tag rules and every error stay this module's.
pub trait SegmentCipher: Sync + Sized {
    /// The cipher for a payload key.
    fn with_key(key: &[u8; 32]) -> Self;

    /// Encrypts `plain` into `out` (`plain.len() + TAG_LEN` bytes: ciphertext ‖ tag).
    fn seal(&self, nonce: &[u8; 12], plain: &[u8], out: &mut [u8]) -> Result<()>;

    /// Decrypts `sealed` (ciphertext ‖ tag) into `out` (`sealed.len() - TAG_LEN`
    /// bytes) if the tag verifies. On failure returns false; `out` may then
    /// have been overwritten (e.g. zeroed), and the caller never releases it.
    fn open(&self, nonce: &[u8; 12], sealed: &[u8], out: &mut [u8]) -> bool;

    /// As [`open`](Self::open), in place: on success the plaintext is
    /// `buf[..len - TAG_LEN]`; on failure `buf` is unchanged (callers try a
    /// segment under both "last" flags to tell truncation from damage).
    fn open_in_place(&self, nonce: &[u8; 12], buf: &mut [u8]) -> bool {
        let Some(len) = buf.len().checked_sub(TAG_LEN) else { return false };
        let sealed = buf.to_vec();
        if self.open(nonce, &sealed, &mut buf[..len]) {
            return true;
        }
        buf.copy_from_slice(&sealed);
        false
    }
}

/// AES-256-GCM from the `aes-gcm` crate, through its in/out API: a segment
/// is encrypted from the caller's plaintext straight into the output and
/// decrypted from the input straight into the output, with no extra copy.
///
/// The `aead-stream` crate implements the same STREAM construction (its
/// `StreamBE32` with an all-zero 7-byte prefix gives [`segment_nonce`]'s exact
/// nonces; a test below checks the two agree byte for byte), but only in
/// place on an `aead::Buffer`, hence the AEAD is called directly.
pub struct AesGcmSegments(Aes256Gcm);

impl SegmentCipher for AesGcmSegments {
    fn with_key(key: &[u8; 32]) -> Self {
        AesGcmSegments(Aes256Gcm::new(key.into()))
    }

    fn seal(&self, nonce: &[u8; 12], plain: &[u8], out: &mut [u8]) -> Result<()> {
        let failed = || Error::invalid("segment encryption failed");
        if out.len() != plain.len() + TAG_LEN {
            return Err(failed());
        }
        let (body, tag) = out.split_at_mut(plain.len());
        let buf = InOutBuf::new(plain, body).map_err(|_| failed())?;
        let t = self.0.encrypt_inout_detached(nonce.into(), &[], buf).map_err(|_| failed())?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    fn open(&self, nonce: &[u8; 12], sealed: &[u8], out: &mut [u8]) -> bool {
        let Some(split) = sealed.len().checked_sub(TAG_LEN) else { return false };
        let (body, tag) = sealed.split_at(split);
        let (Ok(buf), Ok(tag)) = (InOutBuf::new(body, out), <[u8; TAG_LEN]>::try_from(tag)) else { return false };
        self.0.decrypt_inout_detached(nonce.into(), &[], buf, (&tag).into()).is_ok()
    }

    fn open_in_place(&self, nonce: &[u8; 12], buf: &mut [u8]) -> bool {
        let Some(split) = buf.len().checked_sub(TAG_LEN) else { return false };
        let (body, tag) = buf.split_at_mut(split);
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(&*tag) else { return false };
        self.0.decrypt_inout_detached(nonce.into(), &[], body.into(), (&tag).into()).is_ok()
    }
}

/// STREAM (Hoang, Reyhanitabar, Rogaway, Vizár 2015), BE32 flavour, over a
/// [`SegmentCipher`]: segment `i` is sealed with nonce [`segment_nonce`]`(i, last)`.
struct Stream<C = AesGcmSegments>(C);

impl<C: SegmentCipher> Stream<C> {
    fn new(payload_key: &[u8; 32]) -> Self {
        Stream(C::with_key(payload_key))
    }

    fn seal(&self, counter: u32, last: bool, plain: &[u8], out: &mut [u8]) -> Result<()> {
        self.0.seal(&segment_nonce(counter, last), plain, out)
    }

    fn open(&self, counter: u32, last: bool, sealed: &[u8], out: &mut [u8]) -> bool {
        self.0.open(&segment_nonce(counter, last), sealed, out)
    }

    fn open_in_place(&self, counter: u32, last: bool, buf: &mut [u8]) -> bool {
        self.0.open_in_place(&segment_nonce(counter, last), buf)
    }
}

/// Runs `job` over every item of `jobs`, on up to `threads` threads (the
/// calling thread is one of them).
fn for_each_parallel<T: Send>(jobs: Vec<T>, threads: usize, job: impl Fn(T) -> Result<()> + Sync) -> Result<()> {
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 && jobs.len() > 1 {
        let per = jobs.len().div_ceil(threads.min(jobs.len()));
        let mut groups: Vec<Vec<T>> = Vec::new();
        let mut iter = jobs.into_iter().peekable();
        while iter.peek().is_some() {
            groups.push(iter.by_ref().take(per).collect());
        }
        let mine = groups.pop().unwrap_or_default();
        let job = &job;
        return std::thread::scope(|s| {
            let handles: Vec<_> = groups.into_iter().map(|g| s.spawn(move || g.into_iter().try_for_each(job))).collect();
            let here = mine.into_iter().try_for_each(job);
            let there = handles.into_iter().try_for_each(|h| h.join().map_err(|_| Error::Io(io::Error::other("worker panicked")))?);
            here.and(there)
        });
    }
    let _ = threads;
    jobs.into_iter().try_for_each(job)
}

fn default_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

/// Push-style sealing: give it plaintext, get ciphertext back.
///
/// The first output starts with the header. A full segment is only
/// emitted once more plaintext follows it, because the final segment must
/// carry the "last" flag.
pub struct Encryptor<C: SegmentCipher = AesGcmSegments> {
    stream: Stream<C>,
    header: Option<Vec<u8>>,
    info: HeaderInfo,
    payload_key: Zeroizing<[u8; 32]>,
    segment: usize,
    counter: u32,
    pending: Vec<u8>,
    threads: usize,
}

impl Encryptor {
    /// Starts sealing to `recipients` (random from the OS).
    pub fn new(recipients: &[Recipient], options: &SealOptions) -> Result<Self> {
        Self::with_random(recipients, options, &mut OsRandom)
    }

    /// Starts sealing with an explicit random source (tests use a seeded one).
    pub fn with_random(recipients: &[Recipient], options: &SealOptions, rng: &mut dyn RandomSource) -> Result<Self> {
        Self::with_cipher(recipients, options, rng)
    }
}

impl<C: SegmentCipher> Encryptor<C> {
    /// Starts sealing with the segment cipher `C` (the wasm build's own
    /// AES-256-GCM); the bytes are those of [`Encryptor::new`].
    pub fn with_cipher(recipients: &[Recipient], options: &SealOptions, rng: &mut dyn RandomSource) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::invalid("no recipient: give a passphrase or at least one public key"));
        }
        if recipients.len() > super::MAX_RECIPIENTS {
            return Err(Error::invalid(format!("at most {} recipients", super::MAX_RECIPIENTS)));
        }
        if recipients.len() > 1 && recipients.iter().any(|r| matches!(r, Recipient::Passphrase(_))) {
            return Err(Error::invalid("a passphrase cannot be combined with other recipients"));
        }
        if !(super::header::MIN_SEGMENT_LOG2..=super::header::MAX_SEGMENT_LOG2).contains(&options.segment_log2) {
            return Err(Error::invalid("segment size must be 2^14..=2^24 bytes"));
        }
        options.kdf.check(&OpenLimits::default()).map_err(|e| Error::invalid(e.to_string()))?;
        let metadata = match &options.metadata {
            Some(map) => crate::canonical::to_vec(&serde_json::Value::Object(map.clone()))?,
            None => Vec::new(),
        };
        if metadata.len() > super::MAX_METADATA {
            return Err(Error::limit(format!("metadata of {} bytes exceeds {}", metadata.len(), super::MAX_METADATA)));
        }
        let file_key = FileKey::generate(rng)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce)?;
        let mut stanzas = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            stanzas.push(match recipient {
                Recipient::Passphrase(p) => {
                    if p.is_empty() {
                        return Err(Error::invalid("empty passphrase"));
                    }
                    let mut salt = [0u8; SALT_LEN];
                    rng.fill(&mut salt)?;
                    let wrapped = keys::wrap_passphrase(p.as_bytes(), &salt, &options.kdf, &file_key)?;
                    Stanza::Passphrase { salt, kdf: options.kdf.clone(), wrapped }
                }
                Recipient::X25519(pk) => {
                    let (ephemeral, wrapped) = keys::wrap_x25519(pk, &file_key, rng)?;
                    Stanza::X25519 { ephemeral, wrapped }
                }
            });
        }
        let header = Header::build(options.segment_log2, nonce, stanzas, metadata, &file_key)?;
        let payload_key = header.payload_key(&file_key);
        Ok(Self {
            stream: Stream::new(&payload_key),
            info: header.info(),
            header: Some(header.to_bytes()),
            payload_key,
            segment: header.segment_size(),
            counter: 0,
            pending: Vec::new(),
            threads: default_threads(options.threads),
        })
    }

    /// What `inspect` will show for the file being written.
    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// The header bytes, if not yet emitted (they are emitted by the first
    /// `push`/`finish` otherwise). For callers that frame segments themselves.
    pub fn take_header(&mut self) -> Option<Vec<u8>> {
        self.header.take()
    }

    /// The payload key, for a caller that encrypts segments itself (the wasm
    /// build hands it to WebCrypto). Segment `i` is AES-256-GCM under this key
    /// with nonce [`segment_nonce`]`(i, last)` and no associated data.
    pub fn payload_key(&self) -> &[u8; 32] {
        &self.payload_key
    }

    /// Plaintext bytes per segment.
    pub fn segment_size(&self) -> usize {
        self.segment
    }

    /// Adds plaintext; returns the ciphertext that can be emitted so far.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.push_into(data, &mut out)?;
        Ok(out)
    }

    /// Adds plaintext and appends the ciphertext that can be emitted so far
    /// to `out` (reuse one `out` across calls to avoid fresh allocations).
    ///
    /// Full segments are encrypted straight from `data` into `out`; only the
    /// tail that does not fill a segment, or that might be the last one, is
    /// kept back (at most one segment). On error `out` is left as it was.
    pub fn push_into(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
        let (stream, counter, threads, seg) = (&self.stream, &mut self.counter, self.threads, self.segment);
        let result = feed_units(&mut self.pending, seg, data, |plain| seal_run(stream, counter, threads, seg, plain, false, out));
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Seals the final segment; returns the remaining ciphertext.
    pub fn finish(self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.finish_into(&mut out)?;
        Ok(out)
    }

    /// Seals the final segment and appends the remaining ciphertext to
    /// `out`. On error `out` is left as it was.
    pub fn finish_into(mut self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
        // pending holds 1..=segment bytes, or 0 when nothing was pushed at all.
        let result = seal_run(&self.stream, &mut self.counter, self.threads, self.segment, &self.pending, true, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// Feeds `data`, after the bytes held back in `pending`, to `run` in whole
/// `unit`s known not to be the last one of the stream (more bytes follow
/// them): first the held-back unit once it is full, then whole units
/// straight from `data`. What is left (1..=unit bytes, or none if nothing
/// came yet) is held back in `pending`: the final unit is only known at the end.
fn feed_units(pending: &mut Vec<u8>, unit: usize, mut data: &[u8], mut run: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    if !pending.is_empty() {
        let need = unit - pending.len();
        if data.len() <= need {
            pending.extend_from_slice(data);
            return Ok(());
        }
        pending.extend_from_slice(&data[..need]);
        data = &data[need..];
        run(pending)?;
        pending.clear();
    }
    if data.len() > unit {
        let whole = (data.len() - 1) / unit * unit;
        run(&data[..whole])?;
        data = &data[whole..];
    }
    pending.extend_from_slice(data);
    Ok(())
}

/// Seals `plain` under `stream` and appends it to `out`: whole segments of
/// `seg` bytes when `last` is false (`plain` is a multiple of `seg`), else
/// the one final segment (`plain` holds at most one segment).
fn seal_run<C: SegmentCipher>(stream: &Stream<C>, counter: &mut u32, threads: usize, seg: usize, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<()> {
    let segments = if last { 1 } else { plain.len() / seg };
    // At most 2^32 - 1 segments (counters 0..=2^32 - 2), as every writer of the format.
    let next = counter.checked_add(segments as u32).filter(|_| segments <= u32::MAX as usize).ok_or_else(|| Error::limit("too many segments"))?;
    let start = out.len();
    out.resize(start + plain.len() + segments * TAG_LEN, 0);
    let base = *counter;
    if last {
        stream.seal(base, true, plain, &mut out[start..])?;
    } else {
        let jobs: Vec<_> = plain.chunks(seg).zip(out[start..].chunks_mut(seg + TAG_LEN)).enumerate().collect();
        for_each_parallel(jobs, threads, |(i, (p, o))| stream.seal(base + i as u32, false, p, o))?;
    }
    *counter = next;
    Ok(())
}

enum DecState<C: SegmentCipher> {
    /// Collecting the header.
    Header(Vec<u8>),
    Body {
        stream: Box<Stream<C>>,
        payload_key: Zeroizing<[u8; 32]>,
        segment: usize,
        counter: u32,
        pending: Vec<u8>,
    },
    Done,
}

/// Push-style opening: give it sealed bytes, get plaintext back. Nothing is
/// returned before its segment's tag has verified; `finish` checks that the
/// stream ended exactly after its final segment.
pub struct Decryptor<C: SegmentCipher = AesGcmSegments> {
    keys: Vec<KeyRef>,
    limits: OpenLimits,
    state: DecState<C>,
    info: Option<HeaderInfo>,
    threads: usize,
}

/// Keys are borrowed at construction and kept as owned copies, so the
/// `Decryptor` has no lifetime (it lives inside JS objects in wasm).
enum KeyRef {
    Passphrase(Zeroizing<String>),
    Identity(keys::Identity),
    Unlocked(super::Unlocked),
}

impl Decryptor {
    /// Starts opening with any of `keys`.
    pub fn new(keys: &[Key], limits: OpenLimits) -> Self {
        Self::with_cipher(keys, limits)
    }
}

impl<C: SegmentCipher> Decryptor<C> {
    /// Starts opening with the segment cipher `C` (see [`Encryptor::with_cipher`]).
    pub fn with_cipher(keys: &[Key], limits: OpenLimits) -> Self {
        Self { keys: key_refs(keys), limits, state: DecState::Header(Vec::new()), info: None, threads: default_threads(0) }
    }

    /// Sets the number of worker threads (0 = the machine's parallelism).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = default_threads(threads);
    }

    /// The header, once it has been read and authenticated.
    pub fn info(&self) -> Option<&HeaderInfo> {
        self.info.as_ref()
    }

    /// The payload key and segment size once the header is authenticated,
    /// for a caller that decrypts segments itself (see [`Encryptor::payload_key`]).
    pub fn payload_key(&self) -> Option<(&[u8; 32], usize)> {
        match &self.state {
            DecState::Body { payload_key, segment, .. } => Some((payload_key, *segment)),
            _ => None,
        }
    }

    /// Bytes of header still needed before [`payload_key`](Self::payload_key) is available
    /// (0 once the header is done). Lets a framing-only caller feed exactly the header.
    pub fn header_bytes_needed(&self) -> usize {
        match &self.state {
            DecState::Header(buf) if buf.len() < PREFIX_LEN => PREFIX_LEN - buf.len(),
            DecState::Header(buf) => Header::total_len(buf).map_or(1, |t| t.saturating_sub(buf.len()).max(1)),
            _ => 0,
        }
    }

    /// Adds sealed bytes; returns the plaintext verified so far.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.push_into(data, &mut out)?;
        Ok(out)
    }

    /// Adds sealed bytes and appends the plaintext verified so far to `out`.
    /// Whole segments are decrypted straight from `data` into `out`. On
    /// error `out` is left as it was and the decryptor is spent.
    pub fn push_into(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let result = self.push_inner(&mut data, out);
        if result.is_err() {
            out.truncate(start);
            self.state = DecState::Done;
        }
        result
    }

    fn push_inner(&mut self, data: &mut &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let DecState::Header(buf) = &mut self.state {
            if buf.len() < PREFIX_LEN {
                let n = (PREFIX_LEN - buf.len()).min(data.len());
                buf.extend_from_slice(&data[..n]);
                *data = &data[n..];
                if buf.len() < PREFIX_LEN {
                    Header::total_len(buf).map(|_| ()).or_else(|e| if e.code() == "TRUNCATED" { Ok(()) } else { Err(e) })?;
                    return Ok(());
                }
            }
            let total = Header::total_len(buf)?;
            let n = (total - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..n]);
            *data = &data[n..];
            if buf.len() < total {
                return Ok(());
            }
            let header = Header::parse(buf, &self.limits)?;
            let file_key = unlock(&self.keys, &header)?;
            header.verify(&file_key)?;
            let payload_key = header.payload_key(&file_key);
            self.info = Some(header.info());
            self.state =
                DecState::Body { stream: Box::new(Stream::new(&payload_key)), payload_key, segment: header.segment_size(), counter: 0, pending: Vec::new() };
        }
        let threads = self.threads;
        match &mut self.state {
            DecState::Body { stream, segment, counter, pending, .. } => {
                let unit = *segment + TAG_LEN;
                feed_units(pending, unit, data, |sealed| open_run(stream, counter, sealed, unit, threads, out))
            }
            DecState::Done => Err(Error::invalid("decryptor already failed or finished")),
            DecState::Header(_) => Ok(()),
        }
    }

    /// Ends the stream: checks and returns the final segment.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        match std::mem::replace(&mut self.state, DecState::Done) {
            DecState::Header(buf) => {
                Header::total_len(&buf)?;
                Err(Error::truncated("input ends inside the sealed header"))
            }
            DecState::Done => Err(Error::invalid("decryptor already failed or finished")),
            DecState::Body { stream, segment, counter, mut pending, .. } => {
                if pending.len() < TAG_LEN {
                    return Err(Error::truncated("input ends before the final segment"));
                }
                if stream.open_in_place(counter, true, &mut pending) {
                    pending.truncate(pending.len() - TAG_LEN);
                    if pending.is_empty() && counter > 0 {
                        return Err(Error::corrupt("empty final segment after a full one"));
                    }
                    return Ok(pending);
                }
                if pending.len() == segment + TAG_LEN && stream.open_in_place(counter, false, &mut pending) {
                    return Err(Error::truncated("input ends at a segment boundary: the final segment is missing"));
                }
                Err(Error::corrupt(format!("segment {counter} failed authentication (damaged or truncated)")))
            }
        }
    }
}

fn key_refs(keys: &[Key]) -> Vec<KeyRef> {
    keys.iter()
        .map(|k| match k {
            Key::Passphrase(p) => KeyRef::Passphrase(p.clone()),
            Key::Identity(id) => KeyRef::Identity(id.clone()),
            Key::Unlocked(u) => KeyRef::Unlocked(u.clone()),
        })
        .collect()
}

/// [`super::unlock`]: the header, its file key found and the header authenticated.
pub(crate) fn unlock_header<R: Read>(input: &mut R, keys: &[Key], limits: &OpenLimits) -> Result<(HeaderInfo, super::Unlocked)> {
    let parsed = read_header(input, limits)?;
    let file_key = unlock(&key_refs(keys), &parsed)?;
    parsed.verify(&file_key)?;
    Ok((parsed.info(), super::Unlocked { header: header_digest(&parsed), key: file_key.0.clone() }))
}

/// Reads and parses the sealed header at the start of `input`, and nothing past it.
fn read_header<R: Read>(input: &mut R, limits: &OpenLimits) -> Result<Header> {
    let mut header = vec![0u8; PREFIX_LEN];
    let n = read_full(input, &mut header)?;
    let total = Header::total_len(&header[..n])?;
    header.resize(total, 0);
    if read_full(input, &mut header[PREFIX_LEN..])? != total - PREFIX_LEN {
        return Err(Error::truncated("input ends inside the sealed header"));
    }
    Header::parse(&header, limits)
}

/// What binds an [`super::Unlocked`] key to its header.
fn header_digest(header: &Header) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&header.authenticated);
    hasher.update(&header.mac);
    *hasher.finalize().as_bytes()
}

fn unlock(candidates: &[KeyRef], header: &Header) -> Result<FileKey> {
    let has_passphrase = header.stanzas.iter().any(|s| matches!(s, Stanza::Passphrase { .. }));
    let mut tried = false;
    // A key unlocked before opens its own header only.
    let digest = candidates.iter().any(|k| matches!(k, KeyRef::Unlocked(_))).then(|| header_digest(header));
    let mut other_file = false;
    for key in candidates {
        if let KeyRef::Unlocked(u) = key {
            if digest == Some(u.header) {
                return Ok(FileKey(u.key.clone()));
            }
            other_file = true;
            continue;
        }
        for stanza in &header.stanzas {
            let found = match (key, stanza) {
                (KeyRef::Passphrase(p), Stanza::Passphrase { salt, kdf, wrapped }) => {
                    tried = true;
                    keys::unwrap_passphrase(p.as_bytes(), salt, kdf, wrapped)?
                }
                (KeyRef::Identity(id), Stanza::X25519 { ephemeral, wrapped }) => {
                    tried = true;
                    keys::unwrap_x25519(id, ephemeral, wrapped)
                }
                _ => None,
            };
            if let Some(file_key) = found {
                return Ok(file_key);
            }
        }
    }
    if !tried && other_file {
        return Err(Error::WrongKey("the key given was unlocked from another file".into()));
    }
    if !tried {
        let want = if has_passphrase { "a passphrase" } else { "an identity (private key)" };
        return Err(Error::WrongKey(format!("the file is sealed to {want}, and none was given")));
    }
    Err(Error::WrongKey(if has_passphrase { "wrong passphrase".into() } else { "no given identity is a recipient of this file".into() }))
}

/// Opens `sealed`, whole non-final segments, into `out`. `out` only grows
/// once every one of them has verified (a failing run leaves it as it was).
fn open_run<C: SegmentCipher>(stream: &Stream<C>, counter: &mut u32, sealed: &[u8], unit: usize, threads: usize, out: &mut Vec<u8>) -> Result<()> {
    let count = sealed.len() / unit;
    let next = counter.checked_add(count as u32).filter(|_| count <= u32::MAX as usize).ok_or_else(|| Error::limit("too many segments"))?;
    let base = *counter;
    let start = out.len();
    out.resize(start + count * (unit - TAG_LEN), 0);
    let jobs: Vec<_> = sealed.chunks(unit).zip(out[start..].chunks_mut(unit - TAG_LEN)).enumerate().collect();
    let opened = for_each_parallel(jobs, threads, |(i, (chunk, plain))| {
        let i = base + i as u32;
        if stream.open(i, false, chunk, plain) {
            return Ok(());
        }
        // Authentic as a final segment, yet more bytes follow: appended data.
        if stream.open(i, true, chunk, plain) {
            return Err(Error::corrupt("data follows the final segment"));
        }
        Err(Error::corrupt(format!("segment {i} failed authentication (damaged, reordered or truncated)")))
    });
    if let Err(e) = opened {
        out.truncate(start);
        return Err(e);
    }
    *counter = next;
    Ok(())
}

/// Seals everything written to it into `W`. Call [`finish`](Self::finish):
/// dropping it without finishing leaves a file without its final segment,
/// which every reader rejects as `TRUNCATED`.
pub struct SealWriter<W: Write> {
    out: W,
    enc: Encryptor,
    /// Plaintext gathered until a batch of segments is ready.
    buf: Vec<u8>,
    /// Ciphertext of the last batch (reused: no allocation per batch).
    sealed: Vec<u8>,
    batch: usize,
}

impl<W: Write> SealWriter<W> {
    /// Starts a sealed file; the header is written at once.
    pub fn new(out: W, recipients: &[Recipient], options: &SealOptions) -> Result<Self> {
        Self::with_random(out, recipients, options, &mut OsRandom)
    }

    /// As [`new`](Self::new) with an explicit random source.
    pub fn with_random(mut out: W, recipients: &[Recipient], options: &SealOptions, rng: &mut dyn RandomSource) -> Result<Self> {
        let mut enc = Encryptor::with_random(recipients, options, rng)?;
        if let Some(header) = enc.take_header() {
            out.write_all(&header)?;
        }
        let batch = enc.segment_size() * BATCH_SEGMENTS;
        Ok(Self { out, enc, buf: Vec::with_capacity(batch), sealed: Vec::with_capacity(batch + BATCH_SEGMENTS * TAG_LEN), batch })
    }

    /// The header information of the file being written.
    pub fn info(&self) -> &HeaderInfo {
        self.enc.info()
    }

    /// Seals the final segment, flushes, and returns the output.
    pub fn finish(mut self) -> Result<W> {
        self.sealed.clear();
        self.enc.push_into(&self.buf, &mut self.sealed)?;
        self.enc.finish_into(&mut self.sealed)?;
        self.out.write_all(&self.sealed)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn seal(&mut self, plain: Option<&[u8]>) -> Result<()> {
        self.sealed.clear();
        self.enc.push_into(plain.unwrap_or(&self.buf), &mut self.sealed)?;
        self.buf.clear();
        self.out.write_all(&self.sealed)?;
        Ok(())
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.is_empty() && data.len() >= self.batch {
            // A batch is sealed straight from the caller's buffer (`write_all` comes back for the rest).
            self.seal(Some(&data[..self.batch]))?;
            return Ok(self.batch);
        }
        let n = data.len().min(self.batch - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.batch {
            self.seal(None)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads a sealed file as plaintext. Bytes are only returned once their
/// segment has verified; the final `Ok(0)` is only returned once the end of
/// the stream has been authenticated (a truncated file ends in an error).
pub struct OpenReader<R: Read> {
    input: R,
    dec: Option<Decryptor>,
    out: Vec<u8>,
    pos: usize,
    chunk: Vec<u8>,
}

impl<R: Read> OpenReader<R> {
    /// Reads and authenticates the header with any of `keys`.
    pub fn new(input: R, keys: &[Key], limits: &OpenLimits) -> Result<Self> {
        let mut reader = Self { input, dec: Some(Decryptor::new(keys, limits.clone())), out: Vec::new(), pos: 0, chunk: vec![0; 1 << 20] };
        // Drive the header through now, so a wrong key fails here, before any output.
        while reader.dec.as_ref().is_some_and(|d| d.info().is_none()) {
            let need = reader.dec.as_ref().map_or(0, Decryptor::header_bytes_needed);
            let n = read_full(&mut reader.input, &mut reader.chunk[..need.clamp(1, 1 << 20)])?;
            let Some(dec) = reader.dec.as_mut() else { break };
            if n == 0 {
                let dec = reader.dec.take();
                return Err(dec.map_or_else(|| Error::truncated("empty input"), |d| d.finish().err().unwrap_or_else(|| Error::truncated("empty input"))));
            }
            dec.push_into(&reader.chunk[..n], &mut reader.out)?;
        }
        reader.chunk = vec![0; BATCH_SEGMENTS * reader.dec.as_ref().and_then(|d| d.payload_key()).map_or(1 << 20, |(_, s)| s + TAG_LEN)];
        Ok(reader)
    }

    /// The authenticated header.
    pub fn info(&self) -> Option<&HeaderInfo> {
        self.dec.as_ref().and_then(Decryptor::info)
    }

    fn fill(&mut self) -> Result<()> {
        while self.pos >= self.out.len() {
            let Some(dec) = self.dec.as_mut() else { return Ok(()) };
            let n = read_full(&mut self.input, &mut self.chunk)?;
            self.pos = 0;
            self.out.clear();
            if n == 0 {
                let dec = self.dec.take().ok_or_else(|| Error::invalid("finished"))?;
                self.out = dec.finish()?;
                return Ok(());
            }
            dec.push_into(&self.chunk[..n], &mut self.out)?;
        }
        Ok(())
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fill()?;
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Random access to the plaintext of a sealed file: `Read + Seek`, decrypting
/// only the segments it touches. Lets a reader take the table of contents
/// and one collection out of a multi-GiB sealed bundle without decrypting
/// the rest (see [`crate::bundle::read_toc`] and [`crate::bundle::read_collection`]).
///
/// The header and the final segment are authenticated when it is created,
/// which fixes the plaintext length (a truncated or extended file is
/// rejected then); every segment read is authenticated before use.
pub struct SeekReader<R: Read + io::Seek> {
    input: R,
    stream: Stream,
    info: HeaderInfo,
    header_len: u64,
    segment: u64,
    segments: u64,
    len: u64,
    pos: u64,
    cached: Option<(u64, Vec<u8>)>,
}

impl<R: Read + io::Seek> SeekReader<R> {
    /// Reads and authenticates the header and the final segment.
    pub fn new(mut input: R, keys: &[Key], limits: &OpenLimits) -> Result<Self> {
        input.seek(io::SeekFrom::Start(0))?;
        let parsed = read_header(&mut input, limits)?;
        let file_key = unlock(&key_refs(keys), &parsed)?;
        parsed.verify(&file_key)?;
        let payload_key = parsed.payload_key(&file_key);
        let info = parsed.info();
        let total = info.header_len;
        let file_len = input.seek(io::SeekFrom::End(0))?;
        let body = file_len - total as u64;
        let segment = parsed.segment_size() as u64;
        let unit = segment + TAG_LEN as u64;
        if body < TAG_LEN as u64 {
            return Err(Error::truncated("input ends before the final segment"));
        }
        let segments = body.div_ceil(unit);
        let last_len = body - (segments - 1) * unit;
        if last_len < TAG_LEN as u64 {
            return Err(Error::corrupt("the final segment is shorter than a tag"));
        }
        if segments > u64::from(u32::MAX) + 1 {
            return Err(Error::limit("too many segments"));
        }
        let mut reader = Self {
            input,
            stream: Stream::new(&payload_key),
            info,
            header_len: total as u64,
            segment,
            segments,
            len: (segments - 1) * segment + last_len - TAG_LEN as u64,
            pos: 0,
            cached: None,
        };
        reader.load(segments - 1)?;
        if reader.len == 0 && segments > 1 {
            return Err(Error::corrupt("empty final segment after a full one"));
        }
        Ok(reader)
    }

    /// The authenticated header.
    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// Plaintext length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn load(&mut self, index: u64) -> Result<()> {
        if self.cached.as_ref().is_some_and(|(i, _)| *i == index) {
            return Ok(());
        }
        let unit = self.segment + TAG_LEN as u64;
        let last = index + 1 == self.segments;
        let size = if last { self.len - index * self.segment + TAG_LEN as u64 } else { unit };
        let mut buf = self.cached.take().map(|(_, b)| b).unwrap_or_default();
        buf.resize(size as usize, 0);
        self.input.seek(io::SeekFrom::Start(self.header_len + index * unit))?;
        if read_full(&mut self.input, &mut buf)? != buf.len() {
            return Err(Error::truncated("the file became shorter while being read"));
        }
        let counter = u32::try_from(index).map_err(|_| Error::limit("too many segments"))?;
        if !self.stream.open_in_place(counter, last, &mut buf) {
            if last && buf.len() == unit as usize && self.stream.open_in_place(counter, false, &mut buf) {
                return Err(Error::truncated("input ends at a segment boundary: the final segment is missing"));
            }
            return Err(Error::corrupt(format!("segment {index} failed authentication")));
        }
        buf.truncate(buf.len() - TAG_LEN);
        self.cached = Some((index, buf));
        Ok(())
    }
}

impl<R: Read + io::Seek> Read for SeekReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let index = self.pos / self.segment;
        self.load(index)?;
        let Some((_, plain)) = &self.cached else { return Ok(0) };
        let offset = (self.pos - index * self.segment) as usize;
        let n = out.len().min(plain.len() - offset);
        out[..n].copy_from_slice(&plain[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + io::Seek> io::Seek for SeekReader<R> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let target = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aead_stream::{NewStream, StreamBE32, StreamPrimitive};

    /// Our segments are exactly `aead-stream`'s STREAM-BE32 (all-zero prefix).
    #[test]
    fn segments_are_aead_stream_be32() {
        let key = [7u8; 32];
        let ours: Stream = Stream::new(&key);
        let reference: StreamBE32<Aes256Gcm> = StreamBE32::new((&key).into(), &Default::default());
        for (counter, last, len) in [(0u32, false, 1000usize), (1, false, 17), (5, true, 3), (u32::MAX, true, 0)] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut sealed = vec![0u8; len + TAG_LEN];
            ours.seal(counter, last, &plain, &mut sealed).unwrap();
            let mut expected = plain.clone();
            reference.encrypt_in_place(counter, last, &[], &mut expected).unwrap();
            assert_eq!(sealed, expected, "segment {counter} last={last}");
            let mut opened = vec![0u8; len];
            assert!(ours.open(counter, last, &sealed, &mut opened));
            assert_eq!(opened, plain);
            assert!(!ours.open(counter, !last, &sealed, &mut opened), "the last flag is authenticated");
            let mut in_place = sealed.clone();
            assert!(ours.open_in_place(counter, last, &mut in_place));
            assert_eq!(&in_place[..len], plain.as_slice());
        }
    }

    /// A segment cipher that, like the wasm one, writes `out` before checking
    /// the tag and zeroes it on failure, and has no in-place open of its own.
    struct Scribbling(AesGcmSegments);

    impl SegmentCipher for Scribbling {
        fn with_key(key: &[u8; 32]) -> Self {
            Scribbling(AesGcmSegments::with_key(key))
        }
        fn seal(&self, nonce: &[u8; 12], plain: &[u8], out: &mut [u8]) -> Result<()> {
            self.0.seal(nonce, plain, out)
        }
        fn open(&self, nonce: &[u8; 12], sealed: &[u8], out: &mut [u8]) -> bool {
            let ok = self.0.open(nonce, sealed, out);
            if !ok {
                out.fill(0);
            }
            ok
        }
    }

    /// The framing's diagnosis does not depend on the cipher leaving its
    /// output alone on failure: a pluggable cipher gets the same codes.
    #[test]
    fn a_pluggable_cipher_gets_the_same_bytes_and_codes() {
        let options = SealOptions { segment_log2: 14, ..SealOptions::default() };
        let recipients = [Recipient::X25519(keys::Identity::generate_with(&mut super::super::DeterministicRandom::new(b"id")).unwrap().public())];
        let keys = [Key::Identity(keys::Identity::generate_with(&mut super::super::DeterministicRandom::new(b"id")).unwrap())];
        let plain = vec![7u8; 2 * 16384];
        let seal = |plugged: bool| {
            let mut out = Vec::new();
            let rng = &mut super::super::DeterministicRandom::new(b"seal");
            if plugged {
                let mut enc = Encryptor::<Scribbling>::with_cipher(&recipients, &options, rng).unwrap();
                enc.push_into(&plain, &mut out).unwrap();
                enc.finish_into(&mut out).unwrap();
            } else {
                let mut enc = Encryptor::with_random(&recipients, &options, rng).unwrap();
                enc.push_into(&plain, &mut out).unwrap();
                enc.finish_into(&mut out).unwrap();
            }
            out
        };
        let sealed = seal(true);
        assert!(sealed == seal(false), "same bytes with either cipher");
        let open = |bytes: &[u8]| {
            let mut dec = Decryptor::<Scribbling>::with_cipher(&keys, OpenLimits::default());
            let mut out = Vec::new();
            dec.push_into(bytes, &mut out)?;
            out.extend_from_slice(&dec.finish()?);
            Ok::<_, Error>(out)
        };
        assert!(open(&sealed).unwrap() == plain);
        let header = super::super::inspect(&sealed, &OpenLimits::default()).unwrap().header_len;
        let boundary = &sealed[..header + 16384 + TAG_LEN];
        assert_eq!(open(boundary).unwrap_err().code(), "TRUNCATED");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(open(&flipped).unwrap_err().code(), "CORRUPT");
    }

    /// Any split of the input into pushes gives the same bytes, and a failed
    /// push leaves the caller's output as it was.
    #[test]
    fn push_into_is_split_independent_and_leaves_output_alone_on_error() {
        let options = SealOptions { segment_log2: 14, threads: 2, ..SealOptions::default() };
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 255) as u8).collect();
        let recipients = [Recipient::X25519(keys::Identity::generate_with(&mut super::super::DeterministicRandom::new(b"id")).unwrap().public())];
        let seal_with = |splits: &[usize]| {
            let mut enc = Encryptor::with_random(&recipients, &options, &mut super::super::DeterministicRandom::new(b"seal")).unwrap();
            let mut out = Vec::new();
            let mut rest = plain.as_slice();
            for &n in splits {
                let n = n.min(rest.len());
                enc.push_into(&rest[..n], &mut out).unwrap();
                rest = &rest[n..];
            }
            enc.push_into(rest, &mut out).unwrap();
            enc.finish_into(&mut out).unwrap();
            out
        };
        let whole = seal_with(&[]);
        for splits in [&[1usize, 16383, 16384, 16385][..], &[16384 * 3], &[5000; 20], &[0, 0, 99_999]] {
            assert!(seal_with(splits) == whole, "splits {splits:?} change the bytes");
        }
        let identity = keys::Identity::generate_with(&mut super::super::DeterministicRandom::new(b"id")).unwrap();
        let keys = [Key::Identity(identity)];
        for piece in [1usize, 1000, 16400, 40_000, whole.len()] {
            let mut dec = Decryptor::new(&keys, OpenLimits::default());
            let mut out = Vec::new();
            for chunk in whole.chunks(piece) {
                dec.push_into(chunk, &mut out).unwrap();
            }
            out.extend_from_slice(&dec.finish().unwrap());
            assert!(out == plain, "pieces of {piece}");
        }
        let mut damaged = whole.clone();
        let at = whole.len() / 2;
        damaged[at] ^= 1;
        let mut dec = Decryptor::new(&keys, OpenLimits::default());
        let mut out = b"kept".to_vec();
        assert_eq!(dec.push_into(&damaged, &mut out).unwrap_err().code(), "CORRUPT");
        assert_eq!(out, b"kept");
    }
}
