//! The native backup API.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::{sorted, ApiJson, ApiPath, ApiQuery, Auth};
use crate::seal;
use crate::server::backup::{file_name, Backend, Encryption, Filter};
use crate::server::error::{code, ApiError, ApiResult};
use crate::server::store::auth::{check_strength, Principal, Role};
use crate::server::store::jobs::{self, BackupFile, BackupRecord, Creator, EncryptionKind, JobStatus, Progress, RestoreRecord};
use crate::server::store::{data, new_ksuid, now_ms, validate_key, validate_slug};
use crate::server::{AppState, Secret};

/// Longest lifetime of a signed link, seconds (7 days).
const MAX_LINK_SECONDS: i64 = 7 * 24 * 3600;
/// Default lifetime of a signed link, seconds.
const DEFAULT_LINK_SECONDS: i64 = 3600;
/// Header carrying the passphrase of an imported file (never a query string: URLs get logged).
pub(crate) const PASSPHRASE_HEADER: &str = "x-coffer-passphrase";

/// The schema of a database named `org/db`.
pub struct DatabaseName;

impl utoipa::PartialSchema for DatabaseName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some("A database, `org/db`."))
            .pattern(Some("^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$"))
            .into()
    }
}

impl ToSchema for DatabaseName {}

/// The schema of the `method` a backup may be asked for.
pub struct RequestedMethod;

impl utoipa::PartialSchema for RequestedMethod {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::openapi::string_enum("How the backup is recorded (default `manual`).", ["manual", "periodic"])
    }
}

impl ToSchema for RequestedMethod {}

fn creator(p: &Principal) -> Creator {
    Creator { user_id: p.user.id, name: p.user.name.clone(), email: p.user.email.clone(), org: p.org.clone() }
}

/// A user-given backup id: `[a-z0-9_-]{1,128}`, and not the backend's
/// temporary prefix.
fn check_backup_id(id: &str) -> ApiResult<()> {
    validate_slug("backup id", id)?;
    if id == crate::server::backup::backend::TMP {
        return Err(ApiError::invalid(format!("backup id {id:?} is reserved")));
    }
    Ok(())
}

fn split_database(s: &str) -> ApiResult<(String, String)> {
    let (org, db) = s.split_once('/').ok_or_else(|| ApiError::invalid(format!("database {s:?} must be written org/db")))?;
    validate_slug("organization", org)?;
    validate_slug("database", db)?;
    Ok((org.to_string(), db.to_string()))
}

/// `YYYYMMDDhhmmss` (UTC) of a time in ms.
fn stamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Body of `POST /backups`. Encryption: `passphrase`, or `recipients`
/// (`coffer1…` keys, added to the server's own), or neither (the server's
/// keys), or `"encryption": "none"`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// Backup id, `[a-z0-9_-]{1,128}` (default: a new KSUID).
    #[schema(pattern = "^[a-z0-9_-]{1,128}$")]
    id: Option<String>,
    /// Name, 1..=256 characters without control characters (default: time and first database).
    name: Option<String>,
    /// Databases, `org/db`, all of one organization; at least one.
    #[schema(value_type = Vec<DatabaseName>, min_items = 1)]
    databases: Vec<String>,
    /// Collections to include (exclusive with `exclude`).
    include: Option<Vec<String>>,
    /// Collections to exclude.
    exclude: Option<Vec<String>>,
    /// Seal with this passphrase (zxcvbn score ≥ 3, else 422 `WEAK_PASSPHRASE`).
    #[schema(value_type = Option<String>, format = Password)]
    passphrase: Option<Secret>,
    /// Seal to these X25519 recipients (`coffer1…`) as well as the server's keys.
    recipients: Option<Vec<String>>,
    /// Encryption, when not implied by `passphrase` or `recipients`.
    #[schema(value_type = Option<EncryptionKind>)]
    encryption: Option<String>,
    /// Method recorded.
    #[schema(value_type = Option<RequestedMethod>)]
    method: Option<String>,
}

