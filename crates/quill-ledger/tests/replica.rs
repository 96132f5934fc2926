//! A mirror's copy of a ledger: blocks read from one ledger's journal, re-verified and
//! appended unchanged to a replica ledger of the same strand, which refuses any other block
//! and any commit of its own, and erases what a copied redaction erased at the origin.

mod common;

use common::files_containing;
use ion_rs::Element;
use quill_ledger::{BlockAddress, Importer, Ledger, LedgerError, LedgerOptions};
use quill_verify::Hash;

fn replica() -> LedgerOptions {
    LedgerOptions {
        replica: true,
        ..Default::default()
    }
}

/// The block a refusal names.
fn refused_block(error: LedgerError) -> u64 {
    match error {
        LedgerError::ImportRejected {
            block_address: BlockAddress { sequence_no, .. },
            ..
        } => sequence_no,
        other => panic!("not an import refusal: {other}"),
    }
}

#[test]
fn a_replica_holds_exactly_the_blocks_it_is_given_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let origin =
        Ledger::create(&dir.path().join("origin"), "shop", LedgerOptions::default()).unwrap();
    let ids: Vec<String> = (0..10)
        .map(|n| {
            origin
                .transact(|tx| {
                    if n == 0 {
                        tx.create_table("Item", None)?;
                    }
                    tx.insert("Item", Element::read_one(format!("{{n: {n}}}")).unwrap())
                })
                .unwrap()
        })
        .collect();
    let blocks = origin.digest().tip.sequence_no + 1;
    assert_eq!(blocks, 11);
    let payloads = origin.journal_payloads(0, blocks, usize::MAX).unwrap();
    let hash = |n: u64| origin.block_hashes(n).unwrap().hash;

    // The first blocks make the replica (staged, then published).
    let mut importer = Importer::create(
        &dir.path().join(".copy"),
        "shop",
        origin.strand_id(),
        replica(),
    )
    .unwrap();
    for (n, payload) in payloads[..4].iter().enumerate() {
        importer.push_payload(payload, hash(n as u64)).unwrap();
    }
    let copy = importer
        .finish(&dir.path().join("copy"), |_| Ok(()))
        .unwrap();
    assert_eq!(copy.digest(), origin.digest_at(3).unwrap());

    let rest: Vec<(&[u8], Hash)> = (4..blocks)
        .map(|n| (payloads[n as usize].as_slice(), hash(n)))
        .collect();
    // An altered block and one out of place are refused, naming it, and nothing is appended.
    let mut altered = payloads[4].clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert_eq!(
        refused_block(copy.append_verified(&[(&altered, hash(4))]).unwrap_err()),
        4
    );
    assert_eq!(
        refused_block(copy.append_verified(&rest[1..]).unwrap_err()),
        4
    );
    assert_eq!(copy.digest().tip.sequence_no, 3);
    // A block that is not the one the caller expects is refused after the good ones before it.
    let mut wrong = rest.clone();
    wrong[3].1 = Hash([7; 32]);
    assert_eq!(refused_block(copy.append_verified(&wrong).unwrap_err()), 7);
    assert_eq!(copy.digest(), origin.digest_at(6).unwrap());

    // The right ones: the same chain, the same bytes, the same documents.
    copy.append_verified(&rest[3..]).unwrap();
    assert_eq!(copy.digest(), origin.digest());
    assert_eq!(
        copy.journal_payloads(0, blocks, usize::MAX).unwrap(),
        payloads
    );
    let mut tx = copy.begin().unwrap();
    let document = tx.get("Item", &ids[9]).unwrap().unwrap();
    assert_eq!(document.data, Element::read_one("{n: 9}").unwrap());
    tx.commit().unwrap();

    // Its own writes are refused; reads commit.
    let error = copy
        .transact(|tx| tx.insert("Item", Element::read_one("{n: 99}").unwrap()))
        .unwrap_err();
    assert!(matches!(error, LedgerError::ReadOnly(_)), "{error}");
    assert_eq!(copy.digest(), origin.digest());

    // Reopened, it is the same copy and keeps following.
    drop(copy);
    let copy = Ledger::open(&dir.path().join("copy"), replica()).unwrap();
    assert_eq!(copy.digest(), origin.digest());
    origin
        .transact(|tx| tx.insert("Item", Element::read_one("{n: 10}").unwrap()))
        .unwrap();
    let next = origin
        .journal_payloads(blocks, blocks + 1, usize::MAX)
        .unwrap();
    copy.append_verified(&[(&next[0], hash(blocks))]).unwrap();
    assert_eq!(copy.digest(), origin.digest());
}

