//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`): verifying requests against a table of access
//! keys, and signing them (for tests and Rust clients).
//!
//! The canonical request is rebuilt exactly as botocore and the JavaScript SDK build it:
//! - the path is taken **as received** (still percent-encoded), dot segments and empty
//!   segments removed, then percent-encoded again. That is why the control plane's
//!   `/tags/arn%3Aaws%3A…` path is signed as `/tags/arn%253Aaws%253A…`;
//! - query parameters are decoded, re-encoded strictly (only `A-Za-z0-9-_.~` kept) and sorted by
//!   name, then value;
//! - only the headers named in `SignedHeaders` are included, values trimmed with inner runs of
//!   spaces collapsed, several values of one header joined with `,`;
//! - the payload hash is the SHA-256 of the body (or `x-amz-content-sha256` when sent; it must
//!   then match the body).
//!
//! The signing service must be `qldb`; any region is accepted (the client's configuration
//! decides it). Requests signed more than [`CLOCK_SKEW_MAX`] away from our clock are refused.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use quill_ledger::calendar::{civil_from_days, days_from_civil};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorKind, ServerError};
use crate::limits::{CLOCK_SKEW_MAX, CREDENTIALS_MAX};

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The signing name both QLDB APIs use.
pub const SERVICE: &str = "qldb";

/// The parts of an HTTP request a signature covers.
#[derive(Debug, Clone)]
pub struct SignableRequest<'a, H = (String, String)> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path exactly as sent on the request line (percent-encoded).
    pub raw_path: &'a str,
    /// The query string as sent, without `?` (empty when absent).
    pub raw_query: &'a str,
    /// Headers with lowercase names, in any order; repeated names allowed.
    pub headers: &'a [H],
    /// The body bytes.
    pub body: &'a [u8],
}

/// One header of a [`SignableRequest`]: a lowercase name and its value. Clients sign owned
/// pairs; the server verifies pairs borrowed from the request it received, so checking a
/// signature copies no header.
pub trait HeaderPair {
    /// The lowercase name.
    fn name(&self) -> &str;
    /// The value as sent.
    fn value(&self) -> &str;
}

impl HeaderPair for (String, String) {
    fn name(&self) -> &str {
        &self.0
    }
    fn value(&self) -> &str {
        &self.1
    }
}

impl HeaderPair for (&str, Cow<'_, str>) {
    fn name(&self) -> &str {
        self.0
    }
    fn value(&self) -> &str {
        &self.1
    }
}

/// Access key id → secret access key.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    secrets: HashMap<String, String>,
    /// Shared by clones: the keys stay valid for as long as their secret.
    signing_keys: Arc<SigningKeys>,
}

/// Signing keys already derived. A key depends only on (secret, date, region, service), so a
/// client signing with one secret derives it once a day instead of four HMACs per request.
/// What is kept is the HMAC already keyed with it (its inner and outer pads absorbed), which
/// spares each signature two of its SHA-256 blocks too.
#[derive(Debug, Default)]
pub struct SigningKeys {
    /// Most recently derived last; a handful in practice (one per secret, region and day).
    keys: Mutex<Vec<CachedKey>>,
}

#[derive(Debug)]
struct CachedKey {
    secret: String,
    date: String,
    region: String,
    service: String,
    mac: Hmac<Sha256>,
}

/// Keys a [`SigningKeys`] holds; the oldest goes first. Bounds the memory a client rotating
/// through many regions or dates could make the server hold.
const SIGNING_KEYS_MAX: usize = 64;

impl SigningKeys {
    /// The HMAC keyed with the signing key of (`secret`, `date`, `region`, `service`), derived
    /// on first use.
    fn mac(&self, secret: &str, date: &str, region: &str, service: &str) -> Hmac<Sha256> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let cached = keys.iter().find(|k| {
            k.date == date && k.region == region && k.service == service && k.secret == secret
        });
        if let Some(cached) = cached {
            return cached.mac.clone();
        }
        let mac = keyed_mac(&signing_key(secret, date, region, service));
        if keys.len() >= SIGNING_KEYS_MAX {
            keys.remove(0);
        }
        keys.push(CachedKey {
            secret: secret.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            mac: mac.clone(),
        });
        mac
    }
}

