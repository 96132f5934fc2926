//! The examples of the QLDB Developer Guide's PartiQL reference pages, one test per page (named
//! after the page: `ql_functions_cast` is "CAST function in Amazon QLDB",
//! ql-functions.cast.html), each checking every example the page documents with its documented
//! result. Expressions are evaluated the way the pages' "runnable statements" do,
//! `SELECT … FROM << 0 >>`.

mod eval_support;

use eval_support::{ion, text_field, Db};
use ion_rs::{Element, IonData};
use quill_partiql::PartiqlError;

/// What an expression evaluates to: a value, MISSING, or an error.
#[derive(Debug)]
enum Outcome {
    Value(Element),
    Missing,
    Error(PartiqlError),
}

fn evaluate(db: &Db, expr: &str) -> Outcome {
    // A struct constructor drops a MISSING field, so `v` is absent exactly when expr is MISSING.
    match db.run(&format!("SELECT VALUE {{'v': {expr}}} FROM << 0 >>"), &[]) {
        Ok(rows) => {
            assert_eq!(rows.len(), 1, "{expr}");
            match rows[0].as_struct().and_then(|s| s.get("v")) {
                Some(value) => Outcome::Value(value.clone()),
                None => Outcome::Missing,
            }
        }
        Err(error) => Outcome::Error(error),
    }
}

/// Checks `expr` against a documented result: Ion text (compared with Ion equivalence, so
/// precision, offsets and types count), `missing`, or `error`.
fn check(db: &Db, expr: &str, documented: &str) {
    let outcome = evaluate(db, expr);
    match (documented, &outcome) {
        ("missing", Outcome::Missing) => {}
        // A documented error is an evaluation error: the statement itself must parse.
        ("error", Outcome::Error(error)) if !matches!(error, PartiqlError::Parse(_)) => {}
        ("missing" | "error", _) => panic!("{expr}: expected {documented}, got {outcome:?}"),
        (text, Outcome::Value(value)) => assert_eq!(
            IonData::from(value),
            IonData::from(&ion(text)),
            "{expr}: expected {text}, got {value}"
        ),
        (text, _) => panic!("{expr}: expected {text}, got {outcome:?}"),
    }
}

fn check_all(db: &Db, examples: &[(&str, &str)]) {
    for (expr, documented) in examples {
        check(db, expr, documented);
    }
}

/// "Unless otherwise stated, all of these functions propagate null and missing argument
/// values": NULL if any argument is NULL or MISSING.
#[test]
fn ql_functions_unknown_type_propagation() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("CHAR_LENGTH(null)", "null"),
            ("CHAR_LENGTH(missing)", "null"),
        ],
    );
    for call in [
        "CHARACTER_LENGTH({})",
        "LOWER({})",
        "UPPER({})",
        "SUBSTRING({}, 1)",
        "SUBSTRING('abc', {})",
        "TRIM({})",
        "TRIM(BOTH {} FROM 'abc')",
        "SIZE({})",
        "DATE_ADD(day, {}, `2010T`)",
        "DATE_ADD(day, 1, {})",
        "DATE_DIFF(day, {}, `2010T`)",
        "TO_STRING({}, 'y')",
        "TO_TIMESTAMP({})",
        "TO_TIMESTAMP('2016', {})",
    ] {
        for unknown in ["null", "missing"] {
            check(&db, &call.replace("{}", unknown), "null");
        }
    }
}

