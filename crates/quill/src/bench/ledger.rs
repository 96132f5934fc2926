//! `quill bench ledger`: the engine measured in-process, against the raw fsync latency of
//! the same disk in the same run. Six sections (fsync, commit, lookup, proofs, recovery,
//! rss), each printing its figures as it goes, then a summary table against the goals.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_verify::Hash;

use super::load::{self, LoadPlan, Stop, TABLE};
use super::recovery;
use super::stats::{self, fmt_duration, rate, ratio, Latencies, ScratchDir};
use super::summary::Summary;

/// Timed samples per proof / lookup measurement: enough for p99, bounded.
const PROOF_SAMPLES_MAX: usize = 2_000;
/// Receipts kept from the proof ledger's build to pick proof targets from.
const PROOF_TARGETS_MAX: u64 = 4_000;
/// Writers used to build large ledgers: enough to fill group commits of 256.
const BUILD_WRITERS: usize = 64;
/// Writers used to load documents in 40-document transactions.
const LOAD_WRITERS: usize = 32;
/// Memory samples in the RSS series.
const RSS_SAMPLES: u64 = 10;

/// The sections of `quill bench ledger`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Raw write + fdatasync latency.
    Fsync,
    /// Durable single-document commits at several concurrencies.
    Commit,
    /// Indexed point lookups and full-table scans.
    Lookup,
    /// Digest and proof generation and verification on a large ledger.
    Proofs,
    /// Reopen time after SIGKILL during commits.
    Recovery,
    /// Resident memory while loading many revisions.
    Rss,
}

/// Arguments of `quill bench ledger`.
#[derive(clap::Args, Debug)]
pub struct LedgerArgs {
    /// Smaller sizes (100 k-block proof ledger, 1 M-revision RSS load, 2 s per concurrency).
    #[arg(long)]
    pub quick: bool,
    /// Run only these sections (comma-separated); all by default. fsync always runs.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Section>,
    /// Directory for scratch ledgers (default: the OS temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// fsync samples for the baseline.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(200..=100_000))]
    pub fsync_samples: u64,
    /// Concurrent writer counts for the commit section.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    pub writers: Vec<usize>,
    /// Seconds per writer count in the commit section (default 5, quick 2).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub commit_seconds: Option<u64>,
    /// Documents in the lookup/scan table.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub lookup_documents: u64,
    /// Blocks in the proof ledger (default 1 M, quick 100 k).
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=100_000_000))]
    pub proof_blocks: Option<u64>,
    /// Revisions committed before the crash in the recovery section (default 1 M).
    #[arg(long, value_parser = clap::value_parser!(u64).range(40..=1_000_000_000))]
    pub recovery_revisions: Option<u64>,
    /// Revisions loaded in the RSS section (default 10 M, quick 1 M).
    #[arg(long, value_parser = clap::value_parser!(u64).range(400..=1_000_000_000))]
    pub rss_revisions: Option<u64>,
    /// Internal: run as the recovery section's child writer in this directory.
    #[arg(long, hide = true)]
    pub child_writer: Option<PathBuf>,
}

/// Runs `quill bench ledger`.
pub fn run(args: LedgerArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.child_writer {
        return recovery::child_writer(dir, args.recovery_revisions.unwrap_or(1_000_000));
    }
    let base = args.dir.as_deref();
    let wants = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let mut summary = Summary::new();
    println!(
        "quill bench ledger{} — {}",
        if args.quick { " --quick" } else { "" },
        super::machine_line()
    );
    let scratch = ScratchDir::new(base, "fsync")?;
    let mut fsync = stats::fsync_baseline(scratch.path(), args.fsync_samples as usize)?;
    let (fsync_p50, fsync_p99) = fsync.p50_p99();
    println!(
        "\n[1] raw fsync (write 200 B + fdatasync, {} samples): p50 {}  p99 {}",
        fsync.len(),
        fmt_duration(fsync_p50),
        fmt_duration(fsync_p99)
    );
    let mut overwrite =
        stats::fsync_overwrite_baseline(scratch.path(), args.fsync_samples as usize)?;
    let (overwrite_p50, overwrite_p99) = overwrite.p50_p99();
    println!(
        "    same disk, overwriting pre-written blocks (pwrite 200 B + fdatasync): p50 {}  p99 {}",
        fmt_duration(overwrite_p50),
        fmt_duration(overwrite_p99)
    );
    summary.row("fsync p50 (baseline)", fmt_duration(fsync_p50), "-", None);
    summary.row(
        "fsync p50, overwriting pre-written blocks",
        fmt_duration(overwrite_p50),
        "-",
        None,
    );
    if wants(Section::Commit) {
        let seconds = args
            .commit_seconds
            .unwrap_or(if args.quick { 2 } else { 5 });
        commit_section(
            base,
            &args.writers,
            Duration::from_secs(seconds),
            fsync_p50,
            &mut summary,
        )?;
    }
    if wants(Section::Lookup) {
        lookup_section(
            base,
            args.lookup_documents,
            if args.quick { 1 } else { 3 },
            &mut summary,
        )?;
    }
    if wants(Section::Proofs) {
        let blocks = args
            .proof_blocks
            .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
        proof_section(base, blocks, &mut summary)?;
    }
    if wants(Section::Recovery) {
        let revisions = args.recovery_revisions.unwrap_or(1_000_000);
        recovery::run(base, revisions, &mut summary)?;
    }
    if wants(Section::Rss) {
        let revisions =
            args.rss_revisions
                .unwrap_or(if args.quick { 1_000_000 } else { 10_000_000 });
        rss_section(base, revisions, &mut summary)?;
    }
    summary.print();
    Ok(())
}

