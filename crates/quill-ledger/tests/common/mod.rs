//! Helpers shared by the integration tests, among them [`Home`]: where one test keeps its
//! ledgers, on the backend the test runs on, so that the engine's tests run on both (see
//! [`on_both_backends`]).

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions, PostgresStore};
use tempfile::TempDir;

/// Scans `table`, then checks that the index on each of `fields` answers every integer key in
/// `keys` with exactly the scanned documents holding that key. Returns the scan by document
/// id: (version, data).
pub fn scan_checking_indexes(
    ledger: &Ledger,
    table: &str,
    fields: &[&str],
    keys: Range<i64>,
) -> BTreeMap<String, (u64, Element)> {
    let mut scanned = BTreeMap::new();
    ledger
        .transact(|tx| {
            scanned.clear();
            tx.scan(table, &mut |doc| {
                let data = Element::read_one(doc.ion).unwrap();
                scanned.insert(doc.id.to_owned(), (doc.version, data));
                Ok(true)
            })
        })
        .unwrap();
    for field in fields {
        for value in keys.clone() {
            let key = Element::int(value);
            let mut found: Vec<String> = ledger
                .transact(|tx| tx.index_lookup(table, field, &key))
                .unwrap()
                .expect("the field is indexed")
                .into_iter()
                .map(|d| d.id)
                .collect();
            found.sort();
            let expected: Vec<String> = scanned
                .iter()
                .filter(|(_, (_, d))| d.as_struct().unwrap().get(field) == Some(&key))
                .map(|(id, _)| id.clone())
                .collect();
            assert_eq!(found, expected, "{field} = {value}");
        }
    }
    scanned
}

/// The throwaway PostgreSQL cluster of this test binary, started on loopback by
/// `quill-pgtest` on first use.
pub fn postgres_server() -> &'static quill_pgtest::PgServer {
    quill_pgtest::PgServer::shared().expect("start PostgreSQL")
}

/// The shared cluster's default database (for tests that keep several ledgers in one).
pub fn postgres_url() -> String {
    postgres_server().url()
}

/// A database of the shared cluster that no other test uses: tests on PostgreSQL run in
/// parallel, and a database each keeps their ledgers and `quill_ledgers` rows apart.
pub fn fresh_postgres_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::SeqCst));
    postgres_server()
        .create_database(&name)
        .expect("create a database")
}

/// The journal store a test's ledgers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Journal files and redb in a directory.
    Embedded,
    /// The journal in PostgreSQL, derived state in a cache directory.
    Postgres,
}

/// Where one test keeps its ledgers: ledger `NAME` is the directory `DIR/NAME` (embedded) or
/// the ledger `NAME` of a database of its own on the shared PostgreSQL cluster, whose handles
/// keep their derived-state caches under `DIR`. Reopening a ledger opens the same directory or
/// the same database.
pub struct Home {
    backend: Backend,
    dir: TempDir,
    /// A PostgreSQL home's database: its URL and the store connected to it.
    postgres: Option<(String, PostgresStore)>,
}

