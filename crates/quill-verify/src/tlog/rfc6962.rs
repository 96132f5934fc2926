//! RFC 6962 Merkle tree hashing and proofs (§2.1), as C2SP checkpoints and witnesses use them.
//!
//! This is a different tree from QLDB's digest tree: its nodes carry the 0x00 (leaf) / 0x01
//! (node) domain separation prefixes and are ordered, so a proof authenticates a leaf's
//! position. The verification algorithms are RFC 9162 §2.1.3.2 and §2.1.4.2, which check
//! exactly the proofs RFC 6962 defines.

use sha2::{Digest as _, Sha256};

use crate::Hash;

/// Why an RFC 6962 proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The old size of a consistency proof exceeds the new one.
    #[error("old size {old} exceeds new size {new}")]
    OldExceedsNew {
        /// The old tree size.
        old: u64,
        /// The new tree size.
        new: u64,
    },
    /// The proof has more or fewer hashes than the two sizes call for.
    #[error("the proof has the wrong number of hashes ({0})")]
    WrongLength(usize),
    /// The proof folds to another old root than the one given.
    #[error("the proof does not lead to the old root")]
    OldRootMismatch,
    /// The proof folds to another root than the one given.
    #[error("the proof does not lead to the root {expected}: it gives {computed}")]
    RootMismatch {
        /// The root the caller expected.
        expected: Hash,
        /// The root the proof folds to.
        computed: Hash,
    },
}

/// The root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Hash::sha256(&[])
}

/// `SHA-256(0x00 ‖ data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// `MTH(D[n])` over the leaf hashes of a tree held in memory.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes.len() {
        0 => empty_root(),
        1 => leaf_hashes[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaf_hashes[..k]), &root(&leaf_hashes[k..]))
        }
    }
}

/// `PATH(index, D[n])`: the inclusion proof of leaf `index`, leaf to root. Empty when the
/// index is out of range (there is no proof to give).
pub fn inclusion_proof(leaf_hashes: &[Hash], index: usize) -> Vec<Hash> {
    let mut proof = Vec::new();
    if index < leaf_hashes.len() {
        path(leaf_hashes, index, &mut proof);
    }
    proof
}

