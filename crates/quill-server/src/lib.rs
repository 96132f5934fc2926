//! The QLDB wire protocol and control plane over HTTP, so unchanged QLDB drivers (pyqldb, the
//! Node.js driver, boto3's `qldb` client, the `qldb` shell) work against Quill by changing only
//! their endpoint URL.
//!
//! One listener serves both APIs:
//! - **Data plane** ([`data_plane`], [`session`]): `POST /` with
//!   `X-Amz-Target: QLDBSession.SendCommand` (AWS JSON 1.0): sessions, transactions, statements
//!   (run by `quill-partiql`), paged results, CommitDigest checks.
//! - **Control plane** ([`control`], [`registry`]): `/ledgers…` and `/tags/…` (REST-JSON):
//!   create/describe/list/update/delete ledgers, digests, blocks, revisions with proofs, tags.
//! - **Transparency logs** ([`tlog`]): `/ledgers/{name}/log/…`, C2SP checkpoints and tiles.
//! - **Operations**: `GET /health` (JSON with the ledger count) and `GET /metrics` (Prometheus).
//!
//! Ledgers live in `<data_dir>/ledgers/<name>/`, each with a `control.json` sidecar.
//!
//! **Authentication.** [`AuthMode::Credentials`] checks AWS SigV4 signatures (service `qldb`,
//! any region, 15 minutes of clock skew) against a credentials file with one
//! `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line (whitespace-separated; blank lines and lines
//! starting with `#` ignored):
//!
//! ```text
//! # quill credentials
//! AKIAQUILLEXAMPLE wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
//! ```
//!
//! [`AuthMode::None`] accepts every request and logs a warning at start (a louder one off
//! loopback: `quill serve` picks it by default only for a [`is_loopback`] address).
//!
//! **Request bodies** are authenticated before they are read wherever the signature allows it,
//! and are bounded in size, time and (while unauthenticated) total bytes; results are bounded in
//! bytes per transaction. The limits and their reasons are in [`limits`].
//!
//! **Permissions.** With a policy file ([`ServerConfig::policy`]), the access keys it lists
//! are restricted to what it allows, STANDARD-mode ledgers check every statement, and the
//! other keys stay administrators ([`permissions`]). A policy needs verified identities, so
//! it cannot be combined with [`AuthMode::None`].
//!
//! ```no_run
//! # async fn example() -> Result<(), quill_server::ServerError> {
//! let config = quill_server::ServerConfig::new("/var/lib/quill".into(), "127.0.0.1:8080".parse().unwrap());
//! quill_server::serve(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod connection_threads;
pub mod control;
pub mod data_plane;
pub mod error;
mod export_store;
pub mod exports;
pub mod ion_codec;
pub mod journal_blocks;
pub mod journal_events;
pub mod kinesis;
pub mod limits;
pub mod metrics;
pub mod nats;
pub mod permissions;
mod pg_lease;
pub mod registry;
mod server;
pub mod session;
pub mod sigv4;
mod stream_store;
pub mod streams;
pub mod tlog;
mod tlog_store;
pub mod tls_client;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use error::{ApiError, ErrorKind, ServerError};
pub use limits::ServerLimits;
pub use server::{bind, is_loopback};

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Accept every request (development only; warned about at start).
    None,
    /// Verify SigV4 signatures against this credentials file (format in the crate docs).
    Credentials(PathBuf),
}

/// TLS certificate chain and private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
}

/// Everything `quill serve` configures.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Holds `ledgers/<name>/`.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; see [`bind`]).
    pub listen: SocketAddr,
    /// Authentication.
    pub auth: AuthMode,
    /// TLS, when set.
    pub tls: Option<TlsConfig>,
    /// Region shown in ARNs.
    pub region: String,
    /// Account id shown in ARNs.
    pub account_id: String,
    /// Timeouts and quotas (defaults are QLDB's).
    pub limits: ServerLimits,
    /// The permissions policy file (needs [`AuthMode::Credentials`]); without one every
    /// caller is an administrator. Format in [`permissions`].
    pub policy: Option<PathBuf>,
    /// The ledgers' transparency logs.
    pub log: tlog::LogConfig,
    /// A PostgreSQL URL: ledgers live there (shared with other servers) instead of under
    /// `data_dir`, which then keeps only caches and per-server files.
    pub storage: Option<String>,
    /// How long to keep retrying at start while PostgreSQL is unreachable (a database that
    /// starts after Quill, or a failover in progress) before giving up.
    pub storage_wait: std::time::Duration,
    /// Serve a mirror's verified copy instead of the ledgers under `data_dir`.
    pub replica: Option<Replica>,
    /// CPU priority of the journal streams' delivery threads: `Background` by default, so
    /// that on saturated cores commits win and the streams fall behind and catch up.
    pub stream_priority: quill_stream::DeliveryPriority,
}

/// A mirror's copy served read-only (`quill mirror --listen`): its ledgers are the
/// registry's (the mirror appends to them), every caller may only read
/// ([`permissions::Caller::read_only`]), no checkpoint is signed (the mirror serves the
/// checkpoints it verified), and `routes` (the mirror's log, status and witness) are answered
/// before the QLDB APIs, without authentication.
#[derive(Clone)]
pub struct Replica {
    /// The mirror's ledgers.
    pub registry: std::sync::Arc<registry::Registry>,
    /// The mirror's own routes.
    pub routes: axum::Router,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("ledgers", &self.registry.len())
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// A configuration with QLDB's defaults: no authentication, no TLS, region `us-east-1`,
    /// account `000000000000`.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            data_dir,
            listen,
            auth: AuthMode::None,
            tls: None,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            limits: ServerLimits::default(),
            policy: None,
            log: tlog::LogConfig::default(),
            storage: None,
            storage_wait: std::time::Duration::from_secs(60),
            replica: None,
            stream_priority: quill_stream::DeliveryPriority::Background,
        }
    }
}

/// Serves until `shutdown` completes, then stops accepting, finishes in-flight requests and
/// aborts open transactions.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (_address, server) = bind(config, shutdown).await?;
    server.await
}
