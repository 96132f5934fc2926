//! Planning and running one export: which blocks, which objects, in which order.

use std::ops::Range;

use ion_rs::{Element, Struct};
use quill_ledger::Ledger;
use rand::Rng as _;

use crate::error::{ExportError, Result};
use crate::format::{ObjectBuffer, OutputFormat};
use crate::sink::ObjectSink;
use crate::time::{hour_folder, millis_timestamp, timestamp_millis};

/// Data objects are cut at this size (and at every UTC hour of block time).
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 8 << 20;

/// What one export writes: QLDB's `ExportJournalToS3` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSpec {
    /// The ledger's name.
    pub ledger_name: String,
    /// The 22-character base62 export id.
    pub export_id: String,
    /// Blocks committed at or after this instant (UTC ms) are exported…
    pub inclusive_start_millis: i64,
    /// …up to, not including, this one.
    pub exclusive_end_millis: i64,
    /// The bucket (recorded in the started manifest; a directory sink ignores it).
    pub bucket: String,
    /// The key prefix as requested.
    pub prefix: String,
    /// `NO_ENCRYPTION`, `SSE_S3` or `SSE_KMS` (recorded in the started manifest).
    pub object_encryption_type: String,
    /// The requested format; `None` means QLDB's default, ION_TEXT, and keeps `outputFormat`
    /// out of the started manifest as QLDB does.
    pub output_format: Option<OutputFormat>,
}

/// Tuning that does not change what an export means.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    /// Approximate size at which a data object is closed.
    pub max_object_bytes: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
        }
    }
}

/// What a finished export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Blocks exported.
    pub blocks: u64,
    /// Bytes of data objects written.
    pub bytes: u64,
    /// The data objects' keys, in order (the completed manifest's `keys`).
    pub keys: Vec<String>,
}

