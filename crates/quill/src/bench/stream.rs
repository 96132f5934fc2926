//! `quill bench stream`: journal stream delivery against real targets that the caller started
//! (a Kinesis-compatible server such as `moto_server`, and `nats-server -js`), named by flags.
//!
//! On an embedded scratch ledger (the stream worker is the server's: `quill_stream::Worker`
//! with the server's Kinesis and NATS sinks), for each target:
//! - **lag at a fixed rate**: writers commit one insert per transaction at `--rate` commits/s
//!   while the stream delivers; a reader on the target (Kinesis `GetRecords` polling, a
//!   JetStream ordered consumer) notes when each block's `BLOCK_SUMMARY` becomes readable. Lag
//!   is that time minus the moment the commit was acknowledged.
//! - **at the maximum commit rate**: `--writers` writers commit as fast as they can; the same
//!   lag, and the delivery rate (blocks delivered per second until the target caught up).
//! - **commit throughput with one active stream vs none**, from rounds run back to back in
//!   this process (ratios within one run hold up on a busy machine better than absolute
//!   figures).
//!
//! Before those, and alone when no target is named: the **CPU per block** of committing and of
//! the worker itself (a sink that discards, with and without KPL packing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use async_nats::jetstream;
use futures_util::StreamExt as _;
use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};
use quill_server::kinesis::{
    AwsCredentials, KinesisClient, KinesisEndpoint, KinesisSink, KinesisTarget,
};
use quill_server::nats::{NatsSink, NatsTarget};
use quill_stream::{Cursor, Sink, StreamConfig, StreamHandle, StreamStatus, Worker, WorkerOptions};
use serde_json::{json, Value};

use super::load::{self, Stop, TABLE};
use super::stats::{fmt_duration, Latencies, ScratchDir};

/// How long the target may take to hold every block of a round before the round fails.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between `GetRecords` calls that returned nothing.
const KINESIS_POLL: Duration = Duration::from_millis(10);
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

/// When each block was acknowledged to its committer, and when it became readable at the
/// target.
#[derive(Default)]
struct Timeline {
    committed: Mutex<HashMap<u64, Instant>>,
    arrived: Mutex<HashMap<u64, Instant>>,
}

impl Timeline {
    fn arrivals(&self) -> usize {
        self.arrived.lock().expect("timeline lock").len()
    }
}

pub fn run(args: StreamBenchArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        targets.push(runtime.block_on(kinesis_target(endpoint))?);
    }
    if let Some(server) = &args.nats {
        targets.push(runtime.block_on(nats_target(server))?);
    }
    let round = Duration::from_secs(args.seconds);
    let documents = AtomicU64::new(0);
    let mut bench = Bench {
        runtime: &runtime,
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
             ({baseline:.0}); delivered {} blocks at {:.0} blocks/s; lag p50 {}, p99 {}, max {}",
            format!("{}:", target.name()),
            outcome.commits_per_sec,
            outcome.blocks,
            outcome.delivery_per_sec,
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

/// CPU time (user + system) of this process so far, all threads included (finished ones too),
/// from `/proc/self/stat`, whose clock ticks are Linux's fixed `USER_HZ` of 100 per second.
fn process_cpu() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name, which is parenthesized and may hold spaces: utime and
    // stime are the 14th and 15th fields of the line, the 12th and 13th after the name.
    let after_name = stat
        .rsplit_once(')')
        .context("unexpected /proc/self/stat")?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("unexpected /proc/self/stat")
    };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
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
    lag_p50: Duration,
    lag_p99: Duration,
    lag_max: Duration,
}

struct Bench<'a> {
    runtime: &'a tokio::runtime::Runtime,
    ledger: &'a Ledger,
    strand_id: &'a str,
    scratch: &'a Path,
    documents: &'a AtomicU64,
}

/// A stream running for one round, and the reader watching its target.
struct Running {
    handle: Arc<StreamHandle>,
    worker: tokio::task::JoinHandle<quill_stream::Result<StreamStatus>>,
    reader: tokio::task::JoinHandle<Result<()>>,
    reading: Arc<AtomicBool>,
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
        let acknowledged = Instant::now();
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

