//! Every read a transaction could act on is validated at commit, whatever the access path
//! (index lookup, scan, by id, committed view, history) and whether or not the transaction
//! wrote anything (QLDB validates read-only transactions too). On both backends.

mod common;

use common::{on_both_backends, Backend, Home};
use ion_rs::Element;
use quill_ledger::{Document, Ledger, LedgerOptions, Transaction};

fn ion(text: &str) -> Element {
    Element::read_one(text.as_bytes()).unwrap()
}

/// A ledger with table `Acct` (indexed on `id`) holding accounts A and B, and an empty table
/// `Log`. Returns the document ids of A and B.
fn bank(backend: Backend, options: LedgerOptions) -> (Home, Ledger, String, String) {
    let home = Home::new(backend);
    let ledger = home.create("occ", options);
    let (a, b) = ledger
        .transact(|tx| {
            tx.create_table("Acct", None)?;
            tx.create_table("Log", None)?;
            tx.create_index("Acct", "id")?;
            Ok((
                tx.insert("Acct", ion("{id: \"A\", bal: 10}"))?,
                tx.insert("Acct", ion("{id: \"B\", bal: 10}"))?,
            ))
        })
        .unwrap();
    (home, ledger, a, b)
}

fn lookup(tx: &mut Transaction, key: &str) -> Vec<Document> {
    tx.index_lookup("Acct", "id", &Element::string(key))
        .unwrap()
        .expect("Acct is indexed on id")
}

fn scan_count(tx: &mut Transaction, table: &str) -> usize {
    let mut count = 0;
    tx.scan(table, &mut |_| {
        count += 1;
        Ok(true)
    })
    .unwrap();
    count
}

on_both_backends!(
    an_indexed_read_then_a_write_elsewhere_conflicts_with_an_update_of_the_document,
    a_scan_then_a_write_elsewhere_conflicts_with_an_update,
    an_indexed_read_only_transaction_conflicts_and_writes_no_block,
    a_scanning_read_only_transaction_conflicts,
    a_read_only_transaction_commits_without_a_block_when_its_reads_are_unchanged,
    an_index_lookup_still_guards_its_key_against_phantoms,
    reads_by_document_id_conflict_read_only_and_with_a_write_elsewhere,
    committed_view_reads_conflict,
    history_reads_conflict,
    the_test_only_switch_reopens_both_holes,
);

/// `UPDATE Acct SET bal = bal - 1` on one document, committed by another transaction. The
/// indexed field keeps its value, so no index key changes: only the document does.
fn concurrent_withdraw(ledger: &Ledger, doc_id: &str) {
    ledger
        .transact(|tx| tx.update("Acct", doc_id, ion("{id: \"A\", bal: 9}")))
        .unwrap();
}

fn assert_conflict(tx: Transaction) {
    let outcome = tx.commit();
    assert!(
        matches!(&outcome, Err(e) if e.is_occ_conflict()),
        "expected an OCC conflict, got {outcome:?}"
    );
}

fn an_indexed_read_then_a_write_elsewhere_conflicts_with_an_update_of_the_document(
    backend: Backend,
) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let mut tx = ledger.begin().unwrap();
    assert_eq!(lookup(&mut tx, "A").len(), 1);
    tx.insert("Log", ion("{seen: 10}")).unwrap();
    concurrent_withdraw(&ledger, &a);
    assert_conflict(tx);
}

fn a_scan_then_a_write_elsewhere_conflicts_with_an_update(backend: Backend) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let mut tx = ledger.begin().unwrap();
    assert_eq!(scan_count(&mut tx, "Acct"), 2);
    tx.insert("Log", ion("{seen: 20}")).unwrap();
    concurrent_withdraw(&ledger, &a);
    assert_conflict(tx);
}

fn an_indexed_read_only_transaction_conflicts_and_writes_no_block(backend: Backend) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let mut tx = ledger.begin().unwrap();
    assert_eq!(lookup(&mut tx, "A").len(), 1);
    concurrent_withdraw(&ledger, &a);
    let tip = ledger.digest().tip.sequence_no;
    assert_conflict(tx);
    assert_eq!(ledger.digest().tip.sequence_no, tip);
}

