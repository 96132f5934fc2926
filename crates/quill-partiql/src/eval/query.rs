//! SELECT: run the planned sources, then (Quill extensions) group, filter groups, order and
//! page, and project each row.

use std::cmp::Ordering;
use std::rc::Rc;

use ion_rs::{Element, Struct};

use crate::ast::{Expr, NullsOrder, OrderKey, Projection, Query, SelectItem, SortDirection};
use crate::error::{PartiqlError, Result};
use crate::eval::budget::{datum_bytes, Held, Rows};
use crate::eval::expr::{eval, has_aggregate};
use crate::eval::limits::{RESULT_ROWS_MAX, SUBQUERY_DEPTH_MAX};
use crate::eval::{sources, Binding, Ctx, Env, LedgerCatalog, Role, Row};
use crate::plan::{self, default_name, SourcePlan};
use crate::value::{self, Datum};

/// Runs a query (top level or subquery) and returns its rows; MISSING rows are dropped.
pub(crate) fn run_query(
    ctx: &mut Ctx<'_>,
    query: &Query,
    outer: Option<&Env<'_>>,
) -> Result<Vec<Datum>> {
    if ctx.depth >= SUBQUERY_DEPTH_MAX {
        return Err(PartiqlError::Limit {
            limit: "SUBQUERY_DEPTH_MAX",
            max: SUBQUERY_DEPTH_MAX,
            actual: ctx.depth + 1,
        });
    }
    ctx.depth += 1;
    let result = run_query_at_depth(ctx, query, outer);
    ctx.depth -= 1;
    result
}

fn run_query_at_depth(
    ctx: &mut Ctx<'_>,
    query: &Query,
    outer: Option<&Env<'_>>,
) -> Result<Vec<Datum>> {
    let outer_names = outer.map(|env| env.names()).unwrap_or_default();
    let plan = plan_query(ctx, query, &outer_names)?;
    let rows = sources::run_stages(ctx, &plan, outer)?;
    let (mut offset, mut limit) = paging(ctx, query)?;
    // Projected rows and their sort keys stay charged until the query returns (a top-level
    // query's rows are the statement's result).
    let mut held = Held::new(&ctx.budget);
    let mut outputs = if is_grouped(query) {
        grouped_outputs(ctx, query, rows, outer, &mut held)?
    } else if query.order_by.is_empty() {
        // Unordered: the page is known while projecting, so rows outside it are never kept
        // (nor charged).
        let outputs = unordered_page(ctx, query, rows, outer, (offset, limit), &mut held)?;
        (offset, limit) = (0, usize::MAX);
        outputs
    } else {
        let mut outputs = Vec::with_capacity(rows.len());
        // Each source row is released as it is projected, its output charged instead.
        for row in rows.into_releasing_iter() {
            let env = Env::new(&row, outer);
            let output = output_for(ctx, query, &env)?;
            output.charge(&mut held)?;
            outputs.push(output);
        }
        outputs
    };
    if !query.order_by.is_empty() {
        sort_outputs(&mut outputs, &query.order_by);
    }
    let rows: Vec<Datum> = outputs
        .into_iter()
        .map(|output| output.value)
        .filter(|value| !value.is_missing())
        .skip(offset)
        .take(limit)
        .collect();
    if rows.len() > RESULT_ROWS_MAX {
        return Err(PartiqlError::Limit {
            limit: "RESULT_ROWS_MAX",
            max: RESULT_ROWS_MAX,
            actual: rows.len(),
        });
    }
    Ok(rows)
}

/// Projects `rows` in order (releasing each source row as it is projected), keeping only the
/// non-MISSING outputs from `offset` on, and stops once `limit` are kept.
fn unordered_page(
    ctx: &mut Ctx<'_>,
    query: &Query,
    rows: Rows,
    outer: Option<&Env<'_>>,
    (offset, limit): (usize, usize),
    held: &mut Held,
) -> Result<Vec<Output>> {
    let mut outputs = Vec::with_capacity(rows.len().min(limit));
    let mut skipped = 0;
    for row in rows.into_releasing_iter() {
        if outputs.len() >= limit {
            break;
        }
        let env = Env::new(&row, outer);
        let output = output_for(ctx, query, &env)?;
        if output.value.is_missing() {
            continue;
        }
        if skipped < offset {
            skipped += 1;
            continue;
        }
        output.charge(held)?;
        outputs.push(output);
    }
    Ok(outputs)
}

