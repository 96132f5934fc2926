//! Each ledger's witnessed transparency log (`quill_tlog::log`), served read-only.
//!
//! A checkpointer task checks every ledger at most once per [`LogConfig::interval`] and signs
//! a new C2SP checkpoint only when the ledger grew (persisted before it is served). Under
//! `/ledgers/{name}/log/` it serves, per C2SP tlog-tiles, `checkpoint`, `tile/<L>/<N>[.p/<W>]`
//! and `tile/entries/<N>[.p/<W>]` (bounded by the served checkpoint, cacheable forever since
//! a tile's path fixes its content), and two proofs against a signed size, as JSON with
//! QLDB-style Ion text proofs:
//! `proof/inclusion?index=I&size=N` and `proof/consistency?old=M&size=N`; and
//! `proof/bundle?index=I[&documentId=ID]`, a C2SP tlog-proof of block `I` (or of the
//! revision of document `ID` it committed, with its QLDB proof) for `quill verify-proof`.
//!
//! With a witness policy (C2SP tlog-policy, `--witness-policy`), each of the policy's
//! witnesses that has a URL gets its own worker per ledger, which submits the newest signed
//! checkpoint (each within [`WITNESS_TIMEOUT`], a failed one again after [`WITNESS_RETRY`]).
//! As soon as the cosignatures gathered for a checkpoint meet the policy's quorum, the
//! cosigned note is persisted (`checkpoint.cosigned`) and served as `checkpoint`, in proof
//! bundles and as the bound of tiles and proofs; a cosignature arriving later is added to it.
//! Until a newer checkpoint reaches the quorum, the previous cosigned one stays served (before
//! any, the bare signed one), so a client requiring the quorum always finds one. Neither
//! commits nor the signing of the next checkpoint wait for any witness, so a slow or dead one
//! only delays its own cosignatures.
//!
//! One Ed25519 log key (`<data-dir>/log-key`, created 0600 on first start, or
//! [`LogConfig::key_file`]) signs every ledger's log, each under its origin
//! `<origin prefix>/<ledger name>`, which is also its key name.
//!
//! Ledgers in PostgreSQL have one log however many servers serve them: the checkpoints live
//! in PostgreSQL (`tlog_store.rs`), each tick every server reads them, catches its tree (a
//! cache under its data directory, derived from the journal) up to them and serves them; the
//! server holding a ledger's signer lease also signs and offers its checkpoints to the
//! witnesses. A server whose key is not the log's refuses to sign (logged, and in `/health`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError, PostgresStore};
use quill_tlog::keys::NoteSigner;
pub use quill_tlog::log::proof_bundle;
use quill_tlog::log::{LogError, LogStore, Publisher};
use quill_tlog::submit::{SubmitError, WitnessClient};
use quill_tlog::tiles::TilePath;
use quill_verify::tlog::{Note, NoteSignature, Policy, VerifierKey};
use quill_verify::Hash;
use serde_json::json;
use tokio::sync::watch;

use crate::error::ServerError;
use crate::registry::Registry;
pub use crate::tlog_store::StoredLog;
use crate::tlog_store::{LeaseError, PgCheckpoints, PgLogs};

/// A ledger's log as PostgreSQL keeps it (`quill_tlogs`: the checkpoints the servers signed
/// and the recorded verifier key), for commands that read it without serving it.
pub fn read_stored_log(store: &PostgresStore, ledger: &str) -> Result<StoredLog, LedgerError> {
    PgLogs::new(store.clone()).read(ledger)
}

/// Where the log key lives when `--log-key` is not given.
pub fn default_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("log-key")
}

/// Transparency log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The log key file; `None` for `<data-dir>/log-key`, created on first start.
    pub key_file: Option<PathBuf>,
    /// Serve the log without authentication (the ledgers' data never is).
    pub public: bool,
    /// The shortest time between two checkpoints of one ledger.
    pub interval: Duration,
    /// Origins are `<prefix>/<ledger name>`.
    pub origin_prefix: String,
    /// Witnesses to collect cosignatures from (the policy's witnesses with a URL).
    pub witness_policy: Option<Policy>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            key_file: None,
            public: false,
            interval: Duration::from_secs(1),
            origin_prefix: "localhost/quill".into(),
            witness_policy: None,
        }
    }
}

impl LogConfig {
    /// The log's origin for a ledger.
    pub fn origin(&self, ledger: &str) -> String {
        format!("{}/{ledger}", self.origin_prefix.trim_end_matches('/'))
    }

    /// Reads the log key, creating it if it is the default one and missing.
    pub fn load_key(&self, data_dir: &Path) -> Result<NoteSigner, ServerError> {
        let key = match &self.key_file {
            Some(path) => NoteSigner::read_file(path),
            None => NoteSigner::read_or_create(&default_key_path(data_dir), "quill-log"),
        };
        key.map_err(|e| ServerError::LogKey(e.to_string()))
    }

    /// The verifier key (`name+keyid+base64`) of a ledger's log.
    pub fn verifier_key(&self, key: &NoteSigner, ledger: &str) -> Result<VerifierKey, ServerError> {
        key.with_name(&self.origin(ledger))
            .map(|signer| signer.verifier_key())
            .map_err(|e| ServerError::LogKey(e.to_string()))
    }
}

