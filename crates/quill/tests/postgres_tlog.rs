//! One transparency log per ledger across several `quill serve` processes on one PostgreSQL
//! (`--storage`): every server serves the same checkpoint, one signs and submits to the
//! witness, another takes over when it is SIGKILLed under write load and continues the same
//! log (the witness keeps cosigning), and a server with another log key refuses to sign.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quill_verify::tlog::{verify_cosigned_checkpoint, Checkpoint, Note, Policy, VerifierKey};

mod common;

use common::{quill, run_quill, shell, shell_ok, start_witness, wait_for, Listening};

/// `quill serve --storage URL` with its own data directory and the log key `key`.
fn serve(dir: &Path, name: &str, url: &str, key: &str, policy: &str) -> Listening {
    let data = dir.join(name);
    Listening::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--storage",
        url,
        "--data-dir",
        data.to_str().unwrap(),
        "--log-key",
        key,
        "--public-log",
        "--checkpoint-interval",
        "100ms",
        "--witness-policy",
        policy,
    ])
}

fn health(server: &Listening) -> serde_json::Value {
    serde_json::from_slice(&server.get_ok("/health")).unwrap()
}

/// Whether `server` signs ledger `shop`'s log.
fn signs(server: &Listening) -> bool {
    health(server)["transparency_log"]["signing"]
        .as_array()
        .is_some_and(|ledgers| ledgers.iter().any(|l| l == "shop"))
}

/// The checkpoint `server` serves, if any.
fn served(server: &Listening) -> Option<(String, Checkpoint)> {
    let (status, _, body) = server.request("GET", "/ledgers/shop/log/checkpoint", b"")?;
    (status == 200).then(|| {
        let note = String::from_utf8(body).unwrap();
        let checkpoint = Checkpoint::parse(&Note::parse(&note).unwrap().text).unwrap();
        (note, checkpoint)
    })
}

/// Waits until `server` serves a checkpoint of at least `size` that the witness cosigned.
fn cosigned(server: &Listening, policy: &Policy, size: u64) -> (String, Checkpoint) {
    let mut found = None;
    wait_for(&format!("a cosigned checkpoint of size {size}"), || {
        found = served(server).filter(|(note, checkpoint)| {
            checkpoint.size >= size && verify_cosigned_checkpoint(note, policy).is_ok()
        });
        found.is_some()
    });
    found.unwrap()
}

/// The consistency proof from `old` to `new` that `server` serves, checked.
fn check_consistent(server: &Listening, old: &Checkpoint, new: &Checkpoint) {
    let body = server.get_ok(&format!(
        "/ledgers/shop/log/proof/consistency?old={}&size={}",
        old.size, new.size
    ));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let proof = quill_verify::parse_proof(body["Proof"]["IonText"].as_str().unwrap()).unwrap();
    quill_verify::tlog::rfc6962::verify_consistency(
        old.size, new.size, &old.root, &new.root, &proof,
    )
    .unwrap();
}

