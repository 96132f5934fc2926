//! The runtime stream workers run on. Its threads (the async workers, and the blocking threads
//! that read the journal) can run at the lowest CPU priority, so that when the cores are
//! saturated, commits win and the streams fall behind instead, catching up as soon as the load
//! drops: "streaming never slows or blocks commits". The sink's client (its connection tasks)
//! runs on the same threads, so a target server, which works only when it is sent records,
//! is held back with it.

use std::io;

/// How the threads of stream delivery compete for the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryPriority {
    /// The lowest priority, nice 19 (on Linux; elsewhere as `Normal`): a saturated core gives
    /// delivery about 1.5 % of the time one ordinary thread gets.
    #[default]
    Background,
    /// Like every other thread.
    Normal,
}

/// A multi-threaded tokio runtime with `threads` async worker threads named `name`, at
/// `priority`.
pub fn delivery_runtime(
    name: &str,
    threads: usize,
    priority: DeliveryPriority,
) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all();
    if priority == DeliveryPriority::Background {
        // Runs on every thread the runtime starts, blocking ones included, before its work.
        builder.on_thread_start(lower_priority);
    }
    builder.build()
}

/// Lowers the calling thread to nice 19. On Linux, `setpriority(PRIO_PROCESS, tid)` applies to
/// that one thread, and lowering one's own priority needs no privilege.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), LOWEST_PRIORITY) {
            tracing::warn!("cannot lower the CPU priority of a stream delivery thread: {e}");
        }
    }
}

/// The highest nice value.
#[cfg(target_os = "linux")]
const LOWEST_PRIORITY: i32 = 19;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice value of the calling thread.
    fn nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    fn background_threads_are_at_the_lowest_priority_and_normal_ones_are_not() {
        let own = nice();
        for (priority, expected) in [
            (DeliveryPriority::Background, LOWEST_PRIORITY),
            (DeliveryPriority::Normal, own),
        ] {
            let runtime = delivery_runtime("delivery-test", 1, priority).unwrap();
            let (on_worker, on_blocking) = runtime.block_on(async {
                let worker = tokio::spawn(async { nice() }).await.unwrap();
                let blocking = tokio::task::spawn_blocking(nice).await.unwrap();
                (worker, blocking)
            });
            assert_eq!(
                (on_worker, on_blocking),
                (expected, expected),
                "{priority:?}"
            );
        }
        // The caller's own thread is left alone.
        assert_eq!(nice(), own);
    }
}
