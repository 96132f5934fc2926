//! Side-by-side benchmark of `redb` and `fjall` on Quill's derived-state workload
//! (see `crates/quill-ledger/src/state.rs`): DOCS, HISTORY and INDEX tables written in
//! batches of 32 documents, non-durable commits with a durable checkpoint every second.
//!
//! Without `--engine`, the tool spawns itself once per engine and round (alternating the
//! order), so each engine's peak RSS is its own, and prints the median of the rounds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// Documents per write transaction / write batch.
const BATCH: usize = 32;
/// A durable commit at least this often (Quill's `STATE_CHECKPOINT_INTERVAL`).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Block cache for both engines: Quill's `STATE_CACHE_BYTES`.
const CACHE_BYTES: usize = 128 * 1024 * 1024;
/// The indexed field.
const FIELD: &str = "VIN";

#[derive(Clone, Debug)]
struct Params {
    docs: usize,
    seconds: f64,
    reads: usize,
    rounds: usize,
    dir: PathBuf,
    seed: u64,
    engine: Option<Engine>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Redb,
    Fjall,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Redb => "redb",
            Engine::Fjall => "fjall",
        }
    }
}

const USAGE: &str = "usage: state-store-bench [--docs N] [--seconds S] [--reads N] [--rounds R] \
[--dir PATH] [--seed N] [--engine redb|fjall]";

fn parse_args() -> Params {
    let mut p = Params {
        docs: 100_000,
        seconds: 5.0,
        reads: 20_000,
        rounds: 3,
        dir: std::env::temp_dir(),
        seed: 0x5157_494c_4c00_0001,
        engine: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        let bad = || -> ! { die(&format!("bad value for {flag}: {value}")) };
        match flag.as_str() {
            "--docs" => p.docs = value.replace('_', "").parse().unwrap_or_else(|_| bad()),
            "--seconds" => p.seconds = value.parse().unwrap_or_else(|_| bad()),
            "--reads" => p.reads = value.replace('_', "").parse().unwrap_or_else(|_| bad()),
            "--rounds" => p.rounds = value.parse().unwrap_or_else(|_| bad()),
            "--dir" => p.dir = PathBuf::from(&value),
            "--seed" => p.seed = value.parse().unwrap_or_else(|_| bad()),
            "--engine" => {
                p.engine = Some(match value.as_str() {
                    "redb" => Engine::Redb,
                    "fjall" => Engine::Fjall,
                    _ => bad(),
                })
            }
            _ => die(&format!("unknown flag {flag}")),
        }
    }
    if p.docs < BATCH || p.rounds == 0 || p.reads == 0 {
        die("--docs must be >= 32, --rounds and --reads >= 1");
    }
    p
}

fn die(msg: &str) -> ! {
    eprintln!("{msg}\n{USAGE}");
    std::process::exit(2)
}

