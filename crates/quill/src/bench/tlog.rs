//! `quill bench tlog`: what the witnessed transparency log costs, against in-process servers
//! on loopback and three real `quill witness serve` child processes under a 2-of-3 policy.
//!
//! - **commit throughput**: `--writers` QLDB sessions insert as fast as they can, in rounds
//!   alternating between a server whose checkpointer signs every `--interval` and submits to
//!   the witnesses, and a server with no witness policy whose checkpointer never comes due
//!   (interval of a day). Each witnessed round is compared with the mean of the two baseline
//!   rounds around it, so a drifting machine load shows as spread, not as a log cost.
//! - **time to a cosigned checkpoint**: one session commits `--rate` inserts per second on the
//!   witnessed server; a poller reads `/ledgers/{name}/log/checkpoint` and notes when a
//!   checkpoint covering each block, cosigned by the quorum, is first served. The figure is
//!   that moment minus the commit's acknowledgement.
//! - **mirror catch-up**: a `quill mirror` child process starts from nothing against the
//!   witnessed server's ledger (every block the rounds above wrote); blocks per second until
//!   its `/mirror/status` reports the size of the checkpoint served when it started, first
//!   as verified log leaves (`size`), then as blocks held in full (`blocks`).

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hyper::Method;
use quill_server::tlog::LogConfig;
use quill_verify::tlog::{verify_cosigned_checkpoint, Policy};
use serde_json::json;

use super::load;
use super::stats::{fmt_duration, rate, Latencies, ScratchDir};
use super::wire::{self, Target, WireKind, Workload};
use crate::http::Endpoint;

/// The ledger both servers hold.
const LEDGER: &str = "bench";
/// The baseline server's checkpoint interval: never due within a run.
const NEVER: Duration = Duration::from_secs(24 * 3600);
/// How often the poller reads the served checkpoint.
const POLL: Duration = Duration::from_millis(5);
/// How long the last commit of the latency phase may wait for a cosigned checkpoint.
const COVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the mirror may take to catch up.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(600);
/// The witnesses, all members of the 2-of-3 group.
const WITNESSES: [&str; 3] = ["w1", "w2", "w3"];

/// Arguments of `quill bench tlog`.
#[derive(clap::Args, Debug)]
pub struct TlogBenchArgs {
    /// Seconds of each throughput round.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Cycles of throughput rounds (one witnessed, then one baseline).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub cycles: u64,
    /// Concurrent sessions of the throughput rounds.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub writers: u64,
    /// The witnessed server's checkpoint interval, e.g. `1s` or `250ms`.
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// Commits per second of the latency phase (one session).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub latency_seconds: u64,
    /// Directory for the servers' and witnesses' data (default: the OS temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// A `quill` child process listening on a loopback port, killed when dropped.
struct ChildServer {
    child: Child,
    /// `http://HOST:PORT`, from its `quill: listening on …` line.
    url: String,
}

impl ChildServer {
    fn start(args: &[&OsStr]) -> Result<ChildServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start quill {args:?}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("child stdout")?;
        // Dropped (killed) on any error below.
        let mut server = ChildServer {
            child,
            url: String::new(),
        };
        BufReader::new(stdout).read_line(&mut line)?;
        server.url = line
            .trim()
            .strip_prefix("quill: listening on ")
            .with_context(|| format!("quill {args:?} did not start: {line:?}"))?
            .to_owned();
        Ok(server)
    }

