//! The syntax tree of QLDB's PartiQL dialect (plus a few Quill extensions).
//!
//! This module owns data and its canonical printing only: no parsing logic lives here (the
//! parser is in [`crate::parser`]). Every node implements `Display`, printing canonical PartiQL
//! text that parses back to an equal tree, so parser tests are round trips.
//!
//! Conventions the evaluator can rely on:
//! - Identifiers keep their exact spelling; QLDB names are case-sensitive even unquoted
//!   ([`Ident`]). Keywords and function names are case-insensitive.
//! - Literals are already `ion_rs::Element`s ([`Expr::Lit`]); only `MISSING` has its own node
//!   because Ion cannot represent it.
//! - Parameters `?` are numbered 0, 1, 2… in order of appearance ([`Expr::Param`]);
//!   [`Statement::parameter_count`] tells how many values the statement needs.
//! - Nodes documented as **Quill extension** are not in QLDB's grammar (GROUP BY, HAVING,
//!   ORDER BY, LIMIT, OFFSET, EXPLAIN, CROSS JOIN). The planner decides whether to accept them.

pub(crate) mod display;
mod visit;

use ion_rs::Element;

/// A name as written: table, alias, field or procedure name.
///
/// QLDB names are case-sensitive even when unquoted, so `name` is the exact spelling (quotes
/// removed, `""` unescaped). `quoted` only records how it was written so printing is faithful;
/// two identifiers name the same thing when their `name`s are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    /// Exact spelling without quotes.
    pub name: String,
    /// `true` for `"…"` quoted identifiers (needed for reserved words and table/index IDs).
    pub quoted: bool,
}

/// One PartiQL statement; a text holds exactly one.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SELECT …` query.
    Select(Box<Query>),
    /// ``CREATE TABLE t [WITH (aws_tags = `{…}`)]``. `tags` is the `aws_tags` value (normally
    /// an Ion struct literal, possibly a parameter).
    CreateTable {
        /// The new table's name.
        table: Ident,
        /// The `aws_tags` expression, if the `WITH` clause was given.
        tags: Option<Expr>,
    },
    /// `DROP TABLE t`: marks the table inactive.
    DropTable {
        /// The table name.
        table: Ident,
    },
    /// `UNDROP TABLE "tableId"`: reactivates an inactive table by its ID.
    UndropTable {
        /// The table ID (normally a quoted identifier).
        table_id: Ident,
    },
    /// `CREATE INDEX ON t (field)`: one top-level field.
    CreateIndex {
        /// The indexed table.
        table: Ident,
        /// The top-level field name.
        field: Ident,
    },
    /// `DROP INDEX "indexId" ON t WITH (purge = true)`; the parser guarantees the clause was
    /// present and exactly `purge = true`, so it carries no data.
    DropIndex {
        /// The index ID.
        index_id: Ident,
        /// The table owning the index.
        table: Ident,
    },
    /// `INSERT INTO t VALUE e` / `INSERT INTO t e`.
    Insert {
        /// The target table.
        table: Ident,
        /// What to insert.
        source: InsertSource,
    },
    /// `UPDATE t [AS a] [BY id] (SET … | REMOVE p | INSERT INTO p VALUE e [AT k])+ [WHERE c]`.
    Update {
        /// The table and its aliases.
        target: DmlTarget,
        /// The operations in source order (at least one).
        ops: Vec<DmlOp>,
        /// The `WHERE` filter.
        filter: Option<Expr>,
    },
    /// `DELETE FROM t [AS a] [BY id] [WHERE c]`.
    Delete {
        /// The table and its aliases.
        target: DmlTarget,
        /// The `WHERE` filter.
        filter: Option<Expr>,
    },
    /// FROM-DML: `FROM sources [WHERE c] (SET … | REMOVE p | INSERT INTO p VALUE e [AT k])+`.
    /// The first source is the table; later comma sources unnest paths
    /// (`FROM Vehicle AS v, v.Owners.SecondaryOwners AS o … REMOVE o`).
    FromDml {
        /// The sources, comma-separated in the text (at least one).
        from: Vec<FromSource>,
        /// The `WHERE` filter.
        filter: Option<Expr>,
        /// The operations in source order (at least one).
        ops: Vec<DmlOp>,
    },
    /// `EXEC name arg, …` (e.g. `EXEC REDACT_REVISION ?, 'tableId', 'documentId'`). The
    /// procedure name keeps its spelling; compare it case-insensitively.
    Exec {
        /// The procedure name.
        procedure: Ident,
        /// The arguments in order.
        args: Vec<Expr>,
    },
    /// **Quill extension**: `EXPLAIN statement` describes the plan instead of running it.
    Explain(Box<Statement>),
}

