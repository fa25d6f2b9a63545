//! Block encoding and the parallel, order-preserving compression pipeline.

use std::collections::VecDeque;

use super::{BlockKind, BLOCK_HEADER_LEN, CODEC_STORED, CODEC_ZSTD, MAX_RATIO, ZSTD_LEVEL};
use crate::error::{Error, Result};

/// Encodes one block (header and payload). zstd is used when it makes the
/// payload smaller and stays within the reader's ratio limit; otherwise the
/// payload is stored as is. Deterministic for a given zstd version and level.
pub(crate) fn encode_block(zstd: &mut zstd::bulk::Compressor<'static>, kind: BlockKind, raw: &[u8]) -> Result<Vec<u8>> {
    encode_block_with(zstd, &mut Vec::new(), kind, raw)
}

/// [`encode_block`] with a buffer for the zstd frame that is kept from one
/// block to the next (the bytes are those of `Compressor::compress`).
pub(crate) fn encode_block_with(zstd: &mut zstd::bulk::Compressor<'static>, scratch: &mut Vec<u8>, kind: BlockKind, raw: &[u8]) -> Result<Vec<u8>> {
    scratch.clear();
    scratch.reserve(zstd::zstd_safe::compress_bound(raw.len()));
    zstd.compress_to_buffer(raw, scratch).map_err(Error::Io)?;
    let compressed = &scratch[..];
    let use_zstd = compressed.len() < raw.len() && within_ratio(raw.len() as u64, compressed.len() as u64);
    let payload: &[u8] = if use_zstd { compressed } else { raw };
    let mut block = Vec::with_capacity(BLOCK_HEADER_LEN + payload.len());
    block.push(kind as u8);
    block.push(if use_zstd { CODEC_ZSTD } else { CODEC_STORED });
    block.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    block.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    block.extend_from_slice(payload);
    Ok(block)
}

pub(crate) fn within_ratio(raw: u64, stored: u64) -> bool {
    raw <= stored.saturating_mul(MAX_RATIO).saturating_add(64 * 1024)
}

pub(crate) fn new_zstd() -> Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(Error::Io)?;
    // Fixed frame parameters: content size on, checksum off (blake3 covers
    // the content), no dictionary id. Never change; bump the version.
    c.include_checksum(false).map_err(Error::Io)?;
    c.include_contentsize(true).map_err(Error::Io)?;
    c.include_dictid(false).map_err(Error::Io)?;
    Ok(c)
}

/// An encoded block, the raw payload's buffer given back for reuse, and
/// for a DOCUMENTS block the hashes of its documents, in order (the
/// writer's fingerprints, docs/FORMAT.md §3.2: hashed here, on the
/// compression workers, rather than on the writer's thread).
pub(crate) type Encoded = Result<(Vec<u8>, Vec<u8>, Vec<u128>)>;

/// Encodes a block and, if `hash`, hashes its documents (see [`Encoded`]).
fn encode_job(zstd: &mut zstd::bulk::Compressor<'static>, scratch: &mut Vec<u8>, kind: BlockKind, raw: Vec<u8>, hash: bool) -> Encoded {
    let block = encode_block_with(zstd, scratch, kind, &raw)?;
    let mut hashes = Vec::new();
    if hash && kind == BlockKind::Documents {
        super::fingerprint::document_hashes(&raw, &mut hashes);
    }
    Ok((block, raw, hashes))
}

/// A block handed to the pipeline and the encoded bytes it will become.
pub(crate) enum Pending {
    Ready(Encoded),
    #[cfg(not(target_arch = "wasm32"))]
    Waiting(std::sync::mpsc::Receiver<Encoded>),
}

impl Pending {
    pub(crate) fn wait(self) -> Encoded {
        match self {
            Pending::Ready(r) => r,
            #[cfg(not(target_arch = "wasm32"))]
            Pending::Waiting(rx) => rx.recv().map_err(|_| Error::Io(std::io::Error::other("compression worker stopped")))?,
        }
    }
}

