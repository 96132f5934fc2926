//! `SELECT` queries and `FROM` sources (also used by FROM-DML).

use super::{PResult, Parser};
use crate::ast::*;
use crate::lexer::{Keyword, TokenKind};

impl Parser<'_> {
    /// `SELECT … FROM … [WHERE …] [GROUP BY …] [HAVING …] [ORDER BY …] [LIMIT n] [OFFSET n]`;
    /// the current token is `SELECT`.
    pub(crate) fn query(&mut self) -> PResult<Query> {
        self.nested(|parser| {
            parser.expect_keyword(Keyword::Select, "")?;
            let projection = parser.projection()?;
            parser.expect_keyword(Keyword::From, "after the SELECT list")?;
            let from = parser.source_list()?;
            let filter = parser.where_clause()?;
            let mut query = Query {
                projection,
                from,
                filter,
                group_by: Vec::new(),
                having: None,
                order_by: Vec::new(),
                limit: None,
                offset: None,
            };
            parser.query_extensions(&mut query)?;
            Ok(query)
        })
    }

    /// The Quill extensions after `WHERE`: `GROUP BY`, `HAVING`, `ORDER BY`, `LIMIT`, `OFFSET`.
    fn query_extensions(&mut self, query: &mut Query) -> PResult<()> {
        if self.eat_keyword(Keyword::Group) {
            self.expect_keyword(Keyword::By, "after GROUP")?;
            query.group_by = self.comma_list(|parser| {
                let expr = parser.expr()?;
                let alias = parser.optional_as_alias()?;
                Ok(GroupKey { expr, alias })
            })?;
        }
        if self.eat_keyword(Keyword::Having) {
            query.having = Some(self.expr()?);
        }
        if self.eat_keyword(Keyword::Order) {
            self.expect_keyword(Keyword::By, "after ORDER")?;
            query.order_by = self.comma_list(|parser| parser.order_key())?;
        }
        if self.eat_keyword(Keyword::Limit) {
            query.limit = Some(self.expr()?);
        }
        if self.eat_keyword(Keyword::Offset) {
            query.offset = Some(self.expr()?);
        }
        Ok(())
    }

    fn order_key(&mut self) -> PResult<OrderKey> {
        let expr = self.expr()?;
        let direction = if self.eat_keyword(Keyword::Asc) {
            Some(SortDirection::Asc)
        } else if self.eat_keyword(Keyword::Desc) {
            Some(SortDirection::Desc)
        } else {
            None
        };
        let mut nulls = None;
        if self.at_word("NULLS") {
            self.advance();
            nulls = Some(if self.at_word("FIRST") {
                NullsOrder::First
            } else if self.at_word("LAST") {
                NullsOrder::Last
            } else {
                return Err(self.unexpected("FIRST or LAST", "after NULLS"));
            });
            self.advance();
        }
        Ok(OrderKey {
            expr,
            direction,
            nulls,
        })
    }

    pub(crate) fn where_clause(&mut self) -> PResult<Option<Expr>> {
        if self.eat_keyword(Keyword::Where) {
            Ok(Some(self.expr()?))
        } else {
            Ok(None)
        }
    }

    fn projection(&mut self) -> PResult<Projection> {
        if self.eat(TokenKind::Star) {
            return Ok(Projection::Star);
        }
        if self.eat_keyword(Keyword::Value) {
            return Ok(Projection::Value(self.expr()?));
        }
        let items = self.comma_list(|parser| parser.select_item())?;
        Ok(Projection::Items(items))
    }

    /// `e [[AS] alias]` or `e.*`.
    fn select_item(&mut self) -> PResult<SelectItem> {
        if self.at_keyword(Keyword::From) {
            return Err(self.unexpected("an expression", "in the SELECT list"));
        }
        let expr = self.expr()?;
        match expr {
            Expr::Path { root, mut steps } if steps.last() == Some(&PathStep::AllFields) => {
                steps.pop();
                let prefix = if steps.is_empty() {
                    *root
                } else {
                    Expr::Path { root, steps }
                };
                Ok(SelectItem::AllFields(prefix))
            }
            expr => {
                let alias = self.optional_as_alias()?;
                Ok(SelectItem::Expr { expr, alias })
            }
        }
    }

    /// `source [, source]…` where each source may be a chain of joins.
    pub(crate) fn source_list(&mut self) -> PResult<Vec<FromSource>> {
        self.comma_list(|parser| parser.joined_source())
    }

    fn joined_source(&mut self) -> PResult<FromSource> {
        let mut source = self.scan()?;
        // Each iteration consumes a JOIN keyword, so the loop ends.
        loop {
            let kind = match self.peek_kind() {
                TokenKind::Keyword(Keyword::Join) => JoinKind::Inner,
                TokenKind::Keyword(Keyword::Inner) => {
                    self.advance();
                    if !self.at_keyword(Keyword::Join) {
                        return Err(self.unexpected("JOIN", "after INNER"));
                    }
                    JoinKind::Inner
                }
                TokenKind::Keyword(Keyword::Cross) => {
                    self.advance();
                    if !self.at_keyword(Keyword::Join) {
                        return Err(self.unexpected("JOIN", "after CROSS"));
                    }
                    JoinKind::Cross
                }
                _ => return Ok(source),
            };
            self.advance();
            let right = self.scan()?;
            let on = match kind {
                JoinKind::Inner => {
                    self.expect_keyword(Keyword::On, "after the joined source")?;
                    Some(self.expr()?)
                }
                JoinKind::Cross => None,
            };
            source = FromSource::Join {
                kind,
                left: Box::new(source),
                right: Box::new(right),
                on,
            };
        }
    }

    /// `expr [[AS] a] [AT i] [BY id]`.
    fn scan(&mut self) -> PResult<FromSource> {
        let expr = self.path_expr()?;
        let as_alias = self.optional_as_alias()?;
        let at_alias = self.keyword_alias(Keyword::At)?;
        let by_alias = self.keyword_alias(Keyword::By)?;
        Ok(FromSource::Scan {
            expr,
            as_alias,
            at_alias,
            by_alias,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::ast::*;
    use crate::parser::parse;

    fn query(text: &str) -> Query {
        match parse(text).unwrap() {
            Statement::Select(query) => *query,
            other => panic!("not a query: {other:?}"),
        }
    }

    #[test]
    fn aliases_may_omit_as() {
        let q = query("SELECT v.VIN vin FROM Vehicle v AT i BY id");
        let Projection::Items(items) = &q.projection else {
            panic!()
        };
        assert!(matches!(&items[0], SelectItem::Expr { alias: Some(a), .. } if a.name == "vin"));
        let FromSource::Scan {
            as_alias,
            at_alias,
            by_alias,
            ..
        } = &q.from[0]
        else {
            panic!()
        };
        assert_eq!(as_alias.as_ref().unwrap().name, "v");
        assert_eq!(at_alias.as_ref().unwrap().name, "i");
        assert_eq!(by_alias.as_ref().unwrap().name, "id");
    }

    #[test]
    fn select_star_of_alias_is_all_fields() {
        let q = query("SELECT v.*, r.Owners.* FROM Vehicle AS v, VehicleRegistration AS r");
        let Projection::Items(items) = &q.projection else {
            panic!()
        };
        assert_eq!(items[0], SelectItem::AllFields(Expr::Var(Ident::new("v"))));
        assert!(matches!(
            &items[1],
            SelectItem::AllFields(Expr::Path { .. })
        ));
    }

    #[test]
    fn joins_are_left_associative() {
        let q = query("SELECT * FROM a JOIN b ON x INNER JOIN c ON y CROSS JOIN d");
        let FromSource::Join {
            kind: JoinKind::Cross,
            left,
            ..
        } = &q.from[0]
        else {
            panic!()
        };
        let FromSource::Join {
            kind: JoinKind::Inner,
            left,
            ..
        } = &**left
        else {
            panic!()
        };
        assert!(matches!(
            &**left,
            FromSource::Join {
                kind: JoinKind::Inner,
                ..
            }
        ));
    }

    #[test]
    fn extensions_parse_in_order() {
        let text = "SELECT r.Make AS m, COUNT(*) AS n FROM Vehicle AS r WHERE r.Year > 2000 \
                    GROUP BY r.Make AS m HAVING COUNT(*) > 1 ORDER BY n DESC NULLS LAST, m \
                    LIMIT 10 OFFSET 5";
        let q = query(text);
        assert_eq!(q.group_by.len(), 1);
        assert_eq!(q.order_by[0].direction, Some(SortDirection::Desc));
        assert_eq!(q.order_by[0].nulls, Some(NullsOrder::Last));
        assert_eq!(
            q.to_string(),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
}
