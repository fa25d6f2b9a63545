//! The streaming bundle reader: validates as it goes, in bounded memory.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Take};

use serde_json::{Map, Value};

use super::compress::within_ratio;
use super::fingerprint::{self, Fingerprints};
use super::{
    get_varint, hash_block, BlockKind, Toc, TocCollection, BLOCK_HEADER_LEN, CODEC_STORED, CODEC_ZSTD, END_MAGIC, HEADER_LEN, MAGIC, MAX_BLOCK_RAW, MAX_RECORD,
    MIN_READ_VERSION, TRAILER_LEN, VERSION,
};
use crate::canonical;
use crate::error::{from_read, Error, Result};
use crate::io_util::read_full;
use crate::snapshot::{validate_collection_name, validate_id, Change, Commit, MAX_ID_LEN};

/// Bounds a reader enforces on top of the format's own.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Largest raw block payload accepted (≤ [`MAX_BLOCK_RAW`]).
    pub max_block_raw: u32,
    /// Largest record (document, commit, …) accepted (≤ [`MAX_RECORD`]).
    pub max_record: usize,
    /// Largest total of uncompressed content accepted.
    pub max_total_raw: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self { max_block_raw: MAX_BLOCK_RAW, max_record: MAX_RECORD, max_total_raw: u64::MAX }
    }
}

/// One document as stored: its id and its canonical JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRef {
    /// Document id.
    pub id: String,
    /// Canonical JSON text of the document.
    pub json: Vec<u8>,
}

impl DocumentRef {
    /// The document in canonical form. A document that is not valid JSON
    /// can only come from a damaged bundle: `CORRUPT`.
    pub fn canonical(&self) -> Result<Vec<u8>> {
        canonical::canonicalize(&self.json).map_err(|e| Error::corrupt(format!("document {:?}: {e}", self.id)))
    }

    /// Parses the document.
    pub fn value(&self) -> Result<Value> {
        canonical::parse(&self.json).map_err(|e| Error::corrupt(format!("document {:?}: {e}", self.id)))
    }
}

/// One item of a bundle, in bundle order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The schema (always first).
    Schema(Value),
    /// A collection begins; its documents follow.
    Collection {
        /// Name.
        name: String,
        /// Configuration.
        config: Map<String, Value>,
    },
    /// A document of the current collection.
    Document(DocumentRef),
    /// A commit, in canonical order. A put the bundle stores without its
    /// document (version 2) is a [`Change::PutSnapshot`]: a put of the
    /// bundle's document of that collection and id.
    Commit(Box<Commit>),
    /// The branches (always last).
    Branches(BTreeMap<String, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Schema,
    /// Collections (or, inside one, its documents), then commits or branches.
    Body,
    /// More commits, then branches.
    Commits,
    Toc,
    Done,
}

/// Reads a bundle item by item.
///
/// Every check the format allows is made: block order, name and id order,
/// commit order and parents, per-collection hashes, the content digest, the
/// table of contents and the trailer. The digest and the table of contents
/// can only be compared at the end, so a consumer that must not act on a
/// damaged plain bundle should read it to the end (sealed bundles are
/// authenticated segment by segment before any byte reaches this reader).
pub struct BundleReader<R: Read> {
    input: R,
    limits: ReadLimits,
    offset: u64,
    expect: Expect,
    block: Vec<u8>,
    block_kind: BlockKind,
    cursor: usize,
    stored: Vec<u8>,
    zstd: zstd::bulk::Decompressor<'static>,
    digest: blake3::Hasher,
    /// blake3 of every byte read (checked against the trailer's `bytes_hash`).
    bytes: blake3::Hasher,
    collection_hasher: Option<blake3::Hasher>,
    collections: Vec<TocCollection>,
    last_id: Option<String>,
    generations: HashMap<String, u64>,
    last_commit: Option<(u64, String)>,
    commits: u64,
    branches: u64,
    history_offset: Option<u64>,
    raw_bytes: u64,
    stored_bytes: u64,
    toc: Option<Toc>,
    /// For [`read_collection`]: the entry the fragment must match at its end.
    fragment: Option<TocCollection>,
    /// Whether commits keep the canonical text of their change set.
    keep_changes_text: bool,
    /// The canonical text of the last commit's change set (when kept).
    changes_text: Option<Vec<u8>>,
    /// What a worker already checked in the records of `self.block`.
    checked: Checked,
    /// The bundle's format version (header).
    version: u16,
    /// Fingerprints of the documents read, to check the puts of a version-2
    /// history against (docs/FORMAT.md §3.2); not kept by fragment readers,
    /// nor when the caller resolves puts itself.
    fingerprints: Fingerprints,
    /// See [`caller_resolves_puts`](Self::caller_resolves_puts).
    caller_resolves_puts: bool,
    /// Blocks read ahead and decoded on worker threads (native builds).
    #[cfg(not(target_arch = "wasm32"))]
    ahead: ahead::ReadAhead,
}

