//! `quill bench export`: journal export rate (blocks/s, MB/s) on a ledger of many one-insert
//! blocks, in every output format, to a local directory or an S3-compatible store, while a
//! writer keeps committing (an export reads the journal through the ledger's read API and must
//! not stop commits).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quill_export::engine::new_export_id;
use quill_export::s3::{S3Settings, S3Sink};
use quill_export::time::now_millis;
use quill_export::{
    run_export, write_started_manifest, DirSink, ExportOptions, ExportSpec, ObjectSink,
    OutputFormat,
};
use quill_ledger::{Ledger, LedgerOptions};

use super::load::{self, Stop};
use super::stats::{fmt_duration, rate, Latencies, ScratchDir};
use crate::export::{location, Location};

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
    /// Export to `s3://bucket/prefix` instead (one `FORMAT/` prefix per format, kept), with the
    /// endpoint and credentials `quill export` takes (`AWS_ENDPOINT_URL_S3`, ...).
    #[arg(long, value_name = "s3://bucket/prefix")]
    pub to: Option<String>,
}

/// Where each format's export goes: a scratch directory (removed after it) or an S3 prefix.
enum Target {
    Scratch,
    S3 {
        bucket: String,
        prefix: String,
        settings: S3Settings,
    },
}

impl Target {
    fn parse(to: Option<&str>) -> anyhow::Result<Target> {
        match to.map(|to| location(to, "--to")).transpose()? {
            None => Ok(Target::Scratch),
            Some(Location::S3 { bucket, prefix }) => Ok(Target::S3 {
                bucket,
                prefix,
                settings: S3Settings::from_environment()?,
            }),
            Some(Location::Dir(_)) => anyhow::bail!("--to takes s3://bucket/prefix (or use --dir)"),
        }
    }

    /// The sink, bucket (or directory) and prefix of `format`'s export.
    fn sink(
        &self,
        scratch: &ScratchDir,
        format: OutputFormat,
    ) -> anyhow::Result<(Box<dyn ObjectSink>, String, String)> {
        Ok(match self {
            Target::Scratch => {
                let out = scratch.path().join(format.name());
                let sink = DirSink::new(&out)?;
                (Box::new(sink), out.display().to_string(), String::new())
            }
            Target::S3 {
                bucket,
                prefix,
                settings,
            } => {
                let sink = S3Sink::new(bucket, "NO_ENCRYPTION", None, settings)?;
                let prefix = format!("{prefix}{}/", format.name());
                (Box::new(sink), bucket.clone(), prefix)
            }
        })
    }
}

/// Builds the ledger, then exports it once per format and prints each rate.
pub fn run(args: ExportBenchArgs) -> anyhow::Result<()> {
    let target = Target::parse(args.to.as_deref())?;
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
        let (sink, bucket, prefix) = target.sink(&scratch, format)?;
        let spec = ExportSpec {
            ledger_name: "bench".into(),
            export_id: new_export_id(),
            inclusive_start_millis: 0,
            exclusive_end_millis: now_millis(),
            bucket,
            prefix,
            object_encryption_type: "NO_ENCRYPTION".into(),
            output_format: Some(format),
        };
        // Untimed: one small object; with it a kept S3 export is complete (`quill import` reads it).
        write_started_manifest(&spec, sink.as_ref())?;
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
                sink.as_ref(),
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
            "{:<10} {} blocks, {:.1} MB, {} objects to {} in {}: {:.0} blocks/s, {:.1} MB/s; \
             meanwhile 1 writer committed {} tx ({:.0} tx/s, p50 {}, p99 {})",
            format.name(),
            summary.blocks,
            summary.bytes as f64 / 1e6,
            summary.keys.len(),
            sink.location(),
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
        if let Target::Scratch = target {
            std::fs::remove_dir_all(scratch.path().join(format.name()))?;
        }
    }
    Ok(())
}
