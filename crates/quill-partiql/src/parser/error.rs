//! The parser's error type: a message plus the 1-based line and column where it applies.

use thiserror::Error;

/// A malformed statement. Displays as `"<message> at line L, column C"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} at line {line}, column {column}")]
pub struct ParseError {
    /// What is wrong, e.g. `expected FROM after DELETE, found 'FORM'`.
    pub message: String,
    /// 1-based line of the problem.
    pub line: u32,
    /// 1-based column of the problem, counted in characters.
    pub column: u32,
}

impl ParseError {
    /// An error at byte `offset` of `source` (clamped to the text and to a char boundary).
    pub(crate) fn at_offset(source: &str, offset: usize, message: impl Into<String>) -> Self {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            message: message.into(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let error = ParseError::at_offset("ab\nçd x", 7, "oops");
        assert_eq!((error.line, error.column), (2, 4));
        assert_eq!(error.to_string(), "oops at line 2, column 4");
        let error = ParseError::at_offset("", 5, "empty");
        assert_eq!((error.line, error.column), (1, 1));
    }
}
