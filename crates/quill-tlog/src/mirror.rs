//! A verifying mirror of a ledger's transparency log: an independent, read-only copy that
//! advances only to checkpoints it has checked itself.
//!
//! Each [`sync`] fetches the upstream `checkpoint`, checks it against the mirror's C2SP
//! tlog-policy (log signature, witness quorum, cosignature timestamps), fetches the missing
//! leaves from the entry bundles (`tile/entries/<N>[.p/<W>]`), re-checks every block (its
//! hash from its entries hash and previous hash, its index, the hash chain, and the QLDB
//! digest, with [`ChainMonitor`]), appends them, and requires that its own copy hashes to the
//! checkpoint's root. Since the mirror's prefix is its own verified copy, that root equality
//! is the consistency check between the old and the new checkpoint. Only then is the new
//! checkpoint persisted (`checkpoint`, atomically) and served.
//!
//! Any inconsistency (a checkpoint smaller than the mirrored one, another root at the same
//! size, a bad block, a root mismatch) halts the mirror: the copy stays at the last verified
//! checkpoint, the leaves fetched since are dropped, and the error says where. The mirror
//! serves its copy under the upstream's paths (`checkpoint`, tiles, `proof/bundle?index=I`)
//! and its state at `GET /mirror/status`.
//!
//! The blocks themselves are the caller's to copy (`quill mirror` keeps them in a replica
//! ledger): [`Mirror::block_leaf`] gives the verified hash each must have, [`Mirror::halt`]
//! stops the mirror on one that does not, and [`Mirror::set_blocks`] reports how many are held.
//!
//! A mirror can also be one of the log's witnesses: [`Mirror::vet`] lets a
//! [`crate::witness::Witness`] cosign only checkpoints that agree with the verified copy.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use quill_verify::tlog::{
    verify_cosigned_checkpoint_at, BlockLeaf, ChainMonitor, Checkpoint, Policy, TlogError,
};
use quill_verify::Hash;

use crate::durable::replace_file;
use crate::log::{proof_bundle, LogError, LogStore};
use crate::tiles::{TilePath, TILE_WIDTH};
use crate::witness::Witness;

