//! `quill import`: a new ledger from a journal export (see `quill_export::import`), created
//! as `quill ledger create` creates one (with the server's `control.json`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quill_export::s3::{S3Settings, S3Source};
use quill_export::{import_ledger, DirSource, ExportError, ImportTarget, ObjectSource};
use quill_ledger::storage::Storage;
use quill_ledger::{LedgerError, LedgerOptions};
use quill_server::registry::{write_control, ControlRecord, AWS_OWNED_KMS_KEY};

use crate::admin::address_text;
use crate::args::ImportArgs;
use crate::export::{location, Location};
use crate::CorruptionFound;

/// Runs the import and prints what it brought over and its digest.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let target = args.target.check()?;
    let (source, prefix): (Box<dyn ObjectSource>, String) = match location(&args.from, "--from")? {
        Location::Dir(dir) => (Box::new(DirSource::new(&dir)?), String::new()),
        Location::S3 { bucket, prefix } => {
            let settings = S3Settings::from_environment()?;
            (Box::new(S3Source::new(&bucket, &settings)?), prefix)
        }
    };
    let created = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let control = ControlRecord {
        name: target.ledger.clone(),
        state: "ACTIVE".into(),
        creation_date_time: created.as_millis() as f64 / 1000.0,
        permissions_mode: "STANDARD".into(),
        deletion_protection: !args.no_deletion_protection,
        kms_key: AWS_OWNED_KMS_KEY.into(),
        tags: BTreeMap::new(),
        table_tags: BTreeMap::new(),
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("importing {pos} blocks {per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let outcome = import_ledger(
        source.as_ref(),
        &prefix,
        ImportTarget {
            data_dir: &target.data_dir,
            ledger: &target.ledger,
            options: LedgerOptions::default(),
            before_publish: Box::new(|dir| {
                write_control(&Storage::Os, dir, &control).map_err(LedgerError::Io)
            }),
        },
        &mut |blocks| bar.set_position(blocks),
    );
    bar.finish_and_clear();
    let (_, summary) = outcome.map_err(|error| match error {
        ExportError::BlockRejected { .. } | ExportError::ImportRefused(_) => {
            anyhow::Error::new(CorruptionFound(format!(
                "import from {} refused, nothing was created: {error}",
                args.from
            )))
        }
        other => anyhow::Error::new(other).context(format!(
            "import from {} failed, nothing was created",
            args.from
        )),
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
