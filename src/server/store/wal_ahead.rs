//! Page cache for the WAL, made ahead of a bulk write (Linux).
//!
//! A restore appends its whole size to the WAL. On a VM that hands free memory
//! back to its host (the benchmark VM: Firecracker with free page reporting),
//! every new page-cache page is a host-side fault on first touch, ~3 ms per
//! MiB, and SQLite's `pwrite`s paid it on the restore's writer thread, the
//! restore's critical path (~1.3 CPU-s of a 512 MiB restore). A thread of its
//! own now grows the file ahead of the writes and loads the new range into
//! the page cache: `fallocate` (the size grows, blocks are reserved, and no
//! byte is written, so SQLite's frames are never touched; fallocate leaves
//! written blocks as they are) and `POSIX_FADV_WILLNEED` (the kernel makes
//! zero-filled, clean page-cache pages for the range, in this thread). The
//! writer's `pwrite`s then land in cached pages.
//!
//! Safe for SQLite: a WAL may be longer than its frames (the tail of an
//! older, longer WAL is normal); recovery stops at the first frame whose salt
//! and checksum do not match, which zeros never do. What is grown stays: at
//! most [`AHEAD`] plus a quarter of the bulk's bytes beyond its frames, and
//! SQLite writes over it later, as over any WAL left long.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How far ahead of the estimated end of the writes the page cache is made.
const AHEAD: u64 = 64 << 20;
/// One step of growing.
const STEP: u64 = 8 << 20;
/// Free disk space never taken for it.
const RESERVE: u64 = 1 << 30;
/// Most one bulk write grows the WAL by ahead of SQLite.
const MAX_TOTAL: u64 = 16 << 30;

#[derive(Default)]
struct Shared {
    /// Bytes the bulk write has handed to SQLite so far (its estimate of the WAL's growth).
    written: AtomicU64,
    stop: AtomicBool,
}

/// The thread growing the WAL during one bulk write; stopped on drop.
pub struct WalAhead {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalAhead {
    /// Starts growing `wal` (the store's `-wal` file) ahead of a bulk write.
    /// None when there is nothing to do it with (no such file, no thread).
    pub fn start(wal: PathBuf) -> Option<Self> {
        let file = std::fs::OpenOptions::new().write(true).open(&wal).ok()?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let thread = std::thread::Builder::new().name("coffer-wal-ahead".into()).spawn(move || run(&file, &state)).ok()?;
        Some(Self { shared, thread: Some(thread) })
    }

    /// The bulk write handed `bytes` more to SQLite.
    pub fn wrote(&self, bytes: u64) {
        self.shared.written.fetch_add(bytes, Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for WalAhead {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn run(file: &std::fs::File, shared: &Shared) {
    let Ok(meta) = file.metadata() else { return };
    let start = meta.len();
    let mut end = start;
    while !shared.stop.load(Ordering::Relaxed) {
        // Where SQLite's writes will be: the bulk's first commit normally
        // starts the WAL over (the checkpoint had caught up), so at about
        // its bytes so far from the start of the file, plus a quarter
        // (frame headers, pages a later batch writes again). A WAL already
        // longer than that is not grown until the writes near its end.
        let written = shared.written.load(Ordering::Relaxed);
        let want = written.saturating_add(written / 4).saturating_add(AHEAD);
        if end >= want {
            std::thread::park_timeout(Duration::from_millis(20));
            continue;
        }
        if end - start >= MAX_TOTAL {
            return;
        }
        let enough_space = rustix::fs::fstatvfs(file).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) > RESERVE + STEP);
        if !enough_space {
            tracing::debug!("WAL not grown ahead: the disk is nearly full");
            return;
        }
        let len = (want - end).min(STEP);
        if let Err(e) = rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), end, len) {
            tracing::debug!(error = %e, "WAL not grown ahead");
            return;
        }
        let _ = rustix::fs::fadvise(file, end, std::num::NonZeroU64::new(len), rustix::fs::Advice::WillNeed);
        end += len;
    }
}
