//! The wasm bindings (src/wasm/), run by wasm-bindgen-test in Node and in
//! headless Chromium (`scripts/test-js.sh` runs both):
//!
//! ```sh
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   cargo test --target wasm32-unknown-unknown --no-default-features --features wasm --test wasm
//! # and with WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER=/usr/bin/chromedriver for Chromium
//! ```
//!
//! Every vector of tests/vectors/ runs through the pure-wasm `Opener` and
//! through the `WebOpener` framing (with AES-GCM done here, where JS would
//! use WebCrypto); damaged inputs must give an error with the right code and
//! never trap (a panic aborts a wasm instance).
#![cfg(all(target_arch = "wasm32", feature = "wasm"))]

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use coffer::wasm::{self, BundleBuilder, Opener, Sealer, WebOpener, WebSealer};
use serde_json::{json, Value};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

/// Every file of tests/vectors/, embedded (the manifest is checked against this list).
const VECTORS: &[(&str, &[u8])] = &[
    ("bad_magic.cfs", include_bytes!("vectors/bad_magic.cfs")),
    ("bundle_flipped_byte.cfb", include_bytes!("vectors/bundle_flipped_byte.cfb")),
    ("bundle_history.cfb", include_bytes!("vectors/bundle_history.cfb")),
    ("bundle_put_not_omitted.cfb", include_bytes!("vectors/bundle_put_not_omitted.cfb")),
    ("bundle_put_of_no_document.cfb", include_bytes!("vectors/bundle_put_of_no_document.cfb")),
    ("bundle_truncated.cfb", include_bytes!("vectors/bundle_truncated.cfb")),
    ("bundle_v1_history.cfb", include_bytes!("vectors/bundle_v1_history.cfb")),
    ("bundle_v1_put_without_document.cfb", include_bytes!("vectors/bundle_v1_put_without_document.cfb")),
    ("dropped_segment.cfs", include_bytes!("vectors/dropped_segment.cfs")),
    ("flipped_commitment.cfs", include_bytes!("vectors/flipped_commitment.cfs")),
    ("flipped_header_mac.cfs", include_bytes!("vectors/flipped_header_mac.cfs")),
    ("flipped_header_metadata.cfs", include_bytes!("vectors/flipped_header_metadata.cfs")),
    ("flipped_segment_byte.cfs", include_bytes!("vectors/flipped_segment_byte.cfs")),
    ("flipped_tag_byte.cfs", include_bytes!("vectors/flipped_tag_byte.cfs")),
    ("identity_for_passphrase_file.cfs", include_bytes!("vectors/identity_for_passphrase_file.cfs")),
    ("kdf_over_cap.cfs", include_bytes!("vectors/kdf_over_cap.cfs")),
    ("metadata.cfs", include_bytes!("vectors/metadata.cfs")),
    ("passphrase_empty.cfs", include_bytes!("vectors/passphrase_empty.cfs")),
    ("passphrase_exact_segments.cfs", include_bytes!("vectors/passphrase_exact_segments.cfs")),
    ("passphrase_multi_segment.cfs", include_bytes!("vectors/passphrase_multi_segment.cfs")),
    ("passphrase_small.cfs", include_bytes!("vectors/passphrase_small.cfs")),
    ("plain_bundle.cfb", include_bytes!("vectors/plain_bundle.cfb")),
    ("plain_bundle_v1.cfb", include_bytes!("vectors/plain_bundle_v1.cfb")),
    ("reordered_segments.cfs", include_bytes!("vectors/reordered_segments.cfs")),
    ("sealed_bundle.cfs", include_bytes!("vectors/sealed_bundle.cfs")),
    ("trailing_data.cfs", include_bytes!("vectors/trailing_data.cfs")),
    ("truncated_at_segment_boundary.cfs", include_bytes!("vectors/truncated_at_segment_boundary.cfs")),
    ("truncated_in_header.cfs", include_bytes!("vectors/truncated_in_header.cfs")),
    ("unknown_version.cfs", include_bytes!("vectors/unknown_version.cfs")),
    ("wrong_identity.cfs", include_bytes!("vectors/wrong_identity.cfs")),
    ("wrong_passphrase.cfs", include_bytes!("vectors/wrong_passphrase.cfs")),
    ("x25519_two_recipients.cfs", include_bytes!("vectors/x25519_two_recipients.cfs")),
];
const MANIFEST: &str = include_str!("vectors/manifest.json");

