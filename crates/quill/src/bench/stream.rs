//! `quill bench stream`: journal stream delivery against real targets that the caller started
//! (a Kinesis-compatible server such as `moto_server`, and `nats-server -js`), named by flags.
//!
//! On an embedded scratch ledger (the stream worker is the server's: `quill_stream::Worker`
//! with the server's Kinesis and NATS sinks), for each target:
//! - **lag at a fixed rate**: writers commit one insert per transaction at `--rate` commits/s
//!   while the stream delivers. Once the stream delivered the round, the bench reads the
//!   target back (Kinesis `GetRecords`, a headers-only JetStream ordered consumer), checks that
//!   every block arrived, and takes when each block's `BLOCK_SUMMARY` was stored from the
//!   target's own timestamp. Lag is that time minus the moment the commit was acknowledged
//!   (both clocks are this machine's). Reading afterwards keeps the reader's CPU, and the
//!   target's for serving it, out of the rounds.
//! - **at the maximum commit rate**: `--writers` writers commit as fast as they can; the same
//!   lag, and the delivery rate (blocks delivered per second until the target caught up).
//! - **commit throughput with one active stream vs none**, from rounds run back to back in
//!   this process (ratios within one run hold up on a busy machine better than absolute
//!   figures).
//!
//! Before those, and alone when no target is named: the **CPU per block** of committing and of
//! the worker itself (a sink that discards, with and without KPL packing).
//! Each maximum-rate round also prints its CPU per block by thread group (writers, commit
//! pipeline, stream worker with its sink's client) and for each `--target-pid` process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use async_nats::jetstream;
use futures_util::StreamExt as _;
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_server::kinesis::{
    AwsCredentials, KinesisClient, KinesisEndpoint, KinesisSink, KinesisTarget,
};
use quill_server::nats::{NatsSink, NatsTarget};
use quill_stream::{
    delivery_runtime, Cursor, Sink, StreamConfig, StreamHandle, StreamStatus, Worker, WorkerOptions,
};
use serde_json::{json, Value};

use super::cpu::{process_cpu, Snapshot};
use super::load::{self, Stop, TABLE};
use super::stats::{fmt_duration, Latencies, ScratchDir};
use crate::args::StreamPriority;

/// How long the target may take to hold every block of a round before the round fails.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Records per `GetRecords` page: aggregated records reach hundreds of KB each, and a page must
/// stay under the client's 16 MiB reply limit.
const GET_RECORDS_LIMIT: u32 = 32;
/// Name of the threads of the runtime that runs the stream workers.
const STREAM_THREADS: &str = "quill-stream";
/// Name of the threads of the runtime that reads the targets.
const READER_THREADS: &str = "bench-reader";
/// Writers that share the fixed-rate schedule (one alone can fall behind on a slow fsync).
const PACED_WRITERS: u64 = 4;

/// Arguments of `quill bench stream`.
#[derive(clap::Args, Debug)]
pub struct StreamBenchArgs {
    /// A running Kinesis-compatible server, e.g. http://127.0.0.1:5000 (`moto_server -p 5000`).
    /// Credentials as the AWS SDKs take them (AWS_ACCESS_KEY_ID, …; `testing` if unset).
    #[arg(long)]
    pub kinesis_endpoint: Option<String>,
    /// A running `nats-server -js`, as HOST:PORT (e.g. 127.0.0.1:4222).
    #[arg(long)]
    pub nats: Option<String>,
    /// Seconds of each measured round.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// The fixed commit rate of the lag rounds (commits/s).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// Cycles of maximum-rate rounds (one per target, then one without a stream).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub cycles: u64,
    /// Writer threads of the maximum-rate rounds.
    #[arg(long, default_value_t = 32)]
    pub writers: usize,
    /// Directory for the scratch ledger and cursors (default: the OS temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A process (the target server: nats-server, moto_server) whose CPU each maximum-rate
    /// round reports next to this process's threads; repeatable.
    #[arg(long)]
    pub target_pid: Vec<u32>,
    /// CPU priority of the stream workers' threads, as `quill serve --stream-priority`.
    #[arg(long, value_enum, default_value_t = StreamPriority::Background)]
    pub stream_priority: StreamPriority,
}

