//! `quill bench dmv`: a mixed workload through the QLDB wire protocol, modelled on AWS's
//! vehicle-registration (DMV) sample application. It creates the sample's four tables with
//! their indexes (Vehicle.VIN, Person.GovId, VehicleRegistration.VIN and
//! .LicensePlateNumber, DriversLicense.LicenseNumber and .PersonId), preloads `--preload`
//! persons, vehicles, registrations and driver's licences, then runs the sample's transactions
//! from every session, each statement parameterised as the drivers send it:
//!
//! - **lookup**: a vehicle by VIN and a person by GovId (two indexed reads);
//! - **transfer** (`transfer_vehicle_ownership`): the registration's primary owner by VIN,
//!   that person by document id, the new owner's id by GovId, then
//!   `UPDATE VehicleRegistration … SET r.Owners.PrimaryOwner.PersonId = ? WHERE r.VIN = ?`;
//! - **secondary-owner** (`add_secondary_owner`): the person's id by GovId, the
//!   registration's secondary owners by VIN, then
//!   `FROM VehicleRegistration AS v WHERE v.VIN = ? INSERT INTO v.Owners.SecondaryOwners VALUE ?`
//!   — or, when that person is already a secondary owner (the sample then does nothing), the
//!   bench removes them, so that every such transaction writes and the lists stay short;
//! - **history** (`query_history`): the registration's id by VIN, then its revisions with
//!   `SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = ?`.
//!
//! Every transaction is one StartTransaction, its statements, and CommitTransaction with the
//! driver-computed CommitDigest; OCC conflicts are retried (as drivers do) and counted. It
//! prints, per session count, tx/s with p50/p99 per transaction kind and in total, and one
//! machine-readable `dmv sessions=… kind=… …` line per kind and for the total.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ion_rs::Element;

use super::ledger::XorShift;
use super::load::{self, vin};
use super::stats::{fmt_duration, rate, Latencies};
use super::wire::{self, ion_base64, Bench, Session, Target};

/// Sessions one step may open (as `quill bench wire`).
const SESSIONS_MAX: usize = 1_024;
/// Documents one preload transaction inserts: QLDB's per-transaction limit.
const PRELOAD_BATCH: usize = load::DOCUMENTS_PER_BATCH;
/// Candidate secondary owners of one vehicle: a person is added when absent and removed
/// when present, so a registration never lists more than this many.
const SECONDARY_CANDIDATES: u64 = 4;

/// The sample's tables and their indexed fields.
const SCHEMA: [(&str, &[&str]); 4] = [
    ("Person", &["GovId"]),
    ("Vehicle", &["VIN"]),
    ("VehicleRegistration", &["VIN", "LicensePlateNumber"]),
    ("DriversLicense", &["LicenseNumber", "PersonId"]),
];

const VEHICLE_BY_VIN: &str = "SELECT * FROM Vehicle AS v WHERE v.VIN = ?";
const PERSON_BY_GOV_ID: &str = "SELECT * FROM Person AS p WHERE p.GovId = ?";
const PRIMARY_OWNER: &str =
    "SELECT Owners.PrimaryOwner.PersonId FROM VehicleRegistration AS v WHERE v.VIN = ?";
const PERSON_BY_ID: &str = "SELECT p.* FROM Person AS p BY pid WHERE pid = ?";
const PERSON_ID_BY_GOV_ID: &str = "SELECT id FROM Person AS t BY id WHERE t.GovId = ?";
const SET_PRIMARY_OWNER: &str =
    "UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ? WHERE r.VIN = ?";
const SECONDARY_OWNERS: &str =
    "SELECT Owners.SecondaryOwners FROM VehicleRegistration AS v WHERE v.VIN = ?";
const ADD_SECONDARY_OWNER: &str =
    "FROM VehicleRegistration AS v WHERE v.VIN = ? INSERT INTO v.Owners.SecondaryOwners VALUE ?";
const REMOVE_SECONDARY_OWNER: &str = "FROM VehicleRegistration AS r, r.Owners.SecondaryOwners AS o WHERE r.VIN = ? AND o.PersonId = ? REMOVE o";
const REGISTRATION_ID_BY_VIN: &str =
    "SELECT id FROM VehicleRegistration AS t BY id WHERE t.VIN = ?";
const REGISTRATION_HISTORY: &str =
    "SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = ?";

