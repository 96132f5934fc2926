//! `quill bench wire`: a QLDB wire-protocol load generator. Each session is one keep-alive
//! HTTP/1.1 connection ([`crate::http`]: plain or TLS, SigV4-signed when credentials are in the
//! environment, as a driver would be) running StartTransaction, one statement and
//! CommitTransaction with the driver-computed CommitDigest — exactly what a QLDB driver sends
//! per single-document transaction. The statement is `INSERT INTO BenchTable ?` with an Ion
//! binary parameter (`--kind insert`), or an `UPDATE … BY id … WHERE id = ?` of a random
//! preloaded document (`--kind update`). Each step also prints one machine-readable line
//! (`wire kind=… sessions=… tx_per_sec=…`) for `scripts/pg_compare.sh`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ledger::XorShift;
use super::load;
use super::stats::{self, fmt_duration, rate, Latencies, ScratchDir};
use super::summary::Summary;
use crate::http::{Connection, Endpoint, Signer};

/// One request's deadline: a stuck server fails the run instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Sessions one step may open (QLDB's per-ledger limit is 1500).
const SESSIONS_MAX: usize = 1_024;
/// Statement every insert transaction runs.
pub(super) const INSERT: &str = "INSERT INTO BenchTable ?";
/// Statement every update transaction runs: a new revision of one document, found by id (the
/// same change `scripts/pg/update.sql` makes). The id is a parameter, as drivers send it; the
/// planner looks it up by id, so updates of different documents do not conflict.
const UPDATE: &str =
    "UPDATE BenchTable AS b BY id SET b.Year = ?, b.Color = 'Blue', b.Mileage = ? WHERE id = ?";
/// Documents one preload transaction inserts (one statement, a list parameter): QLDB's
/// per-transaction limit.
const PRELOAD_BATCH: u64 = load::DOCUMENTS_PER_BATCH as u64;

/// The transaction each session repeats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireKind {
    /// Insert one new document.
    Insert,
    /// Update one random preloaded document.
    Update,
}

/// Where `quill bench wire` and `quill bench dmv` send their load.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    /// Server to load, e.g. `http://127.0.0.1:8080` or `https://…` (requests are signed when
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are set); several, comma-separated, for servers
    /// sharing one PostgreSQL database (`--storage`): sessions are spread over them in turn.
    /// Without it a server is started in-process on a loopback port with a scratch data
    /// directory.
    #[arg(long, value_delimiter = ',')]
    pub endpoint: Vec<String>,
    /// Extra trusted CA certificate (PEM) for an https endpoint.
    #[arg(long, requires = "endpoint")]
    pub ca_cert: Option<PathBuf>,
    /// Region to sign requests for.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Directory for the in-process server's data (default: the OS temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Arguments of `quill bench wire`.
#[derive(clap::Args, Debug)]
pub struct WireArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Ledger to use (created if absent).
    #[arg(long, default_value = "bench")]
    pub ledger: String,
    /// Concurrent session counts to run, one step each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub sessions: Vec<usize>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub seconds: u64,
    /// The transaction each session repeats.
    #[arg(long, value_enum, default_value_t = WireKind::Insert)]
    pub kind: WireKind,
    /// Documents inserted before an update run (updates pick one at random).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub preload: u64,
}

/// Runs `quill bench wire`.
pub fn run(args: WireArgs) -> anyhow::Result<()> {
    let (scratch, fsync_p50) = scratch_with_fsync_baseline("wire", args.target.dir.as_deref())?;
    let bench = Bench::start(&args.target, &scratch.path().join("data"))?;
    let outcome = bench
        .client
        .block_on(load_steps(&bench.target, &args, fsync_p50));
    bench.stop()?;
    outcome?.print();
    Ok(())
}

/// The scratch directory of `quill bench NAME` (under `dir`, else the OS temp dir), after
/// printing the machine and the raw fsync latency measured in it; returns the fsync p50, the
/// figure the wire benches compare against.
pub(super) fn scratch_with_fsync_baseline(
    name: &str,
    dir: Option<&Path>,
) -> anyhow::Result<(ScratchDir, Duration)> {
    let scratch = ScratchDir::new(dir, name)?;
    let mut fsync = stats::fsync_baseline(scratch.path(), 200)?;
    let (fsync_p50, fsync_p99) = fsync.p50_p99();
    println!("quill bench {name} — {}", super::machine_line());
    println!(
        "raw fsync (write 200 B + fdatasync, 200 samples): p50 {}  p99 {}",
        fmt_duration(fsync_p50),
        fmt_duration(fsync_p99)
    );
    Ok((scratch, fsync_p50))
}

