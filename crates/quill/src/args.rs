//! Command-line arguments: clap's raw view of them, and `check` methods that turn each into the
//! typed configuration the commands take (so commands never see an unchecked flag).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use quill_ledger::BlockAddress;
use quill_server::{AuthMode, ServerConfig, ServerLimits, TlsConfig};

use crate::bench::BenchArgs;
use crate::http::Endpoint;
use crate::store::{postgres_url, LedgerStore, LedgerTarget};

/// Longest transaction timeout accepted: the server ends sessions after 15 minutes anyway.
const TRANSACTION_TIMEOUT_MAX: Duration = Duration::from_secs(15 * 60);

/// Quill: a self-hosted, verifiable ledger database compatible with Amazon QLDB drivers.
#[derive(Parser, Debug)]
#[command(name = "quill", version, about)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive); RUST_LOG wins.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the QLDB-compatible server (data plane and control plane on one port).
    Serve(ServeArgs),
    /// Interactive PartiQL shell (embedded on a data directory, or against a server).
    Shell(ShellArgs),
    /// Audit a whole ledger: checksums, block hashes, the hash chain and the digest tree.
    Verify(LedgerTargetArgs),
    /// Create, list, describe or delete ledgers in a data directory.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Print the ledger's current digest and its tip address.
    Digest(LedgerTargetArgs),
    /// Print a document revision with its proof, and verify the proof locally.
    Revision(RevisionArgs),
    /// Export a ledger's journal in QLDB's S3 export layout, to a directory or s3://bucket/prefix.
    Export(ExportArgs),
    /// Re-verify journal exports in a directory (a `quill export --to` directory, or a bucket
    /// copied locally): every block's hashes and the chain, for each completed manifest.
    VerifyExport(VerifyExportArgs),
    /// Create a ledger from a journal export (a directory or s3://bucket/prefix), re-verifying
    /// every block and keeping strand id, block addresses and hashes unchanged.
    Import(ImportArgs),
    /// Move embedded ledgers into PostgreSQL with their chains intact (same blocks, same
    /// digest at the same tip), checking the copies.
    Migrate(MigrateArgs),
    /// Prove that the ledger's digest extends an older digest (one QLDB issued before an
    /// import, say), and verify the proof locally.
    Consistency(ConsistencyArgs),
    /// Benchmarks.
    Bench(BenchArgs),
    /// A witness for transparency logs (C2SP tlog-witness).
    #[command(subcommand)]
    Witness(crate::tlog::WitnessCommand),
    /// Print the verifier keys of the ledgers' transparency logs.
    LogKey(crate::tlog::LogKeyArgs),
    /// Check a block's transparency log proof offline against a tlog-policy.
    VerifyProof(crate::tlog::VerifyProofArgs),
    /// Print a transparency log proof of a block, or between two log sizes.
    LogProof(crate::tlog::LogProofArgs),
    /// Print a served ledger's journal as it is committed (QLDB stream records, one Ion text
    /// line each), resuming after connection losses.
    Tail(TailArgs),
    /// Keep a verified, read-only copy of a served ledger's transparency log, and serve it.
    Mirror(crate::mirror::MirrorArgs),
    /// Stream a served ledger's journal to NATS JetStream (create, list, describe, cancel).
    #[command(subcommand)]
    Stream(StreamCommand),
}

impl Command {
    /// The server logs what it does; one-shot commands only warn.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve(_) | Command::Witness(_) => "info",
            _ => "warn",
        }
    }
}

/// How `quill serve` authenticates requests.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthArg {
    /// Accept every request, signed or not (local development, or a trusted network).
    None,
    /// Verify SigV4 signatures against `--credentials`.
    Credentials,
}

/// The authentication `--auth` and `--credentials` ask for on `listen`: by default SigV4 when
/// given credentials, else none on a loopback address only.
pub fn auth_mode(
    auth: Option<AuthArg>,
    credentials: Option<PathBuf>,
    listen: SocketAddr,
) -> anyhow::Result<AuthMode> {
    Ok(match (auth, credentials) {
        (Some(AuthArg::None), Some(_)) => {
            bail!("--credentials needs --auth credentials (or no --auth)")
        }
        (Some(AuthArg::None), None) => AuthMode::None,
        (None, None) if quill_server::is_loopback(listen) => AuthMode::None,
        (None, None) => bail!(
            "refusing to serve {listen} without authentication: only a loopback address (such \
             as 127.0.0.1 or [::1]) accepts unsigned requests by default. Pass \
             `--auth credentials --credentials FILE` to check SigV4 signatures, or \
             `--auth none` to accept unsigned requests from anyone who can reach the port"
        ),
        (Some(AuthArg::Credentials), None) => {
            bail!("--auth credentials needs --credentials FILE")
        }
        (_, Some(path)) => AuthMode::Credentials(path),
    })
}

