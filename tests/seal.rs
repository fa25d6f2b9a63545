//! Sealing: round trips, tamper detection, truncation, streaming ≡ one-shot.

use std::io::{Read, Write};

use coffer::seal::{self, Decryptor, DeterministicRandom, Encryptor, Identity, KdfParams, Key, OpenLimits, OpenReader, Recipient, SealOptions, SealWriter};
use proptest::prelude::*;

/// Small Argon2id parameters so that tests stay fast (the format is the same).
fn fast() -> SealOptions {
    SealOptions { segment_log2: 14, kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, metadata: None, threads: 2 }
}

fn seal_pw(data: &[u8], pw: &str, seed: &[u8]) -> Vec<u8> {
    seal::seal_to_vec_with(data, &[Recipient::passphrase(pw)], &fast(), &mut DeterministicRandom::new(seed)).unwrap()
}

fn open_pw(sealed: &[u8], pw: &str) -> coffer::Result<Vec<u8>> {
    seal::open_to_vec(sealed, &[Key::passphrase(pw)], &OpenLimits::default())
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

const SEG: usize = 1 << 14;

#[test]
fn passphrase_round_trip_at_segment_edges() {
    for n in [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5] {
        let plain = data(n);
        let sealed = seal_pw(&plain, "correct horse", b"edges");
        assert_eq!(open_pw(&sealed, "correct horse").unwrap(), plain, "n = {n}");
    }
}

#[test]
fn default_options_round_trip() {
    let plain = data(3 << 20);
    let sealed = seal::seal_to_vec(&plain, &[Recipient::passphrase("pw")], &SealOptions::default()).unwrap();
    assert_eq!(open_pw(&sealed, "pw").unwrap(), plain);
    let info = seal::inspect(&sealed, &OpenLimits::default()).unwrap();
    assert_eq!(info.segment_size, 1 << 20);
}

#[test]
fn wrong_keys_are_wrong_key() {
    let sealed = seal_pw(b"secret", "right", b"wk");
    assert_eq!(open_pw(&sealed, "wrong").unwrap_err().code(), "WRONG_KEY");
    let id = Identity::generate().unwrap();
    let err = seal::open_to_vec(&sealed, &[Key::Identity(id)], &OpenLimits::default()).unwrap_err();
    assert_eq!(err.code(), "WRONG_KEY");
    assert!(err.to_string().contains("passphrase"), "{err}");
}

#[test]
fn an_unlocked_key_opens_its_own_file_without_the_passphrase_and_no_other() {
    let plain = data(3 * SEG + 7);
    let sealed = seal_pw(&plain, "right", b"unlock-1");
    // The same passphrase and data, another salt and nonce: another file.
    let other = seal_pw(&plain, "right", b"unlock-2");
    let limits = OpenLimits::default();

    let (info, unlocked) = seal::unlock(&sealed[..], &[Key::passphrase("right")], &limits).unwrap();
    assert_eq!(info, seal::inspect(&sealed, &limits).unwrap());
    assert!(!format!("{unlocked:?}").contains(|c: char| c.is_ascii_digit()), "{unlocked:?}");
    assert_eq!(seal::open_to_vec(&sealed, &[Key::Unlocked(unlocked.clone())], &limits).unwrap(), plain);
    let mut streamed = Vec::new();
    OpenReader::new(&sealed[..], &[Key::Unlocked(unlocked.clone())], &limits).unwrap().read_to_end(&mut streamed).unwrap();
    assert_eq!(streamed, plain);

    let err = seal::open_to_vec(&other, &[Key::Unlocked(unlocked.clone())], &limits).unwrap_err();
    assert_eq!(err.code(), "WRONG_KEY");
    assert!(err.to_string().contains("another file"), "{err}");
    // Beside a key that fits, it is passed over.
    assert_eq!(seal::open_to_vec(&other, &[Key::Unlocked(unlocked.clone()), Key::passphrase("right")], &limits).unwrap(), plain);

    // The same header with a damaged payload still fails on the payload.
    let mut damaged = sealed.clone();
    *damaged.last_mut().unwrap() ^= 1;
    assert_eq!(seal::open_to_vec(&damaged, &[Key::Unlocked(unlocked)], &limits).unwrap_err().code(), "CORRUPT");

    // Unlocking fails as opening does, and reads no further than the header.
    assert_eq!(seal::unlock(&sealed[..], &[Key::passphrase("wrong")], &limits).unwrap_err().code(), "WRONG_KEY");
    assert_eq!(seal::unlock(&sealed[..20], &[Key::passphrase("right")], &limits).unwrap_err().code(), "TRUNCATED");
    let mut header_only = &sealed[..info.header_len];
    seal::unlock(&mut header_only, &[Key::passphrase("right")], &limits).unwrap();
    let mut rest = &sealed[..];
    seal::unlock(&mut rest, &[Key::passphrase("right")], &limits).unwrap();
    assert_eq!(rest.len(), sealed.len() - info.header_len);
}

#[test]
fn x25519_recipients_each_open_and_strangers_do_not() {
    let (a, b, c) = (Identity::generate().unwrap(), Identity::generate().unwrap(), Identity::generate().unwrap());
    let recipients = [Recipient::X25519(a.public()), Recipient::X25519(b.public())];
    let plain = data(100_000);
    let sealed = seal::seal_to_vec(&plain, &recipients, &fast()).unwrap();
    for id in [a, b] {
        assert_eq!(seal::open_to_vec(&sealed, &[Key::Identity(id)], &OpenLimits::default()).unwrap(), plain);
    }
    assert_eq!(seal::open_to_vec(&sealed, &[Key::Identity(c)], &OpenLimits::default()).unwrap_err().code(), "WRONG_KEY");
    assert_eq!(open_pw(&sealed, "pw").unwrap_err().code(), "WRONG_KEY");
    let info = seal::inspect(&sealed, &OpenLimits::default()).unwrap();
    assert_eq!(info.recipients.len(), 2);
}

#[test]
fn passphrase_stands_alone() {
    let id = Identity::generate().unwrap();
    let err = seal::seal_to_vec(b"x", &[Recipient::passphrase("pw"), Recipient::X25519(id.public())], &fast()).unwrap_err();
    assert_eq!(err.code(), "INVALID_INPUT");
}

#[test]
fn metadata_is_public_and_authenticated() {
    let mut options = fast();
    options.metadata = Some(serde_json::json!({"backup": "b1", "collections": ["docs"]}).as_object().unwrap().clone());
    let mut sealed = seal::seal_to_vec_with(b"payload", &[Recipient::passphrase("pw")], &options, &mut DeterministicRandom::new(b"m")).unwrap();
    let info = seal::inspect(&sealed, &OpenLimits::default()).unwrap();
    assert_eq!(info.metadata.unwrap()["backup"], "b1");
    // Change "b1" to "b2" inside the header: still parses, no longer authenticates.
    let at = sealed.windows(4).position(|w| w == b"\"b1\"").unwrap();
    sealed[at + 2] = b'2';
    assert_eq!(seal::inspect(&sealed, &OpenLimits::default()).unwrap().metadata.unwrap()["backup"], "b2");
    assert_eq!(open_pw(&sealed, "pw").unwrap_err().code(), "CORRUPT");
}

#[test]
fn absurd_kdf_parameters_are_refused_before_any_work() {
    let mut sealed = seal_pw(b"x", "pw", b"kdf");
    // memory_kib sits after magic(8) ver(1) flags(1) len(4) seg(1) nonce(16) count(1) kind(1) salt(16).
    let at = 8 + 1 + 1 + 4 + 1 + 16 + 1 + 1 + 16;
    assert_eq!(u32::from_le_bytes(sealed[at..at + 4].try_into().unwrap()), 64);
    sealed[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let started = std::time::Instant::now();
    assert_eq!(open_pw(&sealed, "pw").unwrap_err().code(), "LIMIT_EXCEEDED");
    assert!(started.elapsed().as_secs() < 5);
    let strict = OpenLimits { max_kdf_memory_kib: 32, ..OpenLimits::default() };
    let ok = seal_pw(b"x", "pw", b"kdf");
    assert_eq!(seal::open_to_vec(&ok, &[Key::passphrase("pw")], &strict).unwrap_err().code(), "LIMIT_EXCEEDED");
}

#[test]
fn segment_surgery_is_detected() {
    let plain = data(4 * SEG + 100);
    let sealed = seal_pw(&plain, "pw", b"surgery");
    let header_len = seal::inspect(&sealed, &OpenLimits::default()).unwrap().header_len;
    let unit = SEG + 16;
    let (head, body) = sealed.split_at(header_len);
    let segs: Vec<&[u8]> = body.chunks(unit).collect();
    assert_eq!(segs.len(), 5);
    let join = |parts: &[&[u8]]| [head, &parts.concat()].concat();
    // Truncated at a segment boundary.
    assert_eq!(open_pw(&join(&segs[..4]), "pw").unwrap_err().code(), "TRUNCATED");
    // Reordered.
    assert_eq!(open_pw(&join(&[segs[1], segs[0], segs[2], segs[3], segs[4]]), "pw").unwrap_err().code(), "CORRUPT");
    // Dropped middle segment.
    assert_eq!(open_pw(&join(&[segs[0], segs[2], segs[3], segs[4]]), "pw").unwrap_err().code(), "CORRUPT");
    // Appended data and an appended copy of the final segment.
    assert_eq!(open_pw(&[&sealed[..], b"x"].concat(), "pw").unwrap_err().code(), "CORRUPT");
    assert_eq!(open_pw(&join(&[segs[0], segs[1], segs[2], segs[3], segs[4], segs[4]]), "pw").unwrap_err().code(), "CORRUPT");
    // Header only.
    assert_eq!(open_pw(head, "pw").unwrap_err().code(), "TRUNCATED");
}

#[test]
fn bad_magic_and_version() {
    assert_eq!(open_pw(b"PK\x03\x04 definitely a zip", "pw").unwrap_err().code(), "NOT_A_BUNDLE");
    let mut sealed = seal_pw(b"x", "pw", b"v");
    sealed[8] = 2;
    assert_eq!(open_pw(&sealed, "pw").unwrap_err().code(), "UNSUPPORTED_VERSION");
    assert_eq!(open_pw(b"", "pw").unwrap_err().code(), "TRUNCATED");
}

#[test]
fn writer_and_reader_stream_large_inputs() {
    let plain = data(5 * (1 << 20) + 12345);
    let mut writer = SealWriter::new(Vec::new(), &[Recipient::passphrase("pw")], &SealOptions { kdf: fast().kdf, ..SealOptions::default() }).unwrap();
    for chunk in plain.chunks(70_001) {
        writer.write_all(chunk).unwrap();
    }
    let sealed = writer.finish().unwrap();
    let mut reader = OpenReader::new(&sealed[..], &[Key::passphrase("pw")], &OpenLimits::default()).unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    assert_eq!(out, plain);
    // A truncated file fails through the reader too, and wrong keys fail at construction.
    let mut cut = OpenReader::new(&sealed[..sealed.len() - 1], &[Key::passphrase("pw")], &OpenLimits::default()).unwrap();
    let err = cut.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(coffer::error::into_error(err).code(), "CORRUPT");
    assert_eq!(OpenReader::new(&sealed[..], &[Key::passphrase("no")], &OpenLimits::default()).err().unwrap().code(), "WRONG_KEY");
}

fn seal_chunked(plain: &[u8], chunks: &[usize], seed: &[u8]) -> Vec<u8> {
    let mut enc = Encryptor::with_random(&[Recipient::passphrase("pw")], &fast(), &mut DeterministicRandom::new(seed)).unwrap();
    let mut out = Vec::new();
    let mut rest = plain;
    for &c in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = c.min(rest.len());
        out.extend(enc.push(&rest[..n]).unwrap());
        rest = &rest[n..];
    }
    out.extend(enc.finish().unwrap());
    out
}

fn open_chunked(sealed: &[u8], chunks: &[usize]) -> coffer::Result<Vec<u8>> {
    let mut dec = Decryptor::new(&[Key::passphrase("pw")], OpenLimits::default());
    let mut out = Vec::new();
    let mut rest = sealed;
    for &c in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = c.min(rest.len());
        out.extend(dec.push(&rest[..n])?);
        rest = &rest[n..];
    }
    out.extend(dec.finish()?);
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn streaming_equals_one_shot(len in 0usize..70_000, chunks in prop::collection::vec(1usize..40_000, 1..6)) {
        let plain = data(len);
        let one_shot = seal_pw(&plain, "pw", b"stream");
        let streamed = seal_chunked(&plain, &chunks, b"stream");
        prop_assert_eq!(&one_shot, &streamed);
        prop_assert_eq!(open_chunked(&one_shot, &chunks).unwrap(), plain);
    }

    #[test]
    fn any_single_byte_flip_is_an_error(len in 0usize..40_000, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let plain = data(len);
        let mut sealed = seal_pw(&plain, "pw", b"flip");
        let i = pos.index(sealed.len());
        sealed[i] ^= 1 << bit;
        prop_assert!(open_pw(&sealed, "pw").is_err());
    }

    #[test]
    fn any_truncation_is_an_error(len in 0usize..40_000, cut in any::<prop::sample::Index>()) {
        let sealed = seal_pw(&data(len), "pw", b"cut");
        let keep = cut.index(sealed.len());
        let err = open_pw(&sealed[..keep], "pw").unwrap_err();
        prop_assert!(["TRUNCATED", "CORRUPT", "NOT_A_BUNDLE"].contains(&err.code()), "{}", err);
    }
}

