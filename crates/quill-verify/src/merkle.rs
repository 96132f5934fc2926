//! QLDB's Merkle tree over a list held in memory: roots, inclusion paths and proof folding.
//!
//! Used for a block's revision hashes and its `entriesHashList`, and as the reference model of
//! the ledger's digest tree (see [`crate::tree`] for the O(log n) version over stored nodes).
//! The rule: combine neighbours left to right with [`dot`]; a lone last node moves up a level
//! unchanged. That is the RFC 6962 tree shape with `dot` as node function.

use crate::error::check_limit;
use crate::limits::PROOF_HASHES_MAX;
use crate::{dot, Hash, VerifyError};

/// The root of QLDB's Merkle tree over `leaves`; `None` for an empty list (QLDB's "empty hash").
pub fn merkle_root(leaves: &[Hash]) -> Option<Hash> {
    let mut level: Vec<Hash> = leaves.to_vec();
    // Each pass halves the level (rounding up), so this runs about log2(n) times.
    while level.len() > 1 {
        level = next_level(&level);
    }
    level.first().copied()
}

/// The sibling hashes from leaf `index` up to the root, bottom to top: the proof that
/// `fold(&leaves[index], &path) == merkle_root(leaves)`.
///
/// A promoted lone node contributes no element. An out-of-range `index` yields an empty path;
/// callers check the index first, because an empty path is also the valid path of a one-leaf
/// list.
pub fn merkle_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    if index >= leaves.len() {
        return path;
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    let mut position = index;
    while level.len() > 1 {
        if let Some(sibling) = level.get(position ^ 1) {
            path.push(*sibling);
        }
        level = next_level(&level);
        position /= 2;
    }
    path
}

/// Folds a proof into its start value: `acc = start; for p in proof { acc = dot(acc, p) }`.
pub fn fold(start: &Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(*start, |acc, sibling| dot(&acc, sibling))
}

/// Checks that `proof` folds `start` to `digest` (GetRevision and GetBlock proofs).
///
/// Proofs longer than [`PROOF_HASHES_MAX`] are refused before any hashing.
pub fn verify_proof(start: &Hash, proof: &[Hash], digest: &Hash) -> Result<(), VerifyError> {
    check_limit("proof", proof.len(), PROOF_HASHES_MAX)?;
    let computed = fold(start, proof);
    if computed != *digest {
        return Err(VerifyError::ProofMismatch {
            computed,
            digest: *digest,
        });
    }
    Ok(())
}

/// One level up: neighbours combined pairwise, a lone last node promoted unchanged.
fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair.get(1) {
            Some(right) => dot(&pair[0], right),
            None => pair[0],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::hex;

    fn leaf(i: u8) -> Hash {
        Hash::sha256(&[i])
    }

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(leaf).collect()
    }

    /// §11.5 of the verification reference: roots over `L_i = SHA-256([i])`.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "86c00a08265c84d8dec95f226f7acbbc0dd44910b86b6b5d27c6bab7cfff243b",
        "494f4736fecb79221f2acb54eae891748fc3c121e34dae329cb0b5d07b703c5f",
        "ddc168adc6e1de46f14aa1b9feec3d5976abd3f595d785e87915f489d42e7f79",
        "b697128cde36c8e77b5697fa2d23b8671267909a9bea2dc0d34ce20dc6b447bd",
        "17b39095f6d7296ded225e1a030ccff1fc7d939c5f2c88cd2d9691a941d97e79",
        "972d17cd476f0150e2b061437c875eecf0bd497d8561c14bf395953b5b453083",
        "e74b4a74128e91b71d597039962582f50baac77b506c1142e184e015eafcdbd5",
    ];

    #[test]
    fn roots_match_synthetic_vectors() {
        for (i, expected) in ROOTS.iter().enumerate() {
            let n = i as u8 + 1;
            assert_eq!(merkle_root(&leaves(n)), Some(hex(expected)), "n = {n}");
        }
    }

    #[test]
    fn empty_list_has_no_root_and_no_path() {
        assert_eq!(merkle_root(&[]), None);
        assert!(merkle_path(&[], 0).is_empty());
        assert!(merkle_path(&leaves(3), 3).is_empty());
    }

    #[test]
    fn path_of_leaf_2_of_5_matches_vector() {
        let path = merkle_path(&leaves(5), 2);
        assert_eq!(path, vec![leaf(3), hex(ROOTS[1]), leaf(4)]);
        verify_proof(&leaf(2), &path, &hex(ROOTS[4])).unwrap();
    }

    #[test]
    fn path_of_leaf_6_of_7_skips_the_promotion() {
        let path = merkle_path(&leaves(7), 6);
        assert_eq!(path, vec![dot(&leaf(4), &leaf(5)), hex(ROOTS[3])]);
        assert!(path[0].to_string().starts_with("s7PJ")); // b3b3c97c… in base64
        verify_proof(&leaf(6), &path, &hex(ROOTS[6])).unwrap();
    }

    #[test]
    fn every_path_verifies_and_a_wrong_start_fails() {
        for n in 1..=20u8 {
            let list = leaves(n);
            let root = merkle_root(&list).unwrap();
            for i in 0..list.len() {
                let path = merkle_path(&list, i);
                verify_proof(&list[i], &path, &root).unwrap();
                let err = verify_proof(&leaf(200), &path, &root).unwrap_err();
                assert!(matches!(err, VerifyError::ProofMismatch { .. }));
            }
        }
    }

    #[test]
    fn overlong_proof_is_refused() {
        let proof = vec![leaf(0); PROOF_HASHES_MAX + 1];
        let err = verify_proof(&leaf(1), &proof, &leaf(2)).unwrap_err();
        assert!(matches!(
            err,
            VerifyError::LimitExceeded { what: "proof", .. }
        ));
    }
}
