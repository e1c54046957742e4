//! The Engine.IO endpoint: Origin/CORS checks, query validation (reference error codes), then a
//! new session (polling handshake or direct WebSocket) or a request for an existing one, which is
//! served by the shard named in its sid (forwarded through `ShardMsg` when that is another shard),
//! or, in a fleet, by the node named in it (forwarded over HTTP, see [`forward`]).

use std::rc::Rc;

use bytes::Bytes;
use chatwire_protocol::engine::handshake::{HandshakeError, HandshakeQuery, Transport};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::ConnInfo;
use super::forward;
use super::response::handshake_error;
use super::response::{empty, json, plain};
use super::sessions::{SessionPermit, SessionRefusal};
use crate::engine::conn::Handshake;
use crate::fleet::Owner;
use crate::shard::Shard;
use crate::shard::msg::{PollForward, ShardMsg};

/// Counts a new session against this connection and the session caps.
fn new_session(shard: &Shard, info: &ConnInfo) -> Result<SessionPermit, SessionRefusal> {
    let opened = info.sessions_opened.get().saturating_add(1);
    info.sessions_opened.set(opened);
    if opened > shard.shared.max_handshakes_per_connection {
        SessionRefusal::PerConnection.count();
        return Err(SessionRefusal::PerConnection);
    }
    // The accept loop counted the connection's first handshake; later ones count here.
    if opened > 1
        && let Some(limiter) = shard.shared.conn_limiter.as_ref()
        && !limiter.check(info.peer.ip())
    {
        SessionRefusal::RateLimited.count();
        return Err(SessionRefusal::RateLimited);
    }
    shard.shared.session_caps.acquire(info.peer.ip())
}

/// The answer to a refused session: 429 / 503 with an Engine.IO error body; the connection is
/// closed after it.
fn refusal(r: SessionRefusal) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"code": 3, "message": r.reason().1}).to_string();
    let mut resp = json(r.status(), body);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if r.status() == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// A header as text.
fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Handles a request under `/socket.io/` (or `/engine.io/` in conformance mode).
pub async fn handle(
    shard: Rc<Shard>,
    req: Request<Incoming>,
    info: Rc<ConnInfo>,
    engine_only: bool,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let origin = header_str(headers, header::ORIGIN).map(str::to_owned);
    let host = header_str(headers, header::HOST).map(str::to_owned);
    let policy = &shard.shared.origin;
    if req.method() == Method::OPTIONS {
        let wanted = header_str(headers, header::ACCESS_CONTROL_REQUEST_HEADERS);
        return match policy.preflight(origin.as_deref(), host.as_deref(), wanted) {
            Some(cors) => {
                let mut resp = empty(StatusCode::NO_CONTENT);
                resp.headers_mut().extend(cors);
                resp
            }
            None => handshake_error(HandshakeError::Forbidden),
        };
    }
    if !policy.check(origin.as_deref(), host.as_deref()) {
        metrics::counter!(crate::telemetry::REFUSED, crate::telemetry::LABEL_REASON => "origin")
            .increment(1);
        return handshake_error(HandshakeError::Forbidden);
    }
    let mut resp = route(shard.clone(), req, &info, engine_only).await;
    policy.apply_cors(origin.as_deref(), host.as_deref(), resp.headers_mut());
    resp
}

/// Dispatches by query after the Origin check.
async fn route(
    shard: Rc<Shard>,
    req: Request<Incoming>,
    info: &ConnInfo,
    engine_only: bool,
) -> Response<Full<Bytes>> {
    let query = match HandshakeQuery::parse(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return handshake_error(e),
    };
    if let Err(e) = query.check_method(req.method().as_str()) {
        return handshake_error(e);
    }
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    match (query.transport, query.sid) {
        (Transport::Websocket, _) if !is_upgrade || req.method() != Method::GET => {
            handshake_error(HandshakeError::BadRequest)
        }
        (Transport::Websocket, Some(sid)) => {
            super::websocket::upgrade(shard, req, Some(sid), None, engine_only).await
        }
        (Transport::Websocket, None) => match new_session(&shard, info) {
            Ok(permit) => {
                let handshake = Handshake::new(
                    req.headers(),
                    info.peer.ip(),
                    Transport::Websocket,
                    Some(permit),
                );
                super::websocket::upgrade(shard, req, None, Some(handshake), engine_only).await
            }
            Err(r) => refusal(r),
        },
        (Transport::Polling, None) => {
            if req.method() != Method::GET {
                return handshake_error(HandshakeError::BadHandshakeMethod);
            }
            let session_permit = match new_session(&shard, info) {
                Ok(permit) => Some(permit),
                Err(r) => return refusal(r),
            };
            let handshake = Handshake::new(
                req.headers(),
                info.peer.ip(),
                Transport::Polling,
                session_permit,
            );
            super::polling::handshake(&shard, handshake, engine_only)
        }
        (Transport::Polling, Some(sid)) => {
            let is_post = match *req.method() {
                Method::GET => false,
                Method::POST => true,
                _ => return handshake_error(HandshakeError::BadRequest),
            };
            // A session of another node: pass the request on (once: never a forwarded one).
            let elsewhere = match shard.shared.fleet.owner(&sid) {
                Owner::Here => None,
                Owner::Node(_, addr) if !forward::is_forwarded(req.headers()) => Some((
                    addr.to_owned(),
                    req.method().clone(),
                    req.uri().clone(),
                    req.headers().clone(),
                )),
                Owner::Node(..) | Owner::Unknown => {
                    return handshake_error(HandshakeError::SessionIdUnknown);
                }
            };
            let body = if is_post {
                match super::polling::read_body(
                    req.into_body(),
                    shard.shared.protocol.engine.max_payload,
                    shard.shared.body_read_timeout,
                )
                .await
                {
                    Ok(b) => b,
                    Err(StatusCode::REQUEST_TIMEOUT) => {
                        return plain(StatusCode::REQUEST_TIMEOUT, "body read timeout");
                    }
                    Err(status) => {
                        // Over maxPayload: the reference answers 413 and closes the session
                        // (another node's session ends by its ping timeout).
                        let owner = usize::from(sid.shard());
                        if elsewhere.is_none() && owner < shard.shard_count() {
                            shard.send_to(owner, ShardMsg::CloseSession(sid));
                        }
                        return plain(status, "payload too large");
                    }
                }
            } else {
                Bytes::new()
            };
            if let Some((node, method, uri, headers)) = elsewhere {
                return forward::poll(&shard, &node, method, &uri, &headers, body).await;
            }
            let owner = usize::from(sid.shard());
            let (status, body) = if owner == usize::from(shard.index) {
                super::polling::serve(shard, sid, is_post, body).await
            } else if owner < shard.shard_count() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                shard.send_to(
                    owner,
                    ShardMsg::Poll(Box::new(PollForward {
                        sid,
                        is_post,
                        body,
                        reply: tx,
                    })),
                );
                rx.await
                    .unwrap_or((400, Bytes::from(HandshakeError::SessionIdUnknown.to_json())))
            } else {
                (400, Bytes::from(HandshakeError::SessionIdUnknown.to_json()))
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut resp = if status.is_success() {
                plain(status, body)
            } else {
                json(status, body)
            };
            if status.is_success() {
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=UTF-8"),
                );
            }
            resp
        }
    }
}
