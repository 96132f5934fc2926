//! The errors a statement can fail with. One enum for the whole crate so the server maps
//! PartiQL failures to QLDB exceptions in one place; ledger errors stay wrapped (not
//! stringified) so OCC conflicts and expiry remain recognisable.

use quill_ledger::LedgerError;

pub use crate::parser::ParseError;

/// Everything `execute` / `explain` can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartiqlError {
    /// The statement text is not valid PartiQL (QLDB dialect).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// No active table (or, for `history`, no table id) with this name.
    #[error("No such table: {0}")]
    UnknownTable(String),
    /// An operator or function got a value of the wrong type.
    #[error("Type error: {0}")]
    Type(String),
    /// The statement uses a name or shape that is valid syntax but has no meaning here.
    #[error("Semantic error: {0}")]
    Semantic(String),
    /// The number of `?` placeholders differs from the number of parameters sent.
    #[error(
        "Parameter count mismatch: the statement has {expected} parameter(s), {actual} were sent"
    )]
    ParameterCount {
        /// Placeholders in the statement.
        expected: usize,
        /// Parameters sent with it.
        actual: usize,
    },
    /// A QLDB feature Quill does not implement yet.
    #[error("{0}")]
    Unsupported(String),
    /// An input or intermediate result went over one of the limits in [`crate::limits`].
    #[error("Limit exceeded: {limit} is {max}, got {actual}")]
    Limit {
        /// Name of the limit constant.
        limit: &'static str,
        /// Its value.
        max: usize,
        /// What the statement asked for.
        actual: usize,
    },
    /// What a statement materialised (intermediate rows, sort and group buffers, results)
    /// went over its budget ([`crate::ExecuteLimits::result_bytes_max`], estimated as Ion
    /// binary).
    #[error(
        "Statement exceeds its result budget of {limit} bytes (the rows it holds while \
         running count, joined and sorted rows included); select fewer or smaller values, or \
         filter more"
    )]
    ResultTooLarge {
        /// The budget, in bytes.
        limit: usize,
    },
    /// The ledger refused an operation (OCC conflict, expiry, quota, …).
    #[error(transparent)]
    Ledger(LedgerError),
}

impl From<LedgerError> for PartiqlError {
    fn from(error: LedgerError) -> Self {
        match error {
            // Surface the QLDB message as our own variant so callers need not look inside.
            LedgerError::UnknownTable(name) => PartiqlError::UnknownTable(name),
            other => PartiqlError::Ledger(other),
        }
    }
}

impl From<ion_rs::IonError> for PartiqlError {
    fn from(error: ion_rs::IonError) -> Self {
        PartiqlError::Ledger(LedgerError::from(error))
    }
}

impl PartiqlError {
    /// Shorthand for a type error message.
    pub(crate) fn type_error(message: impl Into<String>) -> Self {
        PartiqlError::Type(message.into())
    }
}

/// Result alias for this crate.
pub type Result<T, E = PartiqlError> = std::result::Result<T, E>;