pub async fn create(State(s): State<AppState>, Auth(p): Auth, ApiJson(body): ApiJson<CreateBackup>) -> ApiResult<impl IntoResponse> {
    let id = match &body.id {
        Some(id) => {
            check_backup_id(id)?;
            id.clone()
        }
        None => new_ksuid(),
    };
    if body.databases.is_empty() {
        return Err(ApiError::invalid("databases must name at least one database (org/db)"));
    }
    let mut databases = Vec::new();
    let mut org = None;
    for d in &body.databases {
        let (o, db) = split_database(d)?;
        if org.as_ref().is_some_and(|x| *x != o) {
            return Err(ApiError::invalid("all databases of one backup must belong to one organization"));
        }
        p.require(&o, Role::Operator)?;
        databases.push(format!("{o}/{db}"));
        org = Some(o);
    }
    databases.sort();
    databases.dedup();
    let org = org.unwrap_or_default();
    let filter = Filter::new(body.include.clone(), body.exclude.clone())?;
    let name = body.name.clone().unwrap_or_else(|| format!("{}_{}", stamp(now_ms()), databases[0].replace('/', "-")));
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name must be 1..=256 characters without control characters"));
    }
    let method = body.method.clone().unwrap_or_else(|| "manual".into());
    if method != "manual" && method != "periodic" {
        return Err(ApiError::invalid("method must be manual or periodic"));
    }
    let encryption = match (body.passphrase, body.recipients, body.encryption.as_deref()) {
        (Some(pass), None, None | Some("passphrase")) => {
            check_strength("passphrase", &pass, &[&name, &id])?;
            Encryption::Passphrase(pass.0)
        }
        (None, Some(list), None | Some("recipients")) => {
            let keys = list.iter().map(|k| k.parse::<seal::PublicKey>()).collect::<crate::Result<Vec<_>>>()?;
            Encryption::Recipients(s.engine.recipients(keys))
        }
        (None, None, None | Some("recipients")) => Encryption::Recipients(s.engine.recipients(Vec::new())),
        (None, None, Some("none")) => Encryption::None,
        (None, None, Some("passphrase")) => return Err(ApiError::invalid("encryption passphrase needs a passphrase")),
        _ => return Err(ApiError::invalid("choose one of passphrase, recipients or \"encryption\": \"none\"")),
    };
    {
        let dbs = databases.clone();
        s.store
            .run(move |c| {
                for d in &dbs {
                    let (o, n) = d.split_once('/').unwrap_or_default();
                    data::db_id(c, o, n)?;
                }
                Ok(())
            })
            .await?;
    }
    let rec = BackupRecord {
        id,
        name,
        node: s.engine.node().to_string(),
        org,
        databases,
        include: filter.include,
        exclude: filter.exclude,
        encryption: encryption.name().into(),
        method,
        status: jobs::SCHEDULED.into(),
        error: None,
        progress: Progress::default(),
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        size: None,
        digest: None,
        files: Vec::new(),
        created_by: creator(&p),
    };
    let rec = s.engine.start_backup(rec, encryption).await?;
    Ok((StatusCode::ACCEPTED, Json(rec)))
}

/// Filters and paging of `GET /backups`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Organization (default: the caller's; every one for the server administrator).
    #[param(pattern = "^[a-z0-9_-]{1,128}$")]
    org: Option<String>,
    /// Only backups covering this database, `org/db`.
    #[param(pattern = "^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$")]
    database: Option<String>,
    /// Only backups with this status.
    #[param(value_type = Option<JobStatus>)]
    status: Option<String>,
    /// Backups to skip (default 0).
    offset: Option<usize>,
    /// Page size, 1..=1000 (default 100; values outside are clamped).
    limit: Option<usize>,
}

/// A page of backups, newest first.
#[derive(Serialize, ToSchema)]
pub struct BackupList {
    /// Backups.
    backups: Vec<BackupRecord>,
    /// Backups matching the filters, on every page.
    total: usize,
    /// Offset of this page.
    offset: usize,
    /// Page size.
    limit: usize,
}