fn new_ledger(dir: &Path, with_index: bool) -> anyhow::Result<Ledger> {
    let ledger = Ledger::create(&dir.join("ledger"), "bench", LedgerOptions::default())?;
    load::create_table(&ledger, with_index)?;
    Ok(ledger)
}

/// One durable single-document insert per transaction, at each writer count.
fn commit_section(
    base: Option<&Path>,
    writers: &[usize],
    duration: Duration,
    fsync_p50: Duration,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(base, "commit")?;
    let ledger = new_ledger(scratch.path(), false)?;
    println!(
        "\n[2] durable single-document commits, {} s per writer count",
        duration.as_secs()
    );
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>14}",
        "writers", "tx/s", "p50", "p99", "p50 / fsync"
    );
    for &count in writers.iter().take(16) {
        let outcome = load::run_writers(count, Stop::After(duration), |n| {
            ledger.transact(|tx| tx.insert(TABLE, load::vehicle(n)))?;
            Ok(())
        })
        .check("commit benchmark")?;
        let tps = rate(outcome.completed, outcome.elapsed);
        let mut latencies = outcome.latencies;
        let (p50, p99) = latencies.p50_p99();
        let over_fsync = ratio(p50, fsync_p50);
        println!(
            "{count:>8} {tps:>12.0} {:>12} {:>12} {over_fsync:>13.2}×",
            fmt_duration(p50),
            fmt_duration(p99)
        );
        if count == 1 {
            summary.row(
                "1-writer commit p50 / fsync p50",
                format!("{over_fsync:.2}× ({})", fmt_duration(p50)),
                "≤ 1.2×",
                Some(over_fsync <= 1.2),
            );
        }
        if count == 32 {
            summary.row(
                "32-writer durable commits",
                format!("{tps:.0} tx/s"),
                "≥ 25,000 tx/s",
                Some(tps >= 25_000.0),
            );
        }
    }
    Ok(())
}