/// HTTPS on a listener (`quill serve`, `quill mirror --listen`).
#[derive(Args, Debug, Default)]
pub struct TlsArgs {
    /// TLS certificate chain (PEM); requires --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); requires --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The listener's TLS settings; `None` for plain HTTP.
    pub fn check(self) -> anyhow::Result<Option<TlsConfig>> {
        Ok(match (self.tls_cert, self.tls_key) {
            (Some(cert_chain), Some(private_key)) => Some(TlsConfig {
                cert_chain,
                private_key,
            }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        })
    }
}

/// `quill serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Directory holding the ledgers (`<data-dir>/ledgers/<name>/`).
    #[arg(long, default_value = "./quill-data")]
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Authentication; defaults to `credentials` when --credentials is given, else to `none`
    /// on a loopback address. Any other address needs an explicit choice.
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// Credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line.
    #[arg(long)]
    pub credentials: Option<PathBuf>,
    /// Permissions policy (JSON, IAM-like statements per access key; needs --auth
    /// credentials). Keys it lists are restricted; STANDARD ledgers check each statement.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Region shown in ARNs (clients may sign with any region).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Account id shown in ARNs.
    #[arg(long, default_value = "000000000000")]
    pub account_id: String,
    /// Transaction timeout, e.g. `30s` (QLDB's), `500ms` or `2` (seconds).
    #[arg(long, default_value = "30s")]
    pub transaction_timeout: String,
    /// Result bytes one transaction may hold (unread pages included), e.g. `64MiB`, `512KiB`
    /// or a number of bytes; a statement going over fails with LimitExceededException.
    #[arg(long, default_value = "64MiB")]
    pub result_max_bytes: String,
    /// Keep the ledgers in PostgreSQL (a libpq URL, e.g.
    /// `postgresql://quill@db1,db2/quill?target_session_attrs=read-write`) instead of under
    /// --data-dir, which then holds only caches; several servers may share one database.
    #[arg(long)]
    pub storage: Option<String>,
    /// How long to keep retrying at start while PostgreSQL is unreachable (each failure is
    /// logged), e.g. `60s` (at most 900 s).
    #[arg(long, default_value = "60s", requires = "storage")]
    pub storage_wait: String,
    /// CPU priority of the journal streams' delivery: `background` (nice 19: on saturated
    /// cores commits win, and streams fall behind and catch up afterwards) or `normal`.
    #[arg(long, value_enum, default_value_t = StreamPriority::Background)]
    pub stream_priority: StreamPriority,
    #[command(flatten)]
    pub log: crate::tlog::LogArgs,
}

/// `quill_stream::DeliveryPriority`, as a flag.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum StreamPriority {
    Background,
    Normal,
}

impl From<StreamPriority> for quill_stream::DeliveryPriority {
    fn from(priority: StreamPriority) -> quill_stream::DeliveryPriority {
        match priority {
            StreamPriority::Background => quill_stream::DeliveryPriority::Background,
            StreamPriority::Normal => quill_stream::DeliveryPriority::Normal,
        }
    }
}

impl ServeArgs {
    /// Checks the flags into the server's configuration.
    pub fn check(self) -> anyhow::Result<ServerConfig> {
        let auth = auth_mode(self.auth, self.credentials, self.listen)?;
        let tls = self.tls.check()?;
        if self.region.is_empty() {
            bail!("--region must not be empty");
        }
        let transaction_timeout = parse_duration(&self.transaction_timeout)
            .with_context(|| format!("--transaction-timeout {:?}", self.transaction_timeout))?;
        let transaction_result_bytes_max = parse_size(&self.result_max_bytes)
            .with_context(|| format!("--result-max-bytes {:?}", self.result_max_bytes))?;
        let mut config = ServerConfig::new(self.data_dir, self.listen);
        config.auth = auth;
        config.tls = tls;
        config.policy = self.policy;
        config.region = self.region;
        config.account_id = self.account_id;
        config.log = self.log.check()?;
        config.storage = self.storage;
        config.storage_wait = parse_duration(&self.storage_wait)
            .with_context(|| format!("--storage-wait {:?}", self.storage_wait))?;
        config.stream_priority = self.stream_priority.into();
        config.limits = ServerLimits {
            transaction_timeout,
            transaction_result_bytes_max,
            ..ServerLimits::default()
        };
        Ok(config)
    }
}

