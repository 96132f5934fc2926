//! Blocks kept verbatim: imported blocks that QLDB (not Quill) wrote.
//!
//! QLDB blocks carry opaque system entries (`entriesHashList[0]` and `[2]`, hash-only system
//! revisions, possibly other list lengths) that Quill cannot recompute, so the compact frame of
//! [`crate::block`] cannot rebuild them. Such a block is stored as its exported Ion, byte for
//! byte the value it was (Ion binary), plus the catalog changes the importer inferred from it
//! (QLDB blocks record DDL only as statement text): a table is created where a revision first
//! names its table id, an index where a `CREATE INDEX ON t (f)` statement ran. Those inferred
//! changes are Quill's own bookkeeping, outside the block and its hashes. `REDACT_REVISION`
//! rewrites the kept block with `dataHash` in place of the revision's `data` ([`redact`]).
//!
//! Byte map (little-endian):
//!
//! ```text
//! 0        u8   VERBATIM_FORMAT
//! 1..9     u64  sequence number
//! then     u32  length + the block (Ion binary)
//! then     u32  length + inferred catalogChanges (Ion binary list)
//! ```

use ion_rs::Element;
use quill_verify::{ion_hash, Hash};

use crate::block::{self, corrupt, DecodedBlock};
use crate::catalog::CatalogChange;
use crate::clock;
use crate::error::Result;
use crate::types::{BlockAddress, Revision, RevisionMetadata};

/// Payload format byte of a verbatim block (the compact format is 1).
pub(crate) const VERBATIM_FORMAT: u8 = 2;

/// Encodes a verbatim payload.
pub(crate) fn encode(sequence_no: u64, block: &[u8], catalog_changes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + block.len() + catalog_changes.len());
    out.push(VERBATIM_FORMAT);
    out.extend_from_slice(&sequence_no.to_le_bytes());
    for section in [block, catalog_changes] {
        out.extend_from_slice(&(section.len() as u32).to_le_bytes());
        out.extend_from_slice(section);
    }
    out
}

fn hash_at(element: Option<&Element>) -> Option<Hash> {
    element
        .and_then(Element::as_blob)
        .and_then(Hash::from_slice)
}

/// Splits a verbatim payload into its block and catalog changes.
fn sections<'a>(bytes: &'a [u8], address: &BlockAddress) -> Result<(&'a [u8], &'a [u8])> {
    let truncated = || corrupt(address, "verbatim block payload truncated");
    let sequence_no = bytes
        .get(1..9)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(truncated)?;
    if sequence_no != address.sequence_no {
        return Err(corrupt(
            address,
            format!("block claims sequenceNo {sequence_no}"),
        ));
    }
    let mut at = 9;
    let mut section = || -> Result<&'a [u8]> {
        let len = bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(truncated)?;
        let body = bytes.get(at + 4..at + 4 + len).ok_or_else(truncated)?;
        at += 4 + len;
        Ok(body)
    };
    let block = section()?;
    let catalog = section()?;
    if at != bytes.len() {
        return Err(corrupt(address, "trailing bytes after the block payload"));
    }
    Ok((block, catalog))
}

