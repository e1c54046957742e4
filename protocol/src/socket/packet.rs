//! A Socket.IO v5 packet and its text encoding.
//!
//! Wire form: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON data>]`, e.g.
//! `2["hello",1]`, `2/admin,["bye"]`, `21["question"]` (ack id 1), `3/admin,13["answer"]`,
//! `51-["files",{"_placeholder":true,"num":0}]` followed by one binary frame. The namespace is
//! written only when it is not `/`; the attachment count only for BINARY_EVENT/BINARY_ACK.
//!
//! Servers broadcasting one event to many sockets should use [`encode_event_prefix`] and serialize
//! the payload themselves straight after it, then share the buffer as `Bytes`.

use bytes::Bytes;
use simd_json::StaticNode;

use crate::error::SocketError;
use crate::json::{self, Value};
pub use crate::socket::kind::PacketType;

impl PacketType {
    /// The type for a wire digit.
    pub fn from_digit(digit: u8) -> Result<PacketType, SocketError> {
        Ok(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            other => return Err(SocketError::UnknownPacketType(other)),
        })
    }
}

/// The namespace every connection has.
pub const DEFAULT_NSP: &str = "/";

/// A Socket.IO packet. For binary packets `data` keeps the `{"_placeholder":true,"num":N}`
/// objects and `attachments[N]` holds the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Packet type.
    pub kind: PacketType,
    /// Namespace, `/` by default.
    pub nsp: String,
    /// Ack id: the sender wants an ACK with this id.
    pub id: Option<u64>,
    /// JSON payload.
    pub data: Option<Value>,
    /// Binary attachments of BINARY_EVENT / BINARY_ACK, in placeholder order.
    pub attachments: Vec<Bytes>,
}

impl Packet {
    fn new(kind: PacketType, nsp: &str, data: Option<Value>) -> Packet {
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id: None,
            data,
            attachments: Vec::new(),
        }
    }

    /// CONNECT from a client, with an optional auth object (e.g. `{"token":"..."}`).
    pub fn connect(nsp: &str, auth: Option<Value>) -> Packet {
        Packet::new(PacketType::Connect, nsp, auth)
    }

    /// CONNECT from the server accepting a client: `0{"sid":"..."}`.
    pub fn connect_ok(nsp: &str, sid: &str) -> Packet {
        let mut obj = simd_json::owned::Object::default();
        obj.insert("sid".to_owned(), Value::String(sid.to_owned()));
        Packet::new(PacketType::Connect, nsp, Some(Value::Object(Box::new(obj))))
    }

    /// CONNECT_ERROR: `4{"message":"..."}`.
    pub fn connect_error(nsp: &str, message: &str) -> Packet {
        let mut obj = simd_json::owned::Object::default();
        obj.insert("message".to_owned(), Value::String(message.to_owned()));
        Packet::new(
            PacketType::ConnectError,
            nsp,
            Some(Value::Object(Box::new(obj))),
        )
    }

    /// DISCONNECT.
    pub fn disconnect(nsp: &str) -> Packet {
        Packet::new(PacketType::Disconnect, nsp, None)
    }

    /// EVENT `["name", ...args]`.
    pub fn event(nsp: &str, name: &str, args: Vec<Value>) -> Packet {
        let mut items = Vec::with_capacity(args.len() + 1);
        items.push(Value::String(name.to_owned()));
        items.extend(args);
        Packet::new(PacketType::Event, nsp, Some(Value::Array(Box::new(items))))
    }

    /// ACK `[...args]` answering ack id `id`.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>) -> Packet {
        Packet::new(PacketType::Ack, nsp, Some(Value::Array(Box::new(args)))).with_id(id)
    }

    /// The same packet asking for (EVENT) or answering (ACK) ack id `id`.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Packet {
        self.id = Some(id);
        self
    }

    /// The event name: the first element of an EVENT's array, when it is a string.
    pub fn event_name(&self) -> Option<&str> {
        match (self.kind, &self.data) {
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(items))) => {
                match items.first() {
                    Some(Value::String(name)) => Some(name),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// An EVENT's arguments after the name, or an ACK's arguments.
    pub fn args(&self) -> &[Value] {
        match (self.kind, &self.data) {
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(items))) => {
                items.get(1..).unwrap_or_default()
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(items))) => items,
            _ => &[],
        }
    }

    /// The text part as a new buffer (see [`encode`]).
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode(self, &mut out);
        out
    }
}

/// Appends the text part of `packet` (without the Engine.IO `4`). Attachments are not written:
/// send each as its own binary message after it.
pub fn encode(packet: &Packet, out: &mut Vec<u8>) {
    out.push(packet.kind.digit());
    if packet.kind.is_binary() {
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(packet.attachments.len())
                .as_bytes(),
        );
        out.push(b'-');
    }
    if packet.nsp != DEFAULT_NSP && !packet.nsp.is_empty() {
        out.extend_from_slice(packet.nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = packet.id {
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    }
    if let Some(data) = &packet.data {
        json::write(data, out);
    }
}

fn write_nsp(nsp: &str, out: &mut Vec<u8>) {
    if nsp != DEFAULT_NSP && !nsp.is_empty() {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
}

/// Fast path for servers: appends `42/chat,["name",` (Engine.IO message + Socket.IO EVENT prefix).
/// Serialize the arguments (comma separated) after it, then call [`encode_event_suffix`]; the
/// buffer is then a complete WebSocket text frame / polling item to share as `Bytes`.
pub fn encode_event_prefix(nsp: &str, event: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"42");
    write_nsp(nsp, out);
    out.push(b'[');
    json::write_str(event, out);
    out.push(b',');
}

/// Fast path for acks: appends `43/chat,7[` ; serialize the arguments after it, then
/// [`encode_event_suffix`].
pub fn encode_ack_prefix(nsp: &str, id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"43");
    write_nsp(nsp, out);
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.push(b'[');
}

/// Closes the array opened by [`encode_event_prefix`] / [`encode_ack_prefix`]. Also drops a
/// trailing `,` so an event with no arguments stays valid.
pub fn encode_event_suffix(out: &mut Vec<u8>) {
    if out.last() == Some(&b',') {
        out.pop();
    }
    out.push(b']');
}

/// Whether `value` is a JSON number (the other accepted kind of event "name").
pub(crate) fn is_number(value: &Value) -> bool {
    matches!(
        value,
        Value::Static(StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_))
    )
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
