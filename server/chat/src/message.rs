//! `message:send` and everything after the commit: the sender's `message:sent` / `message:error`,
//! `message:new` to the room (from the room's owner shard, in id order) and
//! `message:notification` to online participants with no socket in the room.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use super::error::{ChatError, Code};
use super::payload::SendPayload;
use super::{Ctx, NSP, json, reply, room_name, with_socket};
use crate::shard::Shard;
use crate::shard::msg::{Committed, ShardMsg, SocketReply};
use crate::sio::emit;
use crate::store::batch::ReplyTo;
use crate::store::validate::{MessageLimits, check_send, parse_send};
use crate::store::{TempId, UserKey};
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::RawEvent;

/// `message:error {error, message, tempId}`, built on any thread.
pub fn error_payload(err: &ChatError, temp_id: Option<&TempId>) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SendError<'a> {
        error: &'static str,
        message: &'a str,
        temp_id: Option<&'a TempId>,
    }
    json(&SendError {
        error: err.code.as_str(),
        message: &err.message,
        temp_id,
    })
}

/// `message:send`.
pub async fn send(ctx: &Ctx<'_>, payload: &Value) {
    let chat = match super::shared(ctx.shard) {
        Ok(c) => c,
        Err(e) => return reply(ctx.conn, "message:error", &error_payload(&e, None), ctx.ack),
    };
    let limits = MessageLimits::default().with_max_chars(chat.max_message_chars);
    submit(ctx, chat, parse_send(payload, ctx.user, &limits)).await;
}

/// `message:send` from the fast decode path: the payload is deserialized from the frame's bytes
/// into [`SendPayload`]; anything that does not fit (wrong types, invalid ids, not an object)
/// is read as a generic value and goes through [`parse_send`], so every answer is the same.
pub async fn send_raw(ctx: &Ctx<'_>, event: &RawEvent, max_depth: usize) {
    let chat = match super::shared(ctx.shard) {
        Ok(c) => c,
        Err(e) => return reply(ctx.conn, "message:error", &error_payload(&e, None), ctx.ack),
    };
    let limits = MessageLimits::default().with_max_chars(chat.max_message_chars);
    let fields = event
        .arg_bytes(0)
        .filter(|b| b.first() == Some(&b'{'))
        .and_then(|_| event.arg::<SendPayload>(0).ok())
        .and_then(|p| p.into_fields(&limits));
    let parsed = match fields {
        Some(fields) => check_send(fields, ctx.user, &limits),
        None => {
            let payload = event
                .arg_value(0, max_depth)
                .unwrap_or(Value::Static(simd_json::StaticNode::Null));
            parse_send(&payload, ctx.user, &limits)
        }
    };
    submit(ctx, chat, parsed).await;
}

/// The rest of a send once its payload is validated: rate limit, participant check, queue.
async fn submit(
    ctx: &Ctx<'_>,
    chat: &super::ChatShared,
    parsed: Result<crate::store::NewMessage, crate::store::validate::InvalidMessage>,
) {
    let msg = match parsed {
        Ok(m) => m,
        Err(invalid) => return fail(ctx, &invalid.error.into(), invalid.temp_id.as_ref()),
    };
    let allowed = with_socket(ctx.conn, ctx.local, |c| {
        c.limiter.as_ref().is_none_or(|l| l.check())
    });
    if allowed == Some(false) {
        let e = ChatError::new(Code::RateLimited, "too many messages, slow down");
        return fail(ctx, &e, msg.temp_id.as_ref());
    }
    if let Err(e) = super::check_participant(ctx.shard, msg.conversation_id, ctx.user).await {
        return fail(ctx, &e, msg.temp_id.as_ref());
    }
    let temp_id = msg.temp_id.clone();
    let reply_to = ReplyTo::Socket {
        shard: ctx.shard.index,
        socket: ctx.local,
        ack: ctx.ack,
    };
    if chat.writer.try_submit(msg, reply_to).is_err() {
        let e = ChatError::new(Code::Unavailable, "storage busy, retry later");
        fail(ctx, &e, temp_id.as_ref());
    }
}

