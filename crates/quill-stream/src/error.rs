//! Errors of the stream engine.

/// An error of the stream engine (not of a sink: see [`crate::SinkError`]).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("malformed journal block: {0}")]
    MalformedBlock(String),
    #[error("cannot encode a stream record: {0}")]
    Encode(#[from] ion_rs::IonError),
    #[error("stream cursor: {0}")]
    Cursor(String),
    #[error("stream storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] quill_ledger::LedgerError),
}

pub type Result<T, E = StreamError> = std::result::Result<T, E>;