    fn witness(dir: &Path, name: &str, logs: &Path) -> Result<ChildServer> {
        let key = dir.join(format!("{name}.key"));
        let state = dir.join(format!("{name}-state"));
        ChildServer::start(&[
            "witness".as_ref(),
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--key".as_ref(),
            key.as_os_str(),
            "--logs".as_ref(),
            logs.as_os_str(),
            "--state-dir".as_ref(),
            state.as_os_str(),
        ])
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `quill witness keygen`; returns the witness's cosignature verifier key.
fn keygen(dir: &Path, name: &str) -> Result<String> {
    let output = Command::new(std::env::current_exe()?)
        .args([
            "witness",
            "keygen",
            "--name",
            &format!("{name}.bench"),
            "--key",
        ])
        .arg(dir.join(format!("{name}.key")))
        .output()?;
    if !output.status.success() {
        bail!(
            "quill witness keygen: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

pub fn run(args: TlogBenchArgs) -> Result<()> {
    let interval = crate::args::parse_duration(&args.interval)
        .with_context(|| format!("--interval {:?}", args.interval))?;
    let scratch = ScratchDir::new(args.dir.as_deref(), "tlog")?;
    println!(
        "tlog bench: {} sessions, {} s rounds, {} cycles; checkpoint interval {}; latency phase \
         {} commits/s for {} s; {}",
        args.writers,
        args.seconds,
        args.cycles,
        fmt_duration(interval),
        args.rate,
        args.latency_seconds,
        super::machine_line()
    );

    // The witnessed server's log key exists before the witnesses start: they must know it.
    let witnessed_dir = scratch.path().join("witnessed");
    std::fs::create_dir_all(&witnessed_dir)?;
    let mut witnessed = LogConfig {
        public: true,
        interval,
        ..LogConfig::default()
    };
    let log_key = witnessed.verifier_key(&witnessed.load_key(&witnessed_dir)?, LEDGER)?;
    let logs = scratch.path().join("witnessed-logs");
    std::fs::write(&logs, format!("log {log_key}\n"))?;
    let mut policy_text = format!("log {log_key}\n");
    let mut witnesses = Vec::new();
    for name in WITNESSES {
        let key = keygen(scratch.path(), name)?;
        let witness = ChildServer::witness(scratch.path(), name, &logs)?;
        policy_text.push_str(&format!("witness {name} {key} {}\n", witness.url));
        witnesses.push(witness);
    }
    policy_text.push_str(&format!(
        "group two-of-three 2 {}\nquorum two-of-three\n",
        WITNESSES.join(" ")
    ));
    let policy = Policy::parse(&policy_text)?;
    let policy_file = scratch.path().join("policy");
    std::fs::write(&policy_file, &policy_text)?;
    witnessed.witness_policy = Some(policy.clone());
    let baseline = LogConfig {
        interval: NEVER,
        ..LogConfig::default()
    };

    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()?;
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    let mut servers = Vec::new();
    let mut targets = Vec::new();
    let mut urls = Vec::new();
    for (name, config) in [("witnessed", witnessed), ("baseline", baseline)] {
        let (address, server) =
            server_runtime.block_on(wire::start_server(scratch.path().join(name), config))?;
        servers.push(server);
        let url = format!("http://{address}");
        let target = Target {
            endpoint: Endpoint::parse(&url, None)?,
            more_endpoints: Vec::new(),
            signer: None,
        };
        urls.push(url);
        client_runtime.block_on(wire::prepare_ledger(&target, LEDGER))?;
        targets.push(target);
    }
    let outcome = client_runtime.block_on(async {
        measure(&args, &targets, &policy).await?;
        let (blocks, leaves_elapsed, blocks_elapsed) =
            mirror_catch_up(scratch.path(), &urls[0], &policy, &policy_file).await?;
        println!(
            "quill mirror catch-up: {blocks} blocks; log verified in {} = {:.0} blocks/s, \
             blocks copied in {} = {:.0} blocks/s (from its start until its status reports the \
             served checkpoint's size)",
            fmt_duration(leaves_elapsed),
            rate(blocks, leaves_elapsed),
            fmt_duration(blocks_elapsed),
            rate(blocks, blocks_elapsed)
        );
        println!(
            "tlog mirror: blocks={blocks} leaves_per_sec={:.1} blocks_per_sec={:.1}",
            rate(blocks, leaves_elapsed),
            rate(blocks, blocks_elapsed)
        );
        anyhow::Ok(())
    });
    for server in servers {
        server_runtime.block_on(server.stop())?;
    }
    drop(witnesses);
    outcome
}

async fn measure(args: &TlogBenchArgs, targets: &[Target], policy: &Policy) -> Result<()> {
    let [witnessed, baseline] = targets else {
        bail!("two servers expected");
    };
    let round = Duration::from_secs(args.seconds);
    let writers = args.writers as usize;
    let mut baselines = vec![throughput(baseline, writers, round).await?];
    let mut ratios = Vec::new();
    for _ in 0..args.cycles {
        let with_log = throughput(witnessed, writers, round).await?;
        baselines.push(throughput(baseline, writers, round).await?);
        let around = (baselines[baselines.len() - 2] + baselines[baselines.len() - 1]) / 2.0;
        let ratio = with_log / around * 100.0;
        println!(
            "with log and 3 witnesses: {with_log:.0} tx/s = {ratio:.1} % of no log ({around:.0} \
             tx/s, the mean of the baseline rounds around it)"
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "commit throughput at {} sessions with checkpointing + 2-of-3 witnesses: median {median:.1} \
         % of no log over {} cycles (goal ≥ 95 %)",
        args.writers,
        ratios.len()
    );

    let mut lags = cosigned_lag(args, witnessed, policy).await?;
    let (p50, p99) = lags.p50_p99();
    println!(
        "commit acknowledged → cosigned checkpoint covering it served ({} commits, interval {}): \
         p50 {}, p99 {}, max {} (goal p99 ≤ 1.5 s)",
        lags.len(),
        args.interval,
        fmt_duration(p50),
        fmt_duration(p99),
        fmt_duration(lags.percentile(100.0)),
    );
    println!(
        "tlog summary: ratio_pct={median:.1} lag_p50_ms={} lag_p99_ms={}",
        p50.as_millis(),
        p99.as_millis()
    );
    Ok(())
}

/// Inserts committed per second by `writers` sessions during `round`.
async fn throughput(target: &Target, writers: usize, round: Duration) -> Result<f64> {
    let workload = Workload {
        kind: WireKind::Insert,
        ids: Vec::<String>::new().into(),
    };
    let step = wire::run_step(target, LEDGER, &workload, writers, round).await?;
    Ok(rate(step.transactions, step.elapsed))
}

/// One session commits at `args.rate` per second; returns, per commit, the time from its
/// acknowledgement until a checkpoint covering its block and meeting the quorum was served.
async fn cosigned_lag(args: &TlogBenchArgs, target: &Target, policy: &Policy) -> Result<Latencies> {
    // The size of the newest cosigned checkpoint served.
    let served = Arc::new(AtomicU64::new(0));
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let (mut connection, policy) = (target.endpoint.connect().await?, policy.clone());
        let (served, polling) = (served.clone(), polling.clone());
        let path = format!("/ledgers/{LEDGER}/log/checkpoint");
        // Each new size served, and when it was first seen.
        tokio::spawn(async move {
            let mut growth = Vec::new();
            while polling.load(Ordering::Relaxed) {
                let (status, body) = connection
                    .request(Method::GET, &path, &[], Vec::new(), None)
                    .await?;
                let seen = Instant::now();
                if status == 200 {
                    let verified = verify_cosigned_checkpoint(std::str::from_utf8(&body)?, &policy)
                        .context("the served checkpoint does not meet the witness quorum")?;
                    let size = verified.checkpoint.size;
                    if served.fetch_max(size, Ordering::Relaxed) < size {
                        growth.push((size, seen));
                    }
                }
                tokio::time::sleep(POLL).await;
            }
            anyhow::Ok(growth)
        })
    };
    let mut session = wire::Session::start(target.connect().await?, LEDGER).await?;
    let mut control = target.connect().await?;
    // Block sequence number and when its commit was acknowledged.
    let mut acknowledged = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let began = Instant::now();
    for n in 0..args.rate * args.latency_seconds {
        let due = began + interval.mul_f64(n as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let parameters = [load::vehicle(n)];
        let encoded = wire::ion_base64(&parameters[0])?;
        wire::one_transaction(&mut session, wire::INSERT, &parameters, &[encoded.as_str()]).await?;
        let at = Instant::now();
        // The only writer: the tip right after the commit is its block.
        acknowledged.push((tip_sequence_no(&mut control).await?, at));
    }
    session.end().await;
    let last = acknowledged
        .last()
        .map_or(0, |(sequence_no, _)| *sequence_no);
    let deadline = Instant::now() + COVER_TIMEOUT;
    while served.load(Ordering::Relaxed) <= last
        && Instant::now() < deadline
        && !poller.is_finished()
    {
        tokio::time::sleep(POLL).await;
    }
    polling.store(false, Ordering::Relaxed);
    let growth = poller.await??;
    let mut lags = Latencies::new();
    for (sequence_no, at) in acknowledged {
        let Some((_, seen)) = growth.iter().find(|(size, _)| *size > sequence_no) else {
            bail!("block {sequence_no} was not covered by a cosigned checkpoint within {COVER_TIMEOUT:?}");
        };
        lags.record(seen.saturating_duration_since(at));
    }
    Ok(lags)
}

/// Starts `quill mirror` following the ledger at `url` and times it until its status reports
/// the size of the checkpoint served now, as verified leaves and as blocks held:
/// (blocks, leaves elapsed, blocks elapsed).
async fn mirror_catch_up(
    dir: &Path,
    url: &str,
    policy: &Policy,
    policy_file: &Path,
) -> Result<(u64, Duration, Duration)> {
    let mut upstream = Endpoint::parse(url, None)?.connect().await?;
    let path = format!("/ledgers/{LEDGER}/log/checkpoint");
    let (status, note) = upstream
        .request(Method::GET, &path, &[], Vec::new(), None)
        .await?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}");
    }
    let size = verify_cosigned_checkpoint(std::str::from_utf8(&note)?, policy)?
        .checkpoint
        .size;
    let data = dir.join("mirror");
    let began = Instant::now();
    let mirror = ChildServer::start(&[
        "mirror".as_ref(),
        "--from".as_ref(),
        url.as_ref(),
        "--ledger".as_ref(),
        LEDGER.as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--policy".as_ref(),
        policy_file.as_os_str(),
        "--interval".as_ref(),
        "50ms".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])?;
    let mut connection = Endpoint::parse(&mirror.url, None)?.connect().await?;
    let mut leaves_elapsed = None;
    loop {
        let (_, body) = connection
            .request(Method::GET, "/mirror/status", &[], Vec::new(), None)
            .await?;
        let status: serde_json::Value = serde_json::from_slice(&body)?;
        if let Some(why) = status["halted"].as_str() {
            bail!("the mirror halted: {why}");
        }
        let reached = |field: &str| status[field].as_u64().is_some_and(|n| n >= size);
        if leaves_elapsed.is_none() && reached("size") {
            leaves_elapsed = Some(began.elapsed());
        }
        if let (Some(leaves_elapsed), true) = (leaves_elapsed, reached("blocks")) {
            return Ok((size, leaves_elapsed, began.elapsed()));
        }
        if began.elapsed() > MIRROR_TIMEOUT {
            bail!("the mirror did not reach size {size} within {MIRROR_TIMEOUT:?}: {status}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The journal tip's block sequence number (control plane GetDigest).
async fn tip_sequence_no(http: &mut wire::Http) -> Result<u64> {
    let path = format!("/ledgers/{LEDGER}/digest");
    let (status, reply) = http.request(Method::POST, &path, &[], &json!({})).await?;
    let address = reply["DigestTipAddress"]["IonText"]
        .as_str()
        .filter(|_| status == 200)
        .with_context(|| format!("GetDigest: HTTP {status} {reply}"))?;
    let digits = address
        .split_once("sequenceNo:")
        .map(|(_, rest)| rest.trim_start())
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .with_context(|| format!("no sequenceNo in {address}"))?;
    Ok(digits.parse()?)
}
