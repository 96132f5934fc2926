//! Where journal streams are kept, and who delivers each: [`StreamStore`], with one
//! implementation per backend, so `streams.rs` (validation, QLDB statuses, expiry, the API)
//! is one code path for both.
//!
//! - [`FileStreams`] (embedded backend): `<data-dir>/streams/<ledger>/<streamId>/` holds
//!   `stream.json` (the definition and, once it ended, its final status and end time) and
//!   `cursor.json`. One server owns the directory, so it runs every stream.
//! - [`PgStreams`] (`--storage postgres://`): a row of `quill_streams` per stream (schema
//!   migration 2 in quill-ledger's `journal/postgres.rs`), shared by every server. A server
//!   delivers a stream only while it holds the stream's lease: a session-level advisory lock
//!   `(LOCK_CLASS, lock_id)` on a connection of its own, which PostgreSQL releases when that
//!   connection drops, so the lease of a server that died is free at once. Taking a lease
//!   bumps the row's `runner_epoch`; the runner's cursor, status and end writes require its
//!   epoch, so a runner that lost its lease (its connection dropped while it kept delivering)
//!   cannot move the cursor of the server that took over: at worst blocks are sent twice,
//!   never skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::UNIX_EPOCH;

use quill_ledger::postgres::Client;
use quill_ledger::storage::Storage;
use quill_ledger::{postgres_blocking, postgres_error, LedgerError, PostgresStore};
use quill_stream::{
    Cursor, ErrorCause, Position, PositionStore, Progress, StreamError, StreamStatus,
};

use crate::pg_lease::{lock_is_free, lock_on_own_connection};
use crate::streams::StreamSpec;

/// First key of every stream lease's advisory lock (the second is the row's `lock_id`), apart
/// from the schema migration's lock.
const LOCK_CLASS: i32 = 0x5153_5452; // "QSTR"
/// First key of the transaction-scoped lock that admits a new stream of a ledger (the second
/// is a hash of the ledger's name): a class of its own, so a hash can never equal a lease's
/// `lock_id` and make an admission wait on a running stream.
const ADMISSION_CLASS: i32 = 0x5153_5441; // "QSTA"

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Database(#[from] LedgerError),
    #[error("{0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A stream as a store holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub spec: StreamSpec,
    /// What the server delivering it last reported (PostgreSQL keeps it for every server to
    /// describe; the file store has only the local runner's live progress).
    pub reported: Option<Reported>,
}

/// A runner's last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub status: StreamStatus,
    pub error_cause: Option<ErrorCause>,
    pub last_error: Option<String>,
    pub last_delivered_block: Option<u64>,
}

/// What a runner does after reporting to its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Deliver on.
    Run,
    /// The stream ended elsewhere (cancelled through another server): stop.
    Ended,
    /// The lease is gone (connection lost, stream deleted, another server took over): stop
    /// without recording an end.
    Lost,
}

/// The right to deliver one stream.
pub trait Lease: Send {
    fn spec(&self) -> &StreamSpec;
    /// The stream's cursor, written only while this lease holds.
    fn cursor(&self) -> Cursor;
    /// Reports the runner's progress (called every few seconds) and says whether to go on.
    fn keep(&mut self, progress: &Progress) -> Keep;
    /// Records how the stream ended, unless it already ended; releases the lease.
    fn finish(
        self: Box<Self>,
        status: StreamStatus,
        end_time: f64,
        last_error: Option<&str>,
    ) -> StoreResult<()>;
}

