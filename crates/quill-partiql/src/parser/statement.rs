//! Statement forms: DDL, `INSERT`, `UPDATE`, `DELETE`, FROM-DML, `EXEC`, `EXPLAIN`, `SELECT`.

use super::{PResult, Parser};
use crate::ast::*;
use crate::lexer::{Keyword, TokenKind};

impl Parser<'_> {
    /// One statement, dispatched on its first keyword.
    pub(crate) fn statement(&mut self) -> PResult<Statement> {
        let TokenKind::Keyword(keyword) = self.peek_kind() else {
            return Err(self.not_a_statement());
        };
        match keyword {
            Keyword::Select => Ok(Statement::Select(Box::new(self.query()?))),
            Keyword::From => self.dml_from_statement(),
            Keyword::Insert => self.insert(),
            Keyword::Update => self.update(),
            Keyword::Delete => self.delete(),
            Keyword::Create => self.create(),
            Keyword::Drop => self.drop(),
            Keyword::Undrop => self.undrop(),
            Keyword::Exec => self.exec(),
            Keyword::Explain => {
                self.advance();
                let inner = self.nested(|parser| parser.statement())?;
                Ok(Statement::Explain(Box::new(inner)))
            }
            _ => Err(self.not_a_statement()),
        }
    }

    fn not_a_statement(&self) -> super::Failure {
        self.unexpected(
            "a statement (SELECT, FROM, INSERT, UPDATE, DELETE, CREATE, DROP, UNDROP, EXEC or \
             EXPLAIN)",
            "",
        )
    }

    fn create(&mut self) -> PResult<Statement> {
        self.advance();
        if self.eat_keyword(Keyword::Table) {
            let table = self.ident("a table name", "after CREATE TABLE")?;
            let tags = if self.eat_keyword(Keyword::With) {
                Some(self.table_tags()?)
            } else {
                None
            };
            return Ok(Statement::CreateTable { table, tags });
        }
        if self.eat_keyword(Keyword::Index) {
            self.expect_keyword(Keyword::On, "after CREATE INDEX")?;
            let table = self.ident("a table name", "after CREATE INDEX ON")?;
            self.expect(
                TokenKind::LParen,
                "'('",
                "after the table name in CREATE INDEX",
            )?;
            let field = self.ident("a field name", "in CREATE INDEX")?;
            self.expect(TokenKind::RParen, "')'", "after the indexed field")?;
            return Ok(Statement::CreateIndex { table, field });
        }
        Err(self.unexpected("TABLE or INDEX", "after CREATE"))
    }

    /// `(aws_tags = value)` after `CREATE TABLE t WITH`.
    fn table_tags(&mut self) -> PResult<Expr> {
        self.expect(TokenKind::LParen, "'('", "after WITH")?;
        if !self.at_word("aws_tags") {
            return Err(self.unexpected("aws_tags", "in CREATE TABLE … WITH ("));
        }
        self.advance();
        self.expect(TokenKind::Eq, "'='", "after aws_tags")?;
        let tags = self.expr()?;
        self.expect(TokenKind::RParen, "')'", "after the aws_tags value")?;
        Ok(tags)
    }

    fn drop(&mut self) -> PResult<Statement> {
        self.advance();
        if self.eat_keyword(Keyword::Table) {
            let table = self.ident("a table name", "after DROP TABLE")?;
            return Ok(Statement::DropTable { table });
        }
        if self.eat_keyword(Keyword::Index) {
            let index_id = self.ident("an index ID", "after DROP INDEX")?;
            self.expect_keyword(Keyword::On, "after the index ID in DROP INDEX")?;
            let table = self.ident("a table name", "after DROP INDEX … ON")?;
            self.purge_clause()?;
            return Ok(Statement::DropIndex { index_id, table });
        }
        Err(self.unexpected("TABLE or INDEX", "after DROP"))
    }

    /// The mandatory `WITH (purge = true)` of `DROP INDEX`: `purge` lower-case, only `true`.
    fn purge_clause(&mut self) -> PResult<()> {
        const CONTEXT: &str = "in DROP INDEX (it requires WITH (purge = true))";
        self.expect_keyword(Keyword::With, CONTEXT)?;
        self.expect(TokenKind::LParen, "'('", CONTEXT)?;
        let token = self.peek();
        if token.kind != TokenKind::Ident || token.text(self.source) != "purge" {
            return Err(self.unexpected("purge (lower-case)", CONTEXT));
        }
        self.advance();
        self.expect(TokenKind::Eq, "'='", "after purge")?;
        if !self.eat_keyword(Keyword::True) {
            return Err(self.unexpected("true (the only supported purge value)", "after purge ="));
        }
        self.expect(TokenKind::RParen, "')'", "after purge = true")?;
        Ok(())
    }

    fn undrop(&mut self) -> PResult<Statement> {
        self.advance();
        self.expect_keyword(Keyword::Table, "after UNDROP")?;
        let table_id = self.ident("a table ID", "after UNDROP TABLE")?;
        Ok(Statement::UndropTable { table_id })
    }

    fn insert(&mut self) -> PResult<Statement> {
        self.advance();
        self.expect_keyword(Keyword::Into, "after INSERT")?;
        let table = self.ident("a table name", "after INSERT INTO")?;
        let source = if self.eat_keyword(Keyword::Value) {
            InsertSource::Value(self.expr()?)
        } else {
            InsertSource::Expr(self.expr()?)
        };
        Ok(Statement::Insert { table, source })
    }

    fn update(&mut self) -> PResult<Statement> {
        self.advance();
        let target = self.dml_target("after UPDATE")?;
        let ops = self.dml_ops("after UPDATE target")?;
        let filter = self.where_clause()?;
        Ok(Statement::Update {
            target,
            ops,
            filter,
        })
    }

    fn delete(&mut self) -> PResult<Statement> {
        self.advance();
        self.expect_keyword(Keyword::From, "after DELETE")?;
        let target = self.dml_target("after DELETE FROM")?;
        let filter = self.where_clause()?;
        Ok(Statement::Delete { target, filter })
    }

    fn dml_from_statement(&mut self) -> PResult<Statement> {
        self.advance();
        let from = self.source_list()?;
        let filter = self.where_clause()?;
        let ops = self.dml_ops("after the FROM clause")?;
        Ok(Statement::FromDml { from, filter, ops })
    }

    /// `t [[AS] a] [BY id]`.
    fn dml_target(&mut self, context: &str) -> PResult<DmlTarget> {
        let table = self.ident("a table name", context)?;
        let as_alias = self.optional_as_alias()?;
        let by_alias = self.keyword_alias(Keyword::By)?;
        Ok(DmlTarget {
            table,
            as_alias,
            by_alias,
        })
    }

    /// One or more `SET …`, `REMOVE p`, `INSERT INTO p VALUE e [AT k]`.
    fn dml_ops(&mut self, context: &str) -> PResult<Vec<DmlOp>> {
        let mut ops = Vec::new();
        // Each iteration consumes an operation keyword, so the loop ends.
        loop {
            let op = match self.peek_kind() {
                TokenKind::Keyword(Keyword::Set) => {
                    self.advance();
                    DmlOp::Set(self.comma_list(|parser| parser.assignment())?)
                }
                TokenKind::Keyword(Keyword::Remove) => {
                    self.advance();
                    DmlOp::Remove(self.dml_path("REMOVE")?)
                }
                TokenKind::Keyword(Keyword::Insert) => self.insert_op()?,
                _ if ops.is_empty() => {
                    return Err(self.unexpected("SET, REMOVE or INSERT", context))
                }
                _ => return Ok(ops),
            };
            ops.push(op);
        }
    }

    /// The location a DML operation changes: a name, or a path from one (`p.Address`,
    /// `p.Tags[0]`). Anything else (`(a = b)`) is refused here, not at evaluation.
    fn dml_path(&mut self, operation: &str) -> PResult<Expr> {
        let start = self.peek();
        let target = self.path_expr()?;
        let root = match &target {
            Expr::Path { root, .. } => root.as_ref(),
            other => other,
        };
        if matches!(root, Expr::Var(_)) {
            Ok(target)
        } else {
            Err(self.fail_at(
                start,
                format!("{operation} needs a path into the document, such as p.Address"),
            ))
        }
    }

    fn assignment(&mut self) -> PResult<Assignment> {
        let target = self.dml_path("SET")?;
        self.expect(TokenKind::Eq, "'='", "after the SET path")?;
        let value = self.expr()?;
        Ok(Assignment { target, value })
    }

    /// `INSERT INTO p VALUE e [AT k]` inside UPDATE / FROM-DML.
    fn insert_op(&mut self) -> PResult<DmlOp> {
        self.advance();
        self.expect_keyword(Keyword::Into, "after INSERT")?;
        let target = self.dml_path("INSERT INTO")?;
        self.expect_keyword(Keyword::Value, "after the INSERT INTO path")?;
        let value = self.expr()?;
        let at = if self.eat_keyword(Keyword::At) {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(DmlOp::InsertInto { target, value, at })
    }

    /// `EXEC name [arg, …]`.
    fn exec(&mut self) -> PResult<Statement> {
        self.advance();
        let procedure = self.ident("a procedure name", "after EXEC")?;
        let at_end = matches!(self.peek_kind(), TokenKind::Eof | TokenKind::Semicolon);
        let args = if at_end {
            Vec::new()
        } else {
            self.comma_list(|parser| parser.expr())?
        };
        Ok(Statement::Exec { procedure, args })
    }
}