#[test]
fn two_servers_keep_one_witnessed_log_through_the_signers_death() {
    let url = quill_pgtest::PgServer::shared()
        .and_then(|server| server.create_database("tlog_two_servers"))
        .expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    quill(&["ledger", "create", "shop", "--storage", &url]);
    // Every server gets the same key file (the operator's job, docs/scale-out.md).
    let log_vkey = String::from_utf8(
        quill(&["log-key", "--data-dir", &path("keys"), "--ledger", "shop"]).stdout,
    )
    .unwrap();
    let key = path("keys/log-key");
    std::fs::write(path("logs"), format!("log {log_vkey}")).unwrap();
    let (witness_vkey, witness) = start_witness(dir.path(), "w1");
    let policy_text = format!(
        "log {log_vkey}witness w1 {witness_vkey} http://{}\nquorum w1\n",
        witness.address
    );
    std::fs::write(path("policy"), &policy_text).unwrap();
    let policy = Policy::parse(&policy_text).unwrap();

    let mut servers = vec![
        serve(dir.path(), "a", &url, &key, &path("policy")),
        serve(dir.path(), "b", &url, &key, &path("policy")),
    ];
    wait_for("one signer", || {
        servers.iter().filter(|s| signs(s)).count() == 1
    });
    shell_ok(&servers[1].address, "CREATE TABLE Item;");
    // Both serve the same cosigned checkpoint once the follower took it up.
    let (note, first) = cosigned(&servers[0], &policy, 2);
    wait_for("the same checkpoint on both", || {
        served(&servers[1]).is_some_and(|(other, _)| other == note)
    });
    assert_eq!(served(&servers[0]).unwrap().0, note);

    // Write load through both servers while the signer is SIGKILLed.
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
    let writer = {
        let (stop, committed) = (stop.clone(), committed.clone());
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(Ordering::SeqCst) {
                for address in &addresses {
                    let statement = format!("INSERT INTO Item {{'n': {n}}};");
                    n += 1;
                    if shell(address, &statement).status.success() {
                        committed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    wait_for("writes", || committed.load(Ordering::SeqCst) >= 4);
    let signer = servers.iter().position(signs).expect("a signer");
    let before_kill = cosigned(&servers[signer], &policy, first.size + 1).1;
    drop(servers.remove(signer)); // SIGKILL
    let survivor = &servers[0];
    let killed_at = Instant::now();
    wait_for("the survivor takes over", || signs(survivor));
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "took {:?} to take over",
        killed_at.elapsed()
    );
    let grown = committed.load(Ordering::SeqCst);
    wait_for("more writes", || {
        committed.load(Ordering::SeqCst) >= grown + 3
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    shell_ok(&survivor.address, "INSERT INTO Item {'n': 0};");

    // The survivor continues the same log: the witness cosigns its checkpoints of the whole
    // journal, consistent with what it cosigned from the dead signer.
    let tip = served(survivor).unwrap().1.size + 1;
    let (_, after) = cosigned(survivor, &policy, tip);
    assert!(after.size > before_kill.size);
    check_consistent(survivor, &first, &after);
    check_consistent(survivor, &before_kill, &after);
    let metrics = String::from_utf8(survivor.get_ok("/metrics")).unwrap();
    assert!(
        metrics.contains("quill_witness_bad_proofs_total 0"),
        "{metrics}"
    );

    // A server with another key refuses to sign, says why in /health naming both keys, and
    // serves the log the survivor signs.
    let other_vkey = String::from_utf8(
        quill(&["log-key", "--data-dir", &path("other"), "--ledger", "shop"]).stdout,
    )
    .unwrap();
    let other = serve(
        dir.path(),
        "c",
        &url,
        &path("other/log-key"),
        &path("policy"),
    );
    let mut refused = String::new();
    wait_for("the refusal", || {
        let health = health(&other);
        refused = health["transparency_log"]["refused"]["shop"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        !refused.is_empty() && health["status"] == "degraded"
    });
    let hex = |vkey: &str| -> String {
        let key = VerifierKey::parse(vkey.trim()).unwrap();
        key.key_id().iter().map(|b| format!("{b:02x}")).collect()
    };
    assert!(refused.contains(&hex(&other_vkey)), "{refused}");
    assert!(refused.contains(&hex(&log_vkey)), "{refused}");
    assert!(!signs(&other));
    shell_ok(&other.address, "INSERT INTO Item {'n': 0};");
    let (note, _) = cosigned(survivor, &policy, after.size + 1);
    wait_for("the same checkpoint on the refusing server", || {
        served(&other).is_some_and(|(served, _)| served == note)
    });
    assert!(!signs(&other) && signs(survivor));
}

/// The stderr of a `quill` run that must fail.
fn fails(args: &[&str]) -> String {
    let output = run_quill(args);
    assert!(!output.status.success(), "quill {args:?} succeeded");
    String::from_utf8(output.stderr).unwrap()
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(quill(args).stdout).unwrap()
}

/// `quill log-key --storage` prints the verifier key PostgreSQL recorded and checks a key
/// file against it; `quill log-proof --storage` proves against the checkpoint the servers
/// signed, exactly as the server's own proof endpoint does, signing nothing itself.
#[test]
fn log_key_and_log_proof_read_the_log_the_servers_keep_in_postgresql() {
    let url = quill_pgtest::PgServer::shared()
        .and_then(|server| server.create_database("tlog_commands"))
        .expect("a PostgreSQL database");
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    quill(&["ledger", "create", "shop", "--storage", &url]);
    let log_vkey = stdout(&["log-key", "--data-dir", &path("keys"), "--ledger", "shop"]);
    let key = path("keys/log-key");
    let other_vkey = stdout(&["log-key", "--data-dir", &path("other"), "--ledger", "shop"]);
    let other_key = path("other/log-key");
    let storage = ["--storage", url.as_str()];
    let shop = [&storage[..], &["--ledger", "shop"]].concat();

    // Before any server signed: nothing recorded, no checkpoint to prove against.
    let error = fails(&[&["log-key"][..], &shop].concat());
    assert!(
        error.contains("no verifier key recorded yet for shop"),
        "{error}"
    );
    assert_eq!(
        stdout(&[&["log-key", "--log-key", &key][..], &shop].concat()),
        log_vkey
    );
    let error = fails(&[&["log-proof", "--index", "0"][..], &shop].concat());
    assert!(error.contains("no checkpoint in PostgreSQL yet"), "{error}");
    let error = fails(&[&["log-key", "--ledger", "nope"][..], &storage].concat());
    assert!(error.contains("no ledger nope in PostgreSQL"), "{error}");
    let error = fails(&["log-key", "--storage", &url, "--data-dir", &path("keys")]);
    assert!(error.contains("cannot be used with"), "{error}");

    let server = Listening::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--storage",
        &url,
        "--data-dir",
        &path("server"),
        "--log-key",
        &key,
        "--public-log",
        "--checkpoint-interval",
        "100ms",
    ]);
    shell_ok(
        &server.address,
        "CREATE TABLE Item; INSERT INTO Item {'n': 1};",
    );
    wait_for("a checkpoint of the three blocks", || {
        served(&server).is_some_and(|(_, checkpoint)| checkpoint.size >= 3)
    });

    assert_eq!(stdout(&[&["log-key"][..], &storage].concat()), log_vkey);
    assert_eq!(
        stdout(&[&["log-key", "--log-key", &key][..], &shop].concat()),
        log_vkey
    );
    // Another key file: both keys named, and a failure (its server would not sign).
    let error = fails(&[&["log-key", "--log-key", &other_key][..], &shop].concat());
    assert!(error.contains("refuses to sign"), "{error}");
    assert!(error.contains(other_vkey.trim()), "{error}");
    assert!(error.contains(log_vkey.trim()), "{error}");

    // The proof of block 2 is the one the server serves, and it verifies offline.
    let bundle = stdout(&[&["log-proof", "--index", "2"][..], &shop].concat());
    let served_bundle =
        String::from_utf8(server.get_ok("/ledgers/shop/log/proof/bundle?index=2")).unwrap();
    assert_eq!(bundle, served_bundle);
    std::fs::write(path("block2.tlog-proof"), &bundle).unwrap();
    std::fs::write(path("log.policy"), format!("log {log_vkey}quorum none\n")).unwrap();
    let verified = stdout(&[
        "verify-proof",
        &path("block2.tlog-proof"),
        "--policy",
        &path("log.policy"),
    ]);
    assert!(verified.contains("verified: block 2"), "{verified}");
    let consistency: serde_json::Value =
        serde_json::from_str(&stdout(&[&["log-proof", "--old", "1"][..], &shop].concat())).unwrap();
    let size = served(&server).unwrap().1.size;
    assert_eq!(consistency["OldTreeSize"], 1);
    assert_eq!(consistency["TreeSize"], size);
    let error = fails(&[&["log-proof", "--index", "0", "--log-key", &key][..], &shop].concat());
    assert!(
        error.contains("--log-key is not used with --storage"),
        "{error}"
    );
}
