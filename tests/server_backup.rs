//! The backup & restore engine over real HTTP: the full cycle, writes during
//! a backup, import, links, verify, and bad input.
#![cfg(feature = "server")]

mod server_support;

use std::collections::BTreeMap;

use coffer::bundle::{self, BundleReader, ReadLimits};
use coffer::seal;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server_support::*;

const PASS: &str = "lantern-orbit-cactus-47-marmalade";

async fn backup(s: &TestServer, body: Value) -> Value {
    let rec = s.call(s.req(Method::POST, "/api/v1/backups").json(&body), StatusCode::ACCEPTED).await;
    assert_eq!(rec["status"], "scheduled");
    let done = s.wait_backup(rec["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    done
}

async fn content(s: &TestServer, id: &str) -> Vec<u8> {
    let resp = s.req(Method::GET, &format!("/api/v1/backups/{id}/content")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename="));
    resp.bytes().await.unwrap().to_vec()
}

fn by_id(docs: &[Value]) -> BTreeMap<String, Value> {
    docs.iter().map(|d| (coffer::snapshot::document_id(d).unwrap(), d.clone())).collect()
}

async fn commit_ids(s: &TestServer, db: &str) -> Vec<String> {
    let c = s.call(s.req(Method::GET, &format!("/api/v1/databases/{db}/commits?limit=10000")), StatusCode::OK).await;
    c["commits"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cycle_backup_download_restore() {
    let s = TestServer::start().await;
    create_db(&s, "acme", "shop").await;
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/schema").json(&json!({"version": 2})), StatusCode::OK).await;
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/collections/items").json(&json!({"dimension": 3, "metric": "cosine"})), StatusCode::OK).await;
    let items: Vec<Value> = (0..300).map(|i| json!({"id": format!("item-{i:04}"), "price": i, "tags": ["a", i % 7]})).collect();
    insert(&s, "acme", "shop", "items", Value::Array(items[..150].to_vec())).await;
    insert(&s, "acme", "shop", "items", Value::Array(items[150..].to_vec())).await;
    insert(&s, "acme", "shop", "users", json!([{"id": "u1", "name": "Ann"}, {"id": "u2", "name": "Bo"}])).await;
    s.call(s.req(Method::DELETE, "/api/v1/databases/acme/shop/collections/items/documents/item-0007"), StatusCode::OK).await;
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/collections/users/documents/u1").json(&json!({"id": "u1", "name": "Anne"})), StatusCode::OK).await;
    s.call(s.req(Method::POST, "/api/v1/databases/acme/shop/branches/dev"), StatusCode::CREATED).await;
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/collections/users/documents/u3?branch=dev").json(&json!({"name": "Cy"})), StatusCode::OK).await;

    let weak = s
        .call(s.req(Method::POST, "/api/v1/backups").json(&json!({"databases": ["acme/shop"], "passphrase": "password123"})), StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    assert_eq!(weak["code"], "WEAK_PASSPHRASE");
    let both = s
        .call(s.req(Method::POST, "/api/v1/backups").json(&json!({"databases": ["acme/shop"], "include": ["a"], "exclude": ["b"]})), StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(both["code"], "INVALID_INPUT");

    let rec = backup(&s, json!({"id": "nightly-1", "databases": ["acme/shop"], "passphrase": PASS})).await;
    assert_eq!(rec["id"], "nightly-1");
    assert_eq!(rec["encryption"], "passphrase");
    assert_eq!(rec["org"], "acme");
    assert_eq!(rec["method"], "manual");
    assert_eq!(rec["created_by"]["name"], "admin");
    assert_eq!(rec["progress"]["documents_done"], 301);
    assert_eq!(rec["progress"]["documents_total"], 301);
    // Complete: nothing of it is left among the temporaries.
    let backups = s.dir.path().join("backups");
    assert!(backups.join("nightly-1").join("manifest.json").exists());
    assert!(!backups.join("tmp").join("nightly-1").exists(), "the write's temporary directory is removed");
    let size = rec["size"].as_u64().unwrap();
    s.call(s.req(Method::POST, "/api/v1/backups").json(&json!({"id": "nightly-1", "databases": ["acme/shop"], "encryption": "none"})), StatusCode::CONFLICT)
        .await;

    // Download and open it with the core.
    let bytes = content(&s, "nightly-1").await;
    assert_eq!(bytes.len() as u64, size);
    let keys = [seal::Key::passphrase(PASS)];
    let plain = seal::open_to_vec(&bytes, &keys, &seal::OpenLimits::default()).unwrap();
    let toc = BundleReader::new(&plain[..], ReadLimits::default()).unwrap().read_to_end().unwrap();
    assert_eq!(rec["digest"], toc.digest.as_str());
    let snap = bundle::from_slice(&plain).unwrap();
    assert_eq!(snap.schema, json!({"version": 2}));
    assert_eq!(snap.collections["items"].config, json!({"dimension": 3, "metric": "cosine"}).as_object().unwrap().clone());
    let items_now = by_id(&all_documents(&s, "acme", "shop", "items").await);
    assert_eq!(items_now.len(), 299);
    assert_eq!(snap.collections["items"].documents, items_now);
    assert_eq!(snap.collections["users"].documents, by_id(&all_documents(&s, "acme", "shop", "users").await));
    let history = commit_ids(&s, "acme/shop").await;
    assert_eq!(snap.history.commits.len(), history.len() + 1, "main's commits plus the one on dev");
    assert_eq!(snap.history.branches["main"], history[0]);
    assert!(snap.history.branches.contains_key("dev"));

    // Restore into a new database.
    let wrong = s
        .call(
            s.req(Method::POST, "/api/v1/backups/nightly-1/restore").json(&json!({"target": "acme/copy", "passphrase": "not-the-right-one-at-all-42"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(wrong["code"], "WRONG_KEY");
    let missing =
        s.call(s.req(Method::POST, "/api/v1/backups/nightly-1/restore").json(&json!({"target": "acme/copy"})), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(missing["code"], "WRONG_KEY");
    let r =
        s.call(s.req(Method::POST, "/api/v1/backups/nightly-1/restore").json(&json!({"target": "acme/copy", "passphrase": PASS})), StatusCode::ACCEPTED).await;
    let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["records"], 301);
    assert_eq!(r["failed"], 0);
    assert_eq!(by_id(&all_documents(&s, "acme", "copy", "items").await), items_now);
    assert_eq!(all_documents(&s, "acme", "copy", "users").await, all_documents(&s, "acme", "shop", "users").await);
    assert_eq!(commit_ids(&s, "acme/copy").await, history);
    assert_eq!(s.call(s.req(Method::GET, "/api/v1/databases/acme/copy/schema"), StatusCode::OK).await, json!({"version": 2}));
    let cols = s.call(s.req(Method::GET, "/api/v1/databases/acme/copy/collections/items"), StatusCode::OK).await;
    assert_eq!(cols["config"], json!({"dimension": 3, "metric": "cosine"}));
    let dev = s.call(s.req(Method::GET, "/api/v1/databases/acme/copy/collections/users/documents?branch=dev"), StatusCode::OK).await;
    assert_eq!(dev["documents"].as_array().unwrap().len(), 3, "the dev branch is rebuilt from history");

    // Into the source: refused unless overwrite; include restricts.
    let conflict = s.call(s.req(Method::POST, "/api/v1/backups/nightly-1/restore").json(&json!({"passphrase": PASS})), StatusCode::CONFLICT).await;
    assert_eq!(conflict["code"], "CONFLICT");
    s.call(s.req(Method::DELETE, "/api/v1/databases/acme/shop/collections/users/documents/u2"), StatusCode::OK).await;
    let r = s
        .call(
            s.req(Method::POST, "/api/v1/backups/nightly-1/restore").json(&json!({"passphrase": PASS, "include": ["users"], "overwrite": true})),
            StatusCode::ACCEPTED,
        )
        .await;
    let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["records"], 2);
    assert_eq!(r["collections"], json!(["users"]));
    assert_eq!(all_documents(&s, "acme", "shop", "users").await.len(), 2);
    assert_eq!(all_documents(&s, "acme", "shop", "items").await.len(), 299);

    // Verify, signed link, listing, delete.
    let v = s.call(s.req(Method::POST, "/api/v1/backups/nightly-1/verify").json(&json!({"passphrase": PASS})), StatusCode::OK).await;
    assert_eq!(v["ok"], true);
    let link = s.call(s.req(Method::POST, "/api/v1/backups/nightly-1/link").json(&json!({"expires_in": 60})), StatusCode::OK).await;
    let url = link["url"].as_str().unwrap();
    let resp = s.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes);
    let tampered = url.replace("sig=", "sig=0");
    assert_eq!(s.client.get(tampered).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let list = s.call(s.req(Method::GET, "/api/v1/backups?org=acme&status=done&database=acme/shop"), StatusCode::OK).await;
    assert_eq!(list["backups"][0]["id"], "nightly-1");
    let list = s.call(s.req(Method::GET, "/api/v1/backups?status=error"), StatusCode::OK).await;
    assert_eq!(list["total"], 0);
    s.call(s.req(Method::DELETE, "/api/v1/backups/nightly-1"), StatusCode::NO_CONTENT).await;
    s.call(s.req(Method::GET, "/api/v1/backups/nightly-1"), StatusCode::NOT_FOUND).await;
    assert_eq!(s.client.get(url).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A server-key backup (the default) restores without any passphrase.
    let rec = backup(&s, json!({"databases": ["acme/shop"], "exclude": ["items"]})).await;
    assert_eq!(rec["encryption"], "recipients");
    let r = s
        .call(
            s.req(Method::POST, &format!("/api/v1/backups/{}/restore", rec["id"].as_str().unwrap())).json(&json!({"target": "acme/users-only"})),
            StatusCode::ACCEPTED,
        )
        .await;
    let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
    assert_eq!(r["status"], "done", "{r}");
    let cols = s.call(s.req(Method::GET, "/api/v1/databases/acme/users-only/collections"), StatusCode::OK).await;
    assert_eq!(cols["collections"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_continue_during_a_backup_which_is_one_commit() {
    // A slow backup (20 kB/s), so that many writes land while it runs.
    let s = TestServer::start_with(|c| c.backup_rate_limit = 20_000).await;
    create_db(&s, "acme", "live").await;
    let docs: Vec<Value> = (0..2000).map(|i| json!({"id": format!("d{i:05}"), "text": format!("{i} {}", "lorem ipsum ".repeat(8)), "n": i})).collect();
    for chunk in docs.chunks(500) {
        insert(&s, "acme", "live", "docs", Value::Array(chunk.to_vec())).await;
    }
    let rec = s.call(s.req(Method::POST, "/api/v1/backups").json(&json!({"databases": ["acme/live"], "encryption": "none"})), StatusCode::ACCEPTED).await;
    let id = rec["id"].as_str().unwrap().to_string();
    // Write one document per commit until the backup is over; each write must succeed.
    let mut written = Vec::new();
    let mut during = 0;
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let rec = s.call(s.req(Method::GET, &format!("/api/v1/backups/{id}")), StatusCode::OK).await;
        let status = rec["status"].as_str().unwrap().to_string();
        if status == "done" || status == "error" {
            assert_eq!(status, "done", "{rec}");
            break;
        }
        if status == "running" {
            during += 1;
        }
        let n = written.len();
        let commit = insert(&s, "acme", "live", "docs", json!([{"id": format!("w{n:05}"), "n": n}])).await;
        written.push(commit);
        // Reads keep working too.
        s.call(s.req(Method::GET, "/api/v1/databases/acme/live/collections/docs/documents/d00001"), StatusCode::OK).await;
        assert!(std::time::Instant::now() < deadline, "backup did not finish");
    }
    assert!(during > 3, "the backup should have been running while we wrote ({during})");
    let bytes = content(&s, &id).await;
    eprintln!("backup of {} bytes, {during} polls while running, {} writes", bytes.len(), written.len());
    let snap = bundle::from_slice(&bytes).unwrap();
    let head = &snap.history.branches["main"];
    // The writes whose commits are at or before the head are in; none after.
    let history = commit_ids(&s, "acme/live").await; // newest first
    let pos = history.iter().position(|c| c == head).expect("the backup's head is a commit of main");
    assert!(pos > 0, "writes went on after the snapshot");
    let included: usize = written.iter().filter(|c| history[pos..].contains(c)).count();
    let docs = &snap.collections["docs"].documents;
    assert_eq!(docs.len(), 2000 + included);
    for n in 0..written.len() {
        assert_eq!(docs.contains_key(&format!("w{n:05}")), n < included, "w{n:05}");
    }
    assert_eq!(snap.history.commits.len(), history.len() - pos);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_validated_before_they_are_listed() {
    let s = TestServer::start_with(|c| c.max_upload = 1 << 20).await;
    create_db(&s, "acme", "x").await;
    let mut snap = coffer::Snapshot { schema: json!({"s": 1}), ..Default::default() };
    let mut col = coffer::Collection::default();
    for i in 0..50 {
        col.documents.insert(format!("k{i:03}"), json!({"i": i, "pad": "z".repeat(200)}));
    }
    snap.collections.insert("things".into(), col);
    snap.history.commits.push(coffer::Commit {
        id: "c1".into(),
        parents: vec![],
        author: "browser".into(),
        message: "m".into(),
        timestamp: 1,
        changes: vec![],
    });
    snap.history.branches.insert("main".into(), "c1".into());
    let plain = bundle::to_vec(&snap).unwrap();
    let sealed = seal::seal_to_vec(&plain, &[seal::Recipient::passphrase(PASS)], &seal::SealOptions::default()).unwrap();

    let import = |body: Vec<u8>, id: &str| s.req(Method::POST, &format!("/api/v1/backups/import?database=acme/x&id={id}")).body(body);
    // Garbage, corrupt, truncated, too large: refused, never listed.
    let e = s.call(import(b"hello, not a bundle".to_vec(), "bad-1"), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["code"], "NOT_A_BUNDLE");
    let mut corrupt = plain.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x40;
    let e = s.call(import(corrupt, "bad-2"), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["code"] == "CORRUPT" || e["code"] == "TRUNCATED", "{e}");
    let e = s.call(import(plain[..plain.len() - 20].to_vec(), "bad-3"), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(e["code"] == "TRUNCATED" || e["code"] == "CORRUPT", "{e}");
    let mut sealed_bad = sealed.clone();
    let n = sealed_bad.len();
    sealed_bad[n - 30] ^= 1;
    let e = s.call(import(sealed_bad, "bad-4").header("x-coffer-passphrase", PASS), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(e["code"], "CORRUPT");
    // The server may answer 413 and close before it has read the whole body;
    // the client then sees either the 413 or a broken pipe. Never a listing.
    match import(vec![0u8; 2 << 20], "bad-5").send().await {
        Ok(resp) => {
            assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
            let e: Value = resp.json().await.unwrap();
            assert_eq!(e["code"], "PAYLOAD_TOO_LARGE");
        }
        Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
    }
    let list = s.call(s.req(Method::GET, "/api/v1/backups"), StatusCode::OK).await;
    assert_eq!(list["total"], 0);
    let leftovers: Vec<_> = walk(&s.dir.path().join("backups"));
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A good sealed bundle, checked with its passphrase, then restored.
    let rec = s.call(import(sealed.clone(), "from-browser").header("x-coffer-passphrase", PASS), StatusCode::CREATED).await;
    assert_eq!(rec["status"], "done");
    assert_eq!(rec["encryption"], "passphrase");
    assert_eq!(rec["digest"], BundleReader::new(&plain[..], ReadLimits::default()).unwrap().read_to_end().unwrap().digest.as_str());
    s.call(import(sealed, "from-browser"), StatusCode::CONFLICT).await;
    let r = s
        .call(s.req(Method::POST, "/api/v1/backups/from-browser/restore").json(&json!({"target": "acme/imported", "passphrase": PASS})), StatusCode::ACCEPTED)
        .await;
    let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!(r["records"], 50);
    assert_eq!(all_documents(&s, "acme", "imported", "things").await.len(), 50);
    assert_eq!(commit_ids(&s, "acme/imported").await, vec!["c1".to_string()]);
    // A plain bundle is fully checked without any key.
    let rec = s.call(import(plain, "plain-1"), StatusCode::CREATED).await;
    assert_eq!(rec["encryption"], "none");
    s.call(s.req(Method::POST, "/api/v1/backups/plain-1/verify"), StatusCode::OK).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_backups_run_by_themselves() {
    let s = TestServer::start_with(|c| {
        c.periodic = vec![coffer::server::Periodic { databases: vec!["acme/p".into()], every_seconds: 1, encryption: None, include: None, exclude: None }];
    })
    .await;
    create_db(&s, "acme", "p").await;
    insert(&s, "acme", "p", "c", json!([{"id": "1"}])).await;
    let deadline = std::time::Instant::now() + DEADLINE;
    let rec = loop {
        let list = s.call(s.req(Method::GET, "/api/v1/backups?org=acme&status=done"), StatusCode::OK).await;
        if let Some(rec) = list["backups"].as_array().unwrap().first() {
            break rec.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no periodic backup ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(rec["method"], "periodic");
    assert_eq!(rec["encryption"], "recipients");
    assert_eq!(rec["databases"], json!(["acme/p"]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_leaves_the_target_as_it_was() {
    let s = TestServer::start().await;
    create_db(&s, "acme", "t").await;
    let docs: Vec<Value> = (0..3000).map(|i| json!({"id": format!("d{i:05}"), "v": format!("{:x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))})).collect();
    insert(&s, "acme", "t", "c", Value::Array(docs)).await;
    backup(&s, json!({"id": "b", "databases": ["acme/t"], "encryption": "none"})).await;
    s.call(s.req(Method::DELETE, "/api/v1/databases/acme/t/collections/c/documents/d00001"), StatusCode::OK).await;
    let before_docs = all_documents(&s, "acme", "t", "c").await;
    let before_commits = commit_ids(&s, "acme/t").await;
    // Damage the stored file in its document blocks.
    let path = s.dir.path().join("backups").join("b").join("acme.t.coffer");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let r = s.call(s.req(Method::POST, "/api/v1/backups/b/restore").json(&json!({"overwrite": true})), StatusCode::ACCEPTED).await;
    let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
    assert_eq!(r["status"], "error", "{r}");
    assert!(r["error"].as_str().unwrap().starts_with("CORRUPT") || r["error"].as_str().unwrap().starts_with("TRUNCATED"), "{r}");
    assert_eq!(r["records"], 0);
    assert_eq!(all_documents(&s, "acme", "t", "c").await, before_docs);
    assert_eq!(commit_ids(&s, "acme/t").await, before_commits);
    assert_eq!(staged_rows(&s), 0, "the staged rows are dropped");
    let v = s.call(s.req(Method::POST, "/api/v1/backups/b/verify"), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(v["code"], "CORRUPT");
    s.stop().await;
}

/// Rows of the hidden databases restores stage into (none once a restore is over).
fn staged_rows(s: &TestServer) -> i64 {
    let conn = rusqlite::Connection::open(s.dir.path().join("coffer.sqlite")).unwrap();
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM databases WHERE org = '.restore') + (SELECT COUNT(*) FROM documents WHERE db NOT IN (SELECT id FROM databases))",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_to_other_databases_go_on_during_a_large_restore() {
    let s = TestServer::start().await;
    create_db(&s, "acme", "big").await;
    create_db(&s, "acme", "other").await;
    let text = "lorem ipsum dolor sit amet ".repeat(40);
    for batch in 0..12 {
        let docs: Vec<Value> = (0..2000).map(|i| json!({"id": format!("d{batch:02}-{i:05}"), "n": i, "text": format!("{batch} {i} {text}")})).collect();
        insert(&s, "acme", "big", "docs", Value::Array(docs)).await;
    }
    backup(&s, json!({"id": "big", "databases": ["acme/big"], "encryption": "none"})).await;
    let r = s.call(s.req(Method::POST, "/api/v1/backups/big/restore").json(&json!({"target": "acme/copy"})), StatusCode::ACCEPTED).await;
    let path = format!("/api/v1/restores/{}", r["id"].as_str().unwrap());
    // One write per commit to another database while the restore runs: each
    // completes promptly, with the restore still running (a restore holding
    // the writer lock throughout would let none through before its end).
    let mut while_running = 0;
    let mut slowest = std::time::Duration::ZERO;
    let mut n = 0;
    let rec = loop {
        let rec = s.call(s.req(Method::GET, &path), StatusCode::OK).await;
        let status = rec["status"].as_str().unwrap();
        if status == "done" || status == "error" {
            break rec;
        }
        let started = std::time::Instant::now();
        s.call(s.req(Method::PUT, &format!("/api/v1/databases/acme/other/collections/w/documents/w{n}")).json(&json!({"n": n})), StatusCode::OK).await;
        let took = started.elapsed();
        n += 1;
        let after = s.call(s.req(Method::GET, &path), StatusCode::OK).await;
        if status == "running" && after["status"] == "running" {
            while_running += 1;
            slowest = slowest.max(took);
        }
    };
    assert_eq!(rec["status"], "done", "{rec}");
    assert_eq!(rec["records"], 24000);
    eprintln!("{n} writes during the restore, {while_running} while it ran, slowest {slowest:?}");
    assert!(while_running >= 3, "writes to another database should complete while the restore runs ({while_running} of {n})");
    assert!(slowest < std::time::Duration::from_secs(2), "a write waited {slowest:?} during a restore");
    assert_eq!(all_documents(&s, "acme", "other", "w").await.len(), n);
    assert_eq!(all_documents(&s, "acme", "copy", "docs").await, all_documents(&s, "acme", "big", "docs").await);
    assert_eq!(commit_ids(&s, "acme/copy").await, commit_ids(&s, "acme/big").await);
    assert_eq!(staged_rows(&s), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_failing_at_the_end_leaves_no_trace() {
    let s = TestServer::start().await;
    create_db(&s, "acme", "t").await;
    let noise =
        |i: u64| (1..24u64).map(|k| format!("{:016x}", i.wrapping_add(k).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(k as u32))).collect::<String>();
    let docs: Vec<Value> = (0..3000).map(|i| json!({"id": format!("d{i:05}"), "v": noise(i)})).collect();
    insert(&s, "acme", "t", "c", Value::Array(docs)).await;
    backup(&s, json!({"id": "b", "databases": ["acme/t"], "encryption": "none"})).await;
    // Damage the trailer's bytes hash (the 32 bytes after toc_offset, before
    // the end magic), which is checked last: every document is read and
    // staged before the restore fails. (Not a byte at 3/4 of the file: with
    // each document stored once, that lands among the documents.)
    let path = s.dir.path().join("backups").join("b").join("acme.t.coffer");
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[bytes.len() - 8..], b"CFB-END\n", "a backup without encryption is a plain bundle");
    let at = bytes.len() - 40;
    bytes[at] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    for target in ["acme/fresh", "acme/t"] {
        let r = s.call(s.req(Method::POST, "/api/v1/backups/b/restore").json(&json!({"target": target, "overwrite": true})), StatusCode::ACCEPTED).await;
        let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
        assert_eq!(r["status"], "error", "{r}");
        assert!(r["error"].as_str().unwrap().starts_with("CORRUPT"), "{r}");
        assert_eq!(r["failed"], 3000, "every document was read before the end failed: {r}");
    }
    s.call(s.req(Method::GET, "/api/v1/databases/acme/fresh"), StatusCode::NOT_FOUND).await;
    assert_eq!(all_documents(&s, "acme", "t", "c").await.len(), 3000);
    assert_eq!(commit_ids(&s, "acme/t").await.len(), 1);
    assert_eq!(staged_rows(&s), 0);
    s.stop().await;
}

/// A pseudo-random hex pad (compresses about 2:1, as real documents do at best).
fn pad(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            char::from_digit(((x >> 33) & 15) as u32, 16).unwrap()
        })
        .collect()
}

/// The canonical JSON text of a document.
fn canonical(doc: &Value) -> String {
    String::from_utf8(coffer::canonical::to_vec(doc).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holds_each_document_once_and_restores_the_same_history() {
    use coffer::bundle::Item;
    use coffer::snapshot::Change;
    let s = TestServer::start().await;
    create_db(&s, "acme", "hist").await;
    let doc = |id: &str, n: u64| json!({"id": id, "n": n, "pad": pad(n * 1000 + id.as_bytes()[0] as u64, 3000)});
    let first: Vec<Value> = ('a'..='j').map(|c| doc(&c.to_string(), 1)).collect();
    let second: Vec<Value> = ('k'..='t').map(|c| doc(&c.to_string(), 1)).collect();
    insert(&s, "acme", "hist", "items", Value::Array(first.clone())).await;
    insert(&s, "acme", "hist", "items", Value::Array(second.clone())).await;
    let put = |id: &str, body: &Value, branch: &str| {
        s.req(Method::PUT, &format!("/api/v1/databases/acme/hist/collections/items/documents/{id}?branch={branch}")).json(body)
    };
    s.call(put("a", &doc("a", 2), "main"), StatusCode::OK).await; // updated: the first put of a is history
    s.call(s.req(Method::DELETE, "/api/v1/databases/acme/hist/collections/items/documents/b"), StatusCode::OK).await;
    s.call(put("c", &first[2], "main"), StatusCode::OK).await; // the same bytes again
    s.call(s.req(Method::POST, "/api/v1/databases/acme/hist/branches/dev"), StatusCode::CREATED).await;
    s.call(put("d", &doc("d", 3), "dev"), StatusCode::OK).await; // another d on dev only
    s.call(put("u", &doc("u", 1), "dev"), StatusCode::OK).await; // not on main at all

    backup(&s, json!({"id": "h", "databases": ["acme/hist"], "encryption": "none"})).await;
    let bytes = content(&s, "h").await;
    let mut reader = BundleReader::new(&bytes[..], ReadLimits::default()).unwrap();
    reader.keep_changes_text(true);
    let mut main: BTreeMap<String, String> = BTreeMap::new();
    let (mut inline, mut omitted, mut change_bytes) = (Vec::new(), Vec::new(), 0);
    while let Some(item) = reader.next_item().unwrap() {
        match item {
            Item::Document(d) => {
                main.insert(d.id.clone(), String::from_utf8(d.json.clone()).unwrap());
            }
            Item::Commit(c) => {
                change_bytes += reader.take_changes_text().map_or(0, |t| t.len());
                for change in &c.changes {
                    match change {
                        Change::Put { id, document, .. } => {
                            assert_ne!(main.get(id), Some(&canonical(document)), "a put of main's very bytes keeps no document ({id})");
                            inline.push(id.clone());
                        }
                        Change::PutSnapshot { id, .. } => {
                            assert!(main.contains_key(id), "a put without document has main's document ({id})");
                            omitted.push(id.clone());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    inline.sort();
    omitted.sort();
    // a (first version), b (deleted), d and u (dev) keep their documents;
    // every put of main's current bytes — c twice, a's update — has none.
    assert_eq!(inline, ["a", "b", "d", "u"]);
    let mut expected: Vec<String> = ('a'..='t').filter(|&c| c != 'b').map(String::from).collect();
    expected.extend(["c".to_string()]);
    expected.sort();
    assert_eq!(omitted, expected);
    // The documents once: the bundle is about the size of the bodies compressed once, not twice.
    let bodies: usize = main.values().map(String::len).sum();
    assert!(change_bytes < bodies / 3, "change sets {change_bytes} bytes, documents {bodies}");
    assert!(bytes.len() < bodies * 3 / 4, "bundle {} bytes, documents {bodies}", bytes.len());

    // A restore gives back the documents, the branches and the history: a
    // backup of the copy is the same bundle.
    let r = s.call(s.req(Method::POST, "/api/v1/backups/h/restore").json(&json!({"target": "acme/copy"})), StatusCode::ACCEPTED).await;
    let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
    assert_eq!(r["status"], "done", "{r}");
    for branch in ["main", "dev"] {
        let docs = |db: &'static str| {
            s.call(s.req(Method::GET, &format!("/api/v1/databases/acme/{db}/collections/items/documents?branch={branch}&limit=1000")), StatusCode::OK)
        };
        assert_eq!(docs("copy").await, docs("hist").await, "{branch}");
    }
    assert_eq!(commit_ids(&s, "acme/copy").await, commit_ids(&s, "acme/hist").await);
    backup(&s, json!({"id": "h2", "databases": ["acme/copy"], "encryption": "none"})).await;
    assert_eq!(content(&s, "h2").await, bytes, "the copy's bundle is the original's");
    // And a branch from an old commit replays the stored versions.
    let commits = commit_ids(&s, "acme/copy").await;
    let oldest = commits.last().unwrap();
    s.call(s.req(Method::POST, "/api/v1/databases/acme/copy/branches/old").json(&json!({"from": oldest})), StatusCode::CREATED).await;
    let old = s.call(s.req(Method::GET, "/api/v1/databases/acme/copy/collections/items/documents?branch=old&limit=1000"), StatusCode::OK).await;
    let old_docs: Vec<Value> = old["documents"].as_array().unwrap().clone();
    assert_eq!(old_docs, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_bundle_restores_like_its_version_2_twin() {
    let s = TestServer::start().await;
    create_db(&s, "acme", "x").await;
    let vectors = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let v1 = std::fs::read(vectors.join("bundle_v1_history.cfb")).unwrap();
    let v2 = std::fs::read(vectors.join("bundle_history.cfb")).unwrap();
    let snap = bundle::from_slice(&v2).unwrap();
    assert_eq!(bundle::from_slice(&v1).unwrap().collections.keys().collect::<Vec<_>>(), snap.collections.keys().collect::<Vec<_>>());
    for (id, bytes) in [("v1", v1), ("v2", v2.clone())] {
        s.call(s.req(Method::POST, &format!("/api/v1/backups/import?database=acme/x&id={id}")).body(bytes), StatusCode::CREATED).await;
        let r =
            s.call(s.req(Method::POST, &format!("/api/v1/backups/{id}/restore")).json(&json!({"target": format!("acme/{id}")})), StatusCode::ACCEPTED).await;
        let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
        assert_eq!(r["status"], "done", "{id}: {r}");
        for (name, collection) in &snap.collections {
            assert_eq!(by_id(&all_documents(&s, "acme", id, name).await), collection.documents, "{id}/{name}");
        }
        // Backed up again, either is the version-2 bundle of the same snapshot.
        backup(&s, json!({"id": format!("again-{id}"), "databases": [format!("acme/{id}")], "encryption": "none"})).await;
        let again = content(&s, &format!("again-{id}")).await;
        assert_eq!(bundle::from_slice(&again).unwrap(), snap, "{id}");
    }
    assert_eq!(commit_ids(&s, "acme/v1").await, commit_ids(&s, "acme/v2").await);
}
