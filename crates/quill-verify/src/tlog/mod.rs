//! The witnessed transparency log: C2SP formats and RFC 6962 checks, pure and offline.
//!
//! Beside QLDB's digest tree (which drivers use, unchanged), every Quill ledger keeps an
//! RFC 6962 Merkle tree whose leaf `i` is journal block `i`. Its checkpoints are C2SP
//! `tlog-checkpoint` notes signed per C2SP `signed-note` with the log's Ed25519 key and
//! cosigned by witnesses per C2SP `tlog-cosignature`. A client that holds a C2SP
//! `tlog-policy` can check all of it here, with no server and no network:
//! [`verify_cosigned_checkpoint`], then [`rfc6962::verify_inclusion`] of a block leaf, or
//! [`rfc6962::verify_consistency`] between two checkpoints; [`verify_proof_bundle`] checks a
//! whole C2SP `tlog-proof` file of a block or of a revision.
//!
//! # The block leaf, byte for byte (`quill-block/v1`)
//!
//! | Offset | Length | Content |
//! |---|---|---|
//! | 0 | 14 | ASCII `quill-block/v1` |
//! | 14 | 8 | the block's `sequenceNo`, unsigned big-endian |
//! | 22 | 32 | the block's raw `blockHash` |
//! | 54 | 32 | the block's raw `entriesHash` |
//! | 86 | 1 | `0x00` for the genesis block (no `previousBlockHash`), else `0x01` |
//! | 87 | 32 | the raw `previousBlockHash`, present only when byte 86 is `0x01` |
//!
//! A genesis leaf is 87 bytes, every other leaf 119. The leaf hash is RFC 6962's
//! `SHA-256(0x00 ‖ leaf)`. Since QLDB's `blockHash = dot(entriesHash, previousBlockHash)`
//! (or `entriesHash` for the genesis block), a monitor that reads only the log can re-check
//! each block hash, the hash chain, and recompute the QLDB digest of any prefix
//! ([`check_block_chain`]).
//!
//! ```
//! use quill_verify::tlog::{rfc6962, BlockLeaf};
//! use quill_verify::{block_hash, Hash};
//!
//! let entries_hash = Hash::sha256(b"entries of block 0");
//! let leaf = BlockLeaf {
//!     sequence_no: 0,
//!     block_hash: block_hash(&entries_hash, None),
//!     entries_hash,
//!     previous_block_hash: None,
//! };
//! let leaf_hash = rfc6962::leaf_hash(&leaf.to_bytes());
//! let root = rfc6962::root(&[leaf_hash]);
//! assert!(rfc6962::verify_inclusion(0, 1, &leaf_hash, &[], &root).is_ok());
//! ```

mod checkpoint;
mod leaf;
pub mod note;
mod policy;
mod proof;
pub mod rfc6962;

use std::collections::HashSet;

pub use checkpoint::Checkpoint;
pub use leaf::{check_block_chain, BlockLeaf, ChainMonitor, BLOCK_LEAF_TAG};
pub use note::{Note, NoteSignature, VerifierKey};
pub use policy::{Policy, PolicyGroup, PolicyLog, PolicyWitness};
pub use proof::{
    verify_proof_bundle, BundleError, ProofLink, RevisionExtra, TlogProof, VerifiedBundle,
    PROOF_HEADER, REVISION_PROOF_FORMAT,
};
pub use rfc6962::ProofError;

use crate::Hash;

