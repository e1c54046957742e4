//! A socket authenticated with a JWT is disconnected when the token expires, with a reason the
//! client can act on (`error {error: "unauthorized", message: "token expired"}`, then the
//! namespace DISCONNECT); the Engine.IO connection stays open for a new CONNECT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Client, TestServer};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn jwt(exp: u64) -> String {
    encode(
        &Header::default(),
        &json!({"sub": 5, "userType": "brand", "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_disconnects_the_socket_with_a_reason() {
    let s = TestServer::with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.dev_tokens = Some(false);
        c.jwt_leeway_secs = 0;
    })
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = Client::connect(s.addr).await;
    c.send(&format!(r#"40/chat,{{"token":"{}"}}"#, jwt(now + 2)))
        .await;
    assert!(c.next_raw().await.unwrap().starts_with("40/chat,{\"sid\":"));
    c.event("connection:success").await;
    let started = Instant::now();
    let e = c.event("error").await;
    assert_eq!(
        e,
        json!({"event": "connection", "error": "unauthorized", "message": "token expired"})
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let mut frame = String::new();
    for _ in 0..5 {
        frame = c.next_raw().await.unwrap();
        if frame.starts_with("41") {
            break;
        }
    }
    assert_eq!(frame, "41/chat,");
    // The socket is gone (its events are ignored), the connection is not: a fresh token joins.
    c.send(&format!(r#"40/chat,{{"token":"{}"}}"#, jwt(now + 3600)))
        .await;
    assert!(c.next_raw().await.unwrap().starts_with("40/chat,{\"sid\":"));
    let hello: Value = c.event("connection:success").await;
    assert_eq!(hello["userId"], 5);
    s.stop().await;
}
