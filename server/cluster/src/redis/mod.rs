//! [`RedisAdapter`]: several nodes through Redis pub/sub, wire-compatible with
//! `@socket.io/redis-adapter` 8.3 (so Node socket.io nodes and `@socket.io/redis-emitter` share
//! rooms with chatwire nodes).
//!
//! Local delivery is exactly [`LocalAdapter`]'s (same shards, no extra hop). In addition each
//! broadcast and each committed message is queued once (bounded, never waits) for the Redis task,
//! a thread of its own that PUBLISHes it once, pipelined with whatever else is queued, and that
//! receives other nodes' broadcasts, requests and presence and injects them into the shards
//! through an [`Injector`]. Channels (`<p>` = key prefix, `socket.io` by default; `<nsp>` =
//! `/chat`):
//!
//! - `<p>#<nsp>#<room>#` (one room) or `<p>#<nsp>#`: broadcasts, msgpack
//!   `[uid, {type: 2, data, nsp}, {rooms, except, flags}]`; received by PSUBSCRIBE `<p>#<nsp>#*`.
//!   A committed message's `flags` carry `chatwirePrev`, its conversation's previous id (Node
//!   nodes ignore unknown flags; see [`wire::Flags`]);
//! - `<p>-request#<nsp>#` / `<p>-response#<nsp>#`: the adapter's requests and answers;
//! - `<p>-chatwire#<nsp>#`: chatwire's own presence, conversation rooms (which users have a
//!   socket in which conversation room on which node, see [`rooms`]) and notifications (no
//!   Socket.IO adapter listens there).

mod handshake;
mod presence;
pub mod rooms;
mod task;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::adapter::{Adapter, LocalAdapter, Online};
use crate::mesh::{Injector, Mesh};
use crate::msg::{ClusterMsg, OnDemand, Published};
use crate::presence::presence_owner;
use crate::rooms::{Member, RoomName, SocketKey, room_owner};

pub use presence::{Change, ClusterPresence};
pub use rooms::ClusterRooms;

/// Gauge: 1 while the Redis connections are up.
pub const REDIS_CONNECTED: &str = "chatwire_redis_connected";
/// Counter: messages dropped, by `reason` (oversize, malformed, unsupported, queue_full,
/// disconnected, shard_full, room_cap).
pub const REDIS_DROPPED: &str = "chatwire_redis_dropped_total";
/// Counter: PUBLISH commands sent.
pub const REDIS_PUBLISHED: &str = "chatwire_redis_published_total";
/// Counter: messages received from other nodes and applied.
pub const REDIS_RECEIVED: &str = "chatwire_redis_received_total";

/// Settings of the Redis adapter.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/`.
    pub url: String,
    /// Channel prefix (`socket.io`, like `@socket.io/redis-adapter`'s `key`).
    pub prefix: String,
    /// The namespace shared with other nodes.
    pub nsp: String,
    /// Messages waiting for the Redis task; past it, new ones are dropped and counted.
    pub queue: usize,
    /// Largest message accepted from Redis, in bytes.
    pub max_message: usize,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// A node silent this long is dead: its users go offline.
    pub node_timeout: Duration,
    /// Most (conversation, user) pairs kept of the cluster's conversation rooms (this node's
    /// and the others', ~32 bytes each); past it, new ones are dropped and counted.
    pub max_room_pairs: usize,
}

impl RedisConfig {
    /// Defaults for `url`: prefix `socket.io`, namespace `/chat`, 16,384 queued messages,
    /// 1 MiB messages, heartbeat 2 s, node timeout 10 s, 1,048,576 room pairs.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "socket.io".to_owned(),
            nsp: "/chat".to_owned(),
            queue: 16_384,
            max_message: 1 << 20,
            heartbeat: Duration::from_secs(2),
            node_timeout: Duration::from_secs(10),
            max_room_pairs: 1 << 20,
        }
    }

    /// With another channel prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn broadcast_channel(&self) -> String {
        format!("{}#{}#", self.prefix, self.nsp)
    }
    fn request_channel(&self) -> String {
        format!("{}-request#{}#", self.prefix, self.nsp)
    }
    fn response_channel(&self) -> String {
        format!("{}-response#{}#", self.prefix, self.nsp)
    }
    fn node_channel(&self) -> String {
        format!("{}-chatwire#{}#", self.prefix, self.nsp)
    }
}

