//! The backup & restore engine: asynchronous jobs with bounded concurrency,
//! consistent snapshots at one commit, crash-safe writes to the backend,
//! atomic restores.

pub mod backend;
mod snapshot;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::TryStreamExt;
use tokio::sync::Semaphore;
use tokio_util::io::{StreamReader, SyncIoBridge};
use zeroize::Zeroizing;

pub use backend::Backend;
use snapshot::{restore_bundle, write_database, RestoreOptions};

use super::error::{ApiError, ApiResult};
use super::store::jobs::{self, BackupFile, BackupRecord, Progress, RestoreRecord};
use super::store::{now_ms, Store};
use crate::seal;

/// How a backup is encrypted.
pub enum Encryption {
    /// Integrity only (a plain bundle: digest and per-block hashes).
    None,
    /// A passphrase given with the request (never stored).
    Passphrase(Zeroizing<String>),
    /// X25519 recipients: the server's own key plus any given.
    Recipients(Vec<seal::PublicKey>),
}

impl Encryption {
    /// The name recorded in the backup record.
    pub fn name(&self) -> &'static str {
        match self {
            Encryption::None => "none",
            Encryption::Passphrase(_) => "passphrase",
            Encryption::Recipients(_) => "recipients",
        }
    }
}

/// Which collections a job covers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these.
    pub include: Option<Vec<String>>,
    /// All but these.
    pub exclude: Option<Vec<String>>,
}

impl Filter {
    /// Checks that at most one of include/exclude is set, and the names.
    pub fn new(include: Option<Vec<String>>, exclude: Option<Vec<String>>) -> ApiResult<Self> {
        if include.is_some() && exclude.is_some() {
            return Err(ApiError::invalid("include and exclude are mutually exclusive: set at most one"));
        }
        for name in include.iter().chain(exclude.iter()).flatten() {
            crate::snapshot::validate_collection_name(name)?;
        }
        Ok(Self { include, exclude })
    }
    /// Whether `collection` is covered.
    pub fn covers(&self, collection: &str) -> bool {
        if let Some(inc) = &self.include {
            return inc.iter().any(|c| c == collection);
        }
        if let Some(exc) = &self.exclude {
            return !exc.iter().any(|c| c == collection);
        }
        true
    }
}

/// Live progress of a running job.
#[derive(Debug, Default)]
pub struct LiveProgress {
    /// Documents done.
    pub documents_done: AtomicU64,
    /// Documents in total.
    pub documents_total: AtomicU64,
    /// Bytes done.
    pub bytes_done: AtomicU64,
    /// Bytes in total (estimate).
    pub bytes_total: AtomicU64,
}

impl LiveProgress {
    fn snapshot(&self) -> Progress {
        Progress {
            documents_done: self.documents_done.load(Ordering::Relaxed),
            documents_total: self.documents_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
        }
    }
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Backups finished.
    pub backups_done: AtomicU64,
    /// Backups failed.
    pub backups_failed: AtomicU64,
    /// Bytes written by backups.
    pub backup_bytes: AtomicU64,
    /// Restores finished.
    pub restores_done: AtomicU64,
    /// Restores failed.
    pub restores_failed: AtomicU64,
    /// Documents restored.
    pub restored_documents: AtomicU64,
    /// Jobs running now.
    pub running: AtomicU64,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Jobs that run at once.
    pub concurrency: usize,
    /// Bytes per second a backup may write, and a restore read (0 = unlimited).
    pub rate_limit: u64,
    /// Compression threads per backup (0 = all cores).
    pub threads: usize,
    /// Niceness of a backup's threads (Linux; 0 = none).
    pub nice: i32,
    /// A backup's threads run under SCHED_IDLE (Linux).
    pub idle: bool,
}

/// The engine.
pub struct Engine {
    store: Arc<Store>,
    /// The backend.
    pub backend: Backend,
    node: String,
    config: EngineConfig,
    identity: seal::Identity,
    recipients: Vec<seal::PublicKey>,
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<String, Arc<LiveProgress>>>,
    /// Counters.
    pub metrics: EngineMetrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("backend", &self.backend).field("node", &self.node).finish_non_exhaustive()
    }
}

