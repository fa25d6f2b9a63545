//! The route table [`ROUTES`], from which both the router
//! ([`super::router`]) and the OpenAPI 3.1 document are built, so neither
//! has a route the other lacks; the document's schemas are those utoipa
//! derives from the types the handlers (de)serialize.
//!
//! Every JSON body is a component schema referenced by `$ref`; every error
//! status is a component response whose body is the `Error` schema
//! (`{"code","message"}`, `code` one of [`all_codes`]). tests/server_openapi.rs
//! checks the document's references and validates live responses against it.

use std::collections::BTreeSet;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Json;
use serde_json::Value;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::admin::{CreateToken, CreateUser, NewToken, Org, OrgList, TokenList, UserList, WhoAmI};
use super::backups::{
    BackupList, CreateBackup, DownloadQuery, FileQuery, ImportQuery, Link, LinkRequest, ListQuery, RestoreRequest, VerifyReport, VerifyRequest,
};
use super::data::{
    BranchList, BranchQuery, CollectionList, CommitList, CommitPage, CommitResult, CreateBranch, CreateDatabase, DatabaseList, DocumentPage, Inserted, Page,
    WriteQuery,
};
use super::{admin, backups, data, Auth, Health};
use crate::server::error::{all_codes, status_of, Body as ErrorBody};
use crate::server::store::auth::User;
use crate::server::store::data::DatabaseInfo;
use crate::server::store::jobs::{BackupRecord, RestoreRecord};
use crate::server::AppState;

/// Component schemas collected while the document is built.
pub type Schemas = Vec<(String, RefOr<Schema>)>;

/// Registers the schemas a body needs and returns the body's schema.
pub type SchemaFn = fn(&mut Schemas) -> RefOr<Schema>;

/// A named type: a component, referenced by `$ref`.
fn named<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
    Ref::from_schema_name(T::name()).into()
}

/// Any JSON value.
fn any_value(_: &mut Schemas) -> RefOr<Schema> {
    Value::schema()
}

/// A JSON object with any members (a document, a configuration).
fn any_object(_: &mut Schemas) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::Object).into()
}

/// A string schema with a fixed set of values (the enums of the records).
pub fn string_enum<'a>(description: &str, values: impl IntoIterator<Item = &'a str>) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description)).enum_values(Some(values)).into()
}

/// What a request carries.
pub enum Input {
    /// No body.
    None,
    /// A JSON body; `true` when it must be there (else an empty body means the defaults).
    Json(SchemaFn, bool),
    /// Documents: a JSON array of objects, or NDJSON.
    Documents,
    /// Raw bytes (`application/octet-stream`).
    Bytes,
}

/// What a successful response carries.
pub enum Output {
    /// No body (204).
    Empty,
    /// A JSON body.
    Json(SchemaFn),
    /// Raw bytes (`application/octet-stream`), a sealed or plain bundle.
    Bytes,
    /// Prometheus text.
    Text,
}

/// One documented operation.
pub struct Route {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path (axum syntax, `{param}`).
    pub path: &'static str,
    /// `operationId`.
    pub id: &'static str,
    /// The handler: the router is built from this table.
    pub handler: fn() -> MethodRouter<AppState>,
    /// Summary.
    pub summary: &'static str,
    /// Least role (`none` for unauthenticated routes, `any` for any caller).
    pub role: &'static str,
    /// Query parameters (and headers), from the handler's query type.
    pub params: Option<fn() -> Vec<Parameter>>,
    /// Request body.
    pub input: Input,
    /// Success status.
    pub status: u16,
    /// Success body.
    pub output: Output,
    /// Error statuses the operation can return.
    pub errors: &'static [u16],
}

