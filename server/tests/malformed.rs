//! Hostile and broken clients: each one loses its own connection, the server and every other
//! client carry on. Garbage frames, bad binary placeholders, oversize payloads, deeply nested
//! JSON, a client that never reads (in a busy room, and in a quiet room once its socket buffers
//! are full), a client that never sends its headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, TestServer, brand, influencer, poll_post, polling_open};
use serde_json::json;

/// A healthy client still gets answers.
async fn still_serves(healthy: &mut Client) {
    healthy
        .emit(
            "user:check:online",
            json!({"userId": 1, "userType": "brand"}),
        )
        .await;
    assert_eq!(healthy.event("user:online:status").await["isOnline"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let s = TestServer::start().await;
    let (mut healthy, _) = Client::chat(s.addr, brand(1)).await;
    let nested = format!(
        "42/chat,[\"message:send\",{}{}]",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let bad_frames = [
        "garbage".to_owned(),
        "9".to_owned(),
        "42/chat,{not json".to_owned(),
        "42/chat,[]".to_owned(),
        r#"42/chat,["connect",{}]"#.to_owned(),
        r#"451-/chat,["message:send",{"_placeholder":true,"num":5}]"#.to_owned(),
        r#"4511-/chat,["x"]"#.to_owned(),
        nested,
        "42/chat,99999999999999999999999[\"x\"]".to_owned(),
    ];
    for bad in bad_frames {
        let (mut c, _) = Client::chat(s.addr, influencer(2)).await;
        c.send(&bad).await;
        assert!(c.closed_within(Duration::from_secs(3)).await, "{bad:.60}");
        still_serves(&mut healthy).await;
    }
    // A binary frame when no attachment is expected.
    let (mut c, _) = Client::chat(s.addr, influencer(3)).await;
    c.send_binary(&[1, 2, 3]).await;
    assert!(c.closed_within(Duration::from_secs(3)).await);
    // Attachments announced but a text frame arrives first.
    let (mut c, _) = Client::chat(s.addr, influencer(4)).await;
    c.send(r#"451-/chat,["message:send",{"_placeholder":true,"num":0}]"#)
        .await;
    c.send(r#"42/chat,["message:send",{}]"#).await;
    assert!(c.closed_within(Duration::from_secs(3)).await);
    still_serves(&mut healthy).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_payloads_are_refused() {
    let s = TestServer::with(|c| c.max_payload = 10_000).await;
    let (mut healthy, _) = Client::chat(s.addr, brand(1)).await;
    let (mut c, _) = Client::chat(s.addr, influencer(2)).await;
    let big = format!(
        "42/chat,[\"message:send\",{{\"content\":\"{}\"}}]",
        "x".repeat(20_000)
    );
    c.send(&big).await;
    assert!(c.closed_within(Duration::from_secs(3)).await);
    still_serves(&mut healthy).await;
    let (sid, open) = polling_open(s.addr, "/socket.io/").await;
    assert_eq!(open["maxPayload"], 10_000);
    let r = poll_post(s.addr, "/socket.io/", &sid, &big).await;
    assert_eq!(r.status, 413);
    // The session is gone.
    assert_eq!(
        poll_post(s.addr, "/socket.io/", &sid, "40").await.status,
        400
    );
    still_serves(&mut healthy).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected() {
    let s = TestServer::with(|c| {
        c.outbound_queue = 16;
        c.rate_limit_per_socket = 0;
        c.rate_limit_per_user = 0;
    })
    .await;
    let (a, slow, watcher) = (brand(1), influencer(2), brand(3));
    let conv = s.direct(a, slow).await;
    // The watcher shares a conversation with both, so it may see their presence.
    s.direct(watcher, slow).await;
    s.direct(watcher, a).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    let (mut cs, _) = Client::chat(s.addr, slow).await;
    cs.emit("conversation:join", json!({"conversationId": conv}))
        .await;
    cs.event("conversation:joined").await;
    let (mut cw, _) = Client::chat(s.addr, watcher).await;
    // The slow client stops reading; the sender floods the room with large messages.
    let content = "y".repeat(3900);
    // In batches of 6 so the sender's own queue (sent + ack per message) never fills.
    for batch in 0..700u64 {
        for i in batch * 6..batch * 6 + 6 {
            ca.emit_ack(
                "message:send",
                json!({"conversationId": conv, "content": content, "tempId": i}),
                i,
            )
            .await;
        }
        ca.ack(batch * 6 + 5).await;
        ca.backlog.clear();
    }
    // The slow client was dropped: its user is offline; everyone else is fine.
    let mut offline = false;
    for _ in 0..50 {
        cw.emit(
            "user:check:online",
            json!({"userId": 2, "userType": "influencer"}),
        )
        .await;
        if cw.event("user:online:status").await["isOnline"] == false {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(offline, "slow reader disconnected");
    still_serves(&mut cw).await;
    drop(cs);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_headers_is_dropped() {
    use tokio::io::AsyncReadExt;
    let s = TestServer::with(|c| c.header_read_timeout_ms = 300).await;
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let t = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)) || t.elapsed() >= Duration::from_millis(250));
    assert!(t.elapsed() >= Duration::from_millis(250));
    let (mut c, _) = Client::chat(s.addr, brand(1)).await;
    still_serves(&mut c).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_write_in_a_quiet_room_is_bounded_by_the_ping_timeout() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let s = TestServer::with(|c| {
        c.rate_limit_per_socket = 0;
        c.rate_limit_per_user = 0;
        c.max_message_chars = 200_000;
        c.max_payload = 4_000_000;
        c.ping_interval_ms = 500;
        c.ping_timeout_ms = 1000;
    })
    .await;
    let (sender, stuck) = (brand(1), influencer(2));
    let conv = s.direct(sender, stuck).await;
    let (mut cs, _) = Client::chat(s.addr, sender).await;
    // The stuck client: a small receive buffer, joins the room, then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", s.addr);
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let mut stuck_client = Client {
        ws,
        open: serde_json::Value::Null,
        backlog: Vec::new(),
    };
    assert!(stuck_client.next_raw().await.unwrap().starts_with('0'));
    stuck_client
        .send(&format!(
            r#"40/chat,{{"token":"{}"}}"#,
            common::token(stuck)
        ))
        .await;
    stuck_client.event("connection:success").await;
    stuck_client
        .emit("conversation:join", json!({"conversationId": conv}))
        .await;
    stuck_client.event("conversation:joined").await;
    // A few large messages fill the kernel buffers (far below the outbound queue's limits), then
    // the room goes quiet: the server's write to the stuck client cannot finish.
    let content = "z".repeat(190_000);
    for i in 0..40u64 {
        cs.emit_ack(
            "message:send",
            json!({"conversationId": conv, "content": content, "tempId": i}),
            i,
        )
        .await;
        cs.ack(i).await;
        cs.backlog.clear();
    }
    // The stuck client is disconnected once its pending write outlives the ping timeout.
    let mut offline = false;
    for _ in 0..40 {
        cs.emit(
            "user:check:online",
            json!({"userId": 2, "userType": "influencer"}),
        )
        .await;
        if cs.event("user:online:status").await["isOnline"] == false {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        offline,
        "a client whose write never finishes is disconnected"
    );
    let _ = stuck_client.ws.send(Message::Text("3".into())).await;
    s.stop().await;
}
