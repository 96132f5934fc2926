//! The transparency log commands and flags: `quill witness` (a C2SP tlog-witness server,
//! `quill_tlog::witness`, and its key), `quill log-key` (a ledger log's verifier key), and
//! the `--log-*` flags of `quill serve`, `quill log-proof` (proofs from the command line) and
//! `quill verify-proof` (offline, no network).
//!
//! `witness serve` prints `quill: listening on http://ADDR` on stdout once bound, as `quill serve`
//! does, so `--listen 127.0.0.1:0` works for scripts and tests.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use quill_ledger::{Ledger, LedgerError};
use quill_server::tlog::{
    proof_bundle, proof_json, read_stored_log, revision_in_block, LogConfig, ProofRequest,
};
use quill_tlog::keys::NoteSigner;
use quill_tlog::log::{LogStore, Publisher};
use quill_tlog::witness::{parse_logs, Witness};
use quill_verify::tlog::{verify_proof_bundle, Checkpoint, Note, Policy};

use crate::store::{connect, postgres_url, LedgerStore, LedgerTarget};

/// The transparency log flags of `quill serve` (and `quill log-key`).
#[derive(Args, Debug)]
pub struct LogArgs {
    /// The log's Ed25519 key file; default `<data-dir>/log-key`, created (0600) on first start.
    #[arg(long)]
    log_key: Option<PathBuf>,
    /// Serve `/ledgers/{name}/log/` (checkpoints, tiles, proofs) without authentication.
    #[arg(long)]
    public_log: bool,
    /// Shortest time between two checkpoints of a ledger, e.g. `1s` or `250ms`.
    #[arg(long, default_value = "1s")]
    checkpoint_interval: String,
    /// Log origins are `<prefix>/<ledger name>` (conventionally your host name first).
    #[arg(long, default_value = "localhost/quill")]
    log_origin_prefix: String,
    /// A C2SP tlog-policy file: each new checkpoint goes to its witnesses that have a URL.
    #[arg(long)]
    witness_policy: Option<PathBuf>,
}

impl LogArgs {
    /// Checks the flags into the server's log configuration.
    pub fn check(self) -> anyhow::Result<LogConfig> {
        let interval = crate::args::parse_duration(&self.checkpoint_interval)
            .with_context(|| format!("--checkpoint-interval {:?}", self.checkpoint_interval))?;
        if self.log_origin_prefix.is_empty() || self.log_origin_prefix.contains(char::is_whitespace)
        {
            bail!("--log-origin-prefix must be non-empty, without spaces");
        }
        let witness_policy = match &self.witness_policy {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Some(Policy::parse(&text).with_context(|| format!("policy {}", path.display()))?)
            }
            None => None,
        };
        Ok(LogConfig {
            witness_policy,
            key_file: self.log_key,
            public: self.public_log,
            interval,
            origin_prefix: self.log_origin_prefix,
        })
    }
}

/// `quill log-key`.
#[derive(Args, Debug)]
pub struct LogKeyArgs {
    /// The data directory (its `log-key` is created if missing).
    #[arg(long, default_value = "./quill-data")]
    data_dir: PathBuf,
    /// The PostgreSQL database of the ledgers, instead of a data directory: prints the
    /// verifier keys recorded there with each log's first checkpoint and checks `--log-key
    /// FILE`, if given, against them. Creates no key (PostgreSQL never holds one).
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    storage: Option<String>,
    /// Print only this ledger's key (default: every ledger of the data directory, or of the
    /// database with `--storage`).
    #[arg(long)]
    ledger: Option<String>,
    #[command(flatten)]
    log: LogArgs,
}

/// Prints `name+keyid+base64` verifier keys of the ledgers' logs, one a line.
pub fn log_key(args: LogKeyArgs) -> anyhow::Result<()> {
    let config = args.log.check()?;
    if let Some(url) = args.storage {
        let url = postgres_url(url, "--storage")?;
        return recorded_log_keys(&url, args.ledger, &config);
    }
    // An operator prints the key to publish it before the first `quill serve` made the
    // directory; the key is then created where the server will find it.
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let key = config.load_key(&args.data_dir)?;
    let ledgers = match args.ledger {
        Some(name) => vec![name],
        None => {
            let mut names: Vec<String> = std::fs::read_dir(args.data_dir.join("ledgers"))
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.path().join("ledger.ion").exists())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        }
    };
    for ledger in ledgers {
        println!("{}", config.verifier_key(&key, &ledger)?);
    }
    Ok(())
}

