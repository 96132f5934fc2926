//! The crash-recovery benchmark: a child process (this binary, re-executed with the hidden
//! `--child-writer DIR` flag) commits 40-document transactions from many threads and
//! reports its acknowledged revisions; the parent SIGKILLs it mid-commit once enough are
//! acknowledged, then times `Ledger::open` on what is left.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quill_ledger::{Ledger, LedgerOptions};

use super::load::{self, Stop, DOCUMENTS_PER_BATCH, TABLE};
use super::stats::{self, fmt_duration, ScratchDir};
use super::summary::Summary;

/// Child writer threads: enough to keep group commits full.
const CHILD_WRITERS: usize = 16;
/// How often the child reports its count.
const REPORT_INTERVAL: Duration = Duration::from_millis(50);
/// The longest the parent waits for the child to reach its target.
const CHILD_TIMEOUT: Duration = Duration::from_secs(3_600);
/// The child stops on its own at this multiple of the target, so it ends even if the
/// parent dies before killing it.
const CHILD_OVERSHOOT: u64 = 3;

/// Parent side: build, kill, reopen, report.
pub fn run(base: Option<&Path>, revisions: u64, summary: &mut Summary) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(base, "recovery")?;
    let dir = scratch.path().join("ledger");
    let exe = std::env::current_exe()?;
    let began = Instant::now();
    let mut child = Command::new(exe)
        .args([
            "bench",
            "ledger",
            "--recovery-revisions",
            &revisions.to_string(),
            "--child-writer",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("child writer has no stdout"))?;
    let mut acknowledged = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(n) = line.strip_prefix("revisions=") {
            acknowledged = n.trim().parse()?;
        }
        if acknowledged >= revisions || began.elapsed() > CHILD_TIMEOUT {
            break;
        }
    }
    // Child::kill sends SIGKILL on Unix: no destructor, no flush, no clean shutdown.
    child.kill()?;
    let status = child.wait()?;
    let build = began.elapsed();
    anyhow::ensure!(
        acknowledged >= revisions,
        "the child writer stopped at {acknowledged} revisions ({status})"
    );
    let opened = Instant::now();
    let ledger = Ledger::open(&dir, LedgerOptions::default())?;
    let reopen = opened.elapsed();
    let report = ledger.recovery_report();
    let blocks = ledger.digest().tip.sequence_no + 1;
    let mut recovered = 0u64;
    ledger.begin()?.scan(TABLE, &mut |_| {
        recovered += 1;
        Ok(true)
    })?;
    drop(ledger);
    let clean = Instant::now();
    drop(Ledger::open(&dir, LedgerOptions::default())?);
    let clean_reopen = clean.elapsed();
    println!("\n[5] reopen after SIGKILL during commits");
    println!(
        "  child acknowledged {acknowledged} revisions in {} ({status}); {} on disk",
        fmt_duration(build),
        super::ledger::human_bytes(stats::dir_size_bytes(&dir))
    );
    println!(
        "  Ledger::open after the crash: {}  ({blocks} blocks, {recovered} documents)",
        fmt_duration(reopen)
    );
    println!("  recovery report: {report:?}");
    println!("  clean reopen afterwards: {}", fmt_duration(clean_reopen));
    anyhow::ensure!(
        recovered >= acknowledged,
        "lost acknowledged commits: {recovered} documents < {acknowledged} acknowledged"
    );
    summary.row(
        "reopen after crash",
        format!("{} ({recovered} revisions)", fmt_duration(reopen)),
        "≤ 5 s",
        Some(reopen <= Duration::from_secs(5)),
    );
    Ok(())
}

/// Child side: commit until killed (or until `CHILD_OVERSHOOT` × `target` revisions),
/// printing `revisions=N` (acknowledged, i.e. durable) every `REPORT_INTERVAL`.
pub fn child_writer(dir: &Path, target: u64) -> anyhow::Result<()> {
    let ledger = Ledger::create(dir, "bench", LedgerOptions::default())?;
    load::create_table(&ledger, true)?;
    let acknowledged = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let batches = (target * CHILD_OVERSHOOT).div_ceil(DOCUMENTS_PER_BATCH as u64);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(|| {
            let mut out = std::io::stdout().lock();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(REPORT_INTERVAL);
                // A closed pipe means the parent is gone: stop reporting, keep bounded.
                if writeln!(out, "revisions={}", acknowledged.load(Ordering::Relaxed))
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    break;
                }
            }
        });
        let outcome = load::run_writers(CHILD_WRITERS, Stop::Iterations(batches), |batch| {
            load::insert_batch(
                &ledger,
                batch * DOCUMENTS_PER_BATCH as u64,
                DOCUMENTS_PER_BATCH,
            )?;
            acknowledged.fetch_add(DOCUMENTS_PER_BATCH as u64, Ordering::Relaxed);
            Ok(())
        });
        done.store(true, Ordering::Relaxed);
        outcome.check("child writer")?;
        Ok(())
    })
}
