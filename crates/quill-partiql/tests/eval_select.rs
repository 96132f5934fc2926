//! SELECT forms over the DMV sample data, each with its documented result.

mod eval_support;

use eval_support::{assert_same_rows, ion, ion_all, Db};

fn dmv() -> Db {
    let db = Db::new();
    db.load_dmv();
    db
}

#[test]
fn select_star_returns_documents() {
    let db = dmv();
    let rows = db.q("SELECT * FROM Vehicle");
    assert_same_rows(&rows, &ion_all(&eval_support::data("Vehicle")));
}

#[test]
fn select_star_with_where_on_indexed_field() {
    let db = dmv();
    let rows = db.qp(
        "SELECT * FROM Vehicle AS v WHERE v.VIN = ?",
        &[ion("\"1N4AL11D75C109151\"")],
    );
    assert_same_rows(
        &rows,
        &[ion(
            r#"{VIN: "1N4AL11D75C109151", Type: "Sedan", Year: 2011, Make: "Audi", Model: "A5", Color: "Silver"}"#,
        )],
    );
}

#[test]
fn unqualified_names_resolve_against_the_single_source() {
    let db = dmv();
    let rows = db.qp(
        "SELECT VIN FROM Vehicle WHERE Make = ?",
        &[ion("\"Tesla\"")],
    );
    assert_same_rows(&rows, &[ion(r#"{VIN: "KM8SRDHF6EU074761"}"#)]);
    let rows =
        db.q("SELECT Owners.PrimaryOwner FROM VehicleRegistration AS r WHERE r.City = 'Kent'");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].as_struct().unwrap().get("PrimaryOwner").is_some());
}

#[test]
fn projection_names_and_aliases() {
    let db = dmv();
    let rows = db.q("SELECT r.VIN, r.City AS c, r.PendingPenaltyTicketAmount * 2, r.Nope FROM VehicleRegistration AS r WHERE r.VIN = '1HVBBAANXWH544237'");
    assert_same_rows(
        &rows,
        &[ion(r#"{VIN: "1HVBBAANXWH544237", c: "Tacoma", _3: 84.40}"#)],
    );
}

#[test]
fn select_value() {
    let db = dmv();
    let rows = db.q("SELECT VALUE v.Make FROM Vehicle AS v WHERE v.Year = 2011");
    assert_same_rows(&rows, &ion_all(r#""Audi" "Ducati""#));
}

#[test]
fn joins_with_on_and_with_where() {
    let db = dmv();
    let rows = db.qp(
        "SELECT v.Make FROM Vehicle AS v INNER JOIN VehicleRegistration AS r ON v.VIN = r.VIN WHERE r.LicensePlateNumber = ?",
        &[ion("\"CA762X\"")],
    );
    assert_same_rows(&rows, &[ion(r#"{Make: "Tesla"}"#)]);
    let rows = db.q(
        "SELECT p.FirstName, d.LicenseType FROM Person AS p, DriversLicense AS d BY d_id WHERE p.GovId = 'LOGANB486CG' AND d.LicenseNumber = p.GovId",
    );
    assert_same_rows(
        &rows,
        &[ion(r#"{FirstName: "Brent", LicenseType: "Probationary"}"#)],
    );
}

#[test]
fn join_through_document_id() {
    let db = dmv();
    let rows = db.q(
        "SELECT p.LastName FROM VehicleRegistration AS r, Person AS p BY pid WHERE r.VIN = 'KM8SRDHF6EU074761' AND r.Owners.PrimaryOwner.PersonId = pid",
    );
    assert_same_rows(&rows, &[ion(r#"{LastName: "Logan"}"#)]);
}

#[test]
fn by_binds_the_document_id() {
    let db = dmv();
    let ids =
        db.q("SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE r.VIN = '1N4AL11D75C109151'");
    assert_eq!(ids.len(), 1);
    let id = ids[0].as_struct().unwrap().get("r_id").unwrap().clone();
    let rows = db.qp(
        "SELECT r.City FROM VehicleRegistration AS r BY r_id WHERE r_id = ?",
        &[id],
    );
    assert_same_rows(&rows, &[ion(r#"{City: "Seattle"}"#)]);
}

#[test]
fn unnesting_with_at() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    db.q("INSERT INTO T VALUE {name: 'a', tags: ['x', 'y', 'z']}");
    let rows = db.q("SELECT t.name, g AS tag, i FROM T AS t, t.tags AS g AT i WHERE i > 0");
    assert_same_rows(
        &rows,
        &ion_all(r#"{name: "a", tag: "y", i: 1} {name: "a", tag: "z", i: 2}"#),
    );
}

#[test]
fn star_merges_several_sources() {
    let db = Db::new();
    db.q("CREATE TABLE A");
    db.q("CREATE TABLE B");
    db.q("INSERT INTO A VALUE {k: 1, a: 'x'}");
    db.q("INSERT INTO B VALUE {k: 1, b: 'y'}");
    let rows = db.q("SELECT * FROM A AS a, B AS b WHERE a.k = b.k");
    assert_same_rows(&rows, &[ion("{k: 1, a: \"x\", k: 1, b: \"y\"}")]);
    let rows = db.q("SELECT a.*, b.b FROM A AS a, B AS b");
    assert_same_rows(&rows, &[ion("{k: 1, a: \"x\", b: \"y\"}")]);
}

#[test]
fn subqueries() {
    let db = dmv();
    let rows = db.q("SELECT VALUE v.Make FROM Vehicle AS v WHERE v.VIN IN (SELECT VALUE r.VIN FROM VehicleRegistration AS r WHERE r.City = 'Kent')");
    assert_same_rows(&rows, &[ion("\"Tesla\"")]);
    let rows = db.q(
        "SELECT VALUE s.VIN FROM (SELECT v.VIN, v.Year FROM Vehicle AS v) AS s WHERE s.Year > 2015",
    );
    assert_same_rows(&rows, &[ion("\"1C4RJFAG0FC625797\"")]);
}

#[test]
fn operators_and_null_missing_rules() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    db.q("INSERT INTO T << {n: 1, s: 'Ducati'}, {n: null, s: 'abc'}, {s: 'x_y'} >>");
    let count = |where_clause: &str| db.q(&format!("SELECT * FROM T WHERE {where_clause}")).len();
    assert_eq!(count("n = 1.0"), 1);
    assert_eq!(count("n <> 1"), 0);
    assert_eq!(count("n IS NULL"), 2);
    assert_eq!(count("n IS MISSING"), 1);
    assert_eq!(count("n IS NOT NULL"), 1);
    assert_eq!(count("s LIKE 'D%'"), 1);
    assert_eq!(count("s LIKE 'x!_y' ESCAPE '!'"), 1);
    assert_eq!(count("s LIKE '___'"), 2);
    assert_eq!(count("n BETWEEN 0 AND 2"), 1);
    assert_eq!(count("s IN ('abc', 'x_y')"), 2);
    assert_eq!(count("s || '!' = 'abc!'"), 1);
    assert_eq!(count("NOT (n = 1)"), 0);
}

#[test]
fn aggregates_over_the_whole_result() {
    let db = dmv();
    assert_same_rows(&db.q("SELECT COUNT(*) FROM Vehicle"), &[ion("{_1: 5}")]);
    assert_same_rows(
        &db.q("SELECT COUNT(*) AS n FROM Vehicle AS v WHERE v.Year = 2011"),
        &[ion("{n: 2}")],
    );
    let rows = db.q("SELECT SUM(r.PendingPenaltyTicketAmount) AS total, MAX(r.City) AS c, MIN(r.PendingPenaltyTicketAmount) AS low FROM VehicleRegistration AS r");
    assert_same_rows(&rows, &[ion("{total: 735.95, c: \"Tacoma\", low: 30.45}")]);
    let rows = db.q("SELECT AVG(v.Year) AS a FROM Vehicle AS v WHERE v.Year < 2012");
    let average = rows[0].as_struct().unwrap().get("a").unwrap().clone();
    assert_eq!(
        average.as_decimal().unwrap(),
        ion("2010.333333333333333333333333333333")
            .as_decimal()
            .unwrap()
    );
    assert_same_rows(
        &db.q("SELECT COUNT(*) AS n FROM Vehicle AS v WHERE v.Year = 1900"),
        &[ion("{n: 0}")],
    );
}

#[test]
fn extensions_order_group_limit() {
    let db = dmv();
    let rows = db.q("SELECT VALUE v.Year FROM Vehicle AS v ORDER BY v.Year DESC LIMIT 2");
    assert_eq!(rows, ion_all("2019 2015"));
    let rows = db.q("SELECT VALUE v.Make FROM Vehicle AS v ORDER BY v.Make LIMIT 2 OFFSET 1");
    assert_eq!(rows, ion_all(r#""Ducati" "Ford""#));
    let rows = db.q("SELECT v.Type AS t, COUNT(*) AS n FROM Vehicle AS v GROUP BY v.Type AS t HAVING COUNT(*) > 1");
    assert_same_rows(&rows, &[ion(r#"{t: "Sedan", n: 3}"#)]);
    let rows = db.q(
        "SELECT v.Type, COUNT(*) AS n FROM Vehicle AS v GROUP BY v.Type ORDER BY n DESC, v.Type",
    );
    assert_eq!(
        rows,
        ion_all(r#"{Type: "Sedan", n: 3} {Type: "Motorcycle", n: 1} {Type: "Semi", n: 1}"#)
    );
}

#[test]
fn unknown_tables_are_errors() {
    let db = dmv();
    let error = db.run("SELECT * FROM vehicle", &[]).unwrap_err();
    assert_eq!(error.to_string(), "No such table: vehicle");
}
