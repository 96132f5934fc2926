//! End-to-end behaviour of the ledger engine through its public API, on both backends
//! (`NAME::embedded`, `NAME::postgres`) unless a test says why not.

mod common;

use common::{on_both_backends, Backend, Home};
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError, LedgerOptions, TableStatus};

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

fn new_ledger(backend: Backend) -> (Home, Ledger) {
    let home = Home::new(backend);
    let ledger = home.create_default("test-ledger");
    (home, ledger)
}

on_both_backends!(
    insert_update_delete_and_history,
    blocks_verify_and_proofs_fold_to_every_digest,
    reopen_rebuilds_nothing_and_keeps_everything,
    derived_state_is_rebuilt_from_the_journal,
    ddl_catalog_and_errors,
    limits_are_enforced_with_typed_errors,
    savepoint_rollback_leaves_the_transaction_unchanged,
    expired_transactions_cannot_commit,
    every_ion_type_round_trips_through_commit,
    history_bounds_are_checked,
    indexes_follow_updates_and_deletes_live_and_after_replay,
    deeply_nested_documents_are_refused_not_a_stack_overflow,
    reads_stay_right_across_layer_flushes_and_reopen,
    async_commits_are_batched_checked_and_durable,
    read_limits_stop_long_reads,
);

fn insert_update_delete_and_history(backend: Backend) {
    let (_home, ledger) = new_ledger(backend);
    let id = ledger
        .transact(|tx| {
            tx.create_table("Vehicle", None)?;
            tx.record_statement(
                "INSERT INTO Vehicle ?",
                &[ion("{VIN: \"1N4AL11D75C109151\", Year: 2011}")],
            )?;
            tx.insert("Vehicle", ion("{VIN: \"1N4AL11D75C109151\", Year: 2011}"))
        })
        .unwrap();
    ledger
        .transact(|tx| {
            tx.update(
                "Vehicle",
                &id,
                ion("{VIN: \"1N4AL11D75C109151\", Year: 2012}"),
            )
        })
        .unwrap();
    let doc = ledger
        .transact(|tx| tx.get("Vehicle", &id))
        .unwrap()
        .unwrap();
    assert_eq!(doc.version, 1);
    assert_eq!(doc.data, ion("{VIN: \"1N4AL11D75C109151\", Year: 2012}"));
    ledger.transact(|tx| tx.delete("Vehicle", &id)).unwrap();
    assert!(ledger
        .transact(|tx| tx.get("Vehicle", &id))
        .unwrap()
        .is_none());
    let table_id = ledger.transact(|tx| tx.table("Vehicle")).unwrap().table_id;
    let history = ledger
        .transact(|tx| tx.history(&table_id, None, None, None))
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|r| r.metadata.version)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(
        history[2].data.is_none(),
        "a delete writes a final revision without data"
    );
    for revision in &history {
        let proof = ledger
            .revision_proof(
                revision.block_address.sequence_no,
                &id,
                ledger.digest().tip.sequence_no,
            )
            .unwrap();
        quill_verify::verify_revision(&revision.to_element(), &proof, &ledger.digest().digest)
            .unwrap();
    }
}

/// The hashes `Ledger::block_hashes` reads from the journal, as the full block shows them.
fn block_hashes_of(block: &Element) -> quill_ledger::BlockHashes {
    let field = |name: &str| {
        block
            .as_struct()
            .unwrap()
            .get(name)
            .map(|hash| quill_verify::Hash::from_slice(hash.as_blob().unwrap()).unwrap())
    };
    quill_ledger::BlockHashes {
        hash: field("blockHash").unwrap(),
        entries_hash: field("entriesHash").unwrap(),
        previous_hash: field("previousBlockHash"),
    }
}

