//! QLDB stream records, built from the journal's block structs.
//!
//! Every record is one Ion binary value `{qldbStreamArn, recordType, payload}` (QLDB Developer
//! Guide, "QLDB stream records in Kinesis"). A block becomes one `BLOCK_SUMMARY` (the block
//! without its revisions, plus `revisionSummaries`) followed by one `REVISION_DETAILS` per
//! revision (`{tableInfo, revision}`), in the block's revision order. Revision structs are
//! copied from the block as they are, so a redacted revision keeps its `dataHash` and a deletion
//! has no `data`.
//!
//! The worker builds them from the block as the journal stores it ([`StreamBlock`]): the
//! stored document and `transactionInfo` Ion is copied into the records (see the `binary`
//! module) instead of being decoded into `Element`s and encoded again, which cost as
//! much CPU as half a commit per block. [`block_records`] builds the same records from the
//! block's `Element` (GetBlock's view); the worker falls back to it for blocks the copy cannot
//! take (imported verbatim, or stored Ion of another shape).

use ion_rs::{Element, Struct};
use quill_ledger::{BlockAddress, BlockPieces, PayloadData, StoredBlock};

use crate::binary::{Field, FieldTable, StoredIon, Writer};
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

/// A block read from the journal for streaming.
// One lives at a time, briefly: boxing the common variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum StreamBlock<'a> {
    /// A block in Quill's compact frame, taken apart without decoding its Ion.
    Stored {
        stored: &'a StoredBlock,
        pieces: BlockPieces<'a>,
    },
    /// A block imported verbatim, decoded.
    Decoded(Element),
}

