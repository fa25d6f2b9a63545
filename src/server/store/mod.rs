//! The embedded document store: one SQLite file in WAL mode.
//!
//! One writer connection (behind a mutex: SQLite has one writer at a time
//! anyway) and a small pool of reader connections. WAL gives readers a
//! consistent snapshot while the writer goes on, which is what a backup
//! needs: it reads a whole database inside one read transaction, at one
//! commit, while writes continue.
//!
//! Every function here is blocking; the API calls them through
//! [`Store::run`] / [`Store::run_write`], which use `spawn_blocking`.

pub mod auth;
pub mod data;
pub mod jobs;
#[cfg(target_os = "linux")]
mod wal_ahead;

#[cfg(target_os = "linux")]
use wal_ahead::WalAhead;

/// Elsewhere the WAL is not grown ahead of bulk writes.
#[cfg(not(target_os = "linux"))]
struct WalAhead;

#[cfg(not(target_os = "linux"))]
impl WalAhead {
    fn start(_wal: PathBuf) -> Option<Self> {
        None
    }

    fn wrote(&self, _bytes: u64) {}
}

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::{ApiError, ApiResult};

/// Most reader connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// SQLite page size of a new store: large pages keep kilobyte documents
/// out of overflow chains.
const PAGE_SIZE: i64 = 16384;
/// Least time between two background checkpoints: commits in between are
/// copied into the database file together.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// WAL frames (pages, 1 GiB) from which the checkpoint thread, once caught
/// up, restarts the WAL itself: writers that never pause would otherwise
/// never let SQLite restart it. Rare on purpose: it costs the writers a
/// wait. (The WAL file is not truncated: SQLite writes a restarted WAL over
/// the same file; cutting it back, `journal_size_limit`, made a restore's
/// checkpoints cost ~25 % more CPU in the kernel, re-allocating the file.)
const WAL_RESTART_FRAMES: i64 = (1 << 30) / PAGE_SIZE;
/// Longest time checkpoints wait for a bulk write ([`Store::bulk`]) to end.
/// With `synchronous = NORMAL` the WAL is synced by checkpoints, so this
/// also bounds how long other writes stay unsynced meanwhile.
const BULK_DEFER_MAX: Duration = Duration::from_secs(10);
/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orgs (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  email TEXT NOT NULL DEFAULT '',
  org TEXT NOT NULL REFERENCES orgs(name),
  role TEXT NOT NULL,
  server_admin INTEGER NOT NULL DEFAULT 0,
  password_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  hash BLOB NOT NULL,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  org TEXT NOT NULL,
  role TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS databases (
  id INTEGER PRIMARY KEY,
  org TEXT NOT NULL,
  name TEXT NOT NULL,
  label TEXT NOT NULL DEFAULT '',
  comment TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  UNIQUE(org, name)
);
CREATE TABLE IF NOT EXISTS branches (
  db INTEGER NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  head TEXT,
  schema TEXT NOT NULL DEFAULT 'null',
  PRIMARY KEY (db, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits (
  seq INTEGER PRIMARY KEY,
  db INTEGER NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
  id TEXT NOT NULL,
  parents TEXT NOT NULL,
  author TEXT NOT NULL,
  message TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  changes TEXT NOT NULL,
  canonical INTEGER NOT NULL DEFAULT 0,
  UNIQUE (db, id)
);
CREATE TABLE IF NOT EXISTS collections (
  db INTEGER NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
  branch TEXT NOT NULL,
  name TEXT NOT NULL,
  config TEXT NOT NULL,
  PRIMARY KEY (db, branch, name)
) WITHOUT ROWID;
-- Every document version once, as canonical JSON: branches' documents and
-- commits' puts refer to it by vid. A rowid table: bodies are often kilobytes.
CREATE TABLE IF NOT EXISTS versions (
  vid INTEGER PRIMARY KEY,
  db INTEGER NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_by_db ON versions (db);
CREATE TABLE IF NOT EXISTS documents (
  db INTEGER NOT NULL,
  branch TEXT NOT NULL,
  collection TEXT NOT NULL,
  id TEXT NOT NULL,
  vid INTEGER NOT NULL,
  PRIMARY KEY (db, branch, collection, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS backups (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  org TEXT NOT NULL,
  status TEXT NOT NULL,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backups_by_org ON backups (org, seq);
CREATE TABLE IF NOT EXISTS restores (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  status TEXT NOT NULL,
  record TEXT NOT NULL
);
"#;

/// The store: a path, a writer and a pool of readers.
///
/// Checkpoints (copying the WAL into the database file, with its fsyncs)
/// never run in a writer's commit: the writer connection has SQLite's
/// automatic checkpoint off, and a thread of the store's own runs a PASSIVE
/// checkpoint after commits (at most every [`CHECKPOINT_INTERVAL`]), which
/// blocks neither readers nor writers. So a write costs the same whether the
/// write before it was one row or a restore's batch of megabytes.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    checkpoints: Arc<Checkpoints>,
}

/// What the store tells its checkpoint thread.
struct Checkpoints {
    state: Mutex<CheckpointState>,
    wake: std::sync::Condvar,
    /// [`BULK_DEFER_MAX`], shorter in tests.
    defer_max: Duration,
}

#[derive(Default)]
struct CheckpointState {
    /// Commits since the last checkpoint began.
    pending: bool,
    /// The store is gone: the thread ends.
    closed: bool,
    /// Bulk writes running ([`Store::bulk`]), and since when there has been one.
    bulk: usize,
    bulk_since: Option<std::time::Instant>,
}

impl Checkpoints {
    fn nudge(&self) {
        if let Ok(mut s) = self.state.lock() {
            if !s.pending {
                s.pending = true;
                self.wake.notify_one();
            }
        }
    }

    fn new(defer_max: Duration) -> Self {
        Self { state: Mutex::default(), wake: std::sync::Condvar::new(), defer_max }
    }

    /// Waits for commits, and for the end of bulk writes (at most
    /// `defer_max` after the first began); false once the store is closed.
    fn wait(&self) -> bool {
        let Ok(mut s) = self.state.lock() else { return false };
        loop {
            if s.closed {
                return false;
            }
            let deferred_until = s.bulk_since.map(|since| since + self.defer_max).filter(|until| *until > std::time::Instant::now());
            if s.pending && deferred_until.is_none() {
                break;
            }
            s = match deferred_until {
                Some(until) => match self.wake.wait_timeout(s, until.saturating_duration_since(std::time::Instant::now())) {
                    Ok((s, _)) => s,
                    Err(_) => return false,
                },
                None => match self.wake.wait(s) {
                    Ok(s) => s,
                    Err(_) => return false,
                },
            };
        }
        s.pending = false;
        !s.closed
    }

    /// The checkpoint thread: a PASSIVE checkpoint after commits, on a
    /// connection of its own.
    fn run(self: Arc<Self>, path: PathBuf) {
        let mut conn = None;
        while self.wait() {
            if conn.is_none() {
                // No busy handler: the checkpoints below never wait for a lock.
                conn = open_connection(&path)
                    .and_then(|c| c.busy_timeout(Duration::ZERO).map(|()| c))
                    .map_err(|e| tracing::warn!(error = %e, "checkpoint connection"))
                    .ok();
            }
            if let Some(c) = &conn {
                let started = std::time::Instant::now();
                let checkpoint = |mode: &str| c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
                match checkpoint("PASSIVE") {
                    Ok((log, done)) => {
                        tracing::trace!(log, done, elapsed = ?started.elapsed(), "checkpoint");
                        // Caught up with a large WAL: restart it now,
                        // if no writer or reader is in the way at this instant (the
                        // few frames since the passive pass are copied under the
                        // writer lock; without a busy handler nothing waits for it).
                        // Writers that never pause would otherwise never let it restart.
                        if log >= WAL_RESTART_FRAMES && done == log {
                            let _ = checkpoint("RESTART");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "checkpoint failed (the next one retries)"),
                }
            }
            std::thread::sleep(CHECKPOINT_INTERVAL);
        }
    }
}

/// A bulk write in progress ([`Store::bulk`]); checkpoints resume when the
/// last one is dropped.
pub struct Bulk<'a> {
    checkpoints: &'a Checkpoints,
    ahead: Option<WalAhead>,
}

impl Bulk<'_> {
    /// The bulk write committed about `bytes` more (its rows' payload): the
    /// WAL's page cache is made that much further ahead (`wal_ahead.rs`).
    pub fn wrote(&self, bytes: u64) {
        if let Some(ahead) = &self.ahead {
            ahead.wrote(bytes);
        }
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.checkpoints.state.lock() {
            s.bulk = s.bulk.saturating_sub(1);
            if s.bulk == 0 {
                s.bulk_since = None;
            }
        }
        self.checkpoints.wake.notify_all();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Ok(mut s) = self.checkpoints.state.lock() {
            s.closed = true;
        }
        self.checkpoints.wake.notify_all();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only takes effect when the file is created (before WAL is on).
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates its schema.
    pub fn open(path: &Path) -> ApiResult<Self> {
        Self::open_deferring(path, BULK_DEFER_MAX)
    }

    fn open_deferring(path: &Path, defer_max: Duration) -> ApiResult<Self> {
        let conn = open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        // Checkpoints run on the store's thread, never in a writer's commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = Arc::new(Checkpoints::new(defer_max));
        let thread = checkpoints.clone();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("coffer-checkpoint".into())
            .spawn(move || thread.run(owned))
            .map_err(|e| ApiError::internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { path: path.to_path_buf(), writer: Mutex::new(conn), readers: Mutex::new(Vec::new()), checkpoints })
    }

    /// Runs `f` on a reader connection (blocking).
    pub fn read<T>(&self, f: impl FnOnce(&mut Connection) -> ApiResult<T>) -> ApiResult<T> {
        let pooled = self.readers.lock().map_err(|_| ApiError::internal("reader pool poisoned"))?.pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let result = f(&mut conn);
        if conn.is_autocommit() {
            if let Ok(mut pool) = self.readers.lock() {
                if pool.len() < MAX_IDLE_READERS {
                    pool.push(conn);
                }
            }
        }
        result
    }

    /// Runs `f` inside one write transaction (blocking); commits when `f`
    /// returns `Ok`, rolls back otherwise.
    pub fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> ApiResult<T>) -> ApiResult<T> {
        let mut conn = self.writer.lock().map_err(|_| ApiError::internal("writer poisoned"))?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        drop(conn);
        self.checkpoints.nudge();
        Ok(value)
    }

    /// Marks a bulk write (a restore) for as long as the guard lives:
    /// checkpoints wait until it ends, at most [`BULK_DEFER_MAX`]. A restore
    /// writes its rows once into the WAL and the checkpoint copies them into
    /// the database file afterwards, instead of the two competing for the
    /// cores meanwhile (measured: a 512 MiB restore 3.6–4.0 → 2.6–3.5 s).
    /// Readers see every commit as before; the WAL grows by the bulk's size
    /// either way, since a writer that never pauses keeps it from restarting,
    /// and on Linux a thread grows it ahead of the writes ([`Bulk::wrote`]).
    pub fn bulk(&self) -> Bulk<'_> {
        if let Ok(mut s) = self.checkpoints.state.lock() {
            s.bulk += 1;
            s.bulk_since.get_or_insert_with(std::time::Instant::now);
        }
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Bulk { checkpoints: &self.checkpoints, ahead: WalAhead::start(wal.into()) }
    }

    /// [`read`](Self::read) on the blocking pool.
    pub async fn run<T: Send + 'static>(self: &Arc<Self>, f: impl FnOnce(&mut Connection) -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read(f)).await?
    }

    /// [`write`](Self::write) on the blocking pool.
    pub async fn run_write<T: Send + 'static>(self: &Arc<Self>, f: impl FnOnce(&rusqlite::Transaction<'_>) -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write(f)).await?
    }

    /// A value of the `meta` table, created with `init` the first time.
    pub fn meta_or_init(&self, key: &str, init: impl FnOnce() -> String) -> ApiResult<String> {
        self.write(|tx| {
            let existing: Option<String> = tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional_row()?;
            if let Some(v) = existing {
                return Ok(v);
            }
            let v = init();
            tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", (key, &v))?;
            Ok(v)
        })
    }
}

