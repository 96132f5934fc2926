//! Pure verification code for Quill ledgers, bit-compatible with Amazon QLDB.
//!
//! No storage, no async, no unsafe: a client can depend on this crate alone to check the
//! revisions, blocks, digests and proofs a Quill (or QLDB) server hands out, and the ledger
//! uses the same functions to build them.
//!
//! - [`Hash`], [`ion_hash`] (Amazon Ion Hash 1.0 over SHA-256) and [`dot`] (QLDB's commutative
//!   node function: smaller operand first, compared as signed bytes from byte 31 down to 0).
//! - [`merkle_root`], [`merkle_path`], [`fold`], [`verify_proof`]: QLDB's Merkle tree over a
//!   list in memory (a block's revisions and entries; the digest over block hashes).
//! - [`tree_root`], [`inclusion_proof`], [`consistency_proof`], [`verify_consistency`]: the
//!   digest tree computed from O(log n) stored [`FullNodes`].
//! - [`revision_hash`], [`statement_digest`], [`CommitDigest`], [`block_hash`] and Quill's
//!   block layout ([`entries_hash_list`]): QLDB's hash rules.
//! - [`verify_block`], [`verify_revision`], [`parse_proof`]: checks of GetBlock / GetRevision
//!   results, failing with a [`VerifyError`] that names the field and step.
//! - [`tlog`]: the ledger's witnessed transparency log (RFC 6962 tree over block leaves, C2SP
//!   signed notes, checkpoints, cosignatures and policies).
//!
//! ```
//! use quill_verify::{fold, merkle_path, merkle_root, parse_proof, proof_to_ion_text, verify_proof, Hash};
//!
//! let blocks: Vec<Hash> = (0u8..5).map(|i| Hash::sha256(&[i])).collect();
//! let digest = merkle_root(&blocks).unwrap();
//! let proof = merkle_path(&blocks, 2);
//! assert_eq!(fold(&blocks[2], &proof), digest);
//!
//! // Proofs travel as Ion text, as in QLDB's GetBlock / GetRevision.
//! let text = proof_to_ion_text(&proof);
//! assert_eq!(parse_proof(&text).unwrap(), proof);
//! assert!(verify_proof(&blocks[2], &proof, &digest).is_ok());
//! assert!(verify_proof(&blocks[3], &proof, &digest).is_err());
//! ```
#![deny(missing_docs)]

mod block;
mod error;
mod hash;
mod hashes;
mod header;
pub mod limits;
mod merkle;
pub mod tlog;
mod tree;

pub use block::{
    parse_proof, proof_to_ion_text, verify_block, verify_quill_block, verify_revision,
};
pub use error::VerifyError;
pub use hash::{dot, ion_hash, Hash};
pub use hashes::{
    block_hash, block_header, block_header_hash, entries_hash, entries_hash_list,
    entries_hash_list_of, redacted_revision_hash, revision_hash, revision_to_block_path,
    revisions_root, statement_digest, statement_digest_of_hashes, CommitDigest, QUILL_ENTRIES,
};
pub use header::{BlockHeaderHasher, RevisionMetadataHasher};
pub use merkle::{fold, merkle_path, merkle_root, verify_proof};
pub use tree::{
    consistency_proof, inclusion_proof, tree_root, verify_consistency, verify_digest_consistency,
    FullNodes, TreeError,
};

#[cfg(test)]
mod test_support {
    use crate::Hash;

    /// A hash written as 64 hex digits (test vectors).
    pub(crate) fn hex(text: &str) -> Hash {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        Hash::from_slice(&bytes).unwrap()
    }
}