    fn start(&self, target: &Target, timeline: &Arc<Timeline>) -> Result<Running> {
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
        let reading = Arc::new(AtomicBool::new(true));
        // The reader starts at the target's end before the stream delivers anything.
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        let reader = {
            let (target, timeline, reading) = (target.clone(), timeline.clone(), reading.clone());
            self.runtime
                .spawn(async move { read_target(target, timeline, reading, ready).await })
        };
        if self.runtime.block_on(is_ready).is_err() {
            return Err(self
                .runtime
                .block_on(reader)?
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the target reader stopped")));
        }
        Ok(Running {
            handle,
            worker: self.runtime.spawn(worker.run()),
            reader,
            reading,
        })
    }

    /// Waits until the target holds every block committed in the round, then stops the stream
    /// and its reader. Returns when the last block arrived.
    fn drain(&self, running: Running, timeline: &Timeline, blocks: usize) -> Result<()> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while timeline.arrivals() < blocks {
            let progress = running.handle.progress();
            if progress.status.is_terminal() || Instant::now() > deadline {
                bail!(
                    "the target holds {} of {blocks} blocks ({:?}, last error {:?})",
                    timeline.arrivals(),
                    progress.status,
                    progress.last_error
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        running.handle.cancel();
        running.reading.store(false, Ordering::Relaxed);
        self.runtime.block_on(async {
            running.worker.await??;
            running.reader.await?
        })
    }

    /// `writers` writers commit as fast as they can for `round`, with a stream to `target`
    /// running (or none).
    fn max_rate_round(
        &mut self,
        target: Option<&Target>,
        writers: usize,
        round: Duration,
    ) -> Result<RoundOutcome> {
        let timeline = Arc::new(Timeline::default());
        let running = target.map(|t| self.start(t, &timeline)).transpose()?;
        let began = Instant::now();
        let outcome = load::run_writers(writers, Stop::After(round), |_| self.commit(&timeline))
            .check("committing")?;
        let commits_per_sec = outcome.completed as f64 / outcome.elapsed.as_secs_f64();
        let Some(running) = running else {
            return Ok(RoundOutcome {
                commits_per_sec,
                blocks: outcome.completed,
                delivery_per_sec: 0.0,
                lag_p50: Duration::ZERO,
                lag_p99: Duration::ZERO,
                lag_max: Duration::ZERO,
            });
        };
        let blocks = timeline.committed.lock().expect("timeline lock").len();
        self.drain(running, &timeline, blocks)?;
        Ok(self.lags(&timeline, began, commits_per_sec))
    }

    /// Commits at `rate` per second for `round` with a stream to `target`.
    fn fixed_rate_round(
        &mut self,
        target: &Target,
        rate: u64,
        round: Duration,
    ) -> Result<RoundOutcome> {
        let timeline = Arc::new(Timeline::default());
        let running = self.start(target, &timeline)?;
        let began = Instant::now();
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
        let commits_per_sec = outcome.completed as f64 / outcome.elapsed.as_secs_f64();
        let blocks = timeline.committed.lock().expect("timeline lock").len();
        self.drain(running, &timeline, blocks)?;
        Ok(self.lags(&timeline, began, commits_per_sec))
    }

    fn lags(&self, timeline: &Timeline, began: Instant, commits_per_sec: f64) -> RoundOutcome {
        let committed = timeline.committed.lock().expect("timeline lock");
        let arrived = timeline.arrived.lock().expect("timeline lock");
        let mut lags = Latencies::new();
        let mut last_arrival = began;
        for (sequence_no, acknowledged) in committed.iter() {
            if let Some(arrival) = arrived.get(sequence_no) {
                // A block is readable once durable, a hair before its committer hears so.
                lags.record(arrival.saturating_duration_since(*acknowledged));
                last_arrival = last_arrival.max(*arrival);
            }
        }
        let (lag_p50, lag_p99) = lags.p50_p99();
        let lag_max = lags.percentile(100.0);
        let blocks = committed.len() as u64;
        RoundOutcome {
            commits_per_sec,
            blocks,
            delivery_per_sec: blocks as f64
                / last_arrival.duration_since(began).as_secs_f64().max(1e-9),
            lag_p50,
            lag_p99,
            lag_max,
        }
    }
}

/// Notes when each block's `BLOCK_SUMMARY` becomes readable at the target, until `reading`
/// turns false.
async fn read_target(
    target: Target,
    timeline: Arc<Timeline>,
    reading: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<()> {
    let arrived = |sequence_no: u64| {
        timeline
            .arrived
            .lock()
            .expect("timeline lock")
            .entry(sequence_no)
            .or_insert_with(Instant::now);
    };
    match target {
        Target::Nats { server, subject } => {
            let client = async_nats::connect(server.as_str()).await?;
            let stream = jetstream::new(client)
                .get_stream(stream_name_of(&subject))
                .await?;
            let info = stream.cached_info().clone();
            let mut messages = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: info.state.last_sequence + 1,
                    },
                    ..Default::default()
                })
                .await?
                .messages()
                .await?;
            // The receiver is waiting unless `start` gave up on the reader already.
            let _ = ready.send(());
            while reading.load(Ordering::Relaxed) {
                let next = tokio::time::timeout(Duration::from_millis(100), messages.next()).await;
                let Ok(Some(message)) = next else { continue };
                let message = message?;
                let headers = message.headers.as_ref();
                let summary = headers
                    .and_then(|h| h.get("Quill-Record-Type"))
                    .is_some_and(|t| t.as_str() == "BLOCK_SUMMARY");
                if let (true, Some(id)) = (summary, headers.and_then(|h| h.get("Nats-Msg-Id"))) {
                    // A summary's id is `strandId/sequenceNo`.
                    if let Some(sequence_no) =
                        id.as_str().rsplit('/').next().and_then(|s| s.parse().ok())
                    {
                        arrived(sequence_no);
                    }
                }
            }
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
            let mut iterator = client
                .call("GetShardIterator", body.to_string().as_bytes())
                .await?["ShardIterator"]
                .as_str()
                .context("no shard iterator")?
                .to_owned();
            // The receiver is waiting unless `start` gave up on the reader already.
            let _ = ready.send(());
            let base64 = base64::engine::general_purpose::STANDARD;
            while reading.load(Ordering::Relaxed) {
                let body = json!({"ShardIterator": iterator, "Limit": 10000}).to_string();
                let page: Value = client.call("GetRecords", body.as_bytes()).await?;
                let records = page["Records"].as_array().cloned().unwrap_or_default();
                for record in &records {
                    let data =
                        base64::Engine::decode(&base64, record["Data"].as_str().unwrap_or(""))?;
                    for user in quill_stream::kpl::deaggregate(&data) {
                        if let Some(sequence_no) = summary_sequence_no(&user) {
                            arrived(sequence_no);
                        }
                    }
                }
                iterator = page["NextShardIterator"]
                    .as_str()
                    .context("the shard was closed")?
                    .to_owned();
                if records.is_empty() {
                    tokio::time::sleep(KINESIS_POLL).await;
                }
            }
        }
    }
    Ok(())
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
