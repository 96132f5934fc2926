//! Expression evaluation over an [`Env`]. Pure except for subqueries, which run through
//! [`crate::eval::query`] and may read the ledger.

use std::collections::HashSet;

use ion_rs::{Decimal, Element, IonType, Value};

use crate::ast::{
    BinaryOp, Call, CaseBranch, Expr, InRhs, IsTest, PathStep, Projection, SelectItem, UnaryOp,
};
use crate::error::{PartiqlError, Result};
use crate::eval::{query, Ctx, Env};
use crate::functions;
use crate::value::{self, ArithmeticOp, CompareOp, Datum};

/// Aggregate function names (upper case).
pub(crate) const AGGREGATES: &[&str] = &["AVG", "COUNT", "MAX", "MIN", "SUM"];

/// True when `call` is an aggregate.
pub(crate) fn is_aggregate(call: &Call) -> bool {
    AGGREGATES
        .iter()
        .any(|name| call.name.eq_ignore_ascii_case(name))
}

/// True when `expr` contains an aggregate outside subqueries (an aggregate inside a subquery
/// belongs to that subquery).
pub(crate) fn has_aggregate(expr: &Expr) -> bool {
    // `walk` is flat, so first note every node that sits inside a subquery, by address.
    let mut nested: HashSet<*const Expr> = HashSet::new();
    expr.walk(&mut |e| {
        if let Expr::Subquery(query) = e {
            query.for_each_expr(&mut |inner| {
                nested.insert(inner as *const Expr);
            });
        }
    });
    let mut found = false;
    expr.walk(&mut |e| {
        let aggregate = match e {
            Expr::CountStar => true,
            Expr::Call(call) => is_aggregate(call),
            _ => false,
        };
        found |= aggregate && !nested.contains(&(e as *const Expr));
    });
    found
}

/// Evaluates `expr` in `env`.
pub(crate) fn eval(ctx: &mut Ctx<'_>, env: &Env<'_>, expr: &Expr) -> Result<Datum> {
    match expr {
        Expr::Lit(element) => Ok(Datum::Ion(element.clone())),
        Expr::Missing => Ok(Datum::Missing),
        Expr::Param(index) => ctx
            .params
            .get(*index as usize)
            .cloned()
            .map(Datum::Ion)
            .ok_or(PartiqlError::ParameterCount {
                expected: *index as usize + 1,
                actual: ctx.params.len(),
            }),
        Expr::Var(ident) => Ok(env.lookup(&ident.name)),
        Expr::Path { root, steps } => {
            let root = eval(ctx, env, root)?;
            eval_path(ctx, env, root, steps)
        }
        Expr::Struct(fields) => {
            let mut builder = ion_rs::Struct::builder();
            for field in fields {
                let name = eval(ctx, env, &field.name)?;
                let Some(name) = name.as_text().map(str::to_string) else {
                    return Err(PartiqlError::type_error(format!(
                        "struct field names must be strings, got {}",
                        name.type_name()
                    )));
                };
                if let Datum::Ion(value) = eval(ctx, env, &field.value)? {
                    builder = builder.with_field(name, value);
                }
            }
            Ok(Datum::Ion(builder.build().into()))
        }
        Expr::List(items) | Expr::Bag(items) => {
            let mut elements = Vec::with_capacity(items.len());
            for item in items {
                if let Datum::Ion(element) = eval(ctx, env, item)? {
                    elements.push(element);
                }
            }
            Ok(Datum::Ion(ion_rs::List::from(elements).into()))
        }
        Expr::Call(call) => eval_call(ctx, env, call),
        Expr::CountStar => match env.group {
            Some(rows) => Ok(Datum::int(rows.len() as i64)),
            None => Err(PartiqlError::Semantic(
                "COUNT(*) is only valid in a SELECT list or HAVING".to_string(),
            )),
        },
        Expr::Subquery(query) => {
            let rows = query::run_query(ctx, query, Some(env))?;
            let elements: Vec<Element> = rows
                .into_iter()
                .filter_map(|d| d.as_element().cloned())
                .collect();
            Ok(Datum::Ion(ion_rs::List::from(elements).into()))
        }
        _ => eval_special(ctx, env, expr),
    }
}

