//! Where journal exports' records are kept, and which server runs each export in progress:
//! [`ExportRecords`], with one implementation per backend, so `exports.rs` (validation, the
//! API, running an export) is one code path for both.
//!
//! - [`FileExports`] (embedded backend): `<ledger dir>/exports/<exportId>.json`
//!   (`quill_export::record::ExportStore`). One server owns the directory, so it runs every
//!   export, and an in-process lock makes the in-progress limit exact.
//! - [`PgExports`] (`--storage postgres://`): a row of `quill_exports` per export (schema
//!   migration 3 in quill-ledger's `journal/postgres.rs`), shared by every server. The limit is
//!   checked and the row inserted under a transaction-scoped advisory lock on the ledger, so
//!   two servers cannot both take the last slot. A server runs an `IN_PROGRESS` export only
//!   while it holds its lease (`pg_lease.rs`: an advisory lock on a connection of its own, and
//!   the row's `runner_epoch`); the outcome is written only under that epoch.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use quill_export::record::{ExportRecord, ExportStatus, ExportStore};
use quill_export::ExportError;
use quill_ledger::postgres::{Client, Row};
use quill_ledger::{postgres_blocking, postgres_error, LedgerError, PostgresStore};

use crate::pg_lease::{lock_is_free, lock_on_own_connection};

/// First key of every export lease's advisory lock (the second is the row's `lock_id`).
const LEASE_CLASS: i32 = 0x5145_5850; // "QEXP"
/// First key of the transaction-scoped lock that serialises admissions into one ledger (the
/// second is a hash of its name), apart from the leases so the two never collide.
const ADMISSION_CLASS: i32 = 0x5145_5841; // "QEXA"

