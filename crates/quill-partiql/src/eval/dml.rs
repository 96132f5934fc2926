//! DDL and data modification: INSERT, UPDATE, DELETE, FROM-DML, and EXEC.
//!
//! UPDATE and DELETE are FROM-DML over one table (`UPDATE t AS a SET … WHERE c` is
//! `FROM t AS a WHERE c SET …`; DELETE removes the alias), so they share planning (index and
//! id lookups) and row production with SELECT. Edits of one document are collected across
//! rows; removals are applied last, deepest list positions first, so positions found through
//! an unnested source stay valid.

use std::rc::Rc;

use ion_rs::{Element, IonType, Sequence, Struct, Value};

use crate::ast::{DmlOp, DmlTarget, Expr, FromSource, Ident, InsertSource, PathStep, Statement};
use crate::error::{PartiqlError, Result};
use crate::eval::expr::eval;
use crate::eval::limits::DML_PATH_STEPS_MAX;
use crate::eval::{sources, Ctx, Env, LedgerCatalog, PathKey, Role, Row};
use crate::plan::{self, Source, SourcePlan};
use crate::value::Datum;

/// Runs a non-SELECT statement.
pub(crate) fn execute(ctx: &mut Ctx<'_>, statement: &Statement) -> Result<Vec<Element>> {
    match statement {
        Statement::CreateTable { table, tags } => {
            let tags = match tags {
                Some(expr) => eval(ctx, &Env::new(&[], None), expr)?
                    .as_element()
                    .filter(|e| !e.is_null())
                    .cloned(),
                None => None,
            };
            let id = ctx.tx()?.create_table(&table.name, tags)?;
            Ok(vec![id_row("tableId", &id)])
        }
        Statement::DropTable { table } => {
            Ok(vec![id_row("tableId", &ctx.tx()?.drop_table(&table.name)?)])
        }
        Statement::UndropTable { table_id } => Ok(vec![id_row(
            "tableId",
            &ctx.tx()?.undrop_table(&table_id.name)?,
        )]),
        Statement::CreateIndex { table, field } => Ok(vec![id_row(
            "tableId",
            &ctx.tx()?.create_index(&table.name, &field.name)?,
        )]),
        Statement::DropIndex { index_id, table } => Ok(vec![id_row(
            "tableId",
            &ctx.tx()?.drop_index(&table.name, &index_id.name)?,
        )]),
        Statement::Insert { table, source } => insert(ctx, &table.name, source),
        Statement::Update {
            target,
            ops,
            filter,
        } => modify(ctx, &[target_source(target)], filter.as_ref(), ops),
        Statement::Delete { target, filter } => {
            let ops = [DmlOp::Remove(Expr::Var(Ident::new(target_alias(target))))];
            modify(ctx, &[target_source(target)], filter.as_ref(), &ops)
        }
        Statement::FromDml { from, filter, ops } => modify(ctx, from, filter.as_ref(), ops),
        Statement::Exec { procedure, args }
            if procedure.name.eq_ignore_ascii_case("REDACT_REVISION") =>
        {
            redact_revision(ctx, args)
        }
        Statement::Exec { procedure, .. } => Err(PartiqlError::Unsupported(format!(
            "unknown stored procedure {}",
            procedure.name
        ))),
        Statement::Select(_) | Statement::Explain(_) => Err(PartiqlError::Semantic(
            "internal: query routed to the DML evaluator".to_string(),
        )),
    }
}

/// EXPLAIN for non-SELECT statements.
pub(crate) fn explain(ctx: &mut Ctx<'_>, statement: &Statement) -> Result<String> {
    let (verb, plan) = match statement {
        Statement::Update { target, filter, .. } => (
            "Update",
            plan_modify(ctx, &[target_source(target)], filter.as_ref())?,
        ),
        Statement::Delete { target, filter } => (
            "Delete",
            plan_modify(ctx, &[target_source(target)], filter.as_ref())?,
        ),
        Statement::FromDml { from, filter, .. } => {
            ("Modify", plan_modify(ctx, from, filter.as_ref())?)
        }
        Statement::Insert { table, .. } => return Ok(format!("Insert {}", table.name)),
        other => return Ok(format!("Execute {}", statement_kind(other))),
    };
    Ok(format!("{verb}\n{}", plan::describe(&plan)))
}