/// The value part of an `INSERT INTO t …` statement.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertSource {
    /// `VALUE e`: `e` is exactly one document.
    Value(Expr),
    /// `e` without `VALUE` (`<< … >>`, `[ … ]`, `?`, `{ … }`): a bag or list inserts each of its
    /// elements; a struct inserts one document.
    Expr(Expr),
}

/// The table of an `UPDATE` or `DELETE`, with its optional aliases.
#[derive(Debug, Clone, PartialEq)]
pub struct DmlTarget {
    /// The table name.
    pub table: Ident,
    /// `AS a` (the `AS` keyword is optional).
    pub as_alias: Option<Ident>,
    /// `BY id`: binds the document ID.
    pub by_alias: Option<Ident>,
}

/// One data-modification operation of `UPDATE` or FROM-DML.
#[derive(Debug, Clone, PartialEq)]
pub enum DmlOp {
    /// `SET p = e [, p = e …]`; missing paths are created.
    Set(Vec<Assignment>),
    /// `REMOVE p`; removing the table alias itself deletes the document.
    Remove(Expr),
    /// `INSERT INTO p VALUE e [AT k]`: adds `e` to the collection or struct at `p`; `AT k`
    /// gives the list position or the struct field name.
    InsertInto {
        /// The path receiving the value.
        target: Expr,
        /// The inserted value.
        value: Expr,
        /// The `AT` position or key.
        at: Option<Expr>,
    },
}

/// `path = value` inside `SET`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The assigned path (a variable or path expression).
    pub target: Expr,
    /// The new value.
    pub value: Expr,
}

/// A `SELECT` query (also used for subqueries).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// What each result row produces.
    pub projection: Projection,
    /// The `FROM` sources, comma-separated in the text (at least one; comma means cross join /
    /// unnesting, later sources may refer to earlier aliases).
    pub from: Vec<FromSource>,
    /// The `WHERE` filter.
    pub filter: Option<Expr>,
    /// **Quill extension**: `GROUP BY e [AS a], …` (empty when absent).
    pub group_by: Vec<GroupKey>,
    /// **Quill extension**: `HAVING c`.
    pub having: Option<Expr>,
    /// **Quill extension**: `ORDER BY e [ASC|DESC] [NULLS FIRST|LAST], …` (empty when absent).
    pub order_by: Vec<OrderKey>,
    /// **Quill extension**: `LIMIT n`.
    pub limit: Option<Expr>,
    /// **Quill extension**: `OFFSET n`.
    pub offset: Option<Expr>,
}

/// The projection of a `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `SELECT *`: every binding's fields merged into one struct.
    Star,
    /// `SELECT VALUE e`: each row produces the bare value of `e`.
    Value(Expr),
    /// `SELECT item, …`: each row produces a struct (at least one item).
    Items(Vec<SelectItem>),
}

/// One item of a `SELECT` list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `e [AS alias]` (the `AS` keyword is optional). Without an alias the evaluator derives
    /// the field name (last path step, variable name, or a positional `_1`, `_2`…).
    Expr {
        /// The projected expression.
        expr: Expr,
        /// The output field name.
        alias: Option<Ident>,
    },
    /// `e.*`: all fields of the struct `e` (usually an alias: `SELECT v.* FROM Vehicle AS v`).
    AllFields(Expr),
}

