//! Where the command's ledgers live: a data directory (the embedded engine's files, `--data-dir`)
//! or a PostgreSQL database (`--storage URL`), and opening one ledger from either. Every command
//! that opens a ledger goes through [`LedgerTarget::open`], so both backends behave alike.

use std::path::PathBuf;

use anyhow::bail;
use quill_ledger::{Ledger, LedgerError, LedgerOptions, PostgresStore};

use crate::admin::address_text;
use crate::CorruptionFound;

/// The URL schemes `--storage` accepts (libpq's).
const POSTGRES_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// Where ledgers are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerStore {
    /// `<dir>/ledgers/<name>/`, opened by one process at a time.
    DataDir(PathBuf),
    /// A PostgreSQL database (a libpq URL), shared by any number of processes.
    Postgres(String),
}

/// Accepts `url` as a PostgreSQL URL for `flag`. The text is not echoed: it may hold a
/// password.
pub fn postgres_url(url: String, flag: &str) -> anyhow::Result<String> {
    if !POSTGRES_SCHEMES
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        bail!(
            "{flag} takes a PostgreSQL URL, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE \
             (or postgresql://…)"
        );
    }
    Ok(url)
}

/// Connects to the PostgreSQL database at `url`, creating or migrating Quill's schema.
/// Errors name the URL without its password.
pub fn connect(url: &str) -> anyhow::Result<PostgresStore> {
    PostgresStore::connect(url).map_err(|error| {
        let shown = quill_ledger::redact_url(url);
        // Connection failures name the URL already; others (a read-only standby, say) do not.
        let context = if error.to_string().contains(&shown) {
            "cannot open the PostgreSQL storage".to_owned()
        } else {
            format!("cannot open the PostgreSQL storage at {shown}")
        };
        anyhow::Error::new(error).context(context)
    })
}

/// One ledger in a [`LedgerStore`].
#[derive(Debug, Clone)]
pub struct LedgerTarget {
    /// Where it is kept.
    pub store: LedgerStore,
    /// A valid ledger name.
    pub ledger: String,
}

impl LedgerTarget {
    /// Opens the ledger. Corruption found while opening is [`CorruptionFound`].
    pub fn open(&self) -> anyhow::Result<Ledger> {
        let name = &self.ledger;
        let opened = match &self.store {
            LedgerStore::DataDir(data_dir) => {
                let dir = quill_ledger::ledger_dir(data_dir, name);
                if !dir.join("ledger.ion").exists() {
                    bail!("no ledger {name} in {}", data_dir.display());
                }
                Ledger::open(&dir, LedgerOptions::default())
            }
            LedgerStore::Postgres(url) => {
                let store = connect(url)?;
                match Ledger::open_in(&store, name, LedgerOptions::default()) {
                    Err(LedgerError::UnknownLedger(_)) => {
                        bail!("no ledger {name} in PostgreSQL at {}", store.display_url())
                    }
                    opened => opened,
                }
            }
        };
        opened.map_err(|error| match error {
            LedgerError::Corrupted {
                block_address,
                detail,
            } => CorruptionFound(format!(
                "ledger {name} is corrupted at block {}: {detail}",
                address_text(&block_address)
            ))
            .into(),
            other => anyhow::Error::new(other).context(format!("cannot open ledger {name}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_takes_only_postgres_urls_and_never_echoes_them() {
        for good in [
            "postgres://quill@db/quill",
            "postgresql://quill:s3cret@db1:5432,db2:5432/quill?target_session_attrs=read-write",
        ] {
            assert_eq!(postgres_url(good.into(), "--storage").unwrap(), good);
        }
        for bad in [
            "host=db password=s3cret",
            "mysql://root:s3cret@db",
            "",
            "./quill-data",
        ] {
            let error = postgres_url(bad.into(), "--storage")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("--storage takes a PostgreSQL URL"),
                "{error}"
            );
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