/// One target the bench streams to.
#[derive(Clone)]
enum Target {
    Kinesis {
        client: KinesisClient,
        stream_name: String,
    },
    Nats {
        server: String,
        subject: String,
    },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Kinesis { .. } => "kinesis",
            Target::Nats { .. } => "nats",
        }
    }
}

/// When each block of a round was acknowledged to its committer, by the wall clock: the
/// targets stamp what they store with theirs, on the same machine.
#[derive(Default)]
struct Timeline {
    committed: Mutex<HashMap<u64, SystemTime>>,
}

/// When each block's `BLOCK_SUMMARY` was stored at the target (its first copy), by the
/// target's clock.
type Arrivals = HashMap<u64, SystemTime>;

/// Where the records of a round start at the target: they are read from there once the
/// round is over.
enum ReadFrom {
    /// The JetStream stream's sequence number of the first message.
    Nats { start_sequence: u64 },
    /// A shard iterator taken before the first record.
    Kinesis { iterator: String },
}

pub fn run(args: StreamBenchArgs) -> Result<()> {
    // The worker and the reader on runtimes of their own, so that each one's threads (and
    // their CPU) can be told apart.
    let runtime = delivery_runtime(STREAM_THREADS, 2, args.stream_priority.into())?;
    let reader_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(READER_THREADS)
        .enable_all()
        .build()?;
    let scratch = ScratchDir::new(args.dir.as_deref(), "stream")?;
    let ledger = Ledger::create(
        &scratch.path().join("ledger"),
        "bench",
        LedgerOptions::default(),
    )?;
    load::create_table(&ledger, false)?;
    let strand_id = ledger.digest().tip.strand_id;
    println!(
        "stream bench: {} s rounds, fixed rate {} commits/s, {} writers at the maximum rate, \
         {} cycles; {}",
        args.seconds,
        args.rate,
        args.writers,
        args.cycles,
        super::machine_line()
    );

    let mut targets = Vec::new();
    if let Some(endpoint) = &args.kinesis_endpoint {
        targets.push(reader_runtime.block_on(kinesis_target(endpoint))?);
    }
    if let Some(server) = &args.nats {
        targets.push(reader_runtime.block_on(nats_target(server))?);
    }
    let round = Duration::from_secs(args.seconds);
    let documents = AtomicU64::new(0);
    let mut bench = Bench {
        runtime: &runtime,
        reader_runtime: &reader_runtime,
        watched: &args.target_pid,
        ledger: &ledger,
        strand_id: &strand_id,
        scratch: scratch.path(),
        documents: &documents,
    };

    bench.cpu_per_block(args.writers, round)?;
    if targets.is_empty() {
        return Ok(());
    }

    // Commit throughput: rounds without a stream bracket each cycle of streamed rounds, and each
    // streamed round is compared with the mean of the two around it, so a machine whose load
    // drifts shows up as their spread rather than as a streaming cost.
    let mut baselines = vec![
        bench
            .max_rate_round(None, args.writers, round)?
            .commits_per_sec,
    ];
    let mut streamed = Vec::new();
    for cycle in 0..args.cycles as usize {
        for target in &targets {
            streamed.push((
                cycle,
                target,
                bench.max_rate_round(Some(target), args.writers, round)?,
            ));
        }
        baselines.push(
            bench
                .max_rate_round(None, args.writers, round)?
                .commits_per_sec,
        );
    }
    println!(
        "no stream:  {} commits/s (rounds bracketing each cycle)",
        baselines
            .iter()
            .map(|b| format!("{b:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut ratios: HashMap<&str, Vec<f64>> = HashMap::new();
    for (cycle, target, outcome) in &streamed {
        let baseline = (baselines[*cycle] + baselines[cycle + 1]) / 2.0;
        let ratio = outcome.commits_per_sec / baseline * 100.0;
        ratios.entry(target.name()).or_default().push(ratio);
        println!(
            "{:<11} {:>8.0} commits/s with one active stream = {ratio:.1} % of no stream \
             ({baseline:.0}); delivered {} blocks at {:.0} blocks/s, all {} after the commits \
             ended; lag p50 {}, p99 {}, max {}",
            format!("{}:", target.name()),
            outcome.commits_per_sec,
            outcome.blocks,
            outcome.delivery_per_sec,
            fmt_duration(outcome.catch_up),
            fmt_duration(outcome.lag_p50),
            fmt_duration(outcome.lag_p99),
            fmt_duration(outcome.lag_max),
        );
    }
    for target in &targets {
        let mut ratios = ratios.remove(target.name()).unwrap_or_default();
        ratios.sort_by(f64::total_cmp);
        println!(
            "{:<11} commit throughput with one active stream: median {:.1} % of no stream over {} cycles",
            format!("{}:", target.name()),
            ratios[ratios.len() / 2],
            ratios.len()
        );
    }
    for target in &targets {
        let outcome = bench.fixed_rate_round(target, args.rate, round)?;
        println!(
            "{:<11} {:>8.0} commits/s (target {}): lag p50 {}, p99 {}, max {} over {} blocks",
            format!("{}:", target.name()),
            outcome.commits_per_sec,
            args.rate,
            fmt_duration(outcome.lag_p50),
            fmt_duration(outcome.lag_p99),
            fmt_duration(outcome.lag_max),
            outcome.blocks,
        );
    }
    Ok(())
}

/// Creates a fresh one-shard Kinesis stream on the server at `endpoint` and waits until it is
/// `ACTIVE`.
async fn kinesis_target(endpoint: &str) -> Result<Target> {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let ca_bundle = std::env::var_os("AWS_CA_BUNDLE").map(PathBuf::from);
    let parsed = KinesisEndpoint::parse(endpoint, ca_bundle.as_deref())
        .map_err(anyhow::Error::msg)
        .context("--kinesis-endpoint")?;
    let credentials = AwsCredentials::from_environment().unwrap_or(AwsCredentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    });
    let client = KinesisClient {
        endpoint: parsed,
        region,
        credentials,
    };
    let stream_name = format!("quill-bench-{}", std::process::id());
    let body = json!({"StreamName": stream_name, "ShardCount": 1}).to_string();
    client
        .call("CreateStream", body.as_bytes())
        .await
        .with_context(|| format!("CreateStream on {endpoint} (is the server running?)"))?;
    let describe = json!({ "StreamName": stream_name }).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = client.call("DescribeStream", describe.as_bytes()).await?;
        if reply["StreamDescription"]["StreamStatus"] == "ACTIVE" {
            break;
        }
        if Instant::now() > deadline {
            bail!("Kinesis stream {stream_name} did not become ACTIVE");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Target::Kinesis {
        client,
        stream_name,
    })
}

/// Creates a JetStream stream (file storage) capturing a fresh subject on `server`.
async fn nats_target(server: &str) -> Result<Target> {
    let subject = format!("quill.bench.{}", std::process::id());
    let client = async_nats::connect(server).await.with_context(|| {
        format!("cannot connect to NATS at {server} (is nats-server -js running?)")
    })?;
    jetstream::new(client)
        .get_or_create_stream(jetstream::stream::Config {
            name: stream_name_of(&subject),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .context("cannot create the JetStream stream")?;
    Ok(Target::Nats {
        server: server.to_owned(),
        subject,
    })
}

fn stream_name_of(subject: &str) -> String {
    subject.replace('.', "_").to_uppercase()
}

/// A sink that keeps nothing: what the worker itself costs, without a target. With
/// `kpl_key`, it packs the records as the Kinesis sink does (KPL aggregation and MD5).
struct DiscardingSink {
    kpl_key: Option<String>,
    delivered: Arc<AtomicU64>,
}

impl Sink for DiscardingSink {
    fn deliver<'a>(
        &'a mut self,
        records: &'a [quill_stream::StreamRecord],
    ) -> quill_stream::BoxFuture<'a, std::result::Result<(), quill_stream::SinkError>> {
        Box::pin(async move {
            if let Some(key) = &self.kpl_key {
                let datas: Vec<&[u8]> = records.iter().map(|r| r.ion.as_slice()).collect();
                std::hint::black_box(quill_stream::kpl::pack(key, &datas));
            }
            let blocks = records
                .iter()
                .filter(|r| r.record_type == quill_stream::RecordType::BlockSummary)
                .count();
            self.delivered.fetch_add(blocks as u64, Ordering::Relaxed);
            Ok(())
        })
    }
}

/// What one round measured.
struct RoundOutcome {
    commits_per_sec: f64,
    /// Blocks committed in the round.
    blocks: u64,
    /// Blocks delivered per second, from the round's start until the target held them all.
    delivery_per_sec: f64,
    /// From the end of the commits until the target held every block.
    catch_up: Duration,
    lag_p50: Duration,
    lag_p99: Duration,
    lag_max: Duration,
}

struct Bench<'a> {
    /// Runs the stream workers.
    runtime: &'a tokio::runtime::Runtime,
    /// Runs the readers of the targets.
    reader_runtime: &'a tokio::runtime::Runtime,
    /// Processes whose CPU each round reports.
    watched: &'a [u32],
    ledger: &'a Ledger,
    strand_id: &'a str,
    scratch: &'a Path,
    documents: &'a AtomicU64,
}

/// A stream running for one round.
struct Running {
    target: Target,
    handle: Arc<StreamHandle>,
    worker: tokio::task::JoinHandle<quill_stream::Result<StreamStatus>>,
    from: ReadFrom,
}

impl Bench<'_> {
    /// CPU per block of committing (a maximum-rate round without a stream) and of a stream
    /// worker re-reading those blocks into records for a sink that discards them (alone, then
    /// with KPL packing, then decoding each block as the worker used to), each measured while
    /// nothing else runs in this process. On a machine
    /// whose cores are all busy, commit throughput with a stream is at most
    /// 1 / (1 + worker / commit) of the figure without one, before the target's own CPU.
    fn cpu_per_block(&mut self, writers: usize, round: Duration) -> Result<()> {
        let timeline = Timeline::default();
        let first = self.ledger.digest().tip.sequence_no + 1;
        let cpu = process_cpu()?;
        let outcome = load::run_writers(writers, Stop::After(round), |_| self.commit(&timeline))
            .check("committing")?;
        let commit_cpu = process_cpu()? - cpu;
        let blocks = self.ledger.digest().tip.sequence_no + 1 - first;
        let per_commit = commit_cpu / blocks.max(1) as u32;
        println!(
            "cpu per block: commit {} ({} blocks at {:.0} commits/s, {writers} writers)",
            fmt_duration(per_commit),
            blocks,
            outcome.completed as f64 / outcome.elapsed.as_secs_f64(),
        );
        for kpl in [false, true] {
            let delivered = Arc::new(AtomicU64::new(0));
            let sink = DiscardingSink {
                kpl_key: kpl.then(|| self.strand_id.to_owned()),
                delivered: delivered.clone(),
            };
            let stream_id = format!("cpu{}", quill_export::engine::new_export_id());
            let (worker, handle) = Worker::new(
                StreamConfig {
                    stream_arn: format!(
                        "arn:aws:qldb:us-east-1:123456789012:stream/bench/{stream_id}"
                    ),
                    stream_id: stream_id.clone(),
                    // Every block of the ledger: the ones just committed, and the earlier
                    // table creation, which is too few to matter.
                    inclusive_start_millis: 0,
                    exclusive_end_millis: None,
                },
                self.ledger.clone(),
                Cursor::new(self.scratch.join(format!("{stream_id}.cursor.json"))),
                Box::new(sink),
                WorkerOptions::default(),
            );
            let total = self.ledger.digest().tip.sequence_no + 1;
            let cpu = process_cpu()?;
            let began = Instant::now();
            let worker = self.runtime.spawn(worker.run());
            while delivered.load(Ordering::Relaxed) < total {
                if handle.progress().status.is_terminal() || began.elapsed() > DRAIN_TIMEOUT {
                    bail!("the worker stopped: {:?}", handle.progress());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let worker_cpu = process_cpu()? - cpu;
            handle.cancel();
            self.runtime.block_on(worker)??;
            let per_block = worker_cpu / total as u32;
            println!(
                "cpu per block: stream worker{} {} = {:.1} % of a commit's ({total} blocks in {})",
                if kpl { " + KPL packing" } else { "" },
                fmt_duration(per_block),
                per_block.as_secs_f64() / per_commit.as_secs_f64() * 100.0,
                fmt_duration(began.elapsed()),
            );
        }
        // The same blocks the way the worker read them before it copied the stored Ion: each
        // block decoded (`Ledger::block`) and its records encoded from `Element`s. Measured in
        // the same run, the ratio to the worker's figure holds up on a busy machine.
        let total = self.ledger.digest().tip.sequence_no + 1;
        let arn = "arn:aws:qldb:us-east-1:123456789012:stream/bench/decoded";
        let cpu = process_cpu()?;
        let began = Instant::now();
        for sequence_no in 0..total {
            let block = self.ledger.block(sequence_no)?;
            std::hint::black_box(quill_stream::record::block_records(arn, &block)?);
        }
        let per_block = (process_cpu()? - cpu) / total as u32;
        println!(
            "cpu per block: decoding blocks into records (Ledger::block + block_records) {} = {:.1} % of a commit's ({total} blocks in {})",
            fmt_duration(per_block),
            per_block.as_secs_f64() / per_commit.as_secs_f64() * 100.0,
            fmt_duration(began.elapsed()),
        );
        Ok(())
    }

    /// Commits one insert; notes when it was acknowledged.
    fn commit(&self, timeline: &Timeline) -> Result<()> {
        let n = self.documents.fetch_add(1, Ordering::Relaxed);
        let mut tx = self.ledger.begin()?;
        tx.insert(TABLE, load::vehicle(n))?;
        let receipt = tx.commit()?;
        let acknowledged = SystemTime::now();
        let sequence_no = receipt
            .block_address
            .context("an insert writes a block")?
            .sequence_no;
        timeline
            .committed
            .lock()
            .expect("timeline lock")
            .insert(sequence_no, acknowledged);
        Ok(())
    }

    fn start(&self, target: &Target) -> Result<Running> {
        let stream_id = format!("bench{}", quill_export::engine::new_export_id());
        let sink: Box<dyn Sink> = match target {
            Target::Kinesis {
                client,
                stream_name,
            } => Box::new(KinesisSink::new(KinesisTarget {
                client: client.clone(),
                stream_arn: format!(
                    "arn:aws:kinesis:{}:123456789012:stream/{stream_name}",
                    client.region
                ),
                aggregation: true,
                partition_key: self.strand_id.to_owned(),
            })),
            Target::Nats { server, subject } => Box::new(NatsSink::new(NatsTarget::new(
                server.clone(),
                subject.clone(),
            ))),
        };
        let config = StreamConfig {
            stream_arn: format!("arn:aws:qldb:us-east-1:123456789012:stream/bench/{stream_id}"),
            stream_id: stream_id.clone(),
            inclusive_start_millis: quill_export::time::now_millis(),
            exclusive_end_millis: None,
        };
        let (worker, handle) = Worker::new(
            config,
            self.ledger.clone(),
            Cursor::new(self.scratch.join(format!("{stream_id}.cursor.json"))),
            sink,
            WorkerOptions::default(),
        );
        // Where the target's end is before the stream delivers anything.
        let from = self.reader_runtime.block_on(read_from(target))?;
        Ok(Running {
            target: target.clone(),
            handle,
            worker: self.runtime.spawn(worker.run()),
            from,
        })
    }

    /// Waits until the target acknowledged every block up to `last_block`.
    fn wait_delivered(&self, running: &Running, last_block: u64) -> Result<()> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let progress = running.handle.progress();
            if progress.last_delivered_block >= Some(last_block) {
                return Ok(());
            }
            if progress.status.is_terminal() || Instant::now() > deadline {
                bail!(
                    "the stream delivered up to block {:?} of {last_block} ({:?}, last error {:?})",
                    progress.last_delivered_block,
                    progress.status,
                    progress.last_error
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the stream, then reads back what the target holds and checks that every block
    /// of `timeline` is there.
    fn finish(&self, running: Running, timeline: &Timeline) -> Result<Arrivals> {
        running.handle.cancel();
        self.runtime.block_on(running.worker)??;
        let arrivals = self
            .reader_runtime
            .block_on(read_arrivals(&running.target, running.from))?;
        let committed = timeline.committed.lock().expect("timeline lock");
        let mut missing: Vec<u64> = committed
            .keys()
            .filter(|sequence_no| !arrivals.contains_key(sequence_no))
            .copied()
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            bail!(
                "the target lacks {} of the {} blocks committed (the first: {})",
                missing.len(),
                committed.len(),
                missing[0]
            );
        }
        Ok(arrivals)
    }

    /// Waits until the stream delivered every block of `timeline`, then [`Bench::finish`]es.
    fn drain(&self, running: Running, timeline: &Timeline) -> Result<Arrivals> {
        self.wait_delivered(&running, timeline.last_block())?;
        self.finish(running, timeline)
    }

    /// `writers` writers commit as fast as they can for `round`, with a stream to `target`
    /// running (or none).
    fn max_rate_round(
        &mut self,
        target: Option<&Target>,
        writers: usize,
        round: Duration,
    ) -> Result<RoundOutcome> {
        let timeline = Timeline::default();
        let running = target.map(|t| self.start(t)).transpose()?;
        let name = target.map_or("no stream", Target::name);
        let cpu_before = Snapshot::take(self.watched)?;
        let began = SystemTime::now();
        let outcome = load::run_writers(writers, Stop::After(round), |_| self.commit(&timeline))
            .check("committing")?;
        let committing = Snapshot::take(self.watched)?;
        let commits_ended = SystemTime::now();
        let commits_per_sec = outcome.completed as f64 / outcome.elapsed.as_secs_f64();
        print_cpu(
            &format!("{name}, while committing"),
            &committing.since(&cpu_before, thread_group, WRITERS),
            outcome.completed,
            outcome.elapsed,
        );
        let Some(running) = running else {
            return Ok(RoundOutcome {
                commits_per_sec,
                blocks: outcome.completed,
                delivery_per_sec: 0.0,
                catch_up: Duration::ZERO,
                lag_p50: Duration::ZERO,
                lag_p99: Duration::ZERO,
                lag_max: Duration::ZERO,
            });
        };
        self.wait_delivered(&running, timeline.last_block())?;
        print_cpu(
            &format!("{name}, until delivered"),
            &Snapshot::take(self.watched)?.since(&cpu_before, thread_group, WRITERS),
            outcome.completed,
            began.elapsed().unwrap_or_default(),
        );
        let arrivals = self.finish(running, &timeline)?;
        Ok(lags(
            &timeline,
            &arrivals,
            began,
            commits_ended,
            commits_per_sec,
        ))
    }

    /// Commits at `rate` per second for `round` with a stream to `target`.
    fn fixed_rate_round(
        &mut self,
        target: &Target,
        rate: u64,
        round: Duration,
    ) -> Result<RoundOutcome> {
        let timeline = Timeline::default();
        let running = self.start(target)?;
        let began = Instant::now();
        let began_wall = SystemTime::now();
        let total = (rate * round.as_secs()).max(1);
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        // Commit number i is due at `began + i * interval`; writers take the next due one.
        let outcome = load::run_writers(PACED_WRITERS as usize, Stop::Iterations(total), |i| {
            let due = began + interval.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            self.commit(&timeline)
        })
        .check("committing")?;
        let commits_ended = SystemTime::now();
        let commits_per_sec = outcome.completed as f64 / outcome.elapsed.as_secs_f64();
        let arrivals = self.drain(running, &timeline)?;
        Ok(lags(
            &timeline,
            &arrivals,
            began_wall,
            commits_ended,
            commits_per_sec,
        ))
    }
}

impl Timeline {
    /// The last block committed in the round.
    fn last_block(&self) -> u64 {
        let committed = self.committed.lock().expect("timeline lock");
        committed.keys().max().copied().unwrap_or(0)
    }
}

/// Lags and delivery rate of a round that began at `began` and whose commits ended at
/// `commits_ended`.
fn lags(
    timeline: &Timeline,
    arrivals: &Arrivals,
    began: SystemTime,
    commits_ended: SystemTime,
    commits_per_sec: f64,
) -> RoundOutcome {
    let committed = timeline.committed.lock().expect("timeline lock");
    let mut lags = Latencies::new();
    let mut last_arrival = began;
    for (sequence_no, acknowledged) in committed.iter() {
        if let Some(arrival) = arrivals.get(sequence_no) {
            // A block is readable once durable, a hair before its committer hears so.
            lags.record(arrival.duration_since(*acknowledged).unwrap_or_default());
            last_arrival = last_arrival.max(*arrival);
        }
    }
    let (lag_p50, lag_p99) = lags.p50_p99();
    let lag_max = lags.percentile(100.0);
    let blocks = committed.len() as u64;
    let since_began = last_arrival.duration_since(began).unwrap_or_default();
    RoundOutcome {
        commits_per_sec,
        blocks,
        delivery_per_sec: blocks as f64 / since_began.as_secs_f64().max(1e-9),
        catch_up: last_arrival
            .duration_since(commits_ended)
            .unwrap_or_default(),
        lag_p50,
        lag_p99,
        lag_max,
    }
}

/// The CPU of the threads that end with their round: the writers.
const WRITERS: &str = "writers";

/// What a thread of this process does, from its name.
fn thread_group(name: &str) -> &'static str {
    if name.starts_with("quill-commit-") || name == "quill-sync" || name == "quill-flush" {
        "commit pipeline"
    } else if name == STREAM_THREADS {
        "stream worker"
    } else if name == READER_THREADS {
        "bench reader"
    } else {
        "other threads"
    }
}

/// One line of CPU per block by group over `elapsed`, and how many cores were busy.
fn print_cpu(what: &str, groups: &[(String, Duration)], blocks: u64, elapsed: Duration) {
    let total: Duration = groups.iter().map(|(_, cpu)| *cpu).sum();
    let per_block = |cpu: Duration| fmt_duration(cpu / blocks.max(1) as u32);
    let parts: Vec<String> = groups
        .iter()
        .filter(|(_, cpu)| !cpu.is_zero())
        .map(|(group, cpu)| format!("{group} {}", per_block(*cpu)))
        .collect();
    println!(
        "  cpu per block ({what}, {:.1} s, {:.2} cores busy): {}; total {}",
        elapsed.as_secs_f64(),
        total.as_secs_f64() / elapsed.as_secs_f64(),
        parts.join(", "),
        per_block(total),
    );
}

/// The target's end, where the records of a round will start.
async fn read_from(target: &Target) -> Result<ReadFrom> {
    match target {
        Target::Nats { server, subject } => {
            let client = async_nats::connect(server.as_str()).await?;
            let mut stream = jetstream::new(client)
                .get_stream(stream_name_of(subject))
                .await?;
            let last = stream.info().await?.state.last_sequence;
            Ok(ReadFrom::Nats {
                start_sequence: last + 1,
            })
        }
        Target::Kinesis {
            client,
            stream_name,
        } => {
            let body = json!({ "StreamName": stream_name }).to_string();
            let shard = client.call("DescribeStream", body.as_bytes()).await?["StreamDescription"]
                ["Shards"][0]["ShardId"]
                .as_str()
                .context("the Kinesis stream has no shard")?
                .to_owned();
            let body =
                json!({"StreamName": stream_name, "ShardId": shard, "ShardIteratorType": "LATEST"});
            let iterator = client
                .call("GetShardIterator", body.to_string().as_bytes())
                .await?["ShardIterator"]
                .as_str()
                .context("no shard iterator")?
                .to_owned();
            Ok(ReadFrom::Kinesis { iterator })
        }
    }
}

/// Reads every record the target stored since `from`, once the stream stopped: when each
/// block's `BLOCK_SUMMARY` was stored, by the target's own timestamp (JetStream's message
/// time, Kinesis's `ApproximateArrivalTimestamp`). Reading after the round rather than while
/// it runs keeps the reader's CPU, and the target's for serving it, out of the round.
async fn read_arrivals(target: &Target, from: ReadFrom) -> Result<Arrivals> {
    let mut arrivals = Arrivals::new();
    match (target, from) {
        (Target::Nats { server, subject }, ReadFrom::Nats { start_sequence }) => {
            let client = async_nats::connect(server.as_str()).await?;
            let mut stream = jetstream::new(client)
                .get_stream(stream_name_of(subject))
                .await?;
            let last = stream.info().await?.state.last_sequence;
            if last < start_sequence {
                return Ok(arrivals);
            }
            let mut messages = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence,
                    },
                    // The headers say all the bench needs.
                    headers_only: true,
                    ..Default::default()
                })
                .await?
                .messages()
                .await?;
            loop {
                let message = tokio::time::timeout(DRAIN_TIMEOUT, messages.next())
                    .await
                    .context("reading the JetStream stream back timed out")?
                    .context("the JetStream consumer ended")??;
                let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
                let headers = message.headers.as_ref();
                let summary = headers
                    .and_then(|h| h.get("Quill-Record-Type"))
                    .is_some_and(|t| t.as_str() == "BLOCK_SUMMARY");
                if let (true, Some(id)) = (summary, headers.and_then(|h| h.get("Nats-Msg-Id"))) {
                    // A summary's id is `strandId/sequenceNo`.
                    if let Some(sequence_no) =
                        id.as_str().rsplit('/').next().and_then(|s| s.parse().ok())
                    {
                        let nanos = u64::try_from(info.published.unix_timestamp_nanos())
                            .context("a JetStream message time before 1970")?;
                        arrivals
                            .entry(sequence_no)
                            .or_insert(UNIX_EPOCH + Duration::from_nanos(nanos));
                    }
                }
                if info.stream_sequence >= last {
                    return Ok(arrivals);
                }
            }
        }
        (Target::Kinesis { client, .. }, ReadFrom::Kinesis { mut iterator }) => {
            let base64 = base64::engine::general_purpose::STANDARD;
            loop {
                let body =
                    json!({"ShardIterator": iterator, "Limit": GET_RECORDS_LIMIT}).to_string();
                let page: Value = client.call("GetRecords", body.as_bytes()).await?;
                let records = page["Records"].as_array().cloned().unwrap_or_default();
                for record in &records {
                    let seconds = record["ApproximateArrivalTimestamp"]
                        .as_f64()
                        .context("a Kinesis record without ApproximateArrivalTimestamp")?;
                    let stored = UNIX_EPOCH + Duration::from_secs_f64(seconds);
                    let data =
                        base64::Engine::decode(&base64, record["Data"].as_str().unwrap_or(""))?;
                    for user in quill_stream::kpl::deaggregate(&data) {
                        if let Some(sequence_no) = summary_sequence_no(&user) {
                            arrivals.entry(sequence_no).or_insert(stored);
                        }
                    }
                }
                iterator = page["NextShardIterator"]
                    .as_str()
                    .context("the shard was closed")?
                    .to_owned();
                // The stream stopped before: an empty page at the tip is the end.
                if records.is_empty() && page["MillisBehindLatest"].as_u64().unwrap_or(0) == 0 {
                    return Ok(arrivals);
                }
            }
        }
        _ => bail!("a read position of another target"),
    }
}

/// The block sequence number of a `BLOCK_SUMMARY` record (Ion binary); `None` for others.
fn summary_sequence_no(record: &[u8]) -> Option<u64> {
    let record = Element::read_one(record).ok()?;
    let record = record.as_struct()?;
    if record.get("recordType")?.as_text()? != "BLOCK_SUMMARY" {
        return None;
    }
    let address = record
        .get("payload")?
        .as_struct()?
        .get("blockAddress")?
        .as_struct()?;
    address.get("sequenceNo")?.as_i64().map(|n| n as u64)
}