/// `quill log-key --storage`: the verifier keys `quill_tlogs` recorded (the servers' key,
/// which only they hold), checked against `--log-key FILE` when given: a server given that
/// file signs the log only if they match.
fn recorded_log_keys(url: &str, ledger: Option<String>, config: &LogConfig) -> anyhow::Result<()> {
    let store = connect(url)?;
    let key = match &config.key_file {
        Some(path) => Some(
            NoteSigner::read_file(path)
                .with_context(|| format!("cannot read the log key {}", path.display()))?,
        ),
        None => None,
    };
    let ledgers = match ledger {
        Some(name) => match store.ledger(&name) {
            Ok(stored) => vec![stored.name],
            Err(LedgerError::UnknownLedger(_)) => {
                bail!("no ledger {name} in PostgreSQL at {}", store.display_url())
            }
            Err(error) => return Err(error.into()),
        },
        None => {
            let mut names: Vec<String> = store.ledgers()?.into_iter().map(|l| l.name).collect();
            names.sort();
            names
        }
    };
    let mut mismatches = Vec::new();
    let mut unrecorded = Vec::new();
    for name in ledgers {
        let recorded = read_stored_log(&store, &name)?.verifier_key;
        let given = key
            .as_ref()
            .map(|key| config.verifier_key(key, &name))
            .transpose()?
            .map(|key| key.to_string());
        match (recorded, given) {
            (Some(recorded), Some(given)) if recorded != given => {
                println!("{recorded}");
                mismatches.push(format!(
                    "ledger {name}: its log is signed with {recorded}, the key file gives {given}"
                ));
            }
            (Some(recorded), _) => println!("{recorded}"),
            (None, Some(given)) => {
                println!("{given}");
                eprintln!(
                    "quill: ledger {name}: no checkpoint signed yet; the first server to sign                      records its key (this file's, if it is given this file)"
                );
            }
            (None, None) => unrecorded.push(name),
        }
    }
    if !mismatches.is_empty() {
        bail!(
            "{}: a server given this --log-key refuses to sign these logs (it would fork them);              give every server the key file the logs were started with",
            mismatches.join("; ")
        );
    }
    if !unrecorded.is_empty() {
        bail!(
            "no verifier key recorded yet for {}: the first checkpoint a server signs records              it (or give --log-key FILE to print that file's key)",
            unrecorded.join(", ")
        );
    }
    Ok(())
}

/// `quill witness …`.
#[derive(Subcommand, Debug)]
pub enum WitnessCommand {
    /// Serve `POST /add-checkpoint` (C2SP tlog-witness) for the logs in `--logs`.
    Serve(WitnessServeArgs),
    /// Generate a witness key file (mode 0600) and print its cosignature/v1 verifier key.
    Keygen(WitnessKeygenArgs),
}

/// `quill witness serve`.
#[derive(Args, Debug)]
pub struct WitnessServeArgs {
    /// The witness's private key file (`quill witness keygen`).
    #[arg(long)]
    key: PathBuf,
    /// The logs to follow: one `log <vkey>` line each (the key name is the log's origin).
    #[arg(long)]
    logs: PathBuf,
    /// Where the size and root last cosigned for each log are kept.
    #[arg(long, default_value = "./witness-state")]
    state_dir: PathBuf,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8010")]
    listen: SocketAddr,
}

/// `quill witness keygen`.
#[derive(Args, Debug)]
pub struct WitnessKeygenArgs {
    /// The witness's name (conventionally a schema-less URL, e.g. `witness.example.com/w1`).
    #[arg(long)]
    name: String,
    /// The key file to create (never overwritten).
    #[arg(long)]
    key: PathBuf,
}

