//! Journal export: QLDB's `ExportJournalToS3` output, written to a local directory or to any
//! S3-compatible object store.
//!
//! An export writes, for one ledger and one time range (QLDB's layout, byte-compatible with the
//! AWS samples' readers):
//! - `{prefix}{exportId}.started.manifest`: the request's parameters;
//! - data objects `{prefix}{exportId}/yyyy/mm/dd/hh/{strandId}.{first}-{last}.ion` (`.json` for
//!   JSON Lines), each holding whole blocks in GetBlock's shape, in journal order;
//! - `{prefix}{exportId}.{strandId}.completed.manifest`: `{keys: [...]}`, the data objects in
//!   order, written last so its presence means the export is whole.
//!
//! Modules: [`engine`] plans and runs an export over a [`quill_ledger::Ledger`] (reading blocks
//! through its read API, so commits go on); [`format`] encodes blocks and manifests in
//! `ION_TEXT`, `ION_BINARY` or `JSON`; [`sink`] is where objects go ([`sink::DirSink`] for a
//! directory, [`s3::S3Sink`] for S3); [`record`] persists a control-plane export's status;
//! [`verify`] re-verifies an export read back (every block's hashes and the chain); [`import`]
//! builds a new ledger from an export ([`sink::DirSource`] or [`s3::S3Source`]), blocks and
//! hashes unchanged.

pub mod engine;
mod error;
pub mod format;
pub mod import;
pub mod record;
pub mod s3;
pub mod sink;
pub mod time;
pub mod verify;

pub use engine::{run_export, write_started_manifest, ExportOptions, ExportSpec, ExportSummary};
pub use error::{ExportError, Result};
pub use format::OutputFormat;
pub use import::{import_ledger, ImportSummary, ImportTarget};
pub use sink::{DirSink, DirSource, ObjectSink, ObjectSource};
