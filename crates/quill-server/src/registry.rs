//! The ledgers this server holds: one directory per ledger under `<data_dir>/ledgers/<name>/`,
//! holding the engine's files and our `control.json` sidecar with the control-plane attributes
//! QLDB keeps outside the journal (deletion protection, permissions mode, tags, KMS key,
//! creation time).
//!
//! Crash safety: `control.json` is written last when a ledger is created (temp file, fsync,
//! rename, fsync of the directory), so a directory without it is an unfinished creation and is
//! skipped at startup. The ledger directory's entry in `ledgers/` is fsynced by
//! `Ledger::create`, and `ledgers/`'s own entry on open. Deleting renames the directory to a hidden name first (atomic), then
//! removes it, so a crash never leaves a half-deleted ledger visible.
//!
//! Every method here blocks (fsync): call them from `spawn_blocking`. The map's lock is held only
//! for lookups and control-file updates, never across a ledger transaction.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use quill_ledger::{Ledger, LedgerOptions};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorKind, Plane, ServerError};
use crate::limits::LEDGERS_MAX;

/// The sidecar file's name inside a ledger directory.
pub const CONTROL_FILE: &str = "control.json";
/// QLDB's default (and "no key given") encryption key.
pub const AWS_OWNED_KMS_KEY: &str = "AWS_OWNED_KMS_KEY";

/// Control-plane attributes of one ledger, as stored in `control.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// Ledger name.
    pub name: String,
    /// `ACTIVE` once created (QLDB's other states are transient here).
    pub state: String,
    /// Creation time, seconds since the epoch (fractional milliseconds).
    pub creation_date_time: f64,
    /// `ALLOW_ALL` or `STANDARD`.
    pub permissions_mode: String,
    /// While true, DeleteLedger is refused.
    pub deletion_protection: bool,
    /// `AWS_OWNED_KMS_KEY` or the key the user named (recorded, not used: data is not encrypted).
    pub kms_key: String,
    /// Resource tags.
    pub tags: BTreeMap<String, String>,
}

/// What CreateLedger asks for (already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewLedger {
    /// Name (checked with [`validate_ledger_name`]).
    pub name: String,
    /// `ALLOW_ALL` or `STANDARD`.
    pub permissions_mode: String,
    /// Defaults to true in QLDB.
    pub deletion_protection: bool,
    /// Key name, or [`AWS_OWNED_KMS_KEY`].
    pub kms_key: String,
    /// Initial tags.
    pub tags: BTreeMap<String, String>,
}

enum Entry {
    /// The name is reserved while the ledger's files are being written.
    Creating,
    Ready {
        control: ControlRecord,
        ledger: Ledger,
    },
}

/// The ledgers on disk and their open engine handles.
pub struct Registry {
    root: PathBuf,
    options: LedgerOptions,
    entries: Mutex<BTreeMap<String, Entry>>,
}

/// QLDB's ledger name rules: 1–32 characters of `[A-Za-z0-9-]`, no leading or trailing `-`,
/// no `--`, not all digits.
pub fn validate_ledger_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && !name.bytes().all(|b| b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "Invalid ledger name {name:?}: use 1-32 characters of [A-Za-z0-9-], no leading or \
             trailing '-', no '--', not all digits"
        )))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceNotFound,
        format!("Ledger {name} does not exist"),
    )
}

fn io_failure(what: &str, error: std::io::Error) -> ApiError {
    tracing::error!(%error, "{what}");
    ApiError::internal(format!("{what}: {error}"))
}