/// Keeps a job's I/O to the engine's rate limit (bytes per second, 0 =
/// unlimited) by sleeping once it is ahead of it.
struct Pace {
    rate_limit: u64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    fn new(rate_limit: u64) -> Self {
        Self { rate_limit, started: Instant::now(), bytes: 0 }
    }

    /// Counts `n` more bytes and waits until they are due.
    fn account(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.rate_limit > 0 {
            let due = std::time::Duration::from_secs_f64(self.bytes as f64 / self.rate_limit as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
}

/// Writes through to `inner`, hashing and counting the bytes, and keeping
/// to the rate limit.
struct Counting<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    progress: Arc<LiveProgress>,
    pace: Pace,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress.bytes_done.fetch_add(n as u64, Ordering::Relaxed);
        self.pace.account(n);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a backup file for a restore at the engine's rate limit.
struct Paced<R: Read> {
    inner: R,
    pace: Pace,
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pace.account(n);
        Ok(n)
    }
}

/// A backup's manifest: the record as it was when the backup completed.
fn manifest_bytes(rec: &BackupRecord) -> ApiResult<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(rec)?)
}

/// The object name of a database's file in a backup.
pub fn file_name(database: &str) -> String {
    format!("{}.coffer", database.replace('/', "."))
}

impl Engine {
    /// An engine over `store` and `backend`.
    pub fn new(store: Arc<Store>, backend: Backend, node: String, config: EngineConfig, identity: seal::Identity, recipients: Vec<seal::PublicKey>) -> Self {
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Self { store, backend, node, config, identity, recipients, slots, live: Mutex::new(HashMap::new()), metrics: EngineMetrics::default() }
    }

    /// The node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The server's public key (backups with `"encryption": "recipients"` are sealed to it).
    pub fn public_key(&self) -> seal::PublicKey {
        self.identity.public()
    }

    /// Recipients of a `recipients` backup: the server's key, configured keys, `extra`.
    pub fn recipients(&self, extra: Vec<seal::PublicKey>) -> Vec<seal::PublicKey> {
        let mut all = vec![self.identity.public()];
        all.extend(self.recipients.iter().cloned());
        all.extend(extra);
        all
    }

    /// After a restart: marks unfinished jobs `error` ("interrupted") and
    /// removes what they left in the backend, and removes backend content
    /// that no record describes.
    pub async fn recover(&self) -> ApiResult<Vec<String>> {
        let interrupted = self.store.run_write(|tx| jobs::mark_interrupted(tx, now_ms())).await?;
        // Rows an interrupted restore staged (never visible): dropped.
        let store = self.store.clone();
        let dropped = tokio::task::spawn_blocking(move || snapshot::drop_all_staging(&store)).await??;
        if dropped > 0 {
            tracing::warn!(restores = dropped, "dropped the staged rows of restores interrupted by a restart");
        }
        for id in &interrupted {
            tracing::warn!(backup = %id, "backup was interrupted by a restart; removing its leftovers");
            self.backend.remove(id).await?;
        }
        for id in self.backend.list_ids().await? {
            let known = {
                let id = id.clone();
                self.store.run(move |c| jobs::get_backup(c, &id)).await?
            };
            if known.is_none() {
                tracing::warn!(backup = %id, "removing backend content without a record");
                self.backend.remove(&id).await?;
            }
        }
        // Staging leftovers of anything.
        for id in self.backend.list_tmp_ids().await? {
            let rec = {
                let id = id.clone();
                self.store.run(move |c| jobs::get_backup(c, &id)).await?
            };
            // Only the temporaries: a complete backup keeps its files (the
            // filesystem backend leaves an empty `tmp/<id>` behind a write).
            if rec.is_none_or(|r| r.status != jobs::RUNNING && r.status != jobs::SCHEDULED) {
                self.backend.remove_tmp(&id).await?;
            }
        }
        Ok(interrupted)
    }

    /// The record with live progress merged in.
    pub fn with_progress(&self, mut rec: BackupRecord) -> BackupRecord {
        if let Some(p) = self.live.lock().ok().and_then(|l| l.get(&rec.id).cloned()) {
            rec.progress = p.snapshot();
        }
        rec
    }