/// Layout version of the store (`meta` key `store_version`): 2 = document
/// versions stored once (`versions`), referred to by documents and commits.
pub const STORE_VERSION: &str = "2";

/// Brings a store created by an older build up to [`SCHEMA`].
fn migrate(conn: &Connection) -> ApiResult<()> {
    // `commits.canonical`: 1 when `changes` holds the canonical JSON of the
    // change set (a backup copies it), 0 for rows written before (a backup
    // parses and encodes them, as it always did).
    let has_canonical = conn.prepare("SELECT 1 FROM pragma_table_info('commits') WHERE name = 'canonical'")?.exists([])?;
    if !has_canonical {
        conn.execute_batch("ALTER TABLE commits ADD COLUMN canonical INTEGER NOT NULL DEFAULT 0")?;
    }
    let has_body = conn.prepare("SELECT 1 FROM pragma_table_info('documents') WHERE name = 'body'")?.exists([])?;
    if has_body {
        migrate_versions(conn)?;
    }
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('store_version', ?1)", [STORE_VERSION])?;
    Ok(())
}

/// Store version 1 → 2, in one transaction: documents' bodies become
/// versions; commits' puts refer to a version (the one of a branch's
/// document with the same collection, id and bytes, else a new one).
fn migrate_versions(conn: &Connection) -> ApiResult<()> {
    use data::{encode_stored_changes, insert_version, PutVersion};
    let started = std::time::Instant::now();
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "ALTER TABLE documents RENAME TO documents_v1;
         CREATE TABLE documents (
           db INTEGER NOT NULL, branch TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, vid INTEGER NOT NULL,
           PRIMARY KEY (db, branch, collection, id)
         ) WITHOUT ROWID;
         INSERT INTO versions (vid, db, body) SELECT rowid, db, body FROM documents_v1;
         INSERT INTO documents (db, branch, collection, id, vid) SELECT db, branch, collection, id, rowid FROM documents_v1;
         DROP TABLE documents_v1;",
    )?;
    let seqs: Vec<(i64, i64)> =
        tx.prepare("SELECT seq, db FROM commits ORDER BY seq")?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut same = tx.prepare(
        "SELECT d.vid FROM documents d JOIN versions v ON v.vid = d.vid
         WHERE d.db = ?1 AND d.branch IN (SELECT name FROM branches WHERE db = ?1) AND d.collection = ?2 AND d.id = ?3 AND v.body = ?4 LIMIT 1",
    )?;
    for (seq, db) in &seqs {
        let text: String = tx.query_row("SELECT changes FROM commits WHERE seq = ?1", [seq], |r| r.get(0))?;
        let changes: Vec<crate::snapshot::Change> =
            serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("cannot migrate the store: commit {seq}'s changes are not readable: {e}")))?;
        let mut vids: Vec<PutVersion> = Vec::with_capacity(changes.len());
        for change in &changes {
            vids.push(match change {
                crate::snapshot::Change::Put { collection, id, document } => {
                    let body = String::from_utf8(crate::canonical::to_vec(document)?).map_err(|_| ApiError::internal("canonical JSON is not UTF-8"))?;
                    let vid = match same.query_row(rusqlite::params![db, collection, id, body], |r| r.get::<_, i64>(0)).optional_row()? {
                        Some(vid) => vid,
                        None => insert_version(&tx, *db, &body)?,
                    };
                    Some((vid, body.len()))
                }
                _ => None,
            });
        }
        let (stored, canonical) = encode_stored_changes(&changes, &vids)?;
        let stored = String::from_utf8(stored).map_err(|_| ApiError::internal("canonical JSON is not UTF-8"))?;
        tx.execute("UPDATE commits SET changes = ?2, canonical = ?3 WHERE seq = ?1", rusqlite::params![seq, stored, canonical])?;
    }
    drop(same);
    tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('store_version', ?1)", [STORE_VERSION])?;
    tx.commit()?;
    tracing::info!(commits = seqs.len(), elapsed = ?started.elapsed(), "store migrated to version 2 (document versions stored once)");
    Ok(())
}

