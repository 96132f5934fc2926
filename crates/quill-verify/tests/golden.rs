//! Golden vectors: real QLDB values (Set A, the AWS CLI examples, kept in
//! `testdata/vectors/` at the repository root) and synthetic and Ion hash vectors (the §
//! numbers below are those of the project's QLDB verification notes, `qldb-verification.md`).

use ion_rs::{Element, Struct};
use quill_verify::{
    dot, fold, ion_hash, merkle_root, parse_proof, proof_to_ion_text, revision_hash,
    revisions_root, statement_digest, verify_block, verify_proof, verify_revision, Hash,
    VerifyError,
};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/vectors/qldb-cli-examples.ion"
);

fn set_a() -> Struct {
    let text =
        std::fs::read_to_string(VECTORS).expect("testdata/vectors is part of the repository");
    let values = Element::read_all(text).expect("the vector file is valid Ion");
    let set = values
        .iter()
        .find(|value| {
            value
                .annotations()
                .iter()
                .any(|a| a.text() == Some("set_a"))
        })
        .expect("the file holds set_a");
    set.as_struct().expect("set_a is a struct").clone()
}

fn field<'a>(parent: &'a Struct, name: &str) -> &'a Element {
    parent.get(name).unwrap_or_else(|| panic!("field {name}"))
}

fn sub<'a>(parent: &'a Struct, name: &str) -> &'a Struct {
    field(parent, name)
        .as_struct()
        .unwrap_or_else(|| panic!("{name} is a struct"))
}

fn blob(value: &Element) -> Hash {
    Hash::from_slice(value.as_blob().expect("a blob")).expect("32 bytes")
}

fn blobs(value: &Element) -> Vec<Hash> {
    value
        .as_sequence()
        .expect("a list")
        .iter()
        .map(blob)
        .collect()
}

fn b64(text: &str) -> Hash {
    Hash::from_base64(text).expect("valid base64 of 32 bytes")
}

fn hex(text: &str) -> Hash {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    Hash::from_slice(&bytes).unwrap()
}

fn ion(text: &str) -> Element {
    Element::read_one(text).unwrap()
}

fn revision(set: &Struct) -> Element {
    let block = sub(set, "block");
    field(block, "revisions")
        .as_sequence()
        .unwrap()
        .get(0)
        .unwrap()
        .clone()
}

#[test]
fn revision_hash_and_its_inputs() {
    let set = set_a();
    let derived = sub(&set, "derived");
    let revision = revision(&set);
    let revision = revision.as_struct().unwrap();
    let (metadata, data) = (field(revision, "metadata"), field(revision, "data"));
    assert_eq!(ion_hash(metadata), blob(field(derived, "metadataIonHash")));
    assert_eq!(ion_hash(data), blob(field(derived, "dataIonHash")));
    assert_eq!(
        revision_hash(metadata, Some(data)),
        blob(field(revision, "hash"))
    );
    assert_eq!(
        revision_hash(metadata, Some(data)),
        b64("mHVex/yjHAWjFPpwhBuH2GKXmKJjK2FBa9faqoUVNtg=")
    );
}

#[test]
fn statement_digest_and_transaction_info_hash() {
    let set = set_a();
    let block = sub(&set, "block");
    let info = field(block, "transactionInfo");
    let statement = field(info.as_struct().unwrap(), "statements")
        .as_sequence()
        .unwrap()
        .get(0)
        .unwrap();
    let statement = statement.as_struct().unwrap();
    let text = field(statement, "statement").as_string().unwrap();
    assert!(text.contains('\n'), "the statement keeps its real newlines");
    assert_eq!(
        statement_digest(text, &[]),
        blob(field(statement, "statementDigest"))
    );
    assert_eq!(
        statement_digest(text, &[]),
        b64("jcgPX2vsOJ0waum4qmDYtn1pCAT9xKNIzA+2k4R+mxA=")
    );

    let entries = blobs(field(block, "entriesHashList"));
    let derived = sub(&set, "derived");
    assert_eq!(
        ion_hash(info),
        blob(field(derived, "transactionInfoIonHash"))
    );
    assert_eq!(ion_hash(info), entries[3]);
}

#[test]
fn entries_hash_and_block_hash() {
    let set = set_a();
    let block = sub(&set, "block");
    let entries = blobs(field(block, "entriesHashList"));
    let revision_hash = blob(field(revision(&set).as_struct().unwrap(), "hash"));
    assert_eq!(
        revisions_root(&[revision_hash]),
        blob(field(sub(&set, "derived"), "revisionsRoot"))
    );
    let entries_hash = merkle_root(&entries).unwrap();
    assert_eq!(entries_hash, blob(field(block, "entriesHash")));
    assert_eq!(
        entries_hash,
        b64("l05LOsiKV14SDbuaYnH7uwXzUvqzIwUiRLXGbTyj/nY=")
    );
    let block_hash = dot(&entries_hash, &blob(field(block, "previousBlockHash")));
    assert_eq!(block_hash, blob(field(block, "blockHash")));
    assert_eq!(
        block_hash,
        b64("NoChM92yKRuJAb/jeLd1VnYn4DHiWIf071ACfic9uHc=")
    );
}

#[test]
fn every_revision_proof_step() {
    let set = set_a();
    let proof = blobs(field(sub(&set, "getRevision"), "proof"));
    let steps = blobs(field(sub(&set, "derived"), "revisionProofSteps"));
    assert_eq!(proof.len(), 10);
    assert_eq!(steps.len(), proof.len());
    let start = blob(field(revision(&set).as_struct().unwrap(), "hash"));
    for (taken, expected) in steps.iter().enumerate() {
        assert_eq!(
            fold(&start, &proof[..=taken]),
            *expected,
            "after {} proof elements",
            taken + 1
        );
    }
}

