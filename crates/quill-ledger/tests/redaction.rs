//! REDACT_REVISION: QLDB's rules, `dataHash` everywhere a revision is shown, every hash and
//! proof unchanged, and the data physically gone from the journal (files, or rows in
//! PostgreSQL) and every file of the ledger directory or cache, also when the power fails
//! part-way (simulated disk, embedded only). On both backends unless a test says why not.

mod common;

use std::path::{Path, PathBuf};

use common::{files_containing, on_both_backends, Backend, Home};
use ion_rs::Element;
use quill_ledger::storage::{SimulatedDisk, Storage};
use quill_ledger::{BlockAddress, Ledger, LedgerError, LedgerOptions, RedactionRequest};

const MARKER: &str = "REDACT-ME-7f3c9e2b41d5";

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

fn secret(version: u32) -> Element {
    ion(&format!(
        "{{owner: \"{MARKER}\", note: \"{MARKER}-{version}\", n: {version}}}"
    ))
}

on_both_backends!(
    redaction_keeps_every_hash_and_erases_the_data_from_every_file,
    redaction_follows_qldb_rules,
    concurrent_redactions_of_one_revision_conflict,
);

/// A ledger with an indexed table and one document: version 0 holds the marker (also in
/// the indexed field), version 1 does not. Returns (table id, document id, block of v0).
fn setup(ledger: &Ledger) -> (String, String, BlockAddress) {
    let (table_id, id) = ledger
        .transact(|tx| {
            let table_id = tx.create_table("Person", None)?;
            tx.create_index("Person", "owner")?;
            Ok((table_id, tx.insert("Person", secret(0))?))
        })
        .unwrap();
    ledger
        .transact(|tx| tx.update("Person", &id, ion("{owner: \"someone else\", n: 1}")))
        .unwrap();
    let history = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap();
    (table_id, id, history[0].block_address.clone())
}

fn redact(ledger: &Ledger, address: &BlockAddress, table_id: &str, id: &str) -> RedactionRequest {
    let mut tx = ledger.begin().unwrap();
    let request = tx.redact_revision(address, table_id, id).unwrap();
    tx.commit().unwrap();
    request
}

fn redaction_error(ledger: &Ledger, address: &BlockAddress, table_id: &str, id: &str) -> String {
    let mut tx = ledger.begin().unwrap();
    tx.redact_revision(address, table_id, id)
        .unwrap_err()
        .to_string()
}

