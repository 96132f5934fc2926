//! The concurrent writer pool and the documents every ledger benchmark writes. A run is
//! bounded by a deadline or by a number of claimed iterations, never open-ended.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ion_rs::Element;
use quill_ledger::{Ledger, LedgerError};

use super::stats::Latencies;

/// Writer threads any run may start: far above the 128 the brief asks for, low enough
/// that a mistyped flag cannot exhaust the process's threads.
pub const WRITERS_MAX: usize = 512;
/// Failed iterations a run tolerates before it stops and reports the first error.
const ERRORS_MAX: u64 = 100;
/// Documents one loading transaction writes: QLDB's per-transaction limit.
pub const DOCUMENTS_PER_BATCH: usize = quill_ledger::limits::DOCUMENTS_PER_TRANSACTION_MAX;
/// Table every ledger benchmark writes to.
pub const TABLE: &str = "Vehicle";

/// When a writer pool stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this much wall time.
    After(Duration),
    /// After this many iterations in total (across writers).
    Iterations(u64),
}

/// What a writer pool did.
#[derive(Debug)]
pub struct RunOutcome {
    /// Iterations that succeeded.
    pub completed: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Latency of each successful iteration.
    pub latencies: Latencies,
    /// The first error, if the run stopped on errors.
    pub first_error: Option<String>,
    /// Iterations that failed.
    pub errors: u64,
}

