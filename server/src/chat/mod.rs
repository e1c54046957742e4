//! The chat application on the `/chat` namespace (contract sections 2-4). One module per event
//! family: [`conversation`] (join/leave), [`message`] (send, commit fan-out), [`read`], [`typing`],
//! [`presence`]. This file holds what they share: per-socket state, per-shard caches, the
//! CONNECT authentication and the reply helpers (event + ack with the same payload).

pub mod conversation;
pub mod error;
pub mod message;
pub mod payload;
pub mod presence;
pub mod read;
pub mod sink;
pub mod typing;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use chatwire_protocol::json::Value;
use chatwire_protocol::socket::RawEvent;
use chatwire_protocol::socket::packet::Packet;
use serde::Serialize;
use smallvec::SmallVec;

use crate::auth::Authenticator;
use crate::engine::conn::Conn;
use crate::ratelimit::MessageLimiter;
use crate::rooms::RoomName;
use crate::shard::Shard;
use crate::sio::emit;
use crate::store::batch::WriterHandle;
use crate::store::{AnyStore, Store, UserKey};
use error::{ChatError, Code};

/// Entries kept in each per-shard cache before it is cleared (bounds memory).
const CACHE_LIMIT: usize = 200_000;

/// The namespace of the chat application.
pub const NSP: &str = "/chat";

/// Process-wide chat dependencies (read-only, shared by every shard).
pub struct ChatShared {
    /// Token verification.
    pub auth: Authenticator,
    /// The store.
    pub store: Arc<AnyStore>,
    /// The batch writer's queue.
    pub writer: WriterHandle,
    /// `MAX_MESSAGE_CHARS`.
    pub max_message_chars: usize,
    /// Per-socket message rate (per second, burst); 0 = unlimited.
    pub rate: (u32, u32),
}

impl std::fmt::Debug for ChatShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatShared").finish_non_exhaustive()
    }
}

/// Per-socket chat state.
#[derive(Debug)]
pub struct ChatSocket {
    /// The authenticated user.
    pub user: UserKey,
    /// Rate limiter for every client event (None = unlimited).
    pub limiter: Option<MessageLimiter>,
    /// Conversations whose room this socket joined.
    pub rooms: SmallVec<[i64; 2]>,
    /// Conversations this socket is typing in, with when its typing ends (6 s after the last
    /// `typing:start`). One timer task per entry re-reads this deadline when it wakes.
    pub typing: SmallVec<[(i64, std::time::Instant); 1]>,
}

/// Per-shard chat caches.
#[derive(Debug, Default)]
pub struct ChatLocal {
    /// Conversation -> participants (never change after creation).
    participants: RefCell<HashMap<i64, Arc<[UserKey]>>>,
    /// Users already created in the store by this shard.
    known_users: RefCell<HashSet<UserKey>>,
    /// Committed messages waiting for their conversation's participants (room owner only).
    pub pending: RefCell<HashMap<i64, Vec<crate::shard::msg::Committed>>>,
}

impl ChatLocal {
    /// Caches a conversation's participants.
    pub fn remember_participants(&self, conversation_id: i64, participants: Arc<[UserKey]>) {
        let mut map = self.participants.borrow_mut();
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(conversation_id, participants);
    }

    /// Cached participants, if known.
    pub fn cached_participants(&self, conversation_id: i64) -> Option<Arc<[UserKey]>> {
        self.participants.borrow().get(&conversation_id).cloned()
    }
}

/// The room of a conversation.
pub fn room_name(conversation_id: i64) -> RoomName {
    Arc::from(format!("conversation:{conversation_id}"))
}

/// The conversation of a chat room name.
pub fn room_conversation(room: &str) -> Option<i64> {
    room.strip_prefix("conversation:")?.parse().ok()
}

/// The shared chat dependencies (the server always has them in chat mode).
pub fn shared(shard: &Shard) -> Result<&ChatShared, ChatError> {
    shard
        .shared
        .chat
        .as_ref()
        .ok_or_else(|| ChatError::new(Code::Unavailable, "chat is not enabled"))
}

/// Participants of a conversation (cached per shard); `not_found` when it does not exist.
pub async fn participants(
    shard: &Shard,
    conversation_id: i64,
) -> Result<Arc<[UserKey]>, ChatError> {
    if let Some(p) = shard.chat.cached_participants(conversation_id) {
        return Ok(p);
    }
    let store = shared(shard)?.store.clone();
    match store.participants(conversation_id).await? {
        Some(p) => {
            shard.chat.remember_participants(conversation_id, p.clone());
            Ok(p)
        }
        None => Err(ChatError::new(Code::NotFound, "conversation not found")),
    }
}

