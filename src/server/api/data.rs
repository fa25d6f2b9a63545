//! The data API: databases, collections, documents, commits, branches.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{sorted, ApiJson, ApiPath, ApiQuery, Auth};
use crate::server::error::{ApiError, ApiResult};
use crate::server::store::auth::Role;
use crate::server::store::data::{self, CommitInfo, DatabaseInfo, MAIN};
use crate::server::store::validate_slug;
use crate::server::AppState;
use crate::snapshot::{document_id, validate_collection_name, validate_id, Change};

/// Most documents one list call returns.
const MAX_PAGE: u32 = 1000;
/// Default page size.
const DEFAULT_PAGE: u32 = 100;

/// Parses an optional JSON body (empty → default).
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(serde_json::from_slice(body)?)
}

fn check_db(org: &str, db: &str) -> ApiResult<()> {
    validate_slug("organization", org)?;
    validate_slug("database", db)
}

/// Optional branch and message of a write.
#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    /// Branch written (default `main`).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    branch: Option<String>,
    /// Commit message (default: one describing the change).
    message: Option<String>,
}

impl WriteQuery {
    fn branch(&self) -> ApiResult<String> {
        branch_or_main(self.branch.as_deref())
    }
    fn message(&self, default: &str) -> String {
        self.message.clone().unwrap_or_else(|| default.to_string())
    }
}

/// Optional branch of a read.
#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BranchQuery {
    /// Branch read (default `main`).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    branch: Option<String>,
}

impl BranchQuery {
    fn branch(&self) -> ApiResult<String> {
        branch_or_main(self.branch.as_deref())
    }
}

fn branch_or_main(branch: Option<&str>) -> ApiResult<String> {
    let b = branch.unwrap_or(MAIN).to_string();
    data::validate_branch(&b)?;
    Ok(b)
}

/// Body of database creation.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatabase {
    /// Label.
    #[serde(default)]
    label: String,
    /// Comment.
    #[serde(default)]
    comment: String,
}

/// The schema of [`DatabaseInfo`] (built in the store): the fields it
/// serializes. tests/server_openapi.rs checks live responses against it.
#[derive(ToSchema)]
#[allow(dead_code)]
struct DatabaseInfoSchema {
    /// Organization.
    org: String,
    /// Name within the organization.
    name: String,
    /// Label.
    label: String,
    /// Comment.
    comment: String,
    /// Creation time (ms since the epoch).
    created_at: i64,
    /// Collections on `main`.
    collections: u64,
    /// Documents on `main`.
    documents: u64,
    /// Head commit of `main` (null before the first write).
    #[schema(required = true)]
    head: Option<String>,
}

impl utoipa::PartialSchema for DatabaseInfo {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        DatabaseInfoSchema::schema()
    }
}

impl ToSchema for DatabaseInfo {}

/// The schema of [`CommitInfo`] (built in the store), as for [`DatabaseInfoSchema`].
#[derive(ToSchema)]
#[allow(dead_code)]
struct CommitInfoSchema {
    /// Commit id.
    id: String,
    /// Parent ids (none for the first commit, two for a merge or a restore).
    parents: Vec<String>,
    /// Author (user name).
    author: String,
    /// Message.
    message: String,
    /// Time (ms since the epoch).
    timestamp: i64,
    /// Number of changes.
    changes: u64,
}

impl utoipa::PartialSchema for CommitInfo {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        CommitInfoSchema::schema()
    }
}

impl ToSchema for CommitInfo {}

/// Databases of an organization.
#[derive(Serialize, ToSchema)]
pub struct DatabaseList {
    /// Databases, by name.
    databases: Vec<DatabaseInfo>,
}

/// The commit a write made.
#[derive(Serialize, ToSchema)]
pub struct CommitResult {
    /// The new head of the branch.
    commit: CommitInfo,
}

/// A collection on a branch.
#[derive(Serialize, ToSchema)]
pub struct Collection {
    /// Name.
    name: String,
    /// Configuration (free-form JSON object).
    config: Map<String, Value>,
    /// Number of documents.
    documents: u64,
}

/// Collections of a branch.
#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    /// Collections, by name.
    collections: Vec<Collection>,
}

