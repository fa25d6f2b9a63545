//! The streaming bundle writer.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use serde_json::{Map, Value};

use super::compress::{encode_block, new_zstd, Compressor};
use super::fingerprint::{self, Fingerprints};
use super::{hash_block, put_varint, BlockKind, Summary, Toc, TocCollection, BLOCK_TARGET, END_MAGIC, MAGIC, MAX_RECORD, VERSION};
use crate::canonical;
use crate::error::{Error, Result};
use crate::snapshot::{validate_collection_name, validate_id, Change, Commit};

/// Options of the bundle writer. None of them changes the bytes written.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Compression threads; 0 picks the machine's parallelism.
    pub threads: usize,
    /// The caller writes every put of the history with or without its
    /// document by the rule of docs/FORMAT.md §3.2.1 itself (as
    /// [`Change::PutSnapshot`]s or in [`CanonicalCommit`] text), as the
    /// server does from its versions: the writer then keeps no fingerprints
    /// and hashes no document, and writes puts as given. A wrong decision
    /// gives a bundle that readers refuse as `CORRUPT`.
    pub puts_decided: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Collections,
    History,
}

/// A commit for [`BundleWriter::add_canonical_commit`]: its metadata, and
/// its change set as canonical JSON text.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalCommit<'a> {
    /// Unique id of the commit.
    pub id: &'a str,
    /// Parent commit ids.
    pub parents: &'a [String],
    /// Who made it.
    pub author: &'a str,
    /// Why.
    pub message: &'a str,
    /// When, in milliseconds since the Unix epoch (UTC).
    pub timestamp: i64,
    /// The change set: the canonical JSON of the array of changes.
    pub changes: &'a [u8],
}

/// Where a block's bytes count in the table of contents.
#[derive(Clone, Copy)]
enum Owner {
    Schema,
    /// First block of collection i (its offset goes in the TOC).
    CollectionStart(usize),
    Collection(usize),
    /// First block of the history (its offset goes in the TOC).
    HistoryStart,
    History,
}

/// Writes a bundle item by item, in canonical order, in bounded memory.
///
/// Call [`begin_collection`](Self::begin_collection) for each collection in
/// increasing name order, [`add_document`](Self::add_document) for its
/// documents in increasing id order, then [`add_commit`](Self::add_commit) in
/// canonical order (generation, then id), then [`finish`](Self::finish).
/// Any order violation is `INVALID_INPUT`: the writer never silently produces
/// a non-canonical bundle.
///
/// The writer writes format version 2: a put in the history whose document
/// the bundle's documents hold byte for byte is written without it
/// (docs/FORMAT.md §3.2). To decide, it keeps a fingerprint of every
/// document added: 32 bytes per document (up to twice that while the
/// documents are added), hashed on the compression workers; the writer's
/// thread hashes only collection and id (~0.2 µs a document) and sorts the
/// fingerprints once (~0.05 µs a document). A reader keeps the same.
pub struct BundleWriter<W: Write> {
    out: W,
    offset: u64,
    compressor: Compressor,
    owners: std::collections::VecDeque<Owner>,
    stage: Stage,
    /// Records of the open documents or commits block.
    buf: Vec<u8>,
    buf_kind: BlockKind,
    digest: blake3::Hasher,
    /// blake3 of every byte written (the trailer's `bytes_hash`).
    bytes: blake3::Hasher,
    collection_hasher: Option<blake3::Hasher>,
    collections: Vec<TocCollection>,
    last_id: Option<String>,
    generations: HashMap<String, u64>,
    last_commit: Option<(u64, String)>,
    commits: u64,
    history_started: bool,
    history_offset: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    scratch: Vec<u8>,
    /// Buffers of raw payloads the compressor gave back, for the next blocks.
    spare: Vec<Vec<u8>>,
    /// Key and document hash of every document added (the hashes come back
    /// from the compression workers, in order: `hashed` are in).
    fingerprints: Fingerprints,
    hashed: usize,
    /// Whether documents are fingerprinted (not when the caller decides the puts).
    fingerprinting: bool,
}

