//! The OpenAPI 3.1 document, built with utoipa from [`ROUTES`], the table
//! the router is checked against (a test compares the two).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Required};

use super::Auth;
use crate::server::AppState;

/// One documented operation.
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path (axum syntax, `{param}`).
    pub path: &'static str,
    /// Summary.
    pub summary: &'static str,
    /// Least role (`none` for unauthenticated routes).
    pub role: &'static str,
    /// Request body media type, if any.
    pub body: Option<&'static str>,
    /// Success status.
    pub status: &'static str,
}

const JSON: Option<&str> = Some("application/json");

macro_rules! routes {
    ($(($m:literal, $p:literal, $s:literal, $r:literal, $b:expr, $st:literal)),* $(,)?) => {
        /// Every route of the server.
        pub const ROUTES: &[Route] = &[$(Route { method: $m, path: $p, summary: $s, role: $r, body: $b, status: $st }),*];
    };
}

routes![
    ("get", "/healthz", "Liveness (no authentication)", "none", None, "200"),
    ("get", "/metrics", "Prometheus metrics", "any", None, "200"),
    ("get", "/api/v1/openapi.json", "This document", "any", None, "200"),
    ("get", "/api/v1/whoami", "The authenticated caller", "any", None, "200"),
    ("get", "/api/v1/orgs", "Organizations visible to the caller", "any", None, "200"),
    ("post", "/api/v1/orgs/{org}", "Create an organization (server administrator)", "server_admin", None, "201"),
    ("post", "/api/v1/orgs/{org}/users", "Create a user {name, password, email, role}", "admin", JSON, "201"),
    ("get", "/api/v1/orgs/{org}/users", "List users", "admin", None, "200"),
    ("post", "/api/v1/tokens", "Create an API token {name, org, role, expires_in}; shown once", "any", JSON, "201"),
    ("get", "/api/v1/tokens", "List the caller's tokens (never the secrets)", "any", None, "200"),
    ("delete", "/api/v1/tokens/{id}", "Revoke a token", "any", None, "204"),
    ("get", "/api/v1/databases/{org}", "List databases", "reader", None, "200"),
    ("post", "/api/v1/databases/{org}/{db}", "Create a database {label, comment}", "admin", JSON, "201"),
    ("get", "/api/v1/databases/{org}/{db}", "Database info: counts, head commit", "reader", None, "200"),
    ("delete", "/api/v1/databases/{org}/{db}", "Delete a database", "admin", None, "204"),
    ("get", "/api/v1/databases/{org}/{db}/schema", "Read the schema (?branch=)", "reader", None, "200"),
    ("put", "/api/v1/databases/{org}/{db}/schema", "Replace the schema (one commit)", "admin", JSON, "200"),
    ("get", "/api/v1/databases/{org}/{db}/collections", "List collections (?branch=)", "reader", None, "200"),
    ("put", "/api/v1/databases/{org}/{db}/collections/{name}", "Create or configure a collection (one commit)", "admin", JSON, "200"),
    ("get", "/api/v1/databases/{org}/{db}/collections/{name}", "A collection's config and count", "reader", None, "200"),
    ("post", "/api/v1/databases/{org}/{db}/collections/{name}/documents", "Insert a JSON array or NDJSON (one commit)", "admin", JSON, "201"),
    ("get", "/api/v1/databases/{org}/{db}/collections/{name}/documents", "List documents (?after=&limit=&branch=)", "reader", None, "200"),
    ("get", "/api/v1/databases/{org}/{db}/collections/{name}/documents/{id}", "Read a document", "reader", None, "200"),
    ("put", "/api/v1/databases/{org}/{db}/collections/{name}/documents/{id}", "Replace a document (one commit)", "admin", JSON, "200"),
    ("delete", "/api/v1/databases/{org}/{db}/collections/{name}/documents/{id}", "Delete a document (one commit)", "admin", None, "200"),
    ("get", "/api/v1/databases/{org}/{db}/commits", "History, newest first (?branch=&offset=&limit=)", "reader", None, "200"),
    ("get", "/api/v1/databases/{org}/{db}/branches", "List branches", "reader", None, "200"),
    ("post", "/api/v1/databases/{org}/{db}/branches/{branch}", "Create a branch {from: commit or branch}", "admin", JSON, "201"),
    ("get", "/api/v1/databases/{org}/{db}/branches/{branch}", "A branch's head", "reader", None, "200"),
    ("post", "/api/v1/backups", "Start a backup {id, name, databases, include|exclude, passphrase|recipients|encryption}", "operator", JSON, "202"),
    ("get", "/api/v1/backups", "List backups (?org=&database=&status=&offset=&limit=)", "reader", None, "200"),
    ("get", "/api/v1/backups/{id}", "A backup record with status and progress", "reader", None, "200"),
    ("delete", "/api/v1/backups/{id}", "Delete a backup", "operator", None, "204"),
    ("get", "/api/v1/backups/{id}/content", "The sealed bundle, streamed (?database=)", "operator", None, "200"),
    ("get", "/api/v1/backups/{id}/download", "Signed link target (?database=&expires=&sig=; no credentials)", "none", None, "200"),
    ("post", "/api/v1/backups/{id}/link", "A signed, expiring download URL {expires_in, database}", "operator", JSON, "200"),
    ("post", "/api/v1/backups/{id}/verify", "Re-read and check every tag and digest {passphrase}", "operator", JSON, "200"),
    ("post", "/api/v1/backups/{id}/restore", "Start a restore {target, include|exclude, overwrite, passphrase}", "operator", JSON, "202"),
    ("get", "/api/v1/restores/{id}", "A restore record with status and counts", "reader", None, "200"),
    (
        "post",
        "/api/v1/backups/import",
        "Upload a sealed bundle (?database=&id=&name=; X-Coffer-Passphrase)",
        "operator",
        Some("application/octet-stream"),
        "201"
    ),
];

fn method(m: &str) -> HttpMethod {
    match m {
        "post" => HttpMethod::Post,
        "put" => HttpMethod::Put,
        "delete" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// Builds the document.
pub fn build() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for r in ROUTES {
        let mut op = OperationBuilder::new()
            .summary(Some(r.summary))
            .description(Some(format!("Least role: {}.", r.role)))
            .response(r.status, ResponseBuilder::new().description("success"))
            .response("400", ResponseBuilder::new().description("INVALID_INPUT: {\"code\",\"message\"}"))
            .response("401", ResponseBuilder::new().description("UNAUTHORIZED"))
            .response("403", ResponseBuilder::new().description("FORBIDDEN"))
            .response("404", ResponseBuilder::new().description("NOT_FOUND"));
        for segment in r.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                op = op.parameter(ParameterBuilder::new().name(name).parameter_in(ParameterIn::Path).required(Required::True));
            }
        }
        if let Some(media) = r.body {
            op = op.request_body(Some(RequestBodyBuilder::new().content(media, ContentBuilder::new().build()).build()));
        }
        if r.role != "none" {
            op = op.security(SecurityRequirement::new("basic", Vec::<String>::new())).security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        paths = paths.path(r.path, PathItemBuilder::new().operation(method(r.method), op.build()).build());
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("coffer serve")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Native API of the coffer server: databases with history, users and tokens, backups and restores.")),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)))
                .security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
                .build(),
        ))
        .build()
}

pub async fn document(State(_): State<AppState>, Auth(_): Auth) -> impl IntoResponse {
    Json(build())
}
