//! The digest tree's full nodes on disk, so proofs are served in O(log n) reads.
//!
//! The ledger digest is a Merkle tree over block hashes: leaf `i` is the hash of block `i`.
//! Node `(level, index)` covers leaves `[index << level, (index + 1) << level)` and is *full*
//! once all of them exist; level 0 nodes are the leaves and a parent is
//! `quill_verify::dot(left, right)`. Every full node is stored, and only full nodes: a proof or
//! a digest combines at most one full node per level.
//!
//! Layout: one file per level, `level-{level:02}.qtn`, of fixed 32-byte records; record
//! `index` is at byte `32 * index`. Files are append-only and read with positioned reads.
//! Memory is O(log n): the right edge (last node of each level) is cached, nothing per block.
//!
//! Durability: pushes are not fsynced (the journal is the source of truth). [`TreeStore::flush`]
//! (at the ledger's durable checkpoints, about once a second, and on close) fsyncs every level
//! and then records the number of leaves it made durable in `checkpoint.qtc` (leaves u64,
//! CRC32 of those 8 bytes). After a power loss, nodes pushed after the last checkpoint may be
//! missing, zero, or stale anywhere in the files (unsynced writes land in any order), so on
//! open the ledger trusts only [`TreeStore::durable_leaves`], truncates the rest and re-pushes
//! it from the journal. Open itself makes the files consistent in length: a partial record is
//! dropped, a level holding more nodes than the level below allows is truncated, and a level
//! holding fewer is completed from the level below.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use quill_verify::{dot, Hash};

use crate::storage::{OpenMode, Storage, StorageFile};
use crate::{LedgerError, Result};

/// Levels a tree over at most `u64::MAX` leaves can have full nodes on (0..=63).
pub(crate) const TREE_LEVELS_MAX: usize = 64;
/// Most leaves one `push_leaves` takes: bounds the write buffers of one call
/// (about 64 bytes per leaf).
pub(crate) const PUSH_LEAVES_MAX: usize = 1 << 20;
const NODE_BYTES: u64 = 32;
const CHECKPOINT_FILE: &str = "checkpoint.qtc";
const CHECKPOINT_BYTES: usize = 12;
/// Parents recomputed per read while repairing a level on open.
const REPAIR_CHUNK_NODES: u64 = 4096;

/// Full nodes of the digest tree. `Send + Sync`; all methods take `&self`.
#[derive(Debug)]
pub(crate) struct TreeStore {
    storage: Storage,
    dir: PathBuf,
    /// Serialises `push_leaves`, `truncate` and `flush`; holds the leaves known durable (as
    /// of the last checkpoint, and never more than the store holds).
    writer: Mutex<u64>,
    /// Serialises `flush` and `truncate`; what the last flush synced.
    checkpointed: Mutex<Checkpointed>,
    checkpoint: StorageFile,
    /// What readers see. Held (read) during a node read so `truncate` cannot shrink a file
    /// under a reader.
    state: RwLock<TreeState>,
}

#[derive(Debug, Clone)]
struct TreeState {
    /// Invariant: level `L`'s file holds exactly `leaves >> L` records, for every level that
    /// has nodes (files beyond the data written by the last push are ignored and overwritten).
    leaves: u64,
    /// `files[L]` is level `L`'s file; levels with nodes always have one.
    files: Vec<Arc<StorageFile>>,
    /// `edge[L]` is the last node of level `L`, if that level has nodes.
    edge: [Option<Hash>; TREE_LEVELS_MAX],
}

impl TreeState {
    fn nodes_at(&self, level: usize) -> u64 {
        if level >= TREE_LEVELS_MAX {
            return 0;
        }
        self.leaves >> level
    }
}

