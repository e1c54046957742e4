//! The batch writer: every message send goes through one bounded queue to one thread that commits
//! them in batches (one database round trip per batch) and hands the committed rows, in id order,
//! to a [`CommitSink`] that acks senders and fans the messages out.
//!
//! - Messages are routed by conversation to [`BatchConfig::lanes`] lanes, each committing on its
//!   own connection independently of the others, so a conversation's messages are always
//!   committed in order and a slow commit holds back only its lane.
//! - Group commit: a lane commits what is queued, and what arrives meanwhile forms its next batch,
//!   so light load pays one commit and no wait while heavy load still gets large batches. Batches
//!   are bounded by size ([`BatchConfig::max_batch`]); an optional collection window
//!   ([`BatchConfig::window`], off by default) lets a batch wait for more, counted from when its
//!   first message was queued.
//! - Backpressure: the queue is bounded; [`WriterHandle::try_submit`] fails at once when it is full
//!   and [`WriterHandle::submit`] waits at most its deadline. Callers answer `unavailable`.
//! - Failures: a batch that cannot commit is retried with backoff until the oldest message in it
//!   has waited [`BatchConfig::commit_deadline`]; then every sender gets [`StoreError::Unavailable`]
//!   through [`CommitSink::failed`]. A batch the database rejects outright is split until the bad
//!   message fails alone. Messages already past their deadline when dequeued fail at once,
//!   so a stuck database drains the queue quickly instead of stacking deadlines. Nothing reported as
//!   committed is ever lost; a failed attempt may still have stored its rows (a commit that timed
//!   out, or whose answer was lost with its connection). The writer remembers such sends, so the
//!   attempt that finds them stored, its own next one or the client's retry with the same tempId,
//!   reports them as new and they are fanned out then, once.
//! - The sink never blocks the writer: what its receivers cannot take yet waits in its
//!   [`Backlog`], which the writer pumps; past [`BatchConfig::max_backlog`] the writer takes no
//!   new messages.
//! - A writer thread that dies (a panic) drops every send it held, in flight or still queued,
//!   and refuses new ones: a reply route that answers when dropped (the server's does) tells
//!   each of those senders `unavailable` instead of leaving them waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{AnyStore, NewMessage, Outcome, Store, StoreError, Stored};

/// Histogram: messages per committed batch.
pub const METRIC_BATCH_SIZE: &str = "chatwire_write_batch_size";
/// Histogram: seconds per successful commit attempt.
pub const METRIC_COMMIT_SECONDS: &str = "chatwire_write_commit_seconds";
/// Gauge: messages waiting in the writer queue.
pub const METRIC_QUEUE_DEPTH: &str = "chatwire_write_queue_depth";
/// Gauge: committed outcomes waiting for room in their receivers' queues ([`CommitSink::backlog`]).
pub const METRIC_SINK_BACKLOG: &str = "chatwire_write_sink_backlog";
/// Counter: failed commit attempts (label `outcome` = `retry` or `gave_up`).
pub const METRIC_FAILURES: &str = "chatwire_write_failures_total";

/// Tuning of the batch writer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BatchConfig {
    /// Messages the queue holds before submitters are turned away (default 65,536).
    pub queue_capacity: usize,
    /// Most messages per batch (default 2048).
    pub max_batch: usize,
    /// How long a batch keeps collecting after its first message was queued (default zero:
    /// take only what is already queued, plain group commit).
    pub window: Duration,
    /// How long a message may wait for its commit, retries included, before its sender gets
    /// `unavailable` (default 5 s).
    pub commit_deadline: Duration,
    /// First pause between retries; doubles up to 500 ms (default 20 ms).
    pub retry_backoff: Duration,
    /// Lanes: database connections committing batches independently (default 2). Messages are
    /// routed by conversation (`conversation_id % lanes`): each conversation's messages stay in
    /// one lane, so ids increase in commit order within every conversation (the contract's
    /// order), while ids of different conversations interleave across lanes. 1 = ids in commit
    /// order globally (about half the throughput on PostgreSQL here).
    pub lanes: usize,
    /// Outcomes the sink may hold undelivered ([`CommitSink::backlog`]) before the writer stops
    /// taking new messages from its queue (default 65,536): then the queue fills and submitters
    /// get `unavailable`, and the writer itself never waits on a receiver.
    pub max_backlog: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            queue_capacity: 65_536,
            max_batch: 2048,
            window: Duration::ZERO,
            commit_deadline: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(20),
            lanes: 2,
            max_backlog: 65_536,
        }
    }
}

