//! DDL and DML statement forms with their documented results, plus statement-failure
//! semantics (rollback to the statement's savepoint) and parameter checks.

mod eval_support;

use eval_support::{assert_same_rows, ion, ion_all, text_field, Db};
use ion_rs::Element;
use quill_partiql::{execute, PartiqlError};

fn single_doc_db() -> Db {
    let db = Db::new();
    db.q("CREATE TABLE VehicleRegistration");
    db.q("CREATE INDEX ON VehicleRegistration (VIN)");
    db.q(r#"INSERT INTO VehicleRegistration VALUE {'VIN': '1N4AL11D75C109151', 'City': 'Seattle',
            'Owners': {'PrimaryOwner': {'PersonId': 'p1'}, 'SecondaryOwners': [{'PersonId': 'p2'}, {'PersonId': 'p3'}]}}"#);
    db
}

fn registration(db: &Db) -> ion_rs::Element {
    let rows = db.q("SELECT * FROM VehicleRegistration");
    assert_eq!(rows.len(), 1);
    rows[0].clone()
}

#[test]
fn ddl_returns_table_ids() {
    let db = Db::new();
    let created = db.q("CREATE TABLE Vehicle");
    let table_id = text_field(&created[0], "tableId");
    assert_eq!(table_id.len(), 22);
    assert_eq!(
        db.q("CREATE INDEX ON Vehicle (VIN)"),
        vec![created[0].clone()]
    );
    let tables = db.q("SELECT * FROM information_schema.user_tables AS t WHERE t.name = 'Vehicle'");
    let index_id = text_field(
        &tables[0]
            .as_struct()
            .unwrap()
            .get("indexes")
            .unwrap()
            .as_sequence()
            .unwrap()
            .get(0)
            .unwrap()
            .clone(),
        "indexId",
    );
    assert_eq!(
        db.q(&format!(
            "DROP INDEX \"{index_id}\" ON Vehicle WITH (purge = true)"
        )),
        vec![created[0].clone()]
    );
    assert_eq!(db.q("DROP TABLE Vehicle"), vec![created[0].clone()]);
    assert!(matches!(
        db.run("SELECT * FROM Vehicle", &[]),
        Err(PartiqlError::UnknownTable(_))
    ));
    assert_eq!(
        db.q(&format!("UNDROP TABLE \"{table_id}\"")),
        vec![created[0].clone()]
    );
    assert!(db.q("SELECT * FROM Vehicle").is_empty());
}

#[test]
fn create_table_with_tags() {
    let db = Db::new();
    db.q("CREATE TABLE Tagged WITH (aws_tags = `{'IsTest': 'true'}`)");
    assert_eq!(
        db.q("SELECT VALUE t.status FROM information_schema.user_tables AS t"),
        ion_all("\"ACTIVE\"")
    );
}

#[test]
fn insert_forms_return_document_ids() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    assert_eq!(db.q("INSERT INTO T VALUE {'a': 1}").len(), 1);
    assert_eq!(db.q("INSERT INTO T << {'a': 2}, {'a': 3} >>").len(), 2);
    assert_eq!(db.q("INSERT INTO T {'a': 4}").len(), 1);
    assert_eq!(db.qp("INSERT INTO T ?", &[ion("{a: 5}")]).len(), 1);
    assert_eq!(
        db.qp("INSERT INTO T ?", &[ion("[{a: 6}, {a: 7}]")]).len(),
        2
    );
    assert_eq!(db.qp("INSERT INTO T VALUE ?", &[ion("{a: 8}")]).len(), 1);
    let ids = db.q("INSERT INTO T << {'a': 9} >>");
    assert_eq!(text_field(&ids[0], "documentId").len(), 22);
    let mut values = db.q("SELECT VALUE t.a FROM T AS t ORDER BY t.a");
    values.dedup();
    assert_eq!(values, ion_all("1 2 3 4 5 6 7 8 9"));
    assert!(matches!(
        db.run("INSERT INTO T VALUE 5", &[]),
        Err(PartiqlError::Type(_))
    ));
    assert!(matches!(
        db.run("INSERT INTO T << {'a': 1}, 2 >>", &[]),
        Err(PartiqlError::Type(_))
    ));
}

