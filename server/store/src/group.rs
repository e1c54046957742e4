//! Group calls: one statement for many concurrent calls of the same kind.
//!
//! The first call starts a batch; calls that arrive while it runs wait and go together as the
//! next one (group commit without a window: light load pays one round trip, heavy load gets
//! large batches and one commit per batch instead of one per call). PostgreSQL's read pointer
//! moves, profile upserts, membership reads and the reads of a recovering socket use it
//! (`postgres/grouped.rs`): one transaction per read receipt, each waiting for the write-ahead
//! log's flush, and one pooled connection per read of a connecting or recovering user are what
//! ran out first in a storm. Both databases save recovery session rows through it (one
//! statement, or one transaction on SQLite, per batch).
//!
//! The batch runs in its own task on the runtime the group was given, so a caller that goes away
//! (its socket closed) never cuts a batch short for the others, and the group's connection lives
//! on a runtime that outlives its callers'. Bounded: past `max_queued` waiting calls a call fails
//! at once with `Unavailable`.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::StoreError;

/// Calls waiting beyond this fail at once with `unavailable` (the client may retry).
const MAX_QUEUED: usize = 20_000;
/// Calls per statement.
const MAX_BATCH: usize = 2_000;

/// The thread the groups' statements run on. A connection belongs to the runtime that opened it;
/// shards' runtimes stop one by one at shutdown, and a group connection opened on the first to
/// stop failed every call of the others while they drained. This runtime stops when the last
/// clone of the store is dropped.
#[derive(Debug)]
pub(crate) struct StoreThread {
    runtime: Handle,
    /// Dropped with the store: the thread's `block_on` returns and its runtime ends.
    _stop: oneshot::Sender<()>,
}

impl StoreThread {
    pub(crate) fn start() -> Result<Arc<StoreThread>, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Internal(format!("store thread runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("chatwire-store".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| StoreError::Internal(format!("store thread: {e}")))?;
        Ok(Arc::new(StoreThread {
            runtime: handle,
            _stop: stop,
        }))
    }
}

/// A group whose batches `run` on `pool` (a connection pool of either database), on the
/// store thread.
pub(crate) fn group<P, Q, T, F>(
    io: &StoreThread,
    pool: P,
    run: impl Fn(P, Vec<Q>) -> F + Send + Sync + 'static,
) -> GroupCall<Q, T>
where
    P: Clone + Send + Sync + 'static,
    Q: Send + 'static,
    T: Send + 'static,
    F: Future<Output = BatchResult<T>> + Send + 'static,
{
    GroupCall::new(
        io.runtime.clone(),
        MAX_QUEUED,
        MAX_BATCH,
        move |calls: Vec<Q>| Box::pin(run(pool.clone(), calls)) as BatchFuture<T>,
    )
}

/// What a batch returns: one result per call, in the calls' order, or one error for all.
pub(crate) type BatchResult<T> = Result<Vec<Result<T, StoreError>>, StoreError>;
/// The future of one batch.
pub(crate) type BatchFuture<T> = Pin<Box<dyn Future<Output = BatchResult<T>> + Send>>;
type Run<Q, T> = Box<dyn Fn(Vec<Q>) -> BatchFuture<T> + Send + Sync>;
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Calls of one kind, grouped (see the module's doc). Clones share the queue.
pub(crate) struct GroupCall<Q, T> {
    inner: Arc<Inner<Q, T>>,
}

struct Inner<Q, T> {
    state: Mutex<State<Q, T>>,
    run: Run<Q, T>,
    /// Where batches run.
    runtime: Handle,
    max_queued: usize,
    max_batch: usize,
    batches: AtomicU64,
}

struct State<Q, T> {
    queue: VecDeque<(Q, Reply<T>)>,
    /// A task is draining the queue.
    running: bool,
}

impl<Q, T> Clone for GroupCall<Q, T> {
    fn clone(&self) -> Self {
        GroupCall {
            inner: self.inner.clone(),
        }
    }
}

impl<Q, T> fmt::Debug for GroupCall<Q, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCall")
            .field("max_queued", &self.inner.max_queued)
            .field("max_batch", &self.inner.max_batch)
            .field("batches", &self.inner.batches.load(Ordering::Relaxed))
            .finish()
    }
}

impl<Q: Send + 'static, T: Send + 'static> GroupCall<Q, T> {
    /// Calls go to `run`, on `runtime`, in batches of at most `max_batch`; at most `max_queued`
    /// wait.
    pub(crate) fn new(
        runtime: Handle,
        max_queued: usize,
        max_batch: usize,
        run: impl Fn(Vec<Q>) -> BatchFuture<T> + Send + Sync + 'static,
    ) -> Self {
        GroupCall {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    running: false,
                }),
                run: Box::new(run),
                runtime,
                max_queued,
                max_batch: max_batch.max(1),
                batches: AtomicU64::new(0),
            }),
        }
    }

    /// Queues `req` and waits for its batch (from any runtime or none).
    pub(crate) async fn call(&self, req: Q) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.inner.lock();
            if s.queue.len() >= self.inner.max_queued {
                return Err(StoreError::Unavailable(format!(
                    "{} calls already waiting for the database",
                    s.queue.len()
                )));
            }
            s.queue.push_back((req, tx));
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            self.inner.runtime.spawn(drain(self.inner.clone()));
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the database call was cut off by shutdown".into(),
            ))
        })
    }

    /// Batches run so far (tests and metrics).
    pub(crate) fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }
}