impl BatchConfig {
    /// Sets [`BatchConfig::queue_capacity`] (at least 1).
    pub fn with_queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    /// Sets [`BatchConfig::max_batch`] (at least 1).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
    /// Sets [`BatchConfig::window`].
    pub fn with_window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }
    /// Sets [`BatchConfig::commit_deadline`].
    pub fn with_commit_deadline(mut self, d: Duration) -> Self {
        self.commit_deadline = d;
        self
    }
    /// Sets [`BatchConfig::retry_backoff`].
    pub fn with_retry_backoff(mut self, d: Duration) -> Self {
        self.retry_backoff = d;
        self
    }
    /// Sets [`BatchConfig::max_backlog`] (at least 1).
    pub fn with_max_backlog(mut self, n: usize) -> Self {
        self.max_backlog = n.max(1);
        self
    }
    /// Sets [`BatchConfig::lanes`] (at least 1).
    pub fn with_lanes(mut self, n: usize) -> Self {
        self.lanes = n.max(1);
        self
    }
}

/// Receives the writer's results, on the writer thread. Keep it quick: hand work to shards.
pub trait CommitSink: Send + 'static {
    /// Where the outcome of one send goes (a socket, a waiting REST request, nobody), carried
    /// through the queue untouched: the writer knows nothing of who asked.
    type Reply: Send + 'static;
    /// Called on the writer thread after each commit, with the committed rows in id order.
    fn committed(&self, batch: Vec<(Stored, Self::Reply)>);
    /// Called when a batch could not be committed within the deadline: every sender gets `unavailable`.
    /// Also used for single messages the store refused (`Forbidden` / `NotFound`).
    fn failed(&self, batch: Vec<(NewMessage, Self::Reply)>, error: StoreError);
    /// Outcomes the sink accepted but could not hand over yet (its receivers' queues were full).
    /// A sink never blocks the writer: what does not fit waits in its [`Backlog`], and the writer
    /// stops taking new messages while this reaches [`BatchConfig::max_backlog`].
    fn backlog(&self) -> usize {
        0
    }
    /// Tries again to hand over the backlog; the writer calls it every millisecond while
    /// [`CommitSink::backlog`] is not zero.
    fn pump(&self) {}
}

/// Per-receiver FIFO queues for a [`CommitSink`] whose receivers have bounded queues: a send
/// goes straight to its receiver when nothing is waiting for it and its queue has room, else it
/// waits here, in order, until [`Backlog::pump`] hands it over. The writer thread is the only
/// user, so the lock is never contended.
#[derive(Debug)]
pub struct Backlog<T> {
    queues: std::sync::Mutex<Vec<std::collections::VecDeque<T>>>,
    len: AtomicUsize,
}

/// What a receiver did with a message offered to it.
#[derive(Debug)]
pub enum Offer<T> {
    /// Taken.
    Taken,
    /// Its queue is full: the message comes back, to wait.
    Full(T),
    /// The receiver is gone (shutdown): the message is dropped.
    Gone,
}

