//! `quill bench dmv`, briefly, as a user runs it: the in-process server, two sessions, one
//! second; every transaction kind of the mix must have committed.

use std::process::Command;

#[test]
fn dmv_bench_commits_every_kind_of_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["bench", "dmv", "--seconds", "1", "--sessions", "2"])
        .args(["--preload", "60", "--dir"])
        .arg(dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("quill runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let committed = |kind: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("dmv sessions=2 ") && l.contains(&format!(" kind={kind} ")))
            .unwrap_or_else(|| panic!("no {kind} line in {stdout}"));
        line.split(' ')
            .find_map(|pair| pair.strip_prefix("transactions="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no transaction count in {line}"))
    };
    let kinds = ["lookup", "transfer", "secondary-owner", "history"];
    for kind in kinds {
        assert!(
            committed(kind) > 0,
            "no {kind} transaction committed:\n{stdout}"
        );
    }
    assert_eq!(
        committed("total"),
        kinds.iter().map(|k| committed(k)).sum::<u64>(),
        "{stdout}"
    );
}