/// Journal streams of every ledger, kept durably.
pub trait StreamStore: Send + Sync {
    /// Every stream of `ledger`, by stream id.
    fn streams(&self, ledger: &str) -> StoreResult<Vec<Stored>>;
    /// Adds a stream unless `ledger` already has `active_max` streams that have not ended;
    /// `false` then.
    fn insert(&self, spec: &StreamSpec, active_max: usize) -> StoreResult<bool>;
    /// `false` if there is no such stream.
    fn set_tags(
        &self,
        ledger: &str,
        stream_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> StoreResult<bool>;
    /// Ends a stream that has not ended; `false` if it had (or does not exist).
    fn end(
        &self,
        ledger: &str,
        stream_id: &str,
        status: StreamStatus,
        end_time: f64,
    ) -> StoreResult<bool>;
    fn delete(&self, ledger: &str, stream_id: &str) -> StoreResult<()>;
    fn delete_ledger(&self, ledger: &str) -> StoreResult<()>;
    /// Leases on streams that have not ended and that no runner holds, except those `skip`
    /// names (run here already); only `(ledger, stream_id)` if `only` is given.
    fn claim(
        &self,
        skip: &dyn Fn(&str, &str) -> bool,
        only: Option<(&str, &str)>,
    ) -> StoreResult<Vec<Box<dyn Lease>>>;
}

/// The file store.
#[derive(Clone)]
pub struct FileStreams {
    inner: Arc<FileInner>,
}

struct FileInner {
    root: PathBuf,
    /// Every `stream.json`, read at start and written through.
    specs: Mutex<BTreeMap<(String, String), StreamSpec>>,
}

impl FileStreams {
    /// Reads `<data_dir>/streams`.
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<FileStreams> {
        let root = data_dir.join("streams");
        std::fs::create_dir_all(&root)?;
        let mut specs = BTreeMap::new();
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
                specs.insert((spec.ledger_name.clone(), spec.stream_id.clone()), spec);
            }
        }
        Ok(FileStreams {
            inner: Arc::new(FileInner {
                root,
                specs: Mutex::new(specs),
            }),
        })
    }

    fn dir(&self, ledger: &str, stream_id: &str) -> PathBuf {
        self.inner.root.join(ledger).join(stream_id)
    }

    fn specs(&self) -> MutexGuard<'_, BTreeMap<(String, String), StreamSpec>> {
        self.inner
            .specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, spec: &StreamSpec) -> StoreResult<()> {
        let dir = self.dir(&spec.ledger_name, &spec.stream_id);
        std::fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec(spec).expect("a spec serializes");
        Ok(Storage::Os.write_atomically(&dir.join("stream.json"), &bytes)?)
    }

    /// Applies `change` to a stored spec and writes it; `false` if there is no such stream.
    /// The change stays in memory even if the write fails (the next start reads the file).
    fn update(
        &self,
        ledger: &str,
        stream_id: &str,
        change: impl FnOnce(&mut StreamSpec) -> bool,
    ) -> StoreResult<bool> {
        let mut specs = self.specs();
        let Some(spec) = specs.get_mut(&(ledger.to_owned(), stream_id.to_owned())) else {
            return Ok(false);
        };
        if !change(spec) {
            return Ok(false);
        }
        self.write(spec)?;
        Ok(true)
    }
}

impl StreamStore for FileStreams {
    fn streams(&self, ledger: &str) -> StoreResult<Vec<Stored>> {
        Ok(self
            .specs()
            .values()
            .filter(|spec| spec.ledger_name == ledger)
            .map(|spec| Stored {
                spec: spec.clone(),
                reported: None,
            })
            .collect())
    }

    fn insert(&self, spec: &StreamSpec, active_max: usize) -> StoreResult<bool> {
        // Held from the count to the insert, so two requests cannot both take the last slot.
        let mut specs = self.specs();
        let active = specs
            .values()
            .filter(|s| s.ledger_name == spec.ledger_name && s.final_status.is_none())
            .count();
        if active >= active_max {
            return Ok(false);
        }
        self.write(spec)?;
        specs.insert(
            (spec.ledger_name.clone(), spec.stream_id.clone()),
            spec.clone(),
        );
        Ok(true)
    }

