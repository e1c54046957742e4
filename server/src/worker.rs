//! A shard thread's main ([`run_shard`]): its runtime, accept loop and message loop, the
//! [`Hooks`] that hand each shard message to the layer it is for (transports, sessions, the chat
//! application), and the graceful close at shutdown. The top of the server: it knows every
//! layer, none knows it.

use std::rc::Rc;
use std::sync::Arc;

use crate::shard::msg::{ShardMsg, ShardSet};
use crate::shard::{Hooks, Shard};
use crate::shared::Shared;

/// What a shard does with messages it does not handle itself, and with presence changes.
/// Most shard messages applied as one batch before the queued WebSocket writes go out.
const BATCH_MAX: usize = 256;

const HOOKS: Hooks = Hooks {
    dispatch,
    presence_changed: crate::app::presence_changed,
    presence_announce: crate::app::presence_announce,
    disconnect: crate::session::disconnect_sockets,
    emit_with_ack: crate::sio::acks::emit_for_node,
};

/// Applies a shard message that belongs to a transport, a session or the application.
fn dispatch(shard: &Rc<Shard>, msg: ShardMsg) {
    match msg {
        ShardMsg::Poll(p) => crate::http::polling::handle_forwarded(shard.clone(), *p),
        ShardMsg::Upgrade(u) => crate::http::websocket::adopt_forwarded(shard.clone(), *u),
        ShardMsg::CloseSession(sid) => crate::http::polling::close_session(shard, sid),
        ShardMsg::UpgradeCheck { sid, reply } => {
            let _ = reply.send(crate::http::websocket::begin_upgrade(shard, sid));
        }
        ShardMsg::Store(s) => {
            let (message, route) = *s;
            if let Some(chat) = shard.shared.chat.as_ref() {
                crate::app::commit::store_inline(shard, &chat.store, message, route);
            }
        }
        ShardMsg::Disconnect(sockets) => {
            for s in sockets {
                let conn = shard.sockets.borrow().get(&s).cloned();
                if let Some(conn) = conn {
                    metrics::counter!(crate::telemetry::SLOW_CLIENTS).increment(1);
                    crate::session::terminate(&conn, shard, "missed a message (shard overloaded)");
                }
            }
        }
        // Handled by the shard itself.
        ShardMsg::Cluster(_) | ShardMsg::Publish(_) => shard.handle(msg),
    }
}

/// Sends a close to every local connection and ends them (graceful shutdown).
fn close_all(shard: &Rc<Shard>) {
    let conns: Vec<_> = shard.conns.borrow().values().cloned().collect();
    for conn in conns {
        crate::session::close_gracefully(&conn, shard);
    }
}

/// Runs one shard on the current thread until shutdown: accept loop + message loop.
pub fn run_shard(
    index: u16,
    listener: std::net::TcpListener,
    rx: flume::Receiver<ShardMsg>,
    shared: Arc<Shared>,
    set: ShardSet,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let _alive = shared.liveness.register(format!("chatwire-shard-{index}"));
    let result = local.block_on(&rt, async move {
        let shard = Rc::new(Shard::new(index, shared.clone(), set, HOOKS));
        crate::shard::set_current(Some(shard.clone()));
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let accept = tokio::task::spawn_local(crate::http::accept_loop(shard.clone(), listener));
        let flusher = {
            let shard = shard.clone();
            tokio::task::spawn_local(async move { shard.run_flusher().await })
        };
        // Gives back the pages that backlogs of dropped slow clients left free.
        let trimmer = tokio::task::spawn_local(crate::heap::run_trimmer());
        let stop_accepting = shared.stop_accepting.clone();
        let shutdown = shared.shutdown.clone();
        let mut accepting = true;
        // Releases messages held for id order (conversations written from several nodes).
        let mut order_tick = tokio::time::interval(std::time::Duration::from_millis(5));
        order_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = order_tick.tick(), if shard.cluster.has_held() => {
                    shard.begin_batch();
                    shard.cluster.tick(&*shard);
                    shard.end_batch();
                }
                msg = rx.recv_async() => match msg {
                    Ok(msg) => {
                        // Apply what is queued as one batch, then write each WebSocket that
                        // got frames once (bounded, so accepts and timers still get turns).
                        shard.begin_batch();
                        shard.handle(msg);
                        for _ in 1..BATCH_MAX {
                            match rx.try_recv() {
                                Ok(msg) => shard.handle(msg),
                                Err(_) => break,
                            }
                        }
                        shard.end_batch();
                    }
                    Err(_) => break,
                },
                () = stop_accepting.wait(), if accepting => {
                    accepting = false;
                    accept.abort();
                }
                () = shutdown.wait() => break,
            }
        }
        accept.abort();
        // Tell every client to reconnect elsewhere, then give the transports a moment to write
        // the close and let their clients answer it (a WebSocket drains its input for up to
        // `CLOSE_DRAIN`, so a client still sending sees the close, not a reset).
        close_all(&shard);
        let drain_until = tokio::time::Instant::now()
            + crate::http::websocket::CLOSE_DRAIN
            + std::time::Duration::from_millis(250);
        let busy = |s: &Shard| {
            !s.conns.borrow().is_empty()
                || s.ws_tasks.get() > 0
                || crate::app::recovery::writes_pending()
        };
        while busy(&shard) && tokio::time::Instant::now() < drain_until {
            // Keep serving forwarded messages (e.g. commit replies) while draining.
            while let Ok(msg) = rx.try_recv() {
                shard.handle(msg);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Pending polling GETs were woken by the close; give hyper a moment to write them.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        flusher.abort();
        trimmer.abort();
        crate::shard::set_current(None);
        Ok(())
    });
    // Tasks still in the set are dropped inside the runtime's context: one holding a pooled
    // database connection gives it back by spawning a task, which outside it would panic.
    let _runtime = rt.enter();
    drop(local);
    result
}