#[test]
fn ql_functions_extract() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("EXTRACT(YEAR FROM `2010-01-01T`)", "2010"),
            ("EXTRACT(MONTH FROM `2010T`)", "1"),
            ("EXTRACT(MONTH FROM `2010-10T`)", "10"),
            ("EXTRACT(HOUR FROM `2017-01-02T03:04:05+07:08`)", "3"),
            ("EXTRACT(MINUTE FROM `2017-01-02T03:04:05+07:08`)", "4"),
            (
                "EXTRACT(TIMEZONE_HOUR FROM `2017-01-02T03:04:05+07:08`)",
                "7",
            ),
            (
                "EXTRACT(TIMEZONE_MINUTE FROM `2017-01-02T03:04:05+07:08`)",
                "8",
            ),
            // The remaining documented date parts, and a negative offset (both parts carry
            // its sign).
            ("EXTRACT(DAY FROM `2017-01-02T03:04:05+07:08`)", "2"),
            ("EXTRACT(SECOND FROM `2017-01-02T03:04:05+07:08`)", "5"),
            (
                "EXTRACT(TIMEZONE_HOUR FROM `2017-01-02T03:04:05-08:30`)",
                "-8",
            ),
            (
                "EXTRACT(TIMEZONE_MINUTE FROM `2017-01-02T03:04:05-08:30`)",
                "-30",
            ),
            ("EXTRACT(TIMEZONE_HOUR FROM `2017-01-02T03:04Z`)", "0"),
            // "If this parameter is an unknown type (NULL or MISSING), the function returns
            // NULL."
            ("EXTRACT(YEAR FROM NULL)", "null"),
            ("EXTRACT(YEAR FROM MISSING)", "null"),
        ],
    );
}

#[test]
fn ql_functions_cast() {
    let db = Db::new();
    check_all(
        &db,
        &[
            // Propagation of unknown types.
            ("CAST(null AS null)", "null"),
            ("CAST(missing AS null)", "null"),
            ("CAST(missing AS missing)", "missing"),
            ("CAST(null AS missing)", "missing"),
            ("CAST(null AS boolean)", "null"),
            ("CAST(missing AS boolean)", "missing"),
            // A value that is not unknown cannot be cast to NULL or MISSING.
            ("CAST(true AS null)", "error"),
            ("CAST(true AS missing)", "error"),
            ("CAST(1 AS null)", "error"),
            ("CAST(1 AS missing)", "error"),
            // AS boolean.
            ("CAST(true AS boolean)", "true"),
            ("CAST(0 AS boolean)", "false"),
            ("CAST(1 AS boolean)", "true"),
            ("CAST(`1e0` AS boolean)", "true"),
            ("CAST(`1d0` AS boolean)", "true"),
            ("CAST('a' AS boolean)", "false"),
            ("CAST('true' AS boolean)", "true"),
            ("CAST(`'true'` AS boolean)", "true"),
            ("CAST(`'false'` AS boolean)", "false"),
            // AS integer.
            ("CAST(true AS integer)", "1"),
            ("CAST(false AS integer)", "0"),
            ("CAST(1 AS integer)", "1"),
            ("CAST(`1d0` AS integer)", "1"),
            ("CAST(`1d3` AS integer)", "1000"),
            ("CAST(1.00 AS integer)", "1"),
            ("CAST(1.45 AS integer)", "1"),
            ("CAST(1.75 AS integer)", "1"),
            ("CAST('12' AS integer)", "12"),
            ("CAST('aa' AS integer)", "error"),
            ("CAST(`'22'` AS integer)", "22"),
            ("CAST(`'x'` AS integer)", "error"),
        ],
    );
}

