//! Killing the server process during a backup or a restore, then restarting
//! it: no partial backup is listed or left in the backend, no partly restored
//! database appears, and the job is marked `error` ("interrupted").
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

/// A test that fails half-way must not leave its server running (it would
/// hold its port, its data dir and whatever its parent shared with it).
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on `dir`, its backups and restores kept to `rate` bytes/s.
fn start(dir: &std::path::Path, rate: u64) -> Server {
    let exe = std::env::current_exe().unwrap();
    let args = ["--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"].join("\u{1f}");
    let mut child = Command::new(exe)
        .args(["--exact", "child_serve", "--ignored", "--nocapture", "--test-threads=1"])
        .env("COFFER_TEST_SERVE", args)
        .env("COFFER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("COFFER_BACKUP_RATE_LIMIT", rate.to_string())
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

/// 500 documents of ~1 kB of letters that compress poorly (batch `batch`).
fn noise_docs(batch: usize) -> Vec<Value> {
    (0..500)
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
        .collect()
}

/// Creates organization `acme` and database `acme/big` and inserts
/// `batches` × 500 documents of [`noise_docs`] into its collection `docs`.
async fn load_big(client: &reqwest::Client, server: &Server, batches: usize) {
    let admin = |path: &str| client.post(format!("{}{path}", server.base)).basic_auth("admin", Some(ADMIN_PASSWORD));
    assert_eq!(admin("/api/v1/orgs/acme").send().await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(admin("/api/v1/databases/acme/big").send().await.unwrap().status(), StatusCode::CREATED);
    for batch in 0..batches {
        let resp = admin("/api/v1/databases/acme/big/collections/docs/documents").json(&noise_docs(batch)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
}

/// Linux's SCHED_IDLE policy number.
#[cfg(target_os = "linux")]
const SCHED_IDLE: u32 = 5;

/// The scheduling policies (field 41 of /proc/PID/task/TID/stat) of the
/// threads of process `pid` named `name`.
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (head, rest) = stat.rsplit_once(')').unwrap();
        if head.split_once('(').unwrap().1 == name {
            // Fields after the name start at field 3 (state).
            out.push(rest.split_whitespace().nth(41 - 3).unwrap().parse().unwrap());
        }
    }
    out
}

/// Starts a restore of backup `full` into `acme/copy`; returns its id.
async fn restore_full_to_copy(client: &reqwest::Client, server: &Server) -> String {
    let resp = client
        .post(format!("{}/api/v1/backups/full/restore", server.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"target": "acme/copy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

/// Rows of the hidden databases restores stage into.
fn staged_rows(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(dir.join("coffer.sqlite"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM documents WHERE db IN (SELECT id FROM databases WHERE org = '.restore')) + (SELECT COUNT(*) FROM documents WHERE db NOT IN (SELECT id FROM databases))",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_is_marked_interrupted_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), 200_000);
    let client = reqwest::Client::new();
    let url = |s: &Server, p: &str| format!("{}{p}", s.base);
    let admin = |rb: reqwest::RequestBuilder| rb.basic_auth("admin", Some(ADMIN_PASSWORD));

    // ~3 MB of poorly compressible documents: at 200 kB/s the backup takes seconds.
    load_big(&client, &server, 6).await;
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
    // The backup's threads yield their cores to the server's writers (COFFER_BACKUP_IDLE, on by default).
    #[cfg(target_os = "linux")]
    {
        let policies = thread_policies(server.child.id(), "coffer-backup");
        assert!(!policies.is_empty(), "no coffer-backup thread while the backup runs");
        assert!(policies.iter().all(|&p| p == SCHED_IDLE), "backup thread policies: {policies:?}");
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // Whatever was being written is only under tmp/, never complete.
    let backups = dir.path().join("backups");
    assert!(!backups.join("doomed").join("manifest.json").exists());
    let partial = walk(&backups.join("tmp").join("doomed"));
    eprintln!("partial content at the kill: {partial:?}");

    let mut server = start(dir.path(), 200_000);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_restore_is_marked_interrupted_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let url = |s: &Server, p: &str| format!("{}{p}", s.base);
    let admin = |rb: reqwest::RequestBuilder| rb.basic_auth("admin", Some(ADMIN_PASSWORD));
    let get = |s: &Server, p: &str| admin(client.get(url(s, p))).send();

    // A complete backup of ~12 MB of documents, made at full speed.
    let mut server = start(dir.path(), 0);
    load_big(&client, &server, 24).await;
    let resp =
        admin(client.post(url(&server, "/api/v1/backups"))).json(&json!({"id": "full", "databases": ["acme/big"], "encryption": "none"})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + DEADLINE;
    let size = loop {
        let rec: Value = get(&server, "/api/v1/backups/full").await.unwrap().json().await.unwrap();
        if rec["status"] == "done" {
            break rec["size"].as_u64().unwrap();
        }
        assert_ne!(rec["status"], "error", "{rec}");
        assert!(Instant::now() < deadline, "the backup did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // The restore reads at 1 MB/s, so it runs for seconds: killed once it
    // has staged rows.
    assert!(size > 4_000_000, "the backup is too small ({size} B) to be killed mid-restore");
    let mut server = start(dir.path(), 1_000_000);
    // A restart keeps complete backups (it once took the empty `tmp/full`
    // a write leaves behind for a leftover and deleted the whole backup).
    let resp = get(&server, "/api/v1/backups/full/content").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().len() as u64, size);
    let rid = restore_full_to_copy(&client, &server).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rec: Value = get(&server, &format!("/api/v1/restores/{rid}")).await.unwrap().json().await.unwrap();
        // Scheduled until its job has started (a status read right after the
        // 202 can come first: Basic auth no longer hashes on every request).
        assert!(rec["status"] == "running" || rec["status"] == "scheduled", "the restore ended before it could be killed: {rec}");
        if staged_rows(dir.path()) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the restore never staged rows");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(staged_rows(dir.path()) > 0, "the kill left staged rows behind for the restart to drop");

    // After the restart: the job is interrupted, nothing of it is visible or
    // left, and the same restore runs to completion.
    let mut server = start(dir.path(), 0);
    let rec: Value = get(&server, &format!("/api/v1/restores/{rid}")).await.unwrap().json().await.unwrap();
    assert_eq!(rec["status"], "error", "{rec}");
    assert_eq!(rec["error"], "interrupted");
    assert_eq!(staged_rows(dir.path()), 0, "the staged rows are dropped on restart");
    assert_eq!(get(&server, "/api/v1/databases/acme/copy").await.unwrap().status(), StatusCode::NOT_FOUND);
    let list: Value = get(&server, "/api/v1/databases/acme").await.unwrap().json().await.unwrap();
    assert!(!list.to_string().contains("copy"), "{list}");
    let rid = restore_full_to_copy(&client, &server).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rec: Value = get(&server, &format!("/api/v1/restores/{rid}")).await.unwrap().json().await.unwrap();
        if rec["status"] == "done" {
            assert_eq!(rec["records"], 12_000, "{rec}");
            break;
        }
        assert_ne!(rec["status"], "error", "{rec}");
        assert!(Instant::now() < deadline, "the second restore did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info: Value = get(&server, "/api/v1/databases/acme/copy").await.unwrap().json().await.unwrap();
    assert_eq!(info["documents"], 12_000);
    assert_eq!(staged_rows(dir.path()), 0);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
