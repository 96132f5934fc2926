//! The ledgers this server holds: one directory per ledger under `<data_dir>/ledgers/<name>/`,
//! holding the engine's files and our `control.json` sidecar with the control-plane attributes
//! QLDB keeps outside the journal (deletion protection, permissions mode, tags, KMS key,
//! creation time).
//!
//! Crash safety: `control.json` is written last when a ledger is created (temp file, fsync,
//! rename, fsync of the directory), so a directory without it is an unfinished creation and is
//! skipped at startup. The ledger directory's entry in `ledgers/` is fsynced by
//! `Ledger::create`, and `ledgers/`'s own entry on open. Deleting renames the directory to a
//! hidden name first (atomic) and fsyncs `ledgers/` before answering, then removes it, so a
//! crash never leaves a half-deleted ledger visible nor brings back an acknowledged deletion.
//! Every file and directory operation goes through the ledgers' [`Storage`] (the options'
//! `storage`), so the power-loss tests (`tests/registry_power_loss.rs`) cover this module
//! too.
//!
//! One ledger's failure is that ledger's problem: a ledger that cannot be opened (corruption,
//! an I/O error, an unreadable `control.json`) is kept as a failed entry — logged, shown as
//! `FAILED` by ListLedgers/DescribeLedger and in `/health` — and every other ledger is served.
//! A ledger whose journal failed while running (poisoned, read-only until reopened) is shown
//! the same way.
//!
//! Every method here blocks (fsync): call them from `spawn_blocking`. The map's lock is held only
//! for lookups and single inserts or removals: never across a ledger transaction, an fsync, or a
//! ledger's shutdown (a removed handle is dropped after the lock is released).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use quill_ledger::storage::Storage;
use quill_ledger::{remove_unused_caches, Ledger, LedgerError, LedgerOptions, PostgresStore};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorKind, Plane, ServerError};
use crate::limits::LEDGERS_MAX;

/// The sidecar file's name inside a ledger directory.
pub const CONTROL_FILE: &str = "control.json";
/// The state ListLedgers and DescribeLedger show for a ledger that cannot serve (a Quill
/// extension of QLDB's CREATING/ACTIVE/DELETING/DELETED: the reason is in `/health` and the log).
pub const FAILED_STATE: &str = "FAILED";
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
    /// Tags of the ledger's tables by table id, once TagResource or UntagResource changed them
    /// (until then a table's tags are the `aws_tags` of its CREATE TABLE, kept in the journal).
    /// QLDB keeps table tags outside the journal too; absent in files written before tables
    /// could be tagged.
    #[serde(default)]
    pub table_tags: BTreeMap<String, BTreeMap<String, String>>,
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
        /// Serialises this ledger's `control.json` rewrites, so the map's lock is not held
        /// across their fsyncs.
        control_writes: Arc<Mutex<()>>,
    },
    /// Found on disk but could not be opened; kept so it is reported, and can be deleted.
    Failed {
        control: ControlRecord,
        reason: String,
    },
}

impl Entry {
    fn ready(control: ControlRecord, ledger: Ledger) -> Entry {
        Entry::Ready {
            control,
            ledger,
            control_writes: Arc::default(),
        }
    }

    /// The attributes as the control plane shows them: a ledger that cannot serve is `FAILED`.
    fn shown(&self) -> Option<ControlRecord> {
        let (control, failed) = match self {
            Entry::Creating => return None,
            Entry::Ready {
                control, ledger, ..
            } => (control, ledger.fault().is_some()),
            Entry::Failed { control, .. } => (control, true),
        };
        let mut control = control.clone();
        if failed {
            control.state = FAILED_STATE.to_string();
        }
        Some(control)
    }

    /// Why the ledger cannot serve, if it cannot.
    fn fault(&self) -> Option<String> {
        match self {
            Entry::Creating => None,
            Entry::Ready { ledger, .. } => ledger
                .fault()
                .map(|reason| format!("read-only until reopened: {reason}")),
            Entry::Failed { reason, .. } => Some(reason.clone()),
        }
    }
}

