//! Helpers of the tests that run long-lived `quill` processes (`serve`, `witness serve`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// A `quill` process that listens on a loopback port, killed when dropped.
pub struct Listening {
    child: Child,
    /// `host:port` from its `quill: listening on http://…` line.
    pub address: String,
}

impl Listening {
    /// Starts `quill <args>` (which must include `--listen 127.0.0.1:0`) and reads its address.
    pub fn start(args: &[&str]) -> Listening {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("quill starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the address line");
        let address = line
            .trim()
            .strip_prefix("quill: listening on http://")
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

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
