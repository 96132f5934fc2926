//! A PostgreSQL ledger's derived-state cache survives its handle: reopening replays only the
//! blocks committed since, and a cache that does not belong to PostgreSQL's chain (a ledger
//! deleted and created again, blocks lost in a failover, another chain in their place) or
//! that a power cut damaged is detected and rebuilt. Redactions committed elsewhere reach
//! the cache's files. PostgreSQL only: embedded ledgers keep derived state beside their
//! journal (tests/ledger_basics.rs, tests/power_loss.rs).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{files_containing, Backend, Home};
use ion_rs::Element;
use quill_ledger::storage::{SimulatedDisk, Storage};
use quill_ledger::{CacheDiscarded, Ledger, LedgerDigest, LedgerOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MARKER: &str = "CACHED-SECRET-5d1e0c7a93";

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

/// Options whose caches live under `root` (another "server" than the `Home`'s).
fn cached_in(root: &Path) -> LedgerOptions {
    LedgerOptions {
        cache_dir: Some(root.to_owned()),
        ..LedgerOptions::default()
    }
}

/// Table `T` (indexed on `k`) with `count` documents `{k: from + i}`, one commit each.
fn insert(ledger: &Ledger, from: i64, count: i64) {
    for k in from..from + count {
        ledger
            .transact(|tx| tx.insert("T", ion(&format!("{{k: {k}}}"))))
            .unwrap();
    }
}

fn create_table(ledger: &Ledger) {
    ledger
        .transact(|tx| {
            tx.create_table("T", None)?;
            tx.create_index("T", "k")
        })
        .unwrap();
}

/// Every document of `T` by id: (version, data).
fn documents(ledger: &Ledger) -> BTreeMap<String, (u64, Element)> {
    ledger
        .transact(|tx| {
            let mut found = BTreeMap::new();
            tx.scan("T", &mut |doc| {
                found.insert(
                    doc.id.to_owned(),
                    (doc.version, Element::read_one(doc.ion).unwrap()),
                );
                Ok(true)
            })?;
            Ok(found)
        })
        .unwrap()
}

fn lookup(ledger: &Ledger, k: i64) -> usize {
    ledger
        .transact(|tx| tx.index_lookup("T", "k", &Element::int(k)))
        .unwrap()
        .expect("k is indexed")
        .len()
}

fn blocks(digest: &LedgerDigest) -> u64 {
    digest.tip.sequence_no + 1
}

#[test]
fn reopening_replays_nothing_and_serves_the_same_state() {
    let home = Home::new(Backend::Postgres);
    let ledger = home.create_default("warm");
    create_table(&ledger);
    insert(&ledger, 0, 40);
    let (digest, docs) = (ledger.digest(), documents(&ledger));
    drop(ledger);

    let ledger = home.open_default("warm");
    let recovery = ledger.recovery_report();
    assert_eq!(recovery.blocks_replayed, 0, "{recovery:?}");
    assert_eq!(recovery.tree_leaves_rebuilt, 0, "{recovery:?}");
    assert_eq!(recovery.cache_discarded, None);
    assert!(!recovery.state_rebuilt);
    assert_eq!(ledger.digest(), digest);
    assert_eq!(documents(&ledger), docs);
    assert_eq!(lookup(&ledger, 7), 1);
    assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), blocks(&digest));
    // And it goes on committing from there.
    insert(&ledger, 40, 1);
    assert_eq!(blocks(&ledger.digest()), blocks(&digest) + 1);
}

#[test]
fn blocks_committed_elsewhere_while_closed_are_caught_up() {
    let home = Home::new(Backend::Postgres);
    let store = home.store().unwrap();
    let ledger = home.create_default("behind");
    create_table(&ledger);
    insert(&ledger, 0, 5);
    drop(ledger);

    // Another server, with a cache of its own, commits 7 blocks meanwhile.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Ledger::open_in(store, "behind", cached_in(elsewhere.path())).unwrap();
    insert(&other, 5, 7);
    let (digest, docs) = (other.digest(), documents(&other));
    drop(other);

    let ledger = home.open_default("behind");
    let recovery = ledger.recovery_report();
    assert_eq!(recovery.blocks_replayed, 7, "{recovery:?}");
    assert_eq!(recovery.tree_leaves_rebuilt, 7, "{recovery:?}");
    assert_eq!(recovery.cache_discarded, None);
    assert_eq!(ledger.digest(), digest);
    assert_eq!(documents(&ledger), docs);
    assert_eq!(lookup(&ledger, 11), 1);
}

