//! Known-answer and negative test vectors (tests/vectors/).
//!
//! `tests/vectors/manifest.json` lists every vector file with the key to use
//! and the expected result: "ok" (with the plaintext's length and blake3) or
//! an error code. The same manifest is run against the wasm build
//! (tests/js/). The files are produced by [`generate`] with a seeded random
//! source; `vectors_are_reproducible` checks that the committed bytes are
//! exactly what this build writes, so any change of the format shows up here.
//! To regenerate after a deliberate format change (with a version bump):
//! `COFFER_REGENERATE_VECTORS=1 cargo test --test vectors`.

use std::path::PathBuf;

use coffer::bundle::{self, BundleReader, ReadLimits};
use coffer::seal::{self, DeterministicRandom, Identity, KdfParams, Key, OpenLimits, Recipient, SealOptions};
use coffer::{Change, Collection, Commit, History, Snapshot};
use serde_json::{json, Value};

const PASSPHRASE: &str = "vector passphrase";
const SEG_LOG2: u8 = 14;
const SEG: usize = 1 << SEG_LOG2;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn options() -> SealOptions {
    SealOptions { segment_log2: SEG_LOG2, kdf: KdfParams { memory_kib: 256, iterations: 1, parallelism: 1 }, metadata: None, threads: 1 }
}

fn plaintext(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    DeterministicRandom::new(b"vector plaintext").fill_bytes(&mut out);
    out
}

trait Fill {
    fn fill_bytes(&mut self, buf: &mut [u8]);
}
impl Fill for DeterministicRandom {
    fn fill_bytes(&mut self, buf: &mut [u8]) {
        seal::RandomSource::fill(self, buf).unwrap();
    }
}

fn identity(seed: &[u8]) -> Identity {
    Identity::generate_with(&mut DeterministicRandom::new(seed)).unwrap()
}

fn seal_with(data: &[u8], recipients: &[Recipient], options: &SealOptions, seed: &[u8]) -> Vec<u8> {
    seal::seal_to_vec_with(data, recipients, options, &mut DeterministicRandom::new(seed)).unwrap()
}

fn sample_snapshot() -> Snapshot {
    let mut docs = Collection { config: json!({"dimension": 3, "metric": "cosine"}).as_object().unwrap().clone(), ..Default::default() };
    for i in 0..50 {
        docs.documents.insert(format!("doc-{i:03}"), json!({"id": format!("doc-{i:03}"), "text": format!("vector document {i}"), "v": [i, 0.5, -1.25]}));
    }
    let commit = Commit { id: "c1".into(), parents: vec![], author: "vectors".into(), message: "init".into(), timestamp: 1_763_683_200_000, changes: vec![] };
    Snapshot {
        schema: json!({"@type": "Schema", "version": 1}),
        collections: [("docs".to_string(), docs)].into(),
        history: History { commits: vec![commit], branches: [("main".to_string(), "c1".to_string())].into() },
    }
}

/// A snapshot whose history puts its documents: inserts, an update, and a
/// put of a document the snapshot no longer holds.
fn history_snapshot() -> Snapshot {
    let mut notes = Collection::default();
    for i in 0..4 {
        notes.documents.insert(format!("n{i}"), json!({"id": format!("n{i}"), "text": format!("note {i}")}));
    }
    let mut inserts: Vec<Change> =
        notes.documents.iter().map(|(id, doc)| Change::Put { collection: "notes".into(), id: id.clone(), document: doc.clone() }).collect();
    inserts.push(Change::Put { collection: "notes".into(), id: "gone".into(), document: json!({"id": "gone"}) });
    inserts[1] = Change::Put { collection: "notes".into(), id: "n1".into(), document: json!({"id": "n1", "text": "first draft"}) };
    let update = vec![
        Change::Put { collection: "notes".into(), id: "n1".into(), document: notes.documents["n1"].clone() },
        Change::Delete { collection: "notes".into(), id: "gone".into() },
    ];
    let commit = |id: &str, parents: Vec<String>, changes| Commit {
        id: id.into(),
        parents,
        author: "vectors".into(),
        message: id.into(),
        timestamp: 1_763_683_200_000,
        changes,
    };
    Snapshot {
        schema: Value::Null,
        collections: [("notes".to_string(), notes)].into(),
        history: History {
            commits: vec![commit("h1", vec![], inserts), commit("h2", vec!["h1".into()], update)],
            branches: [("main".to_string(), "h2".to_string())].into(),
        },
    }
}

