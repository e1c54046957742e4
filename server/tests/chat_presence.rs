//! Contract rows for presence (`user:online` / `user:offline` / `user:check:online`), typing
//! (broadcast, 6 s automatic stop, stop on send/leave/disconnect), `message:read`, and CONNECT
//! authentication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, TestServer, brand, influencer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_offline_to_partners_and_check_online() {
    let s = TestServer::start().await;
    let (a, b, stranger) = (brand(1), influencer(2), brand(3));
    s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cs, _) = Client::chat(s.addr, stranger).await;
    ca.emit_ack(
        "user:check:online",
        json!({"userId": 2, "userType": "influencer"}),
        1,
    )
    .await;
    let st = ca.event("user:online:status").await;
    assert_eq!(
        st,
        json!({"userId": 2, "userType": "influencer", "isOnline": false})
    );
    assert_eq!(ca.ack(1).await, st);
    let (cb, _) = Client::chat(s.addr, b).await;
    assert_eq!(
        ca.event("user:online").await,
        json!({"userId": 2, "userType": "influencer"})
    );
    // brand 2 is a different user from influencer 2.
    ca.emit(
        "user:check:online",
        json!({"userId": "2", "userType": "brand"}),
    )
    .await;
    assert_eq!(ca.event("user:online:status").await["isOnline"], false);
    ca.emit(
        "user:check:online",
        json!({"userId": 2, "userType": "influencer"}),
    )
    .await;
    assert_eq!(ca.event("user:online:status").await["isOnline"], true);
    // A second device of b: no new user:online; closing one of two: no user:offline.
    let (cb2, _) = Client::chat(s.addr, b).await;
    drop(cb);
    ca.no_event("user:offline", Duration::from_millis(300))
        .await;
    drop(cb2);
    assert_eq!(
        ca.event("user:offline").await,
        json!({"userId": 2, "userType": "influencer"})
    );
    // Users who share no conversation hear nothing.
    cs.no_event("user:online", Duration::from_millis(100)).await;
    cs.no_event("user:offline", Duration::from_millis(100))
        .await;
    cs.emit(
        "user:check:online",
        json!({"userId": 0, "userType": "brand"}),
    )
    .await;
    let e = cs.event("error").await;
    assert_eq!(
        (e["event"].as_str(), e["error"].as_str()),
        (Some("user:check:online"), Some("bad_request"))
    );
    // ... and cannot probe presence: a is online, but not to a stranger.
    cs.emit(
        "user:check:online",
        json!({"userId": 1, "userType": "brand"}),
    )
    .await;
    assert_eq!(cs.event("user:online:status").await["isOnline"], false);
    ca.emit(
        "user:check:online",
        json!({"userId": 1, "userType": "brand"}),
    )
    .await;
    assert_eq!(ca.event("user:online:status").await["isOnline"], true);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_broadcast_and_stops() {
    let s = TestServer::start().await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    // Not in the room: ignored.
    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    for c in [&mut ca, &mut cb] {
        c.join(conv).await;
    }
    cb.no_event("typing:start", Duration::from_millis(100))
        .await;
    let typing = json!({"conversationId": conv, "user": {"userId": 1, "userType": "brand"}});
    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    assert_eq!(cb.event("typing:start").await, typing);
    ca.no_event("typing:start", Duration::from_millis(100))
        .await;
    // Explicit stop.
    ca.emit("typing:stop", json!({"conversationId": conv}))
        .await;
    assert_eq!(cb.event("typing:stop").await, typing);
    // Sending a message stops typing on the typist's behalf.
    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    cb.event("typing:start").await;
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "done"}),
    )
    .await;
    cb.event("message:new").await;
    assert_eq!(cb.event("typing:stop").await, typing);
    // Disconnect stops typing.
    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    cb.event("typing:start").await;
    drop(ca);
    assert_eq!(cb.event("typing:stop").await, typing);
    s.stop().await;
}

/// Brand 1 and influencer 2 in a direct conversation, both joined to its room.
async fn joined_pair(s: &TestServer) -> (i64, Client, Client) {
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    for c in [&mut ca, &mut cb] {
        c.join(conv).await;
    }
    (conv, ca, cb)
}