/// Compresses blocks on worker threads (native) or inline (wasm, or one thread).
/// Results come back through [`Pending`] in submission order.
pub(crate) struct Compressor {
    inline: Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>,
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<pool::Pool>,
    pub(crate) in_flight: VecDeque<Pending>,
    pub(crate) max_in_flight: usize,
}

impl Compressor {
    /// `threads == 0` picks the machine's parallelism.
    pub(crate) fn new(threads: usize) -> Result<Self> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) } else { threads };
            if threads > 1 {
                return Ok(Self { inline: None, pool: Some(pool::Pool::new(threads)?), in_flight: VecDeque::new(), max_in_flight: threads * 2 });
            }
        }
        let _ = threads;
        Ok(Self {
            inline: Some((new_zstd()?, Vec::new())),
            #[cfg(not(target_arch = "wasm32"))]
            pool: None,
            in_flight: VecDeque::new(),
            max_in_flight: 1,
        })
    }

    /// Queues a block; `hash`: hash the documents of a DOCUMENTS block.
    pub(crate) fn submit(&mut self, kind: BlockKind, raw: Vec<u8>, hash: bool) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(pool) = &self.pool {
            let pending = pool.submit(kind, raw, hash);
            self.in_flight.push_back(pending);
            return;
        }
        let pending = match self.inline.as_mut() {
            Some((z, scratch)) => Pending::Ready(encode_job(z, scratch, kind, raw, hash)),
            None => Pending::Ready(Err(Error::Io(std::io::Error::other("no compressor")))),
        };
        self.in_flight.push_back(pending);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod pool {
    use std::sync::mpsc;

    use super::{encode_job, new_zstd, Encoded, Pending};
    use crate::bundle::workers::Workers;
    use crate::bundle::BlockKind;
    use crate::error::{Error, Result};

    type Job = (BlockKind, Vec<u8>, bool, mpsc::SyncSender<Encoded>);

    /// Compression workers, each with its zstd context and output buffer.
    pub(crate) struct Pool(Workers<Job>);

    impl Pool {
        pub(crate) fn new(threads: usize) -> Result<Self> {
            let state = || Ok((new_zstd()?, Vec::new()));
            Workers::<Job>::new(threads, "coffer-compress", state, |(zstd, scratch), (kind, raw, hash, reply)| {
                let _ = reply.send(encode_job(zstd, scratch, kind, raw, hash));
            })
            .map(Self)
        }

        pub(crate) fn submit(&self, kind: BlockKind, raw: Vec<u8>, hash: bool) -> Pending {
            let (reply, rx) = mpsc::sync_channel(1);
            if self.0.send((kind, raw, hash, reply)) {
                Pending::Waiting(rx)
            } else {
                Pending::Ready(Err(Error::Io(std::io::Error::other("compression pool stopped"))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_deterministic_across_contexts() {
        let raw: Vec<u8> = (0..300_000u32).flat_map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let mut a = new_zstd().unwrap();
        let first = encode_block(&mut a, BlockKind::Documents, &raw).unwrap();
        let second = encode_block(&mut a, BlockKind::Documents, &raw).unwrap();
        let fresh = encode_block(&mut new_zstd().unwrap(), BlockKind::Documents, &raw).unwrap();
        assert_eq!(first, second);
        assert_eq!(first, fresh);
        assert_eq!(first[1], CODEC_ZSTD);
        assert!(first.len() < raw.len() / 3);
    }

    #[test]
    fn incompressible_or_explosive_payloads_are_stored() {
        let mut z = new_zstd().unwrap();
        let random: Vec<u8> = (0..4096u32).map(|i| blake3::hash(&i.to_le_bytes()).as_bytes()[0]).collect();
        assert_eq!(encode_block(&mut z, BlockKind::Documents, &random).unwrap()[1], CODEC_STORED);
        let zeros = vec![b'a'; 32 << 20];
        let block = encode_block(&mut z, BlockKind::Documents, &zeros).unwrap();
        let stored_len = u32::from_le_bytes(block[6..10].try_into().unwrap()) as u64;
        assert!(within_ratio(zeros.len() as u64, stored_len));
    }
}
