//! Conversation rooms over the cluster: which users have a socket in which conversation room on
//! this node and, as their deltas and snapshots tell, on every other node. It lets a node judge
//! `message:notification` ("participants with no socket in that room") cluster-wide: a user in
//! the room on any node gets no notification on any node.
//!
//! Each node publishes a delta when a user's first socket on it joins a conversation room or
//! its last one there leaves (seen by the room's owner shard), and a snapshot of every such
//! pair when another node says hello. A node forgets another node's pairs when the presence
//! gives up on it (no heartbeat for the node timeout). The maps hold plain
//! (conversation id, user) pairs, ~32 bytes each, and are capped: past the cap new pairs are
//! not kept and counted (a user then may get a notification while in the room elsewhere,
//! never miss one).

use std::collections::{HashMap, HashSet};

use chatwire_store::UserKey;

/// A user with a socket in a conversation's room.
pub(super) type Pair = (i64, UserKey);

/// The conversation of a room name `conversation:<id>` (None for any other room).
pub(super) fn conversation_of(room: &str) -> Option<i64> {
    room.strip_prefix("conversation:")?.parse().ok()
}

/// Conversation rooms over the cluster as this node knows them.
#[derive(Debug)]
pub struct ClusterRooms {
    /// Pairs of this node (the snapshot other nodes ask for).
    local: HashSet<Pair>,
    /// Other nodes' pairs, by node uid.
    nodes: HashMap<String, HashSet<Pair>>,
    /// Pairs kept over `local` and `nodes` together.
    len: usize,
    /// Most pairs kept.
    cap: usize,
}

/// What applying a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// Nothing to change (already known).
    Same,
    /// Not kept: the cap is reached.
    Capped,
}

impl ClusterRooms {
    /// Empty, keeping at most `cap` pairs.
    pub fn new(cap: usize) -> Self {
        ClusterRooms {
            local: HashSet::new(),
            nodes: HashMap::new(),
            len: 0,
            cap,
        }
    }

    /// Pairs kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no pair is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn change(
        set: &mut HashSet<Pair>,
        len: &mut usize,
        cap: usize,
        p: Pair,
        in_room: bool,
    ) -> Applied {
        if in_room {
            if set.contains(&p) {
                Applied::Same
            } else if *len >= cap {
                Applied::Capped
            } else {
                set.insert(p);
                *len += 1;
                Applied::Changed
            }
        } else if set.remove(&p) {
            *len -= 1;
            Applied::Changed
        } else {
            Applied::Same
        }
    }

    /// This node's user joined (`in_room`) or left a conversation room.
    pub fn local_change(&mut self, p: Pair, in_room: bool) -> Applied {
        Self::change(&mut self.local, &mut self.len, self.cap, p, in_room)
    }

    /// This node's pairs.
    pub fn local_pairs(&self) -> Vec<Pair> {
        self.local.iter().copied().collect()
    }

    /// A delta from `node`.
    pub fn remote_change(&mut self, node: &str, p: Pair, in_room: bool) -> Applied {
        if !in_room && !self.nodes.contains_key(node) {
            return Applied::Same;
        }
        let set = self.nodes.entry(node.to_owned()).or_default();
        Self::change(set, &mut self.len, self.cap, p, in_room)
    }

    /// A part of `node`'s snapshot; the first part replaces what was known of it. Returns the
    /// pairs not kept (cap).
    pub fn snapshot(&mut self, node: &str, pairs: Vec<Pair>, first: bool) -> usize {
        if first {
            self.forget(node);
        }
        let set = self.nodes.entry(node.to_owned()).or_default();
        let mut capped = 0;
        for p in pairs {
            if Self::change(set, &mut self.len, self.cap, p, true) == Applied::Capped {
                capped += 1;
            }
        }
        capped
    }

    /// True when `user` has a socket in the conversation's room on another node.
    pub fn elsewhere(&self, conversation: i64, user: UserKey) -> bool {
        let p = (conversation, user);
        self.nodes.values().any(|set| set.contains(&p))
    }

    /// The other nodes with pairs kept.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Forgets every other node `alive` says no to (expired by the presence).
    pub fn retain_nodes(&mut self, alive: impl Fn(&str) -> bool) {
        let dead: Vec<String> = self.nodes.keys().filter(|n| !alive(n)).cloned().collect();
        for node in dead {
            self.forget(&node);
        }
    }

    fn forget(&mut self, node: &str) {
        if let Some(set) = self.nodes.remove(node) {
            self.len -= set.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatwire_store::UserType;

    fn u(id: i64) -> UserKey {
        UserKey {
            user_type: UserType::Influencer,
            id,
        }
    }

    #[test]
    fn a_user_in_the_room_on_another_node_is_not_absent() {
        let mut r = ClusterRooms::new(100);
        assert_eq!(r.remote_change("b", (4, u(1)), true), Applied::Changed);
        assert_eq!(r.remote_change("b", (4, u(1)), true), Applied::Same);
        assert!(r.elsewhere(4, u(1)));
        assert!(!r.elsewhere(5, u(1)), "another conversation");
        assert!(!r.elsewhere(4, u(2)), "another user");
        // Its own node's rooms do not count as elsewhere.
        r.local_change((5, u(1)), true);
        assert!(!r.elsewhere(5, u(1)));
        assert_eq!(r.remote_change("b", (4, u(1)), false), Applied::Changed);
        assert!(!r.elsewhere(4, u(1)));
        assert_eq!(r.remote_change("c", (4, u(1)), false), Applied::Same);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn snapshots_replace_and_dead_nodes_are_forgotten() {
        let mut r = ClusterRooms::new(100);
        r.remote_change("b", (1, u(1)), true);
        assert_eq!(r.snapshot("b", vec![(2, u(2))], true), 0);
        assert_eq!(r.snapshot("b", vec![(3, u(3))], false), 0);
        assert!(!r.elsewhere(1, u(1)) && r.elsewhere(2, u(2)) && r.elsewhere(3, u(3)));
        r.remote_change("c", (1, u(1)), true);
        r.retain_nodes(|n| n == "c");
        assert!(!r.elsewhere(2, u(2)) && r.elsewhere(1, u(1)));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_cap_bounds_every_map() {
        let mut r = ClusterRooms::new(2);
        assert_eq!(r.local_change((1, u(1)), true), Applied::Changed);
        assert_eq!(r.remote_change("b", (1, u(2)), true), Applied::Changed);
        assert_eq!(r.remote_change("b", (1, u(3)), true), Applied::Capped);
        assert_eq!(r.snapshot("c", vec![(1, u(4)), (1, u(5))], true), 2);
        assert_eq!(r.len(), 2);
        // Room again once a pair is gone.
        r.local_change((1, u(1)), false);
        assert_eq!(r.remote_change("b", (1, u(3)), true), Applied::Changed);
        assert_eq!(
            conversation_of("conversation:12"),
            Some(12),
            "only conversation rooms are shared"
        );
        assert_eq!(conversation_of("extra"), None);
    }
}
