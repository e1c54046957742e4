//! The WebSocket transport: the HTTP upgrade (hyper), then one task per connection that reads
//! frames into the session and drains the outbox (all queued frames, then one flush). A WebSocket
//! that joins an existing polling session runs the probe (`2probe`/`3probe`/`5`) first; when the
//! session lives on another shard, the raw TCP stream moves to that shard (fd hand-off). A write
//! that cannot finish within the ping timeout (a client that stopped reading) ends the
//! connection, freeing its task and buffers. A WebSocket naming a session that has already
//! upgraded (or is upgrading) is accepted and closed at once, as the reference server does;
//! an unknown sid is refused with 400. An upgrade for a session of another node of the fleet is
//! proxied to that node (`forward::websocket`).

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use chatwire_protocol::engine::handshake::{HandshakeError, Transport};
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::engine::session::SessionEvent;
use chatwire_protocol::engine::sid::Sid;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes, handshake::derive_accept_key};

use super::response::handshake_error;
use crate::engine::conn::{Conn, Handshake, engine_frame};
use crate::engine::outbox::Frame;
use crate::engine::wire::Wire;
use crate::fleet::Owner;
use crate::shard::Shard;
use crate::shard::msg::{ShardMsg, UpgradeAnswer, UpgradeForward};

/// The WebSocket stream type of every connection: tungstenite over a [`Wire`], which the shard
/// also writes deliveries into directly.
type Ws = WebSocketStream<Wire>;

/// The shared stream of a new WebSocket, bounded like the connection's outbound queue.
fn wire(shard: &Shard, stream: TcpStream) -> Wire {
    Wire::new(
        stream,
        shard.shared.outbound_frames,
        shard.shared.outbound_bytes,
    )
}

/// tungstenite limits: small read buffer (idle connections stay small), bounded messages.
fn ws_config(shard: &Shard) -> WebSocketConfig {
    let max = shard.shared.protocol.engine.max_payload;
    let mut cfg = WebSocketConfig::default();
    cfg.read_buffer_size = shard.shared.ws_read_buffer;
    cfg.write_buffer_size = 8 * 1024;
    cfg.max_write_buffer_size = 8 * 1024 + max + 64;
    cfg.max_message_size = Some(max + 16);
    cfg.max_frame_size = Some(max + 16);
    cfg
}

/// Answers the upgrade request (101) and starts the connection task once hyper hands the stream.
pub async fn upgrade(
    shard: Rc<Shard>,
    mut req: Request<Incoming>,
    sid: Option<Sid>,
    handshake: Option<Handshake>,
    engine_only: bool,
) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return handshake_error(HandshakeError::BadRequest);
    };
    let accept = derive_accept_key(key.as_bytes());
    if let Some(sid) = sid {
        match shard.shared.fleet.owner(&sid) {
            Owner::Here => {}
            Owner::Node(_, addr) if !super::forward::is_forwarded(req.headers()) => {
                let addr = addr.to_owned();
                return super::forward::websocket(&shard, req, &addr).await;
            }
            Owner::Node(..) | Owner::Unknown => {
                return handshake_error(HandshakeError::SessionIdUnknown);
            }
        }
        let owner = usize::from(sid.shard());
        let answer = if owner == usize::from(shard.index) {
            begin_upgrade(&shard, sid)
        } else if owner < shard.shard_count() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            shard.send_to(owner, ShardMsg::UpgradeCheck { sid, reply: tx });
            rx.await.unwrap_or(UpgradeAnswer::Unknown)
        } else {
            UpgradeAnswer::Unknown
        };
        match answer {
            UpgradeAnswer::Allowed => {}
            UpgradeAnswer::Unknown => return handshake_error(HandshakeError::SessionIdUnknown),
            UpgradeAnswer::NotUpgradable => return accept_and_close(&shard, &mut req, &accept),
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shard = shard.clone();
    let fut = async move {
        let shard = task_shard;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let Some((stream, read_buf)) = into_tcp(upgraded) else {
            return;
        };
        match (sid, handshake) {
            (None, Some(handshake)) => {
                let conn =
                    crate::session::open(&shard, Transport::Websocket, handshake, engine_only);
                let open = engine_frame(&conn.state.borrow().session.open_packet());
                conn.outbox.unpop(open);
                // No separate timer task: the active loop drives the heartbeat itself.
                let wire = wire(&shard, stream);
                spawn_active(shard, conn, Start::Fresh(wire, read_buf.to_vec()));
            }
            // No sid and no handshake cannot happen (the caller gives one or the other).
            (None, None) => {}
            (Some(sid), _) if usize::from(sid.shard()) == usize::from(shard.index) => {
                run_probe(shard, sid, stream, read_buf).await;
            }
            (Some(sid), _) => match stream.into_std() {
                Ok(std_stream) => {
                    let owner = usize::from(sid.shard());
                    let msg = ShardMsg::Upgrade(Box::new(UpgradeForward {
                        sid,
                        stream: std_stream,
                        read_buf,
                    }));
                    shard.send_to(owner, msg);
                }
                Err(e) => tracing::debug!(error = %e, "could not detach the upgraded stream"),
            },
        }
    };
    tokio::task::spawn_local(fut);
    switching_protocols(&accept)
}

