//! Requests for a session another node of the fleet owns (see [`crate::fleet`]): a load balancer
//! without sticky sessions sends a client's polling requests and its WebSocket upgrade to any
//! node, and the node that receives one passes it on to the owner named in the sid.
//!
//! - A polling GET or POST (its body already read, at most `MAX_PAYLOAD`) is sent again to the
//!   owner over a pooled HTTP/1.1 connection of this shard; the owner's status, content type and
//!   body (at most `MAX_PAYLOAD` and a little) come back. A GET waits at most `PING_INTERVAL_MS`
//!   + `PING_TIMEOUT_MS` (the owner answers a long poll within the ping interval).
//! - A WebSocket upgrade is replayed on a new connection to the owner; once the owner answers
//!   101, the client gets the owner's 101 and the two upgraded streams are spliced (two copies
//!   with 8 KiB buffers, no parsing). When one side ends, the other gets [`SPLICE_GRACE`] to
//!   finish, so a client that vanished without a FIN cannot hold the task forever (the owner's
//!   heartbeat closes its side).
//!
//! A forwarded request carries [`FORWARDED`]; a node never forwards such a request again (no
//! loops when two nodes disagree about the fleet). When the owner is unknown, unreachable or
//! too slow the client gets Engine.IO's `400 {"code":1,"message":"Session ID unknown"}` and
//! opens a new session, as after a restart of the owner.

use std::time::Duration;

use bytes::Bytes;
use chatwire_protocol::engine::handshake::HandshakeError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::response::{handshake_error, with_type};
use crate::shard::Shard;

/// Marks a request one node passed on to another; its value is the sending node's id.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-chatwire-forwarded");

/// `chatwire_forwarded_total{kind,outcome}`: requests passed on to their session's owner node.
pub const FORWARDED_TOTAL: &str = "chatwire_forwarded_total";

/// Longest wait for a TCP connection to the owner node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one direction of a spliced WebSocket may go on after the other ended.
pub const SPLICE_GRACE: Duration = Duration::from_secs(5);

/// Bytes an answer may have beyond `MAX_PAYLOAD` (an owner never sends more than that payload).
const ANSWER_SLACK: usize = 4096;

/// Idle pooled connections kept per owner node and shard.
const POOL_IDLE_PER_NODE: usize = 64;

/// The HTTP client of one shard (connections to the other nodes, kept alive).
type NodeClient = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    /// Each shard thread pools its own connections: no lock shared between shards.
    static CLIENT: NodeClient = {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(POOL_IDLE_PER_NODE)
            .build(http)
    };
}

/// Whether another node already passed this request on.
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

/// Headers that belong to one hop (RFC 9110 7.6.1) and are not passed on, plus the length
/// (set again from the body).
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == header::CONTENT_LENGTH
        || name.as_str() == "keep-alive"
        || name == FORWARDED
}

/// The request to send to the owner: same method, path, query and end-to-end headers (the
/// client's `Host` and `Origin` included, so the owner's origin check sees what this node saw),
/// plus [`FORWARDED`].
fn forwarded_request(
    shard: &Shard,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    owner: &str,
    body: Bytes,
) -> Option<Request<Full<Bytes>>> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let target: Uri = format!("http://{owner}{path}").parse().ok()?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = target;
    let out = req.headers_mut();
    for (name, value) in headers {
        if !hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(FORWARDED, HeaderValue::from(shard.shared.fleet.node));
    Some(req)
}

