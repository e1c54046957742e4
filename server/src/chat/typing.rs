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
    let outcome = with_socket(ctx.conn, ctx.local, |c| {
        if !c.rooms.contains(&conv) {
            return None;
        }
        let pos = c.typing.iter().position(|(t, _)| *t == conv);
        if start {
            c.typing_gen = c.typing_gen.wrapping_add(1);
            let generation = c.typing_gen;
            match pos {
                Some(p) => {
                    if let Some(entry) = c.typing.get_mut(p) {
                        entry.1 = generation;
                    }
                }
                None => c.typing.push((conv, generation)),
            }
            Some(Some(generation))
        } else {
            pos.map(|p| c.typing.remove(p));
            Some(None)
        }
    });
    let Some(Some(action)) = outcome else { return };
    let key = ctx.shard.socket_key(ctx.local);
    broadcast(ctx.shard, conv, ctx.user, start, Some(key));
    if let Some(generation) = action {
        arm_timer(
            ctx.shard.clone(),
            ctx.conn.clone(),
            ctx.local,
            ctx.user,
            conv,
            generation,
        );
    }
}

/// After 6 s, stops typing unless a newer start re-armed it.
fn arm_timer(
    shard: Rc<Shard>,
    conn: Rc<crate::engine::conn::Conn>,
    local: u64,
    user: UserKey,
    conv: i64,
    generation: u32,
) {
    tokio::task::spawn_local(async move {
        tokio::time::sleep(TYPING_TIMEOUT).await;
        let expired = with_socket(&conn, local, |c| {
            match c
                .typing
                .iter()
                .position(|(t, g)| *t == conv && *g == generation)
            {
                Some(p) => {
                    c.typing.remove(p);
                    true
                }
                None => false,
            }
        });
        if expired == Some(true) {
            broadcast(&shard, conv, user, false, Some(shard.socket_key(local)));
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
