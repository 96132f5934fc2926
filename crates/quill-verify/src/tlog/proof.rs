//! C2SP `tlog-proof`: an offline proof that an entry is in a (cosigned) checkpoint.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional)
//! index <N>
//! <base64 inclusion proof hash>...
//!
//! <checkpoint note, with its signatures and cosignatures>
//! ```
//!
//! In a Quill proof the `extra` bytes are the block's `quill-block/v1` leaf
//! ([`super::BlockLeaf`]), so [`verify_block_proof`] needs nothing but the file and a policy.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{
    rfc6962, verify_cosigned_checkpoint, BlockLeaf, Policy, TlogError, VerifiedCheckpoint,
};
use crate::Hash;

/// The first line of every proof.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Application data (in Quill, the block leaf).
    pub extra: Option<Vec<u8>>,
    /// The entry's leaf index.
    pub index: u64,
    /// The RFC 6962 inclusion proof of the entry in the checkpoint's tree.
    pub hashes: Vec<Hash>,
    /// The signed (and possibly cosigned) checkpoint note.
    pub checkpoint: String,
}

impl TlogProof {
    /// Parses a proof file.
    pub fn parse(text: &str) -> Result<TlogProof, TlogError> {
        let bad = |why: &str| TlogError::MalformedProof(why.to_owned());
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(PROOF_HEADER) {
            return Err(bad("it does not start with c2sp.org/tlog-proof@v1"));
        }
        let extra = match lines.peek().and_then(|l| l.strip_prefix("extra ")) {
            Some(encoded) => {
                let bytes = STANDARD
                    .decode(encoded)
                    .map_err(|_| bad("the extra data is not base64"))?;
                lines.next();
                Some(bytes)
            }
            None => None,
        };
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .filter(|n| *n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("missing `index <N>` line"))?;
        let hashes = lines
            .map(|l| Hash::from_base64(l).ok_or_else(|| bad("a proof line is not a base64 hash")))
            .collect::<Result<_, _>>()?;
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// The proof file's text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.hashes {
            out.push_str(&format!("{hash}\n"));
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }
}

/// A block proven to be in a checkpoint that satisfies a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBlock {
    /// The block's leaf.
    pub leaf: BlockLeaf,
    /// The checkpoint and its cosigners.
    pub checkpoint: VerifiedCheckpoint,
}

/// Checks a Quill block proof, link by link: the file's format, the log signature and
/// witness quorum of its checkpoint, the block leaf in `extra` (its own hashes and its index),
/// and its inclusion in the checkpoint's tree.
pub fn verify_block_proof(text: &str, policy: &Policy) -> Result<VerifiedBlock, TlogError> {
    let proof = TlogProof::parse(text)?;
    let checkpoint = verify_cosigned_checkpoint(&proof.checkpoint, policy)?;
    let extra = proof
        .extra
        .as_deref()
        .ok_or_else(|| TlogError::MalformedProof("no block leaf in `extra`".into()))?;
    let leaf = BlockLeaf::parse(extra)?;
    if leaf.sequence_no != proof.index {
        return Err(TlogError::LeafOutOfOrder {
            index: proof.index,
            sequence_no: leaf.sequence_no,
        });
    }
    leaf.check()?;
    rfc6962::verify_inclusion(
        proof.index,
        checkpoint.checkpoint.size,
        &rfc6962::leaf_hash(extra),
        &proof.hashes,
        &checkpoint.checkpoint.root,
    )?;
    Ok(VerifiedBlock { leaf, checkpoint })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Hash {
        Hash::sha256(text.as_bytes())
    }

    /// The marshalling vectors of transparency-dev/formats `proof` (the tlog-proof reference).
    #[test]
    fn the_reference_vectors_are_reproduced() {
        let (h1, h2) = (h("hash1"), h("hash2"));
        let cases = [
            (
                TlogProof { extra: None, index: 5, hashes: vec![h1, h2], checkpoint: "test checkpoint\n".into() },
                format!("c2sp.org/tlog-proof@v1\nindex 5\n{h1}\n{h2}\n\ntest checkpoint\n"),
            ),
            (
                TlogProof {
                    extra: Some(b"extra information".to_vec()),
                    index: 10,
                    hashes: vec![h1],
                    checkpoint: "checkpoint data\n".into(),
                },
                format!("c2sp.org/tlog-proof@v1\nextra ZXh0cmEgaW5mb3JtYXRpb24=\nindex 10\n{h1}\n\ncheckpoint data\n"),
            ),
            (
                TlogProof { extra: None, index: 0, hashes: vec![], checkpoint: "checkpoint\n".into() },
                "c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n".to_owned(),
            ),
        ];
        for (proof, text) in cases {
            assert_eq!(proof.to_text(), text);
            assert_eq!(TlogProof::parse(&text).unwrap(), proof);
        }
    }

    #[test]
    fn malformed_proofs_are_rejected() {
        for bad in [
            "not a proof at all",
            "c2sp.org/tlog-proof@v1\n",
            "c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n",
            "c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n",
            "c2sp.org/tlog-proof@v2\nindex 0\n\ncheckpoint\n",
            "c2sp.org/tlog-proof@v1\nindex 01\n\ncheckpoint\n",
            "c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\ncheckpoint\n",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }
}
