//! Plain data types of the ledger's public API: addresses, revisions, documents, catalog entries.

use ion_rs::{Element, Timestamp};
use quill_verify::Hash;

/// A block's address in the journal: QLDB's `{strandId, sequenceNo}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockAddress {
    /// The ledger's single strand: a 22-character base62 id.
    pub strand_id: String,
    /// Position of the block in the strand, counting from 0.
    pub sequence_no: u64,
}

/// A committed document revision as QLDB shows it in the committed view, history and GetRevision.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// Block that committed this revision.
    pub block_address: BlockAddress,
    /// `dot(H(metadata), H(data))`; for a deletion `H(metadata)` (see `quill_verify::revision_hash`).
    pub hash: Hash,
    /// The user document; `None` for the final revision written by a delete, and for a
    /// redacted revision.
    pub data: Option<Element>,
    /// For a redacted revision, the Ion hash of the data that was erased (QLDB's `dataHash`);
    /// the revision hash is unchanged: `dot(H(metadata), dataHash)`.
    pub data_hash: Option<Hash>,
    /// `{id, version, txTime, txId}`.
    pub metadata: RevisionMetadata,
}

/// An `EXEC REDACT_REVISION` request: QLDB's result document and `redactionInfo` entry
/// `{blockAddress, tableId, documentId, version}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionRequest {
    /// Block holding the revision to erase.
    pub block_address: BlockAddress,
    /// Its table.
    pub table_id: String,
    /// Its document.
    pub document_id: String,
    /// Its version.
    pub version: u64,
}

/// Revision metadata, hashed into the revision hash.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionMetadata {
    /// Document id (22-char base62), never reused.
    pub id: String,
    /// Version counting from 0.
    pub version: u64,
    /// Commit time of the transaction, millisecond precision, UTC.
    pub tx_time: Timestamp,
    /// Id of the transaction that wrote the revision.
    pub tx_id: String,
}

/// The current revision of a live document as the user view sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Document id.
    pub id: String,
    /// Version of this revision (0 for the first).
    pub version: u64,
    /// The user data.
    pub data: Element,
}

/// Table status in `information_schema.user_tables`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    /// Visible to the user view.
    Active,
    /// Dropped; reachable only by table id (history, UNDROP).
    Inactive,
}

/// Index status in `information_schema.user_tables`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStatus {
    /// Usable for lookups. Quill builds indexes inside the creating transaction, so every
    /// committed index is ONLINE.
    Online,
}

/// An equality index on one top-level field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// 22-char base62 id.
    pub index_id: String,
    /// The indexed top-level field name.
    pub field: String,
    /// Build status.
    pub status: IndexStatus,
}

impl IndexInfo {
    /// The index expression as `information_schema` shows it: `[VIN]`.
    pub fn expr(&self) -> String {
        format!("[{}]", self.field)
    }
}

/// A table in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// 22-char base62 id.
    pub table_id: String,
    /// Case-sensitive name.
    pub name: String,
    /// ACTIVE or INACTIVE.
    pub status: TableStatus,
    /// Indexes, in creation order.
    pub indexes: Vec<IndexInfo>,
    /// `aws_tags` given at creation, if any (an Ion struct).
    pub tags: Option<Element>,
}

/// What a successful commit tells the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitReceipt {
    /// The transaction id (also the block's `transactionId`).
    pub transaction_id: String,
    /// Address of the block written; `None` when the transaction wrote nothing and no block
    /// was needed (read-only transactions leave no trace in the journal).
    pub block_address: Option<BlockAddress>,
}

/// A block's place in the hash chain: what a transparency log leaf records of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHashes {
    /// The block hash.
    pub hash: Hash,
    /// The Merkle root of the block's entries hash list.
    pub entries_hash: Hash,
    /// The previous block's hash; `None` only for the genesis block.
    pub previous_hash: Option<Hash>,
}

/// A ledger digest as GetDigest returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDigest {
    /// Merkle root over every block hash up to and including the tip.
    pub digest: Hash,
    /// Address of the last block covered.
    pub tip: BlockAddress,
}
