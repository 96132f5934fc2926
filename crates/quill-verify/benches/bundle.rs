//! Offline verification time of one revision proof bundle (`verify_proof_bundle`): a revision
//! in a block of 1,000,000, with its QLDB in-block proof, the RFC 6962 inclusion proof of the
//! block leaf (20 hashes), and a checkpoint signed by the log and cosigned by 3 witnesses
//! under a 2-of-3 policy. Prints p50 and p99 on one core. Run with
//! `cargo bench -p quill-verify --bench bundle`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer as _, SigningKey};
use ion_rs::Element;
use quill_verify::tlog::note::{cosignature_message, TYPE_COSIGNATURE, TYPE_ED25519};
use quill_verify::tlog::{
    rfc6962, verify_proof_bundle, BlockLeaf, Checkpoint, Note, NoteSignature, Policy,
    RevisionExtra, TlogProof, VerifierKey,
};
use quill_verify::{
    block_hash, entries_hash, revision_hash, revision_to_block_path, revisions_root, Hash,
};

const BLOCKS: u64 = 1_000_000;
const PROVEN: u64 = 765_432;
const NOW: u64 = 1_800_000_000;
const MEASURE_TIME: Duration = Duration::from_secs(3);

fn key(name: &str, key_type: u8, seed: u8) -> (SigningKey, VerifierKey) {
    let secret = SigningKey::from_bytes(&[seed; 32]);
    let public = VerifierKey::new(name, key_type, secret.verifying_key().to_bytes()).unwrap();
    (secret, public)
}

fn main() {
    // The proven block: four revisions, the third proven.
    let revisions: Vec<(Element, Hash)> = (0..4)
        .map(|n| {
            let metadata = Element::read_one(format!(
                "{{id: \"DOC{n}\", version: 0, txTime: 2026-12-07T04:00:00.000Z, txId: \"TX\"}}"
            ))
            .unwrap();
            let data =
                Element::read_one(format!("{{invoice: \"INV-{n}\", total: {n}.50}}")).unwrap();
            let hash = revision_hash(&metadata, Some(&data));
            let text = format!(
                "{{blockAddress: {{strandId: \"S\", sequenceNo: {PROVEN}}}, hash: {{{{{}}}}}, data: {data}, metadata: {metadata}}}",
                hash.to_base64()
            );
            (Element::read_one(text).unwrap(), hash)
        })
        .collect();
    let hashes: Vec<Hash> = revisions.iter().map(|(_, h)| *h).collect();
    let list = [
        Hash::sha256(b"header"),
        revisions_root(&hashes),
        Hash::sha256(b"catalog"),
        Hash::sha256(b"transaction info"),
    ];
    let previous = Hash::sha256(b"previous block");
    let entries = entries_hash(&list);
    let leaf = BlockLeaf {
        sequence_no: PROVEN,
        block_hash: block_hash(&entries, Some(&previous)),
        entries_hash: entries,
        previous_block_hash: Some(previous),
    };
    let extra = RevisionExtra {
        leaf,
        revision: revisions[2].0.clone(),
        proof: revision_to_block_path(&hashes, 2, &list, Some(&previous)),
    };
    // The other leaves only need distinct hashes.
    let leaf_hashes: Vec<Hash> = (0..BLOCKS)
        .map(|i| {
            if i == PROVEN {
                rfc6962::leaf_hash(&leaf.to_bytes())
            } else {
                rfc6962::leaf_hash(&i.to_be_bytes())
            }
        })
        .collect();
    let (log_secret, log_key) = key("bench.example/quill/shop", TYPE_ED25519, 1);
    let text = Checkpoint {
        origin: log_key.name.clone(),
        size: BLOCKS,
        root: rfc6962::root(&leaf_hashes),
        extensions: vec![],
    }
    .to_text();
    let mut signatures = vec![NoteSignature {
        name: log_key.name.clone(),
        key_id: log_key.key_id(),
        signature: log_secret.sign(text.as_bytes()).to_bytes().to_vec(),
    }];
    let mut policy = format!("log {log_key}\n");
    for i in 0..3u8 {
        let (secret, vkey) = key(&format!("w{i}.example"), TYPE_COSIGNATURE, 10 + i);
        let mut signature = NOW.to_be_bytes().to_vec();
        signature.extend_from_slice(&secret.sign(&cosignature_message(NOW, &text)).to_bytes());
        signatures.push(NoteSignature {
            name: vkey.name.clone(),
            key_id: vkey.key_id(),
            signature,
        });
        policy.push_str(&format!("witness w{i} {vkey}\n"));
    }
    policy.push_str("group g 2 w0 w1 w2\nquorum g\n");
    let policy = Policy::parse(&policy).unwrap();
    let bundle = TlogProof {
        extra: Some(extra.to_bytes()),
        index: PROVEN,
        hashes: rfc6962::inclusion_proof(&leaf_hashes, PROVEN as usize),
        checkpoint: Note { text, signatures }.to_text(),
    }
    .to_text();
    verify_proof_bundle(&bundle, &policy, NOW).expect("the bundle verifies");

    for _ in 0..100 {
        black_box(verify_proof_bundle(black_box(&bundle), &policy, NOW).is_ok());
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < MEASURE_TIME {
        let begin = Instant::now();
        black_box(verify_proof_bundle(black_box(&bundle), &policy, NOW).is_ok());
        samples.push(begin.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "revision proof bundle ({} bytes, {BLOCKS} blocks, 4 signatures checked): {} verifications, p50 {:?}, p99 {:?}",
        bundle.len(),
        samples.len(),
        at(0.5),
        at(0.99)
    );
}