/// How long one witness may take to answer one checkpoint.
pub const WITNESS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a witness failed to cosign a checkpoint it is submitted again (unless a
/// newer one is signed sooner).
pub const WITNESS_RETRY: Duration = Duration::from_secs(2);

struct LedgerLog {
    store: LogStore,
    publisher: Publisher,
    /// The ledger's strand id: a ledger created again under the same name has another.
    strand_id: String,
}

impl LedgerLog {
    /// The checkpoint served, and its size: the newest cosigned one when witnesses are
    /// configured and one exists, else the newest signed one.
    fn served(&self, witnessed: bool) -> Option<(u64, &str)> {
        let cosigned = self.publisher.cosigned().filter(|_| witnessed);
        cosigned.or_else(|| {
            self.publisher
                .checkpoint()
                .map(|note| (self.publisher.size(), note))
        })
    }
}

/// One ledger's witnessing: the newest checkpoint for its witness workers, and the
/// cosignatures they gathered.
struct Witnessing {
    /// The newest signed checkpoint not yet cosigned by a quorum, `(note, size)`.
    latest: watch::Sender<Option<(String, u64)>>,
    gathered: Mutex<Gathered>,
}

/// How many checkpoints short of the quorum keep their cosignatures: witnesses work on the
/// newest checkpoint, so an older one rarely gains any more.
const GATHERED_ROUNDS: usize = 16;

/// The cosignatures gathered for one ledger's recent checkpoints.
struct Gathered {
    /// The policy name and key of each witness, by worker position.
    witnesses: Vec<(String, VerifierKey)>,
    /// Checkpoint size → its signed note and each witness's cosignature, by position.
    rounds: BTreeMap<u64, (String, Vec<Option<NoteSignature>>)>,
}

impl Gathered {
    fn new<'a>(witnesses: impl Iterator<Item = (&'a String, &'a VerifierKey)>) -> Gathered {
        Gathered {
            witnesses: witnesses
                .map(|(name, key)| (name.clone(), key.clone()))
                .collect(),
            rounds: BTreeMap::new(),
        }
    }

    fn position(&self, signature: &NoteSignature) -> Option<usize> {
        self.witnesses
            .iter()
            .position(|(_, key)| signature.name == key.name && signature.key_id == key.key_id())
    }

    /// Takes up the cosigned checkpoint of `size` recorded before a restart, so that late
    /// cosignatures add to it.
    fn resume(&mut self, size: u64, cosigned: &str) {
        let Ok(parsed) = Note::parse(cosigned) else {
            return;
        };
        let mut by_position = vec![None; self.witnesses.len()];
        let mut log_signatures = Vec::new();
        for signature in parsed.signatures {
            match self.position(&signature) {
                Some(position) => by_position[position] = Some(signature),
                None => log_signatures.push(signature),
            }
        }
        let note = Note {
            text: parsed.text,
            signatures: log_signatures,
        };
        self.rounds.insert(size, (note.to_text(), by_position));
    }

    /// Adds witness `position`'s cosignature of the checkpoint `note` of `size`. Once the
    /// checkpoint's cosignatures meet the policy's quorum, returns it with all of them, in
    /// policy order so that the served note does not depend on timing, and forgets older
    /// checkpoints.
    fn add(
        &mut self,
        position: usize,
        note: &str,
        size: u64,
        signature: NoteSignature,
        policy: &Policy,
    ) -> Option<String> {
        let witnesses = self.witnesses.len();
        let (signed, signatures) = self
            .rounds
            .entry(size)
            .or_insert_with(|| (note.to_owned(), vec![None; witnesses]));
        signatures[position] = Some(signature);
        let names: HashSet<String> = signatures
            .iter()
            .zip(&self.witnesses)
            .filter(|(signature, _)| signature.is_some())
            .map(|(_, (name, _))| name.clone())
            .collect();
        if !policy.quorum_met(&names) {
            while self.rounds.len() > GATHERED_ROUNDS {
                self.rounds.pop_first();
            }
            return None;
        }
        let mut cosigned = signed.clone();
        for signature in signatures.iter().flatten() {
            cosigned.push_str(&signature.to_line());
        }
        self.rounds = self.rounds.split_off(&size);
        Some(cosigned)
    }
}

/// Witness outcomes, for `GET /metrics`.
#[derive(Debug, Default)]
struct WitnessCounters {
    cosignatures: AtomicU64,
    failures: AtomicU64,
    /// 422: a witness said our consistency proof is wrong, a sign of a forked log.
    bad_proofs: AtomicU64,
    quorums: AtomicU64,
}

/// The logs of every ledger of a server.
pub(crate) struct Logs {
    /// `None` on a mirror's copy, which signs nothing (its log is the mirror's own routes).
    key: Option<NoteSigner>,
    config: LogConfig,
    data_dir: PathBuf,
    ledgers: Mutex<HashMap<String, Arc<Mutex<LedgerLog>>>>,
    /// Per ledger with a checkpoint offered to witnesses, its witness workers' state.
    witnessing: Mutex<HashMap<String, Arc<Witnessing>>>,
    counters: WitnessCounters,
    /// With ledgers in PostgreSQL: their logs' checkpoints and this server's signer leases.
    shared: Option<Arc<PgLogs>>,
    /// Ledgers whose log this server refuses to sign, and why.
    refusals: Mutex<BTreeMap<String, String>>,
}