pub async fn list(State(s): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult<impl IntoResponse> {
    let org = match q.org {
        Some(o) => {
            validate_slug("organization", &o)?;
            p.require(&o, Role::Reader)?;
            Some(o)
        }
        None if p.server_admin => None,
        None => Some(p.org.clone()),
    };
    if let Some(st) = &q.status {
        if ![jobs::SCHEDULED, jobs::RUNNING, jobs::DONE, jobs::ERROR].contains(&st.as_str()) {
            return Err(ApiError::invalid("status must be scheduled, running, done or error"));
        }
    }
    if let Some(d) = &q.database {
        split_database(d)?;
    }
    let status = q.status.clone();
    let all = s.store.run(move |c| jobs::list_backups(c, org.as_deref(), status.as_deref())).await?;
    let filtered: Vec<BackupRecord> = all.into_iter().filter(|r| q.database.as_ref().is_none_or(|d| r.databases.contains(d))).collect();
    let total = filtered.len();
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page: Vec<BackupRecord> = filtered.into_iter().skip(offset).take(limit).map(|r| s.engine.with_progress(r)).collect();
    sorted(&BackupList { backups: page, total, offset, limit })
}

/// The record of a backup the caller may see, else NOT_FOUND.
async fn visible(s: &AppState, p: &Principal, id: &str, role: Role) -> ApiResult<BackupRecord> {
    validate_key("backup id", id)?;
    let key = id.to_string();
    let rec = s
        .store
        .run(move |c| jobs::get_backup(c, &key))
        .await?
        .filter(|r| p.sees(&r.org))
        .ok_or_else(|| ApiError::not_found(format!("backup {id:?} not found")))?;
    p.require(&rec.org, role)?;
    Ok(s.engine.with_progress(rec))
}

pub async fn get(State(s): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> ApiResult<impl IntoResponse> {
    Ok(Json(visible(&s, &p, &id, Role::Reader).await?))
}

/// Which file of a multi-database backup.
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The database, `org/db` (needed when the backup covers several).
    #[param(pattern = "^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$")]
    database: Option<String>,
}

fn pick_file<'a>(rec: &'a BackupRecord, database: Option<&str>) -> ApiResult<&'a BackupFile> {
    if rec.status != jobs::DONE {
        return Err(ApiError::conflict(format!("backup {:?} is {}, not done", rec.id, rec.status)));
    }
    match database {
        Some(d) => rec.files.iter().find(|f| f.database == d).ok_or_else(|| ApiError::not_found(format!("backup {:?} does not cover {d:?}", rec.id))),
        None if rec.files.len() == 1 => Ok(&rec.files[0]),
        None => Err(ApiError::invalid("this backup covers several databases: choose one with ?database=org/db")),
    }
}

async fn stream_file(s: &AppState, rec: &BackupRecord, file: &BackupFile) -> ApiResult<Response> {
    let (size, stream) = s.engine.backend.get(&rec.id, &file.object).await?;
    let filename = format!("coffer-{}-{}", rec.id, file.object);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn content(State(s): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>, ApiQuery(q): ApiQuery<FileQuery>) -> ApiResult<Response> {
    let rec = visible(&s, &p, &id, Role::Operator).await?;
    let file = pick_file(&rec, q.database.as_deref())?.clone();
    stream_file(&s, &rec, &file).await
}

fn link_signature(key: &[u8; 32], id: &str, database: &str, expires: i64) -> String {
    blake3::keyed_hash(key, format!("coffer-link\n{id}\n{database}\n{expires}").as_bytes()).to_hex().to_string()
}

/// Body of `POST /backups/{id}/link`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Lifetime in seconds, at most 7 days (default one hour).
    #[schema(minimum = 1, maximum = 604_800)]
    expires_in: Option<i64>,
    /// The database, `org/db` (needed when the backup covers several).
    #[schema(pattern = "^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$")]
    database: Option<String>,
}

/// A signed download link.
#[derive(Serialize, ToSchema)]
pub struct Link {
    /// Absolute URL (from the request's `Host`).
    url: String,
    /// Path and query, to resolve against the server's address.
    path: String,
    /// Expiry (ms since the epoch).
    expires_at: i64,
}

pub async fn link(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let body: LinkRequest = super::data::optional_json(&body?)?;
    let rec = visible(&s, &p, &id, Role::Operator).await?;
    let file = pick_file(&rec, body.database.as_deref())?;
    let seconds = body.expires_in.unwrap_or(DEFAULT_LINK_SECONDS);
    if !(1..=MAX_LINK_SECONDS).contains(&seconds) {
        return Err(ApiError::invalid(format!("expires_in must be 1..={MAX_LINK_SECONDS} seconds")));
    }
    let expires = now_ms() / 1000 + seconds;
    let sig = link_signature(&s.link_key, &rec.id, &file.database, expires);
    let path = format!("/api/v1/backups/{}/download?database={}&expires={expires}&sig={sig}", rec.id, file.database);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    sorted(&Link { url: format!("http://{host}{path}"), path, expires_at: expires * 1000 })
}

/// Query of a signed link.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// The database, `org/db`.
    #[param(pattern = "^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$")]
    database: String,
    /// Expiry (seconds since the epoch).
    expires: i64,
    /// Signature (hex).
    sig: String,
}

