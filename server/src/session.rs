//! The life of an Engine.IO connection on its shard: opened by a handshake, fed packets by its
//! transport (Socket.IO messages go up to [`crate::sio`]), timed out by its timer task, and
//! terminated (every namespace socket cleaned up, the session removed from the shard).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use chatwire_protocol::engine::handshake::Transport;
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::engine::session::{ServerSession, SessionEvent};
use chatwire_protocol::socket::decoder::Decoder;
use smallvec::SmallVec;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::engine::conn::{Conn, ConnState, Handshake};
use crate::engine::outbox::{Frame, Outbox};
use crate::ratelimit::MessageLimiter;
use crate::shard::Shard;
use crate::sio::slot::SocketSlot;

/// Runs due timers; closes the connection on ping timeout or connect timeout.
pub fn on_timer(conn: &Rc<Conn>, shard: &Rc<Shard>) {
    let now = Instant::now();
    let connect_expired = {
        let mut st = conn.state.borrow_mut();
        st.session.handle_timeout(now);
        st.connect_deadline.is_some_and(|d| d <= now)
    };
    conn.flush_transmits();
    if connect_expired {
        tracing::debug!(sid = %conn.sid, "no namespace joined before connectTimeout");
        terminate(conn, shard, "connect timeout");
        return;
    }
    drain_events_sync(conn, shard);
}

/// Feeds one Engine.IO packet from the transport and processes what it produced.
/// Returns false when the connection is closed.
pub async fn on_packet(conn: &Rc<Conn>, shard: &Rc<Shard>, packet: EnginePacket) -> bool {
    match feed_packet(conn, shard, packet) {
        Some(done) => on_events(conn, shard, done).await,
        None => false,
    }
}

/// The synchronous half of [`on_packet`]: hands the packet to the session. None when the
/// connection is (now) closed. Kept out of the async half so the packet is not held in the
/// future of every WebSocket's loop, which awaits [`on_events`] inline.
pub fn feed_packet<'a>(
    conn: &Rc<Conn>,
    shard: &'a Rc<Shard>,
    packet: EnginePacket,
) -> Option<PacketDone<'a>> {
    if conn.closed.get() {
        return None;
    }
    // What this packet delivers to other WebSockets is written once each, when it is done.
    shard.begin_packet();
    let done = PacketDone(shard);
    let result = conn
        .state
        .borrow_mut()
        .session
        .handle_packet(packet, Instant::now());
    if let Err(e) = result {
        tracing::debug!(sid = %conn.sid, error = %e, "bad engine.io packet: closing");
        terminate(conn, shard, "parse error");
        return None;
    }
    conn.flush_transmits();
    conn.rearm.notify_one();
    Some(done)
}

/// The async half of [`on_packet`]: processes the events the packet produced (Socket.IO
/// messages go up to [`crate::sio`], boxed: only while one is processed). `_done` ends the
/// packet when this returns. Returns false when the connection is closed.
pub async fn on_events(conn: &Rc<Conn>, shard: &Rc<Shard>, _done: PacketDone<'_>) -> bool {
    loop {
        let event = conn.state.borrow_mut().session.poll_event();
        let Some(event) = event else { break };
        match event {
            SessionEvent::Message(text) => {
                if conn.engine_only {
                    let mut out = Vec::with_capacity(text.len() + 1);
                    out.push(b'4');
                    out.extend_from_slice(&text);
                    if let Ok(t) = Utf8Bytes::try_from(Bytes::from(out)) {
                        conn.push(Frame::Text(t));
                    }
                } else if !Box::pin(crate::sio::on_text(shard, conn, text)).await {
                    terminate(conn, shard, "parse error");
                    return false;
                }
            }
            SessionEvent::Binary(data) => {
                if conn.engine_only {
                    conn.push(Frame::Binary(data));
                } else if !Box::pin(crate::sio::on_binary(shard, conn, data)).await {
                    terminate(conn, shard, "parse error");
                    return false;
                }
            }
            SessionEvent::Upgraded | SessionEvent::UpgradeFailed => {}
            SessionEvent::Closed(reason) => {
                tracing::debug!(sid = %conn.sid, ?reason, "session closed");
                terminate(conn, shard, "transport close");
                return false;
            }
        }
    }
    !conn.closed.get()
}

/// Processes session events produced by a timer (only `Closed` is expected).
fn drain_events_sync(conn: &Rc<Conn>, shard: &Rc<Shard>) {
    loop {
        let event = conn.state.borrow_mut().session.poll_event();
        match event {
            Some(SessionEvent::Closed(reason)) => {
                tracing::debug!(sid = %conn.sid, ?reason, "session closed by timer");
                terminate(conn, shard, "ping timeout");
                return;
            }
            Some(_) => {}
            None => return,
        }
    }
}

