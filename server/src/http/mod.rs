//! HTTP: each shard's accept loop and the router. One hyper 1 HTTP/1.1 server per connection
//! (header read timeout, bounded header buffer) dispatching `/socket.io/` (Engine.IO polling and
//! WebSocket upgrades), `/healthz`, `/readyz`, `/metrics`, the REST routes `/api/chat/...` and
//! the demo page with the socket.io-client bundle ([`demo`]).

pub mod demo;
pub mod engineio;
pub mod forward;
pub mod polling;
pub mod response;
pub mod rest;
pub mod sessions;
pub mod websocket;

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::shard::Shard;
use crate::shared::Mode;
use response::plain;

/// Largest HTTP header block hyper buffers per connection.
const MAX_HTTP_BUF: usize = 16 * 1024;

/// Connections per shard allowed in their HTTP handshake at once (measured: 16 gave the
/// smallest and steadiest idle memory per connection, see ARCHITECTURE.md).
pub use crate::shard::HANDSHAKE_PERMITS;

/// Longest a new connection waits for a handshake permit before it proceeds without one.
pub const HANDSHAKE_PERMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

/// A connection whose first request head has not arrived this long after its accept gives its
/// handshake permit back: an ordinary client sends its head right behind the TCP handshake, and
/// slow heads (slowloris) must not hold every permit and delay each new connection by
/// [`HANDSHAKE_PERMIT_WAIT`].
pub const HANDSHAKE_PERMIT_HOLD: std::time::Duration = std::time::Duration::from_millis(50);

/// One TCP connection's facts, shared by its requests.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Engine.IO sessions opened over this connection so far.
    pub sessions_opened: Cell<u32>,
}

/// Accepts connections on this shard's listener until the task is aborted.
pub async fn accept_loop(shard: Rc<Shard>, listener: tokio::net::TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        if let Some(limiter) = shard.shared.conn_limiter.as_ref()
            && !limiter.check(peer.ip())
        {
            metrics::counter!(crate::telemetry::REFUSED, crate::telemetry::LABEL_REASON => "rate_limited")
                .increment(1);
            drop(stream);
            continue;
        }
        let accepted = tokio::time::Instant::now();
        let _ = stream.set_nodelay(true);
        let shard = shard.clone();
        tokio::task::spawn_local(serve_connection(shard, stream, peer, accepted));
    }
}

/// Serves one TCP connection with hyper (HTTP/1.1, upgrades enabled).
///
/// At most [`HANDSHAKE_PERMITS`] connections per shard are in their HTTP handshake at once: the
/// handshake (hyper's buffers, the upgrade) is the peak of a connection's memory, and many at
/// once leave freed heap the allocator does not return, which idle connections then pay for.
/// A connection waits at most [`HANDSHAKE_PERMIT_WAIT`] for a permit, then proceeds without
/// one, so clients that hold a handshake open (up to the header read timeout) only delay others.
/// The permit is given back as soon as a request head has been read, unless the request is a
/// WebSocket upgrade: a long poll, a slow body or a slow REST query must not hold it (16 of them
/// per shard would delay every new connection by [`HANDSHAKE_PERMIT_WAIT`]). An upgrade keeps
/// it until hyper hands the upgraded stream over and this future ends, or its answer is not a
/// `101`. A connection whose head is still incomplete after [`HANDSHAKE_PERMIT_HOLD`] gives
/// its permit back.
///
/// The first request head must be complete within the header read timeout counted from the
/// accept (`accepted`): the permit wait counts against it, so a slow head is closed on time
/// whatever it waited. hyper's own header timer (which starts only once hyper reads) bounds the
/// heads of later requests on a kept-alive connection.
async fn serve_connection(
    shard: Rc<Shard>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    accepted: tokio::time::Instant,
) {
    let timeout = shard.shared.header_read_timeout;
    let head_deadline = accepted + timeout;
    let permit = tokio::time::timeout_at(
        head_deadline.min(accepted + HANDSHAKE_PERMIT_WAIT),
        shard.handshakes.clone().acquire_owned(),
    )
    .await
    .ok()
    .and_then(Result::ok);
    let svc_shard = shard.clone();
    let permit = Rc::new(std::cell::Cell::new(permit));
    let head_seen = Rc::new(Cell::new(false));
    let info = Rc::new(ConnInfo {
        peer,
        sessions_opened: Cell::new(0),
    });
    let svc_permit = permit.clone();
    let svc_head_seen = head_seen.clone();
    let svc = service_fn(move |req| {
        let shard = svc_shard.clone();
        let permit = svc_permit.clone();
        let info = info.clone();
        svc_head_seen.set(true);
        async move {
            if !is_websocket_upgrade(&req) {
                drop(permit.take());
            }
            let resp = route(shard, req, info).await;
            if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                drop(permit.take());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HTTP_BUF)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let hold_until = accepted + HANDSHAKE_PERMIT_HOLD;
    let mut holding = true;
    let ended = loop {
        tokio::select! {
            r = &mut conn => break Some(r),
            () = tokio::time::sleep_until(hold_until), if holding => {
                holding = false;
                if !head_seen.get() {
                    drop(permit.take());
                }
            }
            () = tokio::time::sleep_until(head_deadline) => {
                if !head_seen.get() {
                    // No complete head within the header timeout since the accept: close.
                    tracing::trace!(%peer, "request head not complete in time: closing");
                    return;
                }
                break None;
            }
        }
    };
    let result = match ended {
        Some(r) => r,
        None => conn.await,
    };
    if let Err(e) = result {
        tracing::trace!(error = %e, "http connection ended with an error");
    }
}

/// Whether a request asks for a WebSocket upgrade (`Upgrade: websocket`).
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Dispatches one request by path.
pub async fn route(
    shard: Rc<Shard>,
    req: Request<Incoming>,
    info: Rc<ConnInfo>,
) -> Response<Full<Bytes>> {
    let peer = info.peer;
    let path = req.uri().path();
    let mode = shard.shared.mode;
    if path == "/socket.io/" || path == "/socket.io" {
        return engineio::handle(shard, req, info, false).await;
    }
    if let Some(demo) = &shard.shared.demo
        && let Some(resp) = demo.handle(&req)
    {
        return resp;
    }
    match (mode, path) {
        (Mode::Conformance, "/engine.io/" | "/engine.io") => {
            engineio::handle(shard, req, info, true).await
        }
        (Mode::Conformance, "/echo") if is_websocket_upgrade(&req) => websocket::echo(&shard, req),
        (_, "/healthz" | "/readyz") if !shard.shared.dead_threads().is_empty() => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("dead threads: {}", shard.shared.dead_threads().join(", ")),
        ),
        (_, "/healthz") => plain(StatusCode::OK, "ok"),
        (_, "/readyz") => {
            // Redis away does not make a node unready: it still serves its own clients (local
            // delivery goes on); the body says cross-node delivery is paused.
            let redis = match shard.adapter().cluster_connected() {
                None => "",
                Some(true) => "; redis connected",
                Some(false) => "; redis disconnected: cross-node delivery paused",
            };
            if shard.shared.ready().await {
                plain(StatusCode::OK, format!("ready{redis}"))
            } else {
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("storage unavailable{redis}"),
                )
            }
        }
        (_, "/metrics") if req.method() == Method::GET => {
            let mut resp = plain(StatusCode::OK, crate::telemetry::render_metrics());
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        (Mode::Chat, p) if p.starts_with("/api/chat/") || p == "/api/chat" => {
            rest::handle(shard, req, peer).await
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}
