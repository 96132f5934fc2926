//! Crash safety: acknowledged commits survive SIGKILL at random moments; torn tails are cut;
//! corruption is reported with its block address.
//!
//! The crash test re-runs this test binary as a child process (`QUILL_CRASH_CHILD=<dir>`)
//! that commits from several threads and prints `ACK <document id>` after each acknowledged
//! commit; the parent kills it with SIGKILL, reopens the ledger and checks every
//! acknowledged document is there and the whole chain verifies.
//!
//! Embedded only: these are the embedded backend's journal files (torn tails, flipped bytes)
//! and its recovery from them. On the PostgreSQL backend a SIGKILLed server and a SIGKILLed
//! PostgreSQL primary are tested in tests/python/test_postgres_backend.py.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError, LedgerOptions};

const CHILD_ENV: &str = "QUILL_CRASH_CHILD";
const IDLE_CHILD_ENV: &str = "QUILL_IDLE_CHILD";
const ROUNDS: usize = 20;
const WRITER_THREADS: usize = 4;

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

/// The child role: commit forever until killed.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let ledger = Ledger::open(Path::new(&dir), LedgerOptions::default()).unwrap();
    let threads: Vec<_> = (0..WRITER_THREADS)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let id = ledger
                        .transact(|tx| tx.insert("T", ion(&format!("{{t: {t}, i: {i}}}"))))
                        .unwrap();
                    // One write per line, so the parent never sees half an id.
                    println!("ACK {id}");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

/// The idle child: commits a few hundred transactions, then idles until killed.
#[test]
fn idle_child_writer() {
    let Ok(dir) = std::env::var(IDLE_CHILD_ENV) else {
        return;
    };
    let ledger = Ledger::open(Path::new(&dir), LedgerOptions::default()).unwrap();
    for i in 0..300 {
        ledger
            .transact(|tx| tx.insert("T", ion(&format!("{{i: {i}}}"))))
            .unwrap();
    }
    println!("IDLE");
    std::thread::sleep(Duration::from_secs(60));
}

/// An idle ledger writes its derived state to redb durably: killed while idle, it reopens
/// without replaying any block.
#[test]
fn an_idle_ledger_killed_replays_nothing() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(IDLE_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::create(dir.path(), "idle", LedgerOptions::default()).unwrap();
        ledger
            .transact(|tx| tx.create_table("T", None).map(|_| ()))
            .unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idle_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IDLE_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // libtest may print "test idle_child_writer ... " on the same line first.
    let idle = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with("IDLE"));
    assert!(idle, "the child committed and went idle");
    // Idle flushes start 50 ms after the last commit; give them ample time on a slow disk.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    assert_eq!(ledger.recovery_report().blocks_replayed, 0);
    let count = ledger
        .transact(|tx| {
            let mut n = 0;
            tx.scan("T", &mut |_| {
                n += 1;
                Ok(true)
            })?;
            Ok(n)
        })
        .unwrap();
    assert_eq!(count, 300);
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(IDLE_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::create(dir.path(), "crash", LedgerOptions::default()).unwrap();
        ledger
            .transact(|tx| tx.create_table("T", None).map(|_| ()))
            .unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged: Vec<String> = Vec::new();
    // A fixed pseudo-random schedule of kill delays (reproducible, 20–220 ms).
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(20 + seed % 200);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("ACK ") {
                    let _ = lines.send(id.to_owned());
                }
            }
        });
        let started = Instant::now();
        // Wait for the child to commit something (it reopens, possibly recovering), then let it run.
        let first = received
            .recv_timeout(Duration::from_secs(30))
            .expect("child commits");
        acknowledged.push(first);
        let deadline = Instant::now() + delay;
        while let Ok(id) = received.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            acknowledged.push(id);
            if Instant::now() >= deadline {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines the child printed before dying were acknowledged too.
        acknowledged.extend(received.try_iter());
        let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
        let missing: Vec<&String> = ledger
            .transact(|tx| {
                let mut missing = Vec::new();
                for id in &acknowledged {
                    if tx.get("T", id)?.is_none() {
                        missing.push(id);
                    }
                }
                Ok(missing)
            })
            .unwrap();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged but lost: {missing:?}"
        );
        let blocks = ledger.verify(&mut |_, _| {}).unwrap();
        assert!(blocks as usize >= acknowledged.len() + 2, "round {round}");
        eprintln!(
            "round {round}: {} acknowledged in total, killed after {:?}, {:?}",
            acknowledged.len(),
            started.elapsed(),
            ledger.recovery_report()
        );
    }
    assert!(
        acknowledged.len() > ROUNDS,
        "the child committed in every round"
    );
}

