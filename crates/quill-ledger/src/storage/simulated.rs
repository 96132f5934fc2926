//! The simulated disk: durable state kept apart from unsynced changes, and a power cut that
//! keeps the durable state plus a random part of the rest.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::OpenMode;

/// Unit in which an unsynced write reaches the disk after a power cut: a write may land in
/// part, any subset of its sectors.
const SECTOR_BYTES: u64 = 512;

/// An in-memory disk for crash-consistency tests. Cheap to clone (shared handle).
///
/// Model:
/// - Each file has durable bytes and a list of pending changes (writes and length changes)
///   since its last `sync_data`; `sync_data` makes them durable.
/// - Directory changes (file or directory created, removed, renamed) are durable only once
///   the parent directory is synced. A directory sync also makes every earlier pending
///   directory change durable (file systems journal metadata in order).
/// - A power cut, scheduled after a number of mutating calls ([`SimulatedDisk::cut_power_after`])
///   or immediate ([`SimulatedDisk::cut_power`]), computes what the disk holds afterwards: the
///   durable bytes plus, per file, none, all, or a random subset of the pending changes (each
///   write torn to a random subset of its sectors, later writes landing without earlier
///   ones); the durable directory entries plus a random prefix of the pending directory
///   changes (an entry whose directory vanished vanishes too). From then on every call
///   fails, as if the machine were off; [`SimulatedDisk::after_power_cut`] boots a new disk
///   from what survived.
///
/// Every random choice comes from the seed given to [`SimulatedDisk::new`], so a
/// single-threaded sequence of calls replays exactly.
#[derive(Clone)]
pub struct SimulatedDisk {
    inner: Arc<Mutex<Disk>>,
}

impl fmt::Debug for SimulatedDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimulatedDisk")
    }
}

struct Disk {
    files: BTreeMap<u64, FileData>,
    next_file_id: u64,
    /// The namespace as running code sees it.
    entries: BTreeMap<PathBuf, Entry>,
    /// The namespace a power cut starts from.
    durable_entries: BTreeMap<PathBuf, Entry>,
    /// Changes of `entries` not yet in `durable_entries`, oldest first.
    pending_entry_ops: Vec<EntryOp>,
    locks: HashSet<PathBuf>,
    rng: StdRng,
    /// Mutating calls (or, with `cut_counts_syncs`, file syncs) allowed before the power cut.
    calls_until_cut: Option<u64>,
    cut_counts_syncs: bool,
    /// What survived, once power was cut.
    survivors: Option<Survivors>,
}

#[derive(Clone)]
struct Survivors {
    files: BTreeMap<u64, Vec<u8>>,
    entries: BTreeMap<PathBuf, Entry>,
}

#[derive(Default)]
struct FileData {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
}

