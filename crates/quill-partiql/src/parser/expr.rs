//! Expression parsing: precedence climbing over the levels in `ast::display::prec`
//! (OR < AND < NOT < comparison/IN/LIKE/BETWEEN/IS < || < + - < * / % < unary < postfix).

use ion_rs::{Element, IonType};

use super::{literal, unquote, PResult, Parser};
use crate::ast::display::prec;
use crate::ast::*;
use crate::lexer::{Keyword, TokenKind};

/// The binary operator a token stands for, if any.
fn binary_op(kind: TokenKind) -> Option<BinaryOp> {
    Some(match kind {
        TokenKind::Plus => BinaryOp::Add,
        TokenKind::Minus => BinaryOp::Sub,
        TokenKind::Star => BinaryOp::Mul,
        TokenKind::Slash => BinaryOp::Div,
        TokenKind::Percent => BinaryOp::Mod,
        TokenKind::Concat => BinaryOp::Concat,
        TokenKind::Eq => BinaryOp::Eq,
        TokenKind::Ne => BinaryOp::Ne,
        TokenKind::Lt => BinaryOp::Lt,
        TokenKind::Le => BinaryOp::Le,
        TokenKind::Gt => BinaryOp::Gt,
        TokenKind::Ge => BinaryOp::Ge,
        TokenKind::Keyword(Keyword::And) => BinaryOp::And,
        TokenKind::Keyword(Keyword::Or) => BinaryOp::Or,
        _ => return None,
    })
}

