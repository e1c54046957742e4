//! Id order for a conversation whose messages are committed on several nodes.
//!
//! PostgreSQL makes a conversation's commit order its id order (the insert locks the
//! conversation's row before drawing ids), but each node publishes its own commits: a message
//! committed on node A just before one committed on node B can reach a third node, or B's own
//! clients, after B's. So each message carries its conversation's previous id (`prev`, read by
//! the insert under that row lock, see `chatwire_store::Stored::prev`; across Redis it rides in
//! the broadcast's `opts.flags`), and the room's owner shard releases a conversation's messages
//! along that chain:
//!
//! - **Exact.** A message whose `prev` is at or below the last id released goes out at once:
//!   a conversation written from one node, and most traffic of one written from several, is
//!   never delayed. Otherwise it waits for its predecessor, and goes out the moment that is out.
//! - **A room with no state yet** (first message since the shard started, or since its state
//!   was forgotten) starts from a floor: the newest id when the node started
//!   ([`Order::starting_at`]), or the highest id this shard saw at least [`HOLD`] ago if that is
//!   higher. A predecessor at or below it was committed before the node started, or had
//!   [`HOLD`] to arrive (ids come from one sequence): it is not waited for, so a conversation
//!   with old history costs nothing. A fresh conversation starts at `prev` 0.
//! - **Bounded.** A predecessor that never comes (its node died between commit and publish, or
//!   Redis lost it) holds its successors [`GAP_WAIT`] at most; they then go out in id order,
//!   counted in `chatwire_order_gap_total`. Messages without `prev` (from Node nodes or
//!   `@socket.io/redis-emitter`, or a store that does not know it) are held [`HOLD`] as before,
//!   and while another node sent such messages in the last [`REMOTE_WINDOW`] nobody's chain is
//!   trusted in that conversation (those writers do not keep it): everything is held [`HOLD`]
//!   and released in id order. A message arriving after a higher id of its conversation was
//!   released is delivered at once (`chatwire_order_late_total`). One committed just before a
//!   node started and published just after can be overtaken there (it is below the floor).
//!
//! Held messages are bounded: [`HELD_MAX`] per conversation (past it the lowest goes out).

use std::collections::btree_map::Entry as Slot;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatwire_protocol::socket::TextFrame;

use crate::msg::Published;
use crate::rooms::RoomName;

/// Longest wait for lower ids of a message that names no predecessor.
pub const HOLD: Duration = Duration::from_millis(100);
/// Longest wait for a named predecessor. It was committed after this node started (older ones
/// are not waited for), so it comes unless its node died before publishing it or Redis lost
/// it; waiting costs nothing when it comes (the message goes out on its arrival), so this only
/// bounds those faults, and must exceed the slowest cross-node delivery under load.
pub const GAP_WAIT: Duration = Duration::from_secs(1);
/// A conversation had another node's message (without `prev`: its chain is not trusted) this
/// recently.
pub const REMOTE_WINDOW: Duration = Duration::from_secs(30);
/// Most messages held per conversation; past it the lowest goes out.
pub const HELD_MAX: usize = 1024;
/// Conversations whose state is kept before idle ones are forgotten.
const ROOMS_SOFT: usize = 4096;
/// Past this many, even recent ones without held messages are forgotten.
const ROOMS_MAX: usize = 65_536;
/// Watermark buckets: ids seen within this span share one sample.
const SAMPLE_SPAN: Duration = Duration::from_millis(25);
/// Most watermark samples kept (older ones are folded into the floor).
const SAMPLES_MAX: usize = 16;
/// Counter: messages that arrived after a higher id had been released.
pub const ORDER_LATE: &str = "chatwire_order_late_total";
/// Counter: messages released after [`GAP_WAIT`] without their predecessor, which never came.
pub const ORDER_GAP: &str = "chatwire_order_gap_total";

/// A message waiting for its turn.
#[derive(Debug)]
pub enum Held {
    /// Committed on this node.
    Local(Box<Published>),
    /// Another node's `message:new`.
    Remote(TextFrame),
}

