//! A batch's writes to derived state, held in memory until a later batch writes them to redb.
//!
//! Invariant: a layer holds only document, history and index changes (never catalog changes:
//! a batch with DDL is written to redb directly), and a [`Snapshot`](super::Snapshot) stacks
//! layers on the redb commit they follow, so no layer repeats anything its base holds.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hash as _, Hasher};
use std::sync::Arc;

use crate::catalog::{Catalog, CatalogChange};
use crate::error::{LedgerError, Result};

use super::{
    index_changes, storage, touched_keys, AppliedRevision, DocsTable, HistoryTable, IndexTable,
    StateSink, TouchedKeys,
};

/// document id → record bytes of the current revision (`None`: deleted).
type Documents = BTreeMap<String, Option<Arc<[u8]>>>;
/// document id → version → record bytes.
type Revisions = BTreeMap<String, BTreeMap<u64, Arc<[u8]>>>;
/// field → key → document id → present (`false`: the entry was removed).
type IndexEntries = BTreeMap<String, BTreeMap<Vec<u8>, BTreeMap<String, bool>>>;

/// A document's fingerprint: a hash of (table id, document id).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64);

impl Fingerprint {
    pub fn of(table_id: &str, document_id: &str) -> Fingerprint {
        let mut hasher = std::hash::DefaultHasher::new();
        table_id.hash(&mut hasher);
        document_id.hash(&mut hasher);
        Fingerprint(hasher.finish())
    }
}

/// Hashes a [`Fingerprint`] as itself: it is a hash already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (by `Fingerprint`); fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The derived-state changes of one batch, by table id.
#[derive(Default)]
pub struct Layer {
    /// Fingerprints of the documents in `documents`: a point read passes over a layer that
    /// lacks its document with one probe (reads look through up to 2 × `LAYERS_MAX` layers).
    fingerprints: HashSet<Fingerprint, BuildHasherDefault<Prehashed>>,
    documents: BTreeMap<String, Documents>,
    history: BTreeMap<String, Revisions>,
    index: BTreeMap<String, IndexEntries>,
    revisions: usize,
}

impl Layer {
    /// Revisions in this layer.
    pub fn revisions(&self) -> usize {
        self.revisions
    }

    /// This layer's version of a document: `Some(None)` when it deletes it, `None` when it
    /// does not touch it.
    pub fn document(
        &self,
        fingerprint: Fingerprint,
        table_id: &str,
        document_id: &str,
    ) -> Option<Option<&[u8]>> {
        if !self.fingerprints.contains(&fingerprint) {
            return None;
        }
        let record = self.documents.get(table_id)?.get(document_id)?;
        Some(record.as_deref())
    }

