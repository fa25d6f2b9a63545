//! The deterministic bundle: the plaintext layer of a coffer backup.
//!
//! ```text
//! bundle  = header block* toc trailer
//! header  = MAGIC(8) version:u16le flags:u16le
//! block   = kind:u8 codec:u8 raw_len:u32le stored_len:u32le payload[stored_len]
//! trailer = toc_offset:u64le bytes_hash[32] END_MAGIC(8)
//! ```
//!
//! `bytes_hash` is the blake3 of every byte before the trailer, so that a
//! sequential reader detects any change of the file's bytes, including the
//! ones zstd would decode to the same content.
//!
//! Blocks come in a fixed order (schema, then each collection with its
//! documents by id, then commits in canonical order, then branches, then the
//! table of contents). Payloads are zstd frames of at most
//! [`BLOCK_TARGET`]-ish raw bytes, compressed independently (and in parallel
//! when writing). The normative description is docs/FORMAT.md §3.

mod compress;
mod fingerprint;
mod reader;
#[cfg(not(target_arch = "wasm32"))]
mod workers;
mod writer;

pub use reader::{read_collection, read_toc, BundleReader, DocumentRef, Item, ReadLimits};
pub use writer::{BundleWriter, CanonicalCommit, WriteOptions};

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::{Change, Commit, Snapshot};

/// First 8 bytes of every bundle. PNG-style: a high byte, a name, CR LF,
/// ^Z, LF, so text-mode transfers that mangle line endings are detected.
pub const MAGIC: [u8; 8] = *b"\x89CFB\r\n\x1a\n";
/// Last 8 bytes of every bundle.
pub const END_MAGIC: [u8; 8] = *b"CFB-END\n";
/// The format version this build writes (docs/FORMAT.md §6). It reads
/// every version from [`MIN_READ_VERSION`] to this one.
pub const VERSION: u16 = 2;
/// The oldest format version this build reads: version 1, whose history
/// repeats every document it puts in full.
pub const MIN_READ_VERSION: u16 = 1;
/// Header: magic, version, flags.
pub const HEADER_LEN: usize = 12;
/// Block header: kind, codec, raw_len, stored_len.
pub const BLOCK_HEADER_LEN: usize = 10;
/// Trailer: toc offset, blake3 of the bytes before the trailer, end magic.
pub const TRAILER_LEN: usize = 48;
/// A block is closed once its raw payload reaches this size. Part of the
/// format (it decides block boundaries, hence bytes and digest): never change
/// it; bump the version.
pub const BLOCK_TARGET: usize = 1 << 20;
/// The zstd level. Part of the format's determinism: never change it; bump the version.
pub const ZSTD_LEVEL: i32 = 3;
/// Largest raw payload of one block (a single record may exceed BLOCK_TARGET).
pub const MAX_BLOCK_RAW: u32 = 64 << 20;
/// Largest single record (document, commit, schema, config) in bytes.
pub const MAX_RECORD: usize = 32 << 20;
/// A zstd block may expand at most this many times (plus 64 KiB) on decompression.
pub const MAX_RATIO: u64 = 2048;

/// What a block holds. Values are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockKind {
    /// The schema: one canonical JSON value.
    Schema = 1,
    /// A collection header: varint name length, name, canonical JSON config.
    Collection = 2,
    /// Documents of the current collection: (varint id len, id, varint json len, json)*.
    Documents = 3,
    /// Commits: (varint len, canonical JSON commit)*.
    Commits = 4,
    /// Branches: one canonical JSON object name → head.
    Branches = 5,
    /// Table of contents: one canonical JSON object.
    Toc = 6,
}

impl BlockKind {
    fn from_u8(b: u8) -> Result<Self> {
        Ok(match b {
            1 => Self::Schema,
            2 => Self::Collection,
            3 => Self::Documents,
            4 => Self::Commits,
            5 => Self::Branches,
            6 => Self::Toc,
            other => return Err(Error::corrupt(format!("unknown block kind {other}"))),
        })
    }
}

/// Codec of a block payload. Values are part of the format.
pub(crate) const CODEC_STORED: u8 = 0;
pub(crate) const CODEC_ZSTD: u8 = 1;

/// The table of contents at the end of every bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toc {
    /// blake3 (hex) of the canonical uncompressed content (FORMAT.md §3.5).
    pub digest: String,
    /// Bytes of uncompressed content (block payloads, TOC excluded).
    pub raw_bytes: u64,
    /// Bytes of stored content (block headers and payloads, TOC excluded).
    pub stored_bytes: u64,
    /// One entry per collection, by name.
    pub collections: Vec<TocCollection>,
    /// Number of commits.
    pub commits: u64,
    /// Number of branches.
    pub branches: u64,
    /// Offset of the first commits block (or of the branches block).
    pub history_offset: u64,
}