/// A copy made before the origin redacted a revision: copying the redacting block erases the
/// revision's data from the copy's journal, and from its derived state once reopened, as the
/// origin's own commit did; every hash is unchanged.
#[test]
fn a_copied_redaction_erases_the_data_from_the_copy() {
    const MARKER: &str = "ERASE-ME-3b8d0c";
    let dir = tempfile::tempdir().unwrap();
    let origin =
        Ledger::create(&dir.path().join("origin"), "shop", LedgerOptions::default()).unwrap();
    let (table_id, id) = origin
        .transact(|tx| {
            let table_id = tx.create_table("Person", None)?;
            let document = Element::read_one(format!("{{owner: \"{MARKER}\"}}")).unwrap();
            Ok((table_id, tx.insert("Person", document)?))
        })
        .unwrap();
    origin
        .transact(|tx| tx.update("Person", &id, Element::read_one("{owner: \"x\"}").unwrap()))
        .unwrap();
    let copy_dir = dir.path().join("copy");
    let blocks = origin.digest().tip.sequence_no + 1;
    let payloads = origin.journal_payloads(0, blocks, usize::MAX).unwrap();
    let mut importer = Importer::create(
        &dir.path().join(".copy"),
        "shop",
        origin.strand_id(),
        replica(),
    )
    .unwrap();
    for (n, payload) in payloads.iter().enumerate() {
        let hash = origin.block_hashes(n as u64).unwrap().hash;
        importer.push_payload(payload, hash).unwrap();
    }
    let copy = importer.finish(&copy_dir, |_| Ok(())).unwrap();
    assert!(!files_containing(&copy_dir, MARKER.as_bytes()).is_empty());

    let inserted = BlockAddress {
        strand_id: origin.strand_id().to_owned(),
        sequence_no: 1,
    };
    let mut tx = origin.begin().unwrap();
    tx.redact_revision(&inserted, &table_id, &id).unwrap();
    tx.commit().unwrap();
    let redacting = origin
        .journal_payloads(blocks, blocks + 1, usize::MAX)
        .unwrap();
    let hash = origin.block_hashes(blocks).unwrap().hash;
    copy.append_verified(&[(&redacting[0], hash)]).unwrap();

    assert_eq!(copy.digest(), origin.digest());
    let revision = copy.revision(1, &id).unwrap();
    assert_eq!(revision.data, None);
    assert!(revision.data_hash.is_some());
    assert_eq!(revision, origin.revision(1, &id).unwrap());
    let block = format!("{}", copy.block(1).unwrap());
    assert!(!block.contains(MARKER), "{block}");
    assert!(files_containing(&copy_dir.join("journal"), MARKER.as_bytes()).is_empty());
    assert_eq!(copy.verify(&mut |_, _| {}).unwrap(), blocks + 1);
    // Reopened, derived state is rebuilt from the erased journal: no file keeps the data.
    drop(copy);
    let copy = Ledger::open(&copy_dir, replica()).unwrap();
    assert_eq!(copy.digest(), origin.digest());
    assert_eq!(
        files_containing(&copy_dir, MARKER.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn journal_payloads_stop_at_the_byte_budget_but_return_at_least_one_block() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::create(dir.path(), "shop", LedgerOptions::default()).unwrap();
    ledger
        .transact(|tx| tx.create_table("Item", None).map(|_| ()))
        .unwrap();
    let all = ledger.journal_payloads(0, 2, usize::MAX).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(ledger.journal_payloads(0, 2, 1).unwrap(), all[..1]);
    assert_eq!(
        ledger.journal_payloads(0, 2, all[0].len() + 1).unwrap(),
        all
    );
    assert!(ledger.journal_payloads(1, 1, 1).unwrap().is_empty());
    assert!(matches!(
        ledger.journal_payloads(0, 3, usize::MAX),
        Err(LedgerError::UnknownBlock(_))
    ));
}
