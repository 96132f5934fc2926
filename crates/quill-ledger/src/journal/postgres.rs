//! The journal in PostgreSQL: one row per block, shared by every `quill serve` process that
//! opens the ledger, with PostgreSQL's replication, failover and backups underneath.
//!
//! Schema (created and migrated by [`PostgresStore::connect`], versioned in `quill_schema`):
//! ```text
//! quill_ledgers(name PK, strand_id, blocks, last_hash, control, created_at)
//!     blocks = the number of blocks = the next sequence number; the row is the chain's tip
//! quill_blocks(ledger, seq, hash, payload)   PK (ledger, seq)
//!     payload = the same bytes the embedded journal frames (see `block`), hash = block hash
//! quill_streams(ledger, stream_id, ...)   PK (ledger, stream_id)
//!     journal streams and their cursors (quill-server keeps them; see migration 2)
//! quill_exports(ledger, export_id, ...)   PK (ledger, export_id)
//!     journal exports' records (quill-server keeps them; see migration 3)
//! quill_tlogs(ledger PK, ...)
//!     each ledger's transparency log: its checkpoints, key and signer lease (migration 4)
//! ```
//!
//! Sequencing across servers. A server appends a batch of blocks in one PostgreSQL
//! transaction: [`PgJournal::lock_tip`] takes the ledger's row `FOR UPDATE` (so appends of
//! one ledger are serialised, whichever server makes them) and returns the blocks other
//! servers appended since this one last looked; the committer applies those first (their
//! writes take part in its OCC checks), then builds its batch on the real tip,
//! [`PgJournal::append`] inserts the blocks and moves the tip, and [`PgJournal::sync`] commits.
//! The primary key `(ledger, seq)` is the backstop: two blocks with one sequence number can
//! never both commit. A commit is acknowledged only after PostgreSQL acknowledged the COMMIT,
//! so `synchronous_commit` (and `synchronous_standby_names` for a standby) decide what
//! "durable" means; see docs/scale-out.md.
//!
//! Failures. Anything before the COMMIT fails the batch with [`LedgerError::Unavailable`]
//! (retryable) and leaves nothing behind: PostgreSQL rolls the transaction back when its
//! connection goes. A COMMIT whose answer is lost is resolved by reading the tip again
//! ([`PgJournal::committed_tip`]).

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use postgres::types::Type;
use postgres::{Client, Config, NoTls};
use quill_verify::Hash;

use crate::{LedgerError, Result};

/// Schema versions this build knows, `(version, SQL)` in increasing version order. Each is
/// additive and applied once, recorded in `quill_schema`: a database lacking a version this
/// build knows gets it even when it already has higher ones, so migrations written apart
/// (on branches merged in either order) apply whichever order they were numbered in.
const MIGRATIONS: &[(i32, &str)] = &[
    // 1: ledgers and their blocks.
    (
        1,
        "CREATE TABLE quill_ledgers (
        name text PRIMARY KEY,
        strand_id text NOT NULL,
        blocks bigint NOT NULL CHECK (blocks >= 1),
        last_hash bytea NOT NULL,
        control jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE quill_blocks (
        ledger text NOT NULL REFERENCES quill_ledgers (name) ON DELETE CASCADE,
        seq bigint NOT NULL CHECK (seq >= 0),
        hash bytea NOT NULL,
        payload bytea NOT NULL,
        PRIMARY KEY (ledger, seq)
    );",
    ),
    // 2: journal streams, shared by every server (quill-server's stream_store.rs): the
    // definition, the state every server describes, the delivery cursor, and `runner_epoch`,
    // bumped by each server that takes over the stream's delivery (its writes are fenced by
    // it). `lock_id` keys the advisory lock its runner holds.
    (
        2,
        "CREATE TABLE quill_streams (
        ledger text NOT NULL REFERENCES quill_ledgers (name) ON DELETE CASCADE,
        stream_id text NOT NULL,
        lock_id integer GENERATED ALWAYS AS IDENTITY UNIQUE,
        spec jsonb NOT NULL,
        tags jsonb NOT NULL DEFAULT '{}',
        final_status text,
        end_time double precision,
        status text NOT NULL DEFAULT 'ACTIVE',
        error_cause text,
        last_error text,
        cursor jsonb,
        runner_epoch bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (ledger, stream_id)
    );",
    ),
    // 3: journal exports' records, shared by every server (quill-server's export_store.rs):
    // what `DescribeJournalS3Export` shows, and, as for streams, the fencing `runner_epoch`
    // of the server running an IN_PROGRESS export and the `lock_id` of its lease.
    (
        3,
        "CREATE TABLE quill_exports (
        ledger text NOT NULL REFERENCES quill_ledgers (name) ON DELETE CASCADE,
        export_id text NOT NULL,
        lock_id integer GENERATED ALWAYS AS IDENTITY UNIQUE,
        creation_time_millis bigint NOT NULL,
        status text NOT NULL,
        inclusive_start_millis bigint NOT NULL,
        exclusive_end_millis bigint NOT NULL,
        bucket text NOT NULL,
        prefix text NOT NULL,
        object_encryption_type text NOT NULL,
        kms_key_arn text,
        role_arn text NOT NULL,
        output_format text,
        cancellation_reason text,
        blocks_exported bigint,
        runner_epoch bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (ledger, export_id)
    );
    CREATE INDEX quill_exports_in_progress ON quill_exports (ledger)
        WHERE status = 'IN_PROGRESS';",
    ),
    // 4: each ledger's transparency log, shared by every server (quill-server's
    // tlog_store.rs): the latest signed checkpoint note and its size, the newest cosigned one,
    // the log's verifier key (recorded with the first checkpoint: a server with another key
    // refuses to sign), and the signer lease: `lock_id` keys the advisory lock the signing
    // server holds, `signer_epoch` is bumped by each server that takes the lease and fences
    // its checkpoint writes. The tiles need nothing more: they derive from the blocks.
    (
        4,
        "CREATE TABLE quill_tlogs (
        ledger text PRIMARY KEY REFERENCES quill_ledgers (name) ON DELETE CASCADE,
        lock_id integer GENERATED ALWAYS AS IDENTITY UNIQUE,
        verifier_key text,
        signer_epoch bigint NOT NULL DEFAULT 0,
        size bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
        checkpoint text,
        cosigned_size bigint,
        cosigned text
    );",
    ),
];

