//! QLDB journal streams to Kinesis: the control-plane operations (`StreamJournalToKinesis`,
//! `DescribeJournalKinesisStream`, `ListJournalKinesisStreamsForLedger`,
//! `CancelJournalKinesisStream`) and the workers behind them; and Quill's extension, streams to
//! NATS JetStream, with the same operations under `/ledgers/{name}/journal-nats-streams`.
//!
//! Streams are kept by a [`StreamStore`]: files in the data directory with the embedded
//! backend, rows in PostgreSQL with `--storage postgres://` (see `stream_store.rs`). Every
//! operation reads the store, so with PostgreSQL every server answers alike for every stream.
//! A server runs the streams it holds a lease on: at start, and every
//! [`TAKEOVER_INTERVAL`], it takes the lease of every stream that has not ended and that no
//! server runs (with PostgreSQL, those of a server that died) and resumes it from its cursor.
//! The runner reports its progress to the store every [`LEASE_INTERVAL`] and stops when the
//! stream was cancelled elsewhere or its lease is gone.
//!
//! As in QLDB, a stream that ended (`COMPLETED`, `CANCELED` or `FAILED`) expires 7 days later:
//! Describe and List no longer return it and the store deletes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quill_ledger::{postgres_blocking, Ledger, LedgerError, PostgresStore};
use quill_stream::{
    delivery_runtime, BoxFuture, DeliveryPriority, Progress, Sink, SinkError, StreamConfig,
    StreamError, StreamHandle, StreamRecord, StreamStatus, Worker, WorkerOptions,
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
use crate::stream_store::{FileStreams, Keep, Lease, PgStreams, StoreError, Stored, StreamStore};

const ARN_CHARS: std::ops::RangeInclusive<usize> = 20..=1600;
const STREAM_NAME_MAX_CHARS: usize = 32;
/// QLDB's default quota of active journal streams per ledger (Kinesis and NATS streams count
/// alike here: each holds a worker).
const ACTIVE_STREAMS_PER_LEDGER_MAX: usize = 5;
/// QLDB's retention of terminal streams ("Expiration for terminal streams").
const TERMINAL_RETENTION_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// A stream's definition (`stream.json`, or the `spec` column with PostgreSQL), and how it
/// ended.
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

/// The workers this server runs, by (ledger, stream id).
type Running = BTreeMap<(String, String), Arc<StreamHandle>>;

/// The streams of every ledger.
pub struct Streams {
    store: Arc<dyn StreamStore>,
    /// Runs each stream's lease keeping.
    runtime: tokio::runtime::Handle,
    /// Runs the workers themselves.
    delivery: DeliveryRuntime,
    running: Arc<Mutex<Running>>,
}

/// Threads of the stream workers' runtime (one worker thread is plenty for their I/O; the
/// journal reads go to its blocking threads).
const DELIVERY_THREADS: usize = 2;

/// The stream workers' own runtime, so that their threads can run at a lower CPU priority
/// than the rest of the server ([`DeliveryPriority`]).
struct DeliveryRuntime(Option<tokio::runtime::Runtime>);

impl DeliveryRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until dropped")
            .handle()
    }
}

impl Drop for DeliveryRuntime {
    /// Without waiting for the workers: the server may drop it on one of its async threads,
    /// where waiting is not allowed. Each worker stops where it is and resumes from its
    /// cursor next time.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// How often a server looks for streams no server runs.
pub const TAKEOVER_INTERVAL: Duration = Duration::from_secs(2);
/// How often a runner reports its progress and checks its lease and the stream's status (a
/// cancel through another server takes effect within this).
pub const LEASE_INTERVAL: Duration = Duration::from_secs(1);

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
    /// The streams under `<data_dir>/streams`; [`Streams::take_over`] starts them, their
    /// workers at `priority`.
    pub fn open(
        data_dir: &Path,
        runtime: tokio::runtime::Handle,
        priority: DeliveryPriority,
    ) -> std::io::Result<Streams> {
        Streams::with_store(Arc::new(FileStreams::open(data_dir)?), runtime, priority)
    }

    /// The streams kept in PostgreSQL, shared with every server of `store`.
    pub fn open_postgres(
        store: PostgresStore,
        runtime: tokio::runtime::Handle,
        priority: DeliveryPriority,
    ) -> std::io::Result<Streams> {
        Streams::with_store(Arc::new(PgStreams::new(store)), runtime, priority)
    }