/// A ledger that cannot serve, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerFault {
    /// Ledger name.
    pub name: String,
    /// What went wrong.
    pub reason: String,
}

/// The ledgers this server serves and their open engine handles.
pub struct Registry {
    /// `<data_dir>/ledgers`: the ledgers' directories (embedded backend), or only the files
    /// Quill keeps beside a ledger (export records, stream cursors) with PostgreSQL.
    root: PathBuf,
    options: LedgerOptions,
    backend: Backend,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// The last PostgreSQL check's error (`None`: answered and writable, or not checked yet).
    database_error: Mutex<Option<String>>,
    /// One reopening of failed PostgreSQL ledgers at a time (see `reopen_failed`).
    reopening: Mutex<()>,
}

/// The PostgreSQL connection as `/health` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseHealth {
    /// The URL, password removed.
    pub url: String,
    /// Why the last check failed (unreachable, a read-only standby, ...); absent when it passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the ledgers live.
enum Backend {
    /// One directory per ledger under `root`, this process the only writer.
    Files,
    /// Rows in PostgreSQL, shared with other servers: the control record is a column of the
    /// ledger's row, and ledgers created or deleted by another server are picked up when a
    /// lookup misses and when ledgers are listed.
    Postgres(PostgresStore),
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

fn unavailable(name: &str, reason: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourcePreconditionNotMet,
        format!("Ledger {name} is unavailable: {reason}"),
    )
}

fn io_failure(what: &str, error: std::io::Error) -> ApiError {
    tracing::error!(%error, "{what}");
    ApiError::internal(format!("{what}: {error}"))
}

impl Registry {
    /// Opens every ledger under `<data_dir>/ledgers/`, creating that directory if needed. A
    /// ledger that fails to open is logged and kept as a failed entry; only a failure of the
    /// data directory itself is an error.
    pub fn open(data_dir: &Path, options: LedgerOptions) -> Result<Registry, ServerError> {
        let root = data_dir.join("ledgers");
        let dir_error = |source| ServerError::DataDir {
            path: root.clone(),
            source,
        };
        let storage = &options.storage;
        storage.create_dir_all(&root).map_err(dir_error)?;
        // `ledgers/` may have just been created: make its entry durable before any ledger
        // creation in it is acknowledged (`Ledger::create` syncs `ledgers/` itself).
        storage.sync_dir(data_dir).map_err(dir_error)?;
        let mut entries = BTreeMap::new();
        for name in storage.list_dir(&root).map_err(dir_error)? {
            let path = root.join(&name);
            if name.starts_with('.') {
                // A deletion interrupted by a crash: finish it.
                if let Err(error) = storage.remove_dir_all(&path) {
                    tracing::warn!(?path, %error, "cannot remove a deleted ledger's files");
                }
                continue;
            }
            let control_path = path.join(CONTROL_FILE);
            if !storage.exists(&control_path).map_err(dir_error)? {
                tracing::warn!(?path, "skipping a ledger directory without control.json");
                continue;
            }
            let entry = open_entry(&name, &path, &options);
            match &entry {
                Entry::Failed { reason, .. } => {
                    tracing::error!(ledger = %name, %reason, "cannot open ledger; serving the others");
                }
                _ => tracing::info!(ledger = %name, "opened ledger"),
            }
            entries.insert(name, entry);
        }
        Ok(Registry {
            root,
            options,
            backend: Backend::Files,
            entries: Mutex::new(entries),
            database_error: Mutex::new(None),
            reopening: Mutex::new(()),
        })
    }