pub async fn download(State(s): State<AppState>, ApiPath(id): ApiPath<String>, ApiQuery(q): ApiQuery<DownloadQuery>) -> ApiResult<Response> {
    validate_key("backup id", &id)?;
    let expected = link_signature(&s.link_key, &id, &q.database, q.expires);
    use subtle::ConstantTimeEq;
    if !bool::from(expected.as_bytes().ct_eq(q.sig.as_bytes())) {
        return Err(ApiError::forbidden("invalid link signature"));
    }
    if q.expires < now_ms() / 1000 {
        return Err(ApiError::forbidden("the link has expired"));
    }
    let key = id.clone();
    let rec = s.store.run(move |c| jobs::get_backup(c, &key)).await?.ok_or_else(|| ApiError::not_found("backup not found"))?;
    let file = pick_file(&rec, Some(&q.database))?.clone();
    stream_file(&s, &rec, &file).await
}

/// Body of verify.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The passphrase of a backup sealed with one.
    #[schema(value_type = Option<String>, format = Password)]
    passphrase: Option<Secret>,
}

/// The outcome of a verify (any failure is an error response instead).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VerifyReport {
    /// Backup id.
    id: String,
    /// Always true.
    ok: bool,
    /// One report per file.
    files: Vec<FileReport>,
}

/// The report on one verified file (built by the engine).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FileReport {
    /// `org/db`.
    database: String,
    /// Object key in the backend.
    object: String,
    /// Stored bytes.
    size: u64,
    /// Bundle content digest (hex).
    digest: String,
    /// How the file is sealed.
    #[schema(value_type = EncryptionKind)]
    encryption: String,
    /// Always true.
    ok: bool,
}

pub async fn verify(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let body: VerifyRequest = super::data::optional_json(&body?)?;
    let rec = visible(&s, &p, &id, Role::Operator).await?;
    if rec.encryption == "passphrase" && body.passphrase.is_none() {
        return Err(ApiError::invalid("this backup is sealed with a passphrase: give it to verify the content"));
    }
    let files = s.engine.verify(&rec, body.passphrase.map(|p| p.0)).await?;
    Ok(Json(serde_json::json!({"id": rec.id, "ok": true, "files": files})))
}

