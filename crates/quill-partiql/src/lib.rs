//! QLDB's PartiQL dialect over the Quill ledger: lexer, parser, AST, planner and evaluator.
//!
//! Data flows one way: text → [`lexer`] → [`parser`] → [`ast`] → [`plan`] → evaluator →
//! `quill_ledger::Transaction`. The entry points are [`execute`] (run one statement inside a
//! transaction, returning one Ion value per result row) and [`explain`] (describe how it would
//! run: which sources are scanned and which are served by an index or id lookup).
//!
//! Semantics follow QLDB: case-sensitive names, PartiQL NULL/MISSING rules ([`value`]), the
//! user, committed (`_ql_committed_t`) and history (`history(t, start, end)`) views,
//! `information_schema.user_tables`, and QLDB's built-in functions ([`functions`]). A failed
//! statement is rolled back to a savepoint, leaving the transaction open and unchanged.
//!
//! **Quill extensions** (not in QLDB's grammar): `ORDER BY` (PartiQL's total order across
//! types), `GROUP BY` with aggregates and `HAVING`, `LIMIT`/`OFFSET`, `CROSS JOIN`, `CASE`,
//! and `EXPLAIN <statement>`, which returns one row `{plan: "…"}` naming each source's access
//! path (`FullScan t AS a`, `IndexLookup t.VIN …`, `IdLookup t …`, `Unnest …`).
//!
//! ```no_run
//! # fn demo(tx: &mut quill_ledger::Transaction) -> Result<(), quill_partiql::PartiqlError> {
//! use ion_rs::Element;
//! let rows = quill_partiql::execute(tx, "SELECT * FROM Vehicle AS v WHERE v.VIN = ?",
//!     &[Element::string("1N4AL11D75C109151")])?;
//! println!("{} rows", rows.len());
//! # Ok(()) }
//! ```

pub mod access;
pub mod ast;
pub mod error;
mod eval;
pub mod functions;
pub mod lexer;
mod parse_cache;
pub mod parser;
pub mod plan;
pub mod value;

use ion_rs::Element;
use quill_ledger::Transaction;
use quill_verify::Hash;

pub use error::{ParseError, PartiqlError, Result};
pub use eval::limits;

/// Bounds on what one statement may materialise, beyond the fixed [`limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteLimits {
    /// Budget for what a statement holds in memory at once, in bytes of the estimated Ion
    /// binary encoding ([`value::ion_binary_size_estimate`]) of the values held. Going over
    /// fails the statement with [`PartiqlError::ResultTooLarge`] as soon as the value that
    /// crosses it would be kept; the transaction stays as it was.
    ///
    /// What counts, while it is held: the rows each FROM stage collects (scans, lookups,
    /// nested-loop joins, unnested values: a stage's input and output both, each row a
    /// copy of every value it binds), documents and revisions fetched before they are
    /// filtered, GROUP BY keys with the rows awaiting aggregation, and projected rows with
    /// their ORDER BY keys (subqueries' included). A source row is released once projected.
    /// The top-level query's projected rows are the result: with `ORDER BY` or `GROUP BY`
    /// every row is projected before `OFFSET`/`LIMIT` cut the page, without them only the
    /// page's rows are projected. Row counts are bounded too
    /// ([`limits::INTERMEDIATE_ROWS_MAX`], [`limits::RESULT_ROWS_MAX`]).
    pub result_bytes_max: usize,
}

impl Default for ExecuteLimits {
    fn default() -> Self {
        ExecuteLimits {
            result_bytes_max: limits::RESULT_BYTES_MAX_DEFAULT,
        }
    }
}

/// Runs one statement in `tx` with positional `parameters` and returns its result rows, under
/// the default [`ExecuteLimits`].
pub fn execute(
    tx: &mut Transaction,
    statement: &str,
    parameters: &[Element],
) -> Result<Vec<Element>> {
    execute_with_limits(tx, statement, parameters, ExecuteLimits::default())
}

