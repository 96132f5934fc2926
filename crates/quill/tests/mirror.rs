//! `quill mirror` against a real `quill serve`: it follows a ledger under write load and
//! converges (its QLDB digest is the ledger's, and queries through its read-only QLDB API
//! return the ledger's rows while writes are refused); mirrors reading through a tampering
//! proxy detect an altered leaf or an altered block and stay at their last verified state; a
//! mirror acting as a witness cosigns the log's checkpoints and halts when shown a split view;
//! a mirror serves its copy over HTTPS with `--tls-cert`.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod common;

use common::{
    quill, run_quill, shell, shell_ok, start_witness, wait_for, witness_key, write_log_only_policy,
    Listening,
};
use quill_tlog::keys::NoteSigner;
use quill_tlog::witness::AddCheckpoint;
use quill_verify::tlog::{verify_cosigned_checkpoint, Checkpoint, Note, Policy};
use quill_verify::Hash;

fn status(mirror: &Listening) -> serde_json::Value {
    serde_json::from_slice(&mirror.get_ok("/mirror/status")).unwrap()
}

/// What a tampering proxy alters (`u64::MAX`: nothing).
#[derive(Default)]
struct Tamper {
    /// The leaf whose block hash is flipped in any entry bundle holding it.
    leaf: AtomicU64,
    /// The block whose last payload byte is flipped in any journal block range holding it.
    block: AtomicU64,
}

impl Tamper {
    fn none() -> Arc<Tamper> {
        Arc::new(Tamper {
            leaf: AtomicU64::new(u64::MAX),
            block: AtomicU64::new(u64::MAX),
        })
    }
}

