//! `quill bench workload`: the Quill side of `scripts/pg_compare.sh`. A fixed number of
//! writers run single-document insert or update transactions (or indexed reads) for a fixed
//! time; the result is one machine-readable line on stdout, everything else goes to stderr.

use std::path::PathBuf;
use std::time::Duration;

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};

use super::ledger::XorShift;
use super::load::{self, LoadPlan, Stop, TABLE};
use super::stats::{self, fmt_duration, rate, ScratchDir};

/// The transaction each writer repeats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Insert one new document.
    Insert,
    /// Replace one random existing document (read it, write a new revision).
    Update,
    /// Find one random existing document through the index on `VIN`, write a new revision.
    IndexedUpdate,
    /// Find one random existing document through the index on `VIN`, commit without writing
    /// (a validated read-only transaction).
    IndexedRead,
}

/// Arguments of `quill bench workload`.
#[derive(clap::Args, Debug)]
pub struct WorkloadArgs {
    /// Concurrent writer threads.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub writers: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub seconds: u64,
    /// The transaction each writer repeats.
    #[arg(long, value_enum, default_value_t = Kind::Insert)]
    pub kind: Kind,
    /// Documents loaded before an update run (updates pick one at random).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub preload: u64,
    /// Directory for the scratch ledger (default: the OS temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs the workload and prints `tx_per_sec=… p50_us=… p99_us=… fsync_p50_us=…`.
pub fn run(args: WorkloadArgs) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(args.dir.as_deref(), "workload")?;
    let mut fsync = stats::fsync_baseline(scratch.path(), 200)?;
    let ledger = Ledger::create(
        &scratch.path().join("ledger"),
        "bench",
        LedgerOptions::default(),
    )?;
    let indexed = matches!(args.kind, Kind::IndexedUpdate | Kind::IndexedRead);
    load::create_table(&ledger, indexed)?;
    let ids = match args.kind {
        Kind::Insert => Vec::new(),
        Kind::Update | Kind::IndexedUpdate | Kind::IndexedRead => {
            load::load(
                &ledger,
                LoadPlan {
                    first_document: 0,
                    documents: args.preload,
                    writers: 8,
                    keep_ids: true,
                },
            )?
            .1
        }
    };
    eprintln!(
        "workload {:?}: {} writers, {} s, {}",
        args.kind,
        args.writers,
        args.seconds,
        super::machine_line()
    );
    let outcome = load::run_writers(
        args.writers as usize,
        Stop::After(Duration::from_secs(args.seconds)),
        |n| {
            match args.kind {
                Kind::Insert => {
                    ledger.transact(|tx| tx.insert(TABLE, load::vehicle(n)).map(drop))?
                }
                Kind::Update => {
                    // Seeded per iteration so writers spread over the documents without sharing state.
                    let id = &ids[XorShift::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                        .below(ids.len() as u64) as usize];
                    ledger.transact(|tx| tx.update(TABLE, id, load::vehicle(n)))?
                }
                Kind::IndexedUpdate | Kind::IndexedRead => {
                    let k =
                        XorShift::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).below(args.preload);
                    let key = Element::string(load::vin(k));
                    ledger.transact(|tx| {
                        let found = tx.index_lookup(TABLE, "VIN", &key)?.unwrap_or_default();
                        if args.kind == Kind::IndexedUpdate {
                            for doc in found {
                                // The same data: the indexed key stays, the document changes.
                                tx.update(TABLE, &doc.id, load::vehicle(k))?;
                            }
                        }
                        Ok(())
                    })?
                }
            }
            Ok(())
        },
    )
    .check("workload")?;
    let tps = rate(outcome.completed, outcome.elapsed);
    let mut latencies = outcome.latencies;
    let (p50, p99) = latencies.p50_p99();
    let fsync_p50 = fsync.percentile(50.0);
    eprintln!(
        "  {tps:.0} tx/s, p50 {}, p99 {}, fsync p50 {}",
        fmt_duration(p50),
        fmt_duration(p99),
        fmt_duration(fsync_p50)
    );
    println!(
        "tx_per_sec={tps:.1} p50_us={} p99_us={} fsync_p50_us={} writers={} kind={:?} transactions={}",
        p50.as_micros(),
        p99.as_micros(),
        fsync_p50.as_micros(),
        args.writers,
        args.kind,
        outcome.completed
    );
    Ok(())
}
