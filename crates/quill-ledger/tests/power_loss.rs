//! Power loss: a ledger on a simulated disk loses power at a random moment, losing or tearing
//! any write that was not fsynced (in any order) and any directory change whose directory was
//! not fsynced; it is then reopened and must hold every acknowledged commit, verify (hash
//! chain and digest tree), and hold derived state equal to a replay of its journal.
//!
//! Each round is seeded. `QUILL_POWER_LOSS_SEED` sets the first round's seed (default: from
//! `PROPTEST_RNG_SEED`, which CI pins, else the clock) and `QUILL_POWER_LOSS_ROUNDS` the number
//! of rounds; a failing round prints its seed. A round with one writer thread replays exactly
//! from its seed; with more, thread interleavings vary between runs.
//!
//! Layers covered: the journal, the digest tree, the derived-state database (redb) and
//! `ledger.ion`, all on the simulated disk.
//!
//! Embedded only: these are the embedded backend's files. A PostgreSQL ledger's journal is
//! as durable as PostgreSQL's COMMIT (a killed PostgreSQL primary:
//! tests/python/test_postgres_backend.py), and its server keeps only a cache, checked and
//! rebuilt if need be after a power cut (tests/pg_cache.rs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use ion_rs::Element;
use quill_ledger::storage::{SimulatedDisk, Storage};
use quill_ledger::{Ledger, LedgerError, LedgerOptions, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED_ENV: &str = "QUILL_POWER_LOSS_SEED";
const ROUNDS_ENV: &str = "QUILL_POWER_LOSS_ROUNDS";
const DEFAULT_ROUNDS: u64 = 200;
const LEDGER_DIR: &str = "/ledger";
const TRANSACTIONS_PER_THREAD: usize = 24;
const DOCUMENT_PADDING_MAX: usize = 1500;
/// The cut point is drawn below this many mutating disk calls per writer thread (plus
/// `CUT_AFTER_CALLS_BASE`): a full workload makes about 240 per thread plus 90, so most
/// rounds lose power mid-workload and some only once it is over (with writes unsynced).
const CUT_AFTER_CALLS_PER_THREAD: u64 = 240;
const CUT_AFTER_CALLS_BASE: u64 = 120;
/// The same for rounds that cut the power at a file sync (when the most writes are unsynced):
/// a full workload makes about 24 per thread plus 10.
const CUT_AT_SYNC_PER_THREAD: u64 = 24;
const CUT_AT_SYNC_BASE: u64 = 16;
/// Longer than the committer's idle delay, so the pause triggers an idle durable checkpoint
/// (derived state and digest tree fsynced) that the power cut may then interrupt or follow.
const IDLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(70);

/// One change a transaction made, as the model replays it.
#[derive(Debug, Clone)]
enum Change {
    CreateTable(String),
    CreateIndex {
        table: String,
        field: String,
    },
    Put {
        table: String,
        id: String,
        value: i64,
    },
    Delete {
        table: String,
        id: String,
    },
}

/// What the ledger should hold: tables with their indexed fields, and live documents.
#[derive(Debug, Default, PartialEq)]
struct Model {
    tables: BTreeMap<String, BTreeSet<String>>,
    documents: BTreeMap<(String, String), i64>,
}

impl Model {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::CreateTable(table) => {
                self.tables.entry(table.clone()).or_default();
            }
            Change::CreateIndex { table, field } => {
                self.tables
                    .get_mut(table)
                    .expect("indexes are created on existing tables")
                    .insert(field.clone());
            }
            Change::Put { table, id, value } => {
                self.documents.insert((table.clone(), id.clone()), *value);
            }
            Change::Delete { table, id } => {
                self.documents.remove(&(table.clone(), id.clone()));
            }
        }
    }
}

/// Every transaction that tried to commit, by id: acknowledged ones with their block.
#[derive(Debug, Default)]
struct Log {
    attempts: HashMap<String, Vec<Change>>,
    acknowledged: Vec<(String, u64)>,
}

/// Shared by the writer threads: tables whose creation was acknowledged.
#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Log>,
    tables: Mutex<Vec<String>>,
}

fn options(disk: &SimulatedDisk) -> LedgerOptions {
    LedgerOptions {
        storage: Storage::Simulated(disk.clone()),
        ..LedgerOptions::default()
    }
}

/// A document holding `value`, padded so that its frame spans several disk sectors (an
/// unsynced batch can then reach the disk out of order); the padding holds the frame magic.
fn value_element(value: i64, padding: usize) -> Element {
    let padding = "QJFR-".repeat(padding / 5);
    let text = format!("{{v: {value}, f: {}, p: \"{padding}\"}}", value % 3);
    Element::read_one(text.as_bytes()).unwrap()
}