/// Parses `30s`, `500ms` or a bare number of seconds; zero and over 15 minutes are refused.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (digits, unit_ms) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000)
    } else {
        (text, 1000)
    };
    let value: u64 = digits
        .trim()
        .parse()
        .context("expected a number with an optional `s` or `ms` unit")?;
    let duration = Duration::from_millis(
        value
            .checked_mul(unit_ms)
            .context("duration is too large")?,
    );
    if duration.is_zero() || duration > TRANSACTION_TIMEOUT_MAX {
        bail!(
            "must be between 1ms and {} s",
            TRANSACTION_TIMEOUT_MAX.as_secs()
        );
    }
    Ok(duration)
}

/// Parses a byte size: `4096`, `512KiB`, `64MiB` or `1GiB`; zero is refused.
pub fn parse_size(text: &str) -> anyhow::Result<usize> {
    let text = text.trim();
    let (digits, unit) = [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        .into_iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|digits| (digits, unit)))
        .unwrap_or((text, 1));
    let value: usize = digits
        .trim()
        .parse()
        .context("expected a number with an optional KiB, MiB or GiB unit")?;
    let bytes = value.checked_mul(unit).context("size is too large")?;
    if bytes == 0 {
        bail!("must be at least 1 byte");
    }
    Ok(bytes)
}

/// Where the ledgers are: a data directory, or a PostgreSQL database (`--storage`).
#[derive(Args, Debug, Clone)]
pub struct StorageArgs {
    /// Directory holding the ledgers.
    #[arg(long, default_value = "./quill-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL database holding the ledgers, instead of a data directory: a libpq URL,
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (several HOST:PORT with
    /// ?target_session_attrs=read-write follow a failover).
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    pub storage: Option<String>,
}

impl StorageArgs {
    /// Checks that `--storage` is a PostgreSQL URL.
    pub fn check(self) -> anyhow::Result<LedgerStore> {
        match self.storage {
            Some(url) => postgres_url(url, "--storage").map(LedgerStore::Postgres),
            None => Ok(LedgerStore::DataDir(self.data_dir)),
        }
    }
}

/// One ledger, in a data directory or in PostgreSQL.
#[derive(Args, Debug, Clone)]
pub struct LedgerTargetArgs {
    #[command(flatten)]
    pub store: StorageArgs,
    /// Ledger name.
    #[arg(long)]
    pub ledger: String,
}

impl LedgerTargetArgs {
    /// Checks the ledger name and the storage.
    pub fn check(self) -> anyhow::Result<LedgerTarget> {
        quill_ledger::validate_ledger_name(&self.ledger)?;
        Ok(LedgerTarget {
            store: self.store.check()?,
            ledger: self.ledger,
        })
    }
}

/// `quill ledger …`.
#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Create a ledger (with deletion protection on, as QLDB does, unless told otherwise).
    Create {
        /// Ledger name.
        name: String,
        #[command(flatten)]
        store: StorageArgs,
        /// Create it without deletion protection.
        #[arg(long)]
        no_deletion_protection: bool,
    },
    /// List the ledgers.
    List {
        #[command(flatten)]
        store: StorageArgs,
    },
    /// Show a ledger's attributes, digest tip and tables.
    Describe {
        /// Ledger name.
        name: String,
        #[command(flatten)]
        store: StorageArgs,
    },
    /// Delete a ledger; refused while deletion protection is on, unless --force.
    Delete {
        /// Ledger name.
        name: String,
        #[command(flatten)]
        store: StorageArgs,
        /// Turn deletion protection off first.
        #[arg(long)]
        force: bool,
    },
}

/// `quill tail`.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// The server, e.g. http://127.0.0.1:8000.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub endpoint: String,
    /// Ledger name.
    #[arg(long)]
    pub ledger: String,
    /// First block to print (sequence number); default: blocks committed from now on.
    #[arg(long)]
    pub from: Option<u64>,
    /// Region to sign requests for (when AWS credentials are set).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

