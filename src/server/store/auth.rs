//! Organizations, users (Argon2id password hashes) and API tokens (stored
//! as blake3 hashes, compared in constant time).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{now_ms, validate_slug, ApiError, ApiResult};

/// The organization of server administrators; always exists.
pub const ADMIN_ORG: &str = "admin";
/// The first user.
pub const ADMIN_USER: &str = "admin";
/// Prefix of every API token: `coffer_<id>_<secret>`.
pub const TOKEN_PREFIX: &str = "coffer_";

/// A role inside an organization, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads databases and backup records.
    Reader,
    /// Reader, plus backup, restore, download, verify, delete backups.
    Operator,
    /// Everything in the organization: writes, databases, users, tokens.
    Admin,
}

impl Role {
    /// Parses `admin` / `operator` / `reader`.
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "admin" => Ok(Self::Admin),
            "operator" => Ok(Self::Operator),
            "reader" => Ok(Self::Reader),
            other => Err(ApiError::invalid(format!("unknown role {other:?} (admin, operator, reader)"))),
        }
    }
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Reader => "reader",
        }
    }
}

/// A user as stored (without the hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Numeric id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// Email (may be empty).
    pub email: String,
    /// Organization.
    pub org: String,
    /// Role in the organization.
    pub role: Role,
    /// Whether the user administers the server (creates organizations).
    pub server_admin: bool,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// Organization the request acts in (the token's scope, or the user's).
    pub org: String,
    /// Role the request acts with.
    pub role: Role,
    /// Server administrator powers (user is one, acting in `admin` as admin).
    pub server_admin: bool,
}

impl Principal {
    /// Fails unless the caller may act in `org` with at least `role`.
    pub fn require(&self, org: &str, role: Role) -> ApiResult<()> {
        if self.server_admin {
            return Ok(());
        }
        if self.org != org {
            return Err(ApiError::forbidden(format!("no access to organization {org:?}")));
        }
        if self.role < role {
            return Err(ApiError::forbidden(format!("this needs the role {:?} or above", role.as_str())));
        }
        Ok(())
    }
    /// Whether the caller can see `org` at all.
    pub fn sees(&self, org: &str) -> bool {
        self.server_admin || self.org == org
    }
}

/// Hashes a password with Argon2id (random salt, PHC string).
pub fn hash_password(password: &str) -> ApiResult<String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|_| ApiError::internal("password hashing failed"))
}

/// A hash to verify against when the user does not exist (equal timing).
pub static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| hash_password(&random_secret()).unwrap_or_default());

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Basic-auth password checks: Argon2id, run at most `limit` at once, and
/// remembered for a while once they succeed.
///
/// Every Basic request would otherwise cost an Argon2id hash (19 MiB, tens of
/// milliseconds of CPU): a client polling a job's status with its password
/// took a core from the job it watched, and anyone could make the server
/// hash (and allocate) as often as it sent requests. So:
/// - at most `limit` checks run at once; further requests wait for a slot
///   (a future, not a thread or 19 MiB each);
/// - a success is remembered for [`Self::TTL`] under a keyed hash of user
///   name and password (the key is random per process; no password is kept),
///   together with the user's stored hash: a changed password or a removed
///   user no longer matches. Failures are never remembered, so an attacker's
///   guesses each cost one full check, unknown users included (against a
///   dummy hash, so timing tells no user name).
pub struct PasswordChecks {
    key: [u8; 32],
    remembered: std::sync::Mutex<std::collections::HashMap<[u8; 32], (String, std::time::Instant)>>,
    slots: tokio::sync::Semaphore,
    /// Argon2id checks run (successes remembered are not counted).
    pub runs: std::sync::atomic::AtomicU64,
}

impl PasswordChecks {
    /// How long a successful check is remembered.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(300);
    /// Most successes remembered (a bounded map: at most this many
    /// entries of ~150 bytes).
    const MAX_REMEMBERED: usize = 4096;

