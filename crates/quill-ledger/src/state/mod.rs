//! Derived state: current documents, history, indexes, the catalog, and how far the journal
//! has been applied, in an embedded `redb` database plus in-memory layers on top of it.
//!
//! Invariant: the state is a pure function of the journal prefix `0..applied`, and readers
//! only ever see published snapshots, which reflect fsynced blocks only (the committer may
//! write redb ahead of the fsync, but publishes after it). redb commits are mostly
//! `Durability::None` (the journal is the durable copy); a durable checkpoint about once a
//! second, always after a journal sync, bounds how much is replayed on open.
//!
//! Commits do not each write redb: each batch becomes an in-memory [`Layer`], and a flusher
//! thread writes the layers to redb in one transaction once there are
//! [`LAYERS_MAX`](crate::limits::LAYERS_MAX) of them (or a checkpoint is due, or the ledger
//! is idle); a batch with DDL is written to redb directly. A [`Snapshot`] is a redb read
//! transaction plus the layers committed after it; newer layers win. Why: a redb write
//! transaction per batch cost more than the rest of the commit path for updates
//! (copy-on-write of random pages, and redb's per-commit bookkeeping of pages freed since the
//! last durable commit); see docs/benchmarks.md.
//!
//! Why redb rather than an LSM such as fjall: measured side by side on this workload
//! (`tools/state-store-bench`), fjall wrote updates 2.2–2.5× faster than redb committing every
//! batch, but redb read 1.3–2.8× faster and used a third of the memory. The layers take redb's
//! write cost off the commit path and keep its reads. redb is also pure Rust (short build), and
//! its MVCC read transactions give every ledger transaction a consistent snapshot.

mod layer;

use std::path::Path;
use std::sync::Arc;

use ion_rs::Element;
use quill_verify::Hash;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::catalog::{Catalog, CatalogChange};
use crate::clock;
use crate::equality::equality_key;
use crate::error::{LedgerError, Result};
use crate::storage::Storage;
use crate::types::{BlockAddress, RedactionRequest, Revision, RevisionMetadata};

pub use layer::Layer;

type DocsTable<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;
type HistoryTable<'t> = redb::Table<'t, (&'static str, &'static str, u64), &'static [u8]>;
type IndexTable<'t> =
    redb::Table<'t, (&'static str, &'static str, &'static [u8], &'static str), ()>;

/// Small values: `format` (u64 LE: [`FORMAT`]), `applied` (u64 LE: blocks applied),
/// `applied_hash` (the hash of block `applied - 1`, written with `applied`: what says which
/// chain the state reflects), `catalog` (Ion binary).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (table id, document id) → record of the current revision of a live document.
const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");
/// (table id, document id, version) → record of every revision, deletions included.
const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("history");
/// (table id, field, [`equality_key`] of the value, document id) → (): equality indexes.
const INDEX: TableDefinition<(&str, &str, &[u8], &str), ()> = TableDefinition::new("index");
/// (table id, document id, version) → sequence number of the block holding the revision:
/// revisions redacted in derived state whose erasure is not complete everywhere (the
/// journal frame may still hold the data, and redb's free pages may hold old copies until
/// derived state is rebuilt). A rebuilt state starts without entries.
const PENDING_REDACTIONS: TableDefinition<(&str, &str, u64), u64> =
    TableDefinition::new("pending_redactions");

/// The layout of derived state, stored under `format`; a state of another format is rebuilt from
/// the journal rather than read. 2: index keys are [`equality_key`]s (1, unmarked: Ion binary).
const FORMAT: u64 = 2;

/// Sorts after every base62 document id: the upper bound of a prefix range.
const ID_UPPER_BOUND: &str = "{";

fn storage(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(e.to_string())
}

/// One stored revision. Byte map (little-endian):
/// ```text
/// 0      flags (bit 0: deleted; bit 1: redacted, the data is the erased data's Ion hash)
/// 1..9   version u64
/// 9..17  block sequence number u64
/// 17..25 txTime, ms since epoch, i64
/// 25..57 revision hash
/// 57     transaction id length n
/// 58..   transaction id (n bytes), then the data as Ion binary (empty when deleted; the
///        32-byte `dataHash` when redacted)
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub deleted: bool,
    pub redacted: bool,
    pub version: u64,
    pub sequence_no: u64,
    pub time_millis: i64,
    pub hash: Hash,
    pub tx_id: &'a str,
    pub data: &'a [u8],
}