impl Credentials {
    /// Parses a credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair per line
    /// (separated by spaces or tabs); blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut secrets = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [key, secret] = fields[..] else {
                return Err(format!(
                    "line {}: expected `ACCESS_KEY_ID SECRET_ACCESS_KEY`",
                    index + 1
                ));
            };
            if secrets.len() >= CREDENTIALS_MAX {
                return Err(format!("more than {CREDENTIALS_MAX} credentials"));
            }
            if secrets
                .insert(key.to_string(), secret.to_string())
                .is_some()
            {
                return Err(format!(
                    "line {}: access key {key} appears twice",
                    index + 1
                ));
            }
        }
        Ok(Credentials {
            secrets,
            signing_keys: Arc::default(),
        })
    }

    /// Reads and parses a credentials file (see [`Credentials::parse`]).
    pub fn load(path: &Path) -> Result<Credentials, ServerError> {
        let error = |detail: String| ServerError::Credentials {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let credentials = Credentials::parse(&text).map_err(error)?;
        if credentials.secrets.is_empty() {
            return Err(ServerError::Credentials {
                path: path.to_path_buf(),
                detail: "no credentials in file".into(),
            });
        }
        Ok(credentials)
    }

    /// Adds one pair (tests and embedding).
    pub fn insert(&mut self, access_key_id: &str, secret_access_key: &str) {
        self.secrets
            .insert(access_key_id.to_string(), secret_access_key.to_string());
    }

    /// Number of access keys.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// True when no key is known.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// The fields of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    /// As sent: lowercase names separated by `;`, which is also how the canonical request
    /// lists them.
    signed_headers: &'a str,
    signature: &'a str,
}

fn incomplete(message: &str) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidSignature,
        format!("Malformed Authorization header: {message}"),
    )
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| incomplete("only AWS4-HMAC-SHA256 is supported"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| incomplete("bad field"))?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(incomplete("unknown field")),
        }
    }
    let credential = credential.ok_or_else(|| incomplete("missing Credential"))?;
    let mut scope = credential.split('/');
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(incomplete(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    let signed_headers = signed.ok_or_else(|| incomplete("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("missing Signature"))?;
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// Checks the request's signature and returns the access key id that signed it. `now` is
/// injected so tests are deterministic.
pub fn verify<H: HeaderPair>(
    request: &SignableRequest<'_, H>,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<String, ApiError> {
    let check = check_headers(request.headers, credentials, now)?;
    match check.declared_payload_hash() {
        Some(declared) => {
            check_payload(declared, request.body)?;
            check.verify(request, declared)?;
        }
        None => check.verify(request, &payload_sha256(request.body))?,
    }
    Ok(check.access_key_id().to_string())
}

/// The part of a signature check that needs only the headers: a well-formed `Authorization`,
/// a known access key, service `qldb`, a signed `host`, and a fresh `X-Amz-Date`. What it
/// returns finishes the check once the payload hash is known.
pub fn check_headers<'a, H: HeaderPair>(
    headers: &'a [H],
    credentials: &'a Credentials,
    now: SystemTime,
) -> Result<HeaderCheck<'a>, ApiError> {
    let authorization = header(headers, "authorization").ok_or_else(|| {
        ApiError::new(
            ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token",
        )
    })?;
    let auth = parse_authorization(authorization)?;
    let secret = credentials.secrets.get(auth.access_key_id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        )
    })?;
    if auth.service != SERVICE {
        return Err(incomplete("the signing service must be qldb"));
    }
    if !auth.signed_headers.split(';').any(|name| name == "host") {
        return Err(incomplete("the host header must be signed"));
    }
    let amz_date =
        header(headers, "x-amz-date").ok_or_else(|| incomplete("missing X-Amz-Date header"))?;
    check_time(amz_date, auth.date, now)?;
    let declared_payload_hash = header(headers, "x-amz-content-sha256");
    if let Some(declared) = declared_payload_hash {
        // Only a real hash can be checked against the body; an unsigned payload would let
        // anyone who saw one signature replay it with any body.
        let is_sha256 = declared.len() == 64 && declared.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_sha256 {
            return Err(ApiError::new(
                ErrorKind::InvalidSignature,
                "x-amz-content-sha256 must be the SHA-256 of the body (unsigned payloads are not accepted)",
            ));
        }
    }
    Ok(HeaderCheck {
        auth,
        secret,
        signing_keys: &credentials.signing_keys,
        amz_date,
        declared_payload_hash,
    })
}

