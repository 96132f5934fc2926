//! The transparency log's leaf: one journal block, self-checking (see the module docs of
//! [`crate::tlog`] for the byte layout).

use super::TlogError;
use crate::{block_hash, merkle_root, Hash};

/// The 14 ASCII bytes every block leaf starts with.
pub const BLOCK_LEAF_TAG: &[u8; 14] = b"quill-block/v1";
const WITHOUT_PREVIOUS: usize = 14 + 8 + 32 + 32 + 1;
const WITH_PREVIOUS: usize = WITHOUT_PREVIOUS + 32;

/// The fields of journal block `sequence_no` that its leaf carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLeaf {
    /// The block's sequence number (= its leaf index).
    pub sequence_no: u64,
    /// The block's QLDB block hash.
    pub block_hash: Hash,
    /// The block's entries hash (the QLDB Merkle root of its entries hash list).
    pub entries_hash: Hash,
    /// The previous block's hash; `None` only for the genesis block.
    pub previous_block_hash: Option<Hash>,
}

impl BlockLeaf {
    /// The leaf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WITH_PREVIOUS);
        out.extend_from_slice(BLOCK_LEAF_TAG);
        out.extend_from_slice(&self.sequence_no.to_be_bytes());
        out.extend_from_slice(&self.block_hash.0);
        out.extend_from_slice(&self.entries_hash.0);
        match &self.previous_block_hash {
            Some(previous) => {
                out.push(1);
                out.extend_from_slice(&previous.0);
            }
            None => out.push(0),
        }
        out
    }

    /// Parses leaf bytes; anything but the exact layout is an error.
    pub fn parse(bytes: &[u8]) -> Result<BlockLeaf, TlogError> {
        let bad = |why: &str| TlogError::MalformedLeaf(why.to_owned());
        if !bytes.starts_with(BLOCK_LEAF_TAG) {
            return Err(bad("it does not start with quill-block/v1"));
        }
        let hash_at = |at: usize| Hash::from_slice(&bytes[at..at + 32]).expect("32 bytes");
        let (expected_len, previous) = match bytes.get(WITHOUT_PREVIOUS - 1) {
            Some(0) => (WITHOUT_PREVIOUS, None),
            Some(1) => (WITH_PREVIOUS, Some(())),
            Some(_) => return Err(bad("the previous-hash flag is neither 0 nor 1")),
            None => return Err(bad("it is too short")),
        };
        if bytes.len() != expected_len {
            return Err(bad("its length does not match its layout"));
        }
        Ok(BlockLeaf {
            sequence_no: u64::from_be_bytes(bytes[14..22].try_into().expect("8 bytes")),
            block_hash: hash_at(22),
            entries_hash: hash_at(54),
            previous_block_hash: previous.map(|()| hash_at(WITHOUT_PREVIOUS)),
        })
    }

    /// Checks that the block hash is QLDB's hash of the entries and previous hashes.
    pub fn check(&self) -> Result<(), TlogError> {
        let computed = block_hash(&self.entries_hash, self.previous_block_hash.as_ref());
        if computed != self.block_hash {
            return Err(TlogError::LeafHashMismatch {
                sequence_no: self.sequence_no,
                stored: self.block_hash,
                computed,
            });
        }
        Ok(())
    }
}

/// Checks leaves `0..n` as a monitor reading only the log would: each leaf's own hash, its
/// index, and the chain to the previous leaf. Returns the QLDB digest of the `n` blocks, so it
/// can be compared with a digest a QLDB driver got for the same tip.
pub fn check_block_chain(leaves: &[BlockLeaf]) -> Result<Option<Hash>, TlogError> {
    let mut previous: Option<Hash> = None;
    for (index, leaf) in leaves.iter().enumerate() {
        if leaf.sequence_no != index as u64 {
            return Err(TlogError::LeafOutOfOrder {
                index: index as u64,
                sequence_no: leaf.sequence_no,
            });
        }
        leaf.check()?;
        if leaf.previous_block_hash != previous {
            return Err(TlogError::BrokenChain {
                sequence_no: leaf.sequence_no,
            });
        }
        previous = Some(leaf.block_hash);
    }
    let block_hashes: Vec<Hash> = leaves.iter().map(|leaf| leaf.block_hash).collect();
    Ok(merkle_root(&block_hashes))
}

/// [`check_block_chain`] incrementally, for a monitor or mirror that reads the log as it
/// grows: it holds the next expected index, the last block hash and the frontier of the QLDB
/// digest tree (one complete subtree root per level), so each leaf costs O(log n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainMonitor {
    next: u64,
    last_block_hash: Option<Hash>,
    /// Roots of the complete subtrees covering the leaves so far, largest first, each with
    /// its height.
    frontier: Vec<(u32, Hash)>,
}

impl ChainMonitor {
    /// A monitor before block 0.
    pub fn new() -> ChainMonitor {
        ChainMonitor::default()
    }

    /// The number of blocks accepted.
    pub fn size(&self) -> u64 {
        self.next
    }