impl TreeStore {
    /// Opens the store in `dir`, creating it if absent, and repairs crash damage.
    pub fn open(storage: &Storage, dir: &Path) -> Result<TreeStore> {
        storage.create_dir_all(dir)?;
        let mut files: Vec<Arc<StorageFile>> = Vec::new();
        let mut nodes_below = 0;
        for level in 0..TREE_LEVELS_MAX {
            let path = level_path(dir, level);
            if level > 0 && nodes_below / 2 == 0 {
                remove_stale_level(storage, &path)?;
                continue;
            }
            let file = open_level(storage, &path)?;
            let nodes = if level == 0 {
                drop_partial_record(&file)?
            } else {
                repair_level(&files[level - 1], &file, nodes_below / 2)?
            };
            files.push(Arc::new(file));
            nodes_below = nodes;
        }
        let leaves = files[0].len()? / NODE_BYTES;
        let checkpoint = storage.open_file(&dir.join(CHECKPOINT_FILE), OpenMode::Create)?;
        let durable_leaves = read_checkpoint(&checkpoint)?.min(leaves);
        let mut state = TreeState {
            leaves,
            files,
            edge: [None; TREE_LEVELS_MAX],
        };
        load_edge(&mut state)?;
        Ok(TreeStore {
            storage: storage.clone(),
            dir: dir.to_owned(),
            writer: Mutex::new(durable_leaves),
            checkpointed: Mutex::new(Checkpointed {
                leaves: durable_leaves,
                levels: 0,
            }),
            checkpoint,
            state: RwLock::new(state),
        })
    }

    /// Number of leaves (blocks) in the tree.
    #[cfg(test)]
    pub fn leaves(&self) -> u64 {
        self.read_state().leaves
    }

    /// Leaves made durable by the last [`TreeStore::flush`] (and still held): every node over
    /// them is intact after a power loss; nodes over later leaves may not be.
    pub fn durable_leaves(&self) -> u64 {
        *self.lock_writer()
    }

    /// Appends `leaves` and every parent they complete. Not durable until [`TreeStore::flush`].
    pub fn push_leaves(&self, leaves: &[Hash]) -> Result<()> {
        if leaves.len() > PUSH_LEAVES_MAX {
            return Err(LedgerError::LimitExceeded {
                limit: "PUSH_LEAVES_MAX",
                max: PUSH_LEAVES_MAX,
                actual: leaves.len(),
            });
        }
        let _writer = self.lock_writer();
        let before = self.read_state().clone();
        let mut after = before.clone();
        let mut new_nodes: Vec<Vec<u8>> = vec![Vec::new(); TREE_LEVELS_MAX];
        for leaf in leaves {
            add_leaf(&mut after, &mut new_nodes, *leaf);
        }
        // Files first, state last: until published, readers never look at the new records,
        // and a failed write leaves the old state in force (the next push overwrites).
        for (level, nodes) in new_nodes
            .iter()
            .enumerate()
            .filter(|(_, nodes)| !nodes.is_empty())
        {
            if level == after.files.len() {
                after.files.push(Arc::new(open_level(
                    &self.storage,
                    &level_path(&self.dir, level),
                )?));
            }
            after.files[level].write_all_at(nodes, before.nodes_at(level) * NODE_BYTES)?;
        }
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = after;
        Ok(())
    }

    /// Drops leaves `>= leaves` and every node that depended on them. No-op if the store
    /// holds no more than `leaves`.
    pub fn truncate(&self, leaves: u64) -> Result<()> {
        let mut checkpointed = lock(&self.checkpointed);
        let mut durable_leaves = self.lock_writer();
        *durable_leaves = (*durable_leaves).min(leaves);
        checkpointed.leaves = checkpointed.leaves.min(leaves);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if leaves >= state.leaves {
            return Ok(());
        }
        state.leaves = leaves;
        for (level, file) in state.files.iter().enumerate() {
            file.set_len(state.nodes_at(level) * NODE_BYTES)?;
        }
        load_edge(&mut state)?;
        Ok(())
    }

    /// The full node `(level, index)`; `UnknownBlock` if it is not full yet.
    pub fn full_node(&self, level: u32, index: u64) -> Result<Hash> {
        let state = self.read_state();
        let level_index = level as usize;
        let nodes = state.nodes_at(level_index);
        if index >= nodes {
            return Err(LedgerError::UnknownBlock(format!(
                "digest tree node (level {level}, index {index}) is not full: the tree has {} leaves",
                state.leaves
            )));
        }
        if index + 1 == nodes {
            if let Some(hash) = state.edge[level_index] {
                return Ok(hash);
            }
        }
        Ok(read_node(&state.files[level_index], index)?)
    }

