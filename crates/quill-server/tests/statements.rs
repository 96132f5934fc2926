//! Statements end to end through quill-partiql: paging, OCC conflicts, results as Ion binary.

mod support;

use base64::Engine as _;
use ion_rs::Element;
use quill_verify::CommitDigest;
use serde_json::{json, Value};
use support::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct Tx {
    token: String,
    id: String,
    digest: CommitDigest,
}

async fn begin(address: std::net::SocketAddr, token: &str) -> Tx {
    let id = start_transaction(address, token).await;
    Tx {
        token: token.to_string(),
        digest: CommitDigest::new(&id),
        id,
    }
}

async fn execute(
    address: std::net::SocketAddr,
    tx: &mut Tx,
    statement: &str,
    parameters: &[&str],
) -> Reply {
    let elements: Vec<Element> = parameters
        .iter()
        .map(|p| Element::read_one(*p).unwrap())
        .collect();
    let holders: Vec<Value> = elements
        .iter()
        .map(|e| json!({"IonText": e.to_string()}))
        .collect();
    tx.digest.add_statement(statement, &elements);
    send(
        address,
        &json!({"SessionToken": tx.token, "ExecuteStatement":
        {"TransactionId": tx.id, "Statement": statement, "Parameters": holders}}),
    )
    .await
}

async fn commit(address: std::net::SocketAddr, tx: &Tx) -> Reply {
    send(
        address,
        &json!({"SessionToken": tx.token, "CommitTransaction":
        {"TransactionId": tx.id, "CommitDigest": b64(tx.digest.value().as_bytes())}}),
    )
    .await
}

