//! Presence over the cluster: the users with a socket on this node, and on every other node as
//! their heartbeats, snapshots and deltas tell. A user is online when any node has a socket of
//! theirs. Each node announces every cluster-wide change it sees to its own sockets, so each
//! client hears each change once, from its own node.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chatwire_store::UserKey;

/// One other node.
#[derive(Debug)]
struct Node {
    /// When it was last heard from.
    seen: Instant,
    /// Its online users.
    users: HashSet<UserKey>,
}

/// A change of a user's cluster-wide presence: (user, online now).
pub type Change = (UserKey, bool);

/// Cluster presence as this node knows it.
#[derive(Debug, Default)]
pub struct ClusterPresence {
    /// Users with a socket on this node.
    local: HashSet<UserKey>,
    /// Other nodes by uid.
    nodes: HashMap<String, Node>,
    /// For each user online on other nodes: on how many.
    remote: HashMap<UserKey, u32>,
}

impl ClusterPresence {
    /// Online anywhere.
    pub fn is_online(&self, user: UserKey) -> bool {
        self.local.contains(&user) || self.remote.contains_key(&user)
    }

    /// The local first socket (`online`) or last; true when that changes the cluster-wide state.
    pub fn local_change(&mut self, user: UserKey, online: bool) -> bool {
        let before = self.is_online(user);
        if online {
            self.local.insert(user);
        } else {
            self.local.remove(&user);
        }
        before != self.is_online(user)
    }

    /// Users with a socket here (the snapshot other nodes ask for).
    pub fn local_users(&self) -> Vec<UserKey> {
        self.local.iter().copied().collect()
    }

    /// Marks `node` as alive; true when it was unknown (its snapshot is needed).
    pub fn seen(&mut self, node: &str, now: Instant) -> bool {
        match self.nodes.get_mut(node) {
            Some(n) => {
                n.seen = now;
                false
            }
            None => {
                self.nodes.insert(
                    node.to_owned(),
                    Node {
                        seen: now,
                        users: HashSet::new(),
                    },
                );
                true
            }
        }
    }

    /// Number of other nodes known alive.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// True when `node` is known alive.
    pub fn knows(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// A delta from `node`.
    pub fn remote_change(
        &mut self,
        node: &str,
        user: UserKey,
        online: bool,
        now: Instant,
    ) -> Option<Change> {
        self.seen(node, now);
        let before = self.is_online(user);
        let n = self.nodes.get_mut(node)?;
        if online {
            if n.users.insert(user) {
                *self.remote.entry(user).or_insert(0) += 1;
            }
        } else if n.users.remove(&user) {
            self.remote_dec(user);
        }
        let after = self.is_online(user);
        (before != after).then_some((user, after))
    }

    /// `node`'s full list of online users replaces what was known of it.
    pub fn snapshot(&mut self, node: &str, users: Vec<UserKey>, now: Instant) -> Vec<Change> {
        let old = self.forget(node);
        self.seen(node, now);
        let new: HashSet<UserKey> = users.into_iter().collect();
        for u in &new {
            *self.remote.entry(*u).or_insert(0) += 1;
        }
        let mut changes = Vec::new();
        for u in old.difference(&new) {
            if !self.is_online(*u) {
                changes.push((*u, false));
            }
        }
        for u in new.difference(&old) {
            // It was offline before unless this node or another had it.
            let elsewhere = self.local.contains(u) || self.remote.get(u).is_some_and(|c| *c > 1);
            if !elsewhere {
                changes.push((*u, true));
            }
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.users = new;
        }
        changes
    }

    /// Nodes silent for longer than `timeout` are dead: their users count no more.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Change> {
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| now.duration_since(n.seen) > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let mut changes = Vec::new();
        for node in dead {
            for u in self.forget(&node) {
                if !self.is_online(u) {
                    changes.push((u, false));
                }
            }
            self.nodes.remove(&node);
        }
        changes
    }

    /// Removes `node`'s users from the counts; returns them.
    fn forget(&mut self, node: &str) -> HashSet<UserKey> {
        let users = self
            .nodes
            .get_mut(node)
            .map(|n| std::mem::take(&mut n.users))
            .unwrap_or_default();
        for u in &users {
            self.remote_dec(*u);
        }
        users
    }

    fn remote_dec(&mut self, user: UserKey) {
        match self.remote.get_mut(&user) {
            Some(c) if *c > 1 => *c -= 1,
            _ => {
                self.remote.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatwire_store::UserType;

    fn u(id: i64) -> UserKey {
        UserKey {
            user_type: UserType::Brand,
            id,
        }
    }

    #[test]
    fn online_on_first_node_offline_after_last() {
        let now = Instant::now();
        let mut p = ClusterPresence::default();
        assert!(p.local_change(u(1), true));
        assert_eq!(p.remote_change("b", u(1), true, now), None);
        assert!(!p.local_change(u(1), false));
        assert_eq!(p.remote_change("b", u(1), false, now), Some((u(1), false)));
        assert_eq!(p.remote_change("b", u(2), true, now), Some((u(2), true)));
    }

    #[test]
    fn snapshot_and_expiry() {
        let now = Instant::now();
        let mut p = ClusterPresence::default();
        p.local_change(u(1), true);
        let mut c = p.snapshot("b", vec![u(1), u(2)], now);
        c.sort();
        assert_eq!(c, vec![(u(2), true)]);
        assert_eq!(p.snapshot("b", vec![u(1), u(2)], now), vec![]);
        assert_eq!(p.snapshot("b", vec![u(1)], now), vec![(u(2), false)]);
        p.remote_change("c", u(3), true, now + Duration::from_secs(9));
        let later = now + Duration::from_secs(11);
        let c = p.expire(later, Duration::from_secs(10));
        assert!(c.is_empty(), "u1 is still local: {c:?}");
        assert_eq!(p.node_count(), 1);
        assert!(p.is_online(u(3)));
        assert!(!p.is_online(u(2)));
        let c = p.expire(later + Duration::from_secs(10), Duration::from_secs(10));
        assert_eq!(c, vec![(u(3), false)]);
    }
}
