//! The committed view, history, the catalog, and EXPLAIN.

mod eval_support;

use eval_support::{assert_same_rows, ion, ion_all, text_field, Db};
use ion_rs::Element;
use quill_partiql::{execute, explain};

fn field<'a>(row: &'a Element, path: &[&str]) -> &'a Element {
    path.iter().fold(row, |value, name| {
        value
            .as_struct()
            .and_then(|s| s.get(name))
            .unwrap_or_else(|| panic!("no {name} in {row}"))
    })
}

#[test]
fn committed_view_rows_carry_metadata() {
    let db = Db::new();
    db.q("CREATE TABLE Vehicle");
    let id = text_field(
        &db.q("INSERT INTO Vehicle VALUE {'VIN': 'A', 'Year': 2011}")[0],
        "documentId",
    );
    db.q("UPDATE Vehicle AS v SET v.Year = 2012");
    let rows = db.q("SELECT * FROM _ql_committed_Vehicle");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(field(row, &["data"]), &ion("{VIN: \"A\", Year: 2012}"));
    assert_eq!(field(row, &["metadata", "id"]).as_text(), Some(id.as_str()));
    assert_eq!(field(row, &["metadata", "version"]), &ion("1"));
    assert!(field(row, &["metadata", "txTime"]).as_timestamp().is_some());
    assert_eq!(
        field(row, &["metadata", "txId"]).as_text().map(str::len),
        Some(22)
    );
    assert_eq!(field(row, &["hash"]).as_blob().map(<[u8]>::len), Some(32));
    assert!(field(row, &["blockAddress", "sequenceNo"])
        .as_i64()
        .is_some());
    assert!(field(row, &["blockAddress", "strandId"])
        .as_text()
        .is_some());
    let by_id = db.qp(
        "SELECT c.data.Year FROM _ql_committed_Vehicle AS c WHERE c.metadata.id = ?",
        &[Element::string(id)],
    );
    assert_same_rows(&by_id, &[ion("{Year: 2012}")]);
}

#[test]
fn history_lists_every_revision() {
    let db = Db::new();
    let table_id = text_field(&db.q("CREATE TABLE Vehicle")[0], "tableId");
    let id = text_field(
        &db.q("INSERT INTO Vehicle VALUE {'VIN': 'A', 'n': 0}")[0],
        "documentId",
    );
    db.q("UPDATE Vehicle AS v SET v.n = 1");
    db.q("DELETE FROM Vehicle");
    let rows = db.qp(
        "SELECT h.metadata.version, h.data.n FROM history(Vehicle) AS h WHERE h.metadata.id = ?",
        &[Element::string(id.clone())],
    );
    assert_same_rows(
        &rows,
        &ion_all("{version: 0, n: 0} {version: 1, n: 1} {version: 2}"),
    );
    let all = db.q("SELECT VALUE h.metadata.version FROM history(Vehicle) AS h");
    assert_eq!(all.len(), 3);
    let before_creation = db.q("SELECT * FROM history(Vehicle, `2000T`, `2001T`) AS h");
    assert!(before_creation.is_empty());
    let bounded = db.q("SELECT * FROM history(Vehicle, `2000T`, UTCNOW()) AS h");
    assert_eq!(bounded.len(), 3);
    db.q("DROP TABLE Vehicle");
    let by_table_id = db.q(&format!("SELECT * FROM history('{table_id}') AS h"));
    assert_eq!(by_table_id.len(), 3);
    assert!(db.run("SELECT * FROM history(Vehicle) AS h", &[]).is_err());
}

#[test]
fn information_schema_lists_tables_and_indexes() {
    let db = Db::new();
    let table_id = text_field(&db.q("CREATE TABLE Vehicle")[0], "tableId");
    db.q("CREATE INDEX ON Vehicle (VIN)");
    db.q("CREATE TABLE Old");
    db.q("DROP TABLE Old");
    let rows = db.q("SELECT * FROM information_schema.user_tables");
    assert_eq!(rows.len(), 2);
    let vehicle = rows
        .iter()
        .find(|r| text_field(r, "name") == "Vehicle")
        .unwrap();
    assert_eq!(text_field(vehicle, "tableId"), table_id);
    assert_eq!(text_field(vehicle, "status"), "ACTIVE");
    let index = field(vehicle, &["indexes"])
        .as_sequence()
        .unwrap()
        .get(0)
        .unwrap()
        .clone();
    assert_eq!(text_field(&index, "expr"), "[VIN]");
    assert_eq!(text_field(&index, "status"), "ONLINE");
    let old = rows
        .iter()
        .find(|r| text_field(r, "name") == "Old")
        .unwrap();
    assert_eq!(text_field(old, "status"), "INACTIVE");
}

#[test]
fn explain_says_scan_or_index() {
    let db = Db::new();
    db.q("CREATE TABLE VehicleRegistration");
    db.q("CREATE INDEX ON VehicleRegistration (VIN)");
    let mut tx = db.ledger.begin().unwrap();
    let plan = explain(
        &mut tx,
        "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = ?",
    )
    .unwrap();
    assert!(
        plan.contains("IndexLookup VehicleRegistration.VIN"),
        "{plan}"
    );
    let plan = explain(
        &mut tx,
        "SELECT * FROM VehicleRegistration AS r WHERE r.City = ?",
    )
    .unwrap();
    assert!(plan.contains("FullScan VehicleRegistration"), "{plan}");
    let plan = explain(
        &mut tx,
        "UPDATE VehicleRegistration AS r SET r.x = 1 WHERE r.VIN = ?",
    )
    .unwrap();
    assert!(plan.starts_with("Update\nIndexLookup"), "{plan}");
    // A parameter is as good a key as a literal (drivers send ids as parameters).
    let plan = explain(
        &mut tx,
        "UPDATE VehicleRegistration AS r BY id SET r.x = 1 WHERE id = ?",
    )
    .unwrap();
    assert!(plan.starts_with("Update\nIdLookup"), "{plan}");
    let rows = execute(
        &mut tx,
        "EXPLAIN SELECT * FROM VehicleRegistration AS r BY id WHERE id = 'x'",
        &[],
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        text_field(&rows[0], "plan").contains("IdLookup"),
        "{}",
        rows[0]
    );
}
