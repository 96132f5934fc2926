//! A control-plane export's durable record: `<ledger dir>/exports/<exportId>.json`, rewritten
//! atomically at every status change so a restart knows which exports were cut short.

use std::fs;
use std::path::{Path, PathBuf};

use quill_ledger::storage::Storage;
use serde::{Deserialize, Serialize};

use crate::engine::ExportSpec;
use crate::error::{ExportError, Result};
use crate::format::OutputFormat;

/// QLDB's `ExportStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExportStatus {
    /// Being written.
    InProgress,
    /// Every object and the completed manifest are written.
    Completed,
    /// Given up; `cancellation_reason` says why.
    Cancelled,
}

impl ExportStatus {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            ExportStatus::InProgress => "IN_PROGRESS",
            ExportStatus::Completed => "COMPLETED",
            ExportStatus::Cancelled => "CANCELLED",
        }
    }
}

/// Everything `DescribeJournalS3Export` shows, plus what Quill keeps for itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRecord {
    /// The ledger's name.
    pub ledger_name: String,
    /// The export id.
    pub export_id: String,
    /// When the request was accepted (UTC ms).
    pub creation_time_millis: i64,
    /// Where the export stands.
    pub status: ExportStatus,
    /// Requested range start (UTC ms), after QLDB's clamp to the ledger's creation time.
    pub inclusive_start_millis: i64,
    /// Requested range end (UTC ms).
    pub exclusive_end_millis: i64,
    /// Destination bucket.
    pub bucket: String,
    /// Destination prefix.
    pub prefix: String,
    /// `NO_ENCRYPTION`, `SSE_S3` or `SSE_KMS`.
    pub object_encryption_type: String,
    /// The KMS key for `SSE_KMS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// The IAM role of the request: recorded and shown, never assumed (Quill has no IAM).
    pub role_arn: String,
    /// The requested output format (absent: ION_TEXT by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// Why the export was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
    /// Blocks written, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_exported: Option<u64>,
}

impl ExportRecord {
    /// The export this record describes.
    pub fn spec(&self) -> Result<ExportSpec> {
        Ok(ExportSpec {
            ledger_name: self.ledger_name.clone(),
            export_id: self.export_id.clone(),
            inclusive_start_millis: self.inclusive_start_millis,
            exclusive_end_millis: self.exclusive_end_millis,
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            object_encryption_type: self.object_encryption_type.clone(),
            output_format: self
                .output_format
                .as_deref()
                .map(OutputFormat::parse)
                .transpose()?,
        })
    }
}

/// The export records of one ledger: `<ledger dir>/exports/*.json`.
pub struct ExportStore {
    dir: PathBuf,
}

impl ExportStore {
    /// The store of the ledger in `ledger_dir` (the folder is made on first save).
    pub fn new(ledger_dir: &Path) -> ExportStore {
        ExportStore {
            dir: ledger_dir.join("exports"),
        }
    }

    /// Writes `record` atomically (temporary file, fsync, rename, fsync of the folder).
    pub fn save(&self, record: &ExportRecord) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{}.json", record.export_id));
        let text =
            serde_json::to_vec_pretty(record).map_err(|e| ExportError::Encode(e.to_string()))?;
        Storage::Os.write_atomically(&path, &text)?;
        Ok(())
    }

    /// Every record, oldest first.
    pub fn load_all(&self) -> Result<Vec<ExportRecord>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = fs::read(&path)?;
            let record: ExportRecord = serde_json::from_slice(&bytes).map_err(|e| {
                ExportError::Encode(format!("{} is malformed: {e}", path.display()))
            })?;
            records.push(record);
        }
        records.sort_by(|a, b| {
            (a.creation_time_millis, &a.export_id).cmp(&(b.creation_time_millis, &b.export_id))
        });
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, created: i64) -> ExportRecord {
        ExportRecord {
            ledger_name: "vehicles".into(),
            export_id: id.into(),
            creation_time_millis: created,
            status: ExportStatus::InProgress,
            inclusive_start_millis: 0,
            exclusive_end_millis: 10,
            bucket: "b".into(),
            prefix: "p/".into(),
            object_encryption_type: "NO_ENCRYPTION".into(),
            kms_key_arn: None,
            role_arn: "arn:aws:iam::000000000000:role/export".into(),
            output_format: Some("JSON".into()),
            cancellation_reason: None,
            blocks_exported: None,
        }
    }

    #[test]
    fn records_survive_a_reopen_and_updates_replace_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = ExportStore::new(dir.path());
        assert!(store.load_all().unwrap().is_empty());
        let mut second = record("B234567890123456789012", 2);
        store.save(&second).unwrap();
        store.save(&record("A234567890123456789012", 1)).unwrap();
        second.status = ExportStatus::Completed;
        second.blocks_exported = Some(7);
        store.save(&second).unwrap();
        let loaded = ExportStore::new(dir.path()).load_all().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].export_id, "A234567890123456789012");
        assert_eq!(loaded[1], second);
        assert_eq!(
            loaded[1].spec().unwrap().output_format,
            Some(OutputFormat::Json)
        );
    }
}
