//! Encoders for the Socket.IO packets a server writes, each straight into one buffer that is a
//! complete Engine.IO text packet (`4` + Socket.IO type + namespace + ack id + JSON): a WebSocket
//! text frame or one item of a polling payload. A frame is encoded once and shared by every
//! recipient ([`TextFrame`] is a reference-counted [`Bytes`]).
//!
//! Payloads are passed already serialized as JSON (the caller's own serializer, or the raw bytes
//! of a stored message), so nothing here allocates a value tree.

use bytes::Bytes;

use super::packet::{Packet, encode, encode_ack_prefix, encode_event_prefix, encode_event_suffix};
use crate::json;

/// One encoded Engine.IO text packet, cheap to clone. Every encoder of this module writes UTF-8
/// when its JSON arguments are UTF-8 (serializers always produce UTF-8).
///
/// An EVENT frame may carry a [`Position`]: where it stands in a replayable stream (connection
/// state recovery). The position is not on the wire; a server appends each recipient's offset
/// with [`with_offset`] when it delivers the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFrame(Bytes, Option<Position>);

/// The place of an event in a replayable stream (a conversation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// The event numbered `seq` of an ordered stream (a message of a conversation, by id): a
    /// client that got number `seq` has every earlier one.
    Event {
        /// The stream.
        stream: i64,
        /// Increasing within the stream, delivered in that order.
        seq: i64,
    },
    /// The latest value `seq` of `key` within `stream` (a reader's read pointer in a
    /// conversation): a higher value supersedes the lower ones, which may arrive in any order.
    Latest {
        /// The stream.
        stream: i64,
        /// Whose value it is.
        key: i64,
        /// The value; never decreases for one key.
        seq: i64,
    },
}

impl TextFrame {
    /// A frame from a static packet (`"2"`, `"6"`, ...).
    pub const fn from_static(packet: &'static str) -> TextFrame {
        TextFrame(Bytes::from_static(packet.as_bytes()), None)
    }

    fn of(bytes: Vec<u8>) -> TextFrame {
        TextFrame(Bytes::from(bytes), None)
    }

    /// This frame marked as the event at `position` of a replayable stream.
    pub fn at(self, position: Position) -> TextFrame {
        TextFrame(self.0, Some(position))
    }

    /// This frame without a position (delivered as it is, never filtered as a repeat).
    pub fn unpositioned(self) -> TextFrame {
        TextFrame(self.0, None)
    }

    /// The frame's position in a replayable stream, if it has one.
    pub fn position(&self) -> Option<Position> {
        self.1
    }

    /// The encoded packet.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded packet as shared bytes (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty frame (never produced by the encoders).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn nsp_prefix(nsp: &str, out: &mut Vec<u8>) {
    if nsp != "/" && !nsp.is_empty() {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
}

/// `42/nsp,["event",<payload>]`, the payload already JSON.
pub fn event(nsp: &str, event: &str, payload: &[u8]) -> TextFrame {
    let mut out = Vec::with_capacity(8 + nsp.len() + event.len() + payload.len());
    encode_event_prefix(nsp, event, &mut out);
    out.extend_from_slice(payload);
    encode_event_suffix(&mut out);
    TextFrame::of(out)
}

/// `42/nsp,<id>["event",<payload>]`: an event the client must acknowledge with ack `id`.
pub fn event_with_ack(nsp: &str, id: u64, event: &str, payload: &[u8]) -> TextFrame {
    let mut out = Vec::with_capacity(28 + nsp.len() + event.len() + payload.len());
    out.extend_from_slice(b"42");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.push(b'[');
    json::write_str(event, &mut out);
    out.push(b',');
    out.extend_from_slice(payload);
    encode_event_suffix(&mut out);
    TextFrame::of(out)
}

/// Any packet's text part as an Engine.IO message (`4` + [`encode`]); its attachments go
/// separately, as binary messages.
pub fn packet(packet: &Packet) -> TextFrame {
    let mut out = Vec::with_capacity(64);
    out.push(b'4');
    encode(packet, &mut out);
    TextFrame::of(out)
}

/// `43/nsp,<id>[<payload>]`, the payload already JSON.
pub fn ack(nsp: &str, id: u64, payload: &[u8]) -> TextFrame {
    let mut out = Vec::with_capacity(28 + nsp.len() + payload.len());
    encode_ack_prefix(nsp, id, &mut out);
    out.extend_from_slice(payload);
    encode_event_suffix(&mut out);
    TextFrame::of(out)
}

/// `40/nsp,{"sid":"<id>"}`: the answer to a namespace CONNECT.
pub fn connect(nsp: &str, socket_id: &str) -> TextFrame {
    let mut out = Vec::with_capacity(16 + nsp.len() + socket_id.len());
    out.extend_from_slice(b"40");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(b"{\"sid\":");
    json::write_str(socket_id, &mut out);
    out.push(b'}');
    TextFrame::of(out)
}

/// `40/nsp,{"sid":"<id>","pid":"<pid>"}`: the answer to a namespace CONNECT when connection
/// state recovery is on (`pid` is the private id a client sends back to recover the session).
pub fn connect_with_pid(nsp: &str, socket_id: &str, pid: &str) -> TextFrame {
    let mut out = Vec::with_capacity(26 + nsp.len() + socket_id.len() + pid.len());
    out.extend_from_slice(b"40");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(b"{\"sid\":");
    json::write_str(socket_id, &mut out);
    out.extend_from_slice(b",\"pid\":");
    json::write_str(pid, &mut out);
    out.push(b'}');
    TextFrame::of(out)
}

/// The EVENT `frame` with one more argument, the string `offset`, at the end of its data array
/// (`42["e",{..}]` -> `42["e",{..},"<offset>"]`): how a Socket.IO server tells the client where
/// it stands in the stream (the client sends back the last offset it saw to recover). A frame
/// that is not an EVENT ending in `]` is returned as it is.
pub fn with_offset(frame: &TextFrame, offset: &str) -> TextFrame {
    if !takes_offset(frame) {
        return frame.clone();
    }
    with_tail(frame, &offset_tail(offset))
}

/// A frame that [`takes_offset`] with its closing `]` replaced by `tail` (an [`offset_tail`]).
pub fn with_tail(frame: &TextFrame, tail: &[u8]) -> TextFrame {
    let bytes = frame.as_bytes();
    let head = bytes
        .get(..bytes.len().saturating_sub(1))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(head.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
    TextFrame::of(out)
}

/// True when `frame` is an EVENT ending in `]`, which [`with_offset`] extends. A server that
/// shares one frame between recipients can write, per recipient, the frame without its last
/// byte and then that recipient's [`offset_tail`]: the same bytes as [`with_offset`], with no
/// copy of the frame.
pub fn takes_offset(frame: &TextFrame) -> bool {
    matches!(frame.as_bytes(), [b'4', b'2', .., b']'])
}

/// `,"<offset>"]`: what replaces the closing `]` of a frame that [`takes_offset`].
pub fn offset_tail(offset: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(offset.len() + 4);
    out.push(b',');
    json::write_str(offset, &mut out);
    out.push(b']');
    out
}

/// [`offset_tail`] of an offset that `write` spells straight into the tail (no string of its
/// own), `len` bytes at most (a capacity hint). Bytes that a JSON string cannot hold as they are
/// (a quote, a backslash, a control character) make it fall back to [`offset_tail`], escaped.
pub fn offset_tail_with(len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4);
    out.extend_from_slice(b",\"");
    write(&mut out);
    let offset = out.get(2..).unwrap_or_default();
    if offset.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        return offset_tail(&String::from_utf8_lossy(offset));
    }
    out.extend_from_slice(b"\"]");
    out
}

