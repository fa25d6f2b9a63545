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
//!
//! In history.json a put may lack its `document` member
//! (`{"op":"put","collection","id"}`): a put of the document the directory
//! holds for that collection and id, as a version-2 bundle stores it
//! (docs/FORMAT.md §3.2). `unbundle` writes puts as the bundle stores them,
//! without resolving them; `bundle` accepts either form (a put without
//! document of a document the directory lacks is `INVALID_INPUT`) and
//! writes every put by the rule, so the two forms give the same bytes.
//!
//! Memory stays bounded whatever the size of a collection file: documents
//! are read as a stream, canonicalized and sorted by id in runs of
//! [`SORT_RUN_BYTES`] of input, and a collection larger than one run is
//! merged from sorted runs spilled to temporary files (in `$TMPDIR`; they
//! take about the collection's canonical size and are removed at the end).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use crate::bundle::{BundleReader, BundleWriter, Item, ReadLimits, Summary, WriteOptions};
use crate::canonical;
use crate::error::{Error, Result};
use crate::snapshot::{document_id, validate_collection_name, History};

/// Largest single collection file read (they are read one at a time).
pub const MAX_COLLECTION_FILE: u64 = 16 << 30;

/// Bytes of collection text canonicalized and sorted in memory at once (see
/// the module documentation).
pub const SORT_RUN_BYTES: usize = 64 << 20;

enum Source {
    Array(PathBuf),
    Lines(PathBuf),
}

/// Bundles the directory `dir` into `out`.
pub fn bundle_dir<W: Write>(dir: &Path, out: W, options: WriteOptions) -> Result<(W, Summary)> {
    bundle_dir_with(dir, out, options, SORT_RUN_BYTES)
}

/// As [`bundle_dir`], sorting each collection in runs of `run_bytes` bytes
/// of input text (the bytes written do not depend on it).
pub fn bundle_dir_with<W: Write>(dir: &Path, out: W, options: WriteOptions, run_bytes: usize) -> Result<(W, Summary)> {
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
        writer.begin_collection(name, &config)?;
        add_documents(source, run_bytes.max(1), &mut |id, json| writer.add_canonical_document(id, json))?;
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

/// Hands the documents of one collection file to `add` as (id, canonical
/// JSON), sorted by id. A document given twice identically counts once; two
/// different documents with the same id are an error. Documents are
/// canonicalized on all cores, in runs of `run_bytes` of input; when there
/// is more than one run, sorted runs go to temporary files and are merged.
fn add_documents(source: &Source, run_bytes: usize, add: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
    let (path, lines) = match source {
        Source::Array(p) | Source::Lines(p) => (p.as_path(), matches!(source, Source::Lines(_))),
    };
    let len = fs::metadata(path)?.len();
    if len > MAX_COLLECTION_FILE {
        return Err(Error::limit(format!("{} is {len} bytes; the limit is {MAX_COLLECTION_FILE}", path.display())));
    }
    let what = if lines { "line" } else { "document" };
    let mut input = BufReader::with_capacity(1 << 20, fs::File::open(path)?);
    let mut batch = Batch::default();
    let mut runs: Vec<Run> = Vec::new();
    let spill_if_full = |batch: &mut Batch, runs: &mut Vec<Run>| -> Result<()> {
        if batch.text.len() >= run_bytes {
            runs.push(Run::spill(&batch.sorted(path, what)?)?);
            *batch = Batch::default();
        }
        Ok(())
    };
    if lines {
        let mut line = Vec::new();
        for n in 1u64.. {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                batch.push(n, line.strip_suffix(b"\n").unwrap_or(&line));
                spill_if_full(&mut batch, &mut runs)?;
            }
        }
    } else {
        let mut splitter = ArraySplitter::default();
        let mut n = 0u64;
        loop {
            let chunk = input.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let used = chunk.len();
            let mut full = false;
            let split = splitter.feed(chunk, &mut |item| {
                n += 1;
                batch.push(n, item);
                full |= batch.text.len() >= run_bytes;
            });
            input.consume(used);
            if let Err(at) = split {
                return Err(malformed_array(path, at, len, run_bytes));
            }
            if full {
                spill_if_full(&mut batch, &mut runs)?;
            }
        }
        if let Err(at) = splitter.finish() {
            return Err(malformed_array(path, at, len, run_bytes));
        }
    }
    let mut out = Deduplicate { add, last: None, path };
    if runs.is_empty() {
        for (id, json) in batch.sorted(path, what)? {
            out.push(id, json)?;
        }
        return Ok(());
    }
    if !batch.items.is_empty() {
        runs.push(Run::spill(&batch.sorted(path, what)?)?);
    }
    drop(batch);
    let mut readers = runs.iter().map(Run::reader).collect::<Result<Vec<_>>>()?;
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (i, reader) in readers.iter_mut().enumerate() {
        if let Some((id, json)) = reader.next_record()? {
            heap.push(Reverse((id, json, i)));
        }
    }
    while let Some(Reverse((id, json, i))) = heap.pop() {
        if let Some((next_id, next_json)) = readers[i].next_record()? {
            heap.push(Reverse((next_id, next_json, i)));
        }
        out.push(id, json)?;
    }
    Ok(())
}