/// Result of an insert.
#[derive(Serialize, ToSchema)]
pub struct Inserted {
    /// Ids of the documents, in the order given.
    ids: Vec<String>,
    /// The commit.
    commit: CommitInfo,
}

/// A page of documents (the body is spliced from stored canonical JSON).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DocumentPage {
    /// Documents in id order.
    documents: Vec<Map<String, Value>>,
    /// Pass as `after` for the next page; null on the last page.
    #[schema(required = true)]
    next: Option<String>,
}

/// History of a branch.
#[derive(Serialize, ToSchema)]
pub struct CommitList {
    /// Commits, newest first.
    commits: Vec<CommitInfo>,
}

/// A branch and its head.
#[derive(Serialize, ToSchema)]
pub struct Branch {
    /// Name.
    name: String,
    /// Head commit (null in an empty database).
    #[schema(required = true)]
    head: Option<String>,
}

/// Branches of a database.
#[derive(Serialize, ToSchema)]
pub struct BranchList {
    /// Branches, by name.
    branches: Vec<Branch>,
}

pub async fn list_databases(State(s): State<AppState>, Auth(p): Auth, ApiPath(org): ApiPath<String>) -> ApiResult<impl IntoResponse> {
    validate_slug("organization", &org)?;
    p.require(&org, Role::Reader)?;
    let list = s.store.run(move |c| data::list_databases(c, &org)).await?;
    sorted(&DatabaseList { databases: list })
}

pub async fn create_database(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db)): ApiPath<(String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Admin)?;
    let body: CreateDatabase = optional_json(&body?)?;
    let info = s
        .store
        .run_write(move |tx| {
            if !crate::server::store::auth::org_exists(tx, &org)? {
                return Err(ApiError::not_found(format!("organization {org:?} not found")));
            }
            data::create_database(tx, &org, &db, &body.label, &body.comment)?;
            data::database_info(tx, &org, &db)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub async fn get_database(State(s): State<AppState>, Auth(p): Auth, ApiPath((org, db)): ApiPath<(String, String)>) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Reader)?;
    Ok(Json(s.store.run(move |c| data::database_info(c, &org, &db)).await?))
}

pub async fn delete_database(State(s): State<AppState>, Auth(p): Auth, ApiPath((org, db)): ApiPath<(String, String)>) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Admin)?;
    s.store.run_write(move |tx| data::delete_database(tx, &org, &db)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_schema(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<BranchQuery>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Reader)?;
    let branch = q.branch()?;
    Ok(Json(s.store.run(move |c| data::branch_schema(c, data::db_id(c, &org, &db)?, &branch)).await?))
}

pub async fn put_schema(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<WriteQuery>,
    ApiJson(schema): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Admin)?;
    let branch = q.branch()?;
    let message = q.message("set schema");
    let author = p.user.name.clone();
    let commit = s
        .store
        .run_write(move |tx| {
            let id = data::db_id(tx, &org, &db)?;
            data::commit(tx, id, &branch, &author, &message, vec![Change::Schema { schema }])
        })
        .await?;
    sorted(&CommitResult { commit })
}

pub async fn list_collections(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<BranchQuery>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Reader)?;
    let branch = q.branch()?;
    let list = s.store.run(move |c| data::list_collections(c, data::db_id(c, &org, &db)?, &branch)).await?;
    let collections = list.into_iter().map(|(name, config, documents)| Collection { name, config, documents }).collect();
    sorted(&CollectionList { collections })
}

pub async fn get_collection(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<BranchQuery>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    validate_collection_name(&name)?;
    p.require(&org, Role::Reader)?;
    let branch = q.branch()?;
    let list = s.store.run(move |c| data::list_collections(c, data::db_id(c, &org, &db)?, &branch)).await?;
    let (name, config, documents) = list.into_iter().find(|(n, _, _)| *n == name).ok_or_else(|| ApiError::not_found("collection not found"))?;
    sorted(&Collection { name, config, documents })
}

pub async fn put_collection(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<WriteQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    validate_collection_name(&name)?;
    p.require(&org, Role::Admin)?;
    let config: Map<String, Value> = optional_json(&body?)?;
    let branch = q.branch()?;
    let message = q.message(&format!("configure {name}"));
    let author = p.user.name.clone();
    let commit = s
        .store
        .run_write(move |tx| {
            let id = data::db_id(tx, &org, &db)?;
            data::commit(tx, id, &branch, &author, &message, vec![Change::Configure { collection: name, config }])
        })
        .await?;
    sorted(&CommitResult { commit })
}

