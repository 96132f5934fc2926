//! Planning decisions on parsed statements, without a ledger.

use super::*;
use crate::ast::{Query, Statement};
use crate::parser::parse;

/// A catalog with `VehicleRegistration(VIN, LicensePlateNumber)`, `Vehicle(VIN)`,
/// `Person(GovId)` indexed, and `DriversLicense` without indexes.
struct FakeCatalog;

impl Catalog for FakeCatalog {
    fn indexed_fields(&mut self, table: &str) -> Result<Vec<String>> {
        let fields: &[&str] = match table {
            "VehicleRegistration" => &["VIN", "LicensePlateNumber"],
            "Vehicle" => &["VIN"],
            "Person" => &["GovId"],
            "DriversLicense" => &[],
            other => return Err(PartiqlError::UnknownTable(other.to_string())),
        };
        Ok(fields.iter().map(|f| f.to_string()).collect())
    }
}

fn query(text: &str) -> Query {
    match parse(text).unwrap() {
        Statement::Select(query) => *query,
        other => panic!("not a query: {other:?}"),
    }
}

fn plan(text: &str) -> SourcePlan {
    let q = query(text);
    plan_sources(&q.from, q.filter.as_ref(), &[], &mut FakeCatalog).unwrap()
}

fn access_kinds(plan: &SourcePlan) -> Vec<String> {
    plan.stages
        .iter()
        .map(|s| match &s.access {
            Access::Scan => "scan".to_string(),
            Access::IndexLookup { field, keys } => format!("index {field} {}", keys.len()),
            Access::IdLookup { keys } => format!("id {}", keys.len()),
        })
        .collect()
}

#[test]
fn indexed_equality_uses_the_index() {
    assert_eq!(
        access_kinds(&plan(
            "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = ?"
        )),
        ["index VIN 1"]
    );
    assert_eq!(
        access_kinds(&plan("SELECT * FROM VehicleRegistration WHERE VIN = 'x'")),
        ["index VIN 1"]
    );
    assert_eq!(
        access_kinds(&plan(
            "SELECT * FROM VehicleRegistration AS r WHERE ? = r.VIN AND r.City = 'x'"
        )),
        ["index VIN 1"]
    );
}

#[test]
fn in_list_on_an_indexed_field_uses_the_index() {
    let p = plan("SELECT * FROM VehicleRegistration AS r WHERE r.VIN IN ('a', 'b', ?)");
    assert_eq!(access_kinds(&p), ["index VIN 3"]);
}

#[test]
fn other_predicates_scan() {
    for text in [
        "SELECT * FROM VehicleRegistration AS r WHERE r.VIN > 'a'",
        "SELECT * FROM VehicleRegistration AS r WHERE r.VIN LIKE 'a%'",
        "SELECT * FROM VehicleRegistration AS r WHERE r.City = 'x'",
        "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = 'a' OR r.City = 'x'",
        "SELECT * FROM VehicleRegistration AS r WHERE r.Owners.VIN = 'a'",
        "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = r.LicensePlateNumber",
        "SELECT * FROM DriversLicense AS d WHERE d.LicenseNumber = 'x'",
    ] {
        assert_eq!(access_kinds(&plan(text)), ["scan"], "{text}");
    }
}

#[test]
fn by_id_and_metadata_id_use_id_lookups() {
    assert_eq!(
        access_kinds(&plan(
            "SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE r_id = ?"
        )),
        ["id 1"]
    );
    assert_eq!(
        access_kinds(&plan(
            "SELECT * FROM _ql_committed_VehicleRegistration AS c WHERE c.metadata.id = ?"
        )),
        ["id 1"]
    );
    assert_eq!(
        access_kinds(&plan(
            "SELECT * FROM history(Vehicle) AS h WHERE h.metadata.id = 'x'"
        )),
        ["id 1"]
    );
    assert_eq!(
        access_kinds(&plan(
            "SELECT * FROM history(Vehicle) AS h WHERE h.data.VIN = 'x'"
        )),
        ["scan"]
    );
}

#[test]
fn joins_look_up_the_inner_side_by_the_outer_key() {
    let p = plan(
        "SELECT v FROM Vehicle AS v INNER JOIN VehicleRegistration AS r ON v.VIN = r.VIN WHERE r.VIN = ?",
    );
    assert_eq!(access_kinds(&p), ["index VIN 1", "index VIN 1"]);
    let p = plan("SELECT * FROM DriversLicense AS d, Person AS p WHERE p.GovId = d.PersonId");
    assert_eq!(access_kinds(&p), ["scan", "index GovId 1"]);
    assert_eq!(p.stages[1].filters.len(), 1);
}

