//! QLDB sessions and their transactions: the state machine drivers depend on.
//!
//! - A session belongs to one ledger and holds at most one open transaction.
//! - A statement error leaves the transaction open; the driver decides to abort.
//! - An OCC conflict at commit ends the transaction, not the session.
//! - A transaction older than the timeout answers `InvalidSessionException`
//!   "Transaction {id} has expired" (drivers match that text) and is aborted.
//! - A session older than its lifetime answers `InvalidSessionException` "Session … has
//!   expired"; drivers then open a new session and retry.
//!
//! Concurrency: the session map is behind one mutex held only to look a session up, insert or
//! remove one. Each session has its own mutex, held for the whole command (a commit: until its
//! block is handed to the committer), so statements of different sessions never wait for each
//! other here. What may block (an fsync, a long scan, a PostgreSQL round trip, a session busy
//! with another command) runs on blocking threads; the rest runs on the async worker that
//! decoded the request ([`Sessions::try_run_inline`]), which never blocks: a commit there is
//! awaited ([`PendingCommit`]), and a statement there may read only so much
//! ([`INLINE_READS_MAX`]) before it is run again on a blocking thread.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ion_rs::Element;
use quill_ledger::{CommitReceipt, Ledger, LedgerError, Transaction};
use quill_partiql::{ExecuteLimits, PartiqlError};
use quill_verify::{CommitDigest, Hash};
use rand::RngCore as _;

use crate::error::{ApiError, ErrorKind, Plane};
use crate::ion_codec::encode_binary;
use crate::limits::{ServerLimits, CURSORS_PER_TRANSACTION_MAX};
use crate::metrics::Metrics;
use crate::permissions::Caller;
use crate::registry::Registry;

/// Stored documents, revisions and index entries a statement run on an async worker may read
/// (a few lookups' worth); one that reads more (a scan) is undone and run again on a blocking
/// thread, so no async worker is held up by a long statement or many disk reads.
pub const INLINE_READS_MAX: u64 = 64;

/// The largest `SendCommand` body whose statement runs on an async worker: the statement's
/// parsing, its parameters' hashing and its documents' encoding grow with it.
pub const INLINE_REQUEST_BYTES_MAX: usize = 16 * 1024;

/// The IAM action every `SendCommand` needs on its ledger.
const SEND_COMMAND: &str = "qldb:SendCommand";
/// The permissions mode whose ledgers check each statement.
const STANDARD_MODE: &str = "STANDARD";

/// A command of `SendCommand`, already validated and decoded.
#[derive(Debug, Clone)]
pub enum Command {
    /// Opens a session on a ledger.
    StartSession {
        /// The ledger.
        ledger_name: String,
    },
    /// Opens a transaction.
    StartTransaction,
    /// Runs one PartiQL statement.
    ExecuteStatement {
        /// Must be the open transaction.
        transaction_id: String,
        /// Statement text.
        statement: String,
        /// Decoded parameters.
        parameters: Vec<Element>,
    },
    /// Reads the next page of a result.
    FetchPage {
        /// Must be the open transaction.
        transaction_id: String,
        /// From the previous page.
        next_page_token: String,
    },
    /// Commits after checking the client's digest.
    CommitTransaction {
        /// Must be the open transaction.
        transaction_id: String,
        /// The client's CommitDigest bytes.
        commit_digest: Vec<u8>,
    },
    /// Aborts the open transaction, if any.
    AbortTransaction,
    /// Ends the session (aborting its transaction).
    EndSession,
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// StartSession.
    SessionStarted {
        /// The new token.
        session_token: String,
    },
    /// StartTransaction.
    TransactionStarted {
        /// The engine's transaction id.
        transaction_id: String,
    },
    /// ExecuteStatement (the first page) or FetchPage.
    Page {
        /// Each value as a complete Ion binary stream.
        values: Vec<Vec<u8>>,
        /// Present when more values remain.
        next_page_token: Option<String>,
        /// Stored documents, revisions and index entries the statement read (on its first
        /// page; later pages are cut from the finished result and read nothing).
        read_ios: u64,
    },
    /// CommitTransaction.
    Committed {
        /// The transaction id.
        transaction_id: String,
        /// The server's digest (equal to the client's).
        commit_digest: Hash,
        /// Document revisions written, plus one entry per index of each one's table.
        write_ios: u64,
    },
    /// AbortTransaction or EndSession.
    Done,
}