    /// Records and starts a backup; returns the `scheduled` record.
    pub async fn start_backup(self: &Arc<Self>, rec: BackupRecord, encryption: Encryption) -> ApiResult<BackupRecord> {
        let stored = rec.clone();
        self.store.run_write(move |tx| jobs::insert_backup(tx, &stored)).await?;
        let progress = Arc::new(LiveProgress::default());
        self.live.lock().map_err(|_| ApiError::internal("poisoned"))?.insert(rec.id.clone(), progress.clone());
        let engine = self.clone();
        let job = rec.clone();
        tokio::spawn(async move {
            let permit = engine.slots.clone().acquire_owned().await;
            engine.metrics.running.fetch_add(1, Ordering::Relaxed);
            let id = job.id.clone();
            let result = engine.run_backup(job, encryption, progress).await;
            engine.metrics.running.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = result {
                tracing::warn!(backup = %id, code = e.code, error = %e.message, "backup failed");
            }
            if let Ok(mut live) = engine.live.lock() {
                live.remove(&id);
            }
            drop(permit);
        });
        Ok(rec)
    }

    async fn save(&self, rec: &BackupRecord) -> ApiResult<()> {
        let rec = rec.clone();
        self.store.run_write(move |tx| jobs::update_backup(tx, &rec)).await
    }

