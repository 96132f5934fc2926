//! The planner: turns a query's FROM and WHERE into stages (one per source, nested-loop
//! order) and decides, for each stage, how its rows are fetched.
//!
//! Why it matters: the ledger's OCC read set follows from the calls made. A scan reads the
//! whole table (any concurrent write conflicts); an index or id lookup reads only its keys
//! and the documents it finds.
//! So the planner uses a lookup exactly for QLDB's documented shapes ("Optimizing query
//! performance"): an equality conjunct of the WHERE (or a join's ON) between an indexed
//! top-level field — or the document id (`BY` alias, `metadata.id` in the committed/history
//! views) — and a value that does not depend on the stage's own row (literal, parameter, an
//! earlier source or an outer query), or `field IN (v1, v2, …)`. Everything else scans.
//! Every conjunct still filters the rows of the stage it is assigned to, so a lookup only
//! narrows what is read.
//!
//! Conjuncts are assigned to the earliest stage where every name they use is bound, which
//! filters joins early; a scan stage whose conjuncts read only top-level fields of its own
//! document gets `lazy_fields`, letting the evaluator test them without decoding the rest.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::ast::{BinaryOp, Expr, FromSource, InRhs, PathStep};
use crate::error::{PartiqlError, Result};

/// What the planner needs to know about the catalog.
pub trait Catalog {
    /// The indexed top-level fields of the active table `table`; `UnknownTable` if none.
    fn indexed_fields(&mut self, table: &str) -> Result<Vec<String>>;
}

/// Prefix QLDB uses for the committed view of a table.
pub const COMMITTED_PREFIX: &str = "_ql_committed_";

/// Where a stage's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The user view of a table: live documents' data.
    Table(String),
    /// `_ql_committed_<table>`: committed revisions with metadata.
    Committed(String),
    /// `history(table | 'tableId' [, start [, end]])`.
    History {
        /// The table name (a variable) or id (a string expression).
        target: Expr,
        /// Inclusive start time.
        start: Option<Expr>,
        /// Inclusive end time.
        end: Option<Expr>,
    },
    /// `information_schema.user_tables`.
    Catalog,
    /// Any other expression: unnesting a path of an earlier source, a subquery, a literal.
    Value(Expr),
}

/// How a stage fetches its rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Visit every row of the source.
    Scan,
    /// Look each key up in the table's index on `field`.
    IndexLookup {
        /// The indexed top-level field.
        field: String,
        /// The key expressions (one for `=`, several for `IN (…)`).
        keys: Vec<Expr>,
    },
    /// Fetch documents by id.
    IdLookup {
        /// The id expressions.
        keys: Vec<Expr>,
    },
}

/// One source of a FROM clause with its access path and filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Where rows come from.
    pub source: Source,
    /// The name each row is bound to.
    pub alias: String,
    /// `AT i`: the position in the iterated collection.
    pub at_alias: Option<String>,
    /// `BY id`: the document id.
    pub by_alias: Option<String>,
    /// Lookup or scan.
    pub access: Access,
    /// Conjuncts evaluated once this stage is bound.
    pub filters: Vec<Expr>,
    /// For table scans whose filters use only these top-level fields of the stage's own
    /// document: the fields to decode before testing the filters.
    pub lazy_fields: Option<Vec<String>>,
}

/// The FROM/WHERE part of a query, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePlan {
    /// Nested-loop order: stage `i` may use the bindings of stages `< i`.
    pub stages: Vec<Stage>,
}

/// Conjuncts that need no stage at all (no names): evaluated with stage 0.
const FIRST_STAGE: usize = 0;

/// Plans FROM sources and the WHERE filter. `outer_names` are names bound by enclosing
/// queries; they count as constants here.
pub fn plan_sources(
    sources: &[FromSource],
    filter: Option<&Expr>,
    outer_names: &[String],
    catalog: &mut dyn Catalog,
) -> Result<SourcePlan> {
    let (mut stages, mut conjuncts) = classify_sources(sources, outer_names)?;
    if let Some(filter) = filter {
        split_conjuncts(filter, &mut conjuncts);
    }
    let scope = Scope::new(&stages, outer_names);
    let implied = implied_equalities(&conjuncts, &scope);
    for conjunct in conjuncts.into_iter().chain(implied) {
        let stage = scope.stage_of(&conjunct);
        stages[stage].filters.push(conjunct);
    }
    for index in 0..stages.len() {
        choose_access(&mut stages, index, &scope, catalog)?;
    }
    Ok(SourcePlan { stages })
}

