//! Canonical PartiQL printing of the syntax tree.
//!
//! The printed text parses back to an equal tree: keywords are upper-case, aliases always use
//! `AS`, and parentheses are added exactly where operator precedence needs them (the parser
//! drops redundant ones). Precedence levels live here and are shared with the parser so the two
//! can never disagree.

use std::fmt::{self, Display, Formatter, Write};

use ion_rs::{Element, IonType, Value};

use super::*;

/// Operator precedence levels, loosest first. Parser and printer both use them.
pub(crate) mod prec {
    /// `OR`.
    pub const OR: u8 = 1;
    /// `AND`.
    pub const AND: u8 = 2;
    /// Prefix `NOT`.
    pub const NOT: u8 = 3;
    /// Comparisons, `IN`, `LIKE`, `BETWEEN`, `IS`.
    pub const COMPARE: u8 = 4;
    /// `||`.
    pub const CONCAT: u8 = 5;
    /// Binary `+ -`.
    pub const ADD: u8 = 6;
    /// `* / %`.
    pub const MUL: u8 = 7;
    /// Prefix `-` and `+`.
    pub const UNARY: u8 = 8;
    /// Primaries and postfix path steps.
    pub const ATOM: u8 = 9;
}

impl BinaryOp {
    /// The precedence level (see [`prec`]); every binary operator is left-associative.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => prec::OR,
            BinaryOp::And => prec::AND,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => prec::COMPARE,
            BinaryOp::Concat => prec::CONCAT,
            BinaryOp::Add | BinaryOp::Sub => prec::ADD,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => prec::MUL,
        }
    }
}

impl Expr {
    /// How tightly this expression binds when printed without parentheses.
    pub(crate) fn precedence(&self) -> u8 {
        match self {
            Expr::Binary { op, .. } => op.precedence(),
            Expr::Unary {
                op: UnaryOp::Not, ..
            } => prec::NOT,
            Expr::Unary { .. } => prec::UNARY,
            Expr::Between { .. } | Expr::In { .. } | Expr::Like { .. } | Expr::Is { .. } => {
                prec::COMPARE
            }
            // A negative number prints with a leading `-`, which binds like a prefix operator.
            Expr::Lit(element) if literal_form(element) == LiteralForm::Number => {
                if is_negative_number(element) {
                    prec::UNARY
                } else {
                    prec::ATOM
                }
            }
            _ => prec::ATOM,
        }
    }

    /// Prints `self`, parenthesised when it binds looser than `min`.
    fn fmt_at(&self, min: u8, f: &mut Formatter<'_>) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }

    /// Prints `self` as the root of a path or `.*`: a bare number would lex as a decimal point.
    fn fmt_path_root(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let bare_number = matches!(self, Expr::Lit(e) if literal_form(e) == LiteralForm::Number);
        if bare_number || matches!(self, Expr::Path { .. }) {
            write!(f, "({self})")
        } else {
            self.fmt_at(prec::ATOM, f)
        }
    }
}

/// How a literal element is spelled in PartiQL text.
#[derive(PartialEq, Eq)]
enum LiteralForm {
    /// `NULL`, `TRUE`, `FALSE`.
    Keyword,
    /// `'text'`.
    String,
    /// A bare number in Ion text that the lexer reads back as the same element.
    Number,
    /// `` `ion` ``.
    Backtick,
}

fn literal_form(element: &Element) -> LiteralForm {
    if !element.annotations().is_empty() {
        return LiteralForm::Backtick;
    }
    match element.value() {
        Value::Null(IonType::Null) | Value::Bool(_) => LiteralForm::Keyword,
        Value::String(_) => LiteralForm::String,
        Value::Int(_) => LiteralForm::Number,
        Value::Decimal(_) | Value::Float(_) if is_partiql_number(&element.to_string()) => {
            LiteralForm::Number
        }
        _ => LiteralForm::Backtick,
    }
}

fn is_negative_number(element: &Element) -> bool {
    element.to_string().starts_with('-')
}

/// True when `text` matches the lexer's number syntax `-?d+(.d*)?([eE][+-]?d+)?`.
fn is_partiql_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(at) => (&digits[..at], Some(&digits[at + 1..])),
        None => (digits, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    };
    !whole.is_empty() && all_digits(whole) && all_digits(fraction) && exponent_ok
}