/// Statuses of any authenticated operation: credentials, storage.
const AUTH: &[u16] = &[401, 500];
/// A read of a resource named in the path: malformed path or query, role, not found.
const READ: &[u16] = &[400, 401, 403, 404, 500];
/// A write of one commit: as a read, plus a body or change set too large.
const WRITE: &[u16] = &[400, 401, 403, 404, 413, 500];
/// A creation: as a write, plus the resource existing already.
const CREATE: &[u16] = &[400, 401, 403, 404, 409, 413, 500];
/// An operation on a backup's content: as a read, plus a backup not done.
const CONTENT: &[u16] = &[400, 401, 403, 404, 409, 500];
/// An operation that opens sealed content: as a creation, plus a wrong key or corrupt content.
const SEALED: &[u16] = &[400, 401, 403, 404, 409, 413, 422, 500];

const BASE: Route = Route {
    method: "get",
    path: "",
    id: "",
    handler: MethodRouter::new,
    summary: "",
    role: "reader",
    params: None,
    input: Input::None,
    status: 200,
    output: Output::Empty,
    errors: READ,
};

fn query<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

fn import_params() -> Vec<Parameter> {
    let mut params = query::<ImportQuery>();
    params.push(
        ParameterBuilder::new()
            .name(super::backups::PASSPHRASE_HEADER)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some("Passphrase of a bundle sealed with one, to open and check it to the end (never in the query: URLs get logged)."))
            .schema(Some(
                ObjectBuilder::new().schema_type(Type::String).format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Password))),
            ))
            .build(),
    );
    params
}

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/healthz",
        id: "healthz",
        handler: || get(super::healthz),
        summary: "Liveness (no authentication)",
        role: "none",
        output: Output::Json(named::<Health>),
        errors: &[],
        ..BASE
    },
    Route {
        path: "/metrics",
        id: "metrics",
        handler: || get(super::metrics),
        summary: "Prometheus metrics",
        role: "any",
        output: Output::Text,
        errors: AUTH,
        ..BASE
    },
    Route {
        path: "/api/v1/openapi.json",
        id: "openapi",
        handler: || get(document),
        summary: "This document",
        role: "any",
        output: Output::Json(any_object),
        errors: AUTH,
        ..BASE
    },
    Route {
        path: "/api/v1/whoami",
        id: "whoami",
        handler: || get(admin::whoami),
        summary: "The authenticated caller",
        role: "any",
        output: Output::Json(named::<WhoAmI>),
        errors: AUTH,
        ..BASE
    },
    Route {
        path: "/api/v1/orgs",
        id: "listOrgs",
        handler: || get(admin::list_orgs),
        summary: "Organizations visible to the caller",
        role: "any",
        output: Output::Json(named::<OrgList>),
        errors: AUTH,
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/orgs/{org}",
        id: "createOrg",
        handler: || post(admin::create_org),
        summary: "Create an organization (server administrator)",
        role: "server administrator",
        status: 201,
        output: Output::Json(named::<Org>),
        errors: &[400, 401, 403, 409, 500],
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/orgs/{org}/users",
        id: "createUser",
        handler: || post(admin::create_user),
        summary: "Create a user",
        role: "admin",
        input: Input::Json(named::<CreateUser>, true),
        status: 201,
        output: Output::Json(named::<User>),
        errors: &[400, 401, 403, 404, 409, 413, 422, 500],
        ..BASE
    },
    Route {
        path: "/api/v1/orgs/{org}/users",
        id: "listUsers",
        handler: || get(admin::list_users),
        summary: "List users",
        role: "admin",
        output: Output::Json(named::<UserList>),
        errors: &[400, 401, 403, 500],
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/tokens",
        id: "createToken",
        handler: || post(admin::create_token),
        summary: "Create an API token (its secret is shown once)",
        role: "any",
        input: Input::Json(named::<CreateToken>, false),
        status: 201,
        output: Output::Json(named::<NewToken>),
        errors: &[400, 401, 403, 404, 413, 500],
        ..BASE
    },
    Route {
        path: "/api/v1/tokens",
        id: "listTokens",
        handler: || get(admin::list_tokens),
        summary: "List the caller's tokens (never the secrets)",
        role: "any",
        output: Output::Json(named::<TokenList>),
        errors: AUTH,
        ..BASE
    },
    Route {
        method: "delete",
        path: "/api/v1/tokens/{id}",
        id: "deleteToken",
        handler: || delete(admin::delete_token),
        summary: "Revoke one of the caller's tokens",
        role: "any",
        status: 204,
        errors: &[400, 401, 404, 500],
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}",
        id: "listDatabases",
        handler: || get(data::list_databases),
        summary: "List databases",
        output: Output::Json(named::<DatabaseList>),
        errors: &[400, 401, 403, 500],
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/databases/{org}/{db}",
        id: "createDatabase",
        handler: || post(data::create_database),
        summary: "Create a database",
        role: "admin",
        input: Input::Json(named::<CreateDatabase>, false),
        status: 201,
        output: Output::Json(named::<DatabaseInfo>),
        errors: CREATE,
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}",
        id: "getDatabase",
        handler: || get(data::get_database),
        summary: "Database info: counts, head commit",
        output: Output::Json(named::<DatabaseInfo>),
        ..BASE
    },
    Route {
        method: "delete",
        path: "/api/v1/databases/{org}/{db}",
        id: "deleteDatabase",
        handler: || delete(data::delete_database),
        summary: "Delete a database",
        role: "admin",
        status: 204,
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/schema",
        id: "getSchema",
        handler: || get(data::get_schema),
        summary: "Read the schema (any JSON value; null when none was set)",
        params: Some(query::<BranchQuery>),
        output: Output::Json(any_value),
        ..BASE
    },
    Route {
        method: "put",
        path: "/api/v1/databases/{org}/{db}/schema",
        id: "putSchema",
        handler: || put(data::put_schema),
        summary: "Replace the schema (one commit)",
        role: "admin",
        params: Some(query::<WriteQuery>),
        input: Input::Json(any_value, true),
        output: Output::Json(named::<CommitResult>),
        errors: WRITE,
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/collections",
        id: "listCollections",
        handler: || get(data::list_collections),
        summary: "List collections",
        params: Some(query::<BranchQuery>),
        output: Output::Json(named::<CollectionList>),
        ..BASE
    },
    Route {
        method: "put",
        path: "/api/v1/databases/{org}/{db}/collections/{name}",
        id: "putCollection",
        handler: || put(data::put_collection),
        summary: "Create or configure a collection (one commit); the body is its configuration",
        role: "admin",
        params: Some(query::<WriteQuery>),
        input: Input::Json(any_object, false),
        output: Output::Json(named::<CommitResult>),
        errors: WRITE,
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/collections/{name}",
        id: "getCollection",
        handler: || get(data::get_collection),
        summary: "A collection's config and count",
        params: Some(query::<BranchQuery>),
        output: Output::Json(named::<super::data::Collection>),
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/databases/{org}/{db}/collections/{name}/documents",
        id: "insertDocuments",
        handler: || post(data::post_documents),
        summary: "Insert documents (one commit; the collection is created if needed)",
        role: "admin",
        params: Some(query::<WriteQuery>),
        input: Input::Documents,
        status: 201,
        output: Output::Json(named::<Inserted>),
        errors: WRITE,
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/collections/{name}/documents",
        id: "listDocuments",
        handler: || get(data::list_documents),
        summary: "List documents in id order, a page at a time",
        params: Some(query::<Page>),
        output: Output::Json(named::<DocumentPage>),
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/collections/{name}/documents/{id}",
        id: "getDocument",
        handler: || get(data::get_document),
        summary: "Read a document",
        params: Some(query::<BranchQuery>),
        output: Output::Json(any_object),
        ..BASE
    },
    Route {
        method: "put",
        path: "/api/v1/databases/{org}/{db}/collections/{name}/documents/{id}",
        id: "putDocument",
        handler: || put(data::put_document),
        summary: "Replace a document (one commit)",
        role: "admin",
        params: Some(query::<WriteQuery>),
        input: Input::Json(any_object, true),
        output: Output::Json(named::<CommitResult>),
        errors: WRITE,
        ..BASE
    },
    Route {
        method: "delete",
        path: "/api/v1/databases/{org}/{db}/collections/{name}/documents/{id}",
        id: "deleteDocument",
        handler: || delete(data::delete_document),
        summary: "Delete a document (one commit)",
        role: "admin",
        params: Some(query::<WriteQuery>),
        output: Output::Json(named::<CommitResult>),
        errors: READ,
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/commits",
        id: "listCommits",
        handler: || get(data::list_commits),
        summary: "History, newest first",
        params: Some(query::<CommitPage>),
        output: Output::Json(named::<CommitList>),
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/branches",
        id: "listBranches",
        handler: || get(data::list_branches),
        summary: "List branches",
        output: Output::Json(named::<BranchList>),
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/databases/{org}/{db}/branches/{branch}",
        id: "createBranch",
        handler: || post(data::create_branch),
        summary: "Create a branch from a commit or a branch",
        role: "admin",
        input: Input::Json(named::<CreateBranch>, false),
        status: 201,
        output: Output::Json(named::<super::data::Branch>),
        errors: CREATE,
        ..BASE
    },
    Route {
        path: "/api/v1/databases/{org}/{db}/branches/{branch}",
        id: "getBranch",
        handler: || get(data::get_branch),
        summary: "A branch's head",
        output: Output::Json(named::<super::data::Branch>),
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/backups",
        id: "createBackup",
        handler: || post(backups::create),
        summary: "Start a backup (a job: poll its record)",
        role: "operator",
        input: Input::Json(named::<CreateBackup>, true),
        status: 202,
        output: Output::Json(named::<BackupRecord>),
        errors: &[400, 401, 403, 404, 409, 413, 422, 500],
        ..BASE
    },
    Route {
        path: "/api/v1/backups",
        id: "listBackups",
        handler: || get(backups::list),
        summary: "List backups, newest first",
        params: Some(query::<ListQuery>),
        output: Output::Json(named::<BackupList>),
        errors: &[400, 401, 403, 500],
        ..BASE
    },
    Route {
        path: "/api/v1/backups/{id}",
        id: "getBackup",
        handler: || get(backups::get),
        summary: "A backup record with status and progress",
        output: Output::Json(named::<BackupRecord>),
        ..BASE
    },
    Route {
        method: "delete",
        path: "/api/v1/backups/{id}",
        id: "deleteBackup",
        handler: || delete(backups::delete),
        summary: "Delete a finished backup and its content",
        role: "operator",
        status: 204,
        errors: CONTENT,
        ..BASE
    },
    Route {
        path: "/api/v1/backups/{id}/content",
        id: "getBackupContent",
        handler: || get(backups::content),
        summary: "One file of the backup (a sealed bundle), streamed",
        role: "operator",
        params: Some(query::<FileQuery>),
        output: Output::Bytes,
        errors: CONTENT,
        ..BASE
    },
    Route {
        path: "/api/v1/backups/{id}/download",
        id: "downloadBackup",
        handler: || get(backups::download),
        summary: "Signed link target (no credentials: the signature is the authorization)",
        role: "none",
        params: Some(query::<DownloadQuery>),
        output: Output::Bytes,
        errors: &[400, 403, 404, 409, 500],
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/backups/{id}/link",
        id: "linkBackup",
        handler: || post(backups::link),
        summary: "A signed, expiring download URL",
        role: "operator",
        input: Input::Json(named::<LinkRequest>, false),
        output: Output::Json(named::<Link>),
        errors: &[400, 401, 403, 404, 409, 413, 500],
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/backups/{id}/verify",
        id: "verifyBackup",
        handler: || post(backups::verify),
        summary: "Re-read every file: stored bytes, every seal tag, every bundle hash and digest",
        role: "operator",
        input: Input::Json(named::<VerifyRequest>, false),
        output: Output::Json(named::<VerifyReport>),
        errors: SEALED,
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/backups/{id}/restore",
        id: "restoreBackup",
        handler: || post(backups::restore),
        summary: "Start a restore (a job: poll its record)",
        role: "operator",
        input: Input::Json(named::<RestoreRequest>, false),
        status: 202,
        output: Output::Json(named::<RestoreRecord>),
        errors: SEALED,
        ..BASE
    },
    Route {
        path: "/api/v1/restores/{id}",
        id: "getRestore",
        handler: || get(backups::get_restore),
        summary: "A restore record with status and counts",
        output: Output::Json(named::<RestoreRecord>),
        ..BASE
    },
    Route {
        method: "post",
        path: "/api/v1/backups/import",
        id: "importBackup",
        handler: || post(backups::import).layer(DefaultBodyLimit::disable()),
        summary: "Upload a bundle (sealed or plain); it is checked to the end before it is listed",
        role: "operator",
        params: Some(import_params),
        input: Input::Bytes,
        status: 201,
        output: Output::Json(named::<BackupRecord>),
        errors: &[400, 401, 403, 409, 413, 422, 500],
    },
];

