//! Limits the evaluator enforces, each with its reason. Going over one returns
//! `PartiqlError::Limit` naming it.

/// QLDB's limit on statement text (characters).
pub const STATEMENT_LENGTH_MAX_CHARS: usize = 100_000;
/// Rows a FROM clause may produce before filtering finishes (cross products grow
/// multiplicatively; this keeps memory bounded on a single statement).
pub const INTERMEDIATE_ROWS_MAX: usize = 2_000_000;
/// Rows one statement may return. QLDB pages results; we hold them in memory.
pub const RESULT_ROWS_MAX: usize = 1_000_000;
/// Default result budget of one statement, in estimated Ion binary bytes
/// ([`crate::ExecuteLimits`]): QLDB bounds a transaction's results; we hold them in memory.
pub const RESULT_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Nesting of subqueries evaluated inside each other (each level re-plans and may scan).
pub const SUBQUERY_DEPTH_MAX: usize = 16;
/// Path steps a DML target may have: bounds the recursive document rebuild.
pub const DML_PATH_STEPS_MAX: usize = 64;
/// Parameters per statement; QLDB bounds them by size (128 KB binary), this bounds the count.
pub const PARAMETERS_MAX: usize = 10_000;

const _: () = assert!(RESULT_ROWS_MAX <= INTERMEDIATE_ROWS_MAX);
const _: () = assert!(SUBQUERY_DEPTH_MAX > 0 && DML_PATH_STEPS_MAX > 0);
