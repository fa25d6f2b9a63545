//! A fixed set of named worker threads that take jobs from one queue: the
//! bundle writer's compression and the bundle reader's decoding (native
//! builds; wasm32 has no threads).

use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

pub(crate) struct Workers<J: Send + 'static> {
    jobs: Option<mpsc::Sender<J>>,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static> Workers<J> {
    /// Starts `threads` threads named `name`; each makes its own state with
    /// `state` (on the caller's thread) and runs `work` on every job it takes.
    pub(crate) fn new<S: Send + 'static>(threads: usize, name: &str, mut state: impl FnMut() -> Result<S>, work: fn(&mut S, J)) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<J>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let rx = Arc::clone(&rx);
            let mut own = state()?;
            let handle = std::thread::Builder::new().name(name.into()).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(guard) => guard.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                work(&mut own, job);
                // A job is a few ms of CPU without a system call (zstd of a
                // 1 MiB block ≈ 3 ms). Where the workers run at a low
                // priority (the server's backups, under SCHED_IDLE), a thread
                // that wakes up on this core may wait until this one gives it
                // up: on the benchmark's VM (Linux 6.18, HZ=250) that was the
                // next timer tick, up to 4 ms, doubling a writer's p99 (see
                // BENCHMARKS.md). Yielding between jobs bounds that wait by a
                // job, for one system call per job.
                std::thread::yield_now();
            });
            handles.push(handle.map_err(Error::Io)?);
        }
        Ok(Self { jobs: Some(tx), threads: handles })
    }

    /// Queues `job`; false once the workers are gone.
    pub(crate) fn send(&self, job: J) -> bool {
        self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok())
    }
}

impl<J: Send + 'static> Drop for Workers<J> {
    /// Closes the queue and waits for the jobs already taken.
    fn drop(&mut self) {
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
