//! The `chatwire` binary's lifecycle: `serve --port 0` prints the bound address, SIGTERM sends an
//! Engine.IO close to connected clients, commits what was accepted, and exits 0. Configurations
//! that must not run (dev tokens on a public address by default, an empty `JWT_SECRET`, absurd
//! durations) stop the start with a message that says what to change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Client;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_address_and_sigterm_exits_cleanly() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatwire"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--database-url",
            "memory",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("output");
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.trim().parse::<std::net::SocketAddr>().unwrap();
        }
    };
    let (mut c, _) = Client::chat(addr, common::brand(1)).await;
    c.emit(
        "user:check:online",
        json!({"userId": 1, "userType": "brand"}),
    )
    .await;
    assert_eq!(c.event("user:online:status").await["isOnline"], true);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The client is told to go away (Engine.IO close) and the connection ends.
    let mut got_close = false;
    while let Some(frame) = c.next_raw().await {
        if frame == "1" {
            got_close = true;
        }
    }
    assert!(
        got_close,
        "engine.io close packet before the connection ends"
    );
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Runs `chatwire serve` on port 0 with `envs` (and no JWT key or `DEV_TOKENS` from the shell);
/// returns its exit status and stderr, or panics when it is still running after 10 s.
async fn start_expecting_exit(envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatwire"));
    cmd.args(["serve", "--port", "0", "--database-url", "memory"])
        .env_remove("JWT_SECRET")
        .env_remove("JWT_PUBLIC_KEY")
        .env_remove("DEV_TOKENS")
        .env_remove("HOST")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .expect("the server refuses to start instead of running")
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_dev_tokens_on_a_public_address_refuse_to_start_and_say_how() {
    let (status, stderr) = start_expecting_exit(&[("HOST", "0.0.0.0")]).await;
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("DEV_TOKENS=true"), "{stderr}");
    assert!(stderr.contains("HOST=127.0.0.1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_jwt_secret_refuses_to_start() {
    let (status, stderr) = start_expecting_exit(&[("HOST", "127.0.0.1"), ("JWT_SECRET", "")]).await;
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("JWT_SECRET is set but empty"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_duration_refuses_to_start_by_name() {
    let (status, stderr) = start_expecting_exit(&[
        ("HOST", "127.0.0.1"),
        ("CONNECT_TIMEOUT_MS", "18446744073709551615"),
    ])
    .await;
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("CONNECT_TIMEOUT_MS="), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_dev_tokens_on_a_public_address_start() {
    let mut config = chatwire::config::Config::for_tests();
    config.host = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    config.dev_tokens = None;
    let refused = chatwire::Server::start(&config, chatwire::Mode::Chat).await;
    assert!(
        refused.is_err(),
        "implicit dev tokens on 0.0.0.0 must not start"
    );
    config.dev_tokens = Some(true);
    let server = chatwire::Server::start(&config, chatwire::Mode::Chat)
        .await
        .expect("explicit DEV_TOKENS=true starts");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let (_c, success) = Client::chat(addr, common::brand(1)).await;
    assert_eq!(success["userId"], 1, "{success}");
    server.shutdown().await;
}

/// How a client's WebSocket ended at a server shutdown.
#[derive(Debug, Default)]
struct Ending {
    /// The Engine.IO close packet (`1`) arrived.
    eio_close: bool,
    /// The server's Close frame arrived.
    close_frame: bool,
    /// The stream ended in an error (a reset) instead of a clean end.
    error: Option<String>,
}

/// Clients that keep sending while the server shuts down still see the Engine.IO close and the
/// WebSocket Close frame, then a clean end, not a TCP reset: the server reads what they still
/// send after its Close instead of dropping the socket with unread input (a reset, which makes
/// the client's kernel discard the close packet it has not read yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_still_sending_at_shutdown_see_the_close_not_a_reset() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    const CLIENTS: i64 = 24;
    let server = common::TestServer::with(|c| {
        c.rate_limit_per_socket = 0;
        c.rate_limit_per_user = 0;
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for id in 1..=CLIENTS {
        let (c, _) = Client::chat(server.addr, common::brand(id)).await;
        let (mut tx, mut rx) = c.ws.split();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            // Engine.IO noops: read and dropped by the server, so it keeps up with them (even a
            // debug build) and the test is about the bytes in flight at the close, not a backlog.
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if tx.send(Message::Text("6".into())).await.is_err() {
                    break;
                }
                sent += 1;
                if sent.is_multiple_of(16) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            sent
        }));
        readers.push(tokio::spawn(async move {
            let mut end = Ending::default();
            while let Some(msg) = rx.next().await {
                match msg {
                    Ok(Message::Text(t)) if t.as_str() == "1" => end.eio_close = true,
                    Ok(Message::Close(_)) => end.close_frame = true,
                    Ok(_) => {}
                    Err(e) => {
                        end.error = Some(e.to_string());
                        break;
                    }
                }
            }
            end
        }));
    }
    // Every client is sending before the shutdown begins.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("shutdown finishes");
    let mut ends = Vec::new();
    for r in readers {
        ends.push(
            tokio::time::timeout(Duration::from_secs(10), r)
                .await
                .expect("every connection ends")
                .unwrap(),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for w in writers {
        sent += w.await.unwrap();
    }
    assert!(sent > CLIENTS as u64 * 10, "clients were sending: {sent}");
    let unclean: Vec<_> = ends
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.eio_close || !e.close_frame || e.error.is_some())
        .collect();
    assert!(
        unclean.is_empty(),
        "{} of {CLIENTS} clients did not see `1`, a Close frame and a clean end: {unclean:?}",
        unclean.len()
    );
}