fn statement_kind(statement: &Statement) -> &'static str {
    match statement {
        Statement::CreateTable { .. } => "CreateTable",
        Statement::DropTable { .. } => "DropTable",
        Statement::UndropTable { .. } => "UndropTable",
        Statement::CreateIndex { .. } => "CreateIndex",
        Statement::DropIndex { .. } => "DropIndex",
        Statement::Exec { .. } => "Exec",
        _ => "Statement",
    }
}

/// `EXEC REDACT_REVISION block-address, 'table-id', 'document-id'`: the block address is an
/// Ion struct (a backtick literal or a parameter). Returns QLDB's one result document
/// `{blockAddress, tableId, documentId, version}`.
fn redact_revision(ctx: &mut Ctx<'_>, args: &[Expr]) -> Result<Vec<Element>> {
    let [address, table_id, document_id] = args else {
        return Err(PartiqlError::Semantic(format!(
            "REDACT_REVISION takes 3 arguments (block address, table id, document id), got {}",
            args.len()
        )));
    };
    let env = Env::new(&[], None);
    let address = eval(ctx, &env, address)?;
    let address = address
        .as_element()
        .filter(|e| e.ion_type() == IonType::Struct && !e.is_null())
        .ok_or_else(|| {
            PartiqlError::Type(
                "REDACT_REVISION: the block address must be a struct {strandId, sequenceNo}"
                    .to_string(),
            )
        })
        .and_then(|e| Ok(quill_ledger::BlockAddress::from_element(e)?))?;
    let mut text = |expr: &Expr, what: &str| -> Result<String> {
        eval(ctx, &env, expr)?
            .as_element()
            .filter(|e| e.ion_type() == IonType::String)
            .and_then(Element::as_text)
            .map(str::to_owned)
            .ok_or_else(|| {
                PartiqlError::Type(format!("REDACT_REVISION: the {what} must be a string"))
            })
    };
    let table_id = text(table_id, "table id")?;
    let document_id = text(document_id, "document id")?;
    let request = ctx
        .tx()?
        .redact_revision(&address, &table_id, &document_id)?;
    Ok(vec![request.to_element()])
}

fn id_row(name: &str, id: &str) -> Element {
    Struct::builder()
        .with_field(name, Element::string(id))
        .build()
        .into()
}

fn target_alias(target: &DmlTarget) -> String {
    target
        .as_alias
        .as_ref()
        .unwrap_or(&target.table)
        .name
        .clone()
}

fn target_source(target: &DmlTarget) -> FromSource {
    FromSource::Scan {
        expr: Expr::Var(target.table.clone()),
        as_alias: target.as_alias.clone(),
        at_alias: None,
        by_alias: target.by_alias.clone(),
    }
}

/// INSERT: `VALUE e` inserts one document; a bare collection inserts each element in order.
fn insert(ctx: &mut Ctx<'_>, table: &str, source: &InsertSource) -> Result<Vec<Element>> {
    let (expr, single) = match source {
        InsertSource::Value(expr) => (expr, true),
        InsertSource::Expr(expr) => (expr, false),
    };
    let value = eval(ctx, &Env::new(&[], None), expr)?;
    let Datum::Ion(value) = value else {
        return Err(PartiqlError::type_error(
            "INSERT: the inserted value is MISSING",
        ));
    };
    let (documents, whole_value): (Vec<Element>, bool) = match value.value() {
        Value::List(items) | Value::SExp(items) if !single => {
            (items.iter().cloned().collect(), false)
        }
        _ => (vec![value], true),
    };
    // A parameter inserted as it is was hashed for the statement's digest: that hash is its
    // revision's data hash.
    let data_hash = match expr {
        Expr::Param(index) if whole_value => ctx.param_hashes.get(*index as usize).copied(),
        _ => None,
    };
    // Check every document before writing any, so a bad element fails the statement cleanly.
    if let Some(bad) = documents
        .iter()
        .find(|d| d.ion_type() != IonType::Struct || d.is_null())
    {
        return Err(PartiqlError::type_error(format!(
            "INSERT: documents must be structs, got {}",
            bad.ion_type()
        )));
    }
    let mut rows = Vec::with_capacity(documents.len());
    for document in documents {
        let tx = ctx.tx()?;
        let id = match data_hash {
            Some(hash) => tx.insert_hashed(table, document, hash)?,
            None => tx.insert(table, document)?,
        };
        rows.push(id_row("documentId", &id));
    }
    Ok(rows)
}