impl Registry {
    /// Opens every ledger under `<data_dir>/ledgers/`, creating that directory if needed.
    pub fn open(data_dir: &Path, options: LedgerOptions) -> Result<Registry, ServerError> {
        let root = data_dir.join("ledgers");
        let dir_error = |source| ServerError::DataDir {
            path: root.clone(),
            source,
        };
        fs::create_dir_all(&root).map_err(dir_error)?;
        // `ledgers/` may have just been created: make its entry durable before any ledger
        // creation in it is acknowledged (`Ledger::create` syncs `ledgers/` itself).
        sync_dir(data_dir).map_err(dir_error)?;
        let mut entries = BTreeMap::new();
        for item in fs::read_dir(&root).map_err(dir_error)? {
            let path = item.map_err(dir_error)?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if name.starts_with('.') {
                // A deletion interrupted by a crash: finish it.
                if let Err(error) = fs::remove_dir_all(&path) {
                    tracing::warn!(?path, %error, "cannot remove a deleted ledger's files");
                }
                continue;
            }
            let control_path = path.join(CONTROL_FILE);
            if !control_path.exists() {
                tracing::warn!(?path, "skipping a ledger directory without control.json");
                continue;
            }
            let control = read_control(&control_path)?;
            let ledger =
                Ledger::open(&path, options.clone()).map_err(|source| ServerError::OpenLedger {
                    name: name.clone(),
                    source,
                })?;
            tracing::info!(ledger = %name, "opened ledger");
            entries.insert(name, Entry::Ready { control, ledger });
        }
        Ok(Registry {
            root,
            options,
            entries: Mutex::new(entries),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding this lock can only come from a bug in this module; the map
        // itself stays consistent (every update is a single insert or remove).
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of ledgers (ready or being created).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there is no ledger.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The engine handle and attributes of a ledger.
    pub fn get(&self, name: &str) -> Result<(Ledger, ControlRecord), ApiError> {
        match self.lock().get(name) {
            Some(Entry::Ready { control, ledger }) => Ok((ledger.clone(), control.clone())),
            _ => Err(not_found(name)),
        }
    }

    /// Attributes of every ready ledger, ordered by name.
    pub fn list(&self) -> Vec<ControlRecord> {
        self.lock()
            .values()
            .filter_map(|entry| match entry {
                Entry::Ready { control, .. } => Some(control.clone()),
                Entry::Creating => None,
            })
            .collect()
    }

    /// Creates a ledger: reserves the name, writes the genesis block, then `control.json`.
    pub fn create(&self, new: NewLedger) -> Result<ControlRecord, ApiError> {
        validate_ledger_name(&new.name)?;
        {
            let mut entries = self.lock();
            if entries.contains_key(&new.name) {
                return Err(ApiError::new(
                    ErrorKind::ResourceAlreadyExists,
                    format!("Ledger {} already exists", new.name),
                ));
            }
            if entries.len() >= LEDGERS_MAX {
                return Err(ApiError::new(
                    ErrorKind::LimitExceeded,
                    format!("This server holds at most {LEDGERS_MAX} ledgers"),
                ));
            }
            entries.insert(new.name.clone(), Entry::Creating);
        }
        let result = self.create_files(&new);
        let mut entries = self.lock();
        match result {
            Ok((control, ledger)) => {
                entries.insert(
                    new.name.clone(),
                    Entry::Ready {
                        control: control.clone(),
                        ledger,
                    },
                );
                Ok(control)
            }
            Err(error) => {
                entries.remove(&new.name);
                Err(error)
            }
        }
    }

    fn create_files(&self, new: &NewLedger) -> Result<(ControlRecord, Ledger), ApiError> {
        let dir = self.root.join(&new.name);
        if dir.exists() {
            // Leftovers of a creation that crashed before control.json was written.
            fs::remove_dir_all(&dir).map_err(|e| io_failure("cannot clear ledger directory", e))?;
        }
        let ledger = Ledger::create(&dir, &new.name, self.options.clone()).map_err(|error| {
            let _ = fs::remove_dir_all(&dir);
            ApiError::from_ledger(&error, Plane::Control)
        })?;
        let creation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let control = ControlRecord {
            name: new.name.clone(),
            state: "ACTIVE".into(),
            creation_date_time: (creation.as_millis() as f64) / 1000.0,
            permissions_mode: new.permissions_mode.clone(),
            deletion_protection: new.deletion_protection,
            kms_key: new.kms_key.clone(),
            tags: new.tags.clone(),
        };
        if let Err(error) = write_control(&dir, &control) {
            let _ = fs::remove_dir_all(&dir);
            return Err(io_failure("cannot write control.json", error));
        }
        Ok((control, ledger))
    }

    /// Changes a ledger's attributes and persists them before answering.
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut ControlRecord) -> Result<(), ApiError>,
    ) -> Result<ControlRecord, ApiError> {
        let mut entries = self.lock();
        let Some(Entry::Ready { control, .. }) = entries.get_mut(name) else {
            return Err(not_found(name));
        };
        let mut updated = control.clone();
        change(&mut updated)?;
        write_control(&self.root.join(name), &updated)
            .map_err(|e| io_failure("cannot write control.json", e))?;
        *control = updated.clone();
        Ok(updated)
    }

    /// Deletes a ledger unless deletion protection is on. The caller ends its sessions.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        {
            let mut entries = self.lock();
            match entries.get(name) {
                Some(Entry::Ready { control, .. }) if control.deletion_protection => {
                    return Err(ApiError::new(
                        ErrorKind::ResourcePreconditionNotMet,
                        format!(
                            "Ledger {name} has deletion protection enabled: disable it with \
                             UpdateLedger first"
                        ),
                    ));
                }
                Some(Entry::Ready { .. }) => {}
                _ => return Err(not_found(name)),
            }
            entries.remove(name);
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let doomed = self.root.join(format!(".deleted-{name}-{nanos}"));
        fs::rename(self.root.join(name), &doomed)
            .map_err(|e| io_failure("cannot move the deleted ledger aside", e))?;
        sync_dir(&self.root).map_err(|e| io_failure("cannot sync the ledgers directory", e))?;
        if let Err(error) = fs::remove_dir_all(&doomed) {
            // Harmless: the next start finishes the removal.
            tracing::warn!(?doomed, %error, "cannot remove a deleted ledger's files yet");
        }
        Ok(())
    }
}

