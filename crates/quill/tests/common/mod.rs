//! Helpers of the tests that run `quill` processes: one-shot commands, long-lived ones
//! (`serve`, `witness serve`, `mirror`), and the keys, policies and checkpoints of the
//! witnessed log.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use quill_verify::tlog::{Checkpoint, Note};

/// Runs `quill <args>` to completion, without the caller's log level or AWS credentials.
pub fn run_quill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("quill runs")
}

/// [`run_quill`], which must succeed.
pub fn quill(args: &[&str]) -> Output {
    let output = run_quill(args);
    assert!(
        output.status.success(),
        "quill {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `quill shell` against the server at `endpoint` (`host:port`) running `statements` on
/// ledger `shop`.
pub fn shell(endpoint: &str, statements: &str) -> Output {
    let endpoint = format!("http://{endpoint}");
    run_quill(&[
        "shell",
        "--endpoint",
        &endpoint,
        "--ledger",
        "shop",
        "-e",
        statements,
    ])
}

/// `quill shell` that must succeed; returns its stdout.
pub fn shell_ok(endpoint: &str, statements: &str) -> String {
    let output = shell(endpoint, statements);
    assert!(
        output.status.success(),
        "{statements}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Polls `done` every 50 ms until it holds, failing the test after 60 s.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `quill witness keygen` for witness `name` (`name.example`) into `dir/name.key`: returns
/// the key file and its verifier key.
pub fn witness_key(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key")).to_str().unwrap().to_owned();
    let vkey = quill(&[
        "witness",
        "keygen",
        "--name",
        &format!("{name}.example"),
        "--key",
        &key,
    ])
    .stdout;
    (key, String::from_utf8(vkey).unwrap().trim().to_owned())
}

/// Starts witness `name` (its key made by [`witness_key`]) trusting the logs listed in
/// `dir/logs`, with its state in `dir/name-state`: returns its verifier key and the process.
pub fn start_witness(dir: &Path, name: &str) -> (String, Listening) {
    let path = |file: &str| dir.join(file).to_str().unwrap().to_owned();
    let (key, vkey) = witness_key(dir, name);
    let witness = Listening::start(&[
        "witness",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--key",
        &key,
        "--logs",
        &path("logs"),
        "--state-dir",
        &path(&format!("{name}-state")),
    ]);
    (vkey, witness)
}

/// The log verifier key line(s) `quill log-key` prints for the ledgers of `data_dir`
/// (`log` lines of a policy end with it).
pub fn log_key(data_dir: &str) -> String {
    String::from_utf8(quill(&["log-key", "--data-dir", data_dir]).stdout).unwrap()
}

/// Writes a policy trusting the log of `data_dir`'s ledger with no witness to `path`.
pub fn write_log_only_policy(data_dir: &str, path: &str) {
    std::fs::write(path, format!("log {}quorum none\n", log_key(data_dir))).unwrap();
}

/// A `quill` process that listens on a loopback port, killed when dropped.
pub struct Listening {
    child: Child,
    /// `host:port` from its `quill: listening on http(s)://…` line.
    pub address: String,
}

impl Listening {
    /// Starts `quill <args>` (which must include `--listen 127.0.0.1:0`) and reads its address.
    pub fn start(args: &[&str]) -> Listening {
        Listening::spawn(args, Stdio::null())
    }

    /// [`Listening::start`], its log (stderr) written to the file `log`.
    pub fn start_logging(args: &[&str], log: &Path) -> Listening {
        let file = std::fs::File::create(log).expect("create the log file");
        Listening::spawn(args, Stdio::from(file))
    }

    /// Stops the process with SIGTERM (a graceful shutdown) and waits for it.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let status = self.child.wait().expect("it exits");
        assert!(status.success(), "exit status after SIGTERM: {status}");
    }

    fn spawn(args: &[&str], stderr: Stdio) -> Listening {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("quill starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the address line");
        let url = line.trim().strip_prefix("quill: listening on ");
        let address = url
            .and_then(|url| {
                url.strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
            })
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Listening { child, address }
    }

    /// One HTTP/1.1 request; returns the status, the content type and the body, or `None`
    /// when the process cannot be reached.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String, Vec<u8>)> {
        let mut stream = TcpStream::connect(&self.address).ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.address,
            body.len()
        )
        .ok()?;
        stream.write_all(body).ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head.get(9..12)?.parse().ok()?;
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        Some((status, content_type, response[split + 4..].to_vec()))
    }
}

impl Listening {
    /// `GET path`, which must answer 200; returns the body.
    pub fn get_ok(&self, path: &str) -> Vec<u8> {
        let (status, _, body) = self.request("GET", path, b"").expect("it answers");
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// Waits until ledger `shop`'s log checkpoint `accept`s; returns the note and checkpoint.
    pub fn checkpoint_where(
        &self,
        what: &str,
        mut accept: impl FnMut(&str, &Checkpoint) -> bool,
    ) -> (String, Checkpoint) {
        let mut found = None;
        wait_for(what, || {
            let Some((200, _, body)) = self.request("GET", "/ledgers/shop/log/checkpoint", b"")
            else {
                return false;
            };
            let note = String::from_utf8(body).unwrap();
            let checkpoint = Checkpoint::parse(&Note::parse(&note).unwrap().text).unwrap();
            let accepted = accept(&note, &checkpoint);
            found = Some((note, checkpoint));
            accepted
        });
        found.expect("accepted")
    }

    /// Waits for a checkpoint of ledger `shop` of at least `size` leaves.
    pub fn checkpoint(&self, size: u64) -> (String, Checkpoint) {
        self.checkpoint_where(&format!("a checkpoint of size {size}"), |_, c| {
            c.size >= size
        })
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