/// The server and ledger a `quill stream` command talks to.
#[derive(Args, Debug)]
pub struct StreamServer {
    /// The server, e.g. http://127.0.0.1:8000.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub endpoint: String,
    /// Ledger name.
    #[arg(long)]
    pub ledger: String,
    /// Region to sign requests for (when AWS credentials are set).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

/// `quill stream`.
#[derive(Subcommand, Debug)]
pub enum StreamCommand {
    /// Start streaming the ledger's journal to a NATS JetStream subject; prints the stream id.
    Create {
        #[command(flatten)]
        server: StreamServer,
        /// nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT]/SUBJECT, or tls://… for a TLS server; a
        /// JetStream stream must capture SUBJECT.
        #[arg(long)]
        to: String,
        /// The stream's name (QLDB's rules: letters, digits, single inner hyphens).
        #[arg(long, default_value = "nats-stream")]
        name: String,
        /// Inclusive start, ISO 8601 (history from then on is streamed); default: now.
        #[arg(long)]
        start: Option<String>,
        /// Exclusive end, ISO 8601: the stream completes there; default: never.
        #[arg(long)]
        end: Option<String>,
    },
    /// List the ledger's NATS streams with their status and lag.
    List {
        #[command(flatten)]
        server: StreamServer,
    },
    /// Describe one NATS stream.
    Describe {
        #[command(flatten)]
        server: StreamServer,
        stream_id: String,
    },
    /// Cancel a NATS stream.
    Cancel {
        #[command(flatten)]
        server: StreamServer,
        stream_id: String,
    },
}

/// `quill export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: LedgerTargetArgs,
    /// A directory, or `s3://bucket/prefix` (endpoint and credentials as the AWS SDKs take
    /// them: AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ~/.aws/credentials, AWS_REGION, ...).
    #[arg(long)]
    pub to: String,
    /// ION_TEXT (default), ION_BINARY or JSON (JSON Lines).
    #[arg(long)]
    pub format: Option<String>,
    /// Inclusive start, ISO 8601 (e.g. 2019-06-13T21:36:34Z); default: the ledger's creation.
    #[arg(long)]
    pub start: Option<String>,
    /// Exclusive end, ISO 8601, not in the future; default: now.
    #[arg(long)]
    pub end: Option<String>,
}

/// `quill verify-export`.
#[derive(Args, Debug)]
pub struct VerifyExportArgs {
    /// The directory the export's keys are relative to.
    pub dir: PathBuf,
}

/// `quill import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The export: a directory (a `quill export --to` directory, or a bucket copied locally),
    /// or `s3://bucket/prefix` (endpoint and credentials as for `quill export`).
    #[arg(long)]
    pub from: String,
    #[command(flatten)]
    pub target: LedgerTargetArgs,
    /// Create the ledger without deletion protection (on by default, as `ledger create`).
    #[arg(long)]
    pub no_deletion_protection: bool,
}

/// `quill migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The data directory holding the embedded ledgers (no server may have them open).
    #[arg(long)]
    pub from: PathBuf,
    /// The PostgreSQL database to move them into: a libpq URL,
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// A ledger to move (repeat for several); default: every ledger in --from.
    #[arg(long = "ledger", value_name = "NAME")]
    pub ledgers: Vec<String>,
}

/// A checked `quill migrate`.
#[derive(Debug)]
pub struct MigrateRequest {
    /// The data directory.
    pub from: PathBuf,
    /// The PostgreSQL URL.
    pub to: String,
    /// Valid ledger names; empty for every ledger in `from`.
    pub ledgers: Vec<String>,
}

impl MigrateArgs {
    /// Checks the URL and the ledger names.
    pub fn check(self) -> anyhow::Result<MigrateRequest> {
        let to = postgres_url(self.to, "--to")?;
        for name in &self.ledgers {
            quill_ledger::validate_ledger_name(name)?;
        }
        Ok(MigrateRequest {
            from: self.from,
            to,
            ledgers: self.ledgers,
        })
    }
}

