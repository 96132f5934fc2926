//! Checks of blocks, revisions and proofs as GetBlock / GetRevision return them (Ion values).
//!
//! QLDB's block shape: `{blockAddress:{strandId, sequenceNo}, transactionId, blockTimestamp,
//! blockHash, entriesHash, previousBlockHash, entriesHashList, transactionInfo,
//! revisions:[{blockAddress, hash, data, metadata}]}`. Quill blocks add `catalogChanges`; for
//! them [`verify_block`] also checks Quill's exact `entriesHashList` layout (see
//! [`crate::entries_hash_list`]). QLDB blocks only allow membership checks, because two of
//! their entries are opaque system hashes.

use ion_rs::{Element, Sequence, Struct};

use crate::error::check_limit;
use crate::hashes::{
    block_hash, block_header_hash, redacted_revision_hash, revision_hash, revisions_root,
    QUILL_ENTRIES,
};
use crate::limits::{
    BLOCK_REVISIONS_MAX, ENTRIES_HASHES_MAX, PROOF_HASHES_MAX, PROOF_TEXT_MAX_CHARS,
};
use crate::{ion_hash, merkle_root, verify_proof, Hash, VerifyError};

/// Checks every hash a block carries against the data it covers; returns the block hash.
///
/// Recomputes each revision's hash from its metadata and data (hash-only system revisions are
/// taken as they are), checks that the revisions root and `H(transactionInfo)` are in
/// `entriesHashList`, that `entriesHash` is the list's Merkle root and that `blockHash` is
/// `dot(entriesHash, previousBlockHash)` (`entriesHash` alone when there is no previous block).
/// A block with `catalogChanges` is a Quill block and must follow Quill's layout exactly.
pub fn verify_block(block: &Element) -> Result<Hash, VerifyError> {
    let block = as_struct(block, "block")?;
    let revision_hashes = block_revision_hashes(block)?;
    let entries = hash_list(
        required(block, "entriesHashList", "block")?,
        "entriesHashList",
    )?;
    if !revision_hashes.is_empty() {
        let root = revisions_root(&revision_hashes);
        require_member(&entries, root, "revisions root")?;
    }
    let transaction_info = optional(block, "transactionInfo");
    if let Some(info) = transaction_info {
        require_member(&entries, ion_hash(info), "transactionInfo hash")?;
    }
    let computed_entries =
        merkle_root(&entries).ok_or_else(|| wrong_type("entriesHashList", "a non-empty list"))?;
    require_equal(
        hash_field(block, "entriesHash", "block")?,
        computed_entries,
        "entriesHash",
    )?;
    let previous = optional_hash_field(block, "previousBlockHash", "block")?;
    let computed_block = block_hash(&computed_entries, previous.as_ref());
    require_equal(
        hash_field(block, "blockHash", "block")?,
        computed_block,
        "blockHash",
    )?;
    if let Some(catalog_changes) = optional(block, "catalogChanges") {
        verify_quill_layout(
            block,
            &entries,
            &revision_hashes,
            catalog_changes,
            previous.is_some(),
        )?;
    }
    Ok(computed_block)
}

/// [`verify_block`] for a block known to come from Quill: fails when `catalogChanges` is
/// absent, so removing that field cannot downgrade the check to QLDB's membership rules.
pub fn verify_quill_block(block: &Element) -> Result<Hash, VerifyError> {
    let fields = as_struct(block, "block")?;
    required(fields, "catalogChanges", "block")?;
    verify_block(block)
}

/// Checks a revision as GetRevision returns it: recomputes its hash from `metadata` and `data`
/// (or `dataHash` when redacted), compares it with its `hash` field when present, and folds
/// `proof` from it to `digest`.
pub fn verify_revision(
    revision: &Element,
    proof: &[Hash],
    digest: &Hash,
) -> Result<(), VerifyError> {
    let revision = as_struct(revision, "revision")?;
    let computed = recompute_revision_hash(revision, "revision")?;
    if let Some(stored) = optional_hash_field(revision, "hash", "revision")? {
        require_equal(stored, computed, "revision.hash")?;
    }
    verify_proof(&computed, proof, digest)
}

