//! `quill import`: a new ledger from a journal export (see `quill_export::import`), created
//! as `quill ledger create` creates one (with the server's `control.json`). Into PostgreSQL
//! (`--storage`), the ledger is built in a temporary data directory (under `TMPDIR`) first,
//! then moved as `quill migrate` moves one: the same blocks, checked again, the same digest.

use std::collections::BTreeMap;
use std::path::Path;

use quill_export::s3::{S3Settings, S3Source};
use quill_export::{import_ledger, DirSource, ExportError, ImportTarget, ObjectSource};
use quill_ledger::storage::Storage;
use quill_ledger::{LedgerError, LedgerOptions};
use quill_server::registry::{write_control, NewLedger, AWS_OWNED_KMS_KEY};

use crate::admin::{address_text, new_control, progress_bar};
use crate::args::ImportArgs;
use crate::export::{location, Location};
use crate::store::{connect, LedgerStore};
use crate::CorruptionFound;

/// Runs the import and prints what it brought over and its digest.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let target = args.target.check()?;
    let source = source(&args.from)?;
    let control = new_control(NewLedger {
        name: target.ledger.clone(),
        permissions_mode: "STANDARD".into(),
        deletion_protection: !args.no_deletion_protection,
        kms_key: AWS_OWNED_KMS_KEY.into(),
        tags: BTreeMap::new(),
    });
    match &target.store {
        LedgerStore::DataDir(data_dir) => import(&source, &args.from, data_dir, &control),
        LedgerStore::Postgres(url) => {
            let store = connect(url)?;
            match store.ledger(&target.ledger) {
                Err(LedgerError::UnknownLedger(_)) => {}
                Ok(_) => anyhow::bail!(
                    "ledger {} already exists in PostgreSQL at {}",
                    target.ledger,
                    store.display_url()
                ),
                Err(other) => return Err(other.into()),
            }
            let staging = tempfile::Builder::new()
                .prefix("quill-import-")
                .tempdir()
                .map_err(|e| anyhow::anyhow!("cannot make a temporary data directory: {e}"))?;
            import(&source, &args.from, staging.path(), &control)?;
            crate::migrate::migrate_ledger(&store, staging.path(), &target.ledger)
        }
    }
}

/// The export `--from` names, and the prefix of its keys.
fn source(from: &str) -> anyhow::Result<(Box<dyn ObjectSource>, String)> {
    Ok(match location(from, "--from")? {
        Location::Dir(dir) => (Box::new(DirSource::new(&dir)?), String::new()),
        Location::S3 { bucket, prefix } => {
            let settings = S3Settings::from_environment()?;
            (Box::new(S3Source::new(&bucket, &settings)?), prefix)
        }
    })
}

/// Imports into a data directory.
fn import(
    (source, prefix): &(Box<dyn ObjectSource>, String),
    from: &str,
    data_dir: &Path,
    control: &quill_server::registry::ControlRecord,
) -> anyhow::Result<()> {
    let bar = progress_bar("importing {pos} blocks {per_sec} {elapsed}");
    let outcome = import_ledger(
        source.as_ref(),
        prefix,
        ImportTarget {
            data_dir,
            ledger: &control.name,
            options: LedgerOptions::default(),
            before_publish: Box::new(|dir| {
                write_control(&Storage::Os, dir, control).map_err(LedgerError::Io)
            }),
        },
        &mut |blocks| bar.set_position(blocks),
    );
    bar.finish_and_clear();
    let (_, summary) = outcome.map_err(|error| match error {
        ExportError::BlockRejected { .. } | ExportError::ImportRefused(_) => {
            anyhow::Error::new(CorruptionFound(format!(
                "import from {from} refused, nothing was created: {error}"
            )))
        }
        other => anyhow::Error::new(other)
            .context(format!("import from {from} failed, nothing was created")),
    })?;
    let seconds = summary.elapsed.as_secs_f64().max(1e-9);
    println!(
        "imported {} blocks of strand {} from {} objects ({} manifests) into ledger {} in \
         {seconds:.2} s: {:.0} blocks/s",
        summary.blocks,
        summary.strand_id,
        summary.objects,
        summary.manifests,
        summary.ledger,
        summary.blocks as f64 / seconds
    );
    println!("digest: {}", summary.digest.digest.to_base64());
    println!("digestTipAddress: {}", address_text(&summary.digest.tip));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_a_directory_or_an_s3_prefix() {
        assert!(matches!(
            location("s3://exports/qldb/", "--from").unwrap(),
            Location::S3 { bucket, prefix } if bucket == "exports" && prefix == "qldb/"
        ));
        let error = location("s3://", "--from").err().unwrap();
        assert!(error.to_string().contains("--from"), "{error}");
    }
}
