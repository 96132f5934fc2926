//! The transparency logs of ledgers kept in PostgreSQL (`--storage postgres://`): one log per
//! ledger, whichever servers serve it. A row of `quill_tlogs` per ledger (schema migration 4
//! in quill-ledger's `journal/postgres.rs`) holds the latest signed checkpoint, the newest
//! cosigned one and the log's verifier key; every server serves those (the tiles and proofs
//! derive from the journal's blocks, which every server reads from PostgreSQL too).
//!
//! One server at a time signs a ledger's checkpoints and submits them to witnesses: the one
//! holding the ledger's signer lease, a session-level advisory lock `(LOCK_CLASS, lock_id)`
//! on this server's lease connection (one connection for all the ledgers it signs), as the
//! journal streams' leases do (`stream_store.rs`). PostgreSQL releases the locks when that
//! connection drops, so another server takes over at its next checkpoint tick. Taking a lease
//! bumps the row's `signer_epoch`, and a checkpoint is written only under the writer's epoch,
//! so a server that lost its lease without noticing cannot write after the one that took
//! over: the row's checkpoints only grow, and each new signer reads them first and signs only
//! a tree that extends them.
//!
//! The key: the first checkpoint records the log's verifier key; a server whose key differs
//! refuses to take the lease (it would fork the log under one origin) with an error naming
//! both keys, and serves the checkpoints the others sign. The private key is never stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use quill_ledger::postgres::Client;
use quill_ledger::{postgres_blocking, postgres_error, LedgerError, PostgresStore};
use quill_tlog::log::{CheckpointStore, LogError};
use quill_verify::tlog::{Checkpoint, VerifierKey};

/// First key of every signer lease's advisory lock (the second is the row's `lock_id`), apart
/// from the stream leases' and the schema migration's.
const LOCK_CLASS: i32 = 0x5154_4c47; // "QTLG"

/// Why a server does not sign a ledger's log.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The log was started with another key: signing with this one would fork it.
    #[error(
        "ledger {ledger}: the transparency log in PostgreSQL is signed with the key {recorded} \
         (key id {recorded_id}), and this server's log key is {ours} (key id {our_id}); refusing \
         to sign so as not to fork the log: give every server the same --log-key file"
    )]
    KeyMismatch {
        ledger: String,
        recorded: String,
        recorded_id: String,
        ours: String,
        our_id: String,
    },
    #[error("transparency log: {0}")]
    Database(#[from] LedgerError),
}

/// A ledger's log as PostgreSQL keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredLog {
    /// The latest signed checkpoint note.
    pub checkpoint: Option<String>,
    /// The newest checkpoint note with its witnesses' cosignatures.
    pub cosigned: Option<String>,
    /// The log's verifier key (`name+keyid+base64`), recorded with the first checkpoint.
    pub verifier_key: Option<String>,
}

/// Every ledger's log in one PostgreSQL database, and this server's signer leases.
pub struct PgLogs {
    store: PostgresStore,
    leases: Mutex<Leases>,
}

/// The lease connection and the leases it holds, by ledger.
#[derive(Default)]
struct Leases {
    client: Option<Client>,
    held: BTreeMap<String, Held>,
}

/// One ledger's signer lease: the epoch it took, and its lock's second key.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    lock_id: i32,
}

impl Leases {
    /// Forgets every lease after a failure on the connection: closing it releases the locks
    /// (a connection that is merely slow must not keep them while this server stops signing).
    fn drop_connection(&mut self) {
        self.held.clear();
        if let Some(client) = self.client.take() {
            postgres_blocking(move || drop(client));
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        // Closing a connection blocks on it, which a runtime's worker must not do unannounced.
        self.drop_connection();
    }
}

fn key_id_hex(key: &str) -> String {
    VerifierKey::parse(key).map_or_else(
        |_| "unreadable".into(),
        |key| key.key_id().iter().map(|b| format!("{b:02x}")).collect(),
    )
}

impl PgLogs {
    pub fn new(store: PostgresStore) -> PgLogs {
        PgLogs {
            store,
            leases: Mutex::new(Leases::default()),
        }
    }

