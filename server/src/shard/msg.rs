//! `ShardMsg`: everything one shard asks of another, and the small typed handle used to send it.
//!
//! Shards share no mutable state; they talk only through these bounded `flume` channels. Each
//! variant is small (large payloads are `Bytes`/`Arc`/`Box`), so a full channel costs little.

use std::sync::Arc;

use bytes::Bytes;
use chatwire_protocol::engine::sid::Sid;

use crate::engine::outbox::Frame;
use crate::rooms::{Member, RoomName, SocketKey};
use crate::store::UserKey;

/// A polling request forwarded to the shard that owns its session.
#[derive(Debug)]
pub struct PollForward {
    /// The session id from the query.
    pub sid: Sid,
    /// True for POST (body carries packets), false for GET (long poll).
    pub is_post: bool,
    /// The request body (POST), already bounded by `max_payload`.
    pub body: Bytes,
    /// Where to send the HTTP response (status, body).
    pub reply: tokio::sync::oneshot::Sender<(u16, Bytes)>,
}

/// A WebSocket upgrade for a session owned by another shard: the raw TCP stream moves there.
#[derive(Debug)]
pub struct UpgradeForward {
    /// The session id from the query.
    pub sid: Sid,
    /// The TCP stream after the `101 Switching Protocols` response.
    pub stream: std::net::TcpStream,
    /// Bytes hyper read past the HTTP request (start of the first WebSocket frame).
    pub read_buf: Bytes,
}

/// A committed chat message, routed to the shard that owns its room.
#[derive(Debug)]
pub struct Committed {
    /// Conversation of the message (room `conversation:<id>`).
    pub conversation_id: i64,
    /// The sending socket, excluded from `message:new` (None for REST sends).
    pub sender_socket: Option<SocketKey>,
    /// The sender, who never gets `message:notification` for their own message.
    pub sender: UserKey,
    /// `42/chat,["message:new",{...}]`, encoded once.
    pub new_frame: Frame,
    /// `42/chat,["message:notification",{"conversationId":..,"message":{...}}]`, encoded once.
    pub notification_frame: Frame,
}

/// A reply to one socket (with optional ack), built off-shard (by the commit sink).
#[derive(Debug)]
pub struct SocketReply {
    /// Shard-local socket number.
    pub socket: u64,
    /// Event name (`message:sent` / `message:error`).
    pub event: &'static str,
    /// The JSON payload, shared by the event and the ack.
    pub payload: Bytes,
    /// Ack id of the request, if the client passed a callback.
    pub ack: Option<u64>,
    /// The conversation a successful send went to: stop the sender's typing there.
    pub stop_typing: Option<i64>,
}

/// Messages between shards.
#[derive(Debug)]
pub enum ShardMsg {
    /// A polling request for a session owned here.
    Poll(Box<PollForward>),
    /// A WebSocket for a session owned here.
    Upgrade(Box<UpgradeForward>),
    /// Close a session owned here (its client broke a limit on another shard).
    CloseSession(Sid),
    /// May a WebSocket join this (local) session to upgrade it? Starts the probe when yes.
    UpgradeCheck {
        /// The session.
        sid: Sid,
        /// Answer.
        reply: tokio::sync::oneshot::Sender<crate::http::websocket::UpgradeAnswer>,
    },
    /// Add a member to a room owned here; `participants` primes the notification cache.
    Join {
        /// Room name.
        room: RoomName,
        /// New member.
        member: Member,
        /// Participants of the conversation (chat rooms), when the joiner's shard knows them.
        participants: Option<Arc<[UserKey]>>,
    },
    /// Remove a member from a room owned here.
    Leave {
        /// Room name.
        room: RoomName,
        /// The leaving socket.
        socket: SocketKey,
    },
    /// Broadcast a frame to a room owned here, except one socket.
    Broadcast {
        /// Room name.
        room: RoomName,
        /// The frame, encoded once.
        frame: Frame,
        /// Socket that must not receive it (the emitter).
        except: Option<SocketKey>,
    },
    /// Write a frame to these local sockets.
    Deliver {
        /// The shared frame.
        frame: Frame,
        /// Shard-local socket numbers.
        sockets: Vec<u64>,
    },
    /// Write a frame to every local chat socket of these users.
    DeliverToUsers {
        /// The shared frame.
        frame: Frame,
        /// Target users.
        users: Arc<[UserKey]>,
    },
    /// One more socket of a user whose presence is owned here.
    PresenceUp(UserKey),
    /// One socket less of a user whose presence is owned here.
    PresenceDown(UserKey),
    /// Is this user (owned here) online?
    PresenceQuery {
        /// The user.
        user: UserKey,
        /// Answer.
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// A committed message for a room owned here.
    Committed(Box<Committed>),
    /// A reply for a local socket.
    Reply(Box<SocketReply>),
    /// Disconnect these local sockets: a frame for them was dropped (the sender's overflow
    /// FIFO towards this shard was full), so they must reconnect and resync.
    Disconnect(Vec<u64>),
}

/// Sending side of every shard's channel; cloned into each shard and the commit sink.
#[derive(Debug, Clone)]
pub struct ShardSet {
    /// One bounded sender per shard, by index.
    senders: Arc<[flume::Sender<ShardMsg>]>,
}

impl ShardSet {
    /// Wraps the senders.
    pub fn new(senders: Vec<flume::Sender<ShardMsg>>) -> Self {
        Self {
            senders: senders.into(),
        }
    }

    /// All senders, by shard index.
    pub fn senders_slice(&self) -> &[flume::Sender<ShardMsg>] {
        &self.senders
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// True when there are no shards (never, once started).
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Sends from a non-async context (the commit sink's writer thread): blocks while the target
    /// channel is full, which back-pressures the writer rather than dropping a committed message.
    pub fn send_blocking(&self, shard: usize, msg: ShardMsg) {
        if let Some(tx) = self.senders.get(shard)
            && tx.send(msg).is_err()
        {
            tracing::debug!(shard, "shard gone; message dropped during shutdown");
        }
    }

    /// Sends from a shard: waits while the target channel is full.
    pub async fn send(&self, shard: usize, msg: ShardMsg) {
        if let Some(tx) = self.senders.get(shard)
            && tx.send_async(msg).await.is_err()
        {
            tracing::debug!(shard, "shard gone; message dropped during shutdown");
        }
    }

    /// Sends without waiting; false when the channel is full or gone.
    pub fn try_send(&self, shard: usize, msg: ShardMsg) -> bool {
        self.senders
            .get(shard)
            .is_some_and(|tx| tx.try_send(msg).is_ok())
    }
}