    /// Serves the ledgers kept in PostgreSQL. `data_dir` holds only what this server keeps
    /// for itself: derived-state caches (`cache/<name>`, kept across restarts and caught up
    /// from PostgreSQL; those of deleted ledgers are removed here) and the files beside each
    /// ledger (`ledgers/<name>/`).
    pub fn open_postgres(
        data_dir: &Path,
        store: PostgresStore,
        mut options: LedgerOptions,
    ) -> Result<Registry, ServerError> {
        let root = data_dir.join("ledgers");
        let cache = data_dir.join("cache");
        let storage = options.storage.clone();
        for dir in [&root, &cache] {
            storage
                .create_dir_all(dir)
                .map_err(|source| ServerError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
        }
        options.cache_dir = Some(cache.clone());
        let registry = Registry {
            root,
            options,
            backend: Backend::Postgres(store),
            entries: Mutex::new(BTreeMap::new()),
            database_error: Mutex::new(None),
            reopening: Mutex::new(()),
        };
        registry
            .refresh()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        {
            let entries = registry.lock();
            remove_unused_caches(&storage, &cache, &|name| entries.contains_key(name));
        }
        Ok(registry)
    }

    /// Checks that PostgreSQL answers and accepts writes; blocks. Logged when it changes.
    pub fn check_database(&self) {
        let Some(store) = self.postgres() else {
            return;
        };
        let error = store.check().err().map(|e| e.to_string());
        if error.is_none() {
            let failed: Vec<String> = self.faults().into_iter().map(|f| f.name).collect();
            for name in failed {
                self.reopen_failed(&name);
            }
        }
        let mut last = self
            .database_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (&*last, &error) {
            (None, Some(e)) => tracing::error!(error = %e, "PostgreSQL is unavailable"),
            (Some(_), None) => tracing::info!("PostgreSQL is available again"),
            _ => {}
        }
        *last = error;
    }

    /// The PostgreSQL connection's state as last checked; `None` for the embedded backend.
    pub fn database_health(&self) -> Option<DatabaseHealth> {
        let store = self.postgres()?;
        Some(DatabaseHealth {
            url: store.display_url().to_owned(),
            error: self
                .database_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        })
    }

    /// The PostgreSQL store, when ledgers live there.
    pub fn postgres(&self) -> Option<&PostgresStore> {
        match &self.backend {
            Backend::Files => None,
            Backend::Postgres(store) => Some(store),
        }
    }

    /// With PostgreSQL: opens ledgers other servers created, drops those they deleted, and
    /// takes their control-record changes. A ledger whose row has no control record yet is
    /// still being created.
    fn refresh(&self) -> Result<(), LedgerError> {
        let Backend::Postgres(store) = &self.backend else {
            return Ok(());
        };
        let stored = store.ledgers()?;
        let mut to_open = Vec::new();
        let mut gone = Vec::new();
        {
            let mut entries = self.lock();
            let names: std::collections::BTreeSet<&str> =
                stored.iter().map(|l| l.name.as_str()).collect();
            entries.retain(|name, entry| {
                let keep = names.contains(name.as_str()) || matches!(entry, Entry::Creating);
                if !keep {
                    gone.push(name.clone());
                }
                keep
            });
            for ledger in &stored {
                let Some(text) = &ledger.control else {
                    continue;
                };
                let parsed: Result<ControlRecord, _> = serde_json::from_str(text);
                match (entries.get_mut(&ledger.name), parsed) {
                    (Some(Entry::Ready { control, .. }), Ok(fresh)) => *control = fresh,
                    (Some(_), _) => {}
                    (None, Ok(control)) => to_open.push(control),
                    (None, Err(error)) => {
                        entries.insert(
                            ledger.name.clone(),
                            Entry::Failed {
                                control: unknown_control(&ledger.name),
                                reason: format!("unreadable control record: {error}"),
                            },
                        );
                    }
                }
            }
        }
        for name in &gone {
            tracing::info!(ledger = %name, "ledger deleted by another server");
        }
        if let Some(cache) = self.options.cache_dir.as_ref().filter(|_| !gone.is_empty()) {
            remove_unused_caches(&self.options.storage, cache, &|name| {
                !gone.iter().any(|g| g == name)
            });
        }
        for control in to_open {
            let name = control.name.clone();
            let entry = match Ledger::open_in(store, &name, self.options.clone()) {
                Ok(ledger) => Entry::ready(control, ledger),
                Err(source) => Entry::Failed {
                    control,
                    reason: ServerError::OpenLedger {
                        name: name.clone(),
                        source,
                    }
                    .to_string(),
                },
            };
            let mut entries = self.lock();
            // Another thread may have opened it meanwhile: keep the first.
            entries.entry(name).or_insert(entry);
        }
        Ok(())
    }

    /// Reopens a PostgreSQL ledger that cannot serve: one whose commit had an unknown outcome
    /// (its cache may hold a batch PostgreSQL did not keep), or one that could not be opened
    /// while the database was down. PostgreSQL holds the truth, so the fresh handle builds its
    /// cache from there; sessions on the old handle end (see `Sessions`). Nothing happens
    /// while another thread reopens a ledger, or when the ledger is healthy.
    fn reopen_failed(&self, name: &str) {
        let Backend::Postgres(store) = &self.backend else {
            return;
        };
        let failed = |entry: Option<&Entry>| match entry {
            Some(Entry::Ready { ledger, .. }) => ledger.fault().is_some(),
            Some(Entry::Failed { .. }) => true,
            _ => false,
        };
        if !failed(self.lock().get(name)) {
            return;
        }
        let Ok(_reopening) = self.reopening.try_lock() else {
            return;
        };
        if !failed(self.lock().get(name)) {
            return; // reopened by the thread that held the lock
        }
        let reopened = store.ledger(name).and_then(|stored| {
            let control = stored
                .control
                .as_deref()
                .and_then(|text| serde_json::from_str::<ControlRecord>(text).ok())
                .ok_or_else(|| {
                    LedgerError::InvalidInput(format!("{name} has no readable control record"))
                })?;
            Ok((control, Ledger::open_in(store, name, self.options.clone())?))
        });
        match reopened {
            Ok((control, ledger)) => {
                tracing::info!(ledger = %name, "reopened from PostgreSQL after a failure");
                self.lock()
                    .insert(name.to_owned(), Entry::ready(control, ledger));
            }
            Err(error) => {
                tracing::warn!(ledger = %name, %error, "cannot reopen the ledger from PostgreSQL yet")
            }
        }
    }

    /// `refresh`, logged instead of failing (listing must answer from what is known).
    fn refresh_or_warn(&self) {
        if let Err(error) = self.refresh() {
            tracing::warn!(%error, "cannot read the ledger list from PostgreSQL");
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding this lock can only come from a bug in this module; the map
        // itself stays consistent (every update is a single insert or remove).
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `<data_dir>/ledgers`, where [`Registry::ledger_dir`]s are.
    pub fn ledgers_dir(&self) -> &Path {
        &self.root
    }

    /// The directory of the ledger named `name` (`<data_dir>/ledgers/<name>`).
    pub fn ledger_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Number of ledgers (ready or being created).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there is no ledger.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The engine handle and attributes of a ledger that opened. A ledger that failed to open
    /// is `ResourcePreconditionNotMet` with the reason; one whose journal failed while running
    /// is returned (its reads still work, its commits fail with the reason).
    pub fn get(&self, name: &str) -> Result<(Ledger, ControlRecord), ApiError> {
        if self.postgres().is_some() {
            if !self.lock().contains_key(name) {
                self.refresh_or_warn();
            }
            self.reopen_failed(name);
        }
        match self.lock().get(name) {
            Some(Entry::Ready {
                control, ledger, ..
            }) => Ok((ledger.clone(), control.clone())),
            Some(Entry::Failed { reason, .. }) => Err(unavailable(name, reason)),
            _ => Err(not_found(name)),
        }
    }

    /// A ledger's attributes as the control plane shows them, failed ledgers included.
    pub fn describe(&self, name: &str) -> Result<ControlRecord, ApiError> {
        self.refresh_or_warn();
        self.lock()
            .get(name)
            .and_then(Entry::shown)
            .ok_or_else(|| not_found(name))
    }

    /// Attributes of every ledger (failed ones shown as `FAILED`), ordered by name.
    pub fn list(&self) -> Vec<ControlRecord> {
        self.refresh_or_warn();
        self.lock().values().filter_map(Entry::shown).collect()
    }

    /// The ledgers that cannot serve, and why, ordered by name.
    pub fn faults(&self) -> Vec<LedgerFault> {
        self.lock()
            .iter()
            .filter_map(|(name, entry)| {
                entry.fault().map(|reason| LedgerFault {
                    name: name.clone(),
                    reason,
                })
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
                entries.insert(new.name.clone(), Entry::ready(control.clone(), ledger));
                Ok(control)
            }
            Err(error) => {
                entries.remove(&new.name);
                Err(error)
            }
        }
    }

    fn create_files(&self, new: &NewLedger) -> Result<(ControlRecord, Ledger), ApiError> {
        if let Backend::Postgres(store) = &self.backend {
            return self.create_in_postgres(store, new);
        }
        let storage = &self.options.storage;
        let dir = self.root.join(&new.name);
        let leftovers = storage
            .exists(&dir)
            .map_err(|e| io_failure("cannot look for the ledger directory", e))?;
        if leftovers {
            // Leftovers of a creation that crashed before control.json was written.
            storage
                .remove_dir_all(&dir)
                .map_err(|e| io_failure("cannot clear ledger directory", e))?;
        }
        let ledger = Ledger::create(&dir, &new.name, self.options.clone()).map_err(|error| {
            let _ = storage.remove_dir_all(&dir);
            ApiError::from_ledger(&error, Plane::Control)
        })?;
        let control = new_control(new);
        if let Err(error) = write_control(storage, &dir, &control) {
            drop(ledger);
            let _ = storage.remove_dir_all(&dir);
            return Err(io_failure("cannot write control.json", error));
        }
        Ok((control, ledger))
    }

    /// Creates the ledger's row and genesis block, then its control record: a row without
    /// one is an unfinished creation, which other servers skip and a new creation replaces.
    fn create_in_postgres(
        &self,
        store: &PostgresStore,
        new: &NewLedger,
    ) -> Result<(ControlRecord, Ledger), ApiError> {
        let control_error = |error: &LedgerError| ApiError::from_ledger(error, Plane::Control);
        let create = || Ledger::create_in(store, &new.name, self.options.clone());
        let ledger = match create() {
            Err(LedgerError::LedgerExists(_)) => {
                let existing = store.ledger(&new.name).map_err(|e| control_error(&e))?;
                if existing.control.is_some() {
                    return Err(ApiError::new(
                        ErrorKind::ResourceAlreadyExists,
                        format!("Ledger {} already exists", new.name),
                    ));
                }
                // An earlier creation stopped before its control record: start again.
                store
                    .delete_ledger(&new.name)
                    .map_err(|e| control_error(&e))?;
                create()
            }
            other => other,
        }
        .map_err(|e| control_error(&e))?;
        let control = new_control(new);
        let text = serde_json::to_string(&control)
            .map_err(|e| ApiError::internal(format!("cannot encode the control record: {e}")))?;
        if let Err(error) = store.set_control(&new.name, &text) {
            drop(ledger);
            let _ = store.delete_ledger(&new.name);
            return Err(control_error(&error));
        }
        Ok((control, ledger))
    }

    /// Serves a ledger opened elsewhere (a mirror's copy, created in [`Registry::ledger_dir`]
    /// with its `control.json` by the mirror) under `control`'s name, which must be free.
    pub fn adopt(&self, control: ControlRecord, ledger: Ledger) -> Result<(), ApiError> {
        let mut entries = self.lock();
        if entries.contains_key(&control.name) {
            return Err(ApiError::new(
                ErrorKind::ResourceAlreadyExists,
                format!("Ledger {} already exists", control.name),
            ));
        }
        entries.insert(control.name.clone(), Entry::ready(control, ledger));
        Ok(())
    }

    /// Changes a ledger's attributes and persists them before answering.
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut ControlRecord) -> Result<(), ApiError>,
    ) -> Result<ControlRecord, ApiError> {
        let writes = match self.lock().get(name) {
            Some(Entry::Ready { control_writes, .. }) => Arc::clone(control_writes),
            Some(Entry::Failed { reason, .. }) => return Err(unavailable(name, reason)),
            _ => return Err(not_found(name)),
        };
        // Rewrites of one ledger's file are serialised by its own lock; the map's lock is
        // taken only to read and to store the record, never across the fsync.
        let _writing = writes.lock().unwrap_or_else(|p| p.into_inner());
        let mut updated = match self.lock().get(name) {
            Some(Entry::Ready { control, .. }) => control.clone(),
            _ => return Err(not_found(name)),
        };
        change(&mut updated)?;
        match &self.backend {
            Backend::Files => write_control(&self.options.storage, &self.root.join(name), &updated)
                .map_err(|e| io_failure("cannot write control.json", e))?,
            Backend::Postgres(store) => {
                let text = serde_json::to_string(&updated).map_err(|e| {
                    ApiError::internal(format!("cannot encode the control record: {e}"))
                })?;
                store
                    .set_control(name, &text)
                    .map_err(|e| ApiError::from_ledger(&e, Plane::Control))?;
            }
        }
        if let Some(Entry::Ready { control, .. }) = self.lock().get_mut(name) {
            *control = updated.clone();
        }
        Ok(updated)
    }

    /// Deletes a ledger (a failed one too) unless deletion protection is on. The caller ends
    /// its sessions.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        let removed = {
            let mut entries = self.lock();
            match entries.get(name) {
                Some(Entry::Ready { control, .. } | Entry::Failed { control, .. })
                    if control.deletion_protection =>
                {
                    return Err(ApiError::new(
                        ErrorKind::ResourcePreconditionNotMet,
                        format!(
                            "Ledger {name} has deletion protection enabled: disable it with \
                             UpdateLedger first"
                        ),
                    ));
                }
                Some(Entry::Ready { .. } | Entry::Failed { .. }) => {}
                _ => return Err(not_found(name)),
            }
            entries.remove(name)
        };
        // The last handle's drop shuts the ledger down (flushes its state): not under the lock.
        drop(removed);
        if let Backend::Postgres(store) = &self.backend {
            store
                .delete_ledger(name)
                .map_err(|e| ApiError::from_ledger(&e, Plane::Control))?;
            if let Some(cache) = &self.options.cache_dir {
                remove_unused_caches(&self.options.storage, cache, &|other| other != name);
            }
            let sidecars = self.root.join(name);
            if self.options.storage.exists(&sidecars).unwrap_or(false) {
                if let Err(error) = self.options.storage.remove_dir_all(&sidecars) {
                    tracing::warn!(?sidecars, %error, "cannot remove a deleted ledger's files");
                }
            }
            return Ok(());
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let doomed = self.root.join(format!(".deleted-{name}-{nanos}"));
        let storage = &self.options.storage;
        storage
            .rename(&self.root.join(name), &doomed)
            .map_err(|e| io_failure("cannot move the deleted ledger aside", e))?;
        storage
            .sync_dir(&self.root)
            .map_err(|e| io_failure("cannot sync the ledgers directory", e))?;
        if let Err(error) = storage.remove_dir_all(&doomed) {
            // Harmless: the next start finishes the removal.
            tracing::warn!(?doomed, %error, "cannot remove a deleted ledger's files yet");
        }
        Ok(())
    }
}

