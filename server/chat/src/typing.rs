//! `typing:start` / `typing:stop`: broadcast to the room except the typist, only from a socket in
//! the room. Each start (re)arms a 6 s deadline after which the server's timer calls
//! [`crate::Chat::typing_due`], which sends `typing:stop` on the typist's behalf; leave,
//! disconnect and a sent message also stop typing. A `typing:stop` from a socket that is not
//! typing there broadcasts nothing: clients such as the guide's emit `typing:stop` right after
//! `message:send`, when the server has already stopped typing for them, and the room would
//! otherwise hear every stop twice.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::payload::ConversationRef;
use crate::{
    ChatSocket, Effect, Effects, Event, TypingDue, UserJson, error_reply, event_frame, json,
};
use chatwire_protocol::json::Value;
use chatwire_store::UserKey;

/// How long typing lasts after the last `typing:start`.
pub const TYPING_TIMEOUT: Duration = Duration::from_secs(6);

/// The `typing:start` / `typing:stop` broadcast of `user` in a conversation.
pub fn broadcast(conversation_id: i64, user: UserKey, start: bool) -> Effect {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Typing {
        conversation_id: i64,
        user: UserJson,
    }
    let body = json(&Typing {
        conversation_id,
        user: user.into(),
    });
    let event = if start { "typing:start" } else { "typing:stop" };
    Effect::Broadcast {
        conversation_id,
        frame: event_frame(event, &body),
    }
}

/// `typing:start` / `typing:stop` from a socket. Only a socket in the room may type there;
/// others are ignored (the contract has no reply). A repeated start only moves the deadline (and
/// is broadcast again); a stop is broadcast only when the socket was typing there.
pub(crate) fn on_typing(ev: &Event<'_>, payload: &Value, start: bool) -> Effects {
    let event = if start { "typing:start" } else { "typing:stop" };
    let req = match ConversationRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return error_reply(event, &e, ev.ack),
    };
    let conv = req.conversation_id;
    let until = ev.now + TYPING_TIMEOUT;
    let changed = {
        let mut s = ev.socket.borrow_mut();
        if !s.rooms.contains(&conv) {
            return Effects::new();
        }
        let pos = s.typing.iter().position(|(t, _)| *t == conv);
        match (start, pos) {
            (true, Some(p)) => {
                if let Some(entry) = s.typing.get_mut(p) {
                    entry.1 = until;
                }
                Some(false)
            }
            (true, None) => {
                s.typing.push((conv, until));
                Some(true)
            }
            (false, Some(p)) => {
                s.typing.remove(p);
                None
            }
            (false, None) => return Effects::new(),
        }
    };
    let mut fx = Effects::new();
    fx.push(broadcast(conv, ev.user, start));
    if changed == Some(true) {
        fx.push(Effect::TypingTimer {
            conversation_id: conv,
            at: until,
        });
    }
    fx
}

/// Stops typing in `conv` if the socket was typing there (a sent message): the broadcast.
pub(crate) fn stop_if_typing(socket: &RefCell<ChatSocket>, conv: i64) -> Option<Effect> {
    let mut s = socket.borrow_mut();
    let pos = s.typing.iter().position(|(t, _)| *t == conv)?;
    s.typing.remove(pos);
    Some(broadcast(conv, s.user, false))
}

/// A typing deadline is due (see [`crate::Chat::typing_due`]).
pub(crate) fn due(socket: &RefCell<ChatSocket>, conv: i64, now: Instant) -> TypingDue {
    let mut s = socket.borrow_mut();
    let Some(pos) = s.typing.iter().position(|(t, _)| *t == conv) else {
        return TypingDue::Done;
    };
    match s.typing.get(pos) {
        Some((_, until)) if *until > now => TypingDue::Later(*until),
        _ => {
            s.typing.remove(pos);
            TypingDue::Stopped(broadcast(conv, s.user, false))
        }
    }
}
