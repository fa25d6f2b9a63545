//! The one error type of the core, with a stable string code per variant.
//!
//! The codes are part of the public contract: the CLI prints them
//! (`error[WRONG_KEY]: …`), the JS package puts them in `CofferError.code`,
//! and the HTTP API returns them in `{"code","message"}`. Never rename one.

use std::io;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the core can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input does not start with a coffer magic number.
    #[error("not a coffer bundle or sealed file: {0}")]
    NotABundle(String),
    /// A coffer file of a version (or with a feature) this build does not read.
    #[error("unsupported version: {0}")]
    UnsupportedVersion(String),
    /// No passphrase or identity we were given opens the file.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// Authentication or an integrity check failed: the data was altered.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The input ended before the format says it should.
    #[error("truncated: {0}")]
    Truncated(String),
    /// A length, count, depth, ratio or cost is above what this reader accepts.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The caller gave us something malformed (bad JSON, bad key text, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The operating system failed a read or write.
    #[error("i/o error: {0}")]
    Io(io::Error),
}

impl Error {
    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotABundle(_) => "NOT_A_BUNDLE",
            Error::UnsupportedVersion(_) => "UNSUPPORTED_VERSION",
            Error::WrongKey(_) => "WRONG_KEY",
            Error::Corrupt(_) => "CORRUPT",
            Error::Truncated(_) => "TRUNCATED",
            Error::LimitExceeded(_) => "LIMIT_EXCEEDED",
            Error::InvalidInput(_) => "INVALID_INPUT",
            Error::Io(_) => "IO",
        }
    }

    /// Every code, in a fixed order (for documentation and exhaustive tests).
    pub const CODES: [&'static str; 8] = ["NOT_A_BUNDLE", "UNSUPPORTED_VERSION", "WRONG_KEY", "CORRUPT", "TRUNCATED", "LIMIT_EXCEEDED", "INVALID_INPUT", "IO"];

    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }
    pub(crate) fn truncated(msg: impl Into<String>) -> Self {
        Error::Truncated(msg.into())
    }
    pub(crate) fn limit(msg: impl Into<String>) -> Self {
        Error::LimitExceeded(msg.into())
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
}

/// Maps an I/O error from reading a format into our vocabulary: running out
/// of bytes is `TRUNCATED`, an error we wrapped ourselves comes back out
/// unchanged, anything else is `IO`.
pub(crate) fn from_read(e: io::Error, what: &str) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return Error::truncated(format!("unexpected end of input in {what}"));
    }
    into_error(e)
}

/// Unwraps an [`Error`] that travelled through an `io::Error` (our `Read`
/// and `Write` adapters do that), or wraps a plain I/O error.
pub fn into_error(e: io::Error) -> Error {
    if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::Io(e);
    }
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(ours)) => *ours,
        Some(Err(other)) => Error::Io(io::Error::new(kind, other)),
        None => Error::Io(io::Error::from(kind)),
    }
}

/// `?` on an `io::Result` goes through [`into_error`], so one of our errors
/// that travelled inside an `io::Error` comes back out with its own code.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        into_error(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(inner) => inner,
            other => io::Error::other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let all = [
            Error::NotABundle(String::new()),
            Error::UnsupportedVersion(String::new()),
            Error::WrongKey(String::new()),
            Error::Corrupt(String::new()),
            Error::Truncated(String::new()),
            Error::LimitExceeded(String::new()),
            Error::InvalidInput(String::new()),
            Error::Io(io::Error::other("x")),
        ];
        let codes: Vec<_> = all.iter().map(Error::code).collect();
        assert_eq!(codes, Error::CODES);
    }

    #[test]
    fn errors_survive_an_io_round_trip() {
        let io: io::Error = Error::WrongKey("nope".into()).into();
        assert_eq!(into_error(io).code(), "WRONG_KEY");
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(from_read(eof, "header").code(), "TRUNCATED");
    }
}