/// A tiny xorshift generator: benchmark targets need spread, not statistical quality, and
/// the binary does not depend on `rand`.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// Indexed point lookups and full-table scans over `documents` documents.
fn lookup_section(
    base: Option<&Path>,
    documents: u64,
    scan_passes: u32,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(base, "lookup")?;
    let ledger = new_ledger(scratch.path(), true)?;
    let plan = LoadPlan {
        first_document: 0,
        documents,
        writers: LOAD_WRITERS,
        keep_ids: false,
    };
    let (loaded, _) = load::load(&ledger, plan)?;
    println!(
        "\n[3] lookups and scans on {documents} documents with an index on VIN (loaded in {})",
        fmt_duration(loaded.elapsed)
    );
    let mut random = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut lookup_only = Latencies::new();
    let mut with_begin = Latencies::new();
    for _ in 0..PROOF_SAMPLES_MAX * 5 {
        let key = Element::string(load::vin(random.below(documents)));
        let began = Instant::now();
        let mut tx = ledger.begin()?;
        let looked_up = Instant::now();
        let found = tx.index_lookup(TABLE, "VIN", &key)?;
        lookup_only.record(looked_up.elapsed());
        with_begin.record(began.elapsed());
        anyhow::ensure!(
            found.map_or(0, |docs| docs.len()) == 1,
            "index lookup of {key} did not find exactly one document"
        );
    }
    let (p50, p99) = lookup_only.p50_p99();
    let (tx_p50, tx_p99) = with_begin.p50_p99();
    println!(
        "  index_lookup in an open transaction: p50 {}  p99 {}",
        fmt_duration(p50),
        fmt_duration(p99)
    );
    println!(
        "  begin + index_lookup:                p50 {}  p99 {}",
        fmt_duration(tx_p50),
        fmt_duration(tx_p99)
    );
    summary.row(
        "indexed point lookup p50",
        fmt_duration(p50),
        "≤ 20 µs",
        Some(p50 <= Duration::from_micros(20)),
    );
    summary.row(
        "begin + indexed lookup p50",
        fmt_duration(tx_p50),
        "-",
        None,
    );
    let pattern_rate = scan_rate(&ledger, documents, scan_passes, ScanCheck::BytePattern)?;
    let decode_rate = scan_rate(&ledger, documents, scan_passes, ScanCheck::DecodeField)?;
    println!("  full scan, byte-pattern filter: {pattern_rate:.0} documents/s");
    println!("  full scan, decode + field filter: {decode_rate:.0} documents/s");
    summary.row(
        "full scan (byte filter)",
        format!("{pattern_rate:.0} docs/s"),
        "-",
        None,
    );
    summary.row(
        "full scan (decode filter)",
        format!("{decode_rate:.0} docs/s"),
        "-",
        None,
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum ScanCheck {
    /// Match the Ion bytes of the string "Red": what a lazy evaluator can do before decoding.
    BytePattern,
    /// Decode the document and compare its `Color` field.
    DecodeField,
}

/// Best documents/s over `passes` full scans counting red vehicles.
fn scan_rate(
    ledger: &Ledger,
    documents: u64,
    passes: u32,
    check: ScanCheck,
) -> anyhow::Result<f64> {
    // Ion binary short string "Red": type 8 (string), length 3, then the UTF-8 bytes.
    const RED: &[u8] = &[0x83, b'R', b'e', b'd'];
    let mut best: f64 = 0.0;
    for _ in 0..passes.clamp(1, 10) {
        let mut tx = ledger.begin()?;
        let (mut visited, mut matched) = (0u64, 0u64);
        let began = Instant::now();
        tx.scan(TABLE, &mut |doc| {
            visited += 1;
            let hit = match check {
                ScanCheck::BytePattern => doc.ion.windows(RED.len()).any(|w| w == RED),
                ScanCheck::DecodeField => {
                    let data = doc.decode()?;
                    data.as_struct()
                        .and_then(|s| s.get("Color"))
                        .and_then(Element::as_text)
                        == Some("Red")
                }
            };
            matched += u64::from(hit);
            Ok(true)
        })?;
        let elapsed = began.elapsed();
        anyhow::ensure!(
            visited == documents,
            "scan visited {visited} documents, expected {documents}"
        );
        anyhow::ensure!(
            matched == documents.div_ceil(4),
            "scan matched {matched} red vehicles, expected {}",
            documents.div_ceil(4)
        );
        best = best.max(rate(visited, elapsed));
    }
    Ok(best)
}

/// A block and the one revision it holds: a proof target.
struct ProofTarget {
    sequence_no: u64,
    document_id: String,
}

/// Digest, block and revision proofs, and their verification, on a ledger of `blocks` blocks.
fn proof_section(base: Option<&Path>, blocks: u64, summary: &mut Summary) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(base, "proofs")?;
    let ledger = new_ledger(scratch.path(), false)?;
    let to_build = blocks.saturating_sub(2); // genesis and CREATE TABLE are blocks already
    let keep_every = (to_build / PROOF_TARGETS_MAX).max(1);
    let targets = std::sync::Mutex::new(Vec::new());
    let built = load::run_writers(BUILD_WRITERS, Stop::Iterations(to_build), |n| {
        let mut tx = ledger.begin()?;
        let id = tx.insert(TABLE, load::vehicle(n))?;
        let receipt = tx.commit()?;
        if n % keep_every == 0 {
            let sequence_no = receipt
                .block_address
                .map(|a| a.sequence_no)
                .ok_or_else(|| anyhow::anyhow!("an insert committed without a block"))?;
            targets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ProofTarget {
                    sequence_no,
                    document_id: id,
                });
        }
        Ok(())
    })
    .check("building the proof ledger")?;
    let digest = ledger.digest();
    let tip = digest.tip.sequence_no;
    println!(
        "\n[4] proofs on {} blocks (built with {BUILD_WRITERS} writers in {}: {:.0} blocks/s, {} on disk)",
        tip + 1,
        fmt_duration(built.elapsed),
        rate(built.completed, built.elapsed),
        human_bytes(stats::dir_size_bytes(scratch.path())),
    );
    summary.row(
        "proof ledger build",
        format!("{} blocks in {}", tip + 1, fmt_duration(built.elapsed)),
        "-",
        None,
    );
    let targets = targets.into_inner().unwrap_or_else(|p| p.into_inner());
    anyhow::ensure!(!targets.is_empty(), "no proof targets were recorded");
    let mut t = ProofTimes::default();
    let mut random = XorShift::new(0x2545_f491_4f6c_dd1d);
    for _ in 0..PROOF_SAMPLES_MAX {
        let target = &targets[random.below(targets.len() as u64) as usize];
        time_one_proof(&ledger, target, &mut t)?;
    }
    t.print(summary);
    Ok(())
}

