//! The NATS JetStream sink of journal streams (a Quill extension): one message per stream
//! record, the record's Ion binary as the payload (no KPL aggregation), published with
//! `async-nats` to one subject that a JetStream stream captures, and acknowledged by JetStream
//! before the worker moves its cursor.
//!
//! Each message's `Nats-Msg-Id` is the record's deduplication key (`strandId/sequenceNo` for a
//! `BLOCK_SUMMARY`, `documentId/version` for a `REVISION_DETAILS`, `streamId/CREATED` and
//! `streamId/COMPLETED` for `CONTROL`), so JetStream drops what the worker sends again after a
//! failure or a crash within the stream's duplicate window, and consumers deduplicate on the same
//! key beyond it. `Quill-Record-Type` carries the record type, so consumers can filter without
//! decoding.
//!
//! Order: the records of a delivery are pipelined on one connection, which JetStream stores in
//! the order it receives them; a delivery that fails anywhere is sent again from its first record.
//!
//! Acknowledgements: every publish names a reply subject of its own under one subscription per
//! connection (`<inbox>.<n>`), and a delivery succeeds only when each of its publishes has
//! been acknowledged without error (a duplicate counts: JetStream already holds the record);
//! an error acknowledgement, a "no responders" status (no stream captures the subject) or an
//! acknowledgement missing for [`NATS_TIMEOUT`] fails it, and the worker retries it.
//!
//! Security, as NATS URLs carry it: `user:password@` or `token@` before the host, and the
//! `tls://` scheme for a server that requires TLS. TLS trusts the system's roots, or instead the
//! PEM certificates of the file `NATS_CA` names (the `nats` CLI's variable), as `async-nats` does.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::{HeaderMap, StatusCode, Subject, Subscriber};
use futures_util::StreamExt;
use quill_stream::{BoxFuture, RecordType, Sink, SinkError, StreamRecord};
use serde::{Deserialize, Serialize};

/// Publishes awaiting their acknowledgement at once. Below the client's command buffer (2,048
/// commands), so that a publish never waits for a connection that is down (reconnecting): the
/// acknowledgement timeout fails the delivery first. The acknowledgement subscription buffers
/// 64 Ki messages, far more.
const ACK_WINDOW: usize = 1024;
const RECORD_TYPE_HEADER: &str = "Quill-Record-Type";
/// How long connecting, and each acknowledgement, may take before the delivery fails (and the
/// stream turns `IMPAIRED` until it goes through).
const NATS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PORT: u16 = 4222;

/// How a stream authenticates to its NATS server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NatsAuth {
    UserPassword { user: String, password: String },
    Token(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user:?}, ***)"),
            NatsAuth::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// A NATS destination: `nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT]/SUBJECT`, or `tls://…` for a
/// server reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTarget {
    /// `HOST:PORT`.
    pub server: String,
    pub subject: String,
    /// The connection must be TLS (`tls://`).
    pub tls: bool,
    pub auth: Option<NatsAuth>,
    /// Roots to trust instead of the system's, for TLS (a PEM file).
    pub ca_file: Option<PathBuf>,
}

/// `%XX` escapes of a URL's user information, decoded.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let byte = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| "bad %-escape in the user information".to_owned())?;
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user information is not UTF-8".to_owned())
}

impl NatsTarget {
    /// A plain-text target without authentication.
    pub fn new(server: String, subject: String) -> NatsTarget {
        NatsTarget {
            server,
            subject,
            tls: false,
            auth: None,
            ca_file: None,
        }
    }