impl<T> Backlog<T> {
    /// A backlog for `receivers` receivers, numbered from 0.
    pub fn new(receivers: usize) -> Self {
        Backlog {
            queues: std::sync::Mutex::new(
                (0..receivers)
                    .map(|_| std::collections::VecDeque::new())
                    .collect(),
            ),
            len: AtomicUsize::new(0),
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `msg` to receiver `to` through `offer`, or queues it behind what already waits for
    /// that receiver (order per receiver is kept).
    pub fn send(&self, to: usize, msg: T, offer: impl FnOnce(usize, T) -> Offer<T>) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = queues.get_mut(to) else {
            return;
        };
        if !queue.is_empty() {
            queue.push_back(msg);
            self.len.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Offer::Full(msg) = offer(to, msg) {
            queue.push_back(msg);
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands over what waits, oldest first, until each receiver is full again.
    pub fn pump(&self, mut offer: impl FnMut(usize, T) -> Offer<T>) {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for (to, queue) in queues.iter_mut().enumerate() {
            while let Some(msg) = queue.pop_front() {
                match offer(to, msg) {
                    Offer::Taken | Offer::Gone => {
                        self.len.fetch_sub(1, Ordering::Relaxed);
                    }
                    Offer::Full(msg) => {
                        queue.push_front(msg);
                        break;
                    }
                }
            }
        }
    }
}

/// A send the queue did not take; the caller answers `unavailable` through `reply`.
#[derive(Debug)]
pub struct Rejected<R> {
    /// The message, handed back.
    pub message: NewMessage,
    /// The reply route, handed back.
    pub reply: R,
    /// True when the writer has stopped (shutdown), false when the queue was full.
    pub stopped: bool,
}

/// Refused messages grouped by the store's verdict.
type Refusals<R> = Vec<(StoreError, Vec<(NewMessage, R)>)>;

struct Pending<R> {
    message: NewMessage,
    reply: R,
    enqueued: Instant,
}

/// Cheap, cloneable handle to the writer thread (one per shard, one for REST).
pub struct WriterHandle<R> {
    /// The bounded queue.
    tx: flume::Sender<Pending<R>>,
    /// Asks the writer to commit what is queued and stop; carries the "done" answer.
    stop: flume::Sender<tokio::sync::oneshot::Sender<()>>,
    /// Set by `flush_and_stop`: later submits are refused at once instead of racing the drain.
    stopping: Arc<AtomicBool>,
    /// Enqueue attempts between their `stopping` check and the end of their send.
    inflight: Arc<AtomicUsize>,
    /// True while the writer thread runs (cleared when it ends, by a panic included).
    alive: Arc<AtomicBool>,
}

/// Clears the writer's `alive` flag when its thread ends, however it ends (a panic included),
/// then drops what is still queued, so each queued send's reply route learns it will not be
/// answered (the in-flight batches went with the writer's future as it unwound).
struct AliveGuard<R> {
    /// The writer's `alive` flag.
    alive: Arc<AtomicBool>,
    /// Enqueue attempts in progress ([`WriterHandle::inflight`]).
    inflight: Arc<AtomicUsize>,
    /// The queue, drained when the thread ends.
    rx: flume::Receiver<Pending<R>>,
}

impl<R> Drop for AliveGuard<R> {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        // An attempt that saw `alive` before it was cleared finishes its send (a few
        // instructions), so the drain below gets its message too; later attempts are refused.
        while self.inflight.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
        drop(self.rx.drain());
    }
}

impl<R> Clone for WriterHandle<R> {
    fn clone(&self) -> Self {
        WriterHandle {
            tx: self.tx.clone(),
            stop: self.stop.clone(),
            stopping: self.stopping.clone(),
            inflight: self.inflight.clone(),
            alive: self.alive.clone(),
        }
    }
}

impl<R> std::fmt::Debug for WriterHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("queued", &self.tx.len())
            .finish()
    }
}

impl<R> WriterHandle<R> {
    /// One attempt to queue: refused at once while stopping or once the writer died. The attempt
    /// counts as in flight from before its check of `stopping` until its send is done, so
    /// `flush_and_stop` (which sets `stopping`, then waits for no attempt in flight) never lets a
    /// message into the queue after the writer's last drain: every accepted message is committed
    /// or failed, never dropped. The same holds for a dying writer's last drain ([`AliveGuard`]),
    /// after which a message is dropped (and its reply route told) rather than left queued.
    /// Err carries the pending message back and whether the writer has stopped.
    #[allow(clippy::result_large_err)]
    fn enqueue(&self, pending: Pending<R>) -> Result<(), (Pending<R>, bool)> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let result = if self.stopping.load(Ordering::SeqCst) || !self.alive.load(Ordering::SeqCst) {
            Err((pending, true))
        } else {
            self.tx.try_send(pending).map_err(|e| {
                let stopped = matches!(e, flume::TrySendError::Disconnected(_));
                (e.into_inner(), stopped)
            })
        };
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Queues a message without waiting; a full queue or a stopped writer hands it back.
    // The error hands the message and its reply route back by value (no allocation on refusal).
    #[allow(clippy::result_large_err)]
    pub fn try_submit(&self, message: NewMessage, reply: R) -> Result<(), Rejected<R>> {
        let pending = Pending {
            message,
            reply,
            enqueued: Instant::now(),
        };
        self.enqueue(pending).map_err(|(p, stopped)| Rejected {
            message: p.message,
            reply: p.reply,
            stopped,
        })
    }

