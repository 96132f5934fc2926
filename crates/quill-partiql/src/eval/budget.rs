//! The statement's memory budget ([`crate::ExecuteLimits::result_bytes_max`]): everything a
//! running statement materialises counts against one byte budget while it is held — the rows
//! each FROM stage collects (scans, lookups, nested-loop joins, unnested values), documents
//! and revisions fetched before filtering, GROUP BY keys, projected rows and their ORDER BY
//! keys — so a cross join or a large sort fails with [`PartiqlError::ResultTooLarge`] instead
//! of growing memory. Sizes are estimated as Ion binary ([`value::ion_binary_size_estimate`])
//! plus the bookkeeping of each binding.

use std::cell::Cell;
use std::rc::Rc;

use crate::error::{PartiqlError, Result};
use crate::eval::limits::INTERMEDIATE_ROWS_MAX;
use crate::eval::{Binding, Row};
use crate::value::{self, Datum};

/// The bytes a statement may hold at once, and what it holds now.
#[derive(Debug)]
pub(crate) struct Budget {
    max: usize,
    held: Cell<usize>,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Rc<Budget> {
        Rc::new(Budget {
            max,
            held: Cell::new(0),
        })
    }

    fn charge(&self, bytes: usize) -> Result<()> {
        let held = self.held.get().saturating_add(bytes);
        if held > self.max {
            return Err(PartiqlError::ResultTooLarge { limit: self.max });
        }
        self.held.set(held);
        Ok(())
    }

    fn release(&self, bytes: usize) {
        self.held.set(self.held.get().saturating_sub(bytes));
    }

    /// Bytes held now (tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.get()
    }
}

/// Bytes charged to a budget for as long as this lives.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Rc<Budget>,
    bytes: usize,
}

impl Held {
    pub(crate) fn new(budget: &Rc<Budget>) -> Held {
        Held {
            budget: Rc::clone(budget),
            bytes: 0,
        }
    }

    /// Charges `bytes` more; fails (charging nothing) when the budget would be exceeded.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<()> {
        self.budget.charge(bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    fn release(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.release(bytes);
        self.bytes -= bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Estimated bytes of a value.
pub(crate) fn datum_bytes(datum: &Datum) -> usize {
    datum
        .as_element()
        .map_or(0, value::ion_binary_size_estimate)
}

/// Estimated bytes of a row: its values (each a deep copy) and its bindings.
pub(crate) fn row_bytes(row: &[Binding]) -> usize {
    row.iter()
        .map(|binding| std::mem::size_of::<Binding>() + datum_bytes(&binding.value))
        .sum()
}

/// Rows a statement holds, each charged to its budget until it is dropped or taken out.
#[derive(Debug)]
pub(crate) struct Rows {
    entries: Vec<(Row, usize)>,
    held: Held,
}

impl Rows {
    pub(crate) fn new(budget: &Rc<Budget>) -> Rows {
        Rows {
            entries: Vec::new(),
            held: Held::new(budget),
        }
    }

    /// Keeps `row`, failing when the row count or the byte budget would be exceeded.
    pub(crate) fn push(&mut self, row: Row) -> Result<()> {
        if self.entries.len() >= INTERMEDIATE_ROWS_MAX {
            return Err(PartiqlError::Limit {
                limit: "INTERMEDIATE_ROWS_MAX",
                max: INTERMEDIATE_ROWS_MAX,
                actual: self.entries.len() + 1,
            });
        }
        let bytes = row_bytes(&row);
        self.held.charge(bytes)?;
        self.entries.push((row, bytes));
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Row> {
        self.entries.iter().map(|(row, _)| row)
    }

    /// The rows in order, each released from the budget as it is taken (the caller turns it
    /// into something it charges itself); rows not taken are released with the iterator.
    pub(crate) fn into_releasing_iter(self) -> ReleasingIter {
        ReleasingIter {
            entries: self.entries.into_iter(),
            held: self.held,
        }
    }

    /// The rows, still charged for as long as the returned guard lives.
    pub(crate) fn into_rows(self) -> (Vec<Row>, Held) {
        let rows = self.entries.into_iter().map(|(row, _)| row).collect();
        (rows, self.held)
    }
}

/// See [`Rows::into_releasing_iter`].
pub(crate) struct ReleasingIter {
    entries: std::vec::IntoIter<(Row, usize)>,
    held: Held,
}

impl Iterator for ReleasingIter {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        let (row, bytes) = self.entries.next()?;
        self.held.release(bytes);
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Role;

    fn row(text: &str) -> Row {
        vec![Binding {
            name: Rc::from("r"),
            value: Datum::string(text),
            role: Role::Source,
            origin: None,
        }]
    }

    #[test]
    fn held_rows_are_charged_until_dropped_or_taken() {
        let budget = Budget::new(10_000);
        let mut rows = Rows::new(&budget);
        rows.push(row(&"a".repeat(1000))).unwrap();
        rows.push(row(&"b".repeat(2000))).unwrap();
        let both = budget.held();
        assert!(both >= 3000, "{both}");
        let mut taken = rows.into_releasing_iter();
        taken.next().unwrap();
        assert!(budget.held() < both - 1000);
        drop(taken);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn going_over_fails_and_charges_nothing() {
        let budget = Budget::new(2500);
        let mut rows = Rows::new(&budget);
        rows.push(row(&"a".repeat(1000))).unwrap();
        let before = budget.held();
        let error = rows.push(row(&"b".repeat(2000))).unwrap_err();
        assert!(matches!(
            error,
            PartiqlError::ResultTooLarge { limit: 2500 }
        ));
        assert_eq!(budget.held(), before);
        assert_eq!(rows.len(), 1);
    }
}
