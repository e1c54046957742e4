//! Notifications held back because their user was in the room on another node, kept a short
//! while so that node's word that the user left can bring them back.
//!
//! `message:notification` goes to participants with no socket in the conversation's room on
//! any node. A node learns of the others' rooms from their deltas, about a Redis round trip
//! late: when a user's only socket in the room, on node B, leaves while a message is committed,
//! node A may still hold the user in the room on B and send the user's sockets on A nothing,
//! while B's socket left before the message reached it. So the room's owner shard on A keeps
//! each notification it held back for that reason ([`Recheck::hold`]) for [`RECHECK_FOR`]. B's
//! leave names the newest message B had delivered in the room when the user left
//! (`seen`, from [`crate::order::Order::released`]); A then sends the held notifications of
//! newer messages, or of every message when B could not say ([`Recheck::left`]): a user gets a
//! notification it may not need rather than miss one.
//!
//! Bounded: [`PER_ROOM_MAX`] notifications per room and [`HELD_MAX`] per shard (past that a
//! notification is not kept, counted in [`RECHECK_DROPPED`]); rooms are swept of expired ones
//! as they grow.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chatwire_protocol::socket::TextFrame;
use chatwire_store::UserKey;

use crate::rooms::RoomName;

/// How long a held-back notification can still be sent: well past a Redis round trip under
/// load, short enough that a user who left long ago is not told of old messages.
pub const RECHECK_FOR: Duration = Duration::from_secs(10);
/// Most held-back notifications kept per room (the oldest go first).
pub const PER_ROOM_MAX: usize = 64;
/// Most held-back notifications per shard (each keeps its frame alive: ~1 KiB).
pub const HELD_MAX: usize = 16_384;
/// Counter: held-back notifications not kept (a shard at [`HELD_MAX`]).
pub const RECHECK_DROPPED: &str = "chatwire_notify_recheck_dropped_total";
/// Counter: held-back notifications sent after all (another node's leave showed the user
/// missed the message there).
pub const RECHECK_SENT: &str = "chatwire_notify_recheck_sent_total";

/// One notification held back from some users.
#[derive(Debug)]
struct HeldBack {
    /// When it was held back.
    at: Instant,
    /// The message's id (None: not known, e.g. from an older node).
    id: Option<i64>,
    /// The users it was held back from: in the room on another node only.
    users: Vec<UserKey>,
    /// The encoded notification.
    frame: TextFrame,
}

/// A shard's held-back notifications, by room.
#[derive(Debug, Default)]
pub struct Recheck {
    rooms: HashMap<RoomName, VecDeque<HeldBack>>,
    /// Notifications kept, over all rooms.
    len: usize,
    /// Rooms after the last sweep: the next sweep comes when there are twice as many.
    swept_at: usize,
    /// When the last sweep ran.
    last_sweep: Option<Instant>,
}

impl Recheck {
    /// Keeps `frame` (message `id`), held back from `users` because they are in `room` on
    /// another node.
    pub fn hold(
        &mut self,
        room: &RoomName,
        id: Option<i64>,
        users: Vec<UserKey>,
        frame: TextFrame,
        now: Instant,
    ) {
        if users.is_empty() {
            return;
        }
        let new_room = !self.rooms.contains_key(room);
        let full = self.len >= HELD_MAX;
        let second_ago = self
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if (new_room && self.rooms.len() >= (self.swept_at * 2).max(1024)) || (full && second_ago) {
            self.sweep(now);
        }
        if self.len >= HELD_MAX {
            metrics::counter!(RECHECK_DROPPED).increment(1);
            return;
        }
        let held = self.rooms.entry(room.clone()).or_default();
        self.len -= expire(held, now);
        if held.len() >= PER_ROOM_MAX && held.pop_front().is_some() {
            self.len -= 1;
        }
        self.len += 1;
        held.push_back(HeldBack {
            at: now,
            id,
            users,
            frame,
        });
    }

    /// `user`'s last socket in `room` on another node left after that node had delivered the
    /// room's messages up to `seen` (None: not known), and the user is in the room nowhere
    /// now: the notifications held back from `user` for later messages, to send now. Every
    /// notification held back from the user in the room is settled: returned once, or (the
    /// user saw the message there) forgotten.
    pub fn left(
        &mut self,
        room: &str,
        user: UserKey,
        seen: Option<i64>,
        now: Instant,
    ) -> Vec<TextFrame> {
        let Some(held) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        self.len -= expire(held, now);
        let mut due = Vec::new();
        for h in held.iter_mut() {
            let Some(i) = h.users.iter().position(|u| *u == user) else {
                continue;
            };
            // Settled either way: the user saw it there, or gets it now.
            h.users.swap_remove(i);
            let newer = match (h.id, seen) {
                (Some(id), Some(seen)) => id > seen,
                _ => true,
            };
            if newer {
                due.push(h.frame.clone());
            }
        }
        metrics::counter!(RECHECK_SENT).increment(due.len() as u64);
        let before = held.len();
        held.retain(|h| !h.users.is_empty());
        self.len -= before - held.len();
        if held.is_empty() {
            self.rooms.remove(room);
        }
        due
    }