/// Parses `Proof.IonText`: an Ion list of 32-byte blobs, bottom to top.
pub fn parse_proof(ion_text: &str) -> Result<Vec<Hash>, VerifyError> {
    check_limit("proof text (chars)", ion_text.len(), PROOF_TEXT_MAX_CHARS)?;
    let syntax = |reason: String| VerifyError::ProofSyntax { reason };
    let value = Element::read_one(ion_text).map_err(|err| syntax(err.to_string()))?;
    if value.ion_type() != ion_rs::IonType::List {
        return Err(syntax(format!(
            "found {} instead of a list",
            value.ion_type()
        )));
    }
    let items = value
        .as_sequence()
        .ok_or_else(|| syntax("null list".to_owned()))?;
    check_limit("proof", items.len(), PROOF_HASHES_MAX)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let bytes = item
                .as_blob()
                .ok_or_else(|| syntax(format!("element {i} is not a blob")))?;
            Hash::from_slice(bytes)
                .ok_or_else(|| syntax(format!("element {i} has {} bytes, not 32", bytes.len())))
        })
        .collect()
}

/// Writes a proof as QLDB's `Proof.IonText`: `[{{base64}},{{base64}},…]`.
pub fn proof_to_ion_text(proof: &[Hash]) -> String {
    let blobs: Vec<String> = proof.iter().map(|hash| format!("{{{{{hash}}}}}")).collect();
    format!("[{}]", blobs.join(","))
}

/// The `hash` of every revision in the block's `revisions` list, each checked against its
/// data where the revision carries any.
fn block_revision_hashes(block: &Struct) -> Result<Vec<Hash>, VerifyError> {
    let Some(revisions) = optional(block, "revisions") else {
        return Ok(Vec::new());
    };
    let revisions = as_list(revisions, "revisions")?;
    check_limit("revisions", revisions.len(), BLOCK_REVISIONS_MAX)?;
    let mut hashes = Vec::with_capacity(revisions.len());
    for (i, revision) in revisions.iter().enumerate() {
        let path = format!("revisions[{i}]");
        let revision = as_struct(revision, &path)?;
        let stored = hash_field(revision, "hash", &path)?;
        // A system revision carries only its hash: it is opaque and taken as it is.
        if optional(revision, "metadata").is_some() {
            let computed = recompute_revision_hash(revision, &path)?;
            require_equal(stored, computed, &format!("{path}.hash"))?;
        }
        hashes.push(stored);
    }
    Ok(hashes)
}

/// A revision's hash from its `metadata` and its `data`, `dataHash` (redacted) or neither
/// (a deleted document's final revision).
fn recompute_revision_hash(revision: &Struct, path: &str) -> Result<Hash, VerifyError> {
    let metadata = required(revision, "metadata", path)?;
    as_struct(metadata, &format!("{path}.metadata"))?;
    if let Some(data_hash) = optional_hash_field(revision, "dataHash", path)? {
        return Ok(redacted_revision_hash(metadata, &data_hash));
    }
    Ok(revision_hash(metadata, optional(revision, "data")))
}

