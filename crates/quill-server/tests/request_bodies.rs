//! Request bodies are authenticated before they are read where the protocol allows it, and
//! bodies that cannot be are bounded in size, time and total: slow or oversized requests
//! cannot hold memory or connections.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use quill_server::sigv4::{format_amz_date, payload_sha256, sign, SignableRequest};
use quill_server::AuthMode;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for a reply it expects promptly.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Sends a request head and the first `body` bytes, and leaves the connection open.
async fn send_head(address: SocketAddr, headers: &[(String, String)], body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut head = format!("POST / HTTP/1.1\r\nhost: {address}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// Reads until the server closes the connection; returns the status and what arrived.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (u16, String) {
    let mut raw = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

fn content_length(length: usize) -> Vec<(String, String)> {
    let mut headers = data_headers();
    headers.push(("content-length".into(), length.to_string()));
    headers
}

fn credentials_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("credentials");
    std::fs::write(&path, "AKIDTEST secret-one\n").unwrap();
    path
}

/// Signed headers for `body` (with `content-length`); with `declare_hash`, also the
/// `x-amz-content-sha256` header (as the JavaScript SDK sends it).
fn signed_headers(address: SocketAddr, body: &[u8], declare_hash: bool) -> Vec<(String, String)> {
    let mut headers = data_headers();
    headers.push(("host".into(), address.to_string()));
    headers.push(("x-amz-date".into(), format_amz_date(SystemTime::now())));
    if declare_hash {
        headers.push(("x-amz-content-sha256".into(), payload_sha256(body)));
    }
    let request = SignableRequest {
        method: "POST",
        raw_path: "/",
        raw_query: "",
        headers: &headers,
        body,
    };
    let authorization = sign(&request, "AKIDTEST", "secret-one", "us-east-1", "qldb").unwrap();
    headers.push(("authorization".into(), authorization));
    headers.retain(|(name, _)| name != "host");
    headers.push(("content-length".into(), body.len().to_string()));
    headers
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_with_408_while_others_are_served() {
    let server = start(|config| config.limits.body_read_timeout = Duration::from_millis(500)).await;
    let began = Instant::now();
    let mut slow = send_head(server.address, &content_length(100), b"{\"StartSe").await;
    // Other requests go on while the slow one waits.
    create_ledger(server.address, "books").await;
    start_session(server.address, "books").await;
    let (status, reply) = read_until_closed(&mut slow, PROMPTLY).await;
    assert_eq!(status, 408, "{reply}");
    assert!(reply.contains("RequestTimeoutException"), "{reply}");
    assert!(began.elapsed() >= Duration::from_millis(500));
    start_session(server.address, "books").await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_sent() {
    let server = start(|_| {}).await;
    // Only the head is sent: the reply must not wait for the 100 MiB it announces.
    let mut stream = send_head(server.address, &content_length(100 << 20), b"").await;
    let (status, reply) = read_until_closed(&mut stream, PROMPTLY).await;
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("RequestEntityTooLargeException"), "{reply}");

    // A chunked body has no declared length: it is cut off at the limit.
    let mut headers = data_headers();
    headers.push(("transfer-encoding".into(), "chunked".into()));
    let mut stream = send_head(server.address, &headers, b"").await;
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..9 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // The server stopped reading: that is the point.
        }
    }
    let (status, reply) = read_until_closed(&mut stream, PROMPTLY).await;
    assert_eq!(status, 413, "{reply}");
    server.shutdown().await;
}

