//! How a ledger is opened (limits, id seed, storage) and what opening it repaired.

use crate::storage::Storage;
use crate::Limits;

/// Options for opening or creating a ledger.
#[derive(Debug, Clone, Default)]
pub struct LedgerOptions {
    /// Limits enforced on transactions.
    pub limits: Limits,
    /// Seed for ids (tests); `None` uses OS randomness.
    pub id_seed: Option<u64>,
    /// Tests only: reintroduces two serializability holes this engine once had (an index
    /// lookup guarded only its key, not the documents it returned; a transaction that wrote
    /// nothing committed without validation), so tests can show their checker catches them.
    #[doc(hidden)]
    pub occ_read_holes: bool,
    /// Where the ledger's files live: the OS file system unless a test simulates a disk.
    pub storage: Storage,
    /// Where PostgreSQL ledgers keep their derived-state caches: `<cache_dir>/<name>`, kept
    /// across restarts and caught up from PostgreSQL on open (see `cache`). `None`: a private
    /// directory under the system's temporary directory, built from all blocks and removed
    /// at close.
    pub cache_dir: Option<std::path::PathBuf>,
    /// A mirror's copy of another ledger: it grows only by
    /// [`Ledger::append_verified`](crate::Ledger::append_verified), so a block of its own
    /// would fork it from what it copies; every commit that writes is refused.
    pub replica: bool,
}

/// What `Ledger::open` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes of an incomplete last frame that were cut off (0 if the tail was clean).
    pub torn_tail_bytes: u64,
    /// Blocks replayed from the journal into derived state.
    pub blocks_replayed: u64,
    /// Digest-tree leaves rebuilt from the journal.
    pub tree_leaves_rebuilt: u64,
    /// Derived state reflected blocks the journal no longer holds (its tail was lost or cut)
    /// and was rebuilt from the journal from scratch; or redactions were completed.
    pub state_rebuilt: bool,
    /// Redactions whose erasure this open completed: journal frames still holding the data
    /// were erased, then derived state was rebuilt so no old copy of it is left in redb.
    pub redactions_completed: u64,
    /// A PostgreSQL ledger's cache that was thrown away and built again from all blocks,
    /// and why.
    pub cache_discarded: Option<CacheDiscarded>,
}

/// Why opening a PostgreSQL ledger threw its cached derived state away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDiscarded {
    /// It belonged to another ledger of the same name (deleted and created again: another
    /// strand id).
    OtherLedger,
    /// It reflected more blocks than PostgreSQL holds (blocks lost in a failover, a database
    /// restored to an earlier point).
    AheadOfJournal,
    /// Its last block is not PostgreSQL's block at that position (another database, or
    /// blocks lost and others committed in their place).
    Forked,
    /// Its identity file or its state could not be read.
    Unreadable,
}