/// One held message.
#[derive(Debug)]
struct Waiting {
    /// Released at this instant even if its predecessor is not out.
    until: Instant,
    /// Its conversation's previous id, when trusted.
    prev: Option<i64>,
    /// The message.
    item: Held,
}

/// One conversation's ordering state.
#[derive(Debug)]
struct RoomOrder {
    /// When its last message came.
    last_seen: Instant,
    /// Another node's message came this recently: this node's messages without `prev` wait.
    remote_until: Instant,
    /// Another node's message without `prev` came this recently: no chain is trusted.
    unchained_until: Instant,
    /// Highest id released (0: none yet); a message below it is late.
    released: i64,
    /// The shard's watermark when the room was first seen: predecessors at or below it are not
    /// waited for.
    floor: i64,
    /// Waiting messages by id.
    held: BTreeMap<i64, Waiting>,
}

impl RoomOrder {
    /// True when `prev` names a message at or below the last one released (or the floor).
    fn follows(&self, prev: Option<i64>) -> bool {
        follows(prev, self.released.max(self.floor))
    }

    /// Hands `item` (id `id`) out.
    fn release_one(&mut self, id: i64, out: &mut Vec<Held>, item: Held) {
        out.push(item);
        self.released = self.released.max(id);
    }

    /// Releases, lowest id first, what follows what is out or waited long enough.
    fn release(&mut self, now: Instant, out: &mut Vec<Held>) {
        while let Some(first) = self.held.first_entry() {
            let w = first.get();
            let follows = follows(w.prev, self.released.max(self.floor));
            if !follows && w.until > now {
                break;
            }
            if !follows && w.prev.is_some() {
                metrics::counter!(ORDER_GAP).increment(1);
            }
            let id = *first.key();
            let item = first.remove().item;
            self.release_one(id, out, item);
        }
        while self.held.len() > HELD_MAX {
            if let Some((id, w)) = self.held.pop_first() {
                self.release_one(id, out, w.item);
            }
        }
    }
}

/// True when `prev` names a message at or below `released`.
fn follows(prev: Option<i64>, released: i64) -> bool {
    prev.is_some_and(|p| p <= released)
}

/// The highest id a shard saw at least [`HOLD`] ago: a message drawn before it had that long to
/// arrive.
#[derive(Debug, Default)]
struct Watermark {
    /// Highest id seen at least [`HOLD`] ago.
    floor: i64,
    /// Recent ids: (first seen, last seen, highest id) per [`SAMPLE_SPAN`].
    samples: VecDeque<(Instant, Instant, i64)>,
}

impl Watermark {
    fn saw(&mut self, id: i64, now: Instant) {
        match self.samples.back_mut() {
            Some((first, last, max)) if now.saturating_duration_since(*first) < SAMPLE_SPAN => {
                *last = now;
                *max = (*max).max(id);
            }
            _ => {
                if self.samples.len() >= SAMPLES_MAX
                    && let Some((_, _, max)) = self.samples.pop_front()
                {
                    self.floor = self.floor.max(max);
                }
                self.samples.push_back((now, now, id));
            }
        }
    }

    fn floor(&mut self, now: Instant) -> i64 {
        while let Some(&(_, last, max)) = self.samples.front() {
            if now.saturating_duration_since(last) < HOLD {
                break;
            }
            self.floor = self.floor.max(max);
            self.samples.pop_front();
        }
        self.floor
    }
}

/// The ordering state of the rooms a shard owns.
#[derive(Debug, Default)]
pub struct Order {
    /// Conversation rooms that had messages.
    rooms: HashMap<RoomName, RoomOrder>,
    /// Rooms with held messages.
    pending: HashSet<RoomName>,
    /// Where a room seen for the first time starts.
    mark: Watermark,
    /// Room count past which idle rooms are forgotten next.
    prune_at: usize,
}

impl Order {
    /// The state of a shard started when `newest` was the newest message id: every message up
    /// to it was committed before, so a predecessor at or below it is not waited for.
    pub fn starting_at(newest: i64) -> Self {
        let mut order = Order::default();
        order.mark.floor = newest.max(0);
        order
    }

