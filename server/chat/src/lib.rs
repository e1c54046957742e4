//! chatwire's chat rules: the `/chat` namespace of the contract (sections 2-4), with no sockets
//! and no runtime. An event comes in, its family parses the payload, applies the rules (asking
//! the store where it must) and returns [`Effect`]s: frames for the calling socket, joins and
//! leaves of conversation rooms, broadcasts to a room except the caller, a message to store,
//! a typing timer to arm, a presence question. The server's shard that owns the socket carries
//! them out; tests need no socket at all.
//!
//! One module per event family, each with parse / apply / reply in one place:
//! [`conversation`] (join, leave), [`message`] (send, and the frames of a committed message),
//! [`read`], [`typing`], [`presence`]. [`Chat::on_event`] routes by event name. A new event is
//! one new module here plus, when it stores something, one store method.
//!
//! Errors map to reply events in one place per family (`conversation:error`, `message:error`,
//! else `error`), from the single [`error::ChatError`].

pub mod conversation;
pub mod error;
pub mod id;
pub mod message;
pub mod payload;
pub mod presence;
pub mod read;
pub mod recovery;
pub mod telemetry;
pub mod typing;
pub mod validate;

use ahash::{HashMap, HashSet};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use chatwire_protocol::json::Value;
use chatwire_protocol::socket::{RawEvent, TextFrame, emit};
use chatwire_store::{AnyStore, NewMessage, Profile, Store, UserKey};
use serde::Serialize;
use smallvec::SmallVec;

use error::{ChatError, Code};

/// The namespace of the chat application.
pub const NSP: &str = "/chat";

/// Entries kept in each per-shard cache before it is cleared (bounds memory).
const CACHE_LIMIT: usize = 200_000;

/// Settings of the chat rules.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// `MAX_MESSAGE_CHARS`: longest message text, in characters.
    pub max_message_chars: usize,
    /// Deepest JSON accepted in an event argument.
    pub max_json_depth: usize,
}

/// What the calling socket's shard must do after an event. Every effect concerns the calling
/// socket or its conversation's room; the shard knows which socket that is.
#[derive(Debug)]
pub enum Effect {
    /// Write this frame to the calling socket.
    Emit(TextFrame),
    /// Add the calling socket to `conversation:<id>`.
    Join {
        /// The conversation.
        conversation_id: i64,
    },
    /// Remove the calling socket from `conversation:<id>`.
    Leave {
        /// The conversation.
        conversation_id: i64,
    },
    /// Send this frame to `conversation:<id>` except the calling socket.
    Broadcast {
        /// The conversation.
        conversation_id: i64,
        /// The frame, encoded once.
        frame: TextFrame,
    },
    /// Store this message; the sender is answered when it is committed ([`message::committed`])
    /// or has failed ([`message::failed`]).
    Store {
        /// The validated message.
        message: Box<NewMessage>,
        /// The conversation's participants (for the notification after the commit).
        participants: Arc<[UserKey]>,
        /// The request's ack id.
        ack: Option<u64>,
    },
    /// Call [`Chat::typing_due`] for this conversation at `at` (the typist's 6 s auto-stop).
    TypingTimer {
        /// The conversation.
        conversation_id: i64,
        /// When.
        at: Instant,
    },
    /// Ask the cluster whether `user` is online, then answer with [`presence::status`].
    CheckOnline {
        /// The user asked about.
        user: UserKey,
        /// The request's ack id.
        ack: Option<u64>,
    },
}

/// The effects of one event (most events have one to three).
pub type Effects = SmallVec<[Effect; 4]>;

/// Per-socket chat state, kept by the shard that owns the socket.
#[derive(Debug)]
pub struct ChatSocket {
    /// The authenticated user.
    pub user: UserKey,
    /// Conversations whose room this socket joined.
    pub rooms: SmallVec<[i64; 2]>,
    /// Conversations this socket is typing in, with when its typing ends (6 s after the last
    /// `typing:start`).
    pub typing: SmallVec<[(i64, Instant); 1]>,
}

impl ChatSocket {
    /// A socket of `user` in no room.
    pub fn new(user: UserKey) -> ChatSocket {
        ChatSocket {
            user,
            rooms: SmallVec::new(),
            typing: SmallVec::new(),
        }
    }
}