    /// Rooms with held-back notifications.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Notifications kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops what expired (when the rooms doubled since the last sweep, or when full, at most
    /// once a second).
    fn sweep(&mut self, now: Instant) {
        let mut gone = 0;
        self.rooms.retain(|_, held| {
            gone += expire(held, now);
            !held.is_empty()
        });
        self.len -= gone;
        self.swept_at = self.rooms.len();
        self.last_sweep = Some(now);
    }
}

/// Drops the expired front of one room's queue (it is in time order); returns how many.
fn expire(held: &mut VecDeque<HeldBack>, now: Instant) -> usize {
    let mut n = 0;
    while held
        .front()
        .is_some_and(|h| now.duration_since(h.at) >= RECHECK_FOR)
    {
        held.pop_front();
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatwire_protocol::socket::emit;
    use chatwire_store::UserType;

    fn user(id: i64) -> UserKey {
        UserKey::new(UserType::Brand, id)
    }

    fn frame(id: i64) -> TextFrame {
        emit::event(
            "/chat",
            "message:notification",
            format!("{{\"id\":{id}}}").as_bytes(),
        )
    }

    fn text(f: &TextFrame) -> String {
        String::from_utf8_lossy(f.as_bytes()).into_owned()
    }

    fn room(name: &str) -> RoomName {
        RoomName::from(name)
    }

    #[test]
    fn a_leave_brings_back_what_the_other_node_had_not_delivered() {
        let mut r = Recheck::default();
        let now = Instant::now();
        let c = room("conversation:1");
        for id in 10..13 {
            r.hold(&c, Some(id), vec![user(1), user(2)], frame(id), now);
        }
        // The other node had delivered 10 when user 1 left: 11 and 12 are due, once, and 10
        // is settled too.
        let due: Vec<String> = r
            .left("conversation:1", user(1), Some(10), now)
            .iter()
            .map(text)
            .collect();
        assert_eq!(due.len(), 2, "{due:?}");
        assert!(
            due[0].contains("\"id\":11") && due[1].contains("\"id\":12"),
            "{due:?}"
        );
        assert!(r.left("conversation:1", user(1), None, now).is_empty());
        // User 2's are still there; an unknown `seen` gives all of them.
        assert_eq!(r.left("conversation:1", user(2), None, now).len(), 3);
        assert_eq!(
            r.room_count(),
            0,
            "a room with nothing held back is forgotten"
        );
        // Another room, another user: nothing.
        r.hold(&c, Some(20), vec![user(1)], frame(20), now);
        assert!(r.left("conversation:2", user(1), None, now).is_empty());
        assert!(r.left("conversation:1", user(3), None, now).is_empty());
    }

    #[test]
    fn held_back_notifications_expire_and_are_bounded() {
        let mut r = Recheck::default();
        let t0 = Instant::now();
        let c = room("conversation:1");
        r.hold(&c, Some(1), vec![user(1)], frame(1), t0);
        assert!(
            r.left("conversation:1", user(1), None, t0 + RECHECK_FOR)
                .is_empty()
        );
        for id in 0..(PER_ROOM_MAX as i64 + 10) {
            r.hold(&c, Some(id), vec![user(1)], frame(id), t0);
        }
        let due = r.left("conversation:1", user(1), None, t0);
        assert_eq!(due.len(), PER_ROOM_MAX);
        assert!(text(&due[0]).contains("\"id\":10"), "the oldest went first");
        assert!(r.is_empty());
        // A shard keeps HELD_MAX at most; expired ones make room again.
        for i in 0..HELD_MAX {
            let name = room(&format!("conversation:{}", i % 5000));
            r.hold(&name, None, vec![user(1)], frame(0), t0);
        }
        assert_eq!(r.len(), HELD_MAX);
        r.hold(&room("conversation:x"), None, vec![user(1)], frame(0), t0);
        assert_eq!(r.len(), HELD_MAX, "past the cap nothing more is kept");
        assert!(r.left("conversation:x", user(1), None, t0).is_empty());
        let later = t0 + RECHECK_FOR;
        r.hold(
            &room("conversation:y"),
            None,
            vec![user(1)],
            frame(0),
            later,
        );
        assert_eq!((r.len(), r.room_count()), (1, 1), "expired ones were swept");
    }
}
