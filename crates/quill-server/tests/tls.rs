//! TLS: the server speaks HTTPS with the configured PEM certificate and key.
//! The fixture is a self-signed P-256 certificate for `localhost` (made with openssl, valid
//! for 100 years); tests only.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use quill_server::{ServerConfig, ServerError, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tls_config() -> TlsConfig {
    TlsConfig {
        cert_chain: fixture("localhost.crt"),
        private_key: fixture("localhost.key"),
    }
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let server = support::start(|config| config.tls = Some(tls_config())).await;

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fixture("localhost.crt")).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    // A peer closing without close_notify is fine here: the whole reply has arrived.
    let _ = stream.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"status\":\"ok\""), "{reply}");

    // Plain HTTP on the TLS port does not get an answer.
    let plain = support::http(server.address, "GET", "/health", &[], b"");
    let plain = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        tokio::task::spawn(plain).await
    })
    .await;
    assert!(!matches!(plain, Ok(Ok(reply)) if reply.status == 200));
    server.shutdown().await;
}

#[tokio::test]
async fn missing_or_wrong_pem_files_are_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let cases = [
        TlsConfig {
            cert_chain: dir.path().join("none.crt"),
            private_key: fixture("localhost.key"),
        },
        TlsConfig {
            cert_chain: fixture("localhost.key"),
            private_key: fixture("localhost.key"),
        },
        TlsConfig {
            cert_chain: fixture("localhost.crt"),
            private_key: fixture("localhost.crt"),
        },
    ];
    for tls in cases {
        let mut config = ServerConfig::new(dir.path().to_path_buf(), listen);
        config.tls = Some(tls.clone());
        let result = quill_server::bind(config, async {}).await;
        assert!(matches!(result, Err(ServerError::Tls(_))), "{tls:?}");
    }
}
