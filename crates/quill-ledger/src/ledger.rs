//! `Ledger`: opening, creating and recovering a ledger directory, starting transactions, and
//! serving digests, blocks, revisions and proofs.
//!
//! Directory layout:
//! ```text
//! <dir>/ledger.ion   {name, strandId, formatVersion}: written once, atomically, at creation
//! <dir>/LOCK         flock'ed while the ledger is open, so one process writes the journal
//! <dir>/journal/     the journal segments: the source of truth
//! <dir>/tree/        full nodes of the digest tree (derived; rebuilt from the journal)
//! <dir>/state.redb   current documents, history, indexes, catalog (derived; caught up on open)
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use ion_rs::Element;
use quill_verify::{Hash, TreeError};

use crate::block::{self, BlockDraft, StoredBlock};
use crate::cache::{self, CacheDir};
use crate::catalog::{Catalog, CatalogChange};
use crate::clock;
use crate::commit::{self, Core, Shared};
use crate::error::{LedgerError, Result};
use crate::handle::LedgerInner;
use crate::ids::IdGenerator;
use crate::journal::postgres::{PgJournal, PostgresStore};
use crate::journal::{Journal, JournalStore};
use crate::occ::ConflictLog;
use crate::options::{LedgerOptions, RecoveryReport};
use crate::redaction;
use crate::state::State;
use crate::storage::Storage;
use crate::transaction::Transaction;
use crate::tree_store::TreeStore;
use crate::types::{BlockAddress, BlockHashes, LedgerDigest, Revision};
use crate::Limits;

/// Version of the directory layout and `ledger.ion`. History: 1 — first format.
const LEDGER_FORMAT_VERSION: i64 = 1;
/// Attempts `Ledger::transact` makes before giving up on OCC conflicts.
const TRANSACT_ATTEMPTS_MAX: usize = 10;

/// One ledger: a journal plus derived state in one directory. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<LedgerInner>,
}

/// QLDB's ledger name rule.
pub fn validate_ledger_name(name: &str) -> Result<()> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && !name.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidLedgerName(name.to_owned()))
    }
}

pub(crate) fn write_ledger_file(
    storage: &Storage,
    dir: &Path,
    name: &str,
    strand_id: &str,
) -> Result<()> {
    let text = format!(
        "{{name:\"{name}\",strandId:\"{strand_id}\",formatVersion:{LEDGER_FORMAT_VERSION}}}\n"
    );
    storage.write_atomically(&dir.join("ledger.ion"), text.as_bytes())?;
    Ok(())
}

fn read_ledger_file(storage: &Storage, dir: &Path) -> Result<(String, String)> {
    let path = dir.join("ledger.ion");
    let bytes = storage.read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LedgerError::UnknownLedger(dir.display().to_string()),
        _ => LedgerError::Io(e),
    })?;
    let bad = || LedgerError::Storage(format!("{} is malformed", path.display()));
    let element = Element::read_one(bytes).map_err(|_| bad())?;
    let s = element.as_struct().ok_or_else(bad)?;
    let version = s
        .get("formatVersion")
        .and_then(Element::as_i64)
        .ok_or_else(bad)?;
    if version != LEDGER_FORMAT_VERSION {
        return Err(LedgerError::Storage(format!(
            "unsupported ledger format version {version}"
        )));
    }
    let text = |f: &str| {
        s.get(f)
            .and_then(Element::as_text)
            .map(str::to_owned)
            .ok_or_else(bad)
    };
    Ok((text("name")?, text("strandId")?))
}