    /// Parses `nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT]/SUBJECT` (or `tls://`; user information
    /// may be %-escaped). The subject is a literal NATS subject (dot-separated tokens, no
    /// wildcards or whitespace), which JetStream needs to store what is published.
    pub fn parse(url: &str) -> Result<NatsTarget, String> {
        let shape = "nats://[USER:PASSWORD@|TOKEN@]HOST[:PORT]/SUBJECT or tls://…";
        let (tls, rest) = match (url.strip_prefix("tls://"), url.strip_prefix("nats://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(format!("{:?} is not {shape}", redact_url(url))),
        };
        let (authority, subject) = rest
            .split_once('/')
            .ok_or_else(|| format!("{:?} names no subject: {shape}", redact_url(url)))?;
        let (auth, authority) = match authority.rsplit_once('@') {
            None => (None, authority),
            Some((userinfo, host)) => {
                let auth = match userinfo.split_once(':') {
                    Some((user, password)) => NatsAuth::UserPassword {
                        user: percent_decode(user)?,
                        password: percent_decode(password)?,
                    },
                    None => NatsAuth::Token(percent_decode(userinfo)?),
                };
                let empty = match &auth {
                    NatsAuth::UserPassword { user, .. } => user.is_empty(),
                    NatsAuth::Token(token) => token.is_empty(),
                };
                if empty {
                    return Err(format!("{:?}: empty user or token", redact_url(url)));
                }
                (Some(auth), host)
            }
        };
        if authority.is_empty() {
            return Err(format!("{:?} names no server: {shape}", redact_url(url)));
        }
        // A bracketed IPv6 address has colons of its own: its port follows "]:".
        let port = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split_once("]:").map(|(_, port)| port),
            None => authority.rsplit_once(':').map(|(_, port)| port),
        };
        let server = match port {
            Some(port) if port.parse::<u16>().is_ok() && authority.len() > port.len() + 1 => {
                authority.to_owned()
            }
            Some(_) => {
                return Err(format!(
                    "{:?}: {authority:?} is not HOST[:PORT]",
                    redact_url(url)
                ))
            }
            None => format!("{authority}:{DEFAULT_PORT}"),
        };
        validate_subject(subject)?;
        Ok(NatsTarget {
            server,
            subject: subject.to_owned(),
            tls,
            auth,
            ca_file: None,
        })
    }

    /// The target's URL without its secrets: `user:***@` or `***@` in their place.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        let userinfo = match &self.auth {
            None => String::new(),
            Some(NatsAuth::UserPassword { user, .. }) => format!("{user}:***@"),
            Some(NatsAuth::Token(_)) => "***@".to_owned(),
        };
        format!("{scheme}://{userinfo}{}/{}", self.server, self.subject)
    }
}

/// `url` with any user information before the host replaced by `***`, for error messages.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn validate_subject(subject: &str) -> Result<(), String> {
    let valid = !subject.is_empty()
        && subject.len() <= 255
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && token.chars().all(|c| c.is_ascii_graphic())
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "NATS subject {subject:?} must be dot-separated tokens of printable characters, without wildcards"
        ))
    }
}

/// Delivers stream records to a JetStream subject.
pub struct NatsSink {
    target: NatsTarget,
    /// Connected on first delivery, and again after a delivery failed.
    publisher: Option<Publisher>,
}

/// One connection to the NATS server and the subscription all of its acknowledgements arrive
/// on. JetStream answers a publish on the publish's reply subject; giving each publish
/// `<inbox>.<number>` under one subscription to `<inbox>.*` costs one subject per message,
/// where the client's request API sets up a reply inbox, a channel, a permit and a timer each.
struct Publisher {
    client: async_nats::Client,
    subject: Subject,
    acks: Subscriber,
    /// `<inbox>.`: the reply subject of publish n is this followed by n.
    reply_prefix: String,
    /// The number of the next publish on this connection.
    next: u64,
    /// The `Quill-Record-Type` header of each record type, cloned for every message.
    control: HeaderMap,
    block_summary: HeaderMap,
    revision_details: HeaderMap,
}

/// The fields of JetStream's publish acknowledgement that delivery needs: `{"stream", "seq",
/// "duplicate"?}` when stored (a duplicate `Nats-Msg-Id` is acknowledged with the first
/// copy's `seq`, so it counts as delivered), `{"error": {…}}` when not.
#[derive(Deserialize)]
struct PublishAck {
    error: Option<JetStreamError>,
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct JetStreamError {
    code: u16,
    #[serde(default)]
    description: String,
}

/// The acknowledgements of one delivery's publishes, numbered `first..first + records`.
struct Acks {
    first: u64,
    received: Vec<bool>,
    sent: usize,
    acknowledged: usize,
    duplicates: usize,
}

impl Acks {
    fn in_flight(&self) -> usize {
        self.sent - self.acknowledged
    }
}

fn record_type_headers(record_type: RecordType) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(RECORD_TYPE_HEADER, record_type.as_str());
    headers
}

