//! `quill bench`: in-process ledger benchmarks, a QLDB wire-protocol load generator and the
//! workload driver used by `scripts/pg_compare.sh`.
//!
//! Figures are printed, never asserted: the machine is shared and noisy, so every run first
//! measures the raw fsync latency of the disk it writes to and prints ratios against it.
//! - `ledger`: commit latency/throughput, lookups, scans, proofs, crash recovery, memory.
//! - `wire`: QLDB `SendCommand` transactions over HTTP/1.1 against a server.
//! - `dmv`: the vehicle-registration sample's mixed transactions over the wire protocol.
//! - `workload`: one line `tx_per_sec=…` for a fixed insert or update workload.
//! - `export`: journal export rate per output format while a writer commits.
//! - `stream`: journal stream delivery rate and lag to Kinesis and NATS, and commit throughput
//!   with a stream vs none.
//! - `tlog`: commit throughput with checkpointing and three witnesses vs none, and the time
//!   from a commit to a cosigned checkpoint covering it.

mod cpu;
mod dmv;
mod export;
mod ledger;
mod load;
mod recovery;
mod stats;
mod stream;
mod summary;
mod tlog;
mod wire;
mod workload;

/// Arguments of `quill bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which benchmark to run.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmark families.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// In-process ledger benchmarks (commit, lookup, scan, proofs, recovery, RSS).
    Ledger(ledger::LedgerArgs),
    /// QLDB wire-protocol load generator (in-process server unless --endpoint is given).
    Wire(wire::WireArgs),
    /// Mixed wire-protocol workload of the QLDB vehicle-registration (DMV) sample: indexed
    /// lookups, ownership transfers, secondary owners, history reads.
    Dmv(dmv::DmvArgs),
    /// Fixed insert/update workload printing one machine-readable line (for pg_compare.sh).
    Workload(workload::WorkloadArgs),
    /// Journal export rate in every output format, with commits going on meanwhile.
    Export(export::ExportBenchArgs),
    /// The stream worker's CPU per block against a commit's; with running Kinesis-compatible
    /// and NATS servers named, delivery rate and lag, and commit throughput with one active
    /// stream vs none.
    Stream(stream::StreamBenchArgs),
    /// Commit throughput with the witnessed transparency log vs none (three `quill witness
    /// serve` child processes, 2-of-3), and commit → cosigned checkpoint latency.
    Tlog(tlog::TlogBenchArgs),
}

/// Runs the selected benchmark and prints its figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Ledger(args) => ledger::run(args),
        BenchCommand::Wire(args) => wire::run(args),
        BenchCommand::Dmv(args) => dmv::run(args),
        BenchCommand::Workload(args) => workload::run(args),
        BenchCommand::Export(args) => export::run(args),
        BenchCommand::Stream(args) => stream::run(args),
        BenchCommand::Tlog(args) => tlog::run(args),
    }
}

/// One line describing the conditions of this run: cores, load average and build profile.
fn machine_line() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let profile = if cfg!(debug_assertions) {
        "debug build (figures not representative)"
    } else {
        "release build"
    };
    format!(
        "{cores} cores, load average {}, {profile}",
        load.as_deref().unwrap_or("unknown")
    )
}
