//! The code paths the fuzz targets drive, shared with `tests/crashers.rs`
//! (which includes this file by `#[path]`), so that a committed crasher is
//! replayed exactly as the fuzzer ran it.
//!
//! Each harness returns the result of its primary path (an `Err` carries a
//! stable code) and panics only when an *invariant* breaks: streaming and
//! one-shot disagree, a sealed round trip does not give the input back, a
//! tampered file opens, or two readers of the same bundle disagree.
//! A panic anywhere inside the library is, of course, also a finding.

#![allow(dead_code)] // each user calls a different subset

use std::io::Cursor;

use coffer::bundle::{read_collection, read_toc, BundleReader, DocumentRef, Item, ReadLimits, Toc};
use coffer::seal::{self, Decryptor, DeterministicRandom, Encryptor, Identity, KdfParams, Key, OpenLimits, Recipient, SealOptions, SeekReader};
use coffer::Error;

/// The passphrase every fuzz input is opened with (seeds are sealed with it).
pub const PASSPHRASE: &str = "coffer fuzz passphrase";
/// Seed of the fixed X25519 identity every fuzz input is also opened with.
pub const IDENTITY_SEED: &[u8] = b"coffer fuzz identity";
/// Seed of the random source used when sealing in the round-trip target.
pub const SEAL_SEED: &[u8] = b"coffer fuzz round trip";
/// Segment size used by the round-trip target and the seeds (16 KiB, the minimum).
pub const SEGMENT_LOG2: u8 = 14;
/// Most collections read back one by one with `read_collection` per input.
const MAX_COLLECTIONS_READ: usize = 16;

/// Argon2id parameters small enough for thousands of runs per second.
pub fn fast_kdf() -> KdfParams {
    KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }
}

/// Seal options of the round-trip target and of the sealed seeds.
pub fn fast_seal_options(threads: usize) -> SealOptions {
    SealOptions { segment_log2: SEGMENT_LOG2, kdf: fast_kdf(), metadata: None, threads }
}

/// Reader limits: KDF costs a little above `fast_kdf`, so that a header
/// asking for more is rejected (`LIMIT_EXCEEDED`) before any work.
pub fn open_limits() -> OpenLimits {
    OpenLimits { max_kdf_memory_kib: 256, max_kdf_iterations: 2, max_kdf_parallelism: 2, ..OpenLimits::default() }
}

/// The fixed identity (deterministic, so seeds sealed to it stay valid).
pub fn identity() -> Identity {
    Identity::generate_with(&mut DeterministicRandom::new(IDENTITY_SEED)).expect("a deterministic random source does not fail")
}

/// Both keys: the passphrase and the fixed identity.
pub fn keys() -> Vec<Key> {
    vec![Key::passphrase(PASSPHRASE), Key::Identity(identity())]
}

/// FNV-1a, to derive split points and tamper positions from the input itself.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Up to three increasing split points in `0..=len`, derived from `data`.
fn split_points(data: &[u8], len: usize) -> Vec<usize> {
    let h = fnv(data);
    let mut points: Vec<usize> = (0..3).map(|i| ((h >> (i * 20)) & 0xf_ffff) as usize % (len + 1)).collect();
    points.sort_unstable();
    points
}

// ---------------------------------------------------------------- bundle_reader

/// What a full streaming read gives: the documents of each collection and the TOC.
struct Streamed {
    collections: Vec<(String, Vec<DocumentRef>)>,
    toc: Toc,
}

fn read_streaming(data: &[u8]) -> Result<Streamed, Error> {
    let mut reader = BundleReader::new(data, ReadLimits::default())?;
    let mut collections: Vec<(String, Vec<DocumentRef>)> = Vec::new();
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Collection { name, .. } => collections.push((name, Vec::new())),
            Item::Document(doc) => match collections.last_mut() {
                Some((_, docs)) => docs.push(doc),
                None => panic!("the reader yielded a document outside any collection"),
            },
            Item::Schema(_) | Item::Commit(_) | Item::Branches(_) => {}
        }
    }
    let toc = reader.toc().cloned().expect("a bundle read to its end has a table of contents");
    Ok(Streamed { collections, toc })
}

