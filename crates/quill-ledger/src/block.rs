//! Journal blocks: hashing them, storing them compactly in journal frames, and rebuilding the
//! QLDB-shaped block structs from the frames.
//!
//! A block is one committed transaction:
//! `{blockAddress, transactionId, blockTimestamp, blockHash, entriesHash, previousBlockHash,
//!   entriesHashList, transactionInfo, revisions, catalogChanges}`.
//! `catalogChanges` is a Quill extension that records DDL so the catalog can be rebuilt from
//! the journal; its hash is `entriesHashList[2]` (QLDB's opaque system entry), and
//! `entriesHashList[0]` is the hash of the block header, binding address, transaction id and
//! time into the block hash (QLDB left them unbound). The rules live in `quill_verify` so a
//! client can re-check a block on its own.

use std::sync::LazyLock;

use ion_rs::{Element, Struct};
use quill_verify::{ion_hash, Hash, RevisionMetadataHasher};

use crate::catalog::CatalogChange;
use crate::clock;
use crate::error::{LedgerError, Result};
use crate::types::{BlockAddress, BlockHashes, RedactionRequest, Revision, RevisionMetadata};

/// One statement as `transactionInfo.statements` records it.
#[derive(Debug, Clone)]
pub struct StatementRecord {
    /// Exact text.
    pub text: String,
    /// When it started, ms since the epoch.
    pub start_millis: i64,
    /// `statement_digest(text, parameters)`.
    pub digest: Hash,
}

/// A revision about to be committed.
#[derive(Debug, Clone)]
pub struct RevisionDraft {
    pub table_id: String,
    pub table_name: String,
    pub document_id: String,
    pub version: u64,
    /// `None` for a delete.
    pub data: Option<Element>,
    /// `H(data)`, computed when the write was made (off the commit path).
    pub data_hash: Option<Hash>,
    /// Indexes into the transaction's statements that touched this document.
    pub statements: Vec<usize>,
    /// The data this revision replaces (`None` for a new document), as the transaction read
    /// it; OCC guarantees it is still current at commit.
    pub previous: Option<Element>,
}

/// The parts of a block that do not depend on its place in the chain (sequence number, time,
/// previous hash). The committing thread computes them, so the serial commit path does not.
#[derive(Debug, Clone)]
pub struct BlockBody {
    /// The commit time the committing thread proposed; the committer keeps it unless that
    /// would make block times go backwards.
    pub time_millis: i64,
    /// `H(metadata)` of each revision at `time_millis`, parallel to the revisions.
    pub metadata_hashes: Vec<Hash>,
    /// `transactionInfo`, as Ion binary.
    pub transaction_info_ion: Vec<u8>,
    pub transaction_info_hash: Hash,
    /// `catalogChanges`, as Ion binary.
    pub catalog_changes_ion: Vec<u8>,
    pub catalog_changes_hash: Hash,
}

/// Builds and hashes a block body, proposing `time_millis` as the commit time.
pub fn body(
    transaction_id: &str,
    time_millis: i64,
    statements: &[StatementRecord],
    revisions: &[RevisionDraft],
    catalog_changes: &[CatalogChange],
) -> Result<BlockBody> {
    let tx_time = clock::timestamp_from_millis(time_millis)?;
    let metadata = RevisionMetadataHasher::new(&tx_time, transaction_id);
    let metadata_hashes = revisions
        .iter()
        .map(|r| metadata.hash(&r.document_id, r.version))
        .collect();
    let transaction_info = transaction_info(statements, revisions)?;
    let (catalog_changes_hash, catalog_changes_ion) = if catalog_changes.is_empty() {
        // Almost every block: the empty list's hash and encoding never change.
        static NO_CHANGES: LazyLock<(Hash, Vec<u8>)> = LazyLock::new(|| {
            let empty = list([]);
            let ion = empty
                .encode_as(ion_rs::v1_0::Binary)
                .expect("an empty list encodes");
            (ion_hash(&empty), ion)
        });
        NO_CHANGES.clone()
    } else {
        let changes = list(catalog_changes.iter().map(CatalogChange::to_element));
        (ion_hash(&changes), changes.encode_as(ion_rs::v1_0::Binary)?)
    };
    Ok(BlockBody {
        time_millis,
        metadata_hashes,
        transaction_info_hash: ion_hash(&transaction_info),
        transaction_info_ion: transaction_info.encode_as(ion_rs::v1_0::Binary)?,
        catalog_changes_hash,
        catalog_changes_ion,
    })
}

/// Everything the committer knows about a block before hashing it.
pub struct BlockDraft<'a> {
    pub address: BlockAddress,
    pub transaction_id: &'a str,
    pub time_millis: i64,
    pub previous_hash: Option<Hash>,
    pub revisions: &'a [RevisionDraft],
    pub body: &'a BlockBody,
}

/// A hashed block, encoded for the journal.
pub struct BuiltBlock {
    /// The journal frame payload (see [`encode_payload`]'s byte map).
    pub payload: Vec<u8>,
    /// Its hash (the digest tree's leaf).
    pub hash: Hash,
    /// Revision hashes, parallel to the draft's revisions.
    pub revision_hashes: Vec<Hash>,
}

