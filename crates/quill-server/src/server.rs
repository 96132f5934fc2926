//! The HTTP layer: one listener for both planes, optional TLS, request ids, body limits,
//! authentication, health and metrics, and graceful shutdown.
//!
//! Authentication happens before a request's body is read wherever the protocol allows it;
//! see [`read_body`] for the order of checks and the limits on bodies not yet authenticated.
//!
//! Routing: `GET /health` and `GET /metrics` are unauthenticated; `POST /` with
//! `X-Amz-Target: QLDBSession.SendCommand` is the data plane; `/ledgers…`, `/tags/…` and
//! `/journal-s3-exports` are the control plane. Every reply carries `x-amzn-RequestId`.
//! Shutdown stops accepting, lets in-flight requests finish (up to
//! [`SHUTDOWN_GRACE`]), then ends every session, aborting open transactions.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use quill_ledger::LedgerOptions;
use rand::RngCore as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::connection_threads::ConnectionThreads;
use crate::control::{self, ControlRequest};
use crate::data_plane;
use crate::error::{ApiError, ErrorKind, Plane, ServerError};
use crate::journal_events;
use crate::limits::{
    CONNECTIONS_MAX, REQUEST_BODY_MAX_BYTES, SESSION_SWEEP_INTERVAL, SHUTDOWN_GRACE,
};
use crate::metrics::{Gauges, Metrics};
use crate::permissions::{Caller, Permissions};
use crate::registry::Registry;
use crate::session::{Inline, Sessions};
use crate::sigv4::{self, Credentials, HeaderCheck, SignableRequest};
use crate::streams::{self, Streams};
use crate::{AuthMode, ServerConfig, TlsConfig};

/// How long a client may take to send its request headers (bounds idle half-open connections).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

struct AppState {
    registry: Arc<Registry>,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    credentials: Option<Credentials>,
    /// `None` when no policy is configured: every caller is an administrator.
    permissions: Option<Permissions>,
    region: String,
    account_id: String,
    body_read_timeout: Duration,
    /// Bytes of bodies being read before their signature could be checked; see [`read_body`].
    unverified_body_budget: Arc<Semaphore>,
    /// The budget's size, to report how much of it is in use.
    unverified_body_budget_bytes: usize,
    logs: Arc<crate::tlog::Logs>,
    /// Journal streams to Kinesis.
    streams: Arc<Streams>,
    /// Journal exports to S3.
    exports: Arc<crate::exports::Exports>,
    /// Set when the server stops, so long-lived responses (journal event tails) end.
    stopping: watch::Sender<bool>,
    /// Serving a mirror's copy: every caller may only read.
    read_only: bool,
}

