//! Import: a new ledger built from a journal export (QLDB's S3 layout, as [`crate::engine`]
//! writes it), holding the exported blocks as they are.
//!
//! The export's completed manifests (`{prefix}{exportId}.{strandId}.completed.manifest`) list
//! its data objects in order; several exports of one ledger (consecutive time ranges, or
//! overlapping ones) are merged by sequence number, and a block seen twice must be the same
//! block. Every block goes through [`quill_ledger::Importer`]: its hashes are recomputed, its
//! address and its link to the previous block checked, before it is staged in a hidden
//! directory beside the ledgers; the ledger appears under its name only once the whole journal
//! verified and its derived state was rebuilt. Anything refused removes the staging directory.
//!
//! `JSON` exports are refused: JSON Lines down-convert Ion (timestamps become text, blobs
//! base64, decimals and floats JSON numbers, symbols strings, annotations are dropped), so
//! neither the revision hashes nor the documents themselves can be restored exactly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ion_rs::Element;
use quill_ledger::{
    claimed_address, ledger_dir, BlockAddress, Importer, Ledger, LedgerDigest, LedgerError,
    LedgerOptions,
};
use quill_verify::Hash;

use crate::error::{ExportError, Result};
use crate::sink::ObjectSource;
use crate::verify::{claimed_range, is_json};

const COMPLETED_SUFFIX: &str = ".completed.manifest";

/// What an import brought over.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The new ledger's name.
    pub ledger: String,
    /// Its strand id (the exported one).
    pub strand_id: String,
    /// Blocks imported (sequence numbers `0..blocks`).
    pub blocks: u64,
    /// Completed manifests read.
    pub manifests: usize,
    /// Data objects read.
    pub objects: usize,
    /// The digest at the last imported block.
    pub digest: LedgerDigest,
    /// Time spent, verification and rebuilding included.
    pub elapsed: Duration,
}

/// One completed manifest: its key, strand and data objects in order.
struct Manifest {
    key: String,
    strand_id: String,
    objects: Vec<String>,
    /// The first block its first object claims (to order several exports).
    first_block: u64,
}

fn refused(detail: impl Into<String>) -> ExportError {
    ExportError::ImportRefused(detail.into())
}

/// `{prefix}{exportId}.{strandId}.completed.manifest` → strand id.
fn manifest_strand(key: &str) -> Option<&str> {
    let name = key.rsplit('/').next()?.strip_suffix(COMPLETED_SUFFIX)?;
    let (_, strand) = name.rsplit_once('.')?;
    Some(strand)
}

fn read_manifest(source: &dyn ObjectSource, key: &str) -> Result<Manifest> {
    let bytes = source.get(key)?;
    if is_json(&bytes) {
        return Err(refused(format!(
            "{key} belongs to a JSON export: JSON Lines lose Ion's types (timestamps become \
             text, blobs base64, decimals and floats plain numbers, symbols strings), so the \
             revision and transactionInfo hashes cannot be recomputed nor the documents \
             restored exactly; export the journal again as ION_TEXT or ION_BINARY"
        )));
    }
    let strand_id = manifest_strand(key)
        .ok_or_else(|| {
            refused(format!(
                "{key} is not named exportId.strandId{COMPLETED_SUFFIX}"
            ))
        })?
        .to_owned();
    let value = Element::read_one(bytes).map_err(|e| refused(format!("{key}: {e}")))?;
    let objects: Vec<String> = value
        .as_struct()
        .and_then(|s| s.get("keys"))
        .and_then(Element::as_sequence)
        .ok_or_else(|| refused(format!("{key} has no keys list")))?
        .elements()
        .map(|k| {
            k.as_text()
                .map(str::to_owned)
                .ok_or_else(|| refused(format!("{key} lists a key that is not text")))
        })
        .collect::<Result<_>>()?;
    let first_block = match objects.first() {
        Some(object) => claimed_range(object)?.0,
        None => u64::MAX,
    };
    Ok(Manifest {
        key: key.to_owned(),
        strand_id,
        objects,
        first_block,
    })
}

/// A step run on the finished staging directory before it is published.
pub type BeforePublish<'a> = Box<dyn FnOnce(&Path) -> quill_ledger::Result<()> + 'a>;

/// Where the new ledger goes and how it is finished.
pub struct ImportTarget<'a> {
    /// The data directory (`<data_dir>/ledgers/<name>` is created).
    pub data_dir: &'a Path,
    /// The new ledger's name.
    pub ledger: &'a str,
    /// Engine options for the new ledger.
    pub options: LedgerOptions,
    /// Runs on the finished staging directory before it is published (the CLI writes the
    /// server's `control.json` there).
    pub before_publish: BeforePublish<'a>,
}

