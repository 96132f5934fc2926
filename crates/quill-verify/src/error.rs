//! The one error type of proof and block checks: each variant names the step and the field
//! that failed, so a client can tell *what* did not verify, not only that something did not.

use crate::Hash;

/// Why a proof, block or revision did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required field is absent (`field` is a path such as `revisions[2].metadata`).
    #[error("missing field `{field}`")]
    MissingField {
        /// Path of the absent field.
        field: String,
    },
    /// A field has the wrong Ion type.
    #[error("field `{field}` is not {expected}")]
    WrongType {
        /// Path of the field.
        field: String,
        /// The Ion type (or shape) it must have.
        expected: &'static str,
    },
    /// A blob that must hold a SHA-256 hash has another length.
    #[error("field `{field}` holds {length} bytes, not a 32-byte hash")]
    BadHashLength {
        /// Path of the field.
        field: String,
        /// Its length in bytes.
        length: usize,
    },
    /// A stored hash differs from the one recomputed from the data it covers.
    #[error("`{field}` is {stored} but recomputes to {computed}")]
    HashMismatch {
        /// Path of the field holding the stored hash.
        field: String,
        /// The hash as stored.
        stored: Hash,
        /// The hash recomputed from its inputs.
        computed: Hash,
    },
    /// A hash that must appear in `entriesHashList` does not.
    #[error("{what} {hash} is not in entriesHashList")]
    NotInEntriesHashList {
        /// Which hash (`revisions root` or `transactionInfo hash`).
        what: &'static str,
        /// The recomputed hash that was looked for.
        hash: Hash,
    },
    /// A Quill block's `entriesHashList` does not follow Quill's exact layout.
    #[error("Quill block layout: {reason}")]
    QuillLayout {
        /// What differs from the layout.
        reason: String,
    },
    /// Folding a proof from its start value does not reach the digest.
    #[error("proof folds to {computed}, not to the digest {digest}")]
    ProofMismatch {
        /// The fold's result.
        computed: Hash,
        /// The digest the proof should reach.
        digest: Hash,
    },
    /// A consistency proof does not link the two tree roots.
    #[error("consistency proof from size {old_size} to size {new_size} is invalid: {reason}")]
    Consistency {
        /// Size of the older tree.
        old_size: u64,
        /// Size of the newer tree.
        new_size: u64,
        /// Which check failed.
        reason: &'static str,
    },
    /// An input is longer than this crate's limit for it (see [`crate::limits`]).
    #[error("{what} has {count} items, over the limit of {max}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// How many there were.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Proof text is not an Ion list of 32-byte blobs.
    #[error("proof text is not an Ion list of 32-byte blobs: {reason}")]
    ProofSyntax {
        /// What was wrong with it.
        reason: String,
    },
}

/// Fails with [`VerifyError::LimitExceeded`] when `count` is over `max`.
pub(crate) fn check_limit(what: &'static str, count: usize, max: usize) -> Result<(), VerifyError> {
    if count > max {
        return Err(VerifyError::LimitExceeded { what, count, max });
    }
    Ok(())
}