/// Key of the advisory lock taken while migrating, so two servers starting at once do not
/// both create the tables.
const MIGRATION_LOCK_KEY: i64 = 0x5155_494c_4c00_0001;
/// Connections kept idle per store; more are opened when needed and closed when returned.
const IDLE_CONNECTIONS_MAX: usize = 16;
/// Connections kept for tip reads (one read of each ledger is in flight at a time).
const TIP_READERS_MAX: usize = 4;
/// Blocks fetched per query when scanning.
const SCAN_CHUNK_BLOCKS: i64 = 512;
/// Connect timeout when the URL sets none: an unreachable server fails a commit quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `f`, which blocks on PostgreSQL, wherever it is called from. The synchronous client
/// drives its connection with a runtime of its own, which tokio refuses to start on a thread
/// that is running async tasks: on a multi-threaded runtime's worker the thread is handed
/// over first (`block_in_place`); on a current-thread runtime `f` runs on a scoped thread.
pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => f(),
    }
}

/// A PostgreSQL database holding ledgers: the connection settings and a small pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    config: Config,
    /// The URL without its password, for messages.
    display: String,
    idle: Mutex<Vec<Client>>,
    /// Connections kept for tip reads, each with the read prepared on it.
    tip_readers: Mutex<Vec<(Client, postgres::Statement)>>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // Closing a connection blocks on it too.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(PoisonError::into_inner));
        let readers = std::mem::take(
            self.tip_readers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        blocking(move || drop((idle, readers)));
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.display)
            .finish()
    }
}

/// A ledger's row in `quill_ledgers`.
#[derive(Debug, Clone)]
pub struct StoredLedger {
    pub name: String,
    pub strand_id: String,
    /// Number of blocks (the next sequence number).
    pub blocks: u64,
    /// The server's control-plane record for the ledger (JSON), if one was saved.
    pub control: Option<String>,
}

/// The tip a new ledger's row starts at: its number of blocks and the last one's hash.
struct NewTip<'a> {
    blocks: u64,
    last_hash: &'a Hash,
}

