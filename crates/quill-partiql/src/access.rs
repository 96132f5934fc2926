//! What a statement does to which tables, in the terms of QLDB's STANDARD permissions mode, so a
//! server can check a caller's permissions before the statement runs.
//!
//! [`statement_accesses`] reads only the syntax tree (and the parameters, for a table id given
//! as `?`); the caller resolves table names to ids through its transaction's catalog. FROM
//! sources are classified by the planner's own rules ([`crate::plan`]), so a name counts as a
//! table exactly when the evaluator would read it as one.
//!
//! | Statement | Action | On |
//! |---|---|---|
//! | `CREATE TABLE t` | `CreateTable` (plus `TagTable` with `aws_tags`) | [`Target::NewTable`] |
//! | `DROP TABLE t` / `UNDROP TABLE "id"` | `DropTable` / `UndropTable` | the table |
//! | `CREATE INDEX ON t` / `DROP INDEX … ON t` | `CreateIndex` / `DropIndex` | the table |
//! | `INSERT INTO t` | `Insert` | the table |
//! | `UPDATE t`, `FROM t … SET/INSERT/REMOVE path` | `Update` | the table |
//! | `DELETE FROM t`, `FROM t AS a … REMOVE a` | `Delete` | the table |
//! | a table, `_ql_committed_t` read by any query or subquery | `Select` | the table |
//! | `information_schema.user_tables` | `Select` | [`Target::Catalog`] |
//! | `history(t)` | `HistoryFunction` | the table |
//! | `EXEC REDACT_REVISION ?, 'tableId', ?` | `Redact` | the table |
//! | `EXPLAIN s` | those of `s` | |

use std::collections::HashSet;

use ion_rs::Element;

use crate::ast::{DmlOp, DmlTarget, Expr, FromSource, InsertSource, Query, Statement};
use crate::plan::{self, Source, Stage};

/// A PartiQL action of QLDB's STANDARD permissions mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `qldb:PartiQLCreateTable`.
    CreateTable,
    /// `qldb:PartiQLDropTable`.
    DropTable,
    /// `qldb:PartiQLUndropTable`.
    UndropTable,
    /// `qldb:PartiQLCreateIndex`.
    CreateIndex,
    /// `qldb:PartiQLDropIndex`.
    DropIndex,
    /// `qldb:PartiQLInsert`.
    Insert,
    /// `qldb:PartiQLUpdate`.
    Update,
    /// `qldb:PartiQLDelete`.
    Delete,
    /// `qldb:PartiQLSelect`.
    Select,
    /// `qldb:PartiQLHistoryFunction`.
    HistoryFunction,
    /// `qldb:PartiQLRedact`.
    Redact,
    /// `qldb:TagResource`: QLDB also asks for it when `CREATE TABLE` carries `aws_tags`.
    TagTable,
}

impl Action {
    /// The IAM action name, e.g. `qldb:PartiQLSelect`.
    pub fn iam_name(self) -> &'static str {
        match self {
            Action::CreateTable => "qldb:PartiQLCreateTable",
            Action::DropTable => "qldb:PartiQLDropTable",
            Action::UndropTable => "qldb:PartiQLUndropTable",
            Action::CreateIndex => "qldb:PartiQLCreateIndex",
            Action::DropIndex => "qldb:PartiQLDropIndex",
            Action::Insert => "qldb:PartiQLInsert",
            Action::Update => "qldb:PartiQLUpdate",
            Action::Delete => "qldb:PartiQLDelete",
            Action::Select => "qldb:PartiQLSelect",
            Action::HistoryFunction => "qldb:PartiQLHistoryFunction",
            Action::Redact => "qldb:PartiQLRedact",
            Action::TagTable => "qldb:TagResource",
        }
    }
}

