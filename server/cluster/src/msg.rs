//! [`ClusterMsg`]: what one shard asks of the shard that owns a room or a user's presence.
//! The server carries these over its bounded shard channels; each variant is small (frames and
//! user lists are shared, large parts boxed).

use std::sync::Arc;

use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::rooms::{Member, RoomName, SocketKey};

/// A committed message on its way to its room's owner (see [`crate::Adapter::publish`]).
#[derive(Debug)]
pub struct Published {
    /// The message's id.
    pub id: i64,
    /// The conversation's previous message id (0: none), when the store knows it exactly
    /// (`chatwire_store::Stored::prev`): other nodes' room owners release this message as soon
    /// as that one is out (see [`crate::order`]).
    pub prev: Option<i64>,
    /// The conversation's room.
    pub room: RoomName,
    /// `message:new`, encoded once.
    pub new_frame: TextFrame,
    /// `message:notification`, encoded only for a participant outside the room, and then once.
    pub notification: OnDemand,
    /// The conversation's participants (known before the commit: no lookup after it).
    pub participants: Arc<[UserKey]>,
    /// The sender, who never gets a notification for their own message.
    pub sender: UserKey,
    /// The sending socket: excluded from `message:new`, and the target of `reply`.
    pub sender_socket: Option<SocketKey>,
    /// The sender's `message:sent` (+ ack) frames, delivered after `message:new` from the same
    /// owner, so the sender sees the conversation in id order too. Empty for REST sends.
    pub reply: Vec<TextFrame>,
}

/// A frame encoded only if it is sent (see [`Published::notification`]).
pub struct OnDemand(Box<dyn Fn() -> TextFrame + Send>);

impl OnDemand {
    /// A frame `build` encodes, each time [`OnDemand::frame`] asks for it.
    pub fn new(build: impl Fn() -> TextFrame + Send + 'static) -> Self {
        OnDemand(Box::new(build))
    }

    /// A frame already encoded.
    pub fn ready(frame: TextFrame) -> Self {
        OnDemand::new(move || frame.clone())
    }

    /// The frame.
    pub fn frame(&self) -> TextFrame {
        (self.0)()
    }
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDemand(..)")
    }
}

/// A `/chat` socket of a shard, as other nodes see it.
#[derive(Debug, Clone)]
pub struct LocalSocket {
    /// Shard-local socket number.
    pub local: u64,
    /// The `socket.id` its client sees.
    pub id: String,
    /// Its authenticated user.
    pub user: Option<UserKey>,
    /// What its connection's handshake told the server (None when unknown).
    pub handshake: Option<HandshakeFacts>,
}

/// The facts of a connection's Engine.IO handshake that `fetchSockets()` shows other nodes
/// (Socket.IO's `socket.handshake`). Kept per connection, so it holds no heap: the url and
/// query are rebuilt from the transport, the date string from `issued_ms`. Request headers and
/// the CONNECT's `auth` (which carries the token) are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeFacts {
    /// When the handshake was served (Unix milliseconds).
    pub issued_ms: i64,
    /// The client's address as the server saw it (the TCP peer).
    pub address: std::net::IpAddr,
    /// The handshake request carried an `Origin` header (Socket.IO's `xdomain`).
    pub xdomain: bool,
    /// Served over TLS.
    pub secure: bool,
    /// The handshake's transport: WebSocket (true) or polling.
    pub websocket: bool,
}

/// One shard's answer to [`ClusterMsg::Inspect`].
#[derive(Debug, Default)]
pub struct ShardView {
    /// The answering shard.
    pub shard: u16,
    /// Its `/chat` sockets.
    pub sockets: Vec<LocalSocket>,
    /// The rooms it owns and their members.
    pub rooms: Vec<(RoomName, Vec<Member>)>,
}

/// What [`ClusterMsg::EmitWithAck`] carries.
#[derive(Debug)]
pub struct AckEmit {
    /// Shard-local socket numbers.
    pub sockets: Vec<u64>,
    /// The event name.
    pub event: String,
    /// The arguments as JSON, comma-separated (what follows the name in the array).
    pub args: String,
    /// How long to wait for the acks.
    pub timeout: std::time::Duration,
    /// Where each client's first ack argument goes (JSON text).
    pub reply: flume::Sender<String>,
}