/// A request whose headers passed [`check_headers`]; [`HeaderCheck::verify`] checks the
/// signature itself.
#[derive(Debug)]
pub struct HeaderCheck<'a> {
    auth: Authorization<'a>,
    secret: &'a str,
    signing_keys: &'a SigningKeys,
    amz_date: &'a str,
    declared_payload_hash: Option<&'a str>,
}

impl HeaderCheck<'_> {
    /// The body's SHA-256 as the client declared it in `x-amz-content-sha256` (the JavaScript
    /// SDK sends it; botocore does not for QLDB). The signature covers this value, so it can be
    /// verified before the body arrives; the body must then hash to it ([`check_payload`]).
    pub fn declared_payload_hash(&self) -> Option<&str> {
        self.declared_payload_hash
    }

    /// The access key id the request claims; authenticated once [`HeaderCheck::verify`] passed.
    pub fn access_key_id(&self) -> &str {
        self.auth.access_key_id
    }

    /// Verifies the signature over `request` (its `body` is not read) with this payload hash.
    pub fn verify<H: HeaderPair>(
        &self,
        request: &SignableRequest<'_, H>,
        payload_hash: &str,
    ) -> Result<(), ApiError> {
        let auth = &self.auth;
        let mut canonical = Sha256::new();
        write_canonical_request(&mut canonical, request, auth.signed_headers, payload_hash);
        let mac = self
            .signing_keys
            .mac(self.secret, auth.date, auth.region, auth.service);
        let scope = [auth.date, auth.region, auth.service];
        let expected = signature(mac, self.amz_date, scope, canonical);
        if !constant_time_eq(&expected, auth.signature.as_bytes()) {
            return Err(ApiError::new(
                ErrorKind::InvalidSignature,
                "The request signature we calculated does not match the signature you provided.",
            ));
        }
        Ok(())
    }
}

/// The payload hash a signature covers: the body's SHA-256 in lowercase hex.
pub fn payload_sha256(body: &[u8]) -> String {
    lower_hex(&Sha256::digest(body))
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Bytes in lowercase hex, as SigV4 (and the server's request ids) spell them. Three to four
/// per request: `hex::encode` collects them through a `char` iterator, several times slower.
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        text.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// A SHA-256 in lowercase hex, on the stack: the hashes a signature check only feeds onward or
/// compares need no `String`.
fn lower_hex_32(bytes: &[u8; 32]) -> [u8; 64] {
    let mut text = [0u8; 64];
    for (pair, byte) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
    text
}

/// Checks that `body` hashes to the payload hash the client declared (and signed).
pub fn check_payload(declared: &str, body: &[u8]) -> Result<(), ApiError> {
    let actual = payload_sha256(body);
    if declared.eq_ignore_ascii_case(&actual) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidSignature,
            "x-amz-content-sha256 does not match the body",
        ))
    }
}

fn check_time(amz_date: &str, scope_date: &str, now: SystemTime) -> Result<(), ApiError> {
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| incomplete("bad X-Amz-Date"))?;
    if !amz_date.starts_with(scope_date) {
        return Err(incomplete("credential date does not match X-Amz-Date"));
    }
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    if now_secs.abs_diff(signed_at) > CLOCK_SKEW_MAX.as_secs() {
        return Err(ApiError::new(
            ErrorKind::InvalidSignature,
            format!("Signature expired: {amz_date} is more than 15 minutes from the server time"),
        ));
    }
    Ok(())
}