/// The TCP stream under an upgraded connection, and the bytes hyper read past the request.
fn into_tcp(upgraded: hyper::upgrade::Upgraded) -> Option<(TcpStream, Bytes)> {
    let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
        tracing::warn!("upgraded connection is not a TCP stream");
        return None;
    };
    // Copy the few bytes read past the request: `parts.read_buf` is a view into hyper's whole
    // read buffer, which must not live as long as the connection.
    let read_buf = Bytes::copy_from_slice(&parts.read_buf);
    Some((parts.io.into_inner(), read_buf))
}

/// The `101` answer to an upgrade.
fn switching_protocols(accept: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Accepts the WebSocket and closes it at once (a second transport for a session that
/// already upgraded); the session itself is not touched.
fn accept_and_close(
    shard: &Rc<Shard>,
    req: &mut Request<Incoming>,
    accept: &str,
) -> Response<Full<Bytes>> {
    let on_upgrade = hyper::upgrade::on(req);
    let config = ws_config(shard);
    tokio::task::spawn_local(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = TokioIo::new(upgraded);
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(None)).await;
    });
    switching_protocols(accept)
}

/// Largest message the conformance echo takes (`/echo`, `chatwire conformance` only): the
/// Autobahn test suite's biggest cases (9.1.6, 9.2.6) send 16 MiB.
pub const ECHO_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// `/echo` of `chatwire conformance`: a WebSocket that sends every text and binary message back
/// as it came, over the same transport as the chat (tungstenite over a [`Wire`]), so a
/// WebSocket test suite that expects an echo server (Autobahn's fuzzing client) can judge it.
pub fn echo(shard: &Rc<Shard>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return handshake_error(HandshakeError::BadRequest);
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut config = ws_config(shard);
    config.max_message_size = Some(ECHO_MAX_MESSAGE);
    config.max_frame_size = Some(ECHO_MAX_MESSAGE);
    config.max_write_buffer_size = ECHO_MAX_MESSAGE + 64 * 1024;
    let frames = shard.shared.outbound_frames;
    tokio::task::spawn_local(async move {
        let Some((stream, read_buf)) = on_upgrade.await.ok().and_then(into_tcp) else {
            return;
        };
        let wire = Wire::new(stream, frames, 2 * ECHO_MAX_MESSAGE);
        let mut ws = WebSocketStream::from_partially_read(
            wire,
            read_buf.to_vec(),
            Role::Server,
            Some(config),
        )
        .await;
        while let Some(msg) = ws.next().await {
            let reply = match msg {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => m,
                // Pings are answered and a Close is replied to by tungstenite itself.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(_)) => {
                    let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, ws.flush()).await;
                    return;
                }
                Err(_) => return,
            };
            if ws.send(reply).await.is_err() {
                return;
            }
        }
    });
    switching_protocols(&accept)
}

/// On the owner: may a WebSocket join this session to upgrade it?
pub fn begin_upgrade(shard: &Shard, sid: Sid) -> UpgradeAnswer {
    let conn = shard.conns.borrow().get(&sid).cloned();
    match conn {
        None => UpgradeAnswer::Unknown,
        Some(c) if c.closed.get() => UpgradeAnswer::Unknown,
        Some(c) => {
            let begun = c.state.borrow_mut().session.begin_upgrade(Instant::now());
            if begun.is_ok() {
                UpgradeAnswer::Allowed
            } else {
                UpgradeAnswer::NotUpgradable
            }
        }
    }
}

/// On the owner: adopt a stream moved from another shard.
pub fn adopt_forwarded(shard: Rc<Shard>, u: UpgradeForward) {
    tokio::task::spawn_local(async move {
        match TcpStream::from_std(u.stream) {
            Ok(stream) => run_probe(shard, u.sid, stream, u.read_buf).await,
            Err(e) => tracing::debug!(error = %e, "could not adopt a forwarded stream"),
        }
    });
}

