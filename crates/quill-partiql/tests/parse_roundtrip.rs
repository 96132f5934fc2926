//! Round trips: parse → print → parse gives an equal tree, and printing is stable. Covers every
//! statement form with the QLDB vehicle-registration tutorial statements and the fuzz corpus.

use std::fs;
use std::path::PathBuf;

use quill_partiql::ast::*;
use quill_partiql::parser::{parse, parse_expression};

/// Parses `text`, checks the round trip, and returns the tree and its canonical text.
fn verified(text: &str) -> (Statement, String) {
    let statement = parse(text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    let printed = statement.to_string();
    let reparsed = parse(&printed).unwrap_or_else(|e| panic!("{printed}\n{e}"));
    assert_eq!(
        reparsed, statement,
        "tree changed after printing: {printed}"
    );
    assert_eq!(reparsed.to_string(), printed, "printing is not stable");
    (statement, printed)
}

/// Checks the round trip and that `text` is already canonical.
fn canonical(text: &str) -> Statement {
    let (statement, printed) = verified(text);
    assert_eq!(printed, text);
    statement
}

fn ident(name: &str) -> Ident {
    Ident::new(name)
}

fn path(root: &str, fields: &[&str]) -> Expr {
    Expr::Path {
        root: Box::new(Expr::Var(ident(root))),
        steps: fields.iter().map(|f| PathStep::Field(ident(f))).collect(),
    }
}

#[test]
fn tutorial_select_by_vin() {
    let statement = canonical("SELECT * FROM Vehicle AS v WHERE v.VIN = '1N4AL11D75C109151'");
    let Statement::Select(query) = statement else {
        panic!()
    };
    assert_eq!(query.projection, Projection::Star);
    assert_eq!(
        query.from,
        vec![FromSource::Scan {
            expr: Expr::Var(ident("Vehicle")),
            as_alias: Some(ident("v")),
            at_alias: None,
            by_alias: None,
        }]
    );
    assert_eq!(
        query.filter,
        Some(Expr::Binary {
            op: BinaryOp::Eq,
            left: Box::new(path("v", &["VIN"])),
            right: Box::new(Expr::Lit(ion_rs::Element::string("1N4AL11D75C109151"))),
        })
    );
}

#[test]
fn tutorial_inner_join() {
    let statement = canonical(
        "SELECT v FROM Vehicle AS v INNER JOIN VehicleRegistration AS r ON v.VIN = r.VIN \
         WHERE r.Owners.PrimaryOwner.PersonId = ?",
    );
    assert_eq!(statement.parameter_count(), 1);
    let Statement::Select(query) = statement else {
        panic!()
    };
    assert!(matches!(
        &query.from[0],
        FromSource::Join {
            kind: JoinKind::Inner,
            on: Some(_),
            ..
        }
    ));
}

#[test]
fn tutorial_from_insert_secondary_owner() {
    let (statement, printed) = verified(
        "FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151' \
         INSERT INTO r.Owners.SecondaryOwners VALUE { 'PersonId' : 'CMVdR77XP8zAglmmFDGTvt' }",
    );
    assert_eq!(
        printed,
        "FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151' \
         INSERT INTO r.Owners.SecondaryOwners VALUE {'PersonId': 'CMVdR77XP8zAglmmFDGTvt'}"
    );
    let Statement::FromDml { ops, .. } = statement else {
        panic!()
    };
    let DmlOp::InsertInto { target, at, .. } = &ops[0] else {
        panic!()
    };
    assert_eq!(*target, path("r", &["Owners", "SecondaryOwners"]));
    assert_eq!(*at, None);
}

#[test]
fn tutorial_history_query() {
    let (statement, printed) = verified(
        "SELECT * FROM history(VehicleRegistration, `2019-06-05T00:00:00Z`) AS h \
         WHERE h.metadata.id = ?",
    );
    assert_eq!(
        printed,
        "SELECT * FROM history(VehicleRegistration, `2019-06-05T00:00:00+00:00`) AS h \
         WHERE h.metadata.id = ?"
    );
    let Statement::Select(query) = statement else {
        panic!()
    };
    let FromSource::Scan {
        expr: Expr::Call(call),
        ..
    } = &query.from[0]
    else {
        panic!()
    };
    assert_eq!(call.name, "history");
    assert_eq!(call.args[0], Expr::Var(ident("VehicleRegistration")));
    assert!(call.args[1].clone().into_lit().as_timestamp().is_some());
}

trait IntoLit {
    fn into_lit(self) -> ion_rs::Element;
}

impl IntoLit for Expr {
    fn into_lit(self) -> ion_rs::Element {
        match self {
            Expr::Lit(element) => element,
            other => panic!("not a literal: {other:?}"),
        }
    }
}

#[test]
fn tutorial_remove_secondary_owner() {
    let statement =
        canonical("FROM Vehicle AS v, v.Owners.SecondaryOwners AS o WHERE o.PersonId = ? REMOVE o");
    let Statement::FromDml { from, ops, .. } = statement else {
        panic!()
    };
    assert_eq!(from.len(), 2);
    assert_eq!(ops, vec![DmlOp::Remove(Expr::Var(ident("o")))]);
}

#[test]
fn tutorial_update_by_document_id() {
    let statement = canonical("UPDATE Person AS p BY pid SET p.LastName = 'Smith' WHERE pid = ?");
    let Statement::Update { target, .. } = statement else {
        panic!()
    };
    assert_eq!(
        target,
        DmlTarget {
            table: ident("Person"),
            as_alias: Some(ident("p")),
            by_alias: Some(ident("pid"))
        }
    );
}

#[test]
fn ddl_statements() {
    canonical("CREATE TABLE VehicleRegistration");
    canonical("DROP TABLE DriversLicense");
    canonical("UNDROP TABLE \"5PLf9SXwndd63lPaSIa0O6\"");
    canonical("CREATE INDEX ON Person (GovId)");
    let statement =
        canonical("DROP INDEX \"4tPW3fUhaVhDinRgKRLhGU\" ON Vehicle WITH (purge = true)");
    assert_eq!(
        statement,
        Statement::DropIndex {
            index_id: Ident::quoted("4tPW3fUhaVhDinRgKRLhGU"),
            table: ident("Vehicle")
        }
    );
    let (statement, _) =
        verified("create table Person with (AWS_TAGS = `{'environment': 'development'}`)");
    let Statement::CreateTable {
        tags: Some(Expr::Lit(tags)),
        ..
    } = statement
    else {
        panic!()
    };
    assert!(tags.as_struct().is_some());
}

#[test]
fn insert_forms() {
    let value = canonical("INSERT INTO Person VALUE {'FirstName': 'Raul', 'DOB': `1963-08-19T`}");
    assert!(matches!(
        value,
        Statement::Insert {
            source: InsertSource::Value(Expr::Struct(_)),
            ..
        }
    ));
    let bag = canonical(
        "INSERT INTO Vehicle <<{'VIN': '1N4AL11D75C109151'}, {'VIN': 'KM8SRDHF6EU074761'}>>",
    );
    assert!(matches!(
        bag,
        Statement::Insert {
            source: InsertSource::Expr(Expr::Bag(_)),
            ..
        }
    ));
    let param = canonical("INSERT INTO DriversLicense ?");
    assert!(matches!(
        param,
        Statement::Insert {
            source: InsertSource::Expr(Expr::Param(0)),
            ..
        }
    ));
    canonical("INSERT INTO Person {'GovId': 'LEWISR261LL'}");
    canonical("INSERT INTO Person [?, ?]");
}

#[test]
fn update_and_delete_forms() {
    canonical(
        "UPDATE VehicleRegistration AS r INSERT INTO r.Owners.SecondaryOwners \
         VALUE {'PersonId': ?} AT 0 WHERE r.VIN = ?",
    );
    canonical("UPDATE Person AS p REMOVE p.Address WHERE p.GovId = ?");
    canonical("UPDATE Person SET LastName = 'Smith' SET Age = 3");
    canonical("DELETE FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151'");
    canonical("DELETE FROM Vehicle");
    canonical("FROM DriversLicense AS d BY did WHERE did = ? SET d.LicenseType = 'Full'");
}

#[test]
fn select_sources() {
    canonical("SELECT * FROM _ql_committed_VehicleRegistration AS c WHERE c.metadata.id = ?");
    canonical("SELECT * FROM information_schema.user_tables WHERE status = 'ACTIVE'");
    canonical("SELECT VALUE o FROM VehicleRegistration AS r, r.Owners.SecondaryOwners AS o AT i");
    canonical("SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE r_id = '3Qv67'");
    canonical("SELECT x.a FROM (SELECT v.Make AS a FROM Vehicle AS v) AS x");
    canonical("SELECT * FROM history('8F0TPCmdNQ6JTRpiLj2TmW') AS h");
    canonical("SELECT a.VIN FROM Vehicle AS a CROSS JOIN Person AS b");
    let (_, printed) =
        verified("select v.VIN from Vehicle v join VehicleRegistration r on v.VIN = r.VIN");
    assert_eq!(
        printed,
        "SELECT v.VIN FROM Vehicle AS v INNER JOIN VehicleRegistration AS r ON v.VIN = r.VIN"
    );
}

#[test]
fn statements_with_other_forms() {
    canonical("EXEC REDACT_REVISION ?, '5PLf9SXwndd63lPaSIa0O6', '8F0TPCmdNQ6JTRpiLj2TmW'");
    canonical("EXPLAIN UPDATE Person AS p SET p.Age = p.Age + 1 WHERE p.GovId = ?");
    canonical(
        "SELECT v.Make, COUNT(*) AS n FROM Vehicle AS v GROUP BY v.Make AS m HAVING COUNT(*) > 1 \
         ORDER BY n DESC NULLS FIRST, v.Make ASC LIMIT 10 OFFSET 2",
    );
    let (_, printed) = verified("select * from Vehicle where VIN = ? ;");
    assert_eq!(printed, "SELECT * FROM Vehicle WHERE VIN = ?");
}

#[test]
fn expressions_round_trip() {
    let cases = [
        ("a.b[0]['f'][?][*].*", "a.b[0]['f'][?][*].*"),
        (
            "{'a': 1, \"b\": 2.50, c: 1e3}",
            "{'a': 1, 'b': 2.50, 'c': 1e3}",
        ),
        ("[1, <<2, 3>>, {}, [], <<>>]", "[1, <<2, 3>>, {}, [], <<>>]"),
        ("CAST(x AS boolean)", "CAST(x AS BOOL)"),
        ("CASE x WHEN 1 THEN 'a' END", "CASE x WHEN 1 THEN 'a' END"),
        ("x NOT BETWEEN 1 AND 2 + 3", "x NOT BETWEEN 1 AND 2 + 3"),
        (
            "x IN [1, 2] AND y NOT IN ? AND z IN (SELECT VALUE a FROM t)",
            "x IN [1, 2] AND y NOT IN ? AND z IN (SELECT VALUE a FROM t)",
        ),
        ("x IN ()", "x IN ()"),
        ("NOT (a OR b)", "NOT (a OR b)"),
        (
            "-(a + b) * - -3 + -(4) - - - x",
            "-(a + b) * - -3 + -(4) - - -x",
        ),
        (
            "x IS NOT NULL OR y IS MISSING",
            "x IS NOT NULL OR y IS MISSING",
        ),
        (
            "a || 'it''s' LIKE 'x%' ESCAPE '\\'",
            "a || 'it''s' LIKE 'x%' ESCAPE '\\'",
        ),
        ("(a = b) = c", "a = b = c"),
        ("a = (b = c)", "a = (b = c)"),
        ("`{{aGVsbG8=}}`", "`{{aGVsbG8=}}`"),
        ("`sym::\"text\"`", "`sym::\"text\"`"),
        ("(-5).a", "(-5).a"),
        (
            "TRUE AND FALSE AND NULL AND MISSING",
            "TRUE AND FALSE AND NULL AND MISSING",
        ),
    ];
    for (text, expected) in cases {
        let expr = parse_expression(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(expr.to_string(), expected, "for {text}");
        assert_eq!(parse_expression(expected).unwrap(), expr, "for {text}");
    }
}

#[test]
fn decimal_keeps_exact_precision() {
    let expr = parse_expression("90.25").unwrap();
    let Expr::Lit(element) = &expr else { panic!() };
    let decimal = element.as_decimal().unwrap();
    assert_eq!(
        (decimal.exponent(), decimal.coefficient()),
        (-2, 9025.into())
    );
}

#[test]
fn corpus_statements_round_trip() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "partiql") {
            let text = fs::read_to_string(&path).unwrap();
            let (statement, _) = verified(&text);
            let expected = text.matches('?').count();
            assert!(
                statement.parameter_count() <= expected,
                "{}",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count >= 40, "corpus has only {count} statements");
}