/// Runs `work(iteration)` on `writers` threads until `stop`, timing each call. Iteration
/// numbers are unique across threads, from 0.
pub fn run_writers<F>(writers: usize, stop: Stop, work: F) -> RunOutcome
where
    F: Fn(u64) -> anyhow::Result<()> + Sync,
{
    let writers = writers.clamp(1, WRITERS_MAX);
    let next = AtomicU64::new(0);
    let completed = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let halt = AtomicBool::new(false);
    let first_error = Mutex::new(None::<String>);
    let merged = Mutex::new(Latencies::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..writers {
            scope.spawn(|| {
                let mut latencies = Latencies::new();
                loop {
                    if halt.load(Ordering::Relaxed) {
                        break;
                    }
                    let iteration = next.fetch_add(1, Ordering::Relaxed);
                    let more = match stop {
                        Stop::After(limit) => start.elapsed() < limit,
                        Stop::Iterations(total) => iteration < total,
                    };
                    if !more {
                        break;
                    }
                    let began = Instant::now();
                    match work(iteration) {
                        Ok(()) => {
                            latencies.record(began.elapsed());
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert_with(|| format!("{e:#}"));
                            if errors.fetch_add(1, Ordering::Relaxed) + 1 >= ERRORS_MAX {
                                halt.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                merged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .merge(latencies);
            });
        }
    });
    RunOutcome {
        completed: completed.into_inner(),
        elapsed: start.elapsed(),
        latencies: merged.into_inner().unwrap_or_else(|p| p.into_inner()),
        first_error: first_error.into_inner().unwrap_or_else(|p| p.into_inner()),
        errors: errors.into_inner(),
    }
}

impl RunOutcome {
    /// Fails with the first error if the run stopped because of errors.
    pub fn check(self, what: &str) -> anyhow::Result<RunOutcome> {
        if self.errors >= ERRORS_MAX {
            anyhow::bail!(
                "{what}: {} iterations failed; first error: {}",
                self.errors,
                self.first_error.unwrap_or_default()
            );
        }
        Ok(self)
    }
}

const COLORS: [&str; 4] = ["Red", "Blue", "Green", "Black"];

/// The VIN of document number `n`: unique, so an index on it has one document per key.
pub fn vin(n: u64) -> String {
    format!("1N4AL11D{n:09}")
}

/// A small vehicle document (about 90 bytes of Ion binary), numbered `n`.
pub fn vehicle(n: u64) -> Element {
    Element::struct_builder()
        .with_field("VIN", Element::string(vin(n)))
        .with_field("Make", Element::string("Quill"))
        .with_field("Year", Element::int(2000 + (n % 25) as i64))
        .with_field(
            "Color",
            Element::string(COLORS[(n % COLORS.len() as u64) as usize]),
        )
        .with_field("Mileage", Element::int((n * 7919 % 200_000) as i64))
        .build()
        .into()
}

/// Creates `TABLE` (and an index on `VIN` if asked) in one transaction.
pub fn create_table(ledger: &Ledger, with_index: bool) -> anyhow::Result<()> {
    ledger.transact(|tx| {
        tx.create_table(TABLE, None)?;
        if with_index {
            tx.create_index(TABLE, "VIN")?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Inserts documents `first .. first + count` in one transaction; returns their ids.
pub fn insert_batch(ledger: &Ledger, first: u64, count: usize) -> Result<Vec<String>, LedgerError> {
    ledger.transact(|tx| {
        (0..count as u64)
            .map(|i| tx.insert(TABLE, vehicle(first + i)))
            .collect()
    })
}

/// Which documents a [`load`] writes and from how many threads.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    /// Number of the first document (documents are numbered so VINs stay unique).
    pub first_document: u64,
    /// Documents to write.
    pub documents: u64,
    /// Writer threads.
    pub writers: usize,
    /// Whether to collect the new document ids.
    pub keep_ids: bool,
}

/// Loads documents in transactions of [`DOCUMENTS_PER_BATCH`] from several threads;
/// returns the outcome (one iteration per transaction) and the ids (if kept), in order.
pub fn load(ledger: &Ledger, plan: LoadPlan) -> anyhow::Result<(RunOutcome, Vec<String>)> {
    let batches = plan.documents.div_ceil(DOCUMENTS_PER_BATCH as u64);
    let ids = Mutex::new(Vec::new());
    let outcome = run_writers(plan.writers, Stop::Iterations(batches), |batch| {
        let offset = batch * DOCUMENTS_PER_BATCH as u64;
        let count = (plan.documents - offset).min(DOCUMENTS_PER_BATCH as u64) as usize;
        let batch_ids = insert_batch(ledger, plan.first_document + offset, count)?;
        if plan.keep_ids {
            ids.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((batch, batch_ids));
        }
        Ok(())
    })
    .check("loading documents")?;
    let mut by_batch = ids.into_inner().unwrap_or_else(|p| p.into_inner());
    by_batch.sort_unstable_by_key(|(batch, _)| *batch);
    Ok((
        outcome,
        by_batch.into_iter().flat_map(|(_, ids)| ids).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::ScratchDir;
    use quill_ledger::LedgerOptions;

    #[test]
    fn iteration_bound_is_exact_across_writers() {
        let seen = Mutex::new(Vec::new());
        let outcome = run_writers(4, Stop::Iterations(50), |i| {
            seen.lock().unwrap().push(i);
            Ok(())
        });
        assert_eq!(outcome.completed, 50);
        assert_eq!(outcome.latencies.len(), 50);
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_failing_workload_stops_and_reports_its_error() {
        let outcome = run_writers(2, Stop::After(Duration::from_secs(30)), |_| {
            anyhow::bail!("disk on fire")
        });
        assert!(outcome.errors >= ERRORS_MAX);
        let error = outcome.check("test").unwrap_err().to_string();
        assert!(error.contains("disk on fire"), "{error}");
    }

    #[test]
    fn load_writes_every_document_once_and_returns_ids_in_order() {
        let dir = ScratchDir::new(None, "load-test").unwrap();
        let ledger =
            Ledger::create(&dir.path().join("l"), "bench", LedgerOptions::default()).unwrap();
        create_table(&ledger, true).unwrap();
        let plan = LoadPlan {
            first_document: 0,
            documents: 95,
            writers: 3,
            keep_ids: true,
        };
        let (outcome, ids) = load(&ledger, plan).unwrap();
        assert_eq!(outcome.completed, 3);
        assert_eq!(ids.len(), 95);
        let found = ledger
            .transact(|tx| tx.index_lookup(TABLE, "VIN", &Element::string(vin(94))))
            .unwrap()
            .expect("indexed");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, ids[94]);
    }
}
