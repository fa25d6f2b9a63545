//! Shared harnesses of the fuzz targets. The harness code itself lives in
//! `harness.rs` so that the root crate's `tests/crashers.rs` can include the
//! very same file (`#[path]`) and replay committed inputs through the same
//! code paths, without depending on this crate or on libFuzzer.

#[path = "harness.rs"]
pub mod harness;
