//! Bounded overflow of shard-to-shard sends.
//!
//! A shard never waits on another shard's channel: when the target channel is full, the message
//! goes to a per-target FIFO here, drained by one task per target (`send_async`), so two shards
//! can never block on each other and the order of messages to one target is kept. Each FIFO holds
//! at most `cap` messages. Past that the message is dropped and counted
//! ([`crate::telemetry::SHARD_OVERFLOW_DROPS`]), except room membership and presence changes
//! (`ClusterMsg::must_not_drop`): losing one would leave a room or a presence count wrong for
//! good, so they always queue (each is the consequence of one socket's connect, join, leave or
//! disconnect, so their number is bounded by the sockets). When a dropped message was a frame for
//! sockets (`Deliver`), those sockets are remembered and the drain task first sends the target a
//! [`ShardMsg::Disconnect`] for them: a client that missed a message reconnects and resyncs
//! instead of silently diverging. The list of such sockets is bounded too (`cap` × 16 entries).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use chatwire_cluster::ClusterMsg;

use super::msg::ShardMsg;

/// Room membership and presence changes: never dropped (see the module doc).
fn must_not_drop(msg: &ShardMsg) -> bool {
    matches!(msg, ShardMsg::Cluster(m) if m.must_not_drop())
}

/// Default bound of each per-target overflow FIFO, in messages.
pub const OVERFLOW_CAP: usize = 4_096;

/// Sockets remembered for disconnection per target, as a multiple of the FIFO cap.
const DROPPED_SOCKETS_FACTOR: usize = 16;

/// Overflow state towards one target shard.
#[derive(Debug, Default)]
struct Target {
    /// Messages waiting for room in the target channel, in send order.
    queue: RefCell<VecDeque<ShardMsg>>,
    /// Sockets (local to the target) whose frame was dropped: to be disconnected.
    dropped: RefCell<Vec<u64>>,
    /// A drain task is running for this target.
    draining: Cell<bool>,
}

impl Target {
    /// True when nothing waits (a new message may go straight to the channel).
    fn is_idle(&self) -> bool {
        !self.draining.get() && self.queue.borrow().is_empty() && self.dropped.borrow().is_empty()
    }

    /// The next message the drain task must send: disconnections first.
    fn next(&self) -> Option<ShardMsg> {
        let dropped = std::mem::take(&mut *self.dropped.borrow_mut());
        if !dropped.is_empty() {
            return Some(ShardMsg::Disconnect(dropped));
        }
        let mut queue = self.queue.borrow_mut();
        let msg = queue.pop_front();
        if queue.is_empty() {
            // Give the buffer back once drained: an idle shard owns no overflow memory.
            *queue = VecDeque::new();
        }
        msg
    }
}

/// Per-shard overflow FIFOs, one per target shard (single thread, no locks).
#[derive(Debug)]
pub struct Overflow {
    /// By target shard index.
    targets: Box<[Target]>,
    /// Bound of each FIFO.
    cap: usize,
}

impl Overflow {
    /// Overflow state for `shards` targets, each FIFO bounded by `cap` messages.
    pub fn new(shards: usize, cap: usize) -> Self {
        Self {
            targets: (0..shards).map(|_| Target::default()).collect(),
            cap: cap.max(1),
        }
    }

    /// Messages waiting for room towards `to`.
    pub fn pending(&self, to: usize) -> usize {
        self.targets.get(to).map_or(0, |t| t.queue.borrow().len())
    }

    /// Sends `msg` on `tx` (the channel of shard `to`) without waiting. Must run inside a
    /// `LocalSet` (the drain task is spawned with `spawn_local`).
    pub fn send(self: &Rc<Self>, to: usize, tx: &flume::Sender<ShardMsg>, msg: ShardMsg) {
        let Some(target) = self.targets.get(to) else {
            return;
        };
        crate::telemetry::count_hop("shard");
        let msg = if target.is_idle() {
            match tx.try_send(msg) {
                Ok(()) => return,
                Err(flume::TrySendError::Full(msg)) => msg,
                Err(flume::TrySendError::Disconnected(_)) => return,
            }
        } else {
            msg
        };
        if target.queue.borrow().len() >= self.cap && !must_not_drop(&msg) {
            self.drop_msg(target, msg);
        } else {
            target.queue.borrow_mut().push_back(msg);
        }
        if !target.draining.replace(true) {
            let this = self.clone();
            let tx = tx.clone();
            tokio::task::spawn_local(async move { this.drain(to, tx).await });
        }
    }