impl<R: Read> BundleReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R, limits: ReadLimits) -> Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        let version = read_header(&mut input, &mut header)?;
        let mut reader = Self::with_state(input, limits, HEADER_LEN as u64, Expect::Schema, None, version)?;
        reader.bytes.update(&header);
        Ok(reader)
    }

    fn with_state(input: R, limits: ReadLimits, offset: u64, expect: Expect, fragment: Option<TocCollection>, version: u16) -> Result<Self> {
        Ok(Self {
            input,
            limits,
            offset,
            expect,
            block: Vec::new(),
            block_kind: BlockKind::Documents,
            cursor: 0,
            stored: Vec::new(),
            zstd: new_decompressor()?,
            digest: blake3::Hasher::new(),
            bytes: blake3::Hasher::new(),
            collection_hasher: None,
            collections: Vec::new(),
            last_id: None,
            generations: HashMap::new(),
            last_commit: None,
            commits: 0,
            branches: 0,
            history_offset: None,
            raw_bytes: 0,
            stored_bytes: 0,
            toc: None,
            fragment,
            keep_changes_text: false,
            changes_text: None,
            checked: Checked::default(),
            version,
            fingerprints: Fingerprints::default(),
            caller_resolves_puts: false,
            #[cfg(not(target_arch = "wasm32"))]
            ahead: ahead::ReadAhead::new(0),
        })
    }

    /// The bundle's format version, from its header (1 or 2).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Whether documents are fingerprinted: a whole version-2 bundle whose
    /// caller does not resolve puts itself.
    fn fingerprinting(&self) -> bool {
        self.version >= 2 && self.fragment.is_none() && !self.caller_resolves_puts
    }

    /// For a consumer that resolves every put without document of a
    /// version-2 history against the documents it received, and refuses one
    /// whose document the bundle does not hold (`CORRUPT`), as the server's
    /// restore does: the reader then keeps no fingerprints (no hash of every
    /// document on the decoding threads, 32 bytes per document less) and
    /// only refuses a put without document in a version-1 bundle. What it no
    /// longer refuses is a put that carries the very document the bundle
    /// holds: a second encoding of the same snapshot, which such a consumer
    /// stores the same. Call it before the first item; readers that hand the
    /// bundle on (verify, import, `read_snapshot`) keep every check.
    pub fn caller_resolves_puts(&mut self, yes: bool) {
        self.caller_resolves_puts = yes;
    }

    /// What the workers check in each block.
    #[cfg(not(target_arch = "wasm32"))]
    fn check_options(&self) -> CheckOptions {
        CheckOptions { keep_text: self.keep_changes_text, max_record: self.limits.max_record, fingerprint: self.fingerprinting() }
    }

    /// Checks a commit's puts against the rule of its version
    /// (docs/FORMAT.md §3.2): in version 1 every put carries its document;
    /// in version 2 a put carries it exactly when the bundle's documents do
    /// not hold that collection and id byte for byte.
    #[inline(never)] // the wasm build has a size budget
    fn check_puts(&mut self, commit: &Commit) -> Result<()> {
        for change in &commit.changes {
            let broken = match change {
                Change::PutSnapshot { collection, id } => (self.version < 2
                    || (!self.caller_resolves_puts && self.fingerprints.get(fingerprint::key(collection, id)).is_none()))
                .then_some((collection, id, "without a document")),
                Change::Put { collection, id, document } if self.version >= 2 && !self.caller_resolves_puts => {
                    let Some(hash) = self.fingerprints.get(fingerprint::key(collection, id)) else { continue };
                    let mut json = std::mem::take(&mut self.stored);
                    json.clear();
                    let same = canonical::write(document, &mut json).map(|()| fingerprint::document(&json) == hash);
                    self.stored = json;
                    same?.then_some((collection, id, "with the very document the bundle holds"))
                }
                _ => None,
            };
            if let Some((collection, id, how)) = broken {
                return Err(Error::corrupt(format!(
                    "commit {:?} puts {id:?} of {collection:?} {how}, which bundle version {} does not allow (a put is stored without its document exactly when the bundle holds that document)",
                    commit.id, self.version
                )));
            }
        }
        Ok(())
    }

    /// Sets the number of threads that decompress and check blocks ahead of
    /// the caller: 0 (the default) picks the machine's parallelism, 1 reads
    /// on the calling thread only. Items, their order and every error are the
    /// same whatever the number; call it before the first item. The wasm
    /// build always reads on the calling thread.
    pub fn set_threads(&mut self, threads: usize) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.ahead = ahead::ReadAhead::new(threads);
        }
        let _ = threads;
    }

    /// The table of contents, once the whole bundle has been read and checked.
    pub fn toc(&self) -> Option<&Toc> {
        self.toc.as_ref()
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next item, or `None` after the last one (the table of contents and
    /// trailer have then been checked).
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        loop {
            if self.cursor < self.block.len() {
                return self.next_record().map(Some);
            }
            if self.expect == Expect::Done {
                return Ok(None);
            }
            if let Some(item) = self.next_block()? {
                return Ok(Some(item));
            }
        }
    }

    /// Keeps the canonical JSON text of each commit's change set, as the
    /// bundle holds it, for [`take_changes_text`](Self::take_changes_text):
    /// a consumer that stores change sets as canonical text copies it
    /// instead of encoding the parsed changes again.
    pub fn keep_changes_text(&mut self, keep: bool) {
        self.keep_changes_text = keep;
    }

    /// The canonical JSON text (an array) of the change set of the commit
    /// [`next_item`](Self::next_item) returned last, when
    /// [`keep_changes_text`](Self::keep_changes_text) is on; exactly
    /// `canonical::to_vec` of its `changes`.
    pub fn take_changes_text(&mut self) -> Option<Vec<u8>> {
        self.changes_text.take()
    }

    /// Reads everything, returning the checked table of contents.
    pub fn read_to_end(mut self) -> Result<Toc> {
        while self.next_item()?.is_some() {}
        self.toc.ok_or_else(|| Error::corrupt("bundle ended without a table of contents"))
    }

    fn next_record(&mut self) -> Result<Item> {
        let buf = &self.block;
        let mut pos = self.cursor;
        // Records before `checked.to` passed a worker's checks (the
        // canonical form above all); the one at `checked.to` failed them.
        let prechecked = pos < self.checked.to;
        if pos == self.checked.to {
            if let Some(e) = self.checked.failure.take() {
                return Err(e);
            }
        }
        let item = match self.block_kind {
            BlockKind::Documents => {
                let (id, json) = document_record(buf, &mut pos, self.limits.max_record, !prechecked)?;
                if self.last_id.as_ref().is_some_and(|last| last.as_bytes() >= id.as_bytes()) {
                    return Err(Error::corrupt(format!("document {id:?} is out of order or duplicated")));
                }
                if self.fingerprinting() {
                    let hash = match self.checked.doc_hashes.get(self.checked.hashes_taken) {
                        Some(&hash) if prechecked => hash,
                        _ => fingerprint::document(json),
                    };
                    self.checked.hashes_taken += 1;
                    let name = self.collections.last().map_or("", |c| c.name.as_str());
                    self.fingerprints.push((fingerprint::key(name, id), hash));
                }
                let (id, json) = (id.to_string(), json.to_vec());
                if let Some(entry) = self.collections.last_mut() {
                    entry.documents += 1;
                }
                self.last_id = Some(id.clone());
                Item::Document(DocumentRef { id, json })
            }
            BlockKind::Commits => {
                let start = pos;
                let json = take_record(buf, &mut pos, self.limits.max_record)?;
                let (commit, text) = match self.checked.commits.pop_front() {
                    Some(parsed) if parsed.start == start => (parsed.commit, parsed.text),
                    _ => commit_record(json, !prechecked, self.keep_changes_text)?,
                };
                self.changes_text = match text {
                    Some(text) if self.keep_changes_text => Some(text),
                    _ if self.keep_changes_text => changes_text(json, &commit).map(<[u8]>::to_vec),
                    _ => None,
                };
                let mut generation = 0;
                for parent in &commit.parents {
                    let Some(g) = self.generations.get(parent) else {
                        return Err(Error::corrupt(format!("commit {:?} comes before its parent {parent:?}", commit.id)));
                    };
                    generation = generation.max(g + 1);
                }
                if self.last_commit.as_ref().is_some_and(|(g, id)| (*g, id.as_bytes()) >= (generation, commit.id.as_bytes())) {
                    return Err(Error::corrupt(format!("commit {:?} is out of order or duplicated", commit.id)));
                }
                self.check_puts(&commit)?;
                self.generations.insert(commit.id.clone(), generation);
                self.last_commit = Some((generation, commit.id.clone()));
                self.commits += 1;
                Item::Commit(Box::new(commit))
            }
            _ => return Err(Error::corrupt("records in a block that holds none")),
        };
        self.cursor = pos;
        Ok(item)
    }

    /// Reads one block. Returns an item for single-record blocks; for
    /// record blocks, loads them and returns `None`.
    fn next_block(&mut self) -> Result<Option<Item>> {
        let start = self.offset;
        let Some((kind, raw_len, stored_len)) = self.load_block(start)? else {
            self.finish_fragment()?;
            return Ok(None);
        };
        let block_len = (BLOCK_HEADER_LEN as u64) + u64::from(stored_len);
        self.offset += block_len;
        self.cursor = 0;
        if kind == BlockKind::Toc {
            self.block_kind = kind;
            return self.finish(start).map(|()| None);
        }
        self.raw_bytes += u64::from(raw_len);
        if self.raw_bytes > self.limits.max_total_raw {
            return Err(Error::limit(format!("bundle content exceeds {} bytes", self.limits.max_total_raw)));
        }
        self.stored_bytes += block_len;
        hash_block(&mut self.digest, kind, &self.block);
        let item = match (kind, self.expect) {
            (BlockKind::Schema, Expect::Schema) => {
                let schema: Value = canonical::from_canonical(&self.block, "schema")?;
                self.expect = Expect::Body;
                Some(Item::Schema(schema))
            }
            (BlockKind::Collection, Expect::Body) => {
                self.close_collection();
                let mut pos = 0;
                let name_len = get_varint(&self.block, &mut pos)? as usize;
                if name_len > self.block.len() - pos {
                    return Err(Error::corrupt("collection name runs past its block"));
                }
                let name = std::str::from_utf8(&self.block[pos..pos + name_len]).map_err(|_| Error::corrupt("collection name is not UTF-8"))?.to_string();
                validate_collection_name(&name).map_err(|e| Error::corrupt(e.to_string()))?;
                if let Some(entry) = self.fragment.as_ref().filter(|entry| entry.name != name) {
                    return Err(Error::corrupt(format!("the table of contents points {:?} at collection {name:?}", entry.name)));
                }
                let config = match canonical::from_canonical(&self.block[pos + name_len..], "collection config") {
                    Ok(Value::Object(map)) => map,
                    _ => return Err(Error::corrupt(format!("collection {name:?} has a malformed config"))),
                };
                if self.collections.last().is_some_and(|prev| prev.name.as_bytes() >= name.as_bytes()) {
                    return Err(Error::corrupt(format!("collection {name:?} is out of order or duplicated")));
                }
                let mut hasher = blake3::Hasher::new();
                hash_block(&mut hasher, kind, &self.block);
                self.collection_hasher = Some(hasher);
                self.collections.push(TocCollection {
                    name: name.clone(),
                    documents: 0,
                    raw_bytes: u64::from(raw_len),
                    stored_bytes: block_len,
                    offset: start,
                    hash: String::new(),
                });
                self.last_id = None;
                self.block.clear();
                Some(Item::Collection { name, config })
            }
            (BlockKind::Documents, Expect::Body) if self.collection_hasher.is_some() && raw_len > 0 => {
                if let (Some(hasher), Some(entry)) = (self.collection_hasher.as_mut(), self.collections.last_mut()) {
                    hash_block(hasher, kind, &self.block);
                    entry.raw_bytes += u64::from(raw_len);
                    entry.stored_bytes += block_len;
                }
                self.block_kind = kind;
                None
            }
            (BlockKind::Commits, Expect::Body | Expect::Commits) if raw_len > 0 => {
                self.close_collection();
                // The documents ended: their fingerprints are complete.
                self.fingerprints.seal()?;
                self.history_offset.get_or_insert(start);
                self.expect = Expect::Commits;
                self.block_kind = kind;
                None
            }
            (BlockKind::Branches, Expect::Body | Expect::Commits) => {
                self.close_collection();
                self.history_offset.get_or_insert(start);
                let branches: BTreeMap<String, String> = canonical::from_canonical(&self.block, "branches")?;
                for (name, head) in &branches {
                    validate_id("branch", name).map_err(|e| Error::corrupt(e.to_string()))?;
                    if !self.generations.contains_key(head) {
                        return Err(Error::corrupt(format!("branch {name:?} points to unknown commit {head:?}")));
                    }
                }
                self.branches = branches.len() as u64;
                self.block.clear();
                self.expect = Expect::Toc;
                Some(Item::Branches(branches))
            }
            (kind, expect) => return Err(Error::corrupt(format!("unexpected {kind:?} block at offset {start} (expected {expect:?})"))),
        };
        if item.is_some() {
            self.block.clear();
        }
        Ok(item)
    }

    /// Loads the block at `start` into `self.block` (and what a worker
    /// checked of its records into `self.checked`). `None` at the clean end
    /// of a collection fragment ([`read_collection`]).
    fn load_block(&mut self, start: u64) -> Result<Option<(BlockKind, u32, u32)>> {
        self.checked = Checked::default();
        #[cfg(not(target_arch = "wasm32"))]
        if self.ahead.running() {
            return self.load_ahead(start);
        }
        let Some(header) = self.read_block_header(start)? else { return Ok(None) };
        #[cfg(not(target_arch = "wasm32"))]
        if self.ahead.wants(header[0]) {
            // The first block of records: from here on blocks are read
            // ahead and decoded on worker threads.
            let stored = self.read_stored(&header, start)?;
            self.ahead.start(stored, self.check_options())?;
            return self.load_ahead(start);
        }
        self.read_payload(&header, start).map(Some)
    }

    /// Takes the next block read ahead (reading more ahead first).
    #[cfg(not(target_arch = "wasm32"))]
    fn load_ahead(&mut self, start: u64) -> Result<Option<(BlockKind, u32, u32)>> {
        while let Some(read_from) = self.ahead.room() {
            let next = self.read_next(read_from);
            self.ahead.push(next, self.check_options());
        }
        match self.ahead.pop()? {
            ahead::Next::Block { stored, raw, checked } => {
                debug_assert_eq!(stored.start, start);
                self.block = raw;
                self.checked = checked;
                let lengths = (stored.kind, stored.raw_len, stored.stored_len);
                // The next block read ahead reuses the buffer.
                self.stored = stored.payload;
                Ok(Some(lengths))
            }
            ahead::Next::End => Ok(None),
        }
    }

    /// Reads the block at `offset` for the read-ahead: its stored payload,
    /// the clean end of a fragment, or the error the block gives.
    #[cfg(not(target_arch = "wasm32"))]
    fn read_next(&mut self, offset: u64) -> Result<Option<Stored>> {
        match self.read_block_header(offset)? {
            Some(header) => self.read_stored(&header, offset).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the header of the block at `offset`; `None` at the clean end
    /// of a collection fragment ([`read_collection`]).
    fn read_block_header(&mut self, offset: u64) -> Result<Option<[u8; BLOCK_HEADER_LEN]>> {
        let mut header = [0u8; BLOCK_HEADER_LEN];
        let got = read_full(&mut self.input, &mut header)?;
        if got == 0 && self.fragment.is_some() {
            return Ok(None);
        }
        if got < BLOCK_HEADER_LEN {
            return Err(Error::truncated(format!("bundle ends inside a block header at offset {offset}")));
        }
        Ok(Some(header))
    }

    /// Reads the payload of the block whose header is `header` (at offset
    /// `start`): checks kind, codec and lengths against the format's and the
    /// reader's limits, adds the stored bytes to the trailer hash, and leaves
    /// the raw payload in `self.block`. Returns kind, raw and stored lengths.
    fn read_payload(&mut self, header: &[u8; BLOCK_HEADER_LEN], start: u64) -> Result<(BlockKind, u32, u32)> {
        let mut stored = self.read_stored(header, start)?;
        let result = decode(&mut self.zstd, &stored, &mut self.block);
        self.stored = std::mem::take(&mut stored.payload);
        result?;
        Ok((stored.kind, stored.raw_len, stored.stored_len))
    }

    /// Checks a block header (kind, codec and lengths against the format's
    /// and the reader's limits), reads the payload as stored and adds it to
    /// the trailer hash.
    fn read_stored(&mut self, header: &[u8; BLOCK_HEADER_LEN], start: u64) -> Result<Stored> {
        let kind = BlockKind::from_u8(header[0])?;
        let codec = header[1];
        let raw_len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]);
        let stored_len = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
        if raw_len > self.limits.max_block_raw.min(MAX_BLOCK_RAW) {
            return Err(Error::limit(format!("block of {raw_len} bytes at offset {start}; the limit is {}", self.limits.max_block_raw)));
        }
        match codec {
            CODEC_STORED if stored_len == raw_len => {}
            CODEC_ZSTD if stored_len < raw_len => {
                if !within_ratio(raw_len.into(), stored_len.into()) {
                    return Err(Error::limit(format!("block at offset {start} claims a compression ratio above the limit")));
                }
            }
            CODEC_STORED | CODEC_ZSTD => return Err(Error::corrupt(format!("block at offset {start} has inconsistent lengths"))),
            other => return Err(Error::corrupt(format!("unknown codec {other} at offset {start}"))),
        }
        let mut payload = std::mem::take(&mut self.stored);
        payload.clear();
        (&mut self.input).take(stored_len.into()).read_to_end(&mut payload).map_err(|e| from_read(e, "block"))?;
        if payload.len() != stored_len as usize {
            return Err(Error::truncated(format!("bundle ends inside the block at offset {start}")));
        }
        self.bytes.update(header);
        self.bytes.update(&payload);
        Ok(Stored { kind, codec, raw_len, stored_len, start, payload })
    }

    fn close_collection(&mut self) {
        if let (Some(hasher), Some(entry)) = (self.collection_hasher.take(), self.collections.last_mut()) {
            entry.hash = hasher.finalize().to_hex().to_string();
        }
    }

    /// Checks the table of contents (in `self.block`) against what was read,
    /// then the trailer and the end of input.
    fn finish(&mut self, toc_offset: u64) -> Result<()> {
        if self.expect != Expect::Toc {
            return Err(Error::corrupt(format!("table of contents at offset {toc_offset} comes too early")));
        }
        let toc: Toc = canonical::from_canonical(&self.block, "table of contents")?;
        self.block.clear();
        let computed = Toc {
            digest: self.digest.finalize().to_hex().to_string(),
            raw_bytes: self.raw_bytes,
            stored_bytes: self.stored_bytes,
            collections: std::mem::take(&mut self.collections),
            commits: self.commits,
            branches: self.branches,
            history_offset: self.history_offset.unwrap_or(0),
        };
        if computed.digest != toc.digest {
            return Err(Error::corrupt("content digest does not match the table of contents"));
        }
        if computed != toc {
            return Err(Error::corrupt("table of contents does not match the content"));
        }
        let mut trailer = [0u8; TRAILER_LEN];
        if read_full(&mut self.input, &mut trailer)? < TRAILER_LEN {
            return Err(Error::truncated("bundle ends inside its trailer"));
        }
        let offset = u64::from_le_bytes(trailer[..8].try_into().map_err(|_| Error::corrupt("trailer"))?);
        if trailer[40..] != END_MAGIC || offset != toc_offset {
            return Err(Error::corrupt("bad trailer"));
        }
        if trailer[8..40] != *self.bytes.finalize().as_bytes() {
            return Err(Error::corrupt("the bundle's bytes do not match the hash in its trailer"));
        }
        let mut extra = [0u8; 1];
        if read_full(&mut self.input, &mut extra)? != 0 {
            return Err(Error::corrupt("trailing data after the bundle"));
        }
        self.offset += TRAILER_LEN as u64;
        self.toc = Some(toc);
        self.expect = Expect::Done;
        Ok(())
    }

    fn finish_fragment(&mut self) -> Result<()> {
        self.close_collection();
        let expected = self.fragment.take();
        let got = self.collections.pop();
        if expected.is_none() || expected != got {
            return Err(Error::corrupt("collection does not match its table of contents entry"));
        }
        self.expect = Expect::Done;
        Ok(())
    }
}

