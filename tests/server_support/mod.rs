//! Shared helpers of the server tests: a real server on 127.0.0.1:0 with a
//! temporary data directory, and a real HTTP client.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use coffer::server::{serve, AppState, Config};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

/// The admin password every test server starts with.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple 1984!";
/// A password strong enough for zxcvbn.
pub const STRONG: &str = "violet-tractor-umbrella-91-quartz";
/// How long any poll waits at most.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// An admin token (server administrator).
    pub token: String,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_dir(dir.path());
        config.admin_password = Some(ADMIN_PASSWORD.into());
        tweak(&mut config);
        let (state, generated) = AppState::open(config).await.unwrap();
        assert!(generated.is_none(), "a given admin password is used as is");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        let mut server = Self { base, client, dir, token: String::new(), state, shutdown: Some(tx), handle: Some(handle) };
        let resp =
            server.client.post(server.url("/api/v1/tokens")).basic_auth("admin", Some(ADMIN_PASSWORD)).json(&json!({"name": "tests"})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        server.token = resp.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin token.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(&self.token)
    }

    /// A request with `token`.
    pub fn req_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(token)
    }

    /// Sends, checks the status, returns the JSON body (null if none).
    pub async fn call(&self, rb: RequestBuilder, expect: StatusCode) -> Value {
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, expect, "body: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
    }

    /// Creates an organization, a user with `role` in it, and a token of that user.
    pub async fn user_token(&self, org: &str, name: &str, role: &str) -> String {
        let resp = self.req(Method::POST, &format!("/api/v1/orgs/{org}")).send().await.unwrap();
        assert!(resp.status() == StatusCode::CREATED || resp.status() == StatusCode::CONFLICT);
        self.call(
            self.req(Method::POST, &format!("/api/v1/orgs/{org}/users"))
                .json(&json!({"name": name, "password": STRONG, "role": role, "email": format!("{name}@example.com")})),
            StatusCode::CREATED,
        )
        .await;
        let body = self.call(self.client.post(self.url("/api/v1/tokens")).basic_auth(name, Some(STRONG)).json(&json!({})), StatusCode::CREATED).await;
        body["token"].as_str().unwrap().to_string()
    }

    /// Polls a backup until it is done or error.
    pub async fn wait_backup(&self, id: &str) -> Value {
        self.wait(&format!("/api/v1/backups/{id}")).await
    }

    /// Polls a job record until its status is done or error.
    pub async fn wait(&self, path: &str) -> Value {
        let start = Instant::now();
        loop {
            let rec = self.call(self.req(Method::GET, path), StatusCode::OK).await;
            let status = rec["status"].as_str().unwrap().to_string();
            if status == "done" || status == "error" {
                return rec;
            }
            assert!(start.elapsed() < DEADLINE, "job {path} still {status} after {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// Creates `org/db` (org created if needed) as the admin.
pub async fn create_db(s: &TestServer, org: &str, db: &str) {
    let resp = s.req(Method::POST, &format!("/api/v1/orgs/{org}")).send().await.unwrap();
    assert!(resp.status() == StatusCode::CREATED || resp.status() == StatusCode::CONFLICT);
    s.call(s.req(Method::POST, &format!("/api/v1/databases/{org}/{db}")).json(&json!({"label": db, "comment": "test"})), StatusCode::CREATED).await;
}

/// Inserts documents (one commit) and returns the commit id.
pub async fn insert(s: &TestServer, org: &str, db: &str, collection: &str, docs: Value) -> String {
    let body = s.call(s.req(Method::POST, &format!("/api/v1/databases/{org}/{db}/collections/{collection}/documents")).json(&docs), StatusCode::CREATED).await;
    body["commit"]["id"].as_str().unwrap().to_string()
}

/// Every document of a collection, following pages.
pub async fn all_documents(s: &TestServer, org: &str, db: &str, collection: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = s
            .call(s.req(Method::GET, &format!("/api/v1/databases/{org}/{db}/collections/{collection}/documents?after={after}&limit=1000")), StatusCode::OK)
            .await;
        out.extend(page["documents"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => return out,
        }
    }
}

/// Every file below `dir`, recursively (none if it does not exist).
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
