//! Data-plane protocol edge cases against an in-process server.

mod support;

use std::time::Duration;

use base64::Engine as _;
use ion_rs::Element;
use quill_verify::CommitDigest;
use serde_json::json;
use support::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn malformed_requests_get_typed_4xx_errors() {
    let server = start(|_| {}).await;
    let address = server.address;

    let reply = http(address, "POST", "/", &data_headers(), b"{not json").await;
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (400, "SerializationException")
    );
    assert!(reply.header("x-amzn-requestid").is_some());

    let headers = vec![("x-amz-target".to_string(), "QLDBSession.Nope".to_string())];
    let reply = http(address, "POST", "/", &headers, b"{}").await;
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (400, "UnknownOperationException")
    );

    let long = "x".repeat(100_001);
    let body = json!({"SessionToken": "abcd", "ExecuteStatement": {"TransactionId": "t", "Statement": long}});
    let reply = send(address, &body).await;
    assert_eq!(reply.error(), "BadRequestException");
    assert!(reply.message().contains("100000"));

    let body = json!({"SessionToken": "abcd", "ExecuteStatement": {"TransactionId": "t",
        "Statement": "SELECT ?", "Parameters": [{"IonBinary": b64(b"\xE0\x01\x00\xEA\xFF")}]}});
    let reply = send(address, &body).await;
    assert_eq!(reply.error(), "BadRequestException");
    assert!(
        reply.message().contains("Parameter 0"),
        "{}",
        reply.message()
    );

    for token in ["no spaces allowed!", "abcdefgh"] {
        let reply = send(
            address,
            &json!({"SessionToken": token, "StartTransaction": {}}),
        )
        .await;
        assert_eq!(
            (reply.status, reply.error().as_str()),
            (400, "InvalidSessionException")
        );
    }

    let huge = vec![b' '; 9 * 1024 * 1024];
    let reply = http(address, "POST", "/", &data_headers(), &huge).await;
    assert_eq!(reply.status, 413);

    let reply = send(address, &json!({"StartSession": {"LedgerName": "missing"}})).await;
    assert_eq!(reply.error(), "BadRequestException");
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_metrics() {
    let server = start(|_| {}).await;
    let reply = http(server.address, "GET", "/health", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ok");
    assert_eq!(reply.json()["ledgers"], 0);
    let reply = http(server.address, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8(reply.body).unwrap();
    assert!(text.contains("quill_commits_total 0"), "{text}");
    assert!(text.contains("quill_commit_latency_seconds_bucket{le=\"+Inf\"} 0"));
    server.shutdown().await;
}

#[tokio::test]
async fn transaction_state_machine_and_commit_digest() {
    let server = start(|_| {}).await;
    let address = server.address;
    assert_eq!(create_ledger(address, "books").await.status, 200);
    let token = start_session(address, "books").await;
    let tx = start_transaction(address, &token).await;
    assert_eq!(tx.len(), 22);

    let reply = send(
        address,
        &json!({"SessionToken": token, "StartTransaction": {}}),
    )
    .await;
    assert_eq!(reply.error(), "BadRequestException");

    // Every accepted statement is folded into the digest, whether it succeeds or not.
    let mut digest = CommitDigest::new(&tx);
    let statement = "SELECT * FROM information_schema.user_tables";
    let reply = send(
        address,
        &json!({"SessionToken": token,
        "ExecuteStatement": {"TransactionId": tx, "Statement": statement,
        "Parameters": []}}),
    )
    .await;
    digest.add_statement(statement, &[]);
    if reply.status == 200 {
        assert!(reply.json()["ExecuteStatement"]["FirstPage"]["Values"].is_array());
        assert!(reply.json()["ExecuteStatement"]["TimingInformation"].is_object());
    }

    let wrong = send(
        address,
        &json!({"SessionToken": token, "CommitTransaction":
        {"TransactionId": tx, "CommitDigest": b64(&[0u8; 32])}}),
    )
    .await;
    assert_eq!(wrong.error(), "BadRequestException");
    assert!(wrong.message().contains("CommitDigest"));

    // The mismatch aborted the transaction: FetchPage and commit now find none open.
    let reply = send(
        address,
        &json!({"SessionToken": token, "FetchPage":
        {"TransactionId": tx, "NextPageToken": "abcd"}}),
    )
    .await;
    assert_eq!(reply.error(), "BadRequestException");

    let tx = start_transaction(address, &token).await;
    let mut digest = CommitDigest::new(&tx);
    let parameter = Element::read_one(r#"{name: "Alice", age: 30}"#).unwrap();
    let statement = "SELECT * FROM Person WHERE name = ?";
    let reply = send(
        address,
        &json!({"SessionToken": token, "ExecuteStatement":
        {"TransactionId": tx, "Statement": statement,
         "Parameters": [{"IonText": parameter.to_string()}]}}),
    )
    .await;
    digest.add_statement(statement, &[parameter]);
    if reply.status != 200 {
        // A failing statement leaves the transaction open.
        assert_eq!(reply.error(), "BadRequestException");
    }
    let expected = b64(digest.value().as_bytes());
    let reply = send(
        address,
        &json!({"SessionToken": token, "CommitTransaction":
        {"TransactionId": tx, "CommitDigest": expected}}),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json()["CommitTransaction"]["CommitDigest"],
        expected.as_str()
    );
    assert_eq!(
        reply.json()["CommitTransaction"]["TransactionId"],
        tx.as_str()
    );

    let reply = send(
        address,
        &json!({"SessionToken": token, "FetchPage":
        {"TransactionId": tx, "NextPageToken": "abcd"}}),
    )
    .await;
    assert_eq!(
        reply.error(),
        "BadRequestException",
        "FetchPage after commit"
    );

    let reply = send(
        address,
        &json!({"SessionToken": token, "AbortTransaction": {}}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let reply = send(address, &json!({"SessionToken": token, "EndSession": {}})).await;
    assert_eq!(reply.status, 200);
    let reply = send(
        address,
        &json!({"SessionToken": token, "StartTransaction": {}}),
    )
    .await;
    assert_eq!(reply.error(), "InvalidSessionException");
    server.shutdown().await;
}

#[tokio::test]
async fn expired_transactions_and_session_limits() {
    let server = start(|config| {
        config.limits.transaction_timeout = Duration::from_millis(300);
        config.limits.sessions_per_ledger_max = 1;
    })
    .await;
    let address = server.address;
    assert_eq!(create_ledger(address, "cars").await.status, 200);
    let token = start_session(address, "cars").await;
    let reply = send(address, &json!({"StartSession": {"LedgerName": "cars"}})).await;
    assert_eq!(reply.error(), "LimitExceededException");

    let tx = start_transaction(address, &token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reply = send(
        address,
        &json!({"SessionToken": token, "ExecuteStatement":
        {"TransactionId": tx, "Statement": "SELECT 1 FROM x"}}),
    )
    .await;
    assert_eq!(reply.error(), "InvalidSessionException");
    assert_eq!(reply.message(), format!("Transaction {tx} has expired"));

    // The session survives its transaction's expiry.
    let tx2 = start_transaction(address, &token).await;
    assert_ne!(tx, tx2);
    server.shutdown().await;
}

#[tokio::test]
async fn sessions_expire_after_their_lifetime() {
    let server = start(|config| config.limits.session_lifetime = Duration::from_millis(300)).await;
    let address = server.address;
    assert_eq!(create_ledger(address, "cars").await.status, 200);
    let token = start_session(address, "cars").await;
    start_transaction(address, &token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reply = send(
        address,
        &json!({"SessionToken": token, "AbortTransaction": {}}),
    )
    .await;
    assert_eq!(reply.error(), "InvalidSessionException");
    assert!(reply.message().starts_with("Session ") && reply.message().ends_with(" has expired"));
    // Gone for good, and its slot is free again.
    let reply = send(
        address,
        &json!({"SessionToken": token, "StartTransaction": {}}),
    )
    .await;
    assert_eq!(reply.error(), "InvalidSessionException");
    let health = http(address, "GET", "/health", &[], b"").await.json();
    assert_eq!(health["sessions"], 0);
    server.shutdown().await;
}