#[test]
fn the_cache_of_a_deleted_ledger_is_not_used_for_a_new_one_of_the_same_name() {
    let home = Home::new(Backend::Postgres);
    let store = home.store().unwrap();
    let ledger = home.create_default("again");
    create_table(&ledger);
    insert(&ledger, 0, 3);
    let old_strand = ledger.strand_id().to_owned();
    drop(ledger);
    store.delete_ledger("again").unwrap();

    let ledger = home.create_default("again");
    assert_ne!(ledger.strand_id(), old_strand);
    let recovery = ledger.recovery_report();
    assert_eq!(
        recovery.cache_discarded,
        Some(CacheDiscarded::OtherLedger),
        "{recovery:?}"
    );
    assert_eq!(blocks(&ledger.digest()), 1);
    assert!(ledger
        .transact(|tx| tx.scan("T", &mut |_| Ok(true)))
        .is_err());
    assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), 1);
    // The new ledger's cache is the one kept from now on.
    create_table(&ledger);
    drop(ledger);
    let ledger = home.open_default("again");
    assert_eq!(ledger.recovery_report().cache_discarded, None);
    assert_eq!(ledger.recovery_report().blocks_replayed, 0);
}

/// Cuts PostgreSQL's copy of the ledger back to its first `keep` blocks, as a failover to a
/// standby that had not received the rest would.
fn lose_blocks_after(home: &Home, name: &str, keep: u64) {
    let mut sql = home.sql();
    let mut tx = sql.transaction().unwrap();
    tx.execute(
        "DELETE FROM quill_blocks WHERE ledger = $1 AND seq >= $2",
        &[&name, &(keep as i64)],
    )
    .unwrap();
    tx.execute(
        "UPDATE quill_ledgers SET blocks = $2::bigint, last_hash = \
         (SELECT hash FROM quill_blocks WHERE ledger = $1 AND seq = $2::bigint - 1) \
         WHERE name = $1",
        &[&name, &(keep as i64)],
    )
    .unwrap();
    tx.commit().unwrap();
}

#[test]
fn a_cache_ahead_of_or_forked_from_postgresql_is_rebuilt() {
    let home = Home::new(Backend::Postgres);
    let store = home.store().unwrap();
    let ledger = home.create_default("failover");
    create_table(&ledger);
    insert(&ledger, 0, 8); // blocks 2..10: k = 0..8
    let digest_at_6 = ledger.digest_at(5).unwrap();
    drop(ledger);

    // A failover lost blocks 6..10, and another server then committed 6 others in their
    // place: PostgreSQL has more blocks than the cache, but not the cache's.
    lose_blocks_after(&home, "failover", 6);
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Ledger::open_in(store, "failover", cached_in(elsewhere.path())).unwrap();
    assert_eq!(other.digest(), digest_at_6);
    insert(&other, 100, 6);
    let (digest, docs) = (other.digest(), documents(&other));
    drop(other);

    let ledger = home.open_default("failover");
    let recovery = ledger.recovery_report();
    assert_eq!(
        recovery.cache_discarded,
        Some(CacheDiscarded::Forked),
        "{recovery:?}"
    );
    assert_eq!(recovery.blocks_replayed, 12, "{recovery:?}");
    assert_eq!(ledger.digest(), digest);
    assert_eq!(documents(&ledger), docs);
    assert_eq!(lookup(&ledger, 6), 0, "a document of a lost block");
    assert_eq!(lookup(&ledger, 101), 1);
    drop(ledger);

    // A restore to an earlier point: PostgreSQL holds fewer blocks than the cache.
    lose_blocks_after(&home, "failover", 4);
    let ledger = home.open_default("failover");
    let recovery = ledger.recovery_report();
    assert_eq!(
        recovery.cache_discarded,
        Some(CacheDiscarded::AheadOfJournal),
        "{recovery:?}"
    );
    assert_eq!(recovery.blocks_replayed, 4, "{recovery:?}");
    assert_eq!(blocks(&ledger.digest()), 4);
    assert_eq!(documents(&ledger).len(), 2);
    assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), 4);
    insert(&ledger, 200, 1);
    assert_eq!(lookup(&ledger, 200), 1);
}

