//! Serializability under concurrency: invariants hold, lost updates and phantoms are impossible.

use std::sync::Arc;

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError, LedgerOptions};

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

fn balance(doc: &Element) -> i64 {
    doc.as_struct()
        .unwrap()
        .get("balance")
        .unwrap()
        .as_i64()
        .unwrap()
}

#[test]
fn bank_transfers_keep_the_total_constant() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "bank", LedgerOptions::default()).unwrap();
    const ACCOUNTS: usize = 6;
    let ids: Vec<String> = ledger
        .transact(|tx| {
            tx.create_table("Account", None)?;
            (0..ACCOUNTS)
                .map(|_| tx.insert("Account", ion("{balance: 100}")))
                .collect()
        })
        .unwrap();
    let ids = Arc::new(ids);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (ledger, ids) = (ledger.clone(), Arc::clone(&ids));
            std::thread::spawn(move || {
                for i in 0..40 {
                    let from = &ids[(t + i) % ACCOUNTS];
                    let to = &ids[(t * 3 + i * 7 + 1) % ACCOUNTS];
                    if from == to {
                        continue;
                    }
                    let moved = ledger.transact(|tx| {
                        let a = balance(&tx.get("Account", from)?.unwrap().data);
                        let b = balance(&tx.get("Account", to)?.unwrap().data);
                        tx.update("Account", from, ion(&format!("{{balance: {}}}", a - 7)))?;
                        tx.update("Account", to, ion(&format!("{{balance: {}}}", b + 7)))
                    });
                    // `transact` retries conflicts 10 times; under this contention it may give up.
                    assert!(
                        moved.is_ok() || moved.as_ref().unwrap_err().is_occ_conflict(),
                        "{moved:?}"
                    );
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let total: i64 = ledger
        .transact(|tx| {
            let mut total = 0;
            tx.scan("Account", &mut |d| {
                total += balance(&d.decode()?);
                Ok(true)
            })?;
            Ok(total)
        })
        .unwrap();
    assert_eq!(total, 100 * ACCOUNTS as i64);
}

#[test]
fn concurrent_increments_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "counter", LedgerOptions::default()).unwrap();
    let id = ledger
        .transact(|tx| {
            tx.create_table("C", None)?;
            tx.insert("C", ion("{balance: 0}"))
        })
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (ledger, id) = (ledger.clone(), id.clone());
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 25 {
                    let mut tx = ledger.begin().unwrap();
                    let n = balance(&tx.get("C", &id).unwrap().unwrap().data);
                    tx.update("C", &id, ion(&format!("{{balance: {}}}", n + 1)))
                        .unwrap();
                    match tx.commit() {
                        Ok(_) => done += 1,
                        Err(e) => assert!(e.is_occ_conflict(), "{e}"),
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let doc = ledger.transact(|tx| tx.get("C", &id)).unwrap().unwrap();
    assert_eq!(balance(&doc.data), 100);
    assert_eq!(doc.version, 100);
}

#[test]
fn a_scan_conflicts_with_a_concurrent_insert_phantom() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "phantom", LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| {
            tx.create_table("Shift", None)?;
            tx.create_table("Log", None)?;
            tx.insert("Shift", ion("{doctor: \"a\", on_call: true}"))
        })
        .unwrap();
    // tx1 checks that at least one doctor is on call (a scan), then writes elsewhere.
    let mut tx1 = ledger.begin().unwrap();
    let mut on_call = 0;
    tx1.scan("Shift", &mut |_| {
        on_call += 1;
        Ok(true)
    })
    .unwrap();
    tx1.insert("Log", ion("{checked: 1}")).unwrap();
    // tx2 inserts a row that tx1's scan would have seen, and commits first.
    ledger
        .transact(|tx| tx.insert("Shift", ion("{doctor: \"b\", on_call: true}")))
        .unwrap();
    assert!(matches!(tx1.commit(), Err(LedgerError::OccConflict { .. })));
}

#[test]
fn an_index_lookup_reads_only_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "idx", LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| {
            tx.create_table("V", None)?;
            tx.create_index("V", "VIN")?;
            tx.insert("V", ion("{VIN: \"A\"}"))
        })
        .unwrap();
    let mut reader = ledger.begin().unwrap();
    assert_eq!(
        reader
            .index_lookup("V", "VIN", &ion("\"A\""))
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    reader.insert("V", ion("{VIN: \"C\"}")).unwrap();
    // Another key: no conflict.
    ledger
        .transact(|tx| tx.insert("V", ion("{VIN: \"B\"}")))
        .unwrap();
    reader.commit().unwrap();
    // The same key (a phantom for the lookup): conflict.
    let mut reader = ledger.begin().unwrap();
    assert_eq!(
        reader
            .index_lookup("V", "VIN", &ion("\"A\""))
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    reader.insert("V", ion("{VIN: \"D\"}")).unwrap();
    ledger
        .transact(|tx| tx.insert("V", ion("{VIN: \"A\"}")))
        .unwrap();
    assert!(reader.commit().unwrap_err().is_occ_conflict());
}

#[test]
fn concurrent_committers_share_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "group", LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| tx.create_table("T", None).map(|_| ()))
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    ledger
                        .transact(|tx| tx.insert("T", ion(&format!("{{t: {t}, i: {i}}}"))))
                        .unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(ledger.digest().tip.sequence_no, 1 + 160);
    assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), 162);
}
