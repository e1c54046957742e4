//! `typing:start` / `typing:stop`: broadcast to the room except the typist, only from a socket in
//! the room. Each start (re)arms a 6 s timer that sends `typing:stop` on the typist's behalf; leave,
//! disconnect and a sent message also stop typing.

use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;

use super::payload::ConversationRef;
use super::{Ctx, NSP, UserJson, json, reply_error, room_name, with_socket};
use crate::adapter::{Adapter, LocalAdapter};
use crate::rooms::SocketKey;
use crate::shard::Shard;
use crate::sio::emit;
use crate::store::UserKey;
use chatwire_protocol::json::Value;

/// How long a `typing:start` lasts without a new one.
pub const TYPING_TIMEOUT: Duration = Duration::from_secs(6);

/// Broadcasts `typing:start`/`typing:stop` for `user` to the conversation room except `except`.
pub fn broadcast(
    shard: &Rc<Shard>,
    conversation_id: i64,
    user: UserKey,
    start: bool,
    except: Option<SocketKey>,
) {
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
    let frame = emit::event(NSP, event, &body);
    LocalAdapter.broadcast(shard, room_name(conversation_id), frame, except);
}

/// A typing event from a client.
pub fn on_typing(ctx: &Ctx<'_>, payload: &Value, start: bool) {
    let event = if start { "typing:start" } else { "typing:stop" };
    let req = match ConversationRef::parse(payload) {
        Ok(r) => r,
        Err(e) => return reply_error(ctx.conn, event, &e, ctx.ack),
    };
    let conv = req.conversation_id;
    // Only a socket in the room may type there; others are ignored (no reply in the contract).
    let until = std::time::Instant::now() + TYPING_TIMEOUT;
    let outcome = with_socket(ctx.conn, ctx.local, |c| {
        if !c.rooms.contains(&conv) {
            return None;
        }
        let pos = c.typing.iter().position(|(t, _)| *t == conv);
        match (start, pos) {
            // A repeated start only moves the deadline; the running timer sees it.
            (true, Some(p)) => {
                if let Some(entry) = c.typing.get_mut(p) {
                    entry.1 = until;
                }
                Some(false)
            }
            (true, None) => {
                c.typing.push((conv, until));
                Some(true)
            }
            (false, p) => {
                p.map(|p| c.typing.remove(p));
                Some(false)
            }
        }
    });
    let Some(Some(new_timer)) = outcome else {
        return;
    };
    let key = ctx.shard.socket_key(ctx.local);
    broadcast(ctx.shard, conv, ctx.user, start, Some(key));
    if new_timer {
        arm_timer(
            ctx.shard.clone(),
            ctx.conn.clone(),
            ctx.local,
            ctx.user,
            conv,
            until,
        );
    }
}

/// Sends `typing:stop` once the typing deadline passes (it moves with each `typing:start`).
fn arm_timer(
    shard: Rc<Shard>,
    conn: Rc<crate::engine::conn::Conn>,
    local: u64,
    user: UserKey,
    conv: i64,
    first: std::time::Instant,
) {
    tokio::task::spawn_local(async move {
        let mut deadline = first;
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            let now = std::time::Instant::now();
            let state = with_socket(&conn, local, |c| {
                let pos = c.typing.iter().position(|(t, _)| *t == conv)?;
                let until = c.typing.get(pos)?.1;
                if until > now {
                    return Some(Some(until));
                }
                c.typing.remove(pos);
                Some(None)
            });
            match state {
                // Still typing: a later start moved the deadline.
                Some(Some(Some(until))) => deadline = until,
                Some(Some(None)) => {
                    broadcast(&shard, conv, user, false, Some(shard.socket_key(local)));
                    return;
                }
                // Stopped already, or the socket is gone.
                _ => return,
            }
        }
    });
}

/// Stops typing of socket `local` in `conv` if it was typing (after its message was sent).
pub fn stop_if_typing(shard: &Rc<Shard>, conn: &crate::engine::conn::Conn, local: u64, conv: i64) {
    let stopped = with_socket(conn, local, |c| {
        let pos = c.typing.iter().position(|(t, _)| *t == conv);
        pos.map(|p| c.typing.remove(p)).is_some().then_some(c.user)
    });
    if let Some(Some(user)) = stopped {
        broadcast(shard, conv, user, false, Some(shard.socket_key(local)));
    }
}