/// The other target types of the CAST page, with the results of the PartiQL reference the
/// page follows.
#[test]
fn ql_functions_cast_other_targets() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("CAST(true AS float)", "1e0"),
            ("CAST(false AS float)", "0e0"),
            ("CAST(1 AS float)", "1e0"),
            ("CAST(`1d0` AS float)", "1e0"),
            ("CAST(`1d3` AS float)", "1000e0"),
            ("CAST(1.00 AS float)", "1e0"),
            ("CAST('12' AS float)", "12e0"),
            ("CAST('aa' AS float)", "error"),
            ("CAST(`'22'` AS float)", "22e0"),
            ("CAST(`'x'` AS float)", "error"),
            ("CAST(true AS decimal)", "1."),
            ("CAST(false AS decimal)", "0."),
            ("CAST(1 AS decimal)", "1."),
            ("CAST(`1d0` AS decimal)", "1d0"),
            ("CAST(`1d3` AS decimal)", "1d3"),
            ("CAST(1.00 AS decimal)", "1.00"),
            ("CAST('12' AS decimal)", "12."),
            ("CAST('aa' AS decimal)", "error"),
            ("CAST(`'22'` AS decimal)", "22."),
            ("CAST(`'x'` AS decimal)", "error"),
            ("CAST(`2001T` AS timestamp)", "2001T"),
            ("CAST('2001-01-01T' AS timestamp)", "2001-01-01T"),
            (
                "CAST(`'2010-01-01T00:00:00.000Z'` AS timestamp)",
                "2010-01-01T00:00:00.000Z",
            ),
            ("CAST(true AS timestamp)", "error"),
            ("CAST(2001 AS timestamp)", "error"),
            ("CAST(`'xx'` AS symbol)", "xx"),
            ("CAST('xx' AS symbol)", "xx"),
            ("CAST(42 AS symbol)", "'42'"),
            ("CAST(`1d0` AS symbol)", "'1'"),
            ("CAST(true AS symbol)", "'true'"),
            ("CAST(false AS symbol)", "'false'"),
            ("CAST(`2001T` AS symbol)", "'2001T'"),
            (
                "CAST(`2001-01-01T00:00:00.000Z` AS symbol)",
                "'2001-01-01T00:00:00.000Z'",
            ),
            ("CAST(`'xx'` AS string)", "\"xx\""),
            ("CAST('xx' AS string)", "\"xx\""),
            ("CAST(42 AS string)", "\"42\""),
            ("CAST(`1e0` AS string)", "\"1.0\""),
            ("CAST(`1d0` AS string)", "\"1\""),
            ("CAST(true AS string)", "\"true\""),
            ("CAST(false AS string)", "\"false\""),
            ("CAST(`2001T` AS string)", "\"2001T\""),
            (
                "CAST(`2001-01-01T00:00:00.000Z` AS string)",
                "\"2001-01-01T00:00:00.000Z\"",
            ),
            ("CAST(`{ a: 1 }` AS struct)", "{a: 1}"),
            ("CAST(true AS struct)", "error"),
            ("CAST(`[1, 2, 3]` AS list)", "[1, 2, 3]"),
            ("CAST({ 'b': 2 } AS list)", "error"),
        ],
    );
}

#[test]
fn ql_functions_nullif() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("NULLIF(1, 1)", "null"),
            ("NULLIF(1, 2)", "1"),
            ("NULLIF(1.0, 1)", "null"),
            ("NULLIF(1, '1')", "1"),
            ("NULLIF([1], [1])", "null"),
            ("NULLIF(1, NULL)", "1"),
            ("NULLIF(NULL, 1)", "null"),
            ("NULLIF(null, null)", "null"),
            ("NULLIF(missing, null)", "null"),
            ("NULLIF(missing, missing)", "null"),
        ],
    );
}

#[test]
fn ql_functions_coalesce() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("COALESCE(1, null)", "1"),
            ("COALESCE(null, null, 1)", "1"),
            ("COALESCE(null, 'string')", "\"string\""),
            // "If all argument types are unknown, the result is NULL."
            ("COALESCE(1)", "1"),
            ("COALESCE(null)", "null"),
            ("COALESCE(null, null)", "null"),
            ("COALESCE(missing)", "null"),
            ("COALESCE(missing, missing)", "null"),
            ("COALESCE(missing, 1)", "1"),
        ],
    );
}

