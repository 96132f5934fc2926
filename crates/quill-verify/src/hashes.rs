//! QLDB's hash rules as functions, plus the exact block layout Quill writes.
//!
//! QLDB-compatible (VERIFIED against published vectors unless noted):
//! - [`revision_hash`]: `dot(H(metadata), H(data))`;
//! - [`statement_digest`]: `H(text)` for a statement without parameters;
//! - [`CommitDigest`]: the drivers' transaction digest (wire protocol §2);
//! - [`block_hash`]: `dot(entriesHash, previousBlockHash)`.
//!
//! Quill's own choices where QLDB's rule is unknown, documented on each function: the hash of
//! a deleted document's final revision, statement digests with parameters, the genesis block
//! hash, and the four entries of a block's `entriesHashList` ([`entries_hash_list`]).

use ion_rs::{Element, List, Timestamp};

use crate::{dot, ion_hash, merkle_path, merkle_root, Hash};

/// Number of entries in a Quill block's `entriesHashList`:
/// `[H(header), revisionsRoot, H(catalogChanges), H(transactionInfo)]`.
pub const QUILL_ENTRIES: usize = 4;

/// A revision's hash: `dot(H(metadata), H(data))`.
///
/// For a deleted document's final revision (`data` is `None`) the hash is `H(metadata)`. That
/// equals `dot(H(metadata), empty)`; it is Quill's documented choice, as QLDB's rule for
/// deletions is unknown.
pub fn revision_hash(metadata: &Element, data: Option<&Element>) -> Hash {
    let metadata_hash = ion_hash(metadata);
    match data {
        Some(data) => dot(&metadata_hash, &ion_hash(data)),
        None => metadata_hash,
    }
}

/// A redacted revision's hash: `dot(H(metadata), dataHash)`, where `dataHash` is the Ion hash
/// of the removed data, so redaction leaves the revision hash unchanged (QLDB's documented rule).
pub fn redacted_revision_hash(metadata: &Element, data_hash: &Hash) -> Hash {
    dot(&ion_hash(metadata), data_hash)
}

/// A statement's digest as recorded in `transactionInfo.statements[].statementDigest`.
///
/// `H(text as an Ion string)`, byte-exact (whitespace included), for a statement without
/// parameters. With parameters, `S = dot(S, H(p))` for each parameter in order: the drivers'
/// CommitDigest rule, Quill's documented choice since QLDB's is unknown.
pub fn statement_digest(text: &str, parameters: &[Element]) -> Hash {
    fold_statement_digest(text, parameters.iter().map(ion_hash))
}

/// [`statement_digest`] from `H(p)` of each parameter, in order, for a caller that keeps those
/// hashes (a server inserting a parameter as a document reuses its hash as the revision's
/// data hash rather than hashing the document again).
pub fn statement_digest_of_hashes(text: &str, parameter_hashes: &[Hash]) -> Hash {
    fold_statement_digest(text, parameter_hashes.iter().copied())
}

fn fold_statement_digest(text: &str, parameter_hashes: impl Iterator<Item = Hash>) -> Hash {
    let text_hash = ion_hash(&Element::string(text));
    parameter_hashes.fold(text_hash, |digest, parameter| dot(&digest, &parameter))
}

/// The transaction digest QLDB drivers send with CommitTransaction and expect back.
///
/// Starts as `H(transaction id as an Ion string)`; each statement sent (in order, including
/// ones that failed) is folded in with `D = dot(D, statement_digest(text, parameters))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitDigest {
    digest: Hash,
}

impl CommitDigest {
    /// The digest of a transaction that has sent no statement yet.
    pub fn new(transaction_id: &str) -> CommitDigest {
        CommitDigest {
            digest: ion_hash(&Element::string(transaction_id)),
        }
    }

    /// Folds in one ExecuteStatement.
    pub fn add_statement(&mut self, text: &str, parameters: &[Element]) {
        self.add_statement_digest(&statement_digest(text, parameters));
    }

