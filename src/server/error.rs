//! The one error type of the server, with its HTTP status table.
//!
//! Every failure a handler can return becomes `{"code","message"}` with a
//! stable code: the core's codes ([`coffer::Error::code`](crate::Error::code))
//! plus the HTTP ones below. The status of each code is fixed by
//! [`status_of`]; tests check the table.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Codes the server adds to the core's.
pub mod code {
    /// No or bad credentials.
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    /// Authenticated, but not allowed (role or organization).
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// No such resource (or not visible to the caller).
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The resource exists already, or is in a state that forbids the operation.
    pub const CONFLICT: &str = "CONFLICT";
    /// The request body is above the configured limit.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    /// A passphrase or password that zxcvbn scores below the minimum.
    pub const WEAK_PASSPHRASE: &str = "WEAK_PASSPHRASE";
    /// A bug or an unexpected failure of the storage layer.
    pub const INTERNAL: &str = "INTERNAL";
    /// The method is not allowed on this route.
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    /// Every code above.
    pub const ALL: [&str; 8] = [UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, PAYLOAD_TOO_LARGE, WEAK_PASSPHRASE, INTERNAL, METHOD_NOT_ALLOWED];
}

/// Every code a response may carry: the core's, then the server's.
pub fn all_codes() -> impl Iterator<Item = &'static str> {
    crate::Error::CODES.into_iter().chain(code::ALL)
}

/// The schema of `code` in the OpenAPI document: a string, one of
/// [`all_codes`].
pub struct ErrorCode;

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::server::api::openapi::string_enum("A stable, machine-readable error code; its HTTP status is fixed.", all_codes())
    }
}

impl utoipa::ToSchema for ErrorCode {}

/// An error with its HTTP status and stable code.
#[derive(Debug)]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message (never contains secrets).
    pub message: String,
}

/// The status table: one HTTP status per code.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "INVALID_INPUT" => StatusCode::BAD_REQUEST,
        "NOT_A_BUNDLE" | "UNSUPPORTED_VERSION" | "WRONG_KEY" | "CORRUPT" | "TRUNCATED" | "WEAK_PASSPHRASE" => StatusCode::UNPROCESSABLE_ENTITY,
        "LIMIT_EXCEEDED" | "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "UNAUTHORIZED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "CONFLICT" => StatusCode::CONFLICT,
        "METHOD_NOT_ALLOWED" => StatusCode::METHOD_NOT_ALLOWED,
        // IO, INTERNAL and anything unexpected.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    /// 400 INVALID_INPUT.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("INVALID_INPUT", message)
    }
    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(code::NOT_FOUND, message)
    }
    /// 409 CONFLICT.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(code::CONFLICT, message)
    }
    /// 403 FORBIDDEN.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(code::FORBIDDEN, message)
    }
    /// 401 UNAUTHORIZED.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(code::UNAUTHORIZED, message)
    }
    /// 500 INTERNAL.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, message)
    }
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        Self { code: e.code(), message: e.to_string() }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.code == rusqlite::ErrorCode::ConstraintViolation {
                return Self::conflict("the resource exists already");
            }
        }
        tracing::error!(error = %e, "storage error");
        Self::internal("storage error")
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::not_found("backup content not found in the backend"),
            other => {
                tracing::error!(error = %other, "backend error");
                Self::new("IO", format!("backup backend: {other}"))
            }
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        crate::error::into_error(e).into()
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "task failed");
        Self::internal("a background task failed")
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        Self::invalid(format!("malformed JSON: {e}"))
    }
}

/// The body of every error response: `{"code","message"}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Body<'a> {
    /// Stable machine-readable code.
    #[schema(value_type = ErrorCode)]
    pub code: &'a str,
    /// Human-readable message.
    pub message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        let mut response = (status, Json(Body { code: self.code, message: &self.message })).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection cannot be reused.
            response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        response
    }
}

/// Result alias of handlers and the store.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_code_has_a_status() {
        for c in crate::Error::CODES {
            let s = status_of(c);
            assert!(s.is_client_error() || c == "IO", "{c} → {s}");
        }
        assert_eq!(status_of("WRONG_KEY"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_of("LIMIT_EXCEEDED"), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status_of(code::UNAUTHORIZED), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(code::CONFLICT), StatusCode::CONFLICT);
        assert_eq!(status_of("IO"), StatusCode::INTERNAL_SERVER_ERROR);
        for c in code::ALL {
            assert!(c == code::INTERNAL || status_of(c) != StatusCode::INTERNAL_SERVER_ERROR, "{c} has no status of its own");
        }
    }
}