    /// Checks that run at most `limit` at once.
    pub fn new(limit: usize) -> ApiResult<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| ApiError::internal(format!("no random source: {e}")))?;
        Ok(Self { key, remembered: Default::default(), slots: tokio::sync::Semaphore::new(limit.max(1)), runs: Default::default() })
    }

    fn remembered_key(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(password.as_bytes());
        *h.finalize().as_bytes()
    }

    /// Whether `password` is the password of the user `name`, whose stored
    /// hash is `stored` (`None`: there is no such user, and the answer is no
    /// after a check against the dummy hash). Checks run on the blocking pool.
    pub async fn check(&self, name: &str, password: Zeroizing<String>, stored: Option<&str>) -> ApiResult<bool> {
        let key = self.remembered_key(name, &password);
        if let Some(phc) = stored {
            let now = std::time::Instant::now();
            let remembered = self.remembered.lock().map_err(|_| ApiError::internal("password checks poisoned"))?;
            if remembered.get(&key).is_some_and(|(known, at)| known == phc && now.duration_since(*at) < Self::TTL) {
                return Ok(true);
            }
        }
        let _slot = self.slots.acquire().await.map_err(|_| ApiError::internal("password checks closed"))?;
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let phc = stored.map(str::to_string);
        let against = phc.clone().unwrap_or_else(|| DUMMY_HASH.clone());
        // Unknown users are checked against the dummy hash too: same time.
        let verified = tokio::task::spawn_blocking(move || verify_password(&password, &against)).await? && phc.is_some();
        if let (true, Some(phc)) = (verified, phc) {
            let now = std::time::Instant::now();
            let mut remembered = self.remembered.lock().map_err(|_| ApiError::internal("password checks poisoned"))?;
            if remembered.len() >= Self::MAX_REMEMBERED {
                remembered.retain(|_, (_, at)| now.duration_since(*at) < Self::TTL);
                if remembered.len() >= Self::MAX_REMEMBERED {
                    remembered.clear();
                }
            }
            remembered.insert(key, (phc, now));
        }
        Ok(verified)
    }
}

/// Fails with WEAK_PASSPHRASE when zxcvbn scores `secret` below 3 of 4.
pub fn check_strength(what: &str, secret: &str, user_inputs: &[&str]) -> ApiResult<()> {
    let entropy = zxcvbn::zxcvbn(secret, user_inputs);
    if (entropy.score() as u8) < 3 {
        let mut msg = format!("the {what} is too weak (strength {} of 4, 3 needed)", entropy.score() as u8);
        if let Some(fb) = entropy.feedback() {
            if let Some(w) = fb.warning() {
                msg.push_str(&format!(": {w}"));
            }
        }
        return Err(ApiError::new(super::super::error::code::WEAK_PASSPHRASE, msg));
    }
    Ok(())
}

/// 32 random bytes, hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system has no random source");
    hex::encode(bytes)
}

/// A random password for the first admin (about 120 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system has no random source");
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Creates the `admin` organization and user on first start. Returns the
/// generated password when none was given.
pub fn bootstrap(tx: &Transaction<'_>, admin_password: Option<&str>) -> ApiResult<Option<String>> {
    tx.execute("INSERT OR IGNORE INTO orgs (name, created_at) VALUES (?1, ?2)", params![ADMIN_ORG, now_ms()])?;
    let exists = tx.query_row("SELECT 1 FROM users WHERE name = ?1", [ADMIN_USER], |_| Ok(())).optional()?.is_some();
    if exists {
        return Ok(None);
    }
    let (password, generated) = match admin_password {
        Some(p) if !p.is_empty() => (Zeroizing::new(p.to_string()), false),
        _ => (Zeroizing::new(random_password()), true),
    };
    let hash = hash_password(&password)?;
    tx.execute(
        "INSERT INTO users (name, email, org, role, server_admin, password_hash, created_at) VALUES (?1, '', ?2, 'admin', 1, ?3, ?4)",
        params![ADMIN_USER, ADMIN_ORG, hash, now_ms()],
    )?;
    Ok(generated.then(|| password.to_string()))
}

/// Creates an organization.
pub fn create_org(tx: &Transaction<'_>, name: &str) -> ApiResult<()> {
    validate_slug("organization", name)?;
    if org_exists(tx, name)? {
        return Err(ApiError::conflict(format!("organization {name:?} exists already")));
    }
    tx.execute("INSERT INTO orgs (name, created_at) VALUES (?1, ?2)", params![name, now_ms()])?;
    Ok(())
}

/// Whether an organization exists.
pub fn org_exists(conn: &Connection, name: &str) -> ApiResult<bool> {
    Ok(conn.query_row("SELECT 1 FROM orgs WHERE name = ?1", [name], |_| Ok(())).optional()?.is_some())
}