fn blocks_verify_and_proofs_fold_to_every_digest(backend: Backend) {
    let (_home, ledger) = new_ledger(backend);
    ledger
        .transact(|tx| tx.create_table("T", None).map(|_| ()))
        .unwrap();
    for i in 0..20 {
        ledger
            .transact(|tx| tx.insert("T", ion(&format!("{{n: {i}}}"))))
            .unwrap();
    }
    let digest = ledger.digest();
    assert_eq!(digest.tip.sequence_no, 21);
    for seq in 0..=21 {
        let block = ledger.block(seq).unwrap();
        let hash = quill_verify::verify_block(&block).unwrap();
        assert_eq!(ledger.block_hashes(seq).unwrap(), block_hashes_of(&block));
        for tip in seq..=21 {
            let proof = ledger.block_proof(seq, tip).unwrap();
            quill_verify::verify_proof(&hash, &proof, &ledger.digest_at(tip).unwrap().digest)
                .unwrap();
        }
    }
    for old in [0, 1, 5, 12, 21] {
        let proof = ledger.consistency_proof(old, 21).unwrap();
        quill_verify::verify_consistency(
            old + 1,
            &ledger.digest_at(old).unwrap().digest,
            22,
            &digest.digest,
            &proof,
        )
        .unwrap();
    }
    assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), 22);
}

fn reopen_rebuilds_nothing_and_keeps_everything(backend: Backend) {
    let home = Home::new(backend);
    let id = {
        let ledger = home.create_default("l1");
        ledger
            .transact(|tx| {
                tx.create_table("T", None)?;
                tx.create_index("T", "k")?;
                tx.insert("T", ion("{k: 1}"))
            })
            .unwrap()
    };
    let ledger = home.open_default("l1");
    let found = ledger
        .transact(|tx| tx.index_lookup("T", "k", &ion("1")))
        .unwrap()
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
    assert_eq!(ledger.recovery_report().torn_tail_bytes, 0);
}

/// Derived state written before index keys were PartiQL equality keys (no `format` marker in
/// it) is rebuilt from the journal on open, never read with the old keys. Embedded only: a
/// PostgreSQL ledger's cache goes through the same `open_parts` check.
#[test]
fn derived_state_of_an_older_format_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::create(dir.path(), "l1", LedgerOptions::default()).unwrap();
        ledger
            .transact(|tx| {
                tx.create_table("T", None)?;
                tx.create_index("T", "k")?;
                tx.insert("T", ion("{k: 100.00}"))
            })
            .unwrap();
    }
    let reopened = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    assert!(!reopened.recovery_report().state_rebuilt);
    drop(reopened);
    {
        // What an older version left: no format marker, index entries under other keys.
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.remove("format").unwrap();
        }
        let index = redb::TableDefinition::<(&str, &str, &[u8], &str), ()>::new("index");
        txn.delete_table(index).unwrap();
        txn.open_table(index).unwrap();
        txn.commit().unwrap();
    }
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    assert!(ledger.recovery_report().state_rebuilt);
    let found = ledger
        .transact(|tx| tx.index_lookup("T", "k", &ion("1d2")))
        .unwrap()
        .unwrap();
    assert_eq!(found.len(), 1);
}

fn derived_state_is_rebuilt_from_the_journal(backend: Backend) {
    let home = Home::new(backend);
    let digest = {
        let ledger = home.create_default("l1");
        ledger
            .transact(|tx| tx.create_table("T", None).map(|_| ()))
            .unwrap();
        for i in 0..10 {
            ledger
                .transact(|tx| tx.insert("T", ion(&format!("{{k: {i}}}"))))
                .unwrap();
        }
        ledger.digest()
    };
    home.discard_derived_state("l1");
    let ledger = home.open_default("l1");
    assert_eq!(ledger.recovery_report().blocks_replayed, 12);
    assert_eq!(ledger.digest(), digest);
    let mut count = 0;
    ledger
        .transact(|tx| {
            tx.scan("T", &mut |_| {
                count += 1;
                Ok(true)
            })
        })
        .unwrap();
    assert_eq!(count, 10);
}

