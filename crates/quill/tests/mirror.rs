//! `quill mirror` against a real `quill serve`: it follows a ledger under write load and
//! converges (its QLDB digest is the ledger's), and a mirror reading through a tampering proxy
//! detects the altered block and stays at its last verified checkpoint; a mirror acting as a
//! witness cosigns the log's checkpoints and halts when shown a split view.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::Listening;
use quill_tlog::keys::NoteSigner;
use quill_tlog::witness::AddCheckpoint;
use quill_verify::tlog::{verify_cosigned_checkpoint, Checkpoint, Note, Policy};
use quill_verify::Hash;

fn quill(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("quill runs");
    assert!(
        output.status.success(),
        "quill {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn get(process: &Listening, path: &str) -> Vec<u8> {
    let (status, _, body) = process.request("GET", path, b"").expect("it answers");
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn status(mirror: &Listening) -> serde_json::Value {
    serde_json::from_slice(&get(mirror, "/mirror/status")).unwrap()
}

fn checkpoint_size(note: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(note);
    text.lines().nth(1).unwrap().parse().unwrap()
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A keep-alive HTTP proxy that flips a byte of the block hash of leaf `tamper` in any entry
/// bundle holding it (`u64::MAX`: none).
fn tampering_proxy(upstream: String, tamper: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let (upstream, tamper) = (upstream.clone(), tamper.clone());
            std::thread::spawn(move || serve_client(client, &upstream, &tamper));
        }
    });
    address
}

fn serve_client(mut client: TcpStream, upstream: &str, tamper: &AtomicU64) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            match client.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let Ok(mut server) = TcpStream::connect(upstream) else {
            return;
        };
        write!(
            server,
            "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = Vec::new();
        server.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let status_line = String::from_utf8_lossy(&response[..split])
            .lines()
            .next()
            .unwrap()
            .to_owned();
        let mut body = response[split + 4..].to_vec();
        if let Some(tile) = path
            .split_once("/tile/entries/")
            .map(|(_, rest)| rest.split(".p/").next().unwrap().replace('x', ""))
        {
            let first = tile.replace('/', "").parse::<u64>().unwrap() * 256;
            let target = tamper.load(Ordering::SeqCst);
            let mut offset = 0;
            let mut index = first;
            while offset < body.len() {
                let len = u16::from_be_bytes([body[offset], body[offset + 1]]) as usize;
                if index == target {
                    body[offset + 2 + 22] ^= 1;
                }
                offset += 2 + len;
                index += 1;
            }
        }
        let reply = format!("{status_line}\r\ncontent-length: {}\r\n\r\n", body.len());
        if client.write_all(reply.as_bytes()).is_err() || client.write_all(&body).is_err() {
            return;
        }
    }
}

fn start_mirror(dir: &Path, name: &str, from: &str, policy: &str) -> Listening {
    let data = dir.join(name);
    Listening::start(&[
        "mirror",
        "--from",
        &format!("http://{from}"),
        "--ledger",
        "shop",
        "--data-dir",
        data.to_str().unwrap(),
        "--policy",
        policy,
        "--interval",
        "100ms",
        "--listen",
        "127.0.0.1:0",
    ])
}

