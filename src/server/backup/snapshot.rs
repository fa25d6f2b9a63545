//! Database ⇄ bundle: the consistent snapshot a backup writes, and the
//! atomic restore that reads one back.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::{Filter, LiveProgress};
use crate::bundle::{BundleReader, BundleWriter, CanonicalCommit, Item, WriteOptions};
use crate::server::error::{ApiError, ApiResult};
use crate::server::store::data::{self, MAIN};
use crate::server::store::Store;
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
    changes
        .iter()
        .filter(|c| match c {
            Change::Put { collection, .. } | Change::Delete { collection, .. } | Change::Configure { collection, .. } | Change::Drop { collection } => {
                filter.covers(collection)
            }
            Change::Schema { .. } => true,
        })
        .cloned()
        .collect()
}

/// Writes database `org/db` as a bundle to `out`: the state of `main`, the
/// whole history and every branch, all read inside one read transaction, so
/// the bundle is the database at one commit while writers go on.
pub fn write_database<W: Write>(store: &Store, org: &str, db: &str, filter: &Filter, out: W, progress: &LiveProgress, threads: usize) -> ApiResult<(W, Stats)> {
    store.read(|conn| {
        let tx = conn.transaction()?;
        let id = data::db_id(&tx, org, db)?;
        let head = data::branch_head(&tx, id, MAIN)?;
        let (docs, bytes): (i64, i64) =
            tx.query_row("SELECT COUNT(*), COALESCE(SUM(octet_length(body)), 0) FROM documents WHERE db = ?1 AND branch = ?2", params![id, MAIN], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        progress.documents_total.fetch_add(docs as u64, Ordering::Relaxed);
        progress.bytes_total.fetch_add(bytes as u64, Ordering::Relaxed);
        let schema = data::branch_schema(&tx, id, MAIN)?;
        let mut writer = BundleWriter::new(out, &schema, WriteOptions { threads })?;
        let collections = data::list_collections(&tx, id, MAIN)?;
        let mut documents = 0u64;
        let mut names = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT id, body FROM documents WHERE db = ?1 AND branch = ?2 AND collection = ?3 ORDER BY id")?;
            for (name, config, _) in &collections {
                if !filter.covers(name) {
                    continue;
                }
                writer.begin_collection(name, config)?;
                names.push(name.clone());
                let mut rows = stmt.query(params![id, MAIN, name])?;
                while let Some(row) = rows.next()? {
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
            for skeleton in &order {
                let mut rows = stmt.query(params![id, skeleton.id])?;
                let row = rows.next()?.ok_or_else(|| ApiError::internal(format!("commit {:?} vanished during the backup", skeleton.id)))?;
                let text = |i: usize| row.get_ref(i)?.as_str().map_err(|_| ApiError::internal("stored commit field is not text"));
                let (author, message, timestamp, changes, canonical) = (text(0)?, text(1)?, row.get::<_, i64>(2)?, text(3)?, row.get::<_, bool>(4)?);
                if canonical && !filtering {
                    // The change set is stored canonical (insert_commit): copied, not re-encoded.
                    writer.add_canonical_commit(&CanonicalCommit {
                        id: &skeleton.id,
                        parents: &skeleton.parents,
                        author,
                        message,
                        timestamp,
                        changes: changes.as_bytes(),
                    })?;
                } else {
                    let changes: Vec<Change> = serde_json::from_str(changes).map_err(|_| ApiError::internal("stored changes are not JSON"))?;
                    let mut commit = (*skeleton).clone();
                    commit.author = author.to_string();
                    commit.message = message.to_string();
                    commit.timestamp = timestamp;
                    commit.changes = if filtering { filter_changes(&changes, filter) } else { changes };
                    writer.add_commit(&commit)?;
                }
            }
        }
        let (out, summary) = writer.finish(&history.branches)?;
        tx.commit()?;
        Ok((out, Stats { digest: summary.toc.digest, head, documents, commits: order.len() as u64, collections: names }))
    })
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

/// Restores a bundle into `options.org/options.db` in ONE write transaction:
/// the bundle's digest and table of contents are only known to be right at
/// its end, and only then is the transaction committed; any failure leaves
/// the target as it was.
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
    Items(Vec<Item>),
    /// The bundle ended and verified.
    End,
    /// The bundle failed to read or verify.
    Failed(ApiError),
}

fn apply_items(store: &Store, items: std::sync::mpsc::Receiver<Msg>, options: &RestoreOptions, seen: &AtomicU64) -> ApiResult<RestoreCounts> {
    store.write_large(|tx| {
        let db = match tx.query_row("SELECT id FROM databases WHERE org = ?1 AND name = ?2", [&options.org, &options.db], |r| r.get::<_, i64>(0)).optional()? {
            Some(id) => id,
            None => data::create_database(tx, &options.org, &options.db, "", "restored from a backup")?,
        };
        let old_head = data::branch_head(tx, db, MAIN)?;
        let fresh = old_head.is_none();
        let mut counts = RestoreCounts::default();
        let mut current: Option<String> = None;
        let mut schema = Value::Null;
        let existing: HashSet<String> = tx.prepare("SELECT id FROM commits WHERE db = ?1")?.query_map([db], |r| r.get(0))?.collect::<Result<_, _>>()?;
        let mut branches = BTreeMap::new();
        let filtering = options.filter.include.is_some() || options.filter.exclude.is_some();
        let mut configure = Vec::new();
        let mut insert = tx.prepare_cached("INSERT INTO documents (db, branch, collection, id, body) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut ended = false;
        for msg in items.iter() {
            let batch = match msg {
                Msg::Items(batch) => batch,
                Msg::End => {
                    ended = true;
                    break;
                }
                Msg::Failed(e) => return Err(e),
            };
            for item in batch {
                match item {
                    Item::Schema(s) => schema = s,
                    Item::Collection { name, config } => {
                        if !options.filter.covers(&name) {
                            current = None;
                            continue;
                        }
                        if data::collection_exists(tx, db, MAIN, &name)? {
                            if !options.overwrite {
                                return Err(ApiError::conflict(format!(
                                    "collection {name:?} exists in {}/{}; set overwrite to replace it",
                                    options.org, options.db
                                )));
                            }
                            data::apply_change(tx, db, MAIN, &Change::Drop { collection: name.clone() })?;
                        }
                        data::apply_change(tx, db, MAIN, &Change::Configure { collection: name.clone(), config: config.clone() })?;
                        configure.push(Change::Configure { collection: name.clone(), config });
                        counts.collections.push(name.clone());
                        current = Some(name);
                    }
                    Item::Document(doc) => {
                        seen.fetch_add(1, Ordering::Relaxed);
                        if let Some(collection) = &current {
                            // Stored as is: the store keeps canonical bodies, and the
                            // reader refuses a document that is not canonical JSON.
                            let body = std::str::from_utf8(&doc.json).map_err(|_| ApiError::new("CORRUPT", "document is not UTF-8"))?;
                            insert.execute(params![db, MAIN, collection, doc.id, body])?;
                            counts.records += 1;
                        }
                    }
                    Item::Commit(c) => {
                        let mut c = *c;
                        if !existing.contains(&c.id) {
                            if filtering {
                                c.changes = filter_changes(&c.changes, &options.filter);
                            }
                            data::insert_commit(tx, db, &c)?;
                            counts.commits += 1;
                        }
                    }
                    Item::Branches(b) => branches = b,
                }
            }
        }
        drop(insert);
        if !ended {
            return Err(ApiError::internal("the bundle reader stopped before the end"));
        }
        // The whole bundle has been read and checked: set the heads.
        let backup_main = branches.get(MAIN).cloned();
        if fresh {
            tx.execute(
                "UPDATE branches SET head = ?3, schema = ?4 WHERE db = ?1 AND name = ?2",
                params![db, MAIN, backup_main, serde_json::to_string(&schema)?],
            )?;
        } else {
            if options.overwrite && !schema.is_null() {
                tx.execute("UPDATE branches SET schema = ?3 WHERE db = ?1 AND name = ?2", params![db, MAIN, serde_json::to_string(&schema)?])?;
            }
            let parents: Vec<String> = old_head.into_iter().chain(backup_main).collect();
            let commit = Commit {
                id: crate::server::store::new_ksuid(),
                parents: dedup(parents),
                author: options.author.clone(),
                message: options.message.clone(),
                timestamp: crate::server::store::now_ms(),
                changes: configure,
            };
            data::insert_commit(tx, db, &commit)?;
            tx.execute("UPDATE branches SET head = ?3 WHERE db = ?1 AND name = ?2", params![db, MAIN, commit.id])?;
            counts.commits += 1;
        }
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
    })
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}
