//! Where a validated message goes to be stored, and how its outcome comes back.
//!
//! - [`Committer::Inline`] (memory store): the message goes to its room's owner shard, which
//!   stores it at once and publishes it: no writer thread, no collection window, and no thread
//!   crossed at all when the sender's shard owns the room.
//! - [`Committer::Writer`] (SQLite, PostgreSQL): the batch writer commits it with others (group
//!   commit: what queued during one commit forms the next batch); its [`ShardSink`] encodes the
//!   frames once, on the writer thread, and hands the message to the room's owner shard. The
//!   owner encodes `message:notification` itself, only for a participant outside the room.
//!
//! Either way the owner publishes through the [`Adapter`](chatwire_cluster::Adapter): the room's
//! `message:new`, the notifications, then the sender's `message:sent` all leave one shard in id
//! order. Nothing that can fail runs between a commit and that hand-over: participants were
//! checked before the send, frames are built from the committed row.

use std::rc::Rc;

use chatwire_chat::message::{CommittedFrames, busy, committed, failed};
use chatwire_chat::{room_name, with_room_name};
use chatwire_cluster::{ClusterMsg, OnDemand, Published, SocketKey, room_owner};
use chatwire_protocol::socket::TextFrame;
use chatwire_store::batch::{Backlog, CommitSink};
use chatwire_store::{AnyStore, NewMessage, StoreError, Stored, TempId};

pub use crate::route::{Committer, ReplyTo, Route, Unanswered};

use crate::shard::Shard;
use crate::shard::msg::{ShardMsg, ShardSet};

/// Hands `message` over for storage; false when the writer's queue is full or stopped (the
/// caller answers `unavailable`, with [`refused`]).
// The error hands the message and its route back by value (no allocation on refusal).
#[allow(clippy::result_large_err)]
pub fn submit(
    committer: &Committer,
    shard: &Rc<Shard>,
    message: NewMessage,
    route: Route,
) -> Result<(), (NewMessage, Route)> {
    match committer {
        Committer::Inline(_) => {
            let shards = shard.shard_count();
            let owner = with_room_name(message.conversation_id, |room| room_owner(room, shards));
            shard.send_to(owner, ShardMsg::Store(Box::new((message, route))));
            Ok(())
        }
        Committer::Writer(writer) => {
            crate::telemetry::count_hop("writer");
            writer
                .try_submit(message, route)
                .map_err(|r| (r.message, r.reply))
        }
    }
}

/// Hands `message` over from a request that may wait up to `wait` for room in the writer's
/// queue (REST). Inline commits need the calling thread to be a shard.
#[allow(clippy::result_large_err)]
pub async fn submit_wait(
    committer: &Committer,
    message: NewMessage,
    route: Route,
    wait: std::time::Duration,
) -> Result<(), (NewMessage, Route)> {
    match committer {
        Committer::Inline(_) => match crate::shard::current() {
            Some(shard) => submit(committer, &shard, message, route),
            None => Err((message, route)),
        },
        Committer::Writer(writer) => {
            crate::telemetry::count_hop("writer");
            writer
                .submit(message, route, wait)
                .await
                .map_err(|r| (r.message, r.reply))
        }
    }
}

/// What a socket's send through the batch writer answers if its route is dropped unanswered
/// (the writer thread died with it): `message:error` `unavailable`, from whichever thread drops
/// it. The writer thread may wait for room in the sender's shard channel, as its sink does; a
/// shard thread never waits (a full channel loses the answer rather than deadlock).
pub fn answer_if_dropped(
    set: &ShardSet,
    socket: SocketKey,
    ack: Option<u64>,
    temp_id: Option<TempId>,
) -> Unanswered {
    let set = set.clone();
    Unanswered::new(move || {
        let error = StoreError::Unavailable("the batch writer stopped".into());
        for frame in failed(&error, temp_id.as_ref(), ack) {
            let msg = ShardMsg::Cluster(ClusterMsg::Deliver {
                frame,
                sockets: vec![socket.local],
            });
            let shard = usize::from(socket.shard);
            if let Some(tx) = set.sender(shard) {
                if crate::shard::current().is_some() {
                    let _ = tx.try_send(msg);
                } else {
                    // The dying writer thread: nothing else depends on it any more.
                    let _ = tx.send(msg);
                }
            }
        }
    })
}

/// The answer to a send the storage did not take.
pub fn refused(message: &NewMessage, mut route: Route) -> Delivery {
    route.unanswered.disarm();
    match route.reply {
        ReplyTo::Socket { socket, ack } => Delivery::Reply {
            socket,
            frames: busy(message.temp_id.as_ref(), ack),
        },
        ReplyTo::Http(tx) => {
            let _ = tx.send(Err(StoreError::Unavailable("write queue full".into())));
            Delivery::Nothing
        }
        ReplyTo::None => Delivery::Nothing,
    }
}

