//! [`ClusterShard`]: the rooms and presence counts one shard owns, and how it applies the
//! [`ClusterMsg`]s addressed to it.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::mesh::Mesh;
use crate::msg::{ClusterMsg, Published, ShardView};
use crate::order::{Held, Order};
use crate::presence::Presence;
use crate::recheck::Recheck;
use crate::rooms::{Membership, RoomName, Rooms, SocketKey};

/// Histogram: sockets a room broadcast reached.
pub const BROADCAST_FANOUT: &str = "chatwire_broadcast_fanout";

/// The cluster state of one shard (single thread: `RefCell`s, never held across a call out).
#[derive(Debug, Default)]
pub struct ClusterShard {
    /// Rooms whose name hashes to this shard.
    rooms: RefCell<Rooms>,
    /// Presence counts of users who hash to this shard.
    presence: RefCell<Presence>,
    /// Id order of conversations written from several nodes.
    order: RefCell<Order>,
    /// This node shares rooms with other nodes: its own messages go through [`Order`] too (a
    /// single node never pays for ordering).
    several_nodes: bool,
    /// Set by the first message from another node (also orders a shard built for one node).
    remote_seen: std::cell::Cell<bool>,
    /// Notifications held back from users in the room on another node (see [`crate::recheck`]).
    recheck: RefCell<Recheck>,
}

impl ClusterShard {
    /// The state of a shard whose node shares rooms with other nodes (`several_nodes`: through
    /// Redis) or not; `newest_at_start`: the newest message id when the node started (its
    /// order never waits for a predecessor at or below it, see [`Order::starting_at`]).
    pub fn new(several_nodes: bool, newest_at_start: i64) -> Self {
        ClusterShard {
            several_nodes,
            order: RefCell::new(Order::starting_at(newest_at_start)),
            ..ClusterShard::default()
        }
    }

    /// Applies one message addressed to this shard.
    pub fn handle(&self, mesh: &dyn Mesh, msg: ClusterMsg) {
        match msg {
            ClusterMsg::Join { room, member } => {
                let change = self.rooms.borrow_mut().join(room.clone(), member);
                if let Membership::User(user) = change {
                    mesh.room_user_changed(&room, user, true, None);
                }
            }
            ClusterMsg::Leave { room, socket } => {
                let change = self.rooms.borrow_mut().leave(&room, socket);
                if let Membership::User(user) = change {
                    // What this node handed the room so far reached the user here; later
                    // messages will not (other nodes send those as notifications).
                    let seen = self.order.borrow().released(&room);
                    mesh.room_user_changed(&room, user, false, seen);
                }
            }
            ClusterMsg::Broadcast {
                room,
                frame,
                except,
            } => self.broadcast(mesh, &room, &frame, except),
            ClusterMsg::Publish(p) if !self.several_nodes && !self.remote_seen.get() => {
                self.publish(mesh, *p);
            }
            ClusterMsg::Publish(p) => {
                let room = p.room.clone();
                let (id, prev) = (p.id, p.prev);
                self.admit(mesh, &room, id, prev, None, Held::Local(p));
            }
            ClusterMsg::RemoteMessage {
                room,
                id,
                prev,
                node,
                frame,
            } => {
                self.remote_seen.set(true);
                self.admit(mesh, &room, id, prev, Some(node), Held::Remote(frame));
            }
            ClusterMsg::Deliver { frame, sockets } => mesh.deliver(&frame, &sockets),
            ClusterMsg::DeliverToUsers { frame, users } => mesh.deliver_to_users(&frame, &users),
            ClusterMsg::PresenceUp(user) => {
                if self.presence.borrow_mut().up(user) {
                    mesh.presence_changed(user, true);
                }
            }
            ClusterMsg::PresenceDown(user) => {
                if self.presence.borrow_mut().down(user) {
                    mesh.presence_changed(user, false);
                }
            }
            ClusterMsg::PresenceAnnounce { user, online } => mesh.presence_announce(user, online),
            ClusterMsg::NotifyAbsent {
                room,
                id,
                users,
                frame,
            } => {
                self.notify_absent(mesh, &room, id, &users, None, || frame);
            }
            ClusterMsg::LeftElsewhere { room, user, seen } => {
                self.left_elsewhere(mesh, &room, user, seen);
            }
            ClusterMsg::Inspect(reply) => {
                let _ = reply.send(ShardView {
                    shard: mesh.index(),
                    sockets: mesh.local_sockets(),
                    rooms: self.rooms.borrow().snapshot(),
                });
            }
            ClusterMsg::DisconnectLocal { sockets, close } => mesh.disconnect(&sockets, close),
            ClusterMsg::EmitWithAck(emit) => mesh.emit_with_ack(*emit),
            ClusterMsg::PresenceQuery { user, reply } => {
                let _ = reply.send(self.is_online(user));
            }
        }
    }

    /// Sends `frame` to the members of a room owned here: one `Deliver` per shard with members.
    fn broadcast(&self, mesh: &dyn Mesh, room: &str, frame: &TextFrame, except: Option<SocketKey>) {
        let targets = self.rooms.borrow().targets(room, except);
        let mut fanout = 0usize;
        for (shard, sockets) in targets {
            fanout += sockets.len();
            mesh.send(
                usize::from(shard),
                ClusterMsg::Deliver {
                    frame: frame.clone(),
                    sockets,
                },
            );
        }
        metrics::histogram!(BROADCAST_FANOUT).record(fanout as f64);
    }

