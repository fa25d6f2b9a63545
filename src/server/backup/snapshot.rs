//! Database ⇄ bundle: the consistent snapshot a backup writes, and the
//! atomic restore that reads one back.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value};

use super::{Filter, LiveProgress};
use crate::bundle::{BundleReader, BundleWriter, CanonicalCommit, Item, WriteOptions};
use crate::server::error::{ApiError, ApiResult};
use crate::server::store::data::{self, MAIN};
use crate::server::store::{Bulk, Store};
use crate::snapshot::{Change, Commit, History};

/// What a backup of one database wrote.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Bundle content digest.
    pub digest: String,
    /// Head of `main` captured.
    pub head: Option<String>,
    /// Documents written.
    pub documents: u64,
    /// Commits written.
    pub commits: u64,
    /// Collections written.
    pub collections: Vec<String>,
}

/// Keeps the changes a filter covers (schema changes always).
fn filter_changes(changes: &[Change], filter: &Filter) -> Vec<Change> {
    changes.iter().filter(|c| c.collection().is_none_or(|name| filter.covers(name))).cloned().collect()
}

/// Writes database `org/db` as a bundle to `out`: the state of `main`, the
/// whole history and every branch, all read inside one read transaction, so
/// the bundle is the database at one commit while writers go on.
pub fn write_database<W: Write>(store: &Store, org: &str, db: &str, filter: &Filter, out: W, progress: &LiveProgress, threads: usize) -> ApiResult<(W, Stats)> {
    store.read(|conn| {
        // Pages read through a memory map, not copied by read(2) into
        // SQLite's cache: a backup reads every page of the database once.
        conn.pragma_update(None, "mmap_size", BACKUP_MMAP_SIZE)?;
        let result = snapshot_database(conn, org, db, filter, out, progress, threads);
        conn.pragma_update(None, "mmap_size", 0)?;
        result
    })
}

/// Largest part of the store file a backup's read connection maps
/// (SQLite caps it at its own limit, 2 GiB by default).
const BACKUP_MMAP_SIZE: i64 = 1 << 40;