enum EntryOp {
    Insert(PathBuf, Entry),
    Remove(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl SimulatedDisk {
    /// An empty disk whose power cuts draw their random choices from `seed`.
    pub fn new(seed: u64) -> SimulatedDisk {
        SimulatedDisk::with_content(seed, BTreeMap::new(), BTreeMap::new())
    }

    fn with_content(
        seed: u64,
        files: BTreeMap<u64, Vec<u8>>,
        entries: BTreeMap<PathBuf, Entry>,
    ) -> SimulatedDisk {
        let next_file_id = files.keys().next_back().map_or(0, |id| id + 1);
        let files = files
            .into_iter()
            .map(|(id, bytes)| {
                let data = FileData {
                    durable: bytes.clone(),
                    current: bytes,
                    pending: Vec::new(),
                };
                (id, data)
            })
            .collect();
        SimulatedDisk {
            inner: Arc::new(Mutex::new(Disk {
                files,
                next_file_id,
                durable_entries: entries.clone(),
                entries,
                pending_entry_ops: Vec::new(),
                locks: HashSet::new(),
                rng: StdRng::seed_from_u64(seed),
                calls_until_cut: None,
                cut_counts_syncs: false,
                survivors: None,
            })),
        }
    }

    /// Cuts the power when the `calls`-th mutating call from now (write, length change,
    /// sync, directory change) is made; that call and every later one fail.
    pub fn cut_power_after(&self, calls: u64) {
        let mut disk = self.lock();
        disk.calls_until_cut = Some(calls);
        disk.cut_counts_syncs = false;
    }

    /// Cuts the power when the `syncs`-th file sync from now is made, so it fails: the
    /// moment a file holds the most unsynced writes.
    pub fn cut_power_at_sync(&self, syncs: u64) {
        let mut disk = self.lock();
        disk.calls_until_cut = Some(syncs);
        disk.cut_counts_syncs = true;
    }

    /// Cuts the power now (no-op if it is already off).
    pub fn cut_power(&self) {
        let mut disk = self.lock();
        if disk.survivors.is_none() {
            disk.cut();
        }
    }

    /// Paths of the files (as running code sees the namespace and their bytes) that contain
    /// `needle`: for tests that check data was erased.
    pub fn files_containing(&self, needle: &[u8]) -> Vec<PathBuf> {
        let disk = self.lock();
        disk.entries
            .iter()
            .filter_map(|(path, entry)| match entry {
                Entry::File(id) => Some((path, *id)),
                Entry::Dir => None,
            })
            .filter(|(_, id)| {
                disk.files.get(id).is_some_and(|file| {
                    !needle.is_empty()
                        && file
                            .current
                            .windows(needle.len())
                            .any(|window| window == needle)
                })
            })
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Whether the power was cut.
    pub fn is_power_cut(&self) -> bool {
        self.lock().survivors.is_some()
    }

    /// A new disk holding what survived the power cut, all of it durable, with `seed` for its
    /// own power cuts; `None` if the power was not cut.
    pub fn after_power_cut(&self, seed: u64) -> Option<SimulatedDisk> {
        let survivors = self.lock().survivors.clone()?;
        Some(SimulatedDisk::with_content(
            seed,
            survivors.files,
            survivors.entries,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // Test infrastructure: a panic elsewhere must not hide the disk's content.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the disk for a call; fails once the power is off.
    fn powered(&self) -> io::Result<MutexGuard<'_, Disk>> {
        let disk = self.lock();
        if disk.survivors.is_some() {
            return Err(power_lost());
        }
        Ok(disk)
    }

    /// Locks the disk for a mutating call, cutting the power first if this is the call
    /// scheduled for it.
    fn mutating(&self) -> io::Result<MutexGuard<'_, Disk>> {
        self.counted(false)
    }

    fn counted(&self, file_sync: bool) -> io::Result<MutexGuard<'_, Disk>> {
        let mut disk = self.powered()?;
        let counts = file_sync || !disk.cut_counts_syncs;
        if let Some(remaining) = disk.calls_until_cut.as_mut().filter(|_| counts) {
            if *remaining == 0 {
                disk.cut();
                return Err(power_lost());
            }
            *remaining -= 1;
        }
        Ok(disk)
    }

    pub(super) fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<SimulatedFile> {
        let existing = self.powered()?.entries.get(path).copied();
        let id = match (existing, mode) {
            (Some(Entry::Dir), _) => return Err(io::Error::other("is a directory")),
            (Some(Entry::File(_)), OpenMode::CreateNew) => {
                return Err(io::ErrorKind::AlreadyExists.into())
            }
            (Some(Entry::File(id)), OpenMode::Truncate) => {
                let mut disk = self.mutating()?;
                disk.file(id).set_len(0);
                id
            }
            (Some(Entry::File(id)), _) => id,
            (None, OpenMode::Existing) => return Err(io::ErrorKind::NotFound.into()),
            (None, _) => {
                let mut disk = self.mutating()?;
                disk.check_parent(path)?;
                let id = disk.next_file_id;
                disk.next_file_id += 1;
                disk.files.insert(id, FileData::default());
                disk.change_entry(EntryOp::Insert(path.to_owned(), Entry::File(id)));
                id
            }
        };
        Ok(SimulatedFile {
            disk: self.clone(),
            id,
        })
    }

    pub(super) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let missing: Vec<PathBuf> = {
            let disk = self.powered()?;
            path.ancestors()
                .filter(|ancestor| !is_root(ancestor))
                .take_while(|ancestor| disk.entries.get(*ancestor) != Some(&Entry::Dir))
                .map(Path::to_owned)
                .collect()
        };
        for dir in missing.into_iter().rev() {
            let mut disk = self.mutating()?;
            if disk.entries.contains_key(&dir) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            disk.change_entry(EntryOp::Insert(dir, Entry::Dir));
        }
        Ok(())
    }

    pub(super) fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let disk = self.powered()?;
        disk.check_dir(path)?;
        Ok(disk
            .entries
            .keys()
            .filter(|entry| entry.parent() == Some(path))
            .filter_map(|entry| entry.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    pub(super) fn exists(&self, path: &Path) -> io::Result<bool> {
        let disk = self.powered()?;
        Ok(is_root(path) || disk.entries.contains_key(path))
    }

    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.mutating()?;
        match disk.entries.get(path) {
            Some(Entry::File(_)) => {
                disk.change_entry(EntryOp::Remove(path.to_owned()));
                Ok(())
            }
            Some(Entry::Dir) => Err(io::Error::other("is a directory")),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    pub(super) fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.mutating()?;
        match disk.entries.get(path) {
            Some(Entry::Dir) => {
                disk.change_entry(EntryOp::Remove(path.to_owned()));
                Ok(())
            }
            Some(Entry::File(_)) => Err(io::Error::other("not a directory")),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.mutating()?;
        if !disk.entries.contains_key(from) {
            return Err(io::ErrorKind::NotFound.into());
        }
        disk.check_parent(to)?;
        disk.change_entry(EntryOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    pub(super) fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.mutating()?;
        disk.check_dir(path)?;
        let touching = disk
            .pending_entry_ops
            .iter()
            .rposition(|op| op.touches_dir(path));
        if let Some(last) = touching {
            let made_durable: Vec<EntryOp> = disk.pending_entry_ops.drain(..=last).collect();
            for op in &made_durable {
                op.apply(&mut disk.durable_entries);
            }
        }
        Ok(())
    }

    pub(super) fn try_lock(&self, path: &Path) -> Option<SimulatedLock> {
        let mut disk = self.lock();
        disk.locks.insert(path.to_owned()).then(|| SimulatedLock {
            disk: self.clone(),
            path: path.to_owned(),
        })
    }
}

impl Disk {
    fn file(&mut self, id: u64) -> &mut FileData {
        self.files
            .get_mut(&id)
            .expect("file ids in entries and handles are never dropped")
    }

    fn change_entry(&mut self, op: EntryOp) {
        op.apply(&mut self.entries);
        self.pending_entry_ops.push(op);
    }

    fn check_dir(&self, path: &Path) -> io::Result<()> {
        if is_root(path) || self.entries.get(path) == Some(&Entry::Dir) {
            return Ok(());
        }
        Err(io::ErrorKind::NotFound.into())
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) => self.check_dir(parent),
            None => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    /// Computes what survives; every later call fails.
    fn cut(&mut self) {
        let rng = &mut self.rng;
        let files = self
            .files
            .iter()
            .map(|(id, data)| (*id, data.after_power_cut(rng)))
            .collect();
        let mut entries = self.durable_entries.clone();
        let landed = rng.gen_range(0..=self.pending_entry_ops.len());
        for op in &self.pending_entry_ops[..landed] {
            op.apply(&mut entries);
        }
        drop_orphans(&mut entries);
        self.survivors = Some(Survivors { files, entries });
    }
}

impl FileData {
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        write_into(&mut self.current, offset, bytes);
        self.pending.push(FileOp::Write {
            offset,
            bytes: bytes.to_vec(),
        });
    }

    fn set_len(&mut self, len: u64) {
        self.current.resize(len as usize, 0);
        self.pending.push(FileOp::SetLen(len));
    }

    fn sync(&mut self) {
        for op in self.pending.drain(..) {
            match op {
                FileOp::Write { offset, bytes } => write_into(&mut self.durable, offset, &bytes),
                FileOp::SetLen(len) => self.durable.resize(len as usize, 0),
            }
        }
    }

    /// The durable bytes plus none, all, or a random part of the pending changes (applied
    /// in order, so a newer write of the same bytes wins over an older one when both land).
    fn after_power_cut(&self, rng: &mut StdRng) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        let landing = match rng.gen_range(0..4) {
            0 => 0.0,
            1 => 1.0,
            _ => 0.5,
        };
        for op in &self.pending {
            match op {
                FileOp::SetLen(len) => {
                    if rng.gen_bool(landing) {
                        bytes.resize(*len as usize, 0);
                    }
                }
                FileOp::Write {
                    offset,
                    bytes: written,
                } => {
                    let mut at = *offset;
                    let end = offset + written.len() as u64;
                    while at < end {
                        let sector_end = ((at / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
                        if rng.gen_bool(landing) {
                            let piece =
                                &written[(at - offset) as usize..(sector_end - offset) as usize];
                            write_into(&mut bytes, at, piece);
                        }
                        at = sector_end;
                    }
                }
            }
        }
        bytes
    }
}

impl EntryOp {
    fn apply(&self, entries: &mut BTreeMap<PathBuf, Entry>) {
        match self {
            EntryOp::Insert(path, entry) => {
                entries.insert(path.clone(), *entry);
            }
            EntryOp::Remove(path) => remove_tree(entries, path),
            EntryOp::Rename(from, to) => {
                remove_tree(entries, to);
                let moved: Vec<(PathBuf, Entry)> = entries
                    .iter()
                    .filter(|(path, _)| path.starts_with(from))
                    .map(|(path, entry)| (path.clone(), *entry))
                    .collect();
                for (path, entry) in moved {
                    entries.remove(&path);
                    let suffix = path.strip_prefix(from).expect("filtered on the prefix");
                    entries.insert(to.join(suffix), entry);
                }
            }
        }
    }

    fn touches_dir(&self, dir: &Path) -> bool {
        match self {
            EntryOp::Insert(path, _) | EntryOp::Remove(path) => path.parent() == Some(dir),
            EntryOp::Rename(from, to) => from.parent() == Some(dir) || to.parent() == Some(dir),
        }
    }
}

/// An open simulated file.
pub(crate) struct SimulatedFile {
    disk: SimulatedDisk,
    id: u64,
}

impl fmt::Debug for SimulatedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimulatedFile({})", self.id)
    }
}

impl SimulatedFile {
    pub(super) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut disk = self.disk.powered()?;
        let current = &disk.file(self.id).current;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let bytes = current
            .get(start..start.saturating_add(buf.len()))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    pub(super) fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.disk.mutating()?.file(self.id).write(offset, buf);
        Ok(())
    }

    pub(super) fn len(&self) -> io::Result<u64> {
        Ok(self.disk.powered()?.file(self.id).current.len() as u64)
    }

    pub(super) fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk.mutating()?.file(self.id).set_len(len);
        Ok(())
    }

    pub(super) fn sync_data(&self) -> io::Result<()> {
        self.disk.counted(true)?.file(self.id).sync();
        Ok(())
    }
}

/// A held simulated lock; released on drop.
#[derive(Debug)]
pub(crate) struct SimulatedLock {
    disk: SimulatedDisk,
    path: PathBuf,
}

impl Drop for SimulatedLock {
    fn drop(&mut self) {
        self.disk.lock().locks.remove(&self.path);
    }
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss: the disk is off")
}

fn is_root(path: &Path) -> bool {
    path.parent().is_none() || path.as_os_str().is_empty()
}

fn write_into(target: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    if target.len() < start + bytes.len() {
        target.resize(start + bytes.len(), 0);
    }
    target[start..start + bytes.len()].copy_from_slice(bytes);
}

fn remove_tree(entries: &mut BTreeMap<PathBuf, Entry>, root: &Path) {
    entries.retain(|path, _| !path.starts_with(root));
}

/// Drops entries whose directory is missing (parents sort before their children).
fn drop_orphans(entries: &mut BTreeMap<PathBuf, Entry>) {
    let paths: Vec<PathBuf> = entries.keys().cloned().collect();
    for path in paths {
        let parent = path.parent().expect("entries are never the root");
        if !is_root(parent) && entries.get(parent) != Some(&Entry::Dir) {
            entries.remove(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_with_file(seed: u64) -> (SimulatedDisk, SimulatedFile) {
        let disk = SimulatedDisk::new(seed);
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        let file = disk
            .open_file(Path::new("/d/f"), OpenMode::CreateNew)
            .unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        (disk, file)
    }

    fn content(disk: &SimulatedDisk, path: &str) -> Option<Vec<u8>> {
        let file = disk.open_file(Path::new(path), OpenMode::Existing).ok()?;
        let mut bytes = vec![0u8; file.len().unwrap() as usize];
        file.read_exact_at(&mut bytes, 0).unwrap();
        Some(bytes)
    }

    #[test]
    fn synced_bytes_survive_and_unsynced_bytes_may_not() {
        let mut outcomes = HashSet::new();
        for seed in 0..64 {
            let (disk, file) = disk_with_file(seed);
            file.write_all_at(&[1u8; 1024], 0).unwrap();
            file.sync_data().unwrap();
            file.write_all_at(&[2u8; 1024], 512).unwrap();
            disk.cut_power();
            assert!(file.write_all_at(b"x", 0).is_err(), "the disk is off");
            let after = disk.after_power_cut(seed).unwrap();
            let bytes = content(&after, "/d/f").unwrap();
            assert!(bytes[..512].iter().all(|byte| *byte == 1));
            outcomes.insert(bytes);
        }
        // None, all, and each sector alone of the unsynced write landing were all seen.
        assert!(outcomes.contains([1u8; 1024].as_slice()));
        assert!(outcomes.contains(&[[1u8; 512].as_slice(), &[2u8; 1024]].concat()));
        assert!(outcomes.contains(&[[1u8; 512].as_slice(), &[2u8; 512]].concat()));
        assert!(outcomes.contains(&[[1u8; 1024].as_slice(), &[2u8; 512]].concat()));
    }

    #[test]
    fn unsynced_directory_entries_may_vanish_and_synced_ones_stay() {
        let mut vanished = false;
        for seed in 0..32 {
            let (disk, file) = disk_with_file(seed);
            file.sync_data().unwrap();
            disk.open_file(Path::new("/d/new"), OpenMode::CreateNew)
                .unwrap();
            disk.cut_power_after(0);
            assert!(disk.sync_dir(Path::new("/d")).is_err());
            let after = disk.after_power_cut(seed).unwrap();
            assert!(after.exists(Path::new("/d/f")).unwrap());
            vanished |= !after.exists(Path::new("/d/new")).unwrap();
        }
        assert!(vanished);
    }

    #[test]
    fn a_rename_lands_whole_or_not_at_all() {
        for seed in 0..32 {
            let (disk, file) = disk_with_file(seed);
            file.write_all_at(b"new", 0).unwrap();
            file.sync_data().unwrap();
            disk.rename(Path::new("/d/f"), Path::new("/d/g")).unwrap();
            disk.cut_power();
            let after = disk.after_power_cut(seed).unwrap();
            let old = content(&after, "/d/f");
            let new = content(&after, "/d/g");
            assert!(old.is_some() != new.is_some(), "seed {seed}");
        }
    }

    #[test]
    fn a_directory_removal_is_durable_once_its_parent_is_synced() {
        let mut kept = false;
        for seed in 0..32 {
            let (disk, file) = disk_with_file(seed);
            file.sync_data().unwrap();
            disk.remove_dir_all(Path::new("/d")).unwrap();
            assert!(!disk.exists(Path::new("/d/f")).unwrap());
            assert!(disk.remove_dir_all(Path::new("/d")).is_err());
            disk.cut_power();
            let after = disk.after_power_cut(seed).unwrap();
            // Unsynced, the removal may or may not have landed, but never in part.
            let dir = after.exists(Path::new("/d")).unwrap();
            assert_eq!(dir, after.exists(Path::new("/d/f")).unwrap(), "seed {seed}");
            kept |= dir;
        }
        assert!(kept);
        for seed in 0..8 {
            let (disk, _) = disk_with_file(seed);
            disk.remove_dir_all(Path::new("/d")).unwrap();
            disk.sync_dir(Path::new("/")).unwrap();
            disk.cut_power();
            let after = disk.after_power_cut(seed).unwrap();
            assert!(!after.exists(Path::new("/d")).unwrap());
        }
    }

    #[test]
    fn a_directory_sync_makes_the_entry_durable() {
        for seed in 0..16 {
            let (disk, _) = disk_with_file(seed);
            disk.create_dir_all(Path::new("/d/e/f")).unwrap();
            disk.sync_dir(Path::new("/d/e")).unwrap();
            disk.cut_power();
            let after = disk.after_power_cut(seed).unwrap();
            assert!(after.exists(Path::new("/d/e/f")).unwrap());
        }
    }
}
