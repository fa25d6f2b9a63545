//! Where backups live: any `object_store` (local filesystem now).
//!
//! Layout, under the backend's root:
//!
//! ```text
//! tmp/<backup>/<file>       content being written (never listed, removed on restart)
//! <backup>/<file>           content, moved here when complete
//! <backup>/manifest.json    written last, atomically: the backup is complete
//! ```
//!
//! Write ordering makes crashes safe (as restic's data → index → snapshot):
//! content goes to `tmp/`, is renamed into place when complete, then the
//! manifest is put (an atomic put), then the job record turns `done`. A
//! crash at any point leaves either no manifest or a job that the next
//! start marks `interrupted` and whose objects it deletes.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::server::error::{ApiError, ApiResult};

/// Name of the manifest object of a backup.
pub const MANIFEST: &str = "manifest.json";
/// Prefix of in-progress content.
pub const TMP: &str = "tmp";

/// The backup backend.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn ObjectStore>,
    /// For the filesystem backend: its root (to sweep staging files).
    local_root: Option<PathBuf>,
    /// Human-readable kind (`filesystem`).
    pub kind: &'static str,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("kind", &self.kind).field("root", &self.local_root).finish()
    }
}

impl Backend {
    /// A filesystem backend rooted at `dir` (created if missing), with fsync.
    pub fn local(dir: &FsPath) -> ApiResult<Self> {
        std::fs::create_dir_all(dir)?;
        let fs = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true).with_automatic_cleanup(true);
        Ok(Self { store: Arc::new(fs), local_root: Some(dir.to_path_buf()), kind: "filesystem" })
    }

    /// Key of a complete file.
    pub fn key(backup: &str, file: &str) -> Path {
        Path::from(format!("{backup}/{file}"))
    }

    /// Key of a file being written.
    pub fn tmp_key(backup: &str, file: &str) -> Path {
        Path::from(format!("{TMP}/{backup}/{file}"))
    }

    /// A streaming writer to `key` (multipart; nothing visible until shut
    /// down), for async callers (uploads).
    pub fn writer(&self, key: Path) -> BufWriter {
        // Cloud stores want parts of 5 MiB or more; a filesystem does not care.
        let capacity = if self.local_root.is_some() { 1 << 20 } else { 8 << 20 };
        BufWriter::with_capacity(self.store.clone(), key, capacity)
    }

    /// A blocking writer of file `file` of backup `backup` under `tmp/`
    /// (nothing visible until [`promote`](Self::promote)d), to be used
    /// from a thread outside the runtime whose handle is given.
    ///
    /// On the filesystem it writes the file itself, on the calling thread:
    /// the store would hand every 1 MiB part to a blocking task of the
    /// runtime, at normal priority, where filling new page-cache pages took
    /// ~4 ms of kernel time per part on the benchmark's VM, in slices that
    /// writers' requests waited behind (a backup's thread runs at a lower
    /// priority, and so does its writing now). Other stores get a multipart
    /// upload.
    pub fn tmp_writer(&self, backup: &str, file: &str, runtime: tokio::runtime::Handle) -> ApiResult<Sink> {
        if let Some(path) = self.local_path(&format!("{TMP}/{backup}/{file}")) {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::File::create(&path)?;
            // 128 KiB writes: each is a stretch of kernel time (new page-cache
            // pages cost ~0.5 ms per 128 KiB on the benchmark's VM) that a
            // writer waking up on this core may wait out; 1 MiB writes made
            // that ~4 ms.
            return Ok(Sink::File(std::io::BufWriter::with_capacity(128 << 10, f)));
        }
        Ok(Sink::Store(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(self.writer(Self::tmp_key(backup, file)), runtime))))
    }

    /// Where the filesystem store keeps `key`, for keys it maps to the same
    /// path (plain segments); `None` for other stores or keys.
    fn local_path(&self, key: &str) -> Option<PathBuf> {
        let plain = |s: &str| !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let root = self.local_root.as_ref()?;
        key.split('/').all(plain).then(|| key.split('/').fold(root.clone(), |path, segment| path.join(segment)))
    }

    /// Moves a finished temporary file into place.
    pub async fn promote(&self, backup: &str, file: &str) -> ApiResult<()> {
        self.store.rename(&Self::tmp_key(backup, file), &Self::key(backup, file)).await?;
        if let Some(root) = &self.local_root {
            // The filesystem store leaves the emptied `tmp/<id>` directory
            // behind; remove_dir fails (ignored) while other files of the
            // backup are still being written there.
            let _ = std::fs::remove_dir(root.join(TMP).join(backup));
        }
        Ok(())
    }

    /// Writes the manifest (atomic put): the backup is complete.
    pub async fn put_manifest(&self, backup: &str, manifest: Vec<u8>) -> ApiResult<()> {
        self.store.put(&Self::key(backup, MANIFEST), PutPayload::from(manifest)).await?;
        Ok(())
    }

    /// Whether the manifest exists.
    pub async fn has_manifest(&self, backup: &str) -> ApiResult<bool> {
        match self.store.head(&Self::key(backup, MANIFEST)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes of a complete file, streamed; and its size.
    pub async fn get(&self, backup: &str, file: &str) -> ApiResult<(u64, futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>)> {
        self.get_key(&Self::key(backup, file)).await
    }

    /// For the filesystem backend, a complete file opened for plain
    /// blocking reads: object_store streams a local file in 8 KiB chunks,
    /// one blocking task each, which costs more than the reading itself.
    /// `None` for other backends (or names it would encode).
    pub fn open_local(&self, backup: &str, file: &str) -> ApiResult<Option<std::fs::File>> {
        match self.local_path(&format!("{backup}/{file}")) {
            Some(path) => match std::fs::File::open(path) {
                Ok(f) => Ok(Some(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found("backup content not found in the backend")),
                Err(e) => Err(e.into()),
            },
            None => Ok(None),
        }
    }

    /// The bytes at `key`, streamed; and its size.
    pub async fn get_key(&self, key: &Path) -> ApiResult<(u64, futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>)> {
        let result = self.store.get(key).await?;
        let size = result.meta.size;
        let stream = result.into_stream().map_err(std::io::Error::other).boxed();
        Ok((size, stream))
    }

    /// Deletes everything of a backup: complete files, manifest, temporaries.
    pub async fn remove(&self, backup: &str) -> ApiResult<()> {
        self.remove_under(&[backup.to_string(), format!("{TMP}/{backup}")]).await
    }

    /// Deletes only a backup's temporaries (what a write cut short left
    /// under `tmp/`); its complete files and manifest stay.
    pub async fn remove_tmp(&self, backup: &str) -> ApiResult<()> {
        self.remove_under(&[format!("{TMP}/{backup}")]).await
    }

    /// Deletes every object under each of `prefixes` (each a backup id, or
    /// `tmp/` and one) and, on the filesystem, their directories.
    async fn remove_under(&self, prefixes: &[String]) -> ApiResult<()> {
        for prefix in prefixes {
            let prefix = Path::from(prefix.as_str());
            let keys: Vec<Path> = self.store.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await?;
            for key in keys {
                match self.store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let Some(root) = &self.local_root {
            // Multipart staging files of an upload a crash cut short are not
            // listed by the store: sweep the directories themselves.
            for prefix in prefixes {
                match std::fs::remove_dir_all(root.join(prefix)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Backup ids present in the backend (complete or not).
    pub async fn list_ids(&self) -> ApiResult<Vec<String>> {
        let listing = self.store.list_with_delimiter(None).await?;
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).filter(|p| p != TMP).collect())
    }

    /// Backup ids with content under `tmp/`.
    pub async fn list_tmp_ids(&self) -> ApiResult<Vec<String>> {
        let listing = self.store.list_with_delimiter(Some(&Path::from(TMP))).await?;
        let mut ids: Vec<String> = listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
        if let Some(root) = &self.local_root {
            if let Ok(entries) = std::fs::read_dir(root.join(TMP)) {
                ids.extend(entries.flatten().filter_map(|e| e.file_name().into_string().ok()));
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// Where a backup file is written: see [`Backend::tmp_writer`].
pub enum Sink {
    /// A file of the filesystem backend.
    File(std::io::BufWriter<std::fs::File>),
    /// A multipart upload to an object store.
    Store(Box<tokio_util::io::SyncIoBridge<BufWriter>>),
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Store(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Store(s) => s.flush(),
        }
    }
}

impl Sink {
    /// Makes everything written durable: the file synced to disk, or the
    /// upload completed. (Still under `tmp/` until promoted.)
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all(),
            Sink::Store(mut s) => s.shutdown(),
        }
    }
}