/// Quill's exact layout: `[H(header), revisionsRoot, H(catalogChanges), H(transactionInfo)]`,
/// and a previous block hash on every block but the genesis block.
fn verify_quill_layout(
    block: &Struct,
    entries: &[Hash],
    revision_hashes: &[Hash],
    catalog_changes: &Element,
    has_previous: bool,
) -> Result<(), VerifyError> {
    if entries.len() != QUILL_ENTRIES {
        let reason = format!(
            "entriesHashList has {} entries, not {QUILL_ENTRIES}",
            entries.len()
        );
        return Err(VerifyError::QuillLayout { reason });
    }
    as_list(catalog_changes, "catalogChanges")?;
    let address = as_struct(required(block, "blockAddress", "block")?, "blockAddress")?;
    let strand_id = string_field(address, "strandId", "blockAddress")?;
    let sequence_no = u64_field(address, "sequenceNo", "blockAddress")?;
    let transaction_id = string_field(block, "transactionId", "block")?;
    let timestamp = required(block, "blockTimestamp", "block")?
        .as_timestamp()
        .ok_or_else(|| wrong_type("blockTimestamp", "a timestamp"))?;
    if has_previous == (sequence_no == 0) {
        let reason =
            "previousBlockHash must be present on every block except sequenceNo 0".to_owned();
        return Err(VerifyError::QuillLayout { reason });
    }
    let transaction_info = required(block, "transactionInfo", "block")?;
    let expected = [
        block_header_hash(strand_id, sequence_no, transaction_id, &timestamp),
        revisions_root(revision_hashes),
        ion_hash(catalog_changes),
        ion_hash(transaction_info),
    ];
    const NAMES: [&str; QUILL_ENTRIES] = [
        "entriesHashList[0] (block header hash)",
        "entriesHashList[1] (revisions root)",
        "entriesHashList[2] (catalogChanges hash)",
        "entriesHashList[3] (transactionInfo hash)",
    ];
    for ((stored, computed), name) in entries.iter().zip(expected).zip(NAMES) {
        require_equal(*stored, computed, name)?;
    }
    check_redaction_info(block, catalog_changes)
}

/// A Quill block's `redactionInfo` (QLDB's field) is not hashed itself: it must list exactly
/// the `REDACT_REVISION` entries of `catalogChanges` (which the block hash covers), in order,
/// each without its `op` field; and be absent when there are none.
fn check_redaction_info(block: &Struct, catalog_changes: &Element) -> Result<(), VerifyError> {
    let recorded: Vec<Element> = as_list(catalog_changes, "catalogChanges")?
        .iter()
        .filter_map(Element::as_struct)
        .filter(|change| change.get("op").and_then(Element::as_string) == Some("REDACT_REVISION"))
        .map(|change| change.clone_builder().remove_field("op").build().into())
        .collect();
    let shown: Vec<Element> = match optional(block, "redactionInfo") {
        None => Vec::new(),
        Some(info) => {
            let info = as_struct(info, "redactionInfo")?;
            let revisions = required(info, "revisions", "redactionInfo")?;
            as_list(revisions, "redactionInfo.revisions")?
                .iter()
                .cloned()
                .collect()
        }
    };
    if shown != recorded {
        let reason =
            "redactionInfo does not match the REDACT_REVISION entries of catalogChanges".to_owned();
        return Err(VerifyError::QuillLayout { reason });
    }
    Ok(())
}

fn require_equal(stored: Hash, computed: Hash, field: &str) -> Result<(), VerifyError> {
    if stored != computed {
        return Err(VerifyError::HashMismatch {
            field: field.to_owned(),
            stored,
            computed,
        });
    }
    Ok(())
}

fn require_member(entries: &[Hash], hash: Hash, what: &'static str) -> Result<(), VerifyError> {
    if !entries.contains(&hash) {
        return Err(VerifyError::NotInEntriesHashList { what, hash });
    }
    Ok(())
}

fn wrong_type(field: &str, expected: &'static str) -> VerifyError {
    VerifyError::WrongType {
        field: field.to_owned(),
        expected,
    }
}

fn join(path: &str, name: &str) -> String {
    format!("{path}.{name}")
}

/// A field that is present and not an Ion null.
fn optional<'a>(parent: &'a Struct, name: &str) -> Option<&'a Element> {
    parent.get(name).filter(|value| !value.is_null())
}

fn required<'a>(parent: &'a Struct, name: &str, path: &str) -> Result<&'a Element, VerifyError> {
    optional(parent, name).ok_or_else(|| VerifyError::MissingField {
        field: join(path, name),
    })
}

