//! TLS for Quill's outbound HTTP clients (Kinesis, the CLI's client of `quill serve`): rustls
//! trusting Mozilla's roots plus the certificates of an optional PEM bundle (`AWS_CA_BUNDLE`,
//! `--ca-cert`), HTTP/1.1 over ALPN.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsClientError {
    /// The bundle is unreadable, malformed or holds no certificate.
    #[error("CA bundle {path}: {detail}")]
    Bundle {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A connector trusting Mozilla's roots plus every certificate of the PEM file `ca_bundle`.
pub fn connector(ca_bundle: Option<&Path>) -> Result<TlsConnector, TlsClientError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_bundle {
        let error = |detail: String| TlsClientError::Bundle {
            path: path.display().to_string(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| error(e.to_string()))?;
            roots.add(cert).map_err(|e| error(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(error("no PEM certificate in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsClientError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
