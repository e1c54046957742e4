//! Room membership, partitioned by room name over the shards.
//!
//! `room_owner(room)` picks the shard that keeps a room's member set; joins, leaves and
//! broadcasts for that room go to that shard only (as `ShardMsg`s). The owner answers a broadcast
//! with the member sockets grouped by shard, so each shard receives one message carrying the
//! shared frame and the list of its local sockets.

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::store::UserKey;

/// A Socket.IO socket anywhere in the process: its shard and its shard-local number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketKey {
    /// Index of the shard that owns the socket's connection.
    pub shard: u16,
    /// Shard-local socket number (a per-shard counter, never reused).
    pub local: u64,
}

/// A room name (`conversation:<id>` for the chat namespace).
pub type RoomName = Arc<str>;

/// One member of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The member socket.
    pub socket: SocketKey,
    /// The authenticated user of that socket (chat namespace), used to find participants with
    /// no socket in the room (`message:notification`).
    pub user: Option<UserKey>,
}

/// Sockets of one shard that a broadcast must reach.
pub type ShardTargets = SmallVec<[(u16, Vec<u64>); 2]>;

/// The rooms owned by one shard.
#[derive(Debug, Default)]
pub struct Rooms {
    /// Room name -> members (small vectors: rooms are conversations of a few to a few hundred).
    rooms: HashMap<RoomName, Vec<Member>>,
}

/// Stable FNV-1a hash, identical on every shard and every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The shard that owns `room`.
pub fn room_owner(room: &str, shards: usize) -> usize {
    (fnv1a(room.as_bytes()) % shards.max(1) as u64) as usize
}

impl Rooms {
    /// Adds a member; false when the socket was already in the room.
    pub fn join(&mut self, room: RoomName, member: Member) -> bool {
        let members = self.rooms.entry(room).or_default();
        if members.iter().any(|m| m.socket == member.socket) {
            return false;
        }
        members.push(member);
        true
    }

    /// Removes a member; false when it was not in the room. Empty rooms are dropped.
    pub fn leave(&mut self, room: &str, socket: SocketKey) -> bool {
        let Some(members) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(pos) = members.iter().position(|m| m.socket == socket) else {
            return false;
        };
        members.swap_remove(pos);
        if members.is_empty() {
            self.rooms.remove(room);
        }
        true
    }

    /// Member sockets grouped by shard, without `except`.
    pub fn targets(&self, room: &str, except: Option<SocketKey>) -> ShardTargets {
        let mut out = ShardTargets::new();
        let Some(members) = self.rooms.get(room) else {
            return out;
        };
        for m in members {
            if Some(m.socket) == except {
                continue;
            }
            match out.iter_mut().find(|(s, _)| *s == m.socket.shard) {
                Some((_, locals)) => locals.push(m.socket.local),
                None => out.push((m.socket.shard, vec![m.socket.local])),
            }
        }
        out
    }

    /// True when `user` has at least one socket in the room.
    pub fn has_user(&self, room: &str, user: UserKey) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|members| members.iter().any(|m| m.user == Some(user)))
    }

    /// Number of members of a room.
    pub fn len(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, Vec::len)
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserType;

    fn key(shard: u16, local: u64) -> SocketKey {
        SocketKey { shard, local }
    }

    #[test]
    fn join_leave_and_group_by_shard() {
        let mut rooms = Rooms::default();
        let room: RoomName = Arc::from("conversation:1");
        let u = UserKey {
            user_type: UserType::Brand,
            id: 5,
        };
        assert!(rooms.join(
            room.clone(),
            Member {
                socket: key(0, 1),
                user: Some(u)
            }
        ));
        assert!(!rooms.join(
            room.clone(),
            Member {
                socket: key(0, 1),
                user: Some(u)
            }
        ));
        rooms.join(
            room.clone(),
            Member {
                socket: key(1, 7),
                user: None,
            },
        );
        rooms.join(
            room.clone(),
            Member {
                socket: key(0, 2),
                user: None,
            },
        );
        let t = rooms.targets(&room, Some(key(0, 2)));
        assert_eq!(t.len(), 2);
        assert_eq!(t[0], (0, vec![1]));
        assert_eq!(t[1], (1, vec![7]));
        assert!(rooms.has_user(&room, u));
        assert!(rooms.leave(&room, key(0, 1)));
        assert!(!rooms.has_user(&room, u));
        rooms.leave(&room, key(1, 7));
        rooms.leave(&room, key(0, 2));
        assert_eq!(rooms.room_count(), 0);
    }

    #[test]
    fn owner_is_stable_and_in_range() {
        for n in 1..8 {
            let o = room_owner("conversation:42", n);
            assert!(o < n);
            assert_eq!(o, room_owner("conversation:42", n));
        }
    }
}
