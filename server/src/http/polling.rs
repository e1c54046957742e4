//! HTTP long-polling: the handshake GET, GETs that wait for queued frames, POSTs that carry
//! packets. Runs on the shard that owns the session (other shards forward here). Bodies are read
//! with a hard limit (`maxPayload`) and a deadline (`BODY_READ_TIMEOUT_MS`); a GET answers at
//! most `maxPayload` bytes.

use std::rc::Rc;

use base64::Engine as _;
use bytes::Bytes;
use chatwire_protocol::engine::handshake::{HandshakeError, Transport};
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::engine::payload;
use chatwire_protocol::engine::sid::Sid;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::{Response, StatusCode};

use super::response::plain;
use crate::engine::conn::{Conn, Handshake, engine_frame};
use crate::engine::outbox::Frame;
use crate::shard::Shard;
use crate::shard::msg::PollForward;

/// Record separator between packets of a polling payload.
const SEPARATOR: u8 = 0x1e;

/// A new polling session: answers the open packet.
pub fn handshake(
    shard: &Rc<Shard>,
    handshake: Handshake,
    engine_only: bool,
) -> Response<Full<Bytes>> {
    let conn = crate::session::open(shard, Transport::Polling, handshake, engine_only);
    let open = engine_frame(&conn.state.borrow().session.open_packet());
    crate::session::spawn_timer(shard.clone(), conn.clone());
    match open {
        Frame::Text(t) => plain(StatusCode::OK, Bytes::from(t)),
        Frame::Binary(_) | Frame::Tailed(..) => plain(StatusCode::INTERNAL_SERVER_ERROR, ""),
    }
}

/// Reads a POST body, refusing more than `max` bytes while reading (413) and a body not
/// complete within `timeout` (408: a client trickling its body holds no task for long).
pub async fn read_body(
    body: Incoming,
    max: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, StatusCode> {
    tokio::time::timeout(timeout, read_body_unbounded(body, max))
        .await
        .unwrap_or(Err(StatusCode::REQUEST_TIMEOUT))
}

/// [`read_body`] without the time bound.
async fn read_body_unbounded(mut body: Incoming, max: usize) -> Result<Bytes, StatusCode> {
    if body.size_hint().lower() > max as u64 {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| StatusCode::BAD_REQUEST)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// Closes a local session (oversize POST).
pub fn close_session(shard: &Rc<Shard>, sid: Sid) {
    let conn = shard.conns.borrow().get(&sid).cloned();
    if let Some(conn) = conn {
        crate::session::terminate(&conn, shard, "payload too large");
    }
}

/// A polling request forwarded from another shard.
pub fn handle_forwarded(shard: Rc<Shard>, p: PollForward) {
    tokio::task::spawn_local(async move {
        let resp = serve(shard, p.sid, p.is_post, p.body).await;
        let _ = p.reply.send(resp);
    });
}

/// Error body for a handshake error.
fn error(e: HandshakeError) -> (u16, Bytes) {
    (e.http_status(), Bytes::from(e.to_json()))
}

/// Serves a GET or POST for a session owned by this shard: (status, body).
pub async fn serve(shard: Rc<Shard>, sid: Sid, is_post: bool, body: Bytes) -> (u16, Bytes) {
    let conn = shard.conns.borrow().get(&sid).cloned();
    let Some(conn) = conn else {
        return error(HandshakeError::SessionIdUnknown);
    };
    if conn.state.borrow().session.transport() != Transport::Polling {
        return error(HandshakeError::BadRequest);
    }
    if is_post {
        post(&shard, &conn, body).await
    } else {
        get(&shard, &conn).await
    }
}

/// A POST: decode the payload and process each packet in order; answer `ok` once processed.
async fn post(shard: &Rc<Shard>, conn: &Rc<Conn>, body: Bytes) -> (u16, Bytes) {
    let begun = conn.state.borrow_mut().session.begin_post();
    if begun.is_err() {
        conn.flush_transmits();
        crate::session::terminate(conn, shard, "duplicate post");
        return error(HandshakeError::BadRequest);
    }
    for packet in payload::decode_bytes(body) {
        let ok = match packet {
            Ok(EnginePacket::Close) => {
                // The client closes the session: a clean end, answered `ok`.
                crate::session::on_packet(conn, shard, EnginePacket::Close).await;
                return (200, Bytes::from_static(b"ok"));
            }
            Ok(p) => crate::session::on_packet(conn, shard, p).await,
            Err(_) => {
                crate::session::terminate(conn, shard, "parse error");
                false
            }
        };
        if !ok {
            conn.state.borrow_mut().session.end_post();
            return error(HandshakeError::BadRequest);
        }
    }
    conn.state.borrow_mut().session.end_post();
    (200, Bytes::from_static(b"ok"))
}

/// A GET: wait for frames (pings guarantee one within `pingInterval`), answer them.
async fn get(shard: &Rc<Shard>, conn: &Rc<Conn>) -> (u16, Bytes) {
    let begun = conn.state.borrow_mut().session.begin_poll();
    if begun.is_err() {
        // Duplicate poll: the session is closed; the first poll gets the close packet.
        conn.flush_transmits();
        crate::session::terminate(conn, shard, "duplicate poll");
        return error(HandshakeError::BadRequest);
    }
    conn.outbox.ready().await;
    let max = shard.shared.protocol.engine.max_payload;
    let mut out = Vec::with_capacity(64);
    while let Some(frame) = conn.outbox.pop() {
        let item_len = match &frame {
            Frame::Text(_) | Frame::Tailed(..) => frame.len(),
            Frame::Binary(b) => 1 + b.len().div_ceil(3) * 4,
        };
        if !out.is_empty() && out.len() + 1 + item_len > max {
            conn.outbox.unpop(frame);
            break;
        }
        if !out.is_empty() {
            out.push(SEPARATOR);
        }
        match frame {
            Frame::Text(_) | Frame::Tailed(..) => {
                if let Some((head, tail)) = frame.text_parts() {
                    out.extend_from_slice(head);
                    out.extend_from_slice(tail);
                }
            }
            Frame::Binary(b) => {
                out.push(b'b');
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(&b)
                        .as_bytes(),
                );
            }
        }
    }
    conn.state.borrow_mut().session.end_poll();
    if out.is_empty() {
        // Closed with nothing queued (e.g. the client sent close): end the poll cleanly.
        out.push(b'6');
    }
    (200, Bytes::from(out))
}