/// The upgrade probe on a WebSocket joining a polling session, then the active loop.
async fn run_probe(shard: Rc<Shard>, sid: Sid, stream: TcpStream, read_buf: Bytes) {
    let conn = shard.conns.borrow().get(&sid).cloned();
    let Some(conn) = conn else { return };
    let mut ws = WebSocketStream::from_partially_read(
        wire(&shard, stream),
        read_buf.to_vec(),
        Role::Server,
        Some(ws_config(&shard)),
    )
    .await;
    let timeout = shard.shared.protocol.engine.upgrade_timeout;
    let upgraded = tokio::time::timeout(timeout, probe(&shard, &conn, &mut ws)).await;
    if upgraded != Ok(true) {
        conn.state.borrow_mut().session.upgrade_transport_closed();
        let _ = conn.state.borrow_mut().session.poll_event();
        let _ = ws.close(None).await;
        return;
    }
    conn.rearm.notify_one();
    spawn_active(shard, conn, Start::Probed(Box::new(ws)));
}

/// Runs the active loop in its own task.
fn spawn_active(shard: Rc<Shard>, conn: Rc<Conn>, start: Start) {
    tokio::task::spawn_local(run_active(shard, conn, start));
}

/// Reads probe packets until the upgrade completes (true) or fails (false).
async fn probe(shard: &Rc<Shard>, conn: &Rc<Conn>, ws: &mut Ws) -> bool {
    while let Some(msg) = ws.next().await {
        let packet = match msg {
            Ok(Message::Text(t)) => match EnginePacket::decode_text_bytes(Bytes::from(t)) {
                Ok(p) => p,
                Err(_) => return false,
            },
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            _ => return false,
        };
        if conn
            .state
            .borrow_mut()
            .session
            .handle_upgrade_packet(packet, Instant::now())
            .is_err()
        {
            return false;
        }
        if conn.flush_transmits()
            && ws
                .send(Message::Text(Utf8Bytes::from_static("3probe")))
                .await
                .is_err()
        {
            return false;
        }
        loop {
            let event = conn.state.borrow_mut().session.poll_event();
            match event {
                Some(SessionEvent::Upgraded) => {
                    tracing::trace!(sid = %conn.sid, shard = shard.index, "upgraded to websocket");
                    return true;
                }
                Some(SessionEvent::UpgradeFailed | SessionEvent::Closed(_)) => return false,
                Some(_) => {}
                None => break,
            }
        }
    }
    false
}

/// How the active loop gets its WebSocket.
enum Start {
    /// A new WebSocket over an upgraded stream (and the bytes read past the request): built
    /// inside the loop's future, which then holds it once (an async fn's argument is held
    /// twice: as passed, and as the local the body uses).
    Fresh(Wire, Vec<u8>),
    /// A WebSocket that ran the upgrade probe.
    Probed(Box<Ws>),
}

