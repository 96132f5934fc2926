//! The `quill` command: the one place where arguments are parsed, checked and turned into work.
//!
//! `main` parses the command line with clap ([`args`]), checks it into typed configuration, and
//! calls [`run`]. Only this binary uses `anyhow` and exit codes; every error is rendered once,
//! here. Subcommands:
//! - `serve` ([`serve`]): the QLDB-compatible server (`quill-server`);
//! - `shell` ([`shell`]): an interactive PartiQL shell, embedded or against an endpoint
//!   ([`client`] speaks the QLDB session protocol);
//! - `verify`, `ledger`, `digest`, `revision` ([`admin`]): embedded administration and audits,
//!   on a data directory or on PostgreSQL ([`store`]: where ledgers live, opening one);
//! - `migrate` ([`migrate`]): embedded ledgers moved into PostgreSQL, chains intact;
//! - `export`, `verify-export` ([`export`]): a journal export in QLDB's S3 layout
//!   (`quill-export`), and its re-verification;
//! - `witness`, `log-key`, `verify-proof`, `log-proof` ([`tlog`]): a C2SP tlog-witness server,
//!   a ledger log's key, and transparency log proofs (the offline check included);
//! - `tail` ([`tail`]): a served ledger's journal as it is committed; `stream` ([`stream`]):
//!   its streams to NATS JetStream;
//! - `mirror` ([`mirror`]): a verified, read-only copy of a served ledger's log;
//! - `bench`: benchmarks (owned by the benchmark module).

mod admin;
mod args;
mod bench;
mod client;
mod consistency;
mod export;
mod http;
mod import;
mod migrate;
mod mirror;
mod render;
mod serve;
mod shell;
mod store;
mod stream;
mod tail;
mod tlog;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// mimalloc instead of glibc's malloc: the commit path allocates from many threads at once,
/// and glibc's arenas spent about a fifth of the update benchmark's CPU (see
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a failed command (bad input, I/O, server error).
const EXIT_FAILURE: u8 = 1;
/// Exit code when an audit found corruption: distinct so scripts can tell "broken" from "failed".
const EXIT_CORRUPTED: u8 = 3;

/// An audit that ran to completion and found the ledger corrupted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CorruptionFound(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quill: error: {error:#}");
            if error.downcast_ref::<CorruptionFound>().is_some() {
                ExitCode::from(EXIT_CORRUPTED)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// Logs go to stderr so that command output on stdout stays parseable. `RUST_LOG` wins over
/// `--log-level`.
fn init_logging(cli: &Cli) {
    let default_level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| cli.command.default_log_level().to_string());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&default_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(raw) => serve::run(raw.check()?),
        Command::Shell(raw) => shell::run(raw.check()?),
        Command::Verify(target) => admin::verify(&target.check()?),
        Command::Ledger(command) => admin::ledger(command),
        Command::Digest(target) => admin::digest(&target.check()?),
        Command::Revision(raw) => admin::revision(&raw.check()?),
        Command::Export(raw) => export::run(&raw.check()?),
        Command::VerifyExport(raw) => export::verify(&raw.dir),
        Command::Import(raw) => import::run(raw),
        Command::Migrate(raw) => migrate::run(raw.check()?),
        Command::Consistency(raw) => consistency::run(raw),
        Command::Bench(bench_args) => bench::run(bench_args),
        Command::Witness(command) => tlog::run(command),
        Command::LogKey(args) => tlog::log_key(args),
        Command::VerifyProof(args) => tlog::verify_proof(args),
        Command::LogProof(args) => tlog::log_proof(args),
        Command::Tail(tail_args) => tail::run(&tail_args),
        Command::Mirror(args) => mirror::run(args),
        Command::Stream(command) => stream::run(command),
    }
}