    /// The highest id of `room` handed out so far (None: no state for the room, so nothing
    /// handed out lately).
    pub fn released(&self, room: &str) -> Option<i64> {
        self.rooms.get(room).map(|st| st.released)
    }

    /// A message `id` of `room`, whose conversation's previous id is `prev` (None: unknown),
    /// from `source` (None: this node). Returns what may go out now, in order (it, and held
    /// messages it unblocked); the rest waits for [`Order::due`].
    pub fn admit(
        &mut self,
        room: &RoomName,
        id: i64,
        prev: Option<i64>,
        source: Option<Arc<str>>,
        item: Held,
        now: Instant,
    ) -> Vec<Held> {
        self.mark.saw(id, now);
        if !self.rooms.contains_key(room) {
            self.prune(now);
            let floor = self.mark.floor(now);
            self.rooms.insert(
                room.clone(),
                RoomOrder {
                    last_seen: now,
                    remote_until: now,
                    unchained_until: now,
                    released: 0,
                    floor,
                    held: BTreeMap::new(),
                },
            );
        }
        let Some(st) = self.rooms.get_mut(room) else {
            return vec![item];
        };
        st.last_seen = now;
        if source.is_some() {
            st.remote_until = now + REMOTE_WINDOW;
            if prev.is_none() {
                st.unchained_until = now + REMOTE_WINDOW;
            }
        }
        // Writers that keep no chain share this conversation: nobody's is complete.
        let prev = if now < st.unchained_until { None } else { prev };
        if id <= st.released {
            metrics::counter!(ORDER_LATE).increment(1);
            return vec![item];
        }
        if st.held.is_empty()
            && (st.follows(prev) || (prev.is_none() && source.is_none() && now >= st.remote_until))
        {
            st.released = st.released.max(id);
            return vec![item];
        }
        let wait = if prev.is_some() { GAP_WAIT } else { HOLD };
        let item = match st.held.entry(id) {
            Slot::Vacant(slot) => {
                slot.insert(Waiting {
                    until: now + wait,
                    prev,
                    item,
                });
                None
            }
            // The same id twice: never replace what waits.
            Slot::Occupied(_) => Some(item),
        };
        let mut out: Vec<Held> = item.into_iter().collect();
        st.release(now, &mut out);
        if st.held.is_empty() {
            self.pending.remove(room);
        } else {
            self.pending.insert(room.clone());
        }
        out
    }

    /// Messages whose wait is over (or whose predecessor is out), per room in id order.
    pub fn due(&mut self, now: Instant) -> Vec<(RoomName, Held)> {
        let mut out = Vec::new();
        let mut items = Vec::new();
        let rooms = &mut self.rooms;
        self.pending.retain(|room| {
            let Some(st) = rooms.get_mut(room) else {
                return false;
            };
            st.release(now, &mut items);
            out.extend(items.drain(..).map(|item| (room.clone(), item)));
            !st.held.is_empty()
        });
        out
    }

