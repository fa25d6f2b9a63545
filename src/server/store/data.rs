//! Databases, collections, documents, commits and branches.
//!
//! Every branch has its own materialized state (collections, documents,
//! schema); every write is one commit on one branch whose change set is
//! stored with it, so the state at any commit can be rebuilt by replaying
//! the first-parent chain ([`create_branch`] does that for old commits).

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{new_ksuid, now_ms, ApiError, ApiResult};
use crate::snapshot::{Change, Commit};

/// The default branch.
pub const MAIN: &str = "main";

/// Organization of the hidden databases a restore stages its rows in until
/// its final step: not a valid organization name, so no API path reaches it.
pub const STAGING_ORG: &str = ".restore";

/// A database row.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseInfo {
    /// Organization.
    pub org: String,
    /// Name within the organization.
    pub name: String,
    /// Label.
    pub label: String,
    /// Comment.
    pub comment: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Collections on `main`.
    pub collections: u64,
    /// Documents on `main`.
    pub documents: u64,
    /// Head commit of `main` (null before the first write).
    pub head: Option<String>,
}

/// Summary of a commit (change set left out).
#[derive(Debug, Clone, Serialize)]
pub struct CommitInfo {
    /// Commit id.
    pub id: String,
    /// Parent ids.
    pub parents: Vec<String>,
    /// Author (user name).
    pub author: String,
    /// Message.
    pub message: String,
    /// Time (ms since the epoch).
    pub timestamp: i64,
    /// Number of changes.
    pub changes: usize,
}

/// Checks a branch name: 1..=128 characters of `[A-Za-z0-9_.-]`.
pub fn validate_branch(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.len() > 128 || name.starts_with('.') || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(ApiError::invalid("branch names are 1..=128 characters of [A-Za-z0-9_.-], not starting with '.'"));
    }
    Ok(())
}

