//! A small QLDB session client for `quill shell --endpoint`: the AWS JSON 1.0 `SendCommand`
//! protocol over one keep-alive connection ([`crate::http`]: HTTP or HTTPS, SigV4-signed when
//! credentials are in the environment, unsigned otherwise, which only `--auth none` accepts),
//! result pages decoded from `IonBinary`, and the CommitDigest the drivers compute
//! (`quill_verify::CommitDigest`).
//!
//! The shell is synchronous; the client drives its connection on a runtime of its own.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::Method;
use ion_rs::Element;
use quill_verify::CommitDigest;
use serde_json::{json, Value};

use crate::http::{Connection, Endpoint, HttpError, Signer};

/// Pages fetched for one statement before giving up (bounds a runaway result).
const PAGES_MAX: usize = 100_000;
/// How long one request may take on the network.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection idle longer than this is replaced rather than reused. Servers close idle
/// connections (`quill serve` after 30 s), and a request written into a connection the server
/// is closing fails without telling whether it ran, so it cannot be retried safely. Statements
/// of one script go back to back and share a connection; a pause at the prompt reconnects.
const IDLE_REUSE_MAX: Duration = Duration::from_secs(5);

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or the HTTP exchange failed.
    #[error("cannot reach the server: {0}")]
    Http(#[from] HttpError),
    /// The client's runtime could not start.
    #[error("cannot start the client: {0}")]
    Runtime(std::io::Error),
    /// No reply within [`IO_TIMEOUT`].
    #[error("no reply from the server within {} s", IO_TIMEOUT.as_secs())]
    Timeout,
    /// The server answered with a QLDB exception.
    #[error("{kind}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The exception name (`OccConflictException`, …).
        kind: String,
        /// Its message.
        message: String,
    },
    /// The reply does not follow the protocol.
    #[error("unexpected reply from the server: {0}")]
    Protocol(String),
}

type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One QLDB session on one ledger.
pub struct SessionClient {
    runtime: tokio::runtime::Runtime,
    endpoint: Endpoint,
    /// Opened on first use, and again after [`IDLE_REUSE_MAX`]; with its last use.
    connection: Option<(Connection, Instant)>,
    signer: Option<Signer>,
    session_token: String,
}

/// An open transaction and the digest of the statements sent in it.
pub struct RemoteTransaction {
    /// The server's transaction id.
    pub id: String,
    digest: CommitDigest,
}

impl SessionClient {
    /// Starts a session on `ledger`.
    pub fn connect(endpoint: &Endpoint, ledger: &str, region: &str) -> Result<SessionClient> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        let mut client = SessionClient {
            runtime,
            endpoint: endpoint.clone(),
            connection: None,
            signer: Signer::from_env(region),
            session_token: String::new(),
        };
        let reply = client.send(json!({ "StartSession": { "LedgerName": ledger } }))?;
        client.session_token = text_at(&reply, &["StartSession", "SessionToken"])?;
        Ok(client)
    }

    /// Starts a transaction.
    pub fn start_transaction(&mut self) -> Result<RemoteTransaction> {
        let reply = self.command(json!({ "StartTransaction": {} }))?;
        let id = text_at(&reply, &["StartTransaction", "TransactionId"])?;
        let digest = CommitDigest::new(&id);
        Ok(RemoteTransaction { id, digest })
    }

    /// Runs one statement and fetches every page of its result.
    pub fn execute(
        &mut self,
        transaction: &mut RemoteTransaction,
        statement: &str,
    ) -> Result<Vec<Element>> {
        // Folded before sending, as the drivers do: the server folds every statement it accepts.
        transaction.digest.add_statement(statement, &[]);
        let reply = self.command(json!({ "ExecuteStatement": {
            "TransactionId": transaction.id, "Statement": statement, "Parameters": [] } }))?;
        let mut page = reply
            .pointer("/ExecuteStatement/FirstPage")
            .cloned()
            .unwrap_or(Value::Null);
        let mut values = Vec::new();
        for _ in 0..PAGES_MAX {
            decode_page(&page, &mut values)?;
            let Some(token) = page.get("NextPageToken").and_then(Value::as_str) else {
                return Ok(values);
            };
            let reply = self.command(json!({ "FetchPage": {
                "TransactionId": transaction.id, "NextPageToken": token } }))?;
            page = reply
                .pointer("/FetchPage/Page")
                .cloned()
                .unwrap_or(Value::Null);
        }
        Err(ClientError::Protocol(format!(
            "more than {PAGES_MAX} result pages"
        )))
    }

    /// Commits with the CommitDigest of the statements sent, and checks the server's echo.
    pub fn commit(&mut self, transaction: RemoteTransaction) -> Result<()> {
        let digest = transaction.digest.value();
        let digest_base64 = digest.to_base64();
        let reply = self.command(json!({ "CommitTransaction": {
            "TransactionId": transaction.id, "CommitDigest": digest_base64 } }))?;
        let echoed = text_at(&reply, &["CommitTransaction", "CommitDigest"])?;
        if echoed != digest_base64 {
            return Err(ClientError::Protocol(
                "the server's CommitDigest differs from ours".into(),
            ));
        }
        Ok(())
    }

    /// Aborts the open transaction, if any.
    pub fn abort(&mut self) -> Result<()> {
        self.command(json!({ "AbortTransaction": {} })).map(drop)
    }

    /// Ends the session (errors are ignored, as the drivers do).
    pub fn end(&mut self) {
        if let Err(error) = self.command(json!({ "EndSession": {} })) {
            tracing::debug!(%error, "EndSession failed");
        }
    }

    fn command(&mut self, mut body: Value) -> Result<Value> {
        if let Some(object) = body.as_object_mut() {
            object.insert(
                "SessionToken".into(),
                Value::String(self.session_token.clone()),
            );
        }
        self.send(body)
    }

    fn send(&mut self, body: Value) -> Result<Value> {
        let body = serde_json::to_vec(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (endpoint, connection, signer) =
            (&self.endpoint, &mut self.connection, self.signer.as_ref());
        let (status, reply) = self.runtime.block_on(async {
            tokio::time::timeout(IO_TIMEOUT, post(endpoint, connection, signer, body))
                .await
                .map_err(|_| ClientError::Timeout)?
        })?;
        let json: Value = serde_json::from_slice(&reply).map_err(|e| {
            ClientError::Protocol(format!("HTTP {status} with a body that is not JSON: {e}"))
        })?;
        if status != 200 {
            return Err(server_error(status, &json));
        }
        Ok(json)
    }
}