impl PostgresStore {
    /// Connects to `url` (a libpq-style URL or key=value string; several hosts with
    /// `target_session_attrs=read-write` follow a failover), creates or migrates the schema,
    /// and refuses a schema newer than this build.
    pub fn connect(url: &str) -> Result<PostgresStore> {
        let mut config = Config::from_str(url)
            .map_err(|e| LedgerError::InvalidInput(format!("bad PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives(true);
        if config.get_application_name().is_none() {
            config.application_name("quill");
        }
        let store = PostgresStore {
            inner: Arc::new(StoreInner {
                config,
                display: redact_url(url),
                idle: Mutex::new(Vec::new()),
                tip_readers: Mutex::new(Vec::new()),
            }),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The URL, password removed.
    pub fn display_url(&self) -> &str {
        &self.inner.display
    }

    fn migrate(&self) -> Result<()> {
        self.with_client(|client| {
            client
                .query_one("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
                .map_err(db_error)?;
            let migrated = run_migrations(client);
            let unlocked = client
                .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
                .map_err(db_error);
            migrated.and(unlocked.map(drop))
        })
    }

    /// Checks the database answers and accepts writes (for `/health`).
    pub fn check(&self) -> Result<()> {
        let standby = self.with_client(|client| {
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .map_err(db_error)?;
            Ok(row.get::<_, bool>(0))
        })?;
        if standby {
            return Err(LedgerError::Unavailable(
                "PostgreSQL is a read-only standby".into(),
            ));
        }
        Ok(())
    }

    /// Every ledger in the database, by name.
    pub fn ledgers(&self) -> Result<Vec<StoredLedger>> {
        self.with_client(|client| {
            let rows = client
                .query(
                    "SELECT name, strand_id, blocks, control::text FROM quill_ledgers ORDER BY name",
                    &[],
                )
                .map_err(db_error)?;
            Ok(rows.iter().map(stored_ledger).collect())
        })
    }

    /// One ledger's row; `UnknownLedger` when there is none.
    pub fn ledger(&self, name: &str) -> Result<StoredLedger> {
        let row = self.with_client(|client| {
            client
                .query_opt(
                    "SELECT name, strand_id, blocks, control::text FROM quill_ledgers \
                     WHERE name = $1",
                    &[&name],
                )
                .map_err(db_error)
        })?;
        row.map(|row| stored_ledger(&row))
            .ok_or_else(|| LedgerError::UnknownLedger(name.to_owned()))
    }

    /// Saves the server's control-plane record (JSON text) for a ledger.
    pub fn set_control(&self, name: &str, control: &str) -> Result<()> {
        let updated = self.with_client(|client| {
            client
                .execute(
                    "UPDATE quill_ledgers SET control = $2::text::jsonb WHERE name = $1",
                    &[&name, &control],
                )
                .map_err(db_error)
        })?;
        if updated == 0 {
            return Err(LedgerError::UnknownLedger(name.to_owned()));
        }
        Ok(())
    }

    /// Deletes a ledger and all its blocks, in one transaction.
    pub fn delete_ledger(&self, name: &str) -> Result<()> {
        let deleted = self.with_client(|client| {
            client
                .execute("DELETE FROM quill_ledgers WHERE name = $1", &[&name])
                .map_err(db_error)
        })?;
        if deleted == 0 {
            return Err(LedgerError::UnknownLedger(name.to_owned()));
        }
        Ok(())
    }

    /// Creates a ledger's row with its first blocks (the genesis block), in one transaction.
    /// `LedgerExists` if the name is taken.
    pub(crate) fn insert_ledger(
        &self,
        name: &str,
        strand_id: &str,
        blocks: &[(&[u8], Hash)],
        control: Option<&str>,
    ) -> Result<()> {
        let Some((_, last_hash)) = blocks.last() else {
            return Err(LedgerError::InvalidInput(
                "a ledger needs a genesis block".into(),
            ));
        };
        let tip = NewTip {
            blocks: blocks.len() as u64,
            last_hash,
        };
        self.insert_ledger_with(name, strand_id, tip, control, &mut |tx| {
            for (offset, chunk) in blocks.chunks(SCAN_CHUNK_BLOCKS as usize).enumerate() {
                let first = (offset * SCAN_CHUNK_BLOCKS as usize) as u64;
                insert_blocks(tx, name, first, chunk)?;
            }
            Ok(())
        })
    }

    /// Copies `source`'s whole chain (as far as its current tip) into a new ledger of the
    /// same name and strand here, with the control-plane record `control`: every block's
    /// journal payload byte for byte, so every hash and the digest at that tip are unchanged
    /// (`quill migrate`). One transaction: a failure leaves nothing behind, and other servers
    /// see the ledger only once it is whole. `LedgerExists` if the name is taken.
    /// `progress(copied, total)` is called after each chunk of blocks. Returns the number of
    /// blocks copied.
    pub fn import_ledger(
        &self,
        source: &crate::Ledger,
        control: Option<&str>,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64> {
        let tip = source.digest().tip.sequence_no;
        let total = tip + 1;
        let last_hash = source.block_hash(tip)?;
        let name = source.name();
        let new_tip = NewTip {
            blocks: total,
            last_hash: &last_hash,
        };
        self.insert_ledger_with(name, source.strand_id(), new_tip, control, &mut |tx| {
            let mut chunk: Vec<(Vec<u8>, Hash)> = Vec::with_capacity(SCAN_CHUNK_BLOCKS as usize);
            let mut copied = 0;
            source.scan_payloads(tip, |seq, payload, hash| {
                if seq != copied + chunk.len() as u64 {
                    return Err(LedgerError::Storage(format!(
                        "the journal of ledger {name} skipped from block {} to {seq}",
                        copied + chunk.len() as u64
                    )));
                }
                chunk.push((payload.to_vec(), hash));
                if chunk.len() == SCAN_CHUNK_BLOCKS as usize || seq == tip {
                    let rows: Vec<(&[u8], Hash)> =
                        chunk.iter().map(|(p, h)| (p.as_slice(), *h)).collect();
                    insert_blocks(tx, name, copied, &rows)?;
                    copied += rows.len() as u64;
                    chunk.clear();
                    progress(copied, total);
                }
                Ok(())
            })?;
            if copied != total {
                return Err(LedgerError::Storage(format!(
                    "the journal of ledger {name} ended after {copied} of {total} blocks"
                )));
            }
            Ok(())
        })?;
        Ok(total)
    }

    /// Inserts a ledger's row claiming `tip`, then lets `fill` insert exactly those blocks
    /// in the same transaction, and commits. `LedgerExists` if the name is taken.
    fn insert_ledger_with(
        &self,
        name: &str,
        strand_id: &str,
        tip: NewTip<'_>,
        control: Option<&str>,
        fill: &mut (dyn FnMut(&mut postgres::Transaction<'_>) -> Result<()> + Send),
    ) -> Result<()> {
        self.with_client(|client| {
            let mut tx = client.transaction().map_err(db_error)?;
            let inserted = tx
                .execute(
                    "INSERT INTO quill_ledgers (name, strand_id, blocks, last_hash, control)
                     VALUES ($1, $2, $3, $4, $5::text::jsonb) ON CONFLICT (name) DO NOTHING",
                    &[
                        &name,
                        &strand_id,
                        &(tip.blocks as i64),
                        &tip.last_hash.as_bytes().as_slice(),
                        &control,
                    ],
                )
                .map_err(db_error)?;
            if inserted == 0 {
                return Err(LedgerError::LedgerExists(name.to_owned()));
            }
            fill(&mut tx)?;
            tx.commit().map_err(db_error)
        })
    }

    /// A connection of its own, outside the pool, for state tied to a session (an advisory
    /// lock held as long as the connection lives). Call it, and the client, through
    /// [`blocking`].
    pub fn dedicated_client(&self) -> Result<Client> {
        self.inner.config.connect(NoTls).map_err(|e| {
            LedgerError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.inner.display,
                with_causes(&e)
            ))
        })
    }

    /// Runs `f` on a pooled connection (see [`blocking`]); the connection goes back to the
    /// pool unless `f` failed.
    pub fn with_client<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T> + Send,
    ) -> Result<T> {
        blocking(|| {
            let mut client = self.client()?;
            let result = f(&mut client);
            if result.is_ok() {
                self.give_back(client);
            }
            result
        })
    }

    /// A ledger's row `(blocks, last_hash)`, read with the statement prepared for it on a
    /// connection kept for tip reads: every transaction begins with one (see
    /// `PgJournal::fresh_tip`), and a prepared statement spares PostgreSQL parsing and
    /// planning it each time.
    fn read_tip(&self, ledger: &str) -> Result<Option<postgres::Row>> {
        blocking(|| {
            let reader = self
                .inner
                .tip_readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let (mut client, statement) = match reader {
                Some((client, statement)) if !client.is_closed() => (client, statement),
                _ => {
                    let mut client = self.client()?;
                    let statement = client
                        .prepare_typed(
                            "SELECT blocks, last_hash FROM quill_ledgers WHERE name = $1",
                            &[Type::TEXT],
                        )
                        .map_err(db_error)?;
                    (client, statement)
                }
            };
            let row = client.query_opt(&statement, &[&ledger]).map_err(db_error)?;
            let mut readers = self
                .inner
                .tip_readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if readers.len() < TIP_READERS_MAX {
                readers.push((client, statement));
            }
            Ok(row)
        })
    }

    fn client(&self) -> Result<Client> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self.dedicated_client(),
        }
    }

    /// Returns a connection with no transaction open to the pool.
    fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS_MAX {
            idle.push(client);
        }
    }
}

fn run_migrations(client: &mut Client) -> Result<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS quill_schema (version integer NOT NULL)")
        .map_err(db_error)?;
    let applied: Vec<i32> = client
        .query("SELECT DISTINCT version FROM quill_schema", &[])
        .map_err(db_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, migration) in pending_migrations(&applied)? {
        let mut tx = client.transaction().map_err(db_error)?;
        tx.batch_execute(migration).map_err(db_error)?;
        tx.execute(
            "INSERT INTO quill_schema (version) VALUES ($1)",
            &[&version],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        tracing::info!(version, "migrated the PostgreSQL schema");
    }
    Ok(())
}

/// The migrations a database that has `applied` still needs, in order; refuses a database
/// with a version this build does not know (a newer Quill migrated it).
fn pending_migrations(applied: &[i32]) -> Result<Vec<(i32, &'static str)>> {
    if let Some(unknown) = applied
        .iter()
        .filter(|v| !MIGRATIONS.iter().any(|(known, _)| known == *v))
        .max()
    {
        let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
        return Err(LedgerError::Storage(format!(
            "the PostgreSQL schema has version {unknown}, which this Quill does not know \
             (it knows up to {known}); upgrade Quill"
        )));
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|(version, _)| !applied.contains(version))
        .copied()
        .collect())
}

fn stored_ledger(row: &postgres::Row) -> StoredLedger {
    StoredLedger {
        name: row.get(0),
        strand_id: row.get(1),
        blocks: row.get::<_, i64>(2) as u64,
        control: row.get(3),
    }
}

fn insert_blocks(
    client: &mut impl postgres::GenericClient,
    ledger: &str,
    first: u64,
    blocks: &[(&[u8], Hash)],
) -> Result<()> {
    let BlockColumns {
        seqs,
        hashes,
        payloads,
    } = BlockColumns::of(first, blocks);
    // Typed parameters: one round trip, no prepared statement.
    client
        .query_typed(
            "INSERT INTO quill_blocks (ledger, seq, hash, payload)
             SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[])",
            &[
                (&ledger, Type::TEXT),
                (&seqs, Type::INT8_ARRAY),
                (&hashes, Type::BYTEA_ARRAY),
                (&payloads, Type::BYTEA_ARRAY),
            ],
        )
        .map_err(db_error)?;
    Ok(())
}

/// Blocks `first..` as the array parameters of `unnest($seqs, $hashes, $payloads)`.
struct BlockColumns<'a> {
    seqs: Vec<i64>,
    hashes: Vec<&'a [u8]>,
    payloads: Vec<&'a [u8]>,
}

