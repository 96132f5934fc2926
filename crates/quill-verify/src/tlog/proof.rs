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
//! In a Quill block proof the `extra` bytes are the block's `quill-block/v1` leaf
//! ([`super::BlockLeaf`]), so [`verify_proof_bundle`] needs nothing but the file and a policy.
//!
//! In a Quill **revision proof** (`quill-revision-proof/v1`), `extra` is Ion text:
//!
//! ```text
//! {format: "quill-revision-proof/v1", leaf: {{<block leaf>}},
//!  revision: {blockAddress: …, hash: {{…}}, data: …, metadata: …},
//!  proof: [{{…}}, …]}
//! ```
//!
//! `revision` is the revision as QLDB's GetRevision shows it, and `proof` the in-block part
//! of its QLDB proof: folded from the revision's hash (QLDB's `dot`) it gives the block's
//! hash. So [`verify_proof_bundle`] checks the chain revision → block hash (QLDB rules) →
//! RFC 6962 inclusion of the block's leaf → a checkpoint signed by the log and cosigned by
//! the policy's quorum, and a failure names its [`ProofLink`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ion_rs::{Element, List};

use super::{
    rfc6962, verify_cosigned_checkpoint_at, BlockLeaf, Policy, TlogError, VerifiedCheckpoint,
    BLOCK_LEAF_TAG,
};
use crate::{verify_revision, Hash};

/// The `format` of a revision proof's `extra`.
pub const REVISION_PROOF_FORMAT: &str = "quill-revision-proof/v1";

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

/// The `extra` of a revision proof: the block's leaf, the revision, and its in-block proof.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionExtra {
    /// The leaf of the block that committed the revision.
    pub leaf: BlockLeaf,
    /// The revision, as GetRevision returns it.
    pub revision: Element,
    /// From the revision's hash to the block's hash (QLDB's GetRevision proof without the
    /// digest-tree part).
    pub proof: Vec<Hash>,
}

impl RevisionExtra {
    /// The `extra` bytes: compact Ion text.
    pub fn to_bytes(&self) -> Vec<u8> {
        let proof: Vec<Element> = self
            .proof
            .iter()
            .map(|hash| Element::blob(hash.as_bytes()))
            .collect();
        let value: Element = Element::struct_builder()
            .with_field("format", Element::string(REVISION_PROOF_FORMAT))
            .with_field("leaf", Element::blob(self.leaf.to_bytes()))
            .with_field("revision", self.revision.clone())
            .with_field("proof", Element::from(List::from(proof)))
            .build()
            .into();
        value.to_string().into_bytes()
    }

    /// Parses `extra` bytes.
    pub fn parse(bytes: &[u8]) -> Result<RevisionExtra, TlogError> {
        let bad = |why: String| TlogError::MalformedProof(format!("revision extra: {why}"));
        let value = Element::read_one(bytes).map_err(|e| bad(e.to_string()))?;
        let fields = value
            .as_struct()
            .ok_or_else(|| bad("not an Ion struct".into()))?;
        if fields.get("format").and_then(Element::as_text) != Some(REVISION_PROOF_FORMAT) {
            return Err(bad(format!("format is not {REVISION_PROOF_FORMAT}")));
        }
        let leaf = fields
            .get("leaf")
            .and_then(Element::as_blob)
            .ok_or_else(|| bad("no `leaf` blob".into()))?;
        let revision = fields
            .get("revision")
            .ok_or_else(|| bad("no `revision`".into()))?
            .clone();
        let proof = fields
            .get("proof")
            .and_then(Element::as_sequence)
            .ok_or_else(|| bad("no `proof` list".into()))?
            .iter()
            .map(|item| {
                item.as_blob()
                    .and_then(Hash::from_slice)
                    .ok_or_else(|| bad("a proof element is not a 32-byte blob".into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(RevisionExtra {
            leaf: BlockLeaf::parse(leaf)?,
            revision,
            proof,
        })
    }
}

/// The links of a proof bundle's chain, bottom to top; a failure names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofLink {
    /// The file itself: its format, the `extra` data.
    Bundle,
    /// Revision → block hash, by QLDB's rules (revision hash recomputed, proof folded).
    Revision,
    /// The block leaf: its own hashes and its index.
    BlockLeaf,
    /// RFC 6962 inclusion of the leaf in the checkpoint's tree.
    Inclusion,
    /// The checkpoint's signature by a log the policy trusts.
    LogSignature,
    /// The witness quorum of the policy.
    WitnessQuorum,
}

impl std::fmt::Display for ProofLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProofLink::Bundle => "bundle",
            ProofLink::Revision => "revision -> block hash",
            ProofLink::BlockLeaf => "block leaf",
            ProofLink::Inclusion => "block leaf -> checkpoint (RFC 6962 inclusion)",
            ProofLink::LogSignature => "checkpoint signature",
            ProofLink::WitnessQuorum => "witness quorum",
        })
    }
}