impl Ledger {
    /// Creates a new ledger named `name` in `dir` (which must not hold a ledger), writing its
    /// genesis block (sequence number 0, recording the ledger's creation).
    pub fn create(dir: &Path, name: &str, options: LedgerOptions) -> Result<Ledger> {
        validate_ledger_name(name)?;
        let storage = &options.storage;
        if storage.exists(&dir.join("ledger.ion"))? {
            return Err(LedgerError::LedgerExists(name.to_owned()));
        }
        storage.create_dir_all(dir)?;
        // The ledger directory's own entry must be durable before its creation is
        // acknowledged (its content is synced below, last of all `ledger.ion`).
        storage.sync_parent_dir(dir)?;
        let ids = IdGenerator::new(options.id_seed);
        let strand_id = ids.next_id();
        let journal = Journal::create(storage, &dir.join("journal"), &strand_id)?;
        let tree = TreeStore::open(storage, &dir.join("tree"))?;
        let state = State::open(storage, &dir.join("state.redb"))?;
        let genesis = genesis_block(name, &strand_id, &ids)?;
        journal.append(&[&genesis.payload])?;
        journal.sync()?;
        tree.push_leaves(&[genesis.hash])?;
        tree.flush()?;
        let mut writer = state.writer()?;
        commit::apply_block(
            &mut writer,
            &mut Catalog::default(),
            &options.limits,
            &genesis_changes(name),
            &[],
        )?;
        writer.set_applied(1, Some(genesis.hash))?;
        writer.commit(true)?;
        // ledger.ion last: a directory without it is an unfinished creation, not a ledger.
        write_ledger_file(storage, dir, name, &strand_id)?;
        drop((journal, tree, state));
        Ledger::open(dir, options)
    }

    /// Opens an existing ledger, recovering from a crash: a torn journal tail is cut off,
    /// the digest tree and derived state catch up from the journal. Corruption anywhere else
    /// fails with [`LedgerError::Corrupted`] naming the block.
    pub fn open(dir: &Path, options: LedgerOptions) -> Result<Ledger> {
        let storage = &options.storage;
        let (name, strand_id) = read_ledger_file(storage, dir)?;
        let Some(lock) = storage.try_lock(&dir.join("LOCK"))? else {
            return Err(LedgerError::InUse(name));
        };
        let (journal, journal_recovery) = Journal::open(storage, &dir.join("journal"), &strand_id)?;
        let recovery = RecoveryReport {
            torn_tail_bytes: journal_recovery.torn_tail_bytes,
            ..Default::default()
        };
        Ledger::open_parts(
            OpenParts {
                name,
                strand_id,
                dir: dir.to_owned(),
                journal: JournalStore::Files(journal),
                lock,
                cache: None,
                state: None,
            },
            recovery,
            options,
        )
    }

    /// Creates a ledger in PostgreSQL (see [`PostgresStore`]): its row and genesis block in
    /// one transaction; `LedgerExists` if another server created it first.
    pub fn create_in(store: &PostgresStore, name: &str, options: LedgerOptions) -> Result<Ledger> {
        validate_ledger_name(name)?;
        let ids = IdGenerator::new(options.id_seed);
        let strand_id = ids.next_id();
        let genesis = genesis_block(name, &strand_id, &ids)?;
        store.insert_ledger(name, &strand_id, &[(&genesis.payload, genesis.hash)], None)?;
        Ledger::open_in(store, name, options)
    }

    /// Opens a ledger kept in PostgreSQL. Any number of servers may open it at once; each
    /// keeps derived state (documents, indexes, the digest tree) as a cache on its own disk:
    /// `<options.cache_dir>/<name>`, kept across restarts, checked against PostgreSQL's
    /// chain and caught up with the blocks committed since (see `cache`); without a
    /// `cache_dir`, a private directory built from all blocks and removed at close.
    pub fn open_in(store: &PostgresStore, name: &str, options: LedgerOptions) -> Result<Ledger> {
        let stored = store.ledger(name)?;
        let (cache, lock) = cache::open(&options, name)?;
        let journal =
            JournalStore::Postgres(Box::new(PgJournal::new(store.clone(), name, stored.blocks)));
        let validated = cache::validate(
            &options.storage,
            cache.path(),
            name,
            &stored.strand_id,
            &journal,
        )?;
        Ledger::open_parts(
            OpenParts {
                name: stored.name,
                strand_id: stored.strand_id,
                dir: cache.path().to_owned(),
                journal,
                lock,
                cache: Some(cache),
                state: validated.state,
            },
            RecoveryReport {
                cache_discarded: validated.discarded,
                ..Default::default()
            },
            options,
        )
    }