    fn leases(&self) -> MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ledgers whose log this server signs.
    pub fn signing(&self) -> Vec<String> {
        self.leases().held.keys().cloned().collect()
    }

    /// The ledger's log (nothing before its row was created by [`PgLogs::lead`]).
    pub fn read(&self, ledger: &str) -> Result<StoredLog, LedgerError> {
        let row = self.store.with_client(|client| {
            client
                .query_opt(
                    "SELECT checkpoint, cosigned, verifier_key FROM quill_tlogs WHERE ledger = $1",
                    &[&ledger],
                )
                .map_err(postgres_error)
        })?;
        Ok(row.map_or_else(StoredLog::default, |row| StoredLog {
            checkpoint: row.get(0),
            cosigned: row.get(1),
            verifier_key: row.get(2),
        }))
    }

    /// Holds or takes the signer lease of `ledger`'s log for a server signing with `ours`:
    /// `true` while it holds it, `false` while another server does. Refuses if the log's
    /// recorded key is not `ours`.
    pub fn lead(&self, ledger: &str, ours: &VerifierKey) -> Result<bool, LeaseError> {
        let ours = ours.to_string();
        let mismatch = |recorded: String| LeaseError::KeyMismatch {
            ledger: ledger.to_owned(),
            recorded_id: key_id_hex(&recorded),
            recorded,
            our_id: key_id_hex(&ours),
            ours: ours.clone(),
        };
        let mut leases = self.leases();
        if leases.held.contains_key(ledger) {
            return Ok(true);
        }
        let row = self.store.with_client(|client| {
            let select = "SELECT lock_id, verifier_key FROM quill_tlogs WHERE ledger = $1";
            if let Some(row) = client
                .query_opt(select, &[&ledger])
                .map_err(postgres_error)?
            {
                return Ok(row);
            }
            // The ledger's first tick on any server: its log's row.
            client
                .execute(
                    "INSERT INTO quill_tlogs (ledger) VALUES ($1) ON CONFLICT (ledger) DO NOTHING",
                    &[&ledger],
                )
                .map_err(postgres_error)?;
            client.query_one(select, &[&ledger]).map_err(postgres_error)
        })?;
        let (lock_id, recorded): (i32, Option<String>) = (row.get(0), row.get(1));
        if let Some(recorded) = recorded.filter(|recorded| *recorded != ours) {
            return Err(mismatch(recorded));
        }
        let state: &mut Leases = &mut leases;
        let taken = postgres_blocking(|| {
            if state.client.as_ref().is_none_or(Client::is_closed) {
                state.client = Some(self.store.dedicated_client()?);
            }
            let client = state.client.as_mut().expect("connected above");
            let locked: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LOCK_CLASS, &lock_id],
                )
                .map_err(postgres_error)?
                .get(0);
            if !locked {
                return Ok(None);
            }
            let row = client
                .query_opt(
                    "UPDATE quill_tlogs SET signer_epoch = signer_epoch + 1 WHERE ledger = $1 \
                     RETURNING signer_epoch, verifier_key",
                    &[&ledger],
                )
                .map_err(postgres_error)?;
            let taken = row.map(|row| (row.get::<_, i64>(0), row.get::<_, Option<String>>(1)));
            let refused = taken
                .as_ref()
                .is_none_or(|(_, recorded)| recorded.as_ref().is_some_and(|r| *r != ours));
            if refused {
                client
                    .execute(
                        "SELECT pg_advisory_unlock($1, $2)",
                        &[&LOCK_CLASS, &lock_id],
                    )
                    .map_err(postgres_error)?;
            }
            Ok::<_, LedgerError>(taken)
        });
        match taken {
            Ok(Some((_, Some(recorded)))) if recorded != ours => Err(mismatch(recorded)),
            Ok(Some((epoch, _))) => {
                tracing::info!(%ledger, epoch, "signing the ledger's transparency log");
                leases
                    .held
                    .insert(ledger.to_owned(), Held { epoch, lock_id });
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                leases.drop_connection();
                Err(e.into())
            }
        }
    }

    /// Runs `update` (which must change one row, fenced by `$2`, the lease's epoch, and take
    /// `$1`, the ledger) on the lease connection; an update that changes nothing means the
    /// lease is gone (another server took it over), and it is released here.
    fn write_under_lease(
        &self,
        ledger: &str,
        update: &str,
        params: &[&(dyn quill_ledger::postgres::types::ToSql + Sync)],
    ) -> Result<(), LogError> {
        let mut leases = self.leases();
        let Some(Held { epoch, lock_id }) = leases.held.get(ledger).copied() else {
            return Err(LogError::Store(format!(
                "this server does not hold the signer lease of ledger {ledger}'s log"
            )));
        };
        let Some(client) = leases.client.as_mut() else {
            return Err(LogError::Store("the lease connection is gone".into()));
        };
        let mut all: Vec<&(dyn quill_ledger::postgres::types::ToSql + Sync)> =
            vec![&ledger, &epoch];
        all.extend_from_slice(params);
        let written = postgres_blocking(|| {
            let written = client.execute(update, &all)?;
            if written == 0 {
                // Fenced off: the lock is of no use any more (the next `lead` takes it anew).
                client.execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&LOCK_CLASS, &lock_id],
                )?;
            }
            Ok::<_, quill_ledger::postgres::Error>(written)
        });
        match written {
            Ok(1) => Ok(()),
            Ok(_) => {
                leases.held.remove(ledger);
                tracing::warn!(%ledger, "lost the signer lease of the ledger's transparency log");
                Err(LogError::Store(format!(
                    "ledger {ledger}: another server took over signing the log"
                )))
            }
            Err(e) => {
                leases.drop_connection();
                Err(LogError::Store(postgres_error(e).to_string()))
            }
        }
    }
}

