//! Journal exports on the control plane: `ExportJournalToS3`, `DescribeJournalS3Export`,
//! `ListJournalS3Exports`, `ListJournalS3ExportsForLedger`.
//!
//! An accepted export writes its started manifest before the request returns (as QLDB does),
//! then runs on its own thread, reading blocks through the ledger's read API while commits go
//! on. Its record (see `export_store.rs`: files beside the ledger with the embedded backend,
//! `quill_exports` rows shared by every server with PostgreSQL) is `IN_PROGRESS` until the
//! completed manifest is written, then `COMPLETED`; a failure makes it `CANCELLED` with the
//! reason. Exactly one server runs an export in progress, under its lease. At start, and with
//! PostgreSQL every [`TAKEOVER_INTERVAL`] after, a server runs again every export in progress
//! that no server runs (a crash, or the death of the server running it, cut it short): it
//! rewrites the same objects. It cancels the export with the reason when it cannot.
//!
//! Objects go to S3 or any S3-compatible endpoint, configured like the AWS SDKs
//! (`quill_export::s3`). `RoleArn` is validated and recorded, never assumed: Quill has no IAM,
//! the server's own AWS credentials write the objects.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};

use quill_export::engine::{check_time_range, new_export_id};
use quill_export::record::{ExportRecord, ExportStatus};
use quill_export::s3::{S3Settings, S3Sink};
use quill_export::time::{now_millis, parse_time};
use quill_export::{
    run_export, write_started_manifest, ExportError, ExportOptions, ObjectSink, OutputFormat,
};
use quill_ledger::{Ledger, LedgerError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::control::{
    after_token, encode_next_token, max_results, parse_body, query_pairs, Context,
};
use crate::error::{ApiError, ErrorKind};
use crate::export_store::{Admission, ExportLease, ExportRecords, FileExports, PgExports};
use crate::registry::Registry;
use crate::streams::TAKEOVER_INTERVAL;

/// QLDB's limit of concurrent exports per ledger.
const EXPORTS_IN_PROGRESS_MAX: usize = 2;

/// The exports this server runs, by (ledger, export id).
type Running = BTreeSet<(String, String)>;

/// The journal exports of every ledger, and those this server runs.
pub struct Exports {
    store: Box<dyn ExportRecords>,
    running: Arc<Mutex<Running>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptionConfiguration {
    object_encryption_type: Option<String>,
    kms_key_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3ExportConfiguration {
    bucket: Option<String>,
    prefix: Option<String>,
    encryption_configuration: Option<EncryptionConfiguration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExportJournalToS3Request {
    inclusive_start_time: Option<Value>,
    exclusive_end_time: Option<Value>,
    s3_export_configuration: Option<S3ExportConfiguration>,
    role_arn: Option<String>,
    output_format: Option<String>,
}

fn invalid(error: ExportError) -> ApiError {
    ApiError::invalid_parameter(error.to_string())
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid_parameter(format!("{name} is required")))
}

/// A request timestamp: epoch seconds (what the SDKs send) or ISO 8601 text.
fn request_time(value: Value, name: &str) -> Result<i64, ApiError> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && s.abs() < 1e14)
            .map(|s| (s * 1000.0).round() as i64)
            .ok_or_else(|| ApiError::invalid_parameter(format!("{name} is out of range"))),
        Value::String(text) => parse_time(&text).map_err(invalid),
        _ => Err(ApiError::invalid_parameter(format!(
            "{name} must be a timestamp"
        ))),
    }
}

fn check_length(value: &str, name: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if (min..=max).contains(&value.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "{name} must be {min}-{max} characters"
        )))
    }
}

/// The bucket name rules of the API model (3-255 of `[A-Za-z0-9-_.]`) and S3's own: lower-case
/// letters, digits, `.` and `-`, starting and ending with a letter or digit, 3-63 characters.
fn check_bucket(bucket: &str) -> Result<(), ApiError> {
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && ends_ok(bucket.chars().next())
        && ends_ok(bucket.chars().last())
        && !bucket.contains("..");
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "Invalid S3 bucket name {bucket:?}: use 3-63 lower-case letters, digits, '.' and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

fn check_prefix(prefix: &str) -> Result<(), ApiError> {
    check_length(prefix, "Prefix", 0, 128)?;
    if prefix.chars().any(char::is_control) {
        return Err(ApiError::invalid_parameter(
            "Prefix must not contain control characters",
        ));
    }
    Ok(())
}

fn check_export_id(export_id: &str) -> Result<(), ApiError> {
    if export_id.len() == 22 && export_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(
            "ExportId must be 22 characters of [A-Za-z0-9]",
        ))
    }
}