fn redaction_keeps_every_hash_and_erases_the_data_from_every_file(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("redaction");
    let (table_id, id, address) = setup(&ledger);
    let before = ledger.revision(address.sequence_no, &id).unwrap();
    let block_before = ledger.block(address.sequence_no).unwrap();
    assert!(home.journal_holds("redaction", MARKER.as_bytes()));
    if backend == Backend::Postgres {
        assert!(!home.database_files_containing(MARKER.as_bytes()).is_empty());
    }

    let request = redact(&ledger, &address, &table_id, &id);
    assert_eq!(
        request.to_element(),
        ion(&format!(
            "{{blockAddress: {}, tableId: \"{table_id}\", documentId: \"{id}\", version: 0}}",
            address.to_ion_text()
        ))
    );

    // history(): dataHash, no data, same hash.
    let history = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap();
    let data_hash = quill_verify::ion_hash(&secret(0));
    assert_eq!(history[0].data, None);
    assert_eq!(history[0].data_hash, Some(data_hash));
    assert_eq!(history[0].hash, before.hash);
    assert!(history[1].data.is_some());

    // GetRevision and its proof; GetBlock: same block hash, dataHash in place of data.
    let revision = ledger.revision(address.sequence_no, &id).unwrap();
    assert_eq!(revision.data_hash, Some(data_hash));
    let digest = ledger.digest();
    let proof = ledger
        .revision_proof(address.sequence_no, &id, digest.tip.sequence_no)
        .unwrap();
    quill_verify::verify_revision(&revision.to_element(), &proof, &digest.digest).unwrap();
    let block = ledger.block(address.sequence_no).unwrap();
    let block_hash = quill_verify::verify_quill_block(&block).unwrap();
    assert_eq!(
        block_hash,
        quill_verify::verify_quill_block(&block_before).unwrap()
    );
    let text = format!("{block}");
    assert!(
        text.contains("dataHash") && !text.contains(MARKER),
        "{text}"
    );

    // The redacting block carries redactionInfo, bound into its hash by catalogChanges.
    let tip = ledger.block(digest.tip.sequence_no).unwrap();
    let info = tip.as_struct().unwrap().get("redactionInfo").unwrap();
    assert_eq!(
        info,
        &ion(&format!("{{revisions: [{}]}}", request.to_element()))
    );
    quill_verify::verify_quill_block(&tip).unwrap();
    assert_eq!(
        ledger.verify(&mut |_, _| {}).unwrap(),
        digest.tip.sequence_no + 1
    );

    // The journal is erased at commit; redb's free pages may keep old copies until the
    // ledger is next opened, which rebuilds derived state from the erased journal.
    assert!(!home.journal_holds("redaction", MARKER.as_bytes()));
    if backend == Backend::Postgres {
        // PostgreSQL keeps the row's old version until VACUUM, which docs/scale-out.md tells
        // operators to run after a redaction: then no file of the database holds the data
        // (its WAL still does until recycled, as documented).
        home.sql().batch_execute("VACUUM quill_blocks").unwrap();
        assert_eq!(
            home.database_files_containing(MARKER.as_bytes()),
            Vec::<PathBuf>::new()
        );
    }
    drop(ledger);
    let ledger = home.open_default("redaction");
    // A PostgreSQL ledger's cache is kept too, and completes the redaction the same way.
    let recovery = ledger.recovery_report();
    assert_eq!(recovery.redactions_completed, 1);
    assert!(recovery.state_rebuilt);
    assert_eq!(
        files_containing(home.dir(), MARKER.as_bytes()),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        ledger.verify(&mut |_, _| {}).unwrap(),
        digest.tip.sequence_no + 1
    );
    assert_eq!(ledger.digest(), digest);
    let history = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap();
    assert_eq!(history[0].data_hash, Some(data_hash));
    // The index was rebuilt from the journal and still answers for the current revision.
    let found = ledger
        .transact(|tx| tx.index_lookup("Person", "owner", &ion("\"someone else\"")))
        .unwrap()
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        redaction_error(&ledger, &address, &table_id, &id),
        format!("Invalid input: the revision of document {id} with version 0 is already redacted")
    );
    drop(ledger);
    let ledger = home.open_default("redaction");
    assert_eq!(ledger.recovery_report().redactions_completed, 0);
}

fn redaction_follows_qldb_rules(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("rules");
    let (table_id, id, address) = setup(&ledger);
    let latest = ledger
        .transact(|tx| tx.history(&table_id, Some(&id), None, None))
        .unwrap()[1]
        .block_address
        .clone();
    assert_eq!(
        redaction_error(&ledger, &latest, &table_id, &id),
        format!("Invalid input: the latest active revision of a document cannot be redacted (document {id}, version 1)")
    );
    let other_table = ledger
        .transact(|tx| tx.create_table("Other", None))
        .unwrap();
    assert!(redaction_error(&ledger, &address, &other_table, &id)
        .contains(&format!("belongs to table {table_id}")));
    assert!(
        redaction_error(&ledger, &address, "NoSuchTable0000000000x", &id)
            .starts_with("No such table")
    );
    assert!(
        redaction_error(&ledger, &address, &table_id, "NoSuchDocument00000000")
            .contains("has no revision in block")
    );
    let elsewhere = BlockAddress {
        strand_id: "AnotherStrand000000000".into(),
        ..address.clone()
    };
    assert!(redaction_error(&ledger, &elsewhere, &table_id, &id).contains("strand"));
    let future = BlockAddress {
        sequence_no: 1_000,
        ..address.clone()
    };
    assert!(redaction_error(&ledger, &future, &table_id, &id).contains("no committed block"));

    // One redaction per transaction; the failed second call leaves the first in place.
    let second = ledger
        .transact(|tx| tx.insert("Person", ion("{owner: \"b\"}")))
        .unwrap();
    ledger
        .transact(|tx| tx.update("Person", &second, ion("{owner: \"c\"}")))
        .unwrap();
    let second_v0 = ledger
        .transact(|tx| tx.history(&table_id, Some(&second), None, None))
        .unwrap()[0]
        .block_address
        .clone();
    let mut tx = ledger.begin().unwrap();
    tx.redact_revision(&address, &table_id, &id).unwrap();
    let error = tx
        .redact_revision(&second_v0, &table_id, &second)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Invalid input: only one revision can be redacted per transaction"
    );
    tx.commit().unwrap();

    // A deletion revision holds no data; the revisions before it are inactive.
    ledger.transact(|tx| tx.delete("Person", &second)).unwrap();
    let history = ledger
        .transact(|tx| tx.history(&table_id, Some(&second), None, None))
        .unwrap();
    assert!(
        redaction_error(&ledger, &history[2].block_address, &table_id, &second)
            .contains("latest active revision")
    );
    redact(&ledger, &history[1].block_address, &table_id, &second);
    ledger.verify(&mut |_, _| {}).unwrap();
}