/// `snapshot` written with each change set as given by `changes` (through
/// `add_canonical_commit`, which copies it), under format `version`.
fn bundle_as(snapshot: &Snapshot, version: u16, changes: impl Fn(&Commit) -> Vec<u8>) -> Vec<u8> {
    let mut w = bundle::BundleWriter::new(Vec::new(), &snapshot.schema, bundle::WriteOptions::default()).unwrap();
    for (name, collection) in &snapshot.collections {
        w.begin_collection(name, &collection.config).unwrap();
        for (id, doc) in &collection.documents {
            w.add_document(id, doc).unwrap();
        }
    }
    for c in snapshot.history.canonical_order().unwrap() {
        let text = changes(c);
        w.add_canonical_commit(&bundle::CanonicalCommit {
            id: &c.id,
            parents: &c.parents,
            author: &c.author,
            message: &c.message,
            timestamp: c.timestamp,
            changes: &text,
        })
        .unwrap();
    }
    with_version(&w.finish(&snapshot.history.branches).unwrap().0, version)
}

/// `bytes` with format `version` in the header, and the trailer's hash of
/// the bytes made to match.
fn with_version(bytes: &[u8], version: u16) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[8..10].copy_from_slice(&version.to_le_bytes());
    let end = bytes.len() - 48;
    let hash = blake3::hash(&bytes[..end]);
    bytes[end + 8..end + 40].copy_from_slice(hash.as_bytes());
    bytes
}

fn canonical_changes(changes: &[Change]) -> Vec<u8> {
    coffer::canonical::to_vec(&serde_json::to_value(changes).unwrap()).unwrap()
}

/// The change sets of `snapshot`'s history as a version-2 writer stores them.
fn stored_changes(snapshot: &Snapshot) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = bundle::to_vec(snapshot).unwrap();
    let mut reader = BundleReader::new(&bytes[..], ReadLimits::default()).unwrap();
    reader.keep_changes_text(true);
    let mut out = std::collections::BTreeMap::new();
    while let Some(item) = reader.next_item().unwrap() {
        if let bundle::Item::Commit(c) = item {
            out.insert(c.id.clone(), reader.take_changes_text().unwrap());
        }
    }
    out
}

struct Vector {
    name: &'static str,
    description: &'static str,
    kind: &'static str,
    key: Value,
    expect: &'static str,
    bytes: Vec<u8>,
    plaintext: Option<Vec<u8>>,
}

fn header_len(sealed: &[u8]) -> usize {
    seal::inspect(sealed, &OpenLimits::default()).unwrap().header_len
}