/// The S3 destination of an export.
fn open_sink(record: &ExportRecord) -> Result<Box<dyn ObjectSink>, ExportError> {
    let settings = S3Settings::from_environment()?;
    let sink = S3Sink::new(
        &record.bucket,
        &record.object_encryption_type,
        record.kms_key_arn.as_deref(),
        &settings,
    )?;
    Ok(Box::new(sink))
}

/// An export's objects go through this: before each, it checks that the export's lease
/// still holds, so a server that lost it (another took the export over) stops writing.
struct Fenced<'a> {
    sink: &'a dyn ObjectSink,
    lease: Mutex<Box<dyn ExportLease>>,
    lost: AtomicBool,
}

impl ObjectSink for Fenced<'_> {
    fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> quill_export::Result<()> {
        let holds = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .holds();
        if !holds {
            self.lost.store(true, Ordering::Relaxed);
            return Err(ExportError::Write {
                key: key.to_owned(),
                detail: "this server no longer runs the export".into(),
            });
        }
        self.sink.put(key, body, content_type)
    }

    fn location(&self) -> String {
        self.sink.location()
    }
}

/// Records how an export ended, under its lease.
fn record_outcome(lease: Box<dyn ExportLease>, outcome: &ExportRecord) {
    match lease.finish(outcome) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            export = %outcome.export_id,
            "the export was taken over by another server: its outcome here is not recorded"
        ),
        Err(error) => {
            tracing::error!(export = %outcome.export_id, %error, "cannot record the export's status")
        }
    }
}

fn cancel(lease: Box<dyn ExportLease>, reason: String) {
    let mut record = lease.record().clone();
    tracing::error!(export = %record.export_id, %reason, "export cancelled");
    record.status = ExportStatus::Cancelled;
    record.cancellation_reason = Some(reason);
    record_outcome(lease, &record);
}

/// Writes the export's data objects (and first its started manifest, if `started` is false)
/// and completed manifest, then records the outcome, unless the lease was lost or the
/// database became unreachable: the export then stays in progress for the server that takes
/// it over next.
fn run(ledger: &Ledger, lease: Box<dyn ExportLease>, sink: &dyn ObjectSink, started: bool) {
    let mut record = lease.record().clone();
    let fenced = Fenced {
        sink,
        lease: Mutex::new(lease),
        lost: AtomicBool::new(false),
    };
    let outcome = record.spec().and_then(|spec| {
        if !started {
            write_started_manifest(&spec, &fenced)?;
        }
        run_export(
            ledger,
            &spec,
            ExportOptions::default(),
            &fenced,
            &mut |_, _| {},
        )
    });
    let Fenced { lease, lost, .. } = fenced;
    let lease = lease.into_inner().unwrap_or_else(PoisonError::into_inner);
    match outcome {
        Ok(summary) => {
            tracing::info!(export = %record.export_id, blocks = summary.blocks, "export completed");
            record.status = ExportStatus::Completed;
            record.blocks_exported = Some(summary.blocks);
            record_outcome(lease, &record);
        }
        Err(ExportError::Ledger(LedgerError::Unavailable(reason))) => {
            tracing::warn!(export = %record.export_id, %reason, "export interrupted: the database is unavailable");
        }
        Err(_) if lost.into_inner() => {
            tracing::warn!(export = %record.export_id, "stopped running the export: lease lost");
        }
        Err(error) => cancel(lease, error.to_string()),
    }
}

/// [`run`], then forgets the export as one this server runs (`running` holds it from before
/// the lease reached this thread).
fn run_here(
    running: &Mutex<Running>,
    ledger: &Ledger,
    lease: Box<dyn ExportLease>,
    sink: &dyn ObjectSink,
    started: bool,
) {
    let key = key_of(lease.record());
    run(ledger, lease, sink, started);
    running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key);
}