/// Participants, checked to include `user`: `forbidden` otherwise.
pub async fn check_participant(
    shard: &Shard,
    conversation_id: i64,
    user: UserKey,
) -> Result<Arc<[UserKey]>, ChatError> {
    let p = participants(shard, conversation_id).await?;
    if p.contains(&user) {
        Ok(p)
    } else {
        Err(ChatError::new(
            Code::Forbidden,
            "not a participant of this conversation",
        ))
    }
}

/// Authenticates a `/chat` CONNECT: `auth.token`, else the handshake `Authorization` header.
/// Creates the user on first sight. Err = the CONNECT_ERROR message.
pub async fn authenticate(
    shard: &Rc<Shard>,
    conn: &Conn,
    auth: Option<&Value>,
) -> Result<ChatSocket, String> {
    let chat = shared(shard).map_err(|e| e.message)?;
    let token = match auth.and_then(|a| payload::field(a, "token")) {
        Some(Value::String(t)) => Some(t.as_str()),
        _ => conn.handshake.authorization.as_deref(),
    };
    let Some(token) = token else {
        return Err("unauthorized".to_owned());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let identity = chat
        .auth
        .authenticate(token, now)
        .map_err(|e| e.message().to_owned())?;
    let user = identity.user;
    ensure_user(shard, identity).await?;
    let limiter = (chat.rate.0 > 0).then(|| MessageLimiter::new(chat.rate.0, chat.rate.1.max(1)));
    Ok(ChatSocket {
        user,
        limiter,
        rooms: SmallVec::new(),
        typing: SmallVec::new(),
    })
}

/// Creates the user in the store on first sight (per shard cache); profile claims update it.
pub async fn ensure_user(shard: &Shard, identity: crate::auth::Identity) -> Result<(), String> {
    let chat = shared(shard).map_err(|e| e.message)?;
    let user = identity.user;
    let known = shard.chat.known_users.borrow().contains(&user);
    if known && identity.profile.is_none() {
        return Ok(());
    }
    let store = chat.store.clone();
    if let Err(e) = store.ensure_user(user, identity.profile).await {
        tracing::warn!(error = %e, "ensure_user failed");
        return Err("unavailable".to_owned());
    }
    let mut known = shard.chat.known_users.borrow_mut();
    if known.len() >= CACHE_LIMIT {
        known.clear();
    }
    known.insert(user);
    Ok(())
}

/// `{userId, userType}` as JSON.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson {
    /// User id.
    pub user_id: i64,
    /// `brand` / `influencer`.
    pub user_type: &'static str,
}

impl From<UserKey> for UserJson {
    fn from(u: UserKey) -> Self {
        Self {
            user_id: u.id,
            user_type: u.user_type.as_str(),
        }
    }
}

/// After CONNECT: index the socket by user, count presence, emit `connection:success`.
pub fn on_connected(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    local: u64,
    user: UserKey,
    socket_id: &str,
) {
    shard
        .users
        .borrow_mut()
        .entry(user)
        .or_default()
        .push(local);
    let owner = crate::presence::presence_owner(user, shard.shard_count());
    shard.send_to(owner, crate::shard::msg::ShardMsg::PresenceUp(user));
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Success<'a> {
        user_id: i64,
        user_type: &'static str,
        socket_id: &'a str,
    }
    let body = json(&Success {
        user_id: user.id,
        user_type: user.user_type.as_str(),
        socket_id,
    });
    conn.push(emit::event(NSP, "connection:success", &body));
}

/// After the socket is gone: leave rooms (with `typing:stop`), drop the user index, presence.
pub fn on_disconnected(shard: &Rc<Shard>, local: u64, chat: ChatSocket) {
    let key = shard.socket_key(local);
    for (conv, _) in &chat.typing {
        typing::broadcast(shard, *conv, chat.user, false, Some(key));
    }
    for conv in &chat.rooms {
        conversation::leave_room(shard, *conv, key);
    }
    {
        let mut users = shard.users.borrow_mut();
        if let Some(list) = users.get_mut(&chat.user) {
            list.retain(|s| *s != local);
            if list.is_empty() {
                users.remove(&chat.user);
            }
        }
    }
    let owner = crate::presence::presence_owner(chat.user, shard.shard_count());
    shard.send_to(owner, crate::shard::msg::ShardMsg::PresenceDown(chat.user));
}

/// Serializes a reply payload.
pub fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

/// Emits `event` with `payload` to the socket and, when the request carried an ack id, calls the
/// ack with the same payload.
pub fn reply(conn: &Conn, event: &str, payload: &[u8], ack: Option<u64>) {
    conn.push(emit::event(NSP, event, payload));
    if let Some(id) = ack {
        conn.push(emit::ack(NSP, id, payload));
    }
    metrics::counter!(crate::telemetry::EVENTS_OUT, crate::telemetry::LABEL_EVENT => crate::telemetry::event_label(event)).increment(1);
}