/// What the shards must do with one outcome.
#[derive(Debug)]
pub enum Delivery {
    /// A new message: publish it from its room's owner.
    Publish(Box<Published>),
    /// Frames for one socket only (a repeated send, or a failure).
    Reply {
        /// The sender.
        socket: SocketKey,
        /// `message:sent` / `message:error` and its ack.
        frames: Vec<TextFrame>,
    },
    /// Nothing to send (REST and unattended sends, answered already).
    Nothing,
}

/// The deliveries of a committed message (frames encoded here, once); answers a REST waiter.
pub fn on_committed(stored: Stored, mut route: Route) -> Delivery {
    route.unanswered.disarm();
    let (socket, ack) = match route.reply {
        ReplyTo::Socket { socket, ack } => (Some(socket), ack),
        ReplyTo::Http(tx) => {
            let _ = tx.send(Ok(stored.clone()));
            (None, None)
        }
        ReplyTo::None => (None, None),
    };
    let CommittedFrames {
        new_frame,
        notification,
        sent,
    } = committed(&stored.message, ack);
    if stored.duplicate {
        // Stored the first time: only the sender's answer, nobody sees it twice.
        return match socket {
            // Not a new event of the conversation: never filtered as a repeat, no offset.
            Some(socket) => Delivery::Reply {
                socket,
                frames: sent.into_iter().map(TextFrame::unpositioned).collect(),
            },
            None => Delivery::Nothing,
        };
    }
    Delivery::Publish(Box::new(Published {
        id: stored.message.id,
        prev: stored.prev,
        room: room_name(stored.message.conversation_id),
        new_frame,
        notification: OnDemand::new(move || notification.frame()),
        participants: route.participants,
        sender: stored.message.sender,
        sender_socket: socket,
        reply: sent.into_vec(),
    }))
}

/// The deliveries of a send that could not be committed.
pub fn on_failed(message: &NewMessage, mut route: Route, error: StoreError) -> Delivery {
    route.unanswered.disarm();
    match route.reply {
        ReplyTo::Socket { socket, ack } => Delivery::Reply {
            socket,
            frames: failed(&error, message.temp_id.as_ref(), ack),
        },
        ReplyTo::Http(tx) => {
            let _ = tx.send(Err(error));
            Delivery::Nothing
        }
        ReplyTo::None => Delivery::Nothing,
    }
}

/// The writer's sink: on the writer thread after each commit, hands every outcome to the
/// shard that must act on it (the room's owner for a new message, the sender's shard for a
/// reply). Each conversation's messages reach its owner in commit order. It never waits on a
/// shard: an outcome for a shard whose channel is full waits in the [`Backlog`], in order,
/// until the writer pumps it over.
#[derive(Debug)]
pub struct ShardSink {
    /// Channels to every shard.
    set: ShardSet,
    /// What did not fit yet, per shard.
    backlog: Backlog<ShardMsg>,
}

impl ShardSink {
    /// A sink delivering to these shards.
    pub fn new(set: ShardSet) -> Self {
        let backlog = Backlog::new(set.len());
        ShardSink { set, backlog }
    }

    fn send(&self, delivery: Delivery) {
        let offer = |to, msg| self.set.offer(to, msg);
        match delivery {
            Delivery::Publish(p) => {
                let owner = room_owner(&p.room, self.set.len());
                self.backlog.send(owner, ShardMsg::Publish(p), offer);
            }
            Delivery::Reply { socket, frames } => {
                for frame in frames {
                    let msg = ShardMsg::Cluster(ClusterMsg::Deliver {
                        frame,
                        sockets: vec![socket.local],
                    });
                    self.backlog.send(usize::from(socket.shard), msg, offer);
                }
            }
            Delivery::Nothing => {}
        }
    }
}

impl CommitSink for ShardSink {
    type Reply = Route;

    fn committed(&self, batch: Vec<(Stored, Route)>) {
        for (stored, route) in batch {
            self.send(on_committed(stored, route));
        }
    }

    fn failed(&self, batch: Vec<(NewMessage, Route)>, error: StoreError) {
        for (message, route) in batch {
            self.send(on_failed(&message, route, error.clone()));
        }
    }

    fn backlog(&self) -> usize {
        self.backlog.len()
    }

    fn pump(&self) {
        self.backlog.pump(|to, msg| self.set.offer(to, msg));
    }
}

