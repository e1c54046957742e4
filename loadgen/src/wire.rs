//! The only place the load generator speaks Engine.IO / Socket.IO: through the protocol crate's
//! client side (`chatwire_protocol::client`, `engine::packet`, `socket::*`). No codec of our own.
//!
//! [`Wire`] is one connection's protocol state; it turns frames into [`Incoming`] and builds the
//! frames a simulated user sends.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chatwire_protocol::client::{self, ClientEvent, ClientSession};
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::engine::payload;
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::packet::{Packet, PacketType};
use chatwire_protocol::socket::raw::RawEvent;
use simd_json::prelude::*;

/// JSON nesting the load generator accepts from a server.
const MAX_JSON_DEPTH: usize = 64;

/// A decoded server packet, reduced to what a simulated user acts on.
#[derive(Debug)]
pub enum Incoming {
    /// Engine.IO open on a WebSocket.
    Open,
    /// Engine.IO open over polling, with the session id.
    OpenWithSid(String),
    /// `3probe` arrived during an upgrade (`5` is queued to transmit).
    Upgraded,
    /// The session ended (server close, or no ping within pingInterval + pingTimeout).
    Close,
    /// Socket.IO CONNECT_ERROR on our namespace, with its message.
    ConnectError(String),
    /// An event on our namespace: name and first argument.
    Event {
        /// Event name.
        name: String,
        /// First argument (`Null` when none).
        args: Value,
    },
    /// A `message:new` on our namespace, read without a JSON value tree (the hot path: a
    /// simulated user receives far more of these than anything else).
    Delivered {
        /// The stored message id.
        id: Option<i64>,
        /// The content (carries the send timestamp).
        content: Option<String>,
    },
    /// Anything else (CONNECT ack, other namespaces, binary attachments).
    Other,
}

/// The fields of a `message:new` payload the load generator reads; the rest is skipped.
#[derive(serde::Deserialize)]
struct NewMessage {
    id: Option<i64>,
    content: Option<String>,
}

/// One connection's protocol state: the protocol crate's [`ClientSession`] (open packet,
/// pong for every ping, upgrade probe, silent-server timeout) plus our namespace.
#[derive(Debug)]
pub struct Wire {
    /// Our namespace (`/chat`).
    nsp: String,
    /// Engine.IO client state machine.
    session: ClientSession,
    /// How a compact `message:new` on our namespace starts (`2/chat,["message:new",`): only
    /// frames that start so take the raw path, so no other packet is decoded twice.
    delivered_prefix: Vec<u8>,
}

impl Wire {
    /// State for a connection that will join `nsp`.
    pub fn new(nsp: &str) -> Self {
        let nsp_part = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        Self {
            nsp: nsp.to_owned(),
            session: ClientSession::new(),
            delivered_prefix: format!("2{nsp_part}[\"message:new\",").into_bytes(),
        }
    }

    /// Feeds one WebSocket text frame; then read [`Wire::poll`] and [`Wire::poll_transmit`].
    pub fn feed(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let packet = EnginePacket::decode_text(frame)?;
        self.session.handle_packet(packet, Instant::now())?;
        Ok(())
    }

    /// Feeds one polling response body.
    pub fn feed_payload(&mut self, body: &[u8]) -> anyhow::Result<()> {
        for packet in payload::decode(body) {
            self.session.handle_packet(packet?, Instant::now())?;
        }
        Ok(())
    }

    /// Starts the polling -> websocket upgrade (queues `2probe`).
    pub fn begin_upgrade(&mut self) -> anyhow::Result<()> {
        Ok(self.session.begin_upgrade()?)
    }

    /// When [`Wire::check_timeout`] must run (the server's heartbeat deadline).
    pub fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Lets the session notice a silent server.
    pub fn check_timeout(&mut self) {
        self.session.handle_timeout(Instant::now());
    }

    /// The next frame to write (pongs, `2probe`, `5`).
    pub fn poll_transmit(&mut self) -> Option<String> {
        let packet = self.session.poll_transmit()?;
        Some(String::from_utf8(packet.to_text()).unwrap_or_default())
    }