fn snapshot_database<W: Write>(
    conn: &mut rusqlite::Connection,
    org: &str,
    db: &str,
    filter: &Filter,
    out: W,
    progress: &LiveProgress,
    threads: usize,
) -> ApiResult<(W, Stats)> {
    {
        let tx = conn.transaction()?;
        let id = data::db_id(&tx, org, db)?;
        let head = data::branch_head(&tx, id, MAIN)?;
        let (docs, bytes): (i64, i64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(octet_length(v.body)), 0) FROM documents d JOIN versions v ON v.vid = d.vid WHERE d.db = ?1 AND d.branch = ?2",
            params![id, MAIN],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        progress.documents_total.fetch_add(docs as u64, Ordering::Relaxed);
        progress.bytes_total.fetch_add(bytes as u64, Ordering::Relaxed);
        let schema = data::branch_schema(&tx, id, MAIN)?;
        // The puts are decided here (canonical_changes and the parse path
        // below apply the format's rule from the versions): the writer
        // hashes no document.
        let mut writer = BundleWriter::new(out, &schema, WriteOptions { threads, puts_decided: true })?;
        let collections = data::list_collections(&tx, id, MAIN)?;
        let mut documents = 0u64;
        let mut names = Vec::new();
        let mut yielder = Yielder::new();
        {
            let mut stmt = tx.prepare(
                "SELECT d.id, v.body FROM documents d JOIN versions v ON v.vid = d.vid WHERE d.db = ?1 AND d.branch = ?2 AND d.collection = ?3 ORDER BY d.id",
            )?;
            for (name, config, _) in &collections {
                if !filter.covers(name) {
                    continue;
                }
                writer.begin_collection(name, config)?;
                names.push(name.clone());
                let mut rows = stmt.query(params![id, MAIN, name])?;
                while let Some(row) = rows.next()? {
                    yielder.tick();
                    let doc_id = row.get_ref(0)?.as_str().map_err(|_| ApiError::internal("document id is not text"))?;
                    let body = row.get_ref(1)?.as_str().map_err(|_| ApiError::internal("document body is not text"))?;
                    // Stored bodies are canonical JSON already (the store writes
                    // them with canonical::to_vec, restores canonicalize): no re-encoding.
                    writer.add_canonical_document(doc_id, body.as_bytes())?;
                    documents += 1;
                    progress.documents_done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Order the history from ids and parents only, then stream each
        // commit's change set: memory stays at one commit, not the history.
        let mut commits: Vec<Commit> = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT id, parents FROM commits WHERE db = ?1")?;
            let mut rows = stmt.query([id])?;
            while let Some(row) = rows.next()? {
                let parents: Vec<String> = serde_json::from_str(row.get_ref(1)?.as_str().map_err(|_| ApiError::internal("parents not text"))?)?;
                commits.push(Commit { id: row.get(0)?, parents, author: String::new(), message: String::new(), timestamp: 0, changes: Vec::new() });
            }
        }
        let filtering = filter.include.is_some() || filter.exclude.is_some();
        let branches: BTreeMap<String, String> = data::list_branches(&tx, id)?.into_iter().filter_map(|(b, h)| h.map(|h| (b, h))).collect();
        let history = History { commits, branches };
        let order = history.canonical_order()?;
        {
            let mut stmt = tx.prepare("SELECT author, message, timestamp, changes, canonical FROM commits WHERE db = ?1 AND id = ?2")?;
            let mut main_doc = tx.prepare("SELECT vid FROM documents WHERE db = ?1 AND branch = ?2 AND collection = ?3 AND id = ?4")?;
            let mut body_of = tx.prepare("SELECT body FROM versions WHERE vid = ?1")?;
            let mut main_vid = |collection: &str, doc: &str| -> ApiResult<Option<i64>> {
                Ok(main_doc.query_row(params![id, MAIN, collection, doc], |r| r.get(0)).optional()?)
            };
            let mut text_out = Vec::new();
            for skeleton in &order {
                yielder.tick();
                let mut rows = stmt.query(params![id, skeleton.id])?;
                let row = rows.next()?.ok_or_else(|| ApiError::internal(format!("commit {:?} vanished during the backup", skeleton.id)))?;
                let text = |i: usize| row.get_ref(i)?.as_str().map_err(|_| ApiError::internal("stored commit field is not text"));
                let (author, message, timestamp, changes, canonical) = (text(0)?, text(1)?, row.get::<_, i64>(2)?, text(3)?, row.get::<_, bool>(4)?);
                let copied = canonical
                    && canonical_changes(
                        changes.as_bytes(),
                        filter,
                        &mut main_vid,
                        &mut |vid| Ok(body_of.query_row([vid], |r| r.get::<_, String>(0))?),
                        &mut text_out,
                    )?;
                if copied {
                    // Built from the stored text: other changes copied, puts resolved.
                    writer.add_canonical_commit(&CanonicalCommit {
                        id: &skeleton.id,
                        parents: &skeleton.parents,
                        author,
                        message,
                        timestamp,
                        changes: &text_out,
                    })?;
                } else {
                    // Rows that are not copyable: parsed and encoded (the writer reports what it refuses).
                    let changes = data::load_changes(&tx, changes.as_bytes())?;
                    let mut commit = (*skeleton).clone();
                    commit.author = author.to_string();
                    commit.message = message.to_string();
                    commit.timestamp = timestamp;
                    let changes = if filtering { filter_changes(&changes, filter) } else { changes };
                    let mut out = Vec::with_capacity(changes.len());
                    for change in changes {
                        out.push(match change {
                            Change::Put { collection, id: doc, document } => {
                                let bytes = crate::canonical::to_vec(&document)?;
                                let same = match main_vid(&collection, &doc)? {
                                    Some(vid) => body_of.query_row([vid], |r| Ok(r.get_ref(0)?.as_bytes()? == bytes.as_slice()))?,
                                    None => false,
                                };
                                if same {
                                    Change::PutSnapshot { collection, id: doc }
                                } else {
                                    Change::Put { collection, id: doc, document }
                                }
                            }
                            other => other,
                        });
                    }
                    commit.changes = out;
                    writer.add_commit(&commit)?;
                }
            }
        }
        let (out, summary) = writer.finish(&history.branches)?;
        tx.commit()?;
        Ok((out, Stats { digest: summary.toc.digest, head, documents, commits: order.len() as u64, collections: names }))
    }
}

/// Gives the core up (`sched_yield`) every [`Yielder::EVERY`] of work on a
/// backup's thread, whose loops otherwise make no system call for as long as
/// they run (the store is read through a memory map). Under SCHED_IDLE a
/// writer that woke up on this core waited for the next timer tick, up to
/// 4 ms on the benchmark's VM (HZ=250), instead of preempting the backup:
/// spinning SCHED_IDLE threads alone doubled a writer's p99 there, and
/// yielding every 0.1–2 ms brought it back to its quiet level (BENCHMARKS.md).
struct Yielder(Instant);

impl Yielder {
    const EVERY: Duration = Duration::from_micros(250);

    fn new() -> Self {
        Self(Instant::now())
    }

    fn tick(&mut self) {
        if self.0.elapsed() >= Self::EVERY {
            std::thread::yield_now();
            self.0 = Instant::now();
        }
    }
}

/// The canonical change set a bundle holds for a stored one (`stored`, the
/// store's form, see `data::encode_stored_changes`), into `out`: changes the
/// filter leaves out are left out, other changes are copied as they are
/// stored (canonical JSON), and a put is written without its document
/// exactly when `main` — the bundle's documents — holds that document with
/// the same bytes (the bundle format's rule): when `main`'s document is the
/// put's very version, no body is read at all. False (and `out` unusable)
/// when an inline document nests too deeply for a commit record.
fn canonical_changes(
    stored: &[u8],
    filter: &Filter,
    main_vid: &mut impl FnMut(&str, &str) -> ApiResult<Option<i64>>,
    body: &mut impl FnMut(i64) -> ApiResult<String>,
    out: &mut Vec<u8>,
) -> ApiResult<bool> {
    use crate::canonical::write_string;
    let filtering = filter.include.is_some() || filter.exclude.is_some();
    out.clear();
    out.push(b'[');
    for element in data::stored_elements(stored)? {
        let start = out.len();
        if start > 1 {
            out.push(b',');
        }
        match data::stored_put(element)? {
            Some(put) => {
                if filtering && !filter.covers(&put.collection) {
                    out.truncate(start);
                    continue;
                }
                out.extend_from_slice(b"{\"collection\":");
                write_string(&put.collection, out);
                let main = main_vid(&put.collection, &put.id)?;
                if main != Some(put.v) {
                    let own = body(put.v)?;
                    let same = match main {
                        Some(m) => m != put.v && body(m)? == own,
                        None => false,
                    };
                    if !same {
                        if text_nesting(own.as_bytes()) > MAX_INLINE_NESTING {
                            return Ok(false);
                        }
                        out.extend_from_slice(b",\"document\":");
                        out.extend_from_slice(own.as_bytes());
                    }
                }
                out.extend_from_slice(b",\"id\":");
                write_string(&put.id, out);
                out.extend_from_slice(b",\"op\":\"put\"}");
            }
            None => {
                if filtering {
                    #[derive(serde::Deserialize)]
                    struct Probe {
                        collection: Option<String>,
                    }
                    let probe: Probe = serde_json::from_slice(element).map_err(|_| ApiError::internal("stored changes are not JSON"))?;
                    if probe.collection.is_some_and(|c| !filter.covers(&c)) {
                        out.truncate(start);
                        continue;
                    }
                }
                out.extend_from_slice(element);
            }
        }
    }
    out.push(b']');
    Ok(true)
}

/// Deepest nesting of an inline document in a commit record, as `data::encode_changes` checks.
const MAX_INLINE_NESTING: usize = data::MAX_CHANGE_VALUE_NESTING;

/// Container nesting of a JSON text (0 for a scalar), from its bytes.
fn text_nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for (_, b) in data::structural(text).0 {
        match b {
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Where and how to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Target organization.
    pub org: String,
    /// Target database (created when missing).
    pub db: String,
    /// Collections to restore.
    pub filter: Filter,
    /// Replace collections that exist in the target.
    pub overwrite: bool,
    /// Author of the restore commit (when the target has history).
    pub author: String,
    /// Message of the restore commit.
    pub message: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreCounts {
    /// Documents restored.
    pub records: u64,
    /// Commits added.
    pub commits: u64,
    /// Collections restored.
    pub collections: Vec<String>,
}

/// Restores a bundle into `options.org/options.db` atomically: the bundle's
/// digest and table of contents are only known to be right at its end, so
/// its rows are staged in a hidden database (short transactions, other
/// writers go on between them) and published in one final transaction only
/// then; any failure leaves the target as it was.
///
/// Into a new (or history-less) database the history is copied as is:
/// commits, branches (other branches' states rebuilt by replay), schema.
/// Into a database with history, the backup's commits are added and a
/// restore commit on `main` (parents: the old head and the backup's head)
/// records the collections it replaced.
pub fn restore_bundle<R: Read>(store: &Store, reader: BundleReader<R>, options: &RestoreOptions, seen: &AtomicU64) -> ApiResult<RestoreCounts> {
    // Two threads: this one decrypts, decompresses and checks the bundle,
    // the other writes SQLite. The write transaction commits only after the
    // reader has seen the verified end of the bundle (`Msg::End`).
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Msg>(RESTORE_QUEUE);
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("coffer-restore".into())
            .spawn_scoped(scope, move || apply_items(store, receiver, options, seen))
            .map_err(|e| ApiError::internal(format!("cannot start the restore writer: {e}")))?;
        let mut reader = reader;
        // Change sets are stored in the store's form (puts refer to versions), from the parsed changes.
        reader.keep_changes_text(false);
        // A put without document is resolved below, against the staged
        // document of that id (CORRUPT when there is none): the reader need
        // not fingerprint every document for it.
        reader.caller_resolves_puts(true);
        let read = (|| -> ApiResult<()> {
            // Items go over in batches: one hand-over per batch, not per document.
            let mut batch = Vec::new();
            let mut weight = 0;
            while let Some(item) = reader.next_item()? {
                weight += match &item {
                    Item::Document(doc) => doc.json.len() + doc.id.len(),
                    Item::Commit(commit) => commit.changes.len() * CHANGE_WEIGHT,
                    _ => 0,
                };
                batch.push(item);
                if weight >= RESTORE_BATCH {
                    if sender.send(Msg::Items(std::mem::take(&mut batch))).is_err() {
                        return Ok(()); // the writer stopped: it reports why
                    }
                    weight = 0;
                }
            }
            if !batch.is_empty() && sender.send(Msg::Items(batch)).is_err() {
                return Ok(());
            }
            let _ = sender.send(Msg::End);
            Ok(())
        })();
        if let Err(e) = read {
            let _ = sender.send(Msg::Failed(e));
        }
        drop(sender);
        writer.join().map_err(|_| ApiError::internal("the restore writer panicked"))?
    })
}

/// Batches in flight between the bundle reader and the SQLite writer.
const RESTORE_QUEUE: usize = 4;
/// A batch is handed over once its items weigh this much (document bytes;
/// [`CHANGE_WEIGHT`] per change of a commit).
const RESTORE_BATCH: usize = 4 << 20;
/// What one change of a commit counts for in a batch's weight.
const CHANGE_WEIGHT: usize = 1024;

enum Msg {
    /// Items.
    Items(Vec<Item>),
    /// The bundle ended and verified.
    End,
    /// The bundle failed to read or verify.
    Failed(ApiError),
}

/// What the staging phase of a restore gathered for its final step.
#[derive(Default)]
struct Staged {
    schema: Value,
    branches: BTreeMap<String, String>,
    /// Collections restored, with their configs, in bundle order.
    configs: Vec<(String, Map<String, Value>)>,
    counts: RestoreCounts,
}

/// The writer side of a restore. Rows go into a hidden staging database
/// ([`data::STAGING_ORG`]) in one short write transaction per batch, so the
/// store's writer lock is free between batches and other databases' writes
/// go on; the restore becomes visible in one final transaction once the
/// bundle has verified to its end. Any failure drops the staging database
/// (in short transactions too): the target stays as it was.
fn apply_items(store: &Store, items: std::sync::mpsc::Receiver<Msg>, options: &RestoreOptions, seen: &AtomicU64) -> ApiResult<RestoreCounts> {
    // Checkpoints wait until the restore is published (Store::bulk).
    let bulk = store.bulk();
    let staging = store.write(|tx| data::create_database(tx, data::STAGING_ORG, &crate::server::store::new_ksuid(), "", ""))?;
    let result = stage(store, &bulk, staging, items, options, seen).and_then(|staged| store.write(|tx| publish(tx, staging, staged, options)));
    if result.is_err() {
        if let Err(e) = drop_staging(store, staging) {
            tracing::warn!(code = e.code, error = %e.message, "cannot drop a failed restore's staging rows (the next start does)");
        }
    }
    result
}

/// Writes the bundle's items into the staging database, batch by batch.
fn stage(store: &Store, bulk: &Bulk<'_>, staging: i64, items: std::sync::mpsc::Receiver<Msg>, options: &RestoreOptions, seen: &AtomicU64) -> ApiResult<Staged> {
    let target = store.read(|c| {
        Ok(c.query_row("SELECT id FROM databases WHERE org = ?1 AND name = ?2", [&options.org, &options.db], |r| r.get::<_, i64>(0)).optional()?)
    })?;
    let existing: HashSet<String> = match target {
        Some(db) => store.read(|c| Ok(c.prepare("SELECT id FROM commits WHERE db = ?1")?.query_map([db], |r| r.get(0))?.collect::<Result<_, _>>()?))?,
        None => HashSet::new(),
    };
    let filtering = options.filter.include.is_some() || options.filter.exclude.is_some();
    let mut staged = Staged::default();
    let mut current: Option<String> = None;
    for msg in items.iter() {
        let batch = match msg {
            Msg::Items(batch) => batch,
            Msg::End => return Ok(staged),
            Msg::Failed(e) => return Err(e),
        };
        let bytes: usize = batch.iter().map(|item| if let Item::Document(doc) = item { doc.json.len() + doc.id.len() } else { 0 }).sum();
        bulk.wrote(bytes as u64);
        store.write(|tx| {
            let mut insert = tx.prepare_cached("INSERT INTO documents (db, branch, collection, id, vid) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            let mut staged_vid = tx.prepare_cached("SELECT vid FROM documents WHERE db = ?1 AND branch = ?2 AND collection = ?3 AND id = ?4")?;
            for item in batch {
                match item {
                    Item::Schema(s) => staged.schema = s,
                    Item::Collection { name, config } => {
                        if !options.filter.covers(&name) {
                            current = None;
                            continue;
                        }
                        if !options.overwrite {
                            check_free(tx, options, &name)?;
                        }
                        data::apply_change(tx, staging, MAIN, &Change::Configure { collection: name.clone(), config: config.clone() })?;
                        staged.configs.push((name.clone(), config));
                        staged.counts.collections.push(name.clone());
                        current = Some(name);
                    }
                    Item::Document(doc) => {
                        seen.fetch_add(1, Ordering::Relaxed);
                        if let Some(collection) = &current {
                            // Stored as is: the store keeps canonical bodies, and the
                            // reader refuses a document that is not canonical JSON.
                            let body = std::str::from_utf8(&doc.json).map_err(|_| ApiError::new("CORRUPT", "document is not UTF-8"))?;
                            let vid = data::insert_version(tx, staging, body)?;
                            insert.execute(params![staging, MAIN, collection, doc.id, vid])?;
                            staged.counts.records += 1;
                        }
                    }
                    Item::Commit(c) => {
                        let mut c = *c;
                        if !existing.contains(&c.id) {
                            if filtering {
                                c.changes = filter_changes(&c.changes, &options.filter);
                            }
                            // An inline put gets a version of its own; a put without
                            // document is the bundle's (staged) document of that id.
                            let mut vids = Vec::with_capacity(c.changes.len());
                            for change in &c.changes {
                                vids.push(match change {
                                    Change::Put { document, .. } => {
                                        let body = String::from_utf8(crate::canonical::to_vec(document)?)
                                            .map_err(|_| ApiError::internal("canonical JSON is not UTF-8"))?;
                                        Some((data::insert_version(tx, staging, &body)?, body.len()))
                                    }
                                    Change::PutSnapshot { collection, id } => {
                                        let vid: Option<i64> = staged_vid.query_row(params![staging, MAIN, collection, id], |r| r.get(0)).optional()?;
                                        let vid = vid.ok_or_else(|| {
                                            ApiError::new(
                                                "CORRUPT",
                                                format!("commit {} puts {collection}/{id} without document, and the bundle has no such document", c.id),
                                            )
                                        })?;
                                        Some((vid, 0))
                                    }
                                    _ => None,
                                });
                            }
                            data::insert_commit(tx, staging, &c, &vids)?;
                            staged.counts.commits += 1;
                        }
                    }
                    Item::Branches(b) => staged.branches = b,
                }
            }
            Ok(())
        })?;
    }
    Err(ApiError::internal("the bundle reader stopped before the end"))
}

/// CONFLICT when collection `name` exists in the target (and `overwrite` is not set).
fn check_free(tx: &rusqlite::Transaction<'_>, options: &RestoreOptions, name: &str) -> ApiResult<()> {
    let target = tx.query_row("SELECT id FROM databases WHERE org = ?1 AND name = ?2", [&options.org, &options.db], |r| r.get::<_, i64>(0)).optional()?;
    if let Some(db) = target {
        if data::collection_exists(tx, db, MAIN, name)? {
            return Err(ApiError::conflict(format!("collection {name:?} exists in {}/{}; set overwrite to replace it", options.org, options.db)));
        }
    }
    Ok(())
}

/// The final step, in one transaction: the whole bundle has been read and
/// checked. Into a new (or never written) database, the staging database
/// takes the target's name: no row moves. Into a database with history, the
/// staged rows move over (replaced collections dropped first), and a restore
/// commit records the change.
fn publish(tx: &rusqlite::Transaction<'_>, staging: i64, staged: Staged, options: &RestoreOptions) -> ApiResult<RestoreCounts> {
    let Staged { schema, branches, configs, mut counts } = staged;
    let target: Option<(i64, String, String, i64)> = tx
        .query_row("SELECT id, label, comment, created_at FROM databases WHERE org = ?1 AND name = ?2", [&options.org, &options.db], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let old_head = match &target {
        Some((db, ..)) => data::branch_head(tx, *db, MAIN)?,
        None => None,
    };
    let backup_main = branches.get(MAIN).cloned();
    let db = match (target, old_head) {
        (target, None) => {
            // Nothing was ever written to the target: the staging database becomes it.
            let (label, comment, created_at) = match target {
                Some((old, label, comment, created_at)) => {
                    tx.execute("DELETE FROM documents WHERE db = ?1", [old])?;
                    tx.execute("DELETE FROM versions WHERE db = ?1", [old])?;
                    tx.execute("DELETE FROM databases WHERE id = ?1", [old])?;
                    (label, comment, created_at)
                }
                None => (String::new(), "restored from a backup".to_string(), crate::server::store::now_ms()),
            };
            tx.execute(
                "UPDATE databases SET org = ?2, name = ?3, label = ?4, comment = ?5, created_at = ?6 WHERE id = ?1",
                params![staging, options.org, options.db, label, comment, created_at],
            )?;
            tx.execute(
                "UPDATE branches SET head = ?3, schema = ?4 WHERE db = ?1 AND name = ?2",
                params![staging, MAIN, backup_main, serde_json::to_string(&schema)?],
            )?;
            staging
        }
        (Some((db, ..)), Some(old_head)) => {
            let mut configure = Vec::new();
            for (name, config) in configs {
                if data::collection_exists(tx, db, MAIN, &name)? {
                    if !options.overwrite {
                        return Err(ApiError::conflict(format!("collection {name:?} exists in {}/{}; set overwrite to replace it", options.org, options.db)));
                    }
                    data::apply_change(tx, db, MAIN, &Change::Drop { collection: name.clone() })?;
                }
                let change = Change::Configure { collection: name, config };
                data::apply_change(tx, db, MAIN, &change)?;
                configure.push(change);
            }
            drop_duplicate_versions(tx, staging, db)?;
            tx.execute("UPDATE documents SET db = ?1 WHERE db = ?2", params![db, staging])?;
            tx.execute("UPDATE versions SET db = ?1 WHERE db = ?2", params![db, staging])?;
            tx.execute("UPDATE commits SET db = ?1 WHERE db = ?2 AND id NOT IN (SELECT id FROM commits WHERE db = ?1)", params![db, staging])?;
            tx.execute("DELETE FROM databases WHERE id = ?1", [staging])?;
            if options.overwrite && !schema.is_null() {
                tx.execute("UPDATE branches SET schema = ?3 WHERE db = ?1 AND name = ?2", params![db, MAIN, serde_json::to_string(&schema)?])?;
            }
            let parents: Vec<String> = std::iter::once(old_head).chain(backup_main).collect();
            let commit = Commit {
                id: crate::server::store::new_ksuid(),
                parents: dedup(parents),
                author: options.author.clone(),
                message: options.message.clone(),
                timestamp: crate::server::store::now_ms(),
                changes: configure,
            };
            data::insert_commit(tx, db, &commit, &[])?;
            tx.execute("UPDATE branches SET head = ?3 WHERE db = ?1 AND name = ?2", params![db, MAIN, commit.id])?;
            counts.commits += 1;
            db
        }
        (None, Some(_)) => return Err(ApiError::internal("a head without a database")),
    };
    for (name, head) in &branches {
        if name == MAIN {
            continue;
        }
        let exists = tx.query_row("SELECT 1 FROM branches WHERE db = ?1 AND name = ?2", params![db, name], |_| Ok(())).optional()?.is_some();
        if !exists {
            data::create_branch(tx, db, name, head)?;
        }
    }
    Ok(counts)
}

/// Deletes the versions of the staged commits the target holds already (the
/// target gained them while the restore was staged: they stay behind, with
/// the staging database, and their versions must not move as orphans). A
/// put's own version is never shared in staging, except the staged
/// document's, which stays.
fn drop_duplicate_versions(tx: &rusqlite::Transaction<'_>, staging: i64, target: i64) -> ApiResult<()> {
    let texts: Vec<String> = tx
        .prepare("SELECT changes FROM commits WHERE db = ?1 AND id IN (SELECT id FROM commits WHERE db = ?2)")?
        .query_map(params![staging, target], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut staged_vid = tx.prepare_cached("SELECT vid FROM documents WHERE db = ?1 AND branch = ?2 AND collection = ?3 AND id = ?4")?;
    for text in &texts {
        for element in data::stored_elements(text.as_bytes())? {
            if let Some(put) = data::stored_put(element)? {
                let document: Option<i64> = staged_vid.query_row(params![staging, MAIN, put.collection, put.id], |r| r.get(0)).optional()?;
                if document != Some(put.v) {
                    tx.execute("DELETE FROM versions WHERE vid = ?1 AND db = ?2", params![put.v, staging])?;
                }
            }
        }
    }
    Ok(())
}

/// Rows deleted per transaction when a staging database is dropped.
const DROP_DOCUMENTS: usize = 2048;
/// Commits deleted per transaction (a commit may hold megabytes of changes).
const DROP_COMMITS: usize = 64;

/// Drops a staging database in short transactions (the writer lock is
/// free between them).
pub fn drop_staging(store: &Store, staging: i64) -> ApiResult<()> {
    for (sql, limit) in [
        (
            "DELETE FROM documents WHERE db = ?1 AND (branch, collection, id) IN (SELECT branch, collection, id FROM documents WHERE db = ?1 LIMIT ?2)",
            DROP_DOCUMENTS,
        ),
        ("DELETE FROM versions WHERE vid IN (SELECT vid FROM versions WHERE db = ?1 LIMIT ?2)", DROP_DOCUMENTS),
        ("DELETE FROM commits WHERE seq IN (SELECT seq FROM commits WHERE db = ?1 LIMIT ?2)", DROP_COMMITS),
    ] {
        while store.write(|tx| Ok(tx.prepare_cached(sql)?.execute(params![staging, limit as i64])?))? > 0 {}
    }
    store.write(|tx| Ok(tx.execute("DELETE FROM databases WHERE id = ?1 AND org = ?2", params![staging, data::STAGING_ORG])?))?;
    Ok(())
}

/// Drops the staging databases of restores a crash cut short.
pub fn drop_all_staging(store: &Store) -> ApiResult<usize> {
    let ids: Vec<i64> =
        store.read(|c| Ok(c.prepare("SELECT id FROM databases WHERE org = ?1")?.query_map([data::STAGING_ORG], |r| r.get(0))?.collect::<Result<_, _>>()?))?;
    for &id in &ids {
        drop_staging(store, id)?;
    }
    Ok(ids.len())
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}
