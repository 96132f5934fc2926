//! What a `Ledger` handle and its transactions share: the ledger's identity, its commit
//! pipeline's core, and the channel to the committer thread.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::commit::{self, CommitRequest, Core, PreparedCommit};
use crate::error::{LedgerError, Result};
use crate::ids::IdGenerator;
use crate::occ::ReadSet;
use crate::options::{LedgerOptions, RecoveryReport};
use crate::redaction;
use crate::storage::LockGuard;
use crate::types::{CommitReceipt, RedactionRequest};

pub(crate) struct LedgerInner {
    pub name: String,
    /// The ledger's directory.
    pub dir: std::path::PathBuf,
    /// Serialises the erasure of committed redactions (they share the pending file).
    pub redactions: Mutex<()>,
    pub strand_id: String,
    pub options: LedgerOptions,
    pub ids: IdGenerator,
    pub core: Arc<Core>,
    pub recovery: RecoveryReport,
    /// Held (flock) for as long as the ledger is open: two writers on one journal would fork it.
    pub _lock: LockGuard,
    pub commits: Mutex<Option<SyncSender<CommitRequest>>>,
    pub committer: Mutex<Option<JoinHandle<()>>>,
    /// A PostgreSQL ledger's cache directory (derived state); a temporary one is removed
    /// after everything else is closed.
    pub _cache: Option<crate::cache::CacheDir>,
}

impl LedgerInner {
    /// The committer's queue; refused on a mirror's copy and while the ledger closes.
    fn committer(&self) -> Result<SyncSender<CommitRequest>> {
        if self.options.replica {
            return Err(LedgerError::ReadOnly(
                "this ledger is a mirror's copy of another ledger: write to that one".into(),
            ));
        }
        let sender = self
            .commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        sender.ok_or_else(|| LedgerError::ReadOnly("ledger is closing".into()))
    }

    pub fn commit(&self, commit: PreparedCommit) -> Result<CommitReceipt> {
        commit::commit(&self.core, &self.committer()?, commit)
    }

    /// Queues `commit` for the committer without blocking; the receiver gets its outcome.
    pub fn enqueue(
        &self,
        commit: PreparedCommit,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<CommitReceipt>>> {
        Ok(commit::enqueue(&self.core, &self.committer()?, commit))
    }

    /// Step 2 of a committed redaction (see `redaction`): erases the revisions' data from the
    /// journal. The requests are durable (their block is), so after a failure they stay
    /// pending and the next open completes them.
    pub fn erase_committed_redactions(&self, requests: &[RedactionRequest]) {
        if requests.is_empty() {
            return;
        }
        let _erasing = self.redactions.lock().unwrap_or_else(|e| e.into_inner());
        let erased = redaction::erase_committed(
            &self.options.storage,
            &self.dir,
            &self.core.journal,
            requests,
        );
        if let Err(error) = erased {
            tracing::warn!(%error, "redaction pending: its journal copy is erased when the ledger is next opened");
        }
    }

    /// Whether a blocking commit now would run (and fsync) in the calling thread.
    pub fn commits_alone(&self) -> bool {
        commit::is_idle(&self.core)
    }

    /// Validates a transaction that wrote nothing: it conflicts if a published block at or
    /// after `start` changed what it read. It then serialises after every published block
    /// (its reads are unchanged up to there) and before every unpublished one, which no
    /// client has seen acknowledged; so it needs neither the sequencer nor a block.
    pub fn validate_read_only(
        &self,
        transaction_id: &str,
        start: u64,
        reads: &ReadSet,
    ) -> Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        // With other servers committing too, their blocks so far must be in the log.
        commit::catch_up(&self.core)?;
        match self.core.shared().log.check(start, reads) {
            None => Ok(()),
            Some(detail) => Err(LedgerError::OccConflict {
                transaction_id: transaction_id.to_owned(),
                detail,
            }),
        }
    }

    pub fn end_transaction(&self, start: u64) {
        self.core.shared().log.end(start);
    }
}

impl Drop for LedgerInner {
    fn drop(&mut self) {
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = self
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = handle.join();
        }
        // A clean close leaves a tree checkpoint at the tip, so reopening rebuilds nothing.
        if let Err(error) = self.core.tree.flush() {
            tracing::warn!(%error, "digest tree not checkpointed at close; it is rebuilt from the journal on open");
        }
    }
}