fn plan_modify(
    ctx: &mut Ctx<'_>,
    from: &[FromSource],
    filter: Option<&Expr>,
) -> Result<SourcePlan> {
    let mut catalog = LedgerCatalog(ctx.tx()?);
    let plan = plan::plan_sources(from, filter, &[], &mut catalog)?;
    match plan.stages.first().map(|s| &s.source) {
        Some(Source::Table(_)) => Ok(plan),
        _ => Err(PartiqlError::Semantic(
            "the first source of UPDATE, DELETE or FROM must be a table".to_string(),
        )),
    }
}

/// The pending change to one document.
struct DocumentEdit {
    id: Rc<str>,
    data: Element,
    deleted: bool,
    removals: Vec<Vec<PathKey>>,
}

fn modify(
    ctx: &mut Ctx<'_>,
    from: &[FromSource],
    filter: Option<&Expr>,
    ops: &[DmlOp],
) -> Result<Vec<Element>> {
    let plan = plan_modify(ctx, from, filter)?;
    let table = match &plan.stages[0].source {
        Source::Table(name) => name.clone(),
        _ => {
            return Err(PartiqlError::Semantic(
                "DML target must be a table".to_string(),
            ))
        }
    };
    let alias = plan.stages[0].alias.clone();
    let rows = sources::run_stages(ctx, &plan, None)?;
    let mut edits: Vec<DocumentEdit> = Vec::new();
    // QLDB answers one `{documentId}` per operation applied, not per document: an UPDATE
    // with two SET assignments to one document returns that document's id twice (the DMV
    // sample's RenewDriversLicense test relies on it).
    let mut affected: Vec<Rc<str>> = Vec::new();
    for row in rows.iter() {
        let Some(document) = row
            .iter()
            .find(|b| b.role == Role::Source && *b.name == *alias)
        else {
            continue;
        };
        let Some(origin) = &document.origin else {
            continue;
        };
        let index = match edits.iter().position(|e| e.id == origin.document_id) {
            Some(index) => index,
            None => {
                let data = document
                    .value
                    .as_element()
                    .cloned()
                    .unwrap_or_else(|| Element::null(IonType::Struct));
                edits.push(DocumentEdit {
                    id: origin.document_id.clone(),
                    data,
                    deleted: false,
                    removals: Vec::new(),
                });
                edits.len() - 1
            }
        };
        for op in ops {
            apply_op(ctx, row, &alias, op, &mut edits[index])?;
            let applied = match op {
                DmlOp::Set(assignments) => assignments.len(),
                DmlOp::Remove(_) | DmlOp::InsertInto { .. } => 1,
            };
            affected.extend(std::iter::repeat_n(origin.document_id.clone(), applied));
        }
    }
    for mut edit in edits {
        if edit.deleted {
            ctx.tx()?.delete(&table, &edit.id)?;
        } else {
            edit.removals.sort_by(|a, b| compare_paths(b, a));
            edit.removals.dedup();
            for path in &edit.removals {
                edit.data = apply_edit(Some(&edit.data), path, &Edit::Remove)?
                    .unwrap_or_else(|| Element::null(IonType::Struct));
            }
            ctx.tx()?.update(&table, &edit.id, edit.data)?;
        }
    }
    Ok(affected.iter().map(|id| id_row("documentId", id)).collect())
}

/// Orders paths so that, sorted descending, later list positions come first.
fn compare_paths(a: &[PathKey], b: &[PathKey]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let ordering = match (x, y) {
            (PathKey::Index(i), PathKey::Index(j)) => i.cmp(j),
            (PathKey::Field(m), PathKey::Field(n)) => m.cmp(n),
            (PathKey::Field(_), PathKey::Index(_)) => std::cmp::Ordering::Less,
            (PathKey::Index(_), PathKey::Field(_)) => std::cmp::Ordering::Greater,
        };
        if ordering.is_ne() {
            return ordering;
        }
    }
    a.len().cmp(&b.len())
}