/// Why a transparency-log artefact did not parse or verify. Each variant names the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    /// A verifier key is malformed or of an unsupported type.
    #[error("bad key: {0}")]
    BadKey(String),
    /// A signed note is malformed.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A tlog-proof file is malformed.
    #[error("malformed proof file: {0}")]
    MalformedProof(String),
    /// A block leaf is malformed.
    #[error("malformed block leaf: {0}")]
    MalformedLeaf(String),
    /// A signature by a known key does not verify.
    #[error("the signature by {0} does not verify")]
    InvalidSignature(String),
    /// The policy trusts no log with this checkpoint's origin.
    #[error("no trusted log has origin {0:?}")]
    UnknownOrigin(String),
    /// The checkpoint carries no valid signature by a trusted log key.
    #[error("the checkpoint of {0:?} has no signature by a trusted log key")]
    NoLogSignature(String),
    /// Too few witnesses cosigned.
    #[error("the witness quorum is not met: cosigned by {cosigned:?}{}", if future_dated.is_empty() { String::new() } else { format!(" (not counted, dated in the future: {future_dated:?})") })]
    QuorumNotMet {
        /// The policy names of the witnesses whose cosignatures verified.
        cosigned: Vec<String>,
        /// Witnesses whose valid cosignatures were not counted: their timestamps are beyond
        /// 2^63 - 1 or more than [`MAX_COSIGNATURE_SKEW`] ahead of the verifier's clock.
        future_dated: Vec<String>,
    },
    /// A policy file line is wrong.
    #[error("policy line {line}: {why}")]
    BadPolicy {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A block leaf's hash is not the hash of its entries and previous block.
    #[error("block {sequence_no}: blockHash is {stored} but recomputes to {computed}")]
    LeafHashMismatch {
        /// The block's sequence number.
        sequence_no: u64,
        /// The hash in the leaf.
        stored: Hash,
        /// The hash recomputed from the leaf's entries and previous hashes.
        computed: Hash,
    },
    /// Leaf `index` holds another block.
    #[error("leaf {index} holds block {sequence_no}")]
    LeafOutOfOrder {
        /// The leaf index.
        index: u64,
        /// The sequence number it holds.
        sequence_no: u64,
    },
    /// A block's previousBlockHash is not the hash of the block before it.
    #[error("block {sequence_no}: previousBlockHash is not the previous block's hash")]
    BrokenChain {
        /// The block's sequence number.
        sequence_no: u64,
    },
    /// An RFC 6962 proof does not verify.
    #[error("{0}")]
    Proof(#[from] ProofError),
    /// A revision does not hash, or its proof does not fold, to its block's hash.
    #[error("the revision is not in block {sequence_no}: {why}")]
    RevisionNotInBlock {
        /// The block the proof claims.
        sequence_no: u64,
        /// What did not match.
        why: String,
    },
}

/// How far (seconds) ahead of the verifier's clock a cosignature may be dated.
pub const MAX_COSIGNATURE_SKEW: u64 = 300;

/// Whether a cosignature dated `timestamp` is acceptable at `now` (Unix seconds): C2SP
/// tlog-cosignature timestamps never exceed 2^63 - 1, and verifiers may reject those from the
/// future; a few minutes of clock skew are tolerated.
pub fn plausible_cosignature_time(timestamp: u64, now: u64) -> bool {
    timestamp <= i64::MAX as u64 && timestamp <= now.saturating_add(MAX_COSIGNATURE_SKEW)
}

/// A checkpoint whose log signature and witness quorum verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Each witness (by policy name) whose cosignature verified, with its timestamp.
    pub cosigned: Vec<(String, u64)>,
}

/// Checks a cosigned checkpoint note against a policy: a valid signature by a trusted log
/// key whose name is the checkpoint's origin, then the witness quorum. Cosignatures dated
/// beyond 2^63 - 1 do not count; see [`verify_cosigned_checkpoint_at`] to also refuse those
/// dated in the verifier's future.
pub fn verify_cosigned_checkpoint(
    note_text: &str,
    policy: &Policy,
) -> Result<VerifiedCheckpoint, TlogError> {
    verify_cosigned_checkpoint_at(note_text, policy, u64::MAX)
}

