//! Shards: one named OS thread per core (`chatwire-shard-<i>`), each with a current-thread tokio
//! runtime and a `LocalSet`. A shard accepts on its own `SO_REUSEPORT` listener, owns the Engine.IO
//! sessions whose sid names it, the rooms whose name hashes to it and the presence counts of the
//! users that hash to it. Shards share nothing mutable: they talk through `ShardMsg`s on bounded
//! `flume` channels (see [`msg`]).

pub mod listener;
pub mod msg;
pub mod overflow;

use ahash::HashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use chatwire_protocol::engine::sid::Sid;
use smallvec::SmallVec;

use chatwire_chat::Chat;
use chatwire_cluster::{AckEmit, Adapter, ClusterMsg, ClusterShard, LocalSocket, Mesh, SocketKey};
use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::engine::conn::Conn;
use crate::engine::outbox::Frame;
use crate::ratelimit::KeyedRate;
use crate::shared::Shared;
use msg::{ShardMsg, ShardSet};

/// Connections per shard in their HTTP handshake at once (see `http::serve_connection`).
pub const HANDSHAKE_PERMITS: usize = 16;

/// What the layers above a shard do with what reaches it: set once, when the shard is built, by
/// the thread that runs it (so the shard itself knows no transport, session or application).
#[derive(Debug, Clone, Copy)]
pub struct Hooks {
    /// Applies a message this shard does not handle itself (polling and upgrade forwards,
    /// session closes, inline stores, disconnections).
    pub dispatch: fn(&Rc<Shard>, ShardMsg),
    /// A user whose presence this shard owns came online or went offline.
    pub presence_changed: fn(UserKey, bool),
    /// The cluster-wide presence of a user owned here changed on another node.
    pub presence_announce: fn(UserKey, bool),
    /// Disconnects local `/chat` sockets (`true`: their connections) at another node's request.
    pub disconnect: fn(&Rc<Shard>, &[u64], bool),
    /// Emits an event with acks to local sockets at another node's request.
    pub emit_with_ack: fn(&Rc<Shard>, AckEmit),
}

/// Capacity of each shard's inbound channel.
pub const SHARD_CHANNEL: usize = 65_536;

