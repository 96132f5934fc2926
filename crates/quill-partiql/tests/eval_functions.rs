//! Every built-in function through a statement, with the results QLDB documents.

mod eval_support;

use eval_support::{ion, Db};
use ion_rs::Element;
use quill_partiql::PartiqlError;

fn db() -> Db {
    let db = Db::new();
    db.q("CREATE TABLE One");
    db.q("INSERT INTO One VALUE {'list': [1, 2, 3], 'empty': [], 'n': null, 'name': 'Ducati'}");
    db
}

/// Evaluates `expr` once (over the single row of `One`).
fn value(db: &Db, expr: &str) -> Element {
    let rows = db.q(&format!("SELECT VALUE {expr} FROM One AS o"));
    assert_eq!(rows.len(), 1, "{expr}");
    rows[0].clone()
}

/// Evaluates `expr` and renders it as Ion text (precision-sensitive for timestamps).
fn text(db: &Db, expr: &str) -> String {
    value(db, expr).to_string()
}

fn error(db: &Db, expr: &str) -> PartiqlError {
    db.run(&format!("SELECT VALUE {expr} FROM One AS o"), &[])
        .unwrap_err()
}

#[test]
fn date_add() {
    let db = db();
    assert_eq!(text(&db, "DATE_ADD(year, 5, `2010T`)"), "2015T");
    assert_eq!(text(&db, "DATE_ADD(month, 1, `2010T`)"), "2010-02T");
    assert_eq!(text(&db, "DATE_ADD(month, 13, `2010T`)"), "2011-02T");
    assert_eq!(text(&db, "DATE_ADD(day, -1, `2017-01-10T`)"), "2017-01-09T");
    // A date gaining a time is in UTC (QLDB shows `2017-01-01T01:00Z`; ion-rs writes the
    // same offset as `+00:00`), not at the unknown offset `-00:00`.
    assert_eq!(
        text(&db, "DATE_ADD(hour, 1, `2017T`)"),
        "2017-01-01T01:00+00:00"
    );
    assert_eq!(
        value(&db, "DATE_ADD(minute, 1, `2017-01-02T03:04Z`)"),
        ion("2017-01-02T03:05Z")
    );
    assert_eq!(
        value(&db, "DATE_ADD(second, 1, `2017-01-02T03:04:05.006Z`)"),
        ion("2017-01-02T03:04:06.006Z")
    );
    let message = error(&db, "DATE_ADD(day, 'x', `2017T`)").to_string();
    assert!(
        message.contains("DATE_ADD") && message.contains("argument 2"),
        "{message}"
    );
}

#[test]
fn date_diff() {
    let db = db();
    assert_eq!(
        value(&db, "DATE_DIFF(year, `2010-01-01T`, `2011-01-01T`)"),
        ion("1")
    );
    assert_eq!(
        value(&db, "DATE_DIFF(year, `2010-12T`, `2011-01T`)"),
        ion("0")
    );
    assert_eq!(
        value(&db, "DATE_DIFF(month, `2010T`, `2010-05T`)"),
        ion("4")
    );
    assert_eq!(value(&db, "DATE_DIFF(month, `2010T`, `2011T`)"), ion("12"));
    assert_eq!(value(&db, "DATE_DIFF(month, `2011T`, `2010T`)"), ion("-12"));
    assert_eq!(
        value(
            &db,
            "DATE_DIFF(day, `2010-01-01T23:00Z`, `2010-01-02T01:00Z`)"
        ),
        ion("0")
    );
}

#[test]
fn extract() {
    let db = db();
    assert_eq!(value(&db, "EXTRACT(YEAR FROM `2010-01-01T`)"), ion("2010"));
    assert_eq!(value(&db, "EXTRACT(MONTH FROM `2010T`)"), ion("1"));
    assert_eq!(
        value(&db, "EXTRACT(HOUR FROM `2017-01-02T03:04:05+07:08`)"),
        ion("3")
    );
    assert_eq!(
        value(&db, "EXTRACT(MINUTE FROM `2017-01-02T03:04:05+07:08`)"),
        ion("4")
    );
    assert_eq!(
        value(&db, "EXTRACT(SECOND FROM `2017-01-02T03:04:05.006Z`)"),
        ion("5.006")
    );
}

