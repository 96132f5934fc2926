//! Counters for `GET /metrics`, rendered in the Prometheus text format. Plain atomics: the hot
//! path (a commit) pays a few relaxed increments, never a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (milliseconds) of the commit latency histogram's buckets; commits are
/// dominated by one fsync, so the range spans a fast NVMe to a slow network disk.
const COMMIT_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];

/// Values read at render time from the state that owns them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    pub active_sessions: usize,
    pub ledgers: usize,
    pub failed_ledgers: usize,
    /// Bytes reserved by request bodies being read before their signature can be checked.
    pub unverified_body_bytes: usize,
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    commits: AtomicU64,
    occ_conflicts: AtomicU64,
    statements: AtomicU64,
    statement_errors: AtomicU64,
    requests: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS_MS.len()],
    commit_count: AtomicU64,
    commit_sum_micros: AtomicU64,
}

impl Metrics {
    /// One HTTP request served.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// One ExecuteStatement ran (successfully or not).
    pub fn statement(&self, succeeded: bool) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        if !succeeded {
            self.statement_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One OCC conflict at commit.
    pub fn occ_conflict(&self) {
        self.occ_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// One successful commit that took `latency`.
    pub fn commit(&self, latency: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.commit_sum_micros.fetch_add(micros, Ordering::Relaxed);
        let millis = micros.div_ceil(1_000);
        if let Some(bucket) = COMMIT_BUCKETS_MS.iter().position(|&bound| millis <= bound) {
            self.commit_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, gauges: Gauges) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        counter(
            "quill_requests_total",
            "HTTP requests served.",
            "counter",
            load(&self.requests),
        );
        counter(
            "quill_commits_total",
            "Transactions committed.",
            "counter",
            load(&self.commits),
        );
        counter(
            "quill_occ_conflicts_total",
            "Commits refused by optimistic concurrency control.",
            "counter",
            load(&self.occ_conflicts),
        );
        counter(
            "quill_statements_total",
            "Statements executed.",
            "counter",
            load(&self.statements),
        );
        counter(
            "quill_statement_errors_total",
            "Statements that failed.",
            "counter",
            load(&self.statement_errors),
        );
        counter(
            "quill_active_sessions",
            "Open sessions.",
            "gauge",
            gauges.active_sessions as u64,
        );
        counter(
            "quill_ledgers",
            "Ledgers held by this server.",
            "gauge",
            gauges.ledgers as u64,
        );
        counter(
            "quill_ledgers_failed",
            "Ledgers that cannot serve (failed to open, or read-only after an I/O failure).",
            "gauge",
            gauges.failed_ledgers as u64,
        );
        counter(
            "quill_unverified_body_bytes",
            "Bytes reserved by request bodies awaiting signature verification (bounded by the budget).",
            "gauge",
            gauges.unverified_body_bytes as u64,
        );
        self.render_histogram(&mut out);
        out
    }

    fn render_histogram(&self, out: &mut String) {
        let name = "quill_commit_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Commit latency, including the journal fsync."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in COMMIT_BUCKETS_MS.iter().zip(&self.commit_buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = *bound as f64 / 1000.0;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        let sum = self.commit_sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.commit(Duration::from_micros(500));
        metrics.commit(Duration::from_millis(30));
        metrics.commit(Duration::from_secs(60));
        metrics.occ_conflict();
        let text = metrics.render(Gauges {
            active_sessions: 3,
            ledgers: 1,
            failed_ledgers: 0,
            unverified_body_bytes: 512,
        });
        assert!(text.contains("quill_commit_latency_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("quill_commit_latency_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("quill_commit_latency_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("quill_commit_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("quill_commit_latency_seconds_count 3\n"));
        assert!(text.contains("quill_occ_conflicts_total 1\n"));
        assert!(text.contains("quill_active_sessions 3\n"));
        assert!(text.contains("quill_unverified_body_bytes 512\n"));
    }
}
