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
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use quill_verify::Hash;

use crate::block::{BlockBody, RevisionDraft};
use crate::catalog::{Catalog, CatalogChange};
use crate::error::{LedgerError, Result};
use crate::journal::JournalStore;
use crate::occ::{ConflictLog, ReadSet};
use crate::options::LedgerOptions;
use crate::state::{Snapshot, State};
use crate::tree_store::TreeStore;
use crate::types::CommitReceipt;

pub(crate) use build::{apply_block, replayed_rows};
pub(crate) use pipeline::{append_verified, catch_up, commit, enqueue, is_idle, run, Pipeline};

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
    pub reply: Reply,
}

/// Where a commit's outcome goes: a thread blocked on it, or a future awaiting it (an async
/// server's worker, which must not block while the batch is fsynced).
pub enum Reply {
    Blocking(SyncSender<Result<CommitReceipt>>),
    Async(tokio::sync::oneshot::Sender<Result<CommitReceipt>>),
}

impl Reply {
    /// Delivers the outcome; a waiter that has gone (a dropped future) is not an error: the
    /// commit stands either way.
    pub fn send(self, outcome: Result<CommitReceipt>) {
        match self {
            Reply::Blocking(sender) => {
                let _ = sender.send(outcome);
            }
            Reply::Async(sender) => {
                let _ = sender.send(outcome);
            }
        }
    }
}

/// State shared between transactions and the committer, changed only under its mutex.
pub(crate) struct Shared {
    /// Blocks applied to derived state and visible to new transactions.
    pub applied: u64,
    pub catalog: Arc<Catalog>,
    /// Hash of block `applied - 1`.
    pub last_hash: Option<Hash>,
    /// Time of block `applied - 1`, ms since epoch.
    pub last_millis: i64,
    pub log: ConflictLog,
    /// Derived state as of block `applied`: what new transactions read. Shared by every
    /// transaction that begins before the next publish.
    pub snapshot: Arc<Snapshot>,
    /// Why the ledger refuses writes (after an I/O failure), if it does.
    pub poisoned: Option<String>,
}

/// The parts of a ledger the committer thread shares.
pub(crate) struct Core {
    pub strand_id: String,
    pub options: LedgerOptions,
    pub journal: JournalStore,
    pub tree: TreeStore,
    pub state: State,
    pub pipeline: Pipeline,
    shared: RwLock<Shared>,
}

impl Core {
    pub fn new(
        strand_id: String,
        options: LedgerOptions,
        journal: JournalStore,
        tree: TreeStore,
        state: State,
        pipeline: Pipeline,
        shared: Shared,
    ) -> Core {
        Core {
            strand_id,
            options,
            journal,
            tree,
            state,
            pipeline,
            shared: RwLock::new(shared),
        }
    }

    /// Reads the shared state (committing threads, readers).
    pub fn shared(&self) -> RwLockReadGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.shared.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the shared state (the syncer publishing, poisoning).
    pub fn shared_mut(&self) -> RwLockWriteGuard<'_, Shared> {
        self.shared.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn poison(&self, reason: String) {
        tracing::error!(%reason, "ledger is read-only until reopened");
        self.shared_mut().poisoned.get_or_insert(reason);
    }
}

impl quill_verify::FullNodes for Core {
    type Error = LedgerError;
    fn full_node(&self, level: u32, index: u64) -> Result<Hash> {
        self.tree.full_node(level, index)
    }
}