fn address_element(address: &BlockAddress) -> Element {
    Element::struct_builder()
        .with_field("strandId", Element::string(address.strand_id.as_str()))
        .with_field("sequenceNo", Element::int(address.sequence_no as i64))
        .build()
        .into()
}

fn metadata_element(metadata: &RevisionMetadata) -> Element {
    Element::struct_builder()
        .with_field("id", Element::string(metadata.id.as_str()))
        .with_field("version", Element::int(metadata.version as i64))
        .with_field("txTime", Element::timestamp(metadata.tx_time.clone()))
        .with_field("txId", Element::string(metadata.tx_id.as_str()))
        .build()
        .into()
}

fn list(elements: impl IntoIterator<Item = Element>) -> Element {
    Element::sequence_builder()
        .push_all(elements)
        .build_list()
        .into()
}

fn transaction_info(
    statements: &[StatementRecord],
    revisions: &[RevisionDraft],
) -> Result<Element> {
    let mut statement_elements = Vec::with_capacity(statements.len());
    for s in statements {
        statement_elements.push(Element::from(
            Element::struct_builder()
                .with_field("statement", Element::string(s.text.as_str()))
                .with_field(
                    "startTime",
                    Element::timestamp(clock::timestamp_from_millis(s.start_millis)?),
                )
                .with_field("statementDigest", Element::blob(s.digest.as_bytes()))
                .build(),
        ));
    }
    let mut documents = Element::struct_builder();
    for r in revisions {
        let doc: Element = Element::struct_builder()
            .with_field("tableName", Element::string(r.table_name.as_str()))
            .with_field("tableId", Element::string(r.table_id.as_str()))
            .with_field(
                "statements",
                list(r.statements.iter().map(|i| Element::int(*i as i64))),
            )
            .build()
            .into();
        documents = documents.with_field(r.document_id.as_str(), doc);
    }
    Ok(Element::struct_builder()
        .with_field("statements", list(statement_elements))
        .with_field("documents", Element::from(documents.build()))
        .build()
        .into())
}

/// Hashes a draft into a block and encodes it. `data_ion` holds each revision's data as Ion
/// binary (empty for a delete), parallel to `draft.revisions`.
pub fn build(
    draft: &BlockDraft<'_>,
    data_ion: &[Vec<u8>],
    header: &mut quill_verify::BlockHeaderHasher,
) -> Result<BuiltBlock> {
    assert_eq!(
        draft.revisions.len(),
        data_ion.len(),
        "one data encoding per revision"
    );
    let timestamp = clock::timestamp_from_millis(draft.time_millis)?;
    let proposed_time = draft.time_millis == draft.body.time_millis;
    let mut revision_hashes = Vec::with_capacity(draft.revisions.len());
    // Only when the block's time is not the one the body was hashed with.
    let mut retimed = None;
    for (i, r) in draft.revisions.iter().enumerate() {
        let metadata_hash = match draft.body.metadata_hashes.get(i) {
            Some(hash) if proposed_time => *hash,
            _ => retimed
                .get_or_insert_with(|| {
                    RevisionMetadataHasher::new(&timestamp, draft.transaction_id)
                })
                .hash(&r.document_id, r.version),
        };
        revision_hashes.push(match &r.data_hash {
            Some(data_hash) => quill_verify::dot(&metadata_hash, data_hash),
            None => metadata_hash,
        });
    }
    let header_hash = header.hash(draft.address.sequence_no, draft.transaction_id, &timestamp);
    let entries = quill_verify::entries_hash_list_of(
        &header_hash,
        &quill_verify::revisions_root(&revision_hashes),
        &draft.body.catalog_changes_hash,
        &draft.body.transaction_info_hash,
    );
    let entries_hash = quill_verify::entries_hash(&entries);
    let hash = quill_verify::block_hash(&entries_hash, draft.previous_hash.as_ref());
    let revisions: Vec<PayloadRevision<'_>> = draft
        .revisions
        .iter()
        .zip(&revision_hashes)
        .zip(data_ion)
        .map(|((r, hash), data)| PayloadRevision {
            hash: *hash,
            version: r.version,
            document_id: &r.document_id,
            data: match &r.data {
                Some(_) => PayloadData::Data(data),
                None => PayloadData::Deleted,
            },
        })
        .collect();
    let payload = encode_payload(
        &PayloadHeader {
            sequence_no: draft.address.sequence_no,
            time_millis: draft.time_millis,
            previous_hash: draft.previous_hash,
            hash,
            entries_hash,
            entries,
            transaction_id: draft.transaction_id,
        },
        &revisions,
        &draft.body.transaction_info_ion,
        &draft.body.catalog_changes_ion,
    );
    Ok(BuiltBlock {
        payload,
        hash,
        revision_hashes,
    })
}