/// Binds the listener and opens every ledger; returns the bound address and the future that
/// serves until `shutdown` completes.
pub async fn bind(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<
    (
        SocketAddr,
        impl Future<Output = Result<(), ServerError>> + Send,
    ),
    ServerError,
> {
    let credentials = match &config.auth {
        AuthMode::None if is_loopback(config.listen) => {
            tracing::warn!(
                listen = %config.listen,
                "AUTHENTICATION IS OFF: every request is accepted without a signature. \
                 Use --auth credentials --credentials FILE (SigV4) for anything but local development."
            );
            None
        }
        AuthMode::None => {
            tracing::warn!(
                listen = %config.listen,
                "AUTHENTICATION IS OFF ON A NON-LOOPBACK ADDRESS: anyone who can reach this port \
                 can read, write and delete every ledger without a signature. \
                 Use --auth credentials --credentials FILE (SigV4) unless the network is trusted."
            );
            None
        }
        AuthMode::Credentials(path) => Some(Credentials::load(path)?),
    };
    let permissions = match (&config.policy, &credentials) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ServerError::Config(
                "a permissions policy needs authentication (--auth credentials): without \
                 verified access keys every caller is an administrator"
                    .into(),
            ))
        }
        (Some(path), Some(_)) => Some(Permissions::load(path, &config.region, &config.account_id)?),
    };
    let tls = config.tls.as_ref().map(load_tls).transpose()?;
    if tls.is_none() && !is_loopback(config.listen) {
        tracing::warn!(
            listen = %config.listen,
            "TLS is off on a non-loopback address: statements and results travel unencrypted. \
             Use --tls-cert and --tls-key unless the network is trusted."
        );
    }
    let options = LedgerOptions {
        limits: quill_ledger::Limits {
            transaction_timeout: config.limits.transaction_timeout,
            ..Default::default()
        },
        ..Default::default()
    };
    let data_dir = config.data_dir.clone();
    let storage = config.storage.clone();
    let storage_wait = config.storage_wait;
    let registry = match &config.replica {
        Some(replica) => replica.registry.clone(),
        None => Arc::new(
            tokio::task::spawn_blocking(move || match storage {
                None => Registry::open(&data_dir, options),
                Some(url) => {
                    let store = connect_to_postgres(&url, storage_wait)?;
                    tracing::info!(url = store.display_url(), "ledgers are kept in PostgreSQL");
                    Registry::open_postgres(&data_dir, store, options)
                }
            })
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))??,
        ),
    };
    let logs = Arc::new(crate::tlog::Logs::open(
        &config.data_dir,
        config.log.clone(),
        registry.postgres().cloned(),
        config.replica.is_none(),
    )?);
    let data_dir = config.data_dir.clone();
    let runtime = tokio::runtime::Handle::current();
    let postgres = registry.postgres().cloned();
    let priority = config.stream_priority;
    let (streams, registry) = tokio::task::spawn_blocking(move || {
        let streams = match postgres {
            None => Streams::open(&data_dir, runtime, priority)?,
            Some(store) => Streams::open_postgres(store, runtime, priority)?,
        };
        streams.take_over(&registry);
        Ok::<_, std::io::Error>((streams, registry))
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))?
    .map_err(|e| ServerError::Internal(format!("journal streams: {e}")))?;
    let (exports, registry) = tokio::task::spawn_blocking(move || {
        let exports = crate::exports::Exports::open(&registry);
        exports.take_over(&registry);
        (exports, registry)
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))?;
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        streams: Arc::new(streams),
        exports: Arc::new(exports),
        registry,
        sessions: Arc::new(Sessions::new(config.limits.clone(), metrics.clone())),
        metrics,
        credentials,
        permissions,
        region: config.region.clone(),
        account_id: config.account_id.clone(),
        body_read_timeout: config.limits.body_read_timeout,
        unverified_body_budget: Arc::new(Semaphore::new(
            config.limits.unverified_body_budget_bytes,
        )),
        unverified_body_budget_bytes: config.limits.unverified_body_budget_bytes,
        logs,
        stopping: watch::channel(false).0,
        read_only: config.replica.is_some(),
    });
    if state.registry.postgres().is_some() {
        tokio::spawn(watch_database(Arc::clone(&state.registry)));
    }
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                address: config.listen,
                source,
            })?;
    let address = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            address: config.listen,
            source,
        })?;
    tracing::info!(%address, tls = tls.is_some(), "listening");
    let routes = config.replica.map(|replica| replica.routes);
    Ok((address, run(listener, tls, state, routes, shutdown)))
}

/// Connects to the ledgers' database, retrying with backoff for up to `wait` while it is
/// unreachable (each failure logged with its cause): a database that comes up after Quill, as
/// after a reboot of both, needs no restart of Quill. Other errors (a bad URL, a newer schema)
/// fail at once.
fn connect_to_postgres(
    url: &str,
    wait: Duration,
) -> Result<quill_ledger::PostgresStore, ServerError> {
    quill_ledger::retry_while_unavailable(
        "PostgreSQL storage is unavailable",
        wait,
        Duration::from_millis(250),
        Duration::from_secs(5),
        || quill_ledger::PostgresStore::connect(url),
    )
    .map_err(|e| ServerError::Config(format!("PostgreSQL storage: {e}")))
}

