//! The Socket.IO layer on one connection: decodes Engine.IO messages into Socket.IO packets,
//! connects and disconnects namespace sockets, and hands events to the application (the chat
//! layer, or the conformance echo app). Undecodable traffic closes the connection (the caller).

pub mod acks;
pub mod conformance;
pub mod emit;
pub mod slot;

pub use slot::{Nsp, SocketSlot, event_args};

use std::rc::Rc;

use bytes::Bytes;
use chatwire_protocol::socket::RawEvent;
use chatwire_protocol::socket::packet::{Packet, PacketType};

use crate::engine::conn::Conn;
use crate::shard::Shard;
use crate::shared::Mode;

/// The client-visible id of a socket: shard, local number and some randomness, 16 chars max.
fn socket_id(shard: u16, local: u64) -> Box<str> {
    let r = crate::ids::random_12();
    let mut s = format!("{shard:x}{local:x}-");
    for b in r.iter().take(4) {
        s.push_str(&format!("{b:02x}"));
    }
    s.into_boxed_str()
}

/// Handles one Engine.IO text message. False = undecodable: close the connection.
///
/// In chat mode a text EVENT takes the fast path ([`RawEvent`]: validated like the decoder, no
/// JSON value tree, the handlers deserialize their typed payload from the bytes); every other
/// packet, and any text while a binary packet waits for attachments, goes through the decoder.
pub async fn on_text(shard: &Rc<Shard>, conn: &Rc<Conn>, text: Bytes) -> bool {
    if shard.shared.mode == Mode::Chat
        && text.first() == Some(&b'2')
        && !conn.state.borrow().decoder.is_reassembling()
    {
        let max_depth = shard.shared.protocol.socket.max_json_depth;
        match RawEvent::decode(text.clone(), max_depth) {
            Ok(Some(event)) => return dispatch_raw_event(shard, conn, &event).await,
            Ok(None) => {}
            Err(e) => return protocol_error(conn, &e),
        }
    }
    let decoded = conn.state.borrow_mut().decoder.decode_text(&text);
    match decoded {
        Ok(Some(packet)) => dispatch(shard, conn, packet).await,
        Ok(None) => true,
        Err(e) => protocol_error(conn, &e),
    }
}

/// Logs and counts an undecodable packet; false (the caller closes the connection).
fn protocol_error(conn: &Conn, e: &chatwire_protocol::SocketError) -> bool {
    tracing::debug!(sid = %conn.sid, error = %e, "bad socket.io packet");
    metrics::counter!(crate::telemetry::ERRORS, crate::telemetry::LABEL_CODE => "protocol")
        .increment(1);
    false
}

/// Routes a text EVENT from the fast path, like [`dispatch`] routes a decoded EVENT (chat mode).
async fn dispatch_raw_event(shard: &Rc<Shard>, conn: &Rc<Conn>, event: &RawEvent) -> bool {
    let Some(nsp) = Nsp::parse(shard.shared.mode, event.nsp()) else {
        return true;
    };
    let Some(local) = find_socket(conn, nsp) else {
        // Events for a namespace the client has not joined are ignored, as the reference does.
        return true;
    };
    if let Some(name) = event.name() {
        crate::telemetry::count_event(crate::telemetry::EVENTS_IN, name);
    }
    if nsp == Nsp::Chat {
        crate::app::on_raw_event(shard, conn, local, event).await;
    }
    true
}

/// Handles one Engine.IO binary message (an attachment). False = close the connection.
pub async fn on_binary(shard: &Rc<Shard>, conn: &Rc<Conn>, data: Bytes) -> bool {
    let decoded = conn.state.borrow_mut().decoder.decode_binary(data);
    match decoded {
        Ok(Some(packet)) => dispatch(shard, conn, packet).await,
        Ok(None) => true,
        Err(e) => {
            tracing::debug!(sid = %conn.sid, error = %e, "bad socket.io attachment");
            false
        }
    }
}

/// Finds the socket of `nsp` on the connection: (local number, socket id).
pub fn find_socket(conn: &Conn, nsp: Nsp) -> Option<u64> {
    conn.state
        .borrow()
        .sockets
        .iter()
        .find(|s| s.nsp == nsp)
        .map(|s| s.local)
}

