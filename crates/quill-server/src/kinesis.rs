//! The Kinesis sink of journal streams: `PutRecords` over HTTP/1.1, signed with SigV4 (the
//! signer in [`crate::sigv4`]), configured like the AWS SDKs: endpoint from
//! `AWS_ENDPOINT_URL_KINESIS`, else `AWS_ENDPOINT_URL`; credentials from `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else the `AWS_PROFILE` (or `default`)
//! section of `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`).
//!
//! `https://` endpoints (the default, `https://kinesis.<region>.amazonaws.com`) are reached over
//! rustls, trusting Mozilla's roots (`webpki-roots`) plus the PEM certificates of
//! `AWS_CA_BUNDLE`, as the AWS SDKs take it; `http://` serves a local Kinesis-compatible server
//! such as moto or kinesalite.
//!
//! With aggregation on, the records of a delivery are packed in KPL aggregated records
//! ([`quill_stream::kpl`]). Every Kinesis record of a ledger uses the ledger's strand id as its
//! partition key, so one shard holds a ledger's records in order.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use quill_stream::{BoxFuture, ErrorCause, Sink, SinkError, StreamRecord};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::sigv4;

/// Kinesis accepts at most 500 records and 5 MiB per `PutRecords`.
const PUT_RECORDS_MAX: usize = 500;
const PUT_BYTES_MAX: usize = 5 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// AWS credentials for signing.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The `[profile]` section's `key = value` pairs of an AWS ini file.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut pairs = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            inside =
                name == section || name.strip_prefix("profile ").map(str::trim) == Some(section);
        } else if inside {
            if let Some((key, value)) = line.split_once('=') {
                pairs.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
    pairs
}

impl AwsCredentials {
    /// The SDKs' chain, as far as a self-hosted server needs it: environment, then the shared
    /// credentials file.
    pub fn from_environment() -> Option<AwsCredentials> {
        if let (Some(access_key_id), Some(secret_access_key)) =
            (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        {
            return Some(AwsCredentials {
                access_key_id,
                secret_access_key,
                session_token: env("AWS_SESSION_TOKEN"),
            });
        }
        let path = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                env("HOME").map(|home| std::path::Path::new(&home).join(".aws/credentials"))
            })?;
        let text = std::fs::read_to_string(path).ok()?;
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let pairs = ini_section(&text, &profile);
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        Some(AwsCredentials {
            access_key_id: get("aws_access_key_id")?,
            secret_access_key: get("aws_secret_access_key")?,
            session_token: get("aws_session_token"),
        })
    }
}

/// Where a Kinesis API is served: `http://` or `https://HOST[:PORT]`.
#[derive(Clone)]
pub struct KinesisEndpoint {
    host: String,
    port: u16,
    /// The `host` header (and SigV4's signed host): the port only when it is not the scheme's.
    host_header: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for KinesisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl KinesisEndpoint {
    /// Parses `http://HOST[:PORT]` or `https://HOST[:PORT]` (a trailing `/` allowed). An
    /// `https` endpoint trusts Mozilla's roots plus the PEM certificates in `ca_bundle`.
    pub fn parse(url: &str, ca_bundle: Option<&Path>) -> Result<KinesisEndpoint, String> {
        let bad = || format!("Kinesis endpoint {url:?} is not http(s)://HOST[:PORT]");
        let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(bad()),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return Err(bad());
        }
        // A bracketed IPv6 address has colons of its own: its port follows "]:".
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
                };
                (host, port)
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let default_port = if https { 443 } else { 80 };
        let port = match port {
            Some(port) => port.parse::<u16>().map_err(|_| bad())?,
            None => default_port,
        };
        if host.is_empty() {
            return Err(bad());
        }
        let host_header = match (port == default_port, authority.starts_with('[')) {
            (true, true) => format!("[{host}]"),
            (true, false) => host.to_owned(),
            (false, true) => format!("[{host}]:{port}"),
            (false, false) => format!("{host}:{port}"),
        };
        let tls = if https {
            let name = ServerName::try_from(host.to_owned()).map_err(|_| bad())?;
            Some((
                crate::tls_client::connector(ca_bundle).map_err(|e| e.to_string())?,
                name,
            ))
        } else {
            None
        };
        Ok(KinesisEndpoint {
            host: host.to_owned(),
            port,
            host_header,
            tls,
        })
    }
}