// ---- journal payload -------------------------------------------------------------------------
//
// A block is stored in the journal in this compact form, from which the QLDB-shaped Ion block
// is rebuilt exactly (`DecodedBlock::to_element`). The committer writes it without encoding
// any Ion itself: documents, `transactionInfo` and `catalogChanges` arrive encoded from the
// committing threads. Byte map (little-endian):
//
// ```text
// 0         u8   PAYLOAD_FORMAT
// 1..9      u64  sequence number
// 9..17     i64  block time, ms since the epoch (UTC)
// 17        u8   flags: bit 0 = has a previous block hash
// 18..50    [32] previous block hash (zeros when absent: the genesis block)
// 50..82    [32] block hash
// 82..114   [32] entries hash
// 114..242  [32] × 4 entriesHashList
// 242       u8   transaction id length t, then t bytes (UTF-8)
// then      u32  revision count r, then r × revision:
//                [32] hash, u64 version, u8 document id length d + d bytes,
//                u32 data length + data (one Ion binary value), or u32::MAX (deleted, no
//                data), or u32::MAX - 1 then [32] dataHash (redacted: the data was erased)
// then      u32  length + transactionInfo (Ion binary)
// then      u32  length + catalogChanges (Ion binary)
// ```
//
// Format history: 1 — first format; the redacted marker was added with REDACT_REVISION (a
// reader without it fails on a redacted block with "truncated", never misreads it). Format 2
// is an imported block kept verbatim (`crate::verbatim`).

/// Version byte of the payload layout.
const PAYLOAD_FORMAT: u8 = 1;
/// Where the transaction id's length byte sits (after the fixed-size header).
const TRANSACTION_ID_OFFSET: usize = 242;
const DELETED: u32 = u32::MAX;
const REDACTED: u32 = u32::MAX - 1;

/// The fixed part of a compact journal frame.
#[derive(Debug, Clone)]
pub struct PayloadHeader<'a> {
    pub sequence_no: u64,
    pub time_millis: i64,
    pub previous_hash: Option<Hash>,
    pub hash: Hash,
    pub entries_hash: Hash,
    pub entries: [Hash; quill_verify::QUILL_ENTRIES],
    pub transaction_id: &'a str,
}

/// One revision of a compact journal frame.
#[derive(Debug, Clone)]
pub struct PayloadRevision<'a> {
    pub hash: Hash,
    pub version: u64,
    pub document_id: &'a str,
    pub data: PayloadData<'a>,
}

/// What a revision's data slot holds.
#[derive(Debug, Clone, Copy)]
pub enum PayloadData<'a> {
    /// The document (one Ion binary value).
    Data(&'a [u8]),
    /// The erased document's Ion hash (a redacted revision).
    Redacted(Hash),
    /// Nothing: the document was deleted.
    Deleted,
}

impl PayloadData<'_> {
    fn len(&self) -> usize {
        match self {
            PayloadData::Data(data) => data.len(),
            PayloadData::Redacted(_) => 32,
            PayloadData::Deleted => 0,
        }
    }
}

/// Appends one revision's data slot (see the byte map).
fn encode_data_slot(out: &mut Vec<u8>, data: &PayloadData<'_>) {
    match data {
        PayloadData::Data(data) => {
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        PayloadData::Redacted(data_hash) => {
            out.extend_from_slice(&REDACTED.to_le_bytes());
            out.extend_from_slice(data_hash.as_bytes());
        }
        PayloadData::Deleted => out.extend_from_slice(&DELETED.to_le_bytes()),
    }
}

pub(crate) fn encode_payload(
    header: &PayloadHeader<'_>,
    revisions: &[PayloadRevision<'_>],
    transaction_info: &[u8],
    catalog_changes: &[u8],
) -> Vec<u8> {
    let data_bytes: usize = revisions.iter().map(|r| r.data.len() + 64).sum();
    let mut out =
        Vec::with_capacity(300 + data_bytes + transaction_info.len() + catalog_changes.len());
    out.push(PAYLOAD_FORMAT);
    out.extend_from_slice(&header.sequence_no.to_le_bytes());
    out.extend_from_slice(&header.time_millis.to_le_bytes());
    out.push(header.previous_hash.is_some() as u8);
    out.extend_from_slice(header.previous_hash.unwrap_or(Hash([0; 32])).as_bytes());
    out.extend_from_slice(header.hash.as_bytes());
    out.extend_from_slice(header.entries_hash.as_bytes());
    for entry in &header.entries {
        out.extend_from_slice(entry.as_bytes());
    }
    // Ids are 22 bytes: the u8 lengths below cannot overflow.
    out.push(header.transaction_id.len() as u8);
    out.extend_from_slice(header.transaction_id.as_bytes());
    out.extend_from_slice(&(revisions.len() as u32).to_le_bytes());
    for r in revisions {
        out.extend_from_slice(r.hash.as_bytes());
        out.extend_from_slice(&r.version.to_le_bytes());
        out.push(r.document_id.len() as u8);
        out.extend_from_slice(r.document_id.as_bytes());
        encode_data_slot(&mut out, &r.data);
    }
    for section in [transaction_info, catalog_changes] {
        out.extend_from_slice(&(section.len() as u32).to_le_bytes());
        out.extend_from_slice(section);
    }
    out
}

/// Bounds-checked reading of a payload; every failure is corruption of that block.
struct PayloadReader<'a> {
    bytes: &'a [u8],
    at: usize,
    address: &'a BlockAddress,
}

impl<'a> PayloadReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| {
            corrupt(
                self.address,
                format!("block payload truncated at byte {}", self.at),
            )
        })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn hash(&mut self) -> Result<Hash> {
        Ok(Hash::from_slice(self.take(32)?).expect("32 bytes"))
    }
    /// The compact frame's sequence number (checked against the address), block time and
    /// hashes, which come first.
    fn chain_header(&mut self) -> Result<(i64, BlockHashes)> {
        let sequence_no = self.u64()?;
        if sequence_no != self.address.sequence_no {
            return Err(corrupt(
                self.address,
                format!("block claims sequenceNo {sequence_no}"),
            ));
        }
        let time_millis = self.u64()? as i64;
        let has_previous = self.u8()? & 1 == 1;
        let previous = self.hash()?;
        let hashes = BlockHashes {
            hash: self.hash()?,
            entries_hash: self.hash()?,
            previous_hash: has_previous.then_some(previous),
        };
        Ok((time_millis, hashes))
    }
    fn text(&mut self, len: usize) -> Result<&'a str> {
        let address = self.address;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| corrupt(address, "block payload holds invalid UTF-8"))
    }
}