/// [`verify_cosigned_checkpoint`] at the verifier's time `now` (Unix seconds): cosignatures
/// dated more than [`MAX_COSIGNATURE_SKEW`] after it do not count towards the quorum.
pub fn verify_cosigned_checkpoint_at(
    note_text: &str,
    policy: &Policy,
    now: u64,
) -> Result<VerifiedCheckpoint, TlogError> {
    let note = Note::parse(note_text)?;
    let checkpoint = Checkpoint::parse(&note.text)?;
    let log_keys: Vec<VerifierKey> = policy
        .logs
        .iter()
        .filter(|log| log.key.name == checkpoint.origin)
        .map(|log| log.key.clone())
        .collect();
    if log_keys.is_empty() {
        return Err(TlogError::UnknownOrigin(checkpoint.origin));
    }
    if note.verify(&log_keys)?.is_empty() {
        return Err(TlogError::NoLogSignature(checkpoint.origin));
    }
    let witness_keys = policy.witness_keys();
    type Cosigners = Vec<(String, u64)>;
    let (cosigned, future): (Cosigners, Cosigners) = note
        .verify(&witness_keys)?
        .into_iter()
        .filter_map(|(key, timestamp)| {
            let witness = policy.witnesses.iter().find(|w| w.key == *key)?;
            Some((witness.name.clone(), timestamp?))
        })
        .partition(|(_, timestamp)| plausible_cosignature_time(*timestamp, now));
    let names: HashSet<String> = cosigned.iter().map(|(name, _)| name.clone()).collect();
    if !policy.quorum_met(&names) {
        return Err(TlogError::QuorumNotMet {
            cosigned: cosigned.into_iter().map(|(name, _)| name).collect(),
            future_dated: future.into_iter().map(|(name, _)| name).collect(),
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        cosigned,
    })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::note::{cosignature_message, TYPE_COSIGNATURE, TYPE_ED25519};
    use super::*;

    fn key(name: &str, key_type: u8, seed: u8) -> (SigningKey, VerifierKey) {
        let secret = SigningKey::from_bytes(&[seed; 32]);
        let public = VerifierKey::new(name, key_type, secret.verifying_key().to_bytes()).unwrap();
        (secret, public)
    }

    fn sign(
        secret: &SigningKey,
        key: &VerifierKey,
        text: &str,
        timestamp: Option<u64>,
    ) -> NoteSignature {
        let signature = match timestamp {
            Some(t) => {
                let mut bytes = t.to_be_bytes().to_vec();
                bytes.extend_from_slice(&secret.sign(&cosignature_message(t, text)).to_bytes());
                bytes
            }
            None => secret.sign(text.as_bytes()).to_bytes().to_vec(),
        };
        NoteSignature {
            name: key.name.clone(),
            key_id: key.key_id(),
            signature,
        }
    }

    #[test]
    fn a_checkpoint_needs_the_log_signature_and_the_quorum() {
        let (log_secret, log_key) = key("example.com/quill/shop", TYPE_ED25519, 1);
        let witnesses: Vec<_> = (0..3u8)
            .map(|i| key(&format!("w{i}.example"), TYPE_COSIGNATURE, 10 + i))
            .collect();
        let mut policy_text = format!("log {log_key}\n");
        for (i, (_, key)) in witnesses.iter().enumerate() {
            policy_text.push_str(&format!("witness w{i} {key}\n"));
        }
        policy_text.push_str("group g 2 w0 w1 w2\nquorum g\n");
        let policy = Policy::parse(&policy_text).unwrap();

        let checkpoint = Checkpoint {
            origin: log_key.name.clone(),
            size: 3,
            root: Hash::sha256(b"root"),
            extensions: vec![],
        };
        let text = checkpoint.to_text();
        let mut note = Note {
            text: text.clone(),
            signatures: vec![sign(&log_secret, &log_key, &text, None)],
        };
        let cosign = |i: usize| {
            sign(
                &witnesses[i].0,
                &witnesses[i].1,
                &text,
                Some(1000 + i as u64),
            )
        };

        note.signatures.push(cosign(2));
        assert_eq!(
            verify_cosigned_checkpoint(&note.to_text(), &policy),
            Err(TlogError::QuorumNotMet {
                cosigned: vec!["w2".into()],
                future_dated: vec![],
            })
        );
        note.signatures.push(cosign(0));
        let verified = verify_cosigned_checkpoint(&note.to_text(), &policy).unwrap();
        assert_eq!(verified.checkpoint, checkpoint);
        assert_eq!(
            verified.cosigned,
            vec![("w2".into(), 1002), ("w0".into(), 1000)]
        );

        // Dated beyond the verifier's clock (plus skew), cosignatures do not count.
        assert_eq!(
            verify_cosigned_checkpoint_at(&note.to_text(), &policy, 999 - MAX_COSIGNATURE_SKEW),
            Err(TlogError::QuorumNotMet {
                cosigned: vec![],
                future_dated: vec!["w2".into(), "w0".into()],
            })
        );
        assert!(verify_cosigned_checkpoint_at(&note.to_text(), &policy, 1002).is_ok());
        let mut far_future = note.clone();
        far_future.signatures[1] = sign(&witnesses[2].0, &witnesses[2].1, &text, Some(1 << 63));
        assert!(matches!(
            verify_cosigned_checkpoint(&far_future.to_text(), &policy),
            Err(TlogError::QuorumNotMet { future_dated, .. }) if future_dated == ["w2"]
        ));

        let unsigned = Note {
            text: text.clone(),
            signatures: note.signatures[1..].to_vec(),
        };
        assert_eq!(
            verify_cosigned_checkpoint(&unsigned.to_text(), &policy),
            Err(TlogError::NoLogSignature(log_key.name.clone()))
        );
        let forged = note.to_text().replace("\n3\n", "\n4\n");
        assert!(matches!(
            verify_cosigned_checkpoint(&forged, &policy),
            Err(TlogError::InvalidSignature(_))
        ));
        let other_origin = Policy::parse("quorum none\n").unwrap();
        assert_eq!(
            verify_cosigned_checkpoint(&note.to_text(), &other_origin),
            Err(TlogError::UnknownOrigin(log_key.name.clone()))
        );
    }
}