    /// Folds in one ExecuteStatement whose [`statement_digest`] the caller already has (a
    /// server also records it in the transaction, and hashing the parameters twice is waste).
    pub fn add_statement_digest(&mut self, statement_digest: &Hash) {
        self.digest = dot(&self.digest, statement_digest);
    }

    /// The current digest (the `CommitDigest` to compare and return on commit).
    pub fn value(&self) -> Hash {
        self.digest
    }
}

/// The Ion struct Quill hashes into `entriesHashList[0]`:
/// `{strandId, sequenceNo, transactionId, blockTimestamp}`.
///
/// It binds the block's address, transaction id and time into the block hash, which QLDB's
/// block hash does not.
pub fn block_header(
    strand_id: &str,
    sequence_no: u64,
    transaction_id: &str,
    block_timestamp: &Timestamp,
) -> Element {
    ion_rs::ion_struct! {
        "strandId": Element::string(strand_id),
        "sequenceNo": Element::int(sequence_no),
        "transactionId": Element::string(transaction_id),
        "blockTimestamp": Element::from(block_timestamp.clone()),
    }
    .into()
}

/// `H(block_header(...))`: entry 0 of a Quill block's `entriesHashList`.
pub fn block_header_hash(
    strand_id: &str,
    sequence_no: u64,
    transaction_id: &str,
    block_timestamp: &Timestamp,
) -> Hash {
    ion_hash(&block_header(
        strand_id,
        sequence_no,
        transaction_id,
        block_timestamp,
    ))
}

/// Entry 1 of a Quill block's `entriesHashList`: `merkle_root(revision hashes)` in the order of
/// the block's `revisions` list, or `H([])` (the empty Ion list) for a block without revisions.
pub fn revisions_root(revision_hashes: &[Hash]) -> Hash {
    merkle_root(revision_hashes)
        .unwrap_or_else(|| ion_hash(&Element::from(List::from(Vec::<Element>::new()))))
}

/// A Quill block's `entriesHashList`:
/// `[header_hash, revisions_root, H(catalog_changes), H(transaction_info)]`.
///
/// `catalog_changes` is the block's `catalogChanges` Ion list (`[]` when the block has no DDL).
pub fn entries_hash_list(
    header_hash: &Hash,
    revisions_root: &Hash,
    catalog_changes: &Element,
    transaction_info: &Element,
) -> [Hash; QUILL_ENTRIES] {
    entries_hash_list_of(
        header_hash,
        revisions_root,
        &ion_hash(catalog_changes),
        &ion_hash(transaction_info),
    )
}

/// [`entries_hash_list`] from the hashes of `catalogChanges` and `transactionInfo`, for a
/// ledger that computed them earlier (off its serial commit path).
pub fn entries_hash_list_of(
    header_hash: &Hash,
    revisions_root: &Hash,
    catalog_changes_hash: &Hash,
    transaction_info_hash: &Hash,
) -> [Hash; QUILL_ENTRIES] {
    [
        *header_hash,
        *revisions_root,
        *catalog_changes_hash,
        *transaction_info_hash,
    ]
}

/// `entriesHash = merkle_root(entriesHashList)` for a Quill block's four entries.
pub fn entries_hash(entries_hash_list: &[Hash; QUILL_ENTRIES]) -> Hash {
    let [e0, e1, e2, e3] = entries_hash_list;
    // merkle_root over exactly 4 leaves, written out: the list is never empty.
    dot(&dot(e0, e1), &dot(e2, e3))
}

/// The in-block part of a GetRevision proof for a Quill block: the revision's path in the
/// revisions tree, the path of entry 1 in the entries tree, then `previousBlockHash` (absent for
/// the genesis block). Folding it from the revision's hash gives the block hash; the ledger
/// appends the block's digest-tree proof ([`crate::inclusion_proof`]).
///
/// Empty when `revision_index` is out of range, as [`crate::merkle_path`] is.
pub fn revision_to_block_path(
    revision_hashes: &[Hash],
    revision_index: usize,
    entries_hash_list: &[Hash; QUILL_ENTRIES],
    previous_block_hash: Option<&Hash>,
) -> Vec<Hash> {
    if revision_index >= revision_hashes.len() {
        return Vec::new();
    }
    let mut path = merkle_path(revision_hashes, revision_index);
    path.extend(merkle_path(entries_hash_list, 1));
    path.extend(previous_block_hash);
    path
}

