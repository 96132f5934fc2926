//! A stream's durable cursor: how far delivery got, stored in one small JSON file replaced
//! atomically (write a temporary file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old cursor or the new one, never a torn file.
//! The cursor is written after the target acknowledged, so a crash can only make the worker
//! send again what was already delivered (at least once), never skip a block.

use std::fs;
use std::path::{Path, PathBuf};

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

/// The cursor file of one stream.
#[derive(Debug, Clone)]
pub struct Cursor {
    path: PathBuf,
}

impl Cursor {
    pub fn new(path: impl Into<PathBuf>) -> Cursor {
        Cursor { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored position; the start position if the stream never delivered anything.
    pub fn load(&self) -> Result<Position> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StreamError::Cursor(format!("{} is not a cursor: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Position::default()),
            Err(e) => Err(StreamError::Io(e)),
        }
    }

    /// Replaces the stored position atomically and durably.
    pub fn store(&self, position: &Position) -> Result<()> {
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
        assert_eq!(Cursor::new(cursor.path()).load().unwrap(), position);
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
