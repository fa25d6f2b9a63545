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
use std::io::{BufWriter, Read, Write};
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
/// same id are an error. Documents are canonicalized on all cores.
fn load_documents(source: &Source) -> Result<Vec<(String, Vec<u8>)>> {
    let (path, lines) = match source {
        Source::Array(p) | Source::Lines(p) => (p.as_path(), matches!(source, Source::Lines(_))),
    };
    let text = read_file(path)?;
    let items: Vec<(usize, &[u8])> = if lines {
        text.split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace)).map(|(n, l)| (n + 1, l)).collect()
    } else {
        match split_array(&text) {
            Some(items) => items.into_iter().enumerate().map(|(n, item)| (n + 1, item)).collect(),
            None => {
                // Not a well-formed array: let the reference parser say why.
                return match canonical::parse(&text).map_err(|e| in_file(path, e))? {
                    Value::Array(_) => Err(in_file(path, Error::invalid("malformed JSON array"))),
                    _ => Err(in_file(path, Error::invalid("expected a JSON array of documents"))),
                };
            }
        }
    };
    let what = if lines { "line" } else { "document" };
    let mut docs = canonicalize_parallel(&items, |(n, item)| canonical::document(item).map_err(|e| in_file(path, prefix(e, &format!("{what} {n}")))))?;
    drop(text);
    docs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then_with(|| a.1.cmp(&b.1)));
    docs.dedup();
    if let Some(w) = docs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(in_file(path, Error::invalid(format!("two different documents have the id {:?}", w[0].0))));
    }
    Ok(docs)
}

fn prefix(e: Error, at: &str) -> Error {
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{at}: {m}")),
        Error::LimitExceeded(m) => Error::LimitExceeded(format!("{at}: {m}")),
        other => other,
    }
}

/// Maps `f` over `items` on all cores, keeping order; the first error wins.
fn canonicalize_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads < 2 || items.len() < 1024 {
        return items.iter().map(&f).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    let parts: Vec<Result<Vec<R>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(per).map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Result<Vec<R>>>())).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::invalid("worker thread panicked")))).collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Splits a JSON array into the text of its elements, without parsing them.
/// `None` when the text is not an array of balanced values (the reference
/// parser then reports the error).
fn split_array(buf: &[u8]) -> Option<Vec<&[u8]>> {
    let ws = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    let mut i = buf.iter().position(|&b| !ws(b))?;
    if buf[i] != b'[' {
        return None;
    }
    i += 1;
    let mut items = Vec::new();
    while buf.get(i).is_some_and(|&b| ws(b)) {
        i += 1;
    }
    if buf.get(i) == Some(&b']') {
        return buf[i + 1..].iter().all(|&b| ws(b)).then_some(items);
    }
    loop {
        let start = i;
        let mut depth = 0usize;
        loop {
            match *buf.get(i)? {
                b'"' => {
                    i += 1;
                    loop {
                        match *buf.get(i)? {
                            b'\\' => i += 2,
                            b'"' => break,
                            _ => i += 1,
                        }
                    }
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth == 0 => break,
                b']' | b'}' => depth -= 1,
                b',' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        items.push(&buf[start..i]);
        match buf[i] {
            b',' => i += 1,
            b']' => return buf[i + 1..].iter().all(|&b| ws(b)).then_some(items),
            _ => return None,
        }
    }
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