fn path(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    if index < k {
        path(&leaves[..k], index, out);
        out.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], index - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// `PROOF(old, D[n])`: the consistency proof from the first `old` leaves to all of them.
/// Empty when `old` is 0 or not below the size (no hashes are needed, or none exist).
pub fn consistency_proof(leaf_hashes: &[Hash], old: usize) -> Vec<Hash> {
    let mut proof = Vec::new();
    if old > 0 && old < leaf_hashes.len() {
        subproof(leaf_hashes, old, true, &mut proof);
    }
    proof
}

fn subproof(leaves: &[Hash], m: usize, complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(&leaves[..k], m, complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(&leaves[k..], m - k, false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut computed = *leaf;
    for sibling in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength(proof.len()));
        }
        if fnode & 1 == 1 || fnode == snode {
            computed = node_hash(sibling, &computed);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            computed = node_hash(&computed, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength(proof.len()));
    }
    if computed != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed,
        });
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with `new_root` extends the tree of `old_size`
/// leaves with `old_root`. An old size of 0 is consistent with any tree (and takes an empty
/// proof); equal sizes need equal roots and an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldExceedsNew {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength(proof.len()));
        }
        if old_size == new_size && old_root != new_root {
            return Err(ProofError::RootMismatch {
                expected: *new_root,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength(0));
    }
    // When the old tree is a complete subtree its root is the proof's implicit first hash.
    let mut hashes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        hashes.push(*old_root);
    }
    hashes.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut old_computed, mut new_computed) = (hashes[0], hashes[0]);
    for sibling in &hashes[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength(proof.len()));
        }
        if fnode & 1 == 1 || fnode == snode {
            old_computed = node_hash(sibling, &old_computed);
            new_computed = node_hash(sibling, &new_computed);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            new_computed = node_hash(&new_computed, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength(proof.len()));
    }
    if old_computed != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if new_computed != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
            computed: new_computed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::hex;

    /// The eight leaves of the RFC 6962 reference test tree (Certificate Transparency's
    /// `merkle_tree_test.cc`, reused by Trillian and `x/mod/sumdb/tlog`).
    fn reference_leaves() -> Vec<Hash> {
        [
            &[][..],
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ]
        .iter()
        .map(|data| leaf_hash(data))
        .collect()
    }

    #[test]
    fn reference_roots_match_the_published_vectors() {
        let leaves = reference_leaves();
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        assert_eq!(
            root(&[]),
            hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(root(&leaves[..=n]), hex(want), "size {}", n + 1);
        }
    }

    #[test]
    fn reference_inclusion_proof_matches_the_published_vector() {
        let leaves = reference_leaves();
        let proof = inclusion_proof(&leaves, 0);
        let expected = [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ];
        assert_eq!(proof, expected.iter().map(|h| hex(h)).collect::<Vec<_>>());
    }

    #[test]
    fn reference_consistency_proofs_match_the_published_vectors() {
        let leaves = reference_leaves();
        assert_eq!(
            consistency_proof(&leaves, 1),
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
            .map(hex)
        );
        assert_eq!(
            consistency_proof(&leaves, 6),
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
            .map(hex)
        );
        assert_eq!(
            consistency_proof(&leaves[..5], 2),
            [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]
            .map(hex)
        );
    }

    #[test]
    fn every_generated_proof_verifies_and_tampering_fails() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let tree_root = root(tree);
            for index in 0..n {
                let proof = inclusion_proof(tree, index);
                verify_inclusion(index as u64, n as u64, &tree[index], &proof, &tree_root).unwrap();
                let other = (index + 1) % n;
                if other != index {
                    assert!(verify_inclusion(
                        other as u64,
                        n as u64,
                        &tree[index],
                        &proof,
                        &tree_root
                    )
                    .is_err());
                }
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = leaf_hash(&first.0);
                    assert!(verify_inclusion(
                        index as u64,
                        n as u64,
                        &tree[index],
                        &bad,
                        &tree_root
                    )
                    .is_err());
                    assert!(verify_inclusion(
                        index as u64,
                        n as u64,
                        &tree[index],
                        &proof[1..],
                        &tree_root
                    )
                    .is_err());
                }
            }
            for old in 0..=n {
                let proof = consistency_proof(tree, old);
                let old_root = root(&tree[..old]);
                verify_consistency(old as u64, n as u64, &old_root, &tree_root, &proof).unwrap();
                if old > 0 && old < n {
                    let wrong = leaf_hash(b"fork");
                    assert!(
                        verify_consistency(old as u64, n as u64, &wrong, &tree_root, &proof)
                            .is_err()
                    );
                    assert!(
                        verify_consistency(old as u64, n as u64, &old_root, &wrong, &proof)
                            .is_err()
                    );
                    assert!(verify_consistency(
                        old as u64,
                        n as u64,
                        &old_root,
                        &tree_root,
                        &proof[1..]
                    )
                    .is_err());
                    let mut bad = proof.clone();
                    bad[0] = wrong;
                    assert!(
                        verify_consistency(old as u64, n as u64, &old_root, &tree_root, &bad)
                            .is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn degenerate_consistency_cases() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        assert_eq!(
            verify_consistency(3, 2, &a, &b, &[]),
            Err(ProofError::OldExceedsNew { old: 3, new: 2 })
        );
        assert!(verify_consistency(2, 2, &a, &a, &[]).is_ok());
        assert!(verify_consistency(2, 2, &a, &b, &[]).is_err());
        assert!(verify_consistency(0, 5, &a, &b, &[]).is_ok());
        assert!(verify_consistency(0, 5, &a, &b, &[a]).is_err());
        assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
    }
}