/// A block's header fields and its payload as stored.
struct Stored {
    kind: BlockKind,
    codec: u8,
    raw_len: u32,
    stored_len: u32,
    /// Offset of the block in the bundle.
    start: u64,
    payload: Vec<u8>,
}

/// A zstd decompressor with the window limit of this format's blocks.
fn new_decompressor() -> Result<zstd::bulk::Decompressor<'static>> {
    let mut zstd = zstd::bulk::Decompressor::new().map_err(Error::Io)?;
    // 2^27 = 128 MiB: above any window our writer uses for ≤ 64 MiB blocks.
    zstd.window_log_max(27).map_err(Error::Io)?;
    Ok(zstd)
}

/// Decodes a block's stored payload into `raw` (cleared first).
fn decode(zstd: &mut zstd::bulk::Decompressor<'static>, stored: &Stored, raw: &mut Vec<u8>) -> Result<()> {
    raw.clear();
    if stored.codec == CODEC_ZSTD {
        raw.reserve_exact(stored.raw_len as usize);
        let n = zstd
            .decompress_to_buffer(&stored.payload, raw)
            .map_err(|e| Error::corrupt(format!("block at offset {} does not decompress: {e}", stored.start)))?;
        if n != stored.raw_len as usize {
            return Err(Error::corrupt(format!("block at offset {} decompresses to {n} bytes, not {}", stored.start, stored.raw_len)));
        }
    } else {
        raw.extend_from_slice(&stored.payload);
    }
    Ok(())
}

