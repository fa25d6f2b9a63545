//! Fingerprints of a bundle's documents, for the rule of version 2
//! (docs/FORMAT.md §3.2): a put in the history is written without its
//! document exactly when the bundle's documents hold that collection and id
//! with byte-identical canonical JSON.
//!
//! Writer and reader keep, per document, a 128-bit key (blake3 of
//! `collection ‖ 0x00 ‖ id`; a collection name holds no NUL byte) and the
//! 128-bit blake3 of its canonical JSON: 32 bytes per document, in one vector
//! sorted once the documents end (up to twice that while the vector grows),
//! plus an index of half a byte per document (native builds).

use super::get_varint;
use crate::error::Result;

/// Key and document hash of one document.
pub(crate) type Entry = (u128, u128);

/// The key of the document `id` of `collection`.
#[inline(never)] // one copy: the wasm build has a size budget
pub(crate) fn key(collection: &str, id: &str) -> u128 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(collection.as_bytes());
    hasher.update(&[0]);
    hasher.update(id.as_bytes());
    first_128(hasher.finalize())
}

/// The hash of a document's canonical JSON.
#[inline(never)] // one copy: the wasm build has a size budget
pub(crate) fn document(json: &[u8]) -> u128 {
    first_128(blake3::hash(json))
}

fn first_128(hash: blake3::Hash) -> u128 {
    let mut half = [0u8; 16];
    half.copy_from_slice(&hash.as_bytes()[..16]);
    u128::from_le_bytes(half)
}

/// The hashes of the documents of a DOCUMENTS block's raw payload, in order.
/// Stops quietly at a malformed record: the block's own checks report it.
pub(crate) fn document_hashes(raw: &[u8], out: &mut Vec<u128>) {
    let mut pos = 0;
    while pos < raw.len() {
        let Ok(id_len) = get_varint(raw, &mut pos) else { return };
        let Some(after_id) = pos.checked_add(id_len as usize).filter(|&end| end <= raw.len()) else { return };
        pos = after_id;
        let Ok(len) = get_varint(raw, &mut pos) else { return };
        let Some(end) = pos.checked_add(len as usize).filter(|&end| end <= raw.len()) else { return };
        out.push(document(&raw[pos..end]));
        pos = end;
    }
}

/// The fingerprints of a bundle's documents.
#[derive(Default)]
pub(crate) struct Fingerprints {
    entries: Vec<Entry>,
    sorted: bool,
    /// Once sorted: where the entries whose key's top `bits` bits are `b`
    /// start (`starts[b]`) — a lookup searches ~8 entries, not the whole
    /// vector (a binary search over millions misses the cache at every step).
    bits: u32,
    starts: Vec<u32>,
}

