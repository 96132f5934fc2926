//! A document-id key passed as a parameter is looked up exactly as the same key written as a
//! literal, and both return what a full scan testing `=` on every document returns: in the
//! user view (`BY id … WHERE id = ?`, `? = id`, `id IN (?, …)`, and in UPDATE), the committed
//! view and history (`metadata.id = ?`). Keys are live, deleted and unknown ids, ids as
//! symbols (PartiQL `=` equates a symbol with a string), and values no id can equal.

use ion_rs::Element;
use proptest::prelude::*;
use quill_ledger::{Ledger, LedgerOptions};
use quill_partiql::{execute, explain};

/// Cases per property; `PROPTEST_CASES=2000` runs a longer campaign.
const CASES: u32 = 16;

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

/// A key, relative to the documents a case created.
#[derive(Debug, Clone)]
enum Key {
    /// The id of document `i` (modulo their number) as a string; it may have been deleted.
    Id(usize),
    /// The same id as a symbol.
    Symbol(usize),
    /// A well-formed id no document has.
    Unknown,
    Int,
    Null,
}

impl Key {
    /// The key as an Ion value and as the Ion text of a backquoted literal.
    fn render(&self, ids: &[String]) -> (Element, String) {
        let id = |i: &usize| ids[i % ids.len()].clone();
        match self {
            Key::Id(i) => (Element::string(id(i)), format!("\"{}\"", id(i))),
            Key::Symbol(i) => (Element::symbol(id(i)), format!("'{}'", id(i))),
            Key::Unknown => (
                Element::string("AAAAAAAAAAAAAAAAAAAAAA"),
                "\"AAAAAAAAAAAAAAAAAAAAAA\"".to_string(),
            ),
            Key::Int => (Element::int(7), "7".to_string()),
            Key::Null => (
                Element::null(ion_rs::IonType::String),
                "null.string".to_string(),
            ),
        }
    }
}

fn key_strategy() -> impl Strategy<Value = Key> {
    prop_oneof![
        6 => any::<usize>().prop_map(Key::Id),
        2 => any::<usize>().prop_map(Key::Symbol),
        1 => Just(Key::Unknown),
        1 => Just(Key::Int),
        1 => Just(Key::Null),
    ]
}

/// How the keys are written.
#[derive(Debug, Clone, Copy)]
enum Form {
    Equal,
    Reversed,
    In,
}

fn form_strategy() -> impl Strategy<Value = Form> {
    prop_oneof![Just(Form::Equal), Just(Form::Reversed), Just(Form::In)]
}

/// The condition on `key` (`id`, `c.metadata.id`, …) with the keys as `?` or as literals,
/// and the same test written so the planner cannot use a lookup (a disjunction scans).
fn conditions(key: &str, form: Form, keys: &[String], parameters: bool) -> (String, String) {
    let keys: Vec<String> = match parameters {
        true => keys.iter().map(|_| "?".to_string()).collect(),
        false => keys.iter().map(|k| format!("`{k}`")).collect(),
    };
    let lookup = match form {
        Form::Equal => format!("{key} = {}", keys[0]),
        Form::Reversed => format!("{} = {key}", keys[0]),
        Form::In => format!("{key} IN ({})", keys.join(", ")),
    };
    let scan = format!("({lookup}) OR 1 = 0");
    (lookup, scan)
}

/// The keys a form uses: the first only, or all of them for `IN`.
fn used(form: Form, keys: &[(Element, String)]) -> &[(Element, String)] {
    match form {
        Form::In => keys,
        Form::Equal | Form::Reversed => &keys[..1],
    }
}

fn sorted(mut rows: Vec<Element>) -> Vec<String> {
    let mut texts: Vec<String> = rows.drain(..).map(|row| row.to_string()).collect();
    texts.sort();
    texts
}

struct Case {
    _dir: tempfile::TempDir,
    ledger: Ledger,
}

impl Case {
    fn run(&self, statement: &str, parameters: &[Element]) -> Vec<Element> {
        let mut tx = self.ledger.begin().unwrap();
        let rows = execute(&mut tx, statement, parameters)
            .unwrap_or_else(|e| panic!("{statement} {parameters:?}: {e}"));
        tx.commit().unwrap();
        rows
    }

