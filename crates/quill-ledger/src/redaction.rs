//! Erasing redacted revisions from the journal (`EXEC REDACT_REVISION`).
//!
//! A redaction goes through three states, each observable and each safe to crash in:
//! 1. **Requested**: the transaction's block records the request in `catalogChanges` (QLDB's
//!    `redactionInfo`), so it is durable and bound into the hash chain once acknowledged.
//!    Applying that block to derived state replaces the revision's stored data by its Ion
//!    hash and lists the revision as pending (`state::PENDING_REDACTIONS`); `history()`
//!    shows `dataHash` from then on.
//! 2. **Journal erased**: right after the commit, the frame of the revision's block is
//!    rewritten with `dataHash` in place of the data ([`erase_from_journal`]): every hash of
//!    the block is unchanged, because a block hash is computed from revision hashes, and a
//!    redacted revision's hash is `dot(H(metadata), dataHash)`. GetBlock, GetRevision,
//!    exports and streams read the journal, so they show `dataHash` from then on.
//! 3. **Derived state rebuilt**: redb copies on write, so its free pages may still hold the
//!    old data. The next [`Ledger::open`](crate::Ledger::open) finds the pending list not
//!    empty, erases any journal frame still holding data (a crash between 1 and 2), and
//!    rebuilds derived state from the erased journal into a new file, which has no pending
//!    entries (replaying an erased frame finds nothing to redact).
//!
//! A crash at any point leaves the revision either still holding its data (and the request
//! pending) or erased; never a block whose hashes fail, because each segment rewrite is
//! checked and renamed into place atomically.

use crate::block;
use crate::error::{LedgerError, Result};
use crate::journal::Journal;
use crate::types::RedactionRequest;

/// Rewrites the frame of the request's block with the revision's data replaced by its Ion
/// hash. Returns `false` when the frame holds no data for it any more (already erased).
/// Checks before writing that the rewritten block verifies to the same block hash.
pub(crate) fn erase_from_journal(journal: &Journal, request: &RedactionRequest) -> Result<bool> {
    let address = &request.block_address;
    let bytes = journal.read(address.sequence_no)?;
    let Some(payload) = block::redact_payload(&bytes, address, &request.document_id)? else {
        return Ok(false);
    };
    let before = block::decode_payload(&bytes, address)?;
    let after = block::decode_payload(&payload, address)?;
    let verified = quill_verify::verify_quill_block(&after.to_element()?);
    if verified.as_ref().ok() != Some(&before.hash) {
        return Err(LedgerError::Corrupted {
            block_address: address.clone(),
            detail: format!(
                "the redacted block would not verify to its block hash: {verified:?}"
            ),
        });
    }
    journal.rewrite(address.sequence_no, &payload)?;
    Ok(true)
}
