//! The PostgreSQL backend: ledgers whose journal is in PostgreSQL, opened by several handles
//! at once as several `quill serve` processes would (each handle has its own committer,
//! derived-state cache and conflict log; they share only the database).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError, LedgerOptions, PostgresStore};
use quill_pgtest::SKIP_MOUNT_ENV;

fn store() -> PostgresStore {
    PostgresStore::connect(&common::postgres_url()).expect("connect to PostgreSQL")
}

/// A ledger name no other test uses.
fn fresh_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn ion(text: &str) -> Element {
    Element::read_one(text).unwrap()
}

#[test]
fn a_ledger_in_postgres_is_seen_whole_by_a_second_server() {
    let store = store();
    let name = fresh_name("basics");
    let a = Ledger::create_in(&store, &name, LedgerOptions::default()).unwrap();
    let id = a
        .transact(|tx| {
            tx.create_table("Vehicle", None)?;
            tx.create_index("Vehicle", "VIN")?;
            tx.insert("Vehicle", ion(r#"{VIN: "1N4AL11D75C109151", Year: 2011}"#))
        })
        .unwrap();
    a.transact(|tx| {
        tx.update(
            "Vehicle",
            &id,
            ion(r#"{VIN: "1N4AL11D75C109151", Year: 2012}"#),
        )
    })
    .unwrap();

    // A second server opens it from PostgreSQL alone.
    let b = Ledger::open_in(&store, &name, LedgerOptions::default()).unwrap();
    assert_eq!(b.digest(), a.digest());
    let doc = b.transact(|tx| tx.get("Vehicle", &id)).unwrap().unwrap();
    assert_eq!(doc.version, 1);
    let found = b
        .transact(|tx| tx.index_lookup("Vehicle", "VIN", &ion(r#""1N4AL11D75C109151""#)))
        .unwrap()
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(b.verify(&mut |_, _| {}).unwrap(), 3);

    // b writes; a takes b's block in before its own next commit.
    b.transact(|tx| tx.insert("Vehicle", ion(r#"{VIN: "KM8SRDHF6EU074761"}"#)))
        .unwrap();
    a.transact(|tx| tx.insert("Vehicle", ion(r#"{VIN: "3HGGK5G53FM761765"}"#)))
        .unwrap();
    let count = |l: &Ledger| {
        l.transact(|tx| {
            let mut n = 0;
            tx.scan("Vehicle", &mut |_| {
                n += 1;
                Ok(true)
            })?;
            Ok(n)
        })
        .unwrap()
    };
    assert_eq!(count(&a), 3);
    assert_eq!(a.digest().tip.sequence_no, 4);
    drop(b);
    let c = Ledger::open_in(&store, &name, LedgerOptions::default()).unwrap();
    assert_eq!(c.digest(), a.digest());
    assert_eq!(count(&c), 3);
    assert_eq!(
        c.block(4).unwrap(),
        a.block(4).unwrap(),
        "blocks are read from PostgreSQL"
    );
}

#[test]
fn creating_an_existing_ledger_and_opening_a_missing_one_fail_clearly() {
    let store = store();
    let name = fresh_name("exists");
    let _a = Ledger::create_in(&store, &name, LedgerOptions::default()).unwrap();
    assert!(matches!(
        Ledger::create_in(&store, &name, LedgerOptions::default()),
        Err(LedgerError::LedgerExists(_))
    ));
    assert!(matches!(
        Ledger::open_in(&store, "no-such-ledger", LedgerOptions::default()),
        Err(LedgerError::UnknownLedger(_))
    ));
    assert!(store.ledgers().unwrap().iter().any(|l| l.name == name));
}

#[test]
fn a_read_on_one_server_conflicts_with_a_write_committed_on_another() {
    let store = store();
    let name = fresh_name("occ");
    let a = Ledger::create_in(&store, &name, LedgerOptions::default()).unwrap();
    let id = a
        .transact(|tx| {
            tx.create_table("Acct", None)?;
            tx.insert("Acct", ion("{balance: 10}"))
        })
        .unwrap();
    let b = Ledger::open_in(&store, &name, LedgerOptions::default()).unwrap();

    // a's transaction reads the account; b changes it and commits; a's write must lose.
    let mut tx = a.begin().unwrap();
    let seen = tx.get("Acct", &id).unwrap().unwrap();
    assert_eq!(seen.version, 0);
    b.transact(|t| t.update("Acct", &id, ion("{balance: 0}")))
        .unwrap();
    tx.update("Acct", &id, ion("{balance: 20}")).unwrap();
    let err = tx.commit().unwrap_err();
    assert!(err.is_occ_conflict(), "{err}");

    // Retried, it sees b's write.
    let balance = a
        .transact(|t| {
            let doc = t.get("Acct", &id)?.unwrap();
            t.update("Acct", &id, ion("{balance: 5}"))?;
            Ok(doc.version)
        })
        .unwrap();
    assert_eq!(balance, 1);
    assert_eq!(a.verify(&mut |_, _| {}).unwrap(), 4);
}

/// Two servers, eight writers each, transfers between few accounts (heavy conflicts) plus
/// unique inserts: the total is conserved, every acknowledged insert is present, the chain
/// has no gap or fork and both servers end on the same digest.
#[test]
fn two_servers_under_conflicting_load_keep_the_invariant_and_the_chain() {
    const ACCOUNTS: i64 = 5;
    const THREADS_PER_SERVER: usize = 8;
    const OPS_PER_THREAD: usize = 40;
    let store = store();
    let name = fresh_name("bank");
    let a = Ledger::create_in(&store, &name, LedgerOptions::default()).unwrap();
    let ids: Vec<String> = a
        .transact(|tx| {
            tx.create_table("Acct", None)?;
            tx.create_table("Note", None)?;
            (0..ACCOUNTS)
                .map(|_| tx.insert("Acct", ion("{balance: 100}")))
                .collect()
        })
        .unwrap();
    let b = Ledger::open_in(&store, &name, LedgerOptions::default()).unwrap();
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    std::thread::scope(|scope| {
        for (server, ledger) in [&a, &b].into_iter().enumerate() {
            for thread in 0..THREADS_PER_SERVER {
                let ids = &ids;
                let acknowledged = Arc::clone(&acknowledged);
                scope.spawn(move || {
                    for op in 0..OPS_PER_THREAD {
                        let from = &ids[(thread + op) % ids.len()];
                        let to = &ids[(thread + op + 1 + server) % ids.len()];
                        if from == to {
                            continue;
                        }
                        let moved = ledger.transact(|tx| {
                            let balance = |d: quill_ledger::Document| {
                                d.data
                                    .as_struct()
                                    .unwrap()
                                    .get("balance")
                                    .unwrap()
                                    .as_i64()
                                    .unwrap()
                            };
                            let f = balance(tx.get("Acct", from)?.unwrap());
                            let t = balance(tx.get("Acct", to)?.unwrap());
                            tx.update("Acct", from, ion(&format!("{{balance: {}}}", f - 1)))?;
                            tx.update("Acct", to, ion(&format!("{{balance: {}}}", t + 1)))
                        });
                        match moved {
                            Ok(()) => {}
                            Err(e) if e.is_occ_conflict() => {}
                            Err(e) => panic!("transfer failed: {e}"),
                        }
                        let tag = format!("s{server}-t{thread}-o{op}");
                        let note = ledger
                            .transact(|tx| tx.insert("Note", ion(&format!("{{tag: \"{tag}\"}}"))))
                            .unwrap();
                        acknowledged.lock().unwrap().insert(note, tag);
                    }
                });
            }
        }
    });
    for ledger in [&a, &b] {
        let (total, notes) = ledger
            .transact(|tx| {
                let mut total = 0;
                tx.scan("Acct", &mut |d| {
                    total += Element::read_one(d.ion)
                        .unwrap()
                        .as_struct()
                        .unwrap()
                        .get("balance")
                        .unwrap()
                        .as_i64()
                        .unwrap();
                    Ok(true)
                })?;
                let mut notes = BTreeMap::new();
                tx.scan("Note", &mut |d| {
                    let tag = Element::read_one(d.ion).unwrap();
                    let tag = tag.as_struct().unwrap().get("tag").unwrap();
                    notes.insert(d.id.to_owned(), tag.as_text().unwrap().to_owned());
                    Ok(true)
                })?;
                Ok((total, notes))
            })
            .unwrap();
        assert_eq!(total, ACCOUNTS * 100, "money was created or lost");
        let acknowledged = acknowledged.lock().unwrap();
        let missing = acknowledged
            .keys()
            .filter(|id| !notes.contains_key(*id))
            .count();
        assert_eq!(missing, 0, "acknowledged inserts missing");
        assert_eq!(
            notes.len(),
            acknowledged.len(),
            "unacknowledged inserts present"
        );
    }
    // Both servers have caught up to the same tip; the chain verifies from PostgreSQL.
    a.transact(|tx| tx.insert("Note", ion("{tag: \"last-a\"}")))
        .unwrap();
    b.transact(|tx| tx.insert("Note", ion("{tag: \"last-b\"}")))
        .unwrap();
    a.transact(|tx| tx.get("Acct", &ids[0])).unwrap();
    let reopened = Ledger::open_in(&store, &name, LedgerOptions::default()).unwrap();
    let blocks = reopened.verify(&mut |_, _| {}).unwrap();
    assert_eq!(reopened.digest().tip.sequence_no + 1, blocks);
    assert_eq!(b.digest(), reopened.digest());
}

/// `len` characters that PostgreSQL cannot compress much (a document that takes its size on
/// disk), different for each `seed`.
fn incompressible_text(seed: u64, len: usize) -> String {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(state % 36) as usize])
        })
        .collect()
}

/// PostgreSQL out of disk. The ledger's tables live in a tablespace on a 16 MiB tmpfs, a
/// filler table takes 6 MiB of it, and 32 KB documents are committed until PostgreSQL reports
/// disk_full. That commit, and the next, fail with the retryable `Unavailable`; nothing is
/// half-written (the blocks in PostgreSQL are exactly the acknowledged commits), no
/// acknowledged commit is lost, the chain verifies from PostgreSQL alone; once the filler is
/// dropped, commits resume on the same handle.
#[test]
fn a_full_disk_fails_commits_retryably_and_they_resume_once_there_is_room() {
    let server = common::postgres_server();
    let tablespace = match server.small_tablespace("full_disk", 16 << 20) {
        Ok(tablespace) => tablespace,
        Err(e) if std::env::var_os(SKIP_MOUNT_ENV).is_some() => {
            eprintln!("skipped ({SKIP_MOUNT_ENV} is set): {e}");
            return;
        }
        Err(e) => panic!(
            "{e}\n(set {SKIP_MOUNT_ENV}=1 to skip this test where mounting a tmpfs is impossible)"
        ),
    };
    let url = tablespace.create_database("full_disk").unwrap();
    let store = PostgresStore::connect(&url).unwrap();
    let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let in_small_tablespace: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
             WHERE t.spcname = $1 AND c.relname IN ('quill_blocks', 'quill_ledgers')",
            &[&tablespace.name()],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        in_small_tablespace, 2,
        "the journal's tables fill the tmpfs"
    );
    sql.batch_execute(&format!(
        "CREATE TABLE filler (data bytea) TABLESPACE {};
         ALTER TABLE filler ALTER data SET STORAGE EXTERNAL; -- stored uncompressed
         INSERT INTO filler
             SELECT convert_to(repeat('f', 1024 * 1024), 'UTF8') FROM generate_series(1, 6);",
        tablespace.name()
    ))
    .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let options = || LedgerOptions {
        cache_dir: Some(cache.path().to_owned()),
        ..LedgerOptions::default()
    };
    let ledger = Ledger::create_in(&store, "full", options()).unwrap();
    ledger
        .transact(|tx| tx.create_table("Doc", None).map(drop))
        .unwrap();
    let document = |n: u64| {
        ion(&format!(
            "{{n: {n}, text: \"{}\"}}",
            incompressible_text(n, 32_000)
        ))
    };
    let mut acknowledged = Vec::new();
    let started = std::time::Instant::now();
    let full = loop {
        let n = acknowledged.len() as u64;
        match ledger.transact(|tx| tx.insert("Doc", document(n))) {
            Ok(id) => acknowledged.push(id),
            Err(e) => break e,
        }
        assert!(acknowledged.len() < 2_000, "16 MiB never filled up");
    };
    // Retryable, and saying why in PostgreSQL's words.
    let out_of_disk = |e: &LedgerError| {
        matches!(e, LedgerError::Unavailable(m) if m.contains("PostgreSQL is out of disk space")
            && m.contains("No space left on device"))
    };
    println!(
        "out of disk after {} commits ({:.1?}): {full}",
        acknowledged.len(),
        started.elapsed()
    );
    assert!(out_of_disk(&full), "{full}");
    assert!(
        acknowledged.len() > 50,
        "the disk filled after {} commits: the filler left too little room",
        acknowledged.len()
    );
    let again = ledger
        .transact(|tx| tx.insert("Doc", document(u64::MAX)))
        .unwrap_err();
    assert!(out_of_disk(&again), "{again}");

    // Blocks: genesis, the table, one per acknowledged commit; in PostgreSQL and as seen by
    // this handle and a new one (another server).
    let blocks = 2 + acknowledged.len() as u64;
    assert_eq!(ledger.digest().tip.sequence_no + 1, blocks);
    let row = sql
        .query_one(
            "SELECT (SELECT blocks FROM quill_ledgers WHERE name = 'full'),
                    (SELECT count(*) FROM quill_blocks WHERE ledger = 'full')",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (blocks as i64, blocks as i64),
        "the tip and the block rows are the acknowledged commits, no more"
    );
    let other = Ledger::open_in(&store, "full", options()).unwrap();
    assert_eq!(other.verify(&mut |_, _| {}).unwrap(), blocks);
    assert_eq!(other.digest(), ledger.digest());
    let stored = |l: &Ledger| {
        l.transact(|tx| {
            let mut ids = Vec::new();
            tx.scan("Doc", &mut |d| {
                ids.push(d.id.to_owned());
                Ok(true)
            })?;
            Ok(ids)
        })
        .unwrap()
    };
    let mut expected = acknowledged.clone();
    expected.sort();
    let mut found = stored(&other);
    found.sort();
    assert_eq!(found, expected, "exactly the acknowledged documents");

    // Room again: both handles commit, and the chain still verifies.
    sql.batch_execute("DROP TABLE filler").unwrap();
    let resumed = ledger
        .transact(|tx| tx.insert("Doc", document(1_000_000)))
        .unwrap();
    other
        .transact(|tx| tx.insert("Doc", document(1_000_001)))
        .unwrap();
    assert!(stored(&other).contains(&resumed));
    let reopened = Ledger::open_in(&store, "full", options()).unwrap();
    assert_eq!(reopened.verify(&mut |_, _| {}).unwrap(), blocks + 2);
    assert_eq!(stored(&reopened).len(), acknowledged.len() + 2);
}