#[test]
fn mirrors_converge_under_load_and_detect_a_tampered_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = path("data");
    quill(&["ledger", "create", "shop", "--data-dir", &data]);
    quill(&[
        "shell",
        "--data-dir",
        &data,
        "--ledger",
        "shop",
        "-e",
        "CREATE TABLE Item;",
    ]);
    let vkey = String::from_utf8(quill(&["log-key", "--data-dir", &data]).stdout).unwrap();
    std::fs::write(path("policy"), format!("log {vkey}quorum none\n")).unwrap();
    let server = Listening::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--checkpoint-interval",
        "50ms",
        "--public-log",
        "--data-dir",
        &data,
    ]);
    let tamper = Arc::new(AtomicU64::new(u64::MAX));
    let proxy = tampering_proxy(server.address.clone(), tamper.clone());
    let honest = start_mirror(dir.path(), "honest", &server.address, &path("policy"));
    let misled = start_mirror(dir.path(), "misled", &proxy, &path("policy"));

    // Write load: the honest mirror advances while it goes on, then converges.
    let endpoint = format!("http://{}", server.address);
    let insert = |n: usize| {
        let statements: String = (0..5)
            .map(|i| format!("INSERT INTO Item {{'n': {n}, 'i': {i}}};"))
            .collect();
        quill(&[
            "shell",
            "--endpoint",
            &endpoint,
            "--ledger",
            "shop",
            "-e",
            &statements,
        ]);
    };
    let mut sizes_seen = Vec::new();
    for n in 0..8 {
        insert(n);
        sizes_seen.push(status(&honest)["size"].as_u64().unwrap());
    }
    let upstream_size = |at_least: u64| {
        let mut size = 0;
        wait("the upstream checkpoint", || {
            size = checkpoint_size(&get(&server, "/ledgers/shop/log/checkpoint"));
            size >= at_least
        });
        size
    };
    let size = upstream_size(2 + 8 * 5);
    assert_eq!(size, 42, "genesis, CREATE TABLE, 40 inserts");
    for mirror in [&honest, &misled] {
        wait("a mirror to converge", || status(mirror)["size"] == size);
    }
    assert!(
        sizes_seen.iter().any(|s| *s > 0 && *s < size),
        "the mirror followed during the load: {sizes_seen:?}"
    );
    assert_eq!(
        get(&honest, "/ledgers/shop/log/checkpoint"),
        get(&server, "/ledgers/shop/log/checkpoint")
    );
    // Its proof bundles check out offline like the upstream's.
    std::fs::write(
        path("mirror.tlog-proof"),
        get(&honest, "/ledgers/shop/log/proof/bundle?index=7"),
    )
    .unwrap();
    quill(&[
        "verify-proof",
        &path("mirror.tlog-proof"),
        "--policy",
        &path("policy"),
    ]);

    // The proxy now alters block 43 (the second of the next writes).
    tamper.store(size + 1, Ordering::SeqCst);
    insert(8);
    let grown = upstream_size(size + 5);
    wait("the honest mirror to follow", || {
        status(&honest)["size"] == grown
    });
    wait("the misled mirror to halt", || {
        !status(&misled)["halted"].is_null()
    });
    // It stopped at its last verified checkpoint: all of the good blocks it was shown, and
    // never the altered one (a checkpoint of size 43, block 42 only, may have come first).
    let halted = status(&misled);
    let stopped = halted["size"].as_u64().unwrap();
    assert!((size..=size + 1).contains(&stopped), "{halted}");
    let why = halted["halted"].as_str().unwrap();
    assert!(why.contains(&format!("block {}", size + 1)), "{why}");
    assert!(why.contains("blockHash"), "{why}");
    assert_eq!(
        checkpoint_size(&get(&misled, "/ledgers/shop/log/checkpoint")),
        stopped
    );

    // The honest copy's QLDB digest is the ledger's.
    let digest = status(&honest)["qldbDigest"].as_str().unwrap().to_owned();
    drop(server);
    let ledger_digest =
        String::from_utf8(quill(&["digest", "--data-dir", &data, "--ledger", "shop"]).stdout)
            .unwrap();
    assert!(
        ledger_digest.contains(&digest),
        "{ledger_digest} vs {digest}"
    );
}

/// `quill witness keygen`: the key file and its verifier key.
fn witness_key(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key")).to_str().unwrap().to_owned();
    let name = format!("{name}.example");
    let vkey = quill(&["witness", "keygen", "--name", &name, "--key", &key]).stdout;
    (key, String::from_utf8(vkey).unwrap().trim().to_owned())
}

