//! A C2SP `tlog-witness` server: `POST <prefix>/add-checkpoint`.
//!
//! The request is `old <size>\n`, up to 63 base64 consistency proof hashes (one a line), a
//! blank line, then the log's signed checkpoint note. The witness checks, in the spec's
//! order: the request parses (else 400), the origin is a log it follows (else 404), the
//! note carries a valid signature by that log's key (else 403), `old` ≤ the checkpoint size
//! (else 400), `old` is the size it last cosigned for the origin (else 409 with that size as
//! `text/x.tlog.size`; at equal sizes the roots must match too), and the RFC 6962
//! consistency proof from its stored root (else 422). It then persists the new size and
//! root atomically and only then returns its `cosignature/v1` signature line.
//!
//! Check and persist happen under one lock, so two concurrent requests can never both
//! advance from the same old size. State is one small file per origin under the state
//! directory, replaced with [`crate::durable::replace_file`]: the last checkpoint cosigned
//! with the witness's own cosignature, whose timestamp it keeps.
//!
//! A witness may be given a further check ([`Witness::with_vet`]): a mirror acting as a
//! witness also refuses (422) any checkpoint its own verified copy of the log contradicts.
//!
//! Timestamps (C2SP tlog-cosignature): a `cosignature/v1` says that, as of its time, this is
//! the largest consistent tree the witness has seen. So the witness never dates a cosignature
//! of a log earlier than the last one it issued for that log (after its clock stepped back it
//! reuses the last time, so time never runs backwards as the tree grows), and never signs a
//! timestamp above 2^63 - 1.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::{fs, io};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use quill_verify::tlog::{rfc6962, Checkpoint, Note, VerifierKey};
use quill_verify::Hash;
use sha2::{Digest as _, Sha256};

use crate::durable::replace_file;
use crate::keys::NoteSigner;

/// At most this many consistency proof lines (C2SP tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// The content type of a 409 body.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Why the witness refused a checkpoint; each maps to the status code the spec names.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// 400: the request does not parse, or its old size exceeds the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the witness follows no log with this origin.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 403: no valid signature by a key of the log.
    #[error("no valid signature by the log's key: {0}")]
    Forbidden(String),
    /// 409: the old size is not the size the witness holds (or equal sizes, other roots).
    #[error("the witness holds size {0} for this log")]
    Conflict(u64),
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof does not verify: {0}")]
    BadProof(String),
    /// 422: the checkpoint contradicts what the witness knows beside the protocol (a
    /// mirror's verified copy of the log).
    #[error("the checkpoint contradicts the witness's copy of the log: {0}")]
    Contradicted(String),
    /// 500: the state could not be read or persisted.
    #[error("witness state: {0}")]
    Storage(#[from] io::Error),
    /// 500: the witness's clock is beyond what a cosignature can carry.
    #[error("the witness's clock ({0}) is beyond 2^63 - 1")]
    Clock(u64),
}

impl WitnessError {
    /// The HTTP status code the spec assigns.
    pub fn status(&self) -> StatusCode {
        match self {
            WitnessError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WitnessError::UnknownOrigin(_) => StatusCode::NOT_FOUND,
            WitnessError::Forbidden(_) => StatusCode::FORBIDDEN,
            WitnessError::Conflict(_) => StatusCode::CONFLICT,
            WitnessError::BadProof(_) | WitnessError::Contradicted(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            WitnessError::Storage(_) | WitnessError::Clock(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An `add-checkpoint` request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the submitter believes the witness holds.
    pub old_size: u64,
    /// The RFC 6962 consistency proof from `old_size` to the checkpoint.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    /// Parses a request body.
    pub fn parse(body: &str) -> Result<AddCheckpoint, WitnessError> {
        let bad = |why: &str| WitnessError::BadRequest(why.to_owned());
        let (head, note) = body
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old_size = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .filter(|n| *n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| bad("the first line is not `old <size>`"))?;
        let proof: Vec<Hash> = lines
            .map(|line| {
                Hash::from_base64(line).ok_or_else(|| bad("a proof line is not a base64 hash"))
            })
            .collect::<Result<_, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            note: note.to_owned(),
        })
    }

    /// The request body.
    pub fn to_body(&self) -> String {
        let mut body = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            body.push_str(&format!("{hash}\n"));
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }
}

/// Parses the logs file: one `log <vkey>` line per log key (the key name is the log's
/// origin), as in a C2SP tlog-policy; blank lines and `#` comments are skipped.
pub fn parse_logs(text: &str) -> Result<Vec<VerifierKey>, String> {
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            ["log", vkey, ..] => {
                let key =
                    VerifierKey::parse(vkey).map_err(|e| format!("line {}: {e}", number + 1))?;
                if key.key_type != quill_verify::tlog::note::TYPE_ED25519 {
                    return Err(format!(
                        "line {}: a log key must be an Ed25519 key",
                        number + 1
                    ));
                }
                keys.push(key);
            }
            _ => return Err(format!("line {}: expected `log <vkey>`", number + 1)),
        }
    }
    Ok(keys)
}