#[test]
fn update_set_creates_paths() {
    let db = single_doc_db();
    let rows = db.q("UPDATE VehicleRegistration AS r SET r.City = 'Kent', r.Address.Zip = 98032 WHERE r.VIN = '1N4AL11D75C109151'");
    // One `{documentId}` per assignment, as QLDB answers (see qldb_reference.rs).
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], rows[1]);
    let doc = registration(&db);
    let fields = doc.as_struct().unwrap();
    assert_eq!(fields.get("City").unwrap(), &ion("\"Kent\""));
    assert_eq!(fields.get("Address").unwrap(), &ion("{Zip: 98032}"));
}

#[test]
fn update_remove_and_insert_into() {
    let db = single_doc_db();
    db.q("UPDATE VehicleRegistration AS r REMOVE r.City WHERE r.VIN = '1N4AL11D75C109151'");
    db.q("UPDATE VehicleRegistration AS r REMOVE r.Owners.SecondaryOwners[0]");
    db.q("UPDATE VehicleRegistration AS r INSERT INTO r.Owners.SecondaryOwners VALUE {'PersonId': 'p4'} AT 0");
    db.q("UPDATE VehicleRegistration AS r INSERT INTO r.Owners.SecondaryOwners VALUE {'PersonId': 'p5'}");
    db.q("UPDATE VehicleRegistration AS r INSERT INTO r.Owners VALUE 'x' AT 'Note'");
    let doc = registration(&db);
    let expected = ion(
        r#"{VIN: "1N4AL11D75C109151", Owners: {PrimaryOwner: {PersonId: "p1"},
        SecondaryOwners: [{PersonId: "p4"}, {PersonId: "p3"}, {PersonId: "p5"}], Note: "x"}}"#,
    );
    assert_eq!(doc, expected);
}

#[test]
fn update_with_by_id() {
    let db = single_doc_db();
    let id = db.q("SELECT VALUE id FROM VehicleRegistration AS r BY id")[0].clone();
    let rows = db.qp(
        "UPDATE VehicleRegistration AS r BY rid SET r.City = 'Tacoma' WHERE rid = ?",
        std::slice::from_ref(&id),
    );
    assert_eq!(text_field(&rows[0], "documentId"), id.as_text().unwrap());
    assert_eq!(
        db.q("SELECT VALUE r.City FROM VehicleRegistration AS r"),
        ion_all("\"Tacoma\"")
    );
}