/// A transaction opened by StartTransaction.
struct OpenTransaction {
    transaction: Transaction,
    id: String,
    started: Instant,
    digest: CommitDigest,
    /// Results still being paged, by page token. Valid only while the transaction is open.
    cursors: HashMap<String, VecDeque<Vec<u8>>>,
    /// Encoded bytes held in `cursors`, bounded by `transaction_result_bytes_max`.
    cursor_bytes: usize,
}

struct Session {
    id: String,
    ledger: Ledger,
    ledger_name: Arc<str>,
    created: Instant,
    transaction: Option<OpenTransaction>,
    /// The id of a transaction the sweeper aborted for age, so the next command on it still
    /// hears "Transaction {id} has expired" rather than "No open transaction".
    expired_transaction_id: Option<String>,
    /// Set when the session was removed from the map while a command waited for it.
    ended: bool,
}

/// A session in the map, with its ledger's name outside the session's own lock: the map's lock
/// is then never held while waiting for a session (whose command may be running a statement
/// or an fsync).
#[derive(Clone)]
struct Entry {
    ledger_name: Arc<str>,
    session: Arc<Mutex<Session>>,
}

#[derive(Default)]
struct SessionMap {
    by_token: HashMap<String, Entry>,
    per_ledger: HashMap<Arc<str>, usize>,
}

/// Every open session.
pub struct Sessions {
    map: Mutex<SessionMap>,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is updated by single assignments; a panicking holder cannot leave
    // it half-changed, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A random token of `bytes` random bytes in standard base64 (the charset drivers accept).
fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    base64::engine::general_purpose::STANDARD.encode(buffer)
}

fn invalid_session(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidSession, message)
}

fn transaction_expired(id: &str) -> ApiError {
    invalid_session(format!("Transaction {id} has expired"))
}

