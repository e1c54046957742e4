//! The fleet of chatwire nodes behind one load balancer: this node's id and the address of every
//! node, from `NODE_ID` and `CLUSTER_NODES`. Every session id names the node that owns it
//! (`Sid::node`), so a polling request or a WebSocket upgrade that a load balancer without
//! sticky sessions sends to another node is passed on to the owner (`http/forward.rs`).
//!
//! The list is static (the same `CLUSTER_NODES` on every node); host names are resolved when a
//! request is forwarded, not at start, so a node whose address changes keeps its name.

use chatwire_protocol::engine::sid::Sid;

use crate::config::Config;

/// Largest node id: the sid holds 12 bits for it.
pub const MAX_NODE_ID: u16 = 4095;

/// A `NODE_ID` / `CLUSTER_NODES` setting the server refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// An entry of `CLUSTER_NODES` is not `id=host:port`.
    #[error("CLUSTER_NODES entry {0:?} is not id=host:port (id 1..=4095, e.g. 2=10.0.0.12:3000)")]
    BadEntry(String),
    /// Two entries of `CLUSTER_NODES` share an id.
    #[error("CLUSTER_NODES names node {0} twice: every node needs its own id")]
    DuplicateId(u16),
    /// `NODE_ID` is 0 or over [`MAX_NODE_ID`].
    #[error("NODE_ID={0} is out of range: 1..=4095")]
    IdOutOfRange(u16),
    /// `CLUSTER_NODES` is set and this node's id is neither given nor found.
    #[error(
        "CLUSTER_NODES is set but this node's id is unknown: set NODE_ID, or list this node as \
         <id>={0} (its HOST:PORT)"
    )]
    NoId(String),
    /// `NODE_ID` is set but not listed in `CLUSTER_NODES`.
    #[error("NODE_ID={0} is not in CLUSTER_NODES: list every node, this one included")]
    NotListed(u16),
}

/// Where a session lives, as far as this node knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// On this node (or there is no fleet).
    Here,
    /// On the node at this address (`host:port`).
    Node(u16, &'a str),
    /// On a node this one does not know: the session is unknown here.
    Unknown,
}

/// This node's id and the other nodes' addresses.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// This node's id, written into every sid it makes; 0 when there is no fleet.
    pub node: u16,
    /// Every node of the fleet but this one: id and `host:port`, sorted by id.
    peers: Vec<(u16, String)>,
}

impl Fleet {
    /// Reads `NODE_ID` and `CLUSTER_NODES`. Without `CLUSTER_NODES` there is no fleet: node id
    /// `NODE_ID` (default 0) and every session is local. With it, the id defaults to the entry
    /// whose address is this node's `HOST:PORT`.
    pub fn from_config(config: &Config) -> Result<Fleet, FleetError> {
        if let Some(id) = config.node_id
            && !(1..=MAX_NODE_ID).contains(&id)
        {
            return Err(FleetError::IdOutOfRange(id));
        }
        let mut nodes: Vec<(u16, String)> = Vec::with_capacity(config.cluster_nodes.len());
        for entry in config.cluster_nodes.iter().map(|e| e.trim()) {
            if entry.is_empty() {
                continue;
            }
            let (id, addr) =
                parse_entry(entry).ok_or_else(|| FleetError::BadEntry(entry.into()))?;
            if nodes.iter().any(|(n, _)| *n == id) {
                return Err(FleetError::DuplicateId(id));
            }
            nodes.push((id, addr));
        }
        if nodes.is_empty() {
            return Ok(Fleet {
                node: config.node_id.unwrap_or(0),
                peers: Vec::new(),
            });
        }
        let me = config.listen_addr().to_string();
        let node = match config.node_id {
            Some(id) if nodes.iter().any(|(n, _)| *n == id) => id,
            Some(id) => return Err(FleetError::NotListed(id)),
            None => nodes
                .iter()
                .find(|(_, addr)| *addr == me)
                .map(|(n, _)| *n)
                .ok_or(FleetError::NoId(me))?,
        };
        nodes.retain(|(n, _)| *n != node);
        nodes.sort_unstable();
        Ok(Fleet { node, peers: nodes })
    }

    /// Whether other nodes are configured.
    pub fn is_fleet(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Where the session `sid` lives.
    pub fn owner(&self, sid: &Sid) -> Owner<'_> {
        let node = sid.node();
        if !self.is_fleet() || node == self.node {
            return Owner::Here;
        }
        match self.peers.binary_search_by_key(&node, |(n, _)| *n) {
            Ok(i) => Owner::Node(node, &self.peers[i].1),
            Err(_) => Owner::Unknown,
        }
    }
}

/// `id=host:port` with id in 1..=4095 and a numeric port.
fn parse_entry(entry: &str) -> Option<(u16, String)> {
    let (id, addr) = entry.split_once('=')?;
    let id: u16 = id.trim().parse().ok()?;
    let addr = addr.trim();
    let (host, port) = addr.rsplit_once(':')?;
    if !(1..=MAX_NODE_ID).contains(&id) || host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    Some((id, addr.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(node_id: Option<u16>, nodes: &[&str], port: u16) -> Config {
        let mut c = Config::for_tests();
        c.node_id = node_id;
        c.port = port;
        c.cluster_nodes = nodes.iter().map(|s| (*s).to_owned()).collect();
        c
    }

    #[test]
    fn without_a_list_every_session_is_here() {
        let fleet = Fleet::from_config(&config(None, &[], 3000)).unwrap();
        assert_eq!(fleet.node, 0);
        assert_eq!(fleet.owner(&Sid::new_on_node([7; 12], 0, 9)), Owner::Here);
    }

    #[test]
    fn the_id_defaults_to_the_entry_with_this_address() {
        let nodes = ["1=127.0.0.1:3001", "2=127.0.0.1:3002", "3=db.internal:3003"];
        let fleet = Fleet::from_config(&config(None, &nodes, 3002)).unwrap();
        assert_eq!(fleet.node, 2);
        assert_eq!(fleet.owner(&Sid::new_on_node([7; 12], 1, 2)), Owner::Here);
        assert_eq!(
            fleet.owner(&Sid::new_on_node([7; 12], 1, 3)),
            Owner::Node(3, "db.internal:3003")
        );
        assert_eq!(
            fleet.owner(&Sid::new_on_node([7; 12], 1, 4)),
            Owner::Unknown
        );
    }

    #[test]
    fn bad_lists_are_refused_with_what_to_fix() {
        let e = |id, nodes: &[&str]| Fleet::from_config(&config(id, nodes, 3000)).unwrap_err();
        assert_eq!(e(None, &["1=a:1", "x"]), FleetError::BadEntry("x".into()));
        assert_eq!(e(None, &["1=a"]), FleetError::BadEntry("1=a".into()));
        assert_eq!(e(None, &["0=a:1"]), FleetError::BadEntry("0=a:1".into()));
        assert_eq!(e(None, &["1=a:1", "1=b:2"]), FleetError::DuplicateId(1));
        assert_eq!(e(Some(5), &["1=a:1"]), FleetError::NotListed(5));
        assert_eq!(e(Some(4096), &[]), FleetError::IdOutOfRange(4096));
        assert!(matches!(e(None, &["1=a:1"]), FleetError::NoId(_)));
    }
}