pub async fn delete(State(s): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> ApiResult<impl IntoResponse> {
    let rec = visible(&s, &p, &id, Role::Operator).await?;
    if rec.status == jobs::RUNNING || rec.status == jobs::SCHEDULED {
        return Err(ApiError::conflict(format!("backup {:?} is {}; delete it when it has finished", rec.id, rec.status)));
    }
    s.engine.backend.remove(&rec.id).await?;
    let key = rec.id.clone();
    s.store.run_write(move |tx| jobs::delete_backup(tx, &key)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of restore.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Target database, `org/db` (default: the database backed up).
    #[schema(pattern = "^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$")]
    target: Option<String>,
    /// The database of the backup, `org/db` (needed when it covers several).
    #[schema(pattern = "^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$")]
    database: Option<String>,
    /// Collections to restore (exclusive with `exclude`).
    include: Option<Vec<String>>,
    /// Collections not to restore.
    exclude: Option<Vec<String>>,
    /// Replace collections that exist in the target (else 409).
    #[serde(default)]
    overwrite: bool,
    /// The passphrase of a backup sealed with one.
    #[schema(value_type = Option<String>, format = Password)]
    passphrase: Option<Secret>,
}

pub async fn restore(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let body: RestoreRequest = super::data::optional_json(&body?)?;
    let rec = visible(&s, &p, &id, Role::Operator).await?;
    let file = pick_file(&rec, body.database.as_deref())?.clone();
    let target = body.target.clone().unwrap_or_else(|| file.database.clone());
    let (torg, tdb) = split_database(&target)?;
    p.require(&torg, Role::Operator)?;
    let filter = Filter::new(body.include.clone(), body.exclude.clone())?;
    {
        let o = torg.clone();
        if !s.store.run(move |c| crate::server::store::auth::org_exists(c, &o)).await? {
            return Err(ApiError::not_found(format!("organization {torg:?} not found")));
        }
    }
    if rec.encryption == "passphrase" && body.passphrase.is_none() {
        return Err(ApiError::new("WRONG_KEY", "this backup is sealed with a passphrase: give it to restore"));
    }
    if !body.overwrite {
        let wanted: Vec<String> = file.collections.iter().filter(|c| filter.covers(c)).cloned().collect();
        let (o, d) = (torg.clone(), tdb.clone());
        let clash = s
            .store
            .run(move |c| {
                let Ok(id) = data::db_id(c, &o, &d) else { return Ok(None) };
                for name in wanted {
                    if data::collection_exists(c, id, data::MAIN, &name)? {
                        return Ok(Some(name));
                    }
                }
                Ok(None)
            })
            .await?;
        if let Some(name) = clash {
            return Err(ApiError::conflict(format!("collection {name:?} exists in {torg}/{tdb}; set overwrite to replace it")));
        }
    }
    // Check the key now (header only), so a wrong passphrase is a 422 here
    // rather than a failed job later.
    let key = s.engine.check_key(&rec, &file, body.passphrase.clone().map(|p| p.0)).await?;
    let restore = RestoreRecord {
        id: new_ksuid(),
        backup: rec.id.clone(),
        org: torg.clone(),
        target: format!("{torg}/{tdb}"),
        include: filter.include,
        exclude: filter.exclude,
        overwrite: body.overwrite,
        status: jobs::SCHEDULED.into(),
        error: None,
        collections: Vec::new(),
        records: 0,
        failed: 0,
        commits: 0,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        created_by: creator(&p),
    };
    let restore = s.engine.start_restore(restore, rec, file, key).await?;
    Ok((StatusCode::ACCEPTED, Json(restore)))
}

pub async fn get_restore(State(s): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> ApiResult<impl IntoResponse> {
    validate_key("restore id", &id)?;
    let key = id.clone();
    let rec = s
        .store
        .run(move |c| jobs::get_restore(c, &key))
        .await?
        .filter(|r| p.sees(&r.org))
        .ok_or_else(|| ApiError::not_found(format!("restore {id:?} not found")))?;
    p.require(&rec.org, Role::Reader)?;
    Ok(Json(rec))
}

/// Query of an import.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// The database the bundle holds, `org/db`.
    #[param(pattern = "^[a-z0-9_-]{1,128}/[a-z0-9_-]{1,128}$")]
    database: String,
    /// Backup id, `[a-z0-9_-]{1,128}` (default: a new KSUID).
    #[param(pattern = "^[a-z0-9_-]{1,128}$")]
    id: Option<String>,
    /// Name (default: `import` and the time).
    name: Option<String>,
}

pub async fn import(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    let (org, db) = split_database(&q.database)?;
    p.require(&org, Role::Operator)?;
    let id = match q.id {
        Some(id) => {
            check_backup_id(&id)?;
            id
        }
        None => new_ksuid(),
    };
    let passphrase = headers
        .get(PASSPHRASE_HEADER)
        .map(|v| v.to_str().map(|s| Zeroizing::new(s.to_string())))
        .transpose()
        .map_err(|_| ApiError::invalid("malformed passphrase header"))?;
    {
        let key = id.clone();
        if s.store.run(move |c| jobs::get_backup(c, &key)).await?.is_some() {
            return Err(ApiError::conflict(format!("backup {id:?} exists already")));
        }
    }
    let database = format!("{org}/{db}");
    let object = file_name(&database);
    let mut writer = s.engine.backend.writer(Backend::tmp_key(&id, &object));
    let mut hasher = blake3::Hasher::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    let limit = s.config.max_upload;
    let outcome: ApiResult<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::new("IO", format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::new(code::PAYLOAD_TOO_LARGE, format!("the upload is larger than the limit of {limit} bytes")));
            }
            hasher.update(&chunk);
            writer.write_all(&chunk).await?;
        }
        if size == 0 {
            return Err(ApiError::invalid("empty upload"));
        }
        writer.shutdown().await?;
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        let _ = writer.abort().await;
        let _ = s.engine.backend.remove(&id).await;
        return Err(e);
    }
    let name = q.name.unwrap_or_else(|| format!("import {}", stamp(now_ms())));
    let mut rec = BackupRecord {
        id: id.clone(),
        name,
        node: s.engine.node().to_string(),
        org,
        databases: vec![database],
        include: None,
        exclude: None,
        encryption: String::new(),
        method: "import".into(),
        status: jobs::RUNNING.into(),
        error: None,
        progress: Progress::default(),
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        size: None,
        digest: None,
        files: Vec::new(),
        created_by: creator(&p),
    };
    if let Err(e) = s.engine.adopt_import(&mut rec, &object, size, hasher.finalize().to_hex().to_string(), passphrase).await {
        let _ = s.engine.backend.remove(&id).await;
        return Err(e);
    }
    Ok((StatusCode::CREATED, Json(rec)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps_are_utc_civil_time() {
        assert_eq!(super::stamp(0), "19700101000000");
        assert_eq!(super::stamp(1_707_700_800_000), "20240212012000");
    }
}
