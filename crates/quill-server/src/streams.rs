//! QLDB journal streams to Kinesis: the control-plane operations (`StreamJournalToKinesis`,
//! `DescribeJournalKinesisStream`, `ListJournalKinesisStreamsForLedger`,
//! `CancelJournalKinesisStream`) and the workers behind them; and Quill's extension, streams to
//! NATS JetStream, with the same operations under `/ledgers/{name}/journal-nats-streams`.
//!
//! Each stream lives in `<data-dir>/streams/<ledger>/<streamId>/`: `stream.json` (the request
//! and, once it ended, its final status and when it ended) and `cursor.json` (the worker's
//! durable cursor). At start the server resumes every stream that has not ended, from its cursor.
//!
//! As in QLDB, a stream that ended (`COMPLETED`, `CANCELED` or `FAILED`) expires 7 days later:
//! Describe and List no longer return it and its directory is deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use quill_ledger::storage::Storage;
use quill_ledger::Ledger;
use quill_stream::{
    BoxFuture, Cursor, Sink, SinkError, StreamConfig, StreamHandle, StreamRecord, StreamStatus,
    Worker, WorkerOptions,
};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::{check_tags, TagChange};
use crate::error::{ApiError, ErrorKind};
use crate::kinesis::{
    endpoint_from_environment, AwsCredentials, KinesisClient, KinesisSink, KinesisTarget,
};
use crate::nats::{NatsAuth, NatsSink, NatsTarget};

const ARN_CHARS: std::ops::RangeInclusive<usize> = 20..=1600;
const STREAM_NAME_MAX_CHARS: usize = 32;
/// QLDB's default quota of active journal streams per ledger (Kinesis and NATS streams count
/// alike here: each holds a worker).
const ACTIVE_STREAMS_PER_LEDGER_MAX: usize = 5;
/// QLDB's retention of terminal streams ("Expiration for terminal streams").
const TERMINAL_RETENTION_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// A stream as stored in `stream.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    pub ledger_name: String,
    pub stream_id: String,
    pub stream_name: String,
    pub arn: String,
    #[serde(flatten)]
    pub destination: Destination,
    /// Epoch seconds, as the API carries them.
    pub creation_time: f64,
    pub inclusive_start_time: f64,
    pub exclusive_end_time: Option<f64>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Set once the stream ended.
    pub final_status: Option<StreamStatus>,
    /// When it ended (epoch seconds); it expires [`TERMINAL_RETENTION_SECONDS`] later.
    #[serde(default)]
    pub end_time: Option<f64>,
}

impl StreamSpec {
    /// Ended more than QLDB's retention period before `now`.
    fn is_expired(&self, now: f64) -> bool {
        self.final_status.is_some()
            && self
                .end_time
                .is_some_and(|end| now >= end + TERMINAL_RETENTION_SECONDS)
    }
}

/// Where a stream's records go. Stored flat in `stream.json` (a Kinesis stream's fields are
/// those of the first releases, so their files still read).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum Destination {
    /// `StreamJournalToKinesis`.
    Kinesis {
        role_arn: String,
        kinesis_stream_arn: String,
        aggregation_enabled: bool,
    },
    /// The Quill extension: a NATS JetStream subject, one Ion record per message.
    Nats {
        nats_server: String,
        nats_subject: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nats_tls: bool,
        /// Credentials as the URL gave them (the data directory holds secrets anyway: the
        /// journal); Describe shows the URL without them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nats_auth: Option<NatsAuth>,
    },
}

impl Destination {
    fn nats_target(&self) -> Option<NatsTarget> {
        match self {
            Destination::Kinesis { .. } => None,
            Destination::Nats {
                nats_server,
                nats_subject,
                nats_tls,
                nats_auth,
            } => Some(NatsTarget {
                server: nats_server.clone(),
                subject: nats_subject.clone(),
                tls: *nats_tls,
                auth: nats_auth.clone(),
                ca_file: std::env::var_os("NATS_CA")
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from),
            }),
        }
    }
}