fn fmt_literal(element: &Element, f: &mut Formatter<'_>) -> fmt::Result {
    match (literal_form(element), element.value()) {
        (LiteralForm::Keyword, Value::Bool(true)) => f.write_str("TRUE"),
        (LiteralForm::Keyword, Value::Bool(false)) => f.write_str("FALSE"),
        (LiteralForm::Keyword, _) => f.write_str("NULL"),
        (LiteralForm::String, Value::String(text)) => fmt_quoted(text.text(), '\'', f),
        (LiteralForm::Number, _) => write!(f, "{element}"),
        _ => write!(f, "`{element}`"),
    }
}

/// Writes `text` between `quote`s, doubling embedded quotes.
fn fmt_quoted(text: &str, quote: char, f: &mut Formatter<'_>) -> fmt::Result {
    f.write_char(quote)?;
    for piece in text.split_inclusive(quote) {
        f.write_str(piece)?;
        if piece.ends_with(quote) {
            f.write_char(quote)?;
        }
    }
    f.write_char(quote)
}

/// Writes `items` separated by `, `.
fn fmt_list<T: Display>(items: &[T], f: &mut Formatter<'_>) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

fn fmt_alias(keyword: &str, alias: &Option<Ident>, f: &mut Formatter<'_>) -> fmt::Result {
    match alias {
        Some(alias) => write!(f, " {keyword} {alias}"),
        None => Ok(()),
    }
}

/// True when `name` lexes as one unquoted word (`[A-Za-z_$][A-Za-z0-9_$]*`).
fn is_bare_word(name: &str) -> bool {
    let mut bytes = name.bytes();
    let word_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    matches!(bytes.next(), Some(b) if word_byte(b) && !b.is_ascii_digit()) && bytes.all(word_byte)
}

impl Display for Ident {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // A hand-built unquoted identifier that is not one word (`Ident::new("a b")`) would not
        // read back, so it is printed quoted.
        if self.quoted || !is_bare_word(&self.name) {
            fmt_quoted(&self.name, '"', f)
        } else {
            f.write_str(&self.name)
        }
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(query) => write!(f, "{query}"),
            Statement::CreateTable { table, tags } => {
                write!(f, "CREATE TABLE {table}")?;
                match tags {
                    Some(tags) => write!(f, " WITH (aws_tags = {tags})"),
                    None => Ok(()),
                }
            }
            Statement::DropTable { table } => write!(f, "DROP TABLE {table}"),
            Statement::UndropTable { table_id } => write!(f, "UNDROP TABLE {table_id}"),
            Statement::CreateIndex { table, field } => {
                write!(f, "CREATE INDEX ON {table} ({field})")
            }
            Statement::DropIndex { index_id, table } => {
                write!(f, "DROP INDEX {index_id} ON {table} WITH (purge = true)")
            }
            Statement::Insert { table, source } => match source {
                InsertSource::Value(value) => write!(f, "INSERT INTO {table} VALUE {value}"),
                InsertSource::Expr(value) => write!(f, "INSERT INTO {table} {value}"),
            },
            Statement::Update {
                target,
                ops,
                filter,
            } => {
                write!(f, "UPDATE {target}")?;
                fmt_ops(ops, f)?;
                fmt_where(filter, f)
            }
            Statement::Delete { target, filter } => {
                write!(f, "DELETE FROM {target}")?;
                fmt_where(filter, f)
            }
            Statement::FromDml { from, filter, ops } => {
                f.write_str("FROM ")?;
                fmt_list(from, f)?;
                fmt_where(filter, f)?;
                fmt_ops(ops, f)
            }
            Statement::Exec { procedure, args } => {
                write!(f, "EXEC {procedure}")?;
                if !args.is_empty() {
                    f.write_char(' ')?;
                    fmt_list(args, f)?;
                }
                Ok(())
            }
            Statement::Explain(statement) => write!(f, "EXPLAIN {statement}"),
        }
    }
}