/// True for addresses only this machine can reach: `127.0.0.0/8`, `::1`, and `::ffff:127.x`.
/// `0.0.0.0` and `::` listen on every interface, so they are not loopback.
pub fn is_loopback(address: SocketAddr) -> bool {
    address.ip().to_canonical().is_loopback()
}

fn load_tls(config: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    use tokio_rustls::rustls;
    let open = |path: &std::path::Path| {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))
    };
    let certs = rustls_pemfile::certs(&mut open(&config.cert_chain)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(ServerError::Tls("no certificate in the chain file".into()));
    }
    let key = rustls_pemfile::private_key(&mut open(&config.private_key)?)
        .map_err(|e| ServerError::Tls(format!("private key: {e}")))?
        .ok_or_else(|| ServerError::Tls("no private key in the key file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server_config)))
}

async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    replica_routes: Option<Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // First: failing here leaves nothing started behind.
    let connection_threads = ConnectionThreads::start()
        .map_err(|e| ServerError::Internal(format!("cannot start the connection threads: {e}")))?;
    let apis = Router::new().fallback(handle).with_state(state.clone());
    let (stop_sender, stop) = watch::channel(false);
    let router = match replica_routes {
        Some(routes) => routes.fallback_service(apis),
        None => {
            crate::tlog::spawn_checkpointer(
                state.logs.clone(),
                state.registry.clone(),
                stop.clone(),
            );
            apis
        }
    };
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let sweeper = tokio::spawn(sweep_sessions(state.sessions.clone(), stop.clone()));
    let stream_takeover = tokio::spawn(Streams::keep_taking_over(
        Arc::clone(&state.streams),
        Arc::clone(&state.registry),
    ));
    // With the embedded backend this server is the only one: it resumed its exports at start.
    let export_takeover = state.registry.postgres().is_some().then(|| {
        tokio::spawn(crate::exports::Exports::keep_taking_over(
            Arc::clone(&state.exports),
            Arc::clone(&state.registry),
        ))
    });
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Per-connection failures (e.g. out of file descriptors) must not stop
                    // the server; back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Handed to a connection thread, whose runtime registers it anew.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%peer, %error, "cannot hand a connection over");
                continue;
            }
        };
        let (router, tls, stop) = (router.clone(), tls.clone(), stop.clone());
        connection_threads.spawn(move || async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => serve_connection(stream, peer, tls, router, stop).await,
                Err(error) => tracing::warn!(%peer, %error, "cannot serve a connection"),
            }
            drop(permit);
        });
    }
    tracing::info!("shutting down: no new connections");
    drop(listener);
    let _ = stop_sender.send(true);
    state.stopping.send_replace(true);
    let drained = tokio::time::timeout(
        SHUTDOWN_GRACE,
        connections.acquire_many(CONNECTIONS_MAX as u32),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    // Whatever requests spawned and left running (a journal tail's feed) ends here.
    drop(connection_threads);
    sweeper.abort();
    stream_takeover.abort();
    if let Some(takeover) = export_takeover {
        takeover.abort();
    }
    let sessions = state.sessions.clone();
    let open = sessions.len();
    tokio::task::spawn_blocking(move || sessions.end_all(None))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    tracing::info!(sessions_ended = open, "stopped");
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    stop: watch::Receiver<bool>,
) {
    // A reply is one write, but a TLS record split or a large page must not wait for an ACK.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let service = TowerToHyperService::new(router);
    match tls {
        None => drive(TokioIo::new(stream), service, stop).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => drive(TokioIo::new(stream), service, stop).await,
            Err(error) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        },
    }
}

async fn drive<I>(
    io: TokioIo<I>,
    service: TowerToHyperService<Router>,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection ended with an error during shutdown");
    }
}

async fn sweep_sessions(sessions: Arc<Sessions>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(SESSION_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
        let sessions = sessions.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || sessions.sweep()).await {
            tracing::error!(%error, "session sweep failed");
        }
    }
}

fn request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex = sigv4::lower_hex(&bytes);
    let mut id = String::with_capacity(36);
    for (start, end) in [(0, 8), (8, 12), (12, 16), (16, 20), (20, 32)] {
        if start > 0 {
            id.push('-');
        }
        id.push_str(&hex[start..end]);
    }
    id
}