/// The state of one shard, shared by its tasks through `Rc` (single thread, no locks).
pub struct Shard {
    /// This shard's index.
    pub index: u16,
    /// Process-wide read-only state (config, store, auth, ...).
    pub shared: Arc<Shared>,
    /// Channels to every shard.
    pub set: ShardSet,
    /// Engine.IO sessions owned here, by sid.
    pub conns: RefCell<HashMap<Sid, Rc<Conn>>>,
    /// Socket.IO sockets of local connections: socket number -> connection.
    pub sockets: RefCell<HashMap<u64, Rc<Conn>>>,
    /// Local chat sockets by user (for notifications and presence fan-out).
    pub users: RefCell<HashMap<UserKey, SmallVec<[u64; 2]>>>,
    /// Client events per user over the user's connections on this shard (keyed GCRA; swept).
    pub user_events: KeyedRate<UserKey>,
    /// Rooms and presence counts owned by this shard.
    pub cluster: ClusterShard,
    /// The chat rules with this shard's caches (None in conformance mode).
    pub chat: Option<Chat>,
    /// Counter for connection and socket numbers.
    next_id: Cell<u64>,
    /// WebSocket tasks still running (graceful shutdown waits for them to write the close).
    pub ws_tasks: Cell<usize>,
    /// Bounded FIFOs for sends that found another shard's channel full.
    overflow: Rc<overflow::Overflow>,
    /// What the layers above do with messages and presence changes.
    hooks: Hooks,
    /// Permits for connections in their HTTP handshake (see `http::serve_connection`).
    pub handshakes: Arc<tokio::sync::Semaphore>,
    /// True while the message loop applies a batch of messages (synchronously): the batch's end
    /// ([`Shard::end_batch`]) writes what it queued.
    batching: Cell<bool>,
    /// WebSocket connections with frames queued and not yet written.
    dirty: RefCell<Vec<Rc<Conn>>>,
    /// The task processing a client packet ([`Shard::begin_packet`]): it writes what it queues
    /// itself when the packet is done.
    packet_task: Cell<Option<tokio::task::Id>>,
    /// Wakes [`Shard::run_flusher`]: frames were queued that no batch end will write.
    flush_soon: tokio::sync::Notify,
    /// The flusher was woken and has not run yet.
    flush_armed: Cell<bool>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// A new, empty shard.
    pub fn new(index: u16, shared: Arc<Shared>, set: ShardSet, hooks: Hooks) -> Self {
        let overflow = Rc::new(overflow::Overflow::new(set.len(), overflow::OVERFLOW_CAP));
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKE_PERMITS));
        let user_rate = shared.chat.as_ref().map_or(0, |c| c.user_rate);
        let user_events = KeyedRate::new(user_rate, user_rate.saturating_mul(2));
        // A node that shares rooms with others orders its own messages too.
        let cluster = ClusterShard::new(
            shared.adapter.cluster_connected().is_some(),
            shared.order_floor,
        );
        Self {
            overflow,
            hooks,
            handshakes,
            index,
            chat: shared
                .chat
                .as_ref()
                .map(|c| Chat::new(c.store.clone(), c.config.clone())),
            shared,
            set,
            conns: RefCell::default(),
            sockets: RefCell::default(),
            users: RefCell::default(),
            cluster,
            user_events,
            next_id: Cell::new(1),
            ws_tasks: Cell::new(0),
            batching: Cell::new(false),
            dirty: RefCell::default(),
            packet_task: Cell::new(None),
            flush_soon: tokio::sync::Notify::new(),
            flush_armed: Cell::new(false),
        }
    }

    /// The message loop starts applying a batch of messages. The batch must end
    /// ([`Shard::end_batch`]) before the loop awaits anything.
    pub fn begin_batch(&self) {
        self.batching.set(true);
    }

    /// The batch is applied: every WebSocket that got frames is written.
    pub fn end_batch(&self) {
        self.batching.set(false);
        self.write_dirty();
    }

    /// The current task starts processing a client packet: what it delivers is written when
    /// the packet is done ([`Shard::end_packet`]), in one write per connection, with no other
    /// task woken.
    pub fn begin_packet(&self) {
        self.packet_task.set(tokio::task::try_id());
    }

    /// The packet begun by the current task is done: every WebSocket with queued frames is
    /// written.
    pub fn end_packet(&self) {
        if self.packet_task.get().is_some() && self.packet_task.get() == tokio::task::try_id() {
            self.packet_task.set(None);
        }
        self.write_dirty();
    }

    /// Writes the frames queued that no batch end covers (by a REST call, a timer, or any task
    /// while another one's packet awaits the database) as soon as the task that queued them
    /// yields: nothing waits for another task. Runs for the shard's life.
    pub async fn run_flusher(&self) {
        loop {
            self.flush_soon.notified().await;
            self.flush_armed.set(false);
            self.write_dirty();
        }
    }

    /// Every WebSocket with queued frames is written once, straight from here (no task woken
    /// unless its socket was full).
    fn write_dirty(&self) {
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        if !dirty.is_empty() {
            metrics::counter!(crate::telemetry::DIRECT_WRITES).increment(dirty.len() as u64);
        }
        for conn in &dirty {
            conn.write_direct();
        }
        // Keep the list's allocation for the next batch.
        let mut list = self.dirty.borrow_mut();
        if list.is_empty() {
            let mut dirty = dirty;
            dirty.clear();
            *list = dirty;
        }
    }

    /// True when chat sockets get recoverable sessions (`RECOVERY_WINDOW` > 0).
    pub fn recovers(&self) -> bool {
        self.shared
            .chat
            .as_ref()
            .is_some_and(|c| !c.recovery_window.is_zero())
    }

    /// A fresh shard-local number (connections and sockets share the counter).
    pub fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.set.len()
    }

    /// The key of a local socket.
    pub fn socket_key(&self, local: u64) -> SocketKey {
        SocketKey {
            shard: self.index,
            local,
        }
    }

    /// Sends a message to shard `to`; a message for this shard is applied at once. Never waits:
    /// a full channel queues the send in a bounded per-target FIFO drained by one task (see
    /// [`overflow`]), so two shards can never block on each other; past the bound the message is
    /// dropped and the sockets that miss a frame are disconnected.
    pub fn send_to(self: &Rc<Self>, to: usize, msg: ShardMsg) {
        if to == usize::from(self.index) {
            self.handle(msg);
            return;
        }
        if let Some(tx) = self.set.sender(to) {
            self.overflow.send(to, tx, msg);
        }
    }

    /// The adapter every room operation goes through.
    pub fn adapter(&self) -> &dyn Adapter {
        &*self.shared.adapter
    }

    /// Writes a frame to one local socket; a full queue disconnects that client.
    pub fn deliver(&self, socket: u64, frame: Frame) {
        let conn = self.sockets.borrow().get(&socket).cloned();
        if let Some(conn) = conn {
            self.push_to(conn, frame);
        }
    }

    /// Queues a frame on a local connection, written straight from the shard: at the end of the
    /// message loop's batch or of the current task's packet, or else when the current task
    /// yields ([`Shard::run_flusher`]).
    fn push_to(&self, conn: Rc<Conn>, frame: Frame) {
        if conn.push_deferred(frame) {
            self.dirty.borrow_mut().push(conn);
            let covered = self.batching.get()
                || (self.packet_task.get().is_some()
                    && self.packet_task.get() == tokio::task::try_id());
            if !covered && !self.flush_armed.replace(true) {
                self.flush_soon.notify_one();
            }
        }
    }

    /// Writes a frame that has a place in a conversation ([`TextFrame::position`]) to a socket:
    /// through the socket's recovery cursors when it has a recoverable session (its offset
    /// appended, a repeat dropped, held back while a recovery replays), else as it is. `shared`
    /// is `frame` as an outbox frame, made once for every recipient: a recipient's offset is a
    /// tail written after it, never a copy of it.
    pub fn deliver_positioned(&self, socket: u64, frame: &TextFrame, shared: &Frame) {
        use chatwire_chat::recovery::Admitted;
        let Some(conn) = self.sockets.borrow().get(&socket).cloned() else {
            return;
        };
        let admitted = {
            let mut st = conn.state.borrow_mut();
            let cursors = st
                .sockets
                .iter_mut()
                .find(|s| s.local == socket)
                .and_then(|s| s.chat.as_mut())
                .and_then(|c| c.recovery.as_mut())
                .map(|r| &mut r.cursors);
            match cursors {
                Some(c) => c.admit_shared(frame),
                None => Admitted::AsIs,
            }
        };
        let out = match (admitted, shared) {
            (Admitted::Drop, _) => return,
            (Admitted::WithTail(tail), Frame::Text(t)) => {
                Frame::Tailed(t.clone(), bytes::Bytes::from(tail))
            }
            _ => shared.clone(),
        };
        self.push_to(conn, out);
    }

    /// Writes a frame to every local chat socket of `user`.
    pub fn deliver_to_user(&self, user: UserKey, frame: &Frame) {
        let sockets: SmallVec<[u64; 2]> = match self.users.borrow().get(&user) {
            Some(s) => s.clone(),
            None => return,
        };
        for s in sockets {
            self.deliver(s, frame.clone());
        }
    }

    /// Applies one message addressed to this shard: room and presence operations and published
    /// messages here, the rest (transports, sessions, storage) through [`Hooks::dispatch`].
    pub fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Cluster(msg) => self.cluster.handle(&**self, msg),
            ShardMsg::Publish(p) => self.adapter().publish(&**self, *p),
            other => (self.hooks.dispatch)(self, other),
        }
    }
}

