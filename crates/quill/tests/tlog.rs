//! The ledger's transparency log through the real `quill serve`: checkpoints signed with the
//! key `quill log-key` prints, tiles and entry bundles a monitor can check against the QLDB
//! digest, proofs, growth, and authentication unless `--public-log`.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quill_verify::tlog::{
    check_block_chain, rfc6962, verify_cosigned_checkpoint, BlockLeaf, Checkpoint, Note, Policy,
    TlogProof, VerifierKey,
};
use quill_verify::{parse_proof, Hash};

mod common;

use common::{
    log_key, quill, run_quill, shell_ok, start_witness, wait_for, witness_key,
    write_log_only_policy, Listening,
};

struct Server(Listening);

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-interval",
            "50ms",
            "--data-dir",
        ];
        args.push(data_dir.to_str().unwrap());
        args.extend_from_slice(extra);
        Server(Listening::start(&args))
    }

    fn address(&self) -> &str {
        &self.0.address
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let (status, _, body) = self
            .0
            .request("GET", path, b"")
            .expect("the server answers");
        (status, body)
    }

    fn get_ok(&self, path: &str) -> Vec<u8> {
        self.0.get_ok(path)
    }

    /// Waits for a checkpoint of at least `size` leaves.
    fn checkpoint(&self, size: u64) -> (String, Checkpoint) {
        self.0.checkpoint(size)
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn log_key_creates_the_key_in_a_new_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet").join("data");
    let first = quill(&["log-key", "--data-dir", data.to_str().unwrap()]);
    assert!(data.join("log-key").exists());
    // No ledger yet, so no verifier line; a second call reuses the same key file.
    let key = std::fs::read(data.join("log-key")).unwrap();
    let second = quill(&["log-key", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(std::fs::read(data.join("log-key")).unwrap(), key);
}

#[test]
fn the_served_log_checks_out_offline_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap();
    quill(&["ledger", "create", "shop", "--data-dir", data_str]);
    quill(&[
        "shell",
        "--data-dir",
        data_str,
        "--ledger",
        "shop",
        "-e",
        "CREATE TABLE Item; INSERT INTO Item {'sku': 'a'}; INSERT INTO Item {'sku': 'b'};",
    ]);
    let vkey_line = String::from_utf8(quill(&["log-key", "--data-dir", data_str]).stdout).unwrap();
    let vkey = VerifierKey::parse(vkey_line.trim()).unwrap();
    assert_eq!(vkey.name, "localhost/quill/shop");
    let digest_ion =
        String::from_utf8(quill(&["digest", "--data-dir", data_str, "--ledger", "shop"]).stdout)
            .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("log-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let server = Server::start(&data, &["--public-log"]);
    let (note, checkpoint) = server.checkpoint(4);
    assert_eq!(checkpoint.size, 4, "genesis, CREATE TABLE and two inserts");
    assert_eq!(
        Note::parse(&note)
            .unwrap()
            .verify(std::slice::from_ref(&vkey))
            .unwrap()
            .len(),
        1
    );

    // A monitor reading only tiles: leaves → chain → QLDB digest, and hashes → root.
    let bundle = server.get_ok("/ledgers/shop/log/tile/entries/000.p/4");
    let mut leaves = Vec::new();
    let mut rest = &bundle[..];
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        leaves.push(BlockLeaf::parse(&rest[2..2 + len]).unwrap());
        rest = &rest[2 + len..];
    }
    let digest = check_block_chain(&leaves).unwrap().unwrap();
    assert!(
        digest_ion.contains(&digest.to_base64()),
        "{digest_ion} vs {digest}"
    );
    let tile = server.get_ok("/ledgers/shop/log/tile/0/000.p/4");
    let hashes: Vec<Hash> = tile
        .chunks(32)
        .map(|c| Hash::from_slice(c).unwrap())
        .collect();
    let from_leaves: Vec<Hash> = leaves
        .iter()
        .map(|l| rfc6962::leaf_hash(&l.to_bytes()))
        .collect();
    assert_eq!(hashes, from_leaves);
    assert_eq!(rfc6962::root(&hashes), checkpoint.root);
    assert_eq!(
        server.get("/ledgers/shop/log/tile/0/000.p/5").0,
        404,
        "beyond the checkpoint"
    );
    assert_eq!(
        server.get("/ledgers/shop/log/tile/0/000").0,
        404,
        "not full yet"
    );
    assert_eq!(server.get("/ledgers/nope/log/checkpoint").0, 404);

    let inclusion = json(&server.get_ok("/ledgers/shop/log/proof/inclusion?index=2&size=4"));
    let proof = parse_proof(inclusion["Proof"]["IonText"].as_str().unwrap()).unwrap();
    rfc6962::verify_inclusion(2, 4, &from_leaves[2], &proof, &checkpoint.root).unwrap();

    // The ledger grows through the server: a new checkpoint, consistent with the first.
    shell_ok(server.address(), "INSERT INTO Item {'sku': 'c'};");
    let (_, grown) = server.checkpoint(5);
    assert_eq!(grown.size, 5);
    let consistency = json(&server.get_ok("/ledgers/shop/log/proof/consistency?old=4&size=5"));
    let proof = parse_proof(consistency["Proof"]["IonText"].as_str().unwrap()).unwrap();
    rfc6962::verify_consistency(4, 5, &checkpoint.root, &grown.root, &proof).unwrap();
    assert_eq!(
        server
            .get("/ledgers/shop/log/proof/consistency?old=4&size=6")
            .0,
        400
    );

    assert_eq!(
        server
            .get("/ledgers/shop/log/proof/bundle?index=3&documentId=nope")
            .0,
        404
    );

    // A block's proof checks offline: first against the log key alone, then cosigned by a
    // witness that followed the log, against a policy that requires that witness.
    let bundle =
        String::from_utf8(server.get_ok("/ledgers/shop/log/proof/bundle?index=3")).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let verify =
        |bundle: &str, policy: &str| run_quill(&["verify-proof", bundle, "--policy", policy]);
    let log_only = write("log-only.policy", &format!("log {vkey}\nquorum none\n"));
    let plain = write("block3.tlog-proof", &bundle);
    let output = verify(&plain, &log_only);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("verified: block 3 "));

    let (witness_key, witness_vkey) = witness_key(dir.path(), "w1");
    let logs = write("logs", &format!("log {vkey}\n"));
    let state = dir.path().join("w1-state");
    let witness = Listening::start(&[
        "witness",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--key",
        &witness_key,
        "--logs",
        &logs,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let proof = TlogProof::parse(&bundle).unwrap();
    let (status, _, cosignature) = witness
        .request(
            "POST",
            "/add-checkpoint",
            format!("old 0\n\n{}", proof.checkpoint).as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200);
    let cosigned = write(
        "cosigned.tlog-proof",
        &TlogProof {
            checkpoint: format!(
                "{}{}",
                proof.checkpoint,
                String::from_utf8(cosignature).unwrap()
            ),
            ..proof.clone()
        }
        .to_text(),
    );
    let quorum = write(
        "quorum.policy",
        &format!(
            "log {vkey}\nwitness w1 {}\nquorum w1\n",
            witness_vkey.trim()
        ),
    );
    let output = verify(&cosigned, &quorum);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("cosigned by [w1]"));

    // Each broken link is named, with exit status 3.
    let mut wrong_block = proof.clone();
    let mut leaf = BlockLeaf::parse(proof.extra.as_ref().unwrap()).unwrap();
    leaf.block_hash = Hash::sha256(b"another block");
    wrong_block.extra = Some(leaf.to_bytes());
    let mut moved = proof.clone();
    moved.index = 2;
    let mut bad_path = proof.clone();
    bad_path.hashes[0] = Hash::sha256(b"x");
    for (name, text, policy, expected) in [
        ("uncosigned", bundle.clone(), &quorum, "quorum is not met"),
        (
            "wrong-block",
            wrong_block.to_text(),
            &log_only,
            "blockHash is",
        ),
        ("moved", moved.to_text(), &log_only, "leaf 2 holds block 3"),
        (
            "bad-path",
            bad_path.to_text(),
            &log_only,
            "does not lead to the root",
        ),
        (
            "foreign",
            bundle.replace("localhost/quill/shop", "localhost/quill/other"),
            &log_only,
            "no trusted log",
        ),
    ] {
        let output = verify(&write(name, &text), policy);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    drop(server);

    // Without --public-log the log needs a signed request like everything else.
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "AKIDEXAMPLE secret\n").unwrap();
    let server = Server::start(&data, &["--credentials", credentials.to_str().unwrap()]);
    let (status, _) = server.get("/ledgers/shop/log/checkpoint");
    assert_eq!(status / 100, 4, "unsigned request to a private log");
    assert_ne!(status, 404);
}

/// A witness that accepts connections and never answers; returns its address and how many
/// connections it accepted.
fn hanging_witness() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            open.push(stream);
        }
    });
    (address, accepted)
}