/// What a worker thread checked in a block's records ahead of the reader:
/// every record before `to` passed the checks of one record taken alone
/// (framing, id, canonical form; for commits, the canonical form only,
/// unless parsed into `commits`), and the record at `to` failed with
/// `failure`. The reader still makes the checks that need the records
/// before (order, parents), so items and errors come out as without it.
#[derive(Default)]
struct Checked {
    to: usize,
    failure: Option<Error>,
    /// The first commits of the block, parsed, in order.
    commits: std::collections::VecDeque<ParsedCommit>,
    /// The hashes of the documents before `to`, in order, when fingerprinting.
    doc_hashes: Vec<u128>,
    /// How many of `doc_hashes` the reader took.
    hashes_taken: usize,
}

/// What a worker checks in a block's records.
#[derive(Clone, Copy)]
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
struct CheckOptions {
    /// Keep the canonical text of each commit's change set.
    keep_text: bool,
    max_record: usize,
    /// Hash each document (a version-2 bundle's fingerprints).
    fingerprint: bool,
}

struct ParsedCommit {
    /// Offset of the record in its block.
    start: usize,
    commit: Commit,
    /// The canonical text of its change set, when kept.
    text: Option<Vec<u8>>,
}

/// Commit records a worker parses ahead per block, in bytes of record
/// text (the rest only has its canonical form checked): bounds the memory
/// parsed commits ahead of the reader take.
const PARSE_AHEAD: usize = 4 << 20;