/// A fresh export id: 22 base62 characters, like QLDB's.
pub fn new_export_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl ExportSpec {
    /// The format objects are written in.
    pub fn format(&self) -> OutputFormat {
        self.output_format.unwrap_or(OutputFormat::IonText)
    }

    /// The prefix keys start with: QLDB's documented example (prefix `journalExport`, objects
    /// under `journalExport/…`) shows a `/` added to a prefix that lacks one.
    pub fn key_prefix(&self) -> String {
        if self.prefix.is_empty() || self.prefix.ends_with('/') {
            self.prefix.clone()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// `{prefix}{exportId}.started.manifest`.
    pub fn started_manifest_key(&self) -> String {
        format!("{}{}.started.manifest", self.key_prefix(), self.export_id)
    }

    /// `{prefix}{exportId}.{strandId}.completed.manifest`.
    pub fn completed_manifest_key(&self, strand_id: &str) -> String {
        format!(
            "{}{}.{strand_id}.completed.manifest",
            self.key_prefix(),
            self.export_id
        )
    }

    fn data_key(&self, folder: &str, strand_id: &str, first: u64, last: u64) -> String {
        format!(
            "{}{}/{folder}/{strand_id}.{first}-{last}.{}",
            self.key_prefix(),
            self.export_id,
            self.format().extension()
        )
    }

    fn started_manifest(&self) -> Result<Element> {
        let mut fields = vec![
            ("ledgerName", Element::string(self.ledger_name.as_str())),
            ("exportId", Element::string(self.export_id.as_str())),
            (
                "inclusiveStartTime",
                Element::timestamp(millis_timestamp(self.inclusive_start_millis)?),
            ),
            (
                "exclusiveEndTime",
                Element::timestamp(millis_timestamp(self.exclusive_end_millis)?),
            ),
            ("bucket", Element::string(self.bucket.as_str())),
            ("prefix", Element::string(self.prefix.as_str())),
            (
                "objectEncryptionType",
                Element::string(self.object_encryption_type.as_str()),
            ),
        ];
        if let Some(format) = self.output_format {
            fields.push(("outputFormat", Element::string(format.name())));
        }
        Ok(Element::from(Struct::from_iter(fields)))
    }
}

/// Writes `{prefix}{exportId}.started.manifest` (QLDB writes it when the request is accepted).
pub fn write_started_manifest(spec: &ExportSpec, sink: &dyn ObjectSink) -> Result<()> {
    let format = spec.format();
    let body = format.encode(&[spec.started_manifest()?])?;
    sink.put(&spec.started_manifest_key(), body, format.content_type())
}

fn block_millis(block: &Element) -> Result<i64> {
    block
        .as_struct()
        .and_then(|s| s.get("blockTimestamp"))
        .and_then(Element::as_timestamp)
        .map(|t| timestamp_millis(&t))
        .ok_or_else(|| ExportError::Encode("a journal block has no blockTimestamp".into()))
}

/// The first block, among the first `blocks`, committed at or after `millis`. Block times
/// never decrease along the journal (the committer stamps each block with at least its
/// predecessor's time), so this is a binary search.
fn first_block_at(ledger: &Ledger, blocks: u64, millis: i64) -> Result<u64> {
    let (mut low, mut high) = (0, blocks);
    while low < high {
        let middle = low + (high - low) / 2;
        if block_millis(&ledger.block(middle)?)? < millis {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(low)
}

/// When the ledger was created: its genesis block's time (UTC ms).
pub fn ledger_creation_millis(ledger: &Ledger) -> Result<i64> {
    block_millis(&ledger.block(0)?)
}

/// QLDB's time-range rules for an export request: the start must be before the end, the end
/// no later than `now_millis`; a start before the ledger's creation becomes its creation time.
/// Returns the start to use.
pub fn check_time_range(
    ledger: &Ledger,
    start_millis: i64,
    end_millis: i64,
    now_millis: i64,
) -> Result<i64> {
    if start_millis >= end_millis {
        return Err(ExportError::InvalidInput(
            "The InclusiveStartTime must be before the ExclusiveEndTime".into(),
        ));
    }
    if end_millis > now_millis {
        return Err(ExportError::InvalidInput(
            "The ExclusiveEndTime must be less than or equal to the current UTC date and time"
                .into(),
        ));
    }
    Ok(start_millis.max(ledger_creation_millis(ledger)?))
}

/// The sequence numbers of the blocks committed in `[start, end)` (UTC ms).
pub fn block_range(ledger: &Ledger, start_millis: i64, end_millis: i64) -> Result<Range<u64>> {
    let blocks = ledger.digest().tip.sequence_no + 1;
    let first = first_block_at(ledger, blocks, start_millis)?;
    let end = first_block_at(ledger, blocks, end_millis)?;
    Ok(first..end.max(first))
}

/// The data object being filled: its folder, block range and body.
struct PendingObject {
    folder: String,
    first: u64,
    last: u64,
    body: ObjectBuffer,
}

/// Runs an export: every block of `spec`'s time range, in order, as data objects, then the
/// completed manifest listing them. The started manifest is the caller's (it is written when
/// the request is accepted); running the same spec again rewrites the same objects, which is
/// how an export interrupted by a crash resumes. `progress(done, total)` counts blocks.
pub fn run_export(
    ledger: &Ledger,
    spec: &ExportSpec,
    options: ExportOptions,
    sink: &dyn ObjectSink,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary> {
    let format = spec.format();
    let strand_id = ledger.strand_id();
    let range = block_range(
        ledger,
        spec.inclusive_start_millis,
        spec.exclusive_end_millis,
    )?;
    let total = range.end - range.start;
    let mut summary = ExportSummary::default();
    let mut pending: Option<PendingObject> = None;
    let flush = |object: PendingObject, summary: &mut ExportSummary| -> Result<()> {
        let key = spec.data_key(&object.folder, strand_id, object.first, object.last);
        let body = object.body.finish()?;
        summary.bytes += body.len() as u64;
        summary.blocks += object.last + 1 - object.first;
        sink.put(&key, body, format.content_type())?;
        summary.keys.push(key);
        Ok(())
    };
    for seq in range.clone() {
        let block = ledger.block(seq)?;
        let folder = hour_folder(block_millis(&block)?);
        if let Some(object) = pending.take_if(|object| object.folder != folder) {
            flush(object, &mut summary)?;
        }
        let object = pending.get_or_insert_with(|| PendingObject {
            folder,
            first: seq,
            last: seq,
            body: ObjectBuffer::new(format),
        });
        object.last = seq;
        object.body.push(block)?;
        if object.body.len() >= options.max_object_bytes {
            if let Some(full) = pending.take() {
                flush(full, &mut summary)?;
            }
        }
        progress(seq + 1 - range.start, total);
    }
    if let Some(object) = pending {
        flush(object, &mut summary)?;
    }
    let keys = Element::from(ion_rs::List::from(
        summary
            .keys
            .iter()
            .map(|k| Element::string(k.as_str()))
            .collect::<Vec<_>>(),
    ));
    let manifest = Element::from(Struct::from_iter([("keys", keys)]));
    sink.put(
        &spec.completed_manifest_key(strand_id),
        format.encode(&[manifest])?,
        format.content_type(),
    )?;
    Ok(summary)
}