/// Replies `message:error` to the sender (+ ack).
fn fail(ctx: &Ctx<'_>, err: &ChatError, temp_id: Option<&TempId>) {
    metrics::counter!(crate::telemetry::ERRORS, crate::telemetry::LABEL_CODE => err.code.as_str())
        .increment(1);
    reply(
        ctx.conn,
        "message:error",
        &error_payload(err, temp_id),
        ctx.ack,
    );
}

/// On the sender's shard: deliver `message:sent` / `message:error` (+ ack), stop typing.
pub fn deliver_reply(shard: &Rc<Shard>, r: SocketReply) {
    let conn = shard.sockets.borrow().get(&r.socket).cloned();
    let Some(conn) = conn else { return };
    reply(&conn, r.event, &r.payload, r.ack);
    if let Some(conv) = r.stop_typing {
        super::typing::stop_if_typing(shard, &conn, r.socket, conv);
    }
}

/// On the room's owner shard: `message:new` to the room except the sending socket, then
/// `message:notification` to online participants with no socket in the room.
pub fn fan_out_committed(shard: Rc<Shard>, c: Committed) {
    let room = room_name(c.conversation_id);
    shard.broadcast_owned(&room, c.new_frame.clone(), c.sender_socket);
    metrics::counter!(crate::telemetry::EVENTS_OUT, crate::telemetry::LABEL_EVENT => "message:new")
        .increment(1);
    let conv = c.conversation_id;
    if let Some(p) = shard.chat.cached_participants(conv) {
        notify(&shard, &room, &p, &c);
        return;
    }
    // Participants unknown here yet: queue (keeps id order) and load them once.
    let first = {
        let mut pending = shard.chat.pending.borrow_mut();
        let queue = pending.entry(conv).or_default();
        queue.push(c);
        queue.len() == 1
    };
    if !first {
        return;
    }
    tokio::task::spawn_local(async move {
        let loaded = super::participants(&shard, conv).await;
        let queue = shard
            .chat
            .pending
            .borrow_mut()
            .remove(&conv)
            .unwrap_or_default();
        match loaded {
            Ok(p) => {
                for c in &queue {
                    notify(&shard, &room, &p, c);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, conv, "notification skipped: participants unavailable")
            }
        }
    });
}

/// Sends the notification frame to participants not in the room, never the sender.
fn notify(shard: &Rc<Shard>, room: &str, participants: &[UserKey], c: &Committed) {
    let targets: Arc<[UserKey]> = {
        let rooms = shard.rooms.borrow();
        let in_room: HashSet<UserKey> = participants
            .iter()
            .copied()
            .filter(|u| rooms.has_user(room, *u))
            .collect();
        participants
            .iter()
            .copied()
            .filter(|u| *u != c.sender && !in_room.contains(u))
            .collect()
    };
    if targets.is_empty() {
        return;
    }
    for i in 0..shard.shard_count() {
        shard.send_to(
            i,
            ShardMsg::DeliverToUsers {
                frame: c.notification_frame.clone(),
                users: targets.clone(),
            },
        );
    }
}

/// The `message:new` and `message:notification` frames for a committed message (built once).
pub fn committed_frames(
    conversation_id: i64,
    message_json: &[u8],
) -> (crate::engine::outbox::Frame, crate::engine::outbox::Frame) {
    let new_frame = emit::event(NSP, "message:new", message_json);
    let mut note = Vec::with_capacity(message_json.len() + 40);
    note.extend_from_slice(b"{\"conversationId\":");
    note.extend_from_slice(itoa::Buffer::new().format(conversation_id).as_bytes());
    note.extend_from_slice(b",\"message\":");
    note.extend_from_slice(message_json);
    note.push(b'}');
    (new_frame, emit::event(NSP, "message:notification", &note))
}