/// Checks the records of a block on its own (see [`Checked`]).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn check_records(kind: BlockKind, raw: &[u8], options: CheckOptions) -> Checked {
    let CheckOptions { keep_text, max_record, fingerprint } = options;
    let mut checked = Checked::default();
    let mut parsed = 0;
    while checked.to < raw.len() {
        let mut pos = checked.to;
        let result = match kind {
            BlockKind::Documents => document_record(raw, &mut pos, max_record, true).map(|(_, json)| {
                if fingerprint {
                    checked.doc_hashes.push(fingerprint::document(json));
                }
            }),
            BlockKind::Commits => take_record(raw, &mut pos, max_record).and_then(|json| {
                if parsed >= PARSE_AHEAD {
                    return canonical_commit(json);
                }
                let (commit, text) = commit_record(json, true, keep_text)?;
                parsed += json.len();
                checked.commits.push_back(ParsedCommit { start: checked.to, commit, text });
                Ok(())
            }),
            _ => return checked,
        };
        if let Err(e) = result {
            checked.failure = Some(e);
            return checked;
        }
        checked.to = pos;
    }
    checked
}

/// The document record at `*pos`: its id and canonical JSON. `check_json`
/// false skips the canonical check (a worker made it).
fn document_record<'a>(buf: &'a [u8], pos: &mut usize, max_record: usize, check_json: bool) -> Result<(&'a str, &'a [u8])> {
    let id_len = get_varint(buf, pos)? as usize;
    if id_len > MAX_ID_LEN || id_len > buf.len() - *pos {
        return Err(Error::corrupt("document id length out of bounds"));
    }
    let id = std::str::from_utf8(&buf[*pos..*pos + id_len]).map_err(|_| Error::corrupt("document id is not UTF-8"))?;
    *pos += id_len;
    validate_id("document", id).map_err(|e| Error::corrupt(e.to_string()))?;
    let json = take_record(buf, pos, max_record)?;
    if check_json && !canonical::is_canonical(json) {
        return Err(Error::corrupt(format!("document {id:?} is not canonical JSON")));
    }
    Ok((id, json))
}