impl<'a> BlockColumns<'a> {
    fn of(first: u64, blocks: &'a [(&'a [u8], Hash)]) -> BlockColumns<'a> {
        BlockColumns {
            seqs: (first as i64..).take(blocks.len()).collect(),
            hashes: blocks
                .iter()
                .map(|(_, h)| h.as_bytes().as_slice())
                .collect(),
            payloads: blocks.iter().map(|(p, _)| *p).collect(),
        }
    }
}

/// Maps a PostgreSQL error to what a caller can act on: connection loss, a read-only
/// server, a full disk or a serialisation failure are retryable (`Unavailable`).
pub fn db_error(e: postgres::Error) -> LedgerError {
    use postgres::error::SqlState;
    let Some(code) = e.code() else {
        return LedgerError::Unavailable(format!("PostgreSQL unreachable: {}", with_causes(&e)));
    };
    let retryable = [
        (
            SqlState::READ_ONLY_SQL_TRANSACTION,
            "PostgreSQL is read-only (a standby?)",
        ),
        (SqlState::DISK_FULL, "PostgreSQL is out of disk space"),
        (SqlState::OUT_OF_MEMORY, "PostgreSQL is out of memory"),
        (
            SqlState::T_R_SERIALIZATION_FAILURE,
            "PostgreSQL serialisation failure",
        ),
        (SqlState::T_R_DEADLOCK_DETECTED, "PostgreSQL deadlock"),
        (SqlState::ADMIN_SHUTDOWN, "PostgreSQL is shutting down"),
        (SqlState::CRASH_SHUTDOWN, "PostgreSQL crashed"),
        (SqlState::CANNOT_CONNECT_NOW, "PostgreSQL is starting up"),
        (
            SqlState::TOO_MANY_CONNECTIONS,
            "PostgreSQL has too many connections",
        ),
    ];
    // The error itself says only "db error"; what PostgreSQL said is its source.
    let said = with_causes(&e);
    match retryable.iter().find(|(c, _)| c == code) {
        Some((_, what)) => LedgerError::Unavailable(format!("{what}: {said}")),
        None => LedgerError::Storage(format!("PostgreSQL: {said}")),
    }
}