/// The special-syntax functions, then operators.
fn eval_special(ctx: &mut Ctx<'_>, env: &Env<'_>, expr: &Expr) -> Result<Datum> {
    match expr {
        Expr::Cast { expr, ty } => {
            let value = eval(ctx, env, expr)?;
            let target = if ty.as_str() == "BAG" {
                "LIST"
            } else {
                ty.as_str()
            };
            functions::cast(&value, target)
        }
        Expr::Extract { part, from } => {
            let args = vec![Datum::string(part.as_str()), eval(ctx, env, from)?];
            functions::call("EXTRACT", &args, &ctx.functions)
        }
        Expr::DateAdd {
            part,
            quantity,
            timestamp,
        } => {
            let args = vec![
                Datum::string(part.as_str()),
                eval(ctx, env, quantity)?,
                eval(ctx, env, timestamp)?,
            ];
            functions::call("DATE_ADD", &args, &ctx.functions)
        }
        Expr::DateDiff { part, from, to } => {
            let args = vec![
                Datum::string(part.as_str()),
                eval(ctx, env, from)?,
                eval(ctx, env, to)?,
            ];
            functions::call("DATE_DIFF", &args, &ctx.functions)
        }
        Expr::Trim { spec, chars, from } => {
            let mode = Datum::string(spec.map(|s| s.as_str()).unwrap_or("BOTH"));
            let characters = match chars {
                Some(chars) => eval(ctx, env, chars)?,
                None => Datum::string(" "),
            };
            let args = vec![mode, characters, eval(ctx, env, from)?];
            functions::call("TRIM", &args, &ctx.functions)
        }
        Expr::Substring {
            expr,
            start,
            length,
        } => {
            let mut args = vec![eval(ctx, env, expr)?, eval(ctx, env, start)?];
            if let Some(length) = length {
                args.push(eval(ctx, env, length)?);
            }
            functions::call("SUBSTRING", &args, &ctx.functions)
        }
        Expr::Case {
            operand,
            branches,
            otherwise,
        } => eval_case(ctx, env, operand.as_deref(), branches, otherwise.as_deref()),
        _ => eval_operator(ctx, env, expr),
    }
}

/// Prefix, infix and predicate operators.
fn eval_operator(ctx: &mut Ctx<'_>, env: &Env<'_>, expr: &Expr) -> Result<Datum> {
    let negate_if = |negated: bool, result: Datum| {
        if negated {
            value::not(&result)
        } else {
            Ok(result)
        }
    };
    match expr {
        Expr::Unary { op, expr } => {
            let value = eval(ctx, env, expr)?;
            match op {
                UnaryOp::Neg => value::arithmetic(ArithmeticOp::Subtract, &Datum::int(0), &value),
                UnaryOp::Plus => value::arithmetic(ArithmeticOp::Add, &Datum::int(0), &value),
                UnaryOp::Not => value::not(&value),
            }
        }
        Expr::Binary { op, left, right } => eval_binary(ctx, env, *op, left, right),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let value = eval(ctx, env, expr)?;
            let above = value::compare(CompareOp::GreaterOrEqual, &value, &eval(ctx, env, low)?);
            let below = value::compare(CompareOp::LessOrEqual, &value, &eval(ctx, env, high)?);
            negate_if(*negated, value::and(&above, &below)?)
        }
        Expr::In { expr, negated, rhs } => negate_if(*negated, eval_in(ctx, env, expr, rhs)?),
        Expr::Like {
            expr,
            negated,
            pattern,
            escape,
        } => negate_if(
            *negated,
            eval_like(ctx, env, expr, pattern, escape.as_deref())?,
        ),
        Expr::Is {
            expr,
            negated,
            test,
        } => {
            let value = eval(ctx, env, expr)?;
            let result = match test {
                IsTest::Null => value.is_absent(),
                IsTest::Missing => value.is_missing(),
            };
            Ok(Datum::bool(result != *negated))
        }
        _ => Err(PartiqlError::Semantic(format!("cannot evaluate {expr}"))),
    }
}

