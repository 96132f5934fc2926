//! Embedded administration: `quill verify`, `quill ledger …`, `quill digest`, `quill revision`.
//!
//! These open ledger files directly, in this process. The ledger engine takes no lock on its
//! directory, so they must not run against a data directory a `quill serve` is serving.
//! Ledgers are created and deleted through `quill_server::registry`, so the `control.json`
//! sidecar (deletion protection, permissions mode) stays the one the server reads.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ion_rs::Element;
use quill_ledger::{BlockAddress, Ledger, LedgerDigest, LedgerError, LedgerOptions};
use quill_server::registry::{ControlRecord, NewLedger, Registry, AWS_OWNED_KMS_KEY};

use crate::args::{LedgerCommand, LedgerTarget, RevisionRequest};
use crate::render::{compact, pretty};
use crate::CorruptionFound;

/// Opens one ledger, turning a corruption found while opening into [`CorruptionFound`].
pub fn open_ledger(target: &LedgerTarget) -> anyhow::Result<Ledger> {
    let dir = target.dir();
    if !dir.join("ledger.ion").exists() {
        bail!(
            "no ledger {} in {}",
            target.ledger,
            target.data_dir.display()
        );
    }
    Ledger::open(&dir, LedgerOptions::default()).map_err(|error| match error {
        LedgerError::Corrupted {
            block_address,
            detail,
        } => CorruptionFound(format!(
            "ledger {} is corrupted at block {}: {detail}",
            target.ledger,
            address_text(&block_address)
        ))
        .into(),
        other => anyhow::Error::new(other).context(format!("cannot open ledger {}", target.ledger)),
    })
}

/// `quill verify`: audits every block with a progress bar; corruption is [`CorruptionFound`].
pub fn verify(target: &LedgerTarget) -> anyhow::Result<()> {
    let ledger = open_ledger(target)?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("verifying {pos}/{len} blocks {wide_bar} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let outcome = ledger.verify(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match outcome {
        Ok(blocks) => {
            let digest = ledger.digest();
            println!("verified {blocks} blocks of ledger {}", ledger.name());
            println!("{}", pretty(&digest_element(&digest)));
            Ok(())
        }
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

/// `quill ledger create|list|describe|delete`.
pub fn ledger(command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Create {
            name,
            data_dir,
            no_deletion_protection,
        } => {
            let registry = open_registry(&data_dir)?;
            let control = registry.create(NewLedger {
                name,
                permissions_mode: "STANDARD".into(),
                deletion_protection: !no_deletion_protection,
                kms_key: AWS_OWNED_KMS_KEY.into(),
                tags: BTreeMap::new(),
            })?;
            println!("{}", compact(&control_element(&control)));
            Ok(())
        }
        LedgerCommand::List { data_dir } => {
            for control in open_registry(&data_dir)?.list() {
                println!("{}", compact(&control_element(&control)));
            }
            Ok(())
        }
        LedgerCommand::Describe { name, data_dir } => describe(&data_dir, &name),
        LedgerCommand::Delete {
            name,
            data_dir,
            force,
        } => {
            let registry = open_registry(&data_dir)?;
            if force {
                registry.update(&name, |control| {
                    control.deletion_protection = false;
                    Ok(())
                })?;
            }
            registry.delete(&name)?;
            println!("deleted ledger {name}");
            Ok(())
        }
    }
}

fn open_registry(data_dir: &Path) -> anyhow::Result<Registry> {
    Registry::open(data_dir, LedgerOptions::default())
        .with_context(|| format!("cannot open data directory {}", data_dir.display()))
}

fn describe(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    let registry = open_registry(data_dir)?;
    let (ledger, control) = registry.get(name)?;
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
    let ledger = open_ledger(target)?;
    println!("{}", pretty(&digest_element(&ledger.digest())));
    Ok(())
}

/// `quill revision`: prints the revision and its proof, then checks the proof against the
/// current digest with `quill_verify` and prints `verified`.
pub fn revision(request: &RevisionRequest) -> anyhow::Result<()> {
    let ledger = open_ledger(&request.target)?;
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