// ---------------------------------------------------------------------------------------------
// Data generation (mirrors state.rs / ids.rs)
// ---------------------------------------------------------------------------------------------

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_LEN: usize = 22;
const PREFIX_DIGITS: usize = 7;

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A Quill id: 7 base62 digits of milliseconds since the epoch, then 15 random digits.
fn new_id(rng: &mut Rng) -> String {
    let mut prefix = now_millis();
    let mut random = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    let mut out = [b'0'; ID_LEN];
    for slot in out[PREFIX_DIGITS..].iter_mut().rev() {
        *slot = BASE62[(random % 62) as usize];
        random /= 62;
    }
    for slot in out[..PREFIX_DIGITS].iter_mut().rev() {
        *slot = BASE62[(prefix % 62) as usize];
        prefix /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

fn random_chars(rng: &mut Rng, alphabet: &[u8], n: usize, out: &mut Vec<u8>) {
    for _ in 0..n {
        out.push(alphabet[rng.below(alphabet.len())]);
    }
}

const VIN_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

fn new_vin(rng: &mut Rng) -> [u8; 17] {
    let mut v = Vec::with_capacity(17);
    random_chars(rng, VIN_CHARS, 17, &mut v);
    v.try_into().expect("17")
}

/// The index key of a VIN: its Ion binary encoding (string, L=14, VarUInt 17): 19 bytes.
fn index_key(vin: &[u8; 17]) -> Vec<u8> {
    let mut k = vec![0x8e, 0x80 | 17];
    k.extend_from_slice(vin);
    k
}

/// An Ion-binary-like struct of about 150 bytes: symbol ids and typed string/int fields.
/// Nothing parses it (the one-byte struct length is not a valid VarUInt past 127 bytes).
fn payload(rng: &mut Rng, vin: &[u8; 17], version: u64) -> Vec<u8> {
    const MAKES: [&str; 8] = ["Volvo", "Tesla", "Ford", "Toyota", "Honda", "BMW", "Audi", "Kia"];
    let mut body = Vec::with_capacity(160);
    let string = |body: &mut Vec<u8>, sid: u8, s: &[u8]| {
        body.push(0x80 | sid);
        if s.len() < 14 {
            body.push(0x80 | s.len() as u8);
        } else {
            body.push(0x8e);
            body.push(0x80 | s.len() as u8);
        }
        body.extend_from_slice(s);
    };
    string(&mut body, 10, vin);
    string(&mut body, 11, MAKES[rng.below(MAKES.len())].as_bytes());
    let mut tmp = Vec::new();
    random_chars(rng, LOWER, 8, &mut tmp);
    string(&mut body, 12, &tmp);
    body.extend_from_slice(&[0x8d, 0x22]);
    body.extend_from_slice(&(1990 + rng.below(35) as u16).to_be_bytes());
    tmp.clear();
    random_chars(rng, BASE62, 22, &mut tmp); // owner person id
    string(&mut body, 14, &tmp);
    tmp.clear();
    random_chars(rng, LOWER, 9, &mut tmp);
    tmp.push(b' ');
    random_chars(rng, LOWER, 11, &mut tmp);
    string(&mut body, 15, &tmp);
    tmp.clear();
    random_chars(rng, b"0123456789", 4, &mut tmp);
    tmp.push(b' ');
    random_chars(rng, LOWER, 14, &mut tmp);
    tmp.extend_from_slice(b" Street, Springfield");
    string(&mut body, 16, &tmp);
    body.extend_from_slice(&[0x91, 0x24]);
    body.extend_from_slice(&(rng.next() as u32).to_be_bytes());
    body.extend_from_slice(&[0x92, 0x28]);
    body.extend_from_slice(&version.to_be_bytes());
    let mut out = vec![0xde, 0x80 | body.len() as u8];
    out.extend_from_slice(&body);
    out
}

/// `state.rs` `Record::encode`: 58-byte header, tx id, data.
fn encode_record(version: u64, sequence_no: u64, tx_id: &str, hash: &[u8; 32], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(58 + tx_id.len() + data.len());
    out.push(0);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&sequence_no.to_le_bytes());
    out.extend_from_slice(&(now_millis() as i64).to_le_bytes());
    out.extend_from_slice(hash);
    out.push(tx_id.len() as u8);
    out.extend_from_slice(tx_id.as_bytes());
    out.extend_from_slice(data);
    out
}

fn record_version(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"))
}

fn random_hash(rng: &mut Rng) -> [u8; 32] {
    let mut h = [0u8; 32];
    for chunk in h.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    h
}

/// One revision to write.
struct Revision {
    doc_id: String,
    version: u64,
    record: Vec<u8>,
    /// Set for new documents: the index key to insert.
    index_key: Option<Vec<u8>>,
}

// ---------------------------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------------------------

trait Store {
    /// Writes new documents (DOCS + HISTORY + INDEX) and `applied` in one transaction / batch.
    fn insert_batch(&mut self, table: &str, revs: &[Revision], applied: u64, durable: bool);
    /// For each id: reads the current DOCS record, writes DOCS and HISTORY at version + 1
    /// (record from `make`), INDEX unchanged; one transaction / batch.
    fn update_batch(
        &mut self,
        table: &str,
        ids: &[&str],
        make: &mut dyn FnMut(&str, u64) -> Vec<u8>,
        applied: u64,
        durable: bool,
    );
    /// A DOCS get from a fresh read snapshot.
    fn get_fresh(&self, table: &str, id: &str) -> Option<Vec<u8>>;
    /// A DOCS get without opening a snapshot per get (redb: one long read transaction and
    /// table; fjall: plain keyspace get).
    fn get_reused(&mut self, table: &str, id: &str) -> Option<Vec<u8>>;
    /// Document ids with INDEX (table, field, key), from a fresh snapshot.
    fn index_lookup(&self, table: &str, field: &str, key: &[u8]) -> Vec<String>;
    /// All HISTORY records of one document (owned), from a fresh snapshot; returns the count.
    fn history(&self, table: &str, id: &str) -> usize;
    /// Extra engine-specific figures.
    fn extra(&self) -> Vec<(String, f64)>;
}

// ----- redb: the exact tables and calls of state.rs -----

mod redb_store {
    use super::*;
    use redb::{
        Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition,
    };

    const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");
    const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("history");
    const INDEX: TableDefinition<(&str, &str, &[u8], &str), ()> = TableDefinition::new("index");
    const ID_UPPER_BOUND: &str = "{";

    pub struct RedbStore {
        db: Database,
        reused: Option<ReadOnlyTable<(&'static str, &'static str), &'static [u8]>>,
    }

    impl RedbStore {
        pub fn open(path: &Path) -> RedbStore {
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path.join("state.redb"))
                .expect("create redb");
            let txn = db.begin_write().expect("begin_write");
            {
                txn.open_table(META).expect("meta");
                txn.open_table(DOCS).expect("docs");
                txn.open_table(HISTORY).expect("history");
                txn.open_table(INDEX).expect("index");
            }
            txn.commit().expect("commit");
            RedbStore { db, reused: None }
        }

        fn commit(txn: redb::WriteTransaction, applied: u64, durable: bool) {
            {
                let mut meta = txn.open_table(META).expect("meta");
                meta.insert("applied", applied.to_le_bytes().as_slice())
                    .expect("insert");
            }
            let mut txn = txn;
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })
            .expect("durability");
            txn.commit().expect("commit");
        }
    }

    impl Store for RedbStore {
        fn insert_batch(&mut self, table: &str, revs: &[Revision], applied: u64, durable: bool) {
            self.reused = None;
            let txn = self.db.begin_write().expect("begin_write");
            // As StateWriter::apply_revision: tables opened per revision.
            for r in revs {
                let mut docs = txn.open_table(DOCS).expect("docs");
                {
                    let mut index = txn.open_table(INDEX).expect("index");
                    if let Some(key) = &r.index_key {
                        index
                            .insert((table, FIELD, key.as_slice(), r.doc_id.as_str()), ())
                            .expect("insert");
                    }
                }
                docs.insert((table, r.doc_id.as_str()), r.record.as_slice())
                    .expect("insert");
                let mut history = txn.open_table(HISTORY).expect("history");
                history
                    .insert((table, r.doc_id.as_str(), r.version), r.record.as_slice())
                    .expect("insert");
            }
            Self::commit(txn, applied, durable);
        }

        fn update_batch(
            &mut self,
            table: &str,
            ids: &[&str],
            make: &mut dyn FnMut(&str, u64) -> Vec<u8>,
            applied: u64,
            durable: bool,
        ) {
            self.reused = None;
            let txn = self.db.begin_write().expect("begin_write");
            for id in ids {
                let mut docs = txn.open_table(DOCS).expect("docs");
                // The table has an index, so state.rs opens INDEX; the key is unchanged.
                drop(txn.open_table(INDEX).expect("index"));
                let current = {
                    let found = docs.get((table, *id)).expect("get").expect("document exists");
                    record_version(found.value())
                };
                let version = current + 1;
                let record = make(id, version);
                docs.insert((table, *id), record.as_slice()).expect("insert");
                let mut history = txn.open_table(HISTORY).expect("history");
                history
                    .insert((table, *id, version), record.as_slice())
                    .expect("insert");
            }
            Self::commit(txn, applied, durable);
        }

        fn get_fresh(&self, table: &str, id: &str) -> Option<Vec<u8>> {
            let txn = self.db.begin_read().expect("begin_read");
            let docs = txn.open_table(DOCS).expect("docs");
            let found = docs.get((table, id)).expect("get");
            found.map(|v| v.value().to_vec())
        }

        fn get_reused(&mut self, table: &str, id: &str) -> Option<Vec<u8>> {
            if self.reused.is_none() {
                let txn = self.db.begin_read().expect("begin_read");
                self.reused = Some(txn.open_table(DOCS).expect("docs"));
            }
            let docs = self.reused.as_ref().expect("opened");
            let found = docs.get((table, id)).expect("get");
            found.map(|v| v.value().to_vec())
        }

        fn index_lookup(&self, table: &str, field: &str, key: &[u8]) -> Vec<String> {
            let txn = self.db.begin_read().expect("begin_read");
            let index = txn.open_table(INDEX).expect("index");
            let mut ids = Vec::new();
            for entry in index
                .range((table, field, key, "")..(table, field, key, ID_UPPER_BOUND))
                .expect("range")
            {
                let (k, _) = entry.expect("entry");
                ids.push(k.value().3.to_owned());
            }
            ids
        }

        fn history(&self, table: &str, id: &str) -> usize {
            let txn = self.db.begin_read().expect("begin_read");
            let history = txn.open_table(HISTORY).expect("history");
            let mut n = 0;
            for entry in history
                .range((table, id, 0u64)..=(table, id, u64::MAX))
                .expect("range")
            {
                let (_, v) = entry.expect("entry");
                std::hint::black_box(v.value().to_vec());
                n += 1;
            }
            n
        }

        fn extra(&self) -> Vec<(String, f64)> {
            Vec::new()
        }
    }
}

