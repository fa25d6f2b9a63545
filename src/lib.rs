//! coffer — portable, encrypted, deterministic database backups.
//!
//! Data flows one way: [`snapshot`] (the model) → [`bundle`] (deterministic,
//! compressed, plaintext) → [`seal`] (encrypted, authenticated) on the way
//! out, and back on the way in. The byte layouts are specified in
//! `docs/FORMAT.md`.

pub mod bundle;
pub mod canonical;
pub mod dir;
pub mod error;
mod io_util;
pub mod seal;
#[cfg(feature = "server")]
pub mod server;
pub mod snapshot;
#[cfg(feature = "wasm")]
pub mod wasm;

pub use error::{Error, Result};
pub use snapshot::{Change, Collection, Commit, History, Snapshot};
