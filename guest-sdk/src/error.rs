//! The SDK's error type, mirroring the WIT `error` record.

use std::fmt;

use crate::bindings::callop::plugin::types as wit;

/// Category of an [`Error`] (mirrors the WIT `error-code` enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The source id is unknown, was removed, or belongs to another instance.
    InvalidSource,
    /// The operation does not apply to this kind of source.
    WrongKind,
    /// A malformed argument (bad name syntax, bad instant, ...).
    InvalidArgument,
    /// The name is already in use (e.g. a channel opened twice).
    AlreadyExists,
    /// The named target (plugin instance, `@app` endpoint, named ping) does
    /// not exist.
    NotFound,
    /// The embedder's policy forbids this operation for this plugin.
    NotPermitted,
    /// A host limit was hit (sources, queued messages, message size, ...).
    LimitExceeded,
    /// The target channel was closed or removed.
    Closed,
    /// The operation is recognised but not supported by this host.
    Unsupported,
    /// An internal host failure.
    Internal,
}

/// Error returned by fallible loop operations: a category plus the host's
/// human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Machine-readable category.
    pub code: ErrorCode,
    /// Human-readable explanation from the host (or the SDK).
    pub message: String,
}

impl Error {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Error {
        let code = match e.code {
            wit::ErrorCode::InvalidSource => ErrorCode::InvalidSource,
            wit::ErrorCode::WrongKind => ErrorCode::WrongKind,
            wit::ErrorCode::InvalidArgument => ErrorCode::InvalidArgument,
            wit::ErrorCode::AlreadyExists => ErrorCode::AlreadyExists,
            wit::ErrorCode::NotFound => ErrorCode::NotFound,
            wit::ErrorCode::NotPermitted => ErrorCode::NotPermitted,
            wit::ErrorCode::LimitExceeded => ErrorCode::LimitExceeded,
            wit::ErrorCode::Closed => ErrorCode::Closed,
            wit::ErrorCode::Unsupported => ErrorCode::Unsupported,
            wit::ErrorCode::Internal => ErrorCode::Internal,
        };
        Error {
            code,
            message: e.message,
        }
    }
}

/// Result alias used throughout the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;
