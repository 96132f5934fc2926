//! Randomized serializability check: several threads run a mixed bank workload (indexed reads,
//! scans, inserts, updates, deletes, read-only audits) on one ledger; every transaction's reads
//! and writes are recorded, then the history is checked against a sequential model.
//!
//! The check: writers are replayed in block order; each must have read exactly the model's
//! state before its block (a lost update, write skew or stale read shows as a mismatch), and a
//! writer acknowledged before another began committing must have the earlier block. A
//! read-only transaction must have read the model's state at some point between the writers
//! acknowledged before its commit began and the writers that began committing after it
//! returned: it serialises at its commit, as QLDB's validation of read-only transactions
//! implies.
//!
//! `QUILL_SERIALIZABILITY_TXNS` sets how many transactions must commit (default 10,000).
//!
//! On PostgreSQL the workload runs over two servers (two handles of one ledger), which covers
//! one server too; the checker's own test (the old holes reopened) needs one backend only.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError, LedgerOptions, Result, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ACCOUNTS: usize = 6;
const THREADS: usize = 6;
const INITIAL_BALANCE: i64 = 100;
/// Most `Log` entries one compaction deletes (QLDB allows 40 documents per transaction).
const COMPACT_MAX: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Indexed reads of two accounts, updates of both.
    Transfer,
    /// Indexed reads of three accounts; moves money from the first to the third if the first
    /// two together hold enough: the second is read, not written (write skew bait).
    GuardedMove,
    /// Indexed read of one account, insert into `Log` (a write elsewhere).
    IndexedReadThenLog,
    /// Scan of `Acct`, insert into `Log`.
    ScanThenLog,
    /// Indexed read of one account, delete of its document, insert of a new one with the same
    /// key and balance.
    Reopen,
    /// Scan of `Log`, delete of what was seen (up to `COMPACT_MAX` entries).
    Compact,
    /// Read-only: indexed reads of a few accounts.
    IndexedAudit,
    /// Read-only: scans of `Acct` and `Log`.
    ScanAudit,
}

const KINDS: [Kind; 8] = [
    Kind::Transfer,
    Kind::GuardedMove,
    Kind::IndexedReadThenLog,
    Kind::ScanThenLog,
    Kind::Reopen,
    Kind::Compact,
    Kind::IndexedAudit,
    Kind::ScanAudit,
];

/// One committed transaction as its client saw it.
#[derive(Debug, Clone)]
struct Recorded {
    kind: Kind,
    /// Balances read, by account.
    reads: Vec<(usize, i64)>,
    /// Tags of `Log` seen by a scan of it.
    log_seen: Option<BTreeSet<u64>>,
    /// New balances written, by account.
    writes: Vec<(usize, i64)>,
    log_inserted: Option<u64>,
    log_deleted: Vec<u64>,
    /// Block written; `None` for a transaction that wrote nothing.
    sequence_no: Option<u64>,
    commit_called: Instant,
    acknowledged: Instant,
}

/// What the clients observed that no correct ledger can show, besides the model check.
#[derive(Debug, Default)]
struct Observed {
    committed: AtomicUsize,
    conflicts: AtomicUsize,
    history: Mutex<Vec<Recorded>>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    writers: usize,
    read_only: usize,
    conflicts: usize,
    by_kind: Vec<(Kind, usize)>,
    /// Writers whose reads differ from the model's state before their block.
    stale_writers: usize,
    /// Read-only transactions whose reads match no allowed point.
    stale_read_only: usize,
    /// Writers ordered against real time (acknowledged before another began, yet later).
    reordered_writers: usize,
}

fn account_key(n: usize) -> String {
    format!("a{n}")
}

fn field<'a>(doc: &'a Element, name: &str) -> &'a Element {
    doc.as_struct()
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("{name} missing in {doc:?}"))
}

/// Reads account `n` through the index: (document id, balance). Exactly one document holds
/// each key at any time.
fn read_account(tx: &mut Transaction, n: usize) -> Result<(String, i64)> {
    let found = tx
        .index_lookup("Acct", "id", &Element::string(account_key(n)))?
        .expect("Acct is indexed on id");
    assert_eq!(found.len(), 1, "account {n}: {found:?}");
    let doc = &found[0];
    Ok((doc.id.clone(), field(&doc.data, "bal").as_i64().unwrap()))
}

/// Scans `Acct`: balance and document id of every account, each present once.
fn scan_accounts(tx: &mut Transaction) -> Result<Vec<(String, i64)>> {
    let mut accounts: Vec<Option<(String, i64)>> = vec![None; ACCOUNTS];
    tx.scan("Acct", &mut |doc| {
        let data = doc.decode()?;
        let key = field(&data, "id").as_text().unwrap();
        let n: usize = key[1..].parse().unwrap();
        assert!(accounts[n].is_none(), "account {n} seen twice");
        accounts[n] = Some((doc.id.to_owned(), field(&data, "bal").as_i64().unwrap()));
        Ok(true)
    })?;
    Ok(accounts
        .into_iter()
        .map(|a| a.expect("every account is present"))
        .collect())
}

