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
//! Security, as NATS URLs carry it: `user:password@` or `token@` before the host, and the
//! `tls://` scheme for a server that requires TLS. TLS trusts the system's roots, or instead the
//! PEM certificates of the file `NATS_CA` names (the `nats` CLI's variable), as `async-nats` does.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use quill_stream::{BoxFuture, Sink, SinkError, StreamRecord};
use serde::{Deserialize, Serialize};

/// Publishes awaiting their acknowledgement at once: bounded so a large delivery cannot
/// exhaust the client's in-flight permits.
const ACK_WINDOW: usize = 1024;
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
    context: Option<jetstream::Context>,
}

impl NatsSink {
    pub fn new(target: NatsTarget) -> NatsSink {
        NatsSink {
            target,
            context: None,
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let mut options = async_nats::ConnectOptions::new().connection_timeout(NATS_TIMEOUT);
        match &self.target.auth {
            Some(NatsAuth::UserPassword { user, password }) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            Some(NatsAuth::Token(token)) => options = options.token(token.clone()),
            None => {}
        }
        if self.target.tls {
            options = options.require_tls(true);
            if let Some(ca_file) = &self.target.ca_file {
                options = options.add_root_certificates(ca_file.clone());
            }
        }
        let client = options
            .connect(self.target.server.as_str())
            .await
            .map_err(|e| {
                SinkError::transient(format!(
                    "cannot connect to NATS at {}: {e}",
                    self.target.url()
                ))
            })?;
        Ok(jetstream::ContextBuilder::new()
            .timeout(NATS_TIMEOUT)
            .build(client))
    }

    async fn publish_all(
        &self,
        context: &jetstream::Context,
        records: &[StreamRecord],
    ) -> Result<(), SinkError> {
        let mut pending: VecDeque<PublishAckFuture> = VecDeque::new();
        let mut failure = None;
        for record in records {
            if pending.len() >= ACK_WINDOW {
                let ack = pending.pop_front().expect("the window is not empty");
                if let Err(e) = ack.await {
                    failure = Some(e);
                    break;
                }
            }
            let message = PublishMessage::build()
                .payload(record.ion.clone().into())
                .message_id(&record.dedupe_key)
                .header("Quill-Record-Type", record.record_type.as_str());
            match context
                .send_publish(self.target.subject.clone(), message)
                .await
            {
                Ok(ack) => pending.push_back(ack),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // After the first failure the rest are dropped, not awaited: each would wait out its
        // own timeout while the server is gone (the client settles dropped ones itself).
        if failure.is_none() {
            for ack in pending {
                if let Err(e) = ack.await {
                    failure = Some(e);
                    break;
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                Err(SinkError::transient(format!(
                    "no JetStream stream captures the subject {:?} on {}: create one first",
                    self.target.subject, self.target.server
                )))
            }
            Some(e) => Err(SinkError::transient(format!(
                "JetStream publish to {} failed: {e}",
                self.target.url()
            ))),
        }
    }
}

impl Sink for NatsSink {
    fn deliver<'a>(
        &'a mut self,
        records: &'a [StreamRecord],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let context = match &self.context {
                Some(context) => context.clone(),
                None => {
                    let context = self.connect().await?;
                    self.context = Some(context.clone());
                    context
                }
            };
            let outcome = self.publish_all(&context, records).await;
            if outcome.is_err() {
                // A fresh connection next time, rather than trusting one that just failed.
                self.context = None;
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
