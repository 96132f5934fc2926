//! Random expressions over random values never panic the evaluator: every statement either
//! returns rows or a typed error, and the transaction stays usable.

mod eval_support;

use eval_support::Db;
use proptest::prelude::*;
use quill_partiql::execute;

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        Just("170141183460469231731687303715884105727".to_string()),
        Just("-170141183460469231731687303715884105728".to_string()),
        (any::<i32>(), 0u32..40).prop_map(|(c, e)| format!("`{c}d-{e}`")),
        Just("`1e308`".to_string()),
        Just("`nan`".to_string()),
        "[a-z%_!]{0,6}".prop_map(|s| format!("'{s}'")),
        Just("NULL".to_string()),
        Just("MISSING".to_string()),
        Just("TRUE".to_string()),
        Just("`2017-02-28T23:59:59.999Z`".to_string()),
        Just("`0001T`".to_string()),
        Just("`9999-12-31T`".to_string()),
        Just("[1, 'a', NULL]".to_string()),
        Just("{'a': 1}".to_string()),
        Just("o.list".to_string()),
        Just("o.name".to_string()),
        Just("o.nope".to_string()),
        Just("o.list[5]".to_string()),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    literal().prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                "(\\+|-|\\*|/|%|\\|\\||=|<>|<|<=|>|>=|AND|OR)",
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("(NOT {a})")),
            inner.clone().prop_map(|a| format!("(-{a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} LIKE {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a} BETWEEN {b} AND {c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} IN ({b}, 1))")),
            inner.clone().prop_map(|a| format!("({a} IS NULL)")),
            (
                "(UPPER|LOWER|CHAR_LENGTH|SIZE|EXISTS|TO_TIMESTAMP|COALESCE)",
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            (
                "(year|month|day|hour|minute|second)",
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(p, a, b)| format!("DATE_ADD({p}, {a}, {b})")),
            (
                "(year|month|day|hour|minute|second)",
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(p, a, b)| format!("DATE_DIFF({p}, {a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("TO_STRING({a}, {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("SUBSTRING({a}, {b}, {c})")),
            (inner.clone(), "(INT|DECIMAL|FLOAT|STRING|TIMESTAMP|BOOL)")
                .prop_map(|(a, t)| format!("CAST({a} AS {t})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("NULLIF({a}, {b})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_expressions_never_panic(expressions in proptest::collection::vec(expression(), 1..8)) {
        let db = Db::new();
        db.q("CREATE TABLE One");
        db.q("INSERT INTO One VALUE {'list': [1, 2, 3], 'name': 'Ducati'}");
        let mut tx = db.ledger.begin().unwrap();
        for expression in &expressions {
            let _ = execute(&mut tx, &format!("SELECT VALUE {expression} FROM One AS o"), &[]);
            let _ = execute(&mut tx, &format!("SELECT VALUE o FROM One AS o WHERE {expression}"), &[]);
            let _ = execute(&mut tx, &format!("UPDATE One AS o SET o.r = {expression}"), &[]);
        }
        let rows = execute(&mut tx, "SELECT VALUE o.name FROM One AS o", &[]).unwrap();
        prop_assert_eq!(rows.len(), 1);
    }
}