/// Scans `Log`: (document id, tag) of every entry.
fn scan_log(tx: &mut Transaction) -> Result<Vec<(String, u64)>> {
    let mut entries = Vec::new();
    tx.scan("Log", &mut |doc| {
        let data = doc.decode()?;
        let tag = field(&data, "tag").as_i64().unwrap() as u64;
        entries.push((doc.id.to_owned(), tag));
        Ok(true)
    })?;
    Ok(entries)
}

fn account(n: usize, balance: i64) -> Element {
    Element::read_one(format!("{{id: \"{}\", bal: {balance}}}", account_key(n)).as_bytes()).unwrap()
}

fn log_entry(tag: u64, seen: i64) -> Element {
    Element::read_one(format!("{{tag: {tag}, seen: {seen}}}").as_bytes()).unwrap()
}

/// Two or three distinct accounts.
fn distinct(rng: &mut StdRng, count: usize) -> Vec<usize> {
    let mut picked = Vec::with_capacity(count);
    while picked.len() < count {
        let n = rng.gen_range(0..ACCOUNTS);
        if !picked.contains(&n) {
            picked.push(n);
        }
    }
    picked
}

/// Runs the body of one transaction of `kind`, filling `record` with what it read and wrote.
fn run_body(
    tx: &mut Transaction,
    kind: Kind,
    rng: &mut StdRng,
    next_tag: &mut u64,
    record: &mut Recorded,
) -> Result<()> {
    match kind {
        Kind::Transfer => {
            let picked = distinct(rng, 2);
            let (from_doc, from) = read_account(tx, picked[0])?;
            let (to_doc, to) = read_account(tx, picked[1])?;
            record.reads = vec![(picked[0], from), (picked[1], to)];
            let amount = rng.gen_range(1..=20);
            if from >= amount {
                tx.update("Acct", &from_doc, account(picked[0], from - amount))?;
                tx.update("Acct", &to_doc, account(picked[1], to + amount))?;
                record.writes = vec![(picked[0], from - amount), (picked[1], to + amount)];
            }
        }
        Kind::GuardedMove => {
            let picked = distinct(rng, 3);
            let mut read = Vec::new();
            for &n in &picked {
                read.push(read_account(tx, n)?);
            }
            record.reads = picked.iter().zip(&read).map(|(&n, r)| (n, r.1)).collect();
            let amount = rng.gen_range(1..=30);
            if read[0].1 + read[1].1 >= amount {
                let (from, to) = (read[0].1 - amount, read[2].1 + amount);
                tx.update("Acct", &read[0].0, account(picked[0], from))?;
                tx.update("Acct", &read[2].0, account(picked[2], to))?;
                record.writes = vec![(picked[0], from), (picked[2], to)];
            }
        }
        Kind::IndexedReadThenLog => {
            let n = rng.gen_range(0..ACCOUNTS);
            let (_, balance) = read_account(tx, n)?;
            record.reads = vec![(n, balance)];
            *next_tag += 1;
            tx.insert("Log", log_entry(*next_tag, balance))?;
            record.log_inserted = Some(*next_tag);
        }
        Kind::ScanThenLog => {
            let accounts = scan_accounts(tx)?;
            record.reads = accounts.iter().enumerate().map(|(n, a)| (n, a.1)).collect();
            *next_tag += 1;
            let total = accounts.iter().map(|a| a.1).sum();
            tx.insert("Log", log_entry(*next_tag, total))?;
            record.log_inserted = Some(*next_tag);
        }
        Kind::Reopen => {
            let n = rng.gen_range(0..ACCOUNTS);
            let (doc, balance) = read_account(tx, n)?;
            record.reads = vec![(n, balance)];
            tx.delete("Acct", &doc)?;
            tx.insert("Acct", account(n, balance))?;
            record.writes = vec![(n, balance)];
        }
        Kind::Compact => {
            let entries = scan_log(tx)?;
            // Within the per-transaction document limit, even when compactions keep losing
            // conflicts to inserts and `Log` grows.
            for (doc, tag) in entries.iter().take(COMPACT_MAX) {
                tx.delete("Log", doc)?;
                record.log_deleted.push(*tag);
            }
            record.log_seen = Some(entries.into_iter().map(|e| e.1).collect());
        }
        Kind::IndexedAudit => {
            let count = rng.gen_range(1..=3);
            for n in distinct(rng, count) {
                let (_, balance) = read_account(tx, n)?;
                record.reads.push((n, balance));
            }
        }
        Kind::ScanAudit => {
            let accounts = scan_accounts(tx)?;
            record.reads = accounts.iter().enumerate().map(|(n, a)| (n, a.1)).collect();
            record.log_seen = Some(scan_log(tx)?.into_iter().map(|e| e.1).collect());
        }
    }
    Ok(())
}

