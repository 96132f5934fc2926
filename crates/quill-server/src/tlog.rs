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
//! With a witness policy (C2SP tlog-policy, `--witness-policy`), each new checkpoint is
//! submitted to the policy's witnesses that have a URL, all at once and each within
//! [`WITNESS_TIMEOUT`]; once their cosignatures meet the policy's quorum the cosigned note is
//! persisted (`checkpoint.cosigned`) and served as `checkpoint`, in proof bundles and as the
//! bound of tiles and proofs. Until a newer checkpoint reaches the quorum, the previous
//! cosigned one stays served (before any, the bare signed one), so a client requiring the
//! quorum always finds one. Commits never wait for any of this.
//!
//! One Ed25519 log key (`<data-dir>/log-key`, created 0600 on first start, or
//! [`LogConfig::key_file`]) signs every ledger's log, each under its origin
//! `<origin prefix>/<ledger name>`, which is also its key name.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError};
use quill_tlog::keys::NoteSigner;
pub use quill_tlog::log::proof_bundle;
use quill_tlog::log::{LogError, LogStore, Publisher};
use quill_tlog::submit::{SubmitError, WitnessClient};
use quill_tlog::tiles::TilePath;
use quill_verify::tlog::{Policy, VerifierKey};
use quill_verify::Hash;
use serde_json::json;
use tokio::sync::watch;

use crate::error::ServerError;
use crate::registry::Registry;

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
/// How long after a round that missed the quorum the newest checkpoint is submitted again
/// (if no newer one was signed meanwhile).
pub const WITNESS_RETRY: Duration = Duration::from_secs(2);

struct LedgerLog {
    store: LogStore,
    publisher: Publisher,
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
    key: NoteSigner,
    config: LogConfig,
    data_dir: PathBuf,
    ledgers: Mutex<HashMap<String, Arc<Mutex<LedgerLog>>>>,
    /// Per ledger, the witnesses and the size each is known to hold.
    witnesses: Mutex<HashMap<String, Vec<WitnessClient>>>,
    /// Per ledger, when a checkpoint that missed the quorum may be submitted again.
    retry_at: Mutex<HashMap<String, Instant>>,
    counters: WitnessCounters,
}

impl Logs {
    pub(crate) fn open(data_dir: &Path, config: LogConfig) -> Result<Logs, ServerError> {
        Ok(Logs {
            key: config.load_key(data_dir)?,
            config,
            data_dir: data_dir.to_owned(),
            ledgers: Mutex::new(HashMap::new()),
            witnesses: Mutex::new(HashMap::new()),
            retry_at: Mutex::new(HashMap::new()),
            counters: WitnessCounters::default(),
        })
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

    pub(crate) fn is_public(&self) -> bool {
        self.config.public
    }

    fn log_dir(&self, ledger: &str) -> PathBuf {
        quill_ledger::ledger_dir(&self.data_dir, ledger).join("tlog")
    }

    fn ledger_log(&self, ledger: &str) -> Result<Arc<Mutex<LedgerLog>>, String> {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.log_dir(ledger);
        // A ledger deleted and created again under the same name starts a new log.
        if let Some(log) = ledgers.get(ledger).filter(|_| dir.exists()) {
            return Ok(log.clone());
        }
        let store = LogStore::open(&dir).map_err(|e| e.to_string())?;
        let signer = self
            .key
            .with_name(&self.config.origin(ledger))
            .map_err(|e| e.to_string())?;
        let publisher =
            Publisher::open(signer, &dir.join("checkpoint")).map_err(|e| e.to_string())?;
        let log = Arc::new(Mutex::new(LedgerLog { store, publisher }));
        ledgers.insert(ledger.to_owned(), log.clone());
        Ok(log)
    }

    /// Brings every ledger's log up to its journal and signs the ones that grew; returns the
    /// checkpoints to submit to witnesses as `(ledger, note, size)`: the new ones, and with a
    /// witness policy the newest one not yet cosigned once its retry time has come (after a
    /// round that missed the quorum, or a restart).
    pub(crate) fn checkpoint_all(&self, registry: &Registry) -> Vec<(String, String, u64)> {
        let mut signed = Vec::new();
        for record in registry.list() {
            let Ok((ledger, _)) = registry.get(&record.name) else {
                continue;
            };
            let result = self.ledger_log(&record.name).and_then(|log| {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                let LedgerLog { store, publisher } = &mut *log;
                store.sync(&ledger).map_err(|e| e.to_string())?;
                let note = publisher.publish(store).map_err(|e| e.to_string())?;
                let size = publisher.size();
                let pending = || {
                    let behind = publisher.cosigned().map_or(0, |(s, _)| s) < size;
                    let due = self
                        .retry_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&record.name)
                        .is_none_or(|at| *at <= Instant::now());
                    self.config.witness_policy.is_some() && behind && due
                };
                match note {
                    Some(note) => Ok(Some((note, size))),
                    None if pending() => Ok(publisher.checkpoint().map(|n| (n.to_owned(), size))),
                    None => Ok(None),
                }
            });
            match result {
                Ok(Some((note, size))) => signed.push((record.name.clone(), note, size)),
                Ok(None) => {}
                Err(error) => tracing::error!(ledger = %record.name, %error, "transparency log"),
            }
        }
        signed
    }