fn eval_binary(
    ctx: &mut Ctx<'_>,
    env: &Env<'_>,
    op: BinaryOp,
    left: &Expr,
    right: &Expr,
) -> Result<Datum> {
    let a = eval(ctx, env, left)?;
    // Short-circuit: a false AND / true OR decides without the right side.
    match op {
        BinaryOp::And if a.as_element().and_then(Element::as_bool) == Some(false) => {
            return Ok(Datum::bool(false))
        }
        BinaryOp::Or if a.is_true() => return Ok(Datum::bool(true)),
        _ => {}
    }
    let b = eval(ctx, env, right)?;
    let arithmetic = |op| value::arithmetic(op, &a, &b);
    let compare = |op| Ok(value::compare(op, &a, &b));
    match op {
        BinaryOp::Add => arithmetic(ArithmeticOp::Add),
        BinaryOp::Sub => arithmetic(ArithmeticOp::Subtract),
        BinaryOp::Mul => arithmetic(ArithmeticOp::Multiply),
        BinaryOp::Div => arithmetic(ArithmeticOp::Divide),
        BinaryOp::Mod => arithmetic(ArithmeticOp::Modulo),
        BinaryOp::Concat => value::concat(&a, &b),
        BinaryOp::Eq => compare(CompareOp::Equal),
        BinaryOp::Ne => compare(CompareOp::NotEqual),
        BinaryOp::Lt => compare(CompareOp::Less),
        BinaryOp::Le => compare(CompareOp::LessOrEqual),
        BinaryOp::Gt => compare(CompareOp::Greater),
        BinaryOp::Ge => compare(CompareOp::GreaterOrEqual),
        BinaryOp::And => value::and(&a, &b),
        BinaryOp::Or => value::or(&a, &b),
    }
}

fn eval_case(
    ctx: &mut Ctx<'_>,
    env: &Env<'_>,
    operand: Option<&Expr>,
    branches: &[CaseBranch],
    otherwise: Option<&Expr>,
) -> Result<Datum> {
    let operand = match operand {
        Some(expr) => Some(eval(ctx, env, expr)?),
        None => None,
    };
    for branch in branches {
        let when = eval(ctx, env, &branch.when)?;
        let matched = match &operand {
            Some(value) => value::compare(CompareOp::Equal, value, &when).is_true(),
            None => when.is_true(),
        };
        if matched {
            return eval(ctx, env, &branch.then);
        }
    }
    match otherwise {
        Some(expr) => eval(ctx, env, expr),
        None => Ok(Datum::null()),
    }
}

fn eval_in(ctx: &mut Ctx<'_>, env: &Env<'_>, expr: &Expr, rhs: &InRhs) -> Result<Datum> {
    let value = eval(ctx, env, expr)?;
    let candidates: Vec<Datum> = match rhs {
        InRhs::List(items) => {
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                values.push(eval(ctx, env, item)?);
            }
            values
        }
        InRhs::Expr(collection) => match eval(ctx, env, collection)? {
            Datum::Ion(element) => match element.value() {
                Value::List(s) if is_single_column(collection) => {
                    s.iter().map(single_column_value).collect()
                }
                Value::List(s) | Value::SExp(s) => s.iter().cloned().map(Datum::Ion).collect(),
                _ if element.is_null() => return Ok(Datum::null()),
                _ => {
                    return Err(PartiqlError::type_error(format!(
                        "IN expects a collection, got {}",
                        element.ion_type()
                    )))
                }
            },
            Datum::Missing => return Ok(Datum::Missing),
        },
    };
    if value.is_absent() {
        return Ok(if value.is_missing() {
            Datum::Missing
        } else {
            Datum::null()
        });
    }
    let mut unknown = false;
    for candidate in &candidates {
        let equal = value::compare(CompareOp::Equal, &value, candidate);
        if equal.is_true() {
            return Ok(Datum::bool(true));
        }
        unknown |= equal.is_absent();
    }
    Ok(if unknown {
        Datum::null()
    } else {
        Datum::bool(false)
    })
}