fn as_struct<'a>(value: &'a Element, path: &str) -> Result<&'a Struct, VerifyError> {
    value
        .as_struct()
        .ok_or_else(|| wrong_type(path, "a struct"))
}

fn as_list<'a>(value: &'a Element, path: &str) -> Result<&'a Sequence, VerifyError> {
    match value.ion_type() {
        ion_rs::IonType::List => value
            .as_sequence()
            .ok_or_else(|| wrong_type(path, "a list")),
        _ => Err(wrong_type(path, "a list")),
    }
}

fn as_hash(value: &Element, path: &str) -> Result<Hash, VerifyError> {
    let bytes = value.as_blob().ok_or_else(|| wrong_type(path, "a blob"))?;
    Hash::from_slice(bytes).ok_or_else(|| VerifyError::BadHashLength {
        field: path.to_owned(),
        length: bytes.len(),
    })
}

fn hash_field(parent: &Struct, name: &str, path: &str) -> Result<Hash, VerifyError> {
    as_hash(required(parent, name, path)?, &join(path, name))
}

fn optional_hash_field(
    parent: &Struct,
    name: &str,
    path: &str,
) -> Result<Option<Hash>, VerifyError> {
    optional(parent, name)
        .map(|value| as_hash(value, &join(path, name)))
        .transpose()
}

fn hash_list(value: &Element, path: &str) -> Result<Vec<Hash>, VerifyError> {
    let items = as_list(value, path)?;
    check_limit("entriesHashList", items.len(), ENTRIES_HASHES_MAX)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| as_hash(item, &format!("{path}[{i}]")))
        .collect()
}

fn string_field<'a>(parent: &'a Struct, name: &str, path: &str) -> Result<&'a str, VerifyError> {
    required(parent, name, path)?
        .as_string()
        .ok_or_else(|| wrong_type(&join(path, name), "a string"))
}

