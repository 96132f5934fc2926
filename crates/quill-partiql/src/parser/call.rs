//! Function calls, including the functions with special argument syntax: `COUNT(*)`,
//! `EXTRACT(part FROM e)`, `DATE_ADD`/`DATE_DIFF` with a bare date part, `TRIM(… FROM …)` and
//! `SUBSTRING(… FROM … FOR …)`. Function names are matched case-insensitively.

use super::{PResult, Parser};
use crate::ast::*;
use crate::lexer::{Keyword, TokenKind};

impl Parser<'_> {
    /// `name(…)`; the current token is the name and the next one `(`.
    pub(crate) fn call(&mut self) -> PResult<Expr> {
        let name_token = self.advance();
        let name = name_token.text(self.source);
        self.advance();
        let is = |candidate: &str| name.eq_ignore_ascii_case(candidate);
        let expr = if is("COUNT") && self.peek_kind() == TokenKind::Star {
            self.advance();
            Expr::CountStar
        } else if is("EXTRACT") {
            self.extract()?
        } else if is("DATE_ADD") || is("DATE_DIFF") {
            self.date_arithmetic(is("DATE_ADD"))?
        } else if is("TRIM") {
            self.trim()?
        } else if is("SUBSTRING") {
            self.substring()?
        } else {
            self.generic_call(name.to_string())?
        };
        let context = format!("to close the {} call", name.to_ascii_uppercase());
        self.expect(TokenKind::RParen, "')'", &context)?;
        Ok(expr)
    }

    fn generic_call(&mut self, name: String) -> PResult<Expr> {
        let distinct = self.eat_keyword(Keyword::Distinct);
        let args = if self.peek_kind() == TokenKind::RParen {
            Vec::new()
        } else {
            self.comma_list(|parser| parser.call_argument())?
        };
        Ok(Expr::Call(Call {
            name,
            distinct,
            args,
        }))
    }

    /// An argument; a bare `SELECT` is a subquery (`EXISTS(SELECT …)`).
    fn call_argument(&mut self) -> PResult<Expr> {
        if self.at_keyword(Keyword::Select) {
            return Ok(Expr::Subquery(Box::new(self.query()?)));
        }
        self.expr()
    }

    /// A bare date part; EXTRACT also takes the offset's parts (DATE_ADD and DATE_DIFF don't).
    fn date_part(&mut self, function: &str, with_timezone: bool) -> PResult<DatePart> {
        const PARTS: [(&str, DatePart); 8] = [
            ("year", DatePart::Year),
            ("month", DatePart::Month),
            ("day", DatePart::Day),
            ("hour", DatePart::Hour),
            ("minute", DatePart::Minute),
            ("second", DatePart::Second),
            ("timezone_hour", DatePart::TimezoneHour),
            ("timezone_minute", DatePart::TimezoneMinute),
        ];
        let parts = if with_timezone {
            &PARTS[..]
        } else {
            &PARTS[..6]
        };
        match parts.iter().find(|(name, _)| self.at_word(name)) {
            Some(&(_, part)) => {
                self.advance();
                Ok(part)
            }
            None if with_timezone => Err(self.unexpected(
                "a date part (year, month, day, hour, minute, second, timezone_hour or \
                 timezone_minute)",
                &format!("in {function}"),
            )),
            None => Err(self.unexpected(
                "a date part (year, month, day, hour, minute or second)",
                &format!("in {function}"),
            )),
        }
    }

    fn extract(&mut self) -> PResult<Expr> {
        let part = self.date_part("EXTRACT", true)?;
        self.expect_keyword(Keyword::From, "in EXTRACT")?;
        let from = Box::new(self.expr()?);
        Ok(Expr::Extract { part, from })
    }

    fn date_arithmetic(&mut self, is_add: bool) -> PResult<Expr> {
        let function = if is_add { "DATE_ADD" } else { "DATE_DIFF" };
        let part = self.date_part(function, false)?;
        let context = format!("in {function}");
        self.expect(TokenKind::Comma, "','", &context)?;
        let first = Box::new(self.expr()?);
        self.expect(TokenKind::Comma, "','", &context)?;
        let second = Box::new(self.expr()?);
        Ok(if is_add {
            Expr::DateAdd {
                part,
                quantity: first,
                timestamp: second,
            }
        } else {
            Expr::DateDiff {
                part,
                from: first,
                to: second,
            }
        })
    }

    /// `TRIM([LEADING|TRAILING|BOTH] [chars] FROM s)` or `TRIM(s)`.
    fn trim(&mut self) -> PResult<Expr> {
        let spec = match self.peek_kind() {
            TokenKind::Keyword(Keyword::Leading) => Some(TrimSpec::Leading),
            TokenKind::Keyword(Keyword::Trailing) => Some(TrimSpec::Trailing),
            TokenKind::Keyword(Keyword::Both) => Some(TrimSpec::Both),
            _ => None,
        };
        if spec.is_some() {
            self.advance();
            let chars = if self.at_keyword(Keyword::From) {
                None
            } else {
                Some(Box::new(self.expr()?))
            };
            self.expect_keyword(Keyword::From, "in TRIM")?;
            let from = Box::new(self.expr()?);
            return Ok(Expr::Trim { spec, chars, from });
        }
        let first = Box::new(self.expr()?);
        if self.eat_keyword(Keyword::From) {
            let from = Box::new(self.expr()?);
            return Ok(Expr::Trim {
                spec,
                chars: Some(first),
                from,
            });
        }
        Ok(Expr::Trim {
            spec,
            chars: None,
            from: first,
        })
    }

    /// `SUBSTRING(s, start [, length])` or `SUBSTRING(s FROM start [FOR length])`.
    fn substring(&mut self) -> PResult<Expr> {
        let expr = Box::new(self.expr()?);
        let (start, length) = if self.eat_keyword(Keyword::From) {
            let start = Box::new(self.expr()?);
            let length = if self.eat_keyword(Keyword::For) {
                Some(Box::new(self.expr()?))
            } else {
                None
            };
            (start, length)
        } else {
            self.expect(TokenKind::Comma, "',' or FROM", "in SUBSTRING")?;
            let start = Box::new(self.expr()?);
            let length = if self.eat(TokenKind::Comma) {
                Some(Box::new(self.expr()?))
            } else {
                None
            };
            (start, length)
        };
        Ok(Expr::Substring {
            expr,
            start,
            length,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::ast::*;
    use crate::parser::parse_expression;

    fn round_trip(text: &str, canonical: &str) {
        let expr = parse_expression(text).unwrap();
        assert_eq!(expr.to_string(), canonical);
        assert_eq!(parse_expression(canonical).unwrap(), expr);
    }

    #[test]
    fn special_syntax_functions_parse() {
        round_trip("count(*)", "COUNT(*)");
        round_trip("Count(distinct x)", "Count(DISTINCT x)");
        round_trip("extract(YEAR from t)", "EXTRACT(year FROM t)");
        round_trip("date_add(month, 1, `2010T`)", "DATE_ADD(month, 1, `2010T`)");
        round_trip("DATE_DIFF(day, a, b)", "DATE_DIFF(day, a, b)");
        round_trip("trim(both 'x' from s)", "TRIM(BOTH 'x' FROM s)");
        round_trip("TRIM(LEADING FROM s)", "TRIM(LEADING FROM s)");
        round_trip("TRIM(' ' FROM s)", "TRIM(' ' FROM s)");
        round_trip("TRIM(s)", "TRIM(s)");
        round_trip("SUBSTRING(s FROM 2 FOR 3)", "SUBSTRING(s, 2, 3)");
        round_trip("substring(s, 2)", "SUBSTRING(s, 2)");
        round_trip("EXISTS(SELECT * FROM t)", "EXISTS(SELECT * FROM t)");
        round_trip("utcnow()", "utcnow()");
    }

    #[test]
    fn date_part_must_be_a_known_unit() {
        let error = parse_expression("DATE_ADD(week, 1, t)").unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected a date part (year, month, day, hour, minute or second) in DATE_ADD, \
             found 'week' at line 1, column 10"
        );
    }

    #[test]
    fn count_star_is_its_own_node() {
        assert_eq!(parse_expression("COUNT(*)").unwrap(), Expr::CountStar);
    }
}
