//! Message endpoints: history (with search), sending over HTTP through the batch writer, and
//! moving the read pointer.

use simd_json::prelude::*;

use super::{RestContext, RestResponse, parse_body, query::Query};
use crate::app::commit::{ReplyTo, Route, Unanswered};
use chatwire_chat::validate::parse_send;
use chatwire_store::{HistoryQuery, Store, StoreError, UserKey};

/// `GET /api/chat/conversations/:id/messages?limit=&before=&q=`.
pub(super) async fn history(
    ctx: &RestContext,
    user: UserKey,
    id: i64,
    query: &Query,
) -> Result<RestResponse, StoreError> {
    let limit = query.limit(ctx.limits.default_page, ctx.limits.max_page)?;
    let before = match query.get("before") {
        None | Some("") => None,
        Some(b) => Some(
            chatwire_chat::id::parse(b)
                .ok_or_else(|| StoreError::BadRequest("before must be a message id".into()))?,
        ),
    };
    let search = query.get("q").filter(|q| !q.is_empty());
    if search.is_some_and(|q| q.chars().count() > ctx.limits.message.max_chars) {
        return Err(StoreError::BadRequest("q is too long".into()));
    }
    let page = ctx
        .store
        .history(
            id,
            user,
            HistoryQuery {
                before,
                limit,
                search,
            },
        )
        .await?;
    Ok(RestResponse::json(200, super::output::message_page(&page)))
}

/// `POST /api/chat/messages`: validated like `message:send`, committed by the batch writer (which
/// also delivers it live), 201 when new, 200 when the tempId was already stored.
pub(super) async fn send(
    ctx: &RestContext,
    user: UserKey,
    body: &[u8],
) -> Result<RestResponse, StoreError> {
    let v = parse_body(body)?;
    let msg = parse_send(&v, user, &ctx.limits.message).map_err(|invalid| invalid.error)?;
    let participants = match ctx.store.participants(msg.conversation_id).await? {
        None => return Err(StoreError::NotFound),
        Some(members) if !members.contains(&user) => return Err(StoreError::Forbidden),
        Some(members) => members,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let route = Route {
        participants,
        reply: ReplyTo::Http(tx),
        // Dropping the route drops `tx`: the wait below answers `unavailable`.
        unanswered: Unanswered::default(),
    };
    if crate::app::commit::submit_wait(&ctx.writer, msg, route, ctx.limits.submit_wait)
        .await
        .is_err()
    {
        return Err(StoreError::Unavailable("write queue full".into()));
    }
    let stored = match tokio::time::timeout(ctx.limits.commit_wait, rx).await {
        Ok(Ok(result)) => result?,
        Ok(Err(_)) => return Err(StoreError::Unavailable("writer stopped".into())),
        Err(_) => return Err(StoreError::Unavailable("commit timed out".into())),
    };
    let mut out = Vec::with_capacity(320 + stored.message.content.len());
    stored.message.write_json(&mut out);
    Ok(RestResponse::json(
        if stored.duplicate { 200 } else { 201 },
        out,
    ))
}

/// `PUT /api/chat/conversations/:id/read` with `{messageId?}`.
pub(super) async fn read(
    ctx: &RestContext,
    user: UserKey,
    id: i64,
    body: &[u8],
) -> Result<RestResponse, StoreError> {
    let up_to = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v = parse_body(body)?;
        if v.as_object().is_none() {
            return Err(StoreError::BadRequest("body must be a JSON object".into()));
        }
        match v.get("messageId") {
            None => None,
            Some(m) if m.is_null() => None,
            Some(m) => {
                let n = chatwire_chat::id::from_value(m);
                Some(n.ok_or_else(|| {
                    StoreError::BadRequest("messageId must be a positive integer".into())
                })?)
            }
        }
    };
    let message_id = ctx.store.mark_read(id, user, up_to).await?;
    ctx.live.read(id, message_id, user);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"conversationId\":");
    chatwire_store::json_i64(&mut out, id);
    out.extend_from_slice(b",\"messageId\":");
    chatwire_store::json_i64(&mut out, message_id);
    out.push(b'}');
    Ok(RestResponse::json(200, out))
}
