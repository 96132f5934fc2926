//! Parser throughput on one core: prints parses per second for a short QLDB lookup and a longer
//! statement with joins, unnesting, functions and literals. Run with
//! `cargo bench -p quill-partiql --bench parse`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use quill_partiql::parser::parse;

const SHORT: &str = "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = ?";

const LITERAL: &str = "SELECT * FROM VehicleRegistration AS r WHERE r.VIN = '1N4AL11D75C109151'";

const LONG: &str = "SELECT r.VIN, r.LicensePlateNumber AS plate, UPPER(p.LastName) AS owner, \
    o.PersonId FROM VehicleRegistration AS r BY r_id INNER JOIN Person AS p ON \
    r.Owners.PrimaryOwner.PersonId = p.GovId, r.Owners.SecondaryOwners AS o AT i \
    WHERE r.PendingPenaltyTicketAmount BETWEEN 10.50 AND 1e3 AND r.ValidFromDate > \
    `2019-06-05T00:00:00Z` AND p.Address LIKE '%Seattle%' AND r_id IN (?, ?, 'abc')";

/// How long each statement is measured after warm-up.
const MEASURE_TIME: Duration = Duration::from_secs(2);
/// Parses between clock reads, so timing overhead stays negligible.
const BATCH: u32 = 1_000;

fn measure(name: &str, text: &str) {
    parse(text).expect("benchmark statement must parse");
    for _ in 0..BATCH * 10 {
        black_box(parse(black_box(text)).ok());
    }
    let start = Instant::now();
    let mut parses: u64 = 0;
    while start.elapsed() < MEASURE_TIME {
        for _ in 0..BATCH {
            black_box(parse(black_box(text)).ok());
        }
        parses += u64::from(BATCH);
    }
    let seconds = start.elapsed().as_secs_f64();
    let rate = parses as f64 / seconds;
    println!(
        "{name:>7} ({} chars): {rate:>10.0} parses/s ({:.2} µs/parse)",
        text.chars().count(),
        1e6 / rate
    );
}

fn main() {
    measure("short", SHORT);
    measure("literal", LITERAL);
    measure("long", LONG);
}
