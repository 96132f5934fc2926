//! Three real `quill witness serve` processes on loopback, fed by a log signer in the test:
//! quorum, a witness down, a split view, and each refusal status of C2SP tlog-witness.

use std::path::Path;
use std::process::Command;

use quill_tlog::keys::NoteSigner;
use quill_tlog::witness::AddCheckpoint;
use quill_verify::tlog::{
    rfc6962, verify_cosigned_checkpoint, Checkpoint, Note, Policy, TlogError,
};
use quill_verify::Hash;

const ORIGIN: &str = "quill.test/quill/shop";

mod common;

use common::Listening;

/// A witness process.
struct WitnessProcess(Listening);

impl WitnessProcess {
    fn start(dir: &Path, name: &str) -> WitnessProcess {
        let path = |file: String| dir.join(file).to_str().unwrap().to_owned();
        WitnessProcess(Listening::start(&[
            "witness",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--key",
            &path(format!("{name}.key")),
            "--logs",
            &path("logs".into()),
            "--state-dir",
            &path(format!("{name}-state")),
        ]))
    }

    /// POSTs an add-checkpoint body; `None` when the witness cannot be reached.
    fn add_checkpoint(&self, body: &str) -> Option<(u16, String, String)> {
        let (status, content_type, body) =
            self.0.request("POST", "/add-checkpoint", body.as_bytes())?;
        Some((status, content_type, String::from_utf8(body).unwrap()))
    }
}

/// The log under test: leaves in memory, checkpoints signed with its key.
struct Log {
    signer: NoteSigner,
    leaves: Vec<Hash>,
}

impl Log {
    fn grow(&mut self, n: usize, tag: &str) {
        for _ in 0..n {
            let leaf = format!("{tag}{}", self.leaves.len());
            self.leaves.push(rfc6962::leaf_hash(leaf.as_bytes()));
        }
    }

    fn signed(&self, size: usize) -> String {
        let text = Checkpoint {
            origin: self.signer.name().to_owned(),
            size: size as u64,
            root: rfc6962::root(&self.leaves[..size]),
            extensions: vec![],
        }
        .to_text();
        Note {
            signatures: vec![self.signer.sign(&text)],
            text,
        }
        .to_text()
    }

    fn request(&self, old: usize, size: usize) -> String {
        AddCheckpoint {
            old_size: old as u64,
            proof: rfc6962::consistency_proof(&self.leaves[..size], old),
            note: self.signed(size),
        }
        .to_body()
    }
}

