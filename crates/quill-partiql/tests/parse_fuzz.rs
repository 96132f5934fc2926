//! Property-based fuzzing of the parser: random strings, token soups built from the dialect's
//! keywords and operators, and byte-level mutations of the committed corpus
//! (`fuzz/corpus/*.partiql`). Every input must return without panicking; errors must carry a
//! 1-based position; every accepted statement must round-trip through `Display`.
//! Case counts are moderate so the suite runs in seconds in debug builds (see [`CASES`]).

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use quill_partiql::lexer::Keyword;
use quill_partiql::parser::parse;

/// Cases per property; `PROPTEST_CASES=100000` runs a longer campaign.
const CASES: u32 = 1_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(CASES),
        // Failures print the minimal input; no regression files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut texts: Vec<String> = fs::read_dir(dir)
            .expect("corpus directory")
            .map(|entry| entry.expect("corpus entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "partiql"))
            .map(|path| fs::read_to_string(path).expect("corpus file"))
            .collect();
        texts.sort();
        assert!(texts.len() >= 40, "corpus too small: {}", texts.len());
        texts
    })
}

/// The properties every input must satisfy.
fn check(text: &str) {
    match parse(text) {
        Ok(statement) => {
            let printed = statement.to_string();
            let reparsed = parse(&printed)
                .unwrap_or_else(|e| panic!("printed form does not parse: {printed:?}: {e}"));
            // Debug equality covers NaN literals, which are never `==` to themselves.
            let same = reparsed == statement || format!("{reparsed:?}") == format!("{statement:?}");
            assert!(same, "round trip changed the tree: {text:?} → {printed:?}");
            assert_eq!(
                reparsed.to_string(),
                printed,
                "printing is not stable for {text:?}"
            );
        }
        Err(error) => {
            assert!(
                error.line >= 1 && error.column >= 1,
                "bad position: {error:?}"
            );
            assert!(!error.message.is_empty());
        }
    }
}