impl Sessions {
    /// An empty session table.
    pub fn new(limits: ServerLimits, metrics: Arc<Metrics>) -> Sessions {
        Sessions {
            map: Mutex::new(SessionMap::default()),
            limits,
            metrics,
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        lock(&self.map).by_token.len()
    }

    /// True when no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs one command for `caller`. Blocking: call from a blocking thread.
    ///
    /// Every command needs `qldb:SendCommand` on the session's ledger; in a STANDARD-mode
    /// ledger each statement also needs its PartiQL actions ([`crate::permissions`]).
    pub fn run(
        &self,
        registry: &Registry,
        caller: &Caller,
        session_token: Option<&str>,
        command: Command,
    ) -> Result<Outcome, ApiError> {
        if let Command::StartSession { ledger_name } = &command {
            caller.authorize(SEND_COMMAND, &format!("ledger/{ledger_name}"))?;
            return self.start_session(registry, ledger_name);
        }
        let token = session_token
            .ok_or_else(|| ApiError::bad_request("SessionToken is required for this command"))?;
        let session = self.find(token)?;
        let session = lock(&session);
        self.run_locked(registry, caller, token, session, command)
    }

    /// Runs `command` on the calling async worker when that cannot block, so the worker that
    /// decoded the request need not hand it to a blocking thread and wait to be woken again:
    /// StartTransaction, AbortTransaction and FetchPage (memory only); ExecuteStatement of a
    /// request of at most [`INLINE_REQUEST_BYTES_MAX`] bytes, reading at most
    /// [`INLINE_READS_MAX`] values; CommitTransaction, whose block is prepared here and then
    /// awaited ([`PendingCommit::finish`]). Only on an idle session: a busy one's lock may be
    /// held through a statement. Otherwise the command comes back ([`Inline::Blocking`]) for
    /// [`Sessions::run`] on a blocking thread.
    pub fn try_run_inline(
        &self,
        registry: &Registry,
        caller: &Caller,
        session_token: Option<&str>,
        command: Command,
        request_bytes: usize,
    ) -> Inline {
        let inline = match &command {
            // With ledgers in PostgreSQL, StartTransaction first reads the committed tip
            // there: a round trip, for a blocking thread.
            Command::StartTransaction => registry.postgres().is_none(),
            // A caller restricted by a policy has its ledger's permissions mode looked up,
            // which with ledgers in PostgreSQL may query there.
            Command::ExecuteStatement { .. } => {
                request_bytes <= INLINE_REQUEST_BYTES_MAX
                    && (registry.postgres().is_none() || caller.is_administrator())
            }
            Command::AbortTransaction
            | Command::FetchPage { .. }
            | Command::CommitTransaction { .. } => true,
            Command::StartSession { .. } | Command::EndSession => false,
        };
        let Some(token) = session_token.filter(|_| inline) else {
            return Inline::Blocking(command);
        };
        let session = match self.find(token) {
            Ok(session) => session,
            Err(error) => return Inline::Done(Err(error)),
        };
        let session = match session.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Inline::Blocking(command),
        };
        if session.created.elapsed() > self.limits.session_lifetime {
            // Ending it waits for the session's other commands: not on this thread.
            return Inline::Blocking(command);
        }
        let mut session = match self.admit(registry, caller, token, session) {
            Ok(session) => session,
            Err(error) => return Inline::Done(Err(error)),
        };
        match command {
            Command::CommitTransaction {
                transaction_id,
                commit_digest,
            } => match self.begin_commit(&mut session, &transaction_id, &commit_digest) {
                Ok(pending) => Inline::Commit(Box::new(pending)),
                Err(error) => Inline::Done(Err(error)),
            },
            Command::ExecuteStatement {
                transaction_id,
                statement,
                parameters,
            } => {
                let executed = self.execute(
                    registry,
                    caller,
                    &mut session,
                    &transaction_id,
                    &statement,
                    &parameters,
                    Some(INLINE_READS_MAX),
                );
                match executed {
                    Ok(outcome) => Inline::Done(Ok(outcome)),
                    Err(Unfinished::Failed(error)) => Inline::Done(Err(error)),
                    Err(Unfinished::ReadLimit) => Inline::Blocking(Command::ExecuteStatement {
                        transaction_id,
                        statement,
                        parameters,
                    }),
                }
            }
            command => Inline::Done(self.dispatch(registry, caller, token, session, command)),
        }
    }

    /// The session with this token.
    fn find(&self, token: &str) -> Result<Arc<Mutex<Session>>, ApiError> {
        lock(&self.map)
            .by_token
            .get(token)
            .map(|entry| Arc::clone(&entry.session))
            .ok_or_else(|| invalid_session("Session token is not valid or the session has ended"))
    }

    /// Runs a command other than StartSession on its locked session.
    fn run_locked(
        &self,
        registry: &Registry,
        caller: &Caller,
        token: &str,
        session: MutexGuard<'_, Session>,
        command: Command,
    ) -> Result<Outcome, ApiError> {
        let session = self.admit(registry, caller, token, session)?;
        self.dispatch(registry, caller, token, session, command)
    }