/// Arguments of `quill bench dmv`.
#[derive(clap::Args, Debug)]
pub struct DmvArgs {
    #[command(flatten)]
    pub target: wire::TargetArgs,
    /// Ledger to create and load; it must not hold the sample's tables yet.
    #[arg(long, default_value = "dmv-bench")]
    pub ledger: String,
    /// Concurrent session counts to run, one step each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub sessions: Vec<usize>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub seconds: u64,
    /// Persons, vehicles, registrations and driver's licences each preloaded.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(8..=1_000_000))]
    pub preload: u64,
}

/// Runs `quill bench dmv`.
pub fn run(args: DmvArgs) -> anyhow::Result<()> {
    let (scratch, _) = wire::scratch_with_fsync_baseline("dmv", args.target.dir.as_deref())?;
    let bench = Bench::start(&args.target, &scratch.path().join("data"))?;
    let outcome = bench.client.block_on(load_steps(&bench.target, &args));
    bench.stop()?;
    outcome
}

async fn load_steps(target: &Target, args: &DmvArgs) -> anyhow::Result<()> {
    let began = Instant::now();
    prepare(target, &args.ledger, args.preload).await?;
    println!(
        "ledger {}: {} each of persons, vehicles, registrations, driver's licences loaded in {}",
        args.ledger,
        args.preload,
        fmt_duration(began.elapsed())
    );
    for &sessions in args.sessions.iter().take(16) {
        let sessions = sessions.clamp(1, SESSIONS_MAX);
        let step = run_step(
            target,
            &args.ledger,
            args.preload,
            sessions,
            Duration::from_secs(args.seconds),
        )
        .await?;
        step.print(sessions);
    }
    Ok(())
}

/// The sample's transactions, as the bench names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Lookup,
    Transfer,
    SecondaryOwner,
    History,
}

const KINDS: [Kind; 4] = [
    Kind::Lookup,
    Kind::Transfer,
    Kind::SecondaryOwner,
    Kind::History,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Lookup => "lookup",
            Kind::Transfer => "transfer",
            Kind::SecondaryOwner => "secondary-owner",
            Kind::History => "history",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Lookup => 0,
            Kind::Transfer => 1,
            Kind::SecondaryOwner => 2,
            Kind::History => 3,
        }
    }
}

use Kind::{History as H, Lookup as L, SecondaryOwner as S, Transfer as T};

/// The order every session runs its transactions in, repeated: each kind once first (so even
/// a one-second run does every kind), then by weight: lookups 50 %, transfers 20 %,
/// secondary owners 15 %, history reads 15 %.
const SCHEDULE: [Kind; 20] = [L, T, S, H, L, L, T, L, S, L, H, L, T, L, L, S, L, H, T, L];

/// The GovId of person `n` (also their licence number).
fn gov_id(n: u64) -> String {
    format!("GOV{n:09}")
}

/// Person `n`, shaped as the sample's `Person` documents.
fn person(n: u64) -> anyhow::Result<Element> {
    let text = format!(
        "{{FirstName: \"First{n}\", LastName: \"Last{n}\", DOB: {}-{:02}-{:02}T, GovId: \"{}\", \
         GovIdType: \"Driver License\", Address: \"{} University Street, Seattle, WA, 98109\"}}",
        1940 + n % 60,
        1 + n % 12,
        1 + n % 28,
        gov_id(n),
        1 + n % 9_000
    );
    Ok(Element::read_one(text)?)
}

/// Vehicle `n`, shaped as the sample's `Vehicle` documents.
fn vehicle(n: u64) -> anyhow::Result<Element> {
    const MAKES: [(&str, &str, &str); 4] = [
        ("Sedan", "Audi", "A5"),
        ("Sedan", "Tesla", "Model S"),
        ("Motorcycle", "Ducati", "Monster 1200"),
        ("Semi", "Ford", "F 150"),
    ];
    let (kind, make, model) = MAKES[(n % MAKES.len() as u64) as usize];
    let text = format!(
        "{{VIN: \"{}\", Type: \"{kind}\", Year: {}, Make: \"{make}\", Model: \"{model}\", Color: \"Silver\"}}",
        vin(n),
        2000 + n % 25
    );
    Ok(Element::read_one(text)?)
}