fn new_control(new: &NewLedger) -> ControlRecord {
    let creation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    ControlRecord {
        name: new.name.clone(),
        state: "ACTIVE".into(),
        creation_date_time: (creation.as_millis() as f64) / 1000.0,
        permissions_mode: new.permissions_mode.clone(),
        deletion_protection: new.deletion_protection,
        kms_key: new.kms_key.clone(),
        tags: new.tags.clone(),
        table_tags: BTreeMap::new(),
    }
}

/// Opens one ledger directory found at startup; any failure becomes a failed entry.
fn open_entry(name: &str, path: &Path, options: &LedgerOptions) -> Entry {
    let control = match read_control(&options.storage, &path.join(CONTROL_FILE)) {
        Ok(control) => control,
        Err(error) => {
            return Entry::Failed {
                control: unknown_control(name),
                reason: error.to_string(),
            }
        }
    };
    match Ledger::open(path, options.clone()) {
        Ok(ledger) => Entry::ready(control, ledger),
        Err(source) => Entry::Failed {
            control,
            reason: ServerError::OpenLedger {
                name: name.to_string(),
                source,
            }
            .to_string(),
        },
    }
}

/// What is shown for a ledger whose `control.json` cannot be read. Deletion protection stays
/// on: an operator removes such a ledger by hand after looking at it.
fn unknown_control(name: &str) -> ControlRecord {
    ControlRecord {
        name: name.to_string(),
        state: FAILED_STATE.to_string(),
        creation_date_time: 0.0,
        permissions_mode: "STANDARD".to_string(),
        deletion_protection: true,
        kms_key: AWS_OWNED_KMS_KEY.to_string(),
        tags: BTreeMap::new(),
        table_tags: BTreeMap::new(),
    }
}

