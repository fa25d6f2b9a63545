//! Replays committed fuzz inputs as ordinary tests, through the very code
//! paths of the fuzz targets (`fuzz/src/harness.rs`, included below).
//!
//! - `tests/crashers/<target>/<what>__<CODE>.bin` must fail with `CODE`,
//!   never panic. Crashes found by `cargo fuzz` are saved here once
//!   understood, named after the code they must give; the hand-made hostile
//!   inputs (truncations, absurd lengths, …) come from
//!   `tests/crashers/make_inputs.py`.
//! - `fuzz/seeds/<target>/*` are valid inputs: they must succeed (this keeps
//!   the seeds and the harness honest).

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/harness.rs"]
mod harness;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// The code a crasher file must give: `name__CODE.bin`.
fn expected_code(path: &Path) -> &str {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let code = stem.rsplit_once("__").map(|(_, c)| c).unwrap_or_else(|| panic!("{}: name it <what>__<CODE>.bin", path.display()));
    assert!(coffer::Error::CODES.contains(&code), "{}: {code} is not an error code", path.display());
    code
}

/// Runs every crasher of `target` through `run`, collecting all failures.
fn replay(target: &str, run: impl Fn(&[u8]) -> Option<&'static str>) {
    let files = files(&format!("tests/crashers/{target}"));
    assert!(files.len() >= 5, "tests/crashers/{target} should hold inputs");
    let mut failures = Vec::new();
    for path in &files {
        let want = expected_code(path);
        let bytes = fs::read(path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| run(&bytes))) {
            Err(_) => failures.push(format!("{}: panicked", path.display())),
            Ok(None) => failures.push(format!("{}: succeeded; expected {want}", path.display())),
            Ok(Some(got)) if got != want => failures.push(format!("{}: {got}; expected {want}", path.display())),
            Ok(Some(_)) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} inputs misbehave:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn bundle_reader_crashers_fail_with_their_code() {
    replay("bundle_reader", |b| harness::bundle_reader(b).err().map(|e| e.code()));
}

#[test]
fn sealed_header_crashers_fail_with_their_code() {
    replay("sealed_header", |b| harness::sealed_header(b).err().map(|e| e.code()));
}

#[test]
fn fuzz_seeds_are_valid() {
    for path in files("fuzz/seeds/bundle_reader") {
        if let Err(e) = harness::bundle_reader(&fs::read(&path).unwrap()) {
            panic!("{}: {e}", path.display());
        }
    }
    for path in files("fuzz/seeds/sealed_header") {
        if let Err(e) = harness::sealed_header(&fs::read(&path).unwrap()) {
            panic!("{}: {e}", path.display());
        }
    }
    for path in files("fuzz/seeds/seal_round_trip") {
        harness::seal_round_trip(&fs::read(&path).unwrap());
    }
}