fn method(m: &str) -> HttpMethod {
    match m {
        "post" => HttpMethod::Post,
        "put" => HttpMethod::Put,
        "delete" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// The name of the component response of an error status.
pub fn error_response_name(status: u16) -> String {
    format!("Error{status}")
}

/// The component response of an error status: its codes and the `Error` body.
fn error_response(status: u16) -> Response {
    let codes: Vec<&str> = all_codes().filter(|c| status_of(c).as_u16() == status).collect();
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error");
    ResponseBuilder::new()
        .description(format!("{reason}: `code` is {}.", codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" or ")))
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build())
        .build()
}

/// The schema of a path parameter, by name and the segment before it.
fn path_parameter(name: &str, parent: &str) -> Parameter {
    const SLUG: &str = "^[a-z0-9_-]{1,128}$";
    const KEY: &str = "^[A-Za-z0-9_-]{1,128}$";
    let (description, pattern) = match (name, parent) {
        ("org", _) => ("Organization", Some(SLUG)),
        ("db", _) => ("Database", Some(SLUG)),
        ("name", _) => (
            "Collection: 1..=128 characters of `[A-Za-z0-9_.-]`, not starting with `.`, not ending in `.config`, not a reserved name",
            Some("^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"),
        ),
        ("branch", _) => ("Branch: 1..=128 characters of `[A-Za-z0-9_.-]`, not starting with `.`", Some("^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")),
        ("id", "documents") => ("Document id: 1..=1024 bytes without control characters", Some("^[^\\u0000-\\u001f\\u007f-\\u009f]+$")),
        ("id", "tokens") => ("Token id", Some(KEY)),
        ("id", "restores") => ("Restore id", Some(KEY)),
        _ => ("Backup id", Some(KEY)),
    };
    let mut schema = ObjectBuilder::new().schema_type(Type::String);
    if let Some(p) = pattern {
        schema = schema.pattern(Some(p));
    }
    ParameterBuilder::new().name(name).parameter_in(ParameterIn::Path).required(Required::True).description(Some(description)).schema(Some(schema)).build()
}

