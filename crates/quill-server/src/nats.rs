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

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use quill_stream::{BoxFuture, Sink, SinkError, StreamRecord};

/// Publishes awaiting their acknowledgement at once: bounded so a large delivery cannot
/// exhaust the client's in-flight permits.
const ACK_WINDOW: usize = 1024;
/// How long connecting, and each acknowledgement, may take before the delivery fails (and the
/// stream turns `IMPAIRED` until it goes through).
const NATS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PORT: u16 = 4222;

/// A NATS destination: `nats://HOST[:PORT]/SUBJECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTarget {
    /// `HOST:PORT`.
    pub server: String,
    pub subject: String,
}

impl NatsTarget {
    /// Parses `nats://HOST[:PORT]/SUBJECT`. The subject is a literal NATS subject (dot-separated
    /// tokens, no wildcards or whitespace), which JetStream needs to store what is published.
    pub fn parse(url: &str) -> Result<NatsTarget, String> {
        let rest = url
            .strip_prefix("nats://")
            .ok_or_else(|| format!("{url:?} is not nats://HOST[:PORT]/SUBJECT"))?;
        let (authority, subject) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url:?} names no subject: nats://HOST[:PORT]/SUBJECT"))?;
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "{url:?}: the server must be HOST[:PORT] (credentials in the URL are not supported)"
            ));
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
            Some(_) => return Err(format!("{url:?}: {authority:?} is not HOST[:PORT]")),
            None => format!("{authority}:{DEFAULT_PORT}"),
        };
        validate_subject(subject)?;
        Ok(NatsTarget {
            server,
            subject: subject.to_owned(),
        })
    }

    pub fn url(&self) -> String {
        format!("nats://{}/{}", self.server, self.subject)
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
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(NATS_TIMEOUT)
            .connect(self.target.server.as_str())
            .await
            .map_err(|e| {
                SinkError::transient(format!(
                    "cannot connect to NATS at {}: {e}",
                    self.target.server
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
            NatsTarget {
                server: "127.0.0.1:4333".into(),
                subject: "quill.shop".into()
            }
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
            "nats://u:p@h:1/s",
            "nats://h:1/a.*",
            "nats://h:1/a.>",
            "nats://h:1/a..b",
            "nats://h:1/a b",
        ] {
            assert!(NatsTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
