//! `ReadIOs`/`WriteIOs`: the counters count what was read and what a commit writes, the same
//! on both backends (they count documents and index entries, not the storage's own I/O).

mod common;

use common::{on_both_backends, Backend, Home};
use ion_rs::Element;

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

on_both_backends!(reads_and_writes_are_counted);

fn reads_and_writes_are_counted(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("io");
    let ids = ledger
        .transact(|tx| {
            tx.create_table("Car", None)?;
            tx.create_index("Car", "VIN")?;
            let mut ids = Vec::new();
            for vin in ["a", "b", "c"] {
                ids.push(tx.insert("Car", ion(&format!("{{VIN: \"{vin}\"}}")))?);
            }
            // Three revisions, each with one entry in the VIN index.
            assert_eq!(tx.write_ios(), 6);
            assert_eq!(tx.read_ios(), 0);
            Ok(ids)
        })
        .unwrap();
    let mut tx = ledger.begin().unwrap();
    let mut visited = 0;
    tx.scan("Car", &mut |_| {
        visited += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!((visited, tx.read_ios()), (3, 3));
    let found = tx
        .index_lookup("Car", "VIN", &ion("\"b\""))
        .unwrap()
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(tx.read_ios(), 3 + 2, "one probe and one document");
    tx.get("Car", &ids[0]).unwrap().unwrap();
    assert_eq!(tx.read_ios(), 6);
    let table_id = tx.table("Car").unwrap().table_id;
    let history = tx.history(&table_id, None, None, None).unwrap();
    assert_eq!(tx.read_ios(), 6 + history.len() as u64);
    assert_eq!(tx.write_ios(), 0, "nothing written yet");
    tx.delete("Car", &ids[1]).unwrap();
    assert_eq!(tx.write_ios(), 2);
}
