//! The ledger's digest tree over block hashes, computed from nodes the ledger stores.
//!
//! The digest at tip `T` is [`merkle_root`](crate::merkle_root) over the `T + 1` block hashes.
//! Recomputing that for every GetDigest or proof would read every block, so the ledger stores
//! the *full nodes* of the tree and this module combines O(log n) of them:
//!
//! - full node `(level, index)` covers leaves `[index << level, (index + 1) << level)` and
//!   exists once all those leaves exist; level 0 holds the leaves (block hashes), and
//!   `full(level, index) = dot(full(level - 1, 2 index), full(level - 1, 2 index + 1))`;
//! - the tree has the RFC 6962/9162 shape (split at the largest power of two below the size),
//!   which equals QLDB's promote-lone-node rule; a node on the right edge that is not full is
//!   combined from at most 64 full nodes.
//!
//! Consistency proofs follow RFC 9162 §2.1.4 with [`dot`] as node function. `dot` sorts its
//! operands, so the proof needs no left/right flags; the verifier still recomputes both roots
//! from the proof, so a proof between unrelated histories fails.
//!
//! Argument errors (empty tree, leaf out of range, sizes out of order) and failures of the
//! node store are reported through [`TreeError`], generic over the store's error type.

use crate::error::check_limit;
use crate::limits::{PROOF_HASHES_MAX, TREE_LEVELS_MAX};
use crate::{dot, Hash, VerifyError};

/// Read access to the stored full nodes of a digest tree.
pub trait FullNodes {
    /// The store's error (I/O, corruption, missing node).
    type Error;

