//! The REST API of the contract (section 6), free of hyper: the HTTP router authenticates the
//! caller, reads the body (at most [`RestLimits::max_body_bytes`]) and calls [`handle`], which
//! returns a status and a JSON body.
//!
//! | route | handler |
//! | --- | --- |
//! | `POST /api/chat/conversations` | `conversations::create` |
//! | `GET /api/chat/conversations` | `conversations::list` |
//! | `GET /api/chat/conversations/:id/messages` | `messages::history` |
//! | `POST /api/chat/messages` | `messages::send` (through the batch writer, like a socket send) |
//! | `PUT /api/chat/conversations/:id/read` | `messages::read` |
//! | `GET /api/chat/unread-count` | `conversations::unread` |
//! | `DELETE /api/chat/conversations/:id` | `conversations::hide` |
//!
//! Errors are `{"error":{"code","message"}}`; the status comes from [`StoreError::http_status`].

pub mod context;
mod conversations;
pub mod limits;
mod messages;
mod output;
mod query;

use hyper::Method;

use chatwire_store::{StoreError, UserKey};

pub use context::{LiveEvents, RestContext, RestLimits};

/// A REST answer: status and JSON body (empty for 204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

impl RestResponse {
    /// A JSON answer.
    pub(crate) fn json(status: u16, body: Vec<u8>) -> RestResponse {
        RestResponse { status, body }
    }

    /// `{"error":{"code","message"}}` with the error's status.
    pub fn error(e: &StoreError) -> RestResponse {
        let message = match e {
            StoreError::NotFound => "not found".to_string(),
            StoreError::Forbidden => "you are not a participant of this conversation".to_string(),
            StoreError::Unavailable(_) => "storage unavailable, retry later".to_string(),
            StoreError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        if let StoreError::Internal(detail) | StoreError::Unavailable(detail) = e {
            tracing::warn!(error = %detail, "REST request failed in the store");
        }
        RestResponse::custom_error(e.http_status(), e.code(), &message)
    }

    /// An error with an explicit status and code (routing errors).
    pub fn custom_error(status: u16, code: &str, message: &str) -> RestResponse {
        let mut body = Vec::with_capacity(64 + message.len());
        body.extend_from_slice(b"{\"error\":{\"code\":");
        chatwire_store::json_str(&mut body, code);
        body.extend_from_slice(b",\"message\":");
        chatwire_store::json_str(&mut body, message);
        body.extend_from_slice(b"}}");
        RestResponse { status, body }
    }
}

/// Maximum JSON nesting accepted in a request body.
const MAX_JSON_DEPTH: usize = 16;

/// Parses a JSON request body (depth-limited); 400 on malformed JSON.
pub(crate) fn parse_body(body: &[u8]) -> Result<chatwire_protocol::json::Value, StoreError> {
    let mut buf = body.to_vec();
    chatwire_protocol::json::parse(&mut buf, MAX_JSON_DEPTH)
        .map_err(|e| StoreError::BadRequest(format!("malformed JSON body: {e}")))
}

/// Parses a conversation id from a path segment.
fn path_id(segment: &str) -> Result<i64, StoreError> {
    chatwire_chat::id::parse(segment)
        .ok_or_else(|| StoreError::BadRequest("conversation id must be a positive integer".into()))
}

/// Serves one REST request from an authenticated `user`.
pub async fn handle(
    ctx: &RestContext,
    user: UserKey,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> RestResponse {
    if body.len() > ctx.limits.max_body_bytes {
        return RestResponse::error(&StoreError::TooLarge(format!(
            "request body is larger than {} bytes",
            ctx.limits.max_body_bytes
        )));
    }
    let Some(rest) = path.strip_prefix("/api/chat/") else {
        return RestResponse::custom_error(404, "not_found", "no such endpoint");
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let query = query::Query::parse(query.unwrap_or(""));
    let result = match (method, segments.as_slice()) {
        (&Method::POST, ["conversations"]) => conversations::create(ctx, user, body).await,
        (&Method::GET, ["conversations"]) => conversations::list(ctx, user, &query).await,
        (&Method::GET, ["conversations", id, "messages"]) => match path_id(id) {
            Ok(id) => messages::history(ctx, user, id, &query).await,
            Err(e) => Err(e),
        },
        (&Method::POST, ["messages"]) => messages::send(ctx, user, body).await,
        (&Method::PUT, ["conversations", id, "read"]) => match path_id(id) {
            Ok(id) => messages::read(ctx, user, id, body).await,
            Err(e) => Err(e),
        },
        (&Method::GET, ["unread-count"]) => conversations::unread(ctx, user).await,
        (&Method::DELETE, ["conversations", id]) => match path_id(id) {
            Ok(id) => conversations::hide(ctx, user, id).await,
            Err(e) => Err(e),
        },
        (
            _,
            ["conversations"]
            | ["conversations", _, "messages"]
            | ["messages"]
            | ["conversations", _, "read"],
        )
        | (_, ["unread-count"] | ["conversations", _]) => {
            return RestResponse::custom_error(
                405,
                "method_not_allowed",
                "method not allowed on this endpoint",
            );
        }
        _ => return RestResponse::custom_error(404, "not_found", "no such endpoint"),
    };
    result.unwrap_or_else(|e| RestResponse::error(&e))
}