/// A check of each checkpoint beside the protocol's own, before it is cosigned: a mirror
/// acting as a witness refuses the checkpoints its verified copy contradicts. `Err` says why.
pub type Vet = Arc<dyn Fn(&Checkpoint) -> Result<(), String> + Send + Sync>;

/// The witness: its key, the logs it follows, and its state directory.
pub struct Witness {
    signer: NoteSigner,
    logs: Vec<VerifierKey>,
    state_dir: PathBuf,
    check_and_persist: Mutex<()>,
    vet: Option<Vet>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("signer", &self.signer)
            .field("logs", &self.logs)
            .field("state_dir", &self.state_dir)
            .field("vetted", &self.vet.is_some())
            .finish()
    }
}

impl Witness {
    /// A witness over `state_dir` (created if missing).
    pub fn open(
        signer: NoteSigner,
        logs: Vec<VerifierKey>,
        state_dir: &Path,
    ) -> io::Result<Witness> {
        fs::create_dir_all(state_dir)?;
        Ok(Witness {
            signer,
            logs,
            state_dir: state_dir.to_owned(),
            check_and_persist: Mutex::new(()),
            vet: None,
        })
    }

    /// This witness, cosigning only checkpoints that `vet` accepts too (else 422).
    pub fn with_vet(self, vet: Vet) -> Witness {
        Witness {
            vet: Some(vet),
            ..self
        }
    }

    /// The witness's `cosignature/v1` verifier key.
    pub fn cosigner_key(&self) -> VerifierKey {
        self.signer.cosigner_key()
    }

    fn state_path(&self, origin: &str) -> PathBuf {
        self.state_dir
            .join(hex::encode(Sha256::digest(origin.as_bytes())))
    }

    /// The size and root last cosigned for `origin` (size 0 and the empty root if none).
    pub fn state(&self, origin: &str) -> Result<(u64, Hash), WitnessError> {
        let (checkpoint, _) = self.stored(origin)?;
        Ok((checkpoint.size, checkpoint.root))
    }

    /// The checkpoint last cosigned for `origin` and that cosignature's timestamp.
    fn stored(&self, origin: &str) -> Result<(Checkpoint, u64), WitnessError> {
        let path = self.state_path(origin);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let empty = Checkpoint {
                    origin: origin.to_owned(),
                    size: 0,
                    root: rfc6962::empty_root(),
                    extensions: Vec::new(),
                };
                return Ok((empty, 0));
            }
            Err(e) => return Err(e.into()),
        };
        let corrupt = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt state file {}", path.display()),
            )
        };
        // The note with the witness's own cosignature; a bare checkpoint (the format before
        // timestamps were kept) has no time to keep.
        let (body, timestamp) = match Note::parse(&text) {
            Ok(note) => {
                let keys = [self.cosigner_key()];
                let timestamp = match note.verify(&keys).as_deref() {
                    Ok([(_, Some(timestamp))]) => *timestamp,
                    _ => return Err(corrupt().into()),
                };
                (note.text, timestamp)
            }
            Err(_) => (text, 0),
        };
        let checkpoint = Checkpoint::parse(&body).map_err(|_| corrupt())?;
        if checkpoint.origin != origin {
            return Err(corrupt().into());
        }
        Ok((checkpoint, timestamp))
    }

    /// Handles one `add-checkpoint` body; returns the cosignature line on success.
    pub fn add_checkpoint(&self, body: &str, now: u64) -> Result<String, WitnessError> {
        let request = AddCheckpoint::parse(body)?;
        let note =
            Note::parse(&request.note).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let checkpoint =
            Checkpoint::parse(&note.text).map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        let keys: Vec<VerifierKey> = self
            .logs
            .iter()
            .filter(|key| key.name == checkpoint.origin)
            .cloned()
            .collect();
        if keys.is_empty() {
            return Err(WitnessError::UnknownOrigin(checkpoint.origin));
        }
        match note.verify(&keys) {
            Ok(signed) if !signed.is_empty() => {}
            Ok(_) => {
                return Err(WitnessError::Forbidden(
                    "no signature by a known log key".into(),
                ))
            }
            Err(e) => return Err(WitnessError::Forbidden(e.to_string())),
        }
        if request.old_size > checkpoint.size {
            return Err(WitnessError::BadRequest(format!(
                "old size {} exceeds the checkpoint size {}",
                request.old_size, checkpoint.size
            )));
        }
        if let Some(vet) = &self.vet {
            vet(&checkpoint).map_err(WitnessError::Contradicted)?;
        }
        let _guard = self
            .check_and_persist
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (stored, last_timestamp) = self.stored(&checkpoint.origin)?;
        let (size, root) = (stored.size, stored.root);
        if request.old_size != size || (size == checkpoint.size && root != checkpoint.root) {
            return Err(WitnessError::Conflict(size));
        }
        rfc6962::verify_consistency(
            size,
            checkpoint.size,
            &root,
            &checkpoint.root,
            &request.proof,
        )
        .map_err(|e| WitnessError::BadProof(e.to_string()))?;
        if checkpoint.size == 0 && checkpoint.root != rfc6962::empty_root() {
            return Err(WitnessError::BadProof(
                "an empty tree has the empty root".into(),
            ));
        }
        let timestamp = now.max(last_timestamp);
        if timestamp > i64::MAX as u64 {
            return Err(WitnessError::Clock(timestamp));
        }
        let cosignature = self.signer.cosign(&note.text, timestamp);
        // Persist before answering: a cosignature must never be out for a state the witness
        // could forget in a crash.
        let stored = Note {
            text: note.text,
            signatures: vec![cosignature.clone()],
        };
        replace_file(
            &self.state_path(&checkpoint.origin),
            stored.to_text().as_bytes(),
            0o600,
        )?;
        Ok(cosignature.to_line())
    }
}