/// Runs one statement in `tx` with positional `parameters` and returns its result rows.
///
/// The statement is recorded in the transaction (QLDB lists every statement, SELECTs
/// included, in the block's `transactionInfo`). On any error the transaction is rolled back
/// to where it was before the call, so it stays open and unchanged.
pub fn execute_with_limits(
    tx: &mut Transaction,
    statement: &str,
    parameters: &[Element],
    limits: ExecuteLimits,
) -> Result<Vec<Element>> {
    // Only a statement that parses is recorded, so its digest is computed only then.
    let parsed = parse_checked(statement, parameters)?;
    execute_parsed(
        tx,
        &HashedStatement::new(statement, parameters),
        &parsed.statement,
        limits,
    )
}

/// A statement with the Ion hash of each of its parameters and its digest
/// (`quill_verify::statement_digest`), each parameter hashed once: a server folds the digest
/// into the transaction's CommitDigest, the ledger records it, and a parameter inserted as a
/// document (`INSERT INTO t ?`, `INSERT INTO t VALUE ?`) reuses its hash as the revision's data
/// hash. Hashing is most of the cost of a small statement.
#[derive(Debug, Clone)]
pub struct HashedStatement<'a> {
    text: &'a str,
    parameters: &'a [Element],
    parameter_hashes: Vec<Hash>,
    digest: Hash,
}

impl<'a> HashedStatement<'a> {
    /// Hashes `parameters` and computes the statement's digest.
    pub fn new(text: &'a str, parameters: &'a [Element]) -> HashedStatement<'a> {
        let parameter_hashes: Vec<Hash> = parameters.iter().map(quill_verify::ion_hash).collect();
        let digest = quill_verify::statement_digest_of_hashes(text, &parameter_hashes);
        HashedStatement {
            text,
            parameters,
            parameter_hashes,
            digest,
        }
    }

    /// `quill_verify::statement_digest(text, parameters)`.
    pub fn digest(&self) -> Hash {
        self.digest
    }
}

/// [`execute_with_limits`] of a statement whose parameters are already hashed.
pub fn execute_hashed(
    tx: &mut Transaction,
    statement: &HashedStatement<'_>,
    limits: ExecuteLimits,
) -> Result<Vec<Element>> {
    let parsed = parse_checked(statement.text, statement.parameters)?;
    execute_parsed(tx, statement, &parsed.statement, limits)
}

fn execute_parsed(
    tx: &mut Transaction,
    statement: &HashedStatement<'_>,
    parsed: &ast::Statement,
    limits: ExecuteLimits,
) -> Result<Vec<Element>> {
    let savepoint = tx.savepoint();
    let result = tx
        .record_statement_digest(statement.text, statement.digest)
        .map_err(PartiqlError::from)
        .and_then(|()| {
            eval::execute_statement(
                tx,
                parsed,
                statement.parameters,
                &statement.parameter_hashes,
                limits,
            )
        });
    if result.is_err() {
        tx.rollback_to(savepoint);
    }
    result
}

/// Describes how `statement` would run (`EXPLAIN` without executing or recording it).
pub fn explain(tx: &mut Transaction, statement: &str) -> Result<String> {
    check_length(statement)?;
    let parsed = parser::parse(statement)?;
    eval::explain_with(tx, &parsed)
}

fn check_length(statement: &str) -> Result<()> {
    let length = statement.chars().count();
    if length > limits::STATEMENT_LENGTH_MAX_CHARS {
        return Err(PartiqlError::Limit {
            limit: "STATEMENT_LENGTH_MAX_CHARS",
            max: limits::STATEMENT_LENGTH_MAX_CHARS,
            actual: length,
        });
    }
    Ok(())
}

/// Parses (or finds in the [`parse_cache`]) and checks the length and the parameter
/// count.
fn parse_checked(
    statement: &str,
    parameters: &[Element],
) -> Result<std::sync::Arc<parse_cache::Parsed>> {
    check_length(statement)?;
    if parameters.len() > limits::PARAMETERS_MAX {
        return Err(PartiqlError::Limit {
            limit: "PARAMETERS_MAX",
            max: limits::PARAMETERS_MAX,
            actual: parameters.len(),
        });
    }
    let parsed = parse_cache::parse(statement)?;
    let expected = parsed.parameter_count;
    if expected != parameters.len() {
        return Err(PartiqlError::ParameterCount {
            expected,
            actual: parameters.len(),
        });
    }
    Ok(parsed)
}