/// One comma-separated element of a `FROM` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum FromSource {
    /// A scanned value: a table name ([`Expr::Var`], including `_ql_committed_T`), a path
    /// (`information_schema.user_tables`, `v.Owners.SecondaryOwners`), a call
    /// (`history(t, start, end)`) or a subquery, with its optional aliases.
    Scan {
        /// What is iterated.
        expr: Expr,
        /// `AS a` (the `AS` keyword is optional).
        as_alias: Option<Ident>,
        /// `AT i`: binds the list position of each element.
        at_alias: Option<Ident>,
        /// `BY id`: binds the document ID.
        by_alias: Option<Ident>,
    },
    /// `left [INNER] JOIN right ON cond` or **Quill extension** `left CROSS JOIN right`
    /// (`on` is `None` exactly for cross joins).
    Join {
        /// The join flavour.
        kind: JoinKind,
        /// The left side (may itself be a join: joins are left-associative).
        left: Box<FromSource>,
        /// The right side (always a [`FromSource::Scan`] from the parser).
        right: Box<FromSource>,
        /// The `ON` condition (present for inner joins).
        on: Option<Expr>,
    },
}

/// The kind of an explicit join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `JOIN` or `INNER JOIN … ON …` (printed as `INNER JOIN`).
    Inner,
    /// **Quill extension**: `CROSS JOIN` (no `ON`).
    Cross,
}

/// **Quill extension**: one `GROUP BY` key.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupKey {
    /// The grouping expression.
    pub expr: Expr,
    /// `AS a`: the name bound to the key value.
    pub alias: Option<Ident>,
}

/// **Quill extension**: one `ORDER BY` key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKey {
    /// The sort expression.
    pub expr: Expr,
    /// `ASC` (default, `None`) or `DESC`.
    pub direction: Option<SortDirection>,
    /// `NULLS FIRST` / `NULLS LAST`, if written.
    pub nulls: Option<NullsOrder>,
}

/// Sort direction of an `ORDER BY` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    /// `ASC`.
    Asc,
    /// `DESC`.
    Desc,
}