    /// The full node `(level, index)`: the root of leaves `[index << level, (index + 1) << level)`.
    /// Only called for nodes whose leaves all exist in the tree being read.
    fn full_node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a tree computation could not run: a bad argument, or the node store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError<E> {
    /// The tree size was 0: a digest covers at least the genesis block.
    #[error("a digest tree has at least one leaf")]
    EmptyTree,
    /// The leaf index is not below the tree size.
    #[error("leaf {leaf} is outside a tree of {size} leaves")]
    LeafOutOfRange {
        /// The requested leaf.
        leaf: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old size {old_size} is larger than new size {new_size}")]
    SizesOutOfOrder {
        /// The older tree's size.
        old_size: u64,
        /// The newer tree's size.
        new_size: u64,
    },
    /// Reading a stored full node failed.
    #[error("reading full node (level {level}, index {index}) failed")]
    Node {
        /// Level of the node.
        level: u32,
        /// Index of the node in its level.
        index: u64,
        /// The store's error.
        #[source]
        source: E,
    },
}

/// The root of a tree of `size` leaves; equals `merkle_root` of the leaves.
pub fn tree_root<N: FullNodes>(size: u64, nodes: &N) -> Result<Hash, TreeError<N::Error>> {
    if size == 0 {
        return Err(TreeError::EmptyTree);
    }
    range_root(0, size, nodes)
}

/// The inclusion proof of `leaf` in a tree of `size` leaves, bottom to top; equals
/// `merkle_path` of the leaves (GetBlock's proof for block `leaf` at tip `size - 1`).
pub fn inclusion_proof<N: FullNodes>(
    leaf: u64,
    size: u64,
    nodes: &N,
) -> Result<Vec<Hash>, TreeError<N::Error>> {
    if size == 0 {
        return Err(TreeError::EmptyTree);
    }
    if leaf >= size {
        return Err(TreeError::LeafOutOfRange { leaf, size });
    }
    let mut top_down = Vec::new();
    let (mut low, mut high) = (0, size);
    // Each step descends one level of a tree at most 64 levels high.
    for _ in 0..TREE_LEVELS_MAX {
        if high - low == 1 {
            break;
        }
        let split = low + largest_power_of_two_below(high - low);
        if leaf < split {
            top_down.push(range_root(split, high, nodes)?);
            high = split;
        } else {
            top_down.push(range_root(low, split, nodes)?);
            low = split;
        }
    }
    debug_assert_eq!(high - low, 1, "the descent reaches a leaf within 64 levels");
    top_down.reverse();
    Ok(top_down)
}

/// The proof that the tree of `new_size` leaves extends the tree of `old_size` leaves
/// (RFC 9162 §2.1.4.1 order). Empty when the sizes are equal.
pub fn consistency_proof<N: FullNodes>(
    old_size: u64,
    new_size: u64,
    nodes: &N,
) -> Result<Vec<Hash>, TreeError<N::Error>> {
    if old_size == 0 || new_size == 0 {
        return Err(TreeError::EmptyTree);
    }
    if old_size > new_size {
        return Err(TreeError::SizesOutOfOrder { old_size, new_size });
    }
    let mut top_down = Vec::new();
    let (mut low, mut high) = (0, new_size);
    // RFC 9162's flag `b`: true while the current subtree's old part is the entire old tree,
    // whose root the verifier already has.
    let mut whole_old_tree = true;
    // Each step descends one level of a tree at most 64 levels high.
    for _ in 0..=TREE_LEVELS_MAX {
        if high == old_size {
            if !whole_old_tree {
                top_down.push(range_root(low, high, nodes)?);
            }
            break;
        }
        let split = low + largest_power_of_two_below(high - low);
        if old_size <= split {
            top_down.push(range_root(split, high, nodes)?);
            high = split;
        } else {
            top_down.push(range_root(low, split, nodes)?);
            low = split;
            whole_old_tree = false;
        }
    }
    debug_assert_eq!(
        high, old_size,
        "the descent reaches the old tree within 64 levels"
    );
    top_down.reverse();
    Ok(top_down)
}

/// Checks that `proof` links the tree of `old_size` leaves with root `old_root` to the tree of
/// `new_size` leaves with root `new_root` (RFC 9162 §2.1.4.2 with `dot` as node function).
///
/// Both roots are recomputed from the proof, so every proof element is checked.
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    check_limit("consistency proof", proof.len(), PROOF_HASHES_MAX)?;
    let fail = |reason| VerifyError::Consistency {
        old_size,
        new_size,
        reason,
    };
    if old_size == 0 || old_size > new_size {
        return Err(fail("sizes must satisfy 1 <= old size <= new size"));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(fail("equal sizes take an empty proof"));
        }
        if old_root != new_root {
            return Err(fail("equal sizes with different roots"));
        }
        return Ok(());
    }
    let (old_computed, new_computed) = consistency_roots(old_size, old_root, new_size, proof)
        .ok_or_else(|| fail("wrong proof length"))?;
    if old_computed != *old_root {
        return Err(fail("proof does not rebuild the old root"));
    }
    if new_computed != *new_root {
        return Err(fail("proof does not rebuild the new root"));
    }
    Ok(())
}

/// Checks a `GetConsistencyProof` answer (a Quill extension): that `proof` shows the ledger
/// digest `to_digest` at tip `to_tip` extends the digest `from_digest` at tip `from_tip`
/// (sequence numbers; the trees hold `tip + 1` block hashes). This is what proves that a
/// digest saved earlier (one QLDB issued before a migration, say) still describes the prefix
/// of the journal the current digest covers: no block up to `from_tip` was rewritten.
pub fn verify_digest_consistency(
    from_tip: u64,
    from_digest: &Hash,
    to_tip: u64,
    to_digest: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    let size = |tip: u64| {
        tip.checked_add(1).ok_or(VerifyError::Consistency {
            old_size: from_tip,
            new_size: to_tip,
            reason: "a tip sequence number is out of range",
        })
    };
    verify_consistency(
        size(from_tip)?,
        from_digest,
        size(to_tip)?,
        to_digest,
        proof,
    )
}

