//! Gives the system back the heap that a dropped write backlog left free.
//!
//! A client that stops reading in a busy room holds a backlog until it is dropped: up to
//! 2 × `OUTBOUND_QUEUE` pieces in its WebSocket's FIFO (`engine/wire.rs`, a 32-byte handle each,
//! the block doubling as it grows) and the shared payloads only it still refers to. glibc's
//! allocator keeps what a thread frees in that thread's arena and returns pages to the system
//! only from the top of a heap, so once those backlogs are freed their pages stay resident
//! between the shard's live allocations: in the slow-consumer chaos scenario RSS rose by about
//! 1 MB after every storm of 100 stalled clients while the heap in use stayed flat.
//!
//! `malloc_trim(0)` walks every arena and gives its free pages back (`madvise`). It locks each
//! arena while it walks it, so a shard runs it only after a large backlog was freed on its
//! thread ([`backlog_freed`]) and at most once per [`MIN_INTERVAL`] ([`run_trimmer`]).
//! Elsewhere than glibc it does nothing.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Fewest bytes a freed backlog held (its block of handles and the bytes waiting in it) for a
/// trim to be worth its walk over the arenas.
pub const LARGE_BACKLOG: usize = 64 * 1024;

/// Least time between two trims run by one shard.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// A large backlog was freed on this thread since its last trim.
    static DUE: Cell<bool> = const { Cell::new(false) };
    /// Wakes this thread's [`run_trimmer`].
    static WAKE: std::rc::Rc<tokio::sync::Notify> = std::rc::Rc::new(tokio::sync::Notify::new());
}

/// Notes that a backlog of `bytes` was freed on this thread: a trim is due if it was large.
pub fn backlog_freed(bytes: usize) {
    if bytes >= LARGE_BACKLOG && !DUE.with(|d| d.replace(true)) {
        WAKE.with(|w| w.notify_one());
    }
}

/// Runs on each shard until aborted: trims the heap after a large backlog was freed on this
/// thread, at most once per [`MIN_INTERVAL`] (the backlogs freed meanwhile are trimmed by the
/// next one).
pub async fn run_trimmer() {
    trim_when_due(trim).await;
}

/// [`run_trimmer`] with its trim as an argument.
async fn trim_when_due(trim: fn() -> bool) {
    let wake = WAKE.with(std::rc::Rc::clone);
    loop {
        wake.notified().await;
        if !DUE.with(|d| d.replace(false)) {
            continue;
        }
        let started = Instant::now();
        let released = trim();
        metrics::counter!(crate::telemetry::HEAP_TRIMS).increment(1);
        tracing::debug!(
            released,
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "heap trimmed after a large backlog was freed"
        );
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}

/// Returns the free pages of every arena to the system; true if any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and touches only free memory; glibc takes each
    // arena's lock while it walks it, as any allocation does.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Returns the free pages of every arena to the system (glibc only; does nothing here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TRIMS: Cell<u32> = const { Cell::new(0) };
    }

    fn counted() -> bool {
        TRIMS.with(|t| t.set(t.get() + 1));
        true
    }

    /// Small frees never trim; a large one does, soon; more large ones within a second are
    /// trimmed once, a second later; then nothing more happens.
    #[tokio::test(start_paused = true)]
    async fn trims_after_large_frees_at_most_once_a_second() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let trimmer = tokio::task::spawn_local(trim_when_due(counted));
                let trims = || TRIMS.with(Cell::get);
                let settle = || tokio::time::sleep(Duration::from_millis(10));
                backlog_freed(LARGE_BACKLOG - 1);
                settle().await;
                assert_eq!(trims(), 0, "a small backlog is not worth a trim");
                backlog_freed(LARGE_BACKLOG);
                settle().await;
                assert_eq!(trims(), 1, "a large backlog freed: trimmed at once");
                for _ in 0..100 {
                    backlog_freed(LARGE_BACKLOG * 4);
                }
                settle().await;
                assert_eq!(trims(), 1, "at most one trim a second");
                tokio::time::sleep(MIN_INTERVAL).await;
                assert_eq!(
                    trims(),
                    2,
                    "the frees meanwhile are trimmed once, a second later"
                );
                tokio::time::sleep(MIN_INTERVAL * 5).await;
                assert_eq!(trims(), 2, "nothing freed since: no trim");
                trimmer.abort();
            })
            .await;
    }
}