/// Organization names.
pub fn list_orgs(conn: &Connection) -> ApiResult<Vec<String>> {
    Ok(conn.prepare("SELECT name FROM orgs ORDER BY name")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(User, String)> {
    let role: String = r.get(4)?;
    Ok((
        User {
            id: r.get(0)?,
            name: r.get(1)?,
            email: r.get(2)?,
            org: r.get(3)?,
            role: Role::parse(&role).unwrap_or(Role::Reader),
            server_admin: r.get::<_, i64>(5)? != 0,
        },
        r.get(6)?,
    ))
}

const USER_COLUMNS: &str = "id, name, email, org, role, server_admin, password_hash";

/// Creates a user (password already checked).
pub fn create_user(tx: &Transaction<'_>, org: &str, name: &str, email: &str, role: Role, password: &str) -> ApiResult<User> {
    validate_slug("user name", name)?;
    if !org_exists(tx, org)? {
        return Err(ApiError::not_found(format!("organization {org:?} not found")));
    }
    if tx.query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(())).optional()?.is_some() {
        return Err(ApiError::conflict(format!("user {name:?} exists already")));
    }
    let hash = hash_password(password)?;
    tx.execute(
        "INSERT INTO users (name, email, org, role, server_admin, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
        params![name, email, org, role.as_str(), hash, now_ms()],
    )?;
    Ok(User { id: tx.last_insert_rowid(), name: name.into(), email: email.into(), org: org.into(), role, server_admin: false })
}

/// Users of an organization.
pub fn list_users(conn: &Connection, org: &str) -> ApiResult<Vec<User>> {
    let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users WHERE org = ?1 ORDER BY name"))?;
    let rows = stmt.query_map([org], user_from_row)?;
    Ok(rows.map(|r| r.map(|(u, _)| u)).collect::<Result<_, _>>()?)
}

/// A user and their password hash, by name.
pub fn user_by_name(conn: &Connection, name: &str) -> ApiResult<Option<(User, String)>> {
    Ok(conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"), [name], user_from_row).optional()?)
}

/// A token as listed (never the secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Token id (public part).
    pub id: String,
    /// Label.
    pub name: String,
    /// Organization it acts in.
    pub org: String,
    /// Role it acts with.
    pub role: Role,
    /// Owner.
    pub user: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Expiry (ms), if any.
    #[schema(required = true)]
    pub expires_at: Option<i64>,
}

fn token_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Creates a token; returns its record and the full token text (shown once).
pub fn create_token(tx: &Transaction<'_>, user: &User, org: &str, role: Role, name: &str, expires_at: Option<i64>) -> ApiResult<(TokenInfo, String)> {
    let id = random_secret()[..16].to_string();
    let secret = random_secret();
    tx.execute(
        "INSERT INTO tokens (id, hash, user_id, org, role, name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![id, token_hash(&secret).to_vec(), user.id, org, role.as_str(), name, now_ms(), expires_at],
    )?;
    let info = TokenInfo { id: id.clone(), name: name.into(), org: org.into(), role, user: user.name.clone(), created_at: now_ms(), expires_at };
    Ok((info, format!("{TOKEN_PREFIX}{id}_{secret}")))
}

/// Tokens owned by a user.
pub fn list_tokens(conn: &Connection, user: &User) -> ApiResult<Vec<TokenInfo>> {
    let mut stmt = conn.prepare("SELECT id, name, org, role, created_at, expires_at FROM tokens WHERE user_id = ?1 ORDER BY created_at, id")?;
    let rows = stmt.query_map([user.id], |r| {
        Ok(TokenInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            org: r.get(2)?,
            role: Role::parse(&r.get::<_, String>(3)?).unwrap_or(Role::Reader),
            user: user.name.clone(),
            created_at: r.get(4)?,
            expires_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes a token of a user.
pub fn delete_token(tx: &Transaction<'_>, user: &User, id: &str) -> ApiResult<()> {
    if tx.execute("DELETE FROM tokens WHERE id = ?1 AND user_id = ?2", params![id, user.id])? == 0 {
        return Err(ApiError::not_found("token not found"));
    }
    Ok(())
}

/// A token's row: secret hash, user id, organization, role, expiry (ms).
type TokenRow = (Vec<u8>, i64, String, String, Option<i64>);

/// Resolves a bearer token to a principal (constant-time hash comparison).
pub fn authenticate_token(conn: &Connection, token: &str) -> ApiResult<Principal> {
    let bad = || ApiError::unauthorized("invalid token");
    let rest = token.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
    let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
    let row: Option<TokenRow> = conn
        .query_row("SELECT hash, user_id, org, role, expires_at FROM tokens WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    // Hash even when the id is unknown, so timing does not tell ids apart.
    let presented = token_hash(secret);
    let Some((stored, user_id, org, role, expires_at)) = row else { return Err(bad()) };
    use subtle::ConstantTimeEq;
    if stored.len() != 32 || !bool::from(presented.ct_eq(stored.as_slice())) {
        return Err(bad());
    }
    if expires_at.is_some_and(|e| e <= now_ms()) {
        return Err(ApiError::unauthorized("token expired"));
    }
    let (user, _) = conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [user_id], user_from_row).optional()?.ok_or_else(bad)?;
    let role = Role::parse(&role)?;
    let server_admin = user.server_admin && org == ADMIN_ORG && role == Role::Admin;
    Ok(Principal { user, org, role, server_admin })
}

/// The principal of a user who logged in with a password.
pub fn principal_of(user: User) -> Principal {
    Principal { org: user.org.clone(), role: user.role, server_admin: user.server_admin, user }
}