/// Rebuilds the old and new roots from a consistency proof (RFC 9162 §2.1.4.2 steps 2–7),
/// for `1 <= old_size < new_size`; `None` when the proof's length does not fit the sizes.
fn consistency_roots(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    proof: &[Hash],
) -> Option<(Hash, Hash)> {
    // When the old tree is a full subtree, its root is the proof's implicit first element.
    let prefix: &[Hash] = if old_size.is_power_of_two() {
        std::slice::from_ref(old_root)
    } else {
        &[]
    };
    let mut path = prefix.iter().chain(proof);
    let first = path.next()?;
    let (mut old_node, mut new_node) = (old_size - 1, new_size - 1);
    while old_node & 1 == 1 {
        old_node >>= 1;
        new_node >>= 1;
    }
    let (mut old_acc, mut new_acc) = (*first, *first);
    for sibling in path {
        if new_node == 0 {
            return None;
        }
        if old_node & 1 == 1 || old_node == new_node {
            old_acc = dot(sibling, &old_acc);
            new_acc = dot(sibling, &new_acc);
            while old_node & 1 == 0 && old_node != 0 {
                old_node >>= 1;
                new_node >>= 1;
            }
        } else {
            new_acc = dot(&new_acc, sibling);
        }
        old_node >>= 1;
        new_node >>= 1;
    }
    (new_node == 0).then_some((old_acc, new_acc))
}

/// The root of the tree node over leaves `[start, end)`.
///
/// The range must be a node of some tree: `start` a multiple of a power of two that is at
/// least `end - start`. The root is then the perfect subtrees given by the bits of the count,
/// largest first, combined right to left.
fn range_root<N: FullNodes>(start: u64, end: u64, nodes: &N) -> Result<Hash, TreeError<N::Error>> {
    debug_assert!(start < end, "a node covers at least one leaf");
    let count = end - start;
    let mut offset = start;
    let mut parts: Vec<Hash> = Vec::with_capacity(count.count_ones() as usize);
    for level in (0..TREE_LEVELS_MAX).rev() {
        let width = 1u64 << level;
        if count & width != 0 {
            debug_assert_eq!(offset % width, 0, "node ranges are aligned");
            parts.push(read(nodes, level, offset >> level)?);
            offset += width;
        }
    }
    let mut parts = parts.into_iter().rev();
    let mut root = parts.next().ok_or(TreeError::EmptyTree)?;
    for left in parts {
        root = dot(&left, &root);
    }
    Ok(root)
}

fn read<N: FullNodes>(nodes: &N, level: u32, index: u64) -> Result<Hash, TreeError<N::Error>> {
    nodes
        .full_node(level, index)
        .map_err(|source| TreeError::Node {
            level,
            index,
            source,
        })
}

