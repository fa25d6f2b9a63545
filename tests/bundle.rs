//! The bundle: round trips, determinism, selective reads, hostile input.

use std::io::Cursor;

use coffer::bundle::{self, read_collection, read_toc, BundleReader, CanonicalCommit, Item, ReadLimits, WriteOptions};
use coffer::{Change, Collection, Commit, History, Snapshot};
use proptest::prelude::*;
use serde_json::{json, Value};

fn commit(id: &str, parents: &[&str], changes: Vec<Change>) -> Commit {
    Commit {
        id: id.into(),
        parents: parents.iter().map(|p| p.to_string()).collect(),
        author: "ada".into(),
        message: format!("commit {id}"),
        timestamp: 1_700_000_000_000,
        changes,
    }
}

/// The canonical bytes of anything serializable (floats like -3.0 come back as -3).
fn canon<T: serde::Serialize>(v: &T) -> Vec<u8> {
    coffer::canonical::to_vec(&serde_json::to_value(v).unwrap()).unwrap()
}

fn sample(docs_per_collection: usize) -> Snapshot {
    let mut snapshot = Snapshot { schema: json!({"version": 2, "classes": ["Doc", "Vec"]}), ..Default::default() };
    for (name, dim) in [("docs", 0), ("vectors", 4)] {
        let mut c = Collection { config: json!({"dimension": dim, "metric": "cosine"}).as_object().unwrap().clone(), ..Default::default() };
        for i in 0..docs_per_collection {
            c.documents.insert(
                format!("{name}-{i:06}"),
                json!({"id": format!("{name}-{i:06}"), "n": i, "text": format!("document number {i} of {name}"), "v": [0.5, 1.25, -3.0, i as f64 / 7.0]}),
            );
        }
        snapshot.collections.insert(name.into(), c);
    }
    snapshot.collections.insert("empty".into(), Collection::default());
    snapshot.history = History {
        commits: vec![
            commit(
                "c1",
                &[],
                vec![Change::Configure { collection: "docs".into(), config: Default::default() }, Change::Schema { schema: json!({"version": 1}) }],
            ),
            commit("c2", &["c1"], vec![Change::Put { collection: "docs".into(), id: "docs-000000".into(), document: json!({"n": 0}) }]),
            commit("c3", &["c1"], vec![Change::Delete { collection: "docs".into(), id: "x".into() }, Change::Drop { collection: "old".into() }]),
            commit("c4", &["c2", "c3"], vec![]),
        ],
        branches: [("main".to_string(), "c4".to_string()), ("dev".to_string(), "c3".to_string())].into(),
    };
    snapshot
}

#[test]
fn round_trip_restores_data_and_history() {
    let snapshot = sample(3000);
    let bytes = bundle::to_vec(&snapshot).unwrap();
    let back = bundle::from_slice(&bytes).unwrap();
    assert_eq!(back.schema, snapshot.schema);
    assert_eq!(canon(&back.collections), canon(&snapshot.collections));
    assert_eq!(back.history.branches, snapshot.history.branches);
    let ids: Vec<&str> = back.history.commits.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3", "c4"]);
    let mut original = snapshot.history.commits.clone();
    original.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(back.history.commits, original);
}

#[test]
fn bytes_are_deterministic_whatever_the_input_order_or_threads() {
    let snapshot = sample(5000);
    let mut shuffled = snapshot.clone();
    shuffled.history.commits.reverse();
    let a = bundle::to_vec(&snapshot).unwrap();
    let b = bundle::to_vec(&shuffled).unwrap();
    let (c, _) = bundle::write_snapshot(&snapshot, Vec::new(), WriteOptions { threads: 1, ..Default::default() }).unwrap();
    let (d, _) = bundle::write_snapshot(&snapshot, Vec::new(), WriteOptions { threads: 5, ..Default::default() }).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a, d);
    // Numbers in another spelling are the same data, hence the same bytes.
    let mut respelled = snapshot.clone();
    respelled.schema = serde_json::from_str(r#"{"classes":["Doc","Vec"],"version":2.0}"#).unwrap();
    assert_eq!(bundle::to_vec(&respelled).unwrap(), a);
}

#[test]
fn a_known_snapshot_has_a_known_digest() {
    // Pins the format: if this changes, the format changed (bump the version).
    let snapshot = Snapshot {
        schema: json!({"a": 1}),
        collections: [("c".to_string(), Collection { config: Default::default(), documents: [("1".to_string(), json!({"id": "1"}))].into() })].into(),
        history: Default::default(),
    };
    let (bytes, summary) = bundle::write_snapshot(&snapshot, Vec::new(), WriteOptions::default()).unwrap();
    assert_eq!(&bytes[..8], b"\x89CFB\r\n\x1a\n");
    let mut hasher = blake3::Hasher::new();
    for (kind, raw) in [(1u8, &b"{\"a\":1}"[..]), (2, b"\x01c{}"), (3, b"\x011\x0a{\"id\":\"1\"}"), (5, b"{}")] {
        hasher.update(&[kind]);
        hasher.update(&(raw.len() as u32).to_le_bytes());
        hasher.update(raw);
    }
    assert_eq!(summary.toc.digest, hasher.finalize().to_hex().to_string());
}

