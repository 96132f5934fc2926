//! `quill mirror`: keeps a verified, read-only copy of a served ledger's transparency log
//! (`quill_tlog::mirror`), fetched over HTTP(S) from `--from` (signed with SigV4 when
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` are set, for a server without `--public-log`),
//! and serves it with `--listen`; with `--witness-key`, it is also a C2SP tlog-witness of that
//! log that cosigns only what agrees with its verified copy. Prints `quill: listening on
//! http://ADDR` once bound, and `quill mirror: halted: …` (exit status 3 without `--listen`)
//! when the upstream turns out inconsistent.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use hyper::Method;
use quill_tlog::keys::NoteSigner;
use quill_tlog::mirror::{sync, Mirror};
use quill_tlog::witness::{Vet, Witness};
use quill_verify::tlog::{Checkpoint, Policy};

use crate::http::{Connection, Endpoint, Signer};

/// `quill mirror`.
#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// The upstream server, `http[s]://HOST[:PORT]`.
    #[arg(long)]
    from: String,
    /// The ledger whose log to mirror.
    #[arg(long)]
    ledger: String,
    /// Where the copy is kept (`<data-dir>/<ledger>/`).
    #[arg(long, default_value = "./quill-mirror")]
    data_dir: PathBuf,
    /// The C2SP tlog-policy the upstream's checkpoints must satisfy (its log key, witnesses
    /// and quorum).
    #[arg(long)]
    policy: PathBuf,
    /// Time between two syncs, e.g. `1s` or `200ms`.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Serve the copy (checkpoint, tiles, proof bundles, `/mirror/status`) on this address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Also act as one of the log's witnesses with this key (`quill witness keygen`):
    /// serve C2SP tlog-witness `POST /add-checkpoint` on `--listen` for the policy's log,
    /// cosigning only checkpoints consistent with what this witness cosigned before and with
    /// the mirror's own verified copy (a checkpoint contradicting the copy halts the mirror).
    /// The witness state is kept in `<data-dir>/<ledger>/witness/`.
    #[arg(long, requires = "listen")]
    witness_key: Option<PathBuf>,
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
    let log_keys = policy.logs.iter().map(|log| log.key.clone()).collect();
    let mirror = Arc::new(Mutex::new(
        Mirror::open(&dir, policy).with_context(|| format!("mirror {}", dir.display()))?,
    ));
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
        let server = match args.listen {
            Some(listen) => {
                let (address, server) = quill_tlog::mirror::bind(
                    mirror.clone(),
                    &args.ledger,
                    witness,
                    listen,
                    crate::serve::shutdown_signal(),
                )
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "quill: listening on http://{address}")?;
                stdout.flush()?;
                Some(tokio::spawn(server))
            }
            None => None,
        };
        let follower = follow(mirror, endpoint, args.ledger, interval);
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

/// Syncs every `interval` until the mirror halts; then keeps serving what it verified.
async fn follow(
    mirror: Arc<Mutex<Mirror>>,
    endpoint: Endpoint,
    ledger: String,
    interval: Duration,
) {
    let signer = Arc::new(Signer::from_env("us-east-1"));
    let endpoint = Arc::new(endpoint);
    let prefix = format!("/ledgers/{ledger}/log/");
    // One keep-alive connection, reopened after an error.
    let connection: Arc<tokio::sync::Mutex<Option<Connection>>> = Arc::default();
    let mut last_error = String::new();
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let fetch = |path: String| {
            let request_path = format!("{prefix}{path}");
            let (endpoint, signer, connection) =
                (endpoint.clone(), signer.clone(), connection.clone());
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
        match sync(&mirror, fetch, now).await {
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
