//! The NATS sink against Debian's real `nats-server` (scripts/setup.sh installs it), started
//! here on loopback with authentication: user and password, then a token with TLS (the
//! self-signed `localhost` fixture of tests/tls.rs, which also names 127.0.0.1).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_server::nats::{NatsAuth, NatsSink, NatsTarget};
use quill_stream::record::{control_record, ControlType};
use quill_stream::{
    Cursor, Sink, StreamConfig, StreamHandle, StreamRecord, StreamStatus, Worker, WorkerOptions,
};

const SUBJECT: &str = "quill.auth";
const ARN: &str = "arn:aws:qldb:us-east-1:000000000000:stream/shop/IiPT4brpZCqCq3f4MTHbYy";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn nats_server_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|path| path.exists())
        .expect("nats-server is not installed: run scripts/setup.sh nats")
}

/// A `nats-server -js` on a free loopback port, stopped when dropped.
struct NatsServer {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start(extra: &[&str]) -> NatsServer {
        let store = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        NatsServer {
            child,
            port,
            _store: store,
        }
    }

    fn target(&self, tls: bool, auth: Option<NatsAuth>, ca_file: Option<&Path>) -> NatsTarget {
        NatsTarget {
            tls,
            auth,
            ca_file: ca_file.map(Path::to_path_buf),
            ..NatsTarget::new(format!("127.0.0.1:{}", self.port), SUBJECT.into())
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JetStream context on `server`, connected through `options`.
async fn jetstream_context(
    server: &NatsServer,
    options: async_nats::ConnectOptions,
) -> jetstream::Context {
    let client = options
        .connect(format!("127.0.0.1:{}", server.port))
        .await
        .unwrap();
    jetstream::new(client)
}

/// Creates the JetStream stream capturing [`SUBJECT`] through `options`; returns its context.
async fn capture(server: &NatsServer, options: async_nats::ConnectOptions) -> jetstream::Context {
    let context = jetstream_context(server, options).await;
    context
        .get_or_create_stream(jetstream::stream::Config {
            name: "AUTH".into(),
            subjects: vec![SUBJECT.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    context
}

async fn stored(context: &jetstream::Context) -> u64 {
    let mut stream = context.get_stream("AUTH").await.unwrap();
    stream.info().await.unwrap().state.messages
}

fn records() -> Vec<StreamRecord> {
    vec![
        control_record(ARN, "IiPT4brpZCqCq3f4MTHbYy", ControlType::Created).unwrap(),
        control_record(ARN, "IiPT4brpZCqCq3f4MTHbYy", ControlType::Completed).unwrap(),
    ]
}

#[tokio::test]
async fn a_server_requiring_a_user_and_password_takes_them_from_the_target() {
    let server = NatsServer::start(&["--user", "quill", "--pass", "s3cret"]);
    let context = capture(
        &server,
        async_nats::ConnectOptions::with_user_and_password("quill".into(), "s3cret".into()),
    )
    .await;

    let good = NatsAuth::UserPassword {
        user: "quill".into(),
        password: "s3cret".into(),
    };
    NatsSink::new(server.target(false, Some(good), None))
        .deliver(&records())
        .await
        .unwrap();
    assert_eq!(stored(&context).await, 2);

    let wrong = NatsAuth::UserPassword {
        user: "quill".into(),
        password: "guess".into(),
    };
    for auth in [Some(wrong), None] {
        let error = NatsSink::new(server.target(false, auth, None))
            .deliver(&records())
            .await
            .unwrap_err();
        assert!(
            error.message.contains("cannot connect"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("guess"), "{}", error.message);
    }
}

#[tokio::test]
async fn a_tls_server_with_a_token_is_reached_trusting_the_ca_file() {
    let (cert, key) = (fixture("localhost.crt"), fixture("localhost.key"));
    let server = NatsServer::start(&[
        "--auth",
        "t0ken",
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ]);
    let context = capture(
        &server,
        async_nats::ConnectOptions::with_token("t0ken".into())
            .require_tls(true)
            .add_root_certificates(cert.clone()),
    )
    .await;

    let token = Some(NatsAuth::Token("t0ken".into()));
    NatsSink::new(server.target(true, token.clone(), Some(&cert)))
        .deliver(&records())
        .await
        .unwrap();
    assert_eq!(stored(&context).await, 2);

    // The self-signed certificate is not among the system's roots.
    let error = NatsSink::new(server.target(true, token, None))
        .deliver(&records())
        .await
        .unwrap_err();
    assert!(
        error.message.contains("cannot connect"),
        "{}",
        error.message
    );
}

/// A JetStream stream `LIMITED` capturing [`SUBJECT`] that takes at most `max_messages`
/// (-1: no limit), refusing more with an error acknowledgement rather than dropping old ones.
fn limited_stream(max_messages: i64) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: "LIMITED".into(),
        subjects: vec![SUBJECT.into()],
        max_messages,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// `(Quill-Record-Type, Nats-Msg-Id)` of every message in the stream `LIMITED`, in stream
/// order.
async fn stored_messages(context: &jetstream::Context) -> Vec<(String, String)> {
    let mut stream = context.get_stream("LIMITED").await.unwrap();
    let count = stream.info().await.unwrap().state.messages;
    let mut messages = Vec::new();
    for sequence in 1..=count {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let header = |name| message.headers.get(name).unwrap().as_str().to_owned();
        messages.push((header("Quill-Record-Type"), header("Nats-Msg-Id")));
    }
    messages
}

async fn stored_ids(context: &jetstream::Context) -> Vec<String> {
    let messages = stored_messages(context).await;
    messages.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test]
async fn every_acknowledgement_is_checked_and_a_duplicate_counts_as_delivered() {
    let server = NatsServer::start(&[]);
    let mut sink = NatsSink::new(server.target(false, None, None));
    let records = records();

    // No stream captures the subject yet: JetStream has no responder for the publish.
    let error = sink.deliver(&records).await.unwrap_err();
    assert!(
        error.message.contains("no JetStream stream captures"),
        "{}",
        error.message
    );

    // The stream takes the first record and refuses the second with an error acknowledgement.
    let context = jetstream_context(&server, async_nats::ConnectOptions::new()).await;
    context.create_stream(limited_stream(1)).await.unwrap();
    let error = sink.deliver(&records).await.unwrap_err();
    assert!(
        error.message.contains("maximum messages"),
        "{}",
        error.message
    );
    assert_eq!(stored_ids(&context).await.len(), 1);

    // Sent again once the stream has room: the first record is a duplicate JetStream drops
    // and acknowledges, which counts as delivered; nothing is stored twice.
    context.update_stream(limited_stream(-1)).await.unwrap();
    sink.deliver(&records).await.unwrap();
    let expected: Vec<String> = records.iter().map(|r| r.dedupe_key.clone()).collect();
    assert_eq!(stored_ids(&context).await, expected);
}

async fn wait_until(handle: &StreamHandle, what: &str, done: impl Fn(&StreamHandle) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(handle) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            handle.progress()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_refused_publish_impairs_the_stream_and_keeps_its_cursor_until_jetstream_takes_it() {
    let server = NatsServer::start(&[]);
    let context = jetstream_context(&server, async_nats::ConnectOptions::new()).await;
    // Room for CREATED and the first block's two records (its summary and its one revision):
    // the first delivery of blocks stores those two, then JetStream refuses the third.
    context.create_stream(limited_stream(3)).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ledger =
        Ledger::create(&dir.path().join("ledger"), "shop", LedgerOptions::default()).unwrap();
    for n in 0..3 {
        let document = Element::read_one(format!("{{n: {n}}}").as_bytes()).unwrap();
        ledger
            .transact(|tx| {
                if n == 0 {
                    tx.create_table("Vehicle", None)?;
                }
                tx.insert("Vehicle", document.clone())
            })
            .unwrap();
    }
    let tip = ledger.digest().tip.sequence_no;

    let cursor = Cursor::new(dir.path().join("cursor.json"));
    let stream_id = "IiPT4brpZCqCq3f4MTHbYy";
    let (worker, handle) = Worker::new(
        StreamConfig {
            stream_id: stream_id.into(),
            stream_arn: ARN.into(),
            inclusive_start_millis: 0,
            exclusive_end_millis: None,
        },
        ledger.clone(),
        cursor.clone(),
        Box::new(NatsSink::new(server.target(false, None, None))),
        WorkerOptions {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..WorkerOptions::default()
        },
    );
    let task = tokio::spawn(worker.run());

    wait_until(&handle, "IMPAIRED", |h| {
        h.progress().status == StreamStatus::Impaired
    })
    .await;
    // Retried, and refused each time, without moving past any block.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let progress = handle.progress();
    assert_eq!(progress.status, StreamStatus::Impaired);
    let error = progress.last_error.unwrap();
    assert!(error.contains("maximum messages"), "{error}");
    assert_eq!(progress.last_delivered_block, None);
    let position = cursor.load().unwrap();
    assert!(position.created_delivered);
    assert_eq!(position.last_block, None);
    assert_eq!(stored_ids(&context).await.len(), 3);

    context.update_stream(limited_stream(-1)).await.unwrap();
    wait_until(&handle, "catch-up", |h| {
        let p = h.progress();
        p.status == StreamStatus::Active && p.last_delivered_block == Some(tip)
    })
    .await;
    handle.cancel();
    assert_eq!(task.await.unwrap().unwrap(), StreamStatus::Canceled);
    assert_eq!(cursor.load().unwrap().last_block, Some(tip));

    // The two records stored before the refusal were sent again and dropped by JetStream as
    // duplicates, yet counted as delivered: every record is stored once, in block order.
    let messages = stored_messages(&context).await;
    assert_eq!(
        messages.len() as u64,
        handle.progress().records_delivered,
        "{messages:?}"
    );
    assert_eq!(
        messages[0],
        ("CONTROL".to_owned(), format!("{stream_id}/CREATED"))
    );
    let summaries: Vec<u64> = messages
        .iter()
        .filter(|(record_type, _)| record_type == "BLOCK_SUMMARY")
        .map(|(_, id)| id.rsplit_once('/').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(summaries, (0..=tip).collect::<Vec<_>>());
    let ids: std::collections::HashSet<&String> = messages.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), messages.len(), "{messages:?}");
}