/// Messages between shards about rooms and presence.
#[derive(Debug)]
pub enum ClusterMsg {
    /// Add a member to a room owned here.
    Join {
        /// Room name.
        room: RoomName,
        /// New member.
        member: Member,
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
        frame: TextFrame,
        /// Socket that must not receive it (the emitter).
        except: Option<SocketKey>,
    },
    /// A committed message for a room owned here.
    Publish(Box<Published>),
    /// Write a frame to these local sockets.
    Deliver {
        /// The shared frame.
        frame: TextFrame,
        /// Shard-local socket numbers.
        sockets: Vec<u64>,
    },
    /// Write a frame to every local chat socket of these users.
    DeliverToUsers {
        /// The shared frame.
        frame: TextFrame,
        /// Target users.
        users: Arc<[UserKey]>,
    },
    /// One more socket of a user whose presence is owned here.
    PresenceUp(UserKey),
    /// One socket less of a user whose presence is owned here.
    PresenceDown(UserKey),
    /// Another node's view of a user whose presence is owned here changed the cluster-wide
    /// state: announce it to the user's partners with sockets here.
    PresenceAnnounce {
        /// The user.
        user: UserKey,
        /// Online anywhere now.
        online: bool,
    },
    /// Another node committed a message in a room owned here: `message:notification` to these
    /// users unless they have a socket in the room on this node.
    NotifyAbsent {
        /// The conversation's room.
        room: RoomName,
        /// The message's id (None: the committing node did not say).
        id: Option<i64>,
        /// Participants other than the sender.
        users: Arc<[UserKey]>,
        /// The encoded notification.
        frame: TextFrame,
    },
    /// Another node says `user`'s last socket there left a conversation room owned here,
    /// after that node had delivered the room's messages up to `seen` (None: not known): the
    /// notifications held back from the user since are due (see [`crate::recheck`]).
    LeftElsewhere {
        /// The conversation's room.
        room: RoomName,
        /// The user.
        user: UserKey,
        /// The newest message id the other node had handed the room when the user left.
        seen: Option<i64>,
    },
    /// Describe this shard's sockets and the rooms it owns (requests from other nodes).
    Inspect(flume::Sender<ShardView>),
    /// Disconnect these local `/chat` sockets (a request from another node).
    DisconnectLocal {
        /// Shard-local socket numbers.
        sockets: Vec<u64>,
        /// Close the whole connection rather than the namespace socket.
        close: bool,
    },
    /// Another node's `message:new` for a conversation room owned here (delivered in id order
    /// with this node's own, see [`crate::order`]).
    RemoteMessage {
        /// The conversation's room.
        room: RoomName,
        /// The message's id.
        id: i64,
        /// The conversation's previous id, when the committing node sent it (chatwire nodes
        /// on PostgreSQL); None from Node nodes and emitters.
        prev: Option<i64>,
        /// The committing node.
        node: Arc<str>,
        /// The encoded `message:new`.
        frame: TextFrame,
    },
    /// Emit an event asking each of these local sockets for an ack (a Node node's
    /// `timeout().emitWithAck()`); each client's first ack argument goes to `reply` as JSON.
    EmitWithAck(Box<AckEmit>),
    /// Is this user (owned here) online?
    PresenceQuery {
        /// The user.
        user: UserKey,
        /// Answer.
        reply: tokio::sync::oneshot::Sender<bool>,
    },
}

impl ClusterMsg {
    /// True for messages whose loss would corrupt state rather than miss one frame (membership
    /// and presence counts): an overloaded shard must queue these, never drop them.
    pub fn must_not_drop(&self) -> bool {
        matches!(
            self,
            ClusterMsg::Join { .. }
                | ClusterMsg::Leave { .. }
                | ClusterMsg::PresenceUp(_)
                | ClusterMsg::PresenceDown(_)
        )
    }
}