fn u64_field(parent: &Struct, name: &str, path: &str) -> Result<u64, VerifyError> {
    let value = required(parent, name, path)?;
    value
        .as_int()
        .and_then(|int| int.as_u64())
        .ok_or_else(|| wrong_type(&join(path, name), "a non-negative int"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dot, entries_hash, entries_hash_list, fold, merkle_path};

    const STRAND: &str = "KmA3ZZca7vAIiJAK9S5Iwl";
    const TIME: &str = "2024-05-06T07:08:09.123Z";
    const INFO: &str = r#"{statements:[{statement:"DELETE FROM T", startTime:2024-05-06T07:08:09.100Z, statementDigest:{{jcgPX2vsOJ0waum4qmDYtn1pCAT9xKNIzA+2k4R+mxA=}}}], documents:{}}"#;

    fn ion(text: &str) -> Element {
        Element::read_one(text).unwrap()
    }

    /// A revision of document `id` as Ion text: with data, deleted (no data) or system (hash only).
    enum Rev<'a> {
        Data(&'a str, &'a str),
        Deleted(&'a str),
        System(Hash),
    }

    fn metadata(id: &str) -> String {
        format!("{{id:\"{id}\", version:2, txTime:{TIME}, txId:\"tx1\"}}")
    }

    fn revision_text(sequence_no: u64, revision: &Rev) -> (String, Hash) {
        let address = format!("{{strandId:\"{STRAND}\", sequenceNo:{sequence_no}}}");
        match revision {
            Rev::Data(id, data) => {
                let hash = revision_hash(&ion(&metadata(id)), Some(&ion(data)));
                let text = format!(
                    "{{blockAddress:{address}, hash:{{{{{hash}}}}}, data:{data}, metadata:{}}}",
                    metadata(id)
                );
                (text, hash)
            }
            Rev::Deleted(id) => {
                let hash = revision_hash(&ion(&metadata(id)), None);
                (
                    format!(
                        "{{blockAddress:{address}, hash:{{{{{hash}}}}}, metadata:{}}}",
                        metadata(id)
                    ),
                    hash,
                )
            }
            Rev::System(hash) => (format!("{{hash:{{{{{hash}}}}}}}"), *hash),
        }
    }

    /// A block built with Quill's layout rules, as Ion text.
    fn quill_block(
        sequence_no: u64,
        previous: Option<Hash>,
        revisions: &[Rev],
        catalog: &str,
    ) -> String {
        let (texts, hashes): (Vec<String>, Vec<Hash>) = revisions
            .iter()
            .map(|revision| revision_text(sequence_no, revision))
            .unzip();
        let time = ion(TIME).as_timestamp().unwrap();
        let header = block_header_hash(STRAND, sequence_no, "tx1", &time);
        let list = entries_hash_list(&header, &revisions_root(&hashes), &ion(catalog), &ion(INFO));
        let entries = entries_hash(&list);
        let block_hash = crate::block_hash(&entries, previous.as_ref());
        let previous = previous
            .map(|hash| format!("previousBlockHash:{{{{{hash}}}}},"))
            .unwrap_or_default();
        format!(
            "{{blockAddress:{{strandId:\"{STRAND}\", sequenceNo:{sequence_no}}}, transactionId:\"tx1\", \
             blockTimestamp:{TIME}, blockHash:{{{{{block_hash}}}}}, entriesHash:{{{{{entries}}}}}, {previous} \
             entriesHashList:{}, transactionInfo:{INFO}, catalogChanges:{catalog}, revisions:[{}]}}",
            proof_to_ion_text(&list),
            texts.join(","),
        )
    }

    fn standard_block() -> String {
        let revisions = [
            Rev::Data("doc1", "{name:\"a\", n:1.50}"),
            Rev::Deleted("doc2"),
            Rev::System(Hash::sha256(b"system")),
        ];
        quill_block(
            5,
            Some(Hash::sha256(b"block 4")),
            &revisions,
            "[{op:\"CREATE TABLE\", table:\"T\"}]",
        )
    }

    /// `value` with field `name` replaced (or added).
    fn replace_field(value: &Element, name: &str, new: Element) -> Element {
        let fields = value.as_struct().unwrap();
        fields
            .clone_builder()
            .remove_field(name)
            .with_field(name, new)
            .build()
            .into()
    }

    fn verify_text(text: &str) -> Result<Hash, VerifyError> {
        verify_block(&ion(text))
    }

    fn mismatch_field(result: Result<Hash, VerifyError>) -> String {
        match result {
            Err(VerifyError::HashMismatch { field, .. }) => field,
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
    }

    #[test]
    fn quill_blocks_verify() {
        let block = ion(&standard_block());
        let hash = verify_block(&block).unwrap();
        assert_eq!(
            Some(hash),
            block
                .as_struct()
                .and_then(|b| b.get("blockHash"))
                .and_then(|h| h.as_blob())
                .and_then(Hash::from_slice)
        );
        // A genesis block: no previous block hash, no revisions, no DDL.
        let genesis = quill_block(0, None, &[], "[]");
        let hash = verify_text(&genesis).unwrap();
        let entries = ion(&genesis)
            .as_struct()
            .unwrap()
            .get("entriesHash")
            .unwrap()
            .as_blob()
            .map(Hash::from_slice);
        assert_eq!(
            Some(Some(hash)),
            entries,
            "the genesis block hash is its entries hash"
        );
    }

    #[test]
    fn redaction_info_must_match_the_hashed_catalog_changes() {
        let request = r#"{blockAddress:{strandId:"KmA3ZZca7vAIiJAK9S5Iwl", sequenceNo:2}, tableId:"t", documentId:"d", version:0}"#;
        let catalog = r#"[{op:"REDACT_REVISION", blockAddress:{strandId:"KmA3ZZca7vAIiJAK9S5Iwl", sequenceNo:2}, tableId:"t", documentId:"d", version:0}]"#;
        let block = ion(&quill_block(
            5,
            Some(Hash::sha256(b"block 4")),
            &[],
            catalog,
        ));
        let with_info = |info: &str| replace_field(&block, "redactionInfo", ion(info));
        verify_block(&with_info(&format!("{{revisions:[{request}]}}"))).unwrap();
        for wrong in [
            "{revisions:[]}".to_owned(),
            format!(
                "{{revisions:[{}]}}",
                request.replace("version:0", "version:1")
            ),
            format!("{{revisions:[{request}, {request}]}}"),
        ] {
            assert!(
                matches!(
                    verify_block(&with_info(&wrong)),
                    Err(VerifyError::QuillLayout { .. })
                ),
                "{wrong}"
            );
        }
        // Missing while catalogChanges records a redaction; present without one.
        assert!(matches!(
            verify_block(&block),
            Err(VerifyError::QuillLayout { .. })
        ));
        let plain = ion(&standard_block());
        let forged = replace_field(
            &plain,
            "redactionInfo",
            ion(&format!("{{revisions:[{request}]}}")),
        );
        assert!(matches!(
            verify_block(&forged),
            Err(VerifyError::QuillLayout { .. })
        ));
    }

    #[test]
    fn changed_revision_data_is_named() {
        let text = standard_block().replace("n:1.50", "n:1.5");
        assert_eq!(mismatch_field(verify_text(&text)), "revisions[0].hash");
    }

    #[test]
    fn changed_header_fields_break_the_quill_layout() {
        let text = standard_block().replace("transactionId:\"tx1\"", "transactionId:\"tx2\"");
        assert_eq!(
            mismatch_field(verify_text(&text)),
            "entriesHashList[0] (block header hash)"
        );
        let text = standard_block().replace(
            &format!("blockTimestamp:{TIME}"),
            "blockTimestamp:2024-05-06T07:08:09.124Z",
        );
        assert_eq!(
            mismatch_field(verify_text(&text)),
            "entriesHashList[0] (block header hash)"
        );
        let text = standard_block().replace(
            "sequenceNo:5}, transactionId",
            "sequenceNo:6}, transactionId",
        );
        assert_eq!(
            mismatch_field(verify_text(&text)),
            "entriesHashList[0] (block header hash)"
        );
    }

    #[test]
    fn changed_catalog_changes_are_caught() {
        let text = standard_block().replace("table:\"T\"", "table:\"U\"");
        assert_eq!(
            mismatch_field(verify_text(&text)),
            "entriesHashList[2] (catalogChanges hash)"
        );
        let text = standard_block()
            .replace("catalogChanges:[", "catalogChanges:(")
            .replace("\"T\"}]", "\"T\"})");
        assert!(matches!(
            verify_text(&text),
            Err(VerifyError::WrongType { .. })
        ));
    }

    #[test]
    fn removed_or_reordered_revisions_are_caught() {
        let block = ion(&standard_block());
        let revisions = block
            .as_struct()
            .unwrap()
            .get("revisions")
            .unwrap()
            .as_sequence()
            .unwrap();
        let kept: Vec<Element> = revisions.iter().skip(1).cloned().collect();
        let without_first = replace_field(&block, "revisions", ion_rs::List::from(kept).into());
        let err = verify_block(&without_first).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::NotInEntriesHashList {
                    what: "revisions root",
                    ..
                }
            ),
            "{err}"
        );
        let mut reordered: Vec<Element> = revisions.iter().cloned().collect();
        reordered.swap(0, 2);
        let reordered = replace_field(&block, "revisions", ion_rs::List::from(reordered).into());
        assert!(matches!(
            verify_block(&reordered),
            Err(VerifyError::NotInEntriesHashList { .. })
        ));
    }

    #[test]
    fn previous_block_hash_is_bound() {
        let previous = format!("{{{{{}}}}}", Hash::sha256(b"block 4"));
        let text =
            standard_block().replace(&previous, &format!("{{{{{}}}}}", Hash::sha256(b"other")));
        assert_eq!(mismatch_field(verify_text(&text)), "blockHash");
        // Only block 0 may lack a previous block hash, and block 0 may not have one.
        let text = quill_block(3, None, &[], "[]");
        assert!(matches!(
            verify_text(&text),
            Err(VerifyError::QuillLayout { .. })
        ));
        let text = quill_block(0, Some(Hash::sha256(b"x")), &[], "[]");
        assert!(matches!(
            verify_text(&text),
            Err(VerifyError::QuillLayout { .. })
        ));
    }

    #[test]
    fn malformed_blocks_get_typed_errors() {
        assert!(matches!(
            verify_text("[1]"),
            Err(VerifyError::WrongType { .. })
        ));
        let block = ion(&standard_block());
        let without: Element = block
            .as_struct()
            .unwrap()
            .clone_builder()
            .remove_field("entriesHashList")
            .build()
            .into();
        assert_eq!(
            verify_block(&without),
            Err(VerifyError::MissingField {
                field: "block.entriesHashList".to_owned()
            })
        );
        let short = replace_field(&block, "blockHash", Element::blob([0u8; 3]));
        assert_eq!(
            verify_block(&short),
            Err(VerifyError::BadHashLength {
                field: "block.blockHash".to_owned(),
                length: 3
            })
        );
        let text = replace_field(
            &block,
            "entriesHash",
            Element::string("l05LOsiKV14SDbuaYnH7uwXzUvqzIwUiRLXGbTyj/nY="),
        );
        assert_eq!(
            verify_block(&text),
            Err(VerifyError::WrongType {
                field: "block.entriesHash".to_owned(),
                expected: "a blob"
            })
        );
        let empty = replace_field(&block, "entriesHashList", ion("[]"));
        assert!(matches!(
            verify_block(&empty),
            Err(VerifyError::NotInEntriesHashList { .. })
        ));
        let no_revisions: Element = block
            .as_struct()
            .unwrap()
            .clone_builder()
            .remove_field("revisions")
            .build()
            .into();
        assert!(matches!(
            verify_block(&no_revisions),
            Err(VerifyError::HashMismatch { .. })
        ));
        let system = ion(&quill_block(
            5,
            Some(Hash::sha256(b"p")),
            &[Rev::System(Hash::sha256(b"s"))],
            "[]",
        ));
        let revisions = ion("[{hash:{{AAAA}}}]");
        assert_eq!(
            verify_block(&replace_field(&system, "revisions", revisions)),
            Err(VerifyError::BadHashLength {
                field: "revisions[0].hash".to_owned(),
                length: 3
            })
        );
        let too_many = ion(&proof_to_ion_text(&vec![
            Hash::sha256(b"e");
            ENTRIES_HASHES_MAX + 1
        ]));
        assert!(matches!(
            verify_block(&replace_field(&block, "entriesHashList", too_many)),
            Err(VerifyError::LimitExceeded { .. })
        ));
    }

    #[test]
    fn quill_blocks_have_exactly_four_entries() {
        // A QLDB-style block may have any number of entries; a Quill block must have 4.
        let block = ion(&quill_block(0, None, &[], "[]"));
        let fields = block.as_struct().unwrap();
        let mut entries = parse_proof(&fields.get("entriesHashList").unwrap().to_string()).unwrap();
        entries.push(Hash::sha256(b"extra"));
        let entries_root = merkle_root(&entries).unwrap();
        let changed = replace_field(&block, "entriesHashList", ion(&proof_to_ion_text(&entries)));
        let changed = replace_field(&changed, "entriesHash", Element::blob(entries_root.0));
        let changed = replace_field(&changed, "blockHash", Element::blob(entries_root.0));
        assert!(matches!(
            verify_block(&changed),
            Err(VerifyError::QuillLayout { .. })
        ));
        // Without catalogChanges the same block is checked by QLDB's rules only, and passes.
        let qldb: Element = changed
            .as_struct()
            .unwrap()
            .clone_builder()
            .remove_field("catalogChanges")
            .build()
            .into();
        assert_eq!(verify_block(&qldb), Ok(entries_root));
        // A client that knows the block is Quill's refuses that downgrade.
        assert_eq!(
            verify_quill_block(&qldb),
            Err(VerifyError::MissingField {
                field: "block.catalogChanges".to_owned()
            })
        );
        assert!(verify_quill_block(&block).is_ok());
    }

    #[test]
    fn revision_proofs_through_a_quill_block() {
        let text = standard_block();
        let block = ion(&text);
        let fields = block.as_struct().unwrap();
        let revision = fields
            .get("revisions")
            .unwrap()
            .as_sequence()
            .unwrap()
            .get(0)
            .unwrap()
            .clone();
        let revisions: Vec<Hash> = fields
            .get("revisions")
            .unwrap()
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| {
                Hash::from_slice(
                    r.as_struct()
                        .unwrap()
                        .get("hash")
                        .unwrap()
                        .as_blob()
                        .unwrap(),
                )
                .unwrap()
            })
            .collect();
        let entries = parse_proof(&fields.get("entriesHashList").unwrap().to_string()).unwrap();
        let previous = Hash::sha256(b"block 4");
        let block_hash = verify_block(&block).unwrap();
        // GetRevision layout: revisions-tree path, entries-tree path of index 1, previous hash.
        let mut proof = merkle_path(&revisions, 0);
        proof.extend(merkle_path(&entries, 1));
        proof.push(previous);
        assert_eq!(fold(&revisions[0], &proof), block_hash);
        let digest = dot(&block_hash, &Hash::sha256(b"block 6"));
        proof.push(Hash::sha256(b"block 6"));
        verify_revision(&revision, &proof, &digest).unwrap();
        let changed = replace_field(&revision, "data", ion("{name:\"a\", n:1.500}"));
        assert_eq!(
            mismatch_field(verify_revision(&changed, &proof, &digest).map(|()| block_hash)),
            "revision.hash"
        );
        let redacted_hash = ion_hash(&ion("{name:\"a\", n:1.50}"));
        let redacted = ion(&format!(
            "{{hash:{{{{{}}}}}, dataHash:{{{{{redacted_hash}}}}}, metadata:{}}}",
            revisions[0],
            metadata("doc1")
        ));
        verify_revision(&redacted, &proof, &digest).unwrap();
        let system = ion(&format!("{{hash:{{{{{}}}}}}}", revisions[0]));
        assert_eq!(
            verify_revision(&system, &proof, &digest),
            Err(VerifyError::MissingField {
                field: "revision.metadata".to_owned()
            })
        );
    }

    #[test]
    fn proof_text_round_trips_and_rejects_bad_input() {
        let proof = vec![Hash::sha256(b"a"), Hash::sha256(b"b")];
        let text = proof_to_ion_text(&proof);
        assert_eq!(text, format!("[{{{{{}}}}},{{{{{}}}}}]", proof[0], proof[1]));
        assert_eq!(parse_proof(&text).unwrap(), proof);
        assert_eq!(parse_proof("[]").unwrap(), Vec::<Hash>::new());
        assert_eq!(proof_to_ion_text(&[]), "[]");
        for bad in [
            "",
            "[",
            "{{AAAA}}",
            "[{{AAAA}}]",
            "[\"x\"]",
            "(1)",
            "null.list",
            "[] []",
            "[{{YQ==}}]",
        ] {
            assert!(
                matches!(parse_proof(bad), Err(VerifyError::ProofSyntax { .. })),
                "{bad:?} -> {:?}",
                parse_proof(bad)
            );
        }
        let long = proof_to_ion_text(&vec![Hash::sha256(b"a"); PROOF_HASHES_MAX + 1]);
        assert!(matches!(
            parse_proof(&long),
            Err(VerifyError::LimitExceeded { .. })
        ));
        let huge = " ".repeat(PROOF_TEXT_MAX_CHARS + 1);
        assert!(matches!(
            parse_proof(&huge),
            Err(VerifyError::LimitExceeded { .. })
        ));
    }
}