fn read_one_collection(data: &[u8], name: &str) -> Result<Vec<DocumentRef>, Error> {
    let mut reader = read_collection(Cursor::new(data), name)?;
    let mut docs = Vec::new();
    // The fragment is only checked against its TOC entry at its end, so a
    // damaged bundle may yield another collection's name first; it must then fail.
    let mut other_name = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Collection { name: got, .. } if got != name => other_name = Some(got),
            Item::Collection { .. } => {}
            Item::Document(doc) => docs.push(doc),
            other => panic!("read_collection yielded {other:?}"),
        }
    }
    if let Some(got) = other_name {
        panic!("read_collection({name:?}) read collection {got:?} and succeeded");
    }
    Ok(docs)
}

/// Arbitrary bytes as a plain bundle: the streaming reader (`BundleReader::new`
/// and `next_item` to the end), then `read_toc` and `read_collection` over a
/// `Cursor`. Returns the streaming reader's result.
pub fn bundle_reader(data: &[u8]) -> Result<(), Error> {
    let streamed = read_streaming(data);
    let toc = read_toc(&mut Cursor::new(data));
    if let Ok(toc) = &toc {
        for entry in toc.collections.iter().take(MAX_COLLECTIONS_READ) {
            let fragment = read_one_collection(data, &entry.name);
            if let Ok(full) = &streamed {
                let docs = full.collections.iter().find(|(n, _)| *n == entry.name).map(|(_, d)| d);
                match fragment {
                    Ok(fragment) => assert_eq!(Some(&fragment), docs, "read_collection({:?}) disagrees with the full read", entry.name),
                    Err(e) => panic!("read_collection({:?}) fails ({e}) on a bundle that reads in full", entry.name),
                }
            }
        }
    }
    if let Ok(full) = &streamed {
        match &toc {
            Ok(toc) => assert_eq!(toc, &full.toc, "read_toc disagrees with the full read"),
            Err(e) => panic!("read_toc fails ({e}) on a bundle that reads in full"),
        }
    }
    streamed.map(|_| ())
}

// ---------------------------------------------------------------- sealed_header

/// Opens `data` with the push API, feeding it in pieces cut at `splits`.
fn open_pushed(data: &[u8], splits: &[usize], threads: usize) -> Result<Vec<u8>, Error> {
    let mut dec = Decryptor::new(&keys(), open_limits());
    dec.set_threads(threads);
    let mut out = Vec::new();
    let mut start = 0;
    for &end in splits.iter().chain(std::iter::once(&data.len())) {
        out.extend_from_slice(&dec.push(&data[start..end])?);
        let _ = dec.header_bytes_needed();
        start = end;
    }
    out.extend_from_slice(&dec.finish()?);
    Ok(out)
}

/// Reads the whole plaintext through `SeekReader` (random access), the
/// segments in an order derived from the input, then checks `len`.
fn open_seeking(data: &[u8]) -> Result<Vec<u8>, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let mut reader = SeekReader::new(Cursor::new(data), &keys(), &open_limits())?;
    let len = usize::try_from(reader.len()).expect("a plaintext shorter than its file fits in usize");
    assert!(len <= data.len(), "SeekReader claims {len} bytes of plaintext in a {}-byte file", data.len());
    let mut out = vec![0u8; len];
    // Read from a point derived from the input to the end, then the start.
    let start = split_points(data, len)[0];
    for (from, to) in [(start, len), (0, start)] {
        reader.seek(SeekFrom::Start(from as u64)).map_err(coffer::error::into_error)?;
        reader.read_exact(&mut out[from..to]).map_err(coffer::error::into_error)?;
    }
    let mut extra = [0u8; 1];
    for beyond in [0, 1, 1 << 40] {
        reader.seek(SeekFrom::End(beyond)).map_err(coffer::error::into_error)?;
        assert_eq!(reader.read(&mut extra).map_err(coffer::error::into_error)?, 0, "SeekReader reads past its length");
    }
    Ok(out)
}