/// The two stream APIs: QLDB's Kinesis one and Quill's NATS one. Each sees only its own
/// streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kinesis,
    Nats,
}

impl Destination {
    fn kind(&self) -> Kind {
        match self {
            Destination::Kinesis { .. } => Kind::Kinesis,
            Destination::Nats { .. } => Kind::Nats,
        }
    }
}

type Entries = BTreeMap<(String, String), Entry>;

struct Entry {
    spec: StreamSpec,
    /// `None` once the stream ended (or when it ended before this server started).
    handle: Option<Arc<StreamHandle>>,
}

impl Entry {
    /// Not ended: `ACTIVE` or `IMPAIRED` (QLDB's quota counts these).
    fn is_active(&self) -> bool {
        self.spec.final_status.is_none()
            && self
                .handle
                .as_ref()
                .is_none_or(|h| !h.progress().status.is_terminal())
    }
}

/// The streams of every ledger.
pub struct Streams {
    root: PathBuf,
    runtime: tokio::runtime::Handle,
    entries: Arc<Mutex<Entries>>,
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn new_id() -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..22)
        .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
        .collect()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("journal stream storage: {e}"))
}

/// Reports, on every delivery, why the stream cannot reach Kinesis (the stream is `IMPAIRED`
/// until the server is restarted with a working configuration).
struct Unconfigured(String);

impl Sink for Unconfigured {
    fn deliver<'a>(&'a mut self, _: &'a [StreamRecord]) -> BoxFuture<'a, Result<(), SinkError>> {
        let message = self.0.clone();
        Box::pin(async move { Err(SinkError::transient(message)) })
    }
}

/// `arn:aws:kinesis:<region>:<account>:stream/<name>` → region.
fn kinesis_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", _, "kinesis", region, _, resource]
            if !region.is_empty() && resource.starts_with("stream/") && resource.len() > 7 =>
        {
            Some(region)
        }
        _ => None,
    }
}

fn sink_for(spec: &StreamSpec, strand_id: &str) -> Box<dyn Sink> {
    let (kinesis_stream_arn, aggregation) = match &spec.destination {
        Destination::Kinesis {
            kinesis_stream_arn,
            aggregation_enabled,
            ..
        } => (kinesis_stream_arn, *aggregation_enabled),
        Destination::Nats { .. } => {
            let target = spec.destination.nats_target().expect("a NATS destination");
            return Box::new(NatsSink::new(target));
        }
    };
    let region = kinesis_region(kinesis_stream_arn).unwrap_or("us-east-1");
    let endpoint = match endpoint_from_environment(region) {
        Ok(endpoint) => endpoint,
        Err(message) => return Box::new(Unconfigured(message)),
    };
    let Some(credentials) = AwsCredentials::from_environment() else {
        return Box::new(Unconfigured(
            "no AWS credentials for Kinesis (AWS_ACCESS_KEY_ID / ~/.aws/credentials)".into(),
        ));
    };
    Box::new(KinesisSink::new(KinesisTarget {
        client: KinesisClient {
            endpoint,
            region: region.to_owned(),
            credentials,
        },
        stream_arn: kinesis_stream_arn.clone(),
        aggregation,
        partition_key: strand_id.to_owned(),
    }))
}

/// The members every stream request has, whatever its destination.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonRequest {
    stream_name: String,
    inclusive_start_time: f64,
    exclusive_end_time: Option<f64>,
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
}

fn parse_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| ApiError::invalid_parameter(format!("Invalid request: {e}")))
}

