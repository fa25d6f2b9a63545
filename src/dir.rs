//! The directory form of a snapshot, as `coffer bundle DIR` reads it and
//! `coffer unbundle` writes it:
//!
//! ```text
//! DIR/schema.json          optional: the schema (any JSON value)
//! DIR/history.json         optional: {"commits": [...], "branches": {...}}
//! DIR/NAME.json            a collection: a JSON array of documents, or
//! DIR/NAME.ndjson          a collection: one document per line
//! DIR/NAME.config.json     optional: the collection's config (a JSON object)
//! ```
//!
//! Documents carry their id in `"id"` or `"@id"`; others get an id derived
//! from their content (see [`crate::snapshot::document_id`]). Bundling a
//! directory that `unbundle` wrote gives back identical bundle bytes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::bundle::{BundleReader, BundleWriter, Item, ReadLimits, Summary, WriteOptions};
use crate::canonical;
use crate::error::{Error, Result};
use crate::snapshot::{document_id, validate_collection_name, History};

/// Largest single collection file read (they are read one at a time).
pub const MAX_COLLECTION_FILE: u64 = 16 << 30;

enum Source {
    Array(PathBuf),
    Lines(PathBuf),
}

/// Bundles the directory `dir` into `out`.
pub fn bundle_dir<W: Write>(dir: &Path, out: W, options: WriteOptions) -> Result<(W, Summary)> {
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    let mut configs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut schema_path = None;
    let mut history_path = None;
    let entries = fs::read_dir(dir).map_err(|e| Error::invalid(format!("cannot read directory {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).map(str::to_string) else {
            return Err(Error::invalid(format!("file name {} is not UTF-8", path.display())));
        };
        if file.starts_with('.') || path.is_dir() {
            continue;
        }
        if file == "schema.json" {
            schema_path = Some(path);
        } else if file == "history.json" {
            history_path = Some(path);
        } else if let Some(name) = file.strip_suffix(".config.json") {
            validate_collection_name(name)?;
            configs.insert(name.to_string(), path);
        } else if let Some(name) = file.strip_suffix(".ndjson") {
            add_source(&mut sources, name, Source::Lines(path))?;
        } else if let Some(name) = file.strip_suffix(".json") {
            add_source(&mut sources, name, Source::Array(path))?;
        } else {
            return Err(Error::invalid(format!("unexpected file {file:?}: expected NAME.json, NAME.ndjson, NAME.config.json, schema.json or history.json")));
        }
    }
    if let Some(name) = configs.keys().find(|n| !sources.contains_key(*n)) {
        return Err(Error::invalid(format!("{name}.config.json has no {name}.json or {name}.ndjson beside it")));
    }
    let schema = match &schema_path {
        Some(p) => canonical::parse(&read_file(p)?).map_err(|e| in_file(p, e))?,
        None => Value::Null,
    };
    let history: History = match &history_path {
        Some(p) => serde_json::from_slice(&read_file(p)?).map_err(|e| in_file(p, Error::invalid(format!("malformed history: {e}"))))?,
        None => History::default(),
    };
    let commits = history.canonical_order().map_err(|e| in_file(history_path.as_deref().unwrap_or(dir), e))?;
    let mut writer = BundleWriter::new(out, &schema, options)?;
    for (name, source) in &sources {
        let config = match configs.get(name) {
            Some(p) => match canonical::parse(&read_file(p)?).map_err(|e| in_file(p, e))? {
                Value::Object(map) => map,
                _ => return Err(in_file(p, Error::invalid("a collection config must be a JSON object"))),
            },
            None => Map::new(),
        };
        let docs = load_documents(source)?;
        writer.begin_collection(name, &config)?;
        for (id, json) in &docs {
            writer.add_canonical_document(id, json)?;
        }
    }
    for commit in commits {
        writer.add_commit(commit)?;
    }
    writer.finish(&history.branches)
}

fn add_source(sources: &mut BTreeMap<String, Source>, name: &str, source: Source) -> Result<()> {
    validate_collection_name(name)?;
    if sources.insert(name.to_string(), source).is_some() {
        return Err(Error::invalid(format!("collection {name:?} is given twice (NAME.json and NAME.ndjson)")));
    }
    Ok(())
}

fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{}: {m}", path.display())),
        Error::LimitExceeded(m) => Error::LimitExceeded(format!("{}: {m}", path.display())),
        other => other,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let len = fs::metadata(path)?.len();
    if len > MAX_COLLECTION_FILE {
        return Err(Error::limit(format!("{} is {len} bytes; the limit is {MAX_COLLECTION_FILE}", path.display())));
    }
    Ok(fs::read(path)?)
}

