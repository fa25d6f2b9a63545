//! Organizations, users and tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{sorted, ApiJson, ApiPath, Auth};
use crate::server::error::{ApiError, ApiResult};
use crate::server::store::auth::{self, Role, TokenInfo, User};
use crate::server::store::{now_ms, validate_slug};
use crate::server::AppState;

/// Longest token lifetime, seconds (one year).
const MAX_TOKEN_SECONDS: i64 = 366 * 24 * 3600;

/// The authenticated caller.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// The user.
    user: User,
    /// Organization the request acts in (the token's, or the user's).
    org: String,
    /// Role the request acts with.
    role: Role,
    /// Whether the caller acts as server administrator.
    server_admin: bool,
}

pub async fn whoami(Auth(p): Auth) -> ApiResult<impl IntoResponse> {
    sorted(&WhoAmI { user: p.user, org: p.org, role: p.role, server_admin: p.server_admin })
}

/// Organizations visible to the caller.
#[derive(Serialize, ToSchema)]
pub struct OrgList {
    /// Organization names.
    orgs: Vec<String>,
}

pub async fn list_orgs(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<impl IntoResponse> {
    let all = s.store.run(|c| auth::list_orgs(c)).await?;
    let visible: Vec<String> = all.into_iter().filter(|o| p.sees(o)).collect();
    sorted(&OrgList { orgs: visible })
}

/// A new organization.
#[derive(Serialize, ToSchema)]
pub struct Org {
    /// Its name.
    name: String,
}

pub async fn create_org(State(s): State<AppState>, Auth(p): Auth, ApiPath(org): ApiPath<String>) -> ApiResult<impl IntoResponse> {
    validate_slug("organization", &org)?;
    if !p.server_admin {
        return Err(ApiError::forbidden("only a server administrator creates organizations"));
    }
    let name = org.clone();
    s.store.run_write(move |tx| auth::create_org(tx, &name)).await?;
    Ok((StatusCode::CREATED, sorted(&Org { name: org })?))
}

/// Body of user creation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Login name, `[a-z0-9_-]{1,128}`, unique on the server.
    #[schema(pattern = "^[a-z0-9_-]{1,128}$")]
    name: String,
    /// Password (zxcvbn score ≥ 3, else 422 `WEAK_PASSPHRASE`).
    #[schema(value_type = String, format = Password)]
    password: crate::server::Secret,
    /// Email (may be empty).
    #[serde(default)]
    email: String,
    /// Role in the organization.
    #[schema(value_type = Role)]
    role: String,
}

pub async fn create_user(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<impl IntoResponse> {
    validate_slug("organization", &org)?;
    p.require(&org, Role::Admin)?;
    validate_slug("user name", &body.name)?;
    let role = Role::parse(&body.role)?;
    auth::check_strength("password", &body.password, &[&body.name, &body.email])?;
    let user = s.store.run_write(move |tx| auth::create_user(tx, &org, &body.name, &body.email, role, &body.password)).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub async fn list_users(State(s): State<AppState>, Auth(p): Auth, ApiPath(org): ApiPath<String>) -> ApiResult<impl IntoResponse> {
    validate_slug("organization", &org)?;
    p.require(&org, Role::Admin)?;
    sorted(&UserList { users: s.store.run(move |c| auth::list_users(c, &org)).await? })
}

/// Users of an organization.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// Users, by name.
    users: Vec<User>,
}

/// Body of token creation.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Label, at most 128 bytes.
    #[serde(default)]
    name: String,
    /// Organization the token acts in (default: the caller's).
    #[schema(pattern = "^[a-z0-9_-]{1,128}$")]
    org: Option<String>,
    /// Role (default: the caller's; never above it).
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
    /// Lifetime in seconds, 1 to 366 days (default: no expiry).
    #[schema(minimum = 1, maximum = 31_622_400)]
    expires_in: Option<i64>,
}

/// A new token: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
pub struct NewToken {
    /// The full token, `coffer_<id>_<secret>`, for `Authorization: Bearer`.
    token: String,
    /// Token id (public part).
    id: String,
    /// Label.
    name: String,
    /// Organization it acts in.
    org: String,
    /// Role it acts with.
    role: Role,
    /// Expiry (ms since the epoch), if any.
    #[schema(required = true)]
    expires_at: Option<i64>,
}

/// The caller's tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    /// Tokens (never their secrets).
    tokens: Vec<TokenInfo>,
}

pub async fn create_token(
    State(s): State<AppState>,
    Auth(p): Auth,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let body: CreateToken = super::data::optional_json(&body?)?;
    let org = body.org.unwrap_or_else(|| p.org.clone());
    validate_slug("organization", &org)?;
    let role = body.role.as_deref().map(Role::parse).transpose()?.unwrap_or(p.role);
    if !p.server_admin && (org != p.org || role > p.role) {
        return Err(ApiError::forbidden("a token cannot reach beyond its creator's organization and role"));
    }
    if body.name.len() > 128 {
        return Err(ApiError::invalid("token name longer than 128 bytes"));
    }
    let expires_at = match body.expires_in {
        None => None,
        Some(s) if (1..=MAX_TOKEN_SECONDS).contains(&s) => Some(now_ms() + s * 1000),
        Some(_) => return Err(ApiError::invalid(format!("expires_in must be 1..={MAX_TOKEN_SECONDS} seconds"))),
    };
    let user = p.user.clone();
    let (info, token) = s
        .store
        .run_write(move |tx| {
            if !auth::org_exists(tx, &org)? {
                return Err(ApiError::not_found(format!("organization {org:?} not found")));
            }
            auth::create_token(tx, &user, &org, role, &body.name, expires_at)
        })
        .await?;
    let created = NewToken { token, id: info.id, name: info.name, org: info.org, role: info.role, expires_at: info.expires_at };
    Ok((StatusCode::CREATED, sorted(&created)?))
}

pub async fn list_tokens(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<impl IntoResponse> {
    let user = p.user.clone();
    sorted(&TokenList { tokens: s.store.run(move |c| auth::list_tokens(c, &user)).await? })
}

pub async fn delete_token(State(s): State<AppState>, Auth(p): Auth, ApiPath(id): ApiPath<String>) -> ApiResult<impl IntoResponse> {
    crate::server::store::validate_key("token id", &id)?;
    let user = p.user.clone();
    s.store.run_write(move |tx| auth::delete_token(tx, &user, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