/// Parses a JSON array or NDJSON.
fn parse_documents(body: &[u8]) -> ApiResult<Vec<Value>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let docs: Vec<Value> = match first {
        None => return Err(ApiError::invalid("no documents in the body")),
        Some(b'[') => serde_json::from_slice(body)?,
        Some(_) => {
            let mut out = Vec::new();
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                out.push(serde_json::from_slice(line).map_err(|e| ApiError::invalid(format!("line {}: malformed JSON: {e}", i + 1)))?);
            }
            out
        }
    };
    if docs.is_empty() {
        return Err(ApiError::invalid("no documents in the body"));
    }
    for d in &docs {
        if !d.is_object() {
            return Err(ApiError::invalid("every document must be a JSON object"));
        }
    }
    Ok(docs)
}

pub async fn post_documents(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<WriteQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    check_db(&org, &db)?;
    validate_collection_name(&name)?;
    p.require(&org, Role::Admin)?;
    let body = body?;
    let branch = q.branch()?;
    let author = p.user.name.clone();
    let message = q.message("");
    // Parsed before the store's writer lock is taken: a large batch must not
    // hold up the writers of other databases while its JSON is read.
    let docs = tokio::task::spawn_blocking(move || -> ApiResult<Vec<(String, Value)>> {
        parse_documents(&body)?.into_iter().map(|doc| Ok((document_id(&doc)?, doc))).collect()
    })
    .await??;
    let (ids, commit) = s
        .store
        .run_write(move |tx| {
            let mut ids = Vec::with_capacity(docs.len());
            let mut changes = Vec::with_capacity(docs.len() + 1);
            let id = data::db_id(tx, &org, &db)?;
            data::branch_head(tx, id, &branch)?;
            if !data::collection_exists(tx, id, &branch, &name)? {
                changes.push(Change::Configure { collection: name.clone(), config: Map::new() });
            }
            for (doc_id, doc) in docs {
                ids.push(doc_id.clone());
                changes.push(Change::Put { collection: name.clone(), id: doc_id, document: doc });
            }
            let message = if message.is_empty() { format!("insert {} documents into {name}", ids.len()) } else { message };
            let commit = data::commit(tx, id, &branch, &author, &message, changes)?;
            Ok((ids, commit))
        })
        .await?;
    Ok((StatusCode::CREATED, sorted(&Inserted { ids, commit })?).into_response())
}

/// Paging of documents.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Start after this document id (the previous page's `next`).
    after: Option<String>,
    /// Page size, 1..=1000 (default 100; values outside are clamped).
    limit: Option<u32>,
    /// Branch read (default `main`).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    branch: Option<String>,
}

pub async fn list_documents(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<Page>,
) -> ApiResult<Response> {
    check_db(&org, &db)?;
    validate_collection_name(&name)?;
    p.require(&org, Role::Reader)?;
    let branch = q.branch.unwrap_or_else(|| MAIN.into());
    data::validate_branch(&branch)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = q.after.unwrap_or_default();
    let rows = s.store.run(move |c| data::list_documents(c, data::db_id(c, &org, &db)?, &branch, &name, &after, limit)).await?;
    // Stored documents are canonical JSON already: splice them in.
    let mut out = String::from("{\"documents\":[");
    for (i, (_, body)) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(body);
    }
    out.push_str("],\"next\":");
    match rows.last().filter(|_| rows.len() as u32 == limit) {
        Some((id, _)) => out.push_str(&serde_json::to_string(id)?),
        None => out.push_str("null"),
    }
    out.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

