//! Bundles from and to JavaScript objects, the table of contents, digests.
//!
//! The JS snapshot shape is `{ schema, collections: { name: { config,
//! documents: [...] } }, history }` with documents as an *array*. The JS
//! layer sends each document as one line of NDJSON (`JSON.stringify`), and
//! this module treats the lines exactly as `coffer bundle` treats a
//! `NAME.ndjson` file (see `crate::dir`): id and canonical bytes from
//! [`canonical::document`], stored in id order, identical duplicates
//! merged, conflicting ones refused. The same snapshot therefore gives the
//! same bytes here and in the CLI.

use std::collections::btree_map::{BTreeMap, Entry};
use std::io::{Cursor, Read, Take};

use serde_json::{json, Map, Value};
use wasm_bindgen::prelude::*;

use super::{json_text, JsResult};
use crate::bundle::{self, BundleReader, BundleWriter, Item, ReadLimits, Toc, WriteOptions};
use crate::canonical;
use crate::error::{Error, Result};
use crate::seal::{self, OpenLimits};
use crate::snapshot::{document_id, validate_collection_name, Change, History};

/// One collection being built: its config and its documents (id → canonical JSON).
struct Pending {
    config: Map<String, Value>,
    documents: BTreeMap<String, Vec<u8>>,
}

/// Collects a snapshot piece by piece, then writes the bundle.
///
/// JS: `collection(name, configJson)`, then `documents(ndjson)` any number of
/// times (the documents go to the last collection named), then
/// `finish(schemaJson, historyJson)`. Collections may come in any order.
#[wasm_bindgen]
pub struct BundleBuilder {
    collections: BTreeMap<String, Pending>,
    current: Option<String>,
}

impl Default for BundleBuilder {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl BundleBuilder {
    /// An empty snapshot.
    #[wasm_bindgen(constructor)]
    pub fn new() -> BundleBuilder {
        BundleBuilder { collections: BTreeMap::new(), current: None }
    }

    /// Starts collection `name` with its config (a JSON object; `{}` for none).
    pub fn collection(&mut self, name: &str, config_json: &str) -> JsResult<()> {
        validate_collection_name(name)?;
        if self.collections.contains_key(name) {
            return Err(Error::InvalidInput(format!("collection {name:?} is given twice")).into());
        }
        let config = match canonical::parse(config_json.as_bytes())? {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(Error::InvalidInput(format!("collection {name:?}: config must be a JSON object")).into()),
        };
        self.collections.insert(name.to_string(), Pending { config, documents: BTreeMap::new() });
        self.current = Some(name.to_string());
        Ok(())
    }

    /// Adds documents to the current collection: one JSON document per line.
    pub fn documents(&mut self, ndjson: &str) -> JsResult<()> {
        let Some(pending) = self.current.as_ref().and_then(|name| self.collections.get_mut(name)) else {
            return Err(Error::InvalidInput("documents must follow a collection".into()).into());
        };
        // Lines as `coffer bundle` reads a NAME.ndjson file; the id and the
        // canonical bytes come from the same function it uses, and the same
        // rule applies: identical duplicates merge, different ones with one
        // id are refused. (A map rather than the CLI's sort: one less sort
        // instantiation in the wasm.)
        for line in ndjson.as_bytes().split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (id, json) = canonical::document(line)?;
            match pending.documents.entry(id) {
                Entry::Vacant(slot) => {
                    slot.insert(json);
                }
                Entry::Occupied(existing) if *existing.get() == json => {}
                Entry::Occupied(existing) => {
                    let name = self.current.as_deref().unwrap_or_default();
                    return Err(Error::InvalidInput(format!("collection {name:?}: two different documents have the id {:?}", existing.key())).into());
                }
            }
        }
        Ok(())
    }

    /// Writes the bundle. `schema_json` is any JSON value (`null` for none),
    /// `history_json` a `{commits, branches}` object.
    pub fn finish(&mut self, schema_json: &str, history_json: &str) -> JsResult<Vec<u8>> {
        let collections = std::mem::take(&mut self.collections);
        self.current = None;
        Ok(build(collections, schema_json, history_json)?)
    }
}

fn build(collections: BTreeMap<String, Pending>, schema_json: &str, history_json: &str) -> Result<Vec<u8>> {
    let schema = canonical::parse(schema_json.as_bytes())?;
    let history: History = serde_json::from_slice(history_json.as_bytes()).map_err(|e| Error::InvalidInput(format!("malformed history: {e}")))?;
    let commits = history.canonical_order()?;
    let mut writer = BundleWriter::new(Vec::new(), &schema, WriteOptions { threads: 1, ..Default::default() })?;
    for (name, Pending { config, documents }) in collections {
        writer.begin_collection(&name, &config)?;
        for (id, json) in &documents {
            writer.add_canonical_document(id, json)?;
        }
    }
    for commit in commits {
        writer.add_commit(commit)?;
    }
    Ok(writer.finish(&history.branches)?.0)
}

