//! Recursive-descent parser for QLDB's PartiQL dialect: tokens in, [`ast`] out.
//!
//! Entry points: [`parse`] for one statement, [`parse_expression`] for one expression. The
//! parser checks the limits in [`limits`] (statement length before lexing, token count, nesting
//! depth) and reports every problem as a [`ParseError`] naming what was expected, what was
//! found, and where — it never panics on input and always advances or fails, so it cannot loop.
//!
//! Layout: this file holds the token cursor and shared helpers; `statement.rs` the statement
//! forms, `query.rs` `SELECT` and `FROM`, `expr.rs` expressions, `literal.rs` literal values.
//!
//! ```
//! use quill_partiql::parser::parse;
//! let statement = parse("SELECT * FROM Vehicle AS v WHERE v.VIN = ?").unwrap();
//! assert_eq!(statement.parameter_count(), 1);
//! assert_eq!(statement.to_string(), "SELECT * FROM Vehicle AS v WHERE v.VIN = ?");
//! ```

mod call;
mod error;
mod expr;
pub mod limits;
mod literal;
mod query;
mod statement;

pub use error::ParseError;

use crate::ast::{Expr, Ident, Statement};
use crate::lexer::{tokenize, Keyword, Token, TokenKind};

/// Parses exactly one statement (an optional trailing `;` is allowed).
pub fn parse(text: &str) -> Result<Statement, ParseError> {
    let mut parser = Parser::new(text)?;
    let statement = parser.statement();
    parser.finish(statement)
}

/// Parses exactly one expression (handy for tests and tools).
pub fn parse_expression(text: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser::new(text)?;
    let expr = parser.expr();
    parser.finish(expr)
}

/// An error before it is located: a message and the byte offset it applies to.
pub(crate) struct Failure {
    message: String,
    offset: usize,
}

pub(crate) type PResult<T> = Result<T, Failure>;

