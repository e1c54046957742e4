//! `message:read`: mark a conversation read up to a message (or the newest), answer
//! `message:read:success`, broadcast `message:read` to the room except the reader.

use serde::Serialize;

use super::conversation::reply_conversation_error;
use super::payload::ReadRequest;
use super::{Ctx, NSP, UserJson, json, reply, room_name};
use crate::adapter::{Adapter, LocalAdapter};
use crate::sio::emit;
use crate::store::Store;
use chatwire_protocol::json::Value;

/// `message:read`.
pub async fn read(ctx: &Ctx<'_>, payload: &Value) {
    let req = match ReadRequest::parse(payload) {
        Ok(r) => r,
        Err(e) => return reply_conversation_error(ctx, payload, &e),
    };
    let conv = req.conversation_id;
    if let Err(e) = super::check_participant(ctx.shard, conv, ctx.user).await {
        return reply_conversation_error(ctx, payload, &e);
    }
    let store = match super::shared(ctx.shard) {
        Ok(c) => c.store.clone(),
        Err(e) => return reply_conversation_error(ctx, payload, &e),
    };
    let message_id = match store.mark_read(conv, ctx.user, req.message_id).await {
        Ok(id) => id,
        Err(e) => return reply_conversation_error(ctx, payload, &e.into()),
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Success {
        conversation_id: i64,
        message_id: i64,
    }
    reply(
        ctx.conn,
        "message:read:success",
        &json(&Success {
            conversation_id: conv,
            message_id,
        }),
        ctx.ack,
    );
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReadBy {
        conversation_id: i64,
        message_id: i64,
        read_by: UserJson,
    }
    let body = json(&ReadBy {
        conversation_id: conv,
        message_id,
        read_by: ctx.user.into(),
    });
    let key = ctx.shard.socket_key(ctx.local);
    LocalAdapter.broadcast(
        ctx.shard,
        room_name(conv),
        emit::event(NSP, "message:read", &body),
        Some(key),
    );
}
