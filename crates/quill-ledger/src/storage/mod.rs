//! Where a ledger's files live: the operating system's file system, or a simulated disk that
//! loses unsynced writes on a simulated power cut (for crash-consistency tests).
//!
//! The journal, the digest tree, the derived-state database (redb, through a
//! `redb::StorageBackend`), `ledger.ion` and the server's ledger registry (`control.json`,
//! the ledger directories) all do their file I/O through [`Storage`] and
//! the crate-private `StorageFile`. Both are enums chosen once per ledger, so the real file
//! system costs one predictable branch per call and no allocation.
//!
//! Why a simulated disk: killing a process keeps the page cache, so a missing fsync or
//! writes reaching the disk out of order go unnoticed. [`SimulatedDisk`] keeps the durable
//! bytes of each file apart from its pending (unsynced) writes, and directory entries apart
//! from pending directory changes; a power cut keeps what was synced plus a random part of
//! the rest (see [`SimulatedDisk`]).

mod simulated;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub use simulated::SimulatedDisk;
use simulated::SimulatedFile;

/// The file system a ledger uses.
#[derive(Debug, Clone, Default)]
pub enum Storage {
    /// The operating system's file system.
    #[default]
    Os,
    /// A simulated disk (tests).
    Simulated(SimulatedDisk),
}

/// How [`Storage::open_file`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// The file must exist.
    Existing,
    /// Created if missing, kept if present.
    Create,
    /// Created; fails with `AlreadyExists` if present.
    CreateNew,
    /// Created if missing, emptied if present.
    Truncate,
}

impl Storage {
    /// Opens a file for reading and writing.
    pub(crate) fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<StorageFile> {
        match self {
            Storage::Os => {
                let mut options = OpenOptions::new();
                options.read(true).write(true);
                match mode {
                    OpenMode::Existing => &mut options,
                    OpenMode::Create => options.create(true).truncate(false),
                    OpenMode::CreateNew => options.create_new(true),
                    OpenMode::Truncate => options.create(true).truncate(true),
                };
                options.open(path).map(StorageFile::Os)
            }
            Storage::Simulated(disk) => disk.open_file(path, mode).map(StorageFile::Simulated),
        }
    }