/// Runs `body` in a transaction and commits it, logging the attempt and, if acknowledged,
/// its block. Returns whether it was acknowledged.
fn attempt(
    ledger: &Ledger,
    shared: &Shared,
    body: impl FnOnce(&mut Transaction, &mut Vec<Change>) -> quill_ledger::Result<()>,
) -> bool {
    let Ok(mut tx) = ledger.begin() else {
        return false;
    };
    let mut changes = Vec::new();
    if body(&mut tx, &mut changes).is_err() {
        return false;
    }
    let id = tx.id().to_owned();
    shared
        .log
        .lock()
        .unwrap()
        .attempts
        .insert(id.clone(), changes);
    match tx.commit() {
        Ok(receipt) => {
            let block = receipt.block_address.expect("a write leaves a block");
            shared
                .log
                .lock()
                .unwrap()
                .acknowledged
                .push((id, block.sequence_no));
            true
        }
        Err(_) => false,
    }
}

/// One writer: inserts, updates and deletes its own documents; thread 0 also creates tables
/// and indexes. Pauses (idle ledger) before step `pause_at`.
fn writer(
    ledger: &Ledger,
    disk: &SimulatedDisk,
    shared: &Shared,
    thread: u64,
    seed: u64,
    pause_at: Option<usize>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (thread << 48));
    let mut own: Vec<(String, String)> = Vec::new();
    for step in 0..TRANSACTIONS_PER_THREAD {
        if disk.is_power_cut() {
            return;
        }
        if pause_at == Some(step) {
            std::thread::sleep(IDLE_PAUSE);
        }
        let tables = shared.tables.lock().unwrap().clone();
        let value = ((thread as i64) << 32) | step as i64;
        let padding = rng.gen_range(0..DOCUMENT_PADDING_MAX);
        let roll = rng.gen_range(0..100);
        if thread == 0 && roll < 8 {
            let table = format!("T{}", tables.len());
            let created = attempt(ledger, shared, |tx, changes| {
                tx.create_table(&table, None)?;
                changes.push(Change::CreateTable(table.clone()));
                Ok(())
            });
            if created {
                shared.tables.lock().unwrap().push(table);
            }
        } else if thread == 0 && roll < 12 {
            let table = tables[rng.gen_range(0..tables.len())].clone();
            let field = if rng.gen_bool(0.5) { "v" } else { "f" };
            attempt(ledger, shared, |tx, changes| {
                tx.create_index(&table, field)?;
                changes.push(Change::CreateIndex {
                    table: table.clone(),
                    field: field.to_owned(),
                });
                Ok(())
            });
        } else if own.is_empty() || roll < 55 {
            let table = tables[rng.gen_range(0..tables.len())].clone();
            let documents = rng.gen_range(1..=3);
            let mut inserted = Vec::new();
            let acknowledged = attempt(ledger, shared, |tx, changes| {
                for n in 0..documents {
                    let value = value + (n << 24);
                    let id = tx.insert(&table, value_element(value, padding))?;
                    changes.push(Change::Put {
                        table: table.clone(),
                        id: id.clone(),
                        value,
                    });
                    inserted.push((table.clone(), id));
                }
                Ok(())
            });
            if acknowledged {
                own.extend(inserted);
            }
        } else {
            let position = rng.gen_range(0..own.len());
            let (table, id) = own[position].clone();
            let delete = roll >= 85;
            let acknowledged = attempt(ledger, shared, |tx, changes| {
                if delete {
                    tx.delete(&table, &id)?;
                    changes.push(Change::Delete {
                        table: table.clone(),
                        id: id.clone(),
                    });
                } else {
                    tx.update(&table, &id, value_element(value, padding))?;
                    changes.push(Change::Put {
                        table: table.clone(),
                        id: id.clone(),
                        value,
                    });
                }
                Ok(())
            });
            if acknowledged && delete {
                own.swap_remove(position);
            }
        }
    }
}

/// Creates the ledger and runs the workload until it ends or the power is cut. Returns
/// whether the creation was acknowledged.
fn run_until_power_cut(disk: &SimulatedDisk, shared: &Arc<Shared>, seed: u64) -> bool {
    let mut rng = StdRng::seed_from_u64(seed);
    let threads = rng.gen_range(1..=4u64);
    let pause_at = rng
        .gen_bool(0.4)
        .then(|| rng.gen_range(0..TRANSACTIONS_PER_THREAD));
    if rng.gen_bool(0.5) {
        let calls_max = CUT_AFTER_CALLS_BASE + threads * CUT_AFTER_CALLS_PER_THREAD;
        disk.cut_power_after(rng.gen_range(0..calls_max));
    } else {
        let syncs_max = CUT_AT_SYNC_BASE + threads * CUT_AT_SYNC_PER_THREAD;
        disk.cut_power_at_sync(rng.gen_range(0..syncs_max));
    }
    let Ok(ledger) = Ledger::create(Path::new(LEDGER_DIR), "power-loss", options(disk)) else {
        disk.cut_power();
        return false;
    };
    let created = attempt(&ledger, shared, |tx, changes| {
        tx.create_table("T0", None)?;
        changes.push(Change::CreateTable("T0".to_owned()));
        Ok(())
    });
    if created {
        shared.tables.lock().unwrap().push("T0".to_owned());
        std::thread::scope(|scope| {
            for thread in 0..threads {
                let (ledger, shared) = (&ledger, &**shared);
                let pause_at = pause_at.filter(|_| thread == 0);
                scope.spawn(move || writer(ledger, disk, shared, thread, seed, pause_at));
            }
        });
    }
    disk.cut_power();
    drop(ledger);
    true
}

