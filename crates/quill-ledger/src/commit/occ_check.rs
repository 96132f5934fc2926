//! OCC, expiry and table checks of one commit against everything committed before it: the
//! published conflict log, batches waiting for their fsync, and earlier commits of this batch.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::error::{LedgerError, Result};
use crate::occ::WriteSet;
use crate::types::TableStatus;

use super::{Core, PreparedCommit};

/// What a commit is checked against: blocks committed after it started.
pub(super) struct Earlier<'a> {
    /// The published conflict log's verdict (checked under the batch's lock).
    pub(super) logged: Option<String>,
    /// Blocks published when the log was checked.
    pub(super) published: u64,
    /// Blocks waiting for their fsync.
    pub(super) in_flight: &'a VecDeque<(u64, Arc<WriteSet>)>,
    /// Write sets of the earlier commits of this batch.
    pub(super) batch: &'a [Arc<WriteSet>],
}

pub(super) fn check_commit(
    core: &Core,
    commit: &PreparedCommit,
    catalog: &Catalog,
    earlier: Earlier<'_>,
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
    let Earlier {
        logged,
        published,
        in_flight,
        batch,
    } = earlier;
    if let Some(detail) = logged {
        return Err(conflict(detail));
    }
    // Blocks at or after `published` are not in the log yet.
    let unpublished = in_flight
        .iter()
        .filter(|(seq, _)| *seq >= published.max(commit.start))
        .map(|(_, w)| w);
    if let Some(detail) = unpublished
        .chain(batch)
        .find_map(|w| w.conflict_with(&commit.reads))
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
    if commit.catalog_changes.is_empty() {
        return Ok(());
    }
    // DDL is checked on a copy: `build_and_apply` applies it for real.
    let mut trial = catalog.clone();
    for change in &commit.catalog_changes {
        trial
            .apply(change, &core.options.limits)
            .map_err(|e| conflict(e.to_string()))?;
    }
    Ok(())
}

/// Whether a revision's table is still usable by a commit (for the committer's check).
fn table_writable(catalog: &Catalog, table_id: &str) -> bool {
    catalog
        .by_id(table_id)
        .is_some_and(|t| t.status == TableStatus::Active)
}
