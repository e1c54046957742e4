//! The key cases of Socket.IO's own protocol test suites (socketio/engine.io-protocol and
//! socketio/socket.io-protocol `test-suite/`), ported to Rust and run against
//! `chatwire conformance` (pingInterval 300, pingTimeout 200, connectTimeout 1000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestServer, http, poll_get, poll_post, polling_open, ws_open};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const EIO: &str = "/engine.io/";
const SIO: &str = "/socket.io/";

type Ws = WebSocketStream<TcpStream>;

async fn next(ws: &mut Ws) -> Option<Message> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(3), ws.next())
            .await
            .ok()??
            .ok()?;
        match &m {
            Message::Text(t) if t.as_str() == "2" => {
                let _ = ws.send(Message::Text("3".into())).await;
            }
            Message::Ping(_) | Message::Pong(_) => {}
            _ => return Some(m),
        }
    }
}

async fn next_text(ws: &mut Ws) -> String {
    match next(ws).await {
        Some(Message::Text(t)) => t.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn closes(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                let _ = ws.send(Message::Text("3".into())).await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// After the client's Close: true once the server's Close frame arrives (what comes before it is
/// skipped); false if the stream ends, fails or goes quiet for 3 s first.
async fn close_answered(ws: &mut Ws, what: &str) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
            other => {
                eprintln!("{what}: ended with {other:?}");
                return false;
            }
        }
    }
}

async fn eio_ws(addr: std::net::SocketAddr, root: &str) -> Ws {
    let mut ws = ws_open(addr, &format!("{root}?EIO=4&transport=websocket"), &[])
        .await
        .unwrap();
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'));
    ws
}