fn ddl_catalog_and_errors(backend: Backend) {
    let (_home, ledger) = new_ledger(backend);
    let table_id = ledger
        .transact(|tx| tx.create_table("Person", None))
        .unwrap();
    assert!(matches!(
        ledger.transact(|tx| tx.create_table("Person", None)),
        Err(LedgerError::TableExists(_))
    ));
    assert!(matches!(
        ledger.transact(|tx| tx.insert("Nope", ion("{}"))),
        Err(LedgerError::UnknownTable(_))
    ));
    assert!(matches!(
        ledger.transact(|tx| tx.insert("Person", ion("[1]"))),
        Err(LedgerError::InvalidInput(_))
    ));
    ledger.transact(|tx| tx.drop_table("Person")).unwrap();
    let tables = ledger.transact(|tx| tx.tables()).unwrap();
    assert_eq!(tables[0].status, TableStatus::Inactive);
    ledger.transact(|tx| tx.undrop_table(&table_id)).unwrap();
    assert_eq!(
        ledger.transact(|tx| tx.table("Person")).unwrap().table_id,
        table_id
    );
}

fn limits_are_enforced_with_typed_errors(backend: Backend) {
    let home = Home::new(backend);
    let mut options = LedgerOptions::default();
    options.limits.documents_per_transaction_max = 3;
    options.limits.document_size_max_bytes = 64;
    let ledger = home.create("limits", options);
    ledger
        .transact(|tx| tx.create_table("T", None).map(|_| ()))
        .unwrap();
    let too_many = ledger.transact(|tx| {
        for i in 0..4 {
            tx.insert("T", ion(&format!("{{n: {i}}}")))?;
        }
        Ok(())
    });
    assert!(matches!(
        too_many,
        Err(LedgerError::LimitExceeded {
            limit: "documents_per_transaction_max",
            ..
        })
    ));
    let big = format!("{{s: \"{}\"}}", "x".repeat(100));
    assert!(matches!(
        ledger.transact(|tx| tx.insert("T", ion(&big))),
        Err(LedgerError::LimitExceeded {
            limit: "document_size_max_bytes",
            ..
        })
    ));
}

fn savepoint_rollback_leaves_the_transaction_unchanged(backend: Backend) {
    let (_home, ledger) = new_ledger(backend);
    ledger
        .transact(|tx| tx.create_table("T", None).map(|_| ()))
        .unwrap();
    let mut tx = ledger.begin().unwrap();
    let kept = tx.insert("T", ion("{a: 1}")).unwrap();
    let savepoint = tx.savepoint();
    tx.record_statement("INSERT INTO T ?", &[]).unwrap();
    let dropped = tx.insert("T", ion("{a: 2}")).unwrap();
    tx.create_table("U", None).unwrap();
    tx.rollback_to(savepoint);
    assert!(tx.get("T", &dropped).unwrap().is_none());
    assert!(tx.table("U").is_err());
    tx.commit().unwrap();
    assert!(ledger.transact(|tx| tx.get("T", &kept)).unwrap().is_some());
}

fn expired_transactions_cannot_commit(backend: Backend) {
    let home = Home::new(backend);
    let mut options = LedgerOptions::default();
    options.limits.transaction_timeout = std::time::Duration::from_millis(50);
    let ledger = home.create("expiry", options);
    let mut tx = ledger.begin().unwrap();
    tx.create_table("T", None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(80));
    assert!(matches!(
        tx.commit(),
        Err(LedgerError::TransactionExpired { .. })
    ));
}

fn every_ion_type_round_trips_through_commit(backend: Backend) {
    let (home, ledger) = new_ledger(backend);
    ledger
        .transact(|tx| tx.create_table("T", None).map(|_| ()))
        .unwrap();
    let text = r#"{
        n: null, nb: null.bool, ni: null.int, ns: null.struct, b: true, i: -42,
        big: 123456789012345678901234567890, f: 1.5e0, d: 90.250, d2: 1.0d-3,
        t1: 2017-08-21, t2: 2019-09-16T19:37:05.344Z, t3: 2001T, t4: 2001-02-03T04:05:06.789123-08:00,
        sym: 'a symbol', s: "a string", c: {{"clob text"}}, bl: {{aGVsbG8=}},
        l: [1, "two", [3]], sx: (+ 1 2), st: {nested: {deep: 1}}, ann: tag::other::{x: 1}
    }"#;
    let data = ion(text);
    let id = ledger.transact(|tx| tx.insert("T", data.clone())).unwrap();
    let read = ledger.transact(|tx| tx.get("T", &id)).unwrap().unwrap();
    assert!(
        ion_rs::IonData::eq(&read.data, &data),
        "Ion data model equality, precision included"
    );
    drop(ledger);
    let reopened = home.open_default("test-ledger");
    let read = reopened.transact(|tx| tx.get("T", &id)).unwrap().unwrap();
    assert!(ion_rs::IonData::eq(&read.data, &data));
}