/// The stages of FROM sources in nested-loop order, each with its source classified (a name
/// not bound by an earlier source or an enclosing query is a table) and every access a scan,
/// plus the conditions of their joins. Shared by the planner and [`crate::access`], so the
/// tables a permission check sees are exactly the ones the evaluator reads.
pub(crate) fn classify_sources(
    sources: &[FromSource],
    outer_names: &[String],
) -> Result<(Vec<Stage>, Vec<Expr>)> {
    let mut flat = Vec::new();
    let mut join_conditions = Vec::new();
    for source in sources {
        flatten_source(source, &mut flat, &mut join_conditions)?;
    }
    if flat.is_empty() {
        return Err(PartiqlError::Semantic(
            "FROM needs at least one source".to_string(),
        ));
    }
    let mut stages: Vec<Stage> = Vec::with_capacity(flat.len());
    for (index, scan) in flat.iter().enumerate() {
        let known: Vec<&str> = stages
            .iter()
            .flat_map(stage_names)
            .chain(outer_names.iter().map(String::as_str))
            .collect();
        stages.push(stage_for(scan, index, &known));
    }
    Ok((stages, join_conditions))
}

/// Every name a stage binds: its alias, `AT` and `BY` names.
pub(crate) fn stage_names(stage: &Stage) -> impl Iterator<Item = &str> {
    std::iter::once(stage.alias.as_str())
        .chain(stage.at_alias.as_deref())
        .chain(stage.by_alias.as_deref())
}

/// One `FROM` element after joins are flattened.
struct FlatScan<'a> {
    expr: &'a Expr,
    as_alias: Option<&'a str>,
    at_alias: Option<&'a str>,
    by_alias: Option<&'a str>,
}

fn flatten_source<'a>(
    source: &'a FromSource,
    flat: &mut Vec<FlatScan<'a>>,
    conjuncts: &mut Vec<Expr>,
) -> Result<()> {
    match source {
        FromSource::Scan {
            expr,
            as_alias,
            at_alias,
            by_alias,
        } => flat.push(FlatScan {
            expr,
            as_alias: as_alias.as_ref().map(|i| i.name.as_str()),
            at_alias: at_alias.as_ref().map(|i| i.name.as_str()),
            by_alias: by_alias.as_ref().map(|i| i.name.as_str()),
        }),
        FromSource::Join {
            left, right, on, ..
        } => {
            // Inner and cross joins are a filtered cross product: the ON joins the WHERE.
            flatten_source(left, flat, conjuncts)?;
            flatten_source(right, flat, conjuncts)?;
            if let Some(on) = on {
                split_conjuncts(on, conjuncts);
            }
        }
    }
    Ok(())
}

/// Splits `a AND b AND c` into its conjuncts.
pub fn split_conjuncts(expr: &Expr, out: &mut Vec<Expr>) {
    let mut pending = vec![expr];
    // An explicit stack (not recursion) so a long AND chain cannot exhaust the stack.
    while let Some(next) = pending.pop() {
        match next {
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                pending.push(right);
                pending.push(left);
            }
            other => out.push(other.clone()),
        }
    }
}

fn stage_for(scan: &FlatScan<'_>, index: usize, known: &[&str]) -> Stage {
    let source = classify(scan.expr, known);
    let alias = match (scan.as_alias, &source) {
        (Some(alias), _) => alias.to_string(),
        (None, Source::Table(name)) => name.clone(),
        (None, Source::Committed(name)) => format!("{COMMITTED_PREFIX}{name}"),
        (None, Source::Catalog) => "user_tables".to_string(),
        (None, Source::History { .. }) => "history".to_string(),
        (None, Source::Value(expr)) => {
            default_name(expr).unwrap_or_else(|| format!("_{}", index + 1))
        }
    };
    Stage {
        source,
        alias,
        at_alias: scan.at_alias.map(str::to_string),
        by_alias: scan.by_alias.map(str::to_string),
        access: Access::Scan,
        filters: Vec::new(),
        lazy_fields: None,
    }
}