fn fmt_ops(ops: &[DmlOp], f: &mut Formatter<'_>) -> fmt::Result {
    for op in ops {
        write!(f, " {op}")?;
    }
    Ok(())
}

fn fmt_where(filter: &Option<Expr>, f: &mut Formatter<'_>) -> fmt::Result {
    match filter {
        Some(filter) => write!(f, " WHERE {filter}"),
        None => Ok(()),
    }
}

impl Display for DmlTarget {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        fmt_alias("AS", &self.as_alias, f)?;
        fmt_alias("BY", &self.by_alias, f)
    }
}

impl Display for DmlOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            DmlOp::Set(assignments) => {
                f.write_str("SET ")?;
                fmt_list(assignments, f)
            }
            DmlOp::Remove(path) => write!(f, "REMOVE {path}"),
            DmlOp::InsertInto { target, value, at } => {
                write!(f, "INSERT INTO {target} VALUE {value}")?;
                match at {
                    Some(at) => write!(f, " AT {at}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Display for Assignment {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.target.fmt_at(prec::ATOM, f)?;
        write!(f, " = {}", self.value)
    }
}

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "SELECT {} FROM ", self.projection)?;
        fmt_list(&self.from, f)?;
        fmt_where(&self.filter, f)?;
        if !self.group_by.is_empty() {
            f.write_str(" GROUP BY ")?;
            fmt_list(&self.group_by, f)?;
        }
        if let Some(having) = &self.having {
            write!(f, " HAVING {having}")?;
        }
        if !self.order_by.is_empty() {
            f.write_str(" ORDER BY ")?;
            fmt_list(&self.order_by, f)?;
        }
        if let Some(limit) = &self.limit {
            write!(f, " LIMIT {limit}")?;
        }
        if let Some(offset) = &self.offset {
            write!(f, " OFFSET {offset}")?;
        }
        Ok(())
    }
}

impl Display for Projection {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Projection::Star => f.write_char('*'),
            Projection::Value(value) => write!(f, "VALUE {value}"),
            Projection::Items(items) => fmt_list(items, f),
        }
    }
}

impl Display for SelectItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SelectItem::Expr { expr, alias } => {
                write!(f, "{expr}")?;
                fmt_alias("AS", alias, f)
            }
            SelectItem::AllFields(expr) => {
                expr.fmt_path_root_or_path(f)?;
                f.write_str(".*")
            }
        }
    }
}

impl Expr {
    /// Prints the prefix of `prefix.*`: a path may stay bare since steps only extend it.
    fn fmt_path_root_or_path(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if matches!(self, Expr::Path { .. }) {
            write!(f, "{self}")
        } else {
            self.fmt_path_root(f)
        }
    }
}

