//! A small QLDB session client for `quill shell --endpoint`: HTTP/1.1 over a plain
//! `TcpStream`, the AWS JSON 1.0 `SendCommand` protocol, result pages decoded from `IonBinary`,
//! and the CommitDigest the drivers compute (`quill_verify::CommitDigest`).
//!
//! Requests are signed with SigV4 when `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are set
//! (the server's `sign` function), and sent unsigned otherwise (fine against `--auth none`).
//! Each request uses its own connection (`Connection: close`): the shell is interactive, so
//! simplicity beats connection reuse. Plain `http://` only.

use std::io::{BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ion_rs::Element;
use quill_verify::CommitDigest;
use serde_json::{json, Value};

/// Largest response accepted: the server's pages are at most 1 MiB of Ion.
const RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Largest response header section accepted.
const RESPONSE_HEADERS_MAX_BYTES: usize = 64 * 1024;
/// Pages fetched for one statement before giving up (bounds a runaway result).
const PAGES_MAX: usize = 100_000;
/// How long one request may take on the network.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint URL is not `http://host:port`.
    #[error("endpoint {0:?} is not http://HOST:PORT")]
    BadEndpoint(String),
    /// The network failed.
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
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

/// SigV4 credentials from the environment.
struct SigningKey {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl SigningKey {
    fn from_env() -> Option<SigningKey> {
        let access_key_id = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|v| !v.is_empty())?;
        let secret_access_key = std::env::var("AWS_SECRET_ACCESS_KEY")
            .ok()
            .filter(|v| !v.is_empty())?;
        let session_token = std::env::var("AWS_SESSION_TOKEN")
            .ok()
            .filter(|v| !v.is_empty());
        Some(SigningKey {
            access_key_id,
            secret_access_key,
            session_token,
        })
    }
}

/// One QLDB session on one ledger.
pub struct SessionClient {
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    region: String,
    signing: Option<SigningKey>,
    session_token: String,
}

/// An open transaction and the digest of the statements sent in it.
pub struct RemoteTransaction {
    /// The server's transaction id.
    pub id: String,
    digest: CommitDigest,
}

/// Splits `http://host:port[/]` into `host:port`.
fn parse_endpoint(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadEndpoint(url.to_owned()))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
        return Err(ClientError::BadEndpoint(url.to_owned()));
    }
    Ok(authority.to_owned())
}

impl SessionClient {
    /// Starts a session on `ledger`.
    pub fn connect(url: &str, ledger: &str, region: &str) -> Result<SessionClient> {
        let mut client = SessionClient {
            authority: parse_endpoint(url)?,
            region: region.to_owned(),
            signing: SigningKey::from_env(),
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

    fn send(&self, body: Value) -> Result<Value> {
        let body = serde_json::to_vec(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.0".to_owned(),
            ),
            ("host".to_owned(), self.authority.clone()),
            (
                "x-amz-date".to_owned(),
                quill_server::sigv4::format_amz_date(SystemTime::now()),
            ),
            (
                "x-amz-target".to_owned(),
                "QLDBSession.SendCommand".to_owned(),
            ),
        ];
        if let Some(key) = &self.signing {
            if let Some(token) = &key.session_token {
                headers.push(("x-amz-security-token".to_owned(), token.clone()));
            }
            let request = quill_server::sigv4::SignableRequest {
                method: "POST",
                raw_path: "/",
                raw_query: "",
                headers: &headers,
                body: &body,
            };
            let authorization = quill_server::sigv4::sign(
                &request,
                &key.access_key_id,
                &key.secret_access_key,
                &self.region,
                quill_server::sigv4::SERVICE,
            )
            .ok_or_else(|| ClientError::Protocol("cannot sign the request".into()))?;
            headers.push(("authorization".to_owned(), authorization));
        }
        let (status, reply) = http_post(&self.authority, &headers, &body)?;
        let json: Value = serde_json::from_slice(&reply).map_err(|e| {
            ClientError::Protocol(format!("HTTP {status} with a body that is not JSON: {e}"))
        })?;
        if status != 200 {
            return Err(server_error(status, &json));
        }
        Ok(json)
    }
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

/// Sends one `POST /` and returns the status and body.
fn http_post(authority: &str, headers: &[(String, String)], body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = String::from("POST / HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut writer = &stream;
    writer.write_all(request.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()?;
    read_response(BufReader::new(&stream))
}

fn read_response(mut reader: impl std::io::BufRead) -> Result<(u16, Vec<u8>)> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line {status_line:?}")))?;
    let (mut content_length, mut chunked, mut header_bytes) = (None, false, 0);
    loop {
        let mut line = String::new();
        header_bytes += reader.read_line(&mut line)?;
        if header_bytes > RESPONSE_HEADERS_MAX_BYTES {
            return Err(ClientError::Protocol(
                "response headers are too large".into(),
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| ClientError::Protocol("bad content-length".into()))?,
            );
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else if let Some(length) = content_length {
        if length > RESPONSE_MAX_BYTES {
            return Err(ClientError::Protocol(format!(
                "response of {length} bytes is too large"
            )));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader
            .take(RESPONSE_MAX_BYTES as u64 + 1)
            .read_to_end(&mut body)?;
        body
    };
    if body.len() > RESPONSE_MAX_BYTES {
        return Err(ClientError::Protocol("response is too large".into()));
    }
    Ok((status, body))
}

fn read_chunked(reader: &mut impl std::io::BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_text = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ClientError::Protocol(format!("bad chunk size {size_text:?}")))?;
        if body.len() + size > RESPONSE_MAX_BYTES {
            return Err(ClientError::Protocol("response is too large".into()));
        }
        if size == 0 {
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_plain_http_with_a_port() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:8000").unwrap(),
            "127.0.0.1:8000"
        );
        assert_eq!(
            parse_endpoint("http://localhost:8000/").unwrap(),
            "localhost:8000"
        );
        for bad in ["https://h:1", "h:1", "http://", "http://h", "http://h:1/x"] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".as_slice();
        assert_eq!(read_response(fixed).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n".as_slice();
        assert_eq!(
            read_response(chunked).unwrap(),
            (400, b"{\"a\":1}".to_vec())
        );
        assert!(read_response(b"garbage\r\n\r\n".as_slice()).is_err());
    }

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
