//! Errors: [`ServerError`] for starting the server, [`ApiError`] for what a request gets back.
//!
//! Every engine error becomes a QLDB exception in one place, [`ApiError::from_ledger`], so the
//! names and statuses drivers depend on (OCC → `OccConflictException`, expiry →
//! `InvalidSessionException` "Transaction … has expired") cannot drift apart between handlers.

use std::path::PathBuf;

use quill_ledger::LedgerError;

/// Why the server could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding or accepting on the listen address failed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory could not be read or prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A ledger found in the data directory could not be opened.
    #[error("cannot open ledger {name}: {source}")]
    OpenLedger {
        /// Its name.
        name: String,
        /// What the engine said.
        source: LedgerError,
    },
    /// A ledger's `control.json` is unreadable.
    #[error("ledger control file {path}: {detail}")]
    ControlFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The credentials file is unreadable or malformed.
    #[error("credentials file {path}: {detail}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line number).
        detail: String,
    },
    /// The policy file (`--policy`) is unreadable or malformed.
    #[error("policy file {path}: {detail}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line, or the statement and field).
        detail: String,
    },
    /// The configuration contradicts itself.
    #[error("configuration: {0}")]
    Config(String),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The transparency log key could not be read or created.
    #[error("transparency log key: {0}")]
    LogKey(String),
    /// A blocking startup task failed.
    #[error("internal error during startup: {0}")]
    Internal(String),
}

/// Which API family a request belongs to: the two render errors differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// QLDB Session (AWS JSON 1.0): error code in the body's `__type` and the header.
    Data,
    /// QLDB control plane (REST-JSON): error code in the `x-amzn-ErrorType` header.
    Control,
}

/// The QLDB (and AWS-generic) exception names this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid request for the session's state, or malformed input.
    BadRequest,
    /// The session (or the transaction, when it expired) is no longer valid.
    InvalidSession,
    /// Optimistic concurrency conflict at commit.
    OccConflict,
    /// A quota was reached (sessions, cursors, ledger limits).
    LimitExceeded,
    /// The server is shutting down or overloaded; drivers retry it (503).
    CapacityExceeded,
    /// A control-plane parameter is invalid.
    InvalidParameter,
    /// No such ledger (control plane).
    ResourceNotFound,
    /// A ledger of that name exists already.
    ResourceAlreadyExists,
    /// The resource is busy.
    ResourceInUse,
    /// The operation needs a precondition (deletion protection off, …).
    ResourcePreconditionNotMet,
    /// Unknown access key id.
    UnrecognizedClient,
    /// Bad or stale signature.
    InvalidSignature,
    /// The caller's policy does not allow the action (or the statement).
    AccessDenied,
    /// The request carries no signature at all.
    MissingAuthenticationToken,
    /// Unknown `X-Amz-Target` or route.
    UnknownOperation,
    /// The body is not the JSON the operation expects.
    Serialization,
    /// The body is larger than [`crate::limits::REQUEST_BODY_MAX_BYTES`].
    RequestEntityTooLarge,
    /// The body did not arrive within [`crate::limits::BODY_READ_TIMEOUT`].
    RequestTimeout,
    /// A feature QLDB has but Quill does not (journal exports, streams).
    NotImplemented,
    /// A bug or an engine failure: never the client's fault.
    InternalFailure,
}

