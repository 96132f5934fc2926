//! Every Ion type round-trips unchanged through `INSERT … ?`, `UPDATE … SET x = ?` and
//! `SELECT VALUE x` (strict Ion equivalence: precision, offsets and annotations included).

mod eval_support;

use eval_support::{ion, Db};
use ion_rs::{Element, IonData};

const VALUES: &[&str] = &[
    "null",
    "null.bool",
    "null.int",
    "null.float",
    "null.decimal",
    "null.timestamp",
    "null.string",
    "null.symbol",
    "null.blob",
    "null.clob",
    "null.list",
    "null.sexp",
    "null.struct",
    "true",
    "false",
    "0",
    "-1",
    "9223372036854775808",
    "-123456789012345678901234567890123456789012345678901234567890",
    "1.5e0",
    "-0e0",
    "+inf",
    "-inf",
    "nan",
    "1.0",
    "1.00",
    "-0.0",
    "0d-3",
    "123456789012345678901234567890.12345",
    "1234567890123456789012345678901234567890.1234567890",
    "2017T",
    "2017-02T",
    "2017-02-03T",
    "2017-02-03T04:05Z",
    "2017-02-03T04:05-00:00",
    "2017-02-03T04:05:06+01:30",
    "2017-02-03T04:05:06.789-08:00",
    "2017-02-03T04:05:06.123456789Z",
    "2017-02-03T04:05:06.000Z",
    "sym",
    "'quoted symbol'",
    "\"str\"",
    "\"\"",
    "{{\"clob text\"}}",
    "{{aGVsbG8gd29ybGQ=}}",
    "{{}}",
    "[1, \"a\", [2], null]",
    "[]",
    "(a b 1 \"s\")",
    "()",
    "{a: 1, b: {c: [2]}, a: 3}",
    "{}",
    "a::b::5",
    "ann::{x: 1}",
    "ann::[inner::1]",
];

fn strictly_equal(a: &Element, b: &Element) -> bool {
    IonData::from(a) == IonData::from(b)
}

#[test]
fn every_ion_type_round_trips_through_insert_update_and_select() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    for text in VALUES {
        let value = ion(text);
        let id = db.qp(
            "INSERT INTO T VALUE {'k': ?, 'v': ?}",
            &[Element::string(*text), value.clone()],
        );
        assert_eq!(id.len(), 1);
        let read = db.qp(
            "SELECT VALUE t.v FROM T AS t WHERE t.k = ?",
            &[Element::string(*text)],
        );
        assert_eq!(read.len(), 1, "{text}");
        assert!(
            strictly_equal(&read[0], &value),
            "insert/select changed {text} into {}",
            read[0]
        );
        db.qp(
            "UPDATE T AS t SET t.v = ?, t.w = ? WHERE t.k = ?",
            &[value.clone(), value.clone(), Element::string(*text)],
        );
        let read = db.qp(
            "SELECT VALUE t.w FROM T AS t WHERE t.k = ?",
            &[Element::string(*text)],
        );
        assert!(
            strictly_equal(&read[0], &value),
            "update changed {text} into {}",
            read[0]
        );
    }
}

#[test]
fn whole_documents_round_trip_through_insert_parameters() {
    let db = Db::new();
    db.q("CREATE TABLE T");
    let document = ion("doc::{i: 1, d: 1.50, t: 2017-02-03T04:05:06.789-08:00, s: sym, b: {{aGk=}}, l: [(x y)], n: null.int}");
    db.qp("INSERT INTO T ?", std::slice::from_ref(&document));
    let rows = db.q("SELECT * FROM T");
    assert!(strictly_equal(&rows[0], &document), "{}", rows[0]);
}