#[test]
fn table_of_contents_and_one_collection_without_the_rest() {
    let snapshot = sample(20_000);
    let (bytes, summary) = bundle::write_snapshot(&snapshot, Vec::new(), WriteOptions::default()).unwrap();
    let toc = read_toc(&mut Cursor::new(&bytes)).unwrap();
    assert_eq!(toc, summary.toc);
    let names: Vec<&str> = toc.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["docs", "empty", "vectors"]);
    assert_eq!(toc.collections[2].documents, 20_000);
    assert_eq!(toc.commits, 4);
    let mut reader = read_collection(Cursor::new(&bytes), "vectors").unwrap();
    let mut docs = 0;
    while let Some(item) = reader.next_item().unwrap() {
        match item {
            Item::Collection { name, config } => assert_eq!((name.as_str(), &config["dimension"]), ("vectors", &json!(4))),
            Item::Document(d) => {
                assert_eq!(d.json, canon(&snapshot.collections["vectors"].documents[&d.id]));
                docs += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(docs, 20_000);
    assert_eq!(read_collection(Cursor::new(&bytes), "nope").err().unwrap().code(), "INVALID_INPUT");
    // A damaged byte inside that collection is caught by its hash.
    let entry = &toc.collections[2];
    let mut damaged = bytes.clone();
    damaged[(entry.offset + entry.stored_bytes / 2) as usize] ^= 0x40;
    let mut reader = read_collection(Cursor::new(&damaged), "vectors").unwrap();
    let err = loop {
        match reader.next_item() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("damage not detected"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), "CORRUPT");
}

#[test]
fn writer_refuses_non_canonical_order() {
    let mut w = bundle::BundleWriter::new(Vec::new(), &Value::Null, WriteOptions::default()).unwrap();
    w.begin_collection("b", &Default::default()).unwrap();
    assert_eq!(w.begin_collection("a", &Default::default()).unwrap_err().code(), "INVALID_INPUT");
    w.add_document("2", &json!(1)).unwrap();
    assert_eq!(w.add_document("1", &json!(1)).unwrap_err().code(), "INVALID_INPUT");
    assert_eq!(w.add_document("2", &json!(1)).unwrap_err().code(), "INVALID_INPUT");
    assert_eq!(w.add_commit(&commit("x", &["missing"], vec![])).unwrap_err().code(), "INVALID_INPUT");
    w.add_commit(&commit("b", &[], vec![])).unwrap();
    assert_eq!(w.add_commit(&commit("a", &[], vec![])).unwrap_err().code(), "INVALID_INPUT");
    assert_eq!(w.begin_collection("c", &Default::default()).unwrap_err().code(), "INVALID_INPUT");
    let branches = [("main".to_string(), "nope".to_string())].into();
    assert_eq!(w.finish(&branches).unwrap_err().code(), "INVALID_INPUT");
}

/// Writes `snapshot` with its commits given to `add_canonical_commit`
/// (change sets as canonical JSON text) instead of `add_commit`.
fn write_with_canonical_commits(snapshot: &Snapshot) -> Vec<u8> {
    let mut w = bundle::BundleWriter::new(Vec::new(), &snapshot.schema, WriteOptions::default()).unwrap();
    for (name, collection) in &snapshot.collections {
        w.begin_collection(name, &collection.config).unwrap();
        for (id, doc) in &collection.documents {
            w.add_document(id, doc).unwrap();
        }
    }
    for c in snapshot.history.canonical_order().unwrap() {
        let changes = canon(&c.changes);
        let raw = CanonicalCommit { id: &c.id, parents: &c.parents, author: &c.author, message: &c.message, timestamp: c.timestamp, changes: &changes };
        w.add_canonical_commit(&raw).unwrap();
    }
    w.finish(&snapshot.history.branches).unwrap().0
}

#[test]
fn canonical_commits_give_the_bytes_add_commit_gives() {
    let mut snapshot = sample(50);
    // Escapes, non-ASCII, floats written as integers, negative timestamps.
    snapshot.history.commits[1].author = "Zoë \"z\" \u{1}\n".into();
    snapshot.history.commits[1].message = "tab\there \\ 😀".into();
    snapshot.history.commits[2].timestamp = -42;
    snapshot.history.commits[2].changes.push(Change::Put {
        collection: "docs".into(),
        id: "f".into(),
        document: json!({"z": 1.0, "a": [-0.0, 1e21, 0.1], "é": {"b": null, "a": "\u{7f}"}}),
    });
    assert_eq!(write_with_canonical_commits(&snapshot), bundle::to_vec(&snapshot).unwrap());
    // Enough history for several commits blocks.
    let big: Vec<Change> =
        (0..3000).map(|i| Change::Put { collection: "docs".into(), id: format!("d{i}"), document: json!({"text": "x".repeat(700), "i": i}) }).collect();
    snapshot.history.commits[3].changes = big;
    assert_eq!(write_with_canonical_commits(&snapshot), bundle::to_vec(&snapshot).unwrap());
}

#[test]
fn canonical_commits_keep_the_order_rules_and_refuse_what_is_not_a_change_set() {
    let mut w = bundle::BundleWriter::new(Vec::new(), &Value::Null, WriteOptions::default()).unwrap();
    fn raw<'a>(id: &'a str, parents: &'a [String], changes: &'a [u8]) -> CanonicalCommit<'a> {
        CanonicalCommit { id, parents, author: "", message: "", timestamp: 0, changes }
    }
    let code = |r: coffer::Result<()>| r.unwrap_err().code();
    assert_eq!(code(w.add_canonical_commit(&raw("b", &[], b""))), "INVALID_INPUT");
    assert_eq!(code(w.add_canonical_commit(&raw("b", &[], b"{}"))), "INVALID_INPUT");
    assert_eq!(code(w.add_canonical_commit(&raw("b", &[], b"["))), "INVALID_INPUT");
    assert_eq!(code(w.add_canonical_commit(&raw("", &[], b"[]"))), "INVALID_INPUT");
    let missing = ["a".to_string()];
    assert_eq!(code(w.add_canonical_commit(&raw("x", &missing, b"[]"))), "INVALID_INPUT"); // parent not added
    w.add_canonical_commit(&raw("b", &[], b"[]")).unwrap();
    assert_eq!(code(w.add_canonical_commit(&raw("a", &[], b"[]"))), "INVALID_INPUT"); // out of order
    assert_eq!(code(w.add_canonical_commit(&raw("b", &[], b"[]"))), "INVALID_INPUT"); // duplicate
                                                                                      // Mixed with add_commit, the same rules hold across both.
    assert_eq!(w.add_commit(&commit("a", &[], vec![])).unwrap_err().code(), "INVALID_INPUT");
    w.add_commit(&commit("c", &["b"], vec![])).unwrap();
    assert_eq!(code(w.add_canonical_commit(&raw("b2", &[], b"[]"))), "INVALID_INPUT");
    let bytes = w.finish(&[("main".to_string(), "c".to_string())].into()).unwrap().0;
    let back = bundle::from_slice(&bytes).unwrap();
    assert_eq!(back.history.commits.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
}

#[test]
fn a_change_set_that_is_not_canonical_makes_a_bundle_every_reader_refuses() {
    // The caller's guarantee, shown: the writer copies what it is given,
    // the reader refuses the record.
    let mut w = bundle::BundleWriter::new(Vec::new(), &Value::Null, WriteOptions::default()).unwrap();
    let changes = br#"[{"op":"drop","collection":"x"}]"#;
    w.add_canonical_commit(&CanonicalCommit { id: "a", parents: &[], author: "", message: "", timestamp: 0, changes }).unwrap();
    let bytes = w.finish(&[("main".to_string(), "a".to_string())].into()).unwrap().0;
    assert_eq!(bundle::from_slice(&bytes).unwrap_err().code(), "CORRUPT");
}

#[test]
fn limits_are_enforced() {
    let bytes = bundle::to_vec(&sample(10)).unwrap();
    let limits = ReadLimits { max_total_raw: 100, ..ReadLimits::default() };
    assert_eq!(BundleReader::new(&bytes[..], limits).unwrap().read_to_end().unwrap_err().code(), "LIMIT_EXCEEDED");
    // A block header claiming a huge raw size from a few stored bytes.
    let mut bomb = bytes[..12].to_vec();
    bomb.extend_from_slice(&[1, 1]);
    bomb.extend_from_slice(&(60u32 << 20).to_le_bytes());
    bomb.extend_from_slice(&16u32.to_le_bytes());
    bomb.extend_from_slice(&[0; 16]);
    assert_eq!(BundleReader::new(&bomb[..], ReadLimits::default()).unwrap().read_to_end().unwrap_err().code(), "LIMIT_EXCEEDED");
    let mut huge = bytes[..12].to_vec();
    huge.extend_from_slice(&[1, 0]);
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(BundleReader::new(&huge[..], ReadLimits::default()).unwrap().read_to_end().unwrap_err().code(), "LIMIT_EXCEEDED");
}

fn read_all(bytes: &[u8]) -> coffer::Result<()> {
    BundleReader::new(bytes, ReadLimits::default())?.read_to_end().map(|_| ())
}

#[test]
fn every_truncation_and_trailing_data_fail() {
    let bytes = bundle::to_vec(&sample(50)).unwrap();
    for keep in 0..bytes.len() {
        let err = read_all(&bytes[..keep]).unwrap_err();
        assert!(["TRUNCATED", "CORRUPT"].contains(&err.code()), "cut at {keep}: {err}");
    }
    assert_eq!(read_all(&[&bytes[..], b"\0"].concat()).unwrap_err().code(), "CORRUPT");
}

/// Every single-bit flip of a bundle whose blocks are zstd frames is an
/// error, including the flips zstd decodes to the same content (e.g. in a
/// frame header): the trailer's hash covers the bytes, not just the content.
#[test]
fn every_bit_flip_is_an_error() {
    let bytes = bundle::to_vec(&sample(50)).unwrap();
    assert!(bytes.len() > 1000 && bytes.windows(4).any(|w| w == [0x28, 0xb5, 0x2f, 0xfd]), "the sample must hold a zstd frame");
    let mut flipped = bytes.clone();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            assert!(read_all(&flipped).is_err(), "flip of bit {bit} at {i} of {} went unnoticed", bytes.len());
            flipped[i] = bytes[i];
        }
    }
}

