//! The REST glue: CORS, rate limits per address then per user (429 with `Retry-After`),
//! `Authorization` header -> `Authenticator` (401 otherwise), bounded body read, then the
//! hyper-free `crate::rest::handle`. Also the server's `LiveEvents` (REST actions
//! that sockets must see, such as a read receipt).

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::response::{empty, json};
use crate::rest::limits::{Limited, RestKind};
use crate::shard::Shard;
use chatwire_chat::room_name;
use chatwire_store::UserKey;

/// Broadcasts REST-side actions to sockets through the adapter of the shard serving the request.
#[derive(Debug, Clone, Copy)]
pub struct ShardLive;

impl crate::rest::LiveEvents for ShardLive {
    fn read(&self, conversation_id: i64, message_id: i64, reader: UserKey) {
        let Some(shard) = crate::shard::current() else {
            tracing::debug!("read receipt broadcast skipped: not on a shard");
            return;
        };
        let frame = chatwire_chat::read::receipt(conversation_id, message_id, reader);
        shard
            .adapter()
            .broadcast(&*shard, room_name(conversation_id), frame, None);
    }
}

/// `{"error":{"code","message"}}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let r = crate::rest::RestResponse::custom_error(status.as_u16(), code, message);
    json(status, r.body)
}

/// Serves `/api/chat/...`.
pub async fn handle(
    shard: Rc<Shard>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let policy = &shard.shared.origin;
    if req.method() == Method::OPTIONS {
        let wanted = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok());
        return match policy.preflight(origin.as_deref(), host.as_deref(), wanted) {
            Some(cors) => {
                let mut resp = empty(StatusCode::NO_CONTENT);
                resp.headers_mut().extend(cors);
                resp
            }
            None => error(StatusCode::FORBIDDEN, "forbidden", "origin not allowed"),
        };
    }
    if !policy.check(origin.as_deref(), host.as_deref()) {
        return error(StatusCode::FORBIDDEN, "forbidden", "origin not allowed");
    }
    let mut resp = serve(&shard, req, peer).await;
    policy.apply_cors(origin.as_deref(), host.as_deref(), resp.headers_mut());
    resp
}

/// `429 rate_limited` with `Retry-After`.
fn too_many(limited: Limited) -> Response<Full<Bytes>> {
    let secs = limited.retry_after_secs();
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &format!("too many requests, retry after {secs} s"),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Rate-limits, authenticates and calls the REST handler.
async fn serve(
    shard: &Rc<Shard>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let (Some(chat), Some(ctx)) = (shard.shared.chat.as_ref(), shard.shared.rest.as_ref()) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
    };
    let limits = &shard.shared.rest_limits;
    let kind = RestKind::of(req.method(), req.uri().path(), req.uri().query());
    if let Err(limited) = limits.check_ip(kind, peer.ip()) {
        return too_many(limited);
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization header",
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let identity = match chat.auth.authenticate(token, now) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e.code(), e.message()),
    };
    let user = identity.user;
    if let Err(limited) = limits.check_user(kind, user) {
        return too_many(limited);
    }
    if let Some(chat) = shard.chat.as_ref()
        && let Err(e) = chat.connect(user, identity.profile).await
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    // Read at most one byte over the limit so the handler can answer 413 itself.
    let max = ctx.limits.max_body_bytes;
    let read = super::polling::read_body(req.into_body(), max + 1, shard.shared.body_read_timeout);
    let body = match read.await {
        Ok(b) => b,
        Err(StatusCode::REQUEST_TIMEOUT) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "request body not received in time",
            );
        }
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "request body too large",
            );
        }
    };
    let r = crate::rest::handle(ctx, user, &method, &path, query.as_deref(), &body).await;
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if r.body.is_empty() {
        return empty(status);
    }
    let mut resp = json(status, r.body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
