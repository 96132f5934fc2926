//! An index never changes a query's result: the same random documents go into a table with an
//! index on `f` and one without, random equality and `IN` queries (literal and parameter forms)
//! must return the same rows from both, and the rows PartiQL `=` selects from a model of the
//! table. Updates and deletes through the index, `CREATE INDEX` on a non-empty table, writes
//! and reads in one transaction, and reopening the ledger are mixed in.
//! Case counts are small so the suite runs in seconds in debug builds (see [`CASES`]).

use std::collections::BTreeMap;

use ion_rs::{Element, IonData};
use proptest::prelude::*;
use quill_ledger::{Ledger, LedgerError, LedgerOptions};
use quill_partiql::value::{compare, CompareOp, Datum};
use quill_partiql::{execute, explain, PartiqlError};

/// Cases per property; `PROPTEST_CASES=2000` runs a longer campaign.
const CASES: u32 = 24;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(CASES),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values, in Ion text, chosen so that many are `=` to each other across types and forms, and
/// many are near misses.
const VALUES: &[&str] = &[
    "100",
    "100.00",
    "1d2",
    "100e0",
    "x::100",
    "100.01",
    "0",
    "-0e0",
    "0d-3",
    "0.1",
    "0.1e0",
    "0.5",
    "5e-1",
    "9007199254740992",
    "9007199254740993",
    "9007199254740992e0",
    "123456789012345678901234567890",
    "123456789012345678901234567890.000",
    "nan",
    "+inf",
    "-inf",
    "\"abc\"",
    "abc",
    "a::\"abc\"",
    "'a b'",
    "\"a b\"",
    "\"100\"",
    "true",
    "false",
    "null",
    "null.int",
    "null.string",
    "a::null",
    "2022T",
    "2022-01-01T00:00Z",
    "2022-01-01T00:00:00.000-00:00",
    "2022-01-01T01:00+01:00",
    "2022-01-01T00:00:00.001Z",
    "{{YWJj}}",
    "{{\"abc\"}}",
    "[1]",
    "[1.0]",
    "(1)",
    "[null]",
    "[null.int]",
    "[\"abc\", 1]",
    "[abc, 1e0]",
    "[]",
    "{a: 1}",
    "{a: 1.0}",
    "{a: 1, a: 1}",
    "{a: abc, b: [1]}",
    "{b: [1.00], a: \"abc\"}",
    "{}",
];