/// Signs a request: returns the `Authorization` header value. The request's headers must
/// already hold `host` and `x-amz-date` (as [`format_amz_date`] writes it). When they hold
/// `x-amz-content-sha256`, that value is signed as the payload hash (as botocore does), so it
/// must be the body's ([`payload_sha256`]).
pub fn sign(
    request: &SignableRequest<'_>,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
    service: &str,
) -> Option<String> {
    sign_with(
        request,
        access_key_id,
        secret_access_key,
        region,
        service,
        &SigningKeys::default(),
    )
}

/// [`sign`], taking the signing key from `signing_keys` (a client signing many requests keeps
/// one [`SigningKeys`]).
pub fn sign_with(
    request: &SignableRequest<'_>,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
    service: &str,
    signing_keys: &SigningKeys,
) -> Option<String> {
    let amz_date = header(request.headers, "x-amz-date")?;
    let date = amz_date.get(..8)?;
    let mut signed_headers: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
    signed_headers.sort_unstable();
    signed_headers.dedup();
    let signed_headers = signed_headers.join(";");
    // A client that declares the payload hash (as `quill`'s own does) signs that value: the
    // body need not be hashed a second time.
    let payload_hash = match header(request.headers, "x-amz-content-sha256") {
        Some(declared) => Cow::Borrowed(declared),
        None => Cow::Owned(payload_sha256(request.body)),
    };
    let mut canonical = Sha256::new();
    write_canonical_request(&mut canonical, request, &signed_headers, &payload_hash);
    let mac = signing_keys.mac(secret_access_key, date, region, service);
    let signature = signature(mac, amz_date, [date, region, service], canonical);
    let signature = String::from_utf8_lossy(&signature);
    Some(format!(
        "{ALGORITHM} Credential={access_key_id}/{date}/{region}/{service}/aws4_request, \
         SignedHeaders={signed_headers}, Signature={signature}"
    ))
}

/// The hex signature of a canonical request (its hash so far, `canonical_request`) with `mac`,
/// keyed with the scope's signing key. `scope` is (date, region, service). The string to sign
/// goes straight into the HMAC rather than through a `String`.
fn signature(
    mut mac: Hmac<Sha256>,
    amz_date: &str,
    scope: [&str; 3],
    canonical_request: Sha256,
) -> [u8; 64] {
    let canonical_hash = lower_hex_32(&canonical_request.finalize().into());
    let [date, region, service] = scope;
    for part in [
        ALGORITHM.as_bytes(),
        b"\n",
        amz_date.as_bytes(),
        b"\n",
        date.as_bytes(),
        b"/",
        region.as_bytes(),
        b"/",
        service.as_bytes(),
        b"/aws4_request\n",
        &canonical_hash,
    ] {
        mac.update(part);
    }
    lower_hex_32(&mac.finalize().into_bytes().into())
}

/// SigV4's derived key: HMAC chained over the date, region, service and `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let key = hmac(&key, region.as_bytes());
    let key = hmac(&key, service.as_bytes());
    hmac(&key, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = keyed_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn keyed_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

/// Where a canonical request is written: the SHA-256 it is signed through (no copy of it is
/// ever assembled), or bytes in tests.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn put_str(&mut self, text: &str) {
        self.put(text.as_bytes());
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

#[cfg(test)]
impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes the canonical request of `request` covering `signed_headers` (lowercase names
/// separated by `;`, in the order given) and `payload_hash`.
fn write_canonical_request<H: HeaderPair>(
    sink: &mut impl Sink,
    request: &SignableRequest<'_, H>,
    signed_headers: &str,
    payload_hash: &str,
) {
    sink.put_str(request.method);
    sink.put(b"\n");
    write_canonical_uri(sink, request.raw_path);
    sink.put(b"\n");
    write_canonical_query(sink, request.raw_query);
    sink.put(b"\n");
    for name in signed_headers.split(';') {
        sink.put_str(name);
        sink.put(b":");
        write_header_values(sink, request.headers, name);
        sink.put(b"\n");
    }
    sink.put(b"\n");
    sink.put_str(signed_headers);
    sink.put(b"\n");
    sink.put_str(payload_hash);
}

fn header<'a, H: HeaderPair>(headers: &'a [H], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|pair| pair.name() == name)
        .map(HeaderPair::value)
}