/// The name an expression gets when it is not aliased: a variable's name or a path's last
/// field.
pub fn default_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Var(ident) => Some(ident.name.clone()),
        Expr::Path { steps, .. } => match steps.last()? {
            PathStep::Field(ident) => Some(ident.name.clone()),
            PathStep::Index(Expr::Lit(element)) => element.as_string().map(str::to_string),
            _ => None,
        },
        _ => None,
    }
}

fn classify(expr: &Expr, known: &[&str]) -> Source {
    match expr {
        Expr::Var(ident) if !known.contains(&ident.name.as_str()) => {
            match ident.name.strip_prefix(COMMITTED_PREFIX) {
                Some(table) => Source::Committed(table.to_string()),
                None => Source::Table(ident.name.clone()),
            }
        }
        Expr::Path { root, steps } if is_catalog_path(root, steps, known) => Source::Catalog,
        Expr::Call(call) if call.name.eq_ignore_ascii_case("history") && !call.args.is_empty() => {
            Source::History {
                target: call.args[0].clone(),
                start: call.args.get(1).cloned(),
                end: call.args.get(2).cloned(),
            }
        }
        other => Source::Value(other.clone()),
    }
}

fn is_catalog_path(root: &Expr, steps: &[PathStep], known: &[&str]) -> bool {
    matches!(root, Expr::Var(i) if i.name == "information_schema" && !known.contains(&"information_schema"))
        && matches!(steps, [PathStep::Field(f)] if f.name == "user_tables")
}

/// Which stage binds each local name.
struct Scope<'a> {
    names: Vec<(String, usize)>,
    outer: &'a [String],
    stage_count: usize,
}

/// What an expression depends on.
#[derive(Debug, Default)]
struct Deps {
    stages: BTreeSet<usize>,
    /// An unqualified name that is neither an alias nor an outer name: a field of the
    /// implicit source.
    implicit: bool,
    subquery: bool,
}

impl<'a> Scope<'a> {
    fn new(stages: &[Stage], outer: &'a [String]) -> Scope<'a> {
        let names = stages
            .iter()
            .enumerate()
            .flat_map(|(i, stage)| stage_names(stage).map(move |name| (name.to_string(), i)))
            .collect();
        Scope {
            names,
            outer,
            stage_count: stages.len(),
        }
    }

    fn stage_of_name(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, i)| *i)
    }

    fn deps(&self, expr: &Expr) -> Deps {
        let mut deps = Deps::default();
        expr.walk(&mut |e| match e {
            Expr::Var(ident) => match self.stage_of_name(&ident.name) {
                Some(stage) => {
                    deps.stages.insert(stage);
                }
                None if self.outer.contains(&ident.name) => {}
                None => deps.implicit = true,
            },
            Expr::Subquery(_) => deps.subquery = true,
            _ => {}
        });
        deps
    }

    /// The stage a conjunct is tested at: the last stage it names, or the last stage when
    /// it is opaque (subquery) or names fields of an implicit source among several.
    fn stage_of(&self, conjunct: &Expr) -> usize {
        let deps = self.deps(conjunct);
        let last = self.stage_count.saturating_sub(1);
        if deps.subquery || (deps.implicit && self.stage_count > 1) {
            return last;
        }
        deps.stages.last().copied().unwrap_or(FIRST_STAGE)
    }

    /// True when `expr` can be evaluated before stage `stage` binds its row.
    fn independent_of(&self, expr: &Expr, stage: usize) -> bool {
        let deps = self.deps(expr);
        let implicit_here =
            deps.implicit && (self.stage_count == 1 || stage + 1 == self.stage_count);
        !deps.subquery && !implicit_here && deps.stages.iter().all(|s| *s < stage)
    }
}

/// Cap on equalities derived by transitivity (quadratic in the conjuncts otherwise).
const IMPLIED_EQUALITIES_MAX: usize = 64;

