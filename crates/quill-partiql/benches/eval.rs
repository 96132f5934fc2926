//! Evaluator figures over a ledger of 100k VehicleRegistration-like documents:
//! - `WHERE VIN = ?` through the index, end to end (begin, parse, plan, lookup, commit): p50;
//! - the same shape on an unindexed field (a full filtered scan): p50;
//! - filtered full-scan throughput in documents per second.
//!
//! Goals: indexed p50 ≤ 30 µs; scan ≥ 1 M documents/s on one core (release build).
//! Run with `cargo bench -p quill-partiql --bench eval`.

use std::time::{Duration, Instant};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerOptions};

/// Documents loaded.
const DOCUMENTS: usize = 100_000;
/// QLDB's per-transaction document limit.
const DOCUMENTS_PER_TRANSACTION: usize = 40;
/// Timed runs of the indexed query.
const INDEXED_RUNS: usize = 2_000;
/// Timed runs of the scanning query.
const SCAN_RUNS: usize = 15;

fn vin(i: usize) -> String {
    format!("VIN{i:014}")
}

fn document(i: usize) -> Element {
    let text = format!(
        r#"{{VIN: "{vin}", Plate: "P{i:08}", State: "WA", City: "Seattle", PendingPenaltyTicketAmount: {cents}.{rest:02},
            ValidFromDate: 2017-08-21T, ValidToDate: 2020-05-11T,
            Owners: {{PrimaryOwner: {{PersonId: "person{owner}"}}, SecondaryOwners: []}}}}"#,
        vin = vin(i),
        cents = i % 500,
        rest = i % 100,
        owner = i % 977,
    );
    Element::read_one(text).expect("valid document")
}

fn load(ledger: &Ledger) {
    let started = Instant::now();
    let mut tx = ledger.begin().expect("begin");
    quill_partiql::execute(&mut tx, "CREATE TABLE VehicleRegistration", &[]).expect("create table");
    quill_partiql::execute(&mut tx, "CREATE INDEX ON VehicleRegistration (VIN)", &[])
        .expect("create index");
    tx.commit().expect("commit");
    for batch in (0..DOCUMENTS)
        .collect::<Vec<_>>()
        .chunks(DOCUMENTS_PER_TRANSACTION)
    {
        let mut tx = ledger.begin().expect("begin");
        for &i in batch {
            tx.insert("VehicleRegistration", document(i))
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    println!(
        "loaded {DOCUMENTS} documents in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs `statement` `runs` times in fresh transactions; returns sorted durations.
fn time(
    ledger: &Ledger,
    statement: &str,
    parameter: impl Fn(usize) -> Element,
    runs: usize,
    expected_rows: usize,
) -> Vec<Duration> {
    let mut durations = Vec::with_capacity(runs);
    for run in 0..runs {
        let parameters = [parameter(run)];
        let started = Instant::now();
        let mut tx = ledger.begin().expect("begin");
        let rows = quill_partiql::execute(&mut tx, statement, &parameters).expect("query");
        tx.commit().expect("commit");
        durations.push(started.elapsed());
        assert_eq!(rows.len(), expected_rows, "{statement}");
    }
    durations.sort();
    durations
}

/// The ledger's own scan cost (no-op visitor) and the cost of finding one field lazily:
/// the floor under the evaluator's filtered scan.
fn baseline(ledger: &Ledger) {
    let mut tx = ledger.begin().expect("begin");
    let started = Instant::now();
    let mut count = 0usize;
    tx.scan("VehicleRegistration", &mut |_| {
        count += 1;
        Ok(true)
    })
    .expect("scan");
    let elapsed = started.elapsed();
    println!(
        "ledger scan, no-op visitor   {:>10.0} documents/s",
        count as f64 / elapsed.as_secs_f64()
    );
    let started = Instant::now();
    let mut found = 0usize;
    tx.scan("VehicleRegistration", &mut |document| {
        let mut reader = ion_rs::Reader::new(ion_rs::v1_0::Binary, document.ion)?;
        let value = reader.next()?.expect("one value");
        if let ion_rs::ValueRef::Struct(fields) = value.read()? {
            if fields.find("Plate")?.is_some() {
                found += 1;
            }
        }
        Ok(true)
    })
    .expect("scan");
    let elapsed = started.elapsed();
    println!(
        "ledger scan + lazy field find {:>10.0} documents/s ({found} found)",
        count as f64 / elapsed.as_secs_f64()
    );
}

fn p50(durations: &[Duration]) -> Duration {
    durations[durations.len() / 2]
}

const QUERY: &str = "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = ?";

fn print_plan(ledger: &Ledger) {
    let mut tx = ledger.begin().expect("begin");
    let plan = quill_partiql::explain(&mut tx, QUERY).expect("explain");
    println!("plan: {}", plan.replace('\n', " | "));
}

/// Drops the VIN index, so the same query has to scan.
fn drop_vin_index(ledger: &Ledger) {
    let mut tx = ledger.begin().expect("begin");
    let rows = quill_partiql::execute(
        &mut tx,
        "SELECT VALUE i.indexId FROM information_schema.user_tables AS t, t.indexes AS i WHERE t.name = 'VehicleRegistration'",
        &[],
    )
    .expect("catalog");
    let index_id = rows[0].as_text().expect("index id").to_string();
    let statement = format!("DROP INDEX \"{index_id}\" ON VehicleRegistration WITH (purge = true)");
    quill_partiql::execute(&mut tx, &statement, &[]).expect("drop index");
    tx.commit().expect("commit");
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::create(dir.path(), "bench", LedgerOptions::default()).expect("ledger");
    load(&ledger);
    baseline(&ledger);
    let spread = |run: usize| (run * 7_919) % DOCUMENTS;
    let parameter = |run: usize| Element::string(vin(spread(run)));

    print_plan(&ledger);
    let indexed = time(&ledger, QUERY, parameter, INDEXED_RUNS, 1);
    println!(
        "indexed    WHERE VIN = ? p50 {:>10.1} µs (goal ≤ 30 µs)",
        p50(&indexed).as_secs_f64() * 1e6
    );

    drop_vin_index(&ledger);
    print_plan(&ledger);
    let scanned = time(&ledger, QUERY, parameter, SCAN_RUNS, 1);
    let scan_p50 = p50(&scanned);
    println!(
        "no index   WHERE VIN = ? p50 {:>10.1} µs",
        scan_p50.as_secs_f64() * 1e6
    );
    println!(
        "filtered full scan          {:>10.0} documents/s (goal ≥ 1,000,000)",
        DOCUMENTS as f64 / scan_p50.as_secs_f64()
    );
}