/// The servers a bench loads, and the runtimes it drives them from: the endpoints given, or a
/// server started in-process (no authentication, loopback port) and stopped by [`Self::stop`].
pub(super) struct Bench {
    /// Where requests go and how they are signed.
    pub(super) target: Target,
    /// Runs the load generator; the server has its own runtime, so client and server tasks
    /// do not queue behind each other.
    pub(super) client: tokio::runtime::Runtime,
    server_runtime: tokio::runtime::Runtime,
    server: Option<RunningServer>,
}

impl Bench {
    /// Targets `target`'s endpoints (signing for its region when credentials are in the
    /// environment), or starts a server with its data in `data_dir` when there are none.
    pub(super) fn start(target: &TargetArgs, data_dir: &Path) -> anyhow::Result<Bench> {
        let server_runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-server")
            .build()?;
        let (mut endpoints, server) = match target.endpoint.as_slice() {
            [] => {
                let (address, server) = server_runtime.block_on(start_server(
                    data_dir.to_path_buf(),
                    quill_server::tlog::LogConfig::default(),
                ))?;
                (
                    vec![Endpoint::parse(&format!("http://{address}"), None)?],
                    Some(server),
                )
            }
            urls => (
                urls.iter()
                    .map(|url| Endpoint::parse(url, target.ca_cert.as_deref()))
                    .collect::<Result<Vec<_>, _>>()?,
                None,
            ),
        };
        let endpoint = endpoints.remove(0);
        let signer = Signer::from_env(&target.region);
        let target = Target {
            endpoint,
            more_endpoints: endpoints,
            signer,
        };
        let client = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-client")
            .build()?;
        Ok(Bench {
            target,
            client,
            server_runtime,
            server,
        })
    }

    /// Stops the in-process server, if there is one.
    pub(super) fn stop(self) -> anyhow::Result<()> {
        match self.server {
            Some(server) => self.server_runtime.block_on(server.stop()),
            None => Ok(()),
        }
    }
}

/// The in-process server: a stop signal and the task serving until it fires.
pub(super) struct RunningServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), quill_server::ServerError>>,
}

impl RunningServer {
    /// Signals shutdown and waits (bounded) for in-flight work to finish and ledgers to close.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let finished = tokio::time::timeout(REQUEST_TIMEOUT, self.task)
            .await
            .map_err(|_| {
                anyhow::anyhow!("the in-process server did not stop within {REQUEST_TIMEOUT:?}")
            })?;
        finished??;
        Ok(())
    }
}

/// The server under load and how to sign for it.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) endpoint: Endpoint,
    /// Other servers of the same ledgers; session `n` goes to server `n` modulo their number.
    pub(super) more_endpoints: Vec<Endpoint>,
    pub(super) signer: Option<Signer>,
}

impl Target {
    pub(super) async fn connect(&self) -> anyhow::Result<Http> {
        Ok(Http {
            connection: self.endpoint.connect().await?,
            signer: self.signer.clone(),
        })
    }

    /// Runs session `worker` on its client thread ([`client_thread`]), connected there: its
    /// connection is then registered with, polled by and woken on that one thread.
    pub(super) fn spawn_session<T, F, Fut>(
        &self,
        worker: usize,
        session: F,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(Http) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let target = self.clone();
        Ok(client_thread(worker)?
            .spawn(async move { session(target.connect_worker(worker).await?).await }))
    }

    /// A connection for session `worker` (see `more_endpoints`).
    pub(super) async fn connect_worker(&self, worker: usize) -> anyhow::Result<Http> {
        let endpoint = match worker % (1 + self.more_endpoints.len()) {
            0 => &self.endpoint,
            n => &self.more_endpoints[n - 1],
        };
        Ok(Http {
            connection: endpoint.connect().await?,
            signer: self.signer.clone(),
        })
    }
}