/// Counts a forwarded request.
fn count(kind: &'static str, outcome: &'static str) {
    metrics::counter!(FORWARDED_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
}

/// What a client gets when the owner cannot be asked.
fn owner_unreachable(
    kind: &'static str,
    owner: &str,
    why: &dyn std::fmt::Display,
) -> Response<Full<Bytes>> {
    count(kind, "failed");
    tracing::debug!(owner, error = %why, "could not pass a {kind} request on to its session's node");
    handshake_error(HandshakeError::SessionIdUnknown)
}

/// Passes a polling GET or POST (its body read) on to the owner node and answers what it
/// answered.
pub async fn poll(
    shard: &Shard,
    owner: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let engine = &shard.shared.protocol.engine;
    let limit = engine.max_payload.saturating_add(ANSWER_SLACK);
    let Some(req) = forwarded_request(shard, method, uri, headers, owner, body) else {
        return owner_unreachable("poll", owner, &"bad address");
    };
    let client = CLIENT.with(Clone::clone);
    let exchange = async move {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((
            parts.status,
            parts.headers.get(header::CONTENT_TYPE).cloned(),
            body,
        ))
    };
    match tokio::time::timeout(engine.ping_interval + engine.ping_timeout, exchange).await {
        Ok(Ok((status, content_type, body))) => {
            count("poll", "ok");
            let mut resp = with_type(status, body, "text/plain; charset=UTF-8");
            if let Some(t) = content_type {
                resp.headers_mut().insert(header::CONTENT_TYPE, t);
            }
            resp
        }
        Ok(Err(e)) => owner_unreachable("poll", owner, &e),
        Err(_) => owner_unreachable("poll", owner, &"timed out"),
    }
}

/// Replays a WebSocket upgrade on the owner node; on its 101, answers 101 and splices the two
/// streams. Any other answer of the owner (400 for a session it does not know) is passed back.
pub async fn websocket(
    shard: &Shard,
    mut req: Request<Incoming>,
    owner: &str,
) -> Response<Full<Bytes>> {
    let Some(mut fwd) = forwarded_request(
        shard,
        Method::GET,
        req.uri(),
        req.headers(),
        owner,
        Bytes::new(),
    ) else {
        return owner_unreachable("websocket", owner, &"bad address");
    };
    // The upgrade itself is hop-by-hop: asked for again on the new hop.
    let h = fwd.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let owner_addr = owner.to_owned();
    let exchange = async move {
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&owner_addr))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::task::spawn_local(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(fwd).await.map_err(|e| e.to_string())
    };
    let wait = shard.shared.protocol.engine.upgrade_timeout;
    let resp = match tokio::time::timeout(wait, exchange).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return owner_unreachable("websocket", owner, &e),
        Err(_) => return owner_unreachable("websocket", owner, &"timed out"),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        count("websocket", "refused");
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body =
            tokio::time::timeout(wait, Limited::new(resp.into_body(), ANSWER_SLACK).collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default();
        let mut answer = with_type(status, body, "application/json");
        if let Some(t) = content_type {
            answer.headers_mut().insert(header::CONTENT_TYPE, t);
        }
        return answer;
    }
    count("websocket", "ok");
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in [
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ] {
        if let Some(v) = resp.headers().get(&name) {
            answer.headers_mut().insert(name, v.clone());
        }
    }
    let client_side = hyper::upgrade::on(&mut req);
    let owner_side = hyper::upgrade::on(resp);
    tokio::task::spawn_local(async move {
        match tokio::join!(client_side, owner_side) {
            (Ok(client), Ok(owner)) => splice(TokioIo::new(client), TokioIo::new(owner)).await,
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "a proxied websocket upgrade did not complete");
            }
        }
    });
    answer
}

/// Copies bytes both ways until both directions end; once one ends (and its write side is shut
/// down), the other has [`SPLICE_GRACE`].
async fn splice<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let a_to_b = async {
        let _ = tokio::io::copy(&mut a_read, &mut b_write).await;
        let _ = b_write.shutdown().await;
    };
    let b_to_a = async {
        let _ = tokio::io::copy(&mut b_read, &mut a_write).await;
        let _ = a_write.shutdown().await;
    };
    tokio::pin!(a_to_b, b_to_a);
    tokio::select! {
        () = &mut a_to_b => { let _ = tokio::time::timeout(SPLICE_GRACE, b_to_a).await; }
        () = &mut b_to_a => { let _ = tokio::time::timeout(SPLICE_GRACE, a_to_b).await; }
    }
}
