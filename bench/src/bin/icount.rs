//! `chatwire-icount`: runs one hot path a fixed number of times so that
//! `scripts/bench_icount.sh` can count its instructions under valgrind's callgrind, which counts
//! only inside the function named `icount_<path>` (`--toggle-collect`). Instruction counts do not
//! depend on what else the machine runs, so a rise of a few percent is a change in the code, not
//! noise (docs/bench.md, "Instruction counts").
//!
//! Paths (inputs built before the counted function):
//! - `codec`: a client `message:send` frame decoded (Engine.IO packet, Socket.IO event, typed
//!   payload) and a `message:new` event encoded;
//! - `chat`: the same frame decoded, then `message:send` through the chat rules (`Chat::on_raw_event`, participant check on
//!   the memory store), stored (`MemoryStore::insert_now`) and its frames built (`committed`);
//! - `fanout`: a committed message published by its room's owner (`ClusterShard`) to a room of
//!   50 sockets on two shards, with the notifications and the sender's reply.
//!
//!     chatwire-icount codec|chat|fanout [ITERATIONS]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use chatwire::chat::message::committed;
use chatwire::chat::payload::SendPayload;
use chatwire::chat::{Chat, ChatConfig, ChatSocket, Effect, event_frame, room_name};
use chatwire::cluster::{
    AckEmit, ClusterMsg, ClusterShard, LocalSocket, Member, Mesh, OnDemand, Published, SocketKey,
};
use chatwire::store::{AnyStore, MemoryStore, Store, UserKey, UserType};
use chatwire_protocol::engine::packet::Packet as EnginePacket;
use chatwire_protocol::socket::{RawEvent, TextFrame};

/// Iterations when none is given.
const ITERATIONS: usize = 2000;

/// A `message:send` frame with tempId `i`.
fn message_send(conversation: i64, i: usize) -> Bytes {
    Bytes::from(format!(
        r#"42/chat,["message:send",{{"conversationId":{conversation},"content":"Hey! Are we still on for the campaign shoot tomorrow? Let me know what time works for you.","messageType":"text","tempId":{i}}}]"#
    ))
}

/// The `message:new` payload of the contract (~330 bytes).
const MESSAGE_JSON: &str = r#"{"id":789,"conversationId":123,"sender":{"id":456,"username":"john_doe","firstName":"John","lastName":"Doe","profileImage":"https://cdn.example.com/u/456.jpg"},"senderType":"influencer","messageType":"text","content":"Hello!","isRead":false,"createdAt":"2026-11-14T10:00:00.000Z","attachmentUrl":null,"attachmentName":null}"#;

/// Polls a future that never waits (the memory store's) to its end.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("a memory-store future did not finish");
}

#[inline(never)]
fn icount_codec(frames: &[Bytes]) -> usize {
    let mut n = 0;
    for frame in frames {
        let EnginePacket::Message(data) = EnginePacket::decode_text_bytes(frame.clone()).unwrap()
        else {
            unreachable!()
        };
        let event = RawEvent::decode(data, 128).unwrap().unwrap();
        assert_eq!(event.name(), Some("message:send"));
        let payload: SendPayload = event.arg(0).unwrap();
        black_box(&payload);
        let out: TextFrame = event_frame("message:new", MESSAGE_JSON.as_bytes());
        n += out.len();
    }
    n
}

/// The chat rules over a memory store holding a 1:1 conversation.
struct ChatPath {
    chat: Chat,
    store: Arc<AnyStore>,
    socket: RefCell<ChatSocket>,
    frames: Vec<Bytes>,
    now: Instant,
}

#[inline(never)]
fn icount_chat(p: &ChatPath) -> usize {
    let AnyStore::Memory(memory) = &*p.store else {
        unreachable!()
    };
    let mut n = 0;
    for frame in &p.frames {
        let EnginePacket::Message(data) = EnginePacket::decode_text_bytes(frame.clone()).unwrap()
        else {
            unreachable!()
        };
        let event = RawEvent::decode(data, 128).unwrap().unwrap();
        let effects = ready(p.chat.on_raw_event(&p.socket, &event, true, p.now));
        for effect in effects {
            if let Effect::Store { message, ack, .. } = effect {
                let stored = memory.insert_now(std::slice::from_ref(&*message)).pop();
                let stored = stored.unwrap().unwrap();
                let frames = committed(&stored.message, ack);
                n += frames.new_frame.len() + frames.sent.len();
            }
        }
    }
    n
}

