//! The Quill ledger engine: a journal-first, verifiable, serializable document store.
//!
//! The journal is the database. Every committed transaction is one block, hash-chained to the
//! previous one, appended to files this crate owns and fsynced before the commit is
//! acknowledged. Tables, indexes, history and the catalog are derived from the journal and can
//! be rebuilt from it. Hashes, digests and proofs are bit-compatible with Amazon QLDB (see
//! `quill-verify`).
//!
//! Main types:
//! - [`Ledger`]: one ledger in a directory. `Ledger::create`, `Ledger::open`, digests, blocks,
//!   revisions and proofs.
//! - [`Transaction`]: serializable (optimistic concurrency) unit of work; reads a snapshot as of
//!   its start plus its own writes, and fails at commit with [`LedgerError::OccConflict`] if
//!   anything it read was changed by a transaction committed after it started.
//!
//! ```
//! use quill_ledger::{Ledger, LedgerOptions};
//! use ion_rs::Element;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ledger = Ledger::create(dir.path(), "vehicles", LedgerOptions::default()).unwrap();
//! let id = ledger.transact(|tx| {
//!     tx.create_table("Vehicle", None)?;
//!     tx.insert("Vehicle", Element::read_one(r#"{VIN: "1N4AL11D75C109151"}"#).unwrap())
//! }).unwrap();
//! let doc = ledger.transact(|tx| tx.get("Vehicle", &id)).unwrap().unwrap();
//! assert_eq!(doc.version, 0);
//! ```

mod block;
mod catalog;
mod clock;
mod commit;
pub mod equality;
mod error;
mod ids;
mod journal;
mod ledger;
pub mod limits;
mod occ;
mod state;
pub mod storage;
mod transaction;
mod tree_store;
mod types;

pub use catalog::table_to_element;
pub use clock::{millis_from_timestamp, timestamp_from_millis};
pub use error::{LedgerError, Result};
pub use ids::is_valid_id;
pub use ledger::{ledger_dir, validate_ledger_name, Ledger, LedgerOptions, RecoveryReport};
pub use limits::Limits;
pub use transaction::{DocumentRef, Savepoint, Transaction};
pub use types::{
    BlockAddress, CommitReceipt, Document, IndexInfo, IndexStatus, LedgerDigest, Revision,
    RevisionMetadata, TableInfo, TableStatus,
};
