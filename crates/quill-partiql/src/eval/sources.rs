//! Fetching the rows of each planned stage and joining them in nested-loop order.
//!
//! Table scans test the stage's filters on a partial struct holding only the top-level fields
//! they read (decoded lazily from the stored Ion bytes) and decode the whole document only for
//! rows that pass: most rejected documents are never materialised.

use std::rc::Rc;

use ion_rs::{Element, IonType, Struct, Timestamp, Value};
use quill_ledger::{DocumentRef, Revision, TableInfo, TableStatus};

use crate::ast::{Expr, PathStep};
use crate::error::{PartiqlError, Result};
use crate::eval::budget::{Held, Rows};
use crate::eval::expr::eval;
use crate::eval::{Binding, Ctx, Env, Origin, PathKey, Role, Row};
use crate::plan::{Access, Source, SourcePlan, Stage};
use crate::value::Datum;

/// Produces every row of the plan's stages that passes their filters. Each stage's rows are
/// charged to the statement's budget while held (a stage's input until its output is
/// complete, so a nested-loop join holds both).
pub(crate) fn run_stages(
    ctx: &mut Ctx<'_>,
    plan: &SourcePlan,
    outer: Option<&Env<'_>>,
) -> Result<Rows> {
    let mut rows = Rows::new(&ctx.budget);
    rows.push(Vec::new())?;
    for stage in &plan.stages {
        let mut next = Rows::new(&ctx.budget);
        for row in rows.iter() {
            fetch_stage(ctx, stage, row, outer, &mut next)?;
        }
        rows = next;
    }
    Ok(rows)
}

fn fetch_stage(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    row: &Row,
    outer: Option<&Env<'_>>,
    out: &mut Rows,
) -> Result<()> {
    match &stage.source {
        Source::Table(table) => fetch_table(ctx, stage, table, row, outer, out),
        Source::Committed(table) => {
            let ids = lookup_ids(ctx, stage, row, outer)?;
            let revisions = match ids {
                Some(ids) => {
                    let mut all = Vec::new();
                    for id in ids {
                        all.extend(ctx.tx()?.committed(table, Some(&id))?);
                    }
                    all
                }
                None => ctx.tx()?.committed(table, None)?,
            };
            let _held = hold_revisions(ctx, &revisions)?;
            push_revisions(ctx, stage, row, outer, &revisions, out)
        }
        Source::History { target, start, end } => {
            let revisions =
                fetch_history(ctx, stage, row, outer, target, start.as_ref(), end.as_ref())?;
            let _held = hold_revisions(ctx, &revisions)?;
            push_revisions(ctx, stage, row, outer, &revisions, out)
        }
        Source::Catalog => {
            let tables = ctx.tx()?.tables()?;
            for table in &tables {
                let bindings = vec![source_binding(
                    stage,
                    Datum::Ion(catalog_element(table)),
                    None,
                )];
                push_if_passes(ctx, stage, row, bindings, outer, out)?;
            }
            Ok(())
        }
        Source::Value(expr) => fetch_value(ctx, stage, expr, row, outer, out),
    }
}

/// Charges fetched revisions to the budget while they are turned into rows.
fn hold_revisions(ctx: &Ctx<'_>, revisions: &[Revision]) -> Result<Held> {
    let mut held = Held::new(&ctx.budget);
    let bytes = revisions
        .iter()
        .map(|revision| {
            std::mem::size_of::<Revision>()
                + revision
                    .data
                    .as_ref()
                    .map_or(0, crate::value::ion_binary_size_estimate)
        })
        .sum();
    held.charge(bytes)?;
    Ok(held)
}

fn source_binding(stage: &Stage, value: Datum, origin: Option<Rc<Origin>>) -> Binding {
    Binding {
        name: Rc::from(stage.alias.as_str()),
        value,
        role: Role::Source,
        origin,
    }
}

fn document_bindings(stage: &Stage, table: &str, id: &str, data: Element) -> Vec<Binding> {
    let origin = Origin {
        table: Rc::from(table),
        document_id: Rc::from(id),
        path: Vec::new(),
    };
    let mut bindings = vec![source_binding(
        stage,
        Datum::Ion(data),
        Some(Rc::new(origin)),
    )];
    if let Some(by) = &stage.by_alias {
        bindings.push(Binding {
            name: Rc::from(by.as_str()),
            value: Datum::string(id),
            role: Role::DocumentId,
            origin: None,
        });
    }
    bindings
}