impl Streams {
    /// Loads the streams under `<data_dir>/streams`; [`Streams::resume`] starts them.
    pub fn open(data_dir: &Path, runtime: tokio::runtime::Handle) -> std::io::Result<Streams> {
        let root = data_dir.join("streams");
        std::fs::create_dir_all(&root)?;
        let mut entries = BTreeMap::new();
        for ledger in std::fs::read_dir(&root)? {
            for stream in std::fs::read_dir(ledger?.path())? {
                let path = stream?.path().join("stream.json");
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let mut spec: StreamSpec = serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
                if spec.final_status.is_some() && spec.end_time.is_none() {
                    // Written before end times were recorded: the file was last written when
                    // the stream ended (or later, for a tag change), so it expires no earlier.
                    spec.end_time = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs_f64());
                }
                let key = (spec.ledger_name.clone(), spec.stream_id.clone());
                entries.insert(key, Entry { spec, handle: None });
            }
        }
        let streams = Streams {
            root,
            runtime,
            entries: Arc::new(Mutex::new(entries)),
        };
        // Deletes what expired while the server was down.
        drop(streams.live());
        Ok(streams)
    }

    /// The streams that have not expired; expired ones are forgotten and their directories
    /// deleted on the way.
    fn live(&self) -> MutexGuard<'_, Entries> {
        let mut entries = self.entries.lock().expect("streams lock");
        self.expire(&mut entries, now_seconds());
        entries
    }

    fn expire(&self, entries: &mut Entries, now: f64) {
        entries.retain(|(_, id), entry| {
            if !entry.spec.is_expired(now) {
                return true;
            }
            let dir = self.dir(&entry.spec);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(stream = %id, "journal stream expired"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Hidden all the same; the next start tries again.
                Err(e) => tracing::warn!(?dir, "cannot delete an expired journal stream: {e}"),
            }
            false
        });
    }

    /// Starts the worker of every stream of `ledger_name` that has not ended.
    pub fn resume(&self, ledger_name: &str, ledger: &Ledger) {
        let mut entries = self.live();
        for ((name, _), entry) in entries.iter_mut() {
            if name == ledger_name && entry.spec.final_status.is_none() && entry.handle.is_none() {
                entry.handle = Some(self.start(&entry.spec, ledger));
            }
        }
    }

    fn dir(&self, spec: &StreamSpec) -> PathBuf {
        self.root.join(&spec.ledger_name).join(&spec.stream_id)
    }

    fn start(&self, spec: &StreamSpec, ledger: &Ledger) -> Arc<StreamHandle> {
        let strand_id = ledger.digest().tip.strand_id;
        let config = StreamConfig {
            stream_id: spec.stream_id.clone(),
            stream_arn: spec.arn.clone(),
            inclusive_start_millis: (spec.inclusive_start_time * 1000.0) as i64,
            exclusive_end_millis: spec.exclusive_end_time.map(|t| (t * 1000.0) as i64),
        };
        let dir = self.dir(spec);
        let (worker, handle) = Worker::new(
            config,
            ledger.clone(),
            Cursor::new(dir.join("cursor.json")),
            sink_for(spec, &strand_id),
            WorkerOptions::default(),
        );
        let entries = self.entries.clone();
        let key = (spec.ledger_name.clone(), spec.stream_id.clone());
        self.runtime.spawn(async move {
            let status = worker.run().await.unwrap_or(StreamStatus::Failed);
            let mut entries = entries.lock().expect("streams lock");
            if let Some(entry) = entries.get_mut(&key) {
                entry.spec.final_status = Some(status);
                entry.spec.end_time = Some(now_seconds());
                let bytes = serde_json::to_vec(&entry.spec).expect("a spec serializes");
                if let Err(e) = Storage::Os.write_atomically(&dir.join("stream.json"), &bytes) {
                    tracing::error!(stream = %key.1, "cannot record the stream's end: {e}");
                }
            }
        });
        handle
    }

    /// `StreamJournalToKinesis`.
    pub fn create_kinesis(
        &self,
        ledger_name: &str,
        ledger: &Ledger,
        body: &[u8],
        region: &str,
        account_id: &str,
    ) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct KinesisConfiguration {
            stream_arn: String,
            aggregation_enabled: Option<bool>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            role_arn: String,
            kinesis_configuration: KinesisConfiguration,
            #[serde(flatten)]
            common: CommonRequest,
        }
        let request: Request = parse_request(body)?;
        for (what, arn) in [
            ("RoleArn", &request.role_arn),
            (
                "KinesisConfiguration.StreamArn",
                &request.kinesis_configuration.stream_arn,
            ),
        ] {
            if !ARN_CHARS.contains(&arn.chars().count()) || !arn.starts_with("arn:") {
                return Err(ApiError::invalid_parameter(format!(
                    "{what} must be an ARN of 20-1600 characters"
                )));
            }
        }
        if kinesis_region(&request.kinesis_configuration.stream_arn).is_none() {
            return Err(ApiError::invalid_parameter(
                "KinesisConfiguration.StreamArn must be arn:aws:kinesis:<region>:<account>:stream/<name>",
            ));
        }
        let destination = Destination::Kinesis {
            role_arn: request.role_arn,
            kinesis_stream_arn: request.kinesis_configuration.stream_arn,
            aggregation_enabled: request
                .kinesis_configuration
                .aggregation_enabled
                .unwrap_or(true),
        };
        self.create(
            ledger_name,
            ledger,
            request.common,
            destination,
            region,
            account_id,
        )
    }

    /// Quill's `StreamJournalToNats`: `{StreamName, InclusiveStartTime, ExclusiveEndTime?,
    /// NatsConfiguration: {Url: "nats://HOST[:PORT]/SUBJECT"}, Tags?}`.
    pub fn create_nats(
        &self,
        ledger_name: &str,
        ledger: &Ledger,
        body: &[u8],
        region: &str,
        account_id: &str,
    ) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct NatsConfiguration {
            url: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            nats_configuration: NatsConfiguration,
            #[serde(flatten)]
            common: CommonRequest,
        }
        let request: Request = parse_request(body)?;
        let target = NatsTarget::parse(&request.nats_configuration.url)
            .map_err(|e| ApiError::invalid_parameter(format!("NatsConfiguration.Url: {e}")))?;
        let destination = Destination::Nats {
            nats_server: target.server,
            nats_subject: target.subject,
            nats_tls: target.tls,
            nats_auth: target.auth,
        };
        self.create(
            ledger_name,
            ledger,
            request.common,
            destination,
            region,
            account_id,
        )
    }

    /// Validates what every stream request has, records the stream durably, and starts it.
    fn create(
        &self,
        ledger_name: &str,
        ledger: &Ledger,
        request: CommonRequest,
        destination: Destination,
        region: &str,
        account_id: &str,
    ) -> Result<Value, ApiError> {
        validate_stream_name(&request.stream_name)?;
        let tags: BTreeMap<String, String> = request
            .tags
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        check_tags(&tags)?;
        let now = now_seconds();
        if request.inclusive_start_time > now {
            return Err(ApiError::invalid_parameter(
                "InclusiveStartTime cannot be in the future",
            ));
        }
        if request
            .exclusive_end_time
            .is_some_and(|end| end <= request.inclusive_start_time)
        {
            return Err(ApiError::invalid_parameter(
                "ExclusiveEndTime must be after InclusiveStartTime",
            ));
        }
        let stream_id = new_id();
        let spec = StreamSpec {
            ledger_name: ledger_name.to_owned(),
            arn: format!("arn:aws:qldb:{region}:{account_id}:stream/{ledger_name}/{stream_id}"),
            stream_id: stream_id.clone(),
            stream_name: request.stream_name,
            destination,
            creation_time: now,
            inclusive_start_time: request.inclusive_start_time,
            exclusive_end_time: request.exclusive_end_time,
            tags,
            final_status: None,
            end_time: None,
        };
        // Held from the count to the insert, so two requests cannot both take the last slot.
        let mut entries = self.live();
        let active = entries
            .iter()
            .filter(|((name, _), entry)| name == ledger_name && entry.is_active())
            .count();
        if active >= ACTIVE_STREAMS_PER_LEDGER_MAX {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Ledger {ledger_name} already has {ACTIVE_STREAMS_PER_LEDGER_MAX} active journal streams"
                ),
            ));
        }
        let dir = self.dir(&spec);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let bytes = serde_json::to_vec(&spec).expect("a spec serializes");
        Storage::Os
            .write_atomically(&dir.join("stream.json"), &bytes)
            .map_err(internal)?;
        let handle = self.start(&spec, ledger);
        entries.insert(
            (ledger_name.to_owned(), stream_id.clone()),
            Entry {
                spec,
                handle: Some(handle),
            },
        );
        Ok(json!({ "StreamId": stream_id }))
    }

    fn not_found(ledger_name: &str, stream_id: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Journal stream {stream_id} does not exist in ledger {ledger_name}"),
        )
    }

    fn remove_ledger(&self, ledger_name: &str) {
        let mut entries = self.live();
        entries.retain(|(name, _), entry| {
            if name != ledger_name {
                return true;
            }
            if let Some(handle) = &entry.handle {
                handle.cancel();
            }
            false
        });
        let dir = self.root.join(ledger_name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(?dir, "cannot remove a deleted ledger's streams: {e}");
            }
        }
    }

    /// The stream `stream_id` of `ledger_name` if it is of `kind`.
    fn entry<'a>(
        entries: &'a Entries,
        kind: Kind,
        ledger_name: &str,
        stream_id: &str,
    ) -> Result<&'a Entry, ApiError> {
        entries
            .get(&(ledger_name.to_owned(), stream_id.to_owned()))
            .filter(|entry| entry.spec.destination.kind() == kind)
            .ok_or_else(|| Self::not_found(ledger_name, stream_id))
    }

    /// `DescribeJournalKinesisStream` (and its NATS counterpart).
    pub fn describe(
        &self,
        kind: Kind,
        ledger_name: &str,
        stream_id: &str,
    ) -> Result<Value, ApiError> {
        let entries = self.live();
        let entry = Self::entry(&entries, kind, ledger_name, stream_id)?;
        Ok(json!({ "Stream": description(entry) }))
    }

    /// `ListJournalKinesisStreamsForLedger` (and its NATS counterpart): by stream id,
    /// `max_results` per page.
    pub fn list(
        &self,
        kind: Kind,
        ledger_name: &str,
        query: &[(String, String)],
    ) -> Result<Value, ApiError> {
        let max_results = crate::control::max_results(query)?;
        let after = query
            .iter()
            .find(|(n, _)| n == "next_token")
            .map(|(_, token)| {
                token
                    .strip_prefix("next")
                    .filter(|id| quill_ledger::is_valid_id(id))
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid_parameter("next_token is not valid"))
            })
            .transpose()?;
        let entries = self.live();
        let streams: Vec<&Entry> = entries
            .iter()
            .filter(|((name, id), entry)| {
                name == ledger_name
                    && entry.spec.destination.kind() == kind
                    && after.as_ref().is_none_or(|after| id > after)
            })
            .map(|(_, entry)| entry)
            .collect();
        let page: Vec<Value> = streams
            .iter()
            .take(max_results)
            .map(|e| description(e))
            .collect();
        let mut reply = json!({ "Streams": page });
        if streams.len() > max_results {
            reply["NextToken"] = json!(format!("next{}", streams[max_results - 1].spec.stream_id));
        }
        Ok(reply)
    }

    /// `CancelJournalKinesisStream` (and its NATS counterpart): only a running stream can be
    /// cancelled.
    pub fn cancel(
        &self,
        kind: Kind,
        ledger_name: &str,
        stream_id: &str,
    ) -> Result<Value, ApiError> {
        let entries = self.live();
        let entry = Self::entry(&entries, kind, ledger_name, stream_id)?;
        match (&entry.handle, entry.spec.final_status) {
            (Some(handle), None) if !handle.progress().status.is_terminal() => {
                handle.cancel();
                Ok(json!({ "StreamId": stream_id }))
            }
            _ => Err(ApiError::new(
                ErrorKind::ResourcePreconditionNotMet,
                format!("Journal stream {stream_id} is not active and cannot be canceled"),
            )),
        }
    }

    /// ListTagsForResource (GET), TagResource (POST) and UntagResource (DELETE) on a stream's
    /// ARN; changes are saved in its `stream.json` before the reply.
    pub fn tags(
        &self,
        method: &str,
        ledger_name: &str,
        stream_id: &str,
        query: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let mut entries = self.live();
        let entry = entries
            .get_mut(&(ledger_name.to_owned(), stream_id.to_owned()))
            .ok_or_else(|| Self::not_found(ledger_name, stream_id))?;
        if method == "GET" {
            return Ok(json!({ "Tags": entry.spec.tags }));
        }
        let change = TagChange::of_request(method, query, body)?
            .ok_or_else(|| ApiError::new(ErrorKind::UnknownOperation, "No such tag operation"))?;
        let mut spec = entry.spec.clone();
        change.apply(&mut spec.tags)?;
        let bytes = serde_json::to_vec(&spec).expect("a spec serializes");
        Storage::Os
            .write_atomically(&self.dir(&spec).join("stream.json"), &bytes)
            .map_err(internal)?;
        entry.spec = spec;
        Ok(json!({}))
    }

    /// Prometheus lines for the running streams: lag in blocks and seconds, and whether each
    /// is impaired.
    pub fn render_metrics(&self) -> String {
        let entries = self.live();
        let mut text = String::from(
            "# TYPE quill_stream_blocks_behind gauge\n\
             # TYPE quill_stream_seconds_behind gauge\n\
             # TYPE quill_stream_impaired gauge\n",
        );
        for ((ledger, id), entry) in entries.iter() {
            let Some(progress) = entry.handle.as_ref().map(|h| h.progress()) else {
                continue;
            };
            if progress.status.is_terminal() {
                continue;
            }
            let labels = format!("ledger=\"{ledger}\",stream=\"{id}\"");
            text.push_str(&format!(
                "quill_stream_blocks_behind{{{labels}}} {}\n\
                 quill_stream_seconds_behind{{{labels}}} {:.3}\n\
                 quill_stream_impaired{{{labels}}} {}\n",
                progress.blocks_behind,
                progress.millis_behind as f64 / 1000.0,
                u8::from(progress.status == StreamStatus::Impaired),
            ));
        }
        text
    }
}

