//! Opens N idle WebSocket clients against a running chatwire (each joins `/chat` with a dev token,
//! then only answers pings), to measure the server's memory per idle connection:
//!
//! ```text
//! cargo run --release -p chatwire --example idle_clients -- 127.0.0.1:3000 5000 60
//! ```
//! Arguments: server address, number of connections, seconds to hold them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn one(addr: SocketAddr, i: usize, ready: Arc<AtomicUsize>, hold: Duration) {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return;
    };
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let Ok((mut ws, _)) = tokio_tungstenite::client_async(url, stream).await else {
        return;
    };
    let _open = ws.next().await;
    let user = format!(
        "40/chat,{{\"token\":\"{}:{}\"}}",
        i + 1,
        if i.is_multiple_of(2) {
            "brand"
        } else {
            "influencer"
        }
    );
    if ws.send(Message::Text(user.into())).await.is_err() {
        return;
    }
    let mut counted = false;
    let deadline = tokio::time::Instant::now() + hold;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(t) = msg {
            if t.as_str() == "2" {
                let _ = ws.send(Message::Text("3".into())).await;
            } else if !counted && t.as_str().contains("connection:success") {
                counted = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args
        .get(1)
        .map_or("127.0.0.1:3000", String::as_str)
        .parse()
        .unwrap();
    let n: usize = args.get(2).map_or(1000, |s| s.parse().unwrap());
    let hold = Duration::from_secs(args.get(3).map_or(30, |s| s.parse().unwrap()));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(tokio::spawn(one(addr, i, ready.clone(), hold)));
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = ready.load(Ordering::Relaxed);
        println!("connected {r}/{n}");
        if r >= n || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    println!("holding");
    for t in tasks {
        let _ = t.await;
    }
}
