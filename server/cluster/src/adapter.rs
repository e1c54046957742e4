//! The cluster seam: every room operation, broadcast, user notification and presence change goes
//! through an [`Adapter`]. [`LocalAdapter`] routes each one to the shard that owns the room or the
//! user in this process; [`crate::RedisAdapter`] (interoperable with `@socket.io/redis-adapter`) also
//! publishes them to other nodes and applies theirs here, behind the same trait.
//!
//! An adapter is shared by every shard (`Send + Sync`); the shard calling it passes itself as a
//! [`Mesh`].

use std::sync::Arc;

use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::mesh::{Injector, Mesh};
use crate::msg::{ClusterMsg, Published};
use crate::presence::presence_owner;
use crate::rooms::{Member, RoomName, SocketKey, room_owner};

/// The answer to "is this user online?": known at once, or from another shard or node.
#[derive(Debug)]
pub enum Online {
    /// Answered from this shard's counts.
    Now(bool),
    /// The owner answers on this channel (a dropped sender reads as offline).
    Later(tokio::sync::oneshot::Receiver<bool>),
}

impl Online {
    /// Waits for the answer.
    pub async fn get(self) -> bool {
        match self {
            Online::Now(b) => b,
            Online::Later(rx) => rx.await.unwrap_or(false),
        }
    }
}

/// Room operations, broadcasts and presence as the layers above see them.
pub trait Adapter: Send + Sync {
    /// Adds a socket to a room.
    fn join(&self, mesh: &dyn Mesh, room: RoomName, member: Member);
    /// Removes a socket from a room.
    fn leave(&self, mesh: &dyn Mesh, room: RoomName, socket: SocketKey);
    /// Sends a frame to every socket of a room except `except`.
    fn broadcast(
        &self,
        mesh: &dyn Mesh,
        room: RoomName,
        frame: TextFrame,
        except: Option<SocketKey>,
    );
    /// A committed message: `message:new` to its room except the sending socket, then
    /// `message:notification` to participants with no socket in the room (never the sender),
    /// then the sender's own reply; all from the room's owner, so every socket sees a
    /// conversation's events in id order.
    fn publish(&self, mesh: &dyn Mesh, message: Published);
    /// Sends a frame to every socket of these users.
    fn notify_users(&self, mesh: &dyn Mesh, users: Arc<[UserKey]>, frame: TextFrame);
    /// One more socket of `user`.
    fn presence_up(&self, mesh: &dyn Mesh, user: UserKey);
    /// One socket less of `user`.
    fn presence_down(&self, mesh: &dyn Mesh, user: UserKey);
    /// Whether `user` has a socket anywhere.
    fn check_online(&self, mesh: &dyn Mesh, user: UserKey) -> Online;
    /// Gives the adapter a handle to every shard, once they exist (the Redis adapter injects
    /// what other nodes send through it).
    fn attach(&self, _shards: Arc<dyn Injector>) {}
    /// `user`'s first socket (`online`) or last socket on this node changed, seen on the user's
    /// presence owner shard. True when the change is cluster-wide, i.e. must be announced.
    fn local_presence(&self, _user: UserKey, _online: bool) -> bool {
        true
    }
    /// A socket is gone (after it left its conversation rooms): forget rooms other nodes made
    /// it join.
    fn socket_gone(&self, _mesh: &dyn Mesh, _socket: SocketKey) {}
    /// Whether the link to other nodes is up (None: a single node, no link).
    fn cluster_connected(&self) -> Option<bool> {
        None
    }
    /// `user`'s first socket on this node joined `room` (`present`) or its last one left it
    /// (see [`Mesh::room_user_changed`]).
    fn room_user_changed(&self, _room: &str, _user: UserKey, _present: bool, _seen: Option<i64>) {}
    /// Keeps in `users` only those with no socket in `room` on another node, returns those it
    /// dropped (see [`Mesh::retain_absent_elsewhere`]).
    fn retain_absent_elsewhere(&self, _room: &str, _users: &mut Vec<UserKey>) -> Vec<UserKey> {
        Vec::new()
    }
}

/// Single-process adapter: each operation is a [`ClusterMsg`] to the owner shard of its room or
/// user (applied at once when that is the calling shard).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn join(&self, mesh: &dyn Mesh, room: RoomName, member: Member) {
        let owner = room_owner(&room, mesh.shard_count());
        mesh.send(owner, ClusterMsg::Join { room, member });
    }

    fn leave(&self, mesh: &dyn Mesh, room: RoomName, socket: SocketKey) {
        let owner = room_owner(&room, mesh.shard_count());
        mesh.send(owner, ClusterMsg::Leave { room, socket });
    }

    fn broadcast(
        &self,
        mesh: &dyn Mesh,
        room: RoomName,
        frame: TextFrame,
        except: Option<SocketKey>,
    ) {
        let owner = room_owner(&room, mesh.shard_count());
        mesh.send(
            owner,
            ClusterMsg::Broadcast {
                room,
                frame,
                except,
            },
        );
    }

    fn publish(&self, mesh: &dyn Mesh, message: Published) {
        let owner = room_owner(&message.room, mesh.shard_count());
        mesh.send(owner, ClusterMsg::Publish(Box::new(message)));
    }

    fn notify_users(&self, mesh: &dyn Mesh, users: Arc<[UserKey]>, frame: TextFrame) {
        crate::shard::deliver_to_users(mesh, &frame, users);
    }

    fn presence_up(&self, mesh: &dyn Mesh, user: UserKey) {
        mesh.send(
            presence_owner(user, mesh.shard_count()),
            ClusterMsg::PresenceUp(user),
        );
    }

    fn presence_down(&self, mesh: &dyn Mesh, user: UserKey) {
        mesh.send(
            presence_owner(user, mesh.shard_count()),
            ClusterMsg::PresenceDown(user),
        );
    }

    fn check_online(&self, mesh: &dyn Mesh, user: UserKey) -> Online {
        let owner = presence_owner(user, mesh.shard_count());
        if owner == usize::from(mesh.index()) {
            return Online::Now(mesh.is_online_here(user));
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        mesh.send(owner, ClusterMsg::PresenceQuery { user, reply });
        Online::Later(rx)
    }
}
