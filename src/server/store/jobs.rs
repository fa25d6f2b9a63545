//! Backup and restore job records (persisted as JSON rows).

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult};

/// `scheduled` → `running` → `done` | `error`.
pub const SCHEDULED: &str = "scheduled";
/// The job is running.
pub const RUNNING: &str = "running";
/// The job finished.
pub const DONE: &str = "done";
/// The job failed (see `error`).
pub const ERROR: &str = "error";
/// Error text of jobs a restart found unfinished.
pub const INTERRUPTED: &str = "interrupted";

/// Schemas of the string enums of the records in the OpenAPI document (the
/// fields stay strings in Rust; these name their values).
macro_rules! string_enum {
    ($name:ident, $doc:literal, [$($value:expr),* $(,)?]) => {
        #[doc = $doc]
        pub struct $name;
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::server::api::openapi::string_enum($doc, [$($value),*])
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

string_enum!(JobStatus, "Status of a backup or restore: `scheduled` → `running` → `done` | `error`.", [SCHEDULED, RUNNING, DONE, ERROR]);
string_enum!(EncryptionKind, "How a backup's bundles are sealed.", ["none", "passphrase", "recipients"]);
string_enum!(BackupMethod, "How a backup came to be: asked for, made by the server's schedule, or uploaded.", ["manual", "periodic", "import"]);

/// Who created a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Creator {
    /// User id.
    pub user_id: i64,
    /// User name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Organization the request acted in.
    pub org: String,
}

/// Progress of a job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Progress {
    /// Documents written (backup) or restored.
    pub documents_done: u64,
    /// Documents in total.
    pub documents_total: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in total (an estimate while running).
    pub bytes_total: u64,
}

/// One file of a backup: one database's sealed bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BackupFile {
    /// `org/db`.
    pub database: String,
    /// Object key in the backend, relative to the backup's prefix.
    pub object: String,
    /// Stored bytes.
    pub size: u64,
    /// blake3 of the stored bytes (hex).
    pub sha: String,
    /// Bundle content digest (the TOC digest, hex).
    pub digest: String,
    /// Head commit of `main` captured.
    #[schema(required = true)]
    pub head: Option<String>,
    /// Documents written.
    pub documents: u64,
    /// Commits written.
    pub commits: u64,
    /// Collections in the bundle.
    #[serde(default)]
    #[schema(required = true)]
    pub collections: Vec<String>,
}

/// A backup record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BackupRecord {
    /// Backup id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Node that made it.
    pub node: String,
    /// Organization.
    pub org: String,
    /// Databases covered, as `org/db`.
    pub databases: Vec<String>,
    /// Collections included (exclusive with `exclude`).
    #[schema(required = true)]
    pub include: Option<Vec<String>>,
    /// Collections excluded.
    #[schema(required = true)]
    pub exclude: Option<Vec<String>>,
    /// `passphrase`, `recipients` or `none`.
    #[schema(value_type = EncryptionKind)]
    pub encryption: String,
    /// `manual`, `periodic` or `import`.
    #[schema(value_type = BackupMethod)]
    pub method: String,
    /// `scheduled`, `running`, `done` or `error`.
    #[schema(value_type = JobStatus)]
    pub status: String,
    /// Error text when `status` is `error`.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Progress.
    pub progress: Progress,
    /// Creation time (ms).
    pub created_at: i64,
    /// Start time (ms).
    #[schema(required = true)]
    pub started_at: Option<i64>,
    /// End time (ms).
    #[schema(required = true)]
    pub finished_at: Option<i64>,
    /// Stored bytes, once done.
    #[schema(required = true)]
    pub size: Option<u64>,
    /// Content digest of the (first) bundle, once done.
    #[schema(required = true)]
    pub digest: Option<String>,
    /// Files, once done.
    pub files: Vec<BackupFile>,
    /// Creator.
    pub created_by: Creator,
}

/// A restore record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RestoreRecord {
    /// Restore id.
    pub id: String,
    /// Backup restored.
    pub backup: String,
    /// Organization.
    pub org: String,
    /// Target database `org/db`.
    pub target: String,
    /// Collections included.
    #[schema(required = true)]
    pub include: Option<Vec<String>>,
    /// Collections excluded.
    #[schema(required = true)]
    pub exclude: Option<Vec<String>>,
    /// Replace existing collections.
    pub overwrite: bool,
    /// Status, as for backups.
    #[schema(value_type = JobStatus)]
    pub status: String,
    /// Error text.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Collections restored.
    pub collections: Vec<String>,
    /// Records (documents) restored.
    pub records: u64,
    /// Records that could not be restored.
    pub failed: u64,
    /// Commits restored.
    pub commits: u64,
    /// Creation time (ms).
    pub created_at: i64,
    /// Start time (ms).
    #[schema(required = true)]
    pub started_at: Option<i64>,
    /// End time (ms).
    #[schema(required = true)]
    pub finished_at: Option<i64>,
    /// Who asked.
    pub created_by: Creator,
}