fn client(ledger: &Ledger, thread: usize, seed: u64, target: usize, observed: &Observed) {
    let mut rng = StdRng::seed_from_u64(seed);
    // Tags are unique across threads: the thread number in the high bits.
    let mut next_tag = (thread as u64) << 40;
    let mut history = Vec::new();
    while observed.committed.load(Ordering::Relaxed) < target {
        let kind = KINDS[rng.gen_range(0..KINDS.len())];
        let mut record = Recorded {
            kind,
            reads: Vec::new(),
            log_seen: None,
            writes: Vec::new(),
            log_inserted: None,
            log_deleted: Vec::new(),
            sequence_no: None,
            commit_called: Instant::now(),
            acknowledged: Instant::now(),
        };
        let mut tx = ledger.begin().unwrap();
        run_body(&mut tx, kind, &mut rng, &mut next_tag, &mut record).unwrap();
        // Sometimes hold the transaction open, so others commit in between.
        if rng.gen_range(0..4) == 0 {
            std::thread::sleep(Duration::from_micros(rng.gen_range(50..500)));
        }
        record.commit_called = Instant::now();
        match tx.commit() {
            Ok(receipt) => {
                record.acknowledged = Instant::now();
                record.sequence_no = receipt.block_address.map(|a| a.sequence_no);
                history.push(record);
                observed.committed.fetch_add(1, Ordering::Relaxed);
            }
            Err(LedgerError::OccConflict { .. }) => {
                observed.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("{kind:?}: {e}"),
        }
    }
    observed.history.lock().unwrap().extend(history);
}

/// Model state at one point of the block order.
#[derive(Debug, Clone)]
struct State {
    balances: [i64; ACCOUNTS],
    log: BTreeSet<u64>,
}

impl State {
    fn matches(&self, record: &Recorded) -> bool {
        record.reads.iter().all(|&(n, b)| self.balances[n] == b)
            && record
                .log_seen
                .as_ref()
                .is_none_or(|seen| *seen == self.log)
    }
}

/// Checks a history that started from `ACCOUNTS` accounts at `INITIAL_BALANCE`, an empty
/// `Log`, and block `first` as the first block of the workload.
fn check(history: Vec<Recorded>, first: u64, conflicts: usize) -> Report {
    let mut report = Report {
        conflicts,
        ..Report::default()
    };
    for kind in KINDS {
        report
            .by_kind
            .push((kind, history.iter().filter(|r| r.kind == kind).count()));
    }
    let (mut writers, read_only): (Vec<Recorded>, Vec<Recorded>) =
        history.into_iter().partition(|r| r.sequence_no.is_some());
    writers.sort_by_key(|r| r.sequence_no);
    report.writers = writers.len();
    report.read_only = read_only.len();
    for (position, w) in writers.iter().enumerate() {
        assert_eq!(
            w.sequence_no,
            Some(first + position as u64),
            "every block belongs to exactly one acknowledged writer"
        );
    }

    // states[p]: the model after the first p writers.
    let mut state = State {
        balances: [INITIAL_BALANCE; ACCOUNTS],
        log: BTreeSet::new(),
    };
    let mut states = Vec::with_capacity(writers.len() + 1);
    for w in &writers {
        if !state.matches(w) {
            report.stale_writers += 1;
        }
        states.push(state.clone());
        for &(n, b) in &w.writes {
            state.balances[n] = b;
        }
        state.log.extend(w.log_inserted);
        for tag in &w.log_deleted {
            state.log.remove(tag);
        }
    }
    states.push(state);

    // Real time. By acknowledgement: the highest position among the first i acknowledged.
    let mut by_ack: Vec<(Instant, usize)> = writers
        .iter()
        .enumerate()
        .map(|(p, w)| (w.acknowledged, p))
        .collect();
    by_ack.sort();
    let mut highest_acked = Vec::with_capacity(by_ack.len());
    let mut highest = None;
    for &(_, p) in &by_ack {
        highest = highest.max(Some(p));
        highest_acked.push(highest);
    }
    // Positions every writer acknowledged before `t` precede: the lowest allowed position.
    let after_acked_before = |t: Instant| {
        let acked = by_ack.partition_point(|&(a, _)| a < t);
        acked
            .checked_sub(1)
            .and_then(|i| highest_acked[i])
            .map_or(0, |p| p + 1)
    };
    // By commit call: the lowest position among writers called at or after `t`.
    let mut by_call: Vec<(Instant, usize)> = writers
        .iter()
        .enumerate()
        .map(|(p, w)| (w.commit_called, p))
        .collect();
    by_call.sort();
    let mut lowest_called_from = vec![writers.len(); by_call.len() + 1];
    for i in (0..by_call.len()).rev() {
        lowest_called_from[i] = lowest_called_from[i + 1].min(by_call[i].1);
    }
    let before_called_after =
        |t: Instant| lowest_called_from[by_call.partition_point(|&(c, _)| c <= t)];

    for (position, w) in writers.iter().enumerate() {
        if after_acked_before(w.commit_called) > position {
            report.reordered_writers += 1;
        }
    }
    for r in &read_only {
        let low = after_acked_before(r.commit_called);
        let high = before_called_after(r.acknowledged).max(low);
        if !(low..=high).any(|p| states[p].matches(r)) {
            report.stale_read_only += 1;
        }
    }
    report
}

/// Runs the workload until `target` transactions committed; returns the checked report.
fn run(options: LedgerOptions, target: usize, seed: u64) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "serializable", options).unwrap();
    run_on(&[ledger], target, seed)
}

