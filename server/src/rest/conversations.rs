//! Conversation endpoints: create (1:1 or group), list, unread counts, hide.

use simd_json::prelude::*;

use super::{RestContext, RestResponse, output, parse_body, query::Query};
use chatwire_store::{ConversationCursor, Store, StoreError, UserKey, UserType};

/// Longest group title accepted.
const MAX_TITLE_CHARS: usize = 200;

type Value = chatwire_protocol::json::Value;

fn bad(msg: &str) -> StoreError {
    StoreError::BadRequest(msg.to_string())
}

/// A positive integer id given as a JSON number or a decimal string.
fn positive_id(v: Option<&Value>, name: &str) -> Result<i64, StoreError> {
    v.and_then(chatwire_chat::id::from_value)
        .ok_or_else(|| StoreError::BadRequest(format!("{name} must be a positive integer")))
}

fn user_type(v: Option<&Value>, name: &str) -> Result<UserType, StoreError> {
    v.and_then(|v| v.as_str())
        .and_then(UserType::parse)
        .ok_or_else(|| {
            StoreError::BadRequest(format!("{name} must be \"brand\" or \"influencer\""))
        })
}

/// `POST /api/chat/conversations`.
pub(super) async fn create(
    ctx: &RestContext,
    user: UserKey,
    body: &[u8],
) -> Result<RestResponse, StoreError> {
    let v = parse_body(body)?;
    if v.as_object().is_none() {
        return Err(bad("body must be a JSON object"));
    }
    if let Some(list) = v.get("participants") {
        let list = list
            .as_array()
            .ok_or_else(|| bad("participants must be an array"))?;
        if list.len() > ctx.limits.max_participants {
            return Err(StoreError::TooLarge(format!(
                "a conversation has at most {} participants",
                ctx.limits.max_participants
            )));
        }
        let members = list
            .iter()
            .map(|p| {
                Ok(UserKey::new(
                    user_type(p.get("userType"), "userType")?,
                    positive_id(p.get("userId"), "userId")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let title = match v.get("title") {
            None => None,
            Some(t) if t.is_null() => None,
            Some(t) => {
                let t = t.as_str().ok_or_else(|| bad("title must be a string"))?;
                if t.chars().count() > MAX_TITLE_CHARS {
                    return Err(bad("title is too long"));
                }
                if t.contains('\0') {
                    return Err(bad("title must not contain NUL characters"));
                }
                Some(t.to_string())
            }
        };
        let conv = ctx
            .store
            .create_group(user, &members, title, ctx.limits.max_participants)
            .await?;
        let mut out = Vec::with_capacity(1024);
        output::conversation(&conv, &mut out);
        return Ok(RestResponse::json(201, out));
    }
    let other = UserKey::new(
        user_type(v.get("participantType"), "participantType")?,
        positive_id(v.get("participantId"), "participantId")?,
    );
    let (conv, created) = ctx.store.create_direct(user, other).await?;
    let mut out = Vec::with_capacity(1024);
    output::conversation(&conv, &mut out);
    Ok(RestResponse::json(if created { 201 } else { 200 }, out))
}

/// `GET /api/chat/conversations?limit=&before=`.
pub(super) async fn list(
    ctx: &RestContext,
    user: UserKey,
    query: &Query,
) -> Result<RestResponse, StoreError> {
    let limit = query.limit(ctx.limits.default_page, ctx.limits.max_page)?;
    let before = match query.get("before") {
        None | Some("") => None,
        Some(c) => Some(
            ConversationCursor::parse(c).ok_or_else(|| bad("before must be a nextCursor value"))?,
        ),
    };
    let page = ctx.store.list_conversations(user, before, limit).await?;
    Ok(RestResponse::json(200, output::conversation_page(&page)))
}

/// `GET /api/chat/unread-count`.
pub(super) async fn unread(ctx: &RestContext, user: UserKey) -> Result<RestResponse, StoreError> {
    let counts = ctx.store.unread_counts(user).await?;
    Ok(RestResponse::json(200, output::unread(&counts)))
}

/// `DELETE /api/chat/conversations/:id`.
pub(super) async fn hide(
    ctx: &RestContext,
    user: UserKey,
    id: i64,
) -> Result<RestResponse, StoreError> {
    ctx.store.hide(id, user).await?;
    Ok(RestResponse::json(204, Vec::new()))
}