impl Fingerprints {
    #[inline(never)] // one copy: the wasm build has a size budget
    pub(crate) fn push(&mut self, entry: Entry) {
        self.sorted = false;
        self.entries.push(entry);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sets the document hash of the entry at `index` (pushed with a
    /// placeholder while its block was hashed elsewhere).
    pub(crate) fn set_document(&mut self, index: usize, document: u128) {
        if let Some(entry) = self.entries.get_mut(index) {
            entry.1 = document;
        }
    }

    /// Sorts the entries by key: call once the documents ended.
    pub(crate) fn seal(&mut self) -> Result<()> {
        if !self.sorted {
            #[cfg(not(target_arch = "wasm32"))]
            self.entries.sort_unstable_by_key(|e| e.0);
            #[cfg(target_arch = "wasm32")]
            heapsort(&mut self.entries);
            self.entries.shrink_to_fit();
            self.sorted = true;
            // About 8 entries a bucket: half a byte per document. (Not in
            // the wasm build, which has a size budget and small bundles.)
            #[cfg(not(target_arch = "wasm32"))]
            self.index();
        }
        Ok(())
    }

    /// Builds `starts`.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn index(&mut self) {
        let n = self.entries.len();
        self.bits = if n < 16 || n > u32::MAX as usize { 0 } else { (n / 8).ilog2() };
        self.starts = vec![0; (1 << self.bits) + 1];
        for i in 0..n {
            let b = self.bucket(self.entries[i].0);
            self.starts[b + 1] += 1;
        }
        for b in 1..self.starts.len() {
            self.starts[b] += self.starts[b - 1];
        }
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn bucket(&self, key: u128) -> usize {
        key.checked_shr(128 - self.bits).unwrap_or(0) as usize
    }

    /// The document hash of the document with this key, if there is one.
    #[inline(never)] // one copy: the wasm build has a size budget
    pub(crate) fn get(&self, key: u128) -> Option<u128> {
        debug_assert!(self.sorted || self.entries.is_empty());
        #[cfg(not(target_arch = "wasm32"))]
        let bucket = match (self.starts.get(self.bucket(key)), self.starts.get(self.bucket(key) + 1)) {
            (Some(&start), Some(&end)) => &self.entries[start as usize..end as usize],
            _ => &self.entries[..],
        };
        #[cfg(target_arch = "wasm32")]
        let bucket = &self.entries[..];
        bucket.binary_search_by_key(&key, |e| e.0).ok().map(|i| bucket[i].1)
    }
}

/// Sorts entries by key: the wasm build's sort, a few hundred bytes where
/// the standard library's sort of a new element type adds kilobytes (the
/// package has a size budget); bundles opened in a browser are small.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn heapsort(v: &mut [Entry]) {
    fn sift_down(v: &mut [Entry], mut node: usize, end: usize) {
        loop {
            let mut child = 2 * node + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child].0 < v[child + 1].0 {
                child += 1;
            }
            if v[node].0 >= v[child].0 {
                return;
            }
            v.swap(node, child);
            node = child;
        }
    }
    for node in (0..v.len() / 2).rev() {
        sift_down(v, node, v.len());
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::put_varint;

    #[test]
    fn hashes_of_a_documents_block_come_in_order() {
        let mut raw = Vec::new();
        for (id, json) in [("a", &b"{\"x\":1}"[..]), ("b", b"null")] {
            put_varint(&mut raw, id.len() as u64);
            raw.extend_from_slice(id.as_bytes());
            put_varint(&mut raw, json.len() as u64);
            raw.extend_from_slice(json);
        }
        let mut out = Vec::new();
        document_hashes(&raw, &mut out);
        assert_eq!(out, vec![document(b"{\"x\":1}"), document(b"null")]);
        let mut f = Fingerprints::default();
        f.push((key("c", "b"), out[1]));
        f.push((key("c", "a"), out[0]));
        f.seal().unwrap();
        assert_eq!(f.get(key("c", "a")), Some(out[0]));
        assert_eq!(f.get(key("c", "z")), None);
        assert_ne!(key("c", "a"), key("ca", ""));
    }

    #[test]
    fn the_wasm_sort_sorts() {
        for n in [0usize, 1, 2, 3, 10, 1000] {
            let mut v: Vec<Entry> = (0..n).map(|i| (u128::from(document(&i.to_le_bytes()).to_le_bytes()[0] % 7), i as u128)).collect();
            let mut expected = v.clone();
            expected.sort_by_key(|e| e.0);
            heapsort(&mut v);
            assert_eq!(v.iter().map(|e| e.0).collect::<Vec<_>>(), expected.iter().map(|e| e.0).collect::<Vec<_>>());
        }
    }
}

/// What fingerprints cost, for docs/FORMAT.md and the writer's docs:
/// `cargo test --release --lib fingerprint_costs -- --ignored --nocapture`.
#[cfg(test)]
mod costs {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn fingerprint_costs() {
        let n = 1_000_000usize;
        let ids: Vec<String> = (0..n).map(|i| format!("document-{i:012}")).collect();
        let doc = vec![b'x'; 1000];
        let t = Instant::now();
        let mut f = Fingerprints::default();
        for id in &ids {
            f.push((key("collection", id), 0));
        }
        let keys = t.elapsed();
        let t = Instant::now();
        let mut sum = 0u128;
        for i in 0..n / 4 {
            sum ^= document(&doc[..1000 - (i % 7)]);
        }
        let docs = t.elapsed();
        let t = Instant::now();
        f.seal().unwrap();
        let sort = t.elapsed();
        let mut g: Vec<Entry> = f.entries.iter().rev().copied().collect();
        let t = Instant::now();
        heapsort(&mut g);
        let heap = t.elapsed();
        let t = Instant::now();
        let found = ids.iter().filter(|id| f.get(key("collection", id)).is_some()).count();
        let lookups = t.elapsed();
        assert_eq!(found, n);
        println!(
            "{n} keys: {:.0} ns/doc; document hash of 1000 bytes: {:.0} ns ({:.0} MB/s); sort: {:.0} ns/doc (heapsort {:.0}); lookup: {:.0} ns/put [{sum:x}]",
            keys.as_nanos() as f64 / n as f64,
            docs.as_nanos() as f64 / (n / 4) as f64,
            (n / 4 * 1000) as f64 / docs.as_secs_f64() / 1e6,
            sort.as_nanos() as f64 / n as f64,
            heap.as_nanos() as f64 / n as f64,
            lookups.as_nanos() as f64 / n as f64,
        );
    }
}