    /// Checks that the session may run a command (open, allowed, not expired, its ledger
    /// healthy), ending it when it may not.
    fn admit<'s>(
        &self,
        registry: &Registry,
        caller: &Caller,
        token: &str,
        session: MutexGuard<'s, Session>,
    ) -> Result<MutexGuard<'s, Session>, ApiError> {
        if session.ended {
            return Err(invalid_session("The session has ended"));
        }
        caller.authorize(SEND_COMMAND, &format!("ledger/{}", session.ledger_name))?;
        if session.created.elapsed() > self.limits.session_lifetime {
            let id = session.id.clone();
            drop(session);
            self.remove(token);
            return Err(invalid_session(format!("Session {id} has expired")));
        }
        if registry.postgres().is_some() && session.ledger.fault().is_some() {
            // The registry reopens such a ledger from PostgreSQL; a new session gets the new
            // handle (drivers start one on InvalidSessionException and retry).
            drop(session);
            self.remove(token);
            return Err(invalid_session(
                "The ledger is being reopened after a storage failure: start a new session",
            ));
        }
        Ok(session)
    }

    /// Runs a command on its admitted session, blocking as long as it takes.
    fn dispatch(
        &self,
        registry: &Registry,
        caller: &Caller,
        token: &str,
        mut session: MutexGuard<'_, Session>,
        command: Command,
    ) -> Result<Outcome, ApiError> {
        match command {
            Command::StartSession { .. } => Err(ApiError::internal("StartSession handled above")),
            Command::StartTransaction => self.start_transaction(&mut session),
            Command::ExecuteStatement {
                transaction_id,
                statement,
                parameters,
            } => self
                .execute(
                    registry,
                    caller,
                    &mut session,
                    &transaction_id,
                    &statement,
                    &parameters,
                    None,
                )
                .map_err(|unfinished| match unfinished {
                    Unfinished::Failed(error) => error,
                    Unfinished::ReadLimit => {
                        ApiError::internal("a statement without a read limit reached one")
                    }
                }),
            Command::FetchPage {
                transaction_id,
                next_page_token,
            } => self.fetch_page(&mut session, &transaction_id, &next_page_token),
            Command::CommitTransaction {
                transaction_id,
                commit_digest,
            } => {
                let pending = self.begin_commit(&mut session, &transaction_id, &commit_digest)?;
                // The session stays locked through the commit, as a command holds it.
                pending.finish_blocking()
            }
            Command::AbortTransaction => {
                session.transaction = None;
                Ok(Outcome::Done)
            }
            Command::EndSession => {
                drop(session);
                self.remove(token);
                Ok(Outcome::Done)
            }
        }
    }

    fn start_session(&self, registry: &Registry, ledger_name: &str) -> Result<Outcome, ApiError> {
        let (ledger, _) = registry
            .get(ledger_name)
            .map_err(|error| match error.kind {
                ErrorKind::ResourceNotFound => {
                    ApiError::bad_request(format!("Ledger {ledger_name} does not exist"))
                }
                _ => ApiError::bad_request(error.message),
            })?;
        let session_token = random_token(48);
        let ledger_name: Arc<str> = Arc::from(ledger_name);
        let session = Session {
            id: random_token(12),
            ledger,
            ledger_name: Arc::clone(&ledger_name),
            created: Instant::now(),
            transaction: None,
            expired_transaction_id: None,
            ended: false,
        };
        let mut map = lock(&self.map);
        let count = map.per_ledger.entry(Arc::clone(&ledger_name)).or_insert(0);
        if *count >= self.limits.sessions_per_ledger_max {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Ledger {ledger_name} has {} active sessions, the maximum",
                    self.limits.sessions_per_ledger_max
                ),
            ));
        }
        *count += 1;
        map.by_token.insert(
            session_token.clone(),
            Entry {
                ledger_name,
                session: Arc::new(Mutex::new(session)),
            },
        );
        Ok(Outcome::SessionStarted { session_token })
    }

    /// Removes a session and aborts its transaction.
    fn remove(&self, token: &str) {
        let removed = {
            let mut map = lock(&self.map);
            let removed = map.by_token.remove(token);
            if let Some(entry) = &removed {
                if let Some(count) = map.per_ledger.get_mut(&entry.ledger_name) {
                    *count = count.saturating_sub(1);
                }
            }
            removed
        };
        // Waits for a running command of that session, outside the map's lock.
        if let Some(entry) = removed {
            let mut session = lock(&entry.session);
            session.transaction = None;
            session.ended = true;
        }
    }

    /// Ends every session (all ledgers when `ledger_name` is `None`), aborting transactions.
    pub fn end_all(&self, ledger_name: Option<&str>) {
        let tokens: Vec<String> = lock(&self.map)
            .by_token
            .iter()
            .filter(|(_, entry)| ledger_name.is_none_or(|name| &*entry.ledger_name == name))
            .map(|(token, _)| token.clone())
            .collect();
        for token in tokens {
            self.remove(&token);
        }
    }

    /// Ends expired sessions and aborts expired transactions of idle sessions.
    pub fn sweep(&self) {
        let sessions: Vec<(String, Arc<Mutex<Session>>)> = lock(&self.map)
            .by_token
            .iter()
            .map(|(token, entry)| (token.clone(), Arc::clone(&entry.session)))
            .collect();
        for (token, session) in sessions {
            // A busy session is checked by its own command instead.
            let Ok(mut session) = session.try_lock() else {
                continue;
            };
            if session.created.elapsed() > self.limits.session_lifetime {
                drop(session);
                self.remove(&token);
                continue;
            }
            let expired = session
                .transaction
                .as_ref()
                .is_some_and(|tx| tx.started.elapsed() > self.limits.transaction_timeout);
            if expired {
                let aborted = session.transaction.take();
                session.expired_transaction_id = aborted.map(|tx| tx.id);
            }
        }
    }

    fn start_transaction(&self, session: &mut Session) -> Result<Outcome, ApiError> {
        if let Some(open) = &session.transaction {
            if open.started.elapsed() <= self.limits.transaction_timeout {
                return Err(ApiError::bad_request(format!(
                    "Transaction {} is already open on this session",
                    open.id
                )));
            }
            session.transaction = None;
        }
        session.expired_transaction_id = None;
        let transaction = session
            .ledger
            .begin()
            .map_err(|e| ApiError::from_ledger(&e, Plane::Data))?;
        let id = transaction.id().to_string();
        session.transaction = Some(OpenTransaction {
            digest: CommitDigest::new(&id),
            transaction,
            id: id.clone(),
            started: Instant::now(),
            cursors: HashMap::new(),
            cursor_bytes: 0,
        });
        Ok(Outcome::TransactionStarted { transaction_id: id })
    }

    /// The open transaction with this id, or the error drivers expect.
    fn open_transaction<'a>(
        &self,
        session: &'a mut Session,
        transaction_id: &str,
    ) -> Result<&'a mut OpenTransaction, ApiError> {
        let timeout = self.limits.transaction_timeout;
        match &session.transaction {
            None if session.expired_transaction_id.as_deref() == Some(transaction_id) => {
                return Err(transaction_expired(transaction_id));
            }
            None => return Err(ApiError::bad_request("No open transaction")),
            Some(open) if open.id != transaction_id => {
                return Err(ApiError::bad_request(format!(
                    "Transaction {transaction_id} is not the open transaction of this session"
                )));
            }
            Some(open) if open.started.elapsed() > timeout => {
                session.transaction = None;
                return Err(transaction_expired(transaction_id));
            }
            Some(_) => {}
        }
        session
            .transaction
            .as_mut()
            .ok_or_else(|| ApiError::bad_request("No open transaction"))
    }

    /// Runs a statement. With `read_limit`, a statement that reads more than that is undone as
    /// if it had never arrived ([`Unfinished::ReadLimit`]), for the caller to run it again
    /// without a limit.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        registry: &Registry,
        caller: &Caller,
        session: &mut Session,
        transaction_id: &str,
        statement: &str,
        parameters: &[Element],
        read_limit: Option<u64>,
    ) -> Result<Outcome, Unfinished> {
        // Administrators are never restricted, so only other callers pay for the registry
        // lookup (a lock and a copy of the ledger's attributes) on every statement. Fails
        // closed: a ledger whose mode cannot be read is treated as STANDARD.
        let enforced = caller.is_read_only()
            || !caller.is_administrator()
                && !registry
                    .get(&session.ledger_name)
                    .is_ok_and(|(_, control)| control.permissions_mode != STANDARD_MODE);
        let ledger_name = session.ledger_name.clone();
        let open = self.open_transaction(session, transaction_id)?;
        if open.cursors.len() >= CURSORS_PER_TRANSACTION_MAX {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "More than {CURSORS_PER_TRANSACTION_MAX} unread results in one transaction"
                ),
            )
            .into());
        }
        // The client folded this statement in before sending it, whatever its outcome (unless
        // it is to run again). The ledger records the same digest, so it is computed once.
        let hashed = quill_partiql::HashedStatement::new(statement, parameters);
        let statement_digest = hashed.digest();
        if enforced {
            let authorized = caller.authorize_statement(
                &ledger_name,
                &mut open.transaction,
                statement,
                parameters,
            );
            if let Err(error) = authorized {
                open.digest.add_statement_digest(&statement_digest);
                return Err(error.into());
            }
        }
        let reads_before = open.transaction.read_ios();
        let savepoint = open.transaction.savepoint();
        // The evaluator stops as soon as the rows it projects exceed what is left of the
        // budget, before the whole result is built; `first_page` then checks the exact
        // encoded size.
        let remaining = ExecuteLimits {
            result_bytes_max: self
                .limits
                .transaction_result_bytes_max
                .saturating_sub(open.cursor_bytes),
        };
        open.transaction.limit_reads(read_limit);
        let result = quill_partiql::execute_hashed(&mut open.transaction, &hashed, remaining);
        open.transaction.limit_reads(None);
        if matches!(
            &result,
            Err(PartiqlError::Ledger(LedgerError::ReadLimitReached))
        ) {
            // Rolled back by the evaluator: the transaction is as it was before.
            return Err(Unfinished::ReadLimit);
        }
        open.digest.add_statement_digest(&statement_digest);
        self.metrics.statement(result.is_ok());
        match result {
            Ok(values) => {
                let read_ios = open.transaction.read_ios() - reads_before;
                let page = self.first_page(open, values, read_ios);
                if page.is_err() {
                    // Like any failed statement, it leaves the transaction as it was.
                    open.transaction.rollback_to(savepoint);
                }
                Ok(page?)
            }
            Err(error) => {
                let ends_transaction = matches!(
                    &error,
                    PartiqlError::Ledger(LedgerError::TransactionExpired { .. })
                );
                let api_error = match error {
                    PartiqlError::ResultTooLarge { .. } => {
                        result_budget_exceeded(self.limits.transaction_result_bytes_max)
                    }
                    _ => statement_error(&error),
                };
                if ends_transaction {
                    session.transaction = None;
                }
                Err(api_error.into())
            }
        }
    }

    /// Encodes a statement's result and returns its first page. The encoded result counts
    /// against the transaction's result budget together with the unread results it holds;
    /// going over fails the statement with `LimitExceededException` (each value is dropped as
    /// soon as it is encoded, so the check runs before the encoded copy outgrows the budget).
    fn first_page(
        &self,
        open: &mut OpenTransaction,
        values: Vec<Element>,
        read_ios: u64,
    ) -> Result<Outcome, ApiError> {
        let budget = self.limits.transaction_result_bytes_max;
        let mut encoded = VecDeque::with_capacity(values.len());
        let mut bytes = open.cursor_bytes;
        for value in values {
            let value = encode_binary(&value)?;
            bytes += value.len();
            if bytes > budget {
                return Err(result_budget_exceeded(budget));
            }
            encoded.push_back(value);
        }
        let (page, next_page_token) = self.page_from(open, encoded);
        Ok(Outcome::Page {
            values: page,
            next_page_token,
            read_ios,
        })
    }

    fn fetch_page(
        &self,
        session: &mut Session,
        transaction_id: &str,
        token: &str,
    ) -> Result<Outcome, ApiError> {
        let open = self.open_transaction(session, transaction_id)?;
        let remaining = open.cursors.remove(token).ok_or_else(|| {
            ApiError::bad_request("NextPageToken is not valid for the open transaction")
        })?;
        open.cursor_bytes -= remaining.iter().map(Vec::len).sum::<usize>();
        let (page, next_page_token) = self.page_from(open, remaining);
        Ok(Outcome::Page {
            read_ios: 0,
            values: page,
            next_page_token,
        })
    }

    /// One page taken from `remaining`; the rest stays in the transaction under a fresh
    /// token (FirstPage and FetchPage page alike).
    fn page_from(
        &self,
        open: &mut OpenTransaction,
        mut remaining: VecDeque<Vec<u8>>,
    ) -> (Vec<Vec<u8>>, Option<String>) {
        let page = take_page(&mut remaining, &self.limits);
        let next_page_token = (!remaining.is_empty()).then(|| {
            let token = random_token(24);
            open.cursor_bytes += remaining.iter().map(Vec::len).sum::<usize>();
            open.cursors.insert(token.clone(), remaining);
            token
        });
        (page, next_page_token)
    }

    /// Checks the client's CommitDigest and takes the transaction out of the session for
    /// committing: the session has no open transaction from here on, whatever the outcome.
    fn begin_commit(
        &self,
        session: &mut Session,
        transaction_id: &str,
        client_digest: &[u8],
    ) -> Result<PendingCommit, ApiError> {
        let open = self.open_transaction(session, transaction_id)?;
        let digest = open.digest.value();
        if digest.as_bytes().as_slice() != client_digest {
            // The statement stream differs from what the client sent (a replayed, lost or
            // reordered request): committing would store something the client did not mean.
            session.transaction = None;
            return Err(ApiError::bad_request(format!(
                "CommitDigest does not match the statements this server received for transaction \
                 {transaction_id}; the transaction was aborted"
            )));
        }
        let open = session
            .transaction
            .take()
            .ok_or_else(|| ApiError::internal("no tx"))?;
        Ok(PendingCommit {
            answer: CommitAnswer {
                transaction_id: open.id,
                commit_digest: digest,
                write_ios: open.transaction.write_ios(),
                metrics: Arc::clone(&self.metrics),
            },
            transaction: open.transaction,
        })
    }
}