    /// Queues a message, waiting up to `deadline` for room in the queue.
    #[allow(clippy::result_large_err)]
    pub async fn submit(
        &self,
        message: NewMessage,
        reply: R,
        deadline: Duration,
    ) -> Result<(), Rejected<R>> {
        let until = Instant::now() + deadline;
        let mut pause = Duration::from_micros(200);
        let mut pending = Pending {
            message,
            reply,
            enqueued: Instant::now(),
        };
        loop {
            match self.enqueue(pending) {
                Ok(()) => return Ok(()),
                Err((back, stopped)) => {
                    pending = back;
                    let now = Instant::now();
                    if stopped || now >= until {
                        return Err(Rejected {
                            message: pending.message,
                            reply: pending.reply,
                            stopped,
                        });
                    }
                    tokio::time::sleep(pause.min(until - now)).await;
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
            }
        }
    }

    /// False once the writer thread has ended: stopped, or died (a panic); a health check reports
    /// it, since nothing can be committed any more.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Commits everything queued before this call, then stops the writer thread (graceful
    /// shutdown). Other handles' later submits are rejected with `stopped`.
    pub async fn flush_and_stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        // An attempt that passed its check before `stopping` was set finishes its send (a few
        // instructions) before the writer is told to drain.
        while self.inflight.load(Ordering::SeqCst) > 0 {
            tokio::task::yield_now().await;
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self.stop.send_async(done_tx).await.is_ok() {
            let _ = done_rx.await;
        }
    }
}

/// The writer thread.
#[derive(Debug)]
pub struct BatchWriter;

impl BatchWriter {
    /// Starts the writer thread (`chatwire-writer`, current-thread runtime) and returns its handle.
    /// If the thread cannot start, every submit is rejected as `stopped` (and the error is logged).
    pub fn spawn<S: CommitSink>(
        store: Arc<AnyStore>,
        cfg: BatchConfig,
        sink: S,
    ) -> WriterHandle<S::Reply> {
        let (tx, rx) = flume::bounded(cfg.queue_capacity.max(1));
        let (stop, stop_rx) = flume::bounded(4);
        let alive = Arc::new(AtomicBool::new(true));
        let inflight = Arc::new(AtomicUsize::new(0));
        let guard = AliveGuard {
            alive: alive.clone(),
            inflight: inflight.clone(),
            rx: rx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("chatwire-writer".into())
            .spawn(move || {
                let _guard = guard;
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "batch writer: cannot build its runtime");
                        return;
                    }
                };
                rt.block_on(
                    Writer {
                        store,
                        cfg,
                        sink,
                        rx,
                        stop_rx,
                        backlog_ready: tokio::sync::Notify::new(),
                        lanes_done: std::cell::Cell::new(false),
                        uncertain: std::cell::RefCell::new(Uncertain::default()),
                    }
                    .run(),
                );
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "batch writer: cannot spawn its thread");
        }
        WriterHandle {
            tx,
            stop,
            stopping: Arc::new(AtomicBool::new(false)),
            inflight,
            alive,
        }
    }
}