    /// The backend-independent part of opening: the digest tree and derived state catch up
    /// from the journal, pending redactions are completed, and the committer starts.
    fn open_parts(
        parts: OpenParts,
        mut recovery: RecoveryReport,
        options: LedgerOptions,
    ) -> Result<Ledger> {
        let OpenParts {
            name,
            strand_id,
            dir,
            journal,
            lock,
            cache,
            state,
        } = parts;
        let dir = dir.as_path();
        let storage = &options.storage;
        let tree = TreeStore::open(storage, &dir.join("tree"))?;
        let state_path = dir.join("state.redb");
        let mut state = match state {
            Some(state) => state,
            None => State::open(storage, &state_path)?,
        };
        let blocks = journal.len();
        if blocks == 0 {
            return Err(LedgerError::Corrupted {
                block_address: BlockAddress {
                    strand_id,
                    sequence_no: 0,
                },
                detail: "the journal has no genesis block".into(),
            });
        }
        recovery.tree_leaves_rebuilt = catch_up_tree(&journal, &tree, &strand_id, blocks)?;
        let rebuild = if state.snapshot()?.applied() > blocks {
            // Derived state is ahead of the journal: blocks it reflects were cut from the
            // journal's tail. The journal is the truth; rebuild everything from it.
            tracing::error!(ledger = %name, blocks, "derived state is ahead of the journal; rebuilding it from the journal");
            true
        } else if !state.has_current_format()? {
            // Written by an older version with other encodings (e.g. of index keys): mixing
            // them would make lookups miss documents.
            tracing::info!(ledger = %name, "derived state has an older format; rebuilding it from the journal");
            true
        } else {
            false
        };
        if rebuild {
            drop(state);
            storage.remove_file(&state_path)?;
            state = State::open(storage, &state_path)?;
            recovery.state_rebuilt = true;
        }
        recovery.blocks_replayed =
            catch_up_state(&journal, &state, &strand_id, blocks, &options.limits)?;
        let mut pending = state.pending_redactions(&strand_id)?;
        for listed in redaction::listed(storage, dir)? {
            if !pending.contains(&listed) {
                pending.push(listed);
            }
        }
        if !pending.is_empty() {
            // See `redaction`: erase what a crash left in the journal, then rebuild derived
            // state from the erased journal, so redb keeps no old copy in its free pages.
            for request in &pending {
                redaction::erase_from_journal(&journal, request)?;
            }
            drop(state);
            storage.remove_file(&state_path)?;
            state = State::open(storage, &state_path)?;
            recovery.blocks_replayed =
                catch_up_state(&journal, &state, &strand_id, blocks, &options.limits)?;
            redaction::unlist_all(storage, dir)?;
            recovery.state_rebuilt = true;
            recovery.redactions_completed = pending.len() as u64;
            tracing::info!(ledger = %name, redactions = pending.len(), "completed redactions");
        }
        let snapshot = state.snapshot()?;
        let catalog = snapshot.catalog()?;
        let snapshot = Arc::new(snapshot);
        let last = read_block(&journal, &strand_id, blocks - 1)?;
        let core = Arc::new(Core::new(
            strand_id.clone(),
            options.clone(),
            journal,
            tree,
            state,
            commit::Pipeline::new(
                &strand_id,
                (*snapshot).clone(),
                catalog.clone(),
                Some(last.hash),
                last.time_millis,
            ),
            Shared {
                applied: blocks,
                catalog: Arc::new(catalog),
                last_hash: Some(last.hash),
                last_millis: last.time_millis,
                log: ConflictLog::new(blocks),
                snapshot,
                poisoned: None,
            },
        ));
        if cache.is_some() {
            // A PostgreSQL ledger's cache catches up with what other servers committed since
            // it was last open: the normal way of opening it, not a recovery.
            tracing::info!(
                ledger = %name,
                blocks,
                caught_up = recovery.blocks_replayed,
                "derived state caught up from PostgreSQL"
            );
        } else if recovery != RecoveryReport::default() {
            tracing::warn!(ledger = %name, ?recovery, "recovered ledger after an unclean shutdown");
        }
        let (sender, receiver) = mpsc::sync_channel(crate::limits::GROUP_COMMIT_MAX * 4);
        let committer_core = Arc::clone(&core);
        let handle = std::thread::Builder::new()
            .name(format!("quill-commit-{name}"))
            .spawn(move || commit::run(committer_core, receiver))?;
        let ids = IdGenerator::new(options.id_seed.map(|s| s.wrapping_add(blocks)));
        Ok(Ledger {
            inner: Arc::new(LedgerInner {
                name,
                dir: dir.to_owned(),
                redactions: Mutex::new(()),
                strand_id,
                options,
                ids,
                core,
                recovery,
                _lock: lock,
                commits: Mutex::new(Some(sender)),
                committer: Mutex::new(Some(handle)),
                _cache: cache,
            }),
        })
    }

