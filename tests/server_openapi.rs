//! The OpenAPI document at `GET /api/v1/openapi.json`: its structure (every
//! `$ref` resolves, every path parameter is declared, every operation but the
//! two open ones needs credentials) and its truth — real responses of a
//! running server over real HTTP are validated against the documented
//! schemas with a JSON Schema 2020-12 validator, object schemas made strict
//! (no member the document does not name), so a field added, renamed or
//! retyped in the code without the document fails here.

mod server_support;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use server_support::*;

const OPEN_OPERATIONS: [(&str, &str); 2] = [("get", "/healthz"), ("get", "/api/v1/backups/{id}/download")];

/// The document, and validators built from it.
struct Spec {
    doc: Value,
    /// `components`, with `unevaluatedProperties: false` on every object
    /// schema that lists its properties.
    strict_components: Value,
    /// Responses checked, as `METHOD template status`.
    seen: std::sync::Mutex<BTreeSet<String>>,
}

/// Follows a local `$ref` (`#/a/b`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc.pointer(r.strip_prefix('#').expect("local reference")).unwrap_or_else(|| panic!("unresolved {r}"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// Every `$ref` in a value.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Adds `unevaluatedProperties: false` to every schema with `properties`.
fn make_strict(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("properties").is_some_and(Value::is_object) && !map.contains_key("additionalProperties") {
                map.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(make_strict);
        }
        Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

/// Whether a concrete path matches a template; the number of literal segments if so.
fn matches(template: &str, path: &str) -> Option<usize> {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    if t.len() != p.len() {
        return None;
    }
    let mut literal = 0;
    for (a, b) in t.iter().zip(&p) {
        if a.starts_with('{') {
            if b.is_empty() {
                return None;
            }
        } else if a == b {
            literal += 1;
        } else {
            return None;
        }
    }
    Some(literal)
}

impl Spec {
    async fn fetch(s: &TestServer) -> Self {
        let doc = s.call(s.req(Method::GET, "/api/v1/openapi.json"), StatusCode::OK).await;
        let mut strict_components = doc["components"].clone();
        make_strict(&mut strict_components);
        Self { doc, strict_components, seen: Default::default() }
    }

    /// The template and operation serving `method path`.
    fn operation(&self, method: &Method, path: &str) -> (String, &Value) {
        let m = method.as_str().to_lowercase();
        let mut best: Option<(usize, &String, &Value)> = None;
        for (template, item) in self.doc["paths"].as_object().unwrap() {
            if let (Some(literal), Some(op)) = (matches(template, path), item.get(&m)) {
                if best.is_none_or(|b| literal > b.0) {
                    best = Some((literal, template, op));
                }
            }
        }
        let (_, template, op) = best.unwrap_or_else(|| panic!("{method} {path} is not in the document"));
        (template.clone(), op)
    }

    /// A validator of the schema at `schema` (inline or a `$ref`), strict.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = match schema {
            Value::Object(map) => Value::Object(map.clone()),
            Value::Bool(true) => json!({}),
            other => panic!("unexpected schema {other}"),
        };
        make_strict(&mut root);
        root["components"] = self.strict_components.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
    }

    /// Checks a response against the document: its status is listed for the
    /// operation, its media type is documented, and a JSON body is valid
    /// against the documented schema. Returns the body as JSON (or text).
    fn check(&self, method: &Method, path: &str, status: StatusCode, media: Option<&str>, body: &[u8]) -> Value {
        let (template, op) = self.operation(method, path);
        let key = format!("{method} {template} {}", status.as_u16());
        let response = op["responses"]
            .get(status.as_str())
            .unwrap_or_else(|| panic!("{key} is not documented (documented: {:?})", op["responses"].as_object().unwrap().keys().collect::<Vec<_>>()));
        let response = resolve(&self.doc, response);
        self.seen.lock().unwrap().insert(key.clone());
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(body.is_empty(), "{key}: documented without content, but a body came: {}", String::from_utf8_lossy(body));
            return Value::Null;
        };
        let media = media.unwrap_or_else(|| panic!("{key}: no content-type")).split(';').next().unwrap().trim().to_string();
        let documented = content.get(&media).unwrap_or_else(|| panic!("{key}: media type {media} not documented ({:?})", content.keys().collect::<Vec<_>>()));
        if media != "application/json" {
            return Value::String(String::from_utf8_lossy(body).into_owned());
        }
        let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{key}: body is not JSON ({e}): {}", String::from_utf8_lossy(body)));
        let validator = self.validator(&documented["schema"]);
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{key}: the body does not match the document:\n  {}\nbody: {value:#}", errors.join("\n  "));
        value
    }

    /// Sends a request, checks the status and the body against the document.
    async fn call(&self, s: &TestServer, rb: RequestBuilder, expect: StatusCode) -> Value {
        let request = rb.build().unwrap();
        let (method, path) = (request.method().clone(), request.url().path().to_string());
        let resp = s.client.execute(request).await.unwrap();
        let status = resp.status();
        let media = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let body = resp.bytes().await.unwrap();
        assert_eq!(status, expect, "{method} {path}: {}", String::from_utf8_lossy(&body));
        self.check(&method, &path, status, media.as_deref(), &body)
    }

    /// Like [`Spec::call`], returning the raw body.
    async fn bytes(&self, s: &TestServer, rb: RequestBuilder, expect: StatusCode) -> Vec<u8> {
        let request = rb.build().unwrap();
        let (method, path) = (request.method().clone(), request.url().path().to_string());
        let resp = s.client.execute(request).await.unwrap();
        let status = resp.status();
        let media = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let body = resp.bytes().await.unwrap().to_vec();
        assert_eq!(status, expect, "{method} {path}");
        self.check(&method, &path, status, media.as_deref(), &body);
        body
    }

    /// Polls a job record (validated each time) until it is done or error.
    async fn wait(&self, s: &TestServer, path: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            let rec = self.call(s, s.req(Method::GET, path), StatusCode::OK).await;
            if rec["status"] == "done" || rec["status"] == "error" {
                return rec;
            }
            assert!(start.elapsed() < DEADLINE, "{path} still {} after {DEADLINE:?}", rec["status"]);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn schema(&self, name: &str) -> &Value {
        &self.doc["components"]["schemas"][name]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_a_well_formed_openapi_3_1_document() {
    let s = TestServer::start().await;
    let spec = Spec::fetch(&s).await;
    let doc = &spec.doc;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    // Every reference resolves.
    let mut all = Vec::new();
    refs(doc, &mut all);
    assert!(all.len() > 50, "{} references only", all.len());
    for r in &all {
        assert!(r.starts_with("#/components/"), "non-local reference {r}");
        assert!(doc.pointer(&r[1..]).is_some(), "unresolved reference {r}");
    }

    // Every component schema compiles as JSON Schema 2020-12.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in schemas.keys() {
        spec.validator(&json!({"$ref": format!("#/components/schemas/{name}")}));
    }

    let mut operations = 0;
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_path: BTreeSet<&str> = path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let name = format!("{method} {path}");
            assert!(ids.insert(op["operationId"].as_str().unwrap_or_else(|| panic!("{name}: no operationId")).to_string()), "{name}: operationId twice");
            // Path parameters: exactly those of the template, required, typed.
            let params = op["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
            let declared: BTreeSet<&str> = params.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
            assert_eq!(declared, in_path, "{name}: path parameters");
            for p in params {
                assert!(p["schema"].as_object().is_some_and(|o| !o.is_empty()), "{name}: parameter {} untyped", p["name"]);
                if p["in"] == "path" {
                    assert_eq!(p["required"], true, "{name}: path parameter {} not required", p["name"]);
                }
            }
            // Security: both schemes, except the two open operations.
            let open = OPEN_OPERATIONS.contains(&(method.as_str(), path.as_str()));
            let security = op["security"].as_array().map(Vec::as_slice).unwrap_or_default();
            if open {
                assert!(security.is_empty(), "{name} needs no credentials");
            } else {
                let schemes: BTreeSet<&str> = security.iter().flat_map(|r| r.as_object().unwrap().keys().map(String::as_str)).collect();
                assert_eq!(schemes, BTreeSet::from(["basic", "bearer"]), "{name}: security");
                assert!(op["responses"]["401"].is_object(), "{name}: no 401");
            }
            // Responses: one success; every error is the Error schema.
            let responses = op["responses"].as_object().unwrap();
            assert_eq!(responses.keys().filter(|k| k.starts_with('2')).count(), 1, "{name}: one success status");
            for (status, response) in responses {
                let response = resolve(doc, response);
                assert!(response["description"].is_string(), "{name} {status}: no description");
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(["400", "401", "403", "404", "409", "413", "422", "500"].contains(&status.as_str()), "{name}: status {status}");
                    assert_eq!(response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error", "{name} {status}");
                } else if status != "204" {
                    assert!(response["content"].as_object().is_some_and(|c| !c.is_empty()), "{name} {status}: no content");
                }
            }
            // Request bodies: JSON ones by schema, others by media type.
            if let Some(body) = op.get("requestBody") {
                for (media, content) in body["content"].as_object().unwrap() {
                    assert!(content["schema"].is_object(), "{name}: {media} without a schema");
                }
            }
        }
    }
    assert_eq!(operations, coffer::server::api::openapi::ROUTES.len());

    // The error body and its codes.
    let error = spec.schema("Error");
    assert_eq!(error["required"], json!(["code", "message"]));
    let codes = resolve(doc, &error["properties"]["code"])["enum"].as_array().unwrap();
    for c in [
        "INVALID_INPUT",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "CONFLICT",
        "PAYLOAD_TOO_LARGE",
        "WEAK_PASSPHRASE",
        "WRONG_KEY",
        "CORRUPT",
        "IO",
        "INTERNAL",
    ] {
        assert!(codes.contains(&json!(c)), "{c} missing from {codes:?}");
    }

    // Enums named by the issue.
    let enum_of = |schema: &str, field: &str| -> Value {
        let property = &spec.schema(schema)["properties"][field];
        let inner = property.get("oneOf").and_then(|o| o.as_array().unwrap().iter().find(|s| s.get("$ref").is_some())).unwrap_or(property);
        resolve(doc, inner)["enum"].clone()
    };
    assert_eq!(enum_of("User", "role"), json!(["reader", "operator", "admin"]));
    assert_eq!(enum_of("BackupRecord", "status"), json!(["scheduled", "running", "done", "error"]));
    assert_eq!(enum_of("RestoreRecord", "status"), json!(["scheduled", "running", "done", "error"]));
    assert_eq!(enum_of("BackupRecord", "encryption"), json!(["none", "passphrase", "recipients"]));
    assert_eq!(enum_of("BackupRecord", "method"), json!(["manual", "periodic", "import"]));
    assert_eq!(enum_of("CreateBackup", "method"), json!(["manual", "periodic"]));
    assert_eq!(enum_of("CreateBackup", "encryption"), json!(["none", "passphrase", "recipients"]));
    assert_eq!(enum_of("CreateUser", "role"), json!(["reader", "operator", "admin"]));

    // Request schemas name their required members and refuse unknown ones.
    assert_eq!(spec.schema("CreateUser")["required"], json!(["name", "password", "role"]));
    assert_eq!(spec.schema("CreateUser")["additionalProperties"], false);
    assert_eq!(spec.schema("CreateBackup")["required"], json!(["databases"]));

    // Query parameters and the import's passphrase header.
    let params = |method: &str, path: &str| -> BTreeMap<String, Value> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] != "path")
            .map(|p| (format!("{}:{}", p["in"].as_str().unwrap(), p["name"].as_str().unwrap()), p.clone()))
            .collect()
    };
    let list = params("get", "/api/v1/databases/{org}/{db}/collections/{name}/documents");
    assert_eq!(list.keys().collect::<Vec<_>>(), ["query:after", "query:branch", "query:limit"]);
    assert!(list["query:limit"]["schema"]["type"].to_string().contains("integer"), "{}", list["query:limit"]);
    let backups = params("get", "/api/v1/backups");
    assert_eq!(backups.keys().collect::<Vec<_>>(), ["query:database", "query:limit", "query:offset", "query:org", "query:status"]);
    let download = params("get", "/api/v1/backups/{id}/download");
    for p in ["query:database", "query:expires", "query:sig"] {
        assert_eq!(download[p]["required"], true, "{p}");
    }
    let import = params("post", "/api/v1/backups/import");
    assert!(import.contains_key("header:x-coffer-passphrase") && import["query:database"]["required"] == true);
    let import_body = &doc["paths"]["/api/v1/backups/import"]["post"]["requestBody"]["content"];
    assert!(import_body["application/octet-stream"]["schema"].is_object());
    let documents_body = &doc["paths"]["/api/v1/databases/{org}/{db}/collections/{name}/documents"]["post"]["requestBody"]["content"];
    assert!(documents_body["application/json"].is_object() && documents_body["application/x-ndjson"].is_object());
    s.stop().await;
}

