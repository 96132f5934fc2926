//! QLDB stream records, built from the journal's block structs.
//!
//! Every record is one Ion binary value `{qldbStreamArn, recordType, payload}` (QLDB Developer
//! Guide, "QLDB stream records in Kinesis"). A block becomes one `BLOCK_SUMMARY` (the block
//! without its revisions, plus `revisionSummaries`) followed by one `REVISION_DETAILS` per
//! revision (`{tableInfo, revision}`), in the block's revision order. Revision structs are
//! copied from the block as they are, so a redacted revision keeps its `dataHash` and a deletion
//! has no `data`.

use ion_rs::{Element, Struct};

use crate::error::{Result, StreamError};

/// `recordType` of a stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    Control,
    BlockSummary,
    RevisionDetails,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Control => "CONTROL",
            RecordType::BlockSummary => "BLOCK_SUMMARY",
            RecordType::RevisionDetails => "REVISION_DETAILS",
        }
    }
}

/// `payload.controlRecordType` of a `CONTROL` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// First record of every stream.
    Created,
    /// Last record of a stream that reached its end time (never written on cancel).
    Completed,
}

impl ControlType {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlType::Created => "CREATED",
            ControlType::Completed => "COMPLETED",
        }
    }
}

/// One encoded stream record and what sinks need to route and deduplicate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub record_type: RecordType,
    /// The block the record comes from (`None` for control records).
    pub block_sequence_no: Option<u64>,
    /// Idempotency key: `strandId/sequenceNo` for a summary, `documentId/version` for a
    /// revision, `streamId/CREATED|COMPLETED` for control records.
    pub dedupe_key: String,
    /// The record as Ion binary.
    pub ion: Vec<u8>,
}

fn envelope(stream_arn: &str, record_type: RecordType, payload: Element) -> Result<Vec<u8>> {
    let record: Element = Element::struct_builder()
        .with_field("qldbStreamArn", Element::string(stream_arn))
        .with_field("recordType", Element::string(record_type.as_str()))
        .with_field("payload", payload)
        .build()
        .into();
    Ok(record.encode_as(ion_rs::v1_0::Binary)?)
}

/// A `CONTROL` record.
pub fn control_record(
    stream_arn: &str,
    stream_id: &str,
    control: ControlType,
) -> Result<StreamRecord> {
    let payload: Element = Element::struct_builder()
        .with_field("controlRecordType", Element::string(control.as_str()))
        .build()
        .into();
    Ok(StreamRecord {
        record_type: RecordType::Control,
        block_sequence_no: None,
        dedupe_key: format!("{stream_id}/{}", control.as_str()),
        ion: envelope(stream_arn, RecordType::Control, payload)?,
    })
}

/// Fields of a journal block that a `BLOCK_SUMMARY` leaves out: the revisions become
/// `revisionSummaries`, and `catalogChanges` is a Quill extension QLDB's records never had.
const SUMMARY_EXCLUDED: [&str; 2] = ["revisions", "catalogChanges"];

fn field<'a>(s: &'a Struct, name: &str, what: &str) -> Result<&'a Element> {
    s.get(name)
        .ok_or_else(|| StreamError::MalformedBlock(format!("{what} has no {name}")))
}

fn text<'a>(s: &'a Struct, name: &str, what: &str) -> Result<&'a str> {
    field(s, name, what)?
        .as_text()
        .ok_or_else(|| StreamError::MalformedBlock(format!("{what}.{name} is not text")))
}

fn int(s: &Struct, name: &str, what: &str) -> Result<u64> {
    field(s, name, what)?
        .as_i64()
        .filter(|n| *n >= 0)
        .map(|n| n as u64)
        .ok_or_else(|| StreamError::MalformedBlock(format!("{what}.{name} is not an int >= 0")))
}

