//! TEMPORARY: the public signatures of `Ledger` and `Transaction`, published early so the
//! PartiQL and server crates can be written against them while the engine is filled in.
//! This file is replaced by `ledger.rs` / `transaction.rs` with the same signatures.
#![allow(unused_variables, missing_docs)]

use std::path::Path;

use ion_rs::{Element, Timestamp};
use quill_verify::Hash;

use crate::{CommitReceipt, Document, LedgerDigest, Limits, Result, Revision, TableInfo};

/// Options for opening or creating a ledger.
#[derive(Debug, Clone, Default)]
pub struct LedgerOptions {
    /// Limits enforced on transactions.
    pub limits: Limits,
    /// Seed for ids (tests); `None` uses OS randomness.
    pub id_seed: Option<u64>,
}

/// One ledger: a journal plus derived state in one directory. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Ledger {}

/// A committed document's stored bytes, handed to a scan visitor without decoding.
pub struct DocumentRef<'a> {
    /// Document id.
    pub id: &'a str,
    /// Current version.
    pub version: u64,
    /// The user data as one Ion binary value (with version marker).
    pub ion: &'a [u8],
}

impl DocumentRef<'_> {
    /// Decodes the data.
    pub fn decode(&self) -> Result<Element> {
        Ok(Element::read_one(self.ion)?)
    }
}

/// What `Ledger::open` found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Bytes of an incomplete last frame that were cut off (0 if the tail was clean).
    pub torn_tail_bytes: u64,
    /// Blocks replayed from the journal into derived state.
    pub blocks_replayed: u64,
}

impl Ledger {
    /// Creates a new ledger named `name` in `dir` (which must not hold a ledger), writing its
    /// genesis block.
    pub fn create(dir: &Path, name: &str, options: LedgerOptions) -> Result<Ledger> { todo!() }
    /// Opens an existing ledger, recovering from a crash (torn tail cut, derived state caught up).
    pub fn open(dir: &Path, options: LedgerOptions) -> Result<Ledger> { todo!() }
    /// Ledger name.
    pub fn name(&self) -> &str { todo!() }
    /// The strand id (22-char base62).
    pub fn strand_id(&self) -> &str { todo!() }
    /// What opening found.
    pub fn recovery_report(&self) -> RecoveryReport { todo!() }
    /// Starts a transaction on a snapshot of the current state.
    pub fn begin(&self) -> Result<Transaction> { todo!() }
    /// Runs `body` in a transaction and commits it, retrying the whole body on OCC conflict
    /// (up to 10 attempts). Any other error aborts and is returned.
    pub fn transact<T>(&self, body: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> { todo!() }
    /// The digest over every block up to the latest committed one.
    pub fn digest(&self) -> LedgerDigest { todo!() }
    /// The digest as of an older tip.
    pub fn digest_at(&self, tip_sequence_no: u64) -> Result<LedgerDigest> { todo!() }
    /// The block at `sequence_no`, as QLDB's Ion block struct.
    pub fn block(&self, sequence_no: u64) -> Result<Element> { todo!() }
    /// Proof of the block's hash against the digest at `tip_sequence_no` (GetBlock proof).
    pub fn block_proof(&self, sequence_no: u64, tip_sequence_no: u64) -> Result<Vec<Hash>> { todo!() }
    /// The revision of `document_id` committed in block `sequence_no`.
    pub fn revision(&self, sequence_no: u64, document_id: &str) -> Result<Revision> { todo!() }
    /// Proof of that revision's hash against the digest at `tip_sequence_no` (GetRevision proof).
    pub fn revision_proof(&self, sequence_no: u64, document_id: &str, tip_sequence_no: u64) -> Result<Vec<Hash>> { todo!() }
    /// Proof that the digest at `new_tip` extends the digest at `old_tip`.
    pub fn consistency_proof(&self, old_tip: u64, new_tip: u64) -> Result<Vec<Hash>> { todo!() }
}

/// A point to roll a transaction back to (see `Transaction::savepoint`).
#[derive(Debug, Clone, Copy)]
pub struct Savepoint(pub(crate) usize);

/// A serializable transaction. Dropping it without `commit` aborts it.
pub struct Transaction {}

impl Transaction {
    /// The transaction id (22-char base62).
    pub fn id(&self) -> &str { todo!() }
    /// Wall-clock time the transaction started (for UTCNOW()).
    pub fn start_time(&self) -> Timestamp { todo!() }
    /// Records a statement (text and parameters) so the block's `transactionInfo` shows it;
    /// writes that follow are attributed to it.
    pub fn record_statement(&mut self, text: &str, parameters: &[Element]) -> Result<()> { todo!() }

