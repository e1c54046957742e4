//! Contract rows for `message:send` / `message:sent` / `message:new` / `message:notification` /
//! `message:error` and `conversation:join` / `conversation:leave`, against a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, TestServer, brand, influencer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_join_send_receive() {
    let s = TestServer::start().await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut ca, success) = Client::chat(s.addr, a).await;
    assert_eq!(success["userId"], 1);
    assert_eq!(success["userType"], "brand");
    assert!(success["socketId"].as_str().is_some_and(|s| !s.is_empty()));
    let (mut cb, _) = Client::chat(s.addr, b).await;
    for c in [&mut ca, &mut cb] {
        c.emit("conversation:join", json!({"conversationId": conv}))
            .await;
        let joined = c.event("conversation:joined").await;
        assert_eq!(
            joined,
            json!({"conversationId": conv, "room": format!("conversation:{conv}")})
        );
    }
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "Hello!", "tempId": 5}),
    )
    .await;
    let sent = ca.event("message:sent").await;
    assert_eq!(sent["tempId"], 5);
    assert_eq!(sent["message"]["content"], "Hello!");
    assert_eq!(sent["message"]["senderType"], "brand");
    assert_eq!(sent["message"]["conversationId"], conv);
    let new = cb.event("message:new").await;
    assert_eq!(new, sent["message"]);
    ca.no_event("message:new", Duration::from_millis(200)).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_callback_gets_the_same_payload_and_retry_is_idempotent() {
    let s = TestServer::start().await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    ca.emit_ack(
        "message:send",
        json!({"conversationId": conv.to_string(), "content": "x", "tempId": "t1"}),
        7,
    )
    .await;
    let sent = ca.event("message:sent").await;
    let acked = ca.ack(7).await;
    assert_eq!(sent, acked);
    assert_eq!(sent["tempId"], "t1");
    // Same (sender, conversation, tempId): same message, nothing new stored.
    ca.emit_ack(
        "message:send",
        json!({"conversationId": conv, "content": "x", "tempId": "t1"}),
        8,
    )
    .await;
    let again = ca.ack(8).await;
    assert_eq!(again["message"]["id"], sent["message"]["id"]);
    // tempId keeps its JSON type: 5 and "5" are different keys.
    ca.emit_ack(
        "message:send",
        json!({"conversationId": conv, "content": "y", "tempId": 5}),
        9,
    )
    .await;
    ca.emit_ack(
        "message:send",
        json!({"conversationId": conv, "content": "y", "tempId": "5"}),
        10,
    )
    .await;
    let n = ca.ack(9).await;
    let s5 = ca.ack(10).await;
    assert_ne!(n["message"]["id"], s5["message"]["id"]);
    assert_eq!(n["tempId"], 5);
    assert_eq!(s5["tempId"], "5");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_validation_codes() {
    let s = TestServer::with(|c| c.max_message_chars = 10).await;
    let (a, b, stranger) = (brand(1), influencer(2), brand(3));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let cases = [
        (
            json!({"conversationId": conv, "content": "   ", "tempId": 1}),
            "bad_request",
            json!(1),
        ),
        (
            json!({"conversationId": conv, "content": "12345678901"}),
            "too_large",
            json!(null),
        ),
        (
            json!({"conversationId": conv, "content": "ok", "messageType": "video"}),
            "bad_request",
            json!(null),
        ),
        (
            json!({"conversationId": conv, "messageType": "image"}),
            "bad_request",
            json!(null),
        ),
        (
            json!({"conversationId": conv, "messageType": "image", "attachmentUrl": "ftp://x/y"}),
            "bad_request",
            json!(null),
        ),
        (
            json!({"conversationId": "abc", "content": "x", "tempId": "k"}),
            "bad_request",
            json!("k"),
        ),
        (
            json!({"conversationId": 999_999, "content": "x"}),
            "not_found",
            json!(null),
        ),
        (json!("not an object"), "bad_request", json!(null)),
    ];
    for (i, (payload, code, temp)) in cases.into_iter().enumerate() {
        let id = 100 + i as u64;
        ca.emit_ack("message:send", payload.clone(), id).await;
        let err = ca.event("message:error").await;
        assert_eq!(err["error"], code, "{payload}: {err}");
        assert_eq!(err["tempId"], temp, "{payload}");
        assert!(err["message"].is_string());
        assert_eq!(ca.ack(id).await, err);
    }
    // Over 10 code points but 10 chars of multi-byte text is fine.
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "ééééééééé€"}),
    )
    .await;
    ca.event("message:sent").await;
    // An image with an https URL and empty content is fine.
    ca.emit("message:send", json!({"conversationId": conv, "messageType": "image", "attachmentUrl": "https://cdn.example.com/a.png"})).await;
    let sent = ca.event("message:sent").await;
    assert_eq!(sent["message"]["messageType"], "image");
    // A non-participant is forbidden.
    let (mut cs, _) = Client::chat(s.addr, stranger).await;
    cs.emit(
        "message:send",
        json!({"conversationId": conv, "content": "hi"}),
    )
    .await;
    assert_eq!(cs.event("message:error").await["error"], "forbidden");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_goes_to_participants_not_in_the_room() {
    let s = TestServer::start().await;
    let (a, b, c) = (brand(1), influencer(2), influencer(3));
    let conv = s.group(a, &[b, c]).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    let (mut cc, _) = Client::chat(s.addr, c).await;
    cb.emit("conversation:join", json!({"conversationId": conv}))
        .await;
    cb.event("conversation:joined").await;
    // The sender may send without joining.
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "hey"}),
    )
    .await;
    let sent = ca.event("message:sent").await;
    assert_eq!(cb.event("message:new").await, sent["message"]);
    let note = cc.event("message:notification").await;
    assert_eq!(
        note,
        json!({"conversationId": conv, "message": sent["message"]})
    );
    cb.no_event("message:notification", Duration::from_millis(200))
        .await;
    ca.no_event("message:notification", Duration::from_millis(100))
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refused_for_non_participants_and_leave_stops_delivery() {
    let s = TestServer::start().await;
    let (a, b, x) = (brand(1), influencer(2), brand(9));
    let conv = s.direct(a, b).await;
    let (mut cx, _) = Client::chat(s.addr, x).await;
    cx.emit_ack("conversation:join", json!({"conversationId": conv}), 1)
        .await;
    let err = cx.event("conversation:error").await;
    assert_eq!(err["error"], "forbidden");
    assert_eq!(err["conversationId"], conv);
    assert_eq!(cx.ack(1).await, err);
    cx.emit("conversation:join", json!({"conversationId": 424242}))
        .await;
    assert_eq!(cx.event("conversation:error").await["error"], "not_found");
    cx.emit("conversation:join", json!({})).await;
    assert_eq!(cx.event("conversation:error").await["error"], "bad_request");
    cx.emit("conversation:leave", json!({"conversationId": [1]}))
        .await;
    let e = cx.event("error").await;
    assert_eq!(e["event"], "conversation:leave");
    assert_eq!(e["error"], "bad_request");

    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    cb.emit("conversation:join", json!({"conversationId": conv}))
        .await;
    cb.event("conversation:joined").await;
    cb.emit_ack("conversation:leave", json!({"conversationId": conv}), 3)
        .await;
    let left = cb.event("conversation:left").await;
    assert_eq!(
        left,
        json!({"conversationId": conv, "room": format!("conversation:{conv}")})
    );
    assert_eq!(cb.ack(3).await, left);
    ca.emit(
        "message:send",
        json!({"conversationId": conv, "content": "after leave"}),
    )
    .await;
    ca.event("message:sent").await;
    // Not in the room any more: a notification instead of message:new.
    cb.event("message:notification").await;
    cb.no_event("message:new", Duration::from_millis(200)).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_id_order_across_many_senders() {
    let s = TestServer::start().await;
    let users: Vec<_> = (1..=4).map(brand).collect();
    let conv = s.group(users[0], &users[1..]).await;
    let mut clients = Vec::new();
    for u in &users {
        let (mut c, _) = Client::chat(s.addr, *u).await;
        c.join(conv).await;
        clients.push(c);
    }
    let per_sender = 10;
    for round in 0..per_sender {
        for c in clients.iter_mut() {
            c.emit(
                "message:send",
                json!({"conversationId": conv, "content": format!("m{round}")}),
            )
            .await;
        }
    }
    // Each client sees the others' messages (3 * per_sender) in increasing id order.
    for c in clients.iter_mut() {
        let mut last = 0;
        for _ in 0..(users.len() - 1) * per_sender {
            let m = c.event("message:new").await;
            let id = m["id"].as_i64().unwrap();
            assert!(id > last, "ids out of order: {id} after {last}");
            last = id;
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_send_and_read_reach_sockets() {
    let s = TestServer::start().await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut cb, _) = Client::chat(s.addr, b).await;
    cb.emit("conversation:join", json!({"conversationId": conv}))
        .await;
    cb.event("conversation:joined").await;
    let unauth = common::http(s.addr, "GET", "/api/chat/conversations", "", b"").await;
    assert_eq!(unauth.status, 401);
    let body = json!({"conversationId": conv, "content": "over http", "tempId": "h1"}).to_string();
    let r = common::http(
        s.addr,
        "POST",
        "/api/chat/messages",
        "Authorization: Bearer 1:brand\r\nContent-Type: application/json\r\n",
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let posted: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(cb.event("message:new").await, posted);
    let body = json!({"messageId": posted["id"]}).to_string();
    let r = common::http(
        s.addr,
        "PUT",
        &format!("/api/chat/conversations/{conv}/read"),
        "Authorization: 2:influencer\r\n",
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (mut ca, _) = Client::chat(s.addr, a).await;
    ca.emit("conversation:join", json!({"conversationId": conv}))
        .await;
    ca.event("conversation:joined").await;
    let r = common::http(
        s.addr,
        "PUT",
        &format!("/api/chat/conversations/{conv}/read"),
        "Authorization: 2:influencer\r\n",
        b"{}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let read = ca.event("message:read").await;
    assert_eq!(
        read["readBy"],
        json!({"userId": 2, "userType": "influencer"})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_sender_gets_rate_limited_not_disconnected() {
    let s = TestServer::with(|c| {
        c.rate_limit_per_socket = 1;
        // The namespace CONNECT spends one of the burst, three sends the rest.
        c.rate_limit_burst = 4;
    })
    .await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    for i in 0..6 {
        ca.emit_ack(
            "message:send",
            json!({"conversationId": conv, "content": "x", "tempId": i}),
            i,
        )
        .await;
    }
    let mut limited = 0;
    let mut sent = 0;
    for i in 0..6 {
        let r = ca.ack(i).await;
        if r["error"] == "rate_limited" {
            assert_eq!(r["tempId"], i);
            limited += 1;
        } else {
            assert_eq!(r["message"]["content"], "x");
            sent += 1;
        }
    }
    assert_eq!((sent, limited), (3, 3));
    // Still connected, and allowed again after a pause.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ca.emit_ack(
        "message:send",
        json!({"conversationId": conv, "content": "later"}),
        99,
    )
    .await;
    assert_eq!(ca.ack(99).await["message"]["content"], "later");
    s.stop().await;
}