/// What shards hand the Redis task.
#[derive(Debug)]
enum Out {
    /// A room broadcast to publish (encoded on the Redis thread); `prev`: a committed
    /// message's predecessor, for other nodes' id order.
    Broadcast {
        room: RoomName,
        frame: TextFrame,
        prev: Option<i64>,
    },
    /// A node-to-node message.
    Node(wire::NodeMsg),
    /// `message:notification` for other nodes' participants (encoded on the Redis thread).
    Notify {
        room: RoomName,
        id: i64,
        users: Vec<wire::WireUser>,
        frame: TextFrame,
    },
    /// Bytes for a channel (responses).
    Raw { channel: String, payload: Vec<u8> },
}

/// State shared by the shards (through the adapter) and the Redis task.
struct State {
    /// This node's uid on the wire.
    uid: String,
    /// Settings.
    cfg: RedisConfig,
    /// Queue to the Redis task.
    out: flume::Sender<Out>,
    /// The shards, once started.
    shards: OnceLock<Arc<dyn Injector>>,
    /// Presence over the cluster (locked on a user's first/last socket and on other nodes'
    /// presence messages, never per message).
    presence: Mutex<ClusterPresence>,
    /// Conversation rooms over the cluster: written on a user's first/last socket in a room
    /// here and on other nodes' room messages; read once per notification, by any shard at
    /// once (a shared lock: notifications never wait for each other).
    rooms: RwLock<ClusterRooms>,
    /// Rooms other nodes made sockets join, left when the socket goes.
    joined: Mutex<HashMap<SocketKey, Vec<RoomName>>>,
    /// Redis reachable.
    connected: AtomicBool,
}

impl State {
    fn enqueue(&self, out: Out) {
        if self.out.try_send(out).is_err() {
            metrics::counter!(REDIS_DROPPED, "reason" => "queue_full").increment(1);
        }
    }

    fn presence(&self) -> std::sync::MutexGuard<'_, ClusterPresence> {
        self.presence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rooms(&self) -> std::sync::RwLockWriteGuard<'_, ClusterRooms> {
        self.rooms
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rooms_read(&self) -> std::sync::RwLockReadGuard<'_, ClusterRooms> {
        self.rooms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The Redis adapter (see the module docs).
#[derive(Clone)]
pub struct RedisAdapter {
    /// Local delivery.
    local: LocalAdapter,
    /// Shared with the Redis task.
    state: Arc<State>,
}

impl std::fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("uid", &self.state.uid)
            .field("prefix", &self.state.cfg.prefix)
            .finish_non_exhaustive()
    }
}

/// A random node uid (12 hex digits).
fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

impl RedisAdapter {
    /// Starts the Redis task (its own thread; it connects, and reconnects, by itself).
    pub fn start(cfg: RedisConfig) -> std::io::Result<Self> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let (tx, rx) = flume::bounded(cfg.queue.max(1));
        let state = Arc::new(State {
            uid: new_uid(),
            rooms: RwLock::new(ClusterRooms::new(cfg.max_room_pairs)),
            cfg,
            out: tx,
            shards: OnceLock::new(),
            presence: Mutex::default(),
            joined: Mutex::default(),
            connected: AtomicBool::new(false),
        });
        metrics::gauge!(REDIS_CONNECTED).set(0.0);
        let st = state.clone();
        std::thread::Builder::new()
            .name("chatwire-redis".to_owned())
            .spawn(move || task::run(st, client, rx))?;
        Ok(RedisAdapter {
            local: LocalAdapter,
            state,
        })
    }

    /// This node's uid on the wire.
    pub fn uid(&self) -> &str {
        &self.state.uid
    }

    /// True while Redis is reachable.
    pub fn connected(&self) -> bool {
        self.state.connected.load(Ordering::Relaxed)
    }
}

impl Adapter for RedisAdapter {
    fn join(&self, mesh: &dyn Mesh, room: RoomName, member: Member) {
        self.local.join(mesh, room, member);
    }

    fn leave(&self, mesh: &dyn Mesh, room: RoomName, socket: SocketKey) {
        self.local.leave(mesh, room, socket);
    }

    fn broadcast(
        &self,
        mesh: &dyn Mesh,
        room: RoomName,
        frame: TextFrame,
        except: Option<SocketKey>,
    ) {
        self.state.enqueue(Out::Broadcast {
            room: room.clone(),
            frame: frame.clone(),
            prev: None,
        });
        self.local.broadcast(mesh, room, frame, except);
    }

