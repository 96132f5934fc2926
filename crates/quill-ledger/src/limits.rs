//! Every limit the engine enforces, with its reason. Each is configurable through
//! [`Limits`]; the defaults are QLDB's published quotas.

use std::time::Duration;

/// QLDB's document limit, measured as Ion binary.
pub const DOCUMENT_SIZE_MAX_BYTES: usize = 128 * 1024;
/// QLDB's limit on documents written per transaction.
pub const DOCUMENTS_PER_TRANSACTION_MAX: usize = 40;
/// QLDB's transaction size limit (changes plus metadata).
pub const TRANSACTION_SIZE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// QLDB's transaction timeout: a transaction older than this can no longer commit.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// QLDB's limit on active tables per ledger.
pub const ACTIVE_TABLES_MAX: usize = 20;
/// QLDB's limit on tables per ledger, counting dropped (inactive) ones.
pub const TABLES_MAX: usize = 40;
/// QLDB's limit on indexes per table.
pub const INDEXES_PER_TABLE_MAX: usize = 5;
/// QLDB's limit on the statement text length (characters).
pub const STATEMENT_LENGTH_MAX_CHARS: usize = 100_000;
/// Table names: QLDB allows 1–128 characters.
pub const TABLE_NAME_MAX_CHARS: usize = 128;
/// Indexed field names: QLDB allows up to 128 characters.
pub const INDEX_FIELD_MAX_CHARS: usize = 128;
/// Commits taken into one group commit (one fsync). Bounds the latency a batch can add and
/// the memory a batch can hold.
pub const GROUP_COMMIT_MAX: usize = 256;
/// Batches kept as in-memory layers over derived state before one is written to redb with
/// them. Bounds the layers every read looks through (a point read checks each).
pub const LAYERS_MAX: usize = 64;
/// Revisions kept in layers before they are written to redb. Bounds their memory (a revision
/// is at most a document, so this is at most 2,048 × 128 KiB = 256 MiB, typically ~1 MiB).
pub const LAYER_REVISIONS_MAX: usize = 2_048;
/// One journal frame can hold at most this much: the transaction limit plus room for the
/// block's hashes and metadata. Anything larger on disk is corruption, not data.
pub const FRAME_PAYLOAD_MAX_BYTES: usize = TRANSACTION_SIZE_MAX_BYTES * 2;

/// Deepest nesting of containers in a document. ion-rs encodes, hashes, compares and drops
/// values recursively; past a few hundred levels that overflows a thread's stack, so deeper
/// documents are refused with an error instead (QLDB users store records, not deep trees).
pub const DOCUMENT_DEPTH_MAX: usize = 100;

/// Page cache of the derived-state database. Bounds the engine's memory: without it redb's
/// default cache (1 GiB) makes resident memory grow with history until that size.
pub const STATE_CACHE_BYTES: usize = 128 * 1024 * 1024;

const _: () = assert!(DOCUMENT_SIZE_MAX_BYTES <= TRANSACTION_SIZE_MAX_BYTES);
const _: () = assert!(TRANSACTION_SIZE_MAX_BYTES < FRAME_PAYLOAD_MAX_BYTES);
const _: () = assert!(ACTIVE_TABLES_MAX <= TABLES_MAX);

/// The limits one ledger enforces. Defaults are QLDB's quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// See [`DOCUMENT_SIZE_MAX_BYTES`].
    pub document_size_max_bytes: usize,
    /// See [`DOCUMENTS_PER_TRANSACTION_MAX`].
    pub documents_per_transaction_max: usize,
    /// See [`TRANSACTION_SIZE_MAX_BYTES`].
    pub transaction_size_max_bytes: usize,
    /// See [`TRANSACTION_TIMEOUT`].
    pub transaction_timeout: Duration,
    /// See [`ACTIVE_TABLES_MAX`].
    pub active_tables_max: usize,
    /// See [`TABLES_MAX`].
    pub tables_max: usize,
    /// See [`INDEXES_PER_TABLE_MAX`].
    pub indexes_per_table_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            document_size_max_bytes: DOCUMENT_SIZE_MAX_BYTES,
            documents_per_transaction_max: DOCUMENTS_PER_TRANSACTION_MAX,
            transaction_size_max_bytes: TRANSACTION_SIZE_MAX_BYTES,
            transaction_timeout: TRANSACTION_TIMEOUT,
            active_tables_max: ACTIVE_TABLES_MAX,
            tables_max: TABLES_MAX,
            indexes_per_table_max: INDEXES_PER_TABLE_MAX,
        }
    }
}