/// Embedded only: a PostgreSQL ledger is meant to be open in several servers at once (each
/// handle a server; see tests/postgres.rs).
#[test]
fn a_ledger_cannot_be_opened_twice() {
    let (home, ledger) = new_ledger(Backend::Embedded);
    assert!(matches!(
        home.try_open("test-ledger", LedgerOptions::default()),
        Err(LedgerError::InUse(_))
    ));
    drop(ledger);
    home.open_default("test-ledger");
}

fn history_bounds_are_checked(backend: Backend) {
    let (_home, ledger) = new_ledger(backend);
    let table_id = ledger.transact(|tx| tx.create_table("T", None)).unwrap();
    ledger.transact(|tx| tx.insert("T", ion("{a: 1}"))).unwrap();
    let ts = |text: &str| ion(text).as_timestamp().unwrap();
    let all = ledger
        .transact(|tx| {
            let now = tx.start_time();
            tx.history(&table_id, None, Some(&ts("2000T")), Some(&now))
        })
        .unwrap();
    assert_eq!(all.len(), 1, "an end of now includes every revision");
    let future =
        ledger.transact(|tx| tx.history(&table_id, None, Some(&ts("2000T")), Some(&ts("2100T"))));
    assert!(
        matches!(future, Err(LedgerError::InvalidInput(_))),
        "an end later than now is an error, as QLDB documents"
    );
    let start_after_now =
        ledger.transact(|tx| tx.history(&table_id, None, Some(&ts("2100T")), None));
    assert!(
        matches!(start_after_now, Err(LedgerError::InvalidInput(_))),
        "a start later than the default end (now) is an error"
    );
    let none = ledger
        .transact(|tx| tx.history(&table_id, None, Some(&ts("2000T")), Some(&ts("2001T"))))
        .unwrap();
    assert!(none.is_empty(), "nothing was active in 2000");
    let reversed =
        ledger.transact(|tx| tx.history(&table_id, None, Some(&ts("2001T")), Some(&ts("2000T"))));
    assert!(matches!(reversed, Err(LedgerError::InvalidInput(_))));
}

fn indexes_follow_updates_and_deletes_live_and_after_replay(backend: Backend) {
    let home = Home::new(backend);
    let lookup = |ledger: &Ledger, vin: &str| -> Vec<String> {
        let key = ion(&format!("\"{vin}\""));
        ledger
            .transact(|tx| tx.index_lookup("V", "VIN", &key))
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    };
    let (a, b) = {
        let ledger = home.create_default("idx");
        let ids = ledger
            .transact(|tx| {
                tx.create_table("V", None)?;
                tx.create_index("V", "VIN")?;
                Ok((
                    tx.insert("V", ion("{VIN: \"A\"}"))?,
                    tx.insert("V", ion("{VIN: \"B\"}"))?,
                ))
            })
            .unwrap();
        // Two updates of one document in one transaction, then a delete.
        ledger
            .transact(|tx| {
                tx.update("V", &ids.0, ion("{VIN: \"X\"}"))?;
                tx.update("V", &ids.0, ion("{VIN: \"C\"}"))
            })
            .unwrap();
        ledger.transact(|tx| tx.delete("V", &ids.1)).unwrap();
        assert!(
            lookup(&ledger, "A").is_empty()
                && lookup(&ledger, "X").is_empty()
                && lookup(&ledger, "B").is_empty()
        );
        assert_eq!(lookup(&ledger, "C"), vec![ids.0.clone()]);
        ids
    };
    // Replay rebuilds the same index from the journal alone.
    home.discard_derived_state("idx");
    let ledger = home.open_default("idx");
    assert!(lookup(&ledger, "A").is_empty() && lookup(&ledger, "B").is_empty());
    assert_eq!(lookup(&ledger, "C"), vec![a]);
    assert!(ledger.transact(|tx| tx.get("V", &b)).unwrap().is_none());
}

