//! The commit path: one thread takes queued commits in batches (group commit), checks each
//! for OCC conflicts, hashes it into a block, appends the batch to the journal, fsyncs once,
//! applies it to derived state, and only then acknowledges.
//!
//! What is durable at acknowledgement: every block of the batch is in the journal and the
//! journal has been fsynced (`Journal::sync`). Derived state may lag on disk; it is rebuilt
//! from the journal on open.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use ion_rs::Element;
use quill_verify::Hash;

use crate::block::{self, BlockDraft, RevisionDraft, StatementRecord};
use crate::catalog::{Catalog, CatalogChange};
use crate::clock;
use crate::error::{LedgerError, Result};
use crate::ledger::Core;
use crate::limits::{Limits, GROUP_COMMIT_MAX};
use crate::occ::{ReadSet, WriteSet};
use crate::state::{Record, StateWriter};
use crate::transaction::table_writable;
use crate::types::{BlockAddress, CommitReceipt};

/// Make derived state durable at least this often, so a reopen replays a bounded tail.
const STATE_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A transaction's writes, ready to be hashed into a block.
pub struct PreparedCommit {
    pub transaction_id: String,
    pub start: u64,
    pub started_at: Instant,
    pub reads: ReadSet,
    pub statements: Vec<StatementRecord>,
    pub revisions: Vec<RevisionDraft>,
    /// Ion binary of each revision's data (empty for deletes), parallel to `revisions`.
    pub data_bytes: Vec<Vec<u8>>,
    pub catalog_changes: Vec<CatalogChange>,
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
    pub record: Record<'a>,
}

