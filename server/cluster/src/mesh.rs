//! [`Mesh`]: the few things the cluster layer needs of the shard it runs on: its index, a way to
//! message another shard, and delivery to its own sockets.

use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::msg::{AckEmit, ClusterMsg, LocalSocket};

/// What the cluster layer needs of the shard it runs on (implemented by the server's shard).
pub trait Mesh {
    /// This shard's index.
    fn index(&self) -> u16;
    /// Number of shards in this process.
    fn shard_count(&self) -> usize;
    /// True when `user`, whose presence this shard owns, has a socket.
    fn is_online_here(&self, user: UserKey) -> bool;
    /// Sends `msg` to shard `to`; a message for this shard is applied at once. Never waits.
    fn send(&self, to: usize, msg: ClusterMsg);
    /// Writes `frame` to these local sockets (shard-local numbers).
    fn deliver(&self, frame: &TextFrame, sockets: &[u64]);
    /// Writes `frame` to every local chat socket of these users.
    fn deliver_to_users(&self, frame: &TextFrame, users: &[UserKey]);
    /// A user whose presence this shard owns came online (first socket) or went offline (last).
    fn presence_changed(&self, user: UserKey, online: bool);
    /// The cluster-wide presence of a user owned here changed on another node: announce it.
    fn presence_announce(&self, user: UserKey, online: bool);
    /// This shard's `/chat` sockets.
    fn local_sockets(&self) -> Vec<LocalSocket>;
    /// Disconnects these local `/chat` sockets (`close`: their whole connections).
    fn disconnect(&self, sockets: &[u64], close: bool);
    /// Emits an event with an ack id to each of these local sockets (see [`AckEmit`]).
    fn emit_with_ack(&self, emit: AckEmit);
    /// `user`'s first socket on this node joined `room` (`present`) or its last one left it,
    /// seen by the room's owner shard (the adapter tells other nodes). On a leave, `seen` is
    /// the newest message id this node had handed the room (None: none lately). A single node
    /// has no one to tell.
    fn room_user_changed(&self, _room: &str, _user: UserKey, _present: bool, _seen: Option<i64>) {}
    /// Keeps in `users` only those with no socket in `room` on another node (a single node:
    /// all of them); returns those it dropped.
    fn retain_absent_elsewhere(&self, _room: &str, _users: &mut Vec<UserKey>) -> Vec<UserKey> {
        Vec::new()
    }
}

/// A handle to every shard's channel that threads other than shards hold (the Redis task), to
/// inject what other nodes ask for.
pub trait Injector: Send + Sync {
    /// Number of shards.
    fn shard_count(&self) -> usize;
    /// Sends `msg` to shard `to`; false when it was dropped (channel full or gone). Messages
    /// that must not be dropped ([`ClusterMsg::must_not_drop`]) wait for room.
    fn inject(&self, to: usize, msg: ClusterMsg) -> bool;
}
