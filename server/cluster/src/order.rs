//! Id order for a conversation whose messages are committed on several nodes.
//!
//! PostgreSQL makes a conversation's commit order its id order (the insert locks the
//! conversation's row before drawing ids), but each node publishes its own commits: a message
//! committed on node A just before one committed on node B can reach a third node, or B's own
//! clients, after B's. The room's owner shard therefore holds every message from another node
//! for [`HOLD`], and this node's own messages of a conversation that had a message from another
//! node in the last [`REMOTE_WINDOW`], and releases them in id order. A conversation written
//! only here is never held (one node: no added latency). A message that arrives after a higher
//! id was already released goes out at once (counted in `chatwire_order_late_total`).
//!
//! Residual case: in a conversation with no message from another node for [`REMOTE_WINDOW`], a
//! local message is released at once; another node's message committed just before it (it
//! waited for the row lock behind that one) but still on its way is then late.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatwire_protocol::socket::TextFrame;

use crate::msg::Published;
use crate::rooms::RoomName;

/// How long a message of a multi-node conversation waits for lower ids.
pub const HOLD: Duration = Duration::from_millis(100);
/// This node's messages are held while the conversation had another node's message this
/// recently.
pub const REMOTE_WINDOW: Duration = Duration::from_secs(30);
/// Most messages held per conversation; past it the lowest goes out.
const HELD_MAX: usize = 1024;
/// Counter: messages that arrived after a higher id had been released.
pub const ORDER_LATE: &str = "chatwire_order_late_total";

/// A message waiting for its turn.
#[derive(Debug)]
pub enum Held {
    /// Committed on this node.
    Local(Box<Published>),
    /// Another node's `message:new`.
    Remote(TextFrame),
}

/// One conversation's ordering state.
#[derive(Debug)]
struct RoomOrder {
    /// When its last message came.
    last_seen: Instant,
    /// Local messages are held until this instant (another node's message came recently).
    remote_until: Instant,
    /// Highest id released.
    released: i64,
    /// Waiting messages by id, with their release time.
    held: BTreeMap<i64, (Instant, Held)>,
}

/// The ordering state of the rooms a shard owns.
#[derive(Debug, Default)]
pub struct Order {
    /// Conversation rooms that had messages.
    rooms: HashMap<RoomName, RoomOrder>,
    /// Rooms with held messages.
    pending: HashSet<RoomName>,
}

impl Order {
    /// A message `id` of `room` from `source` (None: this node). Returns it when it may go out
    /// now; otherwise it is held until [`Order::due`] releases it.
    pub fn admit(
        &mut self,
        room: &RoomName,
        id: i64,
        source: Option<Arc<str>>,
        item: Held,
        now: Instant,
    ) -> Vec<Held> {
        let st = self.rooms.entry(room.clone()).or_insert_with(|| RoomOrder {
            last_seen: now,
            remote_until: now,
            released: 0,
            held: BTreeMap::new(),
        });
        if source.is_some() {
            st.remote_until = now + REMOTE_WINDOW;
        }
        st.last_seen = now;
        if id < st.released {
            metrics::counter!(ORDER_LATE).increment(1);
            return vec![item];
        }
        if source.is_none() && st.held.is_empty() && now >= st.remote_until {
            st.released = st.released.max(id);
            return vec![item];
        }
        st.held.insert(id, (now + HOLD, item));
        self.pending.insert(room.clone());
        let mut out = Vec::new();
        while st.held.len() > HELD_MAX {
            if let Some((id, (_, item))) = st.held.pop_first() {
                st.released = st.released.max(id);
                out.push(item);
            }
        }
        out
    }

    /// Messages whose hold is over, per room in id order (a lower id arriving later holds back
    /// the higher ones until its own hold is over).
    pub fn due(&mut self, now: Instant) -> Vec<(RoomName, Held)> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for room in &self.pending {
            let Some(st) = self.rooms.get_mut(room) else {
                done.push(room.clone());
                continue;
            };
            while let Some(entry) = st.held.first_entry() {
                if entry.get().0 > now {
                    break;
                }
                let id = *entry.key();
                let (_, item) = entry.remove();
                st.released = st.released.max(id);
                out.push((room.clone(), item));
            }
            if st.held.is_empty() {
                done.push(room.clone());
            }
        }
        for room in done {
            self.pending.remove(&room);
        }
        // Forget conversations idle for a while (they start again as local-only).
        if self.rooms.len() > 4096 {
            self.rooms.retain(|_, st| {
                !st.held.is_empty() || now.duration_since(st.last_seen) < REMOTE_WINDOW
            });
        }
        out
    }

    /// True when messages are held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: i64) -> Held {
        Held::Remote(chatwire_protocol::socket::emit::event(
            "/chat",
            "message:new",
            format!("{{\"id\":{id}}}").as_bytes(),
        ))
    }

    fn ids(items: &[(RoomName, Held)]) -> Vec<String> {
        items
            .iter()
            .map(|(_, h)| match h {
                Held::Remote(f) => String::from_utf8_lossy(f.as_bytes()).into_owned(),
                Held::Local(p) => p.id.to_string(),
            })
            .collect()
    }

    #[test]
    fn local_only_is_never_held() {
        let mut o = Order::default();
        let room: RoomName = "conversation:1".into();
        let t = Instant::now();
        for id in 1..5 {
            assert_eq!(o.admit(&room, id, None, frame(id), t).len(), 1);
        }
        assert!(!o.has_pending());
    }

    #[test]
    fn two_sources_are_released_in_id_order() {
        let mut o = Order::default();
        let room: RoomName = "conversation:1".into();
        let t = Instant::now();
        let b: Arc<str> = "b".into();
        assert_eq!(o.admit(&room, 1, None, frame(1), t).len(), 1);
        // B's 3 arrives, then this node's 2: both held, released 2 then 3.
        assert!(o.admit(&room, 3, Some(b.clone()), frame(3), t).is_empty());
        assert!(o.admit(&room, 2, None, frame(2), t).is_empty());
        assert!(o.due(t + HOLD / 2).is_empty());
        let out = o.due(t + HOLD);
        assert_eq!(out.len(), 2);
        let got = ids(&out);
        assert!(
            got[0].contains("\"id\":2") && got[1].contains("\"id\":3"),
            "{got:?}"
        );
        // Too late for its turn: out at once.
        assert_eq!(o.admit(&room, 1, Some(b), frame(1), t + HOLD).len(), 1);
    }
}