/// A ledger's checkpoints in `quill_tlogs`, written under this server's signer lease.
#[derive(Debug)]
pub struct PgCheckpoints {
    logs: Arc<PgLogs>,
    ledger: String,
    /// The log's verifier key, recorded with the first checkpoint.
    verifier_key: String,
}

impl std::fmt::Debug for PgLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLogs")
            .field("store", &self.store)
            .finish()
    }
}

impl PgCheckpoints {
    pub fn new(logs: Arc<PgLogs>, ledger: &str, verifier_key: &VerifierKey) -> PgCheckpoints {
        PgCheckpoints {
            logs,
            ledger: ledger.to_owned(),
            verifier_key: verifier_key.to_string(),
        }
    }
}

impl CheckpointStore for PgCheckpoints {
    fn save_signed(&mut self, checkpoint: &Checkpoint, note: &str) -> Result<(), LogError> {
        self.logs.write_under_lease(
            &self.ledger,
            "UPDATE quill_tlogs SET checkpoint = $3, size = $4, \
               verifier_key = coalesce(verifier_key, $5) \
             WHERE ledger = $1 AND signer_epoch = $2 AND size < $4 \
               AND (verifier_key IS NULL OR verifier_key = $5)",
            &[&note, &(checkpoint.size as i64), &self.verifier_key],
        )
    }

    fn save_cosigned(&mut self, checkpoint: &Checkpoint, note: &str) -> Result<(), LogError> {
        self.logs.write_under_lease(
            &self.ledger,
            "UPDATE quill_tlogs SET cosigned = $3, cosigned_size = $4 \
             WHERE ledger = $1 AND signer_epoch = $2 AND coalesce(cosigned_size, 0) <= $4",
            &[&note, &(checkpoint.size as i64)],
        )
    }
}