fn apply_op(
    ctx: &mut Ctx<'_>,
    row: &Row,
    alias: &str,
    op: &DmlOp,
    edit: &mut DocumentEdit,
) -> Result<()> {
    let document_id = edit.id.clone();
    let env = Env::new(row, None);
    match op {
        DmlOp::Set(assignments) => {
            for assignment in assignments {
                let path = target_path(ctx, &env, row, (alias, &document_id), &assignment.target)?;
                let new = match eval(ctx, &env, &assignment.value)? {
                    Datum::Ion(value) => Edit::Set(value),
                    // Assigning MISSING removes the field, as PartiQL defines.
                    Datum::Missing => Edit::Remove,
                };
                set_document(edit, &path, &new)?;
            }
        }
        DmlOp::Remove(target) => {
            let path = target_path(ctx, &env, row, (alias, &document_id), target)?;
            if path.is_empty() {
                edit.deleted = true;
            } else {
                edit.removals.push(path);
            }
        }
        DmlOp::InsertInto { target, value, at } => {
            let path = target_path(ctx, &env, row, (alias, &document_id), target)?;
            let value = eval(ctx, &env, value)?.into_element_or_null();
            let at = match at {
                Some(expr) => Some(eval(ctx, &env, expr)?),
                None => None,
            };
            set_document(edit, &path, &Edit::Insert { value, at })?;
        }
    }
    Ok(())
}

fn set_document(edit: &mut DocumentEdit, path: &[PathKey], change: &Edit) -> Result<()> {
    // INSERT INTO the document itself adds a top-level field (`… INSERT INTO c VALUE v AT 'k'`);
    // SET needs a path inside it.
    if path.is_empty() && !matches!(change, Edit::Insert { .. }) {
        return Err(PartiqlError::Semantic(
            "SET needs a path inside the document".to_string(),
        ));
    }
    let updated = apply_edit(Some(&edit.data), path, change)?;
    edit.data = updated.unwrap_or_else(|| Element::null(IonType::Struct));
    Ok(())
}

/// The location a DML target names, relative to the document root.
/// `document` is the target table's alias and the id of the document being edited: a path
/// through another source (another table in FROM-DML) cannot be edited.
fn target_path(
    ctx: &mut Ctx<'_>,
    env: &Env<'_>,
    row: &Row,
    document: (&str, &str),
    target: &Expr,
) -> Result<Vec<PathKey>> {
    let (alias, document_id) = document;
    let (root, steps): (&Expr, &[PathStep]) = match target {
        Expr::Path { root, steps } => (root, steps),
        other => (other, &[]),
    };
    let Expr::Var(ident) = root else {
        return Err(PartiqlError::Semantic(format!(
            "invalid DML target {target}"
        )));
    };
    let mut path = match row.iter().rev().find(|b| *b.name == *ident.name) {
        Some(binding) => match &binding.origin {
            Some(origin) if *origin.document_id == *document_id => origin.path.clone(),
            Some(_) => {
                return Err(PartiqlError::Semantic(format!(
                    "{} is not part of the document being modified (DML edits only its first FROM source)",
                    ident.name
                )))
            }
            None => {
                return Err(PartiqlError::Semantic(format!(
                    "{} does not name a location in a document",
                    ident.name
                )))
            }
        },
        // An unqualified name is a top-level field of the target document.
        None if ident.name != alias => vec![PathKey::Field(ident.name.clone())],
        None => Vec::new(),
    };
    for step in steps {
        path.push(match step {
            PathStep::Field(field) => PathKey::Field(field.name.clone()),
            PathStep::Index(expr) => {
                let key = eval(ctx, env, expr)?;
                match (key.as_text(), key.as_element().and_then(Element::as_usize)) {
                    (Some(name), _) => PathKey::Field(name.to_string()),
                    (None, Some(i)) => PathKey::Index(i),
                    _ => {
                        return Err(PartiqlError::type_error(format!(
                            "path index must be a string or a non-negative int, got {}",
                            key.type_name()
                        )))
                    }
                }
            }
            PathStep::AllElements | PathStep::AllFields => {
                return Err(PartiqlError::Semantic(
                    "wildcards are not allowed in DML targets".to_string(),
                ))
            }
        });
    }
    if path.len() > DML_PATH_STEPS_MAX {
        return Err(PartiqlError::Limit {
            limit: "DML_PATH_STEPS_MAX",
            max: DML_PATH_STEPS_MAX,
            actual: path.len(),
        });
    }
    let _ = ctx;
    Ok(path)
}

/// A change at a path.
enum Edit {
    Set(Element),
    Remove,
    Insert { value: Element, at: Option<Datum> },
}