/// Runs a `quill witness` subcommand.
pub fn run(command: WitnessCommand) -> anyhow::Result<()> {
    match command {
        WitnessCommand::Keygen(args) => {
            let signer = NoteSigner::generate(&args.name)?;
            signer.write_new_file(&args.key)?;
            println!("{}", signer.cosigner_key());
            Ok(())
        }
        WitnessCommand::Serve(args) => serve(args),
    }
}

fn serve(args: WitnessServeArgs) -> anyhow::Result<()> {
    let signer = NoteSigner::read_file(&args.key)?;
    let logs_text = std::fs::read_to_string(&args.logs)
        .with_context(|| format!("cannot read {}", args.logs.display()))?;
    let logs =
        parse_logs(&logs_text).map_err(|why| anyhow::anyhow!("{}: {why}", args.logs.display()))?;
    let witness = Witness::open(signer, logs, &args.state_dir)
        .with_context(|| format!("cannot open {}", args.state_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("quill-witness")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let vkey = witness.cosigner_key();
        let (address, server) = quill_tlog::witness::bind(
            Arc::new(witness),
            args.listen,
            crate::serve::shutdown_signal(),
        )
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(%address, %vkey, "quill witness is serving");
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "quill: listening on http://{address}")?;
        stdout.flush()?;
        drop(stdout);
        server.await?;
        Ok(())
    })
}

/// `quill verify-proof`.
#[derive(Args, Debug)]
pub struct VerifyProofArgs {
    /// The C2SP tlog-proof file of a block or a revision
    /// (`/ledgers/{name}/log/proof/bundle?index=N[&documentId=ID]`, `quill log-proof`).
    bundle: PathBuf,
    /// The C2SP tlog-policy file: trusted log keys, witnesses and the quorum.
    #[arg(long)]
    policy: PathBuf,
}

