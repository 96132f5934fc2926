//! Measurement helpers shared by every benchmark: latency percentiles, the raw fsync
//! baseline, scratch directories and process memory. Kept apart so each benchmark file is
//! only about its workload.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Latency samples kept per measurement: enough for a stable p99, bounded so a fast loop
/// cannot grow memory without limit.
pub const LATENCY_SAMPLES_MAX: usize = 2_000_000;

/// A set of latency samples, summarised as percentiles.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples_ns: Vec<u64>,
}

impl Latencies {
    /// An empty set.
    pub fn new() -> Latencies {
        Latencies::default()
    }

    /// Records one sample; samples past [`LATENCY_SAMPLES_MAX`] are dropped.
    pub fn record(&mut self, elapsed: Duration) {
        if self.samples_ns.len() < LATENCY_SAMPLES_MAX {
            self.samples_ns
                .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// Adds another set's samples (one per worker thread), within the same bound.
    pub fn merge(&mut self, other: Latencies) {
        let room = LATENCY_SAMPLES_MAX.saturating_sub(self.samples_ns.len());
        self.samples_ns
            .extend(other.samples_ns.into_iter().take(room));
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples_ns.len()
    }

    /// The `p`-th percentile (0.0–100.0, nearest rank); zero when empty.
    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.samples_ns.is_empty() {
            return Duration::ZERO;
        }
        self.samples_ns.sort_unstable();
        let last = self.samples_ns.len() - 1;
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * last as f64).round() as usize;
        Duration::from_nanos(self.samples_ns[rank.min(last)])
    }

    /// p50 and p99 together.
    pub fn p50_p99(&mut self) -> (Duration, Duration) {
        (self.percentile(50.0), self.percentile(99.0))
    }
}

/// Formats a duration with a unit suited to its size (ns, µs, ms, s).
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 10_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// `numerator / denominator` as a float, 0 when the denominator is zero.
pub fn ratio(numerator: Duration, denominator: Duration) -> f64 {
    if denominator.is_zero() {
        0.0
    } else {
        numerator.as_secs_f64() / denominator.as_secs_f64()
    }
}

/// Events per second, 0 for an empty interval.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        count as f64 / elapsed.as_secs_f64()
    }
}

/// Bytes appended per fsync sample: a small journal frame.
const FSYNC_WRITE_BYTES: usize = 200;

/// The disk's raw durable-append latency: `write 200 bytes + fdatasync`, `samples` times,
/// on a file in `dir`. Every other figure is read against this one, because the shared
/// machine's disk speed changes from run to run.
pub fn fsync_baseline(dir: &Path, samples: usize) -> anyhow::Result<Latencies> {
    let path = dir.join("fsync-baseline.dat");
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let payload = [0x5au8; FSYNC_WRITE_BYTES];
    let mut latencies = Latencies::new();
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&payload)?;
        // sync_data is fdatasync(2) on Linux: the same call the journal makes.
        file.sync_data()?;
        latencies.record(start.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(latencies)
}

/// The same disk's latency when the 200 bytes overwrite already-written blocks of a
/// pre-filled file (`pwrite` + `fdatasync`): no block allocation or size change to make
/// durable. Printed beside the append baseline because it bounds what a journal with
/// pre-written segments could reach.
pub fn fsync_overwrite_baseline(dir: &Path, samples: usize) -> anyhow::Result<Latencies> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-overwrite.dat");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    file.write_all_at(&vec![0u8; samples * FSYNC_WRITE_BYTES + 4096], 0)?;
    file.sync_all()?;
    let payload = [0x5au8; FSYNC_WRITE_BYTES];
    let mut latencies = Latencies::new();
    for i in 0..samples {
        let start = Instant::now();
        file.write_all_at(&payload, (i * FSYNC_WRITE_BYTES) as u64)?;
        file.sync_data()?;
        latencies.record(start.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(latencies)
}

/// A scratch directory removed on drop, so an interrupted benchmark step does not leave
/// gigabytes behind (unless `QUILL_BENCH_KEEP` is set, for inspection).
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<base>/quill-bench-<pid>-<label>`, where base is `--dir` or the OS temp dir.
    pub fn new(base: Option<&Path>, label: &str) -> anyhow::Result<ScratchDir> {
        let base = base
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!("quill-bench-{}-{label}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("QUILL_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Resident and peak resident memory of this process in KiB, from `/proc/self/status`.
/// `None` where procfs is unavailable.
pub fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Size of a directory tree in bytes (bounded depth: ledgers are at most three levels deep).
pub fn dir_size_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        if depth > 8 {
            return 0;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path(), depth + 1),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::new();
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile(0.0), Duration::from_millis(1));
        assert_eq!(l.percentile(50.0), Duration::from_millis(51));
        assert_eq!(l.percentile(99.0), Duration::from_millis(99));
        assert_eq!(l.percentile(100.0), Duration::from_millis(100));
    }

    #[test]
    fn empty_latencies_are_zero_and_merge_keeps_samples() {
        let mut a = Latencies::new();
        assert_eq!(a.percentile(50.0), Duration::ZERO);
        let mut b = Latencies::new();
        b.record(Duration::from_micros(7));
        a.merge(b);
        assert_eq!(a.len(), 1);
        assert_eq!(a.percentile(99.0), Duration::from_micros(7));
    }

    #[test]
    fn formats_pick_a_readable_unit() {
        assert_eq!(fmt_duration(Duration::from_nanos(950)), "950 ns");
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250.0 µs");
        assert_eq!(fmt_duration(Duration::from_millis(42)), "42.00 ms");
        assert_eq!(
            ratio(Duration::from_millis(3), Duration::from_millis(2)),
            1.5
        );
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
    }

    #[test]
    fn fsync_baseline_takes_the_requested_samples_and_cleans_up() {
        let dir = ScratchDir::new(None, "stats-test").unwrap();
        let mut l = fsync_baseline(dir.path(), 5).unwrap();
        assert_eq!(l.len(), 5);
        assert!(l.percentile(50.0) > Duration::ZERO);
        assert!(!dir.path().join("fsync-baseline.dat").exists());
    }

    #[test]
    fn memory_is_read_from_procfs() {
        let (rss, hwm) = memory_kib().expect("linux procfs");
        assert!(rss > 0 && hwm >= rss);
    }
}