#[derive(Debug, thiserror::Error)]
pub enum ExportStoreError {
    #[error("{0}")]
    Files(#[from] ExportError),
    #[error("{0}")]
    Database(#[from] LedgerError),
    #[error("quill_exports.{column}: {detail}")]
    Corrupt {
        column: &'static str,
        detail: String,
    },
}

pub type StoreResult<T> = Result<T, ExportStoreError>;

/// The answer to a new export.
pub enum Admission {
    /// The ledger already has the maximum of exports in progress: nothing was recorded.
    LimitReached,
    /// The export could not start (the started manifest could not be written): nothing was
    /// recorded.
    Refused(ExportError),
    /// Recorded `IN_PROGRESS`, leased to this server.
    Admitted(Box<dyn ExportLease>),
}

/// The right to run one export in progress.
pub trait ExportLease: Send {
    fn record(&self) -> &ExportRecord;
    /// Whether the lease still holds (no other server took the export over).
    fn holds(&mut self) -> bool;
    /// Records the export's outcome (`outcome` is its record with the final status) unless
    /// the lease was lost; releases the lease. `false` if it was lost.
    fn finish(self: Box<Self>, outcome: &ExportRecord) -> StoreResult<bool>;
}

/// The journal exports of every ledger, kept durably.
pub trait ExportRecords: Send + Sync {
    /// Every export of `ledger`, oldest first.
    fn records(&self, ledger: &str) -> StoreResult<Vec<ExportRecord>>;
    /// Records `record` (`IN_PROGRESS`) and leases it to this server, unless its ledger has
    /// `in_progress_max` exports in progress. `start` (which writes the started manifest) runs
    /// once the slot is taken and before the record is visible to anyone; if it fails, nothing
    /// is recorded.
    fn admit(
        &self,
        record: &ExportRecord,
        in_progress_max: usize,
        start: &mut (dyn FnMut() -> Result<(), ExportError> + Send),
    ) -> StoreResult<Admission>;
    /// Leases on exports in progress that no server runs, except those `skip` names (by
    /// ledger and export id: run here already).
    fn claim(
        &self,
        skip: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> StoreResult<Vec<Box<dyn ExportLease>>>;
}

/// The file store: `<ledgers dir>/<ledger>/exports/`.
pub struct FileExports {
    ledgers_dir: PathBuf,
    /// Held from the count of exports in progress to the record's save.
    admission: Mutex<()>,
}

impl FileExports {
    pub fn new(ledgers_dir: PathBuf) -> FileExports {
        FileExports {
            ledgers_dir,
            admission: Mutex::new(()),
        }
    }

    fn store(&self, ledger: &str) -> ExportStore {
        ExportStore::new(&self.ledgers_dir.join(ledger))
    }
}

impl ExportRecords for FileExports {
    fn records(&self, ledger: &str) -> StoreResult<Vec<ExportRecord>> {
        Ok(self.store(ledger).load_all()?)
    }

    fn admit(
        &self,
        record: &ExportRecord,
        in_progress_max: usize,
        start: &mut (dyn FnMut() -> Result<(), ExportError> + Send),
    ) -> StoreResult<Admission> {
        let _admission = self
            .admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let store = self.store(&record.ledger_name);
        let in_progress = store
            .load_all()?
            .iter()
            .filter(|r| r.status == ExportStatus::InProgress)
            .count();
        if in_progress >= in_progress_max {
            return Ok(Admission::LimitReached);
        }
        if let Err(error) = start() {
            return Ok(Admission::Refused(error));
        }
        store.save(record)?;
        Ok(Admission::Admitted(Box::new(FileLease {
            store,
            record: record.clone(),
        })))
    }

    fn claim(
        &self,
        skip: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> StoreResult<Vec<Box<dyn ExportLease>>> {
        let mut leases: Vec<Box<dyn ExportLease>> = Vec::new();
        for entry in std::fs::read_dir(&self.ledgers_dir).map_err(ExportError::from)? {
            let name = entry.map_err(ExportError::from)?.file_name();
            // Dot-names are ledgers being deleted.
            let Some(ledger) = name.to_str().filter(|n| !n.starts_with('.')) else {
                continue;
            };
            let store = self.store(ledger);
            for record in store.load_all()? {
                if record.status == ExportStatus::InProgress
                    && !skip(&record.ledger_name, &record.export_id)
                {
                    leases.push(Box::new(FileLease {
                        store: self.store(ledger),
                        record,
                    }));
                }
            }
        }
        Ok(leases)
    }
}

/// The only server of a data directory runs all its exports: its lease never ends early.
struct FileLease {
    store: ExportStore,
    record: ExportRecord,
}

impl ExportLease for FileLease {
    fn record(&self) -> &ExportRecord {
        &self.record
    }

    fn holds(&mut self) -> bool {
        true
    }

    fn finish(self: Box<Self>, outcome: &ExportRecord) -> StoreResult<bool> {
        self.store.save(outcome)?;
        Ok(true)
    }
}

/// The PostgreSQL store.
pub struct PgExports {
    store: PostgresStore,
}

/// The columns [`record_of`] reads, in its order.
const RECORD_COLUMNS: &str = "ledger, export_id, creation_time_millis, status, \
    inclusive_start_millis, exclusive_end_millis, bucket, prefix, object_encryption_type, \
    kms_key_arn, role_arn, output_format, cancellation_reason, blocks_exported";
const RECORD_COLUMN_COUNT: usize = 14;

fn status_of(text: &str) -> StoreResult<ExportStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| {
        ExportStoreError::Corrupt {
            column: "status",
            detail: e.to_string(),
        }
    })
}

fn blocks_of(value: Option<i64>) -> StoreResult<Option<u64>> {
    value
        .map(|blocks| {
            u64::try_from(blocks).map_err(|e| ExportStoreError::Corrupt {
                column: "blocks_exported",
                detail: e.to_string(),
            })
        })
        .transpose()
}

/// A row read with [`RECORD_COLUMNS`].
fn record_of(row: &Row) -> StoreResult<ExportRecord> {
    Ok(ExportRecord {
        ledger_name: row.get(0),
        export_id: row.get(1),
        creation_time_millis: row.get(2),
        status: status_of(row.get(3))?,
        inclusive_start_millis: row.get(4),
        exclusive_end_millis: row.get(5),
        bucket: row.get(6),
        prefix: row.get(7),
        object_encryption_type: row.get(8),
        kms_key_arn: row.get(9),
        role_arn: row.get(10),
        output_format: row.get(11),
        cancellation_reason: row.get(12),
        blocks_exported: blocks_of(row.get(13))?,
    })
}

impl PgExports {
    pub fn new(store: PostgresStore) -> PgExports {
        PgExports { store }
    }

    /// Takes the lease of one export on a new connection: `None` if another server holds it
    /// or the export ended meanwhile.
    fn take(&self, ledger: &str, export_id: &str, lock_id: i32) -> StoreResult<Option<PgLease>> {
        let Some(mut client) = lock_on_own_connection(&self.store, LEASE_CLASS, lock_id)? else {
            return Ok(None);
        };
        let row = client
            .query_opt(
                &format!(
                    "UPDATE quill_exports SET runner_epoch = runner_epoch + 1 \
                     WHERE ledger = $1 AND export_id = $2 AND status = 'IN_PROGRESS' \
                     RETURNING {RECORD_COLUMNS}, runner_epoch"
                ),
                &[&ledger, &export_id],
            )
            .map_err(postgres_error)?;
        // Dropping the client releases the lock if the export ended meanwhile.
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PgLease {
            record: record_of(&row)?,
            epoch: row.get(RECORD_COLUMN_COUNT),
            client,
        }))
    }
}