/// What [`Sessions::try_run_inline`] did with a command.
pub enum Inline {
    /// Ran it.
    Done(Result<Outcome, ApiError>),
    /// Checked a commit and took its transaction: await [`PendingCommit::finish`].
    Commit(Box<PendingCommit>),
    /// Left it for [`Sessions::run`] on a blocking thread.
    Blocking(Command),
}

/// Why a statement did not produce its result.
enum Unfinished {
    /// It failed (the transaction is as it was before it).
    Failed(ApiError),
    /// It read more than it was allowed to and was undone, uncounted: run it again unbounded.
    ReadLimit,
}

impl From<ApiError> for Unfinished {
    fn from(error: ApiError) -> Self {
        Unfinished::Failed(error)
    }
}

/// A transaction whose CommitDigest matched, on its way to the ledger.
pub struct PendingCommit {
    transaction: Transaction,
    answer: CommitAnswer,
}

/// What a commit's answer needs besides the ledger's outcome.
struct CommitAnswer {
    transaction_id: String,
    commit_digest: Hash,
    write_ios: u64,
    metrics: Arc<Metrics>,
}

impl PendingCommit {
    /// Commits without blocking the calling async worker; answers once the block is durable.
    pub async fn finish(self) -> Result<Outcome, ApiError> {
        let started = Instant::now();
        let committed = self.transaction.commit_async().await;
        self.answer.outcome(committed, started)
    }

