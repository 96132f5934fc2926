//! A ledger's transparency log: an RFC 6962 tree whose leaf `i` is journal block `i`
//! (`quill_verify::tlog::BlockLeaf`), kept downstream of the journal like an export.
//!
//! [`LogStore`] keeps, in its own directory, the leaf bytes (`leaves`: fixed 119-byte
//! records, a genesis leaf zero-padded) and the hashes of complete subtrees at every tile
//! level (`hashes-<L>`: the level-`8L` node hashes, 32 bytes each). These files are a cache
//! of the journal: they are rebuilt from the ledger if lost, so they are not fsynced.
//! [`Publisher`] signs checkpoints and persists the last one before it is published; it
//! never signs a tree that does not extend the last one. It also keeps the newest checkpoint
//! that witnesses cosigned, with their cosignatures, so a restart serves what was gathered
//! before it. Where both are kept is a [`CheckpointStore`]: files beside the tree
//! (`checkpoint`, `checkpoint.cosigned`: [`Publisher::open`]), or, for a ledger several
//! servers share, the server's database.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use ion_rs::Element;
use quill_ledger::Ledger;
use quill_verify::tlog::{rfc6962, BlockLeaf, Checkpoint, Note, RevisionExtra, TlogProof};
use quill_verify::Hash;

use crate::durable::replace_file;
use crate::keys::NoteSigner;
use crate::tiles::{TilePath, TILE_HEIGHT, TILE_WIDTH};

const LEAF_RECORD: u64 = 119;

/// Why the log could not be read, extended or signed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A log file cannot be read or written.
    #[error("transparency log: {0}")]
    Io(#[from] io::Error),
    /// The ledger could not be read.
    #[error("transparency log: {0}")]
    Ledger(#[from] quill_ledger::LedgerError),
    /// The tree no longer extends the last signed checkpoint: signing stops.
    #[error("transparency log: the tree at size {size} does not match the last signed checkpoint; refusing to sign")]
    Inconsistent {
        /// The last signed size.
        size: u64,
    },
    /// A size, index or tile outside the tree.
    #[error("transparency log: {0}")]
    OutOfRange(String),
    /// The checkpoint store refused or failed to keep a checkpoint.
    #[error("transparency log: {0}")]
    Store(String),
}

/// Blocks read per pass when the log catches up with its ledger: bounds the memory of a
/// catch-up over a long journal, and is one range query with PostgreSQL.
const SYNC_CHUNK_BLOCKS: u64 = 4096;

/// The leaves of blocks `from..to` of the ledger.
pub fn block_leaves(ledger: &Ledger, from: u64, to: u64) -> Result<Vec<BlockLeaf>, LogError> {
    // The hashes alone: decoding whole blocks made the checkpointer cost commits throughput,
    // and one range read instead of a read per block (docs/benchmarks.md).
    let hashes = ledger.block_hashes_range(from, to)?;
    Ok((from..)
        .zip(hashes)
        .map(|(sequence_no, hashes)| BlockLeaf {
            sequence_no,
            block_hash: hashes.hash,
            entries_hash: hashes.entries_hash,
            previous_block_hash: hashes.previous_hash,
        })
        .collect())
}

/// The file-backed tree of one ledger's log.
#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    leaves: File,
    /// `levels[L]` holds the level-`8L` hashes; `counts[L]` how many.
    levels: Vec<File>,
    counts: Vec<u64>,
}