/// What a reader with `threads` gives: a digest of its items (and of the
/// change sets' text when kept) and its error, code and message.
fn read_with_threads(bytes: &[u8], threads: usize, keep: bool) -> (u64, String, Option<String>) {
    let mut items = 0;
    let mut digest = blake3::Hasher::new();
    let result = (|| -> coffer::Result<()> {
        let mut reader = BundleReader::new(bytes, ReadLimits::default())?;
        reader.set_threads(threads);
        reader.keep_changes_text(keep);
        while let Some(item) = reader.next_item()? {
            items += 1;
            digest.update(format!("{item:?}").as_bytes());
            if let Some(text) = reader.take_changes_text() {
                digest.update(&text);
            }
            digest.update(&reader.position().to_le_bytes());
        }
        Ok(())
    })();
    (items, digest.finalize().to_hex().to_string(), result.err().map(|e| format!("{}: {e}", e.code())))
}

/// A bundle of several documents and commits blocks whose `bad`-th commit
/// (if any) has a change set that is not canonical.
fn many_blocks(bad: Option<usize>) -> Vec<u8> {
    many_blocks_with(bad, None)
}

/// [`many_blocks`], and the `unknown`-th commit (if any) puts a document
/// the bundle does not hold without its document (version 2's rule broken).
fn many_blocks_with(bad: Option<usize>, unknown: Option<usize>) -> Vec<u8> {
    let mut snapshot = sample(9000);
    let mut w = bundle::BundleWriter::new(Vec::new(), &snapshot.schema, WriteOptions::default()).unwrap();
    for (name, collection) in &snapshot.collections {
        w.begin_collection(name, &collection.config).unwrap();
        for (id, doc) in &collection.documents {
            w.add_document(id, doc).unwrap();
        }
    }
    let mut parents = Vec::new();
    for i in 0..60 {
        let id = format!("c{i:03}");
        let mut changes: Vec<Change> =
            (0..40).map(|j| Change::Put { collection: "docs".into(), id: format!("d{i}-{j}"), document: json!({"text": "y".repeat(900), "j": j}) }).collect();
        // Puts stored without their document (version 2), checked on the reader's thread.
        changes.push(put_snapshot("docs", &format!("docs-{:06}", i * 100)));
        changes.push(put_snapshot("vectors", &format!("vectors-{:06}", if unknown == Some(i) { 9000 } else { i })));
        let mut text = canon(&changes);
        if bad == Some(i) {
            text.insert(1, b' ');
        }
        w.add_canonical_commit(&CanonicalCommit { id: &id, parents: &parents, author: "ada", message: "m", timestamp: i as i64, changes: &text }).unwrap();
        parents = vec![id];
    }
    snapshot.history.branches = [("main".to_string(), parents[0].clone())].into();
    w.finish(&snapshot.history.branches).unwrap().0
}