/// Inserts a backup record (CONFLICT if the id is taken).
pub fn insert_backup(tx: &Transaction<'_>, rec: &BackupRecord) -> ApiResult<()> {
    if tx.query_row("SELECT 1 FROM backups WHERE id = ?1", [&rec.id], |_| Ok(())).optional()?.is_some() {
        return Err(ApiError::conflict(format!("backup {:?} exists already", rec.id)));
    }
    let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM backups", [], |r| r.get(0))?;
    tx.execute(
        "INSERT INTO backups (id, seq, org, status, record) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![rec.id, seq, rec.org, rec.status, serde_json::to_string(rec)?],
    )?;
    Ok(())
}

/// Replaces a backup record.
pub fn update_backup(tx: &Connection, rec: &BackupRecord) -> ApiResult<()> {
    tx.execute("UPDATE backups SET status = ?2, record = ?3 WHERE id = ?1", params![rec.id, rec.status, serde_json::to_string(rec)?])?;
    Ok(())
}

/// A backup record by id.
pub fn get_backup(conn: &Connection, id: &str) -> ApiResult<Option<BackupRecord>> {
    let text: Option<String> = conn.query_row("SELECT record FROM backups WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    text.map(|t| serde_json::from_str(&t).map_err(|_| ApiError::internal("stored backup record is not JSON"))).transpose()
}

/// Backups, newest first, optionally of one organization and status.
pub fn list_backups(conn: &Connection, org: Option<&str>, status: Option<&str>) -> ApiResult<Vec<BackupRecord>> {
    let mut stmt = conn.prepare("SELECT record FROM backups WHERE (?1 IS NULL OR org = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY seq DESC")?;
    let rows = stmt.query_map(params![org, status], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(serde_json::from_str(&row?).map_err(|_| ApiError::internal("stored backup record is not JSON"))?);
    }
    Ok(out)
}

/// Deletes a backup record.
pub fn delete_backup(tx: &Transaction<'_>, id: &str) -> ApiResult<()> {
    tx.execute("DELETE FROM backups WHERE id = ?1", [id])?;
    Ok(())
}

/// Inserts or replaces a restore record.
pub fn put_restore(tx: &Connection, rec: &RestoreRecord) -> ApiResult<()> {
    tx.execute(
        "INSERT OR REPLACE INTO restores (id, org, status, record) VALUES (?1, ?2, ?3, ?4)",
        params![rec.id, rec.org, rec.status, serde_json::to_string(rec)?],
    )?;
    Ok(())
}

/// A restore record by id.
pub fn get_restore(conn: &Connection, id: &str) -> ApiResult<Option<RestoreRecord>> {
    let text: Option<String> = conn.query_row("SELECT record FROM restores WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    text.map(|t| serde_json::from_str(&t).map_err(|_| ApiError::internal("stored restore record is not JSON"))).transpose()
}

/// Marks every unfinished job `error` ("interrupted"); returns the backup ids.
pub fn mark_interrupted(tx: &Transaction<'_>, now: i64) -> ApiResult<Vec<String>> {
    let mut backups = Vec::new();
    for mut rec in list_backups(tx, None, None)? {
        if rec.status == SCHEDULED || rec.status == RUNNING {
            rec.status = ERROR.into();
            rec.error = Some(INTERRUPTED.into());
            rec.finished_at = Some(now);
            update_backup(tx, &rec)?;
            backups.push(rec.id);
        }
    }
    let texts: Vec<String> =
        tx.prepare("SELECT record FROM restores WHERE status IN ('scheduled', 'running')")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for text in texts {
        let mut rec: RestoreRecord = serde_json::from_str(&text).map_err(|_| ApiError::internal("stored restore record is not JSON"))?;
        rec.status = ERROR.into();
        rec.error = Some(INTERRUPTED.into());
        rec.finished_at = Some(now);
        put_restore(tx, &rec)?;
    }
    Ok(backups)
}