/// RFC 9162's `k`: the largest power of two strictly below `n`, for `n >= 2`.
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use proptest::prelude::*;

    use super::*;
    use crate::{fold, merkle_path, merkle_root, verify_proof};

    /// Full nodes held in memory, built from the leaves; counts reads.
    struct MemoryNodes {
        levels: Vec<Vec<Hash>>,
        reads: Cell<usize>,
    }

    #[derive(Debug, PartialEq)]
    struct MissingNode;

    impl MemoryNodes {
        fn new(leaves: &[Hash]) -> MemoryNodes {
            let mut levels = vec![leaves.to_vec()];
            while let Some(below) = levels.last().filter(|level| level.len() > 1) {
                let above = below
                    .chunks_exact(2)
                    .map(|pair| dot(&pair[0], &pair[1]))
                    .collect();
                levels.push(above);
            }
            MemoryNodes {
                levels,
                reads: Cell::new(0),
            }
        }
    }

    impl FullNodes for MemoryNodes {
        type Error = MissingNode;

        fn full_node(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
            self.reads.set(self.reads.get() + 1);
            let level = self.levels.get(level as usize).ok_or(MissingNode)?;
            level.get(index as usize).copied().ok_or(MissingNode)
        }
    }

    fn leaves(n: u64, salt: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::sha256(&[&i.to_le_bytes()[..], &[salt]].concat()))
            .collect()
    }

    fn flip_bit(hash: &Hash, bit: usize) -> Hash {
        let mut bytes = hash.0;
        bytes[bit / 8] ^= 1 << (bit % 8);
        Hash(bytes)
    }

    fn log2_ceil(n: u64) -> usize {
        (64 - (n.max(1) - 1).leading_zeros()) as usize
    }

    #[test]
    fn argument_errors_are_typed() {
        let nodes = MemoryNodes::new(&leaves(3, 0));
        assert_eq!(tree_root(0, &nodes), Err(TreeError::EmptyTree));
        assert_eq!(inclusion_proof(0, 0, &nodes), Err(TreeError::EmptyTree));
        assert_eq!(
            inclusion_proof(3, 3, &nodes),
            Err(TreeError::LeafOutOfRange { leaf: 3, size: 3 })
        );
        assert_eq!(consistency_proof(0, 3, &nodes), Err(TreeError::EmptyTree));
        assert_eq!(
            consistency_proof(3, 2, &nodes),
            Err(TreeError::SizesOutOfOrder {
                old_size: 3,
                new_size: 2
            })
        );
    }

    #[test]
    fn store_errors_name_the_node() {
        let nodes = MemoryNodes::new(&leaves(3, 0));
        // The store only knows 3 leaves: a 4-leaf root needs the missing node (2, 0).
        let err = tree_root(4, &nodes).unwrap_err();
        assert_eq!(
            err,
            TreeError::Node {
                level: 2,
                index: 0,
                source: MissingNode
            }
        );
    }

    #[test]
    fn consistency_argument_errors_in_verifier() {
        let root = Hash::sha256(b"r");
        assert!(verify_consistency(0, &root, 1, &root, &[]).is_err());
        assert!(verify_consistency(2, &root, 1, &root, &[]).is_err());
        assert!(verify_consistency(2, &root, 2, &root, &[]).is_ok());
        assert!(verify_consistency(2, &root, 2, &root, &[root]).is_err());
        assert!(verify_consistency(2, &root, 2, &Hash::sha256(b"s"), &[]).is_err());
        assert!(verify_consistency(1, &root, 2, &root, &[]).is_err());
    }

    #[test]
    fn digest_consistency_takes_tips_not_sizes() {
        let blocks = leaves(13, 7);
        let nodes = MemoryNodes::new(&blocks);
        let old = tree_root(6, &nodes).unwrap();
        let new = tree_root(13, &nodes).unwrap();
        let proof = consistency_proof(6, 13, &nodes).unwrap();
        verify_digest_consistency(5, &old, 12, &new, &proof).unwrap();
        // Another old tip or another old digest does not verify.
        assert!(verify_digest_consistency(6, &old, 12, &new, &proof).is_err());
        assert!(verify_digest_consistency(4, &old, 12, &new, &proof).is_err());
        assert!(verify_digest_consistency(5, &flip_bit(&old, 3), 12, &new, &proof).is_err());
        assert!(verify_digest_consistency(u64::MAX, &old, u64::MAX, &old, &[]).is_err());
    }

    #[test]
    fn reads_are_logarithmic_for_a_large_tree() {
        // A virtual tree of 2^40 + 12345 leaves: every full node is a function of its address.
        struct Virtual(Cell<usize>);
        impl FullNodes for Virtual {
            type Error = std::convert::Infallible;
            fn full_node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
                self.0.set(self.0.get() + 1);
                Ok(Hash::sha256(
                    &[&level.to_le_bytes()[..], &index.to_le_bytes()].concat(),
                ))
            }
        }
        let nodes = Virtual(Cell::new(0));
        let size = (1u64 << 40) + 12345;
        tree_root(size, &nodes).unwrap();
        assert_eq!(nodes.0.get(), 1 + 12345u64.count_ones() as usize);
        nodes.0.set(0);
        let proof = inclusion_proof(7, size, &nodes).unwrap();
        assert_eq!(proof.len(), 41);
        assert!(nodes.0.get() <= 3 * 41, "{} reads", nodes.0.get());
        nodes.0.set(0);
        let old_size = (1u64 << 39) + 3;
        let proof = consistency_proof(old_size, size, &nodes).unwrap();
        assert!(nodes.0.get() <= 4 * 41, "{} reads", nodes.0.get());
        // Old size 2^39 + 3 shares the 2^39 left subtree, then needs its 2 + 1 remainder.
        assert!(proof.len() <= 2 * 41, "{} hashes", proof.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn tree_agrees_with_in_memory_merkle(size in 1u64..300, leaf_seed in any::<u64>()) {
            let list = leaves(size, 1);
            let nodes = MemoryNodes::new(&list);
            let root = tree_root(size, &nodes).unwrap();
            prop_assert_eq!(Some(root), merkle_root(&list));
            let leaf = leaf_seed % size;
            nodes.reads.set(0);
            let proof = inclusion_proof(leaf, size, &nodes).unwrap();
            prop_assert!(nodes.reads.get() <= 2 * log2_ceil(size) + 1);
            prop_assert_eq!(&proof, &merkle_path(&list, leaf as usize));
            prop_assert!(verify_proof(&list[leaf as usize], &proof, &root).is_ok());
        }

        #[test]
        fn every_inclusion_proof_verifies(size in 1u64..130) {
            let list = leaves(size, 2);
            let nodes = MemoryNodes::new(&list);
            let root = tree_root(size, &nodes).unwrap();
            for leaf in 0..size {
                let proof = inclusion_proof(leaf, size, &nodes).unwrap();
                prop_assert_eq!(fold(&list[leaf as usize], &proof), root);
            }
        }

        #[test]
        fn consistency_proofs_verify(new_size in 1u64..300, old_seed in any::<u64>()) {
            let old_size = 1 + old_seed % new_size;
            let list = leaves(new_size, 3);
            let nodes = MemoryNodes::new(&list);
            let old_root = merkle_root(&list[..old_size as usize]).unwrap();
            let new_root = merkle_root(&list).unwrap();
            nodes.reads.set(0);
            let proof = consistency_proof(old_size, new_size, &nodes).unwrap();
            prop_assert!(nodes.reads.get() <= 4 * log2_ceil(new_size) + 2);
            prop_assert!(proof.len() <= 2 * log2_ceil(new_size));
            prop_assert!(verify_consistency(old_size, &old_root, new_size, &new_root, &proof).is_ok());
        }

        #[test]
        fn every_old_size_verifies(new_size in 1u64..70) {
            let list = leaves(new_size, 4);
            let nodes = MemoryNodes::new(&list);
            let new_root = merkle_root(&list).unwrap();
            for old_size in 1..=new_size {
                let old_root = merkle_root(&list[..old_size as usize]).unwrap();
                let proof = consistency_proof(old_size, new_size, &nodes).unwrap();
                prop_assert!(verify_consistency(old_size, &old_root, new_size, &new_root, &proof).is_ok());
            }
        }

        #[test]
        fn unrelated_histories_fail(new_size in 2u64..200, old_seed in any::<u64>(), changed_seed in any::<u64>()) {
            let old_size = 1 + old_seed % (new_size - 1);
            let honest = leaves(new_size, 5);
            // Another history that differs in one leaf of the old part.
            let mut forked = honest.clone();
            let changed = (changed_seed % old_size) as usize;
            forked[changed] = Hash::sha256(b"forged");
            let forked_old_root = merkle_root(&forked[..old_size as usize]).unwrap();
            let honest_new_root = merkle_root(&honest).unwrap();
            // The forked history's own proof and the honest proof both fail against the mix.
            for source in [&honest, &forked] {
                let nodes = MemoryNodes::new(source);
                let proof = consistency_proof(old_size, new_size, &nodes).unwrap();
                prop_assert!(verify_consistency(old_size, &forked_old_root, new_size, &honest_new_root, &proof).is_err());
            }
        }

        #[test]
        fn flipping_any_bit_fails_inclusion(size in 2u64..200, leaf_seed in any::<u64>(), bit in 0usize..256, target_seed in any::<usize>()) {
            let list = leaves(size, 6);
            let nodes = MemoryNodes::new(&list);
            let leaf = (leaf_seed % size) as usize;
            let root = tree_root(size, &nodes).unwrap();
            let proof = inclusion_proof(leaf as u64, size, &nodes).unwrap();
            prop_assert!(verify_proof(&flip_bit(&list[leaf], bit), &proof, &root).is_err());
            prop_assert!(verify_proof(&list[leaf], &proof, &flip_bit(&root, bit)).is_err());
            let mut tampered = proof.clone();
            let target = target_seed % tampered.len();
            tampered[target] = flip_bit(&tampered[target], bit);
            prop_assert!(verify_proof(&list[leaf], &tampered, &root).is_err());
        }

        #[test]
        fn flipping_any_bit_fails_consistency(new_size in 2u64..200, old_seed in any::<u64>(), bit in 0usize..256, target_seed in any::<usize>()) {
            let old_size = 1 + old_seed % (new_size - 1);
            let list = leaves(new_size, 7);
            let nodes = MemoryNodes::new(&list);
            let old_root = merkle_root(&list[..old_size as usize]).unwrap();
            let new_root = merkle_root(&list).unwrap();
            let proof = consistency_proof(old_size, new_size, &nodes).unwrap();
            prop_assert!(verify_consistency(old_size, &flip_bit(&old_root, bit), new_size, &new_root, &proof).is_err());
            prop_assert!(verify_consistency(old_size, &old_root, new_size, &flip_bit(&new_root, bit), &proof).is_err());
            let mut tampered = proof.clone();
            let target = target_seed % tampered.len();
            tampered[target] = flip_bit(&tampered[target], bit);
            prop_assert!(verify_consistency(old_size, &old_root, new_size, &new_root, &tampered).is_err());
        }

        #[test]
        fn truncated_extended_or_reordered_proofs_fail(size in 3u64..200, leaf_seed in any::<u64>(), old_seed in any::<u64>()) {
            let list = leaves(size, 8);
            let nodes = MemoryNodes::new(&list);
            let root = tree_root(size, &nodes).unwrap();
            let leaf = (leaf_seed % size) as usize;
            let proof = inclusion_proof(leaf as u64, size, &nodes).unwrap();
            for changed in variants(&proof) {
                prop_assert!(verify_proof(&list[leaf], &changed, &root).is_err());
            }
            let old_size = 1 + old_seed % (size - 1);
            let old_root = merkle_root(&list[..old_size as usize]).unwrap();
            let proof = consistency_proof(old_size, size, &nodes).unwrap();
            for changed in variants(&proof) {
                prop_assert!(verify_consistency(old_size, &old_root, size, &root, &changed).is_err());
            }
        }
    }

    /// The proof without its last element, with an extra element, and each adjacent swap of
    /// two different elements.
    fn variants(proof: &[Hash]) -> Vec<Vec<Hash>> {
        let mut out = vec![
            proof[..proof.len() - 1].to_vec(),
            [proof, &[Hash::sha256(b"x")]].concat(),
        ];
        for i in 1..proof.len() {
            if proof[i - 1] != proof[i] {
                let mut swapped = proof.to_vec();
                swapped.swap(i - 1, i);
                out.push(swapped);
            }
        }
        out
    }
}
