//! Handshake pacing: each shard lets a bounded number of connections through their HTTP
//! handshake at once (idle memory per connection), yet clients that stall their handshake
//! cannot lock anyone else out, and long polls give their permit back once their request head
//! is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, TestServer, brand};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_do_not_lock_out_new_clients() {
    let s = TestServer::with(|c| {
        c.rate_limit_conn_per_ip = 0;
        c.header_read_timeout_ms = 30_000;
    })
    .await;
    // Far more stalled handshakes than permits on either shard: headers never finish.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut t = TcpStream::connect(s.addr).await.unwrap();
        t.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(t);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New clients still get through, long before the stalled ones time out.
    for i in 1..=5 {
        let (_c, ok) =
            tokio::time::timeout(Duration::from_secs(10), Client::chat(s.addr, brand(i)))
                .await
                .expect("a new client connects while others stall their handshake");
        assert_eq!(ok["userId"], i);
    }
    drop(stalled);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_do_not_hold_handshake_permits() {
    let s = TestServer::with(|c| {
        c.rate_limit_conn_per_ip = 0;
        c.shards = 1;
    })
    .await;
    // More pending long polls than the shard has handshake permits, each on its own connection
    // (nothing to answer before the next ping, 25 s away).
    let mut polls = Vec::new();
    for _ in 0..chatwire::http::HANDSHAKE_PERMITS + 4 {
        let (sid, _) = common::polling_open(s.addr, "/socket.io/").await;
        let mut t = TcpStream::connect(s.addr).await.unwrap();
        let head = format!(
            "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        t.write_all(head.as_bytes()).await.unwrap();
        polls.push(t);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New handshakes are not made to wait for a permit (the wait is 1 s each).
    let started = std::time::Instant::now();
    for _ in 0..3 {
        common::polling_open(s.addr, "/socket.io/").await;
    }
    let took = started.elapsed();
    assert!(
        took < chatwire::http::HANDSHAKE_PERMIT_WAIT,
        "3 handshakes took {took:?} beside {} long polls",
        polls.len()
    );
    drop(polls);
    s.stop().await;
}

/// `chatwire_connections_refused_total{reason}` in `/metrics` (0 when absent).
async fn refused(addr: std::net::SocketAddr, reason: &str) -> u64 {
    let text = common::http(addr, "GET", "/metrics", "", b"").await.text();
    text.lines()
        .filter(|l| l.starts_with("chatwire_connections_refused_total{"))
        .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A polling handshake on a fresh connection: its status.
async fn handshake_status(addr: std::net::SocketAddr) -> u16 {
    common::http(addr, "GET", "/socket.io/?EIO=4&transport=polling", "", b"")
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_address_and_in_total() {
    let s = TestServer::with(|c| {
        c.rate_limit_conn_per_ip = 0;
        c.max_sessions_per_ip = 3;
    })
    .await;
    let before = refused(s.addr, "sessions_per_ip").await;
    let mut sids = Vec::new();
    for _ in 0..3 {
        sids.push(common::polling_open(s.addr, "/socket.io/").await.0);
    }
    assert_eq!(
        handshake_status(s.addr).await,
        429,
        "a 4th session from one address"
    );
    // A WebSocket session counts the same.
    assert_eq!(
        common::ws_open(s.addr, "/socket.io/?EIO=4&transport=websocket", &[])
            .await
            .err(),
        Some(429)
    );
    assert_eq!(refused(s.addr, "sessions_per_ip").await, before + 2);
    // Closing a session gives its place back.
    let r = common::poll_post(s.addr, "/socket.io/", &sids[0], "1").await;
    assert_eq!(r.status, 200);
    let mut status = 0;
    for _ in 0..50 {
        status = handshake_status(s.addr).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "a closed session frees its place");
    s.stop().await;

    let s = TestServer::with(|c| {
        c.rate_limit_conn_per_ip = 0;
        c.max_sessions_per_ip = 0;
        c.max_sessions = 2;
    })
    .await;
    let before = refused(s.addr, "sessions_total").await;
    let (_a, _) = Client::chat(s.addr, brand(1)).await;
    let (_b, _) = Client::chat(s.addr, brand(2)).await;
    assert_eq!(handshake_status(s.addr).await, 503, "the process is full");
    assert_eq!(refused(s.addr, "sessions_total").await, before + 1);
    s.stop().await;
}

/// Sends `head` on a keep-alive connection and reads one response: (status, headers).
async fn keep_alive_request(t: &mut TcpStream, head: &str) -> Option<(u16, String)> {
    use tokio::io::AsyncReadExt;
    t.write_all(head.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), t.read(&mut byte))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let headers = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    t.read_exact(&mut body).await.ok()?;
    Some((headers[9..12].parse().unwrap(), headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_per_keep_alive_connection_are_limited() {
    let s = TestServer::with(|c| {
        c.rate_limit_conn_per_ip = 0;
        c.max_handshakes_per_connection = 2;
    })
    .await;
    let before = refused(s.addr, "handshakes_per_connection").await;
    let mut t = TcpStream::connect(s.addr).await.unwrap();
    let head = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    for i in 0..2 {
        let (status, _) = keep_alive_request(&mut t, head).await.expect("answer");
        assert_eq!(status, 200, "handshake {i}");
    }
    let (status, headers) = keep_alive_request(&mut t, head).await.expect("answer");
    assert_eq!(status, 429);
    assert!(headers.contains("connection: close"), "{headers}");
    assert!(
        keep_alive_request(&mut t, head).await.is_none(),
        "the connection is closed after the refusal"
    );
    assert_eq!(
        refused(s.addr, "handshakes_per_connection").await,
        before + 1
    );
    // A new connection may open sessions again.
    assert_eq!(handshake_status(s.addr).await, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_polling_body_times_out() {
    let s = TestServer::with(|c| {
        c.rate_limit_conn_per_ip = 0;
        c.body_read_timeout_ms = 500;
    })
    .await;
    let (sid, _) = common::polling_open(s.addr, "/socket.io/").await;
    let mut t = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n40"
    );
    let started = std::time::Instant::now();
    let answer = keep_alive_request(&mut t, &head).await;
    let (status, _) = answer.expect("an answer before the client finishes its body");
    assert_eq!(status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

/// Slow request heads (slowloris) are closed by the header read timeout counted from their
/// accept, however long they waited for a handshake permit, and they give their permit back
/// soon, so a new client is not made to wait [`chatwire::http::HANDSHAKE_PERMIT_WAIT`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_close_on_time_from_accept_and_do_not_delay_new_clients() {
    use tokio::io::AsyncReadExt;
    const HEADER_MS: u64 = 1500;
    let s = TestServer::with(|c| {
        c.rate_limit_conn_per_ip = 0;
        c.shards = 1;
        c.header_read_timeout_ms = HEADER_MS;
    })
    .await;
    // Twice as many slow heads as the shard has permits: before, the second half waited the
    // full permit wait before hyper's header timer even started.
    let mut slow = Vec::new();
    for _ in 0..chatwire::http::HANDSHAKE_PERMITS * 2 {
        let connected = std::time::Instant::now();
        let mut t = TcpStream::connect(s.addr).await.unwrap();
        t.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match t.read(&mut buf).await {
                    Ok(0) | Err(_) => return connected.elapsed(),
                    Ok(_) => {}
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (_c, ok) = tokio::time::timeout(Duration::from_secs(10), Client::chat(s.addr, brand(1)))
        .await
        .expect("a new client connects beside the slow heads");
    let took = started.elapsed();
    assert_eq!(ok["userId"], 1);
    assert!(
        took < Duration::from_millis(500),
        "a new client waited {took:?} beside {} slow heads",
        slow.len()
    );
    let mut lifetimes = Vec::new();
    for t in slow {
        lifetimes.push(
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("every slow head is closed")
                .unwrap(),
        );
    }
    let worst = lifetimes.iter().max().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(HEADER_MS + 400),
        "a slow head lived {worst:?} (header timeout {HEADER_MS} ms): {lifetimes:?}"
    );
    s.stop().await;
}