/// `a = b AND b = k` (k constant) implies `a = k`: adding it lets a join's outer side use its
/// index too (`… JOIN r ON v.VIN = r.VIN WHERE r.VIN = ?` looks `v` up by VIN). The derived
/// conjuncts are implied by the originals, so filtering with them changes nothing.
fn implied_equalities(conjuncts: &[Expr], scope: &Scope<'_>) -> Vec<Expr> {
    let is_constant = |e: &Expr| {
        let deps = scope.deps(e);
        deps.stages.is_empty() && !deps.implicit && !deps.subquery
    };
    let equalities: Vec<(&Expr, &Expr)> = conjuncts
        .iter()
        .filter_map(|c| match c {
            Expr::Binary {
                op: BinaryOp::Eq,
                left,
                right,
            } => Some((left.as_ref(), right.as_ref())),
            _ => None,
        })
        .collect();
    let mut implied = Vec::new();
    for (left, right) in &equalities {
        let (variable, constant) = match (is_constant(left), is_constant(right)) {
            (false, true) => (*left, *right),
            (true, false) => (*right, *left),
            _ => continue,
        };
        for (a, b) in &equalities {
            let other = if *a == variable {
                *b
            } else if *b == variable {
                *a
            } else {
                continue;
            };
            if other == variable || is_constant(other) || implied.len() >= IMPLIED_EQUALITIES_MAX {
                continue;
            }
            implied.push(Expr::Binary {
                op: BinaryOp::Eq,
                left: Box::new(other.clone()),
                right: Box::new(constant.clone()),
            });
        }
    }
    implied
}

/// A key-bearing conjunct shape found on a stage.
enum Lookup {
    Field(String, Vec<Expr>),
    Id(Vec<Expr>),
}

fn choose_access(
    stages: &mut [Stage],
    index: usize,
    scope: &Scope<'_>,
    catalog: &mut dyn Catalog,
) -> Result<()> {
    let indexed = match &stages[index].source {
        Source::Table(name) => catalog.indexed_fields(name)?,
        Source::Committed(name) => {
            catalog.indexed_fields(name)?;
            Vec::new()
        }
        Source::History { .. } => Vec::new(),
        Source::Catalog | Source::Value(_) => return Ok(()),
    };
    let stage = &stages[index];
    let single = scope.stage_count == 1;
    let lookups: Vec<Lookup> = stage
        .filters
        .iter()
        .filter_map(|f| lookup_shape(f, stage, index, single, scope))
        .collect();
    let id = lookups.iter().find_map(|l| match l {
        Lookup::Id(keys) => Some(keys.clone()),
        Lookup::Field(..) => None,
    });
    let field = lookups.iter().find_map(|l| match l {
        Lookup::Field(field, keys)
            if indexed.contains(field) && matches!(stage.source, Source::Table(_)) =>
        {
            Some((field.clone(), keys.clone()))
        }
        _ => None,
    });
    let access = match (id, field) {
        (Some(keys), _) => Access::IdLookup { keys },
        (None, Some((field, keys))) => Access::IndexLookup { field, keys },
        (None, None) => Access::Scan,
    };
    let lazy = match (&stage.source, &access) {
        (Source::Table(_), Access::Scan) => lazy_fields(stage, single, scope),
        _ => None,
    };
    let stage = &mut stages[index];
    stage.access = access;
    stage.lazy_fields = lazy;
    Ok(())
}

/// `key = v`, `v = key` or `key IN (v, …)` where `key` is a field (or the id) of `stage`.
fn lookup_shape(
    conjunct: &Expr,
    stage: &Stage,
    index: usize,
    single: bool,
    scope: &Scope<'_>,
) -> Option<Lookup> {
    let (candidates, keys): (Vec<(&Expr, &Expr)>, Option<&Vec<Expr>>) = match conjunct {
        Expr::Binary {
            op: BinaryOp::Eq,
            left,
            right,
        } => (vec![(left, right), (right, left)], None),
        Expr::In {
            expr,
            negated: false,
            rhs: InRhs::List(items),
        } => (vec![(expr, expr)], Some(items)),
        _ => return None,
    };
    for (key_side, value_side) in candidates {
        let Some(key) = key_of(key_side, stage, single, scope) else {
            continue;
        };
        let values: Vec<Expr> = match keys {
            Some(items) => items.clone(),
            None => vec![value_side.clone()],
        };
        if values.is_empty() || !values.iter().all(|v| scope.independent_of(v, index)) {
            continue;
        }
        return Some(match key {
            KeyRef::Id => Lookup::Id(values),
            KeyRef::Field(field) => Lookup::Field(field, values),
        });
    }
    None
}

enum KeyRef {
    Id,
    Field(String),
}

