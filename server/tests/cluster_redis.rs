//! Several nodes through Redis: a throwaway `redis-server` on a free port (pub/sub is global, so
//! never the shared 6379), three chatwire nodes on one PostgreSQL database, clients on different
//! nodes. Checks the chat contract across nodes (messages, notifications, typing and its 6 s
//! auto-stop, presence, `user:check:online`) and that a node counts one PUBLISH per broadcast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/redis.rs"]
mod redis_support;

use std::time::Duration;

use chatwire::config::Config;
use chatwire::{Mode, Server};
use common::{Client, TestServer, brand, influencer};
use serde_json::json;

async fn node(db: &str, redis_url: &str) -> TestServer {
    let mut config = Config::for_tests();
    config.database_url = db.to_owned();
    config.redis_url = Some(redis_url.to_owned());
    let server = Server::start(&config, Mode::Chat)
        .await
        .expect("node starts");
    let addr = server.addr;
    TestServer { server, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_chat_contract() {
    let redis = redis_support::TestRedis::start();
    let db = pg::TestDb::create().await;
    let n0 = node(&db.url, &redis.url()).await;
    let n1 = node(&db.url, &redis.url()).await;
    let n2 = node(&db.url, &redis.url()).await;
    let (a, b, c) = (brand(1), influencer(2), influencer(3));
    let cid = n0.group(a, &[b, c]).await;
    // Let the nodes' subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Presence: b's first socket anywhere is announced to a on another node.
    let (mut ca, _) = Client::chat(n0.addr, a).await;
    let (mut cb, _) = Client::chat(n1.addr, b).await;
    let on = ca.event("user:online").await;
    assert_eq!(on, json!({"userId": 2, "userType": "influencer"}));
    let (mut cc, _) = Client::chat(n2.addr, c).await;
    assert_eq!(
        ca.event("user:online").await,
        json!({"userId": 3, "userType": "influencer"})
    );
    // A second socket of b on yet another node announces nothing.
    let (cb2, _) = Client::chat(n2.addr, b).await;
    ca.no_event("user:online", Duration::from_millis(500)).await;

    // user:check:online answers for users on other nodes.
    ca.emit(
        "user:check:online",
        json!({"userId": 3, "userType": "influencer"}),
    )
    .await;
    assert_eq!(
        ca.event("user:online:status").await["isOnline"],
        json!(true)
    );

    ca.join(cid).await;
    cb.join(cid).await;
    cc.join(cid).await;

    // A message committed on n0 reaches the room on n1 and n2; b's socket outside the room (on
    // n2) gets no notification (b has a socket in the room), and nobody else does either.
    ca.emit(
        "message:send",
        json!({"conversationId": cid, "content": "hello", "tempId": "t1"}),
    )
    .await;
    let sent = ca.event("message:sent").await;
    let new_b = cb.event("message:new").await;
    let new_c = cc.event("message:new").await;
    assert_eq!(new_b["id"], sent["message"]["id"]);
    assert_eq!(new_c["content"], json!("hello"));

    // Notification to a participant online elsewhere but not in the room.
    cc.emit("conversation:leave", json!({"conversationId": cid}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cb.emit(
        "message:send",
        json!({"conversationId": cid, "content": "you there?", "tempId": "t2"}),
    )
    .await;
    let note = cc.event("message:notification").await;
    assert_eq!(note["conversationId"], json!(cid));
    assert_eq!(note["message"]["content"], json!("you there?"));
    assert_eq!(
        ca.event("message:new").await["content"],
        json!("you there?")
    );

    // Typing crosses nodes, and stops by itself 6 s after the last typing:start.
    cb.emit("typing:start", json!({"conversationId": cid}))
        .await;
    let t = ca.event("typing:start").await;
    assert_eq!(t["user"], json!({"userId": 2, "userType": "influencer"}));
    let started = std::time::Instant::now();
    // (A client waits at most 5 s for one frame.)
    ca.no_event("typing:stop", Duration::from_secs(4)).await;
    let stop = ca.event("typing:stop").await;
    assert_eq!(stop["conversationId"], json!(cid));
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "auto-stop after ~6 s"
    );

    // Read receipts cross nodes.
    let last = new_b["id"].as_i64().unwrap();
    cb.emit(
        "message:read",
        json!({"conversationId": cid, "messageId": last}),
    )
    .await;
    let read = ca.event("message:read").await;
    assert_eq!(
        read["readBy"],
        json!({"userId": 2, "userType": "influencer"})
    );

    // Offline only after b's last socket anywhere.
    drop(cb);
    ca.no_event("user:offline", Duration::from_millis(800))
        .await;
    drop(cb2);
    assert_eq!(
        ca.event("user:offline").await,
        json!({"userId": 2, "userType": "influencer"})
    );
    ca.emit(
        "user:check:online",
        json!({"userId": 2, "userType": "influencer"}),
    )
    .await;
    assert_eq!(
        ca.event("user:online:status").await["isOnline"],
        json!(false)
    );

    // One PUBLISH per broadcast: 5 room messages from a produce 5 PUBLISHes on the broadcast
    // channels (plus one notification message for c on chatwire's own channel each).
    let before = redis.publish_calls();
    for i in 0..5 {
        ca.emit(
            "message:send",
            json!({"conversationId": cid, "content": format!("m{i}"), "tempId": format!("p{i}")}),
        )
        .await;
        ca.event("message:sent").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = redis.publish_calls() - before;
    eprintln!("PUBLISH calls for 5 messages (3 nodes): {published}");
    // 5 message:new + 5 notifications (c left the room) + heartbeats of 3 nodes (one per 2 s).
    assert!(
        (10..=10 + 6).contains(&published),
        "PUBLISH calls for 5 messages: {published}"
    );
    drop(cc);
    n0.stop().await;
    n1.stop().await;
    n2.stop().await;
}

/// Redis killed and restarted on its port: local delivery never stops, cross-node delivery comes
/// back by itself (reconnect, resubscribe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_local_goes_on_and_cross_node_resumes() {
    let mut redis = redis_support::TestRedis::start();
    let port = redis.port;
    let db = pg::TestDb::create().await;
    let n0 = node(&db.url, &redis.url()).await;
    let n1 = node(&db.url, &redis.url()).await;
    let (a, b, c) = (brand(11), influencer(12), influencer(13));
    let cid = n0.group(a, &[b, c]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut ca, _) = Client::chat(n0.addr, a).await;
    let (mut cb, _) = Client::chat(n1.addr, b).await;
    let (mut cc, _) = Client::chat(n0.addr, c).await;
    for cl in [&mut ca, &mut cb, &mut cc] {
        cl.join(cid).await;
    }
    ca.emit("typing:start", json!({"conversationId": cid}))
        .await;
    cb.event("typing:start").await;
    cc.event("typing:start").await;

    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ca.emit("typing:stop", json!({"conversationId": cid})).await;
    cc.event("typing:stop").await;

    let _redis = redis_support::TestRedis::start_on(port);
    // Reconnect backoff is at most 2 s; cross-node delivery resumes without any client action.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        ca.emit("typing:start", json!({"conversationId": cid}))
            .await;
        if tokio::time::timeout(Duration::from_millis(500), cb.event("typing:start"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cross-node delivery did not resume within 10 s of Redis coming back"
        );
    }
    drop((ca, cb, cc));
    n0.stop().await;
    n1.stop().await;
}