#[derive(Default)]
struct ProofTimes {
    digest: Latencies,
    block_proof: Latencies,
    revision_proof: Latencies,
    generate_all: Latencies,
    verify_block: Latencies,
    verify_revision: Latencies,
}

impl ProofTimes {
    fn print(&mut self, summary: &mut Summary) {
        let line = |name: &str, l: &mut Latencies| {
            let (p50, p99) = l.p50_p99();
            println!(
                "  {name:<42} p50 {:>10}  p99 {:>10}",
                fmt_duration(p50),
                fmt_duration(p99)
            );
            p50
        };
        line("digest()", &mut self.digest);
        line("block_proof", &mut self.block_proof);
        line("revision_proof", &mut self.revision_proof);
        let generate = line(
            "digest + block_proof + revision_proof",
            &mut self.generate_all,
        );
        line("verify block proof", &mut self.verify_block);
        let verify = line("verify revision proof", &mut self.verify_revision);
        summary.row(
            "digest + both proofs p50",
            fmt_duration(generate),
            "≤ 50 µs",
            Some(generate <= Duration::from_micros(50)),
        );
        summary.row(
            "revision proof verify p50",
            fmt_duration(verify),
            "≤ 20 µs",
            Some(verify <= Duration::from_micros(20)),
        );
    }
}

fn time_one_proof(ledger: &Ledger, target: &ProofTarget, t: &mut ProofTimes) -> anyhow::Result<()> {
    let began = Instant::now();
    let digest = ledger.digest();
    t.digest.record(began.elapsed());
    let tip = digest.tip.sequence_no;
    let step = Instant::now();
    let block_proof = ledger.block_proof(target.sequence_no, tip)?;
    t.block_proof.record(step.elapsed());
    let step = Instant::now();
    let revision_proof = ledger.revision_proof(target.sequence_no, &target.document_id, tip)?;
    t.revision_proof.record(step.elapsed());
    t.generate_all.record(began.elapsed());
    // The hashes a client would hold: taken outside the timed region.
    let block_hash = block_hash(ledger, target.sequence_no)?;
    let revision_hash = ledger
        .revision(target.sequence_no, &target.document_id)?
        .hash;
    let step = Instant::now();
    quill_verify::verify_proof(&block_hash, &block_proof, &digest.digest)?;
    t.verify_block.record(step.elapsed());
    let step = Instant::now();
    quill_verify::verify_proof(&revision_hash, &revision_proof, &digest.digest)?;
    t.verify_revision.record(step.elapsed());
    Ok(())
}

fn block_hash(ledger: &Ledger, sequence_no: u64) -> anyhow::Result<Hash> {
    let block = ledger.block(sequence_no)?;
    block
        .as_struct()
        .and_then(|s| s.get("blockHash"))
        .and_then(Element::as_blob)
        .and_then(Hash::from_slice)
        .ok_or_else(|| anyhow::anyhow!("block {sequence_no} has no blockHash"))
}

