//! HTTP routes: the native API under `/api/v1`, `/metrics`, `/healthz`.
//!
//! Every route authenticates (Basic with a user's password, or Bearer with
//! an API token) except `GET /healthz` and the signed download link, which
//! carries its own HMAC-style signature.

mod admin;
mod backups;
mod data;
pub mod openapi;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;

use super::error::{code, ApiError};
use super::store::auth::{self, Principal};
use super::AppState;

/// A JSON body; rejections become [`ApiError`]s (400, or 413 when too large).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A path; rejections become [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A query string; rejections become [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

fn rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(code::PAYLOAD_TOO_LARGE, "the request body is larger than the server accepts")
    } else {
        ApiError::invalid(text)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}
impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

/// A typed response body, written through a `serde_json::Value` so that
/// its keys come out sorted at every level, byte for byte as the `json!`
/// bodies the handlers built before they were typed.
pub(crate) fn sorted<T: serde::Serialize>(body: &T) -> Result<Json<serde_json::Value>, ApiError> {
    serde_json::to_value(body).map(Json).map_err(|e| ApiError::internal(format!("response not serializable: {e}")))
}

/// The authenticated caller.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("authentication required (Basic or Bearer)"))?
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?
            .to_string();
        let store = state.store.clone();
        let principal = if let Some(token) = value.strip_prefix("Bearer ") {
            let token = zeroize::Zeroizing::new(token.trim().to_string());
            store.run(move |c| auth::authenticate_token(c, &token)).await?
        } else if let Some(b64) = value.strip_prefix("Basic ") {
            let decoded = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| ApiError::unauthorized("malformed Basic credentials"))?,
            );
            let text = std::str::from_utf8(&decoded).map_err(|_| ApiError::unauthorized("malformed Basic credentials"))?;
            let (name, password) = text.split_once(':').ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
            let (name, password) = (name.to_string(), zeroize::Zeroizing::new(password.to_string()));
            let lookup = name.clone();
            let found = store.run(move |c| auth::user_by_name(c, &lookup)).await?;
            let phc = found.as_ref().map(|(_, phc)| phc.as_str());
            match (state.passwords.check(&name, password, phc).await?, found) {
                (true, Some((user, _))) => auth::principal_of(user),
                _ => return Err(ApiError::unauthorized("wrong user name or password")),
            }
        } else {
            return Err(ApiError::unauthorized("unsupported authentication scheme (use Basic or Bearer)"));
        };
        Ok(Auth(principal))
    }
}

/// HTTP counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: [AtomicU64; 6],
    /// Sum of request durations, microseconds.
    duration_us: AtomicU64,
    /// Latency histogram buckets (≤ 1, 5, 25, 100, 500, 2500 ms, +Inf).
    buckets: [AtomicU64; 7],
}

const BUCKETS_MS: [f64; 6] = [1.0, 5.0, 25.0, 100.0, 500.0, 2500.0];

async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let class = (response.status().as_u16() / 100) as usize;
    let m = &state.http;
    m.requests[class.min(5)].fetch_add(1, Ordering::Relaxed);
    let elapsed = started.elapsed();
    m.duration_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    let ms = elapsed.as_secs_f64() * 1000.0;
    let bucket = BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(BUCKETS_MS.len());
    m.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    // Only method, path and status: never headers or query strings (secrets).
    tracing::debug!(%method, %path, status = response.status().as_u16(), ms = format!("{ms:.1}"), "request");
    response
}

/// Liveness.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
    /// The node id (a UUID, kept across restarts).
    node: String,
}

pub(crate) async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    sorted(&Health { status: "ok", node: state.engine.node().to_string() })
}

pub(crate) async fn metrics(State(state): State<AppState>, Auth(_): Auth) -> impl IntoResponse {
    use std::fmt::Write as _;
    let mut out = String::new();
    let m = &state.http;
    let _ = writeln!(out, "# HELP coffer_http_requests_total HTTP requests by status class.\n# TYPE coffer_http_requests_total counter");
    for (i, class) in ["1xx", "1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate().skip(1) {
        let _ = writeln!(out, "coffer_http_requests_total{{class=\"{class}\"}} {}", m.requests[i].load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP coffer_password_checks_total Argon2id checks of Basic-auth passwords (a success is remembered for {} s).\n# TYPE coffer_password_checks_total counter\ncoffer_password_checks_total {}",
        auth::PasswordChecks::TTL.as_secs(),
        state.passwords.runs.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# HELP coffer_http_request_duration_seconds HTTP request latency.\n# TYPE coffer_http_request_duration_seconds histogram");
    let mut cumulative = 0;
    for (i, b) in BUCKETS_MS.iter().enumerate() {
        cumulative += m.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "coffer_http_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}", b / 1000.0);
    }
    cumulative += m.buckets[BUCKETS_MS.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "coffer_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "coffer_http_request_duration_seconds_sum {}", m.duration_us.load(Ordering::Relaxed) as f64 / 1e6);
    let _ = writeln!(out, "coffer_http_request_duration_seconds_count {cumulative}");
    let e = &state.engine.metrics;
    for (name, help, value) in [
        ("coffer_backups_done_total", "Backups completed.", &e.backups_done),
        ("coffer_backups_failed_total", "Backups failed.", &e.backups_failed),
        ("coffer_backup_bytes_total", "Bytes written by backups.", &e.backup_bytes),
        ("coffer_restores_done_total", "Restores completed.", &e.restores_done),
        ("coffer_restores_failed_total", "Restores failed.", &e.restores_failed),
        ("coffer_restored_documents_total", "Documents restored.", &e.restored_documents),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP coffer_jobs_running Backup and restore jobs running.\n# TYPE coffer_jobs_running gauge\ncoffer_jobs_running {}",
        e.running.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP coffer_kdf_memory_bytes Argon2id work memory kept between passphrase jobs (kdf_keep_seconds).\n# TYPE coffer_kdf_memory_bytes gauge\ncoffer_kdf_memory_bytes {}",
        crate::seal::kdf_memory_kept_bytes()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(code::METHOD_NOT_ALLOWED, "method not allowed on this route")
}

/// The router: every route of [`openapi::ROUTES`], the table the OpenAPI
/// document is built from.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body;
    let mut router = Router::new();
    for r in openapi::ROUTES {
        router = router.route(r.path, (r.handler)());
    }
    router
        // The upload sets its own limit (max_upload) inside this one.
        .layer(DefaultBodyLimit::max(max_body))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}