/// The chat rules of one shard: the store and per-shard caches (single thread, no locks).
pub struct Chat {
    /// The store (shared by every shard).
    store: Arc<AnyStore>,
    /// Settings.
    config: ChatConfig,
    /// Conversation -> participants (they never change after creation).
    participants: RefCell<HashMap<i64, Arc<[UserKey]>>>,
    /// Users already created in the store by this shard.
    known_users: RefCell<HashSet<UserKey>>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Chat {
    /// The rules over `store`.
    pub fn new(store: Arc<AnyStore>, config: ChatConfig) -> Chat {
        Chat {
            store,
            config,
            participants: RefCell::default(),
            known_users: RefCell::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<AnyStore> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// Participants of a conversation (cached); `not_found` when it does not exist.
    pub async fn participants(&self, conversation_id: i64) -> Result<Arc<[UserKey]>, ChatError> {
        if let Some(p) = self.participants.borrow().get(&conversation_id) {
            return Ok(p.clone());
        }
        match self.store.participants(conversation_id).await? {
            Some(p) => {
                let mut map = self.participants.borrow_mut();
                if map.len() >= CACHE_LIMIT {
                    map.clear();
                }
                map.insert(conversation_id, p.clone());
                Ok(p)
            }
            None => Err(ChatError::new(Code::NotFound, "conversation not found")),
        }
    }

    /// Participants, checked to include `user`: `forbidden` otherwise.
    pub async fn check_participant(
        &self,
        conversation_id: i64,
        user: UserKey,
    ) -> Result<Arc<[UserKey]>, ChatError> {
        let p = self.participants(conversation_id).await?;
        if p.contains(&user) {
            Ok(p)
        } else {
            Err(ChatError::new(
                Code::Forbidden,
                "not a participant of this conversation",
            ))
        }
    }

    /// A `/chat` CONNECT of an authenticated user: creates the user on first sight (profile
    /// claims update it). Err = the CONNECT_ERROR message.
    pub async fn connect(
        &self,
        user: UserKey,
        profile: Option<Profile>,
    ) -> Result<ChatSocket, &'static str> {
        let known = self.known_users.borrow().contains(&user);
        if !known || profile.is_some() {
            if let Err(e) = self.store.ensure_user(user, profile).await {
                tracing::warn!(error = %e, "ensure_user failed");
                return Err("unavailable");
            }
            let mut known = self.known_users.borrow_mut();
            if known.len() >= CACHE_LIMIT {
                known.clear();
            }
            known.insert(user);
        }
        Ok(ChatSocket::new(user))
    }

    /// `connection:success {userId, userType, socketId}`, the first frame of a chat socket.
    pub fn connected(user: UserKey, socket_id: &str) -> TextFrame {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Success<'a> {
            user_id: i64,
            user_type: &'static str,
            socket_id: &'a str,
        }
        event_frame(
            "connection:success",
            &json(&Success {
                user_id: user.id,
                user_type: user.user_type.as_str(),
                socket_id,
            }),
        )
    }

    /// The socket is gone: `typing:stop` where it was typing, then leave its rooms. Its typing
    /// and rooms are emptied, so a timer still armed finds nothing to do.
    pub fn disconnected(socket: &RefCell<ChatSocket>) -> Effects {
        let mut s = socket.borrow_mut();
        let mut fx = Effects::new();
        for (conv, _) in std::mem::take(&mut s.typing) {
            fx.push(typing::broadcast(conv, s.user, false));
        }
        for conv in std::mem::take(&mut s.rooms) {
            fx.push(Effect::Leave {
                conversation_id: conv,
            });
        }
        fx
    }

    /// An event decoded by the full decoder (binary events, or anything the fast path passed
    /// on): its first argument as a value. `within_rate` is the socket's rate limiter's verdict.
    pub async fn on_event(
        &self,
        socket: &RefCell<ChatSocket>,
        name: &str,
        ack: Option<u64>,
        payload: &Value,
        within_rate: bool,
        now: Instant,
    ) -> Effects {
        let user = socket.borrow().user;
        let ev = Event {
            chat: self,
            socket,
            user,
            ack,
            now,
        };
        // `message:send` checks the limit after parsing, so its error can carry the tempId.
        if name != "message:send" && !within_rate {
            return rate_limited(name, payload, ack);
        }
        match name {
            "conversation:join" => conversation::join(&ev, payload).await,
            "conversation:leave" => conversation::leave(&ev, payload),
            "message:send" => message::send(&ev, payload, within_rate).await,
            "message:read" => read::read(&ev, payload).await,
            "typing:start" => typing::on_typing(&ev, payload, true),
            "typing:stop" => typing::on_typing(&ev, payload, false),
            "user:check:online" => presence::check_online(&ev, payload).await,
            other => {
                let err = ChatError::bad_request(format!("unknown event {other:?}"));
                error_reply(other, &err, ack)
            }
        }
    }

    /// An event from the fast decode path: `message:send` deserializes its typed payload
    /// straight from the frame's bytes; other events read their argument as a value.
    pub async fn on_raw_event(
        &self,
        socket: &RefCell<ChatSocket>,
        event: &RawEvent,
        within_rate: bool,
        now: Instant,
    ) -> Effects {
        let Some(name) = event.name() else {
            return Effects::new();
        };
        if name == "message:send" {
            let user = socket.borrow().user;
            let ev = Event {
                chat: self,
                socket,
                user,
                ack: event.id(),
                now,
            };
            return message::send_raw(&ev, event, within_rate).await;
        }
        let payload = event
            .arg_value(0, self.config.max_json_depth)
            .unwrap_or(Value::Static(simd_json::StaticNode::Null));
        self.on_event(socket, name, event.id(), &payload, within_rate, now)
            .await
    }

    /// A typing timer armed by [`Effect::TypingTimer`] is due: stops typing (with `typing:stop`)
    /// when no later `typing:start` moved the deadline, else says when to check again.
    pub fn typing_due(
        socket: &RefCell<ChatSocket>,
        conversation_id: i64,
        now: Instant,
    ) -> TypingDue {
        typing::due(socket, conversation_id, now)
    }

    /// True when `a` and `b` are participants of one conversation (a store error reads as no).
    pub async fn shares_conversation(&self, a: UserKey, b: UserKey) -> bool {
        let Ok(conversations) = self.store.conversations_of(a).await else {
            return false;
        };
        for conv in conversations {
            if let Ok(p) = self.participants(conv).await
                && p.contains(&b)
            {
                return true;
            }
        }
        false
    }

    /// Online users who share a conversation with `user` (for `user:online` / `user:offline`).
    pub async fn partners(&self, user: UserKey) -> Result<Arc<[UserKey]>, ChatError> {
        let conversations = self.store.conversations_of(user).await?;
        let mut partners: HashSet<UserKey> = HashSet::default();
        for conv in conversations {
            if let Ok(p) = self.participants(conv).await {
                partners.extend(p.iter().copied().filter(|u| *u != user));
            }
        }
        Ok(partners.into_iter().collect())
    }
}

/// What a due typing timer found.
#[derive(Debug)]
pub enum TypingDue {
    /// Typing was stopped: carry out this `typing:stop` broadcast.
    Stopped(Effect),
    /// A later `typing:start` moved the deadline: check again then.
    Later(Instant),
    /// Not typing there any more (stopped by hand, left, sent a message).
    Done,
}

/// What every handler gets.
pub(crate) struct Event<'a> {
    /// The rules and caches.
    pub(crate) chat: &'a Chat,
    /// The calling socket's state (borrowed briefly, never across an await).
    pub(crate) socket: &'a RefCell<ChatSocket>,
    /// The socket's user.
    pub(crate) user: UserKey,
    /// The request's ack id.
    pub(crate) ack: Option<u64>,
    /// When the event arrived.
    pub(crate) now: Instant,
}