/// The validation itself catches mismatches (a guard against a test that
/// validates nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_unlike_the_document_is_caught() {
    let s = TestServer::start().await;
    let spec = Spec::fetch(&s).await;
    let check = |path: &str, body: Value| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            spec.check(&Method::GET, path, StatusCode::OK, Some("application/json"), body.to_string().as_bytes())
        }))
    };
    let branch = json!({"name": "main", "head": null});
    assert!(check("/api/v1/databases/a/b/branches/main", branch.clone()).is_ok());
    let mut extra = branch.clone();
    extra["extra"] = json!(1);
    assert!(check("/api/v1/databases/a/b/branches/main", extra).is_err(), "an undocumented member passes");
    assert!(check("/api/v1/databases/a/b/branches/main", json!({"name": "main"})).is_err(), "a missing member passes");
    assert!(check("/api/v1/databases/a/b/branches/main", json!({"name": 1, "head": null})).is_err(), "a wrong type passes");
    let who = spec.call(&s, s.req(Method::GET, "/api/v1/whoami"), StatusCode::OK).await;
    let mut bad_role = who.clone();
    bad_role["role"] = json!("owner");
    assert!(check("/api/v1/whoami", bad_role).is_err(), "a role outside the enum passes");
    let error = json!({"code": "NOT_FOUND", "message": "x"});
    assert!(spec.check(&Method::GET, "/api/v1/backups/x", StatusCode::NOT_FOUND, Some("application/json"), error.to_string().as_bytes()).is_object());
    let unknown = json!({"code": "TEAPOT", "message": "x"}).to_string();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        spec.check(&Method::GET, "/api/v1/backups/x", StatusCode::NOT_FOUND, Some("application/json"), unknown.as_bytes())
    }));
    assert!(caught.is_err(), "an unknown error code passes");
    // A status the operation does not list.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        spec.check(&Method::GET, "/api/v1/whoami", StatusCode::CONFLICT, Some("application/json"), error.to_string().as_bytes())
    }));
    assert!(caught.is_err(), "an undocumented status passes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_responses_match_the_document() {
    let s = TestServer::start().await;
    let spec = Spec::fetch(&s).await;
    let sp = &spec;
    let ok = StatusCode::OK;

    // Server and access.
    sp.call(&s, s.client.get(s.url("/healthz")), ok).await;
    sp.call(&s, s.req(Method::GET, "/metrics"), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/openapi.json"), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/whoami"), ok).await;
    sp.call(&s, s.client.get(s.url("/api/v1/whoami")), StatusCode::UNAUTHORIZED).await;
    sp.call(&s, s.client.get(s.url("/api/v1/whoami")).basic_auth("admin", Some("wrong")), StatusCode::UNAUTHORIZED).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/acme"), StatusCode::CREATED).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/acme"), StatusCode::CONFLICT).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/Not-A-Slug"), StatusCode::BAD_REQUEST).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/orgs"), ok).await;
    let user = json!({"name": "alice", "password": STRONG, "email": "alice@example.com", "role": "operator"});
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/acme/users").json(&user), StatusCode::CREATED).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/acme/users").json(&user), StatusCode::CONFLICT).await;
    let weak = json!({"name": "bob", "password": "password1", "role": "reader"});
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/acme/users").json(&weak), StatusCode::UNPROCESSABLE_ENTITY).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/acme/users").json(&json!({"name": "bob"})), StatusCode::BAD_REQUEST).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/orgs/nowhere/users").json(&json!({"name": "carol", "password": STRONG, "role": "reader"})), StatusCode::NOT_FOUND)
        .await;
    sp.call(&s, s.req(Method::GET, "/api/v1/orgs/acme/users"), ok).await;
    let token = sp
        .call(&s, s.req(Method::POST, "/api/v1/tokens").json(&json!({"name": "ci", "org": "acme", "role": "reader", "expires_in": 3600})), StatusCode::CREATED)
        .await;
    let reader = token["token"].as_str().unwrap().to_string();
    sp.call(&s, s.req(Method::POST, "/api/v1/tokens"), StatusCode::CREATED).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/tokens").json(&json!({"org": "nowhere"})), StatusCode::NOT_FOUND).await;
    sp.call(&s, s.req_as(&reader, Method::POST, "/api/v1/tokens").json(&json!({"role": "admin"})), StatusCode::FORBIDDEN).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/tokens"), ok).await;
    let spare = sp.call(&s, s.req(Method::POST, "/api/v1/tokens").json(&json!({"name": "spare"})), StatusCode::CREATED).await;
    let spare = format!("/api/v1/tokens/{}", spare["id"].as_str().unwrap());
    sp.call(&s, s.req(Method::DELETE, &spare), StatusCode::NO_CONTENT).await;
    sp.call(&s, s.req(Method::DELETE, &spare), StatusCode::NOT_FOUND).await;

    // Data.
    let db = "/api/v1/databases/acme/shop";
    sp.call(&s, s.req(Method::POST, db).json(&json!({"label": "Shop"})), StatusCode::CREATED).await;
    sp.call(&s, s.req(Method::POST, db), StatusCode::CONFLICT).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/databases/acme/empty"), StatusCode::CREATED).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/databases/acme/empty/branches"), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/databases/acme/empty/branches/main"), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/databases/acme/empty/schema"), ok).await;
    sp.call(&s, s.req_as(&reader, Method::POST, "/api/v1/databases/acme/other"), StatusCode::FORBIDDEN).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/databases/acme"), ok).await;
    sp.call(&s, s.req(Method::GET, db), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/databases/acme/nope"), StatusCode::NOT_FOUND).await;
    sp.call(&s, s.req(Method::PUT, &format!("{db}/collections/items?message=configure")).json(&json!({"indexes": ["price"]})), ok).await;
    sp.call(&s, s.req(Method::PUT, &format!("{db}/collections/tags")), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/collections")), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/collections/items")), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/collections/nope")), StatusCode::NOT_FOUND).await;
    let docs = json!([{"id": "a", "price": 3, "tags": ["x"]}, {"id": "b", "price": 5.5, "nested": {"k": null}}, {"@id": 7, "price": 1}]);
    let inserted = sp.call(&s, s.req(Method::POST, &format!("{db}/collections/items/documents")).json(&docs), StatusCode::CREATED).await;
    assert_eq!(inserted["ids"], json!(["a", "b", "7"]));
    let ndjson = "{\"id\":\"n1\",\"v\":1}\n\n{\"id\":\"n2\",\"v\":2}\n";
    sp.call(
        &s,
        s.req(Method::POST, &format!("{db}/collections/items/documents")).header("content-type", "application/x-ndjson").body(ndjson),
        StatusCode::CREATED,
    )
    .await;
    sp.call(&s, s.req(Method::POST, &format!("{db}/collections/items/documents")).json(&json!([1, 2])), StatusCode::BAD_REQUEST).await;
    let page = sp.call(&s, s.req(Method::GET, &format!("{db}/collections/items/documents?limit=2")), ok).await;
    assert!(page["next"].is_string());
    let last = sp.call(&s, s.req(Method::GET, &format!("{db}/collections/items/documents?after=b&limit=100&branch=main")), ok).await;
    assert!(last["next"].is_null());
    sp.call(&s, s.req(Method::GET, &format!("{db}/collections/items/documents?limit=many")), StatusCode::BAD_REQUEST).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/collections/items/documents/a")), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/collections/items/documents/zzz")), StatusCode::NOT_FOUND).await;
    sp.call(&s, s.req(Method::PUT, &format!("{db}/collections/items/documents/a")).json(&json!({"id": "a", "price": 4})), ok).await;
    sp.call(&s, s.req(Method::PUT, &format!("{db}/collections/items/documents/a")).json(&json!({"id": "other"})), StatusCode::BAD_REQUEST).await;
    sp.call(&s, s.req(Method::DELETE, &format!("{db}/collections/items/documents/n2")), ok).await;
    sp.call(&s, s.req_as(&reader, Method::DELETE, &format!("{db}/collections/items/documents/n1")), StatusCode::FORBIDDEN).await;
    sp.call(&s, s.req(Method::PUT, &format!("{db}/schema")).json(&json!({"version": 1, "tables": ["items"]})), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/schema?branch=main")), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/commits?limit=3&offset=1")), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/commits?branch=nope")), StatusCode::NOT_FOUND).await;
    sp.call(&s, s.req(Method::POST, &format!("{db}/branches/dev")).json(&json!({"from": "main"})), StatusCode::CREATED).await;
    sp.call(&s, s.req(Method::POST, &format!("{db}/branches/dev")), StatusCode::CONFLICT).await;
    sp.call(&s, s.req(Method::POST, &format!("{db}/branches/x")).json(&json!({"from": "nothing"})), StatusCode::NOT_FOUND).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/branches")), ok).await;
    sp.call(&s, s.req(Method::GET, &format!("{db}/branches/dev")), ok).await;
    sp.call(&s, s.req(Method::POST, &format!("{db}/collections/items/documents?branch=dev")).json(&json!([{"id": "d"}])), StatusCode::CREATED).await;

    // Backups: a plain one, its link, download, content, verify, restore and import.
    let backup = json!({"id": "b1", "name": "first", "databases": ["acme/shop"], "encryption": "none"});
    let rec = sp.call(&s, s.req(Method::POST, "/api/v1/backups").json(&backup), StatusCode::ACCEPTED).await;
    assert_eq!(rec["status"], "scheduled");
    sp.call(&s, s.req(Method::POST, "/api/v1/backups").json(&backup), StatusCode::CONFLICT).await;
    let weak = json!({"databases": ["acme/shop"], "passphrase": "secret"});
    sp.call(&s, s.req(Method::POST, "/api/v1/backups").json(&weak), StatusCode::UNPROCESSABLE_ENTITY).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/backups").json(&json!({"databases": ["acme/nope"]})), StatusCode::NOT_FOUND).await;
    let done = sp.wait(&s, "/api/v1/backups/b1").await;
    assert_eq!(done["status"], "done", "{done}");
    // A sealed one (the server's keys), with a filter.
    let sealed = json!({"id": "b2", "databases": ["acme/shop"], "include": ["items"], "method": "periodic"});
    sp.call(&s, s.req(Method::POST, "/api/v1/backups").json(&sealed), StatusCode::ACCEPTED).await;
    assert_eq!(sp.wait(&s, "/api/v1/backups/b2").await["status"], "done");
    sp.call(&s, s.req(Method::GET, "/api/v1/backups?status=done&database=acme/shop&limit=1"), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/backups?org=acme&offset=1"), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/backups?status=sleeping"), StatusCode::BAD_REQUEST).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/backups/nope"), StatusCode::NOT_FOUND).await;
    let link = sp.call(&s, s.req(Method::POST, "/api/v1/backups/b1/link").json(&json!({"expires_in": 600})), ok).await;
    let bundle = sp.bytes(&s, s.client.get(s.url(link["path"].as_str().unwrap())), ok).await;
    assert!(!bundle.is_empty());
    let forged = link["path"].as_str().unwrap().replace("sig=", "sig=0");
    sp.call(&s, s.client.get(s.url(&forged)), StatusCode::FORBIDDEN).await;
    sp.bytes(&s, s.req(Method::GET, "/api/v1/backups/b2/content?database=acme/shop"), ok).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/backups/b2/content?database=acme/other"), StatusCode::NOT_FOUND).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/backups/b1/verify"), ok).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/backups/b2/verify").json(&json!({})), ok).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/backups/b1/restore"), StatusCode::CONFLICT).await;
    let restore = sp.call(&s, s.req(Method::POST, "/api/v1/backups/b2/restore").json(&json!({"target": "acme/copy"})), StatusCode::ACCEPTED).await;
    let restored = sp.wait(&s, &format!("/api/v1/restores/{}", restore["id"].as_str().unwrap())).await;
    assert_eq!(restored["status"], "done", "{restored}");
    sp.call(&s, s.req(Method::GET, "/api/v1/restores/nope"), StatusCode::NOT_FOUND).await;
    let imported =
        sp.call(&s, s.req(Method::POST, "/api/v1/backups/import?database=acme/imported&id=imp&name=upload").body(bundle.clone()), StatusCode::CREATED).await;
    assert_eq!(imported["method"], "import");
    sp.call(&s, s.req(Method::POST, "/api/v1/backups/import?database=acme/imported&id=imp").body(bundle), StatusCode::CONFLICT).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/backups/import?database=acme/junk").body("not a bundle"), StatusCode::UNPROCESSABLE_ENTITY).await;
    sp.call(&s, s.req(Method::POST, "/api/v1/backups/import"), StatusCode::BAD_REQUEST).await;
    sp.call(&s, s.req_as(&reader, Method::DELETE, "/api/v1/backups/imp"), StatusCode::FORBIDDEN).await;
    sp.call(&s, s.req(Method::DELETE, "/api/v1/backups/imp"), StatusCode::NO_CONTENT).await;
    sp.call(&s, s.req(Method::DELETE, "/api/v1/databases/acme/copy"), StatusCode::NO_CONTENT).await;
    sp.call(&s, s.req(Method::GET, "/api/v1/databases/acme/copy"), StatusCode::NOT_FOUND).await;

    // Every operation of the document was seen answering at least once.
    let seen = spec.seen.lock().unwrap().clone();
    let answered: BTreeSet<String> = seen.iter().map(|k| k.rsplit_once(' ').unwrap().0.to_string()).collect();
    for r in coffer::server::api::openapi::ROUTES {
        let key = format!("{} {}", r.method.to_uppercase(), r.path);
        assert!(answered.contains(&key), "{key} never exercised");
    }
    s.stop().await;
}

/// A body above `max_body` is 413, documented on the operations that take one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_is_documented() {
    let s = TestServer::start_with(|c| c.max_body = 1024).await;
    let spec = Spec::fetch(&s).await;
    spec.call(&s, s.req(Method::POST, "/api/v1/orgs/acme"), StatusCode::CREATED).await;
    spec.call(&s, s.req(Method::POST, "/api/v1/databases/acme/db"), StatusCode::CREATED).await;
    let big = json!([{"id": "a", "pad": "x".repeat(4096)}]);
    spec.call(&s, s.req(Method::POST, "/api/v1/databases/acme/db/collections/c/documents").json(&big), StatusCode::PAYLOAD_TOO_LARGE).await;
    spec.call(&s, s.req(Method::PUT, "/api/v1/databases/acme/db/collections/c/documents/a").json(&big[0]), StatusCode::PAYLOAD_TOO_LARGE).await;
    s.stop().await;
}
