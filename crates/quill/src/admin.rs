//! Embedded administration: `quill verify`, `quill ledger …`, `quill digest`, `quill revision`.
//!
//! These open ledgers directly, in this process, from a data directory or from PostgreSQL
//! (`--storage`). A ledger in a data directory is locked by the process that has it open, so
//! they fail with "in use" while a `quill serve` serves it; a ledger in PostgreSQL can be opened
//! by them and by any number of servers at once.
//! In a data directory, ledgers are created and deleted through `quill_server::registry`, so
//! the `control.json` sidecar (deletion protection, permissions mode) stays the one the server
//! reads; in PostgreSQL the same JSON is the ledger's `control` column.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ion_rs::Element;
use quill_ledger::{
    BlockAddress, Ledger, LedgerDigest, LedgerError, LedgerOptions, PostgresStore, StoredLedger,
};
use quill_server::registry::{ControlRecord, NewLedger, Registry, AWS_OWNED_KMS_KEY, FAILED_STATE};

use crate::args::{LedgerCommand, RevisionRequest, StorageArgs};
use crate::render::{compact, pretty};
use crate::store::{connect, LedgerStore, LedgerTarget};
use crate::CorruptionFound;

/// QLDB's state of a ledger being created.
const CREATING_STATE: &str = "CREATING";