const RECORD_HEADER_BYTES: usize = 58;

impl<'a> Record<'a> {
    pub fn encode(&self) -> Vec<u8> {
        assert!(
            self.tx_id.len() <= u8::MAX as usize,
            "transaction ids are 22 bytes"
        );
        let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + self.tx_id.len() + self.data.len());
        out.push(self.deleted as u8 | (self.redacted as u8) << 1);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.sequence_no.to_le_bytes());
        out.extend_from_slice(&self.time_millis.to_le_bytes());
        out.extend_from_slice(self.hash.as_bytes());
        out.push(self.tx_id.len() as u8);
        out.extend_from_slice(self.tx_id.as_bytes());
        out.extend_from_slice(self.data);
        out
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>> {
        let short = || LedgerError::Storage("stored revision record is truncated".into());
        if bytes.len() < RECORD_HEADER_BYTES {
            return Err(short());
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let tx_len = bytes[57] as usize;
        let tx_end = RECORD_HEADER_BYTES + tx_len;
        if bytes.len() < tx_end {
            return Err(short());
        }
        let redacted = bytes[0] & 2 == 2;
        if redacted && bytes.len() != tx_end + 32 {
            return Err(LedgerError::Storage(
                "stored redacted revision does not hold a 32-byte dataHash".into(),
            ));
        }
        Ok(Record {
            deleted: bytes[0] & 1 == 1,
            redacted,
            version: u64_at(1),
            sequence_no: u64_at(9),
            time_millis: u64_at(17) as i64,
            hash: Hash::from_slice(&bytes[25..57]).expect("32 bytes"),
            tx_id: std::str::from_utf8(&bytes[RECORD_HEADER_BYTES..tx_end]).map_err(|_| short())?,
            data: &bytes[tx_end..],
        })
    }

    /// The user data, `None` for a deletion or a redacted revision.
    pub fn element(&self) -> Result<Option<Element>> {
        if self.deleted || self.redacted {
            return Ok(None);
        }
        Ok(Some(Element::read_one(self.data)?))
    }

    /// This record with its data erased: `dataHash` in place of the data. The caller checked
    /// it holds data.
    pub fn redact(&self, data_hash: &'a Hash) -> Record<'a> {
        Record {
            redacted: true,
            data: data_hash.as_bytes(),
            ..self.clone()
        }
    }

    /// The public revision form.
    pub fn to_revision(&self, strand_id: &str, document_id: &str) -> Result<Revision> {
        let data_hash = if self.redacted {
            Hash::from_slice(self.data)
        } else {
            None
        };
        Ok(Revision {
            block_address: BlockAddress {
                strand_id: strand_id.to_owned(),
                sequence_no: self.sequence_no,
            },
            hash: self.hash,
            data: self.element()?,
            data_hash,
            metadata: RevisionMetadata {
                id: document_id.to_owned(),
                version: self.version,
                tx_time: clock::timestamp_from_millis(self.time_millis)?,
                tx_id: self.tx_id.to_owned(),
            },
        })
    }
}

/// The derived-state database.
pub struct State {
    db: Database,
}

impl State {
    /// Opens or creates the database file and its tables.
    pub fn open(files: &Storage, path: &Path) -> Result<State> {
        let mut builder = Database::builder();
        builder.set_cache_size(crate::limits::STATE_CACHE_BYTES);
        let db = files.create_redb(&builder, path).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            // A new database (nothing applied yet) is of the current format.
            if meta.get("applied").map_err(storage)?.is_none() {
                meta.insert("format", FORMAT.to_le_bytes().as_slice())
                    .map_err(storage)?;
            }
            txn.open_table(DOCS).map_err(storage)?;
            txn.open_table(HISTORY).map_err(storage)?;
            txn.open_table(INDEX).map_err(storage)?;
            txn.open_table(PENDING_REDACTIONS).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(State { db })
    }

    /// Redactions whose erasure is not complete everywhere (see [`PENDING_REDACTIONS`]).
    pub fn pending_redactions(&self, strand_id: &str) -> Result<Vec<RedactionRequest>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let pending = txn.open_table(PENDING_REDACTIONS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in pending.iter().map_err(storage)? {
            let (key, sequence_no) = entry.map_err(storage)?;
            let (table_id, document_id, version) = key.value();
            out.push(RedactionRequest {
                block_address: BlockAddress {
                    strand_id: strand_id.to_owned(),
                    sequence_no: sequence_no.value(),
                },
                table_id: table_id.to_owned(),
                document_id: document_id.to_owned(),
                version,
            });
        }
        Ok(out)
    }

    /// Whether the database is of the current [`FORMAT`]: when it is not, it must be rebuilt
    /// from the journal.
    pub fn has_current_format(&self) -> Result<bool> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let format = meta.get("format").map_err(storage)?;
        Ok(format.is_some_and(|v| v.value() == FORMAT.to_le_bytes()))
    }

    /// Blocks applied and the hash of the last of them (`None` when nothing is applied, or
    /// when a state written before the hash was recorded does not say).
    pub fn applied_position(&self) -> Result<(u64, Option<Hash>)> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let applied = meta
            .get("applied")
            .map_err(storage)?
            .map(|v| u64::from_le_bytes(v.value().try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        let hash = meta
            .get("applied_hash")
            .map_err(storage)?
            .and_then(|v| Hash::from_slice(v.value()));
        Ok((applied, hash))
    }

    /// A consistent snapshot for reading.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let txn = self.db.begin_read().map_err(storage)?;
        let applied = {
            let meta = txn.open_table(META).map_err(storage)?;
            let applied = meta.get("applied").map_err(storage)?;
            applied
                .map(|v| u64::from_le_bytes(v.value().try_into().unwrap_or([0; 8])))
                .unwrap_or(0)
        };
        Ok(Snapshot {
            txn: Arc::new(txn),
            layers: Vec::new(),
            applied,
        })
    }

    /// Starts the committer's batch write.
    pub fn writer(&self) -> Result<StateWriter> {
        Ok(StateWriter {
            txn: self.db.begin_write().map_err(storage)?,
        })
    }
}