fn generate() -> Vec<Vector> {
    let pw = json!({"passphrase": PASSPHRASE});
    let alice = identity(b"alice");
    let bob = identity(b"bob");
    let alice_key = json!({"identity": alice.to_secret_string().as_str()});
    let small = b"hello, coffer".to_vec();
    let multi = plaintext(3 * SEG + SEG / 2);
    let exact = plaintext(2 * SEG);
    let bundle_bytes = bundle::to_vec(&sample_snapshot()).unwrap();
    let base = seal_with(&multi, &[Recipient::passphrase(PASSPHRASE)], &options(), b"multi");
    let h = header_len(&base);
    let unit = SEG + 16;
    let segs: Vec<&[u8]> = base[h..].chunks(unit).collect();
    let mut with_meta = options();
    with_meta.metadata = Some(json!({"backup": "nightly-1", "node": "n1", "collections": ["docs"]}).as_object().unwrap().clone());
    let meta = seal_with(&small, &[Recipient::passphrase(PASSPHRASE)], &with_meta, b"meta");
    let flip = |bytes: &[u8], at: usize| {
        let mut b = bytes.to_vec();
        b[at] ^= 0x01;
        b
    };
    let meta_at = meta.windows(9).position(|w| w == b"nightly-1").unwrap();
    let kdf_over = {
        let mut b = seal_with(&small, &[Recipient::passphrase(PASSPHRASE)], &options(), b"kdf");
        let at = 8 + 1 + 1 + 4 + 1 + 16 + 1 + 1 + 16;
        b[at..at + 4].copy_from_slice(&(1u32 << 31).to_le_bytes());
        b
    };
    let mut v2 = base.clone();
    v2[8] = 2;
    let plain_bundle_cut = bundle_bytes[..bundle_bytes.len() - 20].to_vec();
    // Format version 2 stores a put of a document the bundle holds without it.
    let history = history_snapshot();
    let history_v2 = bundle::to_vec(&history).unwrap();
    let stored = stored_changes(&history);
    let whole = |c: &Commit| canonical_changes(&c.changes);
    let history_v1 = bundle_as(&history, 1, whole);
    assert_ne!(history_v1.len(), history_v2.len());
    let by_ref_v1 = bundle_as(&history, 1, |c| stored[&c.id].clone());
    let whole_v2 = bundle_as(&history, 2, whole);
    let unknown_v2 = bundle_as(&history, 2, |c| {
        let mut changes = c.changes.clone();
        changes.push(Change::PutSnapshot { collection: "notes".into(), id: "gone".into() });
        canonical_changes(&changes)
    });
    let ok = |name, description, kind, key: &Value, bytes: Vec<u8>, plain: &[u8]| Vector {
        name,
        description,
        kind,
        key: key.clone(),
        expect: "ok",
        bytes,
        plaintext: Some(plain.to_vec()),
    };
    let bad = |name, description, kind, key: &Value, expect, bytes| Vector { name, description, kind, key: key.clone(), expect, bytes, plaintext: None };
    vec![
        ok(
            "passphrase_small",
            "one short segment, passphrase",
            "sealed",
            &pw,
            seal_with(&small, &[Recipient::passphrase(PASSPHRASE)], &options(), b"small"),
            &small,
        ),
        ok(
            "passphrase_empty",
            "empty payload: one empty final segment",
            "sealed",
            &pw,
            seal_with(&[], &[Recipient::passphrase(PASSPHRASE)], &options(), b"empty"),
            &[],
        ),
        ok("passphrase_multi_segment", "3.5 segments of 16 KiB", "sealed", &pw, base.clone(), &multi),
        ok(
            "passphrase_exact_segments",
            "exactly two full segments: the last one is full",
            "sealed",
            &pw,
            seal_with(&exact, &[Recipient::passphrase(PASSPHRASE)], &options(), b"exact"),
            &exact,
        ),
        ok(
            "x25519_two_recipients",
            "sealed to alice and bob, opened by alice",
            "sealed",
            &alice_key,
            seal_with(&multi, &[Recipient::X25519(bob.public()), Recipient::X25519(alice.public())], &options(), b"x25519"),
            &multi,
        ),
        ok("metadata", "public metadata in the header", "sealed", &pw, meta.clone(), &small),
        ok(
            "sealed_bundle",
            "a sealed bundle of a small snapshot",
            "sealed",
            &pw,
            seal_with(&bundle_bytes, &[Recipient::passphrase(PASSPHRASE)], &options(), b"bundle"),
            &bundle_bytes,
        ),
        ok("plain_bundle", "a plain bundle", "bundle", &Value::Null, bundle_bytes.clone(), &bundle_bytes),
        // Byte for byte what the version-1 writer wrote for this snapshot (its history has no puts).
        ok("plain_bundle_v1", "plain_bundle as a version-1 bundle", "bundle", &Value::Null, with_version(&bundle_bytes, 1), &with_version(&bundle_bytes, 1)),
        ok("bundle_history", "a bundle whose history puts its documents (stored without them)", "bundle", &Value::Null, history_v2.clone(), &history_v2),
        ok("bundle_v1_history", "the same snapshot as a version-1 bundle: every put whole", "bundle", &Value::Null, history_v1.clone(), &history_v1),
        bad("bundle_v1_put_without_document", "a version-1 bundle with a put without document", "bundle", &Value::Null, "CORRUPT", by_ref_v1),
        bad("bundle_put_not_omitted", "a version-2 bundle with a whole put of a document it holds", "bundle", &Value::Null, "CORRUPT", whole_v2),
        bad(
            "bundle_put_of_no_document",
            "a version-2 bundle with a put without document of a document it lacks",
            "bundle",
            &Value::Null,
            "CORRUPT",
            unknown_v2,
        ),
        bad("wrong_passphrase", "opened with another passphrase", "sealed", &json!({"passphrase": "not the passphrase"}), "WRONG_KEY", base.clone()),
        bad(
            "wrong_identity",
            "opened with an identity that is not a recipient",
            "sealed",
            &json!({"identity": identity(b"mallory").to_secret_string().as_str()}),
            "WRONG_KEY",
            seal_with(&small, &[Recipient::X25519(bob.public())], &options(), b"wid"),
        ),
        bad("identity_for_passphrase_file", "an identity given for a passphrase file", "sealed", &alice_key, "WRONG_KEY", base.clone()),
        bad("flipped_header_metadata", "one bit of the public metadata flipped", "sealed", &pw, "CORRUPT", flip(&meta, meta_at)),
        bad("flipped_commitment", "one bit of the key commitment flipped", "sealed", &pw, "CORRUPT", flip(&base, h - 64)),
        bad("flipped_header_mac", "one bit of the header MAC flipped", "sealed", &pw, "CORRUPT", flip(&base, h - 1)),
        bad("flipped_segment_byte", "one bit of segment 1's ciphertext flipped", "sealed", &pw, "CORRUPT", flip(&base, h + unit + 100)),
        bad("flipped_tag_byte", "one bit of segment 0's tag flipped", "sealed", &pw, "CORRUPT", flip(&base, h + unit - 1)),
        bad("truncated_at_segment_boundary", "the final segment is missing", "sealed", &pw, "TRUNCATED", base[..h + 3 * unit].to_vec()),
        bad("truncated_in_header", "the file ends inside the header", "sealed", &pw, "TRUNCATED", base[..h - 10].to_vec()),
        bad("trailing_data", "bytes after the final segment", "sealed", &pw, "CORRUPT", [&base[..], b"extra"].concat()),
        bad("reordered_segments", "segments 0 and 1 swapped", "sealed", &pw, "CORRUPT", [&base[..h], segs[1], segs[0], segs[2], segs[3]].concat()),
        bad("dropped_segment", "segment 1 removed", "sealed", &pw, "CORRUPT", [&base[..h], segs[0], segs[2], segs[3]].concat()),
        bad("kdf_over_cap", "Argon2id memory of 2 TiB requested", "sealed", &pw, "LIMIT_EXCEEDED", kdf_over),
        bad("unknown_version", "sealed format version 2", "sealed", &pw, "UNSUPPORTED_VERSION", v2),
        bad("bad_magic", "a ZIP file", "sealed", &pw, "NOT_A_BUNDLE", b"PK\x03\x04\x14\x00\x00\x00\x08\x00not coffer".to_vec()),
        bad("bundle_flipped_byte", "a plain bundle with one bit flipped in a block", "bundle", &Value::Null, "CORRUPT", flip(&bundle_bytes, 40)),
        bad("bundle_truncated", "a plain bundle missing its last 20 bytes", "bundle", &Value::Null, "TRUNCATED", plain_bundle_cut),
    ]
}