/// The guide's client sends `message:send` then `typing:stop`; the server has already stopped
/// typing for it, so the other side hears exactly one `typing:stop` per sent message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_typing_stop_per_sent_message() {
    let s = TestServer::start().await;
    let (conv, mut ca, mut cb) = joined_pair(&s).await;
    for round in 0..3 {
        ca.emit("typing:start", json!({"conversationId": conv}))
            .await;
        ca.emit(
            "message:send",
            json!({"conversationId": conv, "content": format!("m{round}")}),
        )
        .await;
        ca.emit("typing:stop", json!({"conversationId": conv}))
            .await;
    }
    // A last message marks the end: everything the three rounds caused has arrived before it.
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "end"}),
    )
    .await;
    let mut frames = Vec::new();
    loop {
        let f = cb.next_raw().await.expect("frames until the last message");
        let end = f.starts_with(r#"42/chat,["message:new","#) && f.contains(r#""content":"end""#);
        frames.push(f);
        if end {
            break;
        }
    }
    // ... and no late one after it.
    cb.no_event("typing:stop", Duration::from_millis(300)).await;
    let count = |name: &str| {
        let prefix = format!("42/chat,[\"{name}\",");
        frames.iter().filter(|f| f.starts_with(&prefix)).count()
    };
    assert_eq!(count("typing:start"), 3, "{frames:?}");
    assert_eq!(count("message:new"), 4, "{frames:?}");
    assert_eq!(count("typing:stop"), 3, "one stop per message: {frames:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_stops_by_itself_after_six_seconds() {
    let s = TestServer::start().await;
    let (conv, mut ca, mut cb) = joined_pair(&s).await;
    let started = std::time::Instant::now();
    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    cb.event("typing:start").await;
    // A repeated start restarts the timer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ca.emit("typing:start", json!({"conversationId": conv}))
        .await;
    cb.event("typing:start").await;
    cb.no_event("typing:stop", Duration::from_secs(5)).await;
    let stop = tokio::time::timeout(Duration::from_secs(3), cb.event("typing:stop"))
        .await
        .unwrap();
    assert_eq!(stop["user"]["userId"], 1);
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "stopped after {:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts() {
    let s = TestServer::start().await;
    let (conv, mut ca, mut cb) = joined_pair(&s).await;
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "1"}),
    )
    .await;
    let m1 = ca.event("message:sent").await["message"]["id"]
        .as_i64()
        .unwrap();
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "2"}),
    )
    .await;
    let m2 = ca.event("message:sent").await["message"]["id"]
        .as_i64()
        .unwrap();
    cb.emit_ack(
        "message:read",
        json!({"conversationId": conv, "messageId": m1}),
        4,
    )
    .await;
    let ok = cb.event("message:read:success").await;
    assert_eq!(ok, json!({"conversationId": conv, "messageId": m1}));
    assert_eq!(cb.ack(4).await, ok);
    let seen = ca.event("message:read").await;
    assert_eq!(
        seen,
        json!({"conversationId": conv, "messageId": m1, "readBy": {"userId": 2, "userType": "influencer"}})
    );
    // Without messageId: up to the newest, and the reply names it.
    cb.emit("message:read", json!({"conversationId": conv.to_string()}))
        .await;
    assert_eq!(cb.event("message:read:success").await["messageId"], m2);
    assert_eq!(ca.event("message:read").await["messageId"], m2);
    cb.no_event("message:read", Duration::from_millis(100))
        .await;
    // Bad requests answer conversation:error.
    cb.emit("message:read", json!({"conversationId": "nope"}))
        .await;
    assert_eq!(cb.event("conversation:error").await["error"], "bad_request");
    let (mut cx, _) = Client::chat(s.addr, brand(77)).await;
    cx.emit("message:read", json!({"conversationId": conv}))
        .await;
    assert_eq!(cx.event("conversation:error").await["error"], "forbidden");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_auth_rules() {
    let s = TestServer::start().await;
    // No token on /chat.
    let mut c = Client::connect(s.addr).await;
    c.send("40/chat,").await;
    assert_eq!(
        c.next_raw().await.unwrap(),
        r#"44/chat,{"message":"unauthorized"}"#
    );
    // Bad token.
    c.send(r#"40/chat,{"token":"garbage"}"#).await;
    let refused = c.next_raw().await.unwrap();
    assert!(refused.starts_with("44/chat,{\"message\":"), "{refused}");
    // Bearer dev token works; `/` needs no token; both multiplexed on one connection.
    c.send(r#"40/chat,{"token":"Bearer 12:influencer"}"#).await;
    assert!(c.next_raw().await.unwrap().starts_with("40/chat,{\"sid\":"));
    let ok = c.event("connection:success").await;
    assert_eq!(
        (ok["userId"].as_i64(), ok["userType"].as_str()),
        (Some(12), Some("influencer"))
    );
    c.send("40").await;
    assert!(c.next_raw().await.unwrap().starts_with("40{\"sid\":"));
    // Unknown namespace.
    c.send("40/nope,").await;
    assert_eq!(
        c.next_raw().await.unwrap(),
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_header_is_the_fallback_token() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = TestServer::start().await;
    let mut req = format!("ws://{}/socket.io/?EIO=4&transport=websocket", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer 5:brand".parse().unwrap());
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let _open = ws.next().await;
    use futures_util::SinkExt;
    ws.send("40/chat,".into()).await.unwrap();
    let mut got = String::new();
    for _ in 0..2 {
        if let Some(Ok(m)) = ws.next().await {
            got.push_str(m.to_text().unwrap());
        }
    }
    assert!(got.contains(r#""userId":5,"userType":"brand""#), "{got}");
    s.stop().await;
}