pub async fn get_document(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, name, id)): ApiPath<(String, String, String, String)>,
    ApiQuery(q): ApiQuery<BranchQuery>,
) -> ApiResult<Response> {
    check_db(&org, &db)?;
    validate_collection_name(&name)?;
    validate_id("document", &id)?;
    p.require(&org, Role::Reader)?;
    let branch = q.branch()?;
    let body = s.store.run(move |c| data::get_document(c, data::db_id(c, &org, &db)?, &branch, &name, &id)).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn put_document(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, name, id)): ApiPath<(String, String, String, String)>,
    ApiQuery(q): ApiQuery<WriteQuery>,
    ApiJson(doc): ApiJson<Value>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    validate_collection_name(&name)?;
    validate_id("document", &id)?;
    p.require(&org, Role::Admin)?;
    let Value::Object(map) = &doc else { return Err(ApiError::invalid("a document must be a JSON object")) };
    for key in ["id", "@id"] {
        if let Some(v) = map.get(key) {
            if !v.is_null() && document_id(&json!({ key: v }))? != id {
                return Err(ApiError::invalid(format!("the document's {key:?} differs from the id in the path")));
            }
        }
    }
    let branch = q.branch()?;
    let message = q.message(&format!("put {name}/{id}"));
    let author = p.user.name.clone();
    let commit = s
        .store
        .run_write(move |tx| {
            let db_id = data::db_id(tx, &org, &db)?;
            data::branch_head(tx, db_id, &branch)?;
            let mut changes = Vec::new();
            if !data::collection_exists(tx, db_id, &branch, &name)? {
                changes.push(Change::Configure { collection: name.clone(), config: Map::new() });
            }
            changes.push(Change::Put { collection: name, id, document: doc });
            data::commit(tx, db_id, &branch, &author, &message, changes)
        })
        .await?;
    sorted(&CommitResult { commit })
}

pub async fn delete_document(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, name, id)): ApiPath<(String, String, String, String)>,
    ApiQuery(q): ApiQuery<WriteQuery>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    validate_collection_name(&name)?;
    validate_id("document", &id)?;
    p.require(&org, Role::Admin)?;
    let branch = q.branch()?;
    let message = q.message(&format!("delete {name}/{id}"));
    let author = p.user.name.clone();
    let commit = s
        .store
        .run_write(move |tx| {
            let db_id = data::db_id(tx, &org, &db)?;
            data::get_document(tx, db_id, &branch, &name, &id)?;
            data::commit(tx, db_id, &branch, &author, &message, vec![Change::Delete { collection: name, id }])
        })
        .await?;
    sorted(&CommitResult { commit })
}

/// Paging of commits.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommitPage {
    /// Branch read (default `main`).
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    branch: Option<String>,
    /// Commits to skip (default 0).
    offset: Option<usize>,
    /// Page size, 1..=10000 (default 100; values outside are clamped).
    limit: Option<usize>,
}

pub async fn list_commits(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<CommitPage>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Reader)?;
    let branch = q.branch.unwrap_or_else(|| MAIN.into());
    data::validate_branch(&branch)?;
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let list = s.store.run(move |c| data::list_commits(c, data::db_id(c, &org, &db)?, &branch, offset, limit)).await?;
    sorted(&CommitList { commits: list })
}

pub async fn list_branches(State(s): State<AppState>, Auth(p): Auth, ApiPath((org, db)): ApiPath<(String, String)>) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    p.require(&org, Role::Reader)?;
    let list = s.store.run(move |c| data::list_branches(c, data::db_id(c, &org, &db)?)).await?;
    let branches = list.into_iter().map(|(name, head)| Branch { name, head }).collect();
    sorted(&BranchList { branches })
}

pub async fn get_branch(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, branch)): ApiPath<(String, String, String)>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    data::validate_branch(&branch)?;
    p.require(&org, Role::Reader)?;
    let b = branch.clone();
    let head = s.store.run(move |c| data::branch_head(c, data::db_id(c, &org, &db)?, &b)).await?;
    sorted(&Branch { name: branch, head })
}

/// Body of branch creation.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBranch {
    /// A commit id or a branch name (default `main`).
    #[schema(min_length = 1)]
    from: Option<String>,
}

pub async fn create_branch(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath((org, db, branch)): ApiPath<(String, String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    check_db(&org, &db)?;
    data::validate_branch(&branch)?;
    p.require(&org, Role::Admin)?;
    let from = optional_json::<CreateBranch>(&body?)?.from.unwrap_or_else(|| MAIN.into());
    validate_id("commit", &from)?;
    let b = branch.clone();
    let head = s.store.run_write(move |tx| data::create_branch(tx, data::db_id(tx, &org, &db)?, &b, &from)).await?;
    Ok((StatusCode::CREATED, sorted(&Branch { name: branch, head })?))
}