    /// Ledger name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The strand id (22-char base62).
    pub fn strand_id(&self) -> &str {
        &self.inner.strand_id
    }

    /// What opening found.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.recovery.clone()
    }

    /// The directory-independent limits this ledger enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.options.limits
    }

    /// Why the ledger refuses writes until it is reopened (an I/O failure of its journal or
    /// state), if it does. Reads of what was published before keep working.
    pub fn fault(&self) -> Option<String> {
        self.inner.core.shared().poisoned.clone()
    }

    /// Starts a transaction on a snapshot of the current state.
    pub fn begin(&self) -> Result<Transaction> {
        let core = &self.inner.core;
        commit::catch_up(core)?;
        let (start, snapshot, catalog) = {
            let shared = core.shared();
            if let Some(reason) = &shared.poisoned {
                return Err(LedgerError::ReadOnly(reason.clone()));
            }
            let snapshot = Arc::clone(&shared.snapshot);
            let start = shared.applied;
            shared.log.begin(start);
            (start, snapshot, Arc::clone(&shared.catalog))
        };
        let id = self.inner.ids.next_id();
        Ok(Transaction::new(
            Arc::clone(&self.inner),
            id,
            start,
            snapshot,
            catalog,
        ))
    }

    /// Runs `body` in a transaction and commits it, retrying the whole body on OCC conflict
    /// (up to 10 attempts). Any other error aborts and is returned.
    pub fn transact<T>(&self, mut body: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.begin()?;
            let outcome = body(&mut tx).and_then(|value| tx.commit().map(|_| value));
            match outcome {
                Err(e) if e.is_occ_conflict() && attempt < TRANSACT_ATTEMPTS_MAX => continue,
                other => return other,
            }
        }
    }

    fn applied(&self) -> u64 {
        self.inner.core.shared().applied
    }

    fn check_tip(&self, tip: u64) -> Result<u64> {
        let applied = self.applied();
        if tip >= applied {
            return Err(LedgerError::UnknownBlock(format!(
                "sequenceNo {tip} is beyond the tip {}",
                applied - 1
            )));
        }
        Ok(tip)
    }

    /// Takes in the blocks other servers committed to a shared (PostgreSQL) journal since
    /// this one last looked, so that [`Ledger::digest`] and block reads reach them (a
    /// transaction's `begin` does this too); nothing to do for an embedded ledger.
    pub fn catch_up(&self) -> Result<()> {
        commit::catch_up(&self.inner.core)
    }

    /// The digest over every block up to the latest committed one.
    pub fn digest(&self) -> LedgerDigest {
        let tip = self.applied() - 1;
        self.digest_at(tip)
            .expect("the latest tip exists and its nodes are stored")
    }

    /// The digest as of an older tip.
    pub fn digest_at(&self, tip_sequence_no: u64) -> Result<LedgerDigest> {
        let tip = self.check_tip(tip_sequence_no)?;
        let digest = quill_verify::tree_root(tip + 1, &*self.inner.core).map_err(tree_error)?;
        Ok(LedgerDigest {
            digest,
            tip: BlockAddress {
                strand_id: self.inner.strand_id.clone(),
                sequence_no: tip,
            },
        })
    }

    /// The block at `sequence_no`, as QLDB's Ion block struct.
    pub fn block(&self, sequence_no: u64) -> Result<Element> {
        self.check_tip(sequence_no)?;
        read_block(&self.inner.core.journal, &self.inner.strand_id, sequence_no)?.to_element()
    }

    /// Up to `max` committed blocks from `from` on, as the journal stores them, read in one
    /// pass over the journal (one range query per chunk with PostgreSQL); fewer when the tip
    /// comes first, none when `from` is past it. For readers that take blocks apart themselves
    /// ([`StoredBlock::pieces`](crate::StoredBlock::pieces)) rather than one [`Ledger::block`]
    /// each.
    pub fn stored_blocks(&self, from: u64, max: u64) -> Result<Vec<StoredBlock>> {
        let end = self.applied().min(from.saturating_add(max));
        if end <= from {
            return Ok(Vec::new());
        }
        let mut blocks = Vec::with_capacity((end - from) as usize);
        self.inner
            .core
            .journal
            .scan(from, &mut |sequence_no, bytes| {
                if sequence_no >= end {
                    return Ok(false);
                }
                blocks.push(StoredBlock {
                    address: BlockAddress {
                        strand_id: self.inner.strand_id.clone(),
                        sequence_no,
                    },
                    payload: bytes.to_vec(),
                });
                Ok(true)
            })?;
        if blocks.len() as u64 != end - from {
            return Err(LedgerError::UnknownBlock(format!(
                "blocks {from}..{end}: the journal returned {}",
                blocks.len()
            )));
        }
        Ok(blocks)
    }

    /// The hash of block `sequence_no`.
    pub(crate) fn block_hash(&self, sequence_no: u64) -> Result<Hash> {
        self.check_tip(sequence_no)?;
        Ok(read_block(&self.inner.core.journal, &self.inner.strand_id, sequence_no)?.hash)
    }

    /// Visits blocks `0..=tip` in order as the journal keeps them (payload bytes) with each
    /// block's hash: what copying the chain to another store unchanged needs.
    pub(crate) fn scan_payloads(
        &self,
        tip: u64,
        mut visit: impl FnMut(u64, &[u8], Hash) -> Result<()>,
    ) -> Result<()> {
        let tip = self.check_tip(tip)?;
        self.inner.core.journal.scan(0, &mut |seq, bytes| {
            if seq > tip {
                return Ok(false);
            }
            let address = BlockAddress {
                strand_id: self.inner.strand_id.clone(),
                sequence_no: seq,
            };
            visit(seq, bytes, block::decode_payload(bytes, &address)?.hash)?;
            Ok(true)
        })
    }

    /// Blocks `from..to` as the journal stores them (payload bytes, without decoding them),
    /// stopping early after the block that brings their total to `bytes_max` (the first block
    /// is always returned): what a mirror copies with
    /// [`Importer::push_payload`](crate::Importer::push_payload) and
    /// [`Ledger::append_verified`].
    pub fn journal_payloads(&self, from: u64, to: u64, bytes_max: usize) -> Result<Vec<Vec<u8>>> {
        if to <= from {
            return Ok(Vec::new());
        }
        self.check_tip(to - 1)?;
        let mut payloads = Vec::new();
        let mut bytes_total = 0;
        let mut complete = false;
        self.inner
            .core
            .journal
            .scan(from, &mut |sequence_no, bytes| {
                if sequence_no >= to || bytes_total >= bytes_max {
                    complete = true;
                    return Ok(false);
                }
                bytes_total += bytes.len();
                payloads.push(bytes.to_vec());
                Ok(true)
            })?;
        if !complete && payloads.len() as u64 != to - from {
            return Err(LedgerError::UnknownBlock(format!(
                "blocks {from}..{to}: the journal returned {}",
                payloads.len()
            )));
        }
        Ok(payloads)
    }

    /// Appends blocks read from another ledger's journal ([`Ledger::journal_payloads`]) after
    /// this one's last block, unchanged: each must pass [`crate::check_payload`] in its place
    /// with the hash given beside it. The blocks before the first that does not are appended
    /// (a copy stops at its last good block) and the refusal, naming that block, is returned.
    /// What is appended is durable and readable when this returns. For a mirror's copy, which
    /// commits nothing itself: refused for a ledger in PostgreSQL, and while a commit of its
    /// own is in flight.
    ///
    /// A copied block that redacts a revision erases that revision's data from this copy's
    /// journal too, as the origin did from its own (a copy of the block made after the origin
    /// erased it never held the data). The hashes are unchanged, so the copy still verifies.
    pub fn append_verified(&self, blocks: &[(&[u8], Hash)]) -> Result<()> {
        let (redactions, refused) = commit::append_verified(&self.inner.core, blocks)?;
        self.inner.erase_committed_redactions(&redactions);
        refused.map_or(Ok(()), Err)
    }

    /// The hashes of the block at `sequence_no`, read without decoding the block.
    pub fn block_hashes(&self, sequence_no: u64) -> Result<BlockHashes> {
        self.check_tip(sequence_no)?;
        let address = BlockAddress {
            strand_id: self.inner.strand_id.clone(),
            sequence_no,
        };
        let bytes = self.inner.core.journal.read(sequence_no)?;
        block::decode_hashes(&bytes, &address)
    }

    /// The hashes of blocks `from..to`, in order, read in one pass over the journal (one
    /// range query per chunk with PostgreSQL) without decoding the blocks.
    pub fn block_hashes_range(&self, from: u64, to: u64) -> Result<Vec<BlockHashes>> {
        if to <= from {
            return Ok(Vec::new());
        }
        self.check_tip(to - 1)?;
        let mut hashes = Vec::with_capacity((to - from) as usize);
        self.inner
            .core
            .journal
            .scan(from, &mut |sequence_no, bytes| {
                if sequence_no >= to {
                    return Ok(false);
                }
                let address = BlockAddress {
                    strand_id: self.inner.strand_id.clone(),
                    sequence_no,
                };
                hashes.push(block::decode_hashes(bytes, &address)?);
                Ok(true)
            })?;
        if hashes.len() as u64 != to - from {
            return Err(LedgerError::UnknownBlock(format!(
                "blocks {from}..{to}: the journal returned {}",
                hashes.len()
            )));
        }
        Ok(hashes)
    }

    /// Proof of the block's hash against the digest at `tip_sequence_no` (GetBlock proof).
    pub fn block_proof(&self, sequence_no: u64, tip_sequence_no: u64) -> Result<Vec<Hash>> {
        let tip = self.check_tip(tip_sequence_no)?;
        if sequence_no > tip {
            return Err(LedgerError::InvalidInput(format!(
                "block {sequence_no} is after the digest tip {tip}"
            )));
        }
        quill_verify::inclusion_proof(sequence_no, tip + 1, &*self.inner.core).map_err(tree_error)
    }

    /// The revision of `document_id` committed in block `sequence_no`.
    pub fn revision(&self, sequence_no: u64, document_id: &str) -> Result<Revision> {
        let (_, revision, _) = self.find_revision(sequence_no, document_id)?;
        Ok(revision)
    }

    fn find_revision(
        &self,
        sequence_no: u64,
        document_id: &str,
    ) -> Result<(block::DecodedBlock, Revision, usize)> {
        self.check_tip(sequence_no)?;
        let decoded = read_block(&self.inner.core.journal, &self.inner.strand_id, sequence_no)?;
        let position = decoded
            .revisions
            .iter()
            .position(|(_, r)| r.metadata.id == document_id)
            .ok_or_else(|| {
                LedgerError::UnknownDocument(format!(
                    "{document_id} has no revision in block {sequence_no}"
                ))
            })?;
        let revision = decoded.revisions[position].1.clone();
        Ok((decoded, revision, position))
    }

    /// Proof of that revision's hash against the digest at `tip_sequence_no` (GetRevision
    /// proof): siblings in the block's revisions tree, then in its entries tree, then the
    /// previous block hash, then the block's proof.
    pub fn revision_proof(
        &self,
        sequence_no: u64,
        document_id: &str,
        tip_sequence_no: u64,
    ) -> Result<Vec<Hash>> {
        let block_proof = self.block_proof(sequence_no, tip_sequence_no)?;
        let mut proof = self.revision_block_path(sequence_no, document_id)?;
        proof.extend(block_proof);
        Ok(proof)
    }

    /// The in-block part of [`Ledger::revision_proof`]: folded from the revision's hash it
    /// gives the hash of block `sequence_no` (what a transparency-log proof bundle carries).
    pub fn revision_block_path(&self, sequence_no: u64, document_id: &str) -> Result<Vec<Hash>> {
        let (decoded, _, position) = self.find_revision(sequence_no, document_id)?;
        let proof = match &decoded.original {
            Some(original) => verbatim_revision_path(&decoded, original, position)?,
            None => {
                let revision_hashes: Vec<Hash> =
                    decoded.revisions.iter().map(|(_, r)| r.hash).collect();
                let address = decoded.address.clone();
                let entries: &[Hash; quill_verify::QUILL_ENTRIES] = decoded
                    .entries
                    .as_slice()
                    .try_into()
                    .map_err(|_| LedgerError::Corrupted {
                        block_address: address,
                        detail: format!(
                            "entriesHashList has {} entries, not {}",
                            decoded.entries.len(),
                            quill_verify::QUILL_ENTRIES
                        ),
                    })?;
                quill_verify::revision_to_block_path(
                    &revision_hashes,
                    position,
                    entries,
                    decoded.previous_hash.as_ref(),
                )
            }
        };
        Ok(proof)
    }

    /// Proof that the digest at `new_tip` extends the digest at `old_tip` (a Quill extension;
    /// see `quill_verify::verify_consistency`).
    pub fn consistency_proof(&self, old_tip: u64, new_tip: u64) -> Result<Vec<Hash>> {
        let new_tip = self.check_tip(new_tip)?;
        if old_tip > new_tip {
            return Err(LedgerError::InvalidInput(format!(
                "old tip {old_tip} is after new tip {new_tip}"
            )));
        }
        quill_verify::consistency_proof(old_tip + 1, new_tip + 1, &*self.inner.core)
            .map_err(tree_error)
    }

    /// Audits the whole ledger: every frame's checksum, every block's hashes recomputed, the
    /// hash chain, and the digest tree's leaves. `progress(done, total)` is called as it goes.
    /// Returns the number of blocks checked, or the first bad block.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<u64> {
        let core = &self.inner.core;
        let total = self.applied();
        // Frames first: checksums, sequence numbers and offset indexes of every segment.
        core.journal.verify_all(&mut |_, _| {})?;
        let mut previous: Option<Hash> = None;
        let mut checked = 0;
        core.journal.scan(0, &mut |seq, bytes| {
            if seq >= total {
                return Ok(false);
            }
            let address = BlockAddress {
                strand_id: self.inner.strand_id.clone(),
                sequence_no: seq,
            };
            let corrupt = |detail: String| LedgerError::Corrupted {
                block_address: address.clone(),
                detail,
            };
            let decoded = block::decode_payload(bytes, &address)?;
            // Re-derive every hash from the QLDB-shaped block, as an outside verifier would:
            // Quill's exact layout for its own blocks, QLDB's rules for blocks QLDB wrote.
            let hash = match &decoded.original {
                Some(original) => quill_verify::verify_block(original),
                None => quill_verify::verify_quill_block(&decoded.to_element()?),
            }
            .map_err(|e| corrupt(e.to_string()))?;
            if decoded.previous_hash != previous {
                return Err(corrupt(
                    "previousBlockHash does not match the previous block".into(),
                ));
            }
            if core.tree.full_node(0, seq)? != hash {
                return Err(corrupt(
                    "digest tree leaf does not match the block hash".into(),
                ));
            }
            previous = Some(hash);
            checked = seq + 1;
            progress(checked, total);
            Ok(true)
        })?;
        Ok(checked)
    }
}