fn deeply_nested_documents_are_refused_not_a_stack_overflow(backend: Backend) {
    let (_home, ledger) = new_ledger(backend);
    ledger
        .transact(|tx| tx.create_table("T", None).map(|_| ()))
        .unwrap();
    let nested = |depth: usize| format!("{}1{}", "{a:[".repeat(depth / 2), "]}".repeat(depth / 2));
    assert!(ledger
        .transact(|tx| tx.insert("T", ion(&nested(60))))
        .is_ok());
    let deep = ion(&nested(110));
    let refused = ledger.transact(|tx| tx.insert("T", deep.clone()));
    assert!(
        matches!(
            refused,
            Err(LedgerError::LimitExceeded {
                limit: "document_depth_max",
                ..
            })
        ),
        "{refused:?}"
    );
}

/// What the ledger should hold: live documents by id, and revisions written.
#[derive(Default)]
struct Model {
    live: std::collections::BTreeMap<String, Element>,
    ids: Vec<String>,
    revisions: usize,
}

fn check_against(ledger: &Ledger, model: &Model, indexed: &[&str]) {
    let scanned = common::scan_checking_indexes(ledger, "Car", indexed, 0..3);
    let live: std::collections::BTreeMap<String, Element> = scanned
        .into_iter()
        .map(|(id, (_, data))| (id, data))
        .collect();
    assert_eq!(live, model.live);
    for id in &model.ids {
        let got = ledger.transact(|tx| tx.get("Car", id)).unwrap();
        assert_eq!(got.map(|d| d.data).as_ref(), model.live.get(id), "{id}");
    }
    let table_id = ledger.transact(|tx| tx.table("Car")).unwrap().table_id;
    let history = ledger
        .transact(|tx| tx.history(&table_id, None, None, None))
        .unwrap();
    assert_eq!(history.len(), model.revisions);
}

/// Commits go to in-memory layers that a background thread writes to redb every 64 batches;
/// DDL goes to redb directly. Reads agree with a model through hundreds of commits (many
/// flushes, an index created midway over layered data) and after a reopen.
fn reads_stay_right_across_layer_flushes_and_reopen(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("layers");
    ledger
        .transact(|tx| {
            tx.create_table("Car", None)?;
            tx.create_index("Car", "color")
        })
        .unwrap();
    let mut model = Model::default();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut indexed = vec!["color"];
    for round in 0..400 {
        if round == 150 {
            ledger
                .transact(|tx| tx.create_index("Car", "size"))
                .unwrap();
            indexed.push("size");
        }
        let doc = ion(&format!(
            "{{color: {}, size: {}, round: {round}}}",
            next(3),
            next(3)
        ));
        let pick = (!model.ids.is_empty())
            .then(|| model.ids[next(model.ids.len() as u64) as usize].clone());
        match (next(4), pick) {
            (0, Some(id)) if model.live.contains_key(&id) => {
                ledger.transact(|tx| tx.delete("Car", &id)).unwrap();
                model.live.remove(&id);
            }
            (1 | 2, Some(id)) if model.live.contains_key(&id) => {
                ledger
                    .transact(|tx| tx.update("Car", &id, doc.clone()))
                    .unwrap();
                model.live.insert(id, doc);
            }
            _ => {
                let id = ledger.transact(|tx| tx.insert("Car", doc.clone())).unwrap();
                model.ids.push(id.clone());
                model.live.insert(id, doc);
            }
        }
        model.revisions += 1;
        if round % 25 == 0 {
            check_against(&ledger, &model, &indexed);
        }
    }
    check_against(&ledger, &model, &indexed);
    drop(ledger);
    let ledger = home.open_default("layers");
    // A clean close writes the layers to redb (a PostgreSQL ledger's cache is kept).
    assert_eq!(ledger.recovery_report().blocks_replayed, 0);
    check_against(&ledger, &model, &indexed);
}

