//! A PostgreSQL ledger's derived state (documents, history, indexes, catalog, the digest
//! tree) on this server's disk: a cache of the blocks in PostgreSQL, kept across restarts so
//! that opening the ledger replays only the blocks committed since.
//!
//! Layout of `<cache root>/<ledger name>/` (the root is `LedgerOptions::cache_dir`; a
//! server's is `--data-dir/cache`):
//! ```text
//! LOCK                    flock'ed by the handle using the cache: one writer per cache
//! cache.ion               {ledger, strandId, formatVersion}: whose blocks the cache reflects
//! state.redb, tree/       derived state and the digest tree, as in a ledger directory
//! redactions-pending.ion  redactions whose erasure is not complete (see `redaction`)
//! ```
//!
//! PostgreSQL is the truth; the cache is trusted only after [`validate`] checked that it
//! belongs to the same ledger (strand id: a ledger deleted and created again under the same
//! name has another) and to the same chain: the hash of the last block derived state applied
//! (stored with it, in the same redb transaction) must be PostgreSQL's hash of that block.
//! A cache ahead of PostgreSQL (blocks lost in a failover, a database restored to an earlier
//! point) or forked from it (another database under the same URL) is thrown away and built
//! again. The digest tree checks its own last durable checkpoint against the journal
//! (`catch_up_tree`), and redb is crash-safe, so a process killed at any point leaves a cache
//! that either passes these checks or is rebuilt.
//!
//! When the cache is locked (another process shares the data directory, or a handle of this
//! one still has it open), the ledger gets a private temporary cache beside it instead,
//! `<ledger name>.tmp-XXXXXX`, built from all blocks and removed at close.

use std::path::{Path, PathBuf};

use ion_rs::Element;

use crate::error::{LedgerError, Result};
use crate::journal::JournalStore;
use crate::options::{CacheDiscarded, LedgerOptions};
use crate::state::State;
use crate::storage::{LockGuard, Storage};

const LOCK_FILE: &str = "LOCK";
const IDENTITY_FILE: &str = "cache.ion";
/// Version of the cache's layout and `cache.ion`. History: 1 — first format.
const CACHE_FORMAT_VERSION: i64 = 1;

/// Where a PostgreSQL ledger's derived state lives while it is open.
pub(crate) enum CacheDir {
    /// `<root>/<name>`, kept after close.
    Stable(PathBuf),
    /// A private directory removed at close (dropping it removes it).
    Temporary(tempfile::TempDir),
}

impl CacheDir {
    pub fn path(&self) -> &Path {
        match self {
            CacheDir::Stable(path) => path,
            CacheDir::Temporary(dir) => dir.path(),
        }
    }
}

/// Takes the cache of ledger `name`: its stable directory under `options.cache_dir`, or a
/// temporary one when that is locked or no root is given (the system's temporary directory).
pub(crate) fn open(options: &LedgerOptions, name: &str) -> Result<(CacheDir, LockGuard)> {
    let storage = &options.storage;
    let Some(root) = &options.cache_dir else {
        let dir = tempfile::Builder::new()
            .prefix(&format!("quill-{name}-"))
            .tempdir()?;
        return lock_temporary(storage, dir, name);
    };
    let dir = root.join(name);
    storage.create_dir_all(&dir)?;
    if let Some(lock) = storage.try_lock(&dir.join(LOCK_FILE))? {
        return Ok((CacheDir::Stable(dir), lock));
    }
    tracing::warn!(
        ledger = %name,
        cache = %dir.display(),
        "the ledger's cache is in use (another process shares this data directory, or an \
         earlier handle is still open); building a temporary cache from all blocks instead"
    );
    let dir = tempfile::Builder::new()
        .prefix(&format!("{name}.tmp-"))
        .tempdir_in(root)?;
    lock_temporary(storage, dir, name)
}

fn lock_temporary(
    storage: &Storage,
    dir: tempfile::TempDir,
    name: &str,
) -> Result<(CacheDir, LockGuard)> {
    let lock = storage
        .try_lock(&dir.path().join(LOCK_FILE))?
        .ok_or_else(|| LedgerError::InUse(name.to_owned()))?;
    Ok((CacheDir::Temporary(dir), lock))
}

/// What [`validate`] found.
pub(crate) struct Validated {
    /// Why the cache was emptied, if it held anything.
    pub discarded: Option<CacheDiscarded>,
    /// The derived state it kept, opened for the check (opening a large one costs).
    pub state: Option<State>,
}

