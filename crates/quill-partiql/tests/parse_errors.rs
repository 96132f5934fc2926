//! Malformed statements: each error names the problem and its 1-based line and column, and the
//! limits (length, depth, tokens) fail cleanly instead of exhausting memory or the stack.

use quill_partiql::parser::limits::{
    ION_LITERAL_DEPTH_MAX, PARSE_DEPTH_MAX, STATEMENT_LENGTH_MAX_CHARS,
};
use quill_partiql::parser::{parse, parse_expression};

fn error(text: &str) -> String {
    match parse(text) {
        Ok(statement) => panic!("expected an error for {text:?}, parsed {statement}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn misspelled_keyword() {
    assert_eq!(
        error("DELETE FORM Vehicle WHERE VIN = ?"),
        "expected FROM after DELETE, found 'FORM' at line 1, column 8"
    );
}

#[test]
fn unterminated_string() {
    assert_eq!(
        error("SELECT * FROM Vehicle AS v\nWHERE v.VIN = '1N4AL11D75C109151"),
        "unterminated string literal at line 2, column 15"
    );
}

#[test]
fn invalid_ion_literal() {
    let message = error("SELECT * FROM history(Vehicle, `2019-13-45T`) AS h");
    assert!(message.starts_with("invalid Ion literal: "), "{message}");
    assert!(message.ends_with(" at line 1, column 32"), "{message}");
    let message = error("INSERT INTO t VALUE `1 2`");
    assert!(message.starts_with("invalid Ion literal: "), "{message}");
}

#[test]
fn missing_from_after_select_list() {
    assert_eq!(
        error("SELECT v.VIN WHERE v.VIN = ?"),
        "expected FROM after the SELECT list, found 'WHERE' at line 1, column 14"
    );
}

#[test]
fn unknown_statement() {
    assert_eq!(
        error("SHOW TABLES"),
        "expected a statement (SELECT, FROM, INSERT, UPDATE, DELETE, CREATE, DROP, UNDROP, EXEC \
         or EXPLAIN), found 'SHOW' at line 1, column 1"
    );
    assert_eq!(
        error(""),
        "expected a statement (SELECT, FROM, INSERT, UPDATE, DELETE, CREATE, DROP, UNDROP, EXEC \
         or EXPLAIN), found end of input at line 1, column 1"
    );
}

#[test]
fn drop_index_requires_purge_true() {
    assert_eq!(
        error("DROP INDEX \"abc\" ON Vehicle"),
        "expected WITH in DROP INDEX (it requires WITH (purge = true)), found end of input at \
         line 1, column 28"
    );
    assert_eq!(
        error("DROP INDEX \"abc\" ON Vehicle WITH (PURGE = true)"),
        "expected purge (lower-case) in DROP INDEX (it requires WITH (purge = true)), found \
         'PURGE' at line 1, column 35"
    );
    assert_eq!(
        error("DROP INDEX \"abc\" ON Vehicle WITH (purge = false)"),
        "expected true (the only supported purge value) after purge =, found 'false' at line 1, \
         column 43"
    );
}

#[test]
fn update_without_operation() {
    assert_eq!(
        error("UPDATE Person AS p WHERE p.GovId = ?"),
        "expected SET, REMOVE or INSERT after UPDATE target, found 'WHERE' at line 1, column 20"
    );
}

#[test]
fn unclosed_parenthesis_and_collections() {
    assert_eq!(
        error("SELECT * FROM t WHERE (a = 1"),
        "expected ')' to close '(', found end of input at line 1, column 29"
    );
    assert_eq!(
        error("INSERT INTO t {'a': 1"),
        "expected '}' to close the struct, found end of input at line 1, column 22"
    );
    assert_eq!(
        error("INSERT INTO t <<{'a': 1}, {'b': 2}"),
        "expected '>>' to close the bag, found end of input at line 1, column 35"
    );
}

#[test]
fn missing_struct_colon() {
    assert_eq!(
        error("INSERT INTO t VALUE {'a' 1}"),
        "expected ':' after struct field name, found '1' at line 1, column 26"
    );
}

#[test]
fn reserved_word_as_table_name() {
    assert_eq!(
        error("CREATE TABLE Select"),
        "expected a table name after CREATE TABLE, found 'Select' at line 1, column 14"
    );
}

#[test]
fn bad_characters_and_numbers() {
    assert_eq!(
        error("SELECT * FROM t WHERE a = #1"),
        "unexpected character '#' at line 1, column 27"
    );
    assert_eq!(
        error("SELECT * FROM t WHERE a = 12abc"),
        "invalid number literal '12abc' at line 1, column 27"
    );
    assert_eq!(
        error("SELECT * FROM t /* never closed"),
        "unterminated block comment at line 1, column 17"
    );
}

#[test]
fn trailing_garbage() {
    assert_eq!(
        error("DROP TABLE Vehicle Person"),
        "expected end of statement, found 'Person' at line 1, column 20"
    );
    assert_eq!(
        error("SELECT * FROM a; SELECT * FROM b"),
        "expected end of statement, found 'SELECT' at line 1, column 18"
    );
}

#[test]
fn incomplete_predicates() {
    assert_eq!(
        error("SELECT * FROM t WHERE a BETWEEN 1"),
        "expected AND in BETWEEN, found end of input at line 1, column 34"
    );
    assert_eq!(
        error("SELECT * FROM t WHERE a IS 5"),
        "expected NULL or MISSING after IS, found '5' at line 1, column 28"
    );
    assert_eq!(
        error("SELECT * FROM t WHERE a.1"),
        "expected a field name after '.', found '1' at line 1, column 25"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        error("SELECT * FROM t WHERE a = 'ünïcödé' AND"),
        "expected an expression, found end of input at line 1, column 40"
    );
}

#[test]
fn statement_length_is_limited() {
    let filler = "x".repeat(STATEMENT_LENGTH_MAX_CHARS);
    let message = error(&format!("SELECT * FROM {filler}"));
    assert_eq!(
        message,
        "statement is longer than 100000 characters at line 1, column 100001"
    );
}

#[test]
fn nesting_depth_is_limited() {
    let depth = PARSE_DEPTH_MAX as usize + 10;
    let text = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
    let message = parse_expression(&text).unwrap_err().to_string();
    assert!(message.starts_with("statement nests deeper than 128 levels at line 1, column "));
    let unary = format!("SELECT * FROM t WHERE {}x", "NOT ".repeat(depth));
    assert!(error(&unary).starts_with("statement nests deeper than"));
    let lists = format!(
        "INSERT INTO t VALUE {}{}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(error(&lists).starts_with("statement nests deeper than"));
    let subqueries = format!(
        "SELECT * FROM t WHERE a IN {}SELECT * FROM t{}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    assert!(error(&subqueries).starts_with("statement nests deeper than"));
}

#[test]
fn nesting_within_the_budget_parses() {
    // Each parenthesis costs two levels (expression and primary), so half the budget fits.
    let depth = PARSE_DEPTH_MAX as usize / 2 - 2;
    let text = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
    assert!(parse_expression(&text).is_ok());
    // The deepest Ion literal at the deepest expression level must also fit on the stack,
    // and so must printing and dropping the tree.
    let ion = format!(
        "`{}{}`",
        "[".repeat(ION_LITERAL_DEPTH_MAX),
        "]".repeat(ION_LITERAL_DEPTH_MAX)
    );
    let text = format!("{}{ion}{}", "[".repeat(depth), "]".repeat(depth));
    let expr = parse_expression(&text).unwrap();
    assert!(expr.to_string().len() > 2 * depth);
    // A prefix operator costs one level, so these chains are the deepest trees the parser
    // builds; printing and walking them recurses as deep.
    for operator in ["NOT ", "- ", "+"] {
        let chain = operator.repeat(PARSE_DEPTH_MAX as usize - 4);
        let statement = parse(&format!("SELECT * FROM t WHERE {chain}?")).unwrap();
        assert_eq!(statement.parameter_count(), 1);
        assert_eq!(parse(&statement.to_string()).unwrap(), statement);
    }
}

#[test]
fn ion_literal_depth_is_limited() {
    let depth = ION_LITERAL_DEPTH_MAX + 1;
    let text = format!(
        "INSERT INTO t VALUE `{}{}`",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert_eq!(
        error(&text),
        "Ion literal nests deeper than 100 levels at line 1, column 21"
    );
    let text = format!("INSERT INTO t VALUE `{}`", "[".repeat(40_000));
    assert!(error(&text).starts_with("Ion literal nests deeper than 100 levels"));
}

/// DML changes a location in the document; an expression that is not a path is refused with
/// its position (the fuzzer found `REMOVE (a = b)` parsed, then printed as `REMOVE a = b`,
/// which does not parse).
#[test]
fn dml_targets_must_be_paths() {
    assert_eq!(
        error("UPDATE Person AS p REMOVE (aws_tags = `{environment: production}`)"),
        "REMOVE needs a path into the document, such as p.Address at line 1, column 27"
    );
    assert_eq!(
        error("UPDATE Person AS p SET (p.a || 'x') = 1"),
        "SET needs a path into the document, such as p.Address at line 1, column 24"
    );
    assert_eq!(
        error("FROM Person AS p INSERT INTO 'x' VALUE 1"),
        "INSERT INTO needs a path into the document, such as p.Address at line 1, column 30"
    );
    for valid in [
        "UPDATE Person AS p REMOVE (p.Address)",
        "UPDATE Person AS p SET p.Tags[0].name = 1",
        "FROM Person AS p INSERT INTO p VALUE 1 AT 'k'",
        "UPDATE Person REMOVE Address",
    ] {
        assert!(parse(valid).is_ok(), "{valid}");
    }
}
