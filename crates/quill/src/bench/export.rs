//! `quill bench export`: journal export rate (blocks/s, MB/s) on a ledger of many one-insert
//! blocks, in every output format, to a local directory, while a writer keeps committing (an
//! export reads the journal through the ledger's read API and must not stop commits).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quill_export::engine::new_export_id;
use quill_export::time::now_millis;
use quill_export::{run_export, DirSink, ExportOptions, ExportSpec, OutputFormat};
use quill_ledger::{Ledger, LedgerOptions};

use super::load::{self, Stop};
use super::stats::{fmt_duration, rate, Latencies, ScratchDir};

/// Writers that build the ledger (enough to fill group commits).
const BUILD_WRITERS: usize = 32;

/// Arguments of `quill bench export`.
#[derive(clap::Args, Debug)]
pub struct ExportBenchArgs {
    /// Blocks in the ledger before the exports (one insert per block).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(3..=100_000_000))]
    pub blocks: u64,
    /// Directory for the scratch ledger and exports (default: the OS temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Builds the ledger, then exports it once per format and prints each rate.
pub fn run(args: ExportBenchArgs) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(args.dir.as_deref(), "export")?;
    let ledger = Ledger::create(
        &scratch.path().join("ledger"),
        "bench",
        LedgerOptions::default(),
    )?;
    load::create_table(&ledger, false)?;
    eprintln!(
        "export bench: {} blocks, {}",
        args.blocks,
        super::machine_line()
    );
    let built = load::run_writers(BUILD_WRITERS, Stop::Iterations(args.blocks - 2), |n| {
        load::insert_batch(&ledger, n, 1)?;
        Ok(())
    })
    .check("building the ledger")?;
    println!(
        "built {} blocks in {} ({:.0} tx/s)",
        args.blocks,
        fmt_duration(built.elapsed),
        rate(built.completed, built.elapsed)
    );
    let mut next_document = args.blocks;
    for format in [
        OutputFormat::IonText,
        OutputFormat::IonBinary,
        OutputFormat::Json,
    ] {
        let out = scratch.path().join(format.name());
        let sink = DirSink::new(&out)?;
        let spec = ExportSpec {
            ledger_name: "bench".into(),
            export_id: new_export_id(),
            inclusive_start_millis: 0,
            exclusive_end_millis: now_millis(),
            bucket: out.display().to_string(),
            prefix: String::new(),
            object_encryption_type: "NO_ENCRYPTION".into(),
            output_format: Some(format),
        };
        let exporting = AtomicBool::new(true);
        let (summary, elapsed, mut commits, committing) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let mut latencies = Latencies::new();
                let began = Instant::now();
                let mut n = next_document;
                while exporting.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    load::insert_batch(&ledger, n, 1)?;
                    latencies.record(start.elapsed());
                    n += 1;
                }
                anyhow::Ok((latencies, began.elapsed()))
            });
            let began = Instant::now();
            let summary = run_export(
                &ledger,
                &spec,
                ExportOptions::default(),
                &sink,
                &mut |_, _| {},
            );
            let elapsed = began.elapsed();
            exporting.store(false, Ordering::Relaxed);
            let (commits, committing) = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
            anyhow::Ok((summary?, elapsed, commits, committing))
        })?;
        next_document += commits.len() as u64;
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let (p50, p99) = commits.p50_p99();
        println!(
            "{:<10} {} blocks, {:.1} MB, {} objects in {}: {:.0} blocks/s, {:.1} MB/s; \
             meanwhile 1 writer committed {} tx ({:.0} tx/s, p50 {}, p99 {})",
            format.name(),
            summary.blocks,
            summary.bytes as f64 / 1e6,
            summary.keys.len(),
            fmt_duration(elapsed),
            summary.blocks as f64 / seconds,
            summary.bytes as f64 / 1e6 / seconds,
            commits.len(),
            rate(
                commits.len() as u64,
                committing.max(Duration::from_micros(1))
            ),
            fmt_duration(p50),
            fmt_duration(p99),
        );
        std::fs::remove_dir_all(&out)?;
    }
    Ok(())
}
