//! Presence events: `user:check:online` (the shard asks the cluster, then answers with
//! [`status`]) and the `user:online` / `user:offline` frames sent to a user's partners
//! ([`crate::Chat::partners`]) when the cluster reports the user's first or last socket.

use serde::Serialize;

use crate::payload::UserRef;
use crate::{Effect, Effects, Event, UserJson, error_reply, event_frame, json, reply};
use chatwire_protocol::json::Value;
use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

/// `user:check:online {userId, userType}`: parsed here, answered once the cluster knows. Only
/// users who share a conversation with the asker (and the asker) are looked up; anyone else
/// reads as offline, so presence cannot be probed by strangers.
pub(crate) async fn check_online(ev: &Event<'_>, payload: &Value) -> Effects {
    let req = match UserRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return error_reply("user:check:online", &e, ev.ack),
    };
    if req.user != ev.user && !ev.chat.shares_conversation(ev.user, req.user).await {
        return status(req.user, false, ev.ack);
    }
    let mut fx = Effects::new();
    fx.push(Effect::CheckOnline {
        user: req.user,
        ack: ev.ack,
    });
    fx
}

/// `user:online:status {userId, userType, isOnline}` (+ ack).
pub fn status(user: UserKey, is_online: bool, ack: Option<u64>) -> Effects {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        user_id: i64,
        user_type: &'static str,
        is_online: bool,
    }
    let body = json(&Status {
        user_id: user.id,
        user_type: user.user_type.as_str(),
        is_online,
    });
    reply("user:online:status", &body, ack)
}

/// `user:online` / `user:offline {userId, userType}`.
pub fn changed(user: UserKey, online: bool) -> TextFrame {
    let event = if online {
        "user:online"
    } else {
        "user:offline"
    };
    event_frame(event, &json(&UserJson::from(user)))
}