    fn with_store(
        store: Arc<dyn StreamStore>,
        runtime: tokio::runtime::Handle,
        priority: DeliveryPriority,
    ) -> std::io::Result<Streams> {
        let delivery = delivery_runtime("quill-stream", DELIVERY_THREADS, priority)?;
        Ok(Streams {
            store,
            runtime,
            delivery: DeliveryRuntime(Some(delivery)),
            running: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    fn running(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The streams of `ledger_name` that have not expired at `now`; expired ones are deleted
    /// on the way.
    fn live_at(&self, ledger_name: &str, now: f64) -> Result<Vec<Stored>, ApiError> {
        let mut streams = self.store.streams(ledger_name).map_err(internal)?;
        streams.retain(|stored| {
            if !stored.spec.is_expired(now) {
                return true;
            }
            let id = &stored.spec.stream_id;
            match self.store.delete(ledger_name, id) {
                Ok(()) => tracing::info!(stream = %id, "journal stream expired"),
                // Hidden all the same; the next look tries again.
                Err(e) => {
                    tracing::warn!(stream = %id, "cannot delete an expired journal stream: {e}")
                }
            }
            false
        });
        Ok(streams)
    }

    fn live(&self, ledger_name: &str) -> Result<Vec<Stored>, ApiError> {
        self.live_at(ledger_name, now_seconds())
    }

    /// The stream `stream_id` of `ledger_name` if it is of `kind`.
    fn stored(&self, kind: Kind, ledger_name: &str, stream_id: &str) -> Result<Stored, ApiError> {
        self.live(ledger_name)?
            .into_iter()
            .find(|s| s.spec.stream_id == stream_id && s.spec.destination.kind() == kind)
            .ok_or_else(|| Self::not_found(ledger_name, stream_id))
    }

    fn progress(&self, spec: &StreamSpec) -> Option<Progress> {
        self.running()
            .get(&(spec.ledger_name.clone(), spec.stream_id.clone()))
            .map(|handle| handle.progress())
    }

    /// Starts every stream that has not ended and that no server runs (at start, all of them;
    /// with PostgreSQL, later also those of a server that died), if this server has its
    /// ledger. Blocks on the store.
    pub fn take_over(&self, registry: &crate::registry::Registry) {
        let outcome = self.claim_and_start(None, |name| registry.get(name).ok().map(|(l, _)| l));
        if let Err(e) = outcome {
            tracing::warn!("cannot look for journal streams to run: {e}");
        }
    }

    /// Calls [`Streams::take_over`] every [`TAKEOVER_INTERVAL`], for ever.
    pub async fn keep_taking_over(streams: Arc<Streams>, registry: Arc<crate::registry::Registry>) {
        crate::pg_lease::keep_polling(TAKEOVER_INTERVAL, "journal stream takeover", move || {
            streams.take_over(&registry)
        })
        .await
    }

    /// Takes the leases the store offers (only `only`'s, if given) and starts their workers.
    fn claim_and_start(
        &self,
        only: Option<(&str, &str)>,
        ledger_of: impl Fn(&str) -> Option<Ledger> + Sync,
    ) -> Result<(), StoreError> {
        postgres_blocking(|| {
            let mut running = self.running();
            let leases = self.store.claim(
                &|ledger, id| running.contains_key(&(ledger.to_owned(), id.to_owned())),
                only,
            )?;
            for lease in leases {
                match ledger_of(&lease.spec().ledger_name) {
                    Some(ledger) => self.start(lease, &ledger, &mut running),
                    // Dropping the lease releases it for a server that has the ledger.
                    None => tracing::debug!(
                        stream = %lease.spec().stream_id,
                        "the journal stream's ledger is not open here"
                    ),
                }
            }
            Ok(())
        })
    }

    fn start(&self, lease: Box<dyn Lease>, ledger: &Ledger, running: &mut Running) {
        let spec = lease.spec();
        let strand_id = ledger.digest().tip.strand_id;
        let config = StreamConfig {
            stream_id: spec.stream_id.clone(),
            stream_arn: spec.arn.clone(),
            inclusive_start_millis: (spec.inclusive_start_time * 1000.0) as i64,
            exclusive_end_millis: spec.exclusive_end_time.map(|t| (t * 1000.0) as i64),
        };
        let (worker, handle) = Worker::new(
            config,
            ledger.clone(),
            lease.cursor(),
            sink_for(spec, &strand_id),
            WorkerOptions::default(),
        );
        let key = (spec.ledger_name.clone(), spec.stream_id.clone());
        tracing::info!(stream = %key.1, ledger = %key.0, "delivering the journal stream");
        running.insert(key.clone(), handle.clone());
        let running = self.running.clone();
        let delivery = self.delivery.handle().clone();
        self.runtime.spawn(async move {
            run_leased(worker, &delivery, handle, lease).await;
            running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }

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
        if !self
            .store
            .insert(&spec, ACTIVE_STREAMS_PER_LEDGER_MAX)
            .map_err(internal)?
        {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Ledger {ledger_name} already has {ACTIVE_STREAMS_PER_LEDGER_MAX} active journal streams"
                ),
            ));
        }
        // Started here at once; should that fail, a server's next takeover starts it.
        if let Err(e) =
            self.claim_and_start(Some((ledger_name, &stream_id)), |_| Some(ledger.clone()))
        {
            tracing::warn!(stream = %stream_id, "cannot start the new journal stream yet: {e}");
        }
        Ok(json!({ "StreamId": stream_id }))
    }

    fn not_found(ledger_name: &str, stream_id: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Journal stream {stream_id} does not exist in ledger {ledger_name}"),
        )
    }

    fn remove_ledger(&self, ledger_name: &str) {
        for ((name, _), handle) in self.running().iter() {
            if name == ledger_name {
                handle.cancel();
            }
        }
        if let Err(e) = self.store.delete_ledger(ledger_name) {
            tracing::warn!(ledger = %ledger_name, "cannot remove a deleted ledger's streams: {e}");
        }
    }

    /// `DescribeJournalKinesisStream` (and its NATS counterpart).
    pub fn describe(
        &self,
        kind: Kind,
        ledger_name: &str,
        stream_id: &str,
    ) -> Result<Value, ApiError> {
        let stored = self.stored(kind, ledger_name, stream_id)?;
        let progress = self.progress(&stored.spec);
        Ok(json!({ "Stream": description(&stored, progress) }))
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
        let mut streams: Vec<Stored> = self.live(ledger_name)?;
        streams.retain(|stored| {
            stored.spec.destination.kind() == kind
                && after
                    .as_ref()
                    .is_none_or(|after| &stored.spec.stream_id > after)
        });
        streams.sort_by(|a, b| a.spec.stream_id.cmp(&b.spec.stream_id));
        let page: Vec<Value> = streams
            .iter()
            .take(max_results)
            .map(|stored| description(stored, self.progress(&stored.spec)))
            .collect();
        let mut reply = json!({ "Streams": page });
        if streams.len() > max_results {
            reply["NextToken"] = json!(format!("next{}", streams[max_results - 1].spec.stream_id));
        }
        Ok(reply)
    }

    /// `CancelJournalKinesisStream` (and its NATS counterpart): only a stream that has not
    /// ended can be cancelled. Its runner, here or on another server, stops when it sees it.
    pub fn cancel(
        &self,
        kind: Kind,
        ledger_name: &str,
        stream_id: &str,
    ) -> Result<Value, ApiError> {
        let stored = self.stored(kind, ledger_name, stream_id)?;
        let canceled = stored.spec.final_status.is_none()
            && self
                .store
                .end(
                    ledger_name,
                    stream_id,
                    StreamStatus::Canceled,
                    now_seconds(),
                )
                .map_err(internal)?;
        if !canceled {
            return Err(ApiError::new(
                ErrorKind::ResourcePreconditionNotMet,
                format!("Journal stream {stream_id} is not active and cannot be canceled"),
            ));
        }
        let key = (ledger_name.to_owned(), stream_id.to_owned());
        if let Some(handle) = self.running().get(&key) {
            handle.cancel();
        }
        Ok(json!({ "StreamId": stream_id }))
    }

    /// ListTagsForResource (GET), TagResource (POST) and UntagResource (DELETE) on a stream's
    /// ARN; changes are stored before the reply.
    pub fn tags(
        &self,
        method: &str,
        ledger_name: &str,
        stream_id: &str,
        query: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let stored = self
            .live(ledger_name)?
            .into_iter()
            .find(|s| s.spec.stream_id == stream_id)
            .ok_or_else(|| Self::not_found(ledger_name, stream_id))?;
        if method == "GET" {
            return Ok(json!({ "Tags": stored.spec.tags }));
        }
        let change = TagChange::of_request(method, query, body)?
            .ok_or_else(|| ApiError::new(ErrorKind::UnknownOperation, "No such tag operation"))?;
        let mut tags = stored.spec.tags;
        change.apply(&mut tags)?;
        if !self
            .store
            .set_tags(ledger_name, stream_id, &tags)
            .map_err(internal)?
        {
            return Err(Self::not_found(ledger_name, stream_id));
        }
        Ok(json!({}))
    }

    /// Prometheus lines for the streams this server runs: lag in blocks and seconds, and
    /// whether each is impaired.
    pub fn render_metrics(&self) -> String {
        let mut text = String::from(
            "# TYPE quill_stream_blocks_behind gauge\n\
             # TYPE quill_stream_seconds_behind gauge\n\
             # TYPE quill_stream_impaired gauge\n",
        );
        for ((ledger, id), handle) in self.running().iter() {
            let progress = handle.progress();
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

/// Runs `worker` on `delivery` while `lease` holds, reporting its progress every
/// [`LEASE_INTERVAL`] (from the caller's runtime, so that a worker starved of CPU by its
/// priority still keeps its lease); records how the stream ended unless the lease was lost
/// (then another server resumes it from the cursor).
async fn run_leased(
    worker: Worker,
    delivery: &tokio::runtime::Handle,
    handle: Arc<StreamHandle>,
    mut lease: Box<dyn Lease>,
) {
    let mut work = delivery.spawn(worker.run());
    let mut keep = Keep::Run;
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            () = tokio::time::sleep(LEASE_INTERVAL), if keep == Keep::Run => {
                let progress = handle.progress();
                keep = postgres_blocking(|| lease.keep(&progress));
                if keep != Keep::Run {
                    handle.cancel();
                }
            }
        }
    };
    let stream_id = lease.spec().stream_id.clone();
    // The database being unreachable ends no stream: whichever server takes the lease once it
    // answers again resumes the stream from its cursor.
    let unavailable = matches!(
        outcome,
        Ok(Err(StreamError::Ledger(LedgerError::Unavailable(_))))
    );
    // Nor does the server shutting the workers' runtime down.
    let shut_down = matches!(&outcome, Err(e) if e.is_cancelled());
    if keep == Keep::Lost || unavailable || shut_down {
        tracing::warn!(stream = %stream_id, "stopped delivering the journal stream (lease lost, database unavailable or shutting down); it resumes from its cursor");
        postgres_blocking(move || drop(lease));
        return;
    }
    let status = match outcome {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => StreamStatus::Failed,
        Err(e) => {
            tracing::error!(stream = %stream_id, "journal stream worker: {e}");
            StreamStatus::Failed
        }
    };
    let last_error = handle.progress().last_error;
    let finished =
        postgres_blocking(move || lease.finish(status, now_seconds(), last_error.as_deref()));
    if let Err(e) = finished {
        tracing::error!(stream = %stream_id, "cannot record the stream's end: {e}");
    }
}

/// A stream as Describe and List show it: `progress` is that of its runner if it runs here.
fn description(stored: &Stored, progress: Option<Progress>) -> Value {
    let spec = &stored.spec;
    let status = spec
        .final_status
        .or(progress.as_ref().map(|p| p.status))
        .or(stored.reported.as_ref().map(|r| r.status))
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
    let error_cause = progress
        .as_ref()
        .map(|p| p.error_cause)
        .or(stored.reported.as_ref().map(|r| r.error_cause))
        .flatten();
    if let Some(cause) =
        error_cause.filter(|_| !status.is_terminal() || status == StreamStatus::Failed)
    {
        description["ErrorCause"] = json!(cause.as_str());
    }
    // Quill extension (SDKs ignore unknown members): how far delivery got; the lag only from
    // the server running the stream.
    if let Some(progress) = progress {
        description["QuillDelivery"] = json!({
            "LastDeliveredBlock": progress.last_delivered_block,
            "BlocksBehind": progress.blocks_behind,
            "SecondsBehind": progress.millis_behind as f64 / 1000.0,
            "LastError": progress.last_error,
        });
    } else if let Some(reported) = &stored.reported {
        description["QuillDelivery"] = json!({
            "LastDeliveredBlock": reported.last_delivered_block,
            "LastError": reported.last_error,
        });
    }
    description
}

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
pub(crate) mod tests {
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

    /// A NATS stream `id` on ledger `shop` (shared by the stream-store tests).
    pub(crate) fn nats_spec(id: &str) -> StreamSpec {
        StreamSpec {
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
            final_status: None,
            end_time: None,
        }
    }

    fn stored_stream(dir: &Path, id: &str, status: Option<StreamStatus>, end_time: Option<f64>) {
        let spec = StreamSpec {
            final_status: status,
            end_time,
            ..nats_spec(id)
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

        let streams = Streams::open(
            data.path(),
            runtime.handle().clone(),
            DeliveryPriority::Background,
        )
        .unwrap();
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
        let later: Vec<String> = streams
            .live_at("shop", now + day + 1.0)
            .unwrap()
            .into_iter()
            .map(|s| s.spec.stream_id)
            .collect();
        assert_eq!(later, std::slice::from_ref(&running));
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