#[test]
fn a_mirror_is_a_witness_that_cosigns_only_what_its_copy_agrees_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = path("data");
    quill(&["ledger", "create", "shop", "--data-dir", &data]);
    let vkey = String::from_utf8(quill(&["log-key", "--data-dir", &data]).stdout).unwrap();
    std::fs::write(path("logs"), format!("log {vkey}")).unwrap();
    let (w1_key, w1_vkey) = witness_key(dir.path(), "w1");
    let w1 = Listening::start(&[
        "witness",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--key",
        &w1_key,
        "--logs",
        &path("logs"),
        "--state-dir",
        &path("w1-state"),
    ]);
    let (mirror_key, mirror_vkey) = witness_key(dir.path(), "mirror");
    // Both must cosign, so every checkpoint the mirror advances to went through its own
    // witness check first.
    let quorum = "group both 2 w1 mirror\nquorum both\n";
    std::fs::write(
        path("follow.policy"),
        format!("log {vkey}witness w1 {w1_vkey}\nwitness mirror {mirror_vkey}\n{quorum}"),
    )
    .unwrap();
    // The mirror starts first (the server's policy needs its address), following a port the
    // server will listen on.
    let server_address = {
        let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
        reserved.local_addr().unwrap().to_string()
    };
    let mirror = Listening::start(&[
        "mirror",
        "--from",
        &format!("http://{server_address}"),
        "--ledger",
        "shop",
        "--data-dir",
        &path("mirror"),
        "--policy",
        &path("follow.policy"),
        "--interval",
        "50ms",
        "--listen",
        "127.0.0.1:0",
        "--witness-key",
        &mirror_key,
    ]);
    std::fs::write(
        path("serve.policy"),
        format!(
            "log {vkey}witness w1 {w1_vkey} http://{}\nwitness mirror {mirror_vkey} http://{}\n{quorum}",
            w1.address, mirror.address
        ),
    )
    .unwrap();
    let server = Listening::start(&[
        "serve",
        "--listen",
        &server_address,
        "--checkpoint-interval",
        "50ms",
        "--public-log",
        "--witness-policy",
        &path("serve.policy"),
        "--data-dir",
        &data,
    ]);
    let endpoint = format!("http://{}", server.address);
    quill(&[
        "shell",
        "--endpoint",
        &endpoint,
        "--ledger",
        "shop",
        "-e",
        "CREATE TABLE Item; INSERT INTO Item {'n': 1}; INSERT INTO Item {'n': 2};",
    ]);
    wait("the mirror to follow its own cosignatures", || {
        status(&mirror)["size"] == 4
    });
    let served = String::from_utf8(get(&server, "/ledgers/shop/log/checkpoint")).unwrap();
    let policy = Policy::parse(&std::fs::read_to_string(path("serve.policy")).unwrap()).unwrap();
    let verified = verify_cosigned_checkpoint(&served, &policy).unwrap();
    assert_eq!(verified.checkpoint.size, 4);
    assert!(
        verified.cosigned.iter().any(|(name, _)| name == "mirror"),
        "{served}"
    );

    // The operator (who holds the log key) shows the mirror another tree of the size it
    // holds: the mirror refuses to cosign it and halts, naming the split view.
    let log_key = NoteSigner::read_file(&dir.path().join("data/log-key"))
        .unwrap()
        .with_name("localhost/quill/shop")
        .unwrap();
    let text = Checkpoint {
        origin: "localhost/quill/shop".into(),
        size: 4,
        root: Hash([9; 32]),
        extensions: Vec::new(),
    }
    .to_text();
    let split = AddCheckpoint {
        old_size: 0,
        proof: Vec::new(),
        note: Note {
            signatures: vec![log_key.sign(&text)],
            text,
        }
        .to_text(),
    };
    let (code, _, body) = mirror
        .request("POST", "/add-checkpoint", split.to_body().as_bytes())
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("split view"), "{body}");
    let halted = status(&mirror);
    assert!(
        halted["halted"].as_str().unwrap().contains("split view"),
        "{halted}"
    );
    assert_eq!(
        halted["size"], 4,
        "the copy stays at its last verified size"
    );
}