/// A read-only snapshot of derived state: a redb read transaction plus the layers committed
/// after it (oldest first). Cheap to clone.
#[derive(Clone)]
pub struct Snapshot {
    txn: Arc<ReadTransaction>,
    layers: Vec<Arc<Layer>>,
    applied: u64,
}

impl Snapshot {
    /// This snapshot with `layers` on top, reflecting blocks `0..applied`.
    pub fn with_layers(&self, layers: Vec<Arc<Layer>>, applied: u64) -> Snapshot {
        Snapshot {
            txn: Arc::clone(&self.txn),
            layers,
            applied,
        }
    }

    /// Blocks applied (= next sequence number to apply).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The catalog as of this snapshot (layers never hold catalog changes).
    pub fn catalog(&self) -> Result<Catalog> {
        let meta = self.txn.open_table(META).map_err(storage)?;
        let stored = meta.get("catalog").map_err(storage)?;
        match stored {
            Some(bytes) => Catalog::from_element(&Element::read_one(bytes.value())?),
            None => Ok(Catalog::default()),
        }
    }

    /// The stored record of a live document, as owned bytes.
    pub fn document(&self, table_id: &str, document_id: &str) -> Result<Option<Vec<u8>>> {
        let fingerprint = layer::Fingerprint::of(table_id, document_id);
        if let Some(found) = self
            .layers
            .iter()
            .rev()
            .find_map(|l| l.document(fingerprint, table_id, document_id))
        {
            return Ok(found.map(<[u8]>::to_vec));
        }
        let docs = self.txn.open_table(DOCS).map_err(storage)?;
        let found = docs.get((table_id, document_id)).map_err(storage)?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    /// Visits every live document of a table in id order; stops when `visit` returns false.
    pub fn scan(
        &self,
        table_id: &str,
        visit: &mut dyn FnMut(&str, Record<'_>) -> Result<bool>,
    ) -> Result<()> {
        // Newer layers overwrite older ones; `None` marks a deletion.
        let mut overlay = std::collections::BTreeMap::new();
        for layer in &self.layers {
            layer.documents_of(table_id, &mut overlay);
        }
        let mut overlay = overlay.into_iter().peekable();
        let docs = self.txn.open_table(DOCS).map_err(storage)?;
        for entry in docs
            .range((table_id, "")..(table_id, ID_UPPER_BOUND))
            .map_err(storage)?
        {
            let (key, value) = entry.map_err(storage)?;
            let (_, document_id) = key.value();
            // Overlay documents up to this id come first; one with this id replaces it.
            let mut replaced = false;
            while let Some((id, record)) = overlay.next_if(|(id, _)| *id <= document_id) {
                replaced = id == document_id;
                if let Some(bytes) = record {
                    if !visit(id, Record::decode(bytes)?)? {
                        return Ok(());
                    }
                }
            }
            if !replaced && !visit(document_id, Record::decode(value.value())?)? {
                return Ok(());
            }
        }
        for (id, record) in overlay {
            if let Some(bytes) = record {
                if !visit(id, Record::decode(bytes)?)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ids of documents whose indexed `field` has the key `key`, in id order.
    pub fn index_lookup(&self, table_id: &str, field: &str, key: &[u8]) -> Result<Vec<String>> {
        let index = self.txn.open_table(INDEX).map_err(storage)?;
        let mut ids = std::collections::BTreeSet::new();
        for entry in index
            .range((table_id, field, key, "")..(table_id, field, key, ID_UPPER_BOUND))
            .map_err(storage)?
        {
            let (k, _) = entry.map_err(storage)?;
            ids.insert(k.value().3.to_owned());
        }
        for layer in &self.layers {
            layer.apply_index_entries(table_id, field, key, &mut ids);
        }
        Ok(ids.into_iter().collect())
    }

    /// Visits the history of a table (or of one document) ordered by document id then version.
    pub fn history(
        &self,
        table_id: &str,
        document_id: Option<&str>,
        visit: &mut dyn FnMut(&str, Record<'_>) -> Result<bool>,
    ) -> Result<()> {
        // Revisions are written once: a layer's never repeat the base's or another layer's.
        let mut overlay = std::collections::BTreeMap::new();
        for layer in &self.layers {
            layer.history_of(table_id, document_id, &mut overlay);
        }
        let mut overlay = overlay.into_iter().peekable();
        let history = self.txn.open_table(HISTORY).map_err(storage)?;
        let range = match document_id {
            Some(id) => history.range((table_id, id, 0u64)..=(table_id, id, u64::MAX)),
            None => history.range((table_id, "", 0u64)..(table_id, ID_UPPER_BOUND, 0u64)),
        }
        .map_err(storage)?;
        for entry in range {
            let (key, value) = entry.map_err(storage)?;
            let (_, id, version) = key.value();
            while let Some(((layer_id, _), bytes)) = overlay.next_if(|(k, _)| *k < (id, version)) {
                if !visit(layer_id, Record::decode(bytes)?)? {
                    return Ok(());
                }
            }
            if !visit(id, Record::decode(value.value())?)? {
                return Ok(());
            }
        }
        for ((id, _), bytes) in overlay {
            if !visit(id, Record::decode(bytes)?)? {
                break;
            }
        }
        Ok(())
    }
}

/// What applying one revision changed, for OCC: the index keys it removed or added.
pub type TouchedKeys = Vec<(String, Vec<u8>)>;

/// One indexed field whose key a revision changes.
pub struct IndexChange {
    pub field: String,
    pub removed: Option<Vec<u8>>,
    pub added: Option<Vec<u8>>,
}

/// The index entries a revision of `table_id` changes, from the data it replaces (`old`) to
/// its data (`new`, `None` for a deletion).
pub fn index_changes(
    catalog: &Catalog,
    table_id: &str,
    old: Option<&Element>,
    new: Option<&Element>,
) -> Vec<IndexChange> {
    let Some(table) = catalog.by_id(table_id) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for index in &table.indexes {
        let field = &index.field;
        let removed = old.and_then(|d| field_key(d, field));
        let added = new.and_then(|d| field_key(d, field));
        if removed != added {
            changes.push(IndexChange {
                field: field.clone(),
                removed,
                added,
            });
        }
    }
    changes
}

/// The keys of `changes`, for OCC.
pub fn touched_keys(changes: Vec<IndexChange>) -> TouchedKeys {
    let mut touched = Vec::new();
    for change in changes {
        for key in [change.removed, change.added].into_iter().flatten() {
            touched.push((change.field.clone(), key));
        }
    }
    touched
}

/// One revision being applied to derived state.
pub struct AppliedRevision<'a> {
    pub table_id: &'a str,
    pub document_id: &'a str,
    pub data: Option<&'a Element>,
    /// The data it replaces when known (`Some(None)`: a new document); `None` when unknown
    /// (replay), and then it is read from derived state.
    pub previous: Option<Option<&'a Element>>,
    pub record: Record<'a>,
}

/// The committer's write transaction over derived state.
pub struct StateWriter {
    txn: WriteTransaction,
}

/// Where the committer applies blocks: redb directly ([`StateWriter`]), or a [`Layer`].
pub trait StateSink {
    /// Applies one revision of `table` (whose indexes are in `catalog`); returns the index keys
    /// (field, key) it removed or added.
    fn apply_revision(
        &mut self,
        catalog: &Catalog,
        revision: &AppliedRevision<'_>,
    ) -> Result<TouchedKeys>;

    /// Builds or removes index entries for a catalog change (`catalog` is the state after it).
    fn apply_catalog_change(
        &mut self,
        catalog: &Catalog,
        change: &CatalogChange,
        before: &Catalog,
    ) -> Result<()>;
}

impl StateSink for StateWriter {
    fn apply_revision(
        &mut self,
        catalog: &Catalog,
        revision: &AppliedRevision<'_>,
    ) -> Result<TouchedKeys> {
        let (table_id, document_id) = (revision.table_id, revision.document_id);
        let has_indexes = catalog
            .by_id(table_id)
            .is_some_and(|t| !t.indexes.is_empty());
        let mut docs = self.txn.open_table(DOCS).map_err(storage)?;
        let mut changes = Vec::new();
        if has_indexes {
            // The replaced data: known from the transaction, or read back (replay).
            let read_back;
            let old_data = match revision.previous {
                Some(previous) => previous,
                None => {
                    read_back = match docs.get((table_id, document_id)).map_err(storage)? {
                        Some(bytes) => Record::decode(bytes.value())?.element()?,
                        None => None,
                    };
                    read_back.as_ref()
                }
            };
            changes = index_changes(catalog, table_id, old_data, revision.data);
            let mut index = self.txn.open_table(INDEX).map_err(storage)?;
            for change in &changes {
                let field = change.field.as_str();
                if let Some(key) = &change.removed {
                    index
                        .remove((table_id, field, key.as_slice(), document_id))
                        .map_err(storage)?;
                }
                if let Some(key) = &change.added {
                    index
                        .insert((table_id, field, key.as_slice(), document_id), ())
                        .map_err(storage)?;
                }
            }
        }
        let encoded = revision.record.encode();
        if revision.record.deleted {
            docs.remove((table_id, document_id)).map_err(storage)?;
        } else {
            docs.insert((table_id, document_id), encoded.as_slice())
                .map_err(storage)?;
        }
        let mut history = self.txn.open_table(HISTORY).map_err(storage)?;
        history
            .insert(
                (table_id, document_id, revision.record.version),
                encoded.as_slice(),
            )
            .map_err(storage)?;
        Ok(touched_keys(changes))
    }

    fn apply_catalog_change(
        &mut self,
        catalog: &Catalog,
        change: &CatalogChange,
        before: &Catalog,
    ) -> Result<()> {
        match change {
            CatalogChange::CreateIndex {
                table_id, field, ..
            } => {
                let docs = self.txn.open_table(DOCS).map_err(storage)?;
                let mut index = self.txn.open_table(INDEX).map_err(storage)?;
                for entry in docs
                    .range((table_id.as_str(), "")..(table_id.as_str(), ID_UPPER_BOUND))
                    .map_err(storage)?
                {
                    let (key, value) = entry.map_err(storage)?;
                    let (_, document_id) = key.value();
                    let data = Element::read_one(Record::decode(value.value())?.data)?;
                    if let Some(k) = field_key(&data, field) {
                        index
                            .insert(
                                (table_id.as_str(), field.as_str(), k.as_slice(), document_id),
                                (),
                            )
                            .map_err(storage)?;
                    }
                }
            }
            CatalogChange::DropIndex { table_id, index_id } => {
                let field = before
                    .by_id(table_id)
                    .and_then(|t| t.indexes.iter().find(|i| &i.index_id == index_id))
                    .map(|i| i.field.clone());
                if let Some(field) = field {
                    let mut index = self.txn.open_table(INDEX).map_err(storage)?;
                    let lower: (&str, &str, &[u8], &str) =
                        (table_id.as_str(), field.as_str(), &[], "");
                    let doomed: Vec<(Vec<u8>, String)> = index
                        .range(lower..)
                        .map_err(storage)?
                        .map_while(|e| {
                            let (k, _) = e.ok()?;
                            let (t, f, key, id) = k.value();
                            (t == table_id && f == field).then(|| (key.to_vec(), id.to_owned()))
                        })
                        .collect();
                    for (key, id) in doomed {
                        index
                            .remove((
                                table_id.as_str(),
                                field.as_str(),
                                key.as_slice(),
                                id.as_str(),
                            ))
                            .map_err(storage)?;
                    }
                }
            }
            CatalogChange::RedactRevision(request) => self.redact(request)?,
            _ => {}
        }
        let mut meta = self.txn.open_table(META).map_err(storage)?;
        let catalog = catalog.to_element().encode_as(ion_rs::v1_0::Binary)?;
        meta.insert("catalog", catalog.as_slice())
            .map_err(storage)?;
        Ok(())
    }
}

impl StateWriter {
    /// Replaces the stored revision's data by its Ion hash and records the redaction as
    /// pending. A revision already redacted (replay of a journal whose frame was erased) is
    /// left as it is.
    fn redact(&mut self, request: &RedactionRequest) -> Result<()> {
        let key = (
            request.table_id.as_str(),
            request.document_id.as_str(),
            request.version,
        );
        let mut history = self.txn.open_table(HISTORY).map_err(storage)?;
        let stored = history
            .get(key)
            .map_err(storage)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| {
                LedgerError::Storage(format!(
                    "redaction of {}/{} version {}, a revision derived state does not hold",
                    request.table_id, request.document_id, request.version
                ))
            })?;
        let record = Record::decode(&stored)?;
        let Some(data) = record.element()? else {
            return Ok(());
        };
        let data_hash = quill_verify::ion_hash(&data);
        history
            .insert(key, record.redact(&data_hash).encode().as_slice())
            .map_err(storage)?;
        let mut pending = self.txn.open_table(PENDING_REDACTIONS).map_err(storage)?;
        pending
            .insert(key, request.block_address.sequence_no)
            .map_err(storage)?;
        Ok(())
    }

    /// Writes the changes of layers (oldest first) to redb.
    pub fn write_layers(&mut self, layers: &[Arc<Layer>]) -> Result<()> {
        if layers.is_empty() {
            return Ok(());
        }
        let mut docs = self.txn.open_table(DOCS).map_err(storage)?;
        let mut history = self.txn.open_table(HISTORY).map_err(storage)?;
        let mut index = self.txn.open_table(INDEX).map_err(storage)?;
        for layer in layers {
            layer.write_to(&mut docs, &mut history, &mut index)?;
        }
        Ok(())
    }

    /// Records that blocks `0..applied` are reflected, the last of them hashing to
    /// `last_hash`.
    pub fn set_applied(&mut self, applied: u64, last_hash: Option<Hash>) -> Result<()> {
        let mut meta = self.txn.open_table(META).map_err(storage)?;
        meta.insert("applied", applied.to_le_bytes().as_slice())
            .map_err(storage)?;
        match last_hash {
            Some(hash) => meta.insert("applied_hash", hash.as_bytes().as_slice()),
            None => meta.remove("applied_hash"),
        }
        .map_err(storage)?;
        Ok(())
    }

    /// Makes the batch visible; `durable` also makes it survive a crash.
    pub fn commit(mut self, durable: bool) -> Result<()> {
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.txn.set_durability(durability).map_err(storage)?;
        self.txn.commit().map_err(storage)
    }
}

/// The index key of a document's top-level `field`: `None` when the field is absent or its
/// value can equal nothing (see [`equality_key`]). A repeated field is indexed by its first
/// occurrence, the one a path `t.field` reads.
pub fn field_key(data: &Element, field: &str) -> Option<Vec<u8>> {
    equality_key(data.as_struct()?.get(field)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let r = Record {
            deleted: false,
            redacted: false,
            version: 3,
            sequence_no: 100,
            time_millis: 1_568_662_625_344,
            hash: Hash([7; 32]),
            tx_id: "FnQeJBAicTX0Ah32ZnVtSX",
            data: b"\xe0\x01\x00\xea",
        };
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        assert!(Record::decode(&bytes[..10]).is_err());
    }
}