/// A Kinesis API client: JSON 1.1 requests over HTTP/1.1, signed with SigV4.
#[derive(Debug, Clone)]
pub struct KinesisClient {
    pub endpoint: KinesisEndpoint,
    pub region: String,
    pub credentials: AwsCredentials,
}

/// Where and how to deliver to Kinesis.
#[derive(Debug, Clone)]
pub struct KinesisTarget {
    pub client: KinesisClient,
    /// The stream's ARN (`KinesisConfiguration.StreamArn`).
    pub stream_arn: String,
    pub aggregation: bool,
    /// Partition key of every record (the ledger's strand id).
    pub partition_key: String,
}

/// The endpoint the SDKs would use for Kinesis in `region`: `AWS_ENDPOINT_URL_KINESIS`, else
/// `AWS_ENDPOINT_URL`, else AWS's own; `https` trusts `AWS_CA_BUNDLE`'s certificates too.
pub fn endpoint_from_environment(region: &str) -> Result<KinesisEndpoint, String> {
    let url = env("AWS_ENDPOINT_URL_KINESIS")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://kinesis.{region}.amazonaws.com"));
    let ca_bundle = env("AWS_CA_BUNDLE");
    KinesisEndpoint::parse(&url, ca_bundle.as_deref().map(Path::new))
}

/// Delivers stream records to one Kinesis data stream.
pub struct KinesisSink {
    target: KinesisTarget,
}

impl KinesisSink {
    pub fn new(target: KinesisTarget) -> KinesisSink {
        KinesisSink { target }
    }

    /// The Kinesis record payloads for `records`, in order.
    fn payloads(&self, records: &[StreamRecord]) -> Vec<Vec<u8>> {
        if self.target.aggregation {
            let datas: Vec<&[u8]> = records.iter().map(|r| r.ion.as_slice()).collect();
            quill_stream::kpl::pack(&self.target.partition_key, &datas)
        } else {
            records.iter().map(|r| r.ion.clone()).collect()
        }
    }

    async fn put_records(&self, payloads: &[Vec<u8>]) -> Result<(), SinkError> {
        let mut start = 0;
        while start < payloads.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < payloads.len()
                && end - start < PUT_RECORDS_MAX
                && (end == start || bytes + payloads[end].len() <= PUT_BYTES_MAX)
            {
                bytes += payloads[end].len() + self.target.partition_key.len();
                end += 1;
            }
            let accepted = self.put_batch(&payloads[start..end]).await?;
            if accepted < end - start {
                // Throttled or failed: the worker sends the whole delivery again, so nothing
                // after the failed record is lost (what went through arrives twice).
                return Err(SinkError::transient(format!(
                    "Kinesis accepted {accepted} of {} records",
                    end - start
                )));
            }
            start = end;
        }
        Ok(())
    }

    /// One `PutRecords`; returns how many leading records were accepted.
    async fn put_batch(&self, payloads: &[Vec<u8>]) -> Result<usize, SinkError> {
        let base64 = base64::engine::general_purpose::STANDARD;
        let records: Vec<Value> = payloads
            .iter()
            .map(|p| json!({"Data": base64.encode(p), "PartitionKey": self.target.partition_key}))
            .collect();
        let body = json!({"StreamARN": self.target.stream_arn, "Records": records}).to_string();
        let reply = self
            .target
            .client
            .call("PutRecords", body.as_bytes())
            .await?;
        let results = reply
            .get("Records")
            .and_then(Value::as_array)
            .ok_or_else(|| SinkError::transient("PutRecords reply has no Records"))?;
        Ok(results
            .iter()
            .take_while(|r| r.get("ErrorCode").is_none_or(Value::is_null))
            .count()
            .min(payloads.len()))
    }
}