#[test]
fn to_string_and_to_timestamp() {
    let db = db();
    assert_eq!(
        value(&db, "TO_STRING(`1969-07-20T20:18Z`, 'MMMM d, y')"),
        ion("\"July 20, 1969\"")
    );
    assert_eq!(
        value(&db, "TO_STRING(`1969-07-20T20:18Z`, 'MMM d, yyyy')"),
        ion("\"Jul 20, 1969\"")
    );
    assert_eq!(
        value(&db, "TO_STRING(`1969-07-20T20:18Z`, 'M-d-yy')"),
        ion("\"7-20-69\"")
    );
    assert_eq!(
        value(&db, "TO_STRING(`1969-07-20T20:18Z`, 'MMM d, yyyy h:m a')"),
        ion("\"Jul 20, 1969 8:18 PM\"")
    );
    assert_eq!(
        value(&db, "TO_STRING(`1969-07-20T20:18Z`, 'y-MM-dd''T''H:m:ssX')"),
        ion("\"1969-07-20T20:18:00Z\"")
    );
    assert_eq!(text(&db, "TO_TIMESTAMP('2007T')"), "2007T");
    assert_eq!(
        value(&db, "TO_TIMESTAMP('2007-02-23T12:14:33.079-08:00')"),
        ion("2007-02-23T12:14:33.079-08:00")
    );
    assert_eq!(text(&db, "TO_TIMESTAMP('2016', 'y')"), "2016T");
    assert_eq!(
        text(&db, "TO_TIMESTAMP('June 1 2016', 'MMMM d yyyy')"),
        "2016-06-01T"
    );
    assert_eq!(
        text(&db, "TO_TIMESTAMP('Jun 1, 2016', 'MMM d, yyyy')"),
        "2016-06-01T"
    );
    assert!(matches!(
        error(&db, "TO_TIMESTAMP('nope')"),
        PartiqlError::Type(_)
    ));
}

#[test]
fn utcnow_and_txid_come_from_the_transaction() {
    let db = db();
    let mut tx = db.ledger.begin().unwrap();
    let rows = quill_partiql::execute(
        &mut tx,
        "SELECT UTCNOW() AS now, TXID() AS id FROM One",
        &[],
    )
    .unwrap();
    let fields = rows[0].as_struct().unwrap();
    assert_eq!(
        fields.get("now").unwrap().as_timestamp().unwrap(),
        tx.start_time()
    );
    assert_eq!(fields.get("id").unwrap().as_text().unwrap(), tx.id());
    quill_partiql::execute(
        &mut tx,
        "INSERT INTO One VALUE {'created': UTCNOW(), 'by': TXID()}",
        &[],
    )
    .unwrap();
    tx.commit().unwrap();
    assert_eq!(
        db.q("SELECT * FROM One AS o WHERE o.created IS NOT MISSING")
            .len(),
        1
    );
}