/// The internal id of `org/name`, or NOT_FOUND.
pub fn db_id(conn: &Connection, org: &str, name: &str) -> ApiResult<i64> {
    conn.query_row("SELECT id FROM databases WHERE org = ?1 AND name = ?2", [org, name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| ApiError::not_found(format!("database {org}/{name} not found")))
}

/// Creates a database with an empty `main` branch.
pub fn create_database(tx: &Transaction<'_>, org: &str, name: &str, label: &str, comment: &str) -> ApiResult<i64> {
    let exists: Option<i64> = tx.query_row("SELECT id FROM databases WHERE org = ?1 AND name = ?2", [org, name], |r| r.get(0)).optional()?;
    if exists.is_some() {
        return Err(ApiError::conflict(format!("database {org}/{name} exists already")));
    }
    tx.execute("INSERT INTO databases (org, name, label, comment, created_at) VALUES (?1, ?2, ?3, ?4, ?5)", params![org, name, label, comment, now_ms()])?;
    let id = tx.last_insert_rowid();
    tx.execute("INSERT INTO branches (db, name, head) VALUES (?1, ?2, NULL)", params![id, MAIN])?;
    Ok(id)
}

/// Deletes a database and everything in it.
pub fn delete_database(tx: &Transaction<'_>, org: &str, name: &str) -> ApiResult<()> {
    let id = db_id(tx, org, name)?;
    tx.execute("DELETE FROM documents WHERE db = ?1", [id])?;
    tx.execute("DELETE FROM versions WHERE db = ?1", [id])?;
    tx.execute("DELETE FROM databases WHERE id = ?1", [id])?;
    Ok(())
}

/// Information about one database.
pub fn database_info(conn: &Connection, org: &str, name: &str) -> ApiResult<DatabaseInfo> {
    let (id, label, comment, created_at): (i64, String, String, i64) = conn
        .query_row("SELECT id, label, comment, created_at FROM databases WHERE org = ?1 AND name = ?2", [org, name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?
        .ok_or_else(|| ApiError::not_found(format!("database {org}/{name} not found")))?;
    let collections: i64 = conn.query_row("SELECT COUNT(*) FROM collections WHERE db = ?1 AND branch = ?2", params![id, MAIN], |r| r.get(0))?;
    let documents: i64 = conn.query_row("SELECT COUNT(*) FROM documents WHERE db = ?1 AND branch = ?2", params![id, MAIN], |r| r.get(0))?;
    let (collections, documents) = (collections as u64, documents as u64);
    let head = branch_head(conn, id, MAIN)?;
    Ok(DatabaseInfo { org: org.into(), name: name.into(), label, comment, created_at, collections, documents, head })
}

/// Databases of an organization.
pub fn list_databases(conn: &Connection, org: &str) -> ApiResult<Vec<DatabaseInfo>> {
    let names: Vec<String> =
        conn.prepare("SELECT name FROM databases WHERE org = ?1 ORDER BY name")?.query_map([org], |r| r.get(0))?.collect::<Result<_, _>>()?;
    names.iter().map(|n| database_info(conn, org, n)).collect()
}

/// The head of a branch (None before its first commit); NOT_FOUND if the branch does not exist.
pub fn branch_head(conn: &Connection, db: i64, branch: &str) -> ApiResult<Option<String>> {
    conn.query_row("SELECT head FROM branches WHERE db = ?1 AND name = ?2", params![db, branch], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .ok_or_else(|| ApiError::not_found(format!("branch {branch:?} not found")))
}

/// Branch name → head (branches without a commit yet included, as null).
pub fn list_branches(conn: &Connection, db: i64) -> ApiResult<BTreeMap<String, Option<String>>> {
    let mut stmt = conn.prepare("SELECT name, head FROM branches WHERE db = ?1 ORDER BY name")?;
    let rows = stmt.query_map([db], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A collection of a branch: name, config, documents.
pub type CollectionRow = (String, Map<String, Value>, u64);

/// Collections of a branch with their configs.
pub fn list_collections(conn: &Connection, db: i64, branch: &str) -> ApiResult<Vec<CollectionRow>> {
    branch_head(conn, db, branch)?;
    let mut stmt = conn.prepare(
        "SELECT c.name, c.config, (SELECT COUNT(*) FROM documents d WHERE d.db = c.db AND d.branch = c.branch AND d.collection = c.name)
         FROM collections c WHERE c.db = ?1 AND c.branch = ?2 ORDER BY c.name",
    )?;
    let rows = stmt.query_map(params![db, branch], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, config, count) = row?;
        out.push((name, parse_config(&config)?, count));
    }
    Ok(out)
}

/// The schema of a branch.
pub fn branch_schema(conn: &Connection, db: i64, branch: &str) -> ApiResult<Value> {
    let text: String = conn
        .query_row("SELECT schema FROM branches WHERE db = ?1 AND name = ?2", params![db, branch], |r| r.get(0))
        .optional()?
        .ok_or_else(|| ApiError::not_found(format!("branch {branch:?} not found")))?;
    serde_json::from_str(&text).map_err(|_| ApiError::internal("stored schema is not JSON"))
}

pub(crate) fn parse_config(text: &str) -> ApiResult<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::internal("stored config is not a JSON object")),
    }
}

/// Whether a collection exists on a branch.
pub fn collection_exists(conn: &Connection, db: i64, branch: &str, name: &str) -> ApiResult<bool> {
    Ok(conn.query_row("SELECT 1 FROM collections WHERE db = ?1 AND branch = ?2 AND name = ?3", params![db, branch, name], |_| Ok(())).optional()?.is_some())
}

/// One document's canonical JSON text.
pub fn get_document(conn: &Connection, db: i64, branch: &str, collection: &str, id: &str) -> ApiResult<String> {
    branch_head(conn, db, branch)?;
    if !collection_exists(conn, db, branch, collection)? {
        return Err(ApiError::not_found(format!("collection {collection:?} not found")));
    }
    conn.query_row(
        "SELECT v.body FROM documents d JOIN versions v ON v.vid = d.vid WHERE d.db = ?1 AND d.branch = ?2 AND d.collection = ?3 AND d.id = ?4",
        params![db, branch, collection, id],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found(format!("document {id:?} not found")))
}

/// Documents with ids after `after`, in id order: (id, canonical JSON).
pub fn list_documents(conn: &Connection, db: i64, branch: &str, collection: &str, after: &str, limit: u32) -> ApiResult<Vec<(String, String)>> {
    branch_head(conn, db, branch)?;
    if !collection_exists(conn, db, branch, collection)? {
        return Err(ApiError::not_found(format!("collection {collection:?} not found")));
    }
    let mut stmt = conn.prepare_cached("SELECT d.id, v.body FROM documents d JOIN versions v ON v.vid = d.vid WHERE d.db = ?1 AND d.branch = ?2 AND d.collection = ?3 AND d.id > ?4 ORDER BY d.id LIMIT ?5")?;
    let rows = stmt.query_map(params![db, branch, collection, after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Commits reachable from a branch head, newest first, after skipping `offset`.
/// Reads commit metadata only (never the change sets).
pub fn list_commits(conn: &Connection, db: i64, branch: &str, offset: usize, limit: usize) -> ApiResult<Vec<CommitInfo>> {
    let Some(head) = branch_head(conn, db, branch)? else { return Ok(Vec::new()) };
    let mut stmt = conn.prepare("SELECT seq, id, parents, author, message, timestamp, json_array_length(changes) FROM commits WHERE db = ?1")?;
    let rows = stmt.query_map([db], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut all: HashMap<String, (i64, CommitInfo)> = HashMap::new();
    for row in rows {
        let (seq, id, parents, author, message, timestamp, changes) = row?;
        let parents: Vec<String> = serde_json::from_str(&parents).map_err(|_| ApiError::internal("stored parents are not JSON"))?;
        all.insert(id.clone(), (seq, CommitInfo { id, parents, author, message, timestamp, changes: changes as usize }));
    }
    let mut seen = HashSet::new();
    let mut stack = vec![head];
    let mut reachable = Vec::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some((seq, c)) = all.get(&id) {
            stack.extend(c.parents.iter().cloned());
            reachable.push((*seq, c));
        }
    }
    reachable.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(reachable.into_iter().skip(offset).take(limit).map(|(_, c)| c.clone()).collect())
}

/// One commit with its change set.
pub fn load_commit(conn: &Connection, db: i64, id: &str) -> ApiResult<Option<Commit>> {
    let row: Option<(String, String, String, i64, String)> = conn
        .prepare_cached("SELECT parents, author, message, timestamp, changes FROM commits WHERE db = ?1 AND id = ?2")?
        .query_row(params![db, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let Some((parents, author, message, timestamp, changes)) = row else { return Ok(None) };
    let parents: Vec<String> = serde_json::from_str(&parents).map_err(|_| ApiError::internal("stored parents are not JSON"))?;
    let changes = load_changes(conn, changes.as_bytes())?;
    Ok(Some(Commit { id: id.to_string(), parents, author, message, timestamp, changes }))
}

/// Stores a document version (canonical JSON) of database `db`: its vid.
pub fn insert_version(tx: &Connection, db: i64, body: &str) -> ApiResult<i64> {
    tx.prepare_cached("INSERT INTO versions (db, body) VALUES (?1, ?2)")?.execute(params![db, body])?;
    Ok(tx.last_insert_rowid())
}

/// Makes version `vid` the document `collection/id` of a branch (the
/// collection is created when missing).
pub fn put_version(tx: &Connection, db: i64, branch: &str, collection: &str, id: &str, vid: i64) -> ApiResult<()> {
    if !collection_exists(tx, db, branch, collection)? {
        tx.execute("INSERT INTO collections (db, branch, name, config) VALUES (?1, ?2, ?3, '{}')", params![db, branch, collection])?;
    }
    tx.prepare_cached("INSERT OR REPLACE INTO documents (db, branch, collection, id, vid) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![db, branch, collection, id, vid])?;
    Ok(())
}

/// A put's version in a change set being stored: vid and the length of the body.
pub type PutVersion = Option<(i64, usize)>;

/// Applies one change to a branch's materialized state; a put stores a new
/// version and returns it.
pub fn apply_change(tx: &Connection, db: i64, branch: &str, change: &Change) -> ApiResult<PutVersion> {
    match change {
        Change::Put { collection, id, document } => {
            let body = String::from_utf8(crate::canonical::to_vec(document)?).map_err(|_| ApiError::internal("canonical JSON is not UTF-8"))?;
            let vid = insert_version(tx, db, &body)?;
            put_version(tx, db, branch, collection, id, vid)?;
            return Ok(Some((vid, body.len())));
        }
        Change::PutSnapshot { .. } => return Err(ApiError::internal("a put by reference to a snapshot's document reached the store")),
        Change::Delete { collection, id } => {
            tx.prepare_cached("DELETE FROM documents WHERE db = ?1 AND branch = ?2 AND collection = ?3 AND id = ?4")?
                .execute(params![db, branch, collection, id])?;
        }
        Change::Configure { collection, config } => {
            let text = serde_json::to_string(config)?;
            tx.execute("INSERT OR REPLACE INTO collections (db, branch, name, config) VALUES (?1, ?2, ?3, ?4)", params![db, branch, collection, text])?;
        }
        Change::Drop { collection } => {
            tx.execute("DELETE FROM documents WHERE db = ?1 AND branch = ?2 AND collection = ?3", params![db, branch, collection])?;
            tx.execute("DELETE FROM collections WHERE db = ?1 AND branch = ?2 AND name = ?3", params![db, branch, collection])?;
        }
        Change::Schema { schema } => {
            tx.execute("UPDATE branches SET schema = ?3 WHERE db = ?1 AND name = ?2", params![db, branch, serde_json::to_string(schema)?])?;
        }
    }
    Ok(None)
}

/// Largest change set of one commit, in bytes of JSON: a commit is one
/// record of a bundle, so it must stay under the bundle's record limit.
pub const MAX_COMMIT_BYTES: usize = crate::bundle::MAX_RECORD - (256 << 10);

/// Stores a commit row (no state change). `vids` holds, for each put of the
/// change set, the version it stored (see [`encode_stored_changes`]). Fails
/// with LIMIT_EXCEEDED (413) when the change set could not be backed up as
/// one bundle record (its size with every document inline).
pub fn insert_commit(tx: &Connection, db: i64, commit: &Commit, vids: &[PutVersion]) -> ApiResult<()> {
    let (changes, canonical) = encode_stored_changes(&commit.changes, vids)?;
    // The size of the change set with every document inline, as a bundle may have to write it.
    let inline: usize = vids.iter().flatten().map(|&(vid, len)| (",\"document\":".len() + len).saturating_sub(",\"v\":".len() + digits(vid))).sum();
    insert_commit_row(tx, db, commit, &changes, canonical, changes.len() + inline)
}

fn digits(n: i64) -> usize {
    n.to_string().len()
}

fn insert_commit_row(tx: &Connection, db: i64, commit: &Commit, changes: &[u8], canonical: bool, full: usize) -> ApiResult<()> {
    if full > MAX_COMMIT_BYTES {
        return Err(ApiError::new("LIMIT_EXCEEDED", format!("one commit may change at most {MAX_COMMIT_BYTES} bytes of JSON ({full} here): split the batch")));
    }
    let changes = std::str::from_utf8(changes).map_err(|_| ApiError::internal("canonical JSON is not UTF-8"))?;
    tx.prepare_cached("INSERT INTO commits (db, id, parents, author, message, timestamp, changes, canonical) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
        .execute(params![db, commit.id, serde_json::to_string(&commit.parents)?, commit.author, commit.message, commit.timestamp, changes, canonical])?;
    Ok(())
}

/// Deepest container nesting a value inside a change set may have for its
/// commit to stay within the canonical form's limit as a bundle record
/// (record object, changes array and change object come first).
pub const MAX_CHANGE_VALUE_NESTING: usize = crate::canonical::MAX_DEPTH - 3;

/// The canonical JSON of a change set (exactly `canonical::to_vec` of the
/// serialized `Vec<Change>`, written directly), and whether a backup may copy
/// it as the `changes` of a bundle record: false when a value nests too
/// deeply for a record (such a commit cannot be backed up; the backup
/// reports it as it always did).
pub fn encode_changes(changes: &[Change]) -> ApiResult<(Vec<u8>, bool)> {
    encode_stored_changes(changes, &[])
}

/// The store's form of a change set: [`encode_changes`], except that a put
/// (or a put without document) whose entry in `vids` is a version is
/// written `{"collection":…,"id":…,"op":"put","v":VID}` — the document is
/// in `versions`, never twice. This form never leaves the store: backups
/// write canonical change sets (see `backup::snapshot`), [`load_commit`]
/// gives full documents. The flag: whether the change set is copyable into
/// a bundle record (every value it holds nests shallowly enough).
pub fn encode_stored_changes(changes: &[Change], vids: &[PutVersion]) -> ApiResult<(Vec<u8>, bool)> {
    use crate::canonical::{write, write_string};
    let mut out = Vec::with_capacity(256);
    let mut copyable = true;
    let mut too_deep = false;
    let mut value = |v: &Value, out: &mut Vec<u8>| -> ApiResult<()> {
        copyable &= nesting(v) <= MAX_CHANGE_VALUE_NESTING;
        Ok(write(v, out)?)
    };
    out.push(b'[');
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Keys in byte order, as canonical JSON wants them.
        if let (Some(Some((vid, _))), Change::Put { collection, id, .. } | Change::PutSnapshot { collection, id }) = (vids.get(i), change) {
            if let Change::Put { document, .. } = change {
                too_deep |= nesting(document) > MAX_CHANGE_VALUE_NESTING;
            }
            out.extend_from_slice(b"{\"collection\":");
            write_string(collection, &mut out);
            out.extend_from_slice(b",\"id\":");
            write_string(id, &mut out);
            out.extend_from_slice(format!(",\"op\":\"put\",\"v\":{vid}}}").as_bytes());
            continue;
        }
        match change {
            Change::Put { collection, id, document } => {
                out.extend_from_slice(b"{\"collection\":");
                write_string(collection, &mut out);
                out.extend_from_slice(b",\"document\":");
                value(document, &mut out)?;
                out.extend_from_slice(b",\"id\":");
                write_string(id, &mut out);
                out.extend_from_slice(b",\"op\":\"put\"}");
            }
            Change::PutSnapshot { collection, id } | Change::Delete { collection, id } => {
                out.extend_from_slice(b"{\"collection\":");
                write_string(collection, &mut out);
                out.extend_from_slice(b",\"id\":");
                write_string(id, &mut out);
                out.extend_from_slice(if matches!(change, Change::Delete { .. }) { b",\"op\":\"delete\"}" } else { b",\"op\":\"put\"}" });
            }
            Change::Configure { collection, config } => {
                out.extend_from_slice(b"{\"collection\":");
                write_string(collection, &mut out);
                out.extend_from_slice(b",\"config\":");
                value(&Value::Object(config.clone()), &mut out)?;
                out.extend_from_slice(b",\"op\":\"configure\"}");
            }
            Change::Drop { collection } => {
                out.extend_from_slice(b"{\"collection\":");
                write_string(collection, &mut out);
                out.extend_from_slice(b",\"op\":\"drop\"}");
            }
            Change::Schema { schema } => {
                out.extend_from_slice(b"{\"op\":\"schema\",\"schema\":");
                value(schema, &mut out)?;
                out.push(b'}');
            }
        }
    }
    out.push(b']');
    Ok((out, copyable && !too_deep))
}

/// Container nesting of a value: 0 for a scalar, 1 for a flat array or object.
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Makes one commit on `branch`: applies `changes` and moves the head.
pub fn commit(tx: &Transaction<'_>, db: i64, branch: &str, author: &str, message: &str, changes: Vec<Change>) -> ApiResult<CommitInfo> {
    let head = branch_head(tx, db, branch)?;
    let mut vids = Vec::with_capacity(changes.len());
    for change in &changes {
        vids.push(apply_change(tx, db, branch, change)?);
    }
    let commit = Commit { id: new_ksuid(), parents: head.into_iter().collect(), author: author.into(), message: message.into(), timestamp: now_ms(), changes };
    insert_commit(tx, db, &commit, &vids)?;
    tx.execute("UPDATE branches SET head = ?3 WHERE db = ?1 AND name = ?2", params![db, branch, commit.id])?;
    Ok(CommitInfo {
        id: commit.id,
        parents: commit.parents,
        author: commit.author,
        message: commit.message,
        timestamp: commit.timestamp,
        changes: commit.changes.len(),
    })
}

/// Creates branch `name` at commit `from` (a commit id or a branch name).
/// The state is copied from a branch whose head is that commit, or rebuilt
/// by replaying the first-parent chain.
pub fn create_branch(tx: &Transaction<'_>, db: i64, name: &str, from: &str) -> ApiResult<Option<String>> {
    validate_branch(name)?;
    if tx.query_row("SELECT 1 FROM branches WHERE db = ?1 AND name = ?2", params![db, name], |_| Ok(())).optional()?.is_some() {
        return Err(ApiError::conflict(format!("branch {name:?} exists already")));
    }
    // A branch name?
    let source_branch: Option<(String, Option<String>)> =
        tx.query_row("SELECT name, head FROM branches WHERE db = ?1 AND name = ?2", params![db, from], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let (source_branch, head) = match source_branch {
        Some((b, h)) => (Some(b), h),
        None => {
            let exists = tx.query_row("SELECT 1 FROM commits WHERE db = ?1 AND id = ?2", params![db, from], |_| Ok(())).optional()?.is_some();
            if !exists {
                return Err(ApiError::not_found(format!("no branch or commit {from:?}")));
            }
            let at_head: Option<String> =
                tx.query_row("SELECT name FROM branches WHERE db = ?1 AND head = ?2 ORDER BY name LIMIT 1", params![db, from], |r| r.get(0)).optional()?;
            (at_head, Some(from.to_string()))
        }
    };
    tx.execute("INSERT INTO branches (db, name, head) VALUES (?1, ?2, ?3)", params![db, name, head])?;
    match source_branch {
        Some(src) => {
            tx.execute(
                "UPDATE branches SET schema = (SELECT schema FROM branches WHERE db = ?1 AND name = ?3) WHERE db = ?1 AND name = ?2",
                params![db, name, src],
            )?;
            tx.execute(
                "INSERT INTO collections (db, branch, name, config) SELECT db, ?2, name, config FROM collections WHERE db = ?1 AND branch = ?3",
                params![db, name, src],
            )?;
            tx.execute(
                "INSERT INTO documents (db, branch, collection, id, vid) SELECT db, ?2, collection, id, vid FROM documents WHERE db = ?1 AND branch = ?3",
                params![db, name, src],
            )?;
        }
        None => {
            // The first-parent chain, root first, then replay it (one change set in memory at a time).
            let mut chain = Vec::new();
            let mut cursor = head.clone();
            while let Some(id) = cursor {
                let parent: Option<String> = tx
                    .query_row("SELECT parents FROM commits WHERE db = ?1 AND id = ?2", params![db, id], |r| r.get::<_, String>(0))
                    .optional()?
                    .and_then(|p| serde_json::from_str::<Vec<String>>(&p).ok())
                    .and_then(|p| p.first().cloned());
                chain.push(id);
                cursor = parent;
            }
            // Puts take the versions their commits stored (no body is copied).
            let mut stmt = tx.prepare_cached("SELECT changes FROM commits WHERE db = ?1 AND id = ?2")?;
            for id in chain.iter().rev() {
                let Some(text) = stmt.query_row(params![db, id], |r| r.get::<_, String>(0)).optional()? else { continue };
                for element in stored_elements(text.as_bytes())? {
                    match stored_put(element)? {
                        Some(put) => put_version(tx, db, name, &put.collection, &put.id, put.v)?,
                        None => {
                            let change: Change = serde_json::from_slice(element).map_err(|_| ApiError::internal("stored changes are not JSON"))?;
                            apply_change(tx, db, name, &change)?;
                        }
                    }
                }
            }
        }
    }
    Ok(head)
}

/// A put of the store's form: `{"collection","id","op":"put","v":VID}`.
#[derive(serde::Deserialize)]
pub struct StoredPut {
    /// Collection.
    pub collection: String,
    /// Document id.
    pub id: String,
    /// The version (`versions.vid`).
    pub v: i64,
}

/// The store's form of a put, if `element` (one change of a stored change
/// set) is one.
pub fn stored_put(element: &[u8]) -> ApiResult<Option<StoredPut>> {
    // Keys are in byte order: a reference ends with its "v" member, which no other change has.
    const MARK: &[u8] = b"\"op\":\"put\",\"v\":";
    let tail = element.len().saturating_sub(MARK.len() + 24);
    if !element[tail..].windows(MARK.len()).any(|w| w == MARK) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        op: String,
        collection: Option<String>,
        id: Option<String>,
        v: Option<i64>,
    }
    let p: Probe = serde_json::from_slice(element).map_err(|_| ApiError::internal("stored changes are not JSON"))?;
    Ok(match (p.op.as_str(), p.collection, p.id, p.v) {
        ("put", Some(collection), Some(id), Some(v)) => Some(StoredPut { collection, id, v }),
        _ => None,
    })
}

/// The bytes of a JSON text outside its strings, with their offsets: what
/// the scanners below need to find structure without parsing values. The
/// flag is false when the text ends inside a string.
pub fn structural(text: &[u8]) -> (Vec<(usize, u8)>, bool) {
    let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b'{' | b'}' | b'[' | b']' | b',') {
            out.push((i, b));
        }
    }
    (out, !in_string)
}

/// The top-level elements of a stored change set (a JSON array of objects),
/// each as its text.
pub fn stored_elements(text: &[u8]) -> ApiResult<Vec<&[u8]>> {
    let bad = || ApiError::internal("stored changes are not a JSON array");
    if text.first() != Some(&b'[') || text.last() != Some(&b']') {
        return Err(bad());
    }
    let (marks, closed) = structural(text);
    if !closed {
        return Err(bad());
    }
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 1usize);
    for &(i, b) in &marks[1..marks.len() - 1] {
        match b {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1).ok_or_else(bad)?,
            _ if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(bad());
    }
    if start < text.len() - 1 {
        out.push(&text[start..text.len() - 1]);
    }
    Ok(out)
}

/// The body of a version.
pub fn version_body(conn: &Connection, vid: i64) -> ApiResult<String> {
    conn.prepare_cached("SELECT body FROM versions WHERE vid = ?1")?
        .query_row([vid], |r| r.get(0))
        .optional()?
        .ok_or_else(|| ApiError::internal(format!("version {vid} of a stored commit is missing")))
}

/// A stored change set with full documents (versions read back).
pub fn load_changes(conn: &Connection, text: &[u8]) -> ApiResult<Vec<Change>> {
    let mut out = Vec::new();
    for element in stored_elements(text)? {
        out.push(match stored_put(element)? {
            Some(StoredPut { collection, id, v }) => {
                let document = serde_json::from_str(&version_body(conn, v)?).map_err(|_| ApiError::internal("stored document is not JSON"))?;
                Change::Put { collection, id, document }
            }
            None => serde_json::from_slice(element).map_err(|_| ApiError::internal("stored changes are not JSON"))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_change_sets_split_into_their_elements_whatever_their_strings_hold() {
        let text = br#"[{"collection":"c","id":"a,]}[\"","op":"put","v":1},{"collection":"c","id":"b","op":"delete"},{"op":"schema","schema":[[{"x":"\\"}]]}]"#;
        let elements: Vec<&str> = stored_elements(text).unwrap().into_iter().map(|e| std::str::from_utf8(e).unwrap()).collect();
        assert_eq!(
            elements,
            [
                r#"{"collection":"c","id":"a,]}[\"","op":"put","v":1}"#,
                r#"{"collection":"c","id":"b","op":"delete"}"#,
                r#"{"op":"schema","schema":[[{"x":"\\"}]]}"#
            ]
        );
        assert!(stored_elements(b"[]").unwrap().is_empty());
        for bad in [&b"["[..], b"]", b"[\"]", b"[{]", b"[}]", b"{}"] {
            assert!(stored_elements(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(structural(br#"{"a":[1,"[]"]}"#).0.iter().map(|m| m.1).collect::<Vec<_>>(), b"{[,]}");
    }

    #[test]
    fn encoded_changes_are_the_canonical_json_of_the_change_set() {
        let changes = vec![
            Change::Configure { collection: "items".into(), config: json!({"z": 1, "a": [1.0, 2.5, "é\u{1}"]}).as_object().unwrap().clone() },
            Change::Put {
                collection: "items".into(),
                id: "a\"b".into(),
                document: json!({"id": "a\"b", "n": 1.0, "x": {"b": null, "a": [true, -0.0, 1e300]}}),
            },
            Change::Delete { collection: "items".into(), id: "old\n".into() },
            Change::Schema { schema: json!({"version": 2, "tables": ["items"]}) },
            Change::Drop { collection: "gone".into() },
        ];
        let reference = crate::canonical::to_vec(&serde_json::to_value(&changes).unwrap()).unwrap();
        assert_eq!(encode_changes(&changes).unwrap(), (reference, true));
        assert_eq!(encode_changes(&[]).unwrap(), (b"[]".to_vec(), true));
    }

    #[test]
    fn deeply_nested_change_sets_are_not_copied_into_backups() {
        let deep = |n: usize| (0..n).fold(json!(1), |v, _| json!([v]));
        let put = |d: Value| vec![Change::Put { collection: "c".into(), id: "x".into(), document: d }];
        assert!(encode_changes(&put(deep(MAX_CHANGE_VALUE_NESTING))).unwrap().1);
        assert!(!encode_changes(&put(deep(MAX_CHANGE_VALUE_NESTING + 1))).unwrap().1);
        // The limit is exactly the one a whole commit record meets.
        let record = |n: usize| {
            let commit = Commit { id: "c".into(), parents: vec![], author: String::new(), message: String::new(), timestamp: 0, changes: put(deep(n)) };
            crate::canonical::to_vec(&serde_json::to_value(&commit).unwrap()).is_ok()
        };
        assert!(record(MAX_CHANGE_VALUE_NESTING));
        assert!(!record(MAX_CHANGE_VALUE_NESTING + 1));
    }
}
