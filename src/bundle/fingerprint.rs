//! Fingerprints of a bundle's documents, for the rule of version 2
//! (docs/FORMAT.md §3.2): a put in the history is written without its
//! document exactly when the bundle's documents hold that collection and id
//! with byte-identical canonical JSON.
//!
//! Writer and reader keep, per document, a 128-bit key (blake3 of
//! `collection ‖ 0x00 ‖ id`; a collection name holds no NUL byte) and the
//! 128-bit blake3 of its canonical JSON: 32 bytes per document, in one vector
//! sorted once the documents end (up to twice that while the vector grows).

use super::get_varint;
use crate::error::Result;

/// Key and document hash of one document.
pub(crate) type Entry = (u128, u128);

/// The key of the document `id` of `collection`.
pub(crate) fn key(collection: &str, id: &str) -> u128 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(collection.as_bytes());
    hasher.update(&[0]);
    hasher.update(id.as_bytes());
    first_128(hasher.finalize())
}

/// The hash of a document's canonical JSON.
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
}

impl Fingerprints {
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
            self.entries.sort_unstable_by_key(|e| e.0);
            self.entries.shrink_to_fit();
            self.sorted = true;
        }
        Ok(())
    }

    /// The document hash of the document with this key, if there is one.
    pub(crate) fn get(&self, key: u128) -> Option<u128> {
        debug_assert!(self.sorted || self.entries.is_empty());
        self.entries.binary_search_by_key(&key, |e| e.0).ok().map(|i| self.entries[i].1)
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
}