/// Imports the export(s) under `prefix` of `source` as a new ledger. `progress(blocks)` is
/// called as blocks are verified.
pub fn import_ledger(
    source: &dyn ObjectSource,
    prefix: &str,
    target: ImportTarget<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(Ledger, ImportSummary)> {
    let started = Instant::now();
    let final_dir = ledger_dir(target.data_dir, target.ledger);
    if final_dir.exists() {
        return Err(ExportError::InvalidInput(format!(
            "ledger {} already exists in {}",
            target.ledger,
            target.data_dir.display()
        )));
    }
    let mut manifests = source
        .list(prefix)?
        .into_iter()
        .filter(|key| key.ends_with(COMPLETED_SUFFIX))
        .map(|key| read_manifest(source, &key))
        .collect::<Result<Vec<_>>>()?;
    if manifests.is_empty() {
        return Err(refused(format!(
            "no completed manifest (*{COMPLETED_SUFFIX}) under {}/{prefix}: an export still in \
             progress, cancelled or copied in part cannot be imported",
            source.location()
        )));
    }
    manifests.sort_by(|a, b| (a.first_block, &a.key).cmp(&(b.first_block, &b.key)));
    let strand_id = manifests[0].strand_id.clone();
    if let Some(other) = manifests.iter().find(|m| m.strand_id != strand_id) {
        return Err(refused(format!(
            "{} is of strand {}, {} of strand {strand_id}: one import takes one ledger's exports",
            other.key, other.strand_id, manifests[0].key
        )));
    }
    let staging = staging_dir(target.data_dir, target.ledger);
    std::fs::create_dir_all(target.data_dir.join("ledgers"))?;
    let outcome = (|| {
        let mut importer =
            Importer::create(&staging, target.ledger, &strand_id, target.options.clone())?;
        let mut hashes: Vec<Hash> = Vec::new();
        let mut objects = 0;
        for manifest in &manifests {
            for key in &manifest.objects {
                read_object(source, manifest, key, &mut importer, &mut hashes)?;
                objects += 1;
                progress(importer.blocks());
            }
        }
        let blocks = importer.blocks();
        let ledger = importer.finish(&final_dir, target.before_publish)?;
        Ok((ledger, blocks, objects))
    })();
    match outcome {
        Ok((ledger, blocks, objects)) => {
            let digest = ledger.digest_at(blocks - 1)?;
            Ok((
                ledger,
                ImportSummary {
                    ledger: target.ledger.to_owned(),
                    strand_id,
                    blocks,
                    manifests: manifests.len(),
                    objects,
                    digest,
                    elapsed: started.elapsed(),
                },
            ))
        }
        Err(error) => {
            if staging.exists() {
                // A failed cleanup must not hide the import's own error; the server removes
                // such leftovers at start.
                if let Err(cleanup) = std::fs::remove_dir_all(&staging) {
                    tracing::warn!(?staging, %cleanup, "cannot remove the import's staging directory");
                }
            }
            Err(error)
        }
    }
}

/// A block the importer refused is the import's verdict, not a failure to read a journal.
fn block_rejected(error: LedgerError) -> ExportError {
    match error {
        LedgerError::ImportRejected {
            block_address,
            detail,
        } => ExportError::BlockRejected {
            block_address,
            detail,
        },
        other => ExportError::Ledger(other),
    }
}

/// A hidden directory beside the ledgers (the server skips and removes dot-directories).
fn staging_dir(data_dir: &Path, ledger: &str) -> PathBuf {
    let nonce: u64 = rand::random();
    data_dir
        .join("ledgers")
        .join(format!(".import-{ledger}-{nonce:016x}"))
}

/// Reads one data object and feeds its blocks to the importer. `hashes` holds the hash of
/// every block imported so far, so a block repeated by an overlapping export is checked to be
/// the same block.
fn read_object(
    source: &dyn ObjectSource,
    manifest: &Manifest,
    key: &str,
    importer: &mut Importer,
    hashes: &mut Vec<Hash>,
) -> Result<()> {
    let (first, last) = claimed_range(key)?;
    let body = match source.get(key) {
        Ok(body) => body,
        Err(ExportError::MissingObject(_)) => {
            return Err(refused(format!(
                "the export is incomplete: {key} (blocks {first}-{last}), listed by {}, is \
                 missing; first missing block: sequenceNo {}",
                manifest.key,
                first.max(importer.blocks())
            )))
        }
        Err(other) => return Err(other),
    };
    let blocks: Vec<Element> = Element::read_all(body)
        .map_err(|e| {
            refused(format!(
                "{key} (blocks {first}-{last}) is not Ion: {e}; first bad block: sequenceNo {}",
                first.max(importer.blocks())
            ))
        })?
        .into_iter()
        .collect();
    let address = |sequence_no: u64| BlockAddress {
        strand_id: manifest.strand_id.clone(),
        sequence_no,
    };
    for (position, block) in (first..).zip(&blocks) {
        let held = claimed_address(block);
        if held.as_ref() != Some(&address(position)) {
            return Err(refused(format!(
                "{key} (blocks {first}-{last}) holds {} where block {} belongs; first bad \
                 block: {}",
                held.map_or("a block without a valid address".to_owned(), |a| a
                    .to_ion_text()),
                position,
                address(position).to_ion_text()
            )));
        }
    }
    let count = blocks.len() as u64;
    if first.checked_add(count) != last.checked_add(1) {
        return Err(refused(format!(
            "{key} is named for blocks {first}-{last} but holds {count}; first missing block: {}",
            address(first + count).to_ion_text()
        )));
    }
    for (sequence_no, block) in (first..).zip(&blocks) {
        let seen = usize::try_from(sequence_no)
            .ok()
            .and_then(|i| hashes.get(i));
        match seen {
            Some(hash) => {
                let again = quill_verify::verify_block(block).map_err(|e| {
                    refused(format!("block {}: {e}", address(sequence_no).to_ion_text()))
                })?;
                if again != *hash {
                    return Err(refused(format!(
                        "block {} of {key} differs from the block of that address imported from \
                         an earlier export",
                        address(sequence_no).to_ion_text()
                    )));
                }
            }
            None => hashes.push(importer.push(block).map_err(block_rejected)?),
        }
    }
    Ok(())
}