/// Plans a query's sources against the ledger's catalog.
pub(crate) fn plan_query(
    ctx: &mut Ctx<'_>,
    query: &Query,
    outer_names: &[String],
) -> Result<SourcePlan> {
    let mut catalog = LedgerCatalog(ctx.tx()?);
    plan::plan_sources(
        &query.from,
        query.filter.as_ref(),
        outer_names,
        &mut catalog,
    )
}

/// EXPLAIN for a query.
pub(crate) fn explain_query(ctx: &mut Ctx<'_>, query: &Query) -> Result<String> {
    let plan = plan_query(ctx, query, &[])?;
    let mut text = plan::describe(&plan);
    if is_grouped(query) {
        text.push_str("\nAggregate");
    }
    if !query.order_by.is_empty() {
        text.push_str("\nSort");
    }
    Ok(text)
}

fn is_grouped(query: &Query) -> bool {
    let projection_aggregates = match &query.projection {
        Projection::Star => false,
        Projection::Value(expr) => has_aggregate(expr),
        Projection::Items(items) => items.iter().any(|item| match item {
            SelectItem::Expr { expr, .. } | SelectItem::AllFields(expr) => has_aggregate(expr),
        }),
    };
    !query.group_by.is_empty()
        || projection_aggregates
        || query.having.as_ref().is_some_and(has_aggregate)
}

/// A projected row with its sort keys.
struct Output {
    value: Datum,
    keys: Vec<Datum>,
}

impl Output {
    /// Charges the row and its sort keys (held until sorted and paged).
    fn charge(&self, held: &mut Held) -> Result<()> {
        let keys: usize = self.keys.iter().map(datum_bytes).sum();
        held.charge(datum_bytes(&self.value) + keys)
    }
}

fn output_for(ctx: &mut Ctx<'_>, query: &Query, env: &Env<'_>) -> Result<Output> {
    let value = project(ctx, env, &query.projection)?;
    let mut keys = Vec::with_capacity(query.order_by.len());
    if !query.order_by.is_empty() {
        let output = value.as_element().cloned();
        let sort_env = Env {
            output: output.as_ref(),
            ..*env
        };
        for key in &query.order_by {
            keys.push(eval(ctx, &sort_env, &key.expr)?);
        }
    }
    Ok(Output { value, keys })
}

/// Groups rows by the GROUP BY keys (one group of everything when there are none, even with
/// no rows, so `SELECT COUNT(*)` of an empty table is 0), filters groups by HAVING and
/// projects each group.
fn grouped_outputs(
    ctx: &mut Ctx<'_>,
    query: &Query,
    rows: Rows,
    outer: Option<&Env<'_>>,
    held: &mut Held,
) -> Result<Vec<Output>> {
    // The source rows stay charged until every group is projected; their keys too.
    let (rows, _rows_held) = rows.into_rows();
    let mut keys_held = Held::new(&ctx.budget);
    let mut keyed: Vec<(Vec<Datum>, Row)> = Vec::with_capacity(rows.len());
    for row in rows {
        let env = Env::new(&row, outer);
        let mut keys = Vec::with_capacity(query.group_by.len());
        for key in &query.group_by {
            let value = eval(ctx, &env, &key.expr)?;
            keys_held.charge(datum_bytes(&value))?;
            keys.push(value);
        }
        keyed.push((keys, row));
    }
    keyed.sort_by(|a, b| compare_keys(&a.0, &b.0));
    let mut groups: Vec<(Vec<Datum>, Vec<Row>)> = Vec::new();
    for (keys, row) in keyed {
        match groups.last_mut() {
            Some((last, members)) if compare_keys(last, &keys) == Ordering::Equal => {
                members.push(row)
            }
            _ => groups.push((keys, vec![row])),
        }
    }
    if groups.is_empty() && query.group_by.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    let mut outputs = Vec::with_capacity(groups.len());
    for (keys, members) in groups {
        let mut representative: Row = members.first().cloned().unwrap_or_default();
        for (key, value) in query.group_by.iter().zip(keys) {
            if let Some(name) = key
                .alias
                .as_ref()
                .map(|a| a.name.clone())
                .or_else(|| default_name(&key.expr))
            {
                representative.push(Binding {
                    name: Rc::from(name.as_str()),
                    value,
                    role: Role::Ordinal,
                    origin: None,
                });
            }
        }
        let env = Env {
            row: &representative,
            outer,
            group: Some(&members),
            output: None,
        };
        if let Some(having) = &query.having {
            if !eval(ctx, &env, having)?.is_true() {
                continue;
            }
        }
        let output = output_for(ctx, query, &env)?;
        output.charge(held)?;
        outputs.push(output);
    }
    Ok(outputs)
}