/// `Option` from a query that may find no row.
pub trait OptionalRow<T> {
    /// `Ok(None)` for `QueryReturnedNoRows`.
    fn optional_row(self) -> rusqlite::Result<Option<T>>;
}

impl<T> OptionalRow<T> for rusqlite::Result<T> {
    fn optional_row(self) -> rusqlite::Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Checks an organization, database, user or backup id:
/// `[a-z0-9_-]{1,128}` (safe in paths, URLs and object keys).
pub fn validate_slug(kind: &str, s: &str) -> ApiResult<()> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
        let shown: String = s.chars().take(64).collect();
        return Err(ApiError::invalid(format!("{kind} {shown:?} must be 1..=128 characters of [a-z0-9_-]")));
    }
    Ok(())
}

/// Checks an id the server generated or a user gave: `[A-Za-z0-9_-]{1,128}`
/// (generated KSUIDs are mixed case).
pub fn validate_key(kind: &str, s: &str) -> ApiResult<()> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        let shown: String = s.chars().take(64).collect();
        return Err(ApiError::invalid(format!("{kind} {shown:?} must be 1..=128 characters of [A-Za-z0-9_-]")));
    }
    Ok(())
}

/// A new KSUID (time-ordered, 27 base62 characters).
pub fn new_ksuid() -> String {
    use svix_ksuid::KsuidLike;
    svix_ksuid::Ksuid::new(None, None).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_refuse_traversal() {
        validate_slug("db", "my-db_2").unwrap();
        for bad in ["", "..", "../etc", "a/b", "A", "a.b", "a b", &"x".repeat(129), "é"] {
            assert!(validate_slug("db", bad).is_err(), "{bad}");
        }
        validate_key("backup", &new_ksuid()).unwrap();
    }

    #[test]
    fn checkpoints_wait_for_a_bulk_write_but_no_longer_than_their_limit() {
        use rusqlite::params;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        let limit = Duration::from_secs(3);
        let store = Store::open_deferring(&path, limit).unwrap();
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let mut n = 0;
        let mut write_2_mib = || {
            store
                .write(|tx| {
                    for _ in 0..32 {
                        n += 1;
                        tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![format!("k{n}"), "x".repeat(64 << 10)])?;
                    }
                    Ok(())
                })
                .unwrap()
        };
        let grows_within = |before: u64, within: Duration| {
            let end = std::time::Instant::now() + within;
            while std::time::Instant::now() < end {
                if file_len() > before {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        let settle = || loop {
            let len = file_len();
            std::thread::sleep(CHECKPOINT_INTERVAL * 2);
            if file_len() == len {
                break;
            }
        };
        // Without a bulk write, a commit reaches the database file within a checkpoint interval or so.
        let before = file_len();
        write_2_mib();
        assert!(grows_within(before, Duration::from_secs(5)), "no checkpoint");
        settle();

        // A bulk write begun, 2 MiB written, several checkpoint intervals waited.
        let mut bulk_write = || {
            let bulk = store.bulk();
            let started = std::time::Instant::now();
            let before = file_len();
            write_2_mib();
            std::thread::sleep(CHECKPOINT_INTERVAL * 4);
            assert!(started.elapsed() < limit, "the test machine is too slow for this test");
            (bulk, started, before)
        };

        // During one, it stays in the WAL ...
        let (bulk, started, before) = bulk_write();
        assert_eq!(file_len(), before, "checkpointed during a bulk write");
        // ... until the limit has passed, even if the bulk write goes on.
        assert!(grows_within(before, limit + Duration::from_secs(5)), "checkpoints waited past their limit");
        assert!(started.elapsed() >= limit);
        drop(bulk);
        settle();

        // A new bulk write defers again; its end lets the checkpoint run at once.
        let (bulk, started, before) = bulk_write();
        assert_eq!(file_len(), before, "checkpointed during a bulk write");
        drop(bulk);
        assert!(grows_within(before, Duration::from_secs(5)), "no checkpoint after the bulk write");
        assert!(started.elapsed() < limit, "the checkpoint waited for the limit, not for the end of the bulk write");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_wal_grown_ahead_of_a_bulk_write_keeps_every_commit_and_recovers() {
        use rusqlite::params;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        let wal = dir.path().join("store.sqlite-wal");
        let store = Store::open(&path).unwrap();
        let write = |from: usize, to: usize| {
            store
                .write(|tx| {
                    for n in from..to {
                        tx.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![format!("k{n}"), format!("{n}:").repeat(8 << 10)])?;
                    }
                    Ok(())
                })
                .unwrap()
        };
        let count = |conn: &Connection| -> usize {
            let mut stmt = conn.prepare("SELECT key, value FROM meta WHERE key LIKE 'k%'").unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap();
            rows.map(|r| {
                let (key, value) = r.unwrap();
                let n: usize = key[1..].parse().unwrap();
                assert_eq!(value, format!("{n}:").repeat(8 << 10), "row {key} damaged");
            })
            .count()
        };

        let bulk = store.bulk();
        bulk.wrote(1 << 20);
        write(0, 40);
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&wal).unwrap().len() < 32 << 20 {
            assert!(std::time::Instant::now() < end, "the WAL was not grown ahead");
            std::thread::sleep(Duration::from_millis(20));
        }
        write(40, 80);

        // A crash now: the database and its WAL (zeros past the frames) as they are, no -shm.
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(&path, copy.path().join("c.sqlite")).unwrap();
        std::fs::copy(&wal, copy.path().join("c.sqlite-wal")).unwrap();
        let recovered = Connection::open(copy.path().join("c.sqlite")).unwrap();
        assert_eq!(count(&recovered), 80);
        assert_eq!(recovered.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)).unwrap(), "ok");
        drop(recovered);

        // The store writes on over the grown WAL, and opens again whole.
        drop(bulk);
        write(80, 120);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.read(|c| Ok(count(c))).unwrap(), 120);
    }

    /// The layout of store version 1: documents with their bodies, change sets with full documents.
    const DOCUMENTS_V1: &str = "CREATE TABLE documents (
  rowid INTEGER PRIMARY KEY, db INTEGER NOT NULL, branch TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
  UNIQUE (db, branch, collection, id)
);";

    #[test]
    fn a_store_of_version_1_is_migrated_without_losing_documents_or_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        let start = SCHEMA.find("-- Every document version once").unwrap();
        let end = SCHEMA.find("CREATE TABLE IF NOT EXISTS backups").unwrap();
        let old_schema = format!("{}{}\n{}", &SCHEMA[..start], DOCUMENTS_V1, &SCHEMA[end..]);
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&old_schema).unwrap();
        old.execute_batch(
            r#"INSERT INTO databases (id, org, name, created_at) VALUES (1, 'o', 'd', 0);
            INSERT INTO branches (db, name, head, schema) VALUES (1, 'main', 'c2', 'null'), (1, 'dev', 'c1', 'null');
            INSERT INTO collections (db, branch, name, config) VALUES (1, 'main', 'items', '{}'), (1, 'dev', 'items', '{}');
            INSERT INTO documents (db, branch, collection, id, body) VALUES
              (1, 'main', 'items', 'a', '{"id":"a","n":2}'), (1, 'dev', 'items', 'a', '{"id":"a","n":1}'), (1, 'dev', 'items', 'b', '{"id":"b"}');
            INSERT INTO commits (db, id, parents, author, message, timestamp, changes, canonical) VALUES
              (1, 'c1', '[]', 'x', 'one', 1, '[{"collection":"items","config":{},"op":"configure"},{"collection":"items","document":{"id":"a","n":1},"id":"a","op":"put"},{"collection":"items","document":{"id":"b"},"id":"b","op":"put"}]', 1),
              (1, 'c2', '["c1"]', 'x', 'two', 2, '[{"collection":"items","document":{"n":2,"id":"a"},"id":"a","op":"put"},{"collection":"items","id":"b","op":"delete"}]', 0);"#,
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            let store = Store::open(&path).unwrap();
            store
                .read(|c| {
                    assert_eq!(data::get_document(c, 1, "main", "items", "a")?, r#"{"id":"a","n":2}"#);
                    assert_eq!(data::get_document(c, 1, "dev", "items", "a")?, r#"{"id":"a","n":1}"#);
                    assert_eq!(data::get_document(c, 1, "dev", "items", "b")?, r#"{"id":"b"}"#);
                    let version: String = c.query_row("SELECT value FROM meta WHERE key = 'store_version'", [], |r| r.get(0))?;
                    assert_eq!(version, STORE_VERSION);
                    // Each version once: the puts share the documents' versions, b's put has its own.
                    let versions: i64 = c.query_row("SELECT COUNT(*) FROM versions", [], |r| r.get(0))?;
                    assert_eq!(versions, 3);
                    let c1 = data::load_commit(c, 1, "c1")?.unwrap();
                    let c2 = data::load_commit(c, 1, "c2")?.unwrap();
                    let json = |v: &Vec<crate::snapshot::Change>| serde_json::to_value(v).unwrap();
                    assert_eq!(
                        json(&c1.changes),
                        serde_json::json!([{"collection":"items","config":{},"op":"configure"},{"collection":"items","document":{"id":"a","n":1},"id":"a","op":"put"},{"collection":"items","document":{"id":"b"},"id":"b","op":"put"}])
                    );
                    assert_eq!(json(&c2.changes), serde_json::json!([{"collection":"items","document":{"id":"a","n":2},"id":"a","op":"put"},{"collection":"items","id":"b","op":"delete"}]));
                    assert_eq!((c1.author.as_str(), c1.message.as_str(), c2.parents.clone()), ("x", "one", vec!["c1".to_string()]));
                    let canonical: i64 = c.query_row("SELECT canonical FROM commits WHERE id = 'c2'", [], |r| r.get(0))?;
                    assert_eq!(canonical, 1, "migrated change sets are the store's canonical form");
                    Ok(())
                })
                .unwrap();
        }
    }

    #[test]
    fn a_store_from_an_older_build_gains_the_canonical_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        let old_schema = SCHEMA.replace("  canonical INTEGER NOT NULL DEFAULT 0,\n", "");
        assert_ne!(old_schema, SCHEMA);
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&old_schema).unwrap();
        old.execute("INSERT INTO databases (id, org, name, created_at) VALUES (1, 'o', 'd', 0)", []).unwrap();
        old.execute("INSERT INTO commits (db, id, parents, author, message, timestamp, changes) VALUES (1, 'c', '[]', '', '', 0, '[]')", []).unwrap();
        drop(old);
        for _ in 0..2 {
            let store = Store::open(&path).unwrap();
            let canonical: i64 = store.read(|c| Ok(c.query_row("SELECT canonical FROM commits WHERE id = 'c'", [], |r| r.get(0))?)).unwrap();
            assert_eq!(canonical, 0, "rows written before are not copied as canonical");
        }
    }
}
