//! The server side of one Engine.IO session, sans-IO: packets and `Instant`s in; events, control
//! packets and the next timer deadline out. It never reads a clock.
//!
//! Driving it (one task or shard owns each session):
//! 1. feed each packet from the current transport to [`ServerSession::handle_packet`], then drain
//!    [`ServerSession::poll_event`] (a message is kept in a one-packet slot, so drain every time);
//! 2. write every packet from [`ServerSession::poll_transmit`]: `Pong("probe")` goes to the probing
//!    websocket, everything else (ping, noop, close) to the current transport (a noop ends the
//!    pending poll so the client can pause polling during an upgrade);
//! 3. arm a timer at [`ServerSession::poll_timeout`] and call [`ServerSession::handle_timeout`].
//!
//! Heartbeat (reference engine.io 6): the server pings every `ping_interval`; the client must pong
//! within `ping_timeout` or the session closes with [`CloseReason::PingTimeout`]; a pong restarts
//! the interval. Upgrade: a websocket joins with the sid ([`ServerSession::begin_upgrade`]), sends
//! `2probe`, gets `3probe`, the polling side gets a noop, then `5` switches the transport. No `5`
//! within `upgrade_timeout` drops the probe ([`SessionEvent::UpgradeFailed`]), the session stays.
//!
//! The struct holds no heap memory: timers are `Instant`s, pending control packets are flags, the
//! outgoing application queue lives in the server.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::EngineConfig;
use crate::engine::handshake::Transport;
use crate::engine::packet::{PROBE, Packet};
use crate::engine::sid::Sid;
use crate::error::EngineError;

/// Why a session ended (the reference server's close reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet, or the transport connection went away.
    TransportClose,
    /// No pong within `ping_timeout` after a ping.
    PingTimeout,
    /// The client sent something undecodable or out of place.
    ParseError,
    /// The client broke the transport rules (duplicate poll, ping from the client, oversize message).
    TransportError,
    /// The server closed the session ([`ServerSession::close`]).
    ForcedClose,
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A text message for the Socket.IO layer.
    Message(Bytes),
    /// A binary message (an attachment) for the Socket.IO layer.
    Binary(Bytes),
    /// The session now runs on the websocket; end the polling transport after its pending poll.
    Upgraded,
    /// The upgrade was abandoned (timeout or bad probe): close the probing websocket only.
    UpgradeFailed,
    /// The session is over; reported once. Drop its transports and state.
    Closed(CloseReason),
}

/// Where a polling -> websocket upgrade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpgradeState {
    /// No websocket is probing.
    None,
    /// A websocket joined and must send `2probe` before `deadline`.
    AwaitingProbe { deadline: Instant },
    /// `3probe` was sent; the websocket must send `5` before `deadline`.
    AwaitingFinish { deadline: Instant },
}

/// Control packets waiting for [`ServerSession::poll_transmit`], as bit flags.
mod flag {
    pub(super) const PING: u16 = 1;
    pub(super) const PROBE_PONG: u16 = 1 << 1;
    pub(super) const NOOP: u16 = 1 << 2;
    pub(super) const CLOSE: u16 = 1 << 3;
    pub(super) const UPGRADED: u16 = 1 << 4;
    pub(super) const UPGRADE_FAILED: u16 = 1 << 5;
    pub(super) const POLL_ACTIVE: u16 = 1 << 6;
    pub(super) const POST_ACTIVE: u16 = 1 << 7;
    /// The pending message slot holds binary data.
    pub(super) const PENDING_BINARY: u16 = 1 << 8;
    /// `Closed` was already reported.
    pub(super) const CLOSE_REPORTED: u16 = 1 << 9;
}

/// One server-side Engine.IO session (no heap; at most 128 bytes).
#[derive(Debug)]
pub struct ServerSession {
    /// The session id clients send back as `sid`.
    sid: Sid,
    /// Transport currently carrying the session's packets.
    transport: Transport,
    /// Milliseconds between pings (copied from the config, u32 keeps the struct small).
    ping_interval_ms: u32,
    /// Milliseconds a pong may take.
    ping_timeout_ms: u32,
    /// Milliseconds an upgrade may take.
    upgrade_timeout_ms: u32,
    /// Largest accepted message in bytes.
    max_payload: u32,
    /// When the next ping is due (meaningful while no pong is awaited).
    next_ping: Instant,
    /// Deadline for the pong of the ping in flight.
    pong_deadline: Option<Instant>,
    /// Upgrade progress.
    upgrade: UpgradeState,
    /// The message waiting for `poll_event` (one slot, drained after each packet); text unless
    /// `flag::PENDING_BINARY`.
    pending: Option<Bytes>,
    /// Why the session closed; `Some` once closed.
    closed: Option<CloseReason>,
    /// `flag::*` bits: pending control packets, pending events, active requests.
    flags: u16,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn after(now: Instant, ms: u32) -> Instant {
    now.checked_add(Duration::from_millis(u64::from(ms)))
        .unwrap_or(now)
}

impl ServerSession {
    /// A new open session; the first ping is due `ping_interval` after `now`.
    pub fn new(sid: Sid, transport: Transport, config: &EngineConfig, now: Instant) -> Self {
        let ping_interval_ms = millis(config.ping_interval);
        ServerSession {
            sid,
            transport,
            ping_interval_ms,
            ping_timeout_ms: millis(config.ping_timeout),
            upgrade_timeout_ms: millis(config.upgrade_timeout),
            max_payload: u32::try_from(config.max_payload).unwrap_or(u32::MAX),
            next_ping: after(now, ping_interval_ms),
            pong_deadline: None,
            upgrade: UpgradeState::None,
            pending: None,
            closed: None,
            flags: 0,
        }
    }

    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The transport currently carrying the session.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether the session has closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Whether a websocket is probing an upgrade.
    pub fn is_upgrading(&self) -> bool {
        self.upgrade != UpgradeState::None
    }

