//! Every bound this crate puts on its inputs, each with its reason.
//!
//! Verification runs on data that came over the network, so each loop over untrusted input is
//! capped: going over a limit returns a typed error naming it instead of doing unbounded work.

/// Height of a digest tree over at most `u64::MAX` leaves: levels are numbered 0..=63.
pub const TREE_LEVELS_MAX: u32 = 64;

/// Hashes in one proof. The longest proof QLDB's layout allows is a revisions-tree path plus an
/// entries-tree path plus `previousBlockHash` plus a digest-tree path; each tree path is at most
/// [`TREE_LEVELS_MAX`] hashes, and a consistency proof is at most twice that.
pub const PROOF_HASHES_MAX: usize = 4 * TREE_LEVELS_MAX as usize;

/// Revisions checked in one block. QLDB allows 40 documents per transaction; system revisions
/// add a few more. This leaves ample room while bounding the work of `verify_block`.
pub const BLOCK_REVISIONS_MAX: usize = 10_000;

/// Entries in a block's `entriesHashList`. QLDB blocks have shown 2 or 4; Quill writes 4.
pub const ENTRIES_HASHES_MAX: usize = 64;

/// Characters of proof Ion text accepted by `parse_proof`: a base64 blob is 44 characters plus
/// the `{{ }}` delimiters, separators and whitespace, so 128 per hash is generous.
pub const PROOF_TEXT_MAX_CHARS: usize = 128 * PROOF_HASHES_MAX;

const _: () = assert!(2 * TREE_LEVELS_MAX as usize <= PROOF_HASHES_MAX);
const _: () = assert!(ENTRIES_HASHES_MAX >= 4);
