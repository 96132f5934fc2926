//! Optimistic concurrency control: what a transaction read, what recent commits wrote, and
//! the check that decides serializability at commit.
//!
//! A transaction reads a snapshot taken at its start (`start` = number of blocks then
//! applied). At commit it conflicts if any block with sequence number ≥ `start` wrote
//! something it read: a document it read by id, an index key it looked up, any document of a
//! table it scanned (this catches phantoms), or the catalog entry of a table it used.
//!
//! A document read is recorded by id, not by version: every revision a block writes is in its
//! write set, and the log keeps every block at or after the start of each running
//! transaction, so "a later block wrote document d" is exactly "d's version changed since the
//! snapshot". Transactions that wrote nothing are checked the same way, against published
//! blocks only (see `LedgerInner::validate_read_only`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// What a transaction read.
#[derive(Debug, Default, Clone)]
pub struct ReadSet {
    /// (table id, document id) read by id.
    pub documents: HashSet<(String, String)>,
    /// (table id, field, key) looked up through an index.
    pub index_keys: HashSet<(String, String, Vec<u8>)>,
    /// Tables read whole (scans, committed view, history).
    pub tables: HashSet<String>,
    /// Tables whose catalog entry the transaction depends on (DDL, writes).
    pub catalog_tables: HashSet<String>,
    /// The transaction listed the whole catalog (or made DDL that depends on all of it).
    pub whole_catalog: bool,
}

impl ReadSet {
    /// Whether nothing was read (then nothing can conflict).
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
            && self.index_keys.is_empty()
            && self.tables.is_empty()
            && self.catalog_tables.is_empty()
            && !self.whole_catalog
    }
}

/// What one committed block wrote, kept while a transaction that started before it may
/// still commit.
#[derive(Debug, Default, Clone)]
pub struct WriteSet {
    /// (table id, document id).
    pub documents: Vec<(String, String)>,
    /// (table id, field, key) removed or added in an index.
    pub index_keys: Vec<(String, String, Vec<u8>)>,
    /// Tables whose catalog entry changed.
    pub catalog_tables: Vec<String>,
}

impl WriteSet {
    /// Describes the first thing `reads` read that this write set changed.
    pub fn conflict_with(&self, reads: &ReadSet) -> Option<String> {
        for written in &self.documents {
            let (table, doc) = written;
            if reads.tables.contains(table) {
                return Some(format!(
                    "table {table} was scanned and document {doc} changed"
                ));
            }
            if reads.documents.contains(written) {
                return Some(format!("document {doc} changed"));
            }
        }
        for key in &self.index_keys {
            if reads.index_keys.contains(key) {
                return Some(format!("index key on {}.{} changed", key.0, key.1));
            }
        }
        for table in &self.catalog_tables {
            if reads.whole_catalog
                || reads.catalog_tables.contains(table)
                || reads.tables.contains(table)
            {
                return Some(format!("table {table} was altered"));
            }
        }
        None
    }
}

/// Write sets of recent blocks, pruned once no running transaction can conflict with them.
///
/// The set of running transactions has its own lock, so beginning and ending a transaction
/// only reads the rest of the shared state (see `commit::Shared`).
#[derive(Debug, Default)]
pub struct ConflictLog {
    /// Sequence number of `entries[0]`.
    first: u64,
    /// Consecutive blocks from `first`. Bounded: pruned below the oldest running transaction's
    /// start, and every transaction expires after the transaction timeout.
    entries: VecDeque<Arc<WriteSet>>,
    /// Start positions of running transactions (multiset: start → count).
    running: Mutex<BTreeMap<u64, usize>>,
}

impl ConflictLog {
    /// A log whose next block is `next`.
    pub fn new(next: u64) -> ConflictLog {
        ConflictLog {
            first: next,
            entries: VecDeque::new(),
            running: Mutex::new(BTreeMap::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, usize>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a transaction that starts reading at block count `start`. The caller holds
    /// the shared state (at least for reading), so no block ≥ `start` can be pruned meanwhile.
    pub fn begin(&self, start: u64) {
        *self.running().entry(start).or_default() += 1;
    }

    /// Unregisters it (commit, abort or drop). Its entries are pruned by the next `push`.
    pub fn end(&self, start: u64) {
        let mut running = self.running();
        if let Some(count) = running.get_mut(&start) {
            *count -= 1;
            if *count == 0 {
                running.remove(&start);
            }
        }
    }

    /// Records the writes of block `sequence_no` (blocks arrive in order), dropping entries
    /// no running transaction can conflict with.
    pub fn push(&mut self, sequence_no: u64, writes: Arc<WriteSet>) {
        let oldest = self.running().keys().next().copied();
        let keep_from = oldest.unwrap_or(sequence_no + 1);
        while self.first < keep_from && !self.entries.is_empty() {
            self.entries.pop_front();
            self.first += 1;
        }
        if self.entries.is_empty() {
            self.first = sequence_no;
        }
        assert_eq!(
            sequence_no,
            self.first + self.entries.len() as u64,
            "blocks are logged in order"
        );
        if oldest.is_some() {
            self.entries.push_back(writes);
        } else {
            // Nobody can conflict with it: keep nothing.
            self.first = sequence_no + 1;
        }
    }

    /// The reason a transaction that started at `start` with `reads` conflicts, if it does.
    pub fn check(&self, start: u64, reads: &ReadSet) -> Option<String> {
        // A transaction registered at `start` keeps every entry ≥ start alive.
        let skip = start.saturating_sub(self.first) as usize;
        self.entries
            .iter()
            .skip(skip)
            .find_map(|w| w.conflict_with(reads))
    }

    /// Entries currently kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_write(table: &str, doc: &str) -> WriteSet {
        WriteSet {
            documents: vec![(table.into(), doc.into())],
            ..Default::default()
        }
    }

    #[test]
    fn conflicts_only_with_later_writes_to_what_was_read() {
        let mut log = ConflictLog::new(5);
        log.begin(5);
        log.push(5, Arc::new(doc_write("T", "a")));
        let mut reads = ReadSet::default();
        reads.documents.insert(("T".into(), "b".into()));
        assert!(log.check(5, &reads).is_none());
        reads.documents.insert(("T".into(), "a".into()));
        assert!(log.check(5, &reads).is_some());
        assert!(
            log.check(6, &reads).is_none(),
            "a transaction that started after block 5 saw it"
        );
        let mut scan = ReadSet::default();
        scan.tables.insert("T".into());
        assert!(
            log.check(5, &scan).is_some(),
            "phantom: a scan conflicts with any write to the table"
        );
        log.end(5);
        log.push(6, Arc::new(WriteSet::default()));
        assert_eq!(log.len(), 0, "pruned when nobody runs");
    }
}