/// Fragments a token soup is built from: every keyword, every operator, and a few names and
/// literals of each kind.
fn fragments() -> Vec<String> {
    let mut fragments: Vec<String> = Keyword::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    let extra = [
        "+",
        "-",
        "*",
        "/",
        "%",
        "||",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        ".",
        ",",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ":",
        ";",
        "<<",
        ">>",
        "?",
        "v",
        "r",
        "Vehicle",
        "\"id\"",
        "'x'",
        "'it''s'",
        "7",
        "90.25",
        "1e3",
        "`2019T`",
        "`{a:1}`",
        "`nan`",
        "COUNT",
        "TRIM",
        "SUBSTRING",
        "EXTRACT",
        "DATE_ADD",
        "DATE_DIFF",
        "year",
        "history",
        "purge",
        "aws_tags",
        "NULLS",
        "FIRST",
        "EXISTS",
        "-- c\n",
        "/* c */",
    ];
    fragments.extend(extra.iter().map(|s| s.to_string()));
    fragments
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, length: usize },
    Insert { at: usize, byte: u8 },
    Duplicate { at: usize, length: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(at, length)| Mutation::Delete { at, length }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (any::<usize>(), 1usize..16).prop_map(|(at, length)| Mutation::Duplicate { at, length }),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for mutation in mutations {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Delete { at, length } => {
                let start = at % len;
                let end = (start + length).min(bytes.len());
                bytes.drain(start.min(bytes.len())..end);
            }
            Mutation::Insert { at, byte } => bytes.insert((at % len).min(bytes.len()), byte),
            Mutation::Duplicate { at, length } => {
                let start = (at % len).min(bytes.len());
                let end = (start + length).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_strings_never_panic(text in "\\PC{0,120}") {
        check(&text);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soups_never_panic(picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..40)) {
        let fragments = fragments();
        let text: Vec<&str> = picks.iter().map(|pick| fragments[pick.index(fragments.len())].as_str()).collect();
        check(&text.join(" "));
    }

    #[test]
    fn corpus_mutations_never_panic(
        pick in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let text = &corpus[pick.index(corpus.len())];
        check(&apply(text, &mutations));
    }

    #[test]
    fn corpus_splices_never_panic(
        first in any::<prop::sample::Index>(),
        second in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        // Joins the head of one statement to the tail of another: valid-looking prefixes with
        // surprising continuations.
        let corpus = corpus();
        let head = corpus[first.index(corpus.len())].as_bytes();
        let tail = corpus[second.index(corpus.len())].as_bytes();
        let at = cut.index(head.len().min(tail.len()).max(1));
        let mut bytes = head[..at.min(head.len())].to_vec();
        bytes.extend_from_slice(&tail[at.min(tail.len())..]);
        check(&String::from_utf8_lossy(&bytes));
    }
}

/// Expression text from a small grammar, so most generated statements are valid and the
/// round-trip property is exercised on deep, varied trees rather than only on the corpus.
fn expression_text() -> impl Strategy<Value = String> {
    let leaves = [
        "v", "r.VIN", "?", "'x'", "'it''s'", "7", "90.25", "1.50", "1e3", "-3", "-0.0", "NULL",
        "MISSING", "TRUE", "`2019T`", "`{a: 1}`", "`sym`", "`nan`", "`1d5`", "\"q\"", "a[0]",
        "a['f']", "a[?].b", "a[*].b", "a.*", "COUNT(*)", "UTCNOW()", "{}", "[]", "<<>>",
    ];
    let leaf = prop::sample::select(leaves.to_vec()).prop_map(str::to_string);
    leaf.prop_recursive(5, 48, 4, |inner| {
        let ops = prop::sample::select(vec![
            "+", "-", "*", "/", "%", "||", "=", "<>", "!=", "<", "<=", ">", ">=", "AND", "OR",
        ]);
        let pair = (inner.clone(), inner.clone());
        prop_oneof![
            (inner.clone(), ops, inner.clone()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("- {a}")),
            inner.clone().prop_map(|a| format!("+{a}")),
            (inner.clone(), pair.clone())
                .prop_map(|(a, (b, c))| format!("{a} NOT BETWEEN {b} AND {c}")),
            (inner.clone(), prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(a, items)| format!("{a} IN ({})", items.join(", "))),
            pair.clone().prop_map(|(a, b)| format!("{a} NOT IN [{b}]")),
            pair.clone()
                .prop_map(|(a, b)| format!("{a} LIKE {b} ESCAPE '!'")),
            inner.clone().prop_map(|a| format!("{a} IS NOT MISSING")),
            pair.clone()
                .prop_map(|(a, b)| format!("{{'k': {a}, n: {b}, (v): 1}}")),
            pair.clone().prop_map(|(a, b)| format!("[{a}, {b}]")),
            pair.clone().prop_map(|(a, b)| format!("<<{a}, {b}>>")),
            pair.clone().prop_map(|(a, b)| format!("({a})[{b}].f")),
            pair.clone()
                .prop_map(|(a, b)| format!("CASE {a} WHEN {b} THEN 1 ELSE 2 END")),
            pair.clone()
                .prop_map(|(a, b)| format!("CASE WHEN {a} THEN {b} END")),
            inner.clone().prop_map(|a| format!("CAST({a} AS decimal)")),
            pair.clone()
                .prop_map(|(a, b)| format!("TRIM(LEADING {a} FROM {b})")),
            pair.clone()
                .prop_map(|(a, b)| format!("SUBSTRING({a} FROM {b} FOR 2)")),
            pair.clone()
                .prop_map(|(a, b)| format!("DATE_DIFF(day, {a}, {b})")),
            inner
                .clone()
                .prop_map(|a| format!("EXTRACT(year FROM {a})")),
            pair.clone()
                .prop_map(|(a, b)| format!("coalesce({a}, {b})")),
            inner
                .clone()
                .prop_map(|a| format!("EXISTS(SELECT VALUE {a} FROM t)")),
            pair.prop_map(|(a, b)| format!("(SELECT {a} AS x FROM t AS s WHERE {b})")),
        ]
    })
}

/// Ways to wrap an expression one level deeper (`{}` is the wrapped text).
const WRAPPERS: [&str; 14] = [
    "({})",
    "[{}]",
    "- {}",
    "+{}",
    "NOT {}",
    "{} + 1",
    "1 * {}",
    "f({})",
    "{'a': {}}",
    "({}).x",
    "<<{}>>",
    "CASE WHEN {} THEN 1 END",
    "(SELECT VALUE {} FROM t)",
    "{} IS NULL",
];

fn statement_text() -> impl Strategy<Value = String> {
    let e = expression_text;
    prop_oneof![
        (e(), e()).prop_map(|(a, b)| format!("SELECT {a} AS x, v.* FROM t AS v WHERE {b}")),
        (e(), e()).prop_map(|(a, b)| format!(
            "SELECT VALUE {a} FROM t AS v, v.l AS y AT i ORDER BY {b} DESC"
        )),
        (e(), e())
            .prop_map(|(a, b)| format!("UPDATE t AS v BY id SET v.a = {a}, v.b[0] = 1 WHERE {b}")),
        (e(), e())
            .prop_map(|(a, b)| format!("FROM t AS v WHERE {a} INSERT INTO v.l VALUE {b} AT 0")),
        e().prop_map(|a| format!("INSERT INTO t VALUE {a}")),
        e().prop_map(|a| format!("DELETE FROM t WHERE {a}")),
        e().prop_map(|a| format!("EXEC p {a}, ?")),
        (e(), e()).prop_map(|(a, b)| format!(
            "SELECT * FROM t AS v INNER JOIN u AS w ON {a} GROUP BY {b} AS g"
        )),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_statements_round_trip(text in statement_text()) {
        check(&text);
    }

    #[test]
    fn deep_nesting_round_trips_or_fails_cleanly(
        wrappers in proptest::collection::vec(0usize..WRAPPERS.len(), 0..140),
    ) {
        // Near the depth budget, the printed form must not nest deeper than the input did.
        let mut text = "?".to_string();
        for wrapper in wrappers {
            text = WRAPPERS[wrapper].replace("{}", &text);
        }
        check(&format!("SELECT * FROM t WHERE {text}"));
    }
}

#[test]
fn corpus_statements_parse() {
    for text in corpus() {
        assert!(parse(text).is_ok(), "corpus statement fails: {text}");
        check(text);
    }
}