/// Every value of header `name`, each trimmed with inner runs of spaces collapsed to one,
/// joined with `,`.
fn write_header_values<H: HeaderPair>(sink: &mut impl Sink, headers: &[H], name: &str) {
    let values = headers.iter().filter(|pair| pair.name() == name);
    for (index, pair) in values.enumerate() {
        if index > 0 {
            sink.put(b",");
        }
        for (word_index, word) in pair.value().split_whitespace().enumerate() {
            if word_index > 0 {
                sink.put(b" ");
            }
            sink.put_str(word);
        }
    }
}

/// The canonical URI: dot and empty segments removed, then every byte outside the unreserved
/// set and `/` percent-encoded (so an already encoded `%3A` becomes `%253A`).
fn write_canonical_uri(sink: &mut impl Sink, raw_path: &str) {
    if raw_path == "/" {
        // The data plane's only path.
        sink.put(b"/");
        return;
    }
    let segments: Vec<&str> = raw_path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .fold(Vec::new(), |mut kept, segment| {
            if segment == ".." {
                kept.pop();
            } else {
                kept.push(segment);
            }
            kept
        });
    let mut path = String::from("/");
    path.push_str(&segments.join("/"));
    if raw_path.ends_with('/') && !segments.is_empty() {
        path.push('/');
    }
    sink.put_str(&uri_encode(path.as_bytes(), false));
}

fn write_canonical_query(sink: &mut impl Sink, raw_query: &str) {
    if raw_query.is_empty() {
        return;
    }
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(name), true),
                uri_encode(&percent_decode(value), true),
            )
        })
        .collect();
    pairs.sort();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            sink.put(b"&");
        }
        sink.put_str(name);
        sink.put(b"=");
        sink.put_str(value);
    }
}