/// Checks a proof bundle offline against a policy; says which link failed.
pub fn verify_proof(args: VerifyProofArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let policy = Policy::parse(&read(&args.policy)?)
        .with_context(|| format!("policy {}", args.policy.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verified = verify_proof_bundle(&read(&args.bundle)?, &policy, now).map_err(|error| {
        crate::CorruptionFound(format!(
            "proof does not verify: link `{}` failed: {}",
            error.link, error.error
        ))
    })?;
    let checkpoint = &verified.checkpoint.checkpoint;
    let cosigners: Vec<&str> = verified
        .checkpoint
        .cosigned
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    if let Some(revision) = &verified.revision {
        println!("{revision}");
    }
    println!(
        "verified: {}block {} (blockHash {}) is in {} at size {}, cosigned by [{}]",
        if verified.revision.is_some() {
            "the revision above is in "
        } else {
            ""
        },
        verified.leaf.sequence_no,
        verified.leaf.block_hash,
        checkpoint.origin,
        checkpoint.size,
        cosigners.join(", ")
    );
    Ok(())
}

/// `quill log-proof`.
#[derive(Args, Debug)]
pub struct LogProofArgs {
    #[command(flatten)]
    target: crate::args::LedgerTargetArgs,
    /// Prove block INDEX: prints its C2SP tlog-proof (for `quill verify-proof`).
    #[arg(long, conflicts_with = "old", required_unless_present = "old")]
    index: Option<u64>,
    /// With `--index`: prove the revision of this document committed in block INDEX.
    #[arg(long, requires = "index")]
    document_id: Option<String>,
    /// Prove that the latest checkpoint extends the tree of OLD blocks: prints JSON.
    #[arg(long)]
    old: Option<u64>,
    #[command(flatten)]
    log: LogArgs,
}

/// A ledger's log, ready to prove from: its tree, and its latest checkpoint and newest
/// cosigned one as `(size, note)`.
struct ProvableLog {
    ledger: Ledger,
    store: LogStore,
    latest: (u64, String),
    cosigned: Option<(u64, String)>,
    /// Where the tree of a PostgreSQL ledger's log is built (removed when done).
    _tree: Option<tempfile::TempDir>,
}

/// Prints a proof against the ledger's latest checkpoint. Embedded: brings the log up to
/// date first (signing a checkpoint if it grew, as the server would). With `--storage`:
/// against the checkpoints the servers signed (`quill_tlogs`), signing nothing.
pub fn log_proof(args: LogProofArgs) -> anyhow::Result<()> {
    let target = args.target.check()?;
    let config = args.log.check()?;
    let log = match &target.store {
        LedgerStore::DataDir(data_dir) => signed_here(&target, data_dir, &config)?,
        LedgerStore::Postgres(url) => signed_by_servers(&target, url, &config)?,
    };
    let ProvableLog {
        ledger,
        store,
        latest,
        cosigned,
        ..
    } = &log;
    // A block the witnesses already cosigned is proven in their checkpoint, as served.
    let (size, note) = match cosigned {
        Some((size, note)) if args.index.is_some_and(|index| index < *size) => (*size, note),
        _ => (latest.0, &latest.1),
    };
    match (args.index, args.old) {
        (Some(index), _) => {
            if index >= size {
                bail!("block {index} is not in the log of {size} blocks");
            }
            let revision = match &args.document_id {
                Some(id) => Some(revision_in_block(ledger, index, id)?),
                None => None,
            };
            print!(
                "{}",
                proof_bundle(store, index, size, note, revision)?.to_text()
            );
        }
        (None, Some(old)) => {
            let json = proof_json(store, ProofRequest::Consistency { old }, size, note)?;
            println!("{json:#}");
        }
        (None, None) => bail!("--index or --old is required"),
    }
    Ok(())
}

/// An embedded ledger's log, in files beside it, signed here with the data directory's key.
fn signed_here(
    target: &LedgerTarget,
    data_dir: &Path,
    config: &LogConfig,
) -> anyhow::Result<ProvableLog> {
    let signer = config
        .load_key(data_dir)?
        .with_name(&config.origin(&target.ledger))?;
    let ledger = target.open()?;
    let dir = quill_ledger::ledger_dir(data_dir, &target.ledger).join("tlog");
    let mut store = LogStore::open(&dir)?;
    store.sync(&ledger)?;
    let mut publisher = Publisher::open(signer, &dir.join("checkpoint"))?;
    publisher.publish(&store)?;
    let latest = (
        publisher.size(),
        publisher.checkpoint().unwrap_or_default().to_owned(),
    );
    let cosigned = publisher
        .cosigned()
        .map(|(size, note)| (size, note.to_owned()));
    Ok(ProvableLog {
        ledger,
        store,
        latest,
        cosigned,
        _tree: None,
    })
}

/// A PostgreSQL ledger's log as its servers signed it: the checkpoints of `quill_tlogs`, and
/// a tree built here from the ledger's blocks.
fn signed_by_servers(
    target: &LedgerTarget,
    url: &str,
    config: &LogConfig,
) -> anyhow::Result<ProvableLog> {
    if config.key_file.is_some() {
        bail!(
            "--log-key is not used with --storage: the proof is against the checkpoints the \
             servers signed, and nothing is signed here"
        );
    }
    let ledger = target.open()?;
    // Read before the catch-up below, so the tree reaches every block the checkpoints cover.
    let stored = read_stored_log(&connect(url)?, &target.ledger)?;
    ledger.catch_up()?;
    let sized = |note: String| -> anyhow::Result<(u64, String)> {
        let parsed = Note::parse(&note).context("a checkpoint note in quill_tlogs")?;
        let checkpoint = Checkpoint::parse(&parsed.text).context("a checkpoint in quill_tlogs")?;
        Ok((checkpoint.size, note))
    };
    let Some(latest) = stored.checkpoint.map(sized).transpose()? else {
        bail!(
            "ledger {}'s transparency log has no checkpoint in PostgreSQL yet: a `quill serve \
             --storage` signs one within its --checkpoint-interval",
            target.ledger
        );
    };
    let cosigned = stored.cosigned.map(sized).transpose()?;
    let tree = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut store = LogStore::open(tree.path())?;
    store.sync(&ledger)?;
    Ok(ProvableLog {
        ledger,
        store,
        latest,
        cosigned,
        _tree: Some(tree),
    })
}