impl ExportRecords for PgExports {
    fn records(&self, ledger: &str) -> StoreResult<Vec<ExportRecord>> {
        let rows = self.store.with_client(|client| {
            client
                .query(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM quill_exports WHERE ledger = $1 \
                         ORDER BY creation_time_millis, export_id"
                    ),
                    &[&ledger],
                )
                .map_err(postgres_error)
        })?;
        rows.iter().map(record_of).collect()
    }

    fn admit(
        &self,
        record: &ExportRecord,
        in_progress_max: usize,
        start: &mut (dyn FnMut() -> Result<(), ExportError> + Send),
    ) -> StoreResult<Admission> {
        let in_progress_max = in_progress_max as i64;
        let blocks = record.blocks_exported.map(|b| b as i64);
        postgres_blocking(|| {
            // The lease's connection: its lock is taken before the row is visible, so no
            // other server can claim the new export.
            let mut client = self.store.dedicated_client()?;
            let mut tx = client.transaction().map_err(postgres_error)?;
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&ADMISSION_CLASS, &record.ledger_name],
            )
            .map_err(postgres_error)?;
            let in_progress: i64 = tx
                .query_one(
                    "SELECT count(*) FROM quill_exports \
                     WHERE ledger = $1 AND status = 'IN_PROGRESS'",
                    &[&record.ledger_name],
                )
                .map_err(postgres_error)?
                .get(0);
            if in_progress >= in_progress_max {
                return Ok(Admission::LimitReached);
            }
            let row = tx
                .query_one(
                    "INSERT INTO quill_exports (ledger, export_id, creation_time_millis, \
                       status, inclusive_start_millis, exclusive_end_millis, bucket, prefix, \
                       object_encryption_type, kms_key_arn, role_arn, output_format, \
                       cancellation_reason, blocks_exported) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                     RETURNING lock_id, runner_epoch",
                    &[
                        &record.ledger_name,
                        &record.export_id,
                        &record.creation_time_millis,
                        &record.status.name(),
                        &record.inclusive_start_millis,
                        &record.exclusive_end_millis,
                        &record.bucket,
                        &record.prefix,
                        &record.object_encryption_type,
                        &record.kms_key_arn,
                        &record.role_arn,
                        &record.output_format,
                        &record.cancellation_reason,
                        &blocks,
                    ],
                )
                .map_err(postgres_error)?;
            let (lock_id, epoch): (i32, i64) = (row.get(0), row.get(1));
            // Session-level: it outlives the transaction (and a rollback, hence the client is
            // dropped, not reused, when the export is refused).
            tx.execute("SELECT pg_advisory_lock($1, $2)", &[&LEASE_CLASS, &lock_id])
                .map_err(postgres_error)?;
            if let Err(error) = start() {
                return Ok(Admission::Refused(error));
            }
            tx.commit().map_err(postgres_error)?;
            Ok(Admission::Admitted(Box::new(PgLease {
                client,
                epoch,
                record: record.clone(),
            })))
        })
    }

    fn claim(
        &self,
        skip: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> StoreResult<Vec<Box<dyn ExportLease>>> {
        postgres_blocking(|| {
            // Exports whose lock no session holds: only those are worth a connection.
            let candidates = self.store.with_client(|client| {
                client
                    .query(
                        &format!(
                            "SELECT e.ledger, e.export_id, e.lock_id FROM quill_exports e \
                             WHERE e.status = 'IN_PROGRESS' AND {}",
                            lock_is_free("$1", "e.lock_id")
                        ),
                        &[&LEASE_CLASS],
                    )
                    .map_err(postgres_error)
            })?;
            let mut leases: Vec<Box<dyn ExportLease>> = Vec::new();
            for row in candidates {
                let (ledger, export_id, lock_id): (String, String, i32) =
                    (row.get(0), row.get(1), row.get(2));
                if skip(&ledger, &export_id) {
                    continue;
                }
                if let Some(lease) = self.take(&ledger, &export_id, lock_id)? {
                    leases.push(Box::new(lease));
                }
            }
            Ok(leases)
        })
    }
}