/// A block read back from the journal.
#[derive(Debug, Clone)]
pub struct DecodedBlock {
    pub address: BlockAddress,
    pub transaction_id: String,
    pub time_millis: i64,
    pub hash: Hash,
    pub entries_hash: Hash,
    pub entries: Vec<Hash>,
    pub previous_hash: Option<Hash>,
    /// (table id, revision).
    pub revisions: Vec<(String, Revision)>,
    /// Each revision's data as stored (Ion binary; empty for a delete or a redacted
    /// revision), parallel to `revisions`.
    pub data_ion: Vec<Vec<u8>>,
    pub transaction_info: Element,
    pub catalog_changes_element: Element,
    pub catalog_changes: Vec<CatalogChange>,
    /// The block as imported, for a block QLDB wrote (kept verbatim, see
    /// [`crate::verbatim`]); `None` for a block in Quill's compact frame.
    pub original: Option<Element>,
}

pub(crate) fn corrupt(address: &BlockAddress, detail: impl Into<String>) -> LedgerError {
    LedgerError::Corrupted {
        block_address: address.clone(),
        detail: detail.into(),
    }
}

/// The table of document `id`, from the block's `transactionInfo.documents` (both journal
/// payload layouts carry it there).
pub(crate) fn document_table_id(
    documents: Option<&Struct>,
    id: &str,
    address: &BlockAddress,
) -> Result<String> {
    documents
        .and_then(|d| d.get(id))
        .and_then(Element::as_struct)
        .and_then(|d| d.get("tableId"))
        .and_then(Element::as_text)
        .map(str::to_owned)
        .ok_or_else(|| {
            corrupt(
                address,
                format!("document {id} missing from transactionInfo"),
            )
        })
}

/// The hashes of the block stored as `bytes` (a journal payload), without decoding its
/// documents: the transparency log reads every block for them alone.
pub fn decode_hashes(bytes: &[u8], address: &BlockAddress) -> Result<BlockHashes> {
    let mut r = PayloadReader {
        bytes,
        at: 0,
        address,
    };
    if r.u8()? != PAYLOAD_FORMAT {
        // A verbatim block has no fixed header (and an unknown format is refused there).
        let block = decode_payload(bytes, address)?;
        return Ok(BlockHashes {
            hash: block.hash,
            entries_hash: block.entries_hash,
            previous_hash: block.previous_hash,
        });
    }
    Ok(r.chain_header()?.1)
}

/// A block's parts as its compact journal frame stores them, borrowed from the payload and
/// not decoded (the inverse of the frame's encoding): for readers that re-emit blocks, such as
/// journal streams, by copying the stored Ion instead of decoding and re-encoding it. Each Ion
/// part (a revision's data, `transaction_info`, `catalog_changes`) is one Ion binary stream as
/// ion-rs wrote it: the version marker, any local symbol tables, then one value.
#[derive(Debug, Clone)]
pub struct BlockPieces<'a> {
    pub header: PayloadHeader<'a>,
    pub revisions: Vec<PayloadRevision<'a>>,
    pub transaction_info: &'a [u8],
    pub catalog_changes: &'a [u8],
}

/// `catalogChanges` with no change, as ion-rs encodes it: most blocks'.
const EMPTY_LIST_ION: [u8; 5] = [0xE0, 0x01, 0x00, 0xEA, 0xB0];

impl BlockPieces<'_> {
    /// The revision redactions this block requests (what GetBlock shows as `redactionInfo`),
    /// decoding `catalogChanges` only when it is not empty.
    pub fn redactions(&self, address: &BlockAddress) -> Result<Vec<RedactionRequest>> {
        if self.catalog_changes == EMPTY_LIST_ION {
            return Ok(Vec::new());
        }
        let (_, changes) = decode_catalog_changes(self.catalog_changes, address)?;
        Ok(redaction_requests(&changes).cloned().collect())
    }
}

fn redaction_requests(changes: &[CatalogChange]) -> impl Iterator<Item = &RedactionRequest> {
    changes.iter().filter_map(|change| match change {
        CatalogChange::RedactRevision(request) => Some(request),
        _ => None,
    })
}

fn decode_ion(bytes: &[u8], what: &str, address: &BlockAddress) -> Result<Element> {
    Element::read_one(bytes).map_err(|e| corrupt(address, format!("{what} is not Ion: {e}")))
}