/// Worker threads that read ahead change neither the items nor the errors,
/// nor where in the bundle the errors come.
#[test]
fn reading_ahead_on_threads_gives_the_items_and_errors_of_one_thread() {
    let good = many_blocks(None);
    assert!(read_toc(&mut Cursor::new(&good)).unwrap().raw_bytes > 4 << 20, "several blocks of each kind");
    let bad_commit = many_blocks(Some(45));
    let bad_rule = many_blocks_with(None, Some(50));
    for bytes in [&good, &bad_commit, &bad_rule] {
        for keep in [false, true] {
            let one = read_with_threads(bytes, 1, keep);
            for threads in [2, 3, 0] {
                assert_eq!(read_with_threads(bytes, threads, keep), one, "threads {threads}, keep {keep}");
            }
        }
    }
    assert_eq!(read_with_threads(&good, 2, true).2, None);
    assert!(read_with_threads(&bad_commit, 2, true).2.is_some_and(|e| e.starts_with("CORRUPT: ")));
    assert!(read_with_threads(&bad_rule, 2, true).2.is_some_and(|e| e.starts_with("CORRUPT: ") && e.contains("vectors-009000")));
    // Damaged bundles: cut anywhere, a bit flipped anywhere.
    for cut in (0..good.len()).step_by(good.len() / 64).chain([good.len() - 1, good.len() - 48]) {
        assert_eq!(read_with_threads(&good[..cut], 2, true), read_with_threads(&good[..cut], 1, true), "cut at {cut}");
    }
    let mut flipped = good.clone();
    for i in (0..good.len()).step_by(good.len() / 97).chain([12, 13, 20, good.len() - 30]) {
        flipped[i] ^= 0x10;
        assert_eq!(read_with_threads(&flipped, 2, true), read_with_threads(&flipped, 1, true), "flip at {i}");
        flipped[i] = good[i];
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[ -~é😀\\n]{0,12}".prop_map(Value::from)
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z@]{1,5}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
        ]
    })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let collection = (prop::collection::btree_map("[a-z0-9]{1,6}", arb_json(), 0..20), prop::collection::btree_map("[a-z]{1,4}", arb_json(), 0..3))
        .prop_map(|(documents, config)| Collection { documents, config: config.into_iter().collect() });
    (arb_json(), prop::collection::btree_map("[a-z][a-z0-9_]{0,7}", collection, 0..4), 0usize..6).prop_map(|(schema, mut collections, n)| {
        collections.retain(|name, _| !["schema", "history"].contains(&name.as_str()));
        let commits: Vec<Commit> = (0..n)
            .map(|i| {
                commit(&format!("c{i}"), &if i == 0 { vec![] } else { vec![format!("c{}", i / 2)] }.iter().map(String::as_str).collect::<Vec<_>>(), vec![])
            })
            .collect();
        let branches = if n > 0 { [("main".to_string(), format!("c{}", n - 1))].into() } else { Default::default() };
        Snapshot { schema, collections, history: History { commits, branches } }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn any_snapshot_round_trips(snapshot in arb_snapshot()) {
        let bytes = bundle::to_vec(&snapshot).unwrap();
        let back = bundle::from_slice(&bytes).unwrap();
        prop_assert_eq!(bundle::to_vec(&back).unwrap(), bytes);
        prop_assert_eq!(back.collections.len(), snapshot.collections.len());
        prop_assert_eq!(back.history.commits.len(), snapshot.history.commits.len());
    }

    #[test]
    fn any_byte_flip_is_detected(snapshot in arb_snapshot(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = bundle::to_vec(&snapshot).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(read_all(&bytes).is_err(), "flip at {} of {} went unnoticed", i, bytes.len());
    }
}

// Format version 2: a put of a document the bundle holds byte for byte is
// stored without it (docs/FORMAT.md §3.2).

fn put(collection: &str, id: &str, document: Value) -> Change {
    Change::Put { collection: collection.into(), id: id.into(), document }
}

fn put_snapshot(collection: &str, id: &str) -> Change {
    Change::PutSnapshot { collection: collection.into(), id: id.into() }
}

/// A history of inserts, updates, deletes, a re-put of an identical
/// document, a put on another branch, a put of `null`; the documents are
/// the state at `main`, plus `n` inserted-only documents.
fn history_snapshot(n: usize) -> Snapshot {
    let mut c = Collection::default();
    for i in 0..n {
        c.documents.insert(format!("d{i:05}"), json!({"i": i, "text": format!("inserted once, never changed: {i} {}", "z".repeat(400))}));
    }
    c.documents.insert("updated".into(), json!({"v": 2}));
    c.documents.insert("again".into(), json!({"v": "A"}));
    c.documents.insert("nothing".into(), Value::Null);
    c.documents.insert("float".into(), json!({"x": 1.0}));
    let mut other = Collection::default();
    other.documents.insert("o".into(), json!([1, 2]));
    let inserts: Vec<Change> = (0..n).map(|i| put("c", &format!("d{i:05}"), c.documents[&format!("d{i:05}")].clone())).collect();
    let commits = vec![
        commit("a1", &[], inserts),
        commit(
            "a2",
            &["a1"],
            vec![
                put("c", "updated", json!({"v": 1})),
                put("c", "gone", json!({"bye": true})),
                put("c", "again", json!({"v": "A"})),
                put("c", "nothing", Value::Null),
                put("c", "float", json!({"x": 1})),
            ],
        ),
        commit(
            "a3",
            &["a2"],
            vec![put("c", "updated", json!({"v": 2})), Change::Delete { collection: "c".into(), id: "gone".into() }, put("c", "again", json!({"v": "B"}))],
        ),
        commit("a4", &["a3"], vec![put("c", "again", json!({"v": "A"})), put("other", "o", json!([1, 2]))]),
        // Another branch puts a document main holds, one it does not, and one of another value.
        commit("b1", &["a1"], vec![put("c", "updated", json!({"v": 2})), put("c", "side", json!({"s": 1})), put("other", "o", json!([2, 1]))]),
    ];
    Snapshot {
        schema: Value::Null,
        collections: [("c".to_string(), c), ("other".to_string(), other)].into(),
        history: History { commits, branches: [("main".to_string(), "a4".to_string()), ("side".to_string(), "b1".to_string())].into() },
    }
}

/// The commits as a reader gives them, and the text of their change sets.
fn commits_as_stored(bytes: &[u8]) -> Vec<(Commit, String)> {
    let mut reader = BundleReader::new(bytes, ReadLimits::default()).unwrap();
    reader.keep_changes_text(true);
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        if let Item::Commit(c) = item {
            out.push((*c, String::from_utf8(reader.take_changes_text().unwrap()).unwrap()));
        }
    }
    out
}

/// `bytes` with another format version in its header (and the trailer's
/// hash of the bytes made to match).
fn with_version(bytes: &[u8], version: u16) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[8..10].copy_from_slice(&version.to_le_bytes());
    let end = b.len() - 48;
    let hash = blake3::hash(&b[..end]);
    b[end + 8..end + 40].copy_from_slice(hash.as_bytes());
    b
}