#[cfg(test)]
mod tests {
    use crate::ast::*;
    use crate::parser::parse;

    #[test]
    fn trailing_semicolon_is_allowed_once() {
        assert!(parse("DROP TABLE Vehicle;").is_ok());
        let error = parse("DROP TABLE Vehicle;;").unwrap_err();
        assert_eq!(
            error.to_string(),
            "expected end of statement, found ';' at line 1, column 20"
        );
    }

    #[test]
    fn update_collects_mixed_operations() {
        let statement = parse(
            "UPDATE Person AS p BY pid SET p.LastName = 'Smith', p.Age = 3 REMOVE p.Nick \
             INSERT INTO p.Tags VALUE 'x' AT 0 WHERE pid = ?",
        )
        .unwrap();
        let Statement::Update {
            target,
            ops,
            filter,
        } = statement
        else {
            panic!()
        };
        assert_eq!(target.by_alias, Some(Ident::new("pid")));
        assert_eq!(ops.len(), 3);
        assert!(matches!(&ops[0], DmlOp::Set(assignments) if assignments.len() == 2));
        assert!(filter.is_some());
    }

    #[test]
    fn exec_keeps_procedure_spelling() {
        let statement = parse("EXEC redact_revision ?, 'tid', 'did'").unwrap();
        let Statement::Exec { procedure, args } = &statement else {
            panic!()
        };
        assert_eq!(procedure.name, "redact_revision");
        assert_eq!(args.len(), 3);
        assert_eq!(statement.parameter_count(), 1);
    }

    #[test]
    fn explain_wraps_a_statement() {
        let statement = parse("explain select * from t").unwrap();
        assert_eq!(statement.to_string(), "EXPLAIN SELECT * FROM t");
    }
}
