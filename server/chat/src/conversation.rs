//! `conversation:join` / `conversation:leave`: room membership of a socket, participants only.

use std::rc::Rc;

use serde::Serialize;

use super::error::ChatError;
use super::payload::{ConversationRef, field};
use super::{Ctx, json, reply, reply_error, room_name, with_socket};
use crate::adapter::{Adapter, LocalAdapter};
use crate::rooms::{Member, SocketKey};
use crate::shard::Shard;
use chatwire_protocol::json::Value;

/// `{conversationId, room}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Joined<'a> {
    conversation_id: i64,
    room: &'a str,
}

/// `conversation:error {conversationId, error, message}`.
pub fn reply_conversation_error(ctx: &Ctx<'_>, payload: &Value, err: &ChatError) {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ConvError<'a> {
        conversation_id: Option<&'a Value>,
        error: &'static str,
        message: &'a str,
    }
    metrics::counter!(crate::telemetry::ERRORS, crate::telemetry::LABEL_CODE => err.code.as_str())
        .increment(1);
    let conversation_id = field(payload, "conversationId");
    let body = json(&ConvError {
        conversation_id,
        error: err.code.as_str(),
        message: &err.message,
    });
    reply(ctx.conn, "conversation:error", &body, ctx.ack);
}

/// `conversation:join`.
pub async fn join(ctx: &Ctx<'_>, payload: &Value) {
    let req = match ConversationRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return reply_conversation_error(ctx, payload, &e),
    };
    let conv = req.conversation_id;
    let participants = match super::check_participant(ctx.shard, conv, ctx.user).await {
        Ok(p) => p,
        Err(e) => return reply_conversation_error(ctx, payload, &e),
    };
    let room = room_name(conv);
    let newly = with_socket(ctx.conn, ctx.local, |c| {
        if c.rooms.contains(&conv) {
            false
        } else {
            c.rooms.push(conv);
            true
        }
    });
    match newly {
        Some(true) => {
            let member = Member {
                socket: ctx.shard.socket_key(ctx.local),
                user: Some(ctx.user),
            };
            LocalAdapter.join(ctx.shard, room.clone(), member, Some(participants));
        }
        Some(false) => {}
        None => return, // socket gone meanwhile
    }
    reply(
        ctx.conn,
        "conversation:joined",
        &json(&Joined {
            conversation_id: conv,
            room: &room,
        }),
        ctx.ack,
    );
}

/// `conversation:leave`.
pub fn leave(ctx: &Ctx<'_>, payload: &Value) {
    let req = match ConversationRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return reply_error(ctx.conn, "conversation:leave", &e, ctx.ack),
    };
    let conv = req.conversation_id;
    let was_typing = with_socket(ctx.conn, ctx.local, |c| {
        let typing = c
            .typing
            .iter()
            .position(|(t, _)| *t == conv)
            .map(|p| c.typing.remove(p))
            .is_some();
        let pos = c.rooms.iter().position(|r| *r == conv);
        (pos.map(|p| c.rooms.remove(p)).is_some(), typing)
    });
    if let Some((was_member, was_typing)) = was_typing {
        let key = ctx.shard.socket_key(ctx.local);
        if was_typing {
            super::typing::broadcast(ctx.shard, conv, ctx.user, false, Some(key));
        }
        if was_member {
            leave_room(ctx.shard, conv, key);
        }
    }
    let room = room_name(conv);
    reply(
        ctx.conn,
        "conversation:left",
        &json(&Joined {
            conversation_id: conv,
            room: &room,
        }),
        ctx.ack,
    );
}

/// Removes a socket from a conversation room (through the adapter).
pub fn leave_room(shard: &Rc<Shard>, conversation_id: i64, socket: SocketKey) {
    LocalAdapter.leave(shard, room_name(conversation_id), socket);
}