/// The path from a revision to its block's hash in a block QLDB wrote: siblings in the
/// revisions tree (system revisions included), in `entriesHashList` from wherever the
/// revisions root is, then the previous block hash (QLDB's GetRevision proof layout).
fn verbatim_revision_path(
    decoded: &block::DecodedBlock,
    original: &Element,
    position: usize,
) -> Result<Vec<Hash>> {
    let corrupt = |detail: &str| LedgerError::Corrupted {
        block_address: decoded.address.clone(),
        detail: detail.to_owned(),
    };
    let revision_hash = decoded.revisions[position].1.hash;
    let all = crate::verbatim::all_revision_hashes(original);
    let leaf = all
        .iter()
        .position(|h| *h == revision_hash)
        .ok_or_else(|| corrupt("the revision is not among the block's revisions"))?;
    let root = quill_verify::revisions_root(&all);
    let entry = decoded
        .entries
        .iter()
        .position(|e| *e == root)
        .ok_or_else(|| corrupt("the revisions root is not in entriesHashList"))?;
    let mut path = quill_verify::merkle_path(&all, leaf);
    path.extend(quill_verify::merkle_path(&decoded.entries, entry));
    path.extend(decoded.previous_hash);
    Ok(path)
}

/// What a backend hands to [`Ledger::open_parts`].
struct OpenParts {
    name: String,
    strand_id: String,
    /// Where derived state lives: the ledger's directory, or a PostgreSQL ledger's cache.
    dir: PathBuf,
    journal: JournalStore,
    lock: crate::storage::LockGuard,
    /// A PostgreSQL ledger's cache directory.
    cache: Option<CacheDir>,
    /// Derived state, when the backend opened it already (to check a cache).
    state: Option<State>,
}