    /// Makes every pushed node durable, then records the checkpoint. Syncs only the level
    /// files that gained nodes since the last flush (and the directory if a level file was
    /// created), and holds no lock pushes need while it waits for the disk: it runs beside
    /// commits.
    pub fn flush(&self) -> Result<()> {
        let mut checkpointed = lock(&self.checkpointed);
        let (files, leaves) = {
            let _writer = self.lock_writer();
            let state = self.read_state();
            (state.files.clone(), state.leaves)
        };
        for (level, file) in files.iter().enumerate() {
            let grew = leaves >> level != checkpointed.leaves >> level;
            if grew || level >= checkpointed.levels {
                file.sync_data()?;
            }
        }
        if files.len() != checkpointed.levels {
            self.storage.sync_dir(&self.dir)?;
        }
        let mut record = [0u8; CHECKPOINT_BYTES];
        record[..8].copy_from_slice(&leaves.to_le_bytes());
        let crc = crc32fast::hash(&record[..8]);
        record[8..].copy_from_slice(&crc.to_le_bytes());
        self.checkpoint.write_all_at(&record, 0)?;
        self.checkpoint.sync_data()?;
        *checkpointed = Checkpointed {
            leaves,
            levels: files.len(),
        };
        *self.lock_writer() = leaves;
        Ok(())
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, TreeState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, u64> {
        lock(&self.writer)
    }
}

impl quill_verify::FullNodes for TreeStore {
    type Error = LedgerError;

    fn full_node(&self, level: u32, index: u64) -> Result<Hash> {
        TreeStore::full_node(self, level, index)
    }
}

/// Adds one leaf to `state`, appending it and each parent it completes to `new_nodes`.
fn add_leaf(state: &mut TreeState, new_nodes: &mut [Vec<u8>], leaf: Hash) {
    let leaf_number = state.leaves;
    let mut node = leaf;
    // A leaf completes one parent per trailing one bit of its number: at most 63 parents.
    for (level, nodes) in new_nodes.iter_mut().enumerate().take(TREE_LEVELS_MAX) {
        nodes.extend_from_slice(node.as_bytes());
        let index = leaf_number >> level;
        let left = state.edge[level].replace(node);
        if index & 1 == 0 {
            break;
        }
        let left = left.expect("a node with an odd index has a left sibling on the edge");
        node = dot(&left, &node);
    }
    state.leaves += 1;
}

/// What the last [`TreeStore::flush`] made durable.
#[derive(Debug)]
struct Checkpointed {
    leaves: u64,
    /// Level files that existed then (all synced by the first flush after open).
    levels: usize,
}

/// Locks a mutex whose data a panic cannot leave too high: the durable counts are only
/// lowered, or set after a completed flush.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The leaves recorded by the last checkpoint; 0 when there is none or it is damaged (the
/// whole tree is then rebuilt from the journal).
fn read_checkpoint(checkpoint: &StorageFile) -> io::Result<u64> {
    if checkpoint.len()? != CHECKPOINT_BYTES as u64 {
        return Ok(0);
    }
    let mut record = [0u8; CHECKPOINT_BYTES];
    checkpoint.read_exact_at(&mut record, 0)?;
    let (leaves, crc) = record.split_at(8);
    if crc32fast::hash(leaves).to_le_bytes() != crc {
        return Ok(0);
    }
    Ok(u64::from_le_bytes(leaves.try_into().expect("8 bytes")))
}

fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join(format!("level-{level:02}.qtn"))
}

fn open_level(storage: &Storage, path: &Path) -> io::Result<StorageFile> {
    storage.open_file(path, OpenMode::Create)
}

