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
