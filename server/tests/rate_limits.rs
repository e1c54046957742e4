//! Contract section 1: the per-socket rate limit (20 messages/s, bursts of 40) covers every
//! client event, answers with each event's own `rate_limited` error, and never disconnects.
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