/// Table `P`, one document whose version 0 holds `MARKER` and version 1 does not. Returns
/// (table id, document id, block of version 0).
fn secret_document(ledger: &Ledger) -> (String, String, quill_ledger::BlockAddress) {
    let (table_id, id) = ledger
        .transact(|tx| {
            let table_id = tx.create_table("P", None)?;
            let id = tx.insert("P", ion(&format!("{{owner: \"{MARKER}\"}}")))?;
            Ok((table_id, id))
        })
        .unwrap();
    ledger
        .transact(|tx| tx.update("P", &id, ion("{owner: \"someone else\"}")))
        .unwrap();
    let history = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap();
    (table_id, id, history[0].block_address.clone())
}

fn redact_on(ledger: &Ledger, address: &quill_ledger::BlockAddress, table_id: &str, id: &str) {
    let mut tx = ledger.begin().unwrap();
    tx.redact_revision(address, table_id, id).unwrap();
    tx.commit().unwrap();
}

fn cache_files_holding_marker(home: &Home, name: &str) -> Vec<PathBuf> {
    files_containing(&home.dir().join(name), MARKER.as_bytes())
}

#[test]
fn a_redaction_committed_elsewhere_while_closed_is_erased_from_the_cache() {
    let home = Home::new(Backend::Postgres);
    let store = home.store().unwrap();
    let ledger = home.create_default("redacted");
    let (table_id, id, address) = secret_document(&ledger);
    drop(ledger);
    assert!(
        !cache_files_holding_marker(&home, "redacted").is_empty(),
        "the cache holds the data before the redaction"
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let other = Ledger::open_in(store, "redacted", cached_in(elsewhere.path())).unwrap();
    redact_on(&other, &address, &table_id, &id);
    drop(other);
    assert!(!home.journal_holds("redacted", MARKER.as_bytes()));

    let ledger = home.open_default("redacted");
    let recovery = ledger.recovery_report();
    assert_eq!(recovery.redactions_completed, 1, "{recovery:?}");
    assert!(recovery.state_rebuilt);
    assert_eq!(
        cache_files_holding_marker(&home, "redacted"),
        Vec::<PathBuf>::new()
    );
    let history = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap();
    assert_eq!(history[0].data, None);
    assert!(history[0].data_hash.is_some());
    drop(ledger);
    // Completed: the next open has nothing left to do.
    let ledger = home.open_default("redacted");
    assert_eq!(ledger.recovery_report().redactions_completed, 0);
    assert_eq!(ledger.recovery_report().blocks_replayed, 0);
}

/// A redaction committed by another server that died before erasing PostgreSQL's copy of
/// the data: this server took the redacting block in (its cache is past it), so the next
/// open finds it pending in the cache, erases the data from PostgreSQL and from the cache.
#[test]
fn a_redaction_whose_erasure_was_left_pending_is_completed_from_the_cache() {
    let home = Home::new(Backend::Postgres);
    let store = home.store().unwrap();
    let ledger = home.create_default("pending");
    let (table_id, id, address) = secret_document(&ledger);
    let mut sql = home.sql();
    let unerased: Vec<u8> = sql
        .query_one(
            "SELECT payload FROM quill_blocks WHERE ledger = 'pending' AND seq = $1",
            &[&(address.sequence_no as i64)],
        )
        .unwrap()
        .get(0);

    let elsewhere = tempfile::tempdir().unwrap();
    let other = Ledger::open_in(store, "pending", cached_in(elsewhere.path())).unwrap();
    redact_on(&other, &address, &table_id, &id);
    drop(other);
    // The other server "died" before its erasure: PostgreSQL still holds the data.
    sql.execute(
        "UPDATE quill_blocks SET payload = $2 WHERE ledger = 'pending' AND seq = $1",
        &[&(address.sequence_no as i64), &unerased],
    )
    .unwrap();
    assert!(home.journal_holds("pending", MARKER.as_bytes()));
    ledger.catch_up().unwrap();
    let tip = blocks(&ledger.digest());
    drop(ledger);

    let ledger = home.open_default("pending");
    let recovery = ledger.recovery_report();
    assert_eq!(recovery.redactions_completed, 1, "{recovery:?}");
    assert_eq!(blocks(&ledger.digest()), tip);
    assert!(!home.journal_holds("pending", MARKER.as_bytes()));
    assert_eq!(
        cache_files_holding_marker(&home, "pending"),
        Vec::<PathBuf>::new()
    );
    assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), tip);
}