    /// Adds this layer's documents of a table to `overlay`, replacing older versions.
    pub fn documents_of<'a>(
        &'a self,
        table_id: &str,
        overlay: &mut BTreeMap<&'a str, Option<&'a [u8]>>,
    ) {
        for (id, record) in self.documents.get(table_id).into_iter().flatten() {
            overlay.insert(id.as_str(), record.as_deref());
        }
    }

    /// Adds this layer's revisions of a table (or of one document) to `overlay`.
    pub fn history_of<'a>(
        &'a self,
        table_id: &str,
        document_id: Option<&str>,
        overlay: &mut BTreeMap<(&'a str, u64), &'a [u8]>,
    ) {
        let Some(table) = self.history.get(table_id) else {
            return;
        };
        let mut add = |id: &'a String, versions: &'a BTreeMap<u64, Arc<[u8]>>| {
            for (version, record) in versions {
                overlay.insert((id.as_str(), *version), record);
            }
        };
        match document_id {
            Some(id) => {
                if let Some((id, versions)) = table.get_key_value(id) {
                    add(id, versions);
                }
            }
            None => table.iter().for_each(|(id, versions)| add(id, versions)),
        }
    }

    /// Applies this layer's entries for one index key to `ids`.
    pub fn apply_index_entries(
        &self,
        table_id: &str,
        field: &str,
        key: &[u8],
        ids: &mut BTreeSet<String>,
    ) {
        let entries = self
            .index
            .get(table_id)
            .and_then(|fields| fields.get(field))
            .and_then(|keys| keys.get(key));
        for (id, present) in entries.into_iter().flatten() {
            if *present {
                ids.insert(id.clone());
            } else {
                ids.remove(id);
            }
        }
    }

    /// Writes this layer to redb tables.
    pub(super) fn write_to(
        &self,
        docs: &mut DocsTable<'_>,
        history: &mut HistoryTable<'_>,
        index: &mut IndexTable<'_>,
    ) -> Result<()> {
        for (table_id, documents) in &self.documents {
            for (id, record) in documents {
                let key = (table_id.as_str(), id.as_str());
                match record {
                    Some(bytes) => docs.insert(key, &**bytes).map(drop),
                    None => docs.remove(key).map(drop),
                }
                .map_err(storage)?;
            }
        }
        for (table_id, documents) in &self.history {
            for (id, versions) in documents {
                for (version, record) in versions {
                    history
                        .insert((table_id.as_str(), id.as_str(), *version), &**record)
                        .map_err(storage)?;
                }
            }
        }
        for (table_id, fields) in &self.index {
            for (field, keys) in fields {
                for (key, ids) in keys {
                    for (id, present) in ids {
                        let entry = (
                            table_id.as_str(),
                            field.as_str(),
                            key.as_slice(),
                            id.as_str(),
                        );
                        if *present {
                            index.insert(entry, ()).map_err(storage)?;
                        } else {
                            index.remove(entry).map_err(storage)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl StateSink for Layer {
    /// As the state writer does. The committer always knows the data a revision replaces, so
    /// nothing is read.
    fn apply_revision(
        &mut self,
        catalog: &Catalog,
        revision: &AppliedRevision<'_>,
    ) -> Result<TouchedKeys> {
        let (table_id, document_id) = (revision.table_id, revision.document_id);
        let previous = revision.previous.ok_or_else(|| {
            LedgerError::Storage("a layered revision needs the data it replaces".into())
        })?;
        let changes = index_changes(catalog, table_id, previous, revision.data);
        for change in &changes {
            let entries = self
                .index
                .entry(table_id.to_owned())
                .or_default()
                .entry(change.field.clone())
                .or_default();
            // Removal first: a key both removed and added by one revision cannot happen (the
            // change lists only differing keys), and a later revision's entry wins.
            if let Some(key) = &change.removed {
                entries
                    .entry(key.clone())
                    .or_default()
                    .insert(document_id.to_owned(), false);
            }
            if let Some(key) = &change.added {
                entries
                    .entry(key.clone())
                    .or_default()
                    .insert(document_id.to_owned(), true);
            }
        }
        let record: Arc<[u8]> = revision.record.encode().into();
        let current = (!revision.record.deleted).then(|| Arc::clone(&record));
        self.fingerprints
            .insert(Fingerprint::of(table_id, document_id));
        self.documents
            .entry(table_id.to_owned())
            .or_default()
            .insert(document_id.to_owned(), current);
        self.history
            .entry(table_id.to_owned())
            .or_default()
            .entry(document_id.to_owned())
            .or_default()
            .insert(revision.record.version, record);
        self.revisions += 1;
        Ok(touched_keys(changes))
    }

    fn apply_catalog_change(&mut self, _: &Catalog, _: &CatalogChange, _: &Catalog) -> Result<()> {
        Err(LedgerError::Storage(
            "catalog changes are written to redb, never to a layer".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ion_rs::Element;
    use quill_verify::Hash;

    use super::*;
    use crate::limits::Limits;
    use crate::state::{Record, Snapshot, State, StateWriter};

    const TABLES: [&str; 2] = ["tableIndexed0000000000", "tablePlain00000000000"];

    struct XorShift(u64);
    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Everything a snapshot answers about the two tables, in a comparable form.
    fn everything(snapshot: &Snapshot, ids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut show = |what: &str, id: &str, r: Record<'_>| {
            out.push(format!(
                "{what} {id} v{} d{} {:?}",
                r.version, r.deleted, r.data
            ));
            Ok(true)
        };
        for table in TABLES {
            snapshot
                .scan(table, &mut |id, r| show("scan", id, r))
                .unwrap();
            snapshot
                .history(table, None, &mut |id, r| show("history", id, r))
                .unwrap();
            for id in ids {
                snapshot
                    .history(table, Some(id), &mut |id, r| show("one", id, r))
                    .unwrap();
            }
        }
        for table in TABLES {
            // Stopping early sees a prefix of the same order.
            let mut seen = 0;
            snapshot
                .scan(table, &mut |id, _| {
                    seen += 1;
                    out.push(format!("first {id}"));
                    Ok(seen < 3)
                })
                .unwrap();
            for id in ids {
                out.push(format!(
                    "doc {id} {:?}",
                    snapshot.document(table, id).unwrap()
                ));
            }
        }
        for k in 0..4i64 {
            let key = crate::equality::equality_key(&Element::int(k)).unwrap();
            out.push(format!(
                "index {k} {:?}",
                snapshot.index_lookup(TABLES[0], "k", &key).unwrap()
            ));
        }
        out
    }

    /// The same random revisions go to two states: one through layers, written to redb every
    /// few batches as the committer does, and one straight to redb. Every read agrees after
    /// every batch.
    #[test]
    fn layered_reads_match_direct_writes() {
        let dir = tempfile::tempdir().unwrap();
        let direct = State::open(
            &crate::storage::Storage::Os,
            &dir.path().join("direct.redb"),
        )
        .unwrap();
        let layered = State::open(
            &crate::storage::Storage::Os,
            &dir.path().join("layered.redb"),
        )
        .unwrap();
        let mut catalog = Catalog::default();
        let changes = [
            CatalogChange::CreateTable {
                table_id: TABLES[0].into(),
                name: "Indexed".into(),
                tags: None,
            },
            CatalogChange::CreateTable {
                table_id: TABLES[1].into(),
                name: "Plain".into(),
                tags: None,
            },
            CatalogChange::CreateIndex {
                table_id: TABLES[0].into(),
                index_id: "index00000000000000000".into(),
                field: "k".into(),
            },
        ];
        for state in [&direct, &layered] {
            let mut writer = state.writer().unwrap();
            let mut c = Catalog::default();
            for change in &changes {
                let before = c.clone();
                c.apply(change, &Limits::default()).unwrap();
                writer.apply_catalog_change(&c, change, &before).unwrap();
            }
            writer.commit(false).unwrap();
            catalog = c;
        }
        let ids: Vec<String> = (0..10).map(|i| format!("doc{i:019}")).collect();
        let mut current: HashMap<(usize, usize), (u64, Option<Element>)> = HashMap::new();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut base = layered.snapshot().unwrap();
        let mut layers: Vec<Arc<Layer>> = Vec::new();
        for batch in 0..300u64 {
            let mut revisions = Vec::new();
            for _ in 0..=rng.below(4) {
                let (t, d) = (rng.below(2) as usize, rng.below(ids.len() as u64) as usize);
                let (version, previous) = match current.get(&(t, d)) {
                    Some((v, data)) => (v + 1, data.clone()),
                    None => (0, None),
                };
                let data = if previous.is_some() && rng.below(4) == 0 {
                    None
                } else {
                    let doc = Element::struct_builder()
                        .with_field("k", Element::int(rng.below(4) as i64))
                        .with_field("batch", Element::int(batch as i64))
                        .build();
                    Some(Element::from(doc))
                };
                current.insert((t, d), (version, data.clone()));
                revisions.push((t, d, version, previous, data));
            }
            let encoded: Vec<Vec<u8>> = revisions
                .iter()
                .map(|r| match &r.4 {
                    Some(e) => e.encode_as(ion_rs::v1_0::Binary).unwrap(),
                    None => Vec::new(),
                })
                .collect();
            let applied: Vec<AppliedRevision<'_>> = revisions
                .iter()
                .zip(&encoded)
                .map(|((t, d, version, previous, data), bytes)| AppliedRevision {
                    table_id: TABLES[*t],
                    document_id: &ids[*d],
                    data: data.as_ref(),
                    previous: Some(previous.as_ref()),
                    record: Record {
                        deleted: data.is_none(),
                        redacted: false,
                        version: *version,
                        sequence_no: batch,
                        time_millis: 0,
                        hash: Hash([batch as u8; 32]),
                        tx_id: "tx",
                        data: bytes,
                    },
                })
                .collect();
            let write = |writer: &mut StateWriter| {
                for r in &applied {
                    writer.apply_revision(&catalog, r).unwrap();
                }
                writer.set_applied(batch + 1, None).unwrap();
            };
            let mut writer = direct.writer().unwrap();
            write(&mut writer);
            writer.commit(false).unwrap();
            if layers.len() == 4 {
                let mut writer = layered.writer().unwrap();
                writer.write_layers(&layers).unwrap();
                write(&mut writer);
                writer.commit(false).unwrap();
                layers.clear();
                base = layered.snapshot().unwrap();
            } else {
                let mut layer = Layer::default();
                for r in &applied {
                    layer.apply_revision(&catalog, r).unwrap();
                }
                layers.push(Arc::new(layer));
            }
            let through_layers = base.with_layers(layers.clone(), batch + 1);
            let straight = direct.snapshot().unwrap();
            assert_eq!(through_layers.applied(), straight.applied());
            assert_eq!(
                everything(&through_layers, &ids),
                everything(&straight, &ids),
                "after batch {batch}"
            );
        }
    }
}
