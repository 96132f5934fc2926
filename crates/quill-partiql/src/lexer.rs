//! Tokenizer for QLDB's PartiQL dialect.
//!
//! Owns the lexical rules: case-insensitive keywords, case-sensitive identifiers (`"…"` quoted
//! with `""` escapes), `'…'` strings (`''` escapes), backtick Ion literals (raw text; the parser
//! reads them with ion-rs), numbers, `?` parameters, operators, and `--` / `/* */` comments.
//!
//! Tokens are spans (byte offsets) into the source text, so lexing allocates only the token
//! vector; keywords are recognised without allocating. Errors carry the byte offset where the
//! problem starts; the parser turns it into a line and column.

use std::fmt;

/// A lexing failure at a byte offset of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    /// What went wrong, e.g. `unterminated string literal`.
    pub message: String,
    /// Byte offset of the offending character or of the start of the unterminated token.
    pub offset: usize,
}

/// One token: its kind and its byte span `start..end` in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// What the token is.
    pub kind: TokenKind,
    /// Byte offset of the first character.
    pub start: u32,
    /// Byte offset one past the last character.
    pub end: u32,
}

impl Token {
    /// The token's source text (including quotes or backticks).
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        &source[self.start as usize..self.end as usize]
    }
}

/// Token kinds. Literal and identifier tokens keep their text in the source span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A reserved word (matched case-insensitively).
    Keyword(Keyword),
    /// An unquoted identifier; its spelling is significant.
    Ident,
    /// A `"quoted"` identifier (span includes the quotes).
    QuotedIdent,
    /// A `'string'` (span includes the quotes).
    String,
    /// A `` `ion` `` literal (span includes the backticks).
    Ion,
    /// An unsigned number: `7`, `90.25`, `5.`, `1e3`, `1.5E-2`.
    Number,
    /// `?`.
    Param,
    /// `@`, which marks a name as a variable (an alias), never a table: `@r.Owners`.
    At,
    /// `+`.
    Plus,
    /// `-`.
    Minus,
    /// `*`.
    Star,
    /// `/`.
    Slash,
    /// `%`.
    Percent,
    /// `||`.
    Concat,
    /// `=`.
    Eq,
    /// `!=` or `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `.`.
    Dot,
    /// `,`.
    Comma,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `[`.
    LBracket,
    /// `]`.
    RBracket,
    /// `{`.
    LBrace,
    /// `}`.
    RBrace,
    /// `:`.
    Colon,
    /// `;`.
    Semicolon,
    /// `<<`.
    BagOpen,
    /// `>>`.
    BagClose,
    /// End of input (always the last token; its span is empty).
    Eof,
}