/// Applies one block's catalog changes, then its revisions; returns what it wrote for OCC.
pub fn apply_block(
    writer: &mut StateWriter,
    catalog: &mut Catalog,
    limits: &Limits,
    changes: &[CatalogChange],
    revisions: &[AppliedRevision<'_>],
) -> Result<WriteSet> {
    let mut writes = WriteSet::default();
    for change in changes {
        let before = catalog.clone();
        catalog.apply(change, limits)?;
        writer.apply_catalog_change(catalog, change, &before)?;
        if let Some(table_id) = change.table_id() {
            writes.catalog_tables.push(table_id.to_owned());
        }
    }
    for r in revisions {
        let touched =
            writer.apply_revision(catalog, r.table_id, r.document_id, r.data, &r.record)?;
        writes
            .documents
            .push((r.table_id.to_owned(), r.document_id.to_owned()));
        for (field, key) in touched {
            writes.index_keys.push((r.table_id.to_owned(), field, key));
        }
    }
    Ok(writes)
}

/// The committer thread's loop: runs until every sender is gone.
pub fn run(core: Arc<Core>, requests: Receiver<CommitRequest>) {
    let mut last_checkpoint = Instant::now();
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT_MAX {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let checkpoint = last_checkpoint.elapsed() >= STATE_CHECKPOINT_INTERVAL;
        if commit_batch(&core, batch, checkpoint) && checkpoint {
            last_checkpoint = Instant::now();
        }
    }
}

/// A commit accepted into the batch, waiting for the fsync.
struct Accepted {
    reply: SyncSender<Result<CommitReceipt>>,
    receipt: CommitReceipt,
    writes: WriteSet,
}

/// Commits one batch; returns whether derived state was written.
fn commit_batch(core: &Core, batch: Vec<CommitRequest>, durable_state: bool) -> bool {
    let (mut catalog, mut next, mut previous_hash, mut last_millis) = {
        let shared = core.shared();
        if let Some(reason) = &shared.poisoned {
            let reason = reason.clone();
            drop(shared);
            for request in batch {
                let _ = request
                    .reply
                    .send(Err(LedgerError::ReadOnly(reason.clone())));
            }
            return false;
        }
        (
            (*shared.catalog).clone(),
            shared.applied,
            shared.last_hash,
            shared.last_millis,
        )
    };
    let mut writer = match core.state.writer() {
        Ok(w) => w,
        Err(e) => {
            fail_all(core, batch.into_iter().map(|r| r.reply), &e);
            return false;
        }
    };
    let mut accepted: Vec<Accepted> = Vec::with_capacity(batch.len());
    let mut payloads: Vec<Vec<u8>> = Vec::with_capacity(batch.len());
    let mut leaves: Vec<Hash> = Vec::with_capacity(batch.len());
    for request in batch {
        let CommitRequest { commit, reply } = request;
        if let Err(e) = check_commit(core, &commit, &catalog, &accepted) {
            let _ = reply.send(Err(e));
            continue;
        }
        // The wall clock may step back; block times never do.
        last_millis = last_millis.max(clock::now_millis());
        let address = BlockAddress {
            strand_id: core.strand_id.clone(),
            sequence_no: next,
        };
        let built = block::build(&BlockDraft {
            address: address.clone(),
            transaction_id: &commit.transaction_id,
            time_millis: last_millis,
            previous_hash,
            statements: &commit.statements,
            revisions: &commit.revisions,
            catalog_changes: &commit.catalog_changes,
        });
        let applied = built.and_then(|built| {
            let payload = built.element.encode_as(ion_rs::v1_0::Binary)?;
            let rows: Vec<AppliedRevision<'_>> = commit
                .revisions
                .iter()
                .zip(&commit.data_bytes)
                .zip(&built.revision_hashes)
                .map(|((r, bytes), hash)| AppliedRevision {
                    table_id: &r.table_id,
                    document_id: &r.document_id,
                    data: r.data.as_ref(),
                    record: Record {
                        deleted: r.data.is_none(),
                        version: r.version,
                        sequence_no: next,
                        time_millis: last_millis,
                        hash: *hash,
                        tx_id: &commit.transaction_id,
                        data: bytes,
                    },
                })
                .collect();
            let writes = apply_block(
                &mut writer,
                &mut catalog,
                &core.options.limits,
                &commit.catalog_changes,
                &rows,
            )?;
            Ok((built.hash, payload, writes))
        });
        match applied {
            Ok((hash, payload, writes)) => {
                payloads.push(payload);
                leaves.push(hash);
                previous_hash = Some(hash);
                next += 1;
                let receipt = CommitReceipt {
                    transaction_id: commit.transaction_id,
                    block_address: Some(address),
                };
                accepted.push(Accepted {
                    reply,
                    receipt,
                    writes,
                });
            }
            Err(e) => {
                // Derived state is half-written for this batch: fail the batch, keep the journal as is.
                let _ = reply.send(Err(e));
                fail_all(
                    core,
                    accepted.into_iter().map(|a| a.reply),
                    &LedgerError::Storage("batch aborted".into()),
                );
                return false;
            }
        }
    }
    if accepted.is_empty() {
        return false;
    }
    if let Err(e) = writer.set_applied(next) {
        fail_all(core, accepted.into_iter().map(|a| a.reply), &e);
        return false;
    }
    // Durability point: the batch's blocks reach the disk before anyone can see them.
    let frames: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let journaled = core
        .journal
        .append(&frames)
        .and_then(|_| core.journal.sync());
    if let Err(e) = journaled {
        core.poison(format!("journal write failed: {e}"));
        fail_all(core, accepted.into_iter().map(|a| a.reply), &e);
        return false;
    }
    if let Err(e) = core.tree.push_leaves(&leaves) {
        // The blocks are durable; the tree is rebuilt from the journal on open.
        core.poison(format!("digest tree write failed: {e}"));
    }
    {
        let mut shared = core.shared();
        if let Err(e) = writer.commit(durable_state) {
            // The blocks are durable; derived state is rebuilt from the journal on open.
            shared.poisoned = Some(format!("derived state commit failed: {e}"));
        }
        let first = shared.applied;
        for (offset, a) in accepted.iter_mut().enumerate() {
            shared
                .log
                .push(first + offset as u64, std::mem::take(&mut a.writes));
        }
        shared.applied = next;
        shared.catalog = Arc::new(catalog);
        shared.last_hash = previous_hash;
        shared.last_millis = last_millis;
    }
    for a in accepted {
        let _ = a.reply.send(Ok(a.receipt));
    }
    true
}

/// OCC, expiry and table checks of one commit against everything committed before it
/// (the log) and earlier commits of the same batch.
fn check_commit(
    core: &Core,
    commit: &PreparedCommit,
    catalog: &Catalog,
    batch: &[Accepted],
) -> Result<()> {
    if commit.started_at.elapsed() > core.options.limits.transaction_timeout {
        return Err(LedgerError::TransactionExpired {
            transaction_id: commit.transaction_id.clone(),
        });
    }
    let conflict = |detail: String| LedgerError::OccConflict {
        transaction_id: commit.transaction_id.clone(),
        detail,
    };
    if let Some(detail) = core.shared().log.check(commit.start, &commit.reads) {
        return Err(conflict(detail));
    }
    if let Some(detail) = batch
        .iter()
        .find_map(|a| a.writes.conflict_with(&commit.reads))
    {
        return Err(conflict(detail));
    }
    for r in &commit.revisions {
        if !table_writable(catalog, &r.table_id)
            && !commit
                .catalog_changes
                .iter()
                .any(|c| c.table_id() == Some(&r.table_id))
        {
            return Err(conflict(format!("table {} was dropped", r.table_name)));
        }
    }
    let mut trial = catalog.clone();
    for change in &commit.catalog_changes {
        trial
            .apply(change, &core.options.limits)
            .map_err(|e| conflict(e.to_string()))?;
    }
    Ok(())
}

fn fail_all(
    core: &Core,
    replies: impl Iterator<Item = SyncSender<Result<CommitReceipt>>>,
    error: &LedgerError,
) {
    let _ = core;
    for reply in replies {
        let _ = reply.send(Err(LedgerError::Storage(error.to_string())));
    }
}