fn manifest(vectors: &[Vector]) -> Value {
    let cases: Vec<Value> = vectors
        .iter()
        .map(|v| {
            let mut case = json!({"name": v.name, "file": format!("{}.{}", v.name, if v.kind == "bundle" { "cfb" } else { "cfs" }), "kind": v.kind, "description": v.description, "key": v.key, "expect": v.expect});
            if let Some(p) = &v.plaintext {
                case["plaintext_len"] = json!(p.len());
                case["plaintext_blake3"] = json!(blake3::hash(p).to_hex().to_string());
            }
            case
        })
        .collect();
    json!({"format": "coffer test vectors v1", "kdf_note": "vectors use small Argon2id parameters (m=256 KiB, t=1) to run fast", "cases": cases})
}

#[test]
fn vectors_are_reproducible() {
    let vectors = generate();
    let manifest_text = serde_json::to_string_pretty(&manifest(&vectors)).unwrap() + "\n";
    if std::env::var_os("COFFER_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for v in &vectors {
            let ext = if v.kind == "bundle" { "cfb" } else { "cfs" };
            std::fs::write(dir().join(format!("{}.{ext}", v.name)), &v.bytes).unwrap();
        }
        std::fs::write(dir().join("manifest.json"), &manifest_text).unwrap();
    }
    assert_eq!(std::fs::read_to_string(dir().join("manifest.json")).unwrap(), manifest_text, "manifest differs from what this build generates");
    for v in &vectors {
        let ext = if v.kind == "bundle" { "cfb" } else { "cfs" };
        let on_disk = std::fs::read(dir().join(format!("{}.{ext}", v.name))).unwrap();
        assert!(on_disk == v.bytes, "vector {} differs from what this build writes: the format changed", v.name);
    }
}

fn run_case(case: &Value) -> coffer::Result<Vec<u8>> {
    let bytes = std::fs::read(dir().join(case["file"].as_str().unwrap())).unwrap();
    if case["kind"] == "bundle" {
        BundleReader::new(&bytes[..], ReadLimits::default())?.read_to_end()?;
        return Ok(bytes);
    }
    let key = match (&case["key"]["passphrase"], &case["key"]["identity"]) {
        (Value::String(p), _) => Key::passphrase(p.as_str()),
        (_, Value::String(id)) => Key::Identity(id.parse()?),
        _ => panic!("case without key"),
    };
    let plain = seal::open_to_vec(&bytes, &[key], &OpenLimits::default())?;
    if plain.starts_with(&bundle::MAGIC) {
        BundleReader::new(&plain[..], ReadLimits::default())?.read_to_end()?;
    }
    Ok(plain)
}

#[test]
fn every_vector_gives_its_expected_result() {
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        match (run_case(case), case["expect"].as_str().unwrap()) {
            (Ok(plain), "ok") => {
                if plain.len() as u64 != case["plaintext_len"].as_u64().unwrap()
                    || blake3::hash(&plain).to_hex().as_str() != case["plaintext_blake3"].as_str().unwrap()
                {
                    failures.push(format!("{name}: wrong plaintext"));
                }
            }
            (Ok(_), expected) => failures.push(format!("{name}: opened, expected {expected}")),
            (Err(e), expected) if e.code() != expected => failures.push(format!("{name}: got {} ({e}), expected {expected}", e.code())),
            (Err(_), _) => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
