//! Read-only traversal of the syntax tree, used to count parameters.
//!
//! Recursion depth equals tree depth, which the parser bounds (`PARSE_DEPTH_MAX`), so walking
//! a parsed tree cannot overflow the stack.

use super::*;

impl Statement {
    /// How many `?` parameters the statement has (they are numbered `0..count`), so the
    /// evaluator can check the driver sent exactly that many values.
    pub fn parameter_count(&self) -> usize {
        let mut count = 0usize;
        self.for_each_expr(&mut |expr| {
            if let Expr::Param(index) = expr {
                count = count.max(*index as usize + 1);
            }
        });
        count
    }

    /// Calls `visit` on every expression in the statement, parents before children.
    pub fn for_each_expr(&self, visit: &mut dyn FnMut(&Expr)) {
        match self {
            Statement::Select(query) => query.for_each_expr(visit),
            Statement::CreateTable { tags, .. } => tags.iter().for_each(|e| e.walk(visit)),
            Statement::DropTable { .. }
            | Statement::UndropTable { .. }
            | Statement::CreateIndex { .. }
            | Statement::DropIndex { .. } => {}
            Statement::Insert { source, .. } => match source {
                InsertSource::Value(e) | InsertSource::Expr(e) => e.walk(visit),
            },
            Statement::Update { ops, filter, .. } => {
                ops.iter().for_each(|op| op.for_each_expr(visit));
                filter.iter().for_each(|e| e.walk(visit));
            }
            Statement::Delete { filter, .. } => filter.iter().for_each(|e| e.walk(visit)),
            Statement::FromDml { from, filter, ops } => {
                from.iter().for_each(|source| source.for_each_expr(visit));
                filter.iter().for_each(|e| e.walk(visit));
                ops.iter().for_each(|op| op.for_each_expr(visit));
            }
            Statement::Exec { args, .. } => args.iter().for_each(|e| e.walk(visit)),
            Statement::Explain(statement) => statement.for_each_expr(visit),
        }
    }
}

impl DmlOp {
    fn for_each_expr(&self, visit: &mut dyn FnMut(&Expr)) {
        match self {
            DmlOp::Set(assignments) => assignments.iter().for_each(|a| {
                a.target.walk(visit);
                a.value.walk(visit);
            }),
            DmlOp::Remove(path) => path.walk(visit),
            DmlOp::InsertInto { target, value, at } => {
                target.walk(visit);
                value.walk(visit);
                at.iter().for_each(|e| e.walk(visit));
            }
        }
    }
}

impl Query {
    /// Calls `visit` on every expression of the query in text order, parents first.
    pub fn for_each_expr(&self, visit: &mut dyn FnMut(&Expr)) {
        match &self.projection {
            Projection::Star => {}
            Projection::Value(e) => e.walk(visit),
            Projection::Items(items) => items.iter().for_each(|item| match item {
                SelectItem::Expr { expr, .. } | SelectItem::AllFields(expr) => expr.walk(visit),
            }),
        }
        self.from
            .iter()
            .for_each(|source| source.for_each_expr(visit));
        self.filter.iter().for_each(|e| e.walk(visit));
        self.group_by.iter().for_each(|key| key.expr.walk(visit));
        self.having.iter().for_each(|e| e.walk(visit));
        self.order_by.iter().for_each(|key| key.expr.walk(visit));
        self.limit.iter().for_each(|e| e.walk(visit));
        self.offset.iter().for_each(|e| e.walk(visit));
    }
}

impl FromSource {
    fn for_each_expr(&self, visit: &mut dyn FnMut(&Expr)) {
        match self {
            FromSource::Scan { expr, .. } => expr.walk(visit),
            FromSource::Join {
                left, right, on, ..
            } => {
                left.for_each_expr(visit);
                right.for_each_expr(visit);
                on.iter().for_each(|e| e.walk(visit));
            }
        }
    }
}

impl Expr {
    /// Calls `visit` on this expression and then on every expression nested in it (including
    /// inside subqueries), parents before children, in text order.
    pub fn walk(&self, visit: &mut dyn FnMut(&Expr)) {
        visit(self);
        match self {
            Expr::Lit(_) | Expr::Missing | Expr::Param(_) | Expr::Var(_) | Expr::CountStar => {}
            Expr::Path { root, steps } => {
                root.walk(visit);
                steps.iter().for_each(|step| match step {
                    PathStep::Index(e) => e.walk(visit),
                    PathStep::Field(_) | PathStep::AllElements | PathStep::AllFields => {}
                });
            }
            Expr::Struct(fields) => fields.iter().for_each(|field| {
                field.name.walk(visit);
                field.value.walk(visit);
            }),
            Expr::List(items) | Expr::Bag(items) => items.iter().for_each(|e| e.walk(visit)),
            Expr::Call(call) => call.args.iter().for_each(|e| e.walk(visit)),
            Expr::Subquery(query) => query.for_each_expr(visit),
            _ => self.walk_operands(visit),
        }
    }

    /// The operator and special-function variants of [`Expr::walk`].
    fn walk_operands(&self, visit: &mut dyn FnMut(&Expr)) {
        let mut each = |exprs: &[Option<&Expr>]| exprs.iter().flatten().for_each(|e| e.walk(visit));
        match self {
            Expr::Cast { expr, .. } | Expr::Unary { expr, .. } => each(&[Some(expr)]),
            Expr::Extract { from, .. } => each(&[Some(from)]),
            Expr::DateAdd {
                quantity,
                timestamp,
                ..
            } => each(&[Some(quantity), Some(timestamp)]),
            Expr::DateDiff { from, to, .. } => each(&[Some(from), Some(to)]),
            Expr::Trim { chars, from, .. } => each(&[chars.as_deref(), Some(from)]),
            Expr::Substring {
                expr,
                start,
                length,
            } => each(&[Some(expr), Some(start), length.as_deref()]),
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => {
                each(&[operand.as_deref()]);
                for branch in branches {
                    each(&[Some(&branch.when), Some(&branch.then)]);
                }
                each(&[otherwise.as_deref()]);
            }
            Expr::Binary { left, right, .. } => each(&[Some(left), Some(right)]),
            Expr::Between {
                expr, low, high, ..
            } => each(&[Some(expr), Some(low), Some(high)]),
            Expr::In { expr, rhs, .. } => {
                each(&[Some(expr)]);
                match rhs {
                    InRhs::List(items) => items.iter().for_each(|e| each(&[Some(e)])),
                    InRhs::Expr(e) => each(&[Some(e)]),
                }
            }
            Expr::Like {
                expr,
                pattern,
                escape,
                ..
            } => each(&[Some(expr), Some(pattern), escape.as_deref()]),
            Expr::Is { expr, .. } => each(&[Some(expr)]),
            // The leaf and collection variants are handled by `walk` itself.
            Expr::Lit(_)
            | Expr::Missing
            | Expr::Param(_)
            | Expr::Var(_)
            | Expr::CountStar
            | Expr::Path { .. }
            | Expr::Struct(_)
            | Expr::List(_)
            | Expr::Bag(_)
            | Expr::Call(_)
            | Expr::Subquery(_) => {}
        }
    }
}