/// Placement of NULL/MISSING in an `ORDER BY` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsOrder {
    /// `NULLS FIRST`.
    First,
    /// `NULLS LAST`.
    Last,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal: `'text'` (Ion string), numbers (`7` Ion int, `90.25` Ion decimal with that
    /// exact precision, `1e3` Ion float; a leading `-` is folded in), `TRUE`/`FALSE`, `NULL`
    /// (untyped Ion null), and backtick Ion literals of any type.
    Lit(Element),
    /// `MISSING`.
    Missing,
    /// `?`: the positional parameter with this index (0-based, in order of appearance).
    Param(u32),
    /// A variable reference: an alias, a table name or an unqualified field name.
    Var(Ident),
    /// A path `root.step[step]…` (at least one step).
    Path {
        /// The value navigated from (usually a [`Expr::Var`]).
        root: Box<Expr>,
        /// The steps in order.
        steps: Vec<PathStep>,
    },
    /// `{ name: value, … }`. Field names written as `'s'`, `"s"` or a bare identifier are all
    /// stored as an Ion string literal; any other name is an expression evaluated to a string.
    Struct(Vec<StructField>),
    /// `[ e, … ]`.
    List(Vec<Expr>),
    /// `<< e, … >>`.
    Bag(Vec<Expr>),
    /// A function call `name(args)` such as `UPPER(x)`, `COUNT(DISTINCT x)`, `EXISTS(SELECT …)`,
    /// `history(t, ts)`, `UTCNOW()`. Special syntaxes have their own nodes (`COUNT(*)`, `CAST`,
    /// `EXTRACT`, `DATE_ADD`, `DATE_DIFF`, `TRIM`, `SUBSTRING`).
    Call(Call),
    /// `COUNT(*)`.
    CountStar,
    /// `CAST(e AS type)`.
    Cast {
        /// The converted value.
        expr: Box<Expr>,
        /// The target type.
        ty: CastType,
    },
    /// `EXTRACT(part FROM e)`.
    Extract {
        /// The extracted component.
        part: DatePart,
        /// The timestamp.
        from: Box<Expr>,
    },
    /// `DATE_ADD(part, quantity, timestamp)`.
    DateAdd {
        /// The unit of `quantity`.
        part: DatePart,
        /// How many units to add (may be negative).
        quantity: Box<Expr>,
        /// The timestamp added to.
        timestamp: Box<Expr>,
    },
    /// `DATE_DIFF(part, from, to)`: `to - from` in whole units of `part`.
    DateDiff {
        /// The unit of the result.
        part: DatePart,
        /// The earlier timestamp.
        from: Box<Expr>,
        /// The later timestamp.
        to: Box<Expr>,
    },
    /// `TRIM([LEADING|TRAILING|BOTH] [chars] FROM s)` or `TRIM(s)`.
    Trim {
        /// Which ends to trim; `None` means both.
        spec: Option<TrimSpec>,
        /// Characters to remove; `None` means spaces.
        chars: Option<Box<Expr>>,
        /// The trimmed string.
        from: Box<Expr>,
    },
    /// `SUBSTRING(s, start [, length])` or `SUBSTRING(s FROM start [FOR length])`
    /// (1-based `start`; both spellings give this node).
    Substring {
        /// The string.
        expr: Box<Expr>,
        /// The 1-based start position.
        start: Box<Expr>,
        /// The length, if given.
        length: Option<Box<Expr>>,
    },
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`: with an operand, each `when` is compared
    /// for equality with it; without, each `when` is a condition.
    Case {
        /// The simple-CASE operand.
        operand: Option<Box<Expr>>,
        /// `WHEN when THEN then` branches in order (at least one).
        branches: Vec<CaseBranch>,
        /// The `ELSE` value (NULL when absent).
        otherwise: Option<Box<Expr>>,
    },
    /// `(SELECT …)`: a subquery producing a bag.
    Subquery(Box<Query>),
    /// `-e`, `+e`, `NOT e`.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        expr: Box<Expr>,
    },
    /// `left op right` for arithmetic, `||`, comparisons, `AND`, `OR`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// `e [NOT] BETWEEN low AND high` (inclusive).
    Between {
        /// The tested value.
        expr: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
        /// The lower bound.
        low: Box<Expr>,
        /// The upper bound.
        high: Box<Expr>,
    },
    /// `e [NOT] IN rhs`.
    In {
        /// The tested value.
        expr: Box<Expr>,
        /// `NOT IN`.
        negated: bool,
        /// The candidates.
        rhs: InRhs,
    },
    /// `e [NOT] LIKE pattern [ESCAPE escape]`.
    Like {
        /// The tested string.
        expr: Box<Expr>,
        /// `NOT LIKE`.
        negated: bool,
        /// The pattern (`%` any run, `_` one character).
        pattern: Box<Expr>,
        /// The escape character.
        escape: Option<Box<Expr>>,
    },
    /// `e IS [NOT] NULL` / `e IS [NOT] MISSING`.
    Is {
        /// The tested value.
        expr: Box<Expr>,
        /// `IS NOT`.
        negated: bool,
        /// What is tested for.
        test: IsTest,
    },
}

/// One step of a path expression.
#[derive(Debug, Clone, PartialEq)]
pub enum PathStep {
    /// `.name` or `."name"` (case-sensitive field lookup; keywords are allowed after the dot).
    Field(Ident),
    /// `[e]`: a list index when `e` is a number, a field lookup when it is a string (`a['f']`),
    /// possibly a parameter (`a[?]`).
    Index(Expr),
    /// `[*]`: every element of a list.
    AllElements,
    /// `.*`: every field value of a struct.
    AllFields,
}

/// A `name: value` pair of a struct literal.
#[derive(Debug, Clone, PartialEq)]
pub struct StructField {
    /// The field name (an Ion string literal for `'s'`, `"s"` or a bare identifier).
    pub name: Expr,
    /// The field value.
    pub value: Expr,
}

/// A function call `name([DISTINCT] args)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function name as written; compare case-insensitively.
    pub name: String,
    /// `DISTINCT` before the arguments (aggregates only, e.g. `COUNT(DISTINCT x)`).
    pub distinct: bool,
    /// The arguments in order.
    pub args: Vec<Expr>,
}

/// A `WHEN … THEN …` branch of `CASE`.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseBranch {
    /// The condition (searched CASE) or the value compared with the operand (simple CASE).
    pub when: Expr,
    /// The result when it matches.
    pub then: Expr,
}