    fn set_tags(
        &self,
        ledger: &str,
        stream_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> StoreResult<bool> {
        self.update(ledger, stream_id, |spec| {
            spec.tags = tags.clone();
            true
        })
    }

    fn end(
        &self,
        ledger: &str,
        stream_id: &str,
        status: StreamStatus,
        end_time: f64,
    ) -> StoreResult<bool> {
        self.update(ledger, stream_id, |spec| {
            if spec.final_status.is_some() {
                return false;
            }
            spec.final_status = Some(status);
            spec.end_time = Some(end_time);
            true
        })
    }

    fn delete(&self, ledger: &str, stream_id: &str) -> StoreResult<()> {
        self.specs()
            .remove(&(ledger.to_owned(), stream_id.to_owned()));
        remove_dir(&self.dir(ledger, stream_id))
    }

    fn delete_ledger(&self, ledger: &str) -> StoreResult<()> {
        self.specs().retain(|(name, _), _| name != ledger);
        remove_dir(&self.inner.root.join(ledger))
    }

    fn claim(
        &self,
        skip: &dyn Fn(&str, &str) -> bool,
        only: Option<(&str, &str)>,
    ) -> StoreResult<Vec<Box<dyn Lease>>> {
        Ok(self
            .specs()
            .values()
            .filter(|spec| {
                spec.final_status.is_none()
                    && !skip(&spec.ledger_name, &spec.stream_id)
                    && only.is_none_or(|(ledger, id)| {
                        spec.ledger_name == ledger && spec.stream_id == id
                    })
            })
            .map(|spec| {
                Box::new(FileLease {
                    store: self.clone(),
                    spec: spec.clone(),
                }) as Box<dyn Lease>
            })
            .collect())
    }
}

fn remove_dir(dir: &std::path::Path) -> StoreResult<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The only server of a data directory runs all its streams: its lease never ends early.
struct FileLease {
    store: FileStreams,
    spec: StreamSpec,
}

impl Lease for FileLease {
    fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    fn cursor(&self) -> Cursor {
        Cursor::new(
            self.store
                .dir(&self.spec.ledger_name, &self.spec.stream_id)
                .join("cursor.json"),
        )
    }

    fn keep(&mut self, _: &Progress) -> Keep {
        Keep::Run
    }

    fn finish(
        self: Box<Self>,
        status: StreamStatus,
        end_time: f64,
        _: Option<&str>,
    ) -> StoreResult<()> {
        self.store
            .end(
                &self.spec.ledger_name,
                &self.spec.stream_id,
                status,
                end_time,
            )
            .map(drop)
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStreams {
    store: PostgresStore,
}

/// The columns [`stored_row`] reads, in its order.
const STORED_COLUMNS: &str =
    "spec::text, tags::text, final_status, end_time, status, error_cause, last_error, cursor::text";
const STORED_COLUMN_COUNT: usize = 8;

impl PgStreams {
    pub fn new(store: PostgresStore) -> PgStreams {
        PgStreams { store }
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("quill_streams.{what}: {e}"))
}

fn status_of(text: &str) -> StoreResult<StreamStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| corrupt("status", e))
}

fn status_text(status: StreamStatus) -> &'static str {
    status.as_str()
}

fn cause_of(text: &str) -> StoreResult<ErrorCause> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| corrupt("error_cause", e))
}

fn position_of(text: Option<String>) -> StoreResult<Position> {
    text.map_or(Ok(Position::default()), |text| {
        serde_json::from_str(&text).map_err(|e| corrupt("cursor", e))
    })
}

/// A row read with [`STORED_COLUMNS`]: the definition with the mutable columns applied.
fn stored_row(row: &quill_ledger::postgres::Row) -> StoreResult<Stored> {
    let mut spec: StreamSpec =
        serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| corrupt("spec", e))?;
    spec.tags = serde_json::from_str(row.get::<_, &str>(1)).map_err(|e| corrupt("tags", e))?;
    spec.final_status = row.get::<_, Option<&str>>(2).map(status_of).transpose()?;
    spec.end_time = row.get(3);
    let reported = Reported {
        status: status_of(row.get(4))?,
        error_cause: row.get::<_, Option<&str>>(5).map(cause_of).transpose()?,
        last_error: row.get(6),
        last_delivered_block: position_of(row.get(7))?.last_block,
    };
    Ok(Stored {
        spec,
        reported: Some(reported),
    })
}

