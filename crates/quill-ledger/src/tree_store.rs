//! Stored full nodes of the digest tree, so digests and proofs cost O(log n) reads.
//!
//! Layout: one file per level, `level-NN.bin`, holding 32-byte node hashes back to back
//! (node `index` at byte offset `32 * index`). Level 0 holds the leaves (block hashes); node
//! `(level, index)` = `dot(node(level - 1, 2 index), node(level - 1, 2 index + 1))` and is
//! written as soon as its right child exists. The store is derived data: it is not fsynced
//! per commit, and on open the ledger truncates or extends it to match the journal.
//!
//! Invariant: `len(level + 1) == len(level) / 2` for every level (each full pair has its
//! parent). `open` restores it by cutting excess records after a crash.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use quill_verify::{dot, Hash};

use crate::error::{LedgerError, Result};

/// Levels a tree over at most 2^64 leaves can have.
const LEVELS_MAX: usize = 65;
const NODE_BYTES: u64 = 32;

struct Level {
    file: File,
    /// Nodes stored.
    len: u64,
}

/// The digest tree's full nodes on disk.
pub struct TreeStore {
    dir: PathBuf,
    /// Levels from 0 up; appended under the lock, read with positioned reads.
    levels: Mutex<Vec<Level>>,
}

fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join(format!("level-{level:02}.bin"))
}

impl TreeStore {
    /// Opens (or creates) the store in `dir`, repairing a partially written tail.
    pub fn open(dir: &Path) -> Result<TreeStore> {
        fs::create_dir_all(dir)?;
        let mut levels: Vec<Level> = Vec::new();
        for level in 0..LEVELS_MAX {
            let path = level_path(dir, level);
            if level > 0 && !path.exists() {
                break;
            }
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
            let bytes = file.metadata()?.len();
            let mut len = bytes / NODE_BYTES;
            if let Some(below) = levels.last() {
                len = len.min(below.len / 2);
            }
            if len * NODE_BYTES != bytes {
                file.set_len(len * NODE_BYTES)?;
            }
            levels.push(Level { file, len });
        }
        let store = TreeStore { dir: dir.to_owned(), levels: Mutex::new(levels) };
        // Parents whose children exist but which were not written before a crash.
        let leaves = store.leaves();
        store.truncate(leaves)?;
        store.rebuild_parents()?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Level>> {
        self.levels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves stored.
    pub fn leaves(&self) -> u64 {
        self.lock().first().map_or(0, |l| l.len)
    }

    fn read_node(level: &Level, index: u64) -> Result<Hash> {
        let mut buf = [0u8; 32];
        level.file.read_exact_at(&mut buf, index * NODE_BYTES)?;
        Ok(Hash(buf))
    }

    fn append(&self, levels: &mut Vec<Level>, level: usize, hash: &Hash) -> Result<()> {
        if level == levels.len() {
            let path = level_path(&self.dir, level);
            let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
            levels.push(Level { file, len: 0 });
        }
        let l = &mut levels[level];
        l.file.write_all_at(hash.as_bytes(), l.len * NODE_BYTES)?;
        l.len += 1;
        Ok(())
    }

    /// Adds parents for every complete pair that lacks one.
    fn rebuild_parents(&self) -> Result<()> {
        let mut levels = self.lock();
        let mut level = 0;
        while level < levels.len() {
            loop {
                let have = levels.get(level + 1).map_or(0, |l| l.len);
                if have >= levels[level].len / 2 {
                    break;
                }
                let left = Self::read_node(&levels[level], 2 * have)?;
                let right = Self::read_node(&levels[level], 2 * have + 1)?;
                self.append(&mut levels, level + 1, &dot(&left, &right))?;
            }
            level += 1;
        }
        Ok(())
    }

    /// Appends leaves and every parent they complete.
    pub fn push_leaves(&self, leaves: &[Hash]) -> Result<()> {
        let mut levels = self.lock();
        for leaf in leaves {
            self.append(&mut levels, 0, leaf)?;
            let mut level = 0;
            let mut node = *leaf;
            while levels[level].len % 2 == 0 {
                let index = levels[level].len - 1;
                let left = Self::read_node(&levels[level], index - 1)?;
                node = dot(&left, &node);
                level += 1;
                self.append(&mut levels, level, &node)?;
            }
        }
        Ok(())
    }

    /// Drops leaves `>= leaves` and every node that depended on them.
    pub fn truncate(&self, leaves: u64) -> Result<()> {
        let mut levels = self.lock();
        let mut keep = leaves;
        for level in levels.iter_mut() {
            if level.len > keep {
                level.len = keep;
                level.file.set_len(keep * NODE_BYTES)?;
            }
            keep /= 2;
        }
        Ok(())
    }

    /// The full node `(level, index)`.
    pub fn full_node(&self, level: u32, index: u64) -> Result<Hash> {
        let levels = self.lock();
        match levels.get(level as usize) {
            Some(l) if index < l.len => Self::read_node(l, index),
            _ => Err(LedgerError::Storage(format!("digest tree node ({level}, {index}) is not stored"))),
        }
    }

    /// Makes the store durable (not required for correctness: it is rebuilt from the journal).
    pub fn flush(&self) -> Result<()> {
        for level in self.lock().iter() {
            level.file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        Hash::sha256(&i.to_le_bytes())
    }

    #[test]
    fn nodes_match_recomputation_and_survive_truncate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(dir.path()).unwrap();
        let leaves: Vec<Hash> = (0..37).map(leaf).collect();
        store.push_leaves(&leaves).unwrap();
        let root = quill_verify::merkle_root(&leaves[..32]).unwrap();
        assert_eq!(store.full_node(5, 0).unwrap(), root);
        assert!(store.full_node(1, 18).is_err(), "leaf 36 has no right sibling yet");
        store.truncate(20).unwrap();
        assert_eq!(store.leaves(), 20);
        assert!(store.full_node(2, 5).is_err());
        store.push_leaves(&leaves[20..]).unwrap();
        drop(store);
        let store = TreeStore::open(dir.path()).unwrap();
        assert_eq!(store.leaves(), 37);
        assert_eq!(store.full_node(5, 0).unwrap(), root);
        assert_eq!(store.full_node(1, 17).unwrap(), dot(&leaves[34], &leaves[35]));
    }
}