    /// Commits, blocking the calling thread until the block is durable.
    fn finish_blocking(self) -> Result<Outcome, ApiError> {
        let started = Instant::now();
        let committed = self.transaction.commit();
        self.answer.outcome(committed, started)
    }
}

impl CommitAnswer {
    fn outcome(
        self,
        committed: Result<CommitReceipt, LedgerError>,
        started: Instant,
    ) -> Result<Outcome, ApiError> {
        match committed {
            Ok(_receipt) => {
                self.metrics.commit(started.elapsed());
                Ok(Outcome::Committed {
                    transaction_id: self.transaction_id,
                    commit_digest: self.commit_digest,
                    write_ios: self.write_ios,
                })
            }
            Err(error) => {
                if error.is_occ_conflict() {
                    self.metrics.occ_conflict();
                }
                Err(ApiError::from_ledger(&error, Plane::Data))
            }
        }
    }
}

/// A statement went over the transaction's result budget: in the evaluator (its result, or the
/// rows it held while running) or when encoded.
fn result_budget_exceeded(budget: usize) -> ApiError {
    ApiError::new(
        ErrorKind::LimitExceeded,
        format!(
            "Statement result exceeds the transaction's result budget of {budget} bytes \
             (results not yet fetched, and the rows a statement holds while running, included); \
             select fewer or smaller values, filter more, or raise \
             `quill serve --result-max-bytes`"
        ),
    )
}