/// What one checkpoint tick found: the checkpoints to offer to witnesses, and the ledgers
/// whose log this server signs.
pub(crate) struct Tick {
    uncosigned: Vec<(String, String, u64)>,
    signing: HashSet<String>,
}

impl Logs {
    /// The logs of a server whose ledgers are files under `data_dir`, or in PostgreSQL
    /// (`postgres`: the tree caches are still kept under `data_dir`). A server that `signs`
    /// nothing (a mirror's copy) neither reads nor creates a log key.
    pub(crate) fn open(
        data_dir: &Path,
        config: LogConfig,
        postgres: Option<quill_ledger::PostgresStore>,
        signs: bool,
    ) -> Result<Logs, ServerError> {
        Ok(Logs {
            key: signs.then(|| config.load_key(data_dir)).transpose()?,
            config,
            data_dir: data_dir.to_owned(),
            ledgers: Mutex::new(HashMap::new()),
            witnessing: Mutex::new(HashMap::new()),
            counters: WitnessCounters::default(),
            shared: postgres.map(|store| Arc::new(PgLogs::new(store))),
            refusals: Mutex::new(BTreeMap::new()),
        })
    }

    /// For `/health` with ledgers in PostgreSQL: the ledgers whose log this server signs, and
    /// those it refuses to sign with why; `None` for files.
    pub(crate) fn health(&self) -> Option<(Vec<String>, BTreeMap<String, String>)> {
        let shared = self.shared.as_ref()?;
        let refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        Some((shared.signing(), refusals.clone()))
    }

    /// The witness counters in the Prometheus text format.
    pub(crate) fn render_metrics(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let c = &self.counters;
        format!(
            "# HELP quill_witness_cosignatures_total Cosignatures collected from witnesses.\n\
             # TYPE quill_witness_cosignatures_total counter\n\
             quill_witness_cosignatures_total {}\n\
             # HELP quill_witness_failures_total Submissions a witness did not cosign.\n\
             # TYPE quill_witness_failures_total counter\n\
             quill_witness_failures_total {}\n\
             # HELP quill_witness_bad_proofs_total Witnesses refusing a consistency proof (422): investigate.\n\
             # TYPE quill_witness_bad_proofs_total counter\n\
             quill_witness_bad_proofs_total {}\n\
             # HELP quill_witness_quorums_total Checkpoints whose cosignatures met the policy's quorum.\n\
             # TYPE quill_witness_quorums_total counter\n\
             quill_witness_quorums_total {}\n",
            load(&c.cosignatures),
            load(&c.failures),
            load(&c.bad_proofs),
            load(&c.quorums),
        )
    }

    fn key(&self) -> Result<&NoteSigner, String> {
        self.key
            .as_ref()
            .ok_or_else(|| "this server signs no transparency log (a mirror's copy)".to_owned())
    }

    pub(crate) fn is_public(&self) -> bool {
        self.config.public
    }

    fn log_dir(&self, ledger: &str) -> PathBuf {
        quill_ledger::ledger_dir(&self.data_dir, ledger).join("tlog")
    }

    /// The log of a ledger seen before (by [`Logs::ledger_log`]).
    fn known_log(&self, ledger: &str) -> Result<Arc<Mutex<LedgerLog>>, String> {
        let ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        ledgers
            .get(ledger)
            .cloned()
            .ok_or_else(|| format!("no transparency log of ledger {ledger} yet"))
    }

    fn ledger_log(&self, name: &str, ledger: &Ledger) -> Result<Arc<Mutex<LedgerLog>>, String> {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.log_dir(name);
        // A ledger deleted and created again under the same name starts a new log.
        let same = |log: &&Arc<Mutex<LedgerLog>>| {
            dir.exists()
                && log.lock().unwrap_or_else(|p| p.into_inner()).strand_id == ledger.strand_id()
        };
        if let Some(log) = ledgers.get(name).filter(same) {
            return Ok(log.clone());
        }
        let error = |e: LogError| e.to_string();
        let mut store = LogStore::open(&dir).map_err(error)?;
        let signer = self
            .key()?
            .with_name(&self.config.origin(name))
            .map_err(|e| e.to_string())?;
        let publisher = match &self.shared {
            None => Publisher::open(signer, &dir.join("checkpoint")).map_err(error)?,
            Some(shared) => {
                // The tree is a cache of a journal other servers share: one left by an older
                // ledger of this name, or torn, is dropped here and rebuilt from the journal.
                let size = store.size();
                let cached = size > 0 && {
                    let leaf = store.block_leaf(size - 1).map_err(error)?;
                    ledger.catch_up().map_err(|e| e.to_string())?;
                    let journal = ledger.block_hashes(size - 1);
                    journal.is_ok_and(|hashes| hashes.hash == leaf.block_hash)
                };
                if size > 0 && !cached {
                    store = store.truncate(0).map_err(error)?;
                }
                let checkpoints = PgCheckpoints::new(shared.clone(), name, &signer.verifier_key());
                Publisher::with_store(signer, Box::new(checkpoints))
            }
        };
        let log = Arc::new(Mutex::new(LedgerLog {
            store,
            publisher,
            strand_id: ledger.strand_id().to_owned(),
        }));
        ledgers.insert(name.to_owned(), log.clone());
        Ok(log)
    }