fn decode_values(page: &Value) -> Vec<Element> {
    page["Values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v["IonBinary"].as_str().unwrap())
                .unwrap();
            assert!(
                bytes.starts_with(&[0xE0, 0x01, 0x00, 0xEA]),
                "complete Ion binary stream"
            );
            Element::read_one(bytes).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn results_are_paged_and_tokens_die_with_the_transaction() {
    let server = start(|config| config.limits.page_values_max = 3).await;
    let address = server.address;
    assert_eq!(create_ledger(address, "books").await.status, 200);
    let token = start_session(address, "books").await;
    let mut tx = begin(address, &token).await;
    let reply = execute(address, &mut tx, "CREATE TABLE Book", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    for n in 0..7 {
        let reply = execute(
            address,
            &mut tx,
            "INSERT INTO Book ?",
            &[&format!("{{n: {n}}}")],
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.message());
    }
    assert_eq!(commit(address, &tx).await.status, 200);

    let mut tx = begin(address, &token).await;
    let reply = execute(address, &mut tx, "SELECT * FROM Book", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let first = &reply.json()["ExecuteStatement"]["FirstPage"];
    let mut values = decode_values(first);
    assert_eq!(values.len(), 3);
    let mut next = first["NextPageToken"].as_str().map(str::to_string);
    let mut pages = 1;
    while let Some(page_token) = next {
        let reply = send(
            address,
            &json!({"SessionToken": token, "FetchPage":
            {"TransactionId": tx.id, "NextPageToken": page_token}}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.message());
        let page = &reply.json()["FetchPage"]["Page"];
        values.extend(decode_values(page));
        next = page["NextPageToken"].as_str().map(str::to_string);
        pages += 1;
        assert!(pages <= 3);
    }
    assert_eq!(values.len(), 7);

    // A statement error leaves the transaction open; the digest still counts it.
    let reply = execute(address, &mut tx, "SELECT * FROM NoSuchTable", &[]).await;
    assert_eq!(reply.error(), "BadRequestException");
    let reply = execute(address, &mut tx, "SELECT * FROM Book", &[]).await;
    let leftover = reply.json()["ExecuteStatement"]["FirstPage"]["NextPageToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(commit(address, &tx).await.status, 200);
    let reply = send(
        address,
        &json!({"SessionToken": token, "FetchPage":
        {"TransactionId": tx.id, "NextPageToken": leftover}}),
    )
    .await;
    assert_eq!(
        reply.error(),
        "BadRequestException",
        "FetchPage after commit"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn occ_conflict_ends_the_transaction_not_the_session() {
    let server = start(|_| {}).await;
    let address = server.address;
    assert_eq!(create_ledger(address, "cars").await.status, 200);
    let first = start_session(address, "cars").await;
    let second = start_session(address, "cars").await;
    let mut setup = begin(address, &first).await;
    assert_eq!(
        execute(address, &mut setup, "CREATE TABLE Car", &[])
            .await
            .status,
        200
    );
    assert_eq!(commit(address, &setup).await.status, 200);

    let mut loser = begin(address, &first).await;
    assert_eq!(
        execute(address, &mut loser, "SELECT * FROM Car", &[])
            .await
            .status,
        200
    );
    let mut winner = begin(address, &second).await;
    assert_eq!(
        execute(address, &mut winner, "INSERT INTO Car ?", &["{vin: \"1\"}"])
            .await
            .status,
        200
    );
    assert_eq!(commit(address, &winner).await.status, 200);
    assert_eq!(
        execute(address, &mut loser, "INSERT INTO Car ?", &["{vin: \"2\"}"])
            .await
            .status,
        200
    );
    let reply = commit(address, &loser).await;
    assert_eq!(reply.error(), "OccConflictException");

    // Drivers retry on the same session without an abort.
    let mut retry = begin(address, &first).await;
    assert_eq!(
        execute(address, &mut retry, "INSERT INTO Car ?", &["{vin: \"2\"}"])
            .await
            .status,
        200
    );
    assert_eq!(commit(address, &retry).await.status, 200);

    let metrics = String::from_utf8(http(address, "GET", "/metrics", &[], b"").await.body).unwrap();
    assert!(metrics.contains("quill_occ_conflicts_total 1"), "{metrics}");
    assert!(metrics.contains("quill_commits_total 3"), "{metrics}");
    server.shutdown().await;
}

/// A server with `budget` result bytes per transaction, one value per page, and a table `Big`
/// of three documents of about 15 KB each (`n` 0, 1, 2); returns it and a session token.
async fn big_documents(budget: usize) -> (TestServer, String) {
    let server = start(|config| {
        config.limits.transaction_result_bytes_max = budget;
        config.limits.page_values_max = 1;
    })
    .await;
    let address = server.address;
    assert_eq!(create_ledger(address, "books").await.status, 200);
    let token = start_session(address, "books").await;
    let mut tx = begin(address, &token).await;
    assert_eq!(
        execute(address, &mut tx, "CREATE TABLE Big", &[])
            .await
            .status,
        200
    );
    for n in 0..3 {
        let document = format!("{{n: {n}, blob: \"{}\"}}", "x".repeat(15_000));
        let reply = execute(address, &mut tx, "INSERT INTO Big ?", &[&document]).await;
        assert_eq!(reply.status, 200, "{}", reply.message());
    }
    assert_eq!(commit(address, &tx).await.status, 200);
    (server, token)
}

#[tokio::test]
async fn results_are_bounded_in_bytes_per_transaction() {
    let (server, token) = big_documents(40_000).await;
    let address = server.address;
    let mut tx = begin(address, &token).await;
    let reply = execute(address, &mut tx, "SELECT * FROM Big", &[]).await;
    assert_eq!(reply.error(), "LimitExceededException");
    assert!(
        reply.message().contains("result budget of 40000 bytes")
            && reply.message().contains("--result-max-bytes"),
        "{}",
        reply.message()
    );
    // The transaction is still usable, and results under the budget are served.
    let reply = execute(address, &mut tx, "SELECT * FROM Big WHERE n < 2", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let unread = reply.json()["ExecuteStatement"]["FirstPage"]["NextPageToken"]
        .as_str()
        .unwrap()
        .to_string();
    // Unread pages count: 15 KB still held + 30 KB more is over the budget…
    let reply = execute(address, &mut tx, "SELECT * FROM Big WHERE n > 0", &[]).await;
    assert_eq!(reply.error(), "LimitExceededException");
    // …until they are fetched.
    let reply = send(
        address,
        &json!({"SessionToken": token, "FetchPage":
        {"TransactionId": tx.id, "NextPageToken": unread}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let reply = execute(address, &mut tx, "SELECT * FROM Big WHERE n > 0", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    assert_eq!(commit(address, &tx).await.status, 200);
    server.shutdown().await;

    // With a larger budget the whole table is one result.
    let (server, token) = big_documents(1 << 20).await;
    let mut tx = begin(server.address, &token).await;
    let reply = execute(server.address, &mut tx, "SELECT * FROM Big", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    server.shutdown().await;
}

/// A statement run on the async worker reads at most `INLINE_READS_MAX` values; a scan that
/// reads more is undone and run again on a blocking thread. Its result, its `ReadIOs` and the
/// CommitDigest (the statement folded in once) must be those of a single run.
#[tokio::test]
async fn a_scan_past_the_inline_read_limit_runs_once_on_a_blocking_thread() {
    let server = start(|_| {}).await;
    let address = server.address;
    assert_eq!(create_ledger(address, "books").await.status, 200);
    let token = start_session(address, "books").await;
    let documents = quill_server::session::INLINE_READS_MAX + 36;
    let mut tx = begin(address, &token).await;
    assert_eq!(
        execute(address, &mut tx, "CREATE TABLE Book", &[])
            .await
            .status,
        200
    );
    assert_eq!(commit(address, &tx).await.status, 200);
    let numbers: Vec<u64> = (0..documents).collect();
    // QLDB's limit: 40 documents per transaction.
    for chunk in numbers.chunks(40) {
        let mut tx = begin(address, &token).await;
        let bag: Vec<String> = chunk.iter().map(|n| format!("{{n: {n}}}")).collect();
        let insert = format!("INSERT INTO Book << {} >>", bag.join(", "));
        let reply = execute(address, &mut tx, &insert, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.message());
        assert_eq!(commit(address, &tx).await.status, 200);
    }

    let mut tx = begin(address, &token).await;
    // A write first: undoing the scan must not undo it.
    let reply = execute(address, &mut tx, "INSERT INTO Book ?", &["{n: -1}"]).await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let reply = execute(
        address,
        &mut tx,
        "SELECT VALUE n FROM Book WHERE n >= 0",
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.message());
    let result = &reply.json()["ExecuteStatement"];
    // Every stored document (and the transaction's own one), read once.
    assert_eq!(result["ConsumedIOs"]["ReadIOs"], documents + 1);
    let mut values = decode_values(&result["FirstPage"]);
    let mut next = result["FirstPage"]["NextPageToken"]
        .as_str()
        .map(str::to_string);
    while let Some(page_token) = next {
        let reply = send(
            address,
            &json!({"SessionToken": token, "FetchPage":
            {"TransactionId": tx.id, "NextPageToken": page_token}}),
        )
        .await;
        let page = &reply.json()["FetchPage"]["Page"];
        values.extend(decode_values(page));
        next = page["NextPageToken"].as_str().map(str::to_string);
    }
    let mut numbers: Vec<u64> = values.iter().map(|v| v.as_i64().unwrap() as u64).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..documents).collect::<Vec<_>>());
    let reply = commit(address, &tx).await;
    assert_eq!(reply.status, 200, "{}", reply.message());

    let mut tx = begin(address, &token).await;
    let reply = execute(
        address,
        &mut tx,
        "SELECT VALUE n FROM Book WHERE n < 0",
        &[],
    )
    .await;
    assert_eq!(
        decode_values(&reply.json()["ExecuteStatement"]["FirstPage"]).len(),
        1
    );
    assert_eq!(commit(address, &tx).await.status, 200);
}

/// Commits awaited on the async workers, many at once (so the committer threads batch them):
/// each is acknowledged with its own transaction id and every acknowledged write is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_each_acknowledged_and_visible() {
    let server = start(|_| {}).await;
    let address = server.address;
    assert_eq!(create_ledger(address, "books").await.status, 200);
    let token = start_session(address, "books").await;
    let mut tx = begin(address, &token).await;
    assert_eq!(
        execute(address, &mut tx, "CREATE TABLE Book", &[])
            .await
            .status,
        200
    );
    assert_eq!(commit(address, &tx).await.status, 200);

    const SESSIONS: usize = 16;
    const EACH: usize = 10;
    let writers: Vec<_> = (0..SESSIONS)
        .map(|writer| {
            tokio::spawn(async move {
                let token = start_session(address, "books").await;
                for n in 0..EACH {
                    let mut tx = begin(address, &token).await;
                    let document = format!("{{writer: {writer}, n: {n}}}");
                    let reply = execute(address, &mut tx, "INSERT INTO Book ?", &[&document]).await;
                    assert_eq!(reply.status, 200, "{}", reply.message());
                    let reply = commit(address, &tx).await;
                    assert_eq!(reply.status, 200, "{}", reply.message());
                    assert_eq!(reply.json()["CommitTransaction"]["TransactionId"], tx.id);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut tx = begin(address, &token).await;
    let reply = execute(address, &mut tx, "SELECT COUNT(*) AS c FROM Book", &[]).await;
    let values = decode_values(&reply.json()["ExecuteStatement"]["FirstPage"]);
    assert_eq!(
        values,
        [Element::read_one(format!("{{c: {}}}", SESSIONS * EACH)).unwrap()]
    );
    assert_eq!(commit(address, &tx).await.status, 200);
}