fn decode_catalog_changes(
    bytes: &[u8],
    address: &BlockAddress,
) -> Result<(Element, Vec<CatalogChange>)> {
    let element = decode_ion(bytes, "catalogChanges", address)?;
    let changes = element
        .as_sequence()
        .ok_or_else(|| corrupt(address, "catalogChanges is not a list"))?
        .elements()
        .map(CatalogChange::from_element)
        .collect::<Result<Vec<_>>>()
        .map_err(|e| corrupt(address, e.to_string()))?;
    Ok((element, changes))
}

/// Splits a journal payload written by [`build`] for the block at `address` into its parts
/// without decoding any Ion; `None` for a block kept verbatim (see [`crate::verbatim`]).
pub fn payload_pieces<'a>(
    bytes: &'a [u8],
    address: &'a BlockAddress,
) -> Result<Option<BlockPieces<'a>>> {
    let mut r = PayloadReader {
        bytes,
        at: 0,
        address,
    };
    let format = r.u8()?;
    if format == crate::verbatim::VERBATIM_FORMAT {
        return Ok(None);
    }
    if format != PAYLOAD_FORMAT {
        return Err(corrupt(
            address,
            format!("unknown block payload format {format}"),
        ));
    }
    let (time_millis, hashes) = r.chain_header()?;
    let mut entries = [Hash([0; 32]); quill_verify::QUILL_ENTRIES];
    for entry in &mut entries {
        *entry = r.hash()?;
    }
    let id_len = r.u8()? as usize;
    let transaction_id = r.text(id_len)?;
    let count = r.u32()? as usize;
    // Each revision takes at least 45 bytes: a count beyond that is corruption, not an allocation.
    if count > bytes.len() / 45 {
        return Err(corrupt(address, format!("block claims {count} revisions")));
    }
    let mut revisions = Vec::with_capacity(count);
    for _ in 0..count {
        let hash = r.hash()?;
        let version = r.u64()?;
        let id_len = r.u8()? as usize;
        let document_id = r.text(id_len)?;
        let data = match r.u32()? {
            DELETED => PayloadData::Deleted,
            REDACTED => PayloadData::Redacted(r.hash()?),
            len => PayloadData::Data(r.take(len as usize)?),
        };
        revisions.push(PayloadRevision {
            hash,
            version,
            document_id,
            data,
        });
    }
    let len = r.u32()? as usize;
    let transaction_info = r.take(len)?;
    let len = r.u32()? as usize;
    let catalog_changes = r.take(len)?;
    if r.at != bytes.len() {
        return Err(corrupt(address, "trailing bytes after the block payload"));
    }
    Ok(Some(BlockPieces {
        header: PayloadHeader {
            sequence_no: address.sequence_no,
            time_millis,
            previous_hash: hashes.previous_hash,
            hash: hashes.hash,
            entries_hash: hashes.entries_hash,
            entries,
            transaction_id,
        },
        revisions,
        transaction_info,
        catalog_changes,
    }))
}

/// Parses a journal payload written by [`build`] for the block at `address`.
pub fn decode_payload(bytes: &[u8], address: &BlockAddress) -> Result<DecodedBlock> {
    let Some(pieces) = payload_pieces(bytes, address)? else {
        return crate::verbatim::decode(bytes, address);
    };
    let header = &pieces.header;
    let tx_time = clock::timestamp_from_millis(header.time_millis)?;
    let transaction_info = decode_ion(pieces.transaction_info, "transactionInfo", address)?;
    let (catalog_changes_element, catalog_changes) =
        decode_catalog_changes(pieces.catalog_changes, address)?;
    let documents = transaction_info
        .as_struct()
        .and_then(|t| t.get("documents"))
        .and_then(Element::as_struct)
        .ok_or_else(|| corrupt(address, "transactionInfo lacks documents"))?;
    let mut revisions = Vec::with_capacity(pieces.revisions.len());
    let mut data_ion = Vec::with_capacity(pieces.revisions.len());
    for stored in &pieces.revisions {
        let id = stored.document_id;
        let table_id = document_table_id(Some(documents), id, address)?;
        let (bytes, data, data_hash) = match stored.data {
            PayloadData::Data(bytes) => (
                bytes.to_vec(),
                Some(decode_ion(bytes, "document data", address)?),
                None,
            ),
            PayloadData::Redacted(data_hash) => (Vec::new(), None, Some(data_hash)),
            PayloadData::Deleted => (Vec::new(), None, None),
        };
        let metadata = RevisionMetadata {
            id: id.to_owned(),
            version: stored.version,
            tx_time: tx_time.clone(),
            tx_id: header.transaction_id.to_owned(),
        };
        revisions.push((
            table_id,
            Revision {
                block_address: address.clone(),
                hash: stored.hash,
                data,
                data_hash,
                metadata,
            },
        ));
        data_ion.push(bytes);
    }
    Ok(DecodedBlock {
        address: address.clone(),
        transaction_id: header.transaction_id.to_owned(),
        time_millis: header.time_millis,
        hash: header.hash,
        entries_hash: header.entries_hash,
        entries: header.entries.to_vec(),
        previous_hash: header.previous_hash,
        revisions,
        data_ion,
        transaction_info,
        catalog_changes_element,
        catalog_changes,
        original: None,
    })
}