#[test]
fn string_functions() {
    let db = db();
    assert_eq!(value(&db, "CHAR_LENGTH('abcdefg')"), ion("7"));
    assert_eq!(value(&db, "CHARACTER_LENGTH('')"), ion("0"));
    assert_eq!(value(&db, "CHAR_LENGTH(o.name)"), ion("6"));
    assert_eq!(value(&db, "LOWER('AbCdEfG!@#$')"), ion("\"abcdefg!@#$\""));
    assert_eq!(value(&db, "UPPER('AbCdEfG!@#$')"), ion("\"ABCDEFG!@#$\""));
    assert_eq!(
        value(&db, "SUBSTRING('123456789', 0)"),
        ion("\"123456789\"")
    );
    assert_eq!(value(&db, "SUBSTRING('123456789', 2)"), ion("\"23456789\""));
    assert_eq!(
        value(&db, "SUBSTRING('123456789', -4)"),
        ion("\"123456789\"")
    );
    assert_eq!(
        value(&db, "SUBSTRING('123456789', 0, 999)"),
        ion("\"123456789\"")
    );
    assert_eq!(value(&db, "SUBSTRING('123456789', 0, 2)"), ion("\"1\""));
    assert_eq!(value(&db, "SUBSTRING('1', -4, 0)"), ion("\"\""));
    assert_eq!(
        value(&db, "TRIM('       foobar         ')"),
        ion("\"foobar\"")
    );
    assert_eq!(
        value(&db, "TRIM(LEADING FROM '       foobar         ')"),
        ion("\"foobar         \"")
    );
    assert_eq!(
        value(&db, "TRIM(TRAILING FROM '       foobar         ')"),
        ion("\"       foobar\"")
    );
    assert_eq!(
        value(&db, "TRIM(BOTH '1' FROM '11foobar11')"),
        ion("\"foobar\"")
    );
    assert_eq!(
        value(&db, "TRIM(BOTH 'xyz' FROM 'yxzfoobarxyzxyzzyz')"),
        ion("\"foobar\"")
    );
    assert_eq!(value(&db, "UPPER(o.missing_field)"), ion("null"));
    let message = error(&db, "UPPER(1)").to_string();
    assert!(
        message.contains("UPPER") && message.contains("argument 1"),
        "{message}"
    );
}

#[test]
fn conditional_functions_and_size() {
    let db = db();
    assert_eq!(value(&db, "COALESCE(NULL, o.nope, 1)"), ion("1"));
    assert_eq!(value(&db, "COALESCE(NULL, NULL)"), ion("null"));
    assert_eq!(value(&db, "NULLIF(1, 1)"), ion("null"));
    assert_eq!(value(&db, "NULLIF(1, 2)"), ion("1"));
    assert_eq!(value(&db, "EXISTS(o.list)"), ion("true"));
    assert_eq!(value(&db, "EXISTS(o.empty)"), ion("false"));
    assert_eq!(
        value(
            &db,
            "EXISTS(SELECT * FROM One AS x WHERE x.name = 'Ducati')"
        ),
        ion("true")
    );
    assert_eq!(value(&db, "SIZE(o.list)"), ion("3"));
    assert_eq!(value(&db, "SIZE(`{a: 1}`)"), ion("1"));
    assert!(matches!(error(&db, "SIZE(1)"), PartiqlError::Type(_)));
}

#[test]
fn cast() {
    let db = db();
    assert_eq!(value(&db, "CAST('12' AS INT)"), ion("12"));
    assert_eq!(value(&db, "CAST(12 AS STRING)"), ion("\"12\""));
    assert_eq!(value(&db, "CAST(1.5 AS INT)"), ion("1"));
    assert_eq!(value(&db, "CAST(1 AS DECIMAL)"), ion("1."));
    assert_eq!(value(&db, "CAST('2017T' AS TIMESTAMP)"), ion("2017T"));
    assert_eq!(value(&db, "CAST('true' AS BOOL)"), ion("true"));
    assert_eq!(value(&db, "CAST(NULL AS INT)"), ion("null"));
    assert!(matches!(
        error(&db, "CAST('x' AS INT)"),
        PartiqlError::Type(_)
    ));
}

#[test]
fn arithmetic_is_exact_and_overflow_checked() {
    let db = db();
    assert_eq!(value(&db, "0.1 + 0.2"), ion("0.3"));
    assert_eq!(value(&db, "1 = 1.0"), ion("true"));
    assert_eq!(value(&db, "7 / 2"), ion("3"));
    assert_eq!(value(&db, "7.0 / 2"), ion("3.5"));
    assert_eq!(value(&db, "'a' || 'b'"), ion("\"ab\""));
    assert!(matches!(
        error(&db, "170141183460469231731687303715884105727 + 1"),
        PartiqlError::Type(_)
    ));
    assert!(matches!(error(&db, "1 / 0"), PartiqlError::Type(_)));
}