impl StreamStore for PgStreams {
    fn streams(&self, ledger: &str) -> StoreResult<Vec<Stored>> {
        let rows = self.store.with_client(|client| {
            client
                .query(
                    &format!(
                        "SELECT {STORED_COLUMNS} FROM quill_streams WHERE ledger = $1 \
                         ORDER BY stream_id"
                    ),
                    &[&ledger],
                )
                .map_err(postgres_error)
        })?;
        rows.iter().map(stored_row).collect()
    }

    fn insert(&self, spec: &StreamSpec, active_max: usize) -> StoreResult<bool> {
        let spec_json = serde_json::to_string(spec).expect("a spec serializes");
        let tags = serde_json::to_string(&spec.tags).expect("tags serialize");
        let active_max = active_max as i64;
        let inserted = self.store.with_client(|client| {
            let mut tx = client.transaction().map_err(postgres_error)?;
            // Serialises inserts into one ledger across servers, so two requests cannot both
            // take the last slot (the ledger's row lock is the committers', not taken here).
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&ADMISSION_CLASS, &spec.ledger_name],
            )
            .map_err(postgres_error)?;
            let active: i64 = tx
                .query_one(
                    "SELECT count(*) FROM quill_streams \
                     WHERE ledger = $1 AND final_status IS NULL",
                    &[&spec.ledger_name],
                )
                .map_err(postgres_error)?
                .get(0);
            if active >= active_max {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO quill_streams (ledger, stream_id, spec, tags) \
                 VALUES ($1, $2, $3::text::jsonb, $4::text::jsonb)",
                &[&spec.ledger_name, &spec.stream_id, &spec_json, &tags],
            )
            .map_err(postgres_error)?;
            tx.commit().map_err(postgres_error)?;
            Ok(true)
        })?;
        Ok(inserted)
    }

    fn set_tags(
        &self,
        ledger: &str,
        stream_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> StoreResult<bool> {
        let tags = serde_json::to_string(tags).expect("tags serialize");
        let updated = self.store.with_client(|client| {
            client
                .execute(
                    "UPDATE quill_streams SET tags = $3::text::jsonb \
                     WHERE ledger = $1 AND stream_id = $2",
                    &[&ledger, &stream_id, &tags],
                )
                .map_err(postgres_error)
        })?;
        Ok(updated == 1)
    }

    fn end(
        &self,
        ledger: &str,
        stream_id: &str,
        status: StreamStatus,
        end_time: f64,
    ) -> StoreResult<bool> {
        let status = status_text(status);
        let updated = self.store.with_client(|client| {
            client
                .execute(
                    "UPDATE quill_streams SET final_status = $3, status = $3, end_time = $4 \
                     WHERE ledger = $1 AND stream_id = $2 AND final_status IS NULL",
                    &[&ledger, &stream_id, &status, &end_time],
                )
                .map_err(postgres_error)
        })?;
        Ok(updated == 1)
    }

    fn delete(&self, ledger: &str, stream_id: &str) -> StoreResult<()> {
        self.store.with_client(|client| {
            client
                .execute(
                    "DELETE FROM quill_streams WHERE ledger = $1 AND stream_id = $2",
                    &[&ledger, &stream_id],
                )
                .map_err(postgres_error)
        })?;
        Ok(())
    }

    fn delete_ledger(&self, ledger: &str) -> StoreResult<()> {
        self.store.with_client(|client| {
            client
                .execute("DELETE FROM quill_streams WHERE ledger = $1", &[&ledger])
                .map_err(postgres_error)
        })?;
        Ok(())
    }

    fn claim(
        &self,
        skip: &dyn Fn(&str, &str) -> bool,
        only: Option<(&str, &str)>,
    ) -> StoreResult<Vec<Box<dyn Lease>>> {
        let (only_ledger, only_id) = only.unzip();
        // Streams whose lock no session holds: only those are worth a connection.
        let candidates = self.store.with_client(|client| {
            client
                .query(
                    &format!(
                        "SELECT s.ledger, s.stream_id, s.lock_id FROM quill_streams s \
                         WHERE s.final_status IS NULL \
                           AND ($2::text IS NULL OR (s.ledger = $2 AND s.stream_id = $3)) \
                           AND {}",
                        lock_is_free("$1", "s.lock_id")
                    ),
                    &[&LOCK_CLASS, &only_ledger, &only_id],
                )
                .map_err(postgres_error)
        })?;
        let mut leases: Vec<Box<dyn Lease>> = Vec::new();
        for row in candidates {
            let (ledger, stream_id, lock_id): (String, String, i32) =
                (row.get(0), row.get(1), row.get(2));
            if skip(&ledger, &stream_id) {
                continue;
            }
            if let Some(lease) = self.take(&ledger, &stream_id, lock_id)? {
                leases.push(Box::new(lease));
            }
        }
        Ok(leases)
    }
}

