//! `GET /ledgers/{name}/journal/events`: the journal as Server-Sent Events, so an application
//! can consume a ledger's changes on a laptop with no broker (a Quill extension).
//!
//! One event per block, `id` = the block's sequence number, `event: block`, and one `data:`
//! line per QLDB stream record of the block (its `BLOCK_SUMMARY`, then one `REVISION_DETAILS`
//! per revision), each record as compact Ion text. Records carry
//! `qldbStreamArn = arn:aws:qldb:<region>:<account>:stream/<ledger>/journal-events`.
//! A client resumes with `Last-Event-ID: N` (the next event is block N + 1); `?from=N` starts at
//! block N; with neither, the stream starts after the current tip. Reading the journal needs
//! `qldb:GetBlock` on the ledger.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use ion_rs::{v1_0, Element, TextFormat};
use quill_ledger::Ledger;
use quill_stream::record::StreamBlock;
use tokio::sync::watch;

use crate::error::ApiError;

/// How often an idle tail looks for new blocks.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// An idle tail sends a comment this often, so dead connections are noticed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Most blocks formatted into one chunk.
const BLOCKS_PER_CHUNK: u64 = 100;

/// The ledger name if `path` is `/ledgers/{name}/journal/events`.
pub fn ledger_of(path: &str) -> Option<String> {
    let name = path
        .strip_prefix("/ledgers/")?
        .strip_suffix("/journal/events")?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    String::from_utf8(crate::sigv4::percent_decode(name)).ok()
}

fn parse_sequence(text: &str, what: &str) -> Result<u64, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::invalid_parameter(format!("{what} must be a block sequence number")))
}

/// The first block to send: after `Last-Event-ID`, else `from`, else after `tip`.
pub fn start_block(headers: &HeaderMap, query: &str, tip: u64) -> Result<u64, ApiError> {
    if let Some(last) = headers.get("last-event-id") {
        let last = last
            .to_str()
            .map_err(|_| ApiError::invalid_parameter("Last-Event-ID is not text"))?;
        return Ok(parse_sequence(last, "Last-Event-ID")? + 1);
    }
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("from=") {
            return parse_sequence(value, "from");
        }
    }
    Ok(tip + 1)
}

/// The SSE text of the blocks from `next` on (at most [`BLOCKS_PER_CHUNK`]); empty when there
/// is no block `next` yet. Returns the text and the next block to read.
fn format_blocks(
    ledger: &Ledger,
    stream_arn: &str,
    mut next: u64,
) -> Result<(String, u64), String> {
    let mut text = String::new();
    let blocks = ledger
        .stored_blocks(next, BLOCKS_PER_CHUNK)
        .map_err(|e| e.to_string())?;
    for stored in &blocks {
        let records = StreamBlock::read(stored)
            .and_then(|block| block.records(stream_arn))
            .map_err(|e| e.to_string())?;
        text.push_str(&format!(
            "id: {}\nevent: block\n",
            stored.address.sequence_no
        ));
        for record in records {
            let element = Element::read_one(&record.ion).map_err(|e| e.to_string())?;
            let ion = element
                .encode_as(v1_0::Text.with_format(TextFormat::Compact))
                .map_err(|e| e.to_string())?;
            // Ion text escapes newlines inside strings, so a record is one line.
            text.push_str("data: ");
            text.push_str(ion.trim());
            text.push('\n');
        }
        text.push('\n');
        next = stored.address.sequence_no + 1;
    }
    Ok((text, next))
}

struct Tail {
    ledger: Ledger,
    stream_arn: String,
    next: u64,
    stopping: watch::Receiver<bool>,
    last_sent: Instant,
    ended: bool,
}

/// The response body: blocks from `start` on, as they are committed, until the client goes
/// away or the server stops.
pub fn body(
    ledger: Ledger,
    stream_arn: String,
    start: u64,
    stopping: watch::Receiver<bool>,
) -> Body {
    let tail = Tail {
        ledger,
        stream_arn,
        next: start,
        stopping,
        last_sent: Instant::now(),
        ended: false,
    };
    Body::from_stream(futures_util::stream::unfold(tail, |mut tail| async move {
        if tail.ended {
            return None;
        }
        loop {
            if *tail.stopping.borrow() {
                return None;
            }
            let (ledger, arn, next) = (tail.ledger.clone(), tail.stream_arn.clone(), tail.next);
            let formatted =
                tokio::task::spawn_blocking(move || format_blocks(&ledger, &arn, next)).await;
            let chunk = match formatted {
                Ok(Ok((text, next))) => {
                    tail.next = next;
                    text
                }
                Ok(Err(message)) => {
                    tail.ended = true;
                    format!("event: error\ndata: {message}\n\n")
                }
                Err(e) => {
                    tail.ended = true;
                    format!("event: error\ndata: {e}\n\n")
                }
            };
            if chunk.is_empty() && tail.last_sent.elapsed() < KEEPALIVE_INTERVAL {
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = tail.stopping.changed() => {}
                }
                continue;
            }
            let chunk = if chunk.is_empty() {
                ": keepalive\n\n".to_owned()
            } else {
                chunk
            };
            tail.last_sent = Instant::now();
            return Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), tail));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_events_path_names_a_ledger() {
        assert_eq!(
            ledger_of("/ledgers/shop/journal/events").as_deref(),
            Some("shop")
        );
        assert_eq!(
            ledger_of("/ledgers/a%2Db/journal/events").as_deref(),
            Some("a-b")
        );
        assert_eq!(ledger_of("/ledgers//journal/events"), None);
        assert_eq!(ledger_of("/ledgers/a/b/journal/events"), None);
        assert_eq!(ledger_of("/ledgers/shop/journal"), None);
    }

    #[test]
    fn last_event_id_wins_over_from_which_wins_over_the_tip() {
        let mut headers = HeaderMap::new();
        assert_eq!(start_block(&headers, "", 9).unwrap(), 10);
        assert_eq!(start_block(&headers, "x=1&from=3", 9).unwrap(), 3);
        headers.insert("last-event-id", "4".parse().unwrap());
        assert_eq!(start_block(&headers, "from=3", 9).unwrap(), 5);
        headers.insert("last-event-id", "-1".parse().unwrap());
        assert!(start_block(&headers, "", 9).is_err());
        assert!(start_block(&HeaderMap::new(), "from=x", 9).is_err());
    }
}