fn read_control(path: &Path) -> Result<ControlRecord, ServerError> {
    let error = |detail: String| ServerError::ControlFile {
        path: path.to_path_buf(),
        detail,
    };
    let text = fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| error(e.to_string()))
}

/// Writes `control.json` atomically: temp file, fsync, rename over the old one, fsync the dir.
fn write_control(dir: &Path, control: &ControlRecord) -> std::io::Result<()> {
    let temp = dir.join(format!("{CONTROL_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(control).map_err(std::io::Error::other)?;
    let mut file = fs::File::create(&temp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(CONTROL_FILE))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_names_follow_qldb_rules() {
        for good in ["a", "vehicle-registration", "L1", &"x".repeat(32)] {
            assert!(validate_ledger_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "123",
            "a_b",
            "a.b",
            "ä",
            &"x".repeat(33),
        ] {
            assert!(validate_ledger_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_file_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let control = ControlRecord {
            name: "books".into(),
            state: "ACTIVE".into(),
            creation_date_time: 1_700_000_000.123,
            permissions_mode: "STANDARD".into(),
            deletion_protection: true,
            kms_key: AWS_OWNED_KMS_KEY.into(),
            tags: BTreeMap::from([("team".to_string(), "ledger".to_string())]),
        };
        write_control(dir.path(), &control).unwrap();
        assert_eq!(
            read_control(&dir.path().join(CONTROL_FILE)).unwrap(),
            control
        );
        assert!(!dir.path().join("control.json.tmp").exists());
    }

    #[test]
    fn unfinished_and_deleted_directories_are_skipped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("ledgers/unfinished")).unwrap();
        fs::create_dir_all(dir.path().join("ledgers/.deleted-x-1")).unwrap();
        let registry = Registry::open(dir.path(), LedgerOptions::default()).unwrap();
        assert!(registry.is_empty());
        assert!(!dir.path().join("ledgers/.deleted-x-1").exists());
        assert!(registry.get("unfinished").is_err());
        assert_eq!(
            registry.delete("unfinished").unwrap_err().kind,
            ErrorKind::ResourceNotFound
        );
    }
}