#[test]
fn version_2_stores_a_put_of_a_document_the_bundle_holds_without_it() {
    let snapshot = history_snapshot(3);
    let bytes = bundle::to_vec(&snapshot).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2);
    let stored = commits_as_stored(&bytes);
    let by_id = |id: &str| stored.iter().find(|(c, _)| c.id == id).unwrap();
    assert_eq!(by_id("a1").0.changes, (0..3).map(|i| put_snapshot("c", &format!("d{i:05}"))).collect::<Vec<_>>());
    assert_eq!(
        by_id("a2").0.changes,
        [
            put("c", "updated", json!({"v": 1})),
            put("c", "gone", json!({"bye": true})),
            put_snapshot("c", "again"),
            put_snapshot("c", "nothing"),
            put_snapshot("c", "float") // 1 and 1.0 have one canonical form
        ]
    );
    assert_eq!(by_id("a3").0.changes[2], put("c", "again", json!({"v": "B"})));
    assert_eq!(by_id("a4").0.changes, [put_snapshot("c", "again"), put_snapshot("other", "o")]);
    assert_eq!(by_id("b1").0.changes, [put_snapshot("c", "updated"), put("c", "side", json!({"s": 1})), put("other", "o", json!([2, 1]))]);
    assert_eq!(by_id("a4").1, r#"[{"collection":"c","id":"again","op":"put"},{"collection":"other","id":"o","op":"put"}]"#);
    // Read back, every put is whole again: the snapshot compares equal.
    let back = bundle::from_slice(&bytes).unwrap();
    assert_eq!(canon(&back.collections), canon(&snapshot.collections));
    let (mut original, mut read) = (snapshot.history.commits.clone(), back.history.commits.clone());
    original.sort_by(|a, b| a.id.cmp(&b.id));
    read.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(canon(&read), canon(&original));
    assert_eq!(bundle::to_vec(&back).unwrap(), bytes);
    // A history written with the omissions already made gives the same bytes.
    let mut by_ref = snapshot.clone();
    by_ref.history.commits = stored.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(bundle::to_vec(&by_ref).unwrap(), bytes);
    // So do change sets given as text, and any number of threads, reading or writing.
    assert_eq!(write_with_canonical_commits(&by_ref), bytes);
    let (one, _) = bundle::write_snapshot(&snapshot, Vec::new(), WriteOptions { threads: 1, ..Default::default() }).unwrap();
    assert_eq!(one, bytes);
    assert_eq!(read_with_threads(&bytes, 1, true), read_with_threads(&bytes, 3, true));
    // A caller that decides the puts itself (puts_decided: no fingerprints)
    // gets the same bytes when it decides right; the writer then writes puts
    // as given, so whole puts of documents the bundle holds are refused by readers.
    let decided = WriteOptions { puts_decided: true, ..Default::default() };
    assert_eq!(bundle::write_snapshot(&by_ref, Vec::new(), decided.clone()).unwrap().0, bytes);
    let undecided = bundle::write_snapshot(&snapshot, Vec::new(), decided).unwrap().0;
    assert_eq!(bundle::from_slice(&undecided).unwrap_err().code(), "CORRUPT");
}