#[test]
fn from_dml_removes_a_nested_element_found_through_a_second_source() {
    let db = single_doc_db();
    let rows = db.qp(
        "FROM VehicleRegistration AS r, r.Owners.SecondaryOwners AS o WHERE r.VIN = ? AND o.PersonId = 'p3' REMOVE o",
        &[ion("\"1N4AL11D75C109151\"")],
    );
    assert_eq!(rows.len(), 1);
    let owners = db.q("SELECT VALUE r.Owners.SecondaryOwners FROM VehicleRegistration AS r");
    assert_eq!(owners, vec![ion(r#"[{PersonId: "p2"}]"#)]);
}

#[test]
fn from_dml_set_and_insert() {
    let db = single_doc_db();
    db.q("FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151' INSERT INTO r.Owners.SecondaryOwners VALUE {'PersonId': 'p9'}");
    db.q("FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151' SET r.Owners.PrimaryOwner.PersonId = 'p0'");
    let doc = registration(&db);
    assert_eq!(
        doc.as_struct().unwrap().get("Owners").unwrap(),
        &ion(
            r#"{PrimaryOwner: {PersonId: "p0"}, SecondaryOwners: [{PersonId: "p2"}, {PersonId: "p3"}, {PersonId: "p9"}]}"#
        )
    );
}

#[test]
fn from_dml_insert_into_the_document_adds_a_field() {
    let db = single_doc_db();
    db.q("FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151' INSERT INTO r VALUE 'x' AT 'tag'");
    assert_eq!(
        db.q("SELECT VALUE r.tag FROM VehicleRegistration AS r"),
        ion_all("\"x\"")
    );
    let error = db
        .run("UPDATE VehicleRegistration AS r SET r = {'a': 1}", &[])
        .unwrap_err();
    assert!(matches!(error, PartiqlError::Semantic(_)), "{error}");
}

#[test]
fn from_dml_edits_only_the_target_table() {
    let db = Db::new();
    db.q("CREATE TABLE A");
    db.q("CREATE TABLE B");
    db.q("INSERT INTO A VALUE {'k': 1, 'x': 0}");
    db.q("INSERT INTO B VALUE {'k': 1, 'y': 5}");
    db.q("FROM A AS a, B AS b WHERE a.k = b.k SET a.x = b.y");
    assert_eq!(db.q("SELECT VALUE a.x FROM A AS a"), ion_all("5"));
    let error = db
        .run("FROM A AS a, B AS b WHERE a.k = b.k SET b.y = 1", &[])
        .unwrap_err();
    assert!(matches!(error, PartiqlError::Semantic(_)), "{error}");
    assert_eq!(db.q("SELECT VALUE b.y FROM B AS b"), ion_all("5"));
}

#[test]
fn delete_and_remove_alias_delete_documents() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    db.q("INSERT INTO T << {'k': 1}, {'k': 2}, {'k': 3} >>");
    assert_eq!(db.q("DELETE FROM T AS t WHERE t.k = 1").len(), 1);
    assert_eq!(db.q("FROM T AS t WHERE t.k = 2 REMOVE t").len(), 1);
    assert_same_rows(&db.q("SELECT * FROM T"), &[ion("{k: 3}")]);
    assert_eq!(db.q("DELETE FROM T AS t WHERE t.k = 99").len(), 0);
}

#[test]
fn failed_statement_leaves_the_transaction_unchanged_and_usable() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    let mut tx = db.ledger.begin().unwrap();
    execute(&mut tx, "INSERT INTO T VALUE {'a': 1}", &[]).unwrap();
    let error = execute(&mut tx, "INSERT INTO Nope VALUE {'a': 2}", &[]).unwrap_err();
    assert!(matches!(error, PartiqlError::UnknownTable(_)), "{error}");
    // A type error half-way through a multi-document insert writes nothing.
    let error = execute(&mut tx, "UPDATE T AS t SET t.b = t.a + 'x'", &[]).unwrap_err();
    assert!(matches!(error, PartiqlError::Type(_)), "{error}");
    let rows = execute(&mut tx, "SELECT * FROM T", &[]).unwrap();
    assert_same_rows(&rows, &[ion("{a: 1}")]);
    tx.commit().unwrap();
    assert_same_rows(&db.q("SELECT * FROM T"), &[ion("{a: 1}")]);
}

#[test]
fn parameter_count_mismatch_is_an_error() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    let error = db.run("SELECT * FROM T WHERE a = ?", &[]).unwrap_err();
    assert!(
        matches!(
            error,
            PartiqlError::ParameterCount {
                expected: 1,
                actual: 0
            }
        ),
        "{error}"
    );
    let error = db.run("SELECT * FROM T", &[ion("1")]).unwrap_err();
    assert!(
        matches!(
            error,
            PartiqlError::ParameterCount {
                expected: 0,
                actual: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn statement_length_is_limited() {
    let db = Db::new();
    let long = format!("SELECT * FROM T WHERE a = '{}'", "x".repeat(100_000));
    assert!(matches!(
        db.run(&long, &[]),
        Err(PartiqlError::Limit { .. })
    ));
}

#[test]
fn indexed_update_does_not_read_the_whole_table() {
    let db = Db::new();
    db.q("CREATE TABLE V");
    db.q("CREATE INDEX ON V (VIN)");
    db.q("INSERT INTO V << {'VIN': 'A', 'n': 0}, {'VIN': 'B', 'n': 0} >>");
    let mut first = db.ledger.begin().unwrap();
    execute(
        &mut first,
        "UPDATE V AS v SET v.n = 1 WHERE v.VIN = ?",
        &[ion("\"A\"")],
    )
    .unwrap();
    // A concurrent change to another document commits first.
    db.q("UPDATE V AS v SET v.n = 2 WHERE v.VIN = 'B'");
    first
        .commit()
        .expect("an index lookup reads its key and what it found, not B: no OCC conflict");
    let mut second = db.ledger.begin().unwrap();
    execute(&mut second, "UPDATE V AS v SET v.n = 3 WHERE v.n = 1", &[]).unwrap();
    db.q("UPDATE V AS v SET v.n = 4 WHERE v.VIN = 'B'");
    let error = second.commit().unwrap_err();
    assert!(
        error.is_occ_conflict(),
        "a scan reads the whole table: {error}"
    );
}

/// Drivers pass document ids as parameters: `BY id … WHERE id = ?` must read only that
/// document (an id lookup), so updates of different documents commit side by side while
/// updates of the same document still conflict.
#[test]
fn update_by_parameter_id_reads_only_that_document() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    let ids: Vec<String> = db
        .q("INSERT INTO T << {'n': 0}, {'n': 0}, {'n': 0} >>")
        .iter()
        .map(|row| text_field(row, "documentId"))
        .collect();
    let update = "UPDATE T AS t BY id SET t.n = ? WHERE id = ?";
    let run = |tx: &mut quill_ledger::Transaction, n: i64, id: &str| {
        let rows = execute(tx, update, &[Element::int(n), Element::string(id)]).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
    };
    for (other, conflicts) in [(&ids[1], false), (&ids[0], true)] {
        let mut first = db.ledger.begin().unwrap();
        let mut second = db.ledger.begin().unwrap();
        run(&mut first, 1, &ids[0]);
        run(&mut second, 2, other);
        second.commit().unwrap();
        let outcome = first.commit();
        assert_eq!(
            outcome.as_ref().err().is_some_and(|e| e.is_occ_conflict()),
            conflicts,
            "updating {other} after {}: {outcome:?}",
            ids[0]
        );
    }
}

/// A parameter inserted as it is takes its statement-digest hash as its revision's data hash
/// (`HashedStatement`); every revision, reused hash or not, must still hash as QLDB's rule says:
/// `dot(H(metadata), H(data))`, over the data as stored.
#[test]
fn inserted_parameters_keep_qldb_revision_hashes() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    let document =
        ion(r#"tagged::{a: 1.50, b: 2024-01-02T03:04:05.6Z, c: [x::1, "s"], d: null.int}"#);
    let cases = [
        ("INSERT INTO T ?", document.clone()),
        ("INSERT INTO T VALUE ?", document.clone()),
        ("INSERT INTO T ?", ion("[{e: 1}, {e: 2.0e0}]")),
        ("INSERT INTO T VALUE {'wrapped': ?}", document.clone()),
    ];
    let mut ids = Vec::new();
    for (statement, parameter) in cases {
        for row in db.qp(statement, &[parameter]) {
            ids.push(text_field(&row, "documentId"));
        }
    }
    assert_eq!(ids.len(), 5);
    db.tx(|tx| {
        for id in &ids {
            let revisions = tx.committed("T", Some(id)).unwrap();
            assert_eq!(revisions.len(), 1);
            let revision = &revisions[0];
            assert_eq!(
                revision.hash,
                quill_verify::revision_hash(
                    &revision.metadata.to_element(),
                    revision.data.as_ref()
                ),
                "revision of {id}: {:?}",
                revision.data
            );
        }
        let first = &tx.committed("T", Some(&ids[0])).unwrap()[0];
        assert_eq!(first.data.as_ref(), Some(&document));
    });
}