    /// Brings every ledger's log up to its journal and signs the ones that grew (with
    /// ledgers in PostgreSQL: those whose signer lease this server holds or takes, after
    /// taking up the checkpoints kept there); with a witness policy, returns the newest signed
    /// checkpoint of every ledger it signs whose cosigned checkpoint lags behind it, as
    /// `(ledger, note, size)`, for [`Logs::offer`].
    pub(crate) fn checkpoint_all(&self, registry: &Registry) -> Tick {
        let mut tick = Tick {
            uncosigned: Vec::new(),
            signing: HashSet::new(),
        };
        for record in registry.list() {
            let name = &record.name;
            let Ok((ledger, _)) = registry.get(name) else {
                continue;
            };
            let signs = match self.lead(name) {
                Ok(signs) => signs,
                Err(error) => {
                    tracing::error!(ledger = %name, %error, "transparency log");
                    continue;
                }
            };
            let result = self.ledger_log(name, &ledger).and_then(|log| {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                let error = |e: LogError| e.to_string();
                let stored = match &self.shared {
                    Some(shared) => {
                        // Read before the catch-up, so the tree reaches what was signed.
                        let stored = shared.read(name).map_err(|e| e.to_string())?;
                        ledger.catch_up().map_err(|e| e.to_string())?;
                        Some(stored)
                    }
                    None => None,
                };
                let LedgerLog {
                    store, publisher, ..
                } = &mut *log;
                store.sync(&ledger).map_err(error)?;
                if let Some(stored) = stored {
                    publisher
                        .adopt(stored.checkpoint, stored.cosigned, "quill_tlogs")
                        .map_err(error)?;
                }
                if !signs {
                    return Ok(None);
                }
                publisher.publish(store).map_err(error)?;
                let size = publisher.size();
                let behind = publisher.cosigned().map_or(0, |(s, _)| s) < size;
                let wanted = self.config.witness_policy.is_some() && behind;
                Ok(publisher
                    .checkpoint()
                    .filter(|_| wanted)
                    .map(|note| (note.to_owned(), size)))
            });
            match result {
                Ok(offer) => {
                    if signs {
                        tick.signing.insert(name.clone());
                    }
                    if let Some((note, size)) = offer {
                        tick.uncosigned.push((name.clone(), note, size));
                    }
                }
                Err(error) => tracing::error!(ledger = %name, %error, "transparency log"),
            }
        }
        tick
    }

    /// Whether this server signs `ledger`'s log: always for files; with PostgreSQL, while it
    /// holds (or now takes) the ledger's signer lease. A key that is not the log's is refused,
    /// logged once, and kept for `/health`.
    fn lead(&self, ledger: &str) -> Result<bool, String> {
        let Some(shared) = &self.shared else {
            return Ok(true);
        };
        let ours = self
            .config
            .verifier_key(self.key()?, ledger)
            .map_err(|e| e.to_string())?;
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        match shared.lead(ledger, &ours) {
            Err(refused @ LeaseError::KeyMismatch { .. }) => {
                let refused = refused.to_string();
                if refusals.get(ledger) != Some(&refused) {
                    tracing::error!(%ledger, "{refused}");
                    refusals.insert(ledger.to_owned(), refused);
                }
                Ok(false)
            }
            Err(error) => Err(error.to_string()),
            Ok(signs) => {
                refusals.remove(ledger);
                Ok(signs)
            }
        }
    }

    /// Hands each ledger's newest checkpoint to its witness workers (started on first use, one
    /// per witness), without waiting for any of them; stops the workers of ledgers that no
    /// longer exist.
    fn offer(self: &Arc<Self>, registry: &Registry, tick: Tick, stop: &watch::Receiver<bool>) {
        let Some(policy) = &self.config.witness_policy else {
            return;
        };
        let mut witnessing = self.witnessing.lock().unwrap_or_else(|p| p.into_inner());
        // Dropping a ledger's sender ends its workers: those of ledgers gone, and of logs
        // another server signs now.
        witnessing
            .retain(|ledger, _| registry.get(ledger).is_ok() && tick.signing.contains(ledger));
        for (ledger, note, size) in tick.uncosigned {
            // A smaller checkpoint than the one offered is a ledger deleted and created again.
            let recreated = witnessing.get(&ledger).is_some_and(|w| {
                w.latest
                    .borrow()
                    .as_ref()
                    .is_some_and(|(_, offered)| *offered > size)
            });
            if recreated {
                witnessing.remove(&ledger);
            }
            let entry = witnessing.entry(ledger.clone()).or_insert_with(|| {
                let (latest, _) = watch::channel(None);
                let witnesses: Vec<_> = policy
                    .witnesses
                    .iter()
                    .filter_map(|w| Some((w.name.clone(), w.key.clone(), w.url.clone()?)))
                    .collect();
                let mut gathered = Gathered::new(witnesses.iter().map(|(n, k, _)| (n, k)));
                if let Ok(log) = self.known_log(&ledger) {
                    let log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((size, note)) = log.publisher.cosigned() {
                        gathered.resume(size, note);
                    }
                }
                let witnessing = Arc::new(Witnessing {
                    latest,
                    gathered: Mutex::new(gathered),
                });
                for (position, (_, key, url)) in witnesses.into_iter().enumerate() {
                    let client = WitnessClient {
                        url,
                        key,
                        known_size: 0,
                    };
                    tokio::spawn(self.clone().witness_worker(
                        ledger.clone(),
                        position,
                        client,
                        witnessing.clone(),
                        stop.clone(),
                    ));
                }
                witnessing
            });
            entry.latest.send_if_modified(|latest| {
                let newer = latest.as_ref().is_none_or(|(_, s)| *s < size);
                if newer {
                    *latest = Some((note, size));
                }
                newer
            });
        }
    }

