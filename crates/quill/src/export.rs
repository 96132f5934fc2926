//! `quill export`: a journal export of a ledger in a data directory, to a local directory or
//! to `s3://bucket/prefix`, in QLDB's layout (see `quill-export`); `quill verify-export`
//! re-verifies exports read back.

use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quill_export::engine::{check_time_range, new_export_id};
use quill_export::s3::{S3Settings, S3Sink};
use quill_export::time::parse_time;
use quill_export::{
    run_export, write_started_manifest, DirSink, ExportOptions, ExportSpec, ObjectSink,
    OutputFormat,
};

use crate::args::ExportRequest;
use crate::CorruptionFound;

/// Where `--to` (or `quill import --from`) points.
pub(crate) enum Location {
    Dir(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

pub(crate) fn location(text: &str, flag: &str) -> anyhow::Result<Location> {
    match text.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "{flag} {text:?} names no bucket");
            Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            })
        }
        None => Ok(Location::Dir(text.into())),
    }
}

/// Runs the export and prints its id, object count, blocks and rate.
pub fn run(request: &ExportRequest) -> anyhow::Result<()> {
    let ledger = request.target.open()?;
    let now = quill_export::time::now_millis();
    let start = match &request.start {
        Some(text) => parse_time(text).context("--start")?,
        None => i64::MIN,
    };
    let end = match &request.end {
        Some(text) => parse_time(text).context("--end")?,
        None => now,
    };
    let start = check_time_range(&ledger, start, end, now)?;
    let format = request
        .format
        .as_deref()
        .map(|name| OutputFormat::parse(&name.to_ascii_uppercase().replace('-', "_")))
        .transpose()
        .context("--format")?;
    let (sink, bucket, prefix): (Box<dyn ObjectSink>, String, String) =
        match location(&request.to, "--to")? {
            Location::Dir(dir) => {
                let sink = DirSink::new(&dir)?;
                (Box::new(sink), dir.display().to_string(), String::new())
            }
            Location::S3 { bucket, prefix } => {
                let settings = S3Settings::from_environment()?;
                let sink = S3Sink::new(&bucket, "NO_ENCRYPTION", None, &settings)?;
                (Box::new(sink), bucket, prefix)
            }
        };
    let spec = ExportSpec {
        ledger_name: ledger.name().to_owned(),
        export_id: new_export_id(),
        inclusive_start_millis: start,
        exclusive_end_millis: end,
        bucket,
        prefix,
        object_encryption_type: "NO_ENCRYPTION".into(),
        output_format: format,
    };
    write_started_manifest(&spec, sink.as_ref())?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("exporting {pos}/{len} blocks {wide_bar} {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let began = Instant::now();
    let summary = run_export(
        &ledger,
        &spec,
        ExportOptions::default(),
        sink.as_ref(),
        &mut |done, total| {
            bar.set_length(total);
            // Redrawing per block would cost more than exporting it.
            if done % 1024 == 0 || done == total {
                bar.set_position(done);
            }
        },
    )
    .with_context(|| format!("export to {} failed", sink.location()))?;
    bar.finish_and_clear();
    let seconds = began.elapsed().as_secs_f64().max(1e-9);
    println!("exportId: {}", spec.export_id);
    println!(
        "exported {} blocks in {} objects ({} bytes) to {} in {seconds:.2} s: {:.0} blocks/s, {:.1} MB/s",
        summary.blocks,
        summary.keys.len(),
        summary.bytes,
        sink.location(),
        summary.blocks as f64 / seconds,
        summary.bytes as f64 / 1e6 / seconds
    );
    println!(
        "completed manifest: {}",
        spec.completed_manifest_key(ledger.strand_id())
    );
    Ok(())
}

/// `quill verify-export DIR`: verifies every export under `dir`; a block that does not verify
/// is [`CorruptionFound`].
pub fn verify(dir: &std::path::Path) -> anyhow::Result<()> {
    let manifests = quill_export::verify::completed_manifests(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    anyhow::ensure!(
        !manifests.is_empty(),
        "no *.completed.manifest under {}",
        dir.display()
    );
    for manifest in manifests {
        match quill_export::verify::verify_export(dir, &manifest) {
            Ok(verified) => {
                let range = verified
                    .range
                    .map_or("none".to_owned(), |(a, b)| format!("{a}-{b}"));
                println!(
                    "verified {} blocks (sequence numbers {range}) in {} objects: {}",
                    verified.blocks,
                    verified.objects,
                    manifest.display()
                );
            }
            Err(quill_export::ExportError::Verification(detail)) => {
                return Err(CorruptionFound(format!("{}: {detail}", manifest.display())).into())
            }
            Err(other) => {
                return Err(anyhow::Error::new(other).context(format!("{}", manifest.display())))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_destinations_split_into_bucket_and_prefix() {
        match location("s3://bucket/a/b/", "--to").unwrap() {
            Location::S3 { bucket, prefix } => {
                assert_eq!((bucket.as_str(), prefix.as_str()), ("bucket", "a/b/"))
            }
            Location::Dir(_) => panic!("not a directory"),
        }
        match location("s3://bucket", "--to").unwrap() {
            Location::S3 { prefix, .. } => assert_eq!(prefix, ""),
            Location::Dir(_) => panic!("not a directory"),
        }
        assert!(location("s3:///x", "--to").is_err());
        assert!(matches!(
            location("out/dir", "--to").unwrap(),
            Location::Dir(_)
        ));
    }
}