/// The error for a collection file that is not a JSON array of values: the
/// reference parser's precise message when the file is small enough to
/// parse whole, else the byte offset where splitting failed.
fn malformed_array(path: &Path, at: u64, len: u64, run_bytes: usize) -> Error {
    if len <= run_bytes as u64 {
        if let Ok(text) = fs::read(path) {
            return match canonical::parse(&text) {
                Err(e) => in_file(path, e),
                Ok(Value::Array(_)) => in_file(path, Error::invalid("malformed JSON array")),
                Ok(_) => in_file(path, Error::invalid("expected a JSON array of documents")),
            };
        }
    }
    in_file(path, Error::invalid(format!("expected a JSON array of documents; malformed at byte {at}")))
}

/// Documents' text of one run, in input order.
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    /// (line or position number, start, end) in `text`.
    items: Vec<(u64, usize, usize)>,
}

impl Batch {
    fn push(&mut self, n: u64, item: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(item);
        self.items.push((n, start, self.text.len()));
    }

    /// The documents canonicalized (on all cores), sorted by (id, text), exact duplicates removed.
    fn sorted(&self, path: &Path, what: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut docs = canonicalize_parallel(&self.items, |&(n, start, end)| {
            canonical::document(&self.text[start..end]).map_err(|e| in_file(path, prefix(e, &format!("{what} {n}"))))
        })?;
        docs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then_with(|| a.1.cmp(&b.1)));
        docs.dedup();
        Ok(docs)
    }
}

/// Passes sorted documents on, once each; refuses one id with two bodies.
struct Deduplicate<'a> {
    add: &'a mut dyn FnMut(&str, &[u8]) -> Result<()>,
    last: Option<(String, Vec<u8>)>,
    path: &'a Path,
}

impl Deduplicate<'_> {
    fn push(&mut self, id: String, json: Vec<u8>) -> Result<()> {
        if let Some((last_id, last_json)) = &self.last {
            if *last_id == id {
                if *last_json == json {
                    return Ok(());
                }
                return Err(in_file(self.path, Error::invalid(format!("two different documents have the id {id:?}"))));
            }
        }
        (self.add)(&id, &json)?;
        self.last = Some((id, json));
        Ok(())
    }
}

/// A sorted run of (id, canonical JSON) records in a temporary file, removed
/// when dropped. (A few lines of std rather than the `tempfile` crate, which
/// only the CLI depends on: the core keeps its dependencies to the format's.)
struct Run {
    path: PathBuf,
}