    /// Drops a message that found the FIFO full, remembering the sockets that miss a frame.
    fn drop_msg(&self, target: &Target, msg: ShardMsg) {
        let kind = match &msg {
            ShardMsg::Cluster(ClusterMsg::Deliver { .. }) => "deliver",
            ShardMsg::Cluster(ClusterMsg::DeliverToUsers { .. }) => "deliver_to_users",
            ShardMsg::Cluster(ClusterMsg::Broadcast { .. }) => "broadcast",
            ShardMsg::Cluster(ClusterMsg::Publish(_)) | ShardMsg::Publish(_) => "committed",
            ShardMsg::Store(_) => "store",
            ShardMsg::Poll(_) => "poll",
            _ => "other",
        };
        metrics::counter!(crate::telemetry::SHARD_OVERFLOW_DROPS, crate::telemetry::LABEL_KIND => kind)
            .increment(1);
        let mut dropped = target.dropped.borrow_mut();
        let room = (self.cap * DROPPED_SOCKETS_FACTOR).saturating_sub(dropped.len());
        if let ShardMsg::Cluster(ClusterMsg::Deliver { sockets, .. }) = msg {
            dropped.extend(sockets.into_iter().take(room));
        }
    }

    /// Sends everything queued for `to`, waiting for room; ends when the FIFO is empty.
    async fn drain(self: Rc<Self>, to: usize, tx: flume::Sender<ShardMsg>) {
        let Some(target) = self.targets.get(to) else {
            return;
        };
        while let Some(msg) = target.next() {
            if tx.send_async(msg).await.is_err() {
                // Target gone (shutdown): nothing more can be delivered.
                *target.queue.borrow_mut() = VecDeque::new();
                target.dropped.borrow_mut().clear();
                break;
            }
        }
        target.draining.set(false);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chatwire_protocol::socket::TextFrame;

    fn deliver(n: u64) -> ShardMsg {
        ShardMsg::Cluster(ClusterMsg::Deliver {
            frame: TextFrame::from_static("2"),
            sockets: vec![n],
        })
    }

    fn socket_of(msg: &ShardMsg) -> Option<u64> {
        match msg {
            ShardMsg::Cluster(ClusterMsg::Deliver { sockets, .. }) => sockets.first().copied(),
            _ => None,
        }
    }

    async fn flood_then_drain() {
        let (tx, rx) = flume::bounded(2);
        let overflow = Rc::new(Overflow::new(2, 8));
        // Nobody reads: 2 fit in the channel, 8 wait in the FIFO, the other 90 are dropped.
        for i in 0..100 {
            overflow.send(1, &tx, deliver(i));
        }
        tokio::task::yield_now().await;
        assert_eq!(overflow.pending(1), 8, "the overflow FIFO is bounded");

        let mut got = Vec::new();
        while got.len() < 11 {
            got.push(rx.recv_async().await.unwrap());
        }
        // Channel contents, then the disconnection of every socket that missed its frame, then
        // the queued frames in send order.
        assert_eq!(socket_of(&got[0]), Some(0));
        assert_eq!(socket_of(&got[1]), Some(1));
        match &got[2] {
            ShardMsg::Disconnect(s) => assert_eq!(s, &(10..100).collect::<Vec<u64>>()),
            other => panic!("expected Disconnect, got {other:?}"),
        }
        let queued: Vec<_> = got[3..].iter().map(socket_of).collect();
        assert_eq!(queued, (2..10).map(Some).collect::<Vec<_>>());
        tokio::task::yield_now().await;
        assert_eq!(overflow.pending(1), 0);

        // Drained: the next send goes straight to the channel again.
        overflow.send(1, &tx, deliver(500));
        assert_eq!(socket_of(&rx.try_recv().unwrap()), Some(500));
    }

    #[test]
    fn full_channel_queues_a_bounded_fifo_and_disconnects_missed_sockets() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, flood_then_drain());
    }
}