    /// Marks the current state of the transaction's writes, statements and catalog changes.
    pub fn savepoint(&self) -> Savepoint { todo!() }
    /// Undoes every write, catalog change and recorded statement made after `savepoint`
    /// (used to make a failed statement leave the transaction unchanged). Reads stay in the
    /// read set (harmless: it only makes OCC more conservative).
    pub fn rollback_to(&mut self, savepoint: Savepoint) { todo!() }

    /// CREATE TABLE: returns the new table id.
    pub fn create_table(&mut self, name: &str, tags: Option<Element>) -> Result<String> { todo!() }
    /// DROP TABLE (marks it INACTIVE): returns its id.
    pub fn drop_table(&mut self, name: &str) -> Result<String> { todo!() }
    /// UNDROP TABLE by id: returns the id.
    pub fn undrop_table(&mut self, table_id: &str) -> Result<String> { todo!() }
    /// CREATE INDEX on a top-level field, built from existing documents: returns the table id.
    pub fn create_index(&mut self, table: &str, field: &str) -> Result<String> { todo!() }
    /// DROP INDEX by index id: returns the table id.
    pub fn drop_index(&mut self, table: &str, index_id: &str) -> Result<String> { todo!() }
    /// Every table (active and inactive), as `information_schema.user_tables` shows them.
    pub fn tables(&mut self) -> Result<Vec<TableInfo>> { todo!() }
    /// The ACTIVE table with this name, or `UnknownTable`.
    pub fn table(&mut self, name: &str) -> Result<TableInfo> { todo!() }
    /// The table (active or not) with this id, or `UnknownTable`.
    pub fn table_by_id(&mut self, table_id: &str) -> Result<TableInfo> { todo!() }

    /// Inserts a document (an Ion struct); returns its new id.
    pub fn insert(&mut self, table: &str, data: Element) -> Result<String> { todo!() }
    /// Current version of a document (own writes included); `None` if absent or deleted.
    pub fn get(&mut self, table: &str, document_id: &str) -> Result<Option<Document>> { todo!() }
    /// Replaces a document's data with a new revision.
    pub fn update(&mut self, table: &str, document_id: &str, data: Element) -> Result<()> { todo!() }
    /// Deletes a document (writes a final revision without data).
    pub fn delete(&mut self, table: &str, document_id: &str) -> Result<()> { todo!() }
    /// Visits every live document of the table (snapshot plus own writes) without decoding
    /// it; the visitor returns `false` to stop. Reads the whole table for OCC.
    pub fn scan(&mut self, table: &str, visit: &mut dyn FnMut(DocumentRef<'_>) -> Result<bool>) -> Result<()> { todo!() }
    /// Documents whose top-level `field` equals `key`, through the table's index on that
    /// field; `Ok(None)` when the table has no such index (the caller then scans). Reads only
    /// that key for OCC.
    pub fn index_lookup(&mut self, table: &str, field: &str, key: &Element) -> Result<Option<Vec<Document>>> { todo!() }
    /// The committed view `_ql_committed_<table>`: committed revisions of live documents
    /// (all of them, or the one with `document_id`). Own uncommitted writes are not included.
    pub fn committed(&mut self, table: &str, document_id: Option<&str>) -> Result<Vec<Revision>> { todo!() }
    /// `history(table_id, start, end)`: every revision active in `[start, end]` (inclusive,
    /// either bound open when `None`), optionally of one document; ordered by document then version.
    pub fn history(&mut self, table_id: &str, document_id: Option<&str>, start: Option<&Timestamp>, end: Option<&Timestamp>) -> Result<Vec<Revision>> { todo!() }

    /// Commits: one journal block, fsynced before this returns.
    pub fn commit(self) -> Result<CommitReceipt> { todo!() }
    /// Aborts (the same as dropping the transaction).
    pub fn abort(self) {}
}