impl Run {
    fn spill(docs: &[(String, Vec<u8>)]) -> Result<Run> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("coffer-sort-{}-{}-{nanos}.run", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        let run = Run { path };
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut head = Vec::with_capacity(20);
        for (id, json) in docs {
            head.clear();
            crate::bundle::put_varint(&mut head, id.len() as u64);
            w.write_all(&head)?;
            w.write_all(id.as_bytes())?;
            head.clear();
            crate::bundle::put_varint(&mut head, json.len() as u64);
            w.write_all(&head)?;
            w.write_all(json)?;
        }
        w.flush()?;
        Ok(run)
    }

    fn reader(&self) -> Result<RunReader> {
        Ok(RunReader(BufReader::with_capacity(64 << 10, fs::File::open(&self.path)?)))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

struct RunReader(BufReader<fs::File>);

impl RunReader {
    fn next_record(&mut self) -> Result<Option<(String, Vec<u8>)>> {
        if self.0.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let id = self.field()?;
        let id = String::from_utf8(id).map_err(|_| Error::Io(std::io::Error::other("temporary sort file damaged")))?;
        Ok(Some((id, self.field()?)))
    }

    fn field(&mut self) -> Result<Vec<u8>> {
        let mut len: u64 = 0;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8; 1];
            self.0.read_exact(&mut b)?;
            len |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                let mut field = vec![0u8; usize::try_from(len).map_err(|_| Error::limit("record too large"))?];
                self.0.read_exact(&mut field)?;
                return Ok(field);
            }
        }
        Err(Error::Io(std::io::Error::other("temporary sort file damaged")))
    }
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

/// Splits the text of a JSON array into the text of its elements as the
/// bytes arrive, without parsing them (each element is parsed later, in
/// parallel): strings and nesting are tracked, nothing more. Anything that
/// is not an array of balanced values fails with the offset of the first
/// offending byte; an element that is balanced but not JSON (e.g. `1 2`)
/// is left for the parser to refuse.
#[derive(Default)]
struct ArraySplitter {
    stage: Stage,
    /// Inside an element (`depth`, `in_string`, `escaped` describe where).
    in_item: bool,
    /// A `,` was read: an element must follow.
    after_comma: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The start of an element that spans input chunks.
    carry: Vec<u8>,
    offset: u64,
}

#[derive(Default, PartialEq)]
enum Stage {
    #[default]
    Before,
    Items,
    After,
}

