//! Latency histograms and counters: per user while the run goes, merged at the end.
//!
//! Every simulated user owns a [`UserStats`] (two microsecond HDR histograms: `message:sent`
//! latency and end-to-end delivery latency). When the user stops, its histograms are merged into
//! the run's [`RunStats`]. Counters that the progress line needs while the run goes (users
//! connected, messages sent, deliveries) are atomics in [`Live`], and a short window histogram of
//! recent delivery latencies, fed in batches, gives the "current p99".

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency a histogram tracks, in microseconds (60 s); larger samples are clamped.
pub const MAX_LATENCY_US: u64 = 60_000_000;
/// Significant figures: 2 keeps each per-user histogram near 10 KB (1% resolution).
const SIGFIG: u8 = 2;
/// Samples a user batches before feeding the shared progress window.
const WINDOW_BATCH: usize = 64;
/// Longest a sample waits in a user's batch before the batch feeds the window anyway.
const WINDOW_MAX_AGE: Duration = Duration::from_millis(500);

/// A new latency histogram (microseconds, 1 us .. 60 s, 2 significant figures).
#[allow(clippy::expect_used)] // constant bounds that hdrhistogram documents as valid
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIG).expect("valid histogram bounds")
}

/// Records `us` microseconds, clamped to the tracked range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, MAX_LATENCY_US));
}

/// Counters shared by every user while the run goes (read by the progress line).
#[derive(Debug, Default)]
pub struct Live {
    /// Users whose `connection:success` arrived.
    pub connected: AtomicU64,
    /// Users that joined their conversation.
    pub joined: AtomicU64,
    /// Users that failed to connect or join.
    pub connect_failures: AtomicU64,
    /// `message:send` emitted.
    pub sends: AtomicU64,
    /// `message:sent` received.
    pub sent_acks: AtomicU64,
    /// `message:new` received from another member (the deliveries).
    pub deliveries: AtomicU64,
    /// Deliveries the run expects: for each `message:sent`, the room's other joined members.
    pub expected_deliveries: AtomicU64,
    /// Other room broadcasts received (typing, read receipts).
    pub other_events: AtomicU64,
    /// Connections that ended before the user stopped.
    pub dropped: AtomicU64,
    /// Recent delivery latencies for the progress line (drained each tick).
    window: Mutex<Option<Histogram<u64>>>,
    /// Errors by code (`message:error` codes, transport errors, timeouts).
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Live {
    /// Counts one error under `code`.
    pub fn error(&self, code: &str) {
        if let Ok(mut map) = self.errors.lock() {
            *map.entry(code.to_owned()).or_default() += 1;
        }
    }

    /// A copy of the error counts.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Adds a batch of recent delivery latencies to the progress window.
    fn feed_window(&self, samples: &[u64]) {
        if let Ok(mut w) = self.window.lock() {
            let h = w.get_or_insert_with(new_histogram);
            for &us in samples {
                record(h, us);
            }
        }
    }

    /// Takes the window histogram (recent deliveries) and starts a new one.
    pub fn take_window(&self) -> Option<Histogram<u64>> {
        self.window.lock().ok().and_then(|mut w| w.take())
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One user's latencies, owned by its connection task.
#[derive(Debug)]
pub struct UserStats {
    /// `message:send` -> `message:sent` at the sender, microseconds.
    pub sent: Histogram<u64>,
    /// Send timestamp in the content -> `message:new` at a receiver, microseconds.
    pub delivery: Histogram<u64>,
    /// Largest delivery latency since the scenario last asked (handed to goose per round).
    pub round_max_us: u64,
    /// Deliveries since the scenario last asked.
    pub round_count: u64,
    /// Delivery samples not yet fed to the progress window.
    pending_window: Vec<u64>,
    /// When the oldest of `pending_window` was taken.
    pending_since: Option<Instant>,
}

impl Default for UserStats {
    fn default() -> Self {
        Self {
            sent: new_histogram(),
            delivery: new_histogram(),
            round_max_us: 0,
            round_count: 0,
            pending_window: Vec::new(),
            pending_since: None,
        }
    }
}

impl UserStats {
    /// Records one delivery latency.
    pub fn delivery(&mut self, us: u64, live: &Live) {
        record(&mut self.delivery, us);
        self.round_max_us = self.round_max_us.max(us);
        self.round_count += 1;
        self.pending_window.push(us);
        let since = *self.pending_since.get_or_insert_with(Instant::now);
        if self.pending_window.len() >= WINDOW_BATCH || since.elapsed() >= WINDOW_MAX_AGE {
            self.flush(live);
        }
    }

    /// Feeds what is left to the progress window (when the user stops).
    pub fn flush(&mut self, live: &Live) {
        if !self.pending_window.is_empty() {
            live.feed_window(&self.pending_window);
            self.pending_window.clear();
        }
        self.pending_since = None;
    }
}

/// The run's merged histograms.
#[derive(Debug)]
pub struct RunStats {
    /// TCP connect -> `connection:success`, microseconds.
    pub connect: Histogram<u64>,
    /// `conversation:join` -> `conversation:joined`, microseconds.
    pub join: Histogram<u64>,
    /// Merged per-user `message:sent` latencies.
    pub sent: Histogram<u64>,
    /// Merged per-user delivery latencies.
    pub delivery: Histogram<u64>,
}

impl Default for RunStats {
    fn default() -> Self {
        Self {
            connect: new_histogram(),
            join: new_histogram(),
            sent: new_histogram(),
            delivery: new_histogram(),
        }
    }
}

impl RunStats {
    /// Merges one user's histograms.
    pub fn merge_user(&mut self, user: &UserStats) {
        let _ = self.sent.add(&user.sent);
        let _ = self.delivery.add(&user.delivery);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn user_histograms_merge_into_the_run() {
        let live = Live::default();
        let mut a = UserStats::default();
        let mut b = UserStats::default();
        for us in [100, 200, 300] {
            a.delivery(us, &live);
        }
        b.delivery(10_000, &live);
        let mut run = RunStats::default();
        run.merge_user(&a);
        run.merge_user(&b);
        assert_eq!(run.delivery.len(), 4);
        assert!(run.delivery.max() >= 9_900);
        assert_eq!(a.round_max_us, 300);
    }

    #[test]
    fn window_gets_batches_and_the_rest_on_flush() {
        let live = Live::default();
        let mut u = UserStats::default();
        for i in 0..(WINDOW_BATCH as u64 + 3) {
            u.delivery(i + 1, &live);
        }
        assert_eq!(live.take_window().unwrap().len(), WINDOW_BATCH as u64);
        u.flush(&live);
        assert_eq!(live.take_window().unwrap().len(), 3);
        assert!(live.take_window().is_none());
    }
}
