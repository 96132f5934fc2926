//! Transactions: a snapshot, a buffer of writes, a read set, and the commit hand-off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ion_rs::{Element, IonType, Timestamp};
use quill_verify::{ion_hash, Hash};

use crate::block::{self, RevisionDraft, StatementRecord};
use crate::catalog::{Catalog, CatalogChange};
use crate::clock;
use crate::commit::PreparedCommit;
use crate::equality::equality_key;
use crate::error::{LedgerError, Result};
use crate::handle::LedgerInner;
use crate::occ::ReadSet;
use crate::state::{field_key, Record, Snapshot};
use crate::types::{BlockAddress, CommitReceipt, Document, RedactionRequest, Revision, TableInfo};

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

/// A point to roll a transaction back to (see [`Transaction::savepoint`]).
#[derive(Debug, Clone, Copy)]
pub struct Savepoint {
    undo: usize,
    statements: usize,
    catalog_changes: usize,
    bytes_written: usize,
}

/// The transaction's latest version of a document it wrote.
#[derive(Debug, Clone)]
struct PendingDocument {
    table_name: String,
    /// Version and data in the snapshot (`None`: inserted by this transaction). The committer
    /// uses the data to update indexes without reading the document again.
    base: Option<(u64, Element)>,
    /// `None` after a delete.
    data: Option<Element>,
    /// Ion binary of `data` (empty after a delete).
    bytes: Vec<u8>,
    /// `H(data)`.
    data_hash: Option<Hash>,
    /// Statements that touched it, in order, without repeats.
    statements: Vec<usize>,
}

impl PendingDocument {
    /// The version this write will have.
    fn version(&self) -> u64 {
        self.base.as_ref().map_or(0, |(v, _)| v + 1)
    }
}

type DocKey = (String, String);

/// A serializable transaction. Dropping it without [`Transaction::commit`] aborts it.
///
/// Reads see the snapshot taken at [`crate::Ledger::begin`] plus this transaction's own
/// writes. Every read is recorded; at commit the ledger refuses (OCC conflict) if a block
/// committed after the snapshot changed anything read.
pub struct Transaction {
    ledger: Arc<LedgerInner>,
    id: String,
    /// Blocks applied in the snapshot: the first block this transaction did not see.
    start: u64,
    started_at: Instant,
    start_millis: i64,
    snapshot: Arc<Snapshot>,
    /// Catalog of the snapshot with this transaction's DDL applied.
    catalog: Catalog,
    base_catalog: Arc<Catalog>,
    catalog_changes: Vec<CatalogChange>,
    reads: ReadSet,
    statements: Vec<StatementRecord>,
    documents: BTreeMap<DocKey, PendingDocument>,
    /// Previous states of `documents` entries, for savepoints.
    undo: Vec<(DocKey, Option<PendingDocument>)>,
    bytes_written: usize,
    /// Stored documents, revisions and index entries read so far (QLDB's `ReadIOs`).
    read_ios: u64,
    /// `read_ios` may not pass this (see [`Transaction::limit_reads`]).
    read_limit: u64,
    finished: bool,
}

impl Transaction {
    pub(crate) fn new(
        ledger: Arc<LedgerInner>,
        id: String,
        start: u64,
        snapshot: Arc<Snapshot>,
        catalog: Arc<Catalog>,
    ) -> Transaction {
        Transaction {
            ledger,
            id,
            start,
            started_at: Instant::now(),
            start_millis: clock::now_millis(),
            snapshot,
            catalog: (*catalog).clone(),
            base_catalog: catalog,
            catalog_changes: Vec::new(),
            reads: ReadSet::default(),
            statements: Vec::new(),
            documents: BTreeMap::new(),
            undo: Vec::new(),
            bytes_written: 0,
            read_ios: 0,
            read_limit: u64::MAX,
            finished: false,
        }
    }

    /// The transaction id (22-char base62).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stored documents, revisions and index entries this transaction has read: one per
    /// document a scan visits or a lookup fetches, one per index probe, one per revision the
    /// committed view or history reads. Reads of failed statements count too (they happened).
    pub fn read_ios(&self) -> u64 {
        self.read_ios
    }

