//! The HTTP client `quill shell --endpoint` and `quill bench wire` share: one keep-alive
//! HTTP/1.1 connection (hyper's client) over TCP or TLS (rustls, trusting Mozilla's roots from
//! `webpki-roots` plus an optional `--ca-cert` PEM file for self-signed servers), and SigV4
//! signing (`quill_server::sigv4::sign`) when `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` are set.
//!
//! Signed requests also carry `x-amz-content-sha256`, so the server can verify the signature
//! before it reads the body.
//!
//! A connection's I/O is driven by the task that sends the request, not by a task of its own:
//! handing each request and reply across tasks (often across threads) cost the wire benchmark
//! latency on a busy machine, and a connection serves one request at a time anyway.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use quill_server::sigv4;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Largest response accepted: the server's pages are at most 1 MiB of Ion (base64 in JSON).
const RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// What can go wrong on the way to a reply.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The endpoint URL is not `http[s]://HOST[:PORT][/]`.
    #[error("endpoint {0:?} is not http[s]://HOST[:PORT]")]
    BadEndpoint(String),
    /// The `--ca-cert` file is unreadable or holds no certificate.
    #[error("CA certificate {path}: {detail}")]
    CaCert {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// TCP connect, or the TLS handshake, failed.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The OS or TLS error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection closed, malformed reply, …).
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a header value with control characters, …).
    #[error("cannot build the request: {0}")]
    Request(String),
    /// The reply body is larger than [`RESPONSE_MAX_BYTES`] or broke off.
    #[error("cannot read the reply body: {0}")]
    Body(String),
    /// The connection was closed before this request.
    #[error("the connection is closed")]
    Closed,
}

/// A server to connect to: where, and how (plain or TLS).
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `host:port` as sent in `Host` (and signed).
    authority: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

impl Endpoint {
    /// Parses `http://HOST[:PORT]`, `https://HOST[:PORT]` (an optional trailing `/`) or a bare
    /// `HOST:PORT` (plain HTTP). `ca_cert` adds a trusted root for `https` (self-signed servers).
    pub fn parse(url: &str, ca_cert: Option<&Path>) -> Result<Endpoint, HttpError> {
        let bad = || HttpError::BadEndpoint(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") | None => false,
            Some(_) => return Err(bad()),
        };
        let has_path = uri.path_and_query().is_some_and(|p| p.as_str() != "/");
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        if has_path || (uri.scheme().is_none() && uri.port().is_none()) {
            return Err(bad());
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // `Uri::host` keeps an IPv6 address's brackets; connecting and TLS want it bare.
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = if https {
            let name = ServerName::try_from(bare_host.clone()).map_err(|_| bad())?;
            Some((tls_connector(ca_cert)?, name))
        } else {
            None
        };
        Ok(Endpoint {
            authority: format!("{host}:{port}"),
            host: bare_host,
            port,
            tls,
        })
    }

    /// Opens a new keep-alive connection. Its driver runs as a task on the current runtime.
    pub async fn connect(&self) -> Result<Connection, HttpError> {
        let connect_error = |source| HttpError::Connect {
            authority: self.authority.clone(),
            source,
        };
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(connect_error)?;
        // Requests are small and answered one at a time: Nagle would only add latency.
        stream.set_nodelay(true).map_err(connect_error)?;
        let (sender, driver) = match &self.tls {
            None => handshake(TokioIo::new(stream)).await?,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(connect_error)?;
                handshake(TokioIo::new(stream)).await?
            }
        };
        Ok(Connection {
            sender,
            driver,
            ended: false,
            authority: self.authority.clone(),
        })
    }
}

fn tls_connector(ca_cert: Option<&Path>) -> Result<TlsConnector, HttpError> {
    use quill_server::tls_client::{connector, TlsClientError};
    connector(ca_cert).map_err(|error| match error {
        TlsClientError::Bundle { path, detail } => HttpError::CaCert { path, detail },
        TlsClientError::Config(detail) => HttpError::Request(detail),
    })
}

/// The future that performs a connection's I/O until it ends.
type Driver = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

