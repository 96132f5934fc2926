//! The HTTP layer: one listener for both planes, optional TLS, request ids, body limits,
//! authentication, health and metrics, and graceful shutdown.
//!
//! Routing: `GET /health` and `GET /metrics` are unauthenticated; `POST /` with
//! `X-Amz-Target: QLDBSession.SendCommand` is the data plane; `/ledgers…`, `/tags/…` and
//! `/journal-s3-exports` are the control plane. Every reply carries `x-amzn-RequestId`.
//! Shutdown stops accepting, lets in-flight requests finish (up to
//! [`SHUTDOWN_GRACE`]), then ends every session, aborting open transactions.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use quill_ledger::LedgerOptions;
use rand::RngCore as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::control::{self, ControlRequest};
use crate::data_plane;
use crate::error::{ApiError, ErrorKind, Plane, ServerError};
use crate::limits::{
    CONNECTIONS_MAX, REQUEST_BODY_MAX_BYTES, SESSION_SWEEP_INTERVAL, SHUTDOWN_GRACE,
};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::Sessions;
use crate::sigv4::{self, Credentials, SignableRequest};
use crate::{AuthMode, ServerConfig, TlsConfig};

/// How long a client may take to send its request headers (bounds idle half-open connections).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

struct AppState {
    registry: Arc<Registry>,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    credentials: Option<Credentials>,
    region: String,
    account_id: String,
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
        AuthMode::None => {
            tracing::warn!(
                "AUTHENTICATION IS OFF: every request is accepted without a signature. \
                 Use --credentials (SigV4) for anything but local development."
            );
            None
        }
        AuthMode::Credentials(path) => Some(Credentials::load(path)?),
    };
    let tls = config.tls.as_ref().map(load_tls).transpose()?;
    let options = LedgerOptions {
        limits: quill_ledger::Limits {
            transaction_timeout: config.limits.transaction_timeout,
            ..Default::default()
        },
        ..Default::default()
    };
    let data_dir = config.data_dir.clone();
    let registry = tokio::task::spawn_blocking(move || Registry::open(&data_dir, options))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))??;
    crate::exports::resume(&registry);
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        registry: Arc::new(registry),
        sessions: Arc::new(Sessions::new(config.limits.clone(), metrics.clone())),
        metrics,
        credentials,
        region: config.region.clone(),
        account_id: config.account_id.clone(),
    });
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
    Ok((address, run(listener, tls, state, shutdown)))
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let router = Router::new().fallback(handle).with_state(state.clone());
    let (stop_sender, stop) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let sweeper = tokio::spawn(sweep_sessions(state.sessions.clone(), stop.clone()));
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
        let (router, tls, stop) = (router.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, tls, router, stop).await;
            drop(permit);
        });
    }
    tracing::info!("shutting down: no new connections");
    drop(listener);
    let _ = stop_sender.send(true);
    let drained = tokio::time::timeout(
        SHUTDOWN_GRACE,
        connections.acquire_many(CONNECTIONS_MAX as u32),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    sweeper.abort();
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
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
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
    let path = parts.uri.path().to_string();
    let plane = if control::is_control_path(&path) {
        Plane::Control
    } else {
        Plane::Data
    };
    if parts.method == Method::GET && (path == "/health" || path == "/metrics") {
        return operations_reply(&state, &path, &request_id);
    }
    let body = match axum::body::to_bytes(body, REQUEST_BODY_MAX_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            let error = ApiError::new(
                ErrorKind::RequestEntityTooLarge,
                format!("Request body is larger than {REQUEST_BODY_MAX_BYTES} bytes or unreadable"),
            );
            return error_reply(&error, plane, &request_id);
        }
    };
    let query = parts.uri.query().unwrap_or("").to_string();
    if let Err(error) = authenticate(&state, &parts.method, &path, &query, &parts.headers, &body) {
        return error_reply(&error, plane, &request_id);
    }
    let result = match plane {
        Plane::Control => control_plane(&state, parts.method.as_str(), &path, &query, body).await,
        Plane::Data => data_plane(&state, &parts.method, &path, &parts.headers, body).await,
    };
    match result {
        Ok((status, value)) => {
            let content_type = match plane {
                Plane::Data => "application/x-amz-json-1.0",
                Plane::Control => "application/json",
            };
            reply(
                status,
                content_type,
                value.to_string().into_bytes(),
                &request_id,
            )
        }
        Err(error) => error_reply(&error, plane, &request_id),
    }
}

fn operations_reply(state: &AppState, path: &str, request_id: &str) -> Response<Body> {
    let ledgers = state.registry.len();
    let failed = state.registry.faults();
    if path == "/health" {
        // The server is up and serves its other ledgers: "degraded", still 200, so a load
        // balancer keeps routing to it; the failed ledgers are named.
        let status = if failed.is_empty() { "ok" } else { "degraded" };
        let body = json!({
            "status": status,
            "ledgers": ledgers,
            "sessions": state.sessions.len(),
            "failed_ledgers": failed,
        });
        return reply(
            200,
            "application/json",
            body.to_string().into_bytes(),
            request_id,
        );
    }
    let text = state
        .metrics
        .render(state.sessions.len(), ledgers, failed.len());
    reply(
        200,
        "text/plain; version=0.0.4",
        text.into_bytes(),
        request_id,
    )
}

fn authenticate(
    state: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let Some(credentials) = &state.credentials else {
        return Ok(());
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let request = SignableRequest {
        method: method.as_str(),
        raw_path: path,
        raw_query: query,
        headers: &headers,
        body,
    };
    sigv4::verify(&request, credentials, SystemTime::now())
}

async fn control_plane(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    query: &str,
    body: Bytes,
) -> Result<(u16, Value), ApiError> {
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
            region: &state.region,
            account_id: &state.account_id,
        };
        let request = ControlRequest {
            method: &method,
            path: &path,
            query: &query,
            body: &body,
        };
        control::handle(&context, &request)
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
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(u16, Value), ApiError> {
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
    let state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        state.sessions.run(
            &state.registry,
            request.session_token.as_deref(),
            request.command,
        )
    })
    .await
    .unwrap_or_else(|error| Err(ApiError::internal(format!("command task failed: {error}"))))?;
    Ok((200, data_plane::render(name, &outcome, started.elapsed())))
}
