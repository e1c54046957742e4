//! `ShardMsg`: everything one shard asks of another, and the small typed handle used to send it.
//!
//! Shards share no mutable state; they talk only through these bounded `flume` channels. Each
//! variant is small (large payloads are `Bytes`/`Arc`/`Box`), so a full channel costs little.

use std::sync::Arc;

use bytes::Bytes;
use chatwire_protocol::engine::sid::Sid;

use chatwire_cluster::{ClusterMsg, Published};
use chatwire_store::NewMessage;

use crate::route::Route;

/// A polling request forwarded to the shard that owns its session.
#[derive(Debug)]
pub struct PollForward {
    /// The session id from the query.
    pub sid: Sid,
    /// True for POST (body carries packets), false for GET (long poll).
    pub is_post: bool,
    /// The request body (POST), already bounded by `max_payload`.
    pub body: Bytes,
    /// Where to send the HTTP response (status, body).
    pub reply: tokio::sync::oneshot::Sender<(u16, Bytes)>,
}

/// A WebSocket upgrade for a session owned by another shard: the raw TCP stream moves there.
#[derive(Debug)]
pub struct UpgradeForward {
    /// The session id from the query.
    pub sid: Sid,
    /// The TCP stream after the `101 Switching Protocols` response.
    pub stream: std::net::TcpStream,
    /// Bytes hyper read past the HTTP request (start of the first WebSocket frame).
    pub read_buf: Bytes,
}

/// Messages between shards.
#[derive(Debug)]
pub enum ShardMsg {
    /// A polling request for a session owned here.
    Poll(Box<PollForward>),
    /// A WebSocket for a session owned here.
    Upgrade(Box<UpgradeForward>),
    /// Close a session owned here (its client broke a limit on another shard).
    CloseSession(Sid),
    /// May a WebSocket join this (local) session to upgrade it? Starts the probe when yes.
    UpgradeCheck {
        /// The session.
        sid: Sid,
        /// Answer.
        reply: tokio::sync::oneshot::Sender<UpgradeAnswer>,
    },
    /// A room or presence operation (see [`chatwire_cluster::ClusterMsg`]).
    Cluster(ClusterMsg),
    /// A committed message for a room owned here: publish it through the adapter.
    Publish(Box<Published>),
    /// A message to store at once for a room owned here (memory store, no writer thread).
    Store(Box<(NewMessage, Route)>),
    /// Disconnect these local sockets: a frame for them was dropped (the sender's overflow
    /// FIFO towards this shard was full), so they must reconnect and resync.
    Disconnect(Vec<u64>),
}

/// Sending side of every shard's channel; cloned into each shard and the commit sink.
#[derive(Debug, Clone)]
pub struct ShardSet {
    /// One bounded sender per shard, by index.
    senders: Arc<[flume::Sender<ShardMsg>]>,
}

impl ShardSet {
    /// Wraps the senders.
    pub fn new(senders: Vec<flume::Sender<ShardMsg>>) -> Self {
        Self {
            senders: senders.into(),
        }
    }

    /// All senders, by shard index.
    pub fn senders_slice(&self) -> &[flume::Sender<ShardMsg>] {
        &self.senders
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// True when there are no shards (never, once started).
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Sends from a shard: waits while the target channel is full.
    pub async fn send(&self, shard: usize, msg: ShardMsg) {
        if let Some(tx) = self.senders.get(shard)
            && tx.send_async(msg).await.is_err()
        {
            tracing::debug!(shard, "shard gone; message dropped during shutdown");
        }
    }

    /// Offers a message to a shard without waiting (the batch writer's hand-over).
    pub fn offer(&self, shard: usize, msg: ShardMsg) -> chatwire_store::batch::Offer<ShardMsg> {
        use chatwire_store::batch::Offer;
        let Some(tx) = self.senders.get(shard) else {
            return Offer::Gone;
        };
        match tx.try_send(msg) {
            Ok(()) => {
                crate::telemetry::count_hop("shard");
                Offer::Taken
            }
            Err(flume::TrySendError::Full(msg)) => Offer::Full(msg),
            Err(flume::TrySendError::Disconnected(_)) => {
                tracing::debug!(shard, "shard gone; message dropped during shutdown");
                Offer::Gone
            }
        }
    }

    /// Sends without waiting; false when the channel is full or gone.
    pub fn try_send(&self, shard: usize, msg: ShardMsg) -> bool {
        self.senders
            .get(shard)
            .is_some_and(|tx| tx.try_send(msg).is_ok())
    }
}

/// Whether a WebSocket may join a session to upgrade it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeAnswer {
    /// Yes: the probe may start.
    Allowed,
    /// The session exists but has upgraded already (or is upgrading): accept, then close.
    NotUpgradable,
    /// No such session: 400.
    Unknown,
}

impl chatwire_cluster::Injector for ShardSet {
    fn shard_count(&self) -> usize {
        self.len()
    }

    /// From the Redis thread: membership and presence wait for room (they must not be lost),
    /// frames are dropped when the shard is full.
    fn inject(&self, to: usize, msg: ClusterMsg) -> bool {
        crate::telemetry::count_hop("shard");
        let Some(tx) = self.senders.get(to) else {
            return false;
        };
        if msg.must_not_drop() {
            tx.send(ShardMsg::Cluster(msg)).is_ok()
        } else {
            tx.try_send(ShardMsg::Cluster(msg)).is_ok()
        }
    }
}