/// The model of the journal's transactions, in block order; checks every acknowledged
/// commit is in its block.
fn replay_journal(ledger: &Ledger, log: &Log, blocks: u64) -> Model {
    let mut transaction_ids = Vec::new();
    for sequence_no in 0..blocks {
        let block = ledger.block(sequence_no).unwrap();
        let id = block
            .as_struct()
            .and_then(|block| block.get("transactionId"))
            .and_then(Element::as_text)
            .expect("a block has a transactionId")
            .to_owned();
        transaction_ids.push(id);
    }
    for (id, sequence_no) in &log.acknowledged {
        assert!(
            *sequence_no < blocks,
            "acknowledged commit {id} in block {sequence_no} lost: the journal holds {blocks} blocks"
        );
        assert_eq!(
            &transaction_ids[*sequence_no as usize], id,
            "block {sequence_no} does not hold acknowledged commit {id}"
        );
    }
    let mut model = Model::default();
    // Block 0 records the ledger's creation.
    for (sequence_no, id) in transaction_ids.iter().enumerate().skip(1) {
        let changes = log
            .attempts
            .get(id)
            .unwrap_or_else(|| panic!("block {sequence_no} holds unknown transaction {id}"));
        for change in changes {
            model.apply(change);
        }
    }
    model
}

/// Derived state as the ledger serves it.
fn observed(ledger: &Ledger) -> Model {
    ledger
        .transact(|tx| {
            let mut model = Model::default();
            for table in tx.tables()? {
                let fields = table.indexes.iter().map(|index| index.field.clone());
                model.tables.insert(table.name.clone(), fields.collect());
                let mut ids = Vec::new();
                tx.scan(&table.name, &mut |document| {
                    ids.push(document.id.to_owned());
                    Ok(true)
                })?;
                for id in ids {
                    let document = tx.get(&table.name, &id)?.expect("scanned document exists");
                    let value = document
                        .data
                        .as_struct()
                        .and_then(|data| data.get("v"))
                        .and_then(Element::as_i64)
                        .expect("documents hold v");
                    model.documents.insert((table.name.clone(), id), value);
                }
            }
            Ok(model)
        })
        .unwrap()
}

/// Reopens the disk as it was after the power cut and checks the ledger.
fn check_after_power_cut(disk: &SimulatedDisk, shared: &Shared, created: bool, seed: u64) {
    let rebooted = disk
        .after_power_cut(seed.wrapping_add(1))
        .expect("the power was cut");
    let ledger = match Ledger::open(Path::new(LEDGER_DIR), options(&rebooted)) {
        Ok(ledger) => ledger,
        Err(LedgerError::UnknownLedger(_)) if !created => return,
        Err(error) => panic!("reopen failed (creation acknowledged: {created}): {error}"),
    };
    let blocks = ledger.verify(&mut |_, _| {}).expect("the ledger verifies");
    let log = shared.log.lock().unwrap();
    let expected = replay_journal(&ledger, &log, blocks);
    assert_eq!(
        observed(&ledger),
        expected,
        "derived state differs from the journal"
    );
    // Still writable, and the digest covers the new block.
    let tables: Vec<String> = expected.tables.keys().cloned().collect();
    if let Some(table) = tables.first() {
        ledger
            .transact(|tx| tx.insert(table, value_element(-1, 0)))
            .expect("the recovered ledger takes commits");
        assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), blocks + 1);
    }
}

fn round(seed: u64) {
    let disk = SimulatedDisk::new(seed);
    let shared = Arc::new(Shared::default());
    let created = run_until_power_cut(&disk, &shared, seed);
    check_after_power_cut(&disk, &shared, created, seed);
}

/// Prints the seed of a failing round (the panic unwinds through it).
struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "power-loss round failed: replay with {SEED_ENV}={} {ROUNDS_ENV}=1",
                self.0
            );
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number")),
    )
}

#[test]
fn acknowledged_commits_survive_power_loss() {
    let first_seed = env_u64(SEED_ENV)
        .or_else(|| env_u64("PROPTEST_RNG_SEED"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    let rounds = env_u64(ROUNDS_ENV).unwrap_or(DEFAULT_ROUNDS);
    eprintln!("power-loss rounds: {rounds} from seed {first_seed}");
    for seed in first_seed..first_seed + rounds {
        let _report = SeedReport(seed);
        round(seed);
    }
}