    /// True when messages are held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Keeps the room states bounded: past [`ROOMS_SOFT`], forgets rooms idle for
    /// [`REMOTE_WINDOW`] (they start again from the watermark, which is past their last id by
    /// then); past [`ROOMS_MAX`], every room with nothing held.
    fn prune(&mut self, now: Instant) {
        if self.rooms.len() < self.prune_at.max(ROOMS_SOFT) {
            return;
        }
        self.rooms.retain(|_, st| {
            !st.held.is_empty() || now.saturating_duration_since(st.last_seen) < REMOTE_WINDOW
        });
        if self.rooms.len() >= ROOMS_MAX {
            self.rooms.retain(|_, st| !st.held.is_empty());
        }
        // Amortized: the next sweep once the map has doubled.
        self.prune_at = self.rooms.len() * 2;
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

    fn id_of(h: &Held) -> i64 {
        match h {
            Held::Remote(f) => {
                let text = String::from_utf8_lossy(f.as_bytes()).into_owned();
                let digits: String = text
                    .split("\"id\":")
                    .nth(1)
                    .unwrap_or_default()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().unwrap_or(-1)
            }
            Held::Local(p) => p.id,
        }
    }

    fn ids(items: &[Held]) -> Vec<i64> {
        items.iter().map(id_of).collect()
    }

    fn due_ids(items: &[(RoomName, Held)]) -> Vec<i64> {
        items.iter().map(|(_, h)| id_of(h)).collect()
    }

    fn room() -> RoomName {
        "conversation:1".into()
    }

    fn node(name: &str) -> Option<Arc<str>> {
        Some(name.into())
    }

    #[test]
    fn single_node_conversation_is_never_held() {
        let mut o = Order::default();
        let t = Instant::now();
        // This node's messages, chained from the conversation's first.
        for (id, prev) in [(3, 0), (8, 3), (9, 8), (20, 9)] {
            assert_eq!(
                ids(&o.admit(&room(), id, Some(prev), None, frame(id), t)),
                [id]
            );
        }
        // And without a chain (a store that does not know it): no other node, no wait.
        for id in [21, 22] {
            assert_eq!(ids(&o.admit(&room(), id, None, None, frame(id), t)), [id]);
        }
        assert!(!o.has_pending());
    }

    #[test]
    fn chain_in_order_goes_straight_out_from_every_node() {
        let mut o = Order::default();
        let t = Instant::now();
        let steps = [
            (1, 0, "a"),
            (2, 1, "b"),
            (4, 2, "a"),
            (5, 4, "b"),
            (7, 5, "b"),
        ];
        for (id, prev, from) in steps {
            let source = (from == "b").then(|| Arc::from(from));
            assert_eq!(
                ids(&o.admit(&room(), id, Some(prev), source, frame(id), t)),
                [id]
            );
        }
        assert!(!o.has_pending());
    }

    #[test]
    fn a_gap_waits_for_its_fill_and_no_longer() {
        let mut o = Order::default();
        let t = Instant::now();
        assert_eq!(ids(&o.admit(&room(), 1, Some(0), None, frame(1), t)), [1]);
        // This node's 3 and 4 overtook another node's 2 on its way here.
        assert!(o.admit(&room(), 3, Some(2), None, frame(3), t).is_empty());
        assert!(o.admit(&room(), 4, Some(3), None, frame(4), t).is_empty());
        assert!(o.has_pending());
        assert!(o.due(t + HOLD / 2).is_empty());
        // 2 arrives: it and everything it held go out at once, in id order.
        let out = o.admit(&room(), 2, Some(1), node("b"), frame(2), t + HOLD / 2);
        assert_eq!(ids(&out), [2, 3, 4]);
        assert!(!o.has_pending());
    }

    #[test]
    fn a_predecessor_that_never_comes_holds_for_gap_wait_only() {
        let mut o = Order::default();
        let t = Instant::now();
        assert_eq!(ids(&o.admit(&room(), 1, Some(0), None, frame(1), t)), [1]);
        // 2's node died after its commit: 3 and 4 wait for it, GAP_WAIT at most.
        assert!(
            o.admit(&room(), 3, Some(2), node("b"), frame(3), t)
                .is_empty()
        );
        let later = t + Duration::from_millis(10);
        assert!(
            o.admit(&room(), 4, Some(3), None, frame(4), later)
                .is_empty()
        );
        assert!(o.due(t + GAP_WAIT - Duration::from_millis(1)).is_empty());
        assert_eq!(due_ids(&o.due(t + GAP_WAIT)), [3, 4]);
        assert!(!o.has_pending());
        // Chained after the gap: straight out again.
        assert_eq!(
            ids(&o.admit(&room(), 5, Some(4), None, frame(5), t + GAP_WAIT)),
            [5]
        );
        // 2 shows up after all: too late for its turn, out at once.
        assert_eq!(
            ids(&o.admit(&room(), 2, Some(1), node("b"), frame(2), t + GAP_WAIT)),
            [2]
        );
    }

    #[test]
    fn held_messages_are_bounded() {
        let mut o = Order::default();
        let t = Instant::now();
        assert_eq!(o.admit(&room(), 1, Some(0), None, frame(1), t).len(), 1);
        // Every predecessor missing: past HELD_MAX the lowest go out, one per new arrival.
        let mut out = Vec::new();
        for n in 0..(HELD_MAX as i64 + 5) {
            let id = 3 + 2 * n;
            out.extend(o.admit(&room(), id, Some(id - 1), None, frame(id), t));
        }
        assert_eq!(ids(&out), [3, 5, 7, 9, 11]);
    }

    #[test]
    fn remote_messages_without_prev_keep_the_bounded_hold() {
        let mut o = Order::default();
        let t = Instant::now();
        assert_eq!(ids(&o.admit(&room(), 1, Some(0), None, frame(1), t)), [1]);
        // A Node node's 3 (no chain), then this node's 2: both held, released in id order.
        assert!(
            o.admit(&room(), 3, None, node("node"), frame(3), t)
                .is_empty()
        );
        assert!(o.admit(&room(), 2, Some(1), None, frame(2), t).is_empty());
        assert!(o.due(t + HOLD / 2).is_empty());
        assert_eq!(due_ids(&o.due(t + HOLD)), [2, 3]);
        // The Node node does not keep the chain: even a chained message waits out the hold
        // while it writes here.
        let t2 = t + HOLD;
        assert!(o.admit(&room(), 5, Some(3), None, frame(5), t2).is_empty());
        assert_eq!(due_ids(&o.due(t2 + HOLD)), [5]);
        // Too late for its turn: out at once, counted.
        assert_eq!(
            ids(&o.admit(&room(), 4, None, node("node"), frame(4), t2 + HOLD)),
            [4]
        );
        // Once it has been quiet for the window, chains count again.
        let t3 = t2 + HOLD + REMOTE_WINDOW;
        assert_eq!(ids(&o.admit(&room(), 6, Some(5), None, frame(6), t3)), [6]);
    }

    #[test]
    fn predecessors_from_before_the_start_are_not_waited_for() {
        let mut o = Order::starting_at(500);
        let t = Instant::now();
        // A conversation with history from before this node started.
        assert_eq!(
            ids(&o.admit(&room(), 510, Some(480), None, frame(510), t)),
            [510]
        );
        // One whose predecessor was committed since (on its way from another node).
        let other: RoomName = "conversation:2".into();
        assert!(
            o.admit(&other, 520, Some(505), None, frame(520), t)
                .is_empty()
        );
        assert_eq!(
            ids(&o.admit(&other, 505, Some(400), node("b"), frame(505), t)),
            [505, 520]
        );
    }

    #[test]
    fn a_room_first_seen_waits_only_for_a_predecessor_that_may_be_in_flight() {
        let mut o = Order::default();
        let t = Instant::now();
        let other: RoomName = "conversation:2".into();
        // Traffic elsewhere: ids up to 100 seen, then HOLD passes.
        assert_eq!(o.admit(&other, 100, Some(0), None, frame(100), t).len(), 1);
        let t2 = t + HOLD;
        // A conversation with older history: its predecessor had time to arrive, no wait.
        assert_eq!(
            ids(&o.admit(&room(), 120, Some(50), None, frame(120), t2)),
            [120]
        );
        // One whose predecessor was drawn after the watermark: waits for it.
        let third: RoomName = "conversation:3".into();
        assert!(
            o.admit(&third, 130, Some(125), None, frame(130), t2)
                .is_empty()
        );
        let out = o.admit(&third, 125, Some(90), node("b"), frame(125), t2);
        assert_eq!(ids(&out), [125, 130]);
        // A fresh conversation starts at 0: never waits.
        let fresh: RoomName = "conversation:4".into();
        assert_eq!(
            o.admit(&fresh, 140, Some(0), node("b"), frame(140), t2)
                .len(),
            1
        );
        assert!(!o.has_pending());
    }
}