/// One shard of two, applying messages for itself at once and counting the rest.
struct TwoShards {
    shard: ClusterShard,
    delivered: Cell<usize>,
    forwarded: Cell<usize>,
}

impl Mesh for TwoShards {
    fn index(&self) -> u16 {
        0
    }
    fn shard_count(&self) -> usize {
        2
    }
    fn is_online_here(&self, _: UserKey) -> bool {
        true
    }
    fn send(&self, to: usize, msg: ClusterMsg) {
        if to == 0 {
            self.shard.handle(self, msg);
        } else {
            self.forwarded.set(self.forwarded.get() + 1);
            black_box(msg);
        }
    }
    fn deliver(&self, frame: &TextFrame, sockets: &[u64]) {
        self.delivered
            .set(self.delivered.get() + frame.len() * sockets.len());
    }
    fn deliver_to_users(&self, frame: &TextFrame, users: &[UserKey]) {
        self.delivered
            .set(self.delivered.get() + frame.len() * users.len());
    }
    fn presence_changed(&self, _: UserKey, _: bool) {}
    fn presence_announce(&self, _: UserKey, _: bool) {}
    fn local_sockets(&self) -> Vec<LocalSocket> {
        Vec::new()
    }
    fn disconnect(&self, _: &[u64], _: bool) {}
    fn emit_with_ack(&self, _: AckEmit) {}
}

#[inline(never)]
fn icount_fanout(mesh: &TwoShards, published: Vec<Published>) -> usize {
    for p in published {
        mesh.shard.handle(mesh, ClusterMsg::Publish(Box::new(p)));
    }
    mesh.delivered.get() + mesh.forwarded.get()
}

fn user(id: i64) -> UserKey {
    UserKey::new(
        if id % 2 == 0 {
            UserType::Brand
        } else {
            UserType::Influencer
        },
        id,
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let iterations = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ITERATIONS);
    let result = match which.as_str() {
        "codec" => {
            let frames: Vec<Bytes> = (0..iterations).map(|i| message_send(123, i)).collect();
            icount_codec(&frames)
        }
        "chat" => {
            let store = Arc::new(AnyStore::Memory(MemoryStore::new()));
            let (a, b) = (user(2), user(1));
            let (conv, _) = ready(store.create_direct(a, b)).unwrap();
            let chat = Chat::new(
                store.clone(),
                ChatConfig {
                    max_message_chars: 5000,
                    max_json_depth: 32,
                },
            );
            let path = ChatPath {
                chat,
                store,
                socket: RefCell::new(ChatSocket::new(a)),
                frames: (0..iterations).map(|i| message_send(conv.id, i)).collect(),
                now: Instant::now(),
            };
            icount_chat(&path)
        }
        "fanout" => {
            let mesh = TwoShards {
                shard: ClusterShard::default(),
                delivered: Cell::new(0),
                forwarded: Cell::new(0),
            };
            let room = room_name(1);
            let participants: Arc<[UserKey]> = (1..=50).map(user).collect();
            // 48 of the 50 participants in the room (two get notifications), on both shards.
            for (i, u) in participants.iter().take(48).enumerate() {
                let member = Member {
                    socket: SocketKey {
                        shard: (i % 2) as u16,
                        local: i as u64,
                    },
                    user: Some(*u),
                };
                mesh.shard.handle(
                    &mesh,
                    ClusterMsg::Join {
                        room: room.clone(),
                        member,
                    },
                );
            }
            let frame = event_frame("message:new", MESSAGE_JSON.as_bytes());
            let note = event_frame("message:notification", MESSAGE_JSON.as_bytes());
            let published = (0..iterations)
                .map(|i| Published {
                    id: i as i64 + 1,
                    prev: Some(i as i64),
                    room: room.clone(),
                    new_frame: frame.clone(),
                    notification: OnDemand::ready(note.clone()),
                    participants: participants.clone(),
                    sender: participants[0],
                    sender_socket: Some(SocketKey { shard: 0, local: 0 }),
                    reply: vec![frame.clone()],
                })
                .collect();
            icount_fanout(&mesh, published)
        }
        _ => {
            eprintln!("usage: chatwire-icount codec|chat|fanout [ITERATIONS]");
            std::process::exit(2);
        }
    };
    println!("{which}: {iterations} iterations ({result})");
}