    /// The open packet to send first (`upgrades` lists `websocket` on polling only).
    pub fn open_packet(&self) -> Packet {
        let upgrades = match self.transport {
            Transport::Polling => vec!["websocket".to_owned()],
            Transport::Websocket => Vec::new(),
        };
        Packet::Open(crate::engine::packet::OpenPacket {
            sid: self.sid.to_string(),
            upgrades,
            ping_interval: u64::from(self.ping_interval_ms),
            ping_timeout: u64::from(self.ping_timeout_ms),
            max_payload: u64::from(self.max_payload),
        })
    }

    /// A packet received on the current transport. An `Err` other than
    /// [`EngineError::EventNotDrained`] has closed the session.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), EngineError> {
        if self.closed.is_some() {
            return Err(EngineError::Closed);
        }
        if self.pending.is_some() {
            return Err(EngineError::EventNotDrained);
        }
        match packet {
            Packet::Message(data) => self.accept(data, false),
            Packet::Binary(data) => self.accept(data, true),
            Packet::Pong(_) => {
                self.pong_deadline = None;
                self.next_ping = after(now, self.ping_interval_ms);
                Ok(())
            }
            Packet::Ping(_) => {
                self.close_with(CloseReason::TransportError, false);
                Err(EngineError::InvalidHeartbeatDirection)
            }
            Packet::Close => {
                self.close_with(CloseReason::TransportClose, false);
                Ok(())
            }
            Packet::Noop => Ok(()),
            Packet::Open(_) | Packet::Upgrade => {
                self.close_with(CloseReason::ParseError, false);
                Err(EngineError::UnexpectedPacket)
            }
        }
    }

    fn accept(&mut self, data: Bytes, binary: bool) -> Result<(), EngineError> {
        let max = self.max_payload as usize;
        if data.len() > max {
            self.close_with(CloseReason::TransportError, false);
            return Err(EngineError::PayloadTooLarge {
                len: data.len(),
                max,
            });
        }
        if binary {
            self.flags |= flag::PENDING_BINARY;
        } else {
            self.flags &= !flag::PENDING_BINARY;
        }
        self.pending = Some(data);
        Ok(())
    }

    /// A websocket with this session's sid connected to upgrade a polling session. An `Err` means
    /// refuse it (HTTP 400); the session is unaffected.
    pub fn begin_upgrade(&mut self, now: Instant) -> Result<(), EngineError> {
        if self.closed.is_some() {
            return Err(EngineError::Closed);
        }
        if self.transport != Transport::Polling || self.upgrade != UpgradeState::None {
            return Err(EngineError::UnexpectedPacket);
        }
        self.upgrade = UpgradeState::AwaitingProbe {
            deadline: after(now, self.upgrade_timeout_ms),
        };
        Ok(())
    }

    /// A packet received on the probing websocket. An `Err` abandoned the upgrade (close that
    /// websocket); the session itself stays open on polling.
    pub fn handle_upgrade_packet(
        &mut self,
        packet: Packet,
        _now: Instant,
    ) -> Result<(), EngineError> {
        if self.closed.is_some() {
            return Err(EngineError::Closed);
        }
        match (self.upgrade, packet) {
            (UpgradeState::AwaitingProbe { deadline }, Packet::Ping(data))
                if data.as_ref() == PROBE =>
            {
                self.flags |= flag::PROBE_PONG | flag::NOOP;
                self.upgrade = UpgradeState::AwaitingFinish { deadline };
                Ok(())
            }
            (UpgradeState::AwaitingFinish { .. }, Packet::Upgrade) => {
                self.upgrade = UpgradeState::None;
                self.transport = Transport::Websocket;
                self.flags &= !(flag::NOOP | flag::POLL_ACTIVE | flag::POST_ACTIVE);
                self.flags |= flag::UPGRADED;
                Ok(())
            }
            (UpgradeState::None, _) => Err(EngineError::UnexpectedPacket),
            _ => {
                self.abort_upgrade();
                Err(EngineError::UnexpectedPacket)
            }
        }
    }