/// Arbitrary bytes as a sealed file: `seal::inspect`, then the `Decryptor`
/// (push/finish) with the fixed passphrase and identity, once in one push on
/// one thread and once in pieces on two; both must agree. `SeekReader` must
/// accept exactly the files the `Decryptor` accepts, with the same plaintext.
/// Returns the one-push result.
pub fn sealed_header(data: &[u8]) -> Result<Vec<u8>, Error> {
    let inspected = seal::inspect(data, &open_limits());
    let whole = open_pushed(data, &[], 1);
    let pieces = open_pushed(data, &split_points(data, data.len()), 2);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert!(a == b, "one push and several pushes give different plaintext"),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "one push fails with {a}, several pushes with {b}"),
        (a, b) => panic!("one push gives {:?}, several pushes {:?}", a.as_ref().map(Vec::len), b.as_ref().map(Vec::len)),
    }
    match (&whole, open_seeking(data)) {
        (Ok(a), Ok(b)) => assert!(*a == b, "SeekReader reads other plaintext than the Decryptor"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("the Decryptor opens the file, SeekReader fails: {e}"),
        (Err(e), Ok(b)) => panic!("the Decryptor fails ({e}), SeekReader reads {} bytes", b.len()),
    }
    if whole.is_ok() {
        assert!(inspected.is_ok(), "a file that opens does not inspect: {:?}", inspected.err());
    }
    whole
}

// ---------------------------------------------------------------- seal_round_trip

/// Arbitrary data: the first byte picks threads, recipient and a tamper bit;
/// the rest is sealed (deterministic random source, small KDF, 16 KiB
/// segments), in one call and pushed in pieces (same bytes), then opened
/// (same plaintext); one flipped bit or a truncation must not open.
pub fn seal_round_trip(data: &[u8]) {
    let (ctl, plain) = match data.split_first() {
        Some((&c, rest)) => (c, rest),
        None => (0, data),
    };
    let options = fast_seal_options(1 + usize::from(ctl & 1));
    let recipient = || if ctl & 2 == 0 { Recipient::passphrase(PASSPHRASE) } else { Recipient::X25519(identity().public()) };

    let sealed = seal::seal_to_vec_with(plain, &[recipient()], &options, &mut DeterministicRandom::new(SEAL_SEED)).expect("sealing any plaintext succeeds");

    let mut enc = Encryptor::with_random(&[recipient()], &options, &mut DeterministicRandom::new(SEAL_SEED)).expect("sealing any plaintext succeeds");
    let mut pushed = Vec::new();
    let mut start = 0;
    for end in split_points(plain, plain.len()).into_iter().chain(std::iter::once(plain.len())) {
        pushed.extend_from_slice(&enc.push(&plain[start..end]).expect("push succeeds"));
        start = end;
    }
    pushed.extend_from_slice(&enc.finish().expect("finish succeeds"));
    assert!(pushed == sealed, "sealing in pieces gives other bytes than sealing at once");

    let opened = seal::open_to_vec(&sealed, &keys(), &open_limits()).expect("a sealed file opens");
    assert!(opened == plain, "the round trip changed the data");
    let info = seal::inspect(&sealed, &open_limits()).expect("a sealed file inspects");
    assert_eq!(info.segment_size, 1 << SEGMENT_LOG2);

    let pos = (fnv(data) % sealed.len() as u64) as usize;
    let mut tampered = sealed.clone();
    tampered[pos] ^= 1 << (ctl >> 5);
    if let Ok(out) = seal::open_to_vec(&tampered, &keys(), &open_limits()) {
        panic!("flipping bit {} of byte {pos} of {} still opens ({} bytes)", ctl >> 5, sealed.len(), out.len());
    }
    if let Ok(out) = seal::open_to_vec(&sealed[..pos], &keys(), &open_limits()) {
        panic!("truncated to {pos} of {} bytes, the file still opens ({} bytes)", sealed.len(), out.len());
    }
}