/// Removes a level file that can hold no full node.
fn remove_stale_level(storage: &Storage, path: &Path) -> io::Result<()> {
    match storage.remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Drops a trailing partial record; returns the number of whole records.
fn drop_partial_record(file: &StorageFile) -> io::Result<u64> {
    let bytes = file.len()?;
    let nodes = bytes / NODE_BYTES;
    if bytes % NODE_BYTES != 0 {
        file.set_len(nodes * NODE_BYTES)?;
    }
    Ok(nodes)
}

/// Makes `parents` hold exactly `expected` nodes: truncates extra ones and recomputes
/// missing ones from `children`. Returns `expected`.
fn repair_level(children: &StorageFile, parents: &StorageFile, expected: u64) -> io::Result<u64> {
    let present = drop_partial_record(parents)?;
    if present > expected {
        parents.set_len(expected * NODE_BYTES)?;
        return Ok(expected);
    }
    if present < expected {
        tracing::warn!(
            present,
            expected,
            "digest tree level short after a crash: recomputing it"
        );
    }
    let mut index = present;
    // Each pass recomputes at least one node: bounded by `expected - present`.
    while index < expected {
        let count = (expected - index).min(REPAIR_CHUNK_NODES);
        let mut pairs = vec![0u8; (count * 2 * NODE_BYTES) as usize];
        children.read_exact_at(&mut pairs, index * 2 * NODE_BYTES)?;
        let mut computed = Vec::with_capacity((count * NODE_BYTES) as usize);
        for pair in pairs.chunks_exact(2 * NODE_BYTES as usize) {
            let (left, right) = pair.split_at(NODE_BYTES as usize);
            computed.extend_from_slice(dot(&to_hash(left), &to_hash(right)).as_bytes());
        }
        parents.write_all_at(&computed, index * NODE_BYTES)?;
        index += count;
    }
    Ok(expected)
}

/// Reloads the right-edge cache from the files.
fn load_edge(state: &mut TreeState) -> io::Result<()> {
    for level in 0..TREE_LEVELS_MAX {
        let nodes = state.nodes_at(level);
        state.edge[level] = match nodes {
            0 => None,
            _ => Some(read_node(&state.files[level], nodes - 1)?),
        };
    }
    Ok(())
}

fn read_node(file: &StorageFile, index: u64) -> io::Result<Hash> {
    let mut bytes = [0u8; NODE_BYTES as usize];
    file.read_exact_at(&mut bytes, index * NODE_BYTES)?;
    Ok(Hash(bytes))
}

fn to_hash(bytes: &[u8]) -> Hash {
    Hash::from_slice(bytes).expect("callers pass 32-byte chunks")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(number: u64) -> Hash {
        Hash::sha256(&number.to_le_bytes())
    }

    fn leaves(range: std::ops::Range<u64>) -> Vec<Hash> {
        range.map(leaf).collect()
    }

    /// Every full node of a tree over `count` leaves, by level, computed the obvious way.
    fn naive_levels(count: u64) -> Vec<Vec<Hash>> {
        let mut levels = vec![leaves(0..count)];
        while levels.last().unwrap().len() >= 2 {
            let below = levels.last().unwrap();
            let above = below
                .chunks_exact(2)
                .map(|pair| dot(&pair[0], &pair[1]))
                .collect();
            levels.push(above);
        }
        levels
    }

    fn assert_matches_naive(store: &TreeStore, count: u64) {
        assert_eq!(store.leaves(), count);
        let levels = naive_levels(count);
        for (level, nodes) in levels.iter().enumerate() {
            for (index, node) in nodes.iter().enumerate() {
                let stored = store.full_node(level as u32, index as u64).unwrap();
                assert_eq!(&stored, node, "size {count}, node ({level}, {index})");
            }
            let past_end = store.full_node(level as u32, nodes.len() as u64);
            assert!(matches!(past_end, Err(LedgerError::UnknownBlock(_))));
        }
        let above = store.full_node(levels.len() as u32, 0);
        assert!(matches!(above, Err(LedgerError::UnknownBlock(_))));
    }

    #[test]
    fn full_nodes_match_a_naive_tree_for_every_size_up_to_200() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        assert_matches_naive(&store, 0);
        for count in 1..=200u64 {
            store.push_leaves(&[leaf(count - 1)]).unwrap();
            assert_matches_naive(&store, count);
        }
    }

    #[test]
    fn batched_pushes_match_single_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        let mut count = 0;
        for batch in [3u64, 1, 0, 17, 64, 2, 113] {
            store.push_leaves(&leaves(count..count + batch)).unwrap();
            count += batch;
            assert_matches_naive(&store, count);
        }
    }

    #[test]
    fn truncate_then_push_again_gives_the_same_nodes() {
        for keep in [0u64, 1, 2, 63, 64, 65, 100, 199, 200, 300] {
            let dir = tempfile::tempdir().unwrap();
            let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
            store.push_leaves(&leaves(0..200)).unwrap();
            store.truncate(keep).unwrap();
            let kept = keep.min(200);
            assert_matches_naive(&store, kept);
            store.push_leaves(&leaves(kept..200)).unwrap();
            assert_matches_naive(&store, 200);
            drop(store);
            assert_matches_naive(&TreeStore::open(&Storage::Os, dir.path()).unwrap(), 200);
        }
    }

    #[test]
    fn reopen_keeps_the_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        store.push_leaves(&leaves(0..150)).unwrap();
        store.flush().unwrap();
        drop(store);
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        assert_matches_naive(&store, 150);
        store.push_leaves(&leaves(150..177)).unwrap();
        assert_matches_naive(&store, 177);
    }

    #[test]
    fn open_repairs_levels_inconsistent_with_the_level_below() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        store.push_leaves(&leaves(0..100)).unwrap();
        drop(store);
        let set_len = |level: usize, bytes: u64| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(level_path(dir.path(), level))
                .unwrap()
                .set_len(bytes)
                .unwrap();
        };
        set_len(0, 100 * 32 + 7); // partial leaf record
        set_len(1, 20 * 32); // 30 parents lost
        set_len(3, 0); // a whole level lost
        set_len(5, 10 * 32); // more nodes than level 4 allows (garbage zeros)
        std::fs::write(level_path(dir.path(), 9), [1u8; 64]).unwrap(); // a level that cannot exist
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        assert_matches_naive(&store, 100);
        assert!(!level_path(dir.path(), 9).exists());
    }

    #[test]
    fn open_drops_a_torn_leaf_and_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        store.push_leaves(&leaves(0..64)).unwrap();
        drop(store);
        // Leaf 63 was torn: every level's last node depended on it.
        std::fs::OpenOptions::new()
            .write(true)
            .open(level_path(dir.path(), 0))
            .unwrap()
            .set_len(63 * 32 + 31)
            .unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        assert_matches_naive(&store, 63);
        store.push_leaves(&[leaf(63)]).unwrap();
        assert_matches_naive(&store, 64);
    }

    #[test]
    fn flush_checkpoints_the_durable_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        store.push_leaves(&leaves(0..40)).unwrap();
        assert_eq!(store.durable_leaves(), 0);
        store.flush().unwrap();
        store.push_leaves(&leaves(40..50)).unwrap();
        assert_eq!(store.durable_leaves(), 40);
        drop(store);
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        assert_eq!(store.durable_leaves(), 40);
        store.truncate(30).unwrap();
        assert_eq!(store.durable_leaves(), 30);
        // A damaged checkpoint trusts nothing.
        std::fs::write(dir.path().join(CHECKPOINT_FILE), [7u8; CHECKPOINT_BYTES]).unwrap();
        drop(store);
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        assert_eq!(store.durable_leaves(), 0);
        assert_matches_naive(&store, 30);
    }

    #[test]
    fn oversized_push_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(&Storage::Os, dir.path()).unwrap();
        let too_many = vec![leaf(0); PUSH_LEAVES_MAX + 1];
        assert!(matches!(
            store.push_leaves(&too_many),
            Err(LedgerError::LimitExceeded { .. })
        ));
        assert_eq!(store.leaves(), 0);
    }

    #[test]
    fn tree_store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TreeStore>();
    }
}