impl ArraySplitter {
    fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(&[u8])) -> std::result::Result<(), u64> {
        let ws = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
        let fail = |i: usize| self.offset + i as u64;
        let mut start = 0;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            if self.in_item {
                if self.in_string {
                    if self.escaped {
                        self.escaped = false;
                    } else if b == b'\\' {
                        self.escaped = true;
                    } else if b == b'"' {
                        self.in_string = false;
                    }
                } else {
                    match b {
                        b'"' => self.in_string = true,
                        b'[' | b'{' => self.depth += 1,
                        b']' | b'}' if self.depth > 0 => self.depth -= 1,
                        b',' | b']' if self.depth == 0 => {
                            let piece = &data[start..i];
                            let text = if self.carry.is_empty() {
                                piece
                            } else {
                                self.carry.extend_from_slice(piece);
                                &self.carry
                            };
                            let end = text.iter().rposition(|&c| !ws(c)).map_or(0, |p| p + 1);
                            emit(&text[..end]);
                            self.carry.clear();
                            self.in_item = false;
                            self.after_comma = b == b',';
                            if b == b']' {
                                self.stage = Stage::After;
                            }
                        }
                        b'}' => return Err(fail(i)),
                        _ => {}
                    }
                }
            } else {
                match self.stage {
                    Stage::Before if b == b'[' => self.stage = Stage::Items,
                    Stage::Items if b == b']' && !self.after_comma => self.stage = Stage::After,
                    Stage::Items if !ws(b) && !matches!(b, b',' | b']' | b'}') => {
                        // An element starts here: look at this byte again as its first.
                        self.in_item = true;
                        self.depth = 0;
                        start = i;
                        continue;
                    }
                    _ if ws(b) => {}
                    _ => return Err(fail(i)),
                }
            }
            i += 1;
        }
        if self.in_item {
            self.carry.extend_from_slice(&data[start..]);
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Checks that the array was closed.
    fn finish(&self) -> std::result::Result<(), u64> {
        if self.stage == Stage::After {
            Ok(())
        } else {
            Err(self.offset)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split_bytewise(text: &[u8]) -> std::result::Result<Vec<String>, u64> {
        let mut splitter = ArraySplitter::default();
        let mut items = Vec::new();
        for b in text {
            splitter.feed(std::slice::from_ref(b), &mut |item| items.push(String::from_utf8_lossy(item).into_owned()))?;
        }
        splitter.finish()?;
        Ok(items)
    }

    #[test]
    fn array_splitter_handles_any_chunking() {
        let text = br#" [ {"a":"x,]}\"y"}, [1,[2]] ,"s\\",3 , null ]  "#;
        let whole = {
            let mut splitter = ArraySplitter::default();
            let mut items = Vec::new();
            splitter.feed(text, &mut |item| items.push(String::from_utf8_lossy(item).into_owned())).unwrap();
            splitter.finish().unwrap();
            items
        };
        assert_eq!(whole, [r#"{"a":"x,]}\"y"}"#, "[1,[2]]", r#""s\\""#, "3", "null"]);
        assert_eq!(split_bytewise(text).unwrap(), whole);
        assert_eq!(split_bytewise(b"[]").unwrap(), Vec::<String>::new());
        assert_eq!(split_bytewise(b"[\n{\"a\":1},\n{\"b\":[2]}\n]").unwrap(), ["{\"a\":1}", "{\"b\":[2]}"]);
        for bad in [&b"[1,]"[..], b"[,1]", b"{}", b"[1", b"[1]]", b"[1} ", b"", b"[1] x"] {
            assert!(split_bytewise(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn runs_spilled_to_disk_give_the_same_bytes_and_catch_conflicts() {
        let dir = std::env::temp_dir().join(format!("coffer-dir-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let mut lines = String::new();
        for i in (0..3000).rev() {
            lines.push_str(&format!("{{\"id\":\"d{:05}\",\"n\":{i},\"pad\":\"{}\"}}\n", i % 2000, "x".repeat(i % 50)));
        }
        // ids d00000..d01999 appear once or twice; the second copy differs (n), except where i % 2000 == i.
        fs::write(dir.join("c.ndjson"), &lines).unwrap();
        let err = bundle_dir_with(&dir, Vec::new(), WriteOptions::default(), 4096).unwrap_err();
        assert!(err.to_string().contains("two different documents have the id"), "{err}");
        let err_whole = bundle_dir(&dir, Vec::new(), WriteOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), err_whole.to_string());

        let mut docs = String::from("[\n");
        for i in (0..3000).rev() {
            docs.push_str(&format!("{{\"id\":\"d{:05}\",\"pad\":\"{}\"}}{}\n", i % 2000, "x".repeat(i % 2000 % 50), if i > 0 { "," } else { "" }));
        }
        docs.push(']');
        fs::remove_file(dir.join("c.ndjson")).unwrap();
        fs::write(dir.join("c.json"), &docs).unwrap();
        fs::write(dir.join("e.ndjson"), lines.replace("\"n\"", "\"m\"").lines().take(2000).collect::<Vec<_>>().join("\n")).unwrap();
        let (whole, summary) = bundle_dir(&dir, Vec::new(), WriteOptions::default()).unwrap();
        assert_eq!(summary.toc.collections[0].documents, 2000, "identical copies count once");
        for run_bytes in [2048, 100_000] {
            let (bytes, _) = bundle_dir_with(&dir, Vec::new(), WriteOptions::default(), run_bytes).unwrap();
            assert!(bytes == whole, "run size {run_bytes} changes the bytes");
        }
        let leftovers = fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("coffer-sort-{}-", std::process::id())));
        assert_eq!(leftovers.count(), 0, "temporary runs are removed");
        fs::remove_dir_all(&dir).unwrap();
    }
}
