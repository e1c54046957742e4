//! Process shutdown: SIGTERM/SIGINT (or a call) flips one flag that every shard thread, task and
//! the batch writer can await.
//!
//! Built on `tokio::sync::watch`, which needs no particular runtime, so a receiver cloned into a
//! shard's current-thread runtime wakes there. [`ShutdownTrigger`] fires it (once; later calls do
//! nothing); [`Shutdown`] is the cheap cloneable receiving side. Dropping every trigger also
//! counts as shutdown, so a task never waits on a signal that can no longer come.

use std::sync::Arc;

use tokio::sync::watch;

/// Creates a connected trigger and receiver.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx: Arc::new(tx) }, Shutdown { rx })
}

/// Fires the shutdown; cloneable (every clone fires the same shutdown).
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    /// The shared sender; `true` once shutdown has begun.
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownTrigger {
    /// Begins shutdown. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A new receiver for this shutdown.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }
}

/// Awaitable shutdown notice; clone one per thread or task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Receiver of the shared flag.
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Whether shutdown has begun (or every trigger is gone).
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Completes once shutdown has begun (at once if it already has). Cancel-safe.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // Err means every trigger was dropped: nobody can fire any more, so treat it as fired.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

/// Which signal began the shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (service managers, `docker stop`, Kubernetes).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

/// Waits for SIGTERM or SIGINT, fires `trigger`, then exits the process with status 130 on a
/// second signal (an impatient operator). Must run inside a tokio runtime with I/O enabled
/// (`enable_all`); spawn it once, e.g. on the main thread's runtime.
pub async fn listen_for_signals(trigger: ShutdownTrigger) -> std::io::Result<Signal> {
    let first = next_signal().await?;
    tracing::info!(signal = ?first, "shutdown requested: draining");
    trigger.trigger();
    tokio::spawn(async {
        if next_signal().await.is_ok() {
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        }
    });
    Ok(first)
}

/// The next SIGTERM or SIGINT.
#[cfg(unix)]
async fn next_signal() -> std::io::Result<Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok(Signal::Terminate),
        _ = int.recv() => Ok(Signal::Interrupt),
    }
}

/// The next Ctrl-C (non-Unix systems have no SIGTERM).
#[cfg(not(unix))]
async fn next_signal() -> std::io::Result<Signal> {
    tokio::signal::ctrl_c().await?;
    Ok(Signal::Interrupt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_wakes_every_receiver() {
        let (trigger, shutdown) = channel();
        let other = shutdown.clone();
        let late = trigger.subscribe();
        assert!(!shutdown.is_triggered());
        let waiter = tokio::spawn(async move { other.wait().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(shutdown.is_triggered() && late.is_triggered() && trigger.is_triggered());
        // Already fired: wait returns at once, and triggering again is harmless.
        trigger.trigger();
        shutdown.wait().await;
    }

    #[test]
    fn works_across_separate_runtimes_on_other_threads() {
        let (trigger, shutdown) = channel();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let shutdown = shutdown.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(shutdown.wait());
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        trigger.trigger();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[tokio::test]
    async fn dropping_every_trigger_counts_as_shutdown() {
        let (trigger, shutdown) = channel();
        let clone = trigger.clone();
        drop(trigger);
        assert!(!shutdown.is_triggered());
        drop(clone);
        assert!(shutdown.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .unwrap();
    }
}