/// Maps a failed statement to the exception drivers expect. Only engine errors can be OCC,
/// expiry or limits; everything else is the statement's fault.
fn statement_error(error: &PartiqlError) -> ApiError {
    match error {
        PartiqlError::Ledger(ledger_error) => ApiError::from_ledger(ledger_error, Plane::Data),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Takes the next page: at most `page_values_max` values and about `page_bytes_max` bytes, but
/// always at least one value so a single large value still makes progress.
fn take_page(remaining: &mut VecDeque<Vec<u8>>, limits: &ServerLimits) -> Vec<Vec<u8>> {
    let mut page = Vec::new();
    let mut bytes = 0;
    while page.len() < limits.page_values_max {
        let Some(next) = remaining.front() else { break };
        if !page.is_empty() && bytes + next.len() > limits.page_bytes_max {
            break;
        }
        bytes += next.len();
        page.extend(remaining.pop_front());
    }
    page
}

/// Elapsed time in whole milliseconds, as `TimingInformation` carries it.
pub fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(values: usize, bytes: usize) -> ServerLimits {
        ServerLimits {
            page_values_max: values,
            page_bytes_max: bytes,
            ..ServerLimits::default()
        }
    }

    #[test]
    fn pages_are_bounded_by_count_and_bytes() {
        let mut queue: VecDeque<Vec<u8>> = (0..10).map(|i| vec![i; 10]).collect();
        assert_eq!(take_page(&mut queue, &limits(3, 1000)).len(), 3);
        assert_eq!(take_page(&mut queue, &limits(100, 25)).len(), 2);
        let mut big: VecDeque<Vec<u8>> = VecDeque::from(vec![vec![0; 100], vec![0; 1]]);
        assert_eq!(
            take_page(&mut big, &limits(100, 10)).len(),
            1,
            "one large value still goes"
        );
        assert_eq!(take_page(&mut big, &limits(100, 10)).len(), 1);
        assert!(take_page(&mut big, &limits(100, 10)).is_empty());
    }

    #[test]
    fn tokens_use_the_charset_drivers_accept() {
        for _ in 0..100 {
            let token = random_token(48);
            assert!((4..=1024).contains(&token.len()));
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=-".contains(&b)));
        }
    }

    #[test]
    fn unknown_tokens_are_invalid_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), Default::default()).unwrap();
        let sessions = Sessions::new(ServerLimits::default(), Arc::default());
        let error = sessions
            .run(
                &registry,
                &Caller::administrator(),
                Some("garbage"),
                Command::StartTransaction,
            )
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidSession);
        let error = sessions
            .run(
                &registry,
                &Caller::administrator(),
                None,
                Command::StartSession {
                    ledger_name: "nope".into(),
                },
            )
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::BadRequest);
        assert!(sessions.is_empty());
    }
}
