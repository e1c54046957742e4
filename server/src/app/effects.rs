//! Carries out the chat rules' [`Effect`]s for one socket on the shard that owns it: frames to
//! the socket, room joins, leaves and broadcasts through the adapter, messages to storage,
//! typing timers, presence questions.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use chatwire_chat::{Chat, ChatSocket, Effect, Effects, TypingDue, room_name};
use chatwire_cluster::{Member, Online, SocketKey};

use super::commit::{Committer, ReplyTo, Route, Unanswered, deliver, refused};
use crate::engine::conn::Conn;
use crate::shard::Shard;
use crate::sio::emit::frame;

/// Runs `fx` for socket `key` (whose connection is `conn`, None once it is gone).
pub fn run(
    shard: &Rc<Shard>,
    conn: Option<&Rc<Conn>>,
    key: SocketKey,
    state: &Rc<RefCell<ChatSocket>>,
    fx: Effects,
) {
    for effect in fx {
        match effect {
            // A reply with a place in a conversation (`message:read:success`) moves the
            // socket's recovery offset like a broadcast does.
            Effect::Emit(f) if f.position().is_some() && shard.recovers() => {
                if conn.is_some() {
                    shard.deliver_positioned(key.local, &f, &frame(f.clone()));
                }
            }
            Effect::Emit(f) => {
                if let Some(conn) = conn {
                    conn.push(frame(f));
                }
            }
            Effect::Join { conversation_id } => {
                let member = Member {
                    socket: key,
                    user: Some(state.borrow().user),
                };
                shard
                    .adapter()
                    .join(&**shard, room_name(conversation_id), member);
                rooms_changed(shard, conn, key);
            }
            Effect::Leave { conversation_id } => {
                shard
                    .adapter()
                    .leave(&**shard, room_name(conversation_id), key);
                rooms_changed(shard, conn, key);
            }
            Effect::Broadcast {
                conversation_id,
                frame,
            } => {
                shard
                    .adapter()
                    .broadcast(&**shard, room_name(conversation_id), frame, Some(key));
            }
            Effect::Store {
                message,
                participants,
                ack,
            } => store(shard, key, *message, participants, ack),
            Effect::TypingTimer {
                conversation_id,
                at,
            } => typing_timer(shard.clone(), key, state.clone(), conversation_id, at),
            Effect::CheckOnline { user, ack } => {
                let Some(conn) = conn else { continue };
                match shard.adapter().check_online(&**shard, user) {
                    Online::Now(online) => {
                        emit_all(conn, chatwire_chat::presence::status(user, online, ack))
                    }
                    later => {
                        let conn = conn.clone();
                        tokio::task::spawn_local(async move {
                            let online = later.get().await;
                            emit_all(&conn, chatwire_chat::presence::status(user, online, ack));
                        });
                    }
                }
            }
        }
    }
}

/// A live socket joined or left a room: its recoverable session (if any) is saved with its rooms.
fn rooms_changed(shard: &Rc<Shard>, conn: Option<&Rc<Conn>>, key: SocketKey) {
    if let Some(conn) = conn {
        super::recovery::save(shard, conn, key.local);
    }
}

/// Writes the `Emit` effects of `fx` to `conn` (answers computed after an await).
fn emit_all(conn: &Conn, fx: Effects) {
    for effect in fx {
        if let Effect::Emit(f) = effect {
            conn.push(frame(f));
        }
    }
}

/// A message to store: to the committer, or `message:error` at once when it is full.
fn store(
    shard: &Rc<Shard>,
    key: SocketKey,
    message: chatwire_store::NewMessage,
    participants: std::sync::Arc<[chatwire_store::UserKey]>,
    ack: Option<u64>,
) {
    let Some(shared) = shard.shared.chat.as_ref() else {
        return;
    };
    // Through the batch writer, a send dropped unanswered (the writer died) still gets its
    // `unavailable`; inline, the owner shard always answers.
    let unanswered = match &shared.committer {
        Committer::Writer(_) => {
            super::commit::answer_if_dropped(&shard.set, key, ack, message.temp_id.clone())
        }
        Committer::Inline(_) => Unanswered::default(),
    };
    let route = Route {
        participants,
        reply: ReplyTo::Socket { socket: key, ack },
        unanswered,
    };
    if let Err((message, route)) = super::commit::submit(&shared.committer, shard, message, route) {
        deliver(shard, refused(&message, route));
    }
}

/// The typist's auto-stop: wakes at `at`, asks the rules, and re-arms while later starts keep
/// moving the deadline. Ends when typing stopped any other way or the socket is gone.
fn typing_timer(
    shard: Rc<Shard>,
    key: SocketKey,
    state: Rc<RefCell<ChatSocket>>,
    conversation_id: i64,
    at: Instant,
) {
    tokio::task::spawn_local(async move {
        let mut deadline = at;
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            match Chat::typing_due(&state, conversation_id, Instant::now()) {
                TypingDue::Later(next) => deadline = next,
                TypingDue::Stopped(stop) => {
                    run(&shard, None, key, &state, Effects::from_iter([stop]));
                    return;
                }
                TypingDue::Done => return,
            }
        }
    });
}
