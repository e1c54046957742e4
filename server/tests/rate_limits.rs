//! Contract section 1: the per-socket rate limit (20 messages/s, bursts of 40) covers every
//! client event, answers with each event's own `rate_limited` error, and never disconnects.
//! REST sends, conversation creations, searches and reads are limited per user and per address
//! (429 `rate_limited` with `Retry-After`, counted in `/metrics`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, TestServer, brand, influencer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_counts_against_the_rate_limit() {
    let s = TestServer::with(|c| {
        c.rate_limit_per_socket = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let (mut ca, _) = Client::chat(s.addr, a).await;
    // Typing has no reply, but it spends the burst like any other event.
    for _ in 0..3 {
        ca.emit("typing:start", json!({"conversationId": conv}))
            .await;
    }
    ca.emit_ack(
        "user:check:online",
        json!({"userId": 2, "userType": "influencer"}),
        1,
    )
    .await;
    let r = ca.ack(1).await;
    assert_eq!(r["error"], "rate_limited", "{r}");
    assert_eq!(r["event"], "user:check:online");
    ca.emit_ack("conversation:join", json!({"conversationId": conv}), 2)
        .await;
    let r = ca.ack(2).await;
    assert_eq!(r["error"], "rate_limited", "{r}");
    assert_eq!(r["conversationId"], conv);
    ca.emit_ack("message:read", json!({"conversationId": conv}), 3)
        .await;
    assert_eq!(ca.ack(3).await["error"], "rate_limited");
    ca.emit_ack("conversation:leave", json!({"conversationId": conv}), 4)
        .await;
    assert_eq!(ca.ack(4).await["error"], "rate_limited");
    // A fast client is only slowed down: after a pause the same socket is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ca.emit_ack("conversation:join", json!({"conversationId": conv}), 5)
        .await;
    let r = ca.ack(5).await;
    assert!(r.get("error").is_none(), "{r}");
    s.stop().await;
}

/// Leaving and joining `/chat` again on the same connection gives no fresh burst (the CONNECTs
/// count too), and a user's connections share one per-user budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_the_namespace_or_opening_connections_gives_no_fresh_burst() {
    let s = TestServer::with(|c| {
        c.rate_limit_per_socket = 1;
        c.rate_limit_burst = 4;
        c.rate_limit_per_user = 0;
        c.shards = 1;
    })
    .await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    // Burst 4: the CONNECT took one, three events take the rest.
    let (mut ca, _) = Client::chat(s.addr, a).await;
    for _ in 0..3 {
        ca.emit("typing:start", json!({"conversationId": conv}))
            .await;
    }
    // Leave and join the namespace again: refused, the burst is spent.
    ca.send("41/chat,").await;
    ca.send(&format!(r#"40/chat,{{"token":"{}"}}"#, "1:brand"))
        .await;
    let refused = ca.next_raw().await.unwrap();
    assert_eq!(refused, r#"44/chat,{"message":"rate_limited"}"#);
    s.stop().await;

    // Per user: two connections of one user share 2 events/s (bursts of 4).
    let s = TestServer::with(|c| {
        c.rate_limit_per_socket = 0;
        c.rate_limit_per_user = 2;
        c.shards = 1;
    })
    .await;
    let conv = s.direct(a, b).await;
    let (mut c1, _) = Client::chat(s.addr, a).await;
    let (mut c2, _) = Client::chat(s.addr, a).await;
    for i in 0..4u64 {
        let c = if i % 2 == 0 { &mut c1 } else { &mut c2 };
        c.emit_ack("conversation:join", json!({"conversationId": conv}), i)
            .await;
        let r = c.ack(i).await;
        assert!(
            r.get("error").is_none(),
            "event {i} within the user's burst: {r}"
        );
    }
    c2.emit_ack("conversation:join", json!({"conversationId": conv}), 9)
        .await;
    assert_eq!(
        c2.ack(9).await["error"],
        "rate_limited",
        "the fifth event of the user"
    );
    s.stop().await;
}

/// A REST request with a dev token (fresh connection).
async fn rest(
    addr: std::net::SocketAddr,
    user: chatwire::store::UserKey,
    method: &str,
    path: &str,
    body: &str,
) -> common::RawResponse {
    let auth = format!(
        "Authorization: Bearer {}\r\nContent-Type: application/json\r\n",
        common::token(user)
    );
    common::http(addr, method, path, &auth, body.as_bytes()).await
}

/// The value of `chatwire_rest_rate_limited_total{kind,scope}` in `/metrics` (0 when absent).
async fn rest_refusals(addr: std::net::SocketAddr, kind: &str, scope: &str) -> u64 {
    let text = common::http(addr, "GET", "/metrics", "", b"").await.text();
    text.lines()
        .filter(|l| l.starts_with("chatwire_rest_rate_limited_total{"))
        .filter(|l| {
            l.contains(&format!("kind=\"{kind}\"")) && l.contains(&format!("scope=\"{scope}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_sends_creates_and_searches_are_limited_per_user_with_retry_after() {
    let s = TestServer::with(|c| {
        c.rate_limit_rest_sends = 1;
        c.rate_limit_rest_creates = 1;
        c.rate_limit_rest_searches = 1;
        c.rate_limit_rest_ip_factor = 0;
    })
    .await;
    let (a, b) = (brand(1), influencer(2));
    let conv = s.direct(a, b).await;
    let before = rest_refusals(s.addr, "search", "user").await;
    let send = format!(r#"{{"conversationId":{conv},"content":"hi"}}"#);
    let create = r#"{"participants":[{"userId":2,"userType":"influencer"},{"userId":3,"userType":"influencer"}],"title":"g"}"#;
    let search = format!("/api/chat/conversations/{conv}/messages?q=hi");
    let cases: [(&str, &str, &str); 3] = [
        ("POST", "/api/chat/messages", &send),
        ("POST", "/api/chat/conversations", create),
        ("GET", &search, ""),
    ];
    for (method, path, body) in cases {
        // Bursts of twice the rate (2), then 429 with Retry-After.
        for i in 0..2 {
            let r = rest(s.addr, a, method, path, body).await;
            assert!(
                r.status < 300,
                "{method} {path} #{i}: {} {}",
                r.status,
                r.text()
            );
        }
        let r = rest(s.addr, a, method, path, body).await;
        assert_eq!(r.status, 429, "{method} {path}: {}", r.text());
        assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
        let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(answer["error"]["code"], "rate_limited");
        // Another user, and another kind of request, are not affected.
        let other = rest(s.addr, b, method, path, body_for(method, body)).await;
        assert!(other.status < 300, "{method} {path} by b: {}", other.status);
    }
    let list = rest(s.addr, a, "GET", "/api/chat/conversations", "").await;
    assert_eq!(list.status, 200);
    assert_eq!(rest_refusals(s.addr, "search", "user").await, before + 1);
    s.stop().await;
}

/// The body b sends for the same request (b cannot create a group naming itself).
fn body_for<'a>(method: &str, body: &'a str) -> &'a str {
    if method == "POST" && body.contains("participants") {
        r#"{"participants":[{"userId":1,"userType":"brand"},{"userId":4,"userType":"brand"}],"title":"g"}"#
    } else {
        body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_reads_are_limited_per_address_across_users() {
    let s = TestServer::with(|c| {
        c.rate_limit_rest_reads = 1;
        c.rate_limit_rest_ip_factor = 2;
    })
    .await;
    let before = rest_refusals(s.addr, "read", "ip").await;
    // The address allows 2 x 1 per second with bursts of 4, whoever asks.
    for id in 1..=4 {
        let r = rest(s.addr, brand(id), "GET", "/api/chat/unread-count", "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = rest(s.addr, brand(5), "GET", "/api/chat/unread-count", "").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
    // Refused before authentication: a bad token is refused the same way.
    let r = common::http(
        s.addr,
        "GET",
        "/api/chat/unread-count",
        "Authorization: Bearer nope\r\n",
        b"",
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(rest_refusals(s.addr, "read", "ip").await, before + 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = rest(s.addr, brand(5), "GET", "/api/chat/unread-count", "").await;
    assert_eq!(r.status, 200, "the address may ask again after Retry-After");
    s.stop().await;
}