fn compare_keys(a: &[Datum], b: &[Datum]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| value::total_cmp(x, y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn sort_outputs(outputs: &mut [Output], order_by: &[OrderKey]) {
    outputs.sort_by(|a, b| {
        for (i, key) in order_by.iter().enumerate() {
            let ordering = compare_sort_key(&a.keys[i], &b.keys[i], key);
            if ordering.is_ne() {
                return ordering;
            }
        }
        Ordering::Equal
    });
}

/// PartiQL's defaults: ASC puts NULL/MISSING first, DESC last, unless NULLS says otherwise.
fn compare_sort_key(a: &Datum, b: &Datum, key: &OrderKey) -> Ordering {
    let descending = key.direction == Some(SortDirection::Desc);
    let nulls_first = match key.nulls {
        Some(NullsOrder::First) => true,
        Some(NullsOrder::Last) => false,
        None => !descending,
    };
    match (a.is_absent(), b.is_absent()) {
        (true, true) => Ordering::Equal,
        (true, false) => {
            if nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (false, true) => {
            if nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (false, false) => {
            let ordering = value::total_cmp(a, b);
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        }
    }
}

fn paging(ctx: &mut Ctx<'_>, query: &Query) -> Result<(usize, usize)> {
    let count = |ctx: &mut Ctx<'_>, expr: Option<&Expr>, what: &str| -> Result<Option<usize>> {
        let Some(expr) = expr else { return Ok(None) };
        let value = eval(ctx, &Env::new(&[], None), expr)?;
        value
            .as_element()
            .and_then(Element::as_i64)
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                PartiqlError::type_error(format!(
                    "{what} must be a non-negative int, got {}",
                    value.type_name()
                ))
            })
    };
    let offset = count(ctx, query.offset.as_ref(), "OFFSET")?.unwrap_or(0);
    let limit = count(ctx, query.limit.as_ref(), "LIMIT")?.unwrap_or(usize::MAX);
    Ok((offset, limit))
}

/// Builds the output value of one row (or group).
fn project(ctx: &mut Ctx<'_>, env: &Env<'_>, projection: &Projection) -> Result<Datum> {
    match projection {
        Projection::Value(expr) => eval(ctx, env, expr),
        Projection::Star => Ok(Datum::Ion(star(env.row))),
        Projection::Items(items) => {
            let mut builder = Struct::builder();
            for (position, item) in items.iter().enumerate() {
                builder = match item {
                    SelectItem::Expr { expr, alias } => {
                        let name = alias
                            .as_ref()
                            .map(|a| a.name.clone())
                            .or_else(|| default_name(expr))
                            .unwrap_or_else(|| format!("_{}", position + 1));
                        match eval(ctx, env, expr)? {
                            Datum::Ion(value) => builder.with_field(name, value),
                            Datum::Missing => builder,
                        }
                    }
                    SelectItem::AllFields(expr) => match eval(ctx, env, expr)?
                        .as_element()
                        .and_then(Element::as_struct)
                    {
                        Some(fields) => builder
                            .with_fields(fields.fields().map(|(n, v)| (n.clone(), v.clone()))),
                        None => builder,
                    },
                };
            }
            Ok(Datum::Ion(builder.build().into()))
        }
    }
}

/// `SELECT *`: one source gives its value; several merge their structs (a non-struct value
/// becomes a field named after its alias). `AT`/`BY` bindings are not data.
fn star(row: &[Binding]) -> Element {
    let sources: Vec<&Binding> = row.iter().filter(|b| b.role == Role::Source).collect();
    if let [single] = sources.as_slice() {
        if let Some(element) = single
            .value
            .as_element()
            .filter(|e| e.as_struct().is_some())
        {
            return element.clone();
        }
    }
    let mut builder = Struct::builder();
    for binding in sources {
        if let Some(element) = binding.value.as_element() {
            builder = match element.as_struct() {
                Some(fields) => {
                    builder.with_fields(fields.fields().map(|(n, v)| (n.clone(), v.clone())))
                }
                None => builder.with_field(binding.name.to_string(), element.clone()),
            };
        }
    }
    builder.build().into()
}
