//! `quill migrate`: moves embedded ledgers into PostgreSQL with their chains intact.
//!
//! For each ledger: the embedded ledger is audited (`quill verify`'s checks); every block's
//! journal payload is copied byte for byte, with the ledger's `control.json` as its control
//! record, in one PostgreSQL transaction ([`PostgresStore::import_ledger`]); then the copy is
//! opened from PostgreSQL, audited again, and its digest at the embedded tip must equal the
//! embedded digest. A copy that fails those checks is deleted again. The embedded ledger is
//! left as it was (remove it once the servers use PostgreSQL).
//!
//! Not moved, because they live beside the ledger rather than in its journal: journal export
//! records (`<ledger dir>/exports/`), journal streams and their cursors
//! (`<data dir>/streams/`), the transparency log (`<ledger dir>/tlog/`) and its signing key
//! (`<data dir>/log-key`).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _};
use quill_ledger::{Ledger, LedgerError, LedgerOptions, PostgresStore};
use quill_server::registry::{ControlRecord, CONTROL_FILE};

use crate::admin::{address_text, audit, progress_bar};
use crate::args::MigrateRequest;
use crate::store::{connect, LedgerStore, LedgerTarget};
use crate::CorruptionFound;

/// Runs `quill migrate`: refuses before copying anything if a ledger is missing from the data
/// directory or already in PostgreSQL, then moves the ledgers one by one.
pub fn run(request: MigrateRequest) -> anyhow::Result<()> {
    let names = if request.ledgers.is_empty() {
        ledgers_in(&request.from)?
    } else {
        request.ledgers
    };
    for name in &names {
        let dir = quill_ledger::ledger_dir(&request.from, name);
        if !dir.join("ledger.ion").exists() {
            bail!("no ledger {name} in {}", request.from.display());
        }
    }
    let store = connect(&request.to)?;
    let taken: Vec<String> = store
        .ledgers()?
        .into_iter()
        .map(|stored| stored.name)
        .filter(|name| names.contains(name))
        .collect();
    if !taken.is_empty() {
        bail!(
            "ledger {} already exists in PostgreSQL at {}: nothing was migrated",
            taken.join(", "),
            store.display_url()
        );
    }
    for (done, name) in names.iter().enumerate() {
        migrate_ledger(&store, &request.from, name).with_context(|| {
            let moved = match done {
                0 => "no ledger was migrated".to_owned(),
                _ => format!("migrated before it: {}", names[..done].join(", ")),
            };
            format!("cannot migrate ledger {name} ({moved})")
        })?;
    }
    println!(
        "migrated {} ledger(s) to {}; not moved: journal export records, streams and their \
         cursors, the transparency log and its key (they live beside the ledgers)",
        names.len(),
        store.display_url()
    );
    Ok(())
}

/// The ledgers of a data directory, by name.
fn ledgers_in(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let root = data_dir.join("ledgers");
    let entries = std::fs::read_dir(&root)
        .with_context(|| format!("cannot list the ledgers in {}", root.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Dot-directories are unfinished imports and deletions; see the server's registry.
        if !name.starts_with('.') && entry.path().join("ledger.ion").exists() {
            names.push(name);
        }
    }
    if names.is_empty() {
        bail!("no ledgers in {}", data_dir.display());
    }
    names.sort();
    Ok(names)
}

/// Moves one embedded ledger of `data_dir` into `store` and checks the copy; prints both
/// digests.
pub fn migrate_ledger(store: &PostgresStore, data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let control_path = quill_ledger::ledger_dir(data_dir, name).join(CONTROL_FILE);
    let control = std::fs::read_to_string(&control_path).with_context(|| {
        format!(
            "cannot read {}: a ledger without it is not served (an unfinished creation?)",
            control_path.display()
        )
    })?;
    let record: ControlRecord = serde_json::from_str(&control)
        .with_context(|| format!("{} is not a control record", control_path.display()))?;
    if record.name != name {
        bail!(
            "{} is the control record of ledger {}",
            control_path.display(),
            record.name
        );
    }
    let source = LedgerTarget {
        store: LedgerStore::DataDir(data_dir.to_owned()),
        ledger: name.to_owned(),
    }
    .open()?;
    audit(&source, &format!("verifying {name}"))?;
    let digest = source.digest();
    let bar = progress_bar(&format!(
        "copying {name} {{pos}}/{{len}} blocks {{wide_bar}} {{per_sec}} {{eta}}"
    ));
    let began = Instant::now();
    let copied = store.import_ledger(&source, Some(&control), &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let blocks = copied.map_err(|error| match error {
        LedgerError::LedgerExists(_) => anyhow::anyhow!(
            "ledger {name} already exists in PostgreSQL at {}",
            store.display_url()
        ),
        other => anyhow::Error::new(other).context("the copy failed and left nothing behind"),
    })?;
    let seconds = began.elapsed().as_secs_f64().max(1e-9);
    drop(source);
    let checked = check_copy(store, name, &digest);
    let copy = match checked {
        Ok(copy) => copy,
        Err(error) => {
            if let Err(undo) = store.delete_ledger(name) {
                return Err(error.context(format!(
                    "and the copy could not be deleted from PostgreSQL: {undo}"
                )));
            }
            return Err(error.context("the copy was deleted from PostgreSQL"));
        }
    };
    println!(
        "migrated ledger {name}: {blocks} blocks in {seconds:.2} s ({:.0} blocks/s)",
        blocks as f64 / seconds
    );
    println!(
        "embedded digest:   {} at {}",
        digest.digest.to_base64(),
        address_text(&digest.tip)
    );
    println!(
        "PostgreSQL digest: {} at {}",
        copy.digest.to_base64(),
        address_text(&copy.tip)
    );
    Ok(())
}

/// Opens the copy from PostgreSQL, audits it, and checks its digest at the embedded tip.
fn check_copy(
    store: &PostgresStore,
    name: &str,
    embedded: &quill_ledger::LedgerDigest,
) -> anyhow::Result<quill_ledger::LedgerDigest> {
    let copy = Ledger::open_in(store, name, LedgerOptions::default())
        .context("cannot open the copy from PostgreSQL")?;
    audit(&copy, &format!("verifying {name} in PostgreSQL"))?;
    let digest = copy.digest_at(embedded.tip.sequence_no)?;
    if digest.digest != embedded.digest || digest.tip != embedded.tip {
        return Err(CorruptionFound(format!(
            "the copy's digest {} at {} differs from the embedded digest {} at {}",
            digest.digest.to_base64(),
            address_text(&digest.tip),
            embedded.digest.to_base64(),
            address_text(&embedded.tip)
        ))
        .into());
    }
    Ok(digest)
}