/// Small Argon2id cost for tests.
const FAST_KDF: &str = r#"{"kdf":{"memoryKib":256,"iterations":1,"parallelism":1},"segmentSize":16384}"#;

fn vector(file: &str) -> &'static [u8] {
    VECTORS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("{file} is in the manifest but not embedded in tests/wasm.rs: add it to VECTORS"))
}

fn cases() -> Vec<Value> {
    let manifest: Value = serde_json::from_str(MANIFEST).unwrap();
    manifest["cases"].as_array().unwrap().clone()
}

/// The `code` of a thrown CofferError, checking that it is a real `Error` named CofferError.
fn code(err: JsValue) -> String {
    let error: &js_sys::Error = err.dyn_ref().expect("a JS Error, not a string or a plain object");
    assert_eq!(String::from(error.name()), "CofferError");
    let code = js_sys::Reflect::get(&err, &"code".into()).unwrap().as_string().expect("a string code");
    assert!(coffer::Error::CODES.contains(&code.as_str()), "unknown code {code}");
    code
}

fn key_of(case: &Value) -> (Option<String>, Option<String>) {
    (case["key"]["passphrase"].as_str().map(String::from), case["key"]["identity"].as_str().map(String::from))
}

/// Opens with the pure-wasm Opener, pushing `chunk` bytes at a time.
fn open_wasm(bytes: &[u8], key: (Option<String>, Option<String>), chunk: usize) -> Result<Vec<u8>, JsValue> {
    let mut opener = Opener::new(key.0, key.1)?;
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        out.extend(opener.push(piece)?);
    }
    out.extend(opener.finish()?);
    Ok(out)
}

fn gcm(key: &[u8], nonce: &[u8], data: &[u8], encrypt: bool) -> Option<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let nonce = aes_gcm::Nonce::try_from(nonce).ok()?;
    if encrypt {
        let mut buf = data.to_vec();
        let tag = cipher.encrypt_inout_detached(&nonce, &[], buf.as_mut_slice().into()).ok()?;
        buf.extend_from_slice(&tag);
        Some(buf)
    } else {
        let split = data.len().checked_sub(16)?;
        let mut buf = data[..split].to_vec();
        let tag = aes_gcm::Tag::try_from(&data[split..]).ok()?;
        cipher.decrypt_inout_detached(&nonce, &[], buf.as_mut_slice().into(), &tag).ok()?;
        Some(buf)
    }
}

/// Opens through the WebOpener framing, doing AES-GCM here as the JS layer
/// does with WebCrypto, feeding `chunk` bytes at a time.
fn open_framed(bytes: &[u8], key: (Option<String>, Option<String>), chunk: usize) -> Result<Vec<u8>, JsValue> {
    let mut opener = WebOpener::new(key.0, key.1)?;
    let mut pending: Vec<u8> = Vec::new();
    let mut payload_key = None;
    let mut out = Vec::new();
    for mut piece in bytes.chunks(chunk.max(1)) {
        while payload_key.is_none() && !piece.is_empty() {
            let n = opener.header_needed().min(piece.len());
            let done = opener.push_header(&piece[..n])?;
            piece = &piece[n..];
            if done {
                payload_key = Some(opener.take_key()?);
            }
        }
        let Some(k) = &payload_key else { continue };
        pending.extend_from_slice(piece);
        let unit = opener.unit_size();
        for _ in 0..opener.ready(pending.len() as f64) {
            let ct: Vec<u8> = pending.drain(..unit).collect();
            let nonce = opener.next_nonce(false)?;
            // When AES-GCM refuses a segment, openSegment explains why (or opens it).
            out.extend(match gcm(k, &nonce, &ct, false) {
                Some(plain) => plain,
                None => opener.open_segment(&nonce, &ct)?,
            });
        }
    }
    let Some(k) = &payload_key else { return Err(opener.end_in_header()) };
    opener.check_final(pending.len())?;
    let nonce = opener.next_nonce(true)?;
    let last = match gcm(k, &nonce, &pending, false) {
        Some(plain) => plain,
        None => opener.open_segment(&nonce, &pending)?,
    };
    opener.final_opened(&nonce, last.len())?;
    out.extend(last);
    Ok(out)
}

