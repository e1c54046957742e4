//! The client side of both layers, for the load generator and end-to-end tests.
//!
//! [`ClientSession`] is the Engine.IO client state machine (sans-IO like the server's): it reads
//! the open packet, answers every ping with a pong carrying the same data, watches for a silent
//! server (no ping within `pingInterval + pingTimeout`), and runs the polling -> websocket upgrade
//! (`2probe`, expect `3probe`, send `5`). The free functions build the Socket.IO packets a client
//! sends and decode what a server sends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::engine::packet::{OpenPacket, PROBE, Packet};
use crate::error::{EngineError, SocketError};
use crate::json::Value;
use crate::socket::packet::{self, Packet as SocketPacket};

/// What the client session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server's open packet arrived; the session is established.
    Open(OpenPacket),
    /// A text message (a Socket.IO packet).
    Message(Bytes),
    /// A binary message (an attachment).
    Binary(Bytes),
    /// The probe succeeded and `5` was queued: switch to the websocket now.
    Upgraded,
    /// The session ended.
    Closed(ClientCloseReason),
}

/// Why a client session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCloseReason {
    /// The server sent a close packet.
    ServerClose,
    /// No ping from the server within `pingInterval + pingTimeout`.
    PingTimeout,
    /// The client closed ([`ClientSession::close`]).
    ClientClose,
}

/// Where the client's upgrade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpgradeState {
    /// Not upgrading.
    Idle,
    /// `2probe` sent on the websocket, waiting for `3probe`.
    Probing,
}

/// An Engine.IO client session.
#[derive(Debug)]
pub struct ClientSession {
    /// The open packet, once received.
    open: Option<OpenPacket>,
    /// When the server is considered gone if no ping arrives.
    deadline: Option<Instant>,
    /// Upgrade progress.
    upgrade: UpgradeState,
    /// Packets to write, in order (pongs, probe, upgrade, close).
    transmit: VecDeque<Packet>,
    /// Events for the caller.
    events: VecDeque<ClientEvent>,
    /// Whether the session ended.
    closed: bool,
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientSession {
    /// A session waiting for the server's open packet.
    pub fn new() -> ClientSession {
        ClientSession {
            open: None,
            deadline: None,
            upgrade: UpgradeState::Idle,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
        }
    }

    /// The server's open packet, once received.
    pub fn open_packet(&self) -> Option<&OpenPacket> {
        self.open.as_ref()
    }

    /// The session id, once open.
    pub fn sid(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.sid.as_str())
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn rearm(&mut self, now: Instant) {
        if let Some(open) = &self.open {
            let wait = Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout));
            self.deadline = now.checked_add(wait);
        }
    }

    /// A packet from the server (on the current transport, or on the probing websocket).
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), EngineError> {
        if self.closed {
            return Err(EngineError::Closed);
        }
        match packet {
            Packet::Open(open) => {
                if self.open.is_some() {
                    return Err(EngineError::UnexpectedPacket);
                }
                self.open = Some(open.clone());
                self.rearm(now);
                self.events.push_back(ClientEvent::Open(open));
            }
            _ if self.open.is_none() => return Err(EngineError::UnexpectedPacket),
            Packet::Ping(data) => {
                self.transmit.push_back(Packet::Pong(data));
                self.rearm(now);
            }
            Packet::Pong(data)
                if data.as_ref() == PROBE && self.upgrade == UpgradeState::Probing =>
            {
                self.upgrade = UpgradeState::Idle;
                self.transmit.push_back(Packet::Upgrade);
                self.events.push_back(ClientEvent::Upgraded);
            }
            Packet::Pong(_) | Packet::Upgrade => return Err(EngineError::UnexpectedPacket),
            Packet::Message(data) => self.events.push_back(ClientEvent::Message(data)),
            Packet::Binary(data) => self.events.push_back(ClientEvent::Binary(data)),
            Packet::Close => self.finish(ClientCloseReason::ServerClose),
            Packet::Noop => {}
        }
        Ok(())
    }

    /// Starts the upgrade: queues `2probe`, to be written on the new websocket.
    pub fn begin_upgrade(&mut self) -> Result<(), EngineError> {
        if self.closed || self.open.is_none() || self.upgrade != UpgradeState::Idle {
            return Err(EngineError::UnexpectedPacket);
        }
        self.upgrade = UpgradeState::Probing;
        self.transmit
            .push_back(Packet::Ping(Bytes::from_static(PROBE)));
        Ok(())
    }

    /// Closes the session and queues a close packet.
    pub fn close(&mut self) {
        if !self.closed {
            self.transmit.push_back(Packet::Close);
            self.finish(ClientCloseReason::ClientClose);
        }
    }

    fn finish(&mut self, reason: ClientCloseReason) {
        self.closed = true;
        self.deadline = None;
        self.events.push_back(ClientEvent::Closed(reason));
    }

    /// The next packet to write.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`ClientSession::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time reached `now`: a silent server closes the session.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.deadline
            && now >= deadline
            && !self.closed
        {
            self.finish(ClientCloseReason::PingTimeout);
        }
    }
}

/// The Socket.IO CONNECT a client sends, with an optional auth object, as an Engine.IO message
/// text (`40/chat,{"token":"..."}`).
pub fn connect(nsp: &str, auth: Option<Value>) -> Vec<u8> {
    to_message(&SocketPacket::connect(nsp, auth))
}

/// An EVENT as an Engine.IO message text, asking for an ack when `ack_id` is set
/// (`42/chat,5["message:send",{...}]`).
pub fn event(nsp: &str, name: &str, args: Vec<Value>, ack_id: Option<u64>) -> Vec<u8> {
    let mut p = SocketPacket::event(nsp, name, args);
    p.id = ack_id;
    to_message(&p)
}

/// An ACK answering a server event, as an Engine.IO message text.
pub fn ack(nsp: &str, id: u64, args: Vec<Value>) -> Vec<u8> {
    to_message(&SocketPacket::ack(nsp, id, args))
}

/// `4` + the Socket.IO packet text: what goes in an Engine.IO message.
pub fn to_message(p: &SocketPacket) -> Vec<u8> {
    let mut out = vec![b'4'];
    packet::encode(p, &mut out);
    out
}

/// Decodes a Socket.IO packet a server sent (an Engine.IO message's data), validated like the
/// reference parser (CONNECT `{"sid":...}`, CONNECT_ERROR, DISCONNECT, events, acks) but with no
/// attachment limit. Binary packets need a [`crate::socket::Decoder`] to collect attachments;
/// here they come back with the attachment count to expect.
pub fn decode_server_packet(
    data: &[u8],
    max_depth: usize,
) -> Result<(SocketPacket, usize), SocketError> {
    crate::socket::decoder::decode_packet(data, usize::MAX, max_depth)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