/// Commits awaited on async workers: many at once (queued to the committer threads and
/// batched) and one alone (on the blocking pool, where the idle ledger's committing thread
/// fsyncs); each answers with its own block, conflicts are still detected, and everything
/// acknowledged is there after a reopen.
fn async_commits_are_batched_checked_and_durable(backend: Backend) {
    let home = Home::new(backend);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const WRITERS: usize = 32;
    let contested = {
        let ledger = home.create_default("l1");
        let contested = ledger
            .transact(|tx| {
                tx.create_table("T", None)?;
                tx.insert("T", ion("{n: 0}"))
            })
            .unwrap();
        runtime.block_on(async {
            let mut tx = ledger.begin().unwrap();
            tx.insert("T", ion("{alone: true}")).unwrap();
            let receipt = tx.commit_async().await.unwrap();
            assert!(receipt.block_address.is_some());

            let commits: Vec<_> = (0..WRITERS)
                .map(|n| {
                    let ledger = ledger.clone();
                    tokio::spawn(async move {
                        let mut tx = ledger.begin().unwrap();
                        let id = tx.id().to_owned();
                        tx.insert("T", ion(&format!("{{n: {}}}", n + 1))).unwrap();
                        let receipt = tx.commit_async().await.unwrap();
                        assert_eq!(receipt.transaction_id, id);
                        receipt.block_address.unwrap().sequence_no
                    })
                })
                .collect();
            let mut blocks = Vec::new();
            for commit in commits {
                blocks.push(commit.await.unwrap());
            }
            blocks.sort_unstable();
            blocks.dedup();
            assert_eq!(blocks.len(), WRITERS, "one block each");

            // Both read the document and write it: the second to commit conflicts.
            let mut first = ledger.begin().unwrap();
            let mut second = ledger.begin().unwrap();
            first.update("T", &contested, ion("{n: 1}")).unwrap();
            second.update("T", &contested, ion("{n: 2}")).unwrap();
            first.commit_async().await.unwrap();
            let lost = second.commit_async().await.unwrap_err();
            assert!(lost.is_occ_conflict(), "{lost:?}");

            // A read-only transaction commits without a block.
            let mut reader = ledger.begin().unwrap();
            reader.get("T", &contested).unwrap();
            let receipt = reader.commit_async().await.unwrap();
            assert!(receipt.block_address.is_none());
        });
        contested
    };
    let ledger = home.open_default("l1");
    let (documents, contested) = ledger
        .transact(|tx| {
            let mut documents = 0;
            tx.scan("T", &mut |_| {
                documents += 1;
                Ok(true)
            })?;
            Ok((documents, tx.get("T", &contested)?.unwrap().data))
        })
        .unwrap();
    assert_eq!(documents, WRITERS + 2);
    assert_eq!(contested, ion("{n: 1}"));
}

/// A read limit stops a statement's reads with a typed error, and lifting it lets them run;
/// reads before the limit was set do not count against it.
fn read_limits_stop_long_reads(backend: Backend) {
    let (_home, ledger) = new_ledger(backend);
    let ids: Vec<String> = ledger
        .transact(|tx| {
            tx.create_table("T", None)?;
            (0..10)
                .map(|n| tx.insert("T", ion(&format!("{{n: {n}}}"))))
                .collect()
        })
        .unwrap();
    let mut tx = ledger.begin().unwrap();
    tx.get("T", &ids[0]).unwrap();
    tx.limit_reads(Some(3));
    for id in &ids[1..4] {
        assert!(tx.get("T", id).unwrap().is_some());
    }
    let over = tx.get("T", &ids[4]).unwrap_err();
    assert!(matches!(over, LedgerError::ReadLimitReached), "{over:?}");
    tx.limit_reads(Some(5));
    let mut visited = 0;
    let over = tx
        .scan("T", &mut |_| {
            visited += 1;
            Ok(true)
        })
        .unwrap_err();
    assert!(matches!(over, LedgerError::ReadLimitReached), "{over:?}");
    assert_eq!(visited, 5);
    let over = tx.committed("T", None).unwrap_err();
    assert!(matches!(over, LedgerError::ReadLimitReached), "{over:?}");
    tx.limit_reads(None);
    visited = 0;
    tx.scan("T", &mut |_| {
        visited += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!(visited, 10);
    assert_eq!(tx.committed("T", None).unwrap().len(), 10);
    tx.commit().unwrap();
}
