//! Room membership, partitioned by room name over the shards.
//!
//! [`room_owner`] picks the shard that keeps a room's member set; joins, leaves and broadcasts
//! for that room go to that shard only (as [`crate::ClusterMsg`]s). The owner answers a broadcast
//! with the member sockets grouped by shard, so each shard receives one message carrying the
//! shared frame and the list of its local sockets. Each room also counts its members' users, so
//! "which participants have no socket here" costs a lookup per participant, whatever the room's
//! size.

use ahash::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use chatwire_store::UserKey;

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

/// What a join or a leave changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Nothing: the socket was already in the room (join) or was not in it (leave).
    Unchanged,
    /// The socket joined or left; its user (if any) has another socket in the room.
    Socket,
    /// The socket was its user's first in the room (join) or its last (leave).
    User(UserKey),
}

impl Membership {
    /// True when the socket joined or left.
    pub fn changed(self) -> bool {
        self != Membership::Unchanged
    }
}

/// Sockets of one shard that a broadcast must reach.
pub type ShardTargets = SmallVec<[(u16, Vec<u64>); 2]>;

/// One room's members.
#[derive(Debug, Default)]
struct Room {
    /// Member sockets (a small vector: rooms are conversations of a few to a few hundred).
    members: Vec<Member>,
    /// Users with at least one member socket and how many, sorted by user (binary search).
    users: Vec<(UserKey, u32)>,
}

/// The rooms owned by one shard.
#[derive(Debug, Default)]
pub struct Rooms {
    /// Room name -> members.
    rooms: HashMap<RoomName, Room>,
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
    /// Adds a member (see [`Membership`]).
    pub fn join(&mut self, room: RoomName, member: Member) -> Membership {
        let room = self.rooms.entry(room).or_default();
        if room.members.iter().any(|m| m.socket == member.socket) {
            return Membership::Unchanged;
        }
        let mut change = Membership::Socket;
        if let Some(user) = member.user {
            match room.users.binary_search_by_key(&user, |(u, _)| *u) {
                Ok(i) => {
                    if let Some(entry) = room.users.get_mut(i) {
                        entry.1 += 1;
                    }
                }
                Err(i) => {
                    room.users.insert(i, (user, 1));
                    change = Membership::User(user);
                }
            }
        }
        room.members.push(member);
        change
    }

    /// Removes a member (see [`Membership`]). Empty rooms are dropped.
    pub fn leave(&mut self, name: &str, socket: SocketKey) -> Membership {
        let Some(room) = self.rooms.get_mut(name) else {
            return Membership::Unchanged;
        };
        let Some(pos) = room.members.iter().position(|m| m.socket == socket) else {
            return Membership::Unchanged;
        };
        let member = room.members.swap_remove(pos);
        let mut change = Membership::Socket;
        if let Some(user) = member.user
            && let Ok(i) = room.users.binary_search_by_key(&user, |(u, _)| *u)
        {
            match room.users.get_mut(i) {
                Some(entry) if entry.1 > 1 => entry.1 -= 1,
                _ => {
                    room.users.remove(i);
                    change = Membership::User(user);
                }
            }
        }
        if room.members.is_empty() {
            self.rooms.remove(name);
        }
        change
    }

    /// Every room owned here with its member sockets (for requests from other nodes).
    pub fn snapshot(&self) -> Vec<(RoomName, Vec<Member>)> {
        self.rooms
            .iter()
            .map(|(name, room)| (name.clone(), room.members.clone()))
            .collect()
    }