/// Runs `attempt` until it succeeds, fails with anything but [`LedgerError::Unavailable`], or
/// would retry past `wait`: PostgreSQL restarting or failing over is waited out. Each retried
/// failure is logged with `what`; the pauses double from `first_pause` up to `max_pause`.
pub fn retry_while_unavailable<T>(
    what: &str,
    wait: Duration,
    first_pause: Duration,
    max_pause: Duration,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = first_pause;
    loop {
        match attempt() {
            Err(LedgerError::Unavailable(detail))
                if std::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(%detail, retry_in = ?pause, "{what}; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(max_pause);
            }
            other => return other,
        }
    }
}

/// An error and its causes (`error connecting to server: Connection refused`): the postgres
/// crate keeps the useful part in the source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `postgresql://user:secret@host/db` → `postgresql://user:***@host/db` (and a `password`
/// parameter, or a key=value string's, likewise): a URL fit for messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url
            .split_whitespace()
            .map(|kv| match kv.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => kv.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    // libpq also takes the password as a query parameter: `…/db?password=secret`.
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (url, None),
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let mut redacted = match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    if let Some(query) = query {
        let parameters: Vec<&str> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => kv,
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

/// One ledger's journal in PostgreSQL, as one server sees it.
pub(crate) struct PgJournal {
    store: PostgresStore,
    ledger: String,
    /// Blocks this server knows are committed. Every block below it is published here (its
    /// writes in the conflict log) or belongs to a batch of this server's own whose COMMIT
    /// succeeded and which is about to be published (so nobody was told of it yet):
    /// `commit::catch_up` reads nothing when the tip is below it.
    len: AtomicU64,
    /// The connection whose transaction holds the tip lock, between `lock_tip` and `sync`
    /// (or from `sync_and_relock` to the next `lock_tip`).
    batch: Mutex<Option<Batch>>,
    /// `SELECT blocks FROM quill_ledgers WHERE name = '<ledger>' FOR UPDATE`, for the simple
    /// query protocol, which sends it together with `BEGIN` (and `COMMIT`) in one round trip.
    lock_sql: String,
    /// Whether the last `lock_tip` found blocks other servers committed.
    contended: std::sync::atomic::AtomicBool,
    /// Shares tip reads between transactions that begin at the same time (see `fresh_tip`).
    tip_reads: Mutex<TipReads>,
    tip_read_done: Condvar,
}

/// A batch's transaction, holding the tip lock.
struct Batch {
    client: Client,
    /// The tip read when `sync_and_relock` took the lock for a batch not sequenced yet.
    relocked: Option<u64>,
}

/// Tip reads in flight and done, numbered in the order they started.
#[derive(Default)]
struct TipReads {
    /// Numbers handed out so far (to readers and to callers of `fresh_tip`).
    ticket: u64,
    /// The read in flight, by its ticket.
    reading: Option<u64>,
    /// The latest finished read: its ticket and the tip it saw (an error is not kept).
    done: Option<(u64, u64)>,
}

impl PgJournal {
    pub fn new(store: PostgresStore, ledger: &str, blocks: u64) -> PgJournal {
        PgJournal {
            store,
            ledger: ledger.to_owned(),
            len: AtomicU64::new(blocks),
            batch: Mutex::new(None),
            lock_sql: format!(
                "SELECT blocks FROM quill_ledgers WHERE name = '{}' FOR UPDATE",
                ledger.replace('\'', "''")
            ),
            contended: std::sync::atomic::AtomicBool::new(false),
            tip_reads: Mutex::default(),
            tip_read_done: Condvar::new(),
        }
    }

    /// The number of committed blocks, as read by a query that started after this call did:
    /// so it includes every commit acknowledged before the call. Calls at the same time share
    /// one query instead of each taking a connection for its own (a transaction begins with
    /// this: see `commit::catch_up`).
    ///
    /// Why a query and not a `LISTEN`ed notification of each commit: PostgreSQL delivers a
    /// `NOTIFY` after its transaction committed, asynchronously, so another server's client
    /// can have its commit acknowledged and tell a client of this server, which begins here,
    /// before the notification arrives. A notification proves only that the tip is at least
    /// so far, never that nothing newer was acknowledged; only a read that started after the
    /// call proves that. Notifications could replace the polling of an idle ledger, and they
    /// could drop this read for a server committing alone if combined with a lease that keeps
    /// other servers from committing until its holder went back to reading; but the holder
    /// learns it lost the lease (its connection dropped, PostgreSQL released the lock) only
    /// later, so such a lease needs a time bound PostgreSQL's locks do not give.
    pub fn fresh_tip(&self) -> Result<u64> {
        let lock = || {
            self.tip_reads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let mut reads = lock();
        reads.ticket += 1;
        let mine = reads.ticket;
        loop {
            if let Some((ticket, tip)) = reads.done {
                if ticket > mine {
                    return Ok(tip);
                }
            }
            // A read in flight: wait for it. If it started after this call, its answer will
            // do; if before, a read starts after it (this one's, or a later call's to share).
            if reads.reading.is_none() {
                break;
            }
            reads = self
                .tip_read_done
                .wait(reads)
                .unwrap_or_else(PoisonError::into_inner);
        }
        reads.ticket += 1;
        let ticket = reads.ticket;
        reads.reading = Some(ticket);
        drop(reads);
        let read = self.committed_tip().map(|(blocks, _)| blocks);
        let mut reads = lock();
        reads.reading = None;
        if let Ok(tip) = read {
            if reads.done.is_none_or(|(done, _)| done < ticket) {
                reads.done = Some((ticket, tip));
            }
        }
        self.tip_read_done.notify_all();
        read
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::SeqCst)
    }

    /// Opens the batch's transaction and locks the tip, or takes the lock
    /// [`PgJournal::sync_and_relock`] already holds. Returns the blocks from `next` on that
    /// other servers committed (empty when this server is at the tip).
    pub fn lock_tip(&self, next: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let held = self.batch().take();
        blocking(|| {
            let (mut client, blocks) = match held {
                Some(Batch {
                    client,
                    relocked: Some(blocks),
                }) => (client, blocks),
                held => {
                    if let Some(Batch { client, .. }) = held {
                        self.roll_back(client);
                    }
                    let mut client = self.store.client()?;
                    // BEGIN and the lock in one round trip (the simple query protocol takes both).
                    let answer = client
                        .simple_query(&format!("BEGIN; {}", self.lock_sql))
                        .map_err(db_error)?;
                    let blocks = self.locked_blocks(&answer)?;
                    (client, blocks)
                }
            };
            // From here, an error drops the connection, which rolls the transaction back.
            if blocks < next {
                return Err(lost_blocks(&self.ledger, blocks, next));
            }
            self.contended.store(blocks > next, Ordering::Relaxed);
            let foreign = if blocks > next {
                fetch(&mut client, &self.ledger, next, blocks)?
            } else {
                Vec::new()
            };
            *self.batch() = Some(Batch {
                client,
                relocked: None,
            });
            Ok(foreign)
        })
    }

    /// The tip count in the answer to `lock_sql`.
    fn locked_blocks(&self, answer: &[postgres::SimpleQueryMessage]) -> Result<u64> {
        let blocks = answer
            .iter()
            .find_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            })
            .ok_or_else(|| LedgerError::UnknownLedger(self.ledger.clone()))?;
        blocks.parse().map_err(|_| {
            LedgerError::Storage(format!("quill_ledgers.blocks is not a count: {blocks}"))
        })
    }

    /// Inserts blocks `first..` in the batch's transaction and moves the tip (not committed
    /// until [`PgJournal::sync`]).
    pub fn append(&self, first: u64, blocks: &[(&[u8], Hash)]) -> Result<u64> {
        let Some((_, last_hash)) = blocks.last() else {
            return Ok(first);
        };
        let end = first + blocks.len() as u64;
        blocking(|| {
            let mut slot = self.batch();
            let client = match slot.as_mut() {
                Some(Batch {
                    client,
                    relocked: None,
                }) => client,
                _ => {
                    return Err(LedgerError::Storage(
                        "append without the tip lock (lock_tip first)".into(),
                    ))
                }
            };
            // The blocks and the tip in one statement: one round trip.
            let BlockColumns {
                seqs,
                hashes,
                payloads,
            } = BlockColumns::of(first, blocks);
            let appended = client
                .query_typed(
                    "WITH appended AS (
                         INSERT INTO quill_blocks (ledger, seq, hash, payload)
                         SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]))
                     UPDATE quill_ledgers SET blocks = $5, last_hash = $6 WHERE name = $1",
                    &[
                        (&self.ledger, Type::TEXT),
                        (&seqs, Type::INT8_ARRAY),
                        (&hashes, Type::BYTEA_ARRAY),
                        (&payloads, Type::BYTEA_ARRAY),
                        (&(end as i64), Type::INT8),
                        (&last_hash.as_bytes().as_slice(), Type::BYTEA),
                    ],
                )
                .map_err(db_error);
            if appended.is_err() {
                // Dropping the connection rolls the transaction back.
                slot.take();
            }
            appended.map(|_| end)
        })
    }

    /// Commits the batch's transaction (nothing to do when none is open). After an error
    /// the outcome may be unknown: see [`PgJournal::committed_tip`].
    pub fn sync(&self, end: u64) -> Result<()> {
        let Some(Batch { mut client, .. }) = self.batch().take() else {
            return Ok(());
        };
        blocking(|| -> Result<()> {
            client.batch_execute("COMMIT").map_err(db_error)?;
            self.store.give_back(client);
            Ok(())
        })?;
        self.len.fetch_max(end, Ordering::SeqCst);
        Ok(())
    }

    /// Like [`PgJournal::sync`], and in the same round trip opens the next batch's
    /// transaction and locks the tip again (`COMMIT; BEGIN; SELECT … FOR UPDATE`), for a
    /// committer that has the next batch waiting already: the next [`PgJournal::lock_tip`]
    /// takes this lock instead of a round trip of its own. The answer comes once the lock is
    /// taken, so with another server committing too it waits for that server's batch: worth
    /// it only while this server commits alone (see [`PgJournal::contended`]). An error
    /// after the COMMIT was sent leaves its outcome unknown, as for `sync`.
    pub fn sync_and_relock(&self, end: u64) -> Result<()> {
        let Some(Batch { mut client, .. }) = self.batch().take() else {
            return Ok(());
        };
        let blocks = blocking(|| {
            let answer = client
                .simple_query(&format!("COMMIT; BEGIN; {}", self.lock_sql))
                .map_err(db_error)?;
            self.locked_blocks(&answer)
        })?;
        *self.batch() = Some(Batch {
            client,
            relocked: Some(blocks),
        });
        self.len.fetch_max(end, Ordering::SeqCst);
        Ok(())
    }

    /// Whether the last batch found blocks other servers committed since the one before.
    pub fn contended(&self) -> bool {
        self.contended.load(Ordering::Relaxed)
    }

    /// Abandons the batch's transaction, if one is open (or the next one's lock, taken early).
    pub fn rollback(&self) {
        if let Some(Batch { client, .. }) = self.batch().take() {
            blocking(|| self.roll_back(client));
        }
    }

    /// Rolls back `client`'s transaction and pools it (dropped if that fails). Call through
    /// [`blocking`].
    fn roll_back(&self, mut client: Client) {
        if client.batch_execute("ROLLBACK").is_ok() {
            self.store.give_back(client);
        }
    }

    /// The committed tip: number of blocks and the last block's hash, read on a fresh
    /// transaction (without the lock).
    pub fn committed_tip(&self) -> Result<(u64, Hash)> {
        let row = self.store.read_tip(&self.ledger)?;
        let row = row.ok_or_else(|| LedgerError::UnknownLedger(self.ledger.clone()))?;
        Ok((row.get::<_, i64>(0) as u64, hash_column(&row, 1)?))
    }

    /// Committed blocks `from..to`, read without the lock (committed blocks never change
    /// order; only redaction rewrites a payload, keeping its hashes).
    pub fn fetch(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        self.store
            .with_client(|client| fetch(client, &self.ledger, from, to))
    }

    /// Marks blocks up to `end` as known to this server (after it applied blocks that other
    /// servers committed).
    pub fn saw(&self, end: u64) {
        self.len.fetch_max(end, Ordering::SeqCst);
    }

    pub fn read(&self, sequence_no: u64) -> Result<Vec<u8>> {
        let row = self.store.with_client(|client| {
            client
                .query_typed_opt(
                    "SELECT payload FROM quill_blocks WHERE ledger = $1 AND seq = $2",
                    &[
                        (&self.ledger, Type::TEXT),
                        (&(sequence_no as i64), Type::INT8),
                    ],
                )
                .map_err(db_error)
        })?;
        match row {
            Some(row) => Ok(row.get(0)),
            None => Err(LedgerError::UnknownBlock(format!(
                "sequenceNo {sequence_no} of ledger {} is not in PostgreSQL",
                self.ledger
            ))),
        }
    }

    /// Block hashes `from..to`, in order (for the digest tree, without decoding blocks).
    pub fn hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        let rows = self.store.with_client(|client| {
            client
                .query(
                    "SELECT hash FROM quill_blocks WHERE ledger = $1 AND seq >= $2 AND seq < $3
                     ORDER BY seq",
                    &[&self.ledger, &(from as i64), &(to as i64)],
                )
                .map_err(db_error)
        })?;
        if rows.len() as u64 != to - from {
            return Err(gap(&self.ledger, from, to, rows.len()));
        }
        rows.iter().map(|row| hash_column(row, 0)).collect()
    }

    pub fn scan(
        &self,
        from_seq: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let len = self.len();
        if from_seq > len {
            return Err(LedgerError::UnknownBlock(format!(
                "sequenceNo {from_seq} is beyond the journal's {len} blocks"
            )));
        }
        let mut next = from_seq;
        while next < len {
            let to = (next + SCAN_CHUNK_BLOCKS as u64).min(len);
            for (seq, payload) in self.fetch(next, to)? {
                if !visit(seq, &payload)? {
                    return Ok(());
                }
            }
            next = to;
        }
        Ok(())
    }

    /// Replaces one block's payload (redaction keeps every hash of the block).
    pub fn rewrite(&self, sequence_no: u64, payload: &[u8]) -> Result<()> {
        let updated = self.store.with_client(|client| {
            client
                .execute(
                    "UPDATE quill_blocks SET payload = $3 WHERE ledger = $1 AND seq = $2",
                    &[&self.ledger, &(sequence_no as i64), &payload],
                )
                .map_err(db_error)
        })?;
        if updated != 1 {
            return Err(LedgerError::UnknownBlock(format!(
                "sequenceNo {sequence_no} of ledger {} is not in PostgreSQL",
                self.ledger
            )));
        }
        Ok(())
    }

    /// Checks the rows form blocks `0..len` with no gap (the hashes are checked by the
    /// caller's chain walk).
    pub fn verify_all(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let len = self.len();
        let row = self.store.with_client(|client| {
            client
                .query_one(
                    "SELECT count(*), coalesce(max(seq) + 1, 0) FROM quill_blocks
                     WHERE ledger = $1 AND seq < $2",
                    &[&self.ledger, &(len as i64)],
                )
                .map_err(db_error)
        })?;
        let (count, end): (i64, i64) = (row.get(0), row.get(1));
        if count as u64 != len || end as u64 != len {
            return Err(gap(&self.ledger, 0, len, count as usize));
        }
        progress(len, len);
        Ok(())
    }

    fn batch(&self) -> std::sync::MutexGuard<'_, Option<Batch>> {
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        self.rollback();
    }
}