/// Parses a verbatim payload for the block at `address`.
pub(crate) fn decode(bytes: &[u8], address: &BlockAddress) -> Result<DecodedBlock> {
    let (block_bytes, catalog_bytes) = sections(bytes, address)?;
    let original = Element::read_one(block_bytes)
        .map_err(|e| corrupt(address, format!("the block is not Ion: {e}")))?;
    let catalog_changes_element = Element::read_one(catalog_bytes)
        .map_err(|e| corrupt(address, format!("catalogChanges is not Ion: {e}")))?;
    let fields = original
        .as_struct()
        .ok_or_else(|| corrupt(address, "the block is not a struct"))?;
    if crate::import::claimed_address(&original).as_ref() != Some(address) {
        return Err(corrupt(address, "the block has another blockAddress"));
    }
    let time_millis = fields
        .get("blockTimestamp")
        .and_then(Element::as_timestamp)
        .map(|t| clock::millis_from_timestamp(&t))
        .ok_or_else(|| corrupt(address, "the block has no blockTimestamp"))?;
    let hash = hash_at(fields.get("blockHash"))
        .ok_or_else(|| corrupt(address, "the block has no blockHash"))?;
    let entries_hash = hash_at(fields.get("entriesHash"))
        .ok_or_else(|| corrupt(address, "the block has no entriesHash"))?;
    let entries = fields
        .get("entriesHashList")
        .and_then(Element::as_sequence)
        .map(|list| {
            list.elements()
                .map(|e| hash_at(Some(e)))
                .collect::<Option<Vec<_>>>()
        })
        .and_then(|entries| entries)
        .ok_or_else(|| corrupt(address, "entriesHashList is not a list of hashes"))?;
    let transaction_info = fields
        .get("transactionInfo")
        .cloned()
        .unwrap_or_else(|| Element::from(Element::struct_builder().build()));
    let documents = transaction_info
        .as_struct()
        .and_then(|t| t.get("documents"))
        .and_then(Element::as_struct);
    let mut revisions = Vec::new();
    let mut data_ion = Vec::new();
    for revision in fields
        .get("revisions")
        .and_then(Element::as_sequence)
        .map(|list| list.elements().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let Some(r) = revision.as_struct() else {
            return Err(corrupt(address, "a revision is not a struct"));
        };
        // Hash-only system revisions hold no document.
        let Some(metadata) = r.get("metadata").and_then(Element::as_struct) else {
            continue;
        };
        let bad = || corrupt(address, "a revision's metadata or hash is malformed");
        let id = metadata
            .get("id")
            .and_then(Element::as_text)
            .ok_or_else(bad)?
            .to_owned();
        let table_id = block::document_table_id(documents, &id, address)?;
        let data = r.get("data").cloned();
        data_ion.push(match &data {
            Some(d) => d.encode_as(ion_rs::v1_0::Binary)?,
            None => Vec::new(),
        });
        revisions.push((
            table_id,
            Revision {
                block_address: address.clone(),
                hash: hash_at(r.get("hash")).ok_or_else(bad)?,
                data,
                // A revision QLDB redacted carries the erased data's hash instead of the data.
                data_hash: hash_at(r.get("dataHash")),
                metadata: RevisionMetadata {
                    id,
                    version: metadata
                        .get("version")
                        .and_then(Element::as_i64)
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(bad)?,
                    tx_time: metadata
                        .get("txTime")
                        .and_then(Element::as_timestamp)
                        .ok_or_else(bad)?,
                    tx_id: metadata
                        .get("txId")
                        .and_then(Element::as_text)
                        .ok_or_else(bad)?
                        .to_owned(),
                },
            },
        ));
    }
    let catalog_changes = catalog_changes_element
        .as_sequence()
        .ok_or_else(|| corrupt(address, "catalogChanges is not a list"))?
        .elements()
        .map(CatalogChange::from_element)
        .collect::<Result<Vec<_>>>()
        .map_err(|e| corrupt(address, e.to_string()))?;
    Ok(DecodedBlock {
        address: address.clone(),
        transaction_id: fields
            .get("transactionId")
            .and_then(Element::as_text)
            .unwrap_or_default()
            .to_owned(),
        time_millis,
        hash,
        entries_hash,
        entries,
        previous_hash: hash_at(fields.get("previousBlockHash")),
        revisions,
        data_ion,
        transaction_info,
        catalog_changes_element,
        catalog_changes,
        original: Some(original),
    })
}

