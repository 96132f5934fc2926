//! `quill bench wire`: a QLDB wire-protocol load generator. Each session is one keep-alive
//! HTTP/1.1 connection (a hand-written minimal client: requests are small JSON bodies and
//! replies carry `Content-Length`) running StartTransaction, one `INSERT INTO BenchTable ?`
//! with an Ion binary parameter, and CommitTransaction with the driver-computed
//! CommitDigest — exactly what a QLDB driver sends per single-document transaction.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::load;
use super::stats::{self, fmt_duration, rate, Latencies, ScratchDir};
use super::summary::Summary;

/// Largest response header block accepted.
const HEADER_BYTES_MAX: usize = 64 * 1024;
/// Largest response body accepted (QLDB pages are far smaller).
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// One request's deadline: a stuck server fails the run instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Sessions one step may open (QLDB's per-ledger limit is 1500).
const SESSIONS_MAX: usize = 1_024;
/// Times a transaction is retried after an OCC conflict, as the drivers do.
const OCC_RETRIES_MAX: u32 = 4;
/// Statement every transaction runs.
const INSERT: &str = "INSERT INTO BenchTable ?";

/// Arguments of `quill bench wire`.
#[derive(clap::Args, Debug)]
pub struct WireArgs {
    /// Server to load, e.g. `http://127.0.0.1:8080` (no TLS, no authentication). Without it
    /// a server is started in-process on a loopback port with a scratch data directory.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Ledger to use (created if absent).
    #[arg(long, default_value = "bench")]
    pub ledger: String,
    /// Concurrent session counts to run, one step each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub sessions: Vec<usize>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub seconds: u64,
    /// Directory for the in-process server's data (default: the OS temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs `quill bench wire`.
pub fn run(args: WireArgs) -> anyhow::Result<()> {
    let scratch = ScratchDir::new(args.dir.as_deref(), "wire")?;
    let mut fsync = stats::fsync_baseline(scratch.path(), 200)?;
    let (fsync_p50, fsync_p99) = fsync.p50_p99();
    println!("quill bench wire — {}", super::machine_line());
    println!(
        "raw fsync (write 200 B + fdatasync, 200 samples): p50 {}  p99 {}",
        fmt_duration(fsync_p50),
        fmt_duration(fsync_p99)
    );
    // The server gets its own runtime so client and server tasks do not queue behind each other.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()?;
    let (address, server) = match &args.endpoint {
        Some(endpoint) => (parse_endpoint(endpoint)?, None),
        None => {
            let (address, server) =
                server_runtime.block_on(start_server(scratch.path().join("data")))?;
            (address, Some(server))
        }
    };
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    let outcome = client_runtime.block_on(load_steps(address, &args, fsync_p50));
    if let Some(server) = server {
        server_runtime.block_on(server.stop())?;
    }
    outcome?.print();
    Ok(())
}

/// The in-process server: a stop signal and the task serving until it fires.
struct RunningServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), quill_server::ServerError>>,
}