/// `44/nsp,{"message":"..."}`: a refused namespace CONNECT.
pub fn connect_error(nsp: &str, message: &str) -> TextFrame {
    let mut out = Vec::with_capacity(20 + nsp.len() + message.len());
    out.extend_from_slice(b"44");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(b"{\"message\":");
    json::write_str(message, &mut out);
    out.push(b'}');
    TextFrame::of(out)
}

/// `41/nsp,`: the server disconnects a socket from a namespace.
pub fn disconnect(nsp: &str) -> TextFrame {
    let mut out = Vec::with_capacity(4 + nsp.len());
    out.extend_from_slice(b"41");
    nsp_prefix(nsp, &mut out);
    TextFrame::of(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: TextFrame) -> String {
        String::from_utf8(f.as_bytes().to_vec()).unwrap_or_default()
    }

    #[test]
    fn wire_strings() {
        assert_eq!(
            text(event("/chat", "a:b", b"{\"x\":1}")),
            r#"42/chat,["a:b",{"x":1}]"#
        );
        assert_eq!(text(event("/", "e", b"1")), r#"42["e",1]"#);
        assert_eq!(text(ack("/chat", 7, b"{}")), r#"43/chat,7[{}]"#);
        assert_eq!(text(ack("/", 0, b"1")), r#"430[1]"#);
        assert_eq!(text(connect("/", "abc")), r#"40{"sid":"abc"}"#);
        assert_eq!(
            text(connect_error("/x", "Invalid namespace")),
            r#"44/x,{"message":"Invalid namespace"}"#
        );
        assert_eq!(text(disconnect("/chat")), "41/chat,");
        assert_eq!(
            text(event_with_ack("/chat", 3, "q", b"{}")),
            r#"42/chat,3["q",{}]"#
        );
        assert_eq!(text(event_with_ack("/", 0, "q", b"1")), r#"420["q",1]"#);
        assert_eq!(text(packet(&Packet::disconnect("/x"))), "41/x,");
        assert_eq!(text(disconnect("/")), "41");
        assert_eq!(
            text(connect_with_pid("/chat", "a", "p\"")),
            r#"40/chat,{"sid":"a","pid":"p\""}"#
        );
    }

    #[test]
    fn a_tail_spelled_in_place_is_the_tail_of_the_offset() {
        for offset in ["o", "o.2-l.14-lfls", "x", "o.1-4-a"] {
            let spelled = offset_tail_with(1, |out| out.extend_from_slice(offset.as_bytes()));
            assert_eq!(spelled, offset_tail(offset), "{offset}");
        }
        // Bytes a JSON string cannot carry as they are come out escaped.
        for odd in ["a\"b", "a\\b", "a\nb"] {
            let spelled = offset_tail_with(0, |out| out.extend_from_slice(odd.as_bytes()));
            assert_eq!(spelled, offset_tail(odd), "{odd:?}");
        }
    }

    #[test]
    fn offsets_go_last_and_positions_stay_off_the_wire() {
        let at = Position::Event { stream: 3, seq: 9 };
        let f = event("/chat", "m", b"{\"x\":[1]}").at(at);
        assert_eq!(f.position(), Some(at));
        assert_eq!(
            text(with_offset(&f, "o.3-9")),
            r#"42/chat,["m",{"x":[1]},"o.3-9"]"#
        );
        assert_eq!(text(with_offset(&ack("/", 1, b"1"), "o")), "431[1]");
        assert_eq!(f.unpositioned().position(), None);
    }
}
