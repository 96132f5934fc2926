//! Parser limits, each with its reason. Going over one is a [`super::ParseError`] naming it.

/// Longest accepted statement, in characters: QLDB's documented statement-text quota, checked
/// before lexing so oversized input costs one pass over its bytes at most.
pub const STATEMENT_LENGTH_MAX_CHARS: usize = 100_000;

/// Most tokens in one statement: bounds the token vector (16 bytes per token). A statement of
/// maximal length made of one-character tokens and separators stays under it; denser input
/// (`a,a,a…`) is rejected rather than buffered.
pub const TOKEN_COUNT_MAX: usize = 60_000;

/// Deepest nesting of expressions, subqueries and `EXPLAIN`s. The parser recurses once per
/// level, so this budget turns hostile input like `((((…` into an error instead of a stack
/// overflow; it stays within the 2 MiB default thread stack in debug builds, and real QLDB
/// statements nest a few levels at most.
pub const PARSE_DEPTH_MAX: u32 = 128;

/// Deepest nesting of lists, structs and s-expressions inside one backtick Ion literal. ion-rs
/// reads, prints, compares and drops values recursively and overflows a 2 MiB debug-build
/// stack at about 200 levels, so deeper literals are refused before they reach it.
pub const ION_LITERAL_DEPTH_MAX: usize = 100;

/// Longest excerpt of a token quoted in an error message, in characters; keeps messages about
/// huge literals short.
pub const ERROR_EXCERPT_MAX_CHARS: usize = 40;

const _: () = assert!(TOKEN_COUNT_MAX >= STATEMENT_LENGTH_MAX_CHARS / 2);
const _: () = assert!(ION_LITERAL_DEPTH_MAX >= 16 && ION_LITERAL_DEPTH_MAX <= 150);
const _: () = assert!(PARSE_DEPTH_MAX >= 16 && PARSE_DEPTH_MAX <= 1_000);
// Token spans are u32 byte offsets; a char is at most 4 bytes.
const _: () = assert!(STATEMENT_LENGTH_MAX_CHARS * 4 < u32::MAX as usize);
