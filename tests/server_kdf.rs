//! The Argon2id work memory the server keeps between passphrase jobs
//! (`kdf_keep_seconds`), seen through `/metrics`. A test binary of its own:
//! the kept area is process-wide, and other tests' servers would use it too.
#![cfg(feature = "server")]

mod server_support;

use std::time::{Duration, Instant};

use coffer::seal;
use reqwest::{Method, StatusCode};
use serde_json::json;
use server_support::*;

const PASS: &str = "lantern-orbit-cactus-47-marmalade";
const AREA: u64 = 64 << 20;

async fn kept(s: &TestServer) -> u64 {
    let text = s.req(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("coffer_kdf_memory_bytes ")).expect("coffer_kdf_memory_bytes in /metrics");
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_jobs_reuse_one_kept_argon2_area_which_is_freed_when_idle() {
    let s = TestServer::start_with(|c| c.kdf_keep_seconds = 2).await;
    create_db(&s, "acme", "shop").await;
    insert(&s, "acme", "shop", "items", json!([{"id": "a", "n": 1}, {"id": "b", "n": 2}])).await;
    assert_eq!(kept(&s).await, 0, "nothing is kept before a passphrase job");

    let uses = seal::kdf_memory_uses();
    let rec =
        s.call(s.req(Method::POST, "/api/v1/backups").json(&json!({"id": "b1", "databases": ["acme/shop"], "passphrase": PASS})), StatusCode::ACCEPTED).await;
    assert_eq!(s.wait_backup(rec["id"].as_str().unwrap()).await["status"], "done");
    assert_eq!(seal::kdf_memory_uses(), uses + 1, "the backup's Argon2id ran in the kept area");
    assert_eq!(kept(&s).await, AREA, "the 64 MiB area stays after the backup");

    let restore = |target: &'static str| {
        let s = &s;
        async move {
            let r = s.call(s.req(Method::POST, "/api/v1/backups/b1/restore").json(&json!({"target": target, "passphrase": PASS})), StatusCode::ACCEPTED).await;
            let r = s.wait(&format!("/api/v1/restores/{}", r["id"].as_str().unwrap())).await;
            assert_eq!(r["status"], "done", "{r}");
            assert_eq!(r["records"], 2);
        }
    };
    restore("acme/copy").await;
    assert_eq!(seal::kdf_memory_uses(), uses + 2, "the restore derived once, in the same area");
    assert_eq!(kept(&s).await, AREA);

    // No passphrase job for one to two periods: released.
    let start = Instant::now();
    while kept(&s).await != 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "the kept area is never released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(500), "released {:?} after its last use, before a quiet period", start.elapsed());

    // The next job allocates it again, and gets the same answers.
    restore("acme/copy2").await;
    assert_eq!(seal::kdf_memory_uses(), uses + 3);
    assert_eq!(kept(&s).await, AREA);
    s.stop().await;
}