fn description(entry: &Entry) -> Value {
    let spec = &entry.spec;
    let progress = entry.handle.as_ref().map(|h| h.progress());
    let status = spec
        .final_status
        .or(progress.as_ref().map(|p| p.status))
        .unwrap_or(StreamStatus::Active);
    let mut description = json!({
        "LedgerName": spec.ledger_name,
        "CreationTime": spec.creation_time,
        "InclusiveStartTime": spec.inclusive_start_time,
        "StreamId": spec.stream_id,
        "Arn": spec.arn,
        "Status": status.as_str(),
        "StreamName": spec.stream_name,
    });
    match &spec.destination {
        Destination::Kinesis {
            role_arn,
            kinesis_stream_arn,
            aggregation_enabled,
        } => {
            description["RoleArn"] = json!(role_arn);
            description["KinesisConfiguration"] = json!({
                "StreamArn": kinesis_stream_arn,
                "AggregationEnabled": aggregation_enabled,
            });
        }
        Destination::Nats { .. } => {
            let target = spec.destination.nats_target().expect("a NATS destination");
            description["NatsConfiguration"] = json!({ "Url": target.url() });
        }
    }
    if let Some(end) = spec.exclusive_end_time {
        description["ExclusiveEndTime"] = json!(end);
    }
    if let Some(progress) = progress {
        if let Some(cause) = progress
            .error_cause
            .filter(|_| !status.is_terminal() || status == StreamStatus::Failed)
        {
            description["ErrorCause"] = json!(cause.as_str());
        }
        // Quill extension (SDKs ignore unknown members): how far behind the journal it is.
        description["QuillDelivery"] = json!({
            "LastDeliveredBlock": progress.last_delivered_block,
            "BlocksBehind": progress.blocks_behind,
            "SecondsBehind": progress.millis_behind as f64 / 1000.0,
            "LastError": progress.last_error,
        });
    }
    description
}