/// A keep-alive HTTP proxy that alters what `tamper` says.
fn tampering_proxy(upstream: String, tamper: Arc<Tamper>) -> String {
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

fn serve_client(mut client: TcpStream, upstream: &str, tamper: &Tamper) {
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
            let target = tamper.leaf.load(Ordering::SeqCst);
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
        if let Some(range) = path.split_once("/journal/blocks?from=") {
            let first: u64 = range.1.split('&').next().unwrap().parse().unwrap();
            let target = tamper.block.load(Ordering::SeqCst);
            // The strand id line, then a 4-byte length and the payload per block.
            let mut offset = body.iter().position(|b| *b == b'\n').unwrap() + 1;
            let mut index = first;
            while offset < body.len() {
                let len = u32::from_be_bytes(body[offset..offset + 4].try_into().unwrap()) as usize;
                if index == target {
                    body[offset + 4 + len - 1] ^= 1;
                }
                offset += 4 + len;
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

/// GetDigest through the control plane: the digest and its tip address.
fn digest(process: &Listening) -> (serde_json::Value, serde_json::Value) {
    let (code, _, body) = process
        .request("POST", "/ledgers/shop/digest", b"")
        .expect("it answers");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let mut digest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (digest["Digest"].take(), digest["DigestTipAddress"].take())
}

#[test]
fn mirrors_converge_under_load_serve_queries_and_detect_tampering() {
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
    write_log_only_policy(&data, &path("policy"));
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
    let leaf_tamper = Tamper::none();
    let leaf_proxy = tampering_proxy(server.address.clone(), leaf_tamper.clone());
    let block_tamper = Tamper::none();
    let block_proxy = tampering_proxy(server.address.clone(), block_tamper.clone());
    let honest = start_mirror(dir.path(), "honest", &server.address, &path("policy"));
    let misled = start_mirror(dir.path(), "misled", &leaf_proxy, &path("policy"));
    let misled_blocks = start_mirror(dir.path(), "misled-blocks", &block_proxy, &path("policy"));

    // Write load: the honest mirror advances while it goes on, then converges.
    let insert = |n: usize| {
        let statements: String = (0..5)
            .map(|i| format!("INSERT INTO Item {{'n': {n}, 'i': {i}}};"))
            .collect();
        shell_ok(&server.address, &statements);
    };
    let mut seen = Vec::new();
    for n in 0..8 {
        insert(n);
        let now = status(&honest);
        seen.push((
            now["size"].as_u64().unwrap(),
            now["blocks"].as_u64().unwrap(),
        ));
    }
    let size = server.checkpoint(2 + 8 * 5).1.size;
    assert_eq!(size, 42, "genesis, CREATE TABLE, 40 inserts");
    for mirror in [&honest, &misled, &misled_blocks] {
        wait_for("a mirror to converge", || {
            let now = status(mirror);
            now["size"] == size && now["blocks"] == size
        });
    }
    assert!(
        seen.iter().any(|(_, blocks)| *blocks > 0 && *blocks < size),
        "the mirror copied blocks during the load: {seen:?}"
    );
    assert!(
        seen.iter().all(|(size, blocks)| blocks <= size),
        "blocks never pass the verified log: {seen:?}"
    );
    assert_eq!(
        honest.get_ok("/ledgers/shop/log/checkpoint"),
        server.get_ok("/ledgers/shop/log/checkpoint")
    );
    // Its proof bundles check out offline like the upstream's.
    std::fs::write(
        path("mirror.tlog-proof"),
        honest.get_ok("/ledgers/shop/log/proof/bundle?index=7"),
    )
    .unwrap();
    quill(&[
        "verify-proof",
        &path("mirror.tlog-proof"),
        "--policy",
        &path("policy"),
    ]);

    // At the same tip, the copy answers queries, history and committed views included, as
    // the ledger does, and GetDigest with the same digest.
    let queries = "SELECT * FROM Item; SELECT * FROM _ql_committed_Item; \
                   SELECT h.metadata, h.data FROM history(Item) AS h;";
    let origin_rows = shell_ok(&server.address, queries);
    assert_eq!(shell_ok(&honest.address, queries), origin_rows);
    assert!(origin_rows.contains("n: 7"), "{origin_rows}");
    assert_eq!(digest(&honest), digest(&server));
    // Writes, DDL and control-plane changes are refused; the copy is unchanged.
    for write in [
        "INSERT INTO Item {'n': 99};",
        "UPDATE Item SET n = 0;",
        "CREATE TABLE Other;",
        "DELETE FROM Item;",
    ] {
        let refused = shell(&honest.address, write);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{write} ran");
        assert!(stderr.contains("read-only mirror"), "{write}: {stderr}");
    }
    let (code, _, body) = honest.request("DELETE", "/ledgers/shop", b"").unwrap();
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(shell_ok(&honest.address, queries), origin_rows);
    assert_eq!(status(&honest)["blocks"], size);

    // One proxy now alters the leaf of block 43 (the second of the next writes), the other
    // the block itself.
    leaf_tamper.leaf.store(size + 1, Ordering::SeqCst);
    block_tamper.block.store(size + 1, Ordering::SeqCst);
    insert(8);
    let grown = server.checkpoint(size + 5).1.size;
    wait_for("the honest mirror to follow", || {
        status(&honest)["blocks"] == grown
    });
    for mirror in [&misled, &misled_blocks] {
        wait_for("a misled mirror to halt", || {
            !status(mirror)["halted"].is_null()
        });
    }
    // The first stopped at its last verified checkpoint: all of the good blocks it was
    // shown, and never the altered one (a checkpoint of size 43, block 42 only, may have come
    // first).
    let halted = status(&misled);
    let stopped = halted["size"].as_u64().unwrap();
    assert!((size..=size + 1).contains(&stopped), "{halted}");
    let why = halted["halted"].as_str().unwrap();
    assert!(why.contains(&format!("block {}", size + 1)), "{why}");
    assert!(why.contains("blockHash"), "{why}");
    assert_eq!(misled.checkpoint(0).1.size, stopped);
    // The second verified the log but refused the altered block, naming it, and holds every
    // block before it: the copy stops there and still answers queries on it.
    let halted = status(&misled_blocks);
    let why = halted["halted"].as_str().unwrap();
    assert!(
        why.contains(&format!("sequenceNo:{}", size + 1)),
        "{halted}"
    );
    assert_eq!(halted["blocks"], size + 1, "{halted}");
    let copied = shell_ok(
        &misled_blocks.address,
        "SELECT VALUE n FROM Item WHERE n = 8;",
    );
    assert_eq!(copied.matches('8').count(), 1, "{copied}");

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

#[test]
fn a_mirror_is_a_witness_that_cosigns_only_what_its_copy_agrees_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = path("data");
    quill(&["ledger", "create", "shop", "--data-dir", &data]);
    let vkey = common::log_key(&data);
    std::fs::write(path("logs"), format!("log {vkey}")).unwrap();
    let (w1_vkey, w1) = start_witness(dir.path(), "w1");
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
    shell_ok(
        &server.address,
        "CREATE TABLE Item; INSERT INTO Item {'n': 1}; INSERT INTO Item {'n': 2};",
    );
    wait_for("the mirror to follow its own cosignatures", || {
        status(&mirror)["size"] == 4
    });
    let served = String::from_utf8(server.get_ok("/ledgers/shop/log/checkpoint")).unwrap();
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

#[test]
fn a_mirror_serves_its_copy_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = path("data");
    quill(&["ledger", "create", "shop", "--data-dir", &data]);
    write_log_only_policy(&data, &path("policy"));
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
    shell_ok(
        &server.address,
        "CREATE TABLE Item; INSERT INTO Item {'n': 1}; INSERT INTO Item {'n': 2};",
    );
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../quill-server/tests/fixtures")
            .join(name)
            .to_str()
            .unwrap()
            .to_owned()
    };
    let cert = fixture("localhost.crt");
    let mirror = Listening::start(&[
        "mirror",
        "--from",
        &format!("http://{}", server.address),
        "--ledger",
        "shop",
        "--data-dir",
        &path("mirror"),
        "--policy",
        &path("policy"),
        "--interval",
        "50ms",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &fixture("localhost.key"),
    ]);
    let port = mirror.address.rsplit_once(':').unwrap().1;
    let endpoint = format!("https://localhost:{port}");
    let query = |extra: &[&str]| {
        let mut args = vec![
            "shell",
            "--endpoint",
            &endpoint,
            "--ledger",
            "shop",
            "-e",
            "SELECT n FROM Item WHERE n = 2",
        ];
        args.extend_from_slice(extra);
        run_quill(&args)
    };
    wait_for("the mirror to serve the rows over HTTPS", || {
        let output = query(&["--ca-cert", &cert]);
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("n: 2")
    });
    // A copy signs nothing, so the mirror neither needs nor creates a log key.
    assert!(!dir.path().join("mirror/shop/log-key").exists());
    // Plain HTTP gets no answer from the TLS listener, and an untrusted certificate is refused.
    assert!(mirror
        .request("GET", "/mirror/status", b"")
        .is_none_or(|(status, _, _)| status != 200));
    assert!(!query(&[]).status.success());
}