fn reply(status: u16, content_type: &str, body: Vec<u8>, request_id: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

fn error_reply(error: &ApiError, plane: Plane, request_id: &str) -> Response<Body> {
    let name = error.kind.name();
    let (body, content_type) = match plane {
        Plane::Data => (
            json!({"__type": name, "Message": error.message}),
            "application/x-amz-json-1.0",
        ),
        Plane::Control => (json!({"Message": error.message}), "application/json"),
    };
    if error.kind == ErrorKind::InternalFailure {
        tracing::error!(request_id, message = %error.message, "internal failure");
    } else {
        tracing::debug!(request_id, error = name, message = %error.message, "request failed");
    }
    let mut response = reply(
        error.kind.status(),
        content_type,
        body.to_string().into_bytes(),
        request_id,
    );
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(name));
    response
}

async fn handle(State(state): State<Arc<AppState>>, request: Request<Body>) -> Response<Body> {
    let request_id = request_id();
    state.metrics.request();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let plane = if control::is_control_path(path) {
        Plane::Control
    } else {
        Plane::Data
    };
    if parts.method == Method::GET && (path == "/health" || path == "/metrics") {
        return operations_reply(&state, path, &request_id);
    }
    let query = parts.uri.query().unwrap_or("");
    let signable = SignableParts {
        method: &parts.method,
        path,
        query,
        headers: header_pairs(&parts.headers),
    };
    if let Some((ledger, rest)) = crate::tlog::log_path(path) {
        return log_reply(&state, &signable, body, ledger, rest, &request_id).await;
    }
    let (body, caller) = match read_body(&state, &signable, body).await {
        Ok(read) => read,
        Err(error) => return error_reply(&error, plane, &request_id),
    };
    if parts.method == Method::GET {
        if let Some(ledger) = crate::journal_blocks::ledger_of(path) {
            return match journal_blocks(&state, &caller, ledger, path, query).await {
                Ok(response) => response,
                Err(error) => error_reply(&error, plane, &request_id),
            };
        }
        if let Some(ledger) = journal_events::ledger_of(path) {
            return match start_journal_events(&state, &caller, &ledger, path, query, &parts.headers)
            {
                Ok(response) => response,
                Err(error) => error_reply(&error, plane, &request_id),
            };
        }
    }
    let result = match plane {
        Plane::Control => control_plane(&state, caller, parts.method.as_str(), path, query, body)
            .await
            .map(|(status, value)| (status, "application/json", value.to_string().into_bytes())),
        Plane::Data => data_plane(&state, caller, &parts.method, path, &parts.headers, body)
            .await
            .map(|rendered| (200, "application/x-amz-json-1.0", rendered)),
    };
    match result {
        Ok((status, content_type, body)) => reply(status, content_type, body, &request_id),
        Err(error) => error_reply(&error, plane, &request_id),
    }
}

/// A read of a ledger's transparency log (`/ledgers/{name}/log/…`): public with `--public-log`,
/// otherwise authenticated like every request, and for keys listed in a policy allowed like
/// GetDigest (a checkpoint is a signed digest).
async fn log_reply(
    state: &Arc<AppState>,
    signable: &SignableParts<'_>,
    body: Body,
    ledger: &str,
    rest: &str,
    request_id: &str,
) -> Response<Body> {
    if !state.logs.is_public() {
        let authorized = read_body(state, signable, body)
            .await
            .and_then(|(_, caller)| {
                caller.authorize("qldb:GetDigest", &format!("ledger/{ledger}"))
            });
        if let Err(error) = authorized {
            return error_reply(&error, Plane::Control, request_id);
        }
    }
    let (ledger, rest, query, method) = (
        ledger.to_owned(),
        rest.to_owned(),
        signable.query.to_owned(),
        signable.method.clone(),
    );
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        state
            .logs
            .respond(&state.registry, &method, &ledger, &rest, &query)
    })
    .await
    .unwrap_or_else(|_| {
        error_reply(
            &ApiError::internal("log request failed"),
            Plane::Control,
            request_id,
        )
    })
}

