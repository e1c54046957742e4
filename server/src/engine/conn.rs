//! One Engine.IO connection: the sans-IO session, the Socket.IO decoder, the namespace sockets
//! and the outbox. Lives on its owner shard only (`Rc`, `RefCell`; borrows never cross `.await`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use chatwire_protocol::engine::handshake::Transport;
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::engine::session::{ServerSession, SessionEvent};
use chatwire_protocol::engine::sid::Sid;
use chatwire_protocol::socket::decoder::Decoder;
use smallvec::SmallVec;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::outbox::{Frame, Outbox};
use crate::shard::{Shard, push_or_drop};
use crate::sio::SocketSlot;

/// What the handshake request told us, kept for namespace CONNECTs.
#[derive(Debug, Default)]
pub struct Handshake {
    /// The `Authorization` header of the handshake request, if any (fallback token source).
    pub authorization: Option<Box<str>>,
    /// The session's place under the session caps, freed with the connection.
    pub session_permit: Option<crate::http::sessions::SessionPermit>,
}

/// Mutable connection state.
pub struct ConnState {
    /// Engine.IO state machine (heartbeat, upgrade, close).
    pub session: ServerSession,
    /// Socket.IO decoder (binary attachment reassembly).
    pub decoder: Decoder,
    /// Sockets connected on this connection, one per namespace.
    pub sockets: SmallVec<[SocketSlot; 1]>,
    /// When the connection must have joined a namespace (connectTimeout); None once joined.
    pub connect_deadline: Option<Instant>,
}

/// One Engine.IO connection on its owner shard.
pub struct Conn {
    /// Shard-local connection number.
    pub key: u64,
    /// The Engine.IO session id.
    pub sid: Sid,
    /// Frames waiting for the transport.
    pub outbox: Outbox,
    /// Handshake facts.
    pub handshake: Handshake,
    /// True for the conformance `/engine.io/` endpoint: Engine.IO only, messages echoed.
    pub engine_only: bool,
    /// Set once the session is closed (no more input is processed).
    pub closed: Cell<bool>,
    /// Wakes the timer when the session's deadline may have moved earlier.
    pub rearm: Notify,
    /// Everything else.
    pub state: RefCell<ConnState>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

/// Encodes one Engine.IO packet as a text frame.
pub fn engine_frame(packet: &EnginePacket) -> Frame {
    let mut out = Vec::with_capacity(16);
    packet.encode_text(&mut out);
    match Utf8Bytes::try_from(Bytes::from(out)) {
        Ok(t) => Frame::Text(t),
        Err(_) => Frame::text_static("6"),
    }
}

impl Conn {
    /// Pushes a frame (a full queue disconnects the client).
    pub fn push(&self, frame: Frame) {
        push_or_drop(self, frame);
    }

    /// Queues everything the session wants to transmit (pings, noops, close). A probe pong is
    /// not queued (it belongs to the probing WebSocket): the return value says one was due.
    pub fn flush_transmits(&self) -> bool {
        let mut probe = false;
        loop {
            let packet = self.state.borrow_mut().session.poll_transmit();
            match packet {
                Some(EnginePacket::Pong(data)) if data.as_ref() == b"probe" => probe = true,
                Some(p) => self.push(engine_frame(&p)),
                None => return probe,
            }
        }
    }