fn key_of(record: &ExportRecord) -> (String, String) {
    (record.ledger_name.clone(), record.export_id.clone())
}

impl Exports {
    /// The export records of `registry`'s backend.
    pub fn open(registry: &Registry) -> Exports {
        let store: Box<dyn ExportRecords> = match registry.postgres() {
            Some(store) => Box::new(PgExports::new(store.clone())),
            None => Box::new(FileExports::new(registry.ledgers_dir().to_owned())),
        };
        Exports {
            store,
            running: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    fn running(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `lease`'s export on a thread of its own, as one this server runs until it ends.
    fn spawn(
        &self,
        ledger: Ledger,
        lease: Box<dyn ExportLease>,
        sink: Box<dyn ObjectSink>,
        started: bool,
    ) {
        let key = key_of(lease.record());
        self.running().insert(key.clone());
        let running = self.running.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("export-{}", key.1))
            .spawn(move || run_here(&running, &ledger, lease, sink.as_ref(), started));
        if let Err(error) = spawned {
            // The lease went with the closure: a later look takes the export again.
            tracing::error!(%error, "cannot start an export thread");
            self.running().remove(&key);
        }
    }

    /// Runs every export in progress that no server runs (at start, all of them; with
    /// PostgreSQL, later also those of a server that died), or cancels it with the reason
    /// when its ledger or destination cannot be opened. Blocks on the store.
    pub fn take_over(&self, registry: &Registry) {
        let leases = {
            let mut running = self.running();
            let claimed = self
                .store
                .claim(&|ledger, id| running.contains(&(ledger.to_owned(), id.to_owned())));
            match claimed {
                Ok(leases) => {
                    // Marked as run here before the lock goes, so no other look claims them.
                    running.extend(leases.iter().map(|lease| key_of(lease.record())));
                    leases
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot look for journal exports to run");
                    return;
                }
            }
        };
        for lease in leases {
            let record = lease.record();
            let opened = registry
                .get(&record.ledger_name)
                .map_err(|e| e.message.clone())
                .and_then(|(ledger, _)| {
                    open_sink(record)
                        .map(|sink| (ledger, sink))
                        .map_err(|e| e.to_string())
                });
            match opened {
                Ok((ledger, sink)) => {
                    tracing::info!(export = %record.export_id, "resuming an interrupted export");
                    // The started manifest again too: rewriting the same objects is harmless,
                    // and the export then stands whole whatever the crash cut.
                    self.spawn(ledger, lease, sink, false);
                }
                Err(reason) => {
                    let key = key_of(record);
                    cancel(
                        lease,
                        format!("interrupted by a restart and not resumable: {reason}"),
                    );
                    self.running().remove(&key);
                }
            }
        }
    }

    /// Calls [`Exports::take_over`] every [`TAKEOVER_INTERVAL`], for ever (with PostgreSQL,
    /// where other servers may die with exports in progress).
    pub async fn keep_taking_over(exports: Arc<Exports>, registry: Arc<Registry>) {
        crate::pg_lease::keep_polling(TAKEOVER_INTERVAL, "journal export takeover", move || {
            exports.take_over(&registry)
        })
        .await
    }
}

/// `POST /ledgers/{name}/journal-s3-exports`.
pub fn export_journal_to_s3(
    context: &Context<'_>,
    name: &str,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let request: ExportJournalToS3Request = parse_body(body)?;
    let start = request_time(
        required(request.inclusive_start_time, "InclusiveStartTime")?,
        "InclusiveStartTime",
    )?;
    let end = request_time(
        required(request.exclusive_end_time, "ExclusiveEndTime")?,
        "ExclusiveEndTime",
    )?;
    let s3 = required(request.s3_export_configuration, "S3ExportConfiguration")?;
    let bucket = required(s3.bucket, "Bucket")?;
    check_bucket(&bucket)?;
    let prefix = required(s3.prefix, "Prefix")?;
    check_prefix(&prefix)?;
    let encryption = required(s3.encryption_configuration, "EncryptionConfiguration")?;
    let encryption_type = required(encryption.object_encryption_type, "ObjectEncryptionType")?;
    match (encryption_type.as_str(), &encryption.kms_key_arn) {
        ("SSE_KMS", None) => {
            return Err(ApiError::invalid_parameter(
                "KmsKeyArn is required when ObjectEncryptionType is SSE_KMS",
            ))
        }
        ("SSE_KMS" | "SSE_S3" | "NO_ENCRYPTION", _) => {}
        (other, _) => {
            return Err(ApiError::invalid_parameter(format!(
                "ObjectEncryptionType {other:?} is not SSE_KMS, SSE_S3 or NO_ENCRYPTION"
            )))
        }
    }
    if let Some(key) = &encryption.kms_key_arn {
        check_length(key, "KmsKeyArn", 20, 1600)?;
    }
    let role_arn = required(request.role_arn, "RoleArn")?;
    check_length(&role_arn, "RoleArn", 20, 1600)?;
    let output_format = request
        .output_format
        .map(|f| OutputFormat::parse(&f).map(|f| f.name().to_owned()))
        .transpose()
        .map_err(invalid)?;

    let (ledger, _) = context.registry.get(name)?;
    let start = check_time_range(&ledger, start, end, now_millis()).map_err(|e| match e {
        ExportError::InvalidInput(message) => ApiError::invalid_parameter(message),
        other => ApiError::internal(other.to_string()),
    })?;
    let record = ExportRecord {
        ledger_name: name.to_owned(),
        export_id: new_export_id(),
        creation_time_millis: now_millis(),
        status: ExportStatus::InProgress,
        inclusive_start_millis: start,
        exclusive_end_millis: end,
        bucket,
        prefix,
        object_encryption_type: encryption_type,
        kms_key_arn: encryption.kms_key_arn,
        role_arn,
        output_format,
        cancellation_reason: None,
        blocks_exported: None,
    };

    // The S3 client blocks on its own runtime, which cannot run on this (runtime-owned)
    // thread: once the store has taken a slot, the export's thread opens the sink, writes the
    // started manifest and reports; it then waits for the lease (the record saved) to go on.
    let mut go = None;
    let mut start = || -> Result<(), ExportError> {
        let (started_tx, started_rx) = mpsc::sync_channel::<Result<(), ExportError>>(1);
        let (go_tx, go_rx) = mpsc::sync_channel::<Box<dyn ExportLease>>(1);
        let (job_record, job_ledger) = (record.clone(), ledger.clone());
        let running = context.exports.running.clone();
        std::thread::Builder::new()
            .name(format!("export-{}", record.export_id))
            .spawn(move || {
                let opened = job_record.spec().and_then(|spec| {
                    let sink = open_sink(&job_record)?;
                    write_started_manifest(&spec, sink.as_ref())?;
                    Ok(sink)
                });
                let sink = match opened {
                    Ok(sink) => {
                        let _ = started_tx.send(Ok(()));
                        sink
                    }
                    Err(error) => {
                        let _ = started_tx.send(Err(error));
                        return;
                    }
                };
                if let Ok(lease) = go_rx.recv() {
                    run_here(&running, &job_ledger, lease, sink.as_ref(), true);
                }
            })
            .map_err(|e| {
                ExportError::Io(std::io::Error::other(format!(
                    "cannot start the export: {e}"
                )))
            })?;
        go = Some(go_tx);
        started_rx.recv().unwrap_or_else(|_| {
            Err(ExportError::Io(std::io::Error::other(
                "the export thread stopped",
            )))
        })
    };
    let admitted = context
        .exports
        .store
        .admit(&record, EXPORTS_IN_PROGRESS_MAX, &mut start)
        .map_err(|e| ApiError::internal(format!("cannot record the export: {e}")))?;
    match admitted {
        Admission::LimitReached => {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                "Ledger {name} already has {EXPORTS_IN_PROGRESS_MAX} journal exports in progress"
            ),
            ))
        }
        Admission::Refused(error) => {
            return Err(ApiError::invalid_parameter(format!(
                "Cannot write to S3 bucket {}: {error}",
                record.bucket
            )))
        }
        Admission::Admitted(lease) => {
            context.exports.running().insert(key_of(&record));
            if let Some(go) = go {
                // The thread waits for it: it cannot have gone.
                let _ = go.send(lease);
            }
        }
    }
    Ok((200, json!({ "ExportId": record.export_id })))
}