/// Every item of a bundle, read by a reader whose caller resolves puts
/// (`resolves`) or not; the error code if the reading fails.
fn items_resolving(bytes: &[u8], resolves: bool) -> Result<Vec<Item>, String> {
    let mut reader = BundleReader::new(bytes, ReadLimits::default()).map_err(|e| e.code().to_string())?;
    reader.caller_resolves_puts(resolves);
    let mut items = Vec::new();
    while let Some(item) = reader.next_item().map_err(|e| e.code().to_string())? {
        items.push(item);
    }
    Ok(items)
}

#[test]
fn a_reader_whose_caller_resolves_puts_skips_only_the_fingerprint_checks() {
    let snapshot = history_snapshot(3);
    let bytes = bundle::to_vec(&snapshot).unwrap();
    let items = items_resolving(&bytes, true).unwrap();
    assert_eq!(items, items_resolving(&bytes, false).unwrap());
    assert!(items.iter().any(|item| matches!(item, Item::Commit(c) if c.changes.iter().any(|ch| matches!(ch, Change::PutSnapshot { .. })))));
    // Whole puts of documents the bundle holds (a second encoding of the
    // same snapshot): refused by a full reader, read as written by one whose
    // caller resolves puts (it stores the same snapshot either way).
    let decided = WriteOptions { puts_decided: true, ..Default::default() };
    let whole = bundle::write_snapshot(&snapshot, Vec::new(), decided).unwrap().0;
    assert_eq!(items_resolving(&whole, false).unwrap_err(), "CORRUPT");
    let read = items_resolving(&whole, true).unwrap();
    assert_eq!(read.len(), items.len());
    assert!(!read.iter().any(|item| matches!(item, Item::Commit(c) if c.changes.iter().any(|ch| matches!(ch, Change::PutSnapshot { .. })))));
    // A put without document stays refused where the format never allows it (version 1).
    let v1 = with_version(&bytes, 1);
    assert_eq!(items_resolving(&v1, true).unwrap_err(), "CORRUPT");
    assert_eq!(items_resolving(&v1, false).unwrap_err(), "CORRUPT");
}

