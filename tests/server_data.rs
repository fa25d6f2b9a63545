//! The data API over real HTTP: databases, collections, documents, commits,
//! branches, users and tokens, and bad input.
#![cfg(feature = "server")]

mod server_support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_commits_and_branches() {
    let s = TestServer::start().await;
    // Only /healthz answers without credentials.
    assert_eq!(s.client.get(s.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let body = s.call(s.client.get(s.url("/api/v1/databases/admin")), StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["code"], "UNAUTHORIZED");

    create_db(&s, "acme", "shop").await;
    s.call(s.req(Method::POST, "/api/v1/databases/acme/shop"), StatusCode::CONFLICT).await;
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/collections/items").json(&json!({"dimension": 3})), StatusCode::OK).await;
    let c1 = insert(&s, "acme", "shop", "items", json!([{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"n": 3}])).await;
    // NDJSON, one commit for the batch.
    let resp = s
        .req(Method::POST, "/api/v1/databases/acme/shop/collections/items/documents?message=more")
        .header("content-type", "application/x-ndjson")
        .body("{\"@id\":\"c\",\"n\":4}\n{\"id\":\"d\",\"n\":5}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let c2 = resp.json::<Value>().await.unwrap()["commit"]["id"].as_str().unwrap().to_string();
    assert_eq!(s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/collections/items/documents/a"), StatusCode::OK).await, json!({"id": "a", "n": 1}));
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/collections/items/documents/a").json(&json!({"id": "a", "n": 10})), StatusCode::OK).await;
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/collections/items/documents/a").json(&json!({"id": "zz"})), StatusCode::BAD_REQUEST).await;
    s.call(s.req(Method::DELETE, "/api/v1/databases/acme/shop/collections/items/documents/b"), StatusCode::OK).await;
    s.call(s.req(Method::DELETE, "/api/v1/databases/acme/shop/collections/items/documents/b"), StatusCode::NOT_FOUND).await;

    let docs = all_documents(&s, "acme", "shop", "items").await;
    assert_eq!(docs.len(), 4);
    let page = s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/collections/items/documents?limit=2"), StatusCode::OK).await;
    assert_eq!(page["documents"].as_array().unwrap().len(), 2);
    assert!(page["next"].is_string());

    let info = s.call(s.req(Method::GET, "/api/v1/databases/acme/shop"), StatusCode::OK).await;
    assert_eq!(info["documents"], 4);
    assert_eq!(info["collections"], 1);
    assert_eq!(info["label"], "shop");
    let commits = s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/commits"), StatusCode::OK).await;
    let commits = commits["commits"].as_array().unwrap().clone();
    assert_eq!(commits.len(), 5, "{commits:?}");
    assert_eq!(commits[0]["id"], info["head"]);
    assert_eq!(commits[0]["author"], "admin");
    assert_eq!(commits[3]["id"], c1.as_str());
    assert_eq!(commits[2]["message"], "more");

    // A branch from an old commit sees the state at that commit.
    let b = s.call(s.req(Method::POST, "/api/v1/databases/acme/shop/branches/old").json(&json!({"from": c1})), StatusCode::CREATED).await;
    assert_eq!(b["head"], c1.as_str());
    let old = s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/collections/items/documents?branch=old"), StatusCode::OK).await;
    assert_eq!(old["documents"].as_array().unwrap().len(), 3);
    s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/collections/items/documents/c?branch=old"), StatusCode::NOT_FOUND).await;
    // Writes on a branch leave main alone.
    s.call(s.req(Method::PUT, "/api/v1/databases/acme/shop/collections/items/documents/x?branch=old").json(&json!({"v": 1})), StatusCode::OK).await;
    s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/collections/items/documents/x"), StatusCode::NOT_FOUND).await;
    let br = s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/branches/old"), StatusCode::OK).await;
    assert_ne!(br["head"], c1.as_str());
    let from_branch = s.call(s.req(Method::POST, "/api/v1/databases/acme/shop/branches/copy").json(&json!({"from": "main"})), StatusCode::CREATED).await;
    assert_eq!(from_branch["head"], info["head"]);
    let _ = c2;
    let list = s.call(s.req(Method::GET, "/api/v1/databases/acme/shop/branches"), StatusCode::OK).await;
    assert_eq!(list["branches"].as_array().unwrap().len(), 3);
    let dbs = s.call(s.req(Method::GET, "/api/v1/databases/acme"), StatusCode::OK).await;
    assert_eq!(dbs["databases"][0]["name"], "shop");

    s.call(s.req(Method::DELETE, "/api/v1/databases/acme/shop"), StatusCode::NO_CONTENT).await;
    s.call(s.req(Method::GET, "/api/v1/databases/acme/shop"), StatusCode::NOT_FOUND).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_right_status() {
    let s = TestServer::start_with(|c| c.max_body = 64 * 1024).await;
    create_db(&s, "acme", "db").await;
    let base = "/api/v1/databases/acme/db/collections/c/documents";
    // Malformed JSON.
    let body = s.call(s.req(Method::POST, base).header("content-type", "application/json").body("[{\"a\":"), StatusCode::BAD_REQUEST).await;
    assert_eq!(body["code"], "INVALID_INPUT");
    let body =
        s.call(s.req(Method::POST, "/api/v1/databases/acme/db2").header("content-type", "application/json").body("{nope"), StatusCode::BAD_REQUEST).await;
    assert_eq!(body["code"], "INVALID_INPUT");
    s.call(s.req(Method::POST, base).json(&json!([1, 2])), StatusCode::BAD_REQUEST).await;
    s.call(s.req(Method::POST, base).json(&json!([])), StatusCode::BAD_REQUEST).await;
    // Oversized body.
    let big = json!([{"id": "x", "pad": "y".repeat(100 * 1024)}]);
    let body = s.call(s.req(Method::POST, base).json(&big), StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    // Path traversal and bad names.
    for (method, path) in [
        (Method::POST, "/api/v1/databases/acme/..%2F..%2Fetc"),
        (Method::POST, "/api/v1/databases/acme/UPPER"),
        (Method::POST, "/api/v1/databases/..%2Fadmin/db"),
        (Method::PUT, "/api/v1/databases/acme/db/collections/..%2Fx"),
        (Method::PUT, "/api/v1/databases/acme/db/collections/.hidden"),
    ] {
        let body = s.call(s.req(method, path).json(&json!({})), StatusCode::BAD_REQUEST).await;
        assert_eq!(body["code"], "INVALID_INPUT", "{path}");
    }
    let body = s.call(s.req(Method::GET, "/api/v1/backups/..%2F..%2Fetc%2Fpasswd"), StatusCode::BAD_REQUEST).await;
    assert_eq!(body["code"], "INVALID_INPUT");
    let body = s
        .call(s.req(Method::POST, "/api/v1/backups").json(&json!({"id": "../x", "databases": ["acme/db"], "encryption": "none"})), StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(body["code"], "INVALID_INPUT");
    let body = s
        .call(s.req(Method::POST, "/api/v1/backups").json(&json!({"id": "tmp", "databases": ["acme/db"], "encryption": "none"})), StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(body["code"], "INVALID_INPUT", "the backend's temporary prefix is not an id");
    s.call(s.req(Method::POST, "/api/v1/backups/import?database=acme/db&id=tmp").body("x"), StatusCode::BAD_REQUEST).await;
    // Unknown things.
    s.call(s.req(Method::GET, "/api/v1/databases/acme/nope"), StatusCode::NOT_FOUND).await;
    s.call(s.req(Method::GET, "/api/v1/nothing-here"), StatusCode::NOT_FOUND).await;
    s.call(s.req(Method::POST, "/api/v1/databases/nope/db"), StatusCode::NOT_FOUND).await;
    // Weak user passwords.
    let body = s
        .call(
            s.req(Method::POST, "/api/v1/orgs/acme/users").json(&json!({"name": "bob", "password": "password1", "role": "reader"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(body["code"], "WEAK_PASSPHRASE");
    // Bad credentials.
    let resp = s.client.get(s.url("/api/v1/whoami")).basic_auth("admin", Some("wrong")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s.client.get(s.url("/api/v1/whoami")).bearer_auth("coffer_0123456789abcdef_00").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let who = s.call(s.client.get(s.url("/api/v1/whoami")).basic_auth("admin", Some(ADMIN_PASSWORD)), StatusCode::OK).await;
    assert_eq!(who["server_admin"], true);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_scoped_and_revocable() {
    let s = TestServer::start().await;
    let t = s.user_token("acme", "alice", "operator").await;
    let who = s.call(s.req_as(&t, Method::GET, "/api/v1/whoami"), StatusCode::OK).await;
    assert_eq!(who["org"], "acme");
    assert_eq!(who["role"], "operator");
    // A token cannot be raised above its creator.
    s.call(s.req_as(&t, Method::POST, "/api/v1/tokens").json(&json!({"role": "admin"})), StatusCode::FORBIDDEN).await;
    s.call(s.req_as(&t, Method::POST, "/api/v1/tokens").json(&json!({"org": "admin"})), StatusCode::FORBIDDEN).await;
    let reader = s.call(s.req_as(&t, Method::POST, "/api/v1/tokens").json(&json!({"role": "reader", "name": "ro"})), StatusCode::CREATED).await;
    let list = s.call(s.req_as(&t, Method::GET, "/api/v1/tokens"), StatusCode::OK).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(reader["token"].as_str().unwrap()), "secrets are never listed");
    let rt = reader["token"].as_str().unwrap();
    s.call(s.req_as(rt, Method::GET, "/api/v1/whoami"), StatusCode::OK).await;
    s.call(s.req_as(&t, Method::DELETE, &format!("/api/v1/tokens/{}", reader["id"].as_str().unwrap())), StatusCode::NO_CONTENT).await;
    s.call(s.req_as(rt, Method::GET, "/api/v1/whoami"), StatusCode::UNAUTHORIZED).await;
    // Only the server administrator creates organizations.
    s.call(s.req_as(&t, Method::POST, "/api/v1/orgs/other"), StatusCode::FORBIDDEN).await;
    let orgs = s.call(s.req_as(&t, Method::GET, "/api/v1/orgs"), StatusCode::OK).await;
    assert_eq!(orgs["orgs"], json!(["acme"]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route_and_metrics_count() {
    let s = TestServer::start().await;
    let doc = s.call(s.req(Method::GET, "/api/v1/openapi.json"), StatusCode::OK).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for r in coffer::server::api::openapi::ROUTES {
        assert!(doc["paths"][r.path][r.method].is_object(), "{} {} missing from the document", r.method, r.path);
        // The router serves every documented route (never "no such route" or 405).
        let path = r.path.replace("{org}", "acme").replace("{db}", "db").replace("{name}", "c").replace("{id}", "x").replace("{branch}", "b");
        let method = Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
        let resp = s.req(method, &path).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{} {path}", r.method);
        assert!(!body.contains("no such route"), "{} {path}: {body}", r.method);
    }
    let resp = s.req(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for name in ["coffer_http_requests_total{class=\"2xx\"}", "coffer_http_request_duration_seconds_bucket", "coffer_backups_done_total", "coffer_jobs_running"]
    {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    s.call(s.req(Method::PATCH, "/api/v1/databases/acme"), StatusCode::METHOD_NOT_ALLOWED).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_too_large_for_a_bundle_record_is_refused() {
    let s = TestServer::start_with(|c| c.max_body = 40 << 20).await;
    create_db(&s, "acme", "db").await;
    let pad = "x".repeat(1 << 20);
    let docs: Vec<Value> = (0..33).map(|i| json!({"id": format!("d{i}"), "pad": pad})).collect();
    let body = s.call(s.req(Method::POST, "/api/v1/databases/acme/db/collections/c/documents").json(&docs), StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["code"], "LIMIT_EXCEEDED");
    let info = s.call(s.req(Method::GET, "/api/v1/databases/acme/db"), StatusCode::OK).await;
    assert_eq!(info["documents"], 0, "nothing of the refused commit remains");
    s.stop().await;
}