/// QLDB's `StreamName`: 1-32 letters, digits and hyphens, not all digits, no leading,
/// trailing or double hyphen.
fn validate_stream_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=STREAM_NAME_MAX_CHARS).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.bytes().all(|b| b.is_ascii_digit())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "StreamName {name:?} must be 1-32 letters, digits and single inner hyphens, not all digits"
        )))
    }
}

/// After a successful control-plane request: a deleted ledger's streams are cancelled and
/// forgotten, so a new ledger of the same name starts with none.
pub fn ledger_request_done(streams: &Streams, request: &crate::control::ControlRequest<'_>) {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    if let ("DELETE", ["ledgers", name]) = (request.method, segments.as_slice()) {
        if let Ok(name) = String::from_utf8(crate::sigv4::percent_decode(name)) {
            streams.remove_ledger(&name);
        }
    }
}

/// Routes `/ledgers/{name}/journal-kinesis-streams[/{streamId}]`; `None` for other paths.
pub fn route(
    streams: &Streams,
    registry: &crate::registry::Registry,
    request: &crate::control::ControlRequest<'_>,
    region: &str,
    account_id: &str,
) -> Option<Result<(u16, Value), ApiError>> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    if let ["tags", arn] = segments.as_slice() {
        let arn = String::from_utf8(crate::sigv4::percent_decode(arn)).ok()?;
        let prefix = format!("arn:aws:qldb:{region}:{account_id}:stream/");
        let (ledger, id) = arn.strip_prefix(&prefix)?.split_once('/')?;
        return Some(
            streams
                .tags(request.method, ledger, id, request.query, request.body)
                .map(|value| (200, value)),
        );
    }
    let ["ledgers", name, collection, rest @ ..] = segments.as_slice() else {
        return None;
    };
    let kind = match *collection {
        "journal-kinesis-streams" => Kind::Kinesis,
        "journal-nats-streams" => Kind::Nats,
        _ => return None,
    };
    let decode = |s: &str| {
        String::from_utf8(crate::sigv4::percent_decode(s))
            .map_err(|_| ApiError::invalid_parameter("Path is not valid UTF-8"))
    };
    let outcome = (|| {
        let name = decode(name)?;
        let (ledger, _) = registry.get(&name)?;
        match (request.method, rest) {
            ("POST", []) => match kind {
                Kind::Kinesis => {
                    streams.create_kinesis(&name, &ledger, request.body, region, account_id)
                }
                Kind::Nats => streams.create_nats(&name, &ledger, request.body, region, account_id),
            },
            ("GET", []) => {
                let query: Vec<(String, String)> = request
                    .query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        Ok((decode(k)?, decode(v)?))
                    })
                    .collect::<Result<_, ApiError>>()?;
                streams.list(kind, &name, &query)
            }
            ("GET", [id]) => streams.describe(kind, &name, &decode(id)?),
            ("DELETE", [id]) => streams.cancel(kind, &name, &decode(id)?),
            _ => Err(ApiError::new(
                ErrorKind::UnknownOperation,
                "No such journal stream operation",
            )),
        }
    })();
    Some(outcome.map(|value| (200, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_qldb_rules() {
        for good in ["a", "my-stream", "s3", &"x".repeat(32)] {
            assert!(validate_stream_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a--b", "123", "a_b", &"x".repeat(33)] {
            assert!(validate_stream_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_files_of_earlier_releases_read_as_kinesis_streams() {
        let stored = r#"{"ledgerName":"shop","streamId":"AAAAAAAAAAAAAAAAAAAAAA","streamName":"s",
            "arn":"arn:aws:qldb:us-east-1:1:stream/shop/AAAAAAAAAAAAAAAAAAAAAA",
            "roleArn":"arn:aws:iam::1:role/r","kinesisStreamArn":"arn:aws:kinesis:us-east-1:1:stream/k",
            "aggregationEnabled":false,"creationTime":1700000000.5,"inclusiveStartTime":1600000000,
            "exclusiveEndTime":null,"tags":{"a":"b"},"finalStatus":"CANCELED"}"#;
        let spec: StreamSpec = serde_json::from_str(stored).unwrap();
        assert_eq!(
            spec.destination,
            Destination::Kinesis {
                role_arn: "arn:aws:iam::1:role/r".into(),
                kinesis_stream_arn: "arn:aws:kinesis:us-east-1:1:stream/k".into(),
                aggregation_enabled: false,
            }
        );
        assert_eq!(spec.final_status, Some(StreamStatus::Canceled));
        let nats = StreamSpec {
            destination: Destination::Nats {
                nats_server: "127.0.0.1:4222".into(),
                nats_subject: "quill.shop".into(),
                nats_tls: false,
                nats_auth: None,
            },
            ..spec
        };
        let text = serde_json::to_string(&nats).unwrap();
        assert!(text.contains(r#""natsSubject":"quill.shop""#), "{text}");
        assert_eq!(serde_json::from_str::<StreamSpec>(&text).unwrap(), nats);
    }

    fn stored_stream(dir: &Path, id: &str, status: Option<StreamStatus>, end_time: Option<f64>) {
        let spec = StreamSpec {
            ledger_name: "shop".into(),
            stream_id: id.into(),
            stream_name: "s".into(),
            arn: format!("arn:aws:qldb:us-east-1:1:stream/shop/{id}"),
            destination: Destination::Nats {
                nats_server: "127.0.0.1:4222".into(),
                nats_subject: "quill.shop".into(),
                nats_tls: false,
                nats_auth: None,
            },
            creation_time: 1.0,
            inclusive_start_time: 1.0,
            exclusive_end_time: None,
            tags: BTreeMap::new(),
            final_status: status,
            end_time,
        };
        let dir = dir.join("streams/shop").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stream.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
        std::fs::write(dir.join("cursor.json"), b"{}").unwrap();
    }

    #[test]
    fn terminal_streams_expire_seven_days_after_they_ended() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let data = tempfile::tempdir().unwrap();
        let day = 24.0 * 3600.0;
        let now = now_seconds();
        let (old, recent, running) = ("A".repeat(22), "B".repeat(22), "C".repeat(22));
        stored_stream(
            data.path(),
            &old,
            Some(StreamStatus::Canceled),
            Some(now - 7.0 * day - 1.0),
        );
        stored_stream(
            data.path(),
            &recent,
            Some(StreamStatus::Completed),
            Some(now - 6.0 * day),
        );
        // A stream that never ended never expires, however old it is.
        stored_stream(data.path(), &running, None, None);

        let streams = Streams::open(data.path(), runtime.handle().clone()).unwrap();
        let ids = |streams: &Streams| -> Vec<String> {
            let listed = streams.list(Kind::Nats, "shop", &[]).unwrap();
            listed["Streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["StreamId"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(&streams), [recent.clone(), running.clone()]);
        let error = streams.describe(Kind::Nats, "shop", &old).unwrap_err();
        assert_eq!(error.kind, ErrorKind::ResourceNotFound);
        assert!(!data.path().join("streams/shop").join(&old).exists());
        let described = streams.describe(Kind::Nats, "shop", &recent).unwrap();
        assert_eq!(described["Stream"]["Status"], "COMPLETED");

        // A day later the recent one has expired too (a second more: `now - 6 days + 7 days`
        // need not round to exactly `now + 1 day`).
        streams.expire(&mut streams.entries.lock().unwrap(), now + day + 1.0);
        assert_eq!(ids(&streams), std::slice::from_ref(&running));
        assert!(!data.path().join("streams/shop").join(&recent).exists());
        assert!(data.path().join("streams/shop").join(&running).exists());
    }

    #[test]
    fn kinesis_arns_name_their_region() {
        assert_eq!(
            kinesis_region("arn:aws:kinesis:eu-west-1:123456789012:stream/journal"),
            Some("eu-west-1")
        );
        assert_eq!(kinesis_region("arn:aws:kinesis:eu-west-1:1:table/x"), None);
        assert_eq!(kinesis_region("arn:aws:sqs:eu-west-1:1:stream/x"), None);
    }
}