fn bytes_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).content_media_type("application/octet-stream")
}

fn tag(path: &str) -> &'static str {
    if path.contains("/backups") || path.contains("/restores") {
        "backups"
    } else if path.contains("/databases") {
        "data"
    } else if path.contains("/orgs") || path.contains("/tokens") || path.ends_with("/whoami") {
        "access"
    } else {
        "server"
    }
}

/// Builds the document.
pub fn build() -> OpenApi {
    let mut schemas: Schemas = Vec::new();
    named::<ErrorBody>(&mut schemas);
    let mut statuses = BTreeSet::new();
    let mut paths = PathsBuilder::new();
    for r in ROUTES {
        let mut description = match r.role {
            "none" => "No authentication.".to_string(),
            "any" => "Any authenticated caller.".to_string(),
            role => format!("Least role: {role}."),
        };
        if matches!(r.input, Input::Bytes) {
            description.push_str(" The body is streamed; its limit is `max_upload`, not `max_body`.");
        }
        let mut op = OperationBuilder::new().operation_id(Some(r.id)).summary(Some(r.summary)).description(Some(description)).tag(tag(r.path));
        let segments: Vec<&str> = r.path.split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                op = op.parameter(path_parameter(name, segments[i - 1]));
            }
        }
        if let Some(params) = r.params {
            op = op.parameters(Some(params()));
        }
        match r.input {
            Input::None => {}
            Input::Json(schema, required) => {
                let body = RequestBodyBuilder::new()
                    .required(Some(if required { Required::True } else { Required::False }))
                    .content("application/json", ContentBuilder::new().schema(Some(schema(&mut schemas))).build());
                let body = if required { body } else { body.description(Some("Optional: an empty body means every default.")) };
                op = op.request_body(Some(body.build()));
            }
            Input::Documents => {
                let array = ArrayBuilder::new().items(any_object(&mut schemas)).min_items(Some(1));
                let ndjson = ObjectBuilder::new().schema_type(Type::String).description(Some("One JSON object a line (blank lines are skipped)."));
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .description(Some("Documents, each with its id in `id` or `@id` (a string or a number): a JSON array, or NDJSON (told apart by the first character, not by the media type)."))
                        .content("application/json", ContentBuilder::new().schema(Some(array)).build())
                        .content("application/x-ndjson", ContentBuilder::new().schema(Some(ndjson)).build())
                        .build(),
                ));
            }
            Input::Bytes => {
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content("application/octet-stream", ContentBuilder::new().schema(Some(bytes_schema())).build())
                        .build(),
                ));
            }
        }
        let success = StatusCode::from_u16(r.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("success");
        let response = match r.output {
            Output::Empty => ResponseBuilder::new().description(success),
            Output::Json(schema) => {
                ResponseBuilder::new().description(success).content("application/json", ContentBuilder::new().schema(Some(schema(&mut schemas))).build())
            }
            Output::Bytes => ResponseBuilder::new()
                .description(format!("{success}: the file, with `Content-Disposition: attachment` and `Content-Length`"))
                .content("application/octet-stream", ContentBuilder::new().schema(Some(bytes_schema())).build()),
            Output::Text => ResponseBuilder::new()
                .description(format!("{success}: Prometheus text exposition format 0.0.4"))
                .content("text/plain", ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).build()),
        };
        op = op.response(r.status.to_string(), response);
        for status in r.errors {
            statuses.insert(*status);
            op = op.response(status.to_string(), Ref::from_response_name(error_response_name(*status)));
        }
        if r.role != "none" {
            op = op.security(SecurityRequirement::new("basic", Vec::<String>::new())).security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        paths = paths.path(r.path, PathItemBuilder::new().operation(method(r.method), op.build()).build());
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)))
        .security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    for status in statuses {
        components = components.response(error_response_name(status), error_response(status));
    }
    // The same type may be collected many times; its schema is the same each time.
    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    schemas.dedup_by(|a, b| a.0 == b.0);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("coffer serve")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Native API of the coffer server: databases with history, users and tokens, backups and restores.")),
        )
        .paths(paths)
        .components(Some(components.schemas_from_iter(schemas).build()))
        .build()
}

pub async fn document(State(_): State<AppState>, Auth(_): Auth) -> impl IntoResponse {
    Json(build())
}