/// `(SELECT e FROM …)` with one projected item: PartiQL compares its rows' single values
/// (SQL's coercion), so `x IN (SELECT r.VIN FROM …)` works like `SELECT VALUE`.
fn is_single_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Subquery(query)
        if matches!(&query.projection, Projection::Items(items) if matches!(items.as_slice(), [SelectItem::Expr { .. }])))
}

fn single_column_value(row: &Element) -> Datum {
    match row.as_struct().map(|s| s.fields().collect::<Vec<_>>()) {
        Some(fields) if fields.len() == 1 => Datum::Ion(fields[0].1.clone()),
        _ => Datum::Ion(row.clone()),
    }
}

fn eval_like(
    ctx: &mut Ctx<'_>,
    env: &Env<'_>,
    expr: &Expr,
    pattern: &Expr,
    escape: Option<&Expr>,
) -> Result<Datum> {
    let value = eval(ctx, env, expr)?;
    let pattern = eval(ctx, env, pattern)?;
    let escape = match escape {
        Some(e) => Some(eval(ctx, env, e)?),
        None => None,
    };
    if value.is_missing() || pattern.is_missing() {
        return Ok(Datum::Missing);
    }
    if value.is_absent() || pattern.is_absent() || escape.as_ref().is_some_and(Datum::is_absent) {
        return Ok(Datum::null());
    }
    let (Some(text), Some(pattern_text)) = (value.as_text(), pattern.as_text()) else {
        return Err(PartiqlError::type_error(format!(
            "LIKE expects strings, got {} LIKE {}",
            value.type_name(),
            pattern.type_name()
        )));
    };
    let escape_char = match escape
        .as_ref()
        .map(|e| e.as_text().map(|t| t.chars().collect::<Vec<char>>()))
    {
        None => None,
        Some(Some(chars)) if chars.len() == 1 => Some(chars[0]),
        Some(_) => {
            return Err(PartiqlError::type_error(
                "LIKE ESCAPE must be a single character",
            ))
        }
    };
    Ok(Datum::bool(value::like(text, pattern_text, escape_char)?))
}

/// Follows path steps from `current`. `[*]` and `.*` fan out into a list.
fn eval_path(
    ctx: &mut Ctx<'_>,
    env: &Env<'_>,
    current: Datum,
    steps: &[PathStep],
) -> Result<Datum> {
    let mut values = vec![current];
    let mut fanned_out = false;
    for step in steps {
        let key = match step {
            PathStep::Index(expr) => Some(eval(ctx, env, expr)?),
            _ => None,
        };
        let mut next = Vec::with_capacity(values.len());
        for value in &values {
            match step {
                PathStep::Field(ident) => next.push(field_of(value, &ident.name)),
                PathStep::Index(_) => {
                    next.push(index_of(value, key.as_ref().unwrap_or(&Datum::Missing)))
                }
                PathStep::AllElements | PathStep::AllFields => {
                    fanned_out = true;
                    next.extend(children(value, matches!(step, PathStep::AllFields)));
                }
            }
        }
        values = next;
    }
    if fanned_out {
        let elements: Vec<Element> = values
            .into_iter()
            .filter_map(|d| d.as_element().cloned())
            .collect();
        return Ok(Datum::Ion(ion_rs::List::from(elements).into()));
    }
    Ok(values.pop().unwrap_or(Datum::Missing))
}

/// `value.name`: the first field with that name, MISSING if absent or not a struct.
pub(crate) fn field_of(value: &Datum, name: &str) -> Datum {
    value
        .as_element()
        .and_then(Element::as_struct)
        .and_then(|s| s.get(name))
        .cloned()
        .map_or(Datum::Missing, Datum::Ion)
}

fn index_of(value: &Datum, key: &Datum) -> Datum {
    let Some(element) = value.as_element() else {
        return Datum::Missing;
    };
    if let Some(name) = key.as_text() {
        return field_of(value, name);
    }
    let Some(index) = key.as_element().and_then(Element::as_i64) else {
        return Datum::Missing;
    };
    let Ok(index) = usize::try_from(index) else {
        return Datum::Missing;
    };
    match element.value() {
        Value::List(s) | Value::SExp(s) => s.get(index).cloned().map_or(Datum::Missing, Datum::Ion),
        _ => Datum::Missing,
    }
}

