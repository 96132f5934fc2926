//! Shared helpers for the ledger-backed evaluator tests: a ledger in a temp dir, statements
//! run in their own committed transactions, and the QLDB DMV sample data.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions, Transaction};
use quill_partiql::{execute, PartiqlError};

/// A ledger in a temporary directory.
pub struct Db {
    /// Keeps the directory alive.
    _dir: tempfile::TempDir,
    /// The ledger.
    pub ledger: Ledger,
}

/// Parses one Ion value.
pub fn ion(text: &str) -> Element {
    Element::read_one(text).unwrap_or_else(|e| panic!("bad Ion {text:?}: {e}"))
}

/// Parses a stream of Ion values.
pub fn ion_all(text: &str) -> Vec<Element> {
    Element::read_all(text)
        .unwrap_or_else(|e| panic!("bad Ion {text:?}: {e}"))
        .into_iter()
        .collect()
}

/// The text of field `name` of a struct row.
pub fn text_field(row: &Element, name: &str) -> String {
    row.as_struct()
        .and_then(|s| s.get(name))
        .and_then(Element::as_text)
        .unwrap_or_else(|| panic!("no text field {name} in {row}"))
        .to_string()
}

/// Asserts two bags of rows are equal regardless of order.
pub fn assert_same_rows(actual: &[Element], expected: &[Element]) {
    let mut remaining: Vec<&Element> = expected.iter().collect();
    for row in actual {
        match remaining.iter().position(|e| *e == row) {
            Some(i) => {
                remaining.remove(i);
            }
            None => panic!(
                "unexpected row {row}\nactual: {}\nexpected: {}",
                show(actual),
                show(expected)
            ),
        }
    }
    assert!(
        remaining.is_empty(),
        "missing rows\nactual: {}\nexpected: {}",
        show(actual),
        show(expected)
    );
}

fn show(rows: &[Element]) -> String {
    rows.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Db {
    /// An empty ledger.
    pub fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let options = LedgerOptions {
            id_seed: Some(7),
            ..LedgerOptions::default()
        };
        let ledger = Ledger::create(dir.path(), "test-ledger", options).unwrap();
        Db { _dir: dir, ledger }
    }

    /// The ledger's directory.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Runs one statement in its own transaction and commits it when it succeeds.
    pub fn run(
        &self,
        statement: &str,
        parameters: &[Element],
    ) -> Result<Vec<Element>, PartiqlError> {
        let mut tx = self.ledger.begin().unwrap();
        let rows = execute(&mut tx, statement, parameters)?;
        tx.commit().map_err(PartiqlError::from)?;
        Ok(rows)
    }

    /// Runs a statement that must succeed.
    pub fn q(&self, statement: &str) -> Vec<Element> {
        self.run(statement, &[])
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// Runs a statement with parameters that must succeed.
    pub fn qp(&self, statement: &str, parameters: &[Element]) -> Vec<Element> {
        self.run(statement, parameters)
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// Runs `body` in one transaction and commits.
    pub fn tx<T>(&self, body: impl FnOnce(&mut Transaction) -> T) -> T {
        let mut tx = self.ledger.begin().unwrap();
        let result = body(&mut tx);
        tx.commit().unwrap();
        result
    }

    /// Creates the four DMV tables with the tutorial's indexes and loads the sample data.
    /// Returns the Person document ids by GovId.
    pub fn load_dmv(&self) -> HashMap<String, String> {
        for table in ["Person", "Vehicle", "VehicleRegistration", "DriversLicense"] {
            self.q(&format!("CREATE TABLE {table}"));
        }
        for (table, field) in [
            ("Person", "GovId"),
            ("Vehicle", "VIN"),
            ("VehicleRegistration", "VIN"),
            ("VehicleRegistration", "LicensePlateNumber"),
            ("DriversLicense", "PersonId"),
            ("DriversLicense", "LicenseNumber"),
        ] {
            self.q(&format!("CREATE INDEX ON {table} ({field})"));
        }
        let people = ion_all(&data("Person"));
        let ids = self.qp(
            "INSERT INTO Person ?",
            &[Element::from(ion_rs::List::from(people.clone()))],
        );
        let mut by_gov_id = HashMap::new();
        for (person, id) in people.iter().zip(&ids) {
            by_gov_id.insert(text_field(person, "GovId"), text_field(id, "documentId"));
        }
        self.qp(
            "INSERT INTO Vehicle ?",
            &[Element::from(ion_rs::List::from(ion_all(&data("Vehicle"))))],
        );
        for table in ["VehicleRegistration", "DriversLicense"] {
            let mut text = data(table);
            for (gov_id, id) in &by_gov_id {
                text = text.replace(&format!("owner::\"{gov_id}\""), &format!("\"{id}\""));
            }
            self.qp(
                &format!("INSERT INTO {table} ?"),
                &[Element::from(ion_rs::List::from(ion_all(&text)))],
            );
        }
        by_gov_id
    }
}

/// The sample data file for `table`.
pub fn data(table: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{table}.ion"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