/// Seals through the WebSealer framing, encrypting here.
fn seal_framed(data: &[u8], passphrase: &str, options: &str, chunk: usize) -> Vec<u8> {
    let mut sealer = WebSealer::new(Some(passphrase.into()), vec![], options).unwrap();
    let mut out = sealer.header().unwrap();
    let key = sealer.take_key().unwrap();
    let unit = sealer.segment_size();
    let mut pending = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        pending.extend_from_slice(piece);
        for _ in 0..sealer.ready(pending.len() as f64) {
            let pt: Vec<u8> = pending.drain(..unit).collect();
            out.extend(gcm(&key, &sealer.next_nonce(false).unwrap(), &pt, true).unwrap());
        }
    }
    out.extend(gcm(&key, &sealer.next_nonce(true).unwrap(), &pending, true).unwrap());
    out
}

/// The segments redone in wasm when WebCrypto fails on its own are the
/// bytes WebCrypto gives (here: the aes-gcm crate), and only for nonces
/// the framing handed out.
#[wasm_bindgen_test]
fn segments_redone_in_wasm_are_the_same_bytes() {
    let options = r#"{"segmentSize":16384,"kdf":{"memoryKib":256,"iterations":1,"parallelism":1}}"#;
    let mut sealer = WebSealer::new(Some("pw".into()), vec![], options).unwrap();
    let header = sealer.header().unwrap();
    let key = sealer.take_key().unwrap();
    let plain: Vec<u8> = (0..16384u32 + 100).map(|i| (i * 7) as u8).collect();
    let (first, rest) = plain.split_at(16384);
    assert!(sealer.seal_segment(&[0; 12], first).is_err(), "a nonce not handed out yet");
    let n0 = sealer.next_nonce(false).unwrap();
    let c0 = sealer.seal_segment(&n0, first).unwrap();
    assert_eq!(c0, gcm(&key, &n0, first, true).unwrap());
    let n1 = sealer.next_nonce(true).unwrap();
    let c1 = sealer.seal_segment(&n1, rest).unwrap();
    assert_eq!(c1, gcm(&key, &n1, rest, true).unwrap());
    let sealed = [header.as_slice(), &c0, &c1].concat();
    assert_eq!(open_wasm(&sealed, (Some("pw".into()), None), 999).unwrap(), plain);

    let mut opener = WebOpener::new(Some("pw".into()), None).unwrap();
    let mut at = 0;
    while opener.header_needed() > 0 {
        let n = opener.header_needed();
        opener.push_header(&header[at..at + n]).unwrap();
        at += n;
    }
    assert_eq!(at, header.len());
    assert!(opener.open_segment(&n0, &c0).is_err(), "a nonce not handed out yet");
    assert_eq!(opener.next_nonce(false).unwrap(), n0);
    assert_eq!(opener.open_segment(&n0, &c0).unwrap(), first);
    let mut bad = c0.clone();
    bad[5] ^= 1;
    assert_eq!(code(opener.open_segment(&n0, &bad).unwrap_err()), "CORRUPT");
}

/// The pure-wasm AES-256-GCM (src/wasm/gcm.rs: fixsliced AES over `v128`,
/// its counter blocks moved on without re-bitslicing) against the aes-gcm
/// crate, at lengths around its 8-block passes and 64-block batches.
#[wasm_bindgen_test]
fn wasm_gcm_matches_the_aes_gcm_crate_at_every_boundary() {
    let options = r#"{"segmentSize":16384,"kdf":{"memoryKib":256,"iterations":1,"parallelism":1}}"#;
    let plain: Vec<u8> = (0..16384u32).map(|i| (i * 31 + 7) as u8).collect();
    for len in [0usize, 1, 15, 16, 17, 127, 128, 129, 1023, 1024, 1025, 1040, 2047, 4096 + 48, 16383, 16384] {
        let mut sealer = WebSealer::new(Some("pw".into()), vec![], options).unwrap();
        sealer.header().unwrap();
        let key = sealer.take_key().unwrap();
        let nonce = sealer.next_nonce(true).unwrap();
        let sealed = sealer.seal_segment(&nonce, &plain[..len]).unwrap();
        assert_eq!(sealed, gcm(&key, &nonce, &plain[..len], true).unwrap(), "length {len}");
    }
}