/// A document's canonical JSON as `coffer unbundle` writes it: with an
/// `"@id"` added when the id cannot be derived from the body, so bundling the
/// result again gives the same bytes.
fn document_text(doc: &bundle::DocumentRef) -> Result<Vec<u8>> {
    let mut value = doc.value()?;
    if document_id(&value).ok().as_deref() == Some(doc.id.as_str()) {
        return Ok(doc.json.clone());
    }
    let Value::Object(map) = &mut value else {
        return Err(Error::InvalidInput(format!("document {:?} is not an object and its id is not derivable from it", doc.id)));
    };
    map.insert("@id".into(), Value::String(doc.id.clone()));
    canonical::to_vec(&value)
}

/// Appends `value` as JSON text. Not the canonical writer: wrapping values
/// read from a bundle in more nesting must not hit the canonical depth limit,
/// and `JSON.parse` on the other side does not care about key order.
fn push_json(out: &mut Vec<u8>, value: &Value) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(|e| Error::corrupt(format!("cannot write JSON: {e}")))
}

/// Appends `"name":` (JSON-escaped) to `out`.
fn key(out: &mut Vec<u8>, name: &str) -> Result<()> {
    push_json(out, &Value::String(name.to_string()))?;
    out.push(b':');
    Ok(())
}

/// The whole snapshot as JSON text: `{schema, collections: {name: {config,
/// documents: [...]}}, history: {commits, branches}}`, every hash and the
/// digest checked.
#[wasm_bindgen]
pub fn unbundle(bytes: &[u8]) -> JsResult<String> {
    Ok(unbundle_text(bytes)?)
}

/// A reader over a whole bundle in memory. Every entry point reads through
/// the same `BundleReader<Take<Cursor<&[u8]>>>` as [`bundle::read_collection`]
/// gives, so the wasm holds one copy of the reader's code, not two.
fn reader(bytes: &[u8]) -> Result<BundleReader<Take<Cursor<&[u8]>>>> {
    BundleReader::new(Cursor::new(bytes).take(u64::MAX), ReadLimits::default())
}

/// Where [`unbundle_text`] finds a document's stored JSON to resolve a put
/// without document (a version-2 bundle's [`Change::PutSnapshot`]): a range
/// of its output when that is the stored text, else a copy.
enum Stored {
    Output(usize, usize),
    Copy(Vec<u8>),
}

fn unbundle_text(bytes: &[u8]) -> Result<String> {
    let mut reader = reader(bytes)?;
    // Version 2 stores a put of a document the bundle holds without it; JS
    // users get the full put, and bundling it again omits it again.
    let resolve = reader.version() >= 2;
    // In bundle order, which is (collection, id) byte order: binary-searchable.
    let mut stored: Vec<(String, String, Stored)> = Vec::new();
    let mut current = String::new();
    let mut out = Vec::with_capacity(bytes.len() * 4);
    out.extend_from_slice(b"{\"collections\":{");
    let mut schema = Value::Null;
    let mut first_collection = true;
    let mut first_document = true;
    let mut in_collection = false;
    let mut commits: Vec<Value> = Vec::new();
    let mut branches = BTreeMap::new();
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Schema(value) => schema = value,
            Item::Collection { name, config } => {
                if in_collection {
                    out.extend_from_slice(b"]}");
                }
                if !first_collection {
                    out.push(b',');
                }
                first_collection = false;
                key(&mut out, &name)?;
                current = name;
                out.extend_from_slice(b"{\"config\":");
                push_json(&mut out, &Value::Object(config))?;
                out.extend_from_slice(b",\"documents\":[");
                in_collection = true;
                first_document = true;
            }
            Item::Document(doc) => {
                if !first_document {
                    out.push(b',');
                }
                first_document = false;
                let text = document_text(&doc)?;
                if resolve {
                    let place = if text == doc.json { Stored::Output(out.len(), out.len() + text.len()) } else { Stored::Copy(doc.json.clone()) };
                    stored.push((current.clone(), doc.id.clone(), place));
                }
                out.extend_from_slice(&text);
            }
            Item::Commit(mut commit) => {
                for change in &mut commit.changes {
                    if let Change::PutSnapshot { collection, id } = change {
                        // The same document may be put more than once.
                        let found = stored.binary_search_by(|(c, i, _)| (c.as_str(), i.as_str()).cmp(&(collection.as_str(), id.as_str())));
                        let json = match found.map(|at| &stored[at].2) {
                            Ok(Stored::Output(start, end)) => canonical::parse(&out[*start..*end])?,
                            Ok(Stored::Copy(json)) => canonical::parse(json)?,
                            Err(_) => return Err(Error::corrupt("a put without document refers to no document of the bundle")),
                        };
                        let (collection, id) = (std::mem::take(collection), std::mem::take(id));
                        *change = Change::Put { collection, id, document: json };
                    }
                }
                commits.push(serde_json::to_value(&*commit).map_err(|e| Error::corrupt(e.to_string()))?)
            }
            Item::Branches(b) => branches = b,
        }
    }
    if in_collection {
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"},\"schema\":");
    push_json(&mut out, &schema)?;
    out.extend_from_slice(b",\"history\":");
    push_json(&mut out, &json!({"commits": commits, "branches": branches}))?;
    out.push(b'}');
    // Every piece is canonical JSON, hence UTF-8.
    String::from_utf8(out).map_err(|_| Error::corrupt("bundle text is not UTF-8"))
}