    async fn run_backup(self: &Arc<Self>, mut rec: BackupRecord, encryption: Encryption, progress: Arc<LiveProgress>) -> ApiResult<()> {
        rec.status = jobs::RUNNING.into();
        rec.started_at = Some(now_ms());
        self.save(&rec).await?;
        let outcome = self.write_backup(&rec, &encryption, progress.clone()).await;
        rec.progress = progress.snapshot();
        rec.finished_at = Some(now_ms());
        match outcome {
            Ok(files) => {
                rec.size = Some(files.iter().map(|f| f.size).sum());
                rec.digest = files.first().map(|f| f.digest.clone());
                rec.files = files;
                rec.status = jobs::DONE.into();
                rec.error = None;
                // Manifest last: from here on the backup is complete.
                self.backend.put_manifest(&rec.id, manifest_bytes(&rec)?).await?;
                self.save(&rec).await?;
                self.metrics.backups_done.fetch_add(1, Ordering::Relaxed);
                self.metrics.backup_bytes.fetch_add(rec.size.unwrap_or(0), Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                rec.status = jobs::ERROR.into();
                rec.error = Some(format!("{}: {}", e.code, e.message));
                let _ = self.backend.remove(&rec.id).await;
                self.save(&rec).await?;
                self.metrics.backups_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    async fn write_backup(self: &Arc<Self>, rec: &BackupRecord, encryption: &Encryption, progress: Arc<LiveProgress>) -> ApiResult<Vec<BackupFile>> {
        let mut files = Vec::new();
        for database in &rec.databases {
            let (org, db) = database.split_once('/').ok_or_else(|| ApiError::invalid("database must be org/db"))?;
            let object = file_name(database);
            let store = self.store.clone();
            let filter = Filter { include: rec.include.clone(), exclude: rec.exclude.clone() };
            let (org, db) = (org.to_string(), db.to_string());
            let recipients: Vec<seal::Recipient> = match encryption {
                Encryption::None => Vec::new(),
                Encryption::Passphrase(p) => vec![seal::Recipient::Passphrase(p.clone())],
                Encryption::Recipients(keys) => keys.iter().cloned().map(seal::Recipient::X25519).collect(),
            };
            let mut metadata = serde_json::Map::new();
            metadata.insert("backup".into(), rec.id.clone().into());
            metadata.insert("name".into(), rec.name.clone().into());
            metadata.insert("node".into(), rec.node.clone().into());
            metadata.insert("database".into(), database.clone().into());
            metadata.insert("created_at".into(), rec.created_at.into());
            metadata.insert("created_by".into(), serde_json::to_value(&rec.created_by)?);
            let progress = progress.clone();
            let config = self.config.clone();
            let database_name = database.clone();
            let runtime = tokio::runtime::Handle::current();
            let backend = self.backend.clone();
            let (id, name) = (rec.id.clone(), object.clone());
            let file = run_niced(config.nice, config.idle, move || -> ApiResult<BackupFile> {
                let counting = Counting {
                    inner: backend.tmp_writer(&id, &name, runtime)?,
                    hasher: blake3::Hasher::new(),
                    progress: progress.clone(),
                    pace: Pace::new(config.rate_limit),
                };
                let (mut counting, stats) = if recipients.is_empty() {
                    write_database(&store, &org, &db, &filter, counting, &progress, config.threads)?
                } else {
                    let options = seal::SealOptions { metadata: Some(metadata), threads: config.threads, ..Default::default() };
                    std::thread::scope(|scope| -> ApiResult<_> {
                        // The key is derived (Argon2id for a passphrase) while the snapshot is read and compressed.
                        let (recipients, options) = (&recipients, &options);
                        let opening = std::thread::Builder::new()
                            .name("coffer-seal-key".into())
                            .spawn_scoped(scope, move || seal::SealWriter::new(counting, recipients, options))
                            .map_err(|e| ApiError::internal(format!("cannot start a thread: {e}")))?;
                        let sealed = KeyPending { opening: Some(opening), early: Vec::new(), sealer: None };
                        let (sealed, stats) = write_database(&store, &org, &db, &filter, sealed, &progress, config.threads)?;
                        Ok((sealed.finish()?, stats))
                    })?
                };
                counting.flush()?;
                counting.inner.finish()?;
                Ok(BackupFile {
                    database: database_name,
                    object,
                    size: counting.pace.bytes,
                    sha: counting.hasher.finalize().to_hex().to_string(),
                    digest: stats.digest,
                    head: stats.head,
                    documents: stats.documents,
                    commits: stats.commits,
                    collections: stats.collections,
                })
            })
            .await?;
            self.backend.promote(&rec.id, &file.object).await?;
            files.push(file);
        }
        Ok(files)
    }

    /// A reader (blocking) over a complete file of a backup.
    async fn blocking_reader(&self, backup: &str, object: &str) -> ApiResult<Box<dyn Read + Send + 'static>> {
        if let Some(file) = self.backend.open_local(backup, object)? {
            return Ok(Box::new(file));
        }
        let (_, stream) = self.backend.get(backup, object).await?;
        Ok(Box::new(SyncIoBridge::new(StreamReader::new(stream))))
    }

    /// Keys that may open a backup: the passphrase given, or the server identity.
    fn keys(&self, passphrase: Option<Zeroizing<String>>) -> ApiResult<Vec<seal::Key>> {
        let mut keys = Vec::new();
        if let Some(p) = passphrase {
            keys.push(seal::Key::Passphrase(p));
        }
        let identity: seal::Identity = self.identity.to_secret_string().parse()?;
        keys.push(seal::Key::Identity(identity));
        Ok(keys)
    }

    /// Re-reads every file of a backup: size and hash of the stored bytes,
    /// every seal tag (with the key given, or the server's), every bundle
    /// hash and the digest. Returns one report per file.
    pub async fn verify(&self, rec: &BackupRecord, passphrase: Option<Zeroizing<String>>) -> ApiResult<Vec<serde_json::Value>> {
        if rec.status != jobs::DONE {
            return Err(ApiError::conflict(format!("backup {:?} is {}, not done", rec.id, rec.status)));
        }
        if !self.backend.has_manifest(&rec.id).await? {
            return Err(ApiError::new("CORRUPT", "the backup's manifest is missing from the backend"));
        }
        let mut reports = Vec::new();
        for file in &rec.files {
            let input = self.blocking_reader(&rec.id, &file.object).await?;
            let keys = if rec.encryption == "none" { Vec::new() } else { self.keys(passphrase.clone())? };
            let expected = file.clone();
            let encryption = rec.encryption.clone();
            let report = tokio::task::spawn_blocking(move || -> ApiResult<serde_json::Value> {
                let mut hashing = HashingReader { inner: input, hasher: blake3::Hasher::new(), bytes: 0 };
                let toc = open_bundle(&mut hashing, &keys, |reader| reader.read_to_end().map_err(ApiError::from))?;
                // Drain whatever follows (nothing, for a valid file).
                std::io::copy(&mut hashing, &mut std::io::sink())?;
                if hashing.bytes != expected.size || hashing.hasher.finalize().to_hex().as_str() != expected.sha {
                    return Err(ApiError::new("CORRUPT", format!("{}: stored bytes differ from those recorded", expected.object)));
                }
                if !expected.digest.is_empty() && toc.digest != expected.digest {
                    return Err(ApiError::new("CORRUPT", format!("{}: bundle digest differs from the one recorded", expected.object)));
                }
                Ok(serde_json::json!({"database": expected.database, "object": expected.object, "size": expected.size, "digest": toc.digest, "encryption": encryption, "ok": true}))
            })
            .await??;
            reports.push(report);
        }
        Ok(reports)
    }

    /// Records and starts a restore.
    pub async fn start_restore(
        self: &Arc<Self>,
        rec: RestoreRecord,
        backup: BackupRecord,
        file: BackupFile,
        key: Option<seal::Unlocked>,
    ) -> ApiResult<RestoreRecord> {
        let stored = rec.clone();
        self.store.run_write(move |tx| jobs::put_restore(tx, &stored)).await?;
        let engine = self.clone();
        let job = rec.clone();
        tokio::spawn(async move {
            let permit = engine.slots.clone().acquire_owned().await;
            engine.metrics.running.fetch_add(1, Ordering::Relaxed);
            engine.run_restore(job, backup, file, key).await;
            engine.metrics.running.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
        Ok(rec)
    }

    async fn run_restore(self: &Arc<Self>, mut rec: RestoreRecord, backup: BackupRecord, file: BackupFile, key: Option<seal::Unlocked>) {
        rec.status = jobs::RUNNING.into();
        rec.started_at = Some(now_ms());
        let saved = rec.clone();
        if let Err(e) = self.store.run_write(move |tx| jobs::put_restore(tx, &saved)).await {
            tracing::error!(error = %e, "cannot record restore start");
        }
        let outcome = self.restore_inner(&rec, &backup, &file, key).await;
        rec.finished_at = Some(now_ms());
        match outcome {
            Ok(counts) => {
                rec.status = jobs::DONE.into();
                rec.records = counts.records;
                rec.commits = counts.commits;
                rec.collections = counts.collections;
                rec.failed = 0;
                self.metrics.restores_done.fetch_add(1, Ordering::Relaxed);
                self.metrics.restored_documents.fetch_add(rec.records, Ordering::Relaxed);
            }
            Err((e, seen)) => {
                tracing::warn!(restore = %rec.id, code = e.code, error = %e.message, "restore failed");
                rec.status = jobs::ERROR.into();
                rec.error = Some(format!("{}: {}", e.code, e.message));
                rec.records = 0;
                rec.failed = seen;
                self.metrics.restores_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let saved = rec.clone();
        if let Err(e) = self.store.run_write(move |tx| jobs::put_restore(tx, &saved)).await {
            tracing::error!(error = %e, "cannot record restore end");
        }
    }

    async fn restore_inner(
        &self,
        rec: &RestoreRecord,
        backup: &BackupRecord,
        file: &BackupFile,
        key: Option<seal::Unlocked>,
    ) -> Result<snapshot::RestoreCounts, (ApiError, u64)> {
        let input = self.blocking_reader(&backup.id, &file.object).await.map_err(|e| (e, 0))?;
        let input = Paced { inner: input, pace: Pace::new(self.config.rate_limit) };
        let keys: Vec<seal::Key> = key.into_iter().map(seal::Key::Unlocked).collect();
        let (org, db) = rec.target.split_once('/').ok_or_else(|| (ApiError::invalid("target must be org/db"), 0))?;
        let options = RestoreOptions {
            org: org.to_string(),
            db: db.to_string(),
            filter: Filter { include: rec.include.clone(), exclude: rec.exclude.clone() },
            overwrite: rec.overwrite,
            author: rec.created_by.name.clone(),
            message: format!("restore of backup {}", backup.id),
        };
        let store = self.store.clone();
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = seen.clone();
        let result = tokio::task::spawn_blocking(move || open_bundle(input, &keys, |reader| restore_bundle(&store, reader, &options, &seen2))).await;
        match result {
            Ok(Ok(counts)) => Ok(counts),
            Ok(Err(e)) => Err((e, seen.load(Ordering::Relaxed))),
            Err(e) => Err((e.into(), seen.load(Ordering::Relaxed))),
        }
    }

    /// Validates an uploaded file at `tmp/<id>/<object>` (every hash; every
    /// seal tag when a key opens it, else the sealed header), then moves it
    /// into place and writes the manifest. Returns the file entry.
    pub async fn adopt_import(&self, rec: &mut BackupRecord, object: &str, size: u64, sha: String, passphrase: Option<Zeroizing<String>>) -> ApiResult<()> {
        let (_, stream) = self.backend.get_key(&Backend::tmp_key(&rec.id, object)).await?;
        let input = SyncIoBridge::new(StreamReader::new(stream.map_err(std::io::Error::other)));
        let has_passphrase = passphrase.is_some();
        let keys = self.keys(passphrase)?;
        type Checked = (String, String, u64, u64, Vec<String>);
        let (digest, encryption, documents, commits, collections) = tokio::task::spawn_blocking(move || -> ApiResult<Checked> {
            let (head, mut input) = read_ahead(input, 1 << 18)?;
            if seal::is_sealed(&head) {
                let info = seal::inspect(&head, &seal::OpenLimits::default())?;
                let kind = if info.recipients.iter().any(|r| matches!(r, seal::RecipientInfo::Passphrase { .. })) { "passphrase" } else { "recipients" };
                match open_bundle(&mut input, &keys, |reader| reader.read_to_end().map_err(ApiError::from)) {
                    Ok(toc) => Ok((toc.digest.clone(), kind.into(), toc.collections.iter().map(|c| c.documents).sum(), toc.commits, names(&toc))),
                    Err(e) if e.code == "WRONG_KEY" && !has_passphrase => {
                        // No key of ours opens it: only the header could be checked.
                        Ok((String::new(), kind.into(), 0, 0, Vec::new()))
                    }
                    Err(e) => Err(e),
                }
            } else {
                let toc = crate::bundle::BundleReader::new(&mut input, crate::bundle::ReadLimits::default())?.read_to_end()?;
                Ok((toc.digest.clone(), "none".into(), toc.collections.iter().map(|c| c.documents).sum(), toc.commits, names(&toc)))
            }
        })
        .await??;
        self.backend.promote(&rec.id, object).await?;
        rec.encryption = encryption;
        rec.files = vec![BackupFile {
            database: rec.databases[0].clone(),
            object: object.into(),
            size,
            sha,
            digest: digest.clone(),
            head: None,
            documents,
            commits,
            collections,
        }];
        rec.size = Some(size);
        rec.digest = (!digest.is_empty()).then_some(digest);
        rec.progress = Progress { documents_done: documents, documents_total: documents, bytes_done: size, bytes_total: size };
        rec.status = jobs::DONE.into();
        rec.started_at = Some(rec.created_at);
        rec.finished_at = Some(now_ms());
        self.backend.put_manifest(&rec.id, manifest_bytes(rec)?).await?;
        let stored = rec.clone();
        self.store.run_write(move |tx| jobs::insert_backup(tx, &stored)).await?;
        self.metrics.backups_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Engine {
    /// Starts a periodic backup loop (`method: periodic`, created by the
    /// server administrator `admin`).
    pub fn schedule(self: Arc<Self>, p: crate::server::Periodic) -> ApiResult<()> {
        if p.every_seconds == 0 {
            return Err(ApiError::invalid("every_seconds must be at least 1"));
        }
        let filter = Filter::new(p.include.clone(), p.exclude.clone())?;
        let mut org = None;
        for d in &p.databases {
            let (o, db) = d.split_once('/').ok_or_else(|| ApiError::invalid("periodic databases are org/db"))?;
            crate::server::store::validate_slug("organization", o)?;
            crate::server::store::validate_slug("database", db)?;
            if org.as_ref().is_some_and(|x: &String| x != o) {
                return Err(ApiError::invalid("a periodic backup covers one organization"));
            }
            org = Some(o.to_string());
        }
        let org = org.ok_or_else(|| ApiError::invalid("a periodic backup needs databases"))?;
        let none = match p.encryption.as_deref() {
            None | Some("recipients") => false,
            Some("none") => true,
            Some(other) => return Err(ApiError::invalid(format!("periodic encryption {other:?}: use recipients or none"))),
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(p.every_seconds));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = now_ms();
                let rec = BackupRecord {
                    id: crate::server::store::new_ksuid(),
                    name: format!("periodic {}", p.databases.join(" ")),
                    node: self.node.clone(),
                    org: org.clone(),
                    databases: p.databases.clone(),
                    include: filter.include.clone(),
                    exclude: filter.exclude.clone(),
                    encryption: if none { "none".into() } else { "recipients".into() },
                    method: "periodic".into(),
                    status: jobs::SCHEDULED.into(),
                    error: None,
                    progress: Progress::default(),
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                    size: None,
                    digest: None,
                    files: Vec::new(),
                    created_by: jobs::Creator { user_id: 0, name: "coffer".into(), email: String::new(), org: org.clone() },
                };
                let encryption = if none { Encryption::None } else { Encryption::Recipients(self.recipients(Vec::new())) };
                if let Err(e) = self.start_backup(rec, encryption).await {
                    tracing::warn!(code = e.code, error = %e.message, "periodic backup not started");
                }
            }
        });
        Ok(())
    }

    /// Checks that the key given (or the server's) opens a backup's file:
    /// reads and authenticates the sealed header only.
    /// Returns the key that opens the file: its file key, found once (for
    /// a passphrase, one Argon2id run), so the restore job does not derive
    /// it again. None for a plain bundle.
    pub async fn check_key(&self, rec: &BackupRecord, file: &BackupFile, passphrase: Option<Zeroizing<String>>) -> ApiResult<Option<seal::Unlocked>> {
        if rec.encryption == "none" {
            return Ok(None);
        }
        let input = self.blocking_reader(&rec.id, &file.object).await?;
        let keys = self.keys(passphrase)?;
        tokio::task::spawn_blocking(move || -> ApiResult<Option<seal::Unlocked>> {
            let (_, unlocked) = seal::unlock(std::io::BufReader::new(input), &keys, &seal::OpenLimits::default())?;
            Ok(Some(unlocked))
        })
        .await?
    }
}

/// A sealed file's writer whose key is still being derived on another
/// thread (Argon2id: 0.13 s of hashing, and as much again to fault in its
/// 64 MiB where that memory is new). The bundle's first bytes wait here,
/// at most [`KeyPending::MAX_EARLY`], so the backup reads and compresses
/// meanwhile instead of waiting for the key.
struct KeyPending<'scope, W: Write + Send> {
    opening: Option<std::thread::ScopedJoinHandle<'scope, crate::Result<seal::SealWriter<W>>>>,
    early: Vec<u8>,
    sealer: Option<seal::SealWriter<W>>,
}

impl<W: Write + Send> KeyPending<'_, W> {
    /// Bytes held before the writer is open; past this the backup waits for it.
    const MAX_EARLY: usize = 32 << 20;

    /// The open writer, waiting for it if needed, with the early bytes written.
    fn sealer(&mut self) -> std::io::Result<&mut seal::SealWriter<W>> {
        if let Some(opening) = self.opening.take() {
            let mut sealer = opening.join().map_err(|_| std::io::Error::other("the thread deriving the key panicked"))?.map_err(std::io::Error::other)?;
            sealer.write_all(&self.early)?;
            self.early = Vec::new();
            self.sealer = Some(sealer);
        }
        self.sealer.as_mut().ok_or_else(|| std::io::Error::other("the sealed file failed to open"))
    }

    fn finish(mut self) -> crate::Result<W> {
        self.sealer()?;
        self.sealer.take().expect("opened by sealer()").finish()
    }
}

impl<W: Write + Send> Write for KeyPending<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Some(opening) = &self.opening {
            if !opening.is_finished() && self.early.len() + data.len() <= Self::MAX_EARLY {
                self.early.extend_from_slice(data);
                return Ok(data.len());
            }
        }
        self.sealer()?.write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sealer {
            Some(sealer) => sealer.flush(),
            None => Ok(()),
        }
    }
}

/// Runs blocking work `f` on a thread of its own whose niceness is raised by
/// `nice` and, if `idle`, under the SCHED_IDLE policy (Linux, where both are
/// per thread and inherited by the threads it starts: the bundle's
/// compression and the seal's encryption workers). The thread ends with the
/// job, so no pooled thread keeps the lower priority.
async fn run_niced<T: Send + 'static>(nice: i32, idle: bool, f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("coffer-backup".into())
        .spawn(move || {
            lower_priority(nice, idle);
            let _ = done.send(f());
        })
        .map_err(|e| ApiError::internal(format!("cannot start a backup thread: {e}")))?;
    result.await.map_err(|_| ApiError::internal("the backup thread panicked"))?
}

#[cfg(target_os = "linux")]
fn lower_priority(nice: i32, idle: bool) {
    if nice > 0 {
        // PRIO_PROCESS with pid 0 is the calling thread on Linux. Raising
        // one's own niceness needs no privilege; failing it only costs latency.
        let now = rustix::process::getpriority_process(None).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(None, (now + nice).min(19)) {
            tracing::debug!(error = %e, "cannot lower the backup thread's priority");
        }
    }
    if idle {
        // A niceness only weighs the time slices: a writer that wakes up
        // still waits for the backup thread's slice to end, at every hop of
        // its request. SCHED_IDLE threads give the core up at once. Moving
        // oneself to SCHED_IDLE needs no privilege; failing it only costs latency.
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` outlives the call,
        // which only reads it.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot move the backup thread to SCHED_IDLE");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32, _idle: bool) {}

fn names(toc: &crate::bundle::Toc) -> Vec<String> {
    toc.collections.iter().map(|c| c.name.clone()).collect()
}

/// The bytes read ahead, then the rest of the input.
type Replayed<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// Reads up to `n` bytes ahead; returns them and a reader that yields
/// them again followed by the rest.
fn read_ahead<R: Read>(mut input: R, n: u64) -> ApiResult<(Vec<u8>, Replayed<R>)> {
    let mut head = Vec::new();
    (&mut input).take(n).read_to_end(&mut head)?;
    Ok((head.clone(), std::io::Cursor::new(head).chain(input)))
}

struct HashingReader<R: Read> {
    inner: R,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Opens a plain or sealed bundle and hands its reader to `f`.
pub fn open_bundle<'a, R: Read + 'a, T>(
    input: R,
    keys: &[seal::Key],
    f: impl FnOnce(crate::bundle::BundleReader<Box<dyn Read + 'a>>) -> ApiResult<T>,
) -> ApiResult<T> {
    let (head, input) = read_ahead(input, 8)?;
    let input = std::io::BufReader::with_capacity(1 << 20, input);
    let limits = crate::bundle::ReadLimits::default();
    if seal::is_sealed(&head) {
        let opened = seal::OpenReader::new(input, keys, &seal::OpenLimits::default())?;
        let boxed: Box<dyn Read + 'a> = Box::new(opened);
        f(crate::bundle::BundleReader::new(boxed, limits)?)
    } else {
        let boxed: Box<dyn Read + 'a> = Box::new(input);
        f(crate::bundle::BundleReader::new(boxed, limits)?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Writes `data` through a [`KeyPending`] whose writer opens after `delay`.
    fn through_key_pending(recipients: &[seal::Recipient], delay: Duration, data: &[u8]) -> crate::Result<Vec<u8>> {
        let options = seal::SealOptions::default();
        std::thread::scope(|scope| {
            let opening = scope.spawn(|| {
                std::thread::sleep(delay);
                seal::SealWriter::new(Vec::new(), recipients, &options)
            });
            let mut w = KeyPending { opening: Some(opening), early: Vec::new(), sealer: None };
            for chunk in data.chunks(1 << 20) {
                w.write_all(chunk)?;
                w.flush()?;
            }
            w.finish()
        })
    }

    #[test]
    fn bytes_written_while_the_key_is_derived_are_sealed_in_order() {
        let identity = seal::Identity::generate().unwrap();
        let recipients = [seal::Recipient::X25519(identity.public())];
        let keys = [seal::Key::Identity(identity)];
        // More than MAX_EARLY: the writer waits for the key past it.
        let data: Vec<u8> = (0..(KeyPending::<Vec<u8>>::MAX_EARLY + (3 << 20)) as u32).map(|i| (i % 251) as u8).collect();
        for delay in [Duration::ZERO, Duration::from_millis(300)] {
            let sealed = through_key_pending(&recipients, delay, &data).unwrap();
            assert_eq!(seal::open_to_vec(&sealed, &keys, &seal::OpenLimits::default()).unwrap(), data, "delay {delay:?}");
        }
        // A writer that fails to open: its error, with its code, from the write that needs it or from finish.
        let two = [seal::Recipient::passphrase("lantern-orbit-cactus-47"), seal::Recipient::passphrase("marmalade-orbit-cactus-48")];
        for len in [10, KeyPending::<Vec<u8>>::MAX_EARLY + 1] {
            let err = through_key_pending(&two, Duration::from_millis(50), &data[..len]).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT", "{err}");
        }
    }
}
