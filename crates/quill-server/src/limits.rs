//! Every limit the server enforces on its inputs, each with its reason. Going over one gives the
//! client a typed 4xx error that names it; none of them can panic the server.

use std::time::Duration;

/// Largest HTTP request body read. A statement is at most 100,000 characters (400 KB of UTF-8)
/// and its parameters at most 1 MiB each as text, so 8 MiB leaves room for a few large
/// parameters while bounding the memory one request can take.
pub const REQUEST_BODY_MAX_BYTES: usize = 8 * 1024 * 1024;
/// QLDB's statement length limit, in characters.
pub const STATEMENT_LENGTH_MAX_CHARS: usize = 100_000;
/// QLDB's limit on one binary parameter (a `ValueHolder.IonBinary`).
pub const PARAMETER_BINARY_MAX_BYTES: usize = 128 * 1024;
/// QLDB's limit on one text parameter (a `ValueHolder.IonText`).
pub const PARAMETER_TEXT_MAX_BYTES: usize = 1024 * 1024;
/// Parameters per statement. QLDB documents none; this bounds the work one request can ask for.
pub const PARAMETERS_PER_STATEMENT_MAX: usize = 1_000;
/// Container nesting accepted in a parameter. Decoding Ion recurses once per level, so an
/// unbounded depth could exhaust a thread's stack (a debug build overflows 2 MiB at about 200
/// levels); real documents are far shallower.
pub const PARAMETER_DEPTH_MAX: usize = 64;
/// Values in one result page (QLDB leaves page size undocumented; drivers accept any).
pub const PAGE_VALUES_MAX: usize = 200;
/// Encoded bytes in one result page, so one reply stays small even with large documents.
pub const PAGE_BYTES_MAX: usize = 1024 * 1024;
/// Result sets still being paged within one transaction. Drivers read one or a few at a time.
pub const CURSORS_PER_TRANSACTION_MAX: usize = 64;
/// QLDB's transaction timeout.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a session lives (QLDB: 13–17 minutes, with or without a running transaction).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// QLDB's concurrent active sessions per ledger.
pub const SESSIONS_PER_LEDGER_MAX: usize = 1_500;
/// Ledgers one server holds. QLDB's default quota is 5 per account and region; a self-hosted
/// server can hold more, but each open ledger costs file handles and memory.
pub const LEDGERS_MAX: usize = 100;
/// QLDB's tag limit per resource.
pub const TAGS_PER_RESOURCE_MAX: usize = 200;
/// QLDB's tag key length limit, in characters.
pub const TAG_KEY_MAX_CHARS: usize = 128;
/// QLDB's tag value length limit, in characters.
pub const TAG_VALUE_MAX_CHARS: usize = 256;
/// ListLedgers page size limit (QLDB: 1–100).
pub const LIST_RESULTS_MAX: usize = 100;
/// Simultaneous client connections; more wait in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 4_096;
/// How long a client may take to send a request's body once its headers arrived. A request
/// body of at most [`REQUEST_BODY_MAX_BYTES`] takes well under a second on any real link; a
/// client trickling bytes is cut off with 408 instead of holding its connection and its share of
/// [`UNVERIFIED_BODY_BUDGET_BYTES`].
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Body bytes (as declared by `Content-Length`; [`REQUEST_BODY_MAX_BYTES`] when not declared)
/// that requests whose signature cannot be checked before their body may be reading at once.
/// Without it, 4,096 connections × 8 MiB could be held before any signature is checked; with
/// it, such reads hold at most 64 MiB (eight full-size bodies, or thousands of normal ones),
/// and a request that finds the budget spent gets 503 `CapacityExceededException`, which the
/// drivers retry.
pub const UNVERIFIED_BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// Encoded result bytes one transaction may hold (unread pages included). The evaluator gets
/// what is left of it as its budget for everything a statement holds (scanned and joined
/// rows, sort and group buffers, projected rows), so it stops once over; the encoded result
/// is then checked exactly.
pub const TRANSACTION_RESULT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Allowed difference between a request's signing time and ours (AWS uses 15 minutes).
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(15 * 60);
/// Entries in a credentials file; bounds the memory a mistaken file can take.
pub const CREDENTIALS_MAX: usize = 10_000;
/// How often expired sessions are swept away (and their transactions aborted).
pub const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How long graceful shutdown waits for in-flight requests before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const _: () = assert!(PARAMETER_BINARY_MAX_BYTES < REQUEST_BODY_MAX_BYTES);
const _: () = assert!(PARAMETER_TEXT_MAX_BYTES < REQUEST_BODY_MAX_BYTES);
const _: () = assert!(STATEMENT_LENGTH_MAX_CHARS * 4 < REQUEST_BODY_MAX_BYTES);
const _: () = assert!(PAGE_VALUES_MAX > 0 && PAGE_BYTES_MAX > 0);
const _: () = assert!(TRANSACTION_TIMEOUT.as_secs() < SESSION_LIFETIME.as_secs());
const _: () = assert!(REQUEST_BODY_MAX_BYTES <= UNVERIFIED_BODY_BUDGET_BYTES);
const _: () = assert!(PAGE_BYTES_MAX <= TRANSACTION_RESULT_BYTES_MAX);

/// The limits that tests (and operators) may want to change. Defaults are QLDB's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// See [`TRANSACTION_TIMEOUT`]; also handed to the ledger engine.
    pub transaction_timeout: Duration,
    /// See [`SESSION_LIFETIME`].
    pub session_lifetime: Duration,
    /// See [`SESSIONS_PER_LEDGER_MAX`].
    pub sessions_per_ledger_max: usize,
    /// See [`PAGE_VALUES_MAX`].
    pub page_values_max: usize,
    /// See [`PAGE_BYTES_MAX`].
    pub page_bytes_max: usize,
    /// See [`TRANSACTION_RESULT_BYTES_MAX`] (`quill serve --result-max-bytes`).
    pub transaction_result_bytes_max: usize,
    /// See [`BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// See [`UNVERIFIED_BODY_BUDGET_BYTES`].
    pub unverified_body_budget_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            transaction_timeout: TRANSACTION_TIMEOUT,
            session_lifetime: SESSION_LIFETIME,
            sessions_per_ledger_max: SESSIONS_PER_LEDGER_MAX,
            page_values_max: PAGE_VALUES_MAX,
            page_bytes_max: PAGE_BYTES_MAX,
            transaction_result_bytes_max: TRANSACTION_RESULT_BYTES_MAX,
            body_read_timeout: BODY_READ_TIMEOUT,
            unverified_body_budget_bytes: UNVERIFIED_BODY_BUDGET_BYTES,
        }
    }
}