/// Routes a decoded packet.
async fn dispatch(shard: &Rc<Shard>, conn: &Rc<Conn>, packet: Packet) -> bool {
    let mode = shard.shared.mode;
    match packet.kind {
        PacketType::Connect => {
            connect(shard, conn, packet).await;
            true
        }
        PacketType::Disconnect => {
            if let Some(nsp) = Nsp::parse(mode, &packet.nsp) {
                let slot = {
                    let mut st = conn.state.borrow_mut();
                    let pos = st.sockets.iter().position(|s| s.nsp == nsp);
                    pos.map(|p| st.sockets.remove(p))
                };
                // Like the reference server (Engine.IO v4): the connection stays open, its
                // heartbeat goes on and a new CONNECT may join again.
                if let Some(slot) = slot {
                    cleanup_socket(shard, conn, slot, "client namespace disconnect");
                }
            }
            true
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let Some(nsp) = Nsp::parse(mode, &packet.nsp) else {
                return true;
            };
            let Some(local) = find_socket(conn, nsp) else {
                // Events for a namespace the client has not joined are ignored, as the reference does.
                return true;
            };
            if let Some(name) = packet.event_name() {
                crate::telemetry::count_event(crate::telemetry::EVENTS_IN, name);
            }
            match (mode, nsp) {
                (Mode::Chat, Nsp::Chat) => crate::app::on_event(shard, conn, local, packet).await,
                (Mode::Conformance, _) => conformance::on_event(conn, nsp, packet),
                _ => {}
            }
            true
        }
        PacketType::Ack | PacketType::BinaryAck => {
            if let Some(nsp) = Nsp::parse(mode, &packet.nsp) {
                acks::on_ack(conn, nsp, packet);
            }
            true
        }
        PacketType::ConnectError => false,
    }
}

/// A namespace CONNECT: refuse unknown namespaces, authenticate `/chat`, answer CONNECT.
async fn connect(shard: &Rc<Shard>, conn: &Rc<Conn>, packet: Packet) {
    let mode = shard.shared.mode;
    let Some(nsp) = Nsp::parse(mode, &packet.nsp) else {
        conn.push(emit::connect_error(&packet.nsp, "Invalid namespace"));
        return;
    };
    if find_socket(conn, nsp).is_some() {
        return;
    }
    // A CONNECT spends the connection's event budget like any event: leaving and joining a
    // namespace again gives no fresh burst.
    let allowed = conn
        .state
        .borrow()
        .limiter
        .as_ref()
        .is_none_or(|l| l.check());
    if !allowed {
        metrics::counter!(crate::telemetry::ERRORS, crate::telemetry::LABEL_CODE => "rate_limited")
            .increment(1);
        conn.push(emit::connect_error(nsp.as_str(), "rate_limited"));
        return;
    }
    let auth = packet.data;
    let chat = if nsp == Nsp::Chat {
        match crate::app::authenticate(shard, conn, auth.as_ref()).await {
            Ok(c) => Some(Box::new(c)),
            Err(message) => {
                conn.push(emit::connect_error(nsp.as_str(), &message));
                return;
            }
        }
    } else {
        None
    };
    let user = chat.as_ref().map(|c| c.state.borrow().user);
    // Connection state recovery: the session the client asks back (pid + offset in its auth).
    let recovers = mode == Mode::Chat && nsp == Nsp::Chat && shard.recovers();
    let claim = match (recovers, user) {
        (true, Some(user)) => crate::app::recovery::claim(shard, user, auth.as_ref()).await,
        _ => None,
    };
    if conn.closed.get() || find_socket(conn, nsp).is_some() {
        return;
    }
    let mut chat = chat;
    if let (true, Some(c)) = (recovers, chat.as_mut()) {
        c.recovery = Some(crate::app::recovery::session(claim.as_ref()));
    }
    let local = shard.next_id();
    let id = match &claim {
        Some(c) => c.sid.clone().into_boxed_str(),
        None => socket_id(shard.index, local),
    };
    let expires_at = chat.as_ref().and_then(|c| c.expires_at);
    {
        let mut st = conn.state.borrow_mut();
        st.connect_deadline = None;
        st.sockets.push(SocketSlot {
            nsp,
            local,
            id: id.clone(),
            chat,
            acks: None,
        });
    }
    shard.sockets.borrow_mut().insert(local, conn.clone());
    metrics::gauge!(crate::telemetry::SOCKETS).increment(1.0);
    conn.rearm.notify_one();
    match (mode, nsp, user) {
        (Mode::Chat, Nsp::Chat, Some(user)) => {
            crate::app::on_connected(shard, local, user);
            let asked = claim.is_some();
            // Missed events go out before the CONNECT reply, as Socket.IO does: the client
            // buffers them and fires them before `connect`.
            let recovered = match claim {
                Some(c) => crate::app::recovery::resume(shard, conn, local, user, c).await,
                None => false,
            };
            if asked {
                let outcome = if recovered { "recovered" } else { "refused" };
                metrics::counter!(crate::telemetry::RECOVERIES, crate::telemetry::LABEL_OUTCOME => outcome).increment(1);
            }
            if conn.closed.get() {
                return;
            }
            let pid = crate::app::recovery::pid(conn, local);
            match &pid {
                Some(pid) => conn.push(emit::connect_with_pid(nsp.as_str(), &id, pid)),
                None => conn.push(emit::connect(nsp.as_str(), &id)),
            }
            // A fresh session's row is written now: its socket is subscribed, and nothing but
            // the reply may reach the client first. Its positioned frames wait meanwhile.
            if pid.is_some() && !recovered {
                crate::app::recovery::start(shard, conn, local, user).await;
                if conn.closed.get() {
                    return;
                }
            }
            // `connection:success` carries the offset too: a client that gets no other event
            // before it drops can still recover.
            let success = chatwire_chat::Chat::connected(user, &id);
            let success = match crate::app::recovery::offset(conn, local) {
                Some(offset) => chatwire_protocol::socket::emit::with_offset(&success, &offset),
                None => success,
            };
            conn.push(emit::frame(success));
            crate::app::recovery::release(conn, local);
            if recovered {
                crate::app::recovery::partners_online(shard, conn, user);
            }
            if let Some(at) = expires_at {
                disconnect_at_expiry(shard.clone(), conn.clone(), local, at);
            }
        }
        (Mode::Conformance, _, _) => {
            conn.push(emit::connect(nsp.as_str(), &id));
            conformance::on_connected(conn, nsp, auth);
        }
        _ => conn.push(emit::connect(nsp.as_str(), &id)),
    }
}

