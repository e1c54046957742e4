//! Engine.IO transports against a real server: polling handshake and exchange, error codes,
//! Origin refusal, polling -> WebSocket upgrade (on whichever shard the new TCP connection lands),
//! heartbeat and connectTimeout, and a chat session over polling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestServer, http, poll_get, poll_post, polling_open, ws_open};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const ROOT: &str = "/socket.io/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_handshake_and_reference_error_codes() {
    let s = TestServer::start().await;
    let (sid, open) = polling_open(s.addr, ROOT).await;
    assert_eq!(sid.len(), 16);
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["pingInterval"], 25000);
    assert_eq!(open["pingTimeout"], 20000);
    assert_eq!(open["maxPayload"], 1000000);
    let cases = [
        (
            "GET",
            format!("{ROOT}?EIO=4&transport=flash"),
            0,
            "Transport unknown",
        ),
        (
            "GET",
            format!("{ROOT}?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAA"),
            1,
            "Session ID unknown",
        ),
        (
            "POST",
            format!("{ROOT}?EIO=4&transport=polling"),
            2,
            "Bad handshake method",
        ),
        (
            "GET",
            format!("{ROOT}?EIO=3&transport=polling"),
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            format!("{ROOT}?EIO=4&transport=websocket"),
            3,
            "Bad request",
        ),
    ];
    for (method, path, code, message) in cases {
        let r = http(s.addr, method, &path, "", b"").await;
        assert_eq!(r.status, 400, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": code, "message": message}),
            "{path}"
        );
    }
    let r = http(s.addr, "GET", "/healthz", "", b"").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(http(s.addr, "GET", "/readyz", "", b"").await.status, 200);
    assert_eq!(http(s.addr, "GET", "/nope", "", b"").await.status, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_origin_is_refused_on_polling_and_upgrade() {
    let s = TestServer::start().await;
    let evil = "Origin: https://evil.example\r\n";
    let r = http(
        s.addr,
        "GET",
        &format!("{ROOT}?EIO=4&transport=polling"),
        evil,
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    let ws = ws_open(
        s.addr,
        &format!("{ROOT}?EIO=4&transport=websocket"),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(ws.err(), Some(403));
    let ok = http(
        s.addr,
        "GET",
        &format!("{ROOT}?EIO=4&transport=polling"),
        "Origin: http://localhost:5173\r\n",
        b"",
    )
    .await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.headers
            .contains("access-control-allow-origin: http://localhost:5173"),
        "{}",
        ok.headers
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_polling_on_any_shard() {
    let s = TestServer::start().await;
    let (a, b) = (common::brand(1), common::influencer(2));
    let conv = s.direct(a, b).await;
    let (sid, _) = polling_open(s.addr, ROOT).await;
    // Every request is a new TCP connection: the kernel spreads them over both shards and
    // requests that land on the other shard are forwarded to the session's owner.
    let r = poll_post(s.addr, ROOT, &sid, "40/chat,{\"token\":\"1:brand\"}").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let got = poll_get(s.addr, ROOT, &sid).await.text();
    assert!(got.starts_with("40/chat,{\"sid\":"), "{got}");
    assert!(got.contains("connection:success"), "{got}");
    for i in 0..6 {
        let body = format!(
            "42/chat,{i}[\"message:send\",{{\"conversationId\":{conv},\"content\":\"p{i}\"}}]"
        );
        assert_eq!(poll_post(s.addr, ROOT, &sid, &body).await.status, 200);
        let mut got = String::new();
        while !got.contains(&format!("43/chat,{i}[")) {
            let r = poll_get(s.addr, ROOT, &sid).await;
            assert_eq!(r.status, 200);
            got.push_str(&r.text());
        }
        assert!(got.contains("message:sent"), "{got}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_upgrades_to_websocket() {
    let s = TestServer::start().await;
    for _ in 0..6 {
        let (sid, _) = polling_open(s.addr, ROOT).await;
        assert_eq!(poll_post(s.addr, ROOT, &sid, "40").await.status, 200);
        assert!(
            poll_get(s.addr, ROOT, &sid)
                .await
                .text()
                .starts_with("40{\"sid\":")
        );
        let mut ws = ws_open(
            s.addr,
            &format!("{ROOT}?EIO=4&transport=websocket&sid={sid}"),
            &[],
        )
        .await
        .unwrap();
        // A poll is pending while the probe runs; it is ended with a noop.
        let addr = s.addr;
        let sid2 = sid.clone();
        let pending = tokio::spawn(async move { poll_get(addr, ROOT, &sid2).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        ws.send(Message::Text("2probe".into())).await.unwrap();
        let pong = ws.next().await.unwrap().unwrap();
        assert_eq!(pong.to_text().unwrap(), "3probe");
        assert_eq!(pending.await.unwrap().text(), "6");
        ws.send(Message::Text("5".into())).await.unwrap();
        // Now the session runs on the websocket: polling is refused, messages flow over ws.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(poll_get(s.addr, ROOT, &sid).await.status, 400);
        ws.send(Message::Text("40/chat,{\"token\":\"3:brand\"}".into()))
            .await
            .unwrap();
        let connected = ws.next().await.unwrap().unwrap();
        assert!(
            connected
                .to_text()
                .unwrap()
                .starts_with("40/chat,{\"sid\":"),
            "{connected}"
        );
        // A second websocket for the same session is accepted and closed at once (as the
        // reference server does); the upgraded session carries on.
        let mut again = ws_open(
            s.addr,
            &format!("{ROOT}?EIO=4&transport=websocket&sid={sid}"),
            &[],
        )
        .await
        .expect("accepted, then closed");
        let first = tokio::time::timeout(Duration::from_secs(2), again.next())
            .await
            .expect("closed at once");
        assert!(
            matches!(first, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
            "{first:?}"
        );
        ws.send(Message::Text(
            "42/chat,[\"user:check:online\",{\"userId\":3,\"userType\":\"brand\"}]".into(),
        ))
        .await
        .unwrap();
        let mut answered = false;
        for _ in 0..10 {
            let frame = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
            let Ok(Some(Ok(frame))) = frame else { break };
            if frame.to_text().unwrap_or("").contains("user:online:status") {
                answered = true;
                break;
            }
        }
        assert!(answered, "the upgraded session still answers");
        // An unknown sid is still refused.
        let unknown = ws_open(
            s.addr,
            &format!("{ROOT}?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA"),
            &[],
        )
        .await;
        assert_eq!(unknown.err(), Some(400));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_and_timeouts() {
    let s = TestServer::with(|c| {
        c.ping_interval_ms = 100;
        c.ping_timeout_ms = 100;
        c.connect_timeout_ms = 300;
    })
    .await;
    // connectTimeout: no namespace joined -> closed.
    let mut ws = ws_open(s.addr, &format!("{ROOT}?EIO=4&transport=websocket"), &[])
        .await
        .unwrap();
    let _open = ws.next().await;
    let started = std::time::Instant::now();
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        match msg {
            Ok(Message::Text(t)) if t.as_str() == "2" => {
                ws.send(Message::Text("3".into())).await.unwrap_or(())
            }
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "connect timeout closes the connection");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Ping timeout: a client that never pongs is dropped; one that pongs stays.
    let mut silent = ws_open(s.addr, &format!("{ROOT}?EIO=4&transport=websocket"), &[])
        .await
        .unwrap();
    let _ = silent.next().await;
    silent.send(Message::Text("40".into())).await.unwrap();
    let mut pings = 0;
    let mut ended = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), silent.next()).await {
        match msg {
            Ok(Message::Text(t)) if t.as_str() == "2" => pings += 1,
            Ok(Message::Close(_)) | Err(_) => {
                ended = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(ended, "no pong: session closed");
    assert_eq!(pings, 1);
    s.stop().await;
}
