//! Journal blocks: building QLDB-shaped block structs and reading them back.
//!
//! A block is one committed transaction:
//! `{blockAddress, transactionId, blockTimestamp, blockHash, entriesHash, previousBlockHash,
//!   entriesHashList, transactionInfo, revisions, catalogChanges}`.
//! `catalogChanges` is a Quill extension that records DDL so the catalog can be rebuilt from
//! the journal; its hash is `entriesHashList[2]` (QLDB's opaque system entry), and
//! `entriesHashList[0]` is the hash of the block header, binding address, transaction id and
//! time into the block hash (QLDB left them unbound). The rules live in `quill_verify` so a
//! client can re-check a block on its own.

use ion_rs::Element;
use quill_verify::{ion_hash, Hash};

use crate::catalog::CatalogChange;
use crate::clock;
use crate::error::{LedgerError, Result};
use crate::types::{BlockAddress, Revision, RevisionMetadata};

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
}

impl RevisionDraft {
    fn metadata(&self, tx_time: &ion_rs::Timestamp, transaction_id: &str) -> RevisionMetadata {
        RevisionMetadata {
            id: self.document_id.clone(),
            version: self.version,
            tx_time: tx_time.clone(),
            tx_id: transaction_id.to_owned(),
        }
    }
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
    pub transaction_info: Element,
    pub transaction_info_hash: Hash,
    pub catalog_changes: Element,
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
    let metadata_hashes = revisions
        .iter()
        .map(|r| ion_hash(&metadata_element(&r.metadata(&tx_time, transaction_id))))
        .collect();
    let transaction_info = transaction_info(statements, revisions)?;
    let catalog_changes = list(catalog_changes.iter().map(CatalogChange::to_element));
    Ok(BlockBody {
        time_millis,
        metadata_hashes,
        transaction_info_hash: ion_hash(&transaction_info),
        transaction_info,
        catalog_changes_hash: ion_hash(&catalog_changes),
        catalog_changes,
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

/// A hashed block.
pub struct BuiltBlock {
    /// The block struct, as GetBlock returns it.
    pub element: Element,
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

/// Hashes a draft into a block.
pub fn build(draft: &BlockDraft<'_>) -> Result<BuiltBlock> {
    let timestamp = clock::timestamp_from_millis(draft.time_millis)?;
    let address = address_element(&draft.address);
    let mut revisions = Vec::with_capacity(draft.revisions.len());
    let mut revision_hashes = Vec::with_capacity(draft.revisions.len());
    let proposed_time = draft.time_millis == draft.body.time_millis;
    for (i, r) in draft.revisions.iter().enumerate() {
        let metadata = metadata_element(&r.metadata(&timestamp, draft.transaction_id));
        let metadata_hash = match draft.body.metadata_hashes.get(i) {
            Some(hash) if proposed_time => *hash,
            _ => ion_hash(&metadata),
        };
        let hash = match &r.data_hash {
            Some(data_hash) => quill_verify::dot(&metadata_hash, data_hash),
            None => metadata_hash,
        };
        let mut b = Element::struct_builder()
            .with_field("blockAddress", address.clone())
            .with_field("hash", Element::blob(hash.as_bytes()));
        if let Some(data) = &r.data {
            b = b.with_field("data", data.clone());
        }
        revisions.push(Element::from(b.with_field("metadata", metadata).build()));
        revision_hashes.push(hash);
    }
    let header_hash = quill_verify::block_header_hash(
        &draft.address.strand_id,
        draft.address.sequence_no,
        draft.transaction_id,
        &timestamp,
    );
    let entries = quill_verify::entries_hash_list_of(
        &header_hash,
        &quill_verify::revisions_root(&revision_hashes),
        &draft.body.catalog_changes_hash,
        &draft.body.transaction_info_hash,
    );
    let entries_hash = quill_verify::entries_hash(&entries);
    let hash = quill_verify::block_hash(&entries_hash, draft.previous_hash.as_ref());
    let mut b = Element::struct_builder()
        .with_field("blockAddress", address)
        .with_field("transactionId", Element::string(draft.transaction_id))
        .with_field("blockTimestamp", Element::timestamp(timestamp))
        .with_field("blockHash", Element::blob(hash.as_bytes()))
        .with_field("entriesHash", Element::blob(entries_hash.as_bytes()));
    if let Some(previous) = &draft.previous_hash {
        b = b.with_field("previousBlockHash", Element::blob(previous.as_bytes()));
    }
    let element = b
        .with_field(
            "entriesHashList",
            list(entries.iter().map(|e| Element::blob(e.as_bytes()))),
        )
        .with_field("transactionInfo", draft.body.transaction_info.clone())
        .with_field("revisions", list(revisions))
        .with_field("catalogChanges", draft.body.catalog_changes.clone())
        .build()
        .into();
    Ok(BuiltBlock {
        element,
        hash,
        revision_hashes,
    })
}

/// A block read back from the journal, in the form derived state needs.
#[derive(Debug, Clone)]
pub struct DecodedBlock {
    pub transaction_id: String,
    pub time_millis: i64,
    pub hash: Hash,
    pub entries: Vec<Hash>,
    pub previous_hash: Option<Hash>,
    /// (table id, revision).
    pub revisions: Vec<(String, Revision)>,
    pub catalog_changes: Vec<CatalogChange>,
}

fn corrupt(address: &BlockAddress, detail: impl Into<String>) -> LedgerError {
    LedgerError::Corrupted {
        block_address: address.clone(),
        detail: detail.into(),
    }
}

fn field<'a>(s: &'a ion_rs::Struct, name: &str, address: &BlockAddress) -> Result<&'a Element> {
    s.get(name)
        .ok_or_else(|| corrupt(address, format!("block lacks {name}")))
}

fn hash_field(s: &ion_rs::Struct, name: &str, address: &BlockAddress) -> Result<Hash> {
    field(s, name, address)?
        .as_blob()
        .and_then(Hash::from_slice)
        .ok_or_else(|| corrupt(address, format!("{name} is not a 32-byte blob")))
}

/// Parses a block struct of this ledger (`address` is where the journal says it is).
pub fn decode(element: &Element, address: &BlockAddress) -> Result<DecodedBlock> {
    let s = element
        .as_struct()
        .ok_or_else(|| corrupt(address, "block is not a struct"))?;
    let stored = field(s, "blockAddress", address)?
        .as_struct()
        .ok_or_else(|| corrupt(address, "bad blockAddress"))?;
    let seq = stored.get("sequenceNo").and_then(Element::as_i64);
    if seq != Some(address.sequence_no as i64) {
        return Err(corrupt(address, format!("block claims sequenceNo {seq:?}")));
    }
    let transaction_id = field(s, "transactionId", address)?
        .as_text()
        .ok_or_else(|| corrupt(address, "bad transactionId"))?
        .to_owned();
    let timestamp = field(s, "blockTimestamp", address)?
        .as_timestamp()
        .ok_or_else(|| corrupt(address, "bad blockTimestamp"))?;
    let previous_hash = match s.get("previousBlockHash") {
        Some(_) => Some(hash_field(s, "previousBlockHash", address)?),
        None => None,
    };
    let entries = field(s, "entriesHashList", address)?
        .as_sequence()
        .ok_or_else(|| corrupt(address, "bad entriesHashList"))?
        .elements()
        .map(|e| {
            e.as_blob()
                .and_then(Hash::from_slice)
                .ok_or_else(|| corrupt(address, "bad entriesHashList entry"))
        })
        .collect::<Result<Vec<_>>>()?;
    let documents = field(s, "transactionInfo", address)?
        .as_struct()
        .and_then(|t| t.get("documents"))
        .and_then(Element::as_struct)
        .ok_or_else(|| corrupt(address, "bad transactionInfo"))?;
    let mut revisions = Vec::new();
    for r in field(s, "revisions", address)?
        .as_sequence()
        .ok_or_else(|| corrupt(address, "bad revisions"))?
        .elements()
    {
        let revision = revision_from_element(r).map_err(|e| corrupt(address, e.to_string()))?;
        let table_id = documents
            .get(revision.metadata.id.as_str())
            .and_then(Element::as_struct)
            .and_then(|d| d.get("tableId"))
            .and_then(Element::as_text)
            .ok_or_else(|| {
                corrupt(
                    address,
                    format!(
                        "document {} missing from transactionInfo",
                        revision.metadata.id
                    ),
                )
            })?;
        revisions.push((table_id.to_owned(), revision));
    }
    let catalog_changes = match s.get("catalogChanges").and_then(Element::as_sequence) {
        Some(changes) => changes
            .elements()
            .map(CatalogChange::from_element)
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(DecodedBlock {
        transaction_id,
        time_millis: clock::millis_from_timestamp(&timestamp),
        hash: hash_field(s, "blockHash", address)?,
        entries,
        previous_hash,
        revisions,
        catalog_changes,
    })
}

/// Parses a revision struct `{blockAddress, hash, data?, metadata}`.
pub fn revision_from_element(element: &Element) -> Result<Revision> {
    let bad = |what: &str| LedgerError::Storage(format!("malformed revision: {what}"));
    let s = element.as_struct().ok_or_else(|| bad("not a struct"))?;
    let address = s
        .get("blockAddress")
        .and_then(Element::as_struct)
        .ok_or_else(|| bad("blockAddress"))?;
    let block_address = BlockAddress {
        strand_id: address
            .get("strandId")
            .and_then(Element::as_text)
            .ok_or_else(|| bad("strandId"))?
            .to_owned(),
        sequence_no: address
            .get("sequenceNo")
            .and_then(Element::as_i64)
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad("sequenceNo"))? as u64,
    };
    let hash = s
        .get("hash")
        .and_then(Element::as_blob)
        .and_then(Hash::from_slice)
        .ok_or_else(|| bad("hash"))?;
    let m = s
        .get("metadata")
        .and_then(Element::as_struct)
        .ok_or_else(|| bad("metadata"))?;
    let metadata = RevisionMetadata {
        id: m
            .get("id")
            .and_then(Element::as_text)
            .ok_or_else(|| bad("metadata.id"))?
            .to_owned(),
        version: m
            .get("version")
            .and_then(Element::as_i64)
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad("metadata.version"))? as u64,
        tx_time: m
            .get("txTime")
            .and_then(Element::as_timestamp)
            .ok_or_else(|| bad("metadata.txTime"))?,
        tx_id: m
            .get("txId")
            .and_then(Element::as_text)
            .ok_or_else(|| bad("metadata.txId"))?
            .to_owned(),
    };
    Ok(Revision {
        block_address,
        hash,
        data: s.get("data").cloned(),
        metadata,
    })
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

impl RevisionMetadata {
    /// `{id, version, txTime, txId}`.
    pub fn to_element(&self) -> Element {
        metadata_element(self)
    }
}