impl LogStore {
    /// Opens (or creates) the store in `dir`, dropping any torn tail left by a crash.
    pub fn open(dir: &Path) -> Result<LogStore, LogError> {
        fs::create_dir_all(dir)?;
        let open = |name: &str| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(dir.join(name))
        };
        let leaves = open("leaves")?;
        let mut store = LogStore {
            dir: dir.to_owned(),
            leaves,
            levels: vec![open("hashes-0")?],
            counts: vec![0],
        };
        let leaf_count = store.leaves.metadata()?.len() / LEAF_RECORD;
        let hash_count = store.levels[0].metadata()?.len() / 32;
        let size = leaf_count.min(hash_count);
        store.leaves.set_len(size * LEAF_RECORD)?;
        store.levels[0].set_len(size * 32)?;
        store.counts[0] = size;
        // Upper levels are derived: keep what is whole and consistent, recompute the rest.
        let mut level = 1;
        while store.counts[level - 1] >= TILE_WIDTH {
            let file = open(&format!("hashes-{level}"))?;
            let expected = store.counts[level - 1] / TILE_WIDTH;
            let have = (file.metadata()?.len() / 32).min(expected);
            file.set_len(have * 32)?;
            store.levels.push(file);
            store.counts.push(have);
            for index in have..expected {
                let hash = store.complete_subtree(level - 1, index * TILE_WIDTH, TILE_WIDTH)?;
                store.levels[level].write_all(&hash.0)?;
                store.counts[level] += 1;
            }
            level += 1;
        }
        Ok(store)
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.counts[0]
    }

    /// Appends the ledger's blocks the log does not have yet; returns the new size.
    pub fn sync(&mut self, ledger: &Ledger) -> Result<u64, LogError> {
        let blocks = ledger.digest().tip.sequence_no + 1;
        while self.size() < blocks {
            let from = self.size();
            self.append(&block_leaves(
                ledger,
                from,
                blocks.min(from + SYNC_CHUNK_BLOCKS),
            )?)?;
        }
        Ok(self.size())
    }

    /// Truncates the store to its first `size` leaves (a mirror dropping leaves that did not
    /// verify); the upper hash levels are recomputed as after a crash.
    pub fn truncate(self, size: u64) -> Result<LogStore, LogError> {
        self.check_size(size)?;
        self.leaves.set_len(size * LEAF_RECORD)?;
        self.levels[0].set_len(size * 32)?;
        let dir = self.dir.clone();
        drop(self);
        LogStore::open(&dir)
    }

    /// Appends leaves (the caller has checked them: [`quill_verify::tlog::ChainMonitor`]).
    /// One write per file for the whole slice, not per leaf: the checkpointer catches up a
    /// second of commits at a time, and two syscalls per block were a measurable share of a
    /// busy server's CPU (docs/benchmarks.md).
    pub fn append(&mut self, leaves: &[BlockLeaf]) -> Result<(), LogError> {
        let mut records = Vec::with_capacity(leaves.len() * LEAF_RECORD as usize);
        let mut hashes = Vec::with_capacity(leaves.len() * 32);
        for leaf in leaves {
            let bytes = leaf.to_bytes();
            hashes.extend_from_slice(&rfc6962::leaf_hash(&bytes).0);
            let at = records.len();
            records.extend_from_slice(&bytes);
            records.resize(at + LEAF_RECORD as usize, 0);
        }
        // Leaves first: a crash between the writes leaves more leaves than hashes, which
        // `open` cuts back to the shorter.
        let before = self.counts[0];
        let written = self
            .leaves
            .write_all(&records)
            .and_then(|()| self.levels[0].write_all(&hashes));
        if let Err(error) = written {
            // Back to what both files held, so that the next append (the files are opened
            // for appending) lands where `counts` says and not after a partial write.
            let _ = self.leaves.set_len(before * LEAF_RECORD);
            let _ = self.levels[0].set_len(before * 32);
            return Err(error.into());
        }
        self.counts[0] += leaves.len() as u64;
        self.push_completed_tiles(0, before)
    }

    fn push_hash(&mut self, level: usize, hash: Hash) -> Result<(), LogError> {
        if level == self.levels.len() {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(self.dir.join(format!("hashes-{level}")))?;
            file.set_len(0)?;
            self.levels.push(file);
            self.counts.push(0);
        }
        self.levels[level].write_all(&hash.0)?;
        self.counts[level] += 1;
        self.push_completed_tiles(level, self.counts[level] - 1)
    }

    /// Pushes to `level + 1` the root of every tile of `level` completed since that level held
    /// `before` hashes.
    fn push_completed_tiles(&mut self, level: usize, before: u64) -> Result<(), LogError> {
        for tile in before / TILE_WIDTH..self.counts[level] / TILE_WIDTH {
            let parent = self.complete_subtree(level, tile * TILE_WIDTH, TILE_WIDTH)?;
            self.push_hash(level + 1, parent)?;
        }
        Ok(())
    }

    fn read_hashes(&self, level: usize, start: u64, count: u64) -> Result<Vec<Hash>, LogError> {
        if level >= self.levels.len() || start + count > self.counts[level] {
            return Err(LogError::OutOfRange(format!(
                "level {level} hashes {start}+{count}"
            )));
        }
        let mut bytes = vec![0u8; count as usize * 32];
        self.levels[level].read_exact_at(&mut bytes, start * 32)?;
        Ok(bytes
            .chunks_exact(32)
            .map(|c| Hash::from_slice(c).expect("32 bytes"))
            .collect())
    }

    /// The root of `count` (a power of two) consecutive stored hashes of a tile level.
    fn complete_subtree(&self, level: usize, start: u64, count: u64) -> Result<Hash, LogError> {
        let mut layer = self.read_hashes(level, start, count)?;
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| rfc6962::node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(layer[0])
    }

    /// The hash of the complete subtree of `2^height` leaves starting at leaf `start`.
    fn node(&self, height: u32, start: u64) -> Result<Hash, LogError> {
        let level = (height / TILE_HEIGHT) as usize;
        let span = 1u64 << (level as u32 * TILE_HEIGHT);
        self.complete_subtree(level, start / span, 1 << (height % TILE_HEIGHT))
    }

    /// `MTH(D[start:end])`.
    fn range_root(&self, start: u64, end: u64) -> Result<Hash, LogError> {
        let len = end - start;
        if len.is_power_of_two() {
            return self.node(len.trailing_zeros(), start);
        }
        let k = 1u64 << (63 - (len - 1).leading_zeros());
        Ok(rfc6962::node_hash(
            &self.range_root(start, start + k)?,
            &self.range_root(start + k, end)?,
        ))
    }

    fn check_size(&self, size: u64) -> Result<(), LogError> {
        if size > self.size() {
            return Err(LogError::OutOfRange(format!(
                "size {size} exceeds the log size {}",
                self.size()
            )));
        }
        Ok(())
    }

    /// The RFC 6962 root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, LogError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(rfc6962::empty_root());
        }
        self.range_root(0, size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(size)?;
        if index >= size {
            return Err(LogError::OutOfRange(format!(
                "leaf {index} is outside size {size}"
            )));
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    fn path(&self, index: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), LogError> {
        let len = end - start;
        if len <= 1 {
            return Ok(());
        }
        let k = 1u64 << (63 - (len - 1).leading_zeros());
        if index < start + k {
            self.path(index, start, start + k, out)?;
            out.push(self.range_root(start + k, end)?);
        } else {
            self.path(index, start + k, end, out)?;
            out.push(self.range_root(start, start + k)?);
        }
        Ok(())
    }

    /// The consistency proof from size `old` to size `size`.
    pub fn consistency_proof(&self, old: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(size)?;
        if old > size {
            return Err(LogError::OutOfRange(format!(
                "old size {old} exceeds size {size}"
            )));
        }
        let mut proof = Vec::new();
        if old > 0 && old < size {
            self.subproof(old, 0, size, true, &mut proof)?;
        }
        Ok(proof)
    }

    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), LogError> {
        let len = end - start;
        if m == len {
            if !complete {
                out.push(self.range_root(start, end)?);
            }
            return Ok(());
        }
        let k = 1u64 << (63 - (len - 1).leading_zeros());
        if m <= k {
            self.subproof(m, start, start + k, complete, out)?;
            out.push(self.range_root(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, out)?;
            out.push(self.range_root(start, start + k)?);
        }
        Ok(())
    }

    /// The leaf bytes of leaf `index`.
    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, LogError> {
        Ok(self.block_leaf(index)?.to_bytes())
    }

    /// Leaf `index`, parsed.
    pub fn block_leaf(&self, index: u64) -> Result<BlockLeaf, LogError> {
        self.check_size(index + 1)?;
        let mut record = vec![0u8; LEAF_RECORD as usize];
        self.leaves
            .read_exact_at(&mut record, index * LEAF_RECORD)?;
        BlockLeaf::parse(&record)
            .or_else(|_| BlockLeaf::parse(&record[..87]))
            .map_err(|e| LogError::Io(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))
    }

    /// The body of a tile or entry bundle, if the tree of `size` leaves (a published
    /// checkpoint's) holds all of it: concatenated hashes, or uint16-length-prefixed leaves.
    pub fn tile(&self, path: &TilePath, size: u64) -> Result<Vec<u8>, LogError> {
        self.check_size(size)?;
        let level = path.level.unwrap_or(0) as u32;
        let span = 1u64.checked_shl(level * TILE_HEIGHT).filter(|_| level < 8);
        let first = path.index.checked_mul(TILE_WIDTH);
        let last_needed = first
            .zip(span)
            .and_then(|(first, span)| (first + path.width).checked_mul(span));
        match last_needed {
            Some(needed) if needed <= size => {}
            _ => {
                return Err(LogError::OutOfRange(format!(
                    "{} is beyond size {size}",
                    path.to_path()
                )))
            }
        }
        let first = path.index * TILE_WIDTH;
        match path.level {
            Some(level) => {
                let hashes = self.read_hashes(level as usize, first, path.width)?;
                Ok(hashes.iter().flat_map(|h| h.0).collect())
            }
            None => {
                let mut out = Vec::new();
                for index in first..first + path.width {
                    let leaf = self.leaf(index)?;
                    out.extend_from_slice(&(leaf.len() as u16).to_be_bytes());
                    out.extend_from_slice(&leaf);
                }
                Ok(out)
            }
        }
    }
}

/// The C2SP tlog-proof of block `index` in the checkpoint `note` of `size` leaves: with
/// `revision` (a revision of that block as GetRevision shows it, and the proof from its hash
/// to the block's hash) a revision proof (`quill-revision-proof/v1` in `extra`), else a block
/// proof (the leaf).
pub fn proof_bundle(
    store: &LogStore,
    index: u64,
    size: u64,
    note: &str,
    revision: Option<(Element, Vec<Hash>)>,
) -> Result<TlogProof, LogError> {
    let extra = match revision {
        None => store.leaf(index)?,
        Some((revision, proof)) => RevisionExtra {
            leaf: store.block_leaf(index)?,
            revision,
            proof,
        }
        .to_bytes(),
    };
    Ok(TlogProof {
        extra: Some(extra),
        index,
        hashes: store.inclusion_proof(index, size)?,
        checkpoint: note.to_owned(),
    })
}

/// Where a [`Publisher`] keeps its checkpoints durably.
pub trait CheckpointStore: Send + std::fmt::Debug {
    /// Persists a newly signed checkpoint (`checkpoint` is `note`'s body) before it is
    /// published.
    fn save_signed(&mut self, checkpoint: &Checkpoint, note: &str) -> Result<(), LogError>;
    /// Persists the newest checkpoint recorded with its witnesses' cosignatures.
    fn save_cosigned(&mut self, checkpoint: &Checkpoint, note: &str) -> Result<(), LogError>;
}

/// Checkpoints in files: the last signed one in `checkpoint`, the cosigned one beside it.
#[derive(Debug)]
struct FileCheckpoints {
    path: PathBuf,
    cosigned_path: PathBuf,
}

impl CheckpointStore for FileCheckpoints {
    fn save_signed(&mut self, _: &Checkpoint, note: &str) -> Result<(), LogError> {
        Ok(replace_file(&self.path, note.as_bytes(), 0o644)?)
    }

    fn save_cosigned(&mut self, _: &Checkpoint, note: &str) -> Result<(), LogError> {
        Ok(replace_file(&self.cosigned_path, note.as_bytes(), 0o644)?)
    }
}

/// Signs a ledger log's checkpoints, persisting each before it is published.
#[derive(Debug)]
pub struct Publisher {
    signer: NoteSigner,
    store: Box<dyn CheckpointStore>,
    last: Option<(Checkpoint, String)>,
    /// The newest checkpoint recorded with its witnesses' cosignatures.
    cosigned: Option<(Checkpoint, String)>,
}

/// Parses a persisted checkpoint note; `place` names where it was kept, for errors.
fn parse_note(note: String, place: &str) -> Result<(Checkpoint, String), LogError> {
    let invalid = |why: String| {
        LogError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{place}: {why}"),
        ))
    };
    let parsed = Note::parse(&note).map_err(|e| invalid(e.to_string()))?;
    let checkpoint = Checkpoint::parse(&parsed.text).map_err(|e| invalid(e.to_string()))?;
    Ok((checkpoint, note))
}