/// Applies `change` at `path` below `current`; returns the new value at this position
/// (`None` = removed). Recursion depth is the path length (≤ `DML_PATH_STEPS_MAX`).
fn apply_edit(
    current: Option<&Element>,
    path: &[PathKey],
    change: &Edit,
) -> Result<Option<Element>> {
    let Some((key, rest)) = path.split_first() else {
        return match change {
            Edit::Set(value) => Ok(Some(value.clone())),
            Edit::Remove => Ok(None),
            Edit::Insert { value, at } => insert_into(current, value, at.as_ref()).map(Some),
        };
    };
    match key {
        PathKey::Field(name) => edit_field(current, name, rest, change),
        PathKey::Index(index) => edit_index(current, *index, rest, change),
    }
}

fn keep_annotations(original: Option<&Element>, rebuilt: Element) -> Element {
    match original {
        Some(original) if !original.annotations().is_empty() => {
            rebuilt.with_annotations(original.annotations().clone())
        }
        _ => rebuilt,
    }
}

fn edit_field(
    current: Option<&Element>,
    name: &str,
    rest: &[PathKey],
    change: &Edit,
) -> Result<Option<Element>> {
    let existing = current
        .filter(|e| !e.is_null())
        .and_then(Element::as_struct);
    if existing.is_none() && matches!(change, Edit::Remove) {
        return Ok(current.cloned());
    }
    if existing.is_none() && matches!(change, Edit::Insert { .. }) && rest.is_empty() {
        return Err(PartiqlError::type_error(format!(
            "INSERT INTO: {name} does not exist"
        )));
    }
    // SET creates missing structs along the path.
    let empty = Struct::builder().build();
    let fields = existing.unwrap_or(&empty);
    let child = fields.get(name);
    if child.is_none() && matches!(change, Edit::Remove) {
        return Ok(current.cloned());
    }
    let new_child = apply_edit(child, rest, change)?;
    let mut builder = Struct::builder();
    let mut replaced = false;
    for (field_name, value) in fields.fields() {
        if !replaced && field_name.text() == Some(name) {
            replaced = true;
            if let Some(new) = &new_child {
                builder = builder.with_field(field_name.clone(), new.clone());
            }
        } else {
            builder = builder.with_field(field_name.clone(), value.clone());
        }
    }
    if let (false, Some(new)) = (replaced, new_child) {
        builder = builder.with_field(name, new);
    }
    Ok(Some(keep_annotations(current, builder.build().into())))
}

fn edit_index(
    current: Option<&Element>,
    index: usize,
    rest: &[PathKey],
    change: &Edit,
) -> Result<Option<Element>> {
    let (items, is_sexp) = match current.map(Element::value) {
        Some(Value::List(s)) => (s, false),
        Some(Value::SExp(s)) => (s, true),
        _ if matches!(change, Edit::Remove) => return Ok(current.cloned()),
        _ => {
            return Err(PartiqlError::type_error(format!(
                "path position [{index}] applied to a non-list"
            )))
        }
    };
    let child = items.get(index);
    let appending = child.is_none()
        && index == items.len()
        && rest.is_empty()
        && matches!(change, Edit::Set(_));
    if child.is_none() && !appending {
        if matches!(change, Edit::Remove) {
            return Ok(current.cloned());
        }
        return Err(PartiqlError::type_error(format!(
            "list position {index} is out of bounds (length {})",
            items.len()
        )));
    }
    let new_child = apply_edit(child, rest, change)?;
    let mut elements: Vec<Element> = items.iter().cloned().collect();
    match (new_child, index < elements.len()) {
        (Some(new), true) => elements[index] = new,
        (Some(new), false) => elements.push(new),
        (None, true) => {
            elements.remove(index);
        }
        (None, false) => {}
    }
    Ok(Some(keep_annotations(
        current,
        sequence_element(elements, is_sexp),
    )))
}

fn sequence_element(elements: Vec<Element>, is_sexp: bool) -> Element {
    if is_sexp {
        ion_rs::SExp::from(Sequence::new(elements)).into()
    } else {
        ion_rs::List::from(elements).into()
    }
}