#[test]
fn a_hanging_witness_does_not_delay_the_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = path("data");
    quill(&["ledger", "create", "shop", "--data-dir", &data]);
    let vkey = log_key(&data);
    std::fs::write(path("logs"), format!("log {vkey}")).unwrap();
    let (w1_vkey, w1) = start_witness(dir.path(), "w1");
    let (w2_vkey, w2) = start_witness(dir.path(), "w2");
    // w3 has a real key, but its URL leads to a socket that never answers: without the
    // quorum rule, each checkpoint would wait the full witness timeout (5 s) for it.
    let (_, w3_vkey) = witness_key(dir.path(), "w3");
    let (hanging, accepted) = hanging_witness();
    let policy = format!(
        "log {vkey}witness w1 {w1_vkey} http://{}\nwitness w2 {w2_vkey} http://{}\n\
         witness w3 {} http://{hanging}\ngroup two-of-three 2 w1 w2 w3\nquorum two-of-three\n",
        w1.address, w2.address, w3_vkey
    );
    std::fs::write(path("policy"), &policy).unwrap();
    let policy = Policy::parse(&policy).unwrap();
    let server = Server::start(
        Path::new(&data),
        &["--public-log", "--witness-policy", &path("policy")],
    );
    let cosigned = |size: u64, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = server.get("/ledgers/shop/log/checkpoint");
            if status == 200 {
                let note = String::from_utf8(body).unwrap();
                if let Ok(verified) = verify_cosigned_checkpoint(&note, &policy) {
                    if verified.checkpoint.size == size {
                        return verified.cosigned.len();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint of size {size} cosigned by 2 of 3 within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(cosigned(1, Duration::from_secs(20)), 2);
    let statements = [
        "CREATE TABLE Item;",
        "INSERT INTO Item {'a': 1};",
        "INSERT INTO Item {'a': 2};",
    ];
    for (size, statement) in (2..).zip(statements) {
        shell_ok(server.address(), statement);
        let committed = Instant::now();
        // Generous for two loopback witnesses and a 50 ms cadence, and well short of the 5 s
        // the hanging witness would cost if anything waited for it.
        assert_eq!(cosigned(size, Duration::from_secs(2)), 2);
        assert!(committed.elapsed() < Duration::from_secs(2));
    }
    assert!(
        accepted.load(Ordering::SeqCst) > 0,
        "the hanging witness was never asked"
    );
}

#[test]
fn checkpoints_are_cosigned_by_the_policy_witnesses() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = path("data");
    quill(&["ledger", "create", "shop", "--data-dir", &data]);
    let vkey = log_key(&data);
    std::fs::write(path("logs"), format!("log {vkey}")).unwrap();
    let mut witnesses = Vec::new();
    let mut policy = format!("log {vkey}");
    for name in ["w1", "w2"] {
        let (witness_vkey, witness) = start_witness(dir.path(), name);
        policy.push_str(&format!(
            "witness {name} {witness_vkey} http://{}\n",
            witness.address
        ));
        witnesses.push(witness);
    }
    policy.push_str("group both all w1 w2\nquorum both\n");
    std::fs::write(path("policy"), &policy).unwrap();
    let policy = Policy::parse(&policy).unwrap();

    let server = Server::start(
        Path::new(&data),
        &["--public-log", "--witness-policy", &path("policy")],
    );
    let witness_address = witnesses[1].address.clone();
    let cosigned = |size: u64| {
        let what = format!("a cosigned checkpoint of size {size}");
        let accept = |note: &str, checkpoint: &Checkpoint| {
            checkpoint.size == size && Note::parse(note).unwrap().signatures.len() == 3
        };
        server.0.checkpoint_where(&what, accept).0
    };
    let first = cosigned(1);
    assert_eq!(
        verify_cosigned_checkpoint(&first, &policy)
            .unwrap()
            .cosigned
            .len(),
        2
    );

    // The ledger grows: the witnesses check the consistency proof from size 1 and cosign.
    shell_ok(server.address(), "CREATE TABLE Item;");
    let second = cosigned(2);
    assert_eq!(
        verify_cosigned_checkpoint(&second, &policy)
            .unwrap()
            .checkpoint
            .size,
        2
    );

    // One witness gone: the next checkpoint gets one cosignature, below the quorum, so the
    // cosigned one of size 2 stays served (tiles and proofs bounded by it).
    let stopped = witnesses.pop().unwrap();
    drop(stopped);
    shell_ok(server.address(), "INSERT INTO Item {'a': 1};");
    let metrics = || String::from_utf8(server.get_ok("/metrics")).unwrap();
    wait_for("a failed submission", || {
        !metrics().contains("quill_witness_failures_total 0")
    });
    let (served, checkpoint) = server.checkpoint(2);
    assert_eq!((checkpoint.size, served.as_str()), (2, second.as_str()));
    assert_eq!(server.get("/ledgers/shop/log/tile/entries/000.p/3").0, 404);

    // A restart serves the cosigned checkpoint from disk, not a bare one.
    drop(server);
    let server = Server::start(
        Path::new(&data),
        &["--public-log", "--witness-policy", &path("policy")],
    );
    let (served, _) = server.checkpoint(2);
    assert_eq!(served, second, "the cosignatures survive the restart");

    // The witness comes back with its state: the log resynchronises (409) and the quorum
    // cosigns the grown log.
    let _w2 = Listening::start(&[
        "witness",
        "serve",
        "--listen",
        &witness_address,
        "--key",
        &path("w2.key"),
        "--logs",
        &path("logs"),
        "--state-dir",
        &path("w2-state"),
    ]);
    let (third, _) = server
        .0
        .checkpoint_where("a cosigned checkpoint of size 3", |_, c| c.size == 3);
    let verified = verify_cosigned_checkpoint(&third, &policy).unwrap();
    assert_eq!(verified.cosigned.len(), 2);
}

#[test]
fn log_proof_prints_embedded_proofs_that_check_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = path("data");
    quill(&["ledger", "create", "shop", "--data-dir", &data]);
    let target = ["--data-dir", data.as_str(), "--ledger", "shop"];
    let first =
        String::from_utf8(quill(&[&["log-proof", "--index", "0"][..], &target].concat()).stdout)
            .unwrap();
    let first_checkpoint = Checkpoint::parse(
        &Note::parse(&TlogProof::parse(&first).unwrap().checkpoint)
            .unwrap()
            .text,
    )
    .unwrap();
    assert_eq!(first_checkpoint.size, 1);
    write_log_only_policy(&data, &path("policy"));
    std::fs::write(path("first.tlog-proof"), &first).unwrap();
    quill(&[
        "verify-proof",
        &path("first.tlog-proof"),
        "--policy",
        &path("policy"),
    ]);

    quill(
        &[
            &[
                "shell",
                "-e",
                "CREATE TABLE Item; INSERT INTO Item {'a': 1};",
            ][..],
            &target,
        ]
        .concat(),
    );
    let consistency = json(&quill(&[&["log-proof", "--old", "1"][..], &target].concat()).stdout);
    let checkpoint = Checkpoint::parse(
        &Note::parse(consistency["Checkpoint"].as_str().unwrap())
            .unwrap()
            .text,
    )
    .unwrap();
    assert_eq!(checkpoint.size, 3);
    assert_eq!(
        consistency["OldRootHash"],
        first_checkpoint.root.to_base64()
    );
    let proof = parse_proof(consistency["Proof"]["IonText"].as_str().unwrap()).unwrap();
    rfc6962::verify_consistency(1, 3, &first_checkpoint.root, &checkpoint.root, &proof).unwrap();
    let beyond = run_quill(&[&["log-proof", "--index", "3"][..], &target].concat());
    assert!(!beyond.status.success());

    // A revision's bundle: the document inserted in block 2, with its QLDB proof in `extra`.
    let shell_output = String::from_utf8(
        quill(
            &[
                &["shell", "-e", "INSERT INTO Item {'invoice': 'INV-7'};"][..],
                &target,
            ]
            .concat(),
        )
        .stdout,
    )
    .unwrap();
    let document_id = shell_output
        .split('"')
        .nth(1)
        .expect("the inserted document's id")
        .to_owned();
    let bundle = String::from_utf8(
        quill(
            &[
                &["log-proof", "--index", "3", "--document-id", &document_id][..],
                &target,
            ]
            .concat(),
        )
        .stdout,
    )
    .unwrap();
    std::fs::write(path("revision.tlog-proof"), &bundle).unwrap();
    let verified = quill(&[
        "verify-proof",
        &path("revision.tlog-proof"),
        "--policy",
        &path("policy"),
    ]);
    let stdout = String::from_utf8(verified.stdout).unwrap();
    assert!(stdout.contains("INV-7"), "{stdout}");
    assert!(
        stdout.contains("verified: the revision above is in block 3 "),
        "{stdout}"
    );
    // An altered revision names the broken link.
    let mut proof = TlogProof::parse(&bundle).unwrap();
    let extra = String::from_utf8(proof.extra.take().unwrap()).unwrap();
    proof.extra = Some(extra.replace("INV-7", "INV-8").into_bytes());
    std::fs::write(path("altered.tlog-proof"), proof.to_text()).unwrap();
    let output = run_quill(&[
        "verify-proof",
        &path("altered.tlog-proof"),
        "--policy",
        &path("policy"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("link `revision -> block hash` failed"),
        "{stderr}"
    );
    let no_document = run_quill(
        &[
            &["log-proof", "--index", "3", "--document-id", "nope"][..],
            &target,
        ]
        .concat(),
    );
    assert!(!no_document.status.success());
}

/// `quill bench tlog`, briefly: three witness child processes, both servers, both phases.
#[test]
fn tlog_bench_runs_with_three_witness_processes() {
    let dir = tempfile::tempdir().unwrap();
    let output = quill(&[
        "bench",
        "tlog",
        "--seconds",
        "1",
        "--cycles",
        "1",
        "--writers",
        "4",
        "--interval",
        "200ms",
        "--rate",
        "10",
        "--latency-seconds",
        "1",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tlog summary: "))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    let figures: Vec<f64> = summary
        .split(' ')
        .map(|pair| pair.split_once('=').unwrap().1.parse().unwrap())
        .collect();
    assert!(figures[0] > 0.0, "{stdout}");
    // p50 ≤ p99, and within the 30 s the bench waits for a cosigned checkpoint.
    assert!(
        figures[1] <= figures[2] && figures[2] < 30_000.0,
        "{stdout}"
    );
}
