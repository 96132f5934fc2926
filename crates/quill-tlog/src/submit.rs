//! The log side of C2SP tlog-witness: submitting a checkpoint to a witness and collecting its
//! cosignature, resynchronising on 409 as the spec intends. Plain `http://` only.
//!
//! A cosignature is accepted only with a plausible timestamp (C2SP tlog-cosignature): at most
//! 2^63 - 1, and not more than `MAX_COSIGNATURE_SKEW` seconds ahead of the log's clock, since
//! verifiers may reject cosignatures from the future
//! ([`quill_verify::tlog::plausible_cosignature_time`]).

use std::io;

use quill_verify::tlog::{plausible_cosignature_time, Note, NoteSignature, VerifierKey};
use quill_verify::Hash;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::witness::AddCheckpoint;

/// How many 409 resynchronisations one submission tolerates.
const MAX_ATTEMPTS: usize = 3;

/// Why a witness did not cosign.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The witness URL is not `http://host:port[/prefix]`.
    #[error("unsupported witness URL {0:?} (http://host:port[/prefix] only)")]
    BadUrl(String),
    /// The witness could not be reached or answered garbage.
    #[error("witness unreachable: {0}")]
    Io(#[from] io::Error),
    /// The witness refused with this status and message.
    #[error("witness refused with status {0}: {1}")]
    Refused(u16, String),
    /// The witness's cosignature does not verify with its policy key.
    #[error("the witness's cosignature does not verify")]
    BadCosignature,
    /// The cosignature's timestamp is beyond 2^63 - 1 or too far in the log's future.
    #[error("the cosignature's timestamp {timestamp} is ahead of the log's clock ({now})")]
    FutureTimestamp {
        /// The cosignature's timestamp.
        timestamp: u64,
        /// The log's clock.
        now: u64,
    },
    /// The witness did not answer in time.
    #[error("the witness did not answer in time")]
    TimedOut,
}

/// One witness as the log sees it: where it is, its key, and the size it last cosigned.
#[derive(Debug, Clone)]
pub struct WitnessClient {
    /// `http://host:port[/prefix]`.
    pub url: String,
    /// Its cosignature key.
    pub key: VerifierKey,
    /// The size the witness is believed to hold for this log (0 until it says otherwise).
    pub known_size: u64,
}

impl WitnessClient {
    /// Submits `note` (a checkpoint of `size` leaves) with a consistency proof from the
    /// witness's size, made by `proof(old_size)`; returns the verified cosignature. `now` is
    /// the log's clock (Unix seconds), to refuse timestamps from the future.
    pub async fn cosign(
        &mut self,
        note: &str,
        size: u64,
        proof: impl Fn(u64) -> io::Result<Vec<Hash>>,
        now: u64,
    ) -> Result<NoteSignature, SubmitError> {
        let text = Note::parse(note)
            .map_err(|e| SubmitError::Refused(0, e.to_string()))?
            .text;
        for _ in 0..MAX_ATTEMPTS {
            let old_size = self.known_size.min(size);
            let body = AddCheckpoint {
                old_size,
                proof: proof(old_size)?,
                note: note.to_owned(),
            }
            .to_body();
            let (status, reply) = self.post(&body).await?;
            match status {
                200 => {
                    let signed = Note {
                        text: text.clone(),
                        signatures: reply
                            .lines()
                            .map(NoteSignature::parse_line)
                            .collect::<Result<_, _>>()
                            .map_err(|_| SubmitError::BadCosignature)?,
                    };
                    let keys = [self.key.clone()];
                    let timestamp = match signed.verify(&keys).as_deref() {
                        Ok([(_, Some(timestamp)), ..]) => *timestamp,
                        _ => return Err(SubmitError::BadCosignature),
                    };
                    if !plausible_cosignature_time(timestamp, now) {
                        return Err(SubmitError::FutureTimestamp { timestamp, now });
                    }
                    self.known_size = size;
                    let signature = signed
                        .signatures
                        .into_iter()
                        .find(|s| s.name == self.key.name && s.key_id == self.key.key_id())
                        .ok_or(SubmitError::BadCosignature)?;
                    return Ok(signature);
                }
                409 => {
                    self.known_size = reply
                        .trim()
                        .parse()
                        .map_err(|_| SubmitError::Refused(409, reply.clone()))?;
                }
                _ => return Err(SubmitError::Refused(status, reply)),
            }
        }
        Err(SubmitError::Refused(
            409,
            "the witness kept changing its size".into(),
        ))
    }

    async fn post(&self, body: &str) -> Result<(u16, String), SubmitError> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| SubmitError::BadUrl(self.url.clone()))?;
        let (host, prefix) = match rest.split_once('/') {
            Some((host, prefix)) => (host, format!("/{}", prefix.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        let mut stream = TcpStream::connect(host).await?;
        let request = format!(
            "POST {prefix}/add-checkpoint HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let garbled = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response");
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(garbled)?;
        let status = std::str::from_utf8(response.get(9..12).ok_or_else(garbled)?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(garbled)?;
        let body = String::from_utf8_lossy(&response[split + 4..]).into_owned();
        Ok((status, body))
    }
}