    /// The probing websocket went away before the upgrade completed.
    pub fn upgrade_transport_closed(&mut self) {
        if self.upgrade != UpgradeState::None {
            self.abort_upgrade();
        }
    }

    fn abort_upgrade(&mut self) {
        self.upgrade = UpgradeState::None;
        self.flags &= !(flag::PROBE_PONG | flag::NOOP);
        self.flags |= flag::UPGRADE_FAILED;
    }

    /// A GET poll starts. A second concurrent poll closes the session with
    /// [`EngineError::DuplicatePoll`] (answer it 400, and end the first poll with a close).
    pub fn begin_poll(&mut self) -> Result<(), EngineError> {
        self.begin_request(flag::POLL_ACTIVE, EngineError::DuplicatePoll)
    }

    /// The GET poll was answered (or its connection dropped).
    pub fn end_poll(&mut self) {
        self.flags &= !flag::POLL_ACTIVE;
    }

    /// A POST starts. A second concurrent POST closes the session with [`EngineError::DuplicatePost`].
    pub fn begin_post(&mut self) -> Result<(), EngineError> {
        self.begin_request(flag::POST_ACTIVE, EngineError::DuplicatePost)
    }

    /// The POST was read.
    pub fn end_post(&mut self) {
        self.flags &= !flag::POST_ACTIVE;
    }

    /// Whether a GET poll is waiting for data.
    pub fn is_polling(&self) -> bool {
        self.flags & flag::POLL_ACTIVE != 0
    }

    fn begin_request(&mut self, bit: u16, duplicate: EngineError) -> Result<(), EngineError> {
        if self.closed.is_some() {
            return Err(EngineError::Closed);
        }
        if self.transport != Transport::Polling {
            return Err(EngineError::UnexpectedPacket);
        }
        if self.flags & bit != 0 {
            self.close_with(CloseReason::TransportError, true);
            return Err(duplicate);
        }
        self.flags |= bit;
        Ok(())
    }

    /// The server closes the session: a close packet is queued and `Closed(ForcedClose)` reported.
    pub fn close(&mut self) {
        self.close_with(CloseReason::ForcedClose, true);
    }

    /// The current transport's connection is gone: the session closes with `TransportClose`.
    pub fn transport_closed(&mut self) {
        self.close_with(CloseReason::TransportClose, false);
    }

    fn close_with(&mut self, reason: CloseReason, send_close: bool) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        self.upgrade = UpgradeState::None;
        self.pong_deadline = None;
        let keep = flag::POLL_ACTIVE | flag::POST_ACTIVE | flag::PENDING_BINARY;
        self.flags &= keep;
        if send_close {
            self.flags |= flag::CLOSE;
        }
    }

    /// The next event, if any: the pending message, then upgrade outcomes, then `Closed` (once).
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        if let Some(data) = self.pending.take() {
            return Some(if self.flags & flag::PENDING_BINARY != 0 {
                SessionEvent::Binary(data)
            } else {
                SessionEvent::Message(data)
            });
        }
        if self.flags & flag::UPGRADED != 0 {
            self.flags &= !flag::UPGRADED;
            return Some(SessionEvent::Upgraded);
        }
        if self.flags & flag::UPGRADE_FAILED != 0 {
            self.flags &= !flag::UPGRADE_FAILED;
            return Some(SessionEvent::UpgradeFailed);
        }
        match self.closed {
            Some(reason) if self.flags & flag::CLOSE_REPORTED == 0 => {
                self.flags |= flag::CLOSE_REPORTED;
                Some(SessionEvent::Closed(reason))
            }
            _ => None,
        }
    }

    /// The next control packet to write (see the module docs for which transport gets it).
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        let order = [
            (flag::CLOSE, Packet::Close),
            (flag::PROBE_PONG, Packet::Pong(Bytes::from_static(PROBE))),
            (flag::NOOP, Packet::Noop),
            (flag::PING, Packet::Ping(Bytes::new())),
        ];
        for (bit, packet) in order {
            if self.flags & bit != 0 {
                self.flags &= !bit;
                return Some(packet);
            }
        }
        None
    }

    /// When [`ServerSession::handle_timeout`] must next be called; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let heartbeat = self.pong_deadline.unwrap_or(self.next_ping);
        Some(match self.upgrade {
            UpgradeState::None => heartbeat,
            UpgradeState::AwaitingProbe { deadline }
            | UpgradeState::AwaitingFinish { deadline } => heartbeat.min(deadline),
        })
    }

    /// Time has reached `now`: send a due ping, close on a missed pong, drop a slow upgrade.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if let UpgradeState::AwaitingProbe { deadline } | UpgradeState::AwaitingFinish { deadline } =
            self.upgrade
            && now >= deadline
        {
            self.abort_upgrade();
        }
        match self.pong_deadline {
            Some(deadline) if now >= deadline => self.close_with(CloseReason::PingTimeout, false),
            Some(_) => {}
            None if now >= self.next_ping => {
                self.flags |= flag::PING;
                self.pong_deadline = Some(after(now, self.ping_timeout_ms));
            }
            None => {}
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