/// A range of journal blocks (see [`crate::journal_blocks`]).
async fn journal_blocks(
    state: &Arc<AppState>,
    caller: &Caller,
    ledger_name: String,
    path: &str,
    query: &str,
) -> Result<Response<Body>, ApiError> {
    caller.authorize_control("GET", path, &[])?;
    let (from, count) = crate::journal_blocks::parse_range(query)?;
    let (ledger, _) = state.registry.get(&ledger_name)?;
    tokio::task::spawn_blocking(move || crate::journal_blocks::reply(&ledger, from, count))
        .await
        .map_err(|e| ApiError::internal(format!("journal block read failed: {e}")))?
}

/// Starts a journal event tail (see [`journal_events`]).
fn start_journal_events(
    state: &AppState,
    caller: &Caller,
    ledger_name: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    caller.authorize_control("GET", path, &[])?;
    let (ledger, _) = state.registry.get(ledger_name)?;
    let start = journal_events::start_block(headers, query, ledger.digest().tip.sequence_no)?;
    let stream_arn = format!(
        "arn:aws:qldb:{}:{}:stream/{ledger_name}/journal-events",
        state.region, state.account_id
    );
    let mut response = Response::new(journal_events::body(
        ledger,
        stream_arn,
        start,
        state.stopping.subscribe(),
    ));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// How often `/health`'s view of the PostgreSQL connection is refreshed.
const DATABASE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Checks the PostgreSQL connection in the background, so `/health` answers at once.
async fn watch_database(registry: Arc<Registry>) {
    loop {
        let checking = Arc::clone(&registry);
        let _ = tokio::task::spawn_blocking(move || checking.check_database()).await;
        tokio::time::sleep(DATABASE_CHECK_INTERVAL).await;
    }
}

fn operations_reply(state: &AppState, path: &str, request_id: &str) -> Response<Body> {
    let ledgers = state.registry.len();
    let failed = state.registry.faults();
    if path == "/health" {
        let database = state.registry.database_health();
        let database_down = database.as_ref().is_some_and(|d| d.error.is_some());
        let log = state.logs.health();
        let log_refused = log.as_ref().is_some_and(|(_, refused)| !refused.is_empty());
        // The server is up and serves its other ledgers: "degraded", still 200, so a load
        // balancer keeps routing to it; the failed ledgers are named.
        let status = if failed.is_empty() && !database_down && !log_refused {
            "ok"
        } else {
            "degraded"
        };
        let mut body = json!({
            "status": status,
            "ledgers": ledgers,
            "sessions": state.sessions.len(),
            "failed_ledgers": failed,
        });
        if let Some(database) = database {
            body["database"] = json!(database);
        }
        if let Some((signing, refused)) = log {
            // With ledgers in PostgreSQL: whose transparency log this server signs, and the
            // ledgers whose log it refuses to sign (another key), with why.
            body["transparency_log"] = json!({"signing": signing, "refused": refused});
        }
        return reply(
            200,
            "application/json",
            body.to_string().into_bytes(),
            request_id,
        );
    }
    let mut text = state.metrics.render(Gauges {
        active_sessions: state.sessions.len(),
        ledgers,
        failed_ledgers: failed.len(),
        unverified_body_bytes: state.unverified_body_budget_bytes
            - state.unverified_body_budget.available_permits(),
    });
    text.push_str(&state.streams.render_metrics());
    text.push_str(&state.logs.render_metrics());
    reply(
        200,
        "text/plain; version=0.0.4",
        text.into_bytes(),
        request_id,
    )
}

/// What a signature covers, apart from the body.
struct SignableParts<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    headers: Vec<HeaderRef<'a>>,
}

/// A received header as a signature check reads it, borrowed from the request.
type HeaderRef<'a> = (&'a str, Cow<'a, str>);