impl RunningServer {
    /// Signals shutdown and waits (bounded) for in-flight work to finish and ledgers to close.
    async fn stop(self) -> anyhow::Result<()> {
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

/// `http://host:port` (or `host:port`) to a socket address.
fn parse_endpoint(endpoint: &str) -> anyhow::Result<SocketAddr> {
    let rest = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    anyhow::ensure!(
        !rest.starts_with("https://"),
        "TLS endpoints are not supported by the load generator"
    );
    let host_port = rest.trim_end_matches('/');
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{endpoint} resolves to no address"))
}

/// Starts `quill_server` on a loopback port without authentication.
async fn start_server(data_dir: PathBuf) -> anyhow::Result<(SocketAddr, RunningServer)> {
    std::fs::create_dir_all(&data_dir)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = quill_server::ServerConfig::new(data_dir, "127.0.0.1:0".parse()?);
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
    address: SocketAddr,
    args: &WireArgs,
    fsync_p50: Duration,
) -> anyhow::Result<Summary> {
    prepare_ledger(address, &args.ledger).await?;
    let mut summary = Summary::new();
    summary.row("fsync p50 (baseline)", fmt_duration(fsync_p50), "-", None);
    println!(
        "\n{:>9} {:>10} {:>12} {:>12} {:>10}",
        "sessions", "tx/s", "p50", "p99", "occ"
    );
    for &sessions in args.sessions.iter().take(16) {
        let step = run_step(
            address,
            &args.ledger,
            sessions.clamp(1, SESSIONS_MAX),
            Duration::from_secs(args.seconds),
        )
        .await?;
        let tps = rate(step.transactions, step.elapsed);
        let mut latencies = step.latencies;
        let (p50, p99) = latencies.p50_p99();
        println!(
            "{sessions:>9} {tps:>10.0} {:>12} {:>12} {:>10}",
            fmt_duration(p50),
            fmt_duration(p99),
            step.conflicts
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
async fn prepare_ledger(address: SocketAddr, ledger: &str) -> anyhow::Result<()> {
    let mut http = Http::connect(address).await?;
    let body = json!({"Name": ledger, "PermissionsMode": "ALLOW_ALL", "DeletionProtection": false});
    let (status, reply) = http
        .request(
            "POST",
            "/ledgers",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await?;
    anyhow::ensure!(
        status == 200 || status == 409,
        "CreateLedger failed with HTTP {status}: {reply}"
    );
    let mut session = Session::start(http, ledger).await?;
    let id = session.start_transaction().await?;
    let mut digest = quill_verify::CommitDigest::new(&id);
    let statement = "CREATE TABLE BenchTable";
    digest.add_statement(statement, &[]);
    match session.execute(&id, statement, &[]).await {
        Ok(()) => session.commit(&id, &digest).await?,
        // Left from an earlier run against the same endpoint: the table is there.
        Err(e) if e.to_string().contains("exist") => session.abort().await?,
        Err(e) => return Err(e),
    }
    Ok(())
}

struct StepOutcome {
    transactions: u64,
    conflicts: u64,
    elapsed: Duration,
    latencies: Latencies,
}

async fn run_step(
    address: SocketAddr,
    ledger: &str,
    sessions: usize,
    duration: Duration,
) -> anyhow::Result<StepOutcome> {
    let start_line = Arc::new(tokio::sync::Barrier::new(sessions));
    let mut tasks = Vec::with_capacity(sessions);
    for worker in 0..sessions {
        let (ledger, start_line) = (ledger.to_owned(), Arc::clone(&start_line));
        tasks.push(tokio::spawn(async move {
            let session = Session::start(Http::connect(address).await?, &ledger).await?;
            start_line.wait().await;
            session_loop(session, worker as u64, duration).await
        }));
    }
    let began = Instant::now();
    let mut outcome = StepOutcome {
        transactions: 0,
        conflicts: 0,
        elapsed: Duration::ZERO,
        latencies: Latencies::new(),
    };
    for task in tasks {
        let (transactions, conflicts, latencies) = task.await??;
        outcome.transactions += transactions;
        outcome.conflicts += conflicts;
        outcome.latencies.merge(latencies);
    }
    outcome.elapsed = began
        .elapsed()
        .min(duration + REQUEST_TIMEOUT)
        .max(duration);
    Ok(outcome)
}

/// One session's transactions until `duration` has passed: (committed, OCC conflicts, latencies).
async fn session_loop(
    mut session: Session,
    worker: u64,
    duration: Duration,
) -> anyhow::Result<(u64, u64, Latencies)> {
    let began = Instant::now();
    let (mut committed, mut conflicts, mut latencies) = (0u64, 0u64, Latencies::new());
    let mut n = worker << 40;
    while began.elapsed() < duration {
        n += 1;
        let document = load::vehicle(n);
        let encoded = document.encode_as(ion_rs::v1_0::Binary)?;
        let parameter = base64::engine::general_purpose::STANDARD.encode(&encoded);
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match insert_transaction(&mut session, &document, &parameter).await {
                Ok(()) => break,
                Err(e)
                    if e.to_string().contains("OccConflictException")
                        && attempt <= OCC_RETRIES_MAX =>
                {
                    conflicts += 1
                }
                Err(e) => return Err(e),
            }
        }
        latencies.record(started.elapsed());
        committed += 1;
    }
    session.end().await;
    Ok((committed, conflicts, latencies))
}

async fn insert_transaction(
    session: &mut Session,
    document: &ion_rs::Element,
    parameter: &str,
) -> anyhow::Result<()> {
    let id = session.start_transaction().await?;
    let mut digest = quill_verify::CommitDigest::new(&id);
    digest.add_statement(INSERT, std::slice::from_ref(document));
    session.execute(&id, INSERT, &[parameter]).await?;
    session.commit(&id, &digest).await
}

/// A QLDB session over one connection.
struct Session {
    http: Http,
    token: String,
}

impl Session {
    async fn start(mut http: Http, ledger: &str) -> anyhow::Result<Session> {
        let reply = send(&mut http, &json!({"StartSession": {"LedgerName": ledger}})).await?;
        let token = reply["StartSession"]["SessionToken"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("StartSession reply has no SessionToken: {reply}"))?;
        Ok(Session {
            token: token.to_owned(),
            http,
        })
    }

    async fn start_transaction(&mut self) -> anyhow::Result<String> {
        let reply = send(
            &mut self.http,
            &json!({"SessionToken": self.token, "StartTransaction": {}}),
        )
        .await?;
        let id = reply["StartTransaction"]["TransactionId"]
            .as_str()
            .ok_or_else(|| {
                anyhow::anyhow!("StartTransaction reply has no TransactionId: {reply}")
            })?;
        Ok(id.to_owned())
    }

    async fn execute(
        &mut self,
        transaction_id: &str,
        statement: &str,
        parameters: &[&str],
    ) -> anyhow::Result<()> {
        let parameters: Vec<Value> = parameters.iter().map(|p| json!({"IonBinary": p})).collect();
        let request = json!({"SessionToken": self.token, "ExecuteStatement": {"TransactionId": transaction_id, "Statement": statement, "Parameters": parameters}});
        let reply = send(&mut self.http, &request).await?;
        anyhow::ensure!(
            reply["ExecuteStatement"]["FirstPage"].is_object(),
            "ExecuteStatement reply has no FirstPage: {reply}"
        );
        Ok(())
    }

    async fn commit(
        &mut self,
        transaction_id: &str,
        digest: &quill_verify::CommitDigest,
    ) -> anyhow::Result<()> {
        let ours = base64::engine::general_purpose::STANDARD.encode(digest.value().as_bytes());
        let request = json!({"SessionToken": self.token, "CommitTransaction": {"TransactionId": transaction_id, "CommitDigest": ours}});
        let reply = send(&mut self.http, &request).await?;
        let theirs = reply["CommitTransaction"]["CommitDigest"]
            .as_str()
            .unwrap_or_default();
        anyhow::ensure!(
            theirs == ours,
            "CommitTransaction returned digest {theirs:?}, expected {ours:?}"
        );
        Ok(())
    }

    async fn abort(&mut self) -> anyhow::Result<()> {
        send(
            &mut self.http,
            &json!({"SessionToken": self.token, "AbortTransaction": {}}),
        )
        .await
        .map(drop)
    }

    /// EndSession; errors are ignored, as the drivers do.
    async fn end(mut self) {
        let _ = send(
            &mut self.http,
            &json!({"SessionToken": self.token, "EndSession": {}}),
        )
        .await;
    }
}

/// One SendCommand; a non-200 reply becomes an error naming its `__type`.
async fn send(http: &mut Http, request: &Value) -> anyhow::Result<Value> {
    let headers = [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", "QLDBSession.SendCommand"),
    ];
    let (status, reply) = http.request("POST", "/", &headers, request).await?;
    if status != 200 {
        let kind = reply["__type"].as_str().unwrap_or("unknown");
        let message = reply["Message"]
            .as_str()
            .or_else(|| reply["message"].as_str())
            .unwrap_or_default();
        anyhow::bail!("HTTP {status} {kind}: {message}");
    }
    Ok(reply)
}

/// A keep-alive HTTP/1.1 connection that sends JSON and reads `Content-Length` replies.
struct Http {
    stream: TcpStream,
    host: String,
    buffer: Vec<u8>,
}

impl Http {
    async fn connect(address: SocketAddr) -> anyhow::Result<Http> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            host: address.to_string(),
            buffer: Vec::with_capacity(4096),
        })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let body = serde_json::to_vec(body)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut message = head.into_bytes();
        message.extend_from_slice(&body);
        let (status, reply) = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(&message))
            .await
            .map_err(|_| {
                anyhow::anyhow!("{method} {path}: no reply within {REQUEST_TIMEOUT:?}")
            })??;
        let value = if reply.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&reply)?
        };
        Ok((status, value))
    }

    async fn exchange(&mut self, message: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        self.write_all(message).await?;
        let header_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            anyhow::ensure!(
                self.buffer.len() <= HEADER_BYTES_MAX,
                "response headers exceed {HEADER_BYTES_MAX} bytes"
            );
            self.read_more().await?;
        };
        let (status, length) = parse_head(&self.buffer[..header_end])?;
        anyhow::ensure!(
            length <= BODY_BYTES_MAX,
            "response body of {length} bytes exceeds {BODY_BYTES_MAX}"
        );
        while self.buffer.len() < header_end + length {
            self.read_more().await?;
        }
        let body = self.buffer[header_end..header_end + length].to_vec();
        self.buffer.drain(..header_end + length);
        Ok((status, body))
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> anyhow::Result<()> {
        while !bytes.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(bytes) {
                Ok(0) => anyhow::bail!("connection closed while sending"),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            self.stream.readable().await?;
            match self.stream.try_read(&mut chunk) {
                Ok(0) => anyhow::bail!("connection closed by the server"),
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status code and `Content-Length` from a response head. Chunked replies are refused:
/// QLDB replies are small and the server sends their length.
fn parse_head(head: &[u8]) -> anyhow::Result<(u16, usize)> {
    let text = std::str::from_utf8(head)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
        {
            anyhow::bail!("chunked responses are not supported by the load generator");
        }
    }
    Ok((status, length.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_length() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (200, 42));
        assert_eq!(
            parse_head(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap(),
            (400, 0)
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_endpoint("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_endpoint("https://example.com:443").is_err());
    }

    #[test]
    fn wire_bench_runs_against_the_in_process_server() {
        let args = WireArgs {
            endpoint: None,
            ledger: "bench".into(),
            sessions: vec![1, 2],
            seconds: 1,
            dir: None,
        };
        run(args).unwrap();
    }
}