impl Home {
    pub fn new(backend: Backend) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let postgres = (backend == Backend::Postgres).then(|| {
            let url = fresh_postgres_database();
            let store = PostgresStore::connect(&url).expect("connect to PostgreSQL");
            (url, store)
        });
        Home {
            backend,
            dir,
            postgres,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The directory of the ledgers (embedded) or of their caches (PostgreSQL).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PostgreSQL database of a PostgreSQL home.
    pub fn store(&self) -> Option<&PostgresStore> {
        self.postgres.as_ref().map(|(_, store)| store)
    }

    /// Creates ledger `name`.
    pub fn create(&self, name: &str, options: LedgerOptions) -> Ledger {
        match self.store() {
            None => Ledger::create(&self.ledger_dir(name), name, options),
            Some(store) => Ledger::create_in(store, name, self.with_cache(options)),
        }
        .unwrap_or_else(|e| panic!("create ledger {name} ({:?}): {e}", self.backend))
    }

    /// Creates ledger `name` with the default options.
    pub fn create_default(&self, name: &str) -> Ledger {
        self.create(name, LedgerOptions::default())
    }

    /// Opens ledger `name` again.
    pub fn open(&self, name: &str, options: LedgerOptions) -> Ledger {
        self.try_open(name, options)
            .unwrap_or_else(|e| panic!("open ledger {name} ({:?}): {e}", self.backend))
    }

    /// Opens ledger `name` again with the default options.
    pub fn open_default(&self, name: &str) -> Ledger {
        self.open(name, LedgerOptions::default())
    }

    pub fn try_open(&self, name: &str, options: LedgerOptions) -> quill_ledger::Result<Ledger> {
        match self.store() {
            None => Ledger::open(&self.ledger_dir(name), options),
            Some(store) => Ledger::open_in(store, name, self.with_cache(options)),
        }
    }

    /// Throws away the derived state (documents, indexes, digest tree) of closed ledger
    /// `name`, so that opening it must rebuild all of it from the journal: the ledger
    /// directory's files, or a PostgreSQL ledger's whole cache directory.
    pub fn discard_derived_state(&self, name: &str) {
        let dir = self.ledger_dir(name);
        match self.backend {
            Backend::Embedded => {
                std::fs::remove_file(dir.join("state.redb")).unwrap();
                std::fs::remove_dir_all(dir.join("tree")).unwrap();
            }
            Backend::Postgres => std::fs::remove_dir_all(dir).unwrap(),
        }
    }

    /// Whether the journal of ledger `name` (its files, or its rows in PostgreSQL) holds
    /// `needle` anywhere.
    pub fn journal_holds(&self, name: &str, needle: &[u8]) -> bool {
        match self.store() {
            None => !files_containing(&self.ledger_dir(name).join("journal"), needle).is_empty(),
            Some(_) => {
                let rows: i64 = self
                    .sql()
                    .query_one(
                        "SELECT count(*) FROM quill_blocks \
                         WHERE ledger = $1 AND position($2::bytea IN payload) > 0",
                        &[&name, &needle],
                    )
                    .unwrap()
                    .get(0);
                rows > 0
            }
        }
    }

    /// The URL of a PostgreSQL home's database.
    pub fn database_url(&self) -> &str {
        &self.postgres.as_ref().expect("a PostgreSQL home").0
    }

    /// A client of a PostgreSQL home's database.
    pub fn sql(&self) -> postgres::Client {
        postgres::Client::connect(self.database_url(), postgres::NoTls).unwrap()
    }

    /// The files of a PostgreSQL home's database (tables, TOAST, indexes; not the cluster's
    /// WAL) that hold `needle`, once a CHECKPOINT wrote every page out to them.
    pub fn database_files_containing(&self, needle: &[u8]) -> Vec<PathBuf> {
        let mut client = self.sql();
        client.batch_execute("CHECKPOINT").unwrap();
        let oid: u32 = client
            .query_one(
                "SELECT oid FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0);
        let files = postgres_server()
            .data_dir()
            .join("base")
            .join(oid.to_string());
        files_containing(&files, needle)
    }

    fn ledger_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn with_cache(&self, options: LedgerOptions) -> LedgerOptions {
        LedgerOptions {
            cache_dir: Some(self.dir.path().to_owned()),
            ..options
        }
    }
}

/// Files under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// For each `test`, a function `fn test(backend: Backend)` of the including file, emits the
/// tests `test::embedded` and `test::postgres` (a module of the same name: modules and
/// functions live in different namespaces), which run it on each backend.
#[allow(unused_macros)] // as dead_code above
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[test]
                fn embedded() {
                    super::$test($crate::common::Backend::Embedded)
                }

                #[test]
                fn postgres() {
                    super::$test($crate::common::Backend::Postgres)
                }
            }
        )*
    };
}
#[allow(unused_imports)] // as dead_code above
pub(crate) use on_both_backends;