/// A proof bundle that did not verify: which link broke, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{link}: {error}")]
pub struct BundleError {
    /// The broken link.
    pub link: ProofLink,
    /// What is wrong with it.
    pub error: TlogError,
}

/// A revision or block proven to be in a checkpoint that satisfies a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedBundle {
    /// The revision, for a revision proof.
    pub revision: Option<Element>,
    /// The block's leaf.
    pub leaf: BlockLeaf,
    /// The checkpoint and its cosigners.
    pub checkpoint: VerifiedCheckpoint,
}

/// Checks a Quill proof bundle (a revision proof, or a block proof) offline at the
/// verifier's time `now` (Unix seconds, to discount cosignatures from the future), link by
/// link from the bottom: revision → block hash, the block leaf, its inclusion in the
/// checkpoint's tree, the log's signature, the witness quorum.
pub fn verify_proof_bundle(
    text: &str,
    policy: &Policy,
    now: u64,
) -> Result<VerifiedBundle, BundleError> {
    let at = |link: ProofLink| move |error: TlogError| BundleError { link, error };
    let proof = TlogProof::parse(text).map_err(at(ProofLink::Bundle))?;
    let extra = proof
        .extra
        .as_deref()
        .ok_or_else(|| TlogError::MalformedProof("no `extra` data".into()))
        .map_err(at(ProofLink::Bundle))?;
    let (leaf, leaf_bytes, revision) = if extra.starts_with(BLOCK_LEAF_TAG) {
        let leaf = BlockLeaf::parse(extra).map_err(at(ProofLink::Bundle))?;
        (leaf, extra.to_vec(), None)
    } else {
        let parsed = RevisionExtra::parse(extra).map_err(at(ProofLink::Bundle))?;
        check_revision(&parsed).map_err(at(ProofLink::Revision))?;
        let bytes = parsed.leaf.to_bytes();
        (parsed.leaf, bytes, Some(parsed.revision))
    };
    if leaf.sequence_no != proof.index {
        return Err(BundleError {
            link: ProofLink::BlockLeaf,
            error: TlogError::LeafOutOfOrder {
                index: proof.index,
                sequence_no: leaf.sequence_no,
            },
        });
    }
    leaf.check().map_err(at(ProofLink::BlockLeaf))?;
    // The checkpoint is parsed (not yet trusted) to learn the tree the inclusion is in.
    let checkpoint = super::Note::parse(&proof.checkpoint)
        .and_then(|note| super::Checkpoint::parse(&note.text))
        .map_err(at(ProofLink::LogSignature))?;
    rfc6962::verify_inclusion(
        proof.index,
        checkpoint.size,
        &rfc6962::leaf_hash(&leaf_bytes),
        &proof.hashes,
        &checkpoint.root,
    )
    .map_err(|e| BundleError {
        link: ProofLink::Inclusion,
        error: e.into(),
    })?;
    let verified =
        verify_cosigned_checkpoint_at(&proof.checkpoint, policy, now).map_err(|error| {
            let link = match error {
                TlogError::QuorumNotMet { .. } => ProofLink::WitnessQuorum,
                _ => ProofLink::LogSignature,
            };
            BundleError { link, error }
        })?;
    Ok(VerifiedBundle {
        revision,
        leaf,
        checkpoint: verified,
    })
}