fn keygen(dir: &Path, name: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args([
            "witness",
            "keygen",
            "--name",
            &format!("{name}.example"),
            "--key",
        ])
        .arg(dir.join(format!("{name}.key")))
        .output()
        .expect("quill witness keygen runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Submits `request` to every reachable witness; returns the cosigned note.
fn cosign(witnesses: &[&WitnessProcess], note: &str, request: &str) -> String {
    let mut cosigned = note.to_owned();
    for witness in witnesses {
        if let Some((status, _, body)) = witness.add_checkpoint(request) {
            assert_eq!(status, 200, "{body}");
            cosigned.push_str(&body);
        }
    }
    cosigned
}

#[test]
fn three_witnesses_quorum_outage_split_view_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["w1", "w2", "w3"];
    let vkeys: Vec<String> = names.iter().map(|n| keygen(dir.path(), n)).collect();
    let mut log = Log {
        signer: NoteSigner::generate(ORIGIN).unwrap(),
        leaves: Vec::new(),
    };
    std::fs::write(
        dir.path().join("logs"),
        format!("# the test log\nlog {}\n", log.signer.verifier_key()),
    )
    .unwrap();
    let mut policy_text = format!("log {}\n", log.signer.verifier_key());
    for (name, vkey) in names.iter().zip(&vkeys) {
        policy_text.push_str(&format!("witness {name} {vkey}\n"));
    }
    policy_text.push_str("group two-of-three 2 w1 w2 w3\nquorum two-of-three\n");
    let policy = Policy::parse(&policy_text).unwrap();

    let w1 = WitnessProcess::start(dir.path(), "w1");
    let w2 = WitnessProcess::start(dir.path(), "w2");
    let mut w3 = Some(WitnessProcess::start(dir.path(), "w3"));

    // All three cosign the first checkpoint.
    log.grow(5, "block");
    let all = [&w1, &w2, w3.as_ref().unwrap()];
    let cosigned = cosign(&all, &log.signed(5), &log.request(0, 5));
    let verified = verify_cosigned_checkpoint(&cosigned, &policy).unwrap();
    assert_eq!(verified.checkpoint.size, 5);
    assert_eq!(verified.cosigned.len(), 3);

    // One witness down: two of three still cosign the grown log.
    drop(w3.take());
    log.grow(4, "block");
    let two = [&w1, &w2];
    let cosigned = cosign(&two, &log.signed(9), &log.request(5, 9));
    let verified = verify_cosigned_checkpoint(&cosigned, &policy).unwrap();
    let names: Vec<&str> = verified.cosigned.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w1", "w2"]);

    // A split view: the log signs another tree of the same size, and a fork that grew on.
    let mut fork = Log {
        signer: NoteSigner::parse(&log.signer.to_private_text()).unwrap(),
        leaves: log.leaves[..7].to_vec(),
    };
    fork.grow(2, "forked");
    for witness in two {
        let (status, content_type, body) = witness.add_checkpoint(&fork.request(9, 9)).unwrap();
        assert_eq!(
            (status, content_type.as_str(), body.as_str()),
            (409, "text/x.tlog.size", "9\n")
        );
        let (status, _, body) = witness.add_checkpoint(&fork.request(5, 9)).unwrap();
        assert_eq!((status, body.as_str()), (409, "9\n"));
    }
    fork.grow(3, "forked");
    let forked_request = AddCheckpoint {
        old_size: 9,
        proof: rfc6962::consistency_proof(&fork.leaves, 9),
        note: fork.signed(12),
    };
    for witness in two {
        let (status, _, _) = witness.add_checkpoint(&forked_request.to_body()).unwrap();
        assert_eq!(status, 422);
    }
    // A client requiring the quorum rejects the fork, even with honest cosignatures pasted on.
    assert!(matches!(
        verify_cosigned_checkpoint(&fork.signed(9), &policy),
        Err(TlogError::QuorumNotMet { .. })
    ));
    let honest_lines = cosigned
        .split_once("\n\n")
        .unwrap()
        .1
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n");
    let pasted = format!("{}{honest_lines}\n", fork.signed(9));
    assert!(matches!(
        verify_cosigned_checkpoint(&pasted, &policy),
        Err(TlogError::InvalidSignature(_))
    ));

    // The other refusals: a checkpoint signed by another key, an unknown origin, old > new.
    let impostor = Log {
        signer: NoteSigner::generate(ORIGIN).unwrap(),
        leaves: log.leaves.clone(),
    };
    assert_eq!(w1.add_checkpoint(&impostor.request(9, 9)).unwrap().0, 403);
    let mut stranger = Log {
        signer: NoteSigner::generate("stranger.test/log").unwrap(),
        leaves: Vec::new(),
    };
    stranger.grow(2, "x");
    assert_eq!(w1.add_checkpoint(&stranger.request(0, 2)).unwrap().0, 404);
    let too_old = log.request(0, 9).replacen("old 0", "old 10", 1);
    assert_eq!(w1.add_checkpoint(&too_old).unwrap().0, 400);
    assert_eq!(w1.add_checkpoint("not a request").unwrap().0, 400);

    // The stopped witness kept its state: it resumes from size 5, and the honest log goes on.
    let w3 = WitnessProcess::start(dir.path(), "w3");
    let (status, _, body) = w3.add_checkpoint(&log.request(0, 9)).unwrap();
    assert_eq!((status, body.as_str()), (409, "5\n"));
    let mut cosigned = cosign(&[&w1, &w2], &log.signed(9), &log.request(9, 9));
    let (status, _, line) = w3.add_checkpoint(&log.request(5, 9)).unwrap();
    assert_eq!(status, 200);
    cosigned.push_str(&line);
    assert_eq!(
        verify_cosigned_checkpoint(&cosigned, &policy)
            .unwrap()
            .cosigned
            .len(),
        3
    );
}