/// `error {event, error, message}` for requests without an error event of their own.
pub fn reply_error(conn: &Conn, event: &str, err: &ChatError, ack: Option<u64>) {
    #[derive(Serialize)]
    struct ErrorJson<'a> {
        event: &'a str,
        error: &'static str,
        message: &'a str,
    }
    metrics::counter!(crate::telemetry::ERRORS, crate::telemetry::LABEL_CODE => err.code.as_str())
        .increment(1);
    let body = json(&ErrorJson {
        event,
        error: err.code.as_str(),
        message: &err.message,
    });
    reply(conn, "error", &body, ack);
}

/// Runs `f` on the chat state of socket `local` of `conn`.
pub fn with_socket<R>(conn: &Conn, local: u64, f: impl FnOnce(&mut ChatSocket) -> R) -> Option<R> {
    let mut st = conn.state.borrow_mut();
    let slot = st.sockets.iter_mut().find(|s| s.local == local)?;
    slot.chat.as_deref_mut().map(f)
}

/// Dispatches a `/chat` event decoded by the full decoder (binary events).
pub async fn on_event(shard: &Rc<Shard>, conn: &Rc<Conn>, local: u64, packet: Packet) {
    let Some(name) = packet.event_name() else {
        return;
    };
    let null = Value::Static(simd_json::StaticNode::Null);
    let args = crate::sio::event_args(&packet);
    let payload = args.first().unwrap_or(&null);
    route(shard, conn, local, name, packet.id, payload).await;
}

/// Dispatches a `/chat` event from the fast decode path: `message:send` deserializes its typed
/// payload straight from the frame's bytes; the other events read their argument as a value here.
pub async fn on_raw_event(shard: &Rc<Shard>, conn: &Rc<Conn>, local: u64, event: &RawEvent) {
    let Some(name) = event.name() else {
        return;
    };
    let max_depth = shard.shared.protocol.socket.max_json_depth;
    if name == "message:send" {
        let Some(user) = with_socket(conn, local, |c| c.user) else {
            return;
        };
        let ctx = Ctx {
            shard,
            conn,
            local,
            user,
            ack: event.id(),
        };
        return message::send_raw(&ctx, event, max_depth).await;
    }
    let payload = event
        .arg_value(0, max_depth)
        .unwrap_or(Value::Static(simd_json::StaticNode::Null));
    route(shard, conn, local, name, event.id(), &payload).await;
}

/// Runs the handler of event `name` with its first argument.
async fn route(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    local: u64,
    name: &str,
    ack: Option<u64>,
    payload: &Value,
) {
    let Some(user) = with_socket(conn, local, |c| c.user) else {
        return;
    };
    let ctx = Ctx {
        shard,
        conn,
        local,
        user,
        ack,
    };
    // Every event counts against the socket's limiter; `message:send` checks after parsing so
    // its `message:error` can carry the tempId.
    if name != "message:send" && !within_rate(conn, local) {
        return reply_rate_limited(&ctx, name, payload);
    }
    match name {
        "conversation:join" => conversation::join(&ctx, payload).await,
        "conversation:leave" => conversation::leave(&ctx, payload),
        "message:send" => message::send(&ctx, payload).await,
        "message:read" => read::read(&ctx, payload).await,
        "typing:start" => typing::on_typing(&ctx, payload, true),
        "typing:stop" => typing::on_typing(&ctx, payload, false),
        "user:check:online" => presence::check_online(&ctx, payload).await,
        other => {
            let err = ChatError::bad_request(format!("unknown event {other:?}"));
            let event = other.to_owned();
            reply_error(conn, &event, &err, ack);
        }
    }
}

/// Takes one token from the socket's limiter; true when the event may proceed.
pub fn within_rate(conn: &Conn, local: u64) -> bool {
    with_socket(conn, local, |c| {
        c.limiter.as_ref().is_none_or(|l| l.check())
    }) != Some(false)
}

/// The over-the-limit answer of each event: its own error reply with `rate_limited`; typing has
/// no reply, so it is dropped and counted. The socket stays connected.
fn reply_rate_limited(ctx: &Ctx<'_>, name: &str, payload: &Value) {
    let err = ChatError::new(Code::RateLimited, "too many events, slow down");
    match name {
        "typing:start" | "typing:stop" => {
            metrics::counter!(crate::telemetry::RATE_LIMITED_DROPS, crate::telemetry::LABEL_EVENT => crate::telemetry::event_label(name)).increment(1);
        }
        "conversation:join" | "message:read" => {
            conversation::reply_conversation_error(ctx, payload, &err);
        }
        other => {
            let event = other.to_owned();
            reply_error(ctx.conn, &event, &err, ctx.ack);
        }
    }
}

/// What every handler gets.
pub struct Ctx<'a> {
    /// The shard.
    pub shard: &'a Rc<Shard>,
    /// The connection.
    pub conn: &'a Rc<Conn>,
    /// The socket's shard-local number.
    pub local: u64,
    /// The socket's user.
    pub user: UserKey,
    /// The request's ack id.
    pub ack: Option<u64>,
}