/// `INSERT INTO p VALUE v [AT k]`: a list gets `v` appended or at position `k`; a struct gets
/// a new field named `k` (which must not exist yet).
fn insert_into(target: Option<&Element>, value: &Element, at: Option<&Datum>) -> Result<Element> {
    let Some(target) = target.filter(|t| !t.is_null()) else {
        return Err(PartiqlError::type_error(
            "INSERT INTO: the target does not exist",
        ));
    };
    match target.value() {
        Value::List(items) | Value::SExp(items) => {
            let mut elements: Vec<Element> = items.iter().cloned().collect();
            let position = match at {
                None => elements.len(),
                Some(k) => k
                    .as_element()
                    .and_then(Element::as_usize)
                    .filter(|k| *k <= elements.len())
                    .ok_or_else(|| {
                        PartiqlError::type_error(format!(
                            "INSERT INTO: AT position must be 0..={}",
                            elements.len()
                        ))
                    })?,
            };
            elements.insert(position, value.clone());
            let is_sexp = target.ion_type() == IonType::SExp;
            Ok(keep_annotations(
                Some(target),
                sequence_element(elements, is_sexp),
            ))
        }
        Value::Struct(fields) => {
            let Some(key) = at.and_then(Datum::as_text) else {
                return Err(PartiqlError::type_error(
                    "INSERT INTO a struct needs AT 'fieldName'",
                ));
            };
            if fields.get(key).is_some() {
                return Err(PartiqlError::type_error(format!(
                    "INSERT INTO: field {key} already exists"
                )));
            }
            let rebuilt = fields
                .clone_builder()
                .with_field(key, value.clone())
                .build();
            Ok(keep_annotations(Some(target), rebuilt.into()))
        }
        _ => Err(PartiqlError::type_error(format!(
            "INSERT INTO: the target must be a list or struct, got {}",
            target.ion_type()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ion(text: &str) -> Element {
        Element::read_one(text).unwrap()
    }

    fn field(name: &str) -> PathKey {
        PathKey::Field(name.to_string())
    }

    #[test]
    fn set_creates_missing_structs() {
        let doc = ion("{a: 1}");
        let result = apply_edit(Some(&doc), &[field("b"), field("c")], &Edit::Set(ion("2")))
            .unwrap()
            .unwrap();
        assert_eq!(result, ion("{a: 1, b: {c: 2}}"));
    }

    #[test]
    fn set_replaces_in_place() {
        let doc = ion("{a: 1, b: 2, c: 3}");
        let result = apply_edit(Some(&doc), &[field("b")], &Edit::Set(ion("9")))
            .unwrap()
            .unwrap();
        assert_eq!(result.to_string(), ion("{a: 1, b: 9, c: 3}").to_string());
    }

    #[test]
    fn remove_list_element_and_field() {
        let doc = ion("{l: [1, 2, 3], x: 1}");
        let result = apply_edit(Some(&doc), &[field("l"), PathKey::Index(1)], &Edit::Remove)
            .unwrap()
            .unwrap();
        assert_eq!(result, ion("{l: [1, 3], x: 1}"));
        let result = apply_edit(Some(&result), &[field("x")], &Edit::Remove)
            .unwrap()
            .unwrap();
        assert_eq!(result, ion("{l: [1, 3]}"));
        let unchanged = apply_edit(
            Some(&result),
            &[field("nope"), field("deeper")],
            &Edit::Remove,
        )
        .unwrap()
        .unwrap();
        assert_eq!(unchanged, result);
    }

    #[test]
    fn insert_into_list_and_struct() {
        let doc = ion("{l: [1, 3], s: {}}");
        let at = Some(Datum::int(1));
        let result = apply_edit(
            Some(&doc),
            &[field("l")],
            &Edit::Insert {
                value: ion("2"),
                at,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(result, ion("{l: [1, 2, 3], s: {}}"));
        let key = Some(Datum::string("k"));
        let result = apply_edit(
            Some(&result),
            &[field("s")],
            &Edit::Insert {
                value: ion("v"),
                at: key.clone(),
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(result, ion("{l: [1, 2, 3], s: {k: v}}"));
        assert!(apply_edit(
            Some(&result),
            &[field("s")],
            &Edit::Insert {
                value: ion("v"),
                at: key
            }
        )
        .is_err());
        assert!(apply_edit(
            Some(&result),
            &[field("l")],
            &Edit::Insert {
                value: ion("v"),
                at: Some(Datum::int(9))
            }
        )
        .is_err());
    }

    #[test]
    fn out_of_bounds_set_is_an_error() {
        let doc = ion("{l: [1]}");
        assert!(apply_edit(
            Some(&doc),
            &[field("l"), PathKey::Index(5)],
            &Edit::Set(ion("2"))
        )
        .is_err());
        let appended = apply_edit(
            Some(&doc),
            &[field("l"), PathKey::Index(1)],
            &Edit::Set(ion("2")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(appended, ion("{l: [1, 2]}"));
    }
}