/// The registration of vehicle `n`, owned by the person whose document id is `owner`.
fn registration(n: u64, owner: &str) -> anyhow::Result<Element> {
    let text = format!(
        "{{VIN: \"{}\", LicensePlateNumber: \"PL{n:08}\", State: \"WA\", City: \"Seattle\", \
         PendingPenaltyTicketAmount: 90.25, ValidFromDate: 2017-08-21T, ValidToDate: 2020-05-11T, \
         Owners: {{PrimaryOwner: {{PersonId: \"{owner}\"}}, SecondaryOwners: []}}}}",
        vin(n)
    );
    Ok(Element::read_one(text)?)
}

/// The driver's licence of person `n`, whose document id is `person_id`.
fn drivers_license(n: u64, person_id: &str) -> anyhow::Result<Element> {
    let text = format!(
        "{{PersonId: \"{person_id}\", LicenseNumber: \"{}\", LicenseType: \"Full\", \
         ValidFromDate: 2016-12-20T, ValidToDate: 2026-11-15T}}",
        gov_id(n)
    );
    Ok(Element::read_one(text)?)
}

/// One open transaction of a session, folding each statement into its CommitDigest.
struct Tx<'s> {
    session: &'s mut Session,
    id: String,
    digest: quill_verify::CommitDigest,
}

impl<'s> Tx<'s> {
    async fn begin(session: &'s mut Session) -> anyhow::Result<Tx<'s>> {
        let id = session.start_transaction().await?;
        let digest = quill_verify::CommitDigest::new(&id);
        Ok(Tx {
            session,
            id,
            digest,
        })
    }

    async fn run(
        &mut self,
        statement: &str,
        parameters: &[Element],
    ) -> anyhow::Result<Vec<Element>> {
        self.digest.add_statement(statement, parameters);
        let encoded = parameters
            .iter()
            .map(ion_base64)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let encoded: Vec<&str> = encoded.iter().map(String::as_str).collect();
        self.session.execute(&self.id, statement, &encoded).await
    }

    /// Runs a statement that must return exactly one row.
    async fn one(&mut self, statement: &str, parameters: &[Element]) -> anyhow::Result<Element> {
        let mut rows = self.run(statement, parameters).await?;
        anyhow::ensure!(
            rows.len() == 1,
            "{statement} with {parameters:?} returned {} rows, expected 1",
            rows.len()
        );
        Ok(rows.remove(0))
    }

    async fn commit(self) -> anyhow::Result<()> {
        self.session.commit(&self.id, &self.digest).await
    }
}

/// Field `name` of a row, as text.
fn text(row: &Element, name: &str) -> anyhow::Result<String> {
    row.as_struct()
        .and_then(|s| s.get(name))
        .and_then(Element::as_text)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("row {row} has no text field {name}"))
}

/// Creates the ledger, the tables and their indexes, and loads `count` of each document.
async fn prepare(target: &Target, ledger: &str, count: u64) -> anyhow::Result<()> {
    let mut http = target.connect().await?;
    wire::create_ledger(&mut http, ledger).await?;
    let mut session = Session::start(http, ledger).await?;
    for (table, fields) in SCHEMA {
        let mut tx = Tx::begin(&mut session).await?;
        tx.run(&format!("CREATE TABLE {table}"), &[])
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "ledger {ledger}: CREATE TABLE {table} failed ({e}); the bench needs a ledger \
                     without the sample's tables (pass a new --ledger)"
                )
            })?;
        tx.commit().await?;
        for field in fields {
            let mut tx = Tx::begin(&mut session).await?;
            tx.run(&format!("CREATE INDEX ON {table} ({field})"), &[])
                .await?;
            tx.commit().await?;
        }
    }
    let person_ids = insert_all(&mut session, "Person", (0..count).map(person)).await?;
    insert_all(&mut session, "Vehicle", (0..count).map(vehicle)).await?;
    insert_all(
        &mut session,
        "VehicleRegistration",
        (0..count).map(|n| registration(n, &person_ids[n as usize])),
    )
    .await?;
    insert_all(
        &mut session,
        "DriversLicense",
        (0..count).map(|n| drivers_license(n, &person_ids[n as usize])),
    )
    .await?;
    session.end().await;
    Ok(())
}

/// Inserts `documents` into `table`, [`PRELOAD_BATCH`] per transaction; returns their ids in
/// order.
async fn insert_all(
    session: &mut Session,
    table: &str,
    documents: impl Iterator<Item = anyhow::Result<Element>>,
) -> anyhow::Result<Vec<String>> {
    let statement = format!("INSERT INTO {table} ?");
    let documents = documents.collect::<anyhow::Result<Vec<_>>>()?;
    let mut ids = Vec::with_capacity(documents.len());
    for batch in documents.chunks(PRELOAD_BATCH) {
        let list = Element::from(ion_rs::List::from(batch.to_vec()));
        let mut tx = Tx::begin(session).await?;
        let rows = tx.run(&statement, &[list]).await?;
        tx.commit().await?;
        for row in &rows {
            ids.push(text(row, "documentId")?);
        }
    }
    Ok(ids)
}