    /// The next decoded packet.
    pub fn poll(&mut self) -> Option<anyhow::Result<Incoming>> {
        let event = self.session.poll_event()?;
        Some(match event {
            ClientEvent::Open(open) if open.upgrades.is_empty() => Ok(Incoming::Open),
            ClientEvent::Open(open) => Ok(Incoming::OpenWithSid(open.sid)),
            ClientEvent::Upgraded => Ok(Incoming::Upgraded),
            ClientEvent::Closed(_) => Ok(Incoming::Close),
            ClientEvent::Binary(_) => Ok(Incoming::Other),
            ClientEvent::Message(text) => match self.delivered(&text) {
                Some(delivered) => Ok(delivered),
                None => client::decode_server_packet(&text, MAX_JSON_DEPTH)
                    .map(|(packet, _attachments)| self.socket(packet))
                    .map_err(Into::into),
            },
        })
    }

    /// A `message:new` on our namespace through the protocol crate's raw event path (the
    /// payload deserialized straight into the two fields we read); `None` for anything else,
    /// which takes the generic decode.
    fn delivered(&self, text: &bytes::Bytes) -> Option<Incoming> {
        if !text.starts_with(&self.delivered_prefix) {
            return None;
        }
        let raw = RawEvent::decode(text.clone(), MAX_JSON_DEPTH).ok()??;
        if raw.name() != Some("message:new") || raw.nsp() != self.nsp {
            return None;
        }
        let m: NewMessage = raw.arg(0).ok()?;
        Some(Incoming::Delivered {
            id: m.id,
            content: m.content,
        })
    }

    fn socket(&self, packet: Packet) -> Incoming {
        if packet.nsp != self.nsp {
            return Incoming::Other;
        }
        match packet.kind {
            PacketType::ConnectError => {
                let message = packet
                    .data
                    .as_ref()
                    .and_then(|d| d.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                Incoming::ConnectError(message)
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(name) = packet.event_name().map(str::to_owned) else {
                    return Incoming::Other;
                };
                let args = match packet.data {
                    Some(Value::Array(mut items)) if items.len() > 1 => items.swap_remove(1),
                    _ => Value::null(),
                };
                Incoming::Event { name, args }
            }
            _ => Incoming::Other,
        }
    }

    /// The namespace CONNECT frame with `auth.token`.
    pub fn connect(&self, token: &str) -> String {
        let auth = simd_json::json!({ "token": token });
        text(client::connect(&self.nsp, Some(auth)))
    }
}

/// An event frame `[name, payload]` on namespace `nsp`.
pub fn event(nsp: &str, name: &str, payload: Value) -> String {
    text(client::event(nsp, name, vec![payload], None))
}

/// Frames built from JSON text are UTF-8.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// A string field of an object.
pub fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_owned)
}

/// An integer field of an object.
pub fn i64_field(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(|x| x.as_i64())
}

/// A non-negative integer field of an object.
pub fn u64_field(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(|x| x.as_u64())
}

/// `message.id` of a `message:sent` payload.
pub fn message_id(v: &Value) -> Option<i64> {
    v.get("message")
        .and_then(|m| m.get("id"))
        .and_then(|x| x.as_i64())
}

/// Microseconds since the Unix epoch (the send timestamp in message content).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OPEN: &str = r#"0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

    fn incoming(frames: &[&str]) -> Vec<Incoming> {
        let mut wire = Wire::new("/chat");
        let mut out = Vec::new();
        for frame in [OPEN].iter().chain(frames) {
            wire.feed(frame.as_bytes()).unwrap();
            while let Some(ev) = wire.poll() {
                out.push(ev.unwrap());
            }
        }
        out
    }

    #[test]
    fn message_new_takes_the_raw_path_and_keeps_id_and_content() {
        let got = incoming(&[
            r#"42/chat,["message:new",{"id":42,"conversationId":7,"senderId":3,"content":"lg:1700000000000000:3:1 xx","isRead":false,"sender":{"username":"u\"3"}}]"#,
        ]);
        match got.as_slice() {
            [Incoming::Open, Incoming::Delivered { id, content }] => {
                assert_eq!(*id, Some(42));
                assert_eq!(content.as_deref(), Some("lg:1700000000000000:3:1 xx"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_events_and_namespaces_take_the_generic_path() {
        let got = incoming(&[
            r#"42/chat,["message:sent",{"tempId":5,"message":{"id":9}}]"#,
            r#"42/other,["message:new",{"id":1,"content":"x"}]"#,
            r#"42/chat,["message:new","not an object"]"#,
        ]);
        assert!(matches!(&got[1], Incoming::Event { name, .. } if name == "message:sent"));
        assert!(matches!(&got[2], Incoming::Other));
        // A payload that does not fit still reaches the user (as a generic event), not an error.
        assert!(matches!(&got[3], Incoming::Event { name, .. } if name == "message:new"));
    }
}