/// The token cursor plus parse state.
pub(crate) struct Parser<'a> {
    source: &'a str,
    /// Always ends with an `Eof` token, which `advance` never moves past.
    tokens: Vec<Token>,
    index: usize,
    /// Current nesting depth; kept ≤ `PARSE_DEPTH_MAX`.
    depth: u32,
    /// Index the next `?` gets.
    next_parameter: u32,
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Result<Self, ParseError> {
        check_length(source)?;
        let tokens = tokenize(source, limits::TOKEN_COUNT_MAX)
            .map_err(|e| ParseError::at_offset(source, e.offset, e.message))?;
        Ok(Parser {
            source,
            tokens,
            index: 0,
            depth: 0,
            next_parameter: 0,
        })
    }

    /// Requires end of input after an optional `;`, and locates any error.
    fn finish<T>(&mut self, parsed: PResult<T>) -> Result<T, ParseError> {
        let result = parsed.and_then(|value| {
            self.eat(TokenKind::Semicolon);
            self.expect(TokenKind::Eof, "end of statement", "")?;
            Ok(value)
        });
        result.map_err(|f| ParseError::at_offset(self.source, f.offset, f.message))
    }

    fn peek(&self) -> Token {
        self.tokens[self.index]
    }

    fn peek_kind(&self) -> TokenKind {
        self.peek().kind
    }

    /// The kind `ahead` tokens after the current one (`Eof` past the end).
    fn peek_kind_at(&self, ahead: usize) -> TokenKind {
        let last = self.tokens.len() - 1;
        self.tokens[(self.index + ahead).min(last)].kind
    }

    fn advance(&mut self) -> Token {
        let token = self.peek();
        if token.kind != TokenKind::Eof {
            self.index += 1;
        }
        token
    }

    fn eat(&mut self, kind: TokenKind) -> bool {
        let matched = self.peek_kind() == kind;
        if matched {
            self.advance();
        }
        matched
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        self.eat(TokenKind::Keyword(keyword))
    }

    fn at_keyword(&self, keyword: Keyword) -> bool {
        self.peek_kind() == TokenKind::Keyword(keyword)
    }

    /// Consumes a `kind` token or fails with `expected <what> <context>, found '<token>'`.
    fn expect(&mut self, kind: TokenKind, what: &str, context: &str) -> PResult<Token> {
        if self.peek_kind() == kind {
            Ok(self.advance())
        } else {
            Err(self.unexpected(what, context))
        }
    }

    fn expect_keyword(&mut self, keyword: Keyword, context: &str) -> PResult<Token> {
        self.expect(TokenKind::Keyword(keyword), keyword.as_str(), context)
    }

    /// `expected <what> <context>, found <current token>` at the current token.
    fn unexpected(&self, what: &str, context: &str) -> Failure {
        let token = self.peek();
        let separator = if context.is_empty() { "" } else { " " };
        Failure {
            message: format!(
                "expected {what}{separator}{context}, found {}",
                self.describe(token)
            ),
            offset: token.start as usize,
        }
    }

    fn fail_at(&self, token: Token, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            offset: token.start as usize,
        }
    }

    /// A token as quoted in messages: `'text'` (shortened) or `end of input`.
    fn describe(&self, token: Token) -> String {
        if token.kind == TokenKind::Eof {
            return "end of input".to_string();
        }
        let text = token.text(self.source);
        let mut chars = text.chars();
        let excerpt: String = chars
            .by_ref()
            .take(limits::ERROR_EXCERPT_MAX_CHARS)
            .collect();
        let ellipsis = if chars.next().is_some() { "…" } else { "" };
        format!("'{excerpt}{ellipsis}'")
    }

    /// Runs `parse` one nesting level deeper, failing when the depth budget is spent.
    fn nested<T>(&mut self, parse: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= limits::PARSE_DEPTH_MAX {
            let token = self.peek();
            return Err(self.fail_at(
                token,
                format!(
                    "statement nests deeper than {} levels",
                    limits::PARSE_DEPTH_MAX
                ),
            ));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    /// The current token as an identifier, if it is one (unquoted or quoted).
    fn peek_ident(&self) -> Option<Ident> {
        let token = self.peek();
        match token.kind {
            TokenKind::Ident => Some(Ident::new(token.text(self.source))),
            TokenKind::QuotedIdent => Some(Ident::quoted(unquote(token.text(self.source), '"'))),
            _ => None,
        }
    }

    /// Consumes an identifier or fails with `expected <what> <context>, found …`.
    fn ident(&mut self, what: &str, context: &str) -> PResult<Ident> {
        match self.peek_ident() {
            Some(ident) => {
                self.advance();
                Ok(ident)
            }
            None => Err(self.unexpected(what, context)),
        }
    }

    /// `[AS] alias` where `AS` is optional: an identifier right here is an alias.
    fn optional_as_alias(&mut self) -> PResult<Option<Ident>> {
        if self.eat_keyword(Keyword::As) {
            return self.ident("an alias", "after AS").map(Some);
        }
        let alias = self.peek_ident();
        if alias.is_some() {
            self.advance();
        }
        Ok(alias)
    }

    /// `<keyword> alias`, or `None` when the keyword is absent.
    fn keyword_alias(&mut self, keyword: Keyword) -> PResult<Option<Ident>> {
        if !self.eat_keyword(keyword) {
            return Ok(None);
        }
        let context = format!("after {keyword}");
        self.ident("an alias", &context).map(Some)
    }

    /// True when the current token is an unquoted word equal to `word` ignoring case.
    fn at_word(&self, word: &str) -> bool {
        let token = self.peek();
        token.kind == TokenKind::Ident && token.text(self.source).eq_ignore_ascii_case(word)
    }

    /// Parses `item (, item)*`.
    fn comma_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut items = vec![item(self)?];
        while self.eat(TokenKind::Comma) {
            items.push(item(self)?);
        }
        Ok(items)
    }
}

fn check_length(source: &str) -> Result<(), ParseError> {
    let max = limits::STATEMENT_LENGTH_MAX_CHARS;
    // Bytes ≥ chars, so only long texts need the character count.
    if source.len() > max && source.chars().count() > max {
        let offset = source
            .char_indices()
            .nth(max)
            .map_or(source.len(), |(at, _)| at);
        return Err(ParseError::at_offset(
            source,
            offset,
            format!("statement is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Strips the surrounding `quote`s (`'` or `"`) and undoubles embedded ones.
pub(crate) fn unquote(text: &str, quote: char) -> String {
    let inner = &text[1..text.len() - 1];
    let (doubled, single) = if quote == '"' {
        ("\"\"", "\"")
    } else {
        ("''", "'")
    };
    if inner.contains(doubled) {
        inner.replace(doubled, single)
    } else {
        inner.to_string()
    }
}
