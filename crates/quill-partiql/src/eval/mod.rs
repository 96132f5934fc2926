//! The evaluator: runs a parsed statement against a `quill_ledger::Transaction`.
//!
//! - [`expr`]: expressions over an environment of bindings (PartiQL NULL/MISSING rules).
//! - [`query`]: SELECT: sources (via [`crate::plan`]), filters, grouping, ordering, projection.
//! - [`sources`]: fetching a stage's rows: table scans (testing filters on lazily decoded
//!   fields first), index and id lookups, the committed and history views, the catalog.
//! - [`dml`]: INSERT, UPDATE, DELETE, FROM-DML and DDL.
//!
//! Rows are vectors of [`Binding`]s; names are looked up from the innermost binding out, then
//! in enclosing queries ([`Env`]).

pub(crate) mod budget;
pub(crate) mod dml;
pub(crate) mod expr;
mod ion_scan;
pub mod limits;
pub(crate) mod query;
pub(crate) mod sources;

use std::rc::Rc;

use ion_rs::Element;
use quill_ledger::Transaction;
use quill_verify::Hash;

use crate::ast::Statement;
use crate::error::{PartiqlError, Result};
use crate::eval::budget::Budget;
use crate::functions::FunctionContext;
use crate::value::Datum;

/// Everything a running statement needs.
pub(crate) struct Ctx<'t> {
    /// The transaction; `None` while a scan visitor holds it (filters evaluated inside a scan
    /// never contain subqueries, so they never need it).
    tx: Option<&'t mut Transaction>,
    /// The `?` values.
    pub params: &'t [Element],
    /// `H(p)` of each `?` value, parallel to `params` (empty when not computed).
    pub param_hashes: &'t [Hash],
    /// UTCNOW / TXID.
    pub functions: FunctionContext,
    /// Subquery nesting, bounded by `SUBQUERY_DEPTH_MAX`.
    pub depth: usize,
    /// What the statement may hold in memory at once, and what it holds.
    pub budget: Rc<Budget>,
}

impl<'t> Ctx<'t> {
    pub(crate) fn new(
        tx: &'t mut Transaction,
        params: &'t [Element],
        param_hashes: &'t [Hash],
        bytes_max: usize,
    ) -> Ctx<'t> {
        let functions = FunctionContext {
            now: tx.start_time(),
            transaction_id: tx.id().to_string(),
        };
        Ctx {
            tx: Some(tx),
            params,
            param_hashes,
            functions,
            depth: 0,
            budget: Budget::new(bytes_max),
        }
    }

    /// The transaction.
    pub(crate) fn tx(&mut self) -> Result<&mut Transaction> {
        self.tx.as_deref_mut().ok_or_else(|| {
            PartiqlError::Semantic("internal: transaction used inside a scan visitor".to_string())
        })
    }

    /// Lends the transaction out and gives a context without it, for use inside a scan.
    pub(crate) fn split(&mut self) -> Result<(&mut Transaction, Ctx<'_>)> {
        let tx = self.tx.as_deref_mut().ok_or_else(|| {
            PartiqlError::Semantic("internal: nested scan without a transaction".to_string())
        })?;
        let inner = Ctx {
            tx: None,
            params: self.params,
            param_hashes: self.param_hashes,
            functions: self.functions.clone(),
            depth: self.depth,
            budget: Rc::clone(&self.budget),
        };
        Ok((tx, inner))
    }
}

/// What a binding holds, for `SELECT *` (ordinals and ids are not part of the row's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A FROM source's value.
    Source,
    /// An `AT` ordinal.
    Ordinal,
    /// A `BY` document id.
    DocumentId,
}

/// One step of a location inside a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathKey {
    /// A struct field.
    Field(String),
    /// A list or sexp position.
    Index(usize),
}

/// Where a bound value lives in the user view: which document, and the path inside it. FROM-DML
/// uses it to turn `REMOVE o` into an edit of the right document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Origin {
    /// The table the document is in.
    pub table: Rc<str>,
    /// The document id.
    pub document_id: Rc<str>,
    /// Path from the document root.
    pub path: Vec<PathKey>,
}

/// A name bound to a value in a row.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub name: Rc<str>,
    pub value: Datum,
    pub role: Role,
    pub origin: Option<Rc<Origin>>,
}

