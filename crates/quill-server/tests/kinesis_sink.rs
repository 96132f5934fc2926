//! The Kinesis sink against an in-test HTTP endpoint that records each `PutRecords` and answers
//! with canned Kinesis replies: request shape, SigV4 scope, KPL aggregation, partial failures
//! and error causes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_server::kinesis::{
    AwsCredentials, KinesisClient, KinesisEndpoint, KinesisSink, KinesisTarget,
};
use quill_stream::{kpl, ErrorCause, Sink, StreamRecord};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

struct Request {
    headers: Vec<(String, String)>,
    body: Value,
}

/// Reads one request from `stream`, logs it and answers `status` with `body`.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    status: u16,
    body: &str,
    log: &Mutex<Vec<Request>>,
) {
    let mut reader = BufReader::new(stream);
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let mut request = vec![0; length];
    reader.read_exact(&mut request).await.unwrap();
    log.lock().unwrap().push(Request {
        headers,
        body: serde_json::from_slice(&request).unwrap(),
    });
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = reader.get_mut();
    stream.write_all(reply.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
}

/// Serves one canned reply per connection, in order, over plain HTTP or (with `tls`) HTTPS;
/// records the requests. Returns the endpoint's URL.
async fn serve(
    replies: Vec<(u16, String)>,
    tls: Option<TlsAcceptor>,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = match tls {
        // The fixture's certificate names localhost.
        Some(_) => format!("https://localhost:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for (status, body) in replies {
            let (stream, _) = listener.accept().await.unwrap();
            match &tls {
                None => answer(stream, status, &body, &log).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => answer(stream, status, &body, &log).await,
                    // A client that does not trust the certificate hangs up.
                    Err(_) => continue,
                },
            }
        }
    });
    (url, seen)
}