/// Parses and validates a commit record, with the canonical text of its
/// change set when `keep_text`. `check_json` false skips the canonical
/// check (a worker made it).
fn commit_record(json: &[u8], check_json: bool, keep_text: bool) -> Result<(Commit, Option<Vec<u8>>)> {
    if check_json {
        canonical_commit(json)?;
    }
    let commit = parse_commit(json)?;
    commit.validate().map_err(|e| Error::corrupt(e.to_string()))?;
    let text = if keep_text { changes_text(json, &commit).map(<[u8]>::to_vec) } else { None };
    Ok((commit, text))
}

/// A commit record as a bundle must hold it: every member present (the
/// `Commit` type fills missing ones with defaults, for hand-written
/// history files), nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitRecord {
    author: String,
    changes: Vec<crate::snapshot::Change>,
    id: String,
    message: String,
    parents: Vec<String>,
    timestamp: i64,
}

/// Parses a commit record, which must be canonical JSON with exactly the
/// members of a commit. Canonical text that parses into the strict record
/// type (all members present, none unknown, in each change too) re-encodes
/// to the same bytes, so this is the check of `canonical::from_canonical`
/// without building, re-serializing and comparing a value tree.
#[cfg(test)]
fn read_commit(json: &[u8]) -> Result<Commit> {
    canonical_commit(json)?;
    parse_commit(json)
}

/// The first check of a commit record: its canonical form.
fn canonical_commit(json: &[u8]) -> Result<()> {
    if !canonical::is_canonical(json) {
        return Err(Error::corrupt("commit record is not in canonical form"));
    }
    Ok(())
}

/// Parses a commit record whose canonical form was checked.
fn parse_commit(json: &[u8]) -> Result<Commit> {
    let r: CommitRecord = serde_json::from_slice(json).map_err(|e| Error::corrupt(format!("commit record: {e}")))?;
    Ok(Commit { id: r.id, parents: r.parents, author: r.author, message: r.message, timestamp: r.timestamp, changes: r.changes })
}

/// The change set's text inside a canonical commit record: the record is
/// `{"author":…,"changes":[…],"id":…,"message":…,"parents":[…],"timestamp":…}`
/// with members in this order, so the text lies between the encodings of
/// the members around it. `None` if they do not frame it (never, for a
/// record [`commit_record`] accepted).
fn changes_text<'a>(json: &'a [u8], commit: &Commit) -> Option<&'a [u8]> {
    let mut prefix = b"{\"author\":".to_vec();
    canonical::write_string(&commit.author, &mut prefix);
    prefix.extend_from_slice(b",\"changes\":");
    let mut suffix = b",\"id\":".to_vec();
    canonical::write_string(&commit.id, &mut suffix);
    suffix.extend_from_slice(b",\"message\":");
    canonical::write_string(&commit.message, &mut suffix);
    suffix.extend_from_slice(b",\"parents\":[");
    for (i, parent) in commit.parents.iter().enumerate() {
        if i > 0 {
            suffix.push(b',');
        }
        canonical::write_string(parent, &mut suffix);
    }
    suffix.extend_from_slice(format!("],\"timestamp\":{}}}", commit.timestamp).as_bytes());
    let text = json.strip_prefix(prefix.as_slice())?.strip_suffix(suffix.as_slice())?;
    (text.first() == Some(&b'[') && text.last() == Some(&b']')).then_some(text)
}

fn take_record<'a>(buf: &'a [u8], pos: &mut usize, max: usize) -> Result<&'a [u8]> {
    let len = get_varint(buf, pos)? as usize;
    if len > max.min(MAX_RECORD) || len > buf.len() - *pos {
        return Err(Error::corrupt("record length out of bounds"));
    }
    let record = &buf[*pos..*pos + len];
    *pos += len;
    Ok(record)
}

/// Reads and checks the header; returns the format version.
fn read_header<R: Read>(input: &mut R, header: &mut [u8; HEADER_LEN]) -> Result<u16> {
    let got = read_full(input, header)?;
    if got < MAGIC.len() || header[..MAGIC.len()] != MAGIC {
        if got < MAGIC.len() && header[..got] == MAGIC[..got] {
            return Err(Error::truncated("input ends inside the bundle magic"));
        }
        return Err(Error::NotABundle("bad magic (not a coffer bundle)".into()));
    }
    if got < HEADER_LEN {
        return Err(Error::truncated("input ends inside the bundle header"));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    let flags = u16::from_le_bytes([header[10], header[11]]);
    if !(MIN_READ_VERSION..=VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion(format!("bundle version {version}; this build reads versions {MIN_READ_VERSION} to {VERSION}")));
    }
    if flags != 0 {
        return Err(Error::UnsupportedVersion(format!("bundle flags {flags:#06x} are not understood")));
    }
    Ok(version)
}