impl Parser<'_> {
    /// A full expression.
    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        self.expr_at(prec::OR)
    }

    /// An expression whose operators all bind at least as tightly as `min`.
    pub(crate) fn expr_at(&mut self, min: u8) -> PResult<Expr> {
        self.nested(|parser| {
            let (mut left, mut left_level) = parser.prefix(min)?;
            // Each iteration consumes at least one token, so the loop ends. An operator may
            // only take `left` as its left operand if `left` binds at least as tightly
            // (`a IS NULL + 1` is refused, `(a IS NULL) + 1` is fine): then printing never
            // needs parentheses the input did not have.
            loop {
                let fits = |level: u8| level >= min && left_level >= level;
                let kind = parser.peek_kind();
                if let Some(op) = binary_op(kind).filter(|op| fits(op.precedence())) {
                    parser.advance();
                    let right = parser.expr_at(op.precedence() + 1)?;
                    left = Expr::Binary {
                        op,
                        left: Box::new(left),
                        right: Box::new(right),
                    };
                    left_level = op.precedence();
                } else if fits(prec::COMPARE) && parser.at_predicate() {
                    left = parser.predicate(left)?;
                    left_level = prec::COMPARE;
                } else {
                    return Ok(left);
                }
            }
        })
    }

    /// A primary with its path steps: what `FROM`, `SET`, `REMOVE` and `INSERT INTO` take.
    pub(crate) fn path_expr(&mut self) -> PResult<Expr> {
        self.nested(|parser| {
            let primary = parser.primary()?;
            parser.postfix(primary)
        })
    }

    /// A prefix operator with its operand, or a path expression. `min` is the caller's level:
    /// as in PartiQL's grammar, `NOT` cannot start an operand of a tighter operator
    /// (`a = NOT b`), which also keeps printed text from needing extra parentheses.
    fn prefix(&mut self, min: u8) -> PResult<(Expr, u8)> {
        let (op, level) = match self.peek_kind() {
            TokenKind::Keyword(Keyword::Not) if min > prec::NOT => {
                let token = self.peek();
                return Err(self.fail_at(token, "NOT needs parentheses in this position"));
            }
            TokenKind::Keyword(Keyword::Not) => (UnaryOp::Not, prec::NOT),
            TokenKind::Plus => (UnaryOp::Plus, prec::UNARY),
            TokenKind::Minus if self.peek_kind_at(1) == TokenKind::Number => {
                self.advance();
                let literal = self.number(true)?;
                return Ok((self.postfix(literal)?, prec::UNARY));
            }
            TokenKind::Minus => (UnaryOp::Neg, prec::UNARY),
            _ => return Ok((self.path_expr()?, prec::ATOM)),
        };
        self.advance();
        let operand = self.expr_at(level)?;
        Ok((
            Expr::Unary {
                op,
                expr: Box::new(operand),
            },
            level,
        ))
    }

    fn number(&mut self, negative: bool) -> PResult<Expr> {
        let token = self.advance();
        literal::number(token.text(self.source), negative)
            .map(Expr::Lit)
            .map_err(|message| self.fail_at(token, message))
    }

    /// Applies `.field`, `.*`, `[e]` and `[*]` steps, merging into one [`Expr::Path`].
    fn postfix(&mut self, expr: Expr) -> PResult<Expr> {
        let mut steps = Vec::new();
        loop {
            let step = match self.peek_kind() {
                TokenKind::Dot => {
                    self.advance();
                    self.dot_step()?
                }
                TokenKind::LBracket => {
                    self.advance();
                    self.bracket_step()?
                }
                _ => break,
            };
            steps.push(step);
        }
        if steps.is_empty() {
            return Ok(expr);
        }
        Ok(match expr {
            Expr::Path {
                root,
                steps: mut first,
            } => {
                first.append(&mut steps);
                Expr::Path { root, steps: first }
            }
            root => Expr::Path {
                root: Box::new(root),
                steps,
            },
        })
    }

    fn dot_step(&mut self) -> PResult<PathStep> {
        let token = self.peek();
        let step = match token.kind {
            TokenKind::Star => PathStep::AllFields,
            // Any word is a field name after a dot, reserved or not.
            TokenKind::Ident | TokenKind::Keyword(_) => {
                PathStep::Field(Ident::new(token.text(self.source)))
            }
            TokenKind::QuotedIdent => {
                PathStep::Field(Ident::quoted(unquote(token.text(self.source), '"')))
            }
            _ => return Err(self.unexpected("a field name", "after '.'")),
        };
        self.advance();
        Ok(step)
    }

    fn bracket_step(&mut self) -> PResult<PathStep> {
        if self.peek_kind() == TokenKind::Star && self.peek_kind_at(1) == TokenKind::RBracket {
            self.advance();
            self.advance();
            return Ok(PathStep::AllElements);
        }
        let index = self.expr()?;
        self.expect(TokenKind::RBracket, "']'", "after path index")?;
        Ok(PathStep::Index(index))
    }

    fn primary(&mut self) -> PResult<Expr> {
        let token = self.peek();
        let expr = match token.kind {
            TokenKind::Number => return self.number(false),
            TokenKind::String => Expr::Lit(Element::string(unquote(token.text(self.source), '\''))),
            TokenKind::Ion => {
                let text = token.text(self.source);
                let element = literal::ion(&text[1..text.len() - 1])
                    .map_err(|message| self.fail_at(token, message))?;
                Expr::Lit(element)
            }
            TokenKind::Param => {
                let index = self.next_parameter;
                self.next_parameter += 1;
                Expr::Param(index)
            }
            TokenKind::Keyword(Keyword::True) => Expr::Lit(Element::boolean(true)),
            TokenKind::Keyword(Keyword::False) => Expr::Lit(Element::boolean(false)),
            TokenKind::Keyword(Keyword::Null) => Expr::Lit(Element::null(IonType::Null)),
            TokenKind::Keyword(Keyword::Missing) => Expr::Missing,
            TokenKind::Ident if self.peek_kind_at(1) == TokenKind::LParen => {
                return self.call();
            }
            TokenKind::Ident | TokenKind::QuotedIdent => {
                let ident = self.ident("an identifier", "")?;
                return Ok(Expr::Var(ident));
            }
            // `@name` names a variable; aliases already take precedence over table names, so
            // it reads as the plain name (`FROM t AS r, @r.Owners.SecondaryOwners AS o`).
            TokenKind::At => {
                self.advance();
                let ident = self.ident("a variable name", "after '@'")?;
                return Ok(Expr::Var(ident));
            }
            _ => return self.compound_primary(),
        };
        self.advance();
        Ok(expr)
    }

    /// Primaries made of several tokens: parentheses, collections, `CASE`, `CAST`.
    fn compound_primary(&mut self) -> PResult<Expr> {
        match self.peek_kind() {
            TokenKind::LParen => self.parenthesised(),
            TokenKind::LBrace => self.struct_literal(),
            TokenKind::LBracket => {
                self.advance();
                let items = self.items_until(TokenKind::RBracket, "']'", "to close the list")?;
                Ok(Expr::List(items))
            }
            TokenKind::BagOpen => {
                self.advance();
                let items = self.items_until(TokenKind::BagClose, "'>>'", "to close the bag")?;
                Ok(Expr::Bag(items))
            }
            TokenKind::Keyword(Keyword::Case) => self.case(),
            TokenKind::Keyword(Keyword::Cast) => self.cast(),
            _ => Err(self.unexpected("an expression", "")),
        }
    }

    /// `( SELECT … )` or `( expr )`.
    fn parenthesised(&mut self) -> PResult<Expr> {
        self.advance();
        let expr = if self.at_keyword(Keyword::Select) {
            Expr::Subquery(Box::new(self.query()?))
        } else {
            self.expr()?
        };
        self.expect(TokenKind::RParen, "')'", "to close '('")?;
        Ok(expr)
    }

    /// Comma-separated expressions up to `close` (which may come first: empty collection).
    fn items_until(&mut self, close: TokenKind, what: &str, context: &str) -> PResult<Vec<Expr>> {
        if self.eat(close) {
            return Ok(Vec::new());
        }
        let items = self.comma_list(|parser| parser.expr())?;
        self.expect(close, what, context)?;
        Ok(items)
    }

    fn struct_literal(&mut self) -> PResult<Expr> {
        self.advance();
        if self.eat(TokenKind::RBrace) {
            return Ok(Expr::Struct(Vec::new()));
        }
        let fields = self.comma_list(|parser| {
            let name = parser.field_name()?;
            parser.expect(TokenKind::Colon, "':'", "after struct field name")?;
            let value = parser.expr()?;
            Ok(StructField { name, value })
        })?;
        self.expect(TokenKind::RBrace, "'}'", "to close the struct")?;
        Ok(Expr::Struct(fields))
    }

    /// A struct field name: `'s'`, `"s"` and bare words become string literals.
    fn field_name(&mut self) -> PResult<Expr> {
        let is_word = matches!(self.peek_kind(), TokenKind::Ident | TokenKind::QuotedIdent);
        if is_word && self.peek_kind_at(1) == TokenKind::Colon {
            let ident = self.ident("a field name", "")?;
            return Ok(Expr::Lit(Element::string(ident.name)));
        }
        self.expr()
    }

    fn case(&mut self) -> PResult<Expr> {
        self.advance();
        let operand = if self.at_keyword(Keyword::When) {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut branches = Vec::new();
        while self.eat_keyword(Keyword::When) {
            let when = self.expr()?;
            self.expect_keyword(Keyword::Then, "after WHEN condition")?;
            let then = self.expr()?;
            branches.push(CaseBranch { when, then });
        }
        if branches.is_empty() {
            return Err(self.unexpected("WHEN", "in CASE"));
        }
        let otherwise = if self.eat_keyword(Keyword::Else) {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_keyword(Keyword::End, "to close CASE")?;
        Ok(Expr::Case {
            operand,
            branches,
            otherwise,
        })
    }

    fn cast(&mut self) -> PResult<Expr> {
        self.advance();
        self.expect(TokenKind::LParen, "'('", "after CAST")?;
        let expr = self.expr()?;
        self.expect_keyword(Keyword::As, "in CAST")?;
        let ty = self.cast_type()?;
        self.expect(TokenKind::RParen, "')'", "to close CAST")?;
        Ok(Expr::Cast {
            expr: Box::new(expr),
            ty,
        })
    }

    fn cast_type(&mut self) -> PResult<CastType> {
        const NAMES: [(&str, CastType); 15] = [
            ("BOOL", CastType::Bool),
            ("BOOLEAN", CastType::Bool),
            ("INT", CastType::Int),
            ("INTEGER", CastType::Int),
            ("FLOAT", CastType::Float),
            ("DECIMAL", CastType::Decimal),
            ("STRING", CastType::String),
            ("SYMBOL", CastType::Symbol),
            ("TIMESTAMP", CastType::Timestamp),
            ("BLOB", CastType::Blob),
            ("CLOB", CastType::Clob),
            ("STRUCT", CastType::Struct),
            ("LIST", CastType::List),
            ("SEXP", CastType::Sexp),
            ("BAG", CastType::Bag),
        ];
        if self.eat_keyword(Keyword::Null) {
            return Ok(CastType::Null);
        }
        if self.eat_keyword(Keyword::Missing) {
            return Ok(CastType::Missing);
        }
        let found = NAMES.iter().find(|(name, _)| self.at_word(name));
        match found {
            Some(&(_, ty)) => {
                self.advance();
                Ok(ty)
            }
            None => Err(self.unexpected("a type name", "after AS in CAST")),
        }
    }

    /// True when the next tokens start `BETWEEN`, `IN`, `LIKE`, `IS` or their `NOT` forms.
    fn at_predicate(&self) -> bool {
        let is_negatable = |kind: TokenKind| {
            matches!(
                kind,
                TokenKind::Keyword(Keyword::Between | Keyword::In | Keyword::Like)
            )
        };
        match self.peek_kind() {
            TokenKind::Keyword(Keyword::Not) => is_negatable(self.peek_kind_at(1)),
            TokenKind::Keyword(Keyword::Is) => true,
            kind => is_negatable(kind),
        }
    }

    /// `left [NOT] BETWEEN|IN|LIKE …` or `left IS [NOT] NULL|MISSING`.
    fn predicate(&mut self, left: Expr) -> PResult<Expr> {
        let expr = Box::new(left);
        let negated = self.eat_keyword(Keyword::Not);
        let keyword = self.advance();
        match keyword.kind {
            TokenKind::Keyword(Keyword::Between) => {
                let low = Box::new(self.expr_at(prec::CONCAT)?);
                self.expect_keyword(Keyword::And, "in BETWEEN")?;
                let high = Box::new(self.expr_at(prec::CONCAT)?);
                Ok(Expr::Between {
                    expr,
                    negated,
                    low,
                    high,
                })
            }
            TokenKind::Keyword(Keyword::In) => {
                let rhs = self.in_rhs()?;
                Ok(Expr::In { expr, negated, rhs })
            }
            TokenKind::Keyword(Keyword::Like) => {
                let pattern = Box::new(self.expr_at(prec::CONCAT)?);
                let escape = if self.eat_keyword(Keyword::Escape) {
                    Some(Box::new(self.expr_at(prec::CONCAT)?))
                } else {
                    None
                };
                Ok(Expr::Like {
                    expr,
                    negated,
                    pattern,
                    escape,
                })
            }
            _ => {
                let negated = self.eat_keyword(Keyword::Not);
                let test = if self.eat_keyword(Keyword::Null) {
                    IsTest::Null
                } else if self.eat_keyword(Keyword::Missing) {
                    IsTest::Missing
                } else {
                    return Err(self.unexpected("NULL or MISSING", "after IS"));
                };
                Ok(Expr::Is {
                    expr,
                    negated,
                    test,
                })
            }
        }
    }

    /// `(e, …)` is a candidate list; anything else (including `(SELECT …)`) an expression.
    fn in_rhs(&mut self) -> PResult<InRhs> {
        let parenthesised_list = self.peek_kind() == TokenKind::LParen
            && self.peek_kind_at(1) != TokenKind::Keyword(Keyword::Select);
        if parenthesised_list {
            self.advance();
            let items = self.items_until(TokenKind::RParen, "')'", "to close the IN list")?;
            return Ok(InRhs::List(items));
        }
        Ok(InRhs::Expr(Box::new(self.expr_at(prec::CONCAT)?)))
    }
}

#[cfg(test)]
mod tests {
    use crate::ast::*;
    use crate::parser::parse_expression;

    fn var(name: &str) -> Box<Expr> {
        Box::new(Expr::Var(Ident::new(name)))
    }

    #[test]
    fn precedence_follows_the_standard_order() {
        let expr = parse_expression("a OR b AND NOT c = d || e + f * -g").unwrap();
        assert_eq!(expr.to_string(), "a OR b AND NOT c = d || e + f * -g");
        let Expr::Binary {
            op: BinaryOp::Or,
            right,
            ..
        } = expr
        else {
            panic!("{expr:?}")
        };
        let Expr::Binary {
            op: BinaryOp::And,
            right,
            ..
        } = *right
        else {
            panic!()
        };
        assert!(matches!(
            *right,
            Expr::Unary {
                op: UnaryOp::Not,
                ..
            }
        ));
    }

    #[test]
    fn not_cannot_start_a_tighter_operand() {
        let error = parse_expression("a = NOT b").unwrap_err();
        assert_eq!(
            error.to_string(),
            "NOT needs parentheses in this position at line 1, column 5"
        );
        assert!(parse_expression("a IN NOT b").is_err());
        assert!(parse_expression("a = (NOT b)").is_ok());
        assert!(parse_expression("NOT NOT a = b").is_ok());
        assert!(parse_expression("a IS NULL + 1").is_err());
        assert!(parse_expression("(a IS NULL) + 1").is_ok());
        assert!(parse_expression("a IS NULL = b IN (1) AND c").is_ok());
    }

    #[test]
    fn binary_operators_are_left_associative() {
        let expr = parse_expression("a - b - c").unwrap();
        let inner = Expr::Binary {
            op: BinaryOp::Sub,
            left: var("a"),
            right: var("b"),
        };
        assert_eq!(
            expr,
            Expr::Binary {
                op: BinaryOp::Sub,
                left: Box::new(inner),
                right: var("c")
            }
        );
    }

    #[test]
    fn minus_before_a_number_is_folded() {
        assert_eq!(
            parse_expression("-5").unwrap(),
            Expr::Lit(ion_rs::Element::int(-5))
        );
        assert_eq!(parse_expression("a-5").unwrap().to_string(), "a - 5");
    }

    #[test]
    fn paths_merge_steps() {
        let expr = parse_expression("(r.Owners).SecondaryOwners[0].\"Name\"[*].*").unwrap();
        let Expr::Path { root, steps } = &expr else {
            panic!("{expr:?}")
        };
        assert_eq!(**root, Expr::Var(Ident::new("r")));
        assert_eq!(steps.len(), 6);
        assert_eq!(
            expr.to_string(),
            "r.Owners.SecondaryOwners[0].\"Name\"[*].*"
        );
    }

    #[test]
    fn parameters_are_numbered_in_order() {
        let expr = parse_expression("? + a[?] + ?").unwrap();
        let mut seen = Vec::new();
        expr.walk(&mut |e| {
            if let Expr::Param(index) = e {
                seen.push(*index);
            }
        });
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