impl<'a> StreamBlock<'a> {
    pub fn read(stored: &'a StoredBlock) -> Result<StreamBlock<'a>> {
        Ok(match stored.pieces()? {
            Some(pieces) => StreamBlock::Stored { stored, pieces },
            None => StreamBlock::Decoded(stored.to_element()?),
        })
    }

    /// The block's timestamp, ms since the epoch.
    pub fn millis(&self) -> Result<i64> {
        match self {
            StreamBlock::Stored { pieces, .. } => Ok(pieces.header.time_millis),
            StreamBlock::Decoded(block) => Ok(block_position(block)?.1),
        }
    }

    /// The block's records, as [`block_records`] builds them from the block's `Element`.
    pub fn records(&self, stream_arn: &str) -> Result<Vec<StreamRecord>> {
        match self {
            StreamBlock::Stored { stored, pieces } => {
                match spliced_records(stream_arn, &stored.address, pieces)? {
                    Some(records) => Ok(records),
                    None => block_records(stream_arn, &stored.to_element()?),
                }
            }
            StreamBlock::Decoded(block) => block_records(stream_arn, block),
        }
    }
}

/// Opens a record and its payload: `{qldbStreamArn, recordType, payload: {`.
fn open_envelope(w: &mut Writer, stream_arn: &str, record_type: RecordType) {
    w.open();
    w.field(Field::QldbStreamArn);
    w.string(stream_arn);
    w.field(Field::RecordType);
    w.string(record_type.as_str());
    w.field(Field::Payload);
    w.open();
}

/// Closes the payload and the record.
fn close_envelope(w: &mut Writer) {
    w.close_struct();
    w.close_struct();
}

fn write_address(w: &mut Writer, address: &BlockAddress) {
    w.field(Field::BlockAddress);
    w.open();
    w.field(Field::StrandId);
    w.string(&address.strand_id);
    w.field(Field::SequenceNo);
    w.uint(address.sequence_no);
    w.close_struct();
}

/// The records of a block in the compact frame, built around its stored Ion; `None` when that
/// Ion has a shape the copy does not take.
fn spliced_records(
    stream_arn: &str,
    address: &BlockAddress,
    pieces: &BlockPieces<'_>,
) -> Result<Option<Vec<StreamRecord>>> {
    let Some(info) = StoredIon::parse(pieces.transaction_info) else {
        return Ok(None);
    };
    let Some(tables) = info.document_tables() else {
        return Ok(None);
    };
    let header = &pieces.header;
    let mut records = Vec::with_capacity(pieces.revisions.len() + 1);
    records.push(StreamRecord {
        record_type: RecordType::BlockSummary,
        block_sequence_no: Some(header.sequence_no),
        dedupe_key: format!("{}/{}", address.strand_id, header.sequence_no),
        ion: Vec::new(),
    });
    for (i, revision) in pieces.revisions.iter().enumerate() {
        let id = revision.document_id;
        // `documents` lists the revisions' documents in the revisions' order.
        let table = tables
            .get(i)
            .filter(|(document, ..)| *document == id)
            .or_else(|| tables.iter().find(|(document, ..)| *document == id));
        let Some((_, table_name, table_id)) = table else {
            return Ok(None);
        };
        let data = match revision.data {
            PayloadData::Data(bytes) => match StoredIon::parse(bytes) {
                Some(data) => Some(data),
                None => return Ok(None),
            },
            PayloadData::Redacted(_) | PayloadData::Deleted => None,
        };
        let capacity = 256 + stream_arn.len() + revision_len(revision);
        let names = match revision.data {
            PayloadData::Redacted(_) => FieldTable::RedactedRevisionDetails,
            PayloadData::Data(_) | PayloadData::Deleted => FieldTable::RevisionDetails,
        };
        let mut w = Writer::new(data.as_ref(), names, capacity);
        open_envelope(&mut w, stream_arn, RecordType::RevisionDetails);
        w.field(Field::TableInfo);
        w.open();
        w.field(Field::TableName);
        w.string(table_name);
        w.field(Field::TableId);
        w.string(table_id);
        w.close_struct();
        w.field(Field::Revision);
        w.open();
        write_address(&mut w, address);
        w.field(Field::Hash);
        w.blob(revision.hash.as_bytes());
        if let Some(data) = &data {
            w.field(Field::Data);
            w.stored(data);
        }
        if let PayloadData::Redacted(data_hash) = &revision.data {
            w.field(Field::DataHash);
            w.blob(data_hash.as_bytes());
        }
        w.field(Field::Metadata);
        w.open();
        w.field(Field::Id);
        w.string(id);
        w.field(Field::Version);
        w.uint(revision.version);
        w.field(Field::TxTime);
        w.timestamp(header.time_millis);
        w.field(Field::TxId);
        w.string(header.transaction_id);
        w.close_struct();
        w.close_struct();
        close_envelope(&mut w);
        records.push(StreamRecord {
            record_type: RecordType::RevisionDetails,
            block_sequence_no: Some(header.sequence_no),
            dedupe_key: format!("{id}/{}", revision.version),
            ion: w.finish(),
        });
    }

    let capacity =
        512 + stream_arn.len() + pieces.transaction_info.len() + 64 * pieces.revisions.len();
    let redactions = pieces.redactions(address)?;
    let names = match redactions.is_empty() {
        true => FieldTable::BlockSummary,
        false => FieldTable::RedactingBlockSummary,
    };
    let mut w = Writer::new(Some(&info), names, capacity);
    open_envelope(&mut w, stream_arn, RecordType::BlockSummary);
    write_address(&mut w, address);
    w.field(Field::TransactionId);
    w.string(header.transaction_id);
    w.field(Field::BlockTimestamp);
    w.timestamp(header.time_millis);
    w.field(Field::BlockHash);
    w.blob(header.hash.as_bytes());
    w.field(Field::EntriesHash);
    w.blob(header.entries_hash.as_bytes());
    if let Some(previous) = &header.previous_hash {
        w.field(Field::PreviousBlockHash);
        w.blob(previous.as_bytes());
    }
    w.field(Field::EntriesHashList);
    w.open();
    for entry in &header.entries {
        w.blob(entry.as_bytes());
    }
    w.close_list();
    w.field(Field::TransactionInfo);
    w.stored(&info);
    if !redactions.is_empty() {
        w.field(Field::RedactionInfo);
        w.open();
        w.field(Field::Revisions);
        w.open();
        for request in &redactions {
            w.open();
            write_address(&mut w, &request.block_address);
            w.field(Field::TableId);
            w.string(&request.table_id);
            w.field(Field::DocumentId);
            w.string(&request.document_id);
            w.field(Field::Version);
            w.uint(request.version);
            w.close_struct();
        }
        w.close_list();
        w.close_struct();
    }
    w.field(Field::RevisionSummaries);
    w.open();
    for revision in &pieces.revisions {
        w.open();
        w.field(Field::Hash);
        w.blob(revision.hash.as_bytes());
        w.field(Field::DocumentId);
        w.string(revision.document_id);
        w.close_struct();
    }
    w.close_list();
    close_envelope(&mut w);
    records[0].ion = w.finish();
    Ok(Some(records))
}

/// Bytes of a revision's stored data.
fn revision_len(revision: &quill_ledger::PayloadRevision<'_>) -> usize {
    match revision.data {
        PayloadData::Data(bytes) => bytes.len(),
        PayloadData::Redacted(_) | PayloadData::Deleted => 0,
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