struct Writer<S: CommitSink> {
    store: Arc<AnyStore>,
    cfg: BatchConfig,
    sink: S,
    rx: flume::Receiver<Pending<S::Reply>>,
    stop_rx: flume::Receiver<tokio::sync::oneshot::Sender<()>>,
    /// Wakes [`Writer::hand_over`] when the sink has a backlog or the lanes are done.
    backlog_ready: tokio::sync::Notify,
    /// Set once every lane has ended.
    lanes_done: std::cell::Cell<bool>,
    /// Sends whose commit failed in a way that may have stored them.
    uncertain: std::cell::RefCell<Uncertain>,
}

/// Idempotency keys of sends reported `unavailable` although their rows may have been stored
/// (a commit that timed out or lost its connection). When a retry finds such a row already
/// stored, it was never published: the writer reports it as new, so it is fanned out once.
/// Bounded: at most [`Uncertain::CAP`] keys, each kept [`Uncertain::TTL`].
#[derive(Debug, Default)]
struct Uncertain {
    keys: std::collections::HashMap<(super::UserKey, i64, String), Instant>,
}

impl Uncertain {
    const CAP: usize = 65_536;
    const TTL: Duration = Duration::from_secs(600);

    fn insert(&mut self, messages: &[NewMessage]) {
        let now = Instant::now();
        if self.keys.len() + messages.len() > Self::CAP {
            self.keys
                .retain(|_, at| now.duration_since(*at) < Self::TTL);
        }
        for m in messages {
            if self.keys.len() >= Self::CAP {
                tracing::warn!(
                    "batch writer: too many uncertain sends; a retry of the rest will not be published"
                );
                return;
            }
            if let Some(t) = &m.temp_id {
                self.keys
                    .insert((m.sender, m.conversation_id, t.key()), now);
            }
        }
    }

    /// True (once) when `m`'s key was uncertain and is still within its time.
    fn resolve(&mut self, m: &NewMessage) -> bool {
        let Some(t) = &m.temp_id else { return false };
        if self.keys.is_empty() {
            return false;
        }
        self.keys
            .remove(&(m.sender, m.conversation_id, t.key()))
            .is_some_and(|at| at.elapsed() < Self::TTL)
    }
}

