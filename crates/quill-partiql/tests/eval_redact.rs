//! `EXEC REDACT_REVISION` through the evaluator, as the AWS DMV sample runs it
//! (`redact_revision.py`): the block address as a parameter or an Ion literal, QLDB's result
//! document, `dataHash` in `history()`, and the documented limits.

mod eval_support;

use std::path::Path;

use eval_support::{ion, text_field, Db};
use ion_rs::Element;
use quill_partiql::PartiqlError;

const MARKER: &str = "partiql-redaction-marker-51c7";

/// Whether any file of the journal directory holds `needle`.
fn journal_holds(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .any(|entry| {
            std::fs::read(entry.unwrap().path())
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
}

/// Inserts a person through a parameter, then renames them so version 0 is inactive.
/// Returns (table id, document id, version 0's history row).
fn person_with_history(db: &Db, gov_id: &str, name: &str) -> (String, String, Element) {
    db.qp(
        "INSERT INTO Person ?",
        &[ion(&format!("{{GovId: \"{gov_id}\", Name: \"{name}\"}}"))],
    );
    db.qp(
        "UPDATE Person AS p SET p.Name = 'Renamed' WHERE p.GovId = ?",
        &[Element::string(gov_id)],
    );
    let table_id = db
        .q("SELECT VALUE tableId FROM information_schema.user_tables WHERE name = 'Person'")[0]
        .as_text()
        .unwrap()
        .to_owned();
    let document_id = text_field(
        &db.qp(
            "SELECT id FROM Person AS p BY id WHERE p.GovId = ?",
            &[Element::string(gov_id)],
        )[0],
        "id",
    );
    let rows = db.qp(
        "SELECT * FROM history(Person) AS h WHERE h.metadata.id = ? AND h.metadata.version = 0",
        &[Element::string(document_id.as_str())],
    );
    (table_id, document_id, rows[0].clone())
}

fn field<'a>(row: &'a Element, name: &str) -> Option<&'a Element> {
    row.as_struct().unwrap().get(name)
}

#[test]
fn redact_with_a_parameter_as_the_dmv_sample_does() {
    let db = Db::new();
    db.q("CREATE TABLE Person");
    let (table_id, document_id, v0) = person_with_history(&db, "G1", MARKER);
    let address = field(&v0, "blockAddress").unwrap().clone();
    assert!(journal_holds(db.dir(), MARKER));
    let result = db.qp(
        &format!("EXEC redact_revision ?, '{table_id}', '{document_id}'"),
        std::slice::from_ref(&address),
    );
    assert_eq!(
        result,
        vec![ion(&format!(
            "{{blockAddress: {address}, tableId: \"{table_id}\", documentId: \"{document_id}\", version: 0}}"
        ))]
    );
    // The sample's completion check: no `data`, a `dataHash`; the revision hash is unchanged.
    let rows = db.qp(
        "SELECT * FROM history(Person) AS h WHERE h.metadata.id = ? AND h.metadata.version = 0",
        &[Element::string(document_id.as_str())],
    );
    let redacted = &rows[0];
    assert!(field(redacted, "data").is_none());
    assert_eq!(
        field(redacted, "dataHash").and_then(Element::as_blob),
        Some(
            quill_verify::ion_hash(field(&v0, "data").unwrap())
                .as_bytes()
                .as_slice()
        )
    );
    assert_eq!(field(redacted, "hash"), field(&v0, "hash"));
    // The parameter's value was never in the statement text: the journal no longer holds it.
    assert!(!journal_holds(db.dir(), MARKER));
    // Only the history changed: the current revision and the committed view are as before.
    assert_eq!(
        db.q("SELECT VALUE p.Name FROM Person AS p"),
        vec![Element::string("Renamed")]
    );
    assert_eq!(
        db.q("SELECT VALUE c.metadata.version FROM _ql_committed_Person AS c"),
        vec![Element::int(1)]
    );
    let again = db
        .run(
            &format!("EXEC REDACT_REVISION ?, '{table_id}', '{document_id}'"),
            &[address],
        )
        .unwrap_err();
    assert!(again.to_string().contains("already redacted"), "{again}");
}

#[test]
fn redact_with_an_ion_literal_and_qldb_limits() {
    let db = Db::new();
    db.q("CREATE TABLE Person");
    let (table_id, document_id, v0) = person_with_history(&db, "G2", "Alice");
    let address = field(&v0, "blockAddress").unwrap();
    let literal = format!("EXEC REDACT_REVISION `{address}`, '{table_id}', '{document_id}'");
    let latest = db.qp(
        "SELECT VALUE h.blockAddress FROM history(Person) AS h WHERE h.metadata.id = ? AND h.metadata.version = 1",
        &[Element::string(document_id.as_str())],
    );
    let error = db
        .run(
            &format!("EXEC REDACT_REVISION ?, '{table_id}', '{document_id}'"),
            &[latest[0].clone()],
        )
        .unwrap_err();
    assert!(
        error.to_string().contains("latest active revision"),
        "{error}"
    );
    assert!(matches!(
        db.run(
            &format!("EXEC REDACT_REVISION 'x', '{table_id}', '{document_id}'"),
            &[]
        ),
        Err(PartiqlError::Type(_))
    ));
    assert!(matches!(
        db.run(
            &format!("EXEC REDACT_REVISION `{address}`, '{table_id}'"),
            &[]
        ),
        Err(PartiqlError::Semantic(_))
    ));
    assert!(matches!(
        db.run("EXEC NO_SUCH_PROCEDURE 1", &[]),
        Err(PartiqlError::Unsupported(_))
    ));

    // One redaction per transaction: the second statement fails, the first stays.
    let (_, second_id, second_v0) = person_with_history(&db, "G3", "Bob");
    let mut tx = db.ledger.begin().unwrap();
    quill_partiql::execute(&mut tx, &literal, &[]).unwrap();
    let error = quill_partiql::execute(
        &mut tx,
        &format!("EXEC REDACT_REVISION ?, '{table_id}', '{second_id}'"),
        &[field(&second_v0, "blockAddress").unwrap().clone()],
    )
    .unwrap_err();
    assert!(error.to_string().contains("one revision"), "{error}");
    tx.commit().unwrap();
    let rows = db.qp(
        "SELECT VALUE h FROM history(Person) AS h WHERE h.metadata.version = 0",
        &[],
    );
    let redacted: Vec<bool> = rows
        .iter()
        .map(|r| field(r, "dataHash").is_some())
        .collect();
    assert_eq!(redacted, vec![true, false]);
}

#[test]
fn literals_in_statement_text_survive_redaction() {
    // QLDB's documented limit: the journal records statement text, so a value written as a
    // literal stays there; only the revision's data is erased.
    let db = Db::new();
    db.q("CREATE TABLE Person");
    db.q(&format!(
        "INSERT INTO Person {{'GovId': 'L1', 'Name': '{MARKER}'}}"
    ));
    db.q("UPDATE Person AS p SET p.Name = 'Renamed' WHERE p.GovId = 'L1'");
    let v0 = db.q("SELECT * FROM history(Person) AS h WHERE h.metadata.version = 0");
    let table_id = db.q("SELECT VALUE tableId FROM information_schema.user_tables")[0]
        .as_text()
        .unwrap()
        .to_owned();
    let document_id = text_field(field(&v0[0], "metadata").unwrap(), "id");
    db.qp(
        &format!("EXEC REDACT_REVISION ?, '{table_id}', '{document_id}'"),
        &[field(&v0[0], "blockAddress").unwrap().clone()],
    );
    assert!(journal_holds(db.dir(), &format!("'Name': '{MARKER}'")));
}