macro_rules! keywords {
    ($($variant:ident => $text:literal,)*) => {
        /// Reserved words. Unquoted, they cannot be identifiers (quote them: `"Value"`), except
        /// after a `.` in a path, where any word is a field name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Keyword {
            $(
                #[doc = concat!("`", $text, "`")]
                $variant,
            )*
        }

        impl Keyword {
            /// Every keyword, for tests and fuzzers.
            pub const ALL: &'static [Keyword] = &[$(Keyword::$variant,)*];

            /// The upper-case spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Keyword::$variant => $text,)*
                }
            }

            /// The keyword spelled by `word` in any case, without allocating.
            pub fn from_word(word: &str) -> Option<Keyword> {
                let bytes = word.as_bytes();
                if bytes.len() > KEYWORD_LENGTH_MAX {
                    return None;
                }
                let mut upper = [0u8; KEYWORD_LENGTH_MAX];
                for (slot, byte) in upper.iter_mut().zip(bytes) {
                    *slot = byte.to_ascii_uppercase();
                }
                match &upper[..bytes.len()] {
                    $(x if x == $text.as_bytes() => Some(Keyword::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

/// The longest keyword (`DISTINCT`, `TRAILING`); longer words are never keywords.
const KEYWORD_LENGTH_MAX: usize = 8;

keywords! {
    And => "AND", As => "AS", Asc => "ASC", At => "AT", Between => "BETWEEN", Both => "BOTH",
    By => "BY", Case => "CASE", Cast => "CAST", Create => "CREATE", Cross => "CROSS",
    Delete => "DELETE", Desc => "DESC", Distinct => "DISTINCT", Drop => "DROP", Else => "ELSE",
    End => "END", Escape => "ESCAPE", Exec => "EXEC", Explain => "EXPLAIN", False => "FALSE",
    For => "FOR", From => "FROM", Group => "GROUP", Having => "HAVING", In => "IN",
    Index => "INDEX", Inner => "INNER", Insert => "INSERT", Into => "INTO", Is => "IS",
    Join => "JOIN", Leading => "LEADING", Like => "LIKE", Limit => "LIMIT", Missing => "MISSING",
    Not => "NOT", Null => "NULL", Offset => "OFFSET", On => "ON", Or => "OR", Order => "ORDER",
    Remove => "REMOVE", Select => "SELECT", Set => "SET", Table => "TABLE", Then => "THEN",
    Trailing => "TRAILING", True => "TRUE", Undrop => "UNDROP", Update => "UPDATE",
    Value => "VALUE", When => "WHEN", Where => "WHERE", With => "WITH",
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits `source` into tokens, ending with [`TokenKind::Eof`]. Fails on the first malformed
/// token or when there are more than `token_count_max` tokens.
pub fn tokenize(source: &str, token_count_max: usize) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer {
        source,
        bytes: source.as_bytes(),
        position: 0,
    };
    // Most statements have about one token per five bytes; this avoids regrowth for them.
    let mut tokens = Vec::with_capacity(source.len() / 5 + 2);
    loop {
        let token = lexer.next_token()?;
        if tokens.len() >= token_count_max {
            return Err(LexError {
                message: format!("statement has more than {token_count_max} tokens"),
                offset: token.start as usize,
            });
        }
        tokens.push(token);
        if token.kind == TokenKind::Eof {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    source: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next unread character; always on a char boundary.
    position: usize,
}

impl Lexer<'_> {
    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.position + ahead).copied()
    }

    fn error(&self, message: impl Into<String>, offset: usize) -> LexError {
        LexError {
            message: message.into(),
            offset,
        }
    }

    fn next_token(&mut self) -> Result<Token, LexError> {
        self.skip_trivia()?;
        let start = self.position;
        let Some(byte) = self.peek_at(0) else {
            return Ok(self.token(TokenKind::Eof, start));
        };
        let kind = match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$' => self.word(),
            b'0'..=b'9' => self.number()?,
            b'\'' => self.quoted(b'\'', TokenKind::String, "unterminated string literal")?,
            b'"' => self.quoted(
                b'"',
                TokenKind::QuotedIdent,
                "unterminated quoted identifier",
            )?,
            b'`' => self.ion_literal()?,
            _ => self.operator()?,
        };
        Ok(self.token(kind, start))
    }

    fn token(&self, kind: TokenKind, start: usize) -> Token {
        // The statement length limit keeps offsets far below u32::MAX.
        Token {
            kind,
            start: start as u32,
            end: self.position as u32,
        }
    }

    /// Skips whitespace and comments; every iteration consumes at least one byte.
    fn skip_trivia(&mut self) -> Result<(), LexError> {
        while let Some(byte) = self.peek_at(0) {
            match (byte, self.peek_at(1)) {
                (b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c, _) => self.position += 1,
                (b'-', Some(b'-')) => {
                    let rest = &self.bytes[self.position..];
                    self.position += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                }
                (b'/', Some(b'*')) => {
                    let start = self.position;
                    let body = &self.source[start + 2..];
                    match body.find("*/") {
                        Some(end) => self.position = start + 2 + end + 2,
                        None => return Err(self.error("unterminated block comment", start)),
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn word(&mut self) -> TokenKind {
        let start = self.position;
        let rest = &self.bytes[start..];
        let length = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$'))
            .unwrap_or(rest.len());
        self.position += length;
        match Keyword::from_word(&self.source[start..self.position]) {
            Some(keyword) => TokenKind::Keyword(keyword),
            None => TokenKind::Ident,
        }
    }

    fn skip_digits(&mut self) -> usize {
        let rest = &self.bytes[self.position..];
        let count = rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len());
        self.position += count;
        count
    }

    /// `d+ (. d*)? ([eE] [+-]? d+)?`, not directly followed by a letter.
    fn number(&mut self) -> Result<TokenKind, LexError> {
        let start = self.position;
        self.skip_digits();
        if self.peek_at(0) == Some(b'.') {
            self.position += 1;
            self.skip_digits();
        }
        if matches!(self.peek_at(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some(b'+' | b'-')));
            if self.peek_at(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                self.position += 1 + sign;
                self.skip_digits();
            }
        }
        if self
            .peek_at(0)
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.position += 1;
            let text = self.source[start..]
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next();
            return Err(self.error(
                format!("invalid number literal '{}'", text.unwrap_or_default()),
                start,
            ));
        }
        Ok(TokenKind::Number)
    }

    /// A token between `quote`s where a doubled quote stands for one.
    fn quoted(
        &mut self,
        quote: u8,
        kind: TokenKind,
        unterminated: &str,
    ) -> Result<TokenKind, LexError> {
        let start = self.position;
        self.position += 1;
        loop {
            let rest = &self.bytes[self.position..];
            let Some(at) = rest.iter().position(|&b| b == quote) else {
                return Err(self.error(unterminated, start));
            };
            self.position += at + 1;
            if self.peek_at(0) != Some(quote) {
                return Ok(kind);
            }
            self.position += 1;
        }
    }

    /// `` `…` `` up to the first backtick outside an Ion string or quoted symbol, so Ion text
    /// like `` `"a`b"` `` works. Ion comments are not recognised: base64 blobs may contain
    /// `//`. The parser validates the Ion itself.
    fn ion_literal(&mut self) -> Result<TokenKind, LexError> {
        let start = self.position;
        self.position += 1;
        while let Some(byte) = self.peek_at(0) {
            match byte {
                b'`' => {
                    self.position += 1;
                    return Ok(TokenKind::Ion);
                }
                b'"' | b'\'' => self.skip_ion_quoted(byte),
                _ => self.position += 1,
            }
        }
        Err(self.error("unterminated Ion literal", start))
    }

    /// Skips an Ion `"…"` or `'…'` including backslash escapes; stops at end of input.
    fn skip_ion_quoted(&mut self, quote: u8) {
        self.position += 1;
        while let Some(byte) = self.peek_at(0) {
            if byte == b'\\' {
                // Skip the escaped character too (escapes are ASCII after the backslash,
                // and a multi-byte character's continuation bytes are never quotes).
                self.position += 2.min(self.bytes.len() - self.position);
                continue;
            }
            self.position += 1;
            if byte == quote {
                return;
            }
        }
    }

    fn operator(&mut self) -> Result<TokenKind, LexError> {
        let start = self.position;
        let two = (self.peek_at(0).unwrap_or(0), self.peek_at(1).unwrap_or(0));
        let (kind, length) = match two {
            (b'|', b'|') => (TokenKind::Concat, 2),
            (b'!', b'=') => (TokenKind::Ne, 2),
            (b'<', b'>') => (TokenKind::Ne, 2),
            (b'<', b'=') => (TokenKind::Le, 2),
            (b'>', b'=') => (TokenKind::Ge, 2),
            (b'<', b'<') => (TokenKind::BagOpen, 2),
            (b'>', b'>') => (TokenKind::BagClose, 2),
            (b'+', _) => (TokenKind::Plus, 1),
            (b'-', _) => (TokenKind::Minus, 1),
            (b'*', _) => (TokenKind::Star, 1),
            (b'/', _) => (TokenKind::Slash, 1),
            (b'%', _) => (TokenKind::Percent, 1),
            (b'=', _) => (TokenKind::Eq, 1),
            (b'<', _) => (TokenKind::Lt, 1),
            (b'>', _) => (TokenKind::Gt, 1),
            (b'.', _) => (TokenKind::Dot, 1),
            (b',', _) => (TokenKind::Comma, 1),
            (b'(', _) => (TokenKind::LParen, 1),
            (b')', _) => (TokenKind::RParen, 1),
            (b'[', _) => (TokenKind::LBracket, 1),
            (b']', _) => (TokenKind::RBracket, 1),
            (b'{', _) => (TokenKind::LBrace, 1),
            (b'}', _) => (TokenKind::RBrace, 1),
            (b':', _) => (TokenKind::Colon, 1),
            (b';', _) => (TokenKind::Semicolon, 1),
            (b'?', _) => (TokenKind::Param, 1),
            (b'@', _) => (TokenKind::At, 1),
            _ => {
                let character = self.source[start..].chars().next().unwrap_or('\u{fffd}');
                return Err(self.error(format!("unexpected character '{character}'"), start));
            }
        };
        self.position += length;
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        tokenize(source, 1000)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn keywords_are_case_insensitive_and_identifiers_keep_spelling() {
        let source = "select Vehicle FROM";
        let tokens = tokenize(source, 100).unwrap();
        assert_eq!(tokens[0].kind, TokenKind::Keyword(Keyword::Select));
        assert_eq!(tokens[1].kind, TokenKind::Ident);
        assert_eq!(tokens[1].text(source), "Vehicle");
        assert_eq!(tokens[2].kind, TokenKind::Keyword(Keyword::From));
        assert_eq!(Keyword::from_word("distinctly"), None);
    }

    #[test]
    fn operators_use_longest_match() {
        use TokenKind::*;
        assert_eq!(
            kinds("<<>> <> != <= >= || < > ?"),
            vec![BagOpen, BagClose, Ne, Ne, Le, Ge, Concat, Lt, Gt, Param, Eof]
        );
    }

    #[test]
    fn comments_are_skipped() {
        use TokenKind::*;
        assert_eq!(kinds("a -- note\n/* block\n */ b"), vec![Ident, Ident, Eof]);
    }

    #[test]
    fn strings_and_identifiers_allow_doubled_quotes() {
        let source = r#"'it''s' "a""b""#;
        let tokens = tokenize(source, 100).unwrap();
        assert_eq!(tokens[0].text(source), "'it''s'");
        assert_eq!(tokens[1].text(source), r#""a""b""#);
    }

    #[test]
    fn ion_literal_may_contain_backticks_in_strings() {
        let source = r#"`{a: "x`y"}` b"#;
        let tokens = tokenize(source, 100).unwrap();
        assert_eq!(tokens[0].kind, TokenKind::Ion);
        assert_eq!(tokens[0].text(source), r#"`{a: "x`y"}`"#);
        assert_eq!(tokens[1].kind, TokenKind::Ident);
    }

    #[test]
    fn numbers_keep_their_text() {
        let source = "90.25 1e3 5. 1.5E-2";
        let tokens = tokenize(source, 100).unwrap();
        let texts: Vec<_> = tokens[..4].iter().map(|t| t.text(source)).collect();
        assert_eq!(texts, vec!["90.25", "1e3", "5.", "1.5E-2"]);
    }

    #[test]
    fn malformed_tokens_report_offsets() {
        let error = tokenize("a = 'oops", 100).unwrap_err();
        assert_eq!(
            error,
            LexError {
                message: "unterminated string literal".into(),
                offset: 4
            }
        );
        let error = tokenize("x # y", 100).unwrap_err();
        assert_eq!(error.message, "unexpected character '#'");
        assert_eq!(error.offset, 2);
        assert_eq!(
            tokenize("12ab", 100).unwrap_err().message,
            "invalid number literal '12ab'"
        );
        assert_eq!(
            tokenize("/* x", 100).unwrap_err().message,
            "unterminated block comment"
        );
        assert_eq!(
            tokenize("`{a:1}", 100).unwrap_err().message,
            "unterminated Ion literal"
        );
    }

    #[test]
    fn token_limit_is_enforced() {
        let error = tokenize("a b c d", 3).unwrap_err();
        assert_eq!(error.message, "statement has more than 3 tokens");
    }
}