fn value_strategy() -> BoxedStrategy<String> {
    let scalar = prop::sample::select(VALUES).prop_map(str::to_string);
    prop_oneof![
        6 => scalar.clone(),
        1 => (scalar.clone(), scalar.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
        1 => scalar.prop_map(|a| format!("{{a: {a}}}")),
    ]
    .boxed()
}

/// What a document holds in `f`.
#[derive(Debug, Clone)]
enum Field {
    Missing,
    One(String),
    /// `f` twice: paths and indexes read the first.
    Twice(String, String),
}

fn field_strategy() -> impl Strategy<Value = Field> {
    prop_oneof![
        1 => Just(Field::Missing),
        8 => value_strategy().prop_map(Field::One),
        1 => (value_strategy(), value_strategy()).prop_map(|(a, b)| Field::Twice(a, b)),
    ]
}

/// An equality or `IN` predicate on `t.f`.
#[derive(Debug, Clone)]
struct Predicate {
    keys: Vec<String>,
    /// `IN (…)` rather than `=` (which takes the first key).
    is_in: bool,
    /// `?` parameters rather than backquoted literals.
    parameters: bool,
    /// `k = t.f` rather than `t.f = k`.
    reversed: bool,
}

fn predicate_strategy() -> impl Strategy<Value = Predicate> {
    (
        prop::collection::vec(value_strategy(), 1..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(keys, is_in, parameters, reversed)| Predicate {
            keys,
            is_in,
            parameters,
            reversed,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Field),
    /// `UPDATE … SET t.f = new WHERE <predicate>`.
    Update(Predicate, Field),
    /// `DELETE … WHERE <predicate>`.
    Delete(Predicate),
    Query(Predicate),
    /// An insert and a query in one transaction (the query sees the uncommitted insert).
    InsertThenQuery(Field, Predicate),
    CreateIndex,
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => field_strategy().prop_map(Op::Insert),
        2 => (predicate_strategy(), field_strategy()).prop_map(|(p, f)| Op::Update(p, f)),
        1 => predicate_strategy().prop_map(Op::Delete),
        4 => predicate_strategy().prop_map(Op::Query),
        1 => (field_strategy(), predicate_strategy()).prop_map(|(f, p)| Op::InsertThenQuery(f, p)),
        1 => Just(Op::CreateIndex),
        1 => Just(Op::Reopen),
    ]
}

fn ion(text: &str) -> Element {
    Element::read_one(text).unwrap_or_else(|e| panic!("bad Ion {text:?}: {e}"))
}

const TABLES: [&str; 2] = ["Plain", "Indexed"];

/// The two tables, their model (document number → data) and the ledger they live in.
struct Harness {
    dir: tempfile::TempDir,
    ledger: Option<Ledger>,
    model: BTreeMap<i64, Element>,
    next: i64,
    indexed: bool,
}

fn options() -> LedgerOptions {
    LedgerOptions {
        id_seed: Some(11),
        ..LedgerOptions::default()
    }
}

impl Harness {
    fn new(indexed_from_start: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(dir.path(), "equivalence", options()).unwrap();
        let mut harness = Harness {
            dir,
            ledger: Some(ledger),
            model: BTreeMap::new(),
            next: 0,
            indexed: false,
        };
        for table in TABLES {
            harness.run_ok(&format!("CREATE TABLE {table}"), &[]);
        }
        if indexed_from_start {
            harness.create_index();
        }
        harness
    }

    fn ledger(&self) -> &Ledger {
        self.ledger.as_ref().expect("open")
    }

    fn run(&self, statement: &str, parameters: &[Element]) -> Result<Vec<Element>, PartiqlError> {
        let mut tx = self.ledger().begin()?;
        let rows = execute(&mut tx, statement, parameters)?;
        tx.commit()?;
        Ok(rows)
    }

    fn run_ok(&self, statement: &str, parameters: &[Element]) -> Vec<Element> {
        self.run(statement, parameters)
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    fn create_index(&mut self) {
        if !self.indexed {
            self.run_ok("CREATE INDEX ON Indexed (f)", &[]);
            self.indexed = true;
        }
    }

    fn reopen(&mut self) {
        drop(self.ledger.take());
        self.ledger = Some(Ledger::open(self.dir.path(), options()).unwrap());
    }

    fn document(&mut self, field: &Field) -> Element {
        let n = self.next;
        self.next += 1;
        let text = match field {
            Field::Missing => format!("{{n: {n}}}"),
            Field::One(v) => format!("{{n: {n}, f: {v}}}"),
            Field::Twice(a, b) => format!("{{n: {n}, f: {a}, f: {b}}}"),
        };
        let document = ion(&text);
        self.model.insert(n, document.clone());
        document
    }

    /// Takes the model from the tables after DML (so the test need not restate what SET and
    /// REMOVE do to repeated fields), checking that both tables hold the same documents.
    fn reload_model(&mut self) {
        let [plain, indexed] = TABLES.map(|table| {
            let rows = self.run_ok(&format!("SELECT VALUE t FROM {table} AS t"), &[]);
            rows.into_iter()
                .map(|row| {
                    let n = row
                        .as_struct()
                        .and_then(|s| s.get("n"))
                        .and_then(Element::as_i64);
                    (n.expect("every document has n"), row)
                })
                .collect::<BTreeMap<i64, Element>>()
        });
        assert_eq!(
            plain
                .iter()
                .map(|(n, d)| (*n, IonData::from(d)))
                .collect::<Vec<_>>(),
            indexed
                .iter()
                .map(|(n, d)| (*n, IonData::from(d)))
                .collect::<Vec<_>>(),
        );
        self.model = plain;
    }

    /// The model's answer: numbers of documents whose `f` is `=` to a key.
    fn expected(&self, predicate: &Predicate) -> Vec<i64> {
        self.model
            .iter()
            .filter(|(_, document)| matches(document, predicate))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Whether PartiQL `=` (the evaluator's) holds between the document's `f` and a key.
fn matches(document: &Element, predicate: &Predicate) -> bool {
    let field = match document.as_struct().and_then(|s| s.get("f")) {
        Some(value) => Datum::Ion(value.clone()),
        None => Datum::Missing,
    };
    keys_of(predicate)
        .iter()
        .any(|key| compare(CompareOp::Equal, &field, &Datum::Ion(ion(key))).is_true())
}

fn keys_of(predicate: &Predicate) -> &[String] {
    if predicate.is_in {
        &predicate.keys
    } else {
        &predicate.keys[..1]
    }
}

/// The WHERE clause and its parameters.
fn where_clause(predicate: &Predicate) -> (String, Vec<Element>) {
    let keys = keys_of(predicate);
    let (texts, parameters): (Vec<String>, Vec<Element>) = if predicate.parameters {
        (
            keys.iter().map(|_| "?".to_string()).collect(),
            keys.iter().map(|k| ion(k)).collect(),
        )
    } else {
        (keys.iter().map(|k| format!("`{k}`")).collect(), Vec::new())
    };
    let clause = if predicate.is_in {
        format!("t.f IN ({})", texts.join(", "))
    } else if predicate.reversed {
        format!("{} = t.f", texts[0])
    } else {
        format!("t.f = {}", texts[0])
    };
    (clause, parameters)
}

fn numbers(rows: Vec<Element>) -> Vec<i64> {
    let mut numbers: Vec<i64> = rows
        .iter()
        .map(|row| row.as_i64().unwrap_or_else(|| panic!("row {row}")))
        .collect();
    numbers.sort_unstable();
    numbers
}

fn select(table: &str, predicate: &Predicate) -> (String, Vec<Element>) {
    let (clause, parameters) = where_clause(predicate);
    (
        format!("SELECT VALUE t.n FROM {table} AS t WHERE {clause}"),
        parameters,
    )
}

/// Both tables and the model agree on the predicate's rows; with the index, the query uses it.
fn check_query(harness: &Harness, predicate: &Predicate) {
    let expected = harness.expected(predicate);
    for table in TABLES {
        let (statement, parameters) = select(table, predicate);
        let found = numbers(harness.run_ok(&statement, &parameters));
        assert_eq!(found, expected, "{statement} {parameters:?}");
    }
    if harness.indexed {
        let (statement, _) = select("Indexed", predicate);
        let mut tx = harness.ledger().begin().unwrap();
        let plan = explain(&mut tx, &statement).unwrap();
        assert!(
            plan.contains("IndexLookup Indexed.f"),
            "{statement}: {plan}"
        );
    }
}

fn apply(harness: &mut Harness, op: &Op) {
    match op {
        Op::Insert(field) => {
            let document = harness.document(field);
            for table in TABLES {
                harness.run_ok(
                    &format!("INSERT INTO {table} ?"),
                    std::slice::from_ref(&document),
                );
            }
        }
        Op::Update(predicate, field) => {
            let (clause, mut parameters) = where_clause(predicate);
            let set = match field {
                Field::Missing => "REMOVE t.f",
                Field::One(v) | Field::Twice(v, _) => {
                    parameters.insert(0, ion(v));
                    "SET t.f = ?"
                }
            };
            let counts: Vec<usize> = TABLES
                .iter()
                .map(|table| {
                    let statement = format!("UPDATE {table} AS t {set} WHERE {clause}");
                    harness.run_ok(&statement, &parameters).len()
                })
                .collect();
            assert_eq!(counts, vec![harness.expected(predicate).len(); 2], "{op:?}");
            harness.reload_model();
        }
        Op::Delete(predicate) => {
            let (clause, parameters) = where_clause(predicate);
            let counts: Vec<usize> = TABLES
                .iter()
                .map(|table| {
                    let statement = format!("DELETE FROM {table} AS t WHERE {clause}");
                    harness.run_ok(&statement, &parameters).len()
                })
                .collect();
            assert_eq!(counts, vec![harness.expected(predicate).len(); 2], "{op:?}");
            harness.reload_model();
        }
        Op::Query(predicate) => check_query(harness, predicate),
        Op::InsertThenQuery(field, predicate) => {
            let document = harness.document(field);
            let expected = harness.expected(predicate);
            for table in TABLES {
                let mut tx = harness.ledger().begin().unwrap();
                execute(
                    &mut tx,
                    &format!("INSERT INTO {table} ?"),
                    std::slice::from_ref(&document),
                )
                .unwrap();
                let (statement, parameters) = select(table, predicate);
                let found = numbers(execute(&mut tx, &statement, &parameters).unwrap());
                assert_eq!(found, expected, "in one transaction: {statement}");
                tx.commit().unwrap();
            }
        }
        Op::CreateIndex => harness.create_index(),
        Op::Reopen => harness.reopen(),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every query returns the same rows with and without the index, and the rows `=` selects.
    #[test]
    fn an_index_never_changes_a_result(
        indexed_from_start in any::<bool>(),
        ops in prop::collection::vec(op_strategy(), 1..24),
    ) {
        let mut harness = Harness::new(indexed_from_start);
        for op in &ops {
            apply(&mut harness, op);
        }
        // Finally, with the index in place (built over whatever the table holds by now) and
        // after a reopen, every value of the pool as an equality key.
        harness.create_index();
        harness.reopen();
        for value in VALUES {
            check_query(&harness, &Predicate {
                keys: vec![value.to_string()],
                is_in: false,
                parameters: true,
                reversed: false,
            });
        }
    }
}

/// The two examples: a decimal and an int, a string and a symbol.
#[test]
fn equal_values_of_other_types_are_found_through_the_index() {
    let harness = Harness::new(false);
    harness.run_ok("INSERT INTO Indexed {'f': 100.00}", &[]);
    harness.run_ok("INSERT INTO Indexed {'f': 100}", &[]);
    harness.run_ok("INSERT INTO Indexed {'f': 'abc'}", &[]);
    harness.run_ok("INSERT INTO Indexed {'f': `abc`}", &[]);
    let count = |statement: &str| harness.run_ok(statement, &[]);
    let before = (
        count("SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f = 100"),
        count("SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f = 'abc'"),
    );
    assert_eq!(before.0, vec![ion("{c: 2}")]);
    assert_eq!(before.1, vec![ion("{c: 2}")]);
    harness.run_ok("CREATE INDEX ON Indexed (f)", &[]);
    for statement in [
        "SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f = 100",
        "SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f = 100.00",
        "SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f = `1d2`",
        "SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f = 'abc'",
        "SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f = `abc`",
        "SELECT COUNT(*) AS c FROM Indexed AS t WHERE t.f IN (`100e0`, 'nothing')",
    ] {
        assert_eq!(count(statement), vec![ion("{c: 2}")], "{statement}");
    }
}

/// A lookup of one value is a phantom read for every equal value: inserting `100.00` conflicts
/// with a transaction that looked up `100` (and a symbol with a string lookup).
#[test]
fn an_index_lookup_conflicts_with_equal_values_of_other_types() {
    let harness = Harness::new(true);
    for (looked_up, equal, other) in [
        ("100", "100.00", "100.01"),
        ("'abc'", "`abc`", "'abd'"),
        ("`1e2`", "`1d2`", "`1e3`"),
    ] {
        for (inserted, conflicts) in [(other, false), (equal, true)] {
            let mut reader = harness.ledger().begin().unwrap();
            let statement = format!("SELECT VALUE t.n FROM Indexed AS t WHERE t.f = {looked_up}");
            assert!(execute(&mut reader, &statement, &[]).unwrap().is_empty());
            execute(&mut reader, "INSERT INTO Plain {'n': 0}", &[]).unwrap();
            harness.run_ok(&format!("INSERT INTO Indexed {{'f': {inserted}}}"), &[]);
            let outcome = reader.commit();
            assert_eq!(
                matches!(outcome, Err(LedgerError::OccConflict { .. })),
                conflicts,
                "{looked_up} vs {inserted}: {outcome:?}"
            );
            harness.run_ok("DELETE FROM Indexed AS t WHERE t.f IS NOT MISSING", &[]);
        }
    }
}