/// `blockHash = dot(entriesHash, previousBlockHash)`; for the genesis block (no previous
/// block) `blockHash = entriesHash`, by `dot`'s empty-operand rule (Quill's choice: QLDB's
/// genesis `previousBlockHash` is unknown).
pub fn block_hash(entries_hash: &Hash, previous_block_hash: Option<&Hash>) -> Hash {
    match previous_block_hash {
        Some(previous) => dot(entries_hash, previous),
        None => *entries_hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::hex;

    fn ion(text: &str) -> Element {
        Element::read_one(text).unwrap()
    }

    const TXID: &str = "IfBXwVUzFhN5Rb9V7P0qbT";

    #[test]
    fn a_precomputed_statement_digest_folds_like_the_statement() {
        let alice = ion(r#"{name:"Alice", age:30}"#);
        let mut digest = CommitDigest::new(TXID);
        let statement = statement_digest("INSERT INTO Person ?", std::slice::from_ref(&alice));
        digest.add_statement_digest(&statement);
        assert_eq!(
            digest.value(),
            hex("fe7fa63794dfbe52e236e2ffec026a2205723af9c8864851ad2f74a92b73c392")
        );
    }

    #[test]
    fn a_statement_digest_from_parameter_hashes_equals_the_one_from_parameters() {
        let parameters = [ion(r#"{name:"Alice", age:30}"#), ion("1.50"), ion("a::[b]")];
        let hashes: Vec<Hash> = parameters.iter().map(ion_hash).collect();
        for count in 0..=parameters.len() {
            assert_eq!(
                statement_digest_of_hashes("UPDATE t SET a = ? WHERE b = ?", &hashes[..count]),
                statement_digest("UPDATE t SET a = ? WHERE b = ?", &parameters[..count])
            );
        }
    }

    /// Wire protocol §2 vectors (pyqldb QldbHash).
    #[test]
    fn commit_digest_vectors() {
        assert_eq!(
            ion_hash(&Element::string("hello world")),
            hex("82c4010bfc9cace7f645c0a951243b9b122cb5ba21b60b3f71ea79c513c39342")
        );
        let mut digest = CommitDigest::new(TXID);
        assert_eq!(
            digest.value(),
            hex("d8a36ef7583c867285aeab7cbb80512cef270291b6172c77901e42fc379ab7fe")
        );
        let mut create = digest;
        create.add_statement("CREATE TABLE Person", &[]);
        assert_eq!(
            create.value(),
            hex("886d37bfc9053011215283b77314fdb66344561b5aa4b952ebba10f6bc27148d")
        );
        let alice = ion(r#"{name:"Alice", age:30}"#);
        assert_eq!(
            ion_hash(&alice),
            hex("5398a62f1c773c34b3cda85d594acd7424d1d83b2a3ad448ab67bce9ee2333ca")
        );
        digest.add_statement("INSERT INTO Person ?", &[alice]);
        assert_eq!(
            digest.value(),
            hex("fe7fa63794dfbe52e236e2ffec026a2205723af9c8864851ad2f74a92b73c392")
        );
        digest.add_statement(
            "SELECT * FROM Person WHERE name = ?",
            &[Element::string("Alice")],
        );
        assert_eq!(
            digest.value(),
            hex("ec3c371668857cb710c3b06679aaddce7a6ed39d32bd828fa64bf220799862a7")
        );
    }

    #[test]
    fn revision_paths_fold_to_the_block_hash() {
        let time = ion("2024-05-06T07:08:09.123Z").as_timestamp().unwrap();
        let header = block_header_hash("strand", 3, "tx", &time);
        let previous = Hash::sha256(b"block 2");
        for count in 1..=9u8 {
            let revisions: Vec<Hash> = (0..count).map(|i| Hash::sha256(&[i])).collect();
            let list =
                entries_hash_list(&header, &revisions_root(&revisions), &ion("[]"), &ion("{}"));
            let entries = entries_hash(&list);
            for (i, revision) in revisions.iter().enumerate() {
                let path = revision_to_block_path(&revisions, i, &list, Some(&previous));
                assert_eq!(
                    crate::fold(revision, &path),
                    block_hash(&entries, Some(&previous))
                );
                let genesis_path = revision_to_block_path(&revisions, i, &list, None);
                assert_eq!(crate::fold(revision, &genesis_path), entries);
            }
            assert!(revision_to_block_path(&revisions, count as usize, &list, None).is_empty());
        }
    }

    #[test]
    fn statement_order_matters() {
        let mut ab = CommitDigest::new(TXID);
        ab.add_statement("A", &[]);
        ab.add_statement("B", &[]);
        let mut ba = CommitDigest::new(TXID);
        ba.add_statement("B", &[]);
        ba.add_statement("A", &[]);
        assert_ne!(ab.value(), ba.value());
        let mut twice = CommitDigest::new(TXID);
        twice.add_statement("A", &[]);
        twice.add_statement("A", &[]);
        assert_ne!(ab.value(), twice.value());
    }

    #[test]
    fn statement_digest_folds_parameters() {
        let text = "SELECT * FROM T WHERE a = ?";
        assert_eq!(
            statement_digest(text, &[]),
            ion_hash(&Element::string(text))
        );
        let param = Element::int(5);
        assert_eq!(
            statement_digest(text, std::slice::from_ref(&param)),
            dot(&ion_hash(&Element::string(text)), &ion_hash(&param))
        );
    }

    #[test]
    fn deletion_and_redaction_rules() {
        let metadata = ion("{id:\"a\", version:1, txTime:2024-01-01T00:00:00.000Z, txId:\"t\"}");
        let data = ion("{x:1}");
        assert_eq!(revision_hash(&metadata, None), ion_hash(&metadata));
        let full = revision_hash(&metadata, Some(&data));
        assert_eq!(full, dot(&ion_hash(&metadata), &ion_hash(&data)));
        assert_eq!(redacted_revision_hash(&metadata, &ion_hash(&data)), full);
    }

    #[test]
    fn quill_layout_pieces() {
        let time = ion("2024-05-06T07:08:09.123Z").as_timestamp().unwrap();
        let header = block_header("strand", 7, "tx", &time);
        let text = ion("{strandId:\"strand\", sequenceNo:7, transactionId:\"tx\", blockTimestamp:2024-05-06T07:08:09.123Z}");
        assert_eq!(header, text);
        assert_eq!(block_header_hash("strand", 7, "tx", &time), ion_hash(&text));
        assert_ne!(block_header_hash("strand", 8, "tx", &time), ion_hash(&text));

        assert_eq!(revisions_root(&[]), ion_hash(&ion("[]")));
        let revisions = [
            Hash::sha256(b"r1"),
            Hash::sha256(b"r2"),
            Hash::sha256(b"r3"),
        ];
        assert_eq!(revisions_root(&revisions), merkle_root(&revisions).unwrap());

        let list = entries_hash_list(
            &ion_hash(&header),
            &revisions_root(&revisions),
            &ion("[]"),
            &ion("{}"),
        );
        assert_eq!(list[2], ion_hash(&ion("[]")));
        assert_eq!(list[3], ion_hash(&ion("{}")));
        assert_eq!(Some(entries_hash(&list)), merkle_root(&list));

        let entries = entries_hash(&list);
        assert_eq!(block_hash(&entries, None), entries);
        let previous = Hash::sha256(b"previous");
        assert_eq!(
            block_hash(&entries, Some(&previous)),
            dot(&entries, &previous)
        );
    }
}
