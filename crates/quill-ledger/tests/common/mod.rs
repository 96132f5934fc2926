//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::ops::Range;

use ion_rs::Element;
use quill_ledger::Ledger;

/// Scans `table`, then checks that the index on each of `fields` answers every integer key in
/// `keys` with exactly the scanned documents holding that key. Returns the scan by document
/// id: (version, data).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn scan_checking_indexes(
    ledger: &Ledger,
    table: &str,
    fields: &[&str],
    keys: Range<i64>,
) -> BTreeMap<String, (u64, Element)> {
    let mut scanned = BTreeMap::new();
    ledger
        .transact(|tx| {
            scanned.clear();
            tx.scan(table, &mut |doc| {
                let data = Element::read_one(doc.ion).unwrap();
                scanned.insert(doc.id.to_owned(), (doc.version, data));
                Ok(true)
            })
        })
        .unwrap();
    for field in fields {
        for value in keys.clone() {
            let key = Element::int(value);
            let mut found: Vec<String> = ledger
                .transact(|tx| tx.index_lookup(table, field, &key))
                .unwrap()
                .expect("the field is indexed")
                .into_iter()
                .map(|d| d.id)
                .collect();
            found.sort();
            let expected: Vec<String> = scanned
                .iter()
                .filter(|(_, (_, d))| d.as_struct().unwrap().get(field) == Some(&key))
                .map(|(id, _)| id.clone())
                .collect();
            assert_eq!(found, expected, "{field} = {value}");
        }
    }
    scanned
}

/// A PostgreSQL database for the tests of the PostgreSQL backend: one throwaway server per
/// test binary, started on loopback by `quill-pgtest`.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn postgres_url() -> String {
    quill_pgtest::PgServer::shared()
        .expect("start PostgreSQL")
        .url()
}