async fn handshake<I>(io: TokioIo<I>) -> Result<(SendRequest<Full<Bytes>>, Driver), HttpError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    Ok((sender, Box::pin(connection)))
}

/// SigV4 credentials (service `qldb`) from the environment.
#[derive(Clone)]
pub struct Signer {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    region: String,
    /// Shared by every clone: the signing key changes once a day, not per request.
    signing_keys: Arc<sigv4::SigningKeys>,
}

impl Signer {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` when set), or
    /// `None` when either is unset or empty: requests then go unsigned.
    pub fn from_env(region: &str) -> Option<Signer> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(Signer {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
            region: region.to_owned(),
            signing_keys: Arc::default(),
        })
    }

    /// Adds the date, payload hash and token headers to `headers`, then the `authorization`
    /// header signing all of them.
    fn sign(
        &self,
        method: &Method,
        path: &str,
        headers: &mut Vec<(String, String)>,
        body: &[u8],
    ) -> Result<(), HttpError> {
        headers.push((
            "x-amz-date".into(),
            sigv4::format_amz_date(SystemTime::now()),
        ));
        headers.push(("x-amz-content-sha256".into(), sigv4::payload_sha256(body)));
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token".into(), token.clone()));
        }
        let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
        let request = sigv4::SignableRequest {
            method: method.as_str(),
            raw_path,
            raw_query,
            headers,
            body,
        };
        let authorization = sigv4::sign_with(
            &request,
            &self.access_key_id,
            &self.secret_access_key,
            &self.region,
            sigv4::SERVICE,
            &self.signing_keys,
        )
        .ok_or_else(|| HttpError::Request("cannot sign the request".into()))?;
        headers.push(("authorization".into(), authorization));
        Ok(())
    }
}

/// One keep-alive connection; requests on it go one at a time.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// Polled only while a request is in flight (see the module docs).
    driver: Driver,
    /// Set once `driver` has completed: it must not be polled again.
    ended: bool,
    authority: String,
}

impl Connection {
    /// True once the connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.ended || self.sender.is_closed()
    }

    /// Sends one request (signed when `signer` is given) and returns the status and body.
    /// `headers` names must be lowercase.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        signer: Option<&Signer>,
    ) -> Result<(u16, Bytes), HttpError> {
        let mut all: Vec<(String, String)> = Vec::with_capacity(headers.len() + 5);
        all.push(("host".into(), self.authority.clone()));
        all.extend(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        if let Some(signer) = signer {
            signer.sign(&method, path, &mut all, &body)?;
        }
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in &all {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::Request(e.to_string()))?;
        if self.ended {
            return Err(HttpError::Closed);
        }
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), RESPONSE_MAX_BYTES)
                .collect()
                .await
                .map_err(|e| HttpError::Body(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::pin!(exchange);
        tokio::select! {
            biased;
            reply = &mut exchange => reply,
            _ = &mut self.driver => {
                // The connection ended; the exchange now holds whatever reply arrived first,
                // or hyper's error saying why none did.
                self.ended = true;
                exchange.await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_scheme_host_and_port() {
        let plain = Endpoint::parse("http://127.0.0.1:8000/", None).unwrap();
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 8000));
        assert!(plain.tls.is_none());
        let bare = Endpoint::parse("localhost:9", None).unwrap();
        assert_eq!(bare.authority, "localhost:9");
        let tls = Endpoint::parse("https://ledger.example.com", None).unwrap();
        assert_eq!(
            (tls.authority.as_str(), tls.port),
            ("ledger.example.com:443", 443)
        );
        assert!(tls.tls.is_some());
        let v6 = Endpoint::parse("https://[::1]:8443", None).unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str()),
            ("::1", "[::1]:8443")
        );
        for bad in [
            "ftp://h:1",
            "http://",
            "http://h:1/x",
            "h",
            "http://h:1?x=1",
        ] {
            assert!(Endpoint::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn ca_cert_files_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let error = Endpoint::parse("https://localhost:1", Some(&empty)).unwrap_err();
        assert!(matches!(error, HttpError::CaCert { .. }), "{error}");
        let missing = dir.path().join("missing.pem");
        assert!(Endpoint::parse("https://localhost:1", Some(&missing)).is_err());
    }
}
