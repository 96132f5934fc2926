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
//! Module layers. Each module uses only modules on its own line or above it, never below,
//! so there are no import cycles:
//! 1. `error`, `types`, `ids`, `calendar`, `clock`, `limits`, `equality`: plain types and
//!    helpers; `ion_binary`, the stored Ion the query and stream layers read in place.
//! 2. `catalog` (tables and indexes), `storage` (files, directory fsync, atomic writes),
//!    `options` (how a ledger is opened).
//! 3. `journal`, `tree_store` (the digest tree's full nodes), `block` (block encoding and
//!    hashing), `occ` (read and write sets, the conflict log).
//! 4. `state`: derived state (redb plus in-memory layers); `redaction` (erasing a redacted
//!    revision's data from the journal).
//! 5. `commit`: the commit path. Its `pipeline` (sequencer and syncer threads, lone
//!    committer, publishing) runs the steps in `occ_check` (OCC validation), `build` (block
//!    building) and `flusher` (the layered derived state the sequencer holds, written to
//!    redb); none of those depends on `pipeline`.
//! 6. `handle`: what a `Ledger` and its transactions share.
//! 7. `transaction`, then `ledger`: the public API.
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
mod cache;
pub mod calendar;
mod catalog;
mod clock;
mod commit;
pub mod equality;
mod error;
mod handle;
mod ids;
mod import;
pub mod ion_binary;
mod journal;
mod ledger;
pub mod limits;
mod occ;
mod options;
mod redaction;
mod state;
pub mod storage;
mod transaction;
mod tree_store;
mod types;
mod verbatim;

pub use block::{BlockPieces, PayloadData, PayloadHeader, PayloadRevision, StoredBlock};
pub use cache::remove_unused_caches;
pub use catalog::table_to_element;
pub use clock::{millis_from_timestamp, now_millis, timestamp_from_millis};
pub use error::{LedgerError, Result};
pub use ids::is_valid_id;
pub use import::{check_import_block, check_payload, claimed_address, Importer};
pub use journal::postgres::{
    blocking as postgres_blocking, db_error as postgres_error, redact_url, retry_while_unavailable,
    PostgresStore, StoredLedger,
};
pub use ledger::{ledger_dir, validate_ledger_name, Ledger};
pub use limits::Limits;
pub use options::{CacheDiscarded, LedgerOptions, RecoveryReport};
/// The PostgreSQL client the backend uses, for crates that keep their own state beside it.
pub use postgres;
pub use transaction::{DocumentRef, Savepoint, Transaction};
pub use types::{
    BlockAddress, BlockHashes, CommitReceipt, Document, IndexInfo, IndexStatus, LedgerDigest,
    RedactionRequest, Revision, RevisionMetadata, TableInfo, TableStatus,
};