fn a_scanning_read_only_transaction_conflicts(backend: Backend) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let mut tx = ledger.begin().unwrap();
    assert_eq!(scan_count(&mut tx, "Acct"), 2);
    concurrent_withdraw(&ledger, &a);
    assert_conflict(tx);
}

fn a_read_only_transaction_commits_without_a_block_when_its_reads_are_unchanged(backend: Backend) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let tip = ledger.digest().tip.sequence_no;
    // Another key's document changes, and a document of another table is added.
    let mut tx = ledger.begin().unwrap();
    assert_eq!(lookup(&mut tx, "B").len(), 1);
    assert_eq!(scan_count(&mut tx, "Log"), 0);
    assert!(tx.get("Acct", "nonexistent").unwrap().is_none());
    concurrent_withdraw(&ledger, &a);
    let receipt = tx.commit().unwrap();
    assert!(receipt.block_address.is_none());
    assert_eq!(ledger.digest().tip.sequence_no, tip + 1);
    // Nothing read at all.
    ledger.begin().unwrap().commit().unwrap();
}

fn an_index_lookup_still_guards_its_key_against_phantoms(backend: Backend) {
    let (_home, ledger, _, _) = bank(backend, LedgerOptions::default());
    let mut tx = ledger.begin().unwrap();
    assert!(lookup(&mut tx, "C").is_empty());
    ledger
        .transact(|tx| tx.insert("Acct", ion("{id: \"C\", bal: 1}")))
        .unwrap();
    assert_conflict(tx);
}

fn reads_by_document_id_conflict_read_only_and_with_a_write_elsewhere(backend: Backend) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let mut read_only = ledger.begin().unwrap();
    let mut writer = ledger.begin().unwrap();
    assert!(read_only.get("Acct", &a).unwrap().is_some());
    assert!(writer.get("Acct", &a).unwrap().is_some());
    writer.insert("Log", ion("{seen: 10}")).unwrap();
    concurrent_withdraw(&ledger, &a);
    assert_conflict(read_only);
    assert_conflict(writer);
}

fn committed_view_reads_conflict(backend: Backend) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let mut by_id = ledger.begin().unwrap();
    let mut whole = ledger.begin().unwrap();
    assert_eq!(by_id.committed("Acct", Some(&a)).unwrap().len(), 1);
    assert_eq!(whole.committed("Acct", None).unwrap().len(), 2);
    whole.insert("Log", ion("{seen: 2}")).unwrap();
    concurrent_withdraw(&ledger, &a);
    assert_conflict(by_id);
    assert_conflict(whole);
}

fn history_reads_conflict(backend: Backend) {
    let (_home, ledger, a, _) = bank(backend, LedgerOptions::default());
    let table_id = ledger.transact(|tx| tx.table("Acct")).unwrap().table_id;
    let mut by_id = ledger.begin().unwrap();
    let mut whole = ledger.begin().unwrap();
    assert_eq!(
        by_id
            .history(&table_id, Some(&a), None, None)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(whole.history(&table_id, None, None, None).unwrap().len(), 2);
    by_id.insert("Log", ion("{seen: 1}")).unwrap();
    concurrent_withdraw(&ledger, &a);
    assert_conflict(by_id);
    assert_conflict(whole);
}

fn the_test_only_switch_reopens_both_holes(backend: Backend) {
    let options = LedgerOptions {
        occ_read_holes: true,
        ..LedgerOptions::default()
    };
    let (_home, ledger, a, _) = bank(backend, options);
    let mut writer = ledger.begin().unwrap();
    let mut read_only = ledger.begin().unwrap();
    assert_eq!(lookup(&mut writer, "A").len(), 1);
    assert_eq!(scan_count(&mut read_only, "Acct"), 2);
    writer.insert("Log", ion("{seen: 10}")).unwrap();
    concurrent_withdraw(&ledger, &a);
    writer.commit().unwrap();
    read_only.commit().unwrap();
}