/// Why the mirror cannot advance.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The upstream could not be read (retried at the next sync).
    #[error("fetching {path}: {why}")]
    Fetch {
        /// The resource.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The local copy could not be read or written.
    #[error("{0}")]
    Local(#[from] LogError),
    /// The upstream served something inconsistent: the mirror halts.
    #[error("inconsistent upstream: {0}")]
    Inconsistent(String),
}

impl MirrorError {
    /// Whether this error halts the mirror (the upstream misbehaved) rather than delays it.
    pub fn halts(&self) -> bool {
        matches!(self, MirrorError::Inconsistent(_))
    }
}

/// The mirror's verified copy.
#[derive(Debug)]
pub struct Mirror {
    dir: PathBuf,
    store: Option<LogStore>,
    monitor: ChainMonitor,
    checkpoint: Option<(Checkpoint, String)>,
    policy: Policy,
    halted: Option<String>,
    /// Blocks of the verified log held in full (by the caller's copy of the ledger).
    blocks: u64,
}

impl Mirror {
    /// Opens the copy in `dir`: drops leaves beyond the last verified checkpoint (a sync cut
    /// short) and re-checks the chain of the rest.
    pub fn open(dir: &Path, policy: Policy) -> Result<Mirror, MirrorError> {
        std::fs::create_dir_all(dir).map_err(LogError::from)?;
        let checkpoint = match std::fs::read_to_string(dir.join("checkpoint")) {
            Ok(note) => {
                let parsed = quill_verify::tlog::Note::parse(&note)
                    .and_then(|n| Checkpoint::parse(&n.text))
                    .map_err(|e| MirrorError::Inconsistent(format!("local checkpoint: {e}")))?;
                Some((parsed, note))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(LogError::from(e).into()),
        };
        let size = checkpoint.as_ref().map_or(0, |(c, _)| c.size);
        let store = LogStore::open(&dir.join("log"))?;
        if store.size() < size {
            return Err(MirrorError::Inconsistent(format!(
                "the local copy has {} leaves, its checkpoint {size}",
                store.size()
            )));
        }
        let store = store.truncate(size)?;
        let mut monitor = ChainMonitor::new();
        for index in 0..size {
            monitor
                .accept(&store.block_leaf(index)?)
                .map_err(|e| MirrorError::Inconsistent(format!("local copy: {e}")))?;
        }
        if let Some((checkpoint, _)) = &checkpoint {
            if store.root(size)? != checkpoint.root {
                return Err(MirrorError::Inconsistent(
                    "the local copy does not hash to its checkpoint".into(),
                ));
            }
        }
        Ok(Mirror {
            dir: dir.to_owned(),
            store: Some(store),
            monitor,
            checkpoint,
            policy,
            halted: None,
            blocks: 0,
        })
    }

    fn store(&self) -> &LogStore {
        self.store
            .as_ref()
            .expect("the store is only taken while truncating")
    }

    /// The number of verified blocks.
    pub fn size(&self) -> u64 {
        self.monitor.size()
    }

    /// The QLDB digest of the verified blocks.
    pub fn qldb_digest(&self) -> Option<Hash> {
        self.monitor.qldb_digest()
    }

    /// The last verified checkpoint note.
    pub fn checkpoint(&self) -> Option<&str> {
        self.checkpoint.as_ref().map(|(_, note)| note.as_str())
    }

    /// Why the mirror halted, if it did.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Halts the mirror (this and every later [`sync`] fail with `why`): for an inconsistency
    /// found outside the log, such as a block that does not hash to its verified leaf.
    pub fn halt(&mut self, why: String) {
        self.halted.get_or_insert(why);
    }

    /// The verified leaf of block `index` (below [`Mirror::size`]).
    pub fn block_leaf(&self, index: u64) -> Result<BlockLeaf, MirrorError> {
        if index >= self.size() {
            return Err(LogError::OutOfRange(format!(
                "block {index} is beyond the {} verified",
                self.size()
            ))
            .into());
        }
        Ok(self.store().block_leaf(index)?)
    }

    /// Records how many of the verified blocks the caller holds in full (shown by
    /// `/mirror/status` as `blocks`).
    pub fn set_blocks(&mut self, blocks: u64) {
        self.blocks = blocks;
    }

    /// Whether a checkpoint the log signed agrees with the verified copy, for a mirror acting
    /// as a witness ([`crate::witness::Witness::with_vet`]): one of a size the mirror holds
    /// must have its root. Another root there is a split view, so the mirror halts; a halted
    /// mirror accepts nothing more. Larger checkpoints are left to the witness's consistency
    /// proof check.
    pub fn vet(&mut self, checkpoint: &Checkpoint) -> Result<(), String> {
        if let Some(why) = &self.halted {
            return Err(format!("the mirror halted: {why}"));
        }
        if checkpoint.size > self.size() {
            return Ok(());
        }
        let root = self
            .store()
            .root(checkpoint.size)
            .map_err(|e| e.to_string())?;
        if root != checkpoint.root {
            let why = format!(
                "the log signed another tree of size {} than the mirror verified (a split view)",
                checkpoint.size
            );
            self.halted = Some(format!("inconsistent upstream: {why}"));
            return Err(why);
        }
        Ok(())
    }

    /// Checks fetched leaves `size..` against `checkpoint` and adopts them, or drops them.
    fn advance(
        &mut self,
        checkpoint: Checkpoint,
        note: String,
        leaves: Vec<BlockLeaf>,
    ) -> Result<(), MirrorError> {
        let old_size = self.size();
        let mut monitor = self.monitor.clone();
        let mut store = self.store.take().expect("store present");
        let result = (|| {
            for leaf in &leaves {
                monitor.accept(leaf).map_err(|e| {
                    MirrorError::Inconsistent(format!(
                        "block {} of checkpoint size {}: {e}",
                        monitor.size(),
                        checkpoint.size
                    ))
                })?;
            }
            store.append(&leaves)?;
            if store.root(checkpoint.size)? != checkpoint.root {
                return Err(MirrorError::Inconsistent(format!(
                    "blocks {old_size}..{} do not hash to the root of the checkpoint of size {} \
                     (the upstream's tree is not consistent with the mirrored one)",
                    checkpoint.size, checkpoint.size
                )));
            }
            replace_file(&self.dir.join("checkpoint"), note.as_bytes(), 0o644)
                .map_err(LogError::from)?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.store = Some(store);
                self.monitor = monitor;
                self.checkpoint = Some((checkpoint, note));
                Ok(())
            }
            Err(error) => {
                self.store = Some(store.truncate(old_size)?);
                Err(error)
            }
        }
    }
}

/// One sync: fetches the upstream checkpoint (`fetch("checkpoint")`, paths relative to the
/// upstream log's prefix) and the missing leaves, and advances the mirror if all of it
/// checks out at time `now` (Unix seconds). Returns the mirrored size. An inconsistency
/// halts the mirror (this and every later call fail with it).
pub async fn sync<F, Fut>(
    mirror: &Mutex<Mirror>,
    mut fetch: F,
    now: u64,
) -> Result<u64, MirrorError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, String>>,
{
    let lock = || mirror.lock().unwrap_or_else(|p| p.into_inner());
    let (size, root, policy) = {
        let m = lock();
        if let Some(why) = &m.halted {
            return Err(MirrorError::Inconsistent(why.clone()));
        }
        let root = m.checkpoint.as_ref().map(|(c, _)| c.root);
        (m.size(), root, m.policy.clone())
    };
    let halt = |error: MirrorError| {
        if error.halts() {
            lock().halted = Some(error.to_string());
        }
        error
    };
    let mut get = |path: String| {
        let request = fetch(path.clone());
        async move {
            request
                .await
                .map_err(|why| MirrorError::Fetch { path, why })
        }
    };
    let note =
        String::from_utf8(get("checkpoint".into()).await?).map_err(|_| MirrorError::Fetch {
            path: "checkpoint".into(),
            why: "not UTF-8".into(),
        })?;
    let verified = verify_cosigned_checkpoint_at(&note, &policy, now).map_err(|e| {
        let why = format!("the upstream checkpoint does not satisfy the policy: {e}");
        match e {
            // A checkpoint that does not (yet) meet the quorum is not proof of misbehaviour.
            TlogError::QuorumNotMet { .. } => MirrorError::Fetch {
                path: "checkpoint".into(),
                why,
            },
            _ => halt(MirrorError::Inconsistent(why)),
        }
    })?;
    let checkpoint = verified.checkpoint;
    if checkpoint.size < size {
        return Err(halt(MirrorError::Inconsistent(format!(
            "the upstream checkpoint has {} blocks, fewer than the {size} mirrored",
            checkpoint.size
        ))));
    }
    if checkpoint.size == size {
        if root.is_some_and(|root| root != checkpoint.root) {
            return Err(halt(MirrorError::Inconsistent(format!(
                "the upstream signed another tree of the mirrored size {size} (a split view)"
            ))));
        }
        return Ok(size);
    }
    let mut leaves = Vec::with_capacity((checkpoint.size - size) as usize);
    let mut next = size;
    while next < checkpoint.size {
        let tile = next / TILE_WIDTH;
        let width = (checkpoint.size - tile * TILE_WIDTH).min(TILE_WIDTH);
        let path = TilePath {
            level: None,
            index: tile,
            width,
        }
        .to_path();
        let bundle = get(path.clone()).await?;
        let entries = parse_entries(&bundle)
            .map_err(|why| halt(MirrorError::Inconsistent(format!("{path}: {why}"))))?;
        if entries.len() as u64 != width {
            return Err(halt(MirrorError::Inconsistent(format!(
                "{path} holds {} entries",
                entries.len()
            ))));
        }
        for entry in &entries[(next - tile * TILE_WIDTH) as usize..] {
            let leaf = BlockLeaf::parse(entry)
                .map_err(|e| halt(MirrorError::Inconsistent(format!("block {next}: {e}"))))?;
            leaves.push(leaf);
            next += 1;
        }
    }
    let size = checkpoint.size;
    // The guard must be gone before `halt` locks again.
    let advanced = lock().advance(checkpoint, note, leaves);
    advanced.map_err(halt)?;
    Ok(size)
}

/// The entries of an entry bundle: uint16-length-prefixed.
fn parse_entries(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let [high, low, rest @ ..] = bytes else {
            return Err("a truncated entry length".into());
        };
        let len = u16::from_be_bytes([*high, *low]) as usize;
        if rest.len() < len {
            return Err("a truncated entry".into());
        }
        entries.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Ok(entries)
}

/// The mirror's read-only routes, under `/ledgers/{ledger}/log/`: `checkpoint`, tiles,
/// `proof/bundle?index=I`; and `GET /mirror/status` (JSON: `size` verified, `blocks` held in
/// full, QLDB digest, halted).
pub fn router(mirror: Arc<Mutex<Mirror>>, ledger: &str) -> Router {
    Router::new()
        .route("/mirror/status", get(status))
        .route(&format!("/ledgers/{ledger}/log/{{*rest}}"), get(log_get))
        .with_state(mirror)
}

async fn status(State(mirror): State<Arc<Mutex<Mirror>>>) -> Response {
    let m = mirror.lock().unwrap_or_else(|p| p.into_inner());
    let body = format!(
        "{{\"size\":{},\"blocks\":{},\"qldbDigest\":{},\"halted\":{}}}\n",
        m.size(),
        m.blocks,
        json_string(m.qldb_digest().map(|d| d.to_base64()).as_deref()),
        json_string(m.halted()),
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_string(value: Option<&str>) -> String {
    match value {
        None => "null".into(),
        Some(text) => format!(
            "\"{}\"",
            text.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        ),
    }
}

async fn log_get(
    State(mirror): State<Arc<Mutex<Mirror>>>,
    UrlPath(rest): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let m = mirror.lock().unwrap_or_else(|p| p.into_inner());
    let Some((checkpoint, note)) = &m.checkpoint else {
        return (StatusCode::NOT_FOUND, "nothing mirrored yet\n").into_response();
    };
    let not_found = |why: String| (StatusCode::NOT_FOUND, format!("{why}\n")).into_response();
    if rest == "checkpoint" {
        return note.clone().into_response();
    }
    if rest == "proof/bundle" {
        let index = query.get("index").and_then(|i| i.parse::<u64>().ok());
        let Some(index) = index.filter(|i| *i < checkpoint.size) else {
            return (
                StatusCode::BAD_REQUEST,
                "index=N below the size is required\n",
            )
                .into_response();
        };
        return match proof_bundle(m.store(), index, checkpoint.size, note, None) {
            Ok(proof) => proof.to_text().into_response(),
            Err(error) => not_found(error.to_string()),
        };
    }
    match TilePath::parse(&rest).map(|tile| m.store().tile(&tile, checkpoint.size)) {
        Some(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Some(Err(error)) => not_found(error.to_string()),
        None => not_found(format!("no log resource {rest}")),
    }
}

/// [`router`], with `witness` also its `POST /add-checkpoint`.
pub fn routes(mirror: Arc<Mutex<Mirror>>, ledger: &str, witness: Option<Arc<Witness>>) -> Router {
    let routes = router(mirror, ledger);
    match witness {
        Some(witness) => routes.merge(crate::witness::router(witness)),
        None => routes,
    }
}

#[cfg(test)]
mod tests {
    use ion_rs::Element;
    use quill_ledger::{Ledger, LedgerOptions};

    use super::*;
    use crate::keys::NoteSigner;
    use crate::log::Publisher;

    /// An upstream in memory: a ledger, its log store, and the checkpoint served.
    struct Upstream {
        ledger: Ledger,
        store: LogStore,
        note: String,
        size: u64,
    }

    impl Upstream {
        fn new(dir: &Path, blocks: u64, seed: u8) -> Upstream {
            let ledger =
                Ledger::create(&dir.join("ledger"), "shop", LedgerOptions::default()).unwrap();
            ledger
                .transact(|tx| tx.create_table("Item", None).map(|_| ()))
                .unwrap();
            for i in 2..blocks {
                let doc = Element::read_one(format!("{{n: {i}, seed: {seed}}}")).unwrap();
                ledger
                    .transact(|tx| tx.insert("Item", doc.clone()).map(|_| ()))
                    .unwrap();
            }
            let mut store = LogStore::open(&dir.join("tlog")).unwrap();
            store.sync(&ledger).unwrap();
            let mut publisher = Publisher::open(signer(), &dir.join("tlog/checkpoint")).unwrap();
            let note = publisher.publish(&store).unwrap().unwrap();
            Upstream {
                size: store.size(),
                ledger,
                store,
                note,
            }
        }

        fn fetch(&self, path: String) -> std::future::Ready<Result<Vec<u8>, String>> {
            std::future::ready(if path == "checkpoint" {
                Ok(self.note.clone().into_bytes())
            } else {
                TilePath::parse(&path)
                    .ok_or_else(|| format!("no {path}"))
                    .and_then(|tile| self.store.tile(&tile, self.size).map_err(|e| e.to_string()))
            })
        }
    }

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("quill.test/shop", [3; 32]).unwrap()
    }

    fn policy() -> Policy {
        Policy::parse(&format!("log {}\nquorum none\n", signer().verifier_key())).unwrap()
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn the_mirror_copies_verifies_and_halts_on_another_history() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::new(&dir.path().join("up"), 300, 1);
        let mirror = Mutex::new(Mirror::open(&dir.path().join("mirror"), policy()).unwrap());
        assert_eq!(run(sync(&mirror, |p| upstream.fetch(p), 0)).unwrap(), 300);
        let digest = upstream.ledger.digest().digest;
        assert_eq!(mirror.lock().unwrap().qldb_digest(), Some(digest));

        // Reopened from disk: the same verified copy.
        drop(mirror);
        let mirror = Mutex::new(Mirror::open(&dir.path().join("mirror"), policy()).unwrap());
        assert_eq!(mirror.lock().unwrap().size(), 300);
        assert_eq!(mirror.lock().unwrap().qldb_digest(), Some(digest));

        // The same key signs another, longer history: its first new block does not chain to
        // the copy's last one.
        let fork = Upstream::new(&dir.path().join("fork"), 310, 2);
        let error = run(sync(&mirror, |p| fork.fetch(p), 0)).unwrap_err();
        assert!(error.halts(), "{error}");
        assert!(
            error.to_string().contains("block 300: previousBlockHash"),
            "{error}"
        );
        let halted = mirror.lock().unwrap();
        assert_eq!((halted.size(), halted.qldb_digest()), (300, Some(digest)));
        assert!(halted.halted().is_some());
        drop(halted);
        // Halted, it does not resume even with the honest upstream.
        assert!(run(sync(&mirror, |p| upstream.fetch(p), 0)).is_err());

        // A fresh mirror of the fork, shown the shorter honest history, sees a rollback.
        let other = Mutex::new(Mirror::open(&dir.path().join("other"), policy()).unwrap());
        run(sync(&other, |p| fork.fetch(p), 0)).unwrap();
        let error = run(sync(&other, |p| upstream.fetch(p), 0)).unwrap_err();
        assert!(error.to_string().contains("fewer than the 310"), "{error}");

        // And one shown another tree of its own size sees a split view.
        let third = Mutex::new(Mirror::open(&dir.path().join("third"), policy()).unwrap());
        run(sync(&third, |p| fork.fetch(p), 0)).unwrap();
        let split = Upstream::new(&dir.path().join("split"), 310, 3);
        let error = run(sync(&third, |p| split.fetch(p), 0)).unwrap_err();
        assert!(error.to_string().contains("split view"), "{error}");
        assert!(third.lock().unwrap().halted().is_some());
    }

    #[test]
    fn the_mirror_vets_checkpoints_against_its_copy_and_halts_on_a_split_view() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::new(&dir.path().join("up"), 300, 1);
        let mirror = Mutex::new(Mirror::open(&dir.path().join("mirror"), policy()).unwrap());
        run(sync(&mirror, |p| upstream.fetch(p), 0)).unwrap();
        let checkpoint = |size: u64, root: Hash| Checkpoint {
            origin: "quill.test/shop".into(),
            size,
            root,
            extensions: Vec::new(),
        };
        let mut m = mirror.lock().unwrap();
        for size in [1, 150, 300] {
            let root = upstream.store.root(size).unwrap();
            assert_eq!(m.vet(&checkpoint(size, root)), Ok(()), "size {size}");
        }
        // Beyond the copy: left to the witness's consistency proof check.
        assert_eq!(m.vet(&checkpoint(400, Hash([7; 32]))), Ok(()));

        let fork = Upstream::new(&dir.path().join("fork"), 300, 2);
        let split = checkpoint(300, fork.store.root(300).unwrap());
        assert!(m.vet(&split).unwrap_err().contains("split view"));
        assert!(m.halted().is_some());
        let honest = checkpoint(300, upstream.store.root(300).unwrap());
        assert!(m.vet(&honest).is_err(), "a halted mirror vets nothing");
    }
}