impl Mesh for Shard {
    fn index(&self) -> u16 {
        self.index
    }

    fn shard_count(&self) -> usize {
        self.set.len()
    }

    fn is_online_here(&self, user: UserKey) -> bool {
        self.cluster.is_online(user)
    }

    fn send(&self, to: usize, msg: ClusterMsg) {
        if to == usize::from(self.index) {
            self.cluster.handle(self, msg);
        } else if let Some(tx) = self.set.sender(to) {
            self.overflow.send(to, tx, ShardMsg::Cluster(msg));
        }
    }

    fn deliver(&self, frame: &TextFrame, sockets: &[u64]) {
        if frame.position().is_some() && self.recovers() {
            let shared = crate::sio::emit::frame(frame.clone());
            for s in sockets {
                self.deliver_positioned(*s, frame, &shared);
            }
            return;
        }
        let frame = crate::sio::emit::frame(frame.clone());
        for s in sockets {
            self.deliver(*s, frame.clone());
        }
    }

    fn deliver_to_users(&self, frame: &TextFrame, users: &[UserKey]) {
        if frame.position().is_some() && self.recovers() {
            let shared = crate::sio::emit::frame(frame.clone());
            for u in users {
                let sockets = self.users.borrow().get(u).cloned().unwrap_or_default();
                for s in sockets {
                    self.deliver_positioned(s, frame, &shared);
                }
            }
            return;
        }
        let frame = crate::sio::emit::frame(frame.clone());
        for u in users {
            self.deliver_to_user(*u, &frame);
        }
    }