impl<Q, T> Inner<Q, T> {
    /// The state; a panic elsewhere while holding it leaves nothing half-done (every change is
    /// one push or one drain), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, State<Q, T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs batches until the queue is empty.
async fn drain<Q, T>(inner: Arc<Inner<Q, T>>) {
    // Dropped mid-batch only when the runtime shuts down: the calls still queued fail and the
    // next call starts a new task.
    struct Stop<'a, Q, T>(&'a Inner<Q, T>, bool);
    impl<Q, T> Drop for Stop<'_, Q, T> {
        fn drop(&mut self) {
            if self.1 {
                let mut s = self.0.lock();
                s.running = false;
                for (_, reply) in s.queue.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable(
                        "the database call was cut off by shutdown".into(),
                    )));
                }
            }
        }
    }
    let mut stop = Stop(&inner, true);
    loop {
        let (reqs, replies): (Vec<Q>, Vec<Reply<T>>) = {
            let mut s = inner.lock();
            if s.queue.is_empty() {
                s.running = false;
                stop.1 = false;
                return;
            }
            let n = s.queue.len().min(inner.max_batch);
            s.queue.drain(..n).unzip()
        };
        inner.batches.fetch_add(1, Ordering::Relaxed);
        match (inner.run)(reqs).await {
            Ok(results) if results.len() == replies.len() => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Ok(results) => {
                let e = StoreError::Internal(format!(
                    "a batch of {} calls answered {}",
                    replies.len(),
                    results.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Doubles each number after a pause; 13 fails on its own, a batch holding 99 fails whole.
    fn doubler(sizes: Arc<Mutex<Vec<usize>>>) -> GroupCall<i64, i64> {
        GroupCall::new(Handle::current(), 1_000, 64, move |reqs: Vec<i64>| {
            let sizes = sizes.clone();
            Box::pin(async move {
                sizes.lock().unwrap().push(reqs.len());
                tokio::time::sleep(Duration::from_millis(5)).await;
                if reqs.contains(&99) {
                    return Err(StoreError::Unavailable("99".into()));
                }
                Ok(reqs
                    .into_iter()
                    .map(|r| {
                        if r == 13 {
                            Err(StoreError::NotFound)
                        } else {
                            Ok(r * 2)
                        }
                    })
                    .collect())
            }) as BatchFuture<i64>
        })
    }

    #[tokio::test]
    async fn concurrent_calls_share_batches_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let g = doubler(sizes.clone());
        // 99 would fail its whole batch: that case has its own test.
        let calls: Vec<_> = (0..200)
            .filter(|&i| i != 99)
            .map(|i| {
                let g = g.clone();
                tokio::spawn(async move { (i, g.call(i).await) })
            })
            .collect();
        for c in calls {
            let (i, got) = c.await.unwrap();
            if i == 13 {
                assert_eq!(
                    got,
                    Err(StoreError::NotFound),
                    "an error stays with its call"
                );
            } else {
                assert_eq!(got, Ok(i * 2));
            }
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 199);
        assert!(
            sizes.iter().all(|&n| n <= 64),
            "batches keep their bound: {sizes:?}"
        );
        assert!(
            sizes.len() <= 10,
            "199 concurrent calls took {} batches",
            sizes.len()
        );
        assert_eq!(g.batches(), sizes.len() as u64);
        // Alone, a call is a batch of one, with no wait for company.
        assert_eq!(g.call(4).await, Ok(8));
        assert_eq!(g.batches(), sizes.len() as u64 + 1);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_its_calls_only_and_the_next_batch_runs() {
        let g = doubler(Arc::new(Mutex::new(Vec::new())));
        let bad = tokio::spawn({
            let g = g.clone();
            async move { g.call(99).await }
        });
        assert!(matches!(
            bad.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(g.call(5).await, Ok(10));
    }

    #[tokio::test]
    async fn past_the_queue_limit_a_call_fails_at_once() {
        let started = Arc::new(AtomicUsize::new(0));
        let g: GroupCall<i64, i64> = GroupCall::new(Handle::current(), 2, 1, {
            let started = started.clone();
            move |reqs: Vec<i64>| {
                started.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(reqs.into_iter().map(Ok).collect())
                }) as BatchFuture<i64>
            }
        });
        // One running, two waiting: the fourth is refused.
        let spawn = |i: i64| {
            let g = g.clone();
            tokio::spawn(async move { g.call(i).await })
        };
        let mut held = vec![spawn(0)];
        while started.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        held.push(spawn(1));
        held.push(spawn(2));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(g.call(3).await, Err(StoreError::Unavailable(_))));
        for (i, h) in held.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), Ok(i as i64));
        }
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_cut_the_batch_short() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let g = doubler(sizes.clone());
        let first = tokio::spawn({
            let g = g.clone();
            async move { g.call(1).await }
        });
        let second = tokio::spawn({
            let g = g.clone();
            async move { g.call(2).await }
        });
        tokio::task::yield_now().await;
        first.abort();
        assert_eq!(second.await.unwrap(), Ok(4));
        assert_eq!(g.call(3).await, Ok(6));
    }
}
