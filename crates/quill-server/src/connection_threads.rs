//! The threads that serve connections: each accepted connection lives on one of a few
//! runtimes of one worker thread each, rather than on the shared multi-threaded runtime.
//!
//! Why: on a multi-threaded runtime a request that wakes one parked worker often wakes its
//! sibling too (to steal work that is not there), and a reply completed by the commit pipeline
//! can land on either. Measured with `scripts/wire_profile.sh` (`CPU=1`, one session, insert):
//! 11.4 voluntary context switches per transaction on the server's runtime threads with two
//! workers, 6.0 with one, and the context switches were the largest cost on the wire path
//! (`finish_task_switch` alone 20 % of the server's CPU samples). A connection pinned to one
//! worker is woken once per request. Balance comes from placement instead of work stealing:
//! a new connection goes to the thread serving the fewest.
//!
//! Each runtime is multi-threaded with one worker rather than current-thread so that
//! `block_in_place` (the synchronous PostgreSQL client, see `quill_ledger::journal::blocking`)
//! works there as it did on the shared runtime. Tasks a request spawns (`tokio::spawn`) run on
//! its connection's runtime; long-lived work (checkpoints, streams, exports) is started from the
//! shared runtime, not from requests.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runtimes serving connections, one worker each.
pub(crate) struct ConnectionThreads {
    threads: Vec<ConnectionThread>,
}

struct ConnectionThread {
    runtime: tokio::runtime::Runtime,
    /// Connections being served on it.
    connections: Arc<AtomicUsize>,
}

/// Decrements a thread's connection count when its connection's task ends or is dropped.
struct Served(Arc<AtomicUsize>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionThreads {
    /// One thread per core, or `TOKIO_WORKER_THREADS` of them when set (the variable that sizes
    /// a tokio runtime, so one setting still bounds the threads serving requests).
    pub(crate) fn start() -> io::Result<ConnectionThreads> {
        let count = std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|value| value.trim().parse::<usize>().ok())
            .filter(|&count| count > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let threads = (0..count)
            .map(|n| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .thread_name(format!("quill-conn-{n}"))
                    .build()?;
                Ok(ConnectionThread {
                    runtime,
                    connections: Arc::new(AtomicUsize::new(0)),
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(ConnectionThreads { threads })
    }

    /// Serves a connection on the thread with the fewest: `serve` is called there, so what it
    /// opens (a `TcpStream::from_std`) registers with that thread's runtime.
    pub(crate) fn spawn<F, Fut>(&self, serve: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(thread) = self
            .threads
            .iter()
            .min_by_key(|thread| thread.connections.load(Ordering::Relaxed))
        else {
            return;
        };
        thread.connections.fetch_add(1, Ordering::Relaxed);
        let served = Served(Arc::clone(&thread.connections));
        thread.runtime.spawn(async move {
            let _served = served;
            serve().await;
        });
    }

    /// Connections being served, per thread (for tests).
    #[cfg(test)]
    fn load(&self) -> Vec<usize> {
        let count = |thread: &ConnectionThread| thread.connections.load(Ordering::Relaxed);
        self.threads.iter().map(count).collect()
    }
}

impl Drop for ConnectionThreads {
    /// Without blocking: dropping a runtime blocks, which panics inside a task.
    fn drop(&mut self) {
        for thread in self.threads.drain(..) {
            thread.runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_thread_serving_the_fewest_and_leave_it_when_done() {
        let threads = ConnectionThreads::start().expect("connection threads");
        let count = threads.threads.len();
        let (release, released) = tokio::sync::watch::channel(false);
        let (seen, mut on_thread) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..2 * count {
            let (mut released, seen) = (released.clone(), seen.clone());
            threads.spawn(move || async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = seen.send(name);
                let _ = released.wait_for(|done| *done).await;
            });
        }
        let mut names = Vec::new();
        for _ in 0..2 * count {
            names.push(on_thread.blocking_recv().expect("a connection task ran"));
        }
        assert_eq!(threads.load(), vec![2; count]);
        for n in 0..count {
            let name = format!("quill-conn-{n}");
            let on_it = names
                .iter()
                .filter(|seen| seen.as_deref() == Some(&name))
                .count();
            assert_eq!(on_it, 2, "{names:?}");
        }
        release.send_replace(true);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while threads.load().iter().any(|&n| n > 0) {
            assert!(std::time::Instant::now() < deadline, "{:?}", threads.load());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