fn journal_data_file(dir: &Path) -> std::path::PathBuf {
    let journal = dir.join("journal");
    let mut files: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "idx" && e != "index"))
        .collect();
    files.sort();
    files.pop().expect("a journal segment")
}

fn ledger_with_blocks(dir: &Path, inserts: usize) -> quill_ledger::LedgerDigest {
    let ledger = Ledger::create(dir, "corrupt", LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| tx.create_table("T", None).map(|_| ()))
        .unwrap();
    for i in 0..inserts {
        ledger
            .transact(|tx| {
                tx.insert(
                    "T",
                    ion(&format!("{{i: {i}, pad: \"{}\"}}", "p".repeat(200))),
                )
            })
            .unwrap();
    }
    ledger.digest()
}

#[test]
fn a_flipped_byte_in_the_middle_is_reported_with_its_block_address() {
    let dir = tempfile::tempdir().unwrap();
    let digest = ledger_with_blocks(dir.path(), 20);
    let file = journal_data_file(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    match Ledger::open(dir.path(), LedgerOptions::default()) {
        Err(LedgerError::Corrupted {
            block_address,
            detail,
        }) => {
            assert_eq!(block_address.strand_id, digest.tip.strand_id);
            assert!(
                (1..=20).contains(&block_address.sequence_no),
                "{block_address:?}: {detail}"
            );
        }
        Err(other) => panic!("expected Corrupted, got {other}"),
        Ok(_) => panic!("a corrupted journal must not open silently"),
    }
}

#[test]
fn a_truncated_tail_recovers_to_the_last_complete_block() {
    let dir = tempfile::tempdir().unwrap();
    let digest = ledger_with_blocks(dir.path(), 10);
    let file = journal_data_file(dir.path());
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    let report = ledger.recovery_report();
    assert!(report.torn_tail_bytes > 0, "{report:?}");
    assert!(
        report.state_rebuilt,
        "derived state reflected the cut block: {report:?}"
    );
    assert_eq!(ledger.digest().tip.sequence_no, digest.tip.sequence_no - 1);
    assert_eq!(
        ledger.verify(&mut |_, _| {}).unwrap(),
        digest.tip.sequence_no
    );
    // The ledger keeps working after recovery.
    ledger
        .transact(|tx| tx.insert("T", ion("{after: 1}")))
        .unwrap();
    assert_eq!(ledger.digest().tip.sequence_no, digest.tip.sequence_no);
}

/// A document may hold a byte-for-byte copy of real journal frames. When the frame of the
/// block holding it is torn, open cuts it as a torn tail: the copies inside the document are
/// not taken for later frames proving the torn block durable.
#[test]
fn a_document_holding_frame_copies_does_not_turn_a_torn_tail_into_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let digest = ledger_with_blocks(dir.path(), 5);
    let file = journal_data_file(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    // A clean close trims the segment to its last frame: everything after the 128-byte
    // segment header is valid frames, the last one with the highest sequence number.
    let escaped: String = bytes[128..].iter().map(|b| format!("\\x{b:02x}")).collect();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| tx.insert("T", ion(&format!("{{frames: {{{{\"{escaped}\"}}}}}}"))))
        .unwrap();
    drop(ledger);
    // Tear the new block's frame header: its first byte follows the old end of the file.
    let mut torn = std::fs::read(&file).unwrap();
    torn[bytes.len()] ^= 0xff;
    std::fs::write(&file, torn).unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    assert!(ledger.recovery_report().torn_tail_bytes > 0);
    assert_eq!(ledger.digest().tip.sequence_no, digest.tip.sequence_no);
    assert_eq!(
        ledger.verify(&mut |_, _| {}).unwrap(),
        digest.tip.sequence_no + 1
    );
}
