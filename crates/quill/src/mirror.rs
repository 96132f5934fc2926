//! `quill mirror`: keeps a verified, read-only copy of a served ledger: its transparency log
//! (`quill_tlog::mirror`) and its blocks, fetched over HTTP(S) from `--from` (signed with
//! SigV4 when `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` are set), and serves both with
//! `--listen`; with `--witness-key`, it is also a C2SP tlog-witness of that log that cosigns
//! only what agrees with its verified copy. Prints `quill: listening on http://ADDR` (`https`
//! with `--tls-cert`) once bound, and `quill mirror: halted: …` (exit status 3 without
//! `--listen`) when the upstream turns out inconsistent.
//!
//! The blocks ([`BlockCopy`]) follow the log: after each sync of the log, the blocks up to its
//! verified size are fetched from `GET /ledgers/{name}/journal/blocks`, each re-verified
//! (QLDB's hashes, its place in the chain) and required to hash to the block hash of its
//! verified leaf, and appended unchanged to a ledger of the same strand in
//! `<data-dir>/<ledger>/ledgers/<ledger>/`. So the copy never holds a block the witnessed log
//! does not commit to, and its digest at any tip is the upstream's. `--listen` serves it with
//! `quill-server` in read-only mode (the QLDB Session API and control plane: SELECT, history,
//! GetDigest, GetBlock, GetRevision; every write is refused).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use hyper::Method;
use quill_ledger::{Importer, Ledger, LedgerError, LedgerOptions};
use quill_server::journal_blocks::{self, BLOCKS_PER_REPLY_MAX};
use quill_server::registry::{write_control, NewLedger, Registry, AWS_OWNED_KMS_KEY};
use quill_server::{Replica, ServerConfig};
use quill_tlog::keys::NoteSigner;
use quill_tlog::mirror::{sync, Mirror, MirrorError};
use quill_tlog::witness::{Vet, Witness};
use quill_verify::tlog::{Checkpoint, Policy};
use quill_verify::Hash;

use crate::args::AuthArg;
use crate::http::{Connection, Endpoint, Signer};

/// `quill mirror`.
#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// The upstream server, `http[s]://HOST[:PORT]`.
    #[arg(long)]
    from: String,
    /// The ledger to mirror.
    #[arg(long)]
    ledger: String,
    /// Where the copy is kept (`<data-dir>/<ledger>/`: the log, and the ledger in
    /// `ledgers/<ledger>/`).
    #[arg(long, default_value = "./quill-mirror")]
    data_dir: PathBuf,
    /// The C2SP tlog-policy the upstream's checkpoints must satisfy (its log key, witnesses
    /// and quorum).
    #[arg(long)]
    policy: PathBuf,
    /// Time between two syncs, e.g. `1s` or `200ms`.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Serve the copy on this address: the log (checkpoint, tiles, proof bundles),
    /// `/mirror/status`, and the QLDB APIs read-only (drivers query the copy).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Authentication of the QLDB APIs on `--listen`, as for `quill serve`: defaults to
    /// `credentials` when --credentials is given, else to `none` on a loopback address.
    #[arg(long, value_enum, requires = "listen")]
    auth: Option<AuthArg>,
    /// Credentials file for `--listen`: one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line.
    #[arg(long, requires = "listen")]
    credentials: Option<PathBuf>,
    /// Also act as one of the log's witnesses with this key (`quill witness keygen`):
    /// serve C2SP tlog-witness `POST /add-checkpoint` on `--listen` for the policy's log,
    /// cosigning only checkpoints consistent with what this witness cosigned before and with
    /// the mirror's own verified copy (a checkpoint contradicting the copy halts the mirror).
    /// The witness state is kept in `<data-dir>/<ledger>/witness/`.
    #[arg(long, requires = "listen")]
    witness_key: Option<PathBuf>,
    /// HTTPS on `--listen` (`--tls-cert`, `--tls-key`), as for `quill serve`.
    #[command(flatten)]
    tls: crate::args::TlsArgs,
    /// A PEM CA certificate to trust for an `https://` upstream.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// Runs the mirror until interrupted (or, without `--listen`, until it halts).