fn seconds(millis: i64) -> Value {
    json!(millis as f64 / 1000.0)
}

fn description(record: &ExportRecord) -> Value {
    let mut encryption = json!({"ObjectEncryptionType": record.object_encryption_type});
    if let Some(key) = &record.kms_key_arn {
        encryption["KmsKeyArn"] = json!(key);
    }
    let mut description = json!({
        "LedgerName": record.ledger_name,
        "ExportId": record.export_id,
        "ExportCreationTime": seconds(record.creation_time_millis),
        "Status": record.status.name(),
        "InclusiveStartTime": seconds(record.inclusive_start_millis),
        "ExclusiveEndTime": seconds(record.exclusive_end_millis),
        "S3ExportConfiguration": {
            "Bucket": record.bucket,
            "Prefix": record.prefix,
            "EncryptionConfiguration": encryption,
        },
        "RoleArn": record.role_arn,
    });
    if let Some(format) = &record.output_format {
        description["OutputFormat"] = json!(format);
    }
    description
}

fn ledger_records(context: &Context<'_>, name: &str) -> Result<Vec<ExportRecord>, ApiError> {
    context.registry.describe(name)?;
    context
        .exports
        .store
        .records(name)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /ledgers/{name}/journal-s3-exports/{exportId}`.
pub fn describe_journal_s3_export(
    context: &Context<'_>,
    name: &str,
    export_id: &str,
) -> Result<(u16, Value), ApiError> {
    check_export_id(export_id)?;
    let record = ledger_records(context, name)?
        .into_iter()
        .find(|r| r.export_id == export_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("Export {export_id} of ledger {name} does not exist"),
            )
        })?;
    Ok((200, json!({ "ExportDescription": description(&record) })))
}

/// The order exports are listed in, as a comparable key (also the NextToken's content).
fn list_key(record: &ExportRecord) -> String {
    format!(
        "{:020}/{}/{}",
        record.creation_time_millis, record.ledger_name, record.export_id
    )
}

fn page(records: Vec<ExportRecord>, query: &str) -> Result<(u16, Value), ApiError> {
    let pairs = query_pairs(query);
    let (max_results, after) = (max_results(&pairs)?, after_token(&pairs)?);
    let mut records: Vec<(String, ExportRecord)> = records
        .into_iter()
        .map(|r| (list_key(&r), r))
        .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let shown: Vec<Value> = records
        .iter()
        .take(max_results)
        .map(|(_, r)| description(r))
        .collect();
    let mut reply = json!({ "JournalS3Exports": shown });
    if records.len() > max_results {
        reply["NextToken"] = json!(encode_next_token(&records[max_results - 1].0));
    }
    Ok((200, reply))
}

/// `GET /ledgers/{name}/journal-s3-exports`.
pub fn list_journal_s3_exports_for_ledger(
    context: &Context<'_>,
    name: &str,
    query: &str,
) -> Result<(u16, Value), ApiError> {
    page(ledger_records(context, name)?, query)
}

/// `GET /journal-s3-exports`.
pub fn list_journal_s3_exports(
    context: &Context<'_>,
    query: &str,
) -> Result<(u16, Value), ApiError> {
    let mut records = Vec::new();
    for ledger in context.registry.list() {
        records.extend(ledger_records(context, &ledger.name)?);
    }
    page(records, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket.v2", "0bucket9"] {
            assert!(check_bucket(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Bucket",
            "-abc",
            "abc-",
            "a..b",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_times_are_epoch_seconds_or_iso_text() {
        assert_eq!(request_time(json!(1.5), "T").unwrap(), 1500);
        assert_eq!(
            request_time(json!("1970-01-01T00:00:02Z"), "T").unwrap(),
            2000
        );
        assert!(request_time(json!(true), "T").is_err());
        assert!(request_time(json!(1e300), "T").is_err());
    }

    #[test]
    fn export_ids_are_22_base62_characters() {
        assert!(check_export_id(&new_export_id()).is_ok());
        assert!(check_export_id("short").is_err());
        assert!(check_export_id("../../../../etc/passwd1").is_err());
    }
}