/// The revision's hash recomputed (QLDB's rules) and folded through its proof to the leaf's
/// block hash; its block address must name the leaf's block.
fn check_revision(extra: &RevisionExtra) -> Result<(), TlogError> {
    let sequence_no = extra
        .revision
        .as_struct()
        .and_then(|r| r.get("blockAddress"))
        .and_then(Element::as_struct)
        .and_then(|a| a.get("sequenceNo"))
        .and_then(Element::as_i64);
    if sequence_no != i64::try_from(extra.leaf.sequence_no).ok() {
        return Err(TlogError::RevisionNotInBlock {
            sequence_no: extra.leaf.sequence_no,
            why: "its blockAddress names another block".into(),
        });
    }
    verify_revision(&extra.revision, &extra.proof, &extra.leaf.block_hash).map_err(|e| {
        TlogError::RevisionNotInBlock {
            sequence_no: extra.leaf.sequence_no,
            why: e.to_string(),
        }
    })
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

    mod bundle {
        use ed25519_dalek::{Signer as _, SigningKey};
        use ion_rs::Element;

        use super::super::super::note::{
            cosignature_message, Note, NoteSignature, VerifierKey, TYPE_COSIGNATURE, TYPE_ED25519,
        };
        use super::super::super::Checkpoint;
        use super::super::*;
        use crate::{block_hash, entries_hash, revision_hash, revision_to_block_path};

        const ORIGIN: &str = "quill.test/quill/shop";

        struct Fixture {
            log: (SigningKey, VerifierKey),
            witnesses: Vec<(SigningKey, VerifierKey)>,
            policy: Policy,
            leaves: Vec<Vec<u8>>,
            extra: RevisionExtra,
        }

        fn key(name: &str, key_type: u8, seed: u8) -> (SigningKey, VerifierKey) {
            let secret = SigningKey::from_bytes(&[seed; 32]);
            let public =
                VerifierKey::new(name, key_type, secret.verifying_key().to_bytes()).unwrap();
            (secret, public)
        }

        fn revision(sequence_no: u64, n: i64) -> (Element, Hash) {
            let metadata = Element::read_one(format!(
                "{{id: \"DOC{n}\", version: 0, txTime: 2026-12-07T04:00:00.000Z, txId: \"TX{sequence_no}\"}}"
            ))
            .unwrap();
            let data = Element::read_one(format!("{{invoice: \"INV-{n}\", total: {n}}}")).unwrap();
            let hash = revision_hash(&metadata, Some(&data));
            let text = format!(
                "{{blockAddress: {{strandId: \"S\", sequenceNo: {sequence_no}}}, hash: {{{{{}}}}}, data: {data}, metadata: {metadata}}}",
                hash.to_base64()
            );
            (Element::read_one(text).unwrap(), hash)
        }

        /// Five blocks; block 3 holds two revisions, the second of which is proven.
        fn fixture() -> Fixture {
            let log = key(ORIGIN, TYPE_ED25519, 1);
            let witnesses: Vec<_> = (0..3u8)
                .map(|i| key(&format!("w{i}.test"), TYPE_COSIGNATURE, 10 + i))
                .collect();
            let mut policy = format!("log {}\n", log.1);
            for (i, (_, vkey)) in witnesses.iter().enumerate() {
                policy.push_str(&format!("witness w{i} {vkey}\n"));
            }
            policy.push_str("group g 2 w0 w1 w2\nquorum g\n");
            let mut leaves = Vec::new();
            let mut previous: Option<Hash> = None;
            let mut extra = None;
            for sequence_no in 0..5u64 {
                let revisions: Vec<(Element, Hash)> =
                    (0..2).map(|n| revision(sequence_no, n)).collect();
                let hashes: Vec<Hash> = revisions.iter().map(|(_, h)| *h).collect();
                let list = [
                    Hash::sha256(&sequence_no.to_be_bytes()),
                    crate::revisions_root(&hashes),
                    Hash::sha256(b"catalog"),
                    Hash::sha256(b"transaction info"),
                ];
                let entries = entries_hash(&list);
                let leaf = BlockLeaf {
                    sequence_no,
                    block_hash: block_hash(&entries, previous.as_ref()),
                    entries_hash: entries,
                    previous_block_hash: previous,
                };
                if sequence_no == 3 {
                    extra = Some(RevisionExtra {
                        leaf,
                        revision: revisions[1].0.clone(),
                        proof: revision_to_block_path(&hashes, 1, &list, previous.as_ref()),
                    });
                }
                previous = Some(leaf.block_hash);
                leaves.push(leaf.to_bytes());
            }
            Fixture {
                log,
                witnesses,
                policy: Policy::parse(&policy).unwrap(),
                leaves,
                extra: extra.unwrap(),
            }
        }

        impl Fixture {
            /// The bundle, cosigned by witnesses `cosigners`.
            fn bundle(&self, extra: &RevisionExtra, cosigners: &[usize]) -> String {
                let hashes: Vec<Hash> = self.leaves.iter().map(|l| rfc6962::leaf_hash(l)).collect();
                let text = Checkpoint {
                    origin: ORIGIN.into(),
                    size: 5,
                    root: rfc6962::root(&hashes),
                    extensions: vec![],
                }
                .to_text();
                let mut signatures = vec![NoteSignature {
                    name: ORIGIN.into(),
                    key_id: self.log.1.key_id(),
                    signature: self.log.0.sign(text.as_bytes()).to_bytes().to_vec(),
                }];
                for &i in cosigners {
                    let (secret, vkey) = &self.witnesses[i];
                    let mut signature = 1_700_000_000u64.to_be_bytes().to_vec();
                    signature.extend_from_slice(
                        &secret
                            .sign(&cosignature_message(1_700_000_000, &text))
                            .to_bytes(),
                    );
                    signatures.push(NoteSignature {
                        name: vkey.name.clone(),
                        key_id: vkey.key_id(),
                        signature,
                    });
                }
                TlogProof {
                    extra: Some(extra.to_bytes()),
                    index: 3,
                    hashes: rfc6962::inclusion_proof(&hashes, 3),
                    checkpoint: Note { text, signatures }.to_text(),
                }
                .to_text()
            }

            fn link(&self, bundle: &str) -> ProofLink {
                verify_proof_bundle(bundle, &self.policy, 1_700_000_000)
                    .expect_err("the bundle must not verify")
                    .link
            }
        }

        #[test]
        fn a_revision_bundle_verifies_link_by_link() {
            let f = fixture();
            let good = f.bundle(&f.extra, &[0, 2]);
            let verified = verify_proof_bundle(&good, &f.policy, 1_700_000_000).unwrap();
            assert_eq!(verified.revision.as_ref(), Some(&f.extra.revision));
            assert_eq!(verified.leaf, f.extra.leaf);
            assert_eq!(verified.checkpoint.checkpoint.size, 5);
            assert_eq!(RevisionExtra::parse(&f.extra.to_bytes()).unwrap(), f.extra);

            // A block bundle (the leaf alone in `extra`) checks the same upper links.
            let mut block = TlogProof::parse(&good).unwrap();
            block.extra = Some(f.leaves[3].clone());
            let verified = verify_proof_bundle(&block.to_text(), &f.policy, 1_700_000_000).unwrap();
            assert_eq!(verified.revision, None);
        }

        #[test]
        fn each_broken_link_is_named() {
            let f = fixture();
            let good = f.bundle(&f.extra, &[0, 2]);

            // Bundle: the extra is not a revision proof.
            let mut garbled = TlogProof::parse(&good).unwrap();
            garbled.extra = Some(b"{format: \"something else\"}".to_vec());
            assert_eq!(f.link(&garbled.to_text()), ProofLink::Bundle);
            assert_eq!(
                f.link("c2sp.org/tlog-proof@v1\nindex 3\n\nx\n"),
                ProofLink::Bundle
            );

            // Revision: altered data, a proof of another revision, another block's address.
            let mut altered = f.extra.clone();
            altered.revision =
                Element::read_one(f.extra.revision.to_string().replace("INV-1", "INV-9")).unwrap();
            assert_eq!(f.link(&f.bundle(&altered, &[0, 2])), ProofLink::Revision);
            let mut other_path = f.extra.clone();
            other_path.proof[0] = Hash::sha256(b"another sibling");
            assert_eq!(f.link(&f.bundle(&other_path, &[0, 2])), ProofLink::Revision);
            let mut moved = f.extra.clone();
            moved.revision = Element::read_one(
                f.extra
                    .revision
                    .to_string()
                    .replace("sequenceNo: 3", "sequenceNo: 2"),
            )
            .unwrap();
            assert_eq!(f.link(&f.bundle(&moved, &[0, 2])), ProofLink::Revision);

            // Block leaf: its entries hash no longer gives its block hash; a wrong index.
            let mut forged_leaf = f.extra.clone();
            forged_leaf.leaf.entries_hash = Hash::sha256(b"other entries");
            assert_eq!(
                f.link(&f.bundle(&forged_leaf, &[0, 2])),
                ProofLink::BlockLeaf
            );
            assert_eq!(
                f.link(&good.replace("\nindex 3\n", "\nindex 2\n")),
                ProofLink::BlockLeaf
            );

            // Inclusion: a sibling hash changed.
            let mut detached = TlogProof::parse(&good).unwrap();
            detached.hashes[0] = Hash::sha256(b"not the sibling");
            assert_eq!(f.link(&detached.to_text()), ProofLink::Inclusion);

            // Log signature: removed, or the checkpoint's size edited.
            let (head, note) = good.split_once("\n\n").unwrap();
            let (body, signatures) = note.split_once("\n\n").unwrap();
            let unsigned = format!(
                "{head}\n\n{body}\n\n{}",
                signatures
                    .lines()
                    .skip(1)
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            );
            assert_eq!(f.link(&unsigned), ProofLink::LogSignature);
            let other_policy = Policy::parse("quorum none\n").unwrap();
            assert_eq!(
                verify_proof_bundle(&good, &other_policy, 1_700_000_000)
                    .unwrap_err()
                    .link,
                ProofLink::LogSignature
            );

            // Witness quorum: one cosignature of the two required, or both dated in the
            // verifier's future.
            assert_eq!(f.link(&f.bundle(&f.extra, &[1])), ProofLink::WitnessQuorum);
            let error = verify_proof_bundle(&good, &f.policy, 1_600_000_000).unwrap_err();
            assert_eq!(error.link, ProofLink::WitnessQuorum);
            assert!(error.to_string().contains("dated in the future"), "{error}");
        }
    }
}
