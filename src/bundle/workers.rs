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