/// What one step measured, per kind (indexed by [`Kind::index`]).
struct Step {
    elapsed: Duration,
    committed: [u64; 4],
    conflicts: [u64; 4],
    latencies: [Latencies; 4],
}

impl Step {
    fn new() -> Step {
        Step {
            elapsed: Duration::ZERO,
            committed: [0; 4],
            conflicts: [0; 4],
            latencies: Default::default(),
        }
    }

    fn merge(&mut self, other: Step) {
        for (i, latencies) in other.latencies.into_iter().enumerate() {
            self.committed[i] += other.committed[i];
            self.conflicts[i] += other.conflicts[i];
            self.latencies[i].merge(latencies);
        }
    }

    fn print(self, sessions: usize) {
        let Step {
            elapsed,
            committed,
            conflicts,
            latencies,
        } = self;
        let mut total = Latencies::new();
        println!(
            "\nsessions {sessions}, {:.1} s\n{:<16} {:>10} {:>10} {:>12} {:>12} {:>12}",
            elapsed.as_secs_f64(),
            "transaction",
            "committed",
            "tx/s",
            "p50",
            "p99",
            "occ retries"
        );
        let mut rows = Vec::with_capacity(KINDS.len() + 1);
        for (kind, mut latencies) in KINDS.into_iter().zip(latencies) {
            let (p50, p99) = latencies.p50_p99();
            let i = kind.index();
            rows.push((kind.name(), committed[i], conflicts[i], p50, p99));
            total.merge(latencies);
        }
        let (p50, p99) = total.p50_p99();
        rows.push((
            "total",
            committed.iter().sum(),
            conflicts.iter().sum(),
            p50,
            p99,
        ));
        for (name, committed, conflicts, p50, p99) in &rows {
            println!(
                "{name:<16} {committed:>10} {:>10.0} {:>12} {:>12} {conflicts:>12}",
                rate(*committed, elapsed),
                fmt_duration(*p50),
                fmt_duration(*p99),
            );
        }
        for (name, committed, conflicts, p50, p99) in &rows {
            println!(
                "dmv sessions={sessions} kind={name} transactions={committed} tx_per_sec={:.1} p50_us={} p99_us={} occ={conflicts}",
                rate(*committed, elapsed),
                p50.as_micros(),
                p99.as_micros(),
            );
        }
    }
}

async fn run_step(
    target: &Target,
    ledger: &str,
    preload: u64,
    sessions: usize,
    duration: Duration,
) -> anyhow::Result<Step> {
    let start_line = Arc::new(tokio::sync::Barrier::new(sessions));
    let mut tasks = Vec::with_capacity(sessions);
    for worker in 0..sessions {
        let (ledger, start_line) = (ledger.to_owned(), Arc::clone(&start_line));
        tasks.push(target.spawn_session(worker, move |http| async move {
            let session = Session::start(http, &ledger).await?;
            start_line.wait().await;
            session_loop(session, preload, worker as u64, duration).await
        })?);
    }
    let began = Instant::now();
    let mut step = Step::new();
    for task in tasks {
        step.merge(task.await??);
    }
    step.elapsed = began.elapsed().max(duration);
    Ok(step)
}

