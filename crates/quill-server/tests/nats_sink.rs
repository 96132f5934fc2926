//! The NATS sink against Debian's real `nats-server` (scripts/setup.sh installs it), started
//! here on loopback with authentication: user and password, then a token with TLS (the
//! self-signed `localhost` fixture of tests/tls.rs, which also names 127.0.0.1).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use quill_server::nats::{NatsAuth, NatsSink, NatsTarget};
use quill_stream::record::{control_record, ControlType};
use quill_stream::{Sink, StreamRecord};

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

/// Creates the JetStream stream capturing [`SUBJECT`] through `options`; returns its context.
async fn capture(server: &NatsServer, options: async_nats::ConnectOptions) -> jetstream::Context {
    let client = options
        .connect(format!("127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let context = jetstream::new(client);
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