/// Reads a persisted checkpoint note, if the file exists.
fn read_note(path: &Path) -> Result<Option<(Checkpoint, String)>, LogError> {
    match fs::read_to_string(path) {
        Ok(note) => parse_note(note, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Publisher {
    /// A publisher for the log whose origin is `signer`'s name, keeping its last checkpoint
    /// in `path` and the newest cosigned one beside it (`<path>.cosigned`).
    pub fn open(signer: NoteSigner, path: &Path) -> Result<Publisher, LogError> {
        let cosigned_path = path.with_extension("cosigned");
        Ok(Publisher {
            last: read_note(path)?,
            cosigned: read_note(&cosigned_path)?,
            signer,
            store: Box::new(FileCheckpoints {
                path: path.to_owned(),
                cosigned_path,
            }),
        })
    }

    /// A publisher keeping its checkpoints in `store`, with none yet: [`Publisher::adopt`]
    /// takes up what the store already holds.
    pub fn with_store(signer: NoteSigner, store: Box<dyn CheckpointStore>) -> Publisher {
        Publisher {
            signer,
            store,
            last: None,
            cosigned: None,
        }
    }

    /// Takes up the checkpoints `place` holds (persisted there by this log's signer, on this
    /// server or another): the signed note and the cosigned one, each only if it is not
    /// smaller than the one known here, so the served view never rolls back. The next
    /// [`Publisher::publish`] signs only a tree that extends the adopted checkpoint.
    pub fn adopt(
        &mut self,
        signed: Option<String>,
        cosigned: Option<String>,
        place: &str,
    ) -> Result<(), LogError> {
        let newer = |known: &Option<(Checkpoint, String)>, found: &(Checkpoint, String)| {
            known.as_ref().is_none_or(|(k, _)| k.size <= found.0.size)
        };
        if let Some(found) = signed.map(|note| parse_note(note, place)).transpose()? {
            if newer(&self.last, &found) {
                self.last = Some(found);
            }
        }
        if let Some(found) = cosigned.map(|note| parse_note(note, place)).transpose()? {
            if newer(&self.cosigned, &found) {
                self.cosigned = Some(found);
            }
        }
        Ok(())
    }

    /// The last signed checkpoint note, if any.
    pub fn checkpoint(&self) -> Option<&str> {
        self.last.as_ref().map(|(_, note)| note.as_str())
    }

    /// The size of the last signed checkpoint (0 if none).
    pub fn size(&self) -> u64 {
        self.last.as_ref().map_or(0, |(c, _)| c.size)
    }

    /// The newest checkpoint recorded with cosignatures, and its size.
    pub fn cosigned(&self) -> Option<(u64, &str)> {
        self.cosigned
            .as_ref()
            .map(|(checkpoint, note)| (checkpoint.size, note.as_str()))
    }

    /// Records `note`, a checkpoint this publisher signed with the cosignatures gathered for
    /// it, durably, as the newest cosigned checkpoint. Refuses a note it did not sign, one
    /// beyond the last signed size, and one older than the cosigned checkpoint it replaces
    /// (a round that finished late must not roll the served view back).
    pub fn record_cosigned(&mut self, note: &str) -> Result<(), LogError> {
        let refused = |why: &str| LogError::OutOfRange(format!("cosigned checkpoint: {why}"));
        let parsed = Note::parse(note).map_err(|e| refused(&e.to_string()))?;
        let checkpoint = Checkpoint::parse(&parsed.text).map_err(|e| refused(&e.to_string()))?;
        let keys = [self.signer.verifier_key()];
        let signed = parsed.verify(&keys).map_err(|e| refused(&e.to_string()))?;
        if signed.is_empty() {
            return Err(refused("not signed by this log"));
        }
        if checkpoint.size > self.size() {
            return Err(refused("beyond the last signed checkpoint"));
        }
        if let Some((current, _)) = &self.cosigned {
            if checkpoint.size < current.size {
                return Err(refused("older than the one recorded"));
            }
        }
        self.store.save_cosigned(&checkpoint, note)?;
        self.cosigned = Some((checkpoint, note.to_owned()));
        Ok(())
    }

    /// Signs a checkpoint of the whole store if it grew since the last one and still extends
    /// it; returns the new note, or `None` when there is nothing new to sign.
    pub fn publish(&mut self, store: &LogStore) -> Result<Option<String>, LogError> {
        let size = store.size();
        if let Some((last, _)) = &self.last {
            if size <= last.size {
                return Ok(None);
            }
            if store.root(last.size)? != last.root {
                return Err(LogError::Inconsistent { size: last.size });
            }
        } else if size == 0 {
            return Ok(None);
        }
        let checkpoint = Checkpoint {
            origin: self.signer.name().to_owned(),
            size,
            root: store.root(size)?,
            extensions: Vec::new(),
        };
        let text = checkpoint.to_text();
        let note = Note {
            signatures: vec![self.signer.sign(&text)],
            text,
        }
        .to_text();
        self.store.save_signed(&checkpoint, &note)?;
        self.last = Some((checkpoint, note.clone()));
        Ok(Some(note))
    }
}

#[cfg(test)]
mod tests {
    use ion_rs::Element;
    use quill_ledger::LedgerOptions;
    use quill_verify::tlog::check_block_chain;

    use super::*;

    fn ledger_with_blocks(dir: &Path, blocks: u64) -> Ledger {
        let ledger = Ledger::create(&dir.join("ledger"), "shop", LedgerOptions::default()).unwrap();
        ledger
            .transact(|tx| tx.create_table("Item", None).map(|_| ()))
            .unwrap();
        for i in 2..blocks {
            ledger
                .transact(|tx| {
                    tx.insert("Item", Element::read_one(format!("{{n: {i}}}")).unwrap())
                        .map(|_| ())
                })
                .unwrap();
        }
        ledger
    }

    /// Commits one more block to `ledger` and takes it into `store`.
    fn grow_by_one_block(ledger: &Ledger, store: &mut LogStore) {
        ledger
            .transact(|tx| {
                tx.insert("Item", Element::read_one("{n: 9}").unwrap())
                    .map(|_| ())
            })
            .unwrap();
        store.sync(ledger).unwrap();
    }

    #[test]
    fn the_store_matches_the_in_memory_tree_and_survives_torn_files() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = 300;
        let ledger = ledger_with_blocks(dir.path(), blocks);
        let mut store = LogStore::open(&dir.path().join("tlog")).unwrap();
        assert_eq!(store.sync(&ledger).unwrap(), blocks);

        let leaves = block_leaves(&ledger, 0, blocks).unwrap();
        assert_eq!(leaves.len() as u64, blocks);
        // The range read agrees with reading one block at a time, and with what the store kept.
        for (i, leaf) in leaves.iter().enumerate() {
            let one = ledger.block_hashes(i as u64).unwrap();
            assert_eq!(
                (
                    leaf.sequence_no,
                    leaf.block_hash,
                    leaf.entries_hash,
                    leaf.previous_block_hash
                ),
                (i as u64, one.hash, one.entries_hash, one.previous_hash)
            );
            assert_eq!(store.block_leaf(i as u64).unwrap(), *leaf);
        }
        assert!(block_leaves(&ledger, 0, blocks + 1).is_err());
        // The log alone re-checks the chain and recomputes the QLDB digest.
        assert_eq!(
            check_block_chain(&leaves).unwrap(),
            Some(ledger.digest().digest)
        );
        let hashes: Vec<Hash> = leaves
            .iter()
            .map(|l| rfc6962::leaf_hash(&l.to_bytes()))
            .collect();
        for size in [1, 2, 3, 255, 256, 257, 299, 300] {
            let tree = &hashes[..size as usize];
            assert_eq!(
                store.root(size).unwrap(),
                rfc6962::root(tree),
                "root {size}"
            );
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    store.inclusion_proof(index, size).unwrap(),
                    rfc6962::inclusion_proof(tree, index as usize),
                    "inclusion {index} of {size}"
                );
            }
            for old in [0, 1, size / 3, size - 1, size] {
                assert_eq!(
                    store.consistency_proof(old, size).unwrap(),
                    rfc6962::consistency_proof(tree, old as usize),
                    "consistency {old} to {size}"
                );
            }
        }
        // Appended in slices that straddle a tile boundary, the tree is the same.
        let mut sliced = LogStore::open(&dir.path().join("tlog-sliced")).unwrap();
        for range in [0..1, 1..200, 200..257, 257..300] {
            sliced.append(&leaves[range]).unwrap();
        }
        for size in [1, 200, 255, 256, 257, 300] {
            assert_eq!(sliced.root(size).unwrap(), store.root(size).unwrap());
        }
        assert_eq!(store.leaf(0).unwrap(), leaves[0].to_bytes());
        assert_eq!(store.leaf(299).unwrap(), leaves[299].to_bytes());

        // Tiles: a full level-0 tile, a partial one, the level-1 tile, an entry bundle.
        let full = store
            .tile(
                &TilePath {
                    level: Some(0),
                    index: 0,
                    width: 256,
                },
                300,
            )
            .unwrap();
        assert_eq!(
            full,
            hashes[..256].iter().flat_map(|h| h.0).collect::<Vec<u8>>()
        );
        let partial = store
            .tile(
                &TilePath {
                    level: Some(0),
                    index: 1,
                    width: 44,
                },
                300,
            )
            .unwrap();
        assert_eq!(
            partial,
            hashes[256..].iter().flat_map(|h| h.0).collect::<Vec<u8>>()
        );
        let level1 = store
            .tile(
                &TilePath {
                    level: Some(1),
                    index: 0,
                    width: 1,
                },
                300,
            )
            .unwrap();
        assert_eq!(level1, rfc6962::root(&hashes[..256]).0.to_vec());
        let bundle = store
            .tile(
                &TilePath {
                    level: None,
                    index: 1,
                    width: 2,
                },
                300,
            )
            .unwrap();
        let mut expected = Vec::new();
        for leaf in &leaves[256..258] {
            expected.extend_from_slice(&119u16.to_be_bytes());
            expected.extend_from_slice(&leaf.to_bytes());
        }
        assert_eq!(bundle, expected);
        let tile = |level, index, width| TilePath {
            level,
            index,
            width,
        };
        for (beyond, size) in [
            (tile(Some(0), 1, 45), 300),
            (tile(Some(1), 0, 2), 300),
            (tile(Some(0), 0, 256), 255),
            (tile(None, 0, 256), 255),
            (tile(Some(0), 0, 1), 301),
        ] {
            assert!(store.tile(&beyond, size).is_err(), "{beyond:?} at {size}");
        }

        // A crash that tore the leaf file and lost the level-1 hashes: reopening repairs both.
        let root = store.root(300).unwrap();
        drop(store);
        let leaves_file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("tlog/leaves"))
            .unwrap();
        leaves_file.set_len(299 * LEAF_RECORD + 5).unwrap();
        fs::remove_file(dir.path().join("tlog/hashes-1")).unwrap();
        let mut store = LogStore::open(&dir.path().join("tlog")).unwrap();
        assert_eq!(store.size(), 299);
        assert_eq!(store.sync(&ledger).unwrap(), 300);
        assert_eq!(store.root(300).unwrap(), root);
    }

    #[test]
    fn the_publisher_signs_only_growth_and_never_a_rewritten_tree() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_blocks(dir.path(), 3);
        let mut store = LogStore::open(&dir.path().join("tlog")).unwrap();
        store.sync(&ledger).unwrap();
        let signer = || NoteSigner::from_seed("quill.test/shop", [5; 32]).unwrap();
        let path = dir.path().join("tlog/checkpoint");
        let mut publisher = Publisher::open(signer(), &path).unwrap();
        let note = publisher
            .publish(&store)
            .unwrap()
            .expect("a first checkpoint");
        let parsed = Note::parse(&note).unwrap();
        assert_eq!(parsed.verify(&[signer().verifier_key()]).unwrap().len(), 1);
        assert_eq!(
            Checkpoint::parse(&parsed.text).unwrap().root,
            store.root(3).unwrap()
        );
        assert_eq!(
            publisher.publish(&store).unwrap(),
            None,
            "no growth, no checkpoint"
        );

        grow_by_one_block(&ledger, &mut store);
        // A restarted publisher resumes from the persisted checkpoint.
        let mut publisher = Publisher::open(signer(), &path).unwrap();
        assert_eq!(publisher.checkpoint(), Some(note.as_str()));
        assert!(publisher.publish(&store).unwrap().is_some());
        assert_eq!(publisher.size(), 4);

        // A log store that no longer holds the signed tree (another ledger's) is refused.
        let other_dir = tempfile::tempdir().unwrap();
        let other = ledger_with_blocks(other_dir.path(), 6);
        let mut other_store = LogStore::open(&other_dir.path().join("tlog")).unwrap();
        other_store.sync(&other).unwrap();
        assert!(matches!(
            publisher.publish(&other_store),
            Err(LogError::Inconsistent { size: 4 })
        ));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            publisher.checkpoint().unwrap()
        );
    }

    /// Keeps what it is given in memory; refuses everything once `refuse` is set.
    #[derive(Debug, Default)]
    struct Kept {
        saved: std::sync::Arc<std::sync::Mutex<Vec<(u64, bool)>>>,
        refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl CheckpointStore for Kept {
        fn save_signed(&mut self, checkpoint: &Checkpoint, _: &str) -> Result<(), LogError> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(LogError::Store("refused".into()));
            }
            self.saved.lock().unwrap().push((checkpoint.size, false));
            Ok(())
        }

        fn save_cosigned(&mut self, checkpoint: &Checkpoint, _: &str) -> Result<(), LogError> {
            self.saved.lock().unwrap().push((checkpoint.size, true));
            Ok(())
        }
    }

    #[test]
    fn a_publisher_adopts_checkpoints_kept_elsewhere_and_publishes_only_what_was_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_blocks(dir.path(), 3);
        let mut store = LogStore::open(&dir.path().join("tlog")).unwrap();
        store.sync(&ledger).unwrap();
        let signer = || NoteSigner::from_seed("quill.test/shop", [5; 32]).unwrap();
        // Another server's publisher signed size 3.
        let mut first = Publisher::with_store(signer(), Box::<Kept>::default());
        let three = first.publish(&store).unwrap().unwrap();

        let kept = Kept::default();
        let (saved, refuse) = (kept.saved.clone(), kept.refuse.clone());
        let mut publisher = Publisher::with_store(signer(), Box::new(kept));
        publisher.adopt(Some(three.clone()), None, "test").unwrap();
        assert_eq!(
            (publisher.size(), publisher.checkpoint()),
            (3, Some(three.as_str()))
        );
        assert_eq!(
            publisher.publish(&store).unwrap(),
            None,
            "nothing new to sign"
        );

        grow_by_one_block(&ledger, &mut store);
        // A checkpoint the store refuses is not published.
        refuse.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(publisher.publish(&store), Err(LogError::Store(_))));
        assert_eq!(publisher.size(), 3);
        refuse.store(false, std::sync::atomic::Ordering::SeqCst);
        let four = publisher.publish(&store).unwrap().unwrap();
        assert_eq!(*saved.lock().unwrap(), [(4, false)]);

        // An older checkpoint found later does not roll the publisher back, and a note that
        // is no checkpoint is an error naming where it was found.
        publisher.adopt(Some(three), None, "test").unwrap();
        assert_eq!(publisher.checkpoint(), Some(four.as_str()));
        let error = publisher
            .adopt(Some("garbage".into()), None, "the table")
            .unwrap_err();
        assert!(error.to_string().contains("the table"), "{error}");
    }

    #[test]
    fn cosigned_checkpoints_survive_a_restart_and_never_roll_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_blocks(dir.path(), 3);
        let mut store = LogStore::open(&dir.path().join("tlog")).unwrap();
        store.sync(&ledger).unwrap();
        let signer = || NoteSigner::from_seed("quill.test/shop", [5; 32]).unwrap();
        let witness = NoteSigner::from_seed("witness.test", [6; 32]).unwrap();
        let path = dir.path().join("tlog/checkpoint");
        let mut publisher = Publisher::open(signer(), &path).unwrap();
        let first = publisher.publish(&store).unwrap().unwrap();
        let cosign = |note: &str| {
            let text = Note::parse(note).unwrap().text;
            format!("{note}{}", witness.cosign(&text, 1_700_000_000).to_line())
        };
        let first_cosigned = cosign(&first);
        publisher.record_cosigned(&first_cosigned).unwrap();

        grow_by_one_block(&ledger, &mut store);
        let second = publisher.publish(&store).unwrap().unwrap();
        // Until the new round finishes, the cosigned view stays at the first checkpoint.
        assert_eq!(publisher.cosigned(), Some((3, first_cosigned.as_str())));
        let second_cosigned = cosign(&second);
        publisher.record_cosigned(&second_cosigned).unwrap();

        let mut reopened = Publisher::open(signer(), &path).unwrap();
        assert_eq!(reopened.cosigned(), Some((4, second_cosigned.as_str())));
        assert_eq!(reopened.checkpoint(), Some(second.as_str()));
        // A late round for the older checkpoint does not roll the view back.
        assert!(reopened.record_cosigned(&first_cosigned).is_err());
        // Nor does a note another key signed.
        let stranger = NoteSigner::from_seed("quill.test/shop", [7; 32]).unwrap();
        let text = Note::parse(&second).unwrap().text;
        let forged = Note {
            signatures: vec![stranger.sign(&text)],
            text,
        }
        .to_text();
        assert!(reopened.record_cosigned(&forged).is_err());
        assert_eq!(reopened.cosigned(), Some((4, second_cosigned.as_str())));
    }
}
