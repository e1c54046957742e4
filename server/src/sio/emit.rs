//! Frames the server writes: the protocol crate encodes every Socket.IO packet
//! ([`chatwire_protocol::socket::emit`]); this turns an encoded [`TextFrame`] into the outbox's
//! [`Frame`] (a tungstenite `Utf8Bytes`, shared by reference count between recipients).

use chatwire_protocol::socket::{TextFrame, emit};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::engine::outbox::Frame;

/// The outbox frame of an encoded packet (UTF-8 checked once per frame, not per recipient).
pub fn frame(f: TextFrame) -> Frame {
    match Utf8Bytes::try_from(f.into_bytes()) {
        Ok(t) => Frame::Text(t),
        // Unreachable with serializer output; degrade to a noop rather than panic.
        Err(_) => Frame::text_static("6"),
    }
}

/// `42/nsp,["event",<payload>]` with the payload already JSON.
pub fn event(nsp: &str, event: &str, payload: &[u8]) -> Frame {
    frame(emit::event(nsp, event, payload))
}

/// `43/nsp,<id>[<payload>]` with the payload already JSON.
pub fn ack(nsp: &str, id: u64, payload: &[u8]) -> Frame {
    frame(emit::ack(nsp, id, payload))
}

/// `40/nsp,{"sid":"<id>"}`: the namespace CONNECT answer.
pub fn connect(nsp: &str, socket_id: &str) -> Frame {
    frame(emit::connect(nsp, socket_id))
}

/// `40/nsp,{"sid":"<id>","pid":"<pid>"}`: the CONNECT answer of a recoverable session.
pub fn connect_with_pid(nsp: &str, socket_id: &str, pid: &str) -> Frame {
    frame(emit::connect_with_pid(nsp, socket_id, pid))
}

/// `44/nsp,{"message":"..."}`: a refused namespace CONNECT.
pub fn connect_error(nsp: &str, message: &str) -> Frame {
    frame(emit::connect_error(nsp, message))
}

/// `41/nsp,`: the server disconnects a socket from a namespace.
pub fn disconnect(nsp: &str) -> Frame {
    frame(emit::disconnect(nsp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_the_protocol_encoding() {
        match event("/chat", "a:b", b"{\"x\":1}") {
            Frame::Text(t) => assert_eq!(t.as_str(), r#"42/chat,["a:b",{"x":1}]"#),
            other => panic!("a whole text frame: {other:?}"),
        }
    }
}