#[test]
fn unnesting_is_planned_as_a_value_source() {
    let p = plan(
        "SELECT o FROM VehicleRegistration AS r, r.Owners.SecondaryOwners AS o WHERE r.VIN = ?",
    );
    assert!(matches!(p.stages[1].source, Source::Value(_)));
    assert_eq!(p.stages[1].alias, "o");
    assert_eq!(access_kinds(&p)[0], "index VIN 1");
}

#[test]
fn lazy_fields_cover_only_top_level_field_filters() {
    let p =
        plan("SELECT * FROM DriversLicense AS d WHERE d.LicenseType = 'A' AND d.Owner.Name = 'x'");
    assert_eq!(
        p.stages[0].lazy_fields,
        Some(vec!["LicenseType".to_string(), "Owner".to_string()])
    );
    let p = plan("SELECT * FROM DriversLicense WHERE LicenseType = 'A'");
    assert_eq!(
        p.stages[0].lazy_fields,
        Some(vec!["LicenseType".to_string()])
    );
    let p = plan("SELECT * FROM DriversLicense AS d WHERE SIZE(d) = 3");
    assert_eq!(p.stages[0].lazy_fields, None);
}

#[test]
fn catalog_and_unknown_tables() {
    let p = plan("SELECT * FROM information_schema.user_tables");
    assert_eq!(p.stages[0].source, Source::Catalog);
    let q = query("SELECT * FROM Nope");
    let error = plan_sources(&q.from, None, &[], &mut FakeCatalog).unwrap_err();
    assert_eq!(error.to_string(), "No such table: Nope");
}

#[test]
fn explain_text_names_scan_or_index() {
    let text = describe(&plan(
        "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = ?",
    ));
    assert!(
        text.starts_with("IndexLookup VehicleRegistration.VIN"),
        "{text}"
    );
    let text = describe(&plan(
        "SELECT * FROM VehicleRegistration AS r WHERE r.City = ?",
    ));
    assert!(text.starts_with("FullScan VehicleRegistration"), "{text}");
}

/// Drivers send keys as parameters: every shape that looks a literal key up looks a parameter
/// up the same way (its value is bound when the stage runs).
#[test]
fn parameters_are_keys_wherever_literals_are() {
    for (with_parameters, with_literals, expected) in [
        (
            "SELECT * FROM Person AS p BY pid WHERE ? = pid",
            "SELECT * FROM Person AS p BY pid WHERE 'x' = pid",
            vec!["id 1"],
        ),
        (
            "SELECT * FROM Person AS p BY pid WHERE pid IN (?, ?)",
            "SELECT * FROM Person AS p BY pid WHERE pid IN ('x', 'y')",
            vec!["id 2"],
        ),
        (
            "SELECT * FROM Person WHERE GovId IN (?, ?, ?)",
            "SELECT * FROM Person WHERE GovId IN ('x', 'y', 'z')",
            vec!["index GovId 3"],
        ),
        (
            "SELECT * FROM VehicleRegistration AS r INNER JOIN Person AS p BY pid ON r.Owners.PrimaryOwner.PersonId = pid WHERE r.VIN = ?",
            "SELECT * FROM VehicleRegistration AS r INNER JOIN Person AS p BY pid ON r.Owners.PrimaryOwner.PersonId = pid WHERE r.VIN = 'x'",
            vec!["index VIN 1", "id 1"],
        ),
        (
            "SELECT * FROM Vehicle AS v, VehicleRegistration AS r WHERE v.VIN = r.VIN AND r.VIN = ?",
            "SELECT * FROM Vehicle AS v, VehicleRegistration AS r WHERE v.VIN = r.VIN AND r.VIN = 'x'",
            vec!["index VIN 1", "index VIN 1"],
        ),
        (
            "SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id IN (?, ?)",
            "SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id IN ('x', 'y')",
            vec!["id 2"],
        ),
    ] {
        assert_eq!(access_kinds(&plan(with_parameters)), expected, "{with_parameters}");
        assert_eq!(access_kinds(&plan(with_literals)), expected, "{with_literals}");
    }
}