pub fn run(args: MirrorArgs) -> anyhow::Result<()> {
    let interval = crate::args::parse_duration(&args.interval)
        .with_context(|| format!("--interval {:?}", args.interval))?;
    quill_ledger::validate_ledger_name(&args.ledger)?;
    let policy_text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("cannot read {}", args.policy.display()))?;
    let policy =
        Policy::parse(&policy_text).with_context(|| format!("policy {}", args.policy.display()))?;
    let endpoint = Endpoint::parse(&args.from, args.ca_cert.as_deref())?;
    let dir = args.data_dir.join(&args.ledger);
    let auth = args
        .listen
        .map(|listen| crate::args::auth_mode(args.auth, args.credentials.clone(), listen))
        .transpose()?;
    let tls = args.tls.check()?;
    if tls.is_some() && args.listen.is_none() {
        anyhow::bail!("--tls-cert and --tls-key need --listen");
    }
    let log_keys = policy.logs.iter().map(|log| log.key.clone()).collect();
    let mirror = Arc::new(Mutex::new(
        Mirror::open(&dir, policy).with_context(|| format!("mirror {}", dir.display()))?,
    ));
    let copy = Arc::new(BlockCopy::open(&dir, &args.ledger)?);
    copy.check(&mut mirror.lock().unwrap_or_else(|p| p.into_inner()))?;
    let witness = match &args.witness_key {
        Some(key) => {
            let signer = NoteSigner::read_file(key)?;
            let state_dir = dir.join("witness");
            let vetted = mirror.clone();
            let vet: Vet = Arc::new(move |checkpoint: &Checkpoint| {
                vetted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .vet(checkpoint)
            });
            let witness = Witness::open(signer, log_keys, &state_dir)
                .with_context(|| format!("cannot open {}", state_dir.display()))?;
            Some(Arc::new(witness.with_vet(vet)))
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("quill-mirror")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = match (args.listen, auth) {
            (Some(listen), Some(auth)) => {
                let mut config = ServerConfig::new(dir.clone(), listen);
                config.auth = auth;
                let config_tls = tls.is_some();
                config.tls = tls;
                config.replica = Some(Replica {
                    registry: copy.registry.clone(),
                    routes: quill_tlog::mirror::routes(mirror.clone(), &args.ledger, witness),
                });
                let (address, server) = quill_server::bind(config, crate::serve::shutdown_signal())
                    .await
                    .with_context(|| format!("cannot serve on {listen}"))?;
                let scheme = if config_tls { "https" } else { "http" };
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "quill: listening on {scheme}://{address}")?;
                stdout.flush()?;
                Some(tokio::spawn(server))
            }
            _ => None,
        };
        let follower = follow(mirror, copy, endpoint, args.ledger, interval);
        match server {
            // A halted mirror keeps serving what it verified, until interrupted.
            Some(server) => {
                let follower = tokio::spawn(follower);
                let served = server.await;
                follower.abort();
                served.context("the mirror's server failed")??;
                Ok(())
            }
            None => {
                follower.await;
                Err(crate::CorruptionFound("the mirror halted".into()).into())
            }
        }
    })
}

/// The mirror's copy of the blocks: a replica ledger (`LedgerOptions::replica`) in
/// `<dir>/ledgers/<name>/`, in a registry the server serves it from.
struct BlockCopy {
    registry: Arc<Registry>,
    name: String,
}

fn replica_options() -> LedgerOptions {
    LedgerOptions {
        replica: true,
        ..Default::default()
    }
}

/// Why blocks could not be copied.
enum CopyError {
    /// The upstream served a block its verified log does not commit to: the mirror halts.
    Inconsistent(String),
    /// Anything else (retried at the next sync).
    Failed(String),
}