/// The block's sequence number and timestamp (ms since the epoch).
pub fn block_position(block: &Element) -> Result<(u64, i64)> {
    let block = block
        .as_struct()
        .ok_or_else(|| StreamError::MalformedBlock("block is not a struct".into()))?;
    let address = field(block, "blockAddress", "block")?
        .as_struct()
        .ok_or_else(|| StreamError::MalformedBlock("blockAddress is not a struct".into()))?;
    let sequence_no = int(address, "sequenceNo", "blockAddress")?;
    let timestamp = field(block, "blockTimestamp", "block")?
        .as_timestamp()
        .ok_or_else(|| StreamError::MalformedBlock("blockTimestamp is not a timestamp".into()))?;
    Ok((sequence_no, quill_ledger::millis_from_timestamp(&timestamp)))
}

/// The records of one block: its `BLOCK_SUMMARY`, then one `REVISION_DETAILS` per revision.
pub fn block_records(stream_arn: &str, block: &Element) -> Result<Vec<StreamRecord>> {
    let (sequence_no, _) = block_position(block)?;
    let fields = block
        .as_struct()
        .expect("block_position checked the struct");
    let address = field(fields, "blockAddress", "block")?
        .as_struct()
        .expect("block_position checked the address");
    let strand_id = text(address, "strandId", "blockAddress")?;
    let documents = field(fields, "transactionInfo", "block")?
        .as_struct()
        .and_then(|info| info.get("documents"))
        .and_then(Element::as_struct);

    let revisions: Vec<&Element> = match fields.get("revisions") {
        Some(list) => list
            .as_sequence()
            .ok_or_else(|| StreamError::MalformedBlock("revisions is not a list".into()))?
            .elements()
            .collect(),
        None => Vec::new(),
    };
    // Hash-only entries (no metadata) are system entries: QLDB streams user revisions only.
    let mut details = Vec::with_capacity(revisions.len());
    let mut summaries = Vec::with_capacity(revisions.len());
    for revision in revisions {
        let r = revision
            .as_struct()
            .ok_or_else(|| StreamError::MalformedBlock("revision is not a struct".into()))?;
        let Some(metadata) = r.get("metadata").and_then(Element::as_struct) else {
            continue;
        };
        let document_id = text(metadata, "id", "revision.metadata")?;
        let version = int(metadata, "version", "revision.metadata")?;
        let hash = field(r, "hash", "revision")?.clone();
        let table = documents
            .and_then(|d| d.get(document_id))
            .and_then(Element::as_struct)
            .ok_or_else(|| {
                StreamError::MalformedBlock(format!(
                    "transactionInfo.documents has no entry for {document_id}"
                ))
            })?;
        let table_info: Element = Element::struct_builder()
            .with_field(
                "tableName",
                Element::string(text(table, "tableName", "document")?),
            )
            .with_field(
                "tableId",
                Element::string(text(table, "tableId", "document")?),
            )
            .build()
            .into();
        let payload: Element = Element::struct_builder()
            .with_field("tableInfo", table_info)
            .with_field("revision", revision.clone())
            .build()
            .into();
        details.push(StreamRecord {
            record_type: RecordType::RevisionDetails,
            block_sequence_no: Some(sequence_no),
            dedupe_key: format!("{document_id}/{version}"),
            ion: envelope(stream_arn, RecordType::RevisionDetails, payload)?,
        });
        summaries.push(Element::from(
            Element::struct_builder()
                .with_field("hash", hash)
                .with_field("documentId", Element::string(document_id))
                .build(),
        ));
    }

    let mut summary = Element::struct_builder();
    for (name, value) in fields.fields() {
        let name = name.text().unwrap_or_default();
        if !SUMMARY_EXCLUDED.contains(&name) {
            summary = summary.with_field(name, value.clone());
        }
    }
    let summary: Element = summary
        .with_field(
            "revisionSummaries",
            Element::from(ion_rs::List::from(summaries)),
        )
        .build()
        .into();
    let mut records = Vec::with_capacity(details.len() + 1);
    records.push(StreamRecord {
        record_type: RecordType::BlockSummary,
        block_sequence_no: Some(sequence_no),
        dedupe_key: format!("{strand_id}/{sequence_no}"),
        ion: envelope(stream_arn, RecordType::BlockSummary, summary)?,
    });
    records.extend(details);
    Ok(records)
}