    /// A committed message in a room owned here: `message:new` to the room except the sender's
    /// socket, `message:notification` to participants with no socket in the room (never the
    /// sender), then the sender's reply. All leave this shard in this order through FIFO
    /// channels, and this shard sees a conversation's messages in id order, so every socket
    /// does too.
    fn publish(&self, mesh: &dyn Mesh, p: Published) {
        self.broadcast(mesh, &p.room, &p.new_frame, p.sender_socket);
        self.notify_absent(
            mesh,
            &p.room,
            Some(p.id),
            &p.participants,
            Some(p.sender),
            || p.notification.frame(),
        );
        if let Some(socket) = p.sender_socket {
            for frame in p.reply {
                mesh.send(
                    usize::from(socket.shard),
                    ClusterMsg::Deliver {
                        frame,
                        sockets: vec![socket.local],
                    },
                );
            }
        }
    }

    /// A committed message of a room owned here (its conversation's previous id `prev`, when
    /// known), from this node (`source` None) or another: delivered now, or held for id order
    /// (see [`crate::order`]).
    pub fn admit(
        &self,
        mesh: &dyn Mesh,
        room: &RoomName,
        id: i64,
        prev: Option<i64>,
        source: Option<Arc<str>>,
        item: Held,
    ) {
        let ready = self
            .order
            .borrow_mut()
            .admit(room, id, prev, source, item, Instant::now());
        for item in ready {
            self.release(mesh, room, item);
        }
    }

    /// Releases the held messages whose time has come (the shard calls this while
    /// [`ClusterShard::has_held`]).
    pub fn tick(&self, mesh: &dyn Mesh) {
        let due = self.order.borrow_mut().due(Instant::now());
        for (room, item) in due {
            self.release(mesh, &room, item);
        }
    }

    /// True when messages wait for their turn.
    pub fn has_held(&self) -> bool {
        self.order.borrow().has_pending()
    }

    fn release(&self, mesh: &dyn Mesh, room: &RoomName, item: Held) {
        match item {
            Held::Local(p) => self.publish(mesh, *p),
            Held::Remote(frame) => self.broadcast(mesh, room, &frame, None),
        }
    }

    /// `frame` (of message `id`) to every user of `users` (but `sender`) with no socket in
    /// `room` (owned here) on this node nor, as far as this node knows, on any other; held back
    /// a while from those in the room on another node only, in case they just left it there.
    fn notify_absent(
        &self,
        mesh: &dyn Mesh,
        room: &RoomName,
        id: Option<i64>,
        users: &[UserKey],
        sender: Option<UserKey>,
        frame: impl FnOnce() -> TextFrame,
    ) {
        let mut absent = self.rooms.borrow().absent(room, users, sender);
        if absent.is_empty() {
            // Everyone is in the room (every 1:1 message between two online users): no list,
            // no frame.
            return;
        }
        let frame = &frame();
        let elsewhere = mesh.retain_absent_elsewhere(room, &mut absent);
        if !elsewhere.is_empty() {
            self.recheck
                .borrow_mut()
                .hold(room, id, elsewhere, frame.clone(), Instant::now());
        }
        deliver_to_users(mesh, frame, absent.into());
    }

    /// Another node says `user`'s last socket there left `room` (owned here), after it had
    /// delivered the room's messages up to `seen`: the notifications held back from the user
    /// for later ones go out now, unless the user is still in the room somewhere.
    fn left_elsewhere(&self, mesh: &dyn Mesh, room: &RoomName, user: UserKey, seen: Option<i64>) {
        if self.rooms.borrow().has_user(room, user) {
            return;
        }
        let mut users = vec![user];
        let _still_elsewhere = mesh.retain_absent_elsewhere(room, &mut users);
        if users.is_empty() {
            return;
        }
        let due = self
            .recheck
            .borrow_mut()
            .left(room, user, seen, Instant::now());
        for frame in due {
            deliver_to_users(mesh, &frame, Arc::from([user]));
        }
    }

    /// True when `user` (owned here) has at least one socket.
    pub fn is_online(&self, user: UserKey) -> bool {
        self.presence.borrow().is_online(user)
    }

    /// Number of rooms owned here.
    pub fn room_count(&self) -> usize {
        self.rooms.borrow().room_count()
    }

    /// Number of online users owned here.
    pub fn online_count(&self) -> usize {
        self.presence.borrow().online_count()
    }

    /// Members of a room owned here.
    pub fn room_len(&self, room: &str) -> usize {
        self.rooms.borrow().len(room)
    }
}

/// `frame` to every local socket of `users`, on every shard (a user's sockets may be on any).
pub(crate) fn deliver_to_users(mesh: &dyn Mesh, frame: &TextFrame, users: Arc<[UserKey]>) {
    if users.is_empty() {
        return;
    }
    for shard in 0..mesh.shard_count() {
        mesh.send(
            shard,
            ClusterMsg::DeliverToUsers {
                frame: frame.clone(),
                users: users.clone(),
            },
        );
    }
}
