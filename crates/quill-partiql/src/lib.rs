//! QLDB's PartiQL dialect over the Quill ledger: lexer, parser, AST, planner and evaluator.
//!
//! Data flows one way: text → [`lexer`] → [`parser`] → [`ast`] → planner → evaluator →
//! `quill_ledger::Transaction`.

pub mod ast;
pub mod lexer;
pub mod parser;