/// The witness's HTTP routes: `POST /add-checkpoint`.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .with_state(witness)
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: String) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let result = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    match result {
        Ok(Ok(line)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line,
        )
            .into_response(),
        Ok(Err(WitnessError::Conflict(size))) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
            format!("{size}\n"),
        )
            .into_response(),
        Ok(Err(error)) => {
            tracing::info!(%error, "add-checkpoint refused");
            (
                error.status(),
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{error}\n"),
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "add-checkpoint task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Binds `listen` and returns the bound address and the server future, which ends after
/// `shutdown` completes and in-flight requests finish.
pub async fn bind(
    witness: Arc<Witness>,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, impl Future<Output = io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let server = axum::serve(listener, router(witness)).with_graceful_shutdown(shutdown);
    Ok((address, async move { server.await }))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestLog {
        signer: NoteSigner,
        leaves: Vec<Hash>,
    }

    impl TestLog {
        fn new(origin: &str, seed: u8) -> TestLog {
            TestLog {
                signer: NoteSigner::from_seed(origin, [seed; 32]).unwrap(),
                leaves: Vec::new(),
            }
        }

        fn grow(&mut self, n: usize) {
            for _ in 0..n {
                let i = self.leaves.len() as u64;
                self.leaves.push(rfc6962::leaf_hash(&i.to_be_bytes()));
            }
        }

        fn note(&self, size: usize) -> String {
            let checkpoint = Checkpoint {
                origin: self.signer.name().to_owned(),
                size: size as u64,
                root: rfc6962::root(&self.leaves[..size]),
                extensions: vec![],
            };
            let text = checkpoint.to_text();
            Note {
                signatures: vec![self.signer.sign(&text)],
                text,
            }
            .to_text()
        }

        fn request(&self, old: usize, size: usize) -> String {
            AddCheckpoint {
                old_size: old as u64,
                proof: rfc6962::consistency_proof(&self.leaves[..size], old),
                note: self.note(size),
            }
            .to_body()
        }
    }

    fn witness(dir: &Path, log: &TestLog) -> Witness {
        let signer = NoteSigner::from_seed("witness.example", [9; 32]).unwrap();
        Witness::open(signer, vec![log.signer.verifier_key()], dir).unwrap()
    }

    #[test]
    fn the_request_body_round_trips_and_malformed_ones_are_400() {
        let mut log = TestLog::new("log.example", 1);
        log.grow(5);
        let body = log.request(3, 5);
        assert_eq!(AddCheckpoint::parse(&body).unwrap().to_body(), body);
        for bad in [
            "old 1\n",
            "old 01\n\nx",
            "new 1\n\nx",
            "old 1\nAAAA\n\nx",
            "old -1\n\nx",
        ] {
            assert_eq!(
                AddCheckpoint::parse(bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
        let too_long = format!(
            "old 1\n{}\nx",
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n".repeat(64)
        );
        assert!(AddCheckpoint::parse(&too_long).is_err());
    }

    #[test]
    fn the_witness_follows_a_growing_log_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TestLog::new("log.example", 1);
        log.grow(7);
        let w = witness(dir.path(), &log);
        let line = w.add_checkpoint(&log.request(0, 3), 1000).unwrap();
        let cosigned = format!("{}{line}", log.note(3));
        let keys = [w.cosigner_key()];
        assert_eq!(
            Note::parse(&cosigned).unwrap().verify(&keys).unwrap(),
            vec![(&keys[0], Some(1000))]
        );
        w.add_checkpoint(&log.request(3, 7), 1001).unwrap();
        // The same checkpoint again is cosigned again (equal sizes, equal roots).
        w.add_checkpoint(&log.request(7, 7), 1002).unwrap();

        let reopened = witness(dir.path(), &log);
        assert_eq!(
            reopened.state("log.example").unwrap(),
            (7, rfc6962::root(&log.leaves))
        );
        // The clock stepped back: the next cosignature keeps the last time, never earlier.
        let line = reopened.add_checkpoint(&log.request(7, 7), 900).unwrap();
        let cosigned = format!("{}{line}", log.note(7));
        assert_eq!(
            Note::parse(&cosigned).unwrap().verify(&keys).unwrap(),
            vec![(&keys[0], Some(1002))]
        );
        assert!(matches!(
            reopened.add_checkpoint(&log.request(7, 7), 1 << 63),
            Err(WitnessError::Clock(_))
        ));
        assert!(matches!(
            reopened.add_checkpoint(&log.request(3, 7), 1003),
            Err(WitnessError::Conflict(7))
        ));
    }

    #[test]
    fn each_refusal_has_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TestLog::new("log.example", 1);
        log.grow(8);
        let w = witness(dir.path(), &log);
        w.add_checkpoint(&log.request(0, 4), 1).unwrap();

        let mut stranger = TestLog::new("other.example", 2);
        stranger.grow(2);
        assert_eq!(
            w.add_checkpoint(&stranger.request(0, 2), 1)
                .unwrap_err()
                .status(),
            StatusCode::NOT_FOUND
        );

        let mut impostor = TestLog::new("log.example", 3);
        impostor.grow(8);
        assert_eq!(
            w.add_checkpoint(&impostor.request(4, 8), 1)
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );

        assert_eq!(
            w.add_checkpoint(&log.request(0, 8).replacen("old 0", "old 9", 1), 1)
                .unwrap_err()
                .status(),
            StatusCode::BAD_REQUEST
        );

        // A different history of the same size (a split view) and a fork that grew.
        let mut fork = TestLog::new("log.example", 1);
        fork.grow(3);
        fork.leaves.push(rfc6962::leaf_hash(b"fork"));
        fork.grow(4);
        assert!(matches!(
            w.add_checkpoint(&fork.request(4, 4), 1),
            Err(WitnessError::Conflict(4))
        ));
        assert_eq!(
            w.add_checkpoint(&fork.request(4, 8), 1)
                .unwrap_err()
                .status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Nothing of the refused requests was stored.
        assert_eq!(
            w.state("log.example").unwrap(),
            (4, rfc6962::root(&log.leaves[..4]))
        );
        w.add_checkpoint(&log.request(4, 8), 1).unwrap();
    }

    #[test]
    fn a_vetted_witness_cosigns_only_what_its_vet_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TestLog::new("log.example", 1);
        log.grow(8);
        let accepted_root = rfc6962::root(&log.leaves[..4]);
        let vet: Vet = Arc::new(move |checkpoint: &Checkpoint| {
            if checkpoint.size == 4 && checkpoint.root != accepted_root {
                return Err("another tree of size 4".into());
            }
            Ok(())
        });
        let w = witness(dir.path(), &log).with_vet(vet);
        let mut fork = TestLog::new("log.example", 1);
        fork.grow(3);
        fork.leaves.push(rfc6962::leaf_hash(b"fork"));
        let refused = w.add_checkpoint(&fork.request(0, 4), 1).unwrap_err();
        assert!(
            matches!(refused, WitnessError::Contradicted(_)),
            "{refused}"
        );
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(w.state("log.example").unwrap().0, 0, "nothing stored");
        w.add_checkpoint(&log.request(0, 4), 1).unwrap();
        w.add_checkpoint(&log.request(4, 8), 2).unwrap();
    }
}