#[test]
fn an_insert_only_history_stores_each_document_once() {
    let snapshot = history_snapshot(20_000);
    let (bytes, summary) = bundle::write_snapshot(&snapshot, Vec::new(), WriteOptions::default()).unwrap();
    // The same history with every put whole, as version 1 stored it.
    let mut full = bundle::BundleWriter::new(Vec::new(), &snapshot.schema, WriteOptions::default()).unwrap();
    for (name, collection) in &snapshot.collections {
        full.begin_collection(name, &collection.config).unwrap();
        for (id, doc) in &collection.documents {
            full.add_document(id, doc).unwrap();
        }
    }
    for c in snapshot.history.canonical_order().unwrap() {
        let changes = canon(&c.changes);
        full.add_canonical_commit(&CanonicalCommit {
            id: &c.id,
            parents: &c.parents,
            author: &c.author,
            message: &c.message,
            timestamp: c.timestamp,
            changes: &changes,
        })
        .unwrap();
    }
    let (full_bytes, full_summary) = full.finish(&snapshot.history.branches).unwrap();
    let documents: u64 = summary.toc.collections.iter().map(|c| c.raw_bytes).sum();
    assert!(full_summary.toc.raw_bytes > 2 * documents, "{} {documents}", full_summary.toc.raw_bytes);
    assert!(summary.toc.raw_bytes < documents + documents / 4, "raw {} for {documents} bytes of documents", summary.toc.raw_bytes);
    assert!(summary.toc.raw_bytes * 10 < full_summary.toc.raw_bytes * 6);
    assert!(bytes.len() < full_bytes.len());
    // And that whole-puts encoding is not a version-2 bundle, but reads as version 1.
    assert_eq!(bundle::from_slice(&full_bytes).unwrap_err().code(), "CORRUPT");
    let v1 = with_version(&full_bytes, 1);
    assert_eq!(canon(&bundle::from_slice(&v1).unwrap()), canon(&bundle::from_slice(&bytes).unwrap()));
}

/// A bundle of `history_snapshot(2)` whose commit `x` has `changes` as given.
fn with_change_set(changes: &[u8]) -> Vec<u8> {
    let snapshot = history_snapshot(2);
    let mut w = bundle::BundleWriter::new(Vec::new(), &snapshot.schema, WriteOptions::default()).unwrap();
    for (name, collection) in &snapshot.collections {
        w.begin_collection(name, &collection.config).unwrap();
        for (id, doc) in &collection.documents {
            w.add_document(id, doc).unwrap();
        }
    }
    w.add_canonical_commit(&CanonicalCommit { id: "x", parents: &[], author: "", message: "", timestamp: 0, changes }).unwrap();
    w.finish(&[("main".to_string(), "x".to_string())].into()).unwrap().0
}