/// A plaintext that came out of a sealed vector: check it as `coffer verify` would.
fn check_plaintext(plain: &[u8], sealed: bool) -> Result<(), JsValue> {
    wasm::verify_plaintext(plain, sealed).map(|_| ())
}

#[wasm_bindgen_test]
fn manifest_lists_exactly_the_embedded_vectors() {
    let mut listed: Vec<String> = cases().iter().map(|c| c["file"].as_str().unwrap().to_string()).collect();
    listed.sort();
    let embedded: Vec<String> = VECTORS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(listed, embedded, "tests/vectors/manifest.json and tests/wasm.rs VECTORS differ");
}

#[wasm_bindgen_test]
fn every_vector_gives_its_expected_result_in_both_paths() {
    let mut failures = Vec::new();
    for case in cases() {
        let name = case["name"].as_str().unwrap().to_string();
        let bytes = vector(case["file"].as_str().unwrap());
        let expect = case["expect"].as_str().unwrap();
        let results: Vec<(&str, Result<Vec<u8>, JsValue>)> = if case["kind"] == "bundle" {
            vec![("bundle", check_plaintext(bytes, false).map(|()| bytes.to_vec()))]
        } else {
            vec![
                ("wasm, one push", open_wasm(bytes, key_of(&case), bytes.len())),
                ("wasm, 1000-byte pushes", open_wasm(bytes, key_of(&case), 1000)),
                ("framed, one push", open_framed(bytes, key_of(&case), bytes.len())),
                ("framed, 7-byte pushes", open_framed(bytes, key_of(&case), 7)),
            ]
        };
        for (path, result) in results {
            let result = result.and_then(|plain| check_plaintext(&plain, case["kind"] == "sealed").map(|()| plain));
            match (result, expect) {
                (Ok(plain), "ok") => {
                    let hash = blake3::hash(&plain).to_hex().to_string();
                    if plain.len() as u64 != case["plaintext_len"].as_u64().unwrap() || hash != case["plaintext_blake3"].as_str().unwrap() {
                        failures.push(format!("{name} ({path}): wrong plaintext"));
                    }
                }
                (Ok(_), _) => failures.push(format!("{name} ({path}): opened, expected {expect}")),
                (Err(e), _) => {
                    let got = code(e);
                    if got != expect {
                        failures.push(format!("{name} ({path}): {got}, expected {expect}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[wasm_bindgen_test]
fn damaged_inputs_give_coded_errors_and_never_trap() {
    let pw = || (Some("vector passphrase".to_string()), None);
    // Every truncation and a spread of bit flips of a multi-segment file (header bytes all flipped).
    let base = vector("passphrase_multi_segment.cfs");
    let header_len = 200.min(base.len());
    for cut in (0..base.len()).step_by(211).chain(0..header_len) {
        let e = open_wasm(&base[..cut], pw(), 4096).expect_err("a truncated file opened");
        assert!(["TRUNCATED", "CORRUPT", "NOT_A_BUNDLE"].contains(&code(e).as_str()), "cut at {cut}");
        let e = open_framed(&base[..cut], pw(), 4096).expect_err("a truncated file opened (framed)");
        assert!(["TRUNCATED", "CORRUPT", "NOT_A_BUNDLE"].contains(&code(e).as_str()), "cut at {cut}");
    }
    for at in (0..base.len()).step_by(1009).chain(0..header_len) {
        let mut bad = base.to_vec();
        bad[at] ^= 0x20;
        for result in [open_wasm(&bad, pw(), 5000), open_framed(&bad, pw(), 5000)] {
            let e = result.expect_err("a damaged file opened");
            assert_ne!(code(e), "INVALID_INPUT", "flip at {at}");
        }
        let _ = wasm::inspect(&bad);
    }
    // A flip at every position of a plain bundle, through every bundle reader:
    // either an error, or (a bit zstd ignores) exactly the same content.
    let bundle = vector("plain_bundle.cfb");
    let content = wasm::unbundle(bundle).unwrap();
    for at in 0..bundle.len() {
        let mut bad = bundle.to_vec();
        bad[at] ^= 0x04;
        for result in [wasm::digest(&bad).map(drop), wasm::read_collection(&bad, "docs").map(drop), wasm::inspect(&bad).map(drop)] {
            if let Err(e) = result {
                code(e);
            }
        }
        match wasm::unbundle(&bad) {
            Ok(text) => assert_eq!(text, content, "flip at {at} changed the content unnoticed"),
            Err(e) => drop(code(e)),
        }
    }
    for cut in 0..bundle.len() {
        let e = wasm::digest(&bundle[..cut]).expect_err("a truncated bundle was accepted");
        code(e);
        let _ = wasm::inspect(&bundle[..cut]);
        let _ = wasm::read_collection(&bundle[..cut], "docs");
    }
}

#[wasm_bindgen_test]
fn wasm_and_framed_sealing_interoperate() {
    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for len in [0, 1, 15, 17, 64, 65, 100, 16_383, 16_384, 16_385, 32_768, 70_000] {
        let data = &data[..len];
        let mut sealer = Sealer::new(Some("pw".into()), vec![], FAST_KDF).unwrap();
        let mut sealed = sealer.push(&data[..len / 2]).unwrap();
        sealed.extend(sealer.push(&data[len / 2..]).unwrap());
        sealed.extend(sealer.finish().unwrap());
        let framed = seal_framed(data, "pw", FAST_KDF, 5000);
        assert_eq!(sealed.len(), framed.len(), "same layout for {len} bytes");
        let key = || (Some("pw".to_string()), None);
        assert_eq!(open_framed(&sealed, key(), 3000).unwrap(), data);
        assert_eq!(open_wasm(&framed, key(), 3000).unwrap(), data);
        assert_eq!(open_wasm(&sealed, key(), 999_999).unwrap(), data);
    }
}

/// The one-shot path of sealSync/openSync: output buffered in wasm, copied
/// into the caller's array, at the size `outputLength` announces.
#[wasm_bindgen_test]
fn buffered_output_is_copied_into_one_array() {
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let mut sealer = Sealer::new(Some("pw".into()), vec![], FAST_KDF).unwrap();
    let target = js_sys::Uint8Array::new_with_length(sealer.output_length(data.len() as f64) as u32);
    let mut at = 0;
    for piece in data.chunks(7_000) {
        let n = sealer.push_buffered(piece).unwrap();
        sealer.copy_to(&target, at).unwrap();
        at += n;
    }
    let n = sealer.finish_buffered().unwrap();
    sealer.copy_to(&target, at).unwrap();
    assert_eq!(at + n, target.length(), "outputLength is the sealed size");
    let sealed = target.to_vec();
    let key = || (Some("pw".to_string()), None);
    assert_eq!(open_framed(&sealed, key(), 4096).unwrap(), data);

    let mut opener = Opener::new(Some("pw".into()), None).unwrap();
    assert_eq!(opener.output_length(sealed.len() as f64), 0.0, "unknown before the header");
    let n = opener.push_buffered(&sealed).unwrap();
    assert_eq!(opener.output_length(sealed.len() as f64), data.len() as f64);
    let small = js_sys::Uint8Array::new_with_length(n - 1);
    assert_eq!(code(opener.copy_to(&small, 0).unwrap_err()), "INVALID_INPUT");
    let mut opened = opener.take();
    opener.finish_buffered().unwrap();
    opened.extend(opener.take());
    assert_eq!(opened, data);
}

#[wasm_bindgen_test]
fn identities_and_key_errors() {
    let generated = wasm::generate_identity().unwrap();
    let identity = js_sys::Reflect::get(&generated, &"identity".into()).unwrap().as_string().unwrap();
    let public = js_sys::Reflect::get(&generated, &"publicKey".into()).unwrap().as_string().unwrap();
    assert!(identity.starts_with("COFFER-SECRET-KEY-1"));
    assert_eq!(wasm::public_key(identity.clone()).unwrap(), public);
    let mut sealer = Sealer::new(None, vec![public.clone()], "{}").unwrap();
    let mut sealed = sealer.push(b"to a key").unwrap();
    sealed.extend(sealer.finish().unwrap());
    assert_eq!(open_wasm(&sealed, (None, Some(identity)), 10).unwrap(), b"to a key");
    let other = js_sys::Reflect::get(&wasm::generate_identity().unwrap(), &"identity".into()).unwrap().as_string().unwrap();
    assert_eq!(code(open_wasm(&sealed, (None, Some(other)), 10).unwrap_err()), "WRONG_KEY");
    assert_eq!(code(open_wasm(&sealed, (Some("pw".into()), None), 10).unwrap_err()), "WRONG_KEY");

    assert_eq!(code(Sealer::new(None, vec!["coffer1nope".into()], "{}").err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(Sealer::new(None, vec![], "{}").err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(Sealer::new(Some(String::new()), vec![], "{}").err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(Sealer::new(Some("pw".into()), vec![public], "{}").err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(Sealer::new(Some("pw".into()), vec![], r#"{"segmentSize":1000}"#).err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(Sealer::new(Some("pw".into()), vec![], r#"{"unknown":1}"#).err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(Opener::new(None, Some("AGE-SECRET-KEY-1XYZ".into())).err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(Opener::new(None, None).err().unwrap()), "INVALID_INPUT");
    assert_eq!(code(wasm::public_key("nope".into()).unwrap_err()), "INVALID_INPUT");
    // A finished object refuses more work with an error, not a trap.
    let mut sealer = Sealer::new(Some("pw".into()), vec![], FAST_KDF).unwrap();
    sealer.finish().unwrap();
    assert_eq!(code(sealer.push(b"x").unwrap_err()), "INVALID_INPUT");
    assert_eq!(code(sealer.finish().unwrap_err()), "INVALID_INPUT");
}

#[wasm_bindgen_test]
fn metadata_shows_in_inspect() {
    let options = r#"{"metadata":{"backup":"nightly","n":3},"kdf":{"memoryKib":256,"iterations":1,"parallelism":1}}"#;
    let mut sealer = Sealer::new(Some("pw".into()), vec![], options).unwrap();
    let sealed = [sealer.push(b"x").unwrap(), sealer.finish().unwrap()].concat();
    let info: Value = serde_json::from_str(&wasm::inspect(&sealed).unwrap()).unwrap();
    assert_eq!(info["format"], "coffer-sealed");
    assert_eq!(info["metadata"], json!({"backup": "nightly", "n": 3}));
    // The raw layer gives exactly `coffer inspect --json` (the JS layer renames to camelCase).
    assert_eq!(info["recipients"][0], json!({"kind": "passphrase", "kdf": {"memory_kib": 256, "iterations": 1, "parallelism": 1}}));
    assert_eq!(info["segment_size"], 1 << 20);
    assert_eq!(code(wasm::inspect(&sealed[..20]).unwrap_err()), "TRUNCATED");
    assert_eq!(code(wasm::inspect(b"PK\x03\x04 hello").unwrap_err()), "NOT_A_BUNDLE");
}

fn build(collections: &[(&str, &str, &[&str])], schema: &str, history: &str) -> Result<Vec<u8>, JsValue> {
    let mut builder = BundleBuilder::new();
    for (name, config, docs) in collections {
        builder.collection(name, config)?;
        for batch in docs.chunks(2) {
            builder.documents(&batch.join("\n"))?;
        }
    }
    builder.finish(schema, history)
}

#[wasm_bindgen_test]
fn bundles_round_trip_through_js_shapes() {
    let docs: &[&str] = &[r#"{"id":"b","v":[1,2.5]}"#, r#"{"id":"a","text":"é\n"}"#, r#"{"no":"id"}"#, r#"{"id":"a","text":"é\n"}"#, r#"7"#];
    let history = r#"{"commits":[{"id":"c2","parents":["c1"]},{"id":"c1","author":"x","timestamp":5}],"branches":{"main":"c2"}}"#;
    let bytes = build(&[("zeta", "{}", &[]), ("docs", r#"{"dim":3}"#, docs)], r#"{"s":1}"#, history).unwrap();
    let again = build(&[("docs", r#"{"dim":3.0}"#, &[docs[4], docs[2], docs[1], docs[0]]), ("zeta", "null", &[])], r#"{"s":1.0}"#, history).unwrap();
    assert_eq!(bytes, again, "order of collections and documents, duplicates and number forms do not change the bytes");

    let snapshot: Value = serde_json::from_str(&wasm::unbundle(&bytes).unwrap()).unwrap();
    assert_eq!(snapshot["schema"], json!({"s": 1}));
    assert_eq!(snapshot["collections"]["docs"]["config"], json!({"dim": 3}));
    let documents = snapshot["collections"]["docs"]["documents"].as_array().unwrap();
    assert_eq!(documents.len(), 4);
    assert_eq!(documents.iter().filter(|d| d.get("id").is_some()).count(), 2);
    assert_eq!(snapshot["collections"]["zeta"]["documents"], json!([]));
    assert_eq!(snapshot["history"]["commits"][0]["id"], "c1");
    assert_eq!(snapshot["history"]["branches"], json!({"main": "c2"}));

    // unbundle → bundle gives the same bytes (a number document keeps its content id).
    let docs_back: Vec<String> = documents.iter().map(Value::to_string).collect();
    let docs_back: Vec<&str> = docs_back.iter().map(String::as_str).collect();
    let rebuilt =
        build(&[("docs", r#"{"dim":3}"#, &docs_back), ("zeta", "{}", &[])], &snapshot["schema"].to_string(), &snapshot["history"].to_string()).unwrap();
    assert_eq!(rebuilt, bytes);

    let collection: Value = serde_json::from_str(&wasm::read_collection(&bytes, "docs").unwrap()).unwrap();
    assert_eq!(collection["documents"].as_array().unwrap().len(), 4);
    assert_eq!(collection["name"], "docs");
    let ndjson = wasm::export_collection(&bytes, "docs").unwrap();
    assert_eq!(ndjson.iter().filter(|&&b| b == b'\n').count(), 4);
    assert_eq!(code(wasm::read_collection(&bytes, "nope").unwrap_err()), "INVALID_INPUT");
    let info: Value = serde_json::from_str(&wasm::inspect(&bytes).unwrap()).unwrap();
    assert_eq!(info["toc"]["digest"], wasm::digest(&bytes).unwrap());
    assert_eq!(info["toc"]["collections"][0]["name"], "docs");
}

#[wasm_bindgen_test]
fn bad_snapshots_are_invalid_input() {
    let conflict: &[&str] = &[r#"{"id":"a","v":1}"#, r#"{"id":"a","v":2}"#];
    let cases: Vec<Result<Vec<u8>, JsValue>> = vec![
        build(&[("docs", "{}", conflict)], "null", "{}"),
        build(&[("../x", "{}", &[])], "null", "{}"),
        build(&[("schema", "{}", &[])], "null", "{}"),
        build(&[("docs", "[1]", &[])], "null", "{}"),
        build(&[("docs", "{}", &["{not json"])], "null", "{}"),
        build(&[("docs", "{}", &[r#"{"id":[1]}"#])], "null", "{}"),
        build(&[], "null", r#"{"commits":[{"id":"a","parents":["zz"]}]}"#),
        build(&[], "null", r#"{"branches":{"main":"nowhere"}}"#),
        build(&[], "null", r#"{"commits":"no"}"#),
    ];
    for (i, result) in cases.into_iter().enumerate() {
        assert_eq!(code(result.err().unwrap_or_else(|| panic!("case {i} was accepted"))), "INVALID_INPUT", "case {i}");
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert_eq!(code(build(&[("docs", "{}", &[deep.as_str()])], "null", "{}").unwrap_err()), "LIMIT_EXCEEDED");
    let mut builder = BundleBuilder::new();
    assert_eq!(code(builder.documents("{}").unwrap_err()), "INVALID_INPUT");
    builder.collection("a", "{}").unwrap();
    assert_eq!(code(builder.collection("a", "{}").unwrap_err()), "INVALID_INPUT");
}

#[wasm_bindgen_test]
fn error_codes_are_the_cores() {
    assert_eq!(wasm::error_codes(), coffer::Error::CODES);
}