/// Appends `bindings` to `row` and keeps the result if every filter of the stage is true.
fn push_if_passes(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    row: &Row,
    bindings: Vec<Binding>,
    outer: Option<&Env<'_>>,
    out: &mut Rows,
) -> Result<()> {
    let mut candidate = row.clone();
    candidate.extend(bindings);
    if passes(ctx, stage, &candidate, outer)? {
        out.push(candidate)?;
    }
    Ok(())
}

fn passes(ctx: &mut Ctx<'_>, stage: &Stage, row: &Row, outer: Option<&Env<'_>>) -> Result<bool> {
    let env = Env::new(row, outer);
    for filter in &stage.filters {
        if !eval(ctx, &env, filter)?.is_true() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn eval_keys(
    ctx: &mut Ctx<'_>,
    keys: &[Expr],
    row: &Row,
    outer: Option<&Env<'_>>,
) -> Result<Vec<Datum>> {
    let env = Env::new(row, outer);
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        values.push(eval(ctx, &env, key)?);
    }
    Ok(values)
}

/// The ids an id-lookup stage asks for (`None` when the stage scans). Non-text keys can never
/// equal an id, so they are dropped.
fn lookup_ids(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    row: &Row,
    outer: Option<&Env<'_>>,
) -> Result<Option<Vec<String>>> {
    let Access::IdLookup { keys } = &stage.access else {
        return Ok(None);
    };
    let mut ids: Vec<String> = Vec::new();
    for key in eval_keys(ctx, keys, row, outer)? {
        if let Some(text) = key.as_text() {
            if !ids.iter().any(|id| id == text) {
                ids.push(text.to_string());
            }
        }
    }
    Ok(Some(ids))
}

fn fetch_table(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    table: &str,
    row: &Row,
    outer: Option<&Env<'_>>,
    out: &mut Rows,
) -> Result<()> {
    let documents = match &stage.access {
        Access::Scan => return scan_table(ctx, stage, table, row, outer, out),
        Access::IdLookup { .. } => {
            let mut documents = Vec::new();
            for id in lookup_ids(ctx, stage, row, outer)?.unwrap_or_default() {
                documents.extend(ctx.tx()?.get(table, &id)?);
            }
            documents
        }
        Access::IndexLookup { field, keys } => {
            let mut documents: Vec<quill_ledger::Document> = Vec::new();
            for key in eval_keys(ctx, keys, row, outer)? {
                let Datum::Ion(key) = key else { continue };
                if key.is_null() {
                    continue;
                }
                match ctx.tx()?.index_lookup(table, field, &key)? {
                    Some(found) => {
                        for document in found {
                            if !documents_contains(&documents, &document.id) {
                                documents.push(document);
                            }
                        }
                    }
                    // The index disappeared since planning (dropped in this transaction): scan.
                    None => return scan_table(ctx, stage, table, row, outer, out),
                }
            }
            documents
        }
    };
    for document in documents {
        let bindings = document_bindings(stage, table, &document.id, document.data);
        push_if_passes(ctx, stage, row, bindings, outer, out)?;
    }
    Ok(())
}

fn documents_contains(documents: &[quill_ledger::Document], id: &str) -> bool {
    documents.iter().any(|d| d.id == id)
}

fn contains_subquery(expr: &Expr) -> bool {
    let mut found = false;
    expr.walk(&mut |e| found |= matches!(e, Expr::Subquery(_)));
    found
}

/// Full scan. Filters without subqueries run inside the visitor (on lazily decoded fields
/// when the planner allowed it); filters with subqueries need the transaction, so those
/// documents are collected first and filtered after the scan.
fn scan_table(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    table: &str,
    row: &Row,
    outer: Option<&Env<'_>>,
    out: &mut Rows,
) -> Result<()> {
    let needs_tx = stage.filters.iter().any(contains_subquery);
    let scan = LazyScan::prepare(ctx, stage, row, outer)?;
    let mut deferred: Vec<(String, Element)> = Vec::new();
    let mut deferred_held = Held::new(&ctx.budget);
    let mut failure: Option<PartiqlError> = None;
    {
        let (tx, mut inner) = ctx.split()?;
        tx.scan(table, &mut |document: DocumentRef<'_>| {
            let step = if needs_tx {
                deferred_held
                    .charge(document.id.len() + document.ion.len())
                    .and_then(|()| document.decode().map_err(PartiqlError::from))
                    .map(|data| deferred.push((document.id.to_string(), data)))
            } else {
                visit_document(
                    &mut inner,
                    stage,
                    table,
                    row,
                    outer,
                    &document,
                    scan.as_ref(),
                    out,
                )
            };
            match step {
                Ok(()) => Ok(true),
                Err(error) => {
                    failure = Some(error);
                    Ok(false)
                }
            }
        })?;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    for (id, data) in deferred {
        let bindings = document_bindings(stage, table, &id, data);
        push_if_passes(ctx, stage, row, bindings, outer, out)?;
    }
    Ok(())
}

/// What a lazily filtered scan computes once instead of per document.
struct LazyScan<'s> {
    /// The top-level fields the filters read.
    fields: &'s [String],
    /// `field = key` conjuncts with the key already evaluated: tested on the extracted field
    /// without building an environment.
    equalities: Vec<(String, Element)>,
    /// True when `equalities` are all the stage's filters.
    equalities_cover_filters: bool,
    alias: Rc<str>,
    by_alias: Option<Rc<str>>,
}