impl<S: CommitSink> Writer<S> {
    /// Routes each queued message to its conversation's lane and runs the lanes side by side:
    /// each lane collects a batch and commits it on its own connection while the other lanes
    /// (and its own queue) keep going, so a slow commit holds back only its lane.
    async fn run(self) {
        let lanes = self.cfg.lanes.max(1);
        let mut lane_tx = Vec::with_capacity(lanes);
        let mut lane_rx = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            // Small: the backlog stays in the main queue, which bounds it and answers
            // `unavailable` when full.
            let (tx, rx) = flume::bounded(2 * self.cfg.max_batch.max(1));
            lane_tx.push(tx);
            lane_rx.push(rx);
        }
        let lanes_done = async {
            futures_util::future::join_all(lane_rx.into_iter().map(|rx| self.lane(rx))).await;
            self.lanes_done.set(true);
            self.backlog_ready.notify_one();
        };
        let (stop, (), ()) =
            futures_util::future::join3(self.dispatch(lane_tx), lanes_done, self.hand_over()).await;
        drop(self.rx);
        if let Some(done) = stop {
            let _ = done.send(());
        }
        // Other handles that asked to stop too.
        for done in self.stop_rx.drain() {
            let _ = done.send(());
        }
    }

    /// Moves queued messages to their lanes (`conversation_id % lanes`: a conversation's messages
    /// stay in one lane, so its ids increase in commit order) until asked to stop, then hands
    /// the rest of the queue over and closes the lanes, which commit it and end. Returns who
    /// asked to stop.
    async fn dispatch(
        &self,
        lane_tx: Vec<flume::Sender<Pending<S::Reply>>>,
    ) -> Option<tokio::sync::oneshot::Sender<()>> {
        let lanes = lane_tx.len().max(1) as i64;
        let route = |p: Pending<S::Reply>| {
            let lane = p.message.conversation_id.rem_euclid(lanes) as usize;
            (lane_tx.get(lane), p)
        };
        let mut stop = None;
        loop {
            // The sink holds more than it may: take nothing new until it hands some over (the
            // queue fills meanwhile and submitters get `unavailable`), never wait on a receiver.
            while self.sink.backlog() >= self.cfg.max_backlog && self.stop_rx.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let next = tokio::select! {
                biased;
                done = self.stop_rx.recv_async() => {
                    stop = done.ok();
                    break;
                }
                next = self.rx.recv_async() => match next {
                    Ok(p) => p,
                    Err(_) => break, // every handle dropped
                },
            };
            if let (Some(tx), p) = route(next)
                && tx.send_async(p).await.is_err()
            {
                break;
            }
        }
        // Stopping: new submits are already refused (`stopping`); hand over what is queued.
        for p in self.rx.drain() {
            if let (Some(tx), p) = route(p) {
                let _ = tx.send_async(p).await;
            }
        }
        stop
    }

    /// Hands the sink's backlog over every millisecond while there is one; after the lanes end,
    /// until it is empty or a commit deadline has passed (receivers gone at shutdown).
    async fn hand_over(&self) {
        let mut ended_at: Option<Instant> = None;
        loop {
            if self.sink.backlog() > 0 {
                self.sink.pump();
            }
            let waiting = self.sink.backlog();
            metrics::gauge!(METRIC_SINK_BACKLOG).set(waiting as f64);
            if self.lanes_done.get() {
                if waiting == 0 {
                    return;
                }
                let since = *ended_at.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.cfg.commit_deadline {
                    tracing::error!(
                        waiting,
                        "batch writer: receivers took no outcome before the deadline; dropping them"
                    );
                    return;
                }
            }
            if waiting > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                self.backlog_ready.notified().await;
            }
        }
    }

    /// One lane: takes a batch from its queue, commits it, repeats until the queue closes.
    async fn lane(&self, rx: flume::Receiver<Pending<S::Reply>>) {
        let mut batch: Vec<Pending<S::Reply>> = Vec::with_capacity(self.cfg.max_batch);
        while let Ok(first) = rx.recv_async().await {
            batch.push(first);
            self.fill(&rx, &mut batch).await;
            metrics::gauge!(METRIC_QUEUE_DEPTH).set((self.rx.len() + rx.len()) as f64);
            self.commit(std::mem::take(&mut batch)).await;
        }
    }

    /// Adds queued messages to `batch` until it is full or the window, counted from when its
    /// first message was queued, has passed: a message that already waited out a commit goes
    /// in the next statement without waiting again.
    async fn fill(
        &self,
        rx: &flume::Receiver<Pending<S::Reply>>,
        batch: &mut Vec<Pending<S::Reply>>,
    ) {
        let opened = batch.first().map_or_else(Instant::now, |p| p.enqueued);
        let until = opened + self.cfg.window;
        while batch.len() < self.cfg.max_batch {
            let next = match rx.try_recv() {
                Ok(p) => p,
                Err(flume::TryRecvError::Disconnected) => return,
                Err(flume::TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= until {
                        return;
                    }
                    match tokio::time::timeout(until - now, rx.recv_async()).await {
                        Ok(Ok(p)) => p,
                        Ok(Err(_)) | Err(_) => return,
                    }
                }
            };
            batch.push(next);
        }
    }

    /// Commits one batch (one lane's), retrying until the oldest message's deadline, and
    /// reports to the sink.
    async fn commit(&self, batch: Vec<Pending<S::Reply>>) {
        let oldest = batch
            .iter()
            .map(|p| p.enqueued)
            .min()
            .unwrap_or_else(Instant::now);
        let deadline = oldest + self.cfg.commit_deadline;
        let (messages, replies): (Vec<NewMessage>, Vec<S::Reply>) =
            batch.into_iter().map(|p| (p.message, p.reply)).unzip();
        self.commit_part(messages, replies, deadline).await;
    }

    /// Commits `messages`, retrying transient failures until `deadline`. A batch the database
    /// rejects outright (`Internal`: e.g. a value it cannot store) is split in halves and each half
    /// committed on its own, so one bad message fails alone instead of taking its batch with it.
    fn commit_part(
        &self,
        messages: Vec<NewMessage>,
        replies: Vec<S::Reply>,
        deadline: Instant,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
        Box::pin(async move {
            let mut pause = self.cfg.retry_backoff;
            let mut last_error =
                StoreError::Unavailable("commit deadline passed before the first attempt".into());
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let started = Instant::now();
                let attempt =
                    tokio::time::timeout(deadline - now, self.store.insert_batch(&messages)).await;
                match attempt {
                    Ok(Ok(outcomes)) => {
                        metrics::histogram!(METRIC_COMMIT_SECONDS)
                            .record(started.elapsed().as_secs_f64());
                        metrics::histogram!(METRIC_BATCH_SIZE).record(messages.len() as f64);
                        self.report(messages, replies, outcomes);
                        return;
                    }
                    Ok(Err(e @ StoreError::Unavailable(_))) => {
                        tracing::warn!(error = %e, size = messages.len(), "batch commit failed, retrying");
                        // The connection may have failed after the commit: the next attempt
                        // then finds the rows stored, and must publish them as new.
                        self.uncertain.borrow_mut().insert(&messages);
                        last_error = e;
                    }
                    Ok(Err(e @ StoreError::Internal(_))) if messages.len() > 1 => {
                        tracing::warn!(error = %e, size = messages.len(), "batch rejected, splitting it");
                        let mut messages = messages;
                        let mut replies = replies;
                        let half = messages.len() / 2;
                        let (tail_m, tail_r) = (messages.split_off(half), replies.split_off(half));
                        self.commit_part(messages, replies, deadline).await;
                        self.commit_part(tail_m, tail_r, deadline).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        // Not transient: nothing will make this batch succeed.
                        tracing::error!(error = %e, size = messages.len(), "batch refused by the store");
                        last_error = e;
                        break;
                    }
                    Err(_) => {
                        last_error = StoreError::Unavailable("commit timed out".into());
                        break;
                    }
                }
                metrics::counter!(METRIC_FAILURES, "outcome" => "retry").increment(1);
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            metrics::counter!(METRIC_FAILURES, "outcome" => "gave_up").increment(1);
            let error = match last_error {
                StoreError::Internal(m) => StoreError::Unavailable(m),
                other => other,
            };
            if matches!(error, StoreError::Unavailable(_)) {
                // Timed out or lost its connection: the rows may have landed anyway. Their
                // senders retry with the same tempId; that retry must publish them then.
                self.uncertain.borrow_mut().insert(&messages);
            }
            self.sink
                .failed(messages.into_iter().zip(replies).collect(), error);
            if self.sink.backlog() > 0 {
                self.backlog_ready.notify_one();
            }
        })
    }

    /// Splits the outcomes into committed rows (sorted by id) and refusals (grouped by error).
    fn report(&self, messages: Vec<NewMessage>, replies: Vec<S::Reply>, outcomes: Vec<Outcome>) {
        let mut committed = Vec::with_capacity(messages.len());
        let mut refused: Refusals<S::Reply> = Vec::new();
        let mut outcomes = outcomes.into_iter();
        for (message, reply) in messages.into_iter().zip(replies) {
            let error = match outcomes.next() {
                Some(Ok(mut stored)) => {
                    // Resolved either way: a row this attempt stored was published now, and a
                    // later retry of it is a plain duplicate.
                    if self.uncertain.borrow_mut().resolve(&message) && stored.duplicate {
                        // Stored by an attempt that reported failure: nobody has seen it yet.
                        stored.duplicate = false;
                    }
                    committed.push((stored, reply));
                    continue;
                }
                Some(Err(e)) => e,
                None => StoreError::Internal("store returned fewer outcomes than messages".into()),
            };
            match refused.iter_mut().find(|(err, _)| *err == error) {
                Some((_, list)) => list.push((message, reply)),
                None => refused.push((error, vec![(message, reply)])),
            }
        }
        for (error, list) in refused {
            self.sink.failed(list, error);
        }
        committed.sort_by_key(|(s, _)| s.message.id);
        if !committed.is_empty() {
            self.sink.committed(committed);
        }
        if self.sink.backlog() > 0 {
            self.backlog_ready.notify_one();
        }
    }
}