impl<'a> SignableParts<'a> {
    fn with_body<'b>(&'b self, body: &'b [u8]) -> SignableRequest<'b, HeaderRef<'a>> {
        SignableRequest {
            method: self.method.as_str(),
            raw_path: self.path,
            raw_query: self.query,
            headers: &self.headers,
            body,
        }
    }
}

/// The request's headers (names are lowercase in a `HeaderMap`); values that are not UTF-8,
/// which no signer produces, are read lossily and so fail the check.
fn header_pairs(headers: &HeaderMap) -> Vec<HeaderRef<'_>> {
    headers
        .iter()
        .map(|(name, value)| {
            // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy` walks every value
            // chunk by chunk, about half of this function's cost when every value is valid.
            let value = match std::str::from_utf8(value.as_bytes()) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(value.as_bytes()),
            };
            (name.as_str(), value)
        })
        .collect()
}

/// Authenticates a request and reads its body, checking as much as possible before reading,
/// so that clients without a valid signature cannot hold memory or connections:
///
/// 1. A body declared (`Content-Length`) larger than [`REQUEST_BODY_MAX_BYTES`] gets 413 at
///    once; nothing of it is read (and a client sending `Expect: 100-continue` never sends it).
/// 2. With credentials, the headers are checked first ([`sigv4::check_headers`]): no or a
///    malformed `Authorization`, an unknown access key, another service, or an `X-Amz-Date`
///    outside the allowed skew is refused before the body is read.
/// 3. When the client declares the payload hash (`x-amz-content-sha256`, as the JavaScript SDK
///    does), the signature covers that value and is verified now; the body is then read
///    (bounded in size and time) and must hash to it. Only a signer reaches this read.
/// 4. Otherwise the signature covers the body's hash but not in a header (botocore, which
///    pyqldb uses, sends none for QLDB), so it can only be verified once the body is read; and
///    with `--auth none` nothing can be verified at all. Such bodies are read under a shared
///    byte budget ([`crate::limits::UNVERIFIED_BODY_BUDGET_BYTES`]): the request reserves its
///    declared length (the maximum when it is sent chunked) or gets 503
///    `CapacityExceededException` (drivers retry it) when the budget is spent, and keeps the
///    reservation only while reading and verifying.
///
/// Every body read has a deadline ([`crate::limits::BODY_READ_TIMEOUT`]): a client trickling
/// its body gets 408 and its connection is closed (hyper cannot reuse a connection whose
/// request body was not read), so a slow client frees both its connection slot and its share
/// of the budget. Step 2 needs a known access key id; ids are not secrets, so step 4 is what
/// bounds a client that knows one but not its secret.
async fn read_body(
    state: &AppState,
    request: &SignableParts<'_>,
    body: Body,
) -> Result<(Bytes, Caller), ApiError> {
    let declared_length = body.size_hint().exact();
    if let Some(length) = declared_length {
        if length > REQUEST_BODY_MAX_BYTES as u64 {
            return Err(too_large());
        }
    }
    let header_check = state
        .credentials
        .as_ref()
        .map(|credentials| sigv4::check_headers(&request.headers, credentials, SystemTime::now()))
        .transpose()?;
    let declared_hash = header_check
        .as_ref()
        .and_then(HeaderCheck::declared_payload_hash);
    if let (Some(check), Some(hash)) = (&header_check, declared_hash) {
        check.verify(&request.with_body(&[]), hash)?;
        let body = read_within(body, REQUEST_BODY_MAX_BYTES, state.body_read_timeout).await?;
        sigv4::check_payload(hash, &body)?;
        return Ok((body, caller(state, Some(check))));
    }
    let reserved = declared_length.map_or(REQUEST_BODY_MAX_BYTES, |length| length as usize);
    let _reservation = reserve_unverified(state, reserved)?;
    let body = read_within(body, reserved, state.body_read_timeout).await?;
    if let Some(check) = &header_check {
        check.verify(&request.with_body(&body), &sigv4::payload_sha256(&body))?;
    }
    Ok((body, caller(state, header_check.as_ref())))
}