/// Loads `revisions` documents in 40-document transactions, sampling memory as it goes.
fn rss_section(base: Option<&Path>, revisions: u64, summary: &mut Summary) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(base, "rss")?;
    // Reset VmHWM so the peak reflects this section, not the earlier ones (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let ledger = new_ledger(scratch.path(), false)?;
    let step = revisions.div_ceil(RSS_SAMPLES);
    println!("\n[6] memory while loading {revisions} revisions (40 per transaction, {LOAD_WRITERS} writers)");
    let (rss0, _) = stats::memory_kib().unwrap_or_default();
    println!(
        "{:>12} {:>10} {:>10} {:>12} {:>12}",
        "revisions", "VmRSS MiB", "VmHWM MiB", "on disk", "revisions/s"
    );
    println!(
        "{:>12} {:>10.0} {:>10} {:>12} {:>12}",
        0,
        rss0 as f64 / 1024.0,
        "-",
        "-",
        "-"
    );
    let (mut first_rss, mut middle_rss, mut last_rss, mut peak) = (0u64, 0u64, 0u64, 0u64);
    let began = Instant::now();
    for i in 0..RSS_SAMPLES {
        let first_document = i * step;
        let documents = step.min(revisions.saturating_sub(first_document));
        if documents == 0 {
            break;
        }
        let plan = LoadPlan {
            first_document,
            documents,
            writers: LOAD_WRITERS,
            keep_ids: false,
        };
        let (outcome, _) = load::load(&ledger, plan)?;
        let (rss, hwm) = stats::memory_kib().unwrap_or_default();
        if i == 0 {
            first_rss = rss;
        }
        if i == RSS_SAMPLES / 2 - 1 {
            middle_rss = rss;
        }
        (last_rss, peak) = (rss, peak.max(hwm));
        let done = first_document + documents;
        let disk = human_bytes(stats::dir_size_bytes(scratch.path()));
        let speed = rate(documents, outcome.elapsed);
        println!(
            "{done:>12} {:>10.0} {:>10.0} {disk:>12} {speed:>12.0}",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    println!("  loaded in {}", fmt_duration(began.elapsed()));
    // Caches fill first; "flat" means the second half of the load adds little (≤ 10 %).
    let second_half_growth = last_rss as f64 / middle_rss.max(1) as f64;
    summary.row(
        "VmRSS first → middle → last sample",
        format!(
            "{:.0} → {:.0} → {:.0} MiB (peak {:.0})",
            first_rss as f64 / 1024.0,
            middle_rss as f64 / 1024.0,
            last_rss as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        "flat in the 2nd half",
        Some(second_half_growth <= 1.1),
    );
    Ok(())
}

/// Bytes as KiB/MiB/GiB.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_stays_below_its_bound_and_spreads() {
        let mut r = XorShift::new(42);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            let v = r.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn scans_count_matching_documents_both_ways() {
        let scratch = ScratchDir::new(None, "scan-test").unwrap();
        let ledger = new_ledger(scratch.path(), true).unwrap();
        load::load(
            &ledger,
            LoadPlan {
                first_document: 0,
                documents: 10,
                writers: 2,
                keep_ids: false,
            },
        )
        .unwrap();
        assert!(scan_rate(&ledger, 10, 1, ScanCheck::BytePattern).unwrap() > 0.0);
        assert!(scan_rate(&ledger, 10, 1, ScanCheck::DecodeField).unwrap() > 0.0);
        // A wrong expected count is reported, not ignored.
        assert!(scan_rate(&ledger, 11, 1, ScanCheck::BytePattern).is_err());
    }

    #[test]
    fn proofs_on_a_small_ledger_verify() {
        let scratch = ScratchDir::new(None, "proof-test").unwrap();
        let ledger = new_ledger(scratch.path(), false).unwrap();
        let mut tx = ledger.begin().unwrap();
        let id = tx.insert(TABLE, load::vehicle(1)).unwrap();
        let sequence_no = tx.commit().unwrap().block_address.unwrap().sequence_no;
        let mut t = ProofTimes::default();
        time_one_proof(
            &ledger,
            &ProofTarget {
                sequence_no,
                document_id: id,
            },
            &mut t,
        )
        .unwrap();
        assert_eq!(t.verify_revision.len(), 1);
        let wrong = ProofTarget {
            sequence_no,
            document_id: "no-such-document-id-00".into(),
        };
        assert!(time_one_proof(&ledger, &wrong, &mut t).is_err());
    }

    #[test]
    fn human_bytes_picks_units() {
        assert_eq!(human_bytes(512), "0.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
    }
}