/// Visits the config and the documents of one collection (its hash and
/// count are checked against the table of contents at the end).
fn for_each_document(bytes: &[u8], name: &str, mut config: impl FnMut(Map<String, Value>), mut doc: impl FnMut(Vec<u8>)) -> Result<()> {
    let mut reader = bundle::read_collection(Cursor::new(bytes), name)?;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Collection { config: c, .. } => config(c),
            Item::Document(d) => doc(document_text(&d)?),
            _ => return Err(Error::corrupt("unexpected item inside a collection")),
        }
    }
    Ok(())
}

/// One collection as JSON text: `{name, config, documents: [...]}`.
#[wasm_bindgen(js_name = readCollection)]
pub fn read_collection(bytes: &[u8], name: &str) -> JsResult<String> {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"name\":");
    push_json(&mut out, &Value::String(name.to_string()))?;
    out.extend_from_slice(b",\"config\":");
    let mut config = Map::new();
    let mut documents = Vec::new();
    let mut first = true;
    for_each_document(
        bytes,
        name,
        |c| config = c,
        |json| {
            if !first {
                documents.push(b',');
            }
            first = false;
            documents.extend_from_slice(&json);
        },
    )?;
    push_json(&mut out, &Value::Object(config))?;
    out.extend_from_slice(b",\"documents\":[");
    out.extend_from_slice(&documents);
    out.extend_from_slice(b"]}");
    Ok(String::from_utf8(out).map_err(|_| Error::corrupt("bundle text is not UTF-8"))?)
}

/// One collection as NDJSON: exactly the `NAME.ndjson` that `coffer unbundle` writes.
#[wasm_bindgen(js_name = exportCollection)]
pub fn export_collection(bytes: &[u8], name: &str) -> JsResult<Vec<u8>> {
    let mut out = Vec::new();
    for_each_document(
        bytes,
        name,
        |_| {},
        |json| {
            out.extend_from_slice(&json);
            out.push(b'\n');
        },
    )?;
    Ok(out)
}

/// The content digest (blake3, hex) of a plain bundle, after reading and
/// checking all of it.
#[wasm_bindgen]
pub fn digest(bytes: &[u8]) -> JsResult<String> {
    Ok(verify_bundle(bytes)?.digest)
}

/// Reads and checks a whole plain bundle, returning its table of contents.
pub(crate) fn verify_bundle(bytes: &[u8]) -> Result<Toc> {
    if seal::is_sealed(bytes) {
        return Err(Error::NotABundle("this is a sealed file: open it first".into()));
    }
    reader(bytes)?.read_to_end()
}

/// What a file is, without any key, as JSON text: exactly what
/// `coffer inspect --json` prints (the JS layer renames the fields to
/// camelCase). A sealed file needs only its header; a plain bundle needs all
/// of its bytes (its table of contents is at the end and is not checked
/// against the content here).
#[wasm_bindgen]
pub fn inspect(bytes: &[u8]) -> JsResult<String> {
    let value = if bytes.starts_with(&bundle::MAGIC) {
        let toc = bundle::read_toc(&mut Cursor::new(bytes))?;
        json!({"format": "coffer-bundle", "version": bundle::VERSION, "bytes": bytes.len(), "toc": toc})
    } else {
        let info = seal::inspect(bytes, &OpenLimits::default())?;
        serde_json::to_value(info).map_err(|e| Error::corrupt(format!("cannot write JSON: {e}")))?
    };
    Ok(json_text(&value))
}

/// What `bytes` starts like: `"sealed"`, `"bundle"` or `"unknown"`.
#[wasm_bindgen(js_name = fileKind)]
pub fn file_kind(bytes: &[u8]) -> String {
    if seal::is_sealed(bytes) {
        "sealed".into()
    } else if bytes.starts_with(&bundle::MAGIC) {
        "bundle".into()
    } else {
        "unknown".into()
    }
}

/// Checks plaintext as `coffer verify` does: a bundle is read to the end
/// (every block, hash and the digest); other plaintext is accepted only
/// when it came out of a sealed file (whose segments all verified). JSON
/// `{ok, sealed, bytes, digest?, documents?, commits?}`.
#[wasm_bindgen(js_name = verifyPlaintext)]
pub fn verify_plaintext(bytes: &[u8], sealed: bool) -> JsResult<String> {
    let mut result = json!({"ok": true, "sealed": sealed, "bytes": bytes.len()});
    if bytes.starts_with(&bundle::MAGIC) {
        let toc = verify_bundle(bytes)?;
        result["digest"] = json!(toc.digest);
        result["documents"] = json!(toc.collections.iter().map(|c| c.documents).sum::<u64>());
        result["commits"] = json!(toc.commits);
    } else if !sealed {
        return Err(Error::NotABundle("not a coffer bundle or sealed file".into()).into());
    }
    Ok(json_text(&result))
}
