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
//!    Before it, the request is added to `redactions-pending.ion` in the ledger directory
//!    (atomically, fsynced): whether or not derived state's own list is durable yet, the
//!    next open knows derived state may hold copies of erased data.
//! 3. **Derived state rebuilt**: redb copies on write, so its free pages may still hold the
//!    old data. The next [`Ledger::open`](crate::Ledger::open) finds a pending list not
//!    empty (derived state's or the file's), erases any journal frame still holding data (a
//!    crash between 1 and 2), and rebuilds derived state from the erased journal into a new
//!    file, which has no pending entries (replaying an erased frame finds nothing to
//!    redact); then it removes the file.
//!
//! A crash at any point leaves the revision either still holding its data (and the request
//! pending) or erased; never a block whose hashes fail, because each segment rewrite is
//! checked and renamed into place atomically.

use std::path::Path;

use ion_rs::Element;

use crate::block;
use crate::catalog::CatalogChange;
use crate::error::{LedgerError, Result};
use crate::journal::JournalStore;
use crate::storage::Storage;
use crate::types::RedactionRequest;

/// Redactions whose journal copy was (or is being) erased while derived state may still
/// hold old copies, in the ledger directory: an Ion list of `catalogChanges` records.
const PENDING_FILE: &str = "redactions-pending.ion";

/// Requests listed in the ledger directory's pending file (none when it is absent).
pub(crate) fn listed(storage: &Storage, ledger_dir: &Path) -> Result<Vec<RedactionRequest>> {
    let path = ledger_dir.join(PENDING_FILE);
    if !storage.exists(&path)? {
        return Ok(Vec::new());
    }
    let bad = || LedgerError::Storage(format!("{} is malformed", path.display()));
    let mut requests = Vec::new();
    for element in Element::read_all(storage.read(&path)?).map_err(|_| bad())? {
        match CatalogChange::from_element(&element).map_err(|_| bad())? {
            CatalogChange::RedactRevision(request) => requests.push(request),
            _ => return Err(bad()),
        }
    }
    Ok(requests)
}

/// Adds `requests` to the pending file (atomic replace, fsynced).
fn list(storage: &Storage, ledger_dir: &Path, requests: &[RedactionRequest]) -> Result<()> {
    let mut all = listed(storage, ledger_dir)?;
    all.extend(requests.iter().cloned());
    let text: Vec<String> = all
        .into_iter()
        .map(|r| CatalogChange::RedactRevision(r).to_element().to_string())
        .collect();
    storage.write_atomically(&ledger_dir.join(PENDING_FILE), text.join("\n").as_bytes())?;
    Ok(())
}

/// Removes the pending file once derived state was rebuilt from the erased journal.
pub(crate) fn unlist_all(storage: &Storage, ledger_dir: &Path) -> Result<()> {
    let path = ledger_dir.join(PENDING_FILE);
    if storage.exists(&path)? {
        storage.remove_file(&path)?;
        storage.sync_parent_dir(&path)?;
    }
    Ok(())
}

/// Step 2 for requests just committed: lists them, then erases their journal copies.
pub(crate) fn erase_committed(
    storage: &Storage,
    ledger_dir: &Path,
    journal: &JournalStore,
    requests: &[RedactionRequest],
) -> Result<()> {
    list(storage, ledger_dir, requests)?;
    for request in requests {
        erase_from_journal(journal, request)?;
    }
    Ok(())
}

/// Rewrites the frame of the request's block with the revision's data replaced by its Ion
/// hash. Returns `false` when the frame holds no data for it any more (already erased).
/// Checks before writing that the rewritten block verifies to the same block hash.
pub(crate) fn erase_from_journal(
    journal: &JournalStore,
    request: &RedactionRequest,
) -> Result<bool> {
    let address = &request.block_address;
    let bytes = journal.read(address.sequence_no)?;
    let Some(payload) = block::redact_payload(&bytes, address, &request.document_id)? else {
        return Ok(false);
    };
    let before = block::decode_payload(&bytes, address)?;
    let after = block::decode_payload(&payload, address)?;
    // A block QLDB wrote (kept verbatim) has its own layout; Quill's is checked exactly.
    let verified = match &after.original {
        Some(original) => quill_verify::verify_block(original),
        None => quill_verify::verify_quill_block(&after.to_element()?),
    };
    if verified.as_ref().ok() != Some(&before.hash) {
        return Err(LedgerError::Corrupted {
            block_address: address.clone(),
            detail: format!("the redacted block would not verify to its block hash: {verified:?}"),
        });
    }
    journal.rewrite(address.sequence_no, &payload)?;
    Ok(true)
}