    fn plan(&self, statement: &str) -> String {
        let mut tx = self.ledger.begin().unwrap();
        explain(&mut tx, statement).unwrap()
    }

    /// The rows of `select` with the lookup condition as parameters and as literals, and with
    /// the scanning condition; the parameter form must plan `access`.
    fn check(&self, select: &str, key: &str, form: Form, keys: &[(Element, String)], access: &str) {
        let texts: Vec<String> = keys.iter().map(|(_, text)| text.clone()).collect();
        let values: Vec<Element> = keys.iter().map(|(value, _)| value.clone()).collect();
        let (with_parameters, _) = conditions(key, form, &texts, true);
        let (with_literals, scanning) = conditions(key, form, &texts, false);
        let statement = format!("{select} WHERE {with_parameters}");
        let expected = sorted(self.run(&format!("{select} WHERE {scanning}"), &[]));
        assert_eq!(
            sorted(self.run(&statement, &values)),
            expected,
            "{statement}"
        );
        let literal = format!("{select} WHERE {with_literals}");
        assert_eq!(sorted(self.run(&literal, &[])), expected, "{literal}");
        let plan = self.plan(&statement);
        assert!(plan.contains(access), "{statement}: {plan}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_parameter_id_key_finds_what_the_literal_and_a_scan_find(
        documents in 1usize..8,
        deleted in prop::collection::vec(any::<usize>(), 0..3),
        updated in prop::collection::vec(any::<usize>(), 0..3),
        keys in prop::collection::vec(key_strategy(), 1..4),
        form in form_strategy(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = LedgerOptions { id_seed: Some(5), ..LedgerOptions::default() };
        let ledger = Ledger::create(dir.path(), "ids", options).unwrap();
        let case = Case { _dir: dir, ledger };
        case.run("CREATE TABLE T", &[]);
        let ids: Vec<String> = (0..documents)
            .map(|n| {
                let row = case.run("INSERT INTO T ?", &[Element::read_one(format!("{{n: {n}}}")).unwrap()]);
                row[0].as_struct().unwrap().get("documentId").unwrap().as_text().unwrap().to_string()
            })
            .collect();
        for i in &updated {
            let id = Element::string(ids[i % ids.len()].clone());
            case.run("UPDATE T AS t BY id SET t.u = 1 WHERE id = ?", &[id]);
        }
        for i in &deleted {
            let id = Element::string(ids[i % ids.len()].clone());
            case.run("DELETE FROM T AS t BY id WHERE id = ?", &[id]);
        }
        let rendered: Vec<(Element, String)> = keys.iter().map(|k| k.render(&ids)).collect();
        let keys = used(form, &rendered);
        case.check("SELECT id, t.n FROM T AS t BY id", "id", form, keys, "IdLookup T");
        case.check(
            "SELECT c.metadata.id, c.metadata.version FROM _ql_committed_T AS c",
            "c.metadata.id",
            form,
            keys,
            "IdLookup _ql_committed_T",
        );
        case.check(
            "SELECT h.metadata.id, h.metadata.version FROM history(T) AS h",
            "h.metadata.id",
            form,
            keys,
            "IdLookup history(T)",
        );
        // UPDATE through the parameter form changes exactly the documents the scan selects.
        let (update, _) = conditions("id", form, &keys.iter().map(|k| k.1.clone()).collect::<Vec<_>>(), true);
        let (_, scanning) = conditions("id", form, &keys.iter().map(|k| k.1.clone()).collect::<Vec<_>>(), false);
        let expected = sorted(case.run(&format!("SELECT VALUE id FROM T AS t BY id WHERE {scanning}"), &[]));
        let values: Vec<Element> = keys.iter().map(|k| k.0.clone()).collect();
        let statement = format!("UPDATE T AS t BY id SET t.hit = true WHERE {update}");
        let changed: Vec<Element> = case
            .run(&statement, &values)
            .iter()
            .map(|row| Element::string(row.as_struct().unwrap().get("documentId").unwrap().as_text().unwrap()))
            .collect();
        prop_assert_eq!(sorted(changed), expected.clone(), "{}", statement);
        let hit = sorted(case.run("SELECT VALUE id FROM T AS t BY id WHERE t.hit = true", &[]));
        prop_assert_eq!(hit, expected);
    }
}