/// Reads the table of contents of a seekable bundle without decoding the
/// content (it is not checked against the content: use a full read for that).
pub fn read_toc<R: Read + Seek>(input: &mut R) -> Result<Toc> {
    input.seek(SeekFrom::Start(0))?;
    let mut header = [0u8; HEADER_LEN];
    let version = read_header(input, &mut header)?;
    let len = input.seek(SeekFrom::End(0))?;
    let min = (HEADER_LEN + BLOCK_HEADER_LEN + TRAILER_LEN) as u64;
    if len < min {
        return Err(Error::truncated("bundle too short to hold a table of contents"));
    }
    input.seek(SeekFrom::Start(len - TRAILER_LEN as u64))?;
    let mut trailer = [0u8; TRAILER_LEN];
    input.read_exact(&mut trailer).map_err(|e| from_read(e, "trailer"))?;
    if trailer[40..] != END_MAGIC {
        return Err(Error::truncated("bundle has no trailer (truncated?)"));
    }
    let toc_offset = u64::from_le_bytes(trailer[..8].try_into().map_err(|_| Error::corrupt("trailer"))?);
    if toc_offset < HEADER_LEN as u64 || toc_offset > len - min + HEADER_LEN as u64 {
        return Err(Error::corrupt("table of contents offset out of range"));
    }
    input.seek(SeekFrom::Start(toc_offset))?;
    let toc_len = len - TRAILER_LEN as u64 - toc_offset;
    let mut fragment = BundleReader::with_state(input.take(toc_len), ReadLimits::default(), toc_offset, Expect::Toc, None, version)?;
    fragment.read_toc_block()
}

impl<R: Read> BundleReader<R> {
    /// Reads exactly one TOC block and nothing else (used by [`read_toc`]).
    fn read_toc_block(&mut self) -> Result<Toc> {
        let start = self.offset;
        let mut header = [0u8; BLOCK_HEADER_LEN];
        if read_full(&mut self.input, &mut header)? < BLOCK_HEADER_LEN || header[0] != BlockKind::Toc as u8 {
            return Err(Error::corrupt("no table of contents block where the trailer points"));
        }
        self.read_payload(&header, start).map_err(|e| {
            if e.code() == "TRUNCATED" {
                Error::corrupt("table of contents block does not end at the trailer")
            } else {
                e
            }
        })?;
        let mut extra = [0u8; 1];
        if read_full(&mut self.input, &mut extra)? != 0 {
            return Err(Error::corrupt("table of contents block does not end at the trailer"));
        }
        canonical::from_canonical(&self.block, "table of contents")
    }
}

/// Opens one collection of a seekable bundle: yields its
/// [`Item::Collection`] then its documents, and checks the collection's hash
/// and counts against the table of contents at the end. Nothing else is decoded.
pub fn read_collection<R: Read + Seek>(mut input: R, name: &str) -> Result<BundleReader<Take<R>>> {
    let toc = read_toc(&mut input)?;
    let Some(entry) = toc.collections.iter().find(|c| c.name == name).cloned() else {
        return Err(Error::invalid(format!("the bundle has no collection {name:?}")));
    };
    input.seek(SeekFrom::Start(entry.offset))?;
    let stored = entry.stored_bytes;
    let offset = entry.offset;
    // A fragment reads documents only: the version matters to commits.
    BundleReader::with_state(input.take(stored), ReadLimits::default(), offset, Expect::Body, Some(entry), VERSION)
}

/// Read-ahead: blocks are read on the reader's thread (the input is a
/// stream, and the trailer hash covers the stored bytes in order) and
/// decoded on worker threads — decompression and the checks of
/// [`check_records`] — a bounded number ahead; they come back in order, and
/// so do their errors, each where the block stands in the bundle.
#[cfg(not(target_arch = "wasm32"))]
mod ahead {
    use std::collections::VecDeque;
    use std::sync::mpsc;

    use super::{check_records, decode, new_decompressor, CheckOptions, Checked, Stored};
    use crate::bundle::workers::Workers;
    use crate::bundle::{BlockKind, BLOCK_HEADER_LEN};
    use crate::error::{Error, Result};

    /// No further block is read ahead once the blocks waiting hold this
    /// many raw bytes (one block always may be: memory stays within one
    /// block of the largest size plus this).
    const AHEAD_RAW: u64 = 8 << 20;

    /// A block read ahead, decoded and checked, or the clean end of a fragment.
    pub(super) enum Next {
        Block { stored: Stored, raw: Vec<u8>, checked: Checked },
        End,
    }

    type Decoded = (Stored, Result<(Vec<u8>, Checked)>);
    type Job = (Stored, CheckOptions, mpsc::SyncSender<Decoded>);

    enum Slot {
        Block { raw_len: u32, reply: mpsc::Receiver<Decoded> },
        End,
        Failed(Error),
    }

    pub(super) struct ReadAhead {
        threads: usize,
        pool: Option<Pool>,
        queue: VecDeque<Slot>,
        queued_raw: u64,
        /// Offset of the next block to read ahead; `None` once no more may
        /// be read (the table of contents, the end of input or an error came).
        next_offset: Option<u64>,
    }

