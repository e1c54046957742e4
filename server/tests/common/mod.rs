//! Shared helpers for the integration tests: start a real server on 127.0.0.1:0 in-process, and
//! a small Engine.IO/Socket.IO client over tokio-tungstenite (raw wire strings, so the tests
//! check exactly what a client sees).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chatwire::config::Config;
use chatwire::store::{AnyStore, Store, UserKey, UserType};
use chatwire::{Mode, RunningServer, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for an expected frame.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A server for one test.
pub(crate) struct TestServer {
    /// The running server.
    pub(crate) server: RunningServer,
    /// Its address.
    pub(crate) addr: SocketAddr,
}

impl TestServer {
    /// Chat mode, memory store, 2 shards.
    pub(crate) async fn start() -> TestServer {
        Self::with(|_| {}).await
    }

    /// Chat mode with config tweaks.
    pub(crate) async fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::for_tests();
        tweak(&mut config);
        let server = Server::start(&config, Mode::Chat)
            .await
            .expect("server starts");
        let addr = server.addr;
        TestServer { server, addr }
    }

    /// Chat mode on the memory store with the given cluster adapter.
    pub(crate) async fn with_adapter(
        adapter: std::sync::Arc<dyn chatwire::cluster::Adapter>,
    ) -> TestServer {
        let config = Config::for_tests();
        let server = Server::start_with_adapter(&config, Mode::Chat, adapter)
            .await
            .expect("server starts");
        let addr = server.addr;
        TestServer { server, addr }
    }

    /// Conformance mode.
    pub(crate) async fn conformance() -> TestServer {
        let mut config = Config::for_tests();
        config.cors_origins = vec!["*".to_owned()];
        config.ping_interval_ms = 300;
        config.ping_timeout_ms = 200;
        config.connect_timeout_ms = 1000;
        config.rate_limit_conn_per_ip = 0;
        let server = Server::start(&config, Mode::Conformance)
            .await
            .expect("server starts");
        let addr = server.addr;
        TestServer { server, addr }
    }

    /// The store.
    pub(crate) fn store(&self) -> Arc<AnyStore> {
        self.server.store().expect("chat mode has a store")
    }

    /// A 1:1 conversation between two users.
    pub(crate) async fn direct(&self, a: UserKey, b: UserKey) -> i64 {
        self.store().create_direct(a, b).await.unwrap().0.id
    }

    /// A group conversation.
    pub(crate) async fn group(&self, creator: UserKey, others: &[UserKey]) -> i64 {
        self.store()
            .create_group(creator, others, Some("g".into()), 1000)
            .await
            .unwrap()
            .id
    }

    /// Graceful stop.
    pub(crate) async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// `brand <id>`.
pub(crate) fn brand(id: i64) -> UserKey {
    UserKey::new(UserType::Brand, id)
}

/// `influencer <id>`.
pub(crate) fn influencer(id: i64) -> UserKey {
    UserKey::new(UserType::Influencer, id)
}

/// The dev token of a user.
pub(crate) fn token(u: UserKey) -> String {
    format!("{}:{}", u.id, u.user_type.as_str())
}

/// One Engine.IO connection over WebSocket.
pub(crate) struct Client {
    /// The stream.
    pub(crate) ws: WebSocketStream<TcpStream>,
    /// The Engine.IO open packet.
    pub(crate) open: Value,
    /// Events received while waiting for others, in order.
    pub(crate) backlog: Vec<String>,
}

impl Client {
    /// Opens a direct WebSocket Engine.IO session at `path` (`/socket.io/`).
    pub(crate) async fn connect_path(addr: SocketAddr, path: &str) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let url = format!("ws://{addr}{path}?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        let mut c = Client {
            ws,
            open: Value::Null,
            backlog: Vec::new(),
        };
        let first = c.next_raw().await.expect("open packet");
        assert!(first.starts_with('0'), "open packet, got {first}");
        c.open = serde_json::from_str(&first[1..]).unwrap();
        c
    }

    /// Opens a WebSocket Engine.IO session on `/socket.io/`.
    pub(crate) async fn connect(addr: SocketAddr) -> Client {
        Self::connect_path(addr, "/socket.io/").await
    }

    /// Connects to `/chat` with a dev token; returns the client and `connection:success`.
    pub(crate) async fn chat(addr: SocketAddr, user: UserKey) -> (Client, Value) {
        let mut c = Client::connect(addr).await;
        c.send(&format!(r#"40/chat,{{"token":"{}"}}"#, token(user)))
            .await;
        let connect = c.next_raw().await.unwrap();
        assert!(connect.starts_with("40/chat,{\"sid\":"), "{connect}");
        let success = c.event("connection:success").await;
        (c, success)
    }

    /// Sends a text frame.
    pub(crate) async fn send(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a binary frame.
    pub(crate) async fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(Message::Binary(data.to_vec().into()))
            .await
            .unwrap();
    }

    /// `42/chat,["event",payload]`.
    pub(crate) async fn emit(&mut self, event: &str, payload: Value) {
        self.send(&format!("42/chat,{}", serde_json::json!([event, payload])))
            .await;
    }

    /// `42/chat,<id>["event",payload]`.
    pub(crate) async fn emit_ack(&mut self, event: &str, payload: Value, id: u64) {
        self.send(&format!(
            "42/chat,{id}{}",
            serde_json::json!([event, payload])
        ))
        .await;
    }

    /// Next text frame (pings answered and skipped); None when the connection ends or times out.
    pub(crate) async fn next_raw(&mut self) -> Option<String> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.ok()??;
            match msg {
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    let _ = self.ws.send(Message::Text("3".into())).await;
                }
                Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
                Ok(Message::Binary(b)) => return Some(format!("<binary {}>", b.len())),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Waits for `42/chat,["name",payload]`; other frames are kept in `backlog`.
    pub(crate) async fn event(&mut self, name: &str) -> Value {
        let prefix = format!("42/chat,[\"{name}\",");
        if let Some(pos) = self.backlog.iter().position(|f| f.starts_with(&prefix)) {
            let f = self.backlog.remove(pos);
            return args(&f)[1].clone();
        }
        loop {
            let f = self.next_raw().await.unwrap_or_else(|| {
                panic!(
                    "connection ended waiting for {name}; backlog {:?}",
                    self.backlog
                )
            });
            if f.starts_with(&prefix) {
                return args(&f)[1].clone();
            }
            self.backlog.push(f);
        }
    }

    /// Joins a conversation's room and waits for `conversation:joined`.
    pub(crate) async fn join(&mut self, conversation_id: i64) {
        self.emit(
            "conversation:join",
            serde_json::json!({"conversationId": conversation_id}),
        )
        .await;
        self.event("conversation:joined").await;
    }

    /// Waits for the ack `43/chat,<id>[payload]`.
    pub(crate) async fn ack(&mut self, id: u64) -> Value {
        let prefix = format!("43/chat,{id}[");
        if let Some(pos) = self.backlog.iter().position(|f| f.starts_with(&prefix)) {
            let f = self.backlog.remove(pos);
            return serde_json::from_str::<Value>(&f[prefix.len() - 1..]).unwrap()[0].clone();
        }
        loop {
            let f = self
                .next_raw()
                .await
                .expect("connection ended waiting for ack");
            if let Some(rest) = f.strip_prefix(&prefix[..prefix.len() - 1]) {
                return serde_json::from_str::<Value>(rest).unwrap()[0].clone();
            }
            self.backlog.push(f);
        }
    }

    /// Asserts no `name` event arrives within `d` (frames seen are kept).
    pub(crate) async fn no_event(&mut self, name: &str, d: Duration) {
        let prefix = format!("42/chat,[\"{name}\",");
        assert!(
            !self.backlog.iter().any(|f| f.starts_with(&prefix)),
            "unexpected {name}: {:?}",
            self.backlog
        );
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = msg {
                let t = t.as_str().to_owned();
                if t == "2" {
                    let _ = self.ws.send(Message::Text("3".into())).await;
                    continue;
                }
                assert!(!t.starts_with(&prefix), "unexpected {t}");
                self.backlog.push(t);
            }
        }
    }

    /// True when the server closes the connection within `d`.
    pub(crate) async fn closed_within(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                    let _ = self.ws.send(Message::Text("3".into())).await;
                }
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "1" => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// The JSON array of a `42...` frame.
pub(crate) fn args(frame: &str) -> Value {
    let start = frame.find('[').expect("event array");
    serde_json::from_str(&frame[start..]).unwrap()
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct RawResponse {
    /// Status code.
    pub(crate) status: u16,
    /// Header block, lower-cased.
    pub(crate) headers: String,
    /// Body.
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    /// Body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP request on a fresh TCP connection (`Connection: close`), read to the end.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &str,
    body: &[u8],
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let headers = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let status = headers[9..12].parse().unwrap();
    let mut body = buf[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + n]);
            rest = &rest[line_end + 4 + n..];
        }
        body = out;
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

/// A polling session: handshake GET; returns the sid and the open packet.
pub(crate) async fn polling_open(addr: SocketAddr, root: &str) -> (String, Value) {
    let r = http(
        addr,
        "GET",
        &format!("{root}?EIO=4&transport=polling"),
        "",
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.starts_with('0'), "{text}");
    let open: Value = serde_json::from_str(&text[1..]).unwrap();
    (open["sid"].as_str().unwrap().to_owned(), open)
}

/// A polling GET for `sid`.
pub(crate) async fn poll_get(addr: SocketAddr, root: &str, sid: &str) -> RawResponse {
    http(
        addr,
        "GET",
        &format!("{root}?EIO=4&transport=polling&sid={sid}"),
        "",
        b"",
    )
    .await
}

/// A polling POST for `sid`.
pub(crate) async fn poll_post(addr: SocketAddr, root: &str, sid: &str, body: &str) -> RawResponse {
    http(
        addr,
        "POST",
        &format!("{root}?EIO=4&transport=polling&sid={sid}"),
        "Content-Type: text/plain;charset=UTF-8\r\n",
        body.as_bytes(),
    )
    .await
}

/// Opens a WebSocket with custom query and headers; returns the stream or the HTTP error status.
pub(crate) async fn ws_open(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<TcpStream>, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}{path_and_query}")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket handshake: {e}"),
    }
}