/// How long the reply to a client's Close frame may take to write.
const CLOSE_REPLY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// What woke the active loop.
enum Wake {
    /// The session's deadline (heartbeat, connect timeout).
    Timer,
    /// Frames were queued, a flush is due or the outbox closed.
    Outbox,
    /// The client sent something (or the stream ended).
    Read(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// The active loop: frames in -> session, outbox -> frames out (written straight into the
/// stream, one `writev`), in its own task, so the connection's long-lived task holds only the
/// WebSocket and the loop state (not the upgrade and probe futures).
///
/// This future lives as long as the connection: what it holds across its one everyday wait
/// (the `select!`) is what every idle WebSocket costs. So the WebSocket is held once, the
/// packet handler's sub-future is small, and the rare paths (a write the socket did not take,
/// the close) run boxed, only when they happen (`tests::the_active_loop_stays_small`).
async fn run_active(shard: Rc<Shard>, conn: Rc<Conn>, start: Start) {
    let mut ws = match start {
        Start::Fresh(wire, read_buf) => {
            WebSocketStream::from_partially_read(
                wire,
                read_buf,
                Role::Server,
                Some(ws_config(&shard)),
            )
            .await
        }
        Start::Probed(ws) => *ws,
    };
    shard.ws_tasks.set(shard.ws_tasks.get() + 1);
    // From here the shard may write deliveries straight into the stream.
    *conn.wire.borrow_mut() = Some(ws.get_ref().clone());
    let close = drive(&shard, &conn, &mut ws).await;
    if close && !conn.outbox.overflowed() {
        Box::pin(close_and_drain(&mut ws)).await;
    }
    *conn.wire.borrow_mut() = None;
    shard.ws_tasks.set(shard.ws_tasks.get().saturating_sub(1));
}

/// The body of [`run_active`]; true when the session ended and the WebSocket should be
/// closed (false: the transport is gone or failed).
async fn drive(shard: &Rc<Shard>, conn: &Rc<Conn>, ws: &mut Ws) -> bool {
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
    let mut armed = conn.deadline().map_or_else(far, Into::into);
    let timer = tokio::time::sleep_until(armed);
    tokio::pin!(timer);
    loop {
        let due = conn.deadline().map_or_else(far, Into::into);
        if due != armed {
            armed = due;
            timer.as_mut().reset(due);
        }
        let wake = tokio::select! {
            biased;
            () = &mut timer => Wake::Timer,
            () = conn.outbox.ready() => Wake::Outbox,
            msg = ws.next() => Wake::Read(msg),
        };
        match wake {
            Wake::Timer => {
                crate::session::on_timer(conn, shard);
                armed = far();
                timer.as_mut().reset(armed);
            }
            Wake::Outbox => {
                let written = write_queued(conn, ws.get_ref())
                    && (!ws.get_ref().has_pending()
                        || Box::pin(flush_or_stall(shard, conn, ws)).await);
                if !written {
                    crate::session::terminate(conn, shard, "transport error");
                    return false;
                }
                if conn.outbox.is_closed() {
                    return true;
                }
            }
            Wake::Read(msg) => {
                let packet = match msg {
                    Some(Ok(Message::Text(t))) => EnginePacket::decode_text_bytes(Bytes::from(t)),
                    Some(Ok(Message::Binary(b))) => Ok(EnginePacket::decode_binary(b)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) => {
                        // Answer the client's Close (RFC 6455 5.5.1): tungstenite queued the
                        // reply; write it, briefly, before the transport goes.
                        let reply = Box::pin(tokio::time::timeout(CLOSE_REPLY_WAIT, ws.flush()));
                        let _ = reply.await;
                        conn.state.borrow_mut().session.transport_closed();
                        crate::session::terminate(conn, shard, "transport close");
                        return false;
                    }
                    None => {
                        conn.state.borrow_mut().session.transport_closed();
                        crate::session::terminate(conn, shard, "transport close");
                        return false;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(sid = %conn.sid, error = %e, "websocket read error");
                        crate::session::terminate(conn, shard, "transport error");
                        return false;
                    }
                };
                match packet {
                    Ok(p) => {
                        if let Some(done) = crate::session::feed_packet(conn, shard, p) {
                            crate::session::on_events(conn, shard, done).await;
                        }
                    }
                    Err(_) => crate::session::terminate(conn, shard, "parse error"),
                }
            }
        }
    }
}

/// Writes every queued frame straight into the stream, as the shard does for deliveries
/// ([`Conn::write_direct`]): one `writev`, no copy into tungstenite's write buffer (whose
/// capacity would stay with the idle connection). What the socket did not take waits in the
/// stream, to be flushed. False: the transport failed, or the client is not reading.
fn write_queued(conn: &Conn, wire: &Wire) -> bool {
    let mut frames: SmallVec<[Frame; 4]> = SmallVec::new();
    while let Some(frame) = conn.outbox.pop() {
        frames.push(frame);
    }
    frames.is_empty() || wire.write_frames(&frames).is_ok()
}

/// Flushes what waits for the socket. A client that stops reading blocks the flush; an
/// overflowing queue abandons it, and so does the ping timeout: the heartbeat cannot run
/// meanwhile, and a quiet room never overflows the queue.
async fn flush_or_stall(shard: &Rc<Shard>, conn: &Rc<Conn>, ws: &mut Ws) -> bool {
    let overflow = std::future::poll_fn(|cx| conn.outbox.poll_overflow(cx));
    let stalled = tokio::time::sleep(shard.shared.protocol.engine.ping_timeout);
    tokio::select! {
        r = ws.flush() => r.is_ok(),
        () = overflow => false,
        () = stalled => {
            metrics::counter!(crate::telemetry::SLOW_CLIENTS).increment(1);
            tracing::debug!(sid = %conn.sid, "websocket write outlived the ping timeout");
            false
        }
    }
}

/// How long a closing WebSocket waits for the client to answer its Close frame, reading and
/// discarding whatever the client still sends meanwhile.
pub const CLOSE_DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Sends the Close frame, then reads (and discards) until the client answers it, ends the
/// stream, or [`CLOSE_DRAIN`] passes. A socket dropped with unread input makes the kernel send a
/// reset instead of a FIN, and a reset makes the client's kernel discard what it has not read
/// yet: a client still sending at shutdown would lose the Engine.IO close packet and the Close
/// frame queued just before it.
async fn close_and_drain(ws: &mut Ws) {
    let until = tokio::time::Instant::now() + CLOSE_DRAIN;
    let _ = tokio::time::timeout_at(until, ws.close(None)).await;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout_at(until, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn of three arguments returns.
    fn future_size<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle WebSocket keeps its task: the future of the active loop, in a block rounded
    /// up to 128 bytes (tokio's task cell). This future was 1,840 bytes in a test build (a
    /// 2,176-byte task per connection in release) while it held the WebSocket twice and awaited
    /// the write, stall and close paths inline; 936 since. A sub-future awaited inline in the
    /// loop, or the WebSocket passed as an argument again, would grow it past the bound.
    #[test]
    fn the_active_loop_stays_small() {
        let size = future_size(run_active);
        assert!(size <= 1024, "run_active's future is {size} bytes");
    }
}