async fn endpoint(replies: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Request>>>) {
    serve(replies, None).await
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A TLS server with the self-signed `localhost` fixture (see tests/tls.rs).
fn tls_acceptor() -> TlsAcceptor {
    let pem = std::fs::read(fixture("localhost.crt")).unwrap();
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let pem = std::fs::read(fixture("localhost.key")).unwrap();
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A target at `url`; an `https` one trusts the fixture certificate as `AWS_CA_BUNDLE` would.
fn target(url: String, aggregation: bool) -> KinesisTarget {
    KinesisTarget {
        client: KinesisClient {
            endpoint: KinesisEndpoint::parse(&url, Some(&fixture("localhost.crt"))).unwrap(),
            region: "eu-west-1".into(),
            credentials: AwsCredentials {
                access_key_id: "AKIDSTREAM".into(),
                secret_access_key: "secret".into(),
                session_token: None,
            },
        },
        stream_arn: "arn:aws:kinesis:eu-west-1:000000000000:stream/journal".into(),
        aggregation,
        partition_key: "STRAND".into(),
    }
}

/// The records of a real ledger's blocks.
fn records() -> (tempfile::TempDir, Vec<StreamRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "kinesis", LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| {
            tx.create_table("T", None)?;
            tx.record_statement("INSERT INTO T ?", &[])?;
            tx.insert("T", Element::read_one(&b"{a: 1}"[..]).unwrap())?;
            tx.insert("T", Element::read_one(&b"{a: 2}"[..]).unwrap())
        })
        .unwrap();
    let tip = ledger.digest().tip.sequence_no;
    let arn = "arn:aws:qldb:eu-west-1:000000000000:stream/kinesis/IiPT4brpZCqCq3f4MTHbYy";
    let records = (0..=tip)
        .flat_map(|seq| {
            quill_stream::record::block_records(arn, &ledger.block(seq).unwrap()).unwrap()
        })
        .collect();
    (dir, records)
}

fn ok_reply(n: usize) -> String {
    let results: Vec<String> = (0..n)
        .map(|i| format!("{{\"SequenceNumber\":\"{i}\",\"ShardId\":\"shardId-000000000000\"}}"))
        .collect();
    format!(
        "{{\"FailedRecordCount\":0,\"Records\":[{}]}}",
        results.join(",")
    )
}

fn datas(request: &Request) -> Vec<Vec<u8>> {
    request.body["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["PartitionKey"], "STRAND");
            base64::engine::general_purpose::STANDARD
                .decode(r["Data"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn aggregated_put_records_carry_every_record_in_order_and_signed_for_kinesis() {
    let (_dir, records) = records();
    assert!(records.len() > 2);
    let (url, seen) = endpoint(vec![(200, ok_reply(1))]).await;
    let mut sink = KinesisSink::new(target(url, true));
    sink.deliver(&records).await.unwrap();

    let seen = seen.lock().unwrap();
    let request = &seen[0];
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(header("x-amz-target"), "Kinesis_20131202.PutRecords");
    assert!(header("authorization").contains("/eu-west-1/kinesis/aws4_request"));
    assert_eq!(
        request.body["StreamARN"],
        "arn:aws:kinesis:eu-west-1:000000000000:stream/journal"
    );
    let payloads = datas(request);
    assert_eq!(payloads.len(), 1, "one aggregated Kinesis record");
    assert_eq!(payloads[0][..4], kpl::MAGIC);
    let inner = kpl::deaggregate(&payloads[0]);
    let expected: Vec<Vec<u8>> = records.iter().map(|r| r.ion.clone()).collect();
    assert_eq!(inner, expected);
}

#[tokio::test]
async fn without_aggregation_each_record_is_one_kinesis_record() {
    let (_dir, records) = records();
    let (url, seen) = endpoint(vec![(200, ok_reply(records.len()))]).await;
    let mut sink = KinesisSink::new(target(url, false));
    sink.deliver(&records).await.unwrap();
    let expected: Vec<Vec<u8>> = records.iter().map(|r| r.ion.clone()).collect();
    assert_eq!(datas(&seen.lock().unwrap()[0]), expected);
}

#[tokio::test]
async fn partial_failures_and_missing_streams_are_errors_the_worker_retries() {
    let (_dir, records) = records();
    let partial = "{\"FailedRecordCount\":1,\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"s\"},\
                   {\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"slow down\"}]}";
    let missing =
        "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream journal not found\"}";
    let (url, _) = endpoint(vec![(200, partial.into()), (400, missing.into())]).await;
    let mut sink = KinesisSink::new(target(url, false));
    let error = sink.deliver(&records[..2]).await.unwrap_err();
    assert_eq!(error.cause, None);
    assert!(
        error.message.contains("accepted 1 of 2"),
        "{}",
        error.message
    );
    let error = sink.deliver(&records[..2]).await.unwrap_err();
    assert_eq!(error.cause, Some(ErrorCause::KinesisStreamNotFound));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (_dir, records) = records();
    let mut sink = KinesisSink::new(target(url, true));
    let error = sink.deliver(&records).await.unwrap_err();
    assert_eq!(error.cause, None);
    assert!(
        error.message.contains("cannot reach Kinesis"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn https_endpoints_are_reached_over_tls_trusting_the_ca_bundle() {
    let (_dir, records) = records();
    let (url, seen) = serve(vec![(200, ok_reply(1))], Some(tls_acceptor())).await;
    let mut sink = KinesisSink::new(target(url.clone(), true));
    sink.deliver(&records).await.unwrap();
    {
        let seen = seen.lock().unwrap();
        let host = seen[0].headers.iter().find(|(n, _)| n == "host").unwrap();
        assert_eq!(host.1, url.trim_start_matches("https://"));
        let expected: Vec<Vec<u8>> = records.iter().map(|r| r.ion.clone()).collect();
        assert_eq!(kpl::deaggregate(&datas(&seen[0])[0]), expected);
    }

    // Without the bundle the self-signed certificate is not trusted: a transient error.
    let (url, _) = serve(vec![(200, ok_reply(1))], Some(tls_acceptor())).await;
    let mut untrusting = target(url.clone(), true);
    untrusting.client.endpoint = KinesisEndpoint::parse(&url, None).unwrap();
    let error = KinesisSink::new(untrusting)
        .deliver(&records)
        .await
        .unwrap_err();
    assert!(
        error.message.contains("cannot reach Kinesis"),
        "{}",
        error.message
    );
}