fn genesis_changes(name: &str) -> [CatalogChange; 1] {
    [CatalogChange::CreateLedger {
        name: name.to_owned(),
    }]
}

/// Block 0, recording the ledger's creation.
fn genesis_block(name: &str, strand_id: &str, ids: &IdGenerator) -> Result<block::BuiltBlock> {
    let transaction_id = ids.next_id();
    let changes = genesis_changes(name);
    let time_millis = clock::now_millis();
    block::build(
        &BlockDraft {
            address: BlockAddress {
                strand_id: strand_id.to_owned(),
                sequence_no: 0,
            },
            transaction_id: &transaction_id,
            time_millis,
            previous_hash: None,
            revisions: &[],
            body: &block::body(&transaction_id, time_millis, &[], &[], &changes)?,
        },
        &[],
        &mut quill_verify::BlockHeaderHasher::new(strand_id),
    )
}

fn tree_error(e: TreeError<LedgerError>) -> LedgerError {
    match e {
        TreeError::Node { source, .. } => source,
        other => LedgerError::InvalidInput(other.to_string()),
    }
}

fn read_block(
    journal: &JournalStore,
    strand_id: &str,
    sequence_no: u64,
) -> Result<block::DecodedBlock> {
    let address = BlockAddress {
        strand_id: strand_id.to_owned(),
        sequence_no,
    };
    let bytes = journal.read(sequence_no)?;
    block::decode_payload(&bytes, &address)
}