/// The right-hand side of `IN`.
#[derive(Debug, Clone, PartialEq)]
pub enum InRhs {
    /// `IN (e, …)`: a parenthesised list of candidates (the shape QLDB can serve from an index).
    List(Vec<Expr>),
    /// `IN e` without parentheses: `?`, `[…]`, `<<…>>`, a path, or a subquery `(SELECT …)`;
    /// `e` must evaluate to a collection.
    Expr(Box<Expr>),
}

/// The target type of `CAST`. `BOOLEAN`/`INTEGER` are read as `BOOL`/`INT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastType {
    /// `NULL`.
    Null,
    /// `MISSING`.
    Missing,
    /// `BOOL` / `BOOLEAN`.
    Bool,
    /// `INT` / `INTEGER`.
    Int,
    /// `FLOAT`.
    Float,
    /// `DECIMAL`.
    Decimal,
    /// `STRING`.
    String,
    /// `SYMBOL`.
    Symbol,
    /// `TIMESTAMP`.
    Timestamp,
    /// `BLOB`.
    Blob,
    /// `CLOB`.
    Clob,
    /// `STRUCT`.
    Struct,
    /// `LIST`.
    List,
    /// `SEXP`.
    Sexp,
    /// `BAG`.
    Bag,
}

/// A timestamp component for `EXTRACT`, `DATE_ADD` and `DATE_DIFF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    /// `year`.
    Year,
    /// `month`.
    Month,
    /// `day`.
    Day,
    /// `hour`.
    Hour,
    /// `minute`.
    Minute,
    /// `second`.
    Second,
    /// `timezone_hour` (EXTRACT only).
    TimezoneHour,
    /// `timezone_minute` (EXTRACT only).
    TimezoneMinute,
}

/// Which ends `TRIM` works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimSpec {
    /// `LEADING`.
    Leading,
    /// `TRAILING`.
    Trailing,
    /// `BOTH`.
    Both,
}

/// A prefix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-e`.
    Neg,
    /// `+e`.
    Plus,
    /// `NOT e`.
    Not,
}

/// An infix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `||` string concatenation.
    Concat,
    /// `=`.
    Eq,
    /// `<>` or `!=` (printed as `<>`).
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `AND`.
    And,
    /// `OR`.
    Or,
}

/// The predicate of `IS [NOT] …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsTest {
    /// `IS NULL` (true for NULL and MISSING, as in PartiQL).
    Null,
    /// `IS MISSING`.
    Missing,
}

impl Ident {
    /// An unquoted identifier with this exact spelling.
    pub fn new(name: impl Into<String>) -> Self {
        Ident {
            name: name.into(),
            quoted: false,
        }
    }

    /// A `"quoted"` identifier with this exact spelling.
    pub fn quoted(name: impl Into<String>) -> Self {
        Ident {
            name: name.into(),
            quoted: true,
        }
    }
}

impl CastType {
    /// The canonical keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CastType::Null => "NULL",
            CastType::Missing => "MISSING",
            CastType::Bool => "BOOL",
            CastType::Int => "INT",
            CastType::Float => "FLOAT",
            CastType::Decimal => "DECIMAL",
            CastType::String => "STRING",
            CastType::Symbol => "SYMBOL",
            CastType::Timestamp => "TIMESTAMP",
            CastType::Blob => "BLOB",
            CastType::Clob => "CLOB",
            CastType::Struct => "STRUCT",
            CastType::List => "LIST",
            CastType::Sexp => "SEXP",
            CastType::Bag => "BAG",
        }
    }
}

impl DatePart {
    /// The canonical (lower-case, as in the QLDB docs) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DatePart::Year => "year",
            DatePart::Month => "month",
            DatePart::Day => "day",
            DatePart::Hour => "hour",
            DatePart::Minute => "minute",
            DatePart::Second => "second",
            DatePart::TimezoneHour => "timezone_hour",
            DatePart::TimezoneMinute => "timezone_minute",
        }
    }
}

impl TrimSpec {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            TrimSpec::Leading => "LEADING",
            TrimSpec::Trailing => "TRAILING",
            TrimSpec::Both => "BOTH",
        }
    }
}

impl BinaryOp {
    /// The operator as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Concat => "||",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
        }
    }
}