    /// Bounds what the following statements may read: once they have read more than `reads`
    /// stored documents, revisions or index entries (counted as [`Transaction::read_ios`]
    /// counts them), a read fails with [`LedgerError::ReadLimitReached`]; `None` lifts the
    /// bound. An async server runs a statement on its event loop under such a bound, so that
    /// only a statement that turns out to read a lot (a scan) is run again, unbounded, on a
    /// thread that may take its time.
    pub fn limit_reads(&mut self, reads: Option<u64>) {
        self.read_limit = reads.map_or(u64::MAX, |reads| self.read_ios.saturating_add(reads));
    }

    /// Counts `reads` more reads, failing past the limit.
    fn count_reads(&mut self, reads: u64) -> Result<()> {
        self.read_ios += reads;
        within_read_limit(self.read_ios, self.read_limit)
    }

    /// What committing now would write: one per document revision, plus one index entry per
    /// index of its table.
    pub fn write_ios(&self) -> u64 {
        self.documents
            .keys()
            .map(|(table_id, _)| {
                let indexes = self.catalog.by_id(table_id).map_or(0, |t| t.indexes.len());
                1 + indexes as u64
            })
            .sum()
    }

    /// Wall-clock time the transaction started (for UTCNOW()).
    pub fn start_time(&self) -> Timestamp {
        clock::timestamp_from_millis(self.start_millis)
            .expect("the current time is within Ion's range")
    }

    fn check_open(&self) -> Result<()> {
        if self.started_at.elapsed() > self.ledger.options.limits.transaction_timeout {
            return Err(LedgerError::TransactionExpired {
                transaction_id: self.id.clone(),
            });
        }
        Ok(())
    }

    /// Records a statement (text and parameters) so the block's `transactionInfo` shows it;
    /// writes that follow are attributed to it.
    pub fn record_statement(&mut self, text: &str, parameters: &[Element]) -> Result<()> {
        self.record_statement_digest(text, quill_verify::statement_digest(text, parameters))
    }

    /// [`Transaction::record_statement`] with the statement's digest already computed: it must
    /// be `quill_verify::statement_digest(text, parameters)` (the block's `transactionInfo`
    /// stores it as the statement's digest).
    pub fn record_statement_digest(&mut self, text: &str, digest: Hash) -> Result<()> {
        self.check_open()?;
        let length = text.chars().count();
        if length > crate::limits::STATEMENT_LENGTH_MAX_CHARS {
            return Err(LedgerError::LimitExceeded {
                limit: "statement_length_max_chars",
                max: crate::limits::STATEMENT_LENGTH_MAX_CHARS,
                actual: length,
            });
        }
        self.statements.push(StatementRecord {
            text: text.to_owned(),
            start_millis: clock::now_millis(),
            digest,
        });
        Ok(())
    }

