//! Block building: hashes a commit into the next block and applies it to derived state.

use quill_verify::Hash;

use crate::block::{self, BlockDraft, DecodedBlock};
use crate::catalog::{Catalog, CatalogChange};
use crate::error::Result;
use crate::limits::Limits;
use crate::occ::WriteSet;
use crate::state::{AppliedRevision, Layer, Record, StateSink, StateWriter};
use crate::types::BlockAddress;

use super::{Core, PreparedCommit};

/// Applies one block's catalog changes, then its revisions; returns what it wrote for OCC.
pub fn apply_block(
    writer: &mut dyn StateSink,
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
        if let CatalogChange::RedactRevision(request) = change {
            // The document's history changed: transactions that read it conflict.
            writes
                .documents
                .push((request.table_id.clone(), request.document_id.clone()));
        }
    }
    for r in revisions {
        let touched = writer.apply_revision(catalog, r)?;
        writes
            .documents
            .push((r.table_id.to_owned(), r.document_id.to_owned()));
        for (field, key) in touched {
            writes.index_keys.push((r.table_id.to_owned(), field, key));
        }
    }
    Ok(writes)
}

/// Where a batch is applied.
pub(super) enum Sink {
    Direct(Box<StateWriter>),
    Layered(Layer),
}

impl Sink {
    pub(super) fn as_dyn(&mut self) -> &mut dyn StateSink {
        match self {
            Sink::Direct(writer) => &mut **writer,
            Sink::Layered(layer) => layer,
        }
    }
}

/// Where a block goes in the chain.
pub(super) struct Position<'a> {
    pub(super) address: &'a BlockAddress,
    pub(super) time_millis: i64,
    pub(super) previous_hash: Option<Hash>,
}

/// Hashes one commit into block `address` and applies it to derived state.
pub(super) fn build_and_apply(
    core: &Core,
    writer: &mut dyn StateSink,
    catalog: &mut Catalog,
    commit: &PreparedCommit,
    position: Position<'_>,
    header_hasher: &mut quill_verify::BlockHeaderHasher,
) -> Result<(Hash, Vec<u8>, WriteSet)> {
    let Position {
        address,
        time_millis,
        previous_hash,
    } = position;
    let built = block::build(
        &BlockDraft {
            address: address.clone(),
            transaction_id: &commit.transaction_id,
            time_millis,
            previous_hash,
            revisions: &commit.revisions,
            body: &commit.body,
        },
        &commit.data_bytes,
        header_hasher,
    )?;
    let payload = built.payload;
    let rows: Vec<AppliedRevision<'_>> = commit
        .revisions
        .iter()
        .zip(&commit.data_bytes)
        .zip(&built.revision_hashes)
        .map(|((r, bytes), hash)| AppliedRevision {
            table_id: &r.table_id,
            document_id: &r.document_id,
            data: r.data.as_ref(),
            previous: Some(r.previous.as_ref()),
            record: Record {
                deleted: r.data.is_none(),
                redacted: false,
                version: r.version,
                sequence_no: address.sequence_no,
                time_millis,
                hash: *hash,
                tx_id: &commit.transaction_id,
                data: bytes,
            },
        })
        .collect();
    let writes = apply_block(
        writer,
        catalog,
        &core.options.limits,
        &commit.catalog_changes,
        &rows,
    )?;
    Ok((built.hash, payload, writes))
}

/// A committed block's revisions as derived state applies them on replay (catch-up on open,
/// or blocks another server committed): the replaced data is read back from the state.
pub(crate) fn replayed_rows(decoded: &DecodedBlock) -> Vec<AppliedRevision<'_>> {
    let sequence_no = decoded.address.sequence_no;
    decoded
        .revisions
        .iter()
        .zip(&decoded.data_ion)
        .map(|((table_id, r), bytes)| AppliedRevision {
            table_id,
            document_id: &r.metadata.id,
            data: r.data.as_ref(),
            previous: None,
            record: Record {
                deleted: r.data.is_none() && r.data_hash.is_none(),
                redacted: r.data_hash.is_some(),
                version: r.metadata.version,
                sequence_no,
                time_millis: decoded.time_millis,
                hash: r.hash,
                tx_id: &decoded.transaction_id,
                data: r
                    .data_hash
                    .as_ref()
                    .map_or(bytes.as_slice(), |h| h.as_bytes()),
            },
        })
        .collect()
}
