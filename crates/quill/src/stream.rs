//! `quill stream`: journal streams of a served ledger to NATS JetStream (Quill's extension to
//! QLDB's streams), through the server's `/ledgers/{name}/journal-nats-streams` operations.
//! Kinesis streams are created with QLDB's own API (`aws qldb stream-journal-to-kinesis`, any
//! QLDB SDK). Requests are signed with SigV4 when `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` are set.

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};

use crate::args::{StreamCommand, StreamServer};
use crate::http::{Endpoint, Signer};

pub fn run(command: StreamCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client")?;
    let reply = runtime.block_on(async {
        match command {
            StreamCommand::Create {
                server,
                to,
                name,
                start,
                end,
            } => {
                let start = match start {
                    Some(text) => seconds(&text)?,
                    None => now_seconds(),
                };
                let mut body = json!({
                    "StreamName": name,
                    "InclusiveStartTime": start,
                    "NatsConfiguration": { "Url": to },
                });
                if let Some(end) = end {
                    body["ExclusiveEndTime"] = json!(seconds(&end)?);
                }
                call(&server, Method::POST, "", body).await
            }
            StreamCommand::List { server } => call(&server, Method::GET, "", Value::Null).await,
            StreamCommand::Describe { server, stream_id } => {
                call(&server, Method::GET, &stream_id, Value::Null).await
            }
            StreamCommand::Cancel { server, stream_id } => {
                call(&server, Method::DELETE, &stream_id, Value::Null).await
            }
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}

/// ISO 8601 → epoch seconds, as the API carries times.
fn seconds(text: &str) -> Result<f64> {
    Ok(quill_export::time::parse_time(text)? as f64 / 1000.0)
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One request to `/ledgers/{ledger}/journal-nats-streams[/{id}]`; the reply, or the server's
/// error as an error.
async fn call(server: &StreamServer, method: Method, id: &str, body: Value) -> Result<Value> {
    let endpoint = Endpoint::parse(&server.endpoint, None)?;
    let mut path = format!("/ledgers/{}/journal-nats-streams", server.ledger);
    if !id.is_empty() {
        path.push('/');
        path.push_str(id);
    }
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let signer = Signer::from_env(&server.region);
    let mut connection = endpoint.connect().await?;
    let (status, reply) = connection
        .request(
            method,
            &path,
            &[("content-type", "application/json")],
            body,
            signer.as_ref(),
        )
        .await?;
    let reply: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
    if status != 200 {
        let message = reply.get("Message").and_then(Value::as_str).unwrap_or("");
        bail!("the server answered {status}: {message}");
    }
    Ok(reply)
}