    /// Checks the next leaf (its index, its own hashes, its link to the previous block) and
    /// accepts it; a refused leaf leaves the monitor unchanged.
    pub fn accept(&mut self, leaf: &BlockLeaf) -> Result<(), TlogError> {
        if leaf.sequence_no != self.next {
            return Err(TlogError::LeafOutOfOrder {
                index: self.next,
                sequence_no: leaf.sequence_no,
            });
        }
        leaf.check()?;
        if leaf.previous_block_hash != self.last_block_hash {
            return Err(TlogError::BrokenChain {
                sequence_no: leaf.sequence_no,
            });
        }
        self.next += 1;
        self.last_block_hash = Some(leaf.block_hash);
        let mut node = (0, leaf.block_hash);
        while let Some(&(height, left)) = self.frontier.last() {
            if height != node.0 {
                break;
            }
            self.frontier.pop();
            node = (height + 1, crate::dot(&left, &node.1));
        }
        self.frontier.push(node);
        Ok(())
    }

    /// The QLDB digest of the blocks accepted (`None` before block 0): QLDB's tree has the
    /// RFC 6962 shape, so it is the frontier folded from the right.
    pub fn qldb_digest(&self) -> Option<Hash> {
        let mut nodes = self.frontier.iter().rev();
        let (_, last) = nodes.next()?;
        Some(nodes.fold(*last, |right, (_, left)| crate::dot(left, &right)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<BlockLeaf> {
        let mut previous = None;
        (0..n)
            .map(|sequence_no| {
                let entries_hash = Hash::sha256(&sequence_no.to_be_bytes());
                let leaf = BlockLeaf {
                    sequence_no,
                    block_hash: block_hash(&entries_hash, previous.as_ref()),
                    entries_hash,
                    previous_block_hash: previous,
                };
                previous = Some(leaf.block_hash);
                leaf
            })
            .collect()
    }

    #[test]
    fn the_layout_is_byte_exact() {
        let leaves = chain(2);
        let genesis = leaves[0].to_bytes();
        assert_eq!(genesis.len(), 87);
        assert_eq!(&genesis[..14], b"quill-block/v1");
        assert_eq!(&genesis[14..22], &[0; 8]);
        assert_eq!(&genesis[22..54], &leaves[0].block_hash.0);
        assert_eq!(&genesis[54..86], &leaves[0].entries_hash.0);
        assert_eq!(genesis[86], 0);
        let second = leaves[1].to_bytes();
        assert_eq!(second.len(), 119);
        assert_eq!(&second[14..22], &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(second[86], 1);
        assert_eq!(&second[87..], &leaves[0].block_hash.0);
        for leaf in &leaves {
            assert_eq!(BlockLeaf::parse(&leaf.to_bytes()).unwrap(), *leaf);
        }
    }

    #[test]
    fn malformed_leaves_are_rejected() {
        let bytes = chain(2)[1].to_bytes();
        assert!(BlockLeaf::parse(&bytes[..118]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(BlockLeaf::parse(&longer).is_err());
        let mut flag = bytes.clone();
        flag[86] = 2;
        assert!(BlockLeaf::parse(&flag).is_err());
        let mut tag = bytes;
        tag[0] = b'Q';
        assert!(BlockLeaf::parse(&tag).is_err());
    }

    #[test]
    fn the_chain_check_finds_each_kind_of_break() {
        let leaves = chain(5);
        let block_hashes: Vec<Hash> = leaves.iter().map(|l| l.block_hash).collect();
        assert_eq!(
            check_block_chain(&leaves).unwrap(),
            merkle_root(&block_hashes)
        );
        assert_eq!(check_block_chain(&[]).unwrap(), None);

        let mut bad_hash = leaves.clone();
        bad_hash[2].entries_hash = Hash::sha256(b"x");
        assert!(matches!(
            check_block_chain(&bad_hash),
            Err(TlogError::LeafHashMismatch { sequence_no: 2, .. })
        ));
        let mut reordered = leaves.clone();
        reordered.swap(1, 2);
        assert!(matches!(
            check_block_chain(&reordered),
            Err(TlogError::LeafOutOfOrder { index: 1, .. })
        ));
        let mut forked = chain(5);
        let entries_hash = Hash::sha256(b"fork");
        forked[3] = BlockLeaf {
            sequence_no: 3,
            block_hash: block_hash(&entries_hash, Some(&forked[1].block_hash)),
            entries_hash,
            previous_block_hash: Some(forked[1].block_hash),
        };
        assert!(matches!(
            check_block_chain(&forked),
            Err(TlogError::BrokenChain { sequence_no: 3 })
        ));
    }

    #[test]
    fn the_monitor_matches_the_whole_chain_check_at_every_size() {
        let leaves = chain(40);
        let mut monitor = ChainMonitor::new();
        assert_eq!(monitor.qldb_digest(), None);
        for (n, leaf) in leaves.iter().enumerate() {
            monitor.accept(leaf).unwrap();
            assert_eq!(
                monitor.qldb_digest(),
                check_block_chain(&leaves[..=n]).unwrap(),
                "size {}",
                n + 1
            );
        }
        let before = monitor.clone();
        let mut forged = chain(41).pop().unwrap();
        forged.previous_block_hash = Some(Hash::sha256(b"elsewhere"));
        forged.block_hash = block_hash(&forged.entries_hash, forged.previous_block_hash.as_ref());
        assert_eq!(
            monitor.accept(&forged),
            Err(TlogError::BrokenChain { sequence_no: 40 })
        );
        assert!(matches!(
            monitor.accept(&leaves[3]),
            Err(TlogError::LeafOutOfOrder {
                index: 40,
                sequence_no: 3
            })
        ));
        assert_eq!(monitor, before);
    }
}