    /// Marks the current state of the transaction's writes, statements and catalog changes.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            undo: self.undo.len(),
            statements: self.statements.len(),
            catalog_changes: self.catalog_changes.len(),
            bytes_written: self.bytes_written,
        }
    }

    /// Undoes every write, catalog change and recorded statement made after `savepoint`
    /// (used to make a failed statement leave the transaction unchanged). Reads stay in the
    /// read set: that only makes OCC more conservative.
    pub fn rollback_to(&mut self, savepoint: Savepoint) {
        while self.undo.len() > savepoint.undo {
            let (key, previous) = self.undo.pop().expect("length checked");
            match previous {
                Some(doc) => self.documents.insert(key, doc),
                None => self.documents.remove(&key),
            };
        }
        self.statements.truncate(savepoint.statements);
        self.bytes_written = savepoint.bytes_written;
        if self.catalog_changes.len() > savepoint.catalog_changes {
            self.catalog_changes.truncate(savepoint.catalog_changes);
            let mut catalog = (*self.base_catalog).clone();
            for change in &self.catalog_changes {
                catalog
                    .apply(change, &self.ledger.options.limits)
                    .expect("changes replay on the catalog they were checked on");
            }
            self.catalog = catalog;
        }
    }

    // ---- catalog -------------------------------------------------------------------------

    fn change_catalog(&mut self, change: CatalogChange) -> Result<()> {
        self.check_open()?;
        self.catalog.apply(&change, &self.ledger.options.limits)?;
        if let Some(table_id) = change.table_id() {
            self.reads.catalog_tables.insert(table_id.to_owned());
        }
        self.catalog_changes.push(change);
        Ok(())
    }

    /// CREATE TABLE: returns the new table id.
    pub fn create_table(&mut self, name: &str, tags: Option<Element>) -> Result<String> {
        if let Some(tags) = &tags {
            // Tags are key/value string pairs (`{'key': 'value'}`), as TagResource records them.
            let all_text = tags
                .as_struct()
                .is_some_and(|fields| fields.iter().all(|(_, value)| value.as_text().is_some()));
            if !all_text {
                return Err(LedgerError::InvalidInput(
                    "aws_tags must be an Ion struct of string values".into(),
                ));
            }
        }
        let table_id = self.ledger.ids.next_id();
        self.change_catalog(CatalogChange::CreateTable {
            table_id: table_id.clone(),
            name: name.to_owned(),
            tags,
        })?;
        Ok(table_id)
    }

    /// DROP TABLE (marks it INACTIVE; documents and history stay): returns its id.
    pub fn drop_table(&mut self, name: &str) -> Result<String> {
        let table_id = self.active_table(name)?.table_id.clone();
        self.change_catalog(CatalogChange::DropTable {
            table_id: table_id.clone(),
        })?;
        Ok(table_id)
    }

    /// UNDROP TABLE by id: returns the id.
    pub fn undrop_table(&mut self, table_id: &str) -> Result<String> {
        self.change_catalog(CatalogChange::UndropTable {
            table_id: table_id.to_owned(),
        })?;
        Ok(table_id.to_owned())
    }

    /// CREATE INDEX on a top-level field, built from the table's documents when the
    /// transaction commits: returns the table id.
    pub fn create_index(&mut self, table: &str, field: &str) -> Result<String> {
        let table_id = self.active_table(table)?.table_id.clone();
        let index_id = self.ledger.ids.next_id();
        self.change_catalog(CatalogChange::CreateIndex {
            table_id: table_id.clone(),
            index_id,
            field: field.to_owned(),
        })?;
        Ok(table_id)
    }

    /// DROP INDEX by index id: returns the table id.
    pub fn drop_index(&mut self, table: &str, index_id: &str) -> Result<String> {
        let table_id = self.active_table(table)?.table_id.clone();
        self.change_catalog(CatalogChange::DropIndex {
            table_id: table_id.clone(),
            index_id: index_id.to_owned(),
        })?;
        Ok(table_id)
    }

    /// Every table (active and inactive), as `information_schema.user_tables` shows them.
    pub fn tables(&mut self) -> Result<Vec<TableInfo>> {
        self.check_open()?;
        self.reads.whole_catalog = true;
        Ok(self.catalog.tables().to_vec())
    }

    /// The ACTIVE table with this name, or `UnknownTable`.
    pub fn table(&mut self, name: &str) -> Result<TableInfo> {
        self.check_open()?;
        Ok(self.active_table(name)?.clone())
    }

    /// The table (active or not) with this id, or `UnknownTable`.
    pub fn table_by_id(&mut self, table_id: &str) -> Result<TableInfo> {
        self.check_open()?;
        self.reads.catalog_tables.insert(table_id.to_owned());
        self.catalog
            .by_id(table_id)
            .cloned()
            .ok_or_else(|| LedgerError::UnknownTable(table_id.to_owned()))
    }

    fn active_table(&mut self, name: &str) -> Result<&TableInfo> {
        let table = self
            .catalog
            .active(name)
            .ok_or_else(|| LedgerError::UnknownTable(name.to_owned()))?;
        self.reads.catalog_tables.insert(table.table_id.clone());
        Ok(table)
    }

    // ---- documents -----------------------------------------------------------------------

    fn write(
        &mut self,
        table: &TableInfo,
        document_id: &str,
        base: Option<(u64, Element)>,
        data: Option<Element>,
        known_data_hash: Option<Hash>,
    ) -> Result<()> {
        let limits = &self.ledger.options.limits;
        let (bytes, data_hash) = match &data {
            Some(d) => {
                if d.ion_type() != IonType::Struct || d.is_null() {
                    return Err(LedgerError::InvalidInput(format!(
                        "a document must be an Ion struct, got {}",
                        d.ion_type()
                    )));
                }
                check_depth(d)?;
                let bytes = d.encode_as(ion_rs::v1_0::Binary)?;
                if bytes.len() > limits.document_size_max_bytes {
                    return Err(LedgerError::LimitExceeded {
                        limit: "document_size_max_bytes",
                        max: limits.document_size_max_bytes,
                        actual: bytes.len(),
                    });
                }
                let data_hash = match known_data_hash {
                    Some(hash) => {
                        debug_assert_eq!(hash, ion_hash(d), "a known data hash must be H(data)");
                        hash
                    }
                    None => ion_hash(d),
                };
                (bytes, Some(data_hash))
            }
            None => (Vec::new(), None),
        };
        let key = (table.table_id.clone(), document_id.to_owned());
        let previous = self.documents.get(&key).cloned();
        if previous.is_none() && self.documents.len() + 1 > limits.documents_per_transaction_max {
            return Err(LedgerError::LimitExceeded {
                limit: "documents_per_transaction_max",
                max: limits.documents_per_transaction_max,
                actual: self.documents.len() + 1,
            });
        }
        let written = self.bytes_written + bytes.len();
        if written > limits.transaction_size_max_bytes {
            return Err(LedgerError::LimitExceeded {
                limit: "transaction_size_max_bytes",
                max: limits.transaction_size_max_bytes,
                actual: written,
            });
        }
        self.bytes_written = written;
        let mut statements = previous
            .as_ref()
            .map(|p| p.statements.clone())
            .unwrap_or_default();
        if let Some(current) = self.statements.len().checked_sub(1) {
            if statements.last() != Some(&current) {
                statements.push(current);
            }
        }
        let base = match &previous {
            Some(p) => p.base.clone(),
            None => base,
        };
        let doc = PendingDocument {
            table_name: table.name.clone(),
            base,
            data,
            bytes,
            data_hash,
            statements,
        };
        self.undo.push((key.clone(), previous));
        self.documents.insert(key, doc);
        Ok(())
    }

    /// Inserts a document (an Ion struct); returns its new id.
    pub fn insert(&mut self, table: &str, data: Element) -> Result<String> {
        self.insert_document(table, data, None)
    }

    /// [`Transaction::insert`] of a document whose Ion hash the caller already computed, which
    /// must be `quill_verify::ion_hash(&data)`: it becomes the revision's data hash. A
    /// statement's parameters are hashed for its digest, so a parameter inserted as it is
    /// need not be hashed again.
    pub fn insert_hashed(&mut self, table: &str, data: Element, data_hash: Hash) -> Result<String> {
        self.insert_document(table, data, Some(data_hash))
    }

    fn insert_document(
        &mut self,
        table: &str,
        data: Element,
        data_hash: Option<Hash>,
    ) -> Result<String> {
        self.check_open()?;
        let table = self.active_table(table)?.clone();
        let document_id = self.ledger.ids.next_id();
        self.write(&table, &document_id, None, Some(data), data_hash)?;
        Ok(document_id)
    }

    /// Current state of a document as this transaction sees it: `Some(Some(..))` live,
    /// `Some(None)` deleted here, `None` not written here.
    fn pending(&self, table_id: &str, document_id: &str) -> Option<Option<Document>> {
        let doc = self
            .documents
            .get(&(table_id.to_owned(), document_id.to_owned()))?;
        Some(doc.data.as_ref().map(|data| Document {
            id: document_id.to_owned(),
            version: doc.version(),
            data: data.clone(),
        }))
    }

    fn snapshot_document(&self, table_id: &str, document_id: &str) -> Result<Option<Document>> {
        match self.snapshot.document(table_id, document_id)? {
            Some(bytes) => {
                let record = Record::decode(&bytes)?;
                Ok(Some(Document {
                    id: document_id.to_owned(),
                    version: record.version,
                    data: Element::read_one(record.data)?,
                }))
            }
            None => Ok(None),
        }
    }

    /// Current version of a document (own writes included); `None` if absent or deleted.
    pub fn get(&mut self, table: &str, document_id: &str) -> Result<Option<Document>> {
        self.check_open()?;
        let table_id = self.active_table(table)?.table_id.clone();
        self.reads
            .documents
            .insert((table_id.clone(), document_id.to_owned()));
        self.count_reads(1)?;
        if let Some(pending) = self.pending(&table_id, document_id) {
            return Ok(pending);
        }
        self.snapshot_document(&table_id, document_id)
    }

    /// Replaces a document's data with a new revision.
    pub fn update(&mut self, table: &str, document_id: &str, data: Element) -> Result<()> {
        let current = self
            .get(table, document_id)?
            .ok_or_else(|| LedgerError::UnknownDocument(document_id.to_owned()))?;
        let table = self.active_table(table)?.clone();
        let base = self.base(&table.table_id, current);
        self.write(&table, document_id, base, Some(data), None)
    }

    /// Deletes a document (writes a final revision without data).
    pub fn delete(&mut self, table: &str, document_id: &str) -> Result<()> {
        let current = self
            .get(table, document_id)?
            .ok_or_else(|| LedgerError::UnknownDocument(document_id.to_owned()))?;
        let table = self.active_table(table)?.clone();
        let base = self.base(&table.table_id, current);
        self.write(&table, document_id, base, None, None)
    }

    /// The snapshot version and data of a document this transaction currently sees as
    /// `current` (its own earlier write keeps the snapshot's base).
    fn base(&self, table_id: &str, current: Document) -> Option<(u64, Element)> {
        match self
            .documents
            .get(&(table_id.to_owned(), current.id.clone()))
        {
            Some(pending) => pending.base.clone(),
            None => Some((current.version, current.data)),
        }
    }

    /// Visits every live document of the table (snapshot plus own writes) without decoding
    /// it; the visitor returns `false` to stop. Reads the whole table for OCC.
    pub fn scan(
        &mut self,
        table: &str,
        visit: &mut dyn FnMut(DocumentRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        self.check_open()?;
        let table_id = self.active_table(table)?.table_id.clone();
        self.reads.tables.insert(table_id.clone());
        let documents = &self.documents;
        // Own writes to this table shadow snapshot documents; most scans have none, so skip
        // the per-document lookup (and its key allocation) then.
        let shadowed = documents
            .range((table_id.clone(), String::new())..)
            .next()
            .is_some_and(|((t, _), _)| t == &table_id);
        let mut stopped = false;
        let read_limit = self.read_limit;
        self.snapshot.scan(&table_id, &mut |id, record| {
            if shadowed && documents.contains_key(&(table_id.clone(), id.to_owned())) {
                return Ok(true);
            }
            self.read_ios += 1;
            within_read_limit(self.read_ios, read_limit)?;
            let keep_going = visit(DocumentRef {
                id,
                version: record.version,
                ion: record.data,
            })?;
            stopped = !keep_going;
            Ok(keep_going)
        })?;
        if stopped {
            return Ok(());
        }
        for ((t, id), doc) in self.documents.range((table_id.clone(), String::new())..) {
            if t != &table_id {
                break;
            }
            if doc.data.is_some() {
                self.read_ios += 1;
                within_read_limit(self.read_ios, self.read_limit)?;
                let version = doc.version();
                if !visit(DocumentRef {
                    id,
                    version,
                    ion: &doc.bytes,
                })? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Documents whose top-level `field` equals `key`, through the table's index on that
    /// field; `Ok(None)` when the table has no such index in the snapshot (the caller then
    /// scans). Reads the key for OCC (a document gaining or losing it is a phantom) and every
    /// document returned (a change to one is a changed read).
    pub fn index_lookup(
        &mut self,
        table: &str,
        field: &str,
        key: &Element,
    ) -> Result<Option<Vec<Document>>> {
        self.check_open()?;
        let table_id = self.active_table(table)?.table_id.clone();
        let indexed = self
            .base_catalog
            .by_id(&table_id)
            .is_some_and(|t| t.indexes.iter().any(|i| i.field == field));
        if !indexed {
            return Ok(None);
        }
        let Some(key_bytes) = equality_key(key) else {
            // `=` is never true for a null: nothing matches, now or later.
            return Ok(Some(Vec::new()));
        };
        self.reads
            .index_keys
            .insert((table_id.clone(), field.to_owned(), key_bytes.clone()));
        let mut found = Vec::new();
        for id in self.snapshot.index_lookup(&table_id, field, &key_bytes)? {
            if self.documents.contains_key(&(table_id.clone(), id.clone())) {
                continue;
            }
            // The probe, each document found so far, and this one.
            within_read_limit(self.read_ios + 2 + found.len() as u64, self.read_limit)?;
            if let Some(doc) = self.snapshot_document(&table_id, &id)? {
                if !self.ledger.options.occ_read_holes {
                    self.reads.documents.insert((table_id.clone(), id));
                }
                found.push(doc);
            }
        }
        for ((t, id), pending) in self.documents.range((table_id.clone(), String::new())..) {
            if t != &table_id {
                break;
            }
            if let Some(data) = &pending.data {
                if field_key(data, field).as_deref() == Some(key_bytes.as_slice()) {
                    found.push(Document {
                        id: id.clone(),
                        version: pending.version(),
                        data: data.clone(),
                    });
                }
            }
        }
        // The probe, then each document it led to.
        self.count_reads(1 + found.len() as u64)?;
        Ok(Some(found))
    }

    /// The committed view `_ql_committed_<table>`: committed revisions of live documents
    /// (all of them, or the one with `document_id`). Own uncommitted writes are not included.
    pub fn committed(&mut self, table: &str, document_id: Option<&str>) -> Result<Vec<Revision>> {
        self.check_open()?;
        let table_id = self.active_table(table)?.table_id.clone();
        let strand = self.ledger.strand_id.clone();
        match document_id {
            Some(id) => {
                self.reads
                    .documents
                    .insert((table_id.clone(), id.to_owned()));
                self.count_reads(1)?;
                match self.snapshot.document(&table_id, id)? {
                    Some(bytes) => Ok(vec![Record::decode(&bytes)?.to_revision(&strand, id)?]),
                    None => Ok(Vec::new()),
                }
            }
            None => {
                self.reads.tables.insert(table_id.clone());
                let mut out = Vec::new();
                let (read_before, read_limit) = (self.read_ios, self.read_limit);
                self.snapshot.scan(&table_id, &mut |id, record| {
                    within_read_limit(read_before + 1 + out.len() as u64, read_limit)?;
                    out.push(record.to_revision(&strand, id)?);
                    Ok(true)
                })?;
                self.read_ios += out.len() as u64;
                Ok(out)
            }
        }
    }

    /// `history(table_id, start, end)`: every committed revision active at some moment in
    /// `[start, end]` (inclusive; an open bound when `None`), optionally of one document;
    /// ordered by document id then version. A revision is active from its commit until the
    /// next revision of its document.
    pub fn history(
        &mut self,
        table_id: &str,
        document_id: Option<&str>,
        start: Option<&Timestamp>,
        end: Option<&Timestamp>,
    ) -> Result<Vec<Revision>> {
        self.check_open()?;
        let table = self
            .catalog
            .by_id(table_id)
            .ok_or_else(|| LedgerError::UnknownTable(table_id.to_owned()))?;
        let table_id = table.table_id.clone();
        match document_id {
            Some(id) => self
                .reads
                .documents
                .insert((table_id.clone(), id.to_owned())),
            None => self.reads.tables.insert(table_id.clone()),
        };
        // QLDB's rules ("Querying revision history"): start <= end, end <= now (UTC), and a
        // missing end is now. Breaking either is an error, not an empty or clamped range.
        let now_ms = clock::now_millis();
        let start_ms = start.map(clock::millis_from_timestamp).unwrap_or(i64::MIN);
        let end_ms = end.map(clock::millis_from_timestamp).unwrap_or(now_ms);
        if end_ms > now_ms {
            return Err(LedgerError::InvalidInput(
                "history(): the end time must not be later than the current time".into(),
            ));
        }
        if start_ms > end_ms {
            return Err(LedgerError::InvalidInput(
                "history(): the start time must not be later than the end time (or now)".into(),
            ));
        }
        let strand = self.ledger.strand_id.clone();
        let mut out = Vec::new();
        // Hold each revision until the next one of the same document tells when it ended.
        let mut held: Option<(String, Vec<u8>)> = None;
        let emit = |held: &(String, Vec<u8>),
                    ended_ms: Option<i64>,
                    out: &mut Vec<Revision>|
         -> Result<()> {
            let record = Record::decode(&held.1)?;
            let active = record.time_millis <= end_ms && ended_ms.is_none_or(|e| e > start_ms);
            if active {
                out.push(record.to_revision(&strand, &held.0)?);
            }
            Ok(())
        };
        self.snapshot
            .history(&table_id, document_id, &mut |id, record| {
                self.read_ios += 1;
                within_read_limit(self.read_ios, self.read_limit)?;
                if let Some(previous) = held.take() {
                    let ended = (previous.0 == id).then_some(record.time_millis);
                    emit(&previous, ended, &mut out)?;
                }
                held = Some((id.to_owned(), record.encode()));
                Ok(true)
            })?;
        if let Some(last) = held {
            emit(&last, None, &mut out)?;
        }
        Ok(out)
    }

    /// `EXEC REDACT_REVISION`: requests the erasure of the data of the revision of
    /// `document_id` (in table `table_id`) committed in block `block_address`. QLDB's rules:
    /// the revision must be inactive (a later revision of the document exists), hold data (not
    /// already redacted, not a deletion), and be the only redaction of this transaction. The
    /// request is committed with the transaction; the erasure follows the commit (see
    /// `redaction`). Returns QLDB's result document `{blockAddress, tableId, documentId,
    /// version}`.
    pub fn redact_revision(
        &mut self,
        block_address: &BlockAddress,
        table_id: &str,
        document_id: &str,
    ) -> Result<RedactionRequest> {
        self.check_open()?;
        let invalid = |detail: String| Err(LedgerError::InvalidInput(detail));
        if self
            .catalog_changes
            .iter()
            .any(|c| matches!(c, CatalogChange::RedactRevision(_)))
        {
            return invalid("only one revision can be redacted per transaction".into());
        }
        if block_address.strand_id != self.ledger.strand_id {
            return invalid(format!(
                "block address strand {} is not this ledger's strand",
                block_address.strand_id
            ));
        }
        let sequence_no = block_address.sequence_no;
        if sequence_no >= self.start {
            return invalid(format!("no committed block has sequenceNo {sequence_no}"));
        }
        if self.catalog.by_id(table_id).is_none() {
            return Err(LedgerError::UnknownTable(table_id.to_owned()));
        }
        let bytes = self.ledger.core.journal.read(sequence_no)?;
        let decoded = block::decode_payload(&bytes, block_address)?;
        let Some((revision_table, revision)) = decoded
            .revisions
            .iter()
            .find(|(_, r)| r.metadata.id == document_id)
        else {
            return invalid(format!(
                "document {document_id} has no revision in block {sequence_no}"
            ));
        };
        if revision_table != table_id {
            return invalid(format!(
                "the revision of document {document_id} in block {sequence_no} belongs to table {revision_table}, not {table_id}"
            ));
        }
        let version = revision.metadata.version;
        self.reads
            .documents
            .insert((table_id.to_owned(), document_id.to_owned()));
        let mut latest = version;
        let mut target = None;
        self.snapshot
            .history(table_id, Some(document_id), &mut |_, record| {
                latest = latest.max(record.version);
                if record.version == version {
                    target = Some((record.deleted, record.redacted));
                }
                Ok(true)
            })?;
        self.count_reads(latest + 1)?;
        match target {
            None => invalid(format!(
                "document {document_id} has no revision with version {version}"
            )),
            Some(_) if latest == version => invalid(format!(
                "the latest active revision of a document cannot be redacted (document {document_id}, version {version})"
            )),
            Some((_, true)) => invalid(format!(
                "the revision of document {document_id} with version {version} is already redacted"
            )),
            Some((true, _)) => invalid(format!(
                "the revision of document {document_id} with version {version} is a deletion and holds no data"
            )),
            Some((false, false)) => {
                let request = RedactionRequest {
                    block_address: block_address.clone(),
                    table_id: table_id.to_owned(),
                    document_id: document_id.to_owned(),
                    version,
                };
                self.catalog_changes
                    .push(CatalogChange::RedactRevision(request.clone()));
                Ok(request)
            }
        }
    }

    // ---- end -----------------------------------------------------------------------------

    /// Commits: one journal block, fsynced before this returns. A transaction that wrote
    /// nothing commits without a block, but is validated like a writer: it fails with an OCC
    /// conflict if a block committed after it started changed something it read (as QLDB
    /// does).
    pub fn commit(mut self) -> Result<CommitReceipt> {
        let Some((prepared, redactions)) = self.prepare()? else {
            return Ok(self.receipt_without_block());
        };
        self.finished = true;
        let result = self.ledger.commit(prepared);
        self.ledger.end_transaction(self.start);
        if result.is_ok() {
            self.ledger.erase_committed_redactions(&redactions);
        }
        result
    }

    /// [`Transaction::commit`] for an async caller (inside a tokio runtime): the same outcome,
    /// acknowledged only once durable, but the calling thread never blocks. The block is
    /// prepared (hashed) here and handed to the committer threads, whose answer is awaited. A
    /// commit that would block anyway goes whole to tokio's blocking pool: on an idle ledger
    /// (where the committing thread sequences and fsyncs its block itself, the fastest way for
    /// a lone writer), with a redaction (erased from the journal files after the commit), and
    /// a read-only commit on a PostgreSQL journal (validated after a round trip).
    ///
    /// Dropping the future while it waits does not undo the commit; the transaction ends
    /// either way.
    pub async fn commit_async(mut self) -> Result<CommitReceipt> {
        let wrote = !self.catalog_changes.is_empty() || !self.documents.is_empty();
        let redacts = self
            .catalog_changes
            .iter()
            .any(|change| matches!(change, CatalogChange::RedactRevision(_)));
        let blocks = if wrote {
            redacts || self.ledger.commits_alone()
        } else {
            self.ledger.core.journal.shared().is_some()
        };
        if blocks {
            return tokio::task::spawn_blocking(move || self.commit())
                .await
                .unwrap_or_else(|e| Err(LedgerError::Storage(format!("commit task failed: {e}"))));
        }
        let Some((prepared, _)) = self.prepare()? else {
            return Ok(self.receipt_without_block());
        };
        let answer = self.ledger.enqueue(prepared)?;
        // `self` lives until the answer is in (or this future is dropped): dropping it ends
        // the transaction, as `commit` does once its block is durable.
        answer
            .await
            .unwrap_or_else(|_| Err(LedgerError::ReadOnly("committer stopped".into())))
    }

    fn receipt_without_block(&self) -> CommitReceipt {
        CommitReceipt {
            transaction_id: self.id.clone(),
            block_address: None,
        }
    }

    /// Gathers the transaction's writes into a block body ready for the committer, with the
    /// redactions to carry out once it is committed; `None` for a transaction that wrote
    /// nothing, once it is validated.
    fn prepare(&mut self) -> Result<Option<(PreparedCommit, Vec<RedactionRequest>)>> {
        self.check_open()?;
        if self.catalog_changes.is_empty() && self.documents.is_empty() {
            if !self.ledger.options.occ_read_holes {
                self.ledger
                    .validate_read_only(&self.id, self.start, &self.reads)?;
            }
            return Ok(None);
        }
        let mut revisions = Vec::with_capacity(self.documents.len());
        let mut data_bytes = Vec::with_capacity(self.documents.len());
        for ((table_id, document_id), doc) in std::mem::take(&mut self.documents) {
            if doc.base.is_none() && doc.data.is_none() {
                continue; // inserted and deleted here: it never existed outside
            }
            let version = doc.version();
            revisions.push(RevisionDraft {
                table_id,
                table_name: doc.table_name,
                document_id,
                version,
                data: doc.data,
                data_hash: doc.data_hash,
                statements: doc.statements,
                previous: doc.base.map(|(_, data)| data),
            });
            data_bytes.push(doc.bytes);
        }
        // Hashed here, in the committing thread: the committer's serial path stays short.
        let body = block::body(
            &self.id,
            clock::now_millis(),
            &self.statements,
            &revisions,
            &self.catalog_changes,
        )?;
        let redactions: Vec<RedactionRequest> = self
            .catalog_changes
            .iter()
            .filter_map(|change| match change {
                CatalogChange::RedactRevision(request) => Some(request.clone()),
                _ => None,
            })
            .collect();
        let prepared = PreparedCommit {
            transaction_id: self.id.clone(),
            start: self.start,
            started_at: self.started_at,
            reads: std::mem::take(&mut self.reads),
            revisions,
            data_bytes,
            catalog_changes: std::mem::take(&mut self.catalog_changes),
            body,
        };
        Ok(Some((prepared, redactions)))
    }

    /// Aborts (the same as dropping the transaction).
    pub fn abort(self) {}
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished {
            self.ledger.end_transaction(self.start);
        }
    }
}

/// Fails once `read_ios` has passed `limit`.
fn within_read_limit(read_ios: u64, limit: u64) -> Result<()> {
    if read_ios > limit {
        return Err(LedgerError::ReadLimitReached);
    }
    Ok(())
}

/// Refuses documents nested deeper than [`crate::limits::DOCUMENT_DEPTH_MAX`], without
/// recursing itself (an explicit stack, bounded by the limit and the document's size).
fn check_depth(document: &Element) -> Result<()> {
    let max = crate::limits::DOCUMENT_DEPTH_MAX;
    let mut stack: Vec<(&Element, usize)> = vec![(document, 1)];
    while let Some((value, depth)) = stack.pop() {
        if depth > max {
            return Err(LedgerError::LimitExceeded {
                limit: "document_depth_max",
                max,
                actual: depth,
            });
        }
        if let Some(s) = value.as_struct() {
            stack.extend(s.fields().map(|(_, v)| (v, depth + 1)));
        } else if let Some(seq) = value.as_sequence() {
            stack.extend(seq.elements().map(|v| (v, depth + 1)));
        }
    }
    Ok(())
}