/// AWS's URI encoding: unreserved characters stay, everything else becomes `%XX` (upper case).
/// `/` stays too unless `encode_slash`.
fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (byte == b'/' && !encode_slash);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as itself, as AWS does); malformed escapes stay literal.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex_pair = bytes.get(index + 1..index + 3).and_then(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        });
        match (bytes[index], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch.
pub fn parse_amz_date(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid || year < 1970 {
        return None;
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    Some(days as u64 * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Formats a time as `YYYYMMDDTHHMMSSZ` (UTC).
pub fn format_amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn lower_hex_spells_every_byte_as_hex_encode_does() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&all), hex::encode(&all));
        assert_eq!(lower_hex(&[]), "");
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn signature_of(authorization: &str) -> &str {
        authorization.rsplit("Signature=").next().unwrap()
    }

    #[test]
    fn aws_iam_list_users_example() {
        // AWS's "Create a signed AWS API request" example (IAM ListUsers).
        let headers = headers(&[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", "iam.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let request = SignableRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
        };
        let auth = sign(&request, "AKIDEXAMPLE", SECRET, "us-east-1", "iam").unwrap();
        assert_eq!(
            signature_of(&auth),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn aws_test_suite_get_vanilla_query_order() {
        // aws-sig-v4-test-suite `get-vanilla-query-order-key-case`.
        let headers = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let request = SignableRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        let auth = sign(&request, "AKIDEXAMPLE", SECRET, "us-east-1", "service").unwrap();
        assert_eq!(
            signature_of(&auth),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        assert!(auth.contains("Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"));
        assert!(auth.contains("SignedHeaders=host;x-amz-date,"));
    }

    fn canonical_uri(raw_path: &str) -> String {
        let mut written = Vec::new();
        write_canonical_uri(&mut written, raw_path);
        String::from_utf8(written).unwrap()
    }

    fn canonical_query(raw_query: &str) -> String {
        let mut written = Vec::new();
        write_canonical_query(&mut written, raw_query);
        String::from_utf8(written).unwrap()
    }

    #[test]
    fn tags_path_is_signed_double_encoded() {
        assert_eq!(
            canonical_uri("/tags/arn%3Aaws%3Aqldb%3Aus-east-1%3A0%3Aledger%2Fx"),
            "/tags/arn%253Aaws%253Aqldb%253Aus-east-1%253A0%253Aledger%252Fx"
        );
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1&c"), "a=1&a=x%20y&b=2&c=");
        assert_eq!(canonical_query("tagKeys=a%3Ab"), "tagKeys=a%3Ab");
    }

    fn signed_post(body: &[u8], now: SystemTime) -> (Vec<(String, String)>, Vec<u8>) {
        let mut headers = headers(&[
            ("content-type", "application/x-amz-json-1.0"),
            ("host", "localhost:8080"),
            ("x-amz-target", "QLDBSession.SendCommand"),
        ]);
        headers.push(("x-amz-date".into(), format_amz_date(now)));
        let request = SignableRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
            body,
        };
        let auth = sign(&request, "AKID", "secret", "eu-west-1", SERVICE).unwrap();
        headers.push(("authorization".into(), auth));
        (headers, body.to_vec())
    }

    fn check(
        headers: &[(String, String)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<String, ApiError> {
        let mut credentials = Credentials::default();
        credentials.insert("AKID", "secret");
        let request = SignableRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers,
            body,
        };
        verify(&request, &credentials, now)
    }

    #[test]
    fn cached_signing_keys_match_fresh_derivations() {
        // A cached keyed HMAC must sign as a fresh HMAC with the freshly derived key.
        let signed = |keys: &SigningKeys, secret: &str, date: &str, region: &str| {
            let mut mac = keys.mac(secret, date, region, "qldb");
            mac.update(b"string to sign");
            <[u8; 32]>::from(mac.finalize().into_bytes())
        };
        let fresh = |secret: &str, date: &str, region: &str| {
            hmac(
                &signing_key(secret, date, region, "qldb"),
                b"string to sign",
            )
        };
        let keys = SigningKeys::default();
        let expected = fresh("secret", "20261207", "us-east-1");
        assert_eq!(signed(&keys, "secret", "20261207", "us-east-1"), expected);
        assert_eq!(signed(&keys, "secret", "20261207", "us-east-1"), expected);
        // Every part of the scope, and the secret, selects its own key.
        for (secret, date, region) in [
            ("other", "20261207", "us-east-1"),
            ("secret", "20261208", "us-east-1"),
            ("secret", "20261207", "eu-west-1"),
        ] {
            let signature = signed(&keys, secret, date, region);
            assert_ne!(signature, expected);
            assert_eq!(signature, fresh(secret, date, region));
        }
        // Past the bound the oldest keys are dropped and derived again, still correctly.
        for day in 0..2 * SIGNING_KEYS_MAX {
            let date = format!("2027{day:04}");
            assert_eq!(
                signed(&keys, "secret", &date, "us-east-1"),
                fresh("secret", &date, "us-east-1")
            );
        }
        assert_eq!(keys.keys.lock().unwrap().len(), SIGNING_KEYS_MAX);
        assert_eq!(signed(&keys, "secret", "20261207", "us-east-1"), expected);
    }

    #[test]
    fn aws_test_suite_get_header_key_duplicate() {
        // aws-sig-v4-test-suite `get-header-key-duplicate`: a header sent three times is
        // signed as its values joined with `,`, in the order sent.
        let headers = headers(&[
            ("host", "example.amazonaws.com"),
            ("my-header1", "value2"),
            ("my-header1", "value2"),
            ("my-header1", "value1"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let request = SignableRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
            body: b"",
        };
        let auth = sign(&request, "AKIDEXAMPLE", SECRET, "us-east-1", "service").unwrap();
        assert_eq!(
            signature_of(&auth),
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"
        );
    }

    #[test]
    fn borrowed_headers_verify_as_owned_ones_sign() {
        // The server checks headers borrowed from the request (`(&str, Cow<str>)`); values
        // with runs of spaces and a repeated header must canonicalize as the signer's did.
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut owned = headers(&[
            ("host", "localhost:8080"),
            ("x-amz-target", "QLDBSession.SendCommand"),
            ("x-custom", "  a   b  c "),
            ("x-custom", "d"),
        ]);
        owned.push(("x-amz-date".into(), format_amz_date(now)));
        let body = br#"{"StartTransaction":{}}"#;
        let request = SignableRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &owned,
            body,
        };
        let auth = sign(&request, "AKID", "secret", "eu-west-1", SERVICE).unwrap();
        assert!(auth.contains("SignedHeaders=host;x-amz-date;x-amz-target;x-custom,"));
        owned.push(("authorization".into(), auth));
        let mut credentials = Credentials::default();
        credentials.insert("AKID", "secret");
        let verify_borrowed = |headers: &[(String, String)], body: &[u8]| {
            let borrowed: Vec<(&str, Cow<'_, str>)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), Cow::Borrowed(value.as_str())))
                .collect();
            let request = SignableRequest {
                method: "POST",
                raw_path: "/",
                raw_query: "",
                headers: &borrowed,
                body,
            };
            verify(&request, &credentials, now)
        };
        assert_eq!(verify_borrowed(&owned, body), Ok("AKID".to_string()));
        assert_eq!(
            verify_borrowed(&owned, b"{}").unwrap_err().kind,
            ErrorKind::InvalidSignature
        );
        // Whitespace inside a value is covered: one space more fails.
        let mut changed = owned.clone();
        changed[2].1 = "  a   b  c d".into();
        assert_eq!(
            verify_borrowed(&changed, body).unwrap_err().kind,
            ErrorKind::InvalidSignature
        );
        // And a client that declares the payload hash signs it: the server checks both.
        let mut declared = owned[..5].to_vec();
        declared.push(("x-amz-content-sha256".into(), payload_sha256(body)));
        let request = SignableRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &declared,
            body,
        };
        let auth = sign(&request, "AKID", "secret", "eu-west-1", SERVICE).unwrap();
        declared.push(("authorization".into(), auth));
        assert_eq!(verify_borrowed(&declared, body), Ok("AKID".to_string()));
        assert_eq!(
            verify_borrowed(&declared, b"{}").unwrap_err().kind,
            ErrorKind::InvalidSignature
        );
    }

    #[test]
    fn verify_accepts_good_and_rejects_tampered_requests() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (headers, body) = signed_post(b"{}", now);
        assert_eq!(check(&headers, &body, now), Ok("AKID".to_string()));
        let error = check(&headers, b"{ }", now).unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidSignature);
        let late = now + Duration::from_secs(16 * 60);
        assert_eq!(
            check(&headers, &body, late).unwrap_err().kind,
            ErrorKind::InvalidSignature
        );
        let mut unknown = headers.clone();
        for (name, value) in unknown.iter_mut() {
            if name == "authorization" {
                *value = value.replace("AKID/", "OTHER/");
            }
        }
        assert_eq!(
            check(&unknown, &body, now).unwrap_err().kind,
            ErrorKind::UnrecognizedClient
        );
        let unsigned: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n != "authorization")
            .cloned()
            .collect();
        let error = check(&unsigned, &body, now).unwrap_err();
        assert_eq!(error.kind, ErrorKind::MissingAuthenticationToken);
    }

    #[test]
    fn malformed_authorization_headers_are_errors() {
        for value in [
            "",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=a/b",
            "Basic xyz",
        ] {
            assert!(parse_authorization(value).is_err(), "{value}");
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(format_amz_date(time), "20150830T123600Z");
        for bad in [
            "2015-08-30",
            "20151330T123600Z",
            "2015083OT123600Z",
            "20150830T123600",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn credentials_file_format() {
        let credentials = Credentials::parse("# comment\n\nAKID secret\nK2\tS2\n").unwrap();
        assert_eq!(credentials.len(), 2);
        assert!(Credentials::parse("just-one-field\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(Credentials::parse("a b\na c\n")
            .unwrap_err()
            .contains("twice"));
    }
}