/// `quill consistency`.
#[derive(Args, Debug)]
pub struct ConsistencyArgs {
    /// Embedded mode (the default): the ledger's data directory or PostgreSQL database.
    #[command(flatten)]
    pub store: StorageArgs,
    /// Server mode: ask a running server (GetConsistencyProof), e.g. http://127.0.0.1:8000.
    #[arg(long, conflicts_with_all = ["data_dir", "storage"])]
    pub endpoint: Option<String>,
    /// Extra trusted CA certificate (PEM) for an https endpoint.
    #[arg(long, requires = "endpoint")]
    pub ca_cert: Option<PathBuf>,
    /// Region to sign requests for (server mode, when AWS credentials are set).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Ledger name.
    #[arg(long)]
    pub ledger: String,
    /// The older digest, base64 (GetDigest's `Digest`).
    #[arg(long)]
    pub from_digest: String,
    /// Its tip: `{strandId:"…",sequenceNo:N}` (GetDigest's `DigestTipAddress`) or just N.
    #[arg(long)]
    pub from_tip: String,
    /// The newer tip (same forms); default: the current digest.
    #[arg(long)]
    pub to_tip: Option<String>,
}

/// A checked `quill export`.
#[derive(Debug)]
pub struct ExportRequest {
    /// The ledger.
    pub target: LedgerTarget,
    /// `--to`.
    pub to: String,
    /// `--format`, unparsed.
    pub format: Option<String>,
    /// `--start`, unparsed.
    pub start: Option<String>,
    /// `--end`, unparsed.
    pub end: Option<String>,
}

impl ExportArgs {
    /// Checks the ledger name and that `--to` is not empty.
    pub fn check(self) -> anyhow::Result<ExportRequest> {
        if self.to.is_empty() {
            bail!("--to must name a directory or s3://bucket/prefix");
        }
        Ok(ExportRequest {
            target: self.target.check()?,
            to: self.to,
            format: self.format,
            start: self.start,
            end: self.end,
        })
    }
}

/// `quill shell`.
#[derive(Args, Debug)]
pub struct ShellArgs {
    /// Embedded mode (the default): the ledger's data directory (must not be served at the
    /// same time) or PostgreSQL database, opened in this process.
    #[command(flatten)]
    pub store: StorageArgs,
    /// Endpoint mode: a running server, e.g. http://127.0.0.1:8000 or https://quill.example:8443.
    #[arg(long, conflicts_with_all = ["data_dir", "storage"])]
    pub endpoint: Option<String>,
    /// Extra trusted CA certificate (PEM) for an https endpoint, e.g. a self-signed server's.
    #[arg(long, requires = "endpoint")]
    pub ca_cert: Option<PathBuf>,
    /// Ledger name.
    #[arg(long)]
    pub ledger: String,
    /// Region to sign requests for (endpoint mode, when AWS credentials are set).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Run these statements (separated by `;`) and exit, instead of reading input.
    #[arg(short = 'e', long = "execute")]
    pub execute: Option<String>,
}

/// Where the shell's statements run.
#[derive(Debug, Clone)]
pub enum ShellTarget {
    /// In this process, on the ledger's files.
    Embedded(LedgerTarget),
    /// On a server, through the QLDB session protocol.
    Endpoint {
        /// Where the server is, and how to reach it.
        endpoint: Endpoint,
        /// A valid ledger name.
        ledger: String,
        /// SigV4 region.
        region: String,
    },
}

/// A checked shell configuration.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// Where statements run.
    pub target: ShellTarget,
    /// `-e` statements, if given.
    pub execute: Option<String>,
}

impl ShellArgs {
    /// Checks the mode and the ledger name.
    pub fn check(self) -> anyhow::Result<ShellConfig> {
        quill_ledger::validate_ledger_name(&self.ledger)?;
        let target = match self.endpoint {
            Some(url) => ShellTarget::Endpoint {
                endpoint: Endpoint::parse(&url, self.ca_cert.as_deref())?,
                ledger: self.ledger,
                region: self.region,
            },
            None => ShellTarget::Embedded(LedgerTarget {
                store: self.store.check()?,
                ledger: self.ledger,
            }),
        };
        Ok(ShellConfig {
            target,
            execute: self.execute,
        })
    }
}

/// `quill revision`.
#[derive(Args, Debug)]
pub struct RevisionArgs {
    #[command(flatten)]
    pub target: LedgerTargetArgs,
    /// Block address as Ion text: `{strandId:"…",sequenceNo:N}`.
    #[arg(long)]
    pub block: String,
    /// Document id.
    #[arg(long)]
    pub document_id: String,
}

/// A checked `quill revision` request.
#[derive(Debug, Clone)]
pub struct RevisionRequest {
    /// The ledger.
    pub target: LedgerTarget,
    /// The block holding the revision.
    pub block: BlockAddress,
    /// The document.
    pub document_id: String,
}