fn fetch(client: &mut Client, ledger: &str, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let rows = client
        .query_typed(
            "SELECT seq, payload FROM quill_blocks WHERE ledger = $1 AND seq >= $2 AND seq < $3
             ORDER BY seq",
            &[
                (&ledger, Type::TEXT),
                (&(from as i64), Type::INT8),
                (&(to as i64), Type::INT8),
            ],
        )
        .map_err(db_error)?;
    let blocks: Vec<(u64, Vec<u8>)> = rows
        .iter()
        .map(|row| (row.get::<_, i64>(0) as u64, row.get(1)))
        .collect();
    let contiguous = blocks.len() as u64 == to - from
        && blocks
            .iter()
            .enumerate()
            .all(|(i, (seq, _))| *seq == from + i as u64);
    if !contiguous {
        return Err(gap(ledger, from, to, blocks.len()));
    }
    Ok(blocks)
}

fn hash_column(row: &postgres::Row, index: usize) -> Result<Hash> {
    let bytes: &[u8] = row.get(index);
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| LedgerError::Storage("a hash column in PostgreSQL is not 32 bytes".into()))
}

fn gap(ledger: &str, from: u64, to: u64, found: usize) -> LedgerError {
    LedgerError::Corrupted {
        block_address: crate::BlockAddress {
            strand_id: ledger.to_owned(),
            sequence_no: from,
        },
        detail: format!(
            "PostgreSQL holds {found} rows for blocks {from}..{to} of ledger {ledger}: blocks are missing"
        ),
    }
}