    fn presence_changed(&self, user: UserKey, online: bool) {
        (self.hooks.presence_changed)(user, online);
    }

    fn presence_announce(&self, user: UserKey, online: bool) {
        (self.hooks.presence_announce)(user, online);
    }

    fn local_sockets(&self) -> Vec<LocalSocket> {
        let sockets = self.sockets.borrow();
        let mut out = Vec::with_capacity(sockets.len());
        for (local, conn) in sockets.iter() {
            let st = conn.state.borrow();
            for slot in st.sockets.iter().filter(|s| s.local == *local) {
                if let Some(chat) = slot.chat.as_ref() {
                    out.push(LocalSocket {
                        local: *local,
                        id: slot.id.to_string(),
                        user: Some(chat.state.borrow().user),
                        handshake: Some(conn.handshake.facts),
                    });
                }
            }
        }
        out
    }

    fn disconnect(&self, sockets: &[u64], close: bool) {
        if let Some(me) = current() {
            (self.hooks.disconnect)(&me, sockets, close);
        }
    }

    fn emit_with_ack(&self, emit: AckEmit) {
        if let Some(me) = current() {
            (self.hooks.emit_with_ack)(&me, emit);
        }
    }

    fn room_user_changed(&self, room: &str, user: UserKey, present: bool, seen: Option<i64>) {
        self.adapter().room_user_changed(room, user, present, seen);
    }

    fn retain_absent_elsewhere(&self, room: &str, users: &mut Vec<UserKey>) -> Vec<UserKey> {
        self.adapter().retain_absent_elsewhere(room, users)
    }
}

thread_local! {
    /// The shard running on this thread (set by [`set_current`]).
    static CURRENT: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

/// Makes `shard` the shard of this thread (None when it stops).
pub fn set_current(shard: Option<Rc<Shard>>) {
    CURRENT.with(|c| *c.borrow_mut() = shard);
}

/// The shard of the current thread, if this is a shard thread.
pub fn current() -> Option<Rc<Shard>> {
    CURRENT.with(|c| c.borrow().clone())
}

impl ShardSet {
    /// The sender of shard `i`.
    pub fn sender(&self, i: usize) -> Option<&flume::Sender<ShardMsg>> {
        self.senders_slice().get(i)
    }
}
