//! Opening a simulated user's connection: TCP from a chosen source address, then either a direct
//! WebSocket or HTTP long-polling upgraded to WebSocket, then the `/chat` namespace CONNECT
//! through `connection:success`.
//!
//! Everything protocol-shaped goes through [`crate::wire`] (the protocol crate's client side);
//! this module only moves bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::wire::{self, Incoming, Wire};

/// The WebSocket stream every user holds.
pub type Ws = WebSocketStream<TcpStream>;

/// Where to connect and how.
#[derive(Clone, Debug)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header value (`host:port`).
    pub host: String,
    /// Namespace the chat lives on (`/chat`).
    pub namespace: String,
    /// How long connecting may take before it counts as an error.
    pub timeout: Duration,
}

/// Per-user socket settings: small buffers so 15,000 users fit in one process.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Opens a TCP connection, bound to `source` when given (several 127.0.0.x addresses give
/// several ephemeral port ranges).
pub async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connected user: the WebSocket, the protocol state, and what the server told it.
pub struct Connected {
    /// The WebSocket (already upgraded when polling came first).
    pub ws: Ws,
    /// Protocol state (decoder, ping answers).
    pub wire: Wire,
    /// `socketId` from `connection:success`.
    pub socket_id: String,
    /// Events that arrived during the handshake, after `connection:success` (kept for the task).
    pub early: Vec<Incoming>,
}

/// Connects over WebSocket directly and completes the namespace CONNECT.
pub async fn connect_websocket(
    target: &Target,
    source: Option<IpAddr>,
    token: &str,
) -> anyhow::Result<Connected> {
    let stream = tcp(target.addr, source).await?;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", target.host);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())).await?;
    let mut wire = Wire::new(&target.namespace);
    // Engine.IO OPEN first, then our namespace CONNECT.
    'open: loop {
        for incoming in pump(&mut ws, &mut wire).await? {
            match incoming {
                Incoming::Open => break 'open,
                Incoming::Other => {}
                other => bail!("expected the Engine.IO open packet, got {other:?}"),
            }
        }
    }
    ws.send(Message::text(wire.connect(token))).await?;
    finish_connect(ws, wire, Vec::new()).await
}

/// Reads until `connection:success` on our namespace, answering pings.
async fn finish_connect(
    mut ws: Ws,
    mut wire: Wire,
    mut early: Vec<Incoming>,
) -> anyhow::Result<Connected> {
    loop {
        for incoming in pump(&mut ws, &mut wire).await? {
            match incoming {
                Incoming::ConnectError(message) => bail!("connect_error: {message}"),
                Incoming::Event { name, args } if name == "connection:success" => {
                    let socket_id = wire::str_field(&args, "socketId").unwrap_or_default();
                    return Ok(Connected {
                        ws,
                        wire,
                        socket_id,
                        early,
                    });
                }
                Incoming::Close => bail!("server closed the session during connect"),
                ev @ (Incoming::Event { .. } | Incoming::Delivered { .. }) => early.push(ev),
                _ => {}
            }
        }
    }
}

/// Reads the next WebSocket text frame, feeds it to the protocol state, writes what the state
/// wants written (pongs, upgrade) and returns the decoded packets.
async fn pump(ws: &mut Ws, wire: &mut Wire) -> anyhow::Result<Vec<Incoming>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                wire.feed(text.as_bytes())?;
                break;
            }
            Some(Ok(
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_),
            )) => {}
            Some(Ok(Message::Close(_))) | None => bail!("connection closed"),
            Some(Err(e)) => return Err(e.into()),
        }
    }
    while let Some(frame) = wire.poll_transmit() {
        ws.send(Message::text(frame)).await?;
    }
    let mut out = Vec::new();
    while let Some(incoming) = wire.poll() {
        out.push(incoming?);
    }
    Ok(out)
}

/// Connects over HTTP long-polling (the JS client's default), sends the namespace CONNECT over
/// polling, reads `connection:success` over polling, then upgrades to WebSocket
/// (`2probe` / `3probe` / `5`) as socket.io-client does.
pub async fn connect_polling(
    target: &Target,
    http: &reqwest::Client,
    source: Option<IpAddr>,
    token: &str,
) -> anyhow::Result<Connected> {
    let base = format!("http://{}/socket.io/?EIO=4&transport=polling", target.host);
    let mut wire = Wire::new(&target.namespace);
    let body = http
        .get(&base)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    wire.feed_payload(&body)?;
    let mut sid = None;
    while let Some(incoming) = wire.poll() {
        if let Incoming::OpenWithSid(s) = incoming? {
            sid = Some(s);
        }
    }
    let sid = sid.ok_or_else(|| anyhow!("polling handshake without an open packet"))?;
    let url = format!("{base}&sid={sid}");
    http.post(&url)
        .body(wire.connect(token))
        .send()
        .await?
        .error_for_status()?;

    let started = Instant::now();
    let mut early = Vec::new();
    let mut socket_id = None;
    while socket_id.is_none() {
        if started.elapsed() > target.timeout {
            bail!("no connection:success over polling");
        }
        let body = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        wire.feed_payload(&body)?;
        while let Some(frame) = wire.poll_transmit() {
            http.post(&url)
                .body(frame)
                .send()
                .await?
                .error_for_status()?;
        }
        while let Some(incoming) = wire.poll() {
            match incoming? {
                Incoming::ConnectError(message) => bail!("connect_error: {message}"),
                Incoming::Event { name, args } if name == "connection:success" => {
                    socket_id = Some(wire::str_field(&args, "socketId").unwrap_or_default());
                }
                Incoming::Close => bail!("server closed the session during connect"),
                ev @ (Incoming::Event { .. } | Incoming::Delivered { .. }) => early.push(ev),
                _ => {}
            }
        }
    }

    // Upgrade: `2probe` on a new WebSocket, `3probe` back, then `5` (queued by the session).
    let stream = tcp(target.addr, source).await?;
    let ws_url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        target.host
    );
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(ws_url, stream, Some(ws_config())).await?;
    wire.begin_upgrade()?;
    while let Some(frame) = wire.poll_transmit() {
        ws.send(Message::text(frame)).await?;
    }
    'probe: loop {
        for incoming in pump(&mut ws, &mut wire).await? {
            match incoming {
                Incoming::Upgraded => break 'probe,
                Incoming::Close => bail!("server closed the session during the upgrade"),
                ev @ (Incoming::Event { .. } | Incoming::Delivered { .. }) => early.push(ev),
                _ => {}
            }
        }
    }
    // `pump` already wrote the queued `5`.
    Ok(Connected {
        ws,
        wire,
        socket_id: socket_id.unwrap_or_default(),
        early,
    })
}

/// One reqwest client per source address (polling users), without a connection limit.
pub fn http_client(source: Option<IpAddr>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(64);
    if let Some(ip) = source {
        b = b.local_address(ip);
    }
    Ok(b.build()?)
}