fn concurrent_redactions_of_one_revision_conflict(backend: Backend) {
    let home = Home::new(backend);
    let ledger = home.create_default("conflict");
    let (table_id, id, address) = setup(&ledger);
    let mut first = ledger.begin().unwrap();
    let mut second = ledger.begin().unwrap();
    first.redact_revision(&address, &table_id, &id).unwrap();
    second.redact_revision(&address, &table_id, &id).unwrap();
    first.commit().unwrap();
    assert!(matches!(
        second.commit(),
        Err(LedgerError::OccConflict { .. })
    ));
}

fn simulated(disk: &SimulatedDisk) -> LedgerOptions {
    LedgerOptions {
        storage: Storage::Simulated(disk.clone()),
        ..LedgerOptions::default()
    }
}

/// Power fails at every mutating disk call of the redacting commit and its erasure in turn.
/// After reboot and open the ledger verifies with its digest unchanged up to the redaction,
/// and the revision either still holds its data (the request was not acknowledged) or is
/// redacted and gone from every file; an acknowledged request is always completed. Embedded
/// only: a power cut of the machine PostgreSQL runs on is PostgreSQL's to survive, and a
/// PostgreSQL ledger erases its journal with one `UPDATE` (a crashed server's cache dies with
/// it).
#[test]
fn power_loss_during_redaction_never_leaves_a_half_erased_revision() {
    let dir = Path::new("/ledger");
    let mut completed_rounds = 0;
    for cut_after in 0.. {
        let disk = SimulatedDisk::new(cut_after);
        let ledger = Ledger::create(dir, "power", simulated(&disk)).unwrap();
        let (table_id, id, address) = setup(&ledger);
        let digest = ledger.digest();
        disk.cut_power_after(cut_after);
        let acknowledged = ledger.begin().and_then(|mut tx| {
            tx.redact_revision(&address, &table_id, &id)?;
            tx.commit()
        });
        let finished = !disk.is_power_cut();
        disk.cut_power();
        drop(ledger);
        let rebooted = disk.after_power_cut(cut_after).unwrap();
        let ledger = Ledger::open(dir, simulated(&rebooted))
            .unwrap_or_else(|e| panic!("cut after {cut_after} calls: reopen failed: {e}"));
        ledger
            .verify(&mut |_, _| {})
            .unwrap_or_else(|e| panic!("cut after {cut_after} calls: {e}"));
        assert_eq!(ledger.digest_at(digest.tip.sequence_no).unwrap(), digest);
        let revision = ledger.revision(address.sequence_no, &id).unwrap();
        let history = ledger
            .transact(|tx| tx.history(&table_id, Some(&id), None, None))
            .unwrap();
        if revision.data_hash.is_some() {
            assert_eq!(
                history[0].data_hash, revision.data_hash,
                "cut after {cut_after}"
            );
            assert_eq!(
                rebooted.files_containing(MARKER.as_bytes()),
                Vec::<PathBuf>::new(),
                "cut after {cut_after} calls"
            );
        } else {
            assert!(
                acknowledged.is_err(),
                "cut after {cut_after}: acknowledged, not redacted"
            );
            assert_eq!(history[0].data, Some(secret(0)), "cut after {cut_after}");
        }
        if finished {
            completed_rounds += 1;
            if completed_rounds == 3 {
                assert!(
                    cut_after > 10,
                    "the redaction made too few disk calls to cover"
                );
                break;
            }
        }
    }
}