impl Publisher {
    async fn connect(target: &NatsTarget) -> Result<Publisher, SinkError> {
        let mut options = async_nats::ConnectOptions::new().connection_timeout(NATS_TIMEOUT);
        match &target.auth {
            Some(NatsAuth::UserPassword { user, password }) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            Some(NatsAuth::Token(token)) => options = options.token(token.clone()),
            None => {}
        }
        if target.tls {
            options = options.require_tls(true);
            if let Some(ca_file) = &target.ca_file {
                options = options.add_root_certificates(ca_file.clone());
            }
        }
        let client = options.connect(target.server.as_str()).await.map_err(|e| {
            SinkError::transient(format!("cannot connect to NATS at {}: {e}", target.url()))
        })?;
        let inbox = client.new_inbox();
        let acks = client.subscribe(format!("{inbox}.*")).await.map_err(|e| {
            SinkError::transient(format!(
                "cannot subscribe to acknowledgements on {}: {e}",
                target.url()
            ))
        })?;
        Ok(Publisher {
            client,
            subject: Subject::from(target.subject.as_str()),
            acks,
            reply_prefix: format!("{inbox}."),
            next: 0,
            control: record_type_headers(RecordType::Control),
            block_summary: record_type_headers(RecordType::BlockSummary),
            revision_details: record_type_headers(RecordType::RevisionDetails),
        })
    }

    /// Publishes `records` in order, at most [`ACK_WINDOW`] unacknowledged at once, and
    /// returns once JetStream acknowledged every one; fails at the first error or missing
    /// acknowledgement.
    async fn publish_all(
        &mut self,
        target: &NatsTarget,
        records: &[StreamRecord],
    ) -> Result<(), SinkError> {
        let mut acks = Acks {
            first: self.next,
            received: vec![false; records.len()],
            sent: 0,
            acknowledged: 0,
            duplicates: 0,
        };
        for record in records {
            while acks.in_flight() >= ACK_WINDOW {
                self.receive_ack(target, &mut acks).await?;
            }
            let mut headers = match record.record_type {
                RecordType::Control => self.control.clone(),
                RecordType::BlockSummary => self.block_summary.clone(),
                RecordType::RevisionDetails => self.revision_details.clone(),
            };
            headers.insert(NATS_MESSAGE_ID, record.dedupe_key.as_str());
            let reply = format!("{}{}", self.reply_prefix, self.next);
            self.next += 1;
            self.client
                .publish_with_reply_and_headers(
                    self.subject.clone(),
                    reply,
                    headers,
                    record.ion.clone().into(),
                )
                .await
                .map_err(|e| {
                    SinkError::transient(format!(
                        "JetStream publish to {} failed: {e}",
                        target.url()
                    ))
                })?;
            acks.sent += 1;
        }
        while acks.acknowledged < records.len() {
            self.receive_ack(target, &mut acks).await?;
        }
        if acks.duplicates > 0 {
            tracing::debug!(
                "{} of {} records were already in JetStream (sent again)",
                acks.duplicates,
                records.len()
            );
        }
        Ok(())
    }

    /// Waits for the next acknowledgement of this delivery and checks it.
    async fn receive_ack(&mut self, target: &NatsTarget, acks: &mut Acks) -> Result<(), SinkError> {
        loop {
            let message = match tokio::time::timeout(NATS_TIMEOUT, self.acks.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    return Err(SinkError::transient(format!(
                        "the connection to {} closed before JetStream acknowledged",
                        target.url()
                    )))
                }
                Err(_) => {
                    return Err(SinkError::transient(format!(
                        "JetStream did not acknowledge a publish to {} within {NATS_TIMEOUT:?}",
                        target.url()
                    )))
                }
            };
            // An acknowledgement of an earlier delivery's publish cannot arrive here (a
            // delivery returns only when all of its own are in, and a failed one drops the
            // connection), but one outside this delivery's numbers is ignored all the same.
            let Some(index) = message
                .subject
                .strip_prefix(self.reply_prefix.as_str())
                .and_then(|number| number.parse::<u64>().ok())
                .and_then(|number| number.checked_sub(acks.first))
                .and_then(|index| usize::try_from(index).ok())
                .filter(|&index| index < acks.sent && !acks.received[index])
            else {
                continue;
            };
            if check_ack(target, &message)? {
                acks.duplicates += 1;
            }
            acks.received[index] = true;
            acks.acknowledged += 1;
            return Ok(());
        }
    }
}