fn key_of(expr: &Expr, stage: &Stage, single: bool, scope: &Scope<'_>) -> Option<KeyRef> {
    let is_alias = |e: &Expr| matches!(e, Expr::Var(i) if i.name == stage.alias);
    match (&stage.source, expr) {
        (Source::Table(_), Expr::Var(i)) if stage.by_alias.as_deref() == Some(i.name.as_str()) => {
            Some(KeyRef::Id)
        }
        (Source::Table(_), Expr::Path { root, steps }) if is_alias(root) => {
            match steps.as_slice() {
                [PathStep::Field(f)] => Some(KeyRef::Field(f.name.clone())),
                _ => None,
            }
        }
        (Source::Table(_), Expr::Var(i))
            if single
                && scope.stage_of_name(&i.name).is_none()
                && !scope.outer.contains(&i.name) =>
        {
            Some(KeyRef::Field(i.name.clone()))
        }
        (Source::Committed(_) | Source::History { .. }, Expr::Path { root, steps })
            if is_alias(root) =>
        {
            match steps.as_slice() {
                [PathStep::Field(m), PathStep::Field(id)]
                    if m.name == "metadata" && id.name == "id" =>
                {
                    Some(KeyRef::Id)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The top-level fields of the stage's document its filters read, or `None` when a filter
/// needs more (the whole document, a subquery, another source's implicit fields).
fn lazy_fields(stage: &Stage, single: bool, scope: &Scope<'_>) -> Option<Vec<String>> {
    if stage.filters.is_empty() {
        return None;
    }
    let mut fields = BTreeSet::new();
    for filter in &stage.filters {
        let mut whole = false;
        let mut covered = 0usize;
        let mut mentions = 0usize;
        filter.walk(&mut |e| match e {
            Expr::Subquery(_) => whole = true,
            Expr::Var(i) if i.name == stage.alias => mentions += 1,
            Expr::Var(i)
                if scope.stage_of_name(&i.name).is_none() && !scope.outer.contains(&i.name) =>
            {
                if single {
                    fields.insert(i.name.clone());
                } else {
                    whole = true;
                }
            }
            Expr::Path { root, steps } => {
                if let (Expr::Var(i), Some(name)) =
                    (root.as_ref(), steps.first().and_then(step_field))
                {
                    if i.name == stage.alias {
                        covered += 1;
                        fields.insert(name);
                    }
                }
            }
            _ => {}
        });
        if whole || mentions > covered {
            return None;
        }
    }
    Some(fields.into_iter().collect())
}

fn step_field(step: &PathStep) -> Option<String> {
    match step {
        PathStep::Field(ident) => Some(ident.name.clone()),
        PathStep::Index(Expr::Lit(element)) => element.as_string().map(str::to_string),
        _ => None,
    }
}

/// A one-line-per-stage description of the plan (EXPLAIN).
pub fn describe(plan: &SourcePlan) -> String {
    let mut out = String::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{}", describe_stage(stage));
        if let Some(fields) = &stage.lazy_fields {
            let _ = write!(out, " decode({})", fields.join(", "));
        }
        if !stage.filters.is_empty() {
            let filters: Vec<String> = stage.filters.iter().map(ToString::to_string).collect();
            let _ = write!(out, " filter({})", filters.join(" AND "));
        }
    }
    out
}

fn describe_stage(stage: &Stage) -> String {
    let what = match &stage.source {
        Source::Table(name) => name.clone(),
        Source::Committed(name) => format!("{COMMITTED_PREFIX}{name}"),
        Source::History { target, .. } => format!("history({target})"),
        Source::Catalog => "information_schema.user_tables".to_string(),
        Source::Value(expr) => return format!("Unnest {expr} AS {}", stage.alias),
    };
    match &stage.access {
        Access::Scan => format!("FullScan {what} AS {}", stage.alias),
        Access::IndexLookup { field, keys } => format!(
            "IndexLookup {what}.{field} keys({}) AS {}",
            keys.len(),
            stage.alias
        ),
        Access::IdLookup { keys } => {
            format!("IdLookup {what} keys({}) AS {}", keys.len(), stage.alias)
        }
    }
}

/// Fails unless `expr` names an existing alias or table; used by DML to reject unknown
/// targets early with a clear message.
pub fn require_table(source: &Source) -> Result<&str> {
    match source {
        Source::Table(name) => Ok(name),
        _ => Err(PartiqlError::Semantic(
            "the first FROM source of a DML statement must be a table".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests;