#[test]
fn both_proofs_fold_to_the_published_digest() {
    let set = set_a();
    let digest = blob(field(&set, "digest"));
    assert_eq!(digest, b64("6m6BMXobbJKpMhahwVthAEsN6awgnHK62Qq5McGP1Gk="));
    let block = sub(&set, "block");
    let block_proof = blobs(field(&set, "getBlockProof"));
    verify_proof(&blob(field(block, "blockHash")), &block_proof, &digest).unwrap();
    let revision_proof = blobs(field(sub(&set, "getRevision"), "proof"));
    verify_proof(
        &blob(field(revision(&set).as_struct().unwrap(), "hash")),
        &revision_proof,
        &digest,
    )
    .unwrap();
    // The revision proof is the in-block part, then previousBlockHash, then the block proof.
    assert_eq!(revision_proof[3..], block_proof[..]);
    assert_eq!(revision_proof[2], blob(field(block, "previousBlockHash")));
}

#[test]
fn verify_block_accepts_the_real_block() {
    let set = set_a();
    let block = field(&set, "block");
    assert_eq!(
        verify_block(block).unwrap(),
        b64("NoChM92yKRuJAb/jeLd1VnYn4DHiWIf071ACfic9uHc=")
    );
}

#[test]
fn verify_block_rejects_a_changed_document() {
    let set = set_a();
    let text = field(&set, "block").to_string();
    assert!(text.contains("\"Everett\""));
    let changed = ion(&text.replace("\"Everett\"", "\"Seattle\""));
    let err = verify_block(&changed).unwrap_err();
    assert!(
        matches!(&err, VerifyError::HashMismatch { field, .. } if field == "revisions[0].hash"),
        "{err}"
    );
    let changed = ion(&text.replace("INSERT INTO", "insert into"));
    let err = verify_block(&changed).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::NotInEntriesHashList {
                what: "transactionInfo hash",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn verify_revision_accepts_the_real_revision() {
    let set = set_a();
    let digest = blob(field(&set, "digest"));
    let proof_text = proof_to_ion_text(&blobs(field(sub(&set, "getRevision"), "proof")));
    let proof = parse_proof(&proof_text).unwrap();
    verify_revision(&revision(&set), &proof, &digest).unwrap();
    let err = verify_revision(&revision(&set), &proof[..9], &digest).unwrap_err();
    assert!(matches!(err, VerifyError::ProofMismatch { .. }));
}

#[test]
fn published_proof_text_parses() {
    let set = set_a();
    let text = field(&set, "getBlockProof").to_string();
    assert_eq!(
        parse_proof(&text).unwrap(),
        blobs(field(&set, "getBlockProof"))
    );
}

/// §1 and §11.6: Ion hashes of scalars and of each Set A field value.
#[test]
fn ion_hash_examples() {
    assert_eq!(
        ion_hash(&ion("\"hello\"")),
        hex("2b04b4828341281978fe1e2e82915b797a664ff00b8df7ebf557cdf495c2bfa8")
    );
    assert_eq!(
        ion_hash(&ion("{version:3}")),
        b64("63Y+nOv8x2IhVQVx6l4qqEFxnguO4aPM6hHjzeYmyWg=")
    );
    let set = set_a();
    let revision = revision(&set);
    let revision = revision.as_struct().unwrap();
    let metadata = sub(revision, "metadata");
    let data = sub(revision, "data");
    let cases = [
        (
            field(metadata, "id"),
            "R3NCI8EqVac9/3ukpv9zCaXHcPRx528I5y/Ps8ZAG1o=",
        ),
        (
            field(metadata, "version"),
            "UXiwNKFk49thAeWHg1CykHlQA9346LlXK4s+CF0T2YU=",
        ),
        (
            field(metadata, "txTime"),
            "dgCFTY2YTWS96SeQWRY4/Gj8fifd3LsiiknOpOOOr0g=",
        ),
        (
            field(metadata, "txId"),
            "RoynFW3rVHzSUsC+V3ByfpqDTw1aIoYDpatBWRkTFvc=",
        ),
        (
            field(data, "PendingPenaltyTicketAmount"),
            "ilnxQ0EnbA7/KgP6b7AYTYkHyWSpsK3eSLUKVXfWGsM=",
        ),
        (
            field(data, "ValidFromDate"),
            "3YfTv2A6M89kbpEJWTJTgjXdIfmscoE+T2dx149M6no=",
        ),
        (
            field(data, "ValidToDate"),
            "DSV/YyZLJEgBZDlwc2rBYlr3r7zT8LsDfvjfou8iMBQ=",
        ),
        (
            field(data, "Owners"),
            "Yn46opv4IeXE4NtX6H0NNqjij1AtFxzXXcJaBtWaB0E=",
        ),
        (
            field(data, "VIN"),
            "H681sL3o9alq77G1k/py4hLtNf69gSEqthvvtYqLX+k=",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(ion_hash(value), b64(expected), "H({value})");
    }
    // Precision is part of the value: 90.25 and 90.250 hash differently.
    assert_ne!(ion_hash(&ion("90.25")), ion_hash(&ion("90.250")));
}

/// §11.5 X1: every byte compares as signed, not only byte 31.
#[test]
fn dot_orders_every_byte_as_signed() {
    let mut a = [0x11u8; 32];
    a[30] = 0x7f;
    a[31] = 0x42;
    let mut b = a;
    b[30] = 0x80;
    let (a, b) = (Hash(a), Hash(b));
    assert_eq!(
        dot(&a, &b),
        hex("15d94c61c2c60b3fe1c4e278edd7415e2493d3533ac289938062669fdb3d3268")
    );
    assert_eq!(dot(&b, &a), dot(&a, &b));
}