#[test]
fn ql_functions_exists() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("EXISTS(`[]`)", "false"),
            ("EXISTS(`[1, 2, 3]`)", "true"),
            ("EXISTS(`[missing]`)", "true"),
            ("EXISTS(`{}`)", "false"),
            ("EXISTS(`{ a: 1 }`)", "true"),
            ("EXISTS(`()`)", "false"),
            ("EXISTS(`(+ 1 2)`)", "true"),
            ("EXISTS(1)", "false"),
            ("EXISTS(`2017T`)", "false"),
            ("EXISTS(null)", "false"),
            ("EXISTS(missing)", "error"),
        ],
    );
}

#[test]
fn ql_functions_size() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("SIZE(`[]`)", "0"),
            ("SIZE(`[null]`)", "1"),
            ("SIZE(`[1,2,3]`)", "3"),
            ("SIZE(<<'foo', 'bar'>>)", "2"),
            ("SIZE(`{foo: bar}`)", "1"),
            ("SIZE(`[{foo: 1}, {foo: 2}]`)", "2"),
            ("SIZE(12)", "error"),
        ],
    );
}

/// Asserts a produced timestamp is in UTC written the way QLDB returns it (offset `Z`, not the
/// unknown offset `-00:00`).
fn assert_utc(db: &Db, expr: &str) {
    let Outcome::Value(value) = evaluate(db, expr) else {
        panic!("{expr} has no value");
    };
    let timestamp = value
        .as_timestamp()
        .unwrap_or_else(|| panic!("{expr}: {value}"));
    assert_eq!(timestamp.offset(), Some(0), "{expr}: {value}");
}

#[test]
fn ql_functions_date_add() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("DATE_ADD(year, 5, `2010-01-01T`)", "2015-01-01T"),
            ("DATE_ADD(month, 1, `2010T`)", "2010-02T"),
            ("DATE_ADD(month, 13, `2010T`)", "2011-02T"),
            ("DATE_ADD(day, -1, `2017-01-10T`)", "2017-01-09T"),
            ("DATE_ADD(hour, 1, `2017T`)", "2017-01-01T01:00Z"),
            (
                "DATE_ADD(hour, 1, `2017-01-02T03:04Z`)",
                "2017-01-02T04:04Z",
            ),
            (
                "DATE_ADD(minute, 1, `2017-01-02T03:04:05.006Z`)",
                "2017-01-02T03:05:05.006Z",
            ),
            (
                "DATE_ADD(second, 1, `2017-01-02T03:04:05.006Z`)",
                "2017-01-02T03:04:06.006Z",
            ),
        ],
    );
    assert_utc(&db, "DATE_ADD(hour, 1, `2017T`)");
    assert_utc(&db, "DATE_ADD(minute, 30, `2017-01-02T`)");
}

#[test]
fn ql_functions_to_timestamp() {
    let db = Db::new();
    check_all(
        &db,
        &[
            ("TO_TIMESTAMP('2007T')", "2007T"),
            (
                "TO_TIMESTAMP('2007-02-23T12:14:33.079-08:00')",
                "2007-02-23T12:14:33.079-08:00",
            ),
            ("TO_TIMESTAMP('2016', 'y')", "2016T"),
            ("TO_TIMESTAMP('2016', 'yyyy')", "2016T"),
            ("TO_TIMESTAMP('02-2016', 'MM-yyyy')", "2016-02T"),
            ("TO_TIMESTAMP('Feb 2016', 'MMM yyyy')", "2016-02T"),
            ("TO_TIMESTAMP('February 2016', 'MMMM yyyy')", "2016-02T"),
            (
                "TO_TIMESTAMP('1969-07-20T20:18Z', 'y-MM-dd''T''H:mX')",
                "1969-07-20T20:18Z",
            ),
        ],
    );
    assert_utc(&db, "TO_TIMESTAMP('1969-07-20T20:18Z', 'y-MM-dd''T''H:mX')");
    assert_utc(&db, "TO_TIMESTAMP('1969-07-20 20:18', 'y-MM-dd H:m')");
}