/// The bindings of one row, in FROM order.
pub(crate) type Row = Vec<Binding>;

/// A name-resolution scope: the current row, the rows of enclosing queries, and (inside a
/// grouped query) the rows of the current group for aggregates.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub row: &'a [Binding],
    pub outer: Option<&'a Env<'a>>,
    pub group: Option<&'a [Row]>,
    /// The projected output, so ORDER BY can name output columns.
    pub output: Option<&'a Element>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(row: &'a [Binding], outer: Option<&'a Env<'a>>) -> Env<'a> {
        Env {
            row,
            outer,
            group: None,
            output: None,
        }
    }

    fn alias(&self, name: &str) -> Option<&'a Datum> {
        if let Some(binding) = self.row.iter().rev().find(|b| &*b.name == name) {
            return Some(&binding.value);
        }
        self.outer.and_then(|outer| outer.alias(name))
    }

    /// A field of the implicit source: with one source its field, with several the first
    /// source whose struct has the field.
    fn implicit_field(&self, name: &str) -> Option<Element> {
        let found = self
            .row
            .iter()
            .filter(|b| b.role == Role::Source)
            .find_map(|b| {
                b.value
                    .as_element()
                    .and_then(Element::as_struct)
                    .and_then(|s| s.get(name))
                    .cloned()
            });
        found.or_else(|| {
            self.output
                .and_then(Element::as_struct)
                .and_then(|s| s.get(name))
                .cloned()
        })
    }

    /// Resolves an unqualified name.
    pub(crate) fn lookup(&self, name: &str) -> Datum {
        if let Some(value) = self.alias(name) {
            return value.clone();
        }
        let mut scope = Some(self);
        while let Some(env) = scope {
            if let Some(element) = env.implicit_field(name) {
                return Datum::Ion(element);
            }
            scope = env.outer;
        }
        Datum::Missing
    }

    /// Every name bound here and in enclosing scopes (for planning subqueries).
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.row.iter().map(|b| b.name.to_string()).collect();
        if let Some(outer) = self.outer {
            names.extend(outer.names());
        }
        names
    }
}

/// Runs one parsed statement; the caller has recorded it and owns rollback.
pub(crate) fn execute_statement(
    tx: &mut Transaction,
    statement: &Statement,
    params: &[Element],
    param_hashes: &[Hash],
    execute_limits: crate::ExecuteLimits,
) -> Result<Vec<Element>> {
    let mut ctx = Ctx::new(tx, params, param_hashes, execute_limits.result_bytes_max);
    match statement {
        Statement::Select(query) => {
            let rows = query::run_query(&mut ctx, query, None)?;
            Ok(rows
                .into_iter()
                .filter_map(|d| d.as_element().cloned())
                .collect())
        }
        Statement::Explain(inner) => {
            let text = explain_statement(&mut ctx, inner)?;
            Ok(vec![plan_row(text)])
        }
        other => dml::execute(&mut ctx, other),
    }
}

fn plan_row(text: String) -> Element {
    ion_rs::Struct::builder()
        .with_field("plan", Element::string(text))
        .build()
        .into()
}

/// Describes how a statement would run, without running it.
pub(crate) fn explain_statement(ctx: &mut Ctx<'_>, statement: &Statement) -> Result<String> {
    match statement {
        Statement::Select(query) => query::explain_query(ctx, query),
        Statement::Explain(inner) => explain_statement(ctx, inner),
        other => dml::explain(ctx, other),
    }
}

/// Explains from a bare transaction (the public `explain`).
pub(crate) fn explain_with(tx: &mut Transaction, statement: &Statement) -> Result<String> {
    let mut ctx = Ctx::new(tx, &[], &[], limits::RESULT_BYTES_MAX_DEFAULT);
    explain_statement(&mut ctx, statement)
}

/// The ledger as the planner's catalog.
pub(crate) struct LedgerCatalog<'a>(pub &'a mut Transaction);

impl crate::plan::Catalog for LedgerCatalog<'_> {
    fn indexed_fields(&mut self, table: &str) -> Result<Vec<String>> {
        let info = self.0.table(table)?;
        Ok(info.indexes.into_iter().map(|index| index.field).collect())
    }
}