/// Closes the connection: every namespace socket is cleaned up, the session leaves the shard
/// and the transport is told to stop. Idempotent.
pub fn terminate(conn: &Rc<Conn>, shard: &Rc<Shard>, reason: &'static str) {
    if conn.closed.replace(true) {
        return;
    }
    {
        let mut st = conn.state.borrow_mut();
        if !st.session.is_closed() {
            st.session.close();
        }
        st.connect_deadline = None;
    }
    // Queues the close packet when the server ended the session.
    conn.flush_transmits();
    while conn.state.borrow_mut().session.poll_event().is_some() {}
    let sockets: SmallVec<[SocketSlot; 1]> = std::mem::take(&mut conn.state.borrow_mut().sockets);
    for slot in sockets {
        crate::sio::cleanup_socket(shard, conn, slot, reason);
    }
    shard.conns.borrow_mut().remove(&conn.sid);
    metrics::gauge!(crate::telemetry::CONNECTIONS).decrement(1.0);
    conn.outbox.close();
    conn.rearm.notify_one();
}

/// Graceful close (server shutdown): an Engine.IO close packet, then terminate.
pub fn close_gracefully(conn: &Rc<Conn>, shard: &Rc<Shard>) {
    // The transport writes the queued close packet before it notices the closed outbox.
    let _ = conn.outbox.push(Frame::text_static("1"));
    terminate(conn, shard, "server shutting down");
}

/// The outbound queue of `conn` overflowed (the client stopped reading): its sockets are cleaned
/// up at once, from a task (the caller may hold borrows of shard state).
fn slow_client(conn: &Conn) {
    metrics::counter!(crate::telemetry::SLOW_CLIENTS).increment(1);
    tracing::debug!(sid = %conn.sid, "outbound queue full: disconnecting slow client");
    if let Some(shard) = crate::shard::current() {
        let found = shard.conns.borrow().get(&conn.sid).cloned();
        if let Some(rc) = found {
            tokio::task::spawn_local(async move { terminate(&rc, &shard, "slow client") });
        }
    }
}

/// Creates a connection in `transport` state, registers it on the shard and starts its timer.
pub fn open(
    shard: &Rc<Shard>,
    transport: Transport,
    handshake: Handshake,
    engine_only: bool,
) -> Rc<Conn> {
    let shared = &shard.shared;
    let now = Instant::now();
    let sid = chatwire_protocol::engine::sid::Sid::new_on_node(
        crate::ids::random_12(),
        shard.index as u8,
        shard.shared.fleet.node,
    );
    let session = ServerSession::new(sid, transport, &shared.protocol.engine, now);
    let conn = Rc::new(Conn {
        key: shard.next_id(),
        sid,
        outbox: Outbox::new(shared.outbound_frames, shared.outbound_bytes),
        handshake,
        engine_only,
        closed: Cell::new(false),
        rearm: Notify::new(),
        on_overflow: slow_client,
        wire: RefCell::new(None),
        dirty: Cell::new(false),
        state: RefCell::new(ConnState {
            session,
            decoder: Decoder::new(&shared.protocol.socket),
            sockets: SmallVec::new(),
            limiter: shared
                .chat
                .as_ref()
                .filter(|c| c.rate.0 > 0)
                .map(|c| MessageLimiter::new(c.rate.0, c.rate.1.max(1))),
            connect_deadline: (!engine_only).then(|| now + shared.protocol.socket.connect_timeout),
        }),
    });
    shard.conns.borrow_mut().insert(sid, conn.clone());
    metrics::gauge!(crate::telemetry::CONNECTIONS).increment(1.0);
    metrics::counter!(crate::telemetry::HANDSHAKES).increment(1);
    conn
}

/// The connection's timer task: heartbeat, upgrade timeout and connectTimeout, whatever the
/// transport. Ends when the connection closes.
pub fn spawn_timer(shard: Rc<Shard>, conn: Rc<Conn>) {
    tokio::task::spawn_local(async move {
        while !conn.closed.get() {
            let Some(deadline) = conn.deadline() else {
                break;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => on_timer(&conn, &shard),
                () = conn.rearm.notified() => {}
            }
        }
    });
}

/// Another node asked (Socket.IO's `disconnectSockets`): each socket gets its namespace
/// DISCONNECT, or with `close` its whole connection ends.
pub fn disconnect_sockets(shard: &Rc<Shard>, sockets: &[u64], close: bool) {
    for local in sockets {
        let Some(conn) = shard.sockets.borrow().get(local).cloned() else {
            continue;
        };
        if close {
            terminate(&conn, shard, "disconnected by another node");
            continue;
        }
        let slot = {
            let mut st = conn.state.borrow_mut();
            let pos = st.sockets.iter().position(|s| s.local == *local);
            pos.map(|p| st.sockets.remove(p))
        };
        if let Some(slot) = slot {
            conn.push(crate::sio::emit::disconnect(slot.nsp.as_str()));
            crate::sio::cleanup_socket(shard, &conn, slot, "disconnected by another node");
        }
    }
}

/// Ends a [`Shard::begin_packet`] when dropped.
pub struct PacketDone<'a>(&'a Shard);

impl Drop for PacketDone<'_> {
    fn drop(&mut self) {
        self.0.end_packet();
    }
}
