//! The engine's typed errors. Rendered to users once, at the edge (server or CLI).

use crate::BlockAddress;

/// Everything a ledger operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Another transaction committed a change to something this one read.
    #[error("Optimistic concurrency control (OCC) conflict: transaction {transaction_id} read data changed by a transaction committed after it started ({detail})")]
    OccConflict {
        /// The transaction that lost.
        transaction_id: String,
        /// What was read and changed.
        detail: String,
    },
    /// The transaction is older than the timeout.
    #[error("Transaction {transaction_id} has expired")]
    TransactionExpired {
        /// The expired transaction.
        transaction_id: String,
    },
    /// No active table has this name (or no table this id).
    #[error("No such table: {0}")]
    UnknownTable(String),
    /// A table of that name already exists.
    #[error("Table already exists: {0}")]
    TableExists(String),
    /// The document does not exist (or is deleted).
    #[error("No such document: {0}")]
    UnknownDocument(String),
    /// No such index on the table.
    #[error("No such index: {0}")]
    UnknownIndex(String),
    /// An index on that field already exists.
    #[error("An index on field {field} already exists on table {table}")]
    IndexExists {
        /// Table name.
        table: String,
        /// Field name.
        field: String,
    },
    /// A configured limit was exceeded.
    #[error("Limit exceeded: {limit} is {max}, got {actual}")]
    LimitExceeded {
        /// Name of the limit (as in `limits.rs`).
        limit: &'static str,
        /// The configured maximum.
        max: usize,
        /// What was asked.
        actual: usize,
    },
    /// A statement read more than its caller allowed ([`crate::Transaction::limit_reads`]).
    #[error("The statement read more than the limit set for it")]
    ReadLimitReached,
    /// A value that the engine cannot accept (bad name, non-struct document, …).
    #[error("Invalid input: {0}")]
    InvalidInput(String),
    /// The ledger name does not follow QLDB's rules.
    #[error("Invalid ledger name {0:?}: 1-32 characters of [A-Za-z0-9-], no leading or trailing '-', no '--', not all digits")]
    InvalidLedgerName(String),
    /// A ledger already exists in the directory.
    #[error("Ledger already exists: {0}")]
    LedgerExists(String),
    /// Another handle (in this or another process) has the ledger open.
    #[error("Ledger {0} is in use by another process or handle")]
    InUse(String),
    /// No ledger in the directory.
    #[error("No such ledger: {0}")]
    UnknownLedger(String),
    /// The requested block does not exist (beyond the tip, or another strand).
    #[error("No such block: {0}")]
    UnknownBlock(String),
    /// The journal holds bytes that fail their checksum or hash chain.
    #[error("Journal corrupted at block {block_address:?}: {detail}")]
    Corrupted {
        /// The first bad block.
        block_address: BlockAddress,
        /// What is wrong.
        detail: String,
    },
    /// A block offered to an import does not verify or does not fit (see `Importer`).
    #[error("Import refused at block {}: {detail}", block_address.to_ion_text())]
    ImportRejected {
        /// The first bad block.
        block_address: BlockAddress,
        /// What is wrong.
        detail: String,
    },
    /// A previous write or fsync failed; the ledger refuses writes until reopened.
    #[error("Ledger is read-only after an I/O failure: {0}")]
    ReadOnly(String),
    /// The journal's database is unreachable, read-only or full; nothing was written and a
    /// retry may succeed once it is back.
    #[error("Storage unavailable, retry: {0}")]
    Unavailable(String),
    /// Operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Derived-state storage error.
    #[error("Storage error: {0}")]
    Storage(String),
    /// An Ion value could not be encoded or decoded.
    #[error("Ion error: {0}")]
    Ion(String),
}

impl LedgerError {
    /// True for the error a retry can cure.
    pub fn is_occ_conflict(&self) -> bool {
        matches!(self, LedgerError::OccConflict { .. })
    }
}

impl From<ion_rs::IonError> for LedgerError {
    fn from(e: ion_rs::IonError) -> Self {
        LedgerError::Ion(e.to_string())
    }
}

/// Result alias for ledger operations.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