impl RevisionArgs {
    /// Parses the block address and checks the document id.
    pub fn check(self) -> anyhow::Result<RevisionRequest> {
        let block = parse_block_address(&self.block)?;
        if !quill_ledger::is_valid_id(&self.document_id) {
            bail!(
                "--document-id {:?} is not a 22-character document id",
                self.document_id
            );
        }
        Ok(RevisionRequest {
            target: self.target.check()?,
            block,
            document_id: self.document_id,
        })
    }
}

/// Parses QLDB's block address Ion text, `{strandId:"…",sequenceNo:N}`.
pub fn parse_block_address(text: &str) -> anyhow::Result<BlockAddress> {
    let element = ion_rs::Element::read_one(text).context("--block is not one Ion value")?;
    let fields = element
        .as_struct()
        .context("--block must be an Ion struct")?;
    let strand_id = fields
        .get("strandId")
        .and_then(|v| v.as_text())
        .context("--block needs a strandId string")?;
    let sequence_no = fields
        .get("sequenceNo")
        .and_then(|v| v.as_i64())
        .context("--block needs an int sequenceNo")?;
    let sequence_no =
        u64::try_from(sequence_no).context("--block sequenceNo must not be negative")?;
    Ok(BlockAddress {
        strand_id: strand_id.to_owned(),
        sequence_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bounds() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["0", "", "x", "-1s", "901s", "18446744073709551615s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn block_addresses_parse_from_ion_text() {
        let address =
            parse_block_address(r#"{strandId:"KmA3ZZca7vAIiJAK9S5Iwl",sequenceNo:14}"#).unwrap();
        assert_eq!(address.strand_id, "KmA3ZZca7vAIiJAK9S5Iwl");
        assert_eq!(address.sequence_no, 14);
        for bad in [
            "",
            "14",
            "{strandId:1,sequenceNo:1}",
            r#"{strandId:"a",sequenceNo:-1}"#,
            "{sequenceNo:1}",
        ] {
            assert!(parse_block_address(bad).is_err(), "{bad}");
        }
    }

    fn serve_args(extra: &[&str]) -> anyhow::Result<ServerConfig> {
        let mut argv = vec!["quill", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(raw) => raw.check(),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn serve_defaults_to_local_without_auth() {
        let config = serve_args(&[]).unwrap();
        assert_eq!(config.auth, AuthMode::None);
        assert_eq!(config.listen, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(config.limits.transaction_timeout, Duration::from_secs(30));
        assert_eq!(config.limits.transaction_result_bytes_max, 64 << 20);
        let config = serve_args(&["--result-max-bytes", "1MiB"]).unwrap();
        assert_eq!(config.limits.transaction_result_bytes_max, 1 << 20);
        assert!(serve_args(&["--result-max-bytes", "0"]).is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["0", "", "MiB", "1MB", "-1", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsigned_requests_are_accepted_by_default_only_on_loopback() {
        for loopback in [
            "127.0.0.1:0",
            "127.1.2.3:8000",
            "[::1]:0",
            "[::ffff:127.0.0.1]:0",
        ] {
            let config = serve_args(&["--listen", loopback]).unwrap();
            assert_eq!(config.auth, AuthMode::None, "{loopback}");
        }
        for exposed in [
            "0.0.0.0:8000",
            "[::]:0",
            "192.168.1.10:8000",
            "[2001:db8::1]:0",
        ] {
            let error = serve_args(&["--listen", exposed]).unwrap_err().to_string();
            assert!(
                error.contains("--auth credentials --credentials FILE"),
                "{error}"
            );
            assert!(error.contains("--auth none"), "{error}");
            let config = serve_args(&["--listen", exposed, "--auth", "none"]).unwrap();
            assert_eq!(config.auth, AuthMode::None, "{exposed}");
            let config = serve_args(&["--listen", exposed, "--credentials", "c.txt"]).unwrap();
            assert_eq!(config.auth, AuthMode::Credentials("c.txt".into()));
        }
    }

    #[test]
    fn serve_auth_flags_must_agree() {
        let config = serve_args(&["--credentials", "c.txt"]).unwrap();
        assert_eq!(config.auth, AuthMode::Credentials("c.txt".into()));
        assert!(serve_args(&["--auth", "credentials"]).is_err());
        assert!(serve_args(&["--auth", "none", "--credentials", "c.txt"]).is_err());
        assert!(serve_args(&["--tls-cert", "c.pem"]).is_err());
    }
}