    /// The next timer deadline: the session's, or the connect timeout.
    pub fn deadline(&self) -> Option<Instant> {
        if self.closed.get() {
            return None;
        }
        let st = self.state.borrow();
        match (st.session.poll_timeout(), st.connect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs due timers; closes the connection on ping timeout or connect timeout.
    pub fn on_timer(self: &Rc<Self>, shard: &Rc<Shard>) {
        let now = Instant::now();
        let connect_expired = {
            let mut st = self.state.borrow_mut();
            st.session.handle_timeout(now);
            st.connect_deadline.is_some_and(|d| d <= now)
        };
        self.flush_transmits();
        if connect_expired {
            tracing::debug!(sid = %self.sid, "no namespace joined before connectTimeout");
            self.terminate(shard, "connect timeout");
            return;
        }
        self.drain_events_sync(shard);
    }

    /// Feeds one Engine.IO packet from the transport and processes what it produced.
    /// Returns false when the connection is closed.
    pub async fn on_packet(self: &Rc<Self>, shard: &Rc<Shard>, packet: EnginePacket) -> bool {
        if self.closed.get() {
            return false;
        }
        let result = self
            .state
            .borrow_mut()
            .session
            .handle_packet(packet, Instant::now());
        if let Err(e) = result {
            tracing::debug!(sid = %self.sid, error = %e, "bad engine.io packet: closing");
            self.terminate(shard, "parse error");
            return false;
        }
        self.flush_transmits();
        self.rearm.notify_one();
        loop {
            let event = self.state.borrow_mut().session.poll_event();
            let Some(event) = event else { break };
            match event {
                SessionEvent::Message(text) => {
                    if self.engine_only {
                        let mut out = Vec::with_capacity(text.len() + 1);
                        out.push(b'4');
                        out.extend_from_slice(&text);
                        if let Ok(t) = Utf8Bytes::try_from(Bytes::from(out)) {
                            self.push(Frame::Text(t));
                        }
                    } else if !Box::pin(crate::sio::on_text(shard, self, text)).await {
                        self.terminate(shard, "parse error");
                        return false;
                    }
                }
                SessionEvent::Binary(data) => {
                    if self.engine_only {
                        self.push(Frame::Binary(data));
                    } else if !Box::pin(crate::sio::on_binary(shard, self, data)).await {
                        self.terminate(shard, "parse error");
                        return false;
                    }
                }
                SessionEvent::Upgraded | SessionEvent::UpgradeFailed => {}
                SessionEvent::Closed(reason) => {
                    tracing::debug!(sid = %self.sid, ?reason, "session closed");
                    self.terminate(shard, "transport close");
                    return false;
                }
            }
        }
        !self.closed.get()
    }

    /// Processes session events produced by a timer (only `Closed` is expected).
    fn drain_events_sync(self: &Rc<Self>, shard: &Rc<Shard>) {
        loop {
            let event = self.state.borrow_mut().session.poll_event();
            match event {
                Some(SessionEvent::Closed(reason)) => {
                    tracing::debug!(sid = %self.sid, ?reason, "session closed by timer");
                    self.terminate(shard, "ping timeout");
                    return;
                }
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Closes the connection: every namespace socket is cleaned up, the session leaves the shard
    /// and the transport is told to stop. Idempotent.
    pub fn terminate(self: &Rc<Self>, shard: &Rc<Shard>, reason: &'static str) {
        if self.closed.replace(true) {
            return;
        }
        {
            let mut st = self.state.borrow_mut();
            if !st.session.is_closed() {
                st.session.close();
            }
            st.connect_deadline = None;
        }
        // Queues the close packet when the server ended the session.
        self.flush_transmits();
        while self.state.borrow_mut().session.poll_event().is_some() {}
        let sockets: SmallVec<[SocketSlot; 1]> =
            std::mem::take(&mut self.state.borrow_mut().sockets);
        for slot in sockets {
            crate::sio::cleanup_socket(shard, self, slot, reason);
        }
        shard.conns.borrow_mut().remove(&self.sid);
        metrics::gauge!(crate::telemetry::CONNECTIONS).decrement(1.0);
        self.outbox.close();
        self.rearm.notify_one();
    }

    /// Graceful close (server shutdown): an Engine.IO close packet, then terminate.
    pub fn close_gracefully(self: &Rc<Self>, shard: &Rc<Shard>) {
        // The transport writes the queued close packet before it notices the closed outbox.
        let _ = self.outbox.push(Frame::text_static("1"));
        self.terminate(shard, "server shutting down");
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
    let sid =
        chatwire_protocol::engine::sid::Sid::new(crate::server::random_12(), shard.index as u8);
    let session = ServerSession::new(sid, transport, &shared.protocol.engine, now);
    let conn = Rc::new(Conn {
        key: shard.next_id(),
        sid,
        outbox: Outbox::new(shared.outbound_frames, shared.outbound_bytes),
        handshake,
        engine_only,
        closed: Cell::new(false),
        rearm: Notify::new(),
        state: RefCell::new(ConnState {
            session,
            decoder: Decoder::new(&shared.protocol.socket),
            sockets: SmallVec::new(),
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
                () = tokio::time::sleep_until(deadline.into()) => conn.on_timer(&shard),
                () = conn.rearm.notified() => {}
            }
        }
    });
}
