//! The auth matrix: every route × no credentials / another organization /
//! the `reader` role (and `operator` where it differs).
#![cfg(feature = "server")]

mod server_support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use server_support::*;

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Need {
    /// Any authenticated caller (acts on their own things).
    Any,
    Reader,
    Operator,
    Admin,
    ServerAdmin,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_credentials_organization_and_role() {
    let s = TestServer::start().await;
    create_db(&s, "acme", "db").await;
    insert(&s, "acme", "db", "c", json!([{"id": "d1", "v": 1}])).await;
    let b =
        s.call(s.req(Method::POST, "/api/v1/backups").json(&json!({"id": "b1", "databases": ["acme/db"], "encryption": "none"})), StatusCode::ACCEPTED).await;
    assert_eq!(s.wait_backup(b["id"].as_str().unwrap()).await["status"], "done");
    let r = s.call(s.req(Method::POST, "/api/v1/backups/b1/restore").json(&json!({"target": "acme/db2"})), StatusCode::ACCEPTED).await;
    let rid = r["id"].as_str().unwrap().to_string();
    s.wait(&format!("/api/v1/restores/{rid}")).await;

    let reader = s.user_token("acme", "rita", "reader").await;
    let operator = s.user_token("acme", "otto", "operator").await;
    let org_admin = s.user_token("acme", "ada", "admin").await;
    let stranger = s.user_token("evil", "eve", "admin").await;

    let routes: Vec<(Method, String, Value, Need)> = vec![
        (Method::GET, "/api/v1/whoami".into(), Value::Null, Need::Any),
        (Method::GET, "/api/v1/orgs".into(), Value::Null, Need::Any),
        (Method::POST, "/api/v1/orgs/neworg".into(), Value::Null, Need::ServerAdmin),
        (Method::POST, "/api/v1/orgs/acme/users".into(), json!({"name": "zed", "password": STRONG, "role": "reader"}), Need::Admin),
        (Method::GET, "/api/v1/orgs/acme/users".into(), Value::Null, Need::Admin),
        (Method::GET, "/api/v1/tokens".into(), Value::Null, Need::Any),
        (Method::POST, "/api/v1/tokens".into(), json!({}), Need::Any),
        (Method::GET, "/api/v1/databases/acme".into(), Value::Null, Need::Reader),
        (Method::GET, "/api/v1/databases/acme/db".into(), Value::Null, Need::Reader),
        (Method::POST, "/api/v1/databases/acme/newdb".into(), json!({}), Need::Admin),
        (Method::DELETE, "/api/v1/databases/acme/db2".into(), Value::Null, Need::Admin),
        (Method::GET, "/api/v1/databases/acme/db/schema".into(), Value::Null, Need::Reader),
        (Method::PUT, "/api/v1/databases/acme/db/schema".into(), json!({"s": 1}), Need::Admin),
        (Method::GET, "/api/v1/databases/acme/db/collections".into(), Value::Null, Need::Reader),
        (Method::GET, "/api/v1/databases/acme/db/collections/c".into(), Value::Null, Need::Reader),
        (Method::PUT, "/api/v1/databases/acme/db/collections/c2".into(), json!({}), Need::Admin),
        (Method::GET, "/api/v1/databases/acme/db/collections/c/documents".into(), Value::Null, Need::Reader),
        (Method::POST, "/api/v1/databases/acme/db/collections/c/documents".into(), json!([{"id": "d9"}]), Need::Admin),
        (Method::GET, "/api/v1/databases/acme/db/collections/c/documents/d1".into(), Value::Null, Need::Reader),
        (Method::PUT, "/api/v1/databases/acme/db/collections/c/documents/d2".into(), json!({"v": 2}), Need::Admin),
        (Method::DELETE, "/api/v1/databases/acme/db/collections/c/documents/d2".into(), Value::Null, Need::Admin),
        (Method::GET, "/api/v1/databases/acme/db/commits".into(), Value::Null, Need::Reader),
        (Method::GET, "/api/v1/databases/acme/db/branches".into(), Value::Null, Need::Reader),
        (Method::GET, "/api/v1/databases/acme/db/branches/main".into(), Value::Null, Need::Reader),
        (Method::POST, "/api/v1/databases/acme/db/branches/feature".into(), json!({}), Need::Admin),
        (Method::POST, "/api/v1/backups".into(), json!({"databases": ["acme/db"], "encryption": "none"}), Need::Operator),
        (Method::GET, "/api/v1/backups/b1".into(), Value::Null, Need::Reader),
        (Method::GET, "/api/v1/backups/b1/content".into(), Value::Null, Need::Operator),
        (Method::POST, "/api/v1/backups/b1/link".into(), json!({}), Need::Operator),
        (Method::POST, "/api/v1/backups/b1/verify".into(), json!({}), Need::Operator),
        (Method::POST, "/api/v1/backups/b1/restore".into(), json!({"target": "acme/db3"}), Need::Operator),
        (Method::GET, format!("/api/v1/restores/{rid}"), Value::Null, Need::Reader),
        (Method::POST, "/api/v1/backups/import?database=acme/db".into(), Value::Null, Need::Operator),
        (Method::DELETE, "/api/v1/backups/b1".into(), Value::Null, Need::Operator),
        (Method::GET, "/api/v1/openapi.json".into(), Value::Null, Need::Any),
        (Method::GET, "/metrics".into(), Value::Null, Need::Any),
    ];

    let send = |token: Option<&str>, method: &Method, path: &str, body: &Value| {
        let mut rb = s.client.request(method.clone(), s.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if !body.is_null() {
            rb = rb.json(body);
        }
        rb
    };
    for (method, path, body, need) in &routes {
        // No credentials.
        let resp = send(None, method, path, body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path} without credentials");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["code"], "UNAUTHORIZED");
        // A garbage token and a wrong password.
        let resp = send(Some("coffer_nope_nope"), method, path, body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path} with a bad token");
        // Another organization's administrator.
        if *need != Need::Any {
            let resp = send(Some(&stranger), method, path, body).send().await.unwrap();
            let st = resp.status();
            assert!(st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND, "{method} {path} from another organization: {st}");
        }
        // The reader role.
        let resp = send(Some(&reader), method, path, body).send().await.unwrap();
        let st = resp.status();
        match need {
            Need::Any | Need::Reader => assert!(st.is_success(), "{method} {path} as reader: {st}"),
            _ => assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path} as reader"),
        }
        // The operator role.
        if matches!(need, Need::Admin | Need::ServerAdmin) {
            let resp = send(Some(&operator), method, path, body).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path} as operator");
        }
        if *need == Need::ServerAdmin {
            let resp = send(Some(&org_admin), method, path, body).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path} as an organization admin");
        }
    }
    // The stranger's listing does not show acme's backups.
    let list = s.call(s.req_as(&stranger, Method::GET, "/api/v1/backups"), StatusCode::OK).await;
    assert_eq!(list["total"], 0);
    s.call(s.req_as(&stranger, Method::GET, "/api/v1/backups?org=acme"), StatusCode::FORBIDDEN).await;
    // And the allowed roles do get through (spot checks of operator routes).
    s.call(s.req_as(&operator, Method::POST, "/api/v1/backups/b1/verify").json(&json!({})), StatusCode::OK).await;
    s.call(s.req_as(&org_admin, Method::PUT, "/api/v1/databases/acme/db/collections/c/documents/d3").json(&json!({"v": 3})), StatusCode::OK).await;
    s.stop().await;
}