impl ErrorKind {
    /// The exception name as drivers match it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "BadRequestException",
            ErrorKind::InvalidSession => "InvalidSessionException",
            ErrorKind::OccConflict => "OccConflictException",
            ErrorKind::LimitExceeded => "LimitExceededException",
            ErrorKind::CapacityExceeded => "CapacityExceededException",
            ErrorKind::InvalidParameter => "InvalidParameterException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceAlreadyExists => "ResourceAlreadyExistsException",
            ErrorKind::ResourceInUse => "ResourceInUseException",
            ErrorKind::ResourcePreconditionNotMet => "ResourcePreconditionNotMetException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::RequestEntityTooLarge => "RequestEntityTooLargeException",
            ErrorKind::RequestTimeout => "RequestTimeoutException",
            ErrorKind::NotImplemented => "NotImplementedException",
            ErrorKind::InternalFailure => "InternalFailure",
        }
    }

    /// The HTTP status, from the service models (and the reference's table).
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::ResourceNotFound => 404,
            ErrorKind::ResourceAlreadyExists | ErrorKind::ResourceInUse => 409,
            ErrorKind::ResourcePreconditionNotMet => 412,
            ErrorKind::MissingAuthenticationToken | ErrorKind::AccessDenied => 403,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::RequestEntityTooLarge => 413,
            ErrorKind::InternalFailure => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::CapacityExceeded => 503,
            _ => 400,
        }
    }
}

/// An error reply: exception name, status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which exception.
    pub kind: ErrorKind,
    /// Human-readable message (drivers match some of them, e.g. "Transaction … has expired").
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// `BadRequestException`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::BadRequest, message)
    }

    /// `InvalidParameterException`.
    pub fn invalid_parameter(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidParameter, message)
    }

    /// `InternalFailure` (500): logged, and drivers retry it.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InternalFailure, message)
    }

    /// The one mapping from engine errors to QLDB exceptions.
    pub fn from_ledger(error: &LedgerError, plane: Plane) -> ApiError {
        let message = error.to_string();
        let kind = match error {
            LedgerError::OccConflict { .. } => ErrorKind::OccConflict,
            LedgerError::TransactionExpired { .. } => ErrorKind::InvalidSession,
            LedgerError::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            LedgerError::UnknownLedger(_) | LedgerError::UnknownBlock(_) => match plane {
                Plane::Data => ErrorKind::BadRequest,
                Plane::Control => ErrorKind::InvalidParameter,
            },
            LedgerError::UnknownDocument(_) if plane == Plane::Control => {
                ErrorKind::InvalidParameter
            }
            LedgerError::InvalidLedgerName(_) => ErrorKind::InvalidParameter,
            LedgerError::LedgerExists(_) => ErrorKind::ResourceAlreadyExists,
            // 503: the drivers back off and retry.
            LedgerError::Unavailable(_) => ErrorKind::CapacityExceeded,
            LedgerError::Io(_)
            | LedgerError::Storage(_)
            | LedgerError::Corrupted { .. }
            | LedgerError::ReadOnly(_) => ErrorKind::InternalFailure,
            _ => match plane {
                Plane::Data => ErrorKind::BadRequest,
                Plane::Control => ErrorKind::InvalidParameter,
            },
        };
        ApiError::new(kind, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occ_and_expiry_map_to_the_names_drivers_match() {
        let occ = LedgerError::OccConflict {
            transaction_id: "t".into(),
            detail: "d".into(),
        };
        assert_eq!(
            ApiError::from_ledger(&occ, Plane::Data).kind,
            ErrorKind::OccConflict
        );
        let expired = LedgerError::TransactionExpired {
            transaction_id: "abc".into(),
        };
        let error = ApiError::from_ledger(&expired, Plane::Data);
        assert_eq!(error.kind, ErrorKind::InvalidSession);
        assert_eq!(error.message, "Transaction abc has expired");
    }

    #[test]
    fn storage_failures_are_server_faults() {
        let error = LedgerError::Storage("disk".into());
        let api = ApiError::from_ledger(&error, Plane::Data);
        assert_eq!(api.kind.status(), 500);
    }

    #[test]
    fn statuses_follow_the_models() {
        assert_eq!(ErrorKind::ResourcePreconditionNotMet.status(), 412);
        assert_eq!(ErrorKind::CapacityExceeded.status(), 503);
        assert_eq!(ErrorKind::RequestTimeout.status(), 408);
        assert_eq!(ErrorKind::OccConflict.status(), 400);
        assert_eq!(ErrorKind::ResourceNotFound.status(), 404);
    }
}
