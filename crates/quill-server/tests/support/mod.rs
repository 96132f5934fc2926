//! Test harness: a server in-process on 127.0.0.1 port 0 with a temp data dir, and a tiny
//! HTTP/1.1 client over a raw `TcpStream` (one request per connection).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::SystemTime;

use quill_server::sigv4::{format_amz_date, sign, SignableRequest};
use quill_server::ServerConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub struct TestServer {
    pub address: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), quill_server::ServerError>>>,
}

pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start_in(tempfile::tempdir().unwrap(), configure).await
}

pub async fn start_in(
    dir: tempfile::TempDir,
    configure: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let mut config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    let (stop, stopped) = oneshot::channel::<()>();
    let (address, server) = quill_server::bind(config, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let task = tokio::spawn(server);
    TestServer {
        address,
        dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestServer {
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The error name from the header, checked against the body's `__type` when present.
    pub fn error(&self) -> String {
        let name = self.header("x-amzn-errortype").unwrap_or("").to_string();
        if let Some(body_type) = self.json().get("__type").and_then(Value::as_str) {
            assert_eq!(body_type, name);
        }
        name
    }
    pub fn message(&self) -> String {
        self.json()["Message"].as_str().unwrap_or("").to_string()
    }
}

pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n == "host") {
        request.push_str(&format!("host: {address}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

pub fn data_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/x-amz-json-1.0".into()),
        ("x-amz-target".into(), "QLDBSession.SendCommand".into()),
    ]
}

pub async fn send(address: SocketAddr, body: &Value) -> Reply {
    http(
        address,
        "POST",
        "/",
        &data_headers(),
        body.to_string().as_bytes(),
    )
    .await
}

/// Signs with SigV4 as botocore would (service `qldb`) and sends.
pub async fn send_signed(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    key: &str,
    secret: &str,
) -> Reply {
    let mut headers = data_headers();
    headers.push(("host".into(), address.to_string()));
    headers.push(("x-amz-date".into(), format_amz_date(SystemTime::now())));
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let request = SignableRequest {
        method,
        raw_path,
        raw_query,
        headers: &headers,
        body,
    };
    let authorization = sign(&request, key, secret, "us-east-1", "qldb").unwrap();
    headers.push(("authorization".into(), authorization));
    http(address, method, path, &headers, body).await
}

pub async fn control(address: SocketAddr, method: &str, path: &str, body: Value) -> Reply {
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    http(address, method, path, &headers, &body).await
}

pub async fn create_ledger(address: SocketAddr, name: &str) -> Reply {
    control(
        address,
        "POST",
        "/ledgers",
        json!({"Name": name, "PermissionsMode": "STANDARD"}),
    )
    .await
}

pub async fn start_session(address: SocketAddr, ledger: &str) -> String {
    let reply = send(address, &json!({"StartSession": {"LedgerName": ledger}})).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.header("x-amzn-requestid").is_some());
    reply.json()["StartSession"]["SessionToken"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn start_transaction(address: SocketAddr, token: &str) -> String {
    let reply = send(
        address,
        &json!({"SessionToken": token, "StartTransaction": {}}),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["StartTransaction"]["TransactionId"]
        .as_str()
        .unwrap()
        .to_string()
}