/// A progress bar on stderr; `template` is indicatif's.
pub fn progress_bar(template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Audits every block of `ledger` with a progress bar headed `label`; returns the number of
/// blocks. Corruption is [`CorruptionFound`].
pub fn audit(ledger: &Ledger, label: &str) -> anyhow::Result<u64> {
    let bar = progress_bar(&format!(
        "{label} {{pos}}/{{len}} blocks {{wide_bar}} {{eta}}"
    ));
    let outcome = ledger.verify(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match outcome {
        Ok(blocks) => Ok(blocks),
        Err(LedgerError::Corrupted {
            block_address,
            detail,
        }) => Err(CorruptionFound(format!(
            "ledger {} is corrupted: first bad block {}: {detail}",
            ledger.name(),
            address_text(&block_address)
        ))
        .into()),
        Err(other) => Err(anyhow::Error::new(other).context("verification could not finish")),
    }
}

/// `quill verify`: audits every block with a progress bar; corruption is [`CorruptionFound`].
pub fn verify(target: &LedgerTarget) -> anyhow::Result<()> {
    let ledger = target.open()?;
    let blocks = audit(&ledger, "verifying")?;
    println!("verified {blocks} blocks of ledger {}", ledger.name());
    println!("{}", pretty(&digest_element(&ledger.digest())));
    Ok(())
}

/// `quill ledger create|list|describe|delete`.
pub fn ledger(command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Create {
            name,
            store,
            no_deletion_protection,
        } => {
            let control = Ledgers::open(store)?.create(NewLedger {
                name,
                permissions_mode: "STANDARD".into(),
                deletion_protection: !no_deletion_protection,
                kms_key: AWS_OWNED_KMS_KEY.into(),
                tags: BTreeMap::new(),
            })?;
            println!("{}", compact(&control_element(&control)));
            Ok(())
        }
        LedgerCommand::List { store } => {
            for control in Ledgers::open(store)?.list()? {
                println!("{}", compact(&control_element(&control)));
            }
            Ok(())
        }
        LedgerCommand::Describe { name, store } => describe(&Ledgers::open(store)?, &name),
        LedgerCommand::Delete { name, store, force } => {
            Ledgers::open(store)?.delete(&name, force)?;
            println!("deleted ledger {name}");
            Ok(())
        }
    }
}

/// A new ledger's control-plane record, as the server's CreateLedger makes it.
pub fn new_control(new: NewLedger) -> ControlRecord {
    let created = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    ControlRecord {
        name: new.name,
        state: "ACTIVE".into(),
        creation_date_time: created.as_millis() as f64 / 1000.0,
        permissions_mode: new.permissions_mode,
        deletion_protection: new.deletion_protection,
        kms_key: new.kms_key,
        tags: new.tags,
        table_tags: BTreeMap::new(),
    }
}

/// The ledgers `quill ledger` administers.
enum Ledgers {
    /// A data directory, through the server's registry (boxed: much larger than a store).
    Dir(Box<Registry>),
    /// A PostgreSQL database.
    Postgres(PostgresStore),
}

impl Ledgers {
    fn open(store: StorageArgs) -> anyhow::Result<Ledgers> {
        match store.check()? {
            LedgerStore::DataDir(data_dir) => Registry::open(&data_dir, LedgerOptions::default())
                .map(|registry| Ledgers::Dir(Box::new(registry)))
                .with_context(|| format!("cannot open data directory {}", data_dir.display())),
            LedgerStore::Postgres(url) => connect(&url).map(Ledgers::Postgres),
        }
    }

    fn create(&self, new: NewLedger) -> anyhow::Result<ControlRecord> {
        match self {
            Ledgers::Dir(registry) => Ok(registry.create(new)?),
            Ledgers::Postgres(store) => {
                let create = || Ledger::create_in(store, &new.name, LedgerOptions::default());
                let ledger = match create() {
                    // A row without a control record is a creation that stopped half-way
                    // (shown as CREATING): start again, as the server does.
                    Err(LedgerError::LedgerExists(_))
                        if store.ledger(&new.name)?.control.is_none() =>
                    {
                        store.delete_ledger(&new.name)?;
                        create()
                    }
                    other => other,
                }?;
                drop(ledger);
                let control = new_control(new);
                let saved = serde_json::to_string(&control)
                    .map_err(anyhow::Error::new)
                    .and_then(|json| Ok(store.set_control(&control.name, &json)?));
                if let Err(error) = saved {
                    // A ledger without its control record would be shown as CREATING: undo.
                    if let Err(undo) = store.delete_ledger(&control.name) {
                        tracing::warn!(%undo, ledger = %control.name, "cannot remove the ledger created without its control record");
                    }
                    return Err(error.context("cannot save the ledger's control record"));
                }
                Ok(control)
            }
        }
    }

    fn list(&self) -> anyhow::Result<Vec<ControlRecord>> {
        match self {
            Ledgers::Dir(registry) => Ok(registry.list()),
            Ledgers::Postgres(store) => Ok(store.ledgers()?.iter().map(stored_control).collect()),
        }
    }

    fn get(&self, name: &str) -> anyhow::Result<(Ledger, ControlRecord)> {
        match self {
            Ledgers::Dir(registry) => Ok(registry.get(name)?),
            Ledgers::Postgres(store) => {
                let control = stored_control(&store.ledger(name)?);
                let ledger = Ledger::open_in(store, name, LedgerOptions::default())?;
                Ok((ledger, control))
            }
        }
    }

    /// Deletes a ledger, refused while deletion protection is on unless `force` turns it off
    /// first.
    fn delete(&self, name: &str, force: bool) -> anyhow::Result<()> {
        match self {
            Ledgers::Dir(registry) => {
                if force {
                    registry.update(name, |control| {
                        control.deletion_protection = false;
                        Ok(())
                    })?;
                }
                Ok(registry.delete(name)?)
            }
            Ledgers::Postgres(store) => {
                let mut control = stored_control(&store.ledger(name)?);
                if control.deletion_protection {
                    if !force {
                        bail!(
                            "Ledger {name} has deletion protection enabled: pass --force to \
                             turn it off and delete it"
                        );
                    }
                    control.deletion_protection = false;
                    store.set_control(name, &serde_json::to_string(&control)?)?;
                }
                Ok(store.delete_ledger(name)?)
            }
        }
    }
}

/// A PostgreSQL ledger's control record. A row without one is a creation in progress (or
/// one that stopped half-way), shown as `CREATING`; one that cannot be read is shown as
/// `FAILED`, as the server's registry shows it. Both keep deletion protection on.
fn stored_control(stored: &StoredLedger) -> ControlRecord {
    let state = match stored.control.as_deref().map(serde_json::from_str) {
        Some(Ok(control)) => return control,
        Some(Err(_)) => FAILED_STATE,
        None => CREATING_STATE,
    };
    let mut control = new_control(NewLedger {
        name: stored.name.clone(),
        permissions_mode: "STANDARD".into(),
        deletion_protection: true,
        kms_key: AWS_OWNED_KMS_KEY.into(),
        tags: BTreeMap::new(),
    });
    control.state = state.into();
    control.creation_date_time = 0.0;
    control
}

fn describe(ledgers: &Ledgers, name: &str) -> anyhow::Result<()> {
    let (ledger, control) = ledgers.get(name)?;
    let tables = ledger.transact(|tx| tx.tables())?;
    let table_names: Vec<Element> = tables
        .iter()
        .filter(|table| table.status == quill_ledger::TableStatus::Active)
        .map(|table| Element::string(table.name.as_str()))
        .collect();
    let digest = ledger.digest();
    let description = Element::struct_builder()
        .with_field("ledger", control_element(&control))
        .with_field("strandId", Element::string(ledger.strand_id()))
        .with_field("tables", Element::from(ion_rs::List::from(table_names)))
        .with_field("digest", digest_element(&digest))
        .build();
    println!("{}", pretty(&description.into()));
    Ok(())
}

/// `quill digest`.
pub fn digest(target: &LedgerTarget) -> anyhow::Result<()> {
    let ledger = target.open()?;
    println!("{}", pretty(&digest_element(&ledger.digest())));
    Ok(())
}

/// `quill revision`: prints the revision and its proof, then checks the proof against the
/// current digest with `quill_verify` and prints `verified`.
pub fn revision(request: &RevisionRequest) -> anyhow::Result<()> {
    let ledger = request.target.open()?;
    if request.block.strand_id != ledger.strand_id() {
        bail!(
            "block strandId {} is not this ledger's strand {}",
            request.block.strand_id,
            ledger.strand_id()
        );
    }
    let digest = ledger.digest();
    let sequence_no = request.block.sequence_no;
    let revision = ledger.revision(sequence_no, &request.document_id)?;
    let proof = ledger.revision_proof(sequence_no, &request.document_id, digest.tip.sequence_no)?;
    let revision = revision.to_element();
    let proof_text = quill_verify::proof_to_ion_text(&proof);
    println!("{}", pretty(&revision));
    println!("proof: {proof_text}");
    println!("{}", pretty(&digest_element(&digest)));
    quill_verify::verify_revision(&revision, &proof, &digest.digest).map_err(|error| {
        CorruptionFound(format!(
            "the revision does not verify against the digest: {error}"
        ))
    })?;
    println!("verified");
    Ok(())
}

/// `{strandId:"…",sequenceNo:N}` as QLDB writes block addresses.
pub fn address_text(address: &BlockAddress) -> String {
    compact(&address.to_element())
}

fn digest_element(digest: &LedgerDigest) -> Element {
    Element::struct_builder()
        .with_field("digest", Element::blob(digest.digest.as_bytes()))
        .with_field("digestTipAddress", digest.tip.to_element())
        .build()
        .into()
}

fn control_element(control: &ControlRecord) -> Element {
    Element::struct_builder()
        .with_field("name", Element::string(control.name.as_str()))
        .with_field("state", Element::string(control.state.as_str()))
        .with_field(
            "creationDateTime",
            Element::float(control.creation_date_time),
        )
        .with_field(
            "permissionsMode",
            Element::string(control.permissions_mode.as_str()),
        )
        .with_field(
            "deletionProtection",
            Element::boolean(control.deletion_protection),
        )
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_addresses_print_as_qldb_ion_text() {
        let address = BlockAddress {
            strand_id: "KmA3ZZca7vAIiJAK9S5Iwl".into(),
            sequence_no: 7,
        };
        let text = address_text(&address);
        assert_eq!(crate::args::parse_block_address(&text).unwrap(), address);
    }

    #[test]
    fn a_tampered_revision_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(dir.path(), "audit", LedgerOptions::default()).unwrap();
        let id = ledger
            .transact(|tx| {
                tx.create_table("T", None)?;
                tx.insert("T", Element::read_one("{a: 1}").unwrap())
            })
            .unwrap();
        let digest = ledger.digest();
        let sequence_no = digest.tip.sequence_no;
        let proof = ledger
            .revision_proof(sequence_no, &id, sequence_no)
            .unwrap();
        let revision = ledger.revision(sequence_no, &id).unwrap().to_element();
        assert!(quill_verify::verify_revision(&revision, &proof, &digest.digest).is_ok());
        let text = compact(&revision).replace("a: 1", "a: 2");
        let tampered = Element::read_one(text.as_bytes()).unwrap();
        assert_ne!(tampered, revision);
        assert!(quill_verify::verify_revision(&tampered, &proof, &digest.digest).is_err());
    }
}