#[test]
fn ql_functions_utcnow() {
    let db = Db::new();
    db.q("CREATE TABLE Person");
    db.q("INSERT INTO Person VALUE { 'firstName': 'John', 'GovId': 'LEWISR261LL' }");
    assert_utc(&db, "UTCNOW()");
    let now = db.q("SELECT VALUE UTCNOW() FROM Person WHERE GovId = 'LEWISR261LL'");
    assert_eq!(now[0].as_timestamp().unwrap().offset(), Some(0));
    db.q("INSERT INTO Person VALUE { 'firstName': 'Jane', 'createdAt': UTCNOW() }");
    let updated = db.q("UPDATE Person p SET p.updatedAt = UTCNOW() WHERE p.firstName = 'John'");
    assert_eq!(updated.len(), 1);
    let stamps = db.q(
        "SELECT VALUE t FROM Person AS p, << p.createdAt, p.updatedAt >> AS t \
         WHERE t IS NOT MISSING",
    );
    assert_eq!(stamps.len(), 2);
    for stamp in &stamps {
        assert_eq!(stamp.as_timestamp().unwrap().offset(), Some(0), "{stamp}");
    }
}

/// The registration the "Updating and deleting documents" and FROM pages work on, with one
/// secondary owner.
fn registration(db: &Db) -> String {
    db.q("CREATE TABLE VehicleRegistration");
    let rows = db.q(
        "INSERT INTO VehicleRegistration VALUE { 'VIN': '1HVBBAANXWH544237', \
         'LicensePlateNumber': 'LS477D', 'City': 'Tacoma', \
         'Owners': { 'PrimaryOwner': { 'PersonId': 'KmA3XPKKFqYCP2zhR3d0Ho' }, \
         'SecondaryOwners': [{ 'PersonId': '5Ufgdlnj06gF5CWcOIu64s' }] } }",
    );
    text_field(&rows[0], "documentId")
}

#[test]
fn ql_reference_from_nested_collections() {
    let db = Db::new();
    let id = registration(&db);
    let rows = db.q(
        "FROM VehicleRegistration AS r, @r.Owners.SecondaryOwners AS o \
         WHERE r.VIN = '1HVBBAANXWH544237' AND o.PersonId = '5Ufgdlnj06gF5CWcOIu64s' \
         SET o.PersonId = 'IN7MvYtUjkp1GMZu0F6CG9'",
    );
    assert_eq!(rows, vec![ion(&format!("{{documentId: \"{id}\"}}"))]);
    let owners = db.q("SELECT VALUE r.Owners.SecondaryOwners FROM VehicleRegistration AS r");
    assert_eq!(
        owners,
        vec![ion("[{PersonId: \"IN7MvYtUjkp1GMZu0F6CG9\"}]")]
    );
    // `@` works in SELECT too, and with REMOVE.
    let ids = db
        .q("SELECT VALUE o.PersonId FROM VehicleRegistration AS r, @r.Owners.SecondaryOwners AS o");
    assert_eq!(ids, vec![ion("\"IN7MvYtUjkp1GMZu0F6CG9\"")]);
    db.q(
        "FROM VehicleRegistration AS r, @r.Owners.SecondaryOwners AS o \
         WHERE o.PersonId = 'IN7MvYtUjkp1GMZu0F6CG9' REMOVE o",
    );
    let owners = db.q("SELECT VALUE r.Owners.SecondaryOwners FROM VehicleRegistration AS r");
    assert_eq!(owners, vec![ion("[]")]);
    let error = db.run("SELECT * FROM VehicleRegistration AS r, @ AS o", &[]);
    assert!(matches!(error, Err(PartiqlError::Parse(_))), "{error:?}");
}

