//! `conversation:join` / `conversation:leave`: room membership of a socket, participants only.
//! Errors of this family (and of `message:read`) answer `conversation:error`.

use serde::Serialize;

use crate::error::ChatError;
use crate::payload::{ConversationRef, field};
use crate::{Effect, Effects, Event, json, reply, room_name, telemetry, typing};
use chatwire_protocol::json::Value;

/// `conversation:joined` / `conversation:left` payload.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Membership<'a> {
    conversation_id: i64,
    room: &'a str,
}

/// `conversation:error {conversationId, error, message}` (+ ack), echoing the request's
/// `conversationId` as given.
pub fn error_reply(payload: &Value, err: &ChatError, ack: Option<u64>) -> Effects {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ConvError<'a> {
        conversation_id: Option<&'a Value>,
        error: &'static str,
        message: &'a str,
    }
    telemetry::count_error(err.code);
    let body = json(&ConvError {
        conversation_id: field(payload, "conversationId"),
        error: err.code.as_str(),
        message: &err.message,
    });
    reply("conversation:error", &body, ack)
}

/// `conversation:join`: participants only; joining twice answers again without a second join.
pub(crate) async fn join(ev: &Event<'_>, payload: &Value) -> Effects {
    let req = match ConversationRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return error_reply(payload, &e, ev.ack),
    };
    let conv = req.conversation_id;
    if let Err(e) = ev.chat.check_participant(conv, ev.user).await {
        return error_reply(payload, &e, ev.ack);
    }
    let newly = {
        let mut s = ev.socket.borrow_mut();
        if s.rooms.contains(&conv) {
            false
        } else {
            s.rooms.push(conv);
            true
        }
    };
    let mut fx = Effects::new();
    if newly {
        fx.push(Effect::Join {
            conversation_id: conv,
        });
    }
    let room = room_name(conv);
    crate::push_reply(
        &mut fx,
        "conversation:joined",
        &json(&Membership {
            conversation_id: conv,
            room: &room,
        }),
        ev.ack,
    );
    fx
}

/// `conversation:leave`: stops typing there, leaves the room, answers `conversation:left`.
pub(crate) fn leave(ev: &Event<'_>, payload: &Value) -> Effects {
    let req = match ConversationRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return crate::error_reply("conversation:leave", &e, ev.ack),
    };
    let conv = req.conversation_id;
    let (was_member, was_typing) = {
        let mut s = ev.socket.borrow_mut();
        let typing = s
            .typing
            .iter()
            .position(|(t, _)| *t == conv)
            .map(|p| s.typing.remove(p))
            .is_some();
        let pos = s.rooms.iter().position(|r| *r == conv);
        (pos.map(|p| s.rooms.remove(p)).is_some(), typing)
    };
    let mut fx = Effects::new();
    if was_typing {
        fx.push(typing::broadcast(conv, ev.user, false));
    }
    if was_member {
        fx.push(Effect::Leave {
            conversation_id: conv,
        });
    }
    let room = room_name(conv);
    crate::push_reply(
        &mut fx,
        "conversation:left",
        &json(&Membership {
            conversation_id: conv,
            room: &room,
        }),
        ev.ack,
    );
    fx
}