/// A block's journal payload as stored, for readers that take it apart themselves
/// ([`Ledger::stored_blocks`](crate::Ledger::stored_blocks)).
#[derive(Debug, Clone)]
pub struct StoredBlock {
    pub address: BlockAddress,
    pub payload: Vec<u8>,
}

impl StoredBlock {
    /// The parts of a block in Quill's compact frame; `None` for a block imported verbatim
    /// (read it with [`StoredBlock::to_element`]).
    pub fn pieces(&self) -> Result<Option<BlockPieces<'_>>> {
        payload_pieces(&self.payload, &self.address)
    }

    /// The block as QLDB shows it, as [`Ledger::block`](crate::Ledger::block) returns it.
    pub fn to_element(&self) -> Result<Element> {
        decode_payload(&self.payload, &self.address)?.to_element()
    }
}

impl DecodedBlock {
    /// The block as QLDB shows it (GetBlock): `{blockAddress, transactionId, blockTimestamp,
    /// blockHash, entriesHash, previousBlockHash, entriesHashList, transactionInfo, revisions,
    /// catalogChanges}`.
    pub fn to_element(&self) -> Result<Element> {
        if let Some(original) = &self.original {
            return Ok(original.clone());
        }
        let timestamp = clock::timestamp_from_millis(self.time_millis)?;
        let mut b = Element::struct_builder()
            .with_field("blockAddress", address_element(&self.address))
            .with_field(
                "transactionId",
                Element::string(self.transaction_id.as_str()),
            )
            .with_field("blockTimestamp", Element::timestamp(timestamp))
            .with_field("blockHash", Element::blob(self.hash.as_bytes()))
            .with_field("entriesHash", Element::blob(self.entries_hash.as_bytes()));
        if let Some(previous) = &self.previous_hash {
            b = b.with_field("previousBlockHash", Element::blob(previous.as_bytes()));
        }
        Ok(b.with_field(
            "entriesHashList",
            list(self.entries.iter().map(|e| Element::blob(e.as_bytes()))),
        ))
        .map(|b| {
            let b = b.with_field("transactionInfo", self.transaction_info.clone());
            let redactions: Vec<Element> = redaction_requests(&self.catalog_changes)
                .map(RedactionRequest::to_element)
                .collect();
            let b = if redactions.is_empty() {
                b
            } else {
                // QLDB's shape; derived from `catalogChanges`, which the block hash covers.
                let info = Element::struct_builder().with_field("revisions", list(redactions));
                b.with_field("redactionInfo", Element::from(info.build()))
            };
            b.with_field(
                "revisions",
                list(self.revisions.iter().map(|(_, r)| r.to_element())),
            )
            .with_field("catalogChanges", self.catalog_changes_element.clone())
            .build()
            .into()
        })
    }
}

/// The payload of block `address` with the data of `document_id`'s revision replaced by its
/// Ion hash (the redacted form; every hash the block carries is unchanged, as the block hash
/// is computed from revision hashes). All other bytes are copied as they are. `None` when
/// that revision holds no data (already redacted, or a deletion).
pub fn redact_payload(
    bytes: &[u8],
    address: &BlockAddress,
    document_id: &str,
) -> Result<Option<Vec<u8>>> {
    // Checks the whole payload first: only a block that decodes is rewritten.
    decode_payload(bytes, address)?;
    if bytes.first() == Some(&crate::verbatim::VERBATIM_FORMAT) {
        return crate::verbatim::redact(bytes, address, document_id);
    }
    let mut r = PayloadReader {
        bytes,
        at: TRANSACTION_ID_OFFSET,
        address,
    };
    let id_len = r.u8()? as usize;
    r.take(id_len)?;
    let count = r.u32()?;
    for _ in 0..count {
        r.take(32 + 8)?;
        let id_len = r.u8()? as usize;
        let id = r.text(id_len)?;
        let slot_start = r.at;
        let data = match r.u32()? {
            DELETED => None,
            REDACTED => {
                r.hash()?;
                None
            }
            len => Some(decode_ion(r.take(len as usize)?, "document data", address)?),
        };
        if id != document_id {
            continue;
        }
        let Some(data) = data else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(bytes.len());
        out.extend_from_slice(&bytes[..slot_start]);
        out.extend_from_slice(&REDACTED.to_le_bytes());
        out.extend_from_slice(ion_hash(&data).as_bytes());
        out.extend_from_slice(&bytes[r.at..]);
        return Ok(Some(out));
    }
    Err(no_revision_of(address, document_id))
}

/// The error for a redaction naming a document with no revision in the block.
pub(crate) fn no_revision_of(address: &BlockAddress, document_id: &str) -> LedgerError {
    LedgerError::UnknownDocument(format!(
        "{document_id} has no revision in block {}",
        address.sequence_no
    ))
}

impl Revision {
    /// The Ion struct QLDB shows for a revision (committed view, history, GetRevision):
    /// `{blockAddress, hash, data, metadata}` (no `data` for a deletion).
    pub fn to_element(&self) -> Element {
        let mut b = Element::struct_builder()
            .with_field("blockAddress", address_element(&self.block_address))
            .with_field("hash", Element::blob(self.hash.as_bytes()));
        if let Some(data) = &self.data {
            b = b.with_field("data", data.clone());
        }
        if let Some(data_hash) = &self.data_hash {
            b = b.with_field("dataHash", Element::blob(data_hash.as_bytes()));
        }
        b.with_field("metadata", metadata_element(&self.metadata))
            .build()
            .into()
    }
}

