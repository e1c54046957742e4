//! The cluster seam: room operations go through an [`Adapter`]. [`LocalAdapter`] routes them to the
//! room's owner shard in this process; a Redis adapter (interoperable with
//! `@socket.io/redis-adapter`) would also publish broadcasts to other nodes and apply theirs here.

use std::rc::Rc;
use std::sync::Arc;

use crate::engine::outbox::Frame;
use crate::rooms::{Member, RoomName, SocketKey, room_owner};
use crate::shard::Shard;
use crate::shard::msg::ShardMsg;
use crate::store::UserKey;

/// Room operations as the Socket.IO layer sees them.
pub trait Adapter {
    /// Adds a socket to a room.
    fn join(
        &self,
        shard: &Rc<Shard>,
        room: RoomName,
        member: Member,
        participants: Option<Arc<[UserKey]>>,
    );
    /// Removes a socket from a room.
    fn leave(&self, shard: &Rc<Shard>, room: RoomName, socket: SocketKey);
    /// Sends a frame to every socket of a room except `except`.
    fn broadcast(&self, shard: &Rc<Shard>, room: RoomName, frame: Frame, except: Option<SocketKey>);
}

/// Single-process adapter: each operation is a `ShardMsg` to the room's owner shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn join(
        &self,
        shard: &Rc<Shard>,
        room: RoomName,
        member: Member,
        participants: Option<Arc<[UserKey]>>,
    ) {
        let owner = room_owner(&room, shard.shard_count());
        shard.send_to(
            owner,
            ShardMsg::Join {
                room,
                member,
                participants,
            },
        );
    }

    fn leave(&self, shard: &Rc<Shard>, room: RoomName, socket: SocketKey) {
        let owner = room_owner(&room, shard.shard_count());
        shard.send_to(owner, ShardMsg::Leave { room, socket });
    }

    fn broadcast(
        &self,
        shard: &Rc<Shard>,
        room: RoomName,
        frame: Frame,
        except: Option<SocketKey>,
    ) {
        let owner = room_owner(&room, shard.shard_count());
        shard.send_to(
            owner,
            ShardMsg::Broadcast {
                room,
                frame,
                except,
            },
        );
    }
}