/// Brings the digest tree to `blocks` leaves from the journal; returns leaves rebuilt.
/// Only the leaves of the tree's last durable checkpoint are trusted: later nodes were never
/// fsynced, so after a power loss any of them may be missing, zero or stale. The last trusted
/// leaf is checked against its block; if they disagree the whole tree is rebuilt.
fn catch_up_tree(
    journal: &JournalStore,
    tree: &TreeStore,
    strand_id: &str,
    blocks: u64,
) -> Result<u64> {
    let mut trusted = tree.durable_leaves().min(blocks);
    if trusted > 0
        && tree.full_node(0, trusted - 1)? != read_block(journal, strand_id, trusted - 1)?.hash
    {
        tracing::error!(
            leaves = trusted,
            "digest tree disagrees with the journal at its checkpoint; rebuilding it"
        );
        trusted = 0;
    }
    tree.truncate(trusted)?;
    let from = trusted;
    let mut next = from;
    while next < blocks {
        let to = (next + 4096).min(blocks);
        tree.push_leaves(&journal.hashes(strand_id, next, to)?)?;
        next = to;
    }
    tree.flush()?;
    Ok(blocks - from)
}

/// Replays journal blocks that derived state has not applied; returns blocks replayed.
pub(crate) fn catch_up_state(
    journal: &JournalStore,
    state: &State,
    strand_id: &str,
    blocks: u64,
    limits: &Limits,
) -> Result<u64> {
    let snapshot = state.snapshot()?;
    let applied = snapshot.applied();
    assert!(
        applied <= blocks,
        "the caller rebuilds derived state that is ahead of the journal"
    );
    let mut catalog = snapshot.catalog()?;
    drop(snapshot);
    if applied == blocks {
        return Ok(0);
    }
    let mut previous = if applied > 0 {
        Some(read_block(journal, strand_id, applied - 1)?.hash)
    } else {
        None
    };
    let mut writer = state.writer()?;
    let mut next = applied;
    // One pass over the journal (a range query per chunk with PostgreSQL, not one per block).
    journal.scan(applied, &mut |seq, bytes| {
        if seq >= blocks {
            return Ok(false);
        }
        let address = BlockAddress {
            strand_id: strand_id.to_owned(),
            sequence_no: seq,
        };
        let decoded = block::decode_payload(bytes, &address)?;
        if seq != next || decoded.previous_hash != previous {
            return Err(LedgerError::Corrupted {
                block_address: address,
                detail: "previousBlockHash does not match the previous block".into(),
            });
        }
        previous = Some(decoded.hash);
        next += 1;
        let rows = commit::replayed_rows(&decoded);
        commit::apply_block(
            &mut writer,
            &mut catalog,
            limits,
            &decoded.catalog_changes,
            &rows,
        )?;
        Ok(true)
    })?;
    if next != blocks {
        return Err(LedgerError::UnknownBlock(format!(
            "blocks {next}..{blocks}: the journal ended before them"
        )));
    }
    writer.set_applied(blocks, previous)?;
    writer.commit(true)?;
    Ok(blocks - applied)
}

/// Where the ledgers of a data directory live: `<data_dir>/ledgers/<name>`.
pub fn ledger_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("ledgers").join(name)
}
