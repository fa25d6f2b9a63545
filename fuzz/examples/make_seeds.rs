//! Writes the seed corpora under `fuzz/seeds/<target>/`: small valid bundles
//! and sealed files (passphrase and X25519, sealed with the harness's fixed
//! keys and small KDF parameters). Deterministic: rerunning rewrites the same
//! bytes. Run from `fuzz/`: `cargo run --example make_seeds`.
//! (`seeds/bundle_reader/docs_history_v1.cfb` is not written here: it is
//! what the version-1 writer wrote for `docs_history.cfb`'s snapshot before
//! its history gained a put stored without document, kept so the fuzzer
//! also starts from a version-1 bundle.)

use std::fs;
use std::path::Path;

use coffer::bundle;
use coffer::seal::{self, DeterministicRandom, Recipient};
use coffer::{Change, Collection, Commit, History, Snapshot};
use coffer_fuzz::harness::{fast_seal_options, identity, PASSPHRASE};
use serde_json::json;

/// Document `i` of the seeds' collection.
fn c_doc(i: usize) -> serde_json::Value {
    json!({"n": i, "t": format!("doc {i}"), "v": [0.5, -1.0, i as f64 / 3.0], "o": {"a": null, "b": true}})
}

fn snapshot(docs: usize, with_history: bool) -> Snapshot {
    let mut s = Snapshot { schema: json!({"version": 1}), ..Default::default() };
    let mut c = Collection { config: json!({"dimension": 3, "metric": "cosine"}).as_object().cloned().unwrap_or_default(), ..Default::default() };
    for i in 0..docs {
        c.documents.insert(format!("d{i:03}"), c_doc(i));
    }
    s.collections.insert("docs".into(), c);
    if docs > 1 {
        s.collections.insert("empty".into(), Collection::default());
    }
    if with_history {
        let commit = |id: &str, parents: &[&str], changes| Commit {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            author: "fz".into(),
            message: id.into(),
            timestamp: 1,
            changes,
        };
        s.history = History {
            commits: vec![
                commit(
                    "c1",
                    &[],
                    vec![
                        Change::Put { collection: "docs".into(), id: "d000".into(), document: json!({"n": 0}) },
                        // The document the bundle holds: stored without it (format version 2).
                        Change::Put { collection: "docs".into(), id: "d001".into(), document: c_doc(1) },
                    ],
                ),
                commit("c2", &["c1"], vec![Change::Delete { collection: "docs".into(), id: "d000".into() }]),
            ],
            branches: [("main".to_string(), "c2".to_string())].into(),
        };
    }
    s
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create seed dir");
    fs::write(dir.join(name), bytes).expect("write seed");
    println!("{} ({} bytes)", dir.join(name).display(), bytes.len());
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let bundles = [
        ("empty.cfb", bundle::to_vec(&Snapshot::default())),
        ("one_doc.cfb", bundle::to_vec(&snapshot(1, false))),
        ("docs_history.cfb", bundle::to_vec(&snapshot(20, true))),
    ];
    let mut small_bundle = Vec::new();
    for (name, bytes) in bundles {
        let bytes = bytes.expect("bundle a seed snapshot");
        write(&root.join("bundle_reader"), name, &bytes);
        small_bundle = bytes;
    }
    let options = fast_seal_options(1);
    let rng = || DeterministicRandom::new(b"seed");
    let sealed = [
        ("passphrase_empty.cfs", seal::seal_to_vec_with(b"", &[Recipient::passphrase(PASSPHRASE)], &options, &mut rng())),
        ("passphrase_bundle.cfs", seal::seal_to_vec_with(&small_bundle, &[Recipient::passphrase(PASSPHRASE)], &options, &mut rng())),
        ("x25519_two_segments.cfs", seal::seal_to_vec_with(&[7u8; 20_000], &[Recipient::X25519(identity().public())], &options, &mut rng())),
        (
            "x25519_metadata.cfs",
            seal::seal_to_vec_with(
                b"hello",
                &[Recipient::X25519(identity().public()), Recipient::X25519(identity().public())],
                &coffer::seal::SealOptions { metadata: json!({"backup": "b1", "labels": ["x"]}).as_object().cloned(), ..options.clone() },
                &mut rng(),
            ),
        ),
    ];
    for (name, bytes) in sealed {
        write(&root.join("sealed_header"), name, &bytes.expect("seal a seed"));
    }
    let mut rt = vec![0u8];
    rt.extend_from_slice(b"round trip seed");
    write(&root.join("seal_round_trip"), "short", &rt);
    let mut rt = vec![3u8];
    rt.extend((0..20_000u32).map(|i| (i % 251) as u8));
    write(&root.join("seal_round_trip"), "two_segments", &rt);
}