    /// Creates a directory and its missing parents (entries not durable until
    /// [`Storage::sync_dir`] of each parent).
    pub fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Os => std::fs::create_dir_all(path),
            Storage::Simulated(disk) => disk.create_dir_all(path),
        }
    }

    /// Names of the entries of a directory, in no particular order.
    pub fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        match self {
            Storage::Os => std::fs::read_dir(path)?
                .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
                .collect(),
            Storage::Simulated(disk) => disk.list_dir(path),
        }
    }

    /// Whether a file or directory exists.
    pub fn exists(&self, path: &Path) -> io::Result<bool> {
        match self {
            Storage::Os => path.try_exists(),
            Storage::Simulated(disk) => disk.exists(path),
        }
    }

    /// Removes a file.
    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Os => std::fs::remove_file(path),
            Storage::Simulated(disk) => disk.remove_file(path),
        }
    }

    /// Removes a directory and everything in it (entries not durable until
    /// [`Storage::sync_dir`] of its parent).
    pub fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Os => std::fs::remove_dir_all(path),
            Storage::Simulated(disk) => disk.remove_dir_all(path),
        }
    }

    /// Renames a file or directory, replacing `to` if it is a file.
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Storage::Os => std::fs::rename(from, to),
            Storage::Simulated(disk) => disk.rename(from, to),
        }
    }

    /// Makes the directory's entry changes (files created, removed, renamed) durable.
    pub fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self {
            Storage::Os => File::open(path)?.sync_all(),
            Storage::Simulated(disk) => disk.sync_dir(path),
        }
    }

    /// Makes the entry of `path` in its parent directory durable (after `path` was created);
    /// a relative path without a parent needs nothing.
    pub fn sync_parent_dir(&self, path: &Path) -> io::Result<()> {
        match path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            Some(parent) => self.sync_dir(parent),
            None => Ok(()),
        }
    }

    /// Replaces `path` with `bytes` atomically and durably: a crash leaves either the old file
    /// or the new one, never a mix. Writes `path` + `.tmp`, fsyncs it, renames it over `path`
    /// and fsyncs the directory.
    pub fn write_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = Path::new(&tmp);
        let file = self.open_file(tmp, OpenMode::Truncate)?;
        file.write_all_at(bytes, 0)?;
        file.sync_all()?;
        self.rename(tmp, path)?;
        self.sync_parent_dir(path)
    }

    /// The whole content of a file.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self {
            Storage::Os => std::fs::read(path),
            Storage::Simulated(_) => {
                let file = self.open_file(path, OpenMode::Existing)?;
                let mut bytes = vec![0u8; file.len()? as usize];
                file.read_exact_at(&mut bytes, 0)?;
                Ok(bytes)
            }
        }
    }

    /// Takes the exclusive lock of `path` (created if missing) for as long as the returned
    /// guard lives; `Ok(None)` if someone else holds it.
    pub(crate) fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        match self {
            Storage::Os => {
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(path)?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(LockGuard::Os { _file: file })),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(error)) => Err(error),
                }
            }
            Storage::Simulated(disk) => Ok(disk
                .try_lock(path)
                .map(|lock| LockGuard::Simulated { _lock: lock })),
        }
    }

    /// Opens or creates the redb database at `path`.
    pub(crate) fn create_redb(
        &self,
        builder: &redb::Builder,
        path: &Path,
    ) -> Result<redb::Database, redb::DatabaseError> {
        match self {
            Storage::Os => builder.create(path),
            Storage::Simulated(disk) => {
                let file = disk
                    .open_file(path, OpenMode::Create)
                    .map_err(|error| redb::DatabaseError::Storage(error.into()))?;
                builder.create_with_backend(RedbBackend(StorageFile::Simulated(file)))
            }
        }
    }
}

/// An open file. Positioned reads and writes only, so threads share it without a cursor.
#[derive(Debug)]
pub(crate) enum StorageFile {
    Os(File),
    Simulated(SimulatedFile),
}

impl StorageFile {
    /// Fills `buf` from `offset`; `UnexpectedEof` past the end.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            StorageFile::Os(file) => file.read_exact_at(buf, offset),
            StorageFile::Simulated(file) => file.read_exact_at(buf, offset),
        }
    }

    /// Writes all of `buf` at `offset`, growing the file if needed.
    pub(crate) fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self {
            StorageFile::Os(file) => file.write_all_at(buf, offset),
            StorageFile::Simulated(file) => file.write_all_at(buf, offset),
        }
    }

    /// Current length in bytes.
    pub(crate) fn len(&self) -> io::Result<u64> {
        match self {
            StorageFile::Os(file) => Ok(file.metadata()?.len()),
            StorageFile::Simulated(file) => file.len(),
        }
    }

    /// Truncates or extends (with zeros) the file.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            StorageFile::Os(file) => file.set_len(len),
            StorageFile::Simulated(file) => file.set_len(len),
        }
    }

    /// Makes the file's content and length durable (fdatasync).
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        match self {
            StorageFile::Os(file) => file.sync_data(),
            StorageFile::Simulated(file) => file.sync_data(),
        }
    }

    /// Makes the file's content and all its metadata durable (fsync).
    pub(crate) fn sync_all(&self) -> io::Result<()> {
        match self {
            StorageFile::Os(file) => file.sync_all(),
            StorageFile::Simulated(file) => file.sync_data(),
        }
    }
}

/// Holds a ledger's `LOCK` for as long as it lives.
#[derive(Debug)]
pub(crate) enum LockGuard {
    /// The flock'ed file (released when closed).
    Os {
        _file: File,
    },
    Simulated {
        _lock: simulated::SimulatedLock,
    },
}

/// redb's storage over a simulated file.
#[derive(Debug)]
struct RedbBackend(StorageFile);

impl redb::StorageBackend for RedbBackend {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }
}
