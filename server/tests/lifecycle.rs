//! The `chatwire` binary's lifecycle: `serve --port 0` prints the bound address, SIGTERM sends an
//! Engine.IO close to connected clients, commits what was accepted, and exits 0.
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