/// One session's transactions, in [`SCHEDULE`] order, until `duration` has passed.
async fn session_loop(
    mut session: Session,
    preload: u64,
    worker: u64,
    duration: Duration,
) -> anyhow::Result<Step> {
    let began = Instant::now();
    let mut step = Step::new();
    let mut random = XorShift::new((worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut slot = 0usize;
    while began.elapsed() < duration {
        let kind = SCHEDULE[slot % SCHEDULE.len()];
        slot += 1;
        let vehicle = random.below(preload);
        let person = match kind {
            Kind::SecondaryOwner => (vehicle + 1 + random.below(SECONDARY_CANDIDATES)) % preload,
            _ => random.below(preload),
        };
        let started = Instant::now();
        // OCC conflicts are retried with the same inputs, as drivers do, and counted; the
        // latency includes the retries. Retries stop only at the deadline.
        loop {
            match transaction(&mut session, kind, vehicle, person).await {
                Ok(()) => {
                    step.latencies[kind.index()].record(started.elapsed());
                    step.committed[kind.index()] += 1;
                    break;
                }
                Err(e) if e.to_string().contains("OccConflictException") => {
                    step.conflicts[kind.index()] += 1;
                    if began.elapsed() >= duration {
                        break;
                    }
                }
                Err(e) => return Err(e.context(format!("{} transaction", kind.name()))),
            }
        }
    }
    session.end().await;
    Ok(step)
}

/// One transaction of `kind` on vehicle number `vehicle` and person number `person`.
async fn transaction(
    session: &mut Session,
    kind: Kind,
    vehicle: u64,
    person: u64,
) -> anyhow::Result<()> {
    let vin = Element::string(vin(vehicle));
    let gov_id = Element::string(gov_id(person));
    let mut tx = Tx::begin(session).await?;
    match kind {
        Kind::Lookup => {
            tx.one(VEHICLE_BY_VIN, &[vin]).await?;
            tx.one(PERSON_BY_GOV_ID, &[gov_id]).await?;
        }
        Kind::Transfer => {
            let owner = tx.one(PRIMARY_OWNER, std::slice::from_ref(&vin)).await?;
            let owner = Element::string(text(&owner, "PersonId")?);
            // The sample checks the current owner's GovId before transferring.
            text(&tx.one(PERSON_BY_ID, &[owner]).await?, "GovId")?;
            let new_owner = tx.one(PERSON_ID_BY_GOV_ID, &[gov_id]).await?;
            let new_owner = Element::string(text(&new_owner, "id")?);
            tx.one(SET_PRIMARY_OWNER, &[new_owner, vin]).await?;
        }
        Kind::SecondaryOwner => {
            let id = text(&tx.one(PERSON_ID_BY_GOV_ID, &[gov_id]).await?, "id")?;
            let owners = tx.one(SECONDARY_OWNERS, std::slice::from_ref(&vin)).await?;
            let registered = owners
                .as_struct()
                .and_then(|s| s.get("SecondaryOwners"))
                .and_then(Element::as_sequence)
                .is_some_and(|owners| {
                    owners
                        .elements()
                        .any(|o| text(o, "PersonId").is_ok_and(|p| p == id))
                });
            if registered {
                tx.one(REMOVE_SECONDARY_OWNER, &[vin, Element::string(id)])
                    .await?;
            } else {
                let owner: Element = ion_rs::Struct::builder()
                    .with_field("PersonId", Element::string(id))
                    .build()
                    .into();
                tx.one(ADD_SECONDARY_OWNER, &[vin, owner]).await?;
            }
        }
        Kind::History => {
            let id = text(&tx.one(REGISTRATION_ID_BY_VIN, &[vin]).await?, "id")?;
            let revisions = tx.run(REGISTRATION_HISTORY, &[Element::string(id)]).await?;
            anyhow::ensure!(!revisions.is_empty(), "a registration without history");
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_starts_with_every_kind_and_keeps_the_documented_mix() {
        assert_eq!(SCHEDULE[..KINDS.len()], KINDS);
        let share = |kind: Kind| SCHEDULE.iter().filter(|k| **k == kind).count();
        // 50 / 20 / 15 / 15 %, the weights scripts/pg_compare.sh --dmv gives pgbench.
        assert_eq!([share(L), share(T), share(S), share(H)], [10, 4, 3, 3]);
    }

    #[test]
    fn documents_carry_the_keys_the_transactions_look_up() {
        let field = |document: &Element, name: &str| text(document, name).unwrap();
        assert_eq!(field(&person(7).unwrap(), "GovId"), gov_id(7));
        assert_eq!(field(&vehicle(7).unwrap(), "VIN"), vin(7));
        let registration = registration(7, "owner-id").unwrap();
        assert_eq!(field(&registration, "VIN"), vin(7));
        let owners = registration.as_struct().unwrap().get("Owners").unwrap();
        let primary = owners.as_struct().unwrap().get("PrimaryOwner").unwrap();
        assert_eq!(field(primary, "PersonId"), "owner-id");
        let license = drivers_license(7, "person-id").unwrap();
        assert_eq!(field(&license, "PersonId"), "person-id");
        assert_eq!(field(&license, "LicenseNumber"), gov_id(7));
    }
}
