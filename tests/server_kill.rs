//! Killing the server process during a backup, then restarting it: no
//! partial backup is listed or left in the backend, and the job is marked
//! `error` ("interrupted").
//!
//! The server runs in a child process (this test binary re-executed with
//! `COFFER_TEST_SERVE` set, which runs `coffer::server::run_cli`, the same
//! entry as `coffer serve`), so it can be killed with SIGKILL.
#![cfg(feature = "server")]

mod server_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use server_support::{walk, ADMIN_PASSWORD, DEADLINE};

/// Not a test: the child's entry point.
#[test]
#[ignore = "entry point of the child server process"]
fn child_serve() {
    if let Ok(args) = std::env::var("COFFER_TEST_SERVE") {
        let args: Vec<String> = args.split('\u{1f}').map(str::to_string).collect();
        std::process::exit(coffer::server::run_cli(args));
    }
}

struct Server {
    child: Child,
    base: String,
}

fn start(dir: &std::path::Path) -> Server {
    let exe = std::env::current_exe().unwrap();
    let args = ["--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"].join("\u{1f}");
    let mut child = Command::new(exe)
        .args(["--exact", "child_serve", "--ignored", "--nocapture", "--test-threads=1"])
        .env("COFFER_TEST_SERVE", args)
        .env("COFFER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("COFFER_BACKUP_RATE_LIMIT", "200000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + DEADLINE;
    let base = loop {
        assert!(Instant::now() < deadline, "the server did not start");
        let line = lines.next().expect("the server exited early").unwrap();
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_is_marked_interrupted_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let client = reqwest::Client::new();
    let url = |s: &Server, p: &str| format!("{}{p}", s.base);
    let admin = |rb: reqwest::RequestBuilder| rb.basic_auth("admin", Some(ADMIN_PASSWORD));

    let resp = admin(client.post(url(&server, "/api/v1/orgs/acme"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = admin(client.post(url(&server, "/api/v1/databases/acme/big"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // ~3 MB of poorly compressible documents: at 200 kB/s the backup takes seconds.
    for batch in 0..6 {
        let docs: Vec<Value> = (0..500)
            .map(|i| {
                let n = batch * 500 + i;
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1);
                let noise: String = (0..1000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        char::from(b'a' + (x % 26) as u8)
                    })
                    .collect();
                json!({"id": format!("d{n:06}"), "noise": noise})
            })
            .collect();
        let resp = admin(client.post(url(&server, "/api/v1/databases/acme/big/collections/docs/documents"))).json(&docs).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = admin(client.post(url(&server, "/api/v1/backups")))
        .json(&json!({"id": "doomed", "databases": ["acme/big"], "encryption": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // Wait until it is running and has written something, then kill -9.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rec: Value = admin(client.get(url(&server, "/api/v1/backups/doomed"))).send().await.unwrap().json().await.unwrap();
        assert_ne!(rec["status"], "done", "the backup finished before it could be killed");
        if rec["status"] == "running" && rec["progress"]["bytes_done"].as_u64().unwrap_or(0) > 1_200_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the backup never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // Whatever was being written is only under tmp/, never complete.
    let backups = dir.path().join("backups");
    assert!(!backups.join("doomed").join("manifest.json").exists());
    let partial = walk(&backups.join("tmp").join("doomed"));
    eprintln!("partial content at the kill: {partial:?}");

    let mut server = start(dir.path());
    let rec: Value = admin(client.get(url(&server, "/api/v1/backups/doomed"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(rec["status"], "error");
    assert_eq!(rec["error"], "interrupted");
    let done: Value = admin(client.get(url(&server, "/api/v1/backups?status=done"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(done["total"], 0, "no partial backup is listed as a backup");
    let resp = admin(client.get(url(&server, "/api/v1/backups/doomed/content"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(!backups.join("tmp").join("doomed").exists(), "leftovers are removed on restart");
    assert!(!backups.join("doomed").exists());
    // The database is intact and a new backup works.
    let info: Value = admin(client.get(url(&server, "/api/v1/databases/acme/big"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["documents"], 3000);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
