//! Power loss under the ledger registry: ledgers are created, deleted and their control
//! records (`control.json`) updated on a simulated disk that loses power at a random moment,
//! dropping or tearing every write and directory change that was not fsynced. The registry is
//! then reopened from what survived and must be consistent:
//! - every ledger it lists opens (none is `FAILED`), verifies, and takes a commit;
//! - every acknowledged creation, deletion and control-record update is there;
//! - the one operation the power cut interrupted is either wholly done or not at all;
//! - the leftovers of an interrupted creation or deletion do not block a new ledger of that name.
//!
//! Each round is seeded; `QUILL_POWER_LOSS_SEED` sets the first round's seed (default: from
//! `PROPTEST_RNG_SEED`, which CI pins, else the clock) and `QUILL_POWER_LOSS_ROUNDS` the number
//! of rounds; a failing round prints its seed.

use std::collections::BTreeMap;
use std::path::Path;

use quill_ledger::storage::{SimulatedDisk, Storage};
use quill_ledger::LedgerOptions;
use quill_server::registry::{NewLedger, Registry, AWS_OWNED_KMS_KEY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED_ENV: &str = "QUILL_POWER_LOSS_SEED";
const ROUNDS_ENV: &str = "QUILL_POWER_LOSS_ROUNDS";
const DEFAULT_ROUNDS: u64 = 120;
const DATA_DIR: &str = "/data";
const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const OPERATIONS: usize = 12;
/// The cut point is drawn below this many mutating disk calls (a ledger creation makes
/// about 60, an update or a deletion a handful), so most rounds lose power mid-workload and
/// some only after it.
const CUT_AFTER_CALLS_MAX: u64 = 1500;
/// The same in file syncs (a ledger creation makes about 10).
const CUT_AT_SYNC_MAX: u64 = 150;
/// The cut point of a second power cut while the registry recovers, in mutating calls.
const RECOVERY_CUT_MAX: u64 = 300;

/// The tags of each ledger, standing for its whole control record.
type Ledgers = BTreeMap<String, BTreeMap<String, String>>;

/// A registry operation, with what it changes.
#[derive(Debug, Clone)]
enum Operation {
    Create(String),
    Delete(String),
    Update { name: String, version: u64 },
}

impl Operation {
    fn apply(&self, ledgers: &mut Ledgers) {
        match self {
            Operation::Create(name) => {
                ledgers.insert(name.clone(), BTreeMap::new());
            }
            Operation::Delete(name) => {
                ledgers.remove(name);
            }
            Operation::Update { name, version } => {
                let tags = ledgers
                    .get_mut(name)
                    .expect("updates touch existing ledgers");
                tags.insert("version".to_owned(), version.to_string());
            }
        }
    }

    fn run(&self, registry: &Registry) -> bool {
        match self {
            Operation::Create(name) => registry.create(new_ledger(name)).is_ok(),
            Operation::Delete(name) => registry.delete(name).is_ok(),
            Operation::Update { name, version } => registry
                .update(name, |control| {
                    control
                        .tags
                        .insert("version".to_owned(), version.to_string());
                    Ok(())
                })
                .is_ok(),
        }
    }
}

fn new_ledger(name: &str) -> NewLedger {
    NewLedger {
        name: name.to_owned(),
        permissions_mode: "ALLOW_ALL".to_owned(),
        deletion_protection: false,
        kms_key: AWS_OWNED_KMS_KEY.to_owned(),
        tags: BTreeMap::new(),
    }
}

fn options(disk: &SimulatedDisk) -> LedgerOptions {
    LedgerOptions {
        storage: Storage::Simulated(disk.clone()),
        ..LedgerOptions::default()
    }
}

/// A valid next operation for a registry holding `ledgers`.
fn next_operation(rng: &mut StdRng, ledgers: &Ledgers, version: u64) -> Operation {
    let absent: Vec<&str> = NAMES
        .into_iter()
        .filter(|name| !ledgers.contains_key(*name))
        .collect();
    let present: Vec<&String> = ledgers.keys().collect();
    let roll = rng.gen_range(0..100);
    if present.is_empty() || (!absent.is_empty() && roll < 40) {
        Operation::Create(absent[rng.gen_range(0..absent.len())].to_owned())
    } else if roll < 65 {
        Operation::Delete(present[rng.gen_range(0..present.len())].clone())
    } else {
        let name = present[rng.gen_range(0..present.len())].clone();
        Operation::Update { name, version }
    }
}

/// Runs operations until the power is cut (or the workload ends, then cuts it). Returns the
/// acknowledged state and the operation the cut interrupted, if any.
fn run_until_power_cut(disk: &SimulatedDisk, seed: u64) -> (Ledgers, Option<Operation>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let root = Storage::Simulated(disk.clone());
    root.create_dir_all(Path::new(DATA_DIR)).unwrap();
    root.sync_dir(Path::new("/")).unwrap();
    if rng.gen_bool(0.5) {
        disk.cut_power_after(rng.gen_range(0..CUT_AFTER_CALLS_MAX));
    } else {
        disk.cut_power_at_sync(rng.gen_range(0..CUT_AT_SYNC_MAX));
    }
    let mut acknowledged = Ledgers::new();
    let Ok(mut registry) = Registry::open(Path::new(DATA_DIR), options(disk)) else {
        disk.cut_power();
        return (acknowledged, None);
    };
    for version in 0..OPERATIONS as u64 {
        let operation = next_operation(&mut rng, &acknowledged, version);
        if !operation.run(&registry) {
            assert!(
                disk.is_power_cut(),
                "{operation:?} failed with the power on"
            );
            disk.cut_power();
            return (acknowledged, Some(operation));
        }
        operation.apply(&mut acknowledged);
        if rng.gen_range(0..6) == 0 {
            // A restart with the power on sees the same ledgers.
            drop(registry);
            registry = match Registry::open(Path::new(DATA_DIR), options(disk)) {
                Ok(registry) if !disk.is_power_cut() => registry,
                _ => {
                    disk.cut_power();
                    return (acknowledged, None);
                }
            };
            assert_eq!(registry_state(&registry), acknowledged);
        }
    }
    disk.cut_power();
    (acknowledged, None)
}

/// The ledgers a registry lists, with their tags, after checking none is failed.
fn registry_state(registry: &Registry) -> Ledgers {
    let faults = registry.faults();
    assert!(
        faults.is_empty(),
        "ledgers listed but not served: {faults:?}"
    );
    registry
        .list()
        .into_iter()
        .map(|control| {
            assert_eq!(control.state, "ACTIVE", "{control:?}");
            (control.name, control.tags)
        })
        .collect()
}

fn check_after_power_cut(
    disk: &SimulatedDisk,
    acknowledged: &Ledgers,
    interrupted: Option<&Operation>,
    seed: u64,
) {
    let mut rebooted = disk
        .after_power_cut(seed.wrapping_add(1))
        .expect("the power was cut");
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(2));
    if rng.gen_bool(0.5) {
        // The power fails again while the registry recovers (finishing deletions, opening
        // and repairing ledgers) or soon after: recovery must be repeatable.
        rebooted.cut_power_after(rng.gen_range(0..RECOVERY_CUT_MAX));
        drop(Registry::open(Path::new(DATA_DIR), options(&rebooted)));
        rebooted.cut_power();
        rebooted = rebooted
            .after_power_cut(seed.wrapping_add(3))
            .expect("the power was cut");
    }
    let registry = Registry::open(Path::new(DATA_DIR), options(&rebooted))
        .expect("the registry reopens after a power cut");
    let found = registry_state(&registry);
    let mut completed = acknowledged.clone();
    if let Some(operation) = interrupted {
        operation.apply(&mut completed);
    }
    assert!(
        found == *acknowledged || found == completed,
        "after the power cut the registry holds {found:?}; acknowledged {acknowledged:?}, \
         interrupted {interrupted:?}"
    );
    for name in found.keys() {
        let (ledger, _) = registry.get(name).expect("a listed ledger is served");
        let blocks = ledger.verify(&mut |_, _| {}).expect("the ledger verifies");
        ledger
            .transact(|tx| tx.create_table("Recovered", None))
            .expect("the ledger takes commits");
        assert_eq!(ledger.verify(&mut |_, _| {}).unwrap(), blocks + 1);
    }
    // Leftovers of an interrupted creation or deletion do not block the name.
    for name in NAMES.into_iter().filter(|name| !found.contains_key(*name)) {
        registry
            .create(new_ledger(name))
            .unwrap_or_else(|error| panic!("creating {name} after the power cut: {error:?}"));
    }
    for name in NAMES {
        registry.delete(name).expect("deleting after the power cut");
    }
    drop(registry);
    let reopened = Registry::open(Path::new(DATA_DIR), options(&rebooted)).unwrap();
    assert!(registry_state(&reopened).is_empty());
    let left = Storage::Simulated(rebooted)
        .list_dir(&Path::new(DATA_DIR).join("ledgers"))
        .unwrap();
    assert!(left.is_empty(), "deleted ledgers' files remain: {left:?}");
}

fn round(seed: u64) {
    let disk = SimulatedDisk::new(seed);
    let (acknowledged, interrupted) = run_until_power_cut(&disk, seed);
    check_after_power_cut(&disk, &acknowledged, interrupted.as_ref(), seed);
}

/// Prints the seed of a failing round (the panic unwinds through it).
struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "registry power-loss round failed: replay with {SEED_ENV}={} {ROUNDS_ENV}=1",
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
fn registry_changes_survive_power_loss_whole_or_not_at_all() {
    let first_seed = env_u64(SEED_ENV)
        .or_else(|| env_u64("PROPTEST_RNG_SEED"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    let rounds = env_u64(ROUNDS_ENV).unwrap_or(DEFAULT_ROUNDS);
    eprintln!("registry power-loss rounds: {rounds} from seed {first_seed}");
    for seed in first_seed..first_seed + rounds {
        let _report = SeedReport(seed);
        round(seed);
    }
}