/// Reads one collection file: (id, canonical JSON) sorted by id. A document
/// given twice identically counts once; two different documents with the
/// same id are an error.
fn load_documents(source: &Source) -> Result<Vec<(String, Vec<u8>)>> {
    let (path, values): (&Path, Vec<Value>) = match source {
        Source::Array(p) => match canonical::parse(&read_file(p)?).map_err(|e| in_file(p, e))? {
            Value::Array(items) => (p, items),
            _ => return Err(in_file(p, Error::invalid("expected a JSON array of documents"))),
        },
        Source::Lines(p) => {
            let mut items = Vec::new();
            let mut reader = BufReader::with_capacity(1 << 20, fs::File::open(p)?);
            let mut line = Vec::new();
            let mut number = 0usize;
            loop {
                line.clear();
                number += 1;
                if reader.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                items.push(canonical::parse(&line).map_err(|e| in_file(p, Error::invalid(format!("line {number}: {e}"))))?);
            }
            (p, items)
        }
    };
    let mut docs = Vec::with_capacity(values.len());
    for value in &values {
        let id = document_id(value).map_err(|e| in_file(path, e))?;
        docs.push((id, canonical::to_vec(value).map_err(|e| in_file(path, e))?));
    }
    drop(values);
    docs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then_with(|| a.1.cmp(&b.1)));
    docs.dedup();
    if let Some(w) = docs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(in_file(path, Error::invalid(format!("two different documents have the id {:?}", w[0].0))));
    }
    Ok(docs)
}

/// What [`unbundle_to_dir`] wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnbundleSummary {
    /// Collections written.
    pub collections: u64,
    /// Documents written.
    pub documents: u64,
    /// Commits written.
    pub commits: u64,
    /// Documents whose id was not recoverable from their body and was added as `"@id"`.
    pub ids_added: u64,
}

/// Writes the bundle read from `input` as the directory `dir`, which must not
/// exist yet. The directory appears only once everything was written and the
/// bundle verified; on any error nothing is left behind.
pub fn unbundle_to_dir<R: Read>(input: R, dir: &Path) -> Result<UnbundleSummary> {
    if dir.exists() {
        return Err(Error::invalid(format!("{} already exists", dir.display())));
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::invalid("bad output directory name"))?;
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let result = write_dir(input, &staging).and_then(|summary| {
        fs::rename(&staging, dir)?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn write_dir<R: Read>(input: R, dir: &Path) -> Result<UnbundleSummary> {
    fs::create_dir(dir)?;
    let mut reader = BundleReader::new(input, ReadLimits::default())?;
    let mut summary = UnbundleSummary::default();
    let mut current: Option<BufWriter<fs::File>> = None;
    let mut history: Option<BufWriter<fs::File>> = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Schema(schema) => {
                if !schema.is_null() {
                    let mut text = canonical::to_vec(&schema)?;
                    text.push(b'\n');
                    fs::write(dir.join("schema.json"), text)?;
                }
            }
            Item::Collection { name, config } => {
                if let Some(mut w) = current.take() {
                    w.flush()?;
                }
                if !config.is_empty() {
                    let mut text = canonical::to_vec(&Value::Object(config))?;
                    text.push(b'\n');
                    fs::write(dir.join(format!("{name}.config.json")), text)?;
                }
                current = Some(BufWriter::with_capacity(1 << 20, fs::File::create(dir.join(format!("{name}.ndjson")))?));
                summary.collections += 1;
            }
            Item::Document(doc) => {
                let w = current.as_mut().ok_or_else(|| Error::corrupt("document outside a collection"))?;
                let mut value = doc.value()?;
                if document_id(&value).ok().as_deref() != Some(doc.id.as_str()) {
                    let Value::Object(map) = &mut value else {
                        return Err(Error::invalid(format!("document {:?} is not an object and its id is not derivable from it", doc.id)));
                    };
                    map.insert("@id".into(), Value::String(doc.id.clone()));
                    summary.ids_added += 1;
                    w.write_all(&canonical::to_vec(&value)?)?;
                } else {
                    w.write_all(&doc.json)?;
                }
                w.write_all(b"\n")?;
                summary.documents += 1;
            }
            Item::Commit(commit) => {
                if let Some(mut w) = current.take() {
                    w.flush()?;
                }
                let w = match &mut history {
                    Some(w) => {
                        w.write_all(b",\n")?;
                        w
                    }
                    None => {
                        let mut w = BufWriter::new(fs::File::create(dir.join("history.json"))?);
                        w.write_all(b"{\"commits\":[\n")?;
                        history.insert(w)
                    }
                };
                w.write_all(&canonical::to_vec(&serde_json::to_value(&*commit).map_err(|e| Error::corrupt(e.to_string()))?)?)?;
                summary.commits += 1;
            }
            Item::Branches(branches) => {
                if let Some(mut w) = current.take() {
                    w.flush()?;
                }
                let branches = canonical::to_vec(&serde_json::to_value(&branches).map_err(|e| Error::corrupt(e.to_string()))?)?;
                match history.take() {
                    Some(mut w) => {
                        w.write_all(b"\n],\"branches\":")?;
                        w.write_all(&branches)?;
                        w.write_all(b"}\n")?;
                        w.flush()?;
                    }
                    None if branches != b"{}" => {
                        return Err(Error::corrupt("branches without commits"));
                    }
                    None => {}
                }
            }
        }
    }
    Ok(summary)
}