#[test]
fn the_rule_of_version_2_is_checked_both_ways() {
    let omitted = br#"[{"collection":"c","id":"d00001","op":"put"}]"#;
    let whole = format!(r#"[{{"collection":"c","document":{{"i":1,"text":"inserted once, never changed: 1 {}"}},"id":"d00001","op":"put"}}]"#, "z".repeat(400));
    let whole = whole.as_bytes();
    let changed = br#"[{"collection":"c","document":{"i":1},"id":"d00001","op":"put"}]"#;
    let unknown = br#"[{"collection":"c","id":"d00009","op":"put"},{"collection":"other","id":"d00001","op":"put"}]"#;
    let wrong_collection = br#"[{"collection":"other","id":"d00001","op":"put"}]"#;
    let null_doc = br#"[{"collection":"c","document":null,"id":"nothing","op":"put"}]"#;
    for (changes, v2, v1) in [
        (&omitted[..], Ok(()), Err("CORRUPT")),
        (whole, Err("CORRUPT"), Ok(())),
        (changed, Ok(()), Ok(())),
        (unknown, Err("CORRUPT"), Err("CORRUPT")),
        (wrong_collection, Err("CORRUPT"), Err("CORRUPT")),
        (null_doc, Err("CORRUPT"), Ok(())),
    ] {
        let bytes = with_change_set(changes);
        let text = String::from_utf8_lossy(changes);
        for (bytes, expected) in [(bytes.clone(), v2), (with_version(&bytes, 1), v1)] {
            let one = read_with_threads(&bytes, 1, true);
            assert_eq!(one, read_with_threads(&bytes, 2, true), "{text}");
            match expected {
                Ok(()) => assert_eq!(one.2, None, "{text}"),
                Err(code) => assert!(one.2.as_deref().is_some_and(|e| e.starts_with(&format!("{code}: "))), "{text}: {:?}", one.2),
            }
        }
    }
    assert_eq!(bundle::from_slice(&with_version(&with_change_set(whole), 3)).unwrap_err().code(), "UNSUPPORTED_VERSION");
    // The writer refuses a put of the snapshot's document when the bundle holds none.
    let mut w = bundle::BundleWriter::new(Vec::new(), &Value::Null, WriteOptions::default()).unwrap();
    w.begin_collection("c", &Default::default()).unwrap();
    w.add_document("a", &json!(1)).unwrap();
    let bad = commit("x", &[], vec![put_snapshot("c", "a"), put_snapshot("c", "b")]);
    let e = w.add_commit(&bad).unwrap_err();
    assert_eq!(e.code(), "INVALID_INPUT");
    assert!(e.to_string().contains("\"b\""), "{e}");
}

/// What an insert-only history costs to write, puts stored without their
/// documents (version 2) against the same change sets whole (the version-1
/// encoding): `cargo test --release --test bundle insert_only_write_cost -- --ignored --nocapture`
/// (COFFER_MEASURE_MIB sets the size, default 64).
#[test]
#[ignore]
fn insert_only_write_cost() {
    fn cpu_seconds() -> f64 {
        let stat = fs_stat();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    }
    fn fs_stat() -> String {
        std::fs::read_to_string("/proc/self/stat").unwrap_or_else(|_| "x) 0 0 0 0 0 0 0 0 0 0 0 0 0".into())
    }
    let mib: usize = std::env::var("COFFER_MEASURE_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let n = (mib << 20) / 1000;
    // Hex text: about as compressible as real documents (zstd ~2x).
    let doc =
        |i: usize| format!(r#"{{"i":{i},"text":"{}"}}"#, (0..15).map(|k| blake3::hash(&(i * 16 + k).to_le_bytes()).to_hex().to_string()).collect::<String>());
    for omit in [true, false] {
        let (t, cpu) = (std::time::Instant::now(), cpu_seconds());
        let mut w = bundle::BundleWriter::new(std::io::sink(), &Value::Null, WriteOptions::default()).unwrap();
        w.begin_collection("c", &Default::default()).unwrap();
        let mut json = serde_json::Value::Null;
        for i in 0..n {
            json = serde_json::from_str(&doc(i)).unwrap();
            w.add_document(&format!("d{i:09}"), &json).unwrap();
        }
        drop(json);
        let mut parents = Vec::new();
        for chunk in 0..n.div_ceil(1000) {
            let mut text = b"[".to_vec();
            for i in chunk * 1000..(chunk * 1000 + 1000).min(n) {
                if i > chunk * 1000 {
                    text.push(b',');
                }
                let document = if omit { String::new() } else { format!(r#""document":{},"#, doc(i)) };
                text.extend_from_slice(format!(r#"{{"collection":"c",{document}"id":"d{i:09}","op":"put"}}"#).as_bytes());
            }
            text.push(b']');
            let id = format!("k{chunk:06}");
            w.add_canonical_commit(&CanonicalCommit { id: &id, parents: &parents, author: "", message: "", timestamp: 0, changes: &text }).unwrap();
            parents = vec![id];
        }
        let (_, summary) = w.finish(&[("main".to_string(), parents[0].clone())].into()).unwrap();
        println!(
            "{mib} MiB of documents, puts {}: raw {} MiB, stored {} MiB, {:.2} s wall, {:.2} CPU-s",
            if omit { "without document" } else { "whole" },
            summary.toc.raw_bytes >> 20,
            summary.bytes >> 20,
            t.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
    }
}