/// `coffer_password_checks_total` of the server's `/metrics`.
async fn password_checks(s: &TestServer) -> u64 {
    let text = s.req(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("coffer_password_checks_total ")).expect("the metric is exported");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_checked_once_per_failure_and_once_per_success_remembered() {
    let s = TestServer::start().await;
    let whoami = |user: &'static str, password: &'static str| s.client.get(s.url("/api/v1/whoami")).basic_auth(user, Some(password)).send();
    // The start-up made a token with the admin's password: that success is
    // remembered, so using it again runs no Argon2id check.
    let before = password_checks(&s).await;
    for _ in 0..3 {
        assert_eq!(whoami("admin", ADMIN_PASSWORD).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(password_checks(&s).await, before);
    // Every failure costs exactly one check (not two), for a known user and
    // for an unknown one alike, and is never remembered.
    for user in ["admin", "admin", "nobody"] {
        let resp = whoami(user, "not-the-password").await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "UNAUTHORIZED");
    }
    assert_eq!(password_checks(&s).await, before + 3);
    // Many failures at once queue for the checks (as many at once as cores)
    // and each gets its answer.
    let all = futures_util::future::join_all((0..12).map(|_| whoami("admin", "guess"))).await;
    assert!(all.iter().all(|r| r.as_ref().unwrap().status() == StatusCode::UNAUTHORIZED));
    assert_eq!(password_checks(&s).await, before + 15);
    // A right password still works, from memory.
    assert_eq!(whoami("admin", ADMIN_PASSWORD).await.unwrap().status(), StatusCode::OK);
    assert_eq!(password_checks(&s).await, before + 15);
    s.stop().await;
}
