//! `quill tail`: prints a ledger's journal as it is committed, one QLDB stream record (Ion
//! text) per line, from the server's `GET /ledgers/{name}/journal/events` (Server-Sent
//! Events). When the connection drops it reconnects with `Last-Event-ID`, so no block is
//! printed twice or skipped. Requests are signed with SigV4 when `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` are set. Plain `http://` only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use quill_server::sigv4;

use crate::args::TailArgs;

/// Wait before reconnecting after the connection dropped.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// The server sends a keepalive every 15 s: silence for longer means a dead connection.
const READ_TIMEOUT: Duration = Duration::from_secs(45);

pub fn run(args: &TailArgs) -> Result<()> {
    let authority = args
        .endpoint
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .with_context(|| format!("endpoint {:?} is not http://HOST:PORT", args.endpoint))?
        .to_owned();
    let mut last_event: Option<u64> = None;
    let stdout = std::io::stdout();
    loop {
        match follow(&authority, args, &mut last_event, &mut stdout.lock()) {
            Ok(()) => {}
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Connection(e)) => {
                if last_event.is_none() && args.from.is_none() {
                    // Nothing received yet: resuming "after the tip" again could skip blocks
                    // committed meanwhile, so report instead of guessing.
                    return Err(e);
                }
                eprintln!("quill tail: connection lost ({e:#}); reconnecting");
            }
        }
        std::thread::sleep(RECONNECT_DELAY);
    }
}

enum Failure {
    /// The server refused (bad ledger, permissions): retrying will not help.
    Fatal(anyhow::Error),
    Connection(anyhow::Error),
}

fn connection<E: Into<anyhow::Error>>(e: E) -> Failure {
    Failure::Connection(e.into())
}

fn request(authority: &str, args: &TailArgs, last_event: Option<u64>) -> Result<String> {
    let path = format!("/ledgers/{}/journal/events", args.ledger);
    let query = match (last_event, args.from) {
        (None, Some(from)) => format!("from={from}"),
        _ => String::new(),
    };
    let mut headers = vec![
        ("host".to_owned(), authority.to_owned()),
        (
            "x-amz-date".to_owned(),
            sigv4::format_amz_date(SystemTime::now()),
        ),
    ];
    if let Some(last) = last_event {
        headers.push(("last-event-id".to_owned(), last.to_string()));
    }
    let key = std::env::var("AWS_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    if let (Some(key), Some(secret)) = (key, secret) {
        if let Some(token) = std::env::var("AWS_SESSION_TOKEN")
            .ok()
            .filter(|v| !v.is_empty())
        {
            headers.push(("x-amz-security-token".to_owned(), token));
        }
        let signable = sigv4::SignableRequest {
            method: "GET",
            raw_path: &path,
            raw_query: &query,
            headers: &headers,
            body: b"",
        };
        let authorization = sigv4::sign(&signable, &key, &secret, &args.region, sigv4::SERVICE)
            .context("cannot sign the request")?;
        headers.push(("authorization".to_owned(), authorization));
    }
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let mut text = format!("GET {target} HTTP/1.1\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("accept: text/event-stream\r\nconnection: close\r\n\r\n");
    Ok(text)
}

/// One connection: prints records until the server or the network ends it.
fn follow(
    authority: &str,
    args: &TailArgs,
    last_event: &mut Option<u64>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let stream = TcpStream::connect(authority).map_err(connection)?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(connection)?;
    let text = request(authority, args, *last_event).map_err(Failure::Fatal)?;
    (&stream).write_all(text.as_bytes()).map_err(connection)?;
    let mut reader = BufReader::new(&stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(connection)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| connection(anyhow::anyhow!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(connection)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name.to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            "content-length" => length = value.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    if status != 200 {
        let mut body = vec![0; length.min(64 * 1024)];
        reader.read_exact(&mut body).map_err(connection)?;
        return Err(Failure::Fatal(anyhow::anyhow!(
            "server answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    if !chunked {
        return Err(Failure::Fatal(anyhow::anyhow!(
            "the server did not stream the events"
        )));
    }
    let mut events = EventParser::default();
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line).map_err(connection)? == 0 {
            return Err(connection(anyhow::anyhow!("the server closed the stream")));
        }
        let size = usize::from_str_radix(size_line.trim(), 16)
            .map_err(|_| connection(anyhow::anyhow!("bad chunk size {size_line:?}")))?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).map_err(connection)?;
        if size == 0 {
            return Err(connection(anyhow::anyhow!("the server ended the stream")));
        }
        for line in events.feed(&chunk[..size]) {
            match line {
                Line::Record(record) => writeln!(out, "{record}").map_err(connection)?,
                Line::Id(id) => {
                    *last_event = Some(id);
                    out.flush().map_err(connection)?;
                }
                Line::Error(message) => {
                    return Err(Failure::Fatal(anyhow::anyhow!("server error: {message}")))
                }
            }
        }
    }
}

enum Line {
    Record(String),
    /// A block's records were all printed.
    Id(u64),
    Error(String),
}

/// Splits the event stream into lines across chunk boundaries.
#[derive(Default)]
struct EventParser {
    partial: Vec<u8>,
    id: Option<u64>,
    error: bool,
}

impl EventParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Line> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            if let Some(id) = line.strip_prefix("id: ") {
                self.id = id.trim().parse().ok();
            } else if line == "event: error" {
                self.error = true;
            } else if let Some(data) = line.strip_prefix("data: ") {
                lines.push(if self.error {
                    Line::Error(data.to_owned())
                } else {
                    Line::Record(data.to_owned())
                });
            } else if line.is_empty() {
                // End of an event: its block is complete.
                if let Some(id) = self.id.take() {
                    lines.push(Line::Id(id));
                }
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_yield_records_then_the_block_id() {
        let mut parser = EventParser::default();
        let mut lines = parser.feed(b"id: 7\nevent: block\ndata: {a:1}\nda");
        lines.extend(parser.feed(b"ta: {b:2}\n\n: keepalive\n\n"));
        let rendered: Vec<String> = lines
            .into_iter()
            .map(|l| match l {
                Line::Record(r) => r,
                Line::Id(id) => format!("#{id}"),
                Line::Error(e) => format!("!{e}"),
            })
            .collect();
        assert_eq!(rendered, ["{a:1}", "{b:2}", "#7"]);
    }

    #[test]
    fn an_error_event_is_reported() {
        let mut parser = EventParser::default();
        let lines = parser.feed(b"event: error\ndata: journal unreadable\n\n");
        assert!(matches!(&lines[0], Line::Error(m) if m == "journal unreadable"));
    }
}