/// Threads the load generator's sessions run on, as pgbench's `-j 2` threads: each a
/// single-threaded runtime, so a session's request, reply and wake-up stay on one thread. On a
/// multi-threaded runtime every reply woke a parked worker and often its sibling too: the load
/// generator spent 1.7 times the CPU per transaction with one session (395 µs against 226 µs)
/// and about 1.2 times with 32, CPU it took from the server on a 2-core machine.
const CLIENT_THREADS: usize = 2;

/// The runtime session `worker` runs on: `worker` modulo [`CLIENT_THREADS`], started on first
/// use and kept for the life of the process.
fn client_thread(worker: usize) -> anyhow::Result<&'static tokio::runtime::Handle> {
    static THREADS: std::sync::OnceLock<Result<Vec<tokio::runtime::Handle>, String>> =
        std::sync::OnceLock::new();
    let started = THREADS.get_or_init(|| {
        (0..CLIENT_THREADS)
            .map(|n| {
                let (handle, started) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name(format!("bench-client-{n}"))
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(runtime) => {
                                let _ = handle.send(Ok(runtime.handle().clone()));
                                runtime.block_on(std::future::pending::<()>());
                            }
                            Err(error) => drop(handle.send(Err(error.to_string()))),
                        }
                    })
                    .map_err(|error| error.to_string())?;
                started
                    .recv()
                    .map_err(|_| "a bench client thread stopped".to_owned())?
            })
            .collect()
    });
    match started {
        Ok(threads) => Ok(&threads[worker % threads.len()]),
        Err(error) => Err(anyhow::anyhow!(
            "cannot start the bench client threads: {error}"
        )),
    }
}

/// Starts `quill_server` on a loopback port without authentication, with these log settings.
pub(super) async fn start_server(
    data_dir: PathBuf,
    log: quill_server::tlog::LogConfig,
) -> anyhow::Result<(SocketAddr, RunningServer)> {
    std::fs::create_dir_all(&data_dir)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = quill_server::ServerConfig::new(data_dir, "127.0.0.1:0".parse()?);
    config.log = log;
    let (address, server) = quill_server::bind(config, async {
        let _ = stopped.await;
    })
    .await?;
    Ok((
        address,
        RunningServer {
            stop,
            task: tokio::spawn(server),
        },
    ))
}

async fn load_steps(
    target: &Target,
    args: &WireArgs,
    fsync_p50: Duration,
) -> anyhow::Result<Summary> {
    prepare_ledger(target, &args.ledger).await?;
    let ids = match args.kind {
        WireKind::Insert => Vec::new(),
        WireKind::Update => preload(target, &args.ledger, args.preload).await?,
    };
    let ids: Arc<[String]> = ids.into();
    let mut summary = Summary::new();
    summary.row("fsync p50 (baseline)", fmt_duration(fsync_p50), "-", None);
    println!(
        "\n{:>9} {:>10} {:>12} {:>12} {:>10}",
        "sessions", "tx/s", "p50", "p99", "occ"
    );
    for &sessions in args.sessions.iter().take(16) {
        let step = run_step(
            target,
            &args.ledger,
            &Workload {
                kind: args.kind,
                ids: Arc::clone(&ids),
            },
            sessions.clamp(1, SESSIONS_MAX),
            Duration::from_secs(args.seconds),
        )
        .await?;
        let tps = rate(step.transactions, step.elapsed);
        let mut latencies = step.latencies;
        let (p50, p99) = latencies.p50_p99();
        let [start, execute, commit] = step.requests.map(|mut each| each.percentile(50.0));
        println!(
            "{sessions:>9} {tps:>10.0} {:>12} {:>12} {:>10}   requests p50: StartTransaction {}, ExecuteStatement {}, CommitTransaction {}",
            fmt_duration(p50),
            fmt_duration(p99),
            step.conflicts,
            fmt_duration(start),
            fmt_duration(execute),
            fmt_duration(commit),
        );
        println!(
            "wire kind={} sessions={sessions} tx_per_sec={tps:.1} p50_us={} p99_us={} transactions={} occ={} start_p50_us={} execute_p50_us={} commit_p50_us={}",
            args.kind.name(),
            p50.as_micros(),
            p99.as_micros(),
            step.transactions,
            step.conflicts,
            start.as_micros(),
            execute.as_micros(),
            commit.as_micros(),
        );
        if sessions == 1 {
            summary.row(
                "wire 1-session p50",
                fmt_duration(p50),
                "≤ 2 ms",
                Some(p50 <= Duration::from_millis(2)),
            );
        }
        if sessions == 32 {
            summary.row(
                "wire 32-session durable tx/s",
                format!("{tps:.0}"),
                "≥ 5,000",
                Some(tps >= 5_000.0),
            );
        }
    }
    Ok(summary)
}