/// Sends one `SendCommand`, on a new connection unless the last one is open and fresh.
async fn post(
    endpoint: &Endpoint,
    connection: &mut Option<(Connection, Instant)>,
    signer: Option<&Signer>,
    body: Vec<u8>,
) -> Result<(u16, bytes::Bytes)> {
    let reusable = connection
        .as_ref()
        .is_some_and(|(open, used)| !open.is_closed() && used.elapsed() < IDLE_REUSE_MAX);
    let open = match connection {
        Some((open, used)) if reusable => {
            *used = Instant::now();
            open
        }
        _ => {
            &mut connection
                .insert((endpoint.connect().await?, Instant::now()))
                .0
        }
    };
    let headers = [
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "QLDBSession.SendCommand"),
    ];
    let result = open
        .request(Method::POST, "/", &headers, body, signer)
        .await;
    if result.is_err() {
        // The connection's state is unknown after a failed exchange; never reuse it.
        *connection = None;
    }
    Ok(result?)
}

fn server_error(status: u16, body: &Value) -> ClientError {
    let kind = body
        .get("__type")
        .and_then(Value::as_str)
        .unwrap_or("UnknownError");
    let kind = kind.rsplit('#').next().unwrap_or(kind).to_owned();
    let message = ["Message", "message"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_str))
        .unwrap_or("")
        .to_owned();
    ClientError::Server {
        status,
        kind,
        message,
    }
}

fn text_at(reply: &Value, path: &[&str]) -> Result<String> {
    let mut value = reply;
    for key in path {
        value = value
            .get(*key)
            .ok_or_else(|| ClientError::Protocol(format!("reply has no {}", path.join("."))))?;
    }
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Protocol(format!("{} is not a string", path.join("."))))
}

fn decode_page(page: &Value, values: &mut Vec<Element>) -> Result<()> {
    let holders = page
        .get("Values")
        .and_then(Value::as_array)
        .ok_or_else(|| ClientError::Protocol("page has no Values".into()))?;
    for holder in holders {
        let encoded = holder
            .get("IonBinary")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("value has no IonBinary".into()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| ClientError::Protocol(format!("IonBinary is not base64: {e}")))?;
        values.push(
            Element::read_one(bytes).map_err(|e| {
                ClientError::Protocol(format!("IonBinary is not one Ion value: {e}"))
            })?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_their_name_from_type() {
        let body = json!({"__type": "com.amazonaws#OccConflictException", "Message": "conflict"});
        match server_error(400, &body) {
            ClientError::Server { kind, message, .. } => {
                assert_eq!(
                    (kind.as_str(), message.as_str()),
                    ("OccConflictException", "conflict")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_decode_ion_binary_values() {
        let bytes = Element::int(7).encode_as(ion_rs::v1_0::Binary).unwrap();
        let page = json!({"Values": [{"IonBinary": base64::engine::general_purpose::STANDARD.encode(bytes)}]});
        let mut values = Vec::new();
        decode_page(&page, &mut values).unwrap();
        assert_eq!(values, vec![Element::int(7)]);
        assert!(decode_page(&json!({"Values": [{"IonText": "1"}]}), &mut values).is_err());
    }
}