fn lost_blocks(ledger: &str, blocks: u64, seen: u64) -> LedgerError {
    LedgerError::Corrupted {
        block_address: crate::BlockAddress {
            strand_id: ledger.to_owned(),
            sequence_no: blocks,
        },
        detail: format!(
            "PostgreSQL holds {blocks} blocks of ledger {ledger} but this server saw {seen} \
             committed: committed blocks were lost (a failover to an asynchronous standby?)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{pending_migrations, redact_url, PgJournal, PostgresStore, MIGRATIONS};
    use quill_verify::Hash;

    /// Whether another connection finds the ledger's tip row locked.
    fn tip_locked(server: &quill_pgtest::PgServer, database: &str) -> bool {
        let mut other = postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={database}",
                server.port()
            ),
            postgres::NoTls,
        )
        .unwrap();
        other
            .simple_query("SELECT blocks FROM quill_ledgers WHERE name = 'l' FOR UPDATE NOWAIT")
            .is_err()
    }

    #[test]
    fn a_relocked_tip_serves_the_next_batch_and_is_released_by_its_commit_or_rollback() {
        let server = quill_pgtest::PgServer::shared().unwrap();
        let url = server.create_database("relock").unwrap();
        let store = PostgresStore::connect(&url).unwrap();
        let hash = |n: u8| Hash([n; 32]);
        store
            .insert_ledger("l", "strand", &[(b"genesis".as_slice(), hash(0))], None)
            .unwrap();
        let journal = PgJournal::new(store.clone(), "l", 1);

        assert!(journal.lock_tip(1).unwrap().is_empty());
        journal.append(1, &[(b"one".as_slice(), hash(1))]).unwrap();
        journal.sync_and_relock(2).unwrap();
        // Block 1 is committed (readable elsewhere and counted), and the tip stays locked
        // for the next batch.
        assert_eq!(journal.committed_tip().unwrap(), (2, hash(1)));
        assert_eq!(journal.len(), 2);
        assert!(tip_locked(server, "relock"));

        // The next batch takes that lock: no round trip, and nothing new from others.
        assert!(journal.lock_tip(2).unwrap().is_empty());
        journal.append(2, &[(b"two".as_slice(), hash(2))]).unwrap();
        journal.sync(3).unwrap();
        assert!(!tip_locked(server, "relock"));
        assert_eq!(journal.fetch(1, 3).unwrap().len(), 2);

        // A lock taken for a batch that does not come is given up.
        assert!(journal.lock_tip(3).unwrap().is_empty());
        journal
            .append(3, &[(b"three".as_slice(), hash(3))])
            .unwrap();
        journal.sync_and_relock(4).unwrap();
        journal.rollback();
        assert!(!tip_locked(server, "relock"));
        assert_eq!(journal.committed_tip().unwrap(), (4, hash(3)));

        // Blocks another server committed meanwhile are returned by the next lock_tip.
        let other = PgJournal::new(store, "l", 4);
        assert!(other.lock_tip(4).unwrap().is_empty());
        other.append(4, &[(b"four".as_slice(), hash(4))]).unwrap();
        other.sync(5).unwrap();
        let foreign = journal.lock_tip(4).unwrap();
        assert_eq!(foreign, vec![(4, b"four".to_vec())]);
        assert!(journal.contended());
        journal.rollback();
    }

    #[test]
    fn migrations_apply_in_version_order_whatever_was_applied_before() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        let pending = |applied: &[i32]| -> Vec<i32> {
            pending_migrations(applied)
                .unwrap()
                .iter()
                .map(|(v, _)| *v)
                .collect()
        };
        assert_eq!(pending(&[]), versions);
        assert!(pending(&versions).is_empty());
        // A database migrated by a build that knew a later version but not an earlier one
        // (branches merged in another order) still gets the earlier one.
        let last = *versions.last().unwrap();
        assert_eq!(pending(&[1, last]), versions[1..versions.len() - 1]);
        let error = pending_migrations(&[1, last + 1]).unwrap_err().to_string();
        assert!(error.contains(&format!("version {}", last + 1)), "{error}");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgresql://quill:s3cret@db1:5432,db2:5432/quill"),
            "postgresql://quill:***@db1:5432,db2:5432/quill"
        );
        assert_eq!(
            redact_url("host=db user=quill password=s3cret"),
            "host=db user=quill password=***"
        );
        assert_eq!(
            redact_url("postgresql://quill@db/quill"),
            "postgresql://quill@db/quill"
        );
        assert_eq!(
            redact_url("postgresql://quill@db/quill?sslmode=disable&password=s3cret"),
            "postgresql://quill@db/quill?sslmode=disable&password=***"
        );
        assert_eq!(
            redact_url("postgres://quill:s3cret@db?password=s3cret"),
            "postgres://quill:***@db?password=***"
        );
    }
}
