//! CPU time per process and per thread from `/proc`, for benchmarks that must say where the
//! CPU of a run went (this process's threads by name, and other processes such as a target
//! server on the same cores). CPU time deltas hold up on a busy machine where wall-clock rates
//! do not: they count only what each thread actually ran.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};

/// Linux reports CPU times in clock ticks of the fixed `USER_HZ`, 100 per second.
const TICK: Duration = Duration::from_millis(10);

/// The command name and CPU time (user + system) of one `/proc/.../stat` file.
fn read_stat(path: &str) -> Result<(String, Duration)> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name is parenthesized and may hold spaces and parentheses: it runs from the
    // first '(' to the last ')'. utime and stime are the 12th and 13th fields after it.
    let (head, after_name) = stat
        .rsplit_once(')')
        .with_context(|| format!("unexpected {path}"))?;
    let name = head
        .split_once('(')
        .map(|(_, name)| name.to_owned())
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u32> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected {path}"))
    };
    Ok((name, TICK * (ticks(11)? + ticks(12)?)))
}

/// CPU time of this process so far, all threads included (finished ones too).
pub fn process_cpu() -> Result<Duration> {
    Ok(read_stat("/proc/self/stat")?.1)
}

/// CPU times at one moment: this process in total and per live thread, and other processes.
pub struct Snapshot {
    process: Duration,
    /// Thread id → (name, CPU time).
    threads: BTreeMap<u32, (String, Duration)>,
    /// Process id → (name, CPU time) of the other processes watched.
    others: BTreeMap<u32, (String, Duration)>,
}

impl Snapshot {
    /// This process's threads, and the processes `others` (which must exist).
    pub fn take(others: &[u32]) -> Result<Snapshot> {
        let process = process_cpu()?;
        let mut threads = BTreeMap::new();
        for entry in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
            let entry = entry?;
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread can end between listing and reading: it is then counted as ended.
            if let Ok(stat) = read_stat(&format!("/proc/self/task/{tid}/stat")) {
                threads.insert(tid, stat);
            }
        }
        let others = others
            .iter()
            .map(|&pid| Ok((pid, read_stat(&format!("/proc/{pid}/stat"))?)))
            .collect::<Result<_>>()?;
        Ok(Snapshot {
            process,
            threads,
            others,
        })
    }

    /// CPU spent from `earlier` to this snapshot, by group: `group` names the group of a
    /// thread from its name (the main thread's name is the process's, so it gets its own
    /// group); CPU of threads that ended in between, which `/proc` no longer lists, goes to
    /// `ended`; each watched process is a group of its own.
    pub fn since(
        &self,
        earlier: &Snapshot,
        group: impl Fn(&str) -> &'static str,
        ended: &'static str,
    ) -> Vec<(String, Duration)> {
        let main = std::process::id();
        let mut groups: BTreeMap<String, Duration> = BTreeMap::new();
        let mut listed = Duration::ZERO;
        for (tid, (name, cpu)) in &self.threads {
            let before = earlier.threads.get(tid).map_or(Duration::ZERO, |(_, c)| *c);
            let spent = cpu.saturating_sub(before);
            listed += spent;
            let name = if *tid == main {
                "main thread"
            } else {
                group(name)
            };
            *groups.entry(name.to_owned()).or_default() += spent;
        }
        let total = self.process.saturating_sub(earlier.process);
        *groups.entry(ended.to_owned()).or_default() += total.saturating_sub(listed);
        for (pid, (name, cpu)) in &self.others {
            let before = earlier.others.get(pid).map_or(Duration::ZERO, |(_, c)| *c);
            *groups.entry(format!("{name} (pid {pid})")).or_default() += cpu.saturating_sub(before);
        }
        groups.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_grouped_by_name_and_ended_ones_are_the_rest() {
        let before = Snapshot::take(&[]).unwrap();
        let spin = |until: Duration| {
            let began = std::time::Instant::now();
            let mut n = 0u64;
            while began.elapsed() < until {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        };
        // A named thread still running at the second snapshot, and one that ended.
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let live = std::thread::Builder::new()
            .name("cpu-test-live".into())
            .spawn(move || {
                spin(Duration::from_millis(200));
                stopped.recv().ok();
            })
            .unwrap();
        std::thread::spawn(move || spin(Duration::from_millis(200)))
            .join()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let after = Snapshot::take(&[std::process::id()]).unwrap();
        drop(stop);
        live.join().unwrap();
        let groups: BTreeMap<_, _> = after
            .since(
                &before,
                |name| {
                    if name == "cpu-test-live" {
                        "live"
                    } else {
                        "other"
                    }
                },
                "ended",
            )
            .into_iter()
            .collect();
        // Each spun for 200 ms of wall time; on a busy machine it may have run for less.
        assert!(groups["live"] >= Duration::from_millis(20), "{groups:?}");
        assert!(groups["ended"] >= Duration::from_millis(20), "{groups:?}");
        let own = groups
            .iter()
            .find(|(name, _)| name.ends_with(&format!("(pid {})", std::process::id())))
            .expect("the watched process is a group")
            .1;
        assert!(*own >= groups["live"] + groups["ended"], "{groups:?}");
    }
}