/// A token's expiry: the socket, if still connected then, gets `error {event: "connection",
/// error: "unauthorized", message: "token expired"}` (what a client needs to fetch a new token
/// and connect again) and a server DISCONNECT of its namespace; the connection stays open.
fn disconnect_at_expiry(shard: Rc<Shard>, conn: Rc<Conn>, local: u64, expires_at: u64) {
    let now = crate::app::unix_now();
    let wait = std::time::Duration::from_secs(expires_at.saturating_sub(now));
    tokio::task::spawn_local(async move {
        tokio::time::sleep(wait).await;
        let slot = {
            let mut st = conn.state.borrow_mut();
            let pos = st.sockets.iter().position(|s| s.local == local);
            pos.map(|p| st.sockets.remove(p))
        };
        let Some(slot) = slot else { return };
        if conn.closed.get() {
            return;
        }
        let nsp = slot.nsp.as_str();
        let body = br#"{"event":"connection","error":"unauthorized","message":"token expired"}"#;
        conn.push(emit::event(nsp, "error", body));
        conn.push(emit::disconnect(nsp));
        cleanup_socket(&shard, &conn, slot, "token expired");
    });
}

/// Removes a socket from the shard: chat cleanup (rooms, typing, presence), then forget it.
pub fn cleanup_socket(shard: &Rc<Shard>, conn: &Rc<Conn>, slot: SocketSlot, reason: &'static str) {
    tracing::trace!(sid = %conn.sid, socket = %slot.id, reason, "socket disconnected");
    shard.sockets.borrow_mut().remove(&slot.local);
    metrics::gauge!(crate::telemetry::SOCKETS).decrement(1.0);
    if let Some(mut chat) = slot.chat {
        if let Some(r) = chat.recovery.take() {
            // Socket.IO keeps a session only when the connection was lost, not when the client
            // (or its token's expiry) ended the socket.
            let explicit = matches!(reason, "client namespace disconnect" | "token expired");
            crate::app::recovery::ended(shard, r.pid, explicit);
        }
        crate::app::on_disconnected(shard, slot.local, *chat);
    }
    shard
        .adapter()
        .socket_gone(&**shard, shard.socket_key(slot.local));
}