    /// Submits the ledger's newest checkpoint to one witness, again and again: each newer
    /// checkpoint once it is cosigned, a failed one again after [`WITNESS_RETRY`] (or as soon
    /// as a newer one is signed). Each witness has its own worker, so a slow or dead one delays
    /// nothing but its own cosignatures.
    async fn witness_worker(
        self: Arc<Self>,
        ledger: String,
        position: usize,
        mut client: WitnessClient,
        witnessing: Arc<Witnessing>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut latest = witnessing.latest.subscribe();
        let mut cosigned_size = 0;
        loop {
            let next = latest
                .borrow_and_update()
                .clone()
                .filter(|(_, size)| *size > cosigned_size);
            let Some((note, size)) = next else {
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
                continue;
            };
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let proof = |old: u64| {
                let log = self.known_log(&ledger).map_err(std::io::Error::other)?;
                let log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.store
                    .consistency_proof(old, size)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            };
            let result = tokio::select! {
                result = tokio::time::timeout(WITNESS_TIMEOUT, client.cosign(&note, size, proof, now)) =>
                    result.unwrap_or(Err(SubmitError::TimedOut)),
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            match result {
                Ok(signature) => {
                    self.counters.cosignatures.fetch_add(1, Ordering::Relaxed);
                    cosigned_size = size;
                    self.add_cosignature(&ledger, &witnessing, position, &note, size, signature);
                    continue;
                }
                Err(SubmitError::Refused(422, why)) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    self.counters.bad_proofs.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        %ledger, witness = %client.url, size, %why,
                        "ALARM: the witness refuses our consistency proof (422): the log may have forked"
                    );
                }
                Err(error) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%ledger, witness = %client.url, size, %error, "no cosignature");
                }
            }
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(WITNESS_RETRY) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    /// Records a witness's cosignature of the checkpoint of `size`; once the cosignatures of
    /// that checkpoint meet the policy's quorum, persists and serves it with them (again with
    /// each late cosignature).
    fn add_cosignature(
        &self,
        ledger: &str,
        witnessing: &Witnessing,
        position: usize,
        note: &str,
        size: u64,
        signature: NoteSignature,
    ) {
        let Some(policy) = &self.config.witness_policy else {
            return;
        };
        let Ok(log) = self.known_log(ledger) else {
            return;
        };
        let mut gathered = witnessing
            .gathered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(cosigned) = gathered.add(position, note, size, signature, policy) else {
            return;
        };
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let recorded = log.publisher.cosigned().map(|(s, _)| s);
        if recorded.is_some_and(|recorded| recorded > size) {
            return;
        }
        if recorded != Some(size) {
            self.counters.quorums.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(error) = log.publisher.record_cosigned(&cosigned) {
            tracing::error!(%ledger, size, %error, "cannot record the cosigned checkpoint");
        }
    }

    /// Answers a GET under `/ledgers/{ledger}/log/`.
    pub(crate) fn respond(
        &self,
        registry: &Registry,
        method: &Method,
        ledger: &str,
        rest: &str,
        query: &str,
    ) -> Response<Body> {
        if method != Method::GET {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the log is read-only\n".into(),
            );
        }
        let Ok((handle, _)) = registry.get(ledger) else {
            return text(StatusCode::NOT_FOUND, format!("no ledger {ledger}\n"));
        };
        let log = match self.ledger_log(ledger, &handle) {
            Ok(log) => log,
            Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        };
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        let Some((signed_size, note)) = log.served(self.config.witness_policy.is_some()) else {
            return text(StatusCode::NOT_FOUND, "no checkpoint signed yet\n".into());
        };
        if rest == "checkpoint" {
            let mut response = text(StatusCode::OK, note.to_owned());
            cache(&mut response, "no-cache");
            return response;
        }
        if let Some(tile) = TilePath::parse(rest) {
            return match log.store.tile(&tile, signed_size) {
                Ok(bytes) => {
                    let mut response = Response::new(Body::from(bytes));
                    response.headers_mut().insert(
                        "content-type",
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    cache(&mut response, "public, max-age=31536000, immutable");
                    response
                }
                Err(error) => text(StatusCode::NOT_FOUND, format!("{error}\n")),
            };
        }
        if rest == "proof/bundle" {
            return bundle(&handle, &log.store, query, note, signed_size);
        }
        let params: HashMap<&str, u64> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        let size = params.get("size").copied().unwrap_or(signed_size);
        if size > signed_size {
            return text(
                StatusCode::BAD_REQUEST,
                format!("size {size} is beyond the signed size {signed_size}\n"),
            );
        }
        let request = match (rest, params.get("index"), params.get("old")) {
            ("proof/inclusion", Some(&index), _) => ProofRequest::Inclusion { index },
            ("proof/consistency", _, Some(&old)) => ProofRequest::Consistency { old },
            _ => return text(StatusCode::NOT_FOUND, format!("no log resource {rest}\n")),
        };
        match proof_json(&log.store, request, size, note) {
            Ok(body) => {
                let mut response = Response::new(Body::from(body.to_string()));
                response
                    .headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                response
            }
            Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        }
    }
}

