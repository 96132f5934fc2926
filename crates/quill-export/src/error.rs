//! The export's error type.

use thiserror::Error;

/// Why an export (or one of its parts) failed.
#[derive(Debug, Error)]
pub enum ExportError {
    /// Reading the journal failed.
    #[error("reading the journal: {0}")]
    Ledger(#[from] quill_ledger::LedgerError),
    /// Encoding a block or manifest failed.
    #[error("encoding: {0}")]
    Encode(String),
    /// Writing an object failed.
    #[error("writing {key}: {detail}")]
    Write {
        /// The object key.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// A request parameter is invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// The S3 client could not be configured.
    #[error("S3 configuration: {0}")]
    S3Config(String),
    /// An export read back does not verify.
    #[error("export does not verify: {0}")]
    Verification(String),
    /// Reading an object failed.
    #[error("reading {key}: {detail}")]
    Read {
        /// The object key.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// An object a manifest lists is not there.
    #[error("object {0} is missing")]
    MissingObject(String),
    /// An export cannot be imported as it is (incomplete, or in a format that cannot be
    /// verified); names the first missing or bad block when there is one.
    #[error("import refused: {0}")]
    ImportRefused(String),
    /// A block of an export being imported does not verify or does not fit the chain.
    #[error("block {} refused: {detail}", block_address.to_ion_text())]
    BlockRejected {
        /// The first bad block.
        block_address: quill_ledger::BlockAddress,
        /// What is wrong with it.
        detail: String,
    },
    /// A local file operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result with [`ExportError`].
pub type Result<T> = std::result::Result<T, ExportError>;

impl From<ion_rs::IonError> for ExportError {
    fn from(e: ion_rs::IonError) -> Self {
        ExportError::Encode(e.to_string())
    }
}