impl Display for FromSource {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            FromSource::Scan {
                expr,
                as_alias,
                at_alias,
                by_alias,
            } => {
                expr.fmt_at(prec::ATOM, f)?;
                fmt_alias("AS", as_alias, f)?;
                fmt_alias("AT", at_alias, f)?;
                fmt_alias("BY", by_alias, f)
            }
            FromSource::Join {
                kind,
                left,
                right,
                on,
            } => {
                let keyword = match kind {
                    JoinKind::Inner => "INNER JOIN",
                    JoinKind::Cross => "CROSS JOIN",
                };
                write!(f, "{left} {keyword} {right}")?;
                match on {
                    Some(on) => write!(f, " ON {on}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Display for GroupKey {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        fmt_alias("AS", &self.alias, f)
    }
}

impl Display for OrderKey {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        match self.direction {
            Some(SortDirection::Asc) => f.write_str(" ASC")?,
            Some(SortDirection::Desc) => f.write_str(" DESC")?,
            None => {}
        }
        match self.nulls {
            Some(NullsOrder::First) => f.write_str(" NULLS FIRST"),
            Some(NullsOrder::Last) => f.write_str(" NULLS LAST"),
            None => Ok(()),
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Lit(element) => fmt_literal(element, f),
            Expr::Missing => f.write_str("MISSING"),
            Expr::Param(_) => f.write_char('?'),
            Expr::Var(ident) => write!(f, "{ident}"),
            Expr::Path { root, steps } => {
                root.fmt_path_root(f)?;
                steps.iter().try_for_each(|step| write!(f, "{step}"))
            }
            Expr::Struct(fields) => {
                f.write_char('{')?;
                fmt_list(fields, f)?;
                f.write_char('}')
            }
            Expr::List(items) => {
                f.write_char('[')?;
                fmt_list(items, f)?;
                f.write_char(']')
            }
            Expr::Bag(items) => {
                f.write_str("<<")?;
                fmt_list(items, f)?;
                f.write_str(">>")
            }
            Expr::Call(call) => write!(f, "{call}"),
            Expr::CountStar => f.write_str("COUNT(*)"),
            Expr::Subquery(query) => write!(f, "({query})"),
            Expr::Unary { op, expr } => fmt_unary(*op, expr, f),
            Expr::Binary { op, left, right } => {
                let level = op.precedence();
                left.fmt_at(level, f)?;
                write!(f, " {} ", op.as_str())?;
                right.fmt_at(level + 1, f)
            }
            Expr::Cast { expr, ty } => write!(f, "CAST({expr} AS {})", ty.as_str()),
            Expr::Extract { part, from } => write!(f, "EXTRACT({} FROM {from})", part.as_str()),
            Expr::DateAdd {
                part,
                quantity,
                timestamp,
            } => {
                write!(f, "DATE_ADD({}, {quantity}, {timestamp})", part.as_str())
            }
            Expr::DateDiff { part, from, to } => {
                write!(f, "DATE_DIFF({}, {from}, {to})", part.as_str())
            }
            Expr::Trim { spec, chars, from } => fmt_trim(*spec, chars.as_deref(), from, f),
            Expr::Substring {
                expr,
                start,
                length,
            } => fmt_substring(expr, start, length.as_deref(), f),
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => fmt_case(operand.as_deref(), branches, otherwise.as_deref(), f),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => fmt_between(expr, *negated, low, high, f),
            Expr::In { expr, negated, rhs } => fmt_in(expr, *negated, rhs, f),
            Expr::Like {
                expr,
                negated,
                pattern,
                escape,
            } => fmt_like(expr, *negated, pattern, escape.as_deref(), f),
            Expr::Is {
                expr,
                negated,
                test,
            } => {
                expr.fmt_at(prec::COMPARE, f)?;
                let test = match test {
                    IsTest::Null => "NULL",
                    IsTest::Missing => "MISSING",
                };
                write!(f, " IS {}{test}", not(*negated))
            }
        }
    }
}

fn not(negated: bool) -> &'static str {
    if negated {
        "NOT "
    } else {
        ""
    }
}

fn fmt_substring(
    expr: &Expr,
    start: &Expr,
    length: Option<&Expr>,
    f: &mut Formatter<'_>,
) -> fmt::Result {
    write!(f, "SUBSTRING({expr}, {start}")?;
    if let Some(length) = length {
        write!(f, ", {length}")?;
    }
    f.write_char(')')
}

fn fmt_between(
    expr: &Expr,
    negated: bool,
    low: &Expr,
    high: &Expr,
    f: &mut Formatter<'_>,
) -> fmt::Result {
    expr.fmt_at(prec::COMPARE, f)?;
    write!(f, " {}BETWEEN ", not(negated))?;
    low.fmt_at(prec::CONCAT, f)?;
    f.write_str(" AND ")?;
    high.fmt_at(prec::CONCAT, f)
}