impl BlockAddress {
    /// `{strandId: "...", sequenceNo: N}`.
    pub fn to_element(&self) -> Element {
        address_element(self)
    }

    /// Ion text as the control plane carries it: `{strandId:"…",sequenceNo:N}`.
    pub fn to_ion_text(&self) -> String {
        format!(
            "{{strandId:\"{}\",sequenceNo:{}}}",
            self.strand_id, self.sequence_no
        )
    }

    /// Parses Ion text or an Ion struct holding `strandId` and `sequenceNo`.
    pub fn from_ion_text(text: &str) -> Result<BlockAddress> {
        let element = Element::read_one(text.as_bytes())
            .map_err(|e| LedgerError::InvalidInput(format!("block address is not Ion: {e}")))?;
        BlockAddress::from_element(&element)
    }

    /// Parses an Ion struct holding `strandId` and `sequenceNo`.
    pub fn from_element(element: &Element) -> Result<BlockAddress> {
        let invalid = || {
            LedgerError::InvalidInput(
                "block address must be {strandId: string, sequenceNo: int >= 0}".into(),
            )
        };
        let s = element.as_struct().ok_or_else(invalid)?;
        Ok(BlockAddress {
            strand_id: s
                .get("strandId")
                .and_then(Element::as_text)
                .ok_or_else(invalid)?
                .to_owned(),
            sequence_no: s
                .get("sequenceNo")
                .and_then(Element::as_i64)
                .filter(|n| *n >= 0)
                .ok_or_else(invalid)? as u64,
        })
    }
}