/// What an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A table that does not exist yet (`CREATE TABLE name`): QLDB checks `table/*`.
    NewTable(String),
    /// An existing table named in the statement.
    TableName(String),
    /// An existing table given by id (`UNDROP TABLE "id"`, `history('id')`).
    TableId(String),
    /// `information_schema.user_tables`.
    Catalog,
    /// A table only known when the statement runs (`history(expression)`, a `REDACT_REVISION`
    /// table id that is neither a literal nor a parameter): cannot be checked beforehand.
    Dynamic,
}

/// One action on one target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    /// What is done.
    pub action: Action,
    /// To what.
    pub target: Target,
}

/// Every action `statement` performs, on which targets (sorted, without duplicates).
/// `parameters` resolve table ids passed as `?`.
pub fn statement_accesses(statement: &Statement, parameters: &[Element]) -> Vec<Access> {
    let mut collector = Collector {
        parameters,
        accesses: Vec::new(),
    };
    collector.statement(statement);
    let mut accesses = collector.accesses;
    accesses.sort();
    accesses.dedup();
    accesses
}

struct Collector<'p> {
    parameters: &'p [Element],
    accesses: Vec<Access>,
}

impl Collector<'_> {
    fn push(&mut self, action: Action, target: Target) {
        self.accesses.push(Access { action, target });
    }

    fn statement(&mut self, statement: &Statement) {
        let table = |ident: &crate::ast::Ident| Target::TableName(ident.name.clone());
        match statement {
            Statement::Select(query) => self.query(query, &[]),
            Statement::Explain(inner) => self.statement(inner),
            Statement::CreateTable { table: name, tags } => {
                self.push(Action::CreateTable, Target::NewTable(name.name.clone()));
                if let Some(tags) = tags {
                    self.push(Action::TagTable, Target::NewTable(name.name.clone()));
                    self.subqueries(tags, &[]);
                }
            }
            Statement::DropTable { table: name } => self.push(Action::DropTable, table(name)),
            Statement::UndropTable { table_id } => {
                self.push(Action::UndropTable, Target::TableId(table_id.name.clone()))
            }
            Statement::CreateIndex { table: name, .. } => {
                self.push(Action::CreateIndex, table(name));
            }
            Statement::DropIndex { table: name, .. } => self.push(Action::DropIndex, table(name)),
            Statement::Insert {
                table: name,
                source,
            } => {
                self.push(Action::Insert, table(name));
                match source {
                    InsertSource::Value(e) | InsertSource::Expr(e) => self.subqueries(e, &[]),
                }
            }
            Statement::Update {
                target,
                ops,
                filter,
            } => {
                self.push(Action::Update, table(&target.table));
                self.dml_expressions(ops, filter.as_ref(), &target_names(target));
            }
            Statement::Delete { target, filter } => {
                self.push(Action::Delete, table(&target.table));
                self.dml_expressions(&[], filter.as_ref(), &target_names(target));
            }
            Statement::FromDml { from, filter, ops } => {
                self.modifying_from(from, filter.as_ref(), ops)
            }
            Statement::Exec { procedure, args } => {
                if procedure.name.eq_ignore_ascii_case("REDACT_REVISION") {
                    let target = match args.get(1) {
                        Some(expr) => self.table_id(expr),
                        None => Target::Dynamic,
                    };
                    self.push(Action::Redact, target);
                }
                for arg in args {
                    self.subqueries(arg, &[]);
                }
            }
        }
    }

    /// FROM-DML edits documents of its first source: `REMOVE alias` deletes whole documents
    /// (so it needs `Delete`, not only `Update`); later sources are read.
    fn modifying_from(&mut self, from: &[FromSource], filter: Option<&Expr>, ops: &[DmlOp]) {
        let Ok((stages, join_conditions)) = plan::classify_sources(from, &[]) else {
            return;
        };
        let names = self.stages(&stages, &[], Some(0));
        if let Some(Source::Table(table)) = stages.first().map(|s| &s.source) {
            let alias = &stages[0].alias;
            let target = Target::TableName(table.clone());
            let removes_documents = ops
                .iter()
                .any(|op| matches!(op, DmlOp::Remove(Expr::Var(i)) if &i.name == alias));
            let edits_fields = ops
                .iter()
                .any(|op| !matches!(op, DmlOp::Remove(Expr::Var(i)) if &i.name == alias));
            if removes_documents {
                self.push(Action::Delete, target.clone());
            }
            if edits_fields {
                self.push(Action::Update, target);
            }
        }
        for condition in &join_conditions {
            self.subqueries(condition, &names);
        }
        self.dml_expressions(ops, filter, &names);
    }

    fn dml_expressions(&mut self, ops: &[DmlOp], filter: Option<&Expr>, names: &[String]) {
        for op in ops {
            match op {
                DmlOp::Set(assignments) => {
                    for assignment in assignments {
                        self.subqueries(&assignment.target, names);
                        self.subqueries(&assignment.value, names);
                    }
                }
                DmlOp::Remove(path) => self.subqueries(path, names),
                DmlOp::InsertInto { target, value, at } => {
                    self.subqueries(target, names);
                    self.subqueries(value, names);
                    if let Some(at) = at {
                        self.subqueries(at, names);
                    }
                }
            }
        }
        if let Some(filter) = filter {
            self.subqueries(filter, names);
        }
    }

    /// A query and its subqueries; `outer` are the names bound by enclosing queries.
    fn query(&mut self, query: &Query, outer: &[String]) {
        let Ok((stages, join_conditions)) = plan::classify_sources(&query.from, outer) else {
            return;
        };
        let names = self.stages(&stages, outer, None);
        for condition in &join_conditions {
            self.subqueries(condition, &names);
        }
        // The FROM expressions were handled stage by stage; everything else sees all stages.
        let from_exprs: HashSet<*const Expr> = from_expressions(&query.from);
        let mut nested = HashSet::new();
        query.for_each_expr(&mut |e| note_nested(e, &mut nested));
        query.for_each_expr(&mut |e| {
            let address = e as *const Expr;
            if let Expr::Subquery(inner) = e {
                if !from_exprs.contains(&address) && !nested.contains(&address) {
                    self.query(inner, &names);
                }
            }
        });
    }

    /// Records what each stage reads and returns every name bound after them (plus `outer`).
    /// `skip` is a stage whose table access the caller records itself (FROM-DML's target).
    fn stages(&mut self, stages: &[Stage], outer: &[String], skip: Option<usize>) -> Vec<String> {
        let mut names: Vec<String> = outer.to_vec();
        for (index, stage) in stages.iter().enumerate() {
            match &stage.source {
                Source::Table(table) | Source::Committed(table) if skip != Some(index) => {
                    self.push(Action::Select, Target::TableName(table.clone()));
                }
                Source::Table(_) | Source::Committed(_) => {}
                Source::Catalog => self.push(Action::Select, Target::Catalog),
                Source::History { target, start, end } => {
                    let table = match target {
                        Expr::Var(ident) => Target::TableName(ident.name.clone()),
                        other => self.table_id(other),
                    };
                    self.push(Action::HistoryFunction, table);
                    for expr in [Some(target), start.as_ref(), end.as_ref()]
                        .into_iter()
                        .flatten()
                    {
                        self.subqueries(expr, &names);
                    }
                }
                Source::Value(expr) => self.subqueries(expr, &names),
            }
            names.extend(plan::stage_names(stage).map(str::to_string));
        }
        names
    }

    /// Visits the subqueries of `expr` that are not nested in another subquery of it.
    fn subqueries(&mut self, expr: &Expr, names: &[String]) {
        let mut nested = HashSet::new();
        expr.walk(&mut |e| note_nested(e, &mut nested));
        expr.walk(&mut |e| {
            if let Expr::Subquery(query) = e {
                if !nested.contains(&(e as *const Expr)) {
                    self.query(query, names);
                }
            }
        });
    }

    /// A table id given as a string literal or a `?` parameter.
    fn table_id(&self, expr: &Expr) -> Target {
        let value = match expr {
            Expr::Lit(element) => Some(element),
            Expr::Param(index) => self.parameters.get(*index as usize),
            _ => None,
        };
        match value.and_then(Element::as_text) {
            Some(id) => Target::TableId(id.to_string()),
            None => Target::Dynamic,
        }
    }
}