/// `proof/bundle?index=I[&documentId=ID]`: a C2SP tlog-proof of block `I` in the served
/// checkpoint, or of the revision of document `ID` committed in it.
fn bundle(ledger: &Ledger, store: &LogStore, query: &str, note: &str, size: u64) -> Response<Body> {
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    };
    let index = param("index").and_then(|n| n.parse::<u64>().ok());
    let Some(index) = index.filter(|i| *i < size) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("index=N below {size} is required\n"),
        );
    };
    let revision = match param("documentId") {
        Some(id) => match revision_in_block(ledger, index, id) {
            Ok(revision) => Some(revision),
            Err(error) => return text(StatusCode::NOT_FOUND, format!("{error}\n")),
        },
        None => None,
    };
    match proof_bundle(store, index, size, note, revision) {
        Ok(proof) => text(StatusCode::OK, proof.to_text()),
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
    }
}

/// A proof a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofRequest {
    /// Of block (leaf) `index`.
    Inclusion {
        /// The leaf index.
        index: u64,
    },
    /// From the tree of `old` leaves.
    Consistency {
        /// The old size.
        old: u64,
    },
}

/// A proof in the tree of `size` leaves as JSON: QLDB-style Ion text proof (`Proof.IonText`),
/// the roots, the leaf for an inclusion proof, and the checkpoint `note` of that size.
pub fn proof_json(
    store: &LogStore,
    request: ProofRequest,
    size: u64,
    note: &str,
) -> Result<serde_json::Value, LogError> {
    let (proof, mut body) = match request {
        ProofRequest::Inclusion { index } => (
            store.inclusion_proof(index, size)?,
            json!({"LeafIndex": index, "Leaf": base64_of(&store.leaf(index)?)}),
        ),
        ProofRequest::Consistency { old } => (
            store.consistency_proof(old, size)?,
            json!({"OldTreeSize": old, "OldRootHash": store.root(old)?.to_base64()}),
        ),
    };
    body["TreeSize"] = json!(size);
    body["RootHash"] = json!(store.root(size)?.to_base64());
    body["Proof"] = json!({"IonText": quill_verify::proof_to_ion_text(&proof)});
    body["Checkpoint"] = json!(note);
    Ok(body)
}

/// The revision of `document_id` in block `sequence_no` as GetRevision shows it, and the
/// proof from its hash to the block's hash.
pub fn revision_in_block(
    ledger: &Ledger,
    sequence_no: u64,
    document_id: &str,
) -> Result<(Element, Vec<Hash>), LedgerError> {
    Ok((
        ledger.revision(sequence_no, document_id)?.to_element(),
        ledger.revision_block_path(sequence_no, document_id)?,
    ))
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn cache(response: &mut Response<Body>, policy: &'static str) {
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static(policy));
}

/// `/ledgers/{name}/log/{rest}` → `(name, rest)`.
pub(crate) fn log_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/ledgers/")?;
    let (ledger, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("log/")?;
    (!ledger.is_empty()).then_some((ledger, rest))
}