    /// Member sockets grouped by shard, without `except`.
    pub fn targets(&self, room: &str, except: Option<SocketKey>) -> ShardTargets {
        let mut out = ShardTargets::new();
        let Some(room) = self.rooms.get(room) else {
            return out;
        };
        let members = room.members.iter().filter(|m| Some(m.socket) != except);
        // Counted first, so each shard's list is allocated once at its size (no regrowth).
        let mut counts: SmallVec<[(u16, usize); 4]> = SmallVec::new();
        for m in members.clone() {
            match counts.iter_mut().find(|(s, _)| *s == m.socket.shard) {
                Some((_, n)) => *n += 1,
                None => counts.push((m.socket.shard, 1)),
            }
        }
        out.extend(
            counts
                .into_iter()
                .map(|(shard, n)| (shard, Vec::with_capacity(n))),
        );
        for m in members {
            if let Some((_, locals)) = out.iter_mut().find(|(s, _)| *s == m.socket.shard) {
                locals.push(m.socket.local);
            }
        }
        out
    }

    /// True when `user` has at least one socket in the room.
    pub fn has_user(&self, room: &str, user: UserKey) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.users.binary_search_by_key(&user, |(u, _)| *u).is_ok())
    }

    /// Those of `users`, but `skip`, with no socket in the room (the room is looked up once:
    /// a notification costs one lookup and a binary search per participant).
    pub fn absent(&self, room: &str, users: &[UserKey], skip: Option<UserKey>) -> Vec<UserKey> {
        let present: &[(UserKey, u32)] = self.rooms.get(room).map_or(&[], |r| &r.users);
        users
            .iter()
            .copied()
            .filter(|u| Some(*u) != skip && present.binary_search_by_key(u, |(k, _)| *k).is_err())
            .collect()
    }

    /// Number of members of a room.
    pub fn len(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatwire_store::UserType;

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
        assert_eq!(
            rooms.join(
                room.clone(),
                Member {
                    socket: key(0, 1),
                    user: Some(u)
                }
            ),
            Membership::User(u)
        );
        assert!(
            !rooms
                .join(
                    room.clone(),
                    Member {
                        socket: key(0, 1),
                        user: Some(u)
                    }
                )
                .changed()
        );
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
        assert_eq!(rooms.leave(&room, key(0, 1)), Membership::User(u));
        assert!(!rooms.has_user(&room, u));
        rooms.leave(&room, key(1, 7));
        rooms.leave(&room, key(0, 2));
        assert_eq!(rooms.room_count(), 0);
    }

    #[test]
    fn a_user_stays_in_the_room_while_any_of_its_sockets_is() {
        let mut rooms = Rooms::default();
        let room: RoomName = Arc::from("conversation:2");
        let u = UserKey {
            user_type: UserType::Influencer,
            id: 9,
        };
        let joins: Vec<Membership> = [1, 2]
            .into_iter()
            .map(|local| {
                rooms.join(
                    room.clone(),
                    Member {
                        socket: key(0, local),
                        user: Some(u),
                    },
                )
            })
            .collect();
        assert_eq!(joins, [Membership::User(u), Membership::Socket]);
        assert_eq!(rooms.leave(&room, key(0, 1)), Membership::Socket);
        assert!(rooms.has_user(&room, u), "second device still in the room");
        assert_eq!(rooms.leave(&room, key(0, 2)), Membership::User(u));
        assert!(!rooms.has_user(&room, u));
        assert_eq!(
            rooms.leave(&room, key(0, 2)),
            Membership::Unchanged,
            "leaving twice changes nothing"
        );
    }

    #[test]
    fn absent_users_are_those_without_a_socket_in_the_room() {
        let mut rooms = Rooms::default();
        let room: RoomName = Arc::from("conversation:3");
        let user = |id| UserKey {
            user_type: if id % 2 == 0 {
                UserType::Brand
            } else {
                UserType::Influencer
            },
            id,
        };
        for (local, id) in [(1, 5), (2, 3), (3, 8)] {
            rooms.join(
                room.clone(),
                Member {
                    socket: key(0, local),
                    user: Some(user(id)),
                },
            );
        }
        let everyone: Vec<UserKey> = (1..=8).map(user).collect();
        let absent = rooms.absent(&room, &everyone, Some(user(1)));
        assert_eq!(absent, [2, 4, 6, 7].map(user));
        assert_eq!(
            rooms.absent("conversation:4", &everyone[..2], None),
            everyone[..2],
            "nobody is in a room that does not exist"
        );
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