/// Makes the cache in `dir` (locked) one that ledger `name`, of strand `strand_id`, can
/// catch up from the journal: kept when it reflects a prefix of the journal's chain, emptied
/// otherwise. Errors are the journal's (PostgreSQL unreachable) and the file system's, never
/// the cache content's.
pub(crate) fn validate(
    storage: &Storage,
    dir: &Path,
    name: &str,
    strand_id: &str,
    journal: &JournalStore,
) -> Result<Validated> {
    let kept = |state| {
        Ok(Validated {
            discarded: None,
            state,
        })
    };
    let reason = match read_identity(storage, dir) {
        Err(()) => CacheDiscarded::Unreadable,
        Ok(None) if holds_more_than_lock(storage, dir)? => CacheDiscarded::Unreadable,
        Ok(None) => {
            // A new cache: nothing to check or to remove.
            write_identity(storage, dir, name, strand_id)?;
            return kept(None);
        }
        Ok(Some(cached)) if cached != strand_id => CacheDiscarded::OtherLedger,
        Ok(Some(_)) => match check_chain(storage, dir, strand_id, journal)? {
            Ok(state) => return kept(state),
            Err(reason) => reason,
        },
    };
    match reason {
        CacheDiscarded::OtherLedger => tracing::info!(
            ledger = %name,
            "the cache holds an earlier ledger of this name (deleted and created again); \
             building it again from PostgreSQL"
        ),
        CacheDiscarded::Unreadable => tracing::warn!(
            ledger = %name,
            "the cache is unreadable; building it again from PostgreSQL"
        ),
        CacheDiscarded::AheadOfJournal | CacheDiscarded::Forked => tracing::error!(
            ledger = %name,
            ?reason,
            "the cache reflects blocks PostgreSQL does not hold (lost in a failover, a \
             database restored to an earlier point, or another database); building it again \
             from PostgreSQL"
        ),
    }
    empty(storage, dir)?;
    write_identity(storage, dir, name, strand_id)?;
    Ok(Validated {
        discarded: Some(reason),
        state: None,
    })
}

/// Whether derived state in `dir` reflects a prefix of the journal's chain: its last
/// applied block must be in the journal with the hash the state recorded for it. Returns the
/// state (if there is one) when it does, why not otherwise.
fn check_chain(
    storage: &Storage,
    dir: &Path,
    strand_id: &str,
    journal: &JournalStore,
) -> Result<std::result::Result<Option<State>, CacheDiscarded>> {
    let state_path = dir.join("state.redb");
    if !storage.exists(&state_path)? {
        return Ok(Ok(None));
    }
    // A state redb cannot open is a damaged cache, not a reason to refuse the ledger.
    let Ok((state, (applied, hash))) = State::open(storage, &state_path)
        .and_then(|state| state.applied_position().map(|position| (state, position)))
    else {
        return Ok(Err(CacheDiscarded::Unreadable));
    };
    if applied == 0 {
        return Ok(Ok(Some(state)));
    }
    if applied > journal.len() {
        return Ok(Err(CacheDiscarded::AheadOfJournal));
    }
    let theirs = journal.hashes(strand_id, applied - 1, applied)?;
    if hash.as_ref() != theirs.first() {
        return Ok(Err(CacheDiscarded::Forked));
    }
    Ok(Ok(Some(state)))
}

/// The strand id `cache.ion` names; `Ok(None)` when absent, `Err` when unreadable.
fn read_identity(storage: &Storage, dir: &Path) -> std::result::Result<Option<String>, ()> {
    let path = dir.join(IDENTITY_FILE);
    match storage.exists(&path) {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(_) => return Err(()),
    }
    let bytes = storage.read(&path).map_err(drop)?;
    let element = Element::read_one(bytes).map_err(drop)?;
    let fields = element.as_struct().ok_or(())?;
    if fields.get("formatVersion").and_then(Element::as_i64) != Some(CACHE_FORMAT_VERSION) {
        return Err(());
    }
    fields
        .get("strandId")
        .and_then(Element::as_text)
        .map(|s| Some(s.to_owned()))
        .ok_or(())
}

fn write_identity(storage: &Storage, dir: &Path, name: &str, strand_id: &str) -> Result<()> {
    let text = format!(
        "{{ledger:\"{name}\",strandId:\"{strand_id}\",formatVersion:{CACHE_FORMAT_VERSION}}}\n"
    );
    storage.write_atomically(&dir.join(IDENTITY_FILE), text.as_bytes())?;
    Ok(())
}

fn holds_more_than_lock(storage: &Storage, dir: &Path) -> Result<bool> {
    Ok(storage
        .list_dir(dir)?
        .iter()
        .any(|entry| entry != LOCK_FILE))
}

/// Removes everything but the lock: `cache.ion` first (durably), so a crash part-way leaves
/// a cache without identity, which the next open empties again.
fn empty(storage: &Storage, dir: &Path) -> Result<()> {
    let identity = dir.join(IDENTITY_FILE);
    if storage.exists(&identity)? {
        storage.remove_file(&identity)?;
        storage.sync_dir(dir)?;
    }
    for entry in storage.list_dir(dir)? {
        if entry == LOCK_FILE {
            continue;
        }
        let path = dir.join(&entry);
        storage
            .remove_file(&path)
            .or_else(|_| storage.remove_dir_all(&path))?;
    }
    storage.sync_dir(dir)?;
    Ok(())
}

/// Removes the caches under `root` that no handle has open and that `keep` does not name:
/// those of deleted ledgers, and temporary ones a killed process left behind. Failures are
/// logged: a cache left behind wastes space, nothing else.
pub fn remove_unused_caches(storage: &Storage, root: &Path, keep: &dyn Fn(&str) -> bool) {
    let Ok(entries) = storage.list_dir(root) else {
        return;
    };
    for entry in entries {
        if keep(&entry) {
            continue;
        }
        let dir = root.join(&entry);
        // Held while removing: a handle opening this cache meanwhile gets a temporary one.
        let Ok(Some(_lock)) = storage.try_lock(&dir.join(LOCK_FILE)) else {
            continue;
        };
        if let Err(error) = storage.remove_dir_all(&dir) {
            tracing::warn!(cache = %dir.display(), %error, "cannot remove an unused cache");
        }
    }
}