impl KinesisClient {
    /// Calls the Kinesis `operation` (`PutRecords`, `CreateStream`, …) with a JSON `body`; the
    /// reply's JSON, or the error mapped to a QLDB stream error cause where one fits.
    pub async fn call(&self, operation: &str, body: &[u8]) -> Result<Value, SinkError> {
        let t = self;
        let target = format!("Kinesis_20131202.{operation}");
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("host".to_owned(), t.endpoint.host_header.clone()),
            (
                "x-amz-date".to_owned(),
                sigv4::format_amz_date(SystemTime::now()),
            ),
            ("x-amz-target".to_owned(), target),
        ];
        if let Some(token) = &t.credentials.session_token {
            headers.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        let request = sigv4::SignableRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
            body,
        };
        let authorization = sigv4::sign(
            &request,
            &t.credentials.access_key_id,
            &t.credentials.secret_access_key,
            &t.region,
            "kinesis",
        )
        .ok_or_else(|| SinkError::transient("cannot sign the Kinesis request"))?;
        headers.push(("authorization".to_owned(), authorization));
        let exchange = t.endpoint.post(&headers, body);
        let (status, reply) = tokio::time::timeout(IO_TIMEOUT, exchange)
            .await
            .map_err(|_| SinkError::transient("Kinesis did not answer in time"))?
            .map_err(|e| {
                SinkError::transient(format!("cannot reach Kinesis at {:?}: {e}", t.endpoint))
            })?;
        let json: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        if status == 200 {
            return Ok(json);
        }
        let kind = json
            .get("__type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .rsplit('#')
            .next()
            .unwrap_or("")
            .to_owned();
        let cause = match kind.as_str() {
            "ResourceNotFoundException" => Some(ErrorCause::KinesisStreamNotFound),
            "AccessDeniedException" | "UnrecognizedClientException" => {
                Some(ErrorCause::IamPermissionRevoked)
            }
            _ => None,
        };
        Err(SinkError {
            cause,
            message: format!(
                "Kinesis answered {status} {kind}: {}",
                String::from_utf8_lossy(&reply)
            ),
        })
    }
}

impl Sink for KinesisSink {
    fn deliver<'a>(
        &'a mut self,
        records: &'a [StreamRecord],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let payloads = self.payloads(records);
            self.put_records(&payloads).await
        })
    }
}

impl KinesisEndpoint {
    /// One `POST /` on a fresh connection; the reply's status and body.
    async fn post(
        &self,
        headers: &[(String, String)],
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        match &self.tls {
            None => http_post(stream, headers, body).await,
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), stream).await?;
                http_post(stream, headers, body).await
            }
        }
    }
}

async fn http_post<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut head = String::from("POST / HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 || body.len() + size > RESPONSE_MAX_BYTES {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        body.resize(length.min(RESPONSE_MAX_BYTES), 0);
        reader.read_exact(&mut body).await?;
    } else {
        let read = reader
            .take(RESPONSE_MAX_BYTES as u64)
            .read_to_end(&mut body)
            .await;
        // A reply delimited by the connection's end: over TLS, a server closing without
        // close_notify still sent all of it.
        match read {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            other => {
                other?;
            }
        }
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_or_https_urls() {
        let aws = KinesisEndpoint::parse("https://kinesis.eu-west-1.amazonaws.com", None).unwrap();
        assert_eq!(
            (aws.host.as_str(), aws.port),
            ("kinesis.eu-west-1.amazonaws.com", 443)
        );
        assert_eq!(aws.host_header, "kinesis.eu-west-1.amazonaws.com");
        assert!(aws.tls.is_some());
        let local = KinesisEndpoint::parse("http://127.0.0.1:4567/", None).unwrap();
        assert_eq!((local.host.as_str(), local.port), ("127.0.0.1", 4567));
        assert_eq!(local.host_header, "127.0.0.1:4567");
        assert!(local.tls.is_none());
        let plain = KinesisEndpoint::parse("http://localhost", None).unwrap();
        assert_eq!((plain.port, plain.host_header.as_str()), (80, "localhost"));
        let v6 = KinesisEndpoint::parse("https://[::1]:8443", None).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        assert_eq!(v6.host_header, "[::1]:8443");
        for bad in [
            "kinesis.amazonaws.com",
            "ftp://h",
            "https://",
            "https://h/path",
            "https://h:port",
            "https://u@h",
            "https://:443",
        ] {
            assert!(KinesisEndpoint::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn ca_bundles_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = KinesisEndpoint::parse("https://h", Some(&empty)).unwrap_err();
        assert!(error.contains("no PEM certificate"), "{error}");
        let missing = dir.path().join("missing.pem");
        assert!(KinesisEndpoint::parse("https://h", Some(&missing)).is_err());
    }

    #[test]
    fn profiles_are_read_from_ini_sections() {
        let text = "[default]\naws_access_key_id = A\n[profile dev]\naws_access_key_id=B\n";
        assert_eq!(
            ini_section(text, "default"),
            [("aws_access_key_id".into(), "A".into())]
        );
        assert_eq!(
            ini_section(text, "dev"),
            [("aws_access_key_id".into(), "B".into())]
        );
        assert!(ini_section(text, "prod").is_empty());
    }
}