fn fmt_in(expr: &Expr, negated: bool, rhs: &InRhs, f: &mut Formatter<'_>) -> fmt::Result {
    expr.fmt_at(prec::COMPARE, f)?;
    write!(f, " {}IN ", not(negated))?;
    match rhs {
        InRhs::List(items) => {
            f.write_char('(')?;
            fmt_list(items, f)?;
            f.write_char(')')
        }
        InRhs::Expr(expr) => expr.fmt_at(prec::CONCAT, f),
    }
}

fn fmt_like(
    expr: &Expr,
    negated: bool,
    pattern: &Expr,
    escape: Option<&Expr>,
    f: &mut Formatter<'_>,
) -> fmt::Result {
    expr.fmt_at(prec::COMPARE, f)?;
    write!(f, " {}LIKE ", not(negated))?;
    pattern.fmt_at(prec::CONCAT, f)?;
    if let Some(escape) = escape {
        f.write_str(" ESCAPE ")?;
        escape.fmt_at(prec::CONCAT, f)?;
    }
    Ok(())
}

fn fmt_unary(op: UnaryOp, operand: &Expr, f: &mut Formatter<'_>) -> fmt::Result {
    match op {
        UnaryOp::Not => {
            f.write_str("NOT ")?;
            operand.fmt_at(prec::NOT, f)
        }
        UnaryOp::Neg | UnaryOp::Plus => {
            let is_number =
                matches!(operand, Expr::Lit(e) if literal_form(e) == LiteralForm::Number);
            if op == UnaryOp::Neg && is_number && !is_negative_number_expr(operand) {
                // `-5` would be folded into a negative literal by the parser.
                return write!(f, "-({operand})");
            }
            f.write_char(if op == UnaryOp::Neg { '-' } else { '+' })?;
            // `--` starts a comment; a space keeps two minus signs apart without adding the
            // nesting levels parentheses would cost when the text is parsed again.
            let operand_text_starts_with_minus = is_negative_number_expr(operand)
                || matches!(
                    operand,
                    Expr::Unary {
                        op: UnaryOp::Neg,
                        ..
                    }
                );
            if op == UnaryOp::Neg && operand_text_starts_with_minus {
                f.write_char(' ')?;
            }
            operand.fmt_at(prec::UNARY, f)
        }
    }
}

fn is_negative_number_expr(expr: &Expr) -> bool {
    matches!(expr, Expr::Lit(e) if literal_form(e) == LiteralForm::Number && is_negative_number(e))
}

fn fmt_trim(
    spec: Option<TrimSpec>,
    chars: Option<&Expr>,
    from: &Expr,
    f: &mut Formatter<'_>,
) -> fmt::Result {
    f.write_str("TRIM(")?;
    if spec.is_none() && chars.is_none() {
        return write!(f, "{from})");
    }
    if let Some(spec) = spec {
        write!(f, "{} ", spec.as_str())?;
    }
    if let Some(chars) = chars {
        write!(f, "{chars} ")?;
    }
    write!(f, "FROM {from})")
}

fn fmt_case(
    operand: Option<&Expr>,
    branches: &[CaseBranch],
    otherwise: Option<&Expr>,
    f: &mut Formatter<'_>,
) -> fmt::Result {
    f.write_str("CASE")?;
    if let Some(operand) = operand {
        write!(f, " {operand}")?;
    }
    for branch in branches {
        write!(f, " WHEN {} THEN {}", branch.when, branch.then)?;
    }
    if let Some(otherwise) = otherwise {
        write!(f, " ELSE {otherwise}")?;
    }
    f.write_str(" END")
}

impl Display for PathStep {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            PathStep::Field(name) => write!(f, ".{name}"),
            PathStep::Index(index) => write!(f, "[{index}]"),
            PathStep::AllElements => f.write_str("[*]"),
            PathStep::AllFields => f.write_str(".*"),
        }
    }
}