impl RedactionRequest {
    /// The fields of `{blockAddress, tableId, documentId, version}`, in that order.
    pub fn fields(&self) -> [(&'static str, Element); 4] {
        [
            ("blockAddress", address_element(&self.block_address)),
            ("tableId", Element::string(self.table_id.as_str())),
            ("documentId", Element::string(self.document_id.as_str())),
            ("version", Element::int(self.version as i64)),
        ]
    }

    /// QLDB's REDACT_REVISION result document and `redactionInfo.revisions` entry.
    pub fn to_element(&self) -> Element {
        self.fields()
            .into_iter()
            .fold(Element::struct_builder(), |b, (name, value)| {
                b.with_field(name, value)
            })
            .build()
            .into()
    }
}

impl RevisionMetadata {
    /// `{id, version, txTime, txId}`.
    pub fn to_element(&self) -> Element {
        metadata_element(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// The commit path's metadata hashes equal the Ion-value path's, escapes included.
        #[test]
        fn metadata_hashes_equal_the_ion_value_path(
            id in "[A-Za-z0-9\u{b}\u{c}\u{e}]{1,30}",
            tx in "[A-Za-z0-9\u{b}\u{e}]{1,30}",
            version in proptest::prop_oneof![0u64..300, 0u64..(1u64 << 40), 0x0B0C0E_u64..0x0B0C0F, (1u64 << 62)..(1u64 << 62) + 5],
            millis in 0i64..4_102_444_800_000,
        ) {
            let tx_time = clock::timestamp_from_millis(millis).unwrap();
            let expected = ion_hash(&metadata_element(&RevisionMetadata {
                id: id.clone(),
                version,
                tx_time: tx_time.clone(),
                tx_id: tx.clone(),
            }));
            proptest::prop_assert_eq!(RevisionMetadataHasher::new(&tx_time, &tx).hash(&id, version), expected);
        }
    }

    #[test]
    fn a_block_without_catalog_changes_hashes_and_encodes_the_empty_list() {
        let built = body("tx", 1_700_000_000_000, &[], &[], &[]).unwrap();
        let empty = list([]);
        assert_eq!(built.catalog_changes_hash, ion_hash(&empty));
        assert_eq!(
            built.catalog_changes_ion,
            empty.encode_as(ion_rs::v1_0::Binary).unwrap()
        );
    }

    fn sample() -> (BuiltBlock, BlockAddress) {
        sample_at(1_568_662_625_344)
    }

    /// The sample block, committed at `block_millis` (its body hashed at ..344).
    fn sample_at(block_millis: i64) -> (BuiltBlock, BlockAddress) {
        let data = Element::read_one(&b"{VIN: \"1N4AL11D75C109151\", price: 90.25}"[..]).unwrap();
        let revisions = vec![
            RevisionDraft {
                table_id: "T".repeat(22),
                table_name: "Vehicle".into(),
                document_id: "D".repeat(22),
                version: 3,
                data_hash: Some(ion_hash(&data)),
                data: Some(data.clone()),
                statements: vec![0],
                previous: None,
            },
            RevisionDraft {
                table_id: "T".repeat(22),
                table_name: "Vehicle".into(),
                document_id: "E".repeat(22),
                version: 1,
                data: None,
                data_hash: None,
                statements: vec![0],
                previous: None,
            },
        ];
        let statements = [StatementRecord {
            text: "UPDATE Vehicle SET price = 90.25".into(),
            start_millis: 1_568_662_625_300,
            digest: Hash([1; 32]),
        }];
        let tx = "X".repeat(22);
        let body = body(&tx, 1_568_662_625_344, &statements, &revisions, &[]).unwrap();
        let address = BlockAddress {
            strand_id: "S".repeat(22),
            sequence_no: 7,
        };
        let data_ion = vec![data.encode_as(ion_rs::v1_0::Binary).unwrap(), Vec::new()];
        let draft = BlockDraft {
            address: address.clone(),
            transaction_id: &tx,
            time_millis: block_millis,
            previous_hash: Some(Hash([9; 32])),
            revisions: &revisions,
            body: &body,
        };
        let mut header = quill_verify::BlockHeaderHasher::new(&address.strand_id);
        (build(&draft, &data_ion, &mut header).unwrap(), address)
    }

    #[test]
    fn payload_round_trips_to_a_block_that_verifies() {
        let (built, address) = sample();
        let decoded = decode_payload(&built.payload, &address).unwrap();
        assert_eq!(decoded.hash, built.hash);
        assert_eq!(decoded.revisions.len(), 2);
        assert!(decoded.revisions[1].1.data.is_none());
        let element = decoded.to_element().unwrap();
        assert_eq!(
            quill_verify::verify_quill_block(&element).unwrap(),
            built.hash
        );
        for (i, (_, revision)) in decoded.revisions.iter().enumerate() {
            assert_eq!(revision.hash, built.revision_hashes[i]);
        }
    }

    #[test]
    fn a_block_committed_later_than_its_body_was_hashed_verifies() {
        // The committer's clock may be ahead of the body's: the metadata is hashed again.
        let (built, address) = sample_at(1_568_662_626_000);
        let (on_time, _) = sample();
        assert_ne!(built.revision_hashes, on_time.revision_hashes);
        let element = decode_payload(&built.payload, &address)
            .unwrap()
            .to_element()
            .unwrap();
        assert_eq!(
            quill_verify::verify_quill_block(&element).unwrap(),
            built.hash
        );
    }

    #[test]
    fn damaged_payloads_are_corruption_not_panics() {
        let (built, address) = sample();
        for cut in [0, 1, 17, 100, 242, built.payload.len() - 1] {
            let err = decode_payload(&built.payload[..cut], &address).unwrap_err();
            assert!(
                matches!(err, LedgerError::Corrupted { .. }),
                "cut at {cut}: {err}"
            );
        }
        let mut longer = built.payload.clone();
        longer.push(0);
        assert!(decode_payload(&longer, &address).is_err());
        let elsewhere = BlockAddress {
            sequence_no: 8,
            ..address
        };
        assert!(decode_payload(&built.payload, &elsewhere).is_err());
    }

    #[test]
    fn redacting_a_payload_changes_only_the_data_slot() {
        let (built, address) = sample();
        let document = "D".repeat(22);
        let redacted = redact_payload(&built.payload, &address, &document)
            .unwrap()
            .unwrap();
        let decoded = decode_payload(&redacted, &address).unwrap();
        let original = decode_payload(&built.payload, &address).unwrap();
        let (_, revision) = &decoded.revisions[0];
        assert_eq!(revision.data, None);
        assert_eq!(
            revision.data_hash,
            Some(ion_hash(original.revisions[0].1.data.as_ref().unwrap()))
        );
        assert_eq!(revision.hash, original.revisions[0].1.hash);
        assert_eq!(decoded.revisions[1], original.revisions[1]);
        let element = decoded.to_element().unwrap();
        assert!(element.to_string().contains("dataHash"));
        assert_eq!(
            quill_verify::verify_quill_block(&element).unwrap(),
            built.hash
        );
        // Already redacted, or a deletion: nothing left to erase.
        assert!(redact_payload(&redacted, &address, &document)
            .unwrap()
            .is_none());
        assert!(redact_payload(&built.payload, &address, &"E".repeat(22))
            .unwrap()
            .is_none());
        assert!(matches!(
            redact_payload(&built.payload, &address, &"F".repeat(22)),
            Err(LedgerError::UnknownDocument(_))
        ));
    }

    #[test]
    fn redaction_requests_render_as_redaction_info() {
        let request = RedactionRequest {
            block_address: BlockAddress {
                strand_id: "S".repeat(22),
                sequence_no: 3,
            },
            table_id: "T".repeat(22),
            document_id: "D".repeat(22),
            version: 0,
        };
        let change = CatalogChange::RedactRevision(request.clone());
        assert_eq!(
            CatalogChange::from_element(&change.to_element()).unwrap(),
            change
        );
        let transaction_info = Element::read_one("{statements: [], documents: {}}").unwrap();
        let catalog_changes_element = list([change.to_element()]);
        let block = DecodedBlock {
            address: request.block_address.clone(),
            transaction_id: "X".repeat(22),
            time_millis: 0,
            hash: Hash([0; 32]),
            entries_hash: Hash([0; 32]),
            entries: Vec::new(),
            previous_hash: None,
            revisions: Vec::new(),
            data_ion: Vec::new(),
            transaction_info,
            catalog_changes_element,
            catalog_changes: vec![change],
            original: None,
        };
        let element = block.to_element().unwrap();
        let info = element.as_struct().unwrap().get("redactionInfo").unwrap();
        let expected = format!("{{revisions: [{}]}}", request.to_element());
        assert_eq!(info, &Element::read_one(expected.as_bytes()).unwrap());
    }
}