/// Whether JetStream stored the message `ack` answers: `Ok(true)` if it already held one with
/// the same `Nats-Msg-Id`, `Ok(false)` if stored now.
fn check_ack(target: &NatsTarget, ack: &async_nats::Message) -> Result<bool, SinkError> {
    if ack.status == Some(StatusCode::NO_RESPONDERS) {
        return Err(SinkError::transient(format!(
            "no JetStream stream captures the subject {:?} on {}: create one first",
            target.subject, target.server
        )));
    }
    let rejected = |why: String| {
        SinkError::transient(format!(
            "JetStream publish to {} failed: {why}",
            target.url()
        ))
    };
    if let Some(status) = ack.status {
        return Err(rejected(format!("status {status}")));
    }
    match serde_json::from_slice::<PublishAck>(&ack.payload) {
        Ok(PublishAck {
            error: Some(error), ..
        }) => Err(rejected(format!(
            "{} (code {})",
            error.description, error.code
        ))),
        Ok(PublishAck {
            seq: Some(_),
            duplicate,
            ..
        }) => Ok(duplicate),
        Ok(PublishAck { seq: None, .. }) | Err(_) => Err(rejected(format!(
            "unexpected acknowledgement {:?}",
            String::from_utf8_lossy(&ack.payload)
        ))),
    }
}

impl NatsSink {
    pub fn new(target: NatsTarget) -> NatsSink {
        NatsSink {
            target,
            publisher: None,
        }
    }
}

impl Sink for NatsSink {
    fn deliver<'a>(
        &'a mut self,
        records: &'a [StreamRecord],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let publisher = match &mut self.publisher {
                Some(publisher) => publisher,
                None => self
                    .publisher
                    .insert(Publisher::connect(&self.target).await?),
            };
            let outcome = publisher.publish_all(&self.target, records).await;
            if outcome.is_err() {
                // A fresh connection next time, rather than trusting one that just failed
                // (its acknowledgements still on the way would also be left behind with it).
                self.publisher = None;
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_server_and_a_literal_subject() {
        assert_eq!(
            NatsTarget::parse("nats://127.0.0.1:4333/quill.shop").unwrap(),
            NatsTarget::new("127.0.0.1:4333".into(), "quill.shop".into())
        );
        let default_port = NatsTarget::parse("nats://localhost/journal").unwrap();
        assert_eq!(default_port.server, "localhost:4222");
        assert_eq!(default_port.url(), "nats://localhost:4222/journal");
        assert_eq!(
            NatsTarget::parse("nats://[::1]:5000/j").unwrap().server,
            "[::1]:5000"
        );
        assert_eq!(
            NatsTarget::parse("nats://[::1]/j").unwrap().server,
            "[::1]:4222"
        );
        for bad in [
            "http://h:1/s",
            "nats://h:1",
            "nats://h:1/",
            "nats:///s",
            "nats://h:x/s",
            "nats://:1/s",
            "nats://u:p@/s",
            "nats://:p@h/s",
            "nats://@h/s",
            "nats://u:p%zz@h/s",
            "tcp://h/s",
            "nats://h:1/a.*",
            "nats://h:1/a.>",
            "nats://h:1/a..b",
            "nats://h:1/a b",
        ] {
            assert!(NatsTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_carry_credentials_and_tls_which_stay_out_of_messages() {
        let target = NatsTarget::parse("tls://quill:s%40cret:x@nats.example:4443/journal").unwrap();
        assert!(target.tls);
        assert_eq!(target.server, "nats.example:4443");
        assert_eq!(
            target.auth,
            Some(NatsAuth::UserPassword {
                user: "quill".into(),
                password: "s@cret:x".into()
            })
        );
        assert_eq!(target.url(), "tls://quill:***@nats.example:4443/journal");
        assert!(!format!("{target:?}").contains("cret"));

        let token = NatsTarget::parse("nats://t0ken@localhost/j").unwrap();
        assert_eq!(token.auth, Some(NatsAuth::Token("t0ken".into())));
        assert!(!token.tls);
        assert_eq!(token.url(), "nats://***@localhost:4222/j");

        let error = NatsTarget::parse("nats://user:hunter2@h:x/s").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
