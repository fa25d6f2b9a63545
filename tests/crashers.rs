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
    let mut files: Vec<PathBuf> =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
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

/// Rebuilds the bundle of an empty snapshot with `schema` as the SCHEMA
/// block's raw text, with a correct digest, table of contents and trailer —
/// i.e. what a foreign or hostile writer could produce.
fn bundle_with_schema_text(schema: &[u8]) -> Vec<u8> {
    let good = coffer::bundle::to_vec(&coffer::Snapshot::default()).unwrap();
    let mut out = good[..12].to_vec();
    let mut digest = blake3::Hasher::new();
    let (mut raw_bytes, mut stored_bytes) = (0u64, 0u64);
    let mut pos = 12;
    loop {
        let kind = good[pos];
        let stored_len = u32::from_le_bytes(good[pos + 6..pos + 10].try_into().unwrap()) as usize;
        if kind == 6 {
            break; // the TOC: rewritten below
        }
        assert_eq!(good[pos + 1], 0, "small blocks are stored");
        let raw = if kind == 1 { schema } else { &good[pos + 10..pos + 10 + stored_len] };
        out.push(kind);
        out.push(0);
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        out.extend_from_slice(raw);
        digest.update(&[kind]);
        digest.update(&(raw.len() as u32).to_le_bytes());
        digest.update(raw);
        raw_bytes += raw.len() as u64;
        stored_bytes += 10 + raw.len() as u64;
        pos += 10 + stored_len;
    }
    let toc_offset = out.len() as u64;
    let branches_offset = toc_offset - 12; // the BRANCHES block ("{}") is the last before the TOC
    let toc = serde_json::json!({
        "branches": 0, "collections": [], "commits": 0, "digest": digest.finalize().to_hex().to_string(),
        "history_offset": branches_offset, "raw_bytes": raw_bytes, "stored_bytes": stored_bytes,
    });
    let toc = coffer::canonical::to_vec(&toc).unwrap();
    out.extend_from_slice(&[6, 0]);
    out.extend_from_slice(&(toc.len() as u32).to_le_bytes());
    out.extend_from_slice(&(toc.len() as u32).to_le_bytes());
    out.extend_from_slice(&toc);
    let bytes_hash = blake3::hash(&out);
    out.extend_from_slice(&toc_offset.to_le_bytes());
    out.extend_from_slice(bytes_hash.as_bytes());
    out.extend_from_slice(coffer::bundle::END_MAGIC.as_slice());
    out
}

#[test]
fn rebuilt_bundle_with_canonical_schema_reads() {
    // The rebuilding itself is right: with canonical text it gives a bundle that reads.
    let bytes = bundle_with_schema_text(b"null");
    harness::bundle_reader(&bytes).unwrap();
    let bytes = bundle_with_schema_text(br#"{"version":1}"#);
    harness::bundle_reader(&bytes).unwrap();
}

/// FORMAT.md §2: every JSON value stored in a bundle is canonical; a second
/// encoding of the same snapshot (with a second content digest) is refused.
#[test]

fn non_canonical_schema_is_corrupt() {
    let bytes = bundle_with_schema_text(br#"{ "version" : 1 }"#);
    let err = harness::bundle_reader(&bytes).expect_err("a bundle with a non-canonical schema must not read");
    assert_eq!(err.code(), "CORRUPT");
}