/// A collection's entry in the table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TocCollection {
    /// Collection name.
    pub name: String,
    /// Number of documents.
    pub documents: u64,
    /// Uncompressed bytes of the collection's blocks.
    pub raw_bytes: u64,
    /// Stored bytes of the collection's blocks (headers included).
    pub stored_bytes: u64,
    /// Offset of the collection block from the start of the bundle.
    pub offset: u64,
    /// blake3 (hex) of the collection's blocks, framed as for the digest.
    pub hash: String,
}

/// Summary returned by the writer.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The table of contents that was written.
    pub toc: Toc,
    /// Total bytes written.
    pub bytes: u64,
}

/// Writes `snapshot` as a bundle (canonical order is established here).
pub fn write_snapshot<W: Write>(snapshot: &Snapshot, out: W, options: WriteOptions) -> Result<(W, Summary)> {
    let commits = snapshot.history.canonical_order()?;
    let mut writer = BundleWriter::new(out, &snapshot.schema, options)?;
    for (name, collection) in &snapshot.collections {
        writer.begin_collection(name, &collection.config)?;
        for (id, doc) in &collection.documents {
            writer.add_document(id, doc)?;
        }
    }
    for commit in commits {
        writer.add_commit(commit)?;
    }
    writer.finish(&snapshot.history.branches)
}

/// Bundles `snapshot` into memory.
pub fn to_vec(snapshot: &Snapshot) -> Result<Vec<u8>> {
    Ok(write_snapshot(snapshot, Vec::new(), WriteOptions::default())?.0)
}

/// Reads a whole bundle into a [`Snapshot`], checking every hash and count.
/// Puts a version-2 bundle stores without their document come back as full
/// [`Change::Put`]s of the snapshot's document, so a snapshot read back
/// equals the one written.
pub fn read_snapshot<R: Read>(input: R, limits: ReadLimits) -> Result<Snapshot> {
    let mut reader = BundleReader::new(input, limits)?;
    let mut snapshot = Snapshot::default();
    let mut current: Option<String> = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Schema(schema) => snapshot.schema = schema,
            Item::Collection { name, config } => {
                snapshot.collections.insert(name.clone(), crate::snapshot::Collection { config, documents: Default::default() });
                current = Some(name);
            }
            Item::Document(doc) => {
                let name = current.as_ref().ok_or_else(|| Error::corrupt("document outside a collection"))?;
                let value = doc.value()?;
                if let Some(c) = snapshot.collections.get_mut(name) {
                    c.documents.insert(doc.id, value);
                }
            }
            Item::Commit(mut commit) => {
                resolve_puts(&mut commit, &snapshot)?;
                snapshot.history.commits.push(*commit);
            }
            Item::Branches(branches) => snapshot.history.branches = branches,
        }
    }
    Ok(snapshot)
}

/// Turns every [`Change::PutSnapshot`] of `commit` into the full put of the
/// snapshot's document (the reader checked that it holds one).
pub(crate) fn resolve_puts(commit: &mut Commit, snapshot: &Snapshot) -> Result<()> {
    for change in &mut commit.changes {
        if let Change::PutSnapshot { collection, id } = change {
            let Some(document) = snapshot.collections.get(collection.as_str()).and_then(|c| c.documents.get(id.as_str())) else {
                return Err(Error::corrupt(format!(
                    "commit {:?} puts {id:?} of {collection:?} without a document, but the bundle holds no such document",
                    commit.id
                )));
            };
            *change = Change::Put { collection: std::mem::take(collection), id: std::mem::take(id), document: document.clone() };
        }
    }
    Ok(())
}

/// Reads a bundle from memory.
pub fn from_slice(bytes: &[u8]) -> Result<Snapshot> {
    read_snapshot(bytes, ReadLimits::default())
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint (at most 10 bytes, minimal encoding) from `buf` at `*pos`.
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos) else {
            return Err(Error::corrupt("record runs past the end of its block"));
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(Error::corrupt("varint overflows 64 bits"));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(Error::corrupt("varint is not minimally encoded"));
            }
            return Ok(value);
        }
    }
    Err(Error::corrupt("varint longer than 10 bytes"))
}

/// Frames a block for hashing: kind, raw length, raw payload.
pub(crate) fn hash_block(hasher: &mut blake3::Hasher, kind: BlockKind, raw: &[u8]) {
    hasher.update(&[kind as u8]);
    hasher.update(&(raw.len() as u32).to_le_bytes());
    hasher.update(raw);
}
