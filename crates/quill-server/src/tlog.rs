//! Each ledger's witnessed transparency log (`quill_tlog::log`), served read-only.
//!
//! A checkpointer task checks every ledger at most once per [`LogConfig::interval`] and signs
//! a new C2SP checkpoint only when the ledger grew (persisted before it is served). Under
//! `/ledgers/{name}/log/` it serves, per C2SP tlog-tiles, `checkpoint`, `tile/<L>/<N>[.p/<W>]`
//! and `tile/entries/<N>[.p/<W>]` (bounded by the served checkpoint, cacheable forever since
//! a tile's path fixes its content), and two proofs against a signed size, as JSON with
//! QLDB-style Ion text proofs:
//! `proof/inclusion?index=I&size=N` and `proof/consistency?old=M&size=N`; and
//! `proof/bundle?index=I`, a C2SP tlog-proof of block `I` for `quill verify-proof`.
//!
//! With a witness policy (C2SP tlog-policy, `--witness-policy`), each new checkpoint is
//! submitted to the policy's witnesses that have a URL, and the note served as `checkpoint`
//! (and in proof bundles) carries the cosignatures collected.
//!
//! One Ed25519 log key (`<data-dir>/log-key`, created 0600 on first start, or
//! [`LogConfig::key_file`]) signs every ledger's log, each under its origin
//! `<origin prefix>/<ledger name>`, which is also its key name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode};
use quill_tlog::keys::NoteSigner;
use quill_tlog::log::{LogError, LogStore, Publisher};
use quill_tlog::submit::WitnessClient;
use quill_tlog::tiles::TilePath;
use quill_verify::tlog::{Policy, TlogProof, VerifierKey};
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

struct LedgerLog {
    store: LogStore,
    publisher: Publisher,
    /// The publisher's latest checkpoint with the cosignatures collected for it.
    cosigned: Option<String>,
}

/// The logs of every ledger of a server.
pub(crate) struct Logs {
    key: NoteSigner,
    config: LogConfig,
    data_dir: PathBuf,
    ledgers: Mutex<HashMap<String, Arc<Mutex<LedgerLog>>>>,
    /// Per ledger, the witnesses and the size each is known to hold.
    witnesses: Mutex<HashMap<String, Vec<WitnessClient>>>,
}

impl Logs {
    pub(crate) fn open(data_dir: &Path, config: LogConfig) -> Result<Logs, ServerError> {
        Ok(Logs {
            key: config.load_key(data_dir)?,
            config,
            data_dir: data_dir.to_owned(),
            ledgers: Mutex::new(HashMap::new()),
            witnesses: Mutex::new(HashMap::new()),
        })
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
        let log = Arc::new(Mutex::new(LedgerLog {
            store,
            publisher,
            cosigned: None,
        }));
        ledgers.insert(ledger.to_owned(), log.clone());
        Ok(log)
    }

    /// Brings every ledger's log up to its journal and signs the ones that grew; returns the
    /// new checkpoints as `(ledger, note, size)`.
    pub(crate) fn checkpoint_all(&self, registry: &Registry) -> Vec<(String, String, u64)> {
        let mut signed = Vec::new();
        for record in registry.list() {
            let Ok((ledger, _)) = registry.get(&record.name) else {
                continue;
            };
            let result = self.ledger_log(&record.name).and_then(|log| {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                let LedgerLog {
                    store, publisher, ..
                } = &mut *log;
                store.sync(&ledger).map_err(|e| e.to_string())?;
                let note = publisher.publish(store).map_err(|e| e.to_string())?;
                if note.is_some() {
                    log.cosigned = None;
                }
                Ok(note.map(|note| (note, log.publisher.size())))
            });
            match result {
                Ok(Some((note, size))) => signed.push((record.name.clone(), note, size)),
                Ok(None) => {}
                Err(error) => tracing::error!(ledger = %record.name, %error, "transparency log"),
            }
        }
        signed
    }

    /// Submits a new checkpoint to the policy's witnesses and keeps the cosigned note.
    async fn collect_cosignatures(&self, ledger: &str, note: &str, size: u64) {
        let Some(policy) = &self.config.witness_policy else {
            return;
        };
        let mut clients = self
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
        let mut cosigned = note.to_owned();
        for client in &mut clients {
            let proof = |old: u64| {
                let log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.store
                    .consistency_proof(old, size)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            };
            match client.cosign(note, size, proof).await {
                Ok(signature) => cosigned.push_str(&signature.to_line()),
                Err(error) => {
                    tracing::warn!(%ledger, witness = %client.url, %error, "no cosignature")
                }
            }
        }
        self.witnesses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ledger.to_owned(), clients);
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if log.publisher.size() == size {
            log.cosigned = Some(cosigned);
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
        if registry.get(ledger).is_err() {
            return text(StatusCode::NOT_FOUND, format!("no ledger {ledger}\n"));
        }
        let log = match self.ledger_log(ledger) {
            Ok(log) => log,
            Err(error) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        };
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        let Some(note) = log.cosigned.as_deref().or(log.publisher.checkpoint()) else {
            return text(StatusCode::NOT_FOUND, "no checkpoint signed yet\n".into());
        };
        let signed_size = log.publisher.size();
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
            return self.bundle(&log, query, note, signed_size);
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

impl Logs {
    /// A C2SP tlog-proof of block `index` in the served checkpoint, its leaf in `extra`.
    fn bundle(&self, log: &LedgerLog, query: &str, note: &str, size: u64) -> Response<Body> {
        let index = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("index="))
            .and_then(|n| n.parse::<u64>().ok());
        let Some(index) = index.filter(|i| *i < size) else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("index=N below {size} is required\n"),
            );
        };
        match proof_bundle(&log.store, index, size, note) {
            Ok(proof) => text(StatusCode::OK, proof.to_text()),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        }
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

/// The C2SP tlog-proof of block `index` in the checkpoint `note` of `size` leaves.
pub fn proof_bundle(
    store: &LogStore,
    index: u64,
    size: u64,
    note: &str,
) -> Result<TlogProof, LogError> {
    Ok(TlogProof {
        extra: Some(store.leaf(index)?),
        index,
        hashes: store.inclusion_proof(index, size)?,
        checkpoint: note.to_owned(),
    })
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