fn read_control(storage: &Storage, path: &Path) -> Result<ControlRecord, ServerError> {
    let error = |detail: String| ServerError::ControlFile {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = storage.read(path).map_err(|e| error(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| error(e.to_string()))
}

/// Replaces `control.json` atomically and durably (see [`Storage::write_atomically`]).
/// Public for `quill import`, which writes it into the ledger it builds before publishing it.
pub fn write_control(
    storage: &Storage,
    dir: &Path,
    control: &ControlRecord,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(control).map_err(std::io::Error::other)?;
    storage.write_atomically(&dir.join(CONTROL_FILE), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
            table_tags: BTreeMap::from([(
                "5PLf9SXwndd63lPaSIa0O6".to_string(),
                BTreeMap::from([("env".to_string(), "prod".to_string())]),
            )]),
        };
        write_control(&Storage::Os, dir.path(), &control).unwrap();
        assert_eq!(
            read_control(&Storage::Os, &dir.path().join(CONTROL_FILE)).unwrap(),
            control
        );
        assert!(!dir.path().join("control.json.tmp").exists());
    }

    #[test]
    fn a_ledger_that_fails_to_open_is_reported_and_the_others_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path(), LedgerOptions::default()).unwrap();
        for name in ["broken", "healthy", "unreadable"] {
            registry
                .create(NewLedger {
                    name: name.into(),
                    permissions_mode: "ALLOW_ALL".into(),
                    deletion_protection: false,
                    kms_key: AWS_OWNED_KMS_KEY.into(),
                    tags: BTreeMap::new(),
                })
                .unwrap();
        }
        drop(registry);
        let ledgers = dir.path().join("ledgers");
        fs::write(ledgers.join("broken/ledger.ion"), b"not a ledger file").unwrap();
        fs::write(ledgers.join("unreadable").join(CONTROL_FILE), b"{").unwrap();

        let registry = Registry::open(dir.path(), LedgerOptions::default()).unwrap();
        assert!(registry.get("healthy").is_ok());
        let Err(refused) = registry.get("broken") else {
            panic!("a ledger that failed to open was served");
        };
        assert_eq!(refused.kind, ErrorKind::ResourcePreconditionNotMet);
        assert!(
            refused.message.contains("unavailable"),
            "{}",
            refused.message
        );
        let states: Vec<(String, String)> = registry
            .list()
            .into_iter()
            .map(|c| (c.name, c.state))
            .collect();
        assert_eq!(
            states,
            [
                ("broken".to_string(), FAILED_STATE.to_string()),
                ("healthy".to_string(), "ACTIVE".to_string()),
                ("unreadable".to_string(), FAILED_STATE.to_string()),
            ]
        );
        let faults = registry.faults();
        assert_eq!(faults.len(), 2);
        assert!(faults[1].reason.contains("control file"), "{faults:?}");
        assert_eq!(registry.describe("broken").unwrap().state, FAILED_STATE);
        assert_eq!(
            registry.update("broken", |_| Ok(())).unwrap_err().kind,
            ErrorKind::ResourcePreconditionNotMet
        );
        // A failed ledger keeps its deletion protection: unknown for the unreadable one.
        registry.delete("broken").unwrap();
        assert_eq!(
            registry.delete("unreadable").unwrap_err().kind,
            ErrorKind::ResourcePreconditionNotMet
        );
        assert_eq!(registry.faults().len(), 1);
        assert!(!ledgers.join("broken").exists());
    }

    #[test]
    fn control_files_without_table_tags_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONTROL_FILE);
        fs::write(
            &path,
            r#"{"name":"old","state":"ACTIVE","creation_date_time":1.0,
                "permissions_mode":"ALLOW_ALL","deletion_protection":false,
                "kms_key":"AWS_OWNED_KMS_KEY","tags":{}}"#,
        )
        .unwrap();
        let control = read_control(&Storage::Os, &path).unwrap();
        assert_eq!(control.name, "old");
        assert!(control.table_tags.is_empty());
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

    fn new_ledger(name: &str) -> NewLedger {
        NewLedger {
            name: name.into(),
            permissions_mode: "ALLOW_ALL".into(),
            deletion_protection: false,
            kms_key: AWS_OWNED_KMS_KEY.into(),
            tags: BTreeMap::new(),
        }
    }

    /// A PostgreSQL server's caches (`<data dir>/cache/<ledger>`) outlive it; those of
    /// ledgers deleted (by it or by another server) and temporary ones a killed process left
    /// behind are removed.
    #[test]
    fn postgres_caches_are_kept_and_removed_with_their_ledgers() {
        let url = quill_pgtest::PgServer::shared()
            .and_then(|cluster| cluster.create_database("registry_caches"))
            .unwrap();
        let store = PostgresStore::connect(&url).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = |name: &str| dir.path().join("cache").join(name);
        let open = || {
            Registry::open_postgres(dir.path(), store.clone(), LedgerOptions::default()).unwrap()
        };
        let registry = open();
        for name in ["shop", "gone", "deleted"] {
            registry.create(new_ledger(name)).unwrap();
        }
        drop(registry);
        fs::create_dir_all(cache("shop.tmp-abc123")).unwrap();

        let registry = open();
        let (ledger, _) = registry.get("shop").unwrap();
        assert_eq!(ledger.recovery_report().blocks_replayed, 0);
        assert!(cache("shop").join("state.redb").exists());
        assert!(!cache("shop.tmp-abc123").exists());
        drop(ledger);
        registry.delete("deleted").unwrap();
        assert!(!cache("deleted").exists());
        // Another server deletes one: this one drops it, and its cache, when it notices.
        store.delete_ledger("gone").unwrap();
        assert_eq!(registry.list().len(), 1);
        assert!(!cache("gone").exists());
        assert!(cache("shop").join("state.redb").exists());
    }
}