/// Engine.IO session + `40` on the main namespace (+ the `auth` event).
async fn sio_ws(addr: std::net::SocketAddr) -> Ws {
    let mut ws = eio_ws(addr, SIO).await;
    ws.send(Message::Text("40".into())).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_handshake_and_open_packet() {
    let s = TestServer::conformance().await;
    let (_, open) = polling_open(s.addr, EIO).await;
    let keys: Vec<_> = open.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 5, "{open}");
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(
        (
            open["pingInterval"].as_u64(),
            open["pingTimeout"].as_u64(),
            open["maxPayload"].as_u64()
        ),
        (Some(300), Some(200), Some(1_000_000))
    );
    let mut ws = ws_open(s.addr, &format!("{EIO}?EIO=4&transport=websocket"), &[])
        .await
        .unwrap();
    let open: Value = serde_json::from_str(&next_text(&mut ws).await[1..]).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!([]));
    for q in [
        "?transport=polling",
        "?EIO=abc&transport=polling",
        "?EIO=4",
        "?EIO=4&transport=abc",
    ] {
        assert_eq!(
            http(s.addr, "GET", &format!("{EIO}{q}"), "", b"")
                .await
                .status,
            400,
            "{q}"
        );
    }
    for m in ["POST", "PUT"] {
        assert_eq!(
            http(
                s.addr,
                m,
                &format!("{EIO}?EIO=4&transport=polling"),
                "",
                b""
            )
            .await
            .status,
            400,
            "{m}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_messages_echo_over_polling_and_websocket() {
    let s = TestServer::conformance().await;
    let (sid, _) = polling_open(s.addr, EIO).await;
    let r = poll_post(s.addr, EIO, &sid, "4hello").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(poll_get(s.addr, EIO, &sid).await.text(), "4hello");
    assert_eq!(
        poll_post(s.addr, EIO, &sid, "4test1\x1e4test2\x1e4test3")
            .await
            .status,
        200
    );
    assert_eq!(
        poll_get(s.addr, EIO, &sid).await.text(),
        "4test1\x1e4test2\x1e4test3"
    );
    assert_eq!(
        poll_post(s.addr, EIO, &sid, "4hello\x1ebAQIDBA==")
            .await
            .status,
        200
    );
    assert_eq!(
        poll_get(s.addr, EIO, &sid).await.text(),
        "4hello\x1ebAQIDBA=="
    );
    // Invalid packet: 400 and the session is gone.
    assert_eq!(poll_post(s.addr, EIO, &sid, "abc").await.status, 400);
    assert_eq!(poll_get(s.addr, EIO, &sid).await.status, 400);

    let mut ws = eio_ws(s.addr, EIO).await;
    ws.send(Message::Text("4hello".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4hello");
    ws.send(Message::Binary(vec![1, 2, 3, 4].into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Some(Message::Binary(vec![1, 2, 3, 4].into()))
    );
    ws.send(Message::Text("abc".into())).await.unwrap();
    assert!(closes(&mut ws).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_heartbeat_close_and_duplicate_poll() {
    let s = TestServer::conformance().await;
    // The server pings every 300 ms; the client answers.
    let (sid, _) = polling_open(s.addr, EIO).await;
    for _ in 0..3 {
        assert_eq!(poll_get(s.addr, EIO, &sid).await.text(), "2");
        assert_eq!(poll_post(s.addr, EIO, &sid, "3").await.status, 200);
    }
    // No pong: closed after pingInterval + pingTimeout.
    let (sid, _) = polling_open(s.addr, EIO).await;
    tokio::time::sleep(Duration::from_millis(300 + 200 + 100)).await;
    assert_eq!(poll_post(s.addr, EIO, &sid, "3").await.status, 400);
    let mut ws = eio_ws(s.addr, EIO).await;
    let t = std::time::Instant::now();
    let mut pinged = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => pinged = true,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("websocket without pong stays open"),
        }
    }
    assert!(
        pinged && t.elapsed() >= Duration::from_millis(450),
        "closed after ping + timeout"
    );
    // Client close during a pending poll: the poll ends with a noop, the session is gone.
    let (sid, _) = polling_open(s.addr, EIO).await;
    let addr = s.addr;
    let sid2 = sid.clone();
    let pending = tokio::spawn(async move { poll_get(addr, EIO, &sid2).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(poll_post(s.addr, EIO, &sid, "1").await.status, 200);
    let r = pending.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "6"));
    assert_eq!(poll_get(s.addr, EIO, &sid).await.status, 400);
    // Duplicate poll: the first gets a close packet, the second an error, the session is gone.
    let (sid, _) = polling_open(s.addr, EIO).await;
    let sid2 = sid.clone();
    let first = tokio::spawn(async move { poll_get(addr, EIO, &sid2).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = poll_get(s.addr, EIO, &sid).await;
    assert_eq!(second.status, 400);
    assert_eq!(first.await.unwrap().text(), "1");
    assert_eq!(poll_get(s.addr, EIO, &sid).await.status, 400);
    // WebSocket close packet.
    let mut ws = eio_ws(s.addr, EIO).await;
    ws.send(Message::Text("1".into())).await.unwrap();
    assert!(closes(&mut ws).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_upgrade() {
    let s = TestServer::conformance().await;
    for _ in 0..4 {
        let (sid, _) = polling_open(s.addr, EIO).await;
        let mut ws = ws_open(
            s.addr,
            &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
            &[],
        )
        .await
        .unwrap();
        ws.send(Message::Text("2probe".into())).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "3probe");
        assert_eq!(poll_get(s.addr, EIO, &sid).await.text(), "6");
        ws.send(Message::Text("5".into())).await.unwrap();
        ws.send(Message::Text("4hello".into())).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "4hello");
        assert_eq!(poll_get(s.addr, EIO, &sid).await.status, 400);
        // A second WebSocket for the upgraded session: accepted, then closed at once (as the
        // reference server does); the session keeps its WebSocket.
        let mut again = ws_open(
            s.addr,
            &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
            &[],
        )
        .await
        .expect("accepted, then closed");
        assert!(closes(&mut again).await);
        ws.send(Message::Text("4still".into())).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "4still");
    }
    // Without a pending poll the noop goes out on the websocket after the upgrade.
    let (sid, _) = polling_open(s.addr, EIO).await;
    let mut ws = ws_open(
        s.addr,
        &format!("{EIO}?EIO=4&transport=websocket&sid={sid}"),
        &[],
    )
    .await
    .unwrap();
    ws.send(Message::Text("2probe".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::Text("5".into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "6");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_connect_and_namespaces() {
    let s = TestServer::conformance().await;
    let mut ws = eio_ws(s.addr, SIO).await;
    ws.send(Message::Text(r#"40{"token":"123"}"#.into()))
        .await
        .unwrap();
    let hs: Value = serde_json::from_str(&next_text(&mut ws).await[2..]).unwrap();
    assert!(hs["sid"].is_string() && hs.as_object().unwrap().len() == 1);
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{"token":"123"}]"#);
    ws.send(Message::Text("40/custom,".into())).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40/custom,{\"sid\":"));
    assert_eq!(next_text(&mut ws).await, r#"42/custom,["auth",{}]"#);
    ws.send(Message::Text(r#"40/random"#.into())).await.unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    // Disconnect from /custom, the main namespace still works.
    ws.send(Message::Text("41/custom,".into())).await.unwrap();
    ws.send(Message::Text(
        r#"42["message","message to main namespace"]"#.into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["message-back","message to main namespace"]"#
    );
    // Disconnect from the main namespace: like the reference server (Engine.IO v4), the
    // connection stays open: the heartbeat goes on and a new CONNECT joins again.
    ws.send(Message::Text("41".into())).await.unwrap();
    let ping = tokio::time::timeout(Duration::from_secs(3), ws.next()).await;
    match ping {
        Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "2", "pings go on after 41"),
        other => panic!("expected a ping after 41, got {other:?}"),
    }
    ws.send(Message::Text("3".into())).await.unwrap();
    ws.send(Message::Text("40".into())).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
    ws.send(Message::Text(r#"42["message","again"]"#.into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, r#"42["message-back","again"]"#);
    // connectTimeout: no CONNECT within 1 s closes the connection.
    let mut idle = eio_ws(s.addr, SIO).await;
    let t = std::time::Instant::now();
    assert!(closes(&mut idle).await);
    assert!(t.elapsed() >= Duration::from_millis(900));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_messages_acks_and_binary() {
    let s = TestServer::conformance().await;
    let mut ws = sio_ws(s.addr).await;
    ws.send(Message::Text(r#"42["message",1,"2",{"3":[true]}]"#.into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    ws.send(Message::Text(
        r#"42456["message-with-ack",1,"2",{"3":[false]}]"#.into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, r#"43456[1,"2",{"3":[false]}]"#);
    ws.send(Message::Text(
        r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![4, 5, 6].into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(
        next(&mut ws).await,
        Some(Message::Binary(vec![1, 2, 3].into()))
    );
    assert_eq!(
        next(&mut ws).await,
        Some(Message::Binary(vec![4, 5, 6].into()))
    );
    ws.send(Message::Text(r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.into())).await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![4, 5, 6].into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(
        next(&mut ws).await,
        Some(Message::Binary(vec![1, 2, 3].into()))
    );
    assert_eq!(
        next(&mut ws).await,
        Some(Message::Binary(vec![4, 5, 6].into()))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_invalid_packets_close_the_connection() {
    let s = TestServer::conformance().await;
    for bad in ["4abc", "42{}", r#"42abc["message-with-ack",1]"#] {
        let mut ws = sio_ws(s.addr).await;
        ws.send(Message::Text(bad.into())).await.unwrap();
        assert!(closes(&mut ws).await, "{bad}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_to_client_acks() {
    let s = TestServer::conformance().await;
    let mut ws = sio_ws(s.addr).await;
    for round in 0..2 {
        ws.send(Message::Text(r#"42["ask-ack"]"#.into()))
            .await
            .unwrap();
        let q = next_text(&mut ws).await;
        let rest = q.strip_prefix("42").expect("event");
        let bracket = rest.find('[').unwrap();
        let id: u64 = rest[..bracket].parse().expect("ack id");
        assert_eq!(&rest[bracket..], r#"["question","ping?"]"#);
        ws.send(Message::Text(format!(r#"43{id}["pong!",{round}]"#).into()))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut ws).await,
            format!(r#"42["answer","pong!",{round}]"#)
        );
    }
    // An ACK nobody waits for is ignored; the connection stays usable.
    ws.send(Message::Text(r#"43999["late"]"#.into()))
        .await
        .unwrap();
    ws.send(Message::Text(r#"42["message","still here"]"#.into()))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["message-back","still here"]"#
    );
    s.stop().await;
}

/// A client's Close frame is answered with a Close frame (RFC 6455 5.5.1), not a dropped TCP
/// connection: the closing handshake completes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_frame_gets_a_close_frame_back() {
    let s = TestServer::conformance().await;
    for root in [EIO, SIO] {
        let mut ws = eio_ws(s.addr, root).await;
        ws.send(Message::Close(None)).await.unwrap();
        assert!(
            close_answered(&mut ws, root).await,
            "{root}: the server answered the Close frame"
        );
    }
    s.stop().await;
}

/// `/echo` (conformance mode only): a raw WebSocket echo over the chat's transport, what
/// WebSocket test suites such as Autobahn's fuzzing client expect (`make chaos` runs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_websocket_echo_in_conformance_mode_only() {
    let s = TestServer::conformance().await;
    let mut ws = ws_open(s.addr, "/echo", &[]).await.unwrap();
    // No Engine.IO open packet: the first frame is the echo of the first message.
    ws.send(Message::Text("héllo".into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::Text("héllo".into())));
    ws.send(Message::Binary(vec![0, 1, 2, 255].into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Some(Message::Binary(vec![0, 1, 2, 255].into()))
    );
    // Bigger than the chat's 1,000,000-byte payload limit, within the echo's 16 MiB.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::Binary(big.clone().into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::Binary(big.into())));
    // A Close is answered with a Close.
    ws.send(Message::Close(None)).await.unwrap();
    assert!(
        close_answered(&mut ws, "/echo").await,
        "the echo did not answer the Close"
    );
    s.stop().await;

    let chat = TestServer::start().await;
    assert_eq!(ws_open(chat.addr, "/echo", &[]).await.err(), Some(404));
    chat.stop().await;
}