// ----- fjall: one keyspace per table, keys as byte strings -----

mod fjall_store {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

    pub struct FjallStore {
        db: Database,
        meta: Keyspace,
        docs: Keyspace,
        history: Keyspace,
        index: Keyspace,
    }

    /// DOCS key: table 0x00 doc. Ids are base62 (no 0x00), so the order is (table, doc).
    pub fn doc_key(table: &str, id: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(table.len() + id.len() + 1);
        k.extend_from_slice(table.as_bytes());
        k.push(0);
        k.extend_from_slice(id.as_bytes());
        k
    }

    /// HISTORY key: table 0x00 doc 0x00 version (u64 big-endian): (table, doc, version) order.
    pub fn history_key(table: &str, id: &str, version: u64) -> Vec<u8> {
        let mut k = history_prefix(table, id);
        k.extend_from_slice(&version.to_be_bytes());
        k
    }

    pub fn history_prefix(table: &str, id: &str) -> Vec<u8> {
        let mut k = doc_key(table, id);
        k.push(0);
        k
    }

    /// INDEX prefix: table 0x00 field 0x00 len(key) u16 BE, key. The binary Ion key may
    /// contain 0x00, so it is length-prefixed rather than terminated (lookups are by equality).
    pub fn index_prefix(table: &str, field: &str, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(table.len() + field.len() + key.len() + 28);
        k.extend_from_slice(table.as_bytes());
        k.push(0);
        k.extend_from_slice(field.as_bytes());
        k.push(0);
        k.extend_from_slice(&(key.len() as u16).to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    pub fn index_entry(table: &str, field: &str, key: &[u8], id: &str) -> Vec<u8> {
        let mut k = index_prefix(table, field, key);
        k.extend_from_slice(id.as_bytes());
        k
    }

    impl FjallStore {
        pub fn open(path: &Path) -> FjallStore {
            let db = Database::builder(path.join("state.fjall"))
                .cache_size(CACHE_BYTES as u64)
                .open()
                .expect("open fjall");
            let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).expect(name);
            let (meta, docs, history, index) = (ks("meta"), ks("docs"), ks("history"), ks("index"));
            FjallStore {
                db,
                meta,
                docs,
                history,
                index,
            }
        }

        fn commit(&self, mut batch: fjall::OwnedWriteBatch, applied: u64, durable: bool) {
            batch.insert(&self.meta, "applied", applied.to_le_bytes().to_vec());
            // Not durable: the journal is written (to the OS), not synced.
            batch.commit().expect("commit");
            if durable {
                self.db.persist(PersistMode::SyncAll).expect("persist");
            }
        }
    }

    impl Store for FjallStore {
        fn insert_batch(&mut self, table: &str, revs: &[Revision], applied: u64, durable: bool) {
            let mut batch = self.db.batch();
            for r in revs {
                if let Some(key) = &r.index_key {
                    batch.insert(&self.index, index_entry(table, FIELD, key, &r.doc_id), Vec::new());
                }
                batch.insert(&self.docs, doc_key(table, &r.doc_id), r.record.clone());
                batch.insert(
                    &self.history,
                    history_key(table, &r.doc_id, r.version),
                    r.record.clone(),
                );
            }
            self.commit(batch, applied, durable);
        }

        fn update_batch(
            &mut self,
            table: &str,
            ids: &[&str],
            make: &mut dyn FnMut(&str, u64) -> Vec<u8>,
            applied: u64,
            durable: bool,
        ) {
            let mut batch = self.db.batch();
            for id in ids {
                let key = doc_key(table, id);
                let current = self.docs.get(&key).expect("get").expect("document exists");
                let version = record_version(&current) + 1;
                let record = make(id, version);
                batch.insert(&self.history, history_key(table, id, version), record.clone());
                batch.insert(&self.docs, key, record);
            }
            self.commit(batch, applied, durable);
        }

        fn get_fresh(&self, table: &str, id: &str) -> Option<Vec<u8>> {
            let snapshot = self.db.snapshot();
            snapshot
                .get(&self.docs, doc_key(table, id))
                .expect("get")
                .map(|v| v.to_vec())
        }

        fn get_reused(&mut self, table: &str, id: &str) -> Option<Vec<u8>> {
            self.docs
                .get(doc_key(table, id))
                .expect("get")
                .map(|v| v.to_vec())
        }

        fn index_lookup(&self, table: &str, field: &str, key: &[u8]) -> Vec<String> {
            let snapshot = self.db.snapshot();
            let prefix = index_prefix(table, field, key);
            let mut ids = Vec::new();
            for guard in snapshot.prefix(&self.index, &prefix) {
                let k = guard.key().expect("key");
                ids.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            }
            ids
        }

        fn history(&self, table: &str, id: &str) -> usize {
            let snapshot = self.db.snapshot();
            let mut n = 0;
            for guard in snapshot.prefix(&self.history, history_prefix(table, id)) {
                let (_, v) = guard.into_inner().expect("entry");
                std::hint::black_box(v.to_vec());
                n += 1;
            }
            n
        }

        fn extra(&self) -> Vec<(String, f64)> {
            let tables: usize = [&self.docs, &self.history, &self.index]
                .iter()
                .map(|k| k.table_count())
                .sum();
            vec![
                (
                    "fjall_journal_mib".into(),
                    self.db.journal_disk_space().unwrap_or(0) as f64 / MIB,
                ),
                ("fjall_sst_tables".into(), tables as f64),
                (
                    "fjall_compactions".into(),
                    self.db.compactions_completed() as f64,
                ),
                (
                    "fjall_compaction_s".into(),
                    self.db.time_compacting().as_secs_f64(),
                ),
            ]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One engine, one process
// ---------------------------------------------------------------------------------------------

const MIB: f64 = 1024.0 * 1024.0;

fn emit(name: &str, value: f64) {
    println!("M {name} {value}");
}

fn percentile(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_ns.len() as f64 - 1.0) * p).round() as usize;
    sorted_ns[i] as f64 / 1000.0
}

fn latency(prefix: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    emit(&format!("{prefix}_p50_us"), percentile(&ns, 0.50));
    emit(&format!("{prefix}_p99_us"), percentile(&ns, 0.99));
    emit(&format!("{prefix}_max_us"), percentile(&ns, 1.0));
}

/// Decides which commits are durable: the first one after each second (as the committer).
struct Checkpointer {
    last: Instant,
    count: usize,
}

impl Checkpointer {
    fn due(&mut self) -> bool {
        if self.last.elapsed() >= CHECKPOINT_INTERVAL {
            self.last = Instant::now();
            self.count += 1;
            true
        } else {
            false
        }
    }
}

struct Workload {
    rng: Rng,
    table: String,
    ids: Vec<String>,
    vins: Vec<[u8; 17]>,
    sequence_no: u64,
}

impl Workload {
    fn new_batch(&mut self) -> Vec<Revision> {
        let tx_id = new_id(&mut self.rng);
        self.sequence_no += 1;
        (0..BATCH)
            .map(|_| {
                let doc_id = new_id(&mut self.rng);
                let vin = new_vin(&mut self.rng);
                let data = payload(&mut self.rng, &vin, 0);
                let hash = random_hash(&mut self.rng);
                let record = encode_record(0, self.sequence_no, &tx_id, &hash, &data);
                self.ids.push(doc_id.clone());
                self.vins.push(vin);
                Revision {
                    doc_id,
                    version: 0,
                    record,
                    index_key: Some(index_key(&vin)),
                }
            })
            .collect()
    }

    /// 32 distinct random existing documents.
    fn pick(&mut self) -> Vec<usize> {
        let mut picked: Vec<usize> = Vec::with_capacity(BATCH);
        while picked.len() < BATCH {
            let i = self.rng.below(self.ids.len());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked
    }
}

/// Runs a timed write phase; returns per-batch latencies (ns), the latencies of the durable
/// (checkpoint) batches alone, and the elapsed time.
fn timed_phase(
    seconds: f64,
    checkpoints: &mut Checkpointer,
    mut batch: impl FnMut(bool),
) -> (Vec<u64>, Vec<u64>, Duration) {
    let limit = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (mut lat, mut durable_lat) = (Vec::new(), Vec::new());
    while start.elapsed() < limit {
        let durable = checkpoints.due();
        let t = Instant::now();
        batch(durable);
        let ns = t.elapsed().as_nanos() as u64;
        lat.push(ns);
        if durable {
            durable_lat.push(ns);
        }
    }
    (lat, durable_lat, start.elapsed())
}

/// Emits the figures of a timed write phase.
fn write_figures(phase: &str, lat: Vec<u64>, mut durable_lat: Vec<u64>, elapsed: Duration) {
    let n = lat.len() as f64;
    emit(&format!("{phase}_batches_per_s"), n / elapsed.as_secs_f64());
    emit(&format!("{phase}_docs_per_s"), n * BATCH as f64 / elapsed.as_secs_f64());
    emit(&format!("{phase}_checkpoints"), durable_lat.len() as f64);
    durable_lat.sort_unstable();
    emit(&format!("{phase}_checkpoint_p50_us"), percentile(&durable_lat, 0.5));
    latency(&format!("{phase}_batch"), lat);
}

fn dir_bytes(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut allocated) = (0, 0);
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                let (a, b) = dir_bytes(&e.path());
                apparent += a;
                allocated += b;
            } else {
                apparent += m.len();
                allocated += m.blocks() * 512;
            }
        }
    }
    (apparent, allocated)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn run_engine(p: &Params, engine: Engine) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = p.dir.join(format!(
        "quill-state-bench-{}-{}-{nanos}",
        engine.name(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create bench dir");
    let mut store: Box<dyn Store> = match engine {
        Engine::Redb => Box::new(redb_store::RedbStore::open(&dir)),
        Engine::Fjall => Box::new(fjall_store::FjallStore::open(&dir)),
    };
    let mut rng = Rng(p.seed | 1);
    let table = new_id(&mut rng);
    let mut w = Workload {
        rng,
        table,
        ids: Vec::with_capacity(p.docs * 2),
        vins: Vec::with_capacity(p.docs * 2),
        sequence_no: 0,
    };
    let mut ckpt = Checkpointer {
        last: Instant::now(),
        count: 0,
    };
    let log = |msg: String| eprintln!("  [{}] {msg}", engine.name());

    // 1. Preload.
    let start = Instant::now();
    let batches = p.docs.div_ceil(BATCH);
    for b in 0..batches {
        let revs = w.new_batch();
        // The last preload batch is durable, so every engine starts the timed phases clean.
        let durable = ckpt.due() || b + 1 == batches;
        store.insert_batch(&w.table, &revs, w.sequence_no, durable);
    }
    let preload = start.elapsed();
    let loaded = batches * BATCH;
    emit("preload_docs_per_s", loaded as f64 / preload.as_secs_f64());
    log(format!("preloaded {loaded} docs in {:.1} s", preload.as_secs_f64()));

    // 2. Inserts.
    let (lat, durable_lat, elapsed) = {
        let table = w.table.clone();
        let wl = &mut w;
        let st = &mut store;
        timed_phase(p.seconds, &mut ckpt, |durable| {
            let revs = wl.new_batch();
            st.insert_batch(&table, &revs, wl.sequence_no, durable);
        })
    };
    log(format!("inserts: {} batches in {:.1} s", lat.len(), elapsed.as_secs_f64()));
    write_figures("insert", lat, durable_lat, elapsed);

    // 3. Updates.
    let mut updates = 0usize;
    let (lat, durable_lat, elapsed) = {
        let table = w.table.clone();
        let wl = &mut w;
        let st = &mut store;
        let updates = &mut updates;
        timed_phase(p.seconds, &mut ckpt, |durable| {
            let picked = wl.pick();
            wl.sequence_no += 1;
            let seq = wl.sequence_no;
            let tx_id = new_id(&mut wl.rng);
            let ids: Vec<&str> = picked.iter().map(|&i| wl.ids[i].as_str()).collect();
            let vins: Vec<[u8; 17]> = picked.iter().map(|&i| wl.vins[i]).collect();
            let rng = &mut wl.rng;
            let mut k = 0;
            let mut make = |_id: &str, version: u64| {
                let data = payload(rng, &vins[k], version);
                k += 1;
                let hash = random_hash(rng);
                encode_record(version, seq, &tx_id, &hash, &data)
            };
            st.update_batch(&table, &ids, &mut make, seq, durable);
            *updates += BATCH;
        })
    };
    log(format!("updates: {updates} docs in {:.1} s", elapsed.as_secs_f64()));
    write_figures("update", lat, durable_lat, elapsed);

    // 4. Point reads and index lookups.
    let mut lat = Vec::with_capacity(p.reads);
    for _ in 0..p.reads {
        let i = w.rng.below(w.ids.len());
        let t = Instant::now();
        let found = store.get_fresh(&w.table, &w.ids[i]);
        lat.push(t.elapsed().as_nanos() as u64);
        assert!(found.is_some(), "document {} missing", w.ids[i]);
    }
    latency("get_fresh", lat);
    let mut lat = Vec::with_capacity(p.reads);
    for _ in 0..p.reads {
        let i = w.rng.below(w.ids.len());
        let t = Instant::now();
        let found = store.get_reused(&w.table, &w.ids[i]);
        lat.push(t.elapsed().as_nanos() as u64);
        assert!(found.is_some(), "document {} missing", w.ids[i]);
    }
    latency("get_reused", lat);
    let mut lat = Vec::with_capacity(p.reads);
    for _ in 0..p.reads {
        let i = w.rng.below(w.ids.len());
        let key = index_key(&w.vins[i]);
        let t = Instant::now();
        let found = store.index_lookup(&w.table, FIELD, &key);
        lat.push(t.elapsed().as_nanos() as u64);
        assert!(found.contains(&w.ids[i]), "index entry missing");
    }
    latency("index_lookup", lat);

    // 5. History of one document.
    let mut lat = Vec::with_capacity(p.reads);
    let mut versions = 0usize;
    for _ in 0..p.reads {
        let i = w.rng.below(w.ids.len());
        let t = Instant::now();
        let n = store.history(&w.table, &w.ids[i]);
        lat.push(t.elapsed().as_nanos() as u64);
        assert!(n >= 1, "history missing");
        versions += n;
    }
    latency("history", lat);
    emit("history_avg_versions", versions as f64 / p.reads as f64);

    // 6. Disk and memory.
    let (apparent, allocated) = dir_bytes(&dir);
    emit("disk_mib", allocated as f64 / MIB);
    emit("disk_apparent_mib", apparent as f64 / MIB);
    emit("total_docs", w.ids.len() as f64);
    emit("disk_bytes_per_doc", allocated as f64 / w.ids.len() as f64);
    for (name, value) in store.extra() {
        emit(&name, value);
    }
    emit("peak_rss_mib", vm_hwm_kib() as f64 / 1024.0);
    let close = Instant::now();
    drop(store);
    emit("close_s", close.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Driver: spawn one child per engine and round, print medians
// ---------------------------------------------------------------------------------------------

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn nproc() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(0)
}

fn run_child(p: &Params, engine: Engine) -> BTreeMap<String, f64> {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args(["--engine", engine.name()])
        .args(["--docs", &p.docs.to_string()])
        .args(["--seconds", &p.seconds.to_string()])
        .args(["--reads", &p.reads.to_string()])
        .args(["--seed", &p.seed.to_string()])
        .arg("--dir")
        .arg(&p.dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn child");
    if !out.status.success() {
        eprintln!("{} child failed: {}", engine.name(), out.status);
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some("M")).then_some(())?;
            let name = parts.next()?.to_owned();
            let value = parts.next()?.parse().ok()?;
            Some((name, value))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// (metric, label) rows of the table.
const ROWS: &[(&str, &str)] = &[
    ("preload_docs_per_s", "1 preload docs/s"),
    ("insert_batches_per_s", "2 insert batches/s"),
    ("insert_docs_per_s", "2 insert docs/s"),
    ("insert_batch_p50_us", "2 insert batch p50 us"),
    ("insert_batch_p99_us", "2 insert batch p99 us"),
    ("insert_batch_max_us", "2 insert batch max us"),
    ("insert_checkpoints", "2 insert durable checkpoints"),
    ("insert_checkpoint_p50_us", "2 insert durable batch p50 us"),
    ("update_batches_per_s", "3 update batches/s"),
    ("update_docs_per_s", "3 update docs/s"),
    ("update_batch_p50_us", "3 update batch p50 us"),
    ("update_batch_p99_us", "3 update batch p99 us"),
    ("update_batch_max_us", "3 update batch max us"),
    ("update_checkpoints", "3 update durable checkpoints"),
    ("update_checkpoint_p50_us", "3 update durable batch p50 us"),
    ("get_fresh_p50_us", "4 get, fresh snapshot p50 us"),
    ("get_fresh_p99_us", "4 get, fresh snapshot p99 us"),
    ("get_reused_p50_us", "4 get, no new snapshot p50 us"),
    ("get_reused_p99_us", "4 get, no new snapshot p99 us"),
    ("index_lookup_p50_us", "4 index lookup p50 us"),
    ("index_lookup_p99_us", "4 index lookup p99 us"),
    ("history_p50_us", "5 history of 1 doc p50 us"),
    ("history_avg_versions", "5 history versions/doc (avg)"),
    ("total_docs", "6 documents at end"),
    ("disk_mib", "6 disk MiB (allocated)"),
    ("disk_apparent_mib", "6 disk MiB (file sizes)"),
    ("disk_bytes_per_doc", "6 disk bytes/doc (allocated)"),
    ("peak_rss_mib", "6 peak RSS MiB (VmHWM)"),
    ("close_s", "6 close (drop) s"),
    ("fjall_journal_mib", "  fjall journal MiB at end"),
    ("fjall_sst_tables", "  fjall SST tables at end"),
    ("fjall_compactions", "  fjall compactions done"),
    ("fjall_compaction_s", "  fjall time compacting s"),
];

fn drive(p: &Params) {
    println!(
        "state-store-bench: nproc={} docs={} seconds/phase={} reads={} rounds={} batch={} \
         checkpoint=1s cache={}MiB dir={}",
        nproc(),
        p.docs,
        p.seconds,
        p.reads,
        p.rounds,
        BATCH,
        CACHE_BYTES >> 20,
        p.dir.display()
    );
    println!("redb 4.6 / fjall 3.1; load average at start: {}", loadavg());
    let mut results: BTreeMap<&str, Vec<BTreeMap<String, f64>>> = BTreeMap::new();
    for round in 0..p.rounds {
        let order = if round % 2 == 0 {
            [Engine::Redb, Engine::Fjall]
        } else {
            [Engine::Fjall, Engine::Redb]
        };
        for engine in order {
            eprintln!(
                "round {}/{}: {} (load {})",
                round + 1,
                p.rounds,
                engine.name(),
                loadavg()
            );
            let r = run_child(p, engine);
            results.entry(engine.name()).or_default().push(r);
        }
    }
    let get = |engine: &str, metric: &str| -> Vec<f64> {
        results
            .get(engine)
            .map(|rs| {
                rs.iter()
                    .map(|r| r.get(metric).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .unwrap_or_default()
    };
    println!("load average at end: {}", loadavg());
    println!();
    println!("median of {} rounds", p.rounds);
    println!(
        "| {:<32} | {:>10} | {:>10} | {:>11} | {:<40} |",
        "phase", "redb", "fjall", "fjall/redb", "per round redb ; fjall"
    );
    println!("|{:-<34}|{:->12}|{:->12}|{:->13}|{:-<42}|", "", "", "", "", "");
    for (metric, label) in ROWS {
        let (r, f) = (get("redb", metric), get("fjall", metric));
        let (mr, mf) = (median(r.clone()), median(f.clone()));
        if mr.is_nan() && mf.is_nan() {
            continue;
        }
        let ratio = if mr.is_nan() || mf.is_nan() || mr == 0.0 {
            "-".to_owned()
        } else {
            format!("{:.2}", mf / mr)
        };
        let rounds = |v: &[f64]| v.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(" ");
        println!(
            "| {:<32} | {:>10} | {:>10} | {:>11} | {:<40} |",
            label,
            fmt(mr),
            fmt(mf),
            ratio,
            format!("{} ; {}", rounds(&r), rounds(&f))
        );
    }
}

fn main() {
    let p = parse_args();
    match p.engine {
        Some(engine) => run_engine(&p, engine),
        None => drive(&p),
    }
}
