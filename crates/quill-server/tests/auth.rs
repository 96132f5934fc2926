//! SigV4 authentication end to end.

mod support;

use quill_server::AuthMode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn sigv4_good_signatures_pass_and_bad_ones_fail() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "# test keys\nAKIDTEST secret-one\n").unwrap();
    let server = start(|config| config.auth = AuthMode::Credentials(credentials.clone())).await;
    let address = server.address;
    let body = json!({"StartSession": {"LedgerName": "missing"}}).to_string();

    let reply = send_signed(
        address,
        "POST",
        "/",
        body.as_bytes(),
        "AKIDTEST",
        "secret-one",
    )
    .await;
    // Past authentication: the ledger does not exist.
    assert_eq!(reply.error(), "BadRequestException", "{}", reply.message());

    let reply = send_signed(address, "POST", "/", body.as_bytes(), "AKIDTEST", "wrong").await;
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (400, "InvalidSignatureException")
    );

    let reply = send_signed(
        address,
        "POST",
        "/",
        body.as_bytes(),
        "NOBODY",
        "secret-one",
    )
    .await;
    assert_eq!(reply.error(), "UnrecognizedClientException");

    let reply = send(address, &json!({"StartSession": {"LedgerName": "missing"}})).await;
    assert_eq!(reply.error(), "MissingAuthenticationTokenException");

    // The control plane's percent-encoded ARN path is signed double-encoded.
    let arn = "arn%3Aaws%3Aqldb%3Aus-east-1%3A000000000000%3Aledger%2Fmissing";
    let path = format!("/tags/{arn}");
    let reply = send_signed(address, "GET", &path, b"", "AKIDTEST", "secret-one").await;
    assert_eq!(
        reply.error(),
        "ResourceNotFoundException",
        "{}",
        reply.message()
    );
    server.shutdown().await;
}
