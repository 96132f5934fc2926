//! What journal streams (`stream_store.rs`) and journal exports (`export_store.rs`) share to
//! run each of their jobs on exactly one of the servers of a PostgreSQL store.
//!
//! A job's lease is a session-level advisory lock `(class, lock_id)` (the class names the kind
//! of job, `lock_id` is the job row's identity) taken on a connection of the lease's own, so
//! PostgreSQL frees it as soon as that connection drops: a server that dies, is SIGKILLed or
//! loses its network loses its leases at once. Taking a lease bumps the row's `runner_epoch`,
//! and the runner writes only under its epoch, so a runner that lost its lease without
//! noticing cannot overwrite the work of the server that took over. Every server polls
//! ([`keep_polling`]) for jobs whose lock no session holds.

use std::sync::Arc;
use std::time::Duration;

use quill_ledger::postgres::Client;
use quill_ledger::{postgres_error, LedgerError, PostgresStore};

/// SQL that is true when no session holds the advisory lock whose class is the SQL expression
/// `class` and whose key is `lock_id` (both `integer`).
pub fn lock_is_free(class: &str, lock_id: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_locks l \
           WHERE l.locktype = 'advisory' AND l.granted \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.classid = ({class})::int4::oid AND l.objid = ({lock_id})::oid \
             AND l.objsubid = 2)"
    )
}

/// Opens a connection of its own and takes the advisory lock `(class, lock_id)` on it, held
/// until the connection closes; `None` if another session holds it. Call it through
/// `postgres_blocking`.
pub fn lock_on_own_connection(
    store: &PostgresStore,
    class: i32,
    lock_id: i32,
) -> Result<Option<Client>, LedgerError> {
    let mut client = store.dedicated_client()?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&class, &lock_id])
        .map_err(postgres_error)?
        .get(0);
    Ok(locked.then_some(client))
}

/// Runs `poll` on a blocking thread every `interval`, until the task is aborted.
pub async fn keep_polling(interval: Duration, what: &str, poll: impl Fn() + Send + Sync + 'static) {
    let poll = Arc::new(poll);
    loop {
        tokio::time::sleep(interval).await;
        let poll = poll.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || poll()).await {
            tracing::error!("{what}: {e}");
        }
    }
}