    /// Submits a new checkpoint to the policy's witnesses, all at once, and records the
    /// cosigned note once the cosignatures meet the policy's quorum.
    async fn collect_cosignatures(&self, ledger: &str, note: &str, size: u64) {
        let Some(policy) = &self.config.witness_policy else {
            return;
        };
        let clients = self
            .witnesses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ledger)
            .unwrap_or_else(|| {
                policy
                    .witnesses
                    .iter()
                    .filter_map(|w| {
                        Some(WitnessClient {
                            url: w.url.clone()?,
                            key: w.key.clone(),
                            known_size: 0,
                        })
                    })
                    .collect()
            });
        let Ok(log) = self.ledger_log(ledger) else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut rounds = tokio::task::JoinSet::new();
        for (position, mut client) in clients.into_iter().enumerate() {
            let (log, note) = (log.clone(), note.to_owned());
            rounds.spawn(async move {
                let proof = |old: u64| {
                    let log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.store
                        .consistency_proof(old, size)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                };
                let result =
                    tokio::time::timeout(WITNESS_TIMEOUT, client.cosign(&note, size, proof, now))
                        .await
                        .unwrap_or(Err(SubmitError::TimedOut));
                (position, client, result)
            });
        }
        let mut finished = Vec::new();
        while let Some(joined) = rounds.join_next().await {
            match joined {
                Ok(round) => finished.push(round),
                Err(error) => tracing::error!(%ledger, %error, "witness submission task failed"),
            }
        }
        // Cosignature lines in policy order, so the served note does not depend on timing.
        finished.sort_by_key(|(position, _, _)| *position);
        let mut cosigned = note.to_owned();
        let mut names = HashSet::new();
        let mut clients = Vec::with_capacity(finished.len());
        for (_, client, result) in finished {
            match result {
                Ok(signature) => {
                    self.counters.cosignatures.fetch_add(1, Ordering::Relaxed);
                    cosigned.push_str(&signature.to_line());
                    names.extend(
                        policy
                            .witnesses
                            .iter()
                            .filter(|w| w.key == client.key)
                            .map(|w| w.name.clone()),
                    );
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
                    tracing::warn!(%ledger, witness = %client.url, %error, "no cosignature");
                }
            }
            clients.push(client);
        }
        self.witnesses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ledger.to_owned(), clients);
        if !policy.quorum_met(&names) {
            tracing::warn!(%ledger, size, cosigned = ?names, "the witness quorum is not met; serving the previous cosigned checkpoint");
            self.retry_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ledger.to_owned(), Instant::now() + WITNESS_RETRY);
            return;
        }
        self.retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ledger);
        self.counters.quorums.fetch_add(1, Ordering::Relaxed);
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
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
        let log = match self.ledger_log(ledger) {
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
            let (blocking_logs, registry) = (logs.clone(), registry.clone());
            match tokio::task::spawn_blocking(move || blocking_logs.checkpoint_all(&registry)).await
            {
                Ok(signed) => {
                    for (ledger, note, size) in signed {
                        logs.collect_cosignatures(&ledger, &note, size).await;
                    }
                }
                Err(error) => tracing::error!(%error, "checkpointer task failed"),
            }
        }
    });
}