impl BlockCopy {
    fn open(dir: &Path, name: &str) -> anyhow::Result<BlockCopy> {
        let registry = Registry::open(dir, replica_options())
            .with_context(|| format!("the block copy in {}", dir.display()))?;
        let copy = BlockCopy {
            registry: Arc::new(registry),
            name: name.to_owned(),
        };
        if let Some(fault) = copy.registry.faults().into_iter().next() {
            bail!(
                "the block copy {} cannot be opened: {}",
                fault.name,
                fault.reason
            );
        }
        Ok(copy)
    }

    fn ledger(&self) -> Option<Ledger> {
        self.registry.get(&self.name).ok().map(|(ledger, _)| ledger)
    }

    /// Blocks held.
    fn size(&self) -> u64 {
        self.ledger()
            .map_or(0, |ledger| ledger.digest().tip.sequence_no + 1)
    }

    /// Checks the copy against the verified log at start (its last block must be the log's)
    /// and records its size in the mirror.
    fn check(&self, mirror: &mut Mirror) -> anyhow::Result<()> {
        let size = self.size();
        if let Some(ledger) = self.ledger() {
            let last = ledger.block_hashes(size - 1)?.hash;
            let leaf = mirror.block_leaf(size - 1);
            if !leaf.is_ok_and(|leaf| leaf.block_hash == last) {
                bail!(
                    "the block copy's last block {} is not the one the verified log holds",
                    size - 1
                );
            }
        }
        mirror.set_blocks(size);
        Ok(())
    }

    /// Appends `blocks` (blocks `self.size()..`, of strand `strand`), each of which must hash
    /// to the hash beside it, up to the first that does not; the first block creates the
    /// ledger.
    fn append(&self, strand: &str, blocks: &[(&[u8], Hash)]) -> Result<(), CopyError> {
        let refused = |error: LedgerError| match error {
            LedgerError::ImportRejected { .. } => CopyError::Inconsistent(error.to_string()),
            other => CopyError::Failed(other.to_string()),
        };
        if let Some(ledger) = self.ledger() {
            if ledger.strand_id() != strand {
                return Err(CopyError::Inconsistent(format!(
                    "the upstream's strand is {strand}, the copy's {}",
                    ledger.strand_id()
                )));
            }
            return ledger.append_verified(blocks).map_err(refused);
        }
        // The first blocks: staged, then published with the control record the server needs
        // (a crash leaves only the staging directory, which opening the registry removes).
        let staging = self.registry.ledger_dir(&format!(".{}.copying", self.name));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| CopyError::Failed(e.to_string()))?;
        }
        let mut importer =
            Importer::create(&staging, &self.name, strand, replica_options()).map_err(refused)?;
        let mut refusal = None;
        for (payload, hash) in blocks {
            if let Err(error) = importer.push_payload(payload, *hash) {
                refusal = Some(refused(error));
                break;
            }
        }
        if importer.blocks() > 0 {
            self.publish(importer)?;
        }
        refusal.map_or(Ok(()), Err)
    }

    /// Publishes the first blocks with the control record the server needs.
    fn publish(&self, importer: Importer) -> Result<(), CopyError> {
        let control = crate::admin::new_control(NewLedger {
            name: self.name.clone(),
            permissions_mode: "STANDARD".into(),
            deletion_protection: true,
            kms_key: AWS_OWNED_KMS_KEY.into(),
            tags: Default::default(),
        });
        let ledger = importer
            .finish(&self.registry.ledger_dir(&self.name), |dir| {
                write_control(&quill_ledger::storage::Storage::Os, dir, &control)
                    .map_err(LedgerError::Io)
            })
            .map_err(|e| CopyError::Failed(e.to_string()))?;
        self.registry
            .adopt(control, ledger)
            .map_err(|e| CopyError::Failed(e.message))
    }
}

