//! One Engine.IO connection: the sans-IO session, the Socket.IO decoder, the namespace sockets
//! and the outbox. Lives on its owner shard only (`Rc`, `RefCell`; borrows never cross `.await`).

use std::cell::{Cell, RefCell};
use std::time::Instant;

use bytes::Bytes;
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::engine::session::ServerSession;
use chatwire_protocol::engine::sid::Sid;
use chatwire_protocol::socket::decoder::Decoder;
use smallvec::SmallVec;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::outbox::PushError;
use super::outbox::{Frame, Outbox};
use super::wire::Wire;
use crate::ratelimit::MessageLimiter;
use crate::sio::slot::SocketSlot;

/// What the handshake request told us, kept for namespace CONNECTs and other nodes'
/// `fetchSockets()`.
#[derive(Debug)]
pub struct Handshake {
    /// The `Authorization` header of the handshake request, if any (fallback token source).
    pub authorization: Option<Box<str>>,
    /// The session's place under the session caps, freed with the connection.
    pub session_permit: Option<crate::http::sessions::SessionPermit>,
    /// When, from where and how (no heap: 32 bytes).
    pub facts: chatwire_cluster::HandshakeFacts,
}

impl Handshake {
    /// The handshake of a request from `peer` over `transport`, served now.
    pub fn new(
        headers: &hyper::HeaderMap,
        peer: std::net::IpAddr,
        transport: chatwire_protocol::engine::handshake::Transport,
        session_permit: Option<crate::http::sessions::SessionPermit>,
    ) -> Handshake {
        let issued_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Handshake {
            authorization: headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(Into::into),
            session_permit,
            facts: chatwire_cluster::HandshakeFacts {
                issued_ms,
                address: peer,
                xdomain: headers.contains_key(hyper::header::ORIGIN),
                secure: false,
                websocket: matches!(
                    transport,
                    chatwire_protocol::engine::handshake::Transport::Websocket
                ),
            },
        }
    }
}

/// Mutable connection state.
pub struct ConnState {
    /// Engine.IO state machine (heartbeat, upgrade, close).
    pub session: ServerSession,
    /// Socket.IO decoder (binary attachment reassembly).
    pub decoder: Decoder,
    /// Sockets connected on this connection, one per namespace.
    pub sockets: SmallVec<[SocketSlot; 1]>,
    /// Rate limit of every client event and namespace CONNECT on this connection, whatever the
    /// namespace (None = unlimited): reconnecting a namespace gives no fresh burst.
    pub limiter: Option<MessageLimiter>,
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
    /// Called when the outbound queue overflows (set by whoever opened the connection).
    pub on_overflow: fn(&Conn),
    /// The WebSocket's stream while the active loop runs: the shard writes deliveries straight
    /// into it ([`Conn::write_direct`]).
    pub wire: RefCell<Option<Wire>>,
    /// Queued by the shard's message loop and not yet written (in the shard's dirty list).
    pub dirty: Cell<bool>,
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
    /// Pushes a frame; a full queue means the client stopped reading: `on_overflow` ends the
    /// connection (and its transport abandons any pending write).
    pub fn push(&self, frame: Frame) {
        if let Err(PushError::Full) = self.outbox.push(frame) {
            (self.on_overflow)(self);
        }
    }

    /// Queues a frame without waking the transport, for [`Conn::write_direct`] at the end of the
    /// shard's batch. False when the frame went the usual way (no WebSocket stream to write to,
    /// or already marked): the caller adds the connection to its dirty list only on true.
    pub fn push_deferred(&self, frame: Frame) -> bool {
        if self.wire.borrow().is_none() {
            self.push(frame);
            return false;
        }
        match self.outbox.push_quiet(frame) {
            Ok(()) => !self.dirty.replace(true),
            Err(PushError::Full) => {
                (self.on_overflow)(self);
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Writes every queued frame straight to the WebSocket (one `writev`), from the shard, without
    /// waking the connection's task; the task is woken only when the socket did not take it all
    /// (it flushes the rest when writable) or failed (it ends the connection).
    pub fn write_direct(&self) {
        self.dirty.set(false);
        let wire = self.wire.borrow().clone();
        let Some(wire) = wire else {
            self.outbox.wake();
            return;
        };
        let mut frames: SmallVec<[Frame; 4]> = SmallVec::new();
        while let Some(frame) = self.outbox.pop() {
            frames.push(frame);
        }
        if frames.is_empty() {
            return;
        }
        match wire.write_frames(&frames) {
            Ok(true) => {}
            Ok(false) => self.outbox.wake_to_flush(),
            Err(e) if e.kind() == std::io::ErrorKind::WriteZero => {
                // More bytes wait than the outbound bound allows: the client is not reading.
                self.outbox.overflow();
                (self.on_overflow)(self);
            }
            Err(_) => self.outbox.wake_to_flush(),
        }
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
}