/// Creates the ledger (unless it exists) and `BenchTable` (unless it exists).
pub(super) async fn prepare_ledger(target: &Target, ledger: &str) -> anyhow::Result<()> {
    let mut http = target.connect().await?;
    create_ledger(&mut http, ledger).await?;
    let mut session = Session::start(http, ledger).await?;
    let id = session.start_transaction().await?;
    let mut digest = quill_verify::CommitDigest::new(&id);
    let statement = "CREATE TABLE BenchTable";
    digest.add_statement(statement, &[]);
    match session.execute(&id, statement, &[]).await {
        Ok(_) => session.commit(&id, &digest).await?,
        // Left from an earlier run against the same endpoint: the table is there.
        Err(e) if e.to_string().contains("exist") => session.abort().await?,
        Err(e) => return Err(e),
    }
    Ok(())
}

/// CreateLedger (ALLOW_ALL, no deletion protection); a ledger of that name already there is
/// fine.
pub(super) async fn create_ledger(http: &mut Http, ledger: &str) -> anyhow::Result<()> {
    let body = json!({"Name": ledger, "PermissionsMode": "ALLOW_ALL", "DeletionProtection": false});
    let (status, reply) = http
        .request(
            Method::POST,
            "/ledgers",
            &[("content-type", "application/json")],
            &body,
        )
        .await?;
    anyhow::ensure!(
        status == 200 || status == 409,
        "CreateLedger failed with HTTP {status}: {reply}"
    );
    Ok(())
}

#[derive(Default)]
pub(super) struct StepOutcome {
    pub(super) transactions: u64,
    pub(super) conflicts: u64,
    pub(super) elapsed: Duration,
    pub(super) latencies: Latencies,
    /// StartTransaction, ExecuteStatement and CommitTransaction of the committed transactions,
    /// each from sending the request to reading its reply.
    pub(super) requests: [Latencies; 3],
}

impl StepOutcome {
    /// Adds another session's counts and samples.
    fn merge(&mut self, other: StepOutcome) {
        self.transactions += other.transactions;
        self.conflicts += other.conflicts;
        self.latencies.merge(other.latencies);
        for (mine, theirs) in self.requests.iter_mut().zip(other.requests) {
            mine.merge(theirs);
        }
    }
}

/// Inserts `documents` documents into `BenchTable`, `PRELOAD_BATCH` per transaction, and
/// returns their ids.
async fn preload(target: &Target, ledger: &str, documents: u64) -> anyhow::Result<Vec<String>> {
    let mut session = Session::start(target.connect().await?, ledger).await?;
    let mut ids = Vec::with_capacity(documents as usize);
    let mut first = 0;
    while first < documents {
        let batch: Vec<ion_rs::Element> = (first..documents.min(first + PRELOAD_BATCH))
            .map(load::vehicle)
            .collect();
        first += batch.len() as u64;
        let list = ion_rs::Element::from(ion_rs::List::from(batch));
        let id = session.start_transaction().await?;
        let mut digest = quill_verify::CommitDigest::new(&id);
        digest.add_statement(INSERT, std::slice::from_ref(&list));
        let rows = session.execute(&id, INSERT, &[&ion_base64(&list)?]).await?;
        session.commit(&id, &digest).await?;
        for row in rows {
            let id = row
                .as_struct()
                .and_then(|row| row.get("documentId"))
                .and_then(|id| id.as_string())
                .ok_or_else(|| anyhow::anyhow!("INSERT returned {row} without a documentId"))?;
            ids.push(id.to_owned());
        }
    }
    session.end().await;
    Ok(ids)
}

/// What every session of a step runs.
#[derive(Clone)]
pub(super) struct Workload {
    pub(super) kind: WireKind,
    /// Update targets (empty for inserts).
    pub(super) ids: Arc<[String]>,
}