/// An export's lease: the advisory lock held by `client`, and the epoch it took. Use it from
/// a thread outside the async runtime, or through `postgres_blocking`.
struct PgLease {
    client: Client,
    epoch: i64,
    record: ExportRecord,
}

impl ExportLease for PgLease {
    fn record(&self) -> &ExportRecord {
        &self.record
    }

    fn holds(&mut self) -> bool {
        let PgLease {
            client,
            epoch,
            record,
        } = self;
        // On the lease's own connection: if it is gone, so is the lock.
        let answer = postgres_blocking(|| {
            client.query_opt(
                "SELECT 1 FROM quill_exports WHERE ledger = $1 AND export_id = $2 \
                   AND runner_epoch = $3 AND status = 'IN_PROGRESS'",
                &[&record.ledger_name, &record.export_id, &*epoch],
            )
        });
        match answer {
            Ok(row) => row.is_some(),
            Err(e) => {
                tracing::warn!(export = %record.export_id, "lost the export's lease: {e}");
                false
            }
        }
    }

    fn finish(self: Box<Self>, outcome: &ExportRecord) -> StoreResult<bool> {
        let PgLease {
            mut client,
            epoch,
            record,
        } = *self;
        let blocks = outcome.blocks_exported.map(|b| b as i64);
        postgres_blocking(move || {
            let ended = client.execute(
                "UPDATE quill_exports SET status = $3, cancellation_reason = $4, \
                   blocks_exported = $5 \
                 WHERE ledger = $1 AND export_id = $2 AND runner_epoch = $6 \
                   AND status = 'IN_PROGRESS'",
                &[
                    &record.ledger_name,
                    &record.export_id,
                    &outcome.status.name(),
                    &outcome.cancellation_reason,
                    &blocks,
                    &epoch,
                ],
            );
            // Closing the connection releases the lock.
            drop(client);
            Ok(ended.map_err(postgres_error)? == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ExportRecord {
        ExportRecord {
            ledger_name: "shop".into(),
            export_id: id.repeat(22),
            creation_time_millis: 1_000,
            status: ExportStatus::InProgress,
            inclusive_start_millis: 0,
            exclusive_end_millis: 10,
            bucket: "bucket".into(),
            prefix: "p/".into(),
            object_encryption_type: "SSE_KMS".into(),
            kms_key_arn: Some("arn:aws:kms:us-east-1:000000000000:key/k".into()),
            role_arn: "arn:aws:iam::000000000000:role/export".into(),
            output_format: Some("ION_BINARY".into()),
            cancellation_reason: None,
            blocks_exported: None,
        }
    }

    /// Two servers' stores on one fresh database holding the ledger `shop`.
    fn two_servers(database: &str) -> (PgExports, PgExports) {
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
        (PgExports::new(first), PgExports::new(second))
    }

    fn admit(store: &dyn ExportRecords, record: &ExportRecord) -> Admission {
        store.admit(record, 2, &mut || Ok(())).unwrap()
    }

    fn admitted(store: &dyn ExportRecords, record: &ExportRecord) -> Box<dyn ExportLease> {
        match admit(store, record) {
            Admission::Admitted(lease) => lease,
            _ => panic!("export {} not admitted", record.export_id),
        }
    }

    fn claim_all(store: &dyn ExportRecords) -> Vec<Box<dyn ExportLease>> {
        store.claim(&|_, _| false).unwrap()
    }

    fn completed(record: &ExportRecord, blocks: u64) -> ExportRecord {
        ExportRecord {
            status: ExportStatus::Completed,
            blocks_exported: Some(blocks),
            ..record.clone()
        }
    }

    #[test]
    fn the_in_progress_limit_holds_across_servers_and_refused_exports_leave_nothing() {
        let (a, b) = two_servers("export_admission");
        let first = admitted(&a, &record("A"));
        let refused = a
            .admit(&record("R"), 2, &mut || {
                Err(ExportError::InvalidInput("no bucket".into()))
            })
            .unwrap();
        assert!(matches!(refused, Admission::Refused(_)));
        let _second = admitted(&b, &record("B"));
        assert!(matches!(admit(&a, &record("C")), Admission::LimitReached));
        assert!(matches!(admit(&b, &record("C")), Admission::LimitReached));
        let ids: Vec<String> = b
            .records("shop")
            .unwrap()
            .into_iter()
            .map(|r| r.export_id)
            .collect();
        assert_eq!(
            ids,
            ["A".repeat(22), "B".repeat(22)],
            "the refused one is not recorded"
        );
        assert_eq!(
            b.records("shop").unwrap()[0],
            record("A"),
            "every field read back"
        );

        // Admissions of both servers at once never exceed the limit.
        assert!(first.finish(&completed(&record("A"), 3)).unwrap());
        let racers: Vec<Admission> = std::thread::scope(|scope| {
            let handles: Vec<_> = ["D", "E", "F", "G"]
                .into_iter()
                .enumerate()
                .map(|(n, id)| {
                    let store = if n % 2 == 0 { &a } else { &b };
                    scope.spawn(move || admit(store, &record(id)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = racers
            .iter()
            .filter(|a| matches!(a, Admission::Admitted(_)))
            .count();
        assert_eq!(winners, 1, "one slot was free");
        let in_progress = a
            .records("shop")
            .unwrap()
            .iter()
            .filter(|r| r.status == ExportStatus::InProgress)
            .count();
        assert_eq!(in_progress, 2);
    }

    #[test]
    fn a_dead_runners_export_is_taken_over_once_and_the_old_runner_is_fenced_off() {
        let (a, b) = two_servers("export_takeover");
        let mut runner = admitted(&a, &record("A"));
        assert!(runner.holds());
        assert!(
            claim_all(&a).is_empty() && claim_all(&b).is_empty(),
            "the creator runs it"
        );

        // Another server took it over (as after the runner's connection dropped): the old
        // runner is told, and cannot record an outcome over the new runner's.
        a.store
            .with_client(|client| {
                client
                    .execute(
                        "UPDATE quill_exports SET runner_epoch = runner_epoch + 1",
                        &[],
                    )
                    .map_err(postgres_error)
            })
            .unwrap();
        assert!(!runner.holds());
        assert!(!runner.finish(&completed(&record("A"), 1)).unwrap());
        assert_eq!(
            b.records("shop").unwrap()[0].status,
            ExportStatus::InProgress
        );

        // The runner's connection is gone now: the lease is free; exactly one claim wins it
        // (PostgreSQL frees the lock a moment after the client is gone: claim until then).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut taken = claim_all(&b);
        while taken.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            taken = claim_all(&b);
        }
        assert_eq!(taken.len(), 1, "the survivor takes the export over");
        assert!(claim_all(&a).is_empty(), "held by the survivor");
        let mut lease = taken.pop().unwrap();
        assert_eq!(lease.record(), &record("A"));
        assert!(lease.holds());
        assert!(lease.finish(&completed(&record("A"), 9)).unwrap());
        let stored = &a.records("shop").unwrap()[0];
        assert_eq!(
            (stored.status, stored.blocks_exported),
            (ExportStatus::Completed, Some(9))
        );
        assert!(
            claim_all(&a).is_empty() && claim_all(&b).is_empty(),
            "ended"
        );
    }

    #[test]
    fn the_file_store_admits_up_to_the_limit_and_offers_unfinished_exports_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileExports::new(dir.path().to_owned());
        let first = admitted(&store, &record("A"));
        let _second = admitted(&store, &record("B"));
        assert!(matches!(
            admit(&store, &record("C")),
            Admission::LimitReached
        ));
        assert!(first.finish(&completed(&record("A"), 2)).unwrap());
        let offered: Vec<String> = claim_all(&store)
            .iter()
            .map(|lease| lease.record().export_id.clone())
            .collect();
        assert_eq!(offered, ["B".repeat(22)]);
        assert!(store
            .claim(&|_, id| id == "B".repeat(22))
            .unwrap()
            .is_empty());
        assert_eq!(store.records("shop").unwrap()[0].blocks_exported, Some(2));
    }
}
