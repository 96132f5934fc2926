//! `GET /ledgers/{name}/journal/blocks?from=N[&count=M]`: a range of journal blocks exactly as
//! the journal stores them, for a mirror copying the ledger (a Quill extension).
//!
//! The reply (`application/octet-stream`) is the ledger's strand id and a newline, then blocks
//! `N, N+1, …` in order, each as a 4-byte big-endian length and the block's journal payload
//! (the frame `quill_ledger` writes; a mirror decodes, re-verifies and appends it with
//! `quill_ledger::Importer::push_payload` and `quill_ledger::Ledger::append_verified`,
//! which need the strand id: the payload does not repeat it). It stops at the tip, after `M` blocks (at most and by default
//! [`BLOCKS_PER_REPLY_MAX`]) or once it holds [`REPLY_BYTES_MAX`], whichever comes first, but
//! holds block `N` whenever it exists; `N` beyond the tip gets an empty reply. Reading needs
//! `qldb:GetBlock` on the ledger, like GetBlock and the journal event tail.

use axum::body::Body;
use axum::http::{HeaderValue, Response};
use quill_ledger::Ledger;

use crate::error::{ApiError, Plane};

/// Most blocks in one reply.
pub const BLOCKS_PER_REPLY_MAX: u64 = 4096;
/// A reply stops after the block that brings it to this size.
pub const REPLY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The ledger name if `path` is `/ledgers/{name}/journal/blocks`.
pub fn ledger_of(path: &str) -> Option<String> {
    let name = path
        .strip_prefix("/ledgers/")?
        .strip_suffix("/journal/blocks")?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    String::from_utf8(crate::sigv4::percent_decode(name)).ok()
}

/// `from` (required) and `count` (default and at most [`BLOCKS_PER_REPLY_MAX`]).
pub fn parse_range(query: &str) -> Result<(u64, u64), ApiError> {
    let number = |name: &str, value: &str| {
        value.parse::<u64>().map_err(|_| {
            ApiError::invalid_parameter(format!("{name} must be a non-negative integer"))
        })
    };
    let (mut from, mut count) = (None, BLOCKS_PER_REPLY_MAX);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("from", value)) => from = Some(number("from", value)?),
            Some(("count", value)) => count = number("count", value)?.min(BLOCKS_PER_REPLY_MAX),
            _ => {
                return Err(ApiError::invalid_parameter(format!(
                    "unknown query parameter {pair:?} (from=N&count=M)"
                )))
            }
        }
    }
    let from = from.ok_or_else(|| ApiError::invalid_parameter("from=N is required"))?;
    Ok((from, count))
}

/// The reply for blocks `from..from + count` of `ledger`.
pub fn reply(ledger: &Ledger, from: u64, count: u64) -> Result<Response<Body>, ApiError> {
    let tip = ledger.digest().tip.sequence_no;
    let to = from.saturating_add(count).min(tip + 1);
    let payloads = ledger
        .journal_payloads(from, to, REPLY_BYTES_MAX)
        .map_err(|e| ApiError::from_ledger(&e, Plane::Control))?;
    let strand = ledger.strand_id();
    let mut body =
        Vec::with_capacity(strand.len() + 1 + payloads.iter().map(|p| p.len() + 4).sum::<usize>());
    body.extend_from_slice(strand.as_bytes());
    body.push(b'\n');
    for payload in &payloads {
        // A journal frame is far below 4 GiB (quill_ledger::limits::FRAME_PAYLOAD_MAX_BYTES).
        body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        body.extend_from_slice(payload);
    }
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// Splits a reply's body into the strand id and the blocks' payloads.
pub fn parse_body(body: &[u8]) -> Result<(&str, Vec<&[u8]>), String> {
    let newline = body
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no strand id line")?;
    let strand = std::str::from_utf8(&body[..newline]).map_err(|_| "the strand id is not text")?;
    let mut body = &body[newline + 1..];
    let mut payloads = Vec::new();
    while !body.is_empty() {
        let Some((length, rest)) = body.split_first_chunk::<4>() else {
            return Err("a truncated block length".into());
        };
        let length = u32::from_be_bytes(*length) as usize;
        if rest.len() < length {
            return Err(format!(
                "block {} is cut off ({} of {length} bytes)",
                payloads.len(),
                rest.len()
            ));
        }
        let (payload, rest) = rest.split_at(length);
        payloads.push(payload);
        body = rest;
    }
    Ok((strand, payloads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_blocks_path_names_a_ledger() {
        assert_eq!(
            ledger_of("/ledgers/shop/journal/blocks").as_deref(),
            Some("shop")
        );
        assert_eq!(ledger_of("/ledgers//journal/blocks"), None);
        assert_eq!(ledger_of("/ledgers/a/b/journal/blocks"), None);
        assert_eq!(ledger_of("/ledgers/shop/journal/events"), None);
    }

    #[test]
    fn the_range_needs_from_and_caps_count() {
        assert_eq!(parse_range("from=3").unwrap(), (3, BLOCKS_PER_REPLY_MAX));
        assert_eq!(parse_range("count=2&from=7").unwrap(), (7, 2));
        assert_eq!(
            parse_range("from=0&count=99999999").unwrap(),
            (0, BLOCKS_PER_REPLY_MAX)
        );
        assert!(parse_range("").is_err());
        assert!(parse_range("from=-1").is_err());
        assert!(parse_range("from=1&to=3").is_err());
    }

    #[test]
    fn a_body_splits_into_its_payloads_and_a_cut_one_is_refused() {
        let body = b"S1\n\0\0\0\x02ab\0\0\0\0\0\0\0\x01c";
        assert_eq!(
            parse_body(body).unwrap(),
            ("S1", vec![&b"ab"[..], &b""[..], &b"c"[..]])
        );
        assert!(parse_body(&body[..body.len() - 1])
            .unwrap_err()
            .contains("block 2 is cut off"));
        assert!(parse_body(&body[..5]).is_err());
        assert_eq!(parse_body(b"S1\n").unwrap(), ("S1", vec![]));
        assert!(parse_body(b"").is_err());
    }
}