/// Fetches blocks up to the mirror's verified size into `copy`; returns the blocks held.
async fn copy_blocks<F, Fut>(
    mirror: &Mutex<Mirror>,
    copy: &Arc<BlockCopy>,
    ledger: &str,
    get: F,
) -> Result<u64, MirrorError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, String>>,
{
    let lock = || mirror.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let from = copy.size();
        let verified = lock().size();
        if from >= verified {
            return Ok(from);
        }
        let count = (verified - from).min(BLOCKS_PER_REPLY_MAX);
        let path = format!("/ledgers/{ledger}/journal/blocks?from={from}&count={count}");
        let fetch_error = |why: String| MirrorError::Fetch {
            path: path.clone(),
            why,
        };
        let body = get(path.clone()).await.map_err(fetch_error)?;
        let (strand, payloads) = journal_blocks::parse_body(&body).map_err(fetch_error)?;
        if payloads.is_empty() {
            return Err(fetch_error(format!("no block {from} in the reply")));
        }
        // Never past the verified checkpoint, whatever the upstream sent.
        let payloads = &payloads[..payloads.len().min(count as usize)];
        let blocks = {
            let m = lock();
            (from..)
                .zip(payloads)
                .map(|(index, payload)| Ok((*payload, m.block_leaf(index)?.block_hash)))
                .collect::<Result<Vec<_>, MirrorError>>()?
        };
        let appended = tokio::task::block_in_place(|| copy.append(strand, &blocks));
        // Also after a refusal: the blocks before the refused one were appended.
        lock().set_blocks(copy.size());
        match appended {
            Ok(()) => {}
            Err(CopyError::Inconsistent(why)) => {
                let error = MirrorError::Inconsistent(why);
                lock().halt(error.to_string());
                return Err(error);
            }
            Err(CopyError::Failed(why)) => {
                return Err(MirrorError::Fetch {
                    path: format!("the block copy (blocks {from}..)"),
                    why,
                })
            }
        }
    }
}

/// Syncs every `interval` until the mirror halts; then keeps serving what it verified.
async fn follow(
    mirror: Arc<Mutex<Mirror>>,
    copy: Arc<BlockCopy>,
    endpoint: Endpoint,
    ledger: String,
    interval: Duration,
) {
    let signer = Arc::new(Signer::from_env("us-east-1"));
    let endpoint = Arc::new(endpoint);
    let log_prefix = format!("/ledgers/{ledger}/log/");
    // One keep-alive connection, reopened after an error.
    let connection: Arc<tokio::sync::Mutex<Option<Connection>>> = Arc::default();
    let get = |request_path: String| {
        let (endpoint, signer, connection) = (endpoint.clone(), signer.clone(), connection.clone());
        async move {
            let mut connection = connection.lock().await;
            if connection.as_ref().is_none_or(Connection::is_closed) {
                *connection = Some(endpoint.connect().await.map_err(|e| e.to_string())?);
            }
            let open = connection.as_mut().expect("connected above");
            let (status, body) = open
                .request(
                    Method::GET,
                    &request_path,
                    &[],
                    Vec::new(),
                    signer.as_ref().as_ref(),
                )
                .await
                .map_err(|e| {
                    *connection = None;
                    e.to_string()
                })?;
            if status != 200 {
                return Err(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ));
            }
            Ok(body.to_vec())
        }
    };
    let mut last_error = String::new();
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let synced = match sync(&mirror, |path| get(format!("{log_prefix}{path}")), now).await {
            Ok(_) => copy_blocks(&mirror, &copy, &ledger, &get).await,
            Err(error) => Err(error),
        };
        match synced {
            Ok(_) => last_error.clear(),
            Err(error) if error.halts() => {
                eprintln!("quill mirror: halted: {error}");
                tracing::error!(%error, "the mirror halted at its last verified checkpoint");
                return;
            }
            Err(error) => {
                let text = error.to_string();
                if text != last_error {
                    tracing::warn!(%error, "the mirror could not sync; retrying");
                    last_error = text;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}