fn children(value: &Datum, fields: bool) -> Vec<Datum> {
    let Some(element) = value.as_element() else {
        return Vec::new();
    };
    match element.value() {
        Value::List(s) | Value::SExp(s) if !fields => s.iter().cloned().map(Datum::Ion).collect(),
        Value::Struct(s) if fields => s.fields().map(|(_, v)| Datum::Ion(v.clone())).collect(),
        _ => Vec::new(),
    }
}

fn eval_call(ctx: &mut Ctx<'_>, env: &Env<'_>, call: &Call) -> Result<Datum> {
    let name = call.name.to_ascii_uppercase();
    if is_aggregate(call) {
        return match env.group {
            Some(rows) => aggregate(ctx, env, &name, call, rows),
            None => Err(PartiqlError::Semantic(format!(
                "{name} is only valid in a SELECT list or HAVING"
            ))),
        };
    }
    if name == "HISTORY" {
        return Err(PartiqlError::Semantic(
            "history() is only valid as a FROM source".to_string(),
        ));
    }
    let mut args = Vec::with_capacity(call.args.len());
    for arg in &call.args {
        args.push(eval(ctx, env, arg)?);
    }
    functions::call(&name, &args, &ctx.functions)
}

/// Folds an aggregate over the rows of a group. Absent values are skipped (SQL semantics).
fn aggregate(
    ctx: &mut Ctx<'_>,
    env: &Env<'_>,
    name: &str,
    call: &Call,
    rows: &[crate::eval::Row],
) -> Result<Datum> {
    let [arg] = call.args.as_slice() else {
        return Err(PartiqlError::type_error(format!(
            "{name} takes 1 argument, got {}",
            call.args.len()
        )));
    };
    let mut values: Vec<Datum> = Vec::with_capacity(rows.len());
    for row in rows {
        let row_env = Env {
            row,
            outer: env.outer,
            group: None,
            output: None,
        };
        let value = eval(ctx, &row_env, arg)?;
        if value.is_absent() {
            continue;
        }
        if call.distinct
            && values
                .iter()
                .any(|v| value::compare(CompareOp::Equal, v, &value).is_true())
        {
            continue;
        }
        values.push(value);
    }
    match name {
        "COUNT" => Ok(Datum::int(values.len() as i64)),
        "MIN" => Ok(values
            .into_iter()
            .min_by(value::total_cmp)
            .unwrap_or_else(Datum::null)),
        "MAX" => Ok(values
            .into_iter()
            .max_by(value::total_cmp)
            .unwrap_or_else(Datum::null)),
        "SUM" => sum(name, &values),
        _ => average(&values),
    }
}

fn sum(name: &str, values: &[Datum]) -> Result<Datum> {
    let mut total: Option<Datum> = None;
    for value in values {
        let is_number = value.as_element().is_some_and(|e| {
            matches!(
                e.ion_type(),
                IonType::Int | IonType::Decimal | IonType::Float
            )
        });
        if !is_number {
            return Err(PartiqlError::type_error(format!(
                "{name}: argument must be a number, got {}",
                value.type_name()
            )));
        }
        total = Some(match total {
            None => value.clone(),
            Some(sum) => value::arithmetic(ArithmeticOp::Add, &sum, value)?,
        });
    }
    Ok(total.unwrap_or_else(Datum::null))
}

/// AVG: exact decimal mean of ints and decimals (float if any float is involved).
fn average(values: &[Datum]) -> Result<Datum> {
    let total = sum("AVG", values)?;
    if values.is_empty() {
        return Ok(total);
    }
    let total = match total.as_element().map(Element::value) {
        Some(Value::Int(int)) => Datum::Ion(Element::decimal(Decimal::from(int.clone()))),
        _ => total,
    };
    value::arithmetic(
        ArithmeticOp::Divide,
        &total,
        &Datum::Ion(Element::decimal(Decimal::from(values.len() as i64))),
    )
}