/// Raw payload buffers kept for reuse, and the largest capacity kept.
const SPARE_BUFFERS: usize = 2;
const SPARE_CAPACITY: usize = 4 * BLOCK_TARGET;

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle: writes the header and the schema block.
    pub fn new(mut out: W, schema: &Value, options: WriteOptions) -> Result<Self> {
        let mut header = Vec::with_capacity(super::HEADER_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        out.write_all(&header)?;
        let mut bytes = blake3::Hasher::new();
        bytes.update(&header);
        let mut writer = Self {
            out,
            offset: header.len() as u64,
            compressor: Compressor::new(options.threads)?,
            owners: Default::default(),
            stage: Stage::Collections,
            buf: Vec::with_capacity(BLOCK_TARGET + 64 * 1024),
            buf_kind: BlockKind::Documents,
            digest: blake3::Hasher::new(),
            bytes,
            collection_hasher: None,
            collections: Vec::new(),
            last_id: None,
            generations: HashMap::new(),
            last_commit: None,
            commits: 0,
            history_started: false,
            history_offset: 0,
            raw_bytes: 0,
            stored_bytes: 0,
            scratch: Vec::new(),
            spare: Vec::new(),
            fingerprints: Fingerprints::default(),
            hashed: 0,
            fingerprinting: !options.puts_decided,
        };
        let schema = canonical::to_vec(schema)?;
        check_record(schema.len(), "schema")?;
        writer.submit(BlockKind::Schema, schema, Owner::Schema)?;
        Ok(writer)
    }

    /// Starts the next collection (names strictly increasing).
    pub fn begin_collection(&mut self, name: &str, config: &Map<String, Value>) -> Result<()> {
        validate_collection_name(name)?;
        if self.stage != Stage::Collections {
            return Err(Error::invalid("collections must come before commits"));
        }
        if let Some(prev) = self.collections.last() {
            if prev.name.as_bytes() >= name.as_bytes() {
                return Err(Error::invalid(format!("collection {name:?} added after {:?}: names must be unique and increasing", prev.name)));
            }
        }
        self.flush_records()?;
        self.finish_collection_hash();
        self.collections.push(TocCollection { name: name.to_string(), documents: 0, raw_bytes: 0, stored_bytes: 0, offset: 0, hash: String::new() });
        self.collection_hasher = Some(blake3::Hasher::new());
        self.last_id = None;
        let config = canonical::to_vec(&Value::Object(config.clone()))?;
        check_record(config.len(), "collection config")?;
        let mut raw = Vec::with_capacity(name.len() + config.len() + 2);
        put_varint(&mut raw, name.len() as u64);
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(&config);
        self.buf_kind = BlockKind::Documents;
        self.submit(BlockKind::Collection, raw, Owner::CollectionStart(self.collections.len() - 1))
    }

    /// Adds a document to the current collection (ids strictly increasing).
    pub fn add_document(&mut self, id: &str, doc: &Value) -> Result<()> {
        let mut json = std::mem::take(&mut self.scratch);
        json.clear();
        let result = canonical::write(doc, &mut json).and_then(|()| self.add_canonical_document(id, &json));
        self.scratch = json;
        result
    }

    /// Adds a document given as JSON text (canonicalized here).
    pub fn add_document_json(&mut self, id: &str, json: &[u8]) -> Result<()> {
        let value = canonical::parse(json)?;
        self.add_document(id, &value)
    }

    /// Adds a document already in canonical form (the caller guarantees it).
    pub(crate) fn add_canonical_document(&mut self, id: &str, json: &[u8]) -> Result<()> {
        validate_id("document", id)?;
        check_record(json.len(), "document")?;
        let Some(index) = self.collections.len().checked_sub(1).filter(|_| self.stage == Stage::Collections) else {
            return Err(Error::invalid("a document must follow begin_collection"));
        };
        if let Some(last) = &self.last_id {
            if last.as_bytes() >= id.as_bytes() {
                return Err(Error::invalid(format!(
                    "document {id:?} in {:?} added after {last:?}: ids must be unique and increasing",
                    self.collections[index].name
                )));
            }
        }
        put_varint(&mut self.buf, id.len() as u64);
        self.buf.extend_from_slice(id.as_bytes());
        put_varint(&mut self.buf, json.len() as u64);
        self.buf.extend_from_slice(json);
        // The document's hash comes from the compression worker of its block.
        if self.fingerprinting {
            self.fingerprints.push((fingerprint::key(&self.collections[index].name, id), 0));
        }
        self.collections[index].documents += 1;
        self.last_id = Some(id.to_string());
        if self.buf.len() >= BLOCK_TARGET {
            self.flush_records()?;
        }
        Ok(())
    }

    /// Adds a commit. Its parents must already have been added, and commits
    /// must come in canonical order: generation, then id.
    ///
    /// A [`Change::Put`] whose document the bundle's documents hold byte for
    /// byte is written without it, as a [`Change::PutSnapshot`]; a
    /// `PutSnapshot` of a document the bundle does not hold is
    /// `INVALID_INPUT` (docs/FORMAT.md §3.2).
    pub fn add_commit(&mut self, commit: &Commit) -> Result<()> {
        commit.validate()?;
        let generation = self.commit_generation(&commit.id, &commit.parents)?;
        if self.stage == Stage::Collections {
            self.enter_history()?;
        }
        let mut value = serde_json::to_value(commit).map_err(|e| Error::invalid(e.to_string()))?;
        if let (true, Some(Value::Array(changes))) = (self.fingerprinting, value.get_mut("changes")) {
            for (change, json) in commit.changes.iter().zip(changes.iter_mut()) {
                match change {
                    Change::Put { collection, id, document } => {
                        let Some(hash) = self.fingerprints.get(fingerprint::key(collection, id)) else { continue };
                        let mut doc = std::mem::take(&mut self.scratch);
                        doc.clear();
                        canonical::write(document, &mut doc)?;
                        let same = fingerprint::document(&doc) == hash;
                        self.scratch = doc;
                        if same {
                            // Replaced whole, not by removing the member: the
                            // wasm build has no other use of a map's removal.
                            let by_ref = Change::PutSnapshot { collection: collection.clone(), id: id.clone() };
                            *json = serde_json::to_value(&by_ref).map_err(|e| Error::invalid(e.to_string()))?;
                        }
                    }
                    Change::PutSnapshot { collection, id } if self.fingerprints.get(fingerprint::key(collection, id)).is_none() => {
                        return Err(Error::invalid(format!(
                            "commit {:?} puts the snapshot's document {id:?} of {collection:?} (a put without document), but the bundle holds no such document",
                            commit.id
                        )));
                    }
                    _ => {}
                }
            }
        }
        let json = canonical::to_vec(&value)?;
        self.push_commit(&commit.id, generation, &[&json])
    }

    /// Adds a commit whose change set is given as canonical JSON text, as a
    /// store keeps it, so that it is copied rather than parsed and encoded
    /// again. The record written is byte for byte the one
    /// [`add_commit`](Self::add_commit) writes for the same commit, and the
    /// same order rules apply (parents first; generation, then id).
    ///
    /// The writer checks the commit's id, its parents and that `changes` is
    /// framed as a JSON array. **The caller guarantees the rest**: that
    /// each put is written without its document exactly when the bundle's
    /// documents hold that collection and id byte for byte (the rule of
    /// docs/FORMAT.md §3.2, which [`add_commit`](Self::add_commit) applies
    /// itself; this text is copied, not parsed), that
    /// `changes` is exactly the canonical JSON (docs/FORMAT.md §2) of a valid
    /// array of changes (what `canonical::to_vec` gives for the serialized
    /// `Vec<Change>`), with valid collection names and document ids, and
    /// nested at most [`MAX_DEPTH`](crate::canonical::MAX_DEPTH) levels
    /// counting the record's own three (record, array, change). A
    /// bundle written from anything else is refused by every reader
    /// (`CORRUPT`), so only pass bytes your own code produced canonically.
    pub fn add_canonical_commit(&mut self, commit: &CanonicalCommit<'_>) -> Result<()> {
        validate_id("commit", commit.id)?;
        for parent in commit.parents {
            validate_id("parent commit", parent)?;
        }
        let framed = commit.changes.first() == Some(&b'[') && commit.changes.last() == Some(&b']');
        if !framed || commit.changes.len() < 2 {
            return Err(Error::invalid(format!("commit {:?}: the change set must be a canonical JSON array", commit.id)));
        }
        let generation = self.commit_generation(commit.id, commit.parents)?;
        // The canonical record: keys in byte order (author, changes, id,
        // message, parents, timestamp), no whitespace. What surrounds the
        // change set is built here; the change set goes straight into the block.
        let mut json = std::mem::take(&mut self.scratch);
        json.clear();
        json.extend_from_slice(b"{\"author\":");
        canonical::write_string(commit.author, &mut json);
        json.extend_from_slice(b",\"changes\":");
        let before = json.len();
        json.extend_from_slice(b",\"id\":");
        canonical::write_string(commit.id, &mut json);
        json.extend_from_slice(b",\"message\":");
        canonical::write_string(commit.message, &mut json);
        json.extend_from_slice(b",\"parents\":[");
        for (i, parent) in commit.parents.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            canonical::write_string(parent, &mut json);
        }
        json.extend_from_slice(b"],\"timestamp\":");
        json.extend_from_slice(commit.timestamp.to_string().as_bytes());
        json.push(b'}');
        let (prefix, suffix) = json.split_at(before);
        let result = self.push_commit(commit.id, generation, &[prefix, commit.changes, suffix]);
        self.scratch = json;
        result
    }

    /// The generation of a commit with these parents, checking that the
    /// parents were added and that the commit comes in canonical order.
    fn commit_generation(&self, id: &str, parents: &[String]) -> Result<u64> {
        let mut generation = 0;
        for parent in parents {
            let Some(g) = self.generations.get(parent) else {
                return Err(Error::invalid(format!("commit {id:?} added before its parent {parent:?}")));
            };
            generation = generation.max(g + 1);
        }
        if let Some((last_gen, last_id)) = &self.last_commit {
            if (*last_gen, last_id.as_bytes()) >= (generation, id.as_bytes()) {
                return Err(Error::invalid(format!("commit {id:?} is out of canonical order (generation, id) or a duplicate")));
            }
        }
        Ok(generation)
    }

    /// Appends a commit record (checked by the caller), the concatenation
    /// of `parts`, to the history.
    fn push_commit(&mut self, id: &str, generation: u64, parts: &[&[u8]]) -> Result<()> {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        check_record(len, "commit")?;
        if self.stage == Stage::Collections {
            self.enter_history()?;
        }
        put_varint(&mut self.buf, len as u64);
        self.buf.reserve(len);
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.generations.insert(id.to_string(), generation);
        self.last_commit = Some((generation, id.to_string()));
        self.commits += 1;
        if self.buf.len() >= BLOCK_TARGET {
            self.flush_records()?;
        }
        Ok(())
    }

    /// Writes the branches, the table of contents and the trailer; returns
    /// the output and a summary. Every branch head must be a commit added.
    pub fn finish(mut self, branches: &BTreeMap<String, String>) -> Result<(W, Summary)> {
        for (name, head) in branches {
            validate_id("branch", name)?;
            if !self.generations.contains_key(head) {
                return Err(Error::invalid(format!("branch {name:?} points to unknown commit {head:?}")));
            }
        }
        if self.stage == Stage::Collections {
            self.enter_history()?;
        }
        self.flush_records()?;
        let json = canonical::to_vec(&serde_json::to_value(branches).map_err(|e| Error::invalid(e.to_string()))?)?;
        check_record(json.len(), "branches")?;
        let owner = if self.commits == 0 { Owner::HistoryStart } else { Owner::History };
        self.submit(BlockKind::Branches, json, owner)?;
        self.drain(0)?;
        let toc = Toc {
            digest: self.digest.finalize().to_hex().to_string(),
            raw_bytes: self.raw_bytes,
            stored_bytes: self.stored_bytes,
            collections: std::mem::take(&mut self.collections),
            commits: self.commits,
            branches: branches.len() as u64,
            history_offset: self.history_offset,
        };
        let toc_json = canonical::to_vec(&serde_json::to_value(&toc).map_err(|e| Error::invalid(e.to_string()))?)?;
        let toc_block = encode_block(&mut new_zstd()?, BlockKind::Toc, &toc_json)?;
        let toc_offset = self.offset;
        self.out.write_all(&toc_block)?;
        self.bytes.update(&toc_block);
        let mut trailer = [0u8; super::TRAILER_LEN];
        trailer[..8].copy_from_slice(&toc_offset.to_le_bytes());
        trailer[8..40].copy_from_slice(self.bytes.finalize().as_bytes());
        trailer[40..].copy_from_slice(&END_MAGIC);
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        let bytes = toc_offset + toc_block.len() as u64 + super::TRAILER_LEN as u64;
        Ok((self.out, Summary { toc, bytes }))
    }

    fn enter_history(&mut self) -> Result<()> {
        self.flush_records()?;
        self.finish_collection_hash();
        self.stage = Stage::History;
        self.buf_kind = BlockKind::Commits;
        // Every document's hash must be back before a put is looked up.
        self.drain(0)?;
        if self.hashed != self.fingerprints.len() {
            return Err(Error::Io(std::io::Error::other("the compression workers hashed fewer documents than were added")));
        }
        self.fingerprints.seal()
    }

    fn finish_collection_hash(&mut self) {
        if let (Some(hasher), Some(last)) = (self.collection_hasher.take(), self.collections.last_mut()) {
            last.hash = hasher.finalize().to_hex().to_string();
        }
    }

    /// Closes the open documents or commits block, if it holds records.
    fn flush_records(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(BLOCK_TARGET + 64 * 1024));
        let raw = std::mem::replace(&mut self.buf, next);
        let owner = match (self.buf_kind, self.collections.len().checked_sub(1)) {
            (BlockKind::Documents, Some(index)) => Owner::Collection(index),
            _ if self.history_started => Owner::History,
            _ => Owner::HistoryStart,
        };
        self.submit(self.buf_kind, raw, owner)
    }

    /// Hashes a block's raw payload and hands it to the compressor.
    fn submit(&mut self, kind: BlockKind, raw: Vec<u8>, owner: Owner) -> Result<()> {
        hash_block(&mut self.digest, kind, &raw);
        match owner {
            Owner::CollectionStart(index) | Owner::Collection(index) => {
                if let Some(hasher) = self.collection_hasher.as_mut() {
                    hash_block(hasher, kind, &raw);
                }
                self.collections[index].raw_bytes += raw.len() as u64;
            }
            Owner::HistoryStart => self.history_started = true,
            Owner::Schema | Owner::History => {}
        }
        self.raw_bytes += raw.len() as u64;
        self.compressor.submit(kind, raw, self.fingerprinting);
        self.owners.push_back(owner);
        let max = self.compressor.max_in_flight;
        self.drain(max)
    }

    /// Writes finished blocks until at most `keep` are in flight.
    fn drain(&mut self, keep: usize) -> Result<()> {
        while self.compressor.in_flight.len() > keep {
            let (Some(pending), Some(owner)) = (self.compressor.in_flight.pop_front(), self.owners.pop_front()) else {
                break;
            };
            let (block, mut raw, hashes) = pending.wait()?;
            for hash in hashes {
                self.fingerprints.set_document(self.hashed, hash);
                self.hashed += 1;
            }
            if self.spare.len() < SPARE_BUFFERS && (BLOCK_TARGET..=SPARE_CAPACITY).contains(&raw.capacity()) {
                raw.clear();
                self.spare.push(raw);
            }
            match owner {
                Owner::CollectionStart(index) => {
                    self.collections[index].offset = self.offset;
                    self.collections[index].stored_bytes += block.len() as u64;
                }
                Owner::Collection(index) => self.collections[index].stored_bytes += block.len() as u64,
                Owner::HistoryStart => self.history_offset = self.offset,
                Owner::Schema | Owner::History => {}
            }
            self.out.write_all(&block)?;
            self.bytes.update(&block);
            self.offset += block.len() as u64;
            self.stored_bytes += block.len() as u64;
        }
        Ok(())
    }
}

fn check_record(len: usize, what: &str) -> Result<()> {
    if len > MAX_RECORD {
        return Err(Error::limit(format!("{what} is {len} bytes; the limit is {MAX_RECORD}")));
    }
    Ok(())
}