impl Display for StructField {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // A bare word before `:` reads back as a string name, so a variable name needs
        // parentheses to stay a variable.
        match &self.name {
            Expr::Var(_) => write!(f, "({}): {}", self.name, self.value),
            name => write!(f, "{name}: {}", self.value),
        }
    }
}

impl Display for Call {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        if self.distinct {
            f.write_str("DISTINCT ")?;
        }
        match self.args.as_slice() {
            // `EXISTS(SELECT …)`: a lone subquery argument needs no extra parentheses.
            [Expr::Subquery(query)] => write!(f, "{query}")?,
            args => fmt_list(args, f)?,
        }
        f.write_char(')')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str) -> Expr {
        Expr::Var(Ident::new(name))
    }

    #[test]
    fn quoted_identifiers_double_embedded_quotes() {
        assert_eq!(Ident::quoted("a\"b").to_string(), "\"a\"\"b\"");
        assert_eq!(Ident::new("Vehicle").to_string(), "Vehicle");
        assert_eq!(
            Ident::new("_ql_committed_T$1").to_string(),
            "_ql_committed_T$1"
        );
        assert_eq!(Ident::new("a b").to_string(), "\"a b\"");
        assert_eq!(Ident::new("1a").to_string(), "\"1a\"");
        assert_eq!(Ident::new("").to_string(), "\"\"");
    }

    #[test]
    fn literals_print_in_partiql_form() {
        let print = |ion: &str| Expr::Lit(Element::read_one(ion).unwrap()).to_string();
        assert_eq!(print("\"it's\""), "'it''s'");
        assert_eq!(print("null"), "NULL");
        assert_eq!(print("true"), "TRUE");
        assert_eq!(print("-42"), "-42");
        assert_eq!(print("90.25"), "90.25");
        // ion-rs prints UTC as +00:00; the value is unchanged.
        assert_eq!(print("2019-06-05T00:00:00Z"), "`2019-06-05T00:00:00+00:00`");
        assert_eq!(print("null.int"), "`null.int`");
        assert_eq!(print("5d2"), "`5d2`");
    }

    #[test]
    fn binary_operators_get_parentheses_only_when_needed() {
        let add = Expr::Binary {
            op: BinaryOp::Add,
            left: Box::new(var("a")),
            right: Box::new(var("b")),
        };
        let mul = Expr::Binary {
            op: BinaryOp::Mul,
            left: Box::new(add.clone()),
            right: Box::new(var("c")),
        };
        assert_eq!(mul.to_string(), "(a + b) * c");
        let sub = Expr::Binary {
            op: BinaryOp::Sub,
            left: Box::new(var("x")),
            right: Box::new(add),
        };
        assert_eq!(sub.to_string(), "x - (a + b)");
    }

    #[test]
    fn unary_minus_never_prints_a_comment() {
        let inner = Expr::Unary {
            op: UnaryOp::Neg,
            expr: Box::new(var("x")),
        };
        let outer = Expr::Unary {
            op: UnaryOp::Neg,
            expr: Box::new(inner),
        };
        assert_eq!(outer.to_string(), "- -x");
        let literal = Expr::Lit(Element::int(5));
        let negated = Expr::Unary {
            op: UnaryOp::Neg,
            expr: Box::new(literal),
        };
        assert_eq!(negated.to_string(), "-(5)");
        let negative = Expr::Lit(Element::int(-5));
        let negated = Expr::Unary {
            op: UnaryOp::Neg,
            expr: Box::new(negative),
        };
        assert_eq!(negated.to_string(), "- -5");
    }

    #[test]
    fn number_recogniser_matches_lexer_syntax() {
        assert!(is_partiql_number("1.50"));
        assert!(is_partiql_number("-1e3"));
        assert!(is_partiql_number("5."));
        assert!(!is_partiql_number("5d2"));
        assert!(!is_partiql_number("nan"));
        assert!(!is_partiql_number("+inf"));
    }
}
