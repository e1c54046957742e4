//! Encoders for the Socket.IO packets the server writes, straight into one buffer per frame:
//! `4` (Engine.IO message) + Socket.IO type + namespace + id + JSON. A frame is built once and
//! shared (`Utf8Bytes` is a reference-counted `Bytes`) by every recipient.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::engine::outbox::Frame;

/// Appends `/nsp,` (nothing for the main namespace).
fn nsp_prefix(nsp: &str, out: &mut Vec<u8>) {
    if nsp != "/" && !nsp.is_empty() {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
}

/// A text frame from bytes the caller built as valid UTF-8 (JSON and ASCII prefixes).
pub fn text_frame(out: Vec<u8>) -> Frame {
    match Utf8Bytes::try_from(Bytes::from(out)) {
        Ok(t) => Frame::Text(t),
        // Unreachable with serde/simd-json output; degrade to a noop rather than panic.
        Err(_) => Frame::text_static("6"),
    }
}

/// Appends a JSON string literal.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `42/nsp,["event",<payload>]` with the payload already JSON.
pub fn event(nsp: &str, event: &str, payload: &[u8]) -> Frame {
    let mut out = Vec::with_capacity(8 + nsp.len() + event.len() + payload.len());
    out.extend_from_slice(b"42");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(b"[");
    write_json_str(event, &mut out);
    out.push(b',');
    out.extend_from_slice(payload);
    out.push(b']');
    text_frame(out)
}

/// `43/nsp,<id>[<payload>]` with the payload already JSON.
pub fn ack(nsp: &str, id: u64, payload: &[u8]) -> Frame {
    let mut out = Vec::with_capacity(28 + nsp.len() + payload.len());
    out.extend_from_slice(b"43");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.push(b'[');
    out.extend_from_slice(payload);
    out.push(b']');
    text_frame(out)
}

/// `40/nsp,{"sid":"<id>"}`: the namespace CONNECT answer.
pub fn connect(nsp: &str, socket_id: &str) -> Frame {
    let mut out = Vec::with_capacity(16 + nsp.len() + socket_id.len());
    out.extend_from_slice(b"40");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(b"{\"sid\":");
    write_json_str(socket_id, &mut out);
    out.push(b'}');
    text_frame(out)
}

/// `44/nsp,{"message":"..."}`: a refused namespace CONNECT.
pub fn connect_error(nsp: &str, message: &str) -> Frame {
    let mut out = Vec::with_capacity(20 + nsp.len() + message.len());
    out.extend_from_slice(b"44");
    nsp_prefix(nsp, &mut out);
    out.extend_from_slice(b"{\"message\":");
    write_json_str(message, &mut out);
    out.push(b'}');
    text_frame(out)
}

/// `41/nsp,`: the server disconnects a socket from a namespace.
pub fn disconnect(nsp: &str) -> Frame {
    let mut out = Vec::with_capacity(4 + nsp.len());
    out.extend_from_slice(b"41");
    nsp_prefix(nsp, &mut out);
    text_frame(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: Frame) -> String {
        match f {
            Frame::Text(t) => t.as_str().to_owned(),
            Frame::Binary(_) => String::new(),
        }
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
    }
}
