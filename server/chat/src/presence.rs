//! Presence events: `user:check:online` (asks the user's presence owner) and the `user:online` /
//! `user:offline` announcements the owner sends to online users who share a conversation.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use super::payload::UserRef;
use super::{Ctx, NSP, UserJson, json, reply, reply_error};
use crate::presence::presence_owner;
use crate::shard::Shard;
use crate::shard::msg::ShardMsg;
use crate::sio::emit;
use crate::store::{Store, UserKey};
use chatwire_protocol::json::Value;

/// `user:check:online`.
pub async fn check_online(ctx: &Ctx<'_>, payload: &Value) {
    let req = match UserRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return reply_error(ctx.conn, "user:check:online", &e, ctx.ack),
    };
    let owner = presence_owner(req.user, ctx.shard.shard_count());
    let is_online = if owner == usize::from(ctx.shard.index) {
        ctx.shard.presence.borrow().is_online(req.user)
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.shard.send_to(
            owner,
            ShardMsg::PresenceQuery {
                user: req.user,
                reply: tx,
            },
        );
        rx.await.unwrap_or(false)
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        user_id: i64,
        user_type: &'static str,
        is_online: bool,
    }
    let body = json(&Status {
        user_id: req.user.id,
        user_type: req.user.user_type.as_str(),
        is_online,
    });
    reply(ctx.conn, "user:online:status", &body, ctx.ack);
}

/// On the presence owner: tell the user's conversation partners (on every shard) that the user
/// came online / went offline. Runs as a task (it reads the store).
pub fn announce(shard: Rc<Shard>, user: UserKey, online: bool) {
    tokio::task::spawn_local(async move {
        let Ok(chat) = super::shared(&shard) else {
            return;
        };
        let store = chat.store.clone();
        let conversations = match store.conversations_of(user).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "presence: conversations_of failed");
                return;
            }
        };
        let mut partners: HashSet<UserKey> = HashSet::new();
        for conv in conversations {
            if let Ok(p) = super::participants(&shard, conv).await {
                partners.extend(p.iter().copied().filter(|u| *u != user));
            }
        }
        if partners.is_empty() {
            return;
        }
        // The state may have flipped while we read the store; announce only the current truth.
        if shard.presence.borrow().is_online(user) != online {
            return;
        }
        let body = json(&UserJson::from(user));
        let frame = emit::event(
            NSP,
            if online {
                "user:online"
            } else {
                "user:offline"
            },
            &body,
        );
        let users: Arc<[UserKey]> = partners.into_iter().collect();
        for i in 0..shard.shard_count() {
            shard.send_to(
                i,
                ShardMsg::DeliverToUsers {
                    frame: frame.clone(),
                    users: users.clone(),
                },
            );
        }
    });
}