    fn publish(&self, mesh: &dyn Mesh, mut message: Published) {
        self.state.enqueue(Out::Broadcast {
            room: message.room.clone(),
            frame: message.new_frame.clone(),
            prev: message.prev,
        });
        let users: Vec<wire::WireUser> = message
            .participants
            .iter()
            .filter(|u| **u != message.sender)
            .map(|u| wire::WireUser::from(*u))
            .collect();
        if !users.is_empty() {
            // Encoded once: the local publish below reuses it for this node's absent users.
            let frame = message.notification.frame();
            message.notification = OnDemand::ready(frame.clone());
            self.state.enqueue(Out::Notify {
                room: message.room.clone(),
                id: message.id,
                users,
                frame,
            });
        }
        self.local.publish(mesh, message);
    }

    /// Presence announcements only: each node announces cluster-wide presence changes to its
    /// own sockets (see [`ClusterPresence`]), so this stays local.
    fn notify_users(&self, mesh: &dyn Mesh, users: Arc<[UserKey]>, frame: TextFrame) {
        self.local.notify_users(mesh, users, frame);
    }

    fn presence_up(&self, mesh: &dyn Mesh, user: UserKey) {
        self.local.presence_up(mesh, user);
    }

    fn presence_down(&self, mesh: &dyn Mesh, user: UserKey) {
        self.local.presence_down(mesh, user);
    }

    fn check_online(&self, mesh: &dyn Mesh, user: UserKey) -> Online {
        let owner = presence_owner(user, mesh.shard_count());
        if owner == usize::from(mesh.index()) {
            return Online::Now(mesh.is_online_here(user) || self.state.presence().is_online(user));
        }
        if self.state.presence().is_online(user) {
            return Online::Now(true);
        }
        self.local.check_online(mesh, user)
    }

    fn cluster_connected(&self) -> Option<bool> {
        Some(self.connected())
    }

    fn attach(&self, shards: Arc<dyn Injector>) {
        let _ = self.state.shards.set(shards);
    }

    fn local_presence(&self, user: UserKey, online: bool) -> bool {
        let announce = self.state.presence().local_change(user, online);
        self.state.enqueue(Out::Node(wire::NodeMsg::Presence {
            node: self.state.uid.clone(),
            user: user.into(),
            online,
        }));
        announce
    }

    /// A user's first socket here joined a conversation room or its last one left: kept for
    /// this node's snapshots and told to the other nodes.
    fn room_user_changed(&self, room: &str, user: UserKey, present: bool, seen: Option<i64>) {
        let Some(conversation) = rooms::conversation_of(room) else {
            return;
        };
        match self
            .state
            .rooms()
            .local_change((conversation, user), present)
        {
            rooms::Applied::Changed => {}
            rooms::Applied::Same => return,
            rooms::Applied::Capped => {
                metrics::counter!(REDIS_DROPPED, "reason" => "room_cap").increment(1);
                return;
            }
        }
        self.state.enqueue(Out::Node(wire::NodeMsg::Room {
            node: self.state.uid.clone(),
            conversation,
            user: user.into(),
            in_room: present,
            seen,
        }));
    }

    /// `message:notification` goes to users in the room nowhere: drops those in it on
    /// another node.
    fn retain_absent_elsewhere(&self, room: &str, users: &mut Vec<UserKey>) -> Vec<UserKey> {
        let mut dropped = Vec::new();
        let Some(conversation) = rooms::conversation_of(room) else {
            return dropped;
        };
        let rooms = self.state.rooms_read();
        if !rooms.is_empty() {
            users.retain(|u| {
                let elsewhere = rooms.elsewhere(conversation, *u);
                if elsewhere {
                    dropped.push(*u);
                }
                !elsewhere
            });
        }
        dropped
    }

    fn socket_gone(&self, mesh: &dyn Mesh, socket: SocketKey) {
        let rooms = self
            .state
            .joined
            .lock()
            .ok()
            .and_then(|mut j| j.remove(&socket));
        for room in rooms.unwrap_or_default() {
            let owner = room_owner(&room, mesh.shard_count());
            mesh.send(owner, ClusterMsg::Leave { room, socket });
        }
    }
}