impl PgStreams {
    /// Takes the lease of one stream on a new connection: `None` if another server holds it
    /// or the stream ended meanwhile.
    fn take(&self, ledger: &str, stream_id: &str, lock_id: i32) -> StoreResult<Option<PgLease>> {
        postgres_blocking(|| {
            let Some(mut client) = lock_on_own_connection(&self.store, LOCK_CLASS, lock_id)? else {
                return Ok(None);
            };
            let row = client
                .query_opt(
                    &format!(
                        "UPDATE quill_streams SET runner_epoch = runner_epoch + 1 \
                         WHERE ledger = $1 AND stream_id = $2 AND final_status IS NULL \
                         RETURNING {STORED_COLUMNS}, runner_epoch"
                    ),
                    &[&ledger, &stream_id],
                )
                .map_err(postgres_error)?;
            // Dropping the client releases the lock if the stream ended meanwhile.
            let Some(row) = row else { return Ok(None) };
            let stored = stored_row(&row)?;
            let epoch: i64 = row.get(STORED_COLUMN_COUNT);
            Ok(Some(PgLease {
                client,
                store: self.store.clone(),
                epoch,
                spec: stored.spec,
            }))
        })
    }
}

/// A stream's lease: the advisory lock held by `client`, and the epoch it took.
struct PgLease {
    client: Client,
    store: PostgresStore,
    epoch: i64,
    spec: StreamSpec,
}

impl Lease for PgLease {
    fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    fn cursor(&self) -> Cursor {
        Cursor::with_store(Arc::new(PgCursor {
            store: self.store.clone(),
            ledger: self.spec.ledger_name.clone(),
            stream_id: self.spec.stream_id.clone(),
            epoch: self.epoch,
        }))
    }

    fn keep(&mut self, progress: &Progress) -> Keep {
        let status = status_text(progress.status);
        let cause = progress.error_cause.map(ErrorCause::as_str);
        let spec = &self.spec;
        let client = &mut self.client;
        let epoch = self.epoch;
        // On the lease's own connection: if it is gone, so is the lock.
        let answer = postgres_blocking(|| {
            client.query_opt(
                "UPDATE quill_streams SET status = $3, error_cause = $4, last_error = $5 \
                 WHERE ledger = $1 AND stream_id = $2 AND runner_epoch = $6 \
                 RETURNING final_status IS NOT NULL",
                &[
                    &spec.ledger_name,
                    &spec.stream_id,
                    &status,
                    &cause,
                    &progress.last_error,
                    &epoch,
                ],
            )
        });
        match answer {
            Ok(Some(row)) if row.get::<_, bool>(0) => Keep::Ended,
            Ok(Some(_)) => Keep::Run,
            Ok(None) => Keep::Lost,
            Err(e) => {
                tracing::warn!(stream = %spec.stream_id, "lost the stream's lease: {e}");
                Keep::Lost
            }
        }
    }