/// Who signed a verified request, as far as permissions go: without credentials or a policy,
/// everyone is an administrator.
fn caller(state: &AppState, verified: Option<&HeaderCheck<'_>>) -> Caller {
    let caller = match (&state.permissions, verified) {
        (Some(permissions), Some(check)) => permissions.caller(check.access_key_id()),
        _ => Caller::administrator(),
    };
    if state.read_only {
        caller.read_only()
    } else {
        caller
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorKind::RequestEntityTooLarge,
        format!("Request body is larger than {REQUEST_BODY_MAX_BYTES} bytes"),
    )
}

/// Takes `bytes` from the unverified-body budget, or fails with 503 when it is spent.
fn reserve_unverified(state: &AppState, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
    // The reservation never exceeds REQUEST_BODY_MAX_BYTES (8 MiB), which fits in a u32.
    let permits = u32::try_from(bytes).map_err(|_| too_large())?;
    state
        .unverified_body_budget
        .clone()
        .try_acquire_many_owned(permits)
        .map_err(|_| {
            ApiError::new(
                ErrorKind::CapacityExceeded,
                "Too many request bodies are waiting to be authenticated; retry shortly",
            )
        })
}

/// Reads a whole body of at most `limit` bytes within `timeout`.
async fn read_within(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) => {
            // `to_bytes` reports a body over the limit and a broken stream alike.
            tracing::debug!(%error, "request body not read");
            Err(ApiError::new(
                ErrorKind::RequestEntityTooLarge,
                format!("Request body is larger than {limit} bytes or was cut off"),
            ))
        }
        Err(_) => Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "The request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

async fn control_plane(
    state: &Arc<AppState>,
    caller: Caller,
    method: &str,
    path: &str,
    query: &str,
    body: Bytes,
) -> Result<(u16, Value), ApiError> {
    caller.authorize_control(method, path, &body)?;
    let (state, method, path, query) = (
        state.clone(),
        method.to_string(),
        path.to_string(),
        query.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let context = control::Context {
            registry: &state.registry,
            sessions: &state.sessions,
            exports: &state.exports,
            region: &state.region,
            account_id: &state.account_id,
        };
        let request = ControlRequest {
            method: &method,
            path: &path,
            query: &query,
            body: &body,
        };
        if let Some(outcome) = streams::route(
            &state.streams,
            &state.registry,
            &request,
            &state.region,
            &state.account_id,
        ) {
            return outcome;
        }
        let outcome = control::handle(&context, &request);
        if outcome.is_ok() {
            streams::ledger_request_done(&state.streams, &request);
        }
        outcome
    })
    .await
    .unwrap_or_else(|error| {
        Err(ApiError::internal(format!(
            "control-plane task failed: {error}"
        )))
    })
}

async fn data_plane(
    state: &Arc<AppState>,
    caller: Caller,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let target = headers.get("x-amz-target").and_then(|t| t.to_str().ok());
    if method != Method::POST || path != "/" || target != Some(data_plane::TARGET) {
        return Err(ApiError::new(
            ErrorKind::UnknownOperation,
            format!(
                "Unknown operation: {method} {path} with X-Amz-Target {:?} (expected POST / with {})",
                target.unwrap_or(""),
                data_plane::TARGET
            ),
        ));
    }
    let request = data_plane::parse_request(&body)?;
    let name = data_plane::command_name(&request.command);
    let started = Instant::now();
    let token = request.session_token;
    let outcome = match state.sessions.try_run_inline(
        &state.registry,
        &caller,
        token.as_deref(),
        request.command,
        body.len(),
    ) {
        Inline::Done(outcome) => outcome?,
        Inline::Commit(pending) => pending.finish().await?,
        Inline::Blocking(command) => {
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                state
                    .sessions
                    .run(&state.registry, &caller, token.as_deref(), command)
            })
            .await
            .unwrap_or_else(|error| {
                Err(ApiError::internal(format!("command task failed: {error}")))
            })?
        }
    };
    Ok(data_plane::render(name, &outcome, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn request_ids_are_random_lowercase_uuid_shaped() {
        let id = request_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(id
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(id, request_id());
    }
}