/// The room of a conversation.
pub fn room_name(conversation_id: i64) -> Arc<str> {
    with_room_name(conversation_id, |room| Arc::from(room))
}

/// Calls `f` with the room of a conversation, spelled on the stack (no allocation): for a room
/// that is only looked at, such as its owner shard.
pub fn with_room_name<R>(conversation_id: i64, f: impl FnOnce(&str) -> R) -> R {
    const PREFIX: &[u8] = b"conversation:";
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(conversation_id).as_bytes();
    // "conversation:" and at most 20 characters of an i64.
    let mut buf = [0u8; 13 + 20];
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let end = PREFIX.len() + digits.len();
    buf[PREFIX.len()..end].copy_from_slice(digits);
    // Both parts are ASCII.
    f(std::str::from_utf8(&buf[..end]).unwrap_or_default())
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

/// Serializes a payload.
pub fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

/// `42/chat,["<event>",<payload>]`.
pub fn event_frame(event: &str, payload: &[u8]) -> TextFrame {
    emit::event(NSP, event, payload)
}

/// `43/chat,<id>[<payload>]`.
pub fn emit_ack(id: u64, payload: &[u8]) -> TextFrame {
    emit::ack(NSP, id, payload)
}

/// `event` with `payload` to the caller and, when the request carried an ack id, the ack with
/// the same payload.
pub fn reply(event: &'static str, payload: &[u8], ack: Option<u64>) -> Effects {
    let mut fx = Effects::new();
    push_reply(&mut fx, event, payload, ack);
    fx
}

/// Appends a reply (event, then ack) to `fx`.
pub fn push_reply(fx: &mut Effects, event: &str, payload: &[u8], ack: Option<u64>) {
    fx.push(Effect::Emit(event_frame(event, payload)));
    if let Some(id) = ack {
        fx.push(Effect::Emit(emit_ack(id, payload)));
    }
    telemetry::count_event(telemetry::EVENTS_OUT, event);
}

/// `error {event, error, message}` for requests without an error event of their own.
pub fn error_reply(event: &str, err: &ChatError, ack: Option<u64>) -> Effects {
    #[derive(Serialize)]
    struct ErrorJson<'a> {
        event: &'a str,
        error: &'static str,
        message: &'a str,
    }
    telemetry::count_error(err.code);
    let body = json(&ErrorJson {
        event,
        error: err.code.as_str(),
        message: &err.message,
    });
    reply("error", &body, ack)
}

/// The over-the-limit answer of each event: its own error reply with `rate_limited`; typing has
/// no reply, so it is dropped and counted. The socket stays connected.
fn rate_limited(name: &str, payload: &Value, ack: Option<u64>) -> Effects {
    let err = ChatError::new(Code::RateLimited, "too many events, slow down");
    match name {
        "typing:start" | "typing:stop" => {
            metrics::counter!(telemetry::RATE_LIMITED_DROPS, telemetry::LABEL_EVENT => telemetry::event_label(name)).increment(1);
            Effects::new()
        }
        "conversation:join" | "message:read" => conversation::error_reply(payload, &err, ack),
        other => error_reply(other, &err, ack),
    }
}

#[cfg(test)]
mod chat_tests;