/// On the room's owner shard, memory store: store at once, then deliver.
pub fn store_inline(shard: &Rc<Shard>, store: &AnyStore, message: NewMessage, route: Route) {
    let outcome = match store {
        AnyStore::Memory(memory) => memory.insert_now(std::slice::from_ref(&message)).pop(),
        _ => Some(Err(StoreError::Internal(
            "inline commits need the memory store".into(),
        ))),
    };
    let delivery = match outcome {
        Some(Ok(stored)) => on_committed(stored, route),
        Some(Err(e)) => on_failed(&message, route, e),
        None => on_failed(
            &message,
            route,
            StoreError::Internal("store returned no outcome".into()),
        ),
    };
    deliver(shard, delivery);
}

/// Carries out a delivery from a shard (through the adapter for a new message).
pub fn deliver(shard: &Rc<Shard>, delivery: Delivery) {
    match delivery {
        Delivery::Publish(p) => shard.adapter().publish(&**shard, *p),
        Delivery::Reply { socket, frames } => {
            for frame in frames {
                shard.send_to(
                    usize::from(socket.shard),
                    ShardMsg::Cluster(ClusterMsg::Deliver {
                        frame,
                        sockets: vec![socket.local],
                    }),
                );
            }
        }
        Delivery::Nothing => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chatwire_store::batch::{BatchConfig, BatchWriter};
    use chatwire_store::{MessageType, Store, UserKey, UserType};
    use std::sync::Arc;
    use std::time::Duration;

    /// A sink with a bug: it panics on the first commit, killing the writer thread.
    struct PanickingSink;

    impl CommitSink for PanickingSink {
        type Reply = Route;

        fn committed(&self, _: Vec<(Stored, Route)>) {
            panic!("sink bug");
        }
        fn failed(&self, _: Vec<(NewMessage, Route)>, _: StoreError) {}
    }

    /// The batch writer thread dies with sends in flight and queued: every socket sender still
    /// gets `message:error` `unavailable` with its tempId and ack, none is left waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_senders_of_a_dead_writer_get_unavailable() {
        let store = Arc::new(AnyStore::connect("memory", true).await.unwrap());
        let (a, b) = (
            UserKey::new(UserType::Brand, 1),
            UserKey::new(UserType::Influencer, 1),
        );
        let (conv, _) = store.create_direct(a, b).await.unwrap();
        let (tx, rx) = flume::unbounded();
        let set = ShardSet::new(vec![tx]);
        let cfg = BatchConfig::default().with_max_batch(1).with_lanes(1);
        let writer = BatchWriter::spawn(store, cfg, PanickingSink);
        const SENDS: u64 = 100;
        let mut refused_now = 0;
        for i in 0..SENDS {
            let socket = SocketKey { shard: 0, local: i };
            let message = NewMessage {
                conversation_id: conv.id,
                sender: a,
                message_type: MessageType::Text,
                content: "hi".into(),
                attachment_url: None,
                attachment_name: None,
                temp_id: Some(TempId::Int(i as i64)),
            };
            let route = Route {
                participants: Arc::from(vec![a, b]),
                reply: ReplyTo::Socket {
                    socket,
                    ack: Some(i),
                },
                unanswered: answer_if_dropped(&set, socket, Some(i), message.temp_id.clone()),
            };
            if let Err(r) = writer.try_submit(message, route) {
                // Refused (the writer already died): the caller answers, as the shard does.
                refused_now += 1;
                drop(refused(&r.message, r.reply));
            }
        }
        // Per socket: its `message:error` event and its ack.
        let mut events = std::collections::BTreeSet::new();
        let mut acks = std::collections::BTreeSet::new();
        while events.len() + refused_now < SENDS as usize || acks.len() < events.len() {
            let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv_async())
                .await
                .expect("every queued or in-flight send is answered")
                .unwrap();
            let ShardMsg::Cluster(ClusterMsg::Deliver { frame, sockets }) = msg else {
                panic!("a delivery")
            };
            let text = String::from_utf8(frame.as_bytes().to_vec()).unwrap();
            let local = sockets[0];
            assert!(
                text.contains("\"error\":\"unavailable\"")
                    && text.contains(&format!("\"tempId\":{local}")),
                "{text}"
            );
            if text.starts_with("42/chat,[\"message:error\"") {
                assert!(events.insert(local), "answered twice: {text}");
            } else {
                assert!(text.starts_with(&format!("43/chat,{local}[")), "{text}");
                assert!(acks.insert(local), "acked twice: {text}");
            }
        }
        assert_eq!(events, acks);
        let answered = events;
        assert!(!writer.is_alive());
        assert!(answered.len() > 50, "answered {}", answered.len());
        // Nothing answered twice.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.is_empty(), "{} more answers", rx.len());
    }
}