#[tokio::test]
async fn unsigned_and_unknown_signers_are_refused_before_their_body() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_file(&dir);
    let server = start(|config| config.auth = AuthMode::Credentials(credentials.clone())).await;
    // One mebibyte announced, none sent: the header check alone answers.
    let mut unsigned = send_head(server.address, &content_length(1 << 20), b"").await;
    let (status, reply) = read_until_closed(&mut unsigned, PROMPTLY).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply.contains("MissingAuthenticationTokenException"));

    let body = vec![b' '; 1 << 20];
    let mut headers = signed_headers(server.address, &body, false);
    for (name, value) in headers.iter_mut() {
        if name == "authorization" {
            *value = value.replace("AKIDTEST/", "NOBODY/");
        }
    }
    let mut unknown = send_head(server.address, &headers, b"").await;
    let (status, reply) = read_until_closed(&mut unknown, PROMPTLY).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("UnrecognizedClientException"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_declared_payload_hash_is_verified_before_the_body_and_checked_after() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_file(&dir);
    let server = start(|config| config.auth = AuthMode::Credentials(credentials.clone())).await;
    let body = json!({"StartSession": {"LedgerName": "missing"}}).to_string();

    // A wrong signature is refused from the head alone: the body is never sent.
    let mut headers = signed_headers(server.address, body.as_bytes(), true);
    for (name, value) in headers.iter_mut() {
        if name == "x-amz-date" {
            *value = format_amz_date(SystemTime::now() - Duration::from_secs(1));
        }
    }
    let mut forged = send_head(server.address, &headers, b"").await;
    let (status, reply) = read_until_closed(&mut forged, PROMPTLY).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("InvalidSignatureException"), "{reply}");

    // A good signature over the declared hash, then a different body of the same length.
    let headers = signed_headers(server.address, body.as_bytes(), true);
    let swapped = body.replace("missing", "MISSING");
    let mut stream = send_head(server.address, &headers, swapped.as_bytes()).await;
    let (_, reply) = read_until_closed_after_reply(&mut stream).await;
    assert!(
        reply.contains("x-amz-content-sha256 does not match"),
        "{reply}"
    );

    // The genuine request passes authentication (and finds no such ledger).
    let mut stream = send_head(server.address, &headers, body.as_bytes()).await;
    let (status, reply) = read_until_closed_after_reply(&mut stream).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("BadRequestException"), "{reply}");
    server.shutdown().await;
}

/// Reads one reply: up to its `Content-Length`, or until the server closes.
async fn read_until_closed_after_reply(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer))
            .await
            .expect("a reply in time")
            .expect("read");
        raw.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if read == 0 || reply_complete(&text) {
            let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
            return (status, text);
        }
    }
}

fn reply_complete(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

#[tokio::test]
async fn bodies_awaiting_authentication_share_a_bounded_budget() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = credentials_file(&dir);
    let server = start(|config| {
        config.auth = AuthMode::Credentials(credentials.clone());
        config.limits.unverified_body_budget_bytes = 64 * 1024;
        config.limits.body_read_timeout = Duration::from_millis(800);
    })
    .await;
    let body = json!({"StartSession": {"LedgerName": "missing"}}).to_string();

    // A signer that cannot be checked before its body (botocore's way: no payload hash
    // header) reserves its whole declared length while it trickles.
    let big = vec![b' '; 64 * 1024];
    let mut hog = send_head(
        server.address,
        &signed_headers(server.address, &big, false),
        b"  ",
    )
    .await;
    // The hog's connection may be served by another connection thread than the next one:
    // wait until its reservation is taken.
    wait_for_reserved(server.address, 64 * 1024).await;
    let reply = send_raw(
        server.address,
        &signed_headers(server.address, body.as_bytes(), false),
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.0, 503, "{}", reply.1);
    assert!(reply.1.contains("CapacityExceededException"), "{}", reply.1);

    // A request whose signature covers a declared hash is verified first and needs no budget.
    let reply = send_raw(
        server.address,
        &signed_headers(server.address, body.as_bytes(), true),
        body.as_bytes(),
    )
    .await;
    assert!(reply.1.contains("BadRequestException"), "{}", reply.1);

    // Once the slow body is cut off, its reservation is returned.
    let (status, _) = read_until_closed(&mut hog, PROMPTLY).await;
    assert_eq!(status, 408);
    wait_for_reserved(server.address, 0).await;
    let reply = send_raw(
        server.address,
        &signed_headers(server.address, body.as_bytes(), false),
        body.as_bytes(),
    )
    .await;
    assert!(reply.1.contains("BadRequestException"), "{}", reply.1);
    server.shutdown().await;
}

/// Waits until `/metrics` reports `bytes` of the unverified-body budget reserved.
async fn wait_for_reserved(address: SocketAddr, bytes: usize) {
    let expected = format!("\nquill_unverified_body_bytes {bytes}\n");
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let metrics = http(address, "GET", "/metrics", &[], b"").await.body;
        if String::from_utf8_lossy(&metrics).contains(&expected) {
            return;
        }
        assert!(Instant::now() < deadline, "never reserved {bytes} bytes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn send_raw(address: SocketAddr, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
    let mut stream = send_head(address, headers, body).await;
    read_until_closed_after_reply(&mut stream).await
}