impl WireKind {
    fn name(self) -> &'static str {
        match self {
            WireKind::Insert => "insert",
            WireKind::Update => "update",
        }
    }
}

pub(super) async fn run_step(
    target: &Target,
    ledger: &str,
    workload: &Workload,
    sessions: usize,
    duration: Duration,
) -> anyhow::Result<StepOutcome> {
    let start_line = Arc::new(tokio::sync::Barrier::new(sessions));
    let mut tasks = Vec::with_capacity(sessions);
    for worker in 0..sessions {
        let (ledger, start_line, workload) =
            (ledger.to_owned(), Arc::clone(&start_line), workload.clone());
        tasks.push(target.spawn_session(worker, move |http| async move {
            let session = Session::start(http, &ledger).await?;
            start_line.wait().await;
            session_loop(session, &workload, worker as u64, duration).await
        })?);
    }
    let began = Instant::now();
    let mut outcome = StepOutcome::default();
    for task in tasks {
        outcome.merge(task.await??);
    }
    outcome.elapsed = began
        .elapsed()
        .min(duration + REQUEST_TIMEOUT)
        .max(duration);
    Ok(outcome)
}

/// One session's transactions until `duration` has passed (`elapsed` is left to the caller).
async fn session_loop(
    mut session: Session,
    workload: &Workload,
    worker: u64,
    duration: Duration,
) -> anyhow::Result<StepOutcome> {
    let began = Instant::now();
    let mut outcome = StepOutcome::default();
    let mut n = worker << 40;
    // One stream per session. (Seeding a generator per iteration from `n` made sessions pick
    // the same documents far more often than chance: at 2,000 documents, 8 sessions collided
    // on 22 % of their iterations instead of 1.4 %, and the extra conflicts looked like the
    // engine's.)
    let mut random = XorShift::new((worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    while began.elapsed() < duration {
        n += 1;
        let (statement, parameters) = match workload.kind {
            WireKind::Insert => (INSERT, vec![load::vehicle(n)]),
            WireKind::Update => {
                let pick = random.below(workload.ids.len() as u64);
                let id = &workload.ids[pick as usize];
                (
                    UPDATE,
                    vec![
                        ion_rs::Element::int(2000 + (n % 25) as i64),
                        ion_rs::Element::int((n * 7919 % 200_000) as i64),
                        ion_rs::Element::string(id.as_str()),
                    ],
                )
            }
        };
        let encoded = parameters
            .iter()
            .map(ion_base64)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let encoded: Vec<&str> = encoded.iter().map(String::as_str).collect();
        let started = Instant::now();
        // OCC conflicts are retried, as drivers do, and counted; the latency includes them.
        // Retries stop only at the deadline, so a hot workload shows as conflicts, not an error.
        loop {
            match one_transaction(&mut session, statement, &parameters, &encoded).await {
                Ok(requests) => {
                    outcome.latencies.record(started.elapsed());
                    for (latencies, took) in outcome.requests.iter_mut().zip(requests) {
                        latencies.record(took);
                    }
                    outcome.transactions += 1;
                    break;
                }
                Err(e) if e.to_string().contains("OccConflictException") => {
                    outcome.conflicts += 1;
                    if began.elapsed() >= duration {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    session.end().await;
    Ok(outcome)
}

/// A value as the base64 of its Ion binary encoding, as drivers send parameters.
pub(super) fn ion_base64(value: &ion_rs::Element) -> anyhow::Result<String> {
    let encoded = value.encode_as(ion_rs::v1_0::Binary)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(encoded))
}

/// StartTransaction, one statement, CommitTransaction; returns how long each request took,
/// from sending it to reading its reply, in that order.
pub(super) async fn one_transaction(
    session: &mut Session,
    statement: &str,
    parameters: &[ion_rs::Element],
    encoded: &[&str],
) -> anyhow::Result<[Duration; 3]> {
    let started = Instant::now();
    let id = session.start_transaction().await?;
    let start = started.elapsed();
    let mut digest = quill_verify::CommitDigest::new(&id);
    digest.add_statement(statement, parameters);
    let executing = Instant::now();
    // The statement's result (the inserted document's id) is not used here: left encoded.
    session.execute_encoded(&id, statement, encoded).await?;
    let execute = executing.elapsed();
    let committing = Instant::now();
    session.commit(&id, &digest).await?;
    Ok([start, execute, committing.elapsed()])
}

/// A QLDB session over one connection.
pub(super) struct Session {
    http: Http,
    token: String,
}

impl Session {
    pub(super) async fn start(mut http: Http, ledger: &str) -> anyhow::Result<Session> {
        let request = json!({"StartSession": {"LedgerName": ledger}});
        let reply = send(&mut http, serde_json::to_vec(&request)?).await?;
        let token = reply
            .start_session
            .ok_or_else(|| anyhow::anyhow!("StartSession reply has no SessionToken"))?
            .session_token;
        Ok(Session { token, http })
    }

    /// One command of this session: `{"SessionToken": …, NAME: body}`.
    async fn send(&mut self, name: &str, body: &impl Serialize) -> anyhow::Result<Reply> {
        use serde::ser::{SerializeMap as _, Serializer as _};
        let mut request = Vec::with_capacity(256);
        let mut serializer = serde_json::Serializer::new(&mut request);
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("SessionToken", &self.token)?;
        map.serialize_entry(name, body)?;
        map.end()?;
        send(&mut self.http, request).await
    }

    pub(super) async fn start_transaction(&mut self) -> anyhow::Result<String> {
        let reply = self.send("StartTransaction", &Empty {}).await?;
        Ok(reply
            .start_transaction
            .ok_or_else(|| anyhow::anyhow!("StartTransaction reply has no TransactionId"))?
            .transaction_id)
    }

    /// ExecuteStatement; returns the first page's values, still encoded.
    async fn execute_encoded(
        &mut self,
        transaction_id: &str,
        statement: &str,
        parameters: &[&str],
    ) -> anyhow::Result<Vec<IonBinary<String>>> {
        let body = ExecuteStatement {
            transaction_id,
            statement,
            parameters: parameters
                .iter()
                .map(|&ion_binary| IonBinary { ion_binary })
                .collect(),
        };
        let reply = self.send("ExecuteStatement", &body).await?;
        Ok(reply
            .execute_statement
            .ok_or_else(|| anyhow::anyhow!("ExecuteStatement reply has no FirstPage"))?
            .first_page
            .values)
    }

    pub(super) async fn execute(
        &mut self,
        transaction_id: &str,
        statement: &str,
        parameters: &[&str],
    ) -> anyhow::Result<Vec<ion_rs::Element>> {
        let values = self
            .execute_encoded(transaction_id, statement, parameters)
            .await?;
        values
            .iter()
            .map(|value| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(&value.ion_binary)?;
                Ok(ion_rs::Element::read_one(bytes)?)
            })
            .collect()
    }

    pub(super) async fn commit(
        &mut self,
        transaction_id: &str,
        digest: &quill_verify::CommitDigest,
    ) -> anyhow::Result<()> {
        let ours = base64::engine::general_purpose::STANDARD.encode(digest.value().as_bytes());
        let body = CommitTransaction {
            transaction_id,
            commit_digest: &ours,
        };
        let reply = self.send("CommitTransaction", &body).await?;
        let theirs = reply
            .commit_transaction
            .map(|committed| committed.commit_digest)
            .unwrap_or_default();
        anyhow::ensure!(
            theirs == ours,
            "CommitTransaction returned digest {theirs:?}, expected {ours:?}"
        );
        Ok(())
    }

    async fn abort(&mut self) -> anyhow::Result<()> {
        self.send("AbortTransaction", &Empty {}).await.map(drop)
    }

    /// EndSession; errors are ignored, as the drivers do.
    pub(super) async fn end(mut self) {
        let _ = self.send("EndSession", &Empty {}).await;
    }
}

/// A command without members (`{}`).
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteStatement<'a> {
    transaction_id: &'a str,
    statement: &'a str,
    parameters: Vec<IonBinary<&'a str>>,
}

/// A value as the protocol carries it: the base64 of its Ion binary encoding.
#[derive(Serialize, Deserialize)]
struct IonBinary<S> {
    #[serde(rename = "IonBinary")]
    ion_binary: S,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CommitTransaction<'a> {
    transaction_id: &'a str,
    commit_digest: &'a str,
}

/// The members of a SendCommand reply the bench reads; others are skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Reply {
    start_session: Option<SessionStarted>,
    start_transaction: Option<TransactionStarted>,
    execute_statement: Option<Executed>,
    commit_transaction: Option<Committed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionStarted {
    session_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactionStarted {
    transaction_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Executed {
    first_page: Page,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    values: Vec<IonBinary<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Committed {
    commit_digest: String,
}

/// One SendCommand; a non-200 reply becomes an error naming its `__type`.
async fn send(http: &mut Http, request: Vec<u8>) -> anyhow::Result<Reply> {
    let headers = [
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "QLDBSession.SendCommand"),
    ];
    let (status, reply) = http.send(Method::POST, "/", &headers, request).await?;
    if status != 200 {
        let reply: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        let kind = reply["__type"].as_str().unwrap_or("unknown");
        let message = reply["Message"]
            .as_str()
            .or_else(|| reply["message"].as_str())
            .unwrap_or_default();
        anyhow::bail!("HTTP {status} {kind}: {message}");
    }
    serde_json::from_slice(&reply)
        .map_err(|e| anyhow::anyhow!("a SendCommand reply is not what QLDB sends: {e}"))
}

/// One session's keep-alive connection, sending JSON and signing when credentials are set.
pub(super) struct Http {
    connection: Connection,
    signer: Option<Signer>,
}

impl Http {
    /// Sends a JSON request and reads the reply as JSON (`Null` when empty).
    pub(super) async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, reply) = self
            .send(method, path, headers, serde_json::to_vec(body)?)
            .await?;
        let value = if reply.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&reply)?
        };
        Ok((status, value))
    }

    /// Sends `body` as it is; returns the status and the reply's bytes.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, bytes::Bytes)> {
        let exchange =
            self.connection
                .request(method.clone(), path, headers, body, self.signer.as_ref());
        Ok(tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow::anyhow!("{method} {path}: no reply within {REQUEST_TIMEOUT:?}")
            })??)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An in-process server with its data under `scratch`: each test its own scratch base, as
    /// the scratch directory's name is per process.
    pub(in crate::bench) fn in_process(scratch: &tempfile::TempDir) -> TargetArgs {
        TargetArgs {
            endpoint: Vec::new(),
            ca_cert: None,
            region: "us-east-1".into(),
            dir: Some(scratch.path().to_path_buf()),
        }
    }

    #[test]
    fn wire_bench_runs_against_the_in_process_server() {
        let scratch = tempfile::tempdir().unwrap();
        let args = WireArgs {
            target: in_process(&scratch),
            ledger: "bench".into(),
            sessions: vec![1, 2],
            seconds: 1,
            kind: WireKind::Insert,
            preload: 1,
        };
        run(args).unwrap();
    }

    #[test]
    fn each_request_of_a_committed_transaction_is_timed_within_its_transaction() {
        let scratch = tempfile::tempdir().unwrap();
        let bench = Bench::start(&in_process(&scratch), &scratch.path().join("data")).unwrap();
        let workload = Workload {
            kind: WireKind::Insert,
            ids: Vec::<String>::new().into(),
        };
        let outcome = bench.client.block_on(async {
            prepare_ledger(&bench.target, "bench").await?;
            run_step(&bench.target, "bench", &workload, 2, Duration::from_secs(1)).await
        });
        bench.stop().unwrap();
        let mut outcome = outcome.unwrap();
        assert!(outcome.transactions > 0);
        let committed = usize::try_from(outcome.transactions).unwrap();
        let slowest = outcome.latencies.percentile(100.0);
        for mut request in outcome.requests {
            assert_eq!(request.len(), committed.min(stats::LATENCY_SAMPLES_MAX));
            let fastest = request.percentile(0.0);
            assert!(fastest > Duration::ZERO && request.percentile(100.0) <= slowest);
        }
    }

    #[test]
    fn wire_bench_updates_preloaded_documents() {
        let scratch = tempfile::tempdir().unwrap();
        let args = WireArgs {
            target: in_process(&scratch),
            ledger: "bench".into(),
            sessions: vec![2],
            seconds: 1,
            kind: WireKind::Update,
            preload: 150,
        };
        run(args).unwrap();
    }
}
