//! Which of the server's long-lived threads (shards, and the batch writer, which reports through
//! its handle) are still running. A thread registers when it starts and holds an [`Alive`] guard;
//! the guard marks it dead when the thread ends, by a panic included. `/healthz` and `/readyz`
//! answer 503 and name the dead threads, so an orchestrator restarts the node.
//!
//! Why report rather than exit: a panic in a connection's task is caught by tokio and ends that
//! connection only (one bad client must not take the node down); a dead shard or writer thread
//! is what leaves a node up but unable to serve, and that is what health checks now show.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The registered threads (a lock only at registration and when health is asked).
#[derive(Debug, Default)]
pub struct Liveness {
    /// Name and alive flag of every registered thread.
    threads: Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

/// Held by a running thread; marks it dead when dropped (the thread ended or unwound).
#[derive(Debug)]
pub struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Liveness {
    /// Registers a running thread called `name`.
    pub fn register(&self, name: impl Into<String>) -> Alive {
        let flag = Arc::new(AtomicBool::new(true));
        if let Ok(mut threads) = self.threads.lock() {
            threads.push((name.into(), flag.clone()));
        }
        Alive(flag)
    }

    /// Names of the registered threads that are no longer running.
    pub fn dead(&self) -> Vec<String> {
        self.threads.lock().map_or_else(
            |_| vec!["liveness registry".to_owned()],
            |threads| {
                threads
                    .iter()
                    .filter(|(_, alive)| !alive.load(Ordering::Acquire))
                    .map(|(name, _)| name.clone())
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_panics_is_reported_dead() {
        let liveness = Arc::new(Liveness::default());
        let steady = liveness.register("steady");
        let l = liveness.clone();
        let crashed = std::thread::spawn(move || {
            let _alive = l.register("crashing");
            panic!("a bug");
        })
        .join();
        assert!(crashed.is_err());
        assert_eq!(liveness.dead(), vec!["crashing".to_owned()]);
        drop(steady);
        assert_eq!(liveness.dead().len(), 2);
    }
}