impl<'s> LazyScan<'s> {
    fn prepare(
        ctx: &mut Ctx<'_>,
        stage: &'s Stage,
        row: &Row,
        outer: Option<&Env<'_>>,
    ) -> Result<Option<LazyScan<'s>>> {
        let Some(fields) = &stage.lazy_fields else {
            return Ok(None);
        };
        let env = Env::new(row, outer);
        let mut equalities = Vec::new();
        for filter in &stage.filters {
            if let Some((field, key)) = constant_equality(filter, stage, fields) {
                match eval(ctx, &env, key)? {
                    Datum::Ion(key) => equalities.push((field, key)),
                    // `x = MISSING` is never true: nothing can pass.
                    Datum::Missing => equalities.push((field, Element::null(IonType::Null))),
                }
            }
        }
        Ok(Some(LazyScan {
            fields,
            equalities_cover_filters: equalities.len() == stage.filters.len(),
            equalities,
            alias: Rc::from(stage.alias.as_str()),
            by_alias: stage.by_alias.as_deref().map(Rc::from),
        }))
    }

    /// The equalities tested on the stored bytes: `Some(false)` rejects, `Some(true)` means
    /// all hold, `None` means the fast reader could not tell.
    fn equalities_in_place(&self, bytes: &[u8]) -> Option<bool> {
        for (field, key) in &self.equalities {
            if !super::ion_scan::first_field_equals(bytes, field, key)? {
                return Some(false);
            }
        }
        Some(true)
    }

    /// False when an equality already rules the document out.
    fn equalities_hold(&self, partial: &Element) -> bool {
        let fields = partial.as_struct();
        self.equalities.iter().all(|(field, key)| {
            match fields.and_then(|s| s.get(field.as_str())) {
                Some(value) => !key.is_null() && crate::value::values_equal(value, key),
                None => false,
            }
        })
    }
}