/// Runs the workload on a new ledger, client `t` using handle `t % handles.len()` (several
/// handles of one PostgreSQL ledger act as several servers).
fn run_on(handles: &[Ledger], target: usize, seed: u64) -> Report {
    let ledger = &handles[0];
    ledger
        .transact(|tx| {
            tx.create_table("Acct", None)?;
            tx.create_table("Log", None)?;
            tx.create_index("Acct", "id")?;
            for n in 0..ACCOUNTS {
                tx.insert("Acct", account(n, INITIAL_BALANCE))?;
            }
            Ok(())
        })
        .unwrap();
    let first = ledger.digest().tip.sequence_no + 1;
    let observed = Arc::new(Observed::default());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let ledger = handles[t % handles.len()].clone();
            let observed = Arc::clone(&observed);
            std::thread::spawn(move || client(&ledger, t, seed + t as u64, target, &observed))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let history = std::mem::take(&mut *observed.history.lock().unwrap());
    check(history, first, observed.conflicts.load(Ordering::Relaxed))
}

fn target() -> usize {
    std::env::var("QUILL_SERIALIZABILITY_TXNS")
        .ok()
        .map(|v| v.parse().expect("QUILL_SERIALIZABILITY_TXNS is a number"))
        .unwrap_or(10_000)
}

#[test]
fn a_mixed_concurrent_workload_is_serializable() {
    let started = Instant::now();
    let report = run(LedgerOptions::default(), target(), 1);
    println!(
        "serializability: {} committed ({} writers, {} read-only), {} OCC conflicts, by kind {:?}, \
         checked in {:.1?}",
        report.writers + report.read_only,
        report.writers,
        report.read_only,
        report.conflicts,
        report.by_kind,
        started.elapsed()
    );
    assert!(report.writers + report.read_only >= target());
    for (kind, count) in &report.by_kind {
        assert!(*count > 0, "no {kind:?} committed");
    }
    assert_eq!(
        (
            report.stale_writers,
            report.stale_read_only,
            report.reordered_writers
        ),
        (0, 0, 0),
        "{report:?}"
    );
}

/// The checker is real: with the old holes reopened (index lookups guarding only their key,
/// read-only transactions committing unchecked) it finds both kinds of anomaly.
#[test]
fn the_checker_detects_the_old_holes() {
    let options = LedgerOptions {
        occ_read_holes: true,
        ..LedgerOptions::default()
    };
    let mut found = (0, 0);
    for seed in 0..10 {
        let report = run(options.clone(), 2_000, 100 + seed);
        println!("with the holes reopened: {report:?}");
        assert_eq!(report.reordered_writers, 0, "{report:?}");
        found.0 += report.stale_writers;
        found.1 += report.stale_read_only;
        if found.0 > 0 && found.1 > 0 {
            return;
        }
    }
    panic!("the checker missed an anomaly: stale writers, stale read-only = {found:?}");
}

/// The same check with the journal in PostgreSQL and the clients spread over two servers
/// (two handles, each with its own committer, cache and conflict log).
#[test]
fn a_mixed_workload_over_two_postgres_servers_is_serializable() {
    let store = quill_ledger::PostgresStore::connect(&common::postgres_url()).unwrap();
    let name = format!("serializable-{}", std::process::id());
    let a = Ledger::create_in(&store, &name, LedgerOptions::default()).unwrap();
    let b = Ledger::open_in(&store, &name, LedgerOptions::default()).unwrap();
    let target = (target() / 5).max(500);
    let report = run_on(&[a, b], target, 7);
    println!("serializability over two PostgreSQL servers: {report:?}");
    assert!(report.writers + report.read_only >= target);
    assert_eq!(
        (
            report.stale_writers,
            report.stale_read_only,
            report.reordered_writers
        ),
        (0, 0, 0),
        "{report:?}"
    );
}