    fn finish(
        self: Box<Self>,
        status: StreamStatus,
        end_time: f64,
        last_error: Option<&str>,
    ) -> StoreResult<()> {
        let PgLease {
            mut client,
            epoch,
            spec,
            ..
        } = *self;
        let status = status_text(status);
        postgres_blocking(move || {
            let ended = client.execute(
                "UPDATE quill_streams SET final_status = $3, status = $3, end_time = $4, \
                   last_error = coalesce($5, last_error) \
                 WHERE ledger = $1 AND stream_id = $2 AND runner_epoch = $6 \
                   AND final_status IS NULL",
                &[
                    &spec.ledger_name,
                    &spec.stream_id,
                    &status,
                    &end_time,
                    &last_error,
                    &epoch,
                ],
            );
            // Closing the connection releases the lock.
            drop(client);
            ended.map(drop).map_err(|e| postgres_error(e).into())
        })
    }
}

/// The cursor column of a stream, written only under the lease's epoch.
struct PgCursor {
    store: PostgresStore,
    ledger: String,
    stream_id: String,
    epoch: i64,
}

impl PositionStore for PgCursor {
    fn load(&self) -> quill_stream::Result<Position> {
        let text = self
            .store
            .with_client(|client| {
                client
                    .query_opt(
                        "SELECT cursor::text FROM quill_streams \
                         WHERE ledger = $1 AND stream_id = $2",
                        &[&self.ledger, &self.stream_id],
                    )
                    .map_err(postgres_error)
            })?
            .and_then(|row| row.get::<_, Option<String>>(0));
        position_of(text).map_err(|e| StreamError::Cursor(e.to_string()))
    }