#[test]
fn ql_reference_update_returns_one_document_id_per_assignment() {
    let db = Db::new();
    let id = registration(&db);
    let row = ion(&format!("{{documentId: \"{id}\"}}"));
    // The DMV sample's RenewDriversLicense statement shape: two assignments, one document,
    // and QLDB answers that document's id twice (the sample's integration test asserts it).
    let two = db.qp(
        "UPDATE VehicleRegistration AS r SET r.ValidFromDate = ?, r.ValidToDate = ? \
         WHERE r.VIN = ?",
        &[
            ion("2019-04-19T"),
            ion("2023-04-19T"),
            Element::string("1HVBBAANXWH544237"),
        ],
    );
    assert_eq!(two, vec![row.clone(), row.clone()]);
    let one = db.q("UPDATE VehicleRegistration AS r SET r.City = 'Kent'");
    assert_eq!(one, vec![row.clone()]);
    let from_set = db.q("FROM VehicleRegistration AS r SET r.a = 1, r.b = 2, r.c = 3");
    assert_eq!(from_set.len(), 3);
    let inserted = db.q(
        "FROM VehicleRegistration AS r INSERT INTO r.Owners.SecondaryOwners \
         VALUE { 'PersonId': 'x' }",
    );
    assert_eq!(inserted, vec![row.clone()]);
    let document =
        db.q("SELECT r.ValidFromDate, r.ValidToDate, r.City FROM VehicleRegistration AS r");
    assert_eq!(
        document,
        vec![ion(
            "{ValidFromDate: 2019-04-19T, ValidToDate: 2023-04-19T, City: \"Kent\"}"
        )]
    );
    let deleted = db.q("DELETE FROM VehicleRegistration AS r WHERE r.VIN = '1HVBBAANXWH544237'");
    assert_eq!(deleted, vec![row]);
}

#[test]
fn working_history_time_arguments() {
    let db = Db::new();
    registration(&db);
    // "end-time must be less than or equal to the current UTC date and time" and
    // "start-time must be less than or equal to end-time": both are errors.
    let future_end = db.run(
        "SELECT * FROM history(VehicleRegistration, `2000T`, `2999T`) AS h",
        &[],
    );
    assert!(future_end.is_err(), "{future_end:?}");
    let reversed = db.run(
        "SELECT * FROM history(VehicleRegistration, `2019-06-05T23:59:59Z`, `2019-06-05T00:00:00Z`) AS h",
        &[],
    );
    assert!(reversed.is_err(), "{reversed:?}");
    // A start with no end runs to now; a start after now is later than that end.
    let after_now = db.run(
        "SELECT * FROM history(VehicleRegistration, `2999T`) AS h",
        &[],
    );
    assert!(after_now.is_err(), "{after_now:?}");
    let open_end = db.q("SELECT * FROM history(VehicleRegistration, `2019-06-05T00:00:00Z`) AS h");
    assert_eq!(open_end.len(), 1);
    let closed = db.q(
        "SELECT * FROM history(VehicleRegistration, `2019-06-05T00:00:00Z`, `2019-06-05T23:59:59Z`) AS h",
    );
    assert!(closed.is_empty());
}

#[test]
fn ql_reference_create_table_tags() {
    let db = Db::new();
    for statement in [
        "CREATE TABLE VehicleRegistration",
        "CREATE TABLE Vehicle WITH (aws_tags = `{'environment': 'development'}`)",
        "CREATE TABLE Person WITH (aws_tags = `{'key1': 'value1', 'key2': 'value2'}`)",
    ] {
        let rows = db.q(statement);
        assert_eq!(text_field(&rows[0], "tableId").len(), 22, "{statement}");
    }
    let tags = db.tx(|tx| tx.table("Person").unwrap().tags);
    // In the backtick Ion literal, 'value1' is a symbol.
    assert_eq!(tags, Some(ion("{key1: value1, key2: value2}")));
    assert_eq!(
        db.tx(|tx| tx.table("VehicleRegistration").unwrap().tags),
        None
    );
    let not_text = db.run("CREATE TABLE Bad WITH (aws_tags = `{'n': 1}`)", &[]);
    assert!(not_text.is_err(), "{not_text:?}");
}