#[test]
fn a_second_handle_on_a_locked_cache_gets_a_temporary_one() {
    let home = Home::new(Backend::Postgres);
    let ledger = home.create_default("shared");
    create_table(&ledger);
    insert(&ledger, 0, 3);
    let second = home.open_default("shared");
    assert_eq!(second.recovery_report().blocks_replayed, 5);
    assert_eq!(documents(&second), documents(&ledger));
    let temporary: Vec<String> = std::fs::read_dir(home.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("shared.tmp-"))
        .collect();
    assert_eq!(temporary.len(), 1, "{temporary:?}");
    drop(second);
    assert!(!home.dir().join(&temporary[0]).exists());
    drop(ledger);
    let ledger = home.open_default("shared");
    assert_eq!(ledger.recovery_report().blocks_replayed, 0);
}

#[test]
fn unused_caches_are_removed_and_used_ones_kept() {
    let home = Home::new(Backend::Postgres);
    let open = home.create_default("open");
    let closed = home.create_default("closed");
    drop(closed);
    std::fs::create_dir_all(home.dir().join("gone.tmp-abc123")).unwrap();
    quill_ledger::remove_unused_caches(&Storage::Os, home.dir(), &|name| name == "closed");
    let mut left: Vec<String> = std::fs::read_dir(home.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["closed", "open"]);
    drop(open);
}

/// The cache on a simulated disk that loses power at a random moment during commits
/// (unsynced writes lost or torn, in any order): reopened from what the disk kept, the
/// ledger serves exactly what a cache built afresh from PostgreSQL serves, and commits.
#[test]
fn a_cache_torn_by_a_power_cut_opens_right_or_is_rebuilt() {
    let home = Home::new(Backend::Postgres);
    let store = home.store().unwrap();
    let first_seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7u64);
    for round in 0..12u64 {
        let seed = first_seed.wrapping_add(round);
        let mut rng = StdRng::seed_from_u64(seed);
        let name = format!("power-{round}");
        let disk = SimulatedDisk::new(seed);
        let options = |disk: &SimulatedDisk| LedgerOptions {
            storage: Storage::Simulated(disk.clone()),
            cache_dir: Some(PathBuf::from("/cache")),
            ..LedgerOptions::default()
        };
        {
            let ledger = Ledger::create_in(store, &name, options(&disk)).unwrap();
            create_table(&ledger);
            if rng.gen_bool(0.5) {
                disk.cut_power_after(rng.gen_range(0..400));
            } else {
                disk.cut_power_at_sync(rng.gen_range(0..20));
            }
            for k in 0..30 {
                // After the cut, derived-state writes fail: the handle turns read-only.
                if ledger
                    .transact(|tx| tx.insert("T", ion(&format!("{{k: {k}}}"))))
                    .is_err()
                {
                    break;
                }
                if k % 10 == 9 {
                    // Past the committer's idle delay: a durable checkpoint may be cut.
                    std::thread::sleep(std::time::Duration::from_millis(60));
                }
            }
            disk.cut_power();
        }
        let rebooted = disk.after_power_cut(seed.wrapping_add(1)).unwrap();
        let ledger = Ledger::open_in(store, &name, options(&rebooted))
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): reopen failed: {e}"));
        let fresh = Ledger::open_in(store, &name, LedgerOptions::default()).unwrap();
        assert_eq!(ledger.digest(), fresh.digest(), "seed {seed}");
        let expected = documents(&fresh);
        assert_eq!(documents(&ledger), expected, "seed {seed}");
        for (_, data) in expected.values() {
            let k = data
                .as_struct()
                .unwrap()
                .get("k")
                .unwrap()
                .as_i64()
                .unwrap();
            assert_eq!(lookup(&ledger, k), 1, "seed {seed}: k = {k}");
        }
        assert_eq!(
            ledger.verify(&mut |_, _| {}).unwrap(),
            blocks(&fresh.digest())
        );
        drop(fresh);
        insert(&ledger, 1000, 1);
        assert_eq!(lookup(&ledger, 1000), 1, "seed {seed}");
    }
}