    fn store(&self, position: &Position) -> quill_stream::Result<()> {
        let text = serde_json::to_string(position).expect("a position serializes");
        let updated = self.store.with_client(|client| {
            client
                .execute(
                    "UPDATE quill_streams SET cursor = $3::text::jsonb \
                     WHERE ledger = $1 AND stream_id = $2 AND runner_epoch = $4",
                    &[&self.ledger, &self.stream_id, &text, &self.epoch],
                )
                .map_err(postgres_error)
        })?;
        if updated == 0 {
            return Err(StreamError::Cursor(format!(
                "stream {} is delivered by another server now (or was deleted)",
                self.stream_id
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> StreamSpec {
        StreamSpec {
            tags: BTreeMap::from([("team".into(), "a".into())]),
            ..crate::streams::tests::nats_spec(id)
        }
    }

    fn progress(status: StreamStatus) -> Progress {
        Progress {
            status,
            error_cause: None,
            last_error: None,
            last_delivered_block: None,
            blocks_behind: 0,
            millis_behind: 0,
            records_delivered: 0,
        }
    }

    /// Two servers' stores on one fresh database holding the ledger `shop`.
    fn two_servers(database: &str) -> (PgStreams, PgStreams) {
        let cluster = quill_pgtest::PgServer::shared().unwrap();
        let url = cluster.create_database(database).unwrap();
        let first = PostgresStore::connect(&url).unwrap();
        first
            .with_client(|client| {
                client
                    .execute(
                        "INSERT INTO quill_ledgers (name, strand_id, blocks, last_hash) \
                         VALUES ('shop', 'strand', 1, '\\x00')",
                        &[],
                    )
                    .map_err(postgres_error)
            })
            .unwrap();
        let second = PostgresStore::connect(&url).unwrap();
        (PgStreams::new(first), PgStreams::new(second))
    }

    fn claim_all(store: &PgStreams) -> Vec<Box<dyn Lease>> {
        store.claim(&|_, _| false, None).unwrap()
    }

    #[test]
    fn one_claimant_wins_and_the_other_takes_over_when_its_connection_closes() {
        let (a, b) = two_servers("stream_lease_takeover");
        let id = "A".repeat(22);
        assert!(a.insert(&spec(&id), 5).unwrap());

        let mut won = claim_all(&a);
        assert_eq!(won.len(), 1);
        assert!(claim_all(&b).is_empty(), "the lease is held");
        assert!(
            claim_all(&a).is_empty(),
            "held by this server's own lease too"
        );
        let stale_cursor = won[0].cursor();
        let delivered = Position {
            created_delivered: true,
            last_block: Some(7),
        };
        stale_cursor.store(&delivered).unwrap();
        assert_eq!(won[0].keep(&progress(StreamStatus::Impaired)), Keep::Run);
        let described = &b.streams("shop").unwrap()[0];
        let reported = described.reported.as_ref().unwrap();
        assert_eq!(reported.status, StreamStatus::Impaired);
        assert_eq!(reported.last_delivered_block, Some(7));
        assert_eq!(described.spec.tags, spec(&id).tags);

        // The winner's server dies: its connection closes, and with it the lock. PostgreSQL
        // frees the lock when the backend notices the closed connection and exits, a moment
        // after the client is gone, so the loser claims until then as its takeover loop does.
        drop(won.pop());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut taken = claim_all(&b);
        while taken.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            taken = claim_all(&b);
        }
        assert_eq!(taken.len(), 1, "the loser takes over");
        assert_eq!(
            taken[0].cursor().load().unwrap(),
            delivered,
            "resumes from the cursor"
        );
        // The old runner's writes are fenced off: no cursor move behind the new runner's back.
        let error = stale_cursor.store(&Position::default()).unwrap_err();
        assert!(error.to_string().contains("another server"), "{error}");
        assert_eq!(taken[0].cursor().load().unwrap(), delivered);

        // A cancel through the first server stops the runner on the second.
        assert!(a.end("shop", &id, StreamStatus::Canceled, 5.0).unwrap());
        assert!(!a.end("shop", &id, StreamStatus::Canceled, 6.0).unwrap());
        let mut lease = taken.pop().unwrap();
        assert_eq!(lease.keep(&progress(StreamStatus::Active)), Keep::Ended);
        lease.finish(StreamStatus::Canceled, 9.0, None).unwrap();
        let ended = &a.streams("shop").unwrap()[0].spec;
        assert_eq!(
            (ended.final_status, ended.end_time),
            (Some(StreamStatus::Canceled), Some(5.0)),
            "the first end recorded stays"
        );
        assert!(
            claim_all(&a).is_empty() && claim_all(&b).is_empty(),
            "ended"
        );
    }

    #[test]
    fn a_runner_whose_stream_was_taken_over_is_told_it_lost_its_lease() {
        let (a, b) = two_servers("stream_lease_lost");
        let id = "B".repeat(22);
        assert!(a.insert(&spec(&id), 5).unwrap());
        let mut first = claim_all(&a).pop().unwrap();
        // Another server got the stream meanwhile (as after this one's lock was lost).
        a.store
            .with_client(|client| {
                client
                    .execute(
                        "UPDATE quill_streams SET runner_epoch = runner_epoch + 1",
                        &[],
                    )
                    .map_err(postgres_error)
            })
            .unwrap();
        assert_eq!(first.keep(&progress(StreamStatus::Active)), Keep::Lost);
        first.finish(StreamStatus::Failed, 3.0, Some("x")).unwrap();
        let stored = &b.streams("shop").unwrap()[0].spec;
        assert_eq!(stored.final_status, None, "a lost lease records no end");
    }

    #[test]
    fn the_active_stream_quota_holds_across_servers() {
        let (a, b) = two_servers("stream_quota");
        for n in 0..5 {
            let server = if n % 2 == 0 { &a } else { &b };
            assert!(server.insert(&spec(&n.to_string().repeat(22)), 5).unwrap());
        }
        assert_eq!(a.streams("shop").unwrap().len(), 5);
        assert!(!a.insert(&spec(&"8".repeat(22)), 5).unwrap());
        assert!(!b.insert(&spec(&"9".repeat(22)), 5).unwrap());
        assert!(b
            .end("shop", &"0".repeat(22), StreamStatus::Canceled, 1.0)
            .unwrap());
        assert!(
            a.insert(&spec(&"9".repeat(22)), 5).unwrap(),
            "an ended stream frees a slot"
        );
    }
}