#[test]
fn seek_reader_reads_anywhere_and_checks_the_end() {
    use std::io::{Cursor, Seek, SeekFrom};
    let plain = data(5 * SEG + 777);
    let sealed = seal_pw(&plain, "pw", b"seek");
    let mut r = seal::SeekReader::new(Cursor::new(&sealed), &[Key::passphrase("pw")], &OpenLimits::default()).unwrap();
    assert_eq!(r.len(), plain.len() as u64);
    for start in [0usize, 1, SEG - 3, 3 * SEG + 5, plain.len() - 10] {
        r.seek(SeekFrom::Start(start as u64)).unwrap();
        let mut got = Vec::new();
        (&mut r).take(2 * SEG as u64).read_to_end(&mut got).unwrap();
        let end = (start + 2 * SEG).min(plain.len());
        assert!(got == plain[start..end], "read at {start} differs");
    }
    let mut all = Vec::new();
    r.seek(SeekFrom::Start(0)).unwrap();
    r.read_to_end(&mut all).unwrap();
    assert!(all == plain);
    let header_len = seal::inspect(&sealed, &OpenLimits::default()).unwrap().header_len;
    let cut = &sealed[..header_len + 5 * (SEG + 16)];
    assert_eq!(seal::SeekReader::new(Cursor::new(cut), &[Key::passphrase("pw")], &OpenLimits::default()).err().unwrap().code(), "TRUNCATED");
    let mut flipped = sealed.clone();
    flipped[header_len + 2 * (SEG + 16) + 9] ^= 4;
    let mut r = seal::SeekReader::new(Cursor::new(&flipped), &[Key::passphrase("pw")], &OpenLimits::default()).unwrap();
    r.seek(SeekFrom::Start(2 * SEG as u64 + 100)).unwrap();
    let err = r.read(&mut [0u8; 10]).unwrap_err();
    assert_eq!(coffer::error::into_error(err).code(), "CORRUPT");
    assert_eq!(seal::SeekReader::new(Cursor::new(&sealed), &[Key::passphrase("no")], &OpenLimits::default()).err().unwrap().code(), "WRONG_KEY");
}

#[test]
fn one_collection_out_of_a_sealed_bundle() {
    use coffer::bundle;
    let mut snapshot = coffer::Snapshot::default();
    for name in ["a", "b", "c"] {
        let mut c = coffer::Collection::default();
        for i in 0..3000 {
            c.documents.insert(format!("{i:05}"), serde_json::json!({"name": name, "i": i, "pad": "x".repeat(50)}));
        }
        snapshot.collections.insert(name.into(), c);
    }
    let plain = bundle::to_vec(&snapshot).unwrap();
    let sealed = seal_pw(&plain, "pw", b"toc");
    let mut r = seal::SeekReader::new(std::io::Cursor::new(&sealed), &[Key::passphrase("pw")], &OpenLimits::default()).unwrap();
    let toc = bundle::read_toc(&mut r).unwrap();
    assert_eq!(toc.collections.len(), 3);
    let mut reader = bundle::read_collection(r, "b").unwrap();
    let mut n = 0;
    while let Some(item) = reader.next_item().unwrap() {
        if let bundle::Item::Document(d) = item {
            assert_eq!(d.value().unwrap()["name"], "b");
            n += 1;
        }
    }
    assert_eq!(n, 3000);
}
