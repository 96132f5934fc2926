//! The commit path: queued commits are taken in batches (group commit), checked for OCC
//! conflicts, hashed into blocks, applied to derived state and appended to the journal; one
//! fsync makes the batch durable, and only then is it published and acknowledged.
//!
//! What is durable at acknowledgement: every block of the batch is in the journal and the
//! journal has been fsynced (`Journal::sync`). Derived state may lag on disk; it is rebuilt
//! from the journal on open. What is visible to a new transaction: only published batches,
//! which are durable (transactions read the snapshot the syncer publishes, not the latest
//! state-store commit). Each batch's derived state is an in-memory layer; a third thread, the
//! flusher, writes layers to redb in the background (see `state`).
//!
//! When the pipeline is idle (nothing queued, no batch waiting for its fsync), a committing
//! thread runs its own commit through the same steps without handing it to the two threads
//! ([`commit`]): a lone writer then pays for one fsync, not for three thread wake-ups.

mod build;
mod flusher;
mod occ_check;
mod pipeline;

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use ion_rs::Element;

use crate::block::{BlockBody, RevisionDraft};
use crate::catalog::CatalogChange;
use crate::error::Result;
use crate::occ::ReadSet;
use crate::state::Record;
use crate::types::CommitReceipt;

pub(crate) use build::apply_block;
pub(crate) use pipeline::{commit, run, Pipeline};

/// A transaction's writes, ready to be hashed into a block.
pub struct PreparedCommit {
    pub transaction_id: String,
    pub start: u64,
    pub started_at: Instant,
    pub reads: ReadSet,
    pub revisions: Vec<RevisionDraft>,
    /// Ion binary of each revision's data (empty for deletes), parallel to `revisions`.
    pub data_bytes: Vec<Vec<u8>>,
    pub catalog_changes: Vec<CatalogChange>,
    /// `transactionInfo` and `catalogChanges`, hashed by the committing thread.
    pub body: BlockBody,
}

/// A commit waiting for the committer.
pub struct CommitRequest {
    pub commit: PreparedCommit,
    pub reply: SyncSender<Result<CommitReceipt>>,
}

/// One revision being applied to derived state.
pub struct AppliedRevision<'a> {
    pub table_id: &'a str,
    pub document_id: &'a str,
    pub data: Option<&'a Element>,
    /// The data it replaces when known (`Some(None)`: a new document); `None` when unknown
    /// (replay), and then it is read from derived state.
    pub previous: Option<Option<&'a Element>>,
    pub record: Record<'a>,
}
