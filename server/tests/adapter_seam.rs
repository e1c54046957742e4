//! Every room operation goes through the cluster `Adapter`, the seam a Redis adapter plugs into:
//! joins, leaves, broadcasts (typing, read receipts), committed messages, presence changes and
//! the notifications they cause are all recorded by a wrapping adapter, and with an adapter that
//! forwards nothing, no event of one socket reaches another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatwire::cluster::{
    Adapter, Call, LocalAdapter, Member, Mesh, Online, Published, RecordingAdapter, RoomName,
    SocketKey,
};
use chatwire::store::UserKey;
use chatwire_protocol::socket::TextFrame;
use common::{Client, TestServer, brand, influencer};
use serde_json::json;

fn calls_of(calls: &Arc<Mutex<Vec<Call>>>) -> Vec<Call> {
    calls.lock().unwrap().clone()
}

/// Waits until a recorded call satisfies `want` (the adapter is called on shard threads).
async fn wait_for(calls: &Arc<Mutex<Vec<Call>>>, what: &str, want: impl Fn(&Call) -> bool) {
    for _ in 0..200 {
        if calls.lock().unwrap().iter().any(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no adapter call for {what}: {:#?}", calls_of(calls));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_operation_goes_through_the_adapter() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let s = TestServer::with_adapter(Arc::new(RecordingAdapter::new(LocalAdapter, calls.clone())))
        .await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let room = format!("conversation:{conv}");
    let (mut ca, _) = Client::chat(s.addr, a).await;
    wait_for(&calls, "a online", |c| *c == Call::PresenceUp(a)).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    assert_eq!(ca.event("user:online").await["userId"], 2);
    wait_for(&calls, "user:online to a", |c| {
        matches!(c, Call::NotifyUsers(users, frame) if users == &[a] && frame.contains("user:online"))
    })
    .await;

    for c in [&mut ca, &mut cb] {
        c.join(conv).await;
    }
    wait_for(&calls, "joins", |c| *c == Call::Join(room.clone(), Some(a))).await;
    wait_for(&calls, "joins", |c| *c == Call::Join(room.clone(), Some(b))).await;

    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    cb.event("typing:start").await;
    wait_for(
        &calls,
        "typing broadcast",
        |c| matches!(c, Call::Broadcast(r, f) if *r == room && f.contains("typing:start")),
    )
    .await;

    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "through the seam", "tempId": "s1"}),
    )
    .await;
    assert_eq!(cb.event("message:new").await["content"], "through the seam");
    ca.event("message:sent").await;
    wait_for(
        &calls,
        "message published",
        |c| matches!(c, Call::Publish(r, f) if *r == room && f.contains("through the seam")),
    )
    .await;

    cb.emit("message:read", json!({"conversationId": conv}))
        .await;
    ca.event("message:read").await;
    wait_for(
        &calls,
        "read receipt",
        |c| matches!(c, Call::Broadcast(r, f) if *r == room && f.contains("message:read")),
    )
    .await;

    cb.emit(
        "user:check:online",
        json!({"userId": 1, "userType": "brand"}),
    )
    .await;
    assert_eq!(cb.event("user:online:status").await["isOnline"], true);
    wait_for(&calls, "presence question", |c| *c == Call::CheckOnline(a)).await;

    cb.emit("conversation:leave", json!({"conversationId": conv}))
        .await;
    cb.event("conversation:left").await;
    wait_for(&calls, "leave", |c| *c == Call::Leave(room.clone())).await;

    drop(cb);
    assert_eq!(ca.event("user:offline").await["userId"], 2);
    wait_for(&calls, "b offline", |c| *c == Call::PresenceDown(b)).await;
    wait_for(&calls, "user:offline to a", |c| {
        matches!(c, Call::NotifyUsers(users, frame) if users == &[a] && frame.contains("user:offline"))
    })
    .await;
    s.stop().await;
}

/// Records calls and forwards none of them.
struct Deaf(Arc<Mutex<Vec<&'static str>>>);

impl Deaf {
    fn note(&self, what: &'static str) {
        self.0.lock().unwrap().push(what);
    }
}

impl Adapter for Deaf {
    fn join(&self, _: &dyn Mesh, _: RoomName, _: Member) {
        self.note("join");
    }
    fn leave(&self, _: &dyn Mesh, _: RoomName, _: SocketKey) {
        self.note("leave");
    }
    fn broadcast(&self, _: &dyn Mesh, _: RoomName, _: TextFrame, _: Option<SocketKey>) {
        self.note("broadcast");
    }
    fn publish(&self, _: &dyn Mesh, _: Published) {
        self.note("publish");
    }
    fn notify_users(&self, _: &dyn Mesh, _: Arc<[UserKey]>, _: TextFrame) {
        self.note("notify_users");
    }
    fn presence_up(&self, _: &dyn Mesh, _: UserKey) {
        self.note("presence_up");
    }
    fn presence_down(&self, _: &dyn Mesh, _: UserKey) {
        self.note("presence_down");
    }
    fn check_online(&self, _: &dyn Mesh, _: UserKey) -> Online {
        self.note("check_online");
        Online::Now(false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_adapter_no_event_reaches_another_socket() {
    let notes = Arc::new(Mutex::new(Vec::new()));
    let s = TestServer::with_adapter(Arc::new(Deaf(notes.clone()))).await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    for c in [&mut ca, &mut cb] {
        // Direct replies need no adapter.
        c.join(conv).await;
    }
    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "lost", "tempId": 1}),
    )
    .await;
    cb.emit("message:read", json!({"conversationId": conv}))
        .await;
    cb.event("message:read:success").await;
    for event in ["user:online", "typing:start", "message:new"] {
        cb.no_event(event, Duration::from_millis(200)).await;
    }
    for event in ["user:online", "message:read"] {
        ca.no_event(event, Duration::from_millis(200)).await;
    }
    let notes = notes.lock().unwrap().clone();
    for op in ["presence_up", "join", "broadcast", "publish"] {
        assert!(
            notes.contains(&op),
            "{op} went through the adapter: {notes:?}"
        );
    }
    s.stop().await;
}