/// `alias.field = k` / `field = k` / `k = …` with `k` a literal or parameter.
fn constant_equality<'e>(
    filter: &'e Expr,
    stage: &Stage,
    fields: &[String],
) -> Option<(String, &'e Expr)> {
    let Expr::Binary {
        op: crate::ast::BinaryOp::Eq,
        left,
        right,
    } = filter
    else {
        return None;
    };
    let is_constant = |e: &Expr| matches!(e, Expr::Lit(_) | Expr::Param(_));
    let field_of = |e: &Expr| match e {
        Expr::Path { root, steps } => match (root.as_ref(), steps.as_slice()) {
            (Expr::Var(i), [PathStep::Field(f)]) if i.name == stage.alias => Some(f.name.clone()),
            _ => None,
        },
        Expr::Var(i) if fields.contains(&i.name) && i.name != stage.alias => Some(i.name.clone()),
        _ => None,
    };
    match (field_of(left), field_of(right)) {
        (Some(field), _) if is_constant(right) => Some((field, right)),
        (_, Some(field)) if is_constant(left) => Some((field, left)),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn visit_document(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    table: &str,
    row: &Row,
    outer: Option<&Env<'_>>,
    document: &DocumentRef<'_>,
    scan: Option<&LazyScan<'_>>,
    out: &mut Rows,
) -> Result<()> {
    let Some(scan) = scan else {
        let bindings = document_bindings(stage, table, document.id, document.decode()?);
        return push_if_passes(ctx, stage, row, bindings, outer, out);
    };
    match scan.equalities_in_place(document.ion) {
        Some(false) => return Ok(()),
        Some(true) if scan.equalities_cover_filters => {
            let mut accepted = row.clone();
            accepted.extend(document_bindings(
                stage,
                table,
                document.id,
                document.decode()?,
            ));
            return out.push(accepted);
        }
        _ => {}
    }
    let partial = match super::ion_scan::top_level_fields(document.ion, scan.fields) {
        Some(partial) => partial,
        None => partial_struct(document.ion, scan.fields)?,
    };
    if !scan.equalities_hold(&partial) {
        return Ok(());
    }
    if !scan.equalities_cover_filters {
        let mut candidate = row.clone();
        candidate.push(Binding {
            name: scan.alias.clone(),
            value: Datum::Ion(partial),
            role: Role::Source,
            origin: None,
        });
        if let Some(by) = &scan.by_alias {
            candidate.push(Binding {
                name: by.clone(),
                value: Datum::string(document.id),
                role: Role::DocumentId,
                origin: None,
            });
        }
        if !passes(ctx, stage, &candidate, outer)? {
            return Ok(());
        }
    }
    // The filters saw every field they read, so the whole document passes too.
    let mut accepted = row.clone();
    accepted.extend(document_bindings(
        stage,
        table,
        document.id,
        document.decode()?,
    ));
    out.push(accepted)
}

/// A struct holding only the named top-level fields of the stored document (all occurrences,
/// in order), read with ion-rs's lazy reader without decoding the other fields.
pub(crate) fn partial_struct(bytes: &[u8], fields: &[String]) -> Result<Element> {
    let mut reader = ion_rs::Reader::new(ion_rs::v1_0::Binary, bytes)?;
    let Some(value) = reader.next()? else {
        return Ok(Element::null(IonType::Null));
    };
    let ion_rs::ValueRef::Struct(document) = value.read()? else {
        return Ok(Element::try_from(value)?);
    };
    let mut builder = Struct::builder();
    for field in document.iter() {
        let field = field?;
        let name = field.name()?;
        let Some(text) = name.text() else { continue };
        if fields.iter().any(|f| f == text) {
            builder = builder.with_field(text, Element::try_from(field.value())?);
        }
    }
    Ok(builder.build().into())
}

fn push_revisions(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    row: &Row,
    outer: Option<&Env<'_>>,
    revisions: &[Revision],
    out: &mut Rows,
) -> Result<()> {
    for revision in revisions {
        let bindings = vec![source_binding(
            stage,
            Datum::Ion(revision.to_element()),
            None,
        )];
        push_if_passes(ctx, stage, row, bindings, outer, out)?;
    }
    Ok(())
}

fn fetch_history(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    row: &Row,
    outer: Option<&Env<'_>>,
    target: &Expr,
    start: Option<&Expr>,
    end: Option<&Expr>,
) -> Result<Vec<Revision>> {
    let table_id = match target {
        Expr::Var(ident) => ctx.tx()?.table(&ident.name)?.table_id,
        other => {
            let env = Env::new(row, outer);
            let id = eval(ctx, &env, other)?;
            let Some(id) = id.as_text() else {
                return Err(PartiqlError::type_error(format!(
                    "history: argument 1 must be a table name or id, got {}",
                    id.type_name()
                )));
            };
            ctx.tx()?.table_by_id(id)?.table_id
        }
    };
    let start = history_time(ctx, row, outer, start, 2)?;
    let end = history_time(ctx, row, outer, end, 3)?;
    match lookup_ids(ctx, stage, row, outer)? {
        Some(ids) => {
            let mut all = Vec::new();
            for id in ids {
                all.extend(ctx.tx()?.history(
                    &table_id,
                    Some(&id),
                    start.as_ref(),
                    end.as_ref(),
                )?);
            }
            Ok(all)
        }
        None => Ok(ctx
            .tx()?
            .history(&table_id, None, start.as_ref(), end.as_ref())?),
    }
}

fn history_time(
    ctx: &mut Ctx<'_>,
    row: &Row,
    outer: Option<&Env<'_>>,
    expr: Option<&Expr>,
    position: usize,
) -> Result<Option<Timestamp>> {
    let Some(expr) = expr else { return Ok(None) };
    let value = eval(ctx, &Env::new(row, outer), expr)?;
    if value.is_absent() {
        return Ok(None);
    }
    match value.as_element().and_then(Element::as_timestamp) {
        Some(timestamp) => Ok(Some(timestamp)),
        None => Err(PartiqlError::type_error(format!(
            "history: argument {position} must be a timestamp, got {}",
            value.type_name()
        ))),
    }
}

/// A table as `information_schema.user_tables` shows it.
pub(crate) fn catalog_element(table: &TableInfo) -> Element {
    let indexes: Vec<Element> = table
        .indexes
        .iter()
        .map(|index| {
            Struct::builder()
                .with_field("indexId", Element::string(index.index_id.as_str()))
                .with_field("expr", Element::string(index.expr()))
                .with_field("status", Element::string("ONLINE"))
                .build()
                .into()
        })
        .collect();
    let status = match table.status {
        TableStatus::Active => "ACTIVE",
        TableStatus::Inactive => "INACTIVE",
    };
    Struct::builder()
        .with_field("tableId", Element::string(table.table_id.as_str()))
        .with_field("name", Element::string(table.name.as_str()))
        .with_field("indexes", Element::from(ion_rs::List::from(indexes)))
        .with_field("status", Element::string(status))
        .build()
        .into()
}

/// Unnesting: a collection binds each element (with its position for `AT`), any other value
/// binds itself, an absent value binds nothing.
fn fetch_value(
    ctx: &mut Ctx<'_>,
    stage: &Stage,
    expr: &Expr,
    row: &Row,
    outer: Option<&Env<'_>>,
    out: &mut Rows,
) -> Result<()> {
    let value = eval(ctx, &Env::new(row, outer), expr)?;
    let Datum::Ion(element) = value else {
        return Ok(());
    };
    if element.is_null() {
        return Ok(());
    }
    let base = origin_of(expr, row);
    let items: Vec<(Option<usize>, Element)> = match element.value() {
        Value::List(s) | Value::SExp(s) => s
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, e)| (Some(i), e))
            .collect(),
        _ => vec![(None, element.clone())],
    };
    for (position, item) in items {
        let origin = base.as_ref().map(|origin| {
            let mut origin = origin.clone();
            if let Some(i) = position {
                origin.path.push(PathKey::Index(i));
            }
            Rc::new(origin)
        });
        let mut bindings = vec![source_binding(stage, Datum::Ion(item), origin)];
        if let (Some(at), Some(i)) = (&stage.at_alias, position) {
            bindings.push(Binding {
                name: Rc::from(at.as_str()),
                value: Datum::int(i as i64),
                role: Role::Ordinal,
                origin: None,
            });
        }
        push_if_passes(ctx, stage, row, bindings, outer, out)?;
    }
    Ok(())
}

/// Where `expr` points inside a document, when it is a static path from a bound document.
fn origin_of(expr: &Expr, row: &Row) -> Option<Origin> {
    let (root, steps): (&Expr, &[PathStep]) = match expr {
        Expr::Path { root, steps } => (root, steps),
        other => (other, &[]),
    };
    let Expr::Var(ident) = root else { return None };
    let binding = row.iter().rev().find(|b| *b.name == *ident.name)?;
    let mut origin = Origin::clone(binding.origin.as_deref()?);
    for step in steps {
        origin.path.push(match step {
            PathStep::Field(field) => PathKey::Field(field.name.clone()),
            PathStep::Index(Expr::Lit(literal)) => {
                match (literal.as_string(), literal.as_usize()) {
                    (Some(name), _) => PathKey::Field(name.to_string()),
                    (None, Some(i)) => PathKey::Index(i),
                    _ => return None,
                }
            }
            _ => return None,
        });
    }
    Some(origin)
}