/// Runs [`Logs::checkpoint_all`] every interval until `stop` turns true.
pub(crate) fn spawn_checkpointer(
    logs: Arc<Logs>,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = logs.config.interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let (blocking_logs, blocking_registry) = (logs.clone(), registry.clone());
            match tokio::task::spawn_blocking(move || {
                blocking_logs.checkpoint_all(&blocking_registry)
            })
            .await
            {
                Ok(tick) => logs.offer(&registry, tick, &stop),
                Err(error) => tracing::error!(%error, "checkpointer task failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use quill_verify::tlog::{verify_cosigned_checkpoint, Checkpoint};

    use super::*;

    /// One `quill serve` of ledgers in PostgreSQL, as far as its log is concerned.
    struct PgServer {
        registry: Registry,
        logs: Logs,
        _dir: tempfile::TempDir,
    }

    impl PgServer {
        fn start(url: &str, key_file: &Path) -> PgServer {
            let dir = tempfile::tempdir().unwrap();
            let store = quill_ledger::PostgresStore::connect(url).unwrap();
            let registry =
                Registry::open_postgres(dir.path(), store.clone(), Default::default()).unwrap();
            let config = LogConfig {
                key_file: Some(key_file.to_owned()),
                ..LogConfig::default()
            };
            let logs = Logs::open(dir.path(), config, Some(store), true).unwrap();
            PgServer {
                registry,
                logs,
                _dir: dir,
            }
        }

        /// One checkpoint tick: whether this server signed `shop`'s log.
        fn tick(&self) -> bool {
            self.logs
                .checkpoint_all(&self.registry)
                .signing
                .contains("shop")
        }

        /// The checkpoint it serves for `shop`: `(size, note)`.
        fn served(&self) -> Option<(u64, String)> {
            let log = self.logs.known_log("shop").ok()?;
            let log = log.lock().unwrap();
            log.served(false)
                .map(|(size, note)| (size, note.to_owned()))
        }

        fn commit(&self, n: u32) {
            let (ledger, _) = self.registry.get("shop").unwrap();
            ledger
                .transact(|tx| {
                    let doc = Element::read_one(format!("{{n: {n}}}")).unwrap();
                    tx.insert("Item", doc).map(|_| ())
                })
                .unwrap();
        }
    }

    fn key_file(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        NoteSigner::read_or_create(&path, "quill-log").unwrap();
        path
    }

    /// A fresh database with the ledger `shop` and its table `Item`.
    fn database_with_shop(name: &str) -> String {
        let cluster = quill_pgtest::PgServer::shared().unwrap();
        let url = cluster.create_database(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = quill_ledger::PostgresStore::connect(&url).unwrap();
        let registry = Registry::open_postgres(dir.path(), store, Default::default()).unwrap();
        registry
            .create(crate::registry::NewLedger {
                name: "shop".into(),
                permissions_mode: "ALLOW_ALL".into(),
                deletion_protection: false,
                kms_key: crate::registry::AWS_OWNED_KMS_KEY.into(),
                tags: BTreeMap::new(),
            })
            .unwrap();
        let (ledger, _) = registry.get("shop").unwrap();
        ledger
            .transact(|tx| tx.create_table("Item", None).map(|_| ()))
            .unwrap();
        url
    }

    /// Checks that the checkpoint `new` extends `old` with a consistency proof from `server`.
    fn check_consistent(server: &PgServer, old: &str, new: &str) {
        let parse = |note: &str| Checkpoint::parse(&Note::parse(note).unwrap().text).unwrap();
        let (old, new) = (parse(old), parse(new));
        let log = server.logs.known_log("shop").unwrap();
        let log = log.lock().unwrap();
        let proof = log.store.consistency_proof(old.size, new.size).unwrap();
        quill_verify::tlog::rfc6962::verify_consistency(
            old.size, new.size, &old.root, &new.root, &proof,
        )
        .unwrap();
    }

    #[test]
    fn one_server_signs_a_shared_log_every_server_serves_it_and_a_takeover_continues_it() {
        let url = database_with_shop("tlog_signer_takeover");
        let keys = tempfile::tempdir().unwrap();
        let key = key_file(keys.path(), "log-key");
        let a = PgServer::start(&url, &key);
        let b = PgServer::start(&url, &key);

        assert!(a.tick(), "the first server takes the lease");
        assert!(!b.tick(), "one signer at a time");
        assert!(!b.tick());
        let (size, first) = a.served().expect("a signed checkpoint");
        assert_eq!(size, 2);
        assert_eq!(
            b.served(),
            Some((size, first.clone())),
            "one log, served by both"
        );

        // Commits through the follower: the signer's next tick signs them (it catches up on
        // the shared journal), and the follower serves that checkpoint after its own tick.
        for n in 0..5 {
            b.commit(n);
        }
        assert!(a.tick());
        let (size, second) = a.served().unwrap();
        assert_eq!(size, 7);
        assert!(!b.tick());
        assert_eq!(b.served(), Some((7, second.clone())));
        check_consistent(&b, &first, &second);

        // The signer dies (its lease connection closes); the follower takes over within a few
        // ticks and continues the same log from the checkpoint in PostgreSQL.
        drop(a);
        for n in 5..8 {
            b.commit(n);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !b.tick() {
            assert!(std::time::Instant::now() < deadline, "no takeover");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (size, third) = b.served().unwrap();
        assert_eq!(size, 10);
        check_consistent(&b, &second, &third);

        // A server back with the same key follows, and serves the same checkpoint.
        let c = PgServer::start(&url, &key);
        assert!(!c.tick());
        assert_eq!(c.served(), Some((10, third)));
    }

    #[test]
    fn a_signer_that_lost_its_lease_cannot_write_and_a_server_with_another_key_refuses() {
        let url = database_with_shop("tlog_signer_fenced");
        let keys = tempfile::tempdir().unwrap();
        let a = PgServer::start(&url, &key_file(keys.path(), "log-key"));
        assert!(a.tick());
        let (_, first) = a.served().unwrap();

        // Another server took the lease over behind this one's back (as after its connection
        // was lost while it kept running): its epoch no longer matches, so its next
        // checkpoint is not written, and it stops signing until it takes the lease again.
        let store = quill_ledger::PostgresStore::connect(&url).unwrap();
        store
            .with_client(|client| {
                client
                    .execute(
                        "UPDATE quill_tlogs SET signer_epoch = signer_epoch + 1",
                        &[],
                    )
                    .map_err(quill_ledger::postgres_error)
            })
            .unwrap();
        a.commit(1);
        assert!(!a.tick(), "the fenced write is refused");
        assert_eq!(a.served().unwrap().1, first, "nothing unwritten is served");
        assert!(a.logs.health().unwrap().0.is_empty());
        assert!(a.tick(), "it takes the lease again and signs the grown log");
        let (size, second) = a.served().unwrap();
        assert_eq!(size, 3);
        check_consistent(&a, &first, &second);

        // A server with another key never signs (not even once the signer is gone) and says
        // why, naming both keys; it serves the log the others sign.
        let other = PgServer::start(&url, &key_file(keys.path(), "other-key"));
        drop(a);
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..3 {
            assert!(!other.tick());
        }
        assert_eq!(other.served(), Some((3, second.clone())));
        let (signing, refused) = other.logs.health().unwrap();
        assert!(signing.is_empty());
        let why = &refused["shop"];
        let ours = other
            .logs
            .config
            .verifier_key(other.logs.key().unwrap(), "shop")
            .unwrap();
        let recorded = VerifierKey::parse(
            &store
                .with_client(|client| {
                    client
                        .query_one("SELECT verifier_key FROM quill_tlogs", &[])
                        .map_err(quill_ledger::postgres_error)
                })
                .unwrap()
                .get::<_, String>(0),
        )
        .unwrap();
        assert_ne!(ours, recorded);
        let hex = |key: &VerifierKey| -> String {
            key.key_id().iter().map(|b| format!("{b:02x}")).collect()
        };
        for id in [hex(&ours), hex(&recorded)] {
            assert!(why.contains(&id), "{why} names {id}");
        }
        assert!(why.contains("--log-key"), "{why}");
    }

    struct Setup {
        log: NoteSigner,
        witnesses: Vec<NoteSigner>,
        policy: Policy,
    }

    /// A log and three witnesses under a 2-of-3 policy.
    fn setup() -> Setup {
        let log = NoteSigner::from_seed("quill.test/shop", [1; 32]).unwrap();
        let witnesses: Vec<NoteSigner> = (0..3u8)
            .map(|i| NoteSigner::from_seed(&format!("w{i}.test"), [10 + i; 32]).unwrap())
            .collect();
        let mut text = format!("log {}\n", log.verifier_key());
        for (i, witness) in witnesses.iter().enumerate() {
            text.push_str(&format!(
                "witness w{i} {} http://127.0.0.1:{}\n",
                witness.cosigner_key(),
                9000 + i
            ));
        }
        text.push_str("group two-of-three 2 w0 w1 w2\nquorum two-of-three\n");
        Setup {
            log,
            witnesses,
            policy: Policy::parse(&text).unwrap(),
        }
    }

    impl Setup {
        fn gathered(&self) -> Gathered {
            Gathered::new(self.policy.witnesses.iter().map(|w| (&w.name, &w.key)))
        }

        /// The log's note of a checkpoint of `size`, and its text.
        fn note(&self, size: u64) -> (String, String) {
            let text = Checkpoint {
                origin: "quill.test/shop".into(),
                size,
                root: Hash([size as u8; 32]),
                extensions: Vec::new(),
            }
            .to_text();
            let note = Note {
                signatures: vec![self.log.sign(&text)],
                text: text.clone(),
            };
            (note.to_text(), text)
        }
    }

    #[test]
    fn the_quorum_is_served_at_once_and_late_cosignatures_join_in_policy_order() {
        let setup = setup();
        let mut gathered = setup.gathered();
        let (note, text) = setup.note(5);
        let cosign = |i: usize| setup.witnesses[i].cosign(&text, 1_700_000_000);

        assert_eq!(gathered.add(2, &note, 5, cosign(2), &setup.policy), None);
        let quorum = gathered
            .add(0, &note, 5, cosign(0), &setup.policy)
            .expect("two of three");
        assert_eq!(
            quorum,
            format!("{note}{}{}", cosign(0).to_line(), cosign(2).to_line())
        );
        let verified = verify_cosigned_checkpoint(&quorum, &setup.policy).unwrap();
        assert_eq!(verified.cosigned.len(), 2);

        let all = format!(
            "{note}{}{}{}",
            cosign(0).to_line(),
            cosign(1).to_line(),
            cosign(2).to_line()
        );
        assert_eq!(
            gathered.add(1, &note, 5, cosign(1), &setup.policy),
            Some(all.clone()),
            "a late cosignature joins the served note"
        );

        // After a restart the recorded note is taken up again, and a cosignature that arrives
        // then still joins it.
        let mut resumed = setup.gathered();
        resumed.resume(5, &quorum);
        assert_eq!(
            resumed.add(1, &note, 5, cosign(1), &setup.policy),
            Some(all)
        );
    }

    #[test]
    fn a_newer_quorum_forgets_older_checkpoints_and_rounds_stay_bounded() {
        let setup = setup();
        let mut gathered = setup.gathered();
        let (old_note, old_text) = setup.note(5);
        let (new_note, new_text) = setup.note(6);
        let cosign = |i: usize, text: &str| setup.witnesses[i].cosign(text, 1_700_000_000);

        assert_eq!(
            gathered.add(0, &old_note, 5, cosign(0, &old_text), &setup.policy),
            None
        );
        gathered.add(0, &new_note, 6, cosign(0, &new_text), &setup.policy);
        assert!(gathered
            .add(1, &new_note, 6, cosign(1, &new_text), &setup.policy)
            .is_some());
        assert_eq!(gathered.rounds.keys().copied().collect::<Vec<_>>(), [6]);
        // The older checkpoint starts again from nothing: one cosignature is not a quorum.
        assert_eq!(
            gathered.add(1, &old_note, 5, cosign(1, &old_text), &setup.policy),
            None
        );

        // Witnesses that never agree on a checkpoint leave a bounded number of rounds.
        for size in 10..100 {
            let (note, text) = setup.note(size);
            let position = (size % 3) as usize;
            let signature = cosign(position, &text);
            assert_eq!(
                gathered.add(position, &note, size, signature, &setup.policy),
                None
            );
        }
        assert_eq!(gathered.rounds.len(), GATHERED_ROUNDS);
    }
}