/// The verbatim payload of block `address` with the data of `document_id`'s revision replaced
/// by `dataHash`, its Ion hash, as QLDB shows a redacted revision. The block's hashes are
/// unchanged: QLDB computes a revision's hash from the data's hash and the metadata's, and the
/// block's from the revision hashes it already holds. `None` when that revision holds no data
/// (already redacted, or a deletion).
pub(crate) fn redact(
    bytes: &[u8],
    address: &BlockAddress,
    document_id: &str,
) -> Result<Option<Vec<u8>>> {
    let (block_bytes, catalog_bytes) = sections(bytes, address)?;
    let original = Element::read_one(block_bytes)
        .map_err(|e| corrupt(address, format!("the block is not Ion: {e}")))?;
    let fields = original
        .as_struct()
        .ok_or_else(|| corrupt(address, "the block is not a struct"))?;
    let revisions = fields
        .get("revisions")
        .and_then(Element::as_sequence)
        .ok_or_else(|| block::no_revision_of(address, document_id))?;
    let is_target = |revision: &Element| {
        revision
            .as_struct()
            .and_then(|r| r.get("metadata"))
            .and_then(Element::as_struct)
            .and_then(|m| m.get("id"))
            .and_then(Element::as_text)
            == Some(document_id)
    };
    let target = revisions
        .elements()
        .find(|r| is_target(r))
        .and_then(Element::as_struct)
        .ok_or_else(|| block::no_revision_of(address, document_id))?;
    let Some(data) = target.get("data") else {
        return Ok(None);
    };
    let data_hash = Element::blob(ion_hash(data).as_bytes());
    // Field order is kept, `dataHash` standing where `data` stood.
    let mut redacted = Element::struct_builder();
    for (name, value) in target.iter() {
        redacted = match name.text() {
            Some("data") => redacted.with_field("dataHash", data_hash.clone()),
            _ => redacted.with_field(name.clone(), value.clone()),
        };
    }
    let redacted = Element::from(redacted.build());
    let revisions = Element::sequence_builder()
        .push_all(revisions.elements().map(|r| {
            if is_target(r) {
                redacted.clone()
            } else {
                r.clone()
            }
        }))
        .build_list();
    let mut block = Element::struct_builder();
    for (name, value) in fields.iter() {
        block = match name.text() {
            Some("revisions") => block.with_field("revisions", Element::from(revisions.clone())),
            _ => block.with_field(name.clone(), value.clone()),
        };
    }
    let block = Element::from(block.build()).encode_as(ion_rs::v1_0::Binary)?;
    Ok(Some(encode(address.sequence_no, &block, catalog_bytes)))
}

/// The hashes of every revision of a verbatim block, system revisions included, in order
/// (the leaves of its revisions tree).
pub(crate) fn all_revision_hashes(original: &Element) -> Vec<Hash> {
    original
        .as_struct()
        .and_then(|b| b.get("revisions"))
        .and_then(Element::as_sequence)
        .map(|list| {
            list.elements()
                .filter_map(|r| hash_at(r.as_struct().and_then(|r| r.get("hash"))))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LedgerError;

    fn address() -> BlockAddress {
        BlockAddress {
            strand_id: "S".repeat(22),
            sequence_no: 4,
        }
    }

    fn revision_of(block: &[u8], index: usize) -> Element {
        let (block, _) = sections(block, &address()).unwrap();
        Element::read_one(block)
            .unwrap()
            .as_struct()
            .unwrap()
            .get("revisions")
            .unwrap()
            .as_sequence()
            .unwrap()
            .get(index)
            .unwrap()
            .clone()
    }

    #[test]
    fn redacting_replaces_only_the_named_revisions_data() {
        let address = address();
        let block = Element::read_one(
            "{blockHash: {{AAAA}}, revisions: [{hash: {{AQ==}}}, \
             {hash: {{Ag==}}, metadata: {id: \"Deleted\"}}, \
             {hash: {{Aw==}}, data: {a: 1}, metadata: {id: \"Kept\"}}]}",
        )
        .unwrap();
        let payload = encode(4, &block.encode_as(ion_rs::v1_0::Binary).unwrap(), &[0xe0]);
        let redacted = redact(&payload, &address, "Kept").unwrap().unwrap();
        let revision = revision_of(&redacted, 2);
        let data_hash = ion_hash(&Element::read_one("{a: 1}").unwrap());
        let expected = Element::read_one(format!(
            "{{hash: {{{{Aw==}}}}, dataHash: {{{{{}}}}}, metadata: {{id: \"Kept\"}}}}",
            data_hash.to_base64()
        ))
        .unwrap();
        assert_eq!(revision, expected);
        assert_eq!(revision_of(&redacted, 0), revision_of(&payload, 0));
        assert_eq!(revision_of(&redacted, 1), revision_of(&payload, 1));
        // Nothing left to erase: already redacted, or a deletion.
        assert_eq!(redact(&redacted, &address, "Kept").unwrap(), None);
        assert_eq!(redact(&payload, &address, "Deleted").unwrap(), None);
        assert!(matches!(
            redact(&payload, &address, "Missing"),
            Err(LedgerError::UnknownDocument(_))
        ));
    }
}
