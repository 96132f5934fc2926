//! A stream's durable cursor: how far delivery got. By default one small JSON file replaced
//! atomically (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old cursor or the new one, never a torn file; a
//! server keeping its streams elsewhere (PostgreSQL) supplies its own [`PositionStore`].
//! The cursor is written after the target acknowledged, so a crash can only make the worker
//! send again what was already delivered (at least once), never skip a block.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use quill_ledger::storage::Storage;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StreamError};

/// What has been delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// The `CREATED` control record was acknowledged.
    pub created_delivered: bool,
    /// The last block whose records were all acknowledged (or skipped as before the start
    /// time).
    pub last_block: Option<u64>,
}

/// Where a cursor's position is kept. `store` must be durable and atomic when it returns, and
/// fail (rather than store) when this worker may no longer deliver the stream.
pub trait PositionStore: Send + Sync {
    /// The stored position; the start position if the stream never delivered anything.
    fn load(&self) -> Result<Position>;
    fn store(&self, position: &Position) -> Result<()>;
}

/// The cursor of one stream.
#[derive(Clone)]
pub struct Cursor {
    store: Arc<dyn PositionStore>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").finish_non_exhaustive()
    }
}

impl Cursor {
    /// A cursor in the JSON file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Cursor {
        Cursor::with_store(Arc::new(CursorFile { path: path.into() }))
    }

    pub fn with_store(store: Arc<dyn PositionStore>) -> Cursor {
        Cursor { store }
    }

    pub fn load(&self) -> Result<Position> {
        self.store.load()
    }

    /// Replaces the stored position atomically and durably.
    pub fn store(&self, position: &Position) -> Result<()> {
        self.store.store(position)
    }
}

/// A cursor file.
struct CursorFile {
    path: PathBuf,
}

impl PositionStore for CursorFile {
    fn load(&self) -> Result<Position> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StreamError::Cursor(format!("{} is not a cursor: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Position::default()),
            Err(e) => Err(StreamError::Io(e)),
        }
    }

    fn store(&self, position: &Position) -> Result<()> {
        let bytes = serde_json::to_vec(position).expect("a position serializes");
        Ok(Storage::Os.write_atomically(&self.path, &bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cursor_is_the_start_and_stores_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cursor = Cursor::new(dir.path().join("cursor.json"));
        assert_eq!(cursor.load().unwrap(), Position::default());
        let position = Position {
            created_delivered: true,
            last_block: Some(41),
        };
        cursor.store(&position).unwrap();
        assert_eq!(
            Cursor::new(dir.path().join("cursor.json")).load().unwrap(),
            position
        );
        assert!(!dir.path().join("cursor.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_cursor_is_an_error_not_a_restart_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        fs::write(&path, b"{\"createdDeliv").unwrap();
        assert!(matches!(
            Cursor::new(path).load(),
            Err(StreamError::Cursor(_))
        ));
    }
}