    impl ReadAhead {
        /// `threads == 0` picks the machine's parallelism; 1 reads inline.
        pub(super) fn new(threads: usize) -> Self {
            let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) } else { threads };
            Self { threads, pool: None, queue: VecDeque::new(), queued_raw: 0, next_offset: None }
        }

        pub(super) fn running(&self) -> bool {
            self.pool.is_some()
        }

        /// Whether to start reading ahead at a block of this kind: the first
        /// block of records, when more than one thread is wanted.
        pub(super) fn wants(&self, kind: u8) -> bool {
            self.pool.is_none() && self.threads > 1 && (kind == BlockKind::Documents as u8 || kind == BlockKind::Commits as u8)
        }

        /// Starts the workers with the first block.
        pub(super) fn start(&mut self, first: Stored, options: CheckOptions) -> Result<()> {
            self.pool = Some(Pool::new(self.threads)?);
            self.push(Ok(Some(first)), options);
            Ok(())
        }

        /// The offset of the next block to read ahead, if there is room for it.
        pub(super) fn room(&self) -> Option<u64> {
            let room = self.queue.is_empty() || (self.queue.len() < self.threads + 2 && self.queued_raw < AHEAD_RAW);
            self.next_offset.filter(|_| room)
        }

        /// Queues what reading the next block gave.
        pub(super) fn push(&mut self, next: Result<Option<Stored>>, options: CheckOptions) {
            let slot = match next {
                Ok(Some(stored)) => {
                    let end = stored.start + BLOCK_HEADER_LEN as u64 + u64::from(stored.stored_len);
                    // The trailer follows the table of contents: it is read by the reader itself.
                    self.next_offset = (stored.kind != BlockKind::Toc).then_some(end);
                    let raw_len = stored.raw_len;
                    let submitted = match &self.pool {
                        Some(pool) => pool.submit(stored, options),
                        None => Err(stopped()),
                    };
                    match submitted {
                        Ok(reply) => {
                            self.queued_raw += u64::from(raw_len);
                            Slot::Block { raw_len, reply }
                        }
                        Err(e) => {
                            self.next_offset = None;
                            Slot::Failed(e)
                        }
                    }
                }
                Ok(None) => {
                    self.next_offset = None;
                    Slot::End
                }
                Err(e) => {
                    self.next_offset = None;
                    Slot::Failed(e)
                }
            };
            self.queue.push_back(slot);
        }

        /// The next block, in bundle order (waiting for its worker).
        pub(super) fn pop(&mut self) -> Result<Next> {
            match self.queue.pop_front() {
                Some(Slot::Block { raw_len, reply }) => {
                    self.queued_raw -= u64::from(raw_len);
                    let (stored, decoded) = reply.recv().map_err(|_| stopped())?;
                    let (raw, checked) = decoded?;
                    Ok(Next::Block { stored, raw, checked })
                }
                Some(Slot::End) => Ok(Next::End),
                Some(Slot::Failed(e)) => Err(e),
                None => Err(Error::Io(std::io::Error::other("the bundle reader cannot go on after an error"))),
            }
        }
    }

    fn stopped() -> Error {
        Error::Io(std::io::Error::other("a bundle decoding worker stopped"))
    }

    /// Decoding workers, each with its zstd context.
    struct Pool(Workers<Job>);

    impl Pool {
        fn new(threads: usize) -> Result<Self> {
            Workers::<Job>::new(threads, "coffer-decode", new_decompressor, |zstd, (stored, options, reply)| {
                let mut raw = Vec::new();
                let decoded = decode(zstd, &stored, &mut raw).map(|()| {
                    let checked = check_records(stored.kind, &raw, options);
                    (raw, checked)
                });
                let _ = reply.send((stored, decoded));
            })
            .map(Self)
        }

        fn submit(&self, stored: Stored, options: CheckOptions) -> Result<mpsc::Receiver<Decoded>> {
            let (reply, rx) = mpsc::sync_channel(1);
            if self.0.send((stored, options, reply)) {
                Ok(rx)
            } else {
                Err(stopped())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_records_must_be_canonical_and_complete() {
        let good =
            br#"{"author":"ada","changes":[{"collection":"c","document":{"a":1},"id":"d","op":"put"}],"id":"c1","message":"m","parents":["c0"],"timestamp":5}"#;
        let commit = read_commit(good).unwrap();
        assert_eq!(canonical::to_vec(&serde_json::to_value(&commit).unwrap()).unwrap(), good.to_vec());
        for bad in [
            &br#"{"author":"ada","changes":[],"id":"c1","parents":["c0"],"timestamp":5}"#[..], // no message
            br#"{"author":"ada","changes":[],"extra":1,"id":"c1","message":"m","parents":[],"timestamp":5}"#,
            br#"{"author":"ada","changes":[],"id":"c1","message":"m","parents":[],"timestamp":5.5}"#,
            br#"{"changes":[],"author":"ada","id":"c1","message":"m","parents":[],"timestamp":5}"#, // key order
            br#"{"author":"ada", "changes":[],"id":"c1","message":"m","parents":[],"timestamp":5}"#,
        ] {
            assert_eq!(read_commit(bad).unwrap_err().code(), "CORRUPT", "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_changes_text_of_a_commit_record_is_its_canonical_change_set() {
        let records: [&[u8]; 3] = [
            br#"{"author":"ada","changes":[{"collection":"c","document":{"a":[1,"]"]},"id":"d","op":"put"}],"id":"c1","message":"m","parents":["c0"],"timestamp":5}"#,
            br#"{"author":"\"],\"changes\":[","changes":[],"id":"x","message":"\u0001\n","parents":[],"timestamp":-7}"#,
            br#"{"author":"","changes":[{"collection":"c","op":"drop"},{"op":"schema","schema":null}],"id":"c2","message":"","parents":["a","b"],"timestamp":0}"#,
        ];
        for record in records {
            let commit = read_commit(record).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(record)));
            let expected = canonical::to_vec(&serde_json::to_value(&commit.changes).unwrap()).unwrap();
            assert_eq!(changes_text(record, &commit), Some(&expected[..]), "{}", String::from_utf8_lossy(record));
        }
    }

    #[test]
    fn header_errors_have_precise_codes() {
        let code = |b: &[u8]| BundleReader::new(b, ReadLimits::default()).err().map(|e| e.code());
        assert_eq!(code(b"hello world, not a bundle"), Some("NOT_A_BUNDLE"));
        assert_eq!(code(&MAGIC[..5]), Some("TRUNCATED"));
        assert_eq!(code(b""), Some("TRUNCATED"));
        for version in [0u16, VERSION + 1] {
            let mut header = MAGIC.to_vec();
            header.extend_from_slice(&version.to_le_bytes());
            header.extend_from_slice(&0u16.to_le_bytes());
            assert_eq!(code(&header), Some("UNSUPPORTED_VERSION"), "version {version}");
        }
    }
}