/// The names an UPDATE or DELETE binds: its alias (the table's name when it has none, which
/// then hides the table from its subqueries) and its `BY` name.
fn target_names(target: &DmlTarget) -> Vec<String> {
    let alias = target.as_alias.as_ref().unwrap_or(&target.table);
    std::iter::once(alias)
        .chain(target.by_alias.as_ref())
        .map(|ident| ident.name.clone())
        .collect()
}

/// Notes the address of every expression inside `expr` when it is a subquery: `walk` and
/// `for_each_expr` list nested expressions flat, so this is how a subquery of a subquery is
/// told apart from a direct one.
fn note_nested(expr: &Expr, nested: &mut HashSet<*const Expr>) {
    if let Expr::Subquery(query) = expr {
        query.for_each_expr(&mut |inner| {
            nested.insert(inner as *const Expr);
        });
    }
}

/// The addresses of the FROM source expressions of a query and of everything inside them.
fn from_expressions(sources: &[FromSource]) -> HashSet<*const Expr> {
    let mut found = HashSet::new();
    fn visit(source: &FromSource, found: &mut HashSet<*const Expr>) {
        match source {
            FromSource::Scan { expr, .. } => expr.walk(&mut |e| {
                found.insert(e as *const Expr);
            }),
            FromSource::Join {
                left, right, on, ..
            } => {
                visit(left, found);
                visit(right, found);
                if let Some(on) = on {
                    on.walk(&mut |e| {
                        found.insert(e as *const Expr);
                    });
                }
            }
        }
    }
    for source in sources {
        visit(source, &mut found);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accesses(text: &str, parameters: &[Element]) -> Vec<(Action, Target)> {
        let statement = crate::parser::parse(text).unwrap();
        statement_accesses(&statement, parameters)
            .into_iter()
            .map(|a| (a.action, a.target))
            .collect()
    }

    fn name(table: &str) -> Target {
        Target::TableName(table.to_string())
    }

    #[test]
    fn ddl_names_its_table() {
        assert_eq!(
            accesses("CREATE TABLE Car", &[]),
            [(Action::CreateTable, Target::NewTable("Car".into()))]
        );
        assert_eq!(
            accesses("CREATE TABLE Car WITH (aws_tags = `{a: \"b\"}`)", &[]),
            [
                (Action::CreateTable, Target::NewTable("Car".into())),
                (Action::TagTable, Target::NewTable("Car".into()))
            ]
        );
        assert_eq!(
            accesses("DROP TABLE Car", &[]),
            [(Action::DropTable, name("Car"))]
        );
        assert_eq!(
            accesses("UNDROP TABLE \"5PLf9SXwndd63lPaSIa0O6\"", &[]),
            [(
                Action::UndropTable,
                Target::TableId("5PLf9SXwndd63lPaSIa0O6".into())
            )]
        );
        assert_eq!(
            accesses("CREATE INDEX ON Car (VIN)", &[]),
            [(Action::CreateIndex, name("Car"))]
        );
        assert_eq!(
            accesses(
                "DROP INDEX \"4tPW3fUhaVhDinRgKRLhGU\" ON Car WITH (purge = true)",
                &[]
            ),
            [(Action::DropIndex, name("Car"))]
        );
    }

    #[test]
    fn queries_read_every_table_they_name() {
        assert_eq!(
            accesses("SELECT * FROM Car AS c, c.Owners AS o", &[]),
            [(Action::Select, name("Car"))]
        );
        assert_eq!(
            accesses(
                "SELECT * FROM Car AS c INNER JOIN Person AS p ON c.owner = p.id \
                 WHERE EXISTS (SELECT * FROM Secret AS s WHERE s.x = c.y)",
                &[]
            ),
            [
                (Action::Select, name("Car")),
                (Action::Select, name("Person")),
                (Action::Select, name("Secret"))
            ]
        );
        assert_eq!(
            accesses("SELECT * FROM _ql_committed_Car", &[]),
            [(Action::Select, name("Car"))]
        );
        assert_eq!(
            accesses("SELECT * FROM information_schema.user_tables", &[]),
            [(Action::Select, Target::Catalog)]
        );
        // A name bound by an enclosing query is not a table.
        assert_eq!(
            accesses(
                "SELECT (SELECT VALUE x FROM c AS x) AS same FROM Car AS c",
                &[]
            ),
            [(Action::Select, name("Car"))]
        );
        // Subqueries nested in subqueries, in FROM and in projections, are all found.
        assert_eq!(
            accesses(
                "SELECT (SELECT * FROM (SELECT * FROM Deep) AS d) AS x FROM <<1>> AS one",
                &[]
            ),
            [(Action::Select, name("Deep"))]
        );
    }

    #[test]
    fn history_needs_its_own_action() {
        assert_eq!(
            accesses("SELECT * FROM history(Car) AS h", &[]),
            [(Action::HistoryFunction, name("Car"))]
        );
        assert_eq!(
            accesses("SELECT * FROM history(?) AS h", &[Element::string("abc")]),
            [(Action::HistoryFunction, Target::TableId("abc".into()))]
        );
        assert_eq!(
            accesses("SELECT * FROM history('a' || 'b') AS h", &[]),
            [(Action::HistoryFunction, Target::Dynamic)]
        );
    }

    #[test]
    fn dml_writes_its_target_and_reads_its_subqueries() {
        assert_eq!(
            accesses("INSERT INTO Car << {'a': 1} >>", &[]),
            [(Action::Insert, name("Car"))]
        );
        assert_eq!(
            accesses(
                "INSERT INTO Car VALUE {'a': (SELECT VALUE COUNT(*) FROM Other AS o)}",
                &[]
            ),
            [
                (Action::Insert, name("Car")),
                (Action::Select, name("Other"))
            ]
        );
        assert_eq!(
            accesses("UPDATE Car AS c SET c.a = 1 WHERE c.b = 2", &[]),
            [(Action::Update, name("Car"))]
        );
        assert_eq!(
            accesses("DELETE FROM Car AS c WHERE c.b = 2", &[]),
            [(Action::Delete, name("Car"))]
        );
        // With an alias, the table's own name in a subquery is the table again.
        assert_eq!(
            accesses(
                "UPDATE Car AS c SET c.a = 1 WHERE EXISTS (SELECT * FROM Car AS d)",
                &[]
            ),
            [(Action::Update, name("Car")), (Action::Select, name("Car"))]
        );
        assert_eq!(
            accesses("DELETE FROM Car WHERE EXISTS (SELECT * FROM Car AS d)", &[]),
            [(Action::Delete, name("Car"))]
        );
        assert_eq!(
            accesses("FROM Car AS c WHERE c.b = 2 SET c.a = 1", &[]),
            [(Action::Update, name("Car"))]
        );
        assert_eq!(
            accesses("FROM Car AS c WHERE c.b = 2 REMOVE c", &[]),
            [(Action::Delete, name("Car"))]
        );
        assert_eq!(
            accesses("FROM Car AS c, c.Owners AS o REMOVE o", &[]),
            [(Action::Update, name("Car"))]
        );
    }

    #[test]
    fn explain_and_redact() {
        assert_eq!(
            accesses("EXPLAIN SELECT * FROM Car", &[]),
            [(Action::Select, name("Car"))]
        );
        assert_eq!(
            accesses(
                "EXEC REDACT_REVISION `{strandId:\"s\",sequenceNo:1}`, 'tbl', 'doc'",
                &[]
            ),
            [(Action::Redact, Target::TableId("tbl".into()))]
        );
    }
}
