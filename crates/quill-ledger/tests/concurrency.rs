//! Serializability under concurrency: invariants hold, lost updates and phantoms are impossible.
//! On both backends.

mod common;

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use common::{on_both_backends, Backend, Home};
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError};

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

on_both_backends!(
    bank_transfers_keep_the_total_constant,
    concurrent_increments_lose_no_update,
    a_scan_conflicts_with_a_concurrent_insert_phantom,
    an_index_lookup_reads_its_key_not_the_whole_table,
    concurrent_committers_share_fsyncs_and_all_land,
    indexes_stay_exact_under_concurrent_writes_flushes_and_ddl,
);

fn balance(doc: &Element) -> i64 {
    doc.as_struct()
        .unwrap()
        .get("balance")
        .unwrap()
        .as_i64()
        .unwrap()
}

fn bank_transfers_keep_the_total_constant(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("bank");
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

fn concurrent_increments_lose_no_update(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("counter");
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

fn a_scan_conflicts_with_a_concurrent_insert_phantom(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("phantom");
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

fn an_index_lookup_reads_its_key_not_the_whole_table(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("idx");
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

fn concurrent_committers_share_fsyncs_and_all_land(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("group");
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

/// Writers update an indexed table through many layer flushes while another thread creates
/// and drops an index (DDL is written to redb directly, after the running flush). Afterwards,
/// and after a reopen, every index answers exactly what a scan of the table says.
fn indexes_stay_exact_under_concurrent_writes_flushes_and_ddl(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("ddl");
    let ids: Vec<String> = ledger
        .transact(|tx| {
            tx.create_table("T", None)?;
            tx.create_index("T", "a")?;
            (0..16)
                .map(|i| tx.insert("T", ion(&format!("{{a: {}, b: {}}}", i % 4, i % 3))))
                .collect()
        })
        .unwrap();
    let ids = Arc::new(ids);
    // Successful updates per document: its final version.
    let updates: Arc<Vec<AtomicU64>> = Arc::new((0..16).map(|_| AtomicU64::new(0)).collect());
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let (ledger, ids, updates) = (ledger.clone(), Arc::clone(&ids), Arc::clone(&updates));
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    let n = ((t * 7 + i * 5) % ids.len() as u64) as usize;
                    let id = &ids[n];
                    let doc = ion(&format!("{{a: {}, b: {}}}", (t + i) % 4, (t * i) % 3));
                    // Heavy contention on 16 documents plus DDL on their table: a transaction
                    // may still conflict after transact's retries; that is OCC working.
                    match ledger.transact(|tx| tx.update("T", id, doc.clone())) {
                        Ok(()) => {
                            updates[n].fetch_add(1, AtomicOrdering::SeqCst);
                        }
                        Err(e) if e.is_occ_conflict() => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let index_on_b = |ledger: &Ledger| {
        let table = ledger.transact(|tx| tx.table("T")).unwrap();
        table
            .indexes
            .into_iter()
            .find(|i| i.field == "b")
            .unwrap()
            .index_id
    };
    for _ in 0..3 {
        ledger.transact(|tx| tx.create_index("T", "b")).unwrap();
        let index_id = index_on_b(&ledger);
        std::thread::sleep(std::time::Duration::from_millis(5));
        ledger.transact(|tx| tx.drop_index("T", &index_id)).unwrap();
    }
    ledger.transact(|tx| tx.create_index("T", "b")).unwrap();
    writers.into_iter().for_each(|w| w.join().unwrap());

    let check = |ledger: &Ledger| {
        let scanned = common::scan_checking_indexes(ledger, "T", &["a", "b"], 0..4);
        assert_eq!(scanned.len(), 16);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(
                scanned[id].0,
                updates[n].load(AtomicOrdering::SeqCst),
                "every acknowledged update is visible"
            );
        }
    };
    check(&ledger);
    drop(ledger);
    let ledger = home.open_default("ddl");
    check(&ledger);
}
